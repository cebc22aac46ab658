"""Parameters, buffers and MACs of every node (figures.md's counting conventions)."""

from __future__ import annotations

from ..diagnostics import Reporter
from ..ops import OPS
from ..ops.base import MAX_SIZE
from .shapes import node_notes

FIGURES = ("params", "buffers", "macs", "activations")


def count_costs(graph, reporter: Reporter) -> None:
    """Every layer's figures; E0306 at the layer whose figure, or the network's total up to it, passes 2^62.

    One check for every layer type: the figures are the products of sizes that are each at most
    2^62, so a layer's can pass it; the totals are checked as they grow, so the error names the
    layer where they do.
    """
    nodes = graph.nodes
    totals = dict.fromkeys(FIGURES, 0)
    for node in graph:
        node.params = node.buffers = node.macs = 0
        if node.failed:
            continue
        op = OPS[node.op]
        ins = [nodes[src].shape for src in node.inputs]
        node.params = op.count_params(node, ins, node.shape)
        node.buffers = op.count_buffers(node, ins, node.shape)
        node.macs = op.count_macs(node, ins, node.shape)
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


_NAMES = {"params": "parameters", "buffers": "buffer values", "macs": "MACs", "activations": "activation values"}
