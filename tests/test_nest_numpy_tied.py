"""Issue 16: the nested NumPy target for specs with a tied weight or a block of several inputs, and
torch's order of state_dict keys.

specs/gpt2.arch (`dense lm_head ... tied=transformer.wte`), specs/transformer_small.arch (a tied
generator, blocks that read `(x, memory)`) and specs/bert_base.arch (`block bert_output(...) reads
(hidden, residual)`) were written as the flat NumPy class. The outside truth is the generated PyTorch
module, whose structure, keys and tie other tests hold against transformers and torch: its classes
(names, and which instance of which class sits where) are the NumPy model's; its state_dict, loaded by
key, gives the NumPy model its outputs; autograd on it gives one backward's gradients (float64, eval
mode: no dropout draws); and for every spec in specs/ its state_dict lists the keys in the NumPy
model's order.
"""

from __future__ import annotations

import ast
import functools
from pathlib import Path

import numpy as np
import pytest
import torch
from codegen_util import build, load_module
from test_numpy_train_networks import batch, compare_gradients, float64_models
from torch.nn.attention import SDPBackend, sdpa_kernel

import archc
from archc.codegen import generate

pytestmark = pytest.mark.usefixtures("one_thread")

SPECS = Path(__file__).resolve().parent.parent / "specs"

# spec -> {text in it: what replaces it}: the same spec, small (gpt2's as tests/test_gpt2.py shrinks it)
SMALL = {
    "gpt2": {
        "1024 tokens vocab=50257": "9 tokens vocab=50",
        "768    1024       12  12     3072": "48     16         2   4      96",
        "dense lm_head: 50257": "dense lm_head: 50",
    },
    "bert_base": {
        "512 tokens vocab=30522": "9 tokens vocab=50",
        "30522 768  512        1e-12  0.1": "50    48   16         1e-12  0.1",
        "12  12     3072   1e-12  0.1": "2   4      96     1e-12  0.1",
    },
    "transformer_small": {
        "32 tokens vocab=1000": "7 tokens vocab=1000",
    },
}

# a block of two inputs on float values, called once on two values and once on one value twice
TWO_INPUTS = """
block gate(width) reads (a, b) {
  dense left (a): width -> tanh
  dense right (b): width
  mul gated (left, right)
  add (gated, a)
}

network TwoInputs {
  input x: 6
  input y: 6
  gate first (x, y): 6
  gate again (first, first): 6
  dense head: 3
}
"""


@functools.cache
def network(spec: str) -> archc.Network:
    text = (SPECS / f"{spec}.arch").read_text(encoding="utf-8")
    for big, small in SMALL[spec].items():
        assert big in text
        text = text.replace(big, small)
    return archc.loads(text, f"{spec}_small.arch")


def _classes(code: str, base: str) -> set[str]:
    """The names of the classes of the generated file that derive from `base` (its blocks' and the network's)."""
    tree = ast.parse(code)
    return {c.name for c in tree.body if isinstance(c, ast.ClassDef) and [ast.unparse(b) for b in c.bases] == [base]}


def _numpy_structure(model) -> dict[str, str]:
    """key prefix -> the class of the block instance there (the network's at "")."""
    return {prefix.rstrip("."): type(m).__name__ for prefix, m in model.modules() if type(m).__name__ != "Sequential"}


def _torch_structure(model) -> dict[str, str]:
    """The same of the PyTorch module: its submodules whose class the generated file defines."""
    here = type(model).__module__
    return {name: type(m).__name__ for name, m in model.named_modules() if type(m).__module__ == here}


@pytest.mark.parametrize("spec", SMALL)
def test_the_numpy_model_has_the_pytorch_modules_classes_where_it_has_them(spec):
    net = network(spec)
    tmodel, tgen, _ = build(net, "torch")
    code = generate(net, "numpy").code
    nmodel = load_module(code).build_model()
    assert _classes(code, "Module") - {"Sequential"} == _classes(tgen.code, "nn.Module")  # nn.Sequential's mirror
    structure = _torch_structure(tmodel)
    assert len(structure) > 3  # blocks, not one flat class
    assert _numpy_structure(nmodel) == structure


@pytest.mark.parametrize("spec", SMALL)
def test_the_numpy_model_gives_the_pytorch_modules_outputs_from_its_state_dict(spec):
    net = network(spec)
    torch.manual_seed(0)
    tmodel, _, _ = build(net, "torch")
    tmodel.eval()
    nmodel = load_module(generate(net, "numpy").code).build_model()
    nmodel.load_state_dict({k: v.detach().numpy() for k, v in tmodel.state_dict().items()})
    inputs = batch(net, 2, np.float32, seed=1)
    with torch.no_grad(), sdpa_kernel(SDPBackend.MATH):
        want = tmodel(*(torch.tensor(x) for x in inputs))
    got = nmodel(*inputs)
    want, got = (want, got) if isinstance(want, tuple) else ((want,), (got,))
    assert len(got) == len(want)
    for g, w in zip(got, want):
        w = w.numpy()
        assert g.shape == w.shape
        assert float(np.abs(g - w).max()) <= 1e-4 * float(np.abs(w).max())


@pytest.mark.parametrize("spec", SMALL)
def test_one_backward_gives_autograds_gradients_of_every_parameter(spec):
    """The tied weight's gradient is the sum of its two uses', under its layer's key, as autograd
    gives it on the one parameter; a block of several inputs passes each its gradient."""
    net = network(spec)
    tmodel, nmodel = float64_models(net)
    with sdpa_kernel(SDPBackend.MATH):
        compare_gradients(tmodel, nmodel, batch(net, 2, np.float64, seed=2), np.float64, train=False)


def test_a_block_of_two_inputs_gives_each_its_gradient():
    """On float inputs, whose gradients autograd gives too; `again` reads one value as both inputs,
    whose two gradients add up."""
    net = archc.loads(TWO_INPUTS, "two.arch")
    tmodel, nmodel = float64_models(net)
    assert _numpy_structure(nmodel) == _torch_structure(tmodel)
    assert {"first", "again"} <= _numpy_structure(nmodel).keys()
    compare_gradients(tmodel, nmodel, batch(net, 3, np.float64, seed=4), np.float64, train=True)


@pytest.mark.parametrize("spec", ["gpt2", "transformer_small"])
def test_a_tied_weight_is_one_array_under_both_keys_stepped_once(spec):
    net = network(spec)
    module = load_module(generate(net, "numpy").code)
    model = module.build_model()
    ((key, shared),) = model.tied.items()
    entries = {k: module_.arrays[own] for k, module_, own in model.entries()}
    assert entries[key] is entries[shared]  # one array, as torch's one parameter
    assert key in model.state_dict() and key not in model.parameters()
    model.train()
    inputs = batch(net, 2, np.float32, seed=3)
    out = model(*inputs)
    model.backward(np.ones_like(out))
    assert key not in model.grads and shared in model.grads
    want = model.state_dict()[shared] - 0.5 * model.grads[shared]  # both uses' gradient, once
    module.SGD(model, lr=0.5).step()
    after = model.state_dict()
    np.testing.assert_allclose(after[shared], want, rtol=1e-6, atol=1e-7)
    np.testing.assert_array_equal(after[key], after[shared])


@pytest.mark.parametrize("spec", sorted(p.stem for p in SPECS.glob("*.arch")))
def test_state_dict_keys_come_in_torchs_order(spec):
    net = archc.load(SPECS / f"{spec}.arch")
    with torch.device("meta"):  # the keys alone: no weights drawn
        tmodel, _, _ = build(net, "torch")
    nmodel = load_module(generate(net, "numpy").code).build_model()
    assert list(nmodel.state_dict()) == list(tmodel.state_dict())
