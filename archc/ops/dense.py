"""Fully connected layer."""

from __future__ import annotations

from ..codegen.pyexpr import call, lit
from .base import Op, P, Proposal, Saved, ShapeError, Training, fmt_shape, prod, register
from .emit import zeros


@register
class Dense(Op):
    name = "dense"
    doc = "Fully connected layer: every output unit sees every input unit."
    params = (
        P("units", "int", positional=True, doc="number of output units"),
        P("bias", "bool", True),
        P("in", "int", None, doc="the input size you expect, as in nn.Linear(in, out); checked (E0218)"),
    )

    def infer(self, node, ins, warn):
        shape = ins[0]
        if len(shape) != 1:
            raise ShapeError(
                f"dense {node.name} needs a flat input, but gets {fmt_shape(shape)}",
                [f"insert `flatten` before it (it would give {prod(shape)} inputs)"],
                code="E0304",
                proposals=[Proposal("flatten", None, "flatten", "")],
            )
        if node.attrs["units"] < 1:
            raise ShapeError(f"dense {node.name}: units must be at least 1", param="units", code="E0205")
        expected = node.attrs["in"]
        if expected is not None and expected != shape[0]:
            # the shapes pass rewrites this with the layer the size came from and what would fix it
            raise ShapeError(f"dense {node.name} expects {expected} inputs, but gets {shape[0]}", code="E0218")
        return (node.attrs["units"],)

    def count_params(self, node, ins, out):
        return ins[0][0] * out[0] + (out[0] if node.attrs["bias"] else 0)

    def training(self, node, ins, out, ctx):
        return Training((Saved.input(),))  # for the weight's gradient

    def count_macs(self, node, ins, out):
        return ins[0][0] * out[0]

    def receptive(self, node, rfs):
        return None

    def settings(self, node):
        return str(node.attrs["units"]) + ("" if node.attrs["bias"] else " no bias")

    def torch_layer(self, node, ins):
        return call("nn.Linear", ins[0][0], node.attrs["units"], bias=None if node.attrs["bias"] else "False")

    def numpy_state(self, node, ins, init):
        units = node.attrs["units"]
        state = [("weight", call(init, "rng", lit((units, ins[0][0]))))]
        return state + ([("bias", zeros((units,)))] if node.attrs["bias"] else [])

    def numpy_call(self, node, state, args):
        return call("linear", args[0], state("weight"), *([state("bias")] if node.attrs["bias"] else []))
