"""Layers of sequence models: token embeddings, learned tensors, patch tokens, picking and pooling tokens.

A sequence is length x features, its features last (`Layout.is_sequence`): what a
`sequence` input, `embedding` and `to_sequence` give, and what `dense`, `layernorm`
and attention read at every token. Token ids are integers (`Layout.vocab`), which
only `embedding` (and `position_embedding`, which counts them) reads. A `param` is
one learned tensor shared by the batch (`Layout.batched` False): merges broadcast it
over the batch, `concat` expands it.
"""

from __future__ import annotations

import math

from ..codegen.pyexpr import Index, call, lit
from .base import (
    INT64,
    Backward,
    Layout,
    Op,
    P,
    Proposal,
    Saved,
    ShapeError,
    Training,
    fmt_shape,
    prod,
    register,
    resolve_axis,
    spatial_dims,
)
from .emit import zeros


@register
class Embedding(Op):
    name = "embedding"
    doc = "A learned vector per token id (nn.Embedding): L token ids become L x dim."
    params = (
        P("dim", "int", positional=True, doc="the size of each token's vector"),
        P("vocab", "int", None, doc="rows of the table (nn.Embedding's num_embeddings); by default the input's vocab"),
        P("padding_idx", "int", None, doc="the id whose vector stays zero and gets no gradient, as in torch"),
        P(
            "id",
            "int",
            None,
            doc="every token reads this id's row, whatever the input holds: BERT's token type 0, which "
            "HF's model(input_ids) looks up for every token",
        ),
    )
    reads_ids = True

    def infer(self, node, ins, warn):
        ids = ins[0]
        if ids.vocab is None:
            raise ShapeError(
                f"embedding {node.name} reads token ids, but gets {node.inputs[0]} {fmt_shape(ids)}, real numbers",
                ["declare the input as token ids, with `tokens vocab=N` after its length"],
                code="E0307",
            )
        dim, pad, fixed = node.attrs["dim"], node.attrs["padding_idx"], node.attrs["id"]
        vocab = ids.vocab if node.attrs["vocab"] is None else node.attrs["vocab"]
        if dim < 1:
            raise ShapeError(f"embedding {node.name}: dim must be at least 1, not {dim}", param="dim", code="E0205")
        if fixed is not None and not 0 <= fixed < vocab:
            raise ShapeError(
                f"embedding {node.name}: id {fixed} is not a row of the table (0 to {vocab - 1})",
                [f"id must be 0 to {vocab - 1}"],
                param="id",
                code="E0205",
                proposals=[Proposal("id", 0, "id=0", "reads the table's first row")],
            )
        if fixed is None and vocab < ids.vocab:
            raise ShapeError(
                f"embedding {node.name}: a table of {vocab} rows cannot hold the ids of {node.inputs[0]}, "
                f"0 to {ids.vocab - 1}",
                [f"vocab must be at least {ids.vocab}"],
                param="vocab",
                code="E0205",
                proposals=[Proposal("vocab", ids.vocab, f"vocab={ids.vocab}", "gives every id a row")],
            )
        if pad is not None and not -vocab <= pad < vocab:
            raise ShapeError(
                f"embedding {node.name}: padding_idx {pad} is not an id of the table (0 to {vocab - 1})",
                param="padding_idx",
                code="E0205",
            )
        node.geom.update(vocab=vocab, padding_idx=None if pad is None else pad % vocab)
        return (*ids, dim)

    def channels(self, node, ins, out):
        return len(out) - 1  # the features of every token

    def count_params(self, node, ins, out):
        return node.geom["vocab"] * out[-1]

    def tied_shape(self, node):
        return (node.geom["vocab"], node.attrs["dim"])

    def training(self, node, ins, out, ctx):
        """The ids, to add each token's gradient into its row: the input's, or with `id` the ids
        made of it (int64, one a token)."""
        if node.attrs["id"] is not None:
            return Training((Saved.new(prod(ins[0]), itemsize=INT64),))
        return Training((Saved.input(),))

    def receptive(self, node, rfs):
        return None

    def describe(self, node):
        return {"filter": f"{node.geom['vocab']}x{node.attrs['dim']}"}

    def settings(self, node):
        pad, fixed = node.geom["padding_idx"], node.attrs["id"]
        return (
            f"{node.geom['vocab']} x {node.attrs['dim']}"
            + ("" if pad is None else f" padding {pad}")
            + ("" if fixed is None else f" id {fixed}")
        )

    def torch_layer(self, node, ins):
        return call("nn.Embedding", node.geom["vocab"], node.attrs["dim"], padding_idx=node.geom["padding_idx"])

    def _ids(self, node, ids: str, full: str):
        """What the table is looked up with: the ids, or with `id` that id in their shape (`full`:
        the target's full_like)."""
        fixed = node.attrs["id"]
        return ids if fixed is None else call(full, ids, fixed)

    def torch_call(self, node, module, args):
        return call(module, self._ids(node, args[0], "torch.full_like"))

    def numpy_state(self, node, ins, init):
        g = node.geom
        return [("weight", call("embedding_weight", "rng", g["vocab"], node.attrs["dim"], lit(g["padding_idx"])))]

    def numpy_call(self, node, state, args):
        return call("embedding", self._ids(node, args[0], "np.full_like"), state("weight"))

    def onnx_call(self, node, g, args):
        """Each id's row of the table (torch's lookup; padding_idx only keeps its row's gradient zero)."""
        ids, fixed = args[0], node.attrs["id"]
        if fixed is not None:  # ids x 0 + id: that id in the ids' shape
            ids = g.op("Add", g.op("Mul", ids, g.const(0)), g.const(fixed))
        return g.op("Gather", g.state("weight"), ids, axis=0)

    def numpy_backward(self, node, state, grad, saved):
        """The weight's gradient from the kept ids, which have none."""
        g = node.geom
        ids = self._ids(node, saved, "np.full_like")
        return Backward(call("embedding_backward", grad, ids, g["vocab"], lit(g["padding_idx"])), ("weight",))


@register
class Param(Op):
    name = "param"
    doc = (
        "A learned tensor of its own (nn.Parameter of shape 1 x SHAPE): a class token, a position embedding. "
        "One for the whole batch: `add` broadcasts it, `concat` expands it over the batch."
    )
    params = (
        P("shape", "shape", positional=True, doc="its per-sample shape, features last: 1x768, 197x768"),
        P("std", "float", 0.0, doc="starts as zeros, or normal with this standard deviation (torch's normal_)"),
    )
    min_inputs, max_inputs = 0, 0

    def infer(self, node, ins, warn):
        shape = node.attrs["shape"]
        shape = (shape,) if isinstance(shape, int) else tuple(shape)
        if not 1 <= len(shape) <= 4 or min(shape) < 1:
            raise ShapeError(
                f"param {node.name}: shape {fmt_shape(shape)} needs 1 to 4 sizes of at least 1",
                param="shape",
                code="E0205",
            )
        std = node.attrs["std"]
        if not (math.isfinite(std) and std >= 0):
            raise ShapeError(
                f"param {node.name}: std must be a finite number of at least 0, not {std}", param="std", code="E0205"
            )
        return shape

    def layout(self, node, ins, out):
        return Layout(out, len(out) - 1, batched=False)

    def count_params(self, node, ins, out):
        return prod(out)

    def receptive(self, node, rfs):
        return None

    def settings(self, node):
        std = node.attrs["std"]
        return f"normal std {std:g}" if std else "zeros"

    def _shape(self, node) -> tuple[int, ...]:
        return (1, *node.shape)  # the batch axis too, as torchvision's class_token (1, 1, 768)

    def torch_layer(self, node, ins):
        shape, std = self._shape(node), node.attrs["std"]
        if not std:
            return call("nn.Parameter", call("torch.zeros", *shape))
        return call("nn.Parameter", call(f"torch.empty({', '.join(map(str, shape))}).normal_", std=lit(std)))

    def torch_call(self, node, module, args):
        return module

    def numpy_state(self, node, ins, init):
        shape, std = self._shape(node), node.attrs["std"]
        return [("", call("normal", "rng", lit(shape), lit(std)) if std else zeros(shape))]

    def numpy_call(self, node, state, args):
        return state("")

    def onnx_call(self, node, g, args):
        return g.state("")  # the initialiser itself, 1 x SHAPE

    numpy_keeps = "nothing"

    def numpy_backward(self, node, state, grad, saved):
        """The gradient summed over the batch it was broadcast or expanded to."""
        return Backward(call("broadcast_backward", grad, lit(self._shape(node))), ("",))


@register
class PositionEmbedding(Op):
    name = "position_embedding"
    doc = (
        "A learned vector per position, for the positions of its input (GPT-2's `wpe`, BERT's "
        "`position_embeddings`: nn.Embedding(max, dim) of 0 to L - 1): L x dim, shared by the batch."
    )
    params = (
        P("dim", "int", positional=True, doc="the size of each position's vector"),
        P("max", "int", positional=True, doc="the most positions it has vectors for (nn.Embedding's num_embeddings)"),
    )
    reads_ids = True  # it reads only their number

    def infer(self, node, ins, warn):
        shape = ins[0]
        if shape.vocab is None and not shape.is_sequence:
            raise ShapeError(
                f"position_embedding {node.name} needs a sequence or token ids, but gets {node.inputs[0]} "
                f"{fmt_shape(shape)}",
                ["give it the sequence (length x features) or the token ids whose positions it embeds"],
                code="E0307",
            )
        dim, most, length = node.attrs["dim"], node.attrs["max"], shape[0]
        node.geom["ids"] = shape.vocab is not None  # no gradient flows back to token ids
        for param, value in (("dim", dim), ("max", most)):
            if value < 1:
                raise ShapeError(
                    f"position_embedding {node.name}: {param} must be at least 1, not {value}",
                    param=param,
                    code="E0205",
                )
        if length > most:
            raise ShapeError(
                f"position_embedding {node.name}: {node.inputs[0]} has {length} positions, more than max={most}",
                [f"max must be at least {length}, or the sequence at most {most} long"],
                param="max",
                code="E0205",
                proposals=[Proposal("max", length, f"max={length}", "gives every position a vector")],
            )
        return (length, dim)

    def layout(self, node, ins, out):
        return Layout(out, 1, batched=False)  # rows of its weight, the same for every sample

    def count_params(self, node, ins, out):
        return node.attrs["max"] * out[-1]

    def training(self, node, ins, out, ctx):
        """nn.Embedding keeps the positions (int64, once for the batch) for its weight's gradient."""
        return Training((Saved.new(out[0], per_sample=False, itemsize=INT64),))

    def receptive(self, node, rfs):
        return None

    def describe(self, node):
        return {"filter": f"{node.attrs['max']}x{node.attrs['dim']}"}

    def settings(self, node):
        return f"{node.shape[0]} of {node.attrs['max']} x {node.attrs['dim']}"

    def torch_layer(self, node, ins):
        return call("nn.Embedding", node.attrs["max"], node.attrs["dim"])

    def torch_call(self, node, module, args):
        # the vectors of positions 0 to L - 1, as GPT-2 takes them, and a batch axis of 1 (a slice of the
        # weight would be a view that requires a gradient even under no_grad, which module hooks refuse)
        positions = call("torch.arange", f"{args[0]}.shape[1]", device=f"{args[0]}.device")
        return Index(call(module, positions), "None")

    def numpy_state(self, node, ins, init):
        return [("weight", call("embedding_weight", "rng", node.attrs["max"], node.attrs["dim"]))]

    def numpy_call(self, node, state, args):
        return Index(state("weight"), f"None, : {args[0]}.shape[1]")

    def onnx_call(self, node, g, args):
        """The first L rows of the weight, with a batch axis of 1."""
        rows = g.op("Slice", g.state("weight"), g.const([0]), g.const([node.shape[0]]), g.const([0]))
        return g.op("Unsqueeze", rows, g.const([0]))

    numpy_keeps = "shape"

    def numpy_backward(self, node, state, grad, saved):
        """The weight's gradient; the input, read only for its length, gets zeros (token ids none)."""
        backward = call("position_embedding_backward", grad, saved, node.attrs["max"])
        return Backward(backward, (None if node.geom["ids"] else 0, "weight"))


@register
class ToSequence(Op):
    name = "to_sequence"
    doc = (
        "A channels-first map as a sequence of its positions: C x H x W becomes (H*W) x C, one token per "
        "position (a ViT's patch embedding after its conv; torchvision's reshape(n, C, -1).permute(0, 2, 1))."
    )
    is_view = True  # a view in torch (reshape then permute) and in NumPy

    def infer(self, node, ins, warn):
        spatial_dims(node, ins[0], f"to_sequence {node.name}")
        channels, *spatial = ins[0]
        return (prod(spatial), channels)

    def channels(self, node, ins, out):
        return 1

    def receptive(self, node, rfs):
        return None

    def torch_call(self, node, module, args):
        return call(f"{args[0]}.flatten(2).transpose", "1", "2")

    def numpy_call(self, node, state, args):
        return call("to_sequence", args[0])

    def onnx_call(self, node, g, args):
        """Reshape to N x C x positions, then the positions first: as torch's flatten(2).transpose(1, 2)."""
        flat = g.op("Reshape", args[0], g.const([0, node.shape[1], node.shape[0]]))
        return g.op("Transpose", flat, perm=[0, 2, 1])

    numpy_keeps = "shape"


class _AlongAxis(Op):
    """A layer that removes one axis (`axis`: a number, `channels` or `sequence`, by default the sequence)."""

    def _axis(self, node, shape) -> int:
        if len(shape) < 2:
            raise ShapeError(
                f"{self.name} {node.name} needs a sequence or a map, but gets {fmt_shape(shape)}, a vector",
                code="E0301",
            )
        axis = resolve_axis(node, shape)
        node.geom["axis"] = axis
        return axis

    def channels(self, node, ins, out):
        axis, channels = node.geom["axis"], ins[0].channels
        return channels - (axis < channels) if axis != channels else len(out) - 1

    def receptive(self, node, rfs):
        return None

    def _index(self, node, value: str) -> str:
        """`:, 0` for the first axis: the batch stays."""
        return ", ".join([":"] * (node.geom["axis"] + 1) + [value])


@register
class Select(_AlongAxis):
    name = "select"
    doc = "One token of a sequence (the class token: x[:, 0]), or one index along another axis: a view."
    params = (
        P("index", "int", positional=True, doc="counted from 0; negative from the end (-1: the last token)"),
        P("axis", "int", "sequence", choices=("channels", "sequence"), doc="a number, `sequence` or `channels`"),
    )
    is_view = True

    def infer(self, node, ins, warn):
        shape = ins[0]
        axis = self._axis(node, shape)
        size, index = shape[axis], node.attrs["index"]
        if not -size <= index < size:
            raise ShapeError(
                f"select {node.name}: index {index} is out of range: {fmt_shape(shape)} has {size} along axis {axis} "
                f"(0 to {size - 1}; below 0 counts from the end, 0-1 being the last)",
                [f"the last is {size - 1}"],
                param="index",
                code="E0205",
                proposals=[Proposal("index", size - 1, f"index={size - 1}", "picks the last")],
            )
        return tuple(n for i, n in enumerate(shape) if i != axis)

    def settings(self, node):
        return f"{node.attrs['index']} of {node.geom['along']}"

    def torch_call(self, node, module, args):
        return Index(args[0], self._index(node, str(node.attrs["index"])))

    numpy_call = torch_call
    numpy_keeps = "shape"

    def numpy_backward(self, node, state, grad, saved):
        picked = Index("np.s_", self._index(node, str(node.attrs["index"])))
        return Backward(call("slice_backward", grad, saved, picked))

    def onnx_call(self, node, g, args):
        """Gather of one (scalar) index removes the axis; a negative index counts from the end, as in torch."""
        return g.op("Gather", args[0], g.const(node.attrs["index"]), axis=node.geom["axis"] + 1)


@register
class Mean(_AlongAxis):
    name = "mean"
    doc = "The mean over one axis, by default over the tokens of a sequence (x.mean(dim=1))."
    params = (P("axis", "int", "sequence", choices=("channels", "sequence"), doc="a number, `sequence` or `channels`"),)

    def infer(self, node, ins, warn):
        axis = self._axis(node, ins[0])
        return tuple(n for i, n in enumerate(ins[0]) if i != axis)

    def count_elem_ops(self, node, ins, out):
        return prod(ins[0])  # each value added, one division per output: as an average pool's window

    def settings(self, node):
        return f"over {node.geom['along']}"

    def torch_call(self, node, module, args):
        return call(f"{args[0]}.mean", dim=str(node.geom["axis"] + 1))

    def numpy_call(self, node, state, args):
        return call(f"{args[0]}.mean", axis=str(node.geom["axis"] + 1))

    def onnx_call(self, node, g, args):
        return g.op("ReduceMean", args[0], g.const([node.geom["axis"] + 1]), keepdims=0)

    numpy_keeps = "shape"

    def numpy_backward(self, node, state, grad, saved):
        return Backward(call("mean_backward", grad, saved, str(node.geom["axis"] + 1)))
