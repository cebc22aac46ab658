"""specs/bert_base.arch against transformers' BertModel with its pooler, default config (issue 17).

The reference is built from its config alone (nothing is downloaded), with eager attention, whose
explicit matmuls torch's flop counter sees (MACs = flops / 2, grad mode on, batch 1). Figures:
figures.md's 109,482,240 params and 48,318,971,904 MACs at 512 tokens; the rest at 16 tokens, where
the generated PyTorch and NumPy models, loaded strictly with BertModel's state_dict, give its
last_hidden_state and pooler_output for model(input_ids) (every token of type 0).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from codegen_util import build
from torch.utils.flop_counter import FlopCounterMode
from transformers import BertConfig, BertModel

import archc

pytestmark = pytest.mark.usefixtures("one_thread")
SPEC = Path(__file__).resolve().parent.parent / "specs" / "bert_base.arch"
PARAMS = 109_482_240  # figures.md: transformers' BertModel, default config, with pooler
MACS = 48_318_971_904  # figures.md: at 512 tokens, eager attention
SHORT = 16  # tokens: the length the outputs are compared at


@pytest.fixture(scope="module")
def reference():
    torch.manual_seed(0)
    model = BertModel(BertConfig(attn_implementation="eager"), add_pooling_layer=True)
    assert model.config._attn_implementation == "eager"
    with torch.no_grad():  # LayerNorms start at 1 and 0, biases at 0: give every weight a value of its own
        for p in model.parameters():
            p.add_(0.02 * torch.randn_like(p))
    return model


@pytest.fixture(scope="module")
def ids():
    return torch.randint(0, 30522, (2, SHORT), generator=torch.Generator().manual_seed(1))


def test_figures_at_512_tokens():
    net = archc.load(SPEC)
    assert (net.totals.params, net.totals.macs) == (PARAMS, MACS)
    assert tuple(net.graph.outputs[0].shape) == (512, 768)
    assert tuple(net.graph.outputs[1].shape) == (768,)


def test_params_and_macs_equal_berts_at_a_short_length(reference, ids):
    net = archc.load(SPEC, inputs={"input_ids": (SHORT,)})
    with FlopCounterMode(display=False) as counter:
        reference(ids[:1])  # grad mode on, eager attention: every matmul counted
    assert net.totals.params == sum(p.numel() for p in reference.parameters())
    assert net.totals.macs == counter.get_total_flops() // 2


def _close(got, want, what: str) -> None:
    want = np.asarray(want, dtype=np.float64)
    error = np.abs(np.asarray(got, dtype=np.float64) - want).max() / np.abs(want).max()
    assert error < 1e-4, (what, error)


def test_outputs_equal_berts_in_both_targets(reference, ids):
    net = archc.load(SPEC, inputs={"input_ids": (SHORT,)})
    state = reference.state_dict()
    model = build(net, "torch")[0]
    assert {k: v.shape for k, v in model.state_dict().items()} == {k: v.shape for k, v in state.items()}
    model.load_state_dict(state, strict=True)
    reference.eval(), model.eval()
    with torch.no_grad():
        want = reference(ids)
        hidden, pooled = model(ids)
    _close(hidden, want.last_hidden_state, "torch last_hidden_state")
    _close(pooled, want.pooler_output, "torch pooler_output")
    numpy_model = build(net, "numpy")[0]
    numpy_model.load_state_dict({k: v.numpy() for k, v in state.items()})
    numpy_model.eval()
    hidden, pooled = numpy_model(ids.numpy())
    _close(hidden, want.last_hidden_state, "numpy last_hidden_state")
    _close(pooled, want.pooler_output, "numpy pooler_output")


def test_the_attention_output_normalises_dense_plus_the_attentions_input():
    """BertSelfOutput: LayerNorm(dropout(dense(self)) + the attention block's input), as a block
    of two inputs; the layer's output block reads the attention's output as its residual."""
    net = archc.load(SPEC, inputs={"input_ids": (SHORT,)})
    add = net.layer("encoder.layer.0.attention.output.add1")
    assert add.inputs == ["encoder.layer.0.attention.output.dropout", "embeddings.dropout"]
    add = net.layer("encoder.layer.0.output.add1")
    assert add.inputs == ["encoder.layer.0.output.dropout", "encoder.layer.0.attention.output.LayerNorm"]
