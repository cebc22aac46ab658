"""The training runtime composed into a network, against the same network trained by torch.

A small residual network (conv, batch norm, relu, max pooling, a strided block
with a 1x1 shortcut, global average pooling, flatten, dense, cross-entropy) is
written once as a torch module and once by hand from the NumPy kernels, one line
per layer forward and one per layer backward, as generated code will write it,
with the weights and gradients keyed by the module's state-dict names. From the
same weights and batches: one forward and backward gives torch's loss and the
gradient of every parameter, and ten steps of SGD with Nesterov momentum and of
AdamW leave every weight and running statistic equal to torch's (1e-4 relative).
torchvision's ResNet-18, wired the same way under its state-dict names, gives
torchvision's loss and the gradient of each of its 62 parameters.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F  # noqa: N812 (the usual torch spelling)
import torchvision
from torch import nn

from archc.codegen.runtime import numpy_backward as B  # noqa: N812 (short, used on every line)
from archc.codegen.runtime import numpy_kernels as K  # noqa: N812

pytestmark = pytest.mark.usefixtures("one_thread")


class Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(3, 8, 3, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(8)
        self.conv2 = nn.Conv2d(8, 8, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(8)
        self.conv3 = nn.Conv2d(8, 16, 3, stride=2, padding=1)
        self.down = nn.Conv2d(8, 16, 1, stride=2)
        self.fc = nn.Linear(16, 10)

    def forward(self, x):
        x = F.max_pool2d(F.relu(self.bn1(self.conv1(x))), 3, 2, 1)
        y = self.conv3(F.relu(self.bn2(self.conv2(x))))
        x = F.relu(y + self.down(x))
        return self.fc(F.adaptive_avg_pool2d(x, 1).flatten(1))


def numpy_step(s, x, target):
    """Forward in training mode, cross-entropy, backward: (loss, gradients by state-dict name)."""
    a1 = K.conv(x, s["conv1.weight"], None, 1, 1)
    b1 = K.batch_norm(a1, s, "bn1", True)
    r1 = K.relu(b1)
    p1 = K.max_pool(r1, 3, 2, 1)
    a2 = K.conv(p1, s["conv2.weight"], None, 1, 1)
    b2 = K.batch_norm(a2, s, "bn2", True)
    r2 = K.relu(b2)
    a3 = K.conv(r2, s["conv3.weight"], s["conv3.bias"], 2, 1)
    d = K.conv(p1, s["down.weight"], s["down.bias"], 2)
    r3 = K.relu(a3 + d)
    g1 = K.global_avg_pool(r3)
    f = g1.reshape(len(g1), -1)
    logits = K.linear(f, s["fc.weight"], s["fc.bias"])
    loss, g = B.cross_entropy(logits, target)

    grads = {}
    g, grads["fc.weight"], grads["fc.bias"] = B.linear_backward(g, f, s["fc.weight"], s["fc.bias"])
    g = B.reshape_backward(g, g1.shape)
    g = B.global_avg_pool_backward(g, r3.shape)
    g = B.relu_backward(g, a3 + d)
    g_a3, g_d = B.add_backward(g, a3.shape, d.shape)
    g_p1, grads["down.weight"], grads["down.bias"] = B.conv_backward(g_d, p1, s["down.weight"], s["down.bias"], 2)
    g, grads["conv3.weight"], grads["conv3.bias"] = B.conv_backward(g_a3, r2, s["conv3.weight"], s["conv3.bias"], 2, 1)
    g = B.relu_backward(g, b2)
    g, grads["bn2.weight"], grads["bn2.bias"] = B.batch_norm_backward(g, a2, s, "bn2", True)
    g, grads["conv2.weight"], _ = B.conv_backward(g, p1, s["conv2.weight"], None, 1, 1)
    g = B.add_backward(g + g_p1, p1.shape)[0]  # p1 feeds two layers: their gradients add
    g = B.max_pool_backward(g, r1, 3, 2, 1)
    g = B.relu_backward(g, b1)
    g, grads["bn1.weight"], grads["bn1.bias"] = B.batch_norm_backward(g, a1, s, "bn1", True)
    no_input_grad, grads["conv1.weight"], _ = B.conv_backward(g, x, s["conv1.weight"], None, 1, 1, input_grad=False)
    assert no_input_grad is None  # the network's input needs no gradient
    return loss, grads


def batches(seed, count):
    rng = np.random.default_rng(seed)
    for _ in range(count):
        yield rng.standard_normal((4, 3, 9, 10)).astype(np.float32), rng.integers(0, 10, 4)


def setup(seed):
    torch.manual_seed(seed)
    model = Net().train()
    state = {key: value.numpy().copy() for key, value in model.state_dict().items()}
    return model, state


def close(ours, theirs, what):
    theirs = theirs.detach().numpy()
    scale = float(np.abs(theirs).max())
    np.testing.assert_allclose(ours, theirs, rtol=1e-4, atol=1e-5 * scale, err_msg=what)


def assert_torchs_loss_and_gradients(model, x, target, loss, grads) -> None:
    """The NumPy loss and gradients of every parameter equal autograd's on the torch model."""
    expected = F.cross_entropy(model(torch.tensor(x)), torch.tensor(target))
    expected.backward()
    assert loss == pytest.approx(expected.item(), rel=1e-5)
    parameters = dict(model.named_parameters())
    assert grads.keys() == parameters.keys()
    for name, parameter in parameters.items():
        assert grads[name].shape == tuple(parameter.shape) and grads[name].dtype == np.float32, name
        close(grads[name], parameter.grad, name)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_one_step_gives_torchs_loss_and_gradients(seed):
    model, state = setup(seed)
    x, target = next(batches(seed, 1))
    assert_torchs_loss_and_gradients(model, x, target, *numpy_step(state, x, target))
    for name, buffer in model.state_dict().items():  # the running statistics moved as torch's
        close(state[name], buffer, name)


OPTIMISERS = {
    "sgd-nesterov": (
        lambda p, g, s: B.sgd_step(p, g, s, 0.05, momentum=0.9, nesterov=True, weight_decay=1e-4),
        lambda ps: torch.optim.SGD(ps, 0.05, momentum=0.9, nesterov=True, weight_decay=1e-4),
    ),
    "adamw": (
        lambda p, g, s: B.adamw_step(p, g, s, 1e-2),
        lambda ps: torch.optim.AdamW(ps, 1e-2),
    ),
}


@pytest.mark.parametrize("name", sorted(OPTIMISERS))
def test_ten_steps_leave_torchs_weights(name):
    ours, theirs = OPTIMISERS[name]
    model, state = setup(3)
    optimizer, memory = theirs(model.parameters()), {}
    for x, target in batches(3, 10):
        optimizer.zero_grad()
        F.cross_entropy(model(torch.tensor(x)), torch.tensor(target)).backward()
        optimizer.step()
        _, grads = numpy_step(state, x, target)
        ours(state, grads, memory)
    for key, value in model.state_dict().items():
        close(state[key], value, key)


def resnet18_gradients(s, x, target):
    """torchvision's ResNet-18 from the kernels, under its state-dict names: (loss, gradients)."""
    grads, blocks = {}, []

    def conv_bn(x, conv, bn, stride, padding, tape):
        a = K.conv(x, s[conv + ".weight"], None, stride, padding)
        b = K.batch_norm(a, s, bn, True)
        tape.append((b, (conv, bn, x, a, stride, padding)))
        return b

    def conv_bn_backward(g, conv, bn, x, a, stride, padding, first=False):
        g, grads[bn + ".weight"], grads[bn + ".bias"] = B.batch_norm_backward(g, a, s, bn, True)
        g, grads[conv + ".weight"], _ = B.conv_backward(
            g, x, s[conv + ".weight"], None, stride, padding, input_grad=not first
        )
        return g

    stem = []
    r1 = K.relu(conv_bn(x, "conv1", "bn1", 2, 3, stem))
    h = K.max_pool(r1, 3, 2, 1)
    for layer, first_stride in zip(range(1, 5), (1, 2, 2, 2)):
        for index in range(2):
            name, tape = f"layer{layer}.{index}", []
            stride = first_stride if index == 0 else 1
            o = K.relu(conv_bn(h, name + ".conv1", name + ".bn1", stride, 1, tape))
            o = conv_bn(o, name + ".conv2", name + ".bn2", 1, 1, tape)
            if name + ".downsample.0.weight" in s:
                h = conv_bn(h, name + ".downsample.0", name + ".downsample.1", stride, 0, tape)
            z = o + h
            h = K.relu(z)
            blocks.append((tape, z))
    pooled = K.adaptive_avg_pool(h, (1, 1))
    flat = pooled.reshape(len(pooled), -1)
    loss, g = B.cross_entropy(K.linear(flat, s["fc.weight"], s["fc.bias"]), target)

    g, grads["fc.weight"], grads["fc.bias"] = B.linear_backward(g, flat, s["fc.weight"], s["fc.bias"])
    g = B.adaptive_avg_pool_backward(B.reshape_backward(g, pooled.shape), h.shape, (1, 1))
    for tape, z in reversed(blocks):
        g = B.relu_backward(g, z)
        main = conv_bn_backward(g, *tape[1][1])
        main = conv_bn_backward(B.relu_backward(main, tape[0][0]), *tape[0][1])
        g = main + (conv_bn_backward(g, *tape[2][1]) if len(tape) == 3 else g)
    g = B.relu_backward(B.max_pool_backward(g, r1, 3, 2, 1), stem[0][0])
    assert conv_bn_backward(g, *stem[0][1], first=True) is None
    return loss, grads


def test_resnet18_gradients_equal_torchvisions():
    """torchvision's ResNet-18 (an outside truth for names and structure) on 4 x 3 x 64 x 64:
    the smallest input where its last batch norms see more than two values a channel."""
    torch.manual_seed(0)
    model = torchvision.models.resnet18(weights=None).train()
    state = {key: value.numpy().copy() for key, value in model.state_dict().items()}
    rng = np.random.default_rng(5)
    x, target = rng.standard_normal((4, 3, 64, 64)).astype(np.float32), rng.integers(0, 1000, 4)
    assert_torchs_loss_and_gradients(model, x, target, *resnet18_gradients(state, x, target))
