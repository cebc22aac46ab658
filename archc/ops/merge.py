"""Layers that join several tensors: concat (channels) and element-wise add."""

from __future__ import annotations

from ..codegen.pyexpr import Sum, call, list_of
from .base import Op, ShapeError, fmt_shape, register


def _listing(node, ins) -> str:
    return ", ".join(f"{src} {fmt_shape(shape)}" for src, shape in zip(node.inputs, ins))


def _merge_rf(rfs):
    if any(rf is None for rf in rfs):
        return None
    return max(rfs, key=lambda rf: tuple(size for size, _, _ in rf))


@register
class Concat(Op):
    name = "concat"
    doc = "Joins its inputs along the channel axis; every other dimension must agree."
    min_inputs, max_inputs = 2, None

    def infer(self, node, ins, warn):
        ranks = {len(s) for s in ins}
        rest = {s[1:] for s in ins}
        if len(ranks) > 1 or len(rest) > 1:
            raise ShapeError(
                f"concat {node.name}: inputs must agree in every dimension but channels: {_listing(node, ins)}",
                ["resize the branches to the same spatial size (matching stride and padding) before joining"],
                code="E0305",
            )
        return (sum(s[0] for s in ins), *ins[0][1:])

    def receptive(self, node, rfs):
        return _merge_rf(rfs)

    def torch_call(self, node, module, args):
        return call("torch.cat", list_of(args), dim="1")

    def numpy_call(self, node, state, args):
        return call("np.concatenate", list_of(args), axis="1")


@register
class Add(Op):
    name = "add"
    doc = "Element-wise sum of its inputs (residual connections); shapes must be equal."
    min_inputs, max_inputs = 2, None

    def infer(self, node, ins, warn):
        if len(set(ins)) > 1:
            raise ShapeError(
                f"add {node.name}: inputs must have the same shape: {_listing(node, ins)}",
                ["project the shortcut with a 1x1 conv (and the same stride) so both shapes agree"],
                code="E0305",
            )
        return ins[0]

    def receptive(self, node, rfs):
        return _merge_rf(rfs)

    def torch_call(self, node, module, args):
        return Sum(tuple(args))

    numpy_call = torch_call
