"""Layers that pick or rearrange values without computing new ones: chunk, crop, space_to_depth, shuffle.

`chunk` and `crop` are slices of their input (views in PyTorch and NumPy, so
they add no memory); `space_to_depth` moves each block of pixels into the
channels (PyTorch's PixelUnshuffle) and `shuffle` interleaves channel groups
(PyTorch's ChannelShuffle); both have their own output.
"""

from __future__ import annotations

from ..codegen.pyexpr import Index, call
from .base import Backward, Op, P, ShapeError, check_divides, fmt_shape, per_dim, register, spatial_dims, window_rf


@register
class Chunk(Op):
    name = "chunk"
    doc = "One of `parts` equal groups of channels, the `index`-th (torch.chunk along the channels): a view."
    params = (
        P("parts", "int", positional=True, doc="how many equal groups the channels are split into"),
        P("index", "int", 0, positional=True, doc="which group, counted from 0"),
    )
    is_view = True

    def infer(self, node, ins, warn):
        channels, *spatial = ins[0]
        parts, index = node.attrs["parts"], node.attrs["index"]
        message = f"chunk {node.name}: {parts} parts do not divide the {channels} channels of {fmt_shape(ins[0])}"
        check_divides(f"chunk {node.name}", "parts", parts, channels, message)
        if not 0 <= index < parts:
            raise ShapeError(
                f"chunk {node.name}: index {index} is not one of the {parts} parts (0 to {parts - 1})",
                param="index",
                code="E0205",
            )
        size = channels // parts
        node.geom.update(start=index * size, stop=(index + 1) * size)
        return (size, *spatial)

    def describe(self, node):
        return {"filter": f"part {node.attrs['index'] + 1}/{node.attrs['parts']}"}

    def settings(self, node):
        return f"channels {node.geom['start']}:{node.geom['stop']}"

    def torch_call(self, node, module, args):  # inline, as torchvision's `x.chunk(2, dim=1)`: no sizes
        return Index(call("torch.chunk", args[0], node.attrs["parts"], dim=1), str(node.attrs["index"]))

    def numpy_call(self, node, module, args):  # a slice, a view as torch.chunk's
        return Index(args[0], f":, {node.geom['start']}:{node.geom['stop']}")

    numpy_keeps = "shape"

    def numpy_backward(self, node, state, grad, saved):
        return slice_backward(self, node, state, grad, saved)

    def onnx_call(self, node, g, args):
        geom = node.geom
        return g.op("Slice", args[0], g.const([geom["start"]]), g.const([geom["stop"]]), g.const([1]))


@register
class Crop(Op):
    name = "crop"
    doc = "A window of `size` cut out of the spatial dimensions, centred unless `offset` says where: a view."
    params = (
        P("size", "shape", positional=True, doc="the size kept, e.g. 224x224"),
        P("offset", "shape", None, doc="first row/column kept; by default (input - size) // 2, the centre"),
    )
    is_view = True

    def infer(self, node, ins, warn):
        what = f"crop {node.name}"
        channels, *spatial = ins[0]
        nd = spatial_dims(node, ins[0], "crop")
        size = per_dim(node.attrs["size"], nd, "size", what)
        if node.attrs["offset"] is None:
            offset = tuple((n - s) // 2 for n, s in zip(spatial, size))
        else:
            offset = per_dim(node.attrs["offset"], nd, "offset", what)
        for n, s, o in zip(spatial, size, offset):
            if s < 1 or o < 0 or o + s > n:
                raise ShapeError(
                    f"{what}: a {fmt_shape(size)} window at offset {fmt_shape(offset)} does not fit in "
                    f"{fmt_shape(tuple(spatial))}",
                    ["the window must lie inside the input: size + offset at most the input size"],
                    param="size" if s > n or s < 1 else "offset",
                    code="E0205",
                )
        node.geom.update(nd=nd, size=size, offset=offset)
        return (channels, *size)

    def receptive(self, node, rfs):
        if rfs[0] is None:
            return None
        return tuple((r, j, start + o * j) for (r, j, start), o in zip(rfs[0], node.geom["offset"]))

    def describe(self, node):
        return {"filter": fmt_shape(node.geom["size"]), "padding": "crop " + fmt_shape(node.geom["offset"])}

    def settings(self, node):
        return f"{fmt_shape(node.geom['size'])} at {fmt_shape(node.geom['offset'])}"

    def torch_call(self, node, module, args):
        g = node.geom
        window = ", ".join(f"{o}:{o + s}" for o, s in zip(g["offset"], g["size"]))
        return Index(args[0], f":, :, {window}")

    numpy_call = torch_call
    numpy_keeps = "shape"

    def numpy_backward(self, node, state, grad, saved):
        return slice_backward(self, node, state, grad, saved)

    def onnx_call(self, node, g, args):
        geom = node.geom
        ends = [o + s for o, s in zip(geom["offset"], geom["size"])]
        axes = list(range(2, geom["nd"] + 2))
        return g.op("Slice", args[0], g.const(list(geom["offset"])), g.const(ends), g.const(axes))


def slice_backward(op, node, state, grad, saved) -> Backward:
    """The gradient of a slice `x[index]` put back in zeros of the input's shape, which forward kept."""
    index = op.numpy_call(node, state, ["_"]).index
    return Backward(call("slice_backward", grad, saved, f"np.s_[{index}]"))


@register
class SpaceToDepth(Op):
    name = "space_to_depth"
    doc = "Moves each block x block patch of pixels into the channels (PyTorch's PixelUnshuffle, Darknet's reorg)."
    params = (P("block", "int", 2, positional=True, doc="side of the patch; must divide the height and width"),)

    def infer(self, node, ins, warn):
        what = f"space_to_depth {node.name}"
        spatial_dims(node, ins[0], "space_to_depth", allowed=(2,))
        channels, *spatial = ins[0]
        block = node.attrs["block"]
        if block < 1:
            raise ShapeError(f"{what}: block must be at least 1, not {block}", param="block", code="E0205")
        if any(n % block for n in spatial):
            raise ShapeError(
                f"{what}: block {block} does not divide the input's {fmt_shape(tuple(spatial))}",
                ["the height and the width must be multiples of the block"],
                param="block",
                code="E0205",
            )
        return (channels * block * block, *(n // block for n in spatial))

    def receptive(self, node, rfs):
        b = node.attrs["block"]
        return window_rf(rfs[0], (b, b), (b, b), (1, 1), ((0, 0), (0, 0)))

    def describe(self, node):
        b = node.attrs["block"]
        return {"filter": f"{b}x{b}", "stride": str(b)}

    def settings(self, node):
        return f"block {node.attrs['block']}"

    def torch_layer(self, node, ins):
        return call("nn.PixelUnshuffle", node.attrs["block"])

    def numpy_call(self, node, state, args):
        return call("space_to_depth", args[0], node.attrs["block"])

    def onnx_call(self, node, g, args):
        """torch's pixel_unshuffle: channel c's patch pixel (i, j) goes to channel c*b*b + i*b + j (ONNX's
        SpaceToDepth orders them the other way round, patch pixel first)."""
        b = node.attrs["block"]
        c, h, w = g.input_shapes[0]
        split = g.op("Reshape", args[0], g.const([0, c, h // b, b, w // b, b]))
        moved = g.op("Transpose", split, perm=[0, 1, 3, 5, 2, 4])
        return g.op("Reshape", moved, g.const(g.shape_of(node)))

    numpy_keeps = "nothing"


@register
class Shuffle(Op):
    name = "shuffle"
    doc = (
        "Interleaves `groups` equal groups of channels (PyTorch's ChannelShuffle, ShuffleNet's "
        "channel_shuffle): channel i of group g moves to position i * groups + g."
    )
    params = (P("groups", "int", positional=True, doc="how many groups are interleaved; must divide the channels"),)

    def infer(self, node, ins, warn):
        spatial_dims(node, ins[0], "shuffle")
        channels = ins[0][0]
        groups = node.attrs["groups"]
        message = f"shuffle {node.name}: {groups} groups do not divide the {channels} channels of {fmt_shape(ins[0])}"
        check_divides(f"shuffle {node.name}", "groups", groups, channels, message)
        return ins[0]

    def describe(self, node):
        return {"filter": f"{node.attrs['groups']} groups"}

    def settings(self, node):
        return f"{node.attrs['groups']} groups"

    def torch_layer(self, node, ins):
        return call("nn.ChannelShuffle", node.attrs["groups"])

    def numpy_call(self, node, state, args):
        return call("channel_shuffle", args[0], node.attrs["groups"])

    def onnx_call(self, node, g, args):
        """The channels as groups x (C / groups), transposed: channel i of group g moves to i * groups + g."""
        groups, (channels, *spatial) = node.attrs["groups"], node.shape
        split = g.op("Reshape", args[0], g.const([0, groups, channels // groups, *spatial]))
        moved = g.op("Transpose", split, perm=[0, 2, 1, *range(3, len(spatial) + 3)])
        return g.op("Reshape", moved, g.const(g.shape_of(node)))

    numpy_keeps = "nothing"
