"""Every layer case of test_layers_torch.py, through both code generators.

Each case there pairs an `.arch` statement with a torch twin written by hand
(independently of archc). Here the statement goes through `archc codegen`:

- the generated torch model, given the twin's weights by position, must
  compute what the twin computes (same shape, same numbers);
- the generated NumPy model, given the generated torch model's state_dict,
  must compute the same numbers too.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from codegen_util import build
from test_layers_torch import CEIL_OVERHANG, CEIL_SWEEP, LAYER_CASES, Case, spec

import archc


def _cases():
    return [*LAYER_CASES, *CEIL_SWEEP, *(c.param() for c in CEIL_OVERHANG)]


@pytest.mark.parametrize("case", _cases())
def test_generated_layer_computes_what_its_torch_twin_computes(case: Case):
    net = archc.loads(spec(case.inputs, case.stmt), "case.arch")
    twin = case.build().eval()
    torch.manual_seed(0)
    model, _, _ = build(net, "torch")
    model.eval()
    theirs = list(twin.state_dict().values())
    ours = model.state_dict()
    assert [tuple(v.shape) for v in ours.values()] == [tuple(v.shape) for v in theirs]
    with torch.no_grad():
        for value in theirs:
            if value.is_floating_point():
                value.copy_(torch.randn(value.shape) * 0.5 + (1.0 if value.dim() == 1 else 0.0))
    model.load_state_dict(dict(zip(ours, theirs)))
    gen = torch.Generator().manual_seed(1)
    xs = [torch.randn(2, *shape, generator=gen) for shape in case.inputs.values()]
    with torch.no_grad():
        want = twin(*xs)
        got = model(*xs)
    assert got.shape == want.shape
    torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-5, equal_nan=True)

    numpy_model, _, _ = build(net, "numpy")
    numpy_model.load_state_dict(model.state_dict())
    numpy_model.eval()
    out = numpy_model(*(x.numpy() for x in xs))
    assert out.dtype == np.float32
    scale = max(float(want.abs().max()), 1.0)
    np.testing.assert_allclose(out, want.numpy(), rtol=1e-4, atol=1e-5 * scale)
