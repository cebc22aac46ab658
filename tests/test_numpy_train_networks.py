"""Generated NumPy models that train, against the same networks in torch autograd and torch.optim.

The PyTorch target of the same spec is the oracle: it loads the NumPy model's
weights by key, and torch's autograd and optimisers give the figures. Each
network runs on a small input (the spec's input override) and a batch of 2-4.

- lenet5 and mnist_cnn in float32: one forward and backward in training mode
  gives torch's gradient of every parameter and of the input (1e-4 relative).
- All five networks in float64 (both models cast): the same in training mode
  (batch norm on batch statistics) and, for two, in eval mode (running ones);
  float64 because in float32 a value near a ReLU's or max pooling's kink can
  fall on the other side of it in one of the two, and batch norm spreads that
  one value's gradient over its channel (1-40% in resnet18 for some seeds, in torch's
  float32 run as in NumPy's: tests/test_train_float32.py).
- Ten steps of SGD (momentum, Nesterov, weight decay) and of AdamW leave every
  weight and running statistic equal to torch's (1e-4 relative); mobilenet_v2's
  SGD at a learning rate where its trajectory is well-conditioned
  (tests/test_train_conditioning.py).
- Random networks (tests/test_codegen_random.py's, drawn by hypothesis) give
  torch's gradients of every input and parameter, and float64 finite differences
  agree with backward on a small network.

Dropout draws its masks from the NumPy model's generator, not torch's, so the
networks with dropout (mobilenet_v2, googlenet) are compared with p=0 (the spec's
`dropout: 0.2` rewritten); dropout's mask is tested on its own at the end.
"""

from __future__ import annotations

import functools
import re
from pathlib import Path

import numpy as np
import pytest
import torch
from codegen_util import build, load_module, randomise_batch_norm
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from test_codegen_random import random_spec

import archc
from archc.codegen import generate

pytestmark = pytest.mark.usefixtures("one_thread")

SPECS = Path(__file__).parent.parent / "specs"
NETWORKS = {"lenet5": None, "mnist_cnn": None, "resnet18": 64, "mobilenet_v2": 64, "googlenet": 64}


@functools.cache
def network(spec: str, size: int | None = None):
    """The spec analysed, at size x size when given, with any dropout at p=0."""
    text = (SPECS / f"{spec}.arch").read_text()
    text, count = re.subn(r"(dropout[^:\n]*:\s*)0\.2\b", r"\g<1>0", text)
    assert count or spec not in ("mobilenet_v2", "googlenet"), spec
    net = archc.loads(text, f"{spec}.arch", base=SPECS)
    if size is None:
        return net
    (name, shape), *_ = net.inputs.items()
    return archc.loads(text, f"{spec}.arch", base=SPECS, inputs={name: (shape[0], size, size)})


def pair(spec: str, size: int | None, dtype, seed: int = 0):
    """(torch model, NumPy module, NumPy model) with the same weights, in `dtype`."""
    net = network(spec, size)
    torch.manual_seed(seed)
    tmodel, _, _ = build(net, "torch")
    randomise_batch_norm(tmodel, seed)
    module = load_module(generate(net, "numpy").code)
    nmodel = module.build_model()
    if dtype == np.float64:
        tmodel.double()
        nmodel.state = {k: v.detach().numpy().copy() for k, v in tmodel.state_dict().items()}
    else:
        nmodel.load_state_dict({k: v.detach() for k, v in tmodel.state_dict().items()})
    return tmodel, module, nmodel


def float64_models(net, seed: int = 0):
    """(torch model, NumPy model) of an analysed network, the same weights, both in float64."""
    torch.manual_seed(seed)
    tmodel, _, _ = build(net, "torch")
    tmodel.double()
    nmodel = load_module(generate(net, "numpy").code).build_model()
    nmodel.load_state_dict({k: v.detach().numpy().copy() for k, v in tmodel.state_dict().items()})
    nmodel.state = {k: v.astype(np.float64) for k, v in nmodel.state.items()}  # load casts to its float32
    return tmodel, nmodel


def assert_close(got, want, what: str, scale: float = 0.0, rtol: float = 1e-4) -> None:
    """Every value within rtol of the largest of `want` (or of `scale`, where a gradient that is 0
    in exact arithmetic, a bias before batch norm, is rounding noise in both)."""
    want = np.asarray(want)
    assert got.shape == want.shape, what
    tolerance = rtol * max(float(np.abs(want).max(initial=0)), scale)
    assert float(np.abs(got - want).max(initial=0)) <= tolerance, what


def compare_gradients(tmodel, nmodel, inputs, dtype, train: bool) -> None:
    """One forward and backward of both models from the same batch and output gradient."""
    tmodel.train(train)
    nmodel.train(train)
    nmodel.requires_grad = True  # eval mode too
    xs = [torch.tensor(x, requires_grad=x.dtype.kind == "f") for x in inputs]
    outs = tmodel(*xs)
    outs = outs if isinstance(outs, tuple) else (outs,)
    rng = np.random.default_rng(1)
    # an output of token ids (an input returned as it is) has no gradient
    grads = [rng.standard_normal(o.shape).astype(dtype) if o.is_floating_point() else None for o in outs]
    graded = [(o, torch.tensor(g)) for o, g in zip(outs, grads) if g is not None and o.requires_grad]
    if graded:
        torch.autograd.backward([o for o, _ in graded], [g for _, g in graded])
    got = nmodel(*inputs)
    got = got if isinstance(got, tuple) else (got,)
    for g, o in zip(got, outs):  # an output that is 0 in exact arithmetic (a mean of normalised values) is noise
        assert_close(g, o.detach().numpy(), "output", 1e-6)
    dx = nmodel.backward(*grads)
    dx = dx if isinstance(dx, tuple) else (dx,)
    assert nmodel.saved == {}  # backward used everything the forward kept
    params = dict(tmodel.named_parameters())
    assert set(nmodel.grads) == {k for k, p in params.items() if p.grad is not None}
    assert set(nmodel.parameters()) == set(params)
    # a gradient that is 0 in exact arithmetic (an input's through group norm then a global mean) is
    # rounding noise in both, judged against the gradients the backward started from
    scale = 1e-2 * max(
        [float(p.grad.abs().max()) for p in params.values() if p.grad is not None]
        + [float(np.abs(g).max()) for g in grads if g is not None],
        default=0.0,
    )
    for key, p in params.items():
        if p.grad is not None:
            assert_close(nmodel.grads[key], p.grad.numpy(), key, scale)
            assert nmodel.grads[key].dtype == dtype, key
    for got_dx, x in zip(dx, xs):
        if not x.is_floating_point():  # token ids have no gradient
            assert got_dx is None
            continue
        if x.grad is None and got_dx is None:  # no gradient reaches it, nor does the batch's size
            continue
        assert_close(got_dx, x.grad.numpy() if x.grad is not None else np.zeros(x.shape), "input", scale)


def batch(net, size: int, dtype, seed: int = 0):
    """Normal values for every input, token ids (int64, below the vocabulary) for one of tokens."""
    rng = np.random.default_rng(seed)
    return [
        rng.integers(0, node.shape.vocab, (size, *node.shape))
        if node.shape.vocab is not None
        else rng.standard_normal((size, *node.shape)).astype(dtype)
        for node in net.graph.inputs
    ]


@pytest.mark.parametrize("spec", ["lenet5", "mnist_cnn"])
def test_one_backward_gives_torch_gradients_in_float32(spec):
    tmodel, _, nmodel = pair(spec, None, np.float32)
    compare_gradients(tmodel, nmodel, batch(network(spec), 4, np.float32), np.float32, train=True)


@pytest.mark.parametrize("spec", NETWORKS)
def test_one_backward_gives_torch_gradients_in_training(spec):
    tmodel, _, nmodel = pair(spec, NETWORKS[spec], np.float64)
    compare_gradients(tmodel, nmodel, batch(network(spec, NETWORKS[spec]), 2, np.float64), np.float64, train=True)


@pytest.mark.parametrize("spec", ["resnet18", "mnist_cnn"])
def test_one_backward_gives_torch_gradients_in_eval_mode(spec):
    """Batch norm on its running statistics: a fixed scale per channel."""
    tmodel, _, nmodel = pair(spec, NETWORKS[spec], np.float64)
    compare_gradients(tmodel, nmodel, batch(network(spec, NETWORKS[spec]), 2, np.float64), np.float64, train=False)


OPTIMISERS = {
    "sgd": (
        lambda params, lr: torch.optim.SGD(params, lr=lr, momentum=0.9, nesterov=True, weight_decay=1e-3),
        lambda module, model, lr: module.SGD(model, lr=lr, momentum=0.9, nesterov=True, weight_decay=1e-3),
    ),
    "adamw": (
        lambda params, lr: torch.optim.AdamW(params, lr=lr, weight_decay=0.05),
        lambda module, model, lr: module.AdamW(model, lr=lr, weight_decay=0.05),
    ),
}
LR = {"sgd": 0.01, "adamw": 1e-3}
# mobilenet_v2's depthwise weights start small (torchvision's fan_out counts every output channel,
# std 0.015) and batch norm makes the loss blind to their scale, so SGD moves them at an effective
# rate lr / |w|^2: at 0.01 (about 5) the trajectory is chaotic, torch against itself with weights
# moved by 1e-13 parts by 1e-1 in ten steps; at 1e-4 it is well-conditioned
# (tests/test_train_conditioning.py). AdamW's step does not scale with the gradient.
SPEC_LR = {("mobilenet_v2", "sgd"): 1e-4}
# An optimiser's step is the same code whatever the network: the small networks and resnet18 take both;
# the two slowest take one each (mobilenet_v2 the SGD of the note above), so each still trains ten steps
# against torch's.
ONE_OPTIMISER = {"mobilenet_v2": "sgd", "googlenet": "adamw"}
STEPPED = [(spec, name) for spec in NETWORKS for name in OPTIMISERS if ONE_OPTIMISER.get(spec, name) == name]


@pytest.mark.parametrize(("spec", "optimiser"), STEPPED)
def test_ten_steps_leave_torchs_weights(spec, optimiser):
    """Batch 4, and inputs that leave the last batch norms 2x2 positions or more (48 for
    resnet18, 64 for mobilenet_v2, which at 48 parts from torch by 1e-4 after ten SGD steps,
    and googlenet): over 2 values (batch 2, 1x1) a batch norm's output is +-1 whatever its
    input, whose gradient then grows by orders of magnitude a step, so the two would part
    after 3 steps even in float64."""
    size = {"resnet18": 48, "mobilenet_v2": 64, "googlenet": 64}.get(spec)
    tmodel, module, nmodel = pair(spec, size, np.float64)
    tmodel.train()
    nmodel.train()
    make_torch, make_numpy = OPTIMISERS[optimiser]
    lr = SPEC_LR.get((spec, optimiser), LR[optimiser])
    topt, nopt = make_torch(tmodel.parameters(), lr), make_numpy(module, nmodel, lr)
    net = network(spec, size)
    classes = net.layer(net.graph.outputs[0].name).shape[0]
    rng = np.random.default_rng(2)
    for step in range(10):
        (x,) = batch(net, 4, np.float64, seed=step)
        y = rng.integers(0, classes, 4)
        topt.zero_grad()
        loss = torch.nn.functional.cross_entropy(tmodel(torch.tensor(x)), torch.tensor(y))
        loss.backward()
        topt.step()
        nopt.zero_grad()
        got, grad = module.cross_entropy(nmodel(x), y)
        nmodel.backward(grad)
        nopt.step()
        assert got == pytest.approx(loss.item(), rel=1e-4)
    for key, value in tmodel.state_dict().items():
        assert_close(nmodel.state[key], value.numpy(), key)


def test_gradients_accumulate_until_zero_grad():
    """Two backwards add up, as torch's .grad does; zero_grad forgets them."""
    _, _, nmodel = pair("lenet5", None, np.float64)
    nmodel.train()
    (x,) = batch(network("lenet5"), 2, np.float64)
    grad = np.ones((2, 10))
    nmodel(x)
    nmodel.backward(grad)
    once = {k: v.copy() for k, v in nmodel.grads.items()}
    nmodel(x)
    nmodel.backward(grad)
    for key, value in once.items():
        np.testing.assert_allclose(nmodel.grads[key], 2 * value, rtol=1e-12)
    nmodel.zero_grad()
    assert nmodel.grads == {}
    assert "C1.weight" in nmodel.parameters()
    assert nmodel.parameters()["C1.weight"] is nmodel.state["C1.weight"]


@pytest.mark.parametrize("spec", ["lenet5", "resnet18"])
def test_input_grads_false_skips_the_stems_input_gradient(spec):
    """A training step wants no gradient of its input, as torch computes none for an x that does not
    require grad: backward(input_grads=False) returns None, leaves out the first convolution's input
    gradient and gives the same parameter gradients."""
    tmodel, module, nmodel = pair(spec, NETWORKS[spec], np.float32)
    convs = sum(isinstance(m, torch.nn.Conv2d) for m in tmodel.modules())
    nmodel.train()
    (x,) = batch(network(spec, NETWORKS[spec]), 2, np.float32)
    grad = np.ones((2, 10 if spec == "lenet5" else 1000), np.float32)
    calls = []
    input_grad = module._conv_input_grad

    def counted(*args):
        calls.append(args[2])  # the input's shape
        return input_grad(*args)

    module._conv_input_grad = counted
    nmodel(x)
    assert nmodel.backward(grad).shape == x.shape
    assert len(calls) == convs and x.shape in calls
    wanted, calls[:] = dict(nmodel.grads), []
    nmodel.zero_grad()
    nmodel(x)
    assert nmodel.backward(grad, input_grads=False) is None
    assert len(calls) == convs - 1 and x.shape not in calls
    assert nmodel.grads.keys() == wanted.keys()
    for key, value in wanted.items():
        np.testing.assert_array_equal(nmodel.grads[key], value, err_msg=key)


# -- random networks ---------------------------------------------------------------------


def _random_pair(seed: int):
    text = random_spec(seed)
    net = archc.loads(text, f"random{seed}.arch")
    torch.manual_seed(seed)
    tmodel, _, _ = build(net, "torch")
    randomise_batch_norm(tmodel, seed)
    tmodel.double()
    nmodel = load_module(generate(net, "numpy").code).build_model()
    nmodel.state = {k: v.detach().numpy().copy() for k, v in tmodel.state_dict().items()}
    return net, text, tmodel, nmodel


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(seed=st.integers(0, 10**6), train=st.booleans())
@example(seed=855, train=False)  # an input gradient that is 0 in exact arithmetic
@example(seed=136, train=False)  # token ids returned first: the batch's size comes from another output
@example(seed=12158, train=True)  # an output that is 0 in exact arithmetic
def test_random_networks_give_torch_gradients(seed, train):
    """Every layer type, fused activations, branches, side layers nothing reads, several inputs and
    outputs; in eval mode, and in training mode unless a random mask is drawn (a dropout layer's, or
    attention's or a recurrent layer's dropout)."""
    net, text, tmodel, nmodel = _random_pair(seed)
    if not net.graph.outputs or all(n.op == "input" for n in net.graph.outputs):
        return
    if train and any(n.attrs.get("p" if n.op in ("dropout", "drop_path") else "dropout", 0) > 0 for n in net.graph):
        train = False
    try:
        compare_gradients(tmodel, nmodel, batch(net, 3, np.float64, seed), np.float64, train)
    except AssertionError as error:
        raise AssertionError(f"{error}\n{text}") from error


def test_finite_differences_agree_with_backward_in_float64():
    """d(sum(out * g))/d(input) and /d(a weight) by central differences, against backward."""
    text = """network Small {
      input x: 2x6x6
      conv c1: 3 @ 3 pad=1 -> tanh
      bn b1
      maxpool p1: 2
      conv c2: 4 @ 2 -> gelu
      flatten f
      dense d: 3
    }"""
    net = archc.loads(text, "small.arch")
    module = load_module(generate(net, "numpy").code)
    model = module.build_model(seed=1)
    model.state = {k: v.astype(np.float64) for k, v in model.state.items()}
    model.train()
    rng = np.random.default_rng(0)
    x = rng.standard_normal((3, 2, 6, 6))
    g = rng.standard_normal((3, 3))

    def loss(x):
        state = {k: v.copy() for k, v in model.state.items()}  # batch norm's running statistics move
        value = float((model(x) * g).sum())
        for key, array in state.items():
            model.state[key][...] = array
        model.saved = {}
        return value

    model(x)
    dx = model.backward(g)
    weight = model.state["c1.weight"]
    eps = 1e-6
    for index in [(0, 0, 1, 1), (2, 1, 3, 4), (1, 0, 5, 0)]:
        shifted = x.copy()
        shifted[index] += eps
        up = loss(shifted)
        shifted[index] -= 2 * eps
        numeric = (up - loss(shifted)) / (2 * eps)
        assert dx[index] == pytest.approx(numeric, rel=1e-5, abs=1e-8)
    for index in [(0, 0, 0, 0), (2, 1, 2, 1)]:
        original = weight[index]
        weight[index] = original + eps
        up = loss(x)
        weight[index] = original - eps
        down = loss(x)
        weight[index] = original
        assert model.grads["c1.weight"][index] == pytest.approx((up - down) / (2 * eps), rel=1e-5, abs=1e-8)


@pytest.mark.parametrize("layer", ["dropout: 0.4", "drop_path: 0.4", "drop_path: 0.4 batch"])
def test_dropout_gradient_is_the_mask_of_its_forward(layer):
    """The mask the forward drew (output / input) times the output's gradient, as torch computes
    through the same mask."""
    net = archc.loads(f"network D {{\n input x: 4x5x5\n {layer}\n conv c: 2 @ 1\n}}", "d.arch")
    model = load_module(generate(net, "numpy").code).build_model()
    model.train()
    x = np.random.default_rng(0).standard_normal((16, 4, 5, 5)).astype(np.float32) + 10
    out = model(x)
    mask = model.saved[next(k for k in model.saved if k != "c")]
    g = np.ones_like(out)
    dx = model.backward(g)
    xt = torch.tensor(x, requires_grad=True)
    weight = torch.tensor(model.state["c.weight"])
    dropped = xt * torch.tensor(np.broadcast_to(mask, x.shape).copy())
    torch.nn.functional.conv2d(dropped, weight, torch.tensor(model.state["c.bias"])).backward(torch.tensor(g))
    assert_close(dx, xt.grad.numpy(), "input")
    assert 0 < (mask == 0).mean() < 1 or layer.endswith("batch")


def test_l2_pool_of_a_window_of_zeros_passes_no_gradient():
    """After a relu a window can be all zeros: y = 0, where torch's gradient is 0, not 0/0."""
    net = archc.loads("network Z {\n input x: 2x4x4\n relu r\n l2pool p: 2\n}", "z.arch")
    torch.manual_seed(0)
    tmodel, _, _ = build(net, "torch")
    nmodel = load_module(generate(net, "numpy").code).build_model()
    x = np.random.default_rng(0).standard_normal((2, 2, 4, 4)).astype(np.float32)
    x[:, :, :2, :2] = -1  # one window of zeros after the relu
    compare_gradients(tmodel, nmodel, [x], np.float32, train=True)
