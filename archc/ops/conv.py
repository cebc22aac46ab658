"""Convolutions: conv (1-D/2-D/3-D by input rank), dwconv and deconv (transposed)."""

from __future__ import annotations

import math
from fractions import Fraction

from ..codegen.pyexpr import Index, call
from .base import (
    Backward,
    Op,
    P,
    Saved,
    ShapeError,
    Training,
    bias_adds,
    check_window,
    divisors,
    fmt_padding,
    fmt_shape,
    fmt_stride,
    padded_input,
    per_dim,
    prod,
    register,
    resolve_padding,
    spatial_dims,
    window_rf,
)
from .emit import dims, mirror, onnx_window, padding, symmetric, torch_pad, torch_padding, unless

PAD_SYMBOLS = {"same": ("pad", "same"), "valid": ("pad", "valid"), "full": ("pad", "full")}


def _geometry(node, ins, warn, *, transposed=False, depthwise=False):
    """Resolve kernel, stride, dilation and padding for this input; record them on the node."""
    what = f"{node.op} {node.name}"
    cin, *spatial = ins[0]
    nd = spatial_dims(node, ins[0], node.op)
    a = node.attrs
    kernel = per_dim(a["kernel"], nd, "kernel", what)
    stride = per_dim(a["stride"], nd, "stride", what)
    dilation = per_dim(a["dilation"], nd, "dilation", what)
    for pname, values in (("kernel", kernel), ("stride", stride), ("dilation", dilation)):
        if min(values) < 1:
            raise ShapeError(f"{what}: {pname} must be at least 1, not {fmt_shape(values)}", param=pname, code="E0205")
    if transposed and a["pad"] in ("same", "full"):
        raise ShapeError(
            f"{what}: a transposed convolution takes explicit padding, not `{a['pad']}`",
            ["give the padding as a number or (before,after) pairs"],
            param="pad",
            code="E0205",
        )
    pads = resolve_padding(a["pad"], nd, tuple(spatial), kernel, stride, dilation, what)
    if min(min(p) for p in pads) < 0:
        raise ShapeError(f"{what}: padding cannot be negative", param="pad", code="E0205")
    if depthwise:
        groups, filters = cin, cin * a["multiplier"]
    else:
        groups = cin if a["groups"] == "depthwise" else a["groups"]
        filters = a["filters"]
    if filters < 1:
        raise ShapeError(
            f"{what}: the number of filters must be at least 1, not {filters}", param="filters", code="E0205"
        )
    if groups < 1 or cin % groups or filters % groups:
        raise ShapeError(
            f"{what}: groups={groups} must divide both the input channels ({cin}) and the filters ({filters})",
            [_common_divisors(cin, filters)],
            param="groups",
            code="E0303",
        )
    node.geom.update(
        nd=nd,
        in_channels=cin,
        filters=filters,
        kernel=kernel,
        stride=stride,
        dilation=dilation,
        pads=pads,
        groups=groups,
    )
    return what, cin, spatial, nd, kernel, stride, dilation, pads, groups, filters


def _common_divisors(a: int, b: int) -> str:
    g = math.gcd(a, b)
    listed = divisors(g)
    if listed is None:
        return f"groups must divide {g}, the greatest common divisor of {a} and {b}"
    return f"the common divisors of {a} and {b} are {listed}"


class _ConvBase(Op):
    symbols = PAD_SYMBOLS
    init_kind = "conv"
    depthwise = False

    def infer(self, node, ins, warn):
        what, _cin, spatial, _nd, kernel, stride, dilation, pads, _g, filters = _geometry(
            node, ins, warn, depthwise=self.depthwise
        )
        out = check_window(node, what, tuple(spatial), kernel, stride, dilation, pads, False, warn)
        return (filters, *out)

    def count_params(self, node, ins, out):
        g = node.geom
        weights = g["filters"] * (g["in_channels"] // g["groups"]) * prod(g["kernel"])
        return weights + (g["filters"] if node.attrs["bias"] else 0)

    def training(self, node, ins, out, ctx):
        """Its input, for the weight's gradient: the copy F.pad made when the padding is per side."""
        return Training((padded_input(ins[0], node.geom["pads"]),))

    def count_macs(self, node, ins, out):
        g = node.geom
        return g["filters"] * prod(out[1:]) * (g["in_channels"] // g["groups"]) * prod(g["kernel"])

    def count_elem_ops(self, node, ins, out):
        return bias_adds(node, out)

    def receptive(self, node, rfs):
        g = node.geom
        return window_rf(rfs[0], g["kernel"], g["stride"], g["dilation"], g["pads"])

    def describe(self, node):
        g = node.geom
        return {
            "filter": f"{g['in_channels'] // g['groups']}x{fmt_shape(g['kernel'])}, {g['filters']}",
            "stride": fmt_stride(g["stride"]),
            "padding": _pad_text(node),
        }

    def settings(self, node):
        g = node.geom
        parts = [f"{g['filters']}@{fmt_shape(g['kernel'])}"]
        if max(g["stride"]) > 1:
            parts.append(f"/{fmt_stride(g['stride'])}")
        if isinstance(node.attrs["pad"], str):
            parts.append(node.attrs["pad"])
        elif max(max(p) for p in g["pads"]):
            parts.append(f"pad {fmt_padding(g['pads'])}")
        if max(g["dilation"]) > 1:
            parts.append(f"dil {fmt_stride(g['dilation'])}")
        if g["groups"] > 1:
            parts.append("depthwise" if g["groups"] == g["in_channels"] == g["filters"] else f"g{g['groups']}")
        return " ".join(parts)

    # -- code ----------------------------------------------------------------------

    def torch_layer(self, node, ins):
        g, a = node.geom, node.attrs
        return call(
            f"nn.Conv{g['nd']}d",
            g["in_channels"],
            g["filters"],
            kernel_size=dims(g["kernel"]),
            stride=unless(g["stride"], 1),
            padding=torch_padding(g["pads"]),
            dilation=unless(g["dilation"], 1),
            groups=g["groups"] if g["groups"] > 1 else None,
            bias=None if a["bias"] else "False",
        )

    def torch_call(self, node, module, args):
        return call(module, torch_pad(args[0], node.geom["pads"]))

    def numpy_state(self, node, ins, init):
        g = node.geom
        return _numpy_state(node, (g["filters"], g["in_channels"] // g["groups"], *g["kernel"]), init)

    def numpy_call(self, node, state, args):
        return _numpy_call("conv", node, state, args)

    def onnx_call(self, node, g, args):
        return _onnx_call("Conv", node, g, args)

    def numpy_backward(self, node, state, grad, saved):
        return weighted_backward(self, node, state, grad, saved)


def _numpy_state(node, weight_shape, init) -> list:
    """Weight (in torch's layout for the layer) and bias, as torch's state_dict has them."""
    bias = [("bias", init.bias(node.geom["filters"], weight_shape))] if node.attrs["bias"] else []
    return [("weight", init.weight(weight_shape)), *bias]


def _numpy_call(function: str, node, state, args, **extra):
    g = node.geom
    return call(
        function,
        args[0],
        state("weight"),
        *([state("bias")] if node.attrs["bias"] else []),
        stride=unless(g["stride"], 1),
        padding=padding(g["pads"]),
        **extra,
        groups=g["groups"] if g["groups"] > 1 else None,
        dilation=unless(g["dilation"], 1),
    )


def _onnx_call(op_type: str, node, g, args, **extra) -> str:
    """Conv or ConvTranspose: ONNX holds per-side padding itself, and the weights in torch's layout."""
    geom = node.geom
    bias = g.state("bias") if node.attrs["bias"] else None
    window = onnx_window(geom)
    return g.op(
        op_type,
        args[0],
        g.state("weight"),
        bias,
        **window,
        dilations=list(geom["dilation"]),
        group=geom["groups"],
        **extra,
    )


def weighted_backward(op, node, state, grad, saved) -> Backward:
    """conv_backward, conv_transpose_backward, linear_backward: (dx, dweight, dbias), no dbias without a bias."""
    forward = op.numpy_call(node, state, [saved])
    skip = "input_grad" if op.name == "conv" else None
    return Backward(mirror(forward, grad, saved), (0, "weight", "bias" if node.attrs["bias"] else None), skip)


def _pad_text(node) -> str:
    pads = node.geom["pads"]
    text = fmt_padding(pads)
    return f"same ({text})" if node.attrs.get("pad") == "same" else text


@register
class Conv(_ConvBase):
    name = "conv"
    doc = "Convolution over 1, 2 or 3 spatial dimensions, chosen by the input's rank."
    params = (
        P("filters", "int", positional=True, doc="number of filters (output channels)"),
        P("kernel", "shape", positional=True, doc="kernel size, e.g. 3x3 or 3"),
        P("stride", "shape", 1, doc="also written /2"),
        P("pad", "padding", 0, doc="number, per-dimension 1x2, per-side (0,1)x(0,1), same, valid or full"),
        P("dilation", "shape", 1),
        P("groups", "int", 1, choices=("depthwise",), doc="1 = dense; `depthwise` = the input channels"),
        P("bias", "bool", True),
    )


@register
class DepthwiseConv(_ConvBase):
    name = "dwconv"
    doc = "Depthwise convolution: one filter per input channel (groups = channels)."
    params = (
        P("kernel", "shape", positional=True),
        P("stride", "shape", 1),
        P("pad", "padding", 0),
        P("dilation", "shape", 1),
        P("multiplier", "int", 1, doc="filters per input channel"),
        P("bias", "bool", True),
    )

    depthwise = True


@register
class Deconv(Op):
    name = "deconv"
    doc = "Transposed convolution (fractionally strided), the gradient of conv."
    params = (
        P("filters", "int", positional=True),
        P("kernel", "shape", positional=True),
        P("stride", "shape", 1),
        P("pad", "padding", 0),
        P("outpad", "shape", 0, doc="extra rows/columns added at the end of the output"),
        P("dilation", "shape", 1),
        P("groups", "int", 1),
        P("bias", "bool", True),
    )

    def infer(self, node, ins, warn):
        what, _cin, spatial, nd, kernel, stride, dilation, pads, _g, filters = _geometry(
            node, ins, warn, transposed=True
        )
        outpad = per_dim(node.attrs["outpad"], nd, "outpad", what)
        for op_, s, d in zip(outpad, stride, dilation):
            if not 0 <= op_ < max(s, d):
                raise ShapeError(
                    f"{what}: outpad {op_} must be smaller than the stride or the dilation ({max(s, d)})",
                    param="outpad",
                    code="E0205",
                )
        node.geom["outpad"] = outpad
        out = []
        for n, k, s, d, (b, a), o in zip(spatial, kernel, stride, dilation, pads, outpad):
            size = (n - 1) * s - b - a + d * (k - 1) + o + 1
            if size <= 0:
                raise ShapeError(
                    f"{what}: the output would be empty ({size}): padding {b + a} is too large",
                    ["reduce pad"],
                    param="pad",
                    code="E0302",
                )
            out.append(size)
        return (filters, *out)

    def count_params(self, node, ins, out):
        g = node.geom
        weights = g["in_channels"] * (g["filters"] // g["groups"]) * prod(g["kernel"])
        return weights + (g["filters"] if node.attrs["bias"] else 0)

    def training(self, node, ins, out, ctx):
        """Its input; per-side padding crops a larger output of its own, which the output is a view of."""
        pads = node.geom["pads"]
        stored = None if symmetric(pads) else out[0] * prod(n + b + a for n, (b, a) in zip(out[1:], pads))
        return Training((Saved.input(),), stored=stored)

    def count_macs(self, node, ins, out):
        g = node.geom
        return g["in_channels"] * prod(ins[0][1:]) * (g["filters"] // g["groups"]) * prod(g["kernel"])

    def count_elem_ops(self, node, ins, out):
        return bias_adds(node, out)

    def receptive(self, node, rfs):
        rf = rfs[0]
        if rf is None:
            return None
        g = node.geom
        out = []
        for (size, jump, start), k, s, d, (b, _a) in zip(rf, g["kernel"], g["stride"], g["dilation"], g["pads"]):
            eff = d * (k - 1) + 1
            taps = -(-eff // s)  # input pixels one output pixel can see
            out.append((size + (taps - 1) * jump, Fraction(jump, s), start + Fraction(b - (eff - 1), s) * jump))
        return tuple(out)

    describe = _ConvBase.describe  # the same columns; `same` never reaches a transposed conv

    # -- code ----------------------------------------------------------------------
    # torch's ConvTranspose holds one padding per dimension; per-side padding
    # becomes padding 0 and a crop of the output, which is what padding means here.

    def torch_layer(self, node, ins):
        g, a = node.geom, node.attrs
        return call(
            f"nn.ConvTranspose{g['nd']}d",
            g["in_channels"],
            g["filters"],
            kernel_size=dims(g["kernel"]),
            stride=unless(g["stride"], 1),
            padding=torch_padding(g["pads"]),
            output_padding=unless(g["outpad"], 0),
            groups=g["groups"] if g["groups"] > 1 else None,
            bias=None if a["bias"] else "False",
            dilation=unless(g["dilation"], 1),
        )

    def torch_call(self, node, module, args):
        out = call(module, args[0])
        pads = node.geom["pads"]
        if symmetric(pads):
            return out
        crops = ", ".join(f"{b}:{b + n}" for (b, _a), n in zip(pads, node.shape[1:]))
        return Index(out, f":, :, {crops}")

    def numpy_state(self, node, ins, init):
        g = node.geom
        return _numpy_state(node, (g["in_channels"], g["filters"] // g["groups"], *g["kernel"]), init)

    def numpy_call(self, node, state, args):
        return _numpy_call("conv_transpose", node, state, args, output_padding=unless(node.geom["outpad"], 0))

    def onnx_call(self, node, g, args):
        return _onnx_call("ConvTranspose", node, g, args, output_padding=list(node.geom["outpad"]))

    def numpy_backward(self, node, state, grad, saved):
        return weighted_backward(self, node, state, grad, saved)

    def settings(self, node):
        g = node.geom
        text = f"{g['filters']}@{fmt_shape(g['kernel'])}"
        if max(g["stride"]) > 1:
            text += f" x{fmt_stride(g['stride'])}"
        return text
