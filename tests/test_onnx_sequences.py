"""The ONNX target for the sequence layers (issue 20 x issue 17) against torch and onnxruntime.

Each layer is written once as a spec and once as a torch module whose submodules and
parameters have the spec's layer names (the outside truth, in eval mode). Over random
configurations, the ONNX model built with the torch module's state_dict (by key: the
initialisers are its keys) passes onnx's full check and strict shape inference with
archc's shapes, and onnxruntime gives torch's output within 1e-5 relative. Then
specs/vit_b_16.arch (its sizes shrunk) and specs/lstm_classifier.arch at small inputs.
"""

from __future__ import annotations

import random

import pytest
import torch
import torch.nn.functional as F  # noqa: N812 (the usual torch spelling)
from codegen_util import build
from test_onnx_out import ROOT, checked, close, inputs_for, load_small, session
from test_sequences import Reference
from torch import nn

import archc
from archc.codegen.onnx_target import to_onnx

pytestmark = pytest.mark.usefixtures("one_thread")
BATCH = 3
CASES = 6  # random configurations per layer type


def against_onnxruntime(spec: str, reference: nn.Module, *xs: torch.Tensor) -> None:
    """The ONNX model with the reference's weights by key: checked, and onnxruntime gives its output."""
    net = archc.loads(spec, "t.arch")
    reference.eval()
    with torch.no_grad():
        want = reference(*xs)
    model = to_onnx(net, weights=reference.state_dict())
    assert {i.name for i in model.graph.initializer} == set(reference.state_dict())
    checked(model, net)
    (got,) = session(model).run(None, {name: x.numpy() for name, x in zip(net.inputs, xs)})
    close(got, want, spec)


def config(seed: int, case: int) -> random.Random:
    """The random source of one case, its own whatever other tests draw."""
    return random.Random(seed * 100 + case)


@pytest.mark.parametrize("kind", ["lstm", "gru"])
@pytest.mark.parametrize("case", range(CASES))
def test_recurrent_layers(kind, case):
    """ONNX's LSTM and GRU (the gates reordered, GRU's linear_before_reset), stacked, bidirectional,
    `last`, without biases; an lstm's projection (cases 3 to 5) unrolled. Every case one or two
    directions, every step or `last`, as `case` says."""
    rng = config(1 + (kind == "gru"), case)
    steps, features, units = rng.randint(1, 6), rng.randint(1, 5), rng.randint(2, 5)
    layers, bidirectional, last, bias = rng.randint(1, 3), case % 2 == 1, case % 3 != 1, rng.random() < 0.8
    proj = rng.randint(1, units - 1) if kind == "lstm" and case >= 3 else 0
    options = f"layers={layers} bias={'true' if bias else 'false'}" + (f" proj={proj}" if proj else "")
    options += " bidirectional" * bidirectional + " last" * last
    spec = f"network R {{\n  input x: {steps}x{features} sequence\n  {kind} rnn: {units} {options}\n}}\n"
    module = (nn.LSTM if kind == "lstm" else nn.GRU)(
        features, units, num_layers=layers, bias=bias, batch_first=True, bidirectional=bidirectional,
        **({"proj_size": proj} if proj else {}),
    )  # fmt: skip

    def forward(m, x):
        out, state = m.rnn(x)
        h_n = state[0] if kind == "lstm" else state
        return (torch.cat(tuple(h_n[-2:]), 1) if bidirectional else h_n[-1]) if last else out

    against_onnxruntime(spec, Reference(forward, rnn=module), torch.randn(BATCH, steps, features))


@pytest.mark.parametrize("case", range(CASES))
def test_attention(case):
    """nn.MultiheadAttention: self-attention (in_proj_weight), or cross-attention on a memory of
    other widths (q/k/v_proj_weight) in the odd cases; causal but in cases 2 and 5, with and without biases."""
    rng = config(3, case)
    heads = rng.randint(1, 3)
    width, length, keys = heads * rng.randint(1, 4), rng.randint(1, 6), rng.randint(1, 6)
    cross, causal, bias = case % 2 == 1, case % 3 != 2, rng.random() < 0.7
    kdim = rng.randint(1, 6) if cross else width
    keys = keys if cross else length
    memory = f"  input m: {keys}x{kdim} sequence\n" if cross else ""
    flags = " causal" * causal + ("" if bias else " bias=false")
    spec = (
        f"network A {{\n  input x: {length}x{width} sequence\n{memory}"
        f"  attention att ({'x, m' if cross else 'x'}): {heads}{flags}\n}}\n"
    )
    module = nn.MultiheadAttention(width, heads, bias=bias, kdim=kdim, vdim=kdim, batch_first=True)

    def forward(m, x, *mem):
        kv = mem[0] if mem else x
        mask = torch.ones(length, keys, dtype=torch.bool).triu(1) if causal else None
        return m.att(x, kv, kv, need_weights=False, attn_mask=mask)[0]

    xs = [torch.randn(BATCH, length, width)] + ([torch.randn(BATCH, keys, kdim)] if cross else [])
    against_onnxruntime(spec, Reference(forward, att=module), *xs)


@pytest.mark.parametrize("case", range(CASES))
def test_sdpa(case):
    """F.scaled_dot_product_attention on (q, k, v), (q, kv) or one input of q, k and v side by side
    (1 + case % 3 inputs), causal in cases 3 to 5."""
    rng = config(4, case)
    heads = rng.randint(1, 3)
    width, length, keys, parts = heads * rng.randint(1, 4), rng.randint(1, 6), rng.randint(1, 6), 1 + case % 3
    causal = case >= 3
    keys = length if parts == 3 else keys
    shapes = {1: [(length, width), (keys, width), (keys, width)], 2: [(length, width), (keys, 2 * width)]}
    shapes[3] = [(length, 3 * width)]
    names = "qkv"[: len(shapes[parts])]
    inputs = "".join(f"  input {n}: {s[0]}x{s[1]} sequence\n" for n, s in zip(names, shapes[parts]))
    spec = f"network S {{\n{inputs}  sdpa att ({', '.join(names)}): {heads}{' causal' * causal}\n}}\n"

    def forward(m, *xs):
        qkv = [*xs[:-1], *xs[-1].chunk(4 - len(xs), -1)]
        split = [t.unflatten(-1, (heads, -1)).transpose(1, 2) for t in qkv]
        return F.scaled_dot_product_attention(*split, is_causal=causal).transpose(1, 2).flatten(2)

    against_onnxruntime(spec, Reference(forward), *(torch.randn(BATCH, *s) for s in shapes[parts]))


@pytest.mark.parametrize("case", range(CASES))
def test_token_ids_embeddings_and_a_param(case):
    """int64 token ids into nn.Embedding (Gather), position vectors of 0 to L - 1, and a learned
    tensor added (an initialiser under its key)."""
    rng = config(5, case)
    length, vocab, dim = rng.randint(1, 8), rng.randint(1, 20), rng.randint(1, 6)
    most = length + rng.randint(0, 4)
    spec = f"""network E {{
      input ids: {length} tokens vocab={vocab}
      embedding emb: {dim}
      position_embedding pos (ids): {dim} {most}
      param bias: {length}x{dim} std=1
      add (emb, pos, bias)
    }}"""
    parts = {"emb": nn.Embedding(vocab, dim), "pos": nn.Embedding(most, dim)}
    parts["bias"] = nn.Parameter(torch.randn(1, length, dim))

    def forward(m, ids):
        return m.emb(ids) + m.pos(torch.arange(ids.shape[1]))[None] + m.bias

    against_onnxruntime(spec, Reference(forward, **parts), torch.randint(0, vocab, (BATCH, length)))


@pytest.mark.parametrize("case", range(CASES))
def test_to_sequence_select_mean_and_a_class_token(case):
    """A map's positions as tokens, a class token concatenated before them (expanded over the
    batch), then one token or the mean along an axis."""
    rng = config(6, case)
    channels, height, width = rng.randint(1, 4), rng.randint(1, 4), rng.randint(1, 4)
    axis, tokens = rng.randint(0, 1), height * width + 1
    index = rng.randrange(-(tokens, channels)[axis], (tokens, channels)[axis])
    last = rng.choice([f"select pick: {index if index >= 0 else f'0-{-index}'} axis={axis}", f"mean pick: axis={axis}"])
    spec = f"""network T {{
      input x: {channels}x{height}x{width}
      to_sequence seq
      param cls: 1x{channels} std=1
      concat tokens (cls, seq): axis=sequence
      {last}
    }}"""

    def forward(m, x):
        seq = torch.cat([m.cls.expand(x.shape[0], -1, -1), x.flatten(2).transpose(1, 2)], 1)
        return seq.select(axis + 1, index) if last.startswith("select") else seq.mean(axis + 1)

    against_onnxruntime(
        spec, Reference(forward, cls=nn.Parameter(torch.randn(1, 1, channels))), torch.randn(2, channels, height, width)
    )


def test_vit_b_16_shrunk_runs_as_in_torch():
    """specs/vit_b_16.arch with 32x32 images (5 tokens), 48 features, 2 layers of 4 heads: conv,
    to_sequence, a class token expanded over the batch, position embedding, attention, select."""
    net = load_small(ROOT / "specs" / "vit_b_16.arch")
    assert net.layer("tokens").shape == (5, 48)
    tmodel = build(net, "torch")[0]
    model = net.to_onnx(weights=tmodel.state_dict())
    checked(model, net)
    xs = inputs_for(net, 2, 0)
    with torch.no_grad():
        want = tmodel.eval()(*xs)
    (got,) = session(model).run(None, {"image": xs[0].numpy()})
    close(got, want, "vit_b_16 shrunk")


def test_lstm_classifier_at_a_short_input():
    """specs/lstm_classifier.arch (two bidirectional layers, `last`) on 12 steps of 300 features."""
    net = archc.load(ROOT / "specs" / "lstm_classifier.arch", inputs={"words": (300, 12)})
    tmodel = build(net, "torch")[0]
    model = net.to_onnx(weights=tmodel.state_dict())
    checked(model, net)
    xs = inputs_for(net, 2, 0)
    with torch.no_grad():
        want = tmodel.eval()(*xs)
    (got,) = session(model).run(None, {"words": xs[0].numpy()})
    close(got, want, "lstm_classifier")
