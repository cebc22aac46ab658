"""Output shape of every node, with errors and warnings at the layer that fails."""

from __future__ import annotations

import functools

from ..diagnostics import Reporter
from ..ops import OPS, ShapeError
from ..ops.base import MAX_SIZE, Layout, Proposal, fmt_shape, prod
from .hints import dense_message, offer_fixes


def node_notes(node) -> list:
    """Where the block that holds a node was called, so an error inside a block names the call."""
    notes = []
    for (block, _instance), call in zip(reversed(node.scope), reversed(node.calls)):
        notes.append((f"in block `{block}`, called here", call))
    return notes


def small(value) -> bool:
    """Whether every whole number in a value (a number, a shape, per-side pairs) is at most 2^62.

    On every layer of every pass, so plain loops and type tests: a generic walk doubled the
    time of the shape pass.
    """
    if type(value) is int:
        return value <= MAX_SIZE
    if isinstance(value, tuple):
        for v in value:
            if type(v) is int:
                if v > MAX_SIZE:
                    return False
            elif isinstance(v, tuple) and not small(v):
                return False
    return True  # a decimal, a word, a flag


@functools.cache
def size_params(op: str) -> tuple[str, ...]:
    """The parameters of a layer type that hold sizes (every one but the decimals: a slope, `eps`)."""
    return tuple(p.name for p in OPS[op].params if p.kind != "float")


def check_sizes(node) -> None:
    """E0306 for a size argument above 2^62 (docs section 12, limits).

    Sizes the layer works out from its arguments and inputs need no check of their own:
    each is part of the output's size (a padding `full` works out, the filters of a
    `dwconv`), which `check_output` bounds, or of the layer's figures, which the cost
    pass bounds.
    """
    attrs = node.attrs
    for param in size_params(node.op):
        value = attrs.get(param)
        if (value <= MAX_SIZE) if type(value) is int else small(value):
            continue
        raise ShapeError(
            f"{node.op} {node.name}: {param} is larger than 2^62",
            ["check the number: no framework can hold a size this large"],
            param=param,
            code="E0306",
        )


def check_output(node, shape) -> None:
    """E0306 for an output of more than 2^62 values; a size that large is not printed (it may not fit a str)."""
    if prod(shape) > MAX_SIZE:
        what = fmt_shape(shape) if max(shape) <= MAX_SIZE else "with a size above 2^62"
        raise ShapeError(
            f"{node.op} {node.name}: the output {what} has more than 2^62 values",
            ["check the sizes: no framework can hold this tensor"],
            code="E0306",
        )


def shape_of(node, ins: list[Layout], warn) -> Layout:
    """A layer's output from its inputs, with its sizes checked (E0306) and the axis of its
    channels: the one rule of the shape pass and of the expander's `in.channels`."""
    op = OPS[node.op]
    check_sizes(node)  # first: then every figure the layer works out is small enough to print
    if not op.reads_ids:
        check_no_ids(node, ins)
    shape = tuple(op.infer(node, ins, warn))
    check_output(node, shape)
    return op.layout(node, ins, shape)


def check_no_ids(node, ins: list[Layout]) -> None:
    """E0307 for token ids read by a layer other than the embeddings: ids are integers that name
    rows of a table, not values to compute with, as torch refuses a LongTensor in nn.Linear."""
    for src, shape in zip(node.inputs, ins):
        if shape.vocab is not None:
            raise ShapeError(
                f"{node.op} {node.name} reads {src} {fmt_shape(shape)}, integer token ids (vocab {shape.vocab}): "
                "only `embedding` and `position_embedding` read token ids",
                ["map the ids to vectors with an `embedding` layer first"],
                code="E0307",
                proposals=[Proposal("embedding", EMBEDDING_WIDTH, str(EMBEDDING_WIDTH), "maps each id to a vector")],
            )


def check_tie(node, target) -> bool:
    """E0308 unless `target`, the layer whose weight `node` is tied to (`tied=`), has a weight to share
    (`Op.tied_shape`) of the shape `node` needs (its `Op.check_tie`); False when `target` has no shape."""
    if target.failed or target.shape is None:
        return False
    have = OPS[target.op].tied_shape(target)
    if have is None:
        raise ShapeError(
            f"{node.op} {node.name} is tied to {target.op} {target.name}, which has no weight to share",
            ["tie it to an `embedding` or a `dense` above it, whose weight it then uses as its own"],
            param="tied",
            code="E0308",
        )
    OPS[node.op].check_tie(node, target, have)
    return True


EMBEDDING_WIDTH = 256  # the width the help offers an embedding for token ids; the spec chooses its own


def infer_shapes(
    graph,
    reporter: Reporter,
    overrides: dict[str, tuple[int, ...]] | None = None,
    hints: bool = True,
    sources: dict[str, str] | None = None,
) -> None:
    """`hints`: work out what would fix a diagnostic (off while trying the fixes themselves);
    `sources`: the `.arch` texts by file, which a fix can edit (none for an imported file)."""
    overrides = overrides or {}
    nodes = graph.nodes
    pending = []  # (diagnostic, node, proposals): fixes to try once every shape is known
    for node in graph:
        node.geom = {}
        node.failed = False
        node.shape = None
        if any(nodes[src].failed for src in node.inputs):
            node.failed = True  # the cause is already reported; stay quiet
            continue
        ins = [nodes[src].shape for src in node.inputs]

        def warn(message, help=(), proposals=(), node=node, code="W0301"):
            diag = reporter.warn(code, message, node.span, help, node_notes(node))
            if proposals and hints:
                pending.append((diag, node, proposals))

        try:
            if node.op == "input" and node.name in overrides:
                node.attrs = {**node.attrs, "shape": overrides[node.name]}
            shape = shape_of(node, ins, warn)
            if node.attrs.get("tied") and not check_tie(node, nodes[node.attrs["tied"]]):
                node.failed = True  # the layer it is tied to failed, and says why
                continue
        except ShapeError as err:
            span = node.arg_spans.get(err.param, node.span) if err.param else node.span
            message = err.message
            if err.code == "E0218":
                message, span = dense_message(graph, node), node.arg_spans.get("in", node.span)
            diag = reporter.error(err.code, message, span, err.help, node_notes(node))
            if (err.code == "E0218" or err.proposals) and hints:
                pending.append((diag, node, err.proposals))
            node.failed = True
            continue
        node.shape = shape
        if node.activation is not None:  # a `-> name` applies to this output (softmax: its channel axis)
            act, attrs = node.activation
            node.activation = (act, OPS[act].bind(attrs, shape))
    if pending:
        offer_fixes(graph, reporter, pending, overrides, infer_shapes, sources or {})
