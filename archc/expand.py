"""Syntax tree -> Graph: imports, block expansion, repeats, names and arguments.

Everything that can be decided without shapes is decided here: which layer
types and blocks exist, what every argument evaluates to, which layer feeds
which. Shapes come later, in the passes.
"""

from __future__ import annotations

import difflib
import math
from dataclasses import dataclass, field
from pathlib import Path

from . import ast
from .diagnostics import ArchError, Reporter, Span
from .graph import Graph, Node
from .ops import OPS
from .ops.base import REQUIRED, PadPair
from .syntax import parse

MAX_NODES = 200_000
MAX_DEPTH = 64
BLOCK_INPUT = "in"


class _Broken:
    """Stands for the output of a statement that already has an error, so its
    consumers stay quiet instead of piling up follow-on errors."""

    def __repr__(self) -> str:
        return "<broken>"


BROKEN = _Broken()
OUTPUT = "output"  # the statement that declares the network's outputs; not a layer


class EvalError(Exception):
    def __init__(self, message: str, span: Span, help=(), code: str = "E0212"):
        super().__init__(message)
        self.message, self.span, self.help, self.code = message, span, list(help), code


class _TooBigError(Exception):
    pass


def suggest(word: str, candidates) -> list[str]:
    cutoff = 0.5 if len(word) <= 4 else 0.6  # one wrong letter in a short name is a big share of it
    match = difflib.get_close_matches(word, sorted(set(candidates)), n=1, cutoff=cutoff)
    return [f"did you mean `{match[0]}`?"] if match else []


# -- evaluation of argument values -------------------------------------------------


def evaluate(value: ast.Value, env: dict):
    if len(value.parts) == 1:
        return _expr(value.parts[0], env, top=True)
    items: list = []
    for part in value.parts:
        v = _expr(part, env, top=True)
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


def _expr(e, env: dict, top: bool = False):
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
        raise EvalError(
            f"unknown name `{e.id}` in an expression",
            e.span,
            suggest(e.id, env) or ["only block parameters can be used in arithmetic"],
        )
    if isinstance(e, ast.Pair):
        return PadPair((_int(e.first, env), _int(e.second, env)))
    if isinstance(e, ast.BinOp):
        return _arithmetic(e, env)
    raise AssertionError(f"unknown expression {e!r}")  # pragma: no cover


def _arithmetic(e: ast.BinOp, env: dict):
    """Evaluate an operator tree with a stack of its own, not Python's: `1 + 1 + ... + 1` nests as
    deep as it is long, and 1,000 terms overflowed Python's stack. Left before right, as before."""
    todo: list = [(e, False)]
    values: list = []
    while todo:
        node, ready = todo.pop()
        if not isinstance(node, ast.BinOp):
            values.append(_number(node, env))
        elif not ready:
            todo += [(node, True), (node.right, False), (node.left, False)]
        else:
            right = values.pop()
            values.append(_operate(node, values.pop(), right))
    return values[0]


def _operate(e: ast.BinOp, left, right):
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


def _number(e, env):
    v = _expr(e, env)
    if isinstance(v, bool) or not isinstance(v, int | float):
        raise EvalError(f"arithmetic needs numbers, not {_describe(v)}", e.span)
    return v


def _int(e, env):
    v = _number(e, env)
    if not isinstance(v, int):
        raise EvalError(f"expected a whole number, not {v}", e.span, code="E0205")
    return v


# -- checking values against a layer's schema -----------------------------------------


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
    return v  # "any"


_KIND_WORDS = {
    "int": "a whole number",
    "float": "a number",
    "bool": "true or false",
    "shape": "a size such as 3 or 3x3",
    "padding": "a padding: a number, 1x2, (0,1)x(0,1), same, valid or full",
}


def kind_text(p) -> str:
    text = _KIND_WORDS.get(p.kind, "one of " + ", ".join(p.choices))
    if p.choices and p.kind != "choice":
        text += " or " + " or ".join(f"`{c}`" for c in p.choices)
    return text


# -- scopes -------------------------------------------------------------------------------------


@dataclass
class Scope:
    prefix: str  # "" at network level, "b1." inside block instance b1
    env: dict  # block parameters
    reserved: set[str]  # explicit names of this body, never generated
    counters: dict[str, int] = field(default_factory=dict)
    names: dict[str, object] = field(default_factory=dict)  # local name -> node name or BROKEN
    prefixes: dict[str, str] = field(default_factory=dict)  # block instance -> its prefix
    spans: dict[str, Span] = field(default_factory=dict)
    parent: Scope | None = None  # for repeat iterations
    suffix: str = ""
    block: str | None = None  # the block being expanded, None at network level
    calls: tuple[Span, ...] = ()
    path: tuple[tuple[str, str], ...] = ()

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
        return self if self.parent is None else self.parent.root()

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
        )


def _explicit_names(body) -> set[str]:
    names = set()
    for stmt in body:
        if isinstance(stmt, ast.Repeat):
            names |= _explicit_names(stmt.body)
        elif stmt.name:
            names.add(stmt.name)
    return names


# -- the expander ------------------------------------------------------------------------------


class Expander:
    def __init__(self, reporter: Reporter, sources: dict[str, str]):
        self.r = reporter
        self.sources = sources
        self.blocks: dict[str, ast.Block] = {}
        self.graph: Graph | None = None
        self.loaded: set[str] = set()
        self.stack: list[str] = []
        self._reading: str | None = None

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
        scope = Scope("", {}, _explicit_names(net.body))
        try:
            self.body(net.body, scope, None)
        except _TooBigError as err:
            self.r.error(
                "E0213",
                str(err),
                net.span,
                [f"archc handles networks of up to {MAX_NODES:,} layers; check repeat counts"],
            )
        return self.graph

    def body(self, stmts, scope: Scope, prev):
        for stmt in stmts:
            expand = self.repeat if isinstance(stmt, ast.Repeat) else self.statement
            prev = expand(stmt, scope, prev)
        return prev

    def repeat(self, stmt: ast.Repeat, scope: Scope, prev):
        try:
            count = _expr(stmt.count, scope.env)
        except EvalError as err:
            self.r.error(err.code, err.message, err.span, err.help)
            return BROKEN
        if not _is_int(count) or count < 0:
            self.r.error("E0205", f"repeat needs a whole number of at least 0, not {_describe(count)}", stmt.count.span)
            return BROKEN
        if count > MAX_NODES:
            raise _TooBigError(f"repeat {count:,} is more than archc can expand")
        before, reported = len(self.graph), len(self.r.diagnostics)
        for i in range(1, count + 1):
            prev = self.body(stmt.body, scope.iteration(i), prev)
            # A first iteration without errors adds what every later one adds: stop now
            # rather than after expanding 200,000 layers (repeat 1000 { repeat 1000 { ... } }).
            clean = len(self.r.diagnostics) == reported
            if i == 1 and clean and before + (len(self.graph) - before) * count > MAX_NODES:
                raise _TooBigError(f"the network expands to more than {MAX_NODES:,} layers")
        return prev

    def statement(self, stmt: ast.Layer, scope: Scope, prev):
        self._reading = stmt.name  # for the message of a layer that reads itself
        if stmt.op in self.blocks:
            return self.call_block(stmt, scope, prev)
        if stmt.op == OUTPUT:
            return self.output(stmt, scope, prev)
        if stmt.op not in OPS:
            self.r.error(
                "E0201",
                f"unknown layer type `{stmt.op}`",
                stmt.op_span,
                suggest(stmt.op, [*OPS, *self.blocks]) or ["see `docs/language.md` for the layer types"],
            )
            return self._define(stmt, scope, BROKEN)
        op = OPS[stmt.op]
        name = self._name(stmt, scope)
        inputs = self._inputs(stmt, scope, prev, op.min_inputs, op.max_inputs)
        attrs, spans = self._bind(stmt, op, scope)
        act = self._activation(stmt, scope)
        if name is None:
            return BROKEN
        if inputs is BROKEN or attrs is None or act is BROKEN:
            return self._define(stmt, scope, BROKEN)
        if op.name == "input" and scope.block is not None:
            self.r.error(
                "E0215",
                "a block cannot declare network inputs",
                stmt.span,
                ["declare `input` in the network and pass it to the block"],
            )
            return self._define(stmt, scope, BROKEN)
        node = Node(name, op.name, inputs, attrs, stmt.span, spans, act, scope.path, scope.calls)
        self._add(node)
        return self._define(stmt, scope, name)

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

    def _add(self, node: Node) -> None:
        if len(self.graph) >= MAX_NODES:
            raise _TooBigError(f"the network expands to more than {MAX_NODES:,} layers")
        self.graph.add(node)

    def _define(self, stmt: ast.Layer, scope: Scope, value):
        """Make a statement's name refer to its output (or to BROKEN)."""
        if not stmt.name and isinstance(value, str):
            scope.names.setdefault(value[len(scope.prefix) :], value)  # generated names are referable too
        if stmt.name and stmt.name not in scope.names:
            scope.names[stmt.name] = value
            scope.spans[stmt.name] = stmt.name_span
            if scope.parent is not None:  # a repeat iteration: also visible as name_i afterwards
                scope.root().names[stmt.name + scope.suffix] = value
        return value

    def _name(self, stmt: ast.Layer, scope: Scope) -> str | None:
        """The node name for a statement; None (reported) when the name is not usable."""
        if stmt.name:
            if stmt.name == BLOCK_INPUT:
                self.r.error(
                    "E0204", f"`{BLOCK_INPUT}` is reserved for a block's input", stmt.name_span, ["choose another name"]
                )
                return None
            full = scope.prefix + stmt.name + scope.suffix
            if stmt.name in scope.names or full in self.graph.nodes:
                first = scope.spans.get(stmt.name) or self.graph.nodes[full].span
                self.r.error(
                    "E0204",
                    f"`{stmt.name}` is defined twice",
                    stmt.name_span,
                    ["every layer in a network or block needs its own name"],
                    [("first defined here", first)],
                )
                return None
            return full
        base = stmt.op
        while True:
            scope.counters[base] = scope.counters.get(base, 0) + 1
            sep = "_" if base[-1].isdigit() else ""  # relu6_1, not relu61
            local = f"{base}{sep}{scope.counters[base]}"
            if local not in scope.reserved and scope.prefix + local not in self.graph.nodes:
                return scope.prefix + local

    def _inputs(self, stmt: ast.Layer, scope: Scope, prev, lo: int, hi: int | None):
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
                [f"list its inputs in parentheses: {stmt.op} ({', '.join(['a', 'b'][: max(lo, 1)])})"]
                if lo > 1
                else [],
            )
            return BROKEN
        return found

    def _resolve(self, ref: ast.Ref, scope: Scope):
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
        if head in scope.root().reserved or head == BLOCK_INPUT:
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
        self.r.error(
            "E0202",
            f"unknown layer `{ref.text}`",
            ref.span,
            suggest(ref.text, self._all_refs(scope)) or ["inputs name layers defined above"],
        )
        return None

    def _all_refs(self, scope: Scope) -> list[str]:
        names = scope.visible()
        names += [n[len(scope.prefix) :] for n in self.graph.nodes if n.startswith(scope.prefix)]
        return names

    def _evaluate_args(self, args, env):
        out = []
        ok = True
        for arg in args:
            try:
                out.append((arg.name, evaluate(arg.value, env), arg))
            except EvalError as err:
                self.r.error(err.code, err.message, err.span, err.help)
                ok = False
        return out if ok else None

    def _bind(self, stmt: ast.Layer, op, scope: Scope):
        """Match a statement's arguments to a layer type's parameters."""
        values = self._evaluate_args(stmt.args, scope.env)
        if values is None:
            return None, None
        return self.bind_values(values, op.params, op.symbols, stmt.op, stmt.op_span)

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
                    help_ = suggest(value, [*symbols, *by_name]) if isinstance(value, str) else []
                    expect = ", ".join(p.name for p in positional) or "none"
                    self.r.error(
                        "E0208",
                        f"`{what}` does not take {extra} here",
                        arg.span,
                        help_ + [f"its positional arguments are: {expect}; others are written name=value"],
                    )
                    ok = False
                    continue
                key = taken[0].name
            if key not in by_name:
                self.r.error(
                    "E0206",
                    f"`{what}` has no parameter `{key}`",
                    arg.span,
                    suggest(key, by_name) + [f"its parameters are: {', '.join(by_name) or 'none'}"],
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
                self.r.error(
                    "E0205",
                    f"`{what}` {key} must be {kind_text(p)}, not {_describe(value)}",
                    arg.span,
                    suggest(value, p.choices or symbols) if isinstance(value, str) else [],
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

    def _activation(self, stmt: ast.Layer, scope: Scope):
        act = stmt.activation
        if act is None:
            return None
        op = OPS.get(act.name)
        if op is None or not op.is_activation:
            names = [n for n, o in OPS.items() if o.is_activation]
            self.r.error(
                "E0216",
                f"unknown activation `{act.name}`",
                act.span,
                suggest(act.name, names) + [f"activations: {', '.join(names)}"],
            )
            return BROKEN
        values = self._evaluate_args([ast.Arg(None, v, v.span) for v in act.args], scope.env)
        if values is None:
            return BROKEN
        attrs, _spans = self.bind_values(values, op.params, op.symbols, act.name, act.span)
        return BROKEN if attrs is None else (act.name, attrs)

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
            return self._define(stmt, scope, BROKEN)
        if len(self.stack) >= MAX_DEPTH:
            self.r.error("E0210", f"blocks are nested more than {MAX_DEPTH} deep", stmt.op_span)
            return self._define(stmt, scope, BROKEN)
        name = self._name(stmt, scope)
        inputs = self._inputs(stmt, scope, prev, 1, 1)
        env = self._bind_block(stmt, block, scope)
        act = self._activation(stmt, scope)
        if name is None:
            return BROKEN
        if inputs is BROKEN or env is None or act is BROKEN:
            return self._define(stmt, scope, BROKEN)
        local = name[len(scope.prefix) :]
        inner = Scope(
            prefix=name + ".",
            env=env,
            reserved=_explicit_names(block.body),
            block=block.name,
            calls=(*scope.calls, stmt.span),
            path=(*scope.path, (block.name, local)),
        )
        inner.names[BLOCK_INPUT] = inputs[0]
        self.stack.append(block.name)
        try:
            out = self.body(block.body, inner, inputs[0])
        finally:
            self.stack.pop()
        scope.prefixes[stmt.name or local] = name + "."
        scope.root().prefixes[local] = name + "."
        if out is not BROKEN and act is not None:
            act_name = self._name(ast.Layer(act[0], stmt.span, None, None, None, (), None, stmt.span), scope)
            self._add(Node(act_name, act[0], [out], act[1], stmt.span, {}, None, scope.path, scope.calls))
            out = act_name
        return self._define(stmt, scope, out)

    def _bind_block(self, stmt: ast.Layer, block: ast.Block, scope: Scope):
        values = self._evaluate_args(stmt.args, scope.env)
        if values is None:
            return None
        env: dict = {}
        given: dict[str, object] = {}
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
                self.r.error(
                    "E0206",
                    f"block `{block.name}` has no parameter `{key}`",
                    arg.span,
                    suggest(key, names) + [f"its parameters are: {', '.join(names) or 'none'}"],
                    [(f"`{block.name}` is defined here", block.name_span)],
                )
                ok = False
                continue
            if key in given:
                self.r.error("E0214", f"`{key}` is given twice", arg.span)
                ok = False
                continue
            given[key] = value
        for p in block.params:
            if p.name in given:
                env[p.name] = given[p.name]
            elif p.default is not None:
                try:
                    env[p.name] = evaluate(p.default, env)  # defaults may use earlier parameters
                except EvalError as err:
                    self.r.error(err.code, err.message, err.span, err.help)
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
        return env if ok else None


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
    if isinstance(err, UnicodeDecodeError):  # pragma: no cover - raised as ValueError, see read_source
        return "it is not UTF-8 text"
    return err.strerror or str(err)


# Parsing and analysing take up to ~700 bytes of memory per byte of spec (a file of `a;`), so 1 MiB,
# hundreds of times the largest real spec, keeps a run within 1 GiB; 10 MiB needed 3-7 GiB.
MAX_FILE_BYTES = 2**20


def read_source(path: Path) -> str:
    """Read a spec as UTF-8; OSError for anything that is not a readable text file."""
    try:
        if path.is_dir():
            raise IsADirectoryError(21, "it is a directory")
        with path.open("rb") as handle:
            data = handle.read(MAX_FILE_BYTES + 1)  # no more: a device such as /dev/zero never ends
    except ValueError:  # open() refuses a path with a NUL byte
        raise OSError(22, "the path holds a NUL byte") from None
    if len(data) > MAX_FILE_BYTES:
        raise OSError(27, f"larger than {MAX_FILE_BYTES // 2**20} MiB")
    try:
        return data.decode("utf-8-sig")  # without the byte-order mark some editors write
    except UnicodeDecodeError as err:
        raise OSError(22, f"not UTF-8 text (byte {err.start})") from None


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
