"""The layer table: rows of plain values, then one renderer per format.

`rows()` turns an analysed network into dictionaries of raw values; each
renderer only formats them, so the rich, Markdown, CSV and JSON tables can
never disagree about a number.
"""

from __future__ import annotations

import csv
import io
import json

from ..ops import OPS
from ..ops.base import fmt_shape

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
    "macs": "MACs",
    "memory": "memory",
    "rf": "receptive field",
    "inputs": "inputs",
    "bflops": "BFLOPs",
    "caffe_memory": "memory for data",
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
    "macs",
    "memory",
)
NUMERIC = {"size", "params", "macs", "memory", "bflops", "caffe_memory"}
# `--convention`: the column each source tool's figures add (computed in archc/conventions.py).
CONVENTION_COLUMNS = {"darknet": "bflops", "caffe": "caffe_memory"}

CONVENTIONS = (
    "MACs count the multiply-accumulates of conv, transposed conv and dense layers only (no bias, BN, pooling "
    "or activations); FLOPs = 2 x MACs; params are what torch's Module.parameters() counts, BN running "
    "statistics are buffers; flatten, reshape and dropout are views that add no memory."
)


def layout_shape(shape, layout: str) -> tuple[int, ...]:
    """Channels-first (C x H x W) or channels-last (H x W x C, TensorFlow-style course tables)."""
    if layout == "hwc" and len(shape) > 1:
        return (*shape[1:], shape[0])
    return tuple(shape)


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


def rows(net, layout: str = "chw") -> list[dict]:
    """One dictionary of raw values per layer, in topological order."""
    from ..analysis import DTYPE_BYTES
    from ..conventions import caffe_memory, darknet_bflops

    bflops = darknet_bflops(net)
    caffe = {top.layer: top.total_bytes for top in caffe_memory(net)}  # the last blob of each layer

    nbytes = DTYPE_BYTES[net.dtype] * net.batch
    out = []
    for node in net.graph:
        op = OPS[node.op]
        described = op.describe(node)
        act = node.activation[0] if node.activation else None
        rf = _rf(node)
        out.append(
            {
                "name": node.name,
                "type": node.op,
                "filter": described.get("filter"),
                "stride": described.get("stride"),
                "padding": described.get("padding"),
                "output": list(layout_shape(node.shape, layout)),
                "size": node.activations,
                "activation": act,
                "params": node.params,
                "macs": node.macs,
                "memory": None if op.is_view else node.activations * nbytes,
                "rf": rf,
                "inputs": list(node.inputs),
                "bflops": bflops.of(node.name),
                "caffe_memory": caffe.get(node.name),
            }
        )
    return out


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


def summary_lines(net, convention: str | None = None) -> list[str]:
    t = net.totals
    setting = f"batch {net.batch}, {net.dtype}"
    peak_at = f" (at {t.peak_layer})" if t.peak_layer else ""
    return [
        f"Total params {t.params:,} ({human_bytes(t.param_bytes)}), buffers {t.buffers:,}; "
        f"MACs {t.macs:,} (FLOPs {t.flops:,})",
        f"Activations {t.activations:,} per sample, {human_bytes(t.activation_bytes)}; peak activation memory "
        f"{human_bytes(t.peak_activation_bytes)}{peak_at}; {setting}",
        *_convention_lines(net, convention),
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
    unknown = [c for c in columns if c not in COLUMNS]
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
) -> str:
    """`convention`: darknet or caffe adds that tool's column (unless `columns` are given) and totals."""
    if convention is not None and convention not in CONVENTION_COLUMNS:
        raise ValueError(f"unknown convention {convention!r}; choose one of {', '.join(CONVENTION_COLUMNS)}")
    if convention is not None and not columns:
        columns = (*DEFAULT_COLUMNS, CONVENTION_COLUMNS[convention])
    columns = _pick(columns)
    if layout not in ("chw", "hwc"):
        raise ValueError("layout is chw or hwc")
    renderers = {"rich": _rich, "markdown": _markdown, "csv": _csv, "json": _json}
    if format not in renderers:
        raise ValueError(f"unknown format {format!r}; choose one of {', '.join(renderers)}")
    if format == "json":
        return _json(net, layout, convention)
    return renderers[format](net, rows(net, layout), columns, color=color, width=width, convention=convention)


def _rich(net, table_rows, columns, *, color: bool, width: int | None, convention: str | None = None) -> str:
    from rich import box
    from rich.console import Console
    from rich.table import Table
    from rich.text import Text

    table = Table(
        title=Text(f"{net.name} ({net.file})", style="table.title"),  # literal: a file name is not markup
        box=box.SIMPLE_HEAVY,
        show_footer=True,
        title_justify="left",
        header_style="bold",
        footer_style="bold",
    )
    totals = {
        "params": net.totals.params,
        "macs": net.totals.macs,
        "size": net.totals.activations,
        "memory": net.totals.activation_bytes,
    }
    if "bflops" in columns or "caffe_memory" in columns:
        from ..conventions import caffe_memory, darknet_bflops

        tops = caffe_memory(net)
        totals["bflops"] = float(darknet_bflops(net).total)
        totals["caffe_memory"] = tops[-1].total_bytes if tops else 0
    for key in columns:
        footer = "total" if key == "name" else (_cell(key, totals[key]) if key in totals else "")
        table.add_column(
            COLUMNS[key],
            justify="right" if key in NUMERIC else "left",
            footer=footer,
            no_wrap=key in ("name", "output"),
        )
    for row in table_rows:
        table.add_row(*(_cell(key, row[key]) for key in columns))
    buffer = io.StringIO()
    console = Console(file=buffer, force_terminal=color, no_color=not color, width=width or 10_000, highlight=False)
    console.print(table)
    for line in summary_lines(net, convention):
        console.print(line, soft_wrap=True)
    console.print(f"[dim]{CONVENTIONS}[/dim]" if color else CONVENTIONS, soft_wrap=True)
    return "\n".join(line.rstrip() for line in buffer.getvalue().splitlines()) + "\n"


def _markdown(net, table_rows, columns, convention: str | None = None, **_) -> str:
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
    lines += [line + "  " for line in summary_lines(net, convention)]
    lines.append(f"_{CONVENTIONS}_")
    return "\n".join(lines) + "\n"


def _csv(net, table_rows, columns, **_) -> str:
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


def network_json(net, layout: str = "chw", convention: str | None = None) -> dict:
    layers = []
    extra = CONVENTION_COLUMNS.get(convention)
    for node, row in zip(net.graph, rows(net, layout)):
        layers.append(
            {
                "name": node.name,
                "op": node.op,
                "inputs": list(node.inputs),
                "output_shape": row["output"],
                "params": node.params,
                "buffers": node.buffers,
                "macs": node.macs,
                "activations": node.activations,
                "activation": row["activation"],
                "settings": OPS[node.op].settings(node),  # one phrase, e.g. "64@3x3 /2 same"
                "filter": row["filter"],
                "stride": row["stride"],
                "padding": row["padding"],
                "memory_bytes": row["memory"],
                "receptive_field": row["rf"],
                "block": [instance for _block, instance in node.scope],
                "line": node.span.line,
                "col": node.span.col,
                **({extra: row[extra]} if extra else {}),
            }
        )
    document = {
        "network": net.name,
        "file": net.file,
        "inputs": {n.name: list(layout_shape(n.shape, layout)) for n in net.graph.inputs},
        "outputs": [n.name for n in net.graph.outputs],
        "batch": net.batch,
        "dtype": net.dtype,
        "layout": layout,
        "layers": layers,
        "totals": net.totals.as_dict(),
        "conventions": CONVENTIONS,
        "warnings": [w.as_dict() for w in net.warnings],
    }
    if convention is not None:
        document[convention] = _convention_totals(net, convention)
    return document


def _convention_totals(net, convention: str) -> dict:
    from ..conventions import caffe_memory, darknet_bflops

    if convention == "darknet":
        figures = darknet_bflops(net)
        return {"total_bflops": float(figures.total), "conv_bflops": float(figures.conv)}
    tops = caffe_memory(net)
    return {"memory_required_for_data": tops[-1].total_bytes if tops else 0}


def _json(net, layout: str, convention: str | None = None) -> str:
    return json.dumps(network_json(net, layout, convention), indent=2) + "\n"
