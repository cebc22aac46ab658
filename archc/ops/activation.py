"""Element-wise activations; each is a layer and a `-> name` shorthand on any layer."""

from __future__ import annotations

from ..codegen.pyexpr import call, lit
from .base import Backward, Op, P, Saved, ShapeError, Training, prod, register
from .emit import mirror


class _Activation(Op):
    is_activation = True
    # torch module, torch function and NumPy function computing it; "" for identity
    torch_module: str = ""
    torch_function: str = ""
    numpy_function: str = ""
    # element operations per output value: one evaluation of the function, however it is computed
    per_value: int = 1
    # What torch's backward keeps: the input (most), or the output where the gradient is a
    # function of it (relu, sigmoid, tanh, softmax); in place, the output (which is then
    # the input's storage), or for relu6 (hardtanh_) a copy of the input; identity nothing.
    saves: str = "input"
    saves_in_place: str = "output"
    # (g, x, attrs) -> the ONNX value of the activation of x (archc.codegen.onnx_target); None: x itself
    onnx_function = None

    def infer(self, node, ins, warn):
        return ins[0]

    def count_elem_ops(self, node, ins, out):
        """Also a `-> name` on another layer: the cost pass passes that layer's output as `out`."""
        return self.per_value * prod(out)

    def training(self, node, ins, out, ctx):
        if self.saves == "nothing":  # identity: the input itself
            return Training(view=True)
        kind = self.saves_in_place if ctx.in_place else self.saves
        if kind == "copy":
            return Training((Saved.new(prod(out)),))
        return Training((Saved.output() if kind == "output" else Saved.input(),))

    def _values(self, attrs) -> list[str]:
        """Settings that differ from the default, positionally, as every backend takes them."""
        return [lit(float(attrs[p.name])) for p in self.params if attrs[p.name] != p.default]

    def bind(self, attrs, shape) -> dict:
        """The settings of a `-> name` shorthand for the output `shape` (a Layout) it applies to; the
        shape pass binds them once it knows that shape (softmax takes the axis of the channels)."""
        return attrs

    def apply_torch(self, attrs, x):
        """The activation of `x` in forward, for the `-> name` shorthand."""
        return call(self.torch_function, x, *self._values(attrs)) if self.torch_function else x

    def apply_numpy(self, attrs, x):
        return call(self.numpy_function, x, *self._values(attrs)) if self.numpy_function else x

    def apply_onnx(self, attrs, g, x: str) -> str:
        return self.onnx_function(g, x, attrs) if self.onnx_function else x

    def torch_layer(self, node, ins):
        return call(self.torch_module, *self._values(node.attrs))

    def numpy_call(self, node, state, args):
        return self.apply_numpy(node.attrs, args[0])

    def onnx_call(self, node, g, args):
        return self.apply_onnx(node.attrs, g, args[0])

    def numpy_keep(self, node, args):
        return args[0] if self.numpy_function else None  # identity: nothing

    def backward_numpy(self, attrs, grad, saved):
        """The gradient through the activation of the kept input `saved`, also for the `-> name` shorthand."""
        return mirror(self.apply_numpy(attrs, saved), grad, saved) if self.numpy_function else grad

    def numpy_backward(self, node, state, grad, saved):
        return Backward(self.backward_numpy(node.attrs, grad, saved))


def _activation(
    name: str,
    doc: str,
    torch: tuple[str, str],
    numpy: str,
    *params: P,
    onnx=None,
    per_value: int = 1,
    saves: dict | None = None,
) -> type[Op]:
    cls = type(
        name.title().replace("_", ""),
        (_Activation,),
        {
            "name": name,
            "doc": doc,
            "params": params,
            "torch_module": torch[0],
            "torch_function": torch[1],
            "numpy_function": numpy,
            "per_value": per_value,
            "onnx_function": staticmethod(onnx) if onnx else None,
            **(saves or {}),
        },
    )
    return register(cls)


def _onnx(op_type: str, **fixed):
    """An activation that is one ONNX operator; `fixed` are its attributes, or (a callable) read from the layer's."""
    return lambda g, x, attrs: g.op(op_type, x, **{k: v(attrs) if callable(v) else v for k, v in fixed.items()})


_activation("relu", "max(x, 0)", ("nn.ReLU", "F.relu"), "relu", onnx=_onnx("Relu"), saves={"saves": "output"})
_activation(
    "leaky_relu",
    "x if x > 0 else alpha*x",
    ("nn.LeakyReLU", "F.leaky_relu"),
    "leaky_relu",
    P("alpha", "float", 0.01, positional=True),
    onnx=_onnx("LeakyRelu", alpha=lambda a: float(a["alpha"])),
)
_activation(
    "relu6",
    "min(max(x, 0), 6) (MobileNet)",
    ("nn.ReLU6", "F.relu6"),
    "relu6",
    onnx=lambda g, x, attrs: g.op("Clip", x, g.const(0.0, "float32"), g.const(6.0, "float32")),
    saves={"saves_in_place": "copy"},
)
_activation(
    "elu",
    "x if x > 0 else alpha*(exp(x)-1)",
    ("nn.ELU", "F.elu"),
    "elu",
    P("alpha", "float", 1.0, positional=True),
    onnx=_onnx("Elu", alpha=lambda a: float(a["alpha"])),
)
_activation(
    "silu",
    "x * sigmoid(x) (swish)",
    ("nn.SiLU", "F.silu"),
    "silu",
    onnx=lambda g, x, attrs: g.op("Mul", x, g.op("Sigmoid", x)),
)
_activation("mish", "x * tanh(softplus(x)) (YOLOv4)", ("nn.Mish", "F.mish"), "mish", onnx=_onnx("Mish"))
_activation(
    "hardswish", "x * relu6(x+3)/6 (MobileNetV3)", ("nn.Hardswish", "F.hardswish"), "hardswish", onnx=_onnx("HardSwish")
)
_activation(
    "hardsigmoid",
    "relu6(x+3)/6 (MobileNetV3's gates)",
    ("nn.Hardsigmoid", "F.hardsigmoid"),
    "hardsigmoid",
    onnx=_onnx("HardSigmoid", alpha=1 / 6, beta=0.5),  # clip(x/6 + 1/2, 0, 1)
)
_activation(
    "tanh", "hyperbolic tangent", ("nn.Tanh", "torch.tanh"), "np.tanh", onnx=_onnx("Tanh"), saves={"saves": "output"}
)
_activation(
    "sigmoid",
    "1 / (1 + exp(-x))",
    ("nn.Sigmoid", "torch.sigmoid"),
    "sigmoid",
    onnx=_onnx("Sigmoid"),
    saves={"saves": "output"},
)
_activation("identity", "x, unchanged", ("nn.Identity", ""), "", per_value=0, saves={"saves": "nothing"})


@register
class Softmax(_Activation):
    name = "softmax"
    doc = "exp(x) / sum(exp(x)) over the channel axis (the class axis of a vector)."
    torch_module = "nn.Softmax"
    numpy_function = "softmax"
    per_value = 3  # exp, its addition into the sum, the division by the sum
    saves = "output"

    def infer(self, node, ins, warn):
        if not ins[0]:
            raise ShapeError(f"softmax {node.name}: needs at least one axis")
        return ins[0]

    def bind(self, attrs, shape):
        return {**attrs, "dim": shape.channels + 1}  # of (N, *shape): the features of a sequence are last

    def apply_torch(self, attrs, x):
        return call("F.softmax", x, dim=str(attrs.get("dim", 1)))

    def apply_numpy(self, attrs, x):
        dim = attrs.get("dim", 1)
        return call("softmax", x, axis=None if dim == 1 else str(dim))

    def apply_onnx(self, attrs, g, x):
        return g.op("Softmax", x, axis=1)

    def torch_layer(self, node, ins):
        return call("nn.Softmax", dim=str(ins[0].channels + 1))

    def numpy_call(self, node, state, args):
        return self.apply_numpy(self.bind(node.attrs, node.shape), args[0])


@register
class Gelu(_Activation):
    name = "gelu"
    doc = "x * Phi(x), the Gaussian error linear unit: exact, or torch's tanh approximation with `tanh`."
    params = (
        P("approximate", "choice", "none", positional=True, choices=("none", "tanh"), doc="torch's `approximate`"),
    )
    torch_module = "nn.GELU"
    numpy_function = "gelu"

    def _approximate(self, attrs) -> dict:
        """`approximate="tanh"` when asked for, as torch and the NumPy kernel both take it; nothing for the default."""
        return {"approximate": lit(attrs["approximate"])} if attrs["approximate"] != "none" else {}

    def apply_torch(self, attrs, x):
        return call("F.gelu", x, **self._approximate(attrs))

    def apply_numpy(self, attrs, x):
        return call("gelu", x, **self._approximate(attrs))

    def apply_onnx(self, attrs, g, x):
        return g.op("Gelu", x, approximate=attrs["approximate"])

    def torch_layer(self, node, ins):
        return call("nn.GELU", **self._approximate(node.attrs))
