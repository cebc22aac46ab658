"""ONNX's recurrent layers (LSTM, GRU) and table lookups (Gather of a weight by token ids) as archc's
lstm, gru and embedding.

ONNX's LSTM and GRU run time-major (layout 0: steps x batch x features) and give every step's output
as steps x directions x batch x hidden (Y) and each direction's final state (Y_h), which exporters
rearrange with Transpose, Squeeze and Reshape, one node per stacked layer. archc's layers hold a
tensor batch first, so these tensors are *views*: a statement's output with its axes named (N batch,
L steps, F features, or F split as D directions x H hidden) and moved, or some of its layer's final
states. A view becomes the statement again when its axes are back to N x L x F; a stacked layer that
reads the layer below and nothing else does is one more of its `layers`; the last layer's final
states of every direction, side by side (torch's `torch.cat((h_n[-2], h_n[-1]), 1)`), make the
statement `last`. What no archc layer gives (a cell state, a lower layer's final state, one step's
output) is an error where a layer reads it: archc never guesses.
"""

from __future__ import annotations

from dataclasses import dataclass

from .common import BROKEN

# ONNX op -> (archc layer, gates, the activations ONNX defaults to, which are torch's)
RECURRENT = {"LSTM": ("lstm", 4, ("Sigmoid", "Tanh", "Tanh")), "GRU": ("gru", 3, ("Sigmoid", "Tanh"))}
# operators that only rearrange a tensor: what reads through them reads the tensor
REARRANGE = {"Transpose", "Squeeze", "Unsqueeze", "Reshape", "Identity"}
INTEGERS = {2, 3, 4, 5, 6, 7, 12, 13}  # ONNX's integer element types: uint8 ... int64, uint32, uint64


@dataclass
class _Stack:
    """An archc lstm or gru statement, one ONNX node per stacked layer."""

    stmt: str
    op: str
    hidden: int
    directions: int
    bias: bool
    steps: int
    layers: int = 1
    last: bool = False
    top: str = ""  # the top layer's node's Y


@dataclass(frozen=True)
class _Seq:
    """A statement's every-step output (batch first N x L x F) with its axes moved, F maybe split D x H."""

    stmt: str
    axes: tuple[str, ...]


@dataclass(frozen=True)
class _Finals:
    """Hidden states of a recurrent statement: (layer, direction, step) entries along axis D (no D: one
    entry); a step of None is the final state (Y_h)."""

    stmt: str
    axes: tuple[str, ...]
    entries: tuple[tuple[int, int, int | None], ...]


class Recurrent:
    """The recurrent layers, embeddings and views of one import (`_Importer.recurrent`)."""

    def __init__(self, imp):
        self.imp = imp
        self.views: dict[str, object] = {}  # ONNX tensor -> _Seq, _Finals, or what it is (a cell state)
        self.stacks: dict[str, _Stack] = {}
        self.vocab: dict[str, int] = {}  # token-id input statement -> its vocab
        self.fixed: dict[str, tuple[str, int]] = {}  # ids x 0 + c -> (the ids, c): a lookup of one id

    def fixed_ids(self) -> set[int]:
        """The Mul and Add nodes of `ids x 0 + c` (c one integer) read only by lookups in a table: archc's
        ONNX out writes `embedding ... id=c` so (that id in the ids' shape, whatever they hold). Each such
        sum goes into self.fixed; the nodes are the embedding's, to skip."""
        imp, nodes = self.imp, self.imp.graph.node
        values = imp.small_constants()

        def integer(name: str):  # the integer constant `name`, or None
            value = values.get(name)
            return value if value is not None and value.dtype.kind in "iu" else None

        skip: set[int] = set()
        for k, add in enumerate(nodes):
            readers = self.readers(add.output[0]) if add.op_type == "Add" and add.output else []
            if len(add.input) != 2 or not readers or not all(self._table(r, add.output[0]) for r in readers):
                continue
            for m, c in (add.input, add.input[::-1]):
                j, fill = imp.producer.get(m), integer(c)
                if j is None or fill is None or fill.size != 1 or self.readers(m) != [k]:
                    continue
                mul = nodes[j]
                pairs = (mul.input, mul.input[::-1]) if mul.op_type == "Mul" and len(mul.input) == 2 else ()
                ids = next((x for x, z in pairs if x not in imp.constants and _zeros(integer(z))), None)
                if ids is not None:
                    self.fixed[add.output[0]] = (ids, int(fill.reshape(-1)[0]))
                    skip |= {j, k}
                    break
        return skip

    # -- inputs ------------------------------------------------------------------------------------

    def readers(self, tensor: str) -> list[int]:
        """The nodes that read `tensor` (-1: a graph output), but Shape, which reads no value."""
        nodes = self.imp.graph.node
        return [k for k in self.imp.consumers.get(tensor, []) if k < 0 or nodes[k].op_type != "Shape"]

    def _reads_x(self, k: int, tensor: str, layout: int) -> bool:
        node = self.imp.graph.node[k] if k >= 0 else None
        return node is not None and node.op_type in RECURRENT and node.input[0] == tensor and _layout(node) == layout

    def input_form(self, value, dims: list) -> tuple[list, bool]:
        """How input `value` (ONNX `dims`) is declared: the arguments after its shape and whether it is
        steps first. Token ids a table lookup reads are `tokens vocab=V` (V the smallest table's rows); a
        3-D input that recurrent layers read (directly, or through a Transpose to steps first) is a
        `sequence`; one they read steps first is too, its batch the second dimension."""
        imp, name = self.imp, value.name
        elem = value.type.tensor_type.elem_type if value.type.HasField("tensor_type") else 0
        readers = self.readers(name)
        if elem in INTEGERS and len(dims) == 2:
            rows = [imp.static[imp.graph.node[k].input[0]][0] for k in readers if self._table(k, name)]
            return ([(None, "tokens"), ("vocab", min(rows))] if rows else []), False
        if len(dims) != 3 or not readers:
            return [], False
        if all(self._reads_x(k, name, 0) for k in readers):
            return [(None, "sequence")], True
        for k in readers:
            node = imp.graph.node[k] if k >= 0 else None
            through = (
                node is not None
                and node.op_type == "Transpose"
                and _perm(node) == [1, 0, 2]
                and all(self._reads_x(r, node.output[0], 0) for r in self.readers(node.output[0]) or [-1])
            )
            if not (through or self._reads_x(k, name, 1)):
                return [], False
        return [(None, "sequence")], False

    def declared(self, name: str, stmt: str, args: list, steps_first: bool) -> None:
        """Input `name` is statement `stmt`: batch first (an act), or a steps-first view of it."""
        vocab = dict((k, v) for k, v in args if k).get("vocab")
        if vocab is not None:
            self.vocab[stmt] = vocab
        if steps_first:
            self.views[name] = _Seq(stmt, ("L", "N", "F"))
        else:
            self.imp.acts[name] = stmt

    def _table(self, k: int, ids: str) -> bool:
        """Node k looks rows up in a constant 2-D table by `ids` (axis 0)."""
        if k < 0:
            return False
        node = self.imp.graph.node[k]
        table = node.input[0] if node.input else ""
        return (
            node.op_type == "Gather"
            and len(node.input) == 2
            and node.input[1] == ids
            and table not in self.imp.acts
            and table not in self.views
            and len(self.imp.static.get(table, ())) == 2
            and _axis(node) == 0
        )

    # -- nodes -------------------------------------------------------------------------------------

    def takes(self, i: int, node, a) -> bool:
        """Import node i when it is this module's: a recurrent layer, a table lookup by token ids, an
        operator on a view, or a Transpose of a sequence to steps first."""
        op, ins = node.op_type, [n for n in node.input if n]
        broken = next((n for n in ins if n in self.imp.acts and self.imp.acts[n] is BROKEN), None)
        if broken is not None:
            self.imp.act(i, broken)  # raises, with no error of its own: the input's cause has one
        if op in RECURRENT:
            self.layer(i, node, a)
        elif op == "Gather" and len(ins) == 2 and ins[1] in self.fixed and self._table(i, ins[1]):
            self.embedding(i, node, *self.fixed[ins[1]])
        elif op == "Gather" and len(ins) == 2 and ins[1] in self.imp.acts and self._table(i, ins[1]):
            self.embedding(i, node, ins[1])
        elif ins and (
            (ins[0] in self.views and op in (*REARRANGE, "Gather")) or (op == "Gather" and self._stack_sequence(ins[0]))
        ):
            self.view_op(i, node, a, self.views.get(ins[0]) or _Seq(self.imp.acts[ins[0]], ("N", "L", "F")))
        elif op == "Concat" and ins and all(n in self.views for n in ins):
            self.concat(i, node, a, [self.views[n] for n in ins])
        elif op == "Transpose" and ins and ins[0] in self.imp.acts and _perm(node) == [1, 0, 2]:
            if len(self.imp.shape(i, ins[0])) != 3:
                return False
            self.view(i, node.output[0], _Seq(self.imp.acts[ins[0]], ("L", "N", "F")))
        else:
            return False
        return True

    def _stack_sequence(self, tensor: str) -> bool:
        """`tensor` is a recurrent statement's every-step output, batch first."""
        stack = self.stacks.get(self.imp.acts.get(tensor, ""))
        return stack is not None and not stack.last

    def view(self, i: int, tensor: str, view) -> None:
        """`tensor` is `view`: the statement itself when its axes are N x L x F, its `last` when it is the
        last layer's final states (every direction, in order); else a view for later nodes."""
        if isinstance(view, _Seq) and "D" not in view.axes:
            view = _Seq(view.stmt, tuple("F" if ax == "H" else ax for ax in view.axes))
        if isinstance(view, _Seq) and view.axes == ("N", "L", "F"):
            self.imp.acts[tensor] = view.stmt
        elif isinstance(view, _Finals) and "D" not in view.axes and self._whole(view):
            self.resolve(i, tensor, view)
        else:
            self.views[tensor] = view

    def held(self, tensor: str) -> str | None:
        """The statement a graph output holds: a steps-first output (a batch_first=False model's) is one."""
        view = self.views.get(tensor)
        return view.stmt if isinstance(view, _Seq) and view.axes == ("L", "N", "F") else None

    def why(self, tensor: str) -> str | None:
        """What view `tensor` is, for the error of a layer that reads it; None when it is none."""
        view = self.views.get(tensor)
        if view is None:
            return None
        if isinstance(view, str):
            return view
        if isinstance(view, _Seq):
            axes = " x ".join(view.axes)
            return f"`{view.stmt}` as {axes} (N batch, L steps, D directions), not N x L x F"
        states = ", ".join(
            f"layer {layer} direction {d}" + ("" if s is None else f" at step {s}") for layer, d, s in view.entries
        )
        return (
            f"hidden states of `{view.stmt}` ({states}): archc's `last` gives the last layer's final states of "
            "every direction side by side, and no other"
        )

    # -- recurrent layers -----------------------------------------------------------------------------

    def layer(self, i: int, node, a) -> None:
        """An LSTM or GRU node: a new statement, or one more stacked layer of the statement it reads."""
        imp = self.imp
        op, gates, defaults = RECURRENT[node.op_type]
        directions = self._settings(i, node, a, defaults)
        layout = a.int("layout", 0)
        if layout not in (0, 1):
            raise imp.fail_node(i, "E0403", f"layout={layout} is neither 0 (steps first) nor 1", [], "layout")
        source = self._source(i, node.input[0], layout)
        shape = imp.shape(i, node.input[0])
        if len(shape) != 3:
            raise imp.fail_node(i, "E0403", f"its input X has shape {list(shape)}, not 3 dimensions")
        steps, features = (shape[0], shape[2]) if layout == 0 else (shape[1], shape[2])
        w, r = imp.weight(i, node.input[1], 3), imp.weight(i, node.input[2], 3)
        hidden = a.int("hidden_size", r[2])
        imp.need(i, w, (directions, gates * hidden, features), "weight W")
        imp.need(i, r, (directions, gates * hidden, hidden), "weight R")
        bias = len(node.input) > 3 and bool(node.input[3])
        if bias:
            imp.need(i, imp.weight(i, node.input[3]), (directions, 2 * gates * hidden), "bias B")
        self._whole_sequences(i, node, steps)
        for k, state in ((5, "initial_h"), (6, "initial_c")):
            if len(node.input) > k and node.input[k]:
                self._zeros(i, node.input[k], state)
        stack = self.stacks.get(source)
        wanted = (op, hidden, directions, bias)
        if stack and (stack.op, stack.hidden, stack.directions, stack.bias) == wanted and self._stacks_on(stack, i):
            stack.layers += 1
            self.write(stack)
        else:
            stmt = imp.emit(i, node, op, [source], [])
            imp.acts.pop(node.output[0], None)  # Y is a view: steps, directions, batch, hidden
            stack = self.stacks[stmt] = _Stack(stmt, op, hidden, directions, bias, steps)
            self.write(stack)
        stack.top = node.output[0]
        self._outputs(node, stack, layout)

    def _settings(self, i: int, node, a, defaults: tuple) -> int:
        """The directions, after refusing (E0405, at the attribute) what archc's layers do not compute."""
        imp = self.imp
        direction = a.str("direction", "forward")
        if direction not in ("forward", "bidirectional"):
            why = f"direction={direction}: archc's {RECURRENT[node.op_type][0]} reads forward, or both ways"
            raise imp.fail_node(i, "E0405", why, ["reverse the sequence before the layer, in the model"], "direction")
        directions = 2 if direction == "bidirectional" else 1
        acts = (
            [s.decode("utf-8", "replace") for s in a.by_name["activations"].strings]
            if a.has("activations")
            else list(defaults * directions)
        )
        if [x.lower() for x in acts] != [x.lower() for x in defaults * directions]:
            why = f"activations {acts}: archc's layers use ONNX's defaults {list(defaults)}, as torch does"
            raise imp.fail_node(i, "E0405", why, [], "activations")
        if a.has("clip"):
            raise imp.fail_node(i, "E0405", "clip: archc's layers do not clip the cell input", [], "clip")
        if a.int("input_forget", 0):
            raise imp.fail_node(i, "E0405", "input_forget=1 couples the input and forget gates", [], "input_forget")
        if node.op_type == "GRU" and a.int("linear_before_reset", 0) != 1:
            why = "linear_before_reset=0: archc's gru, as torch's, applies the reset gate after the hidden product"
            raise imp.fail_node(i, "E0405", why, [], "linear_before_reset")
        if len(node.input) > 7 and node.input[7]:
            raise imp.fail_node(i, "E0405", f"peepholes P `{node.input[7]}`: archc's lstm has none")
        return directions

    def _source(self, i: int, x: str, layout: int) -> str:
        """The statement the layer reads: X's, held batch first (layout 1) or seen steps first (layout 0)."""
        view = self.views.get(x)
        if layout == 0 and isinstance(view, _Seq) and view.axes == ("L", "N", "F"):
            return view.stmt
        if layout == 0 and x in self.imp.acts:
            why = f"its input X `{x}` is batch first, but layout=0 reads it steps first"
            raise self.imp.fail_node(i, "E0405", why, ["transpose X with perm [1, 0, 2], or give layout=1"])
        return self.imp.act(i, x)

    def _whole_sequences(self, i: int, node, steps: int) -> None:
        """sequence_lens, when given, must be every sample's whole sequence: a constant of `steps` each."""
        if len(node.input) > 4 and node.input[4]:
            name = node.input[4]
            if name in self.imp.acts or name not in self.imp.constants:
                raise self.imp.fail_node(
                    i, "E0405", f"its sequence_lens `{name}` is computed at run time: archc reads whole sequences"
                )
            lengths = self.imp.value(i, name, "sequence_lens")
            if lengths.size and not (lengths == steps).all():
                why = f"its sequence_lens `{name}` are not all {steps}: archc reads whole sequences"
                raise self.imp.fail_node(i, "E0405", why)

    def _zeros(self, i: int, name: str, state: str) -> None:
        """An initial state must be zeros, as archc's layers (and torch's without one) start from."""
        import numpy as np

        imp, start = self.imp, "archc's layers start from zeros"
        if name in imp.values:  # a constant, or one folded from the input's shape (Expand of zeros)
            value = imp.values[name]
        elif name in imp.init:
            from onnx import numpy_helper

            value = numpy_helper.to_array(imp.init[name], imp.base)
        elif name in imp.constants:
            raise imp.fail_node(i, "E0405", f"its {state} `{name}` is not known to be zeros: {start}")
        else:
            raise imp.fail_node(i, "E0405", f"its {state} `{name}` is computed at run time: {start}")
        if np.any(value):
            raise imp.fail_node(i, "E0405", f"its {state} `{name}` is not zeros: {start}")

    def _ends(self, tensor: str) -> set[int]:
        """The nodes (-1: a graph output) that read `tensor`, through the nodes that only rearrange it."""
        nodes, ends, todo = self.imp.graph.node, set(), [tensor]
        while todo:
            for k in self.readers(todo.pop()):
                if k >= 0 and nodes[k].op_type in REARRANGE:
                    todo.extend(nodes[k].output)
                else:
                    ends.add(k)
        return ends

    def _stacks_on(self, stack: _Stack, i: int) -> bool:
        """Node i is one more layer of `stack`: it alone reads the top layer's every-step output."""
        return not stack.last and self._ends(stack.top) == {i}

    def _outputs(self, node, stack: _Stack, layout: int) -> None:
        """Y, Y_h and an LSTM's Y_c as views of the statement."""
        names = [*node.output, "", ""]
        if names[0]:
            self.views[names[0]] = _Seq(stack.stmt, ("L", "D", "N", "H") if layout == 0 else ("N", "L", "D", "H"))
        if names[1]:
            entries = tuple((stack.layers - 1, d, None) for d in range(stack.directions))
            self.views[names[1]] = _Finals(stack.stmt, ("D", "N", "H") if layout == 0 else ("N", "D", "H"), entries)
        if names[2]:
            self.views[names[2]] = f"`{stack.stmt}`'s final cell state, which no archc layer gives"

    def write(self, stack: _Stack) -> None:
        """The statement's settings from the stack."""
        stmt = self.imp.flat.stmts[self.imp.flat.position[stack.stmt]]
        span = stmt.span
        args = [(None, stack.hidden)]
        args += [("layers", stack.layers)] if stack.layers > 1 else []
        args += [("bidirectional", True)] if stack.directions == 2 else []
        args += [] if stack.bias else [("bias", False)]
        args += [("last", True)] if stack.last else []
        self.imp.flat.set_args(stack.stmt, [(k, v, span) for k, v in args])

    def _whole(self, view: _Finals) -> bool:
        """The view is the last layer's final states of every direction, in order."""
        stack = self.stacks[view.stmt]
        top = stack.layers - 1
        final = [s is None or s == (stack.steps - 1 if d == 0 else 0) for _, d, s in view.entries]
        return all(final) and [(layer, d) for layer, d, _ in view.entries] == [
            (top, d) for d in range(stack.directions)
        ]

    def resolve(self, i: int, tensor: str, view: _Finals) -> None:
        """`tensor` is the statement with `last`, when nothing reads its every-step output."""
        stack = self.stacks[view.stmt]
        if not stack.last:
            readers = self._ends(stack.top)
            if any(k < 0 or self.imp.graph.node[k].op_type != "Gather" for k in readers):
                why = (
                    f"it reads `{stack.stmt}`'s final hidden states, and another node its every-step output: "
                    f"archc's {stack.op} gives one of them"
                )
                raise self.imp.fail_node(i, "E0405", why)
            stack.last = True
            self.write(stack)
        self.imp.acts[tensor] = stack.stmt

    # -- views -----------------------------------------------------------------------------------------

    def view_op(self, i: int, node, a, view) -> None:
        """Transpose, Squeeze, Unsqueeze, Reshape, Identity or Gather of a view."""
        imp, op, out = self.imp, node.op_type, node.output[0]
        if isinstance(view, str):
            raise imp.fail_node(i, "E0405", f"its input `{node.input[0]}` is {view}")
        shape = imp.shape(i, node.input[0])
        axes = view.axes
        if op == "Identity":
            self.view(i, out, view)
            return
        if op == "Transpose":
            perm = a.ints("perm", list(range(len(axes)))[::-1])
            self.view(i, out, _moved(view, tuple(axes[p] for p in perm)))
            return
        if op == "Gather":
            self.gather(i, node, a, view, shape)
            return
        wanted = imp.shapes.get(out)
        if wanted is None:
            raise imp.fail_node(i, "E0404", f"the shape of `{out}` is not static: shape inference cannot tell it")
        new = _reshaped(axes, tuple(shape), tuple(wanted))
        if new is None:
            raise imp.fail_node(i, "E0405", f"it gives {list(wanted)} from {self.why(node.input[0])}")
        self.view(i, out, _moved(view, new))

    def gather(self, i: int, node, a, view, shape: tuple) -> None:
        """One step of every-step output, or one entry of final states: a constant index on axis L or D."""
        imp = self.imp
        axis = a.int("axis", 0) % len(shape)
        index = node.input[1]
        value = imp.value(i, index, "index") if index not in imp.acts and index not in self.views else None
        label = view.axes[axis]
        if value is None or value.ndim != 0 or label not in ("L", "D"):
            raise imp.fail_node(i, "E0405", f"a Gather of {self.why(node.input[0]) or 'a recurrent output'}")
        k = int(value) % shape[axis]
        axes = tuple(ax for ax in view.axes if ax != label)
        stack = self.stacks.get(view.stmt)
        if isinstance(view, _Seq) and label == "L" and stack is not None and ("D" in axes or stack.directions == 1):
            entries = tuple((stack.layers - 1, d, k) for d in range(stack.directions))
            self.view(i, node.output[0], _Finals(view.stmt, tuple("H" if ax == "F" else ax for ax in axes), entries))
        elif isinstance(view, _Finals) and label == "D":
            self.view(i, node.output[0], _Finals(view.stmt, axes, (view.entries[k],)))
        else:
            raise imp.fail_node(i, "E0405", f"a Gather of step {k} of {self.why(node.input[0]) or 'its input'}")

    def concat(self, i: int, node, a, views: list) -> None:
        """Final states joined: along D (torch's h_n of stacked layers), or side by side along H."""
        imp = self.imp
        first = views[0]
        rank = len(imp.shape(i, node.input[0]))
        if not all(isinstance(v, _Finals) and v.stmt == first.stmt and v.axes == first.axes for v in views):
            raise imp.fail_node(i, "E0405", f"a Concat of {self.why(node.input[0])}")
        label = first.axes[a.int("axis", 0) % rank]
        entries = tuple(e for v in views for e in v.entries)
        if label == "D":
            self.view(i, node.output[0], _Finals(first.stmt, first.axes, entries))
            return
        joined = _Finals(first.stmt, first.axes, entries)
        if label != "H" or not self._whole(joined):
            raise imp.fail_node(i, "E0405", f"a Concat of {self.why(node.input[0])}, not the last layer's final states")
        self.resolve(i, node.output[0], joined)

    # -- embeddings -------------------------------------------------------------------------------------

    def embedding(self, i: int, node, ids: str, fixed: int | None = None) -> None:
        """Rows of a constant table by token ids `ids`: an `embedding`, with `vocab` when the table has more
        rows than the ids' vocabulary, and `id` when every token looks up row `fixed`."""
        imp = self.imp
        vocab, dim = imp.static[node.input[0]]
        ids = imp.act(i, ids)
        args = [(None, dim)] + ([("vocab", vocab)] if self.vocab.get(ids, vocab) != vocab else [])
        args += [("id", fixed)] if fixed is not None else []
        imp.holders[node.input[0]] = imp.emit(i, node, "embedding", [ids], args)


def _zeros(value) -> bool:
    """An integer constant of zeros only (None: not an integer constant)."""
    return value is not None and not value.any()


def _moved(view, axes: tuple):
    return _Seq(view.stmt, axes) if isinstance(view, _Seq) else _Finals(view.stmt, axes, view.entries)


def _reshaped(axes: tuple, shape: tuple, out: tuple) -> tuple | None:
    """The axes after a reshape from `shape` to `out`: the same, D and H merged into F, or a D of 1 dropped;
    None for any other."""
    if out == shape:
        return axes
    for k in range(len(axes) - 1):
        if axes[k : k + 2] == ("D", "H") and out == (*shape[:k], shape[k] * shape[k + 1], *shape[k + 2 :]):
            return (*axes[:k], "F", *axes[k + 2 :])
    if "D" in axes:
        k = axes.index("D")
        if shape[k] == 1 and out == (*shape[:k], *shape[k + 1 :]):
            return (*axes[:k], *axes[k + 1 :])
    return None


def _layout(node) -> int:
    return next((int(attr.i) for attr in node.attribute if attr.name == "layout"), 0)


def _axis(node) -> int:
    return next((int(attr.i) for attr in node.attribute if attr.name == "axis"), 0)


def _perm(node) -> list[int] | None:
    return next((list(attr.ints) for attr in node.attribute if attr.name == "perm"), None)
