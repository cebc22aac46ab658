"""The backward kernels of attention (archc/codegen/runtime/numpy_backward.py) against torch autograd.

For random heads, lengths and widths, causal or not and with or without a dropout mask of
the weights, the same attention runs in torch with requires_grad (F.scaled_dot_product_attention
on the math backend, nn.MultiheadAttention), is back-propagated from the same random output
gradient, and every NumPy gradient must equal torch's within 1e-4 relative (an absolute slack
of 1e-4 times the largest magnitude of torch's gradient, as tests/test_numpy_backward.py allows).
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F  # noqa: N812 (the usual torch spelling)
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn
from torch.nn.attention import SDPBackend, sdpa_kernel

from archc.codegen.runtime import numpy_backward as B  # noqa: N812 (short, used on every line)

EXAMPLES = settings(max_examples=25, deadline=None)


def close(ours, theirs) -> None:
    theirs = theirs.detach().numpy()
    np.testing.assert_allclose(ours, theirs, rtol=1e-4, atol=1e-4 * float(np.abs(theirs).max()))


def rand(rng, *shape):
    return rng.standard_normal(shape).astype(np.float32)


def heads_of(t, heads):
    return t.unflatten(-1, (heads, -1)).transpose(1, 2)


@EXAMPLES
@given(
    st.integers(1, 3),
    st.integers(1, 3),
    st.integers(1, 6),
    st.integers(1, 6),
    st.integers(1, 3),
    st.booleans(),
    st.booleans(),
    st.integers(0, 2**32 - 1),
)
def test_sdpa_backward_equals_autograd(heads, head_size, length, keys, value_size, causal, dropped, seed):
    rng = np.random.default_rng(seed)
    e, ev = heads * head_size, heads * value_size
    q, k, v = rand(rng, 2, length, e), rand(rng, 2, keys, e), rand(rng, 2, keys, ev)
    mask = ((rng.random((2, heads, length, keys)) >= 0.3) / 0.7).astype(np.float32) if dropped else None
    grad = rand(rng, 2, length, ev)
    tq, tk, tv = (torch.tensor(a, requires_grad=True) for a in (q, k, v))
    scores = heads_of(tq, heads) @ heads_of(tk, heads).transpose(-1, -2) / head_size**0.5
    if causal:
        scores = scores + torch.full((length, keys), float("-inf")).triu(1)
    weights = scores.softmax(-1)
    if dropped:
        weights = weights * torch.tensor(mask)
    out = (weights @ heads_of(tv, heads)).transpose(1, 2).flatten(2)
    out.backward(torch.tensor(grad))
    grads = B.scaled_dot_product_attention_backward(grad, (q, k, v, mask), heads, causal)
    for ours, theirs in zip(grads, (tq, tk, tv)):
        close(ours, theirs.grad)


def test_sdpa_backward_agrees_with_torchs_own_kernel():
    """Without dropout, the reference is F.scaled_dot_product_attention itself (math backend, is_causal)."""
    rng = np.random.default_rng(3)
    q, k, v, grad = (rand(rng, 2, 5, 6) for _ in range(4))
    tq, tk, tv = (torch.tensor(a, requires_grad=True) for a in (q, k, v))
    with sdpa_kernel(SDPBackend.MATH):
        out = F.scaled_dot_product_attention(*(heads_of(t, 3) for t in (tq, tk, tv)), is_causal=True)
    out.transpose(1, 2).flatten(2).backward(torch.tensor(grad))
    for ours, theirs in zip(B.scaled_dot_product_attention_backward(grad, (q, k, v, None), 3, True), (tq, tk, tv)):
        close(ours, theirs.grad)


@EXAMPLES
@given(
    st.integers(1, 3),
    st.integers(1, 3),
    st.integers(1, 5),
    st.integers(1, 5),
    st.sampled_from([None, 2, 5]),
    st.booleans(),
    st.booleans(),
    st.integers(0, 2**32 - 1),
)
def test_multi_head_attention_backward_equals_autograd(heads, head_size, length, keys, kdim, bias, causal, seed):
    torch.manual_seed(seed % 2**31)
    rng = np.random.default_rng(seed)
    e = heads * head_size
    module = nn.MultiheadAttention(e, heads, bias=bias, kdim=kdim, vdim=kdim, batch_first=True)
    if bias:  # torch starts them at zero: a test of their gradients' routing needs values
        with torch.no_grad():
            module.in_proj_bias.normal_()
            module.out_proj.bias.normal_()
    width = kdim or e
    query, key, value = rand(rng, 2, length, e), rand(rng, 2, keys, width), rand(rng, 2, keys, width)
    grad = rand(rng, 2, length, e)
    tq, tk, tv = (torch.tensor(a, requires_grad=True) for a in (query, key, value))
    mask = torch.full((length, keys), float("-inf")).triu(1) if causal else None
    with sdpa_kernel(SDPBackend.MATH):
        module(tq, tk, tv, need_weights=False, attn_mask=mask)[0].backward(torch.tensor(grad))
    state = {name: p.detach().numpy() for name, p in module.named_parameters()}
    packed = module._qkv_same_embed_dim
    in_weight = state["in_proj_weight"] if packed else [state[f"{n}_proj_weight"] for n in "qkv"]
    ours = B.multi_head_attention_backward(
        grad,
        (query, key, value, None),
        heads,
        in_weight,
        state.get("in_proj_bias"),
        state["out_proj.weight"],
        state.get("out_proj.bias"),
        causal,
    )
    for got, tensor in zip(ours[:3], (tq, tk, tv)):
        close(got, tensor.grad)
    params = dict(module.named_parameters())
    if packed:
        close(ours[3], params["in_proj_weight"].grad)
    else:
        for got, name in zip(ours[3], "qkv"):
            close(got, params[f"{name}_proj_weight"].grad)
    close(ours[5], params["out_proj.weight"].grad)
    if bias:
        close(ours[4], params["in_proj_bias"].grad)
        close(ours[6], params["out_proj.bias"].grad)
    else:
        assert ours[4] is None and ours[6] is None
