"""Issue 19: in a narrow terminal no figure is cut short. The table leaves out low-priority columns
(and says which) instead of letting rich shrink every column to `1,…` and `117…`.

The figures a row must show whole are the layer's own, as the JSON output gives them.
"""

from __future__ import annotations

import json
import re

import pytest
from conftest import SPECS

import archc

ANSI = re.compile(r"\x1b\[[0-9;]*m")
SPEC_NAMES = ["lenet5", "resnet18", "googlenet", "efficientnet_b0", "convnext_tiny"]


def table_lines(text: str) -> list[str]:
    """The table's lines: from the title to the totals row."""
    lines = ANSI.sub("", text).splitlines()
    end = next(i for i, line in enumerate(lines) if line.strip().startswith("total "))
    return lines[: end + 1]


@pytest.mark.parametrize("width", [80, 120])
@pytest.mark.parametrize("spec", SPEC_NAMES)
def test_every_figure_is_whole_in_a_narrow_terminal(spec, width):
    net = archc.load(SPECS / f"{spec}.arch")
    text = net.table(width=width, color=True)
    assert "\u2026" not in ANSI.sub("", text)  # no ellipsis anywhere
    lines = table_lines(text)
    assert max(map(len, lines)) <= width
    rows = {line.split()[0]: line for line in lines if line.startswith("  ") and line.split()}
    for layer in json.loads(net.table(format="json"))["layers"]:
        row = rows[layer["name"]]  # every layer has its row, its name whole
        assert f" {layer['params']:,} " in f"{row} " and f" {layer['macs']:,}" in row, layer["name"]
        assert f" {'x'.join(map(str, layer['output_shape']))} " in row, layer["name"]


def test_the_table_says_which_columns_it_left_out():
    net = archc.load(SPECS / "resnet18.arch")
    text = ANSI.sub("", net.table(width=80, color=True))
    header = table_lines(text)[2].split()
    assert header == ["layer", "output", "params", "MACs"]
    note = "Left out to fit 80 columns, so that no figure is cut: type, filter, stride, padding, activation size, "
    assert note in text
    wide = net.table(width=200)
    assert "Left out" not in wide and "filter" in wide


def test_a_wrapped_header_keeps_its_figures_whole():
    """Between 'everything on one line' and 'leave columns out', headers wrap at their spaces and texts
    with spaces (filters: `64x3x3, 64`) wrap too, while figures and memory sizes (`588.0 KiB`) do not."""
    net = archc.load(SPECS / "resnet18.arch")
    text = net.table(width=175, color=True)  # 179 columns show every text on one line
    lines = table_lines(text)
    assert "Left out" not in text and max(map(len, lines)) <= 175
    assert any(" 588.0 KiB" in line for line in lines)
