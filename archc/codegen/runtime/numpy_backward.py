"""The training half of the NumPy runtime: backward kernels, losses and optimisers.

Like numpy_kernels.py, whose forward kernels these mirror, this module is source
that generated models carry: the generator copies each top-level function a
model needs, with the functions it calls (found by name, in this module or in
numpy_kernels.py), into a file whose only import is numpy. So every function
uses nothing but `np`, builtins and the functions of the two modules; the import
below exists only so that the module also runs as ordinary Python.

What a backward takes. `<kernel>_backward(grad, saved, *settings)` takes the
gradient of the loss with respect to the kernel's output, then what the forward
pass has to keep for it, then the forward's own settings, spelled as the forward
spells them, so one backward line per layer mirrors its forward line:

- the input x, when the gradient depends on its values: conv, linear, max/min
  and adaptive/global max pooling, the norms, LRN, every activation, mul, div;
- only the input's shape when it does not: avg and adaptive/global avg pooling,
  slices, reshapes, add, sub;
- the output too where it saves recomputing a root: l2_pool;
- the mask, for dropout and drop_path, whose forward cannot be replayed: their
  siblings dropout_forward and drop_path_forward return (output, mask) and are
  what a training model calls instead of dropout and drop_path.

What a backward returns. The input's gradient; with parameters, a tuple of the
input's gradient and each parameter's, in the order the forward takes them,
None for a parameter passed as None; for several inputs, one gradient each.
Gradients have the shapes and dtype of what they are gradients of; a backward
never writes into its arguments. Statistics are taken in float64, as the
forward takes them.

Losses return (loss as a Python float, gradient of the logits), with torch's
mean reduction. Optimisers update a dict of arrays keyed by state-dict names
in place, from a dict of gradients under the same names, as torch.optim does.
"""

import numpy as np

from .numpy_kernels import (
    _adaptive_mask,
    _attention_weights,
    _avg_divisor,
    _batch_last_columns,
    _centred,
    _chunks,
    _gru_step,
    _heads,
    _lstm_step,
    _pairs,
    _per_dim,
    _pool_input,
    _recurrent,
    _taps,
    _unheads,
    _windows,
    channel_shuffle,
    conv,
    erf,
    l2_pool,
    linear,
    pad,
    sigmoid,
    softmax,
)

# -- shapes and broadcasting ---------------------------------------------------------


def _sum_to(grad, shape):
    """grad summed over the axes that broadcasting added or stretched, to `shape`."""
    extra = grad.ndim - len(shape)
    if extra:
        grad = grad.sum(axis=tuple(range(extra)))
    stretched = tuple(a for a, n in enumerate(shape) if n == 1 and grad.shape[a] != 1)
    if stretched:
        grad = grad.sum(axis=stretched, keepdims=True)
    return grad


def add_backward(grad, *shapes):
    """a + b + ...: each input gets grad, summed over the axes it was broadcast on."""
    return tuple(_sum_to(grad, shape) for shape in shapes)


def sub_backward(grad, a_shape, b_shape):
    """a - b: grad for a, -grad for b, each summed to its shape."""
    return _sum_to(grad, a_shape), _sum_to(-grad, b_shape)


def mul_backward(grad, a, b):
    """a * b: grad * b for a and grad * a for b, each summed to its shape.

    Also layer_scale's backward, whose output is gamma * x: (d gamma, dx).
    """
    return _sum_to(grad * b, np.shape(a)), _sum_to(grad * a, np.shape(b))


def div_backward(grad, a, b):
    """a / b: grad / b for a, -grad * (a / b) / b for b (in torch's order)."""
    return _sum_to(grad / b, np.shape(a)), _sum_to(-grad * (a / b) / b, np.shape(b))


def concat_backward(grad, sizes, axis=1, expanded=()):
    """np.concatenate along axis: grad cut back into pieces of the inputs' sizes; the
    pieces of the inputs `expanded` over the batch (a param) summed over it."""
    pieces = np.split(grad, np.cumsum(sizes)[:-1], axis=axis)
    return tuple(
        p.sum(axis=0, keepdims=True) if i in expanded else p
        for i, p in enumerate(pieces)
    )


def slice_backward(grad, shape, index):
    """x[index] (crop, chunk, a shortcut's sampled input): grad put back in zeros.

    index is what the forward indexed with, e.g. (slice(None), slice(64, 128)); the
    positions it picks are distinct, so grad is written, not added. A shortcut's
    input with fewer channels than the sum, zero-padded, gets grad[:, :channels].
    """
    dx = np.zeros(shape, grad.dtype)
    dx[index] = grad
    return dx


def pad_backward(grad, padding):
    """pad (zero padding, any value): the padded border cut off again."""
    sides = _pairs(padding, grad.ndim - 2)
    crop = tuple(
        slice(before, n - after) for n, (before, after) in zip(grad.shape[2:], sides)
    )
    return grad[(slice(None), slice(None), *crop)]


def reshape_backward(grad, shape):
    """x.reshape(...) and flatten: grad given the input's shape back."""
    return grad.reshape(shape)


def permute_backward(grad, axes):
    """x.transpose(axes): grad transposed by the inverse order."""
    return grad.transpose(np.argsort(axes))


def broadcast_backward(grad, shape):
    """np.broadcast_to(x, ...), a learned tensor expanded over the batch.

    grad summed back to x's shape."""
    return _sum_to(grad, shape)


def to_sequence_backward(grad, shape):
    """to_sequence: the tokens' gradient (N, positions, C) as the map (N, C, ...)."""
    return grad.transpose(0, 2, 1).reshape(shape)


def mean_backward(grad, shape, axis):
    """x.mean(axis=axis): each value gets its mean's gradient over the axis's size."""
    return np.broadcast_to(np.expand_dims(grad, axis) / shape[axis], shape).copy()


def position_embedding_backward(grad, shape, num):
    """position_embedding: (the input's gradient, zeros as it reads only the length; the
    weight's gradient (num, dim), rows 0 to L - 1 summed over the batch)."""
    dweight = np.zeros((num, grad.shape[-1]), grad.dtype)
    dweight[: grad.shape[1]] = grad.sum(axis=0)
    return np.zeros(shape, grad.dtype), dweight


def embedding_backward(grad, ids, num, padding_idx=None):
    """embedding's weight gradient (num, dim), as torch's nn.Embedding.

    Each token's gradient is added into its id's row, none into the padding id's;
    the ids have none."""
    dweight = np.zeros((num, grad.shape[-1]), grad.dtype)
    np.add.at(dweight, ids.reshape(-1), grad.reshape(-1, grad.shape[-1]))
    if padding_idx is not None:
        dweight[padding_idx] = 0
    return dweight


# -- convolution ---------------------------------------------------------------------


def _conv_weight_grad(x, grad, kernel, stride, padding, dilation, groups):
    """The weight gradient (F, C // groups, *kernel) of conv(x) given its output's grad.

    The correlation of the padded input with the output gradient: per group a
    matrix product of grad, (F / groups, batch * positions), with the windows of x
    unrolled into columns, (batch * positions, C / groups * kernel volume), built in
    chunks as the forward conv builds them (_chunks), or with the batch last where
    output rows are short (_batch_last_columns). Depthwise layers (one input
    channel per group) instead sum each kernel tap's shifted view of x times grad,
    and a one-channel x at stride 1 takes a product per tap (_shifted_weight_grad).
    Only as many windows as grad has positions are read, so a transposed conv's
    output padding, which no window of its adjoint reaches, is skipped.
    """
    nd = x.ndim - 2
    n, c = x.shape[:2]
    f = grad.shape[1]
    per_group = c // groups
    out = grad.shape[2:]
    x = pad(x, padding)
    dtype = np.result_type(x.dtype, grad.dtype)
    if per_group == 1 and groups > 1:
        if f != c:  # output channel j read input channel j // (f // c)
            x = np.repeat(x, f // c, axis=1)
        dw = np.empty((f, 1, *kernel), dtype)
        positions = "xyz"[:nd]
        terms = f"nc{positions},nc{positions}->c"
        for index, tap in _taps(x, kernel, stride, dilation, out):
            dw[(slice(None), 0, *index)] = np.einsum(terms, tap, grad)
        return dw
    if c == 1 and all(s == 1 for s in stride):
        return _shifted_weight_grad(x, grad, kernel, dilation)
    volume = int(np.prod(kernel))
    samples, rows = _chunks(n, out, c * volume * x.itemsize)
    if groups == 1 and samples == n and min(out) > 0 and out[-1] < 32:
        columns = _batch_last_columns(x, kernel, stride, dilation, out)
        rows = np.ascontiguousarray(np.moveaxis(grad, 0, -1)).reshape(f, -1)
        return np.matmul(rows, columns.T).astype(dtype).reshape(f, c, *kernel)
    windows = _windows(x, kernel, stride, dilation)
    windows = windows[(slice(None), slice(None), *(slice(0, o) for o in out))]
    order = (1, *range(2 + nd, 2 + 2 * nd), 0, *range(2, 2 + nd))
    dw = np.zeros((groups, f // groups, per_group * volume), dtype)
    for first in range(0, n, samples):
        for top in range(0, out[0], rows):
            part = windows[first : first + samples, :, top : top + rows]
            columns = part.transpose(order).reshape(groups, per_group * volume, -1)
            band = grad[first : first + samples, :, top : top + rows].swapaxes(0, 1)
            dw += np.matmul(
                band.reshape(groups, f // groups, -1), columns.swapaxes(1, 2)
            )
    return dw.reshape(f, per_group, *kernel)


def _flat_offsets(spatial, kernel, dilation):
    """(tap, offset) for each kernel tap: how far it reads from its window's start in
    a map of size `spatial` flattened row-major."""
    steps = np.cumprod((1, *spatial[:0:-1]))[::-1]
    for index in np.ndindex(*kernel):
        offset = sum(i * d * step for i, d, step in zip(index, dilation, steps))
        yield index, int(offset)


def _shifted_weight_grad(x, grad, kernel, dilation):
    """The weight gradient of a stride-1 conv of a one-channel padded x, with no im2col.

    With x's maps flattened, (1, batch * positions), a stride-1 window starting at
    position q reads tap (i, j) at q + i*d*W + j*d, for every window of the batch
    alike. So with grad laid out on the same grid (at each window's start, zeros
    where no window starts), the tap's gradient is one matrix-vector product of
    grad, (F, K), and x shifted by that offset, a view. For one channel this beats
    unrolling the windows 9 to 1 (LeNet-5's first layer): the unrolled product,
    (F, K) @ (K, taps), is too thin for BLAS to be fast, and the unrolling costs
    more than the product. With more channels the unrolled product is as fast as
    these, which moreover pay for the zeros, (W + k - 1) / W more work per axis.
    """
    n = x.shape[0]
    f = grad.shape[1]
    spatial = x.shape[2:]
    flat = x.reshape(-1)
    grid = np.zeros((f, n, *spatial), grad.dtype)
    grid[(slice(None), slice(None), *(slice(0, o) for o in grad.shape[2:]))] = (
        grad.swapaxes(0, 1)
    )
    offsets = list(_flat_offsets(spatial, kernel, dilation))
    length = flat.size - offsets[-1][1]  # the last window starts here at the latest
    grid = grid.reshape(f, -1)[:, :length]
    dw = np.empty((f, 1, *kernel), np.result_type(x.dtype, grad.dtype))
    for index, offset in offsets:
        dw[(slice(None), 0, *index)] = grid @ flat[offset : offset + length]
    return dw


def _inner_taps(shape, kernel, stride, dilation, out, origin):
    """_taps for an unpadded x of `shape`: (index, windows, places) for each kernel tap.

    Window j's tap i along an axis reads position origin + i*d + j*s, origin being
    where the first window starts (negative inside the padding). Only the windows
    whose tap lands inside x are kept: `windows` slices them out of the windows'
    axes and `places` out of x. A tap no window lands inside is left out. Slices,
    not views, so that every chunk of samples of a band of rows shares them.
    """
    taps = []
    for index in np.ndindex(*kernel):
        windows, places = [], []
        for i, d, s, m, n, start in zip(
            index, dilation, stride, out, shape[2:], origin
        ):
            p = start + i * d  # where window 0's tap lands
            first, last = max(0, -(p // s)), min(m, (n - 1 - p) // s + 1)
            if last <= first:
                break
            windows.append(slice(first, last))
            places.append(slice(p + first * s, p + (last - 1) * s + 1, s))
        else:
            taps.append((index, tuple(windows), (slice(None), slice(None), *places)))
    return taps


def _conv_input_grad(grad, weight, shape, stride, padding, dilation, groups):
    """The input gradient (shape) of conv given its output's grad: im2col run backwards.

    Per group, the weight's transpose times grad gives each window's column of
    input gradients, (C / groups * kernel volume, batch * positions), and each
    kernel tap adds its rows into a strided view of the input (col2im), all but
    the rows that fall in the padding (_inner_taps): the result is the input's
    own contiguous array, not a view into a padded one that the next layer's
    backward would have to copy. The products cost what the forward's do,
    whatever the stride, and are made as the forward's chunks are (_chunks): a
    layer's whole batch at once unless its columns take over 64 MiB. Depthwise
    layers add each tap's weight times grad into the shifted view instead, and
    short output rows take _batch_last_input_grad.
    """
    nd = len(shape) - 2
    n, c = shape[:2]
    f, per_group = weight.shape[:2]
    kernel = weight.shape[2:]
    out = grad.shape[2:]
    origin = [-before for before, _ in _pairs(padding, nd)]
    dx = np.zeros(shape, grad.dtype)
    if per_group == 1 and groups > 1:
        grad = grad.reshape(
            n, c, f // c, *out
        )  # output channel j read input j // (f // c)
        positions = "xyz"[:nd]
        terms = f"ncm{positions},cm->nc{positions}"
        taps = _inner_taps(shape, kernel, stride, dilation, out, origin)
        for index, windows, places in taps:
            scale = weight[(slice(None), 0, *index)].reshape(c, -1)
            dx[places] += np.einsum(terms, grad[(slice(None),) * 3 + windows], scale)
        return dx
    volume = int(np.prod(kernel))
    samples, rows = _chunks(n, out, c * volume * grad.itemsize)
    if groups == 1 and samples == n and min(out) > 0 and out[-1] < 32:
        return _batch_last_input_grad(grad, weight, shape, stride, dilation, origin)
    weights = weight.reshape(groups, f // groups, per_group * volume).swapaxes(1, 2)
    bands = {}  # the taps of each band of rows, alike for every chunk of samples
    for first in range(0, n, samples):
        for top in range(0, out[0], rows):
            band = grad[first : first + samples, :, top : top + rows].swapaxes(0, 1)
            columns = np.matmul(weights, band.reshape(groups, f // groups, -1))
            size = band.shape[1:]  # (samples, rows, *out[1:]) of this chunk
            columns = columns.reshape(c, *kernel, *size)
            if top not in bands:
                start = [origin[0] + top * stride[0], *origin[1:]]
                bands[top] = _inner_taps(
                    shape, kernel, stride, dilation, size[1:], start
                )
            part = dx[first : first + samples]
            for index, windows, places in bands[top]:
                block = columns[(slice(None), *index, slice(None), *windows)]
                part[places] += block.swapaxes(0, 1)
    return dx


def _batch_last_input_grad(grad, weight, shape, stride, dilation, origin):
    """_conv_input_grad of a dense conv whose output rows are short (LeNet-5's 10 x 10
    maps): the same product, with the batch as the last axis of grad's columns and
    of dx. col2im's adds then run along rows of (output width x batch) values
    instead of rows of output width, 10 in LeNet-5's third layer, where numpy's
    per-row overhead outweighed the adding (1.7x faster there). Maps of 56 and more
    lose more to the two transposes than they gain; under 32 they do not.
    """
    n, c = shape[:2]
    f, kernel, out = weight.shape[0], weight.shape[2:], grad.shape[2:]
    rows = np.ascontiguousarray(np.moveaxis(grad, 0, -1)).reshape(f, -1)  # (F, *out, N)
    columns = np.matmul(weight.reshape(f, -1).T, rows).reshape(c, *kernel, *out, n)
    dx = np.zeros((c, *shape[2:], n), grad.dtype)
    for index, windows, places in _inner_taps(
        shape, kernel, stride, dilation, out, origin
    ):
        dx[(slice(None), *places[2:])] += columns[(slice(None), *index, *windows)]
    return np.ascontiguousarray(np.moveaxis(dx, -1, 0))


def conv_backward(
    grad,
    x,
    weight,
    bias=None,
    stride=1,
    padding=0,
    dilation=1,
    groups=1,
    input_grad=True,
):
    """conv's backward: (dx, dweight, dbias), dbias None without a bias.

    The input gradient is the full convolution of grad with the flipped filters,
    computed as im2col backwards (_conv_input_grad); the weight gradient is the
    correlation of the input with grad (_conv_weight_grad). input_grad=False
    skips dx (None) for a network's first layer, whose input needs none: for a
    7x7 stem on 224x224 images that is half of its backward.
    """
    nd = x.ndim - 2
    kernel = weight.shape[2:]
    stride = _per_dim(stride, nd)
    dilation = _per_dim(dilation, nd)
    dx = None
    if input_grad:
        dx = _conv_input_grad(grad, weight, x.shape, stride, padding, dilation, groups)
        dx = dx.astype(x.dtype, copy=False)
    dw = _conv_weight_grad(x, grad, kernel, stride, padding, dilation, groups)
    db = None if bias is None else grad.sum(axis=(0, *range(2, grad.ndim)))
    return dx, dw.astype(weight.dtype, copy=False), db


def conv_transpose_backward(
    grad,
    x,
    weight,
    bias=None,
    stride=1,
    padding=0,
    output_padding=0,
    groups=1,
    dilation=1,
):
    """conv_transpose's backward: (dx, dweight, dbias), dbias None without a bias.

    A transposed convolution is the adjoint of the convolution with the same weight,
    so the input gradient is that convolution of grad, and the weight gradient is
    the convolution weight gradient with the roles of input and output swapped.
    """
    nd = x.ndim - 2
    kernel = weight.shape[2:]
    stride = _per_dim(stride, nd)
    dilation = _per_dim(dilation, nd)
    dx = conv(grad, weight, None, stride, padding, dilation, groups)
    dx = dx[(slice(None), slice(None), *(slice(0, n) for n in x.shape[2:]))]
    dw = _conv_weight_grad(grad, x, kernel, stride, padding, dilation, groups)
    db = None if bias is None else grad.sum(axis=(0, *range(2, grad.ndim)))
    return dx.astype(x.dtype, copy=False), dw.astype(weight.dtype, copy=False), db


def linear_backward(grad, x, weight, bias=None):
    """linear's backward over any number of leading axes: (dx, dweight, dbias)."""
    rows = grad.reshape(-1, grad.shape[-1])
    dw = rows.T @ x.reshape(-1, x.shape[-1])
    db = None if bias is None else rows.sum(axis=0)
    return grad @ weight, dw, db


def linear_in_out_backward(grad, x, weight, bias=None):
    """linear_in_out's backward: (dx, dweight of (in, out), dbias)."""
    rows = grad.reshape(-1, grad.shape[-1])
    dw = x.reshape(-1, x.shape[-1]).T @ rows
    db = None if bias is None else rows.sum(axis=0)
    return grad @ weight.T, dw, db


# -- pooling -------------------------------------------------------------------------


def _pool_settings(nd, kernel_size, stride):
    """kernel and stride per spatial dimension; stride None means the kernel."""
    kernel = _per_dim(kernel_size, nd)
    return kernel, kernel if stride is None else _per_dim(stride, nd)


def _unpad(padded, shape, padding):
    """The part of a padded array that is the unpadded input's (conv, pooling)."""
    sides = _pairs(padding, len(shape) - 2)
    crop = tuple(slice(before, before + n) for n, (before, _) in zip(shape[2:], sides))
    return padded[(slice(None), slice(None), *crop)]


def _phases(x, stride):
    """x (N, C, *sizes) split by position modulo stride: (N, C, *stride, *sizes/stride).

    Phase (a, b) of a 2-D map holds x[:, :, a::s, b::s], contiguously. At each kernel
    tap, the windows of a strided pooling read one phase at consecutive positions
    (_phase_taps), so the passes over the taps run along contiguous rows instead of
    strided ones. Each size must be a multiple of its stride.
    """
    n, c = x.shape[:2]
    nd = len(stride)
    split = [n, c]
    for size, s in zip(x.shape[2:], stride):
        split += [size // s, s]
    order = (0, 1, *range(3, 2 + 2 * nd, 2), *range(2, 2 + 2 * nd, 2))
    return np.ascontiguousarray(x.reshape(split).transpose(order))


def _unphased(phases, stride, shape, padding):
    """The input-sized array (shape) inside the padded one _phases split.

    Each phase is copied into its strided place, cut to the input: copying in the
    result's order instead, which takes its values from every phase in turn, takes
    3x as long.
    """
    nd = len(stride)
    out = np.empty(shape, phases.dtype)
    for phase in np.ndindex(*stride):
        source, target = [], []
        for a, s, m, n, (before, _) in zip(
            phase, stride, phases.shape[2 + nd :], shape[2:], _pairs(padding, nd)
        ):
            first = max(0, -(-(before - a) // s))  # r * s + a - before >= 0
            last = min(m, (n - 1 + before - a) // s + 1)  # ... < n
            source.append(slice(first, max(first, last)))
            target.append(slice(first * s + a - before, n, s))
        out[(slice(None), slice(None), *target)] = phases[
            (slice(None), slice(None), *phase, *source)
        ]
    return out


def _phase_taps(phases, kernel, stride, dilation, out):
    """_taps on _phases(x, stride): for each kernel position, the view (N, C, *out).

    Tap i along an axis reads x at i*d + j*s for window j: phase (i*d) % s, from
    position (i*d) // s on.
    """
    for index in np.ndindex(*kernel):
        offsets = [i * d for i, d in zip(index, dilation)]
        phase = tuple(o % s for o, s in zip(offsets, stride))
        start = (slice(o // s, o // s + m) for o, s, m in zip(offsets, stride, out))
        yield phases[(slice(None), slice(None), *phase, *start)]


def max_pool_backward(
    grad, x, kernel_size, stride=None, padding=0, dilation=1, ceil_mode=False
):
    """max_pool's backward: each window's grad goes to its maximum, as torch routes it.

    On ties torch picks the first maximum in the window's row-major order, so the
    taps are visited in that order and each window's grad goes to the first tap
    equal to its maximum. Overlapping windows add up. The padded input is split
    into its stride's phases (_phases), where every tap is a contiguous view, and
    the passes are whole-array comparisons and products into reused buffers (no
    np.where, which branches); the gradient is gathered in phases too and put
    back in place once.
    """
    nd = x.ndim - 2
    kernel, stride = _pool_settings(nd, kernel_size, stride)
    dilation = _per_dim(dilation, nd)
    padded, out = _pool_input(x, kernel, stride, padding, dilation, ceil_mode, -np.inf)
    whole = [(0, -n % s) for n, s in zip(padded.shape[2:], stride)]  # to whole phases
    phases = _phases(pad(padded, whole, -np.inf), stride)
    del padded
    best = None
    for tap in _phase_taps(phases, kernel, stride, dilation, out):
        best = tap.copy() if best is None else np.maximum(best, tap, out=best)
    dx = np.zeros(phases.shape, grad.dtype)
    free = np.ones(best.shape, bool)  # windows whose maximum is still to be found
    hit = np.empty(best.shape, bool)
    share = np.empty(grad.shape, grad.dtype)
    taps = zip(
        _phase_taps(phases, kernel, stride, dilation, out),
        _phase_taps(dx, kernel, stride, dilation, out),
    )
    for tap, target in taps:
        np.equal(tap, best, out=hit)
        hit &= free
        free ^= hit
        target += np.multiply(grad, hit, out=share)
    return _unphased(dx, stride, x.shape, padding)


def min_pool_backward(
    grad, x, kernel_size, stride=None, padding=0, dilation=1, ceil_mode=False
):
    """min_pool's backward: min_pool(x) = -max_pool(-x), so grad goes to each min."""
    return max_pool_backward(
        grad, -x, kernel_size, stride, padding, dilation, ceil_mode
    )


def avg_pool_backward(
    grad,
    shape,
    kernel_size,
    stride=None,
    padding=0,
    ceil_mode=False,
    count_include_pad=True,
):
    """avg_pool's backward: each window's grad / its divisor spread over the window.

    shape is the input's. The divisor is the forward's (_avg_divisor).
    """
    nd = len(shape) - 2
    kernel, stride = _pool_settings(nd, kernel_size, stride)
    ones = (1,) * nd
    dx, out = _pool_input(
        np.zeros(shape, grad.dtype), kernel, stride, padding, ones, ceil_mode, 0.0
    )
    share = grad / _avg_divisor(
        shape, out, kernel, stride, padding, count_include_pad
    ).astype(grad.dtype, copy=False)
    for _, tap in _taps(dx, kernel, stride, ones, out):
        tap += share
    return _unpad(dx, shape, padding)


def l2_pool_backward(grad, x, y, kernel_size, stride=None, ceil_mode=False):
    """l2_pool's backward, y being its output (None: computed again from x).

    y = sqrt(volume * avg_pool(x**2)), so dx = x * avg_pool_backward(grad * volume / y).
    A window of zeros (y = 0, after a relu) passes no gradient, as in torch, not 0/0.
    """
    volume = int(np.prod(_per_dim(kernel_size, x.ndim - 2)))
    if y is None:
        y = l2_pool(x, kernel_size, stride, ceil_mode)
    share = np.divide(grad * volume, y, out=np.zeros_like(grad), where=y != 0)
    return x * avg_pool_backward(share, x.shape, kernel_size, stride, 0, ceil_mode)


def _adaptive_windows(n, out):
    """The input positions of each adaptive window, and which of them are real.

    Both are (out, width); a window narrower than width repeats its last position.
    """
    i = np.arange(out)
    starts = i * n // out
    ends = -(-(i + 1) * n // out)
    positions = starts[:, None] + np.arange(int((ends - starts).max()))
    return np.minimum(positions, ends[:, None] - 1), positions < ends[:, None]


def adaptive_avg_pool_backward(grad, shape, output_size):
    """adaptive_avg_pool's backward: grad / box volume summed back over each box.

    Each dimension's 0/1 window matrix, transposed, spreads it back.
    """
    nd = len(shape) - 2
    divisor = np.ones((1,) * nd, dtype=np.int64)
    masks = []
    for axis, (n, out) in enumerate(zip(shape[2:], _per_dim(output_size, nd))):
        mask = _adaptive_mask(n, n if out is None else out)
        masks.append(mask.astype(grad.dtype))
        divisor = divisor * mask.sum(axis=1).reshape((-1,) + (1,) * (nd - 1 - axis))
    dx = grad / divisor.astype(grad.dtype, copy=False)
    for axis, mask in enumerate(masks):
        dx = np.moveaxis(np.tensordot(dx, mask, axes=([axis + 2], [0])), -1, axis + 2)
    return dx


def adaptive_max_pool_backward(grad, x, output_size):
    """adaptive_max_pool's backward: each box's grad to its first maximum (row-major).

    The boxes are gathered into (N, C, *out, *width) with the padding positions at
    -inf, so argmax finds each box's maximum as torch does; boxes may overlap, so
    the gradients are added at their positions.
    """
    nd = x.ndim - 2
    n, c = x.shape[:2]
    windows = [
        _adaptive_windows(size, size if out is None else out)
        for size, out in zip(x.shape[2:], _per_dim(output_size, nd))
    ]
    index, real = [], True
    for axis, (positions, valid) in enumerate(windows):
        shape = [1] * (2 * nd)
        shape[axis], shape[nd + axis] = positions.shape
        index.append(positions.reshape(shape))
        real = real & valid.reshape(shape)
    boxes = np.where(real, x[(slice(None), slice(None), *index)], -np.inf)
    outs = tuple(positions.shape[0] for positions, _ in windows)
    arg = boxes.reshape(n, c, *outs, -1).argmax(axis=-1)
    offsets = np.unravel_index(
        arg, tuple(positions.shape[1] for positions, _ in windows)
    )
    grid = np.indices(arg.shape, sparse=True)
    targets = tuple(
        positions[grid[2 + axis], offset]
        for axis, ((positions, _), offset) in enumerate(zip(windows, offsets))
    )
    dx = np.zeros(x.shape, grad.dtype)
    np.add.at(dx, (grid[0], grid[1], *targets), grad)
    return dx


def global_avg_pool_backward(grad, shape):
    """global_avg_pool's backward: grad / positions at every position."""
    dx = np.empty(shape, grad.dtype)
    dx[...] = grad / int(np.prod(shape[2:]))
    return dx


def global_max_pool_backward(grad, x):
    """global_max_pool's backward: grad to each channel's first maximum, as torch."""
    n, c = x.shape[:2]
    dx = np.zeros((n, c, x[0, 0].size), grad.dtype)
    arg = x.reshape(n, c, -1).argmax(axis=-1)[:, :, None]
    np.put_along_axis(dx, arg, grad.reshape(n, c, 1), axis=-1)
    return dx.reshape(x.shape)


# -- normalisation -------------------------------------------------------------------


def _normalised_backward(grad, xhat, inv_std, axes):
    """The gradient through (x - mean) / std, both taken over `axes`, of each group.

    With xhat the normalised input: inv_std * (grad - mean(grad) - xhat *
    mean(grad * xhat)), the means over the axes in float64.
    """
    mean = grad.mean(axis=axes, dtype=np.float64, keepdims=True)
    projection = (grad * xhat).mean(axis=axes, dtype=np.float64, keepdims=True)
    dx = grad - mean.astype(grad.dtype, copy=False)
    dx -= xhat * projection.astype(grad.dtype, copy=False)
    dx *= inv_std.astype(grad.dtype, copy=False)
    return dx


def _affine_backward(grad, xhat, weight, bias, axes, shape):
    """The weight's and bias's gradients, summed over `axes`, and grad times the weight.

    None for a missing weight or bias; `shape` lines the weight up with grad.
    """
    dw = None if weight is None else (grad * xhat).sum(axis=axes).reshape(weight.shape)
    db = None if bias is None else grad.sum(axis=axes).reshape(bias.shape)
    if weight is not None:
        grad = grad * weight.astype(grad.dtype).reshape(shape)
    return grad, dw, db


def batch_norm_backward(grad, x, state, name, training, eps=1e-5):
    """batch_norm's backward: (dx, dweight, dbias) for the entries under `name`.

    Training normalised by the batch statistics, which are taken again from x
    (_centred); the running statistics the forward updated are not used. Evaluation
    is a fixed per-channel scale. Training's dx, with xhat the centred x times
    inv_std, is scale * (grad - mean(grad) - xhat * mean(grad * xhat)), computed in
    place in the centred array (four passes, no other array of x's size); the
    per-channel sums are per-row sums combined in float64.
    """
    weight = state[name + ".weight"]
    n, c = x.shape[:2]
    channels = (1, -1) + (1,) * (x.ndim - 2)
    if training:
        _, var, centred = _centred(x)
    else:
        var = state[name + ".running_var"].astype(np.float64)
        centred = x - state[name + ".running_mean"].astype(x.dtype).reshape(channels)
    inv_std = 1 / np.sqrt(var + eps)
    rows = grad.reshape(n, c, -1)
    db = rows.sum(axis=2).sum(axis=0, dtype=np.float64)
    dw = np.einsum("ncl,ncl->nc", rows, centred.reshape(n, c, -1))
    dw = dw.sum(axis=0, dtype=np.float64) * inv_std
    scale = (weight * inv_std).astype(x.dtype).reshape(channels)
    if not training:
        return grad * scale, dw.astype(weight.dtype), db.astype(weight.dtype)
    count = x.size // c
    dx = centred  # the terms in torch's order: subtracting before scaling cancels least
    dx *= (-inv_std * dw / count).astype(x.dtype).reshape(channels)
    dx += grad
    dx -= (db / count).astype(x.dtype).reshape(channels)
    dx *= scale
    return dx, dw.astype(weight.dtype), db.astype(weight.dtype)


def local_response_norm_backward(grad, x, size, alpha=1e-4, beta=0.75, k=1.0):
    """local_response_norm's backward.

    y = x * d**-beta with d = k + alpha / size * (window sum of x**2), so
    dx = grad * d**-beta - 2 * alpha * beta / size * x * S(grad * x * d**(-beta-1)),
    where S, the transpose of the window sum, sums over the channels whose window
    holds the channel: the window reversed, padded (size - 1) // 2 before and
    size // 2 after.
    """
    rest = [(0, 0)] * (x.ndim - 2)
    squares = np.pad(x * x, [(0, 0), (size // 2, (size - 1) // 2), *rest])
    sums = np.lib.stride_tricks.sliding_window_view(squares, size, axis=1).sum(axis=-1)
    d = k + alpha * (sums / size)
    term = np.pad(
        grad * x * d ** (-beta - 1), [(0, 0), ((size - 1) // 2, size // 2), *rest]
    )
    spread = np.lib.stride_tricks.sliding_window_view(term, size, axis=1).sum(axis=-1)
    return grad * d**-beta - (2 * alpha * beta / size) * x * spread


def layer_norm_backward(grad, x, axes, weight=None, bias=None, eps=1e-5):
    """layer_norm's backward over the axes `axes`: (dx, dweight, dbias)."""
    mean = x.mean(axis=axes, dtype=np.float64, keepdims=True)
    inv_std = 1 / np.sqrt(x.var(axis=axes, dtype=np.float64, keepdims=True) + eps)
    xhat = ((x - mean) * inv_std).astype(x.dtype)
    shape = tuple(n if axis in axes else 1 for axis, n in enumerate(x.shape))
    others = tuple(axis for axis in range(x.ndim) if axis not in axes)
    dx, dw, db = _affine_backward(grad, xhat, weight, bias, others, shape)
    return _normalised_backward(dx, xhat, inv_std, axes), dw, db


def group_norm_backward(grad, x, groups, weight=None, bias=None, eps=1e-5):
    """group_norm's backward: (dx, dweight, dbias)."""
    n, c = x.shape[:2]
    grouped = x.reshape(n, groups, -1)
    mean = grouped.mean(axis=2, dtype=np.float64, keepdims=True)
    inv_std = 1 / np.sqrt(grouped.var(axis=2, dtype=np.float64, keepdims=True) + eps)
    xhat = ((grouped - mean) * inv_std).astype(x.dtype).reshape(x.shape)
    axes = (0, *range(2, x.ndim))
    dx, dw, db = _affine_backward(
        grad, xhat, weight, bias, axes, (1, c) + (1,) * (x.ndim - 2)
    )
    dx = _normalised_backward(
        dx.reshape(n, groups, -1), xhat.reshape(n, groups, -1), inv_std, 2
    )
    return dx.reshape(x.shape), dw, db


def instance_norm_backward(
    grad,
    x,
    weight=None,
    bias=None,
    running_mean=None,
    running_var=None,
    training=False,
    eps=1e-5,
):
    """instance_norm's backward: (dx, dweight, dbias).

    Per-sample statistics, unless the forward used the running ones (inference with
    running statistics), which make it a fixed per-channel scale.
    """
    spatial = tuple(range(2, x.ndim))
    channels = (1, -1) + (1,) * (x.ndim - 2)
    fixed = running_mean is not None and not training
    if fixed:
        mean = running_mean.astype(np.float64).reshape(channels)
        var = running_var.astype(np.float64).reshape(channels)
    else:
        mean = x.mean(axis=spatial, dtype=np.float64, keepdims=True)
        var = x.var(axis=spatial, dtype=np.float64, keepdims=True)
    inv_std = 1 / np.sqrt(var + eps)
    xhat = ((x - mean) * inv_std).astype(x.dtype)
    dx, dw, db = _affine_backward(grad, xhat, weight, bias, (0, *spatial), channels)
    if fixed:
        return dx * inv_std.astype(x.dtype), dw, db
    return _normalised_backward(dx, xhat, inv_std, spatial), dw, db


# -- rearrangements ------------------------------------------------------------------


def upsample_nearest_backward(grad, scale):
    """upsample_nearest's backward: each block of copies summed into its pixel."""
    for axis, factor in enumerate(_per_dim(scale, grad.ndim - 2), start=2):
        shape = grad.shape
        grad = grad.reshape(
            *shape[:axis], shape[axis] // factor, factor, *shape[axis + 1 :]
        ).sum(axis=axis + 1)
    return grad


def space_to_depth_backward(grad, block):
    """space_to_depth's backward: the channels moved back into block x block patches."""
    n, c, h, w = grad.shape
    grad = grad.reshape(n, c // (block * block), block, block, h, w)
    grad = grad.transpose(0, 1, 4, 2, 5, 3)
    return grad.reshape(n, c // (block * block), h * block, w * block)


def channel_shuffle_backward(grad, groups):
    """channel_shuffle's backward: the inverse interleaving, a shuffle by C / groups."""
    return channel_shuffle(grad, grad.shape[1] // groups)


def dropout_forward(x, p, training, rng):
    """dropout for training: (output, mask), the mask being what dropout_backward takes.

    It draws the same random numbers as dropout and gives the same output; the mask
    is keep / (1 - p) as x's dtype, or None where dropout is the identity.
    """
    if not training or p == 0:
        return x, None
    if p >= 1:
        return np.zeros_like(x), np.zeros_like(x)
    mask = ((rng.random(x.shape) >= p) / (1 - p)).astype(x.dtype)
    return x * mask, mask


def drop_path_forward(x, p, training, rng, mode="row"):
    """drop_path for training: (output, mask), mask (N, 1, ...) or (1, ..., 1).

    It draws what drop_path draws and gives its output; its backward is
    dropout_backward. The mask is None where drop_path is the identity.
    """
    if not training or p == 0:
        return x, None
    size = (x.shape[0] if mode == "row" else 1,) + (1,) * (x.ndim - 1)
    mask = ((rng.random(size) >= p) / (1 - p)).astype(x.dtype)
    return x * mask, mask


def dropout_backward(grad, mask):
    """dropout's and drop_path's backward: grad times the mask the forward returned."""
    return grad if mask is None else grad * mask


# -- recurrent layers: back-propagation through time -----------------------------------


def lstm_forward(
    x,
    state,
    name,
    num_layers=1,
    bidirectional=False,
    dropout=0.0,
    training=False,
    rng=None,
    last=False,
):
    """lstm for training: (output, kept), kept being what lstm_backward takes: the
    input and the dropout masks between layers (None where there is none). It draws
    what lstm draws."""
    return _keeping(
        x,
        _recurrent(
            x,
            state,
            name,
            _lstm_step,
            num_layers,
            bidirectional,
            dropout,
            training,
            rng,
            last,
        ),
    )


def gru_forward(
    x,
    state,
    name,
    num_layers=1,
    bidirectional=False,
    dropout=0.0,
    training=False,
    rng=None,
    last=False,
):
    """gru for training: (output, kept), as lstm_forward."""
    return _keeping(
        x,
        _recurrent(
            x,
            state,
            name,
            _gru_step,
            num_layers,
            bidirectional,
            dropout,
            training,
            rng,
            last,
        ),
    )


def _keeping(x, result):
    """A recurrent layer's (output, masks) as (output, (x, masks)): what its backward
    replays."""
    return result[0], (x, result[1])


def lstm_backward(
    grad, kept, state, name, num_layers=1, bidirectional=False, last=False
):
    """lstm's backward: (dx, {state key: gradient}) for every array of the layer.

    The forward is replayed from the input that lstm_forward kept (with the dropout
    masks it kept), keeping each step's gates, then the gradients flow back through
    the steps.
    """
    x, masks = kept
    return _recurrent_backward(
        grad,
        x,
        state,
        name,
        _lstm_step,
        _lstm_step_backward,
        num_layers,
        bidirectional,
        last,
        masks,
    )


def gru_backward(
    grad, kept, state, name, num_layers=1, bidirectional=False, last=False
):
    """gru's backward: (dx, {state key: gradient}), as lstm_backward."""
    x, masks = kept
    return _recurrent_backward(
        grad,
        x,
        state,
        name,
        _gru_step,
        _gru_step_backward,
        num_layers,
        bidirectional,
        last,
        masks,
    )


def _recurrent_backward(
    grad, x, state, name, step, step_backward, num_layers, bidirectional, last, masks
):
    """Back-propagation through time over the layers (last first) and directions.

    `step_backward(dcarry, cache, w_hr)` takes the gradient of a step's new state and
    what the step kept, and gives the gradients of the input's share of the gates, of
    the hidden state's (through weight_hh), of the previous state by the other paths
    (None: none), and of weight_hr (None without a projection).
    """
    tape = []
    replay = masks if masks is not None else [None] * (num_layers - 1)
    args = (num_layers, bidirectional, 0.0, False, None, False, replay, tape)
    output = _recurrent(x, state, name, step, *args)[0]
    directions = ("", "_reverse")[: 2 if bidirectional else 1]
    size = output.shape[2] // len(directions)
    if last:  # a forward direction's final state is at the last step, a reverse's first
        full = np.zeros_like(output)
        full[:, -1, :size] = grad[:, :size]
        full[:, 0, size:] = grad[:, size:]
        grad = full
    grads = {}
    for k in range(num_layers - 1, -1, -1):
        dx = 0
        for j, suffix in enumerate(directions):
            layer_input, order, caches = tape[k * len(directions) + j]
            key = f"{name}.{{}}_l{k}{suffix}"
            w_ih, w_hh = state[key.format("weight_ih")], state[key.format("weight_hh")]
            w_hr = state.get(key.format("weight_hr"))
            dgx = np.zeros((*layer_input.shape[:2], len(w_ih)), x.dtype)
            dw_hh, dw_hr, db_hh = np.zeros_like(w_hh), 0, 0
            dcarry = None
            for t, cache in zip(reversed(order), reversed(caches)):
                dh = grad[:, t, j * size : (j + 1) * size]
                dcarry = (dh,) if dcarry is None else (dcarry[0] + dh, *dcarry[1:])
                dgx[:, t], dgh, previous, dhr = step_backward(dcarry, cache, w_hr)
                dw_hh += dgh.T @ cache[0]  # the previous hidden state
                db_hh = db_hh + dgh.sum(axis=0)
                dw_hr = dw_hr if dhr is None else dw_hr + dhr
                through = dgh @ w_hh
                first = through if previous[0] is None else previous[0] + through
                dcarry = (first, *previous[1:])
            rows = dgx.reshape(-1, dgx.shape[2])
            grads[key.format("weight_ih")] = rows.T @ layer_input.reshape(len(rows), -1)
            grads[key.format("weight_hh")] = dw_hh
            if key.format("bias_ih") in state:
                grads[key.format("bias_ih")] = rows.sum(axis=0)
                grads[key.format("bias_hh")] = db_hh
            if w_hr is not None:
                grads[key.format("weight_hr")] = dw_hr
            dx = dx + linear(dgx, w_ih.T)
        if k and replay[k - 1] is not None:
            dx = dx * replay[k - 1]
        grad = dx
    return grad, {key: grads[key].astype(state[key].dtype) for key in grads}


def _lstm_step_backward(dcarry, cache, w_hr):
    """One LSTM cell's backward: (d gates, d gates, (None, d previous c), d weight_hr).

    The last step's cell state reaches nothing: its gradient is 0 (no second dcarry).
    """
    dh, dc = dcarry if len(dcarry) == 2 else (dcarry[0], 0.0)
    _h, c, i, f, g, o, tc, m = cache
    dhr = None
    if w_hr is not None:
        dhr = dh.T @ m
        dh = dh @ w_hr
    do = dh * tc
    dc = dc + dh * o * (1 - tc * tc)
    di, df, dg = dc * g * i * (1 - i), dc * c * f * (1 - f), dc * i * (1 - g * g)
    gates = np.concatenate([di, df, dg, do * o * (1 - o)], axis=1)
    return gates, gates, (None, dc * f), dhr


def _gru_step_backward(dcarry, cache, w_hr):
    """One GRU cell's backward: (d x's gates, d h's gates, (d previous h,), None)."""
    (dh,) = dcarry
    h, r, z, n, hn = cache
    dn = dh * (1 - z) * (1 - n * n)
    dr = dn * hn * r * (1 - r)
    dz = dh * (h - n) * z * (1 - z)
    dgx = np.concatenate([dr, dz, dn], axis=1)
    return dgx, np.concatenate([dr, dz, dn * r], axis=1), (dh * z,), None


# -- activations: each takes its input x -----------------------------------------------


def relu_backward(grad, x):
    """grad where x > 0, else 0 (torch's gradient at 0 is 0)."""
    return grad * (x > 0)


def leaky_relu_backward(grad, x, alpha=0.01):
    """grad where x > 0, alpha * grad elsewhere (at 0 too, as torch)."""
    slope = (x > 0).astype(grad.dtype)
    slope *= 1 - alpha
    slope += alpha
    return grad * slope


def relu6_backward(grad, x):
    """grad strictly between 0 and 6, else 0 (torch's hardtanh rule)."""
    return grad * ((x > 0) & (x < 6))


def elu_backward(grad, x, alpha=1.0):
    """grad where x > 0, grad * alpha * exp(x) elsewhere."""
    return np.where(x > 0, grad, grad * alpha * np.exp(np.minimum(x, 0))).astype(
        grad.dtype
    )


def gelu_backward(grad, x, approximate="none"):
    """gelu's backward, with torch's formula for each form.

    Exact: Phi(x) + x * phi(x). Tanh: 0.5 * (1 + t) + 0.5 * x * (1 - t**2) * inner',
    t = tanh(inner).
    """
    if approximate == "tanh":
        beta, kappa = 0.7978845608028654, 0.044715  # sqrt(2 / pi)
        t = np.tanh(beta * (x + kappa * x * x * x))
        slope = 0.5 * (1 + t) + 0.5 * x * (1 - t * t) * beta * (1 + 3 * kappa * x * x)
        return grad * slope
    cdf = 0.5 * (1 + erf(x * 0.7071067811865476))  # 1 / sqrt(2)
    pdf = np.exp(-0.5 * x * x) * 0.3989422804014327  # 1 / sqrt(2 * pi)
    return grad * (cdf + x * pdf)


def sigmoid_backward(grad, x):
    """grad * s * (1 - s), s = sigmoid(x)."""
    s = sigmoid(x)
    return grad * s * (1 - s)


def tanh_backward(grad, x):
    """grad * (1 - tanh(x)**2), worked out in place in the one new array."""
    t = np.tanh(x)
    np.multiply(t, t, out=t)
    np.subtract(1, t, out=t)
    t *= grad
    return t


def silu_backward(grad, x):
    """grad * s * (1 + x * (1 - s)), s = sigmoid(x)."""
    s = sigmoid(x)
    return grad * s * (1 + x * (1 - s))


def mish_backward(grad, x):
    """grad * (t + x * sigmoid(x) * (1 - t**2)), t = tanh(softplus(x))."""
    t = np.tanh(np.logaddexp(0, x))
    return grad * (t + x * sigmoid(x) * (1 - t * t))


def hardswish_backward(grad, x):
    """0 up to -3, grad * (x / 3 + 0.5) strictly between -3 and 3, grad from 3 on.

    At -3 and 3 torch takes the outer pieces' slopes, 0 and 1.
    """
    slope = np.where(x <= -3, 0, np.where(x < 3, x / 3 + 0.5, 1))
    return (grad * slope).astype(grad.dtype, copy=False)


def hardsigmoid_backward(grad, x):
    """grad / 6 strictly between -3 and 3, else 0."""
    return grad * ((x > -3) & (x < 3)) / 6


def softmax_backward(grad, x, axis=1):
    """y * (grad - sum(grad * y)) along axis, y = softmax(x)."""
    y = softmax(x, axis)
    return y * (grad - (grad * y).sum(axis=axis, keepdims=True))


# -- losses: (loss, gradient of the first argument), torch's mean reduction ------------


def cross_entropy(logits, target, label_smoothing=0.0):
    """torch's F.cross_entropy with logits (N, C, *positions).

    target holds class indices (N, *positions), or class probabilities shaped like
    the logits. With label_smoothing e the target is (1 - e) * target + e / C. The
    loss is the mean over samples and positions of -sum(target * log_softmax).
    """
    c = logits.shape[1]
    shifted = logits - logits.max(axis=1, keepdims=True).astype(np.float64)
    log_p = shifted - np.log(np.exp(shifted).sum(axis=1, keepdims=True))
    if np.ndim(target) == logits.ndim:
        dist = np.asarray(target, dtype=np.float64)
    else:
        dist = np.moveaxis(np.eye(c)[np.asarray(target)], -1, 1)
    if label_smoothing:
        dist = dist * (1 - label_smoothing) + label_smoothing / c
    count = logits.size // c
    loss = -(dist * log_p).sum() / count
    return float(loss), ((np.exp(log_p) - dist) / count).astype(logits.dtype)


def mse_loss(prediction, target):
    """torch's F.mse_loss: mean of squared differences."""
    diff = prediction.astype(np.float64) - target
    return float((diff * diff).mean()), (2 * diff / diff.size).astype(prediction.dtype)


def binary_cross_entropy_with_logits(logits, target):
    """torch's F.binary_cross_entropy_with_logits, the mean of
    max(x, 0) - x * y + log(1 + exp(-|x|)), which cannot overflow.
    """
    x = logits.astype(np.float64)
    loss = np.maximum(x, 0) - x * target + np.log1p(np.exp(-np.abs(x)))
    return float(loss.mean()), ((sigmoid(x) - target) / x.size).astype(logits.dtype)


# -- optimisers: update `params` in place from `grads`, keyed by state-dict names ----


def zero_grad(grads):
    """Forgets every gradient, as torch's zero_grad() (set_to_none) does.

    Optimisers skip a parameter with no gradient.
    """
    grads.clear()


def sgd_step(
    params,
    grads,
    state,
    lr,
    momentum=0.0,
    dampening=0.0,
    nesterov=False,
    weight_decay=0.0,
):
    """One step of torch.optim.SGD; state keeps each momentum buffer under its name.

    With weight decay the gradient gets weight_decay * p. The first step's buffer is
    the gradient itself, later ones momentum * buffer + (1 - dampening) * gradient;
    the step is the buffer, or with Nesterov the gradient + momentum * buffer.
    """
    for name, grad in grads.items():
        p = params[name]
        if weight_decay:
            grad = grad + weight_decay * p
        if momentum:
            buffer = state.get(name)
            if buffer is None:
                buffer = state[name] = grad.copy()
            else:
                buffer *= momentum
                buffer += (1 - dampening) * grad if dampening else grad
            grad = grad + momentum * buffer if nesterov else buffer
        p -= lr * grad


def adam_step(
    params,
    grads,
    state,
    lr=1e-3,
    betas=(0.9, 0.999),
    eps=1e-8,
    weight_decay=0.0,
    decoupled=False,
):
    """One step of torch.optim.Adam, or with decoupled=True AdamW.

    state[name] holds torch's step, exp_avg and exp_avg_sq. Adam adds
    weight_decay * p to the gradient; AdamW instead first scales p by
    1 - lr * weight_decay. eps is added to sqrt(exp_avg_sq) / sqrt(1 - beta2**step),
    as torch adds it, and the step is lr / (1 - beta1**step) times exp_avg over that.
    """
    beta1, beta2 = betas
    for name, grad in grads.items():
        p = params[name]
        if name not in state:
            state[name] = {
                "step": 0,
                "exp_avg": np.zeros_like(p),
                "exp_avg_sq": np.zeros_like(p),
            }
        s = state[name]
        s["step"] += 1
        if weight_decay and decoupled:
            p *= 1 - lr * weight_decay
        elif weight_decay:
            grad = grad + weight_decay * p
        s["exp_avg"] += (grad - s["exp_avg"]) * (1 - beta1)
        s["exp_avg_sq"] *= beta2
        s["exp_avg_sq"] += (1 - beta2) * grad * grad
        step_size = lr / (1 - beta1 ** s["step"])
        denom = np.sqrt(s["exp_avg_sq"]) / (1 - beta2 ** s["step"]) ** 0.5 + eps
        p -= step_size * (s["exp_avg"] / denom)


def adamw_step(
    params, grads, state, lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=1e-2
):
    """One step of torch.optim.AdamW (its default weight decay is 0.01)."""
    adam_step(params, grads, state, lr, betas, eps, weight_decay, decoupled=True)


def step_lr(base_lr, epoch, step_size, gamma=0.1):
    """torch's StepLR: base_lr * gamma ** (epoch // step_size)."""
    return base_lr * gamma ** (epoch // step_size)


def cosine_lr(base_lr, epoch, t_max, eta_min=0.0):
    """torch's CosineAnnealingLR without restarts, in closed form.

    eta_min + (base_lr - eta_min) * (1 + cos(pi * epoch / t_max)) / 2.
    """
    return eta_min + (base_lr - eta_min) * (1 + np.cos(np.pi * epoch / t_max)) / 2


# -- attention -------------------------------------------------------------------------


def scaled_dot_product_attention_forward(
    q, k, v, heads, causal=False, p=0.0, training=False, rng=None
):
    """scaled_dot_product_attention for training: (output, kept), kept being what its
    backward takes: (q, k, v, the dropout mask of the weights or None). It draws what
    scaled_dot_product_attention draws and gives its output."""
    qh, kh, vh = _heads(q, heads), _heads(k, heads), _heads(v, heads)
    weights = _attention_weights(qh, kh, causal)
    weights, mask = dropout_forward(weights, p, training, rng)
    return _unheads(weights @ vh), (q, k, v, mask)


def scaled_dot_product_attention_backward(grad, kept, heads, causal=False, packed=1):
    """scaled_dot_product_attention's backward: (dq, dk, dv) from what its forward kept.

    The weights are computed again from q and k; the mask is the dropout mask of the
    weights (as dropout_forward returns it), None without dropout. Where the last
    input held `packed` of q, k and v side by side, their gradients are side by side
    (all three: the one gradient, bare).
    """
    q, k, v, mask = kept
    qh, kh, vh = _heads(q, heads), _heads(k, heads), _heads(v, heads)
    scale = (1 / np.sqrt(qh.shape[-1])).astype(q.dtype)
    weights = _attention_weights(qh, kh, causal)
    g = _heads(grad, heads)
    dv = (weights if mask is None else weights * mask).transpose(0, 1, 3, 2) @ g
    dweights = g @ vh.transpose(0, 1, 3, 2)
    if mask is not None:
        dweights = dweights * mask
    dscores = weights * (dweights - (dweights * weights).sum(axis=-1, keepdims=True))
    dq = (dscores @ kh) * scale
    dk = (dscores.transpose(0, 1, 3, 2) @ qh) * scale
    grads = (_unheads(dq), _unheads(dk), _unheads(dv))
    grads = (*grads[: 3 - packed], np.concatenate(grads[3 - packed :], axis=-1))
    return grads if len(grads) > 1 else grads[0]


def multi_head_attention_forward(
    query,
    key,
    value,
    heads,
    in_weight,
    in_bias,
    out_weight,
    out_bias,
    causal=False,
    p=0.0,
    training=False,
    rng=None,
):
    """multi_head_attention for training: (output, kept), kept being what its backward
    takes: (query, key, value, the dropout mask of the weights or None). It draws what
    multi_head_attention draws and gives its output."""
    weights = np.split(in_weight, 3) if isinstance(in_weight, np.ndarray) else in_weight
    biases = np.split(in_bias, 3) if in_bias is not None else [None] * 3
    q, k, v = (linear(t, w, b) for t, w, b in zip((query, key, value), weights, biases))
    attended, kept = scaled_dot_product_attention_forward(
        q, k, v, heads, causal, p, training, rng
    )
    return linear(attended, out_weight, out_bias), (query, key, value, kept[3])


def multi_head_attention_backward(
    grad, kept, heads, in_weight, in_bias, out_weight, out_bias, causal=False
):
    """multi_head_attention's backward: (dquery, dkey, dvalue, din_weight, din_bias,
    dout_weight, dout_bias) from what its forward kept, din_weight packed or a list as
    in_weight is.

    The projections are computed again; the mask is the dropout mask of the weights,
    None without dropout. Where query, key and value are one array, its gradient is
    the sum of the three.
    """
    query, key, value, mask = kept
    packed = isinstance(in_weight, np.ndarray)
    weights = np.split(in_weight, 3) if packed else in_weight
    biases = np.split(in_bias, 3) if in_bias is not None else [None] * 3
    inputs = (query, key, value)
    q, k, v = (linear(t, w, b) for t, w, b in zip(inputs, weights, biases))
    attended = _attention_weights(_heads(q, heads), _heads(k, heads), causal)
    if mask is not None:
        attended = attended * mask
    dattended, dout_weight, dout_bias = linear_backward(
        grad, _unheads(attended @ _heads(v, heads)), out_weight, out_bias
    )
    dqkv = scaled_dot_product_attention_backward(
        dattended, (q, k, v, mask), heads, causal
    )
    grads = [
        linear_backward(d, t, w, b) for d, t, w, b in zip(dqkv, inputs, weights, biases)
    ]
    dweights = [g[1] for g in grads]
    dbias = None if in_bias is None else np.concatenate([g[2] for g in grads])
    return (
        *(g[0] for g in grads),
        np.concatenate(dweights) if packed else dweights,
        dbias,
        dout_weight,
        dout_bias,
    )


# -- the training API of a generated model, read as torch.optim is -----------------


class SGD:
    """torch.optim.SGD over a model's parameters(), from its grads (sgd_step)."""

    def __init__(
        self,
        model,
        lr,
        momentum=0.0,
        dampening=0.0,
        nesterov=False,
        weight_decay=0.0,
    ):
        self.model = model
        self.lr = lr
        self.settings = {
            "momentum": momentum,
            "dampening": dampening,
            "nesterov": nesterov,
            "weight_decay": weight_decay,
        }
        self.state = {}  # the momentum buffers, by parameter key

    def step(self):
        """Updates the parameters in place; one with no gradient is left alone."""
        grads = self.model.grads
        sgd_step(self.model.parameters(), grads, self.state, self.lr, **self.settings)

    def zero_grad(self):
        self.model.zero_grad()


class Adam:
    """torch.optim.Adam over a model's parameters(), from its grads (adam_step)."""

    decoupled = False

    def __init__(self, model, lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.0):
        self.model = model
        self.lr = lr
        self.settings = {"betas": betas, "eps": eps, "weight_decay": weight_decay}
        self.state = {}  # step, exp_avg and exp_avg_sq, by parameter key

    def step(self):
        """Updates the parameters in place; one with no gradient is left alone."""
        params, grads = self.model.parameters(), self.model.grads
        settings = {**self.settings, "decoupled": self.decoupled}
        adam_step(params, grads, self.state, self.lr, **settings)

    def zero_grad(self):
        self.model.zero_grad()


class AdamW(Adam):
    """torch.optim.AdamW: Adam with decoupled weight decay, 0.01 by default."""

    decoupled = True

    def __init__(self, model, lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=1e-2):
        super().__init__(model, lr, betas, eps, weight_decay)


class StepLR:
    """torch's StepLR: each step() (one an epoch) sets the optimiser's lr to
    base_lr * gamma ** (epoch // step_size)."""

    def __init__(self, optimizer, step_size, gamma=0.1):
        self.optimizer = optimizer
        self.base_lr = optimizer.lr
        self.step_size = step_size
        self.gamma = gamma
        self.epoch = 0

    def step(self):
        self.epoch += 1
        lr = step_lr(self.base_lr, self.epoch, self.step_size, self.gamma)
        self.optimizer.lr = lr


class CosineAnnealingLR:
    """torch's CosineAnnealingLR (no restarts): each step() (one an epoch) sets the
    optimiser's lr to cosine_lr(base_lr, epoch, t_max, eta_min)."""

    def __init__(self, optimizer, t_max, eta_min=0.0):
        self.optimizer = optimizer
        self.base_lr = optimizer.lr
        self.t_max = t_max
        self.eta_min = eta_min
        self.epoch = 0

    def step(self):
        self.epoch += 1
        lr = cosine_lr(self.base_lr, self.epoch, self.t_max, self.eta_min)
        self.optimizer.lr = float(lr)
