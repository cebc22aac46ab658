"""Caffe `.prototxt` files (NetParameter in protobuf text format) as archc syntax trees.

Layers come in the order the file defines them, named after their Caffe
names (`conv1/7x7_s2` becomes `conv1_7x7_s2`). A `train_test` file is read
as Caffe's TEST phase builds it; data layers become inputs, and loss and
accuracy layers, which an inference network does not have, are left out
(the imported `.arch` text lists them in comments). An activation whose top
is its bottom (Caffe's in-place ReLU) becomes the `-> relu` of the layer it
follows, which is what in place means for memory. docs/importers.md lists
what each layer type becomes.

Caffe's own rules, exactly: pooling rounds up (`ceil`, with the last-window
rule), pooling's stride defaults to 1, LRN's alpha to 1, and InnerProduct
flattens what it reads.
"""

from __future__ import annotations

import contextlib
import re
from dataclasses import dataclass, field

from ..diagnostics import Span, source_lines
from ..expand import suggest
from ..syntax import MAX_NESTING
from .common import BROKEN, Flat, Imported, NumberError, decimal, network_name, sanitize, whole

# -- protobuf text format ---------------------------------------------------------------------------

TOKEN = re.compile(
    r"""(?P<space>\s+|\#[^\n]*)
      | (?P<string>"(?:[^"\\\n]|\\.)*"|'(?:[^'\\\n]|\\.)*')
      | (?P<number>[-+]?(?:\d+\.?\d*(?:[eE][-+]?\d+)?|\.\d+(?:[eE][-+]?\d+)?)[fF]?)
      | (?P<ident>[A-Za-z_][A-Za-z0-9_.]*)
      | (?P<punct>[:{}<>\[\],;])
    """,
    re.VERBOSE,
)


@dataclass
class Token:
    kind: str
    text: str
    line: int
    col: int
    value: str | None = None  # of a string: its text, escapes read

    @property
    def end(self) -> int:
        return self.col + len(self.text)


@dataclass
class Scalar:
    kind: str  # string, number or ident
    text: str  # as written (adjacent strings: the first)
    value: str  # a string's text, escapes read (adjacent strings joined); otherwise as written


@dataclass
class Field:
    key: str
    value: object  # Message or Scalar
    span: Span  # the key and its value (for a message, its first line)
    value_span: Span


@dataclass
class Message:
    fields: list[Field] = field(default_factory=list)
    used: set[str] = field(default_factory=set)
    span: Span | None = None

    def all(self, key: str) -> list[Field]:
        self.used.add(key)
        return [f for f in self.fields if f.key == key]

    def get(self, key: str) -> Field | None:
        found = self.all(key)
        return found[-1] if found else None  # protobuf: the last value of a singular field wins


class _SyntaxError(Exception):
    def __init__(self, message: str, token: Token | None, help=(), code: str = "E0401"):
        super().__init__(message)
        self.message, self.token, self.help, self.code = message, token, list(help), code


def tokenize(text: str) -> list[Token]:
    tokens, pos, line, line_start = [], 0, 1, 0
    while pos < len(text):
        match = TOKEN.match(text, pos)
        col = pos - line_start + 1
        if not match:
            if text[pos] in "\"'":
                raise _SyntaxError(
                    "a string that does not end on its line",
                    Token("punct", text[pos], line, col),
                    [f"close it with {text[pos]}; a line break inside a string is written \\n"],
                )
            raise _SyntaxError(
                f"unexpected character {text[pos]!r}",
                Token("punct", text[pos], line, col),
                ["a .prototxt holds `name: value` fields and `name { ... }` messages"],
            )
        kind = match.lastgroup
        chunk = match[0]
        if kind == "string":
            tokens.append(Token(kind, chunk, line, col, unescape(chunk, line, col)))
        elif kind != "space":
            tokens.append(Token(kind, chunk, line, col))
        newlines = chunk.count("\n")
        if newlines:
            line += newlines
            line_start = pos + chunk.rindex("\n") + 1
        pos = match.end()
    return tokens


ESCAPE = re.compile(
    r"""\\(?: (?P<simple>[abfnrtv\\?'"]) | (?P<octal>[0-7]{1,3}) | [xX](?P<hex>[0-9a-fA-F]{1,2})
          | u(?P<u>[0-9a-fA-F]{4}) | U(?P<U>[0-9a-fA-F]{8}) )""",
    re.VERBOSE,
)
TRAIL = re.compile(r"\\u(d[c-f][0-9a-f]{2})", re.IGNORECASE)  # the second half of a UTF-16 pair
SIMPLE = {"a": 7, "b": 8, "f": 12, "n": 10, "r": 13, "t": 9, "v": 11, "\\": 92, "?": 63, "'": 39, '"': 34}


def unescape(literal: str, line: int, col: int) -> str:
    """A string literal's text, as protobuf's text format reads it (io/tokenizer.cc).

    The escapes are C's (`\\n`, `\\t`, `\\\\`, `\\"`, ...), octal (`\\101`, up to `\\377`), hex
    (`\\x41`) and Unicode (`\\u00e9`, a UTF-16 pair of them, `\\U0001F600`); any other is E0401
    at the backslash, as is a code point that is no character (a lone surrogate, beyond
    U+10FFFF). Escapes give bytes; bytes that are not UTF-8 stay visible as `\\xNN`.
    """
    body, out, pos = literal[1:-1], bytearray(), 0
    while (at := body.find("\\", pos)) != -1:
        out += body[pos:at].encode("utf-8", "surrogatepass")
        match = ESCAPE.match(body, at)
        where = Token("string", body[at : at + 2], line, col + 1 + at)
        if match is None:
            letter = body[at + 1]
            digits = {"x": "one or two", "X": "one or two", "u": "four", "U": "eight"}.get(letter)
            message = (
                f"`\\{letter}` needs {digits} hex digits" if digits else f"`\\{letter}` is not an escape protobuf knows"
            )
            raise _SyntaxError(
                message,
                where,
                ["escapes are \\n \\t \\r \\\\ \\\" \\' and the like, \\NNN (octal), \\xNN, \\uNNNN, \\UNNNNNNNN"],
            )
        pos, where.text = match.end(), match[0]
        if match["simple"]:
            out.append(SIMPLE[match["simple"]])
        elif match["octal"]:
            if int(match["octal"], 8) > 0o377:
                raise _SyntaxError(f"`{match[0]}` is more than a byte: the largest octal escape is \\377", where)
            out.append(int(match["octal"], 8))
        elif match["hex"]:
            out.append(int(match["hex"], 16))
        else:
            code = int(match["u"] or match["U"], 16)
            pair = TRAIL.match(body, pos)
            if 0xD800 <= code < 0xDC00 and pair:  # a UTF-16 pair, as protobuf joins them
                code = 0x10000 + ((code - 0xD800) << 10) + (int(pair[1], 16) - 0xDC00)
                pos = pair.end()
            if 0xD800 <= code < 0xE000 or code > 0x10FFFF:
                raise _SyntaxError(f"`{match[0]}` is not a Unicode character", where)
            out += chr(code).encode("utf-8")
    out += body[pos:].encode("utf-8", "surrogatepass")
    return out.decode("utf-8", "backslashreplace")


class _Parser:
    def __init__(self, tokens: list[Token], file: str):
        self.tokens, self.i, self.file = tokens, 0, file

    def peek(self) -> Token | None:
        return self.tokens[self.i] if self.i < len(self.tokens) else None

    def take(self) -> Token:
        tok = self.peek()
        if tok is None:
            raise _SyntaxError("unexpected end of file", None, ["a `}` may be missing"])
        self.i += 1
        return tok

    def span(self, first: Token, last: Token) -> Span:
        return Span(self.file, first.line, first.col, last.line, last.end if last.line == first.line else first.end)

    def message(self, closing: str | None, depth: int = 0) -> Message:
        msg = Message()
        while True:
            tok = self.peek()
            if tok is None:
                if closing is not None:
                    raise _SyntaxError("unexpected end of file", None, [f"a `{closing}` is missing"])
                return msg
            if tok.text == closing and tok.kind == "punct":
                self.i += 1
                return msg
            if tok.kind != "ident":
                raise _SyntaxError(f"expected a field name, found `{tok.text}`", tok)
            self.i += 1
            nxt = self.peek()
            colon = nxt is not None and nxt.text == ":"
            if colon:
                self.i += 1
                nxt = self.peek()
            if nxt is not None and nxt.text in ("{", "<"):
                if depth == MAX_NESTING:
                    raise _SyntaxError(
                        f"messages nest more than {MAX_NESTING} deep",
                        nxt,
                        ["simplify the file: no real network needs this"],
                        code="E0213",
                    )
                self.i += 1
                inner = self.message("}" if nxt.text == "{" else ">", depth + 1)
                inner.span = Span(self.file, tok.line, tok.col, tok.line, tok.end)
                msg.fields.append(Field(tok.text, inner, inner.span, inner.span))
            elif not colon:
                found = "end of file" if nxt is None else f"`{nxt.text}`"
                raise _SyntaxError(f"expected `:` or `{{` after `{tok.text}`, found {found}", nxt or tok)
            elif nxt is not None and nxt.text == "[":
                self.i += 1
                while True:
                    value = self.scalar()
                    msg.fields.append(Field(tok.text, value[0], self.span(tok, value[1]), value[2]))
                    sep = self.take()
                    if sep.text == "]":
                        break
                    if sep.text != ",":
                        raise _SyntaxError(f"expected `,` or `]`, found `{sep.text}`", sep)
            else:
                value = self.scalar()
                msg.fields.append(Field(tok.text, value[0], self.span(tok, value[1]), value[2]))
            tok = self.peek()
            if tok is not None and tok.text in (",", ";"):
                self.i += 1

    def scalar(self):
        tok = self.take()
        if tok.kind not in ("string", "number", "ident"):
            raise _SyntaxError(f"expected a value, found `{tok.text}`", tok)
        value, last = tok.text, tok
        if tok.kind == "string":  # adjacent strings join, as in C
            value = tok.value
            while (nxt := self.peek()) is not None and nxt.kind == "string":
                self.i += 1
                value, last = value + nxt.value, nxt
        return Scalar(tok.kind, tok.text, value), last, Span(self.file, tok.line, tok.col, tok.line, tok.end)


def parse_prototxt(text: str, file: str) -> Message:
    """The whole file as a message; raises _SyntaxError at the first thing protobuf cannot read."""
    return _Parser(tokenize(text), file).message(None)


# -- layer types ----------------------------------------------------------------------------------

V1_TYPES = {
    "ABSVAL": "AbsVal", "ACCURACY": "Accuracy", "ARGMAX": "ArgMax", "BNLL": "BNLL", "CONCAT": "Concat",
    "CONTRASTIVE_LOSS": "ContrastiveLoss", "CONVOLUTION": "Convolution", "DATA": "Data",
    "DECONVOLUTION": "Deconvolution", "DROPOUT": "Dropout", "DUMMY_DATA": "DummyData",
    "EUCLIDEAN_LOSS": "EuclideanLoss", "ELTWISE": "Eltwise", "EXP": "Exp", "FLATTEN": "Flatten",
    "HDF5_DATA": "HDF5Data", "HDF5_OUTPUT": "HDF5Output", "HINGE_LOSS": "HingeLoss", "IM2COL": "Im2col",
    "IMAGE_DATA": "ImageData", "INFOGAIN_LOSS": "InfogainLoss", "INNER_PRODUCT": "InnerProduct", "LRN": "LRN",
    "MEMORY_DATA": "MemoryData", "MULTINOMIAL_LOGISTIC_LOSS": "MultinomialLogisticLoss", "MVN": "MVN",
    "POOLING": "Pooling", "POWER": "Power", "RELU": "ReLU", "SIGMOID": "Sigmoid",
    "SIGMOID_CROSS_ENTROPY_LOSS": "SigmoidCrossEntropyLoss", "SILENCE": "Silence", "SOFTMAX": "Softmax",
    "SOFTMAX_LOSS": "SoftmaxWithLoss", "SPLIT": "Split", "SLICE": "Slice", "TANH": "TanH",
    "WINDOW_DATA": "WindowData", "THRESHOLD": "Threshold",
}  # fmt: skip
TRAINING_ONLY = {
    "Accuracy": "an evaluation metric",
    "SoftmaxWithLoss": "a training loss",
    "EuclideanLoss": "a training loss",
    "SigmoidCrossEntropyLoss": "a training loss",
    "HingeLoss": "a training loss",
    "InfogainLoss": "a training loss",
    "MultinomialLogisticLoss": "a training loss",
    "ContrastiveLoss": "a training loss",
    "Silence": "a sink for unused blobs",
    "HDF5Output": "a writer of blobs to disk",
}
DATA_TYPES = {"Data", "ImageData", "HDF5Data", "WindowData", "AnnotatedData", "VideoData"}
INPUT_TYPES = DATA_TYPES | {"Input", "MemoryData", "DummyData"}
NOT_SUPPORTED = {
    "PReLU": "archc has no parametric ReLU",
    "AbsVal": "archc has no absolute value layer",
    "BNLL": "archc has no BNLL activation",
    "Power": "archc has no power layer",
    "Exp": "archc has no exponential layer",
    "Log": "archc has no logarithm layer",
    "Threshold": "archc has no threshold layer",
    "Slice": "archc's chunk takes equal parts only",
    "Reshape": "archc's reshape needs the sizes written out",
    "Crop": "archc's crop takes a size, not a reference blob",
    "MVN": "archc has no mean-variance normalisation",
    "ArgMax": "archc has no argmax layer",
    "Im2col": "archc has no im2col layer",
    "Embed": "archc has no embedding layer",
    "LSTM": "archc has no recurrent layers",
    "RNN": "archc has no recurrent layers",
    "Bias": "archc has no bias-only layer",
    "Reduction": "archc has no reduction layer",
    "Tile": "archc has no tile layer",
    "SPP": "archc has no spatial pyramid pooling layer",
}
ACTIVATIONS = {"ReLU", "Sigmoid", "TanH", "ELU", "Swish"}
# Fields of a layer and of each parameter message that change nothing archc computes.
LAYER_FIELDS = {
    "name", "type", "bottom", "top", "phase", "loss_weight", "param", "blobs", "propagate_down", "include",
    "exclude", "transform_param", "loss_param", "blobs_lr", "weight_decay",
}  # fmt: skip
IGNORED = {
    "convolution_param": {"weight_filler", "bias_filler", "engine", "force_nd_im2col"},
    "inner_product_param": {"weight_filler", "bias_filler", "transpose"},
    "pooling_param": {"engine"},
    "relu_param": {"engine"},
    "sigmoid_param": {"engine"},
    "tanh_param": {"engine"},
    "softmax_param": {"engine"},
    "lrn_param": {"engine"},
    "batch_norm_param": {"use_global_stats", "moving_average_fraction"},
    "scale_param": {"filler", "bias_filler", "axis", "num_axes"},
    "eltwise_param": {"stable_prod_grad"},
    "data_param": {"source", "backend", "rand_skip", "prefetch", "mean_file", "scale", "crop_size", "mirror"},
    "image_data_param": {"source", "shuffle", "rand_skip", "root_folder", "mean_file", "scale", "mirror"},
    "hdf5_data_param": {"source", "shuffle"},
    "window_data_param": {"source", "fg_threshold", "bg_threshold", "fg_fraction", "context_pad", "crop_mode",
                          "cache_images", "root_folder", "mean_file", "scale", "mirror"},
}  # fmt: skip
PARAMS = {
    "Convolution": "convolution_param", "Deconvolution": "convolution_param", "Pooling": "pooling_param",
    "InnerProduct": "inner_product_param", "LRN": "lrn_param", "Dropout": "dropout_param",
    "Softmax": "softmax_param", "ReLU": "relu_param", "ELU": "elu_param", "Sigmoid": "sigmoid_param",
    "TanH": "tanh_param", "Swish": "swish_param", "Concat": "concat_param", "Eltwise": "eltwise_param",
    "Flatten": "flatten_param", "Input": "input_param", "BatchNorm": "batch_norm_param", "Scale": "scale_param",
    "Data": "data_param", "ImageData": "image_data_param", "MemoryData": "memory_data_param",
    "DummyData": "dummy_data_param", "HDF5Data": "hdf5_data_param", "WindowData": "window_data_param",
}  # fmt: skip


@dataclass
class Blob:
    layer: str | None  # the archc statement holding it (None: broken, "" : not modelled, such as labels)
    kind: str  # "map" (has spatial dimensions) or "vector"
    read: bool = False  # read since it was last written (an in-place activation cannot then be fused)
    is_input: bool = False


class _LayerError(Exception):
    pass


class _Importer:
    def __init__(self, text: str, file: str, inputs: dict):
        self.text, self.file, self.inputs = text, file, inputs
        self.flat = Flat(file)
        self.blobs: dict[str, Blob] = {}
        self.batch: int | None = None
        self.bn_of: dict[str, str] = {}  # blob -> the bn statement a following Scale folds into
        self.prefix: dict[str, str] = {}  # statement -> the part of its Caffe name before the first `/`

    # -- diagnostics --------------------------------------------------------------------------

    def error(self, code: str, message: str, span: Span | None, help=()) -> _LayerError:
        self.flat.error(code, message, span, help)
        return _LayerError()

    def fail(self):
        self.flat.fail(self.text)

    # -- values -----------------------------------------------------------------------------------

    def scalar(self, f: Field) -> Scalar:
        if not isinstance(f.value, Scalar):
            raise self.error("E0403", f"`{f.key}` must be a value, not a message", f.span)
        return f.value

    def number(self, f: Field, convert):
        """`convert` (common.whole or common.decimal) of the field's value; reported at the value if it cannot."""
        scalar = self.scalar(f)
        text = scalar.text.rstrip("fF") if convert is decimal and scalar.kind == "number" else scalar.text
        try:
            return convert(text)
        except NumberError as err:
            message = f"`{f.key}` must be {err.wanted}, not `{text}`"
            raise self.error(err.code, message, f.value_span, err.help) from None

    def int(self, msg: Message | None, key: str, default, low: int | None = None) -> int:
        f = msg.get(key) if msg is not None else None
        if f is None:
            return default
        value = self.number(f, whole)
        if low is not None and value < low:
            raise self.error("E0403", f"`{key}` must be at least {low}, not {value}", f.value_span)
        return value

    def ints(self, msg: Message | None, key: str, low: int = 0) -> list[int]:
        if msg is None:
            return []
        out = []
        for f in msg.all(key):
            value = self.number(f, whole)
            if value < low:
                raise self.error("E0403", f"`{key}` must be at least {low}, not {value}", f.value_span)
            out.append(value)
        return out

    def float(self, msg: Message | None, key: str, default: float) -> float:
        f = msg.get(key) if msg is not None else None
        return default if f is None else self.number(f, decimal)

    def word(self, msg: Message | None, key: str, default: str) -> str:
        f = msg.get(key) if msg is not None else None
        return default if f is None else str(self.scalar(f).value)

    def bool(self, msg: Message | None, key: str, default: bool) -> bool:
        f = msg.get(key) if msg is not None else None
        if f is None:
            return default
        text = self.scalar(f).text.lower()
        if text not in ("true", "false", "1", "0"):
            raise self.error("E0403", f"`{key}` must be true or false, not `{text}`", f.value_span)
        return text in ("true", "1")

    def span_of(self, msg: Message | None, key: str, default: Span) -> Span:
        f = msg.get(key) if msg is not None else None
        return f.span if f is not None else default

    # -- the network --------------------------------------------------------------------------

    def run(self) -> Imported:
        try:
            net = parse_prototxt(self.text, self.file)
        except _SyntaxError as err:
            tok = err.token
            lines = source_lines(self.text)
            line, col, end = (
                (tok.line, tok.col, tok.end) if tok else (len(lines), len(lines[-1]) + 1, len(lines[-1]) + 2)
            )
            self.flat.error(err.code, err.message, Span(self.file, line, col, line, end), err.help)
            self.fail()
        start = Span(self.file, 1, 1, 1, 2)
        name = ""
        with contextlib.suppress(_LayerError):  # reported (a message where the name goes); read on
            name = self.word(net, "name", "")
        stem = self.file.replace("\\", "/").rsplit("/", 1)[-1].rsplit(".", 1)[0]
        with contextlib.suppress(_LayerError):
            self.top_level_inputs(net)
        layers = net.all("layer") or net.all("layers")
        v1 = not net.all("layer") and bool(net.all("layers"))
        for f in layers:
            if not isinstance(f.value, Message):
                self.error("E0401", f"`{f.key}` must be a message: {f.key} {{ ... }}", f.span)
                continue
            with contextlib.suppress(_LayerError):  # reported; the next layer is checked all the same
                self.layer(f.value, v1)
        for f in net.fields:
            if f.key not in net.used and f.key not in ("state", "force_backward", "debug_info", "input_shape"):
                self.flat.warn("W0401", f"archc ignores the field `{f.key}` of the net", f.span)
        if not self.flat.stmts and not self.flat.has_errors:
            self.error("E0404", f"`{self.file}` defines no input and no layer", start, ["see docs/importers.md"])
        if self.flat.has_errors:
            self.fail()
        self.flat.modules = self.modules()
        self.flat.repeats = False  # Caffe names every layer: a repeat would hide fc6 and fc7 behind fc_1, fc_2
        self.flat.header.insert(0, f'Caffe net "{name}", read as Caffe builds its TEST phase' if name else "")
        self.flat.header = [h for h in self.flat.header if h]
        return self.flat.result(network_name(name or stem), start, self.batch)

    def modules(self) -> list[tuple[str, list[str]]]:
        """Runs of statements whose Caffe names share a prefix (`inception_3a/...`): candidate blocks."""
        runs: list[tuple[str, list[str]]] = []
        for stmt in self.flat.stmts:
            prefix = self.prefix.get(stmt.name)
            if prefix and runs and runs[-1][0] == prefix:
                runs[-1][1].append(stmt.name)
            else:
                runs.append((prefix, [stmt.name]))
        return [(sanitize(p), names) for p, names in runs if p and len(names) > 1]

    def top_level_inputs(self, net: Message) -> None:
        """The old forms: `input: "data"` with `input_dim: ...` (four per input) or `input_shape { dim ... }`."""
        names = net.all("input")
        if not names:
            return
        dims = self.ints(net, "input_dim", 1)
        shapes = [self.ints(f.value, "dim", 1) for f in net.all("input_shape") if isinstance(f.value, Message)]
        for i, f in enumerate(names):
            if shapes:
                shape = shapes[i] if i < len(shapes) else None
            else:
                shape = dims[4 * i : 4 * i + 4] if len(dims) >= 4 * (i + 1) else None
            if shape is None:
                self.error(
                    "E0404",
                    f"input `{self.scalar(f).value}` has no shape",
                    f.span,
                    ["give it four input_dim: lines (batch, channels, height, width) or an input_shape { dim: ... }"],
                )
                continue
            self.add_input(str(self.scalar(f).value), shape, f.span)

    def add_input(self, blob: str, dims: list[int], span: Span, per_sample: bool = False) -> None:
        shape = tuple(dims) if per_sample else tuple(dims[1:])
        if not per_sample and self.batch is None and dims:
            self.batch = dims[0]
        if not shape or len(shape) > 4:
            raise self.error("E0403", f"input `{blob}`: archc reads shapes of 2 to 5 dimensions, batch first", span)
        name = self.flat.add("input", self.flat.unique(blob), [], [(None, shape, span)], span)
        self.blobs[blob] = Blob(name, "vector" if len(shape) == 1 else "map", is_input=True)

    # -- one layer ---------------------------------------------------------------------------------

    def included(self, layer: Message) -> bool:
        """Whether Caffe's TEST phase builds this layer (include/exclude rules; stage and level left at none)."""

        def matches(rule: Message) -> bool:  # Caffe's StateMeetsRule for phase TEST, level 0, no stages
            phase = self.word(rule, "phase", "")
            if (phase and phase != "TEST") or rule.all("stage"):
                return False
            rule.all("not_stage")
            low, high = self.int(rule, "min_level", None), self.int(rule, "max_level", None)
            return (low is None or low <= 0) and (high is None or high >= 0)

        includes = [f.value for f in layer.all("include") if isinstance(f.value, Message)]
        excludes = [f.value for f in layer.all("exclude") if isinstance(f.value, Message)]
        phase = self.word(layer, "phase", "")
        if phase and phase != "TEST":
            return False
        if includes and not any(matches(r) for r in includes):
            return False
        return not any(matches(r) for r in excludes)

    def layer(self, layer: Message, v1: bool) -> None:
        type_field = layer.get("type")
        where = layer.span
        if type_field is None:
            raise self.error("E0404", "a layer without a `type`", where, ['e.g. type: "Convolution"'])
        kind = str(self.scalar(type_field).value)
        if v1:
            kind = V1_TYPES.get(kind, kind)
        caffe_name = self.word(layer, "name", kind)
        if not self.included(layer):
            self.flat.note(f"{caffe_name} ({kind}, line {where.line}): not in Caffe's TEST phase")
            return
        bottoms = [(str(self.scalar(f).value), f) for f in layer.all("bottom")]
        tops = [(str(self.scalar(f).value), f) for f in layer.all("top")]
        if kind in TRAINING_ONLY:
            self.flat.note(f"{caffe_name} ({kind}, line {where.line}): {TRAINING_ONLY[kind]}, not part of the network")
            for top, _f in tops:
                self.blobs[top] = Blob("", "vector")
            return
        handler = getattr(self, "l_" + kind, None)
        if handler is None:
            why = NOT_SUPPORTED.get(kind)
            known = sorted({*(n[2:] for n in dir(self) if n.startswith("l_")), *DATA_TYPES})
            raise self.error(
                "E0402",
                f"layer type `{kind}` is not supported" + (f": {why}" if why else ""),
                type_field.value_span,
                ([] if why else suggest(kind, known)) + [f"archc reads: {', '.join(known)}"],
            )
        try:
            self.build(layer, kind, caffe_name, type_field, bottoms, tops, handler)
        except _LayerError:
            for top, _f in tops:  # what reads them stays quiet: the cause is reported
                self.blobs[top] = Blob(BROKEN, "map")
            raise

    def build(self, layer, kind, caffe_name, type_field, bottoms, tops, handler) -> None:
        span = type_field.span
        sources: list[Blob] = []
        for blob, f in bottoms:
            found = self.blobs.get(blob)
            if found is None:
                raise self.error(
                    "E0406",
                    f"layer `{caffe_name}` reads `{blob}`, which no layer above it produces",
                    f.value_span,
                    suggest(blob, self.blobs) or ["a bottom names the top of a layer defined above"],
                )
            if found.layer == "":
                raise self.error(
                    "E0405", f"layer `{caffe_name}` reads `{blob}`, a label or loss blob archc does not model", f.span
                )
            sources.append(found)
        params = layer.get(PARAMS.get(kind, kind.lower() + "_param"))
        params_msg = params.value if params is not None and isinstance(params.value, Message) else None
        ctx = _Layer(caffe_name, kind, span, sources, [b for b, _ in bottoms], [t for t, _ in tops], params_msg)
        if len(tops) > 1 and kind not in INPUT_TYPES and kind != "Split":
            raise self.error(
                "E0405", f"`{caffe_name}` has {len(tops)} tops: archc's layers have one output", tops[1][1].span
            )
        count = len(self.flat.stmts)
        if any(s.layer is BROKEN for s in sources):
            for top in ctx.tops:
                self.blobs[top] = Blob(BROKEN, "map")
            return
        out = handler(ctx)
        if "/" in caffe_name:
            for stmt in self.flat.stmts[count:]:
                self.prefix[stmt.name] = caffe_name.split("/", 1)[0]
        for s in sources:
            s.read = True
        if kind not in INPUT_TYPES and kind != "Split":
            for top in ctx.tops:
                self.blobs[top] = Blob(out, ctx.rank)
        for f in layer.fields:
            if f.key not in layer.used and f.key not in LAYER_FIELDS and not f.key.endswith("_param"):
                self.flat.warn("W0401", f"archc ignores the field `{f.key}` of layer `{caffe_name}`", f.span)
        if params_msg is not None:
            ignored = IGNORED.get(params.key, set())
            for f in params_msg.fields:
                if f.key not in params_msg.used and f.key not in ignored:
                    self.flat.warn(
                        "W0401",
                        f"archc ignores `{f.key}` in {params.key} of layer `{caffe_name}`",
                        f.span,
                        suggest(f.key, params_msg.used),
                    )

    # -- helpers for handlers ----------------------------------------------------------------------

    def one(self, ctx: _Layer) -> Blob:
        if len(ctx.sources) != 1:
            raise self.error(
                "E0406", f"`{ctx.name}` ({ctx.type}) reads one blob, but has {len(ctx.sources)} bottoms", ctx.span
            )
        return ctx.sources[0]

    def name(self, ctx: _Layer) -> str:
        return self.flat.unique(ctx.name)

    def per_dim(self, msg: Message | None, key: str, hkey: str, wkey: str, default: int, low: int):
        """kernel_size / stride / pad: repeated values, one for all dimensions, or the _h and _w fields."""
        values = self.ints(msg, key, low)
        h = self.int(msg, hkey, None, low)
        w = self.int(msg, wkey, None, low)
        if h is not None or w is not None:
            if values:
                raise self.error("E0403", f"give either `{key}` or `{hkey}` and `{wkey}`, not both", msg.span)
            if h is None or w is None:
                raise self.error("E0404", f"`{hkey}` and `{wkey}` go together", msg.span)
            return (h, w)
        if not values:
            return default
        return values[0] if len(values) == 1 else tuple(values)

    # -- layers: inputs ---------------------------------------------------------------------------------

    def l_Input(self, ctx: _Layer):  # noqa: N802 - Caffe's type names
        shapes = [f.value for f in ctx.params.all("shape")] if ctx.params else []
        if not shapes:
            raise self.error(
                "E0404", f"Input layer `{ctx.name}` has no shape", ctx.span, ["input_param { shape { dim: ... } }"]
            )
        for i, (top, f) in enumerate(zip(ctx.tops, ctx.params.all("shape"))):
            self.add_input(top, self.ints(shapes[min(i, len(shapes) - 1)], "dim", 1), f.span)
        for top in ctx.tops[len(shapes) :]:
            self.add_input(top, self.ints(shapes[-1], "dim", 1), ctx.span)
        return None

    def _data(self, ctx: _Layer, shape: tuple[int, ...] | None, batch: int | None):
        if not ctx.tops:
            raise self.error("E0404", f"data layer `{ctx.name}` has no top", ctx.span)
        top = ctx.tops[0]
        given = self.inputs.get(sanitize(top)) or self.inputs.get(top)
        if given is not None:
            shape = tuple(given) if not isinstance(given, int) else (given,)
        if shape is None:
            raise self.error(
                "E0404",
                f"the shape of `{top}` comes from the data layer's database, which archc does not read",
                ctx.span,
                [f"give it: --input {sanitize(top)}=CxHxW (for MNIST, {sanitize(top)}=1x28x28)"],
            )
        if self.batch is None and batch:
            self.batch = batch
        self.add_input(top, list(shape), ctx.span, per_sample=True)
        for label in ctx.tops[1:]:
            self.blobs[label] = Blob("", "vector")
        return None

    def l_Data(self, ctx: _Layer):  # noqa: N802
        return self._data(ctx, None, self.int(ctx.params, "batch_size", None))

    def l_HDF5Data(self, ctx: _Layer):  # noqa: N802
        return self._data(ctx, None, self.int(ctx.params, "batch_size", None))

    def l_WindowData(self, ctx: _Layer):  # noqa: N802
        return self._data(ctx, None, self.int(ctx.params, "batch_size", None))

    def l_AnnotatedData(self, ctx: _Layer):  # noqa: N802 - SSD's data layer
        return self._data(ctx, None, None)

    def l_VideoData(self, ctx: _Layer):  # noqa: N802
        return self._data(ctx, None, None)

    def l_ImageData(self, ctx: _Layer):  # noqa: N802
        p = ctx.params
        height, width = self.int(p, "new_height", 0), self.int(p, "new_width", 0)
        channels = 3 if self.bool(p, "is_color", True) else 1
        shape = (channels, height, width) if height and width else None
        return self._data(ctx, shape, self.int(p, "batch_size", None))

    def l_MemoryData(self, ctx: _Layer):  # noqa: N802
        p = ctx.params
        shape = (self.int(p, "channels", 1, 1), self.int(p, "height", 1, 1), self.int(p, "width", 1, 1))
        return self._data(ctx, shape, self.int(p, "batch_size", None))

    def l_DummyData(self, ctx: _Layer):  # noqa: N802
        shapes = [f.value for f in ctx.params.all("shape")] if ctx.params else []
        if not shapes:
            raise self.error("E0404", f"DummyData `{ctx.name}` has no shape", ctx.span)
        dims = self.ints(shapes[0], "dim", 1)
        return self._data(ctx, tuple(dims[1:]), dims[0] if dims else None)

    # -- layers: compute ---------------------------------------------------------------------------

    def _conv(self, ctx: _Layer, op: str):
        src = self.one(ctx)
        p = ctx.params
        if p is None or p.get("num_output") is None:
            raise self.error(
                "E0404", f"`{ctx.name}` needs convolution_param {{ num_output: ... }}", ctx.span, _near(p, "num_output")
            )
        if self.int(p, "axis", 1) != 1:
            raise self.error(
                "E0405", f"`{ctx.name}`: a convolution over another axis than 1 is not supported", ctx.span
            )
        filters = self.int(p, "num_output", 1, 1)
        kernel = self.per_dim(p, "kernel_size", "kernel_h", "kernel_w", None, 1)
        if kernel is None:
            raise self.error("E0404", f"`{ctx.name}` needs a kernel_size", p.span, _near(p, "kernel_size"))
        stride = self.per_dim(p, "stride", "stride_h", "stride_w", 1, 1)
        pad = self.per_dim(p, "pad", "pad_h", "pad_w", 0, 0)
        dilation = self.ints(p, "dilation", 1)
        groups = self.int(p, "group", 1, 1)
        bias = self.bool(p, "bias_term", True)
        at = lambda key: self.span_of(p, key, ctx.span)  # noqa: E731
        args = [(None, filters, at("num_output")), (None, kernel, at("kernel_size"))]
        if stride != 1:
            args.append(("stride", stride, at("stride")))
        if pad != 0:
            args.append(("pad", pad, at("pad")))
        if dilation and dilation != [1]:
            args.append(("dilation", dilation[0] if len(dilation) == 1 else tuple(dilation), at("dilation")))
        if groups > 1:
            args.append(("groups", groups, at("group")))
        if not bias:
            args.append(("bias", False, at("bias_term")))
        ctx.rank = "map"
        return self.flat.add(op, self.name(ctx), [src.layer], args, ctx.span)

    def l_Convolution(self, ctx: _Layer):  # noqa: N802
        return self._conv(ctx, "conv")

    def l_Deconvolution(self, ctx: _Layer):  # noqa: N802
        return self._conv(ctx, "deconv")

    def l_Pooling(self, ctx: _Layer):  # noqa: N802
        src = self.one(ctx)
        p = ctx.params
        pool = self.word(p, "pool", "MAX")
        if pool not in ("MAX", "AVE", "0", "1"):
            raise self.error(
                "E0405",
                f"pooling `{pool}` is not supported: archc pools with MAX and AVE",
                self.span_of(p, "pool", ctx.span),
            )
        op = "maxpool" if pool in ("MAX", "0") else "avgpool"
        ctx.rank = "map"
        if self.bool(p, "global_pooling", False):
            return self.flat.add("global" + op, self.name(ctx), [src.layer], [], ctx.span)
        kernel = self.per_dim(p, "kernel_size", "kernel_h", "kernel_w", None, 1)
        if kernel is None:
            raise self.error(
                "E0404",
                f"`{ctx.name}` needs a kernel_size (or global_pooling: true)",
                ctx.span,
                _near(p, "kernel_size"),
            )
        stride = self.per_dim(p, "stride", "stride_h", "stride_w", 1, 1)
        pad = self.per_dim(p, "pad", "pad_h", "pad_w", 0, 0)
        ceil = self.word(p, "round_mode", "CEIL") in ("CEIL", "0")
        at = lambda key: self.span_of(p, key, ctx.span)  # noqa: E731
        args = [(None, kernel, at("kernel_size"))]
        if stride != kernel:
            args.append(("stride", stride, at("stride")))
        if pad != 0:
            args.append(("pad", pad, at("pad")))
        if ceil:
            args.append(("ceil", True, at("round_mode")))
        return self.flat.add(op, self.name(ctx), [src.layer], args, ctx.span)

    def l_InnerProduct(self, ctx: _Layer):  # noqa: N802
        src = self.one(ctx)
        p = ctx.params
        if p is None or p.get("num_output") is None:
            raise self.error(
                "E0404",
                f"`{ctx.name}` needs inner_product_param {{ num_output: ... }}",
                ctx.span,
                _near(p, "num_output"),
            )
        if self.int(p, "axis", 1) != 1:
            raise self.error(
                "E0405", f"`{ctx.name}`: an InnerProduct over another axis than 1 is not supported", ctx.span
            )
        units = self.int(p, "num_output", 1, 1)
        args = [(None, units, self.span_of(p, "num_output", ctx.span))]
        if not self.bool(p, "bias_term", True):
            args.append(("bias", False, self.span_of(p, "bias_term", ctx.span)))
        source, unit = src.layer, True
        if src.kind != "vector":  # InnerProduct flattens what it reads; archc says so with a flatten
            source = self.flat.add("flatten", self.flat.unique(f"{sanitize(ctx.name)}_flatten"), [source], [], ctx.span)
            unit = False
        ctx.rank = "vector"
        out = self.flat.add("dense", self.name(ctx), [source], args, ctx.span, unit=unit)
        if not unit and out is not BROKEN:
            self.flat.name_unit(out)
        return out

    def l_LRN(self, ctx: _Layer):  # noqa: N802
        src = self.one(ctx)
        p = ctx.params
        region = self.word(p, "norm_region", "ACROSS_CHANNELS")
        if region not in ("ACROSS_CHANNELS", "0"):
            raise self.error(
                "E0405",
                "LRN within a channel is not supported: archc normalises across channels",
                self.span_of(p, "norm_region", ctx.span),
            )
        size = self.int(p, "local_size", 5, 1)
        at = lambda key: self.span_of(p, key, ctx.span)  # noqa: E731
        args = [
            (None, size, at("local_size")),
            ("alpha", self.float(p, "alpha", 1.0), at("alpha")),
            ("beta", self.float(p, "beta", 0.75), at("beta")),
        ]
        k = self.float(p, "k", 1.0)
        if k != 1.0:
            args.append(("k", k, at("k")))
        ctx.rank = src.kind
        return self.flat.add("lrn", self.name(ctx), [src.layer], args, ctx.span)

    def l_BatchNorm(self, ctx: _Layer):  # noqa: N802
        src = self.one(ctx)
        eps = self.float(ctx.params, "eps", 1e-5)
        args = [("eps", eps, self.span_of(ctx.params, "eps", ctx.span))] if eps != 1e-5 else []
        ctx.rank = src.kind
        out = self.flat.add("bn", self.name(ctx), [src.layer], args, ctx.span)
        if ctx.tops:
            self.bn_of[ctx.tops[0]] = out
        self.flat.after[out] = "Caffe's BatchNorm holds no scale and shift; archc's bn (PyTorch's) has them"
        return out

    def l_Scale(self, ctx: _Layer):  # noqa: N802
        src = self.one(ctx)
        bn = self.bn_of.get(ctx.bottoms[0])
        if bn is None or src.layer != bn or not self.bool(ctx.params, "bias_term", False):
            raise self.error(
                "E0405",
                f"Scale `{ctx.name}` is supported only right after a BatchNorm, with bias_term: true",
                ctx.span,
                ["BatchNorm + Scale is archc's bn: a normalisation with a learned scale and shift"],
            )
        self.flat.after[bn] = f"with Scale `{ctx.name}`: Caffe's BatchNorm + Scale"
        ctx.rank = src.kind
        return bn

    def l_Dropout(self, ctx: _Layer):  # noqa: N802
        src = self.one(ctx)
        p = self.float(ctx.params, "dropout_ratio", 0.5)
        if not 0 <= p < 1:
            raise self.error(
                "E0403",
                f"dropout_ratio must be in [0, 1), not {p}",
                self.span_of(ctx.params, "dropout_ratio", ctx.span),
            )
        ctx.rank = src.kind
        args = [(None, p, self.span_of(ctx.params, "dropout_ratio", ctx.span))] if p != 0.5 else []
        return self.flat.add("dropout", self.name(ctx), [src.layer], args, ctx.span)

    def l_Softmax(self, ctx: _Layer):  # noqa: N802
        src = self.one(ctx)
        if self.int(ctx.params, "axis", 1) != 1:
            raise self.error("E0405", "a softmax over another axis than 1 is not supported", ctx.span)
        ctx.rank = src.kind
        return self.flat.add("softmax", self.name(ctx), [src.layer], [], ctx.span)

    def _activation(self, ctx: _Layer, op: str, values: list):
        """In place on a layer's fresh output: its `-> op`; otherwise a layer of its own."""
        src = self.one(ctx)
        ctx.rank = src.kind
        in_place = bool(ctx.tops) and ctx.tops[0] == ctx.bottoms[0]
        producer = src.layer
        fusable = (
            in_place
            and not src.is_input
            and not src.read  # no layer read the value before the activation overwrites it
            and self.flat.activation_of(producer) is None
            and self.flat.op_of(producer) not in ("flatten", "dropout")
        )
        if fusable:
            self.flat.set_activation(producer, (op, values, ctx.span))
            old = self.flat.after.get(producer)
            text = f"{ctx.name} ({ctx.type}) in place"
            self.flat.after[producer] = f"{old}; {text}" if old else text
            return producer
        args = [(None, v, ctx.span) for v in values]
        return self.flat.add(op, self.name(ctx), [producer], args, ctx.span)

    def l_ReLU(self, ctx: _Layer):  # noqa: N802
        slope = self.float(ctx.params, "negative_slope", 0.0)
        return self._activation(ctx, "leaky_relu" if slope else "relu", [slope] if slope else [])

    def l_Sigmoid(self, ctx: _Layer):  # noqa: N802
        return self._activation(ctx, "sigmoid", [])

    def l_TanH(self, ctx: _Layer):  # noqa: N802
        return self._activation(ctx, "tanh", [])

    def l_ELU(self, ctx: _Layer):  # noqa: N802
        alpha = self.float(ctx.params, "alpha", 1.0)
        return self._activation(ctx, "elu", [alpha] if alpha != 1.0 else [])

    def l_Swish(self, ctx: _Layer):  # noqa: N802
        if self.float(ctx.params, "beta", 1.0) != 1.0:
            raise self.error(
                "E0405", "Swish with beta other than 1 is not supported (archc's silu is beta 1)", ctx.span
            )
        return self._activation(ctx, "silu", [])

    # -- layers: joining and shaping -----------------------------------------------------------------

    def l_Concat(self, ctx: _Layer):  # noqa: N802
        p = ctx.params
        axis = self.int(p, "axis", self.int(p, "concat_dim", 1))
        if axis != 1:
            raise self.error(
                "E0405", f"concatenation along axis {axis} is not supported: archc joins channels", ctx.span
            )
        ctx.rank = ctx.sources[0].kind if ctx.sources else "map"
        op = "concat" if len(ctx.sources) > 1 else "identity"
        return self.flat.add(op, self.name(ctx), [s.layer for s in ctx.sources], [], ctx.span)

    def l_Eltwise(self, ctx: _Layer):  # noqa: N802
        p = ctx.params
        operation = self.word(p, "operation", "SUM")
        if operation not in ("SUM", "1"):
            raise self.error(
                "E0405",
                f"Eltwise {operation} is not supported: archc adds (SUM) only",
                self.span_of(p, "operation", ctx.span),
            )
        coeffs = [self.float(Message([f]), f.key, 1.0) for f in (p.all("coeff") if p else [])]
        if any(c != 1.0 for c in coeffs):
            raise self.error(
                "E0405",
                "Eltwise SUM with coefficients other than 1 is not supported",
                self.span_of(p, "coeff", ctx.span),
            )
        ctx.rank = ctx.sources[0].kind if ctx.sources else "map"
        return self.flat.add("add", self.name(ctx), [s.layer for s in ctx.sources], [], ctx.span)

    def l_Flatten(self, ctx: _Layer):  # noqa: N802
        src = self.one(ctx)
        if self.int(ctx.params, "axis", 1) != 1 or self.int(ctx.params, "end_axis", -1) != -1:
            raise self.error(
                "E0405", "a Flatten of some axes only is not supported: archc flattens all but the batch", ctx.span
            )
        ctx.rank = "vector"
        return self.flat.add("flatten", self.name(ctx), [src.layer], [], ctx.span)

    def l_Split(self, ctx: _Layer):  # noqa: N802
        src = self.one(ctx)
        for top in ctx.tops:
            self.blobs[top] = Blob(src.layer, src.kind, is_input=src.is_input)
        return src.layer


@dataclass
class _Layer:
    name: str
    type: str  # the Caffe type
    span: Span
    sources: list[Blob]
    bottoms: list[str]
    tops: list[str]
    params: Message | None
    rank: str = "map"  # of the output: "map" (spatial dimensions) or "vector"; set by the handler


def import_caffe(text: str, file: str, inputs: dict | None = None) -> Imported:
    """The `.prototxt` text as a flat archc network; raises ArchError with every problem found.

    `inputs` gives shapes (per sample) by input name for data layers whose shape is in their database.
    """
    return _Importer(text, file, inputs or {}).run()


def _near(msg: Message | None, key: str) -> list[str]:
    """`did you mean ...?` when the message holds a field spelt almost like the missing `key`."""
    if msg is None:
        return []
    close = [f.key for f in msg.fields if suggest(f.key, [key])]
    return [f"`{close[0]}` is not a field Caffe knows: did you mean `{key}`?"] if close else []
