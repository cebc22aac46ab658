"""What both importers share: a flat network under construction, and values as syntax trees.

An importer reads its format and builds the same syntax tree (`archc.ast`)
that the `.arch` parser builds, one statement per layer, every input named
and every statement and argument carrying the span of the source text it
came from. The expander and the passes then run unchanged, so a shape error
in a `.cfg` or `.prototxt` points at its line and column like one in a spec.
"""

from __future__ import annotations

import math
import re
import unicodedata
from dataclasses import dataclass, field, replace

from .. import ast
from ..diagnostics import ArchError, Diagnostic, Span
from ..ops.base import PadPair

NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*\Z")
BROKEN = None  # the output of a section or layer that has an error: whatever reads it stays quiet
KEYWORDS = frozenset({"block", "import", "network", "repeat"})  # never the name of a block: `repeat` starts a repeat
LIMIT = 2**62  # the largest whole number an importer takes: archc's sizes must fit in 62 bits
_WHOLE = re.compile(r"([-+]?)([0-9]+)")  # ASCII digits only, as Darknet's atoi and protobuf read them
_DECIMAL = re.compile(r"[-+]?(?:[0-9]+\.?[0-9]*|\.[0-9]+)(?:[eE][-+]?[0-9]+)?")
_QUOTED = re.compile(r"`[^`]{41,}`|\[[^\]]{41,}\]")  # a name or value in backticks, a Darknet [section]
_LONG_DIGITS = re.compile(r"[0-9]{41,}")
_UNSAFE = frozenset({"Cc", "Cf", "Cs", "Zl", "Zp"})  # controls, format characters, line and paragraph ends


@dataclass
class Imported:
    """An importer's result: the syntax tree, and what the `.arch` text of it should say besides."""

    module: ast.Module
    warnings: list[Diagnostic]
    notes: dict[str, list[str]] = field(default_factory=dict)  # comment lines above a statement, by its name
    after: dict[str, str] = field(default_factory=dict)  # a comment at the end of a statement's line
    header: list[str] = field(default_factory=list)  # comment lines at the top of the file
    footer: list[str] = field(default_factory=list)  # comment lines after the last statement
    batch: int | None = None  # the batch size the source states (Caffe's input shape), if any
    # statements that came from one source layer, with the name a block call of them would take
    units: list[tuple[str, list[str]]] = field(default_factory=list)
    modules: list[tuple[str, list[str]]] = field(default_factory=list)  # larger groups (a Caffe name prefix)
    repeats: bool = True  # whether runs of the same unit read best as `repeat` (Darknet: no layer names to keep)
    source: str | None = None  # the text diagnostics point into, when it is not the file's own (a binary ONNX file)


# -- numbers ---------------------------------------------------------------------------------


class NumberError(Exception):
    """A number in the source that an importer cannot take; the importer reports it at the value.

    The message reads `<setting> must be {wanted}, not <value>`.
    """

    def __init__(self, code: str, wanted: str, help=()):
        super().__init__(wanted)
        self.code, self.wanted, self.help = code, wanted, list(help)


def whole(text: str) -> int:
    """A whole number as Darknet and Caffe files write it: ASCII digits after an optional sign.

    Both importers convert every whole number here, so a number beyond archc's limit is E0213 at
    the value, whatever its length, and Python's own limit (4,300 digits) is never reached.
    """
    match = _WHOLE.fullmatch(text)
    if match is None:
        raise NumberError("E0403", "a whole number")
    digits = match[2].lstrip("0") or "0"
    if len(digits) > len(str(LIMIT)) or int(digits) > LIMIT:
        raise NumberError("E0213", "between -2^62 and 2^62", ["sizes must fit in 62 bits; no real network needs this"])
    return -int(digits) if match[1] == "-" else int(digits)


def decimal(text: str) -> float:
    """A number with or without a decimal point and exponent, in ASCII digits (not Python's `1_0`
    or other scripts' digits); only finite ones, which the `.arch` text can write."""
    if _DECIMAL.fullmatch(text):
        value = float(text)
    elif text.lower().lstrip("+-") in ("nan", "inf", "infinity"):
        value = math.nan
    else:
        raise NumberError("E0403", "a number")
    if not math.isfinite(value):
        raise NumberError("E0403", "a finite number", ["nan and inf describe no layer archc can analyse"])
    return value + 0.0  # -0.0 is 0.0: the same layer, and a literal the `.arch` text can write


def shown(text: str) -> str:
    """A name or value from the source, cut when long: a number of thousands of digits, a huge name."""
    return text if len(text) <= 40 else f"{text[:16]}...{text[-8:]} ({len(text):,} characters)"


def _quoting(message: str) -> str:
    """A message with what it quotes from the file (`name`, [section]) cut as `shown` cuts it: a name or
    a value of a million characters is a screenful of nothing, and the excerpt shows it anyway."""
    if len(message) <= 200:
        return message
    return _QUOTED.sub(lambda quote: quote[0][0] + shown(quote[0][1:-1]) + quote[0][-1], message)


# -- text written into the `.arch` spec ----------------------------------------------------------


def comment(text: str) -> str:
    """Text from the source (a name, a setting) as part of one `.arch` comment line.

    Every control, format or line-separating character becomes its escape (`\\n`, `\\x1b`,
    `\\u2028`), so that nothing a file says can end the comment and add a statement or an
    `import`, or reach a terminal as a control sequence; a run of digits too long for the
    `.arch` reader is cut. `import_text` passes every comment line through here; names go
    through `sanitize`.
    """
    text = _LONG_DIGITS.sub(lambda run: shown(run[0]), text)  # the `.arch` reader refuses 4,000 digits
    if text.isprintable():
        return text
    return "".join(
        ch.encode("unicode_escape", "backslashreplace").decode("ascii") if unicodedata.category(ch) in _UNSAFE else ch
        for ch in text
    )


def to_value(value, span: Span) -> ast.Value:
    """A Python value (int, float, bool, word, shape tuple, per-side pairs) as the tree of its literal."""
    if isinstance(value, tuple) and not isinstance(value, PadPair):
        if all(isinstance(v, int) and not isinstance(v, bool) for v in value):
            if len(value) == 1:
                return ast.Value((ast.Num(value[0], span),), span)
            return ast.Value((ast.Dims(tuple(value), span),), span)
        return ast.Value(tuple(_expr(v, span) for v in value), span)
    return ast.Value((_expr(value, span),), span)


def _expr(value, span: Span):
    if isinstance(value, bool):
        return ast.Name("true" if value else "false", span)
    if isinstance(value, int | float):
        if value < 0:  # the language has no unary minus: -0.5 is written 0 - 0.5
            return ast.BinOp("-", ast.Num(0, span), ast.Num(-value, span), span)
        return ast.Num(value, span)
    if isinstance(value, str):
        return ast.Name(value, span)
    if isinstance(value, PadPair):
        return ast.Pair(_expr(value[0], span), _expr(value[1], span), span)
    raise TypeError(f"no literal for {value!r}")  # pragma: no cover - importers pass only the kinds above


def sanitize(text: str) -> str:
    """A source name as an archc name: letters, digits and `_`, not starting with a digit, and no
    run of digits the `.arch` reader would refuse as a number (`Flat.unique` keeps names apart)."""
    name = re.sub(r"[^A-Za-z0-9_]", "_", text.strip()) or "layer"
    name = _LONG_DIGITS.sub(lambda run: run[0][:40], name)
    return name if not name[0].isdigit() else "_" + name


class Flat:
    """A network under construction, one statement per layer, in the order the source defines them."""

    RESERVED = frozenset({"in"})

    def __init__(self, file: str):
        self.file = file
        self.stmts: list[ast.Layer] = []
        self.position: dict[str, int] = {}
        self.taken: set[str] = set()
        self._suffix: dict[str, int] = {}  # per base name, the suffix its last unique name took
        self.diagnostics: list[Diagnostic] = []
        self.notes: dict[str, list[str]] = {}
        self.after: dict[str, str] = {}
        self.header: list[str] = []
        self.footer: list[str] = []
        self.units: list[tuple[str, list[str]]] = []
        self.modules: list[tuple[str, list[str]]] = []
        self.repeats = True
        self.outputs: list[str] | None = None
        self.output_span: Span | None = None
        self._pending: list[str] = []  # notes waiting for the next statement

    # -- diagnostics -----------------------------------------------------------------------

    def error(self, code: str, message: str, span: Span | None, help=()) -> None:
        self.diagnostics.append(Diagnostic("error", code, _quoting(message), span, list(help)))

    def warn(self, code: str, message: str, span: Span | None, help=()) -> None:
        self.diagnostics.append(Diagnostic("warning", code, _quoting(message), span, list(help)))

    @property
    def has_errors(self) -> bool:
        return any(d.severity == "error" for d in self.diagnostics)

    def ordered(self) -> list[Diagnostic]:
        """The diagnostics in the order of the file, whatever pass found them (a line the reader
        cannot read, a section's error, an unknown key found after the section)."""
        return sorted(self.diagnostics, key=lambda d: (d.span.line, d.span.col) if d.span else (0, 0))

    def fail(self, text: str):
        """Stop with every diagnostic found so far."""
        raise ArchError(self.ordered(), {self.file: text})

    # -- names -----------------------------------------------------------------------------

    def unique(self, wanted: str) -> str:
        """`wanted` made a valid name no statement has yet: `conv1`, else `conv1_2`, `conv1_3`, ...

        The search for a base resumes where the last one stopped, so a file of 20,000 layers of
        one name costs 20,000 steps, not 200 million."""
        base = sanitize(wanted)
        if base in self.RESERVED:
            base += "_"
        n = self._suffix.get(base, 1)
        name = base if n == 1 else f"{base}_{n}"
        while name in self.taken:
            n += 1
            name = f"{base}_{n}"
        self._suffix[base] = n
        self.taken.add(name)
        return name

    # -- statements ------------------------------------------------------------------------

    def add(
        self,
        op: str,
        name: str,
        inputs: list[str],
        args: list[tuple[str | None, object, Span]],
        span: Span,
        activation: tuple[str, list, Span] | None = None,
        unit: bool = True,
    ) -> str:
        """Append `op name (inputs): args -> activation`; `name` must come from `unique`.

        Reading a BROKEN input adds nothing and gives BROKEN: the cause has its own error.
        """
        if any(i is BROKEN for i in inputs):
            return BROKEN
        refs = tuple(ast.Ref((i,), span) for i in inputs)
        stmt = ast.Layer(
            op=op,
            op_span=span,
            name=name,
            name_span=span,
            inputs=refs if op != "input" else None,
            args=tuple(ast.Arg(key, to_value(value, where), where) for key, value, where in args),
            activation=_activation(activation),
            span=span,
        )
        self.position[name] = len(self.stmts)
        self.stmts.append(stmt)
        if self._pending:
            self.notes.setdefault(name, []).extend(self._pending)
            self._pending = []
        if unit:
            self.units.append((name, [name]))
        else:
            self.units[-1][1].append(name)
        return name

    def name_unit(self, name: str) -> None:
        """Name the current unit after `name` (a block call of it would take that name)."""
        self.units[-1] = (name, self.units[-1][1])

    def set_activation(self, name: str, activation: tuple[str, list, Span]) -> None:
        i = self.position[name]
        self.stmts[i] = replace(self.stmts[i], activation=_activation(activation))

    def set_args(self, name: str, args: list[tuple[str | None, object, Span]]) -> None:
        """Replace a statement's settings (a recurrent layer gains stacked layers as an importer reads them)."""
        i = self.position[name]
        self.stmts[i] = replace(self.stmts[i], args=tuple(ast.Arg(k, to_value(v, w), w) for k, v, w in args))

    def activation_of(self, name: str):
        return self.stmts[self.position[name]].activation

    def op_of(self, name: str) -> str:
        return self.stmts[self.position[name]].op

    def note(self, text: str) -> None:
        """A comment for the `.arch` text, above the next statement (or at the end)."""
        self._pending.append(text)

    def module(self, network: str, span: Span) -> ast.Module:
        body = list(self.stmts)
        if self.outputs is not None:
            where = self.output_span or span
            refs = tuple(ast.Ref((o,), where) for o in self.outputs)
            body.append(ast.Layer("output", where, None, None, refs, (), None, where))
        self.footer.extend(self._pending)
        self._pending = []
        return ast.Module(self.file, (), (), (ast.Network(network, tuple(body), span),))

    def result(self, network: str, span: Span, batch: int | None = None) -> Imported:
        module = self.module(network, span)
        warnings = [d for d in self.ordered() if d.severity == "warning"]
        return Imported(
            module,
            warnings,
            self.notes,
            self.after,
            self.header,
            self.footer,
            batch,
            self.units,
            self.modules,
            self.repeats,
        )


def _activation(activation) -> ast.Activation | None:
    if activation is None:
        return None
    name, values, span = activation
    return ast.Activation(name, tuple(to_value(v, span) for v in values), span)


def network_name(text: str) -> str:
    """A file stem or a source's network name as an archc network name: yolov3-tiny -> yolov3_tiny."""
    return sanitize(text) if text.strip() else "Network"
