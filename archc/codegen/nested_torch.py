"""The PyTorch target, nested as the spec is: one `nn.Module` class per block, one submodule per call.

Every block instance is first written out on its own (`Draft`): its submodules'
constructors, with the sizes of that instance, and its forward. Instances of a
block whose forward and submodules agree but for those sizes (and the numbers
forward reads) are one form (`Class`). The forms of a block, abstracted
together so that a submodule two forms build alike is written alike, are then
merged into one class when the block's `if`s tell them apart (`_merge`): each
`if` is written in __init__ and forward where the forms differ. A block that is
a chain of its members, whose forms differ by how many times a repeat of its
body runs, or by member names written from its parameters (`"block{k}-0"`), is
one nn.Sequential class (`_chain`): its __init__ registers the members under
f-strings of its arguments and builds a repeat's members in a loop over a count
among them, as torchvision's AnyStage. Any other block whose forms no `if`
tells apart keeps a class per form.

A class takes the values that differ between its instances as constructor
arguments, as torchvision's `Bottleneck(inplanes, planes, stride)` does. Each
size in a constructor is written, in this order of preference, as: the
channels of the layer it reads, derived through the body from the block's
input (`in_channels`) as `conv2`'s input is `conv1`'s `width * 4`; an
expression written in the spec's statement (`width * 4`); a number, when it is
the same in every instance; a parameter of the block whose value it has in
every instance. A size none of these gives in every instance becomes an
argument of its own (`conv1_padding`), which the caller passes: always correct,
if less telling. Each choice is checked against every instance, so the classes
compute exactly what the flat code computes.

A block whose layers are all numbered and form a chain (`conv 0`, `bn 1`,
`relu 2`, ...) is an `nn.Sequential` of them, built where it is used: its keys
are the numbers, as torchvision's `features.0.weight`.
"""

from __future__ import annotations

import re
from ast import literal_eval
from contextlib import suppress
from dataclasses import dataclass, field, replace
from graphlib import TopologicalSorter

from .. import ast
from ..expand import EvalError, evaluate
from ..graph import Graph, Node
from ..ops import OPS
from ..ops.emit import explicit_defaults
from .common import Generated, make_plan, reserved_names, shapes_text, signature, torch_ties
from .init import describe, torch_lines
from .names import NN_MODULE_MEMBERS, Namespace, class_name
from .pyexpr import Call, Seq, assignment, flat, lit, repeated
from .pyexpr import lines as pylines
from .torch_target import _inplace, _inplace_activation, build_model, forward_statements, layer_module, module_head
from .tree import CALL, Part, keys
from .tree import statements as _statements

IN_CHANNELS = "in_channels"
IN_NAMES = {"torch", "nn", "F", "self", IN_CHANNELS}


@dataclass
class _View:
    """What `make_plan` reads of a network, for one part's own graph."""

    name: str
    graph: object
    file: str = ""

    def layer(self, name: str):
        return self.graph.nodes[name]


@dataclass(eq=False)
class Draft:
    """One part written out: its submodules (attribute, constructor tree or child part) and forward."""

    part: Part
    # (item name, attribute, constructor, constructor with every default written), or for a
    # block instance (item name, attribute, Part, Part)
    members: list
    forward: list[str]
    plan: object = None
    sequential: bool = False
    tree: object = None  # the nn.Sequential of a sequential part
    explicit: object = None  # the same with every default written
    cls: Class | None = None
    values: list = field(default_factory=list)  # the constructor's arguments, for a part of a class
    where: list = field(default_factory=list)  # (layer, variable, line) of each statement of forward
    indented: object = None  # depth -> forward's statements at that depth, for the branch of an `if`
    # item name -> (module, module with every default written) for a layer forward computes inline
    # that an nn.Sequential holds as a module (`torch.flatten` -> nn.Flatten())
    stand_ins: dict = field(default_factory=dict)


@dataclass(eq=False)
class Class:
    name: str
    drafts: list[Draft]
    slots: list[str] = field(default_factory=list)  # constructor arguments after self
    init: list[str] | None = None
    output: object = None  # the channels of its value, as an expression of its arguments (a _Candidate)
    members: list = field(default_factory=list)  # (attribute, constructor) once abstracted
    forward: list[str] = field(default_factory=list)  # when forms merged: the forward with their `if`s
    python: dict = field(default_factory=dict)  # the block's parameters -> their names in the code
    # the numbers of forward that differ between its instances: their place among forward's numbers
    # -> the attribute that holds each (`self.p`, of the argument `p`), and those it stores
    numbers: dict[int, str] = field(default_factory=dict)
    stored: list[tuple[str, str]] = field(default_factory=list)  # (attribute, argument)
    # an nn.Sequential of its members, which forward runs in order (`_chain`): `members` are then
    # (Key, constructor or Loop), in order, a Loop built `for var in range(count)` under its Key
    sequential: bool = False
    # when forms merged: each as it was abstracted (its drafts, members), and the `if`s telling them apart
    forms: list[Class] = field(default_factory=list)
    choices: list = field(default_factory=list)

    @property
    def block(self) -> str:
        return self.drafts[0].part.instance.block


def _access(attr: str) -> str:
    """How code reads a submodule: `self.conv1`, or `getattr(self, "0")` for a number or a quoted name."""
    return f"self.{attr}" if attr.isidentifier() else f"getattr(self, {lit(attr)})"


def _assign(attr: str, tree, depth: int) -> list[str]:
    if isinstance(tree, Call) and tree.func == "nn.Sequential":  # a repeat's equal blocks built in a loop
        tree = repeated(tree, depth)
    if not attr.isidentifier():
        return assignment("", Call("self.add_module", (lit(attr), tree)), depth)
    return assignment(f"self.{attr} = ", tree, depth)


def _shape_key(tree):
    """The tree with its values left out: what instances of one class must share."""
    if isinstance(tree, Call):
        return ("call", tree.func, tuple(_shape_key(a) for a in tree.args), tuple(k for k, _ in tree.kwargs))
    if isinstance(tree, Seq):
        return ("seq", tree.open, tuple(_shape_key(a) for a in tree.items))
    if isinstance(tree, Part):
        return ("part", id(tree.draft.cls) if tree.draft.cls else _shape_key(tree.draft.explicit))
    if isinstance(tree, int | str):
        return "leaf"
    return ("fixed", flat(tree))


def generate(network, root: Part) -> Generated:
    reserved = set(reserved_names())
    taken = {*reserved, *(n.local for n in network.graph), *(n.name for n in network.graph)}
    classes = Namespace(taken)
    ordered = build_classes(network, root, classes, reserved)
    top = root.draft
    network_cls = classes.name(class_name(network.name), fallback="Network")
    plan = top.plan
    init: list[str] = []
    for _name, attr, tree, _explicit in top.members:
        init += _assign(attr, _tree(tree), 2)
    lines = []
    for cls in ordered:
        first = cls.drafts[0]
        lines += [
            "",
            "",
            f"class {cls.name}(nn.{'Sequential' if cls.sequential else 'Module'}):",
            f'    """Block `{first.part.instance.block}` of the spec."""',
            "",
        ]
        lines += pylines(Call("def __init__", ("self", *cls.slots)), 1, "", ":")
        lines += ["        super().__init__()", *cls.init]
        if not cls.sequential:  # (nn.Sequential's forward runs the members in order)
            lines += ["", *(cls.forward or [*signature(first.plan), *_put(first.forward, cls.numbers)])]
    doc = [
        f'    """{network.name}, generated by archc.',
        "",
        *(f"    {x}" for x in shapes_text(plan)),
        "",
        *(f"    {x}" for x in describe(network, 84)),
        '    """',
    ]
    body = [
        "",
        "",
        f"class {network_cls}(nn.Module):",
        *doc,
        "",
        "    def __init__(self):",
        "        super().__init__()",
        *init,
        *torch_lines(network, 2),
        *(f"        {line}" for line in torch_ties(network, keys(root))),
        "",
        *signature(plan),
        *top.forward,
    ]
    everything = lines + body
    code_lines = module_head(network, everything) + everything + build_model(network_cls)
    return Generated("\n".join(code_lines) + "\n", [], keys(root))


def build_classes(network, root: Part, classes: Namespace, reserved: set[str]) -> list[Class]:
    """The classes of the blocks, in the order their first instances come (each part's `draft`
    written, and its draft's `cls`): what both nested targets write, each in its own code."""
    drafts: list[Draft] = []
    _draft_all(root, drafts, reserved)
    by_block: dict[str, list[Draft]] = {}
    for draft in drafts:
        if draft.part.instance is not None and not draft.sequential:
            by_block.setdefault(draft.part.instance.block, []).append(draft)
    order = {id(d): i for i, d in enumerate(drafts)}
    ordered: list[Class] = []
    # a block's classes once those of the blocks it calls are final: its forms are told apart by them
    calls = TopologicalSorter({b: {c for d in ds for c in _callees(d.part)} for b, ds in by_block.items()})
    for block in calls.static_order():
        forms: dict[tuple, Class] = {}
        for draft in by_block[block]:
            key = (_masked(draft.forward), tuple(_member_key(m) for m in draft.members))
            if key not in forms:
                forms[key] = Class(classes.name(class_name(_camel(block)), key=f"{block} {len(forms)}"), [])
            forms[key].drafts.append(draft)
            draft.cls = forms[key]
        names = {c.name for c in [*ordered, *forms.values()]}  # the classes its __init__ may call
        merged = _merge(list(forms.values()), _abstract(list(forms.values()), network, names), network)
        if merged is None or _repeats(forms.values()):
            # a chain whose forms differ by a repeat's count, or by names its arguments make; or one
            # that repeats a block (ViT's encoder layers): its repeat built in a loop
            merged = _chain(list(forms.values()), network, names) or merged
        if merged is None:  # one class per form, each with the arguments its instances need
            for cls in forms.values():
                _abstract([cls], network, names)
        ordered += merged or forms.values()
    ordered.sort(key=lambda cls: min(order[id(d)] for d in cls.drafts))
    return ordered


def _repeats(forms) -> bool:
    """Whether the block's body repeats a block's call (`repeat n - 1 { encoder_block: ... }`)."""
    body = next(iter(forms)).drafts[0].part.instance.definition.body
    return any(isinstance(stmt, ast.Repeat) for stmt in body)


def _callees(part: Part):
    """The blocks whose classes `part`'s __init__ calls: those of its children, and of its
    nn.Sequential children's."""
    for item in part.items:
        if isinstance(item, Part):
            if item.draft.sequential:
                yield from _callees(item)
            else:
                yield item.instance.block


def _camel(name: str) -> str:
    """`bottleneck_proj` -> `BottleneckProj`: a class is named as Python names classes."""
    return "".join(word[:1].upper() + word[1:] for word in name.split("_") if word) or name


def _member_key(member):
    _name, attr, _tree, explicit = member
    return (attr, _shape_key(explicit))


def _draft_all(part: Part, drafts: list[Draft], reserved: set[str]) -> None:
    """Draft every part, children first (a class's members are drafted before it)."""
    for item in part.items:
        if isinstance(item, Part):
            _draft_all(item, drafts, reserved)
    part.draft = _draft(part, reserved)
    drafts.append(part.draft)


def _draft(part: Part, reserved: set[str]) -> Draft:
    graph = part.graph
    plan = make_plan(_View(part.name or graph.name, graph), tuple(reserved))
    module_of = {name: _access(part.attrs[name]) for name in part.attrs}
    members = []
    stand_ins = {}
    for item in part.items:
        local = item.local if isinstance(item, Node) else item.name
        if isinstance(item, Part):
            members.append((local, part.attrs[local], item, item))
            continue
        if item.op == "input":
            continue
        node = graph.nodes[local]
        module = layer_module(plan, graph, node, module_of)
        with explicit_defaults():
            explicit = layer_module(plan, graph, node, module_of)
        if module is not None:
            members.append((local, part.attrs[local], module, explicit))
            continue
        ins = [graph.nodes[i].shape for i in node.inputs]
        stand_in = OPS[node.op].torch_sequential(node, ins)
        if stand_in is not None:
            with explicit_defaults():
                stand_ins[local] = (stand_in, OPS[node.op].torch_sequential(node, ins))

    def call_part(node, args):
        return Call(module_of[node.name], tuple(args))

    body, where = forward_statements(plan, graph, module_of, call_part)
    draft = Draft(part, members, body, plan, stand_ins=stand_ins)
    draft.where = where
    draft.indented = lambda depth: forward_statements(plan, graph, module_of, call_part, depth)
    draft.sequential = part.instance is not None and _sequential(part, draft)
    if draft.sequential:
        draft.tree = Call("nn.Sequential", tuple(_sequence(part, draft, 2)))
        draft.explicit = Call("nn.Sequential", tuple(_sequence(part, draft, 3)))
    return draft


def _sequential(part: Part, draft: Draft) -> bool:
    """Whether the part is an nn.Sequential of its items, numbered by position."""
    if not part.numbered or not part.is_chain():
        return False
    modules = {member[0] for member in draft.members}
    position = 0
    for item in part.items:
        local = item.local if isinstance(item, Node) else item.name
        if (local not in modules and local not in draft.stand_ins) or int(local) != position:
            return False
        if isinstance(item, Node):
            node = part.graph.nodes[local]
            if local in modules and flat(OPS[node.op].torch_call(node, "m", ["x"])) != "m(x)":
                return False  # forward does more than call it (a pad first, a crop after)
            position += 1 + (node.activation is not None)
        else:
            position += 1
    return True


def _sequence(part: Part, draft: Draft, which: int) -> list:
    """The modules of a sequential part in order, an activation after its layer as a module of its own;
    `which` is 2 for the constructors as written, 3 for those with every default."""
    out = []
    trees = {member[0]: member[which] for member in draft.members}
    trees.update((local, pair[which - 2]) for local, pair in draft.stand_ins.items())
    for item in part.items:
        local = item.local if isinstance(item, Node) else item.name
        out.append(trees[local])
        node = part.graph.nodes[local]
        if node.op != CALL and node.activation is not None:
            act, attrs = node.activation
            op = OPS[act]
            module = op.torch_layer(replace(node, op=act, attrs=attrs, activation=None), [node.shape])
            out.append(_inplace(module) if _inplace_activation(op, attrs) else module)
    return out


def _tree(tree, explicit: bool = False):
    """A member's constructor: a child part becomes its class's call (or its nn.Sequential, with
    every default written if `explicit`)."""
    if isinstance(tree, Part):
        draft = tree.draft
        if draft.sequential:
            return _tree(draft.explicit if explicit else draft.tree, explicit)
        return Call(draft.cls.name, tuple(draft.values))
    if isinstance(tree, Call):
        return replace(
            tree,
            args=tuple(_tree(a, explicit) for a in tree.args),
            kwargs=tuple((k, _tree(v, explicit)) for k, v in tree.kwargs),
        )
    if isinstance(tree, Seq):
        return replace(tree, items=tuple(_tree(a, explicit) for a in tree.items))
    return tree


# -- one class for the instances of a form: values become expressions of its arguments -------------


@dataclass
class _Candidate:
    text: str
    values: list  # its value in each instance, as code; None where it is not known (or not needed)
    uses: frozenset[str]
    wanted: str = ""  # for a value of its own: the name it was asked by

    def fits(self, values: list) -> bool:
        """Whether it has every value known in `values` (None: an instance that does not care)."""
        return any(v is not None for v in values) and all(v is None or c == v for c, v in zip(self.values, values))


def _norm(value) -> str | None:
    """A value as the literal code would hold it, to compare with a constructor's arguments."""
    if isinstance(value, int) and not isinstance(value, bool):
        return str(value)
    if isinstance(value, str):
        return value
    try:
        return lit(value)
    except TypeError:
        return None


def _abstract(forms: list[Class], network, reserved: set[str]) -> list[_Candidate]:
    """Each form's members as expressions of constructor arguments, found over the instances of all
    `forms` at once: a member that two forms build alike is written alike, so that merged they
    share it. Returns the arguments (those the members use in `Class.slots`) and sets each draft's
    values of them (None where its form does not read one)."""
    drafts = [d for cls in forms for d in cls.drafts]
    parts = [d.part for d in drafts]
    block = parts[0].instance.definition
    names = Namespace({*IN_NAMES, *reserved})
    python = {p.name: names.name(p.name) for p in block.params}
    graph = network.graph
    in_channels = _Candidate(IN_CHANNELS, [str(graph.nodes[p.instance.input].shape[0]) for p in parts], frozenset())
    in_channels.uses = frozenset({IN_CHANNELS})
    slots = [in_channels]
    for p in block.params:
        # a word (an activation's name) as its literal: code never holds it bare
        values = [_norm(v) if not isinstance(v, str) else lit(v) for v in (q.instance.args.get(p.name) for q in parts)]
        if None not in values:
            slots.append(_Candidate(python[p.name], values, frozenset({python[p.name]})))
    statements = _statements(block.body)
    symbols: dict[str, list[_Candidate]] = {parts[0].input: [in_channels]}
    hidden: list[_Candidate] = []
    used: set[str] = set()
    # each member, by (name, form of its constructor): the instances that build it so, and its tree
    groups: dict[tuple, list[int]] = {}
    member_of: list[dict] = []
    for i, draft in enumerate(drafts):
        member_of.append({m[0]: m for m in draft.members})
        for member in draft.members:
            groups.setdefault((member[0], _member_key(member)), []).append(i)
    done: dict[tuple, object] = {}
    seen_nodes: set[tuple] = set()
    for cls in forms:
        part = cls.drafts[0].part
        for node in part.graph:
            local = node.name
            member = member_of[drafts.index(cls.drafts[0])].get(local)
            key = (local, _member_key(member)) if member is not None else (local, node.op)
            if local == part.input or key in seen_nodes:
                continue
            seen_nodes.add(key)
            if member is not None:
                among = groups[key]
            else:
                among = [i for i, p in enumerate(parts) if local in p.graph.nodes and local not in member_of[i]]
            span = node.instance.call if node.op == CALL else node.span
            stmt = statements.get(span)
            spoken = _spoken(stmt, parts, python, graph) if stmt is not None else []
            if node.op == CALL:  # and what the nn.Sequential it builds says, in this block's terms
                children = [_child(p, local) for p in parts]
                spoken += _evaluated(_inside(children, parts, statements, python, python, graph), parts, python, graph)
            reads = [c for i in node.inputs for c in symbols.get(i, [])]
            attr = part.attrs.get(local, "")

            def spread(values, among=among):
                full = [None] * len(parts)
                for i, v in zip(among, values, strict=True):
                    full[i] = v
                return full

            def choose(values, first, deep, attr=attr, spoken=spoken, reads=reads, spread=spread):
                same = len(set(values)) == 1
                values = spread(values)
                # the first argument of a layer or a class is the channels it reads (nn.Conv2d, nn.Linear,
                # nn.BatchNorm2d, in_channels of a class): only there may the channels read stand
                fits = [c for c in reads if c.fits(values)] if first and not deep else []
                spoke = [c for c in spoken if c.fits(values)]
                if not (same and (deep or len(spoke) > 1 or any(not c.uses for c in spoke))):
                    # unless several of the statement's values fit a number (`/stride pad=1`, all stride 1),
                    # or it is inside a module the statement does not make itself: which is meant is not known
                    fits += spoke
                if fits:
                    used.update(fits[0].uses)
                    return fits[0].text
                if same:
                    return None  # the number itself
                for c in slots:  # a value passed already is passed once
                    if c.fits(values):
                        used.update(c.uses)
                        return c.text
                wanted = f"{attr}_value" if attr.isidentifier() else "value"
                for c in hidden:  # and one of its own, where no instance needs another value of it
                    if c.wanted == wanted and all(v is None or w is None or v == w for v, w in zip(values, c.values)):
                        c.values = [w if v is None else v for v, w in zip(values, c.values)]
                        return c.text
                name = names.name(wanted, key=str(len(hidden)))
                hidden.append(_Candidate(name, values, frozenset({name}), wanted))
                used.add(name)
                return name

            found = []
            if member is not None:
                trees = [_tree(member_of[i][local][3], True) for i in among]
                tree = _abstract_tree(trees, choose)
                done[key] = _defaults_left_out(tree, [_tree(member_of[i][local][2]) for i in among])
                if node.op == CALL and isinstance(tree, Call):
                    found = _through(node, tree, [parts[i] for i in among], spread)
            outs = spread([_channels(parts[i].graph.nodes[local]) for i in among])
            symbol = _match(outs, [*found, *spoken, *reads, *_summed(node, reads, parts), *slots])
            if symbol is not None:
                same = [c for c in symbols.setdefault(local, []) if c.text == symbol.text]
                if same:  # the same expression in other instances: one candidate for them all
                    same[0].values = [w if w is not None else v for v, w in zip(symbol.values, same[0].values)]
                else:
                    symbols[local].append(
                        replace(symbol, values=[v if o else None for v, o in zip(symbol.values, outs)])
                    )

    def choose_number(values, wanted):
        """A number of forward that differs between instances: the argument it is, else one of its own."""
        for c in slots:
            if c.fits(values):
                used.update(c.uses)
                return c.text
        name = names.name(wanted, key=f"number {len(hidden)}")
        hidden.append(_Candidate(name, values, frozenset({name}), name))
        used.add(name)
        return name

    for cls in forms:
        among = [i for i, d in enumerate(drafts) if d.cls is cls]
        cls.numbers, cls.stored = _forward_numbers(cls, among, len(drafts), choose_number)
    everything = [*slots, *hidden]
    for cls in forms:
        first = cls.drafts[0]
        members = [(m[1], done[(m[0], _member_key(m))]) for m in first.members]
        cls.members = members
        cls.init = [f"        self.{attr} = {text}" for attr, text in cls.stored] + [
            line for attr, tree in members for line in _assign(attr, tree, 2)
        ]
        cls.slots = [c.text for c in everything if c.text in used]
        cls.python = python
        output = [c for c in symbols.get(first.part.graph.declared_outputs[0], []) if c.uses <= used]
        cls.output = next((c for c in output if None not in c.values), None)
    for i, draft in enumerate(drafts):
        draft.values = [c.values[i] or "None" for c in everything if c.text in used]
    return everything


# a number in code (not in a name, nor in a string: `getattr(self, "0")`)
_NUMBER = re.compile(r"(?<![\w.\"'])\d+(?:\.\d*)?(?:e-?\d+)?(?![\w.\"'])")


def _masked(lines: list[str]) -> tuple[str, ...]:
    """Forward with its numbers left out: what instances of one class must share."""
    return tuple(_NUMBER.sub("#", line) for line in lines)


def _put(lines: list[str], numbers: dict[int, str]) -> list[str]:
    """The lines with the k-th number replaced by `numbers[k]`."""
    if not numbers:
        return lines
    count = iter(range(1 << 62))

    def one(match):
        k = next(count)
        return numbers.get(k, match.group())

    return [_NUMBER.sub(one, line) for line in lines]


def _forward_numbers(cls: Class, among: list[int], total: int, choose) -> tuple[dict, list[tuple[str, str]]]:
    """The numbers of the class's forward that differ between its instances (a dropout's rate,
    each stage's own): each read from an attribute __init__ stores, of the argument
    `choose(values, wanted)` gives, as torchvision's CNBlock keeps its `p`."""
    numbers = [[m.group() for line in d.forward for m in _NUMBER.finditer(line)] for d in cls.drafts]
    out, stored = {}, {}
    attrs = Namespace({*(attr for attr, _tree in cls.members), *NN_MODULE_MEMBERS})
    for k in range(len(numbers[0])):
        values = [n[k] for n in numbers]
        if len(set(values)) == 1:
            continue
        spread = [None] * total
        for i, v in zip(among, values, strict=True):
            spread[i] = v
        text = choose(spread, "value")
        stored.setdefault(text, attrs.name(text))
        out[k] = f"self.{stored[text]}"
    return out, [(attr, text) for text, attr in stored.items()]


def _channels(node) -> str:
    return str(node.shape[0]) if node.shape else ""


def _match(values: list, candidates) -> _Candidate | None:
    return next((c for c in candidates if c.fits(values)), None)


def _summed(node, reads: list[_Candidate], parts) -> list[_Candidate]:
    """The channels of a concat: the sum of what it reads."""
    if node.op != "concat" or len(reads) != len(node.inputs):
        return []
    values = [
        None if any(c.values[i] is None for c in reads) else str(sum(int(c.values[i]) for c in reads))
        for i in range(len(parts))
    ]
    return [_Candidate(" + ".join(c.text for c in reads), values, frozenset().union(*(c.uses for c in reads)))]


def _through(node, tree: Call, parts, spread) -> list[_Candidate]:
    """The channels out of a block instance, in the caller's terms: its class's output channels,
    an expression of its arguments, with the caller's expressions of them put in (`parts` the
    instances that build it so, `spread` their values to all)."""
    cls = _class_of(node, parts[0])
    if cls is None or cls.output is None:
        return []
    given = dict(zip(cls.slots, tree.args))
    text = cls.output.text
    for name, value in given.items():
        value = flat(value)
        wrapped = value if value.isidentifier() or value.isdigit() else f"({value})"
        text = re.sub(rf"(?<![\w.]){re.escape(name)}(?!\w)", lambda _m, w=wrapped: w, text)
    values = spread([_channels(p.graph.nodes[node.name]) for p in parts])
    uses = frozenset(n for v in given.values() for n in re.findall(r"[A-Za-z_]\w*", flat(v)))
    return [_Candidate(text, values, uses)]


def _class_of(node, part: Part):
    """The class of the block instance that `node` stands for in `part`'s graph."""
    return part.child(node.name).draft.cls


def _defaults_left_out(tree, written: list):
    """The constructor without the keywords that every instance leaves out (all at torch's default),
    in the calls it holds as well."""
    if not isinstance(tree, Call) or not all(isinstance(w, Call) and len(w.args) == len(tree.args) for w in written):
        return tree
    kept = {k for w in written for k, _v in w.kwargs}
    args = tuple(_defaults_left_out(a, [w.args[i] for w in written]) for i, a in enumerate(tree.args))
    return replace(tree, args=args, kwargs=tuple((k, v) for k, v in tree.kwargs if k in kept))


def _abstract_tree(trees: list, choose, top: bool = False, depth: int = -1):
    """The constructor of all instances at once: each value that is not the same in every instance,
    or that an expression says better, replaced by what `choose(values, first, deep)` gives; `first`
    for a call's first argument, `deep` inside a call inside the member's own (an nn.Sequential's)."""
    first = trees[0]
    if isinstance(first, Call):
        depth += 1
        args = tuple(_abstract_tree([t.args[i] for t in trees], choose, i == 0, depth) for i in range(len(first.args)))
        kwargs = tuple(
            (k, _abstract_tree([dict(t.kwargs)[k] for t in trees], choose, False, depth)) for k, _v in first.kwargs
        )
        return replace(first, args=args, kwargs=kwargs)
    if isinstance(first, Seq):
        items = tuple(
            _abstract_tree([t.items[i] for t in trees], choose, False, depth) for i in range(len(first.items))
        )
        return replace(first, items=items)
    if isinstance(first, int | str) and not isinstance(first, bool):
        values = [_norm(t) for t in trees]
        text = choose(values, top, depth > 0)
        return first if text is None else text
    return first


def _child(part: Part, name: str) -> Part | None:
    """The part's child `name` when it is an nn.Sequential the part builds in its own __init__."""
    child = part.child(name)
    return child if child is not None and child.draft.sequential else None


def _inside(children: list, parents: list, statements: dict, python: dict, names: dict, graph) -> list[_Candidate]:
    """The arguments of the statements of nn.Sequential children (one per instance of `parents`, or
    None), and of theirs, as Python expressions of the class's arguments: a size deep in a module
    the class builds inline is `in_channels * t` as the spec says, not a value of its own."""
    known = [c for c in children if c is not None]
    if not known:
        return []
    # those a statement other than the first one's makes (in another branch of an `if`) pass other values
    children = [c if c is not None and c.instance.call == known[0].instance.call else None for c in children]
    stmt = statements.get(known[0].instance.call)
    if stmt is None:
        return []
    block = known[0].instance.definition
    inner = _passed(stmt, block, python)
    # its `in.channels` is the caller's when it reads the caller's input
    reads_in = all(c is None or c.instance.input == p.instance.input for c, p in zip(children, parents, strict=True))
    inner["in.channels"] = python.get("in.channels", IN_CHANNELS) if reads_in else None
    own = _statements(block.body)
    out = [c for s in own.values() if isinstance(s, ast.Layer) for c in _spoken(s, children, inner, graph, names)]
    for item in known[0].items:
        if isinstance(item, Part):
            deeper = [None if c is None else _child(c, item.name) for c in children]
            out += _inside(deeper, children, own, inner, names, graph)
    return out


def _evaluated(candidates: list[_Candidate], parts: list[Part], python: dict, graph) -> list[_Candidate]:
    """The candidates, each value kept only where its Python, computed with the instance's own
    arguments, gives it: what a candidate says is then what every instance it fits computes."""
    envs = []
    for part in parts:
        env = {python[k]: v for k, v in part.instance.args.items() if k in python}
        envs.append({**env, IN_CHANNELS: graph.nodes[part.instance.input].shape[0]})
    out = []
    for c in candidates:
        values = []
        for value, env in zip(c.values, envs, strict=True):
            try:
                values.append(value if _norm(eval(c.text, {"__builtins__": {}}, env)) == value else None)
            except (NameError, TypeError, ArithmeticError, SyntaxError):
                values.append(None)
        if any(v is not None for v in values):
            out.append(replace(c, values=values))
    return out


def _spoken(stmt, parts, python, graph, names: dict | None = None) -> list[_Candidate]:
    """The statement's arguments as Python expressions of the block's parameters (`python`: each
    name -> its Python; `names`: the class's own, what the expressions may use), with their value
    in each part (None where it cannot be evaluated there, or the part is None)."""
    names = python if names is None else names
    out = []
    for arg in stmt.args:
        text, expr = _python(arg.value, python)
        if text is None:
            continue
        values = []
        for part in parts:
            try:
                values.append(_norm(evaluate(ast.Value((expr,), expr.span), part.instance.args, _in_size(part, graph))))
            except (EvalError, TypeError, KeyError, IndexError, AttributeError):
                values.append(None)
        if any(v is not None for v in values):
            uses = frozenset(n for n in names.values() if n and _mentions(text, n)) | (
                frozenset({IN_CHANNELS}) if IN_CHANNELS in text else frozenset()
            )
            out.append(_Candidate(text, values, uses))
    return out


def _mentions(text: str, name: str) -> bool:
    return re.search(rf"(?<![\w.]){re.escape(name)}(?!\w)", text) is not None


def _in_size(part, graph):
    def size(e):
        if e.ref.parts == ("in",) and e.prop == "channels":
            return graph.nodes[part.instance.input].shape[0]
        raise EvalError("", e.span)

    return size


_PRECEDENCE = {"or": -2, "and": -1, "==": 0, "!=": 0, "<": 0, "<=": 0, ">": 0, ">=": 0}
_PRECEDENCE.update({"+": 1, "-": 1, "*": 2, "//": 2, "%": 2})


def _python(value: ast.Value, python: dict) -> tuple[str | None, object]:
    """A value as a Python expression of the parameters (a shape `k x k` as `k`), or None."""
    texts = [_py(part, python) for part in value.parts]
    if None in texts or len(set(texts)) != 1:
        return None, None
    return texts[0], value.parts[0]


def _py(e, python: dict) -> str | None:
    if isinstance(e, ast.Num):
        return lit(e.value)
    if isinstance(e, ast.Name):
        return python.get(e.id)
    if isinstance(e, ast.ShapeOf):
        # (a block called from another's body reads that one's input, or something it cannot name)
        return python.get("in.channels", IN_CHANNELS) if e.ref.parts == ("in",) and e.prop == "channels" else None
    if isinstance(e, ast.Not):
        inner = _py(e.operand, python)
        return None if inner is None else f"not ({inner})"
    if isinstance(e, ast.BinOp) and e.op in _PRECEDENCE:
        left, right = _py(e.left, python), _py(e.right, python)
        if left is None or right is None:
            return None
        level = _PRECEDENCE[e.op]
        if isinstance(e.left, ast.BinOp) and _PRECEDENCE.get(e.left.op, 0) < level:
            left = f"({left})"
        if isinstance(e.right, ast.BinOp) and _PRECEDENCE.get(e.right.op, 0) <= level:
            right = f"({right})"
        return f"{left} {e.op} {right}"
    return None


# -- the forms of a block, told apart by its `if`s: one class with those `if`s ---------------------


@dataclass
class _Choice:
    """An `if` of the block (or of an nn.Sequential child it builds inline): the Python of each
    branch's condition in the class's arguments, and the branch each instance takes (len(texts):
    none, or `else`)."""

    texts: list[str]
    picks: dict[int, int]  # id(draft) -> branch
    wanted: str  # a name for the flag forward reads it by, when no submodule tells

    def pick(self, cls: Class) -> int:
        return self.picks[id(cls.drafts[0])]

    def flag(self, pick: int) -> str:
        """The condition of branch `pick` alone: those before it false."""
        before = [f"not ({' or '.join(self.texts[:pick])})"] if pick else []
        own = [f"({self.texts[pick]})"] if pick < len(self.texts) else []
        return " and ".join(before + own) if pick else self.texts[0]


def _merge(forms: list[Class], candidates: list[_Candidate], network) -> list[Class] | None:
    """The block's one class: its forms (abstracted together, `candidates` their arguments) merged
    into the first when its `if`s (and those of the nn.Sequential children it builds) tell every
    two apart, the `if`s written in __init__ (each branch's submodules, None where another builds
    one) and in forward (on a submodule only that branch has, as torchvision's `if self.downsample
    is not None`, else on a flag __init__ sets, as its `self.use_res_connect`). None when they
    cannot be told apart so."""
    first = forms[0]
    if len(forms) == 1:
        return forms
    drafts = [d for f in forms for d in f.drafts]
    choices = [c for c in _choices(forms, network) if all(len({c.picks[id(d)] for d in f.drafts}) == 1 for f in forms)]
    choices = _checked(choices, candidates, drafts)
    params = [f.drafts[0].plan.params for f in forms]
    members = {attr for f in forms for attr, _tree in f.members}
    if any(len(p) != len(params[0]) for p in params) or not all(attr.isidentifier() for attr in members):
        return None
    stored = list(dict.fromkeys(pair for f in forms for pair in f.stored))
    taken = {*members, *NN_MODULE_MEMBERS, *first.slots, *(attr for attr, _text in stored)}
    writer = _Writer(choices, Namespace(taken), params[0])
    init = writer.init([(f, f.members) for f in forms], 2)
    forward = writer.forward([(f, None) for f in forms], 2) if init is not None else None
    said = [*writer.said, *writer.flags.values()]
    slots = [c for c in candidates if c.text in first.slots or _said(c.text, said)]
    if forward is None or any(c.text not in first.slots and None in c.values for c in slots):
        return None
    first.forms, first.choices = [replace(f, drafts=list(f.drafts)) for f in forms], choices
    for i, draft in enumerate(drafts):
        draft.values, draft.cls = [c.values[i] or "None" for c in slots], first
    outputs = {f.output.text if f.output else None for f in forms}
    first.drafts, first.slots = drafts, [c.text for c in slots]
    first.output = first.output if len(outputs) == 1 else None
    first.init = [f"        self.{attr} = {text}" for attr, text in [*stored, *writer.flags.items()]] + init
    first.forward = [*signature(first.drafts[0].plan), *forward]
    return [first]


def _said(name: str, texts: list[str]) -> bool:
    return any(_mentions(text, name) for text in texts)


def _choices(forms: list[Class], network) -> list[_Choice]:
    """The `if`s at the root of the block's body, then those of the nn.Sequential children it
    builds in every instance (their parameters replaced by what the call passes)."""
    drafts = [d for f in forms for d in f.drafts]
    part = drafts[0].part
    block = part.instance.definition
    out = _ifs(block.body, forms[0].python, [d.part for d in drafts], drafts, network)
    statements = _statements(block.body)
    for item in part.items:
        if not isinstance(item, Part) or not item.draft.sequential:
            continue
        children = [d.part.child(item.name) for d in drafts]
        stmt = statements.get(item.instance.call)
        if None in children or stmt is None or any(c.instance.block != item.instance.block for c in children):
            continue
        python = _passed(stmt, item.instance.definition, forms[0].python)
        # the child's `in.channels` is the class's when it reads the class's input
        reads_in = all(c.instance.input == d.part.instance.input for c, d in zip(children, drafts, strict=True))
        python["in.channels"] = IN_CHANNELS if reads_in else None
        out += _ifs(item.instance.definition.body, python, children, drafts, network)
    return out


def _passed(stmt, block, python: dict) -> dict:
    """A called block's parameters -> the Python, in the caller's arguments, of what the call passes:
    a positional argument fills the first parameter not filled yet, as the analyser binds them."""
    given = {a.name: a.value for a in stmt.args if a.name is not None}
    free = iter([p for p in block.params if p.name not in given])
    for arg in stmt.args:
        if arg.name is None:
            param = next(free, None)
            if param is not None:
                given[param.name] = arg.value
    out = {}
    for param in block.params:
        value = given.get(param.name, param.default)
        text = _python(value, python)[0] if value is not None else None
        out[param.name] = None if text is None else text if re.fullmatch(r"\w+", text) else f"({text})"
    return out


def _envs(candidates: list[_Candidate], count: int) -> list[dict]:
    """For each of `count` instances, the value of each candidate that is a literal in it, by the
    candidate's Python: what a condition or a name written from the arguments is evaluated in."""
    envs = []
    for i in range(count):
        env = {}
        for c in candidates:
            with suppress(ValueError, TypeError, SyntaxError):  # (not a literal: None, or a hidden value)
                env[c.text] = literal_eval(c.values[i])
        envs.append(env)
    return envs


def _checked(choices: list[_Choice], candidates: list[_Candidate], drafts: list[Draft]) -> list[_Choice]:
    """The choices whose Python gives, with each instance's arguments, the branch it takes."""
    envs = _envs(candidates, len(drafts))

    def holds(text: str, env: dict):
        try:
            return eval(text, {"__builtins__": {}}, env)  # names, numbers and operators only (_py)
        except (NameError, TypeError, ArithmeticError):  # an argument it reads is not known: not used
            return None

    out = []
    for choice in choices:
        picks = [choice.picks[id(d)] for d in drafts]
        if all(
            holds(text, env) is (j == pick)
            for pick, env in zip(picks, envs, strict=True)
            for j, text in enumerate(choice.texts[: pick + 1])
        ):
            out.append(choice)
    return out


def _ifs(body, python: dict, parts: list[Part], drafts: list[Draft], network) -> list[_Choice]:
    out = []
    for stmt in body:
        if not isinstance(stmt, ast.If):
            continue
        texts = [_py(condition, python) for condition, _body in stmt.branches]
        picks = {}
        for part, draft in zip(parts, drafts, strict=True):
            truth = [_holds(condition, part, network.graph) for condition, _body in stmt.branches]
            if None in truth:
                break
            picks[id(draft)] = truth.index(True) if True in truth else len(truth)
        if None not in texts and len(picks) == len(drafts):
            inner = stmt.branches[0][1][0] if stmt.branches[0][1] else None
            wanted = inner.name if isinstance(inner, ast.Layer) and inner.name else getattr(inner, "op", "branch")
            out.append(_Choice(texts, picks, f"use_{wanted}"))
    return out


def _holds(condition, part: Part, graph) -> bool | None:
    try:
        value = evaluate(ast.Value((condition,), condition.span), part.instance.args, _in_size(part, graph))
    except (EvalError, TypeError, KeyError, IndexError):
        return None
    return value if isinstance(value, bool) else None


class _Writer:
    """The merged class's __init__ and forward: what the forms share written once, where they
    differ an `if` on the first choice that tells them apart, each branch written so in turn."""

    def __init__(self, choices: list[_Choice], attrs: Namespace, params: list[str]):
        self.choices, self.attrs, self.params = choices, attrs, params
        self.said: list[str] = []  # the conditions __init__ reads
        self.flags: dict[str, str] = {}  # attribute -> the condition it holds
        self.owners: dict[tuple, str] = {}

    def _split(self, group: list, variant) -> tuple[_Choice, list[list]] | None:
        """The choice whose branches tell the group's forms apart best (the fewest `variant`s of
        what is left to write within its branches, the first of equals), and the group by branch."""
        best = None
        for choice in self.choices:
            picks = sorted({choice.pick(f) for f, _x in group})
            if len(picks) > 1:
                groups = [[(f, x) for f, x in group if choice.pick(f) == p] for p in picks]
                left = sum(len({variant(f, x) for f, x in g}) for g in groups)
                if best is None or left < best[0]:
                    best = (left, choice, groups)
        return None if best is None else best[1:]

    def init(self, group: list, depth: int) -> list[str] | None:
        """__init__'s lines for (form, its members still to write) of each form in the group."""
        lists = [members for _f, members in group]
        prefix = _common(lists)
        suffix = _common([m[prefix:][::-1] for m in lists])
        out = [line for attr, tree in lists[0][:prefix] for line in _assign(attr, tree, depth)]
        rests = [m[prefix : len(m) - suffix] for m in lists]
        if len({tuple((attr, flat(tree)) for attr, tree in r) for r in rests}) > 1:
            split = self._split(
                [(f, r) for (f, _m), r in zip(group, rests, strict=True)],
                lambda _f, rest: tuple((attr, flat(tree)) for attr, tree in rest),
            )
            if split is None:
                return None
            choice, groups = split
            every = {attr for r in rests for attr, _tree in r}
            for i, sub in enumerate(groups):
                pick = choice.pick(sub[0][0])
                if i == len(groups) - 1:
                    out.append(f"{'    ' * depth}else:")
                else:
                    self.said.append(choice.texts[pick])
                    out.append(f"{'    ' * depth}{'elif' if i else 'if'} {choice.texts[pick]}:")
                lines = self.init(sub, depth + 1)
                if lines is None:
                    return None
                own = {attr for _f, r in sub for attr, _tree in r}
                lines += [f"{'    ' * (depth + 1)}self.{attr} = None" for attr in sorted(every - own)]
                out += lines or [f"{'    ' * (depth + 1)}pass"]
        return out + [line for attr, tree in lists[0][len(lists[0]) - suffix :] for line in _assign(attr, tree, depth)]

    def _code(self, form: Class, start, depth: int) -> tuple[list[str], list]:
        """The form's forward from the statement of layer `start` (None: the first) on, `depth` deep,
        its inputs first renamed to the merged signature's where they are named otherwise; and
        (layer, line) of each statement's start in it."""
        draft = form.drafts[0]
        lines, where = draft.indented(depth)
        lines = _put(lines, form.numbers)
        where = [(node, line) for node, _v, line in where]
        alias = [
            f"{'    ' * depth}{theirs} = {ours}"
            for theirs, ours in zip(draft.plan.params, self.params, strict=True)
            if theirs != ours
        ]
        if start is None:
            return alias + lines, [(None, 0)] + [(n, line + len(alias)) for n, line in where]
        begin = next(line for node, line in where if node == start)
        return lines[begin:], [(n, line - begin) for n, line in where if line >= begin]

    def forward(self, group: list, depth: int) -> list[str] | None:
        """forward's lines for (form, the layer its statements still to write begin at) of each form."""
        codes = [self._code(f, start, depth) for f, start in group]
        if all(lines == codes[0][0] for lines, _w in codes):
            return codes[0][0]
        same = 0
        while all(len(lines) > same and lines[same] == codes[0][0][same] for lines, _w in codes):
            same += 1
        starts = set.intersection(*({line for _n, line in where} for _l, where in codes))
        begin = max((line for line in starts if line <= same), default=0)
        out = codes[0][0][:begin]
        at = [next(n for n, line in where if line == begin) for _l, where in codes]
        split = self._split(
            [(f, node) for (f, _s), node in zip(group, at, strict=True)],
            lambda f, node: tuple(self._code(f, node, depth)[0]),
        )
        if split is None:
            return None
        choice, groups = split
        for i, sub in enumerate(groups):
            if i == len(groups) - 1:  # every branch before returns: the last is what is left
                lines = self.forward(sub, depth)
            else:
                others = [f for g in groups if g is not sub for f, _n in g]
                out.append(f"{'    ' * depth}if {self._test(choice, [f for f, _n in sub], others)}:")
                lines = self.forward(sub, depth + 1)
            if lines is None:
                return None
            out += lines
        return out

    def _test(self, choice: _Choice, taken: list[Class], others: list[Class]) -> str:
        """How forward tells the branch taken: a submodule only its forms have, else a flag."""
        have = [{attr for attr, _t in f.members} for f in taken]
        lack = set().union(*({attr for attr, _t in f.members} for f in others))
        own = [attr for attr, _t in taken[0].members if all(attr in h for h in have) and attr not in lack]
        if own:
            return f"self.{own[0]} is not None"
        condition = choice.flag(choice.pick(taken[0]))
        key = (id(choice), condition)
        if key not in self.owners:
            self.owners[key] = self.attrs.name(choice.wanted)
            self.flags[self.owners[key]] = condition
        return f"self.{self.owners[key]}"


def _common(lists: list[list]) -> int:
    """How many members all lists begin with alike."""
    n = 0
    while all(len(m) > n for m in lists) and len({(m[n][0], flat(m[n][1])) for m in lists}) == 1:
        n += 1
    return n


# -- a chain of members whose forms differ by a repeat's count: one nn.Sequential class, its repeat a loop --


@dataclass(frozen=True)
class Key:
    """The name a member is registered under: `text` the body of an f-string of the class's arguments
    (and of its loop's variable), as torchvision's AnyStage names its blocks `f"block{stage_index}-{i}"`;
    `plain` when it holds no braces (a literal name)."""

    text: str
    plain: bool

    def code(self) -> str:
        return lit(self.text) if self.plain else f'f"{self.text}"'


@dataclass(frozen=True)
class Loop:
    """Members __init__ builds in a loop, `for var in range(count)` (`count` the Python of the repeat's
    count in the class's arguments), each built by `tree` and registered under the member's Key: what a
    repeat of the block's body makes, however many times an instance runs it. `tree` reads `var` where
    the first iteration is built otherwise (`Unit(in_channels if i == 0 else ch, ch)`)."""

    count: str
    var: str
    tree: object


def _chain(forms: list[Class], network, reserved: set[str]) -> list[Class] | None:
    """The block's one class when each instance is a chain of its members (each reads the one before,
    forward only calls them) and the instances differ by how many times a repeat of its body runs,
    or by member names written from its parameters (`"block{k}-0"`): an nn.Sequential whose __init__
    registers the members under f-strings of its arguments and builds a repeat's in a loop, as
    torchvision's AnyStage. The members of each statement are abstracted together, over every
    iteration of every instance (`_canonical`), and each choice is checked against every instance.
    None when the block is no such chain."""
    drafts = [d for f in forms for d in f.drafts]
    body = drafts[0].part.instance.definition.body
    if not all(_plain_chain(d) for d in drafts) or any(isinstance(s, ast.If) for s in body):
        return None
    repeats = {}
    order = []  # the span of each statement of the body, a repeat's that of the statement it repeats
    for stmt in body:
        if isinstance(stmt, ast.Repeat):
            if len(stmt.body) != 1 or isinstance(stmt.body[0], ast.Repeat | ast.If):
                return None
            repeats[stmt.body[0].span] = stmt
            stmt = stmt.body[0]
        order.append(stmt.span)
    runs = [_runs(d.part, order, repeats) for d in drafts]
    if None in runs:
        return None
    names = Namespace({*IN_NAMES, *(local for d in drafts for local in d.part.sources)})
    statements = _statements(body)
    canon = {span: names.name(_canon_name(statements[span]), key=str(span)) for span in order}
    later = {span: names.name(f"{canon[span]}_later", key=f"{span} later") for span in repeats}
    cands = [_canonical(d, r, canon, later) for d, r in zip(drafts, runs, strict=True)]
    if None in cands:
        return None
    # the instance that has every member the others have first: its members are the class's
    widest = max(range(len(drafts)), key=lambda i: len(cands[i].members))
    if {m[0] for c in cands for m in c.members} - {m[0] for m in cands[widest].members}:
        return None
    cands.insert(0, cands.pop(widest))
    runs.insert(0, runs.pop(widest))
    drafts = [drafts[widest], *drafts[:widest], *drafts[widest + 1 :]]
    cls = Class(forms[0].name, cands)
    for c in cands:
        c.cls = cls
    everything = _abstract([cls], network, reserved)
    envs = _envs(everything, len(drafts))
    params = [name for name in cls.python.values() if all(name in env for env in envs)]
    var = Namespace({*(c.text for c in everything), *reserved}).name("i")
    trees = dict(cls.members)
    members, needed = [], set()
    for span in order:
        names_of = [[attr for attr, _tree in r.get(span, [])] for r in runs]
        if span in repeats:
            count = _py(repeats[span].count, cls.python)
            key = _loop_key(names_of, envs, params, var)
            if not _holds_all(count, [len(n) for n in names_of], envs) or key is None:
                return None
            if canon[span] in trees:  # (a repeat no instance runs builds nothing)
                tree = trees[canon[span]]
                members.append((key, Loop(count, var, _either(tree, trees.get(later[span], tree), var))))
                needed |= _names_in(count, params)
        else:
            key = _key([n[0] for n in names_of], envs, params)
            if key is None:
                return None
            members.append((key, trees[canon[span]]))
        needed |= _names_in(key.text, params)
    slots = [c for c in everything if c.text in cls.slots or c.text in needed]
    if any(None in c.values for c in slots if c.text not in cls.slots):
        return None
    for i, draft in enumerate(drafts):
        draft.cls, draft.values = cls, [c.values[i] or "None" for c in slots]
    cls.drafts, cls.slots, cls.members, cls.sequential = drafts, [c.text for c in slots], members, True
    cls.init = [line for key, tree in members for line in _register(key, tree, 2)]
    cls.numbers, cls.stored, cls.forward = {}, [], []
    return [cls]


def _either(first, later, var: str):
    """The constructor of a loop's iteration `var`: where the first's differs from the later ones',
    `first if var == 0 else later`, as AnyStage's `width_in if i == 0 else width_out`."""
    if flat(first) == flat(later):
        return first
    same_call = isinstance(first, Call) and isinstance(later, Call) and first.func == later.func
    if (
        same_call
        and len(first.args) == len(later.args)
        and [k for k, _ in first.kwargs] == [k for k, _ in later.kwargs]
    ):
        args = tuple(_either(a, b, var) for a, b in zip(first.args, later.args, strict=True))
        kwargs = tuple((k, _either(v, w, var)) for (k, v), (_k, w) in zip(first.kwargs, later.kwargs, strict=True))
        return replace(first, args=args, kwargs=kwargs)
    same_seq = isinstance(first, Seq) and isinstance(later, Seq) and first.open == later.open
    if same_seq and len(first.items) == len(later.items):
        return replace(first, items=tuple(_either(a, b, var) for a, b in zip(first.items, later.items, strict=True)))
    return f"{flat(first)} if {var} == 0 else {flat(later)}"


def _register(key: Key, tree, depth: int) -> list[str]:
    """__init__'s lines that build a member of a chain class (a loop's: each of its iterations)."""
    if isinstance(tree, Loop):
        return [f"{'    ' * depth}for {tree.var} in range({tree.count}):", *_register(key, tree.tree, depth + 1)]
    if key.plain:
        return _assign(key.text, tree, depth)
    return assignment("", Call("self.add_module", (key.code(), tree)), depth)


def _plain_chain(draft: Draft) -> bool:
    """Whether the part's forward is nn.Sequential's: a chain of its members, each only called."""
    part = draft.part
    if not part.is_chain():
        return False
    modules = {member[0] for member in draft.members}
    for item in part.items:
        if isinstance(item, Node):
            node = part.graph.nodes[item.local]
            if item.local not in modules or node.activation is not None:
                return False
            if flat(OPS[node.op].torch_call(node, "m", ["x"])) != "m(x)":
                return False
    return True


def _item_span(item):
    return item.instance.call if isinstance(item, Part) else item.span


def _runs(part: Part, order: list, repeats: dict) -> dict | None:
    """span -> [(attribute, item)] of each statement of the block in the part, in order: one item a
    statement, any number a repeat's; None when the part's items do not follow the body so."""
    out: dict = {}
    at = 0
    for item in part.items:
        span = _item_span(item)
        while at < len(order) and order[at] != span:
            if order[at] not in out and order[at] not in repeats:
                return None  # a statement that made nothing
            at += 1
        if at == len(order) or (span in out and span not in repeats):
            return None
        local = item.local if isinstance(item, Node) else item.name
        out.setdefault(span, []).append((part.attrs[local], item))
    if any(span not in out and span not in repeats for span in order[at:]):
        return None
    return out


def _canon_name(stmt) -> str:
    name = getattr(stmt, "name", None)
    return name if name and name.isidentifier() else getattr(stmt, "op", "member")


def _canonical(draft: Draft, runs: dict, canon: dict, later: dict) -> Draft | None:
    """The draft with each statement's members as one, named for the statement (`canon`); a repeat's
    first iteration apart (it reads what the repeat reads, the others the iteration before), named
    `later[span]` the second, which stands for all the others (None when they are not built alike):
    so that `_abstract` writes each statement's constructor over every instance."""
    part = draft.part
    trees = {m[0]: m for m in draft.members}
    rename, items, members, firsts = {}, [], [], set()
    for span, run in runs.items():
        locals_ = [item.local if isinstance(item, Node) else item.name for _attr, item in run]
        if len({flat(_tree(trees[local][3], True)) for local in locals_[1:]}) > 1:
            return None
        for name, start in ((canon[span], 0), (later.get(span), 1)):
            if start >= len(run):
                continue
            group, item = locals_[start:] if start else locals_[:1], run[start][1]
            rename.update(dict.fromkeys(group, name))
            firsts.add(group[0])
            if isinstance(item, Part):
                copy = replace(item, instance=replace(item.instance, name=name))
                members.append((name, name, copy, copy))
            else:
                copy = replace(item, local=name)
                members.append((name, name, trees[group[0]][2], trees[group[0]][3]))
            items.append(copy)
    graph = Graph(part.graph.name, part.graph.file)
    for local in part.sources:
        graph.add(part.graph.nodes[local])
    for node in part.graph:
        if node.name in firsts:
            graph.add(replace(node, name=rename[node.name], inputs=[rename.get(i, i) for i in node.inputs]))
    graph.declared_outputs = [rename.get(o, o) for o in part.graph.declared_outputs]
    own = Part(part.instance, items, graph, {name: name for name in dict.fromkeys(rename.values())}, part.input)
    own.sources = part.sources
    return Draft(own, members, [], draft.plan)


def _holds_all(text: str | None, values: list, envs: list[dict]) -> bool:
    """Whether the Python `text` computes each instance's value from its arguments."""
    if text is None:
        return False
    for value, env in zip(values, envs, strict=True):
        try:
            if eval(text, {"__builtins__": {}}, env) != value:  # names, numbers and operators only (_py)
                return False
        except (NameError, TypeError, ArithmeticError, SyntaxError):
            return False
    return True


def _names_in(text: str, params: list[str]) -> set[str]:
    return {name for name in params if _mentions(text, name)}


_TRAILING = re.compile(r"(.*?)(\d+)")


def _template(texts: list[str], envs: list[dict], params: list[str]) -> str | None:
    """An f-string body that gives each instance's text from its arguments: the text itself when
    every instance has it, else the text with a parameter's value in braces (`block{k}-`)."""
    if len(set(texts)) == 1:
        return texts[0]
    for name in params:
        value = envs[0][name]
        if isinstance(value, bool) or not isinstance(value, int | str) or str(value) not in texts[0]:
            continue
        text = texts[0].replace(str(value), "{" + name + "}")
        if all(text.replace("{" + name + "}", str(env[name])) == t for t, env in zip(texts, envs, strict=True)):
            return text
    return None


def _key(names: list[str], envs: list[dict], params: list[str]) -> Key | None:
    """The Key of a member named `names[i]` in instance i: a trailing number all share kept as
    written, what comes before it a template."""
    if len(set(names)) == 1:
        return Key(names[0], True)
    split = [_TRAILING.fullmatch(n) for n in names]
    text = None
    if None not in split and len({m.group(2) for m in split}) == 1:
        head = _template([m.group(1) for m in split], envs, params)
        text = None if head is None else head + split[0].group(2)
    text = text or _template(names, envs, params)
    return None if text is None else Key(text, False)


def _loop_key(names: list[list[str]], envs: list[dict], params: list[str], var: str) -> Key | None:
    """The Key of a loop's members, `names[i]` those of instance i: each a text all its iterations
    share (a template) and a number that counts from one start in every instance (`{i + 1}`)."""
    heads, envs_of, starts = [], [], set()
    for run, env in zip(names, envs, strict=True):
        split = [_TRAILING.fullmatch(n) for n in run]
        if None in split or len({m.group(1) for m in split}) > 1:
            return None
        if split:
            start = int(split[0].group(2))
            if [m.group(2) for m in split] != [str(start + j) for j in range(len(split))]:
                return None
            heads.append(split[0].group(1))
            envs_of.append(env)
            starts.add(start)
    if len(starts) != 1:
        return None if starts else Key("", False)
    head = _template(heads, envs_of, params)
    start = starts.pop()
    return None if head is None else Key(head + "{" + (f"{var} + {start}" if start else var) + "}", False)
