"""`add` broadcasts sizes of 1 as `mul`, `sub` and `div` do (issue 20: a Caffe Scale's per-channel bias).

The truths are torch's: `torch.add` of the same shapes (the output's shape, 0 flops in torch's flop
counter, the parameters of a torch twin holding the bias), the generated PyTorch and NumPy models
against that twin, the NumPy training backward against torch autograd on the generated module
(the gradient summed over the broadcast axes), and onnxruntime running the ONNX target.
"""

from __future__ import annotations

import random

import pytest
import torch
import torch.nn.functional as F  # noqa: N812 (the usual torch spelling)
from codegen_util import build
from test_codegen_layers import test_generated_layer_computes_what_its_torch_twin_computes as matches_twin
from test_diagram_gates import group, parse
from test_layers_elementwise import apply_fixes, random_shape
from test_layers_torch import Case, Figures, Lambda, arch_error, spec, torch_figures
from test_numpy_train_sequences import check as trains_as_torch
from test_onnx_out import checked, compare
from torch import nn

import archc
from archc.codegen.onnx_target import to_onnx
from archc.diagram import to_dot

RNG = random.Random(20)


def broadcast_shapes(rank: int, count: int) -> list[tuple[int, ...]]:
    """`count` shapes of one rank that broadcast: each input, on each axis picked at random, has 1."""
    big = random_shape(rank)
    return [tuple(1 if RNG.random() < 0.4 else n for n in big) for _ in range(count)]


def added(*xs):
    out = xs[0]
    for x in xs[1:]:
        out = torch.add(out, x)
    return out


class ChannelBias(nn.Module):
    """A Caffe Scale's bias: one learned value per channel, added to a channels-first map."""

    def __init__(self, shape):
        super().__init__()
        self.bias = nn.Parameter(torch.zeros(1, shape[0], *(1,) * (len(shape) - 1)))

    def forward(self, x):
        return x + self.bias


def add_cases() -> list[Case]:
    cases = [
        Case({"a": (8, 5, 6), "b": (8, 1, 1)}, "add y (a, b)", lambda: Lambda(added)),
        Case({"a": (8, 1, 1), "b": (8, 5, 6)}, "add y (a, b)", lambda: Lambda(added)),
        Case({"a": (8, 5, 1), "b": (1, 1, 6), "c": (8, 1, 6)}, "add y (a, b, c)", lambda: Lambda(added)),
    ]
    for rank in (1, 2, 3, 3, 4):
        for count in (2, 3):
            shapes = broadcast_shapes(rank, count)
            names = "abc"[:count]
            stmt = f"add y ({', '.join(names)})"
            cases.append(Case(dict(zip(names, shapes)), stmt, lambda: Lambda(added)))
    for rank in (2, 3, 4):
        shape = random_shape(rank)
        bias = "x".join(map(str, (shape[0], *(1,) * (rank - 1))))
        for stmt in (f"param b: {bias}\n  add y (x, b)", f"param b: {bias}\n  add y (b, x)"):
            cases.append(Case({"x": shape}, stmt, lambda s=shape: ChannelBias(s)))
    return [c.param() for c in cases]


ADD_CASES = add_cases()


@pytest.mark.parametrize("case", ADD_CASES)
def test_add_matches_torch(case: Case):
    """The output's shape, the bias's parameters, and 0 MACs (torch's flop counter counts none for add):
    the network's totals, which hold the `param`'s."""
    net = archc.loads(spec(case.inputs, case.stmt), "t.arch")
    figures = Figures(tuple(net.layer("y").shape), net.totals.params, net.totals.buffers, net.totals.macs)
    assert figures == torch_figures(case.build(), *case.inputs.values())


@pytest.mark.parametrize("case", ADD_CASES)
def test_generated_add_matches_torch(case: Case):
    matches_twin(case)


@pytest.mark.parametrize("order", ["g, c", "c, g"])
def test_the_generated_torch_adds_in_place_only_into_a_term_of_the_sums_shape(order):
    """`c += g` or `g += c` where both terms are computed and read only by the add: neither has the
    sum's shape (4x1x1 and 1x5x6 make 4x5x6), so the sum is a new tensor (before: torch's `output with
    shape [2, 1, 5, 6] doesn't match the broadcast shape [2, 4, 5, 6]`)."""
    stmt = f"globalavgpool g (x)\n  conv c (x): 1 @ 1x1\n  add y ({order})"
    matches_twin(
        Case(
            {"x": (4, 5, 6)},
            stmt,
            lambda: Lambda(lambda conv, x: F.adaptive_avg_pool2d(x, 1) + conv(x), nn.Conv2d(4, 1, 1)),
        )
    )


def test_a_channel_bias_added_first_keeps_the_map_channels_first():
    """A `param` holds its features last; a sum or product with a map is a map with its channels
    first, which a conv after it reads (before: E0304, `put the channels first with a permute`)."""
    for op in ("add", "mul"):
        text = spec({"x": (4, 5, 6)}, "param b: 4x1x1", f"{op} y (b, x)", "conv c: 3 @ 3x3")
        net = archc.loads(text, "t.arch")
        assert tuple(net.layer("c").shape) == tuple(nn.Conv2d(4, 3, 3)(torch.zeros(1, 4, 5, 6)).shape[1:])


@pytest.mark.parametrize("seed", range(6))
def test_numpy_backward_sums_the_gradient_over_the_broadcast_axes(seed):
    """Training forward and backward of the generated NumPy model against torch autograd on the
    generated PyTorch module: every input's and parameter's gradient, over random broadcast shapes."""
    rng = random.Random(seed)
    rank = rng.randint(1, 3)
    big = tuple(rng.randint(2, 4) for _ in range(rank))
    small = [tuple(1 if rng.random() < 0.5 else n for n in big) for _ in range(2)]
    bias = "x".join(map(str, (big[0], *(1,) * (rank - 1))))
    dims = ["x".join(map(str, s)) for s in (big, *small)]
    text = f"""network B {{
      input x: {dims[0]}
      input a: {dims[1]}
      input b: {dims[2]}
      param p: {bias} std=0.5
      add s (a, b)
      add t (p, x, s)
      add u (s, p)
      mul v (t, u)
    }}"""
    trains_as_torch(text, seed=seed)


def test_a_bias_in_a_block_trains_as_in_torch():
    """The nested NumPy model (a module per block instance) keeps the shapes and sums the gradients too."""
    trains_as_torch(
        """block Biased() {
      conv c: 3 @ 1x1
      param b: 3x1x1 std=0.5
      add y (c, b, in)
    }
    network B {
      input x: 3x4x5
      input g: 1x4x1
      Biased u
      Biased v
      add z (v, g)
    }"""
    )


def test_onnx_out_adds_with_broadcasting():
    """onnx's full check and strict shape inference, and onnxruntime giving the PyTorch model's values."""
    text = spec({"x": (3, 5, 6), "g": (1, 5, 1)}, "param b: 3x1x1 std=1", "add y (x, b, g)", "conv c: 2 @ 1x1")
    net = archc.loads(text, "t.arch")
    torch.manual_seed(0)
    model = to_onnx(net, weights=build(net, "torch", flat=True)[0].state_dict(), flat=True)
    checked(model, net)
    compare(net, model, 0, text)


def test_shapes_that_cannot_broadcast_keep_the_shortcut_help():
    d = arch_error(spec({"x": (3, 8, 8)}, "conv a: 8 @ 3x3", "conv b (x): 8 @ 1x1", "add (a, b)"))
    assert d.code == "E0305" and d.span.line == 5
    assert d.message == "add add1: cannot broadcast a 8x6x6, b 8x8x8: their H (6, 8) differ and are not 1"
    assert d.help == ["project the shortcut with a 1x1 conv (and the same stride) so both shapes agree"]


def test_inputs_of_different_ranks_get_the_reshape_that_gives_the_same_rank():
    text = spec({"x": (3, 8, 8)}, "param b: 3", "add y (x, b)")
    d = arch_error(text)
    assert d.code == "E0305" and "different ranks" in d.message
    fixed = archc.loads(apply_fixes(text, d), "t.arch")
    assert not fixed.warnings
    assert tuple(fixed.layer("y").shape) == tuple((torch.zeros(1, 3, 8, 8) + torch.zeros(1, 3, 1, 1)).shape[1:])


def test_the_diagram_draws_the_map_into_the_add_and_the_bias_as_a_branch():
    """As a squeeze-excitation gate (tests/test_diagram_gates.py): the map, not the `param` defined
    just before the add, is the add's main path (weight 3, one group); the bias comes in as a branch."""
    text = spec({"x": (4, 6, 6)}, "conv c: 4 @ 3x3 pad=1", "param b: 4x1x1", "add y (c, b)")
    edges, nodes = parse(to_dot(archc.loads(text, "t.arch")))
    assert edges["c", "y"] == ("4x6x6", 3) and edges["b", "y"] == ("4x1x1", 1)
    assert group(nodes, "c") == group(nodes, "y") is not None
