"""The bundled specs written after torchvision models compute what torchvision's models compute.

The outside truth is torchvision 0.29 itself: its model is built with random
weights (pretrained ones cannot be downloaded here, and the check is the same
for any weights), its batch-norm statistics are made non-trivial so eval mode
tests more than the identity, and its state_dict goes, by key, into the
generated PyTorch module and into the generated NumPy model. Both must give
torchvision's output in eval mode within 1e-4 relative (issue 15).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
import torchvision
from codegen_util import build, randomise_batch_norm

import archc

SPECS = Path(__file__).resolve().parent.parent / "specs"

# spec -> torchvision's constructor
MODERN = {
    "efficientnet_b0": torchvision.models.efficientnet_b0,
    "mobilenet_v3_small": torchvision.models.mobilenet_v3_small,
    "regnet_y_400mf": torchvision.models.regnet_y_400mf,
    "shufflenet_v2_x1_0": torchvision.models.shufflenet_v2_x1_0,
}


def _torchvision(spec: str) -> torch.nn.Module:
    torch.manual_seed(0)
    model = MODERN[spec](weights=None)
    randomise_batch_norm(model, seed=1)
    return model.eval()


def _relative_error(got, want) -> float:
    got, want = np.asarray(got, dtype=np.float64), np.asarray(want, dtype=np.float64)
    return float(np.abs(got - want).max() / np.abs(want).max())


@pytest.fixture(scope="module", params=sorted(MODERN))
def case(request):
    spec = request.param
    reference = _torchvision(spec)
    x = torch.randn(2, 3, 224, 224, generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        want = reference(x)
    return archc.load(SPECS / f"{spec}.arch"), reference, x, want


def test_the_generated_torch_module_gives_torchvision_output(case):
    net, reference, x, want = case
    model, _, _ = build(net, "torch")
    model.load_state_dict(reference.state_dict(), strict=True)
    with torch.no_grad():
        got = model.eval()(x)
    assert got.shape == want.shape == (2, 1000)
    assert _relative_error(got, want) < 1e-4


def test_the_generated_numpy_model_gives_torchvision_output(case):
    net, reference, x, want = case
    model, _, _ = build(net, "numpy")
    model.load_state_dict({k: v.numpy() for k, v in reference.state_dict().items()})  # torchvision's keys
    model.eval()
    got = model(x.numpy())
    assert got.dtype == np.float32 and got.shape == (2, 1000)
    assert _relative_error(got, want) < 1e-4
