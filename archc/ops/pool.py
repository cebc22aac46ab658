"""Pooling: windowed (max, avg, min, L2), global and adaptive."""

from __future__ import annotations

import math

from ..codegen.pyexpr import Index, Neg, Sum, call
from .base import (
    INT64,
    Backward,
    Op,
    P,
    Proposal,
    Saved,
    Shape,
    ShapeError,
    Training,
    check_window,
    fmt_padding,
    fmt_shape,
    fmt_stride,
    padded_input,
    padded_size,
    per_dim,
    prod,
    register,
    resolve_padding,
    spatial_dims,
    window_out,
    window_rf,
)
from .emit import (
    NEG_INF,
    dims,
    numpy_pad,
    onnx_padding,
    onnx_window,
    padding,
    symmetric,
    torch_pad,
    torch_padding,
    unless,
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
        node.geom.update(nd=nd, spatial=tuple(spatial), kernel=kernel, stride=stride, dilation=dilation, pads=pads)
        if nd == 3:
            self._check_3d(what, tuple(spatial), kernel, pads)
        out = check_window(node, what, tuple(spatial), kernel, stride, dilation, pads, a["ceil"], warn)
        return (channels, *out)

    def _check_3d(self, what: str, spatial: Shape, kernel: Shape, pads) -> None:
        """A rule of PyTorch's for 3-D inputs: none for max (and min) pooling.

        PyTorch's 3-D average pool, which its LPPool3d runs too, takes no input smaller than its
        window (aten's `pool3d_shape_check` with `check_input_size`), where its 1-D and 2-D pools
        and max pooling only need an output of at least 1.
        """

    def _window_fits(self, what: str, read: Shape, kernel: Shape, padded: bool) -> None:
        """E0205 unless `read`, the input as torch's pool reads it, is at least the window."""
        if all(n >= k for n, k in zip(read, kernel)):
            return
        fits = tuple(min(n, k) for n, k in zip(read, kernel))
        text = f"kernel={fmt_shape(fits) if len(set(fits)) > 1 else fits[0]}"
        counted = "with its padding" if padded else "padding not counted"
        raise ShapeError(
            f"{what}: PyTorch's 3-D {self.name} needs an input at least as large as its window ({counted}): "
            f"{fmt_shape(read)} is smaller than {fmt_shape(kernel)}",
            [f"use a window of at most {fmt_shape(read)}, or a larger input"],
            param="kernel",
            code="E0205",
            proposals=[Proposal("kernel", fits if len(set(fits)) > 1 else fits[0], text, "fits", instead=False)],
        )

    def per_output(self, window: int) -> int:
        """Element operations per output value, from the window's size: max and min compare its values."""
        return window - 1

    def count_elem_ops(self, node, ins, out):
        return self.per_output(prod(node.geom["kernel"])) * prod(out)

    def receptive(self, node, rfs):
        g = node.geom
        return window_rf(rfs[0], g["kernel"], g["stride"], g["dilation"], g["pads"])

    def training(self, node, ins, out, ctx):
        """Max pooling keeps its input (or the padded copy) and the arg-max of every window (int64)."""
        torch_out = _torch_out(node, ins[0])
        return Training(
            (padded_input(ins[0], node.geom["pads"]), Saved.new(torch_out, itemsize=INT64)), stored=torch_out
        )

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

    # -- code ----------------------------------------------------------------------
    torch_class = "MaxPool"
    numpy_function = "max_pool"

    def _window(self, node, torch: bool):
        g = node.geom
        return {
            "stride": None if g["stride"] == g["kernel"] else dims(g["stride"]),
            "padding": torch_padding(g["pads"]) if torch else padding(g["pads"]),
            "dilation": unless(g["dilation"], 1),
            "ceil_mode": "True" if node.attrs["ceil"] else None,
        }

    def torch_layer(self, node, ins):
        g = node.geom
        return call(f"nn.{self.torch_class}{g['nd']}d", dims(g["kernel"]), **self._window(node, True))

    def torch_call(self, node, module, args):
        return _crop(node, call(module, torch_pad(args[0], node.geom["pads"], NEG_INF)))

    def numpy_call(self, node, state, args):
        return call(self.numpy_function, args[0], dims(node.geom["kernel"]), **self._window(node, False))

    def onnx_call(self, node, g, args):
        return self._onnx_max(node, g, args[0])

    def _onnx_max(self, node, g, x: str) -> str:
        """ONNX's MaxPool holds per-side padding, which no window's maximum counts, as torch's -inf does."""
        geom = node.geom
        window = onnx_window(geom) | {"dilations": list(geom["dilation"]), "ceil_mode": int(node.attrs["ceil"])}
        return onnx_crop(node, g, g.op("MaxPool", x, **window))


def onnx_crop(node, g, value: str, padded_first: bool = False) -> str:
    """`_crop` in ONNX: a Slice to the layer's spatial size where ceil mode made a window more."""
    if not _cropped(node, padded_first):
        return value
    axes = list(range(2, len(node.shape) + 1))
    return g.op("Slice", value, g.const([0] * len(axes)), g.const(list(node.shape[1:])), g.const(axes))


def _torch_out(node, shape, padded_first: bool = False) -> int:
    """Values per sample of torch's pooled output, larger than the layer's where `_crop` cuts it."""
    if not _cropped(node, padded_first):
        return prod(node.shape)
    g = node.geom
    windows = zip(shape[1:], g["kernel"], g["stride"], g["dilation"], g["pads"])
    return shape[0] * prod(window_out(n + b + a, k, s, d, 0, 0, True) for n, k, s, d, (b, a) in windows)


def _cropped(node, padded_first: bool) -> bool:
    pads = node.geom["pads"]
    return node.attrs["ceil"] and any(b or a for b, a in pads) and (padded_first or not symmetric(pads))


def _crop(node, expr, padded_first: bool = False):
    """Drop a last window torch would add after padding per side in ceil mode.

    torch lets the last window start in the right padding once that padding
    is part of the input; the rule here (and torch's for its own padding)
    wants it to start inside the input or the left padding.
    """
    if not _cropped(node, padded_first):
        return expr
    return Index(expr, ":, :, " + ", ".join(f":{n}" for n in node.shape[1:]))


@register
class MaxPool(_WindowPool):
    name = "maxpool"
    doc = "Maximum over each window."


@register
class AvgPool(_WindowPool):
    name = "avgpool"
    doc = "Mean over each window; padded zeros count in the mean unless count_pad=false (as PyTorch)."
    params = (*_WindowPool.params[:3], _WindowPool.params[4], P("count_pad", "bool", True))
    torch_class = "AvgPool"
    numpy_function = "avg_pool"
    numpy_keeps = "shape"  # its backward spreads the gradient over the windows; the values do not matter

    def per_output(self, window):
        return window  # window - 1 additions and the division by the count

    def _check_3d(self, what, spatial, kernel, pads):
        # the padding is the pool's own (per-side padding, padded first, is held to the same rule)
        self._window_fits(what, spatial, kernel, False)

    def training(self, node, ins, out, ctx):
        """Its input (or the padded copy); where padding per side must not count, also the window
        sums of ones that it divides by."""
        torch_out = _torch_out(node, ins[0])
        ones = () if symmetric(node.geom["pads"]) or node.attrs["count_pad"] else (Saved.new(torch_out),)
        return Training((padded_input(ins[0], node.geom["pads"]), *ones), stored=torch_out)

    def _window(self, node, torch):
        window = super()._window(node, torch)
        del window["dilation"]
        return window | {"count_include_pad": None if node.attrs["count_pad"] else "False"}

    def torch_call(self, node, module, args):
        pads = node.geom["pads"]
        if symmetric(pads) or node.attrs["count_pad"]:
            return _crop(node, call(module, torch_pad(args[0], pads)))
        # Per-side padding that must not count: torch has no such layer, so divide
        # the window sums of the input by those of ones, both padded alike.
        ones = call("torch.ones_like", args[0])
        return _crop(node, Sum((call(module, torch_pad(args[0], pads)), call(module, torch_pad(ones, pads))), "/"))

    def onnx_call(self, node, g, args):
        """ONNX's AveragePool holds per-side padding; padding that counts is added first, as torch adds it,
        so that a window ceil mode cuts short divides by what torch divides by."""
        geom, x = node.geom, args[0]
        window = onnx_window(geom) | {"ceil_mode": int(node.attrs["ceil"])}
        padded_first = not symmetric(geom["pads"]) and node.attrs["count_pad"]
        if padded_first:
            x = g.op("Pad", x, g.const(onnx_padding(geom["pads"])))
            window["pads"] = [0] * len(window["pads"])
        pooled = g.op("AveragePool", x, **window, count_include_pad=int(node.attrs["count_pad"]))
        return onnx_crop(node, g, pooled)


@register
class MinPool(_WindowPool):
    name = "minpool"
    doc = "Minimum over each window."
    numpy_function = "min_pool"

    def training(self, node, ins, out, ctx):
        """Max pooling of the negated input (a copy of its own, padded first when per side), and its arg-max."""
        pads = node.geom["pads"]
        negated = prod(ins[0]) if symmetric(pads) else padded_size(ins[0], pads)
        torch_out = _torch_out(node, ins[0])
        return Training((Saved.new(negated), Saved.new(torch_out, itemsize=INT64)), stored=torch_out)

    def torch_call(self, node, module, args):  # min(x) = -max(-x)
        return Neg(_crop(node, call(module, torch_pad(Neg(args[0]), node.geom["pads"], NEG_INF))))

    def onnx_call(self, node, g, args):
        return g.op("Neg", self._onnx_max(node, g, g.op("Neg", args[0])))


@register
class L2Pool(_WindowPool):
    name = "l2pool"
    doc = "Square root of the sum of squares over each window (power-2 average pooling)."
    params = (*_WindowPool.params[:3], _WindowPool.params[4])

    def per_output(self, window):
        return 2 * window  # a square per value, window - 1 additions, the square root

    def training(self, node, ins, out, ctx):
        """torch's lp_pool is composite: x ** 2 keeps x (the padded copy, with any padding), avg_pool
        the squares, then abs, relu, sign * relu and the square root each keep a tensor of the output's size."""
        pads = node.geom["pads"]
        read = padded_size(ins[0], pads)
        source = Saved.new(read) if any(b or a for b, a in pads) else Saved.input()
        torch_out = _torch_out(node, ins[0], padded_first=True)
        return Training((source, Saved.new(read), *(Saved.new(torch_out),) * 4), stored=torch_out)

    def _check_3d(self, what, spatial, kernel, pads):  # LPPool3d reads the input padded first
        self._window_fits(what, tuple(n + b + a for n, (b, a) in zip(spatial, pads)), kernel, True)

    # torch's LPPool takes no padding: the input is padded with zeros first.
    def torch_layer(self, node, ins):
        g = node.geom
        window = self._window(node, True)
        kernel = dims(g["kernel"])
        return call(f"nn.LPPool{g['nd']}d", "2", kernel, stride=window["stride"], ceil_mode=window["ceil_mode"])

    def torch_call(self, node, module, args):
        return _crop(node, call(module, torch_pad(args[0], node.geom["pads"], always=True)), padded_first=True)

    def numpy_call(self, node, state, args):
        g = node.geom
        window = self._window(node, False)
        x = numpy_pad(args[0], g["pads"])
        pooled = call("l2_pool", x, dims(g["kernel"]), stride=window["stride"], ceil_mode=window["ceil_mode"])
        return _crop(node, pooled, padded_first=True)

    def onnx_call(self, node, g, args):
        """ONNX's LpPool, p=2. In ceil mode, torch's lp_pool instead: the mean of the squares of each window
        (of the input padded first, a window cut short divided by its own size) times the kernel's size,
        and the square root, which a window cut short makes more than its sum."""
        geom = node.geom
        window = onnx_window(geom)
        if not node.attrs["ceil"]:
            return g.op("LpPool", args[0], **window, p=2)
        x = args[0]
        if any(b or a for b, a in geom["pads"]):
            x = g.op("Pad", x, g.const(onnx_padding(geom["pads"])))
        window["pads"] = [0] * len(window["pads"])
        mean = g.op("AveragePool", g.op("Mul", x, x), **window, ceil_mode=1)
        total = g.op("Mul", mean, g.const(float(prod(geom["kernel"])), "float32"))
        return onnx_crop(node, g, g.op("Sqrt", total), padded_first=True)

    def numpy_keep(self, node, args):
        return numpy_pad(args[0], node.geom["pads"])  # what l2_pool reads: its backward needs the values

    def numpy_backward(self, node, state, grad, saved):
        """The crop undone (zeros for the window it dropped), l2_pool's backward (its output, None,
        recomputed from the padded input kept), the padding cut off."""
        g = node.geom
        window = self._window(node, False)
        if _cropped(node, True):
            windows = zip(g["spatial"], g["kernel"], g["stride"], g["dilation"], g["pads"])
            full = [window_out(n + b + a, k, s, d, 0, 0, True) for n, k, s, d, (b, a) in windows]
            index = "np.s_[:, :, " + ", ".join(f":{n}" for n in node.shape[1:]) + "]"
            grad = call("slice_backward", grad, f"(len({grad}), {node.shape[0]}, {', '.join(map(str, full))})", index)
        kernel = dims(g["kernel"])
        pooled = call(
            "l2_pool_backward", grad, saved, "None", kernel, stride=window["stride"], ceil_mode=window["ceil_mode"]
        )
        pads = g["pads"]
        return Backward(pooled if not any(b or a for b, a in pads) else call("pad_backward", pooled, padding(pads)))


class _Adaptive(Op):
    averages = False

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

    def count_elem_ops(self, node, ins, out):
        """As a window pool's, per window: max compares its values, avg adds them and divides once.

        Output i of n -> o along an axis reads inputs floor(i*n/o) to ceil((i+1)*n/o) (torch's
        adaptive windows), so their lengths add up to n, plus one for each boundary i*n/o that
        falls inside an input, which both windows beside it read: o - gcd(n, o) of the o - 1.
        A window is a product of one interval per axis.
        """
        spans = (n + o - math.gcd(n, o) for n, o in zip(ins[0][1:], out[1:]))
        read = ins[0][0] * prod(spans)  # the values all windows read, each as often as it is read
        return read if self.averages else read - prod(out)

    def receptive(self, node, rfs):
        return None  # each output sees a data-dependent share of the input; report it as global

    def training(self, node, ins, out, ctx):
        """Max pooling keeps its input and the arg-max (int64); average pooling its input, except to
        one value a channel, which torch computes as a mean (that keeps nothing)."""
        if "max" in self.name:
            return Training((Saved.input(), Saved.new(prod(out), itemsize=INT64)))
        return Training(() if prod(out[1:]) == 1 else (Saved.input(),))

    def describe(self, node):
        return {"filter": "adaptive", "stride": "-", "padding": "-"}

    def settings(self, node):
        return "to " + fmt_shape(node.geom["size"])

    def torch_layer(self, node, ins):
        kind = "Max" if "max" in self.name else "Avg"
        return call(f"nn.Adaptive{kind}Pool{node.geom['nd']}d", dims(node.geom["size"]))

    def numpy_call(self, node, state, args):
        return call(self.numpy_function, args[0], dims(node.geom["size"]))

    def onnx_call(self, node, g, args):
        """A pool whose window is the stride where every size divides evenly (global pooling included);
        otherwise torch's windows, axis by axis (a mean or maximum over a box is one over its rows of one
        over its columns): per output position, a Slice of the input and its mean or maximum."""
        x, ins = args[0], g.input_shapes[0][1:]
        size = node.shape[1:]
        if all(n % o == 0 for n, o in zip(ins, size)):
            kernel = [n // o for n, o in zip(ins, size)]
            return g.op("AveragePool" if self.averages else "MaxPool", x, kernel_shape=kernel, strides=kernel)
        reduce = "ReduceMean" if self.averages else "ReduceMax"
        for axis, (n, o) in enumerate(zip(ins, size), start=2):
            if n == o:
                continue
            parts = []
            for i in range(o):
                start, stop = i * n // o, -(-(i + 1) * n // o)
                part = g.op("Slice", x, g.const([start]), g.const([stop]), g.const([axis]))
                parts.append(g.op(reduce, part, g.const([axis]), keepdims=1))
            x = g.op("Concat", *parts, axis=axis) if o > 1 else parts[0]
        return x


@register
class AdaptiveAvgPool(_Adaptive):
    name = "adaptiveavgpool"
    doc = "Average pooling to a fixed output size, whatever the input size."
    numpy_function = "adaptive_avg_pool"
    averages = True
    numpy_keeps = "shape"
    params = (P("size", "shape", positional=True, doc="output size, e.g. 6x6"),)


@register
class AdaptiveMaxPool(_Adaptive):
    name = "adaptivemaxpool"
    doc = "Max pooling to a fixed output size, whatever the input size."
    numpy_function = "adaptive_max_pool"
    params = (P("size", "shape", positional=True),)


@register
class GlobalAvgPool(_Adaptive):
    name = "globalavgpool"
    doc = "Mean over all spatial positions; keeps the spatial dimensions as 1 (C x 1 x 1), as PyTorch."
    numpy_function = "global_avg_pool"
    averages = True
    numpy_keeps = "shape"

    def _target(self, node, nd):
        return (1,) * nd

    def describe(self, node):
        return {"filter": "global", "stride": "-", "padding": "-"}

    def settings(self, node):
        return "global"

    def torch_layer(self, node, ins):
        # a module if the spec names it (torchvision's `self.avgpool`); else forward pools, as
        # torchvision's MobileNetV2 does
        return super().torch_layer(node, ins) if node.written else None

    def torch_call(self, node, module, args):
        if node.written:
            return call(module, args[0])
        kind = "max" if "max" in self.name else "avg"
        return call(f"F.adaptive_{kind}_pool{node.geom['nd']}d", args[0], "1")

    def torch_sequential(self, node, ins):
        return super().torch_layer(node, ins)

    def numpy_call(self, node, state, args):
        return call(self.numpy_function, args[0])

    def onnx_call(self, node, g, args):
        return g.op("GlobalAveragePool" if self.averages else "GlobalMaxPool", args[0])


@register
class GlobalMaxPool(GlobalAvgPool):
    name = "globalmaxpool"
    doc = "Maximum over all spatial positions (C x 1 x 1)."
    numpy_function = "global_max_pool"
    averages = False
    numpy_keeps = "input"
