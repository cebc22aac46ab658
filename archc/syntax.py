"""Text -> syntax tree: the Lark LALR parser and a Transformer into `ast`.

The grammar lives in grammar/arch.lark (shipped inside the wheel as
archc/grammar/arch.lark). Lark caches the compiled LALR tables on disk, so
only the first run pays for building them. A fast reader of the same grammar
(below) reads what it can first; lark, imported only then, reads the rest
and reports every syntax error.
"""

from __future__ import annotations

import re
from collections import deque
from functools import cache
from pathlib import Path
from typing import TYPE_CHECKING, NamedTuple

from . import ast
from .diagnostics import ArchError, Diagnostic, Fix, Span, source_lines

if TYPE_CHECKING:
    from lark import Lark, Token, Tree, UnexpectedInput

_HERE = Path(__file__).resolve().parent
# Installed wheel first, then the source checkout.
_GRAMMAR_PATHS = (_HERE / "grammar" / "arch.lark", _HERE.parent / "grammar" / "arch.lark")


def grammar_path() -> Path:
    for path in _GRAMMAR_PATHS:
        if path.is_file():
            return path
    raise FileNotFoundError("archc's grammar file arch.lark is missing from the installation")


@cache
def parser() -> Lark:
    from lark import Lark  # only texts the fast reader gives up on need lark

    return Lark(
        grammar_path().read_text(encoding="utf-8"),
        parser="lalr",
        propagate_positions=True,
        maybe_placeholders=True,
        postlex=_InsideParentheses(),
        cache=True,
    )


def _continues(separator: str, depth: int) -> bool:
    """Whether a separator token is dropped: a line break inside parentheses continues the
    statement (a `;` still ends it, and is an error there). The one rule of both readers."""
    return depth > 0 and ";" not in separator


_CONDITION_WORDS = {"and": "_AND", "or": "_OR", "not": "_NOT"}


class _InsideParentheses:
    """Lark's post-lexer: drops the separators that `_continues` drops, and makes the words
    `and`, `or` and `not` keywords inside parentheses and in the condition of an `if` (from
    the `if` to its `{`), and names elsewhere (`conv: 3 or` passes the word `or`).

    The grammar cannot say either: a separator is one token, and the parser would need `_SEP?`
    between every two tokens inside parentheses; and LALR merges the states after an atom of a
    condition and of an argument, so the contextual lexer would make `or` a keyword after `(a)`
    in an argument list too.
    """

    # The contextual lexer must produce a separator where the parser does not accept it, and a
    # name everywhere: then a keyword is only ever a whole word (`} elsewhere` is no `else`, `a orb`
    # no `or`), as the fast reader reads it.
    always_accept = ("_SEP", "NAME")

    def process(self, stream):
        depth, condition = 0, False
        for token in stream:
            if token.type == "LPAR":
                depth += 1
            elif token.type == "RPAR":
                depth -= 1
            elif token.type == "_SEP" and _continues(token, depth):
                continue
            elif token.type == "IF":
                condition = True
            elif token.type == "LBRACE" and depth <= 0:
                condition = False
            elif token.type == "NAME" and token in _CONDITION_WORDS and (condition or depth > 0):
                token = token.update(type=_CONDITION_WORDS[token])
            yield token


def _span(file: str, meta) -> Span:
    return Span(file, meta.line, meta.column, meta.end_line, meta.end_column)


def _label(text) -> str:
    """A layer's name as written, without the quotes of a quoted one (`"block1-0"`)."""
    text = str(text)
    return text[1:-1] if text.startswith('"') else text


def _token_span(file: str, tok: Token) -> Span:
    return Span(file, tok.line, tok.column, tok.end_line, tok.end_column)


class _Ends(NamedTuple):
    """From the start of one token to the end of another, as a `meta` for `_span`."""

    first: Token
    last: Token

    @property
    def line(self):
        return self.first.line

    @property
    def column(self):
        return self.first.column

    @property
    def end_line(self):
        return self.last.end_line

    @property
    def end_column(self):
        return self.last.end_column


def to_ast(tree: Tree, file: str) -> ast.Module:
    """Lark's parse tree as the syntax tree."""
    return _transformer()(file).transform(tree)


@cache
def _transformer():
    """The lark Transformer class from parse trees to `ast` (built on first use: lark is
    imported only when the fast reader gives up on a text)."""
    from lark import Transformer_NonRecursive, v_args

    @v_args(meta=True)
    class ToAst(Transformer_NonRecursive):  # a long `1 + 1 + ...` nests as deep as it is long
        def __init__(self, file: str):
            super().__init__()
            self.file = file

        def _s(self, meta) -> Span:
            return _span(self.file, meta)

        # expressions
        def int(self, meta, children):
            return ast.Num(int(children[0]), self._s(meta))

        def float(self, meta, children):
            return ast.Num(float(children[0]), self._s(meta))

        def dims(self, meta, children):
            return ast.Dims(tuple(int(v) for v in str(children[0]).split("x")), self._s(meta))

        def name(self, meta, children):
            return ast.Name(str(children[0]), self._s(meta))

        def pair(self, meta, children):
            return ast.Pair(children[0], children[1], self._s(meta))

        def shape_of(self, meta, children):
            *parts, prop = children
            ref = ast.Ref(tuple(_label(p) for p in parts), _span(self.file, _Ends(parts[0], parts[-1])))
            return ast.ShapeOf(ref, str(prop), _token_span(self.file, prop), self._s(meta))

        def _binop(op):  # noqa: N805 - a factory used while the class body runs
            def method(self, meta, children):
                return ast.BinOp(op, children[0], children[1], self._s(meta))

            return method

        add = _binop("+")
        sub = _binop("-")
        mul = _binop("*")
        floordiv = _binop("//")
        mod = _binop("%")
        or_ = _binop("or")
        and_ = _binop("and")
        del _binop

        def compare(self, meta, children):
            left, op, right = children
            return ast.BinOp(str(op), left, right, self._s(meta))

        def not_(self, meta, children):
            return ast.Not(children[0], self._s(meta))

        def value(self, meta, children):
            return ast.Value(tuple(children), self._s(meta))

        # arguments
        def positional(self, meta, children):
            return [ast.Arg(None, children[0], self._s(meta))]

        def filters_kernel(self, meta, children):
            count, kernel = children
            count_value = ast.Value((count,), count.span)
            return [ast.Arg(None, count_value, count.span), ast.Arg(None, kernel, kernel.span)]

        def stride(self, meta, children):
            return [ast.Arg("stride", children[0], self._s(meta))]

        def keyword(self, meta, children):
            name, value = children
            return [ast.Arg(str(name), value, self._s(meta))]

        def args(self, meta, children):
            return tuple(arg for group in children for arg in group)

        # statements
        def ref(self, meta, children):
            return ast.Ref(tuple(_label(c) for c in children), self._s(meta))

        def inputs(self, meta, children):
            return tuple(children)

        def activation(self, meta, children):
            name, *values = children
            values = tuple(v for v in values if v is not None)
            return ast.Activation(str(name), values, self._s(meta))

        def layer(self, meta, children):
            op, name, inputs, args, act = children
            return ast.Layer(
                op=str(op),
                op_span=_token_span(self.file, op),
                name=_label(name) if name is not None else None,
                name_span=_token_span(self.file, name) if name is not None else None,
                inputs=inputs,
                args=args or (),
                activation=act,
                span=self._s(meta),
            )

        def repeat(self, meta, children):
            return ast.Repeat(children[0], children[1], self._s(meta))

        def if_stmt(self, meta, children):
            *pairs, orelse = children
            branches = tuple(zip(pairs[0::2], pairs[1::2], strict=True))
            return ast.If(branches, orelse or (), self._s(meta))

        def body(self, meta, children):
            return tuple(c for c in children if c is not None)

        def param(self, meta, children):
            return ast.Param(str(children[0]), children[1], self._s(meta))

        def reads(self, meta, children):
            return tuple(ast.Param(str(n), None, _token_span(self.file, n)) for n in children)

        def block_def(self, meta, children):
            name, *params, reads, body = children
            return ast.Block(
                str(name),
                tuple(p for p in params if p is not None),
                body,
                self._s(meta),
                _token_span(self.file, name),
                reads or (),
            )

        def network_def(self, meta, children):
            name, args, body = children
            return ast.Network(str(name), body, self._s(meta), args or ())

        def import_stmt(self, meta, children):
            return ast.Import(str(children[0])[1:-1], self._s(meta))

        def start(self, meta, children):
            items = [c for c in children if c is not None]
            return ast.Module(
                self.file,
                tuple(i for i in items if isinstance(i, ast.Import)),
                tuple(i for i in items if isinstance(i, ast.Block)),
                tuple(i for i in items if isinstance(i, ast.Network)),
            )

    return ToAst


_TOKEN_WORDS = {
    "NAME": "a name",
    "INT": "a whole number",
    "FLOAT": "a number",
    "DIMS": "a shape such as 3x3",
    "STRING": 'a quoted path or name ("file.arch", "block1-0")',
    "_SEP": "a new line",
    "_AND": "`and`",
    "_OR": "`or`",
    "_NOT": "`not`",
    "$END": "the end of the file",
}


def _describe_terminal(name: str) -> str:
    if name in _TOKEN_WORDS:
        return _TOKEN_WORDS[name]
    term = next((t for t in parser().terminals if t.name == name), None)
    if term is not None and term.pattern.type == "str":
        return f"`{term.pattern.value}`"
    return name.lower()


def _syntax_error(file: str, text: str, err: UnexpectedInput) -> Diagnostic:
    from lark import UnexpectedCharacters, UnexpectedToken

    line, col = err.line, err.column
    if isinstance(err, UnexpectedToken):
        tok = err.token
        if tok.type == "$END":
            found = "end of file"
            lines = source_lines(text)
            line, col = len(lines), len(lines[-1]) + 1
        elif tok.type == "_SEP":
            found = "end of line"
        else:
            found = f"`{tok}`"
        expected = sorted({_describe_terminal(t) for t in err.accepts or err.expected})
        message = f"unexpected {found}"
        help_ = [f"expected {_join_or(expected)}"] if expected else []
        width = max(len(str(tok)), 1) if tok.type not in ("$END", "_SEP") else 1
    elif isinstance(err, UnexpectedCharacters):
        char = text[err.pos_in_stream] if err.pos_in_stream < len(text) else "?"
        message = f"unexpected character {char!r}"
        if char == "\r":  # a line end to some editors, as U+2028 is to others: not to archc
            help_ = ["a line ends with a line feed (LF or CR LF); a carriage return alone ends nothing: use LF"]
        elif char.isspace():
            help_ = ["only spaces and tabs separate tokens, and only a line feed ends a line"]
        else:
            help_ = ["names start with a letter or `_`; shapes are written like 3x3; comments start with `#`"]
        width = 1
    else:  # pragma: no cover - lark raises only the two kinds above for LALR
        message, help_, width = str(err), [], 1
    line = line if isinstance(line, int) and line > 0 else 1
    col = col if isinstance(col, int) and col > 0 else 1
    return Diagnostic("error", "E0101", message, Span(file, line, col, line, col + width), help_)


def _join_or(words: list[str]) -> str:
    if len(words) > 8:
        words = words[:8] + ["..."]
    return words[0] if len(words) == 1 else ", ".join(words[:-1]) + " or " + words[-1]


MAX_SYNTAX_ERRORS = 25
MAX_NESTING = 100  # brackets and braces; far beyond any real spec, well within Python's recursion limit
MAX_DIGITS = 4000  # Python refuses to read integers of more than 4,300 digits
_NESTING = re.compile(r"#[^\n]*|\"[^\"\n]*\"|[{}()]")
_LONG_NUMBER = re.compile(rf"[0-9]{{{MAX_DIGITS + 1},}}")


def _beyond_limits(text: str, file: str) -> Diagnostic | None:
    """Nesting or numbers no parser should recurse into or convert: E0213 before parsing."""
    depth = 0
    for match in _NESTING.finditer(text):
        char = match.group()
        if char in "{(":
            depth += 1
            if depth > MAX_NESTING:
                return _limit_error(file, text, match.start(), f"brackets and braces nest more than {MAX_NESTING} deep")
        elif char in "})":
            depth -= 1
    number = _LONG_NUMBER.search(text)
    if number:
        digits = number.end() - number.start()
        return _limit_error(file, text, number.start(), f"a number of {digits:,} digits is more than archc reads")
    return None


def _limit_error(file: str, text: str, pos: int, message: str) -> Diagnostic:
    line = text.count("\n", 0, pos) + 1
    col = pos - (text.rfind("\n", 0, pos) + 1) + 1
    return Diagnostic(
        "error",
        "E0213",
        message,
        Span(file, line, col, line, col + 1),
        ["simplify the spec: no real network needs this"],
    )


# -- the fast path ------------------------------------------------------------------
#
# Lark's LALR parser builds a parse tree of Tree and Token objects, propagates
# positions through it and then the transformer above walks it again; that is
# ~10 us per token, most of the time `archc check` spends on a spec and almost
# all of it on a large one. Below is a direct recursive-descent reader of the
# same grammar that builds the `ast` nodes in one pass, with the spans lark
# would give them. It reads only what it is sure of: on anything else (any
# syntax error, and anything odd) it gives up and `parse` runs lark, which
# then either succeeds or reports the errors exactly as before. So lark stays
# the definition of the language and of every syntax error; this only makes
# the common case fast. tests/test_syntax_fast.py checks that both give the
# same tree, spans included, on every spec, every documented example and
# random and mutated specs.
#
# How it matches lark's contextual lexer: tokens are the grammar's terminals,
# tried in lark's order (FLOAT and DIMS have priority 2, so `1.5` and `3x3`
# are one token; `//` and `->` before `/` and `-`). The words `import`,
# `block`, `network`, `repeat` and `x` lex as NAME and are keywords only where
# the grammar accepts the keyword: the first three at the top level, `repeat`
# at the start of a statement, and `x` right after an expression inside a
# value, which is also the only place lark turns a NAME `x` into the keyword
# (`input x: ...` keeps it a name). Right after a `.` lark takes only a name or
# a whole number (`layer1.0.conv1`), never FLOAT or DIMS. Spans follow lark's propagate_positions: a
# rule spans from the start of its first child, tokens left out of the tree
# included, to the end of its last; a parenthesised expression keeps its own
# span but widens to the parentheses as a child of a larger expression.

_TOKEN = re.compile(
    r"(?P<SEP>(?:[ \t]*(?:#[^\n]*)?(?:\r?\n|;))+)"
    r"|(?P<WS>[ \t]+)"
    r"|(?P<COMMENT>#[^\n]*)"
    r'|(?P<STRING>"[^"\n]*")'
    r"|(?<!\.)(?P<FLOAT>[0-9]+\.[0-9]*(?:[eE][-+]?[0-9]+)?|[0-9]+[eE][-+]?[0-9]+)"
    r"|(?<!\.)(?P<DIMS>[0-9]+(?:x[0-9]+)+)"
    r"|(?P<INT>[0-9]+)"
    r"|(?P<NAME>[A-Za-z_][A-Za-z0-9_]*)"
    r"|(?P<OP>->|//|==|!=|<=|>=|[(),={}:@/+*%.<>-])"
)
_ATOM_START = frozenset({"INT", "FLOAT", "DIMS", "NAME", "("})
_LABEL = frozenset({"NAME", "INT", "STRING"})  # what names a layer, as the grammar's `label`
_COMPARE = frozenset({"==", "!=", "<=", ">=", "<", ">"})
# The binary operators by precedence, as the grammar's rules nest them; `not` binds between `and`
# and the comparisons, and an atom tighter than everything
_COMPARE_LEVEL, _NOT_LEVEL, _ATOM_LEVEL = 4, 3, 7
_LEVELS = {"or": 1, "and": 2, **dict.fromkeys(_COMPARE, _COMPARE_LEVEL), "+": 5, "-": 5, "*": 6, "//": 6, "%": 6}
_ARITHMETIC = frozenset({"+", "-", "*", "//", "%"})
_AHEAD = 1024  # tokens read ahead of the reader: more than any stretch between two `fill` calls


class _NotFastError(Exception):
    """The fast reader is not sure of this text: lark reads it."""


def _token_chunks(text: str, size: int):
    """(kind, text, line, column) of every token, `size` at a time; kind is the operator itself
    for operators. Read as the reader needs them, so that a text that goes wrong early (a
    megabyte of garbage on one line) is given up on early."""
    out = []
    match = _TOKEN.match
    line, line_start, pos, end = 1, 0, 0, len(text)
    depth = 0  # parentheses open: a line break inside them continues the statement
    while pos < end:
        m = match(text, pos)
        if m is None:
            raise _NotFastError
        kind, stop = m.lastgroup, m.end()
        if kind == "SEP":
            if not _continues(m.group(), depth):
                out.append(("SEP", "", line, pos - line_start + 1))
            newlines = text.count("\n", pos, stop)
            if newlines:
                line += newlines
                line_start = text.rindex("\n", pos, stop) + 1
        elif kind != "WS" and kind != "COMMENT":
            value = m.group()
            if kind == "NAME" and depth > 0 and value in _CONDITION_WORDS:
                kind = "OP"  # a keyword inside parentheses, as _InsideParentheses makes it
            out.append((value if kind == "OP" else kind, value, line, pos - line_start + 1))
            if value == "(" or value == ")":
                depth += 1 if value == "(" else -1
        pos = stop
        if len(out) >= size:
            yield out
            out = []
    eof = ("EOF", "", line, pos - line_start + 1)
    yield [*out, eof, eof]  # one token of lookahead past the end is always there


class _Reader:
    """Recursive descent over grammar/arch.lark; positions are (line, column) pairs."""

    def __init__(self, file: str, text: str):
        self.file = file
        self.tokens: list = []
        self.chunks = _token_chunks(text, _AHEAD)
        self.i = 0
        self.fill()

    def fill(self) -> None:
        """Tokenize at least _AHEAD tokens past the next one (or to the end of the text).

        Called at every statement and every step of a loop: no stretch of the grammar read
        between two calls is longer than that (nesting is at most MAX_NESTING deep).
        """
        tokens = self.tokens
        while len(tokens) < self.i + _AHEAD:
            chunk = next(self.chunks, None)
            if chunk is None:
                return
            tokens += chunk

    def kind(self) -> str:
        """The kind of the next token; loops test it, so each of their steps tokenizes ahead."""
        if len(self.tokens) < self.i + _AHEAD:
            self.fill()
        return self.tokens[self.i][0]

    def span(self, start, end) -> Span:
        return Span(self.file, start[0], start[1], end[0], end[1])

    def take(self, kind: str):
        token = self.tokens[self.i]
        if token[0] != kind:
            raise _NotFastError
        self.i += 1
        return token

    @staticmethod
    def start(token):
        return token[2], token[3]

    @staticmethod
    def end(token):
        return token[2], token[3] + len(token[1])

    def token_span(self, token) -> Span:
        return Span(self.file, token[2], token[3], token[2], token[3] + len(token[1]))

    # items
    def module(self) -> ast.Module:
        imports, blocks, networks = [], [], []
        tokens = self.tokens
        if tokens[self.i][0] == "SEP":
            self.i += 1
        while self.kind() != "EOF":
            word = self.take("NAME")
            if word[1] == "import":
                path = self.take("STRING")
                imports.append(ast.Import(path[1][1:-1], self.span(self.start(word), self.end(path))))
            elif word[1] == "block":
                blocks.append(self.block(word))
            elif word[1] == "network":
                name = self.take("NAME")
                args = self.args()[0] if self.kind() != "{" else ()
                body, end = self.body()
                networks.append(ast.Network(name[1], body, self.span(self.start(word), end), args))
            else:
                raise _NotFastError
            kind = tokens[self.i][0]
            if kind == "SEP":
                self.i += 1
            elif kind != "EOF":
                raise _NotFastError
        return ast.Module(self.file, tuple(imports), tuple(blocks), tuple(networks))

    def block(self, word) -> ast.Block:
        name = self.take("NAME")
        self.take("(")
        params = []
        if self.tokens[self.i][0] != ")":
            params.append(self.param())
            while self.kind() == ",":
                self.i += 1
                params.append(self.param())
        self.take(")")
        inputs = []
        if self.kind() == "NAME" and self.tokens[self.i][1] == "reads":
            self.i += 1
            self.take("(")
            inputs.append(self.take("NAME"))
            while self.kind() == ",":
                self.i += 1
                inputs.append(self.take("NAME"))
            self.take(")")
        body, end = self.body()
        reads = tuple(ast.Param(n[1], None, self.token_span(n)) for n in inputs)
        span = self.span(self.start(word), end)
        return ast.Block(name[1], tuple(params), body, span, self.token_span(name), reads)

    def param(self) -> ast.Param:
        name = self.take("NAME")
        if self.tokens[self.i][0] != "=":
            return ast.Param(name[1], None, self.token_span(name))
        self.i += 1
        value, end = self.value()
        return ast.Param(name[1], value, self.span(self.start(name), end))

    def body(self):
        """The statements of `{ ... }` and where the `}` ends."""
        tokens = self.tokens
        self.take("{")
        if tokens[self.i][0] == "SEP":
            self.i += 1
        stmts = []
        while self.kind() != "}":
            first = tokens[self.i]
            if first[0] != "NAME":
                raise _NotFastError
            word = first[1]
            stmts.append(self.repeat() if word == "repeat" else self.conditional() if word == "if" else self.layer())
            kind = tokens[self.i][0]
            if kind == "SEP":
                self.i += 1
            elif kind != "}":
                raise _NotFastError
        close = tokens[self.i]
        self.i += 1
        return tuple(stmts), self.end(close)

    # statements
    def repeat(self) -> ast.Repeat:
        word = self.take("NAME")
        count, _, _ = self.expr()
        body, end = self.body()
        return ast.Repeat(count, body, self.span(self.start(word), end))

    def conditional(self) -> ast.If:
        word = self.take("NAME")
        branches, orelse = [], ()
        tokens = self.tokens
        while True:
            cond, _, _ = self.cond()
            body, end = self.body()
            branches.append((cond, body))
            if not (self.kind() == "NAME" and tokens[self.i][1] == "else"):
                break
            self.i += 1
            if not (tokens[self.i][0] == "NAME" and tokens[self.i][1] == "if"):
                orelse, end = self.body()
                break
            self.i += 1
        return ast.If(tuple(branches), orelse, self.span(self.start(word), end))

    def layer(self) -> ast.Layer:
        tokens = self.tokens
        op = self.take("NAME")
        end = self.end(op)
        name = inputs = activation = None
        args = ()
        if tokens[self.i][0] in _LABEL:
            name = tokens[self.i]
            self.i += 1
            end = self.end(name)
        if tokens[self.i][0] == "(":
            inputs, end = self.inputs()
        if tokens[self.i][0] == ":":
            self.i += 1
            args, end = self.args()
        if tokens[self.i][0] == "->":
            activation, end = self.activation()
        return ast.Layer(
            op=op[1],
            op_span=self.token_span(op),
            name=_label(name[1]) if name is not None else None,
            name_span=self.token_span(name) if name is not None else None,
            inputs=inputs,
            args=args,
            activation=activation,
            span=self.span(self.start(op), end),
        )

    def inputs(self):
        self.take("(")
        refs = [self.ref()]
        while self.kind() == ",":
            self.i += 1
            refs.append(self.ref())
        close = self.take(")")
        return tuple(refs), self.end(close)

    def ref(self) -> ast.Ref:
        first = last = self.label()
        parts = [first[1]]
        while self.kind() == ".":
            self.i += 1
            last = self.label()
            parts.append(last[1])
        return ast.Ref(tuple(_label(p) for p in parts), self.span(self.start(first), self.end(last)))

    def label(self):
        """A name, a whole number or a quoted name: what names a layer (`0` in `layer1.0.conv1`)."""
        if self.tokens[self.i][0] not in _LABEL:
            raise _NotFastError
        return self.take(self.tokens[self.i][0])

    def args(self):
        tokens = self.tokens
        out = []
        end = None
        while True:
            kind = self.kind()
            token = tokens[self.i]
            if kind == "/":
                self.i += 1
                value, end = self.value()
                out.append(ast.Arg("stride", value, self.span(self.start(token), end)))
            elif kind == "NAME" and tokens[self.i + 1][0] == "=":
                self.i += 2
                value, end = self.value()
                out.append(ast.Arg(token[1], value, self.span(self.start(token), end)))
            elif kind in _ATOM_START:
                first, start, end = self.expr()
                if tokens[self.i][0] == "@":
                    self.i += 1
                    kernel, end = self.value()
                    out.append(ast.Arg(None, ast.Value((first,), first.span), first.span))
                    out.append(ast.Arg(None, kernel, kernel.span))
                else:
                    value, end = self.value_from(first, start, end)
                    out.append(ast.Arg(None, value, value.span))
            else:
                break
        if not out:
            raise _NotFastError
        return tuple(out), end

    def activation(self):
        arrow = self.take("->")
        name = self.take("NAME")
        end = self.end(name)
        values = []
        if self.tokens[self.i][0] == "(":
            self.i += 1
            values.append(self.value()[0])
            while self.kind() == ",":
                self.i += 1
                values.append(self.value()[0])
            end = self.end(self.take(")"))
        return ast.Activation(name[1], tuple(values), self.span(self.start(arrow), end)), end

    # values and expressions: each returns the node and the (start, end) of its text,
    # parentheses included
    def value(self):
        return self.value_from(*self.expr())

    def value_from(self, first, start, end):
        parts = [first]
        tokens = self.tokens
        while self.kind() == "NAME" and tokens[self.i][1] == "x":
            self.i += 1
            node, _, end = self.expr()
            parts.append(node)
        return ast.Value(tuple(parts), self.span(start, end)), end

    def cond(self):
        return self._climb(True)

    def expr(self):
        return self._climb(False)

    def _climb(self, conditions: bool):
        """An expression (with `conditions`, a condition) by precedence climbing, with stacks of
        its own: a frame per level of the grammar for each parenthesis overflowed Python's stack
        at the nesting limit. Left-associative, a comparison of two expressions that does not
        chain, and `not` a keyword only where lark accepts it: first, or after `and`, `or`, `not`.
        """
        tokens = self.tokens
        operands: list = []  # (node, start, end, the lowest level of an operator in it outside parentheses)
        operators: list = []  # (op, level, where `not` starts)
        while True:
            while self._word("not", conditions):
                if operators and operators[-1][0] not in ("and", "or", "not"):
                    raise _NotFastError  # `a == not b`: lark's error
                operators.append(("not", _NOT_LEVEL, self.start(tokens[self.i])))
                self.i += 1
            if conditions and tokens[self.i][0] == "NAME" and tokens[self.i][1] in _CONDITION_WORDS:
                raise _NotFastError  # a keyword where an operand should be: lark's error
            node, start, end = self.atom()
            if conditions and isinstance(node, ast.ShapeOf) and not _CONDITION_WORDS.keys().isdisjoint(node.ref.parts):
                raise _NotFastError  # `in.or` in a condition: a keyword, lark's error
            if conditions and isinstance(node, ast.ShapeOf) and node.prop in _CONDITION_WORDS:
                raise _NotFastError
            operands.append((node, start, end, _ATOM_LEVEL))
            kind = self.kind()
            op = "and" if self._word("and", conditions) else "or" if self._word("or", conditions) else kind
            level = _LEVELS.get(op)
            if level is None or (not conditions and level <= _COMPARE_LEVEL):
                break
            while operators and operators[-1][1] >= level:
                self._reduce(operands, operators)
            operators.append((op, level, None))
            self.i += 1
        while operators:
            self._reduce(operands, operators)
        node, start, end, _ = operands[0]
        return node, start, end

    def _word(self, word: str, conditions: bool) -> bool:
        """Whether the next token is the keyword `word`: the tokenizer makes it one inside
        parentheses, and a condition (`conditions` at depth 0: an `if`'s) makes it one too."""
        kind, text = self.kind(), self.tokens[self.i][1]  # kind() reads ahead: a loop tests this
        return text == word and (kind == word or (conditions and kind == "NAME"))

    def _reduce(self, operands: list, operators: list) -> None:
        op, level, start = operators.pop()
        if op == "not":
            node, _, end, _ = operands.pop()
            operands.append((ast.Not(node, self.span(start, end)), start, end, level))
            return
        right, left = operands.pop(), operands.pop()
        if level == _COMPARE_LEVEL and min(left[3], right[3]) <= _COMPARE_LEVEL:
            raise _NotFastError  # comparisons do not chain
        node = ast.BinOp(op, left[0], right[0], self.span(left[1], right[2]))
        operands.append((node, left[1], right[2], level))

    def atom(self):
        token = self.tokens[self.i]
        self.i += 1
        kind, text = token[0], token[1]
        start, end = self.start(token), self.end(token)
        if kind == "INT":
            return ast.Num(int(text), self.span(start, end)), start, end
        if kind == "NAME":
            if self.tokens[self.i][0] != ".":
                return ast.Name(text, self.span(start, end)), start, end
            self.i -= 1
            ref = self.ref()
            if len(ref.parts) < 2:
                raise _NotFastError
            prop = self.tokens[self.i - 1]
            end = self.end(prop)
            head = ast.Ref(ref.parts[:-1], Span(self.file, *start, *self.end(self.tokens[self.i - 3])))
            return ast.ShapeOf(head, prop[1], self.token_span(prop), self.span(start, end)), start, end
        if kind == "DIMS":
            return ast.Dims(tuple(int(v) for v in text.split("x")), self.span(start, end)), start, end
        if kind == "FLOAT":
            return ast.Num(float(text), self.span(start, end)), start, end
        if kind != "(":
            raise _NotFastError
        inner, _, _ = self.cond()
        if self.tokens[self.i][0] == ",":
            if isinstance(inner, ast.Not) or (isinstance(inner, ast.BinOp) and inner.op not in _ARITHMETIC):
                raise _NotFastError  # a pair is of two expressions
            self.i += 1
            second, _, _ = self.expr()
            end = self.end(self.take(")"))
            return ast.Pair(inner, second, self.span(start, end)), start, end
        end = self.end(self.take(")"))
        return inner, start, end


def _read_fast(text: str, file: str) -> ast.Module | None:
    """The tree of a text the fast reader is sure of, else None (lark decides)."""
    try:
        return _Reader(file, text).module()
    except Exception:  # _NotFastError, or anything unforeseen: lark reads it instead
        return None


def parse(text: str, file: str = "<string>") -> ast.Module:
    """Parse one file's text; raises ArchError listing its syntax errors.

    A text without errors is read by the fast reader above when it can; the
    rest, and every text with errors, by lark (`_lark_tree`).
    """
    limit = _beyond_limits(text, file)
    if limit is not None:
        raise ArchError([limit], {file: text})
    fast = _read_fast(text, file)
    if fast is not None:
        return fast
    return to_ast(_lark_tree(text, file), file)


# -- lark, and recovery from syntax errors ------------------------------------------
#
# After an error the offending line is blanked out (or, where it opens a body,
# replaced by an empty body opener, so that its lines are still read as a
# body) and the text is read again, so the errors of later lines are found in
# the same run. Reading it again from the start would cost a whole parse per
# error: 25 errors in a 1 MiB text took minutes. But nothing before the
# changed line changes, so the parser resumes where that line began: from a
# checkpoint, the parser's state just before the separator token that holds
# the line feed ending the line before. Every line feed is in a separator,
# and the state stack is as deep as the nesting (lark turns `stmt (_SEP
# stmt)*` into a left-recursive rule), so a checkpoint costs a copy of a few
# numbers, and the errors come out exactly as from a fresh parse of the
# changed text (tests/test_hostile_syntax.py compares the two). Recovery
# stops at the end of the file, on a line that already failed, or after
# MAX_SYNTAX_ERRORS; the line numbers stay those of the file.


class _Checkpoint(NamedTuple):
    """The parser just before a token that holds a line feed (a separator)."""

    states: list
    start: int  # the token's offset in the text, its end, line and column
    end: int
    line: int
    column: int
    depth: int  # braces open before it


class _LarkRun:
    """One run of lark's LALR parser over a text, from its start or resumed at a checkpoint."""

    def __init__(self, text: str, resume: _Checkpoint | None = None):
        self.interactive = parser().parse_interactive(text)
        self.checkpoints: deque[_Checkpoint] = deque(maxlen=2)  # recovery needs the last or the one before
        self.depth = 0
        if resume is not None:
            state = self.interactive.parser_state
            state.state_stack[:] = resume.states
            state.value_stack[:] = [None] * (len(resume.states) - 1)
            state.parse_conf.callbacks = {}  # after an error the tree is not needed, only the next errors
            counter = self.interactive.lexer_thread.state.line_ctr
            counter.char_pos, counter.line, counter.column = resume.start, resume.line, resume.column
            counter.line_start_pos = resume.start - resume.column + 1
            self.depth = resume.depth

    def run(self, stop: int | None = None) -> Tree | None:
        """Parse to the end of the text and give lark's tree; with `stop`, only up to the first
        token that starts at or after that offset (then None). Raises lark's UnexpectedInput."""
        from lark.exceptions import UnexpectedToken

        state = self.interactive.parser_state
        token = None
        try:
            for token in self.interactive.lexer_thread.lex(state):
                if stop is not None and token.start_pos >= stop:
                    return None
                if "\n" in token:
                    where = (token.start_pos, token.end_pos, token.line, token.column, self.depth)
                    self.checkpoints.append(_Checkpoint(list(state.state_stack), *where))
                elif token.type == "LBRACE":
                    self.depth += 1
                elif token.type == "RBRACE":
                    self.depth -= 1
                state.feed_token(token)
            return None if stop is not None else self.interactive.feed_eof(token)
        except UnexpectedToken as err:
            err.interactive_parser = self.interactive  # what it accepts there, for the message
            raise

    def checkpoint_before_offset(self, offset: int) -> _Checkpoint | None:
        """The last checkpoint before `offset`: resuming there reads the unchanged lines between
        it and `offset` again (a statement that runs over them inside parentheses)."""
        return next((c for c in reversed(self.checkpoints) if c.end <= offset), None)

    def checkpoint_before(self, offset: int) -> _Checkpoint | None:
        """The checkpoint at the separator that holds the line feed at `offset`."""
        return next((c for c in self.checkpoints if c.start <= offset < c.end), None)


def _lark_tree(text: str, file: str) -> Tree:
    """Lark's tree of `text`; ArchError with every syntax error, recovering as described above."""
    from lark import UnexpectedInput

    errors: list[Diagnostic] = []
    current = text
    run = _LarkRun(text)
    while True:
        try:
            tree = run.run()
        except UnexpectedInput as err:
            failure = err
        else:
            if not errors:
                return tree
            break
        diag = _syntax_error(file, current, failure)
        if any(d.span.line == diag.span.line for d in errors):
            break  # the repair did not help: what follows would only echo this error
        errors.append(diag)
        start = _error_line_start(current, failure)
        resume = run.checkpoint_before(start - 1) if start > 0 else None
        if start > 0 and resume is None:  # the line break before it continued a statement in parentheses
            resume = run.checkpoint_before_offset(start)
            if resume is None:
                break
        continued = _add_continuation_hint(diag, current, failure, resume)
        if continued is None:
            _add_division_hint(diag, current, failure, resume)
        if len(errors) == MAX_SYNTAX_ERRORS:
            break
        depth = resume.depth + _braces(current, resume.end, start) if resume is not None else 0
        if continued is not None and continued > start:  # the rest of the split statement would only echo this
            current = _without_line(current, continued, depth) or current
        current = _without_line(current, start, depth)
        if current is None:
            break
        run = _LarkRun(current, resume)
    raise ArchError(errors, {file: text})


_CONTINUATION_HELP = (
    "a statement ends at the end of its line: it continues on the next line only inside parentheses"
    " `( ... )`; join the two lines"
)


def _add_continuation_hint(diag: Diagnostic, text: str, err: UnexpectedInput, resume: _Checkpoint | None):
    """A statement split over two lines outside parentheses: `conv: 64 @` / `3x3`, or `conv: 64 @ 3x3` / `/2`.

    The error is at the line break (the statement is unfinished), or at the
    first token of the next line (no statement starts so), or at the `=` of a
    keyword argument that starts it, or after an `else` that starts it (`}` /
    `else {`). When joining the two
    lines makes the joined line parse, say that a line break ends a statement,
    with the join as the fix, and give the offset of the second line (None when
    the hint does not apply).
    """
    token = getattr(err, "token", None)
    if token is None or token.type == "$END":
        return None
    if token.type == "_SEP":
        brk = text.find("\n", token.start_pos, token.end_pos)
        if brk < 0 or text[token.start_pos : brk].strip(" \t\r"):
            return None  # a `;` or a comment ends the statement on purpose
    else:
        brk = text.rfind("\n", 0, token.start_pos)
        lead = text[brk + 1 : token.start_pos].split()
        if brk < 0 or not (lead == [] or (token == "=" and len(lead) == 1) or lead == ["else"]):
            return None  # not where a continuation fails: its first token, the `=` of a keyword argument, `else {`
    first = text.rfind("\n", 0, brk) + 1
    before = text[first:brk].rstrip("\r")
    if not before.strip() or "#" in before or before.rstrip().endswith(";"):
        return None  # nothing to continue, or a comment that joining would swallow
    after = brk + 1
    while text[after : after + 1] in (" ", "\t"):
        after += 1
    if text[after : after + 1] in ("", "\n", "\r", "#"):
        return None
    cut = brk - 1 if text[brk - 1] == "\r" else brk
    joined = text[:cut] + " " + text[after:]
    end = joined.find("\n", cut)
    if not _parses_to(joined, resume, len(joined) + 1 if end < 0 else end + 1):
        return None
    line = text.count("\n", 0, cut) + 1
    span = Span(diag.span.file, line, cut - first + 1, line + 1, after - brk)
    diag.help.insert(0, _CONTINUATION_HELP)
    diag.fixes.append(Fix(span, " "))
    return brk + 1


def _parses_to(text: str, resume: _Checkpoint | None, stop: int) -> bool:
    """Whether `text` parses (from `resume`) up to the first token at or after offset `stop`.

    The contextual lexer refuses a token the parser cannot take before the run sees
    it, so an error at or after `stop` is still success.
    """
    from lark import UnexpectedInput

    try:
        _LarkRun(text, resume).run(stop=stop)
    except UnexpectedInput as err:
        token = getattr(err, "token", None)
        where = token.start_pos if token is not None and token.type != "$END" else err.pos_in_stream
        return where is not None and where >= stop
    return True


def _add_division_hint(diag: Diagnostic, text: str, err: UnexpectedInput, resume: _Checkpoint | None) -> None:
    """`ch / 2 @ 1x1` where `ch // 2` was meant: `/` starts a stride, `//` divides.

    When writing `//` for the last `/` before the error makes its line parse,
    say so first, with that edit as the fix.
    """
    token = getattr(err, "token", None)
    if token is None or token.type == "$END":
        return
    start = text.rfind("\n", 0, token.start_pos) + 1
    slash = _last_slash(text, start, token.start_pos + 1)  # the failing token may be the `/`
    if slash is None:
        return
    changed = text[:slash] + "//" + text[slash + 1 :]
    end = changed.find("\n", slash)
    from lark import UnexpectedInput

    try:
        _LarkRun(changed, resume).run(stop=len(changed) + 1 if end < 0 else end + 1)
    except UnexpectedInput:
        return
    line, col = diag.span.line, slash - start + 1
    diag.help.insert(0, "`/` starts a stride, it does not divide: write `//` to divide")
    diag.fixes.append(Fix(Span(diag.span.file, line, col, line, col + 1), "//"))


def _last_slash(text: str, start: int, stop: int) -> int | None:
    """The offset of the last `/` operator that starts before `stop`, from `start` on (none in comments)."""
    slash, pos = None, start
    while pos < stop:
        m = _TOKEN.match(text, pos)
        if m is None:
            break
        if m.group() == "/":
            slash = pos
        pos = m.end()
    return slash


def _error_line_start(text: str, err: UnexpectedInput) -> int:
    """The offset at which the line of an error (as `_syntax_error` reports it) starts."""
    token = getattr(err, "token", None)
    if token is not None and token.type == "$END":  # reported on the last line
        end = len(text) - 1 if text.endswith("\n") else len(text)
    else:
        end = token.start_pos if token is not None else err.pos_in_stream
    return text.rfind("\n", 0, end) + 1


def _braces(text: str, begin: int, end: int) -> int:
    """How many more braces open than close in `text[begin:end]` (none in comments or strings)."""
    count = 0
    for match in _NESTING.finditer(text, begin, end):
        count += {"{": 1, "}": -1}.get(match.group(), 0)
    return count


def _without_line(text: str, start: int, depth: int) -> str | None:
    """The text with the line at offset `start` emptied; None when there is nothing left to skip.

    `depth` is how many braces are open before it.
    """
    end = text.find("\n", start)
    end = len(text) if end < 0 else end
    line = text[start:end]
    if not line.strip():
        return None
    code = line.split("#", 1)[0]
    opens, closes = code.count("{"), code.count("}")
    if opens > closes:  # keep the body it opens, so its lines are still parsed as a body
        opener = "repeat 1 {" if depth > 0 else "block _() {"
        line = opener + "{" * (opens - closes - 1)
    elif closes > opens:
        line = "}" * (closes - opens)
    else:
        line = ""
    return text[:start] + line + text[end:]
