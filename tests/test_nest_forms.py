"""Issue 16, item 1: one class per block definition in the nested PyTorch target, whatever forms
its instances take (a branch of an `if` taken in some only, a child built otherwise): the forms
are told apart by the block's `if`s, written in __init__ and forward as torchvision writes them."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import torch
import torchvision
from codegen_util import load_module
from test_nest import OPTIONS, check_deterministic_scriptable_and_exportable, nested_module

import archc
from archc import ast, syntax
from archc.codegen import generate

SPECS = Path(__file__).resolve().parent.parent / "specs"


def _statements(body):
    for stmt in body:
        if isinstance(stmt, ast.Repeat):
            yield from _statements(stmt.body)
        elif isinstance(stmt, ast.If):
            for inner in stmt.bodies:
                yield from _statements(inner)
        else:
            yield stmt


def _blocks(path: Path) -> tuple[str, dict[str, ast.Block]]:
    """The network's name and the blocks its body calls, directly or through other blocks."""
    module = syntax.parse(path.read_text(), str(path))
    blocks = list(module.blocks)
    for imported in module.imports:  # (one level: the specs import no file that imports)
        blocks += syntax.parse((path.parent / imported.path).read_text(), imported.path).blocks
    defined = {b.name: b for b in blocks}
    (network,) = module.networks
    used: dict[str, ast.Block] = {}
    todo = list(network.body)
    while todo:
        for stmt in _statements([todo.pop()]):
            if stmt.op in defined and stmt.op not in used:
                used[stmt.op] = defined[stmt.op]
                todo += defined[stmt.op].body
    return network.name, used


def _numbered(block: ast.Block) -> bool:
    """Whether the block's layers are named by numbers (`conv 0`, `bn 1`): an nn.Sequential, no class."""
    names = [stmt.name for stmt in _statements(block.body)]
    return bool(names) and names[0] is not None and names[0].isdigit() and all(n is None or n.isdigit() for n in names)


def _camel(name: str) -> str:
    return "".join(word[:1].upper() + word[1:] for word in name.split("_") if word)


def _classes(code: str) -> list[str]:
    return re.findall(r"^class (\w+)\((?:nn\.)?(?:Module|Sequential)\):", code, re.M)


@pytest.mark.parametrize(
    "spec",
    [p.stem for p in sorted(SPECS.glob("*.arch"))],
)
def test_every_block_a_spec_uses_is_one_class_named_after_it(spec):
    network, used = _blocks(SPECS / f"{spec}.arch")
    classes = _classes(generate(archc.load(SPECS / f"{spec}.arch"), "torch").code)
    assert len(classes) == len(set(classes))
    assert classes[-1] == network
    named = {_camel(name): block for name, block in used.items()}
    # every class is a block's, named after it (no `Unit_`, `Unit_1`); every block not numbered is one
    assert set(classes[:-1]) <= set(named)
    assert {name for name, block in named.items() if not _numbered(block)} <= set(classes)


@pytest.mark.parametrize("name", ["mobilenet_v2", "efficientnet_b0", "shufflenet_v2_x1_0"])
def test_blocks_of_several_forms_load_torchvision_strictly_and_give_its_output(name, tmp_path):
    torch.manual_seed(0)
    theirs = getattr(torchvision.models, name)(weights=None, **OPTIONS.get(name, {})).eval()
    module = nested_module(archc.load(SPECS / f"{name}.arch"), tmp_path)
    ours = module.build_model().eval()
    ours.load_state_dict(theirs.state_dict(), strict=True)
    x = torch.randn(2, 3, 224, 224)
    with torch.no_grad():
        assert torch.allclose(ours(x), theirs(x), rtol=0, atol=1e-5)
    block = {"mobilenet_v2": "Inverted", "efficientnet_b0": "Mbconv", "shufflenet_v2_x1_0": "Unit"}[name]
    assert [c for c in _classes(Path(module.__file__).read_text()) if c.startswith(block)] == [block]


UNIT = """block unit(w, mode) {
  if mode == 1 {
    conv pre: in.channels @ 1x1
  } else if mode == 2 {
    bn norm -> relu
  }
  conv c: w @ 3x3 pad=1
  if in.channels == w {
    add (c, in)
  } else {
    conv sc (in): w @ 1x1
    add (c, sc)
  }
}
network N {
  input x: 4x8x8
  unit a: 4 1
  unit b: 4 2
  unit f: 6 0
  unit d: 6 1
  unit e: 6 2
}
"""


def test_forms_of_two_ifs_one_with_an_else_if_are_one_class_that_computes_what_the_flat_code_does(tmp_path):
    net = archc.loads(UNIT, "t.arch")
    code = generate(net, "torch").code
    assert _classes(code) == ["Unit", "N"]
    assert "        if mode == 1:\n" in code and "        elif mode == 2:\n" in code
    assert "            self.sc = None\n" in code and "        if self.pre is not None:\n" in code
    flat = load_module(generate(net, "torch", flat=True).code).build_model().eval()
    model = nested_module(net, tmp_path).build_model().eval()
    model.load_state_dict({k.replace("_", ".", 1): v for k, v in flat.state_dict().items()}, strict=True)
    x = torch.randn(2, 4, 8, 8)
    with torch.no_grad():
        want = flat(x)
        assert torch.equal(model(x), want)
        assert torch.equal(torch.jit.script(model)(x), want)


@pytest.mark.parametrize("name", ["mobilenet_v2", "shufflenet_v2_x1_0"])
def test_a_merged_class_is_scriptable_exportable_and_compiles_in_one_graph(name, tmp_path):
    # mobilenet's Inverted branches on a flag (`self.use_add`), shufflenet's Unit on `self.branch1 is not None`
    check_deterministic_scriptable_and_exportable(name, 64, tmp_path)


def test_a_number_forward_reads_that_differs_between_instances_is_kept_by_init(tmp_path):
    # convnext's stages give their blocks drop rates 0.0059, 0.0235, 0.0588 and 0.0941 (the spec's
    # `stage` rows): one Cnblock, whose forward reads the rate its instance was made with
    code = generate(archc.load(SPECS / "convnext_tiny.arch"), "torch").code
    assert [c for c in _classes(code) if c.startswith("Cnblock")] == ["Cnblock"]
    assert "        self.p = p\n" in code and "self.p, self.training" in code
    model = nested_module(archc.load(SPECS / "convnext_tiny.arch"), tmp_path).build_model()
    rates = {index: {block.p for block in model.features[index]} for index in (1, 3, 5, 7)}
    assert rates == {1: {0.0059}, 3: {0.0235}, 5: {0.0588}, 7: {0.0941}}


def test_sizes_inside_a_sequential_built_inline_are_the_spec_s_expressions():
    # mobilenet's expansion width is `in.channels * t` in `layers`' `cbr 0`, built inline in Inverted's
    # nn.Sequential: the constructor takes the block's parameters only, as torchvision's InvertedResidual
    code = generate(archc.load(SPECS / "mobilenet_v2.arch"), "torch").code
    assert "    def __init__(self, in_channels, out, t, stride):\n" in code
    assert (
        "        if t != 1:\n" in code and "nn.Conv2d(in_channels, in_channels * t, kernel_size=1, bias=False)" in code
    )
    assert "        self.use_add = stride == 1 and in_channels == out\n" in code
