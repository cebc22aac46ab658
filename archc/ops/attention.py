"""Attention: `attention`, torch's nn.MultiheadAttention, and `sdpa`, the scaled dot-product core
that specs with projections of their own (GPT-2's packed `c_attn`, BERT's `query`/`key`/`value`)
put between `dense` layers.

Both read sequences: per-sample L x E tensors whose features are last (`Layout.channels` 1),
as `dense` leaves them and `permute: 1x0` makes them of an E x L map.

The counting convention (docs/language.md, section 12) is torch's flop counter's under the math
attention backend, where every matmul is counted: the projections are MACs as `dense` layers'
are, and so are the two products, Q·Kᵀ (L x S x E per sample) and weights·V (L x S x Ev); the
scaling, the mask and the softmax are element operations. The attention weights, H x L x S values
per sample, live only while the layer runs: its workspace, which the activation memory and the
peak count (archc/passes/memory.py).
"""

from __future__ import annotations

from ..codegen.pyexpr import Call, Index, call, flat, list_of, lit
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
)
from .emit import onnx_features, onnx_linear, zeros

# Element operations per attention weight at inference: the scaling, and the softmax's three (exp, its
# addition into the sum, the division); one more where a causal mask sets the future to -inf.
SCORE_OPS = 4
CAUSAL = {"causal": ("causal", True)}  # the bare word `causal`


def sequence(node, shape, index: int) -> tuple[int, int]:
    """(length, features) of the `index`-th input: an L x E sequence with its features last, else E0304."""
    if len(shape) == 2 and shape.channels == 1:
        return shape
    what = f"{node.op} {node.name}"
    src = node.inputs[index]
    if len(shape) == 2:
        raise ShapeError(
            f"{what} needs a sequence L x E with the features last, but {src} gives {fmt_shape(shape)} with "
            "the channels first",
            [f"`permute: 1x0` before it makes {src} a sequence of {shape[1]} tokens of {shape[0]} features"],
            code="E0304",
            proposals=[Proposal("permute", (1, 0), "1x0", "puts the features last")] if index == 0 else [],
        )
    if len(shape) == 1:
        hint = f"a vector is one token: `reshape: 1x{shape[0]}` makes it a sequence of one"
    else:
        tokens = prod(shape[1:])
        hint = (
            f"make the {fmt_shape(shape[1:])} positions tokens: `reshape: {shape[0]}x{tokens}` then "
            f"`permute: 1x0` gives {tokens}x{shape[0]} (a patch embedding)"
        )
    raise ShapeError(
        f"{what} needs a sequence L x E with the features last, but {src} gives {fmt_shape(shape)}",
        [hint],
        code="E0304",
    )


def check_heads(node, width: int, what_width: str) -> None:
    """E0303 when `heads` does not split the width into equal heads, with the nearest count that does."""
    heads = node.attrs["heads"]
    what = f"{node.op} {node.name}"
    proposals = []
    if heads >= 1 and width % heads:
        found = divisor_list(width) or []
        if found:
            best = min(found, key=lambda d: (abs(d - heads), d))
            says = f"splits the {width} features into heads of {width // best}"
            proposals = [Proposal("heads", best, f"heads={best}", says, instead=False)]
    message = f"{what}: heads={heads} does not divide the width {width} of {what_width}"
    check_divides(what, "heads", heads, width, message, proposals)


def check_dropout(node) -> None:
    p = node.attrs["dropout"]
    if not 0 <= p < 1:
        raise ShapeError(
            f"{node.op} {node.name}: dropout must be in [0, 1), not {p:g}",
            ["dropout is the probability of dropping an attention weight while training"],
            param="dropout",
            code="E0205",
        )


def weights(node) -> int:
    """The attention weights of one sample: heads x L x S."""
    return node.attrs["heads"] * node.geom["L"] * node.geom["S"]


def score_ops(node) -> int:
    """Element operations on the attention weights of one sample."""
    return (SCORE_OPS + int(node.attrs["causal"])) * weights(node)


def products(node) -> int:
    """MACs of Q·Kᵀ and of weights·V, per sample."""
    g = node.geom
    return g["L"] * g["S"] * (g["E"] + g["Ev"])


def options_text(node, parts: list[str]) -> str:
    a = node.attrs
    parts = [f"{a['heads']} head{'s' if a['heads'] > 1 else ''}", *parts]
    parts += ["causal"] * a["causal"] + ([f"dropout {a['dropout']:g}"] if a["dropout"] else [])
    return " ".join(parts)


def weights_saved(node, ctx, grads) -> tuple[Saved, ...]:
    """What the math backend's backward keeps of the attention itself (q, k and v being what it was given,
    `grads` whether each needs a gradient): the scaled query for k's gradient, the scaled, transposed key
    for q's, the weights (softmax's output) for their own gradient and v's, and, with dropout while
    training, the dropped weights and the mask (bools on the GPU, the scaled mask on the CPU)."""
    g = node.geom
    q_grad, k_grad, v_grad = grads
    saves = []
    if k_grad:
        saves.append(Saved.new(g["L"] * g["E"]))
    if q_grad:
        saves.append(Saved.new(g["S"] * g["E"]))
    count = weights(node)
    if q_grad or k_grad or v_grad:
        saves.append(Saved.new(count))
        if node.attrs["dropout"]:
            saves += [Saved.new(count), Saved.new(count, itemsize=1 if ctx.device == "cuda" else None)]
    return tuple(saves)


def onnx_heads(g, x: str, heads: int, perm: list[int]) -> str:
    """N x L x (heads*d) as N x heads x L x d (`perm` [0, 2, 1, 3]), or as N x heads x d x L ([0, 2, 3, 1])."""
    return g.op("Transpose", g.op("Reshape", x, g.const([0, 0, heads, -1])), perm=perm)


def onnx_attention(g, node, q: str, k: str, v: str) -> str:
    """softmax(q kᵀ / sqrt(d) + mask) v over the heads, as torch's math attention in eval mode: q, k and v
    projected already (N x L x E, N x S x E, N x S x Ev), the causal mask an additive constant (-inf above
    the diagonal, which torch's mask leaves out); the heads side by side again, N x L x Ev."""
    heads, geom = node.attrs["heads"], node.geom
    scores = g.op("MatMul", onnx_heads(g, q, heads, [0, 2, 1, 3]), onnx_heads(g, k, heads, [0, 2, 3, 1]))
    scores = g.op("Mul", scores, g.const((geom["E"] // heads) ** -0.5, "float32"))
    if node.attrs["causal"]:
        above = g.np.triu(g.np.ones((geom["L"], geom["S"]), dtype=bool), 1)
        scores = g.op("Add", scores, g.const(g.np.where(above, -g.np.inf, 0.0), "float32"))
    weighted = g.op("MatMul", g.op("Softmax", scores, axis=-1), onnx_heads(g, v, heads, [0, 2, 1, 3]))
    return g.op("Reshape", g.op("Transpose", weighted, perm=[0, 2, 1, 3]), g.const([0, 0, geom["Ev"]]))


def causal_mask(node, q: str):
    """torch's boolean mask of what a query may not see, True above the diagonal: L x S."""
    g = node.geom
    ones = call("torch.ones", g["L"], g["S"], dtype="torch.bool", device=f"{q}.device")
    return call(f"{flat(ones)}.triu", "1")


def train_call(self, node, state, args):
    """The kernel's `_forward`, which gives its output and what its backward takes: the inputs and
    the dropout mask of the weights."""
    forward = self.numpy_call(node, state, args)
    return Call(f"{forward.func}_forward", forward.args, forward.kwargs)


def causal(forward: Call) -> tuple:
    """The forward's `causal=` setting, the only one its backward shares."""
    return tuple((k, v) for k, v in forward.kwargs if k == "causal")


@register
class Attention(Op):
    name = "attention"
    doc = (
        "Multi-head attention as nn.MultiheadAttention (batch_first): self-attention on one L x E sequence, "
        "cross-attention on (query, memory) or (query, key, value); the output is L x E."
    )
    params = (
        P("heads", "int", positional=True, doc="number of heads; must divide the query's width E"),
        P("causal", "bool", False, doc="each query sees only the keys up to its own position"),
        P("bias", "bool", True, doc="the projections' biases (in_proj_bias, out_proj.bias)"),
        P("dropout", "float", 0.0, doc="probability of dropping an attention weight while training"),
    )
    symbols = CAUSAL
    min_inputs, max_inputs = 1, 3
    inner_kind = "dense"  # out_proj

    def infer(self, node, ins, warn):
        (length, width), *rest = [sequence(node, shape, i) for i, shape in enumerate(ins)]
        keys, kdim = rest[0] if rest else (length, width)
        values, vdim = rest[-1] if rest else (length, width)
        if keys != values:
            raise ShapeError(
                f"attention {node.name}: the key has {keys} tokens and the value {values}: "
                f"{node.inputs[1]} {fmt_shape(ins[1])}, {node.inputs[2]} {fmt_shape(ins[2])}",
                ["every key needs its value: give both the same length"],
                code="E0305",
            )
        check_heads(node, width, f"the query {node.inputs[0]} {fmt_shape(ins[0])}")
        check_dropout(node)
        query, key, value = self._qkv(node.inputs)
        packed = kdim == vdim == width  # one in_proj_weight, as torch keeps it; else q/k/v_proj_weight
        # the projections as torch computes them: one of 3E outputs when query, key and value are one
        # tensor, q apart and one of 2E when key and value are, else three
        if packed and query == key == value:
            storage = 3 * width * length
        elif packed and key == value:
            storage = 2 * width * keys
        else:
            storage = width * keys
        node.geom.update(L=length, S=keys, E=width, Ev=width, kdim=kdim, vdim=vdim, packed=packed, v_storage=storage)
        return (length, width)

    def count_params(self, node, ins, out):
        g = node.geom
        e = g["E"]
        return e * (2 * e + g["kdim"] + g["vdim"]) + (4 * e if node.attrs["bias"] else 0)

    def count_macs(self, node, ins, out):
        g = node.geom
        projections = g["E"] * (2 * g["L"] * g["E"] + g["S"] * (g["kdim"] + g["vdim"]))
        return projections + products(node)

    def count_elem_ops(self, node, ins, out):
        g = node.geom
        biases = 2 * g["E"] * (g["L"] + g["S"]) if node.attrs["bias"] else 0
        return biases + score_ops(node)

    def workspace(self, node, ins, out):
        return weights(node)

    def receptive(self, node, rfs):
        return None  # every query reads every position

    def training(self, node, ins, out, ctx):
        """The projections' inputs (each tensor once: torch projects a shared one in one matmul), the
        attention's tensors (`weights_saved`; every input of it needs a gradient, the projections having
        weights), the storage the value's projection lives in, and the out projection's input."""
        g = node.geom
        inputs = tuple(Saved.input(i) for i, src in enumerate(node.inputs) if src not in node.inputs[:i])
        v = Saved.new(g["v_storage"])
        return Training((*inputs, *weights_saved(node, ctx, (True,) * 3), v, Saved.new(g["L"] * g["E"])))

    def settings(self, node):
        return options_text(node, [] if node.attrs["bias"] else ["no bias"])

    def torch_layer(self, node, ins):
        a, g = node.attrs, node.geom
        return call(
            "nn.MultiheadAttention",
            g["E"],
            a["heads"],
            dropout=lit(float(a["dropout"])) if a["dropout"] else None,
            bias=None if a["bias"] else "False",
            kdim=None if g["kdim"] == g["E"] else g["kdim"],
            vdim=None if g["vdim"] == g["E"] else g["vdim"],
            batch_first="True",
        )

    def _qkv(self, args) -> list[str]:
        """Query, key and value among one, two (query, memory) or three inputs."""
        return [args[0], args[min(1, len(args) - 1)], args[-1]]

    def torch_call(self, node, module, args):
        q, k, v = self._qkv(args)
        mask = {"attn_mask": causal_mask(node, q), "is_causal": "True"} if node.attrs["causal"] else {}
        return Index(call(module, q, k, v, need_weights="False", **mask), "0")

    def _names(self, node) -> list[str]:
        """The arrays of torch's state_dict, in its order."""
        biases = int(node.attrs["bias"])
        arrays = ["in_proj_weight"] if node.geom["packed"] else ["q_proj_weight", "k_proj_weight", "v_proj_weight"]
        return [*arrays, *["in_proj_bias"] * biases, "out_proj.weight", *["out_proj.bias"] * biases]

    def numpy_state(self, node, ins, init):
        """torch's start: Xavier-uniform projections in, zero biases, the out projection's weight as
        nn.Linear's, unless the network's scheme starts linear layers otherwise."""
        g = node.geom
        e = g["E"]
        shapes = {
            "in_proj_weight": (3 * e, e),
            "q_proj_weight": (e, e),
            "k_proj_weight": (e, g["kdim"]),
            "v_proj_weight": (e, g["vdim"]),
            "in_proj_bias": (3 * e,),
            "out_proj.weight": (e, e),
            "out_proj.bias": (e,),
        }
        out = []
        for name in self._names(node):
            shape = shapes[name]
            if name == "out_proj.weight":  # an nn.Linear, which the scheme's loop may start otherwise
                value = init.inner(False, shape, shape, call("uniform_fan", "rng", lit(shape)))
            elif name == "out_proj.bias":
                value = init.inner(True, shape, (e, e), zeros(shape))
            elif name == "in_proj_bias":
                value = zeros(shape)
            else:
                value = call("xavier_uniform", "rng", lit(shape))
            out.append((name, value))
        return out

    def numpy_call(self, node, state, args):
        a = node.attrs
        if node.geom["packed"]:
            in_weights = state("in_proj_weight")
        else:
            in_weights = list_of([state(n) for n in ("q_proj_weight", "k_proj_weight", "v_proj_weight")])
        biases = (state("in_proj_bias"), state("out_proj.bias")) if a["bias"] else ("None", "None")
        return call(
            "multi_head_attention",
            *self._qkv(args),
            a["heads"],
            in_weights,
            biases[0],
            state("out_proj.weight"),
            biases[1],
            causal="True" if a["causal"] else None,
            p=lit(float(a["dropout"])) if a["dropout"] else None,
            training="self.training" if a["dropout"] else None,
            rng="self.rng" if a["dropout"] else None,
        )

    def onnx_call(self, node, g, args):
        """The projections of nn.MultiheadAttention (in_proj_weight's rows q, k, v, or three weights), the
        attention, the out projection; dropout is the identity in eval mode."""
        e, bias = node.geom["E"], node.attrs["bias"]
        if node.geom["packed"]:
            weights = [onnx_features(g, g.state("in_proj_weight"), i * e, (i + 1) * e, 0) for i in range(3)]
        else:
            weights = [g.state(f"{n}_proj_weight") for n in "qkv"]
        biases = [onnx_features(g, g.state("in_proj_bias"), i * e, (i + 1) * e, 0) if bias else None for i in range(3)]
        q, k, v = (onnx_linear(g, x, w, b) for x, w, b in zip(self._qkv(args), weights, biases))
        out = onnx_attention(g, node, q, k, v)
        return onnx_linear(g, out, g.state("out_proj.weight"), g.state("out_proj.bias") if bias else None)

    numpy_train_call = train_call

    def numpy_backward(self, node, state, grad, saved):
        """The inputs' gradients (one input's the sum of three), then the arrays', by torch's keys."""
        forward = self.numpy_call(node, state, ["_"] * len(node.inputs))
        backward = Call("multi_head_attention_backward", (grad, saved, *forward.args[3:]), causal(forward))
        names = self._names(node)
        weights = "in_proj_weight" if node.geom["packed"] else tuple(names[:3])
        bias = node.attrs["bias"]
        last = len(node.inputs) - 1
        biases = ("in_proj_bias", "out_proj.bias") if bias else (None, None)
        returns = (0, min(1, last), last, weights, biases[0], "out_proj.weight", biases[1])
        return Backward(backward, returns)


def _heads_of(x: str, heads: int) -> str:
    """`x` split into heads for F.scaled_dot_product_attention: N x H x L x d (a view)."""
    return f"{x}.unflatten(-1, ({heads}, -1)).transpose(1, 2)"


@register
class ScaledDotProduct(Op):
    name = "sdpa"
    doc = (
        "Scaled dot-product attention over `heads` heads, as F.scaled_dot_product_attention, between "
        "projections the spec writes as `dense` layers: on (q, k, v), on (q, kv) with key and value side by "
        "side in one input, or on one input with q, k and v side by side (GPT-2's c_attn); no parameters."
    )
    params = (
        P("heads", "int", positional=True, doc="number of heads; must divide the widths of q and v"),
        P("causal", "bool", False, doc="each query sees only the keys up to its own position"),
        P("dropout", "float", 0.0, doc="probability of dropping an attention weight while training"),
    )
    symbols = CAUSAL
    min_inputs, max_inputs = 1, 3

    def infer(self, node, ins, warn):
        seqs = [sequence(node, shape, i) for i, shape in enumerate(ins)]
        packed = 4 - len(ins)  # how many of q, k and v the last input holds side by side
        length, width = seqs[0]
        what = f"sdpa {node.name}"
        if packed == 3:
            if width % 3:
                raise ShapeError(
                    f"{what}: one input holds q, k and v side by side, 3 x E features, but "
                    f"{node.inputs[0]} {fmt_shape(ins[0])} has {width}",
                    [
                        "project to 3 x E features (GPT-2's c_attn: `dense: 2304` for E = 768), or give q, k and v "
                        "as three inputs"
                    ],
                    code="E0303",
                )
            width = width // 3
            keys, kdim, vdim = length, width, width
        elif packed == 2:
            keys, both = seqs[1]
            if both != 2 * width:
                raise ShapeError(
                    f"{what}: (q, kv) needs kv with key and value side by side, 2 x {width} features for q's "
                    f"{width}, but {node.inputs[1]} {fmt_shape(ins[1])} has {both}",
                    [f"project kv to {2 * width} features, or give q, k and v as three inputs"],
                    code="E0305",
                )
            kdim = vdim = width
        else:
            (keys, kdim), (values, vdim) = seqs[1], seqs[2]
            if kdim != width or keys != values:
                raise ShapeError(
                    f"{what}: the key needs the query's width and the value's length: "
                    + ", ".join(f"{src} {fmt_shape(shape)}" for src, shape in zip(node.inputs, ins)),
                    [f"give k {width} features (q's) and v as many tokens as k ({keys})"],
                    code="E0305",
                )
        whose = "each of q, k and v in" if packed == 3 else "the query"
        check_heads(node, width, f"{whose} {node.inputs[0]} {fmt_shape(ins[0])}")
        if vdim != width:
            check_heads(node, vdim, f"the value {node.inputs[2]} {fmt_shape(ins[2])}")
        check_dropout(node)
        node.geom.update(L=length, S=keys, E=width, Ev=vdim, packed=packed)
        return (length, vdim)

    def count_macs(self, node, ins, out):
        return products(node)

    def count_elem_ops(self, node, ins, out):
        return score_ops(node)

    def workspace(self, node, ins, out):
        return weights(node)

    def receptive(self, node, rfs):
        return None  # every query reads every position

    def training(self, node, ins, out, ctx):
        """`weights_saved`, and the value as the second product reads it: its heads copied into a
        tensor of their own, unless they are a view of the input already (one head, or one token)."""
        g = node.geom
        last = len(node.inputs) - 1
        grads = [ctx.grads[min(i, last)] for i in range(3)]
        saves = weights_saved(node, ctx, grads)
        if grads[0] or grads[1]:
            viewed = node.attrs["heads"] == 1 or g["S"] == 1
            saves += (Saved.input(last) if viewed else Saved.new(g["S"] * g["Ev"]),)
        return Training(saves)

    def settings(self, node):
        return options_text(node, [])

    def torch_call(self, node, module, args):
        a, heads = node.attrs, node.attrs["heads"]
        packed, e = node.geom["packed"], node.geom["E"]
        # the tensors one input holds side by side, as slices of its features (views; an unpacking `*`
        # of one split would be shorter, but TorchScript takes no `*` in a call)
        last = [f"{args[-1]}[..., {i * e}:{(i + 1) * e}]" for i in range(packed)] if packed > 1 else args[-1:]
        qkv = [_heads_of(x, heads) for x in [*args[:-1], *last]]
        options = {
            "dropout_p": f"{float(a['dropout'])!r} if self.training else 0.0" if a["dropout"] else None,
            "is_causal": "True" if a["causal"] else None,
        }
        heads_out = call("torch.transpose", call("F.scaled_dot_product_attention", *qkv, **options), "1", "2")
        return call("torch.flatten", heads_out, "2")

    def numpy_call(self, node, state, args):
        a, packed = node.attrs, node.geom["packed"]
        qkv = [*args[:-1], args[-1] if packed == 1 else f"*np.split({args[-1]}, {packed}, axis=-1)"]
        return call(
            "scaled_dot_product_attention",
            *qkv,
            a["heads"],
            causal="True" if a["causal"] else None,
            p=lit(float(a["dropout"])) if a["dropout"] else None,
            training="self.training" if a["dropout"] else None,
            rng="self.rng" if a["dropout"] else None,
        )

    def onnx_call(self, node, g, args):
        """q, k and v unpacked from the last input (Slice of its features, E each), then the attention."""
        packed, e = node.geom["packed"], node.geom["E"]
        last = [onnx_features(g, args[-1], i * e, (i + 1) * e, -1) for i in range(packed)] if packed > 1 else args[-1:]
        return onnx_attention(g, node, *args[:-1], *last)

    numpy_train_call = train_call

    def numpy_backward(self, node, state, grad, saved):
        """q's, k's and v's gradients, those one input holds side by side side by side too."""
        packed = node.geom["packed"]
        backward = call(
            "scaled_dot_product_attention_backward",
            grad,
            saved,
            node.attrs["heads"],
            causal="True" if node.attrs["causal"] else None,
            packed=packed if packed > 1 else None,
        )
        return Backward(backward, tuple(range(len(node.inputs))))
