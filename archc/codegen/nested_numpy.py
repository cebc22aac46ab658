"""The NumPy target, nested as the spec is: one class per block, as the PyTorch target's (nested_torch.py).

The parts are those of tree.py: one per block instance, each with a graph of its
own, so a class's forward, training forward and backward are written by the code
that writes the flat class's (`forward_body`, `_Trainer`), a block instance being
one line (`x = self.layer1(x)`, `grad = self.layer1.backward(grad)`).

Its classes are the PyTorch target's (nested_torch.build_classes): the same
instances share a class, under the same name, with the same constructor
arguments (after `rng`); where that class merged forms of a block, told apart
by the block's `if`s, each method here branches on them too, each branch the
code of one form (`if self.use_downsample:`). Within a form, a value that
differs between its instances is one of those arguments, or an expression of
them that the PyTorch constructors hold (`in_channels * t`, stored as an
attribute where a method reads it), else an argument of its own (`value`).
An nn.Sequential of blocks (a repeat) is a `Sequential`, a list of instances;
one that holds layers is computed by the class that builds it (tree.inline),
its arrays that class's (`downsample.0.weight`).

Each class holds its own arrays (`arrays`), under keys relative to it; `state`,
`grads` and `saved` are views of all of them under the full state_dict keys
(`layer1.0.conv1.weight`), so weights, gradients and optimisers work by key as
with the flat class.
"""

from __future__ import annotations

import re
from ast import literal_eval
from contextlib import nullcontext, suppress
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
from .nested_torch import IN_CHANNELS, Loop, _defaults_left_out, _norm, _View, build_classes
from .numpy_target import TRAINING_API, TRAINING_DOC, LayerCode, _kernels, _needed, _Trainer, _uses, methods
from .pyexpr import Call, Entry, Index, Seq, deeper, lines, lit, repeated
from .tree import CALL, Part, build, inline, keys

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
        groups, known = {}, set(self.order)
        for key in self.arrays:
            name, dot, _ = key.partition(".")
            if known:  # (a layer's name may be dotted, `downsample.0`: the longest it starts with)
                name = key.rpartition(".")[0]
                while name and name not in known:
                    name = name.rpartition(".")[0]
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
        self.named_blocks = [(str(i), block) for i, block in enumerate(blocks)]

    def add_module(self, name, block):
        """Appends a block under a name of its own (a stage's `block1-0`), as torch's add_module."""
        self.named_blocks.append((name, block))

    def __getitem__(self, index):
        return self.named_blocks[index][1]

    def blocks(self):
        return list(self.named_blocks)

    def forward(self, x):
        if self.training or self.requires_grad:
            return self._forward_keeping(x)
        for _name, block in self.named_blocks:
            x = block(x)
        return x

    def _forward_keeping(self, x):
        for _name, block in self.named_blocks:
            x = block._forward_keeping(x)
        return x

    def backward(self, grad):
        for _name, block in reversed(self.named_blocks):
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
    """A class of nested_torch.py (`torch`), written in NumPy for the same instances (`parts`, its
    drafts' in this target's tree): the same name and constructor arguments (`slots`, their
    values in each instance), and one argument of its own where no argument nor expression of
    them gives a value that differs between its instances (`extra`)."""

    torch: object
    parts: list[Part]
    slots: list[_Slot] = field(default_factory=list)
    extra: list[_Slot] = field(default_factory=list)
    read: set = field(default_factory=set)  # the slots its methods read (stored as attributes)
    taken: set = field(default_factory=set)  # names a slot cannot take: its blocks' attributes
    # (Python of the class's arguments, its value in each instance): the expressions its PyTorch
    # constructors hold (`in_channels * t`), which __init__ may write for a value as well
    expressions: list = field(default_factory=list)
    computed: dict = field(default_factory=dict)  # such an expression methods read -> the attribute holding it
    index: dict = field(default_factory=dict)  # id(part) -> its place in `parts` (its values' index)

    @property
    def name(self) -> str:
        return self.torch.name


class _List:
    """What a part that is a list of blocks (a repeat, a `Sequential`) is drafted as."""


def generate(network) -> Generated:
    """The nested module; ReachError where the spec cannot be nested, UnnestableError where its
    classes cannot be (a block instance named as a member of Module). Its classes are those of the
    PyTorch target (nested_torch.build_classes), written in NumPy; an nn.Sequential of layers is
    computed in the class that builds it (tree.inline), one of blocks is a `Sequential`."""
    reserved = reserved_names()
    taken = {*reserved, "Module", "Sequential", *(n.local for n in network.graph), *(n.name for n in network.graph)}
    namer = Namespace(taken)
    root = build(network)
    if any(attr in MEMBERS for part in _parts(root) for _item, attr in _children(part)):
        raise UnnestableError(keys(root))
    torch_classes = build_classes(network, root, namer, set(reserved))
    drafts = {id(part.instance): part.draft for part in _parts(root) if part.instance is not None}
    own = build(network)
    inline(own, lambda child: drafts[id(child.instance)].sequential and not _is_list(drafts[id(child.instance)]))
    parts = {id(part.instance): part for part in _parts(own) if part.instance is not None}
    classes = []
    for cls in torch_classes:
        written = _Class(cls, [parts[id(d.part.instance)] for d in cls.drafts])
        written.index = {id(part): i for i, part in enumerate(written.parts)}
        classes.append(written)
        for part in written.parts:
            part.draft = written
    for part in parts.values():
        part.draft = part.draft or _List()
    try:
        by_name = {cls.name: cls for cls in classes}
        lines_of = [
            _chain_lines(cls, by_name) if cls.torch.sequential else _class_lines(cls, network, reserved)
            for cls in classes
        ]
    except _UntoldError:
        raise UnnestableError(keys(root)) from None
    top = _Writer(network, [own], None, reserved)
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
        *(f"        self.tie({lit(k)}, {lit(v)})" for k, v in tied_keys(network, keys(own)).items()),
    ]
    body = [f"class {network_cls}(Module):", *doc, *_class_attributes(top), "", *init, "", *_joined(top.methods())]
    everything = [line for lines in lines_of for line in [*lines, "", ""]] + body
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
        *([*SEQUENTIAL, "", ""] if any(re.search(r"\bSequential[(:)]", line) for line in everything) else []),
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
    return Generated("\n".join(code_lines) + "\n", [], keys(own))


def _is_list(draft) -> bool:
    """Whether an nn.Sequential of the PyTorch target holds blocks alone, each an instance of a
    class: a `Sequential` here (a repeat); one that holds layers is computed by its parent."""
    return draft.sequential and all(isinstance(item, Part) and not item.draft.sequential for item in draft.part.items)


def _parts(part: Part):
    yield part
    for item in part.items:
        if isinstance(item, Part):
            yield from _parts(item)


def _children(part: Part):
    return [(item, part.attrs[item.name]) for item in part.items if isinstance(item, Part)]


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
    """One tree for all instances: each value that differs between them replaced by `choose(values)`,
    a subscript that differs by the slice it takes (`np.s_[:, 0:58]`); _UntoldError where they differ
    in code (a function, a structure), which no value can stand for."""
    first = trees[0]
    if isinstance(first, bool | int | float | str) or first is None:
        values = [_norm(t) if not isinstance(t, bool) else lit(t) for t in trees]
        if len(set(values)) == 1:
            return first
        if all(isinstance(t, str) and t.startswith("np.s_[") and t.endswith("]") for t in trees):
            index = _bounds([t[6:-1] for t in trees], choose)
            if index is not None:
                return f"np.s_[{index}]"
        return choose(values)
    if any(type(t) is not type(first) for t in trees):
        raise _UntoldError
    if isinstance(first, tuple):
        if any(len(t) != len(first) for t in trees):
            raise _UntoldError
        return tuple(_abstract([t[i] for t in trees], choose) for i in range(len(first)))
    if isinstance(first, Index) and any(t.index != first.index for t in trees):
        value = _abstract([t.value for t in trees], choose)
        index = _bounds([t.index for t in trees], choose)
        return Index(value, index if index is not None else choose([f"np.s_[{t.index}]" for t in trees]))
    if is_dataclass(first):
        if any(getattr(t, f.name) != getattr(first, f.name) for t in trees for f in fields(first) if f.name in NAMES):
            raise _UntoldError
        values = [f.name for f in fields(first) if f.name not in NAMES]
        return replace(first, **{name: _abstract([getattr(t, name) for t in trees], choose) for name in values})
    return first


def _bounds(indices: list[str], choose) -> str | None:
    """One index for the instances' slices that differ but for their bounds, each bound that differs
    a value (`0 : self.value`); None where they differ otherwise."""
    if ":" not in indices[0] or len({re.sub(r"-?\d+", "#", index) for index in indices}) > 1:
        return None
    numbers = zip(*(_ints(index) for index in indices), strict=True)
    return _slice(indices[0], [n[0] if len(set(n)) == 1 else choose(list(n)) for n in numbers])


def _slice(index: str, bounds: list[str]) -> str:
    """The index with its numbers replaced by `bounds`, spaced as ruff formats a slice whose bound
    is not a name or a number (`0 : self.value`)."""
    given = iter(bounds)
    text = re.sub(r"-?\d+", lambda _m: next(given), index)
    out = []
    for item in text.split(", "):
        sides = item.split(":")
        if len(sides) == 2 and any(side and not re.fullmatch(r"-?\w+", side) for side in sides):
            left, right = sides
            item = left + (" :" if left else ":") + (f" {right}" if right else "")
        out.append(item)
    return ", ".join(out)


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
        self.among = [cls.index[id(part)] for part in parts] if cls is not None else []  # their places in cls

    def _choose(self, values: list[str]) -> str:
        """A value that differs between the instances: an argument that has it in each, else an
        expression of the arguments (in methods, an attribute __init__ sets to it: one that every
        instance of the class can compute), else an argument of its own."""
        cls = self.cls

        def fits(known: list) -> bool:
            return all(known[i] == v for i, v in zip(self.among, values, strict=True))

        # the block's parameters before its input's channels: `out` reads better than what it equals
        slots = sorted([*cls.slots, *cls.extra], key=lambda s: s.name == IN_CHANNELS)
        slot = next((s for s in slots if fits(s.values)), None)
        usable = [(text, known) for text, known in cls.expressions if not self.prefix or None not in known]
        text = next((text for text, known in usable if fits(known)), None) if slot is None else None
        if text is not None:  # in methods, an attribute __init__ sets to it
            if not self.prefix:
                return text
            if text not in cls.computed:
                cls.computed[text] = self._names().name("value", key=text)
            return self.prefix + cls.computed[text]
        if slot is None:
            names = self._names()
            full = ["None"] * len(cls.parts)
            for i, v in zip(self.among, values, strict=True):
                full[i] = v
            slot = _Slot(names.name("value", key=str(len(cls.extra))), full)
            cls.extra.append(slot)
        if self.prefix:
            cls.read.add(slot.name)
        return self.prefix + slot.name

    def _names(self) -> Namespace:
        """The names an argument or attribute of the class may take."""
        cls = self.cls
        return Namespace({*MEMBERS, *cls.taken, *(s.name for s in [*cls.slots, *cls.extra]), *cls.computed.values()})

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
            if isinstance(tree, Call) and tree.func == "Sequential":  # as the PyTorch target builds it
                tree = repeated(tree, 2)
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

    def buffers(self) -> list[str]:
        """The keys of its arrays that are buffers."""
        return [
            StateRef(self.part.attrs[node.name]).name(suffix)
            for node in self._layers()
            for suffix, _value in self._entries(node)
            if suffix in OPS[node.op].numpy_buffers
        ]

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
        # Module's default groups the arrays of a layer of an nn.Sequential it computes by their first
        # name (`downsample`): right unless such a group is split (`features.0`, `features.1`, ...)
        tops = [name.partition(".")[0] for name in spec]
        runs = [top for i, top in enumerate(tops) if not i or top != tops[i - 1]]
        default = [*dict.fromkeys(name.partition(".")[0] for name in layers), *blocks]
        return [] if runs == default and not any("." in name for name in blocks) else spec

    def methods(self) -> list[tuple[list[str], list[str]]]:
        """forward, the training forward and backward: (its `def` and docstring, its body) each."""
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
        forward = signature(plan)
        return [(forward, [*head[len(forward) :], *body]), _head(trainer.forward()), _head(trainer.backward())]


def _head(method: list[str]) -> tuple[list[str], list[str]]:
    """A method's lines as (its `def` and docstring, its body)."""
    end = next(i for i, line in enumerate(method) if line.endswith(":")) + 1
    if end < len(method) and method[end].lstrip().startswith('"""'):
        close = end
        while not (method[close].endswith('"""') and (close > end or method[close].count('"""') == 2)):
            close += 1
        end = close + 1
    return method[:end], method[end:]


def _joined(methods: list) -> list[str]:
    out = []
    for head, body in methods:
        out += ["", *head, *body] if out else [*head, *body]
    return out


def _class_attributes(writer: _Writer) -> list[str]:
    return _attribute_lines(writer.buffers(), writer._order())


def _attribute_lines(buffers: list[str], order: list[str]) -> list[str]:
    """The class's `buffers`, and its `order` where torch's module holds its blocks between its layers."""
    names = tuple(map(lit, buffers))
    out = []
    if names:
        out += lines(Seq("(", ")", names, explode=len(names) > 1), 1, "buffers = ", "  # no gradient")
    if order:
        out += lines(Seq("(", ")", tuple(map(lit, order))), 1, "order = ", "  # as torch's module holds them")
    return ["", *out] if out else []


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
    cls = child.draft
    if isinstance(cls, _List):
        return Call("Sequential", tuple(_constructor(c) for c in child.items))
    index = cls.index[id(child)]
    return Call(cls.name, ("rng", *(s.values[index] for s in [*cls.slots, *cls.extra])))


def _class_lines(cls: _Class, network, reserved) -> list[str]:
    """A block's class: the PyTorch class's arguments, and where it merged forms of the block (told
    apart by its `if`s) each method's body for each form, in the branches of those `if`s."""
    torch = cls.torch
    cls.taken = {attr for part in cls.parts for _c, attr in _children(part)}
    # an argument named as a member of Module (`training`) or as `rng` is renamed, in what reads it too
    free = Namespace({*MEMBERS, "rng", *torch.slots})
    renamed = {name: free.name(name) for name in torch.slots if name in MEMBERS or name == "rng"}
    cls.slots = _slots(torch, renamed)
    cls.expressions = [(_rename(text, renamed), known) for text, known in _expressions(torch, torch.slots)]
    place = {id(d): k for k, d in enumerate(torch.drafts)}
    forms = [[cls.parts[place[id(d)]] for d in drafts] for drafts in _forms(torch)]
    writers = [_Writer(network, parts, cls, reserved) for parts in forms]
    buffers = list(dict.fromkeys(key for w in writers for key in w.buffers()))
    orders = [w._order() for w in writers]
    flags, tests = _flags(cls, renamed)
    split = len({tuple(o) for o in orders}) > 1  # forms that hold their layers in other orders: each its own
    params = writers[0].plan.params

    def render(k: int, depth: int) -> list[list[str]]:
        """Form k's __init__ body and methods' bodies, `depth` indents deep: statement by statement."""
        w = writers[k]
        with deeper(depth - 2):
            init, methods = (_order_lines(orders[k]) if split else []) + w.init(), w.methods()
        # a form whose inputs are named otherwise reads them by the first's names (backward: gradients)
        alias = [
            f"        {theirs} = {ours}" for theirs, ours in zip(w.plan.params, params, strict=True) if theirs != ours
        ]
        bodies = [init]
        bodies += [[*alias, *body] for _head, body in methods[:2]] + [methods[2][1]]
        pad = "    " * (depth - 2)
        return [_statements_of([pad + line if line else line for line in body]) for body in bodies]

    cache: dict = {}

    def rendered(which: int):
        def one(k: int, depth: int) -> list[list[str]]:
            if (k, depth) not in cache:
                cache[k, depth] = render(k, depth)
            return cache[k, depth][which]

        return one

    firsts = [drafts[0] for drafts in _forms(torch)]
    every = list(range(len(forms)))
    init = _branches(torch.choices, firsts, rendered(0), every, 0, tests["init"], 2)
    heads = [head for head, _body in writers[0].methods()]
    bodies = [
        (heads[m], _branches(torch.choices, firsts, rendered(m + 1), every, 0, tests["self"], 2)) for m in range(3)
    ]
    stored = [f"        self.{s.name} = {s.name}" for s in [*cls.slots, *cls.extra] if s.name in cls.read]
    stored += [f"        self.{attr} = {text}" for text, attr in cls.computed.items()]
    return [
        f"class {cls.name}(Module):",
        f'    """Block `{cls.parts[0].instance.block}` of the spec."""',
        *_attribute_lines(buffers, [] if split else orders[0]),
        "",
        *lines(Call("def __init__", ("self", "rng", *(s.name for s in [*cls.slots, *cls.extra]))), 1, "", ":"),
        "        super().__init__(rng)",
        *stored,
        *flags,
        *init,
        "",
        *_joined(bodies),
    ]


def _slots(torch, renamed: dict[str, str]) -> list[_Slot]:
    """The PyTorch class's arguments, under their names here, each with its value in every instance."""
    return [_Slot(renamed.get(name, name), [d.values[k] for d in torch.drafts]) for k, name in enumerate(torch.slots)]


def _chain_lines(cls: _Class, by_name: dict) -> list[str]:
    """A block the PyTorch target writes as an nn.Sequential of its blocks, a repeat's built in a loop
    (nested_torch._chain, regnet's Stage): a Sequential here, each block registered under the same
    name by the same loop, with the same arguments and `rng` first. _UntoldError where a member is
    not a block whose class takes the PyTorch class's arguments alone, or an argument is renamed."""
    torch = cls.torch
    if any(name in MEMBERS or name == "rng" for name in torch.slots):
        raise _UntoldError
    cls.slots = _slots(torch, {})
    body = []
    for key, member in torch.members:
        tree = member.tree if isinstance(member, Loop) else member
        made = by_name.get(tree.func) if isinstance(tree, Call) else None
        if made is None or made.extra or tree.kwargs:
            raise _UntoldError
        register = Call("self.add_module", (key.code(), replace(tree, args=("rng", *tree.args))))
        if isinstance(member, Loop):
            body += [f"        for {member.var} in range({member.count}):", *lines(register, 3)]
        else:
            body += lines(register, 2)
    return [
        f"class {cls.name}(Sequential):",
        f'    """Block `{cls.parts[0].instance.block}` of the spec: its blocks, run one after another."""',
        "",
        *lines(Call("def __init__", ("self", "rng", *(s.name for s in cls.slots))), 1, "", ":"),
        "        super().__init__()",
        *body,
    ]


def _order_lines(order: list[str]) -> list[str]:
    return lines(Seq("(", ")", tuple(map(lit, order))), 2, "self.order = ") if order else []


def _forms(torch) -> list[list]:
    """The drafts of each form the PyTorch class merged (one form where it merged none)."""
    return [f.drafts for f in torch.forms] if torch.forms else [torch.drafts]


def _expressions(torch, slots: list[str]) -> list[tuple[str, list]]:
    """The expressions of the PyTorch class's constructors, each with its value in every instance
    (None where it cannot be computed there)."""
    texts = []
    for form in torch.forms or [torch]:
        for _attr, tree in form.members:
            texts += [t for t in _leaves(tree) if isinstance(t, str) and not re.fullmatch(r"[\w.]+", t)]
    envs = []
    for k in range(len(torch.drafts)):
        env = {}
        for slot, value in zip(slots, torch.drafts[k].values, strict=True):
            with suppress(ValueError, TypeError, SyntaxError):
                env[slot] = literal_eval(value)
        envs.append(env)
    out = []
    for text in dict.fromkeys(texts):
        values = []
        for env in envs:
            try:
                values.append(_norm(eval(text, {"__builtins__": {}}, env)))  # names, numbers, operators (_py)
            except (NameError, TypeError, ArithmeticError, SyntaxError):
                values.append(None)
        out.append((text, values))
    return out


def _leaves(tree):
    if isinstance(tree, Call):
        for a in (*tree.args, *(v for _k, v in tree.kwargs)):
            yield from _leaves(a)
    elif isinstance(tree, Seq):
        for a in tree.items:
            yield from _leaves(a)
    else:
        yield tree


def _rename(text: str, renamed: dict[str, str]) -> str:
    """Python of the PyTorch class's arguments in this class's names."""
    if not renamed:
        return text
    return re.sub(r"(?<![\w.])[A-Za-z_]\w*", lambda m: renamed.get(m.group(), m.group()), text)


def _flags(cls: _Class, renamed: dict[str, str]) -> tuple[list[str], dict]:
    """The attributes __init__ sets for the `if`s methods branch on (`self.use_downsample`), and
    how __init__ and methods write the condition of a branch: `tests[where](choice, pick)`."""
    names = Namespace(
        {*MEMBERS, *cls.taken, *(s.name for s in [*cls.slots, *cls.extra]), *cls.computed.values(), "rng"}
    )
    owners: dict = {}
    out: list[str] = []

    def attribute(choice, pick):
        key = (id(choice), pick)
        if key not in owners:
            owners[key] = names.name(choice.wanted)
            out.append(f"        self.{owners[key]} = {_rename(choice.flag(pick), renamed)}")
        return f"self.{owners[key]}"

    return out, {"init": lambda choice, pick: _rename(choice.flag(pick), renamed), "self": attribute}


def _branches(choices: list, firsts: list, render, forms: list[int], skip: int, test, depth: int) -> list[str]:
    """One body for the forms (each by its first draft in `firsts`; `render(form, depth)` its
    statements, of which `skip` are written already): theirs where all agree, else an `if` on the
    first of the class's choices that tells them apart, each branch written so in turn."""
    bodies = [render(k, depth)[skip:] for k in forms]
    same = 0
    while all(len(b) > same and b[same] == bodies[0][same] for b in bodies):
        same += 1
    if same == max(len(b) for b in bodies):
        return [line for stmt in bodies[0] for line in stmt] or [f"{'    ' * depth}pass"]
    out = [line for stmt in bodies[0][:same] for line in stmt]
    choice = next((c for c in choices if len({c.picks[id(firsts[k])] for k in forms}) > 1), None)
    if choice is None:
        raise _UntoldError
    picks = sorted({choice.picks[id(firsts[k])] for k in forms})
    for j, pick in enumerate(picks):
        among = [k for k in forms if choice.picks[id(firsts[k])] == pick]
        if j == len(picks) - 1:
            out.append(f"{'    ' * depth}else:")
        else:
            out.append(f"{'    ' * depth}{'elif' if j else 'if'} {test(choice, pick)}:")
        out += _branches(choices, firsts, render, among, skip + same, test, depth + 1)
    return out


def _statements_of(body: list[str]) -> list[list[str]]:
    """A body's lines, by statement."""
    out: list[list[str]] = []
    for line in body:
        if out and not _starts(line, len(body[0]) - len(body[0].lstrip(" "))):
            out[-1].append(line)
        else:
            out.append([line])
    return out


def _starts(line: str, indent: int) -> bool:
    """Whether a line of a body `indent` spaces deep starts a statement there."""
    return (
        len(line) - len(line.lstrip(" ")) == indent
        and line[indent : indent + 1] not in ")]}"
        and not line[indent:].startswith(("else", "elif", "except", "finally"))
    )


class _UntoldError(Exception):
    """Forms of a block that the NumPy code tells apart where no `if` of the block does."""
