"""A floor for benchmark 1: the least work an analyser written in Python does.

`analyse(text)` reads one of the five specs benchmark 1 measures and works
out what `archc.load` works out, layer by layer and with the same names:
output shape, parameters, buffers, MACs and receptive field, then the
activation memory in total and at its peak. It keeps none of archc's
guarantees: it records no source positions, checks no argument, name or
shape, reports no errors, keeps a tuple per layer instead of a node with
its readers, and reads only the subset of the language those specs are
written in (numbered layers, `if ... != ... or ...`), one statement per line with
spaces between the tokens.

An analyser that does archc's job does at least this much, so its time is
what the arithmetic itself costs in Python, and archc's time over it is the
price of the guarantees and of the whole language. Use it for nothing but
that measurement: given any other text, it answers wrongly or fails.
"""

from __future__ import annotations

import math


def _value(word: str, env: dict):
    if word[0].isdigit():
        return float(word) if "." in word or "e" in word else int(word)
    return env[word]


def _evaluate(words: list[str], env: dict):
    """`a`, `a * b` or `a - b`: the only arithmetic the bundled specs use."""
    value = _value(words[0], env)
    for op, word in zip(words[1::2], words[2::2], strict=True):
        value = value * _value(word, env) if op == "*" else value - _value(word, env)
    return value


def _words(line: str) -> list[str]:
    for mark in "(),":
        line = line.replace(mark, f" {mark} ")
    return line.split("#", 1)[0].split()


def _read(text: str):
    """Blocks as name -> (parameters with defaults, body), and the network's body; a
    statement is (op, name, input names, argument words), a repeat ("repeat", count, body)."""
    blocks, network, open_bodies = {}, [], []
    for line in text.splitlines():
        words = _words(line)
        if not words:
            continue
        if words[0] == "block":
            params = [p.partition("=") for p in words[3 : words.index(")")] if p != ","]
            body = []
            blocks[words[1]] = ([(name, default) for name, _, default in params], body)
            open_bodies.append(body)
        elif words[0] == "network":
            open_bodies.append(network)
        elif words[0] == "if":  # `if A != B or ... {`, then `} else {`, then `}`
            then, orelse = [], []
            open_bodies[-1].append(("if", words[1:-1], then, orelse))
            open_bodies.append(then)
        elif words[:3] == ["}", "else", "{"]:
            open_bodies.pop()
            open_bodies.append(open_bodies[-1][-1][3])
        elif words[0] == "repeat":
            brace = words.index("{")
            body = [_split(words[brace + 1 : -1])] if words[-1] == "}" else []
            open_bodies[-1].append(("repeat", words[1:brace], body))
            if not body:
                open_bodies.append(body)
        elif words[0] == "}":
            open_bodies.pop()
        else:
            open_bodies[-1].append(_split(words))
    return blocks, network


def _split(words: list[str]):
    """A statement's words as (op, name or None, input names, arguments, whether it has an
    activation); the activation after `->` changes no figure, but takes a number in a numbered body."""
    op, rest, name = words[0], words[1:], None
    if op[-1] == ":":
        op = op[:-1]
    elif rest and rest[0] not in ("(", "->", ":"):
        name, rest = rest[0], rest[1:]
        if name[-1] == ":":
            name, rest = name[:-1], [":", *rest]
    inputs = []
    if rest and rest[0] == "(":
        close = rest.index(")")
        inputs, rest = [w for w in rest[1:close] if w != ","], rest[close + 1 :]
    if rest and rest[0] == ":":
        rest = rest[1:]
    act = "->" in rest
    if act:
        rest = rest[: rest.index("->")]
    return op, name, inputs, rest, act


def _holds(words: list[str], env: dict) -> bool:
    """`a != b or c == d and e != f`: the only conditions the bundled specs use."""
    return any(all(_compare(c.split(), env) for c in part.split(" and ")) for part in " ".join(words).split(" or "))


def _names(body: list):
    """The names written in a body, in its repeats and branches too."""
    for statement in body:
        if statement[0] == "repeat":
            yield from _names(statement[2])
        elif statement[0] == "if":
            yield from _names(statement[2] + statement[3])
        elif statement[1]:
            yield statement[1]


def _with_in(env: dict, local: dict) -> dict:
    """The parameters, and `in.channels` inside a block."""
    return env if local["in"] is None else {**env, "in.channels": local["in"][2][0]}


def _compare(words: list[str], env: dict) -> bool:
    op = "!=" if "!=" in words else "=="
    at = words.index(op)
    left, right = _evaluate(words[:at], env), _evaluate(words[at + 1 :], env)
    return (left != right) if op == "!=" else (left == right)


def _conv_args(args: list[str], env: dict):
    """(filters, kernel, stride, pad, bias, ceil) from a conv or pool's arguments."""
    filters, kernel, stride, pad, bias, ceil = None, 1, None, 0, True, False
    if "@" in args:
        at = args.index("@")
        filters, args = _evaluate(args[:at], env), args[at + 1 :]
    for word in args:
        if word[0] == "/":
            stride = _value(word[1:], env)
        elif word.startswith("pad="):
            pad = _value(word[4:], env)
        elif word == "bias=false":
            bias = False
        elif word == "ceil":
            ceil = True
        elif "=" not in word:
            kernel = int(word.partition("x")[0]) if word[0].isdigit() else env[word]
    return filters, kernel, stride, pad, bias, ceil


class _Analysis:
    def __init__(self, blocks: dict):
        self.blocks = blocks
        # per layer: (name, op, shape, params, buffers, MACs, receptive field, input rows, index)
        self.rows = []

    def statements(self, body: list, env: dict, scope: str, last, suffix: str = "", outer=None, local=None):
        """Analyses a body whose input is the row `last`; returns its last row.

        Names as archc gives them: an unnamed layer or call is its op and a count
        within its block (`add1`), or in a numbered body the next number; a named one in
        a repeat gets the iteration (`c_2`). A repeat or a branch shares the body's
        numbering (`outer`) and names (`local`)."""
        local = {"in": last} if local is None else local
        numbered = any(name.isdigit() for name in _names(body))
        counts = {"": 0 if numbered else None}
        counts = counts if outer is None else outer
        for statement in body:
            if statement[0] == "repeat":
                for k in range(_evaluate(statement[1], env)):
                    last = self.statements(statement[2], env, scope, last, f"{suffix}_{k + 1}", counts, local)
                continue
            if statement[0] == "if":
                taken = statement[2] if _holds(statement[1], _with_in(env, local)) else statement[3]
                last = self.statements(taken, env, scope, last, suffix, counts, local)
                continue
            op, name, inputs, args, act = statement
            sources = [local[n] for n in inputs] or [last]
            if counts[""] is not None:  # numbered as nn.Sequential: the activation takes a number too
                number = int(name) if name else counts[""]
                counts[""] = number + 1 + (act and op not in self.blocks)
                full = f"{scope}{name}{suffix}" if name else f"{scope}{number}"
            elif name is None:
                counts[op] = count = counts.get(op, 0) + 1
                full = f"{scope}{op}{count}"
            else:
                full = f"{scope}{name}{suffix}"
            if op in self.blocks:
                last = self.call(op, full, args, _with_in(env, local), sources[0])
            else:
                last = self.layer(op, full, args, env, sources)
            if name is not None:  # the bundled specs refer to named layers only
                local[name] = last
        return last

    def call(self, block: str, name: str, args: list[str], env: dict, source):
        params, body = self.blocks[block]
        inner = {p: _value(default, {}) for p, default in params if default}
        positional: list[list[str]] = []  # `width * 4 stride`: two arguments
        for word in (a for a in args if "=" not in a):
            if positional and (word in ("*", "-") or positional[-1][-1] in ("*", "-")):
                positional[-1].append(word)
            else:
                positional.append([word])
        for (param, _), words in zip(params, positional, strict=False):
            inner[param] = _evaluate(words, env)
        for word in args:
            if "=" in word:
                key, _, value = word.partition("=")
                inner[key] = _value(value, env)
        return self.statements(body, inner, f"{name}.", source)

    def layer(self, op: str, name: str, args: list[str], env: dict, sources: list):
        params = buffers = macs = 0
        if op == "input":
            shape, rf, sources = tuple(int(d) for d in args[0].split("x")), ((1, 1, 0.5), (1, 1, 0.5)), []
        else:
            shape, rf = sources[0][2], sources[0][6]
        c = shape[0]
        if op in ("conv", "dwconv", "maxpool"):
            filters, k, stride, pad, bias, ceil = _conv_args(args, env)
            stride = stride or (k if op == "maxpool" else 1)
            rounding = math.ceil if ceil else math.floor
            h, w = (rounding((d + 2 * pad - k) / stride) + 1 for d in shape[1:])
            if op != "maxpool":
                out = filters or c
                per_filter = (1 if op == "dwconv" else c) * k * k
                params, macs = out * per_filter + (out if bias else 0), out * h * w * per_filter
                c = out
            shape = (c, h, w)
            centre = (k - 1) / 2 - pad
            rf = tuple((size + (k - 1) * jump, jump * stride, start + centre * jump) for size, jump, start in rf)
        elif op == "bn":
            params = buffers = 2 * c
        elif op == "dense":
            out = _evaluate(args, env)
            params, macs, shape = c * out + out, c * out, (out,)
        elif op == "globalavgpool":
            shape, rf = (c, 1, 1), None
        elif op == "flatten":
            shape, rf = (math.prod(shape),), None
        elif op in ("add", "concat"):
            rf = tuple(max(dims, key=lambda dim: dim[0]) for dims in zip(*(source[6] for source in sources)))
            if op == "concat":
                shape = (sum(source[2][0] for source in sources), *shape[1:])
        row = (name, op, shape, params, buffers, macs, rf, sources, len(self.rows))
        self.rows.append(row)
        return row


def _memory(rows: list) -> tuple[int, int]:
    """Activation elements in total and at the inference peak, as archc counts them:
    a view shares its input's memory, and a tensor is freed after its last reader."""
    last_read = [len(rows)] * len(rows)  # never, for the network's outputs
    for i, row in enumerate(rows):
        for source in row[7]:
            last_read[source[8]] = i
    owner = list(range(len(rows)))
    for i, row in enumerate(rows):
        if row[1] in ("flatten", "dropout"):
            owner[i] = root = owner[row[7][0][8]]
            last_read[root] = max(last_read[root], last_read[i])
    sizes = [math.prod(row[2]) for row in rows]
    total = live = peak = 0
    for i, row in enumerate(rows):
        if owner[i] == i:
            total += sizes[i]
            live += sizes[i]
            peak = max(peak, live)
        for root in {owner[source[8]] for source in row[7]}:
            if last_read[root] == i:
                live -= sizes[root]
    return total, peak


def analyse(text: str):
    """Per layer: (name, op, shape, params, buffers, MACs, receptive field, input rows,
    index), and the activation elements in total and at the peak."""
    blocks, network = _read(text)
    analysis = _Analysis(blocks)
    analysis.statements(network, {}, "", None)
    return analysis.rows, _memory(analysis.rows)
