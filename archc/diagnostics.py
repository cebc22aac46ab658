"""One error type for everything a spec can get wrong.

Syntax errors, name errors and shape errors all become `Diagnostic` objects
(structured: file, line, column, code, message, help) collected in a list, so
a run reports every problem at once, and every front end (terminal, JSON,
tests) renders the same objects.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field


@dataclass(frozen=True)
class Span:
    """A region of a source file; lines and columns count from 1."""

    file: str
    line: int
    col: int
    end_line: int
    end_col: int

    def __str__(self) -> str:
        return f"{self.file}:{self.line}:{self.col}"


@dataclass(frozen=True)
class Fix:
    """An edit that a help line proposes: replace the text at `span` with `text`.

    A help that suggests a change to the spec carries it as a `Fix` as well as
    in words, so an editor (through `check --format json`) or a test can apply
    it exactly and see that it gives what the help promises. A span whose end
    is its start inserts.
    """

    span: Span
    text: str

    def apply(self, source: str) -> str:
        """`source` with the edit made; lines and columns as `source_lines` counts them."""
        starts = [0]
        for line in source.split("\n"):
            starts.append(starts[-1] + len(line) + 1)
        begin = starts[self.span.line - 1] + self.span.col - 1
        end = starts[self.span.end_line - 1] + self.span.end_col - 1
        return source[:begin] + self.text + source[end:]

    def as_dict(self) -> dict:
        s = self.span
        return {"line": s.line, "col": s.col, "end_line": s.end_line, "end_col": s.end_col, "text": self.text}


@dataclass
class Diagnostic:
    severity: str  # "error" or "warning"
    code: str
    message: str
    span: Span | None = None
    help: list[str] = field(default_factory=list)
    notes: list[tuple[str, Span]] = field(default_factory=list)
    fixes: list[Fix] = field(default_factory=list)  # the edits the help lines propose, in their order

    def as_dict(self) -> dict:
        span = self.span
        return {
            "file": span.file if span else None,
            "line": span.line if span else None,
            "col": span.col if span else None,
            "end_line": span.end_line if span else None,
            "end_col": span.end_col if span else None,
            "severity": self.severity,
            "code": self.code,
            "message": self.message,
            "help": list(self.help),
            "fixes": [f.as_dict() for f in self.fixes],
        }


class ArchError(Exception):
    """Raised when a spec has errors; carries every diagnostic found so far."""

    def __init__(self, diagnostics: list[Diagnostic], sources: dict[str, str] | None = None):
        self.diagnostics = errors_first(diagnostics)
        self.sources = sources or {}
        super().__init__(render_all(diagnostics, self.sources, color=False))

    @property
    def errors(self) -> list[Diagnostic]:
        return [d for d in self.diagnostics if d.severity == "error"]


class Reporter:
    """Collects diagnostics during one compilation."""

    def __init__(self) -> None:
        self.diagnostics: list[Diagnostic] = []

    def error(self, code: str, message: str, span: Span | None, help=(), notes=(), fixes=()) -> Diagnostic:
        diag = Diagnostic("error", code, message, span, list(help), list(notes), list(fixes))
        self.diagnostics.append(diag)
        return diag

    def warn(self, code: str, message: str, span: Span | None, help=(), notes=(), fixes=()) -> Diagnostic:
        diag = Diagnostic("warning", code, message, span, list(help), list(notes), list(fixes))
        self.diagnostics.append(diag)
        return diag

    @property
    def has_errors(self) -> bool:
        return any(d.severity == "error" for d in self.diagnostics)

    @property
    def warnings(self) -> list[Diagnostic]:
        return [d for d in self.diagnostics if d.severity == "warning"]


def source_lines(text: str) -> list[str]:
    """The lines of a source, as every position archc reports counts them.

    Only a line feed ends a line (a carriage return before it belongs to the
    line ending): `str.splitlines` also splits at form feeds, U+0085 and
    U+2028, which would make an excerpt show another line than the one that
    `file:line:col` names. A text that ends with a line feed has no empty
    line after it.
    """
    lines = text.split("\n")
    if len(lines) > 1 and lines[-1] == "":
        lines.pop()
    return [line[:-1] if line.endswith("\r") else line for line in lines]


_STYLES = {"error": "\033[1;31m", "warning": "\033[1;33m", "help": "\033[1;36m", "bold": "\033[1m"}
_RESET = "\033[0m"


def use_color(stream) -> bool:
    """Colour on a terminal; never when NO_COLOR is set (no-color.org), else always when FORCE_COLOR is
    (force-color.org), even on a pipe. Set means set and not empty; NO_COLOR wins, as in Python itself."""
    if os.environ.get("NO_COLOR"):
        return False
    if os.environ.get("FORCE_COLOR"):
        return True
    return hasattr(stream, "isatty") and stream.isatty()


# What a terminal would act on instead of showing: C0 and C1 controls (ESC starts its control sequences),
# line and paragraph separators, and the invisible format characters that reorder or hide text
_INVISIBLE = re.compile(r"[\x00-\x1f\x7f-\x9f\u200b-\u200f\u2028-\u202e\u2066-\u2069\ufeff]")


def visible(text: str) -> str:
    """`text` safe to print to a terminal: every character `_INVISIBLE` matches shown as an escape
    (`\\x1b`, `\\u2028`). Anything quoted from a spec or a file name goes through it."""
    return _INVISIBLE.sub(_escape, text)


def _escape(match: re.Match) -> str:
    code = ord(match.group())
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"


def render(diag: Diagnostic, sources: dict[str, str], color: bool = False) -> str:
    """The diagnostic as terminal text; whatever it quotes (excerpts, names in messages, file names) is passed
    through `visible`, so a spec cannot send control sequences to the terminal."""

    def paint(style: str, text: str) -> str:
        return f"{_STYLES[style]}{text}{_RESET}" if color else text

    head = f"{paint(diag.severity, diag.severity)}: {paint('bold', visible(diag.message))} [{diag.code}]"
    lines = [f"{visible(str(diag.span))}: {head}" if diag.span else head]
    if diag.span:
        lines += _excerpt(diag.span, sources, lambda t: paint(diag.severity, t))
    for text, span in diag.notes:
        lines.append(f"  note: {visible(text)} ({visible(str(span))})")
        lines += _excerpt(span, sources, lambda t: paint("help", t))
    for text in diag.help:
        lines.append(f"  {paint('help', 'help')}: {visible(text)}")
    return "\n".join(lines)


def _excerpt(span: Span, sources: dict[str, str], paint) -> list[str]:
    text = sources.get(span.file)
    if text is None:
        return []
    src_lines = source_lines(text)
    if not 1 <= span.line <= len(src_lines):
        return []
    line = src_lines[span.line - 1].replace("\t", " ")
    start = max(span.col - 80, 0) if len(line) > 200 else 0  # a huge line: the part around the span
    end = span.end_col if span.end_line == span.line else len(line) + 1
    # the caret sits under the escaped text: as wide as what `visible` makes of the characters before it
    before = len(visible(line[start : span.col - 1]))
    width = max(len(visible(line[span.col - 1 : end - 1])), 1)
    gutter = f"{span.line:>5} | "
    caret = " " * (len(gutter) - 2) + "| " + " " * before + paint("^" * width)
    return [gutter + visible(line[start : start + 200]), caret]


MAX_SHOWN = 20  # a screenful; the first errors are the ones to fix first


def errors_first(diags: list[Diagnostic]) -> list[Diagnostic]:
    """Errors before warnings, each in the order found: a screenful of warnings must not hide an error."""
    return sorted(diags, key=lambda d: d.severity != "error")


def render_all(diags: list[Diagnostic], sources: dict[str, str], color: bool = False, limit: int = MAX_SHOWN) -> str:
    """Every diagnostic, errors first, up to `limit` of them, then how many more there are (JSON lists all)."""
    diags = errors_first(diags)
    shown = "\n".join(render(d, sources, color) for d in diags[:limit])
    rest = len(diags) - limit
    return shown if rest <= 0 else f"{shown}\n... and {rest} more diagnostic{'s' if rest > 1 else ''}"
