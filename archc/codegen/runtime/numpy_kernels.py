"""The NumPy runtime of generated standalone models.

The code generator never imports this module: it reads it with `ast` and copies
each top-level function a model needs (and the functions that one calls, found
by name) into the generated file, whose only import is `import numpy as np`.
So every function here uses nothing but `np`, builtins and the other functions
of this module, and there are no module-level constants.

Conventions, shared with PyTorch so the generated models agree with it:
arrays are batch first and channels first, (N, C, *spatial) with 1 to 3
spatial dimensions, and vectors are (N, C). Results keep the input's dtype.
A per-dimension argument is an int for every dimension or a tuple with one
entry per dimension; padding may also be a tuple of (before, after) pairs.
"""

import numpy as np

# -- argument helpers ----------------------------------------------------------------


def _per_dim(value, nd):
    """One entry per spatial dimension.

    An int (or None) stands for all of them, a sequence must have nd entries.
    """
    values = tuple(value) if isinstance(value, tuple | list) else (value,) * nd
    if len(values) != nd:
        raise ValueError(
            f"expected one value per spatial dimension ({nd}), got {value!r}"
        )
    return tuple(v if v is None else int(v) for v in values)


def _pairs(padding, nd):
    """(before, after) per spatial dimension.

    From an int, one int per dimension, or one pair per dimension. A flat pair is read
    as one int per dimension, never as (before, after): write ((1, 2),) for a 1-D pair.
    """
    if not isinstance(padding, tuple | list):
        padding = (padding,) * nd
    pairs = tuple(
        (int(p[0]), int(p[1])) if isinstance(p, tuple | list) else (int(p), int(p))
        for p in padding
    )
    if len(pairs) != nd:
        raise ValueError(
            f"expected padding for {nd} spatial dimensions, got {padding!r}"
        )
    return pairs


def _windows(x, kernel, stride, dilation):
    """A strided view (N, C, *out, *kernel) of every window of x the kernel visits.

    No padding is added.
    """
    nd = len(kernel)
    spans = tuple(d * (k - 1) + 1 for k, d in zip(kernel, dilation))
    view = np.lib.stride_tricks.sliding_window_view(
        x, spans, axis=tuple(range(2, 2 + nd))
    )
    steps = tuple(slice(None, None, s) for s in stride) + tuple(
        slice(None, None, d) for d in dilation
    )
    return view[(slice(None), slice(None), *steps)]


# -- padding and convolution ---------------------------------------------------------


def pad(x, padding, value=0.0):
    """Constant padding of the spatial dimensions.

    Batch and channels are left alone.
    """
    sides = _pairs(padding, x.ndim - 2)
    if not any(before or after for before, after in sides):
        return x
    return np.pad(x, ((0, 0), (0, 0), *sides), mode="constant", constant_values=value)


def _taps(x, kernel, stride, dilation, out):
    """For each kernel position, the strided view (N, C, *out) of x it multiplies.

    Position (i, j) of a 2-D kernel reads x[:, :, i*d : ... : s, j*d : ... : s].
    """
    for index in np.ndindex(*kernel):
        steps = tuple(
            slice(i * d, i * d + s * (o - 1) + 1, s)
            for i, d, s, o in zip(index, dilation, stride, out)
        )
        yield index, x[(slice(None), slice(None), *steps)]


def _read_region(x, weight, padding, stride, dilation):
    """x padded, and the weight, cut to what a convolution reads: nothing else is built.

    Along an axis, kernel tap i reads positions i*d + j*s (j < out) of the padded input,
    where x itself is [before, before + n). The taps that read any of x are a range
    lo..hi; the others read only zeros and add nothing, so they are dropped, and x is
    padded (or cut) to the positions lo*d to hi*d + s*(out-1) alone. The padding built
    is then at most about s*(out-1) a side, however large the padding and dilation:
    dilation=10**9 with padding 10**9 around an 8x8 map reads 8x8 values, where padding
    it literally would take 10**18. An axis where no tap reads x at all is cut to zero
    length, which gives zeros (then the bias).
    """
    sides, crops, taps = [], [], []
    kernel = weight.shape[2:]
    pads = _pairs(padding, x.ndim - 2)
    for n, k, s, d, (before, after) in zip(x.shape[2:], kernel, stride, dilation, pads):
        # the last output's offset from the first; the first and last taps reading x
        last = s * ((n + before + after - d * (k - 1) - 1) // s)
        lo = max(0, -(-(before - last) // d))  # i*d + last >= before
        hi = min(k - 1, (before + n - 1) // d)  # i*d < before + n
        if lo > hi:  # no tap reads x: one tap over last + 1 zeros gives the zeros
            lo = hi = 0
            sides.append((last + 1, 0))
            crops.append(slice(0, 0))
        else:  # in x's coordinates
            start, end = lo * d - before, hi * d + last + 1 - before
            sides.append((max(-start, 0), max(end - n, 0)))
            crops.append(slice(max(start, 0), min(end, n)))
        taps.append(slice(lo, hi + 1))
    x = pad(x[(slice(None), slice(None), *crops)], sides)
    return x, weight[(slice(None), slice(None), *taps)]


def _chunks(n, out, width):
    """(samples, rows): how much of a batch's output one product takes at once.

    width is the bytes of columns per output position. A chunk is as many positions
    as 64 MiB of columns hold (at least 1024, below which BLAS runs thin products
    slowly): whole samples when they fit, else bands of rows. So a layer is a few
    large products, not many cache-sized ones: each BLAS call with two or more
    threads wakes its thread pool and waits for every thread, and on a busy machine a
    thread the scheduler leaves waiting holds up the call. ResNet-18's step at batch 8
    made 717 products in 1 MiB chunks and makes 60 (one a layer and direction): with
    two threads at a load average of 15, 33 s -> 20 s; with one thread, 7% more CPU
    time, the columns no longer in the cache; the step's peak memory +5 MiB. The bound
    keeps memory in check where a layer unrolls to more: VGG-16's first layers at
    batch 8 would take 0.9 GiB of columns.
    """
    chunk = max(1024, 2**26 // max(width, 1))
    positions = int(np.prod(out))
    if chunk >= positions:  # an empty output (out[0] == 0) takes one empty chunk
        return max(1, min(n, chunk // max(positions, 1))), max(out[0], 1)
    return 1, max(1, chunk // (positions // out[0]))


def conv(x, weight, bias=None, stride=1, padding=0, dilation=1, groups=1):
    """Cross-correlation like torch's conv1d/2d/3d; weight is (F, C // groups, *kernel).

    A convolution is a matrix product of the weight, (F, C * kernel volume) per group,
    with the windows of x unrolled into columns (im2col). How fast it runs is how
    close it gets to the BLAS matrix product, so:

    - The batch is folded into the product: a few products with many columns, not
      one small product per sample (7x7 maps at batch 8 give 392 columns, not 49).
    - The columns are laid out (C * kernel volume, batch * positions): the copy that
      unrolls them moves whole rows of x, and the product writes the output in
      channel order, so only one cheap transpose of the output remains.
    - They are built at most 64 MiB at a time (_chunks: whole samples when they fit,
      else bands of output rows of one sample): few large products, each of which
      BLAS spreads over its threads, and memory stays bounded (VGG-16's first
      layers at batch 8 would otherwise unroll to 0.9 GiB).
    - A 1x1 kernel needs no unrolling: x itself (subsampled by the stride) is the
      columns.
    - With one input channel per group (depthwise) each product would be a tiny one
      per channel, so the output is instead a sum over the kernel positions of
      shifted views of x times one weight per channel, vectorised over everything.
    """
    nd = x.ndim - 2
    n, c = x.shape[:2]
    f, per_group = weight.shape[:2]
    stride = _per_dim(stride, nd)
    dilation = _per_dim(dilation, nd)
    x, weight = _read_region(x, weight, padding, stride, dilation)
    kernel = weight.shape[2:]
    out = tuple(
        (size - d * (k - 1) - 1) // s + 1
        for size, k, s, d in zip(x.shape[2:], kernel, stride, dilation)
    )
    dtype = np.result_type(x.dtype, weight.dtype)
    channels = (1, f) + (1,) * nd
    if groups == 1 and all(k == 1 for k in kernel):
        x = x[(slice(None), slice(None)) + tuple(slice(None, None, s) for s in stride)]
        y = np.matmul(weight.reshape(f, c), x.reshape(n, c, -1)).reshape(n, f, *out)
    elif per_group == 1 and groups > 1:
        if f != c:  # output channel j reads input channel j // (f // c)
            x = np.repeat(x, f // c, axis=1)
        y = np.zeros((n, f, *out), dtype)
        term = np.empty_like(y)
        for index, tap in _taps(x, kernel, stride, dilation, out):
            scale = weight[(slice(None), 0, *index)].reshape(channels)
            y += np.multiply(tap, scale, out=term)
    elif (
        groups == 1
        and min(out) > 0
        and out[-1] < 32
        and _chunks(n, out, c * int(np.prod(kernel)) * x.itemsize)[0] == n
    ):
        y = _batch_last_conv(x, weight, stride, dilation, out)
    else:
        volume = int(np.prod(kernel))
        y = np.empty((n, f, *out), dtype)
        windows = _windows(x, kernel, stride, dilation)  # (N, C, *out, *kernel)
        order = (1, *range(2 + nd, 2 + 2 * nd), 0, *range(2, 2 + nd))
        weights = weight.reshape(groups, f // groups, per_group * volume)
        samples, rows = _chunks(n, out, c * volume * x.itemsize)
        line = int(np.prod(out[1:]))  # output positions per output row
        for first in range(0, n, samples):
            for top in range(0, out[0], rows):
                part = windows[first : first + samples, :, top : top + rows]
                columns = part.transpose(order).reshape(groups, per_group * volume, -1)
                if samples == 1:  # the product is this band of y's rows: write it there
                    band = y[first].reshape(groups, f // groups, -1)
                    band = band[:, :, top * line : (top + rows) * line]
                    np.matmul(weights, columns, out=band)
                else:  # (groups, F/groups, samples * positions) -> (samples, F, *out)
                    product = np.matmul(weights, columns)
                    shape = (f, part.shape[0], *out)
                    y[first : first + samples] = product.reshape(shape).swapaxes(0, 1)
    if bias is not None:
        y += bias.reshape(channels)
    return y


def _batch_last_conv(x, weight, stride, dilation, out):
    """conv of a padded x whose output rows are short (LeNet-5's 10 x 10 maps): the
    same product, with the batch as the last axis of the columns
    (_batch_last_columns) and of y."""
    f = weight.shape[0]
    columns = _batch_last_columns(x, weight.shape[2:], stride, dilation, out)
    y = np.matmul(weight.reshape(f, -1), columns).reshape(f, *out, x.shape[0])
    return np.ascontiguousarray(np.moveaxis(y, -1, 0))


def _batch_last_columns(x, kernel, stride, dilation, out):
    """The windows of a padded x unrolled into columns (C * kernel volume, positions
    x batch), the batch last. The copy then moves rows of (output width x batch)
    values instead of rows of output width, 10 in LeNet-5's third layer, where
    numpy's per-row overhead outweighs the copying; the transposes this costs are of
    x and y, not of the columns, which are kernel-volume times larger.
    """
    nd = x.ndim - 2
    moved = np.ascontiguousarray(np.moveaxis(x, 0, -1))  # (C, *spatial, N)
    spans = tuple(d * (k - 1) + 1 for k, d in zip(kernel, dilation))
    view = np.lib.stride_tricks.sliding_window_view(
        moved, spans, axis=tuple(range(1, 1 + nd))
    )  # (C, *positions, N, *spans)
    steps = tuple(slice(0, s * (o - 1) + 1, s) for s, o in zip(stride, out))
    taps = tuple(slice(None, None, d) for d in dilation)
    view = view[(slice(None), *steps, slice(None), *taps)]
    order = (0, *range(2 + nd, 2 + 2 * nd), *range(1, 2 + nd))  # (C, *kernel, *out, N)
    return view.transpose(order).reshape(x.shape[1] * int(np.prod(kernel)), -1)


def conv_transpose(
    x, weight, bias=None, stride=1, padding=0, output_padding=0, groups=1, dilation=1
):
    """Transposed convolution like torch's conv_transpose1d/2d/3d.

    The weight is (C, F // groups, *kernel).

    Done as an ordinary convolution: stride - 1 zeros go between input pixels, the
    result is padded by dilation * (kernel - 1) - padding on each side (cropped where
    that is negative, with output_padding added at the end), and convolved with the
    kernel flipped and its in/out axes swapped per group. Per-side padding (before,
    after) removes that many pixels from each end of the full output.
    """
    nd = x.ndim - 2
    n, c = x.shape[:2]
    fg = weight.shape[1]
    kernel = weight.shape[2:]
    stride = _per_dim(stride, nd)
    dilation = _per_dim(dilation, nd)
    spread = np.zeros(
        (n, c, *((size - 1) * s + 1 for size, s in zip(x.shape[2:], stride))),
        dtype=x.dtype,
    )
    spread[(slice(None), slice(None), *(slice(None, None, s) for s in stride))] = x
    sides = []
    for k, d, (before, after), extra in zip(
        kernel, dilation, _pairs(padding, nd), _per_dim(output_padding, nd)
    ):
        reach = d * (k - 1)
        sides.append((reach - before, reach - after + extra))
    spread = pad(spread, [(max(before, 0), max(after, 0)) for before, after in sides])
    crop = (
        slice(-min(before, 0), size + min(after, 0))
        for (before, after), size in zip(sides, spread.shape[2:])
    )
    spread = spread[(slice(None), slice(None), *crop)]
    flipped = (
        weight.reshape(groups, c // groups, fg, *kernel)
        .swapaxes(1, 2)
        .reshape(groups * fg, c // groups, *kernel)
    )
    flipped = np.flip(flipped, axis=tuple(range(2, 2 + nd)))
    return conv(spread, flipped, bias, 1, 0, dilation, groups)


# -- pooling -------------------------------------------------------------------------


def _pool_size(n, k, s, d, before, after, ceil_mode):
    """PyTorch's pooled length.

    In ceil mode the last window must still start inside the input or the left padding.
    """
    span = n + before + after - (d * (k - 1) + 1)
    if not ceil_mode:
        return span // s + 1
    out = -(-span // s) + 1
    if (out - 1) * s >= n + before:
        out -= 1
    return out


def _pool_input(x, kernel, stride, padding, dilation, ceil_mode, fill):
    """x padded with `fill` for a pooling layer, and the pooled sizes.

    In ceil mode the last windows may hang off the end; they are padded with `fill` as
    well.
    """
    sides, out = [], []
    for n, k, s, d, (before, after) in zip(
        x.shape[2:], kernel, stride, dilation, _pairs(padding, x.ndim - 2)
    ):
        size = _pool_size(n, k, s, d, before, after, ceil_mode)
        needed = (size - 1) * s + d * (k - 1) + 1
        sides.append((before, max(after, needed - n - before)))
        out.append(size)
    return pad(x, sides, fill), out


def _fold_windows(x, kernel, stride, dilation, out, ufunc):
    """ufunc (np.maximum, np.add) folded over every window, one dimension at a time.

    A box's max (or sum) is the max over its rows of the max over its columns, so each
    spatial dimension is reduced in turn by k strided slices; the last dimension, whose
    slices are not contiguous, goes last, when the array is smallest. A 3x3 window
    costs 3 + 3 vectorised passes instead of 9, and numpy's own reduction over the short
    trailing axes of a window view, a loop of kernel length per value, is avoided.
    """
    for axis, (k, s, d, size) in enumerate(zip(kernel, stride, dilation, out), 2):
        steps = [slice(None)] * x.ndim
        total = None
        for i in range(k):
            steps[axis] = slice(i * d, i * d + s * (size - 1) + 1, s)
            tap = x[tuple(steps)]
            total = tap.copy() if total is None else ufunc(total, tap, out=total)
        x = total
    return x


def max_pool(x, kernel_size, stride=None, padding=0, dilation=1, ceil_mode=False):
    """Max pooling like torch's max_pool1d/2d/3d; padding counts as -inf.

    stride None means the kernel size.
    """
    nd = x.ndim - 2
    kernel = _per_dim(kernel_size, nd)
    stride = kernel if stride is None else _per_dim(stride, nd)
    dilation = _per_dim(dilation, nd)
    padded, out = _pool_input(x, kernel, stride, padding, dilation, ceil_mode, -np.inf)
    return _fold_windows(padded, kernel, stride, dilation, out, np.maximum)


def min_pool(x, kernel_size, stride=None, padding=0, dilation=1, ceil_mode=False):
    """Min pooling, the mirror image of max_pool: padding counts as +inf."""
    return -max_pool(-x, kernel_size, stride, padding, dilation, ceil_mode)


def avg_pool(
    x, kernel_size, stride=None, padding=0, ceil_mode=False, count_include_pad=True
):
    """Average pooling like torch's avg_pool1d/2d/3d, with PyTorch's divisor.

    The divisor counts the window positions inside the padded input (count_include_pad)
    or inside the input itself, so windows hanging off the end in ceil mode average only
    what they cover. A window that covers nothing (possible only with a large per-side
    padding) gives 0.
    """
    nd = x.ndim - 2
    kernel = _per_dim(kernel_size, nd)
    stride = kernel if stride is None else _per_dim(stride, nd)
    ones = (1,) * nd
    padded, out = _pool_input(x, kernel, stride, padding, ones, ceil_mode, 0.0)
    total = _fold_windows(padded, kernel, stride, ones, out, np.add)
    divisor = _avg_divisor(x.shape, out, kernel, stride, padding, count_include_pad)
    return total / divisor.astype(x.dtype)


def _avg_divisor(shape, out, kernel, stride, padding, count_include_pad):
    """avg_pool's divisor per output position, (*out), at least 1.

    Shared with the backward pass, which spreads each gradient over the same count.
    """
    nd = len(shape) - 2
    divisor = np.ones((1,) * nd, dtype=np.int64)
    sizes = zip(shape[2:], out, kernel, stride, _pairs(padding, nd))
    for axis, (n, size, k, s, (before, after)) in enumerate(sizes):
        starts = np.arange(size) * s - before
        ends = np.minimum(starts + k, n + after)
        if not count_include_pad:
            starts, ends = np.maximum(starts, 0), np.minimum(ends, n)
        divisor = divisor * (ends - starts).reshape((-1,) + (1,) * (nd - 1 - axis))
    return np.maximum(divisor, 1)


def l2_pool(x, kernel_size, stride=None, ceil_mode=False):
    """Power-2 pooling exactly like torch's LPPool1d/2d/3d(2, ...).

    It computes sqrt(avg_pool(x**2) * kernel volume).

    Like torch, a ceil-mode window cut off at the end divides by the positions it covers
    before multiplying by the full kernel volume, so it comes out scaled up rather than
    as the plain root of its sum of squares.
    """
    volume = int(np.prod(_per_dim(kernel_size, x.ndim - 2)))
    return np.sqrt(avg_pool(x * x, kernel_size, stride, 0, ceil_mode) * volume)


def _adaptive_mask(n, out):
    """(out, n) booleans.

    PyTorch's adaptive window i covers floor(i*n/out) <= j < ceil((i+1)*n/out).
    """
    i = np.arange(out)
    starts = i * n // out
    ends = -(-(i + 1) * n // out)
    j = np.arange(n)
    return (j >= starts[:, None]) & (j < ends[:, None])


def adaptive_avg_pool(x, output_size):
    """Adaptive average pooling like torch's AdaptiveAvgPool1d/2d/3d.

    None in output_size keeps that size.

    The windows are boxes, so the sums are taken one dimension at a time by a 0/1
    matrix, then divided once by the box volume.
    """
    nd = x.ndim - 2
    divisor = np.ones((1,) * nd, dtype=np.int64)
    for axis, (n, out) in enumerate(zip(x.shape[2:], _per_dim(output_size, nd))):
        mask = _adaptive_mask(n, n if out is None else out)
        x = np.moveaxis(
            np.tensordot(x, mask.astype(x.dtype), axes=([axis + 2], [1])), -1, axis + 2
        )
        divisor = divisor * mask.sum(axis=1).reshape((-1,) + (1,) * (nd - 1 - axis))
    return x / divisor.astype(x.dtype)


def adaptive_max_pool(x, output_size):
    """Adaptive max pooling like torch's AdaptiveMaxPool1d/2d/3d.

    None in output_size keeps that size.

    The max over a box is the max over each dimension in turn: each step masks a
    broadcast (out, n) copy.
    """
    nd = x.ndim - 2
    for axis, (n, out) in enumerate(zip(x.shape[2:], _per_dim(output_size, nd))):
        mask = _adaptive_mask(n, n if out is None else out)
        last = np.moveaxis(x, axis + 2, -1)[..., None, :]
        x = np.moveaxis(np.where(mask, last, -np.inf).max(axis=-1), -1, axis + 2)
    return x


def global_avg_pool(x):
    """Mean over all spatial dimensions, kept as size-1 dimensions.

    The result is (N, C, 1, ..., 1).
    """
    return x.mean(axis=tuple(range(2, x.ndim)), keepdims=True)


def global_max_pool(x):
    """Max over all spatial dimensions, kept as size-1 dimensions.

    The result is (N, C, 1, ..., 1).
    """
    return x.max(axis=tuple(range(2, x.ndim)), keepdims=True)


# -- normalisation and dense layers --------------------------------------------------


def _centred(x):
    """x minus its per-channel mean, a new array of x's shape and dtype, with the mean
    and the biased variance per channel (float64).

    Batch norm's statistics without a float64 copy of x, which x.var(dtype=float64)
    makes (10x slower): each (sample, channel) row is summed in x's dtype, which numpy
    does pairwise along a contiguous row (an error growing as the log of its length),
    and the row sums are combined in float64; the variance is the mean square of the
    centred values, one dot product per row.
    """
    n, c = x.shape[:2]
    rows = x.reshape(n, c, -1)
    count = n * rows.shape[2]
    mean = rows.sum(axis=2).sum(axis=0, dtype=np.float64) / count
    centred = rows - mean.astype(x.dtype)[:, None]
    squares = np.einsum("ncl,ncl->nc", centred, centred)
    return mean, squares.sum(axis=0, dtype=np.float64) / count, centred.reshape(x.shape)


def batch_norm(x, state, name, training, momentum=0.1, eps=1e-5):
    """Batch normalisation like torch's BatchNorm1d/2d/3d.

    Its state_dict entries are under `name`.

    Training normalises by the batch mean and biased variance, and updates the running
    statistics in place as torch does (the running variance takes the unbiased batch
    variance; momentum None is the cumulative average). Evaluation uses the running
    statistics. Statistics are combined in float64 (_centred).

    The normalisation is applied as x * scale + shift, with per-channel
    scale = weight / sqrt(var + eps) and shift = bias - mean * scale, as torch applies
    it; in training it is written over the centred copy of x that gave the variance:
    one new array and five passes over it.
    """
    weight = state[name + ".weight"]
    bias = state[name + ".bias"]
    running_mean = state[name + ".running_mean"]
    running_var = state[name + ".running_var"]
    if training:
        mean, var, y = _centred(x)
        count = x.size // x.shape[1]
        state[name + ".num_batches_tracked"] += 1
        factor = (
            1.0 / float(state[name + ".num_batches_tracked"])
            if momentum is None
            else momentum
        )
        running_mean *= 1 - factor
        running_mean += factor * mean
        running_var *= 1 - factor
        running_var += factor * var * count / max(count - 1, 1)
    else:
        mean, var, y = running_mean, running_var, np.empty_like(x)
    channels = (1, -1) + (1,) * (x.ndim - 2)
    scale = weight / np.sqrt(var + eps)
    np.multiply(x, scale.astype(x.dtype).reshape(channels), out=y)
    y += (bias - mean * scale).astype(x.dtype).reshape(channels)
    return y


def local_response_norm(x, size, alpha=1e-4, beta=0.75, k=1.0):
    """Local response normalisation exactly like torch's.

    It computes x / (k + alpha * mean of x**2 over `size` channels) ** beta.

    The channel window is zero-padded by size // 2 before and (size - 1) // 2 after,
    and the mean always divides by size, as torch's does.
    """
    squares = np.pad(
        x * x, [(0, 0), (size // 2, (size - 1) // 2)] + [(0, 0)] * (x.ndim - 2)
    )
    sums = np.lib.stride_tricks.sliding_window_view(squares, size, axis=1).sum(axis=-1)
    return x / (k + alpha * (sums / size)) ** beta


def _normalised(x, mean, var, eps):
    """(x - mean) / sqrt(var + eps), from float64 statistics, in x's dtype."""
    return ((x - mean) / np.sqrt(var + eps)).astype(x.dtype)


def _affine(y, weight, bias, shape):
    """y times weight plus bias, in place; None leaves one out.

    Both are reshaped to `shape`, which lines them up with the axes they belong to.
    """
    if weight is not None:
        y *= weight.astype(y.dtype).reshape(shape)
    if bias is not None:
        y += bias.astype(y.dtype).reshape(shape)
    return y


def layer_norm(x, axes, weight=None, bias=None, eps=1e-5):
    """Layer normalisation like torch's layer_norm, over the axes `axes` of x.

    nn.LayerNorm normalises over the last axes; torchvision's LayerNorm2d (ConvNeXt)
    over the channels, axes (1,), at every position. Mean and biased variance are
    taken in float64; weight and bias have the shape of those axes.
    """
    mean = x.mean(axis=axes, dtype=np.float64, keepdims=True)
    var = x.var(axis=axes, dtype=np.float64, keepdims=True)
    shape = tuple(n if axis in axes else 1 for axis, n in enumerate(x.shape))
    return _affine(_normalised(x, mean, var, eps), weight, bias, shape)


def group_norm(x, groups, weight=None, bias=None, eps=1e-5):
    """Group normalisation like torch's GroupNorm.

    Each sample's channels are split into `groups` equal groups, each normalised by
    its own mean and biased variance (float64) over its channels and positions; weight
    and bias are per channel.
    """
    n, c = x.shape[:2]
    grouped = x.reshape(n, groups, -1)
    mean = grouped.mean(axis=2, dtype=np.float64, keepdims=True)
    var = grouped.var(axis=2, dtype=np.float64, keepdims=True)
    y = _normalised(grouped, mean, var, eps).reshape(x.shape)
    return _affine(y, weight, bias, (1, c) + (1,) * (x.ndim - 2))


def instance_norm(
    x,
    weight=None,
    bias=None,
    running_mean=None,
    running_var=None,
    training=False,
    momentum=0.1,
    eps=1e-5,
):
    """Instance normalisation like torch's InstanceNorm1d/2d/3d.

    Each channel of each sample is normalised by its own mean and biased variance
    (float64) over its positions, except at inference with running statistics
    (track_running_stats), which are then used as batch norm uses them. Training
    with running statistics updates them in place as torch does: by the batch's mean
    of the per-sample means and of the unbiased per-sample variances.
    """
    axes = tuple(range(2, x.ndim))
    channels = (1, -1) + (1,) * (x.ndim - 2)
    if running_mean is not None and not training:
        mean = running_mean.astype(np.float64).reshape(channels)
        var = running_var.astype(np.float64).reshape(channels)
    else:
        mean = x.mean(axis=axes, dtype=np.float64, keepdims=True)
        var = x.var(axis=axes, dtype=np.float64, keepdims=True)
        if running_mean is not None:
            count = x.size // (x.shape[0] * x.shape[1])
            running_mean *= 1 - momentum
            running_mean += momentum * mean.mean(axis=0).reshape(-1)
            running_var *= 1 - momentum
            running_var += momentum * var.mean(axis=0).reshape(-1) * count / (count - 1)
    return _affine(_normalised(x, mean, var, eps), weight, bias, channels)


def linear(x, weight, bias=None):
    """Dense layer like torch's F.linear: x @ weight.T + bias, along the last axis of x.

    weight is (out, in). The positions are made one matrix of rows first: matmul on a
    stack of channels-last maps (a permuted view) loops in C without BLAS, 30x slower.
    """
    y = (x.reshape(-1, x.shape[-1]) @ weight.T).reshape(*x.shape[:-1], len(weight))
    return y if bias is None else y + bias


def linear_in_out(x, weight, bias=None):
    """linear with the weight stored (in, out), as Hugging Face's Conv1D (GPT-2)
    keeps it: x @ weight + bias."""
    y = (x.reshape(-1, x.shape[-1]) @ weight).reshape(*x.shape[:-1], weight.shape[1])
    return y if bias is None else y + bias


def embedding(ids, weight):
    """nn.Embedding: the row of weight of each token id, (N, L) ids -> (N, L, dim)."""
    return weight[ids]


def embedding_weight(rng, num, dim, padding_idx=None):
    """nn.Embedding's start: N(0, 1) as float32, the padding id's row zero."""
    weight = rng.standard_normal((num, dim), dtype=np.float32)
    if padding_idx is not None:
        weight[padding_idx] = 0
    return weight


def to_sequence(x):
    """(N, C, *spatial) -> (N, positions, C): a token per position, a view."""
    return x.reshape(x.shape[0], x.shape[1], -1).transpose(0, 2, 1)


def _heads(t, heads):
    """(N, L, E) -> (N, heads, L, E / heads): each head's slice of the features."""
    return t.reshape(t.shape[0], t.shape[1], heads, -1).transpose(0, 2, 1, 3)


def _unheads(t):
    """(N, heads, L, d) -> (N, L, heads * d)."""
    return t.transpose(0, 2, 1, 3).reshape(t.shape[0], t.shape[2], -1)


def _attention_weights(qh, kh, causal):
    """softmax(q k^T / sqrt(d)) of each head, the keys after a query's position masked
    with `causal`: (N, heads, L, S)."""
    scores = (qh @ kh.transpose(0, 1, 3, 2)) / np.sqrt(qh.shape[-1]).astype(qh.dtype)
    if causal:
        future = np.triu(np.ones(scores.shape[-2:], dtype=bool), 1)
        scores = np.where(future, -np.inf, scores)
    return softmax(scores, axis=-1)


def scaled_dot_product_attention(
    q, k, v, heads, causal=False, p=0.0, training=False, rng=None
):
    """torch's F.scaled_dot_product_attention over `heads` heads.

    q is (N, L, E), k (N, S, E), v (N, S, Ev); the result (N, L, Ev). Each head takes
    its slice of the features; its weights are softmax(q k^T / sqrt(E / heads)), with
    `causal` the keys after a query's position masked (top-left aligned, as torch's
    is_causal), dropped with probability p while training.
    """
    qh, kh, vh = _heads(q, heads), _heads(k, heads), _heads(v, heads)
    weights = dropout(_attention_weights(qh, kh, causal), p, training, rng)
    return _unheads(weights @ vh)


def multi_head_attention(
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
    """torch's nn.MultiheadAttention (batch_first) without the weights it may return.

    in_weight is the packed (3E, E) in_proj_weight, or the list of the three q, k and
    v projection weights when key or value has another width; in_bias the packed (3E,)
    bias or None.
    """
    weights = np.split(in_weight, 3) if isinstance(in_weight, np.ndarray) else in_weight
    biases = np.split(in_bias, 3) if in_bias is not None else [None] * 3
    q, k, v = (linear(t, w, b) for t, w, b in zip((query, key, value), weights, biases))
    return linear(
        scaled_dot_product_attention(q, k, v, heads, causal, p, training, rng),
        out_weight,
        out_bias,
    )


def upsample_nearest(x, scale):
    """Nearest-neighbour upsampling by an integer factor per spatial dimension.

    Each pixel is repeated.
    """
    for axis, factor in enumerate(_per_dim(scale, x.ndim - 2), start=2):
        x = np.repeat(x, factor, axis=axis)
    return x


def space_to_depth(x, block):
    """Each block x block patch of pixels moved into the channels, as pixel_unshuffle.

    (N, C, H, W) -> (N, C * block**2, H / block, W / block): channel
    c * block**2 + i * block + j holds row offset i, column offset j of channel c.
    """
    n, c, h, w = x.shape
    x = x.reshape(n, c, h // block, block, w // block, block)
    x = x.transpose(0, 1, 3, 5, 2, 4)
    return x.reshape(n, c * block * block, h // block, w // block)


def channel_shuffle(x, groups):
    """The channels of `groups` equal groups interleaved, as torch's channel_shuffle.

    (N, C, *spatial) is viewed as (N, groups, C / groups, *spatial), the two channel
    axes are swapped and the result flattened back: channel i of group g goes to
    position i * groups + g.
    """
    n, c, *spatial = x.shape
    x = x.reshape(n, groups, c // groups, *spatial).swapaxes(1, 2)
    return x.reshape(n, c, *spatial)


def dropout(x, p, training, rng):
    """Inverted dropout.

    In training each value is kept with probability 1 - p and scaled by 1 / (1 - p).

    Not training, or p == 0, is the identity; p == 1 drops everything. rng is a
    np.random.Generator.
    """
    if not training or p == 0:
        return x
    if p >= 1:
        return np.zeros_like(x)
    keep = rng.random(x.shape) >= p
    return np.where(keep, x / (1 - p), 0).astype(x.dtype)


def drop_path(x, p, training, rng, mode="row"):
    """Stochastic depth, as torchvision's stochastic_depth.

    In training each sample (mode "row"), or the whole batch (mode "batch"), is kept
    with probability 1 - p and scaled by 1 / (1 - p), else zeroed. Not training, or
    p == 0, is the identity. rng is a np.random.Generator.
    """
    if not training or p == 0:
        return x
    size = (x.shape[0] if mode == "row" else 1,) + (1,) * (x.ndim - 1)
    keep = rng.random(size) >= p
    return (x * (keep / (1 - p))).astype(x.dtype)


# -- recurrent layers ----------------------------------------------------------------


def lstm(
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
    """torch's nn.LSTM(batch_first=True) on x (N, L, F).

    The arrays are those of `state` under `name`, with torch's keys (weight_ih_l0, ...,
    _reverse for the second direction, weight_hr_l0 with a projection).

    Every step's output (N, L, D * H), or with `last` the last layer's final hidden
    states side by side (N, D * H), as torch.cat((h_n[-2], h_n[-1]), 1). While training,
    dropout with probability `dropout` on every layer's output but the last's.
    """
    return _recurrent(
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
    )[0]


def gru(
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
    """torch's nn.GRU(batch_first=True), as lstm is nn.LSTM."""
    return _recurrent(
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
    )[0]


def _recurrent(
    x,
    state,
    name,
    step,
    num_layers,
    bidirectional,
    dropout,
    training,
    rng,
    last,
    masks=None,
    tape=None,
):
    """The layers and directions of a recurrent layer, step by step: (output, masks).

    `step(gx, carry, w_hh, b_hh, w_hr)` is one cell: the input's share of the gates
    `gx` (computed for every step at once), the previous state `carry` (None: zeros)
    -> (new state, what its backward needs); the state's first array is the hidden
    state, the step's output. `masks` replays the dropout masks between layers (one
    per layer but the first, None for none), else they are drawn while training; each
    direction of each layer appends (its input, its steps in order, their caches) to
    `tape`, for the backward.
    """
    directions = ("", "_reverse")[: 2 if bidirectional else 1]
    steps = x.shape[1]
    drawn = []
    finals = []
    for k in range(num_layers):
        if k:
            mask = masks[k - 1] if masks is not None else None
            if mask is None and training and dropout > 0:
                mask = ((rng.random(x.shape) >= dropout) / (1 - dropout)).astype(
                    x.dtype
                )
            drawn.append(mask)
            x = x if mask is None else x * mask
        outputs, finals = [], []
        for suffix in directions:
            key = f"{name}.{{}}_l{k}{suffix}"
            w_hh = state[key.format("weight_hh")]
            gx = linear(
                x, state[key.format("weight_ih")], state.get(key.format("bias_ih"))
            )
            b_hh, w_hr = (
                state.get(key.format("bias_hh")),
                state.get(key.format("weight_hr")),
            )
            order = range(steps - 1, -1, -1) if suffix else range(steps)
            carry, caches = None, []
            y = np.empty((len(x), steps, w_hh.shape[1]), x.dtype)
            for t in order:
                carry, cache = step(gx[:, t], carry, w_hh, b_hh, w_hr)
                y[:, t] = carry[0]
                caches.append(cache)
            if tape is not None:
                tape.append((x, list(order), caches))
            outputs.append(y)
            finals.append(carry[0])
        x = np.concatenate(outputs, axis=2) if bidirectional else outputs[0]
    return (np.concatenate(finals, axis=1) if last else x), drawn


def _lstm_step(gx, carry, w_hh, b_hh, w_hr):
    """One LSTM cell, torch's equations: gates i, f, g, o; c = f * c + i * g;
    h = o * tanh(c), projected by w_hr when there is one."""
    if carry is None:
        zeros = np.zeros((len(gx), w_hh.shape[1]), gx.dtype)
        carry = zeros, np.zeros((len(gx), w_hh.shape[0] // 4), gx.dtype)
    h, c = carry
    gates = gx + linear(h, w_hh, b_hh)
    i, f, g, o = np.split(gates, 4, axis=1)
    i, f, g, o = sigmoid(i), sigmoid(f), np.tanh(g), sigmoid(o)
    c_new = f * c + i * g
    tc = np.tanh(c_new)
    m = o * tc
    h_new = m if w_hr is None else m @ w_hr.T
    return (h_new, c_new), (h, c, i, f, g, o, tc, m)


def _gru_step(gx, carry, w_hh, b_hh, w_hr):
    """One GRU cell, torch's equations: r and z gates; n = tanh(x_n + r * h_n);
    h = n + z * (h - n)."""
    h = np.zeros((len(gx), w_hh.shape[1]), gx.dtype) if carry is None else carry[0]
    gh = linear(h, w_hh, b_hh)
    xr, xz, xn = np.split(gx, 3, axis=1)
    hr, hz, hn = np.split(gh, 3, axis=1)
    r, z = sigmoid(xr + hr), sigmoid(xz + hz)
    n = np.tanh(xn + r * hn)
    return (n + z * (h - n),), (h, r, z, n, hn)


# -- activations ---------------------------------------------------------------------


def relu(x):
    """max(x, 0)."""
    return np.maximum(x, 0)


def leaky_relu(x, alpha=0.01):
    """x where x >= 0, alpha * x elsewhere."""
    return np.where(x >= 0, x, alpha * x)


def relu6(x):
    """relu capped at 6."""
    return np.clip(x, 0, 6)


def elu(x, alpha=1.0):
    """x where x > 0, alpha * (exp(x) - 1) elsewhere.

    exp only ever sees x <= 0, so it cannot overflow.
    """
    return np.where(x > 0, x, alpha * np.expm1(np.minimum(x, 0)))


def erf(x):
    """The error function, with the fractional error of erfc below 1.2e-7 everywhere.

    NumPy has no erf. This is the Chebyshev fit `erfcc` of Numerical Recipes in C (2nd
    ed., section 6.2), evaluated in float64 and returned in x's dtype.
    """
    z = np.abs(np.asarray(x, dtype=np.float64))
    t = 1.0 / (1.0 + 0.5 * z)
    poly = 0.17087277
    for c in (
        -0.82215223,
        1.48851587,
        -1.13520398,
        0.27886807,
        -0.18628806,
        0.09678418,
        0.37409196,
        1.00002368,
    ):
        poly = c + t * poly
    erfc = t * np.exp(-z * z - 1.26551223 + t * poly)
    return np.where(np.asarray(x) >= 0, 1.0 - erfc, erfc - 1.0).astype(
        np.result_type(x, np.float32)
    )


def gelu(x, approximate="none"):
    """GELU as torch computes it: exact (its default), or with approximate="tanh".

    Exact: x * Phi(x) = 0.5 * x * (1 + erf(x / sqrt(2))). The tanh form is
    0.5 * x * (1 + tanh(sqrt(2 / pi) * (x + 0.044715 * x**3))).
    """
    if approximate == "tanh":
        inner = 0.7978845608028654 * (x + 0.044715 * x * x * x)  # sqrt(2 / pi)
        return 0.5 * x * (1 + np.tanh(inner))
    return 0.5 * x * (1 + erf(x * 0.7071067811865476))  # 1 / sqrt(2)


def sigmoid(x):
    """1 / (1 + exp(-x)).

    Computed from exp(-|x|) so it never overflows and keeps its precision far out.
    """
    e = np.exp(-np.abs(x))
    return np.where(x >= 0, 1 / (1 + e), e / (1 + e))


def silu(x):
    """x * sigmoid(x), also called swish."""
    return x * sigmoid(x)


def mish(x):
    """x * tanh(softplus(x)), YOLOv4's activation.

    softplus is log(1 + exp(x)) = logaddexp(0, x), which cannot overflow.
    """
    return x * np.tanh(np.logaddexp(0, x))


def hardswish(x):
    """x * relu6(x + 3) / 6, MobileNetV3's cheap swish."""
    return x * np.clip(x + 3, 0, 6) / 6


def hardsigmoid(x):
    """relu6(x + 3) / 6, torch's hardsigmoid (MobileNetV3's gates)."""
    return np.clip(x + 3, 0, 6) / 6


def softmax(x, axis=1):
    """exp(x) normalised to sum 1 along axis.

    The max is subtracted first so exp cannot overflow.
    """
    e = np.exp(x - x.max(axis=axis, keepdims=True))
    return e / e.sum(axis=axis, keepdims=True)


# -- weight initialisation -----------------------------------------------------------


def _fans(shape):
    """torch's fan_in and fan_out of a weight.

    (out, in, *kernel) -> (in * kernel volume, out * kernel volume).
    """
    receptive = int(np.prod(shape[2:]))
    return shape[1] * receptive, shape[0] * receptive


def _fan(shape, mode):
    """torch's fan_in or fan_out of a weight, as `mode` names it."""
    fan_in, fan_out = _fans(shape)
    return fan_in if mode == "fan_in" else fan_out


def _uniform(rng, shape, bound):
    """U(-bound, bound), drawn as float32: a VGG's weights in half the memory."""
    return (rng.random(shape, dtype=np.float32) * 2 - 1) * np.float32(bound)


def uniform(rng, shape, bound):
    """U(-bound, bound), as float32: torch's start of a recurrent layer's arrays,
    bound 1/sqrt(hidden size)."""
    return _uniform(rng, shape, bound)


def kaiming_normal(rng, shape, mode="fan_in"):
    """Kaiming (He) normal with ReLU's gain: N(0, 2 / fan), as float32.

    torch's kaiming_normal_.
    """
    std = np.float32(np.sqrt(2.0 / _fan(shape, mode)))
    return rng.standard_normal(shape, dtype=np.float32) * std


def uniform_fan(rng, shape, mode="fan_in"):
    """U(-1/sqrt(fan), 1/sqrt(fan)), as float32.

    With fan_in, PyTorch's default for conv and linear weights
    (kaiming_uniform_ with a=sqrt(5)); with fan_out, EfficientNet's for
    linear weights.
    """
    return _uniform(rng, shape, 1.0 / np.sqrt(_fan(shape, mode)))


def xavier_uniform(rng, shape):
    """Xavier (Glorot) uniform: U(+-sqrt(6 / (fan_in + fan_out))), as float32.

    torch's xavier_uniform_, which starts nn.MultiheadAttention's projections.
    """
    return _uniform(rng, shape, np.sqrt(6.0 / sum(_fans(shape))))


def uniform_bias(rng, size, weight_shape):
    """PyTorch's default bias of a conv or linear layer, as float32.

    U(-1/sqrt(fan_in), 1/sqrt(fan_in)), fan_in of the layer's weight.
    """
    return _uniform(rng, (size,), 1.0 / np.sqrt(_fans(weight_shape)[0]))


def normal(rng, shape, std):
    """N(0, std^2), as float32 (torch's normal_)."""
    return rng.standard_normal(shape, dtype=np.float32) * np.float32(std)


def trunc_normal(rng, shape, std, a=-2.0, b=2.0):
    """N(0, std^2) cut to [a, b], as float32 (torch's trunc_normal_).

    The bounds are absolute, as torch's are. Values outside are drawn again
    until none is: with torchvision's bounds of +-2 and stds of 0.1 or less,
    that never happens in practice.
    """
    std = np.float32(std)
    out = rng.standard_normal(shape, dtype=np.float32) * std
    outside = (out < a) | (out > b)
    while outside.any():
        out[outside] = rng.standard_normal(int(outside.sum()), dtype=np.float32) * std
        outside = (out < a) | (out > b)
    return out
