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
NUMERIC = {"size", "params", "macs", "memory"}

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
    return int(fraction) if fraction.denominator == 1 else float(fraction)


def rows(net, layout: str = "chw") -> list[dict]:
    """One dictionary of raw values per layer, in topological order."""
    from ..analysis import DTYPE_BYTES

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
            }
        )
    return out


def human_bytes(n: int | None) -> str:
    if n is None:
        return "view"
    value = float(n)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if value < 1024 or unit == "TiB":
            return f"{int(value)} B" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    raise AssertionError("unreachable")  # pragma: no cover


def _cell(key: str, value) -> str:
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


def summary_lines(net) -> list[str]:
    t = net.totals
    setting = f"batch {net.batch}, {net.dtype}"
    peak_at = f" (at {t.peak_layer})" if t.peak_layer else ""
    return [
        f"Total params {t.params:,} ({human_bytes(t.param_bytes)}), buffers {t.buffers:,}; "
        f"MACs {t.macs:,} (FLOPs {t.flops:,})",
        f"Activations {t.activations:,} per sample, {human_bytes(t.activation_bytes)}; peak activation memory "
        f"{human_bytes(t.peak_activation_bytes)}{peak_at}; {setting}",
    ]


def _pick(columns) -> tuple[str, ...]:
    columns = tuple(columns or DEFAULT_COLUMNS)
    unknown = [c for c in columns if c not in COLUMNS]
    if unknown:
        raise ValueError(f"unknown column {unknown[0]!r}; columns are: {', '.join(COLUMNS)}")
    return columns


def render_table(
    net, format: str = "rich", *, layout: str = "chw", columns=None, color: bool = False, width: int | None = None
) -> str:
    columns = _pick(columns)
    if layout not in ("chw", "hwc"):
        raise ValueError("layout is chw or hwc")
    renderers = {"rich": _rich, "markdown": _markdown, "csv": _csv, "json": _json}
    if format not in renderers:
        raise ValueError(f"unknown format {format!r}; choose one of {', '.join(renderers)}")
    if format == "json":
        return _json(net, layout)
    return renderers[format](net, rows(net, layout), columns, color=color, width=width)


def _rich(net, table_rows, columns, *, color: bool, width: int | None) -> str:
    from rich import box
    from rich.console import Console
    from rich.table import Table

    table = Table(
        title=f"{net.name} ({net.file})",
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
    for line in summary_lines(net):
        console.print(line, soft_wrap=True)
    console.print(f"[dim]{CONVENTIONS}[/dim]" if color else CONVENTIONS, soft_wrap=True)
    return "\n".join(line.rstrip() for line in buffer.getvalue().splitlines()) + "\n"


def _markdown(net, table_rows, columns, **_) -> str:
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
    lines += [line + "  " for line in summary_lines(net)]
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


def network_json(net, layout: str = "chw") -> dict:
    layers = []
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
            }
        )
    return {
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


def _json(net, layout: str) -> str:
    return json.dumps(network_json(net, layout), indent=2) + "\n"
