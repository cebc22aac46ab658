"""Network inputs: channels-first maps, sequences (length x features) and integer token ids."""

from __future__ import annotations

from fractions import Fraction
from typing import ClassVar

from .base import Layout, Op, P, ShapeError, fmt_shape, register


@register
class Input(Op):
    name = "input"
    doc = (
        "A network input; its shape is per sample (the batch is implicit): channels first, a `sequence` "
        "of length x features, or `tokens`, a sequence of integer ids below `vocab`."
    )
    params = (
        P("shape", "shape", positional=True, doc="784, C x L, C x H x W or C x D x H x W; L x C; L"),
        P("kind", "choice", "map", choices=("map", "sequence", "tokens"), doc="what the sizes are"),
        P("vocab", "int", None, doc="token ids: how many there are (ids 0 to vocab - 1)"),
    )
    symbols: ClassVar[dict] = {"sequence": ("kind", "sequence"), "tokens": ("kind", "tokens")}
    min_inputs, max_inputs = 0, 0

    def infer(self, node, ins, warn):
        shape = node.attrs["shape"]
        shape = (shape,) if isinstance(shape, int) else tuple(shape)
        if not shape or len(shape) > 4 or min(shape) < 1:  # inputs={"x": ()} gives no size at all
            raise ShapeError(
                f"input {node.name}: shape {fmt_shape(shape) or '()'} is not a vector, C x L, C x H x W or "
                f"C x D x H x W with sizes of at least 1",
                param="shape",
                code="E0205",
            )
        kind, vocab = node.attrs["kind"], node.attrs["vocab"]
        ranks = {"sequence": (2, "length x features, such as 197x768"), "tokens": (1, "a length, such as 512")}
        if kind in ranks and len(shape) != ranks[kind][0]:
            raise ShapeError(
                f"input {node.name}: a {kind} input's shape is {ranks[kind][1]}, not {fmt_shape(shape)}",
                param="shape",
                code="E0301",
            )
        if (kind == "tokens") != (vocab is not None):
            raise ShapeError(
                f"input {node.name}: "
                + ("token ids need a vocabulary size" if vocab is None else "only `tokens` inputs have a vocab"),
                ["write `tokens vocab=N` for ids 0 to N - 1" if vocab is None else "leave out vocab=, or add `tokens`"],
                param="vocab" if vocab is not None else "kind",
                code="E0205",
            )
        if vocab is not None and vocab < 1:
            raise ShapeError(f"input {node.name}: vocab must be at least 1, not {vocab}", param="vocab", code="E0205")
        return shape

    def layout(self, node, ins, out):
        kind = node.attrs["kind"]
        return Layout(out, 1 if kind == "sequence" else 0, vocab=node.attrs["vocab"])

    def settings(self, node):
        kind = node.attrs["kind"]
        return f"token ids, vocab {node.attrs['vocab']}" if kind == "tokens" else "" if kind == "map" else kind

    def receptive(self, node, rfs):
        shape = node.shape
        if len(shape) < 2 or node.attrs["kind"] != "map":
            return None
        return tuple((1, 1, Fraction(1, 2)) for _ in shape[1:])
