"""Fully connected layer, applied along the last axis as torch's nn.Linear is."""

from __future__ import annotations

from ..codegen.pyexpr import call
from .base import Op, P, Proposal, Saved, ShapeError, Training, bias_adds, fmt_shape, prod, register
from .conv import weighted_backward


@register
class Dense(Op):
    name = "dense"
    doc = (
        "Fully connected layer: every output unit sees every input feature. On a vector, or at every "
        "position of a map whose features are last (after `permute`), as nn.Linear."
    )
    init_kind = "dense"
    params = (
        P("units", "int", positional=True, doc="number of output units"),
        P("bias", "bool", True),
        P("in", "int", None, doc="the input size you expect, as in nn.Linear(in, out); checked (E0218)"),
    )

    def infer(self, node, ins, warn):
        shape = ins[0]
        if shape.channels != len(shape) - 1:
            raise self._not_flat(node, shape)
        if node.attrs["units"] < 1:
            raise ShapeError(f"dense {node.name}: units must be at least 1", param="units", code="E0205")
        expected = node.attrs["in"]
        if expected is not None and expected != shape[-1]:
            # the shapes pass rewrites this with the layer the size came from and what would fix it
            raise ShapeError(f"dense {node.name} expects {expected} inputs, but gets {shape[-1]}", code="E0218")
        return (*shape[:-1], node.attrs["units"])

    def _not_flat(self, node, shape) -> ShapeError:
        """E0304 for a map whose channels are not last: a `dense` on a conv map almost always
        lacks its `flatten`; a `permute` that puts the channels last applies it at every position."""
        order = tuple(i for i in range(len(shape)) if i != shape.channels) + (shape.channels,)
        return ShapeError(
            f"dense {node.name} needs a flat input or the channels last, but gets {fmt_shape(shape)} with "
            + ("the channels first" if shape.channels == 0 else f"the channels on axis {shape.channels}"),
            [
                f"insert `flatten` before it (it would give {prod(shape)} inputs)",
                f"or, to apply it at every position, `permute: {fmt_shape(order)}` before it puts the channels last",
            ],
            code="E0304",
            proposals=[
                Proposal("flatten", None, "", f"gives it {prod(shape)} inputs"),
                Proposal("permute", order, fmt_shape(order), "puts the channels last and applies it at every position"),
            ],
        )

    def channels(self, node, ins, out):
        return len(out) - 1  # the units, at every position

    def count_params(self, node, ins, out):
        return ins[0][-1] * out[-1] + (out[-1] if node.attrs["bias"] else 0)

    def training(self, node, ins, out, ctx):
        return Training((Saved.input(),))  # for the weight's gradient

    def count_macs(self, node, ins, out):
        return prod(ins[0]) * out[-1]  # in * out at every position

    def count_elem_ops(self, node, ins, out):
        return bias_adds(node, out)

    def receptive(self, node, rfs):
        """Each output reads its own position: the input's field (none on a vector, nor after the
        `permute` that put the features last, which tracks none)."""
        return rfs[0]

    def settings(self, node):
        return str(node.attrs["units"]) + ("" if node.attrs["bias"] else " no bias")

    def torch_layer(self, node, ins):
        return call("nn.Linear", ins[0][-1], node.attrs["units"], bias=None if node.attrs["bias"] else "False")

    def numpy_state(self, node, ins, init):
        units = node.attrs["units"]
        shape = (units, ins[0][-1])
        return [("weight", init.weight(shape)), *([("bias", init.bias(units, shape))] if node.attrs["bias"] else [])]

    def numpy_call(self, node, state, args):
        return call("linear", args[0], state("weight"), *([state("bias")] if node.attrs["bias"] else []))

    def onnx_call(self, node, g, args):
        """Gemm on a vector, as torch exports nn.Linear; at every position, MatMul by the transposed weight."""
        bias = g.state("bias") if node.attrs["bias"] else None
        if len(node.shape) == 1:
            return g.op("Gemm", args[0], g.state("weight"), bias, transB=1)
        out = g.op("MatMul", args[0], g.op("Transpose", g.state("weight"), perm=[1, 0]))
        return g.op("Add", out, bias) if bias else out

    def numpy_backward(self, node, state, grad, saved):
        return weighted_backward(self, node, state, grad, saved)
