"""Issue 15: specs/convnext_tiny.arch is torchvision's convnext_tiny, weight for weight.

The outside truth is torchvision's model itself, built with weights=None (nothing is
downloaded): its state_dict, loaded by key (strict) into the generated PyTorch module and
from there into the generated NumPy model, must give torchvision's output in eval mode
within 1e-4 relative.

A random initialisation starts every layer scale at 1e-6, which would make each
block's residual branch invisible in the output; the test draws them (and the norms'
weights) at random, so every layer counts.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torchvision
from codegen_util import build
from conftest import SPECS

import archc

SPEC = SPECS / "convnext_tiny.arch"


def torchvision_model() -> torch.nn.Module:
    torch.manual_seed(0)
    model = torchvision.models.convnext_tiny(weights=None).eval()
    gen = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for name, value in model.named_parameters():
            if name.endswith("layer_scale"):
                value.copy_(0.2 + 0.3 * torch.rand(value.shape, generator=gen))
            elif value.dim() == 1:  # the norms' weights and every bias
                value.add_(0.1 * torch.randn(value.shape, generator=gen))
    return model


def relative_error(got, want) -> float:
    got, want = np.asarray(got, dtype=np.float64), np.asarray(want, dtype=np.float64)
    return float(np.abs(got - want).max() / np.abs(want).max())


@pytest.fixture(scope="module")
def models():
    """torchvision's model and the generated torch and NumPy models, holding its weights."""
    net = archc.load(SPEC)
    theirs = torchvision_model()
    model, _, _ = build(net, "torch")
    model.load_state_dict(theirs.state_dict(), strict=True)
    numpy_model, _, _ = build(net, "numpy")
    numpy_model.load_state_dict(model.state_dict())
    return net, theirs, model.eval(), numpy_model.eval()


def test_the_spec_has_torchvisions_params_buffers_and_state_dict_shapes(models):
    net, theirs, model, _ = models
    assert len(model.state_dict()) == len(theirs.state_dict()) == 182  # every array paired, shapes equal
    assert sum(p.numel() for p in theirs.parameters()) == net.totals.params == 28_589_128
    assert net.totals.buffers == 0 and not list(theirs.buffers())


def test_the_generated_models_give_torchvisions_output_at_224(models):
    _, theirs, model, numpy_model = models
    x = torch.randn(1, 3, 224, 224, generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        want = theirs(x)
        got = model(x)
    assert got.shape == want.shape == (1, 1000)
    assert relative_error(got, want) < 1e-4
    out = numpy_model(x.numpy())
    assert out.dtype == np.float32 and out.shape == (1, 1000)
    assert relative_error(out, want) < 1e-4
