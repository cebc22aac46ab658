"""specs/transformer_small.arch (issue 17, a small encoder-decoder) against torch's nn.Transformer.

Outside truth: a torch module written here from nn.Transformer (batch_first, post-norm, ReLU, its default
dropout 0.1, the causal mask of generate_square_subsequent_mask on the target), with nn.Embedding for the
source's and target's tokens and positions and an nn.Linear output projection that shares the target
embedding's weight. Its parameter count; its MACs from torch's flop counter (math attention backend, grad
mode on: every matmul counted; MACs = flops / 2); its output after its state_dict is loaded strictly, by
key, into both generated models; and its autograd gradients against one NumPy backward.
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest
import torch
from codegen_util import build, load_module
from test_numpy_train_networks import compare_gradients
from torch import nn
from torch.nn.attention import SDPBackend, sdpa_kernel
from torch.utils.flop_counter import FlopCounterMode

import archc
from archc.cli import main
from archc.codegen import generate

pytestmark = pytest.mark.usefixtures("one_thread")

SPEC = Path(__file__).parent.parent / "specs" / "transformer_small.arch"
VOCAB, DIM, POSITIONS, LAYERS, HEADS, FFN = 1000, 256, 32, 2, 4, 1024


class Embed(nn.Module):
    """Token embedding plus a learned position embedding of positions 0 to L - 1."""

    def __init__(self):
        super().__init__()
        self.tokens = nn.Embedding(VOCAB, DIM)
        self.positions = nn.Embedding(POSITIONS, DIM)

    def forward(self, ids):
        return self.tokens(ids) + self.positions(torch.arange(ids.shape[1]))


class Reference(nn.Module):
    def __init__(self):
        super().__init__()
        self.src_embed, self.tgt_embed = Embed(), Embed()
        self.transformer = nn.Transformer(DIM, HEADS, LAYERS, LAYERS, FFN, dropout=0.1, batch_first=True)
        self.generator = nn.Linear(DIM, VOCAB)
        self.generator.weight = self.tgt_embed.tokens.weight  # tied

    def forward(self, src, tgt):
        mask = nn.Transformer.generate_square_subsequent_mask(tgt.shape[1], dtype=self.generator.weight.dtype)
        hidden = self.transformer(self.src_embed(src), self.tgt_embed(tgt), tgt_mask=mask, tgt_is_causal=True)
        return self.generator(hidden)


@pytest.fixture(scope="module")
def reference():
    torch.manual_seed(0)
    return Reference().eval()


def ids(rng, length: int, batch: int = 2) -> np.ndarray:
    return rng.integers(0, VOCAB, (batch, length))


def macs_of(model, *inputs) -> int:
    counter = FlopCounterMode(display=False)
    with sdpa_kernel(SDPBackend.MATH), torch.enable_grad(), counter:
        model(*inputs)
    return counter.get_total_flops() // 2


def test_params_and_macs_are_torchs(reference):
    net = archc.load(SPEC)
    assert net.totals.params == sum(p.numel() for p in reference.parameters())  # the tied weight once
    assert not net.warnings
    rng = np.random.default_rng(0)
    src, tgt = torch.tensor(ids(rng, POSITIONS, 1)), torch.tensor(ids(rng, POSITIONS, 1))
    assert net.totals.macs == macs_of(reference, src, tgt)


def test_macs_at_other_lengths_are_torchs(reference):
    """Source and target of different lengths: the cross-attention's L x S products."""
    net = archc.load(SPEC, inputs={"src": (11,), "tgt": (5,)})
    rng = np.random.default_rng(1)
    assert net.totals.macs == macs_of(reference, torch.tensor(ids(rng, 11, 1)), torch.tensor(ids(rng, 5, 1)))


def test_the_pytorch_target_loads_the_references_state_dict_strictly(reference):
    net = archc.load(SPEC, inputs={"src": (12,), "tgt": (9,)})
    model, _, _ = build(net, "torch")
    assert sorted(model.state_dict()) == sorted(reference.state_dict())
    model.load_state_dict(reference.state_dict(), strict=True)
    assert model.generator.weight is model.tgt_embed.tokens.weight
    model.eval()
    rng = np.random.default_rng(2)
    src, tgt = torch.tensor(ids(rng, 12)), torch.tensor(ids(rng, 9))
    with torch.no_grad():
        got, want = model(src, tgt), reference(src, tgt)
    assert got.shape == want.shape == (2, 9, VOCAB)
    assert float((got - want).abs().max()) <= 1e-4 * float(want.abs().max())


def test_the_numpy_target_gives_the_references_output(reference):
    net = archc.load(SPEC, inputs={"src": (10,), "tgt": (7,)})
    model = load_module(generate(net, "numpy").code).build_model()
    model.load_state_dict({k: v.numpy() for k, v in reference.state_dict().items()})
    rng = np.random.default_rng(3)
    src, tgt = ids(rng, 10), ids(rng, 7)
    with torch.no_grad():
        want = reference(torch.tensor(src), torch.tensor(tgt)).numpy()
    got = model(src, tgt)
    assert got.shape == want.shape
    assert float(np.abs(got - want).max()) <= 1e-4 * float(np.abs(want).max())


def test_the_numpy_backward_gives_autograds_gradients(reference):
    """One forward and backward in eval mode (no dropout draws), float64: every parameter's gradient (the
    tied weight's the sum of its two uses') as autograd gives it on the reference itself."""
    net = archc.load(SPEC, inputs={"src": (6,), "tgt": (5,)})
    torch.manual_seed(4)
    tmodel = Reference().double()
    nmodel = load_module(generate(net, "numpy").code).build_model()
    nmodel.load_state_dict({k: v.detach().numpy().copy() for k, v in tmodel.state_dict().items()})
    nmodel.state = {k: v.astype(np.float64) for k, v in nmodel.state.items()}
    rng = np.random.default_rng(5)
    with sdpa_kernel(SDPBackend.MATH):
        compare_gradients(tmodel, nmodel, [ids(rng, 6), ids(rng, 5)], np.float64, train=False)


def test_the_spec_is_written_with_blocks_and_repeats():
    text = SPEC.read_text(encoding="utf-8")
    assert len(re.findall(r"^\s*repeat ", text, re.M)) == 2
    assert re.search(r"^block decoder_layer\(.*\) reads \(x, memory\)", text, re.M)
    assert "causal" in text and "tied=tgt_embed.tokens" in text


def test_the_cli_table_exits_0(capsys):
    assert main(["table", str(SPEC)]) == 0
    assert "transformer.decoder.layers.1.multihead_attn" in capsys.readouterr().out
