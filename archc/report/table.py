"""The layer table: rows of plain values, then one renderer per format.

`rows()` turns an analysed network into dictionaries of raw values; each
renderer only formats them, so the rich, Markdown, CSV and JSON tables can
never disagree about a number.
"""

from __future__ import annotations

import csv
import io
import json
import sys

from .. import arguments, graph
from ..ops import OPS
from ..ops.base import axis_names, fmt_shape

# key -> header; the order is the table's default column order.
COLUMNS = {
    "name": "layer",
    "type": "type",
    "filter": "filter",
    "stride": "stride",
    "padding": "padding",
    "output": "output",
    "size": "activation size",
    "activation": "activation",
    "params": "params",
    "params_percent": "params %",
    "macs": "MACs",
    "macs_percent": "MACs %",
    "elem_ops": "element ops",
    "memory": "memory",
    "rf": "receptive field",
    "inputs": "inputs",
    "bflops": "BFLOPs",
    "caffe_memory": "memory for data",
    "saved": "saved for backward",
}
DEFAULT_COLUMNS = (
    "name",
    "type",
    "filter",
    "stride",
    "padding",
    "output",
    "size",
    "activation",
    "params",
    "params_percent",
    "macs",
    "macs_percent",
    "memory",
)
NUMERIC = {
    "size",
    "params",
    "params_percent",
    "macs",
    "macs_percent",
    "elem_ops",
    "memory",
    "bflops",
    "caffe_memory",
    "saved",
}
# a share column -> the figure it is the share of (percent of the network's total)
SHARES = {"params_percent": "params", "macs_percent": "macs"}
# `--convention`: the column each source tool's figures add (computed in archc/conventions.py).
CONVENTION_COLUMNS = {"darknet": "bflops", "caffe": "caffe_memory"}

CONVENTIONS = (
    "MACs count the multiply-accumulates of conv, transposed conv, dense, lstm and gru layers only (no bias, norms, "
    "pooling, activations or element-wise arithmetic), and attention's projections and two products Q.K^T and "
    "weights.V (not its scaling, mask or softmax); FLOPs = 2 x MACs; element ops (`--columns elem_ops`, JSON "
    "`elem_ops`) count that other arithmetic at inference, one per value and step; params are what torch's "
    "Module.parameters() counts, running statistics are buffers; flatten, reshape, permute and dropout are "
    "views that add no memory."
)


def layout_shape(shape, layout: str) -> tuple[int, ...]:
    """As archc holds it (C x H x W, a sequence L x C) or channels-last (H x W x C, TensorFlow-style
    course tables: the channels moved last from wherever they are)."""
    return _in_layout(tuple(shape), getattr(shape, "channels", 0), layout)


def _in_layout(values: tuple, channels: int, layout: str) -> tuple:
    """Per-axis values (sizes, axis names) in the table's layout, the channels being axis `channels`."""
    if layout == "hwc" and len(values) > 1:
        return (*values[:channels], *values[channels + 1 :], values[channels])
    return values


def _axes(shape, layout: str) -> list[str] | None:
    """What each axis of a layer's output holds, in the report's layout: `C`, `L`, `H`, `W`, `D`."""
    return None if shape is None else list(_in_layout(tuple(axis_names(shape)), shape.channels, layout))


def _rf(node):
    if node.rf is None:
        return None
    return {
        "size": [_num(s) for s, _, _ in node.rf],
        "jump": [_num(j) for _, j, _ in node.rf],
        "start": [_num(st) for _, _, st in node.rf],
    }


def _num(fraction):
    if fraction.denominator == 1:
        return int(fraction)
    try:
        return float(fraction)
    except OverflowError:  # beyond a float's range (a padding of 400 digits): the nearest whole number
        return round(fraction)


def rows(net, layout: str = "chw", training=None, depth: int | None = None) -> list[dict]:
    """One dictionary of raw values per layer, in topological order; `saved` with a TrainingMemory.

    With `depth`, the layers of a block instance nested deeper than `depth` make one row, the instance's
    (`block_rows`), where its first layer's would be, as `archc diagram --depth` draws it."""
    from ..analysis import DTYPE_BYTES
    from ..conventions import caffe_memory, darknet_bflops
    from ..passes.memory import output_bytes

    bflops = darknet_bflops(net)
    caffe = {top.layer: top.total_bytes for top in caffe_memory(net)}  # the last blob of each layer

    nbytes = DTYPE_BYTES[net.dtype]
    out = []
    for node in net.graph:
        op = OPS[node.op]
        described = op.describe(node)
        act = node.activation[0] if node.activation else None
        rf = _rf(node)
        out.append(
            {
                "kind": "layer",
                "name": node.name,
                "type": node.op,
                "filter": described.get("filter"),
                "stride": described.get("stride"),
                "padding": described.get("padding"),
                "output": list(layout_shape(node.shape, layout)),
                "size": node.activations,
                "activation": act,
                "params": node.params,
                "buffers": node.buffers,
                "macs": node.macs,
                "elem_ops": node.elem_ops,
                "memory": None if op.is_view else (output_bytes(node, nbytes) + node.workspace * nbytes) * net.batch,
                "rf": rf,
                "inputs": list(node.inputs),
                "bflops": bflops.of(node.name),
                "caffe_memory": caffe.get(node.name),
                "saved": training.layers.get(node.name) if training is not None else None,
                "block_path": [instance.qualified for instance in node.instance.path] if node.instance else [],
                **_shares(net, node.params, node.macs),
            }
        )
    return out if depth is None else _folded(net, out, block_rows(net, out), depth)


def _shares(net, params: int, macs: int) -> dict:
    """The share columns: percent of the network's parameters and MACs (None when the network has none)."""
    figures = {"params": (params, net.totals.params), "macs": (macs, net.totals.macs)}
    return {key: _percent(*figures[of]) for key, of in SHARES.items()}


def _percent(part: int, whole: int) -> float | None:
    return 100 * part / whole if whole else None


SUMMED = ("size", "params", "buffers", "macs", "elem_ops", "memory", "bflops", "saved")


def block_rows(net, layer_rows: list[dict]) -> dict:
    """A row for each block instance (graph.Instance), outer ones first, in the order the spec calls them.

    A block's figures are its layers' sums (`SUMMED`: a view's memory and a missing figure count nothing);
    its output and receptive field are those of its output layer (the last of its body), Caffe's running
    memory is the last its layers reach; its inputs are the layers outside it that its layers read; its type
    is the block's name.
    """
    by_name = {row["name"]: row for row in layer_rows}
    blocks: dict = {}
    for node, row in zip(net.graph, layer_rows):
        for instance in node.instance.path if node.instance else ():
            block = blocks.get(instance)
            if block is None:
                block = blocks[instance] = _block_row(instance, by_name[instance.output])
            block["layers"].append(node.name)
            block["inputs"].extend(src for src in node.inputs if not src.startswith(instance.prefix))
            for key in SUMMED:
                if row[key] is not None:
                    block[key] = row[key] if block[key] is None else block[key] + row[key]
            if row["caffe_memory"] is not None:
                block["caffe_memory"] = row["caffe_memory"]
    for block in blocks.values():
        block["inputs"] = list(dict.fromkeys(block["inputs"]))
        block.update(_shares(net, block["params"], block["macs"]))
    return blocks


def _block_row(instance, output: dict) -> dict:
    """A block instance's row before its layers are added: what its output layer decides."""
    return {
        **dict.fromkeys(COLUMNS),
        **dict.fromkeys(SUMMED),
        "kind": "block",
        "name": instance.qualified,
        "type": instance.block,
        "output": output["output"],
        "rf": output["rf"],
        "inputs": [],
        "layers": [],
        "block_path": [outer.qualified for outer in instance.path[:-1]],
        "call": instance.call,
    }


def _folded(net, layer_rows: list[dict], blocks: dict, depth: int) -> list[dict]:
    """The rows at `depth`: each layer nested deeper than it replaced by its instance's row (graph.folded_into),
    and each row's inputs named as the rows that show them."""
    shown_as, out = {}, {}
    for node, row in zip(net.graph, layer_rows):
        instance = graph.folded_into(node, depth)
        row = row if instance is None else blocks[instance]
        shown_as[node.name] = row["name"]
        out.setdefault(row["name"], row)
    return [{**row, "inputs": _inputs_shown(row, shown_as)} for row in out.values()]


def _inputs_shown(row: dict, shown_as: dict[str, str]) -> list[str]:
    """The rows a row reads: its inputs' rows, each once, not itself."""
    return [name for name in dict.fromkeys(shown_as[src] for src in row["inputs"]) if name != row["name"]]


def fold_note(net, depth: int | None, table_rows: list[dict]) -> list[str]:
    """The line that says the rows are folded (none when `depth` is None)."""
    if depth is None:
        return []
    blocks = [row for row in table_rows if row["kind"] == "block"]
    layers = sum(len(row["layers"]) for row in blocks)
    return [
        f"Folded at depth {depth}: each block instance nested deeper ({len(blocks):,}, holding {layers:,} of the "
        f"{len(net.graph.nodes):,} layers) is one row, its type the block's name, with its output and the sums of "
        "its layers' figures"
    ]


def human_bytes(n: int | None) -> str:
    if n is None:
        return "view"
    if n >= 2**1000:  # beyond a float's range (a batch of 400 digits): whole TiB
        return f"{n // 2**40} TiB"
    value = float(n)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if value < 1024 or unit == "TiB":
            return f"{int(value)} B" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    raise AssertionError("unreachable")  # pragma: no cover


def _cell(key: str, value) -> str:
    if key == "bflops" and value is not None:
        return f"{value:.3f}"
    if key == "memory":
        return human_bytes(value)
    if key == "saved":
        return human_bytes(value) if value else "-"
    if key in SHARES and value is not None:
        return f"{value:.1f}%" if value == 0 or value >= 0.05 else "<0.1%"  # a share that is there shows
    if value is None or value == []:
        return "-"
    if key in NUMERIC:
        return f"{value:,}"
    if key == "output":
        return fmt_shape(value)
    if key == "rf":
        return fmt_shape(value["size"])
    if key == "inputs":
        return ", ".join(value)
    return str(value)


def summary_lines(net, convention: str | None = None, training=None) -> list[str]:
    t = net.totals
    setting = f"batch {net.batch}, {net.dtype}"
    peak_at = f" (at {t.peak_layer})" if t.peak_layer else ""
    return [
        f"Total params {t.params:,} ({human_bytes(t.param_bytes)}), buffers {t.buffers:,}; "
        f"MACs {t.macs:,} (FLOPs {t.flops:,})",
        f"Activations {t.activations:,} per sample, {human_bytes(t.activation_bytes)}; peak activation memory "
        f"{human_bytes(t.peak_activation_bytes)}{peak_at}; {setting}",
        *_convention_lines(net, convention),
        *_training_lines(training),
    ]


def _training_lines(training) -> list[str]:
    """The training memory's totals (archc table --train)."""
    if training is None:
        return []
    m = training
    master = f" + float32 master weights {human_bytes(m.master_weights)}" if m.master_weights else ""
    return [
        f"Training ({m.optimizer}, batch {m.batch}, {m.dtype}, {m.device}): weights {human_bytes(m.weights)}{master}"
        f" + gradients {human_bytes(m.gradients)} + optimiser state {human_bytes(m.optimizer_state)}"
        f" + saved for backward {human_bytes(m.saved)} = {human_bytes(m.total)} ({m.total:,} bytes); "
        f"peak during backward {human_bytes(m.peak)}" + (f" (at {m.peak_layer})" if m.peak_layer else "")
    ]


def _convention_lines(net, convention: str | None) -> list[str]:
    """The totals as the source tool prints them (archc table --convention)."""
    from ..conventions import caffe_memory, darknet_bflops

    if convention == "darknet":
        figures = darknet_bflops(net)
        return [
            f"Total BFLOPS {float(figures.total):.3f} (convolutions {float(figures.conv):.3f}), as AlexeyAB's Darknet "
            "counts them: 2 x MACs per conv, window x outputs per max pool, one per output and added input per "
            "shortcut"
        ]
    if convention == "caffe":
        tops = caffe_memory(net)
        total = tops[-1].total_bytes if tops else 0
        return [
            f"Memory required for data: {total} ({human_bytes(total)}), as Caffe counts it: every top blob, "
            f"in-place ones again; batch {net.batch}, {net.dtype}"
        ]
    return []


def _pick(columns) -> tuple[str, ...]:
    columns = tuple(columns or DEFAULT_COLUMNS)
    unknown = [c for c in columns if not isinstance(c, str) or c not in COLUMNS]
    if unknown:
        raise ValueError(f"unknown column {unknown[0]!r}; columns are: {', '.join(COLUMNS)}")
    return columns


def render_table(
    net,
    format: str = "rich",
    *,
    layout: str = "chw",
    columns=None,
    color: bool = False,
    width: int | None = None,
    convention: str | None = None,
    training=None,
    depth: int | None = None,
) -> str:
    """`convention`: darknet or caffe adds that tool's column (unless `columns` are given) and totals;
    `training` (a TrainingMemory, `Network.training_memory()`) the bytes each layer keeps for backward and the
    training totals; `depth` folds each block instance nested deeper into one row (`rows`)."""
    renderers = {"rich": _rich, "markdown": _markdown, "html": _html, "csv": _csv, "json": _json}
    arguments.choice("format", format, tuple(renderers))
    arguments.choice("layout", layout, ("chw", "hwc"))
    arguments.choice("convention", convention, tuple(CONVENTION_COLUMNS), optional=True)
    arguments.flag("color", color)
    arguments.whole("width", width, 1, optional=True)
    arguments.whole("depth", depth, 0, optional=True)
    if columns is not None and (isinstance(columns, str) or not isinstance(columns, list | tuple)):
        raise TypeError(f"columns must be a list of column names such as ['name', 'output'], not {columns!r:.60}")
    if convention is not None and not columns:
        columns = (*DEFAULT_COLUMNS, CONVENTION_COLUMNS[convention])
    if training is not None and not columns:
        columns = (*DEFAULT_COLUMNS, "saved")
    columns = _pick(columns)
    if format == "json":
        return _json(net, layout, convention, training, depth)
    table_rows = rows(net, layout, training, depth)
    summary = [*fold_note(net, depth, table_rows), *summary_lines(net, convention, training)]
    return renderers[format](net, table_rows, columns, summary, color=color, width=width, training=training)


def _rich(net, table_rows, columns, summary: list[str], *, color: bool, width: int | None, training=None) -> str:
    """The table as rich's Table (SIMPLE_HEAVY) prints it, the totals and the conventions under it.

    Rich lays out and renders every cell, at about 1 ms a row; the same text comes from three paths, cheapest
    first: `_plain_lines` writes the table itself where rich would print plain text in columns as wide as their
    contents (no colour, everything fits); `_print_table_fast` has rich print all but the rows, which it sets at
    rich's column widths; otherwise rich prints the whole table.
    """
    title = f"{net.name} ({net.file})"
    width = width or 10_000
    footers = _footers(net, columns, training)
    cells = [{key: _cell(key, row[key]) for key in columns} for row in table_rows]
    shown, fixed = _fitting(columns, footers, cells, width)
    left_out = [key for key in columns if key not in shown]
    columns, footers = list(shown), [footers[key] for key in shown]
    cells = [[row[key] for key in columns] for row in cells]
    headers = [COLUMNS[key] for key in columns]
    notes = [*summary, f"[dim]{CONVENTIONS}[/dim]" if color else CONVENTIONS]
    if left_out:
        names = ", ".join(COLUMNS[key] for key in left_out)
        notes.insert(0, f"Left out to fit {width} columns, so that no figure is cut: {names} (--columns chooses).")
    lines = None if color else _plain_lines(title, columns, headers, footers, cells, notes, width)
    if lines is None:
        from rich.console import Console

        buffer = io.StringIO()
        # force_jupyter=False: in a notebook rich would display the table itself and write nothing here
        console = Console(
            file=buffer, force_terminal=color, force_jupyter=False, no_color=not color, width=width, highlight=False
        )
        if not _print_table_fast(console, buffer, title, columns, footers, cells, fixed):
            table = _new_table(title, columns, footers, fixed)
            for row in cells:
                table.add_row(*row)
            console.print(table)
        for line in notes:
            console.print(line, soft_wrap=True)
        lines = buffer.getvalue().splitlines()
    return "\n".join(line.rstrip() for line in lines) + "\n"


def _footers(net, columns, training) -> dict[str, str]:
    """The totals row's text per column: "total" under the name, the network's totals under their figures."""
    totals = {
        "params": net.totals.params,
        "macs": net.totals.macs,
        "elem_ops": net.totals.elem_ops,
        "size": net.totals.activations,
        "memory": net.totals.activation_bytes,
        **({"saved": training.saved} if training is not None else {}),
        **_shares(net, net.totals.params, net.totals.macs),
    }
    if "bflops" in columns or "caffe_memory" in columns:
        from ..conventions import caffe_memory, darknet_bflops

        tops = caffe_memory(net)
        totals["bflops"] = float(darknet_bflops(net).total)
        totals["caffe_memory"] = tops[-1].total_bytes if tops else 0
    return {key: "total" if key == "name" else (_cell(key, totals[key]) if key in totals else "") for key in columns}


NO_WRAP = ("name", "output")  # the columns rich cuts short (with an ellipsis) rather than wraps
# What a table too wide for its terminal leaves out, first first: rich would otherwise cut every column
# short, figures too (`1,…`). The layer's name and output shape stay whatever the width.
LEAVE_OUT = (
    "inputs",
    "rf",
    "caffe_memory",
    "bflops",
    "elem_ops",
    "macs_percent",
    "params_percent",
    "padding",
    "stride",
    "filter",
    "activation",
    "memory",
    "size",
    "type",
    "saved",
    "macs",
    "params",
)


def _fitting(columns, footers: dict, cells: list[dict], width: int) -> tuple[list[str], list[int] | None]:
    """The columns, less those LEAVE_OUT names first, until every one fits `width` whole: a figure (with
    its unit) on one line, a header or another text with spaces wrapped at its spaces, the name and the
    output shape never wrapped. Columns take their width plus a space each side, and one more between them.

    Also the columns' widths (padding included) when the table is too wide to show every text on one line:
    then each takes the least it needs, since rich, left to share the width out, cuts figures short too."""

    def texts(key: str) -> list[str]:
        return [COLUMNS[key], footers[key], *(row[key] for row in cells)]

    def least(key: str) -> int:
        header, *values = texts(key)
        whole = key in NO_WRAP or key in NUMERIC  # a figure with its unit (`3.1 MiB`) is one
        words = [*header.split(), *(word for text in values for word in ([text] if whole else text.split()))]
        return max(map(len, words), default=1) + 2

    shown = list(columns)
    needs = {key: least(key) for key in columns}
    for key in LEAVE_OUT:
        if sum(needs[k] for k in shown) + len(shown) + 1 <= width:
            break
        if key in shown and len(shown) > 1:
            shown.remove(key)
    natural = sum(max(map(len, texts(key))) + 2 for key in shown) + len(shown) + 1
    return shown, None if natural <= width else [needs[key] for key in shown]


def _plain(text: str) -> bool:
    """Rich shows this cell as it is: printable ASCII (a column a character), no [markup] or :emoji:, and no
    surrounding spaces (which a right-justified cell loses)."""
    return text.isascii() and text.isprintable() and "[" not in text and ":" not in text and text == text.strip()


def _pad(text: str, width: int, key: str) -> str:
    """A cell that fits its column (`width` with the padding), as rich pads it."""
    return " " + (text.rjust if key in NUMERIC else text.ljust)(width - 2) + " "


def _plain_lines(title, columns, headers, footers, cells, notes, width: int) -> list[str] | None:
    """The lines rich prints when it prints plain text and the table fits `width`: each column as wide as its
    longest text, with a space of padding each side and between columns, and nothing wrapped. None when that
    is not so (colour is the caller's to rule out), or rich might show a text otherwise (markup, emoji, not
    ASCII), or rich might not print here as on a plain file (a legacy Windows console)."""
    if sys.platform == "win32":
        return None
    if any("[" in note or note.count(":") > 1 or not (note.isascii() and note.isprintable()) for note in notes):
        return None
    table = [headers, *cells, footers]
    widths = _natural_widths(table, width)
    if widths is None or not (title.isascii() and title.isprintable()) or len(title) > sum(widths) + len(widths) + 1:
        return None  # rich would shrink and wrap columns, or wrap the title (which is Text: markup is literal)
    lines = [" " + " ".join(_pad(text, w, key) for text, w, key in zip(row, widths, columns)) + " " for row in table]
    rule = " " + "━" * (sum(widths) + len(widths) - 1) + " "
    return [title, "", lines[0], rule, *lines[1:-1], rule, lines[-1], "", *notes]


def _natural_widths(table: list[list[str]], width: int) -> list[int] | None:
    """Each column's width (padding included) when all of `table` (header, rows, footer) is plain and it fits
    `width` as it is: then rich makes each column as wide as its longest text. None otherwise."""
    if not all(_plain(text) for row in table for text in row):
        return None
    widths = [max(map(len, column)) + 2 for column in zip(*table)]
    return widths if sum(widths) + len(widths) + 1 <= width else None  # an edge each side, a divider between


def _new_table(title: str | None, columns, footers, widths=None, box_name: str = "SIMPLE_HEAVY"):
    """The rich table with its title, columns and footer, and no rows yet; `widths` fixes the columns' widths
    (padding included)."""
    from rich import box
    from rich.table import Table
    from rich.text import Text

    table = Table(
        title=None if title is None else Text(title, style="table.title"),  # literal: a file name is not markup
        box=getattr(box, box_name),
        show_footer=True,
        title_justify="left",
        header_style="bold",
        footer_style="bold",
    )
    for i, (key, footer) in enumerate(zip(columns, footers)):
        table.add_column(
            COLUMNS[key],
            justify="right" if key in NUMERIC else "left",
            footer=footer,
            no_wrap=key in NO_WRAP,
            width=None if widths is None else widths[i] - 2,
        )
    return table


class _FallbackError(Exception):
    """Something the fast path does not lay out as rich would: rich renders the whole table."""


def _print_table_fast(console, buffer, title: str, columns, footers, cells, fixed=None) -> bool:
    """Print the table to `console` (writing to `buffer`) exactly as rich's Table prints it, at a fraction of
    the cost.

    1. The column widths: rich measures a column by its longest text and its longest word, so a table with
       only the rows holding those (and any row with a cell that is not plain) gets the widths the whole
       table gets; its top border (HEAVY_HEAD: `┏━━━┳━━┓`) shows them. (`fixed` widths, for a table too
       wide for its terminal, replace them.)
    2. Rich prints the title, header and footer in columns of exactly those widths, with no rows.
    3. The rows go between the header's rule and the footer's: a plain cell that fits its column is the text
       padded, as rich pads it; a cell rich wraps or cuts short, or one not plain, is rendered by rich (once
       per text and width).
       Rows have no style, so rich writes them as plain text too.

    False, with nothing printed, when the table is not one this reproduces: then rich prints it whole.
    """
    ncols = len(columns)
    widths = fixed or _natural_widths([[COLUMNS[key] for key in columns], *cells, footers], console.width)
    try:
        widths = widths or _measured_widths(console, columns, footers, cells)
        body = _body_lines(console, columns, cells, widths)
    except _FallbackError:
        return False
    start = buffer.tell()
    console.print(_new_table(title, columns, footers, widths))
    lines = buffer.getvalue()[start:].split("\n")
    rule = " " + "━" * (sum(widths) + ncols - 1) + " "
    at = next((i for i in range(len(lines) - 1) if lines[i] == rule and lines[i + 1] == rule), None)
    buffer.seek(start)
    buffer.truncate()
    if at is None:  # pragma: no cover - rich drew something else
        return False
    buffer.write("\n".join([*lines[: at + 1], *body, *lines[at + 1 :]]))
    return True


def _measured_widths(console, columns, footers, cells) -> list[int]:
    """The column widths rich gives the table, from a table with only the rows that decide them."""
    ncols = len(columns)
    plain_rows = [all(map(_plain, row)) for row in cells]
    measuring = []
    if cells:
        plain = [row for row, is_plain in zip(cells, plain_rows) if is_plain]
        for size in (len, lambda text: max(map(len, text.split()), default=0)):  # rich's maximum and minimum
            measuring.append([max((row[i] for row in plain), key=size, default="") for i in range(ncols)])
        measuring += [row for row, is_plain in zip(cells, plain_rows) if not is_plain]
    table = _new_table(None, columns, footers, box_name="HEAVY_HEAD")
    for row in measuring:
        table.add_row(*row)
    top = ""
    for segment in console.render(table, console.options):  # lazily: the top border comes before any cell
        if segment.text == "\n":
            break
        top += segment.text
    parts = top[1:-1].split("┳")
    if not (top[:1] == "┏" and top[-1:] == "┓" and len(parts) == ncols and not "".join(parts).strip("━")):
        raise _FallbackError  # rich drew another box
    if len(top) > console.width:
        raise _FallbackError  # wider than the console, which crops it
    return [len(part) for part in parts]


def _body_lines(console, columns, cells, widths) -> list[str]:
    """The rows' lines as rich's Table (SIMPLE_HEAVY, padding 1) renders them in columns of these widths."""
    from rich.padding import Padding

    # the options rich's Table renders a cell with, from those Console.print renders the table with
    options = console.options.update(justify=None, overflow=None, height=None, no_wrap=None, markup=None)
    options = options.update(width=sum(widths) + len(widths) + 1, highlight=False, height=None)
    rendered: dict[tuple, list[str]] = {}

    def render(text: str, key: str, width: int) -> list[str]:
        if (text, key, width) not in rendered:
            cell_options = options.update(
                width=width,
                justify="right" if key in NUMERIC else "left",
                no_wrap=key in NO_WRAP,
                overflow="ellipsis",
                height=None,
                highlight=False,
            )
            out = []
            for line in console.render_lines(Padding(text, (0, 1, 0, 1)), cell_options):
                if any(segment.style or segment.control for segment in line):
                    raise _FallbackError  # styled by markup: its escape codes are rich's to write
                out.append("".join(segment.text for segment in line))
            rendered[text, key, width] = out
        return rendered[text, key, width]

    body = []
    for row in cells:
        row_lines = [
            [_pad(text, width, key)] if _plain(text) and len(text) <= width - 2 else render(text, key, width)
            for text, key, width in zip(row, columns, widths)
        ]
        for i in range(max(1, *map(len, row_lines))):  # a wrapped cell makes the row taller; the others get blanks
            parts = (lines[i] if i < len(lines) else " " * width for lines, width in zip(row_lines, widths))
            body.append(" " + " ".join(parts) + " ")
    return body


def _markdown(net, table_rows, columns, summary: list[str], **_) -> str:
    def esc(text: str) -> str:
        return text.replace("|", "\\|")

    lines = [
        f"**{esc(net.name)}** ({esc(net.file)})",
        "",
        "| " + " | ".join(COLUMNS[k] for k in columns) + " |",
        "|" + "|".join("---:" if k in NUMERIC else "---" for k in columns) + "|",
    ]
    for row in table_rows:
        lines.append("| " + " | ".join(esc(_cell(k, row[k])) for k in columns) + " |")
    lines.append("")
    lines += [line + "  " for line in summary]
    lines.append(f"_{CONVENTIONS}_")
    return "\n".join(lines) + "\n"


def _html(net, table_rows, columns, summary: list[str], *, training=None, **_) -> str:
    """The table as HTML, for a notebook (`Network._repr_html_`) or a page: every text escaped, figures
    right-aligned, the totals in the table's footer, the summary and the conventions under it."""
    from html import escape

    def row(tag: str, texts) -> str:
        right = ' style="text-align: right"'
        cells = (f"<{tag}{right * (key in NUMERIC)}>{escape(text)}</{tag}>" for key, text in zip(columns, texts))
        return f"<tr>{''.join(cells)}</tr>"

    footers = _footers(net, columns, training)
    return (
        "\n".join(
            [
                '<div class="archc-table">',
                "<table>",
                f"<caption>{escape(net.name)} ({escape(str(net.file))})</caption>",
                f"<thead>{row('th', [COLUMNS[key] for key in columns])}</thead>",
                "<tbody>",
                *(row("td", [_cell(key, r[key]) for key in columns]) for r in table_rows),
                "</tbody>",
                f"<tfoot>{row('th', [footers[key] for key in columns])}</tfoot>",
                "</table>",
                *(f"<p>{escape(line)}</p>" for line in summary),
                f"<p><small>{escape(CONVENTIONS)}</small></p>",
                "</div>",
            ]
        )
        + "\n"
    )


def _csv(net, table_rows, columns, _summary, **_) -> str:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(columns)
    for row in table_rows:
        writer.writerow(_csv_cell(k, row[k]) for k in columns)
    return buffer.getvalue()


def _csv_cell(key: str, value):
    if value is None:
        return ""
    if key == "output":
        return fmt_shape(value)
    if key == "rf":
        return fmt_shape(value["size"])
    if key == "inputs":
        return " ".join(value)
    return value


def network_json(
    net, layout: str = "chw", convention: str | None = None, training=None, depth: int | None = None
) -> dict:
    """The --format json document: every layer, every block instance, and with `depth` the folded rows as
    `layers` (docs/language.md, section 15)."""
    arguments.whole("depth", depth, 0, optional=True)
    extra = CONVENTION_COLUMNS.get(convention)
    layer_rows = rows(net, layout, training)
    blocks = block_rows(net, layer_rows)
    shown = layer_rows if depth is None else _folded(net, layer_rows, blocks, depth)
    layers = [_row_json(net, row, extra, training, layout) for row in shown]
    document = {
        "network": net.name,
        "file": net.file,
        "inputs": {n.name: list(layout_shape(n.shape, layout)) for n in net.graph.inputs},
        "outputs": [n.name for n in net.graph.outputs],
        "batch": net.batch,
        "dtype": net.dtype,
        "layout": layout,
        **({} if depth is None else {"depth": depth}),
        "layers": layers,
        "blocks": [_row_json(net, row, extra, training, layout) for row in blocks.values()],
        "totals": net.totals.as_dict(),
        "conventions": CONVENTIONS,
        "warnings": [w.as_dict() for w in net.warnings],
    }
    if convention is not None:
        document[convention] = _convention_totals(net, convention)
    if training is not None:
        document["training"] = {k: v for k, v in training.as_dict().items() if k != "layers"}
    return document


def _row_json(net, row: dict, extra: str | None, training, layout: str) -> dict:
    """A row of the JSON document: a layer's (`kind` "layer", with its op and settings) or a block instance's
    (`kind` "block", with its block's name as `type` and its layers); the same figures for both."""
    figures = {
        "inputs": row["inputs"],
        "output_shape": row["output"],
        "params": row["params"],
        "buffers": row["buffers"],
        "macs": row["macs"],
        "elem_ops": row["elem_ops"],
        "activations": row["size"],
        "params_percent": row["params_percent"],
        "macs_percent": row["macs_percent"],
        "memory_bytes": row["memory"],
        "receptive_field": row["rf"],
        "block_path": row["block_path"],
        **({extra: row[extra]} if extra else {}),
        **({"saved_bytes": row["saved"]} if training is not None else {}),
    }
    if row["kind"] == "block":
        call = row["call"]
        where = {"line": call.line, "col": call.col} if call is not None else {"line": None, "col": None}
        return {"kind": "block", "name": row["name"], "type": row["type"], **figures, "layers": row["layers"], **where}
    node = net.graph.nodes[row["name"]]
    return {
        "kind": "layer",
        "name": node.name,
        "op": node.op,
        **figures,
        "axes": _axes(node.shape, layout),
        "dtype": "int64" if getattr(node.shape, "vocab", None) is not None else net.dtype,
        "workspace": node.workspace,
        "activation": row["activation"],
        "settings": OPS[node.op].settings(node),  # one phrase, e.g. "64@3x3 /2 same"
        "filter": row["filter"],
        "stride": row["stride"],
        "padding": row["padding"],
        "tied": node.attrs.get("tied"),  # the layer whose weight it uses as its own (`dense ... tied=`)
        "block": [instance for _block, instance in node.scope],
        "line": node.span.line,
        "col": node.span.col,
    }


def _convention_totals(net, convention: str) -> dict:
    from ..conventions import caffe_memory, darknet_bflops

    if convention == "darknet":
        figures = darknet_bflops(net)
        return {"total_bflops": float(figures.total), "conv_bflops": float(figures.conv)}
    tops = caffe_memory(net)
    return {"memory_required_for_data": tops[-1].total_bytes if tops else 0}


def _json(net, layout: str, convention: str | None = None, training=None, depth: int | None = None) -> str:
    return json.dumps(network_json(net, layout, convention, training, depth), indent=2) + "\n"


def fit_lines(net, answer) -> list[str]:
    """`archc fit`: the largest batches, their memory, and what dominates the training memory."""
    from ..ops.base import MAX_SIZE

    t = answer.training
    master = f" + master weights {human_bytes(t.master_weights)}" if t.master_weights else ""
    parts = (
        f"weights {human_bytes(t.weights)}{master} + gradients {human_bytes(t.gradients)} + optimiser state "
        f"{human_bytes(t.optimizer_state)} + saved for backward {human_bytes(t.saved)} = {human_bytes(t.total)}"
    )
    fixed = t.total - t.saved
    share = max(t.saved, fixed) * 100 // max(t.total, 1)
    if answer.dominant == "activations":
        dominant = f"the activations saved for backward dominate ({share}%): the batch decides what fits"
    else:
        dominant = (
            f"weights, gradients and optimiser state dominate ({share}%): "
            "a smaller optimiser state or dtype helps more than a smaller batch"
        )

    def batch(n: int) -> str:
        return "any batch (nothing grows with it)" if n >= MAX_SIZE else f"batch {n:,}"

    if answer.training_batch:
        training = [f"Training:  {batch(answer.training_batch)}: {parts}"]
        if answer.peak_batch < answer.training_batch:
            training.append(
                f"           the backward's peak (gradients in flight) is {human_bytes(t.peak)} at that batch; "
                f"{batch(answer.peak_batch) if answer.peak_batch else 'no batch'} keeps it within the memory"
            )
    else:
        training = [f"Training:  nothing fits: batch 1 needs {parts}"]
    activations = answer.inference_bytes - t.weights
    if answer.inference_batch:
        inference = (
            f"Inference: {batch(answer.inference_batch)}: weights {human_bytes(t.weights)} + peak activations "
            f"{human_bytes(activations)} = {human_bytes(answer.inference_bytes)}"
        )
    else:
        inference = f"Inference: nothing fits: batch 1 needs {human_bytes(answer.inference_bytes)}"
    return [
        f"{net.name} ({net.file}) in {human_bytes(answer.memory)} ({answer.memory:,} bytes): "
        f"{net.dtype}, {t.optimizer}, {t.device}",
        *training,
        inference,
        f"Training memory: {dominant}.",
    ]
