"""Issue 15: element operations, the arithmetic MACs leave out (docs/language.md, section 12).

No framework counts these (torch's flop counter counts none of them), so each test checks
the convention against arithmetic on what torch builds, never against archc's figures:
the layer's torch twin runs on a random batch, and the expected count is the number of
values torch outputs times the steps the convention gives per value, with the window,
group and affine sizes read off the torch module. At the end, EfficientNet-B0's total
against torchvision's model, counted module by module with forward hooks.
"""

from __future__ import annotations

import json
import math
import random
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F  # noqa: N812 (the usual torch spelling)
from test_layers_norms import NORM_CASES
from test_layers_torch import ACTIVATIONS, BATCH, Lambda, dims, spec
from torch import nn

import archc
from archc import ArchError
from archc.ops import OPS

RNG = random.Random(1515)
ROOT = Path(__file__).resolve().parent.parent


def elem_ops(inputs: dict, stmt: str, name: str = "y") -> int:
    return archc.loads(spec(inputs, stmt), "t.arch").layer(name).elem_ops


def run(module: nn.Module, *shapes) -> torch.Tensor:
    """The twin's output for a random batch, in eval mode (inference, as the convention counts)."""
    module.eval()
    with torch.no_grad():
        return module(*(torch.randn(BATCH, *shape) for shape in shapes))


def values(out: torch.Tensor) -> int:
    """The values torch outputs for one sample."""
    return out.numel() // BATCH


def random_shape(rank: int) -> tuple[int, ...]:
    return (RNG.randint(1, 9), *(RNG.randint(3, 9) for _ in range(rank)))


# -- activations: one per value; softmax three; identity none --------------------------

PER_VALUE = {"softmax": 3, "identity": 0}


@pytest.mark.parametrize("text", [*ACTIVATIONS, "hardsigmoid"])
def test_an_activation_counts_one_operation_per_value_torch_outputs(text):
    name, _, args = text.partition(":")
    build = ACTIVATIONS.get(text, nn.Hardsigmoid)
    for rank in (0, 1, 2, 3):
        shape = random_shape(rank)
        stmt = f"{name} y" + (f":{args}" if args else "")
        assert elem_ops({"x": shape}, stmt) == PER_VALUE.get(name, 1) * values(run(build(), shape)), shape


@pytest.mark.parametrize("act", ["relu", "sigmoid", "softmax", "identity"])
@pytest.mark.parametrize("bias", [True, False])
def test_an_arrow_activation_adds_its_operations_to_its_layers_bias(act, bias):
    """`conv -> act`: the bias adds one per output value (when there is one), the activation its own."""
    twin = nn.Conv2d(3, 5, 3, bias=bias)
    out = run(twin, (3, 7, 8))
    stmt = f"conv y: 5 @ 3x3 {'' if bias else 'bias=false'} -> {act}"
    bias_adds = values(out) if twin.bias is not None else 0
    assert elem_ops({"x": (3, 7, 8)}, stmt) == bias_adds + PER_VALUE.get(act, 1) * values(out)


# -- layers with weights: the bias only ------------------------------------------------


def weighted_cases():
    for _ in range(6):
        nd = RNG.choice([1, 2, 3])
        shape = random_shape(nd)
        filters, k, bias = RNG.randint(1, 6), RNG.randint(1, 3), RNG.random() < 0.6
        no_bias = "" if bias else " bias=false"
        conv = {1: nn.Conv1d, 2: nn.Conv2d, 3: nn.Conv3d}[nd]
        deconv = {1: nn.ConvTranspose1d, 2: nn.ConvTranspose2d, 3: nn.ConvTranspose3d}[nd]
        yield shape, f"conv y: {filters} @ {k}{no_bias}", conv(shape[0], filters, k, bias=bias)
        yield shape, f"dwconv y: {k}{no_bias}", conv(shape[0], shape[0], k, groups=shape[0], bias=bias)
        yield shape, f"deconv y: {filters} @ {k} stride=2{no_bias}", deconv(shape[0], filters, k, 2, bias=bias)
        units = RNG.randint(1, 9)
        yield (shape[0],), f"dense y: {units}{no_bias}", nn.Linear(shape[0], units, bias=bias)


@pytest.mark.parametrize(("shape", "stmt", "twin"), list(weighted_cases()))
def test_a_layer_with_weights_counts_one_addition_per_output_value_for_its_bias(shape, stmt, twin):
    bias_adds = values(run(twin, shape)) if twin.bias is not None else 0
    assert elem_ops({"x": shape}, stmt) == bias_adds


# -- norms -------------------------------------------------------------------------------


@pytest.mark.parametrize("case", NORM_CASES)
def test_a_norm_over_each_samples_statistics_counts_four_per_value_and_one_per_learned_array(case):
    """Layer, group and instance norm (its random configurations of tests/test_layers_norms.py):
    with running statistics, folded into x * a + b: 2 per value; else 4 and one per torch parameter."""
    twin = case.build()
    norms = nn.LayerNorm | nn.GroupNorm | nn.InstanceNorm1d | nn.InstanceNorm2d | nn.InstanceNorm3d
    (norm,) = (m for m in twin.modules() if isinstance(m, norms))
    tracks = getattr(norm, "track_running_stats", False)
    per_value = 2 if tracks else 4 + len(list(norm.parameters()))
    assert elem_ops(case.inputs, case.stmt) == per_value * values(run(twin, *case.inputs.values()))


@pytest.mark.parametrize("rank", [0, 1, 2, 3])
def test_batch_norm_at_inference_counts_two_per_value(rank):
    shape = random_shape(rank)
    twin = {0: nn.BatchNorm1d, 1: nn.BatchNorm1d, 2: nn.BatchNorm2d, 3: nn.BatchNorm3d}[rank](shape[0])
    assert elem_ops({"x": shape}, "bn y") == 2 * values(run(twin, shape))


@pytest.mark.parametrize("size", [1, 2, 5])
def test_local_response_norm_counts_its_window_and_five_steps_per_value(size):
    twin = nn.LocalResponseNorm(size)
    assert elem_ops({"x": (6, 5, 7)}, f"lrn y: {size}") == (twin.size + 5) * values(run(twin, (6, 5, 7)))


# -- pools ---------------------------------------------------------------------------------


class MinPool(nn.Module):
    def __init__(self, pool: nn.Module):
        super().__init__()
        self.pool = pool

    def forward(self, x):
        return -self.pool(-x)


def window_pool_cases():
    for kind in ("maxpool", "minpool", "avgpool", "l2pool"):
        for _ in range(5):
            nd = RNG.choice([1, 2, 3])
            shape = random_shape(nd)
            k, s = RNG.randint(1, 3), RNG.randint(1, 3)
            pad = RNG.randint(0, k // 2) if kind != "l2pool" else 0
            stmt = f"{kind} y: {k} /{s}" + (f" pad={pad}" if pad else "")
            if kind == "l2pool":
                twin = getattr(nn, f"LPPool{nd}d")(2, k, s)
            else:
                twin = getattr(nn, f"{'AvgPool' if kind == 'avgpool' else 'MaxPool'}{nd}d")(k, s, pad)
            yield kind, shape, stmt, MinPool(twin) if kind == "minpool" else twin


# steps per output value, from the window's size: comparisons; additions and a division; squares, additions, a root
WINDOW_STEPS = {
    "maxpool": lambda w: w - 1,
    "minpool": lambda w: w - 1,
    "avgpool": lambda w: w,
    "l2pool": lambda w: 2 * w,
}


@pytest.mark.parametrize(("kind", "shape", "stmt", "twin"), list(window_pool_cases()))
def test_a_window_pool_counts_its_steps_over_torchs_window_per_output_value(kind, shape, stmt, twin):
    pool = twin.pool if isinstance(twin, MinPool) else twin
    kernel = pool.kernel_size
    window = math.prod(kernel) if isinstance(kernel, tuple) else kernel ** (len(shape) - 1)
    assert elem_ops({"x": shape}, stmt) == WINDOW_STEPS[kind](window) * values(run(twin, shape))


def torch_window_lengths(n: int, o: int) -> list[int]:
    """The length of each of torch's adaptive windows along an axis of n inputs and o outputs: its
    last index (the max of 0..n-1 over the window) minus its first (the min), plus one."""
    index = torch.arange(n, dtype=torch.float32).reshape(1, 1, n)
    last = F.adaptive_max_pool1d(index, o)
    first = -F.adaptive_max_pool1d(-index, o)
    return [int(v) for v in (last - first + 1).flatten()]


def adaptive_cases():
    for kind in ("adaptiveavgpool", "adaptivemaxpool"):
        for _ in range(6):
            nd = RNG.choice([1, 2, 3])
            shape = random_shape(nd)
            size = tuple(RNG.randint(1, 11) for _ in range(nd))  # larger than the input too
            yield kind, shape, f"{kind} y: {dims(size)}", size
    for kind in ("globalavgpool", "globalmaxpool"):
        for nd in (1, 2, 3):
            shape = random_shape(nd)
            yield kind, shape, f"{kind} y", (1,) * nd


@pytest.mark.parametrize(("kind", "shape", "stmt", "size"), list(adaptive_cases()))
def test_an_adaptive_pool_counts_its_steps_over_torchs_windows(kind, shape, stmt, size):
    read = shape[0] * math.prod(sum(torch_window_lengths(n, o)) for n, o in zip(shape[1:], size))
    pool = getattr(nn, f"Adaptive{'Avg' if 'avg' in kind else 'Max'}Pool{len(shape) - 1}d")(size)
    outputs = values(run(pool, shape))
    assert elem_ops({"x": shape}, stmt) == (read if "avg" in kind else read - outputs)


# -- element-wise arithmetic --------------------------------------------------------------


@pytest.mark.parametrize("op", ["mul", "sub", "div"])
def test_broadcasting_arithmetic_counts_one_per_value_of_torchs_result(op):
    for _ in range(5):
        a = random_shape(2)
        b = tuple(n if RNG.random() < 0.5 else 1 for n in a)
        a, b = (a, b) if RNG.random() < 0.5 else (b, a)
        twin = Lambda(getattr(torch, op))
        assert elem_ops({"a": a, "b": b}, f"{op} y (a, b)") == values(run(twin, a, b))


@pytest.mark.parametrize("count", [2, 3, 5])
def test_an_add_of_n_inputs_counts_n_minus_1_per_value(count):
    names = [f"x{i}" for i in range(count)]
    inputs = dict.fromkeys(names, (4, 5, 6))
    out = run(Lambda(lambda *xs: sum(xs)), *inputs.values())
    for op in ("add", "shortcut"):
        assert elem_ops(inputs, f"{op} y ({', '.join(names)})") == (count - 1) * values(out)


def test_a_sampled_shortcut_adds_into_the_first_inputs_values():
    """Darknet's shortcut from a larger map: sampled, channels padded with zeros, as torch computes it."""
    out = run(Lambda(lambda a, b: a + F.pad(b[:, :, ::2, ::2], (0, 0, 0, 0, 0, 2))), (6, 4, 4), (4, 8, 8))
    assert elem_ops({"a": (6, 4, 4), "b": (4, 8, 8)}, "shortcut y (a, b)") == values(out)


def test_layer_scale_counts_one_multiplication_per_value():
    gamma = nn.Parameter(torch.full((7, 1, 1), 1e-6))
    out = run(Lambda(lambda x: gamma * x), (7, 4, 5))
    assert elem_ops({"x": (7, 4, 5)}, "layer_scale y") == values(out)


# -- layers that compute nothing at inference ---------------------------------------------

MOVES = {
    "input": "",
    "dropout": "dropout y: 0.3",
    "drop_path": "drop_path y: 0.2",
    "concat": "concat y (x, x)",
    "chunk": "chunk y: 2",
    "crop": "crop y: 2x2",
    "flatten": "flatten y",
    "reshape": "reshape y: 4x4x6",
    "permute": "permute y: 1x2x0",
    "upsample": "upsample y: 2",
    "zeropad": "zeropad y: 1",
    "shuffle": "shuffle y: 2",
    "space_to_depth": "space_to_depth y: 2",
    "to_sequence": "to_sequence y",
    "select": "select y: 1 axis=1",
    "param": "param y: 2x3",
    "embedding": "input ids: 5 tokens vocab=9\n  embedding y (ids): 3",
    "position_embedding": "input ids: 5 tokens vocab=9\n  position_embedding y (ids): 3 8",
}


def test_a_mean_counts_its_additions_and_one_division_per_output_value():
    """L - 1 additions and a division for each of the outputs: one operation per input value."""
    x = torch.randn(BATCH, 7, 5)
    assert elem_ops({"x": (7, 5)}, "mean y: axis=0") == x.mean(dim=1)[0].numel() * x.shape[1]


@pytest.mark.parametrize("op", MOVES)
def test_a_layer_that_moves_or_copies_values_counts_none(op):
    net = archc.loads(spec({"x": (4, 6, 4)}, MOVES[op] or "identity y"), "t.arch")
    node = net.layer("x" if op == "input" else "y")
    assert node.op == op
    assert node.elem_ops == 0


def test_every_layer_type_is_counted_by_a_test_above():
    from test_layers_rnn import STEP_OPS

    covered = {text.partition(":")[0] for text in ACTIVATIONS} | {"hardsigmoid", *MOVES, *WINDOW_STEPS}
    covered |= {stmt.split()[0] for _shape, stmt, _twin in weighted_cases()}
    covered |= {case.values[0].stmt.split()[0] for case in NORM_CASES} | {"bn", "lrn"}
    covered |= {kind for kind, *_ in adaptive_cases()} | {"mul", "sub", "div", "add", "shortcut", "layer_scale"}
    covered |= {kind for kind, _bias in STEP_OPS}  # counted in tests/test_layers_rnn.py
    covered |= {"mean"}
    covered |= {"attention", "sdpa"}  # tests/test_attention.py
    assert set(OPS) - covered == set()


# -- where a user sees them: JSON, the table, the totals ------------------------------------

SMALL = """network Small {
  input x: 3x16x16
  conv c: 8 @ 3x3 pad=1 -> relu
  bn b
  maxpool p: 2
  globalavgpool g (p)
  mul m (p, g)
  flatten
  dense d: 10 -> softmax
}
"""


def small_twin_counts() -> dict[str, int]:
    """Each layer's count from what its torch twin outputs, by the convention's steps."""
    x = torch.randn(BATCH, 3, 16, 16)
    c = nn.Conv2d(3, 8, 3, padding=1)(x)
    p = F.max_pool2d(c, 2)
    g = p.mean((2, 3), keepdim=True)
    m = p * g
    d = nn.Linear(m[0].numel(), 10)(m.flatten(1))
    return {
        "x": 0,
        "c": 2 * values(c),  # bias and relu
        "b": 2 * values(c),
        "p": 3 * values(p),  # 2x2 window: 3 comparisons
        "g": values(p),  # the mean reads every value once
        "m": values(m),
        "flatten1": 0,
        "d": values(d) + 3 * values(d),  # bias and softmax
    }


def test_json_gives_each_layers_element_operations_and_their_total(tmp_path):
    path = tmp_path / "small.arch"
    path.write_text(SMALL)
    done = subprocess.run(
        [sys.executable, "-m", "archc", "table", str(path), "--format", "json"], capture_output=True, text=True
    )
    assert done.returncode == 0, done.stderr
    data = json.loads(done.stdout)
    expected = small_twin_counts()
    assert {layer["name"]: layer["elem_ops"] for layer in data["layers"]} == expected
    assert data["totals"]["elem_ops"] == sum(expected.values())
    assert data["totals"]["macs"] == archc.loads(SMALL, "s.arch").totals.macs  # the MACs leave them out
    assert "element ops" in data["conventions"]


def test_the_table_shows_them_as_a_column_with_the_total_when_asked_and_not_by_default():
    net = archc.loads(SMALL, "small.arch")
    assert "element ops" not in net.table("rich").splitlines()[2]
    expected = small_twin_counts()
    csv = net.table("csv", columns=["name", "elem_ops"]).splitlines()
    assert csv[0] == "name,elem_ops"
    assert dict(line.split(",") for line in csv[1:]) == {k: str(v) for k, v in expected.items()}
    footer = net.table("rich", columns=["name", "elem_ops"]).splitlines()
    (total,) = [line for line in footer if line.strip().startswith("total")]
    assert total.split() == ["total", f"{sum(expected.values()):,}"]


def test_more_than_2_62_element_operations_is_e0306_at_the_layer():
    text = spec({"x": (64, 8, 8)}, f"lrn y: {2**62 // 64}")
    with pytest.raises(ArchError) as err:
        archc.loads(text, "t.arch")
    (d,) = err.value.errors
    assert (d.code, d.span.line) == ("E0306", 3)
    assert "element operations" in d.message


# -- a whole network against torchvision -----------------------------------------------------


def torchvision_elem_ops(model: nn.Module, shape) -> int:
    """EfficientNet-B0's element operations, counted on torchvision's model by the convention:
    hooks on its modules, and the multiply and the residual add its forward code does."""
    from torchvision.models.efficientnet import MBConv
    from torchvision.ops.misc import SqueezeExcitation

    total = 0

    def count(module, args, out):
        nonlocal total
        n = values(out)
        if isinstance(module, nn.Conv2d | nn.Linear):
            total += n if module.bias is not None else 0
        elif isinstance(module, nn.BatchNorm2d):
            total += 2 * n
        elif isinstance(module, nn.SiLU | nn.Sigmoid):
            total += n
        elif isinstance(module, nn.AdaptiveAvgPool2d):
            total += values(args[0])  # a global mean reads every value once
        elif isinstance(module, SqueezeExcitation):
            total += n  # scale * input
        elif isinstance(module, MBConv) and module.use_res_connect:
            total += n  # the residual add

    for module in model.modules():
        module.register_forward_hook(count)
    model.eval()
    with torch.no_grad():
        model(torch.randn(BATCH, *shape))
    return total


def test_efficientnet_b0s_element_operations_are_torchvisions_counted_by_the_convention():
    from torchvision.models import efficientnet_b0

    net = archc.load(ROOT / "specs" / "efficientnet_b0.arch")
    assert net.totals.elem_ops == torchvision_elem_ops(efficientnet_b0(weights=None), (3, 224, 224))
