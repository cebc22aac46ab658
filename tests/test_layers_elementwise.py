"""Element-wise arithmetic, channel shuffle, layer scale, drop path and the new activations against torch.

As in test_layers_torch.py, each case writes a layer once as an `.arch` statement and once
as torch code written here from torch's and torchvision's definitions (not from archc):
the analysed shape, parameters, buffers and MACs must equal torch's, and both generated
models must compute what the torch twin computes (test_codegen_layers.py's check). The
configurations are drawn at random from a fixed seed.
"""

from __future__ import annotations

import random

import numpy as np
import pytest
import torch
import torch.nn.functional as F  # noqa: N812 (the usual torch spelling)
from codegen_util import build
from test_codegen_layers import test_generated_layer_computes_what_its_torch_twin_computes as matches_twin
from test_layers_torch import Case, Lambda, arch_error, archc_figures, one, spec, torch_figures
from test_numpy_kernels import close
from torch import nn

import archc
from archc.codegen.runtime import numpy_kernels as K  # noqa: N812 (as test_numpy_kernels.py)

RNG = random.Random(15)


def random_shape(rank: int) -> tuple[int, ...]:
    """A per-sample shape: channels, then rank - 1 spatial sizes (kept small: the twins run on them)."""
    return tuple(RNG.randint(1, 6) for _ in range(rank))


def broadcast_pair(rank: int) -> tuple[tuple[int, ...], tuple[int, ...]]:
    """Two shapes that broadcast: each axis of one input, picked at random, is 1."""
    big = random_shape(rank)
    small = tuple(1 if RNG.random() < 0.5 else n for n in big)
    return (big, small) if RNG.random() < 0.5 else (small, big)


OPERATORS = {"mul": torch.mul, "sub": torch.sub, "div": torch.div}


def arithmetic_cases() -> list[Case]:
    cases = []
    for name, fn in OPERATORS.items():
        # squeeze-excitation: a C x H x W map times a C x 1 x 1 gate, in both orders
        cases.append(Case({"a": (8, 5, 6), "b": (8, 1, 1)}, f"{name} y (a, b)", lambda fn=fn: Lambda(fn)))
        cases.append(Case({"a": (8, 1, 1), "b": (8, 5, 6)}, f"{name} y (a, b)", lambda fn=fn: Lambda(fn)))
        cases.append(Case({"a": (3, 4, 4)}, f"{name} y (a, a)", lambda fn=fn: Lambda(lambda t: fn(t, t))))
        for rank in (1, 2, 3, 4, 4):
            a, b = broadcast_pair(rank)
            cases.append(Case({"a": a, "b": b}, f"{name} y (a, b)", lambda fn=fn: Lambda(fn)))
    return cases


def shufflenet_channel_shuffle(x: torch.Tensor, groups: int) -> torch.Tensor:
    """torchvision's shufflenetv2.channel_shuffle, for any number of spatial dimensions."""
    n, c, *spatial = x.shape
    x = x.view(n, groups, c // groups, *spatial)
    x = torch.transpose(x, 1, 2).contiguous()
    return x.view(n, c, *spatial)


def shuffle_cases() -> list[Case]:
    cases = []
    for rank in (2, 3, 3, 3, 4):
        groups = RNG.randint(1, 4)
        shape = (groups * RNG.randint(1, 5), *random_shape(rank - 1))
        cases.append(
            one(shape, f"shuffle y: {groups}", lambda g=groups: Lambda(lambda x: shufflenet_channel_shuffle(x, g)))
        )
    return cases


class TorchvisionLayerScale(nn.Module):
    """torchvision's CNBlock: `nn.Parameter(torch.ones(dim, 1, 1) * layer_scale)`, times the branch."""

    def __init__(self, shape, value):
        super().__init__()
        self.layer_scale = nn.Parameter(torch.ones(shape[0], *(1,) * (len(shape) - 1)) * value)

    def forward(self, x):
        return self.layer_scale * x


def layer_scale_cases() -> list[Case]:
    cases = []
    for rank, text, value in [(3, "", 1e-6), (3, ": 0.5", 0.5), (1, "", 1e-6), (2, ": 2", 2.0), (4, ": 1e-3", 1e-3)]:
        shape = random_shape(rank)
        cases.append(one(shape, f"layer_scale y{text}", lambda s=shape, v=value: TorchvisionLayerScale(s, v)))
    return cases


@pytest.mark.parametrize("text, value", [("", 1e-6), (": 0.25", 0.25), (": init=3", 3.0)])
def test_layer_scale_starts_where_torchvision_starts(text, value):
    net = archc.loads(spec({"x": (6, 3, 3)}, f"layer_scale y{text}"), "t.arch")
    want = TorchvisionLayerScale((6, 3, 3), value).state_dict()["layer_scale"]
    torch_state = build(net, "torch")[0].state_dict()
    numpy_state = build(net, "numpy")[0].state_dict()
    assert list(torch_state) == list(numpy_state) == ["y"]  # the layer's own name, as torchvision's `layer_scale`
    torch.testing.assert_close(torch_state["y"], want, rtol=0, atol=0)
    np.testing.assert_array_equal(numpy_state["y"], want.numpy(), strict=True)


def drop_path_cases() -> list[Case]:
    """At inference drop path is the identity (torchvision's stochastic_depth with training=False)."""
    statements = ["drop_path y: 0.2", "drop_path y: 0.5 batch", "drop_path y: 0 mode=row", "drop_path y: 0.1"]
    return [one(random_shape(rank), stmt, nn.Identity) for rank, stmt in zip((3, 4, 1, 2), statements)]


def permute_cases() -> list[Case]:
    cases = []
    for rank in (1, 2, 3, 3, 3, 4, 4):
        order = RNG.sample(range(rank), rank)
        axes = [0, *(i + 1 for i in order)]
        text = "x".join(map(str, order))
        cases.append(one(random_shape(rank), f"permute y: {text}", lambda a=axes: Lambda(lambda x: x.permute(*a))))
    return cases


NEW_ACTIVATIONS = {
    "hardsigmoid": nn.Hardsigmoid,
    "gelu: tanh": lambda: nn.GELU(approximate="tanh"),
    "gelu: approximate=tanh": lambda: nn.GELU(approximate="tanh"),
    "gelu: none": nn.GELU,
}


def activation_cases() -> list[Case]:
    cases = []
    for text, build_twin in NEW_ACTIVATIONS.items():
        name, _, args = text.partition(":")
        cases.append(one(random_shape(RNG.randint(1, 4)), f"{name} y{':' + args if args else ''}", build_twin))
        if "=" in args:
            continue  # the `->` shorthand takes positional arguments only
        arrow = f"{name}({args.strip()})" if args else name
        cases.append(
            one(
                (3, 5, 5),
                f"conv y: 4 @ 3x3 pad=1 -> {arrow}",
                lambda b=build_twin: nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), b()),
            )
        )
    return cases


ELEMENTWISE_CASES = [
    c.param()
    for c in (
        arithmetic_cases()
        + shuffle_cases()
        + layer_scale_cases()
        + drop_path_cases()
        + permute_cases()
        + activation_cases()
    )
]


@pytest.mark.parametrize("case", ELEMENTWISE_CASES)
def test_layer_matches_torch(case: Case):
    expected = torch_figures(case.build(), *case.inputs.values())
    assert archc_figures(case.inputs, case.stmt) == expected


@pytest.mark.parametrize("case", ELEMENTWISE_CASES)
def test_generated_layer_matches_torch(case: Case):
    matches_twin(case)


# -- squeeze-excitation, as MobileNetV3 writes it ------------------------------------------


SE_BLOCK = """
network SE {
  input x: 16x8x8
  globalavgpool squeeze
  conv reduce: 4 @ 1x1 -> relu
  conv expand: 16 @ 1x1 -> hardsigmoid
  mul gated (x, expand)
}
"""


class TorchvisionSqueezeExcitation(nn.Module):
    """torchvision.ops.SqueezeExcitation with MobileNetV3's hardsigmoid gate."""

    def __init__(self):
        super().__init__()
        self.fc1 = nn.Conv2d(16, 4, 1)
        self.fc2 = nn.Conv2d(4, 16, 1)

    def forward(self, x):
        scale = F.adaptive_avg_pool2d(x, 1)
        scale = F.hardsigmoid(self.fc2(F.relu(self.fc1(scale))))
        return scale * x


def test_squeeze_excitation_matches_torchvision():
    net = archc.loads(SE_BLOCK, "se.arch")
    twin = TorchvisionSqueezeExcitation().eval()
    expected = torch_figures(twin, (16, 8, 8))
    assert (net.totals.params, net.totals.macs) == (expected.params, expected.macs)
    model, _, _ = build(net, "torch")
    model.load_state_dict(dict(zip(model.state_dict(), twin.state_dict().values())))
    x = torch.randn(2, 16, 8, 8, generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        want = twin(x)
        torch.testing.assert_close(model.eval()(x), want)
    numpy_model, _, _ = build(net, "numpy")
    numpy_model.load_state_dict(model.state_dict())
    np.testing.assert_allclose(numpy_model.eval()(x.numpy()), want.numpy(), rtol=1e-5, atol=1e-6)


def test_the_diagram_draws_the_gate_as_a_side_branch_into_the_multiply():
    """The map into the multiply is the main path (weight 3), the gate the side branch (weight 1),
    from where it leaves the map (tests/test_diagram_gates.py) to where it comes back."""
    from archc.diagram import to_dot

    dot = to_dot(archc.loads(SE_BLOCK, "se.arch"))
    assert '"x" -> "gated" [label=" 16x8x8", weight=3]' in dot
    assert '"expand" -> "gated" [label=" 16x1x1", weight=1]' in dot
    assert '"x" -> "squeeze" [label=" 16x8x8", weight=1]' in dot  # the branch leaves the main path
    assert 'label=<<b>gated</b><br/><font point-size="10">mul</font>' in dot and '"legend_merge"' in dot


# -- drop path while training: torchvision's stochastic_depth -------------------------------


def torchvision_stochastic_depth(x: torch.Tensor, p: float, mode: str) -> torch.Tensor:
    """torchvision.ops.stochastic_depth with training=True (torchvision/ops/stochastic_depth.py)."""
    survival_rate = 1.0 - p
    size = [x.shape[0]] + [1] * (x.ndim - 1) if mode == "row" else [1] * x.ndim
    noise = torch.empty(size, dtype=x.dtype).bernoulli_(survival_rate)
    if survival_rate > 0.0:
        noise.div_(survival_rate)
    return x * noise


def kept_fraction(x: np.ndarray, out: np.ndarray, p: float) -> float:
    """Checks that every sample is dropped or kept whole, as torchvision does, and returns the kept fraction."""
    flat_x, flat_out = x.reshape(len(x), -1), out.reshape(len(out), -1)
    dropped = np.all(flat_out == 0, axis=1)
    np.testing.assert_allclose(flat_out[~dropped], flat_x[~dropped] / (1 - p), rtol=1e-6)
    return float(np.mean(~dropped))


@pytest.mark.parametrize("target", ["torch", "numpy", "torchvision"])
@pytest.mark.parametrize("p", [0.2, 0.5])
def test_drop_path_in_training_drops_whole_samples(target, p):
    samples = 4000
    x = np.random.default_rng(7).standard_normal((samples, 3, 2, 2)).astype(np.float32) + 10  # never 0
    torch.manual_seed(8)
    if target == "torchvision":
        out = torchvision_stochastic_depth(torch.from_numpy(x), p, "row").numpy()
    else:
        net = archc.loads(spec({"x": (3, 2, 2)}, f"drop_path y: {p}"), "t.arch")
        model, _, _ = build(net, target)
        model.train()
        out = model(torch.from_numpy(x)).detach().numpy() if target == "torch" else model(x)
    assert out.dtype == np.float32
    kept = kept_fraction(x, out, p)
    # 4000 draws: the fraction kept is within 5 standard deviations (<= 0.04) of 1 - p
    assert abs(kept - (1 - p)) < 0.04


@pytest.mark.parametrize("target", ["torch", "numpy"])
def test_drop_path_batch_mode_drops_the_whole_batch_or_nothing(target):
    net = archc.loads(spec({"x": (3, 2, 2)}, "drop_path y: 0.5 batch"), "t.arch")
    model, _, _ = build(net, target)
    model.train()
    torch.manual_seed(9)
    x = np.random.default_rng(9).standard_normal((6, 3, 2, 2)).astype(np.float32) + 10
    outcomes = set()
    for _ in range(40):
        out = model(torch.from_numpy(x)).detach().numpy() if target == "torch" else model(x)
        kept = kept_fraction(x, out, 0.5)
        assert kept in (0.0, 1.0)
        outcomes.add(kept)
    assert outcomes == {0.0, 1.0}  # 40 draws at 1/2: both happen (all alike has probability 2^-39)


# -- NumPy kernels against torch ------------------------------------------------------------

EXTREMES = np.array([-100.0, -50.0, -6.0, -3.0, -1e-3, 0.0, 1e-3, 3.0, 6.0, 50.0, 100.0], dtype=np.float32)


@pytest.mark.parametrize(
    "ours, theirs",
    [
        (K.hardsigmoid, F.hardsigmoid),
        (lambda x: K.gelu(x, approximate="tanh"), lambda t: F.gelu(t, approximate="tanh")),
    ],
    ids=["hardsigmoid", "gelu-tanh"],
)
def test_activation_kernels_follow_torch(ours, theirs):
    x = np.concatenate([EXTREMES, np.random.default_rng(1).standard_normal(200).astype(np.float32) * 4])
    x = x.reshape(1, -1, 1)
    with np.errstate(over="raise", invalid="raise", divide="raise"):
        result = ours(x)
    assert result.dtype == np.float32
    close(result, theirs(torch.from_numpy(x)))


@pytest.mark.parametrize("shape, groups", [((2, 12, 5), 3), ((1, 8, 3, 4), 4), ((2, 6, 2, 3, 2), 2), ((1, 5, 2, 2), 5)])
def test_channel_shuffle_kernel_is_torchs(shape, groups):
    x = np.random.default_rng(2).standard_normal(shape).astype(np.float32)
    want = F.channel_shuffle(torch.from_numpy(x), groups).numpy()
    np.testing.assert_array_equal(K.channel_shuffle(x, groups), want)


def test_drop_path_kernel_is_the_identity_at_inference_or_p_zero():
    x = np.random.default_rng(3).standard_normal((4, 3, 2)).astype(np.float32)
    assert K.drop_path(x, 0.5, False, np.random.default_rng(0)) is x
    assert K.drop_path(x, 0.0, True, np.random.default_rng(0)) is x


# -- errors ---------------------------------------------------------------------------------


@pytest.mark.parametrize("name", sorted(OPERATORS))
def test_shapes_that_do_not_broadcast_are_located_and_shown(name):
    text = spec({"x": (16, 8, 8)}, "globalavgpool g", "conv gate: 8 @ 1x1", f"{name} y (x, gate)")
    d = arch_error(text)
    assert d.code == "E0305" and d.span.line == 5
    assert "x 16x8x8" in d.message and "gate 8x1x1" in d.message and "channels (16, 8)" in d.message
    with pytest.raises(RuntimeError):  # torch refuses them too
        getattr(torch, name)(torch.ones(1, 16, 8, 8), torch.ones(1, 8, 1, 1))


def apply_fixes(text: str, diag) -> str:
    for fix in sorted(diag.fixes, key=lambda f: (f.span.line, f.span.col), reverse=True):
        text = fix.apply(text)
    return text


@pytest.mark.parametrize("name", sorted(OPERATORS))
@pytest.mark.parametrize("order", ["x, g", "g,x", "g , x"])
def test_inputs_of_different_ranks_get_the_reshape_that_fixes_them(name, order):
    text = spec({"x": (16, 8, 8), "g": (16,)}, f"{name} y ({order})")
    d = arch_error(text)
    assert d.code == "E0305" and "x 16x8x8" in d.message and "g 16" in d.message
    assert d.help == [
        "`reshape g_y (g): 16x1x1` before it, read in place of `g`, gives it the other input's rank, output 16x8x8"
    ]
    fixed = apply_fixes(text, d)
    assert f"  reshape g_y (g): 16x1x1\n  {name} y ({order.replace('g', 'g_y')})\n" in fixed
    net = archc.loads(fixed, "t.arch")  # no error, and no warning either
    assert not net.warnings
    want = getattr(torch, name)(torch.ones(1, 16, 8, 8), torch.ones(1, 16, 1, 1)).shape[1:]
    assert net.layer("y").shape == tuple(want) == (16, 8, 8)


def test_a_reshape_that_would_not_broadcast_is_not_offered():
    d = arch_error(spec({"x": (16, 8, 8), "g": (8,)}, "mul y (x, g)"))
    assert d.code == "E0305" and not d.fixes
    assert d.help == [
        "give every input the same number of dimensions: a per-channel gate of C values is `reshape: Cx1x1`"
    ]


def test_sub_and_div_take_exactly_two_inputs():
    assert arch_error(spec({"x": (4, 2, 2)}, "sub y (x, x, x)")).code == "E0209"


def test_shuffle_groups_must_divide_the_channels():
    d = arch_error(spec({"x": (12, 4, 4)}, "shuffle y: 5"))
    assert d.code == "E0303" and "5 groups do not divide the 12 channels" in d.message
    assert d.help == ["the divisors of 12 are 1, 2, 3, 4, 6, 12"]
    with pytest.raises(RuntimeError):  # torch refuses it too
        F.channel_shuffle(torch.ones(1, 12, 4, 4), 5)
    assert arch_error(spec({"x": (12, 4, 4)}, "shuffle y: 0")).code == "E0205"
    assert arch_error(spec({"x": (12,)}, "shuffle y: 2")).code == "E0301"  # a vector has no channel axis to view


@pytest.mark.parametrize("order", ["0x1", "0x1x1", "1x2x3", "0x1x2x3", "3"])
def test_permute_must_list_every_axis_once(order):
    d = arch_error(spec({"x": (4, 5, 6)}, f"permute y: {order}"))
    assert d.code == "E0205" and "must list each of 0 to 2 once" in d.message and d.span.col == 14
    with pytest.raises((RuntimeError, IndexError)):  # torch refuses it too
        torch.ones(1, 4, 5, 6).permute(0, *(int(i) + 1 for i in order.split("x")))


def test_permute_carries_the_receptive_field_while_the_channels_stay_first():
    # a 3x1 kernel sees 3 rows and 1 column (figures.md: r' = r + (k-1)j); swapping H and W swaps them
    text = spec(
        {"x": (8, 5, 6)},
        "conv c: 8 @ 3x1 pad=(1,1)x(0,0)",
        "permute hw: 0x2x1",
        "permute last (c): 1x2x0",
        "permute back: 2x0x1",
    )
    net = archc.loads(text, "t.arch")
    assert [size for size, _, _ in net.layer("hw").rf] == [1, 3]
    assert net.layer("hw").shape == (8, 6, 5)
    assert net.layer("last").rf is None and net.layer("back").rf is None  # the channels moved among the positions


@pytest.mark.parametrize("p", ["1", "1.0", "1.5"])
def test_drop_path_probability_is_checked(p):
    d = arch_error(spec({"x": (4, 2, 2)}, f"drop_path y: p={p}"))
    assert d.code == "E0205" and "p must be in [0, 1)" in d.message


def test_layer_scale_init_must_be_finite():
    d = arch_error(spec({"x": (4, 2, 2)}, "layer_scale y: 1e400"))
    assert d.code == "E0205" and "init must be a finite number, not inf" in d.message and d.span.col == 18


@pytest.mark.parametrize(
    "word, meant, args",
    [("multiply", "mul", " (x, x)"), ("Subtract", "sub", " (x, x)"), ("ChannelShuffle", "shuffle", ": 2")]
    + [("transpose", "permute", ": 0x1x2"), ("StochasticDepth", "drop_path", ": 0.1")],
)
def test_other_tools_names_lead_to_the_new_layers(word, meant, args):
    text = spec({"x": (4, 2, 2)}, f"{word} y{args}")
    d = arch_error(text)
    assert d.code == "E0201" and d.help[0].startswith(f"did you mean `{meant}`?")
    fixed = text
    for fix in d.fixes:
        fixed = fix.apply(fixed)
    assert archc.loads(fixed, "t.arch").layer("y").shape == (4, 2, 2)


def test_hardsigmoid_is_no_longer_taken_for_sigmoid():
    net = archc.loads(spec({"x": (4, 2, 2)}, "hardsigmoid y"), "t.arch")
    assert net.layer("y").op == "hardsigmoid"


def test_every_new_layer_type_has_cases():
    covered = {p.values[0].stmt.split()[0] for p in ELEMENTWISE_CASES}
    assert {"mul", "sub", "div", "shuffle", "layer_scale", "drop_path", "permute", "hardsigmoid", "gelu"} <= covered
