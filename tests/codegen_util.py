"""Running generated code in tests: import it from text, and read every layer's value.

`traced` runs a generated `forward` under `sys.settrace` and, using the line
where each layer's statement starts (which the generator reports), takes the
value each statement assigned just before the next one starts (a copy: a later
statement may update the tensor in place, as `x += skip` does). A layer with
no statement of its own shares its line with what follows it. That reads
every intermediate tensor, including those computed inline (add, concat,
reshape) that a forward hook cannot see, without changing the generated code.
"""

from __future__ import annotations

import ast
import itertools
import sys
import types
import warnings

import archc
from archc.codegen import generate

_count = itertools.count()


def load_module(code: str, label: str = "generated") -> types.ModuleType:
    filename = f"<archc-{label}-{next(_count)}>"
    module = types.ModuleType(filename)
    module.__file__ = filename
    exec(compile(code, filename, "exec"), module.__dict__)
    return module


def build(net, target: str, flat: bool = False, **kwargs):
    """(model, Generated, filename) for an analysed network; `traced` needs the `flat` code, whose one
    forward has a statement per layer."""
    gen = generate(net, target, flat=flat)
    module = load_module(gen.code, target)
    return module.build_model(**kwargs), gen, module.__file__


def traced(model, gen, filename: str, *inputs) -> tuple[object, dict]:
    """Run model(*inputs); return its result and {layer: value} for every layer that has a statement.

    A layer nothing reads is a bare expression statement: its value is the expression,
    evaluated in forward's frame just before the statement runs it (so the oracle sees
    what the statement computes, and the statement still runs as written).
    """
    starts: dict[int, list[int]] = {}
    for i, (_, _, line) in enumerate(gen.statements):
        starts.setdefault(line, []).append(i)
    bare = bare_statements(gen.code, set(starts))
    # every line of a statement over several lines -> its first: Python reports a line inside it
    # (`self.act(x)` of `y = (\n self.act(x)\n)`) before the first, and an in-place module there
    # must not run before the value of the statement above is taken
    first_line = statement_lines(gen.code)
    current = [None]
    values: dict = {}
    # The variables of the statements the current line starts, as they were then: a layer that is
    # only a name for its input (NumPy's `identity`, written as a comment) shares the next line,
    # which may `del` that name before the next statement starts.
    aliases: dict = {}

    def take(frame, i):
        layer, var, _ = gen.statements[i]
        if layer not in values and var is not None:
            values[layer] = _copy(frame.f_locals[var] if var in frame.f_locals else aliases[i])

    def watch(frame, event, arg):
        lineno = first_line.get(frame.f_lineno, frame.f_lineno)
        if event == "line" and lineno in starts and lineno != current[0]:
            current[0] = lineno
            for i in starts[lineno]:  # what ran before this line is done
                if i > 0:
                    take(frame, i - 1)
            aliases.clear()
            for i in starts[lineno]:
                var = gen.statements[i][1]
                if var in frame.f_locals:
                    aliases[i] = frame.f_locals[var]
            layer = gen.statements[starts[lineno][-1]][0]  # the statement this line starts
            if lineno in bare and layer not in values:
                values[layer] = _copy(eval(bare[lineno], frame.f_globals, frame.f_locals))
        elif event == "return" and gen.statements:  # (a network of inputs alone has no statement)
            layer, var, line = gen.statements[-1]
            if var is not None:
                take(frame, len(gen.statements) - 1)
            elif line not in bare:  # the last statement returns the layer's value
                values[layer] = arg

    return run_watched(model, filename, inputs, watch), values


def statement_lines(code: str) -> dict[int, int]:
    """{line: the first line of its statement} for the statements of forward over several lines."""
    forward = next(n for n in ast.walk(ast.parse(code)) if isinstance(n, ast.FunctionDef) and n.name == "forward")
    return {line: stmt.lineno for stmt in forward.body for line in range(stmt.lineno + 1, stmt.end_lineno + 1)}


def bare_statements(code: str, lines: set[int]) -> dict[int, object]:
    """{line: the compiled expression} for the bare expression statements of forward starting on `lines`."""
    forward = next(n for n in ast.walk(ast.parse(code)) if isinstance(n, ast.FunctionDef) and n.name == "forward")
    return {
        stmt.lineno: compile(ast.Expression(stmt.value), "<bare statement>", "eval")
        for stmt in forward.body
        if stmt.lineno in lines and isinstance(stmt, ast.Expr)
    }


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


def measured(model, *inputs) -> tuple[int, int, int]:
    """(parameters, buffers, MACs) of a torch model as torch counts them, for inputs of batch 1.

    MACs are half of the FLOPs torch.utils.flop_counter counts (convolutions and matrix
    products, whose bias it leaves out, as archc's MACs do), with torch's native kernels
    (oneDNN's fused LSTM hides its matrix products from the counter); buffers leave out
    batch norm's `num_batches_tracked`, a step counter. Grad mode stays on and attention runs on
    the math backend: the counter sees no work of nn.MultiheadAttention's inference fast
    path, nor of a fused attention kernel.
    """
    import torch
    from torch.nn.attention import SDPBackend, sdpa_kernel
    from torch.utils.flop_counter import FlopCounterMode

    params = sum(p.numel() for p in model.parameters())
    buffers = sum(b.numel() for name, b in model.named_buffers() if not name.endswith("num_batches_tracked"))
    with warnings.catch_warnings():  # setting the flags warns that oneDNN has no TF32 without an Intel GPU
        warnings.filterwarnings("ignore", "TF32 acceleration", UserWarning)
        with (
            sdpa_kernel(SDPBackend.MATH),
            torch.enable_grad(),
            torch.backends.mkldnn.flags(enabled=False),
            FlopCounterMode(display=False) as counter,
        ):
            model(*inputs)
    return params, buffers, counter.get_total_flops() // 2


def analysed(text: str, file: str = "t.arch", **kwargs):
    return archc.loads(text, file, **kwargs)


def randomise_batch_norm(model, seed: int = 0) -> None:
    """Give every BN layer non-trivial statistics, so eval mode tests more than the identity."""
    import torch

    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, torch.nn.modules.batchnorm._BatchNorm):
                c = m.num_features
                m.running_mean.copy_(0.1 * torch.randn(c, generator=gen))
                m.running_var.copy_(0.5 + torch.rand(c, generator=gen))
                m.weight.copy_(0.5 + torch.rand(c, generator=gen))
                m.bias.copy_(0.1 * torch.randn(c, generator=gen))
