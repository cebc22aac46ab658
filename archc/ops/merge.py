"""Layers that join several tensors: concat (channels), element-wise add, mul, sub and div."""

from __future__ import annotations

from ..codegen.pyexpr import Index, Neg, Sum, call, list_of, lit, tuple_of
from .base import (
    AXIS_WORDS,
    Backward,
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
)


def _listing(node, ins) -> str:
    return ", ".join(f"{src} {fmt_shape(shape)}" for src, shape in zip(node.inputs, ins))


def _mismatch_help(node, ins) -> str:
    """How to make an `add`'s shapes agree: a learned tensor the batch shares (a `param`, a ViT's
    position embedding) keeps the shape its spec writes, which another input size changes nothing of;
    a shortcut is projected."""
    shared = [src for src, shape in zip(node.inputs, ins) if not shape.batched]
    other = next((src for src, shape in zip(node.inputs, ins) if shape.batched and shape.is_sequence), None)
    if shared and other is not None:
        return (
            f"`{shared[0]}` keeps the shape written in the spec: write it from the sizes of the sequence it is "
            f"added to ({other}.length x {other}.channels; in a block, in.length x in.channels), and it follows "
            "the input's size"
        )
    return "project the shortcut with a 1x1 conv (and the same stride) so both shapes agree"


def _merge_rf(rfs):
    if any(rf is None for rf in rfs):
        return None
    return max(rfs, key=lambda rf: tuple(size for size, _, _ in rf))


@register
class Concat(Op):
    name = "concat"
    doc = (
        "Joins its inputs along the channel axis, or the axis `axis` names (`sequence`: a class token "
        "before the patch tokens); every other dimension must agree. A learned `param` is expanded over the batch."
    )
    params = (P("axis", "int", "channels", choices=AXIS_WORDS, doc="a number, `channels` or `sequence`"),)
    min_inputs, max_inputs = 2, None

    def infer(self, node, ins, warn):
        ranks = {len(s) for s in ins}
        axis = resolve_axis(node, ins[0]) if len(ranks) == 1 else 0
        rest = {s[:axis] + s[axis + 1 :] for s in ins}
        if len(ranks) > 1 or len(rest) > 1:
            along = "channels" if axis == ins[0].channels else f"axis {axis}"
            raise ShapeError(
                f"concat {node.name}: inputs must agree in every dimension but {along}: {_listing(node, ins)}",
                ["resize the branches to the same spatial size (matching stride and padding) before joining"],
                code="E0305",
            )
        batched = [shape.batched for shape in ins]
        # a tensor shared by the batch is expanded over it, to the batch of the first input that has one
        node.geom.update(axis=axis, expand=[i for i, b in enumerate(batched) if not b] if any(batched) else [])
        node.geom["batch"] = batched.index(True) if any(batched) else None
        node.geom["sizes"] = [s[axis] for s in ins]  # for the backward, which cuts the gradient back
        return (*ins[0][:axis], sum(s[axis] for s in ins), *ins[0][axis + 1 :])

    def receptive(self, node, rfs):
        return _merge_rf(rfs)

    def settings(self, node):
        return "" if node.geom["axis"] == node.shape.channels else node.geom["along"]

    def _args(self, node, args, expand):
        g = node.geom
        return [expand(arg, args[g["batch"]]) if i in g["expand"] else arg for i, arg in enumerate(args)]

    def torch_call(self, node, module, args):
        rank = len(node.shape)
        args = self._args(node, args, lambda a, b: call(f"{a}.expand", f"{b}.shape[0]", *["-1"] * rank))
        return call("torch.cat", list_of(args), dim=str(node.geom["axis"] + 1))

    def numpy_call(self, node, state, args):
        args = self._args(node, args, lambda a, b: call("np.broadcast_to", a, f"({b}.shape[0], *{a}.shape[1:])"))
        return call("np.concatenate", list_of(args), axis=str(node.geom["axis"] + 1))

    def onnx_call(self, node, g, args):
        """A tensor the batch shares is broadcast to the batch of the first that has one, as torch's expand:
        Where(c, a, a) with c a bool of that input's batch, N x 1 ... 1 (IsNaN of its first values; either
        way the result is a), whose shape ONNX infers, which it cannot for Expand to a computed shape."""
        axes = list(range(1, len(node.shape) + 1))

        def expand(a, b):
            first = g.op("Slice", b, g.const([0] * len(axes)), g.const([1] * len(axes)), g.const(axes))
            return g.op("Where", g.op("IsNaN", first), a, a)

        args = self._args(node, args, expand)
        return g.op("Concat", *args, axis=node.geom["axis"] + 1)

    numpy_keeps = "nothing"

    def numpy_backward(self, node, state, grad, saved):
        """The gradient cut back into the inputs' pieces; an input expanded over the batch gets its
        piece summed over the batch."""
        g = node.geom
        axis = str(g["axis"] + 1) if g["axis"] else None
        expanded = tuple_of(map(str, g["expand"])) if g["expand"] else None
        backward = call("concat_backward", grad, list_of(map(str, g["sizes"])), axis=axis, expanded=expanded)
        return Backward(backward, tuple(range(len(g["sizes"]))))


@register
class Add(Op):
    name = "add"
    doc = (
        "Element-wise sum of its inputs (residual connections), broadcasting sizes of 1 as `mul` does "
        "(a learned per-channel bias, a C x 1 x 1 `param`, over a C x H x W map)."
    )
    min_inputs, max_inputs = 2, None

    def infer(self, node, ins, warn):
        out = broadcast(node, ins, _mismatch_help(node, ins))
        node.geom["broadcast"] = any(tuple(shape) != out for shape in ins)  # whose gradient is summed back
        return out

    def channels(self, node, ins, out):
        return _batched_channels(ins, out)

    def count_elem_ops(self, node, ins, out):
        return sums(node, out)

    def receptive(self, node, rfs):
        return _merge_rf(rfs)

    def torch_call(self, node, module, args):
        return flat_sum(args)

    numpy_keeps = "nothing"

    def numpy_keep(self, node, args):
        """The inputs' shapes when one is broadcast, to sum its gradient back to; else nothing."""
        return tuple_of(f"{a}.shape" for a in args) if node.geom["broadcast"] else None

    def numpy_backward(self, node, state, grad, saved):
        """Every input gets the output's gradient, summed over the axes it was broadcast on."""
        inputs = tuple(range(len(node.inputs)))
        if not node.geom["broadcast"]:
            return Backward(tuple_of([grad] * len(node.inputs)), inputs)
        return Backward(call("add_backward", grad, Neg(saved, "*")), inputs)

    numpy_call = torch_call

    def onnx_call(self, node, g, args):
        return onnx_sum(g, args)  # ONNX's Add broadcasts as NumPy does; the batch is first in both


def _dimension(axis: int, rank: int) -> str:
    """`channels`, `H`, `W`... : how the error names an axis of a per-sample shape."""
    spatial = {1: ["L"], 2: ["H", "W"], 3: ["D", "H", "W"]}.get(rank - 1, [str(i) for i in range(1, rank)])
    return "channels" if axis == 0 else spatial[axis - 1]


def broadcast(node, ins, mismatch: str | None = None) -> tuple[int, ...]:
    """The output of torch/NumPy broadcasting, applied to the per-sample shapes of the inputs.

    The code puts the batch first, so inputs of different ranks would line the batch up
    with another axis: the ranks must be equal, and then every axis must agree or be 1 in
    all but one input (a C x 1 x 1 gate over a C x H x W map). `mismatch`: the help when an
    axis disagrees (`add`'s: project the shortcut, or write the `param` from the input's sizes).
    """
    if len({len(s) for s in ins}) > 1:
        raise ShapeError(
            f"{node.op} {node.name}: inputs of different ranks cannot be broadcast: {_listing(node, ins)}",
            ["give every input the same number of dimensions: a per-channel gate of C values is `reshape: Cx1x1`"],
            code="E0305",
            proposals=_same_rank(ins),
        )
    out = []
    for axis, sizes in enumerate(zip(*ins)):
        if len(set(sizes) - {1}) > 1:
            raise ShapeError(
                f"{node.op} {node.name}: cannot broadcast {_listing(node, ins)}: their "
                f"{_dimension(axis, len(ins[0]))} ({', '.join(map(str, sizes))}) differ and are not 1",
                [mismatch or "each dimension must be equal in every input, or 1 in those that are repeated along it"],
                code="E0305",
            )
        out.append(max(sizes))
    return tuple(out)


def _batched_channels(ins, out) -> int:
    """The channels' axis of a broadcast sum or product: the first batched input's, whose axes the
    output keeps (a `param` holds its features last: a C x 1 x 1 bias added to a map is channels-first)."""
    first = next((shape for shape in ins if shape.batched), ins[0])
    return first.channels if len(out) == len(first) else 0


def _same_rank(ins) -> list[Proposal]:
    """The lower-rank input given the other's rank by trailing 1s (a gate of C values as C x 1 x 1)."""
    (low, short), (_high, long) = sorted(enumerate(ins), key=lambda item: len(item[1]))
    target = (*short, *(1,) * (len(long) - len(short)))
    return [Proposal("reshape", (low, target), fmt_shape(target), "gives it the other input's rank")]


class _Elementwise(Op):
    """An arithmetic operator between its inputs, value by value, with broadcasting; no MACs
    (torch's flop counter counts none, docs/language.md section 12), one element operation per output value."""

    min_inputs, max_inputs = 2, 2
    operator: str = ""
    onnx_op: str = ""

    def infer(self, node, ins, warn):
        return broadcast(node, ins)

    def channels(self, node, ins, out):
        return _batched_channels(ins, out)

    def count_elem_ops(self, node, ins, out):
        return prod(out)

    def receptive(self, node, rfs):
        return _merge_rf(rfs)

    def torch_call(self, node, module, args):
        return Sum(tuple(args), self.operator)

    numpy_call = torch_call

    def onnx_call(self, node, g, args):
        return g.op(self.onnx_op, *args)  # ONNX broadcasts as NumPy does; the batch is first in both

    def numpy_keep(self, node, args):
        """Both inputs, whose values each other's gradient needs (sub: only their shapes)."""
        return tuple_of(args)

    def numpy_backward(self, node, state, grad, saved):
        """mul_backward, sub_backward, div_backward: a gradient for each input, summed over the axes
        it was broadcast on."""
        return Backward(call(f"{self.name}_backward", grad, Neg(saved, "*")), (0, 1))


@register
class Mul(_Elementwise):
    name = "mul"
    doc = "Element-wise product of two inputs, broadcasting sizes of 1 (a squeeze-excitation gate)."
    operator = "*"
    onnx_op = "Mul"

    def training(self, node, ins, out, ctx):
        """Each input's gradient is the other input times the output's: each is kept for the other."""
        return Training(tuple(Saved.input(1 - i) for i in (0, 1) if ctx.grads[i]))


@register
class Sub(_Elementwise):
    name = "sub"
    doc = "The second input subtracted from the first, element-wise, broadcasting sizes of 1."
    operator = "-"
    onnx_op = "Sub"

    def numpy_keep(self, node, args):
        return tuple_of(f"{a}.shape" for a in args)


@register
class Div(_Elementwise):
    name = "div"
    doc = "The first input divided by the second, element-wise, broadcasting sizes of 1."
    operator = "/"
    onnx_op = "Div"

    def training(self, node, ins, out, ctx):
        """a / b: a's gradient needs b; b's needs a and b."""
        first = (Saved.input(0),) if ctx.grads[1] else ()
        return Training(first + ((Saved.input(1),) if any(ctx.grads) else ()))


# `a + b + c` nests one level per term, and CPython cannot compile a few thousand levels
# (RecursionError); more inputs than this are summed by the builtin sum() of a flat list.
MAX_TERMS = 64


def sums(node, out) -> int:
    """The element operations of adding n inputs into an output: n - 1 additions per output value."""
    return (len(node.inputs) - 1) * prod(out)


def flat_sum(terms):
    """`a + b + c`, or `sum([a, b, c, ...])` for many terms: the same value in torch and NumPy."""
    return Sum(tuple(terms)) if len(terms) <= MAX_TERMS else call("sum", list_of(terms))


def onnx_sum(g, terms) -> str:
    """`((a + b) + c) + ...`, in the order torch and NumPy add them."""
    total = terms[0]
    for term in terms[1:]:
        total = g.op("Add", total, term)
    return total


def _smallest_first(ins) -> list[Proposal]:
    """The inputs reordered so that the first fits in every other one, if one does."""
    for i, first in enumerate(ins):
        if all(len(shape) == len(first) and all(n >= m for n, m in zip(shape[1:], first[1:])) for shape in ins):
            order = (i, *(j for j in range(len(ins)) if j != i))
            return [Proposal("inputs", order, "", "adds every input into the smallest")]
    return []


@register
class Shortcut(Op):
    name = "shortcut"
    doc = (
        "Adds the other inputs into the first, whose shape the output keeps: a larger input is sampled "
        "every k-th position, surplus channels are dropped and missing ones count as zero "
        "(ResNet's parameter-free shortcut; Darknet's [shortcut])."
    )
    min_inputs, max_inputs = 2, None

    def infer(self, node, ins, warn):
        out = ins[0]
        fits = []
        for src, shape in zip(node.inputs[1:], ins[1:]):
            if len(shape) != len(out) or any(n < m for n, m in zip(shape[1:], out[1:])):
                raise ShapeError(
                    f"shortcut {node.name}: {src} {fmt_shape(shape)} cannot be added into {node.inputs[0]} "
                    f"{fmt_shape(out)}: every input needs the first one's rank and at least its spatial size",
                    ["list the input with the smaller (or equal) spatial size first"],
                    code="E0305",
                    proposals=_smallest_first(ins),
                )
            strides = tuple(n // m for n, m in zip(shape[1:], out[1:]))
            fits.append((min(shape[0], out[0]), strides))
        node.geom.update(fits=fits, shapes=ins[1:])
        return out

    def count_elem_ops(self, node, ins, out):
        """As `add`: the channels a smaller input lacks are added as zeros, as the code adds them."""
        return sums(node, out)

    def receptive(self, node, rfs):
        return _merge_rf(rfs)

    def describe(self, node):
        strides = {s for _c, stride in node.geom["fits"] for s in stride}
        return {"stride": "-" if strides <= {1} else "/".join(map(str, sorted(strides)))}

    def settings(self, node):
        return "sampled" if any(max(s, default=1) > 1 for _c, s in node.geom["fits"]) else ""

    def _term(self, node, arg, shape, fit, pad):
        channels, strides = fit
        out = node.shape
        parts = [":", ":" if channels == shape[0] else f":{channels}"]
        parts += [_sample(n, m, s) for n, m, s in zip(shape[1:], out[1:], strides)]
        term = arg if all(p == ":" for p in parts) else Index(arg, ", ".join(parts[: _last_cut(parts) + 1]))
        if channels < out[0]:
            term = pad(term, out[0] - channels, len(out) - 1)
        return term

    def _terms(self, node, args, pad):
        g = node.geom
        terms = (self._term(node, a, s, f, pad) for a, s, f in zip(args[1:], g["shapes"], g["fits"]))
        return flat_sum((args[0], *terms))  # many inputs: sum([...]), which CPython can compile

    def torch_call(self, node, module, args):
        def pad(term, extra, nd):
            return call("F.pad", term, lit((0, 0) * nd + (0, extra)))

        return self._terms(node, args, pad)

    def numpy_call(self, node, state, args):
        def pad(term, extra, nd):
            return call("np.pad", term, lit(((0, 0), (0, extra), *((0, 0),) * nd)))

        return self._terms(node, args, pad)

    def onnx_call(self, node, g, args):
        """Each other input sliced to the first's channels and every s-th position, padded with
        zero channels where it has fewer, then added: the terms of `_term`."""
        out, terms = node.shape, [args[0]]
        for arg, shape, (channels, strides) in zip(args[1:], node.geom["shapes"], node.geom["fits"]):
            ends = [channels, *(m * s for m, s in zip(out[1:], strides))]
            term = arg
            if tuple(ends) != tuple(shape) or max(strides, default=1) > 1:
                axes = list(range(1, len(out) + 1))
                steps = [1, *strides]
                term = g.op("Slice", arg, g.const([0] * len(axes)), g.const(ends), g.const(axes), g.const(steps))
            if channels < out[0]:
                pads = [0] * (len(out) + 1) * 2
                pads[len(out) + 2] = out[0] - channels  # after the channels (axis 1)
                term = g.op("Pad", term, g.const(pads))
            terms.append(term)
        return onnx_sum(g, terms)

    numpy_keeps = "nothing"

    def numpy_backward(self, node, state, grad, saved):
        """The first input gets the gradient; every other one the part its term covers (its first
        channels where it was padded), put back in zeros at the positions it was sampled at."""
        out = node.shape
        grads = [grad]
        for shape, (channels, strides) in zip(node.geom["shapes"], node.geom["fits"]):
            term = grad if channels == out[0] else Index(grad, f":, :{channels}")
            parts = [":", ":" if channels == shape[0] else f":{channels}"]
            parts += [_sample(n, m, s) for n, m, s in zip(shape[1:], out[1:], strides)]
            if any(p != ":" for p in parts):
                index = f"np.s_[{', '.join(parts[: _last_cut(parts) + 1])}]"
                term = call("slice_backward", term, f"(len({grad}), {', '.join(map(str, shape))})", index)
            grads.append(term)
        return Backward(tuple_of(grads), tuple(range(len(grads))))


def _last_cut(parts) -> int:
    """Index of the last part that slices anything: `x[:, :64]`, not `x[:, :64, :, :]`."""
    return max(i for i, p in enumerate(parts) if p != ":")


def _sample(n: int, m: int, s: int) -> str:
    """The slice taking m of n positions, every s-th from the first."""
    if s == 1:
        return ":" if n == m else f":{m}"
    return f"::{s}" if n == m * s else f":{m * s}:{s}"
