"""Network inputs."""

from __future__ import annotations

from fractions import Fraction

from .base import Op, P, ShapeError, fmt_shape, register


@register
class Input(Op):
    name = "input"
    doc = "A network input; its shape is per sample, channels first (the batch is implicit)."
    params = (P("shape", "shape", positional=True, doc="784, C x L, C x H x W or C x D x H x W"),)
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
        return shape

    def receptive(self, node, rfs):
        shape = node.shape
        if len(shape) < 2:
            return None
        return tuple((1, 1, Fraction(1, 2)) for _ in shape[1:])
