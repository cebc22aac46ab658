"""Layer scale: a learned multiplier per channel (ConvNeXt's `layer_scale`, CaiT's LayerScale)."""

from __future__ import annotations

import math

from ..codegen.pyexpr import Sum, call, lit
from .base import Backward, Op, P, Saved, ShapeError, Training, prod, register


@register
class LayerScale(Op):
    name = "layer_scale"
    doc = (
        "Multiplies each channel by its own learned factor, a parameter of shape C x 1 x ... x 1 that "
        "starts at `init` (torchvision's ConvNeXt: `nn.Parameter(torch.ones(dim, 1, 1) * layer_scale)`)."
    )
    params = (P("init", "float", 1e-6, positional=True, doc="the factors' initial value"),)

    def _shape(self, ins) -> tuple[int, ...]:
        """C followed by a 1 per spatial dimension: it broadcasts over (N, C, *spatial), and has
        torchvision's shape, so its weights load."""
        return (ins[0][0],) + (1,) * (len(ins[0]) - 1)

    def infer(self, node, ins, warn):
        if not math.isfinite(node.attrs["init"]):  # 1e400: every output would be inf or nan
            raise ShapeError(
                f"layer_scale {node.name}: init must be a finite number, not {node.attrs['init']}",
                param="init",
                code="E0205",
            )
        return ins[0]

    def count_params(self, node, ins, out):
        return ins[0][0]

    def count_elem_ops(self, node, ins, out):
        return prod(out)  # one multiplication per value

    def training(self, node, ins, out, ctx):
        return Training((Saved.input(),))  # for the factors' gradient

    def settings(self, node):
        return f"init {node.attrs['init']:g}"

    def torch_layer(self, node, ins):
        shape = lit(self._shape(ins))
        return call("nn.Parameter", call("torch.full", shape, lit(float(node.attrs["init"]))))

    def torch_call(self, node, module, args):
        return Sum((module, args[0]), "*")  # torchvision's order: self.layer_scale * x

    def numpy_state(self, node, ins, init):
        return [("", call("np.full", lit(self._shape(ins)), lit(float(node.attrs["init"])), "np.float32"))]

    def numpy_call(self, node, state, args):
        return Sum((state(""), args[0]), "*")

    def onnx_call(self, node, g, args):
        return g.op("Mul", g.state(""), args[0])

    def numpy_backward(self, node, state, grad, saved):
        """mul_backward of gamma * x: the factors' gradient (summed over the batch and positions), then x's."""
        return Backward(call("mul_backward", grad, state(""), saved), ("", 0))
