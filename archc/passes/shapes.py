"""Output shape of every node, with errors and warnings at the layer that fails."""

from __future__ import annotations

from ..diagnostics import Reporter
from ..ops import OPS, ShapeError
from ..ops.base import fmt_shape, prod
from .hints import dense_mismatch

MAX_ELEMENTS = 2**62  # per sample; larger tensors overflow int64 counters in every framework


def node_notes(node) -> list:
    """Where the block that holds a node was called, so an error inside a block names the call."""
    notes = []
    for (block, _instance), call in zip(reversed(node.scope), reversed(node.calls)):
        notes.append((f"in block `{block}`, called here", call))
    return notes


def infer_shapes(
    graph, reporter: Reporter, overrides: dict[str, tuple[int, ...]] | None = None, hints: bool = True
) -> None:
    """`hints`: work out what would fix a size mismatch (off while trying the fixes themselves)."""
    overrides = overrides or {}
    nodes = graph.nodes
    for node in graph:
        node.geom = {}
        node.failed = False
        node.shape = None
        if any(nodes[src].failed for src in node.inputs):
            node.failed = True  # the cause is already reported; stay quiet
            continue
        ins = [nodes[src].shape for src in node.inputs]
        op = OPS[node.op]

        def warn(message, help=(), node=node):
            reporter.warn("W0301", message, node.span, help, node_notes(node))

        try:
            if node.op == "input" and node.name in overrides:
                node.attrs = {**node.attrs, "shape": overrides[node.name]}
            shape = tuple(op.infer(node, ins, warn))
            if prod(shape) > MAX_ELEMENTS:
                raise ShapeError(
                    f"{node.op} {node.name}: the output {fmt_shape(shape)} has more than 2^62 values",
                    ["check the sizes: no framework can hold this tensor"],
                    code="E0306",
                )
        except ShapeError as err:
            span = node.arg_spans.get(err.param, node.span) if err.param else node.span
            message, help_ = err.message, err.help
            if err.code == "E0218" and hints:
                message, help_ = dense_mismatch(graph, node, overrides, infer_shapes)
                span = node.arg_spans.get("in", node.span)
            reporter.error(err.code, message, span, help_, node_notes(node))
            node.failed = True
            continue
        node.shape = shape
