"""specs/gpt2.arch against Hugging Face's GPT2LMHeadModel (default GPT2Config, eager attention), and the
`dense ... transposed` layer its Conv1D layers are, against transformers' Conv1D.

Outside truths: figures.md's parameters and MACs at 1,024 tokens; the transformers model built from its
config (nothing downloaded): its parameter count, its MACs at a short length (torch's flop counter, grad
mode on, eager attention: every matmul counted; MACs = flops / 2), and its logits after its own
state_dict is loaded strictly, by key, into both generated models.
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import onnxruntime
import pytest
import torch
from codegen_util import build, load_module
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from test_numpy_train_networks import compare_gradients, float64_models
from torch.utils.flop_counter import FlopCounterMode
from transformers import GPT2Config, GPT2LMHeadModel
from transformers.pytorch_utils import Conv1D

import archc
from archc.codegen import generate

pytestmark = pytest.mark.usefixtures("one_thread")

ROOT = Path(__file__).parent.parent
SPEC = ROOT / "specs" / "gpt2.arch"
# figures.md, "Networks with known totals": transformers' GPT2LMHeadModel, default config, tied head, at 1,024
# tokens, eager attention (every matmul counted): params, MACs
FIGURES = (124_439_808, 145_824_153_600)
FEW = settings(max_examples=6, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@pytest.fixture(scope="module")
def hf():
    torch.manual_seed(0)
    config = GPT2Config()
    config._attn_implementation = "eager"
    return GPT2LMHeadModel(config).eval()


def macs_of(model, *inputs) -> int:
    with FlopCounterMode(display=False) as counter:
        model(*inputs)
    return counter.get_total_flops() // 2


def test_figures_at_1024_tokens_are_figures_md():
    net = archc.load(SPEC)
    assert (net.totals.params, net.totals.macs) == FIGURES
    assert not net.warnings


def test_params_and_macs_are_transformers_at_a_short_length(hf):
    net = archc.load(SPEC, inputs={"input_ids": (16,)})
    assert net.totals.params == sum(p.numel() for p in hf.parameters())  # the tied weight once
    ids = torch.randint(0, 50257, (1, 16))
    assert net.totals.macs == macs_of(hf, ids)  # grad mode on


def test_the_pytorch_target_loads_transformers_state_dict_strictly(hf):
    net = archc.load(SPEC, inputs={"input_ids": (16,)})
    model, _, _ = build(net, "torch")
    assert list(model.state_dict()) == list(hf.state_dict())
    model.load_state_dict(hf.state_dict(), strict=True)
    assert model.lm_head.weight is model.transformer.wte.weight
    model.eval()
    ids = torch.randint(0, 50257, (2, 16), generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        got, want = model(ids), hf(ids).logits
    assert float((got - want).abs().max()) <= 1e-4 * float(want.abs().max())


def test_the_numpy_target_gives_transformers_logits(hf):
    net = archc.load(SPEC, inputs={"input_ids": (6,)})
    model = load_module(generate(net, "numpy").code).build_model()
    model.load_state_dict({k: v.numpy() for k, v in hf.state_dict().items()})
    ids = np.random.default_rng(2).integers(0, 50257, (2, 6))
    with torch.no_grad():
        want = hf(torch.tensor(ids)).logits.numpy()
    got = model(ids)
    assert float(np.abs(got - want).max()) <= 1e-4 * float(np.abs(want).max())


def test_the_spec_is_written_with_blocks_and_a_repeat():
    text = SPEC.read_text(encoding="utf-8")
    assert re.search(r"^\s*repeat ", text, re.M) and "tied=transformer.wte" in text


# -- `dense ... transposed`, as transformers' Conv1D ----------------------------------------------


def conv1d_pair(features: int, units: int, bias: bool, length: int, leading: bool):
    text = f"""
network T {{
  input x: {f"{length}x{features} sequence" if leading else features}
  dense c: {units} transposed bias={"true" if bias else "false"}
}}
"""
    return archc.loads(text, "t.arch")


@FEW
@given(
    features=st.integers(1, 24),
    units=st.integers(1, 24),
    bias=st.booleans(),
    length=st.integers(1, 6),
    leading=st.booleans(),
)
def test_a_transposed_dense_is_transformers_conv1d(features, units, bias, length, leading):
    net = conv1d_pair(features, units, bias, length, leading)
    ref = Conv1D(units, features)
    if not bias:  # Conv1D always has a bias: the oracle's output without it
        ref.bias = None
    shape = (length, features) if leading else (features,)
    x = torch.randn(2, *shape)
    with torch.no_grad():
        want = x @ ref.weight + (ref.bias if bias else 0)
    assert net.layer("c").shape == tuple(want.shape[1:])
    assert net.totals.params == sum(p.numel() for p in ref.parameters())
    if bias:  # the flop counter sees Conv1D's addmm
        assert net.totals.macs == macs_of(ref, x[:1])
    else:
        assert net.totals.macs == features * units * (length if leading else 1)
    model, _, _ = build(net, "torch")
    model.load_state_dict({f"c.{k}": v for k, v in ref.state_dict().items()}, strict=True)  # Conv1D's keys
    with torch.no_grad():
        torch.testing.assert_close(model(x), want)
    numpy_model = load_module(generate(net, "numpy").code).build_model()
    numpy_model.load_state_dict(model.state_dict())
    np.testing.assert_allclose(numpy_model(x.numpy()), want.numpy(), rtol=1e-5, atol=1e-5)
    onnx = net.to_onnx(weights=model.state_dict())
    session = onnxruntime.InferenceSession(onnx.SerializeToString(), providers=["CPUExecutionProvider"])
    np.testing.assert_allclose(session.run(None, {"x": x.numpy()})[0], want.numpy(), rtol=1e-5, atol=1e-5)


@FEW
@given(features=st.integers(1, 12), units=st.integers(1, 12), bias=st.booleans(), length=st.integers(1, 5))
def test_a_transposed_dense_trains_as_autograd(features, units, bias, length):
    net = conv1d_pair(features, units, bias, length, True)
    torch.manual_seed(0)
    tmodel, _, _ = build(net, "torch")
    tmodel.double()
    nmodel = load_module(generate(net, "numpy").code).build_model()
    nmodel.state = {k: v.detach().numpy().copy() for k, v in tmodel.state_dict().items()}
    x = np.random.default_rng(0).standard_normal((3, length, features))
    compare_gradients(tmodel, nmodel, [x], np.float64, train=True)


def test_a_transposed_head_tied_to_an_embedding_needs_its_transpose():
    """A transposed weight is in x units: an embedding's vocab x dim table is not that shape (E0308)."""
    text = """
network T {
  input ids: 8 tokens vocab=20
  embedding wte: 6
  dense head: 20 transposed tied=wte
}
"""
    with pytest.raises(archc.ArchError) as info:
        archc.loads(text, "t.arch")
    (diag,) = info.value.diagnostics
    assert diag.code == "E0308" and "6x20" in diag.message and "20x6" in diag.message


def small_gpt2() -> archc.Network:
    """specs/gpt2.arch with its sizes shrunk (2 layers of 4 heads, 48 wide, 9 tokens of 50): the same spec."""
    text = SPEC.read_text(encoding="utf-8")
    for big, small in {
        "1024 tokens vocab=50257": "9 tokens vocab=50",
        "768    1024       12  12     3072": "48     16         2   4      96",
        "dense lm_head: 50257": "dense lm_head: 50",
    }.items():
        assert big in text
        text = text.replace(big, small)
    return archc.loads(text, "gpt2_small.arch")


def test_the_numpy_model_gives_autograds_gradients_on_the_pytorch_module():
    """One forward and backward of the shrunk spec in eval mode (no dropout draws, which differ between the
    two): every parameter's gradient, the tied weight's the sum of its two uses', as autograd gives it on
    the generated PyTorch module, in float64."""
    net = small_gpt2()
    tmodel, nmodel = float64_models(net)
    ids = np.random.default_rng(3).integers(0, 50, (2, 9))
    compare_gradients(tmodel, nmodel, [ids], np.float64, train=False)
