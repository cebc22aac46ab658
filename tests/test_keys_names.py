"""Issue 16, keys: a quoted name spells a state_dict key that is no identifier (torchvision's RegNet
stores `trunk_output.block1.block1-0.f.a.0.weight`), so specs/regnet_y_400mf.arch loads
torchvision's state_dict strictly by key (its outputs: tests/test_torchvision_outputs.py).

The outside truth is torchvision: its RegNet's keys, and its AnyStage (the stage whose blocks
it numbers `block{k}-{i}`) built small, whose output a small spec must give after a load by key.
Every fix a diagnostic proposes is applied and the spec analysed again.
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest
import torch
import torchvision
from codegen_util import build, randomise_batch_norm
from torchvision.models.regnet import AnyStage, ResBottleneckBlock

import archc
from archc import syntax
from archc.diagnostics import ArchError

SPECS = Path(__file__).resolve().parent.parent / "specs"


def both_readers(text: str):
    """The tree of `text`, after checking the fast reader and lark agree on it."""
    fast = syntax._read_fast(text, "t.arch")
    slow = syntax.to_ast(syntax.parser().parse(text), "t.arch")
    assert fast is not None and fast == slow
    return slow


def errors(text: str) -> list:
    with pytest.raises(ArchError) as info:
        archc.loads(text, "t.arch")
    return [d for d in info.value.diagnostics if d.severity == "error"]


def fixed(text: str, diag):
    """`text` with the diagnostic's fixes applied, analysed: it must have no error left."""
    assert diag.fixes, f"{diag.message} proposes no edit"
    for fix in sorted(diag.fixes, key=lambda f: (f.span.line, f.span.col), reverse=True):
        text = fix.apply(text)
    return archc.loads(text, "t.arch")


# A stage as torchvision's AnyStage builds it (RegNet's ResBottleneckBlock, group width 8, bottleneck
# ratio 1, SE a quarter of the block's input), in the spelling of specs/regnet_y_400mf.arch.
STAGE = """
block convbn(out, k=1, stride=1, groups=1) {
  conv 0: out @ k x k /stride pad=k // 2 groups=groups bias=false
  bn   1
}

block convbnrelu(out, k=1, stride=1, groups=1) {
  conv 0: out @ k x k /stride pad=k // 2 groups=groups bias=false
  bn   1 -> relu
}

block se(squeeze) {
  globalavgpool avgpool
  conv fc1: squeeze @ 1x1
  relu activation
  conv fc2: in.channels @ 1x1
  sigmoid scale_activation
  mul  (in, scale_activation)
}

block transform(out, stride) {
  convbnrelu a: out
  convbnrelu b: out 3 stride out // 8
  se         se: (in.channels + 2) // 4
  convbn     c: out
}

block ybottleneck(out, stride) {
  transform f: out stride
  if stride > 1 or in.channels != out {
    convbn proj (in): out 1 stride
    add    (f, proj)
  } else {
    add    (f, in)
  }
  relu     activation
}

block stage(k, out, n) {
  ybottleneck "block{k}-0": out 2
  repeat n - 1 { ybottleneck: out 1 }
}

network Stage {
  input x: 16x16x16
  stage "block3": 3 32 3
}
"""


def _any_stage() -> torch.nn.Module:
    torch.manual_seed(0)
    norm = torch.nn.BatchNorm2d
    stage = AnyStage(16, 32, 2, 3, ResBottleneckBlock, norm, torch.nn.ReLU, 8, 1.0, 0.25, stage_index=3)
    model = torch.nn.Sequential()
    model.add_module("block3", stage)
    randomise_batch_norm(model, seed=1)
    return model.eval()


def test_the_regnet_spec_has_torchvision_regnets_keys_and_loads_them_strictly():
    net = archc.load(SPECS / "regnet_y_400mf.arch")
    reference = torchvision.models.regnet_y_400mf(weights=None)
    for target in ("torch", "numpy"):
        model, _, _ = build(net, target)
        assert set(model.state_dict()) == set(reference.state_dict()), target
    model, gen, _ = build(net, "torch")
    model.load_state_dict(reference.state_dict(), strict=True)
    # one stage class for the four, as torchvision's AnyStage: the key an f-string of its arguments
    assert 'self.add_module(f"block{k}-0", ' in gen.code and 'self.add_module(f"block{k}-{i + 1}", ' in gen.code
    assert "block1_0" not in gen.code  # the key is spelled, never sanitised


def test_a_stage_numbered_by_a_quoted_name_computes_what_torchvisions_any_stage_computes():
    net = archc.loads(STAGE, "stage.arch")
    reference = _any_stage()
    assert sorted({n.name.split(".")[1] for n in net.graph if n.op != "input"}) == ["block3-0", "block3-1", "block3-2"]
    x = torch.randn(2, 16, 16, 16, generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        want = reference(x)
    model, _, _ = build(net, "torch")
    model.load_state_dict(reference.state_dict(), strict=True)
    with torch.no_grad():
        got = model.eval()(x)
    assert torch.allclose(got, want, rtol=0, atol=1e-5)
    numpy_model, _, _ = build(net, "numpy")
    numpy_model.load_state_dict({k: v.numpy() for k, v in reference.state_dict().items()})
    numpy_model.eval()
    np.testing.assert_allclose(numpy_model(x.numpy()), want.numpy(), rtol=0, atol=1e-4)


def test_both_readers_read_quoted_names_in_statements_and_references():
    text = (
        'block b(k) {\n  conv "c{k}-0": 4 @ 1x1\n  relu\n  add ("c{k}-0", "c{k}-1")\n}\n'
        'network N {\n  input x: 4x8x8\n  b "my-b": 7\n  relu (x)\n  add ("my-b"."c7-0", relu1)\n}\n'
    )
    tree = both_readers(text)
    call = tree.networks[0].body[1]
    assert (call.name, call.name_span.col, call.name_span.end_col) == ("my-b", 5, 11)
    net = archc.loads(text, "t.arch")
    assert [n.name for n in net.graph] == ["x", "my-b.c7-0", "my-b.c7-1", "my-b.c7-2", "relu1", "add1"]
    assert net.graph.nodes["add1"].inputs == ["my-b.c7-0", "relu1"]


def test_generated_code_reads_quoted_names_with_getattr_and_is_the_same_every_time():
    text = 'network N {\n  input x: 4x8x8\n  conv "a-0": 4 @ 1x1\n  conv: 4 @ 1x1\n  relu "0x"\n}\n'
    net = archc.loads(text, "t.arch")
    assert [n.name for n in net.graph] == ["x", "a-0", "a-1", "0x"]
    for target in ("torch", "numpy"):
        model, gen, _ = build(net, target)
        assert list(model.state_dict()) == ["a-0.weight", "a-0.bias", "a-1.weight", "a-1.bias"]
        assert build(net, target)[1].code == gen.code
    assert re.search(r'getattr\(self, "a-0"\)\(x\)', build(net, "torch")[1].code)


BAD_NAMES = [
    # a character no key may hold: the fix writes it with `_`
    ('network N {\n  input x: 3x8x8\n  conv "a.b": 4 @ 1x1\n}\n', "E0101", '"a_b"', (3, 8)),
    ('network N {\n  input x: 3x8x8\n  conv "a b\\\\c": 4 @ 1x1\n}\n', "E0101", '"a_b_c"', (3, 8)),
    ('network N {\n  input x: 3x8x8\n  conv "": 4 @ 1x1\n}\n', "E0101", '"layer"', (3, 8)),
    ('network N {\n  input x: 3x8x8\n  conv "{": 4 @ 1x1\n}\n', "E0101", '"layer"', (3, 8)),
    # a name in braces that is no parameter of the block: the fix names the parameter it resembles
    (
        'block b(stage) {\n  conv "s{stag}-0": 4 @ 1x1\n}\nnetwork N {\n  input x: 3x8x8\n  b: 1\n}\n',
        "E0212",
        "stage",
        (2, 11),
    ),
    # a number written twice in a body numbered from a quoted name: the fix renumbers it
    ('network N {\n  input x: 3x8x8\n  conv "s-0": 4 @ 1x1\n  relu\n  relu "s-1"\n}\n', "E0204", '"s-2"', (5, 8)),
]


@pytest.mark.parametrize(("text", "code", "fix", "where"), BAD_NAMES)
def test_a_bad_quoted_name_is_located_and_fixed_by_its_edit(text, code, fix, where):
    (diag,) = errors(text)
    assert (diag.code, (diag.span.line, diag.span.col)) == (code, where)
    assert [f.text for f in diag.fixes] == [fix]
    fixed(text, diag)


def test_a_parameter_that_is_no_whole_number_or_word_cannot_be_spelled_into_a_name():
    text = 'block b(k) {\n  conv "s{k}": 4 @ 1x1\n}\nnetwork N {\n  input x: 3x8x8\n  b: 1.5\n}\n'
    (diag,) = errors(text)
    assert (diag.code, diag.span.line, diag.span.col, diag.span.end_col) == ("E0205", 2, 11, 12)


def test_a_quoted_name_in_a_reference_is_spelled_too():
    text = 'block b(k) {\n  conv "c{k}": 4 @ 1x1\n  relu ("c{q}")\n}\nnetwork N {\n  input x: 3x8x8\n  b: 1\n}\n'
    (diag,) = errors(text)
    assert diag.code == "E0212" and "`q`" in diag.message and diag.span.line == 3


@pytest.mark.parametrize("name", ['"__init__"', '"forward"', '"self"', '"x"', '"in"', '"0"', '"-"'])
def test_no_quoted_name_breaks_the_generated_code(name):
    """Names Python or nn.Module hold already: the code still runs, never injected into."""
    text = f"network N {{\n  input x: 3x8x8\n  conv c: 4 @ 1x1\n  relu {name}\n}}\n"
    try:
        net = archc.loads(text, "t.arch")
    except ArchError as err:  # `in`, `x`: taken, and said so
        assert {d.code for d in err.diagnostics} == {"E0204"}
        return
    for target in ("torch", "numpy"):
        model, _, _ = build(net, target)
        out = model(torch.randn(1, 3, 8, 8) if target == "torch" else np.zeros((1, 3, 8, 8), np.float32))
        assert tuple(out.shape) == (1, 4, 8, 8)
