"""Back-propagation through time of the NumPy lstm and gru kernels (numpy_backward.py) against torch autograd.

For random configurations, nn.LSTM / nn.GRU runs with requires_grad, is back-propagated from a
random output gradient, and lstm_backward / gru_backward must give torch's gradient of the
input and of every array of the state_dict (by key) within 1e-4 relative. Dropout between
layers cannot be replayed from torch's draws, so its case stacks one-layer torch modules with
the masks lstm_forward drew multiplied in between, which is what torch's dropout does.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn

from archc.codegen.runtime import numpy_backward as B  # noqa: N812 (short, as test_numpy_backward spells it)
from archc.codegen.runtime import numpy_kernels as K  # noqa: N812

pytestmark = pytest.mark.usefixtures("one_thread")
MODULES = {"lstm": nn.LSTM, "gru": nn.GRU}


def close(ours, theirs):
    theirs = theirs.detach().numpy()
    scale = float(np.abs(theirs).max()) if theirs.size else 0.0
    np.testing.assert_allclose(ours, theirs, rtol=1e-4, atol=1e-4 * scale, strict=True)


def torch_last(module, output, h_n):
    """A text classifier's last step: h_n's last layer, both directions side by side."""
    h_n = h_n[0] if isinstance(h_n, tuple) else h_n
    return torch.cat((h_n[-2], h_n[-1]), 1) if module.bidirectional else h_n[-1]


@settings(max_examples=40, deadline=None)
@given(
    kind=st.sampled_from(["lstm", "gru"]),
    features=st.integers(1, 5),
    steps=st.integers(1, 5),
    units=st.integers(2, 6),
    layers=st.integers(1, 3),
    bidirectional=st.booleans(),
    bias=st.booleans(),
    last=st.booleans(),
    proj=st.booleans(),
    seed=st.integers(0, 2**16),
)
def test_backward_equals_autograd(kind, features, steps, units, layers, bidirectional, bias, last, proj, seed):
    torch.manual_seed(seed)
    options = {"num_layers": layers, "bias": bias, "batch_first": True, "bidirectional": bidirectional}
    if kind == "lstm" and proj:
        options["proj_size"] = units - 1
    module = MODULES[kind](features, units, **options)
    x = torch.randn(3, steps, features, requires_grad=True)
    output, h_n = module(x)
    out = torch_last(module, output, h_n) if last else output
    grad = torch.randn(out.shape)
    out.backward(grad)
    state = {f"r.{key}": value.detach().numpy() for key, value in module.state_dict().items()}
    forward = getattr(K, kind)(x.detach().numpy(), state, "r", layers, bidirectional, last=last)
    close(forward, out)
    dx, grads = getattr(B, f"{kind}_backward")(
        grad.numpy(), (x.detach().numpy(), None), state, "r", layers, bidirectional, last
    )
    close(dx, x.grad)
    assert set(grads) == set(state)
    for key, parameter in module.named_parameters():
        close(grads[f"r.{key}"], parameter.grad)
        assert grads[f"r.{key}"].dtype == np.float32


@pytest.mark.parametrize("kind", ["lstm", "gru"])
def test_backward_through_the_dropout_between_layers(kind):
    rng = np.random.default_rng(0)
    torch.manual_seed(0)
    stacked = [
        MODULES[kind](4, 5, batch_first=True, bidirectional=True),
        MODULES[kind](10, 5, batch_first=True, bidirectional=True),
    ]
    state = {f"r.{key}": v.detach().numpy() for key, v in stacked[0].state_dict().items()}
    state |= {f"r.{key.replace('l0', 'l1')}": v.detach().numpy() for key, v in stacked[1].state_dict().items()}
    x = torch.randn(2, 6, 4, requires_grad=True)
    forward = getattr(B, f"{kind}_forward")
    out, (kept_x, masks) = forward(x.detach().numpy(), state, "r", 2, True, dropout=0.4, training=True, rng=rng)
    assert len(masks) == 1 and set(np.unique(masks[0])) == {0, np.float32(1 / 0.6)}
    reference = stacked[1](stacked[0](x)[0] * torch.from_numpy(masks[0]))[0]
    close(out, reference)
    grad = torch.randn(reference.shape)
    reference.backward(grad)
    dx, grads = getattr(B, f"{kind}_backward")(grad.numpy(), (kept_x, masks), state, "r", 2, True)
    close(dx, x.grad)
    for layer, module in enumerate(stacked):
        for key, parameter in module.named_parameters():
            close(grads[f"r.{key.replace('l0', f'l{layer}')}"], parameter.grad)
