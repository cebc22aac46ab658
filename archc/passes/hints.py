"""What would make a wrong size right: the suggestions of a dense size mismatch (E0218).

A `dense ... in=N` that gets another size is usually a mistake far upstream:
an input of another resolution than the layer table assumed, or a stride-1
convolution whose padding shrinks the map. Both are found by trying the
change and running the shape pass again (a few dozen linear passes, only
when this error occurs).
"""

from __future__ import annotations

from ..diagnostics import Reporter
from ..ops.base import fmt_padding, fmt_shape, prod

MAX_TRIALS = 80
COMMON_SIZES = (28, 32, 64, 96, 112, 128, 160, 224, 227, 229, 256, 299, 320, 384, 448, 512)


def dense_mismatch(graph, node, overrides, infer) -> tuple[str, list[str]]:
    """(message, help) for a dense layer whose input size is not its `in=`."""
    expected = node.attrs["in"]
    src = graph.nodes[node.inputs[0]]
    got = src.shape[0]
    origin = graph.nodes[src.inputs[0]] if src.op in ("flatten", "reshape") and src.inputs else src
    gives = f"{fmt_shape(origin.shape)} = {got}" if origin is not src else str(got)
    message = f"dense {node.name} expects {expected} inputs (in={expected}), but {src.op} {src.name} gives {gives}"
    inputs = {n.name: n.attrs for n in graph.inputs}

    def restore():  # trials override input shapes and rewrite every shape: put the real ones back
        for n in graph.inputs:
            n.attrs = inputs[n.name]
        infer(graph, Reporter(), overrides, hints=False)

    helps = []
    for trial in (_paddings, _input_sizes):
        try:
            helps += trial(graph, node, expected, overrides, infer)
        finally:
            restore()
    helps.append(f"or, if {got} is what you want, write in={got}")
    return message, helps


def _size_after(graph, node, infer, overrides) -> int | None:
    infer(graph, Reporter(), overrides, hints=False)
    src = graph.nodes[node.inputs[0]]
    return None if src.shape is None else prod(src.shape)


def _input_sizes(graph, node, expected, overrides, infer) -> list[str]:
    if len(graph.inputs) != 1:
        return []
    (inp,) = graph.inputs
    shape = inp.shape
    if shape is None or len(shape) < 2:
        return []
    c, *spatial = shape
    tries = [tuple(n + delta for n in spatial) for delta in range(-16, 17) if delta and min(spatial) + delta > 0]
    if len(set(spatial)) == 1:
        tries += [(size,) * len(spatial) for size in COMMON_SIZES]
    found = []
    for candidate in list(dict.fromkeys(tries))[:MAX_TRIALS]:
        if _size_after(graph, node, infer, {**overrides, inp.name: (c, *candidate)}) == expected:
            found.append(candidate)
    if not found:
        return []
    best = min(found, key=lambda t: sum(abs(a - b) for a, b in zip(t, spatial)))
    return [f"with an input of {fmt_shape(best)} (not {fmt_shape(spatial)}) it would get {expected}: is that the size?"]


def _paddings(graph, node, expected, overrides, infer) -> list[str]:
    import networkx as nx  # only when a hint is being worked out: ~100 ms that `check` of a good spec saves

    candidates = []  # read everything first: each trial rewrites the shapes
    for name in nx.ancestors(graph.nx, node.name):
        layer = graph.nodes[name]
        g, pad = layer.geom, layer.attrs.get("pad")
        if "pads" not in g or pad in ("same", None) or layer.shape is None or max(g.get("stride", (1,))) > 1:
            continue
        before = graph.nodes[layer.inputs[0]].shape
        if before is not None and tuple(layer.shape[1:]) != tuple(before[1:]):
            candidates.append((layer, g["pads"], before[1:], layer.shape[1:]))
    helps = []
    for layer, old_pads, before, after in candidates:
        saved = layer.attrs
        layer.attrs = {**saved, "pad": "same"}
        try:
            fits = _size_after(graph, node, infer, overrides) == expected
            new_pads = layer.geom.get("pads")
        finally:
            layer.attrs = saved
        if fits and new_pads is not None:
            helps.append(
                f"{layer.op} {layer.name} turns {fmt_shape(before)} into {fmt_shape(after)} "
                f"with pad={fmt_padding(old_pads)}; pad={fmt_padding(new_pads)} keeps {fmt_shape(before)} "
                f"and gives {expected}"
            )
    return sorted(helps)
