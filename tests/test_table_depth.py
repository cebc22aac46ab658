"""Issue 19, item 4: tables folded by block (`archc table --depth N`), share-of-total columns, and the block
structure in JSON.

The outside truth is torchvision: the bundled ResNets, MobileNetV2 and GoogLeNet name their blocks as
torchvision names its submodules (`layer1.0`, `features.3`, `inception4a.branch2`), so each folded row and
each block instance of the JSON is compared with `tv.get_submodule(name)`: its parameter count, its running
statistics, its MACs (torch's flop counter on that submodule, at the input it gets in the whole model: flops / 2)
and its output shape; the shares are those figures over torchvision's totals.
"""

from __future__ import annotations

import csv
import io
import json
import re
import subprocess
import sys

import pytest
import torch
import torchvision
from conftest import ROOT, SPECS
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from torch.utils.flop_counter import FlopCounterMode

import archc
from archc.diagram import to_dot

ANSI = re.compile(r"\x1b\[[0-9;]*m")
TORCHVISION = {
    "resnet18": torchvision.models.resnet18,
    "resnet50": torchvision.models.resnet50,
    "mobilenet_v2": torchvision.models.mobilenet_v2,
    "googlenet": lambda **kw: torchvision.models.googlenet(aux_logits=False, init_weights=False, **kw),
}
NETS = {name: archc.load(SPECS / f"{name}.arch") for name in TORCHVISION}
_MEASURED: dict = {}


def measured(name: str) -> dict:
    """torchvision's figures for every submodule, by name: params, running statistics, MACs (flop counter,
    flops / 2, at the input the submodule gets in the whole model) and output shape; "" is the whole model."""
    if name in _MEASURED:
        return _MEASURED[name]
    torch.manual_seed(0)
    model = TORCHVISION[name](weights=None).eval()
    inputs, outputs = {}, {}

    def record(module_name):
        def hook(_module, args, output):
            inputs[module_name], outputs[module_name] = args, output

        return hook

    modules = dict(model.named_modules())
    for module_name, module in modules.items():
        module.register_forward_hook(record(module_name))
    with torch.no_grad():
        model(torch.randn(1, 3, 224, 224))
    figures = {}
    for module_name, module in modules.items():
        if module_name not in inputs:
            continue  # not run (an identity torchvision never calls)
        with torch.no_grad(), FlopCounterMode(display=False) as counter:
            module(*inputs[module_name])
        figures[module_name] = {
            "params": sum(p.numel() for p in module.parameters()),
            "buffers": sum(b.numel() for n, b in module.named_buffers() if not n.endswith("num_batches_tracked")),
            "macs": counter.get_total_flops() // 2,
            "output_shape": list(outputs[module_name].shape[1:]),
        }
    _MEASURED[name] = figures
    return figures


def document(name: str, **options) -> dict:
    return json.loads(NETS[name].table("json", **options))


def run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "archc", *args], capture_output=True, text=True, cwd=ROOT, env=_env(), timeout=600
    )


def _env() -> dict:
    import os

    return {**os.environ, "PYTHONPATH": str(ROOT), "NO_COLOR": "1"}


@pytest.mark.parametrize(("name", "depth"), [("resnet18", 0), ("resnet18", 1), ("resnet50", 1), ("googlenet", 0)])
def test_a_folded_row_is_its_torchvision_block(name, depth, one_thread):
    tv = measured(name)
    whole = tv[""]
    rows = document(name, depth=depth)["layers"]
    blocks = [row for row in rows if row["kind"] == "block"]
    assert blocks and all(row["kind"] == "layer" for row in rows if row not in blocks)
    for row in blocks:
        block = tv[row["name"]]
        assert row["params"] == block["params"], row["name"]
        assert row["buffers"] == block["buffers"], row["name"]
        assert row["macs"] == block["macs"], row["name"]
        assert row["output_shape"] == block["output_shape"], row["name"]
        assert row["params_percent"] == pytest.approx(100 * block["params"] / whole["params"], rel=1e-12)
        assert row["macs_percent"] == pytest.approx(100 * block["macs"] / whole["macs"], rel=1e-12)


def test_resnet18_at_depth_1_has_a_row_per_basic_block():
    names = [row["name"] for row in document("resnet18", depth=1)["layers"]]
    basic = [f"layer{i}.{j}" for i in range(1, 5) for j in range(2)]
    assert names == ["image", "conv1", "bn1", "relu", "maxpool", *basic, "avgpool", "flatten1", "fc"]
    rows = {row["name"]: row for row in document("resnet18", depth=1)["layers"]}
    assert rows["layer2.0"]["inputs"] == ["layer1.1"] and rows["layer1.0"]["inputs"] == ["maxpool"]
    assert rows["layer1.0"]["type"] == "basic" and rows["avgpool"]["inputs"] == ["layer4.1"]


@pytest.mark.parametrize("name", list(TORCHVISION))
def test_every_block_instance_in_the_json_is_its_torchvision_module(name, one_thread):
    tv = measured(name)
    data = document(name)
    compared = 0
    for block in data["blocks"]:
        if block["name"] not in tv:
            continue  # a block torchvision does not make a module of (GoogLeNet's conv + bn pairs are)
        compared += 1
        module = tv[block["name"]]
        figures = {key: block[key] for key in ("params", "buffers", "macs", "output_shape")}
        assert figures == module, block["name"]
    assert compared >= len(data["blocks"]) // 2
    # the structure: a block holds the layers whose path names it, and sits in the blocks its path names
    names = {block["name"]: block for block in data["blocks"]}
    for block in data["blocks"]:
        held = [layer["name"] for layer in data["layers"] if block["name"] in layer["block_path"]]
        assert block["layers"] == held
        assert block["block_path"] == [outer for outer in block["block_path"] if outer in names]
        for outer in block["block_path"]:
            assert set(block["layers"]) <= set(names[outer]["layers"])


@pytest.mark.parametrize("name", ["resnet18", "resnet50", "mobilenet_v2"])
def test_the_grand_totals_do_not_change_with_depth(name, one_thread):
    whole = measured(name)[""]
    net = NETS[name]
    full = document(name)
    footers = set()
    for depth in (None, 0, 1, 2, 3, 9):
        data = document(name, depth=depth)
        assert data["totals"] == full["totals"]
        assert sum(row["params"] for row in data["layers"]) == whole["params"]
        assert sum(row["macs"] for row in data["layers"]) == whole["macs"]
        assert sum(row["buffers"] for row in data["layers"]) == whole["buffers"]
        for key in ("elem_ops", "activations", "memory_bytes"):
            assert sum(row[key] or 0 for row in data["layers"]) == sum(row[key] or 0 for row in full["layers"])
        lines = net.table(depth=depth).splitlines()
        footers.add(tuple(next(line for line in lines if line.strip().startswith("total ")).split()))
    assert len(footers) == 1
    assert f"{whole['params']:,}" in footers.pop()


def test_depth_folds_the_blocks_the_diagram_folds():
    net = NETS["googlenet"]
    for depth in (0, 1, 2):
        rows = {row["name"] for row in document("googlenet", depth=depth)["layers"] if row["kind"] == "block"}
        boxes = set(re.findall(r'^\s+"([^"]+)" \[label=.*shape=box3d', to_dot(net, depth=depth), re.M))
        assert rows == boxes - {"legend_block"} and rows


def test_a_depth_below_every_block_is_the_whole_table_and_says_it_is_folded():
    net = NETS["resnet18"]
    assert [row["name"] for row in document("resnet18", depth=3)["layers"]] == [n.name for n in net.layers]
    folded = net.table("markdown", depth=3).splitlines()
    (note,) = [line for line in folded if line.startswith("Folded at depth 3:")]
    assert "nested deeper (0, holding 0 of the 54 layers)" in note
    folded.remove(note)
    assert folded == net.table("markdown").splitlines()


def test_repeated_blocks_fold_the_same_way():
    """`repeat` numbers the instances (`stage_1`, `stage_2`): each is one row, and equals its torch module."""
    text = """
block stage(ch) {
  conv conv: ch @ 3x3 pad=1 bias=false
  bn bn -> relu
}
network Repeated {
  input x: 3x16x16
  repeat 3 { stage stage: 8 }
  globalavgpool pool
  flatten
  dense fc: 10
}
"""
    net = archc.loads(text, "repeated.arch")
    rows = json.loads(net.table("json", depth=0))["layers"]
    assert [row["name"] for row in rows] == ["x", "stage_1", "stage_2", "stage_3", "pool", "flatten1", "fc"]

    def stage(channels):
        return torch.nn.Sequential(torch.nn.Conv2d(channels, 8, 3, padding=1, bias=False), torch.nn.BatchNorm2d(8))

    torch_stages = [stage(3), stage(8), stage(8)]
    total = sum(p.numel() for s in torch_stages for p in s.parameters()) + 8 * 10 + 10
    for row, module in zip(rows[1:4], torch_stages):
        with FlopCounterMode(display=False) as counter:
            module(torch.randn(1, module[0].in_channels, 16, 16))
        assert row["params"] == sum(p.numel() for p in module.parameters())
        assert row["macs"] == counter.get_total_flops() // 2
        assert row["params_percent"] == pytest.approx(100 * row["params"] / total, rel=1e-12)
    csv_rows = list(csv.reader(io.StringIO(net.table("csv", depth=0))))
    assert [row[0] for row in csv_rows[1:]] == [row["name"] for row in rows]


@pytest.mark.parametrize("fmt", ["rich", "markdown", "html", "csv", "json"])
def test_every_format_shows_the_folded_rows_from_the_command_line(fmt, one_thread):
    tv = measured("resnet18")
    done = run("table", "specs/resnet18.arch", "--depth", "1", "--format", fmt)
    assert done.returncode == 0, done.stderr
    out = done.stdout
    assert "layer1.0.conv1" not in (out if fmt != "json" else [row["name"] for row in json.loads(out)["layers"]])
    for i in range(1, 5):
        for j in range(2):
            name = f"layer{i}.{j}"
            params, macs = tv[name]["params"], tv[name]["macs"]
            share = f"{100 * params / tv['']['params']:.1f}%"
            if fmt == "json":
                row = next(r for r in json.loads(out)["layers"] if r["name"] == name)
                assert (row["params"], row["macs"]) == (params, macs)
            elif fmt == "csv":
                row = next(r for r in csv.DictReader(io.StringIO(out)) if r["name"] == name)
                assert (int(row["params"]), int(row["macs"]), row["type"]) == (params, macs, "basic")
                assert float(row["params_percent"]) == pytest.approx(100 * params / tv[""]["params"], rel=1e-12)
            else:
                line = next(line for line in out.splitlines() if re.search(rf"(^|[ |>]){re.escape(name)}\b", line))
                for figure in (f"{params:,}", f"{macs:,}", share):
                    assert figure in line, (name, figure, line)
    if fmt in ("rich", "markdown", "html"):
        assert "Folded at depth 1: each block instance nested deeper (8, holding 46 of the 54 layers)" in out


@pytest.mark.parametrize("width", [80, 120])
@pytest.mark.parametrize(("name", "depth"), [("resnet18", 0), ("resnet50", 1), ("googlenet", 1), ("mobilenet_v2", 0)])
def test_every_figure_of_a_folded_table_is_whole_in_a_narrow_terminal(name, depth, width):
    net = NETS[name]
    text = ANSI.sub("", net.table(width=width, color=True, depth=depth))
    assert "\u2026" not in text
    lines = text.splitlines()
    end = next(i for i, line in enumerate(lines) if line.strip().startswith("total "))
    assert max(len(line) for line in lines[: end + 1]) <= width
    shown = {line.split()[0]: line for line in lines[: end + 1] if line.startswith("  ") and line.split()}
    for row in document(name, depth=depth)["layers"]:
        line = shown[row["name"]]
        assert f" {row['params']:,} " in f"{line} " and f" {row['macs']:,}" in line, row["name"]
        assert f" {'x'.join(map(str, row['output_shape']))} " in line, row["name"]
    assert f"Folded at depth {depth}" in text


def test_the_share_columns_are_the_first_default_columns_left_out():
    net = NETS["resnet18"]
    text = net.table(width=155, color=True)
    assert "Left out to fit 155 columns, so that no figure is cut: params %, MACs % (--columns chooses)." in text
    assert "so that no figure is cut: MACs % (--columns chooses)." in net.table(width=160, color=True)
    assert "params %" in net.table(width=200, color=True)
    header = ANSI.sub("", net.table(width=80, color=True)).splitlines()[2].split()
    assert header == ["layer", "output", "params", "MACs"]


def test_share_columns_by_name(one_thread):
    tv = measured("resnet18")
    text = NETS["resnet18"].table("csv", columns=["name", "params_percent", "macs_percent"], depth=0)
    rows = {row["name"]: row for row in csv.DictReader(io.StringIO(text))}
    for name in ("layer1", "layer2", "layer3", "layer4", "fc"):
        assert float(rows[name]["params_percent"]) == pytest.approx(100 * tv[name]["params"] / tv[""]["params"])
        assert float(rows[name]["macs_percent"]) == pytest.approx(100 * tv[name]["macs"] / tv[""]["macs"])
    shares = ["name", "params_percent", "macs_percent"]
    markdown = NETS["resnet18"].table("markdown", columns=shares, depth=0)
    layer4 = [100 * tv["layer4"][key] / tv[""][key] for key in ("params", "macs")]
    assert f"| layer4 | {layer4[0]:.1f}% | {layer4[1]:.1f}% |" in markdown
    assert 0 < tv["bn1"]["params"] / tv[""]["params"] < 0.0005 and tv["bn1"]["macs"] == 0
    assert "| bn1 | <0.1% | 0.0% |" in NETS["resnet18"].table("markdown", columns=shares)  # a share that is there


def test_training_memory_folds_too(one_thread):
    """The saved-for-backward bytes of a folded row are what torch's autograd saves in its block's layers."""
    from trainmem_util import saved_by_layer

    net = archc.load(SPECS / "resnet18.arch", batch=2)
    training = net.training_memory("adam")
    saved, _ = saved_by_layer(net, 2)
    data = json.loads(net.table("json", depth=1, training=training))
    for row in data["layers"]:
        layers = row["layers"] if row["kind"] == "block" else [row["name"]]
        assert (row["saved_bytes"] or 0) == sum(saved[layer] for layer in layers), row["name"]
    text = net.table(depth=1, training=training, columns=["name", "params", "saved"])
    assert text.count("Training (adam, batch 2") == 1 and "Folded at depth 1" in text


def test_bad_depths_are_refused():
    net = NETS["resnet18"]
    with pytest.raises(ValueError, match="depth"):
        net.table(depth=-1)
    for bad in (True, 1.5, "1"):
        with pytest.raises(TypeError, match="depth"):
            net.table(depth=bad)
    done = run("table", "specs/resnet18.arch", "--depth", "-1")
    assert done.returncode == 2 and "--depth: must be 0 or more" in done.stderr
    done = run("table", "specs/resnet18.arch", "--depth", "one")
    assert done.returncode == 2 and "is not a whole number" in done.stderr


@st.composite
def nested_specs(draw) -> str:
    """A valid spec of blocks calling blocks up to three deep, in repeats too (some of them empty), with
    layers between them at every level."""
    levels = draw(st.integers(1, 3))
    lines = []
    for k in range(levels):
        body = [f"  conv: ch @ {draw(st.sampled_from(['1x1', '3x3 pad=1']))}", *([f"  b{k - 1}: ch"] if k else [])]
        for _ in range(draw(st.integers(0, 3))):
            kind = draw(st.sampled_from(["conv", "bn", "call", "repeat"] if k else ["conv", "bn"]))
            lower = f"b{draw(st.integers(0, k - 1))}" if k else ""
            body.append(
                {
                    "conv": "  conv: ch @ 3x3 pad=1",
                    "bn": "  bn -> relu",
                    "call": f"  {lower}: ch",
                    "repeat": f"  repeat {draw(st.integers(0, 2))} {{ {lower}: ch }}",
                }[kind]
            )
        lines += [f"block b{k}(ch) {{", *body, "}"]
    lines += ["network Nested {", "  input x: 4x8x8"]
    for _ in range(draw(st.integers(1, 4))):
        call = f"b{draw(st.sampled_from([levels - 1, 0]))}: {draw(st.sampled_from([2, 4, 8]))}"
        lines.append(draw(st.sampled_from([f"  {call}", f"  repeat 2 {{ {call} }}", "  maxpool: 2x2 /1"])))
    return "\n".join([*lines, "  globalavgpool", "  flatten", "  dense: 10", "}"]) + "\n"


@settings(max_examples=60, derandomize=True, database=None, deadline=None, suppress_health_check=list(HealthCheck))
@given(nested_specs())
def test_folding_random_nested_blocks_keeps_every_figure_and_the_diagrams_blocks(text):
    """At every depth the rows add up to the whole network, each folded block instance is the box the
    diagram draws at that depth, its figures are the sums of the layers its name prefixes, and every format
    says it is folded."""
    net = archc.loads(text, "nested.arch")
    full = json.loads(net.table("json"))["layers"]
    for depth in range(4):
        rows = json.loads(net.table("json", depth=depth))["layers"]
        for key in ("params", "buffers", "macs", "elem_ops", "activations", "memory_bytes"):
            assert sum(r[key] or 0 for r in rows) == sum(r[key] or 0 for r in full), key
        blocks = [r for r in rows if r["kind"] == "block"]
        boxes = set(re.findall(r'^\s+"([^"]+)" \[label=.*shape=box3d', to_dot(net, depth=depth), re.M))
        assert {r["name"] for r in blocks} == boxes - {"legend_block"}
        for row in blocks:
            held = [r for r in full if r["name"].startswith(row["name"] + ".")]
            assert row["layers"] == [r["name"] for r in held]
            assert row["params"] == sum(r["params"] for r in held) and row["macs"] == sum(r["macs"] for r in held)
            assert len(row["block_path"]) == depth
        for fmt in ("rich", "markdown", "html"):
            assert f"Folded at depth {depth}:" in net.table(fmt, depth=depth)
        assert [line.split(",")[0] for line in net.table("csv", depth=depth).splitlines()[1:]] == [
            r["name"] for r in rows
        ]
