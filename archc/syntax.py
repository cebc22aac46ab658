"""Text -> syntax tree: the Lark LALR parser and a Transformer into `ast`.

The grammar lives in grammar/arch.lark (shipped inside the wheel as
archc/grammar/arch.lark). Lark caches the compiled LALR tables on disk, so
only the first run pays for building them.
"""

from __future__ import annotations

import re
from functools import cache
from pathlib import Path

from lark import Lark, Token, Transformer_NonRecursive, UnexpectedCharacters, UnexpectedInput, UnexpectedToken, v_args

from . import ast
from .diagnostics import ArchError, Diagnostic, Span

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
    return Lark(
        grammar_path().read_text(encoding="utf-8"),
        parser="lalr",
        propagate_positions=True,
        maybe_placeholders=True,
        cache=True,
    )


def _span(file: str, meta) -> Span:
    return Span(file, meta.line, meta.column, meta.end_line, meta.end_column)


def _token_span(file: str, tok: Token) -> Span:
    return Span(file, tok.line, tok.column, tok.end_line, tok.end_column)


@v_args(meta=True)
class _ToAst(Transformer_NonRecursive):  # a long `1 + 1 + ...` nests as deep as it is long
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

    def _binop(op):  # noqa: N805 - a factory used while the class body runs
        def method(self, meta, children):
            return ast.BinOp(op, children[0], children[1], self._s(meta))

        return method

    add = _binop("+")
    sub = _binop("-")
    mul = _binop("*")
    floordiv = _binop("//")
    mod = _binop("%")
    del _binop

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
        return ast.Ref(tuple(str(c) for c in children), self._s(meta))

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
            name=str(name) if name is not None else None,
            name_span=_token_span(self.file, name) if name is not None else None,
            inputs=inputs,
            args=args or (),
            activation=act,
            span=self._s(meta),
        )

    def repeat(self, meta, children):
        return ast.Repeat(children[0], children[1], self._s(meta))

    def body(self, meta, children):
        return tuple(c for c in children if c is not None)

    def param(self, meta, children):
        return ast.Param(str(children[0]), children[1], self._s(meta))

    def block_def(self, meta, children):
        name, *params, body = children
        return ast.Block(
            str(name), tuple(p for p in params if p is not None), body, self._s(meta), _token_span(self.file, name)
        )

    def network_def(self, meta, children):
        return ast.Network(str(children[0]), children[1], self._s(meta))

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


_TOKEN_WORDS = {
    "NAME": "a name",
    "INT": "a whole number",
    "FLOAT": "a number",
    "DIMS": "a shape such as 3x3",
    "STRING": 'a quoted path ("file.arch")',
    "_SEP": "a new line",
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
    line, col = err.line, err.column
    if isinstance(err, UnexpectedToken):
        tok = err.token
        if tok.type == "$END":
            found = "end of file"
            lines = text.splitlines() or [""]
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


def parse(text: str, file: str = "<string>") -> ast.Module:
    """Parse one file's text; raises ArchError listing its syntax errors.

    After an error the parser starts again with the offending line blanked out
    (or, where it opens a body, replaced by an empty body opener), so the
    errors of later lines are found in the same run. Line numbers stay those
    of the file. Recovery stops at the end of the file, on a line that
    already failed, or after MAX_SYNTAX_ERRORS.
    """
    limit = _beyond_limits(text, file)
    if limit is not None:
        raise ArchError([limit], {file: text})
    errors: list[Diagnostic] = []
    current = text
    while True:
        try:
            tree = parser().parse(current)
        except UnexpectedInput as err:
            diag = _syntax_error(file, current, err)
            if any(d.span.line == diag.span.line for d in errors):
                break  # the repair did not help: what follows would only echo this error
            errors.append(diag)
            current = _without_line(current, diag.span.line)
            if current is None or len(errors) == MAX_SYNTAX_ERRORS:
                break
            continue
        if not errors:
            return _ToAst(file).transform(tree)
        break
    raise ArchError(errors, {file: text})


def _without_line(text: str, number: int) -> str | None:
    """The text with line `number` emptied; None when there is nothing left to skip."""
    lines = text.split("\n")
    if not 1 <= number <= len(lines) or not lines[number - 1].strip():
        return None
    line = lines[number - 1]
    code = line.split("#", 1)[0]
    opens, closes = code.count("{"), code.count("}")
    if opens > closes:  # keep the body it opens, so its lines are still parsed as a body
        depth = _depth("\n".join(lines[: number - 1]))
        opener = "repeat 1 {" if depth > 0 else "block _() {"
        lines[number - 1] = opener + "{" * (opens - closes - 1)
    elif closes > opens:
        lines[number - 1] = "}" * (closes - opens)
    else:
        lines[number - 1] = ""
    return "\n".join(lines)


def _depth(text: str) -> int:
    depth = 0
    for line in text.split("\n"):
        code = line.split("#", 1)[0]
        depth += code.count("{") - code.count("}")
    return depth
