"""The rich layer table: its fast paths print, byte for byte, what rich's Table prints with every row in it.

`archc table` lays out the rich table itself where it can (rich takes about a
millisecond a row); these tests hold it to rich's own output, at many widths,
with and without colour, and to the Markdown table's figures.
"""

from __future__ import annotations

import re
import subprocess
import sys

import pytest
from conftest import ROOT, SPECS

import archc
from archc.report import table as report

NETS = {name: archc.load(SPECS / f"{name}.arch") for name in ("lenet5", "inception_module", "resnet18")}
WIDTHS = (None, 200, 130, 100, 80, 50, 24, 9, 3)


def whole_rich(net, **options) -> str:
    """The table as rich prints it with every row added to it: the fast paths turned off."""
    saved = report._plain_lines, report._print_table_fast
    report._plain_lines = lambda *args: None
    report._print_table_fast = lambda *args: False
    try:
        return report.render_table(net, "rich", **options)
    finally:
        report._plain_lines, report._print_table_fast = saved


@pytest.mark.parametrize("color", [False, True])
@pytest.mark.parametrize("name", ["lenet5", "inception_module"])
def test_the_rich_table_is_what_rich_prints_at_every_width(name, color):
    net = NETS[name]
    for width in WIDTHS:
        for columns in (None, ["name", "inputs", "rf"], list(report.COLUMNS)):
            options = {"width": width, "color": color, "columns": columns}
            assert report.render_table(net, "rich", **options) == whole_rich(net, **options), options


@pytest.mark.parametrize("color", [False, True])
def test_every_narrow_width_even_columns_with_no_room(color):
    """12 columns need 13 characters of borders: at 13 and below every column is 0 wide and rows are blank."""
    net = NETS["lenet5"]
    for width in range(1, 45):
        options = {"width": width, "color": color, "layout": "hwc", "convention": "darknet"}
        assert report.render_table(net, "rich", **options) == whole_rich(net, **options), options


@pytest.mark.parametrize("options", [{}, {"width": 120, "color": True}, {"width": 70}, {"convention": "caffe"}])
def test_a_larger_table_is_what_rich_prints(options):
    net = NETS["resnet18"]
    assert report.render_table(net, "rich", **options) == whole_rich(net, **options)


@pytest.mark.parametrize("file", ["net[/x]: :smile: [bold].arch", "  spaced  .arch", "ünïcode.arch"])
def test_the_title_is_the_file_name_as_it_is(file):
    net = archc.loads((SPECS / "lenet5.arch").read_text(), file=file)
    for width in (None, 300, 140, 60, 20):
        for color in (False, True):
            text = report.render_table(net, "rich", width=width, color=color)
            assert text == whole_rich(net, width=width, color=color), (width, color)
    assert report.render_table(net, "rich").splitlines()[0] == f"LeNet5 ({file})"


@pytest.mark.parametrize("width", [None, 90, 40])
@pytest.mark.parametrize("color", [False, True])
def test_cells_rich_would_change_are_left_to_rich(monkeypatch, width, color):
    """Markup, :emoji: codes, wide characters and spaces around a cell: rich's to show, as it always did."""
    rows = report.rows

    def odd_rows(net, layout="chw", training=None, depth=None):
        out = rows(net, layout, training, depth)
        out[1]["activation"] = ":smile: and :thumbs_up:"
        out[2]["activation"] = "日本語 wide"
        out[3]["padding"] = " spaced "
        out[4]["type"] = "one  two   three    four"
        return out

    monkeypatch.setattr(report, "rows", odd_rows)
    net = NETS["lenet5"]
    assert report.render_table(net, "rich", width=width, color=color) == whole_rich(net, width=width, color=color)
    out = rows(net)
    marked = [{**out[0], "name": "[bold]x[/bold]"}, *out[1:]]
    monkeypatch.setattr(report, "rows", lambda net, layout="chw", training=None, depth=None: marked)
    assert report.render_table(net, "rich", width=width, color=color) == whole_rich(net, width=width, color=color)


def cells(line: str) -> list[str]:
    return re.split(r" {3,}", line.strip())  # columns are 3 spaces apart at least; cells hold single spaces


@pytest.mark.parametrize("spec", sorted(p.stem for p in SPECS.glob("*.arch")))
def test_the_rich_table_and_the_markdown_table_agree(spec):
    net = archc.load(SPECS / f"{spec}.arch")
    rich_lines = report.render_table(net, "rich").splitlines()
    markdown = report.render_table(net, "markdown").splitlines()
    rows = [line[2:-2].split(" | ") for line in markdown if line.startswith("| ")]
    start = next(i for i, line in enumerate(rich_lines) if line.startswith(" ━"))
    end = next(i for i, line in enumerate(rich_lines) if i > start and line.startswith(" ━"))
    assert [cells(rich_lines[start - 1]), *map(cells, rich_lines[start + 1 : end])] == rows


def test_a_plain_table_imports_no_rich():
    """Piped (no colour), a table that fits is written without rich: its import alone costs ~25 ms a command."""
    code = (
        "import sys, archc; net = archc.load(sys.argv[1]); net.table('rich'); "
        "print(sorted(m for m in sys.modules if m.split('.')[0] == 'rich'))"
    )
    run = subprocess.run(
        [sys.executable, "-c", code, str(SPECS / "googlenet.arch")], capture_output=True, text=True, cwd=ROOT
    )
    assert run.returncode == 0, run.stderr
    assert run.stdout.strip() == "[]"
