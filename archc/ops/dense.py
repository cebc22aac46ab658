"""Fully connected layer, applied along the last axis as torch's nn.Linear is."""

from __future__ import annotations

from ..codegen.pyexpr import Seq, Sum, call, flat, lit
from .base import Op, P, Proposal, Saved, ShapeError, Training, bias_adds, fmt_shape, prod, register
from .conv import weighted_backward

TRANSPOSED = {"transposed": ("transposed", True)}  # the bare word `transposed`


def _uniform(shape, bound: str):
    """torch.empty(*shape).uniform_(-bound, bound)."""
    return call(f"{flat(call('torch.empty', *shape))}.uniform_", f"-{bound}", bound)


@register
class Dense(Op):
    name = "dense"
    doc = (
        "Fully connected layer: every output unit sees every input feature. On a vector, or at every "
        "position of a map whose features are last (after `permute`), as nn.Linear."
    )
    init_kind = "dense"
    symbols = TRANSPOSED
    params = (
        P("units", "int", positional=True, doc="number of output units"),
        P("bias", "bool", True),
        P("in", "int", None, doc="the input size you expect, as in nn.Linear(in, out); checked (E0218)"),
        P(
            "tied",
            "layer",
            None,
            doc="a layer above whose weight this one uses as its own (GPT-2's lm_head, tied=transformer.wte)",
        ),
        P("transposed", "bool", False, doc="the weight stored in x units, as Hugging Face's Conv1D (GPT-2) keeps it"),
    )

    def infer(self, node, ins, warn):
        shape = ins[0]
        if shape.channels != len(shape) - 1:
            raise self._not_flat(node, shape)
        if node.attrs["units"] < 1:
            raise ShapeError(f"dense {node.name}: units must be at least 1", param="units", code="E0205")
        expected = node.attrs["in"]
        if expected is not None and expected != shape[-1]:
            # the shapes pass rewrites this with the layer the size came from and what would fix it
            raise ShapeError(f"dense {node.name} expects {expected} inputs, but gets {shape[-1]}", code="E0218")
        node.geom["in"] = shape[-1]
        return (*shape[:-1], node.attrs["units"])

    def _not_flat(self, node, shape) -> ShapeError:
        """E0304 for a map whose channels are not last: a `dense` on a conv map almost always
        lacks its `flatten`; a `permute` that puts the channels last applies it at every position."""
        order = tuple(i for i in range(len(shape)) if i != shape.channels) + (shape.channels,)
        return ShapeError(
            f"dense {node.name} needs a flat input or the channels last, but gets {fmt_shape(shape)} with "
            + ("the channels first" if shape.channels == 0 else f"the channels on axis {shape.channels}"),
            [
                f"insert `flatten` before it (it would give {prod(shape)} inputs)",
                f"or, to apply it at every position, `permute: {fmt_shape(order)}` before it puts the channels last",
            ],
            code="E0304",
            proposals=[
                Proposal("flatten", None, "", f"gives it {prod(shape)} inputs"),
                Proposal("permute", order, fmt_shape(order), "puts the channels last and applies it at every position"),
            ],
        )

    def channels(self, node, ins, out):
        return len(out) - 1  # the units, at every position

    def count_params(self, node, ins, out):
        """The weight once, where it is defined: a tied layer counts only its bias."""
        weight = 0 if node.attrs["tied"] else ins[0][-1] * out[-1]
        return weight + (out[-1] if node.attrs["bias"] else 0)

    def tied_shape(self, node):
        shape = (node.attrs["units"], node.geom["in"])
        return shape[::-1] if node.attrs["transposed"] else shape

    def check_tie(self, node, target, have):
        """E0308 for a weight of another shape than `have`, the weight of `target` it is tied to; where only
        the units differ, the units that fit."""
        want = self.tied_shape(node)
        if want == have:
            return
        axis = int(node.attrs["transposed"])  # of the units in the weight: in x units when transposed
        units, features = have[axis], have[1 - axis]
        layout = "input features x units" if axis else "units x input features"
        if features == node.geom["in"]:
            says = f"gives it the {fmt_shape(have)} weight of {target.name}"
            help_ = [f"give it {units} units, the {layout.split(' x ')[axis]} of {target.name}'s weight"]
            proposals = [Proposal("units", units, f"units={units}", says)]
        else:
            help_ = [f"its input needs {features} features for {target.name}'s weight, not {node.geom['in']}"]
            proposals = []
        raise ShapeError(
            f"dense {node.name} is tied to {target.op} {target.name}, whose weight is {fmt_shape(have)}, but "
            f"needs a weight of {fmt_shape(want)} ({layout})",
            help_,
            param="tied",
            code="E0308",
            proposals=proposals,
        )

    def training(self, node, ins, out, ctx):
        return Training((Saved.input(),))  # for the weight's gradient

    def count_macs(self, node, ins, out):
        return prod(ins[0]) * out[-1]  # in * out at every position

    def count_elem_ops(self, node, ins, out):
        return bias_adds(node, out)

    def receptive(self, node, rfs):
        """Each output reads its own position: the input's field (none on a vector, nor after the
        `permute` that put the features last, which tracks none)."""
        return rfs[0]

    def settings(self, node):
        a = node.attrs
        words = ["" if a["bias"] else " no bias", " transposed" if a["transposed"] else "", f" tied {a['tied']}"]
        return str(a["units"]) + "".join(words[: 2 + bool(a["tied"])])

    def torch_layer(self, node, ins):
        units, features = node.attrs["units"], ins[0][-1]
        if not node.attrs["transposed"]:
            return call("nn.Linear", features, units, bias=None if node.attrs["bias"] else "False")
        # Hugging Face's Conv1D holds its weight in x units; torch has no module that does, so the two
        # parameters in a ParameterDict, under the same keys, started as nn.Linear starts them
        bound = lit(features**-0.5)
        arrays = [("weight", (features, units)), *([("bias", (units,))] if node.attrs["bias"] else [])]
        # (key, value) pairs: from a dict, ParameterDict would sort the keys (bias before weight)
        drawn = [Seq("(", ")", (lit(k), call("nn.Parameter", _uniform(shape, bound)))) for k, shape in arrays]
        return call("nn.ParameterDict", Seq("[", "]", tuple(drawn)))

    def torch_sequential(self, node, ins):
        return None if node.attrs["transposed"] else self.torch_layer(node, ins)

    def torch_call(self, node, module, args):
        if not node.attrs["transposed"]:
            return call(module, args[0])
        product = call("torch.matmul", args[0], f"{module}.weight")
        return Sum((product, f"{module}.bias")) if node.attrs["bias"] else product

    def numpy_state(self, node, ins, init):
        units = node.attrs["units"]
        shape = (units, ins[0][-1])
        if node.attrs["transposed"]:  # nn.Linear's default start, in x units (the PyTorch target's)
            weight = call("np.ascontiguousarray", f"{flat(call('uniform_fan', 'rng', lit(shape)))}.T")
            bias = call("uniform_bias", "rng", units, lit(shape))
        else:
            weight, bias = init.weight(shape), init.bias(units, shape)
        weight = [] if node.attrs["tied"] else [("weight", weight)]  # a tied one reads its layer's
        return [*weight, *([("bias", bias)] if node.attrs["bias"] else [])]

    def numpy_call(self, node, state, args):
        kernel = "linear_in_out" if node.attrs["transposed"] else "linear"
        return call(kernel, args[0], state("weight"), *([state("bias")] if node.attrs["bias"] else []))

    def onnx_call(self, node, g, args):
        """Gemm on a vector, as torch exports nn.Linear; at every position, MatMul by the weight (transposed
        unless it is stored in x units already)."""
        bias = g.state("bias") if node.attrs["bias"] else None
        transposed = node.attrs["transposed"]
        if len(node.shape) == 1:
            return g.op("Gemm", args[0], g.state("weight"), bias, transB=0 if transposed else 1)
        weight = g.state("weight") if transposed else g.op("Transpose", g.state("weight"), perm=[1, 0])
        out = g.op("MatMul", args[0], weight)
        return g.op("Add", out, bias) if bias else out

    def numpy_backward(self, node, state, grad, saved):
        return weighted_backward(self, node, state, grad, saved)
