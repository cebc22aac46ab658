"""Issue 16, item 1's NumPy half: the NumPy model nested as the spec is, a class per block.

The outside truth is torchvision's model (weights=None, random): its state_dict's keys are the
NumPy model's, its weights loaded by key give the NumPy model's outputs, and torch's autograd
gives one backward's gradients (float64, 1e-6 relative to the largest). The class structure is
read from the generated file with Python's `ast`. Random specs with blocks, repeats and an `if`
(drawn by hypothesis) give the nested PyTorch target's outputs and gradients, and the flat NumPy
model (the same weights, moved by layer) gives the nested one's.
"""

from __future__ import annotations

import ast
import functools
from pathlib import Path

import numpy as np
import pytest
import torch
import torchvision
from codegen_util import build, load_module, randomise_batch_norm
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from test_numpy_train_networks import assert_close, batch, compare_gradients

import archc
from archc.codegen import generate

pytestmark = pytest.mark.usefixtures("one_thread")

SPECS = Path(__file__).resolve().parent.parent / "specs"
SIZE = 64  # every network at 3 x 64 x 64: small, and large enough for each one's strides

# spec -> (the blocks that are classes, the blocks whose instances are repeats: lists of instances);
# those of the PyTorch target: a block of numbered layers, an nn.Sequential there, is computed by the
# class that builds it (ResNet's `downsample.0` in `Basic`)
STRUCTURE = {
    "resnet18": ({"basic"}, {"layer"}),
    "resnet50": ({"bottleneck"}, {"layer"}),
    "googlenet": ({"basic_conv2d", "inception"}, set()),
    "mobilenet_v2": ({"inverted"}, set()),
}
TORCHVISION = {
    "resnet18": lambda: torchvision.models.resnet18(weights=None),
    "resnet50": lambda: torchvision.models.resnet50(weights=None),
    "googlenet": lambda: torchvision.models.googlenet(weights=None, aux_logits=False, init_weights=False),
    "mobilenet_v2": lambda: torchvision.models.mobilenet_v2(weights=None),
}


@functools.cache
def network(spec: str):
    net = archc.load(SPECS / f"{spec}.arch")
    (name, shape), *_ = net.inputs.items()
    return archc.load(SPECS / f"{spec}.arch", inputs={name: (shape[0], SIZE, SIZE)})


def _classes(code: str) -> dict[str, ast.ClassDef]:
    return {node.name: node for node in ast.parse(code).body if isinstance(node, ast.ClassDef)}


@pytest.mark.parametrize("spec", STRUCTURE)
def test_a_block_is_a_class_and_a_repeat_a_list_of_instances(spec):
    code = generate(network(spec), "numpy").code
    classes = _classes(code)
    blocks = {
        ast.get_docstring(c).split("`")[1] for c in classes.values() if ast.get_docstring(c).startswith("Block `")
    }
    written, repeats = STRUCTURE[spec]
    assert blocks == written
    for name, cls in classes.items():
        if ast.get_docstring(cls).startswith("Block `"):
            assert [b.id for b in cls.bases] == ["Module"], name
            methods = {f.name for f in cls.body if isinstance(f, ast.FunctionDef)}
            assert {"__init__", "forward", "_forward_keeping", "backward"} <= methods, name
    if repeats:
        assert "Sequential" in classes
    # the network's own class reads like the spec, as the PyTorch target's: a statement per layer
    # or block, and two of its own (the training forward's `if`, `s = self.arrays`); but for an
    # nn.Sequential of layers and blocks (MobileNetV2's `features`), computed here a statement each
    if spec == "mobilenet_v2":
        return
    assert len(_forward(classes, spec)) <= len(_forward(_classes(generate(network(spec), "torch").code), spec)) + 2


def _forward(classes: dict, spec: str) -> list:
    top = next(c for c in classes.values() if ast.get_docstring(c).startswith(network(spec).name))
    return next(f for f in top.body if isinstance(f, ast.FunctionDef) and f.name == "forward").body


def _torchvision(spec: str):
    torch.manual_seed(0)
    model = TORCHVISION[spec]().double()
    randomise_batch_norm(model, 0)
    return model


@pytest.mark.parametrize("spec", STRUCTURE)
def test_keys_outputs_and_gradients_are_torchvisions(spec):
    """torchvision's state_dict loads by key; eval mode with requires_grad (no dropout to draw, and
    batch norm on its running statistics), then training mode where nothing is drawn at random."""
    tmodel = _torchvision(spec)
    model = load_module(generate(network(spec), "numpy").code).build_model()
    state = {k: v.detach().numpy().copy() for k, v in tmodel.state_dict().items()}
    assert set(model.state) == set(state)
    model.load_state_dict(state)
    model.state = {k: v.astype(np.float64) for k, v in model.state.items()}
    inputs = batch(network(spec), 2, np.float64)
    tmodel.zero_grad()
    compare_gradients(tmodel, model, inputs, np.float64, train=False)
    for key, value in model.grads.items():  # the promised 1e-6
        assert_close(value, dict(tmodel.named_parameters())[key].grad.numpy(), key, rtol=1e-6)
    if spec.startswith("resnet"):
        model.zero_grad()
        tmodel.zero_grad()
        compare_gradients(tmodel, model, inputs, np.float64, train=True)
        for key, value in tmodel.state_dict().items():  # the running statistics moved alike
            assert_close(model.state[key], value.numpy(), key, rtol=1e-6)


def _flat_state(nested: dict, flat_gen, nested_gen) -> dict:
    """The nested model's arrays under the flat model's keys: the same layer's, by layer."""
    prefixes = {nested_gen.attrs[layer]: flat_gen.attrs[layer] for layer in flat_gen.attrs}
    out = {}
    for key, value in nested.items():
        prefix = max((p for p in prefixes if key == p or key.startswith(p + ".")), key=len)
        out[prefixes[prefix] + key[len(prefix) :]] = value
    return out


def _agree(net, train: bool) -> None:
    """The nested and the flat NumPy model, the same weights, give the same outputs and gradients."""
    nested, ngen, _ = build(net, "numpy")
    flat, fgen, _ = build(net, "numpy", flat=True)
    assert "class Module" in ngen.code and "class Module" not in fgen.code
    nested.state = {k: v.astype(np.float64) for k, v in nested.state.items()}
    flat.state = _flat_state(nested.state, fgen, ngen)
    inputs = batch(net, 3, np.float64)
    for model in (nested, flat):
        model.train(train)
        model.requires_grad = True
    out = nested(*inputs)
    np.testing.assert_allclose(out, flat(*inputs), rtol=1e-12, atol=1e-12)
    grad = np.random.default_rng(2).standard_normal(out.shape)
    np.testing.assert_allclose(nested.backward(grad), flat.backward(grad), rtol=1e-12, atol=1e-12)
    flat_grads = _flat_state(nested.grads, fgen, ngen)
    assert flat_grads.keys() == flat.grads.keys()
    for key, value in flat_grads.items():
        np.testing.assert_allclose(value, flat.grads[key], rtol=1e-12, atol=1e-12, err_msg=key)
    assert nested.saved == {} and flat.saved == {}


def test_the_nested_and_the_flat_model_agree():
    _agree(network("resnet18"), train=True)


# -- random specs with blocks --------------------------------------------------------------------

RANDOM = """block unit(ch, k=3, stride=1) {{
  conv a: ch @ k x k /stride pad=k // 2 bias={bias}
  bn b -> {act}
  if stride == 1 and in.channels == ch {{
    add (b, in)
  }}
}}

block pair(ch) {{
  conv 0: ch @ 1x1
  {second}
}}

block stage(ch, n, k, stride) {{
  unit 0: ch k stride
  repeat n - 1 {{ unit: ch k }}
}}

network R {{
  input x: {c} x {size} x {size}
  conv stem: {c0} @ 3x3 pad=1
  stage s1: {c1} {n1} {k1} {s1}
  pair p: {c2}
  stage s2: {c3} {n2} {k2} {s2}
  globalavgpool
  flatten
  dense fc: 5
}}
"""


@st.composite
def nested_specs(draw) -> str:
    channels = st.integers(1, 6)
    return RANDOM.format(
        bias=draw(st.sampled_from(["true", "false"])),
        act=draw(st.sampled_from(["relu", "gelu", "tanh", "sigmoid", "relu6"])),
        second=draw(st.sampled_from(["bn 1 -> relu", "relu 1", "dwconv 1: 3x3 pad=1", "maxpool 1: 2x2 /1"])),
        c=draw(channels),
        size=draw(st.integers(6, 9)),
        c0=draw(channels),
        c1=draw(channels),
        c2=draw(channels),
        c3=draw(channels),
        n1=draw(st.integers(1, 3)),
        n2=draw(st.integers(1, 3)),
        k1=draw(st.sampled_from([1, 3])),
        k2=draw(st.sampled_from([1, 3])),
        s1=draw(st.sampled_from([1, 2])),
        s2=draw(st.sampled_from([1, 2])),
    )


@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(text=nested_specs(), train=st.booleans())
def test_random_nested_specs_give_torchs_outputs_and_gradients(text, train):
    net = archc.loads(text, "r.arch")
    torch.manual_seed(0)
    tmodel, _, _ = build(net, "torch")
    randomise_batch_norm(tmodel, 0)
    tmodel.double()
    nmodel, gen, _ = build(net, "numpy")
    assert "class Unit" in gen.code and "class Stage" not in gen.code  # a stage is a list of units
    nmodel.state = {k: v.detach().numpy().copy() for k, v in tmodel.state_dict().items()}
    try:
        compare_gradients(tmodel, nmodel, batch(net, 3, np.float64), np.float64, train)
        _agree(net, train)
    except AssertionError as error:
        raise AssertionError(f"{error}\n{text}") from error


def test_an_optimiser_trains_the_nested_model_as_torch_trains_it():
    """Three SGD steps with momentum: every weight and running statistic as torch's."""
    net = network("resnet18")
    tmodel = _torchvision("resnet18")
    module = load_module(generate(net, "numpy").code)
    model = module.build_model()
    model.state = {k: v.detach().numpy().copy() for k, v in tmodel.state_dict().items()}
    topt = torch.optim.SGD(tmodel.parameters(), lr=0.01, momentum=0.9)
    opt = module.SGD(model, lr=0.01, momentum=0.9)
    (x,) = batch(net, 2, np.float64)
    y = np.array([3, 7])
    tmodel.train()
    model.train()
    for _ in range(3):
        topt.zero_grad()
        torch.nn.functional.cross_entropy(tmodel(torch.tensor(x)), torch.tensor(y)).backward()
        topt.step()
        opt.zero_grad()
        _, grad = module.cross_entropy(model(x), y)
        model.backward(grad)
        opt.step()
    for key, value in tmodel.state_dict().items():
        assert_close(model.state[key], value.detach().numpy(), key, rtol=1e-6)


def test_a_block_instance_named_as_a_member_of_module_gets_the_flat_class_with_torchs_keys():
    """`state` would hide the model's view of its arrays: one class, still loading torch's state_dict."""
    text = """block u(ch) {
  conv a: ch @ 3x3 pad=1
  bn b -> relu
}
network Odd {
  input x: 3x8x8
  u state: 4
  u train: 4
  flatten
  dense fc: 2
}
"""
    net = archc.loads(text, "odd.arch")
    tmodel, _, _ = build(net, "torch")
    model, gen, _ = build(net, "numpy")
    assert "class Module" not in gen.code
    model.load_state_dict({k: v.detach().numpy() for k, v in tmodel.state_dict().items()})
    x = np.random.default_rng(0).standard_normal((2, 3, 8, 8)).astype(np.float32)
    with torch.no_grad():
        want = tmodel.eval()(torch.tensor(x)).numpy()
    np.testing.assert_allclose(model(x), want, rtol=1e-5, atol=1e-5)
