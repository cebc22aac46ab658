"""The NumPy target: a standalone module whose only import is numpy.

The layer functions come from numpy_kernels.py, copied as source text: only
those the network calls (and what they call), so the file stays short and
runs without archc. The kernels file is read with `ast`, never imported, so
generating code does not need numpy.
"""

from __future__ import annotations

import ast
import functools
import re
from pathlib import Path

from ..ops import OPS
from .common import (
    Generated,
    StateRef,
    forward_body,
    header,
    make_plan,
    reserved_names,
    shapes_text,
    signature,
)
from .init import Initial, describe
from .pyexpr import Entry, Seq, lines, lit

# the forward kernels, then the training ones (numpy_backward.py: backward kernels, losses, optimisers)
KERNELS = tuple(Path(__file__).parent / "runtime" / name for name in ("numpy_kernels.py", "numpy_backward.py"))
_CALLED = re.compile(r"(?<![\w.])([A-Za-z_]\w*)\(")  # the names of functions called, not methods

METHODS = '''
    def __call__(self, *inputs):
        return self.forward(*inputs)

    def train(self, mode=True):
        """Training: batch norm uses and updates batch statistics, dropout drops."""
        self.training = mode
        return self

    def eval(self):
        """Inference: batch norm uses its running statistics, dropout does nothing."""
        return self.train(False)

    def state_dict(self):
        """A copy of every array, with the keys and shapes of torch's state_dict()."""
        return {key: value.copy() for key, value in self.state.items()}

    def load_state_dict(self, state):
        """Takes arrays, or anything np.asarray takes (CPU torch tensors included)."""
        missing = sorted(self.state.keys() - state.keys())
        unexpected = sorted(state.keys() - self.state.keys())
        if missing or unexpected:
            raise KeyError(f"missing keys {missing}, unexpected keys {unexpected}")
        loaded = {}
        for key, value in state.items():
            value = np.asarray(value)
            expected = self.state[key]
            if value.shape != expected.shape:
                raise ValueError(f"{key}: shape {value.shape} != {expected.shape}")
            loaded[key] = value.astype(expected.dtype)
        self.state.update(loaded)

    def save(self, path):
        """Writes the state to a .npz file."""
        np.savez(path, **self.state)

    def load(self, path):
        """Reads the state from a .npz file written by save()."""
        with np.load(path) as data:
            self.load_state_dict(dict(data))
        return self
'''.strip("\n").splitlines()


@functools.cache
def _kernels() -> dict[str, tuple[str, frozenset[str]]]:
    """name -> (source, names of the other kernels it calls), over both runtime modules."""
    texts = [path.read_text(encoding="utf-8") for path in KERNELS]
    functions = [(t, n) for t in texts for n in ast.parse(t).body if isinstance(n, ast.FunctionDef)]
    names = {f.name for _, f in functions}
    out = {}
    for text, f in functions:
        calls = {n.id for n in ast.walk(f) if isinstance(n, ast.Name) and n.id in names} - {f.name}
        out[f.name] = (ast.get_source_segment(text, f), frozenset(calls))
    return out


def kernel_names() -> tuple[str, ...]:
    return tuple(_kernels())


def _needed(code: str) -> list[str]:
    """The kernels the code calls and, transitively, the kernels they call, in the kernels file's order."""
    kernels = _kernels()
    wanted = set(kernels).intersection(_CALLED.findall(code))  # one pass over the code, however many kernels
    stack = list(wanted)
    while stack:
        for dep in kernels[stack.pop()][1]:
            if dep not in wanted:
                wanted.add(dep)
                stack.append(dep)
    return [name for name in kernels if name in wanted]


def generate(network, flat: bool = False) -> Generated:
    """The module; its state_dict keys are the PyTorch target's, nested or (with `flat`) flat."""
    plan = make_plan(network, reserved_names())
    graph = network.graph
    key = plan.attrs if flat else _nested_keys(network, plan.attrs)
    entries = []
    for node in graph:
        if node.op == "input":
            continue
        ins = [graph.nodes[i].shape for i in node.inputs]
        for suffix, value in OPS[node.op].numpy_state(node, ins, Initial(network, node)):
            entries.append(Entry(lit(StateRef(key[node.name]).name(suffix)), value))

    def layer(node, args):
        return OPS[node.op].numpy_call(node, StateRef(key[node.name]), args)

    def activation(op, attrs, expr):
        return op.apply_numpy(attrs, expr)

    init_lines = [
        "    def __init__(self, seed=0):",
        "        rng = np.random.default_rng(seed)",
        "        self.rng = rng  # also draws the dropout masks",
        "        self.training = False",
        *lines(Seq("{", "}", tuple(entries), explode=True), 2, "self.state = "),
    ]
    head = [
        *header(network, "NumPy"),
        f'"""{network.name} in NumPy: `build_model(seed)` returns one; it needs nothing but numpy."""',
        "",
        "import numpy as np",
        "",
        "",
        f"class {plan.cls}:",
        f'    """{network.name}, generated by archc.',
        "",
        *(f"    {line}" for line in shapes_text(plan)),
        "",
        "    Arrays live in `state`, under the keys and shapes of the PyTorch model's",
        "    state_dict(), so weights move between the two by key.",
        "",
        *(f"    {line}" for line in describe(network, 84)),
        '    """',
        "",
        *init_lines,
        "",
        *signature(plan),
    ]
    if entries:
        head.append("        s = self.state")
    body, where = forward_body(plan, layer, activation, 2, 0)
    first = len(head) + 1
    tail = [
        "",
        *METHODS,
        "",
        "",
        "def build_model(seed=0):",
        f'    """A new {plan.cls}; the same seed gives the same weights."""',
        f"    return {plan.cls}(seed)",
    ]
    kernels = _kernels()
    used = _needed("\n".join(init_lines + body))
    for name in used:
        tail += ["", "", *kernels[name][0].splitlines()]
    code = "\n".join(head + body + tail) + "\n"
    return Generated(code, [(name, var, first + offset) for name, var, offset in where], key)


def _nested_keys(network, flat: dict[str, str]) -> dict[str, str]:
    """The nested PyTorch target's keys (`layer1.0.conv1`), or `flat` where it is generated flat."""
    from .tree import ReachError, build, keys

    try:
        return keys(build(network))
    except ReachError:
        return flat
