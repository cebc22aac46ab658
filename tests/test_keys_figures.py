"""Issue 16, item 5: the analyser's params, buffers and MACs are what torch measures on the generated
module (parameters, buffers and torch.utils.flop_counter's FLOPs / 2), nested and flat, for specs
whose layers nothing reads sit anywhere: in the network's body, in a block, in a repeat, in the
branch of an `if`, in a numbered (nn.Sequential-like) block, and under quoted names. Every bundled
spec is measured in its nested form by tests/test_nest.py; the NumPy model holds the same arrays.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from codegen_util import build, measured

import archc

UNUSED = {
    "network": """network N {
  input x: 4x8x8
  conv a: 8 @ 3x3 pad=1
  conv spare (x): 5 @ 1x1
  bn spare_bn (a)
  conv b (a): 4 @ 1x1
}
""",
    "block": """block b(w) {
  conv c: w @ 3x3 pad=1
  conv side (in): 7 @ 1x1
  bn side_bn
  relu (c)
}
network N {
  input x: 4x8x8
  b one: 6
  b two: 4
}
""",
    "repeat": """block unit(w) {
  repeat 2 {
    conv c: w @ 3x3 pad=1
    conv lost (c): 3 @ 1x1
  }
  bn (c_2)
}
network N {
  input x: 4x8x8
  unit u: 6
  repeat 2 { unit: 6 }
}
""",
    "if": """block b(w, stride) {
  conv c: w @ 3x3 /stride pad=1 bias=false
  if stride > 1 {
    conv proj (in): w @ 1x1 /stride
    conv unused (in): 9 @ 1x1 /stride
    add (c, proj)
  } else {
    conv unused (in): 9 @ 1x1
    add (c, in)
  }
}
network N {
  input x: 6x8x8
  b first: 6 2
  b second: 6 1
}
""",
    "numbered": """block seq(w) {
  conv 0: w @ 3x3 pad=1 -> relu
  conv: w @ 1x1
  conv 4 (in): 3 @ 1x1
}
network N {
  input x: 4x8x8
  seq features: 8
  globalavgpool
  flatten
  dense fc: 2
  conv spare (features.0): 2 @ 1x1
}
""",
    "quoted": """block stage(k, w) {
  conv "block{k}-0": w @ 3x3 pad=1
  conv: w @ 1x1
  conv "x-y" (in): w @ 1x1
}
network N {
  input x: 4x8x8
  stage "s-1": 1 6
  stage "s-2": 2 6
}
""",
}


@pytest.mark.parametrize("case", sorted(UNUSED))
@pytest.mark.parametrize("flat", [False, True])
def test_the_header_figures_are_what_torch_measures_with_layers_nothing_reads(case, flat):
    net = archc.loads(UNUSED[case], "t.arch")
    assert net.graph.unused, "the spec has layers nothing reads"
    model, gen, _ = build(net, "torch", flat=flat)
    x = torch.randn(1, *net.graph.inputs[0].shape)
    assert measured(model.eval(), x) == (net.totals.params, net.totals.buffers, net.totals.macs)
    assert f"{net.totals.params:,} parameters, {net.totals.macs:,} MACs per sample" in gen.code  # the header
    numpy_model, _, _ = build(net, "numpy", flat=flat)
    arrays = numpy_model.state_dict()
    assert {k: v.shape for k, v in arrays.items()} == {k: tuple(v.shape) for k, v in model.state_dict().items()}
    numpy_model.load_state_dict(model.state_dict())
    with torch.no_grad():
        want = model(x)
    got = numpy_model.eval()(x.numpy())
    assert np.allclose(got, want.numpy(), rtol=1e-4, atol=1e-5)
