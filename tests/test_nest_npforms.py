"""Issue 16, item 1: the nested NumPy target writes the classes the nested PyTorch target writes,
one per block definition, by the same class building (nested_torch.py); and a block called with
one layer for two of its inputs is still one class (tree.py's `_ref`)."""

from __future__ import annotations

import re

import numpy as np
import torch
from codegen_util import load_module
from torch.nn import functional

import archc
from archc.codegen import generate

# `mix m2 (m1, m1)` gives m1 as `hidden` and as `residual`: the body reads it under both names
ONE_LAYER_FOR_TWO_INPUTS = """
block mix(out) reads (hidden, residual) {
  conv c: out @ 3x3 pad=1
  add (c, residual)
}

network Dup {
  input x: 8x6x6
  conv a: 8 @ 1x1
  conv b (x): 8 @ 1x1
  mix m1 (a, b): 8
  mix m2 (m1, m1): 8
}
"""


def _classes(code: str) -> list[str]:
    return re.findall(r"^class (\w+)\((?:nn\.)?Module\):", code, re.M)


def test_a_block_given_one_layer_for_two_inputs_is_one_class_in_both_targets():
    net = archc.loads(ONE_LAYER_FOR_TWO_INPUTS, "dup.arch")
    torch_code, numpy_code = generate(net, "torch").code, generate(net, "numpy").code
    assert _classes(torch_code) == ["Mix", "Dup"]
    assert [c for c in _classes(numpy_code) if c != "Module"] == ["Mix", "Dup"]
    torch.manual_seed(0)
    model = load_module(torch_code).build_model().double().eval()
    x = torch.randn(2, 8, 6, 6, dtype=torch.float64)
    # what the spec says, in torch's own functions: m = c(hidden) + residual
    w = {k: v.detach() for k, v in model.state_dict().items()}
    a = functional.conv2d(x, w["a.weight"], w["a.bias"])
    b = functional.conv2d(x, w["b.weight"], w["b.bias"])
    m1 = functional.conv2d(a, w["m1.c.weight"], w["m1.c.bias"], padding=1) + b
    want = functional.conv2d(m1, w["m2.c.weight"], w["m2.c.bias"], padding=1) + m1
    with torch.no_grad():
        torch.testing.assert_close(model(x), want, rtol=1e-12, atol=1e-12)
    nmodel = load_module(numpy_code).build_model()
    nmodel.load_state_dict({k: v.numpy().copy() for k, v in w.items()})
    np.testing.assert_allclose(nmodel(x.numpy()), want.numpy(), rtol=1e-12, atol=1e-12)
