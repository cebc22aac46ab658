"""Issue 16, item 1: the nested NumPy target writes the classes the nested PyTorch target writes,
one per block definition, by the same class building (nested_torch.py); and a block called with
one layer for two of its inputs is still one class (tree.py's `_ref`)."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import numpy as np
import pytest
import torch
from codegen_util import load_module
from torch.nn import functional

import archc
from archc.codegen import generate
from archc.codegen.nested_numpy import SEQUENTIAL

SPECS = Path(__file__).resolve().parent.parent / "specs"

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
    """The classes of the model (not the NumPy runtime's `Module` and `Sequential`): a block's class
    derives from Module, or from Sequential where it builds a repeat in a loop (regnet's Stage)."""
    return re.findall(r"^class (\w+)\((?:nn\.)?(?:Module|Sequential)\):", code, re.M)


@pytest.mark.parametrize("spec", [p.stem for p in sorted(SPECS.glob("*.arch"))])
def test_the_numpy_classes_are_the_torch_classes(spec):
    """The same classes in the same order: one per block definition, forms merged on its `if`s
    where the PyTorch target merges them, and one loop class where it builds a repeat in a loop
    (regnet's stages, whose repeat counts differ, test_nest_numpy_loops.py); the same constructor
    arguments, after `rng`; the same keys."""
    net = archc.load(SPECS / f"{spec}.arch")
    torch_gen, numpy_gen = generate(net, "torch"), generate(net, "numpy")
    assert _classes(numpy_gen.code.replace("\n".join(SEQUENTIAL), "")) == _classes(torch_gen.code)
    theirs, ours = _arguments(torch_gen.code), _arguments(numpy_gen.code)
    network = _classes(torch_gen.code)[-1]
    assert theirs.pop(network) == [] and ours.pop(network) == ["seed"]
    assert ours == {name: ["rng", *args] for name, args in theirs.items()}
    assert numpy_gen.attrs == torch_gen.attrs


def _arguments(code: str) -> dict[str, list[str]]:
    """Each model class's constructor arguments after self."""
    out = {}
    for node in ast.parse(code).body:
        if isinstance(node, ast.ClassDef) and node.name not in ("Module", "Sequential"):
            for f in node.body:
                if isinstance(f, ast.FunctionDef) and f.name == "__init__":
                    out[node.name] = [a.arg for a in f.args.args[1:]]
    return {name: args for name, args in out.items() if name in _classes(code)}


@pytest.mark.parametrize("spec", ["resnet18", "mobilenet_v2", "shufflenet_v2_x1_0", "googlenet"])
def test_the_numpy_state_dict_lists_torchs_keys_in_torchs_order(spec):
    """An nn.Sequential of layers is computed by the class that builds it (`downsample.0` in ResNet's
    `Basic`, MobileNetV2's `features.0` in the network's class): its arrays are that class's, and
    state_dict() still lists every key where torch's does."""
    net = archc.load(SPECS / f"{spec}.arch")
    want = list(load_module(generate(net, "torch").code).build_model().state_dict())
    assert list(load_module(generate(net, "numpy").code).build_model().state_dict()) == want


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


# parameters named as members of the NumPy runtime's Module (`training`, `state`) and as its `rng`
MEMBER_NAMES = """
block blk(rng, training, state=1) {
  conv c1: rng @ 3x3 /state pad=1
  if training > 8 {
    conv c2: training @ 1x1
  }
}

network H {
  input x: 4x8x8
  blk b1: 8 16 2
  blk b2: 16 4
  blk b3: 16 32 1
}
"""


def test_arguments_named_as_members_of_module_are_renamed_and_compute_torchs_outputs():
    net = archc.loads(MEMBER_NAMES, "h.arch")
    numpy_code = generate(net, "numpy").code
    assert _arguments(numpy_code)["Blk"] == ["rng", "in_channels", "rng_", "training_", "state_"]
    torch.manual_seed(0)
    model = load_module(generate(net, "torch").code).build_model().double().eval()
    nmodel = load_module(numpy_code).build_model()
    nmodel.load_state_dict({k: v.detach().numpy().copy() for k, v in model.state_dict().items()})
    x = torch.randn(2, 4, 8, 8, dtype=torch.float64)
    with torch.no_grad():
        want = model(x).numpy()
    np.testing.assert_allclose(nmodel(x.numpy()), want, rtol=1e-12, atol=1e-12)
    assert nmodel.training is False and set(nmodel.state) == set(model.state_dict())
