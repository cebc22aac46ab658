"""The PyTorch target: an `nn.Module` with one submodule per layer and one line per layer in forward.

Submodules are created in the order the spec defines the layers, so the
parameters come in the order the network uses them: a spec written after a
torchvision model takes that model's weights by position.

Like torchvision's models, forward computes in place where that is safe in
training too: an activation overwrites a new tensor nothing else reads
(`F.relu(self.bn1(x), inplace=True)`), and a residual add adds into the tensor
of a layer whose backward does not read its own output, when nothing reads
that tensor afterwards (`x += skip`).
"""

from __future__ import annotations

import re
from dataclasses import replace

from ..ops import OPS
from .common import Generated, forward_body, header, make_plan, reserved_names, shapes_text, signature, sole_reader
from .init import describe, torch_lines
from .pyexpr import Call, Sum, Temp, Update, assignment

# Layers whose torch output is a new tensor (never a view of an input or the input itself)
# that their backward does not read: once their readers are done with it, overwriting it
# changes no value of another layer and nothing autograd saved. Not activations (relu,
# sigmoid, tanh and softmax save their output; others their input), views (flatten,
# reshape, crop, chunk), dropout and identity (the input itself in eval mode), nor layers
# that this file has not checked.
NEW_TENSOR = frozenset({"conv", "dwconv", "deconv", "dense", "bn", "maxpool", "add", "shortcut", "concat"})


def _inplace_activation(op, attrs) -> bool:
    """Whether torch's in-place form of the activation computes its gradient from its output alone.

    relu and relu6 (hardtanh) do; leaky_relu and elu only with a non-negative slope (torch
    refuses their in-place backward otherwise). silu, gelu, hardswish and mish need their
    input, sigmoid, tanh and softmax have no `inplace=` (or, as modules, no in-place form).
    """
    if op.name in ("relu", "relu6"):
        return True
    return op.name in ("leaky_relu", "elu") and float(attrs["alpha"]) >= 0


def _inplace(code: Call) -> Call:
    """The activation's call or module with `inplace=True`."""
    return replace(code, kwargs=(*code.kwargs, ("inplace", "True")))


def _fresh(plan, node, args):
    """The layer's expression, or None unless it makes a new tensor that an in-place operation may overwrite."""
    if node.op not in NEW_TENSOR:
        return None
    expr = OPS[node.op].torch_call(node, f"self.{plan.attrs[node.name]}", args)
    return expr if isinstance(expr, Call | Sum) else None


def _overwritable(plan, name, reader) -> bool:
    """Whether `reader` may overwrite the value of layer `name`: read by nothing else, autograd keeps none of it."""
    node = plan.network.graph.nodes[name]
    if sole_reader(plan, name) != reader:
        return False
    if node.activation is not None and node.activation[0] != "identity":
        return False  # the activation made the value, and may have saved it
    return _fresh(plan, node, [plan.vars[i] for i in node.inputs]) is not None


def _standalone_in_place(plan, node) -> bool:
    """Whether an activation written as its own layer overwrites its input (`nn.ReLU(inplace=True)`)."""
    op = OPS[node.op]
    return op.is_activation and _inplace_activation(op, node.attrs) and _overwritable(plan, node.inputs[0], node.name)


def in_place(network) -> frozenset[str]:
    """The layers whose activation (their own, or a `-> act`) overwrites its input in the generated forward:
    the decisions `generate` makes, for what autograd then keeps (archc/passes/training.py)."""
    plan = make_plan(network, reserved_names())
    found = set()
    for node in plan.computed:
        # a `-> act` is in place on a layer whose expression is a Temp (or an Update, which makes one)
        fused = (
            node.activation is not None
            and _inplace_activation(OPS[node.activation[0]], node.activation[1])
            and _fresh(plan, node, [plan.vars[i] for i in node.inputs]) is not None
        )
        if fused or _standalone_in_place(plan, node):
            found.add(node.name)
    return frozenset(found)


def generate(network) -> Generated:
    plan = make_plan(network, reserved_names())
    init: list[str] = []
    graph = network.graph

    def fresh(node, args):
        return _fresh(plan, node, args)

    def overwritable(name, reader) -> bool:
        return _overwritable(plan, name, reader)

    for node in graph:
        if node.op == "input":
            continue
        ins = [graph.nodes[i].shape for i in node.inputs]
        op = OPS[node.op]
        module = op.torch_layer(node, ins)
        if _standalone_in_place(plan, node):
            module = _inplace(module)  # nn.ReLU(inplace=True): its input is read by nothing else
        if module is not None:
            init += assignment(f"self.{plan.attrs[node.name]} = ", module, 2)

    def layer(node, args):
        expr = fresh(node, args)
        if expr is None:
            return OPS[node.op].torch_call(node, f"self.{plan.attrs[node.name]}", args)
        residual = node.op in ("add", "shortcut") and isinstance(expr, Sum) and expr.op == "+"
        # (an add nothing reads is a bare `a + b`: it has no variable for `a += b` to stand for)
        if residual and len(expr.terms) == 2 and node.name not in plan.unused:
            # A residual add, into a term nothing else reads: the shortcut's first (whose shape
            # it keeps); either of an add's, a + b being b + a to the last bit: the one in the
            # add's own variable first (`x += y` and no `z = x` after it), then `x` (which the
            # next statement rebinds, where a named term would need a `del` as well).
            first, second = expr.terms
            candidates = [(first, second, node.inputs[0])]
            if node.op == "add":
                candidates.append((second, first, node.inputs[1]))
                candidates.sort(key=lambda c: (c[0] != plan.vars[node.name], c[0] != "x"))
            for target, other, name in candidates:
                if target == plan.vars[name] and overwritable(name, node.name):
                    return Update(target, other)
        return Temp(expr)

    def activation(op, attrs, expr):
        if isinstance(expr, Temp):
            code = op.apply_torch(attrs, expr.value)
            return _inplace(code) if _inplace_activation(op, attrs) else code
        return op.apply_torch(attrs, expr)

    doc = [
        f'    """{network.name}, generated by archc.',
        "",
        *(f"    {line}" for line in shapes_text(plan)),
        "",
        *(f"    {line}" for line in describe(network, 84)),
        '    """',
    ]
    top = [
        *header(network, "PyTorch"),
        f'"""{network.name} as a PyTorch module: `build_model()` returns one, ready to train or to load weights."""',
        "",
    ]
    before_body = [
        "",
        "",
        f"class {plan.cls}(nn.Module):",
        *doc,
        "",
        "    def __init__(self):",
        "        super().__init__()",
        *init,
        *torch_lines(network, 2),
        "",
        *signature(plan),
    ]
    # imports depend on what the body uses; they take a fixed number of lines only once known
    body, where = forward_body(plan, layer, activation, 2, 0)
    used = _used(init + body)
    imports = ["import torch"] * ("torch" in used) + ["import torch.nn.functional as F"] * ("F" in used)
    imports.append("from torch import nn")
    head = top + imports + before_body
    first = len(head) + 1
    tail = ["", "", "def build_model():", f'    """A new {plan.cls} with freshly initialised weights."""']
    tail.append(f"    return {plan.cls}()")
    code = "\n".join(head + body + tail) + "\n"
    return Generated(code, [(name, var, first + offset) for name, var, offset in where], plan.attrs)


def _used(code_lines: list[str]) -> set[str]:
    """Which of the modules `torch` and `F` the code refers to (names, not parts of other names)."""
    text = "\n".join(code_lines)
    return {name for name in ("torch", "F") if re.search(rf"(?<![\w.]){name}\.", text)}
