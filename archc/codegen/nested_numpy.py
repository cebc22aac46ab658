"""The NumPy target, nested as the spec is: one class per block, as the PyTorch target's (nested_torch.py).

The parts are those of tree.py: one per block instance, each with a graph of its
own, so a class's forward, training forward and backward are written by the code
that writes the flat class's (`forward_body`, `_Trainer`), a block instance being
one line (`x = self.layer1(x)`, `grad = self.layer1.backward(grad)`).

Instances of a block whose code agrees but for its values (sizes, strides, the
spreads of their first weights) share one class; a block whose instances differ
otherwise (a branch of an `if` taken in some only) gets one class for each form.
A class takes each value that differs between its instances as a constructor
argument: the block's input channels (`in_channels`) or one of its parameters
where that has the value in every instance, else a value of its own (`value1`).
A repeat of blocks (a numbered chain of instances, an nn.Sequential in the
PyTorch target) is a `Sequential`: a list of instances.

Each class holds its own arrays (`arrays`), under keys relative to it; `state`,
`grads` and `saved` are views of all of them under the full state_dict keys
(`layer1.0.conv1.weight`), so weights, gradients and optimisers work by key as
with the flat class.
"""

from __future__ import annotations

import re
from contextlib import nullcontext
from dataclasses import dataclass, field, fields, is_dataclass, replace

from ..ops import OPS
from ..ops.base import Backward
from ..ops.emit import explicit_defaults
from .common import (
    Generated,
    StateRef,
    forward_body,
    header,
    make_plan,
    reserved_names,
    shapes_text,
    signature,
    tied_keys,
)
from .init import Initial, describe
from .names import Namespace, class_name
from .nested_torch import IN_CHANNELS, _camel, _defaults_left_out, _norm, _View
from .numpy_target import TRAINING_API, TRAINING_DOC, LayerCode, _kernels, _needed, _Trainer, _uses, methods
from .pyexpr import Call, Entry, Seq, lines, lit
from .tree import CALL, Part, build, keys

# What every class of the model shares, as torch's nn.Module: its arrays, its blocks, the views by key.
MODULE = [
    *"""
class Module:
    \"\"\"What every class of the model shares, as torch's nn.Module does: its own arrays in
    `arrays` (keys relative to it), its blocks as attributes, and views of them all under
    the full state_dict keys: `state`, `grads` (gradients) and `saved` (what forward kept).\"\"\"

    buffers = ()  # the keys of its arrays that are buffers: no gradient
    requires_grad = False  # True: forward keeps what backward needs in eval mode too
    order = ()  # its layers' and blocks' names as torch's module holds them, if not layers first

    def __init__(self, rng):
        self.rng = rng  # draws the first weights, and the dropout masks
        self.training = False
        self.arrays = {}
        self.kept = {}  # what its own forward keeps for backward, by layer
        self.gradients = {}  # its own arrays' gradients, added to by backward()
        self.tied = {}  # (the network's) key of a tied weight -> the key of the array it is
""".splitlines(),
    "",
    *methods("__call__"),
    *"""
    def blocks(self):
        \"\"\"(name, block) of each block it holds, in the order it made them.\"\"\"
        return [(name, v) for name, v in vars(self).items() if isinstance(v, Module)]

    def modules(self, prefix=""):
        \"\"\"(key prefix, module) of itself and of every block inside it.\"\"\"
        yield prefix, self
        for name, block in self.blocks():
            yield from block.modules(f"{prefix}{name}.")

    def entries(self, prefix=""):
        \"\"\"(full key, module, its own key) of every array, in the order of torch's state_dict(): a
        module's own parameters (a key of no dot), then its layers' arrays and its blocks' in the
        order torch's module holds them (`order`: where none is given, its layers', then its blocks').\"\"\"
        groups = {}
        for key in self.arrays:
            name, dot, _ = key.partition(".")
            groups.setdefault(name if dot else "", []).append(key)
        blocks = dict(self.blocks())
        for name in dict.fromkeys(["", *(self.order or groups), *blocks]):
            if name in blocks:
                yield from blocks[name].entries(f"{prefix}{name}.")
            else:
                yield from ((prefix + key, self, key) for key in groups.get(name, ()))

    def _view(self, attribute):
        modules = self.modules()
        return {p + k: v for p, m in modules for k, v in getattr(m, attribute).items()}

    @property
    def state(self):
        \"\"\"Every array under its state_dict key (a tied weight under its layer's alone): the same
        objects, which optimisers update.\"\"\"
        return {
            key: module.arrays[own]
            for key, module, own in self.entries()
            if key not in self.tied
        }

    @state.setter
    def state(self, state):
        for key, module, own in self.entries():
            module.arrays[own] = state[self.tied.get(key, key)]

    @property
    def grads(self):
        \"\"\"Every gradient backward added, under its parameter's state_dict key: a tied weight's
        uses' added up under its layer's, as torch adds them into the one parameter's .grad.\"\"\"
        out = {}
        for key, module, own in self.entries():
            if own in module.gradients:
                key, grad = self.tied.get(key, key), module.gradients[own]
                out[key] = out[key] + grad if key in out else grad
        return out

    def tie(self, key, shared):
        \"\"\"Makes the array under `key` the one under `shared`, as torch ties a weight
        (`lm_head.weight = transformer.wte.weight`): one array, under both keys of state_dict().\"\"\"
        self.tied[key] = shared
        where = {k: (module, own) for k, module, own in self.entries()}
        (module, own), (owner, theirs) = where[key], where[shared]
        module.arrays[own] = owner.arrays[theirs]

    @property
    def saved(self):
        return self._view("kept")

    @saved.setter
    def saved(self, saved):
        \"\"\"Replaces what forward kept; `model.saved = {}` forgets it.\"\"\"
        owners = sorted(self.modules(), key=lambda pair: -len(pair[0]))
        for _, module in owners:
            module.kept = {}
        for key, value in saved.items():
            prefix, module = next((p, m) for p, m in owners if key.startswith(p))
            module.kept[key[len(prefix) :]] = value

    def train(self, mode=True):
        \"\"\"Training: batch norm uses and updates batch statistics, dropout drops.\"\"\"
        for _, module in self.modules():
            module.training = mode
        return self
""".splitlines(),
    "",
    *methods("eval"),
    *"""
    def zero_grad(self):
        \"\"\"Forgets every gradient, as torch's zero_grad(): the next backward starts afresh.\"\"\"
        for _, module in self.modules():
            module.gradients = {}

    def accumulate(self, grads):
        \"\"\"Adds a backward's gradients of its own arrays, as torch adds into each .grad.\"\"\"
        for key, value in grads.items():
            own = self.gradients
            own[key] = own[key] + value if key in own else value

    def parameters(self):
        \"\"\"The trainable arrays of `state`, the same objects (optimisers update them in place):
        every entry but the buffers (running statistics) of each module.\"\"\"
        buffers = {p + key for p, m in self.modules() for key in m.buffers}
        return {key: value for key, value in self.state.items() if key not in buffers}

    def state_dict(self):
        \"\"\"A copy of every array, with the keys, shapes and order of torch's state_dict() (a tied
        weight's too, where its layer holds it).\"\"\"
        return {key: module.arrays[own].copy() for key, module, own in self.entries()}
""".splitlines(),
    "",
    *methods("load_state_dict", "save", "load"),
][1:]

# the class of a repeat, written when the network has one
SEQUENTIAL = '''
class Sequential(Module):
    """Blocks run one after another (a repeat): `model.layer1[0]` is the first."""

    def __init__(self, *blocks):
        super().__init__(None)
        self.list = list(blocks)

    def __getitem__(self, index):
        return self.list[index]

    def blocks(self):
        return [(str(i), block) for i, block in enumerate(self.list)]

    def forward(self, x):
        if self.training or self.requires_grad:
            return self._forward_keeping(x)
        for block in self.list:
            x = block(x)
        return x

    def _forward_keeping(self, x):
        for block in self.list:
            x = block._forward_keeping(x)
        return x

    def backward(self, grad):
        for block in reversed(self.list):
            grad = block.backward(grad)
        return grad
'''.strip("\n").splitlines()

# the attributes and methods of Module and Sequential: a block stored under one of these names would
# hide it, so such a spec gets the flat class
MEMBERS = frozenset(re.findall(r"(?:def |self\.|^    )(\w+)", "\n".join(MODULE + SEQUENTIAL), re.M))
# the fields of an expression tree (pyexpr.py) that are code, not values: the same in every instance
NAMES = frozenset({"func", "index", "open", "close", "name", "op", "sign", "explode", "target", "returns"})
_INT_TUPLE = re.compile(r"\((-?\d+)(?:, (-?\d+))*(,?)\)")


class UnnestableError(Exception):
    """A block instance's name is one of Module's members (its attribute would hide the member): the
    spec gets the flat class, with the nested keys (`keys`) all the same."""

    def __init__(self, keys: dict[str, str]):
        super().__init__(keys)
        self.keys = keys


@dataclass
class _Slot:
    name: str  # the constructor argument, and the attribute forward reads it from
    values: list[str]  # its value in each instance, as code


@dataclass(eq=False)
class _Class:
    name: str
    parts: list[Part]
    slots: list[_Slot] = field(default_factory=list)
    used: set = field(default_factory=set)  # the slots the code reads
    read: set = field(default_factory=set)  # those its methods read (stored as attributes)
    taken: set = field(default_factory=set)  # names a slot cannot take: its blocks' attributes
    lines: list[str] = field(default_factory=list)
    index: dict = field(default_factory=dict)  # id(part) -> its place in `parts` (its values' index)


def generate(network) -> Generated:
    """The nested module; ReachError where the spec cannot be nested, UnnestableError where its
    classes cannot be (a block instance named as a member of Module)."""
    root = build(network)
    if any(attr in MEMBERS for part in _parts(root) for _item, attr in _children(part)):
        raise UnnestableError(keys(root))
    reserved = reserved_names()
    taken = {*reserved, "Module", "Sequential", *(n.local for n in network.graph), *(n.name for n in network.graph)}
    namer = Namespace(taken)
    classes: list[_Class] = []
    forms: dict = {}
    _classify(root, network, forms, classes, namer)
    for cls in classes:
        cls.lines = _class_lines(cls, network, reserved)
    top = _Writer(network, [root], None, reserved)
    network_cls = namer.name(class_name(network.name), fallback="Network")
    plan = top.plan
    doc = [
        f'    """{network.name}, generated by archc.',
        "",
        *(f"    {line}" for line in shapes_text(plan)),
        "",
        "    Each block of the spec is a class; arrays live in the class that computes them, and",
        "    `state` holds them all under the keys and shapes of the PyTorch model's state_dict(),",
        "    so weights move between the two by key.",
        "",
        *(f"    {line}" for line in describe(network, 84)),
        "",
        *(f"    {line}".rstrip() for line in TRAINING_DOC),
        '    """',
    ]
    init = [
        "    def __init__(self, seed=0):",
        "        rng = np.random.default_rng(seed)",
        "        super().__init__(rng)",
        *top.init(),
        # a tied weight: its layer's array, as torch's `self.lm_head.weight = self.transformer.wte.weight`
        *(f"        self.tie({lit(k)}, {lit(v)})" for k, v in tied_keys(network, keys(root)).items()),
    ]
    body = [f"class {network_cls}(Module):", *doc, *top.attributes(), "", *init, "", *top.methods()]
    everything = [line for cls in classes for line in [*cls.lines, "", ""]] + body
    code_lines = [
        *header(network, "NumPy"),
        f'"""{network.name} in NumPy: `build_model(seed)` returns one; it needs nothing but numpy."""',
        "",
        "import numpy as np",
        "",
        "",
        *MODULE,
        "",
        "",
        *([*SEQUENTIAL, "", ""] if any("Sequential(" in line for line in everything) else []),
        *everything,
        "",
        "",
        "def build_model(seed=0):",
        f'    """A new {network_cls}; the same seed gives the same weights."""',
        f"    return {network_cls}(seed)",
    ]
    kernels = _kernels()
    for name in _needed("\n".join(code_lines), TRAINING_API):
        code_lines += ["", "", *kernels[name][0].splitlines()]
    return Generated("\n".join(code_lines) + "\n", [], keys(root))


def _is_list(part: Part) -> bool:
    """Whether the part is a repeat: block instances numbered 0, 1, ..., each reading the one before."""
    items = part.items
    return (
        part.instance is not None
        and part.numbered
        and part.is_chain()
        and all(isinstance(item, Part) and item.name == str(i) for i, item in enumerate(items))
    )


def _classify(part: Part, network, forms: dict, classes: list, namer: Namespace) -> None:
    """Every part's class (or list), children first: instances of one form share a class."""
    for item in part.items:
        if isinstance(item, Part):
            _classify(item, network, forms, classes, namer)
    if part.instance is None or _is_list(part):
        part.draft = None
        return
    key = (part.instance.block, _fingerprint(part, network))
    if key not in forms:
        name = namer.name(class_name(_camel(part.instance.block)), key=str(len(classes)))
        forms[key] = _Class(name, [])
        classes.append(forms[key])
    forms[key].index[id(part)] = len(forms[key].parts)
    forms[key].parts.append(part)
    part.draft = forms[key]


def _parts(part: Part):
    yield part
    for item in part.items:
        if isinstance(item, Part):
            yield from _parts(item)


def _children(part: Part):
    return [(item, part.attrs[item.name]) for item in part.items if isinstance(item, Part)]


def _fingerprint(part: Part, network) -> tuple:
    """What instances of one class share: the graph, and each layer's code with its values left out."""
    writer = _Writer(network, [part], None, ())
    children = {child.name: child for child, _attr in _children(part)}
    out = [tuple(part.graph.declared_outputs)]
    for node in part.graph:
        act = None if node.activation is None else (node.activation[0], repr(sorted(node.activation[1].items())))
        out.append((node.name, node.op, tuple(node.inputs), act, part.attrs.get(node.name)))
        if node.op == CALL:
            out.append(_child_key(children[node.name]))
        elif node.op != "input":
            out.append(tuple(_skeleton(tree) for tree in writer.trees(node)))
    return tuple(out)


def _child_key(child: Part):
    if child.draft is None:  # a list
        return ("list", tuple(id(c.draft) for c in child.items))
    return id(child.draft)


def _skeleton(tree):
    """The tree with its values left out (not its names: a function's, a subscript's)."""
    if isinstance(tree, bool | int | float) or (isinstance(tree, str) and not _INT_TUPLE.fullmatch(tree)):
        return "value"
    if isinstance(tree, tuple):
        return tuple(_skeleton(t) for t in tree)
    if isinstance(tree, Call):  # a keyword's name is code
        return ("Call", tree.func, _skeleton(tree.args), tuple((k, _skeleton(v)) for k, v in tree.kwargs))
    if is_dataclass(tree):
        parts = (getattr(tree, f.name) if f.name in NAMES else _skeleton(getattr(tree, f.name)) for f in fields(tree))
        return (type(tree).__name__, *parts)
    if isinstance(tree, str):
        return ("tuple", len(_ints(tree)))
    return repr(tree)


def _ints(text: str) -> list[str]:
    return re.findall(r"-?\d+", text)


def _split(tree):
    """The tree with each tuple of numbers (a shape) as a literal of its items: each may be a value of its own."""
    if isinstance(tree, str) and _INT_TUPLE.fullmatch(tree):
        items = tuple(_ints(tree))
        return Seq("(", ",)" if len(items) == 1 else ")", items)
    if isinstance(tree, tuple):
        return tuple(_split(t) for t in tree)
    if is_dataclass(tree) and not isinstance(tree, type):
        return replace(tree, **{f.name: _split(getattr(tree, f.name)) for f in fields(tree) if f.name not in NAMES})
    return tree


def _abstract(trees: list, choose):
    """One tree for all instances: each value that differs between them replaced by `choose(values)`."""
    first = trees[0]
    if isinstance(first, bool | int | float | str) or first is None:
        values = [_norm(t) if not isinstance(t, bool) else lit(t) for t in trees]
        return first if len(set(values)) == 1 else choose(values)
    if isinstance(first, tuple):
        return tuple(_abstract([t[i] for t in trees], choose) for i in range(len(first)))
    if is_dataclass(first):
        values = [f.name for f in fields(first) if f.name not in NAMES]
        return replace(first, **{name: _abstract([getattr(t, name) for t in trees], choose) for name in values})
    return first


class _Writer(LayerCode):
    """The code of one class for all its instances (`parts`, of one form), each layer's written by
    its op for every instance and made one by `_abstract`; `cls` None for the network's own class."""

    def __init__(self, network, parts: list[Part], cls: _Class | None, reserved):
        self.network, self.parts, self.cls = network, parts, cls
        self.part = parts[0]
        self.graph = self.part.graph
        self.plan = make_plan(_View(self.part.name or network.name, self.graph), tuple(reserved))
        self.prefix = ""  # `self.` in methods: where they read a constructor argument
        # each instance's layers by their name in it (local) -> their name in the network
        self.globals = [{i.local: i.name for i in part.items if not isinstance(i, Part)} for part in parts]
        self.position = {id(item): i for i, item in enumerate(self.part.items)}
        self.arrays_of: dict[str, tuple] = {}  # layer -> its arrays (_entries), written once: for __init__

    def _choose(self, values: list[str]) -> str:
        cls = self.cls
        slot = next((s for s in cls.slots if s.values == values), None)
        if slot is None:
            names = Namespace({*MEMBERS, *cls.taken, *(s.name for s in cls.slots)})
            slot = _Slot(names.name("value", key=str(len(cls.slots))), values)
            cls.slots.append(slot)
        cls.used.add(slot.name)
        if self.prefix:
            cls.read.add(slot.name)
        return self.prefix + slot.name

    def _one(self, node, make):
        """make(node of an instance, the instance's index) for every instance, as one tree."""

        def each(explicit: bool):
            out = []
            for k, part in enumerate(self.parts):
                with explicit_defaults() if explicit else nullcontext():
                    out.append(_split(make(part.graph.nodes[node.name], k)))
            return out

        trees = each(True)
        if len(trees) == 1 or all(t == trees[0] for t in trees):
            return each(False)[0]
        tree = _abstract(trees, self._choose)
        return _leave_defaults(tree, each(False))

    def _access(self, name: str) -> str:
        attr = self.part.attrs[name]
        return f"self.{attr}" if attr.isidentifier() else f"getattr(self, {lit(attr)})"

    # -- LayerCode: the code of each layer, and of each block instance -------------------------------

    def state(self, node, key, graph):
        """Its own arrays: a tied weight too, which the network's class makes its layer's (Module.tie)."""
        return StateRef(key[node.name])

    def call(self, node, state, args):
        if node.op == CALL:
            return Call(self._access(node.name), tuple(args))
        return self._one(node, lambda n, _p: OPS[n.op].numpy_call(n, state, args))

    def keeping_call(self, node, state, args):
        if node.op == CALL:
            return Call(f"{self._access(node.name)}._forward_keeping", tuple(args))
        return self.call(node, state, args)

    def train_call(self, node, state, args):
        if node.op == CALL:
            return None
        return self._one(node, lambda n, _p: OPS[n.op].numpy_train_call(n, state, args))

    def keep(self, node, args):
        if node.op == CALL:
            return None
        return self._one(node, lambda n, _p: OPS[n.op].numpy_keep(n, args))

    def backward(self, node, state, grad, saved):
        if node.op == CALL:  # the gradient of each input, as the class's backward returns them
            return Backward(Call(f"{self._access(node.name)}.backward", (grad,)), _gradients(node, self.graph))
        return self._one(node, lambda n, _p: OPS[n.op].numpy_backward(n, state, grad, saved))

    def _entries(self, node):
        """(key, first value) of a layer's arrays, for every instance as one tree."""
        if node.name not in self.arrays_of:
            self.arrays_of[node.name] = self._write_entries(node)
        return self.arrays_of[node.name]

    def _write_entries(self, node):

        def make(n, k):
            real = self.network.graph.nodes[self.globals[k][n.name]]
            ins = [self.network.graph.nodes[i].shape for i in real.inputs]
            entries = OPS[n.op].numpy_state(real, ins, Initial(self.network, real))
            if not real.attrs.get("tied"):
                return tuple(entries)
            # a tied weight where torch's module holds it, None until the network ties it (Module.tie)
            own = dict(entries)
            untied = replace(real, attrs={**real.attrs, "tied": None})
            written = OPS[n.op].numpy_state(untied, ins, Initial(self.network, real))
            return tuple((suffix, own.get(suffix, "None")) for suffix, _value in written)

        return self._one(node, make)

    def trees(self, node) -> list:
        """Every tree a layer's code is made of, for `_fingerprint`."""
        state, args = StateRef(self.part.attrs[node.name]), list(node.inputs)
        with explicit_defaults():
            out = [tuple(self._entries(node)), self.call(node, state, args), self.train_call(node, state, args)]
            out += [self.keep(node, args), self.backward(node, state, "grad", "saved")]
        return out

    # -- the class ---------------------------------------------------------------------------------

    def _layers(self):
        return [n for n in self.graph if n.op not in ("input", CALL)]

    def init(self) -> list[str]:
        """__init__'s lines after super().__init__: its arrays, then its blocks, in the spec's order."""
        entries, out = [], []
        for node in self._layers():
            state = StateRef(self.part.attrs[node.name])
            entries += [Entry(lit(state.name(suffix)), value) for suffix, value in self._entries(node)]
        if entries:
            out += lines(Seq("{", "}", tuple(entries), explode=True), 2, "self.arrays = ")
        for child, attr in _children(self.part):
            tree = self._one_child(child)
            if attr.isidentifier():
                out += lines(tree, 2, f"self.{attr} = ")
            else:
                out += lines(Call("setattr", ("self", lit(attr), tree)), 2)
        return out

    def _one_child(self, child: Part):
        index = self.position[id(child)]
        return _abstract([_constructor(part.items[index]) for part in self.parts], self._choose_init)

    def _choose_init(self, values):
        prefix, self.prefix = self.prefix, ""
        try:
            return self._choose(values)
        finally:
            self.prefix = prefix

    def attributes(self) -> list[str]:
        """The class's `buffers`, and its `order` where torch's module holds its blocks between its layers."""
        names = [
            lit(StateRef(self.part.attrs[node.name]).name(suffix))
            for node in self._layers()
            for suffix, _value in self._entries(node)
            if suffix in OPS[node.op].numpy_buffers
        ]
        out = []
        if names:
            out += lines(Seq("(", ")", tuple(names), explode=len(names) > 1), 1, "buffers = ", "  # no gradient")
        order = self._order()
        if order:
            out += lines(Seq("(", ")", tuple(map(lit, order))), 1, "order = ", "  # as torch's module holds them")
        return ["", *out] if out else []

    def _order(self) -> list[str]:
        """Its layers (those of arrays under keys of their own) and blocks in the spec's order, which is
        torch's; empty where that is Module's default, its layers' and then its blocks'."""
        attrs, layers, blocks = self.part.attrs, [], []
        for item in self.part.items:
            if isinstance(item, Part):
                blocks.append(attrs[item.name])
            elif item.op != "input" and any(suffix for suffix, _v in self._entries(self.graph.nodes[item.local])):
                layers.append(attrs[item.local])
        spec = [attrs[i.name] if isinstance(i, Part) else attrs[i.local] for i in self.part.items]
        spec = [name for name in spec if name in {*layers, *blocks}]
        return [] if spec == layers + blocks else spec

    def methods(self) -> list[str]:
        """forward, the training forward and backward."""
        self.prefix = "self." if self.cls is not None else ""
        plan, key = self.plan, self.part.attrs
        head = [
            *signature(plan),
            "        if self.training or self.requires_grad:",
            *lines(Call("return self._forward_keeping", tuple(plan.params)), 3),
        ]

        def layer(node, args):
            return self.call(node, StateRef(key[node.name]), args)

        def activation(op, attrs, expr):
            return op.apply_numpy(attrs, expr)

        body, _where = forward_body(plan, layer, activation, 2, 0)
        if _uses("s", "\n".join(body)):
            head.append("        s = self.arrays")
        trainer = _Trainer(plan, key, self, "self.arrays", "self.kept", root=self.cls is None)
        return [*head, *body, "", *trainer.forward(), "", *trainer.backward()]


def _gradients(node, graph) -> tuple:
    """What a block instance's backward returns: each input's gradient, by its index, or None for
    token ids, which have none (a block of token ids alone returns nothing)."""
    out = tuple(None if graph.nodes[i].shape.vocab is not None else k for k, i in enumerate(node.inputs))
    return () if out == (None,) else out


def _leave_defaults(tree, written: list):
    """The tree without the keywords every instance leaves out (at the kernel's default)."""
    if isinstance(tree, Call):
        return _defaults_left_out(tree, written)
    if isinstance(tree, Backward):
        return replace(tree, expr=_leave_defaults(tree.expr, [w.expr for w in written]))
    if isinstance(tree, tuple) and all(isinstance(w, tuple) and len(w) == len(tree) for w in written):
        return tuple(_leave_defaults(t, [w[i] for w in written]) for i, t in enumerate(tree))
    return tree


def _constructor(child: Part):
    """How the parent makes a block instance: its class with its values, or a Sequential of them."""
    if child.draft is None:
        return Call("Sequential", tuple(_constructor(c) for c in child.items))
    cls = child.draft
    index = cls.index[id(child)]
    return Call(cls.name, ("rng", *(s.values[index] for s in cls.slots if s.name in cls.used)))


def _class_lines(cls: _Class, network, reserved) -> list[str]:
    """A block's class: its slots are found while its code is written, then the signature is put first."""
    parts = cls.parts
    block = parts[0].instance.definition
    cls.taken = {attr for _c, attr in _children(parts[0])}
    taken = Namespace({*MEMBERS, *cls.taken, "rng", "np", "self", IN_CHANNELS, *reserved})
    graph = network.graph
    cls.slots = []  # the block's parameters first: `out` reads better than the channels it happens to equal
    for p in block.params:
        values = [q.instance.args.get(p.name) for q in parts]
        values = [_norm(v) if not isinstance(v, str) else lit(v) for v in values]
        if None not in values:
            cls.slots.append(_Slot(taken.name(p.name), values))
    cls.slots.append(_Slot(IN_CHANNELS, [str(graph.nodes[p.instance.input].shape[0]) for p in parts]))
    writer = _Writer(network, parts, cls, reserved)
    init = writer.init()
    methods = writer.methods()
    slots = [s.name for s in cls.slots if s.name in cls.used]
    stored = [f"        self.{name} = {name}" for name in slots if name in cls.read]
    return [
        f"class {cls.name}(Module):",
        f'    """Block `{parts[0].instance.block}` of the spec."""',
        *writer.attributes(),
        "",
        *lines(Call("def __init__", ("self", "rng", *slots)), 1, "", ":"),
        "        super().__init__(rng)",
        *stored,
        *init,
        "",
        *methods,
    ]
