"""Activation memory: totals and the inference peak.

Views (flatten, reshape) and layers that are the identity at inference
(dropout) share their input's memory, so they add nothing. A layer's workspace
(attention's weights, `Op.workspace`) counts among the activations and is live
only while the layer runs. A tensor is freed
after its last consumer runs, in the graph's topological order; network
outputs are never freed. The peak is the most memory live at once, counting
a layer's output together with the inputs it is still reading.
"""

from __future__ import annotations

from dataclasses import dataclass

from ..ops import OPS
from ..ops.base import INT64


@dataclass(frozen=True)
class MemoryTotals:
    activations: int  # elements per sample, materialised tensors only
    activation_bytes: int  # their bytes per sample
    peak_bytes: int  # bytes per sample live at the peak
    peak_layer: str | None  # the layer during which the peak happens


def output_bytes(node, nbytes: int) -> int:
    """Bytes per sample of a layer's output: `nbytes` a value, token ids int64 as torch holds them."""
    return node.activations * (INT64 if getattr(node.shape, "vocab", None) is not None else nbytes)


def measure_memory(graph, nbytes: int) -> MemoryTotals:
    order = [n for n in graph if not n.failed]
    index = {n.name: i for i, n in enumerate(order)}
    forever = len(order)
    last_use = {n.name: forever if not graph.consumers(n.name) else -1 for n in order}
    for i, node in enumerate(order):
        for src in node.inputs:
            last_use[src] = max(last_use[src], i)
    root = {}
    for node in order:
        if OPS[node.op].is_view:
            r = root[node.inputs[0]]
            root[node.name] = r
            last_use[r] = max(last_use[r], last_use[node.name])
        else:
            root[node.name] = node.name
    total = total_bytes = live = peak = 0
    peak_layer = None
    for i, node in enumerate(order):
        own = root[node.name] == node.name
        size, work = (output_bytes(node, nbytes) if own else 0), node.workspace * nbytes
        total += (node.activations if own else 0) + node.workspace
        total_bytes += size + work
        live += size
        if live + work > peak:
            peak, peak_layer = live + work, node.name
        for r in {root[src] for src in node.inputs} | {root[node.name]}:
            if last_use[r] <= i and r in index:
                live -= output_bytes(graph.nodes[r], nbytes)
                last_use[r] = forever + 1  # freed once
    return MemoryTotals(total, total_bytes, peak, peak_layer)
