"""Receptive field (size, jump, start) per spatial dimension of every node.

Standard receptive-field arithmetic: a window layer with effective kernel k,
stride s and left padding p maps (r, j, start) to
(r + (k-1)*j, j*s, start + ((k-1)/2 - p)*j). Layers that mix every position
(flatten, global and adaptive pooling, and so dense on the vector they give) end it: None means "the whole
input".
"""

from __future__ import annotations

from ..ops import OPS


def receptive_fields(graph) -> None:
    nodes = graph.nodes
    for node in graph:
        node.rf = None
        if node.failed:
            continue
        node.rf = OPS[node.op].receptive(node, [nodes[src].rf for src in node.inputs])
