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


@dataclass(frozen=True)
class MemoryTotals:
    activations: int  # elements per sample, materialised tensors only
    peak_activations: int  # elements per sample live at the peak
    peak_layer: str | None  # the layer during which the peak happens


def measure_memory(graph) -> MemoryTotals:
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
    total = live = peak = 0
    peak_layer = None
    for i, node in enumerate(order):
        size = node.activations if root[node.name] == node.name else 0
        total += size + node.workspace
        live += size
        if live + node.workspace > peak:
            peak, peak_layer = live + node.workspace, node.name
        for r in {root[src] for src in node.inputs} | {root[node.name]}:
            if last_use[r] <= i and r in index:
                live -= graph.nodes[r].activations
                last_use[r] = forever + 1  # freed once
    return MemoryTotals(total, peak, peak_layer)
