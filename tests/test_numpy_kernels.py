"""The NumPy runtime of generated models (archc/codegen/runtime/numpy_kernels.py) against PyTorch.

Every kernel is run on small random float32 inputs next to the torch function or
module it mirrors, over 1-D, 2-D and 3-D inputs and the settings a spec can
write. Results must agree to float32 rounding: rtol 1e-4 and atol 1e-5 times the
largest magnitude of torch's output, with the same shape and dtype. Padding that
torch's layers cannot express (per-side pairs) is built as F.pad followed by the
layer with padding 0.

The last tests check what the code generator relies on: the module imports only
numpy, and each function, copied out with the functions it names, runs on its own.
"""

from __future__ import annotations

import ast
import builtins
import math
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F  # noqa: N812 (the usual torch spelling)
from torch import nn

from archc.codegen.runtime import numpy_kernels as K  # noqa: N812 (short, used on every line)

SOURCE = Path(K.__file__).read_text()
TREE = ast.parse(SOURCE)
FUNCTIONS = {node.name: node for node in TREE.body if isinstance(node, ast.FunctionDef)}
PUBLIC = sorted(name for name in FUNCTIONS if not name.startswith("_"))

# Spatial sizes per number of spatial dimensions: small, odd and even, all different.
SPATIAL = {1: (9,), 2: (7, 8), 3: (5, 6, 7)}
NDS = [1, 2, 3]


# -- helpers ------------------------------------------------------------------------


def rand(*shape, seed=0, scale=1.0, shift=0.0):
    return (np.random.default_rng(seed).standard_normal(shape) * scale + shift).astype(np.float32)


def ints(*shape, seed=0, low=-3, high=4):
    return np.random.default_rng(seed).integers(low, high, shape).astype(np.float32)


def as_numpy(value):
    return value.detach().numpy() if isinstance(value, torch.Tensor) else np.asarray(value)


def close(ours, theirs):
    """Equal to float32 rounding, relative to the scale of the expected output."""
    theirs = as_numpy(theirs)
    scale = float(np.abs(theirs).max()) if theirs.size else 0.0
    np.testing.assert_allclose(ours, theirs, rtol=1e-4, atol=1e-5 * scale, strict=True)


def exact(ours, theirs):
    np.testing.assert_array_equal(ours, as_numpy(theirs), strict=True)


def fit(value, nd):
    """A per-dimension test setting, written for three dimensions, cut down to nd."""
    return value[:nd] if isinstance(value, tuple) else value


def per_dim(value, nd):
    return (value,) * nd if isinstance(value, int) else tuple(value)


def per_side(padding):
    return isinstance(padding, tuple) and isinstance(padding[0], tuple)


def sides(padding, nd):
    if per_side(padding):
        return padding
    return tuple((p, p) for p in per_dim(padding, nd))


def torch_pad(t, pairs, value=0.0):
    """F.pad with ((before, after), ...) per spatial dimension, first dimension first."""
    return F.pad(t, [p for pair in reversed(pairs) for p in pair], value=value)


def op(kind, nd):
    return getattr(F, f"{kind}{nd}d")


def tensor(x):
    return torch.from_numpy(np.ascontiguousarray(x))


# -- pad ------------------------------------------------------------------------------


@pytest.mark.parametrize("nd", NDS)
@pytest.mark.parametrize(
    "padding", [0, 1, (2, 0, 1), ((0, 1), (2, 0), (1, 3))], ids=["none", "int", "per-dim", "per-side"]
)
@pytest.mark.parametrize("value", [0.0, -1.5, -np.inf])
def test_pad(nd, padding, value):
    x = rand(2, 3, *SPATIAL[nd])
    padding = fit(padding, nd)
    exact(K.pad(x, padding, value), torch_pad(tensor(x), sides(padding, nd), value))


def test_argument_forms():
    assert K._per_dim(2, 3) == (2, 2, 2)
    assert K._per_dim((1, 2), 2) == (1, 2)
    assert K._per_dim(np.int64(3), 1) == (3,)
    assert K._pairs(1, 2) == ((1, 1), (1, 1))
    assert K._pairs((1, 2), 2) == ((1, 1), (2, 2))
    assert K._pairs(((0, 1), (2, 3)), 2) == ((0, 1), (2, 3))
    with pytest.raises(ValueError):
        K._per_dim((1, 2), 3)
    with pytest.raises(ValueError):
        K._pairs((1, 2), 1)  # a flat pair is one int per dimension, not (before, after)


# -- convolution ------------------------------------------------------------------------

CONV_CASES = {
    "plain": dict(c=4, f=6, kernel=3),
    "pointwise": dict(c=4, f=6, kernel=1),
    "stride2": dict(c=4, f=6, kernel=3, stride=2),
    "stride-per-dim": dict(c=4, f=6, kernel=2, stride=(3, 1, 2)),
    "pad1": dict(c=4, f=6, kernel=3, padding=1),
    "pad-per-dim": dict(c=4, f=6, kernel=3, padding=(1, 0, 2)),
    "pad-per-side": dict(c=4, f=6, kernel=3, padding=((0, 1), (2, 0), (1, 1))),
    "dilation2": dict(c=4, f=6, kernel=3, dilation=2, padding=1),
    "dilation-per-dim": dict(c=4, f=6, kernel=2, dilation=(2, 1, 3)),
    "kernel-per-dim": dict(c=4, f=6, kernel=(3, 1, 2)),
    "groups2": dict(c=4, f=6, kernel=3, groups=2),
    "depthwise": dict(c=4, f=4, kernel=3, groups=4, padding=1),
    "depthwise-x2": dict(c=4, f=8, kernel=3, groups=4),
    "no-bias": dict(c=4, f=6, kernel=3, bias=False),
    "everything": dict(
        c=4, f=6, kernel=(3, 2, 3), stride=2, padding=((1, 0), (0, 2), (1, 1)), dilation=(1, 2, 1), groups=2, bias=False
    ),
}


def conv_args(case, nd):
    return dict(
        stride=fit(case.get("stride", 1), nd),
        padding=fit(case.get("padding", 0), nd),
        dilation=fit(case.get("dilation", 1), nd),
        groups=case.get("groups", 1),
    )


@pytest.mark.parametrize("nd", NDS)
@pytest.mark.parametrize("case", CONV_CASES.values(), ids=CONV_CASES.keys())
def test_conv(nd, case):
    args = conv_args(case, nd)
    kernel = per_dim(fit(case["kernel"], nd), nd)
    x = rand(2, case["c"], *SPATIAL[nd], seed=1)
    w = rand(case["f"], case["c"] // args["groups"], *kernel, seed=2, scale=0.5)
    b = rand(case["f"], seed=3) if case.get("bias", True) else None
    ours = K.conv(x, w, b, **args)

    t = tensor(x)
    if per_side(args["padding"]):
        t, args["padding"] = torch_pad(t, args["padding"]), 0
    close(ours, op("conv", nd)(t, tensor(w), None if b is None else tensor(b), **args))


@pytest.mark.parametrize("nd", NDS)
def test_conv_integers_are_exact(nd):
    x = ints(2, 4, *SPATIAL[nd], seed=4)
    w = ints(6, 2, *(3,) * nd, seed=5)
    b = ints(6, seed=6)
    ours = K.conv(x, w, b, stride=2, padding=1, groups=2)
    exact(ours, op("conv", nd)(tensor(x), tensor(w), tensor(b), stride=2, padding=1, groups=2))


DECONV_CASES = {
    "plain": dict(c=4, f=6, kernel=3),
    "stride2": dict(c=4, f=6, kernel=3, stride=2),
    "stride2-pad1-out1": dict(c=4, f=6, kernel=3, stride=2, padding=1, output_padding=1),
    "k4-s2-p1": dict(c=4, f=6, kernel=4, stride=2, padding=1),
    "k2-s2": dict(c=4, f=6, kernel=2, stride=2),
    "stride3-pad2-out2": dict(c=4, f=6, kernel=3, stride=3, padding=2, output_padding=2),
    "pad-beyond-kernel": dict(c=4, f=6, kernel=1, stride=2, padding=1),
    "dilation2-out1": dict(c=4, f=6, kernel=3, stride=2, dilation=2, output_padding=1),
    "per-dim": dict(c=4, f=6, kernel=(3, 2, 4), stride=(2, 1, 3), padding=(1, 0, 2), output_padding=(1, 0, 2)),
    "per-side": dict(c=4, f=6, kernel=3, stride=2, padding=((0, 1), (2, 1), (1, 0)), output_padding=1),
    "groups2": dict(c=4, f=6, kernel=3, stride=2, groups=2),
    "depthwise": dict(c=4, f=4, kernel=3, groups=4, padding=1),
    "depthwise-x2": dict(c=4, f=8, kernel=3, stride=2, groups=4),
    "no-bias": dict(c=4, f=6, kernel=3, stride=2, padding=1, bias=False),
}


@pytest.mark.parametrize("nd", NDS)
@pytest.mark.parametrize("case", DECONV_CASES.values(), ids=DECONV_CASES.keys())
def test_conv_transpose(nd, case):
    args = conv_args(case, nd)
    args["output_padding"] = fit(case.get("output_padding", 0), nd)
    kernel = per_dim(fit(case["kernel"], nd), nd)
    x = rand(2, case["c"], *SPATIAL[nd], seed=1)
    w = rand(case["c"], case["f"] // args["groups"], *kernel, seed=2, scale=0.5)
    b = rand(case["f"], seed=3) if case.get("bias", True) else None
    ours = K.conv_transpose(x, w, b, **args)

    padding = args.pop("padding")
    expected = op("conv_transpose", nd)(
        tensor(x), tensor(w), None if b is None else tensor(b), padding=0 if per_side(padding) else padding, **args
    )
    if per_side(padding):  # remove `before` and `after` pixels from each end of the full output
        crop = tuple(slice(before, size - after) for (before, after), size in zip(padding, expected.shape[2:]))
        expected = expected[(slice(None), slice(None), *crop)]
    close(ours, expected)


@pytest.mark.parametrize("nd", NDS)
def test_conv_transpose_integers_are_exact(nd):
    x = ints(2, 4, *SPATIAL[nd], seed=4)
    w = ints(4, 3, *(3,) * nd, seed=5)
    ours = K.conv_transpose(x, w, None, stride=2, padding=1, output_padding=1, groups=2)
    exact(ours, op("conv_transpose", nd)(tensor(x), tensor(w), None, 2, 1, 1, 2))


# -- pooling ------------------------------------------------------------------------------

# Per-side cases in ceil mode are chosen so the last window starts inside the input or its left
# padding both by this module's rule and by torch's rule applied to the F.pad'ded input.
MAX_CASES = {
    "k2": dict(kernel=2),
    "k3-s1-p1": dict(kernel=3, stride=1, padding=1),
    "k3-s2-p1": dict(kernel=3, stride=2, padding=1),
    "k3-s2-ceil": dict(kernel=3, stride=2, ceil=True),
    "k2-ceil": dict(kernel=2, ceil=True),
    "k2-s2-p1-ceil": dict(kernel=2, stride=2, padding=1, ceil=True),  # the last ceil window is dropped
    "k3-s1-ceil": dict(kernel=3, stride=1, ceil=True),
    "dilation2": dict(kernel=3, stride=2, padding=1, dilation=2),
    "dilation2-ceil": dict(kernel=2, stride=2, dilation=2, ceil=True),
    "per-dim-ceil": dict(kernel=(3, 2, 2), stride=(2, 1, 2), padding=(1, 0, 1), dilation=(1, 2, 1), ceil=True),
    "per-side": dict(kernel=3, stride=2, padding=((1, 0), (0, 1), (1, 1))),
    "per-side-ceil": dict(kernel=2, stride=2, padding=((0, 1), (1, 0), (0, 1)), ceil=True),
}


def pool_args(case, nd):
    return dict(
        stride=fit(case.get("stride"), nd),
        padding=fit(case.get("padding", 0), nd),
        ceil_mode=case.get("ceil", False),
    )


@pytest.mark.parametrize("nd", NDS)
@pytest.mark.parametrize("case", MAX_CASES.values(), ids=MAX_CASES.keys())
@pytest.mark.parametrize("kind", ["max", "min"])
def test_max_min_pool(nd, case, kind):
    x = rand(2, 3, *SPATIAL[nd], seed=7)
    kernel = fit(case["kernel"], nd)
    args = pool_args(case, nd)
    args["dilation"] = fit(case.get("dilation", 1), nd)
    ours = getattr(K, f"{kind}_pool")(x, kernel, **args)

    sign = 1 if kind == "max" else -1
    t = tensor(sign * x)
    if per_side(args["padding"]):
        t, args["padding"] = torch_pad(t, args["padding"], -np.inf), 0
    exact(ours, sign * op("max_pool", nd)(t, kernel, **args))


def test_max_pool_ceil_rule_with_per_side_padding():
    """The last ceil window must start inside the input or the left padding, never in the right padding.

    torch applied to the F.pad'ded input would keep a fifth window made only of padding (-inf).
    """
    x = rand(1, 2, 8, seed=8)
    ours = K.max_pool(x, 2, 2, ((0, 1),), ceil_mode=True)
    exact(ours, F.max_pool1d(tensor(x), 2, 2, ceil_mode=True))
    assert F.max_pool1d(torch_pad(tensor(x), ((0, 1),), -np.inf), 2, 2, ceil_mode=True).shape[-1] == 5


AVG_CASES = {
    "k2": dict(kernel=2),
    "k3-s1-p1": dict(kernel=3, stride=1, padding=1),
    "k3-s2-p1": dict(kernel=3, stride=2, padding=1),
    "k3-s2-ceil": dict(kernel=3, stride=2, ceil=True),
    "k2-s2-p1-ceil": dict(kernel=2, stride=2, padding=1, ceil=True),
    "k3-s2-p1-ceil": dict(kernel=3, stride=2, padding=1, ceil=True),
    "k4-s3-p2-ceil": dict(kernel=4, stride=3, padding=2, ceil=True),
    "per-dim-ceil": dict(kernel=(3, 2, 3), stride=(2, 1, 2), padding=(1, 0, 1), ceil=True),
    "per-side": dict(kernel=3, stride=2, padding=((1, 0), (0, 1), (1, 1))),
    "per-side-ceil": dict(kernel=2, stride=2, padding=((0, 1), (1, 0), (0, 1)), ceil=True),
    "per-side-wide": dict(kernel=3, stride=1, padding=((2, 0), (0, 2), (2, 2))),
}


def window_sums(t, kernel, stride, ceil_mode):
    """torch's sums over pooling windows without padding (avg pooling with divisor 1)."""
    nd = t.ndim - 2
    if nd == 1:  # avg_pool1d has no divisor_override
        sums = F.avg_pool2d(t[:, :, None], (1, *kernel), (1, *stride), 0, ceil_mode, divisor_override=1)
        return sums[:, :, 0]
    return op("avg_pool", nd)(t, kernel, stride, 0, ceil_mode, divisor_override=1)


@pytest.mark.parametrize("nd", NDS)
@pytest.mark.parametrize("case", AVG_CASES.values(), ids=AVG_CASES.keys())
@pytest.mark.parametrize("include", [True, False], ids=["count-pad", "skip-pad"])
def test_avg_pool(nd, case, include):
    x = rand(2, 3, *SPATIAL[nd], seed=9)
    kernel = fit(case["kernel"], nd)
    args = pool_args(case, nd)
    ours = K.avg_pool(x, kernel, **args, count_include_pad=include)

    padding = args["padding"]
    if not per_side(padding):
        close(ours, op("avg_pool", nd)(tensor(x), kernel, **args, count_include_pad=include))
        return
    # sums over F.pad'ded windows divided by how many of their positions torch's divisor counts
    kernel = per_dim(kernel, nd)
    stride = kernel if args["stride"] is None else per_dim(args["stride"], nd)
    sums = window_sums(torch_pad(tensor(x), padding), kernel, stride, args["ceil_mode"])
    counted = torch_pad(torch.ones(x.shape), padding, value=1.0 if include else 0.0)
    close(ours, sums / window_sums(counted, kernel, stride, args["ceil_mode"]))


@pytest.mark.parametrize("nd", NDS)
def test_avg_pool_window_in_padding_only(nd):
    """A window that covers only per-side padding, with count_include_pad=False, averages to 0 (not nan)."""
    x = rand(1, 2, *SPATIAL[nd], seed=10)
    ours = K.avg_pool(x, 2, 2, ((0, 4),) * nd, count_include_pad=False)
    assert np.isfinite(ours).all()
    assert (ours[(..., -1)] == 0).all()


L2_CASES = {
    "k2": dict(kernel=2),
    "k3-s1": dict(kernel=3, stride=1),
    "k3-s2": dict(kernel=3, stride=2),
    "k3-s2-ceil": dict(kernel=3, stride=2, ceil=True),
    "k2-ceil": dict(kernel=2, ceil=True),
    "k4-s3-ceil": dict(kernel=4, stride=3, ceil=True),
    "per-dim-ceil": dict(kernel=(3, 2, 2), stride=(2, 1, 2), ceil=True),
}


@pytest.mark.parametrize("nd", NDS)
@pytest.mark.parametrize("case", L2_CASES.values(), ids=L2_CASES.keys())
def test_l2_pool(nd, case):
    x = rand(2, 3, *SPATIAL[nd], seed=11)
    kernel = fit(case["kernel"], nd)
    stride = fit(case.get("stride"), nd)
    ceil_mode = case.get("ceil", False)
    ours = K.l2_pool(x, kernel, stride, ceil_mode)
    if nd == 1:  # LPPool1d multiplies by its kernel_size, so it must be an int
        kernel = per_dim(kernel, 1)[0]
        stride = None if stride is None else per_dim(stride, 1)[0]
    module = getattr(nn, f"LPPool{nd}d")(2, kernel, stride, ceil_mode)
    close(ours, module(tensor(x)))


ADAPTIVE_CASES = [
    ((7,), 3),
    ((5,), 4),
    ((10,), 3),
    ((4,), 4),
    ((3,), 5),
    ((6,), 1),
    ((7, 5), (3, 4)),
    ((10, 4), (3, 1)),
    ((5, 5), 2),
    ((3, 2), (5, 4)),
    ((7, 6), (None, 4)),
    ((7, 5, 10), (3, 4, 3)),
    ((4, 4, 4), (1, 2, 3)),
    ((3, 3, 2), (4, 2, 5)),
    ((6, 5, 4), (None, 2, None)),
]


@pytest.mark.parametrize("spatial, out", ADAPTIVE_CASES, ids=[f"{s}->{o}" for s, o in ADAPTIVE_CASES])
@pytest.mark.parametrize("kind", ["avg", "max"])
def test_adaptive_pool(spatial, out, kind):
    x = rand(2, 3, *spatial, seed=12)
    ours = getattr(K, f"adaptive_{kind}_pool")(x, out)
    expected = getattr(F, f"adaptive_{kind}_pool{len(spatial)}d")(tensor(x), out)
    (exact if kind == "max" else close)(ours, expected)


@pytest.mark.parametrize("nd", NDS)
def test_adaptive_avg_pool_is_correctly_rounded(nd):
    """Exact window sums divided once: the float64 mean rounded to float32 (torch's float32 3-D kernel is 1 ulp off)."""
    x = ints(2, 3, *SPATIAL[nd], seed=13)
    ours = K.adaptive_avg_pool(x, 2)
    exact(ours, op("adaptive_avg_pool", nd)(tensor(x).double(), 2).float())
    close(ours, op("adaptive_avg_pool", nd)(tensor(x), 2))


@pytest.mark.parametrize("nd", NDS)
def test_global_pools(nd):
    x = rand(2, 3, *SPATIAL[nd], seed=14)
    axes = tuple(range(2, 2 + nd))
    close(K.global_avg_pool(x), tensor(x).mean(dim=axes, keepdim=True))
    exact(K.global_max_pool(x), tensor(x).amax(dim=axes, keepdim=True))
    assert K.global_avg_pool(x).shape == (2, 3, *(1,) * nd)


# -- normalisation and dense layers --------------------------------------------------------


@pytest.mark.parametrize("nd", [0, *NDS], ids=["vector", "1d", "2d", "3d"])
@pytest.mark.parametrize("momentum, eps", [(0.1, 1e-5), (0.3, 1e-3), (None, 1e-5)])
def test_batch_norm(nd, momentum, eps):
    torch.manual_seed(0)
    module = getattr(nn, f"BatchNorm{max(nd, 1)}d")(5, eps=eps, momentum=momentum)
    with torch.no_grad():
        module.weight.uniform_(0.5, 1.5)
        module.bias.normal_()
        module.running_mean.normal_()
        module.running_var.uniform_(0.5, 2.0)
    state = {f"block.bn.{key}": value.numpy().copy() for key, value in module.state_dict().items()}
    arrays = dict(state)
    spatial = SPATIAL[nd] if nd else ()

    def same_state():
        for key, value in module.state_dict().items():
            ours = state[f"block.bn.{key}"]
            assert ours is arrays[f"block.bn.{key}"], f"{key} was replaced, not updated in place"
            close(ours, value)

    module.train()
    for step in range(2):
        x = rand(4, 5, *spatial, seed=20 + step, scale=2.0, shift=3.0)
        close(K.batch_norm(x, state, "block.bn", True, momentum, eps), module(tensor(x)))
        same_state()
    assert state["block.bn.num_batches_tracked"].shape == ()
    assert state["block.bn.num_batches_tracked"] == 2

    module.eval()
    x = rand(4, 5, *spatial, seed=30, scale=2.0, shift=3.0)
    close(K.batch_norm(x, state, "block.bn", False, momentum, eps), module(tensor(x)))
    same_state()


@pytest.mark.parametrize("nd", NDS)
@pytest.mark.parametrize("size", [1, 2, 3, 4, 5])
@pytest.mark.parametrize("alpha, beta, k", [(1e-4, 0.75, 1.0), (0.5, 0.5, 2.0)], ids=["defaults", "strong"])
def test_local_response_norm(nd, size, alpha, beta, k):
    x = rand(2, 6, *SPATIAL[nd], seed=15, scale=3.0)
    close(K.local_response_norm(x, size, alpha, beta, k), F.local_response_norm(tensor(x), size, alpha, beta, k))


@pytest.mark.parametrize("bias", [True, False])
def test_linear(bias):
    x = rand(4, 10, seed=16)
    w = rand(7, 10, seed=17)
    b = rand(7, seed=18) if bias else None
    close(K.linear(x, w, b), F.linear(tensor(x), tensor(w), None if b is None else tensor(b)))


@pytest.mark.parametrize("nd", NDS)
@pytest.mark.parametrize("scale", [1, 2, 3, (2, 1, 3)], ids=["1", "2", "3", "per-dim"])
def test_upsample_nearest(nd, scale):
    x = rand(2, 3, *SPATIAL[nd], seed=19)
    scale = fit(scale, nd)
    factor = tuple(float(s) for s in scale) if isinstance(scale, tuple) else float(scale)
    exact(K.upsample_nearest(x, scale), nn.Upsample(scale_factor=factor, mode="nearest")(tensor(x)))


# -- dropout ------------------------------------------------------------------------------


@pytest.mark.parametrize("block", [1, 2, 3])
def test_space_to_depth(block):
    x = rand(2, 3, 6, 12, seed=21)
    close(K.space_to_depth(x, block), F.pixel_unshuffle(tensor(x), block))


def test_dropout_is_identity_when_not_training_or_p_is_zero():
    x = rand(4, 6, seed=20)
    rng = np.random.default_rng(0)
    exact(K.dropout(x, 0.5, False, rng), x)
    exact(K.dropout(x, 0.0, True, rng), x)


@pytest.mark.parametrize("p", [0.1, 0.5, 0.8])
def test_dropout_in_training(p):
    x = rand(200, 500, seed=21, shift=5.0)  # no zeros of its own
    ours = K.dropout(x, p, True, np.random.default_rng(1))
    assert ours.dtype == np.float32 and ours.shape == x.shape
    dropped = ours == 0
    assert abs(dropped.mean() - p) < 0.01
    np.testing.assert_allclose(ours[~dropped], x[~dropped] / (1 - p), rtol=1e-6)
    # the convention: a value is kept where rng.random(x.shape) >= p
    exact(dropped, np.random.default_rng(1).random(x.shape) < p)
    exact(K.dropout(x, p, True, np.random.default_rng(1)), ours)
    assert not np.array_equal(K.dropout(x, p, True, np.random.default_rng(2)), ours)


def test_dropout_everything():
    exact(K.dropout(rand(3, 4), 1.0, True, np.random.default_rng(0)), np.zeros((3, 4), np.float32))


# -- activations ------------------------------------------------------------------------------

ACTIVATIONS = {
    "relu": (K.relu, F.relu),
    "leaky_relu": (K.leaky_relu, F.leaky_relu),
    "leaky_relu-0.2": (lambda x: K.leaky_relu(x, 0.2), lambda t: F.leaky_relu(t, 0.2)),
    "relu6": (K.relu6, F.relu6),
    "elu": (K.elu, F.elu),
    "elu-0.5": (lambda x: K.elu(x, 0.5), lambda t: F.elu(t, 0.5)),
    "gelu": (K.gelu, F.gelu),
    "silu": (K.silu, F.silu),
    "hardswish": (K.hardswish, F.hardswish),
    "mish": (K.mish, F.mish),
    "sigmoid": (K.sigmoid, torch.sigmoid),
    "softmax": (K.softmax, lambda t: F.softmax(t, dim=1)),
    "softmax-last": (lambda x: K.softmax(x, axis=-1), lambda t: F.softmax(t, dim=-1)),
}
EXTREMES = [-100.0, -50.0, -20.0, -6.0, -3.0, -1e-3, 0.0, 1e-3, 3.0, 6.0, 20.0, 50.0, 100.0]


@pytest.mark.parametrize("ours, theirs", ACTIVATIONS.values(), ids=ACTIVATIONS.keys())
@pytest.mark.parametrize("shape", [(4, 13), (2, 13, 5)])
def test_activation(ours, theirs, shape):
    x = rand(*shape, seed=22, scale=4.0)
    x[1] = np.reshape(EXTREMES, (13,) + (1,) * (len(shape) - 2))  # one sample of extremes, across channels
    with np.errstate(over="raise", invalid="raise", divide="raise"):
        result = ours(x)
    close(result, theirs(tensor(x)))


def test_sigmoid_keeps_precision_far_out():
    x = np.linspace(-80, 80, 161, dtype=np.float32)
    exact64 = 1 / (1 + np.exp(-x.astype(np.float64)))
    np.testing.assert_allclose(K.sigmoid(x), exact64, rtol=1e-6, atol=0)


def test_erf():
    x = np.linspace(-7, 7, 14001)
    assert np.abs(K.erf(x) - np.array([math.erf(v) for v in x])).max() < 1.5e-7
    assert K.erf(x.astype(np.float32)).dtype == np.float32
    assert K.erf(np.array([np.inf, -np.inf])).tolist() == [1.0, -1.0]


# -- weight initialisation --------------------------------------------------------------------

INIT_SHAPES = [(256, 256, 3, 3), (512, 300), (64, 48, 3, 3, 3), (128, 256, 9)]


@pytest.mark.parametrize("shape", INIT_SHAPES, ids=["conv2d", "dense", "conv3d", "conv1d"])
def test_fans_follow_torch(shape):
    assert K._fans(shape) == nn.init._calculate_fan_in_and_fan_out(torch.empty(shape))


def torch_init(function, shape, *args, **kwargs) -> np.ndarray:
    """What torch's nn.init function draws into a tensor of `shape`."""
    torch.manual_seed(0)
    tensor = torch.empty(shape)
    function(tensor, *args, **kwargs)
    return tensor.numpy()


def same_distribution(ours, theirs):
    """Same dtype and shape; mean, std, mean |value| and largest |value| agree within sampling noise."""
    assert ours.dtype == np.float32 and ours.shape == theirs.shape
    n, std = ours.size, theirs.std()
    assert abs(ours.mean() - theirs.mean()) < 6 * std / math.sqrt(n)
    assert abs(ours.std() / std - 1) < 6 / math.sqrt(n)
    assert abs(np.abs(ours).mean() / np.abs(theirs).mean() - 1) < 6 / math.sqrt(n)
    assert abs(np.abs(ours).max() / np.abs(theirs).max() - 1) < 0.3


def fan_out(t: torch.Tensor) -> float:
    """1 / sqrt(fan_out): EfficientNet's bound for linear weights (1 / sqrt(out_features))."""
    return 1 / math.sqrt(nn.init._calculate_fan_in_and_fan_out(t)[1])


# the kernel's arguments after (rng, shape), and torch's nn.init call that it reproduces
INITS = {
    "kaiming_fan_in": (K.kaiming_normal, {}, lambda t: nn.init.kaiming_normal_(t)),
    "kaiming_fan_out": (K.kaiming_normal, {"mode": "fan_out"}, lambda t: nn.init.kaiming_normal_(t, mode="fan_out")),
    "torch_default": (K.uniform_fan, {}, lambda t: nn.init.kaiming_uniform_(t, a=math.sqrt(5))),
    "uniform_fan_out": (K.uniform_fan, {"mode": "fan_out"}, lambda t: nn.init.uniform_(t, -fan_out(t), fan_out(t))),
    "normal": (K.normal, {"std": 0.01}, lambda t: nn.init.normal_(t, 0, 0.01)),
    "trunc_normal": (K.trunc_normal, {"std": 0.02}, lambda t: nn.init.trunc_normal_(t, std=0.02)),
    "trunc_normal_cut": (
        K.trunc_normal,
        {"std": 1.0, "a": -1.0, "b": 0.5},
        lambda t: nn.init.trunc_normal_(t, 0, 1, -1, 0.5),
    ),
}


@pytest.mark.parametrize("shape", INIT_SHAPES, ids=["conv2d", "dense", "conv3d", "conv1d"])
@pytest.mark.parametrize("init", sorted(INITS))
def test_initialisers_draw_what_torch_draws(init, shape):
    kernel, kwargs, theirs = INITS[init]
    ours = kernel(np.random.default_rng(0), shape, **kwargs)
    same_distribution(ours, torch_init(theirs, shape))
    exact(kernel(np.random.default_rng(0), shape, **kwargs), ours)  # the same seed, the same weights


@pytest.mark.parametrize("shape", INIT_SHAPES, ids=["conv2d", "dense", "conv3d", "conv1d"])
def test_uniform_bias_draws_what_torch_draws(shape):
    """PyTorch's default bias: its bound comes from the fan_in of the layer's weight."""
    size = 20_000
    ours = K.uniform_bias(np.random.default_rng(0), size, shape)
    fan_in, _ = nn.init._calculate_fan_in_and_fan_out(torch.empty(shape))
    bound = 1 / math.sqrt(fan_in)
    same_distribution(ours, torch_init(nn.init.uniform_, (size,), -bound, bound))


# -- what the code generator relies on ----------------------------------------------------------


def free_names(function):
    """Names a function reads that it does not bind itself (parameters, assignments, loop variables)."""
    nodes = list(ast.walk(function))
    bound = {node.arg for node in nodes if isinstance(node, ast.arg)}
    bound |= {node.id for node in nodes if isinstance(node, ast.Name) and not isinstance(node.ctx, ast.Load)}
    read = {node.id for node in nodes if isinstance(node, ast.Name) and isinstance(node.ctx, ast.Load)}
    return read - bound - set(dir(builtins))


def closure(name):
    """The function and every module function it calls, directly or not: what the generator copies."""
    needed, todo = set(), [name]
    while todo:
        current = todo.pop()
        if current not in needed:
            needed.add(current)
            todo.extend(free_names(FUNCTIONS[current]) & FUNCTIONS.keys())
    return needed


def standalone(name):
    """The function as a generated model sees it: its closure's source run in a namespace holding only np."""
    namespace = {"np": np}
    for needed in sorted(closure(name)):
        exec(compile(ast.get_source_segment(SOURCE, FUNCTIONS[needed]), "<generated>", "exec"), namespace)
    return namespace[name]


def test_module_holds_only_numpy_and_functions():
    imports = [node for node in ast.walk(TREE) if isinstance(node, ast.Import | ast.ImportFrom)]
    assert [ast.unparse(node) for node in imports] == ["import numpy as np"]
    assert ast.get_docstring(TREE)
    for node in TREE.body[1:]:
        assert isinstance(node, ast.Import | ast.FunctionDef), ast.unparse(node)[:60]


@pytest.mark.parametrize("name", sorted(FUNCTIONS))
def test_function_is_self_contained(name):
    function = FUNCTIONS[name]
    assert ast.get_docstring(function), f"{name} has no docstring"
    assert not any(isinstance(node, ast.Global | ast.Nonlocal) for node in ast.walk(function))
    assert free_names(function) - FUNCTIONS.keys() <= {"np"}


def bn_state():
    return {
        "bn.weight": rand(3, seed=1),
        "bn.bias": rand(3, seed=2),
        "bn.running_mean": rand(3, seed=3),
        "bn.running_var": rand(3, seed=4) ** 2 + 0.5,
        "bn.num_batches_tracked": np.array(0, dtype=np.int64),
    }


def rnn_state(gates, proj=0, features=3, hidden=4):
    """The arrays of a two-layer bidirectional lstm (4 gates, with a projection) or gru (3), under `r`."""
    out, state = proj or hidden, {}
    for k, size in enumerate((features, 2 * out)):
        for suffix in ("", "_reverse"):
            tag, seed = f"_l{k}{suffix}", 50 + 5 * len(state)
            state[f"r.weight_ih{tag}"] = rand(gates * hidden, size, seed=seed)
            state[f"r.weight_hh{tag}"] = rand(gates * hidden, out, seed=seed + 1)
            state[f"r.bias_ih{tag}"] = rand(gates * hidden, seed=seed + 2)
            state[f"r.bias_hh{tag}"] = rand(gates * hidden, seed=seed + 3)
            if proj:
                state[f"r.weight_hr{tag}"] = rand(proj, hidden, seed=seed + 4)
    return state


X = rand(2, 4, 6, 5, seed=40)
SAMPLES = {
    "pad": lambda: (X, ((1, 0), (0, 2)), -1.0),
    "conv": lambda: (X, rand(6, 2, 3, 2, seed=41), rand(6, seed=42), 2, ((1, 0), 1), 1, 2),
    "conv_transpose": lambda: (X, rand(4, 3, 3, 3, seed=41), rand(6, seed=42), 2, 1, 1, 2),
    "max_pool": lambda: (X, 3, 2, 1, 1, True),
    "min_pool": lambda: (X, 2, None, 0, 2, True),
    "avg_pool": lambda: (X, 3, 2, 1, True, False),
    "l2_pool": lambda: (X, 3, 2, True),
    "adaptive_avg_pool": lambda: (X, (4, 3)),
    "adaptive_max_pool": lambda: (X, (4, 3)),
    "global_avg_pool": lambda: (X,),
    "global_max_pool": lambda: (X,),
    "batch_norm": lambda: (X[:, :3], bn_state(), "bn", True, None),
    "local_response_norm": lambda: (X, 3),
    "layer_norm": lambda: (X, (1,), rand(4, seed=46), rand(4, seed=47), 1e-6),
    "group_norm": lambda: (X, 2, rand(4, seed=46), rand(4, seed=47)),
    "instance_norm": lambda: (X, None, None, rand(4, seed=48), np.ones(4, np.float32), True),
    "linear": lambda: (X[:, :, 0, 0], rand(3, 4, seed=43), rand(3, seed=44)),
    "linear_in_out": lambda: (X[:, :, 0, 0], rand(4, 3, seed=43), rand(3, seed=44)),
    "upsample_nearest": lambda: (X, (2, 3)),
    "dropout": lambda: (X, 0.3, True, np.random.default_rng(5)),
    "relu": lambda: (X,),
    "leaky_relu": lambda: (X, 0.1),
    "relu6": lambda: (X * 5,),
    "elu": lambda: (X * 50,),
    "erf": lambda: (X,),
    "gelu": lambda: (X,),
    "silu": lambda: (X,),
    "hardswish": lambda: (X * 5,),
    "mish": lambda: (X * 50,),
    "space_to_depth": lambda: (rand(2, 3, 4, 6, seed=45), 2),
    "channel_shuffle": lambda: (X, 2),
    "drop_path": lambda: (X, 0.5, True, np.random.default_rng(5)),
    "hardsigmoid": lambda: (X * 5,),
    "sigmoid": lambda: (X * 50,),
    "softmax": lambda: (X, 2),
    "kaiming_normal": lambda: (np.random.default_rng(6), (8, 4, 3), "fan_out"),
    "uniform_fan": lambda: (np.random.default_rng(6), (8, 4, 3)),
    "uniform_bias": lambda: (np.random.default_rng(6), 8, (8, 4, 3)),
    "normal": lambda: (np.random.default_rng(6), (8, 4, 3), 0.5),
    "trunc_normal": lambda: (np.random.default_rng(6), (8, 4, 3), 1.0, -0.5, 0.5),
    "uniform": lambda: (np.random.default_rng(6), (8, 4, 3), 0.5),
    "lstm": lambda: (rand(2, 5, 3, seed=49), rnn_state(4, proj=2), "r", 2, True, 0.3, True, np.random.default_rng(5)),
    "gru": lambda: (rand(2, 5, 3, seed=49), rnn_state(3), "r", 2, True, 0.0, False, None, True),
    "xavier_uniform": lambda: (np.random.default_rng(6), (12, 4)),
    "embedding": lambda: (np.random.default_rng(7).integers(0, 9, (2, 5)), rand(9, 4, seed=52)),
    "embedding_weight": lambda: (np.random.default_rng(6), 9, 4, 2),
    "to_sequence": lambda: (X,),
    "scaled_dot_product_attention": lambda: (X[..., 0], X[..., 1], X[..., 2], 2, True),
    "multi_head_attention": lambda: (
        X[..., 0],
        X[..., 1],
        X[..., 2],
        2,
        rand(18, 6, seed=49),
        rand(18, seed=50),
        rand(6, 6, seed=51),
        None,
        True,
    ),
}


def test_every_public_function_has_a_sample():
    assert set(SAMPLES) == set(PUBLIC)


@pytest.mark.parametrize("name", PUBLIC)
def test_function_runs_standalone(name):
    ours = standalone(name)(*SAMPLES[name]())
    expected = getattr(K, name)(*SAMPLES[name]())
    exact(ours, expected)
    assert ours.dtype == np.float32
