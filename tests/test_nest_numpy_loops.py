"""Issue 16, item 1: the NumPy target mirrors the PyTorch target's loop classes (nested_torch._chain):
a block whose instances run a repeat a different number of times (regnet's stages of 1, 3, 6 and 6
blocks) is one class, a `Sequential` whose __init__ registers its blocks under the same f-strings by
the same loop. The outside truth is torch: torchvision's regnet_y_400mf and the hand-built stages of
test_nest_loops.py, whose state_dict the NumPy model loads by key and whose outputs and gradients it
gives."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
import torchvision
from codegen_util import build, load_module, randomise_batch_norm
from test_nest_loops import LOOPS, _reference
from test_numpy_train_networks import batch, compare_gradients

import archc
from archc.codegen import generate

pytestmark = pytest.mark.usefixtures("one_thread")

SPEC = Path(__file__).resolve().parent.parent / "specs" / "regnet_y_400mf.arch"


def test_the_loop_stages_are_one_sequential_class_and_give_the_hand_built_stages_output():
    net = archc.loads(LOOPS, "loops.arch")
    model, gen, _ = build(net, "numpy")
    assert "class Stage(Sequential):" in gen.code and "class Plain(Sequential):" in gen.code
    assert "        for i in range(n - 1):\n" in gen.code
    assert '            self.add_module(f"block{k}-{i + 1}", Unit(rng, ch, ch))\n' in gen.code
    reference = _reference().double()
    state = {k: v.numpy().copy() for k, v in reference.state_dict().items()}
    assert list(model.state_dict()) == list(state)  # the same keys, in torch's order
    model.load_state_dict(state)
    model.state = {k: v.astype(np.float64) for k, v in model.state.items()}
    (x,) = batch(net, 2, np.float64)
    compare_gradients(reference, model, [x], np.float64, train=True)


def test_regnets_numpy_model_loads_torchvisions_and_gives_its_outputs_and_gradients():
    net = archc.load(SPEC, inputs={"image": (3, 64, 64)})
    code = generate(net, "numpy").code
    assert "class Stage(Sequential):" in code and "class Stage_" not in code
    torch.manual_seed(0)
    tmodel = torchvision.models.regnet_y_400mf(weights=None).double()
    randomise_batch_norm(tmodel, 0)
    model = load_module(code).build_model()
    state = {k: v.detach().numpy().copy() for k, v in tmodel.state_dict().items()}
    assert set(model.state_dict()) == set(state)
    # in the generated PyTorch module's order (whose `if` registers `proj` after `f`; torchvision's before)
    assert list(model.state_dict()) == list(load_module(generate(net, "torch").code).build_model().state_dict())
    model.load_state_dict(state)
    model.state = {k: v.astype(np.float64) for k, v in model.state.items()}
    compare_gradients(tmodel, model, batch(net, 2, np.float64), np.float64, train=False)
