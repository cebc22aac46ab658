"""Issue 19: archc in a notebook. `Network.table()` returns the table as text in every format, also where
rich would display it itself (a Jupyter kernel), and a Network shows itself as an HTML table.

The figures of the HTML table are checked against the JSON output of the same network, and the HTML
is read back with the standard library's parser.
"""

from __future__ import annotations

import builtins
import json
from html.parser import HTMLParser

import pytest
from conftest import SPECS

import archc


class Cells(HTMLParser):
    """The texts of the table's cells, row by row, by the section (thead, tbody, tfoot) they are in."""

    def __init__(self):
        super().__init__()
        self.rows: dict[str, list[list[str]]] = {"thead": [], "tbody": [], "tfoot": []}
        self.section = None
        self.cell = None

    def handle_starttag(self, tag, attrs):
        if tag in self.rows:
            self.section = tag
        elif tag == "tr":
            self.rows[self.section].append([])
        elif tag in ("td", "th"):
            self.cell = ""

    def handle_endtag(self, tag):
        if tag in ("td", "th"):
            self.rows[self.section][-1].append(self.cell)
            self.cell = None

    def handle_data(self, data):
        if self.cell is not None:
            self.cell += data


def cells_of(html: str) -> dict[str, list[list[str]]]:
    parser = Cells()
    parser.feed(html)
    return parser.rows


def test_the_html_table_has_every_layer_and_the_totals():
    net = archc.load(SPECS / "resnet18.arch")
    rows = cells_of(net.table("html"))
    header = rows["thead"][0]
    assert header[:2] == ["layer", "type"] and "params" in header and "MACs" in header
    layers = json.loads(net.table(format="json"))["layers"]
    assert len(rows["tbody"]) == len(layers)
    params, macs = header.index("params"), header.index("MACs")
    for row, layer in zip(rows["tbody"], layers, strict=True):
        assert row[0] == layer["name"]
        assert row[params] == f"{layer['params']:,}" and row[macs] == f"{layer['macs']:,}"
    totals = json.loads(net.table(format="json"))["totals"]
    assert rows["tfoot"][0][0] == "total" and rows["tfoot"][0][params] == f"{totals['params']:,}"


def test_a_network_shows_itself_in_a_notebook_as_its_html_table():
    net = archc.load(SPECS / "lenet5.arch")
    assert net._repr_html_() == net.table("html")
    assert "61,706" in net._repr_html_()  # figures.md: LeNet-5's parameters


def test_every_text_of_the_html_table_is_escaped():
    net = archc.loads("network N {\n input x: 3x8x8\n conv c: 4 @ 3x3\n}\n", "<b>odd & name</b>.arch")
    html = net.table("html")
    assert "&lt;b&gt;odd &amp; name&lt;/b&gt;.arch" in html and "<b>" not in html


class ZMQInteractiveShell:
    """What rich takes for a Jupyter kernel: `get_ipython()` returns an object of a class of this name."""


@pytest.mark.parametrize("fmt", ["rich", "markdown", "html", "csv", "json"])
def test_table_returns_the_text_in_a_notebook(monkeypatch, fmt):
    """In a kernel rich displayed the table itself, in four outputs, and `table()` returned "\\n"."""
    net = archc.load(SPECS / "lenet5.arch")
    outside = net.table(fmt)
    monkeypatch.setattr(builtins, "get_ipython", ZMQInteractiveShell, raising=False)
    inside = net.table(fmt)
    figure = {"csv": "48120", "json": "61706"}.get(fmt, "61,706")  # figures.md: LeNet-5's C5, and in total
    assert inside == outside and figure in inside
