"""Normalisation: batch, layer, group and instance norm, and local response normalisation.

The norms other than `lrn` share torch's rules: `eps > 0`, a learned per-channel
(or per-value) `weight` and `bias`, and, where there are running statistics,
`momentum` in [0, 1]. None of them counts MACs (torch's flop counter counts
none), and each keeps every position's receptive field, as batch norm does.

Their element operations at inference (docs/language.md, section 12): a norm
with running statistics is an affine map per channel, `x * a + b` with `a` and
`b` folded from the statistics and the weights, 2 per value; one that takes
the statistics of each sample also computes them, 4 per value (the sums of the
values and of their squares, the subtraction of the mean, the division by the
deviation), and 1 more per learned array it applies (weight, bias).
"""

from __future__ import annotations

from ..codegen.pyexpr import call, lit
from .base import (
    Backward,
    Op,
    P,
    Proposal,
    Saved,
    ShapeError,
    Training,
    check_divides,
    divisor_list,
    fmt_shape,
    prod,
    register,
    spatial_dims,
)
from .emit import mirror, ones, zeros

TORCH_EPS = 1e-5  # the eps of every torch norm by default


def check_eps(node) -> None:
    """E0205 for eps <= 0 (or NaN): the variance is divided by sqrt(var + eps), which may then be 0."""
    eps = node.attrs["eps"]
    if not eps > 0:
        raise ShapeError(
            f"{node.op} {node.name}: eps must be positive, not {eps:g}",
            ["eps keeps the division by sqrt(variance + eps) away from zero"],
            param="eps",
            code="E0205",
            proposals=[Proposal("eps", TORCH_EPS, "eps=1e-5", "is torch's default", instead=False)],
        )


def check_momentum(node) -> None:
    if not 0 <= node.attrs["momentum"] <= 1:
        raise ShapeError(f"{node.op} {node.name}: momentum must be between 0 and 1", param="momentum", code="E0205")


def affine_names(attrs) -> list[str]:
    """The learned arrays of a norm, in torch's order: `weight` and `bias`, as `affine` and `bias` keep them."""
    if not attrs["affine"]:
        return []
    return ["weight", "bias"] if attrs["bias"] else ["weight"]


def affine_state(shape, attrs) -> list:
    """The learned arrays as torch initialises them: weights of one, biases of zero."""
    return [(name, ones(shape) if name == "weight" else zeros(shape)) for name in affine_names(attrs)]


def affine_args(state, attrs) -> list:
    """The NumPy kernel's `weight, bias` arguments: those the norm has."""
    return [state(name) for name in affine_names(attrs)]


def affine_backward(op, node, state, grad, saved) -> Backward:
    """The norm kernel's backward: (dx, dweight, dbias), None for what the norm does not learn; the
    momentum of the running statistics is the forward's alone."""
    names = affine_names(node.attrs)
    forward = op.numpy_call(node, state, [saved])
    return Backward(mirror(forward, grad, saved, drop=("momentum",)), (0, *names, *[None] * (2 - len(names))))


RUNNING = ("running_mean", "running_var", "num_batches_tracked")  # buffers: no gradient, no update


def affine_count(size: int, attrs) -> int:
    return size * len(affine_names(attrs))


FOLDED = 2  # element operations per value of a norm with running statistics: x * a + b
STATISTICS = 4  # per value of a norm that computes each sample's mean and variance, before its weights


def sample_norm_ops(out, attrs) -> int:
    """Element operations of a norm over each sample's own statistics, and its learned arrays."""
    return (STATISTICS + len(affine_names(attrs))) * prod(out)


def onnx_affine(g, node, shape) -> tuple[str, str]:
    """The scale and bias ONNX's norms take (neither is optional in all of them): the layer's
    weight and bias, or ones and zeros where it learns none."""
    names = affine_names(node.attrs)
    scale = g.state("weight") if names else g.filled(shape, 1.0)
    bias = g.state("bias") if "bias" in names else g.filled(shape, 0.0)
    return scale, bias


def onnx_running(g, node, x, scale, bias) -> str:
    """Normalisation by the running statistics, at inference: ONNX's BatchNormalization, whose
    momentum weights the old average (torch's weights the new batch)."""
    a = node.attrs
    return g.op(
        "BatchNormalization",
        x,
        scale,
        bias,
        g.state("running_mean"),
        g.state("running_var"),
        epsilon=float(a["eps"]),
        momentum=1.0 - float(a["momentum"]),
    )


def bias_option(attrs):
    """torch's `bias=False`, where the norm has a weight and no bias."""
    return "False" if attrs["affine"] and not attrs["bias"] else None


def eps_option(attrs):
    return None if attrs["eps"] == TORCH_EPS else lit(attrs["eps"])


def common_settings(attrs, parts: list[str]) -> str:
    """The settings phrase: the norm's own `parts`, then eps and the missing weights, where not torch's default."""
    if attrs["eps"] != TORCH_EPS:
        parts.append(f"eps {attrs['eps']:g}")
    if "affine" in attrs and not attrs["affine"]:
        parts.append("no affine")
    elif not attrs.get("bias", True):
        parts.append("no bias")
    return " ".join(parts)


@register
class BatchNorm(Op):
    name = "bn"
    doc = "Batch normalisation over the channel axis (1-D, 2-D or 3-D by input rank)."
    params = (
        P("eps", "float", 1e-5),
        P("momentum", "float", 0.1, doc="weight of the new batch in the running averages (PyTorch's convention)"),
    )

    def infer(self, node, ins, warn):
        check_momentum(node)
        check_eps(node)
        return ins[0]

    def count_params(self, node, ins, out):
        return 2 * ins[0][0]  # gamma and beta

    def count_buffers(self, node, ins, out):
        return 2 * ins[0][0]  # running mean and variance

    def count_elem_ops(self, node, ins, out):
        return FOLDED * prod(out)

    def training(self, node, ins, out, ctx):
        """Its input, and the batch's mean and inverse deviation per channel (the same whatever the batch)."""
        stats = Saved.new(ins[0][0], per_sample=False)
        return Training((Saved.input(), stats, stats))

    def settings(self, node):
        return common_settings(node.attrs, [])

    def _options(self, node):
        a = node.attrs
        return {
            "momentum": None if a["momentum"] == 0.1 else lit(a["momentum"]),
            "eps": None if a["eps"] == 1e-5 else lit(a["eps"]),
        }

    def torch_layer(self, node, ins):
        nd = max(len(ins[0]) - 1, 1)  # a vector (C) and C x L both take BatchNorm1d
        options = self._options(node)
        return call(f"nn.BatchNorm{nd}d", ins[0][0], eps=options["eps"], momentum=options["momentum"])

    def numpy_state(self, node, ins, init):
        c = (ins[0][0],)
        return [
            ("weight", ones(c)),
            ("bias", zeros(c)),
            ("running_mean", zeros(c)),
            ("running_var", ones(c)),
            ("num_batches_tracked", call("np.zeros", "()", "np.int64")),
        ]

    numpy_buffers = RUNNING

    def numpy_call(self, node, state, args):
        return call("batch_norm", args[0], "s", lit(state.key), "self.training", **self._options(node))

    def onnx_call(self, node, g, args):
        return onnx_running(g, node, args[0], g.state("weight"), g.state("bias"))

    def numpy_backward(self, node, state, grad, saved):
        forward = self.numpy_call(node, state, [saved])
        return Backward(mirror(forward, grad, saved, drop=("momentum",)), (0, "weight", "bias"))


@register
class LocalResponseNorm(Op):
    name = "lrn"
    doc = "Local response normalisation across `size` neighbouring channels (AlexNet)."
    params = (
        P("size", "int", positional=True, doc="channels in the normalisation window"),
        P("alpha", "float", 1e-4),
        P("beta", "float", 0.75),
        P("k", "float", 1.0),
    )

    def infer(self, node, ins, warn):
        if len(ins[0]) < 2:
            raise ShapeError(f"lrn {node.name}: needs a C x ... input with spatial dimensions, not a vector")
        if node.attrs["size"] < 1:
            raise ShapeError(f"lrn {node.name}: size must be at least 1", param="size", code="E0205")
        return ins[0]

    def count_elem_ops(self, node, ins, out):
        """Per value: its square, size - 1 additions of the window's squares, the average's division,
        the scale and shift by alpha and k, the power, the division of the input: size + 5."""
        return (node.attrs["size"] + 5) * prod(out)

    def training(self, node, ins, out, ctx):
        """torch's local_response_norm is composite: the input (squared and divided by), the squares
        padded over the channels (avg_pool's input), the scaled sum (pow's base) and the divisor."""
        channels, *spatial = ins[0]
        padded = Saved.new((channels + node.attrs["size"] - 1) * prod(spatial))
        return Training((Saved.input(), padded, Saved.new(prod(out)), Saved.new(prod(out))))

    def settings(self, node):
        return f"size {node.attrs['size']}"

    def _options(self, node):
        defaults = {"alpha": 1e-4, "beta": 0.75, "k": 1.0}
        return {k: None if node.attrs[k] == v else lit(float(node.attrs[k])) for k, v in defaults.items()}

    def torch_layer(self, node, ins):
        return call("nn.LocalResponseNorm", node.attrs["size"], **self._options(node))

    def numpy_call(self, node, state, args):
        return call("local_response_norm", args[0], node.attrs["size"], **self._options(node))

    def onnx_call(self, node, g, args):
        """ONNX's LRN sums the squares of channels c - (size-1)//2 to c + size//2, torch's of c - size//2
        to c + (size-1)//2: the same window for an odd size, and onnxruntime runs it on images only.
        Otherwise torch's way: the squares padded over the channels and averaged by a size x 1
        window, then scaled."""
        a, x = node.attrs, args[0]
        size, alpha, beta, k = a["size"], float(a["alpha"]), float(a["beta"]), float(a["k"])
        if size % 2 and len(node.shape) == 3:
            return g.op("LRN", x, size=size, alpha=alpha, beta=beta, bias=k)
        rows = g.op("Reshape", g.op("Mul", x, x), g.const([0, 1, node.shape[0], -1]))
        padded = g.op("Pad", rows, g.const([0, 0, size // 2, 0, 0, 0, (size - 1) // 2, 0]))
        mean = g.op("AveragePool", padded, kernel_shape=[size, 1])
        mean = g.op("Reshape", mean, g.const(g.shape_of(node)))
        scaled = g.op("Add", g.op("Mul", mean, g.const(alpha, "float32")), g.const(k, "float32"))
        return g.op("Div", x, g.op("Pow", scaled, g.const(beta, "float32")))


AFFINE = (
    P("affine", "bool", True, doc="learn a weight (scale) and a bias (shift); torch's elementwise_affine / affine"),
    P("bias", "bool", True, doc="with affine: learn the bias too"),
)


@register
class LayerNorm(Op):
    name = "layernorm"
    doc = (
        "Layer normalisation of each sample: over the channels at every position (ConvNeXt's LayerNorm2d), "
        "or over the last `over` dimensions (nn.LayerNorm(shape[-over:]))."
    )
    params = (
        P(
            "over",
            "int",
            "channels",
            positional=True,
            choices=("channels",),
            doc="`channels`, or the last N dimensions",
        ),
        P("eps", "float", TORCH_EPS),
        *AFFINE,
    )

    def infer(self, node, ins, warn):
        shape, over = ins[0], node.attrs["over"]
        if over != "channels":
            if over < 1:
                raise ShapeError(
                    f"layernorm {node.name}: over must be at least 1 (a number of dimensions), not {over}",
                    param="over",
                    code="E0205",
                )
            if over > len(shape):
                raise ShapeError(
                    f"layernorm {node.name}: cannot normalise over the last {over} dimensions of "
                    f"{fmt_shape(shape)}, which has {len(shape)}",
                    [f"over takes 1 to {len(shape)} (the last dimensions of {fmt_shape(shape)}), or `channels`"],
                    param="over",
                    code="E0301",
                    proposals=[
                        Proposal("over", len(shape), f"over={len(shape)}", "normalises each sample as a whole"),
                        Proposal("over", "channels", "over=channels", "normalises the channels at every position"),
                    ],
                )
        check_eps(node)
        rank = len(shape)
        # of (N, *shape); the channels wherever they are: the features of a sequence are last
        axes = (shape.channels + 1,) if over == "channels" else tuple(range(rank + 1 - over, rank + 1))
        node.geom.update(axes=axes, normalized=tuple(shape[a - 1] for a in axes))
        return shape

    def count_params(self, node, ins, out):
        return affine_count(prod(node.geom["normalized"]), node.attrs)

    def count_elem_ops(self, node, ins, out):
        return sample_norm_ops(out, node.attrs)

    def training(self, node, ins, out, ctx):
        """Its input (a contiguous copy when the channels are moved last), and a mean and an inverse
        deviation per normalised group of values."""
        groups = prod(out) // prod(node.geom["normalized"])
        source = Saved.input() if self._last(node) else Saved.new(prod(out))
        return Training((source, Saved.new(groups), Saved.new(groups)))

    def settings(self, node):
        g = node.geom
        over = "C" if g["axes"] == (node.shape.channels + 1,) else fmt_shape(g["normalized"])
        return common_settings(node.attrs, [f"over {over}"])

    def _last(self, node) -> bool:
        """Whether the normalised axes are the last ones, as nn.LayerNorm takes them."""
        return node.geom["axes"][-1] == len(node.shape)

    def torch_layer(self, node, ins):
        a, normalized = node.attrs, node.geom["normalized"]
        return call(
            "nn.LayerNorm",
            normalized[0] if len(normalized) == 1 else lit(normalized),
            eps=eps_option(a),
            elementwise_affine=None if a["affine"] else "False",
            bias=bias_option(a),
        )

    def torch_call(self, node, module, args):
        if self._last(node):
            return call(module, args[0])
        # the channels at every position: moved last and back, as torchvision's LayerNorm2d permutes them
        return call("torch.movedim", call(module, call("torch.movedim", args[0], "1", "-1")), "-1", "1")

    def numpy_state(self, node, ins, init):
        return affine_state(node.geom["normalized"], node.attrs)

    def numpy_call(self, node, state, args):
        axes = lit(node.geom["axes"])
        return call("layer_norm", args[0], axes, *affine_args(state, node.attrs), eps=eps_option(node.attrs))

    def onnx_call(self, node, g, args):
        """LayerNormalization over the last axes; the channels at every position are moved last and back."""
        normalized = node.geom["normalized"]
        scale, bias = onnx_affine(g, node, normalized)
        bias = bias if "bias" in affine_names(node.attrs) else None
        eps = float(node.attrs["eps"])
        if self._last(node):
            return g.op("LayerNormalization", args[0], scale, bias, axis=node.geom["axes"][0], epsilon=eps)
        rank = len(node.shape) + 1
        last = g.op("Transpose", args[0], perm=[0, *range(2, rank), 1])
        out = g.op("LayerNormalization", last, scale, bias, axis=-1, epsilon=eps)
        return g.op("Transpose", out, perm=[0, rank - 1, *range(1, rank - 1)])

    def numpy_backward(self, node, state, grad, saved):
        return affine_backward(self, node, state, grad, saved)


def _groups_for(channels: int, values: int, wanted: int) -> list[Proposal]:
    """`groups=` the divisor of `channels` nearest `wanted` that leaves more than one of the
    sample's `values` to each group; none when there is none (or too many to list)."""
    found = [d for d in divisor_list(channels) or () if values // d > 1]
    if not found:
        return []
    best = min(found, key=lambda d: (abs(d - wanted), d))
    return [Proposal("groups", best, f"groups={best}", f"divides the {channels} channels", instead=False)]


@register
class GroupNorm(Op):
    name = "groupnorm"
    doc = (
        "Group normalisation: each sample's channels in `groups` equal groups, each normalised over its "
        "channels and positions."
    )
    params = (
        P("groups", "int", positional=True, doc="number of channel groups; must divide the channels"),
        P("eps", "float", TORCH_EPS),
        *AFFINE,
    )

    def infer(self, node, ins, warn):
        shape, groups = ins[0], node.attrs["groups"]
        what = f"groupnorm {node.name}"
        channels, values = shape[0], prod(shape)
        proposals = _groups_for(channels, values, groups) if groups >= 1 and channels % groups else ()
        message = f"{what}: groups={groups} does not divide the {channels} channels"
        check_divides(what, "groups", groups, channels, message, proposals)
        if values // groups == 1:
            raise ShapeError(
                f"{what}: {groups} groups of {fmt_shape(shape)} hold one value each, which normalises to 0 "
                "whatever the input (torch refuses it)",
                ["use fewer groups, or normalise before the map shrinks to one value a channel"],
                param="groups",
                code="E0205",
                proposals=_groups_for(channels, values, groups),
            )
        check_eps(node)
        return shape

    def count_params(self, node, ins, out):
        return affine_count(ins[0][0], node.attrs)

    def count_elem_ops(self, node, ins, out):
        return sample_norm_ops(out, node.attrs)

    def training(self, node, ins, out, ctx):
        """Its input, and a mean and an inverse deviation per group."""
        groups = node.attrs["groups"]
        return Training((Saved.input(), Saved.new(groups), Saved.new(groups)))

    def settings(self, node):
        return common_settings(node.attrs, [f"{node.attrs['groups']} groups"])

    def torch_layer(self, node, ins):
        a = node.attrs
        return call(
            "nn.GroupNorm",
            a["groups"],
            ins[0][0],
            eps=eps_option(a),
            affine=None if a["affine"] else "False",
            bias=bias_option(a),
        )

    def numpy_state(self, node, ins, init):
        return affine_state((ins[0][0],), node.attrs)

    def numpy_call(self, node, state, args):
        a = node.attrs
        return call("group_norm", args[0], a["groups"], *affine_args(state, a), eps=eps_option(a))

    def onnx_call(self, node, g, args):
        """Instance normalisation of the groups, each one's values in a row, then the weights per channel:
        ONNX's GroupNormalization has no shape inference, and onnxruntime computes its variance as
        E[x^2] - E[x]^2, which loses the digits of a group whose values barely differ."""
        a, shape = node.attrs, node.shape
        groups = g.op("Reshape", args[0], g.const([0, a["groups"], -1]))
        unit = g.filled((a["groups"],), 1.0), g.filled((a["groups"],), 0.0)
        normal = g.op("InstanceNormalization", groups, *unit, epsilon=float(a["eps"]))
        out = g.op("Reshape", normal, g.const(g.shape_of(node)))
        per_channel = g.const([shape[0], *(1,) * (len(shape) - 1)])
        for name in affine_names(a):
            out = g.op("Mul" if name == "weight" else "Add", out, g.op("Reshape", g.state(name), per_channel))
        return out

    def numpy_backward(self, node, state, grad, saved):
        return affine_backward(self, node, state, grad, saved)


@register
class InstanceNorm(Op):
    name = "instancenorm"
    doc = (
        "Instance normalisation: each channel of each sample over its positions "
        "(1-D, 2-D or 3-D by input rank); torch's defaults: no weights, no running statistics."
    )
    params = (
        P("eps", "float", TORCH_EPS),
        P("momentum", "float", 0.1, doc="weight of the new batch in the running averages (with track)"),
        P("affine", "bool", False, doc="learn a per-channel weight and bias"),
        P("bias", "bool", True, doc="with affine: learn the bias too"),
        P("track", "bool", False, doc="keep running statistics and use them at inference (track_running_stats)"),
    )

    def infer(self, node, ins, warn):
        shape = ins[0]
        spatial_dims(node, shape, f"instancenorm {node.name}")
        if prod(shape[1:]) == 1:
            raise ShapeError(
                f"instancenorm {node.name}: each channel of {fmt_shape(shape)} has one position, which "
                "normalises to 0 whatever the input (torch refuses it)",
                ["normalise before the map shrinks to one position"],
                code="E0205",
            )
        check_momentum(node)
        check_eps(node)
        return shape

    def count_params(self, node, ins, out):
        return affine_count(ins[0][0], node.attrs)

    def count_buffers(self, node, ins, out):
        return 2 * ins[0][0] if node.attrs["track"] else 0  # running mean and variance

    def count_elem_ops(self, node, ins, out):
        """With running statistics, used at inference: the folded affine map, as batch norm."""
        return FOLDED * prod(out) if node.attrs["track"] else sample_norm_ops(out, node.attrs)

    def training(self, node, ins, out, ctx):
        """torch's instance_norm is batch norm over the batch's channels as one sample's: it keeps the
        input, a mean and an inverse deviation per channel of each sample, and the per-sample copies
        (`repeat`) of the weight and of the running statistics that it passes to batch norm."""
        a = node.attrs
        copies = 2 + int(a["affine"]) + 2 * int(a["track"])
        return Training((Saved.input(), *(Saved.new(ins[0][0]),) * copies))

    def settings(self, node):
        a = node.attrs
        parts = (["affine"] if a["affine"] else []) + (["running stats"] if a["track"] else [])
        if a["affine"] and not a["bias"]:
            parts.append("no bias")
        return " ".join(parts + ([f"eps {a['eps']:g}"] if a["eps"] != TORCH_EPS else []))

    def torch_layer(self, node, ins):
        a = node.attrs
        return call(
            f"nn.InstanceNorm{len(ins[0]) - 1}d",
            ins[0][0],
            eps=eps_option(a),
            momentum=None if a["momentum"] == 0.1 else lit(a["momentum"]),
            affine="True" if a["affine"] else None,
            track_running_stats="True" if a["track"] else None,
            bias=bias_option(a),
        )

    def numpy_state(self, node, ins, init):
        c = (ins[0][0],)
        state = affine_state(c, node.attrs)
        if node.attrs["track"]:
            state += [
                ("running_mean", zeros(c)),
                ("running_var", ones(c)),
                ("num_batches_tracked", call("np.zeros", "()", "np.int64")),
            ]
        return state

    def numpy_call(self, node, state, args):
        a = node.attrs
        running = {}
        if a["track"]:  # used at inference, updated in training
            running = {"running_mean": state("running_mean"), "running_var": state("running_var")}
            running.update(training="self.training", momentum=None if a["momentum"] == 0.1 else lit(a["momentum"]))
        return call("instance_norm", args[0], *affine_args(state, a), **running, eps=eps_option(a))

    def onnx_call(self, node, g, args):
        """Each sample's statistics; with `track`, the running ones, used at inference as batch norm uses them."""
        scale, bias = onnx_affine(g, node, (node.shape[0],))
        if node.attrs["track"]:
            return onnx_running(g, node, args[0], scale, bias)
        return g.op("InstanceNormalization", args[0], scale, bias, epsilon=float(node.attrs["eps"]))

    numpy_buffers = RUNNING

    def numpy_backward(self, node, state, grad, saved):
        return affine_backward(self, node, state, grad, saved)
