"""A flat imported network -> blocks and repeats, for the `.arch` text `archc import` prints.

Importers build one statement per layer, so that every diagnostic points at
the source line it came from. Printed that way a YOLOv3 is 180 lines of
`conv`/`bn` pairs; a person writes it with blocks. This module finds them:

1. **Units.** The statements one source layer became (a Darknet
   `[convolutional]` with batch norm: `conv` + `bn`; a Caffe InnerProduct on a
   map: `flatten` + `dense`) form a unit. Units with the same layer types,
   settings names and activations become calls of one block; the settings
   that differ between them become its parameters (a setting that is not a
   layer's positional one gets the most common value as its default).
2. **Modules.** Consecutive statements an importer marks as one module (a
   Caffe name prefix: every `inception_3a/...` layer) become a block call the
   same way, when two or more modules share a structure.
3. **Repeats.** A window of one to four statements that reads only the
   statement before it and is repeated unchanged becomes `repeat N { ... }`
   (Darknet's residual units: `repeat 8 { residual: 256 }`).

Every reference is rewritten to the new names (`conv13` -> `conv13`, the
instance; a layer inside a repeat -> `residual3_8.conv_bn2`), and the tests
check that the printed text gives the figures of the flat network, layer by
layer.
"""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass, field

from .. import ast
from ..diagnostics import Span
from ..expand import evaluate
from ..ops import OPS
from ..ops.base import REQUIRED as REQUIRED_OP
from .common import KEYWORDS, sanitize, to_value

MAX_WINDOW = 4


class Param:
    """A block parameter standing in a body statement's argument."""

    def __init__(self, name: str):
        self.name = name

    def __repr__(self) -> str:  # pragma: no cover - debugging aid
        return f"Param({self.name})"


@dataclass
class Item:
    """One statement of the network being structured: a layer, a block call or a repeat."""

    op: str
    args: dict  # parameter name -> Python value, in the order written
    activation: ast.Activation | None
    inputs: list[str]  # flat names it reads
    owned: dict[str, str]  # flat name -> path inside this item ("" = its output)
    name: str  # its name in the network
    span: Span
    repeat: tuple | None = None  # (count, the repeated item) for a repeat
    out_path: str = ""  # for a block call: the path of the layer that holds its output (`bn1`)

    def act_key(self):
        act = self.activation
        return None if act is None else (act.name, tuple(evaluate(v, {}) for v in act.args))


@dataclass
class Block:
    name: str
    params: list[tuple[str, object]]  # (name, default or REQUIRED)
    body: list[ast.Layer]
    bindings: list[dict[str, str]]  # per body statement: its setting -> the parameter that gives it


REQUIRED = object()


@dataclass
class _State:
    blocks: list[Block] = field(default_factory=list)
    block_params: dict[str, list[tuple[str, object]]] = field(default_factory=dict)
    taken: set[str] = field(default_factory=set)


def structure(
    module: ast.Module,
    units: list[tuple[str, list[str]]],
    modules: list[tuple[str, list[str]]] = (),
    repeats: bool = True,
) -> ast.Module:
    """The flat module with blocks and repeats; the network's figures are unchanged.

    `units` and `modules` are (instance name, statement names) as the importer grouped them.
    """
    net = module.networks[0]
    stmts = [s for s in net.body if isinstance(s, ast.Layer)]
    outputs = next((s for s in stmts if s.op == "output"), None)
    layers = [s for s in stmts if s.op != "output"]
    state = _State(taken={*OPS, *KEYWORDS, *(s.name for s in layers)})
    items = [_item(s) for s in layers]
    items = _group(items, [u for u in units if len(u[1]) > 1], state, "unit")
    if modules:
        items = _group(items, list(modules), state, "module")
    if repeats:
        items = _repeats(items, state)
    return _module(module, net, items, outputs, state)


# -- items ------------------------------------------------------------------------------------------


def _bind(op: str, args) -> dict:
    spec = OPS[op]
    positional = [p.name for p in spec.params if p.positional]
    out: dict = {}
    for arg in args:
        value = evaluate(arg.value, {})
        key = arg.name
        if key is None and isinstance(value, str) and value in spec.symbols:
            key, value = spec.symbols[value]
        elif key is None:
            key = next(p for p in positional if p not in out)
        out[key] = value
    for p in spec.params:  # every setting, so that layers that differ only in what they leave out compare equal
        if p.name not in out and p.default is not REQUIRED_OP:
            out[p.name] = p.default
    return out


def _item(stmt: ast.Layer) -> Item:
    return Item(
        op=stmt.op,
        args=_bind(stmt.op, stmt.args),
        activation=stmt.activation,
        inputs=[r.text for r in stmt.inputs or ()],
        owned={stmt.name: ""},
        name=stmt.name,
        span=stmt.span,
    )


def _positional(op: str, state: _State) -> list[str]:
    if op in OPS:
        return [p.name for p in OPS[op].params if p.positional]
    return [name for name, default in state.block_params[op] if default is REQUIRED]


def _default(op: str, key: str, state: _State):
    if op in OPS:
        return next((p.default for p in OPS[op].params if p.name == key), REQUIRED)
    return dict(state.block_params[op]).get(key, REQUIRED)


# -- windows: canonical form and grouping -------------------------------------------------------------


def _owner(items: list[Item]) -> dict[str, tuple[int, str]]:
    return {flat: (i, path) for i, item in enumerate(items) for flat, path in item.owned.items()}


def _shape(window: list[Item], start: int, owner) -> tuple | None:
    """The window's structure, references made relative; None unless it reads exactly one outside value.

    That value (`in` in the block) must be an output, not a layer inside another instance.
    """
    outside: set = set()
    refs = []
    for item in window:
        mine = []
        for flat in item.inputs:
            i, path = owner[flat]
            if start <= i < start + len(window):
                mine.append(("local", i - start, path))
            else:
                outside.add((i, path))
                mine.append(("in",))
        refs.append(tuple(mine))
    if len(outside) != 1 or next(iter(outside))[1] != "":
        return None
    return tuple((item.op, tuple(sorted(item.args)), item.act_key(), r) for item, r in zip(window, refs))


def _reads(window: list[Item], start: int, owner) -> int:
    """The index of the one item outside the window it reads."""
    for item in window:
        for flat in item.inputs:
            i, _path = owner[flat]
            if not start <= i < start + len(window):
                return i
    return -1  # pragma: no cover - _shape found one


def _group(items, windows, state: _State, kind: str) -> list[Item]:
    """Windows (instance name, statement names) of the same structure, two or more -> calls of one block."""
    owner = _owner(items)
    found = []  # (start, length, shape, instance name)
    for name, names in windows:
        positions = sorted({owner[n][0] for n in names if n in owner})
        if len(positions) < 2 or positions != list(range(positions[0], positions[-1] + 1)):
            continue
        start, length = positions[0], len(positions)
        window = items[start : start + length]
        shape = None if any(item.repeat for item in window) else _shape(window, start, owner)
        if shape is not None:
            found.append((start, length, shape, name))
    by_shape: dict = {}
    for entry in found:
        by_shape.setdefault(entry[2], []).append(entry)
    replace: dict[int, tuple[int, Item]] = {}
    for shape, entries in by_shape.items():
        if len(entries) < 2:
            continue  # a block called once only hides its layers
        windows_items = [items[s : s + n] for s, n, _sh, _name in entries]
        block = _make_block(windows_items, shape, state, _block_name(windows_items[0], kind, entries[0][3]))
        for (start, length, _sh, name), window in zip(entries, windows_items):
            replace[start] = (length, _call(block, window, shape, name))
    out, i = [], 0
    while i < len(items):
        if i in replace:
            length, call = replace[i]
            out.append(call)
            i += length
        else:
            out.append(items[i])
            i += 1
    return out


def _block_name(window: list[Item], kind: str, instance: str) -> str:
    if kind == "module":
        return re.sub(r"_?\d+[a-z]?$", "", sanitize(instance)) or "module"
    if kind == "repeat":
        return "residual" if window[-1].op in ("shortcut", "add") else "unit"
    ops = [item.op for item in window]
    last = window[-1].activation
    return "_".join(ops + ([last.name] if last is not None else []))


def _fresh(base: str, state: _State) -> str:
    name, n = base, 1
    while name in state.taken:
        n += 1
        name = f"{base}{n}"
    state.taken.add(name)
    return name


def _inside(names: list[str], window: list[Item], j: int, path: str) -> str:
    """A dotted reference to `path` in the window's item j: an unnamed block call is no layer itself,
    so its output is named by the layer that computes it."""
    path = path or window[j].out_path
    return names[j] + (f".{path}" if path else "")


def _local_names(window: list[Item]) -> list[str]:
    """The names the expander generates for unnamed statements: type and a counter per type."""
    counts: Counter = Counter()
    names = []
    for item in window:
        counts[item.op] += 1
        sep = "_" if item.op[-1].isdigit() else ""
        names.append(f"{item.op}{sep}{counts[item.op]}")
    return names


def _make_block(windows: list[list[Item]], shape, state: _State, base: str) -> Block:
    """A block for windows of one structure: settings that differ become parameters."""
    first = windows[0]
    params: list[tuple[str, object]] = []
    used: Counter = Counter()
    bindings: list[dict[str, str]] = []
    body_args: list[dict] = []
    for j, item in enumerate(first):
        args, binding = {}, {}
        positional = _positional(item.op, state)
        for key in item.args:
            values = [w[j].args[key] for w in windows]
            if all(v == values[0] for v in values):
                if values[0] != _default(item.op, key, state):
                    args[key] = values[0]
                continue
            used[key] += 1
            pname = key if used[key] == 1 else f"{key}{used[key]}"
            default = REQUIRED if key in positional else Counter(values).most_common(1)[0][0]
            params.append((pname, default))
            args[key] = Param(pname)
            binding[key] = pname
        body_args.append(args)
        bindings.append(binding)
    params = [p for p in params if p[1] is REQUIRED] + [p for p in params if p[1] is not REQUIRED]
    name = _fresh(base, state)
    state.block_params[name] = params
    names = _local_names(first)
    body = []
    for j, (item, args) in enumerate(zip(first, body_args)):
        refs = shape[j][3]
        texts = ["in" if r[0] == "in" else _inside(names, first, r[1], r[2]) for r in refs]
        reads_prev = refs == ((("in",),) if j == 0 else (("local", j - 1, ""),))
        inputs = None if reads_prev else tuple(ast.Ref(tuple(t.split(".")), item.span) for t in texts)
        stmt_args = _args(item.op, args, state, item.span)
        body.append(ast.Layer(item.op, item.span, None, None, inputs, stmt_args, item.activation, item.span))
    block = Block(name, params, body, bindings)
    state.blocks.append(block)
    return block


def _args(op: str, args: dict, state: _State, span: Span) -> tuple[ast.Arg, ...]:
    """Arguments as the printer writes them: the positional ones in order while they last, then keywords."""
    positional = _positional(op, state)
    args = {k: v for k, v in args.items() if isinstance(v, Param) or v != _default(op, k, state)}
    lead = 0
    while lead < len(positional) and positional[lead] in args:
        lead += 1
    out = [ast.Arg(None, _value(args[key], span), span) for key in positional[:lead]]
    out += [ast.Arg(key, _value(value, span), span) for key, value in args.items() if key not in positional[:lead]]
    return tuple(out)


def _value(value, span: Span) -> ast.Value:
    if isinstance(value, Param):
        return ast.Value((ast.Name(value.name, span),), span)
    return to_value(value, span)


def _call(block: Block, window: list[Item], shape, name: str) -> Item:
    """The window as a call of `block`; it owns every name the window's items owned."""
    values = {}
    for item, binding in zip(window, block.bindings):
        for key, pname in binding.items():
            values[pname] = item.args[key]
    args = {p: values[p] for p, default in block.params if default is REQUIRED or values[p] != default}
    names = _local_names(window)
    last = len(window) - 1
    owned: dict[str, str] = {}
    for j, item in enumerate(window):
        for flat, path in item.owned.items():
            owned[flat] = "" if (j == last and not path) else _inside(names, window, j, path)
    reads = next(f for item, s in zip(window, shape) for f, r in zip(item.inputs, s[3]) if r[0] == "in")
    out_path = _inside(names, window, last, "")
    return Item(block.name, args, None, [reads], owned, name, window[0].span, out_path=out_path)


# -- repeats ------------------------------------------------------------------------------------------


def _repeats(items: list[Item], state: _State) -> list[Item]:
    """Runs of a window repeated unchanged -> `repeat N { ... }` (windows of 2+ items become a block)."""
    owner = _owner(items)
    runs = []  # (start, width, count)
    i = 0
    while i < len(items):
        best = None
        for width in range(1, MAX_WINDOW + 1):
            count = _run(items, i, width, owner)
            # a repeat of a single statement pays only from three copies on
            if count >= (3 if width == 1 else 2) and (best is None or count * width > best[0] * best[1]):
                best = (width, count)
        if best is None:
            i += 1
            continue
        runs.append((i, *best))
        i += best[0] * best[1]
    if not runs:
        return items
    shapes: dict = {}  # windows with the same structure share a block, whatever their settings
    for start, width, _count in runs:
        if width > 1:
            shapes.setdefault(_shape(items[start : start + width], start, owner), []).append(start)
    blocks: dict[int, Block] = {}
    for shape, starts in shapes.items():
        windows = [items[s : s + w] for s, w, _c in runs if s in starts]
        block = _make_block(windows, shape, state, _block_name(windows[0], "repeat", ""))
        for s in starts:
            blocks[s] = block
    out, i, index = [], 0, {start: (width, count) for start, width, count in runs}
    while i < len(items):
        if i not in index:
            out.append(items[i])
            i += 1
            continue
        width, count = index[i]
        windows = [items[i + k * width : i + (k + 1) * width] for k in range(count)]
        if width > 1:
            calls = [_call(blocks[i], w, _shape(w, i + k * width, owner), "") for k, w in enumerate(windows)]
        else:
            calls = [w[0] for w in windows]
        name = _fresh(_repeat_name("stage", state), state)
        owned = {}
        for k, call in enumerate(calls, 1):
            for flat, path in call.owned.items():
                owned[flat] = f"{name}_{k}" + (f".{path}" if path else "")
        body = Item(calls[0].op, calls[0].args, calls[0].activation, [], {}, name, calls[0].span)
        out.append(Item("repeat", {}, None, calls[0].inputs, owned, name, calls[0].span, repeat=(count, body)))
        i += width * count
    return out


def _repeat_name(op: str, state: _State) -> str:
    n = 1
    while f"{op}{n}" in state.taken:
        n += 1
    return f"{op}{n}"


def _run(items: list[Item], start: int, width: int, owner) -> int:
    """How many times the window at `start` comes again unchanged, each copy reading only the one before."""
    if start == 0 or start + 2 * width > len(items):
        return 1

    def key(at: int):
        window = items[at : at + width]
        if any(item.repeat or item.op == "input" for item in window):
            return None
        shape = _shape(window, at, owner)
        if shape is None or _reads(window, at, owner) != at - 1:
            return None  # a copy reads the copy before it, the first one the statement above: what repeat does
        return shape, tuple(tuple((k, repr(v)) for k, v in item.args.items()) for item in window)

    first = key(start)
    if first is None:
        return 1
    count = 1
    while start + (count + 1) * width <= len(items) and key(start + count * width) == first:
        count += 1
    return count


# -- the module ------------------------------------------------------------------------------------------


def _module(module: ast.Module, net: ast.Network, items: list[Item], outputs, state: _State) -> ast.Module:
    where: dict[str, str] = {}
    for item in items:
        for flat, path in item.owned.items():
            where[flat] = path if item.repeat else item.name + (f".{path}" if path else "")

    def refs(flats: list[str], prev: str | None, span: Span):
        texts = [where[f] for f in flats]
        if not texts or texts == [prev]:
            return None
        return tuple(ast.Ref(tuple(t.split(".")), span) for t in texts)

    body: list = []
    prev = None
    for item in items:
        if item.repeat:
            count, inner = item.repeat
            args = _args(inner.op, inner.args, state, inner.span)
            call = ast.Layer(inner.op, inner.span, item.name, inner.span, None, args, inner.activation, inner.span)
            body.append(ast.Repeat(ast.Num(count, item.span), (call,), item.span))
            prev = f"{item.name}_{count}"
            continue
        inputs = None if item.op == "input" else refs(item.inputs, prev, item.span)
        args = _args(item.op, item.args, state, item.span)
        body.append(ast.Layer(item.op, item.span, item.name, item.span, inputs, args, item.activation, item.span))
        prev = item.name
    if outputs is not None:
        refs_out = tuple(ast.Ref(tuple(where[r.text].split(".")), r.span) for r in outputs.inputs)
        body.append(ast.Layer("output", outputs.span, None, None, refs_out, (), None, outputs.span))
    blocks = tuple(
        ast.Block(
            b.name,
            tuple(ast.Param(n, None if d is REQUIRED else to_value(d, net.span), net.span) for n, d in b.params),
            tuple(b.body),
            net.span,
            net.span,
        )
        for b in state.blocks
    )
    network = ast.Network(net.name, tuple(body), net.span)
    return ast.Module(module.file, module.imports, module.blocks + blocks, (network,))
