"""The NumPy target: a standalone module whose only import is numpy.

The layer functions come from numpy_kernels.py, copied as source text: only
those the network calls (and what they call), so the file stays short and
runs without archc. The kernels file is read with `ast`, never imported, so
generating code does not need numpy.
"""

from __future__ import annotations

import ast
import functools
import re
from dataclasses import replace
from pathlib import Path

from ..ops import OPS
from . import pyexpr
from .common import (
    UNUSED,
    Generated,
    forward_body,
    header,
    make_plan,
    reserved_names,
    shapes_text,
    signature,
    state_ref,
    tied_keys,
)
from .init import Initial, describe
from .pyexpr import INDENT, Call, Entry, Index, Seq, Sum, assignment, deletion, flat, is_identifier, lines, lit

# the forward kernels, then the training ones (numpy_backward.py: backward kernels, losses, optimisers)
KERNELS = tuple(Path(__file__).parent / "runtime" / name for name in ("numpy_kernels.py", "numpy_backward.py"))
_CALLED = re.compile(r"(?<![\w.])([A-Za-z_]\w*)\(")  # the names of functions called, not methods

METHODS = '''
    def __call__(self, *inputs):
        return self.forward(*inputs)

    def train(self, mode=True):
        """Training: batch norm uses and updates batch statistics, dropout drops."""
        self.training = mode
        return self

    def eval(self):
        """Inference: batch norm uses its running statistics, dropout does nothing."""
        return self.train(False)

    def parameters(self):
        """The trainable arrays of `state`, the same objects (optimisers update them in place):
        every entry but the buffers (running statistics)."""
        buffers = self.buffers
        return {key: value for key, value in self.state.items() if key not in buffers}

    def zero_grad(self):
        """Forgets every gradient, as torch's zero_grad(): the next backward starts afresh."""
        self.grads = {}

    def accumulate(self, grads):
        """Adds a backward's parameter gradients into `grads`, as torch adds into each .grad."""
        for key, value in grads.items():
            self.grads[key] = self.grads[key] + value if key in self.grads else value

    def state_dict(self):
        """A copy of every array, with the keys and shapes of torch's state_dict() (a tied weight's too)."""
        tied = {key: self.state[shared] for key, shared in self.tied.items()}
        return {key: value.copy() for key, value in {**self.state, **tied}.items()}

    def load_state_dict(self, state):
        """Takes arrays, or anything np.asarray takes (CPU torch tensors included); a tied weight's key
        must be there, and the array is its layer's."""
        current = self.state  # (a view, in the nested model: built once)
        known = current.keys() | self.tied.keys()
        missing = sorted(known - state.keys())
        unexpected = sorted(state.keys() - known)
        if missing or unexpected:
            raise KeyError(f"missing keys {missing}, unexpected keys {unexpected}")
        loaded = {}
        for key, value in state.items():
            value = np.asarray(value)
            expected = current[self.tied.get(key, key)]
            if value.shape != expected.shape:
                raise ValueError(f"{key}: shape {value.shape} != {expected.shape}")
            if key not in self.tied:
                loaded[key] = value.astype(expected.dtype)
        self.state = {key: loaded[key] for key in current}

    def save(self, path):
        """Writes the state to a .npz file (a tied weight under both keys, as state_dict gives it)."""
        np.savez(
            path,
            **self.state,
            **{key: self.state[shared] for key, shared in self.tied.items()},
        )

    def load(self, path):
        """Reads the state from a .npz file written by save()."""
        with np.load(path) as data:
            self.load_state_dict(dict(data))
        return self
'''.strip("\n").splitlines()


def methods(*names: str) -> list[str]:
    """The named methods of METHODS, in that order, a blank line between them: the nested target's
    Module has them too."""
    blocks = {re.match(r"    def (\w+)", block)[1]: block for block in "\n".join(METHODS).split("\n\n")}
    return "\n\n".join(blocks[name] for name in names).splitlines()


@functools.cache
def _kernels() -> dict[str, tuple[str, frozenset[str]]]:
    """name -> (source, names of the other kernels it calls), over both runtime modules: their
    functions, and the classes of the training API."""
    texts = [path.read_text(encoding="utf-8") for path in KERNELS]
    kinds = ast.FunctionDef, ast.ClassDef
    functions = [(t.split("\n"), n) for t in texts for n in ast.parse(t).body if isinstance(n, kinds)]
    names = {f.name for _, f in functions}
    out = {}
    for text_lines, f in functions:
        calls = {n.id for n in ast.walk(f) if isinstance(n, ast.Name) and n.id in names} - {f.name}
        out[f.name] = (_segment(text_lines, f), frozenset(calls))
    return out


def _segment(text_lines: list[str], f: ast.stmt) -> str:
    """What ast.get_source_segment gives for a top-level definition (which starts at column 0), without
    splitting the whole file again for each of the 160 definitions: half a second at every codegen."""
    last = text_lines[f.end_lineno - 1].encode()[: f.end_col_offset].decode()  # the offset counts UTF-8 bytes
    return "\n".join([*text_lines[f.lineno - 1 : f.end_lineno - 1], last])


def kernel_names() -> tuple[str, ...]:
    return tuple(_kernels())


def _needed(code: str, also: tuple[str, ...] = ()) -> list[str]:
    """The kernels the code calls (and those named in `also`) and, transitively, the kernels they
    call, in the kernels file's order."""
    kernels = _kernels()
    wanted = set(kernels).intersection([*_CALLED.findall(code), *also])  # one pass over the code
    stack = list(wanted)
    while stack:
        for dep in kernels[stack.pop()][1]:
            if dep not in wanted:
                wanted.add(dep)
                stack.append(dep)
    return [name for name in kernels if name in wanted]


class LayerCode:
    """Each layer's NumPy code, as its op (archc/ops) writes it: the flat class's. The nested
    target (nested_numpy.py) writes a class's code for all its instances at once instead, and
    a block instance's calls."""

    def state(self, node, key: dict[str, str], graph):
        """How the code reads the layer's arrays: under `key`'s prefixes, a tied weight its layer's."""
        return state_ref(node, key, graph)

    def call(self, node, state, args):
        return OPS[node.op].numpy_call(node, state, args)

    def keeping_call(self, node, state, args):
        """The call of the training forward when the op has no training call of its own."""
        return self.call(node, state, args)

    def train_call(self, node, state, args):
        return OPS[node.op].numpy_train_call(node, state, args)

    def keep(self, node, args):
        return OPS[node.op].numpy_keep(node, args)

    def backward(self, node, state, grad, saved):
        return OPS[node.op].numpy_backward(node, state, grad, saved)


def generate(network, flat: bool = False) -> Generated:
    """The module: a class per block of the spec (nested_numpy.py), or with `flat`, or where the
    spec cannot be nested (a layer reads inside a block instance), one class; its state_dict keys
    are the PyTorch target's."""
    if not flat:
        from .nested_numpy import UnnestableError
        from .nested_numpy import generate as nested
        from .tree import ReachError

        try:
            return nested(network)
        except UnnestableError as error:
            return _flat(network, error.keys)
        except ReachError:
            pass
    return _flat(network)


def _flat(network, key: dict[str, str] | None = None) -> Generated:
    """One class, one line per layer in each method; keys as the PyTorch target's, flat unless `key`
    gives each layer's."""
    plan = make_plan(network, reserved_names())
    graph = network.graph
    key = key or plan.attrs
    ties = tuple(Entry(lit(k), lit(v)) for k, v in tied_keys(network, key).items())
    entries, buffers = [], []
    for node in graph:
        if node.op == "input":
            continue
        ins = [graph.nodes[i].shape for i in node.inputs]
        for suffix, value in OPS[node.op].numpy_state(node, ins, Initial(network, node)):
            entries.append(Entry(lit(state_ref(node, key, graph).name(suffix)), value))
            if suffix in OPS[node.op].numpy_buffers:
                buffers.append(lit(state_ref(node, key, graph).name(suffix)))

    def layer(node, args):
        return OPS[node.op].numpy_call(node, state_ref(node, key, graph), args)

    def activation(op, attrs, expr):
        return op.apply_numpy(attrs, expr)

    init_lines = [
        "    def __init__(self, seed=0):",
        "        rng = np.random.default_rng(seed)",
        "        self.rng = rng  # also draws the dropout masks",
        "        self.training = False",
        *lines(Seq("{", "}", tuple(entries), explode=True), 2, "self.state = "),
        *lines(Seq("{", "}", ties, explode=len(ties) > 1), 2, "self.tied = ", "  # key -> the array's"),
        "        self.grads = {}  # parameter key -> gradient, added to by backward()",
        "        self.saved = {}  # what forward keeps for backward, by layer",
        "        self.requires_grad = False  # True: forward keeps it in eval mode too",
    ]
    head = [
        *header(network, "NumPy"),
        f'"""{network.name} in NumPy: `build_model(seed)` returns one; it needs nothing but numpy."""',
        "",
        "import numpy as np",
        "",
        "",
        f"class {plan.cls}:",
        f'    """{network.name}, generated by archc.',
        "",
        *(f"    {line}" for line in shapes_text(plan)),
        "",
        "    Arrays live in `state`, under the keys and shapes of the PyTorch model's",
        "    state_dict(), so weights move between the two by key.",
        "",
        *(f"    {line}" for line in describe(network, 84)),
        "",
        *(f"    {line}".rstrip() for line in TRAINING_DOC),
        '    """',
        "",
        *lines(Seq("(", ")", tuple(buffers), explode=len(buffers) > 1), 1, "buffers = ", "  # no gradient"),
        "",
        *init_lines,
        "",
        *signature(plan),
        "        if self.training or self.requires_grad:",
        *assignment("return ", Call("self._forward_keeping", tuple(plan.params)), 3),
    ]
    if entries:
        head.append("        s = self.state")
    body, where = forward_body(plan, layer, activation, 2, 0)
    first = len(head) + 1
    tail = [
        "",
        *training_methods(plan, key),
        "",
        *METHODS,
        "",
        "",
        "def build_model(seed=0):",
        f'    """A new {plan.cls}; the same seed gives the same weights."""',
        f"    return {plan.cls}(seed)",
    ]
    kernels = _kernels()
    used = _needed("\n".join(init_lines + body + tail), TRAINING_API)
    for name in used:
        tail += ["", "", *kernels[name][0].splitlines()]
    code = "\n".join(head + body + tail) + "\n"
    return Generated(code, [(name, var, first + offset) for name, var, offset in where], key)


def _nested_keys(network, flat: dict[str, str]) -> dict[str, str]:
    """The nested PyTorch target's keys (`layer1.0.conv1`), or `flat` where it is generated flat."""
    from .tree import ReachError, build, keys

    try:
        return keys(build(network))
    except ReachError:
        return flat


# The training API every generated model carries (numpy_backward.py), called by the user, not the model.
TRAINING_API = (
    "cross_entropy",
    "mse_loss",
    "binary_cross_entropy_with_logits",
    "SGD",
    "Adam",
    "AdamW",
    "StepLR",
    "CosineAnnealingLR",
)

TRAINING_DOC = """Training, as in PyTorch (docs/language.md, section 16):

    model.train()
    opt = SGD(model, lr=0.1, momentum=0.9)
    opt.zero_grad()
    out = model(x)  # while training, forward keeps what backward needs
    loss, grad = cross_entropy(out, y)
    model.backward(grad, input_grads=False)  # adds into model.grads
    opt.step()
""".strip("\n").splitlines()


def _reached(plan) -> set[str]:
    """The layers (and inputs) a returned output depends on: those a gradient flows back to."""
    graph = plan.network.graph
    reached = set(plan.outputs)
    for node in reversed(list(graph)):
        if node.name in reached:
            reached.update(node.inputs)
    return reached


class _Trainer:
    """The two training methods of a model: `_forward_keeping`, one statement per layer (and per
    `-> act`), each after what its backward will need is kept under the layer's name; and
    `backward`, the layers' backward lines in reverse, each popping what was kept for it.
    `code` writes each layer's code; `arrays` and `saved` are the attributes that hold the class's
    own arrays and what its forward keeps. The network's own class (`root`) takes `input_grads`:
    False when the caller wants no gradient of the inputs (a training loop; torch computes none for
    an input that does not require grad), which a first convolution then skips."""

    def __init__(self, plan, key, code=None, arrays="self.state", saved="self.saved", root=True):
        self.plan = plan
        self.root = root
        self.key = key
        self.reached = _reached(plan)
        self.written: set[str] = set()  # see backward
        self.code = code or LayerCode()
        self.arrays, self.saved = arrays, saved

    def _keeps(self, node):
        """(training forward's call or None, expression kept before the layer or None)."""
        if node.name not in self.reached:
            return None, None  # no gradient reaches it: it keeps nothing
        args = [self.plan.vars[i] for i in node.inputs]
        state = self.code.state(node, self.key, self.plan.network.graph)
        train = self.code.train_call(node, state, args)
        return train, None if train is not None else self.code.keep(node, args)

    def _act_keeps(self, node) -> bool:
        return (
            node.activation is not None and node.name in self.reached and bool(OPS[node.activation[0]].numpy_function)
        )

    def forward(self) -> list[str]:
        plan = self.plan
        head = [
            *lines(Call("def _forward_keeping", ("self", *plan.params)), 1, "", ":"),
            '        """forward, keeping what backward needs, by layer (while training or requires_grad)."""',
        ]
        body = []
        nodes = plan.computed
        last_read = {plan.vars[i]: k for k, node in enumerate(nodes) for i in node.inputs}
        kept = {"x", *plan.params, *(plan.vars[n] for n in plan.outputs)}
        for k, node in enumerate(nodes):
            args, var = [plan.vars[i] for i in node.inputs], plan.vars[node.name]
            state = self.code.state(node, self.key, self.plan.network.graph)
            name = lit(self.key[node.name])
            train, keep = self._keeps(node)
            out = body
            if keep is not None:
                out += _stored(f"keep[{name}]", keep, 2)
            expr = self.code.keeping_call(node, state, args) if train is None else train
            if var is None:  # nothing reads it: computed as the spec says, then dropped
                if node.activation is not None:
                    expr = OPS[node.activation[0]].apply_numpy(node.activation[1], expr)
                if not is_identifier(flat(expr)):
                    out += lines(expr, 2, "", f"  # {UNUSED}")
            else:
                if train is not None:
                    out += _unpacking([var, f"keep[{name}]"], expr, 2)
                elif flat(expr) != var:
                    out += assignment(f"{var} = ", expr, 2)
                if node.activation is not None:
                    act, attrs = node.activation
                    if self._act_keeps(node):
                        out += _stored(f"keep[{lit(f'{self.key[node.name]}.{act}')}]", var, 2)
                    value = OPS[act].apply_numpy(attrs, var)
                    if flat(value) != var:
                        out += assignment(f"{var} = ", value, 2)
            reads = dict.fromkeys(args)
            out += deletion([v for v in reads if last_read[v] == k and v not in kept], 2)
        body.append("        return " + ", ".join(plan.vars[n] for n in plan.outputs))
        text = "\n".join(body)
        start = [f"        s = {self.arrays}"] if _uses("s", text) else []
        start.append(f"        keep = {self.saved} = {{}}" if _uses("keep", text) else f"        {self.saved} = {{}}")
        return head + start + body

    def _grad(self, name: str) -> str:
        """The variable of a value's gradient: `grad` along the chain of `x` (and for the one output
        computed last), `d_<variable>` for a named value."""
        var = self.plan.vars[name]
        if var == "x" or (self.plan.returns_last and name == self.plan.outputs[0]):
            return "grad"
        return f"d_{var}"

    def backward(self) -> list[str]:
        plan = self.plan
        outs = [self._grad(n) for n in plan.outputs]
        ins = [n.name for n in plan.network.graph.inputs]
        out = [
            *lines(Call("def backward", ("self", *outs, *self._skip_args())), 1, "", ":"),
            '        """The gradients of the inputs from those of the outputs, after a forward that kept',
            "        what backward needs (model.train(), or requires_grad); the parameters' gradients",
            "        are added into `grads`, under their state_dict keys.",
            *(["        input_grads=False returns None and skips the work only those gradients need."] * self.root),
            '        """',
        ]
        pending = set(outs)  # gradients computed and not yet passed on
        self.written = set()  # the parameters' keys whose gradient a line above assigned
        body = []
        for node in reversed(plan.computed):
            if node.name in self.reached:
                body += self._layer_backward(node, pending)
        text = "\n".join(body)
        names = [(n, v) for n, v in (("s", self.arrays), ("keep", self.saved), ("grads", "{}")) if _uses(n, text)]
        if names:
            out.append(f"        {', '.join(n for n, _ in names)} = {', '.join(v for _, v in names)}")
        # an input no output depends on gets zeros, of the size and type of the batch an output's
        # gradient carries (not token ids', nor a param's); where none carries it, None, as torch's .grad
        shapes = [plan.network.layer(n).shape for n in plan.outputs]
        batched = [g for s, g in zip(shapes, outs) if s.vocab is None and getattr(s, "batched", True)]
        results, unread = [], []
        for name in ins:
            shape = plan.network.layer(name).shape
            if shape.vocab is not None:  # token ids: integers, which have no gradient
                results.append("None")
                continue
            zeros = Call("np.zeros", (f"(len(first), {', '.join(map(str, shape))})", "first.dtype"))
            if self._grad(name) not in pending:
                if not batched:
                    results.append("None")
                    continue
                unread.append((self._grad(name), zeros))
            results.append(self._grad(name))
        if unread:
            out += assignment("first = ", batched[0], 2)
        out += body
        out.append("        self.accumulate(grads)" if _uses("grads", text) else "        self.accumulate({})")
        for target, zeros in unread:
            out += assignment(f"{target} = ", zeros, 2)
        if self.root and results != ["None"]:
            out += ["        if not input_grads:", "            return None"]
        out += _returned(results, 2)
        return out

    def _skip_args(self) -> tuple[str, ...]:
        return ("*", "input_grads=True") if self.root else ()

    def _skipping(self, node, step):
        """The step with `input_grads` passed on, when the layer alone reads a network input and its
        kernel can skip that input's gradient (Backward.skip_input)."""
        graph = self.plan.network.graph
        first = node.inputs[0] if node.inputs else None
        if not (self.root and step.skip_input and first in graph.nodes and graph.nodes[first].op == "input"):
            return step
        if len(graph.consumers(first)) != 1 or first in self.plan.outputs:
            return step
        expr = step.expr
        return replace(step, expr=replace(expr, kwargs=(*expr.kwargs, (step.skip_input, "input_grads"))))

    def _layer_backward(self, node, pending: set[str]) -> list[str]:
        grad = self._grad(node.name)
        pending.discard(grad)
        name = self.key[node.name]
        out = []
        if self._act_keeps(node):
            act, attrs = node.activation
            saved = Call("keep.pop", (lit(f"{name}.{act}"),))
            out += assignment(f"{grad} = ", OPS[act].backward_numpy(attrs, grad, saved), 2)
        train, keep = self._keeps(node)
        saved = Call("keep.pop", (lit(name),)) if train is not None or keep is not None else None
        state = self.code.state(node, self.key, self.plan.network.graph)
        step = self._skipping(node, self.code.backward(node, state, grad, saved))
        targets, sums, inputs, shared = [], [], [], []
        by_key = []
        for r in step.returns:
            if r is None:
                targets.append("_")
            elif r is ...:  # a dict of the layer's gradients under their state_dict keys
                by_key.append(f"grads_{len(by_key) + 1}" if by_key else "by_key")
                targets.append(by_key[-1])
            elif isinstance(r, str) and state.name(r) in self.written:  # a tied weight: this use's gradient adds
                shared.append((state.name(r), f"shared{len(shared) + 1}" if shared else "shared"))
                targets.append(shared[-1][1])
            elif isinstance(r, str):
                self.written.add(state.name(r))
                targets.append(f"grads[{lit(state.name(r))}]")
            elif isinstance(r, tuple):  # a list of arrays' gradients (attention's q, k, v projections)
                targets.append("[" + ", ".join(f"grads[{lit(state.name(s))}]" for s in r) + "]")
            else:
                target = self._grad(node.inputs[r])
                if target in pending or target in targets:  # read by several layers: the gradients add up
                    sums.append((target, f"more{len(sums) + 1}" if sums else "more", node.inputs[r]))
                    target = sums[-1][1]
                else:
                    inputs.append(target)
                targets.append(target)
        if isinstance(step.expr, Seq):  # one gradient each (add, shortcut): a line each, `grad` last
            pairs = sorted(zip(targets, step.expr.items), key=lambda pair: pair[0] == grad)
            for target, value in pairs:
                if target != flat(value):
                    out += _assigned(target, value, 2)
        elif len(targets) > 1:
            out += _unpacking(targets, step.expr, 2)
        elif not targets:  # nothing to pass on (a block of token ids' backward): the call alone
            out += lines(step.expr, 2)
        elif flat(step.expr) != targets[0]:
            out += assignment(f"{targets[0]} = ", step.expr, 2)
        for target, more, value in sums:
            out += assignment(f"{target} = ", Sum(self._shared_sum(value, (target, more))), 2)
        for key, term in shared:
            out += assignment(f"grads[{lit(key)}] = ", Sum((f"grads[{lit(key)}]", term)), 2)
        out += [f"        grads.update({target})" for target in by_key]
        pending.update(inputs)
        dead = [grad] if grad != "grad" and grad not in targets else []
        return out + deletion(dead + [more for _, more, _ in sums] + [term for _, term in shared] + by_key, 2)

    def _shared_sum(self, name: str, terms: tuple[str, ...]) -> tuple:
        """The terms of a gradient's sum. A value the batch shares (a `param`, 1 x shape) gets one
        gradient of its own shape from an output, and one of the batch's from a layer it was
        broadcast into: each is summed to its shape first, as autograd does, or the sum would
        broadcast the first over the batch."""
        shape = self.plan.network.graph.nodes[name].shape
        if getattr(shape, "batched", True):
            return terms
        return tuple(Call("broadcast_backward", (t, lit((1, *shape)))) for t in terms)


def _uses(name: str, code: str) -> bool:
    """Whether the code reads the local `name` (not a key or an attribute spelled the same)."""
    return re.search(rf'(?<![\w."]){name}(?![\w"])', code) is not None


def _unpacking(targets: list[str], expr, depth: int) -> list[str]:
    """`a, b, c = expr` formatted as ruff formats it: split inside the call while its first line
    fits, else the call in parentheses on lines of its own, else the targets one a line."""
    pad, head = INDENT * depth, ", ".join(targets) + " = "
    out = lines(expr, depth, head)
    if len(out[0]) <= pyexpr.WIDTH:
        return out
    if len(pad + head + "(") <= pyexpr.WIDTH:
        return [pad + head + "(", *lines(expr, depth + 1), pad + ")"]
    return [pad + "(", *(line for t in targets for line in _stored(t, None, depth + 1)), *lines(expr, depth, ") = ")]


def _assigned(target: str, value, depth: int) -> list[str]:
    """`target = value`; a subscript of a name that makes the line too long has its brackets
    split, as ruff splits them (`d_x = grad[` / `:, :3` / `]`), however long the target."""
    out = assignment(f"{target} = ", value, depth)
    if len(out[0]) <= pyexpr.WIDTH or not isinstance(value, Index) or not isinstance(value.value, str):
        return out
    pad = INDENT * depth
    return [f"{pad}{target} = {value.value}[", pad + INDENT + value.index, pad + "]"]


def _stored(target: str, value, depth: int) -> list[str]:
    """`name[key] = value` as ruff formats it: the value split while the first line fits, else
    the key on a line of its own; value None: the target alone, as an item of a tuple of targets."""
    pad = INDENT * depth
    name, _, key = target.partition("[")
    if value is None:
        if len(pad + target + ",") <= pyexpr.WIDTH or not key:
            return [pad + target + ","]
        return [pad + name + "[", pad + INDENT + key[:-1], pad + "],"]
    out = assignment(f"{target} = ", value, depth)
    if len(out[0]) <= pyexpr.WIDTH:
        return out
    if len(pad + target + " = (") <= pyexpr.WIDTH:
        return [pad + target + " = (", *lines(value, depth + 1), pad + ")"]
    return [pad + name + "[", pad + INDENT + key[:-1], *assignment("] = ", value, depth)]


def _returned(names: list[str], depth: int) -> list[str]:
    """`return a, b`, or as ruff splits it, one name a line in parentheses."""
    pad = INDENT * depth
    if names == ["None"]:  # token ids alone have no gradient: the bare end of the function returns None
        return []
    if len(pad + "return " + ", ".join(names)) <= pyexpr.WIDTH or len(names) == 1:
        return [pad + "return " + ", ".join(names)]
    return [pad + "return (", *(f"{pad}{INDENT}{n}," for n in names), pad + ")"]


def training_methods(plan, key) -> list[str]:
    trainer = _Trainer(plan, key)
    return [*trainer.forward(), "", *trainer.backward()]
