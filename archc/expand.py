"""Syntax tree -> Graph: imports, block expansion, repeats, names and arguments.

Everything that can be decided without shapes is decided here: which layer
types and blocks exist, what every argument evaluates to, which layer feeds
which. Shapes come later, in the passes.
"""

from __future__ import annotations

import difflib
import errno
import math
import os
import re
import stat
from dataclasses import dataclass, field, replace
from pathlib import Path

from . import ast
from .codegen.init import DEFAULT_SCHEME, SCHEMES
from .diagnostics import ArchError, Fix, Reporter, Span, source_lines
from .graph import Graph, Instance, Node
from .ops import OPS
from .ops.base import REQUIRED, P, PadPair, ShapeError, fmt_shape
from .passes.shapes import shape_of
from .syntax import parse

MAX_NODES = 200_000
# Expansion visits statements and runs repeat iterations (and the block calls among the statements)
# whether or not they add layers, so it is bounded by its own count of those steps as well: five a
# layer at the layer limit, and an empty `repeat 200000 { repeat 200000 { } }` stops at once.
MAX_STEPS = 1_000_000
# The names of the layers, prefixes and repeat numbers included, are copies: a 100 KB name in a
# repeat of 100,000 is 10 GB. 32 MiB is 160 bytes a layer at the layer limit.
MAX_NAME_BYTES = 2**25
MAX_DEPTH = 64
BLOCK_INPUT = "in"
# The sizes `in.channels`, `x.width` name, by the rank of the shape (C x L, C x H x W, C x D x H x W)
SIZE_NAMES = {
    1: ("channels",),
    2: ("channels", "length"),
    3: ("channels", "height", "width"),
    4: ("channels", "depth", "height", "width"),
}
ALL_SIZE_NAMES = frozenset(name for names in SIZE_NAMES.values() for name in names)


def size_axes(shape) -> dict[str, int]:
    """The sizes a shape has, by name, and their axes: by rank while the channels are first; with
    the channels elsewhere (after a `permute`), only they, at their axis: a permute may have put
    the other axes in any order. A sequence (length x features) has both: `length`, its tokens."""
    if getattr(shape, "is_sequence", False):
        return {"length": 0, "channels": 1}
    if shape.channels == 0:
        return {name: axis for axis, name in enumerate(SIZE_NAMES.get(len(shape), ("channels",)))}
    return {"channels": shape.channels}


class _Broken:
    """Stands for the output of a statement that already has an error, so its
    consumers stay quiet instead of piling up follow-on errors."""

    def __repr__(self) -> str:
        return "<broken>"


BROKEN = _Broken()
OUTPUT = "output"  # the statement that declares the network's outputs; not a layer
# The settings a network takes after its name, checked as a layer's arguments are.
NETWORK_PARAMS = (
    P("init", "choice", DEFAULT_SCHEME, choices=tuple(SCHEMES), doc="how build_model() starts the weights"),
)


class EvalError(Exception):
    """An expression that cannot be evaluated; `reported` when its cause is reported elsewhere."""

    def __init__(self, message: str, span: Span, help=(), code: str = "E0212", fixes=(), reported: bool = False):
        super().__init__(message)
        self.message, self.span, self.help, self.code, self.fixes = message, span, list(help), code, list(fixes)
        self.reported = reported


class _TooBigError(Exception):
    """The network is beyond a limit of expansion: reported as E0213 where it was found."""

    def __init__(self, message: str, span: Span | None, help: str):
        super().__init__(message)
        self.span, self.help = span, help


# -- "did you mean": spelling, and what other tools call archc's layers ---------------------------

# The names PyTorch, Keras, Caffe and Darknet give to archc's layer types, keyed as `_key` writes
# them (lower case, no `_` or `-`, no trailing 1d/2d/3d); names that only differ from archc's in
# those ways (`Conv2d`, `MaxPool2d`, `LeakyReLU`) need no entry.
LAYER_SYNONYMS = {
    "batchnorm": "bn",
    "batchnormalization": "bn",
    "batchnormalisation": "bn",
    "linear": "dense",
    "fc": "dense",
    "fullyconnected": "dense",
    "innerproduct": "dense",
    "connected": "dense",
    "convolution": "conv",
    "convolutional": "conv",
    "convtranspose": "deconv",
    "conv2dtranspose": "deconv",
    "deconvolution": "deconv",
    "transposedconv": "deconv",
    "depthwiseconv": "dwconv",
    "maxpooling": "maxpool",
    "averagepooling": "avgpool",
    "avgpooling": "avgpool",
    "globalaveragepooling": "globalavgpool",
    "globalaveragepool": "globalavgpool",
    "globalmaxpooling": "globalmaxpool",
    "adaptiveaveragepool": "adaptiveavgpool",
    "concatenate": "concat",
    "cat": "concat",
    "eltwise": "add",
    "sum": "add",
    "zeropadding": "zeropad",
    "upsampling": "upsample",
    "interpolate": "upsample",
    "swish": "silu",
    "leaky": "leaky_relu",
    "lrelu": "leaky_relu",
    "view": "reshape",
    "reorg": "space_to_depth",
    "spacetodepth": "space_to_depth",
    "pixelunshuffle": "space_to_depth",
    "cropping": "crop",
    "split": "chunk",
    "multiply": "mul",
    "subtract": "sub",
    "divide": "div",
    "channelshuffle": "shuffle",
    "stochasticdepth": "drop_path",
    "transpose": "permute",
    "layernormalization": "layernorm",
    "groupnormalization": "groupnorm",
    "instancenormalization": "instancenorm",
    "multiheadattention": "attention",
    "selfattention": "attention",
    "scaleddotproductattention": "sdpa",
}

# Layers users try that archc does not have: what they are, so the help can say that archc has no
# such layer instead of proposing one that merely looks alike (`rnn` is not `relu`).
UNSUPPORTED_LAYERS = {
    "rnn": "an Elman recurrent layer (archc has `lstm` and `gru`)",
    "transformer": "a transformer layer",
    "transformerencoderlayer": "a transformer layer",
    "rmsnorm": "RMS normalisation",
    "matmul": "a matrix product",
    "prelu": "a parametric ReLU",
    "pixelshuffle": "depth to space (pixel shuffle)",
    "depthtospace": "depth to space (pixel shuffle)",
    "yolo": "a detection head (YOLO)",
    "region": "a detection head (YOLO region)",
    "detectionoutput": "a detection head",
    "roipooling": "region-of-interest pooling",
}

MAX_SUGGESTED_LENGTH = 200  # longer than any name a person types; difflib is quadratic in it


def _key(word: str) -> str:
    key = word.lower().replace("_", "").replace("-", "")
    return key[:-2] if key[-2:] in ("1d", "2d", "3d") and len(key) > 2 else key


def closest(word: str, candidates, meanings: bool = False) -> tuple[str | None, list[str]]:
    """The candidate to write instead of `word`, if any, and the help lines that say so.

    A candidate that differs only in case, `_`, `-` or a trailing 2d comes first; with
    `meanings` (the candidates are layer types), what other tools call a layer type, and
    the layers archc does not have, come next; then the closest spelling.
    """
    if len(word) > MAX_SUGGESTED_LENGTH:
        return None, []
    names = sorted({c for c in candidates if len(c) <= MAX_SUGGESTED_LENGTH})
    keyed = {_key(c): c for c in names}
    key = _key(word)
    if meanings:
        if LAYER_SYNONYMS.get(key) in names:
            target = LAYER_SYNONYMS[key]
            return target, [f"did you mean `{target}`? it is archc's name for `{word}`"]
        if key in UNSUPPORTED_LAYERS and key not in keyed:
            what = UNSUPPORTED_LAYERS[key]
            return None, [f"archc has no `{word}` layer: {what} is not supported yet (docs/language.md, section 8)"]
    if key in keyed and keyed[key] != word:
        return keyed[key], [f"did you mean `{keyed[key]}`?"]
    cutoff = 0.5 if len(word) <= 4 else 0.6  # one wrong letter in a short name is a big share of it
    match = difflib.get_close_matches(word, names, n=1, cutoff=cutoff)
    return (match[0], [f"did you mean `{match[0]}`?"]) if match else (None, [])


def suggest(word: str, candidates) -> list[str]:
    """The help lines of `closest`: "did you mean `maxpool`?", or nothing."""
    return closest(word, candidates)[1]


def _did_you_mean(word: str, candidates, span: Span, meanings: bool = False) -> tuple[list[str], list[Fix]]:
    """`closest`'s help, with the edit it proposes: `span` (where `word` is written) replaced."""
    target, help_ = closest(word, candidates, meanings)
    return help_, ([Fix(span, target)] if target is not None else [])


# -- evaluation of argument values -------------------------------------------------


def evaluate(value: ast.Value, env: dict, shape=None):
    """The value of `value` with the block parameters `env`; `shape(e)` gives the size an
    `ast.ShapeOf` asks for (the expander's `_size`), where sizes can be known."""
    if len(value.parts) == 1:
        return _expr(value.parts[0], env, top=True, shape=shape)
    items: list = []
    for part in value.parts:
        v = _expr(part, env, top=True, shape=shape)
        if isinstance(v, PadPair) or (isinstance(v, int) and not isinstance(v, bool)):
            items.append(v)
        elif isinstance(v, tuple):
            items.extend(v)
        else:
            raise EvalError(
                f"a shape is made of whole numbers, not {_describe(v)}",
                part.span,
                ["write shapes like 3x3, k x k or (0,1)x(0,1)"],
                code="E0205",
            )
    return tuple(items)


def _describe(v) -> str:
    if isinstance(v, bool):
        return f"`{str(v).lower()}`"
    if isinstance(v, str):
        return f"the word `{v}`"
    return f"`{v}`"


def _expr(e, env: dict, top: bool = False, shape=None):
    if isinstance(e, ast.Num):
        return e.value
    if isinstance(e, ast.Dims):
        return e.values
    if isinstance(e, ast.Name):
        if e.id in env:
            return env[e.id]
        if e.id in ("true", "false"):
            return e.id == "true"
        if top:
            return e.id  # a bare word: `same`, `ceil`, `depthwise`
        help_, fixes = _did_you_mean(e.id, env, e.span)
        raise EvalError(
            f"unknown name `{e.id}` in an expression",
            e.span,
            help_ or ["only block parameters can be used in arithmetic"],
            fixes=fixes,
        )
    if isinstance(e, ast.Pair):
        return PadPair((_int(e.first, env, shape), _int(e.second, env, shape)))
    if isinstance(e, ast.BinOp | ast.Not):
        return _arithmetic(e, env, shape)
    if isinstance(e, ast.ShapeOf):
        if shape is None:
            raise EvalError(f"the size `{e.ref.text}.{e.prop}` is not known here", e.span)
        return shape(e)
    raise AssertionError(f"unknown expression {e!r}")  # pragma: no cover


def _arithmetic(e: ast.BinOp | ast.Not, env: dict, shape=None):
    """Evaluate an operator tree with a stack of its own, not Python's: `1 + 1 + ... + 1` nests as
    deep as it is long, and 1,000 terms overflowed Python's stack. Left before right, as before;
    every operand is evaluated (no short cut), so an unknown name is an error whatever the values."""
    todo: list = [(e, False)]
    values: list = []
    while todo:
        node, ready = todo.pop()
        if isinstance(node, ast.Not):
            if ready:
                values.append(not _truth(node, node.operand, values.pop()))
            else:
                todo += [(node, True), (node.operand, False)]
        elif not isinstance(node, ast.BinOp):
            values.append(_expr(node, env, shape=shape))
        elif not ready:
            todo += [(node, True), (node.right, False), (node.left, False)]
        else:
            right = values.pop()
            values.append(_operate(node, values.pop(), right))
    return values[0]


_COMPARISONS = {
    "==": lambda a, b: a == b,
    "!=": lambda a, b: a != b,
    "<": lambda a, b: a < b,
    "<=": lambda a, b: a <= b,
    ">": lambda a, b: a > b,
    ">=": lambda a, b: a >= b,
}


def _truth(e, operand, v) -> bool:
    """`v`, the value of `operand` of the `and`, `or` or `not` `e`, which must be true or false."""
    if not isinstance(v, bool):
        word = e.op if isinstance(e, ast.BinOp) else "not"
        raise EvalError(
            f"`{word}` needs true or false, not {_describe(v)}",
            operand.span,
            ["compare it: `stride > 1`, `in.channels != out`"],
            code="E0205",
        )
    return v


def _operate(e: ast.BinOp, left, right):
    if e.op in ("and", "or"):
        left, right = _truth(e, e.left, left), _truth(e, e.right, right)
        return (left and right) if e.op == "and" else (left or right)
    if e.op in ("==", "!=") and isinstance(left, bool) and isinstance(right, bool):
        return _COMPARISONS[e.op](left, right)
    for operand, v in ((e.left, left), (e.right, right)):
        if isinstance(v, bool) or not isinstance(v, int | float):
            what = "arithmetic needs" if e.op not in _COMPARISONS else f"`{e.op}` compares"
            raise EvalError(f"{what} numbers, not {_describe(v)}", operand.span)
    if e.op in _COMPARISONS:
        return _COMPARISONS[e.op](left, right)
    if e.op in ("//", "%"):
        if not (isinstance(left, int) and isinstance(right, int)):
            raise EvalError(f"`{e.op}` needs whole numbers", e.span)
        if right == 0:
            raise EvalError("division by zero", e.span)
        return left // right if e.op == "//" else left % right
    try:
        result = {"+": lambda: left + right, "-": lambda: left - right, "*": lambda: left * right}[e.op]()
    except OverflowError:  # a whole number beyond a float's range, with a decimal: 10**400 * 0.5
        raise EvalError("number too large", e.span, ["sizes must fit in 62 bits"], code="E0213") from None
    if isinstance(result, int) and abs(result) > 2**62:
        raise EvalError("number too large", e.span, ["sizes must fit in 62 bits"], code="E0213")
    return result


def _number(e, env, shape=None):
    v = _expr(e, env, shape=shape)
    if isinstance(v, bool) or not isinstance(v, int | float):
        raise EvalError(f"arithmetic needs numbers, not {_describe(v)}", e.span)
    return v


def _int(e, env, shape=None):
    v = _number(e, env, shape)
    if not isinstance(v, int):
        raise EvalError(f"expected a whole number, not {v}", e.span, code="E0205")
    return v


# -- checking values against a layer's schema -----------------------------------------


class LayerName(str):
    """The full name of a layer an argument names (`tied=wte`), told apart from a word."""


def _is_int(v) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def check_kind(p, v):
    """Return the value converted to the parameter's kind, or None if it does not fit."""
    if isinstance(v, str) and v in p.choices:
        return v
    kind = p.kind
    if kind == "int":
        return v if _is_int(v) else None
    if kind == "float":
        if isinstance(v, bool) or not isinstance(v, int | float):
            return None
        try:
            return float(v)
        except OverflowError:  # a whole number beyond a float's range is infinite, as 1e400 is
            return math.inf if v > 0 else -math.inf
    if kind == "bool":
        return v if isinstance(v, bool) else None
    if kind == "shape":
        if _is_int(v) or (isinstance(v, tuple) and not isinstance(v, PadPair) and all(_is_int(x) for x in v)):
            return v
        return None
    if kind == "padding":
        if v in ("same", "valid", "full") or _is_int(v) or isinstance(v, PadPair):
            return v
        if isinstance(v, tuple) and all(_is_int(x) or isinstance(x, PadPair) for x in v):
            return v
        return None
    if kind == "choice":
        return v if v in p.choices else None
    if kind == "layer":  # the expander resolved the reference to the layer's full name (`_layer_args`)
        return v if isinstance(v, LayerName) else None
    return v  # "any"


_KIND_WORDS = {
    "int": "a whole number",
    "float": "a number",
    "bool": "true or false",
    "shape": "a size such as 3 or 3x3",
    "padding": "a padding: a number, 1x2, (0,1)x(0,1), same, valid or full",
    "layer": "the name of a layer defined above",
}


_KIND_CHOICES = {"bool": ("true", "false"), "padding": ("same", "valid", "full")}  # words a kind accepts


def kind_text(p) -> str:
    text = _KIND_WORDS.get(p.kind, "one of " + ", ".join(p.choices))
    if p.choices and p.kind != "choice":
        text += " or " + " or ".join(f"`{c}`" for c in p.choices)
    return text


# -- scopes -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Claim:
    """Where a name of a body was first taken, and how: as written, numbered by a repeat, or generated."""

    span: Span
    written: str | None  # the name as written; None for a generated name
    suffix: str = ""  # the repeat numbering appended to it: "_2", "_1_2"


@dataclass
class Scope:
    prefix: str  # "" at network level, "b1." inside block instance b1
    env: dict  # block parameters
    reserved: set[str]  # explicit names of this body, never generated
    counters: dict[str, int] = field(default_factory=dict)
    names: dict[str, object] = field(default_factory=dict)  # local name -> node name or BROKEN
    prefixes: dict[str, str] = field(default_factory=dict)  # block instance -> its prefix
    # the body's own scope (not a repeat iteration's) keeps every name taken in it, in `claims`, and
    # the names each repeat numbering made of a written name, in `numbered`: "c" -> ["c_1", "c_2"]
    claims: dict[str, _Claim] = field(default_factory=dict)
    numbered: dict[str, list[str]] = field(default_factory=dict)
    parent: Scope | None = None  # for repeat iterations
    suffix: str = ""
    block: str | None = None  # the block being expanded, None at network level
    calls: tuple[Span, ...] = ()
    path: tuple[tuple[str, str], ...] = ()
    top: Scope | None = None  # the body's own scope, for an iteration
    origins: dict[str, Span] = field(default_factory=dict)  # parameter -> where its value is written
    untaken: dict[str, Span] = field(default_factory=dict)  # name -> the `if` whose branch not taken defines it
    # a body that names a layer with a number numbers its unnamed layers too, as nn.Sequential
    # does; the number to give next is `counters[""]`
    sequence: bool = False
    instance: Instance | None = None  # the block instance whose body this is; None for the network's
    repeats: tuple[int, ...] = ()  # the iteration of each repeat around the statements, outermost first
    stem: str = ""  # what a numbered body's numbers follow: "" for nn.Sequential's `0`, "block1-" for `"block1-0"`

    def lookup(self, name: str):
        scope = self
        while scope is not None:
            if name in scope.names:
                return scope.names[name]
            scope = scope.parent
        return None

    def lookup_prefix(self, name: str):
        scope = self
        while scope is not None:
            if name in scope.prefixes:
                return scope.prefixes[name]
            scope = scope.parent
        return None

    def visible(self) -> list[str]:
        scope, out = self, []
        while scope is not None:
            out.extend(scope.names)
            scope = scope.parent
        return out

    def root(self) -> Scope:
        return self.top or self

    def iteration(self, i: int) -> Scope:
        return Scope(
            self.prefix,
            self.env,
            self.reserved,
            self.counters,
            parent=self,
            suffix=f"{self.suffix}_{i}",
            block=self.block,
            calls=self.calls,
            path=self.path,
            top=self.root(),
            origins=self.origins,
            instance=self.instance,
            repeats=(*self.repeats, i),
        )


def _origin(value: ast.Value, origins: dict[str, Span]) -> Span:
    """Where a parameter's value is written: a parameter passed on (`mb: act`) is written
    where the caller's caller gave it, for an error there and an edit that fixes it."""
    part = value.parts[0]
    if len(value.parts) == 1 and isinstance(part, ast.Name) and part.id in origins:
        return origins[part.id]
    return value.span


def _activation_params(block: ast.Block) -> dict[str, Span]:
    """The block's parameters written after `->` in its body (repeats included), each with
    where it is first so written: those parameters hold activations."""
    params = {p.name for p in block.params}
    found: dict[str, Span] = {}
    todo = list(block.body)
    while todo:
        stmt = todo.pop(0)
        if isinstance(stmt, ast.Repeat):
            todo[:0] = stmt.body
        elif isinstance(stmt, ast.If):
            todo[:0] = [inner for body in stmt.bodies for inner in body]
        elif stmt.activation is not None and stmt.activation.name in params:
            found.setdefault(stmt.activation.name, stmt.activation.span)
    return found


_NUMBERING = (
    "in a body that numbers its layers, an unnamed layer takes the number after the layer above it,"
    " and an activation after `->` takes one as well, as nn.Sequential numbers its modules"
)


# A numbered name: a whole number, after a stem that ends in `-` if any (`0`, `"block1-0"`)
_NUMBER = re.compile(r"((?:.*-)?)([0-9]+)")
# What a quoted name may hold: letters, digits, `_`, `-`, and a block parameter in braces
_SPELLING = re.compile(r"(?:[A-Za-z0-9_-]|\{[A-Za-z_][A-Za-z0-9_]*\})+")
_PLACEHOLDER = re.compile(r"\{([A-Za-z_][A-Za-z0-9_]*)\}")


def _numbered(names) -> bool:
    """Whether a body with these written names is numbered (as nn.Sequential): one of them is a
    number, or a number after a stem (`"block1-0"`, as torchvision's RegNet numbers its blocks)."""
    return any(_NUMBER.fullmatch(name) for name in names)


def _explicit_names(body) -> set[str]:
    names = set()
    for stmt in body:
        if isinstance(stmt, ast.Repeat):
            names |= _explicit_names(stmt.body)
        elif isinstance(stmt, ast.If):
            for body in stmt.bodies:
                names |= _explicit_names(body)
        elif stmt.name:
            names.add(stmt.name)
    return names


# -- the expander ------------------------------------------------------------------------------


class Expander:
    def __init__(self, reporter: Reporter, sources: dict[str, str], overrides: dict | None = None):
        self.r = reporter
        self.sources = sources
        self.overrides = overrides or {}  # input shapes given from outside the spec, for `_shape`
        self._order: list[str] = []  # the layers in the order they were added
        self._shaped = 0  # how many of them `_shape` has worked out
        self.blocks: dict[str, ast.Block] = {}
        self.graph: Graph | None = None
        self.loaded: set[str] = set()
        self.stack: list[str] = []
        self._reading: str | None = None
        self.steps = 0  # statements expanded and repeat iterations run, up to MAX_STEPS
        self.name_bytes = 0  # of every name taken, up to MAX_NAME_BYTES
        self.failed: set[int] = set()  # id() of the statements that reported an error
        self._least: dict[str, int] = {}  # block -> the fewest steps a call of it takes
        self._acts: dict[str, dict[str, Span]] = {}  # block -> `_activation_params`, found once
        self._lines: dict[str, list[str]] = {}  # file -> its source lines, for the text of a span
        self.compared = 0  # candidates compared for "did you mean" hints, up to MAX_STEPS

    # modules and imports
    def load_imports(self, module: ast.Module, base: Path) -> None:
        self._add_blocks(module.blocks)
        for imp in module.imports:
            try:
                path = resolve(base / imp.path)
                key = str(path)
                if key in self.loaded:
                    continue
                self.loaded.add(key)
                text = read_source(path)
            except OSError as err:
                self.r.error(
                    "E0102",
                    f"cannot import `{imp.path}`: {reason(err)}",
                    imp.span,
                    [f"the path is relative to the importing file's folder ({base})"],
                )
                continue
            file = _display_path(path)
            self.sources[file] = text
            try:
                sub = parse(text, file)
            except ArchError as err:
                self.r.diagnostics.extend(err.diagnostics)
                continue
            self.load_imports(sub, path.parent)

    def _add_blocks(self, blocks) -> None:
        for block in blocks:
            if block.name in self.blocks:
                first = self.blocks[block.name]
                self.r.error(
                    "E0211",
                    f"block `{block.name}` is defined twice",
                    block.name_span,
                    ["rename one of them"],
                    [("first defined here", first.name_span)],
                )
            elif block.name in OPS:
                self.r.error(
                    "E0211",
                    f"block `{block.name}` has the name of a built-in layer type",
                    block.name_span,
                    ["choose another name"],
                )
            else:
                self.blocks[block.name] = block

    # the network
    def network(self, net: ast.Network, file: str) -> Graph:
        self.graph = Graph(net.name, file)
        names = _explicit_names(net.body)
        scope = Scope("", {}, names, sequence=_numbered(names))
        if net.args:
            self._settings(net.args, scope, net.span)
        try:
            self.body(net.body, scope, None)
        except _TooBigError as err:
            self.r.error("E0213", str(err), err.span or net.span, [err.help])
        return self.graph

    def _settings(self, args, scope: Scope, where: Span) -> None:
        """The settings after the network's name (`init=resnet`), checked as a layer's arguments are."""
        values = self._evaluate_args(args, scope)
        settings, _ = (None, None) if values is None else self.bind_values(values, NETWORK_PARAMS, {}, "network", where)
        if settings is not None:
            self.graph.init = settings["init"]

    def body(self, stmts, scope: Scope, prev):
        for stmt in stmts:
            self._step(stmt.span)
            expand = (
                self.repeat
                if isinstance(stmt, ast.Repeat)
                else self.conditional
                if isinstance(stmt, ast.If)
                else self.statement
            )
            prev = expand(stmt, scope, prev)
        return prev

    # the bounds of expansion
    def _step(self, span: Span) -> None:
        self.steps += 1
        if self.steps > MAX_STEPS:
            raise self._too_many_steps(span)

    def _too_many_steps(self, span: Span) -> _TooBigError:
        return _TooBigError(
            f"the network takes more than {MAX_STEPS:,} steps to expand",
            span,
            "each statement expanded and each repeat iteration is a step: nested repeats, and blocks that"
            " call blocks several times, multiply them; check repeat counts and block calls",
        )

    def _too_many_layers(self, span: Span) -> _TooBigError:
        return _TooBigError(
            f"the network expands to more than {MAX_NODES:,} layers",
            span,
            f"archc handles networks of up to {MAX_NODES:,} layers; check repeat counts",
        )

    def _expect(self, steps: int, span: Span) -> None:
        """Stop now, not after the work, when `steps` more steps would pass the limit."""
        if self.steps + steps > MAX_STEPS:
            raise self._too_many_steps(span)

    def least_steps(self, stmts, env: dict) -> int:
        """The fewest steps expanding `stmts` takes, if no statement in them fails.

        A repeat counts its iterations times its body, a block call the body of its block. A
        count that cannot be evaluated here (a parameter of a block not yet called) counts 0,
        so this never says more than the expansion will do, and `block b2() { b1; b1 }`, ...
        up to b60 is refused at its first call instead of after a million of its 2^60.
        """
        total = 0
        for stmt in stmts:
            total += 1
            if isinstance(stmt, ast.Repeat):
                try:
                    count = _expr(stmt.count, env)
                except EvalError:
                    count = 0
                if _is_int(count) and count > 0:
                    total += min(count, MAX_NODES + 1) * (1 + self.least_steps(stmt.body, env))
            elif isinstance(stmt, ast.If):  # the branch taken is not known here: the shortest
                total += min(self.least_steps(body, env) for body in stmt.bodies)
            elif stmt.op in self.blocks:
                total += self._least_block(stmt.op)
            if total > MAX_STEPS:
                break  # enough to know
        return total

    def _least_block(self, name: str) -> int:
        if name not in self._least:
            self._least[name] = 0  # a block that calls itself (E0210) goes no deeper
            self._least[name] = self.least_steps(self.blocks[name].body, {})
        return self._least[name]

    def repeat(self, stmt: ast.Repeat, scope: Scope, prev):
        try:
            count = _expr(stmt.count, scope.env, shape=self._sizes(scope))
        except EvalError as err:
            self._report(err)
            return BROKEN
        if not _is_int(count) or count < 0:
            self.r.error("E0205", f"repeat needs a whole number of at least 0, not {_describe(count)}", stmt.count.span)
            return BROKEN
        if count > MAX_NODES:
            raise _TooBigError(
                f"repeat {count:,} is more than archc can expand",
                stmt.count.span,
                f"archc handles networks of up to {MAX_NODES:,} layers; check the repeat count",
            )
        if count:
            self._expect(count * (1 + self.least_steps(stmt.body, scope.env)), stmt.span)
        for i in range(1, count + 1):
            steps, nodes, reported = self.steps, len(self.graph), len(self.r.diagnostics)
            self._step(stmt.span)
            prev = self.body(stmt.body, scope.iteration(i), prev)
            # An iteration without errors does what every later one does: stop now rather than
            # after expanding 200,000 layers (repeat 1000 { repeat 1000 { relu } }).
            if len(self.r.diagnostics) == reported:
                self._expect((self.steps - steps) * (count - i), stmt.span)
                if len(self.graph) + (len(self.graph) - nodes) * (count - i) > MAX_NODES:
                    raise self._too_many_layers(stmt.span)
        return prev

    def conditional(self, stmt: ast.If, scope: Scope, prev):
        """Expand the first branch whose condition is true (else the `else`), in the scope of the
        `if` itself: its layers are read after it by their names. Every condition is evaluated,
        so each one's errors are found whatever the values. The names only the branches not taken
        define are noted, for the error of a statement that reads one. A conditional that failed
        fails once (as `statement` does)."""
        values = [] if id(stmt) in self.failed else [self._condition(cond, scope) for cond, _ in stmt.branches]
        if id(stmt) in self.failed or None in values:
            self.failed.add(id(stmt))
            for name in _explicit_names((stmt,)):  # its readers are already wrong: keep them quiet
                scope.names.setdefault(name, BROKEN)
            return BROKEN
        taken = next((body for value, (_, body) in zip(values, stmt.branches) if value), stmt.orelse)
        for name in _explicit_names((stmt,)) - _explicit_names(taken):
            scope.root().untaken.setdefault(name, stmt.span)
        return self.body(taken, scope, prev)

    def _condition(self, cond, scope: Scope) -> bool | None:
        """The value of a condition; None (reported) when it is not true or false."""
        try:
            value = _expr(cond, scope.env, shape=self._sizes(scope))
        except EvalError as err:
            self._report(err)
            return None
        if isinstance(value, bool):
            return value
        self.r.error(
            "E0205",
            f"a condition must be true or false, not {_describe(value)}",
            cond.span,
            ["compare it: `stride > 1`, `in.channels != out`"],
        )
        return None

    def statement(self, stmt: ast.Layer, scope: Scope, prev):
        """Expand one statement; one that failed before (in an earlier iteration or call) is not
        expanded again: it would fail the same way, and a million iterations would report a
        million copies of its error."""
        reported = len(self.r.diagnostics)
        spelled = self._spelled(stmt, scope, quiet=id(stmt) in self.failed)
        if id(stmt) in self.failed or spelled is None:
            out = self._broken(spelled or replace(stmt, name=None), scope)
        else:
            out = self._statement(spelled, scope, prev)
        if len(self.r.diagnostics) > reported:
            self.failed.add(id(stmt))
        return out

    def _spelled(self, stmt: ast.Layer, scope: Scope, quiet: bool = False) -> ast.Layer | None:
        """The statement with its name as the body means it: a quoted name's `{param}` replaced by
        the parameter's value (`"block{k}-0"` -> `block1-0`); None (reported unless `quiet`) when the
        name cannot be spelled."""
        if stmt.name is None or (stmt.name.isidentifier() and stmt.name.isascii()) or stmt.name.isdigit():
            return stmt
        try:
            return replace(stmt, name=self._spell(stmt.name, stmt.name_span, scope))
        except EvalError as err:
            if not quiet:
                self._report(err)
            return None

    def _spell(self, text: str, span: Span, scope: Scope) -> str:
        """A quoted name (in a statement or a reference) with each `{param}` replaced by the value of
        the block parameter; EvalError for a character a name cannot hold, or a parameter that is
        not there or is not a whole number or a word."""
        if not _SPELLING.fullmatch(text):
            fixed = re.sub(r"[^A-Za-z0-9_-]+", "_", _PLACEHOLDER.sub(lambda m: m[1], text)).strip("_") or "layer"
            raise EvalError(
                f'`"{text}"` cannot name a layer',
                span,
                [
                    "a quoted name holds letters, digits, `_` and `-`, and block parameters in braces"
                    ' (`"block{k}-0"`); a `.` separates the names of a path',
                    f'write `"{fixed}"`',
                ],
                code="E0101",
                fixes=[Fix(span, f'"{fixed}"')] if self._text(span) == f'"{text}"' else [],
            )

        def value(m: re.Match) -> str:
            word = m[1]
            where = span
            if self._text(span) == f'"{text}"':  # the parameter's own place in the quoted name
                col = span.col + 1 + m.start(1)
                where = Span(span.file, span.line, col, span.line, col + len(word))
            if word not in scope.env:
                help_, fixes = _did_you_mean(word, scope.env, where)
                raise EvalError(
                    f'unknown name `{word}` in the quoted name `"{text}"`',
                    where,
                    help_ or ["only a block's parameters can be written in braces in a name"],
                    fixes=fixes,
                )
            v = scope.env[word]
            if isinstance(v, bool) or not isinstance(v, int | str):
                raise EvalError(
                    f"a name can hold a whole number or a word, not {_describe(v)} (`{word}`)",
                    where,
                    [f"pass `{word}` a whole number or a word"],
                    code="E0205",
                )
            return str(v)

        return _PLACEHOLDER.sub(value, text)

    def _statement(self, stmt: ast.Layer, scope: Scope, prev):
        self._reading = stmt.name  # for the message of a layer that reads itself
        if stmt.op in self.blocks:
            return self.call_block(stmt, scope, prev)
        if stmt.op == OUTPUT:
            return self.output(stmt, scope, prev)
        if stmt.op not in OPS:
            help_, fixes = self._hint(stmt.op, [*OPS, *self.blocks], stmt.op_span, meanings=True)
            self.r.error(
                "E0201",
                f"unknown layer type `{stmt.op}`",
                stmt.op_span,
                help_ or ["see `docs/language.md` for the layer types"],
                fixes=fixes,
            )
            return self._broken(stmt, scope)
        op = OPS[stmt.op]
        local = self._name(stmt, scope)
        inputs = self._inputs(stmt, scope, prev, op.min_inputs, op.max_inputs)
        attrs, spans = self._bind(stmt, op, scope)
        act = self._activation(stmt, scope)
        if inputs is BROKEN or attrs is None or act is BROKEN:
            return self._define(stmt, scope, local, BROKEN)
        if op.name == "input" and scope.block is not None:
            self.r.error(
                "E0215",
                "a block cannot declare network inputs",
                stmt.span,
                ["declare `input` in the network and pass it to the block"],
            )
            return self._define(stmt, scope, local, BROKEN)
        if local is None:
            return BROKEN
        name = scope.prefix + local
        node = Node(name, op.name, inputs, attrs, stmt.span, spans, act, scope.path, scope.calls)
        node.written = stmt.name is not None
        self._add(self._place(node, local, scope), stmt.span)
        return self._define(stmt, scope, local, name)

    def output(self, stmt: ast.Layer, scope: Scope, prev):
        """`output (a, b)`: what the network returns, in that order; without it, the last layer."""
        if scope.block is not None or stmt.name or stmt.args or stmt.activation:
            where = "in a block" if scope.block is not None else "with a name, arguments or an activation"
            self.r.error(
                "E0219",
                f"`output` takes only the layers it returns, in parentheses; it cannot be used {where}",
                stmt.span,
                ["write `output (a, b)` once, in the network body"],
            )
            return prev
        inputs = self._inputs(stmt, scope, prev, 1, None)
        if inputs is not BROKEN:
            if self.graph.declared_outputs is not None:
                self.r.error(
                    "E0219", "the network's outputs are declared twice", stmt.span, ["list them all in one `output`"]
                )
            else:
                self.graph.declared_outputs = list(dict.fromkeys(inputs))
        return prev

    @staticmethod
    def _place(node: Node, local: str, scope: Scope) -> Node:
        """The node, told where it is in the hierarchy: its name in its body, its block instance, its iteration."""
        node.local, node.instance, node.iteration = local, scope.instance, scope.repeats
        return node

    def _add(self, node: Node, span: Span) -> None:
        if len(self.graph) >= MAX_NODES:
            raise self._too_many_layers(span)
        self.graph.add(node)
        self._order.append(node.name)

    # names
    def _take(self, scope: Scope, local: str, claim: _Claim, fixes=()) -> bool:
        """Take `local` as a name of the scope's body, or report E0204 if it is taken.

        Every name a body defines comes through here: a written name, the same name numbered by
        a repeat (`c_1`), a block instance's name and a generated one (`conv1`), so a name can
        only ever mean one layer of the body.
        """
        root = scope.root()
        first = root.claims.get(local)
        if first is not None:
            self._clash(local, claim, first, fixes)
            return False
        self.name_bytes += len(scope.prefix) + len(local)
        if self.name_bytes > MAX_NAME_BYTES:
            raise _TooBigError(
                f"the names of the layers add up to more than {MAX_NAME_BYTES // 2**20} MiB",
                claim.span,
                "a name in a repeat or a block is copied for every iteration and call: shorten it",
            )
        root.claims[local] = claim
        return True

    def _clash(self, local: str, claim: _Claim, first: _Claim, fixes=()) -> None:
        """E0204 for `local`, named as the user sees it, with where and how it was first taken;
        `fixes` renumber a number written twice in a numbered body."""
        same = claim.written == first.written and claim.suffix == first.suffix
        help_ = []
        if not same:
            for how in (claim, first):
                if how.written is None:
                    help_.append(f"`{local}` is the name archc gave the unnamed layer at line {how.span.line}")
                    if _NUMBER.fullmatch(local):
                        help_.append(_NUMBERING)
                elif how.suffix:
                    help_.append(
                        f"in its repeat, the `{how.written}` of line {how.span.line} is named `{local}`:"
                        " a repeat appends the iteration number to every name in it"
                    )
        if fixes:
            help_.append(f"number it `{fixes[0].text}`, the next number free")
        self.r.error(
            "E0204",
            f"`{claim.written if same else local}` is defined twice",
            claim.span,
            [*dict.fromkeys(help_), "every layer in a network or block needs its own name"],
            [("first defined here", first.span)],
            fixes,
        )

    def _name(self, stmt: ast.Layer, scope: Scope) -> str | None:
        """The statement's name in its body (`c`, `c_2`, `conv3`), taken; None (reported) if unusable."""
        if stmt.name:
            if stmt.name == BLOCK_INPUT:
                self.r.error(
                    "E0204", f"`{BLOCK_INPUT}` is reserved for a block's input", stmt.name_span, ["choose another name"]
                )
                return None
            local = stmt.name + scope.suffix
            numbered = _NUMBER.fullmatch(stmt.name) if scope.root().sequence else None
            fixes = []
            if numbered:
                scope.root().stem = numbered[1]
                free = self._free_number(scope)
                if not scope.suffix and self._text(stmt.name_span) in (stmt.name, f'"{stmt.name}"'):
                    quoted = self._text(stmt.name_span) != stmt.name
                    fixes = [Fix(stmt.name_span, f'"{free}"' if quoted else free)]
                self._advance(stmt, scope, int(numbered[2]))
            if not self._take(scope, local, _Claim(stmt.name_span, stmt.name, scope.suffix), fixes):
                scope.names.setdefault(stmt.name, BROKEN)  # its readers are already wrong: keep them quiet
                return None
            return local
        root = scope.root()
        if root.sequence:  # nn.Sequential's numbering: the number after the layer above (and its activation)
            number = scope.counters.get("", 0)
            local = f"{root.stem}{number}"
            self._advance(stmt, scope, number)
            return local if self._take(scope, local, _Claim(stmt.span, None)) else None
        base = stmt.op
        while True:
            scope.counters[base] = scope.counters.get(base, 0) + 1
            sep = "_" if base[-1].isdigit() else ""  # relu6_1, not relu61
            local = f"{base}{sep}{scope.counters[base]}"
            if local not in scope.reserved and local not in root.claims:
                self._take(scope, local, _Claim(stmt.span, None))
                return local

    def _advance(self, stmt: ast.Layer, scope: Scope, number: int) -> None:
        """In a numbered body, the statement numbered `number` moves the numbering past it, and past
        its `-> activation` unless it calls a block (whose activation is a layer numbered on its own)."""
        fused = stmt.activation is not None and stmt.op not in self.blocks
        scope.counters[""] = number + 1 + fused

    def _free_number(self, scope: Scope) -> str:
        """The first number from the numbering's place on that no layer of the body has, written or
        given, after the numbering's stem."""
        root, n = scope.root(), scope.counters.get("", 0)
        while f"{root.stem}{n}" in root.claims or f"{root.stem}{n}" in root.reserved:
            n += 1
        return f"{root.stem}{n}"

    def _define(self, stmt: ast.Layer, scope: Scope, local: str | None, value):
        """Make the statement's names refer to its output (or to BROKEN): `local` in its body,
        and inside a repeat iteration the name as written as well."""
        if local is None or (not stmt.name and stmt.op in self.blocks):
            return value  # an unnamed block instance is reached by its dotted names only
        root = scope.root()
        root.names[local] = value
        if stmt.name:
            scope.names[stmt.name] = value
            if scope.suffix:
                root.numbered.setdefault(stmt.name, []).append(local)
        return value

    def _broken(self, stmt: ast.Layer, scope: Scope):
        """A statement that cannot be expanded: its written name, if free, refers to BROKEN."""
        if stmt.name and stmt.name != BLOCK_INPUT and stmt.name + scope.suffix not in scope.root().claims:
            self._define(stmt, scope, self._name(stmt, scope), BROKEN)
        elif not stmt.name and scope.root().sequence:
            self._name(stmt, scope)  # it keeps its number: the layers after it keep theirs
        elif stmt.name:
            scope.names.setdefault(stmt.name, BROKEN)
        return BROKEN

    def _inputs(self, stmt: ast.Layer, scope: Scope, prev, lo: int, hi: int | None, names=()):
        """The layers a statement reads; `names`, those a block of several inputs gives them, for the help."""
        if stmt.inputs is None:
            if lo == 0:
                return []
            if prev is None:
                where = "the block's input" if scope.block else "an `input`"
                self.r.error(
                    "E0215",
                    f"`{stmt.op}` has no input: nothing comes before it",
                    stmt.span,
                    [f"start with {where}, or name its input: {stmt.op} ({BLOCK_INPUT if scope.block else 'x'})"],
                )
                return BROKEN
            if prev is BROKEN:
                return BROKEN
            found = [prev]
        else:
            found = []
            for ref in stmt.inputs:
                target = self._resolve(ref, scope)
                if target is None:
                    return BROKEN
                found.append(target)
            if any(t is BROKEN for t in found):
                return BROKEN
        n = len(found)
        if n < lo or (hi is not None and n > hi):
            want = (
                ("no inputs" if hi == 0 else f"exactly {lo} input{'s' if lo > 1 else ''}")
                if lo == hi
                else f"at least {lo} inputs"
            )
            self.r.error(
                "E0209",
                f"`{stmt.op}` takes {want}, but gets {n}",
                stmt.span,
                [f"list its inputs in parentheses: {stmt.op} ({', '.join(names or ['a', 'b'][: max(lo, 1)])})"]
                if lo > 1
                else [],
            )
            return BROKEN
        return found

    def _resolve(self, ref: ast.Ref, scope: Scope):
        if not all(p.isdigit() or p.isidentifier() for p in ref.parts):  # a quoted name: `(s."block{k}-0")`
            try:
                ref = replace(ref, parts=tuple(self._spell(p, ref.span, scope) for p in ref.parts))
            except EvalError as err:
                self._report(err)
                return None
        head, rest = ref.parts[0], ref.parts[1:]
        if not rest:
            target = scope.lookup(head)
            if target is not None:
                return target
        else:
            prefix = scope.lookup_prefix(head)
            full = (prefix or scope.prefix + head + ".") + ".".join(rest)
            if full in self.graph.nodes:
                return full
            if prefix is None and scope.lookup(head) is BROKEN:
                return BROKEN
        numbered = scope.root().numbered.get(head)
        if numbered and scope.lookup(head) is None:
            self._numbered_only(ref, scope, numbered)
            return None
        branch = scope.root().untaken.get(head)
        if branch is not None and scope.lookup(head) is None:
            self.r.error(
                "E0203",
                f"`{head}` is only defined in the branch of an `if` that is not taken here",
                ref.span,
                [f"define `{head}` in both branches (in the other, e.g. `identity {head} (in)`)"],
                [("the `if`", branch)],
            )
            return None
        defined = rest and scope.lookup_prefix(head) is not None  # `t.wtf`: `t` is there, `wtf` is not in it
        if (head in scope.root().reserved and not defined) or head == BLOCK_INPUT:
            if head == BLOCK_INPUT:
                self.r.error(
                    "E0202", f"`{BLOCK_INPUT}` names a block's input and is only defined inside a block", ref.span
                )
            elif self._reading and head == self._reading:
                self.r.error(
                    "E0203",
                    f"`{head}` reads itself: a layer cannot be its own input",
                    ref.span,
                    ["that would be a cycle; a network flows one way: name the layer above it that it should read"],
                )
            else:
                self.r.error(
                    "E0203",
                    f"`{ref.text}` is used before it is defined",
                    ref.span,
                    [
                        "a layer can only take inputs from layers defined above it: move its definition up",
                        f"if `{head}` also reads this layer, the two form a cycle, which a network cannot have",
                    ],
                )
            return None
        help_, fixes = self._hint(ref.text, self._all_refs(scope), ref.span)
        self.r.error(
            "E0202", f"unknown layer `{ref.text}`", ref.span, help_ or ["inputs name layers defined above"], fixes=fixes
        )
        return None

    def _numbered_only(self, ref: ast.Ref, scope: Scope, numbered: list[str]) -> None:
        """E0203 for a name written in a repeat, read after it: the repeat numbered it."""
        head, rest = ref.parts[0], ref.parts[1:]
        shown = numbered if len(numbered) <= 4 else [*numbered[:2], "...", numbered[-1]]
        made = ", ".join(n if n == "..." else f"`{n}`" for n in shown)
        if scope.suffix:  # inside another repeat: which iteration it means is the user's to say
            help_, fixes = [f"name the layer with its iteration number: one of {made}"], []
        else:
            last = ".".join((numbered[-1], *rest))
            help_, fixes = [f"write `{last}` to read the last iteration's `{head}`"], [Fix(ref.span, last)]
        self.r.error(
            "E0203",
            f"`{ref.text}` is only defined inside a repeat, which named its layers {made}",
            ref.span,
            help_,
            fixes=fixes,
        )

    def _all_refs(self, scope: Scope) -> list[str]:
        names = scope.visible()
        names += [n[len(scope.prefix) :] for n in self.graph.nodes if n.startswith(scope.prefix)]
        return names

    def _evaluate_args(self, args, scope: Scope):
        out = []
        ok = True
        shape = self._sizes(scope)
        for arg in args:
            try:
                out.append((arg.name, evaluate(arg.value, scope.env, shape), arg))
            except EvalError as err:
                self._report(err)
                ok = False
        return out if ok else None

    def _report(self, err: EvalError) -> None:
        if not err.reported:
            self.r.error(err.code, err.message, err.span, err.help, fixes=err.fixes)

    # sizes of layers: `in.channels`
    def _sizes(self, scope: Scope):
        """What `evaluate` calls for an `ast.ShapeOf` in the statements of `scope`."""
        return lambda e: self._size(e, scope)

    def _size(self, e: ast.ShapeOf, scope: Scope) -> int:
        """The size `e` names of the layer it names, whose shape is worked out now (`_shape`)."""
        target = self._resolve(e.ref, scope)
        if target is None or target is BROKEN:  # reported by _resolve, or by the statement that broke
            raise EvalError("", e.span, reported=True)
        shape = self._shape(target)
        if shape is None:  # a layer it depends on has no shape: the shape pass reports why
            raise EvalError("", e.span, reported=True)
        axes = size_axes(shape)
        if e.prop in axes:
            return shape[axes[e.prop]]
        names = tuple(axes)
        sizes = " and ".join(", ".join(names).rsplit(", ", 1))
        if shape.channels and not shape.is_sequence:
            sizes += f" (axis {shape.channels}, where a permute put them; the other axes have no names)"
        meant = e.prop if e.prop in ALL_SIZE_NAMES else closest(e.prop, ALL_SIZE_NAMES)[0]
        if meant is not None and meant not in names:  # `length` of an image: no edit can make it one
            raise EvalError(
                f"`{e.ref.text}` is {fmt_shape(shape)}, which has no {meant}", e.prop_span, [f"its sizes are {sizes}"]
            )
        help_, fixes = self._hint(e.prop, names, e.prop_span)
        raise EvalError(
            f"`{e.prop}` is not a size of a layer",
            e.prop_span,
            [*help_, f"`{e.ref.text}` is {fmt_shape(shape)}: its sizes are {sizes}"],
            fixes=fixes,
        )

    def _shape(self, name: str) -> tuple[int, ...] | None:
        """The output shape of layer `name`, None if a layer it depends on fails.

        Shapes are worked out in the order layers were added (a topological order), each
        once, as far as `name`, as the shape pass does (which does it again, and reports
        what fails): so `in.channels` in every block of a network costs one pass in all.
        """
        nodes, order = self.graph.nodes, self._order
        while self._shaped < len(order) and nodes[name].failed is False and nodes[name].shape is None:
            node = nodes[order[self._shaped]]
            self._shaped += 1
            node.geom, node.shape = {}, None
            ins = [nodes[src].shape for src in node.inputs]
            node.failed = any(shape is None for shape in ins)
            if node.failed:
                continue
            if node.op == "input" and node.name in self.overrides:
                node.attrs = {**node.attrs, "shape": self.overrides[node.name]}
            try:
                shape = shape_of(node, ins, lambda *_, **__: None)  # the shape pass warns
            except ShapeError:
                node.failed = True
                continue
            node.shape = shape
        return nodes[name].shape

    def _bind(self, stmt: ast.Layer, op, scope: Scope):
        """Match a statement's arguments to a layer type's parameters."""
        layers = {p.name for p in op.params if p.kind == "layer"}
        values = self._evaluate_args([a for a in stmt.args if a.name not in layers], scope)
        named = self._layer_args([a for a in stmt.args if a.name in layers], scope)
        if values is None or named is None:
            return None, None
        return self.bind_values(values + named, op.params, op.symbols, stmt.op, stmt.op_span)

    def _layer_args(self, args: list[ast.Arg], scope: Scope):
        """The arguments that name a layer (`tied=transformer.wte`), each resolved as an input is
        (E0202 for an unknown one, with the closest name; E0203 for one defined below) to its
        full name; None when one fails."""
        out = []
        for arg in args:
            parts = arg.value.parts
            expr = parts[0] if len(parts) == 1 else None
            if isinstance(expr, ast.Name):
                ref = ast.Ref((expr.id,), expr.span)
            elif isinstance(expr, ast.ShapeOf):
                ref = ast.Ref((*expr.ref.parts, expr.prop.strip('"')), expr.span)
            else:
                self.r.error(
                    "E0205",
                    f"`{arg.name}` names a layer, as an input does: `{arg.name}=wte`, `{arg.name}=transformer.wte`",
                    arg.span,
                    ["write the name of a layer defined above"],
                )
                return None
            target = self._resolve(ref, scope)
            if target is None or target is BROKEN:
                return None
            out.append((arg.name, LayerName(target), arg))
        return out

    def bind_values(self, values, params, symbols, what: str, where: Span):
        attrs: dict = {}
        spans: dict[str, Span] = {}
        seen: set[str] = set()  # given, even with a bad value: a bad value still fills its slot
        ok = True
        positional = [p for p in params if p.positional]
        by_name = {p.name: p for p in params}
        for key, value, arg in values:
            if key is None and isinstance(value, str) and value in symbols:
                key, value = symbols[value]
            elif key is None:
                taken = [p for p in positional if p.name not in seen]
                if not taken:
                    extra = f"the word `{value}`" if isinstance(value, str) else "this value"
                    if isinstance(value, str):
                        help_, fixes = self._word_hint(value, arg.span, symbols, by_name)
                    else:
                        help_, fixes = self._keyword_for(value, arg, [p for p in params if p.name not in seen])
                    expect = ", ".join(p.name for p in positional) or "none"
                    self.r.error(
                        "E0208",
                        f"`{what}` does not take {extra} here",
                        arg.span,
                        help_ + [f"its positional arguments are: {expect}; others are written name=value"],
                        fixes=fixes,
                    )
                    ok = False
                    continue
                key = taken[0].name
            if key not in by_name:
                s = arg.span
                help_, fixes = self._hint(key, by_name, Span(s.file, s.line, s.col, s.line, s.col + len(key)))
                self.r.error(
                    "E0206",
                    f"`{what}` has no parameter `{key}`",
                    arg.span,
                    help_ + [f"its parameters are: {', '.join(by_name) or 'none'}"],
                    fixes=fixes,
                )
                ok = False
                continue
            if key in seen:
                self.r.error("E0214", f"`{key}` is given twice", arg.span, [], [("first given here", spans[key])])
                ok = False
                continue
            seen.add(key)
            spans[key] = arg.span
            p = by_name[key]
            checked = check_kind(p, value)
            if checked is None:
                words = p.choices or _KIND_CHOICES.get(p.kind) or symbols
                help_, fixes = self._hint(value, words, arg.value.span) if isinstance(value, str) else ([], [])
                self.r.error(
                    "E0205",
                    f"`{what}` {key} must be {kind_text(p)}, not {_describe(value)}",
                    arg.span,
                    help_,
                    fixes=fixes,
                )
                ok = False
                continue
            attrs[key], spans[key] = checked, arg.span
        for p in params:
            if p.name not in seen:
                if p.default is REQUIRED:
                    self.r.error(
                        "E0207",
                        f"`{what}` needs its `{p.name}` ({p.doc or kind_text(p)})",
                        where,
                        [f"e.g. {_example(what, params)}"],
                    )
                    ok = False
                else:
                    attrs[p.name] = p.default
        return (attrs, spans) if ok else (None, None)

    def _hint(self, word: str, candidates, span: Span, meanings: bool = False) -> tuple[list[str], list[Fix]]:
        """`_did_you_mean`, while the expansion has compared fewer than MAX_STEPS candidates: a
        suggestion among 100,000 layer names costs a tenth of a second, and a spec can ask for
        one at every statement."""
        candidates = list(candidates)
        self.compared += len(candidates)
        return _did_you_mean(word, candidates, span, meanings) if self.compared <= MAX_STEPS else ([], [])

    def _word_hint(self, word: str, span: Span, symbols, params) -> tuple[list[str], list[Fix]]:
        """For a word with no positional place: the word it misspells (`ciel`: `ceil`), the
        parameter it is a value of (`network N resnet`: `init=resnet`, an edit that names it),
        or the parameter it names, which needs a value (`strid`: `stride=...`, not an edit to make)."""
        help_, fixes = self._hint(word, symbols, span)
        if help_:
            return help_, fixes
        owner = next((p.name for p in params.values() if word in p.choices), None)
        if owner is not None:
            return [f"did you mean `{owner}={word}`?"], [
                Fix(Span(span.file, span.line, span.col, span.line, span.col), f"{owner}=")
            ]
        target, _ = closest(word, params)
        return ([f"did you mean `{target}=...`? a parameter is given as name=value"], []) if target else ([], [])

    def _keyword_for(self, value, arg: ast.Arg, free) -> tuple[list[str], list[Fix]]:
        """For a number with no positional place (`bn: 1e-3`): the first parameter not yet
        given that takes it, as a keyword (`eps=1e-3`), and the edit that names it."""
        fits = [p.name for p in free if check_kind(p, value) is not None]
        text = self._text(arg.value.span)
        if not fits or text is None:
            return [], []
        others = ", ".join(f"`{name}={text}`" for name in fits[1:3])
        others = f" (also possible: {others})" if others else ""
        start = arg.value.span
        insert = Span(start.file, start.line, start.col, start.line, start.col)
        return [f"did you mean `{fits[0]}={text}`?{others}"], [Fix(insert, f"{fits[0]}=")]

    def _word_span(self, span: Span, word: str) -> Span | None:
        """Where `word` is first written in a one-line span (an activation's name, after its `->`)."""
        text = self._text(span)
        at = -1 if text is None else text.find(word)
        return None if at < 0 else Span(span.file, span.line, span.col + at, span.line, span.col + at + len(word))

    def _text(self, span: Span) -> str | None:
        """The source text at a one-line span."""
        if span.file not in self._lines:
            text = self.sources.get(span.file)
            self._lines[span.file] = source_lines(text) if text is not None else []
        lines = self._lines[span.file]
        if span.line != span.end_line or not 1 <= span.line <= len(lines):
            return None
        return lines[span.line - 1][span.col - 1 : span.end_col - 1]

    def _activation(self, stmt: ast.Layer, scope: Scope):
        act = stmt.activation
        if act is None:
            return None
        # `-> act` where `act` is a parameter of the block: the activation the call passed, which
        # `_check_activations` checked there
        name = scope.env.get(act.name, act.name)
        op = OPS.get(name)
        if op is None or not op.is_activation:
            where = self._word_span(act.span, act.name)
            self._unknown_activation(name, act.span, where)
            return BROKEN
        values = self._evaluate_args([ast.Arg(None, v, v.span) for v in act.args], scope)
        if values is None:
            return BROKEN
        attrs, _spans = self.bind_values(values, op.params, op.symbols, name, act.span)
        return BROKEN if attrs is None else (name, attrs)

    def _unknown_activation(self, value, span: Span, word: Span | None, notes=(), message: str | None = None) -> None:
        """E0216 for `value` where an activation is written (at `span`; `word` is where the word
        itself is, for the edit that replaces it), with the closest activation and the list."""
        names = [n for n, o in OPS.items() if o.is_activation]
        help_, fixes = self._hint(value, names, word or span, meanings=True) if isinstance(value, str) else ([], [])
        self.r.error(
            "E0216",
            message or f"unknown activation `{value}`",
            span,
            help_ + [f"activations: {', '.join(names)}"],
            list(notes),
            fixes if word else [],
        )

    # blocks
    def call_block(self, stmt: ast.Layer, scope: Scope, prev):
        block = self.blocks[stmt.op]
        if block.name in self.stack:
            self.r.error(
                "E0210",
                f"block `{block.name}` calls itself",
                stmt.op_span,
                ["a block cannot contain itself, directly or through other blocks; use `repeat`"],
                [(f"`{block.name}` is defined here", block.name_span)],
            )
            return self._broken(stmt, scope)
        if len(self.stack) >= MAX_DEPTH:
            self.r.error("E0210", f"blocks are nested more than {MAX_DEPTH} deep", stmt.op_span)
            return self._broken(stmt, scope)
        local = self._name(stmt, scope)
        count = len(block.inputs) or 1
        inputs = self._inputs(stmt, scope, prev, count, count, [p.name for p in block.inputs])
        env, origins = self._bind_block(stmt, block, scope, inputs)
        act = self._activation(stmt, scope)
        if env is None:  # the body cannot be expanded without its parameters
            return self._define(stmt, scope, local, BROKEN)
        self._expect(self.least_steps(block.body, env), stmt.span)
        # A call that failed still expands its body, for the body's own errors (language.md,
        # section 14, promises all of them), but from a broken input: nothing in it is added.
        failed = local is None or inputs is BROKEN or act is BROKEN
        prefix = f"{scope.prefix}{local or stmt.name}."
        instance = Instance(block.name, local or stmt.name, prefix, env, scope.instance, scope.repeats, block)
        instance.input, instance.call = "" if failed else inputs[0], stmt.span
        instance.inputs = () if failed else tuple(inputs)
        names = _explicit_names(block.body)
        inner = Scope(
            prefix=prefix,
            env=env,
            origins=origins,
            reserved=names | {p.name for p in block.inputs},
            sequence=_numbered(names),
            block=block.name,
            calls=(*scope.calls, stmt.span),
            path=(*scope.path, (block.name, local or stmt.name)),
            instance=instance,
        )
        inner.names[BLOCK_INPUT] = BROKEN if failed else inputs[0]
        self._name_inputs(block, inner, BROKEN if failed else inputs)
        self.stack.append(block.name)
        reported = len(self.r.diagnostics)
        try:
            out = self.body(block.body, inner, inner.names[BLOCK_INPUT])
        finally:
            self.stack.pop()
        for diag in self.r.diagnostics[reported:]:  # the body's errors name the call, innermost first
            diag.notes.append((f"in block `{block.name}`, called here", stmt.span))
        if failed:
            return self._define(stmt, scope, local, BROKEN)
        instance.output = "" if out is BROKEN else out
        scope.prefixes[stmt.name or local] = prefix
        scope.root().prefixes[local] = prefix
        if out is not BROKEN and act is not None:
            act_stmt = ast.Layer(act[0], stmt.span, None, None, None, (), None, stmt.span)
            act_local = self._name(act_stmt, scope)
            act_name = scope.prefix + act_local
            node = Node(act_name, act[0], [out], act[1], stmt.span, {}, None, scope.path, scope.calls)
            self._add(self._place(node, act_local, scope), stmt.span)
            out = self._define(act_stmt, scope, act_local, act_name)
        return self._define(stmt, scope, local, out)

    def _name_inputs(self, block: ast.Block, scope: Scope, inputs) -> None:
        """The names a block of several inputs gives them (`reads (hidden, residual)`), in its body's
        scope: taken as its layers' names are, so a layer of the body named alike is E0204."""
        for i, p in enumerate(block.inputs):
            if p.name == BLOCK_INPUT:
                self.r.error(
                    "E0204",
                    f"`{BLOCK_INPUT}` is reserved for a block's first input",
                    p.span,
                    [f"choose another name: `{BLOCK_INPUT}` names the first input anyway"],
                )
            elif self._take(scope, p.name, _Claim(p.span, p.name)):
                scope.names[p.name] = BROKEN if inputs is BROKEN else inputs[i]

    def _bind_block(self, stmt: ast.Layer, block: ast.Block, scope: Scope, inputs):
        values = self._evaluate_args(stmt.args, scope)
        if values is None:
            return None, {}
        env: dict = {}
        given: dict[str, object] = {}
        spans: dict[str, Span] = {}  # where each parameter's value is written: the argument or the default
        defaults = Scope(scope.prefix, env, set(), block=block.name)  # where a default sees only `in`
        defaults.names[BLOCK_INPUT] = BROKEN if inputs is BROKEN else inputs[0]
        for i, p in enumerate(block.inputs):  # `residual.channels` as well as `in.channels`
            defaults.names[p.name] = BROKEN if inputs is BROKEN else inputs[i]
        ok = True
        names = [p.name for p in block.params]
        for key, value, arg in values:
            if key is None:
                free = [n for n in names if n not in given]
                if not free:
                    self.r.error(
                        "E0208",
                        f"block `{block.name}` takes {len(names)} argument"
                        f"{'s' if len(names) != 1 else ''}, but gets more",
                        arg.span,
                        [f"its parameters are: {', '.join(names) or 'none'}"],
                    )
                    ok = False
                    continue
                key = free[0]
            if key not in names:
                s = arg.span
                help_, fixes = self._hint(key, names, Span(s.file, s.line, s.col, s.line, s.col + len(key)))
                self.r.error(
                    "E0206",
                    f"block `{block.name}` has no parameter `{key}`",
                    arg.span,
                    help_ + [f"its parameters are: {', '.join(names) or 'none'}"],
                    [(f"`{block.name}` is defined here", block.name_span)],
                    fixes,
                )
                ok = False
                continue
            if key in given:
                self.r.error("E0214", f"`{key}` is given twice", arg.span)
                ok = False
                continue
            given[key] = value
            spans[key] = _origin(arg.value, scope.origins)
        for p in block.params:
            if p.name in given:
                env[p.name] = given[p.name]
            elif p.default is not None:
                spans[p.name] = _origin(p.default, spans)
                try:  # defaults may use earlier parameters, and the sizes of `in`
                    env[p.name] = evaluate(p.default, env, self._sizes(defaults))
                except EvalError as err:
                    self._report(err)
                    ok = False
            else:
                self.r.error(
                    "E0207",
                    f"block `{block.name}` needs its `{p.name}`",
                    stmt.op_span,
                    [f"pass it: {block.name}: ... or {p.name}=..."],
                    [(f"`{p.name}` is declared here", p.span)],
                )
                ok = False
        return (env if ok and self._check_activations(block, env, spans) else None), spans

    def _check_activations(self, block: ast.Block, env: dict, spans: dict[str, Span]) -> bool:
        """A parameter written after `->` in the block is an activation: its value, checked at the
        call (or at its default), must be the word of an activation layer type (E0216)."""
        ok = True
        if block.name not in self._acts:
            self._acts[block.name] = _activation_params(block)
        for name, use in self._acts[block.name].items():
            value = env.get(name)
            op = OPS.get(value) if isinstance(value, str) else None
            if op is not None and op.is_activation:
                continue
            message = (
                None
                if isinstance(value, str)
                else f"`{name}` of block `{block.name}` is an activation, not {_describe(value)}"
            )
            note = (f"`{name}` is the activation here", use)
            word = spans[name] if self._text(spans[name]) == value else None  # a word to replace
            self._unknown_activation(value, spans[name], word, [note], message)
            ok = False
        return ok


def _example(what: str, params) -> str:
    examples = {
        "conv": "conv: 64 @ 3x3",
        "deconv": "deconv: 64 @ 3x3 /2",
        "dense": "dense: 128",
        "maxpool": "maxpool: 2x2",
        "avgpool": "avgpool: 2x2",
        "input": "input image: 3x224x224",
    }
    if what in examples:
        return examples[what]
    return f"{what}: " + " ".join(f"<{p.name}>" for p in params if p.positional)


def reason(err: OSError) -> str:
    if isinstance(err, FileNotFoundError):
        return "no such file"
    if isinstance(err, IsADirectoryError):
        return "it is a directory"
    if isinstance(err, PermissionError):
        return "permission denied"
    return err.strerror or str(err)


# Parsing and analysing take up to ~700 bytes of memory per byte of spec (a file of `a;`), so 1 MiB,
# hundreds of times the largest real spec, keeps a run within 1 GiB; 10 MiB needed 3-7 GiB.
MAX_FILE_BYTES = 2**20


def read_source(path: Path) -> str:
    """Read a spec as UTF-8; OSError for anything that is not a readable text file.

    A NUL byte, or bytes that are not UTF-8, mean the file is not a spec (such as
    /proc/self/environ): it is refused before anything shows an excerpt of it.
    """
    data = read_bytes(path)
    if b"\0" in data:
        raise OSError(22, f"not a text file (a NUL byte at byte {data.index(0)})")
    try:
        return data.decode("utf-8-sig")  # without the byte-order mark some editors write
    except UnicodeDecodeError as err:
        raise OSError(22, f"not a text file (not UTF-8 at byte {err.start})") from None


def read_bytes(path: Path, limit: int = MAX_FILE_BYTES) -> bytes:
    """Read a file of at most `limit` bytes whole (a spec, or a binary `.onnx` model); OSError for
    anything but a regular file.

    Only a regular file is read: a named pipe would block until something writes to it
    (forever, if nothing does), a device may never end, and both are opened without
    blocking so that asking does not block either.
    """
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_NOCTTY", 0))
    except ValueError:  # open() refuses a path with a NUL byte
        raise OSError(22, "the path holds a NUL byte") from None
    except OSError as err:
        if err.errno == errno.ENXIO:  # what opening a socket answers
            raise OSError(err.errno, "it is a socket, not a regular file") from None
        raise
    with os.fdopen(fd, "rb") as handle:
        mode = os.fstat(fd).st_mode
        if stat.S_ISDIR(mode):
            raise IsADirectoryError(21, "it is a directory")
        if not stat.S_ISREG(mode):
            raise OSError(22, f"it is {_file_kind(mode)}, not a regular file")
        data = handle.read(limit + 1)  # no more: a file can grow while it is read
    if len(data) > limit:
        raise OSError(27, f"larger than {limit // 2**20} MiB")
    return data


def _file_kind(mode: int) -> str:
    if stat.S_ISFIFO(mode):
        return "a named pipe"
    if stat.S_ISSOCK(mode):
        return "a socket"
    return "a device"


def resolve(path: Path) -> Path:
    """`path.resolve()`; an OSError, as read_source raises, for a path that cannot name a file."""
    try:
        return path.resolve()
    except ValueError:  # a NUL byte
        raise OSError(22, "the path holds a NUL byte") from None
    except RuntimeError:  # a symlink loop; Python 3.13 raises OSError itself
        raise OSError(40, "a loop of symbolic links") from None


def _display_path(path: Path) -> str:
    try:
        return str(path.relative_to(Path.cwd()))
    except ValueError:
        return str(path)
