"""Issue 16: what a spec writes nested stays nested, from the graph to the generated code.

The expanded graph keeps, for every layer, the block instance that defines it (with the
block's definition and the values its parameters took there) and its repeat iteration.
"""

from __future__ import annotations

import pytest
import torch

import archc
from archc import syntax
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
