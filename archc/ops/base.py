"""What every layer type provides, and the registry that finds them.

A layer type is one `Op` subclass in one module of this package. It declares
its parameter schema and carries every rule about itself: output shape,
parameters, buffers, MACs, element operations, receptive field and how the
table describes it.
The analysis passes only ever call these methods, so adding a layer type
means adding one class (and its tests), never touching a pass.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from fractions import Fraction
from typing import ClassVar

from ..codegen.pyexpr import call
from .emit import mirror

Shape = tuple[int, ...]
# Receptive field per spatial dimension: (size, jump, start), in input pixels. Each is an
# int while it is whole (the common case: Fraction arithmetic costs ~1 us an operation,
# which was a fifth of the analysis) and a Fraction where it is not (starts at pixel
# centres, jumps below 1 after upsampling).
RF = tuple[tuple[int | Fraction, int | Fraction, int | Fraction], ...] | None


class Layout(tuple):
    """A per-sample shape that knows which of its axes holds the channels (the features).

    The shape pass gives every output one (`Op.channels`): axis 0 in the channels-first
    maps that inputs, convolutions and pools make; `permute` moves it with the axes, and
    `dense`, applied along the last axis, leaves its units there. That is how `dense`
    tells a map whose features are last (it runs at every position, as nn.Linear does)
    from a channels-first C x H x W map, which means a forgotten `flatten` (E0304), and
    where `in.channels` reads.
    """

    channels: int
    vocab: int | None  # integer token ids below `vocab` (an `input ... tokens`); None for real numbers
    batched: bool  # False: one tensor the whole batch shares (a learned `param`), broadcast over it

    def __new__(cls, sizes=(), channels: int = 0, vocab: int | None = None, batched: bool = True):
        shape = super().__new__(cls, sizes)
        shape.channels = channels
        shape.vocab = vocab
        shape.batched = batched
        return shape

    @property
    def is_sequence(self) -> bool:
        """Length x features: a rank-2 tensor whose features are last (a sequence input, tokens, a
        `dense` or `embedding` output), whose axis 0 is the sequence axis."""
        return len(self) == 2 and self.channels == 1


def axis_names(shape) -> list[str]:
    """What each axis of a per-sample shape holds, for the JSON report: `C` (the channels or
    features), `L` (a sequence or signal), `H`/`W`/`D` (space); token ids are `L`."""
    if getattr(shape, "vocab", None) is not None:
        return ["L"]
    channels = getattr(shape, "channels", 0)
    spatial = {0: [], 1: ["L"], 2: ["H", "W"], 3: ["D", "H", "W"]}.get(len(shape) - 1)
    spatial = spatial if spatial is not None else [f"S{i}" for i in range(len(shape) - 1)]
    return [*spatial[:channels], "C", *spatial[channels:]]


REQUIRED = object()
# The largest size, count or figure archc works with (docs/language.md, section 12): beyond
# it, counts overflow the 64-bit integers of every framework (and FLOPs, 2 x MACs, would too).
MAX_SIZE = 2**62


class PadPair(tuple):
    """`(before, after)` written in a spec: a per-side padding, not a 2-D shape."""


@dataclass(frozen=True)
class P:
    """One parameter of a layer type.

    kind: int, float, bool, shape (an int or an `x`-shape), padding (a shape,
    per-side pairs, or same/valid/full), or choice (one of `choices`).
    """

    name: str
    kind: str
    default: object = REQUIRED
    positional: bool = False
    choices: tuple[str, ...] = ()
    doc: str = ""

    @property
    def required(self) -> bool:
        return self.default is REQUIRED


class ShapeError(Exception):
    """A layer cannot produce an output; becomes an error at that layer."""

    def __init__(
        self,
        message: str,
        help: list[str] | tuple[str, ...] = (),
        param: str | None = None,
        code: str = "E0301",
        proposals: list[Proposal] | tuple[Proposal, ...] = (),
    ):
        super().__init__(message)
        self.message = message
        self.help = list(help)
        self.param = param
        self.code = code
        self.proposals = list(proposals)  # changes that may fix it, for the shape pass to try


@dataclass(frozen=True)
class Saved:
    """One tensor a layer's backward keeps, as PyTorch's autograd saves it while training.

    `kind` says whose memory it is: `input` (the `index`-th input: the storage that tensor
    lives in, shared with every other layer that keeps it), `output` (the layer's own
    output's storage) or `new` (a tensor of its own: a mask, indices, statistics, a padded
    or contiguous copy) of `elements` values, per sample unless `per_sample` is False, of
    `itemsize` bytes each (None: the network's element type). Parameters are not listed:
    they are in memory anyway.
    """

    kind: str
    index: int = 0
    elements: int = 0
    per_sample: bool = True
    itemsize: int | None = None

    @classmethod
    def input(cls, index: int = 0) -> Saved:
        return cls("input", index)

    @classmethod
    def output(cls) -> Saved:
        return cls("output")

    @classmethod
    def new(cls, elements: int, per_sample: bool = True, itemsize: int | None = None) -> Saved:
        return cls("new", elements=elements, per_sample=per_sample, itemsize=itemsize)


INT64 = 8  # bytes of the indices max pooling keeps


@dataclass(frozen=True)
class Backward:
    """A layer's line in the generated NumPy model's backward: `expr` gives the gradients that
    `returns` names, in its order: an input's index, a parameter's state_dict suffix, a tuple of
    suffixes for a list of gradients, `...` for a dict of gradients under their state_dict keys (a
    recurrent layer's, whose arrays depend on its layers and directions), or None for a value the
    line does not use (the missing bias of a conv). One gradient is returned bare."""

    expr: object
    returns: tuple = (0,)
    # the kernel's keyword that skips the input gradient (then None): passed as `input_grads` for a
    # layer that alone reads a network input, whose gradient the caller may not want (torch computes
    # none for an input that does not require grad; for a 7x7 stem that is half its backward)
    skip_input: str | None = None


@dataclass(frozen=True)
class Training:
    """What a layer does to memory while training (archc/passes/training.py): the tensors its
    backward keeps, and whether its output is a view of its first input's storage (no memory
    of its own; flatten, reshape, a slice) or, with `stored`, a view of a larger tensor of its
    own (`stored` values per sample: a transposed convolution's output cropped per side)."""

    saves: tuple[Saved, ...] = ()
    view: bool = False
    stored: int | None = None


@dataclass(frozen=True)
class TrainContext:
    """What a layer's training rule depends on besides its shapes: which inputs need a gradient
    (a network input does not; what a parameter went into does), whether the generated PyTorch
    code computes the layer in place (an activation overwriting its input), and the device
    (`cuda` or `cpu`: torch's dropout keeps a 1-byte mask on the GPU, a full-width one on the CPU);
    and the layer type that made each input (a recurrent layer's output is time-major in memory,
    which the next recurrent layer reads without a copy)."""

    grads: tuple[bool, ...]
    in_place: bool = False
    device: str = "cuda"
    producers: tuple[str, ...] = ()


class Op:
    name: ClassVar[str] = ""
    doc: ClassVar[str] = ""
    params: ClassVar[tuple[P, ...]] = ()
    # Bare words accepted as positional arguments: word -> (parameter, value).
    symbols: ClassVar[dict[str, tuple[str, object]]] = {}
    min_inputs: ClassVar[int] = 1
    max_inputs: ClassVar[int | None] = 1
    # The output is the input under another shape (flatten, reshape) or, at
    # inference, the input itself (dropout, identity): no new memory.
    is_view: ClassVar[bool] = False
    is_activation: ClassVar[bool] = False
    # Reads integer token ids (an input declared `tokens`): `embedding` alone; every other layer
    # refuses them (E0307, archc/passes/shapes.py).
    reads_ids: ClassVar[bool] = False
    # Which rules of an initialisation scheme start the weights (archc/codegen/init.py): "conv" for
    # torch's nn.ConvNd, "dense" for nn.Linear; None keeps PyTorch's default (a transposed conv,
    # as torchvision's schemes do) or the layer's own start (norms: weight 1, bias 0).
    init_kind: ClassVar[str | None] = None
    # The kind of the torch modules the layer's module holds inside it, which a scheme's loop over
    # `self.modules()` reaches too (attention's out_proj is an nn.Linear: "dense"); None for none.
    inner_kind: ClassVar[str | None] = None

    def infer(self, node, ins: list[Shape], warn) -> Shape:
        """Output shape from input shapes; may record resolved geometry in node.geom."""
        return ins[0]

    def layout(self, node, ins: list[Layout], out: Shape) -> Layout:
        """The output's layout: the axis of its channels (`channels`), real numbers, and shared by the
        batch only when every input is (a sum of learned tensors); inputs and `param` say otherwise."""
        batched = any(shape.batched for shape in ins) if ins else True
        return Layout(out, self.channels(node, ins, out), batched=batched)

    def channels(self, node, ins: list[Layout], out: Shape) -> int:
        """The axis of the output that holds the channels (see `Layout`): by default where the
        first input has them while the rank stays (activations, norms, merges), else the first."""
        return ins[0].channels if ins and len(out) == len(ins[0]) else 0

    def count_params(self, node, ins: list[Shape], out: Shape) -> int:
        return 0

    def tied_shape(self, node) -> Shape | None:
        """The shape of the `weight` a `dense ... tied=` layer may share with this one (an embedding's
        vocab x dim table); None when it has no weight to share."""
        return None

    def check_tie(self, node, target, have: Shape) -> None:
        """A layer with `tied=` (dense): ShapeError (E0308) unless `have`, the weight of `target`, fits it."""
        raise NotImplementedError(f"{self.name} cannot be tied")

    def count_buffers(self, node, ins: list[Shape], out: Shape) -> int:
        return 0

    def training(self, node, ins: list[Shape], out: Shape, ctx: TrainContext) -> Training:
        """The tensors this layer's backward keeps in PyTorch (in the generated module), and
        whether its output is a view. By default nothing: what needs no tensor to compute its
        gradient (add, concat, padding, upsampling, shuffles); views keep their input's storage."""
        return Training(view=self.is_view)

    def count_macs(self, node, ins: list[Shape], out: Shape) -> int:
        return 0

    def workspace(self, node, ins: list[Shape], out: Shape) -> int:
        """Values per sample the layer holds only while it runs, besides its output (attention's
        weights): counted in the activation memory and in the peak at this layer, then freed."""
        return 0

    def count_elem_ops(self, node, ins: list[Shape], out: Shape) -> int:
        """Element operations at inference: the arithmetic MACs leave out, one per value and step
        (docs/language.md, section 12); 0 for a layer that only moves or copies values."""
        return 0

    def receptive(self, node, rfs: list[RF]) -> RF:
        return rfs[0]

    def describe(self, node) -> dict[str, str]:
        """Short texts for the table's filter / stride / padding columns."""
        return {}

    def settings(self, node) -> str:
        """The key settings in one phrase, e.g. `64@3x3 /2 same`."""
        return ""

    # -- code: the same layer in PyTorch, NumPy and ONNX (archc.codegen) ---------------
    # The Python emitters return expression trees from archc.codegen.pyexpr; `args` are the
    # variables holding the inputs, `module` is `self.<attribute>` of this layer.

    def torch_layer(self, node, ins: list[Shape]):
        """The constructor of this layer's torch submodule; None when forward computes it inline."""
        return None

    def torch_call(self, node, module: str, args: list[str]):
        return call(module, args[0])

    def torch_sequential(self, node, ins: list[Shape]):
        """The module that stands for this layer in an nn.Sequential, which can only hold modules:
        its submodule, or for a layer forward computes inline, the module that computes the same
        (`nn.Flatten()` for `torch.flatten(x, 1)`); None if there is none."""
        return self.torch_layer(node, ins)

    def numpy_state(self, node, ins: list[Shape], init) -> list:
        """(suffix, initial value) for each array, in the order and shapes of torch's state_dict.

        `init` (an archc.codegen.init.Initial) gives the expressions of a weight and a bias that
        start as the network's initialisation scheme starts them."""
        return []

    def numpy_call(self, node, state, args: list[str]):
        """The NumPy expression; `state(suffix)` is the expression of one of this layer's arrays."""
        raise NotImplementedError(f"{self.name} has no NumPy code")

    def onnx_call(self, node, g, args: list[str]):
        """The ONNX nodes of the layer in eval mode, added through `g` (archc.codegen.onnx_target.OnnxGraph):
        `args` are the names of the input values; returns the name of the value it computes."""
        raise NotImplementedError(f"{self.name} has no ONNX code")

    # -- training in NumPy: what the forward keeps, and the backward line ----------------
    # State entries under these suffixes are buffers (running statistics): no gradient, no update.
    numpy_buffers: ClassVar[tuple[str, ...]] = ()
    # What the training forward keeps for `numpy_backward`: the input, its shape, or nothing.
    numpy_keeps: ClassVar[str] = "input"

    def numpy_keep(self, node, args: list[str]):
        """The expression (of the input variables `args`) the training forward keeps before computing
        the layer; None when the backward needs nothing but the output's gradient."""
        if self.numpy_keeps == "nothing":  # a layer without inputs (param) keeps nothing too
            return None
        return {"input": args[0], "shape": f"{args[0]}.shape"}[self.numpy_keeps]

    def numpy_train_call(self, node, state, args: list[str]):
        """The training forward's expression when the layer draws what its backward needs (a dropout
        mask): it gives (output, kept). None: `numpy_call`, with `numpy_keep` kept before it."""
        return None

    def numpy_backward(self, node, state, grad: str, saved) -> Backward:
        """The backward line: `grad` is the output's gradient, `saved` what `numpy_keep` kept (None
        if nothing). By default the forward kernel's `<kernel>_backward`, which numpy_backward.py
        gives the forward's own arguments after the gradient and what was kept."""
        return Backward(mirror(self.numpy_call(node, state, [saved or "_"]), grad, saved))


OPS: dict[str, Op] = {}


def register(cls: type[Op]) -> type[Op]:
    OPS[cls.name] = cls()
    return cls


# -- shared geometry -------------------------------------------------------------


def spatial_dims(node, shape: Shape, what: str, allowed=(1, 2, 3)) -> int:
    """The number of spatial dimensions of a channels-first input; a layer that slides over space
    (convolutions, pools, upsampling) refuses a map whose channels are not first (E0307): a
    sequence, whose features are last, is put channels first by `permute`, which the help offers."""
    nd = len(shape) - 1
    channels = getattr(shape, "channels", 0)
    if nd >= 1 and channels != 0:
        order = (channels, *(i for i in range(len(shape)) if i != channels))
        kind = "a sequence (length x features)" if shape.is_sequence else f"a map with its channels on axis {channels}"
        raise ShapeError(
            f"{what} needs its channels first, but gets {fmt_shape(shape)}, {kind}",
            ["put the channels first with a `permute` before it"],
            code="E0307",
            proposals=[Proposal("permute", order, fmt_shape(order), "puts the channels first")],
        )
    if nd not in allowed:
        wanted = " or ".join({1: "C x L", 2: "C x H x W", 3: "C x D x H x W"}[n] for n in allowed)
        got = fmt_shape(shape)
        hint = ["a vector has no spatial size: apply it before `flatten`"] if nd == 0 else []
        raise ShapeError(f"{what} needs a {wanted} input, but gets {got}", hint)
    return nd


def per_dim(value, nd: int, param: str, what: str) -> tuple[int, ...]:
    """Broadcast an int to every spatial dimension, or check a shape's length."""
    if isinstance(value, int):
        return (value,) * nd
    if len(value) != nd:
        raise ShapeError(
            f"{what}: {param} {fmt_shape(value)} has {len(value)} sizes, but the input has {nd} spatial "
            f"dimension{'s' if nd > 1 else ''}",
            [f"write {param} with {nd} size{'s' if nd > 1 else ''}, e.g. {'x'.join(['3'] * nd)}, or as one number"],
            param=param,
        )
    return tuple(value)


def resolve_padding(pad, nd: int, spatial: Shape, kernel, stride, dilation, what: str):
    """Return ((before, after), ...) per spatial dimension."""
    eff = [d * (k - 1) + 1 for k, d in zip(kernel, dilation)]
    if pad == "valid":
        return tuple((0, 0) for _ in range(nd))
    if pad == "full":
        return tuple((e - 1, e - 1) for e in eff)
    if pad == "same":
        sides = []
        for n, s, e in zip(spatial, stride, eff):
            out = -(-n // s)
            total = max((out - 1) * s + e - n, 0)
            sides.append((total // 2, total - total // 2))  # the odd pixel goes at the end, as in TF/Keras
        return tuple(sides)
    if isinstance(pad, PadPair):
        pad = (pad,) if nd == 1 else pad
    if isinstance(pad, int):
        return tuple((pad, pad) for _ in range(nd))
    if len(pad) != nd:
        raise ShapeError(
            f"{what}: pad {fmt_padding(pad)} has {len(pad)} entries, but the input has {nd} spatial "
            f"dimension{'s' if nd > 1 else ''}",
            ["give one number for every side, one per dimension (1x2), or (before,after) pairs: (0,1)x(0,1)"],
            param="pad",
        )
    return tuple(tuple(p) if isinstance(p, PadPair) else (p, p) for p in pad)


def window_out(n: int, k: int, s: int, d: int, before: int, after: int, ceil: bool = False) -> int:
    """Output length of a sliding window (figures.md: conv and pool sizes, with the ceil-mode rule)."""
    span = n + before + after - (d * (k - 1) + 1)
    if not ceil:
        return span // s + 1 if span >= 0 else 0
    out = -(-span // s) + 1
    if (out - 1) * s >= n + before:  # the last window must start inside the input or the left padding
        out -= 1
    return out


def check_window(node, what: str, spatial: Shape, kernel, stride, dilation, pads, ceil: bool, warn) -> Shape:
    """Output spatial size; an error for a size <= 0, a warning where the stride leaves pixels unused."""
    outs = []
    uneven = []
    for axis, (n, k, s, d, (b, a)) in enumerate(zip(spatial, kernel, stride, dilation, pads)):
        eff = d * (k - 1) + 1
        out = window_out(n, k, s, d, b, a, ceil)
        if out <= 0:
            raise ShapeError(
                f"{what}: the output would be empty: input {n}{_padded(b, a)} is smaller than the "
                f"{'dilated ' if d > 1 else ''}kernel {eff}",
                ["use a smaller kernel or stride, pad the input (pad=same keeps the size), or a larger input"],
                code="E0302",
                proposals=[Proposal("pad", "same", "pad=same", "pads the input to fit the window", instead=False)],
            )
        outs.append(out)
        # Pixels after the last window: a problem only when they are real input
        # (not padding) and more than the gap a stride larger than the kernel leaves anyway.
        rem = (n + b + a - eff) % s
        if not ceil and rem - a > max(0, s - eff):
            uneven.append(Uneven(axis, n, eff, s, b, a, rem - a))
    if uneven and node.attrs.get("pad") != "same":
        warn(*_uneven_message(what, uneven, pads, spatial, tuple(outs)))
    return tuple(outs)


@dataclass(frozen=True)
class Uneven:
    """One spatial axis whose last `unused` input pixels no window reads."""

    axis: int
    n: int  # input size
    eff: int  # effective kernel
    s: int  # stride
    b: int  # padding before
    a: int  # padding after
    unused: int

    @property
    def missing(self) -> int:
        """The pixels (padding or input) one more window needs."""
        return self.s - (self.n + self.b + self.a - self.eff) % self.s


@dataclass(frozen=True)
class Proposal:
    """A change that would make a diagnostic go away, for the shape pass to try before it offers it.

    `param` is the layer's parameter to change (`pad`, `kernel`), or a change of the graph:
    `input` for the size of the network input the layer reads (`value`: the spatial sizes of
    the layer's input), `flatten` for a `flatten` inserted before the layer (`permute` for a
    `permute` with the order `value`, written `text`), `inputs` for its
    inputs in another order (`value`: their indices), `reshape` for a `reshape` of one input
    inserted before the layer (`value`: the input's index and its new shape). `value` is what the expander would give
    for `text`, how a spec writes it; `says` what it does, for the help (`makes it exact:
    ...`); `spatial` the output's spatial sizes it promises (None: the pass checks that the
    diagnostic goes and no other comes).
    """

    param: str
    value: object
    text: str
    says: str
    spatial: Shape | None = None
    instead: bool = True  # when it works, its help replaces the diagnostic's own (which says the same, vaguer)


def _padded(b: int, a: int) -> str:
    return f" (+{b + a} padding)" if b + a else ""


def _plus_one(num: int, den: int) -> str:
    """num/den + 1 to two decimals; beyond a float's range (a padding of 400 digits) cut, not rounded."""
    try:
        return f"{num / den + 1:.2f}"
    except OverflowError:
        whole, rest = divmod(num, den)
        return f"{whole + 1}.{rest * 100 // den:02d}"


def _uneven_message(what: str, uneven: list[Uneven], pads, spatial: Shape, outs: Shape):
    """The W0301 message and help, and what would make every uneven axis exact at once.

    Two changes do: a padding that adds the missing pixels, split as `same` splits it
    (written for the input's rank, so that `(1,2)` on an image is not read as 1x2), and an
    input that large. Both are `Proposal`s: the shape pass tries them on the network and
    offers only those that give what they promise.
    """
    nd = len(spatial)
    names = ["L"] if nd == 1 else (["H", "W"] if nd == 2 else ["D", "H", "W"])
    same_everywhere = len(uneven) == nd and len({(u.n, u.eff, u.s, u.b, u.a) for u in uneven}) == 1
    shown = uneven[:1] if same_everywhere else uneven  # the same in every dimension: say it once

    def where(u: Uneven) -> str:
        return "" if nd == 1 or same_everywhere else f"{names[u.axis]}: "

    parts = []
    for u in shown:
        total = u.b + u.a
        exact = _plus_one(u.n + total - u.eff, u.s)
        parts.append(
            f"{where(u)}({u.n}{f'+{total}' if total else ''}-{u.eff})/{u.s}+1 = {exact}, "
            f"so {u.unused} pixel{'s' if u.unused > 1 else ''} at the end {'are' if u.unused > 1 else 'is'} never used"
        )
    new_pads, new_sizes, new_outs = list(pads), list(spatial), list(outs)
    pad_steps, size_steps = [], []
    for u in uneven:
        total = u.b + u.a + u.missing
        new_pads[u.axis] = (total // 2, total - total // 2)
        new_sizes[u.axis] = u.n + u.missing
        new_outs[u.axis] = (u.n + total - u.eff) // u.s + 1
        if u in shown:
            pad_steps.append(f"{where(u)}({u.n}+{total}-{u.eff})/{u.s}+1 = {new_outs[u.axis]}")
            written = f"+{u.b + u.a}" if u.b + u.a else ""
            size_steps.append(f"{where(u)}({new_sizes[u.axis]}{written}-{u.eff})/{u.s}+1 = {new_outs[u.axis]}")
    text, value = pad_spelling(tuple(new_pads))
    generic = [
        f"pad so that input + padding - {uneven[0].eff} is a multiple of the stride {uneven[0].s}, "
        "or change the input size"
    ]
    proposals = [
        Proposal("pad", value, text, f"makes it exact: {', '.join(pad_steps)}", tuple(new_outs)),
        Proposal(
            "input", tuple(new_sizes), fmt_shape(new_sizes), f"makes it exact: {', '.join(size_steps)}", tuple(new_outs)
        ),
    ]
    return f"{what} does not divide evenly: " + "; ".join(parts), generic, proposals


def pad_spelling(pads) -> tuple[str, object]:
    """`pad=...` for per-side paddings ((before, after) per axis), and the value the spec then gives.

    The text is right for the rank: on an image `(0,1)` would mean 0 rows and 1 column on both
    sides, so per-side padding is written as a pair for every axis, `(0,1)x(1,1)` (a number after
    a pair, `(0,1)x1`, would read as the word `x1`); a 1-D input reads a single `(0,1)` as
    (before, after).
    """
    if all(b == a for b, a in pads):
        values = tuple(b for b, _ in pads)
        if len(set(values)) == 1:
            return f"pad={values[0]}", values[0]
        return "pad=" + "x".join(map(str, values)), values
    pairs = tuple(PadPair((b, a)) for b, a in pads)
    return "pad=" + "x".join(f"({b},{a})" for b, a in pairs), pairs[0] if len(pairs) == 1 else pairs


def divisor_list(n: int) -> list[int] | None:
    """The divisors of n in order, found up to its square root; None above 10^10 (10^5 steps),
    where counting up to a size of 2^62 would never end."""
    if n > 10**10:
        return None
    low = [d for d in range(1, math.isqrt(n) + 1) if n % d == 0]
    return sorted({*low, *(n // d for d in low)})


def divisors(n: int, listed: int = 12) -> str | None:
    """The divisors of n as a help lists them, the first `listed` of them; None above 10^10."""
    found = divisor_list(n)
    if found is None:
        return None
    return ", ".join(map(str, found[:listed])) + (f", ... {found[-1]}" if len(found) > listed else "")


def check_divides(what: str, param: str, count: int, channels: int, message: str, proposals=()) -> None:
    """A count that splits the channels into equal groups (chunk's parts, shuffle's and group norm's
    groups): below 1 is E0205, one that does not divide them is E0303 with `message` and their divisors."""
    if count < 1:
        raise ShapeError(f"{what}: {param} must be at least 1, not {count}", param=param, code="E0205")
    if channels % count:
        listed = divisors(channels)
        raise ShapeError(
            message,
            [f"the divisors of {channels} are {listed}" if listed else f"{param} must divide {channels}"],
            param=param,
            code="E0303",
            proposals=proposals,
        )


def fmt_shape(shape) -> str:
    if isinstance(shape, int):
        return str(shape)
    return "x".join(str(v) for v in shape)


def fmt_padding(pads) -> str:
    """((1,1),(1,1)) -> 1; ((1,1),(2,2)) -> 1x2; ((0,1),(0,1)) -> (0,1)x(0,1)."""
    if isinstance(pads, int | str):
        return str(pads)
    items = [p if isinstance(p, tuple) else (p, p) for p in pads]
    if all(b == a for b, a in items):
        values = [b for b, _ in items]
        return str(values[0]) if len(set(values)) == 1 else "x".join(map(str, values))
    return "x".join(f"({b},{a})" for b, a in items)


def fmt_stride(stride) -> str:
    return str(stride[0]) if len(set(stride)) == 1 else "x".join(map(str, stride))


def prod(values) -> int:
    return math.prod(values)


def bias_adds(node, out: Shape) -> int:
    """The element operations of a layer's bias: one addition per output value, none without one."""
    return prod(out) if node.attrs["bias"] else 0


def padded_input(shape, pads) -> Saved:
    """The input a windowed layer reads in torch: the input itself, or (per-side padding, which
    torch_pad applies first) a padded copy of its own."""
    if all(b == a for b, a in pads):
        return Saved.input()
    return Saved.new(padded_size(shape, pads))


def padded_size(shape, pads) -> int:
    """Values per sample of the input padded by ((before, after), ...) per spatial dimension."""
    return shape[0] * prod(n + b + a for n, (b, a) in zip(shape[1:], pads))


def window_rf(rf: RF, kernel, stride, dilation, pads) -> RF:
    """Receptive-field arithmetic for a sliding window (size, jump, start per dimension)."""
    if rf is None:
        return None
    out = []
    for (size, jump, start), k, s, d, (b, _a) in zip(rf, kernel, stride, dilation, pads):
        eff = d * (k - 1) + 1
        centre = (eff - 1) // 2 if eff % 2 else Fraction(eff - 1, 2)  # of the window, from its first pixel
        out.append((size + (eff - 1) * jump, jump * s, start + (centre - b) * jump))
    return tuple(out)


AXIS_WORDS = ("channels", "sequence")


def resolve_axis(node, shape, param: str = "axis") -> int:
    """The per-sample axis a layer's `axis` names: a number counted from 0 as `permute` counts
    (negative from the end), `channels` (the axis of the channels or features, wherever it is) or
    `sequence` (axis 0 of a sequence, length x features); a located E0205 otherwise."""
    axis = _axis(node, shape, param)
    node.geom["along"] = "tokens" if shape.is_sequence and axis == 0 else f"axis {axis}"  # for the table
    return axis


def _axis(node, shape, param: str) -> int:
    value, rank = node.attrs[param], len(shape)
    if value == "channels":
        return shape.channels
    if value == "sequence":
        if not shape.is_sequence:
            raise ShapeError(
                f"{node.op} {node.name}: {fmt_shape(shape)} is not a sequence (length x features), so it has "
                "no sequence axis",
                [f"name the axis by its number, 0 to {rank - 1}"],
                param=param,
                code="E0205",
            )
        return 0
    if not -rank <= value < rank:
        raise ShapeError(
            f"{node.op} {node.name}: axis {value} is not one of the {rank} axes of {fmt_shape(shape)} "
            f"(0 to {rank - 1}; below 0 counts from the end)",
            param=param,
            code="E0205",
        )
    return value % rank
