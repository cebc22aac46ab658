"""What both targets share: the names of things and the walk over the graph.

A `Plan` fixes, once per network, the attribute of every layer (which is
also its state_dict prefix, identical in both targets so weights move
between them by key) and the variable that holds every value in `forward`.
A value read only by the next statement lives in `x`, as a person writes a
chain; a value read later, or by several layers, keeps its layer's name
until `del` lets it go after its last reader.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from ..ops import OPS
from .names import NN_MODULE_MEMBERS, Namespace, class_name
from .pyexpr import Call, Index, Temp, Update, assignment, deletion, flat, is_identifier, lines, lit

UNUSED = "unused: nothing reads it (W0302)"  # the comment on the statement of a layer nothing reads


@dataclass
class Generated:
    """Source code, and for each layer the line where its statement starts in forward."""

    code: str
    # (layer, variable, line): the variable that holds the value once the statement has run (None when
    # the statement returns it or, for a layer nothing reads, drops it). A layer with no statement of its
    # own (an identity: its value is already in a variable) has the line of whatever comes next.
    statements: list[tuple[str, str | None, int]] = field(default_factory=list)
    attrs: dict[str, str] = field(default_factory=dict)  # layer -> attribute, the prefix of its state_dict keys


@dataclass
class Plan:
    network: object
    cls: str
    attrs: dict[str, str]
    vars: dict[str, str | None]  # None for a layer nothing reads: its value is never stored
    params: list[str]
    outputs: list[str]
    returned: frozenset[str]  # the outputs, to look up
    unused: frozenset[str]  # layers nothing reads and forward does not return (W0302)
    returns_last: bool  # one output, computed last: `return <expr>`
    computed: list  # the layers forward computes, in order: every layer but the inputs


class StateRef:
    """`s["<layer>.<suffix>"]`: how NumPy code reads one of a layer's arrays; `ties` maps a suffix to the
    key of the array it shares (a tied layer's weight: its layer's)."""

    def __init__(self, key: str, ties: dict[str, str] | None = None):
        self.key = key
        self.ties = ties or {}

    def name(self, suffix: str) -> str:
        """The state_dict key: `<layer>.<suffix>`, or `<layer>` alone for a parameter that is the
        layer itself (a bare nn.Parameter in torch, as layer_scale); a shared array's own key."""
        if suffix in self.ties:
            return self.ties[suffix]
        return f"{self.key}.{suffix}" if suffix else self.key

    def __call__(self, suffix: str):
        return Index("s", lit(self.name(suffix)))


def tied_keys(network, key: dict[str, str]) -> dict[str, str]:
    """The state_dict key of every tied weight (`dense ... tied=`) -> the key of the weight it is: both in
    torch's state_dict, as in a tied Hugging Face model, one array everywhere else. `key` gives each
    layer's state_dict prefix."""
    return {f"{key[n.name]}.weight": _tied_key(network.graph, n, key) for n in network.graph if n.attrs.get("tied")}


def _tied_key(graph, node, key: dict[str, str]) -> str:
    """The key of the weight a tied layer uses: its layer's, or, where that one is tied too, that one's."""
    while node.attrs.get("tied"):
        node = graph.nodes[node.attrs["tied"]]
    return f"{key[node.name]}.weight"


def torch_ties(network, key: dict[str, str]) -> list[str]:
    """The lines of __init__ that tie weights, as Hugging Face does (`self.lm_head.weight =
    self.transformer.wte.weight`): one parameter, under both keys of the state_dict. After the
    scheme's loop over the modules, so the weight starts as its own layer starts it."""

    def weight(k: str) -> str:
        module, _, name = k.rpartition(".")
        if all(part.isidentifier() for part in module.split(".")):
            return f"self.{module}.{name}"
        return f"self.get_submodule({lit(module)}).{name}"

    return [f"{weight(k)} = {weight(v)}" for k, v in tied_keys(network, key).items()]


def state_ref(node, key: dict[str, str], graph) -> StateRef:
    """The arrays of `node`, under the prefixes `key` gives; a tied weight is its layer's."""
    return StateRef(key[node.name], {"weight": _tied_key(graph, node, key)} if node.attrs.get("tied") else None)


def make_plan(network, module_names: tuple[str, ...]) -> Plan:
    """Names for everything, in one walk of the layers in definition order.

    Every layer is computed, the ones nothing reads included (archc warned about
    them, W0302): the generated code does what the spec says, so its parameters,
    MACs and random draws are the analysed ones.
    """
    graph = network.graph
    nodes = list(graph)
    top = Namespace(module_names)
    cls = top.name(class_name(network.name), fallback="Network")
    members = Namespace(NN_MODULE_MEMBERS)
    attrs = {n.name: members.name(n.name) for n in nodes if n.op != "input"}
    local = Namespace({*module_names, cls, "self", "s", "x"})
    outputs = [n.name for n in graph.outputs]
    returned = frozenset(outputs)
    unused = frozenset(n.name for n in graph.unused if n.op != "input")
    one_input = sum(n.op == "input" for n in nodes) == 1
    variables: dict[str, str | None] = {}
    for i, node in enumerate(nodes):
        readers = graph.readers[node.name]
        chained = (
            len(readers) == 1
            and i + 1 < len(nodes)
            and readers[0] == nodes[i + 1].name
            and nodes[i + 1].inputs.count(node.name) == 1
            and node.name not in returned
        )
        if node.name in unused:
            variables[node.name] = None
        elif node.op == "input":
            variables[node.name] = "x" if chained and one_input else local.name(node.name)
        else:
            variables[node.name] = "x" if chained else local.name(node.name)
    params = [variables[n.name] for n in nodes if n.op == "input"]
    returns_last = len(outputs) == 1 and outputs[0] == nodes[-1].name and nodes[-1].op != "input"
    computed = [n for n in nodes if n.op != "input"]
    return Plan(network, cls, attrs, variables, params, outputs, returned, unused, returns_last, computed)


def forward_body(plan: Plan, layer, activation, depth: int, first_line: int) -> tuple[list[str], list]:
    """The statements of forward, then the return.

    `layer(node, args)` gives a layer's expression, `activation(op, attrs, expr)`
    wraps it in its `-> name` activation. A layer given as `Update(x, y)` takes
    two statements: `x += y`, then the layer's value is `x` (after its activation;
    no second statement when that is `x` again in the layer's own variable).
    """
    out: list[str] = []
    where = []
    nodes = plan.computed
    last_read = {plan.vars[i]: k for k, node in enumerate(nodes) for i in node.inputs}
    kept = {"x", *plan.params, *(plan.vars[n] for n in plan.outputs)}
    for k, node in enumerate(nodes):
        start = len(out)
        expr = layer(node, [plan.vars[i] for i in node.inputs])
        last = node is nodes[-1] and plan.returns_last
        # A named value no later statement reads is deleted right after the statement that
        # reads it last, as a person frees a skip connection's input: kept until return,
        # every block's output would stay in memory (one ResNet-50 forward at batch 8
        # grew by 230 MiB instead of 170 MiB).
        target = expr.target if isinstance(expr, Update) else None
        reads = dict.fromkeys(plan.vars[i] for i in node.inputs)
        dead = [] if last else [v for v in reads if last_read[v] == k and v not in kept]
        if not last and _leaves_x_behind(plan, node, target):
            dead.append("x")
        if target is not None:
            out += assignment(f"{target} {expr.op}= ", expr.value, depth)
            # the updated tensor is now this layer's value: its old name goes once the
            # layer's own variable holds it
            out += deletion([v for v in dead if v != target], depth)
            dead = [target] if target in dead and target != plan.vars[node.name] else []
            expr = Temp(target)  # the updated tensor is this statement's alone
        if node.activation is not None:
            act, attrs = node.activation
            expr = activation(OPS[act], attrs, expr)
        value = flat(expr)
        if node.name in plan.unused and is_identifier(value):
            # an identity that nothing reads computes nothing; a bare name would be a useless statement
            out.append("    " * depth + f"# {plan.attrs[node.name]} = {value}, {UNUSED}")
            where.append((node.name, value, first_line + len(out)))
        elif node.name in plan.unused:  # computed as the spec says, then dropped
            where.append((node.name, None, first_line + start))
            out += lines(expr, depth, "", f"  # {UNUSED}")
        else:
            where.append((node.name, None if last else plan.vars[node.name], first_line + start))
            if last or value != plan.vars[node.name]:  # never `x = x`
                out += assignment("return " if last else f"{plan.vars[node.name]} = ", expr, depth)
        out += deletion(dead, depth)
    if not plan.returns_last:
        out.append("    " * depth + "return " + ", ".join(plan.vars[n] for n in plan.outputs))
    return out, where


def _leaves_x_behind(plan: Plan, node, target: str | None) -> bool:
    """Whether `node` reads the value in `x` for the last time and stores its own elsewhere.

    `x` would then hold a dead value until the next `x = ...` has run: in ResNet-50,
    a block's last conv output stayed alive through its shortcut's conv, 4-6% of the
    forward time at batch 8 (a torchvision Bottleneck rebinds `out` at once). Nothing
    is gained when `x` is the network's input (the caller holds it) or when `x += ...`
    made `x` the layer's own tensor.
    """
    if plan.vars[node.name] == "x" or target == "x":
        return False
    return any(plan.vars[i] == "x" and plan.network.layer(i).op != "input" for i in node.inputs)


def sole_reader(plan: Plan, name: str) -> str | None:
    """The layer that reads `name`'s value when forward reads it there only, once, and does not return it.

    After that layer, nothing reads the value again: the layer may overwrite it.
    Constant time: code generation asks this of every activation and residual add.
    """
    readers = plan.network.graph.readers[name]
    if len(readers) != 1 or name in plan.returned or plan.network.layer(readers[0]).inputs.count(name) != 1:
        return None
    return readers[0]


def signature(plan: Plan) -> list[str]:
    """`def forward(self, x):`, split as ruff splits it when the inputs' names make it too long."""
    return lines(Call("def forward", ("self", *plan.params)), 1, "", ":")


def header(network, target: str) -> list[str]:
    from pathlib import Path

    t = network.totals
    source = lit(Path(network.file).name)
    return [
        f"# Generated by archc from {source}: edit the spec and generate again rather than this file.",
        f"# {network.name}: {t.params:,} parameters, {t.macs:,} MACs per sample ({target}).",
    ]


def shapes_text(plan: Plan) -> list[str]:
    net = plan.network
    ins = [f"{plan.vars[n.name]}: N x {' x '.join(map(str, n.shape))}" for n in net.graph.inputs]
    outs = [f"{n}: N x {' x '.join(map(str, net.layer(n).shape))}" for n in plan.outputs]
    return [f"Input {', '.join(ins)}.", f"Output {', '.join(outs)}."]


def reserved_names() -> tuple[str, ...]:
    """Module-level names of either target; layers never take them, so both targets name alike."""
    from .numpy_target import kernel_names

    return ("torch", "nn", "F", "np", "build_model", *kernel_names())
