"""specs/vit_b_16.arch against torchvision's vit_b_16 (issue 17): the same state_dict keys and shapes,
loaded strictly; the parameters and MACs the issue measured; the same output in eval mode from the
generated PyTorch and NumPy models.

MACs are torch's flop counter's / 2 at batch 1 under the math attention backend with grad mode on,
where nn.MultiheadAttention takes no fast path and every matmul is counted (docs/language.md, section 12).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from codegen_util import build
from torch.nn.attention import SDPBackend, sdpa_kernel
from torch.utils.flop_counter import FlopCounterMode
from torchvision.models import vit_b_16

import archc

pytestmark = pytest.mark.usefixtures("one_thread")
SPEC = Path(__file__).resolve().parent.parent / "specs" / "vit_b_16.arch"
PARAMS = 86_567_656  # issue 17: torchvision's vit_b_16
MACS = 17_563_828_224  # issue 17: the flop counter / 2, every matmul counted


@pytest.fixture(scope="module")
def reference():
    torch.manual_seed(0)
    model = vit_b_16().eval()
    with torch.no_grad():  # torchvision starts the class token, the head and the biases at zero: give them values
        for p in model.parameters():
            p.add_(0.02 * torch.randn_like(p))
    return model


@pytest.fixture(scope="module")
def net():
    return archc.load(SPEC)


def test_figures_equal_torchvisions(net, reference):
    assert net.totals.params == sum(p.numel() for p in reference.parameters()) == PARAMS
    x = torch.randn(1, 3, 224, 224)
    with sdpa_kernel(SDPBackend.MATH), FlopCounterMode(display=False) as counter:
        reference(x)  # grad mode on: no fast path
    assert net.totals.macs == counter.get_total_flops() // 2 == MACS
    assert tuple(net.graph.outputs[0].shape) == (1000,)
    assert tuple(net.layer("encoder.ln").shape) == (197, 768)


def test_outputs_equal_torchvisions_in_both_targets(net, reference):
    state = reference.state_dict()
    model = build(net, "torch")[0]
    assert {k: v.shape for k, v in model.state_dict().items()} == {k: v.shape for k, v in state.items()}
    model.load_state_dict(state, strict=True)
    model.eval()
    x = torch.randn(2, 3, 224, 224, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        expected = reference(x)
        ours = model(x)
    scale = float(expected.abs().max())
    torch.testing.assert_close(ours, expected, rtol=1e-4, atol=1e-4 * scale)
    numpy_model = build(net, "numpy")[0]
    numpy_model.load_state_dict({k: v.numpy() for k, v in state.items()})
    numpy_model.eval()
    np.testing.assert_allclose(numpy_model(x[:1].numpy()), expected[:1].numpy(), rtol=1e-4, atol=1e-4 * scale)
