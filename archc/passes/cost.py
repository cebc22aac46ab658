"""Parameters, buffers and MACs of every node (figures.md's counting conventions)."""

from __future__ import annotations

from ..ops import OPS


def count_costs(graph) -> None:
    nodes = graph.nodes
    for node in graph:
        node.params = node.buffers = node.macs = 0
        if node.failed:
            continue
        op = OPS[node.op]
        ins = [nodes[src].shape for src in node.inputs]
        node.params = op.count_params(node, ins, node.shape)
        node.buffers = op.count_buffers(node, ins, node.shape)
        node.macs = op.count_macs(node, ins, node.shape)
