"""In-place code in the generated torch models: where it appears, and that it changes no number.

The torch target overwrites a tensor only when nothing else reads it and autograd
saved none of it, as torchvision writes its models: `F.relu(self.bn1(x), inplace=True)`
on a new tensor, `x += skip` into the output of a batch norm (or conv, linear...)
that nothing reads afterwards. Everything else stays out of place: values read
again, the outputs of activations (relu, sigmoid... keep their output for
backward), dropout and views (which share their input's memory), the network's
inputs and outputs.

Two oracles. The same generated code with every in-place operation written out of
place (a textual rewrite: the same function with the same weights) must give equal
outputs, gradients and batch-norm statistics in train mode, where an unsafe
overwrite makes autograd raise "modified by an inplace operation" or changes a
gradient. The rewrite keeps the variables, so a tensor overwritten while another
variable still holds it would fool it: in eval mode the generated NumPy model, which
never computes in place, must compute the same outputs too.
"""

from __future__ import annotations

import re

import numpy as np
import pytest
import torch
from codegen_util import build, load_module
from conftest import SPECS
from test_codegen_random import SEEDS, inputs, random_spec

import archc
from archc.codegen import generate
from archc.ops import OPS

pytestmark = pytest.mark.usefixtures("one_thread")

SAFE_IN_PLACE = {"relu", "relu6", "leaky_relu", "elu"}  # their in-place backward reads only their output

CHECKS = """
network Checks {
  input x: 4x6x6
  conv  c1: 4 @ 3x3 pad=1 -> sigmoid
  conv  c2: 4 @ 3x3 pad=1
  add   a1 (c1, c2) -> relu
  conv  c3: 4 @ 3x3 pad=1 -> relu
  add   a2 (c3, a1)
  conv  c4: 4 @ 3x3 pad=1
  relu  r1
  conv  c5: 4 @ 3x3 pad=1
  leaky_relu r2: (0 - 0.1)
  conv  c6: 4 @ 3x3 pad=1
  leaky_relu r3: 0.1
  conv  c7: 4 @ 3x3 pad=1 -> elu
  conv  c8: 4 @ 3x3 pad=1 -> elu(0 - 0.5)
  bn    b1
  dropout d1: 0.5
  add   a3 (d1, b1) -> relu6
  conv  c9: 8 @ 1x1
  shortcut s1 (c9, a3) -> relu
  conv  c10: 8 @ 1x1
  conv  c11 (s1): 8 @ 1x1
  add   a4 (c10, c11)
  conv  c12 (c10): 8 @ 1x1
  add   a5 (a4, c12)
  maxpool m1: 2
  concat k1 (m1, m1) -> relu
  flatten f1
  dense fc1: 10 -> relu
  dense fc2 (fc1): 10
  add   out (fc2, fc1) -> relu
}
"""

# (spec text or bundled spec, per-sample input shapes to run it at)
NETWORKS = {
    "checks": (CHECKS, None),
    "resnet18": (SPECS / "resnet18.arch", [(3, 32, 32)]),
    "resnet50": (SPECS / "resnet50.arch", [(3, 32, 32)]),
    "mobilenet_v2": (SPECS / "mobilenet_v2.arch", [(3, 32, 32)]),
    "googlenet": (SPECS / "googlenet.arch", [(3, 64, 64)]),
    "deconv_example": (SPECS / "deconv_example.arch", None),
    "mnist_cnn": (SPECS / "mnist_cnn.arch", None),
}


def load(source):
    """An analysed network from spec text or a spec file."""
    return archc.loads(source, "checks.arch") if isinstance(source, str) else archc.load(source)


def forward_of(code: str) -> str:
    return code[code.index("    def forward(") :]


def out_of_place(code: str) -> str:
    """The same code with every in-place operation written out of place."""
    code = re.sub(r",\s*inplace=True", "", code).replace("(inplace=True)", "()")
    code = re.sub(r"^(\s*)(\w+) \+= ", r"\1\2 = \2 + ", code, flags=re.M)
    assert "inplace" not in code and "+=" not in code
    return code


def run(code: str, xs, train: bool):
    """Outputs and state after one forward; in train mode, gradients after one backward too."""
    torch.manual_seed(0)
    model = load_module(code).build_model().train(train)
    xs = [x.clone().requires_grad_(train and x.is_floating_point()) for x in xs]  # token ids have no gradient
    before = [x.detach().clone() for x in xs]
    torch.manual_seed(1)  # the same dropout masks in both runs
    with torch.set_grad_enabled(train):
        out = model(*xs)
    outs = out if isinstance(out, tuple) else (out,)
    result = {"outputs": [o.detach() for o in outs]}
    if train:
        gen = torch.Generator().manual_seed(2)
        loss = sum(
            (o * torch.randn(o.shape, generator=gen, dtype=o.dtype)).sum() for o in outs if o.is_floating_point()
        )
        loss.backward()
        result["input grads"] = [x.grad for x in xs]
        result["grads"] = {n: p.grad for n, p in model.named_parameters()}
    result["state"] = model.state_dict()  # batch norm statistics
    for x, x0 in zip(xs, before):
        assert torch.equal(x.detach(), x0), "forward changed its input"
    return result


def assert_same_run(net, shapes, train: bool):
    """The generated torch model computes what its out-of-place rewrite computes, and in eval mode the NumPy model."""
    code = generate(net, "torch").code
    gen = torch.Generator().manual_seed(3)
    xs = [torch.randn(2, *shape, generator=gen) for shape in shapes] if shapes else inputs(net, 2, gen)
    got, want = run(code, xs, train), run(out_of_place(code), xs, train)
    torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-6)
    if not train:
        numpy_model, _, _ = build(net, "numpy")
        numpy_model.load_state_dict(got["state"])
        out = numpy_model.eval()(*(x.numpy() for x in xs))
        for o, w in zip(out if isinstance(out, tuple) else (out,), got["outputs"]):
            scale = max(float(w.abs().max()), 1.0)
            np.testing.assert_allclose(o, w.numpy(), rtol=1e-4, atol=1e-5 * scale)


# -- where in-place code appears ---------------------------------------------------


def test_resnet18_computes_in_place_as_torchvision_does():
    code = generate(archc.load(SPECS / "resnet18.arch"), "torch", flat=True).code
    body = forward_of(code)
    # the stem's relu is a layer of its own, as torchvision's `self.relu`: a module, in place
    assert "        x = self.bn1(x)\n        x = self.relu(x)\n" in body
    assert "        self.relu = nn.ReLU(inplace=True)\n" in code
    # the block's last batch norm is read by the add only: the shortcut is added into it
    assert (
        "        x = self.layer1_0_bn2(x)\n"
        "        x += maxpool\n"
        "        del maxpool\n"
        "        layer1_0_add1 = F.relu(x, inplace=True)\n"
    ) in body
    # both terms are read by the add only: it goes into `x`, which the next statement rebinds
    assert ("        x = self.layer2_0_downsample_1(x)\n        x += layer2_0_bn2\n        del layer2_0_bn2\n") in body
    assert body.count(" += ") == 8  # every residual add
    assert body.count("F.relu(") == body.count("inplace=True") == 16  # every relu of a block


def test_what_is_read_again_or_saved_for_backward_is_not_overwritten():
    code = generate(load(CHECKS), "torch").code
    body = forward_of(code)
    expected = [
        # sigmoid keeps its output for backward: the add goes into the conv's new tensor instead
        "c1 = torch.sigmoid(self.c1(x))",
        "x = self.c2(c1)",
        "x += c1",
        "a1 = F.relu(x, inplace=True)",
        # both terms are read elsewhere or saved by relu: a new tensor, no activation to overwrite it
        "x = F.relu(self.c3(a1), inplace=True)",
        "x = x + a1",
        # a standalone activation whose input nothing else reads
        "x = self.r1(x)",
        # elu with a negative alpha has no in-place backward
        "x = F.elu(self.c7(x), inplace=True)",
        "x = F.elu(self.c8(x), -0.5)",
        # dropout is its input itself in eval mode: b1 is read twice
        "a3 = F.relu6(x + b1, inplace=True)",
        # the shortcut keeps its first input's shape and adds into it
        "x = self.c9(a3)",
        "x += F.pad(a3, (0, 0, 0, 0, 0, 4))",
        "s1 = F.relu(x, inplace=True)",
        # c10 is read again by c12: the add goes into c11, and then into c12
        "c10 = self.c10(s1)",
        "x = self.c11(s1)",
        "x += c10",
        "a4 = x",
        "x = self.c12(c10)",
        "x += a4",
        "x = F.relu(torch.cat([m1, m1], dim=1), inplace=True)",
        "fc1 = F.relu(self.fc1(x), inplace=True)",
        "x = self.fc2(fc1)",
        "x += fc1",
        "return F.relu(x, inplace=True)",
    ]
    stripped = [line.strip() for line in body.splitlines()]
    positions = [stripped.index(line) for line in expected]
    assert positions == sorted(positions)
    assert "self.r1 = nn.ReLU(inplace=True)" in code
    assert "self.r2 = nn.LeakyReLU(-0.1)\n" in code  # a negative slope: torch refuses the in-place backward
    assert "self.r3 = nn.LeakyReLU(0.1, inplace=True)" in code
    assert body.count("+=") == 5


@pytest.mark.parametrize("act", sorted(name for name, op in OPS.items() if op.is_activation))
def test_only_activations_whose_backward_reads_their_output_run_in_place(act):
    text = f"network A {{\n  input x: 3x4x4\n  conv c: 3 @ 1x1 -> {act}\n  conv d: 3 @ 1x1\n  {act} e\n}}\n"
    code = generate(archc.loads(text, "a.arch"), "torch").code
    # silu, gelu, hardswish, mish need their input for backward; sigmoid, tanh, softmax have no inplace=
    assert code.count("inplace=True") == (2 if act in SAFE_IN_PLACE else 0)


def test_inputs_and_outputs_are_never_overwritten():
    text = """
network IO {
  input a: 4x5x5
  input b: 4x5x5
  add   j (a, b) -> relu
  relu  r (a)
  conv  c (j): 4 @ 3x3 pad=1
  add   t (c, r)
  output (c, t)
}
"""
    code = generate(archc.loads(text, "io.arch"), "torch").code
    body = forward_of(code)
    assert "j = F.relu(a + b, inplace=True)" in body  # the sum is new; a and b stay
    assert "self.r = nn.ReLU()\n" in code
    assert "+=" not in body  # c is returned, r is a relu's output
    xs = [torch.randn(2, 4, 5, 5) for _ in range(2)]
    for train in (True, False):
        got, want = run(code, xs, train), run(out_of_place(code), xs, train)
        torch.testing.assert_close(got, want)


# -- in-place code computes what out-of-place code computes ------------------------------


@pytest.mark.parametrize("name", NETWORKS)
@pytest.mark.parametrize("train", [True, False], ids=["train", "eval"])
def test_in_place_code_computes_and_trains_as_out_of_place_code(name, train):
    source, shapes = NETWORKS[name]
    net = load(source)
    assert "inplace=True" in generate(net, "torch").code
    assert_same_run(net, shapes, train)


@pytest.mark.parametrize("seed", SEEDS)
def test_random_networks_compute_and_train_in_place_as_out_of_place(seed):
    net = archc.loads(random_spec(seed), f"random{seed}.arch")
    assert_same_run(net, None, train=True)
    assert_same_run(net, None, train=False)


def test_torch_compile_traces_the_in_place_code():
    net = archc.load(SPECS / "resnet18.arch")
    code = generate(net, "torch").code
    torch.manual_seed(0)
    model = load_module(code).build_model().train()
    compiled = torch.compile(model, backend="aot_eager", fullgraph=True)
    x = torch.randn(2, 3, 32, 32)
    torch.testing.assert_close(compiled(x), model(x))
    compiled(x).sum().backward()
    grads = {n: p.grad.clone() for n, p in model.named_parameters()}
    model.zero_grad()
    model(x).sum().backward()
    torch.testing.assert_close(grads, {n: p.grad for n, p in model.named_parameters()})
