"""The PyTorch target, nested as the spec is: one `nn.Module` class per block, one submodule per call.

Every block instance is first written out on its own (`Draft`): its submodules'
constructors, with the sizes of that instance, and its forward. Instances of a
block whose forward and submodules agree but for those sizes share one class
(`Class`); a block whose instances differ otherwise (a branch of an `if` taken
in some only, a repeat of another count) gets one class for each form.

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
from dataclasses import dataclass, field, replace

from .. import ast
from ..expand import EvalError, evaluate
from ..graph import Node
from ..ops import OPS
from ..ops.emit import explicit_defaults
from .common import Generated, make_plan, reserved_names, shapes_text, signature, torch_ties
from .init import describe, torch_lines
from .names import Namespace, class_name
from .pyexpr import Call, Seq, assignment, flat, lit
from .pyexpr import lines as pylines
from .torch_target import _inplace, _inplace_activation, build_model, forward_statements, layer_module, module_head
from .tree import CALL, Part, keys

IN_CHANNELS = "in_channels"


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
    indented: object = None  # forward's statements one level deeper, for the branch of an `if`
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
    hidden: bool = False  # whether it takes a value no expression gave (`conv_value`)
    forward: list[str] = field(default_factory=list)  # when two forms merged: the forward with its `if`
    python: dict = field(default_factory=dict)  # the block's parameters -> their names in the code

    @property
    def block(self) -> str:
        return self.drafts[0].part.instance.block


def _access(attr: str) -> str:
    """How code reads a submodule: `self.conv1`, or `getattr(self, "0")` for a number or a quoted name."""
    return f"self.{attr}" if attr.isidentifier() else f"getattr(self, {lit(attr)})"


def _assign(attr: str, tree, depth: int) -> list[str]:
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
    drafts: list[Draft] = []
    _draft_all(root, drafts, reserved)
    forms: dict[tuple, Class] = {}
    ordered: list[Class] = []
    for draft in drafts:
        if draft.part.instance is None or draft.sequential:
            continue
        key = (draft.part.instance.block, tuple(draft.forward), tuple(_member_key(m) for m in draft.members))
        if key not in forms:
            wanted = class_name(_camel(draft.part.instance.block))
            forms[key] = Class(classes.name(wanted, key=str(len(ordered))), [])
            ordered.append(forms[key])
        forms[key].drafts.append(draft)
        draft.cls = forms[key]
    class_names = {cls.name for cls in ordered}
    for cls in list(ordered):
        _abstract(cls, network, class_names)
        forms = [c for c in ordered if c.block == cls.block]
        # two forms, as many as the branches of an `if`: one class with that `if`
        if len(forms) == 2 and forms[1] is cls and _merge(forms[0], cls, network):
            ordered.remove(cls)
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
            f"class {cls.name}(nn.Module):",
            f'    """Block `{first.part.instance.block}` of the spec."""',
            "",
        ]
        lines += pylines(Call("def __init__", ("self", *cls.slots)), 1, "", ":")
        forward = cls.forward or [*signature(first.plan), *first.forward]
        lines += ["        super().__init__()", *cls.init, "", *forward]
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
    draft.indented = lambda: forward_statements(plan, graph, module_of, call_part, 3)
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
    values: list[str]
    uses: frozenset[str]


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


def _abstract(cls: Class, network, reserved: set[str]) -> None:
    drafts = cls.drafts
    parts = [d.part for d in drafts]
    block = parts[0].instance.definition
    names = Namespace({"torch", "nn", "F", "self", IN_CHANNELS, *reserved})
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
    symbols: dict[str, _Candidate] = {parts[0].input: in_channels}
    hidden: list[_Candidate] = []
    used: set[str] = set()
    trees_by_member = {m[0]: [_tree(d.members[j][3], True) for d in drafts] for j, m in enumerate(drafts[0].members)}
    written = {m[0]: [_tree(d.members[j][2]) for d in drafts] for j, m in enumerate(drafts[0].members)}
    attrs = {m[0]: m[1] for m in drafts[0].members}
    members = []
    for node in parts[0].graph:
        if node.name == parts[0].input:
            continue
        local = node.name
        span = node.instance.call if node.op == CALL else node.span
        stmt = statements.get(span)
        spoken = _spoken(stmt, parts, python, graph) if stmt is not None else []
        reads = [symbols[i] for i in node.inputs if i in symbols]

        attr = attrs.get(local, "")

        def choose(values, first, deep, attr=attr, spoken=spoken, reads=reads):
            same = len(set(values)) == 1
            # the first argument of a layer or a class is the channels it reads (nn.Conv2d, nn.Linear,
            # nn.BatchNorm2d, in_channels of a class): only there may the channels read stand
            fits = [c for c in reads if c.values == values] if first and not deep else []
            spoke = [c for c in spoken if c.values == values]
            if not (same and (deep or len(spoke) > 1 or any(not c.uses for c in spoke))):
                # unless several of the statement's values fit a number (`/stride pad=1`, all stride 1),
                # or it is inside a module the statement does not make itself: which is meant is not known
                fits += spoke
            if fits:
                used.update(fits[0].uses)
                return fits[0].text
            if same:
                return None  # the number itself
            for c in [*slots, *hidden]:  # a value passed already is passed once
                if c.values == values:
                    used.update(c.uses)
                    return c.text
            name = names.name(f"{attr}_value" if attr.isidentifier() else "value", key=str(len(hidden)))
            hidden.append(_Candidate(name, values, frozenset({name})))
            used.add(name)
            return name

        found = []
        if local in attrs:
            tree = _abstract_tree(trees_by_member[local], choose)
            members.append((attrs[local], _defaults_left_out(tree, written[local])))
            if node.op == CALL and isinstance(tree, Call):
                found = _through(node, tree, parts)
        outs = [_channels(p.graph.nodes[local]) for p in parts]
        symbol = _match(outs, [*found, *spoken, *reads, *_summed(node, reads, parts), *slots])
        if symbol is not None:
            symbols[local] = symbol
    everything = [*slots, *hidden]
    cls.slots = [c.text for c in everything if c.text in used]
    for draft_index, draft in enumerate(drafts):
        draft.values = [c.values[draft_index] for c in everything if c.text in used]
    cls.init = [line for attr, tree in members for line in _assign(attr, tree, 2)]
    cls.members, cls.hidden, cls.python = members, any(c.text in used for c in hidden), python
    output = symbols.get(parts[0].graph.declared_outputs[0])
    cls.output = None if output is None or not output.uses <= set(cls.slots) else output


def _channels(node) -> str:
    return str(node.shape[0]) if node.shape else ""


def _match(values: list[str], candidates) -> _Candidate | None:
    return next((c for c in candidates if c.values == values), None)


def _summed(node, reads: list[_Candidate], parts) -> list[_Candidate]:
    """The channels of a concat: the sum of what it reads."""
    if node.op != "concat" or len(reads) != len(node.inputs):
        return []
    values = [str(sum(int(c.values[i]) for c in reads)) for i in range(len(parts))]
    return [_Candidate(" + ".join(c.text for c in reads), values, frozenset().union(*(c.uses for c in reads)))]


def _through(node, tree: Call, parts) -> list[_Candidate]:
    """The channels out of a block instance, in the caller's terms: its class's output channels,
    an expression of its arguments, with the caller's expressions of them put in."""
    cls = _class_of(node, parts[0])
    if cls is None or cls.output is None:
        return []
    given = dict(zip(cls.slots, tree.args))
    text = cls.output.text
    for name, value in given.items():
        value = flat(value)
        wrapped = value if value.isidentifier() or value.isdigit() else f"({value})"
        text = re.sub(rf"(?<![\w.]){re.escape(name)}(?!\w)", lambda _m, w=wrapped: w, text)
    values = [_channels(p.graph.nodes[node.name]) for p in parts]
    uses = frozenset(n for v in given.values() for n in re.findall(r"[A-Za-z_]\w*", flat(v)))
    return [_Candidate(text, values, uses)]


def _class_of(node, part: Part):
    """The class of the block instance that `node` stands for in `part`'s graph."""
    child = next(item for item in part.items if isinstance(item, Part) and item.name == node.name)
    return child.draft.cls


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


def _statements(body) -> dict:
    """span -> statement, for every statement of a body (in its repeats and branches too)."""
    out = {}
    todo = list(body)
    while todo:
        stmt = todo.pop()
        if isinstance(stmt, ast.Repeat):
            todo += stmt.body
        elif isinstance(stmt, ast.If):
            todo += [inner for b in stmt.bodies for inner in b]
        else:
            out[stmt.span] = stmt
    return out


def _spoken(stmt, parts, python, graph) -> list[_Candidate]:
    """The statement's arguments as Python expressions of the block's parameters, with their value in each part."""
    out = []
    for arg in stmt.args:
        text, expr = _python(arg.value, python)
        if text is None:
            continue
        values = []
        for part in parts:
            try:
                values.append(_norm(evaluate(ast.Value((expr,), expr.span), part.instance.args, _in_size(part, graph))))
            except (EvalError, TypeError, KeyError, IndexError):
                values = None
                break
        if values is not None and None not in values:
            uses = frozenset(n for n in python.values() if _mentions(text, n)) | (
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
        return IN_CHANNELS if e.ref.parts == ("in",) and e.prop == "channels" else None
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


# -- two forms of a block that differ in the branch of its `if`: one class with that `if` -----------


def _merge(first: Class, second: Class, network) -> bool:
    """Make `first` the class of `second`'s instances too, when they are the two branches of the
    block's one `if`: the `if` is written in __init__ (the branch's submodules, None in the other) and
    in forward (on the first of them, as torchvision's `if self.downsample is not None`). False,
    and nothing changed, for anything else."""
    block = first.drafts[0].part.instance.definition
    branches = [stmt for stmt in block.body if isinstance(stmt, ast.If)]
    if len(branches) != 1 or len(branches[0].branches) != 1 or first.hidden or second.hidden or first.forward:
        return False  # (a class merged once holds its forms' members no longer)
    ((condition, _body),) = branches[0].branches
    names = first.python
    text = _py(condition, names)
    truth = [_holds(condition, d.part, network.graph) for d in [*first.drafts, *second.drafts]]
    if text is None or None in truth:
        return False
    split = len(first.drafts)
    if len(set(truth[:split])) != 1 or len(set(truth[split:])) != 1 or truth[0] == truth[split]:
        return False
    taken, other = (first, second) if truth[0] else (second, first)
    lines = _branches(taken, other, text)
    if lines is None:
        return False
    init, forward = lines
    used = set(first.slots) | set(second.slots)  # and what the condition reads
    used |= {n for n in [*names.values(), IN_CHANNELS] if _mentions(text, n)}
    params = [p.name for p in block.params if names[p.name] in used]
    first.slots = [IN_CHANNELS] * (IN_CHANNELS in used) + [names[p] for p in params]
    for draft in [*first.drafts, *second.drafts]:
        args = draft.part.instance.args
        given = [str(network.graph.nodes[draft.part.instance.input].shape[0])] if IN_CHANNELS in used else []
        draft.values = given + [lit(args[p]) if isinstance(args[p], str) else _norm(args[p]) for p in params]
        draft.cls = first
    first.drafts += second.drafts
    first.init, first.forward, first.output = init, forward, None
    return True


def _holds(condition, part: Part, graph) -> bool | None:
    try:
        value = evaluate(ast.Value((condition,), condition.span), part.instance.args, _in_size(part, graph))
    except (EvalError, TypeError, KeyError, IndexError):
        return None
    return value if isinstance(value, bool) else None


def _branches(taken: Class, other: Class, condition: str):
    """(__init__'s lines, forward's lines) of the merged class, or None when the forms do not differ
    as one branch of an `if` does: by submodules the taken branch adds, then forward from some statement on."""
    common = 0
    for (a, tree_a), (b, tree_b) in zip(taken.members, other.members):
        if a != b or flat(tree_a) != flat(tree_b):
            break
        common += 1
    own = [attr for attr, _tree in taken.members[common:] if attr not in {a for a, _t in other.members}]
    if not own or not all(attr.isidentifier() for attr, _tree in [*taken.members, *other.members]):
        return None
    t, e = taken.drafts[0], other.drafts[0]
    if signature(t.plan) != signature(e.plan):
        return None
    same = 0
    while same < min(len(t.forward), len(e.forward)) and t.forward[same] == e.forward[same]:
        same += 1
    starts = {line for _n, _v, line in t.where} & {line for _n, _v, line in e.where}
    start = max((line for line in starts if line <= same), default=0)
    node = next(n for n, _v, line in t.where if line == start)
    deeper, where = t.indented()
    begin = next(line for n, _v, line in where if n == node)
    init = [line for attr, tree in taken.members[:common] for line in _assign(attr, tree, 2)]
    init.append(f"        if {condition}:")
    init += [line for attr, tree in taken.members[common:] for line in _assign(attr, tree, 3)]
    init.append("        else:")
    init += [line for attr, tree in other.members[common:] for line in _assign(attr, tree, 3)]
    init += [f"            self.{attr} = None" for attr in own]
    forward = [*signature(t.plan), *t.forward[:start], f"        if self.{own[0]} is not None:"]
    return init, [*forward, *deeper[begin:], *e.forward[start:]]
