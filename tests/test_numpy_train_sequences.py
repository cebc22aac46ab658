"""The sequence layers train in the generated NumPy model, against torch autograd on the generated PyTorch module.

lstm, gru, attention, sdpa, embedding, param, position_embedding, to_sequence,
select and mean, each in random small configurations drawn by hypothesis, then
specs/lstm_classifier.arch and a small transformer encoder: the PyTorch target of
the same spec, with the NumPy model's weights, is the oracle for the gradient of
every parameter (under torch's state_dict keys) and of every float input (1e-4
relative, float64: an LSTM's gates and a softmax make float32 rounding the larger
error); token ids have no gradient (backward gives None for them). Dropout is 0
there; the dropout masks the training forward draws (between an LSTM's layers, on
attention's weights) are checked on their own: torch, given the mask the NumPy
model kept, computes the same output and gradients.
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest
import torch
from codegen_util import build, load_module
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from test_numpy_train_networks import assert_close, batch, compare_gradients

import archc
from archc.codegen import generate

pytestmark = pytest.mark.usefixtures("one_thread")

SPECS = Path(__file__).parent.parent / "specs"
FEW = settings(max_examples=8, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def pair(net, dtype=np.float64, seed: int = 0):
    """(torch model, NumPy model) of one analysed network with the same weights, in `dtype`."""
    torch.manual_seed(seed)
    tmodel, _, _ = build(net, "torch")
    nmodel = load_module(generate(net, "numpy").code).build_model()
    if dtype == np.float64:
        tmodel.double()
    nmodel.state = {k: v.detach().numpy().copy() for k, v in tmodel.state_dict().items()}
    return tmodel, nmodel


def check(text: str, dtype=np.float64, seed: int = 0, **inputs) -> None:
    """One forward and backward of the spec in both models, in training mode: the same outputs,
    and the same gradients of every parameter and float input."""
    net = archc.loads(text, "seq.arch", base=SPECS, inputs=inputs or None)
    tmodel, nmodel = pair(net, dtype, seed)
    try:
        compare_gradients(tmodel, nmodel, batch(net, 3, dtype, seed), dtype, train=True)
    except AssertionError as error:
        raise AssertionError(f"{error}\n{text}") from error


@FEW
@given(
    op=st.sampled_from(["lstm", "gru"]),
    units=st.integers(2, 5),
    layers=st.integers(1, 2),
    bidirectional=st.booleans(),
    bias=st.booleans(),
    last=st.booleans(),
    proj=st.integers(0, 1),
    seed=st.integers(0, 100),
)
def test_recurrent_layers(op, units, layers, bidirectional, bias, last, proj, seed):
    options = f"layers={layers}" + " bidirectional" * bidirectional + " bias=false" * (not bias) + " last" * last
    options += f" proj={proj}" if op == "lstm" and proj else ""
    check(f"network R {{\n input x: 4x3 sequence\n {op} r: {units} {options}\n dense d: 2\n}}", seed=seed)


@FEW
@given(
    heads=st.sampled_from([1, 2]),
    inputs=st.integers(1, 3),
    other_width=st.booleans(),
    bias=st.booleans(),
    causal=st.booleans(),
    seed=st.integers(0, 100),
)
def test_attention(heads, inputs, other_width, bias, causal, seed):
    """Self-attention (one input: its gradient the sum of three), with a memory, or q, k and v apart:
    packed in_proj_weight, or q/k/v_proj_weight where key and value have another width."""
    width = 6 if other_width and inputs == 3 else 4
    lines = ["input x: 5x4 sequence", "input m: 3x4 sequence", f"input v: 3x{width} sequence"][:inputs]
    sources = ", ".join("xmv"[:inputs])
    options = " causal" * (causal and inputs == 1) + " bias=false" * (not bias)
    body = "\n ".join([*lines, f"attention a ({sources}): {heads}{options}", "layernorm n: 1", "dense d: 3"])
    check(f"network A {{\n {body}\n}}", seed=seed)


@FEW
@given(packed=st.integers(1, 3), heads=st.sampled_from([1, 2]), causal=st.booleans(), seed=st.integers(0, 100))
def test_sdpa(packed, heads, causal, seed):
    """q, k and v as three dense projections, (q, kv), or one with all three side by side."""
    widths = {1: [4, 4, 4], 2: [4, 8], 3: [12]}[packed]
    lines = ["input x: 5x6 sequence", *(f"dense p{i} (x): {w}" for i, w in enumerate(widths))]
    sources = ", ".join(f"p{i}" for i in range(len(widths)))
    lines += [f"sdpa s ({sources}): {heads}" + " causal" * causal, "dense d: 3"]
    check("network S {\n " + "\n ".join(lines) + "\n}", seed=seed)


@FEW
@given(padding=st.booleans(), seed=st.integers(0, 100))
def test_embeddings_param_select_and_mean(padding, seed):
    """Token ids (no gradient) through embedding and position_embedding; a class token `param`
    concatenated before them (its gradient summed over the batch), a `param` added, then the first
    token and the mean over the tokens."""
    pad = " padding_idx=0" if padding else ""
    text = f"""network E {{
      input ids: 5 tokens vocab=7
      embedding e (ids): 4{pad}
      position_embedding p (ids): 4 8
      add s (e, p)
      param cls: 1x4 std=0.02
      concat c (cls, s): axis=sequence
      param bias: 6x4 std=0.02
      add b (c, bias)
      select first (b): 0
      mean avg (b)
      add out (first, avg)
    }}"""
    check(text, seed=seed)


@FEW
@given(seed=st.integers(0, 100))
def test_to_sequence_and_position_embedding_of_a_float_sequence(seed):
    """A conv's map as tokens, its positions embedded (which read only its length), the mean over
    the features (axis=channels) and a token, the last."""
    text = """network V {
      input x: 3x4x4
      conv c: 4 @ 2 /2
      to_sequence t
      position_embedding p (t): 4 9
      add s (t, p)
      select last (s): 3
      mean m (s): axis=channels
      concat out (last, m)
    }"""
    check(text, seed=seed)


def test_the_lstm_classifier():
    """specs/lstm_classifier.arch (two bidirectional layers, `last`), at 6 steps, dropout 0."""
    text = (SPECS / "lstm_classifier.arch").read_text()
    text, count = re.subn(r"(dropout=|dropout drop: )0\.5\b", r"\g<1>0", text)
    assert count == 2
    check(text, words=(300, 6))


TRANSFORMER = """network Encoder {
  input ids: 6 tokens vocab=11
  embedding tok (ids): 8
  position_embedding pos (ids): 8 16
  add h (tok, pos)
  layernorm n1 (h): 1
  attention att (n1): 2 causal
  add r1 (h, att)
  layernorm n2 (r1): 1
  dense up (n2): 16 -> gelu
  dense down (up): 8
  add r2 (r1, down)
  layernorm nf (r2): 1
  select cls (nf): 0
  dense head (cls): 3
}"""


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_a_small_transformer_encoder(dtype):
    check(TRANSFORMER, dtype)


def test_lstm_dropout_masks_between_layers():
    """Training with dropout=0.5 between two layers: the masks the NumPy model kept, multiplied in
    between two one-layer torch LSTMs, give its output and gradients."""
    net = archc.loads("network R {\n input x: 5x3 sequence\n lstm r: 4 layers=2 dropout=0.5\n}", "r.arch")
    tmodel, nmodel = pair(net)
    nmodel.train()
    x = np.random.default_rng(0).standard_normal((2, 5, 3))
    out = nmodel(x)
    _, (masks,) = nmodel.saved["r"]
    assert set(np.unique(masks)) == {0, 2}
    lstm = tmodel.r
    layers = [torch.nn.LSTM(3 if k == 0 else 4, 4, batch_first=True).double() for k in range(2)]
    for k, layer in enumerate(layers):
        own = {key.replace(f"l{k}", "l0"): v for key, v in lstm.state_dict().items() if key[-1] == str(k)}
        layer.load_state_dict(own)
    tx = torch.tensor(x, requires_grad=True)
    want = layers[1](layers[0](tx)[0] * torch.tensor(masks))[0]
    assert_close(out, want.detach().numpy(), "output")
    grad = np.random.default_rng(1).standard_normal(out.shape)
    want.backward(torch.tensor(grad))
    assert_close(nmodel.backward(grad), tx.grad.numpy(), "input")
    for key in lstm.state_dict():
        k = int(key[-1])
        ref = dict(layers[k].named_parameters())[key[:-1] + "0"].grad
        assert_close(nmodel.grads[f"r.{key}"], ref.numpy(), key)


def test_attention_dropout_mask():
    """Training with dropout=0.5 on attention's weights: torch's multi-head attention written out,
    with the mask the NumPy model kept, gives its output and gradients."""
    net = archc.loads("network A {\n input x: 5x4 sequence\n attention a: 2 dropout=0.5\n}", "a.arch")
    tmodel, nmodel = pair(net)
    nmodel.train()
    x = np.random.default_rng(0).standard_normal((2, 5, 4))
    out = nmodel(x)
    mask = nmodel.saved["a"][3]
    assert mask.shape == (2, 2, 5, 5) and set(np.unique(mask)) == {0, 2}
    params = dict(tmodel.a.named_parameters())
    tx = torch.tensor(x, requires_grad=True)
    q, k, v = torch.nn.functional.linear(tx, params["in_proj_weight"], params["in_proj_bias"]).chunk(3, -1)
    heads = [t.unflatten(-1, (2, 2)).transpose(1, 2) for t in (q, k, v)]
    weights = torch.softmax(heads[0] @ heads[1].transpose(-1, -2) / 2**0.5, -1) * torch.tensor(mask)
    attended = (weights @ heads[2]).transpose(1, 2).flatten(2)
    want = torch.nn.functional.linear(attended, params["out_proj.weight"], params["out_proj.bias"])
    assert_close(out, want.detach().numpy(), "output")
    grad = np.random.default_rng(1).standard_normal(out.shape)
    want.backward(torch.tensor(grad))
    assert_close(nmodel.backward(grad), tx.grad.numpy(), "input")
    for key, p in params.items():
        assert_close(nmodel.grads[f"a.{key}"], p.grad.numpy(), key)


def test_a_param_that_is_an_output_and_read_by_a_layer():
    """The batch's gradient from the `add` it is broadcast into and the output's own (1 x shape)
    gradient are each summed to its shape before they add up; adding them first broadcast the
    output's gradient over the batch (0.886 against torch's 0.194 in a random network)."""
    check(
        """network P {
      input x: 5
      dense d: 1
      param qp: 1
      add q0 (d, qp)
      output (q0, qp)
    }"""
    )
