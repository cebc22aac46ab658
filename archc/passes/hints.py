"""What would make a shape diagnostic go away, tried before it is offered.

Some diagnostics have a likely cause that one change fixes: a stride that
does not divide evenly (W0301: more padding, or another input size), a
`dense ... in=N` that gets another size (E0218: usually far upstream, an input
of another resolution than the layer table assumed, or a stride-1 convolution
whose padding shrinks the map; or `in=` itself), an empty output (E0302:
`pad=same`), a 3-D average pool larger than its input (E0205: a smaller
window), a dense layer on a map (E0304: `flatten` first, or `permute` to put
the channels last), a shortcut into a
smaller input (E0305: the inputs in another order), a gate multiplied with a
map of another rank (E0305: a `reshape` to C x 1 x 1). The layer types propose
changes (`Proposal`); each is tried here by running the shape pass again with
it made, and offered only when the diagnostic goes away, no new one appears,
and the layer gets the output the help promises. The help line carries the
edit of the spec as a `Fix`, so that pasting it gives exactly that. Each
trial is a linear pass, run only when these diagnostics occur, and all of
them together are bounded (`WORK`).
"""

from __future__ import annotations

from collections import Counter

from ..diagnostics import Fix, Reporter, Span, source_lines
from ..graph import Node
from ..ops import OPS
from ..ops.base import Proposal, fmt_padding, fmt_shape, pad_spelling

MAX_TRIALS = 80  # shape passes one analysis may run to find and check fixes
WORK = 200_000  # ... and layers those passes may visit in all (~2 s): a big network gets fewer trials
COMMON_SIZES = (28, 32, 64, 96, 112, 128, 160, 224, 227, 229, 256, 299, 320, 384, 448, 512)


class Trials:
    """Runs the shape pass with a change made, within the budget, and puts everything back."""

    def __init__(self, graph, reporter: Reporter, overrides: dict, infer, sources: dict[str, str]):
        self.graph, self.overrides, self.infer, self.sources = graph, overrides, infer, sources
        self.left = min(MAX_TRIALS, WORK // max(len(graph), 1))
        self.known = {_key(d) for d in reporter.diagnostics}
        self.results = [(n, n.attrs, n.geom, n.shape, n.failed) for n in graph]  # what each trial rewrites
        self.statements = Counter(n.span for n in graph)  # a statement that makes several layers

    def works(
        self, diag, node, changes: dict, overrides: dict, spatial=None, before=None, inputs=None
    ) -> tuple[int, ...] | None:
        """`node`'s output shape when the pass, with `changes` ({node: {param: value}}), input
        `overrides`, the layer `before` (or a chain of layers, a list) inserted to feed `node` and
        `node`'s `inputs` in another order, loses `diag`, gains no diagnostic and gives `node` the
        spatial size `spatial` (when given); else None."""
        if self.left <= 0:
            return None
        self.left -= 1
        trial = Reporter()
        saved = self.graph.nodes, node.inputs
        try:
            if before is not None:
                chain = before if isinstance(before, list) else [before]
                self.graph.nodes = {}
                for name, n in saved[0].items():
                    self.graph.nodes.update({**{b.name: b for b in chain}, name: n} if n is node else {name: n})
                node.inputs = [chain[-1].name]
            if inputs is not None:
                node.inputs = list(inputs)
            for n, attrs in changes.items():
                n.attrs = {**n.attrs, **attrs}
            self.infer(self.graph, trial, {**self.overrides, **overrides}, hints=False)
            found = {_key(d) for d in trial.diagnostics}
            shape = node.shape
            sized = shape is not None and (spatial is None or tuple(shape[1:]) == tuple(spatial))
            return shape if _key(diag) not in found and found <= self.known and sized else None
        finally:
            self.graph.nodes, node.inputs = saved
            self.restore()

    def restore(self) -> None:
        """The real network again: a trial changes attributes and overrides input shapes, and the
        pass rewrites every result; putting them back costs less than another pass."""
        for n, attrs, geom, shape, failed in self.results:
            n.attrs, n.geom, n.shape, n.failed = attrs, geom, shape, failed

    # -- the edits --------------------------------------------------------------------

    def editable(self, node) -> bool:
        """Whether an edit of the node's statement changes that layer alone, in a spec we have the text of.

        Not in a block body or a repeat (an edit would change every layer made of the
        statement), nor in an imported `.cfg` or `.prototxt` (not `.arch` text).
        """
        return node.span.file in self.sources and not node.scope and self.statements[node.span] == 1

    def written(self, span: Span) -> str:
        """The text at a span of a source (one line: arguments are)."""
        line = source_lines(self.sources[span.file])[span.line - 1]
        return line[span.col - 1 : span.end_col - 1 if span.end_line == span.line else None]

    def param_fix(self, node, param: str, text: str) -> Fix | None:
        """`text` (`pad=...`) in place of the layer's `param` argument, or after its last argument.

        A positional argument (`3` of `avgpool: 3`) is replaced by the bare value. None where
        the statement is not `editable`.
        """
        if not self.editable(node):
            return None
        if param in node.arg_spans:
            span = node.arg_spans[param]
            schema = {p.name: p for p in OPS[node.op].params}
            # given by position, not as a word (`same`) or by name
            bare = schema[param].positional and not self.written(span).startswith(f"{param}=")
            return Fix(span, text.split("=", 1)[1] if bare else text)
        if not node.arg_spans:
            return None
        end = max(node.arg_spans.values(), key=lambda s: (s.end_line, s.end_col))
        return Fix(Span(end.file, end.end_line, end.end_col, end.end_line, end.end_col), f" {text}")

    def input_fix(self, inp, shape) -> Fix | None:
        """The input's shape rewritten; None when the shape comes from an override, not the spec."""
        if not self.editable(inp) or inp.name in self.overrides or "shape" not in inp.arg_spans:
            return None
        return Fix(inp.arg_spans["shape"], fmt_shape(shape))


def _key(diag) -> tuple:
    """A diagnostic, told apart from those of the other copies of its statement by its message."""
    return diag.code, diag.span, diag.message


def offer_fixes(graph, reporter: Reporter, pending, overrides: dict, infer, sources: dict[str, str]) -> None:
    """Fill in the help and fixes of the diagnostics in `pending`: (diagnostic, node, proposals)."""
    trials = Trials(graph, reporter, overrides, infer, sources)
    for diag, node, proposals in pending:
        if diag.code == "E0218":
            diag.help, diag.fixes = dense_mismatch(trials, diag, node)
        elif diag.severity == "error" or not node.failed:  # a layer that warned, then failed, promises nothing
            _proposed(trials, diag, node, proposals)


def _proposed(trials: Trials, diag, node, proposals: list[Proposal]) -> None:
    """The help and fixes of the proposals that work (W0301: the padding, then the input size), in place
    of the diagnostic's own help or after it (`Proposal.instead`)."""
    helps, fixes = [], []
    src = trials.graph.nodes[node.inputs[0]] if node.inputs else None
    for prop in proposals:
        if prop.param in GRAPH_EDITS:  # edits of the graph, not of one argument
            found = GRAPH_EDITS[prop.param](trials, diag, node, prop)
            helps += found[:1]
            fixes += found[1:]
        elif prop.param != "input":
            fix = trials.param_fix(node, prop.param, prop.text)
            out = fix and trials.works(diag, node, {node: {prop.param: prop.value}}, {}, prop.spatial)
            if out:
                helps.append(f"{prop.text} {prop.says}, output {fmt_shape(out)}")
                fixes.append(fix)
        elif src is not None and src.op == "input":
            shape = (src.shape[0], *prop.value)
            fix = trials.input_fix(src, shape)
            out = fix and trials.works(diag, node, {}, {src.name: shape}, prop.spatial)
            if out:
                helps.append(f"an input `{src.name}` of {fmt_shape(shape)} {prop.says}, output {fmt_shape(out)}")
                fixes.append(fix)
    if helps:
        diag.help = [*(() if all(p.instead for p in proposals) else diag.help), *helps]
        diag.fixes = fixes


def _inserted_first(trials: Trials, diag, node, prop: Proposal) -> list:
    """[help, fix] for a `flatten` (or a `permute: ORDER`, an `embedding: WIDTH`: `prop.text`, its first
    parameter) statement inserted before a layer that reads the statement above (not one that names
    its input: the new statement would read the statement above, not that)."""
    src = trials.graph.nodes[node.inputs[0]]
    if not trials.editable(node) or "(" in trials.written(_head(node)):  # `dense fc (x): ...`
        return []
    name = f"{node.name}_in"  # named: an unnamed one would renumber the layers of its type after it
    while name in trials.graph.nodes:
        name += "_"
    params = OPS[prop.param].params
    attrs = {p.name: p.default for p in params if not p.required}
    if prop.value is not None:
        attrs[params[0].name] = prop.value
    out = trials.works(diag, node, {}, {}, before=Node(name, prop.param, [src.name], attrs, node.span))
    if not out:
        return []
    statement = f"{prop.param} {name}" + (f": {prop.text}" if prop.text else "")
    at = node.span
    fix = Fix(Span(at.file, at.line, at.col, at.line, at.col), f"{statement}\n{' ' * (at.col - 1)}")
    return [f"`{statement}` before it {prop.says}, output {fmt_shape(out)}", fix]


def _as_sequence(trials: Trials, diag, node, prop: Proposal) -> list:
    """[help, fix] for `reshape: C x P` then `permute: 1x0` inserted before a layer that reads the
    statement above: a channels-first map as a sequence of its P positions (`prop.value`: C x P)."""
    src = trials.graph.nodes[node.inputs[0]]
    if not trials.editable(node) or "(" in trials.written(_head(node)):  # `lstm r (x): ...`
        return []
    names = []
    for suffix in ("_in", "_seq"):
        name = f"{node.name}{suffix}"
        while name in trials.graph.nodes or name in names:
            name += "_"
        names.append(name)
    reshape = Node(names[0], "reshape", [src.name], {"shape": prop.value}, node.span)
    permute = Node(names[1], "permute", [names[0]], {"order": (1, 0)}, node.span)
    out = trials.works(diag, node, {}, {}, before=[reshape, permute])
    if not out:
        return []
    indent = " " * (node.span.col - 1)
    statements = [f"reshape {names[0]}: {fmt_shape(prop.value)}", f"permute {names[1]}: 1x0"]
    at = node.span
    fix = Fix(Span(at.file, at.line, at.col, at.line, at.col), "".join(f"{s}\n{indent}" for s in statements))
    return [f"`{statements[0]}` then `{statements[1]}` before it {prop.says}, output {fmt_shape(out)}", fix]


def _head(node) -> Span:
    """The statement up to its arguments (`shortcut s (a, b)`), on its first line."""
    span = node.span
    first = min(node.arg_spans.values(), key=lambda s: (s.line, s.col), default=None)
    if first is not None and first.line == span.line:
        return Span(span.file, span.line, span.col, span.line, first.col)
    return Span(span.file, span.line, span.col, span.line + 1, 1)  # the rest of the line


def _reordered(trials: Trials, diag, node, prop: Proposal) -> list:
    """[help, fix] for the inputs listed in the order `prop.value` (indices), as they are written."""
    if not trials.editable(node):
        return []
    head = _head(node)
    written = trials.written(head)
    start, end = written.find("("), written.find(")")
    refs = written[start + 1 : end].split(",") if 0 <= start < end else []
    if len(refs) != len(node.inputs):
        return []
    order = [node.inputs[i] for i in prop.value]
    out = trials.works(diag, node, {}, {}, inputs=order)
    if not out:
        return []
    text = ", ".join(refs[i].strip() for i in prop.value)
    col = head.col + start + 1
    fix = Fix(Span(head.file, head.line, col, head.line, col + end - start - 1), text)
    return [f"`{node.op} ({text})` {prop.says}, output {fmt_shape(out)}", fix]


def _input_refs(trials: Trials, node) -> tuple[Span, list[str]] | None:
    """The statement's head and its input references as written (`a`, ` b`), if it lists them all."""
    head = _head(node)
    written = trials.written(head)
    start, end = written.find("("), written.find(")")
    refs = written[start + 1 : end].split(",") if 0 <= start < end else []
    return (head, refs) if len(refs) == len(node.inputs) else None


def _reshaped_input(trials: Trials, diag, node, prop: Proposal) -> list:
    """[help, fix, fix] for a `reshape` of one input, inserted before the layer and read instead of
    that input: a gate of C values made C x 1 x 1 for a multiply with a map."""
    found = _input_refs(trials, node) if trials.editable(node) else None
    if found is None:
        return []
    head, refs = found
    index, shape = prop.value
    src = node.inputs[index]
    name = f"{src}_{node.name}"
    while name in trials.graph.nodes:
        name += "_"
    reshape = Node(name, "reshape", [src], {"shape": shape}, node.span)
    inputs = [name if i == index else other for i, other in enumerate(node.inputs)]
    out = trials.works(diag, node, {}, {}, before=reshape, inputs=inputs)
    if not out:
        return []
    statement = f"reshape {name} ({src}): {prop.text}"
    col = head.col + trials.written(head).find("(") + 1 + sum(len(r) + 1 for r in refs[:index])
    col += len(refs[index]) - len(refs[index].lstrip())
    indent = " " * (node.span.col - 1)
    at = node.span
    return [
        f"`{statement}` before it, read in place of `{src}`, {prop.says}, output {fmt_shape(out)}",
        Fix(Span(at.file, at.line, at.col, at.line, at.col), f"{statement}\n{indent}"),
        Fix(Span(head.file, head.line, col, head.line, col + len(refs[index].strip())), name),
    ]


GRAPH_EDITS = {
    "flatten": _inserted_first,
    "permute": _inserted_first,
    "inputs": _reordered,
    "reshape": _reshaped_input,
    "sequence": _as_sequence,
    "embedding": _inserted_first,
}


def dense_mismatch(trials: Trials, diag, node) -> tuple[list[str], list[Fix]]:
    """(help, fixes) for a dense layer whose input size is not its `in=`.

    `in=` is tried first, as the trials may run out: the changes upstream are searched for.
    """
    got = trials.graph.nodes[node.inputs[0]].shape[-1]  # the features dense reads
    text = f"in={got}"
    fix = trials.param_fix(node, "in", text)
    # tried as well: the layers after this one were not analysed, and may fail on its output
    keep = fix is not None and trials.works(diag, node, {node: {"in": got}}, {}) is not None
    helps, fixes = [], []
    for found in (*_paddings(trials, diag, node), *_input_sizes(trials, diag, node)):
        helps.append(found[0])
        fixes += found[1:]
    if keep:
        helps.append(f"or, if {got} is what you want, write {text}")
        fixes.append(fix)
    return helps, fixes


def dense_message(graph, node) -> str:
    expected = node.attrs["in"]
    src = graph.nodes[node.inputs[0]]
    got = src.shape[-1]
    flat = src.op in ("flatten", "reshape") and len(src.shape) == 1 and src.inputs
    origin = graph.nodes[src.inputs[0]] if flat else src  # where the values of a vector come from
    gives = f"{fmt_shape(origin.shape)} = {got}" if origin is not src else str(got)
    return f"dense {node.name} expects {expected} inputs (in={expected}), but {src.op} {src.name} gives {gives}"


def _input_sizes(trials: Trials, diag, node) -> list[tuple]:
    """Another size of the only input that gives `in=`: the nearest one of those tried."""
    if len(trials.graph.inputs) != 1:
        return []
    (inp,) = trials.graph.inputs
    shape = inp.shape
    if shape is None or len(shape) < 2:
        return []
    c, *spatial = shape
    tries = [tuple(n + delta for n in spatial) for delta in range(-16, 17) if delta and min(spatial) + delta > 0]
    if len(set(spatial)) == 1:
        tries += [(size,) * len(spatial) for size in COMMON_SIZES]
    tries.sort(key=lambda t: sum(abs(a - b) for a, b in zip(t, spatial)))  # the nearest that works is the first
    for candidate in dict.fromkeys(tries):
        if trials.works(diag, node, {}, {inp.name: (c, *candidate)}) is not None:
            expected = node.attrs["in"]
            fix = trials.input_fix(inp, (c, *candidate))
            given = "" if fix else " given by --input or inputs="  # not the spec's: there is nothing to edit
            text = f"with an input of {fmt_shape(candidate)} (not {fmt_shape(spatial)}{given}) it would get {expected}"
            return [(f"{text}: is that the size?", fix)] if fix else [(f"{text}: is that the size?",)]
        if trials.left <= 0:
            break
    return []


def _paddings(trials: Trials, diag, node) -> list[tuple]:
    """Stride-1 convolutions and pools above that shrink the map: `same` padding that gives `in=`."""
    import networkx as nx  # only when a hint is being worked out: ~100 ms that `check` of a good spec saves

    graph = trials.graph
    candidates = []  # read everything first: each trial rewrites the shapes
    for name in nx.ancestors(graph.nx, node.name):
        layer = graph.nodes[name]
        g, pad = layer.geom, layer.attrs.get("pad")
        if "pads" not in g or pad in ("same", None) or layer.shape is None or max(g.get("stride", (1,))) > 1:
            continue
        before = graph.nodes[layer.inputs[0]].shape
        if before is not None and tuple(layer.shape[1:]) != tuple(before[1:]):
            candidates.append((layer, g["pads"], before[1:], layer.shape[1:]))
    found = []
    for layer, old_pads, before, after in candidates:
        new_pads = _same_pads(layer)
        text, value = pad_spelling(new_pads)
        fix = trials.param_fix(layer, "pad", text)
        if fix and trials.works(diag, node, {layer: {"pad": value}}, {}) is not None:
            help_ = (
                f"{layer.op} {layer.name} turns {fmt_shape(before)} into {fmt_shape(after)} "
                f"with pad={fmt_padding(old_pads)}; {text} keeps {fmt_shape(before)} and gives {node.attrs['in']}"
            )
            found.append((help_, fix))
    return sorted(found, key=lambda f: f[0])


def _same_pads(layer) -> tuple:
    """The padding `same` gives a stride-1 window layer: the effective kernel less one, the odd pixel after."""
    g = layer.geom
    totals = [d * (k - 1) for k, d in zip(g["kernel"], g["dilation"])]
    return tuple((t // 2, t - t // 2) for t in totals)
