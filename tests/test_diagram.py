"""Diagrams: the DOT has the network's layers and connections, with the right labels, and real dot draws it."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys

import pytest
from conftest import ROOT, SPECS

import archc
from archc.diagram import DiagramError, render, to_dot
from archc.ops.base import fmt_shape

SPEC_FILES = sorted(SPECS.glob("*.arch"))
NODE = re.compile(
    r'^\s*"(?P<id>[^"]+)" \[label=<(?P<label>.*)>, fillcolor="[^"]+"(?:, shape=box3d)?(?:, group="[^"]+")?\];$', re.M
)
EDGE = re.compile(r'^\s*"(?P<a>[^"]+)" -> "(?P<b>[^"]+)" \[label=" (?P<label>[^"]*)", weight=\d\];$', re.M)
CLUSTER = re.compile(r'subgraph "cluster_(?P<id>[^"]+)" \{\n\s*graph \[label="(?P<label>[^"]+)"')


def parse(dot: str):
    nodes = {m["id"]: m["label"] for m in NODE.finditer(dot)}
    edges = {(m["a"], m["b"]): m["label"] for m in EDGE.finditer(dot)}
    return nodes, edges


@pytest.mark.parametrize("spec", SPEC_FILES, ids=lambda p: p.stem)
def test_one_node_per_layer_and_one_edge_per_connection_with_their_shapes(spec):
    net = archc.load(spec)
    nodes, edges = parse(to_dot(net))
    assert set(nodes) == {n.name for n in net.layers}
    assert set(edges) == {(src, n.name) for n in net.layers for src in n.inputs}
    for (a, _b), label in edges.items():
        shape = net.layer(a).shape
        assert label == fmt_shape(shape) + (" ids" if shape.vocab is not None else "")  # token ids say so
    for layer in net.layers:
        label = nodes[layer.name]
        assert f"<b>{layer.name.split('.')[-1]}</b>" in label
        assert fmt_shape(layer.shape) in label


def test_a_node_shows_type_settings_activation_and_shape():
    nodes, _ = parse(to_dot(archc.load(SPECS / "lenet5.arch")))
    assert nodes["C1"] == (
        '<b>C1</b><br/><font point-size="10">conv 6@5x5 \u2192 tanh</font><br/><font point-size="10">6x28x28</font>'
    )
    nodes, _ = parse(to_dot(archc.load(SPECS / "resnet18.arch")))
    assert "conv 64@7x7 /2 pad 3" in nodes["conv1"]


def test_full_detail_adds_params_and_macs_and_name_detail_keeps_only_the_type():
    net = archc.load(SPECS / "lenet5.arch")
    full, _ = parse(to_dot(net, detail="full"))
    assert "156 params, 117,600 MACs" in full["C1"]  # 6*(25+1); 6*28*28*25
    brief, _ = parse(to_dot(net, detail="name"))
    assert brief["C1"] == '<b>C1</b><br/><font point-size="10">conv</font>'


def test_blocks_are_labelled_clusters_nested_as_in_the_spec():
    dot = to_dot(archc.load(SPECS / "resnet18.arch"))
    clusters = {m["id"]: m["label"] for m in CLUSTER.finditer(dot)}
    assert clusters["layer1"] == "layer1 (layer)"
    assert clusters["layer2.0"] == "0 (basic)"
    assert clusters["layer2.0.downsample"] == "downsample (projection)"
    # the cluster of layer2 holds the one of its first block
    inner = dot.index('subgraph "cluster_layer2.0"')
    assert dot.index('subgraph "cluster_layer2"') < inner < dot.index('subgraph "cluster_layer3"')


def torch_bottleneck_params(cin: int, width: int, stride: int) -> int:
    """torchvision's first Bottleneck of layer1, built in torch: the outside count for its collapsed node."""
    from torch import nn

    layers = [
        nn.Conv2d(cin, width, 1, bias=False),
        nn.BatchNorm2d(width),
        nn.Conv2d(width, width, 3, stride, 1, bias=False),
        nn.BatchNorm2d(width),
        nn.Conv2d(width, width * 4, 1, bias=False),
        nn.BatchNorm2d(width * 4),
        nn.Conv2d(cin, width * 4, 1, stride, bias=False),  # the projected shortcut
        nn.BatchNorm2d(width * 4),
    ]
    return sum(p.numel() for p in nn.Sequential(*layers).parameters())


def test_depth_collapses_blocks_into_nodes_with_their_totals():
    net = archc.load(SPECS / "resnet50.arch")
    nodes, edges = parse(to_dot(net, depth=1, detail="full"))
    bottlenecks = {".".join(i for _b, i in n.scope[:2]) for n in net.layers if len(n.scope) > 1}
    top = {n.name for n in net.layers if not n.scope}
    assert set(nodes) == top | bottlenecks
    assert len(bottlenecks) == 16  # 3 + 4 + 6 + 3 bottleneck blocks
    label = nodes["layer1.0"]
    assert f"{torch_bottleneck_params(64, 64, 1):,} params" in label
    assert "9 layers, out 256x56x56" in label  # 3 conv + 3 bn, the shortcut's conv + bn, the add
    assert ("layer1.0", "layer1.1") in edges
    zero, _ = parse(to_dot(net, depth=0))
    assert set(zero) == top | {"layer1", "layer2", "layer3", "layer4"}


def test_fold_merges_shape_preserving_layers_into_the_layer_before():
    net = archc.load(SPECS / "resnet18.arch")
    nodes, edges = parse(to_dot(net, fold=True))
    assert "bn1" not in nodes and "relu" not in nodes and "conv1" in nodes
    assert "conv 64@7x7 /2 pad 3 + bn + relu" in nodes["conv1"]  # the spec's relu is a layer, as torchvision's
    assert ("conv1", "maxpool") in edges  # bn1's consumer now reads the conv's box
    # a bn whose input feeds two layers is not folded: the shortcut needs the value before it
    assert all(net.layer(n).op not in ("bn", "relu") for n in nodes)


def test_rankdir_and_determinism():
    net = archc.load(SPECS / "googlenet.arch")
    assert "rankdir=LR" in to_dot(net, rankdir="LR")
    cmd = [sys.executable, "-m", "archc", "diagram", str(SPECS / "googlenet.arch"), "--depth", "1"]
    runs = {subprocess.run(cmd, env={**os.environ, "PYTHONHASHSEED": s}, capture_output=True).stdout for s in "123"}
    assert len(runs) == 1


def test_the_legend_lists_the_kinds_the_diagram_uses():
    dot = to_dot(archc.load(SPECS / "lenet5.arch"))
    legend = dot[dot.index("cluster_legend") :]
    assert re.findall(r'"legend_(\w+)" \[label', legend) == ["input", "convolution", "pooling", "dense", "reshape"]


@pytest.mark.parametrize("spec, options", [("lenet5", {}), ("resnet18", {"depth": 1}), ("googlenet", {"fold": True})])
def test_real_dot_renders_svg(spec, options, tmp_path):
    assert shutil.which("dot"), "graphviz is missing: run `sh .ci/install-graphviz` (the README's test command does)"
    net = archc.load(SPECS / f"{spec}.arch")
    out = render(to_dot(net, **options), tmp_path / f"{spec}.svg")
    svg = out.read_text()
    assert svg.lstrip().startswith("<?xml") and "</svg>" in svg
    assert f"<title>{net.name}</title>" in svg
    for layer in net.layers[:5]:
        if not layer.scope:
            assert f"<title>{layer.name}</title>" in svg


def test_png_and_pdf_by_extension(tmp_path):
    net = archc.load(SPECS / "lenet5.arch")
    assert render(to_dot(net), tmp_path / "a.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert render(to_dot(net), tmp_path / "a.pdf").read_bytes()[:5] == b"%PDF-"


def test_without_dot_it_says_so_and_still_writes_the_dot(tmp_path, monkeypatch):
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    with pytest.raises(DiagramError, match="graphviz's `dot` is not installed"):
        render(to_dot(archc.load(SPECS / "lenet5.arch")), tmp_path / "lenet.svg")
    assert (tmp_path / "lenet.dot").read_text().startswith('digraph "LeNet5"')
    assert not (tmp_path / "lenet.svg").exists()


def test_the_command_line(tmp_path):
    def archc_cli(*args, env=None):
        return subprocess.run([sys.executable, "-m", "archc", *args], capture_output=True, text=True, env=env)

    run = archc_cli("diagram", str(SPECS / "lenet5.arch"), "-o", str(tmp_path / "l.dot"), "--rankdir", "LR")
    assert run.returncode == 0, run.stderr
    assert "rankdir=LR" in (tmp_path / "l.dot").read_text()
    run = archc_cli("diagram", str(SPECS / "lenet5.arch"), "-o", str(tmp_path / "l.jpg"))
    assert run.returncode == 2 and "cannot tell the format" in run.stderr
    env = {**os.environ, "PATH": str(tmp_path / "nothing")}
    run = archc_cli("diagram", str(SPECS / "lenet5.arch"), "-o", str(tmp_path / "l.svg"), env=env)
    assert run.returncode == 1 and "graphviz's `dot` is not installed" in run.stderr
    assert "Traceback" not in run.stderr and (tmp_path / "l.dot").exists()
    assert archc_cli("diagram", str(SPECS / "lenet5.arch"), "--depth", "-1").returncode == 2


def test_python_api_returns_a_graphviz_source_for_notebooks():
    source = archc.load(SPECS / "lenet5.arch").diagram(depth=1)
    assert type(source).__name__ == "Source" and source.source.startswith('digraph "LeNet5"')
    assert hasattr(source, "_repr_mimebundle_")  # how Jupyter shows it inline


def test_readme_diagrams_were_made_by_archc():
    readme = (ROOT / "README.md").read_text()
    images = re.findall(r"!\[[^\]]*\]\((docs/img/[^)]+\.svg)\)", readme)
    assert len(images) >= 3
    for image in images:
        svg = (ROOT / image).read_text()
        assert "Generated by graphviz" in svg and "legend" in svg
