"""Figures as other tools print them: Darknet's BFLOPs and Caffe's "Memory required for data".

archc's own figures follow PyTorch (see docs/language.md, section 12); its
element operations, which no framework counts alike, follow archc's own
convention, defined there once and counted by each layer type
(`Op.count_elem_ops`, beside its MACs). Tools that published the networks
of their era counted differently, and their logs are what users compare
against:

- AlexeyAB's Darknet prints, per layer, BFLOPs = 2 x MACs / 1e9 for a
  convolution, window area x C x out_h x out_w / 1e9 for a max pool, and one
  operation per output value per added input for a shortcut; every other
  layer prints none, and "Total BFLOPS" is their sum.
- Caffe sums the values of every top blob as it sets the net up, in-place
  layers (a ReLU whose top is its bottom) again, and the blobs of the split
  layers it inserts where one blob feeds several layers, times the batch and
  4 bytes.

These functions compute the figures from an analysed `Network`; the table
(`archc table --convention darknet|caffe`) only shows them.
"""

from __future__ import annotations

from dataclasses import dataclass
from fractions import Fraction

from .ops.base import prod

CONVENTIONS = ("darknet", "caffe")
_CONVS = frozenset({"conv", "dwconv"})
_ADDS = frozenset({"add", "shortcut"})


@dataclass(frozen=True)
class DarknetFigures:
    bflops: dict[str, Fraction]  # layer -> BFLOPs, only for the layers Darknet prints a figure for
    total: Fraction  # "Total BFLOPS"
    conv: Fraction  # the convolutions alone

    def of(self, layer: str) -> float | None:
        value = self.bflops.get(layer)
        return None if value is None else float(value)


def darknet_bflops(net) -> DarknetFigures:
    """BFLOPs per layer and in total, as AlexeyAB's Darknet prints them when it loads a network."""
    out: dict[str, Fraction] = {}
    conv = Fraction(0)
    for node in net.graph:
        if node.op in _CONVS:
            out[node.name] = Fraction(2 * node.macs, 10**9)
            conv += out[node.name]
        elif node.op == "maxpool":
            out[node.name] = Fraction(prod(node.geom["kernel"]) * node.activations, 10**9)
        elif node.op in _ADDS:
            out[node.name] = Fraction(node.activations * (len(node.inputs) - 1), 10**9)
    return DarknetFigures(out, sum(out.values(), Fraction(0)), conv)


@dataclass(frozen=True)
class CaffeTop:
    layer: str  # the archc layer the blob belongs to
    kind: str  # "top": the layer's output; "in-place": its `-> activation`; "split": a copy Caffe splits off
    values: int  # per sample
    total_bytes: int  # "Memory required for data" once this blob is set up


def _implicit_flatten(net, node) -> bool:
    """A flatten read only by dense layers: Caffe's InnerProduct flattens its input itself, no blob."""
    readers = net.graph.consumers(node.name)
    return node.op == "flatten" and bool(readers) and all(net.layer(r).op == "dense" for r in readers)


def caffe_memory(net) -> list[CaffeTop]:
    """Every blob Caffe would allocate for the network, in order, with the running byte count."""
    from .analysis import DTYPE_BYTES

    scale = net.batch * DTYPE_BYTES[net.dtype]
    tops: list[CaffeTop] = []
    total = 0

    def add(layer: str, kind: str, values: int) -> None:
        nonlocal total
        total += values * scale
        tops.append(CaffeTop(layer, kind, values, total))

    for node in net.graph:
        if not _implicit_flatten(net, node):
            add(node.name, "top", node.activations)
            if node.activation is not None:
                add(node.name, "in-place", node.activations)
        readers = sum(net.layer(r).inputs.count(node.name) for r in net.graph.consumers(node.name))
        if readers > 1:
            for _ in range(readers):
                add(node.name, "split", node.activations)
    return tops
