"""Diagrams: an analysed network as graphviz DOT, drawn the way people draw networks by hand.

`to_dot` turns the graph into DOT text (pure Python, deterministic: the same
spec gives the same text); `render` runs the real graphviz `dot` for .svg,
.png and .pdf; `diagram` returns a `graphviz.Source`, which a Jupyter
notebook displays inline.

What a reader sees, and why:
- a node per layer with its name, type and key settings and its output
  shape; every edge labelled with the tensor shape it carries;
- blocks as labelled clusters, nested as the spec nests them, and below
  `depth` collapsed into one node with their totals, so a deep network fits
  a page;
- `fold` merges shape-preserving single-input layers (activations, the
  norms, dropout, LRN) into the layer before them, as people draw them;
- edges along the definition order weigh more than skips, so a residual
  shortcut goes around its main path and parallel branches sit side by side.
- a squeeze-excitation gate (an element-wise op broadcasting a smaller input
  over a map) is a side branch: the map goes straight into the multiply (one
  `group`, which dot keeps in line) and the gate leaves it and comes back;
- `newrank` ranks the nodes of clusters with the rest of the graph, so that a
  branch in a block starts beside the path it leaves, not below it.
"""

from __future__ import annotations

import itertools
import shutil
import subprocess
from dataclasses import dataclass, field
from html import escape
from pathlib import Path

from . import arguments
from .files import write_output
from .graph import Instance, folded_into
from .ops import OPS
from .ops.base import fmt_shape as _sizes

DETAILS = ("name", "normal", "full")
RANKDIRS = ("TB", "LR")
RENDERED = (".svg", ".png", ".pdf")
FORMATS = (*RENDERED, ".dot", ".gv")

# kind -> (ops, fill colour); the legend shows the kinds a diagram uses
KINDS = {
    "input": (("input",), "#ffffff"),
    "convolution": (("conv", "dwconv", "deconv"), "#cfe2ff"),
    "pooling": (
        (
            "maxpool",
            "avgpool",
            "minpool",
            "l2pool",
            "adaptiveavgpool",
            "adaptivemaxpool",
            "globalavgpool",
            "globalmaxpool",
            "mean",
        ),
        "#d1f0d8",
    ),
    "normalisation": (("bn", "layernorm", "groupnorm", "instancenorm", "lrn", "layer_scale"), "#fff3c4"),
    "dense": (("dense",), "#ffdcb8"),
    "recurrent": (("lstm", "gru"), "#c9ece6"),
    "embedding": (("embedding", "param"), "#d8f3f0"),
    "activation": (tuple(name for name, op in OPS.items() if op.is_activation), "#f8d7e8"),
    "merge": (("concat", "add", "mul", "sub", "div"), "#e2e3e5"),
    "reshape": (("flatten", "reshape", "upsample", "zeropad", "dropout", "drop_path", "shuffle"), "#f1f1f1"),
}
KIND_OF = {op: kind for kind, (ops, _) in KINDS.items() for op in ops}
BLOCK_COLOUR = "#e6dcf5"


def fmt_shape(shape) -> str:
    """A shape as boxes and edges print it: `197x768`; token ids say so, `512 ids`."""
    return _sizes(shape) + (" ids" if getattr(shape, "vocab", None) is not None else "")


FOLDABLE = frozenset({*KINDS["activation"][0], *KINDS["normalisation"][0], "dropout", "drop_path"})
BROADCASTING = frozenset({"add", "mul", "sub", "div"})


class DiagramError(Exception):
    """A diagram could not be rendered (graphviz missing, a bad file name)."""


@dataclass
class _Box:
    """One drawn node: a layer, or a collapsed block with its totals."""

    id: str
    title: str
    lines: list[str]
    kind: str
    shape: tuple | None
    params: int = 0
    macs: int = 0
    cluster: tuple = ()  # the (block, instance) path it is drawn inside
    folded: list[str] = field(default_factory=list)


def _q(text: str) -> str:
    """A DOT quoted string."""
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n") + '"'


def _settings(node) -> str:
    return OPS[node.op].settings(node)


def _layer_box(node, detail: str) -> _Box:
    lines = []
    if detail != "name":
        kind_line = f"{node.op} {_settings(node)}".strip()
        if node.activation:
            kind_line += f" \u2192 {node.activation[0]}"
        lines.append(kind_line)
        lines.append(fmt_shape(node.shape) if node.shape else "?")
    else:
        lines.append(node.op)
    return _Box(
        node.name,
        node.name.split(".")[-1] if node.scope else node.name,
        lines,
        KIND_OF.get(node.op, "reshape"),
        node.shape,
        node.params,
        node.macs,
    )


def _collapsed(instance, members, detail) -> _Box:
    last = members[-1]
    params = sum(m.params for m in members)
    macs = sum(m.macs for m in members)
    lines = [instance.block]
    if detail != "name":
        lines.append(f"{len(members)} layers, out {fmt_shape(last.shape) if last.shape else '?'}")
    if detail == "full":
        lines.append(f"{params:,} params, {macs:,} MACs")
    cluster = tuple((i.block, i.name) for i in instance.path[:-1])
    return _Box(instance.qualified, instance.name, lines, "block", last.shape, params, macs, cluster)


def to_dot(
    network, *, depth: int | None = None, fold: bool = False, detail: str = "normal", rankdir: str = "TB"
) -> str:
    """DOT text for the network; `depth` None draws every layer, 0 collapses every block."""
    arguments.whole("depth", depth, 0, optional=True)
    arguments.flag("fold", fold)
    arguments.choice("detail", detail, DETAILS)
    arguments.choice("rankdir", rankdir, RANKDIRS)
    graph = network.graph
    rep: dict[str, str] = {}  # layer -> the box it is drawn in
    boxes: dict[str, _Box] = {}  # in the order the spec defines them
    groups: dict[Instance, list] = {}
    for node in graph:
        if (instance := folded_into(node, depth)) is not None:
            groups.setdefault(instance, []).append(node)
    for node in graph:
        if (instance := folded_into(node, depth)) is not None:
            box = _collapsed(instance, groups[instance], detail)
            boxes.setdefault(box.id, box)
            rep[node.name] = box.id
            continue
        if fold and _foldable(graph, node, rep):
            host = boxes[rep[node.inputs[0]]]
            host.folded.append(node.op + (f" \u2192 {node.activation[0]}" if node.activation else ""))
            host.shape = node.shape
            rep[node.name] = host.id
            continue
        box = _layer_box(node, detail)
        box.cluster = node.scope
        if detail == "full":
            box.lines.append(f"{node.params:,} params, {node.macs:,} MACs")
        boxes[box.id] = box
        rep[node.name] = box.id
    return _write(network, boxes, rep, rankdir, detail)


def _foldable(graph, node, rep) -> bool:
    if node.op not in FOLDABLE or len(node.inputs) != 1:
        return False
    src = node.inputs[0]
    host = rep.get(src)
    if host is None or graph.nodes[src].op == "input" or len(graph.consumers(src)) != 1:
        return False
    return graph.nodes[src].scope == node.scope or host != src


def _label(box: _Box) -> str:
    title = f"<b>{escape(box.title)}</b>"
    lines = list(box.lines)
    if box.folded:
        folded = " + ".join(box.folded)
        if lines and box.kind != "block":
            lines[0] = f"{lines[0]} + {folded}"
        if box.shape and len(lines) > 1 and box.kind != "block":
            lines[1] = fmt_shape(box.shape)
    body = "".join(f'<br/><font point-size="10">{escape(line)}</font>' for line in lines)
    return f"<{title}{body}>"


@dataclass(frozen=True)
class _Gate:
    """An element-wise op that broadcasts a smaller input (a squeeze-excitation gate) over a map."""

    map: str  # the layer of the map, the op's input of its output's shape: the main path
    op: str
    entries: tuple[str, ...]  # the gate's layers that read the map, where the side branch leaves it


def _gates(graph, order) -> dict[str, _Gate]:
    """Every gate, by its op. The entries are found by walking back from the gate's input to the
    map: only the layers defined after the map can lie between them (the order is topological)."""
    gates = {}
    for node in graph:
        names = list(dict.fromkeys(node.inputs))
        maps = [name for name in names if graph.nodes[name].shape == node.shape]
        if node.op not in BROADCASTING or len(names) != 2 or len(maps) != 1:
            continue
        (map_,) = maps
        entries, seen, todo = [], set(), [name for name in names if name != map_]
        while todo:
            name = todo.pop()
            if name in seen or order[name] <= order[map_]:
                continue
            seen.add(name)
            inputs = graph.nodes[name].inputs
            if map_ in inputs:
                entries.append(name)
            todo.extend(inputs)
        gates[node.name] = _Gate(map_, node.name, tuple(entries))
    return gates


def _main_path(node, src: str, order, gates: dict[str, _Gate], side: set[tuple[str, str]]) -> bool:
    """Whether the edge src -> node is the main path, which pulls harder than a skip or a branch.

    It is the previous layer in the spec, except at a squeeze-excitation gate: into the multiply,
    the main path is the map, and the edge from the map into the gate (defined right after the
    map) is a side branch, so that the gate is drawn beside the map's straight path into the
    multiply, not in line with it.
    """
    if node.name in gates:
        return gates[node.name].map == src
    if (src, node.name) in side:
        return False
    return order[node.name] - order[src] == 1


def _write(network, boxes, rep, rankdir, detail) -> str:
    out = [
        f"digraph {_q(network.name)} {{",
        f"  graph [rankdir={rankdir}, newrank=true, ordering=out, fontname=Helvetica, nodesep=0.3, ranksep=0.35, "
        f"label={_q(network.name)}, labelloc=t, fontsize=16];",
        '  node [shape=box, style="rounded,filled", fontname=Helvetica, fontsize=12, margin="0.15,0.06"];',
        '  edge [fontname=Helvetica, fontsize=9, color="#555555", arrowsize=0.6];',
    ]
    colours = {kind: colour for kind, (_ops, colour) in KINDS.items()} | {"block": BLOCK_COLOUR}
    # clusters: a tree of (block, instance) paths, in the order the spec first uses them;
    # each box sits in its deepest cluster (boxes are already in definition order)
    tree: dict[tuple, list[_Box]] = {}
    children: dict[tuple, list[tuple]] = {}
    known: set[tuple] = set()
    for box in boxes.values():
        tree.setdefault(box.cluster, []).append(box)
        for i in range(1, len(box.cluster) + 1):
            path = box.cluster[:i]
            if path not in known:
                known.add(path)
                children.setdefault(path[:-1], []).append(path)

    order = {name: i for i, name in enumerate(network.graph.nodes)}
    gates = _gates(network.graph, order)
    side = {(gate.map, entry) for gate in gates.values() for entry in gate.entries}
    # the map's box and its multiply's in one group, which dot keeps in a straight line
    groups = {}
    for gate in gates.values():
        if rep[gate.map] != rep[gate.op]:
            groups.setdefault(rep[gate.map], rep[gate.op])
            groups.setdefault(rep[gate.op], rep[gate.op])

    def emit(path: tuple, indent: str) -> None:
        for box in tree.get(path, []):
            extra = ", shape=box3d" if box.kind == "block" else ""
            extra += f", group={_q(groups[box.id])}" if box.id in groups else ""
            out.append(f"{indent}{_q(box.id)} [label={_label(box)}, fillcolor={_q(colours[box.kind])}{extra}];")
        for child in children.get(path, []):
            block, instance = child[-1]
            name = ".".join(i for _b, i in child)
            out.append(f"{indent}subgraph {_q('cluster_' + name)} {{")
            out.append(
                f'{indent}  graph [label={_q(f"{instance} ({block})")}, style="rounded,dashed", color="#8a8a8a", '
                f"fontsize=11, labeljust=l];"
            )
            emit(child, indent + "  ")
            out.append(f"{indent}}}")

    emit((), "  ")
    # one edge between two boxes, labelled by the first connection it draws; it is the main path
    # when any is (into a collapsed gate, the map's edge to the multiply, not the one to its pool)
    edges: dict[tuple[str, str], tuple[str, int]] = {}
    for node in network.graph:
        for src in node.inputs:
            a, b = rep[src], rep[node.name]
            if a == b:
                continue
            shape = network.graph.nodes[src].shape
            label, weight = edges.get((a, b), (fmt_shape(shape) if shape else "?", 1))
            edges[a, b] = label, max(weight, 3 if _main_path(node, src, order, gates, side) else 1)
    for (a, b), (label, weight) in edges.items():
        out.append(f"  {_q(a)} -> {_q(b)} [label={_q(' ' + label)}, weight={weight}];")
    for node in network.graph:  # a tied weight: a dashed line from the layer whose weight it is, no data
        tied = node.attrs.get("tied")
        if tied and rep[tied] != rep[node.name]:
            out.append(
                f'  {_q(rep[tied])} -> {_q(rep[node.name])} [label=" tied weight", style=dashed, constraint=false];'
            )
    used = sorted({box.kind for box in boxes.values()}, key=[*KINDS, "block"].index)
    out.append("  subgraph cluster_legend {")
    out.append('    graph [label="legend", style="rounded", color="#cccccc", fontsize=10];')
    for kind in used:
        out.append(
            f"    {_q('legend_' + kind)} [label={_q(kind)}, fillcolor={_q(colours[kind])}, fontsize=9, "
            f'{"shape=box3d, " if kind == "block" else ""}margin="0.08,0.03"];'
        )
    out.append("    {rank=same; " + " ".join(_q("legend_" + kind) for kind in used) + "}")
    for a, b in itertools.pairwise(used):  # in this order, left to right
        out.append(f"    {_q('legend_' + a)} -> {_q('legend_' + b)} [style=invis];")
    out.append("  }")
    out.append("}")
    return "\n".join(out) + "\n"


def dot_executable() -> str | None:
    return shutil.which("dot")


def render(dot: str, path: str | Path, *, timeout: float = 120) -> Path:
    """Write `path` (as archc.files writes outputs): DOT text for .dot/.gv, else drawn by graphviz's `dot`.

    When dot is missing, or does not finish within `timeout` seconds, the DOT source is written beside `path`
    instead, and DiagramError says so: the work is not lost, and `dot` can be run on it by hand.
    """
    arguments.text("dot", dot)
    path = arguments.path("path", path)
    if isinstance(timeout, bool) or not isinstance(timeout, int | float):
        raise TypeError(f"timeout must be a number of seconds, not {type(timeout).__name__}")
    if not 0 < timeout < float("inf"):
        raise ValueError(f"timeout must be a number of seconds above 0, not {timeout}")
    suffix = path.suffix.lower()
    if suffix not in FORMATS:
        raise DiagramError(f"cannot tell the format of `{path}`: use one of {', '.join(FORMATS)}")
    if suffix in (".dot", ".gv"):
        write_output(path, dot)
        return path
    exe = dot_executable()
    if exe is None:
        raise DiagramError(
            f"graphviz's `dot` is not installed, so `{path}` was not drawn; the DOT source is in "
            f"`{_save_source(dot, path)}` "
            "(install graphviz: `sh .ci/install-graphviz`, `apt-get install graphviz` or `brew install graphviz`)"
        )
    try:
        done = subprocess.run([exe, f"-T{suffix[1:]}"], input=dot.encode(), capture_output=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        raise DiagramError(
            f"graphviz's `dot` did not finish within {timeout:g} s, so `{path}` was not drawn; the DOT source is "
            f"in `{_save_source(dot, path)}`: run `dot -T{suffix[1:]}` on it yourself, allow it longer (--timeout), "
            "or draw less (--depth, --fold)"
        ) from None
    if done.returncode != 0:
        raise DiagramError(f"dot failed: {done.stderr.decode(errors='replace').strip()}")
    write_output(path, done.stdout)
    return path


def _save_source(dot: str, path: Path) -> Path:
    """The DOT text beside `path`, for when it could not be drawn; where it is."""
    source = path.with_suffix(".dot")
    write_output(source, dot)
    return source


def diagram(network, **options):
    """The diagram as a `graphviz.Source`: it renders inline in Jupyter, and `.render()` / `.pipe()` work."""
    import graphviz

    return graphviz.Source(to_dot(network, **options), filename=f"{network.name}.gv")
