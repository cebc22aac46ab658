"""Layers that only move, repeat or pad values: flatten, reshape, permute, upsample, zeropad, dropout, drop_path."""

from __future__ import annotations

from fractions import Fraction

from ..codegen.pyexpr import Sum, call, lit
from .base import (
    Backward,
    Op,
    P,
    Saved,
    ShapeError,
    Training,
    fmt_padding,
    fmt_shape,
    per_dim,
    prod,
    register,
    resolve_padding,
    spatial_dims,
)
from .emit import dims, numpy_pad, onnx_padding, padding


@register
class Flatten(Op):
    name = "flatten"
    doc = "Flattens C x H x W into one vector of C*H*W values (a view: no new memory)."
    is_view = True

    def infer(self, node, ins, warn):
        return (prod(ins[0]),)

    def receptive(self, node, rfs):
        return None

    def torch_layer(self, node, ins):
        # a module if the spec names it; else forward flattens, as torchvision's forward does
        return call("nn.Flatten") if node.written else None

    def torch_call(self, node, module, args):
        return call(module, args[0]) if node.written else call("torch.flatten", args[0], "1")

    def torch_sequential(self, node, ins):
        return call("nn.Flatten")

    def numpy_call(self, node, state, args):
        return call(f"{args[0]}.reshape", f"len({args[0]})", "-1")

    def onnx_call(self, node, g, args):
        return g.op("Flatten", args[0], axis=1)

    numpy_keeps = "shape"

    def numpy_backward(self, node, state, grad, saved):
        return Backward(call("reshape_backward", grad, saved))


@register
class Reshape(Op):
    name = "reshape"
    doc = "Gives the values a new per-sample shape with the same number of elements (a view)."
    params = (P("shape", "shape", positional=True, doc="the new shape, channels first"),)
    is_view = True

    def infer(self, node, ins, warn):
        target = node.attrs["shape"]
        target = (target,) if isinstance(target, int) else tuple(target)
        if min(target) < 1 or prod(target) != prod(ins[0]):
            raise ShapeError(
                f"reshape {node.name}: cannot reshape {fmt_shape(ins[0])} ({prod(ins[0])} values) "
                f"into {fmt_shape(target)} ({prod(target)} values)",
                ["the new shape must hold exactly as many values as the input"],
                param="shape",
                code="E0304",
            )
        return target

    def channels(self, node, ins, out):
        return 0  # the new shape is written channels first

    def receptive(self, node, rfs):
        return None

    def settings(self, node):
        return "to " + fmt_shape(node.attrs["shape"])

    def torch_call(self, node, module, args):  # inline: a view has no module
        return call(f"{args[0]}.reshape", "-1", *map(str, node.shape))

    numpy_call = torch_call  # the same method on both kinds of array
    numpy_keeps = "shape"

    def numpy_backward(self, node, state, grad, saved):
        return Backward(call("reshape_backward", grad, saved))

    def onnx_call(self, node, g, args):
        return g.op("Reshape", args[0], g.const(g.shape_of(node)))


@register
class Permute(Op):
    name = "permute"
    doc = (
        "The per-sample axes in another order (torch's permute, the batch staying first): "
        "`1x2x0` puts the channels of C x H x W last; a view."
    )
    params = (
        P("order", "shape", positional=True, doc="the input axis each output axis is, counted from 0: the channels"),
    )
    is_view = True  # torch's permute and NumPy's transpose return views

    def infer(self, node, ins, warn):
        order = node.attrs["order"]
        order = (order,) if isinstance(order, int) else tuple(order)
        rank = len(ins[0])
        if sorted(order) != list(range(rank)):
            raise ShapeError(
                f"permute {node.name}: {fmt_shape(order)} is not an order of the {rank} axes of "
                f"{fmt_shape(ins[0])}: it must list each of 0 to {rank - 1} once",
                ["axis 0 is the channels: on C x H x W, 1x2x0 puts them last and 2x0x1 puts them back first"],
                param="order",
                code="E0205",
            )
        node.geom["order"] = order
        return tuple(ins[0][i] for i in order)

    def channels(self, node, ins, out):
        return node.geom["order"].index(ins[0].channels)  # they move with their axis

    def receptive(self, node, rfs):
        """The spatial axes' fields in their new order while the channels stay first; else, with the
        channels among the positions, the whole input (`-`), as after a reshape."""
        order = node.geom["order"]
        if rfs[0] is None or order[0] != 0:
            return None
        return tuple(rfs[0][i - 1] for i in order[1:])

    def settings(self, node):
        return "order " + fmt_shape(node.geom["order"])

    def _axes(self, node) -> list[str]:
        return ["0", *(str(i + 1) for i in node.geom["order"])]  # the batch stays first

    def torch_call(self, node, module, args):
        return call(f"{args[0]}.permute", *self._axes(node))

    def numpy_call(self, node, state, args):
        return call(f"{args[0]}.transpose", *self._axes(node))

    def onnx_call(self, node, g, args):
        return g.op("Transpose", args[0], perm=[int(a) for a in self._axes(node)])

    numpy_keeps = "nothing"

    def numpy_backward(self, node, state, grad, saved):
        return Backward(call("permute_backward", grad, f"({', '.join(self._axes(node))})"))


@register
class Upsample(Op):
    name = "upsample"
    doc = "Nearest-neighbour upsampling by an integer factor per spatial dimension."
    params = (P("scale", "shape", 2, positional=True, doc="factor, e.g. 2 or 2x2"),)

    def infer(self, node, ins, warn):
        nd = spatial_dims(node, ins[0], "upsample")
        scale = per_dim(node.attrs["scale"], nd, "scale", f"upsample {node.name}")
        if min(scale) < 1:
            raise ShapeError(f"upsample {node.name}: scale must be at least 1", param="scale", code="E0205")
        node.geom.update(nd=nd, scale=scale)
        return (ins[0][0], *(n * s for n, s in zip(ins[0][1:], scale)))

    def receptive(self, node, rfs):
        if rfs[0] is None:
            return None
        return tuple(
            (size, Fraction(jump, s), start - (1 - Fraction(1, s)) * jump / 2)
            for (size, jump, start), s in zip(rfs[0], node.geom["scale"])
        )

    def describe(self, node):
        strides = [f"1/{s}" for s in node.geom["scale"]]  # 1/2, or 1/2x1/3 per dimension: never 1/2x2
        return {"stride": strides[0] if len(set(strides)) == 1 else "x".join(strides)}

    def settings(self, node):
        return "x" + fmt_shape(node.geom["scale"])

    def torch_layer(self, node, ins):
        scale = node.geom["scale"]
        factor = dims(scale) if len(set(scale)) == 1 else lit(tuple(float(v) for v in scale))
        return call("nn.Upsample", scale_factor=factor)

    def numpy_call(self, node, state, args):
        return call("upsample_nearest", args[0], dims(node.geom["scale"]))

    def onnx_call(self, node, g, args):
        """Each pixel repeated `scale` times along each axis (torch's nearest by whole factors): a size-1
        axis after each spatial one, expanded and merged. ONNX's Resize would do it too, but its shape
        inference loses the batch dimension."""
        c, *spatial = g.input_shapes[0]
        scale = node.geom["scale"]
        split = g.op("Reshape", args[0], g.const([0, c, *(v for n in spatial for v in (n, 1))]))
        wide = g.op("Expand", split, g.const([1, 1, *(v for s in scale for v in (1, s))]))
        return g.op("Reshape", wide, g.const(g.shape_of(node)))

    numpy_keeps = "nothing"


@register
class ZeroPad(Op):
    name = "zeropad"
    doc = "Pads the spatial dimensions with zeros."
    params = (P("pad", "padding", positional=True, doc="number, per-dimension 1x2 or per-side (0,1)x(0,1)"),)

    def infer(self, node, ins, warn):
        nd = spatial_dims(node, ins[0], "zeropad")
        if node.attrs["pad"] in ("same", "valid", "full"):
            raise ShapeError(f"zeropad {node.name}: give the padding as numbers", param="pad", code="E0205")
        pads = resolve_padding(
            node.attrs["pad"], nd, ins[0][1:], (1,) * nd, (1,) * nd, (1,) * nd, f"zeropad {node.name}"
        )
        if min(min(p) for p in pads) < 0:
            raise ShapeError(f"zeropad {node.name}: padding cannot be negative", param="pad", code="E0205")
        node.geom.update(nd=nd, pads=pads)
        return (ins[0][0], *(n + b + a for n, (b, a) in zip(ins[0][1:], pads)))

    def receptive(self, node, rfs):
        if rfs[0] is None:
            return None
        return tuple((size, jump, start - b * jump) for (size, jump, start), (b, _a) in zip(rfs[0], node.geom["pads"]))

    def describe(self, node):
        return {"padding": fmt_padding(node.geom["pads"])}

    def settings(self, node):
        return fmt_padding(node.geom["pads"])

    def torch_layer(self, node, ins):
        pads = node.geom["pads"]
        uniform = len({p for pair in pads for p in pair}) == 1
        flat = tuple(p for pair in reversed(pads) for p in pair)  # last dimension first, as F.pad
        return call(f"nn.ZeroPad{node.geom['nd']}d", lit(pads[0][0]) if uniform else lit(flat))

    def numpy_call(self, node, state, args):
        return numpy_pad(args[0], node.geom["pads"])  # `zeropad: 0` pads nothing: the input itself

    def onnx_call(self, node, g, args):
        return g.op("Pad", args[0], g.const(onnx_padding(node.geom["pads"])))

    numpy_keeps = "nothing"

    def numpy_backward(self, node, state, grad, saved):
        pads = node.geom["pads"]
        return Backward(call("pad_backward", grad, padding(pads)) if any(b or a for b, a in pads) else grad)


def _dropping(node, shape):
    """The output of a layer that drops values with probability p while training (dropout,
    drop_path): its input's shape, once p is one such a layer can have."""
    if not 0 <= node.attrs["p"] < 1:
        raise ShapeError(f"{node.op} {node.name}: p must be in [0, 1), not {node.attrs['p']}", param="p", code="E0205")
    return shape


@register
class Dropout(Op):
    name = "dropout"
    doc = "Zeroes each value with probability p while training (inverted dropout); nothing at inference."
    params = (P("p", "float", 0.5, positional=True, doc="probability of dropping a value"),)
    is_view = True

    def infer(self, node, ins, warn):
        return _dropping(node, ins[0])

    def training(self, node, ins, out, ctx):
        """While training, the input times a mask of its own, which backward keeps: torch's fused
        dropout on the GPU keeps a mask of bools, its CPU one the scaled mask in the input's type.
        p=0 returns the input itself."""
        if node.attrs["p"] == 0:
            return Training(view=True)
        return Training((Saved.new(prod(out), itemsize=1 if ctx.device == "cuda" else None),))

    def settings(self, node):
        return f"p {node.attrs['p']:g}"

    def torch_layer(self, node, ins):
        return call("nn.Dropout", *([] if node.attrs["p"] == 0.5 else [lit(float(node.attrs["p"]))]))

    def numpy_call(self, node, state, args):
        return call("dropout", args[0], lit(float(node.attrs["p"])), "self.training", "self.rng")

    def onnx_call(self, node, g, args):
        """ONNX's Dropout, the identity at inference: the export is in eval mode."""
        return g.op("Dropout", args[0], g.const(float(node.attrs["p"]), "float32"))

    def numpy_train_call(self, node, state, args):
        return call("dropout_forward", *self.numpy_call(node, state, args).args)

    def numpy_backward(self, node, state, grad, saved):
        return Backward(call("dropout_backward", grad, saved))  # the mask


@register
class DropPath(Op):
    name = "drop_path"
    doc = (
        "Stochastic depth (torchvision's StochasticDepth): while training, zeroes a whole sample (mode row) "
        "or the whole batch (mode batch) with probability p and scales what it keeps by 1/(1-p); "
        "the identity at inference."
    )
    params = (
        P("p", "float", positional=True, doc="probability of dropping a sample's residual branch"),
        P("mode", "choice", "row", positional=True, choices=("row", "batch"), doc="one draw per sample, or per batch"),
    )
    is_view = True

    def infer(self, node, ins, warn):
        return _dropping(node, ins[0])

    def training(self, node, ins, out, ctx):
        """The input times a mask (one value a sample, or one for the batch), which backward keeps."""
        row = node.attrs["mode"] == "row"
        return Training((Saved.new(1, per_sample=row),))

    def settings(self, node):
        return f"p {node.attrs['p']:g} {node.attrs['mode']}"

    def torch_call(self, node, module, args):
        """x times F.dropout of ones, one per sample (or one for the batch): the mask and scale of
        torchvision's stochastic_depth while training, ones (x unchanged) at inference."""
        x, rank = args[0], len(node.shape)
        size = f"({x}.shape[0]{', 1' * rank})" if node.attrs["mode"] == "row" else lit((1,) * (rank + 1))
        mask = call("F.dropout", call(f"{x}.new_ones", size), lit(float(node.attrs["p"])), "self.training")
        return Sum((x, mask), "*")

    def numpy_call(self, node, state, args):
        mode = [lit(node.attrs["mode"])] if node.attrs["mode"] != "row" else []
        return call("drop_path", args[0], lit(float(node.attrs["p"])), "self.training", "self.rng", *mode)

    def onnx_call(self, node, g, args):
        return args[0]  # the identity at inference: the export is in eval mode

    def numpy_train_call(self, node, state, args):
        return call("drop_path_forward", *self.numpy_call(node, state, args).args)

    def numpy_backward(self, node, state, grad, saved):
        return Backward(call("dropout_backward", grad, saved))  # the mask, per sample or for the batch
