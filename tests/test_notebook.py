"""Issue 19: archc in a real Jupyter kernel. A notebook run with nbclient shows a Network as its HTML
table, `net.table()` returns the whole table as text, and `net.diagram()` shows as SVG (drawn by dot).

The kernel is the native one (ipykernel on this interpreter), started and spoken to over loopback; the
timeout allows for a busy machine, well beyond the few seconds a run takes.
"""

from __future__ import annotations

import nbformat
from conftest import SPECS
from nbclient import NotebookClient

import archc


def test_a_notebook_shows_the_table_and_the_diagram():
    spec = SPECS / "lenet5.arch"
    nb = nbformat.v4.new_notebook()
    nb.cells = [
        nbformat.v4.new_code_cell(f"import archc\nnet = archc.load({str(spec)!r})\nnet"),
        nbformat.v4.new_code_cell("print(net.table(), end='')"),
        nbformat.v4.new_code_cell("net.diagram()"),
    ]
    NotebookClient(nb, timeout=600, kernel_name="python3").execute()
    shown, printed, drawn = ([o for o in cell.outputs if o.output_type != "stderr"] for cell in nb.cells)

    (result,) = [o for o in shown if o.output_type == "execute_result"]
    assert result.data["text/html"] == archc.load(spec).table("html")
    assert "61,706" in result.data["text/html"]  # figures.md: LeNet-5's parameters

    text = "".join(o.text for o in printed if o.output_type == "stream" and o.name == "stdout")
    assert text == archc.load(spec).table()  # the whole table, as outside a notebook, not "\n"

    (diagram,) = [o for o in drawn if o.output_type == "execute_result"]
    svg = diagram.data["image/svg+xml"]
    assert svg.lstrip().startswith(("<?xml", "<svg")) and "C1" in svg and "F6" in svg
