"""The spec's hierarchy as generated code nests it: one `Part` per block instance.

A part holds what its body defines, in definition order: layers, and the parts of
the blocks it calls. Each part gets a small graph of its own (`Part.graph`), one
node per item, named by the item's name in the body, with the block's input as a
node of op `input`: the same graph the flat generator walks for a whole network,
so a class's forward is written by the same code as the flat one.

The state_dict key of a layer is the path of attributes down to it, which is
its dotted name whenever every name is a legal attribute (`layer1.0.conv1`):
`keys()` gives it to both targets, so weights move between them by key.
"""

from __future__ import annotations

import keyword
import re
from dataclasses import dataclass, field, replace

from .. import ast
from ..expand import BLOCK_INPUT
from ..graph import Graph, Instance, Node
from .names import NN_MODULE_MEMBERS, Namespace

CALL = "<block>"  # the op of a node that stands for a part in its parent's graph
_KEY = re.compile(r"[A-Za-z0-9_-]+")  # what a name that is no identifier holds (archc/expand.py checks)


class ReachError(Exception):
    """A layer reads a layer inside a block instance other than its output (`t.first.a`)."""


@dataclass(eq=False)
class Part:
    instance: Instance | None  # None: the network's own body
    items: list = field(default_factory=list)  # Node or Part, in definition order
    graph: Graph | None = None
    attrs: dict[str, str] = field(default_factory=dict)  # item name -> attribute (its part of the key)
    input: str = ""  # the name of the input node in `graph` (a block's `in`)
    # the layer each input node of `graph` stands for, first `input` (a block of several inputs has more)
    sources: dict[str, str] = field(default_factory=dict)
    draft: object = None  # what a target wrote of it
    local: str = ""  # its name in its parent, where that is not its instance's (`features.1`: see `inline`)
    children: dict | None = field(default=None, repr=False)  # `child`'s index, built on first use

    def child(self, name: str) -> Part | None:
        """The part of the block instance its body names `name`: by an index built once, as a body
        may call thousands (a repeat), and each is looked up by name."""
        if self.children is None:
            self.children = {item.name: item for item in self.items if isinstance(item, Part)}
        return self.children.get(name)

    @property
    def name(self) -> str:
        return self.local or (self.instance.name if self.instance is not None else "")

    @property
    def numbered(self) -> bool:
        """Whether every item is named with a number: the body reads as an nn.Sequential."""
        return bool(self.items) and all(_local(item).isdigit() for item in self.items)

    def is_chain(self) -> bool:
        """Whether each item reads the one before it (the first reads the input), nothing else reads
        it, and the last is the value: the body is what nn.Sequential computes."""
        nodes = [n for n in self.graph if n.name != self.input]
        previous = self.input
        for node in nodes:
            if node.inputs != [previous] or self.graph.readers[previous] != [node.name]:
                return False
            previous = node.name
        return [n.name for n in self.graph.outputs] == [previous] and not self.graph.readers[previous]


def _local(item) -> str:
    return item.local if isinstance(item, Node) else item.name


def attribute(name: str, taken: Namespace) -> str:
    """The attribute an item is stored under: its own name, unless Python or nn.Module cannot have it
    (a keyword, a member such as `forward`, a name Python would mangle). A name that is no identifier
    (a number, a quoted `block1-0`: only letters, digits, `_` and `-`) stays itself, registered with
    add_module and read with getattr, as torchvision registers `block1-0`."""
    ok = name.isidentifier() and name.isascii() and not keyword.iskeyword(name)
    if _KEY.fullmatch(name) and not name.isidentifier():
        return name
    if ok and name not in NN_MODULE_MEMBERS and not name.startswith("__"):
        return name
    return taken.name(name)


def build(network) -> Part:
    """The network's parts; ReachError when a layer reads inside a block instance."""
    graph = network.graph
    root = Part(None)
    parts: dict[int, Part] = {}

    def part_of(instance: Instance | None) -> Part:
        if instance is None:
            return root
        if id(instance) not in parts:
            parent = part_of(instance.parent)
            parts[id(instance)] = part = Part(instance)
            parent.items.append(part)
        return parts[id(instance)]

    for node in graph:
        part_of(node.instance).items.append(node)
    _graphs(root, graph)
    return root


def _graphs(part: Part, graph: Graph) -> None:
    """Each part's own graph and attributes, children first."""
    for item in part.items:
        if isinstance(item, Part):
            _graphs(item, graph)
    locals_ = [_local(item) for item in part.items]
    own = Graph(part.name or graph.name, graph.file)
    if part.instance is not None:
        names = Namespace({*locals_})
        declared = [p.name for p in part.instance.definition.inputs] or [""]
        for i, (source, word) in enumerate(zip(part.instance.inputs, declared, strict=True)):
            # `in` is x_in; the inputs of a block of several keep the names it gives them (`residual`)
            local = names.name(word or "x_in", key=str(i))
            part.sources[local] = source
            own.add(replace(graph.nodes[source], name=local, op="input", inputs=[], activation=None))
        part.input = next(iter(part.sources))
    written = _written(part)
    for item in part.items:
        if isinstance(item, Node):
            refs = written(item.span, len(item.inputs))
            inputs = [_ref(part, graph, i, ref) for i, ref in zip(item.inputs, refs, strict=True)]
            own.add(replace(item, name=item.local, inputs=inputs))
        else:
            out = graph.nodes[item.instance.output]
            refs = written(item.instance.call, len(item.instance.inputs))
            reads = [_ref(part, graph, i, ref) for i, ref in zip(item.instance.inputs, refs, strict=True)]
            stand_in = Node(item.name, CALL, reads, {}, item.instance.call)
            stand_in.shape, stand_in.instance = out.shape, item.instance
            own.add(stand_in)
    if part.instance is not None:
        own.declared_outputs = [_ref(part, graph, part.instance.output)]
    else:
        own.declared_outputs = [_ref(part, graph, n.name) for n in graph.outputs]
    part.graph = own
    taken = Namespace({*NN_MODULE_MEMBERS, *locals_})
    part.attrs = {name: attribute(name, taken) for name in locals_}


def _written(part: Part):
    """(span of a statement of the part's body, its number of inputs) -> the reference the spec wrote
    for each input (None: not written, the statement reads the one before it, or `in`). Only a call
    that gives one layer for several inputs (`mix (x, x)`) needs them: for any other the layer's name
    tells which input it is, and the body is not read."""
    instance = part.instance
    if instance is None or len(set(instance.inputs)) == len(instance.inputs):
        return lambda _span, count: [None] * count
    by_span = statements(instance.definition.body)

    def refs(span, count):
        stmt = by_span.get(span)
        written = getattr(stmt, "inputs", None)
        return list(written) if written is not None and len(written) == count else [None] * count

    return refs


def statements(body) -> dict:
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


def _ref(part: Part, graph: Graph, name: str, written: ast.Ref | None = None) -> str:
    """The name in `part`'s graph of the layer `name`: its input, one of its layers, or the part
    whose value it is. `written`, the reference the spec wrote, tells which input it is where the
    call gave `name` for several (`mix (x, x)` reads `x` as `in` and as `residual`)."""
    if part.instance is not None and name in part.instance.inputs:
        given = [local for local, source in part.sources.items() if source == name]
        if len(given) > 1:
            declared = [p.name for p in part.instance.definition.inputs]
            head = written.parts[0] if written is not None else BLOCK_INPUT
            return list(part.sources)[declared.index(head) if head in declared else 0]
        return given[0]
    node = graph.nodes[name]
    at = node.instance
    if at is part.instance:
        return node.local
    while at is not None and at.parent is not part.instance:
        at = at.parent
    if at is None or at.output != name:
        raise ReachError(name)
    return at.name


def inline(part: Part, which) -> None:
    """Puts the items of each child part that `which(child)` holds into the part itself, under
    dotted names (`downsample.0`, its attribute's and theirs), the child's graph spliced into the
    part's where its node stood: the NumPy target computes an nn.Sequential of layers in the class
    that builds it. Children first, so a child's own are in it already."""
    for item in part.items:
        if isinstance(item, Part):
            inline(item, which)
    children = {item.name: item for item in part.items if isinstance(item, Part) and which(item)}
    if not children:
        return
    own = Graph(part.graph.name, part.graph.file)
    value: dict[str, str] = {}  # a child's name -> the node of its value, in the part's graph
    for node in part.graph:
        child = children.get(node.name) if node.op == CALL else None
        if child is None:
            own.add(replace(node, inputs=[value.get(i, i) for i in node.inputs]))
            continue
        prefix = node.name + "."
        given = {local: value.get(read, read) for local, read in zip(child.sources, node.inputs, strict=True)}
        for inner in child.graph:
            if inner.op != "input":
                own.add(
                    replace(inner, name=prefix + inner.name, inputs=[given.get(i, prefix + i) for i in inner.inputs])
                )
        out = child.graph.declared_outputs[0]
        value[node.name] = given.get(out, prefix + out)
    own.declared_outputs = [value.get(n, n) for n in part.graph.declared_outputs]
    items, attrs = [], {}
    for item in part.items:
        child = children.get(_local(item))
        if child is None:
            items.append(item)
            attrs[_local(item)] = part.attrs[_local(item)]
            continue
        for inner in child.items:
            local = _local(inner)
            name = f"{child.name}.{local}"
            if isinstance(inner, Part):
                inner.local = name
            else:
                inner = replace(inner, local=name)
            items.append(inner)
            attrs[name] = f"{part.attrs[child.name]}.{child.attrs[local]}"
    part.items, part.attrs, part.graph = items, attrs, own
    part.children = None  # (`child`'s index, of the items it had)


def keys(root: Part) -> dict[str, str]:
    """layer -> the prefix of its state_dict keys: the attributes down to it, joined by dots."""
    out: dict[str, str] = {}

    def walk(part: Part, prefix: str) -> None:
        for item in part.items:
            attr = prefix + part.attrs[_local(item)]
            if isinstance(item, Part):
                walk(item, attr + ".")
            else:
                out[item.name] = attr

    walk(root, "")
    return out
