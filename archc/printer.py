"""Syntax tree -> `.arch` text: the inverse of archc.syntax.

`format_module` prints any `ast.Module` as a spec that parses back to the
same tree (up to spans): blocks, then the network; each statement on one
line, the type column aligned, inputs left out where a statement reads the
one above it (the language's default), `stride=` written `/S` and a
convolution's filters and kernel `F @ K`. Comments come from the caller:
lines above a statement, at the end of its line, and at the top and the
bottom of the file. `archc import` prints imported networks with it.
"""

from __future__ import annotations

import re

from . import ast

INDENT = "  "
_AT = frozenset({"conv", "deconv"})  # filters @ kernel
_PRECEDENCE = {"+": 1, "-": 1, "*": 2, "//": 2, "%": 2, "or": -3, "and": -2}
_PRECEDENCE.update(dict.fromkeys(("==", "!=", "<", "<=", ">", ">="), 0))  # one comparison: `a < b < c` is no expression
_NOT = -1
_VALUE = 0.5  # a value's expression: a condition in it is parenthesised, `bias=(stride == 1)`


def format_module(
    module: ast.Module,
    *,
    notes: dict[str, list[str]] | None = None,
    after: dict[str, str] | None = None,
    header: list[str] | None = None,
    footer: list[str] | None = None,
) -> str:
    """The module as `.arch` text. `notes` (comment lines above) and `after` (end-of-line comments)
    are keyed by statement name; a block's statements are keyed `block.name`."""
    printer = _Printer(notes or {}, after or {})
    out: list[str] = [f"# {line}" if line else "#" for line in header or ()]
    if out:
        out.append("")
    for imp in module.imports:
        out.append(f'import "{imp.path}"')
    if module.imports:
        out.append("")
    for block in module.blocks:
        params = ", ".join(
            p.name + (f"={format_value(p.default)}" if p.default is not None else "") for p in block.params
        )
        reads = f" reads ({', '.join(p.name for p in block.inputs)})" if block.inputs else ""
        out.append(f"block {block.name}({params}){reads} {{")
        out += printer.body(block.body, 1, first_reads="in", scope=block.name + ".")
        out += ["}", ""]
    for net in module.networks:
        settings = f" {format_args('network', net.args)}" if net.args else ""
        out.append(f"network {net.name}{settings} {{")
        out += printer.body(net.body, 1, first_reads=None, scope="")
        out += [f"{INDENT}# {line}" if line else f"{INDENT}#" for line in footer or ()]
        out.append("}")
    return "\n".join(out) + "\n"


class _Printer:
    def __init__(self, notes: dict[str, list[str]], after: dict[str, str]):
        self.notes, self.after = notes, after

    def body(self, stmts, depth: int, first_reads: str | None, scope: str) -> list[str]:
        layers = [s for s in stmts if isinstance(s, ast.Layer)]
        width = max((len(s.op) for s in layers if s.op != "output"), default=0)
        pad = INDENT * depth
        out: list[str] = []
        prev = first_reads
        for stmt in stmts:
            if isinstance(stmt, ast.Repeat):
                out.append(f"{pad}repeat {format_expr(stmt.count)} {{")
                out += self.body(stmt.body, depth + 1, prev, scope)
                out.append(f"{pad}}}")
                prev = _last_name(stmt.body) or prev
                continue
            if isinstance(stmt, ast.If):
                out += self.conditional(stmt, depth, prev, scope)
                prev = None  # which branch ran is the caller's to know: name what is read after it
                continue
            key = scope + (stmt.name or "")
            out += [f"{pad}# {line}" if line else f"{pad}#" for line in self.notes.get(key, ())]
            text = format_layer(stmt, prev, width)
            comment = self.after.get(key) if stmt.name else None
            out.append(f"{pad}{text}" + (f"  # {comment}" if comment else ""))
            if stmt.op != "output":
                prev = stmt.name
        return out

    def conditional(self, stmt: ast.If, depth: int, prev: str | None, scope: str) -> list[str]:
        """`if COND { ... } else if ... { ... } else { ... }`, each `}` and `else` on one line."""
        pad = INDENT * depth
        out = []
        for i, (cond, body) in enumerate(stmt.branches):
            out.append(f"{pad}{'} else ' if i else ''}if {format_expr(cond, -10)} {{")
            out += self.body(body, depth + 1, prev, scope)
        if stmt.orelse:
            out.append(f"{pad}}} else {{")
            out += self.body(stmt.orelse, depth + 1, prev, scope)
        return [*out, f"{pad}}}"]


def _last_name(stmts) -> str | None:
    for stmt in reversed(stmts):
        if isinstance(stmt, ast.Repeat | ast.If):
            return None  # names inside a repeat are suffixed: the caller names what it reads
        if stmt.op != "output":
            return stmt.name
    return None


def format_layer(stmt: ast.Layer, prev: str | None = None, width: int = 0) -> str:
    """One statement; `(inputs)` left out when it reads just `prev`, the statement above."""
    if stmt.op == "output":
        return f"output ({', '.join(_ref(r) for r in stmt.inputs or ())})"
    parts = [stmt.op.ljust(width) if stmt.name else stmt.op]
    if stmt.name:
        parts.append(_label(stmt.name))
    refs = [_ref(r) for r in stmt.inputs or ()]
    if refs and not (len(refs) == 1 and stmt.inputs[0].text == prev):
        parts.append(f"({', '.join(refs)})")
    text = " ".join(parts).rstrip()
    if stmt.args:
        text += ": " + format_args(stmt.op, stmt.args)
    if stmt.activation is not None:
        act = stmt.activation
        text += f" -> {act.name}" + (f"({', '.join(format_value(v) for v in act.args)})" if act.args else "")
    return text


def _label(name: str) -> str:
    """A name as the grammar reads it back: quoted unless it is a word or a whole number (`"block1-0"`)."""
    return name if re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*|[0-9]+", name) else f'"{name}"'


def _ref(ref: ast.Ref) -> str:
    return ".".join(_label(part) for part in ref.parts)


def format_args(op: str, args) -> str:
    from .ops import OPS

    words_of = {(key, repr(value)): word for word, (key, value) in getattr(OPS.get(op), "symbols", {}).items()}
    words: list[str] = []
    positional = [a for a in args if a.name is None]
    at = op in _AT and len(positional) >= 2 and args[0] is positional[0] and args[1] is positional[1]
    for i, arg in enumerate(args):
        if at and i == 1:
            continue
        value = format_value(arg.value)
        if at and i == 0:
            words.append(f"{value} @ {format_value(args[1].value)}")
        elif arg.name is None:
            words.append(value)
        elif (arg.name, repr(_literal(arg.value))) in words_of:
            words.append(words_of[(arg.name, repr(_literal(arg.value)))])  # `ceil`, not `ceil=true`
        elif arg.name == "stride":
            words.append(f"/{value}" if _simple(arg.value) else f"/({value})")
        else:
            words.append(f"{arg.name}={value}")
    return " ".join(words)


def _literal(value: ast.Value):
    """The value of a one-part literal (`true`, `same`, 3), else None."""
    if len(value.parts) != 1:
        return None
    part = value.parts[0]
    if isinstance(part, ast.Name):
        return {"true": True, "false": False}.get(part.id, part.id)
    return part.value if isinstance(part, ast.Num) else None


def _simple(value: ast.Value) -> bool:
    return len(value.parts) > 1 or not isinstance(value.parts[0], ast.BinOp)


def format_value(value: ast.Value) -> str:
    parts = value.parts
    if len(parts) == 1:
        return format_expr(parts[0])
    if all(isinstance(p, ast.Num | ast.Dims) for p in parts):
        return "x".join(format_expr(p) for p in parts)  # 3x3: one shape token
    text = []
    for i, p in enumerate(parts):
        piece = format_expr(p)
        if i and not (isinstance(p, ast.Pair) or isinstance(parts[i - 1], ast.Pair)):
            text.append(" x ")  # a name or an expression: `k x k`
        elif i:
            text.append("x")
        text.append(piece)
    return "".join(text)


def format_expr(e, parent: float = _VALUE) -> str:
    if isinstance(e, ast.Num):
        return _number(e.value)
    if isinstance(e, ast.Name):
        return e.id
    if isinstance(e, ast.Dims):
        return "x".join(str(v) for v in e.values)
    if isinstance(e, ast.Pair):
        return f"({format_expr(e.first)},{format_expr(e.second)})"
    if isinstance(e, ast.BinOp):
        level = _PRECEDENCE[e.op]
        left = level + 1 if level == 0 else level  # comparisons do not chain
        text = f"{format_expr(e.left, left)} {e.op} {format_expr(e.right, level + 1)}"
        return f"({text})" if level < parent else text
    if isinstance(e, ast.Not):
        text = f"not {format_expr(e.operand, _NOT)}"
        return f"({text})" if parent > _NOT else text
    if isinstance(e, ast.ShapeOf):
        return f"{e.ref.text}.{e.prop}"
    raise TypeError(f"not an expression: {e!r}")  # pragma: no cover


def _number(value) -> str:
    if isinstance(value, bool):  # pragma: no cover - booleans are names in the tree
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    text = repr(float(value))
    return text if "e" in text or "." in text else text + ".0"
