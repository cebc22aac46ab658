"""Issue 15: `archc diagram` draws squeeze-excitation gates as side branches and a shuffle as one node.

The structure of the DOT source is tested, not pixels: in dot, an edge of weight 3 (the
main path) pulls harder than one of weight 1 (a branch or a skip), and the nodes of one
`group` are kept in a straight line. A gate reads as a side branch when the map goes
straight into the multiply (weight 3, the map's node and the multiply's in one group)
and the gate leaves the map (weight 1) and comes back into the multiply (weight 1).
Before, the edge from the map into the gate's pool was the main path (it is the next
layer in the spec), so dot drew the gate in line and the map curving around it.
"""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import pytest

import archc
from archc.diagram import render, to_dot

SPECS = Path(__file__).resolve().parent.parent / "specs"
EDGE = re.compile(r'^  "([^"]+)" -> "([^"]+)" \[label=" ([^"]*)", weight=(\d)\];$', re.MULTILINE)
NODE = re.compile(r'^ *"([^"]+)" \[label=<<b>[^<]*</b><br/><font point-size="10">([^<]*)</font>(.*)\];$', re.MULTILINE)


def parse(dot: str):
    """The edges ((from, to) -> (shape label, weight)), and each node's kind line and attributes."""
    edges = {(a, b): (label, int(weight)) for a, b, label, weight in EDGE.findall(dot)}
    nodes = {name: (kind, rest) for name, kind, rest in NODE.findall(dot)}
    return edges, nodes


def group(nodes, name: str) -> str | None:
    found = re.search(r'group="([^"]+)"', nodes[name][1])
    return found and found.group(1)


# EfficientNet-B0's 16 blocks (features.S.I.block, as torchvision names them): the depthwise conv's
# `dwna` (k - 1), its gate `se` (k) and the projection `cn` (k + 1); k is 1 where the block does not
# expand (stage 1), else 2
EFFICIENTNET_BLOCKS = [
    (f"features.{stage}.{i}.block", 1 if stage == 1 else 2)
    for stage, count in ((1, 1), (2, 2), (3, 2), (4, 3), (5, 3), (6, 4), (7, 1))
    for i in range(count)
]


def test_every_efficientnet_gate_is_a_side_branch_from_the_map_back_into_the_multiply():
    edges, nodes = parse(to_dot(archc.load(SPECS / "efficientnet_b0.arch")))
    assert len(EFFICIENTNET_BLOCKS) == 16
    for block, k in EFFICIENTNET_BLOCKS:
        gate, map_ = f"{block}.{k}", f"{block}.{k - 1}.1"
        (shape, weight) = edges[map_, f"{gate}.scale"]
        assert weight == 3, block  # the map goes straight into the multiply
        assert group(nodes, map_) == group(nodes, f"{gate}.scale") is not None, block
        # the squeeze: globalavgpool -> conv -> silu -> conv -> sigmoid, out of the map and back into the mul
        assert edges[map_, f"{gate}.pool"] == (shape, 1), block
        assert edges[f"{gate}.pool", f"{gate}.fc1"][1] == 3
        assert edges[f"{gate}.fc1", f"{gate}.fc2"][1] == 3
        assert edges[f"{gate}.fc2", f"{gate}.scale"][1] == 1
        assert nodes[f"{gate}.pool"][0] == "globalavgpool global"
        assert nodes[f"{gate}.fc1"][0].endswith("\u2192 silu")
        assert nodes[f"{gate}.fc2"][0].endswith("\u2192 sigmoid")
        assert nodes[f"{gate}.scale"][0] == "mul"
        assert [b for a, b in edges if a == f"{gate}.scale"] == [f"{block}.{k + 1}.0"]
        assert group(nodes, f"{gate}.pool") is None  # the gate is not pulled into the map's line


def test_a_collapsed_gate_is_on_the_main_path_it_multiplies():
    """At --depth 4 each gate is one box holding the multiply: the map's one edge into it is the main path."""
    dot = to_dot(archc.load(SPECS / "efficientnet_b0.arch"), depth=4)
    edges = {(a, b): int(weight) for a, b, _label, weight in EDGE.findall(dot)}
    for block, k in EFFICIENTNET_BLOCKS:
        assert edges[f"{block}.{k - 1}", f"{block}.{k}"] == 3, block
        assert edges[f"{block}.{k}", f"{block}.{k + 1}"] == 3, block
        assert f'"{block}.{k}" [' in dot


@pytest.mark.parametrize("spec", ["mobilenet_v3_small", "regnet_y_400mf"])
def test_every_broadcasting_multiply_takes_its_map_as_the_main_path_and_its_gate_as_a_branch(spec):
    net = archc.load(SPECS / f"{spec}.arch")
    edges, nodes = parse(to_dot(net))
    muls = [node for node in net.layers if node.op == "mul"]
    assert muls
    for mul in muls:
        (map_,) = [src for src in mul.inputs if net.layer(src).shape == mul.shape]
        (gate,) = [src for src in mul.inputs if src != map_]
        assert edges[map_, mul.name][1] == 3 and edges[gate, mul.name][1] == 1
        assert group(nodes, map_) == group(nodes, mul.name) is not None
        # where the gate leaves the map: the pool, defined right after the map, is a branch
        block = mul.name.rsplit(".", 1)[0]
        (entry,) = [n.name for n in net.layers if n.op == "globalavgpool" and n.name.rsplit(".", 1)[0] == block]
        assert edges[map_, entry][1] == 1


def test_a_gate_over_the_networks_input_leaves_it_as_a_branch():
    """The SE block of tests/test_layers_elementwise.py, whose map is the input itself."""
    text = """network SE {
  input x: 16x8x8
  globalavgpool squeeze
  conv reduce: 4 @ 1x1 -> relu
  conv expand: 16 @ 1x1 -> hardsigmoid
  mul gated (x, expand)
}
"""
    edges, nodes = parse(to_dot(archc.loads(text, "se.arch")))
    assert edges["x", "gated"] == ("16x8x8", 3)
    assert edges["x", "squeeze"] == ("16x8x8", 1)
    assert edges["expand", "gated"] == ("16x1x1", 1)
    assert group(nodes, "x") == group(nodes, "gated") == "gated"


def test_a_multiply_of_two_maps_of_one_shape_is_no_gate():
    text = "network M {\n  input x: 4x6x6\n  conv a: 4 @ 1x1\n  conv b (x): 4 @ 1x1\n  mul m (a, b)\n}\n"
    edges, nodes = parse(to_dot(archc.loads(text, "m.arch")))
    assert edges["b", "m"][1] == 3 and edges["a", "m"][1] == 1  # the previous layer, as everywhere else
    assert all(group(nodes, name) is None for name in nodes)


def test_every_shufflenet_shuffle_is_one_node_between_the_join_and_the_next_unit():
    net = archc.load(SPECS / "shufflenet_v2_x1_0.arch")
    edges, nodes = parse(to_dot(net))
    shuffles = [node for node in net.layers if node.op == "shuffle"]
    assert len(shuffles) == 4 + 8 + 4  # one per unit
    for node in shuffles:
        assert nodes[node.name][0] == "shuffle 2 groups"
        (into,) = [a for a, b in edges if b == node.name]
        assert into.endswith(".joined")
    assert len(nodes) == len(net.layers)  # a node per layer: the shuffle is not spelled out in chunks


@pytest.mark.skipif(shutil.which("dot") is None, reason="graphviz's dot is not installed")
@pytest.mark.parametrize("spec", ["efficientnet_b0", "shufflenet_v2_x1_0"])
def test_the_real_dot_draws_them(spec, tmp_path):
    out = render(to_dot(archc.load(SPECS / f"{spec}.arch")), tmp_path / f"{spec}.svg")
    svg = out.read_text()
    assert "Generated by graphviz" in svg and "legend" in svg
