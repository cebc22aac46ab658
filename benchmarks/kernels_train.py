"""The training kernels of the NumPy runtime, one by one, against torch's own kernels.

    python -m benchmarks.kernels_train [--threads N] [--repeats R] [--quick]

Each case is a layer of ResNet-18 at batch 8 (224 x 224) or of LeNet-5 at
batch 64, plus MobileNet's depthwise conv: the forward kernel and its backward
(numpy_kernels.py / numpy_backward.py) against the aten operators autograd
calls for the same layer (F.conv2d and aten.convolution_backward,
native_batch_norm and its backward, max_pool2d_with_indices and its backward,
...). Both run in this one process with the same number of threads (1 by
default: what each library does per core; OpenBLAS's and OpenMP's workers would
otherwise spin against each other), interleaved, and the table gives medians
and the median of the per-round ratios: of CPU times (time.process_time) with
one thread, which other load on the machine disturbs far less than wall times,
else of wall times. `count` is how many layers of the
step (ResNet-18's, LeNet-5's) run the case at that shape.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

if __package__ in (None, ""):  # run as a script: make `benchmarks` and `archc` importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

THREAD_VARIABLES = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")

# name, (N, C, H, W) of the input, settings; count: how many such layers the step has
CONVS = [  # (name, count, x shape, filters, kernel, stride, padding, groups)
    ("resnet conv1 7x7/2 3->64", 1, (8, 3, 224, 224), 64, 7, 2, 3, 1),
    ("resnet 3x3 64 @56", 4, (8, 64, 56, 56), 64, 3, 1, 1, 1),
    ("resnet 3x3/2 64->128 @56", 1, (8, 64, 56, 56), 128, 3, 2, 1, 1),
    ("resnet 1x1/2 64->128 @56", 1, (8, 64, 56, 56), 128, 1, 2, 0, 1),
    ("resnet 3x3 128 @28", 3, (8, 128, 28, 28), 128, 3, 1, 1, 1),
    ("resnet 3x3 256 @14", 3, (8, 256, 14, 14), 256, 3, 1, 1, 1),
    ("resnet 3x3 512 @7", 3, (8, 512, 7, 7), 512, 3, 1, 1, 1),
    ("lenet C1 5x5 1->6", 1, (64, 1, 32, 32), 6, 5, 1, 0, 1),
    ("lenet C3 5x5 6->16", 1, (64, 6, 14, 14), 16, 5, 1, 0, 1),
    ("mobilenet dw 3x3 96 @112", 1, (8, 96, 112, 112), 96, 3, 2, 1, 96),
]
MAPS = [  # (name, shape, {kernel: how many layers of the step run it at this shape})
    ("resnet @112 x 64", (8, 64, 112, 112), {"batch_norm": 1, "relu": 1, "max_pool": 1}),
    ("resnet @56 x 64", (8, 64, 56, 56), {"batch_norm": 4, "relu": 4}),
    ("lenet @28 x 6", (64, 6, 28, 28), {"tanh": 1, "avg_pool": 1}),
]
LINEARS = [("resnet fc 512->1000", 1, 8, 512, 1000), ("lenet F5 400->120", 1, 64, 400, 120)]
QUICK_SCALE = 8  # quick mode divides every spatial size and the batch by about this


def _shrink(shape):
    n, c, *spatial = shape
    return (max(1, n // QUICK_SCALE), c, *(max(7, s // QUICK_SCALE) for s in spatial))


def _batch_norm(rand, shape):
    """batch_norm in training and its backward, against native_batch_norm and its backward."""
    import numpy as np
    import torch

    from archc.codegen.runtime import numpy_backward as B  # noqa: N812
    from archc.codegen.runtime import numpy_kernels as K  # noqa: N812

    c = shape[1]
    x, g = rand(*shape), rand(*shape)
    state = {"bn.weight": rand(c), "bn.bias": rand(c), "bn.running_mean": np.zeros(c, np.float32)}
    state.update({"bn.running_var": np.ones(c, np.float32), "bn.num_batches_tracked": np.zeros((), np.int64)})
    xt, gt = torch.from_numpy(x), torch.from_numpy(g)
    wt, bt, mt, vt = (
        torch.from_numpy(state[f"bn.{key}"]).clone() for key in ("weight", "bias", "running_mean", "running_var")
    )
    aten = torch.ops.aten
    _, mean, invstd = aten.native_batch_norm(xt, wt, bt, mt, vt, True, 0.1, 1e-5)
    return [
        (
            "",
            {
                "numpy": lambda: K.batch_norm(x, state, "bn", True),
                "torch": lambda: aten.native_batch_norm(xt, wt, bt, mt, vt, True, 0.1, 1e-5),
            },
        ),
        (
            " backward",
            {
                "numpy": lambda: B.batch_norm_backward(g, x, state, "bn", True),
                "torch": lambda: aten.native_batch_norm_backward(
                    gt, xt, wt, mt, vt, mean, invstd, True, 1e-5, [True, True, True]
                ),
            },
        ),
    ]


def _relu(rand, shape):
    """relu and its backward, against relu and threshold_backward (what autograd runs)."""
    import torch

    from archc.codegen.runtime import numpy_backward as B  # noqa: N812
    from archc.codegen.runtime import numpy_kernels as K  # noqa: N812

    x, g = rand(*shape), rand(*shape)
    xt, gt = torch.from_numpy(x), torch.from_numpy(g)
    return [
        ("", {"numpy": lambda: K.relu(x), "torch": lambda: torch.relu(xt)}),
        (
            " backward",
            {
                "numpy": lambda: B.relu_backward(g, x),
                "torch": lambda: torch.ops.aten.threshold_backward(gt, xt, 0),
            },
        ),
    ]


def _tanh(rand, shape):
    """tanh and its backward, against tanh and tanh_backward (which takes the output)."""
    import numpy as np
    import torch

    from archc.codegen.runtime import numpy_backward as B  # noqa: N812

    x, g = rand(*shape), rand(*shape)
    xt, gt = torch.from_numpy(x), torch.from_numpy(g)
    yt = torch.tanh(xt)
    return [
        ("", {"numpy": lambda: np.tanh(x), "torch": lambda: torch.tanh(xt)}),
        (
            " backward",
            {"numpy": lambda: B.tanh_backward(g, x), "torch": lambda: torch.ops.aten.tanh_backward(gt, yt)},
        ),
    ]


def _max_pool(rand, shape):
    """3x3 /2 pad 1 max pooling (ResNet's) and its backward, against max_pool2d_with_indices'."""
    import torch

    from archc.codegen.runtime import numpy_backward as B  # noqa: N812
    from archc.codegen.runtime import numpy_kernels as K  # noqa: N812

    aten = torch.ops.aten
    x = rand(*shape)
    g = rand(*K.max_pool(x, 3, 2, 1).shape)
    xt, gt = torch.from_numpy(x), torch.from_numpy(g)
    _, indices = aten.max_pool2d_with_indices(xt, [3, 3], [2, 2], [1, 1])
    return [
        (
            " 3x3/2",
            {
                "numpy": lambda: K.max_pool(x, 3, 2, 1),
                "torch": lambda: aten.max_pool2d_with_indices(xt, [3, 3], [2, 2], [1, 1]),
            },
        ),
        (
            " backward 3x3/2",
            {
                "numpy": lambda: B.max_pool_backward(g, x, 3, 2, 1),
                "torch": lambda: aten.max_pool2d_with_indices_backward(
                    gt, xt, [3, 3], [2, 2], [1, 1], [1, 1], False, indices
                ),
            },
        ),
    ]


def _avg_pool(rand, shape):
    """2x2 average pooling (LeNet's) and its backward, against avg_pool2d's."""
    import torch
    import torch.nn.functional as F  # noqa: N812

    from archc.codegen.runtime import numpy_backward as B  # noqa: N812
    from archc.codegen.runtime import numpy_kernels as K  # noqa: N812

    x = rand(*shape)
    g = rand(*K.avg_pool(x, 2).shape)
    xt, gt = torch.from_numpy(x), torch.from_numpy(g)
    return [
        (" 2x2", {"numpy": lambda: K.avg_pool(x, 2), "torch": lambda: F.avg_pool2d(xt, 2)}),
        (
            " backward 2x2",
            {
                "numpy": lambda: B.avg_pool_backward(g, shape, 2),
                "torch": lambda: torch.ops.aten.avg_pool2d_backward(gt, xt, [2, 2], [2, 2], [0, 0], False, True, None),
            },
        ),
    ]


MAP_KERNELS = {"batch_norm": _batch_norm, "relu": _relu, "tanh": _tanh, "max_pool": _max_pool, "avg_pool": _avg_pool}


def cases(quick: bool):
    """(name, count, {"numpy": fn, "torch": fn}) for every kernel, forward and backward."""
    import numpy as np
    import torch
    import torch.nn.functional as F  # noqa: N812

    from archc.codegen.runtime import numpy_backward as B  # noqa: N812
    from archc.codegen.runtime import numpy_kernels as K  # noqa: N812

    aten = torch.ops.aten
    rng = np.random.default_rng(0)

    def rand(*shape):
        return rng.standard_normal(shape, dtype=np.float32)

    out = []
    for name, count, shape, f, k, stride, pad, groups in CONVS:
        shape = _shrink(shape) if quick else shape
        x, w = rand(*shape), rand(f, shape[1] // groups, k, k)
        y = K.conv(x, w, None, stride, pad, 1, groups)
        g = rand(*y.shape)
        first = "conv1" in name or "C1" in name  # a network's first layer needs no input gradient
        xt, wt, gt = map(torch.from_numpy, (x, w, g))
        settings = ([stride] * 2, [pad] * 2, [1, 1], False, [0, 0], groups, [not first, True, False])
        out.append(
            (
                f"conv {name}",
                count,
                {
                    "numpy": lambda x=x, w=w, s=stride, p=pad, gr=groups: K.conv(x, w, None, s, p, 1, gr),
                    "torch": lambda xt=xt, wt=wt, s=stride, p=pad, gr=groups: F.conv2d(xt, wt, None, s, p, 1, gr),
                },
            )
        )
        out.append(
            (
                f"conv backward {name}",
                count,
                {
                    "numpy": lambda g=g, x=x, w=w, s=stride, p=pad, gr=groups, first=first: B.conv_backward(
                        g, x, w, None, s, p, 1, gr, input_grad=not first
                    ),
                    "torch": lambda gt=gt, xt=xt, wt=wt, settings=settings: aten.convolution_backward(
                        gt, xt, wt, None, *settings
                    ),
                },
            )
        )
    for name, shape, counts in MAPS:
        shape = _shrink(shape) if quick else shape
        for kernel, count in counts.items():
            for suffix, functions in MAP_KERNELS[kernel](rand, shape):
                out.append((f"{kernel}{suffix} {name}", count, functions))
    for name, count, n, i, o in LINEARS:
        x, w, b, g = rand(n, i), rand(o, i), rand(o), rand(n, o)
        xt, wt, bt, gt = map(torch.from_numpy, (x, w, b, g))
        out += [
            (
                f"linear + backward {name}",
                count,
                {
                    "numpy": lambda x=x, w=w, b=b, g=g: (K.linear(x, w, b), B.linear_backward(g, x, w, b)),
                    "torch": lambda xt=xt, wt=wt, bt=bt, gt=gt: (
                        F.linear(xt, wt, bt),
                        gt @ wt,
                        gt.T @ xt,
                        gt.sum(0),
                    ),
                },
            )
        ]
    return out


def measure(quick: bool, repeats: int, clock) -> list[list]:
    """The table's rows: case, count, NumPy and torch medians and their paired ratio."""
    from .common import interleaved, median, ms, paired, ratio

    rows = []
    for name, count, functions in cases(quick):
        times = interleaved(functions, repeats, clock=clock)
        rows.append(
            [
                name,
                count,
                ms(median(times["numpy"])),
                ms(median(times["torch"])),
                ratio(paired(times["numpy"], times["torch"])),
            ]
        )
    return rows


def main(argv=None) -> str:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--threads", type=int, default=1, help="threads of each library (default 1)")
    parser.add_argument("--repeats", type=int, default=None, help="rounds per kernel (default 7, quick 1)")
    parser.add_argument("--quick", action="store_true", help="tiny sizes, one round: proves it runs")
    args = parser.parse_args(argv)
    for variable in THREAD_VARIABLES:  # read by OpenBLAS when numpy is first imported
        os.environ[variable] = str(args.threads)
    import torch

    from .common import table

    torch.set_num_threads(args.threads)
    repeats = args.repeats or (1 if args.quick else 7)
    clock = time.process_time if args.threads == 1 else time.perf_counter  # see the docstring
    rows = measure(args.quick, repeats, clock)
    text = (
        f"Training kernels, NumPy against torch, {args.threads} thread(s) each, "
        f"{'CPU' if args.threads == 1 else 'wall'} times, medians of {repeats} interleaved rounds"
        + (" (QUICK: tiny sizes, the figures mean nothing)" if args.quick else "")
        + ".\n\n"
    )
    text += table(["kernel", "count", "NumPy", "torch", "NumPy / torch"], rows)
    print(text)
    return text


if __name__ == "__main__":
    main()
