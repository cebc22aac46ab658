"""Python expressions as small trees, printed the way `ruff format` prints them.

The generators build every statement from these nodes instead of pasting
strings, so that long lines are wrapped exactly as the formatter would wrap
them: the output is formatted by construction, with no formatter needed at
generation time. Only the shapes the generators emit are supported: calls,
bracketed literals, `a + b` chains, unary minus, subscripts and raw atoms;
and two marks for in-place code: `Temp` (a value nothing else reads) and
`Update` (`x += y` before the statement that reads `x`).
"""

from __future__ import annotations

import json
import keyword
from contextlib import contextmanager
from dataclasses import dataclass

WIDTH = 88  # ruff format's default line length: the generated file has no config of its own
INDENT = "    "


@dataclass(frozen=True)
class Call:
    func: str
    args: tuple = ()
    kwargs: tuple = ()  # (name, value) pairs, in order

    def items(self):
        return [*self.args, *(Kw(k, v) for k, v in self.kwargs)]


@dataclass(frozen=True)
class Kw:
    name: str
    value: object


@dataclass(frozen=True)
class Seq:
    """A list, tuple or dict literal; `explode` keeps one item per line (a magic trailing comma)."""

    open: str
    close: str
    items: tuple
    explode: bool = False


@dataclass(frozen=True)
class Entry:
    """`key: value` inside a dict literal."""

    key: object
    value: object


@dataclass(frozen=True)
class Sum:
    """`a + b + c` (or another operator between every pair of terms)."""

    terms: tuple
    op: str = "+"


@dataclass(frozen=True)
class Neg:
    value: object
    sign: str = "-"  # `*` unpacks an argument: mul_backward(grad, *keep.pop("mul"))


@dataclass(frozen=True)
class Index:
    value: object
    index: str


@dataclass(frozen=True)
class Temp:
    """A new value that nothing but the expression around it reads: code may overwrite it in place.

    Prints as `value`; it only tells the code around it that overwriting is safe.
    """

    value: object


@dataclass(frozen=True)
class Update:
    """The statement `target <op>= value` (`x += y`), and as an expression the updated `target`.

    Not an expression itself: `forward_body` writes the statement, then uses `target`.
    """

    target: str
    value: object
    op: str = "+"


def call(func: str, *args, **kwargs) -> Call:
    """A call; keyword arguments whose value is None are left out (the callee's default)."""
    return Call(func, tuple(args), tuple((k, v) for k, v in kwargs.items() if v is not None))


def lit(value) -> str:
    """A Python literal for a value from a spec: the spec is data and is never pasted as code."""
    if value is None or isinstance(value, bool):
        return repr(value)
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        text = repr(value)
        return text if text not in ("inf", "-inf", "nan") else f'float("{text}")'
    if isinstance(value, str):
        return json.dumps(value)  # double quotes, every control and non-ASCII character escaped
    if isinstance(value, tuple | list):
        inner = ", ".join(lit(v) for v in value)
        return f"({inner},)" if isinstance(value, tuple) and len(value) == 1 else f"({inner})"
    raise TypeError(f"no literal for {value!r}")


def tuple_of(values) -> Seq:
    items = tuple(values)
    return Seq("(", ",)" if len(items) == 1 else ")", items)


def list_of(values, explode: bool = False) -> Seq:
    return Seq("[", "]", tuple(values), explode)


def repeated(call: Call, depth: int, least: int = 3) -> Call:
    """`call` with each run of `least` or more equal arguments written once in a comprehension
    (`nn.Sequential(Block(64), *[Block(256) for _ in range(5)])`), as a person builds a repeat: where
    the comprehension fits on a line of its own, one level deeper than `depth`."""
    out, args, i = [], call.args, 0
    while i < len(args):
        j = i
        while j < len(args) and args[j] == args[i]:
            j += 1
        atom = f"*[{flat(args[i])} for _ in range({j - i})]"
        if j - i >= least and len(INDENT) * (depth + 1) + len(atom) + 1 <= WIDTH:
            out.append(atom)
        else:
            out += args[i:j]
        i = j
    return Call(call.func, tuple(out), call.kwargs)


def flat(expr) -> str:
    """The expression on one line."""
    if isinstance(expr, str):
        return expr
    if isinstance(expr, int):
        return str(expr)
    if isinstance(expr, Call):
        return f"{expr.func}({', '.join(flat(i) for i in expr.items())})"
    if isinstance(expr, Kw):
        return f"{expr.name}={flat(expr.value)}"
    if isinstance(expr, Seq):
        inner = ", ".join(flat(i) for i in expr.items)
        return f"{expr.open}{inner}{',' if expr.explode and expr.items else ''}{expr.close}"
    if isinstance(expr, Entry):
        return f"{flat(expr.key)}: {flat(expr.value)}"
    if isinstance(expr, Sum):
        return f" {expr.op} ".join(_operand(t) for t in expr.terms)
    if isinstance(expr, Neg):
        return expr.sign + _operand(expr.value)
    if isinstance(expr, Index):
        return f"{_operand(expr.value)}[{expr.index}]"
    if isinstance(expr, Temp):
        return flat(expr.value)
    raise TypeError(f"not an expression: {expr!r}")


def _operand(expr) -> str:
    """An operand of `-`, `[]` or another operator: a sum in parentheses, `(a / b)[:, :2]`."""
    return f"({flat(expr)})" if isinstance(expr, Sum) else flat(expr)


def _forced(expr) -> bool:
    """Whether a magic trailing comma inside keeps the expression on several lines."""
    if isinstance(expr, Seq):
        return (expr.explode and bool(expr.items)) or any(_forced(i) for i in expr.items)
    if isinstance(expr, Call):
        return any(_forced(i) for i in expr.items())
    if isinstance(expr, Kw | Entry):
        return _forced(expr.value)
    if isinstance(expr, Neg | Index | Temp):
        return _forced(expr.value)
    if isinstance(expr, Sum):
        return any(_forced(t) for t in expr.terms)
    return False


@contextmanager
def deeper(levels: int):
    """Lines written meanwhile fit `levels` indents deeper than their depth, where they are put (the
    body of a form in the branch of an `if`, nested_numpy.py)."""
    global WIDTH
    WIDTH -= len(INDENT) * levels
    try:
        yield
    finally:
        WIDTH += len(INDENT) * levels


def lines(expr, depth: int, prefix: str = "", suffix: str = "") -> list[str]:
    """`prefix + expr + suffix` at `depth` indents, split at brackets where it does not fit."""
    if isinstance(expr, Temp):
        return lines(expr.value, depth, prefix, suffix)
    pad = INDENT * depth
    one = prefix + flat(expr) + suffix
    if len(pad) + len(one) <= WIDTH and not _forced(expr):
        return [pad + one]
    if isinstance(expr, Kw):
        return lines(expr.value, depth, f"{prefix}{expr.name}=", suffix)
    if isinstance(expr, Entry):
        return lines(expr.value, depth, f"{prefix}{flat(expr.key)}: ", suffix)
    if isinstance(expr, Neg):
        return _operand_lines(expr.value, depth, prefix + expr.sign, suffix)
    if isinstance(expr, Index):
        head = pad + prefix + _operand(expr.value) + "["
        if len(head) <= WIDTH and not _forced(expr.value):
            # as ruff does, the last brackets split first when what comes before them fits
            return [head, INDENT * (depth + 1) + expr.index, f"{pad}]{suffix}"]
        return _operand_lines(expr.value, depth, prefix, f"[{expr.index}]{suffix}")
    if isinstance(expr, Call):
        return _bracketed(f"{prefix}{expr.func}(", expr.items(), ")" + suffix, depth, explode=False)
    if isinstance(expr, Seq):
        # a tuple of several items that does not fit takes one item a line, as ruff splits a collection
        # literal (a magic trailing comma), not all of them on one indented line as a call's arguments
        explode = expr.explode or (expr.open == "(" and len(expr.items) > 1)
        return _bracketed(prefix + expr.open, list(expr.items), expr.close + suffix, depth, explode)
    if isinstance(expr, Sum):
        if len(expr.terms) == 2 and isinstance(expr.terms[1], Call) and expr.terms[1].items():
            # one operator and a call with arguments last: as ruff does, no parentheses of its
            # own when splitting the operand's brackets leaves the line before them short enough
            out = lines(expr.terms[1], depth, f"{prefix}{_operand(expr.terms[0])} {expr.op} ", suffix)
            if len(out) > 1 and len(out[0]) <= WIDTH:
                return out
        return _in_parentheses(expr, depth, prefix, suffix)
    return [pad + one]  # an atom cannot be split


def _operand_lines(expr, depth: int, prefix: str, suffix: str) -> list[str]:
    """The lines of an operand of `-` or `[]`: a sum keeps its parentheses, whatever follows it."""
    return _in_parentheses(expr, depth, prefix, suffix) if isinstance(expr, Sum) else lines(expr, depth, prefix, suffix)


def _in_parentheses(expr: Sum, depth: int, prefix: str, suffix: str) -> list[str]:
    """`(`, the sum on one line or one term a line, `)`."""
    pad, inner = INDENT * depth, INDENT * (depth + 1)
    body = flat(expr)
    if len(inner) + len(body) <= WIDTH:
        return [pad + prefix + "(", inner + body, pad + ")" + suffix]
    out = [pad + prefix + "("]
    for i, term in enumerate(expr.terms):  # one a line, each split in turn when too long
        out += _operand_lines(term, depth + 1, f"{expr.op} " if i else "", "")
    return [*out, pad + ")" + suffix]


def _bracketed(head: str, items: list, tail: str, depth: int, explode: bool) -> list[str]:
    pad = INDENT * depth
    if not items:
        return [pad + head + tail]
    if len(items) == 1 and not explode:
        return [pad + head, *lines(items[0], depth + 1), pad + tail]
    body = ", ".join(flat(i) for i in items)
    if not explode and len(INDENT * (depth + 1)) + len(body) <= WIDTH and not any(_forced(i) for i in items):
        return [pad + head, INDENT * (depth + 1) + body, pad + tail]
    out = [pad + head]
    for item in items:
        out += lines(item, depth + 1, "", ",")
    return [*out, pad + tail]


def statement(target: str | None, expr, depth: int) -> list[str]:
    """`target = expr`, or `expr` alone, as formatted lines."""
    return lines(expr, depth, f"{target} = " if target else "")


def assignment(head: str, expr, depth: int) -> list[str]:
    """`x = expr`, `x += expr` or `return expr` (`head` is `x = `, `x += ` or `return `) as formatted lines.

    As ruff does, the value goes in parentheses on a line of its own, when it fits there,
    if it is a name too long for the line (or, assigned, a name's subscript), or if
    splitting it leaves its first line too long (a call after a long target).
    """
    value = expr.value if isinstance(expr, Temp) else expr
    pad, inner = INDENT * depth, INDENT * (depth + 1)
    own_line = [pad + head + "(", inner + flat(value), pad + ")"]
    atom = isinstance(value, str) or (isinstance(value, Index) and isinstance(value.value, str) and head != "return ")
    fits_alone = len(inner + flat(value)) <= WIDTH and len(own_line[0]) <= WIDTH and not _forced(value)
    if atom and len(pad + head + flat(value)) > WIDTH and fits_alone:
        return own_line
    out = lines(expr, depth, head)
    return own_line if len(out[0]) > WIDTH and fits_alone else out


def deletion(names: list[str], depth: int) -> list[str]:
    """`del a, b` (nothing for no names); as ruff does, one name a line in parentheses when too long."""
    if not names:
        return []
    pad = INDENT * depth
    one = pad + "del " + ", ".join(names)
    if len(one) <= WIDTH or len(names) == 1:
        return [one]
    return [pad + "del (", *(f"{pad}{INDENT}{n}," for n in names), pad + ")"]


def is_identifier(name: str) -> bool:
    return name.isidentifier() and name.isascii() and not keyword.iskeyword(name)
