"""Parameters, buffers, MACs and element operations of every node (figures.md's counting conventions
for the first three; docs/language.md, section 12, for all four)."""

from __future__ import annotations

from ..diagnostics import Reporter
from ..ops import OPS
from ..ops.base import MAX_SIZE
from .shapes import node_notes

FIGURES = ("params", "buffers", "macs", "elem_ops", "activations", "workspace")


def count_costs(graph, reporter: Reporter) -> None:
    """Every layer's figures; E0306 at the layer whose figure, or the network's total up to it, passes 2^62.

    One check for every layer type: the figures are the products of sizes that are each at most
    2^62, so a layer's can pass it; the totals are checked as they grow, so the error names the
    layer where they do.
    """
    nodes = graph.nodes
    totals = dict.fromkeys(FIGURES, 0)
    for node in graph:
        node.params = node.buffers = node.macs = node.elem_ops = node.workspace = 0
        if node.failed:
            continue
        op = OPS[node.op]
        ins = [nodes[src].shape for src in node.inputs]
        node.params = op.count_params(node, ins, node.shape)
        node.buffers = op.count_buffers(node, ins, node.shape)
        node.macs = op.count_macs(node, ins, node.shape)
        node.elem_ops = op.count_elem_ops(node, ins, node.shape) + _fused_ops(node)
        node.workspace = op.workspace(node, ins, node.shape)
        for figure in FIGURES:
            value = getattr(node, figure)
            totals[figure] += value
            if max(value, totals[figure]) > MAX_SIZE:
                whose = f"{node.op} {node.name}" if value > MAX_SIZE else f"the network, up to {node.name},"
                reporter.error(
                    "E0306",
                    f"{whose} has more than 2^62 {_NAMES[figure]}",
                    node.span,
                    ["check the sizes: no framework counts this far"],
                    node_notes(node),
                )
                totals = dict.fromkeys(FIGURES, 0)  # one error each time the limit is passed, not one a layer
                break


def _fused_ops(node) -> int:
    """The element operations of a `-> name` activation: the activation's, on the layer's output."""
    if node.activation is None:
        return 0
    return OPS[node.activation[0]].count_elem_ops(node, [node.shape], node.shape)


_NAMES = {
    "params": "parameters",
    "buffers": "buffer values",
    "macs": "MACs",
    "elem_ops": "element operations",
    "activations": "activation values",
    "workspace": "workspace values",
}
