"""Issue 16: what a spec writes nested stays nested, from the graph to the generated code.

The expanded graph keeps, for every layer, the block instance that defines it (with the
block's definition and the values its parameters took there) and its repeat iteration.
"""

from __future__ import annotations

import archc

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
