"""The syntax tree of a .arch file, before blocks are expanded.

Plain frozen dataclasses, each with the span it came from, so every later
error can point at the exact text that caused it.
"""

from __future__ import annotations

from dataclasses import dataclass

from .diagnostics import Span

# -- expressions -------------------------------------------------------------


@dataclass(frozen=True)
class Num:
    value: int | float
    span: Span


@dataclass(frozen=True)
class Name:
    id: str
    span: Span


@dataclass(frozen=True)
class Dims:
    """A literal shape such as 5x5 or 1x32x32."""

    values: tuple[int, ...]
    span: Span


@dataclass(frozen=True)
class Pair:
    """(before, after): a per-side padding."""

    first: Expr
    second: Expr
    span: Span


@dataclass(frozen=True)
class BinOp:
    """Arithmetic (`+ - * // %`), a comparison (`== != < <= > >=`) or `and` / `or`."""

    op: str
    left: Expr
    right: Expr
    span: Span


@dataclass(frozen=True)
class Not:
    operand: Expr
    span: Span


@dataclass(frozen=True)
class ShapeOf:
    """`in.channels`, `c1.width`: a size of a layer's output, known once the shapes of the
    layers above are (expansion works them out when it meets one)."""

    ref: Ref
    prop: str
    prop_span: Span
    span: Span


Expr = Num | Name | Dims | Pair | BinOp | Not | ShapeOf


@dataclass(frozen=True)
class Value:
    """A scalar, or a shape written with `x` (k x k, (0,1)x(0,1))."""

    parts: tuple[Expr, ...]
    span: Span


# -- statements ----------------------------------------------------------------


@dataclass(frozen=True)
class Arg:
    """One argument: positional when `name` is None, else `name=value`."""

    name: str | None
    value: Value
    span: Span


@dataclass(frozen=True)
class Ref:
    parts: tuple[str, ...]
    span: Span

    @property
    def text(self) -> str:
        return ".".join(self.parts)


@dataclass(frozen=True)
class Activation:
    name: str
    args: tuple[Value, ...]
    span: Span


@dataclass(frozen=True)
class Layer:
    """`OP [NAME] [(inputs)] [: args] [-> activation]`: a layer or a block call."""

    op: str
    op_span: Span
    name: str | None
    name_span: Span | None
    inputs: tuple[Ref, ...] | None
    args: tuple[Arg, ...]
    activation: Activation | None
    span: Span


@dataclass(frozen=True)
class Repeat:
    count: Expr
    body: tuple[Stmt, ...]
    span: Span


@dataclass(frozen=True)
class If:
    """`if COND { ... } else if COND { ... } else { ... }`: the condition and statements of the
    `if` and of each `else if`, in order (flat: a chain of any length nests nothing), and the
    statements of `else` (empty without it)."""

    branches: tuple[tuple[Expr, tuple[Stmt, ...]], ...]
    orelse: tuple[Stmt, ...]
    span: Span

    @property
    def bodies(self) -> tuple[tuple[Stmt, ...], ...]:
        return (*(body for _, body in self.branches), self.orelse)


Stmt = Layer | Repeat | If


@dataclass(frozen=True)
class Param:
    name: str
    default: Value | None
    span: Span


@dataclass(frozen=True)
class Block:
    name: str
    params: tuple[Param, ...]
    body: tuple[Stmt, ...]
    span: Span
    name_span: Span
    # the names of its inputs, `reads (hidden, residual)` (no defaults); empty: its one input, `in`
    inputs: tuple[Param, ...] = ()


@dataclass(frozen=True)
class Network:
    name: str
    body: tuple[Stmt, ...]
    span: Span
    args: tuple[Arg, ...] = ()  # the settings after the name: `network ResNet50 init=resnet {`


@dataclass(frozen=True)
class Import:
    path: str
    span: Span


@dataclass(frozen=True)
class Module:
    file: str
    imports: tuple[Import, ...]
    blocks: tuple[Block, ...]
    networks: tuple[Network, ...]
