"""Element-wise activations; each is a layer and a `-> name` shorthand on any layer."""

from __future__ import annotations

from .base import Op, P, ShapeError, register


class _Activation(Op):
    is_activation = True

    def infer(self, node, ins, warn):
        return ins[0]


def _activation(name: str, doc: str, *params: P) -> type[Op]:
    cls = type(name.title().replace("_", ""), (_Activation,), {"name": name, "doc": doc, "params": params})
    return register(cls)


_activation("relu", "max(x, 0)")
_activation("leaky_relu", "x if x > 0 else alpha*x", P("alpha", "float", 0.01, positional=True))
_activation("relu6", "min(max(x, 0), 6) (MobileNet)")
_activation("elu", "x if x > 0 else alpha*(exp(x)-1)", P("alpha", "float", 1.0, positional=True))
_activation("gelu", "x * Phi(x), the Gaussian error linear unit (exact form)")
_activation("silu", "x * sigmoid(x) (swish)")
_activation("hardswish", "x * relu6(x+3)/6 (MobileNetV3)")
_activation("tanh", "hyperbolic tangent")
_activation("sigmoid", "1 / (1 + exp(-x))")
_activation("identity", "x, unchanged")


@register
class Softmax(_Activation):
    name = "softmax"
    doc = "exp(x) / sum(exp(x)) over the channel axis (the class axis of a vector)."

    def infer(self, node, ins, warn):
        if not ins[0]:
            raise ShapeError(f"softmax {node.name}: needs at least one axis")
        return ins[0]
