"""Output shape of every node, with errors and warnings at the layer that fails."""

from __future__ import annotations

from ..diagnostics import Reporter
from ..ops import OPS, ShapeError
from ..ops.base import MAX_SIZE, fmt_shape, prod
from .hints import dense_message, offer_fixes

PARAM_OF = {"pads": "pad"}  # resolved geometry -> the argument it comes from


def node_notes(node) -> list:
    """Where the block that holds a node was called, so an error inside a block names the call."""
    notes = []
    for (block, _instance), call in zip(reversed(node.scope), reversed(node.calls)):
        notes.append((f"in block `{block}`, called here", call))
    return notes


def largest(value) -> int:
    """The largest whole number in a value (a number, a shape, per-side pairs); 0 when it holds none."""
    if isinstance(value, bool) or not isinstance(value, int | tuple):
        return 0
    if isinstance(value, int):
        return value
    return max((largest(v) for v in value), default=0)


def check_sizes(node, values: dict) -> None:
    """E0306 for an argument, or a size worked out from them, above 2^62 (sizes, figures: docs section 12)."""
    for key, value in values.items():
        if largest(value) > MAX_SIZE:
            param = PARAM_OF.get(key, key)
            raise ShapeError(
                f"{node.op} {node.name}: {param} is larger than 2^62",
                ["check the number: no framework can hold a size this large"],
                param=param,
                code="E0306",
            )


def check_output(node, shape) -> None:
    """E0306 for an output of more than 2^62 values; a size that large is not printed (it may not fit a str)."""
    if prod(shape) > MAX_SIZE:
        what = fmt_shape(shape) if max(shape) <= MAX_SIZE else "with a size above 2^62"
        raise ShapeError(
            f"{node.op} {node.name}: the output {what} has more than 2^62 values",
            ["check the sizes: no framework can hold this tensor"],
            code="E0306",
        )


def infer_shapes(
    graph,
    reporter: Reporter,
    overrides: dict[str, tuple[int, ...]] | None = None,
    hints: bool = True,
    sources: dict[str, str] | None = None,
) -> None:
    """`hints`: work out what would fix a diagnostic (off while trying the fixes themselves);
    `sources`: the `.arch` texts by file, which a fix can edit (none for an imported file)."""
    overrides = overrides or {}
    nodes = graph.nodes
    pending = []  # (diagnostic, node, proposals): fixes to try once every shape is known
    for node in graph:
        node.geom = {}
        node.failed = False
        node.shape = None
        if any(nodes[src].failed for src in node.inputs):
            node.failed = True  # the cause is already reported; stay quiet
            continue
        ins = [nodes[src].shape for src in node.inputs]
        op = OPS[node.op]

        def warn(message, help=(), proposals=(), node=node):
            diag = reporter.warn("W0301", message, node.span, help, node_notes(node))
            if proposals and hints:
                pending.append((diag, node, proposals))

        try:
            if node.op == "input" and node.name in overrides:
                node.attrs = {**node.attrs, "shape": overrides[node.name]}
            # first: then every figure the layer works out is small enough to print
            check_sizes(node, {p.name: node.attrs.get(p.name) for p in op.params if p.kind != "float"})
            shape = tuple(op.infer(node, ins, warn))
            check_sizes(node, node.geom)
            check_output(node, shape)
        except ShapeError as err:
            span = node.arg_spans.get(err.param, node.span) if err.param else node.span
            message = err.message
            if err.code == "E0218":
                message, span = dense_message(graph, node), node.arg_spans.get("in", node.span)
            diag = reporter.error(err.code, message, span, err.help, node_notes(node))
            if (err.code == "E0218" or err.proposals) and hints:
                pending.append((diag, node, err.proposals))
            node.failed = True
            continue
        node.shape = shape
    if pending:
        offer_fixes(graph, reporter, pending, overrides, infer_shapes, sources or {})
