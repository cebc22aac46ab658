"""ONNX models (`.onnx`) as archc syntax trees.

An `.onnx` file is a binary protobuf, so no diagnostic can point into it
directly. The importer renders the model as text, one line per node in
`onnx.printer`'s syntax (`[name] outputs = Op <attributes> (inputs)`), after
a line for the model and one per graph input, and ends with one per graph
output; that text is the source every diagnostic points into. So
`model.onnx:12:1` names the 12th line of `archc import`'s rendering, and the
excerpt under it shows the node's name, operator, attributes and tensors:
the node is found by what the excerpt says, whatever tool shows the file.

Tensor shapes come from onnx's own shape inference, run on the model with
every input sized (a symbolic batch as 1; another symbolic dimension from
`--input`, else E0404). Each node maps onto archc's layers with its exact
semantics (docs/importers.md lists them); shape arithmetic on constants
(Shape, Gather, Concat, ... feeding a Reshape) is folded; initialisers,
Constant and ConstantOfShape outputs are parameters, whose values archc
reads only where a layer's settings are given as a tensor (a Reshape's
shape, Clip's bounds). An operator, or a use of one, that archc cannot
represent is an error at the node naming it: archc never guesses.
"""

from __future__ import annotations

import math
import re
from collections import Counter
from dataclasses import dataclass
from pathlib import PurePath

import numpy as np

from ..diagnostics import ArchError, Diagnostic, Span
from ..ops.base import PadPair
from .common import BROKEN, Flat, Imported, comment, network_name, sanitize
from .onnx_attention import broadcast_constants, find_attention, find_sdpa
from .onnx_recurrent import Recurrent

MAX_BYTES = 2**31 - 1  # protobuf's limit on a message; larger models keep their weights in external data
SMALL = 4096  # the most values archc reads of a constant (a shape, a bound); weights are never read
MOVES = ("Expand", "Identity", "Cast")  # what leaves a weight's values as they are, or repeats them
OPSET = 13  # the first opset whose Softmax, Split, Squeeze and Unsqueeze take their present form

# ONNX activation -> archc activation (a `->` on the layer it follows, else a layer of its own)
ACTIVATIONS = {"Relu": "relu", "Tanh": "tanh", "HardSwish": "hardswish", "Mish": "mish"}
# shape arithmetic archc folds when every input is a constant
FOLDED = {
    "Shape", "Gather", "Unsqueeze", "Squeeze", "Concat", "Cast", "Slice", "Identity", "Add", "Sub", "Mul",
    "Div", "Reshape", "Constant", "ConstantOfShape", "Range", "Equal", "Where", "ReduceProd", "Floor", "Sqrt",
    "Transpose", "Expand", "Mod",
}  # fmt: skip
UNREPRESENTABLE = {
    "PRelu": "a parametric ReLU (archc has no learned activation)",
    "Selu": "archc has no SELU",
    "Softplus": "archc has no softplus",
    "Softsign": "archc has no softsign",
    "LogSoftmax": "archc has no log-softmax",
    "DepthToSpace": "archc has no depth-to-space layer",
    "If": "archc reads no control flow",
    "Loop": "archc reads no control flow",
}


class _NodeError(Exception):
    """A node archc cannot import; its diagnostic is already recorded."""


@dataclass
class _Line:
    """Where a node (or an input or output) is in the rendered text."""

    line: int
    text: str


def render(model) -> tuple[str, dict]:
    """The model as text (the source of its diagnostics) and each item's line: ("node", i), ("input", name),
    ("output", name), ("model", None)."""
    import onnx.printer

    graph = model.graph
    lines: list[str] = []
    where: dict = {}

    def add(key, text: str) -> None:
        lines.append(comment(" ".join(text.split())))  # one line, even for a node holding a subgraph
        where[key] = _Line(len(lines), lines[-1])

    opsets = ", ".join(f"{o.domain or 'ai.onnx'} {o.version}" for o in model.opset_import)
    producer = f"{model.producer_name} {model.producer_version}".strip()
    add(("model", None), f"# ONNX model `{graph.name}`: ir_version {model.ir_version}, opset {opsets}, "
        f"producer {producer or '?'}")  # fmt: skip
    weights = {t.name for t in graph.initializer}
    for value in graph.input:
        if value.name not in weights:
            add(("input", value.name), f"input {_quote(value.name)}: {_type(value.type)}")
    for i, node in enumerate(graph.node):
        try:
            text = onnx.printer.to_text(node)
        except Exception:  # a node the printer cannot print is shown by its parts
            text = f"[{node.name}] {', '.join(node.output)} = {node.op_type} ({', '.join(node.input)})"
        add(("node", i), text)
    for value in graph.output:
        add(("output", value.name), f"output {_quote(value.name)}: {_type(value.type)}")
    return "\n".join(lines) + "\n", where


def _quote(name: str) -> str:
    return name if re.fullmatch(r"[A-Za-z_][A-Za-z0-9_.]*", name) else f'"{name}"'


def _type(tp) -> str:
    import onnx

    if not tp.HasField("tensor_type"):
        return "?"
    types = onnx.TensorProto.DataType
    kind = types.Name(tp.tensor_type.elem_type).lower() if tp.tensor_type.elem_type in types.values() else "?"
    if not tp.tensor_type.HasField("shape"):
        return f"{kind}[?]"
    return f"{kind}[{','.join(_dim(d) for d in tp.tensor_type.shape.dim)}]"


def _dim(d) -> str:
    return str(d.dim_value) if d.HasField("dim_value") else (d.dim_param or "?")


def _dims(tp) -> list | None:
    """A value's dimensions: ints, names of symbolic ones, None for an unknown one; None for no shape."""
    if not tp.HasField("tensor_type") or not tp.tensor_type.HasField("shape"):
        return None
    return [d.dim_value if d.HasField("dim_value") else (d.dim_param or None) for d in tp.tensor_type.shape.dim]


# -- reading the file ------------------------------------------------------------------------------------


def parse(data: bytes, file: str):
    """The ModelProto in `data`; ArchError E0401 (with the file's name, no excerpt) when it is none."""
    import onnx
    from google.protobuf.message import DecodeError

    def refuse(why: str):
        help = ["archc reads ONNX models as `torch.onnx.export` and `onnx.save` write them"]
        raise ArchError([Diagnostic("error", "E0401", f"cannot read `{file}` as an ONNX model: {why}", None, help)])

    if isinstance(data, str):
        refuse("an ONNX model is a binary file; `archc.load` reads it from its path")
    try:
        model = onnx.load_model_from_string(data)
    except (DecodeError, ValueError, RuntimeError) as err:
        refuse(f"the protobuf does not parse ({str(err) or type(err).__name__}); the file is truncated or not ONNX")
    if not model.HasField("graph") or not model.graph.node or model.ir_version <= 0:
        refuse("it holds no graph with nodes")
    if not all(isinstance(name, str) for name in _names(model.graph)):  # protobuf keeps bad UTF-8 as bytes
        refuse("a name in it is not UTF-8 text; the file is damaged")
    return model


def _names(graph):
    """Every name and operator the importer reads or shows."""
    for value in (*graph.input, *graph.output, *graph.initializer, *graph.value_info):
        yield value.name
    for value in (*graph.input, *graph.output):
        yield from (d.dim_param for d in value.type.tensor_type.shape.dim)
    for node in graph.node:
        yield from (node.name, node.op_type, node.domain, *node.input, *node.output)
        yield from (attr.name for attr in node.attribute)


def import_onnx(data: bytes, file: str, inputs: dict) -> Imported:
    """The `.onnx` model in `data` as a flat archc network; raises ArchError with every problem found."""
    return read_onnx(data, file, inputs)[0]


def read_onnx(data: bytes, file: str, inputs: dict) -> tuple[Imported, dict[str, str]]:
    """The imported network and, for every ONNX tensor an archc layer holds, that layer's name."""
    model = parse(data, file)
    importer = _Importer(model, file, inputs)
    return importer.run(), importer.acts


# -- the importer -------------------------------------------------------------------------------------------


class _Importer:
    def __init__(self, model, file: str, inputs: dict):
        self.model, self.file, self.overrides = model, file, inputs
        self.graph = model.graph
        self.text, self.where = render(model)
        self.flat = Flat(file)
        # an exporter's scoped names (`/layer4/layer4.1/...`) are worth keeping: a repeat would hide layer4_1
        # behind a count; names without a scope (`n12`, `Conv_3`) say nothing a repeat hides
        self.named = [_Named(_module_path(node), node.op_type) for node in model.graph.node]
        self.flat.repeats = not any("/" in node.name for node in self.named)
        self.base = str(PurePath(file).parent)
        self.opset = next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), 1)
        self.init = {t.name: t for t in self.graph.initializer}
        self.acts: dict[str, str] = {}  # ONNX tensor -> the archc statement holding it
        self.static: dict[str, tuple] = {}  # ONNX tensor -> its shape, for constants and weights
        self.values: dict[str, np.ndarray] = {}  # constants whose values are known (small ones)
        self.shapes: dict[str, tuple] = {}  # ONNX tensor -> its inferred shape, batch first
        self.consumers: dict[str, list[int]] = {}
        self.batch: int | None = None
        self.scope: dict[str, str] = {}  # archc statement -> its module (the ONNX name's first scope)
        self.skip: set[int] = set()  # nodes a statement of another holds: a dense's bias Add, silu's Mul, ...
        self.leaves = _leaves(self.named)
        self.sequences = _sequences(self.named)
        self.constants = set(self.init)  # tensors computed from weights and constants alone
        for node in self.graph.node:
            if all(n in self.constants for n in node.input if n):
                self.constants.update(node.output)
        for i, node in enumerate(self.graph.node):
            for name in node.input:
                self.consumers.setdefault(name, []).append(i)
        for name in (o.name for o in self.graph.output):
            self.consumers.setdefault(name, []).append(-1)
        self.recurrent = Recurrent(self)  # LSTM, GRU, embeddings, and the views of their tensors
        self.producer = {out: i for i, node in enumerate(self.graph.node) for out in node.output if out}
        self.origin: dict[str, str] = {}  # a weight broadcast (Where(c, t, t)) -> the weight t
        self.holders: dict[str, str] = {}  # an embedding's table -> its statement, which a dense may tie to
        self.checked: dict[tuple, tuple | None] = {}  # an attention region's form -> what running it found

    # -- locations ----------------------------------------------------------------------------------

    def span(self, key, attr: str | None = None) -> Span:
        line = self.where.get(key) or self.where[("model", None)]
        col, end = 1, len(line.text) + 1
        if attr is not None and (match := re.search(rf"\b{re.escape(attr)}: ", line.text)):
            col, end = match.start() + 1, match.start() + len(attr) + 1
        return Span(self.file, line.line, col, line.line, max(end, col + 1))

    def fail_node(self, i: int, code: str, message: str, help=(), attr: str | None = None) -> _NodeError:
        node = self.graph.node[i]
        label = f"node `{node.name}` ({node.op_type})" if node.name else f"the {node.op_type} node"
        self.flat.error(code, f"{label}: {message}", self.span(("node", i), attr), help)
        return _NodeError()

    # -- the run ---------------------------------------------------------------------------------------

    def run(self) -> Imported:
        self.read_weights()
        self.read_inputs()
        if self.flat.has_errors:
            self.flat.fail(self.text)
        self.infer()
        skip, tokens = broadcast_constants(self)
        self.skip |= skip
        for name, source in tokens.items():
            self.constants.add(name)
            self.static[name] = self.shapes[name]
            self.origin[name] = source
        self.skip |= self.recurrent.fixed_ids()
        self.attention = {match.last: match for match in find_attention(self)}
        taken = {k for match in self.attention.values() for k in match.nodes}
        self.sdpa = {match.last: match for match in find_sdpa(self, taken)}
        for match in (*self.attention.values(), *self.sdpa.values()):
            self.skip.update(match.nodes - {match.last})
        for i, node in enumerate(self.graph.node):
            try:
                self.node(i, node)
            except _NodeError:
                for name in node.output:
                    self.acts[name] = BROKEN
        self.outputs()
        if self.flat.has_errors:
            self.flat.fail(self.text)
        self.flat.modules = self.modules()
        self.flat.header.append(self.text.split("\n", 1)[0].lstrip("# "))
        imported = self.flat.result(network_name(PurePath(self.file).stem), self.span(("model", None)))
        imported.batch = self.batch if self.batch and self.batch > 1 else None
        imported.source = self.text
        return imported

    def read_weights(self) -> None:
        for name, tensor in self.init.items():
            self.static[name] = tuple(tensor.dims)

    def read_inputs(self) -> None:
        """One `input` statement per graph input; the first dimension is the batch."""
        for value in self.graph.input:
            if value.name in self.init:
                continue
            span = self.span(("input", value.name))
            dims = _dims(value.type)
            if dims is None or len(dims) < 2:
                self.flat.error(
                    "E0404",
                    f"input `{value.name}` has no shape of a batch and at least one more dimension",
                    span,
                    ["archc reads inputs batch first: N x C, N x C x H x W, ..."],
                )
                continue
            form, steps_first = self.recurrent.input_form(value, dims)
            if steps_first:  # read steps first by recurrent layers: the batch is the second dimension
                dims = [dims[1], dims[0], *dims[2:]]
            shape = dims[1:]
            if value.name in self.overrides:
                shape = list(self.overrides[value.name])
            unknown = [str(d) for d in shape if not isinstance(d, int) or d < 1]
            if unknown:
                example = "x".join(str(d) if isinstance(d, int) and d > 0 else "64" for d in shape)
                self.flat.error(
                    "E0404",
                    f"input `{value.name}` has the symbolic size {', '.join(unknown)}: archc needs a number",
                    span,
                    [f"give the input's size per sample: --input {value.name}={example} (inputs= in archc.load)"],
                )
                continue
            batch = dims[0] if isinstance(dims[0], int) and dims[0] > 0 else None
            if batch is not None:
                self.batch = batch if self.batch is None else self.batch
            self.shapes[value.name] = (self.batch or 1, *shape)
            if steps_first:  # the steps first in the file, as inference must see them
                self.shapes[value.name] = (shape[0], self.batch or 1, *shape[1:])
            args = [(None, tuple(shape), span)] + [(k, v, span) for k, v in form]
            name = self.flat.add("input", self.flat.unique(value.name), [], args, span)
            self.recurrent.declared(value.name, name, form, steps_first)

    def infer(self) -> None:
        """Every tensor's shape by onnx's shape inference, on a copy with the inputs sized as archc sizes them.

        A Reshape whose shape is computed from the sizes of a tensor (TorchScript's `Shape`, `Gather`, `Div`,
        `Cast` ...) stops the inference where onnx cannot follow that arithmetic: archc computes what it can
        of it from the shapes known so far, puts the results in as constants, and infers again, until
        nothing more is known."""
        import onnx
        from onnx import shape_inference

        model = _without_weights(onnx, self.model)
        for value in model.graph.input:
            if value.name in self.shapes:
                shape = value.type.tensor_type.shape
                del shape.dim[:]
                for d in self.shapes[value.name]:
                    shape.dim.add().dim_value = d
        known = self.small_constants()
        while True:
            try:
                inferred = shape_inference.infer_shapes(model, check_type=False, strict_mode=False, data_prop=True)
            except Exception:  # a model inference rejects: the nodes report what they lack
                return
            for value in (*inferred.graph.value_info, *inferred.graph.output):
                dims = _dims(value.type)
                if dims is not None and all(isinstance(d, int) for d in dims):
                    self.shapes.setdefault(value.name, tuple(dims))
            new = self.sizes(known)
            if not new:
                return
            self.as_constants(model, new)

    def small_constants(self) -> dict[str, np.ndarray]:
        """The values of the small initialisers and Constant nodes: what size arithmetic reads (a tensor
        that does not decode is left out: the node reading it says so)."""
        from onnx import numpy_helper

        tensors = list(self.init.items())
        for node in self.graph.node:
            attrs = node.attribute
            if node.op_type == "Constant" and len(attrs) == 1 and attrs[0].name == "value" and node.output:
                tensors.append((node.output[0], attrs[0].t))
        values = {}
        for name, tensor in tensors:
            if math.prod(tensor.dims) <= SMALL and tensor.data_location != tensor.EXTERNAL:
                try:
                    values[name] = numpy_helper.to_array(tensor)
                except Exception:  # a damaged tensor
                    continue
        return values

    def sizes(self, known: dict) -> dict[str, np.ndarray]:
        """The size arithmetic computable now that is not yet `known`: Shape of a tensor whose shape is
        known, and the shape operations on such values and small constants."""
        new: dict[str, np.ndarray] = {}
        for node in self.graph.node:
            if not node.output or node.output[0] in known or node.op_type not in FOLDED or len(node.output) != 1:
                continue
            a = _Attrs(node)
            try:
                if node.op_type == "Shape":
                    if node.input[0] not in self.shapes:
                        continue
                    value = np.array(self.shapes[node.input[0]], np.int64)[slice(a.int("start", 0), a.int("end", 64))]
                elif node.op_type == "Constant" or not node.input:
                    continue
                else:
                    xs = [known.get(n) if n else None for n in node.input]
                    if any(x is None and n for x, n in zip(xs, node.input)):
                        continue
                    value = _evaluate(node.op_type, xs, a, self.opset)
            except Exception:  # arithmetic archc cannot do: the node says so when it is read
                continue
            value = np.asarray(value)
            if value.size <= SMALL and value.dtype.kind in "biuf":
                known[node.output[0]] = new[node.output[0]] = value
        return new

    def as_constants(self, model, values: dict) -> None:
        """`values` as initialisers of `model`, in place of the nodes that computed them."""
        from onnx import numpy_helper

        kept = [node for node in model.graph.node if not (node.output and node.output[0] in values)]
        del model.graph.node[:]
        model.graph.node.extend(kept)
        for name, value in values.items():
            model.graph.initializer.append(numpy_helper.from_array(value, name))

    def outputs(self) -> None:
        names = [self.acts.get(o.name) or self.recurrent.held(o.name) for o in self.graph.output]
        if any(n is BROKEN for n in names):
            return
        missing = [o.name for o, n in zip(self.graph.output, names) if n is None]
        if missing:
            what = self.recurrent.why(missing[0]) or "a constant, not computed from an input"
            self.flat.error(
                "E0405",
                f"output `{missing[0]}` is {what}: archc has no layer that holds it",
                self.span(("output", missing[0])),
            )
            return
        if len(names) > 1 or (self.flat.stmts and names != [self.flat.stmts[-1].name]):
            self.flat.outputs = names
            self.flat.output_span = self.span(("output", self.graph.output[0].name))

    def modules(self) -> list[tuple[str, list[str]]]:
        """Runs of statements from one ONNX scope (`/layer1/layer1.0/...`): candidate blocks."""
        runs: list[tuple[str, list[str]]] = []
        for stmt in self.flat.stmts:
            scope = self.scope.get(stmt.name)
            if scope and runs and runs[-1][0] == scope:
                runs[-1][1].append(stmt.name)
            else:
                runs.append((scope, [stmt.name]))
        return [(sanitize(s), names) for s, names in runs if s and len(names) > 1]

    # -- tensors -----------------------------------------------------------------------------------------

    def value(self, i: int, name: str, what: str) -> np.ndarray:
        """The values of constant `name` (a node's setting given as a tensor)."""
        if name in self.values:
            return self.values[name]
        if name in self.init and math.prod(self.static[name]) <= SMALL:
            from onnx import numpy_helper

            try:
                self.values[name] = numpy_helper.to_array(self.init[name], self.base)
            except Exception as err:  # external data missing, a tensor that does not decode
                raise self.fail_node(i, "E0401", f"cannot read the tensor `{name}`: {err}") from None
            return self.values[name]
        raise self.fail_node(
            i, "E0405", f"its {what} `{name}` is computed at run time: archc needs it as a constant", []
        )

    def whole(self, i: int, name: str, what: str) -> list[int]:
        """A constant that lists whole numbers (a shape, pads, starts): one dimension of integers."""
        value = self.value(i, name, what)
        if value.ndim != 1 or value.dtype.kind not in "iu":
            raise self.fail_node(i, "E0403", f"its {what} `{name}` must be a list of whole numbers")
        return [int(v) for v in value]

    def number(self, i: int, name: str, what: str) -> float:
        """A constant that is one number (a bound, a fill value)."""
        value = self.value(i, name, what)
        if value.size != 1 or value.dtype.kind not in "iuf" or not math.isfinite(float(value.reshape(-1)[0])):
            raise self.fail_node(i, "E0403", f"its {what} `{name}` must be one finite number")
        return float(value.reshape(-1)[0])

    def shape(self, i: int, name: str) -> tuple:
        shape = self.shapes.get(name)
        if shape is None:
            if name in self.static:
                return self.static[name]
            raise self.fail_node(
                i, "E0404", f"the shape of `{name}` is not static: onnx's shape inference cannot tell it"
            )
        return shape

    def act(self, i: int, name: str) -> str:
        """The archc statement holding tensor `name`, which must be computed from an input."""
        if name in self.acts:
            if self.acts[name] is BROKEN:
                raise _NodeError()
            return self.acts[name]
        what = self.recurrent.why(name) or "a constant, not computed from an input"
        raise self.fail_node(i, "E0405", f"its input `{name}` is {what}: archc has no layer that holds it")

    def is_act(self, name: str) -> bool:
        return name in self.acts

    # -- nodes -------------------------------------------------------------------------------------------

    def node(self, i: int, node) -> None:
        if i in self.skip:  # held by a statement of another node: a dense's bias Add, silu's Mul, GELU's Erf
            return
        if any(name in self.acts and self.acts[name] is BROKEN for name in node.input):
            raise _NodeError()  # what it reads has its error already: a constant broken is no layer's input
        if i in self.attention:
            self.multi_head_attention(i, node, self.attention[i])
            return
        if i in self.sdpa:
            self.scaled_dot_product(i, node, self.sdpa[i])
            return
        if node.domain not in ("", "ai.onnx"):
            raise self.fail_node(
                i, "E0402", f"the operator {node.domain}.{node.op_type} is not ONNX's own: archc does not read it"
            )
        self.arity(i, node)
        if self.recurrent.takes(i, node, _Attrs(node)):
            return
        inputs = [n for n in node.input if n]
        if all(not self.is_act(n) for n in inputs) and node.op_type in FOLDED:
            self.fold(i, node)
            return
        if node.op_type in ACTIVATIONS:
            self.activation(i, node, ACTIVATIONS[node.op_type], [])
            return
        if node.op_type == "Div" and (chain := self.erf_gelu(i, node)):
            self.skip.update(chain[1:])
            self.activation(i, node, "gelu", [], sorted([i, chain[3]]), self.graph.node[chain[-1]].output[0])
            return
        handler = getattr(self, "op_" + node.op_type, None)
        if handler is None:
            why = UNREPRESENTABLE.get(node.op_type, "archc has no layer that computes it")
            raise self.fail_node(
                i, "E0402", f"the operator {node.op_type} is not supported: {why}", ["docs/importers.md lists them"]
            )
        handler(i, node, _Attrs(node))

    def multi_head_attention(self, i: int, node, match) -> None:
        """The nodes from match.xs to match.y, which compute nn.MultiheadAttention (onnx_attention.py), as one
        `attention` (on (query, memory) for cross-attention), named by the scope they share
        (`encoder_layer_0_self_attention`)."""
        xs = [self.act(i, x) for x in match.xs]
        if len(set(match.bias)) > 1:
            self.restore_bias(i, match)
        args = [(None, match.heads)] + [("causal", True)] * match.causal + [("bias", False)] * (not any(match.bias))
        kept = _scope(_Named(f"{match.name}/Attention", "Attention"))[0] if match.name else []
        self.emit(i, node, "attention", xs, args, list(node.output).index(match.y), "_".join(kept) or "attention")

    def restore_bias(self, i: int, match) -> None:
        """One projection with a bias and the other without: torch's default exporter leaves out a bias
        that is all zeros (torchvision starts the out-projection's so), and archc's attention has both or
        neither. A bias of zeros adds nothing, so the attention with both computes what the file computes;
        a warning (W0402) says which bias is restored and what it counts."""
        width = self.shapes[match.y][-1]
        which, count = ("out", width) if match.bias[0] else ("in", 3 * width)
        self.flat.warn(
            "W0402",
            f"multi-head attention whose {which}-projection has no bias and the other one has: archc's attention "
            f"has both or neither, so it reads the {which}-projection's bias as {count} zeros (which change no "
            f"output) and counts them",
            self.span(("node", i)),
            [
                "torch.onnx.export leaves out a bias that is all zeros (a model not trained yet); "
                "export with `optimize=False` to keep every bias"
            ],
        )

    def scaled_dot_product(self, i: int, node, match) -> None:
        """The nodes from q, k and v to match.y, which compute F.scaled_dot_product_attention
        (onnx_attention.py), as one `sdpa` on the statements holding them."""
        xs = [self.act(i, x) for x in match.xs]
        args = [(None, match.heads)] + [("causal", True)] * match.causal
        kept = _scope(_Named(f"{match.name}/Sdpa", "Sdpa"))[0] if match.name else []
        self.emit(i, node, "sdpa", xs, args, list(node.output).index(match.y), "_".join(kept) or "sdpa")

    def arity(self, i: int, node) -> None:
        """The node's inputs and outputs, counted against the operator's ONNX schema (E0403)."""
        from onnx import defs

        try:
            schema = defs.get_schema(node.op_type, self.opset, "")
        except defs.SchemaError:
            return  # an operator ONNX does not define: E0402 names it
        count = len(node.input)
        single = defs.OpSchema.FormalParameterOption.Single
        missing = [f.name for f, name in zip(schema.inputs, node.input) if f.option == single and not name]
        if not schema.min_input <= count <= schema.max_input or missing or len(node.output) < schema.min_output:
            most = "any number of" if schema.max_input > 2**20 else f"at most {schema.max_input}"
            raise self.fail_node(
                i,
                "E0403",
                f"it has {count} inputs and {len(node.output)} outputs: {node.op_type} takes at least "
                f"{schema.min_input} and {most} inputs"
                + (f", and needs its input {missing[0]}" if missing else "")
                + f", and gives at least {schema.min_output} outputs",
            )

    def emit(self, i: int, node, op: str, inputs: list[str], args: list, out: int = 0, name: str | None = None):
        """Add `op` for node i; its output `out` is held by the new statement."""
        span = self.span(("node", i))
        wanted, scope = _name(self.named[i], self.leaves, self.sequences)
        wanted = wanted if name is None else name
        last = self.flat.stmts[-1].name if self.flat.stmts else None
        # a batch norm of the layer just before joins its unit, as Darknet's conv + bn: one block `conv_bn`
        unit = not (op == "bn" and inputs == [last] and self.flat.op_of(last) in ("conv", "deconv", "dense"))
        args = [(k, v, span) for k, v in args]
        stmt = self.flat.add(op, self.flat.unique(wanted), inputs, args, span, unit=unit)
        self.acts[node.output[out]] = stmt
        if scope:
            self.scope[stmt] = scope
        return stmt

    def alias(self, node, source: str) -> None:
        """The node's output is its input: no layer (Identity, Dropout at inference)."""
        self.acts[node.output[0]] = self.acts[source]

    def activation(self, i: int, node, op: str, values: list, readers: list[int] | None = None, out=None) -> None:
        """An activation: a `->` on the statement it follows when that statement's output goes nowhere else
        (`readers`: the nodes that read it, the activation's own ones); its output is tensor `out`."""
        source = node.input[0]
        stmt = self.act(i, source)
        out = out or node.output[0]
        if (
            self.consumers.get(source) == (readers or [i])
            and stmt in self.flat.position
            and self.flat.op_of(stmt) != "input"
            and self.flat.activation_of(stmt) is None
            and self.flat.stmts[-1].name == stmt
        ):
            self.flat.set_activation(stmt, (op, values, self.span(("node", i))))
            self.acts[out] = stmt
            return
        self.acts[out] = self.emit(i, node, op, [stmt], [(None, v) for v in values])

    def weight(self, i: int, name: str, rank: int | None = None) -> tuple:
        if name not in self.static:
            raise self.fail_node(
                i, "E0405", f"its weight `{name}` is computed at run time: archc's layers hold their weights"
            )
        shape = self.static[name]
        if rank is not None and len(shape) != rank:
            raise self.fail_node(i, "E0403", f"its weight `{name}` has shape {list(shape)}, not {rank} dimensions")
        return shape

    def positive(self, i: int, a, name: str, values: list) -> list:
        """A size, stride or count given as an attribute: at least 1 each (E0403 at the attribute)."""
        if not values or any(v < 1 for v in values):
            raise self.fail_node(i, "E0403", f"{name} must be whole numbers of at least 1, not {values}", [], name)
        return values

    def need(self, i: int, shape: tuple, wanted: tuple, what: str) -> None:
        if tuple(shape) != tuple(wanted):
            raise self.fail_node(i, "E0403", f"its {what} has shape {list(shape)}, but the layer needs {list(wanted)}")

    def spatial(self, i: int, node, rank: int) -> int:
        if rank < 3:
            raise self.fail_node(i, "E0405", f"its input has {rank} dimensions: archc's layer needs N x C x spatial")
        return rank - 2

    # convolutions -------------------------------------------------------------------------------------

    def windowed(self, i, node, a):
        """What Conv and ConvTranspose read alike: (input, its shape, weight shape, group, kernel)."""
        x = self.act(i, node.input[0])
        shape = self.shape(i, node.input[0])
        nd = self.spatial(i, node, len(shape))
        w = self.weight(i, node.input[1], nd + 2)
        group = self.positive(i, a, "group", [a.int("group", 1)])[0]
        kernel = tuple(self.positive(i, a, "kernel_shape", a.ints("kernel_shape", w[2:])))
        return x, shape, w, group, kernel

    def op_Conv(self, i, node, a):  # noqa: N802 - named as ONNX names the operator
        x, shape, w, group, kernel = self.windowed(i, node, a)
        self.need(i, w, (w[0], shape[1] // group, *kernel), "weight")
        if shape[1] % group:
            why = f"group={group} does not divide the {shape[1]} input channels"
            raise self.fail_node(i, "E0403", why, [], "group")
        bias = len(node.input) > 2 and bool(node.input[2])
        if bias:
            self.need(i, self.weight(i, node.input[2]), (w[0],), "bias")
        args = [(None, w[0]), (None, kernel)]
        args += self.window(i, a, shape[2:], kernel, pool=False)
        if group > 1:
            args.append(("groups", group))
        if not bias:
            args.append(("bias", False))
        self.emit(i, node, "conv", [x], args)

    def window(self, i, a, size: tuple, kernel: tuple, pool: bool) -> list:
        """stride, pad and dilation of a Conv or pool, as archc writes them; auto_pad as ONNX defines it."""
        nd = len(kernel)
        strides = tuple(self.positive(i, a, "strides", a.ints("strides", [1] * nd)))
        dilations = tuple(self.positive(i, a, "dilations", a.ints("dilations", [1] * nd)))
        pads = a.ints("pads", [0] * 2 * nd)
        if len(strides) != nd or len(dilations) != nd or len(pads) != 2 * nd:
            raise self.fail_node(i, "E0403", f"strides, dilations and pads must give {nd} spatial dimensions")
        auto = a.str("auto_pad", "NOTSET")
        args: list = []
        if any(s != 1 for s in strides) or (pool and strides != kernel):
            args.append(("stride", strides[0] if len(set(strides)) == 1 else strides))
        if auto in ("SAME_UPPER", "SAME_LOWER"):
            pads = []
            for n, k, s, d in zip(size, kernel, strides, dilations):
                total = max((math.ceil(n / s) - 1) * s + d * (k - 1) + 1 - n, 0)
                small = total // 2
                pads.append((small, total - small) if auto == "SAME_UPPER" else (total - small, small))
            pads = [p[0] for p in pads] + [p[1] for p in pads]
        elif auto == "VALID":
            pads = [0] * 2 * nd
        elif auto != "NOTSET":
            raise self.fail_node(i, "E0403", f"auto_pad={auto} is none of NOTSET, SAME_UPPER, SAME_LOWER, VALID")
        if any(p < 0 for p in pads):
            raise self.fail_node(i, "E0405", "negative pads (a crop) are not supported", [], "pads")
        pairs = [PadPair((pads[k], pads[k + nd])) for k in range(nd)]
        if any(p != (0, 0) for p in pairs):
            if all(p[0] == p[1] for p in pairs):
                sides = tuple(p[0] for p in pairs)
                args.append(("pad", sides[0] if len(set(sides)) == 1 else sides))
            else:
                args.append(("pad", pairs[0] if nd == 1 else tuple(pairs)))
        if any(d != 1 for d in dilations):
            args.append(("dilation", dilations[0] if len(set(dilations)) == 1 else dilations))
        return args

    def op_ConvTranspose(self, i, node, a):  # noqa: N802 - named as ONNX names the operator
        x, shape, w, group, kernel = self.windowed(i, node, a)
        self.need(i, w, (shape[1], w[1], *kernel), "weight")
        filters = w[1] * group
        if a.str("auto_pad", "NOTSET") not in ("NOTSET", "VALID") or a.has("output_shape"):
            raise self.fail_node(
                i, "E0405", "auto_pad and output_shape are not supported: give pads and output_padding"
            )
        bias = len(node.input) > 2 and bool(node.input[2])
        if bias:
            self.need(i, self.weight(i, node.input[2]), (filters,), "bias")
        args = [(None, filters), (None, kernel)]
        args += self.window(i, a, shape[2:], kernel, pool=False)
        outpad = tuple(a.ints("output_padding", [0] * len(kernel)))
        if any(outpad):
            args.append(("outpad", outpad[0] if len(set(outpad)) == 1 else outpad))
        if group > 1:
            args.append(("groups", group))
        if not bias:
            args.append(("bias", False))
        self.emit(i, node, "deconv", [x], args)

    # dense ------------------------------------------------------------------------------------------

    def op_Gemm(self, i, node, a):  # noqa: N802 - named as ONNX names the operator
        x = self.act(i, node.input[0])
        shape = self.shape(i, node.input[0])
        if a.int("transA", 0):
            raise self.fail_node(i, "E0405", "transA=1 transposes the batch: archc's dense reads N x K", [], "transA")
        w = self.weight(i, node.input[1], 2)
        units, k = (w[0], w[1]) if a.int("transB", 0) else (w[1], w[0])
        self.need(i, shape, (shape[0], k), "input")
        bias = len(node.input) > 2 and bool(node.input[2])
        if bias:
            c = self.weight(i, node.input[2])
            if tuple(c) not in ((units,), (1, units)):
                raise self.fail_node(
                    i, "E0405", f"its C has shape {list(c)}: archc's dense has a bias of {units} values", []
                )
        alpha, beta = a.float("alpha", 1.0), a.float("beta", 1.0)
        if alpha != 1 or (bias and beta != 1):  # the same layer with scaled weights: the same figures
            self.flat.note(
                f"{node.name or 'Gemm'}: alpha={alpha:g}, beta={beta:g}: its weights times alpha, bias times beta"
            )
        args = [(None, units)] + ([] if bias else [("bias", False)]) + self.tie(node.input[1], a.int("transB", 0))
        self.emit(i, node, "dense", [x], args)

    def op_MatMul(self, i, node, a):  # noqa: N802 - named as ONNX names the operator
        """x @ W on the last axis: a dense, with the bias of an Add that only adds one."""
        x = self.act(i, node.input[0])
        shape = self.shape(i, node.input[0])
        if len(shape) < 2 or node.input[1] in self.acts:
            raise self.fail_node(i, "E0405", "a product of two computed tensors: archc's dense holds its weight")
        w = self.weight(i, node.input[1], 2)
        self.need(i, w, (shape[-1], w[1]), "weight")
        bias = self.bias_add(node.output[0], w[1])
        args = [(None, w[1])] + ([] if bias is not None else [("bias", False)]) + self.tie(node.input[1])
        stmt = self.emit(i, node, "dense", [x], args)
        if bias is not None:
            self.acts[self.graph.node[bias].output[0]] = stmt
            self.skip.add(bias)

    def tie(self, weight: str, transposed: bool = False) -> list:
        """`tied=` an embedding whose table is this MatMul's weight transposed (GPT-2's head, as archc's
        ONNX out and torch's exporters write a tied weight: one initialiser, read twice), or the table
        itself when the node transposes it (`transposed`: a Gemm's transB=1, as torch's default exporter
        writes a tied nn.Linear of a 2-D input), so that it counts once; [] for a weight of its own."""
        if transposed:
            holder = self.holders.get(weight)
            return [] if holder is None else [("tied", holder)]
        k = self.producer.get(weight)
        if k is None or self.graph.node[k].op_type != "Transpose":
            return []
        node = self.graph.node[k]
        holder = self.holders.get(node.input[0])
        if holder is None or _Attrs(node).ints("perm", [1, 0]) != [1, 0]:
            return []
        return [("tied", holder)]

    def bias_add(self, tensor: str, units: int) -> int | None:
        """The Add node that adds a weight of `units` values (or 1 x units) to `tensor`, when it is its only
        reader."""
        readers = self.consumers.get(tensor, [])
        if len(readers) != 1 or readers[0] < 0:
            return None
        add = self.graph.node[readers[0]]
        if add.op_type != "Add" or len(add.input) != 2:
            return None
        other = add.input[1] if add.input[0] == tensor else add.input[0]
        known = self.static.get(other, self.shapes.get(other))
        return readers[0] if other in self.constants and known in [(units,), (1, units)] else None

    # normalisation ------------------------------------------------------------------------------------

    def op_BatchNormalization(self, i, node, a):  # noqa: N802 - named as ONNX names the operator
        x = self.act(i, node.input[0])
        shape = self.shape(i, node.input[0])
        if any(node.output[1:]) or a.int("training_mode", 0):
            raise self.fail_node(i, "E0405", "training mode (updated statistics as outputs) is not supported")
        for k, what in enumerate(("scale", "bias", "mean", "variance"), 1):
            self.need(i, self.weight(i, node.input[k]), (shape[1],), what)
        eps = a.float("epsilon", 1e-5)
        args = [] if _close(eps, 1e-5) else [("eps", eps)]
        self.emit(i, node, "bn", [x], args)

    def op_InstanceNormalization(self, i, node, a):  # noqa: N802 - named as ONNX names the operator
        x = self.act(i, node.input[0])
        shape = self.shape(i, node.input[0])
        self.spatial(i, node, len(shape))
        for k, what in enumerate(("scale", "bias"), 1):
            self.need(i, self.weight(i, node.input[k]), (shape[1],), what)
        eps = a.float("epsilon", 1e-5)
        self.emit(i, node, "instancenorm", [x], [("affine", True)] + ([] if _close(eps, 1e-5) else [("eps", eps)]))

    def op_LayerNormalization(self, i, node, a):  # noqa: N802 - named as ONNX names the operator
        """Over the dimensions from `axis` on: archc's `layernorm: N`, N the number of them."""
        x = self.act(i, node.input[0])
        shape = self.shape(i, node.input[0])
        axis = a.int("axis", -1) % len(shape)
        if axis == 0 or any(node.output[1:]):
            raise self.fail_node(i, "E0405", "a layer norm over the batch, or with its statistics as outputs")
        self.need(i, self.weight(i, node.input[1]), shape[axis:], "scale")
        bias = len(node.input) > 2 and bool(node.input[2])
        if bias:
            self.need(i, self.weight(i, node.input[2]), shape[axis:], "bias")
        eps = a.float("epsilon", 1e-5)
        args = [(None, len(shape) - axis)] + ([] if _close(eps, 1e-5) else [("eps", eps)])
        self.emit(i, node, "layernorm", [x], args + ([] if bias else [("bias", False)]))

    def op_LRN(self, i, node, a):  # noqa: N802 - named as ONNX names the operator
        x = self.act(i, node.input[0])
        args = [(None, a.int("size", 1)), ("alpha", a.float("alpha", 1e-4)), ("beta", a.float("beta", 0.75))]
        args.append(("k", a.float("bias", 1.0)))
        self.emit(i, node, "lrn", [x], args)

    def op_Dropout(self, i, node, a):  # noqa: N802 - named as ONNX names the operator
        if len(node.output) > 1 and node.output[1] and self.consumers.get(node.output[1]):
            raise self.fail_node(i, "E0405", "its mask output is read: archc's dropout has one output")
        self.act(i, node.input[0])
        self.alias(node, node.input[0])  # the identity at inference

    def op_Identity(self, i, node, a):  # noqa: N802 - named as ONNX names the operator
        self.act(i, node.input[0])
        self.alias(node, node.input[0])

    # activations -------------------------------------------------------------------------------------

    def op_Sigmoid(self, i, node, a):  # noqa: N802 - named as ONNX names the operator
        """sigmoid, or with the Mul that multiplies its input by it, silu (x * sigmoid(x), as exporters
        write SiLU)."""
        x, gate = node.input[0], node.output[0]
        mul = self.consumers.get(gate, [])
        if len(mul) == 1 and mul[0] > i and self.graph.node[mul[0]].op_type == "Mul":
            product = self.graph.node[mul[0]]
            if sorted(product.input) == sorted([x, gate]) and sorted(self.consumers.get(x, [])) == sorted([i, mul[0]]):
                self.skip.add(mul[0])
                self.activation(i, node, "silu", [], sorted([i, mul[0]]), product.output[0])
                return
        self.activation(i, node, "sigmoid", [])

    def erf_gelu(self, i: int, node) -> list[int] | None:
        """x / sqrt(2) -> Erf -> + 1 -> * x -> * 0.5, as exporters write GELU before opset 20: the nodes, the
        Div (i) first, when nothing else reads what they compute in between and x goes to the Div and Mul."""
        x = node.input[0]

        def only(tensor: str, op: str) -> int | None:
            readers = self.consumers.get(tensor, [])
            if len(readers) == 1 and readers[0] >= 0 and self.graph.node[readers[0]].op_type == op:
                return readers[0]
            return None

        def other(k: int, tensor: str) -> str:
            inputs = list(self.graph.node[k].input)
            return inputs[1] if inputs[0] == tensor else inputs[0]

        def constant(tensor: str, wanted: float) -> bool:
            """Whether `tensor` is one number, `wanted`: an initialiser or a Constant, wherever it stands."""
            from onnx import numpy_helper

            if tensor in self.init:
                source = self.init[tensor]
            else:
                made = [n for n in self.graph.node if tensor in n.output and n.op_type == "Constant"]
                attrs = made[0].attribute if made else []
                source = attrs[0].t if len(attrs) == 1 and attrs[0].name == "value" else None
            if source is None or math.prod(source.dims) != 1 or source.data_location == source.EXTERNAL:
                return False
            value = numpy_helper.to_array(source)
            return value.dtype.kind == "f" and _close(float(value.reshape(-1)[0]), wanted)

        if not self.is_act(x) or not constant(node.input[1], math.sqrt(2)):
            return None
        erf = only(node.output[0], "Erf")
        add = only(self.graph.node[erf].output[0], "Add") if erf is not None else None
        mul = only(self.graph.node[add].output[0], "Mul") if add is not None else None
        half = only(self.graph.node[mul].output[0], "Mul") if mul is not None else None
        if half is None or sorted(self.consumers.get(x, [])) != sorted([i, mul]):
            return None
        if (
            not constant(other(add, self.graph.node[erf].output[0]), 1.0)
            or other(mul, self.graph.node[add].output[0]) != x
        ):
            return None
        return [i, erf, add, mul, half] if constant(other(half, self.graph.node[mul].output[0]), 0.5) else None

    def op_LeakyRelu(self, i, node, a):  # noqa: N802 - named as ONNX names the operator
        self.activation(i, node, "leaky_relu", [a.float("alpha", 0.01)])

    def op_Elu(self, i, node, a):  # noqa: N802 - named as ONNX names the operator
        self.activation(i, node, "elu", [a.float("alpha", 1.0)])

    def op_HardSigmoid(self, i, node, a):  # noqa: N802 - named as ONNX names the operator
        alpha, beta = a.float("alpha", 0.2), a.float("beta", 0.5)
        if not (_close(alpha, 1 / 6) and _close(beta, 0.5)):
            raise self.fail_node(
                i, "E0405", f"alpha={alpha:g}, beta={beta:g}: archc's hardsigmoid is relu6(x+3)/6 (1/6, 0.5)"
            )
        self.activation(i, node, "hardsigmoid", [])

    def op_Gelu(self, i, node, a):  # noqa: N802 - named as ONNX names the operator
        approximate = a.str("approximate", "none")
        self.activation(i, node, "gelu", [] if approximate == "none" else [approximate])

    def op_Clip(self, i, node, a):  # noqa: N802 - named as ONNX names the operator
        if self.opset < 11:
            low, high = a.float("min", -math.inf), a.float("max", math.inf)
        else:
            low = self.number(i, node.input[1], "min") if len(node.input) > 1 and node.input[1] else -math.inf
            high = self.number(i, node.input[2], "max") if len(node.input) > 2 and node.input[2] else math.inf
        if (low, high) == (0, 6):
            self.activation(i, node, "relu6", [])
        elif low == 0 and high == math.inf:
            self.activation(i, node, "relu", [])
        else:
            raise self.fail_node(i, "E0405", f"Clip to [{low:g}, {high:g}]: archc clips only to [0, 6] (relu6)")

    def op_Softmax(self, i, node, a):  # noqa: N802 - named as ONNX names the operator
        shape = self.shape(i, node.input[0])
        axis = a.int("axis", -1 if self.opset >= OPSET else 1) % len(shape)
        # before opset 13 Softmax flattens from `axis` on: over the channels when nothing follows them
        if axis != 1 or (self.opset < OPSET and math.prod(shape[2:]) != 1):
            raise self.fail_node(
                i, "E0405", f"axis={axis} of {list(shape)}: archc's softmax normalises the channels", [], "axis"
            )
        self.activation(i, node, "softmax", [])

    # pooling ------------------------------------------------------------------------------------------

    def _pool(self, i, node, a, op: str):
        x = self.act(i, node.input[0])
        shape = self.shape(i, node.input[0])
        self.spatial(i, node, len(shape))
        if len(node.output) > 1 and node.output[1]:
            raise self.fail_node(i, "E0405", "its Indices output is not supported")
        kernel = tuple(self.positive(i, a, "kernel_shape", a.ints("kernel_shape", [])))
        args = [(None, kernel)] + self.window(i, a, shape[2:], kernel, pool=True)
        if a.int("ceil_mode", 0):
            args.append(("ceil", True))
        if op == "avgpool" and not a.int("count_include_pad", 0) and any(a.ints("pads", [])):
            args.append(("count_pad", False))
        self.emit(i, node, op, [x], args)

    def op_MaxPool(self, i, node, a):  # noqa: N802 - named as ONNX names the operator
        self._pool(i, node, a, "maxpool")

    def op_AveragePool(self, i, node, a):  # noqa: N802 - named as ONNX names the operator
        if a.has("dilations") and any(d != 1 for d in a.ints("dilations", [])):
            raise self.fail_node(i, "E0405", "a dilated average pool is not supported", [], "dilations")
        self._pool(i, node, a, "avgpool")

    def op_GlobalAveragePool(self, i, node, a):  # noqa: N802 - named as ONNX names the operator
        self.spatial(i, node, len(self.shape(i, node.input[0])))
        self.emit(i, node, "globalavgpool", [self.act(i, node.input[0])], [])

    def op_ReduceMean(self, i, node, a):  # noqa: N802 - named as ONNX names the operator
        """The mean over every spatial axis, kept as 1: a global average pool (torch's exporter writes
        adaptive_avg_pool2d(x, 1) so); over one axis of the sample, removed: a `mean` (x.mean(dim=d), as
        archc's ONNX out writes it). Axes are an attribute before opset 18, an input after."""
        x = self.act(i, node.input[0])
        rank = len(self.shape(i, node.input[0]))
        axes = self.whole(i, node.input[1], "axes") if len(node.input) > 1 and node.input[1] else a.ints("axes", [])
        axes = sorted(d % rank for d in axes)
        kept = a.int("keepdims", 1)
        if rank >= 3 and kept and axes == list(range(2, rank)):
            self.emit(i, node, "globalavgpool", [x], [])
        elif rank >= 3 and not kept and len(axes) == 1 and axes[0] > 0:
            self.emit(i, node, "mean", [x], [("axis", axes[0] - 1)])
        else:
            what = f"a mean over axes {axes} of {rank}" + ("" if kept else ", not kept")
            raise self.fail_node(
                i,
                "E0405",
                f"{what}: archc averages over every spatial axis, kept (globalavgpool), or over one axis of a "
                "sample, removed (mean)",
                ["docs/importers.md lists them"],
            )

    def op_GlobalMaxPool(self, i, node, a):  # noqa: N802 - named as ONNX names the operator
        self.spatial(i, node, len(self.shape(i, node.input[0])))
        self.emit(i, node, "globalmaxpool", [self.act(i, node.input[0])], [])

    # shapes -----------------------------------------------------------------------------------------

    def op_Flatten(self, i, node, a):  # noqa: N802 - named as ONNX names the operator
        x = self.act(i, node.input[0])
        rank = len(self.shape(i, node.input[0]))
        if a.int("axis", 1) % rank != 1 if rank else True:
            raise self.fail_node(i, "E0405", "a flatten that does not keep the batch apart", [], "axis")
        if rank == 2:
            self.alias(node, node.input[0])
            return
        self.emit(i, node, "flatten", [x], [])

    def reshape_to(self, i, node, x: str, shape: tuple, out: tuple) -> None:
        """`x` of `shape` (batch first) as `out`: a flatten, a reshape, or nothing when they agree."""
        if out == shape:
            self.alias(node, node.input[0])
        elif len(out) == 2 and len(shape) > 2:
            self.emit(i, node, "flatten", [x], [])
        else:
            self.emit(i, node, "reshape", [x], [(None, tuple(out[1:]))])

    def keep_batch(self, i, shape: tuple, out: tuple | None) -> tuple:
        if out is None or len(out) < 2 or out[0] != shape[0] or math.prod(out[1:]) != math.prod(shape[1:]):
            wanted = list(out) if out else "?"
            raise self.fail_node(i, "E0405", f"it gives shape {wanted} from {list(shape)}: archc keeps the batch apart")
        return out

    def op_Reshape(self, i, node, a):  # noqa: N802 - named as ONNX names the operator
        x = self.act(i, node.input[0])
        shape = self.shape(i, node.input[0])
        target = self.whole(i, node.input[1], "shape")  # a shape computed at run time: E0405
        if not a.int("allowzero", 0):
            target = [shape[k] if v == 0 and k < len(shape) else v for k, v in enumerate(target)]
        if target.count(-1) == 1 and math.prod(v for v in target if v != -1) > 0:
            known = math.prod(v for v in target if v != -1)
            target[target.index(-1)] = math.prod(shape) // known if math.prod(shape) % known == 0 else -1
        out = self.keep_batch(i, shape, tuple(target) if all(v > 0 for v in target) else None)
        self.reshape_to(i, node, x, shape, out)

    def op_Squeeze(self, i, node, a):  # noqa: N802 - named as ONNX names the operator
        self._resize_rank(i, node, a)

    def op_Unsqueeze(self, i, node, a):  # noqa: N802 - named as ONNX names the operator
        self._resize_rank(i, node, a)

    def _resize_rank(self, i, node, a):
        x = self.act(i, node.input[0])
        shape = self.shape(i, node.input[0])
        out = self.keep_batch(i, shape, self.shapes.get(node.output[0]))
        self.reshape_to(i, node, x, shape, out)

    def op_Transpose(self, i, node, a):  # noqa: N802 - named as ONNX names the operator
        x = self.act(i, node.input[0])
        rank = len(self.shape(i, node.input[0]))
        perm = a.ints("perm", list(range(rank))[::-1])
        if sorted(perm) != list(range(rank)) or perm[0] != 0:
            raise self.fail_node(i, "E0405", f"perm={perm} moves the batch: archc keeps it first", [], "perm")
        if perm == list(range(rank)):
            self.alias(node, node.input[0])
            return
        self.emit(i, node, "permute", [x], [(None, tuple(p - 1 for p in perm[1:]))])

    def op_Concat(self, i, node, a):  # noqa: N802 - named as ONNX names the operator
        """Along an axis of the sample; a weight among the inputs (a class token, expanded over the batch) is
        a `param` of its own. A sequence's axes are given by number: `channels` is its features."""
        rank = len(self.shape(i, node.input[0]))
        axis = a.int("axis", 1) % rank
        if axis == 0:
            raise self.fail_node(i, "E0405", "a concat along the batch", [], "axis")
        xs = [self.act(i, n) if self.is_act(n) else self.token(i, n) for n in node.input]
        if len(xs) == 1:
            self.alias(node, node.input[0])
            return
        self.emit(i, node, "concat", xs, [] if axis == 1 and rank != 3 else [("axis", axis - 1)])

    def token(self, i: int, name: str) -> str:
        """A weight concatenated to computed tokens: a `param` of its shape without the batch, named after
        the weight it is expanded from (torchvision's class_token)."""
        shape = self.shape(i, name)
        if len(shape) < 2 or shape[0] not in (1, self.batch or 1):
            raise self.fail_node(i, "E0405", f"a weight of shape {list(shape)}: archc's weights are per sample")
        source = self.origin.get(name, name)
        while (k := self.producer.get(source)) is not None and self.graph.node[k].op_type in MOVES:
            source = self.origin.get(self.graph.node[k].input[0], self.graph.node[k].input[0])
        if source not in self.init:
            raise self.fail_node(
                i, "E0405", f"its input `{name}` is a constant, not a weight: archc has no layer that holds it"
            )
        span = self.span(("node", i))
        return self.flat.add("param", self.flat.unique(sanitize(source)), [], [(None, tuple(shape[1:]), span)], span)

    def op_Gather(self, i, node, a):  # noqa: N802 - named as ONNX names the operator
        """One index of an axis of the sample (a sequence's class token: x[:, 0]): a `select`."""
        x = self.act(i, node.input[0])
        shape = self.shape(i, node.input[0])
        axis = a.int("axis", 0) % len(shape)
        index = self.value(i, node.input[1], "indices")
        if axis == 0 or index.ndim != 0 or index.dtype.kind not in "iu" or not -shape[axis] <= index < shape[axis]:
            why = f"indices of shape {list(index.shape)} along axis {axis}: archc's select takes one index of a sample"
            raise self.fail_node(i, "E0405", why, [], "axis")
        self.emit(i, node, "select", [x], [(None, int(index))] + ([] if axis == 1 else [("axis", axis - 1)]))

    def op_Split(self, i, node, a):  # noqa: N802 - named as ONNX names the operator
        x = self.act(i, node.input[0])
        shape = self.shape(i, node.input[0])
        axis = a.int("axis", 0) % len(shape)
        parts = len(node.output)
        outs = [self.shapes.get(o) for o in node.output]
        sizes = [out[axis] if out and len(out) == len(shape) else None for out in outs]
        if axis != 1 or len(set(sizes)) != 1 or sizes[0] is None or sizes[0] * parts != shape[1]:
            raise self.fail_node(
                i, "E0405", f"a split into {sizes} along axis {axis}: archc splits the channels into equal parts"
            )
        for k in range(parts):
            args = [(None, parts)] + ([("index", k)] if k else [])
            self.emit(
                i, node, "chunk", [x], args, out=k, name=f"{_name(self.named[i], self.leaves, self.sequences)[0]}_{k}"
            )

    def op_Slice(self, i, node, a):  # noqa: N802 - named as ONNX names the operator
        """A window of the spatial axes (a crop), or one of equal parts of the channels (a chunk)."""
        x = self.act(i, node.input[0])
        shape = self.shape(i, node.input[0])
        out = self.shapes.get(node.output[0])
        if self.opset < 10:
            starts, axes = a.ints("starts", []), a.ints("axes", range(len(shape)))
            steps = [1] * len(starts)
        else:
            names = [*node.input[1:], "", ""][:4]
            starts, _, axes, steps = [
                self.whole(i, n, what) if n else None for n, what in zip(names, ("starts", "ends", "axes", "steps"))
            ]
            axes = axes if axes is not None else list(range(len(starts)))
            steps = steps if steps is not None else [1] * len(starts)
        if out is None or len(out) != len(shape) or any(s != 1 for s in steps):
            raise self.fail_node(i, "E0405", "a slice with steps other than 1 is not supported")
        axes = [ax % len(shape) for ax in axes]
        first = {ax: max(0, min(s + shape[ax] if s < 0 else s, shape[ax])) for ax, s in zip(axes, starts)}
        if 0 in first and out[0] != shape[0]:
            raise self.fail_node(i, "E0405", "a slice of the batch")
        changed = [ax for ax in range(1, len(shape)) if out[ax] != shape[ax]]
        if changed == [1] and shape[1] % out[1] == 0 and first.get(1, 0) % out[1] == 0:
            parts = shape[1] // out[1]
            self.emit(i, node, "chunk", [x], [(None, parts)] + [("index", first.get(1, 0) // out[1])])
        elif changed and 1 not in changed and len(shape) > 2:
            size = tuple(out[2:])
            offset = tuple(first.get(ax, 0) for ax in range(2, len(shape)))
            self.emit(i, node, "crop", [x], [(None, size), ("offset", offset)])
        elif not changed:
            self.alias(node, node.input[0])
        else:
            why = f"a slice from {list(shape)} to {list(out)}: archc's chunk and crop cut no such part"
            raise self.fail_node(i, "E0405", why)

    def op_Pad(self, i, node, a):  # noqa: N802 - named as ONNX names the operator
        x = self.act(i, node.input[0])
        shape = self.shape(i, node.input[0])
        mode = a.str("mode", "constant")
        if self.opset < 11:
            pads, fill = a.ints("pads", []), a.float("value", 0.0)
        else:
            pads = self.whole(i, node.input[1], "pads")
            fill = self.number(i, node.input[2], "value") if len(node.input) > 2 and node.input[2] else 0.0
            if len(node.input) > 3 and node.input[3]:
                raise self.fail_node(i, "E0405", "a Pad with axes is not supported")
        nd = len(shape)
        if mode != "constant" or fill != 0:
            raise self.fail_node(i, "E0405", f"a {mode} pad with {fill:g}: archc's zeropad pads zeros", [], "mode")
        if len(pads) != 2 * nd or any(pads[k] or pads[k + nd] for k in (0, 1)) or any(p < 0 for p in pads):
            raise self.fail_node(i, "E0405", f"pads={pads}: archc's zeropad pads the spatial axes, by at least 0")
        pairs = tuple(PadPair((pads[k], pads[k + nd])) for k in range(2, nd))
        self.emit(i, node, "zeropad", [x], [(None, pairs[0] if len(pairs) == 1 else pairs)])

    # element-wise -------------------------------------------------------------------------------------

    def op_Add(self, i, node, a):  # noqa: N802 - named as ONNX names the operator
        self._merge(i, node, "add")

    def op_Sum(self, i, node, a):  # noqa: N802 - named as ONNX names the operator
        self._merge(i, node, "add")

    def op_Mul(self, i, node, a):  # noqa: N802 - named as ONNX names the operator
        self._merge(i, node, "mul")

    def op_Sub(self, i, node, a):  # noqa: N802 - named as ONNX names the operator
        self._merge(i, node, "sub")

    def op_Div(self, i, node, a):  # noqa: N802 - named as ONNX names the operator
        self._merge(i, node, "div")

    def _merge(self, i, node, op: str):
        if len(node.input) == 2 and sum(self.is_act(n) for n in node.input) == 1:
            self.with_weight(i, node, op)
            return
        xs = [self.act(i, n) for n in node.input]
        shapes = [self.shape(i, n) for n in node.input]
        if len(xs) == 1:
            self.alias(node, node.input[0])
            return
        if len({len(s) for s in shapes}) != 1 or any(s[0] != shapes[0][0] for s in shapes):
            raise self.fail_node(i, "E0405", "inputs of different ranks or batches: archc broadcasts within a sample")
        self.emit(i, node, op, xs, [])

    def with_weight(self, i, node, op: str) -> None:
        """x op W, W a weight: a `param` of W's shape (without the batch) that `op` broadcasts; x * w, w one
        value per channel, a `layer_scale`. So x * w + b, w and b per channel (a Caffe Scale), is a
        `layer_scale` and an `add` of a C x 1 x 1 `param`: element-wise arithmetic, of 0 MACs."""
        k = 0 if self.is_act(node.input[0]) else 1
        x, w = node.input[k], node.input[1 - k]
        shape, wshape = self.shape(i, x), self.weight(i, w)
        if len(wshape) > len(shape) or (len(wshape) == len(shape) and wshape[0] != 1):
            raise self.fail_node(i, "E0405", f"a weight of shape {list(wshape)}: archc's weights are per sample")
        per_sample = (1,) * (len(shape) - 1 - len(wshape)) + tuple(wshape[-(len(shape) - 1) :] if wshape else ())
        channel = (shape[1],) + (1,) * (len(shape) - 2)
        if op == "mul" and per_sample == channel and len(shape) > 2:  # a learned factor per channel
            self.emit(i, node, "layer_scale", [self.act(i, x)], [])
            return
        span = self.span(("node", i))
        param = self.flat.add("param", self.flat.unique(sanitize(w)), [], [(None, per_sample, span)], span)
        inputs = [self.act(i, x), param]
        self.emit(i, node, op, inputs if k == 0 else inputs[::-1], [])

    # constants ----------------------------------------------------------------------------------------

    def fold(self, i: int, node) -> None:
        """A node of constants: its output is a constant (a weight, or a shape to read)."""
        op = node.op_type
        a = _Attrs(node)
        if op == "Constant":
            self.constant(i, node, a)
            return
        if op == "ConstantOfShape":
            shape = tuple(self.whole(i, node.input[0], "shape"))
            if any(d < 0 for d in shape):
                raise self.fail_node(i, "E0403", f"a shape of {list(shape)}: sizes are at least 0")
            self.static[node.output[0]] = shape
            if math.prod(shape) <= SMALL:
                fill = a.tensor("value")
                self.values[node.output[0]] = np.full(shape, fill.reshape(-1)[0] if fill is not None else 0.0)
            return
        if op == "Shape":
            return self.shape_of(i, node, a)
        if any(n and not self.readable(n) for n in node.input):  # a weight reshaped, cut, joined: its shape counts
            shape = self.shapes.get(node.output[0])
            if shape is None:
                raise self.fail_node(i, "E0404", f"the shape of `{node.output[0]}` is not static")
            self.static[node.output[0]] = shape
            return
        xs = [self.value(i, n, "input") if n else None for n in node.input]
        try:
            out = _evaluate(op, xs, a, self.opset)
        except Exception as err:  # an operation on constants archc cannot evaluate
            raise self.fail_node(i, "E0405", f"archc cannot evaluate it on constants: {err}") from None
        self.values[node.output[0]] = out
        self.static[node.output[0]] = out.shape

    def small(self, name: str) -> bool:
        return name in self.values or math.prod(self.static.get(name, (SMALL + 1,))) <= SMALL

    def readable(self, name: str) -> bool:
        """Whether archc holds or can read a constant's values: not those of a weight too large to read,
        nor of anything made from one (torch's exporter cuts an LSTM's weights into gate blocks and joins
        them in ONNX's order: blocks small enough to read, of a weight that is not)."""
        return name in self.values or (name in self.init and self.small(name))

    def constant(self, i, node, a) -> None:
        from onnx import numpy_helper

        attr = node.attribute[0] if node.attribute else None
        if attr is None:
            raise self.fail_node(i, "E0403", "a Constant with no value")
        if attr.name == "value":
            self.static[node.output[0]] = tuple(attr.t.dims)
            if math.prod(attr.t.dims) <= SMALL:
                self.values[node.output[0]] = numpy_helper.to_array(attr.t, self.base)
            return
        kinds = {"value_float": ("f", np.float32), "value_int": ("i", np.int64)}
        kinds |= {"value_floats": ("floats", np.float32), "value_ints": ("ints", np.int64)}
        if attr.name not in kinds:
            raise self.fail_node(i, "E0405", f"a Constant given as {attr.name} is not supported")
        field, dtype = kinds[attr.name]
        value = np.array(getattr(attr, field), dtype)
        self.values[node.output[0]] = value
        self.static[node.output[0]] = value.shape

    def shape_of(self, i, node, a) -> None:
        shape = self.shape(i, node.input[0])
        start, end = a.int("start", 0), a.int("end", len(shape))
        value = np.array(shape, np.int64)[slice(start, end)]
        self.values[node.output[0]] = value
        self.static[node.output[0]] = value.shape

    def op_Shape(self, i, node, a):  # noqa: N802 - named as ONNX names the operator
        self.act(i, node.input[0])
        self.shape_of(i, node, a)


def _evaluate(op: str, xs: list, a: _Attrs, opset: int) -> np.ndarray:
    """A shape-arithmetic node on constant inputs, as ONNX defines it."""
    if op == "Identity" or op == "Cast":
        return xs[0] if op == "Identity" else xs[0].astype(_numpy_type(a.int("to", 1)))
    if op == "ConstantOfShape":
        fill = a.tensor("value")
        return np.full([int(v) for v in xs[0]], fill.reshape(-1)[0] if fill is not None else np.float32(0))
    if op == "Mod" and not a.int("fmod", 0):  # the remainder with the divisor's sign, as Python's
        return np.mod(xs[0], xs[1])
    if op in ("Add", "Sub", "Mul", "Div"):
        f = {"Add": np.add, "Sub": np.subtract, "Mul": np.multiply}.get(op)
        if f is not None:
            return f(xs[0], xs[1])
        return xs[0] // xs[1] if xs[0].dtype.kind in "iu" else xs[0] / xs[1]
    if op == "Gather":
        return np.take(xs[0], xs[1].astype(np.int64), axis=a.int("axis", 0))
    if op in ("Unsqueeze", "Squeeze"):
        axes = a.ints("axes", None) if opset < 13 else (list(xs[1]) if len(xs) > 1 and xs[1] is not None else None)
        if op == "Squeeze":
            return np.squeeze(xs[0], axis=None if axes is None else tuple(int(x) for x in axes))
        out = xs[0]
        rank = out.ndim + len(axes)
        for ax in sorted(int(x) % rank for x in axes):
            out = np.expand_dims(out, ax)
        return out
    if op == "Concat":
        return np.concatenate([np.atleast_1d(x) for x in xs], axis=a.int("axis", 0))
    if op == "Reshape":
        target = [int(v) for v in xs[1]]
        target = [xs[0].shape[k] if v == 0 else v for k, v in enumerate(target)]
        return xs[0].reshape(target)
    if op == "Slice":
        starts, ends = xs[1], xs[2]
        axes = xs[3] if len(xs) > 3 and xs[3] is not None else range(len(starts))
        steps = xs[4] if len(xs) > 4 and xs[4] is not None else [1] * len(starts)
        index = [slice(None)] * xs[0].ndim
        for s, e, ax, st in zip(starts, ends, axes, steps):
            index[int(ax)] = slice(int(s), int(e), int(st))
        return xs[0][tuple(index)]
    if op == "Transpose":
        return np.transpose(xs[0], a.ints("perm", None))
    if op == "Expand":  # broadcast both ways, as ONNX's Expand does
        return np.broadcast_to(xs[0], np.broadcast_shapes(xs[0].shape, tuple(int(v) for v in xs[1]))).copy()
    if op == "Range":
        return np.arange(xs[0], xs[1], xs[2])
    if op == "Equal":
        return np.equal(xs[0], xs[1])
    if op == "Where":
        return np.where(xs[0], xs[1], xs[2])
    if op == "ReduceProd":
        return np.prod(xs[0], keepdims=bool(a.int("keepdims", 1)))
    if op in ("Floor", "Sqrt"):
        return getattr(np, op.lower())(xs[0])
    raise ValueError(f"no rule for {op}")


def _numpy_type(to: int):
    from onnx import helper

    return helper.tensor_dtype_to_np_dtype(to)


def _close(a: float, b: float) -> bool:
    return abs(a - b) <= 1e-6 * max(abs(b), 1e-12) + 1e-9


def _scope(node) -> tuple[list[str], str]:
    """The module path an exporter names a node by (`/layer1/layer1.0/conv1/Conv`: layer1.0, conv1, with
    `layer1` gone as `layer1.0` repeats it) and the operator that ends it (`conv`), if one does."""
    parts = [p for p in node.name.split("/") if p]
    op = ""
    if parts and re.fullmatch(rf"{re.escape(node.op_type)}(_\d+)?", parts[-1]):
        op = parts.pop().lower()
    kept = [p for k, p in enumerate(parts) if not (k + 1 < len(parts) and parts[k + 1].startswith(p + "."))]
    return kept, op


def _name(node, leaves: set, sequences: set = frozenset()) -> tuple[str, str]:
    """An archc name for the node's statement and the module it belongs to, from the ONNX name.

    A module of its own (a leaf that ran only this node) names it without the operator:
    `layer1_0_conv1`; an operator a larger module ran keeps it: `layer1_0_add`. The module is the
    first path element (`layer1_0`), or, where that holds a sequence of numbered units (a
    transformer's `encoder/layers/encoder_layer_0`, ...), the unit, when there is more than one
    element. A name without `/` (`conv1`, as older exporters and model zoos write) is taken as it is.
    """
    if "/" not in node.name:
        return node.name or node.op_type.lower(), ""
    kept, op = _scope(node)
    if op and (not kept or "/".join(kept) not in leaves):
        kept = [*kept, op]
    unit = next((d + 1 for d in range(1, len(kept) - 1) if "/".join(kept[:d]) in sequences), 1)
    return "_".join(kept) or node.op_type.lower(), "/".join(kept[:unit]) if len(kept) > 1 else ""


def _module_path(node) -> str:
    """The node's name, or for torch's default exporter, which names nodes by their operator alone
    (`node_MatMul_95`), the module path it keeps in the node's metadata (`pkg.torch.onnx.name_scopes`:
    `encoder.layers.encoder_layer_0`, `encoder.layers.encoder_layer_0.mlp`, ...) in the TorchScript
    exporter's form: `/encoder/layers/encoder_layer_0/mlp/MatMul`."""
    if "/" in node.name:
        return node.name
    scopes = next((p.value for p in node.metadata_props if p.key == "pkg.torch.onnx.name_scopes"), "")
    *paths, fx = re.findall(r"'([^']*)'", scopes) or [node.name]  # the last is the fx node, not a module
    parts, parent = [], ""
    for path in paths:
        if path:
            parts.append(path[len(parent) + 1 :] if parent and path.startswith(parent + ".") else path)
            parent = path
    return "/" + "/".join([*parts, node.op_type]) if parts else fx  # outside a module: `view`, `cat`


def _sequences(nodes) -> set[str]:
    """The module paths that hold numbered units alone (`encoder/layers`: `encoder_layer_0`, ...; an
    nn.Sequential, nn.ModuleList), under a first element that is not a unit itself."""
    children: dict[str, set[str]] = {}
    own: set[str] = set()
    for node in nodes:
        if "/" not in node.name:
            continue
        kept, _ = _scope(node)
        own.add("/".join(kept))
        for d in range(1, len(kept)):
            children.setdefault("/".join(kept[:d]), set()).add(kept[d])
    numbered = re.compile(r".*[._]\d+")
    return {
        path
        for path, names in children.items()
        if len(names) > 1 and path not in own and all(numbered.fullmatch(n) for n in names)
        and not numbered.fullmatch(path.split("/")[0])
    }  # fmt: skip


def _leaves(nodes) -> set[str]:
    """The module paths that ran exactly one node and hold no other module: a layer of their own."""
    paths = [tuple(_scope(node)[0]) for node in nodes if "/" in node.name]
    count = Counter(paths)
    inner = {path[:k] for path in paths for k in range(len(path))}
    return {"/".join(p) for p, n in count.items() if n == 1 and p and p not in inner}


@dataclass
class _Named:
    """What _scope reads of a node, for a name made up of a scope and an operator."""

    name: str
    op_type: str


class _Attrs:
    """A node's attributes by name, typed."""

    def __init__(self, node):
        self.by_name = {attr.name: attr for attr in node.attribute}

    def has(self, name: str) -> bool:
        return name in self.by_name

    def int(self, name: str, default: int) -> int:
        attr = self.by_name.get(name)
        return int(attr.i) if attr is not None else default

    def float(self, name: str, default: float) -> float:
        attr = self.by_name.get(name)  # a float32: the shortest decimal that is it (1e-06, not 9.99999997e-07)
        return float(str(np.float32(attr.f))) if attr is not None else default

    def str(self, name: str, default: str) -> str:
        attr = self.by_name.get(name)
        return attr.s.decode("utf-8", "replace") if attr is not None else default

    def ints(self, name: str, default):
        attr = self.by_name.get(name)
        return list(attr.ints) if attr is not None else (list(default) if default is not None else None)

    def tensor(self, name: str):
        from onnx import numpy_helper

        attr = self.by_name.get(name)
        return numpy_helper.to_array(attr.t) if attr is not None else None


def _without_weights(onnx, model):
    """A copy of the model for shape inference, whose large initialisers are inputs of their type and shape:
    inference reads only those of a weight, and copying and serialising the bytes of VGG-16's weights (half a
    GB) took longer than the inference itself. The small ones stay: a computed shape may read their values."""
    graph = model.graph
    light = onnx.ModelProto(ir_version=model.ir_version)
    light.opset_import.extend(model.opset_import)
    light.functions.extend(model.functions)
    copy = light.graph
    copy.name = graph.name
    for field in ("node", "input", "output", "value_info", "sparse_initializer"):
        getattr(copy, field).extend(getattr(graph, field))
    declared = {value.name for value in graph.input}
    for tensor in graph.initializer:
        if math.prod(tensor.dims) <= SMALL:
            copy.initializer.append(tensor)
        elif tensor.name not in declared:  # an input already (IR < 4) gives its type and shape
            copy.input.append(onnx.helper.make_tensor_value_info(tensor.name, tensor.data_type, tensor.dims))
    return light
