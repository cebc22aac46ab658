"""Pooling: windowed (max, avg, min, L2), global and adaptive."""

from __future__ import annotations

from .base import (
    Op,
    P,
    ShapeError,
    check_window,
    fmt_padding,
    fmt_shape,
    fmt_stride,
    per_dim,
    register,
    resolve_padding,
    spatial_dims,
    window_rf,
)

_SYMBOLS = {"same": ("pad", "same"), "valid": ("pad", "valid"), "ceil": ("ceil", True)}


class _WindowPool(Op):
    symbols = _SYMBOLS
    params = (
        P("kernel", "shape", positional=True, doc="window size, e.g. 2x2 or 2"),
        P("stride", "shape", None, doc="defaults to the kernel; also written /2"),
        P("pad", "padding", 0),
        P("dilation", "shape", 1),
        P("ceil", "bool", False, doc="round the output size up (also the bare word `ceil`)"),
    )

    def infer(self, node, ins, warn):
        what = f"{self.name} {node.name}"
        channels, *spatial = ins[0]
        nd = spatial_dims(node, ins[0], self.name)
        a = node.attrs
        kernel = per_dim(a["kernel"], nd, "kernel", what)
        stride = kernel if a["stride"] is None else per_dim(a["stride"], nd, "stride", what)
        dilation = per_dim(a.get("dilation", 1), nd, "dilation", what)
        for pname, values in (("kernel", kernel), ("stride", stride), ("dilation", dilation)):
            if min(values) < 1:
                raise ShapeError(
                    f"{what}: {pname} must be at least 1, not {fmt_shape(values)}", param=pname, code="E0205"
                )
        pads = resolve_padding(a["pad"], nd, tuple(spatial), kernel, stride, dilation, what)
        for (b, af), k in zip(pads, kernel):
            if b < 0 or af < 0 or (max(b, af) > k // 2 and a["pad"] != "same"):
                raise ShapeError(
                    f"{what}: padding {fmt_padding(pads)} must be between 0 and half the window ({k // 2})",
                    ["PyTorch and Caffe reject larger pooling padding: the window would see only padding"],
                    param="pad",
                    code="E0205",
                )
        node.geom.update(nd=nd, kernel=kernel, stride=stride, dilation=dilation, pads=pads)
        out = check_window(node, what, tuple(spatial), kernel, stride, dilation, pads, a["ceil"], warn)
        return (channels, *out)

    def receptive(self, node, rfs):
        g = node.geom
        return window_rf(rfs[0], g["kernel"], g["stride"], g["dilation"], g["pads"])

    def describe(self, node):
        g = node.geom
        pad = fmt_padding(g["pads"])
        return {
            "filter": fmt_shape(g["kernel"]),
            "stride": fmt_stride(g["stride"]),
            "padding": f"same ({pad})"
            if node.attrs["pad"] == "same"
            else pad + (" ceil" if node.attrs["ceil"] else ""),
        }

    def settings(self, node):
        g = node.geom
        text = fmt_shape(g["kernel"])
        if g["stride"] != g["kernel"]:
            text += f" /{fmt_stride(g['stride'])}"
        if max(max(p) for p in g["pads"]):
            text += f" pad {fmt_padding(g['pads'])}"
        return text + (" ceil" if node.attrs["ceil"] else "")


@register
class MaxPool(_WindowPool):
    name = "maxpool"
    doc = "Maximum over each window."


@register
class AvgPool(_WindowPool):
    name = "avgpool"
    doc = "Mean over each window; padded zeros count in the mean unless count_pad=false (as PyTorch)."
    params = (*_WindowPool.params[:3], _WindowPool.params[4], P("count_pad", "bool", True))


@register
class MinPool(_WindowPool):
    name = "minpool"
    doc = "Minimum over each window."


@register
class L2Pool(_WindowPool):
    name = "l2pool"
    doc = "Square root of the sum of squares over each window (power-2 average pooling)."
    params = (*_WindowPool.params[:3], _WindowPool.params[4])


class _Adaptive(Op):
    def _target(self, node, nd):
        return per_dim(node.attrs["size"], nd, "size", f"{self.name} {node.name}")

    def infer(self, node, ins, warn):
        channels = ins[0][0]
        nd = spatial_dims(node, ins[0], self.name)
        size = self._target(node, nd)
        if min(size) < 1:
            raise ShapeError(f"{self.name} {node.name}: output size must be at least 1", param="size", code="E0205")
        node.geom.update(nd=nd, size=size)
        return (channels, *size)

    def receptive(self, node, rfs):
        return None  # each output sees a data-dependent share of the input; report it as global

    def describe(self, node):
        return {"filter": "adaptive", "stride": "-", "padding": "-"}

    def settings(self, node):
        return "to " + fmt_shape(node.geom["size"])


@register
class AdaptiveAvgPool(_Adaptive):
    name = "adaptiveavgpool"
    doc = "Average pooling to a fixed output size, whatever the input size."
    params = (P("size", "shape", positional=True, doc="output size, e.g. 6x6"),)


@register
class AdaptiveMaxPool(_Adaptive):
    name = "adaptivemaxpool"
    doc = "Max pooling to a fixed output size, whatever the input size."
    params = (P("size", "shape", positional=True),)


@register
class GlobalAvgPool(_Adaptive):
    name = "globalavgpool"
    doc = "Mean over all spatial positions; keeps the spatial dimensions as 1 (C x 1 x 1), as PyTorch."

    def _target(self, node, nd):
        return (1,) * nd

    def describe(self, node):
        return {"filter": "global", "stride": "-", "padding": "-"}

    def settings(self, node):
        return "global"


@register
class GlobalMaxPool(GlobalAvgPool):
    name = "globalmaxpool"
    doc = "Maximum over all spatial positions (C x 1 x 1)."
