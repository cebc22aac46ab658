"""Recurrent layers: lstm and gru, as torch's nn.LSTM and nn.GRU with batch_first=True.

Both read a sequence, `L x F` per sample (L steps of F features, the features
last: after `permute: 1x0` of a `F x L` input, or a `dense` along the last
axis), and give the output of every step (`L x D*H`, D = 2 when
bidirectional) or, with `last`, what a classifier reads: the final hidden
state of the last layer, `D*H` values, the forward direction's (at the last
step) then the backward direction's (at the first step), torch's
`torch.cat((h_n[-2], h_n[-1]), 1)`.

Their parameters are torch's, with its state_dict keys (`weight_ih_l0`,
`weight_hh_l0`, `bias_ih_l0`, `bias_hh_l0`, `weight_hr_l0` with `proj`, and
`_reverse` for the backward direction), so weights move between torch and the
generated code by key.

MACs are the products of the gates with the step's input and with the
previous hidden state, at every step, in every layer and direction (4 gates
for lstm, 3 for gru), and an lstm's projection: what torch's flop counter
counts for the native kernels' matmuls. The gates' arithmetic (biases,
sigmoids, tanh, the products and sums of the state update) are element
operations (docs/language.md, section 12).
"""

from __future__ import annotations

from typing import ClassVar

from ..codegen.pyexpr import Call, Index, call, lit
from .base import Backward, Op, P, Proposal, Saved, ShapeError, Training, fmt_shape, prod, register
from .emit import mirror, onnx_features, onnx_linear, unless

RECURRENT = ("lstm", "gru")
MAX_LAYERS = 200_000  # stacked layers: as many as a network may have (archc/expand.py, MAX_NODES)


class _Recurrent(Op):
    """What lstm and gru share; a subclass gives its gate count and its per-step arithmetic."""

    gates: int = 0
    torch_module: str = ""
    # element operations per hidden unit, step, layer and direction without biases (which add 2 x gates)
    step_ops: int = 0
    symbols: ClassVar[dict[str, tuple[str, object]]] = {
        "bidirectional": ("bidirectional", True),
        "last": ("last", True),
    }
    common = (
        P("units", "int", positional=True, doc="hidden size H: the features of each step's output, per direction"),
        P("layers", "int", 1, doc="stacked layers (torch's num_layers)"),
        P("bidirectional", "bool", False, doc="a second direction, from the last step to the first"),
        P("last", "bool", False, doc="only the final hidden state (D*H values), not every step's output"),
        P("bias", "bool", True, doc="learn the biases bias_ih and bias_hh"),
        P("dropout", "float", 0.0, doc="dropout on the outputs of every layer but the last, while training"),
    )

    # -- shape ---------------------------------------------------------------------

    def infer(self, node, ins, warn):
        shape = ins[0]
        if len(shape) != 2 or shape.channels != 1:
            raise self._not_sequence(node, shape)
        a = node.attrs
        what = f"{node.op} {node.name}"
        for param, low in (("units", 1), ("layers", 1)):
            if a[param] < low:
                raise ShapeError(f"{what}: {param} must be at least {low}, not {a[param]}", param=param, code="E0205")
        if a["layers"] > MAX_LAYERS:
            raise ShapeError(
                f"{what}: {a['layers']:,} stacked layers are more than a network may have ({MAX_LAYERS:,})",
                ["the generated code holds a weight per layer: stack fewer"],
                param="layers",
                code="E0205",
            )
        if not 0 <= a["dropout"] < 1:
            raise ShapeError(f"{what}: dropout must be in [0, 1), not {a['dropout']:g}", param="dropout", code="E0205")
        self._check(node)
        if a["dropout"] > 0 and a["layers"] == 1:
            warn(
                f"{what}: dropout={a['dropout']:g} does nothing: it drops the outputs between stacked layers, "
                "and there is one layer (torch warns too)",
                ["use `dropout` after the layer to drop its output, or stack layers"],
                [
                    Proposal("layers", 2, "layers=2", "puts the dropout between two layers", instead=False),
                    Proposal("dropout", 0.0, "dropout=0", "drops nothing, as the layer does now", instead=False),
                ],
                code="W0303",
            )
        width = self._directions(node) * self._out_size(node)
        return (width,) if a["last"] else (shape[0], width)

    def _check(self, node) -> None:
        """The settings only one of the layer types has."""

    def _not_sequence(self, node, shape) -> ShapeError:
        """E0304 for a `F x L` map (the features first: a `permute` puts them last), else E0301 for what is
        no sequence at all (an image, a vector)."""
        what = f"{node.op} {node.name}"
        wanted = f"{what} needs a sequence, L x F (steps x features, the features last)"
        if len(shape) == 2:
            return ShapeError(
                f"{wanted}, but gets {fmt_shape(shape)} with the features first",
                [f"`permute: 1x0` before it gives {shape[1]} steps of {shape[0]} features"],
                code="E0304",
                proposals=[Proposal("permute", (1, 0), "1x0", f"gives it {shape[1]} steps of {shape[0]} features")],
            )
        help_, proposals = ["make it L x F, the steps first and the features last"], []
        if len(shape) == 1:
            help_ = [
                "a vector has no steps: apply it before `flatten`, or `reshape` the vector to F x L and `permute: 1x0`"
            ]
        elif shape.channels == 0:
            c, positions = shape[0], prod(shape[1:])
            says = f"reads its {positions} positions as steps of {c} features"
            proposals = [Proposal("sequence", (c, positions), "", says)]
        return ShapeError(f"{wanted}, but gets {fmt_shape(shape)}", help_, code="E0301", proposals=proposals)

    def channels(self, node, ins, out):
        return len(out) - 1  # the features of each step are last

    # -- figures ---------------------------------------------------------------------

    def _directions(self, node) -> int:
        return 2 if node.attrs["bidirectional"] else 1

    def _out_size(self, node) -> int:
        """The size of each direction's output and hidden state (H, or an lstm's projection)."""
        return node.attrs["units"]

    def _projection(self, node) -> int:
        return 0

    def _layer_inputs(self, node, features: int) -> list[int]:
        """The input size of each stacked layer: the sequence's features, then the previous layer's output."""
        return [features] + [self._directions(node) * self._out_size(node)] * (node.attrs["layers"] - 1)

    def _arrays(self, node, features: int) -> list[tuple[str, tuple[int, ...]]]:
        """(state_dict suffix, shape) of every parameter, in torch's order: per layer, per direction."""
        a, hidden = node.attrs, node.attrs["units"]
        rows, out, proj = self.gates * hidden, self._out_size(node), self._projection(node)
        arrays = []
        for k, size in enumerate(self._layer_inputs(node, features)):
            for suffix in ("", "_reverse")[: self._directions(node)]:
                tag = f"_l{k}{suffix}"
                arrays += [(f"weight_ih{tag}", (rows, size)), (f"weight_hh{tag}", (rows, out))]
                if a["bias"]:
                    arrays += [(f"bias_ih{tag}", (rows,)), (f"bias_hh{tag}", (rows,))]
                if proj:
                    arrays.append((f"weight_hr{tag}", (proj, hidden)))
        return arrays

    def _matrix_values(self, node, features: int) -> int:
        """The values of the 2-D weights (weight_ih, weight_hh, weight_hr) of every layer and direction:
        the sizes of `_arrays`, summed by formula (a sum over the layers would take as long as they are many)."""
        a, hidden = node.attrs, node.attrs["units"]
        rows, out = self.gates * hidden, self._out_size(node)
        per_layer = rows * out + self._projection(node) * hidden  # weight_hh, weight_hr
        inputs = rows * (features + (a["layers"] - 1) * self._directions(node) * out)  # weight_ih of every layer
        return self._directions(node) * (a["layers"] * per_layer + inputs)

    def count_params(self, node, ins, out):
        a = node.attrs
        biases = 2 * self.gates * a["units"] * a["layers"] * self._directions(node) if a["bias"] else 0
        return self._matrix_values(node, ins[0][1]) + biases

    def count_macs(self, node, ins, out):
        """At every step of every layer and direction: the gates times the input and the previous hidden
        state, and an lstm's projection: each 2-D weight's values once a step."""
        return ins[0][0] * self._matrix_values(node, ins[0][1])

    def count_elem_ops(self, node, ins, out):
        a = node.attrs
        per_unit = self.step_ops + (2 * self.gates if a["bias"] else 0)
        return ins[0][0] * a["layers"] * self._directions(node) * a["units"] * per_unit

    def receptive(self, node, rfs):
        return None  # a step's state has read every step before it (after it, backwards)

    def settings(self, node):
        a = node.attrs
        parts = [f"{a['units']} units"]
        parts += [f"{a['layers']} layers"] if a["layers"] > 1 else []
        parts += ["bidirectional"] if a["bidirectional"] else []
        parts += [f"proj {self._projection(node)}"] if self._projection(node) else []
        parts += [] if a["bias"] else ["no bias"]
        parts += [f"dropout {a['dropout']:g}"] if a["dropout"] else []
        parts += ["last step"] if a["last"] else []
        return ", ".join(parts)

    # -- training memory ---------------------------------------------------------------

    def training(self, node, ins, out, ctx):
        """What torch's native kernels keep (aten's RNN.cpp: the CPU, and the GPU without cuDNN): per layer
        and direction, a time-major copy of the layer's input for the input weights' gradient (a
        batch-first sequence is copied, once a direction, unless it is a recurrent layer's output;
        the next layers read the previous one's output, or its dropout's), then at every step
        what `_sequence_values` says; the zero initial states once; and a dropout's mask between layers."""
        a = node.attrs
        steps, features = ins[0]
        directions, width = self._directions(node), self._directions(node) * self._out_size(node)
        # (steps, N, F) from (N, steps, F) is a copy, but for one step, or a recurrent layer's
        # output, time-major in memory: then a view of the input
        if steps == 1 or any(op in RECURRENT for op in ctx.producers[:1]):
            first = Saved.input()
        else:
            first = Saved.new(directions * steps * features)  # a copy for each direction
        # Every other tensor is the layer's own, so they are summed into one (by formula: the sum
        # over the layers and steps would take as long as they are many): the upper layers' inputs
        # and, with dropout, its scaled masks (as the CPU's dropout keeps them), each direction's
        # values over the sequence, and the initial states.
        inputs = (a["layers"] - 1) * steps * width * (2 if a["dropout"] else 1)
        sequence = a["layers"] * directions * self._sequence_values(node, steps)
        own = Saved.new(inputs + sequence + self._initial_values(node))
        # `last`: one direction's is a row of the stacked final states (of every layer), two are concatenated
        stored = a["layers"] * self._out_size(node) if a["last"] and directions == 1 else None
        return Training((first, own), stored=stored)

    def _sequence_values(self, node, steps: int) -> int:
        """The values per sample each direction of one layer keeps over the sequence."""
        raise NotImplementedError

    def _initial_values(self, node) -> int:
        """The zero initial states torch makes (num_layers * D of each), per sample: h0."""
        return node.attrs["layers"] * self._directions(node) * self._out_size(node)

    # -- code ----------------------------------------------------------------------

    def _options(self, node) -> dict:
        """torch's keyword arguments, those that are not its defaults (all of them where the nested
        target lines up one block's instances, `explicit_defaults`)."""
        a = node.attrs
        return {
            "num_layers": unless((a["layers"],), 1),
            "bias": unless((a["bias"],), True),
            "batch_first": "True",
            "dropout": unless((float(a["dropout"]),), 0.0),
            "bidirectional": unless((a["bidirectional"],), False),
        }

    def torch_layer(self, node, ins):
        return call(self.torch_module, ins[0][1], node.attrs["units"], **self._options(node))

    def _final_states(self, result):
        """h_n in the module's result (output, h_n)."""
        return Index(result, "1")

    def torch_call(self, node, module, args):
        result = call(module, args[0])
        if not node.attrs["last"]:
            return Index(result, "0")
        h_n = self._final_states(result)
        if not node.attrs["bidirectional"]:
            return Index(h_n, "-1")
        # the last layer's forward and backward final states, side by side, as torch.cat((h_n[-2], h_n[-1]), 1)
        # gives them; written with one reading of h_n, in a form torch.jit.script compiles
        return call("torch.flatten", call("torch.transpose", Index(h_n, "-2:"), "0", "1"), "1")

    def numpy_state(self, node, ins, init):
        """torch's start, whatever the network's scheme (torchvision's loops leave recurrent layers
        alone): every array uniform in +-1/sqrt(H)."""
        bound = f"{node.attrs['units']}**-0.5"
        return [(name, call("uniform", "rng", lit(shape), bound)) for name, shape in self._arrays(node, ins[0][1])]

    def numpy_call(self, node, state, args):
        """The kernel finds the arrays (a bias, a projection) by their keys under the layer's."""
        a = node.attrs
        options = {"num_layers": a["layers"] if a["layers"] > 1 else None}
        options["bidirectional"] = "True" if a["bidirectional"] else None
        if a["dropout"] and a["layers"] > 1:
            options.update(dropout=lit(float(a["dropout"])), training="self.training", rng="self.rng")
        return call(node.op, args[0], "s", lit(state.key), **options, last="True" if a["last"] else None)

    # ONNX's op, and torch's gate blocks in ONNX's order (i, o, f, c for an lstm; z, r, h for a gru)
    onnx_op: str = ""
    onnx_gates: tuple[int, ...] = ()
    onnx_reset: int | None = None  # a gru's linear_before_reset

    def onnx_call(self, node, g, args):
        """The stacked layers time-major (onnxruntime runs no batch-first layout), each reading the one
        before (`_onnx_layer`); every step's output batch-first again, or with `last` the last layer's
        final hidden states side by side. Dropout between layers is the identity in eval mode."""
        x = g.op("Transpose", args[0], perm=[1, 0, 2])
        for k in range(node.attrs["layers"]):
            x, finals = self._onnx_layer(g, node, x, k)
        if not node.attrs["last"]:
            return g.op("Transpose", x, perm=[1, 0, 2])
        return finals[0] if len(finals) == 1 else g.op("Concat", *finals, axis=1)

    def _onnx_layer(self, g, node, x: str, k: int) -> tuple[str, list[str]]:
        """Layer `k` on the time-major `x` (L x N x F): ONNX's LSTM or GRU on torch's arrays by their keys,
        their gate blocks reordered inside the graph (`_onnx_weights`). Its output Y (L x D x N x H) as
        L x N x D*H, and for `last` the final hidden state of each direction (Y's last step forward, its first
        backward) of the last layer."""
        hidden, directions = node.attrs["units"], self._directions(node)
        w, r, b = self._onnx_weights(g, node, [f"_l{k}{suffix}" for suffix in ("", "_reverse")[:directions]])
        both = "bidirectional" if directions == 2 else None
        y = g.op(self.onnx_op, x, w, r, b, hidden_size=hidden, direction=both, linear_before_reset=self.onnx_reset)
        steps, finals = g.input_shapes[0][0], []
        if node.attrs["last"] and k == node.attrs["layers"] - 1:  # only what the layer gives
            finals = [g.op("Gather", y, g.const([steps - 1, 0][d]), axis=0) for d in range(directions)]
            finals = [g.op("Gather", final, g.const(d), axis=0) for d, final in enumerate(finals)]
        return g.op("Reshape", g.op("Transpose", y, perm=[0, 2, 1, 3]), g.const([0, 0, directions * hidden])), finals

    def _onnx_weights(self, g, node, tags: list[str]) -> tuple[str, str, str | None]:
        """W, R and B of ONNX's op (D x gates*H x inputs, D x gates*H x H, D x 2*gates*H) from torch's
        weight_ih, weight_hh, bias_ih and bias_hh of each direction: their rows gathered in ONNX's gate order."""
        hidden = node.attrs["units"]
        rows = g.const([i for gate in self.onnx_gates for i in range(gate * hidden, (gate + 1) * hidden)])

        def stacked(*names):
            per_direction = []
            for tag in tags:
                parts = [g.op("Gather", g.state(f"{name}{tag}"), rows, axis=0) for name in names]
                joined = parts[0] if len(parts) == 1 else g.op("Concat", *parts, axis=0)
                per_direction.append(g.op("Unsqueeze", joined, g.const([0])))
            return per_direction[0] if len(tags) == 1 else g.op("Concat", *per_direction, axis=0)

        bias = stacked("bias_ih", "bias_hh") if node.attrs["bias"] else None
        return stacked("weight_ih"), stacked("weight_hh"), bias

    def numpy_train_call(self, node, state, args):
        """`<kernel>_forward`: the output, and the input and dropout masks the backward replays."""
        forward = self.numpy_call(node, state, args)
        return Call(f"{node.op}_forward", forward.args, forward.kwargs)

    def numpy_backward(self, node, state, grad, saved):
        """The input's gradient, and those of every array under their keys (`...`)."""
        backward = mirror(self.numpy_call(node, state, ["_"]), grad, saved, drop=("dropout", "training", "rng"))
        return Backward(backward, (0, ...))


@register
class LSTM(_Recurrent):
    name = "lstm"
    doc = (
        "Long short-term memory over a sequence (L x F, features last), as nn.LSTM(batch_first=True): every "
        "step's output (L x D*H), or with `last` the final hidden state (D*H)."
    )
    gates = 4
    torch_module = "nn.LSTM"
    onnx_op, onnx_gates = "LSTM", (0, 3, 1, 2)  # torch's i, f, g, o as ONNX's i, o, f, c
    # the two products summed (4), sigmoid x3 and tanh (4), c = f*c + i*g (3), tanh(c) and o * tanh(c) (2)
    step_ops = 13
    params = (
        *_Recurrent.common,
        P("proj", "int", 0, doc="project each hidden state to this size (torch's proj_size); 0: none"),
    )

    def _check(self, node):
        proj, units = node.attrs["proj"], node.attrs["units"]
        if not 0 <= proj < units:
            raise ShapeError(
                f"lstm {node.name}: proj must be from 0 (none) to {units - 1}, smaller than the {units} units, "
                f"not {proj}",
                ["torch's proj_size projects the hidden state to a smaller size"],
                param="proj",
                code="E0205",
                proposals=[Proposal("proj", 0, "proj=0", "leaves the hidden state unprojected", instead=False)],
            )

    def _out_size(self, node):
        return node.attrs["proj"] or node.attrs["units"]

    def _projection(self, node):
        return node.attrs["proj"]

    def _sequence_values(self, node, steps):
        """At every step: the gates (4H, activated in place), tanh of the cell state (H), the hidden state
        before the projection (H, with `proj`); and, from the second step on, the previous step's cell (H)
        and hidden (out) states: at the first step they are the zero initial states."""
        hidden, out = node.attrs["units"], self._out_size(node)
        per_step = 5 * hidden + (hidden if self._projection(node) else 0)
        return per_step * steps + (hidden + out) * (steps - 1)

    def _initial_values(self, node):
        layers = node.attrs["layers"] * self._directions(node)
        return super()._initial_values(node) + layers * node.attrs["units"]  # h0, and c0

    def torch_layer(self, node, ins):
        proj = unless((self._projection(node),), 0)
        return call(self.torch_module, ins[0][1], node.attrs["units"], **self._options(node), proj_size=proj)

    def _final_states(self, result):
        return Index(Index(result, "1"), "0")  # (output, (h_n, c_n))

    def _onnx_layer(self, g, node, x, k):
        """ONNX's LSTM has no projection: with `proj`, the layer's steps are unrolled as torch computes
        them (gates = x W_ih + b_ih + h W_hh + b_hh, blocks i, f, g, o; c = f*c + i*g; h = (o * tanh(c)) W_hr),
        from zero states, which the first step leaves out."""
        if not self._projection(node):
            return super()._onnx_layer(g, node, x, k)
        hidden, steps = node.attrs["units"], g.input_shapes[0][0]
        outputs, finals = [], []
        for suffix in ("", "_reverse")[: self._directions(node)]:
            tag = f"_l{k}{suffix}"
            inputs = onnx_linear(g, x, g.state(f"weight_ih{tag}"), None)  # L x N x 4H, every step at once
            if node.attrs["bias"]:
                inputs = g.op("Add", inputs, g.op("Add", g.state(f"bias_ih{tag}"), g.state(f"bias_hh{tag}")))
            recurrent = g.op("Transpose", g.state(f"weight_hh{tag}"), perm=[1, 0])
            projection = g.op("Transpose", g.state(f"weight_hr{tag}"), perm=[1, 0])
            h = c = None
            hs = [""] * steps
            for t in reversed(range(steps)) if suffix else range(steps):
                gates = g.op("Gather", inputs, g.const(t), axis=0)
                if h is not None:
                    gates = g.op("Add", gates, g.op("MatMul", h, recurrent))
                i, f, cell, o = (onnx_features(g, gates, n * hidden, (n + 1) * hidden, -1) for n in range(4))
                update = g.op("Mul", g.op("Sigmoid", i), g.op("Tanh", cell))
                c = update if c is None else g.op("Add", g.op("Mul", g.op("Sigmoid", f), c), update)
                h = g.op("MatMul", g.op("Mul", g.op("Sigmoid", o), g.op("Tanh", c)), projection)
                hs[t] = g.op("Unsqueeze", h, g.const([0]))
            outputs.append(g.op("Concat", *hs, axis=0))
            finals.append(h)
        return g.op("Concat", *outputs, axis=-1), finals


@register
class GRU(_Recurrent):
    name = "gru"
    doc = (
        "Gated recurrent unit over a sequence (L x F, features last), as nn.GRU(batch_first=True): every "
        "step's output (L x D*H), or with `last` the final hidden state (D*H)."
    )
    gates = 3
    torch_module = "nn.GRU"
    onnx_op, onnx_gates = "GRU", (1, 0, 2)  # torch's r, z, n as ONNX's z, r, h
    onnx_reset = 1  # torch applies the reset gate after the hidden state's product, with its bias
    # the two products summed for r and z (2), sigmoid x2 (2), n = tanh(x_n + r * h_n) (3), h = n + z * (h - n) (3)
    step_ops = 10
    params = _Recurrent.common

    def _sequence_values(self, node, steps):
        """At every step (torch's gru_cell): the hidden state's products with the gates (3H, which the reset
        and update gates are activated into), a copy of its third (H), the new gate (H) and h - n (H); and,
        from the second step on, the previous hidden state (H)."""
        hidden = node.attrs["units"]
        return 6 * hidden * steps + hidden * (steps - 1)
