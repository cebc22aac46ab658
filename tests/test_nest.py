"""Issue 16: what a spec writes nested stays nested, from the graph to the generated code.

The expanded graph keeps, for every layer, the block instance that defines it (with the
block's definition and the values its parameters took there) and its repeat iteration.
"""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import torchvision
from codegen_util import load_module, measured
from test_codegen_random import inputs as random_inputs

import archc
from archc import syntax
from archc.codegen import generate
from archc.diagnostics import ArchError

STAGES = """block unit(ch, stride=1) {
  conv a: ch @ 3x3 /stride pad=1
  bn b -> relu
}

block stage(ch, n) {
  unit first: ch 2
  repeat n { unit: ch }
}

network Net {
  input x: 3x32x32
  stage s1: 8 2
  stage s2: 16 1
}
"""


def test_every_layer_knows_its_instances_their_blocks_and_arguments():
    net = archc.loads(STAGES, "t.arch")
    node = net.layer("s1.unit2.a")
    assert node.local == "a"
    assert [(i.block, i.name, i.args) for i in node.instance.path] == [
        ("stage", "s1", {"ch": 8, "n": 2}),
        ("unit", "unit2", {"ch": 8, "stride": 1}),
    ]
    assert node.instance.iteration == (2,)  # the second iteration of the repeat in `stage`
    assert node.instance.prefix == "s1.unit2."
    first = net.layer("s2.first.a").instance
    assert (first.args, first.iteration, first.parent.args) == ({"ch": 16, "stride": 2}, (), {"ch": 16, "n": 1})
    top = net.layer("x")
    assert (top.local, top.instance, top.iteration) == ("x", None, ())


def test_a_repeat_in_a_body_numbers_its_layers_iterations():
    net = archc.loads("network N {\n  input x: 4\n  repeat 3 { dense d: 4 }\n}\n", "t.arch")
    dense = [(n.local, n.iteration) for n in net.graph if n.op == "dense"]
    assert dense == [("d_1", (1,)), ("d_2", (2,)), ("d_3", (3,))]


# -- 2. names that spell a real model's keys: numbers, and nn.Sequential's numbering ----------

NUMBERED = """block features(ch) {
  conv 0: ch @ 3x3 pad=1 -> relu
  conv: ch @ 3x3 pad=1 -> relu
  maxpool: 2x2 /2
}

block unit(ch) {
  conv conv1: ch @ 3x3 pad=1
  bn bn1
}

block stage(ch, n) {
  unit 0: ch
  repeat n - 1 { unit: ch -> relu }
}

network Numbered {
  input x: 3x16x16
  features f: 8
  stage layer1: 8 3
  add (layer1.3.bn1, f.4, f)
  conv 7 (layer1.0.bn1): layer1.1.conv1.channels @ 1x1
}
"""


def both_readers(text: str):
    """The tree of `text`, after checking the fast reader and lark agree on it."""
    fast = syntax._read_fast(text, "t.arch")
    slow = syntax.to_ast(syntax.parser().parse(text), "t.arch")
    assert fast == slow
    return slow


def test_numbers_name_layers_and_a_numbered_body_numbers_as_sequential_does():
    both_readers(NUMBERED)
    net = archc.loads(NUMBERED, "t.arch")
    names = [n.name for n in net.graph]
    # torch.nn.Sequential(conv, ReLU, conv, ReLU, MaxPool) numbers the modules 0, 2 and 4 that hold weights or pool
    assert names[1:4] == ["f.0", "f.2", "f.4"]
    # stage: the unit written 0, then the repeat's units and the activation of each call, as a Sequential
    # of (unit, unit, ReLU, unit, ReLU) has them
    assert names[4:12] == [
        "layer1.0.conv1",
        "layer1.0.bn1",
        "layer1.1.conv1",
        "layer1.1.bn1",
        "layer1.2",
        "layer1.3.conv1",
        "layer1.3.bn1",
        "layer1.4",
    ]
    assert names[-1] == "7"
    assert net.layer("7").inputs == ["layer1.0.bn1"]
    torch_seq = torch.nn.Sequential(
        torch.nn.Conv2d(3, 8, 3), torch.nn.ReLU(), torch.nn.Conv2d(8, 8, 3), torch.nn.ReLU()
    )
    assert [k for k in torch_seq.state_dict() if k.endswith("weight")] == ["0.weight", "2.weight"]


CLASHES = [
    # a number written twice
    ("network N {\n  input x: 4\n  dense 1: 3\n  dense 1: 3\n}\n", "`1` is defined twice", "2"),
    # a number an unnamed layer above has taken (conv 1, its relu 2, the unnamed conv 3)
    ("network N {\n  input x: 3x8x8\n  conv 1: 4 @ 3x3 -> relu\n  conv: 4 @ 3x3\n  conv 3: 4 @ 3x3\n}\n", "`3`", "4"),
    # in a block: the repeat numbered 1 and 2 before the 2 written after it
    (
        "block b() {\n  dense 0: 3\n  repeat 2 { relu }\n  dense 2: 3\n}\nnetwork N {\n  input x: 4\n  b\n}\n",
        "`2`",
        "3",
    ),
]


@pytest.mark.parametrize(("text", "message", "number"), CLASHES)
def test_a_number_taken_twice_is_located_and_renumbered_by_its_fix(text, message, number):
    with pytest.raises(ArchError) as info:
        archc.loads(text, "t.arch")
    (diag,) = [d for d in info.value.diagnostics if d.severity == "error"]
    assert (diag.code, message in diag.message) == ("E0204", True)
    assert [f.text for f in diag.fixes] == [number]
    text = diag.fixes[0].apply(text)
    assert number in [n.local for n in archc.loads(text, "t.arch").graph]


def test_an_unnamed_layer_that_fails_keeps_its_number():
    text = "network N {\n  input 0: 4\n  dense: 3\n  densse: 3\n  relu\n}\n"
    with pytest.raises(ArchError) as info:
        archc.loads(text, "t.arch")
    assert [d.code for d in info.value.diagnostics if d.severity == "error"] == ["E0201"]  # no clash follows it
    fixed = info.value.diagnostics[0].fixes[0].apply(text)
    assert [n.name for n in archc.loads(fixed, "t.arch").graph] == ["0", "1", "2", "3"]


# -- 3. the PyTorch target nests: a class per block, state_dict keys that follow the names ---------

SPECS = Path(__file__).resolve().parent.parent / "specs"
TORCHVISION = [
    "alexnet",
    "vgg16",
    "resnet18",
    "resnet50",
    "googlenet",
    "mobilenet_v2",
    "efficientnet_b0",
    "mobilenet_v3_small",
    "shufflenet_v2_x1_0",
    "convnext_tiny",
]
# the spec has no auxiliary heads and takes its input as it is (torchvision's defaults for weights=None differ)
OPTIONS = {"googlenet": {"aux_logits": False, "transform_input": False, "init_weights": True}}


def nested_module(net, tmp_path: Path, name: str = "generated"):
    """The generated torch module, imported from a file (torch.jit.script reads the source)."""
    path = tmp_path / f"{name}.py"
    path.write_text(generate(net, "torch").code)
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize("name", TORCHVISION)
def test_a_spec_after_torchvision_loads_its_state_dict_strictly_by_key(name, tmp_path):
    torch.manual_seed(0)
    theirs = getattr(torchvision.models, name)(weights=None, **OPTIONS.get(name, {})).eval()
    net = archc.load(SPECS / f"{name}.arch")
    ours = nested_module(net, tmp_path).build_model().eval()
    ours.load_state_dict(theirs.state_dict(), strict=True)
    x = torch.randn(1, 3, 224, 224)
    with torch.no_grad():
        assert torch.allclose(ours(x), theirs(x), rtol=0, atol=1e-6)


def test_a_block_is_a_class_whose_sizes_are_expressions_of_its_arguments():
    code = generate(archc.load(SPECS / "resnet50.arch"), "torch").code
    # torchvision's Bottleneck: conv2 reads conv1's width channels, conv3 makes width * 4
    assert "        self.conv1 = nn.Conv2d(in_channels, width, kernel_size=1, bias=False)\n" in code
    assert "        self.conv3 = nn.Conv2d(width, width * 4, kernel_size=1, bias=False)\n" in code
    assert "        self.bn3 = nn.BatchNorm2d(width * 4)\n" in code
    # a numbered chain is an nn.Sequential, in the block and in the network
    assert "self.downsample = nn.Sequential(" in code
    assert "in_channels, width * 4, kernel_size=1, stride=stride, bias=False" in code
    assert "        self.layer2 = nn.Sequential(\n" in code
    # one class for the block, its `if` in __init__ and forward, as torchvision's Bottleneck
    assert code.count("(nn.Module):") == 2
    assert "        if stride != 1 or in_channels != width * 4:\n" in code
    assert "            self.downsample = None\n" in code
    assert "        if self.downsample is not None:\n" in code
    assert len(code.splitlines()) < 200  # against 357 flat


def test_sizes_of_a_block_a_block_calls_are_derived_through_it():
    text = """block unit(w) {
  conv a: w @ 1x1
  conv b: w * 2 @ 1x1
}
block pair(w) {
  unit first: w
  unit second: w
}
network N {
  input x: 3x8x8
  pair p: 4
  pair q: 6
}
"""
    code = generate(archc.loads(text, "t.arch"), "torch").code
    # second reads first's w * 2 channels: an expression of pair's w, not a number per instance
    assert "        self.first = Unit(in_channels, w)\n        self.second = Unit(w * 2, w)\n" in code
    assert "self.p = Pair(3, 4)" in code and "self.q = Pair(8, 6)" in code


def test_a_value_no_expression_gives_becomes_an_argument_of_its_own():
    text = """block padded(w, k) {
  conv c: w @ k x k pad=same
}
network N {
  input x: 3x8x8
  padded p: 4 3
  padded q: 4 5
}
"""
    net = archc.loads(text, "t.arch")
    code = generate(net, "torch").code
    assert "def __init__(self, in_channels, w, k, c_value):" in code  # `same` padding: 1 for k 3, 2 for k 5
    assert "self.p = Padded(3, 4, 3, 1)" in code and "self.q = Padded(4, 4, 5, 2)" in code
    flat = load_module(generate(net, "torch", flat=True).code).build_model()
    nested = load_module(code).build_model()
    nested.load_state_dict({k.replace("_", "."): v for k, v in flat.state_dict().items()}, strict=True)
    x = torch.randn(2, 3, 8, 8)
    assert torch.equal(nested(x), flat(x))


# The language models at 128 tokens: the same code as at their full length (their position embeddings
# are sliced to it), without the quadratic attention and the 50,257 logits a token that made gpt2 the
# slowest test of the suite.
SHORTER = {"gpt2": {"input_ids": (128,)}, "bert_base": {"input_ids": (128,)}}


@pytest.mark.parametrize("spec", sorted(p.stem for p in SPECS.glob("*.arch")))
def test_the_nested_module_computes_what_the_flat_one_does_with_the_header_figures(spec):
    net = archc.load(SPECS / f"{spec}.arch", inputs=SHORTER.get(spec))
    nested, gen = load_module(generate(net, "torch").code).build_model().eval(), generate(net, "torch")
    flat_gen = generate(net, "torch", flat=True)
    flat = load_module(flat_gen.code).build_model().eval()
    inputs = random_inputs(net, 1, torch.Generator().manual_seed(0))  # token ids for an input of tokens
    assert measured(nested, *inputs) == (net.totals.params, net.totals.buffers, net.totals.macs)
    state = flat.state_dict()
    by_key = {}
    for layer, attr in flat_gen.attrs.items():  # the flat keys renamed to the nested ones, layer by layer
        for key, value in state.items():
            if key == attr or key.startswith(attr + "."):
                by_key[gen.attrs[layer] + key[len(attr) :]] = value
    nested.load_state_dict(by_key, strict=True)
    numpy_model = load_module(generate(net, "numpy").code).build_model()
    numpy_model.load_state_dict(nested.state_dict())  # the NumPy target's keys are the nested ones
    with torch.no_grad():
        got, want = nested(*inputs), flat(*inputs)
    assert torch.equal(got, want) if isinstance(got, torch.Tensor) else all(map(torch.equal, got, want))
    out = numpy_model(*(x.numpy() for x in inputs))
    assert np.allclose(
        out if isinstance(out, np.ndarray) else out[0],
        got if isinstance(got, torch.Tensor) else got[0],
        rtol=1e-4,
        atol=1e-4,
    )


def test_unused_layers_and_odd_names_in_blocks_keep_the_header_figures():
    text = """block b(w) {
  conv forward: w @ 3x3 pad=1
  conv spare (in): 5 @ 1x1
  relu __x
  conv training (forward): w @ 1x1
}
network N {
  input x: 4x6x6
  b eval: 4
  b state_dict: 8
  conv 0 (eval): 4 @ 1x1
  add (eval, 0)
}
"""
    net = archc.loads(text, "t.arch")
    assert {n.name for n in net.graph.unused} == {"eval.__x", "state_dict.__x", "state_dict.training"}
    for reach_in in (False, True):  # reading inside an instance: the flat module
        if reach_in:
            net = archc.loads(text.replace("conv 0 (eval)", "conv 0 (eval.forward)"), "t.arch")
        gen = generate(net, "torch")
        assert ("class B(nn.Module)" in gen.code) is not reach_in
        model = load_module(gen.code).build_model()
        assert measured(model, torch.randn(1, 4, 6, 6)) == (net.totals.params, net.totals.buffers, net.totals.macs)
        assert {k.rsplit(".", 1)[0] for k in model.state_dict()} == set(
            gen.attrs[n.name] for n in net.graph if n.op == "conv"
        )


def test_generated_nested_code_is_deterministic_scriptable_and_exportable(tmp_path):
    check_deterministic_scriptable_and_exportable("resnet18", 32, tmp_path)


def check_deterministic_scriptable_and_exportable(name: str, size: int, tmp_path) -> None:
    """Generated twice, the same code; its module gives one output eager, scripted, exported and
    compiled in one graph."""
    net = archc.load(SPECS / f"{name}.arch", inputs={"image": (3, size, size)})
    assert (
        generate(net, "torch").code
        == generate(archc.load(SPECS / f"{name}.arch", inputs={"image": (3, size, size)}), "torch").code
    )
    model = nested_module(net, tmp_path).build_model().eval()
    x = torch.randn(1, 3, size, size)
    with torch.no_grad():
        want = model(x)
        assert torch.equal(torch.jit.script(model)(x), want)
        assert torch.allclose(torch.export.export(model, (x,)).module()(x), want, rtol=0, atol=1e-6)
        compiled = torch.compile(model, backend="aot_eager", fullgraph=True)
        assert torch.allclose(compiled(x), want, rtol=0, atol=1e-5)


def test_the_flat_form_stays_available_from_the_command_line():
    spec = str(SPECS / "resnet18.arch")
    nested = subprocess.run([sys.executable, "-m", "archc", "codegen", spec], capture_output=True, text=True)
    flat = subprocess.run([sys.executable, "-m", "archc", "codegen", spec, "--flat"], capture_output=True, text=True)
    assert (nested.returncode, flat.returncode) == (0, 0)
    assert "class Basic(nn.Module):" in nested.stdout and "self.layer1_0_conv1" not in nested.stdout
    assert "class Basic" not in flat.stdout and "        self.layer1_0_conv1 = nn.Conv2d(" in flat.stdout
