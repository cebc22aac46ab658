"""What the layer types share when they write code: literals for geometry.

Each layer type writes its own PyTorch, NumPy and ONNX code (methods `torch_layer`,
`torch_call`, `numpy_state`, `numpy_call`, `onnx_call` on its `Op`); these helpers turn
its resolved geometry (per-dimension tuples, per-side padding pairs) into
the short literals a person would type: `3` rather than `(3, 3)`.
"""

from __future__ import annotations

from contextlib import contextmanager
from contextvars import ContextVar

from ..codegen.pyexpr import Call, call, lit

# Within `explicit_defaults()`, settings equal to torch's default are written too.
_EXPLICIT = ContextVar("explicit", default=False)


@contextmanager
def explicit_defaults():
    """Write every setting, defaults included: the constructors of one layer in several block
    instances then line up argument by argument (stride=1 in one, stride=2 in another), for
    the nested target to make one class of them."""
    token = _EXPLICIT.set(True)
    try:
        yield
    finally:
        _EXPLICIT.reset(token)


def dims(values) -> str:
    """(3, 3) -> `3`; (3, 5) -> `(3, 5)`."""
    values = tuple(values)
    return lit(values[0]) if len(set(values)) == 1 else lit(values)


def unless(values, default) -> str | None:
    """The literal, or None (left out of the call) when every entry is the default."""
    values = tuple(values)
    return None if all(v == default for v in values) and not _EXPLICIT.get() else dims(values)


def symmetric(pads) -> bool:
    return all(b == a for b, a in pads)


def padding(pads) -> str | None:
    """Padding as a layer argument: `1`, `(1, 2)`, per-side `((0, 1), (0, 1))`; None when there is none."""
    if not any(b or a for b, a in pads) and not _EXPLICIT.get():
        return None
    if symmetric(pads):
        return dims(b for b, _ in pads)
    return lit(tuple(tuple(p) for p in pads))


NEG_INF = 'float("-inf")'


def torch_pad(x, pads, value: str | None = None, always: bool = False):
    """`x`, or `F.pad(x, ...)` for padding the torch layer cannot hold (per-side; any, with `always`)."""
    if not any(b or a for b, a in pads) or (symmetric(pads) and not always):
        return x
    flat = tuple(p for pair in reversed(pads) for p in pair)  # F.pad wants the last dimension first
    return call("F.pad", x, lit(flat), value=value)


def torch_padding(pads) -> str | None:
    """The `padding=` of a torch layer: symmetric padding, or None when `torch_pad` pads first."""
    return padding(pads) if symmetric(pads) else None


def numpy_pad(x, pads, value: str | None = None):
    return x if not any(b or a for b, a in pads) else call("pad", x, padding(pads), value=value)


def zeros(shape, dtype: str = "np.float32"):
    return call("np.zeros", lit(shape if len(shape) != 1 else shape[0]), dtype)


def ones(shape):
    return call("np.ones", lit(shape if len(shape) != 1 else shape[0]), "np.float32")


def onnx_pads(pads) -> list[int]:
    """ONNX's `pads`: every dimension's padding before, then every dimension's after."""
    return [b for b, _ in pads] + [a for _, a in pads]


def onnx_window(g) -> dict:
    """A window's attributes as ONNX's Conv and pools take them, from a layer's resolved geometry."""
    return {
        "kernel_shape": list(g["kernel"]),
        "strides": list(g["stride"]),
        "pads": onnx_pads(g["pads"]),
    }


def onnx_padding(pads) -> list[int]:
    """The `pads` of an ONNX Pad node for per-side spatial padding of an (N, C, *spatial) tensor."""
    return [0, 0, *(b for b, _ in pads), 0, 0, *(a for _, a in pads)]


def mirror(forward: Call, grad, saved=None, drop: tuple[str, ...] = ()) -> Call:
    """The backward call of a forward kernel's call `f(x, *settings)`: `f_backward(grad, saved,
    *settings)`, as numpy_backward.py spells every backward (without `saved` when it is None);
    `drop` leaves out settings only the forward takes (batch norm's momentum)."""
    function = forward.func.removeprefix("np.") + "_backward"  # np.tanh: tanh_backward
    kept = () if saved is None else (saved,)
    settings = tuple((k, v) for k, v in forward.kwargs if k not in drop)
    return Call(function, (grad, *kept, *forward.args[1:]), settings)


def onnx_features(g, x: str, lo: int, hi: int, axis: int) -> str:
    """Features lo to hi of `x` along `axis`: one of q, k and v packed side by side, a gate, a projection's rows."""
    return g.op("Slice", x, g.const([lo]), g.const([hi]), g.const([axis]))


def onnx_linear(g, x: str, weight: str, bias: str | None) -> str:
    """x wᵀ + b at every position, as nn.Linear."""
    out = g.op("MatMul", x, g.op("Transpose", weight, perm=[1, 0]))
    return g.op("Add", out, bias) if bias else out
