"""Darknet `.cfg` files: the real files of pjreddie's and AlexeyAB's Darknet, against Darknet's own log.

The files and the log are in tests/data/realspecs (copied unchanged from the
Darknet repositories and a published log; see SOURCES.md there). The figures
checked are Darknet's, not archc's: the per-layer output shapes and BFLOPs
AlexeyAB's Darknet prints for yolov3-tiny at 416x416, its "Total BFLOPS 5.571",
8,852,366 trainable parameters and 5.565 BFLOPs for the convolutions alone.
"""

from __future__ import annotations

import re
import subprocess
import sys

import pytest
import torch
from codegen_util import build
from conftest import ROOT

import archc
from archc.conventions import darknet_bflops
from archc.importers import import_text

REAL = ROOT / "tests" / "data" / "realspecs"
DARKNET = sorted((REAL / "darknet").glob("*/*.cfg"))
TINY = REAL / "darknet" / "alexeyab" / "yolov3-tiny.cfg"
LOG = REAL / "logs" / "darknet_alexeyab_yolov3-tiny_416_layer_table.txt"


# Darknet's names in its layer table -> the names archc gives the section's layer
KINDS = {"conv": "conv", "max": "maxpool", "yolo": "yolo", "route": "route", "upsample": "upsample"}


def log_rows():
    """(index, kind, output (C, H, W) or None, BFLOPs text or None) per line of Darknet's table, and the total."""
    rows, total = [], None
    for line in LOG.read_text().splitlines():
        if line.startswith("#"):
            continue
        if found := re.match(r"Total BFLOPS ([\d.]+)", line.strip()):
            total = found[1]
            continue
        found = re.match(r"\s*(\d+) (\w+)(.*)$", line)
        if not found:
            continue
        index, kind, rest = int(found[1]), found[2], found[3]
        out = re.search(r"->\s*(\d+) x\s*(\d+) x\s*(\d+)", rest)
        bf = re.search(r"([\d.]+) BF", rest)
        shape = (int(out[3]), int(out[2]), int(out[1])) if out else None  # Darknet prints W x H x C
        rows.append((index, kind, shape, bf[1] if bf else None))
    return rows, total


@pytest.fixture(scope="module")
def tiny():
    return archc.load(TINY)


def test_the_log_is_read():
    rows, total = log_rows()
    assert len(rows) == 24 and total == "5.571"
    assert rows[0] == (0, "conv", (16, 416, 416), "0.150")


def test_yolov3_tiny_has_darknet_shapes_and_bflops_at_every_layer(tiny):
    rows, _total = log_rows()
    figures = darknet_bflops(tiny)
    for index, kind, shape, bf in rows:
        name = f"{KINDS[kind]}{index}"
        layer = tiny.layer(name)
        if shape is not None:
            assert layer.shape == shape, (name, layer.shape, shape)
        if kind == "conv":
            section = tiny.layer(f"bn{index}") if f"bn{index}" in tiny.graph.nodes else layer
            assert section.shape == shape  # the section's output: after its batch norm
        value = figures.of(name)
        assert (f"{value:.3f}" if value is not None else None) == bf, (name, value, bf)
    assert set(figures.bflops) == {f"{KINDS[k]}{i}" for i, k, _s, bf in rows if bf is not None}


def test_yolov3_tiny_totals_are_darknet_s(tiny):
    _rows, total = log_rows()
    figures = darknet_bflops(tiny)
    assert f"{float(figures.total):.3f}" == total == "5.571"
    assert f"{float(figures.conv):.3f}" == "5.565"  # the 5.56 Bn Darknet's site publishes
    assert tiny.totals.params == 8_852_366
    assert figures.conv * 10**9 == tiny.totals.flops  # BFLOPs of the convolutions = 2 x MACs


def test_batch_normalize_makes_a_bias_free_conv_and_a_bn_of_darknet_s_parameter_count(tiny):
    conv, bn = tiny.layer("conv0"), tiny.layer("bn0")
    assert (conv.params, bn.params, bn.buffers) == (3 * 3 * 3 * 16, 2 * 16, 2 * 16)
    assert bn.activation == ("leaky_relu", {"alpha": 0.1})
    last = tiny.layer("conv15")  # no batch norm: a bias of its own, linear
    assert (last.params, last.activation) == (512 * 255 + 255, None)


def test_the_2x2_stride_1_max_pool_keeps_13x13(tiny):
    pool = tiny.layer("maxpool11")
    assert pool.geom["pads"] == ((0, 1), (0, 1)) and pool.shape == (512, 13, 13)


def test_routes_and_yolo_heads(tiny):
    assert tiny.layer("route17").inputs == ["bn13"] and tiny.layer("route17").op == "identity"
    assert tiny.layer("route20").inputs == ["upsample19", "bn8"] and tiny.layer("route20").shape == (384, 26, 26)
    assert [n.name for n in tiny.graph.outputs] == ["yolo16", "yolo23"]
    assert tiny.warnings == []


@pytest.mark.parametrize("size", [320, 416, 608])
def test_yolo_at_another_resolution(size):
    net = archc.load(TINY, inputs={"image": (3, size, size)})
    assert [n.shape for n in net.graph.outputs] == [(255, size // 32, size // 32), (255, size // 16, size // 16)]
    assert net.totals.params == 8_852_366


def test_the_table_command_prints_darknet_s_totals():
    run = subprocess.run(
        [sys.executable, "-m", "archc", "table", str(TINY), "--convention", "darknet", "--input", "3x416x416"],
        capture_output=True,
        text=True,
    )
    assert run.returncode == 0, run.stderr
    assert "Total BFLOPS 5.571 (convolutions 5.565)" in run.stdout
    row = next(line for line in run.stdout.splitlines() if line.split()[:1] == ["conv12"])
    assert row.split()[-1] == "1.595"


# -- every file --------------------------------------------------------------------------------


def figures(net):
    return [(n.op, n.shape, n.params, n.buffers, n.macs, n.activation) for n in net.layers]


@pytest.mark.parametrize("path", DARKNET, ids=lambda p: f"{p.parent.name}/{p.name}")
def test_every_darknet_file_imports_and_its_arch_text_gives_the_same_figures(path):
    net = archc.load(path)
    assert not net.warnings, [w.message for w in net.warnings]
    text = path.read_text()
    structured = archc.loads(import_text(text, str(path)), "imported.arch")
    flat = archc.loads(import_text(text, str(path), blocks=False), "flat.arch")
    assert figures(structured) == figures(net) == figures(flat)
    assert [n.name for n in flat.layers] == [n.name for n in net.layers]
    assert flat.totals == net.totals
    assert structured.totals.as_dict() | {"peak_layer": None} == net.totals.as_dict() | {"peak_layer": None}
    assert not structured.warnings and not flat.warnings


def test_known_totals_of_published_networks():
    params = {
        "alexeyab/yolov3.cfg": 61_949_149,
        "alexeyab/yolov4.cfg": 64_363_101,
        "alexeyab/vgg-16.cfg": 138_357_544,
        "pjreddie/yolov2.cfg": 50_962_889,
    }
    for name, count in params.items():
        assert archc.load(REAL / "darknet" / name).totals.params == count, name


def test_the_printed_yolov3_uses_blocks_and_repeats():
    text = import_text((REAL / "darknet" / "alexeyab" / "yolov3.cfg").read_text(), "yolov3.cfg")
    assert "repeat 8 {" in text and "block residual(" in text
    assert "anchors=10,13,16,30" in text  # what has no equivalent, as a comment
    assert len(text.splitlines()) < 100  # 181 layers


def test_darknet_s_shortcut_rule_for_a_projection_free_resnet():
    net = archc.load(REAL / "darknet" / "pjreddie" / "resnet18.cfg")
    strided = next(n for n in net.layers if n.op == "shortcut" and n.geom["fits"][0][1] != (1, 1))
    first, other = (net.layer(i).shape for i in strided.inputs)
    assert strided.shape == first and other[0] < first[0] and other[1] == 2 * first[1]


# -- generated code ------------------------------------------------------------------------------


def test_generated_pytorch_runs_and_has_the_analysed_parameters(tiny):
    model, _gen, _file = build(tiny, "torch")
    model.eval()
    assert sum(p.numel() for p in model.parameters()) == tiny.totals.params == 8_852_366
    with torch.no_grad():
        heads = model(torch.randn(1, 3, 416, 416))
    assert [tuple(h.shape) for h in heads] == [(1, 255, 13, 13), (1, 255, 26, 26)]


def test_generated_pytorch_for_csp_routes_and_darknet_shortcuts_runs():
    for name in ("alexeyab/yolov4-tiny.cfg", "pjreddie/resnet18.cfg", "pjreddie/yolov2-tiny.cfg"):
        net = archc.load(REAL / "darknet" / name, inputs={"image": (3, 64, 64)})
        model, _gen, _file = build(net, "torch")
        with torch.no_grad():
            out = model.eval()(torch.randn(1, 3, 64, 64))
        outs = out if isinstance(out, tuple) else (out,)
        assert [tuple(o.shape[1:]) for o in outs] == [n.shape for n in net.graph.outputs], name
        assert sum(p.numel() for p in model.parameters()) == net.totals.params, name


# -- errors --------------------------------------------------------------------------------------

NET = "[net]\nwidth=32\nheight=32\nchannels=3\n\n"
CONV = "[convolutional]\nfilters=16\nsize=3\npad=1\nactivation=leaky\n\n"


def errors(text: str):
    with pytest.raises(archc.ArchError) as info:
        archc.loads(text, "bad.cfg")
    return info.value


def where(diag):
    return diag.code, diag.span.file, diag.span.line, diag.span.col


def test_an_unreadable_line_is_e0401_at_its_line():
    err = errors(NET + "[convolutional]\nfilters=16\nsize 3\n")
    assert [where(d) for d in err.errors] == [("E0401", "bad.cfg", 8, 1)]
    assert "bad.cfg:8:1: error:" in str(err) and "    8 | size 3" in str(err)


def test_an_unknown_section_is_e0402_with_a_suggestion_and_never_skipped():
    err = errors(NET + CONV + "[maxpol]\nsize=2\nstride=2\n\n[local]\nfilters=2\n")
    assert [where(d) for d in err.errors] == [("E0402", "bad.cfg", 12, 1), ("E0402", "bad.cfg", 16, 1)]
    assert "did you mean `maxpool`?" in err.errors[0].help
    assert "locally connected" in err.errors[1].message


def test_a_bad_value_is_e0403_at_the_value():
    err = errors(NET + "[convolutional]\nfilters=16\nsize=three\nactivation=lekay\n")
    assert [where(d) for d in err.errors] == [("E0403", "bad.cfg", 8, 6)]
    err = errors(NET + "[convolutional]\nfilters=16\nsize=3\nactivation=lekay\n")
    assert [where(d) for d in err.errors] == [("E0403", "bad.cfg", 9, 12)]
    assert "did you mean `leaky`?" in err.errors[0].help


def test_missing_and_unsupported_settings():
    assert [where(d) for d in errors("[convolutional]\nfilters=16\n").errors] == [("E0404", "bad.cfg", 1, 1)]
    err = errors(NET + CONV + "[shortcut]\nfrom=-1\nweights_type=per_feature\n")
    assert [where(d) for d in err.errors] == [("E0405", "bad.cfg", 14, 1)]


def test_a_route_to_no_layer_is_e0406_and_what_follows_stays_quiet():
    err = errors(NET + CONV + "[route]\nlayers=-1, 5\n\n" + CONV)
    assert [where(d) for d in err.errors] == [("E0406", "bad.cfg", 13, 8)]


def test_shape_errors_point_into_the_cfg():
    err = errors(NET + CONV + CONV.replace("pad=1", "stride=2\npad=1") + "[route]\nlayers = -1, -2\n")
    (diag,) = err.errors
    assert where(diag) == ("E0305", "bad.cfg", 20, 1) and diag.message.startswith("concat route2:")


def test_an_unknown_key_warns_like_darknet_s_unused_field():
    net = archc.loads(NET + CONV.replace("filters", "filtres"), "w.cfg")
    (warning,) = net.warnings
    assert (warning.code, warning.span.line) == ("W0401", 7) and warning.help == ["did you mean `filters`?"]


def test_the_import_command_writes_a_spec(tmp_path):
    out = tmp_path / "tiny.arch"
    run = subprocess.run(
        [sys.executable, "-m", "archc", "import", str(TINY), "-o", str(out)], capture_output=True, text=True
    )
    assert run.returncode == 0, run.stderr
    assert archc.load(out).totals.params == archc.load(TINY).totals.params == 8_852_366
    bad = tmp_path / "bad.cfg"
    bad.write_text(NET + "[maxpol]\n")
    run = subprocess.run([sys.executable, "-m", "archc", "import", str(bad)], capture_output=True, text=True)
    assert run.returncode == 1 and f"{bad}:6:1: error: [maxpol] is not supported [E0402]" in run.stderr
    assert "Traceback" not in run.stderr and not run.stdout
