"""The graph IR: one `Node` per layer, and the edges between them.

There is one node kind per operation in the registry (`input` included);
blocks and repeats are gone by the time a Graph exists. Nodes are kept in
definition order, which is a topological order because a layer may only
take inputs from layers defined before it; every pass is a single walk of
that order, so analysis is linear in the size of the network.

The passes need only each layer's inputs and readers, which the Graph keeps
itself; `Graph.nx`, the same graph as a networkx DiGraph, is built when
something needs a graph algorithm (code generation, some error hints).
Importing networkx is ~100 ms, more than half of a cold `archc table`
(benchmarks/HISTORY.md), for a command that uses none of it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cached_property
from typing import TYPE_CHECKING

from .diagnostics import Span

if TYPE_CHECKING:
    import networkx as nx


@dataclass(eq=False)
class Instance:
    """One call of a block, as expansion bound it: what generated code makes one submodule of.

    Kept so that what a spec writes nested stays nested after expansion: code generation
    makes one class per block definition and one submodule per instance, and needs each
    instance's definition and the values its parameters took.
    """

    block: str  # the block definition's name
    name: str  # its name in the body that calls it: "layer1", "0", "basic1"
    prefix: str  # what the names of the nodes inside it start with: "layer1.0."
    args: dict  # the block's parameters bound to their values at this call, defaults included
    parent: Instance | None  # the instance whose body calls it; None in the network's body
    iteration: tuple[int, ...] = ()  # the iteration of each repeat around the call in its body, outermost first
    definition: object = None  # the block's ast.Block: its parameters and body as written
    input: str = ""  # the layer its body reads as `in`
    inputs: tuple[str, ...] = ()  # every layer it reads: `in` and the others of a block of several inputs
    output: str = ""  # the layer that is its value (the last of its body), once expanded
    call: Span | None = None  # the statement that calls it

    @property
    def qualified(self) -> str:
        """Its dotted name in the network, which the names of its layers start with: "layer1.0"."""
        return self.prefix.removesuffix(".")

    @property
    def path(self) -> tuple[Instance, ...]:
        """The enclosing instances, outermost first, this one last."""
        out, at = [], self
        while at is not None:
            out.append(at)
            at = at.parent
        return tuple(reversed(out))


@dataclass(eq=False)
class Node:
    name: str  # unique, dotted through block instances: "layer1.0.conv1"
    op: str
    inputs: list[str]
    attrs: dict
    span: Span
    arg_spans: dict[str, Span] = field(default_factory=dict)
    activation: tuple[str, dict] | None = None  # the `-> act` shorthand
    scope: tuple[tuple[str, str], ...] = ()  # (block, instance) from outermost in
    calls: tuple[Span, ...] = ()  # where each enclosing block was called
    local: str = ""  # its name in the body that defines it: "conv1", "c_2", "3"
    instance: Instance | None = None  # the block instance whose body defines it; None in the network's body
    iteration: tuple[int, ...] = ()  # the iteration of each repeat around it in that body, outermost first
    written: bool = False  # whether the spec names it (`globalavgpool avgpool`), not archc
    # written by the analysis passes
    geom: dict = field(default_factory=dict)
    shape: tuple[int, ...] | None = None  # an ops.base.Layout: also the axis of the channels
    params: int = 0
    buffers: int = 0
    macs: int = 0
    elem_ops: int = 0  # element operations: the arithmetic outside MACs (docs/language.md, section 12)
    workspace: int = 0  # values per sample held only while the layer runs (attention's weights)
    rf: tuple | None = None
    failed: bool = False

    @property
    def activations(self) -> int:
        """Values per sample; none for a tensor the batch shares (a learned `param`): it is a parameter."""
        if not getattr(self.shape, "batched", True):
            return 0
        n = 1
        for v in self.shape or ():
            n *= v
        return n if self.shape is not None else 0


def folded_into(node: Node, depth: int | None) -> Instance | None:
    """The block instance that shows `node` when blocks nested deeper than `depth` are folded: its
    enclosing instance `depth` levels down (0: the outermost), or None when it is shown as itself.

    The one rule `archc diagram --depth` and `archc table --depth` fold by, so that the same depth folds
    the same blocks in both.
    """
    if depth is None or node.instance is None:
        return None
    path = node.instance.path
    return path[depth] if len(path) > depth else None


class Graph:
    def __init__(self, name: str, file: str):
        self.name = name
        self.file = file
        self.nodes: dict[str, Node] = {}  # insertion order = topological order
        self.readers: dict[str, list[str]] = {}  # layer -> the layers that take it as an input, in order
        self.declared_outputs: list[str] | None = None  # from `output (a, b)`
        self.init: str | None = None  # `network N init=SCHEME {`: how build_model() starts the weights

    def add(self, node: Node) -> Node:
        self.nodes[node.name] = node
        self.readers[node.name] = []
        for src in dict.fromkeys(node.inputs):  # `add (a, a)` reads a once
            self.readers[src].append(node.name)
        self.__dict__.pop("nx", None)  # a DiGraph built before this node is out of date
        return node

    @cached_property
    def nx(self) -> nx.DiGraph:
        """The graph as a networkx DiGraph: node names, with the Node as attribute `node`."""
        import networkx as nx

        graph = nx.DiGraph()
        for node in self:
            graph.add_node(node.name, node=node)
            graph.add_edges_from((src, node.name) for src in node.inputs)
        return graph

    def __iter__(self):
        return iter(self.nodes.values())

    def __len__(self) -> int:
        return len(self.nodes)

    @property
    def inputs(self) -> list[Node]:
        return [n for n in self if n.op == "input"]

    @property
    def outputs(self) -> list[Node]:
        """What the network returns: the layers `output (...)` names, else the last layer.

        A network of inputs alone returns its last input (it is the identity), so that
        every network returns something, as its generated code does.
        """
        if self.declared_outputs is not None:
            return [self.nodes[name] for name in self.declared_outputs]
        layers = [n for n in self if n.op != "input"] or list(self)
        return layers[-1:]

    @property
    def unused(self) -> list[Node]:
        """Layers nothing reads and the network does not return."""
        outputs = {n.name for n in self.outputs}
        return [n for n in self if not self.readers[n.name] and n.name not in outputs]

    def consumers(self, name: str) -> list[str]:
        return list(self.readers[name])
