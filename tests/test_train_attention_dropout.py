"""Attention's dropout in training against torch's own masks.

NumPy's generator cannot draw torch's mask, so the mask is injected: torch's mask is
read back from torch (nn.MultiheadAttention returns its dropped weights with
need_weights=True; F.scaled_dot_product_attention, run again from the same seed with
the identity as values, returns them as its output), and a generator that draws it is
given to the NumPy training kernels. Their output and every gradient must then be
torch's (1e-4 relative), through the mask the forward kept.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F  # noqa: N812 (the usual torch spelling)
from hypothesis import given, settings
from hypothesis import strategies as st
from test_attention_backward import close, heads_of
from torch import nn
from torch.nn.attention import SDPBackend, sdpa_kernel

from archc.codegen.runtime import numpy_backward as B  # noqa: N812 (short, used on every line)

EXAMPLES = settings(max_examples=20, deadline=None)


class Drawn:
    """A generator whose uniform draw is a given keep mask: 1 (kept, >= p) or 0 (dropped)."""

    def __init__(self, keep):
        self.keep = keep
        self.draws = 0

    def random(self, shape):
        assert tuple(shape) == self.keep.shape
        self.draws += 1
        return self.keep.astype(np.float64)


@EXAMPLES
@given(
    st.integers(1, 3),
    st.integers(1, 3),
    st.integers(1, 6),
    st.integers(1, 6),
    st.booleans(),
    st.sampled_from([0.2, 0.5]),
    st.integers(0, 2**31 - 1),
)
def test_sdpa_with_torchs_mask_gives_torchs_output_and_gradients(heads, size, length, keys, causal, p, seed):
    rng = np.random.default_rng(seed)
    e = heads * size
    q, k, v = (rng.standard_normal((2, n, e)).astype(np.float32) for n in (length, keys, keys))
    grad = rng.standard_normal((2, length, e)).astype(np.float32)
    tq, tk, tv = (torch.tensor(a, requires_grad=True) for a in (q, k, v))
    with sdpa_kernel(SDPBackend.MATH):
        torch.manual_seed(seed)
        out = F.scaled_dot_product_attention(*(heads_of(t, heads) for t in (tq, tk, tv)), dropout_p=p, is_causal=causal)
        torch.manual_seed(seed)  # the same draw with the identity as values: the dropped weights themselves
        eye = torch.eye(keys).expand(2, heads, keys, keys)
        dropped = F.scaled_dot_product_attention(
            *(heads_of(t, heads) for t in (tq, tk)), eye, dropout_p=p, is_causal=causal
        )
    out = out.transpose(1, 2).flatten(2)
    out.backward(torch.tensor(grad))
    drawn = Drawn(dropped.detach().numpy() != 0)  # a causally masked weight is 0 either way
    got, kept = B.scaled_dot_product_attention_forward(q, k, v, heads, causal, p, True, drawn)
    assert drawn.draws == 1
    close(got, out)
    for ours, theirs in zip(B.scaled_dot_product_attention_backward(grad, kept, heads, causal), (tq, tk, tv)):
        close(ours, theirs.grad)


@EXAMPLES
@given(
    st.integers(1, 3),
    st.integers(1, 3),
    st.integers(1, 5),
    st.integers(1, 5),
    st.booleans(),
    st.sampled_from([0.2, 0.5]),
    st.integers(0, 2**31 - 1),
)
def test_multi_head_attention_with_torchs_mask_gives_torchs_output_and_gradients(
    heads, size, length, keys, causal, p, seed
):
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    e = heads * size
    module = nn.MultiheadAttention(e, heads, dropout=p, batch_first=True).train()
    with torch.no_grad():  # torch starts the biases at zero: a test of their gradients needs values
        module.in_proj_bias.normal_()
        module.out_proj.bias.normal_()
    query, key, value = (rng.standard_normal((2, n, e)).astype(np.float32) for n in (length, keys, keys))
    grad = rng.standard_normal((2, length, e)).astype(np.float32)
    tensors = [torch.tensor(a, requires_grad=True) for a in (query, key, value)]
    mask = torch.full((length, keys), float("-inf")).triu(1) if causal else None
    # with need_weights the weights it returns are the ones it multiplied the values by: dropped
    out, dropped = module(*tensors, need_weights=True, attn_mask=mask, average_attn_weights=False)
    out.backward(torch.tensor(grad))
    state = {name: t.detach().numpy() for name, t in module.named_parameters()}
    weights = (state["in_proj_weight"], state["in_proj_bias"], state["out_proj.weight"], state["out_proj.bias"])
    drawn = Drawn(dropped.detach().numpy() != 0)
    got, kept = B.multi_head_attention_forward(query, key, value, heads, *weights, causal, p, True, drawn)
    assert drawn.draws == 1
    close(got, out)
    grads = B.multi_head_attention_backward(grad, kept, heads, *weights, causal)
    params = dict(module.named_parameters())
    theirs = [t.grad for t in tensors] + [params[n].grad for n in ("in_proj_weight", "in_proj_bias")]
    theirs += [params[n].grad for n in ("out_proj.weight", "out_proj.bias")]
    for ours, their in zip(grads, theirs):
        close(ours, their)
