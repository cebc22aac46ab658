"""Random `.arch` texts for tests/test_fuzz.py, and the property every one of them must satisfy.

Two sources of inputs:

- `specs()` builds texts from the pieces of grammar/arch.lark: imports (of
  files that do not exist), blocks with parameters and defaults, repeats with
  arithmetic counts, networks with inputs of every rank, statements of every
  layer type in `archc.ops.OPS` with positional, `@`, `/stride`, keyword and
  word arguments, `-> activation(args)`, references to defined, undefined and
  dotted names, comments, blank lines and `;`. It tracks the rank of the
  tensor flowing through the network, so most texts are *nearly* valid and
  reach the shape, cost, memory, table and code generation stages; a per-spec
  `chaos` level decides how often an argument, a reference or a statement is
  replaced by something hostile (a wrong kind, 0, a negative or huge number,
  a shape of the wrong rank, a bare word, an unknown keyword).
- `mutants()` takes a bundled spec (specs/*.arch) and deletes, duplicates,
  swaps and replaces tokens and lines, inserts stray characters and replaces
  numbers with huge ones.

`check(text)` is the property: `archc.loads` either returns a Network whose
tables, JSON and generated code (both targets, compiled with `compile()`)
all work, or raises `archc.ArchError` whose every diagnostic has a code and
renders. Anything else is a failure that shows the input, and so is an
input that is not done within `HANG_GUARD` seconds: a guard against hangs
only, far above the time any input takes on a busy machine (speed is
measured in benchmarks/, not by the tests).
"""

from __future__ import annotations

import contextlib
import functools
import json
import re
import signal
from collections import Counter
from pathlib import Path

from hypothesis import strategies as st

import archc
from archc.codegen import generate
from archc.diagnostics import render
from archc.ops import OPS

ROOT = Path(__file__).resolve().parent.parent
SPECS = ROOT / "specs"  # the folder their imports are relative to
SPEC_TEXTS = {p.name: p.read_text(encoding="utf-8") for p in sorted(SPECS.glob("*.arch"))}

HANG_GUARD = 60  # seconds for one input, tables and code included; the slowest takes about 1 s
CODE = re.compile(r"[EW]\d{4}")

ACTIVATIONS = sorted(name for name, op in OPS.items() if op.is_activation)
SPATIAL = {
    "conv",
    "dwconv",
    "deconv",
    "maxpool",
    "avgpool",
    "minpool",
    "l2pool",
    "globalavgpool",
    "globalmaxpool",
    "adaptiveavgpool",
    "adaptivemaxpool",
    "lrn",
    "upsample",
    "zeropad",
}
KEEPS_SHAPE = {"bn", "dropout", *ACTIVATIONS}
MERGE = sorted(name for name, op in OPS.items() if op.min_inputs >= 2)  # add, concat, ...
SPECIAL = {"input", "flatten", "reshape", "dense", *MERGE}
# Layers of sequences and token ids make or need what the statements drawn here cannot read: only chaos draws them.
SPECIAL |= {"embedding", "position_embedding", "param", "to_sequence", "select", "mean"}
# Parameters `sensible()` knows how to fill; others keep their defaults unless chaos picks them.
KNOWN = {
    "filters",
    "units",
    "kernel",
    "stride",
    "pad",
    "dilation",
    "groups",
    "bias",
    "multiplier",
    "outpad",
    "ceil",
    "count_pad",
    "size",
    "scale",
    "eps",
    "momentum",
    "alpha",
    "beta",
    "k",
    "p",
    "shape",
}
# Layer types added to the registry later are generated from their schema alone.
OTHER = sorted(set(OPS) - SPATIAL - KEEPS_SHAPE - SPECIAL)

HUGE = [
    "4611686018427387904",  # 2^62
    "4611686018427387905",
    "1000000000000000000",  # 10^18
    "1" + "0" * 30,  # 10^30
    "1" + "0" * 100,  # 10^100
]
HOSTILE_VALUES = [
    "0",
    "0 - 1",
    "0 - 100",
    "1 - 2",
    *HUGE,
    "2 * 4611686018427387904",
    "4611686018427387904 + 4611686018427387904",
    "1.5",
    "0.0",
    "1e400",
    "1e-400",
    "1.",
    "same",
    "valid",
    "full",
    "ceil",
    "depthwise",
    "true",
    "false",
    "bogus",
    "in",
    "x",
    "network",
    "3x3x3x3x3",
    "0x0",
    "1x0",
    "(0,1)",
    "(0,1)x(0,1)x(0,1)x(0,1)",
    "(1 - 2, 0)",
    "(1.5, 2)",
    "2 // 0",
    "5 % 0",
    "3 // 2 * 0",
    "1.5 // 2",
    "same + 1",
    "k",
    "ch * width",
    "(((((3)))))",
    "3 x same",
    "3 x 1.5",
    "1x(0,1)",
]
BAD_KEYWORDS = ["strid", "padding", "kernel_size", "x", "in", "same", "filters", "p", "size", "shape", "bias"]
WORDS = ["same", "valid", "full", "ceil", "depthwise", "true", "false", "sme", "cel", "relu"]
NAMES = ["a", "b", "c", "conv1", "relu1", "x", "skip", "out", "in", "network", "repeat", "input", "block", "_", "A_9"]


# -- small pieces ---------------------------------------------------------------------


@st.composite
def written(draw, n: int) -> str:
    """A whole number n, sometimes written as arithmetic that evaluates to it."""
    form = draw(st.integers(0, 9))
    if form == 0:
        a = draw(st.integers(0, n))
        return f"{a} + {n - a}"
    if form == 1:
        d = draw(st.integers(1, 4))
        return f"{n * d} // {d}"
    if form == 2:
        return f"({n})"
    if form == 3:
        return f"{n + 3} - 3"
    if form == 4 and n > 0:
        return f"{n} * 1"
    return str(n)


def hostile(draw) -> str:
    return draw(st.sampled_from(HOSTILE_VALUES))


def shape_text(draw, sizes) -> str:
    """`3x3` as one token, or `3 x 3` with spaces (an expression per size)."""
    if len(sizes) == 1:
        return draw(written(sizes[0]))
    if draw(st.booleans()):
        return "x".join(map(str, sizes))
    return " x ".join(draw(written(s)) for s in sizes)


class Ctx:
    """What a statement may assume about the tensor it reads, and about its surroundings."""

    def __init__(self, chaos: float, params: dict[str, str] | None = None):
        self.chaos = chaos
        self.rank = 2  # spatial dimensions of the current tensor; 0 for a vector; None when unknown
        self.names: list[str] = []  # layer names defined so far in this body
        self.params = params or {}  # block parameter -> what it stands for ("ch", "k", "s", "n")
        self.counter = 0

    def fresh(self, stem: str) -> str:
        self.counter += 1
        return f"{stem}{self.counter}"


def corrupt(draw, ctx: Ctx) -> bool:
    return ctx.chaos > 0 and draw(st.floats(0, 1)) < ctx.chaos


# -- arguments from a layer type's schema ----------------------------------------------


def sensible(draw, op: str, p, ctx: Ctx) -> str:
    """A value that fits parameter `p` of `op` for the current tensor, mostly."""
    nd = ctx.rank if ctx.rank else 2
    name, kind = p.name, p.kind
    param = ctx.params
    if kind == "int":
        if name == "groups":
            return draw(st.sampled_from(["1", "1", "1", "depthwise"]))
        if name in ("filters", "units") and "ch" in param and draw(st.booleans()):
            return draw(st.sampled_from(["ch", "ch * 2", "ch // 2 + 1", "(ch + 1) * 2"]))
        if name == "size":
            return str(draw(st.integers(1, 5)))
        if name == "multiplier":
            return str(draw(st.integers(1, 2)))
        return draw(written(draw(st.integers(1, 16))))
    if kind == "float":
        choices = {
            "p": ["0", "0.1", "0.25", "0.5", "0.9"],
            "eps": ["1e-5", "1e-3", "0.001"],
            "momentum": ["0.1", "0.01", "0", "1"],
            "alpha": ["0.2", "1.0", "0.01", "1e-4"],
            "beta": ["0.75", "0.5"],
            "k": ["2", "1.0"],
        }.get(name, ["0.5", "1", "2.0"])
        return draw(st.sampled_from(choices))
    if kind == "bool":
        return draw(st.sampled_from(["true", "false"]))
    if kind == "shape":
        if name == "kernel" and "k" in param and draw(st.booleans()):
            return draw(st.sampled_from(["k", "k x k" if nd == 2 else "k", "k // 2 + 1"]))
        if name == "stride" and "s" in param and draw(st.booleans()):
            return "s"
        top = {"kernel": 3, "stride": 2, "dilation": 2, "scale": 2, "size": 3, "outpad": 0}.get(name, 2)
        low = 0 if name == "outpad" else 1
        if draw(st.booleans()):
            return str(draw(st.integers(low, top)))
        return shape_text(draw, [draw(st.integers(low, top)) for _ in range(nd)])
    if kind == "padding":
        numeric = ["0", "1", "x".join(["(0,1)"] * nd), "x".join(["1"] * nd)] + (["(1,1)"] if nd <= 2 else [])
        return draw(st.sampled_from(numeric if op == "zeropad" else [*numeric, "same", "valid", "full"]))
    if kind == "choice" and p.choices:
        return draw(st.sampled_from(list(p.choices)))
    return draw(written(draw(st.integers(1, 4))))


def arguments(draw, op: str, ctx: Ctx) -> str:
    """`: args` for a layer type, from its schema; empty when it has none to give."""
    schema = OPS[op].params
    symbols = list(OPS[op].symbols)
    positional: list[str] = []
    keywords: list[str] = []
    for p in schema:
        if not p.required and (draw(st.integers(0, 3)) != 0 or (p.name not in KNOWN and not corrupt(draw, ctx))):
            continue  # a parameter this module knows nothing about keeps its default, unless chaos says otherwise
        value = hostile(draw) if corrupt(draw, ctx) else sensible(draw, op, p, ctx)
        if p.name == "stride" and draw(st.booleans()):
            keywords.append(f"/{value}")
        elif p.positional and len(positional) == [q for q in schema if q.positional].index(p):
            positional.append(value)
        else:
            keywords.append(f"{p.name}={value}")
    given = {k.split("=")[0] for k in keywords} | {"stride" for k in keywords if k.startswith("/")}
    words = [w for w in symbols if OPS[op].symbols[w][0] not in given or corrupt(draw, ctx)]
    if words and draw(st.integers(0, 4)) == 0:
        keywords.append(draw(st.sampled_from(words)))
    if corrupt(draw, ctx):  # something the layer has no place for
        kind = draw(st.integers(0, 3))
        if kind == 0:
            keywords.append(f"{draw(st.sampled_from(BAD_KEYWORDS))}={hostile(draw)}")
        elif kind == 1:
            positional.append(hostile(draw))
        elif kind == 2:
            keywords.append(draw(st.sampled_from(WORDS)))
        elif keywords:
            keywords.append(draw(st.sampled_from(keywords)))  # given twice
    if len(positional) >= 2 and draw(st.booleans()):
        positional = [f"{positional[0]} @ {positional[1]}", *positional[2:]]
    items = positional + keywords
    if keywords and draw(st.integers(0, 3)) == 0:  # positionals after keywords fill the first free slot
        keywords = draw(st.permutations(keywords))
        cut = draw(st.integers(0, len(keywords)))
        items = [*keywords[:cut], *positional, *keywords[cut:]]
    return ": " + " ".join(items) if items else ""


def activation(draw, ctx: Ctx) -> str:
    if draw(st.integers(0, 3)) != 0:
        return ""
    if corrupt(draw, ctx):
        name = draw(st.sampled_from(["rleu", "conv", "dense", "in", *ACTIVATIONS]))
        args = draw(st.sampled_from(["", "()", "(0.2)", "(1, 2)", "(same)", "(3x3)", f"({hostile(draw)})"]))
        return f" -> {name}{args}"
    name = draw(st.sampled_from(ACTIVATIONS))
    op = OPS[name]
    if op.params and draw(st.booleans()):
        return f" -> {name}({sensible(draw, name, op.params[0], ctx)})"
    return f" -> {name}"


def reference(draw, ctx: Ctx) -> str:
    if ctx.names and not corrupt(draw, ctx):
        return draw(st.sampled_from(ctx.names))
    return draw(st.sampled_from([*NAMES, "b1.conv1", "blk.a.b", "in", "nowhere", "x_1", "c_2"]))


# -- statements -----------------------------------------------------------------------------


def statement(draw, ctx: Ctx, blocks: dict[str, dict]) -> list[str]:
    """One or a few statements (a named branch and the add that joins it) for the current tensor."""
    rank = ctx.rank
    if corrupt(draw, ctx) and draw(st.booleans()):
        op = draw(st.sampled_from(sorted(OPS)))  # any type, whatever the input
    elif rank is None:
        op = draw(st.sampled_from(["flatten", "relu", "bn", "dropout", "identity"]))
    elif rank == 0:
        op = draw(st.sampled_from(["dense", "dense", "dense", "bn", "dropout", "reshape", *MERGE, *ACTIVATIONS]))
    else:
        pool = [*sorted(SPATIAL), "conv", "conv", "maxpool", "bn", "dropout", "flatten", *MERGE, "relu"]
        op = draw(st.sampled_from(pool + OTHER))
    if blocks and draw(st.integers(0, 5)) == 0:
        return [block_call(draw, ctx, blocks)]
    if op in MERGE and not corrupt(draw, ctx):
        a, b = ctx.fresh("s"), ctx.fresh("t")
        keep = draw(st.sampled_from(["relu", "bn", "identity", "dropout"]))
        ctx.names += [a, b]
        return [f"identity {a}", f"{keep} {b}", f"{op}{named(draw, ctx)} ({a}, {b})"]
    refs = ""
    if op in MERGE or draw(st.integers(0, 5)) == 0:
        count = 2 if op in MERGE else 1
        if corrupt(draw, ctx):
            count = draw(st.integers(0, 3))
        refs = " (" + ", ".join(reference(draw, ctx) for _ in range(count)) + ")"
    name = named(draw, ctx)
    if op == "input":
        text = f"input{name or ' ' + ctx.fresh('i')}{refs}: {input_shape(draw, ctx)}"
        return [text + activation(draw, ctx)]
    if op == "reshape" and not corrupt(draw, ctx):
        args = ": " + draw(st.sampled_from(["1x1", "2x2", "4x4", "1x1x1", "16", "8x2"]))
        ctx.rank = None  # cannot know: the sizes may not multiply out
    else:
        args = arguments(draw, op, ctx)
    if op == "flatten":
        ctx.rank = 0
    return [f"{op}{name}{refs}{args}{activation(draw, ctx)}"]


def named(draw, ctx: Ctx) -> str:
    """` NAME` or nothing; the name is remembered for later references."""
    if draw(st.integers(0, 2)) != 0:
        return ""
    if corrupt(draw, ctx):
        return " " + draw(st.sampled_from([*NAMES, *ctx.names] if ctx.names else NAMES))  # maybe twice
    name = ctx.fresh("n")
    ctx.names.append(name)
    return " " + name


def input_shape(draw, ctx: Ctx) -> str:
    if corrupt(draw, ctx):
        return draw(st.sampled_from([*HOSTILE_VALUES, "1x1x1x1x1", "3x0x8"]))
    rank = draw(st.integers(0, 3))
    ctx.rank = rank
    top = {0: 64, 1: 32, 2: 24, 3: 8}[rank]
    sizes = [draw(st.integers(1, 8))] + [draw(st.integers(4, top)) for _ in range(rank)]
    return shape_text(draw, sizes)


def block_call(draw, ctx: Ctx, blocks: dict[str, dict]) -> str:
    name = draw(st.sampled_from(sorted(blocks)))
    block = blocks[name]
    inst = named(draw, ctx)
    args = []
    for param in block["params"]:
        if param in block["defaults"] and draw(st.booleans()):
            continue
        value = hostile(draw) if corrupt(draw, ctx) else block_value(draw, param)
        args.append(value if draw(st.booleans()) else f"{param}={value}")
    if corrupt(draw, ctx):
        args.append(draw(st.sampled_from(["9", "zz=1", "ch=1", "same"])))
    if inst and block["names"] and draw(st.booleans()):
        ctx.names.append(f"{inst.strip()}.{draw(st.sampled_from(block['names']))}")  # a dotted reference
    ctx.rank = block["rank_out"] if block["rank"] == ctx.rank else None
    text = f"{name}{inst}" + (": " + " ".join(args) if args else "")
    return text + activation(draw, ctx)


def block_value(draw, param: str) -> str:
    return {
        "ch": draw(written(draw(st.integers(1, 16)))),
        "k": str(draw(st.sampled_from([1, 3]))),
        "s": str(draw(st.integers(1, 2))),
        "n": str(draw(st.integers(0, 3))),
    }[param]


def body(draw, ctx: Ctx, blocks: dict[str, dict], size: int, depth: int = 0) -> list[str]:
    out: list[str] = []
    while len(out) < size:
        if depth < 2 and draw(st.integers(0, 7)) == 0:
            out += repeat(draw, ctx, blocks, depth)
        else:
            out += statement(draw, ctx, blocks)
    return out


def repeat(draw, ctx: Ctx, blocks: dict[str, dict], depth: int) -> list[str]:
    if "n" in ctx.params:
        count = draw(st.sampled_from(["n", "n - 1", "n // 2", "n * 2", "n % 2", "(n + 1) // 2"]))
    else:
        count = draw(written(draw(st.integers(0, 3))))
    if corrupt(draw, ctx):
        count = hostile(draw)
    rank, names = ctx.rank, list(ctx.names)
    inner = body(draw, ctx, blocks, draw(st.integers(1, 3)), depth + 1)
    if ctx.rank != rank:
        ctx.rank = None  # each iteration reads the last one
    ctx.names = names  # names inside the loop are only visible as name_1, name_2, ... after it
    indent = "  "
    return [f"repeat {count} {{", *(indent + line for line in inner), "}"]


@st.composite
def block_def(draw, name: str, chaos: float) -> tuple[list[str], dict]:
    params = draw(st.sampled_from([["ch"], ["ch", "k"], ["ch", "k", "s"], ["ch", "n"], ["ch", "k", "s", "n"], []]))
    defaults = {}
    for p in params[1:]:
        if draw(st.booleans()):
            defaults[p] = draw(st.sampled_from({"k": ["3", "1"], "s": ["1", "2"], "n": ["2", "1", "0"]}[p]))
    ctx = Ctx(chaos, dict.fromkeys(params, ""))
    ctx.names.append("in")
    ctx.rank = draw(st.sampled_from([0, 1, 2, 2, 3]))
    rank = ctx.rank
    lines = body(draw, ctx, {}, draw(st.integers(1, 4)))
    if draw(st.integers(0, 3)) == 0:
        lines.append(f"concat joined (in, {ctx.names[-1] if ctx.names else 'in'})")  # a block's input, read again
    written_params = ", ".join(f"{p}={defaults[p]}" if p in defaults else p for p in params)
    text = [f"block {name}({written_params}) {{", *("  " + line for line in lines), "}"]
    names = [n for n in ctx.names if "." not in n]
    info = {"params": params, "defaults": defaults, "rank": rank, "rank_out": ctx.rank, "names": names}
    return text, info


# -- whole specs ------------------------------------------------------------------------------


@st.composite
def specs(draw) -> str:
    """A spec built from the grammar's pieces; with chaos 0 (half the time) it is meant to be valid."""
    level = draw(st.integers(0, 9))
    chaos = [0.0] * 6 + [0.03, 0.1, 0.25, 0.5]
    chaos = chaos[level]
    ctx = Ctx(chaos)
    blocks: dict[str, dict] = {}
    items: list[list[str]] = []
    for i in range(draw(st.integers(0, 2))):
        name = draw(st.sampled_from(["conv", "blk0", "in"])) if corrupt(draw, ctx) else f"blk{i}"
        text, info = draw(block_def(name, chaos))
        blocks[name] = info
        items.append(text)
    first = draw(st.sampled_from(["x", "image", "in", "input"])) if corrupt(draw, ctx) else "x"
    ctx.names.append(first)
    lines = [f"input {first}: {input_shape(draw, ctx)}"]
    lines += body(draw, ctx, blocks, draw(st.integers(1, 10)))
    if draw(st.integers(0, 9)) == 0:  # a second input starts a second flow
        second = ctx.fresh("i")
        lines.append(f"input {second}: {input_shape(draw, ctx)}")
        ctx.names.append(second)
        lines += body(draw, ctx, blocks, draw(st.integers(1, 3)))
    if corrupt(draw, ctx):
        lines.insert(draw(st.integers(0, len(lines))), draw(st.sampled_from(["}", "{", "network M {", "(", "->"])))
    network = [f"network {draw(st.sampled_from(['Net', 'N', 'network', 'class', 'A_1']))} {{"]
    network += ["  " + line for line in lines] + ["}"]
    items.insert(draw(st.integers(0, len(items))), network)
    if corrupt(draw, ctx) and draw(st.integers(0, 2)) == 0:
        items.insert(0, [f'import "missing_{draw(st.integers(0, 9))}.arch"'])
    if corrupt(draw, ctx) and draw(st.integers(0, 2)) == 0:
        items.append(["network Second {", "  input y: 3", "}"])
    return layout(draw, items)


def layout(draw, items: list[list[str]]) -> str:
    """Join the lines with newlines or `;`, comments, blank lines, tabs and CRLF line ends."""
    newline = "\r\n" if draw(st.integers(0, 9)) == 0 else "\n"
    out: list[str] = []
    if draw(st.integers(0, 4)) == 0:
        out.append("# a spec written by tests/fuzz_specs.py")
    for item in items:
        joined: list[str] = []
        for line in item:
            stripped = line.strip()
            last = joined[-1] if joined else "{"
            can_join = not last.rstrip().endswith("{") and "#" not in last and not stripped.startswith("}")
            if can_join and not stripped.endswith("{") and draw(st.integers(0, 6)) == 0:
                joined[-1] += "; " + stripped
                continue
            if draw(st.integers(0, 9)) == 0:
                line += "   # note: " + draw(st.sampled_from(["x", "{", "}", "->", "é", "(", "conv: 3"]))
            if draw(st.integers(0, 14)) == 0:
                line = "\t" + line
            joined.append(line)
            if draw(st.integers(0, 14)) == 0:
                joined.append(draw(st.sampled_from(["", "   ", "# comment", "\t# tab"])))
        out += joined
        out.append("")
    return newline.join(out)


# -- mutation of the bundled specs ---------------------------------------------------------------

TOKEN = re.compile(r"[A-Za-z_][A-Za-z0-9_]*|[0-9]+(?:x[0-9]+)+|[0-9]+(?:\.[0-9]*)?(?:[eE][-+]?[0-9]+)?|->|//|\S")
NUMBER = re.compile(r"(?<![A-Za-z_0-9])[0-9]+(?![0-9])")
STRAY = [
    "\x00",
    "\ufeff",
    "\r",
    "\r\n",
    "\n",
    "\t",
    "\x0c",
    "\x0b",  # line ends to str.splitlines, not to archc: see tests/test_hostile_syntax.py
    "\x1c",
    "\u0085",
    "\u2028",
    "\u2029",
    "\x7f",
    "\u00e9",
    "\u202e",
    "\U0001f600",
    "{",
    "}",
    "(",
    ")",
    "@",
    "/",
    "->",
    "#",
    '"',
    ";",
    "=",
    ",",
    ".",
    "x",
    ":",
    "$",
    "\\",
    "'",
    "[",
    "]",
]
PIECES = ["repeat 2 {", "}", "block", "network", "import", "input", "in", "->", "@", "/2", "x", "same", "(a, b)", "0"]
NUMBERS = ["0", "1", "2", "65", "1000", "100000", "0.5", "1e400", "4611686018427387905", *HUGE]


def _tokens(text: str) -> list[re.Match]:
    return list(TOKEN.finditer(text))


def mutate(draw, text: str) -> str:
    kind = draw(
        st.sampled_from(
            [
                "delete_token",
                "duplicate_token",
                "swap_tokens",
                "replace_token",
                "delete_line",
                "duplicate_line",
                "swap_lines",
                "insert_stray",
                "insert_text",
                "number",
                "number",
                "number_expr",
            ]
        )
    )
    pick = st.integers(0, 10**9)
    if kind.endswith("line") or kind == "swap_lines":
        lines = text.split("\n")
        i, j = draw(pick) % len(lines), draw(pick) % len(lines)
        if kind == "delete_line":
            del lines[i]
        elif kind == "duplicate_line":
            lines.insert(i, lines[i])
        else:
            lines[i], lines[j] = lines[j], lines[i]
        return "\n".join(lines)
    if kind in ("insert_stray", "insert_text"):
        at = draw(pick) % (len(text) + 1)
        piece = draw(st.sampled_from(STRAY)) if kind == "insert_stray" else draw(st.text(max_size=8))
        return text[:at] + piece + text[at:]
    if kind.startswith("number"):
        numbers = list(NUMBER.finditer(text))
        if not numbers:
            return text
        m = numbers[draw(pick) % len(numbers)]
        if kind == "number":
            new = draw(st.sampled_from(NUMBERS))
        else:
            new = draw(st.sampled_from([f"{m[0]} - 1", f"{m[0]} // 0", f"({m[0]})", f"{m[0]} * {m[0]} * {m[0]}"]))
        return text[: m.start()] + new + text[m.end() :]
    tokens = _tokens(text)
    if not tokens:
        return text + draw(st.sampled_from(PIECES))
    a = tokens[draw(pick) % len(tokens)]
    if kind == "delete_token":
        return text[: a.start()] + text[a.end() :]
    if kind == "duplicate_token":
        return text[: a.end()] + " " + a[0] + text[a.end() :]
    if kind == "replace_token":
        return text[: a.start()] + draw(st.sampled_from(PIECES)) + text[a.end() :]
    b = tokens[draw(pick) % len(tokens)]
    if a.start() > b.start():
        a, b = b, a
    if a.start() == b.start():
        return text
    return text[: a.start()] + b[0] + text[a.end() : b.start()] + a[0] + text[b.end() :]


@st.composite
def mutants(draw) -> str:
    text = SPEC_TEXTS[draw(st.sampled_from(sorted(SPEC_TEXTS)))]
    for _ in range(draw(st.integers(1, 4))):
        text = mutate(draw, text)
    return text


# -- options of loads(): batch, dtype and input shapes -------------------------------------------------


@functools.cache
def spec_inputs(name: str) -> tuple[str, ...]:
    return tuple(archc.loads(SPEC_TEXTS[name], name, base=SPECS).inputs)


@st.composite
def options(draw) -> tuple[str, dict]:
    """A bundled spec and keyword arguments for loads(): any batch, any dtype, input shapes of any size."""
    name = draw(st.sampled_from(sorted(SPEC_TEXTS)))
    kwargs: dict = {
        "batch": draw(st.one_of(st.integers(1, 256), st.sampled_from([2**31, 2**62, 10**30, 10**400]))),
        "dtype": draw(st.sampled_from(sorted(archc.DTYPE_BYTES))),
    }
    if draw(st.integers(0, 3)):
        size = st.one_of(st.integers(1, 300), st.sampled_from([0, 1, 2**31, 2**62, 10**30, 10**400]))
        rank = draw(st.integers(0, 5))
        inputs = spec_inputs(name)
        wanted = draw(st.sampled_from([*inputs, *inputs, "nope"]))
        kwargs["inputs"] = {wanted: tuple(draw(size) for _ in range(rank))}
    return name, kwargs


# -- the property ----------------------------------------------------------------------------------

OUTCOMES: Counter = Counter()  # (source, "valid" | "diagnosed") -> inputs, for the summary of the long run


def shown(text: str, limit: int = 3000) -> str:
    body = repr(text) if len(text) <= limit else repr(text[:limit]) + f"... ({len(text):,} characters)"
    return f"--- input ---\n{body}"


def check(text: str, file: str = "fuzz.arch", source: str = "fuzz", load=None, base: Path | None = None) -> str:
    """Run one input through everything archc does with it; "valid" or "diagnosed", else AssertionError.

    `load` replaces `archc.loads(text, file, base=base)` (then `text` only names the input in messages).
    """
    with hang_guard(HANG_GUARD, text):
        outcome = _run(text, file, load, base)
    OUTCOMES[source, outcome] += 1
    return outcome


class _Hang(BaseException):
    """Raised by the alarm; a BaseException, so that no `except Exception` in archc swallows it."""


@contextlib.contextmanager
def hang_guard(seconds: float, text: str):
    """Fail, showing the input, when the body is not done within `seconds` (in the main thread)."""

    def alarm(signum, frame):
        raise _Hang

    previous = signal.signal(signal.SIGALRM, alarm)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    except _Hang:
        raise AssertionError(f"not done within {seconds} s: archc hangs on\n{shown(text)}") from None
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


def _run(text: str, file: str, load, base) -> str:
    net = error = None
    try:
        net = load() if load is not None else archc.loads(text, file, base=base)
    except archc.ArchError as err:
        error = err
    except Exception as exc:  # RecursionError, MemoryError, ValueError, AssertionError inside archc, ...
        raise AssertionError(f"archc raised {type(exc).__name__}: {exc}\n{shown(text)}") from exc
    try:
        if error is not None:
            check_diagnostics(error)
        if net is not None:
            exercise(net)
    except AssertionError as exc:
        raise AssertionError(f"{exc}\n{shown(text)}") from exc
    except Exception as exc:
        what = "using the network" if error is None else "rendering the diagnostics"
        raise AssertionError(f"{what} raised {type(exc).__name__}: {exc}\n{shown(text)}") from exc
    return "valid" if error is None else "diagnosed"


def exercise(net) -> None:
    """Everything a valid network offers: the tables, the JSON, training memory, and code for both targets."""
    data = json.loads(net.table("json"))
    assert data["network"] == net.name
    for fmt in ("rich", "markdown", "csv"):
        assert isinstance(net.table(fmt), str)
    json.dumps(net.to_json())
    if net.dtype != "int8":  # an int8 network does not train
        json.loads(net.table("json", training=net.training_memory()))
        assert net.fit("1GiB").training_batch >= 0
    for target in ("torch", "numpy"):
        code = generate(net, target).code
        compile(code, f"<{target} code for {net.name}>", "exec")


def check_diagnostics(err: archc.ArchError) -> None:
    assert err.diagnostics, "an ArchError without diagnostics"
    assert err.errors, "an ArchError without a single error"
    assert isinstance(str(err), str)
    for d in err.diagnostics:
        assert CODE.fullmatch(d.code or ""), f"diagnostic without a code: {d}"
        assert d.severity in ("error", "warning"), d
        assert d.message, d
        if d.span is not None:
            assert d.span.line >= 1 and d.span.col >= 1, d
        assert render(d, err.sources)
        json.dumps(d.as_dict())
