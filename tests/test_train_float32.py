"""resnet18's float32 gradients: NumPy's error is rounding, no larger than torch's own float32 error.

The float64 gradients (both models cast, from the same float32 weights and float32
input) are the truth. For most weights both float32 results are within 3e-5 of it.
For some (seeds 5 and 16 at 64x64, batch 2) one ReLU input lies within float32
rounding of 0 (-6e-6 beside a channel maximum of 2) and falls on the other side of it
in float32; batch norm then spreads that one value's gradient over its channel (8
values in layer4), and a conv weight's gradient moves by 10-40%. At seed 5 torch's
float32 run crosses and NumPy's does not; at 16 both do. So the 4% differences
between the two float32 runs were the float32 problem, not a NumPy kernel: a kernel
bug would show as an error larger than torch's against the same truth.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from test_numpy_train_networks import batch, network, pair

pytestmark = pytest.mark.usefixtures("one_thread")


def _error(got: dict, truth: dict) -> float:
    """The largest difference over every parameter's gradient, relative to that gradient's largest value."""
    return max(float(np.abs(got[k] - v).max() / np.abs(v).max()) for k, v in truth.items())


@pytest.mark.parametrize("seed", [0, 1, 2, 5, 16])
def test_numpys_float32_gradients_are_as_close_to_float64_as_torchs(seed):
    net = network("resnet18", 64)
    (x,) = batch(net, 2, np.float32, seed)
    g = np.random.default_rng(1).standard_normal((2, 1000))
    t64, _, _ = pair("resnet18", 64, np.float64, seed)
    t32, _, n32 = pair("resnet18", 64, np.float32, seed)
    grads = {}
    for name, model, dtype in (("truth", t64, torch.float64), ("torch", t32, torch.float32)):
        model.train()
        model(torch.tensor(x).to(dtype)).backward(torch.tensor(g).to(dtype))
        grads[name] = {k: p.grad.double().numpy() for k, p in model.named_parameters()}
    n32.train()
    n32(x)
    n32.backward(g.astype(np.float32))
    assert all(v.dtype == np.float32 for v in n32.grads.values())
    grads["numpy"] = {k: v.astype(np.float64) for k, v in n32.grads.items()}
    numpy_error, torch_error = _error(grads["numpy"], grads["truth"]), _error(grads["torch"], grads["truth"])
    assert numpy_error <= max(1e-4, 2 * torch_error), (numpy_error, torch_error)
    if seed == 5:  # torch's run crosses a kink and NumPy's does not
        assert torch_error > 1e-2 > 1e-4 > numpy_error
