"""Losses, optimisers and learning-rate schedules of the NumPy runtime against torch.

Losses: the value and the gradient of the logits equal torch.nn.functional's and
autograd's. Optimisers: from the same float32 weights and the same gradients at
every step, N steps leave the weights (and the optimiser state) equal to
torch.optim's within 1e-5 relative, for each optimiser and setting; a parameter
without a gradient at a step is left alone, as torch leaves it. Schedules: the
learning rate of every epoch equals torch.optim.lr_scheduler's.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F  # noqa: N812 (the usual torch spelling)
from hypothesis import given, settings
from hypothesis import strategies as st

from archc.codegen.runtime import numpy_backward as B  # noqa: N812 (short, used on every line)

pytestmark = pytest.mark.usefixtures("one_thread")
SEEDS = st.integers(0, 2**32 - 1)


def rand(rng, *shape):
    return rng.standard_normal(shape).astype(np.float32)


def loss_and_grad(function, logits, *rest):
    t = torch.tensor(logits, requires_grad=True)
    loss = function(t, *rest)
    loss.backward()
    return loss.item(), t.grad.numpy()


def check_loss(ours, theirs, count, logits):
    """Equal values and gradients, to torch's float32 rounding.

    The loss to that of its terms, which are as large as the logits; the gradient to
    that of its scale, 1 / count at most (count: the values the mean is over; a
    saturated sigmoid rounds to 1 in float32, not here).
    """
    (loss, grad), (expected_loss, expected_grad) = ours, theirs
    assert isinstance(loss, float)
    assert loss == pytest.approx(expected_loss, rel=1e-5, abs=1e-6 * max(1.0, float(np.abs(logits).max())))
    assert grad.dtype == expected_grad.dtype
    np.testing.assert_allclose(grad, expected_grad, rtol=1e-4, atol=1e-6 / count)


# -- losses ----------------------------------------------------------------------------


@settings(max_examples=40, deadline=None)
@given(st.integers(0, 2), st.sampled_from([0.0, 0.1, 0.3]), st.booleans(), st.floats(0.1, 10), SEEDS)
def test_cross_entropy(positions, smoothing, probabilities, scale, seed):
    rng = np.random.default_rng(seed)
    n, c = int(rng.integers(1, 6)), int(rng.integers(2, 7))
    extra = tuple(rng.integers(1, 4, positions))
    logits = rand(rng, n, c, *extra) * scale
    if probabilities:
        target = np.moveaxis(rng.dirichlet(np.ones(c), (n, *extra)), -1, 1).astype(np.float32)
        torch_target = torch.tensor(target)
    else:
        target = rng.integers(0, c, (n, *extra))
        torch_target = torch.tensor(target)
    expected = loss_and_grad(lambda t: F.cross_entropy(t, torch_target, label_smoothing=smoothing), logits)
    check_loss(B.cross_entropy(logits, target, smoothing), expected, logits.size // c, logits)


@settings(max_examples=30, deadline=None)
@given(st.integers(1, 4), SEEDS)
def test_mse_and_binary_cross_entropy_with_logits(rank, seed):
    rng = np.random.default_rng(seed)
    shape = tuple(rng.integers(1, 5, rank))
    prediction, target = rand(rng, *shape) * 5, rand(rng, *shape)
    expected = loss_and_grad(lambda t: F.mse_loss(t, torch.tensor(target)), prediction)
    check_loss(B.mse_loss(prediction, target), expected, prediction.size, prediction)
    labels = rng.random(shape).astype(np.float32)  # soft labels in [0, 1]; 0 and 1 included below
    labels.flat[0] = 1.0
    labels.flat[-1] = 0.0
    expected = loss_and_grad(lambda t: F.binary_cross_entropy_with_logits(t, torch.tensor(labels)), prediction * 10)
    check_loss(B.binary_cross_entropy_with_logits(prediction * 10, labels), expected, labels.size, prediction * 10)


def test_cross_entropy_does_not_overflow():
    logits = np.array([[1000.0, -1000.0, 0.0]], np.float32)
    expected = loss_and_grad(lambda t: F.cross_entropy(t, torch.tensor([1])), logits)
    check_loss(B.cross_entropy(logits, np.array([1])), expected, 1, logits)


# -- optimisers ------------------------------------------------------------------------

SHAPES = {"conv.weight": (4, 3, 3, 3), "conv.bias": (4,), "fc.weight": (5, 4), "fc.bias": (5,)}
STEPS = 6


def run_both(ours, torch_optimizer, seed):
    """STEPS steps of our step function and of the torch optimizer from the same weights and gradients.

    fc.bias has no gradient at the third step, as a parameter unused by a batch.
    """
    rng = np.random.default_rng(seed)
    params = {name: rand(rng, *shape) for name, shape in SHAPES.items()}
    tensors = {name: torch.nn.Parameter(torch.tensor(value)) for name, value in params.items()}
    optimizer = torch_optimizer(list(tensors.values()))
    state = {}
    for step in range(STEPS):
        grads = {name: rand(rng, *shape) for name, shape in SHAPES.items()}
        if step == 2:
            del grads["fc.bias"]
        optimizer.zero_grad()
        for name, tensor in tensors.items():
            tensor.grad = torch.tensor(grads[name]) if name in grads else None
        optimizer.step()
        ours(params, grads, state)
        B.zero_grad(grads)
        assert grads == {}
    for name, tensor in tensors.items():
        assert params[name].dtype == np.float32
        np.testing.assert_allclose(params[name], tensor.detach().numpy(), rtol=1e-5, atol=1e-6)
    return state, optimizer.state, tensors


SGD_SETTINGS = [
    dict(lr=0.1),
    dict(lr=0.1, weight_decay=1e-2),
    dict(lr=0.05, momentum=0.9),
    dict(lr=0.05, momentum=0.9, dampening=0.3, weight_decay=5e-4),
    dict(lr=0.05, momentum=0.9, nesterov=True),
    dict(lr=0.05, momentum=0.5, nesterov=True, weight_decay=1e-3),
]


@pytest.mark.parametrize("options", SGD_SETTINGS, ids=lambda o: ",".join(f"{k}={v}" for k, v in o.items()))
@pytest.mark.parametrize("seed", [0, 1])
def test_sgd_steps_equal_torch(options, seed):
    state, torch_state, tensors = run_both(
        lambda p, g, s: B.sgd_step(p, g, s, **options), lambda ps: torch.optim.SGD(ps, **options), seed
    )
    if options.get("momentum"):
        for name, tensor in tensors.items():
            np.testing.assert_allclose(state[name], torch_state[tensor]["momentum_buffer"], rtol=1e-5, atol=1e-6)


ADAM_SETTINGS = [
    ("adam", dict(lr=1e-2)),
    ("adam", dict(lr=1e-2, betas=(0.8, 0.99), eps=1e-6)),
    ("adam", dict(lr=1e-2, weight_decay=0.1)),
    ("adamw", dict(lr=1e-2)),
    ("adamw", dict(lr=1e-2, weight_decay=0.1, betas=(0.5, 0.9))),
    ("adamw", dict(lr=1e-3, weight_decay=0.0, eps=1e-3)),
]


@pytest.mark.parametrize(("kind", "options"), ADAM_SETTINGS, ids=lambda o: str(o))
@pytest.mark.parametrize("seed", [0, 1])
def test_adam_and_adamw_steps_equal_torch(kind, options, seed):
    ours = B.adamw_step if kind == "adamw" else B.adam_step
    theirs = torch.optim.AdamW if kind == "adamw" else torch.optim.Adam
    state, torch_state, tensors = run_both(
        lambda p, g, s: ours(p, g, s, **options), lambda ps: theirs(ps, **options), seed
    )
    for name, tensor in tensors.items():
        expected = torch_state[tensor]
        assert state[name]["step"] == int(expected["step"])
        for key in ("exp_avg", "exp_avg_sq"):
            np.testing.assert_allclose(state[name][key], expected[key], rtol=1e-5, atol=1e-8)


# -- schedules -------------------------------------------------------------------------


@pytest.mark.parametrize(("step_size", "gamma"), [(3, 0.1), (1, 0.5), (4, 0.9)])
def test_step_lr_equals_torch(step_size, gamma):
    optimizer = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=0.3)
    schedule = torch.optim.lr_scheduler.StepLR(optimizer, step_size, gamma)
    for epoch in range(12):
        assert B.step_lr(0.3, epoch, step_size, gamma) == pytest.approx(schedule.get_last_lr()[0], rel=1e-12)
        optimizer.step()
        schedule.step()


@pytest.mark.parametrize(("t_max", "eta_min"), [(5, 0.0), (10, 1e-3), (1, 0.01)])
def test_cosine_lr_equals_torch(t_max, eta_min):
    optimizer = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=0.3)
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, t_max, eta_min)
    for epoch in range(3 * t_max + 1):  # past t_max the rate rises again, in both
        assert B.cosine_lr(0.3, epoch, t_max, eta_min) == pytest.approx(schedule.get_last_lr()[0], rel=1e-9, abs=1e-12)
        optimizer.step()
        schedule.step()
