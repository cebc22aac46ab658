"""The NumPy conv and its backward take one of two layouts by the output's row length: the batch
first (im2col in chunks, numpy_kernels._chunks), or for rows under 32 the batch last
(_batch_last_conv, _batch_last_columns, _batch_last_input_grad), where the unrolling copy and col2im
run along rows of width x batch values. Both give torch's output and gradients; the random layer
tests draw mostly small maps, so each layout is held to torch here at sizes that choose it."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F  # noqa: N812

from archc.codegen.runtime import numpy_backward as B  # noqa: N812
from archc.codegen.runtime import numpy_kernels as K  # noqa: N812

CASES = [  # x shape, filters, kernel, stride, padding, dilation: output rows of 48, 40, 35 (batch first) ...
    ((6, 3, 96, 96), 16, 7, 2, 3, 1),
    ((6, 32, 40, 40), 32, 3, 1, 1, 1),
    ((5, 8, 70, 70), 12, 5, 2, 2, 1),
    ((64, 6, 14, 14), 16, 5, 1, 0, 1),  # ... and 10 (LeNet-5's C3), 24, 7, 9: batch last
    ((9, 40, 20, 24), 24, 3, 1, 1, 1),
    ((8, 64, 14, 14), 32, 3, 2, 1, 1),
    ((3, 5, 17, 15), 7, 3, (2, 1), (1, 2), 2),
]


def close(got, want, rtol=1e-5):
    want = want.detach().numpy()
    assert got.shape == want.shape
    assert np.abs(got - want).max() <= rtol * np.abs(want).max()


@pytest.mark.parametrize(("shape", "filters", "kernel", "stride", "padding", "dilation"), CASES)
def test_conv_and_its_backward_give_torchs_in_either_layout(shape, filters, kernel, stride, padding, dilation):
    rng = np.random.default_rng(0)
    x = rng.standard_normal(shape, dtype=np.float32)
    w = rng.standard_normal((filters, shape[1], kernel, kernel), dtype=np.float32)
    b = rng.standard_normal(filters, dtype=np.float32)
    xt, wt, bt = (torch.from_numpy(a).requires_grad_() for a in (x, w, b))
    yt = F.conv2d(xt, wt, bt, stride, padding, dilation)
    close(K.conv(x, w, b, stride, padding, dilation), yt)
    grad = rng.standard_normal(yt.shape, dtype=np.float32)
    yt.backward(torch.from_numpy(grad))
    dx, dw, db = B.conv_backward(grad, x, w, b, stride, padding, dilation)
    close(dx, xt.grad)
    close(dw, wt.grad)
    close(db, bt.grad)
