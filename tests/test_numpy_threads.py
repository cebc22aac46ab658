"""The runtime's passes outside BLAS run in threads (numpy_kernels._in_threads): with three threads
and arrays over the 1 MiB bound, the split kernels still compute torch's results.

Speed is measured in benchmarks/train_step.py; here only what the threads compute, and that they
split the work: each thread's part is recorded.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
import torch
import torch.nn.functional as F  # noqa: N812

from archc.codegen.runtime import numpy_backward as B  # noqa: N812
from archc.codegen.runtime import numpy_kernels as K  # noqa: N812


@pytest.fixture
def three_threads(monkeypatch):
    """_in_threads with a pool of three, whatever the machine; the parts each call made."""
    calls = []
    original = K._in_threads

    def recording(task, count, size, *args):
        parts = []

        def task_recorded(first, last, *rest):
            parts.append((first, last))
            task(first, last, *rest)

        original(task_recorded, count, size, *args)
        calls.append(sorted(parts))

    recording.threads, recording.pool = 3, ThreadPoolExecutor(3)  # the module's name now reads these
    monkeypatch.setattr(K, "_in_threads", recording)
    monkeypatch.setattr(B, "_in_threads", recording)
    yield calls
    recording.pool.shutdown()


def close(got, want, rtol=1e-5):
    want = want.detach().numpy()
    assert got.shape == want.shape
    assert np.abs(got - want).max() <= rtol * np.abs(want).max()


def test_in_threads_covers_the_range_once_in_one_part_per_thread(three_threads):
    seen = np.zeros(10, int)

    def mark(first, last, seen):
        seen[first:last] += 1

    K._in_threads(mark, 10, 2**20, seen)
    K._in_threads(mark, 10, 2**20 - 1, seen)  # under the bound: one part, in the caller
    K._in_threads(mark, 2, 2**20, seen)  # fewer items than threads: one part an item
    assert seen.tolist() == [3, 3, 2, 2, 2, 2, 2, 2, 2, 2]
    assert three_threads == [[(0, 3), (3, 6), (6, 10)], [(0, 10)], [(0, 1), (1, 2)]]


@pytest.mark.parametrize(
    ("shape", "filters", "kernel", "stride", "padding"),
    [
        ((6, 3, 96, 96), 16, 7, 2, 3),
        ((6, 32, 40, 40), 32, 3, 1, 1),
        ((5, 8, 70, 70), 12, 5, 2, 2),
        ((64, 6, 14, 14), 16, 5, 1, 0),  # LeNet-5's C3: output rows of 10, the batch-last input gradient
        ((9, 40, 20, 24), 24, 3, 1, 1),
        ((16, 64, 20, 20), 32, 3, 1, 1),  # batch last, over 1 MiB: its copies and col2im in threads
    ],
)
def test_conv_and_its_backward_in_threads_give_torchs(three_threads, shape, filters, kernel, stride, padding):
    rng = np.random.default_rng(0)
    x = rng.standard_normal(shape, dtype=np.float32)
    w = rng.standard_normal((filters, shape[1], kernel, kernel), dtype=np.float32)
    xt, wt = torch.from_numpy(x).requires_grad_(), torch.from_numpy(w).requires_grad_()
    yt = F.conv2d(xt, wt, None, stride, padding)
    close(K.conv(x, w, None, stride, padding), yt)
    if yt.shape[-1] >= 32:  # the unrolled windows, copied in three parts (shorter rows: _batch_last_conv)
        assert any(len(parts) == 3 for parts in three_threads)
    grad = rng.standard_normal(yt.shape, dtype=np.float32)
    yt.backward(torch.from_numpy(grad))
    three_threads.clear()
    dx, dw, _ = B.conv_backward(grad, x, w, None, stride, padding)
    close(dx, xt.grad)
    close(dw, wt.grad)
    if grad.shape[-1] >= 32:  # col2im by samples (shorter rows: _batch_last_input_grad)
        assert [(0, 2), (2, 4), (4, 6)] in three_threads or [(0, 1), (1, 3), (3, 5)] in three_threads


@pytest.mark.parametrize(("kernel", "stride", "padding", "ceil"), [(3, 2, 1, False), (2, 2, 0, True), (3, 1, 1, False)])
def test_max_pool_and_its_backward_in_threads_give_torchs(three_threads, kernel, stride, padding, ceil):
    rng = np.random.default_rng(1)
    x = rng.standard_normal((7, 16, 51, 49), dtype=np.float32)
    x[:, :, ::4, ::4] = 2.5  # ties: torch routes to the first maximum of a window
    xt = torch.from_numpy(x).requires_grad_()
    yt = F.max_pool2d(xt, kernel, stride, padding, ceil_mode=ceil)
    close(K.max_pool(x, kernel, stride, padding, ceil_mode=ceil), yt, 0)
    assert three_threads[-1] == [(0, 2), (2, 4), (4, 7)]
    grad = rng.standard_normal(yt.shape, dtype=np.float32)
    yt.backward(torch.from_numpy(grad))
    close(B.max_pool_backward(grad, x, kernel, stride, padding, ceil_mode=ceil), xt.grad)
    assert three_threads[-1] == [(0, 2), (2, 4), (4, 7)]


@pytest.mark.parametrize("shape", [(6, 40, 36, 36), (3000, 130)])
def test_batch_norm_in_training_and_its_backward_in_threads_give_torchs(three_threads, shape):
    rng = np.random.default_rng(2)
    c = shape[1]
    x = (3 + 2 * rng.standard_normal(shape)).astype(np.float32)
    state = {
        "bn.weight": rng.standard_normal(c).astype(np.float32),
        "bn.bias": rng.standard_normal(c).astype(np.float32),
        "bn.running_mean": np.zeros(c, np.float32),
        "bn.running_var": np.ones(c, np.float32),
        "bn.num_batches_tracked": np.array(0),
    }
    xt = torch.from_numpy(x).requires_grad_()
    wt, bt = (torch.from_numpy(state[f"bn.{k}"].copy()).requires_grad_() for k in ("weight", "bias"))
    mean, var = torch.zeros(c), torch.ones(c)
    yt = F.batch_norm(xt, mean, var, wt, bt, training=True)
    close(K.batch_norm(x, state, "bn", True), yt)
    close(state["bn.running_mean"], mean)
    close(state["bn.running_var"], var)
    assert [(0, 13), (13, 26), (26, 40)] in three_threads or [(0, 43), (43, 86), (86, 130)] in three_threads
    grad = rng.standard_normal(shape).astype(np.float32)
    yt.backward(torch.from_numpy(grad))
    dx, dw, db = B.batch_norm_backward(grad, x, state, "bn", True)
    close(dx, xt.grad, 1e-4)
    close(dw, wt.grad, 1e-4)
    close(db, bt.grad, 1e-4)


def test_relu_and_its_backward_in_threads_give_torchs(three_threads):
    rng = np.random.default_rng(3)
    x = rng.standard_normal((5, 16, 64, 64), dtype=np.float32)
    x[:, :, ::7] = 0  # torch's gradient at 0 is 0
    xt = torch.from_numpy(x).requires_grad_()
    yt = F.relu(xt)
    close(K.relu(x), yt, 0)
    grad = rng.standard_normal(x.shape, dtype=np.float32)
    yt.backward(torch.from_numpy(grad))
    close(B.relu_backward(grad, x), xt.grad, 0)
    assert three_threads == [[(0, 1), (1, 3), (3, 5)]] * 2
