"""The backward kernels of the NumPy runtime (archc/codegen/runtime/numpy_backward.py) against torch autograd.

For every layer kernel, hypothesis draws a configuration and float32 inputs; the
same computation runs in torch with requires_grad, is back-propagated from the
same random output gradient, and the NumPy gradients of the input and of every
parameter must equal torch's within 1e-4 relative: rtol 1e-4, with an absolute
slack of 1e-4 times the largest magnitude of torch's gradient, as torch's own
float32 result is no closer to the exact one where terms cancel (a norm over a few
nearly equal values). Pooling with max or min draws small integers too, so that windows
tie and the routing of ties is checked. A few kernels are also checked in float64
against central finite differences. The last tests check what the code generator
relies on: the module's functions use only numpy and the two runtime modules,
and every forward layer kernel has its backward.
"""

from __future__ import annotations

import ast
import builtins
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F  # noqa: N812 (the usual torch spelling)
from hypothesis import given, settings
from hypothesis import strategies as st

from archc.codegen.runtime import numpy_backward as B  # noqa: N812 (short, used on every line)
from archc.codegen.runtime import numpy_kernels as K  # noqa: N812

pytestmark = pytest.mark.usefixtures("one_thread")
EXAMPLES = settings(max_examples=30, deadline=None)


# -- helpers ---------------------------------------------------------------------------


def rand(rng, *shape, integers=False):
    if integers:  # few distinct values: max and min windows tie
        return rng.integers(-2, 3, shape).astype(np.float32)
    return rng.standard_normal(shape).astype(np.float32)


def close(ours, theirs):
    theirs = theirs.detach().numpy() if isinstance(theirs, torch.Tensor) else np.asarray(theirs)
    scale = float(np.abs(theirs).max()) if theirs.size else 0.0
    np.testing.assert_allclose(ours, theirs, rtol=1e-4, atol=1e-4 * scale, strict=True)


def autograd(function, *arrays, grad):
    """torch's output and the gradient of each array (None for a None) for output gradient grad."""
    tensors = [None if a is None else torch.tensor(a, requires_grad=True) for a in arrays]
    out = function(*tensors)
    out.backward(torch.from_numpy(grad))
    return out, [None if t is None else t.grad for t in tensors]


def check(ours, theirs):
    assert len(ours) == len(theirs)
    for mine, torchs in zip(ours, theirs):
        assert (mine is None) == (torchs is None)
        if mine is not None:
            close(mine, torchs)


def torch_pad(t, pairs, value=0.0):
    """F.pad with ((before, after), ...) per spatial dimension, first dimension first."""
    return F.pad(t, [p for pair in reversed(pairs) for p in pair], value=value)


def spatial(draw, nd, low=3, high=7):
    return tuple(draw(st.integers(low, high)) for _ in range(nd))


def per_dim(draw, nd, low, high):
    return tuple(draw(st.integers(low, high)) for _ in range(nd))


SEEDS = st.integers(0, 2**32 - 1)


# -- convolution -----------------------------------------------------------------------


@st.composite
def conv_cases(draw):
    nd = draw(st.integers(1, 3))
    groups = draw(st.sampled_from([1, 1, 2, 3]))
    depthwise = draw(st.booleans())
    if depthwise:  # one input channel per group, a channel multiplier of 1 or 2
        c = groups = draw(st.integers(2, 4))
        f = c * draw(st.integers(1, 2))
    else:
        c = groups * draw(st.integers(1, 3))
        f = groups * draw(st.integers(1, 3))
    kernel = per_dim(draw, nd, 1, 3)
    stride = per_dim(draw, nd, 1, 3)
    dilation = per_dim(draw, nd, 1, 2)
    if draw(st.booleans()):
        padding = tuple((draw(st.integers(0, 2)), draw(st.integers(0, 2))) for _ in range(nd))
    else:
        padding = per_dim(draw, nd, 0, 2)
    size = tuple(max(n, d * (k - 1) + 1) for n, k, d in zip(spatial(draw, nd), kernel, dilation))
    bias = draw(st.booleans())
    return nd, c, f, groups, kernel, stride, dilation, padding, size, bias


@EXAMPLES
@given(conv_cases(), SEEDS)
def test_conv_backward(case, seed):
    nd, c, f, groups, kernel, stride, dilation, padding, size, bias = case
    rng = np.random.default_rng(seed)
    x = rand(rng, 2, c, *size)
    w = rand(rng, f, c // groups, *kernel)
    b = rand(rng, f) if bias else None
    y = K.conv(x, w, b, stride, padding, dilation, groups)
    grad = rand(rng, *y.shape)
    pairs = K._pairs(padding, nd)

    def torch_conv(x, w, b):
        conv = getattr(F, f"conv{nd}d")
        return conv(torch_pad(x, pairs), w, b, stride, 0, dilation, groups)

    _, expected = autograd(torch_conv, x, w, b, grad=grad)
    check(B.conv_backward(grad, x, w, b, stride, padding, dilation, groups), expected)


@EXAMPLES
@given(st.data(), SEEDS)
def test_conv_transpose_backward(data, seed):
    draw = data.draw
    nd = draw(st.integers(1, 3))
    groups = draw(st.sampled_from([1, 2]))
    c, fg = groups * draw(st.integers(1, 3)), draw(st.integers(1, 3))
    kernel = per_dim(draw, nd, 1, 3)
    stride = per_dim(draw, nd, 1, 3)
    dilation = per_dim(draw, nd, 1, 2)
    padding = tuple(draw(st.integers(0, d * (k - 1) // 2)) for k, d in zip(kernel, dilation))
    extra = tuple(draw(st.integers(0, max(s, d) - 1)) for s, d in zip(stride, dilation))
    bias = draw(st.booleans())
    rng = np.random.default_rng(seed)
    x = rand(rng, 2, c, *spatial(draw, nd, 2, 4))
    w = rand(rng, c, fg, *kernel)
    b = rand(rng, fg * groups) if bias else None
    y = K.conv_transpose(x, w, b, stride, padding, extra, groups, dilation)
    grad = rand(rng, *y.shape)

    def torch_deconv(x, w, b):
        deconv = getattr(F, f"conv_transpose{nd}d")
        return deconv(x, w, b, stride, padding, extra, groups, dilation)

    _, expected = autograd(torch_deconv, x, w, b, grad=grad)
    check(B.conv_transpose_backward(grad, x, w, b, stride, padding, extra, groups, dilation), expected)


@EXAMPLES
@given(st.integers(1, 3), st.integers(1, 5), st.integers(1, 5), st.booleans(), SEEDS)
def test_linear_backward_any_rank(rank, n_in, n_out, bias, seed):
    rng = np.random.default_rng(seed)
    x = rand(rng, *rng.integers(1, 4, rank - 1), n_in)
    w = rand(rng, n_out, n_in)
    b = rand(rng, n_out) if bias else None
    grad = rand(rng, *x.shape[:-1], n_out)
    _, expected = autograd(F.linear, x, w, b, grad=grad)
    check(B.linear_backward(grad, x, w, b), expected)


# -- pooling ---------------------------------------------------------------------------


@st.composite
def pool_cases(draw, dilated=True):
    nd = draw(st.integers(1, 3))
    kernel = per_dim(draw, nd, 1, 3)
    stride = draw(st.sampled_from([None, per_dim(draw, nd, 1, 3)]))
    padding = tuple(draw(st.integers(0, k // 2)) for k in kernel)
    dilation = per_dim(draw, nd, 1, 2) if dilated else (1,) * nd
    size = tuple(max(n, d * (k - 1) + 1) for n, k, d in zip(spatial(draw, nd), kernel, dilation))
    return nd, kernel, stride, padding, dilation, draw(st.booleans()), size


@EXAMPLES
@given(pool_cases(), st.booleans(), st.booleans(), SEEDS)
def test_max_and_min_pool_backward(case, ties, minimum, seed):
    nd, kernel, stride, padding, dilation, ceil_mode, size = case
    rng = np.random.default_rng(seed)
    x = rand(rng, 2, 3, *size, integers=ties)
    forward = K.min_pool if minimum else K.max_pool
    grad = rand(rng, *forward(x, kernel, stride, padding, dilation, ceil_mode).shape)

    def torch_pool(x):
        pool = getattr(F, f"max_pool{nd}d")
        sign = -1 if minimum else 1
        return sign * pool(sign * x, kernel, stride, padding, dilation, ceil_mode)

    _, expected = autograd(torch_pool, x, grad=grad)
    backward = B.min_pool_backward if minimum else B.max_pool_backward
    check([backward(grad, x, kernel, stride, padding, dilation, ceil_mode)], expected)


@EXAMPLES
@given(pool_cases(dilated=False), st.booleans(), SEEDS)
def test_avg_pool_backward(case, count_include_pad, seed):
    nd, kernel, stride, padding, _, ceil_mode, size = case
    rng = np.random.default_rng(seed)
    x = rand(rng, 2, 3, *size)
    y = K.avg_pool(x, kernel, stride, padding, ceil_mode, count_include_pad)
    grad = rand(rng, *y.shape)

    def torch_pool(x):
        pool = getattr(F, f"avg_pool{nd}d")
        return pool(x, kernel, stride, padding, ceil_mode, count_include_pad)

    _, expected = autograd(torch_pool, x, grad=grad)
    mine = B.avg_pool_backward(grad, x.shape, kernel, stride, padding, ceil_mode, count_include_pad)
    check([mine], expected)


@EXAMPLES
@given(pool_cases(dilated=False), SEEDS)
def test_l2_pool_backward(case, seed):
    nd, kernel, stride, _, _, ceil_mode, size = case
    rng = np.random.default_rng(seed)
    x = rand(rng, 2, 3, *size)
    y = K.l2_pool(x, kernel, stride, ceil_mode)
    grad = rand(rng, *y.shape)

    def torch_pool(x):
        pool = getattr(F, f"lp_pool{nd}d")
        if nd == 1:  # lp_pool1d takes ints
            return pool(x, 2, kernel[0], stride and stride[0], ceil_mode)
        return pool(x, 2, kernel, stride, ceil_mode)

    _, expected = autograd(torch_pool, x, grad=grad)
    check([B.l2_pool_backward(grad, x, y, kernel, stride, ceil_mode)], expected)


@EXAMPLES
@given(st.data(), st.booleans(), SEEDS)
def test_adaptive_pool_backward(data, ties, seed):
    nd = data.draw(st.integers(1, 3))
    size = spatial(data.draw, nd, 1, 6)
    target = tuple(data.draw(st.sampled_from([None, *range(1, n + 3)])) for n in size)
    rng = np.random.default_rng(seed)
    x = rand(rng, 2, 3, *size, integers=ties)
    torch_size = tuple(n if t is None else t for n, t in zip(size, target))
    grad = rand(rng, 2, 3, *torch_size)
    for kind in ("avg", "max"):
        pool = getattr(F, f"adaptive_{kind}_pool{nd}d")
        _, expected = autograd(lambda x, pool=pool: pool(x, torch_size), x, grad=grad)
        if kind == "avg":
            mine = B.adaptive_avg_pool_backward(grad, x.shape, target)
        else:
            mine = B.adaptive_max_pool_backward(grad, x, target)
        check([mine], expected)


@EXAMPLES
@given(st.integers(1, 3), st.booleans(), SEEDS)
def test_global_pool_backward(nd, ties, seed):
    rng = np.random.default_rng(seed)
    x = rand(rng, 2, 3, *rng.integers(1, 5, nd), integers=ties)
    grad = rand(rng, 2, 3, *(1,) * nd)
    _, expected = autograd(lambda x: x.mean(dim=tuple(range(2, 2 + nd)), keepdim=True), x, grad=grad)
    check([B.global_avg_pool_backward(grad, x.shape)], expected)
    _, expected = autograd(lambda x: getattr(F, f"adaptive_max_pool{nd}d")(x, 1), x, grad=grad)
    check([B.global_max_pool_backward(grad, x)], expected)


# -- normalisation ---------------------------------------------------------------------


def bn_state(rng, c):
    return {
        "bn.weight": rand(rng, c),
        "bn.bias": rand(rng, c),
        "bn.running_mean": rand(rng, c),
        "bn.running_var": rand(rng, c) ** 2 + 0.5,
        "bn.num_batches_tracked": np.array(0, dtype=np.int64),
    }


@EXAMPLES
@given(st.integers(0, 3), st.booleans(), st.sampled_from([1e-5, 1e-3]), SEEDS)
def test_batch_norm_backward(nd, training, eps, seed):
    rng = np.random.default_rng(seed)
    x = rand(rng, 3, 4, *rng.integers(1, 5, nd)) * 3 + 1
    state = bn_state(rng, 4)
    grad = rand(rng, *x.shape)
    running = torch.tensor(state["bn.running_mean"]), torch.tensor(state["bn.running_var"])

    def torch_bn(x, w, b):
        return F.batch_norm(x, *running, w, b, training, 0.1, eps)

    _, expected = autograd(torch_bn, x, state["bn.weight"], state["bn.bias"], grad=grad)
    K.batch_norm(x, state, "bn", training, eps=eps)  # updates the running statistics, as in training
    check(B.batch_norm_backward(grad, x, state, "bn", training, eps), expected)


@EXAMPLES
@given(st.integers(1, 3), st.integers(1, 6), st.floats(1e-4, 1e-1), st.floats(0.5, 1.0), st.floats(0.5, 2), SEEDS)
def test_local_response_norm_backward(nd, size, alpha, beta, k, seed):
    rng = np.random.default_rng(seed)
    x = rand(rng, 2, 5, *rng.integers(1, 4, nd)) * 3
    grad = rand(rng, *x.shape)
    _, expected = autograd(lambda x: F.local_response_norm(x, size, alpha, beta, k), x, grad=grad)
    check([B.local_response_norm_backward(grad, x, size, alpha, beta, k)], expected)


@EXAMPLES
@given(st.integers(1, 3), st.booleans(), st.booleans(), st.booleans(), SEEDS)
def test_layer_norm_backward(last, channels, affine, bias, seed):
    rng = np.random.default_rng(seed)
    x = rand(rng, 2, 3, 4, 5) * 2 + 1
    grad = rand(rng, *x.shape)
    if channels:  # torchvision's LayerNorm2d: over the channels at every position
        axes, shape = (1,), (3,)
    else:
        axes, shape = tuple(range(4 - last, 4)), x.shape[4 - last :]
    w = rand(rng, *shape) if affine else None
    b = rand(rng, *shape) if affine and bias else None

    def torch_ln(x, w, b):
        if channels:
            return F.layer_norm(x.permute(0, 2, 3, 1), shape, w, b, 1e-5).permute(0, 3, 1, 2)
        return F.layer_norm(x, shape, w, b, 1e-5)

    _, expected = autograd(torch_ln, x, w, b, grad=grad)
    check(B.layer_norm_backward(grad, x, axes, w, b), expected)


@EXAMPLES
@given(st.integers(0, 3), st.sampled_from([1, 2, 3, 6]), st.booleans(), SEEDS)
def test_group_norm_backward(nd, groups, affine, seed):
    rng = np.random.default_rng(seed)
    x = rand(rng, 2, 6, *rng.integers(1, 4, nd)) + 0.5
    if x[0].size // groups < 4:  # two values normalise to +-1 whatever they are: no gradient to compare
        x = rand(rng, 2, 6, 4)
    w, b = (rand(rng, 6), rand(rng, 6)) if affine else (None, None)
    grad = rand(rng, *x.shape)
    _, expected = autograd(lambda x, w, b: F.group_norm(x, groups, w, b, 1e-5), x, w, b, grad=grad)
    check(B.group_norm_backward(grad, x, groups, w, b), expected)


@EXAMPLES
@given(st.integers(1, 3), st.booleans(), st.booleans(), st.booleans(), SEEDS)
def test_instance_norm_backward(nd, affine, track, training, seed):
    rng = np.random.default_rng(seed)
    x = rand(rng, 2, 3, *rng.integers(4 if nd == 1 else 2, 6, nd)) * 2  # 4 or more values each
    w, b = (rand(rng, 3), rand(rng, 3)) if affine else (None, None)
    mean, var = (rand(rng, 3), rand(rng, 3) ** 2 + 0.5) if track else (None, None)
    grad = rand(rng, *x.shape)
    running = [None if a is None else torch.tensor(a) for a in (mean, var)]

    def torch_in(x, w, b):
        return F.instance_norm(x, *running, w, b, training or not track, 0.1, 1e-5)

    _, expected = autograd(torch_in, x, w, b, grad=grad)
    check(B.instance_norm_backward(grad, x, w, b, mean, var, training), expected)


# -- activations -----------------------------------------------------------------------

ACTIVATIONS = {
    "relu": (F.relu, {}),
    "leaky_relu": (lambda x: F.leaky_relu(x, 0.2), {"alpha": 0.2}),
    "relu6": (F.relu6, {}),
    "elu": (lambda x: F.elu(x, 0.7), {"alpha": 0.7}),
    "gelu": (F.gelu, {}),
    "gelu-tanh": (lambda x: F.gelu(x, approximate="tanh"), {"approximate": "tanh"}),
    "sigmoid": (torch.sigmoid, {}),
    "tanh": (torch.tanh, {}),
    "silu": (F.silu, {}),
    "mish": (F.mish, {}),
    "hardswish": (F.hardswish, {}),
    "hardsigmoid": (F.hardsigmoid, {}),
}
KINKS = np.array([0, 6, -3, 3, -1e-3, 1e-3, 20, -20], np.float32)  # where the pieces meet, and far out


@pytest.mark.parametrize("name", sorted(ACTIVATIONS))
@settings(max_examples=25, deadline=None)
@given(seed=SEEDS, scale=st.sampled_from([1.0, 4.0]))
def test_activation_backward(name, seed, scale):
    function, options = ACTIVATIONS[name]
    rng = np.random.default_rng(seed)
    x = np.concatenate([rand(rng, 40) * scale, KINKS]).reshape(2, 3, 8)
    grad = rand(rng, *x.shape)
    _, expected = autograd(function, x, grad=grad)
    backward = getattr(B, name.split("-")[0] + "_backward")
    check([backward(grad, x, **options)], expected)


@EXAMPLES
@given(st.integers(0, 3), SEEDS)
def test_softmax_backward(axis, seed):
    rng = np.random.default_rng(seed)
    x = rand(rng, 2, 3, 4, 5) * 3
    grad = rand(rng, *x.shape)
    _, expected = autograd(lambda x: torch.softmax(x, axis), x, grad=grad)
    check([B.softmax_backward(grad, x, axis)], expected)


# -- masks, rearrangements and merges --------------------------------------------------


@EXAMPLES
@given(st.sampled_from([0.0, 0.3, 0.5, 1.0]), st.booleans(), st.sampled_from(["row", "batch"]), SEEDS)
def test_dropout_and_drop_path_backward(p, training, mode, seed):
    rng = np.random.default_rng(seed)
    x = rand(rng, 4, 3, 5)
    grad = rand(rng, *x.shape)
    for forward, twin, extra in (
        (B.dropout_forward, K.dropout, ()),
        (B.drop_path_forward, K.drop_path, (mode,)),
    ):
        if forward is B.drop_path_forward and p == 1.0:
            continue  # drop_path's p is below 1 (torchvision divides by 1 - p)
        y, mask = forward(x, p, training, np.random.default_rng(seed), *extra)
        np.testing.assert_allclose(y, twin(x, p, training, np.random.default_rng(seed), *extra), rtol=1e-6)
        if mask is None:
            assert not training or p == 0
            mask = np.ones_like(x)
        _, expected = autograd(lambda x, mask=mask: x * torch.from_numpy(mask), x, grad=grad)
        check([B.dropout_backward(grad, None if np.all(mask == 1) else mask)], expected)


@EXAMPLES
@given(st.integers(1, 3), st.data(), SEEDS)
def test_rearrangement_backward(nd, data, seed):
    rng = np.random.default_rng(seed)
    groups = data.draw(st.sampled_from([1, 2, 3]))
    x = rand(rng, 2, 6, *rng.integers(1, 4, nd))
    grad = rand(rng, *x.shape)
    _, expected = autograd(lambda x: F.channel_shuffle(x, groups), x, grad=grad)
    check([B.channel_shuffle_backward(grad, groups)], expected)

    scale = per_dim(data.draw, nd, 1, 3)
    y = K.upsample_nearest(x, scale)
    grad = rand(rng, *y.shape)
    _, expected = autograd(lambda x: F.interpolate(x, scale_factor=scale, mode="nearest"), x, grad=grad)
    check([B.upsample_nearest_backward(grad, scale)], expected)

    block = data.draw(st.integers(1, 3))
    x = rand(rng, 2, 3, block * 2, block * 3)
    grad = rand(rng, 2, 3 * block * block, 2, 3)
    _, expected = autograd(lambda x: F.pixel_unshuffle(x, block), x, grad=grad)
    check([B.space_to_depth_backward(grad, block)], expected)

    padding = tuple((data.draw(st.integers(0, 2)), data.draw(st.integers(0, 2))) for _ in range(2))
    grad = rand(rng, *K.pad(x, padding).shape)
    _, expected = autograd(lambda x: torch_pad(x, padding), x, grad=grad)
    check([B.pad_backward(grad, padding)], expected)

    order = tuple(data.draw(st.permutations(range(1, 4))))
    grad = rand(rng, *x.transpose(0, *order).shape)
    _, expected = autograd(lambda x: x.permute(0, *order), x, grad=grad)
    check([B.permute_backward(grad, (0, *order))], expected)
    grad = rand(rng, 2, x[0].size)
    _, expected = autograd(lambda x: x.reshape(2, -1), x, grad=grad)
    check([B.reshape_backward(grad, x.shape)], expected)


@EXAMPLES
@given(st.data(), SEEDS)
def test_slice_and_concat_backward(data, seed):
    rng = np.random.default_rng(seed)
    sizes = data.draw(st.lists(st.integers(1, 4), min_size=1, max_size=4))
    parts = [rand(rng, 2, c, 3, 4) for c in sizes]
    grad = rand(rng, 2, sum(sizes), 3, 4)
    _, expected = autograd(lambda *t: torch.cat(t, 1), *parts, grad=grad)
    check(B.concat_backward(grad, sizes), expected)

    x = rand(rng, 2, 6, 7, 8)
    # a chunk, a crop, and a shortcut's strided sample of its larger input
    start, stop = data.draw(st.integers(0, 5)), data.draw(st.integers(6, 7))
    step = data.draw(st.integers(1, 3))
    index = (slice(None), slice(0, 3 * data.draw(st.integers(1, 2))), slice(start, stop), slice(None, None, step))
    grad = rand(rng, *x[index].shape)
    _, expected = autograd(lambda x: x[index], x, grad=grad)
    check([B.slice_backward(grad, x.shape, index)], expected)


BROADCAST = [
    ((2, 3, 4, 5), (2, 3, 4, 5)),
    ((2, 3, 4, 5), (2, 3, 1, 1)),  # a squeeze-excitation gate
    ((3, 1, 1), (2, 3, 4, 5)),  # layer_scale's gamma times x
    ((2, 1, 4, 1), (1, 3, 1, 5)),
    ((5,), (2, 3, 4, 5)),
]


@pytest.mark.parametrize(("a_shape", "b_shape"), BROADCAST)
@settings(max_examples=10, deadline=None)
@given(seed=SEEDS)
def test_arithmetic_backward_broadcasts(a_shape, b_shape, seed):
    rng = np.random.default_rng(seed)
    a, b = rand(rng, *a_shape), rand(rng, *b_shape)
    b = np.where(np.abs(b) < 0.3, 0.3, b).astype(np.float32)  # a divisor away from 0
    grad = rand(rng, *np.broadcast_shapes(a_shape, b_shape))
    _, expected = autograd(torch.add, a, b, grad=grad)
    check(B.add_backward(grad, a.shape, b.shape), expected)
    _, expected = autograd(torch.sub, a, b, grad=grad)
    check(B.sub_backward(grad, a.shape, b.shape), expected)
    _, expected = autograd(torch.mul, a, b, grad=grad)
    check(B.mul_backward(grad, a, b), expected)
    _, expected = autograd(torch.div, a, b, grad=grad)
    check(B.div_backward(grad, a, b), expected)


def test_add_backward_of_many_inputs():
    rng = np.random.default_rng(0)
    terms = [rand(rng, 2, 3, 4) for _ in range(4)]
    grad = rand(rng, 2, 3, 4)
    _, expected = autograd(lambda *t: sum(t), *terms, grad=grad)
    check(B.add_backward(grad, *(t.shape for t in terms)), expected)


# -- finite differences in float64 -----------------------------------------------------


def numeric_gradient(function, x, grad, h=1e-6):
    """d(sum(function(x) * grad)) / dx by central differences."""
    out = np.zeros_like(x)
    for i in np.ndindex(x.shape):
        saved = x[i]
        x[i] = saved + h
        up = float((function(x) * grad).sum())
        x[i] = saved - h
        down = float((function(x) * grad).sum())
        x[i] = saved
        out[i] = (up - down) / (2 * h)
    return out


def f64(rng, *shape):
    return rng.standard_normal(shape)


def fd_cases():
    rng = np.random.default_rng(7)
    x = f64(rng, 2, 3, 5, 4)
    w = f64(rng, 4, 3, 3, 2)
    conv = dict(stride=(2, 1), padding=((1, 0), (0, 1)), dilation=(1, 2))
    state = {
        "bn.weight": f64(rng, 3),
        "bn.bias": f64(rng, 3),
        "bn.running_mean": np.zeros(3),
        "bn.running_var": np.ones(3),
        "bn.num_batches_tracked": np.array(0),
    }
    ln_w = f64(rng, 3)
    return {
        "conv input": (
            lambda x: K.conv(x, w, None, **conv),
            lambda g: B.conv_backward(g, x, w, None, **conv)[0],
        ),
        "conv weight": (
            lambda w_: K.conv(x, w_, None, **conv),
            lambda g: B.conv_backward(g, x, w, None, **conv)[1],
            w,
        ),
        "batch_norm": (
            lambda x: K.batch_norm(x, {**state, "bn.num_batches_tracked": np.array(0)}, "bn", True),
            lambda g: B.batch_norm_backward(g, x, state, "bn", True)[0],
        ),
        "lrn": (
            lambda x: K.local_response_norm(x, 3, 0.1, 0.75, 1.0),
            lambda g: B.local_response_norm_backward(g, x, 3, 0.1, 0.75, 1.0),
        ),
        "layer_norm": (
            lambda x: K.layer_norm(x, (1,), ln_w),
            lambda g: B.layer_norm_backward(g, x, (1,), ln_w)[0],
        ),
        "l2_pool": (
            lambda x: K.l2_pool(x, 2, 1, True),
            lambda g: B.l2_pool_backward(g, x, K.l2_pool(x, 2, 1, True), 2, 1, True),
        ),
        "avg_pool": (
            lambda x: K.avg_pool(x, 3, 2, 1, True, False),
            lambda g: B.avg_pool_backward(g, x.shape, 3, 2, 1, True, False),
        ),
        "softmax": (lambda x: K.softmax(x, 1), lambda g: B.softmax_backward(g, x, 1)),
        "gelu": (K.gelu, lambda g: B.gelu_backward(g, x)),
        "mish": (K.mish, lambda g: B.mish_backward(g, x)),
    }, x


FD_CASES, FD_X = fd_cases()


@pytest.mark.parametrize("name", sorted(FD_CASES))
def test_finite_differences_float64(name):
    forward, backward, *point = FD_CASES[name]
    point = (point[0] if point else FD_X).copy()
    grad = np.random.default_rng(8).standard_normal(forward(point).shape)
    ours = backward(grad)
    assert ours.dtype == np.float64
    # the erf behind exact gelu is a fit with fractional error 1.2e-7
    tolerance = 1e-6 if name == "gelu" else 1e-7
    np.testing.assert_allclose(ours, numeric_gradient(forward, point, grad), rtol=tolerance, atol=tolerance)


# -- what the code generator relies on -------------------------------------------------

SOURCE = Path(B.__file__).read_text()
TREE = ast.parse(SOURCE)
FUNCTIONS = {node.name: node for node in TREE.body if isinstance(node, ast.FunctionDef)}
KERNEL_SOURCE = Path(K.__file__).read_text()
KERNEL_FUNCTIONS = {n.name: n for n in ast.parse(KERNEL_SOURCE).body if isinstance(n, ast.FunctionDef)}
BOTH = {**KERNEL_FUNCTIONS, **FUNCTIONS}


def free_names(function):
    bound = {a.arg for a in ast.walk(function.args) if isinstance(a, ast.arg)}
    bound |= {n.id for n in ast.walk(function) if isinstance(n, ast.Name) and isinstance(n.ctx, ast.Store)}
    used = {n.id for n in ast.walk(function) if isinstance(n, ast.Name) and isinstance(n.ctx, ast.Load)}
    return used - bound - set(dir(builtins))


def test_module_holds_only_numpy_the_kernels_and_functions():
    assert ast.get_docstring(TREE)
    imports = [node for node in TREE.body if isinstance(node, ast.Import | ast.ImportFrom)]
    assert ast.unparse(imports[0]) == "import numpy as np"
    assert [(node.module, node.level) for node in imports[1:]] == [("numpy_kernels", 1)]
    for node in TREE.body[1:]:
        # functions, and the classes of the training API (SGD, Adam, ...), which the generator copies alike
        assert isinstance(node, ast.Import | ast.ImportFrom | ast.FunctionDef | ast.ClassDef), ast.unparse(node)[:60]
    assert not FUNCTIONS.keys() & KERNEL_FUNCTIONS.keys(), "a name in both modules would be copied ambiguously"


@pytest.mark.parametrize("name", sorted(FUNCTIONS))
def test_function_is_self_contained(name):
    function = FUNCTIONS[name]
    assert ast.get_docstring(function), f"{name} has no docstring"
    assert free_names(function) - BOTH.keys() <= {"np"}


def test_functions_run_copied_out_with_what_they_call():
    """As a generated file holds them: the source of the functions, in a namespace holding only np."""
    namespace = {"np": np}
    for node in BOTH.values():
        source = KERNEL_SOURCE if node.name in KERNEL_FUNCTIONS else SOURCE
        exec(compile(ast.get_source_segment(source, node), "<generated>", "exec"), namespace)
    rng = np.random.default_rng(0)
    x, w = rand(rng, 2, 4, 6, 5), rand(rng, 6, 2, 3, 2)
    grad = rand(rng, *K.conv(x, w, None, 2, 1, 1, 2).shape)
    for ours, expected in zip(
        namespace["conv_backward"](grad, x, w, None, 2, 1, 1, 2), B.conv_backward(grad, x, w, None, 2, 1, 1, 2)
    ):
        np.testing.assert_array_equal(ours, expected)


def layer_kernels():
    """The public forward kernels that are layers: not erf (a helper of gelu) and not the
    initialisers, which take the random generator first."""
    return sorted(
        name
        for name, node in KERNEL_FUNCTIONS.items()
        if not name.startswith("_") and name != "erf" and node.args.args[0].arg != "rng"
    )


@pytest.mark.parametrize("name", layer_kernels())
def test_every_layer_kernel_has_a_backward(name):
    if name in ("dropout", "drop_path"):  # the mask comes from the training forward
        assert f"{name}_forward" in FUNCTIONS and "dropout_backward" in FUNCTIONS
    else:
        assert f"{name}_backward" in FUNCTIONS


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_gradients_keep_the_dtype(dtype):
    rng = np.random.default_rng(1)
    x, w, b = (a.astype(dtype) for a in (rand(rng, 2, 4, 5, 5), rand(rng, 3, 4, 3, 3), rand(rng, 3)))
    grad = rand(rng, 2, 3, 3, 3).astype(dtype)
    assert {a.dtype for a in B.conv_backward(grad, x, w, b)} == {np.dtype(dtype)}
    assert B.max_pool_backward(grad, x[:, :3], 3, 1, 0).dtype == dtype
    for name in ACTIVATIONS:
        backward = getattr(B, name.split("-")[0] + "_backward")
        assert backward(x, x, **ACTIVATIONS[name][1]).dtype == dtype, name


def test_the_generator_copies_backward_kernels_with_what_they_call():
    """numpy_target takes functions from both runtime modules: a backward's source comes with the
    forward kernels it calls (conv_backward -> _taps, _windows, pad, ...) and runs on numpy alone."""
    from archc.codegen import numpy_target

    needed = numpy_target._needed("g, dw, db = conv_backward(g, x, s['conv.weight'], None, 2, 1)")
    assert {"conv_backward", "_conv_input_grad", "_conv_weight_grad", "_taps", "_windows", "pad"} <= set(needed)
    assert "conv" not in needed  # only what is called
    namespace = {"np": np}
    exec("\n\n".join(numpy_target._kernels()[name][0] for name in needed), namespace)
    rng = np.random.default_rng(3)
    x, w = rand(rng, 2, 3, 7, 6), rand(rng, 4, 3, 3, 3)
    grad = rand(rng, *K.conv(x, w, None, 2, 1).shape)
    for ours, expected in zip(
        namespace["conv_backward"](grad, x, w, None, 2, 1), B.conv_backward(grad, x, w, None, 2, 1)
    ):
        assert (ours is None) == (expected is None)
        if ours is not None:
            np.testing.assert_array_equal(ours, expected)
