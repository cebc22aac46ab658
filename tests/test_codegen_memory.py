"""The generated forward lets a value go as soon as nothing reads it again.

A person writing forward by hand frees what is no longer needed without
thinking about it: torchvision rebinds `x` block after block, so a block's
output lives only while the next block reads it. Generated code that kept every
named value until `return` would hold every skip connection's input at once
(one ResNet-50 forward at batch 8 grew by 230 MiB, torchvision's by 139 MiB).

The oracle reads the generated code's syntax tree, not the generator: before
each statement of forward runs, every local holding a tensor (or array) that no
statement reads before the name is bound again must be gone, or be the same
object as a local still to be read (an in-place `x += skip` leaves the old name
on the updated tensor). So `x = self.conv(y)` must not find a dead value in x:
it would stay alive until the conv has run.
"""

from __future__ import annotations

import ast

import numpy as np
import pytest
import torch
from codegen_util import build, load_module, run_watched
from conftest import SPECS
from test_codegen_random import SEEDS, inputs, random_spec

import archc
from archc.codegen import generate

pytestmark = pytest.mark.usefixtures("one_thread")

BUNDLED = {  # spec: per-sample input shape to run it at (None: the spec's own)
    "resnet18": (3, 32, 32),
    "resnet50": (3, 32, 32),
    "googlenet": (3, 64, 64),
    "mobilenet_v2": (3, 32, 32),
    "mobilenet_v3_small": (3, 32, 32),
    "efficientnet_b0": (3, 32, 32),
    "regnet_y_400mf": (3, 32, 32),
    "shufflenet_v2_x1_0": (3, 32, 32),
    "convnext_tiny": (3, 32, 32),
    "inception_module": None,
    "lenet5": None,
    "deconv_example": None,
}


def forward_reads(code: str) -> dict[int, tuple[frozenset, frozenset]]:
    """{first line of each statement of forward but return: (names whose value is read
    from there on, names it deletes)}.

    A name is live when a statement reads it before any statement rebinds it: the x of
    `x = self.conv(y)` is not, so x's old value must be gone before the conv runs."""
    tree = ast.parse(code)
    forward = next(n for n in ast.walk(tree) if isinstance(n, ast.FunctionDef) and n.name == "forward")
    live: set[str] = set()
    table = {}
    for stmt in reversed(forward.body):
        names = [n for n in ast.walk(stmt) if isinstance(n, ast.Name)]
        deleted = {n.id for n in names if isinstance(n.ctx, ast.Del)}
        live -= deleted | {n.id for n in names if isinstance(n.ctx, ast.Store)}
        live |= {n.id for n in names if isinstance(n.ctx, ast.Load)}
        if isinstance(stmt, ast.AugAssign):  # `x += skip` reads x
            live.add(stmt.target.id)
        # returning lets every local go; `x = name` computes nothing while it holds x
        renames = isinstance(stmt, ast.Assign) and isinstance(stmt.value, ast.Name)
        if not isinstance(stmt, ast.Return) and not renames:
            table[stmt.lineno] = (frozenset(live), frozenset(deleted))
    return table


def held_after_last_read(model, code: str, filename: str, *inputs) -> list[str]:
    """Run model(*inputs); every `line: name` where forward still held a value nothing reads again."""
    table = forward_reads(code)
    given = {id(x) for x in inputs}  # the caller holds these anyway
    found = []

    def watch(frame, event, arg):
        if event == "line" and frame.f_lineno in table:
            live_names, deleted = table[frame.f_lineno]
            values = frame.f_locals
            live = {id(values[n]) for n in live_names if n in values}
            for name, value in values.items():
                if not isinstance(value, torch.Tensor | np.ndarray) or name in live_names or name in deleted:
                    continue
                if id(value) not in live and id(value) not in given:
                    found.append(f"{frame.f_lineno}: {name}")

    run_watched(model, filename, inputs, watch)
    return found


def assert_frees(net, target: str, shapes=None):
    model, gen, filename = build(net, target, flat=True)
    model.eval()
    xs = [torch.randn(2, *shape) for shape in shapes] if shapes else inputs(net, 2, torch.Generator())
    if target == "numpy":
        xs = [x.numpy() for x in xs]
        held = held_after_last_read(model, gen.code, filename, *xs)
    else:
        with torch.no_grad():
            held = held_after_last_read(model, gen.code, filename, *xs)
    assert not held, f"forward holds values nothing reads again at {held}\n{gen.code}"


@pytest.mark.parametrize("target", ["torch", "numpy"])
@pytest.mark.parametrize("spec", BUNDLED)
def test_bundled_networks_free_each_value_after_its_last_reader(spec, target):
    shape = BUNDLED[spec]
    assert_frees(archc.load(SPECS / f"{spec}.arch"), target, [shape] if shape else None)


@pytest.mark.parametrize("target", ["torch", "numpy"])
@pytest.mark.parametrize("seed", SEEDS)
def test_random_networks_free_each_value_after_its_last_reader(seed, target):
    assert_frees(archc.loads(random_spec(seed), f"random{seed}.arch"), target)


def held_by_resnet18_without(line: str, after: str = "") -> list[str]:
    """What the oracle finds in the generated ResNet-18 without `line` (the first one after `after`)."""
    code = generate(archc.load(SPECS / "resnet18.arch"), "torch", flat=True).code
    assert after + line in code
    code = code.replace(after + line, after, 1)
    module = load_module(code, "without_a_line")
    with torch.no_grad():
        return held_after_last_read(module.build_model().eval(), code, module.__file__, torch.randn(1, 3, 32, 32))


def test_the_oracle_sees_a_value_kept_too_long():
    """Without its `del`, the ResNet's first skip input stays alive through the whole next block."""
    held = held_by_resnet18_without("        del maxpool\n")
    assert held and all(h.endswith(": maxpool") for h in held)


def test_the_oracle_sees_x_kept_through_a_shortcut():
    """Without `del x`, the last conv output of a projection block stays in x while
    the shortcut's conv runs, because `x = self.downsample(...)` rebinds x only after."""
    bn2 = "        layer2_0_bn2 = self.layer2_0_bn2(x)\n"
    held = held_by_resnet18_without("        del x\n", after=bn2)
    assert held and all(h.endswith(": x") for h in held)
