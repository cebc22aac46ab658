"""Running generated code in tests: import it from text, and read every layer's value.

`traced` runs a generated `forward` under `sys.settrace` and, using the line
where each layer's statement starts (which the generator reports), takes the
value each statement assigned just before the next one starts (a copy: a later
statement may update the tensor in place, as `x += skip` does). That reads
every intermediate tensor, including those computed inline (add, concat,
reshape) that a forward hook cannot see, without changing the generated code.
"""

from __future__ import annotations

import itertools
import sys
import types

import archc
from archc.codegen import generate

_count = itertools.count()


def load_module(code: str, label: str = "generated") -> types.ModuleType:
    filename = f"<archc-{label}-{next(_count)}>"
    module = types.ModuleType(filename)
    module.__file__ = filename
    exec(compile(code, filename, "exec"), module.__dict__)
    return module


def build(net, target: str, **kwargs):
    """(model, Generated, filename) for an analysed network."""
    gen = generate(net, target)
    module = load_module(gen.code, target)
    return module.build_model(**kwargs), gen, module.__file__


def traced(model, gen, filename: str, *inputs) -> tuple[object, dict]:
    """Run model(*inputs); return its result and {layer: value} for every layer."""
    starts = {line: i for i, (_, _, line) in enumerate(gen.statements)}
    values: dict = {}

    def take(frame, i):
        layer, var, _ = gen.statements[i]
        if layer not in values and var is not None:
            values[layer] = _copy(frame.f_locals[var])

    def watch(frame, event, arg):
        if event == "line" and frame.f_lineno in starts and starts[frame.f_lineno] > 0:
            take(frame, starts[frame.f_lineno] - 1)
        elif event == "return":
            layer, var, _ = gen.statements[-1]
            if var is None:
                values[layer] = arg
            else:
                take(frame, len(gen.statements) - 1)

    return run_watched(model, filename, inputs, watch), values


def run_watched(model, filename: str, inputs, watch):
    """model(*inputs), with `watch(frame, event, arg)` called on every trace event of the generated forward."""

    def local(frame, event, arg):
        watch(frame, event, arg)
        return local

    def calls(frame, event, arg):
        code = frame.f_code
        return local if code.co_filename == filename and code.co_name == "forward" else None

    old = sys.gettrace()
    sys.settrace(calls)
    try:
        return model(*inputs)
    finally:
        sys.settrace(old)


def _copy(value):
    """A tensor's or an array's own copy."""
    if hasattr(value, "clone"):  # torch.Tensor
        return value.clone()
    return value.copy() if hasattr(value, "copy") else value


def analysed(text: str, file: str = "t.arch", **kwargs):
    return archc.loads(text, file, **kwargs)
