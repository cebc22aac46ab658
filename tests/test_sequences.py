"""Sequences and token ids (issue 17): the sequence layers against torch, their backward kernels
against autograd, and their errors with the fixes they offer.

Each layer is written once as a spec and once as a torch module whose attributes have the
spec's layer names. Over random configurations, archc's shape, parameters and MACs must
equal torch's (MACs from torch's flop counter, / 2 per sample), and with the torch module's
state_dict loaded strictly by key, the generated PyTorch model and the generated NumPy
model must give torch's output.
"""

from __future__ import annotations

import random

import numpy as np
import pytest
import torch
import torch.nn.functional as F  # noqa: N812 (the usual torch spelling)
from codegen_util import build
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

import archc
from archc.codegen.runtime import numpy_backward as B  # noqa: N812 (short, used on every line)
from archc.codegen.runtime import numpy_kernels as K  # noqa: N812
from archc.report.table import network_json

pytestmark = pytest.mark.usefixtures("one_thread")
BATCH = 3
CASES = 8  # random configurations per layer type
# tested against torch here
SEQUENCE_LAYERS = {"embedding", "position_embedding", "param", "to_sequence", "select", "mean"}


class Reference(nn.Module):
    """The torch side: `fn(self, *xs)`, with submodules and parameters named as the spec's layers."""

    def __init__(self, fn, **parts):
        super().__init__()
        self.fn = fn
        for name, part in parts.items():
            setattr(self, name, part)

    def forward(self, *xs):
        return self.fn(self, *xs)


def against_torch(spec: str, reference: nn.Module, *xs: torch.Tensor) -> None:
    """archc's figures equal torch's, and both generated models give the reference's output."""
    net = archc.loads(spec, "t.arch")
    reference.eval()
    counter = FlopCounterMode(display=False)
    with counter, torch.no_grad():
        expected = reference(*xs)
    out = net.graph.outputs[0]
    assert tuple(out.shape) == tuple(expected.shape[1:])
    assert net.totals.params == sum(p.numel() for p in reference.parameters())
    assert net.totals.macs * 2 * BATCH == counter.get_total_flops()
    state = reference.state_dict()
    model, _, _ = build(net, "torch")
    model.load_state_dict(state, strict=True)
    model.eval()
    with torch.no_grad():
        torch.testing.assert_close(model(*xs), expected, rtol=1e-5, atol=1e-5)
    numpy_model, _, _ = build(net, "numpy")
    numpy_model.load_state_dict({k: v.numpy() for k, v in state.items()})
    numpy_model.eval()
    ours = numpy_model(*(x.numpy() for x in xs))
    np.testing.assert_allclose(ours, expected.numpy(), rtol=1e-4, atol=1e-5)


def num(value: int) -> str:
    """A whole number as a spec writes it: the language has no unary minus (docs, section 5)."""
    return str(value) if value >= 0 else f"0-{-value}"


def configs(seed: int):
    return [random.Random(seed * 100 + i) for i in range(CASES)]


@pytest.mark.parametrize("rng", configs(1))
def test_embedding(rng):
    length, vocab, dim = rng.randint(1, 12), rng.randint(1, 50), rng.randint(1, 16)
    pad = rng.choice([None, rng.randrange(-vocab, vocab)])
    spec = f"""network E {{
      input ids: {length} tokens vocab={vocab}
      embedding emb: {dim}{"" if pad is None else f" padding_idx={num(pad)}"}
    }}"""
    ref = Reference(lambda m, ids: m.emb(ids), emb=nn.Embedding(vocab, dim, padding_idx=pad))
    against_torch(spec, ref, torch.randint(0, vocab, (BATCH, length)))


@pytest.mark.parametrize("rng", configs(2))
def test_embedding_with_a_larger_table_then_dense(rng):
    length, vocab, dim, units = rng.randint(1, 9), rng.randint(2, 30), rng.randint(1, 12), rng.randint(1, 9)
    spec = f"""network E {{
      input ids: {length} tokens vocab={vocab}
      embedding emb: {dim} vocab={vocab + 7}
      dense fc: {units}
    }}"""
    ref = Reference(lambda m, ids: m.fc(m.emb(ids)), emb=nn.Embedding(vocab + 7, dim), fc=nn.Linear(dim, units))
    against_torch(spec, ref, torch.randint(0, vocab, (BATCH, length)))


@pytest.mark.parametrize("rng", configs(10))
def test_token_and_position_embeddings(rng):
    """GPT-2's prologue: wte(ids) + wpe(arange(L)), wpe an nn.Embedding of `max` positions."""
    length, vocab, dim = rng.randint(1, 12), rng.randint(1, 40), rng.randint(1, 12)
    most = length + rng.randint(0, 5)
    spec = f"""network G {{
      input ids: {length} tokens vocab={vocab}
      embedding wte: {dim}
      position_embedding wpe (ids): {dim} {most}
      add (wte, wpe)
    }}"""

    def fn(m, ids):
        return m.wte(ids) + m.wpe(torch.arange(ids.shape[1]))

    ref = Reference(fn, wte=nn.Embedding(vocab, dim), wpe=nn.Embedding(most, dim))
    against_torch(spec, ref, torch.randint(0, vocab, (BATCH, length)))


def test_position_embedding_of_a_sequence_longer_than_max():
    text = "network G {\n  input x: 30x8 sequence\n  position_embedding p: 8 max=16\n  add (x, p)\n}\n"
    (diag,) = errors(text)
    assert (diag.code, diag.span.line, diag.span.col) == ("E0205", 3, 27)
    net = archc.loads(fixed(text, diag), "t.arch")
    assert net.graph.nodes["p"].params == nn.Embedding(30, 8).weight.numel()
    (diag,) = errors("network G {\n  input x: 3x8x8\n  position_embedding: 8 16\n}\n")
    assert (diag.code, diag.span.line) == ("E0307", 3)


@pytest.mark.parametrize("rng", configs(3))
def test_class_token_and_position_embedding(rng):
    """ViT's prologue as torchvision writes it: the class token expanded over the batch and put
    first on the sequence axis, then the position embedding added (broadcast over the batch)."""
    length, dim = rng.randint(1, 10), rng.randint(1, 12)
    spec = f"""network P {{
      input x: {length}x{dim} sequence
      param class_token: 1x{dim}
      concat (class_token, x): axis=sequence
      param pos_embedding: {length + 1}x{dim} std=0.02
      add (concat1, pos_embedding)
    }}"""

    def fn(m, x):
        return torch.cat([m.class_token.expand(x.shape[0], -1, -1), x], dim=1) + m.pos_embedding

    ref = Reference(fn)
    ref.class_token = nn.Parameter(torch.randn(1, 1, dim))
    ref.pos_embedding = nn.Parameter(torch.randn(1, length + 1, dim))
    against_torch(spec, ref, torch.randn(BATCH, length, dim))


@pytest.mark.parametrize("rng", configs(4))
def test_concat_along_any_axis(rng):
    rank = rng.randint(1, 4)
    shape = [rng.randint(1, 5) for _ in range(rank)]
    axis = rng.randrange(-rank, rank)
    other = list(shape)
    other[axis] = rng.randint(1, 5)
    spec = f"""network C {{
      input a: {"x".join(map(str, shape))}
      input b: {"x".join(map(str, other))}
      concat (a, b): axis={num(axis)}
    }}"""
    ref = Reference(lambda m, a, b: torch.cat([a, b], dim=axis % rank + 1))
    against_torch(spec, ref, torch.randn(BATCH, *shape), torch.randn(BATCH, *other))


@pytest.mark.parametrize("rng", configs(5))
def test_patch_embedding(rng):
    """conv -> to_sequence is torchvision's ViT._process_input: reshape(n, hidden, -1).permute(0, 2, 1)."""
    patch, dim = rng.randint(1, 4), rng.randint(1, 10)
    h, w = patch * rng.randint(1, 4), patch * rng.randint(1, 4)
    spec = f"""network V {{
      input image: 3x{h}x{w}
      conv conv_proj: {dim} @ {patch}x{patch} /{patch}
      to_sequence
    }}"""

    def fn(m, x):
        x = m.conv_proj(x)
        return x.reshape(x.shape[0], dim, -1).permute(0, 2, 1)

    ref = Reference(fn, conv_proj=nn.Conv2d(3, dim, patch, patch))
    against_torch(spec, ref, torch.randn(BATCH, 3, h, w))


@pytest.mark.parametrize("rng", configs(6))
def test_select_and_mean(rng):
    length, dim, units = rng.randint(1, 10), rng.randint(1, 10), rng.randint(1, 6)
    index = rng.randrange(-length, length)
    spec = f"""network S {{
      input x: {length}x{dim} sequence
      dense fc: {units}
      select first (fc): {num(index)}
      mean pooled (fc)
      concat (first, pooled)
    }}"""

    def fn(m, x):
        y = m.fc(x)
        return torch.cat([y[:, index], y.mean(dim=1)], dim=1)

    against_torch(spec, Reference(fn, fc=nn.Linear(dim, units)), torch.randn(BATCH, length, dim))


@pytest.mark.parametrize("rng", configs(7))
def test_select_and_mean_along_a_numbered_axis(rng):
    shape = [rng.randint(1, 5) for _ in range(3)]
    axis = rng.randrange(3)
    index = rng.randrange(shape[axis])
    spec = f"""network S {{
      input x: {"x".join(map(str, shape))}
      select a (x): {index} axis={axis}
      mean b (x): axis={axis}
      add (a, b)
    }}"""

    def fn(m, x):
        return x.select(axis + 1, index) + x.mean(dim=axis + 1)

    against_torch(spec, Reference(fn), torch.randn(BATCH, *shape))


def test_figures_of_a_text_classifier():
    """MACs, params, JSON axes and dtypes of a small text model, from torch's modules."""
    spec = """network Text {
      input ids: 20 tokens vocab=1000
      embedding emb: 32 padding_idx=0
      layernorm ln: 1
      dense fc: 16 -> gelu(tanh)
      mean
      dense head: 4
    }"""

    def fn(m, ids):
        return m.head(F.gelu(m.fc(m.ln(m.emb(ids))), approximate="tanh").mean(dim=1))

    parts = dict(emb=nn.Embedding(1000, 32, padding_idx=0), ln=nn.LayerNorm(32), fc=nn.Linear(32, 16))
    against_torch(spec, Reference(fn, **parts, head=nn.Linear(16, 4)), torch.randint(0, 1000, (BATCH, 20)))
    document = network_json(archc.loads(spec, "t.arch"))
    layers = {layer["name"]: layer for layer in document["layers"]}
    assert (layers["ids"]["axes"], layers["ids"]["dtype"]) == (["L"], "int64")
    assert (layers["emb"]["axes"], layers["emb"]["dtype"]) == (["L", "C"], "float32")
    assert layers["mean1"]["axes"] == ["C"]


def test_a_learned_tensor_is_a_parameter_not_an_activation():
    net = archc.loads(
        """network P {
      input x: 5x8 sequence
      param pos: 5x8
      add (x, pos)
    }""",
        "t.arch",
    )
    pos = net.graph.nodes["pos"]
    assert (pos.params, pos.activations) == (40, 0)
    assert net.totals.activations == 80  # the input and the sum, 40 values each


def test_sequence_length_from_the_command_line():
    spec = """network S {
      input x: 197x768 sequence
      dense: 10
    }"""
    net = archc.loads(spec, "t.arch", inputs={"x": (50, 768)})
    assert tuple(net.graph.outputs[0].shape) == (50, 10)
    text = "network T {\n  input ids: 512 tokens vocab=100\n  embedding: 8\n}\n"
    ids = archc.loads(text, "t.arch", inputs={"ids": (64,)})
    assert tuple(ids.graph.outputs[0].shape) == (64, 8)


# -- backward kernels against autograd ------------------------------------------------


def autograd(function, *arrays, grad):
    tensors = [torch.tensor(a, requires_grad=True) for a in arrays]
    function(*tensors).backward(torch.from_numpy(grad))
    return [t.grad.numpy() for t in tensors]


@pytest.mark.parametrize("rng", configs(8))
def test_embedding_backward(rng):
    vocab, dim, shape = rng.randint(1, 20), rng.randint(1, 8), (rng.randint(1, 3), rng.randint(1, 9))
    pad = rng.choice([None, rng.randrange(vocab)])
    gen = np.random.default_rng(rng.randrange(1000))
    ids = gen.integers(0, vocab, shape)
    weight = K.embedding_weight(gen, vocab, dim, pad)
    grad = gen.standard_normal((*shape, dim)).astype(np.float32)
    (expected,) = autograd(lambda w: F.embedding(torch.from_numpy(ids), w, padding_idx=pad), weight, grad=grad)
    np.testing.assert_allclose(B.embedding_backward(grad, ids, vocab, pad), expected, rtol=1e-5, atol=1e-6)
    expected = F.embedding(torch.from_numpy(ids), torch.from_numpy(weight))
    np.testing.assert_array_equal(K.embedding(ids, weight), expected)


@pytest.mark.parametrize("rng", configs(9))
def test_sequence_backward_kernels(rng):
    gen = np.random.default_rng(rng.randrange(1000))
    x = gen.standard_normal((2, rng.randint(1, 5), rng.randint(1, 4), rng.randint(1, 4))).astype(np.float32)
    tokens = K.to_sequence(x)
    grad = gen.standard_normal(tokens.shape).astype(np.float32)
    (expected,) = autograd(lambda t: t.reshape(2, t.shape[1], -1).permute(0, 2, 1), x, grad=grad)
    np.testing.assert_allclose(B.to_sequence_backward(grad, x.shape), expected, rtol=1e-6)
    axis = rng.randrange(1, 4)
    grad = gen.standard_normal(x.mean(axis=axis).shape).astype(np.float32)
    (expected,) = autograd(lambda t: t.mean(dim=axis), x, grad=grad)
    np.testing.assert_allclose(B.mean_backward(grad, x.shape, axis), expected, rtol=1e-5, atol=1e-7)
    token = gen.standard_normal((1, 1, x.shape[-1])).astype(np.float32)
    grad = gen.standard_normal((2, 1, x.shape[-1])).astype(np.float32)
    (expected,) = autograd(lambda t: t.expand(2, -1, -1), token, grad=grad)
    np.testing.assert_allclose(B.broadcast_backward(grad, token.shape), expected, rtol=1e-5, atol=1e-7)


# -- errors, and the fixes they offer ------------------------------------------------


def errors(text: str):
    with pytest.raises(archc.ArchError) as info:
        archc.loads(text, "t.arch")
    return info.value.errors


def fixed(text: str, diag) -> str:
    assert diag.fixes, (diag.message, diag.help)
    for fix in sorted(diag.fixes, key=lambda f: (f.span.line, f.span.col), reverse=True):
        text = fix.apply(text)
    return text


def test_a_sequence_fed_to_a_conv_is_put_channels_first():
    text = "network S {\n  input x: 50x16 sequence\n  conv: 8 @ 3\n}\n"
    (diag,) = errors(text)
    assert (diag.code, diag.span.line, diag.span.col) == ("E0307", 3, 3)
    assert "channels first" in diag.message and "50x16" in diag.message
    net = archc.loads(fixed(text, diag), "t.arch")
    expected = nn.Conv1d(16, 8, 3)(torch.randn(1, 50, 16).permute(0, 2, 1)).shape[1:]
    assert tuple(net.graph.outputs[0].shape) == tuple(expected)
    assert "8x48" in diag.help[0]


@pytest.mark.parametrize("layer", ["maxpool: 2", "avgpool: 2", "upsample", "globalavgpool", "to_sequence"])
def test_a_sequence_fed_to_a_spatial_layer(layer):
    (diag,) = errors(f"network S {{\n  input x: 12x6 sequence\n  {layer}\n}}\n")
    assert diag.code == "E0307" and diag.span.line == 3


def test_token_ids_fed_to_another_layer_get_an_embedding():
    text = "network T {\n  input ids: 12 tokens vocab=30\n  dense: 4\n}\n"
    (diag,) = errors(text)
    assert (diag.code, diag.span.line) == ("E0307", 3)
    assert "only `embedding` and `position_embedding` read token ids" in diag.message
    net = archc.loads(fixed(text, diag), "t.arch")
    assert tuple(net.graph.outputs[0].shape) == (12, 4)


@pytest.mark.parametrize("layer", ["conv: 4 @ 3", "relu", "layernorm", "flatten"])
def test_token_ids_fed_to_anything_but_embedding(layer):
    (diag,) = errors(f"network T {{\n  input ids: 12 tokens vocab=30\n  {layer}\n}}\n")
    assert (diag.code, diag.span.line) == ("E0307", 3)


def test_embedding_of_real_numbers():
    (diag,) = errors("network T {\n  input x: 12\n  embedding: 4\n}\n")
    assert (diag.code, diag.span.line) == ("E0307", 3)


def test_select_out_of_range_offers_the_last_token():
    text = "network S {\n  input x: 197x768 sequence\n  select: 197\n}\n"
    (diag,) = errors(text)
    assert (diag.code, diag.span.line, diag.span.col) == ("E0205", 3, 11)
    assert "out of range" in diag.message
    assert fixed(text, diag).splitlines()[2] == "  select: 196"
    net = archc.loads(fixed(text, diag), "t.arch")
    assert tuple(net.graph.outputs[0].shape) == tuple(torch.randn(1, 197, 768)[:, 196].shape[1:])
    for index in (-198, 1000):
        (diag,) = errors(f"network S {{\n  input x: 197x768 sequence\n  select: {num(index)}\n}}\n")
        assert diag.code == "E0205"


def test_embedding_table_too_small_for_the_ids():
    text = "network T {\n  input ids: 12 tokens vocab=30\n  embedding: 4 vocab=20\n}\n"
    (diag,) = errors(text)
    assert (diag.code, diag.span.line, diag.span.col) == ("E0205", 3, 16)
    assert archc.loads(fixed(text, diag), "t.arch").totals.params == nn.Embedding(30, 4).weight.numel()


@pytest.mark.parametrize(
    "text",
    [
        "network T {\n  input ids: 12 tokens\n  embedding: 4\n}\n",  # no vocab
        "network T {\n  input ids: 12 vocab=5\n  embedding: 4\n}\n",  # a vocab, not tokens
        "network T {\n  input ids: 12 tokens vocab=5\n  embedding: 4 padding_idx=5\n}\n",
        "network T {\n  input ids: 12 tokens vocab=5\n  embedding: 0\n}\n",
        "network T {\n  input x: 3x8x8\n  mean\n}\n",  # no sequence axis
        "network T {\n  input x: 4x8 sequence\n  concat (x, x): axis=2\n}\n",
        "network T {\n  input x: 4x8\n  param p: 0x8\n  add (x, p)\n}\n",
    ],
)
def test_bad_values_are_located(text):
    (diag,) = errors(text)
    assert diag.code == "E0205" and diag.span.line in (2, 3)


def test_a_sequence_input_has_length_and_features():
    (diag,) = errors("network T {\n  input x: 3x8x8 sequence\n  dense: 4\n}\n")
    assert (diag.code, diag.span.line) == ("E0301", 2)


@pytest.mark.parametrize("over", ["", ": 1"])
def test_layernorm_of_a_sequence_normalises_each_token(over):
    """`layernorm` over the channels of a sequence is nn.LayerNorm(features), as over=1 is."""
    spec = f"network L {{\n  input x: 7x12 sequence\n  layernorm ln{over}\n}}\n"
    against_torch(spec, Reference(lambda m, x: m.ln(x), ln=nn.LayerNorm(12)), torch.randn(BATCH, 7, 12))


def test_token_ids_take_the_bytes_of_int64():
    """torch holds token ids as int64 whatever the network's element type: 8 bytes each."""
    spec = "network T {\n  input ids: 16 tokens vocab=100\n  embedding emb: 8\n}\n"
    ids = torch.randint(0, 100, (2, 16))
    out = nn.Embedding(100, 8).half()(ids)
    net = archc.loads(spec, "t.arch", batch=2, dtype="float16")
    memory = {layer["name"]: layer["memory_bytes"] for layer in network_json(net)["layers"]}
    assert memory == {"ids": ids.nbytes, "emb": out.nbytes}
    assert net.totals.activation_bytes == net.totals.peak_activation_bytes == ids.nbytes + out.nbytes


@pytest.mark.parametrize("layer", ["select: 0 axis=0", "mean: axis=0"])
def test_a_vector_has_no_axis_to_remove(layer):
    (diag,) = errors(f"network T {{\n  input x: 12\n  {layer}\n}}\n")
    assert (diag.code, diag.span.line) == ("E0301", 3)


def test_softmax_of_a_sequence_is_over_each_tokens_features():
    """`-> softmax` and a `softmax` layer normalise the channel axis: the features, last in a sequence."""
    spec = """network S {
      input x: 6x5 sequence
      dense fc: 4 -> softmax
      softmax probs (x)
      concat (fc, probs)
    }"""

    def fn(m, x):
        return torch.cat([torch.softmax(m.fc(x), dim=-1), torch.softmax(x, dim=-1)], dim=2)

    against_torch(spec, Reference(fn, fc=nn.Linear(5, 4)), torch.randn(BATCH, 6, 5))
