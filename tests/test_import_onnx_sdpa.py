"""ONNX in (issue 20): what archc's ONNX out writes for BERT and the encoder-decoder reads back as the
layers it was written from: `embedding ... id=N`, `sdpa` on q, k and v, and cross-attention."""

from __future__ import annotations

from pathlib import Path

from torch import nn

import archc
from archc.cli import main

ROOT = Path(__file__).resolve().parent.parent


def _round_trip(tmp_path, text: str):
    """The spec `text`, and what archc reads back from its ONNX out."""
    spec = tmp_path / "net.arch"
    spec.write_text(text)
    path = str(tmp_path / "net.onnx")
    assert main(["codegen", str(spec), "--target", "onnx", "-o", path]) == 0
    return archc.load(spec), archc.load(path)


def test_embedding_of_one_id_reads_back_as_embedding_with_its_id(tmp_path):
    """`embedding ... id=1` goes out as Gather(table, ids x 0 + 1): it comes back as that embedding, with
    nn.Embedding(2, 16)'s parameters, not as an Add of a weight to the ids (E0405)."""
    _, back = _round_trip(
        tmp_path,
        "network E {\n  input ids: 8 tokens vocab=50\n  embedding w: 16\n"
        "  embedding t (ids): 16 vocab=2 id=1\n  add (w, t)\n}\n",
    )
    tables = [n for n in back.layers if n.op == "embedding"]
    assert [(n.attrs["id"], n.params) for n in tables] == [
        (None, sum(p.numel() for p in nn.Embedding(50, 16).parameters())),
        (1, sum(p.numel() for p in nn.Embedding(2, 16).parameters())),
    ]
    assert back.totals.macs == 0


SDPA = """network S {
  input ids: 8 tokens vocab=30
  embedding x: 16
  dense q: 16
  dense k (x): 16
  dense v (x): 16
  sdpa (q, k, v): 4 causal
  dense kv (x): 32
  sdpa s2 (q, kv): 2
  dense qkv (x): 48
  sdpa s3 (qkv): 4
  add (sdpa1, s3)
  add (add1, s2)
}
"""


def _figures(net):
    return [(n.op, len(n.inputs), n.params, n.macs, n.shape) for n in net.layers]


def test_sdpa_on_q_k_v_reads_back_as_sdpa(tmp_path):
    """sdpa on (q, k, v), on (q, kv) and on one qkv, causal or not, goes out as heads split, products,
    softmax and the heads joined: each comes back as that sdpa (its heads and mask), every layer with its
    params, MACs and shape; the totals are torch's (the flop counter's for the dense layers and the
    products)."""
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    net, back = _round_trip(tmp_path, SDPA)
    assert _figures(back) == _figures(net)
    assert [(n.attrs["heads"], n.attrs["causal"]) for n in back.layers if n.op == "sdpa"] == [
        (4, True),
        (2, False),
        (4, False),
    ]
    x = torch.randn(1, 8, 16)
    dense = [nn.Linear(16, w) for w in (16, 16, 16, 32, 48)]

    def attend(q, k, v, h):  # the products sdpa's math computes, which the counter counts
        q, k, v = (t.unflatten(-1, (h, -1)).transpose(1, 2) for t in (q, k, v))
        return torch.softmax(q @ k.transpose(-2, -1), -1) @ v

    with FlopCounterMode(display=False) as counter:
        q, k, v, kv, qkv = (d(x) for d in dense)
        attend(q, k, v, 4)
        attend(q, *kv.split(16, -1), 2)
        attend(*qkv.split(16, -1), 4)
    assert back.totals.macs == counter.get_total_flops() // 2
    table = sum(p.numel() for p in nn.Embedding(30, 16).parameters())
    assert back.totals.params == sum(p.numel() for d in dense for p in d.parameters()) + table


def test_a_region_that_is_not_sdpa_stays_refused(tmp_path, capsys):
    """The scores scaled by 1/d instead of 1/sqrt(d): no sdpa computes that, so the product of two
    computed tensors is a located error, not an sdpa."""
    import onnx
    from onnx import numpy_helper

    spec = tmp_path / "net.arch"
    spec.write_text(SDPA)
    path = str(tmp_path / "net.onnx")
    assert main(["codegen", str(spec), "--target", "onnx", "-o", path]) == 0
    model = onnx.load(path)
    scale = next(n for n in model.graph.node if n.op_type == "Mul" and n.name.startswith("sdpa1/"))
    const = next(n for n in model.graph.node if n.output[0] in scale.input and n.op_type == "Constant")
    value = numpy_helper.to_array(const.attribute[0].t)
    const.attribute[0].t.CopyFrom(numpy_helper.from_array((value * value).astype(value.dtype)))
    onnx.save(model, path)
    assert main(["check", path]) == 1
    err = capsys.readouterr().err
    assert "Traceback" not in err and "sdpa1/" in err and "[E04" in err


def test_cross_attention_reads_back_as_attention_on_query_and_memory(tmp_path):
    """nn.MultiheadAttention with queries from x and keys and values from a memory m of another length
    goes out as three projections of two tensors: it comes back as `attention (x, m)`, with
    nn.MultiheadAttention(16, 2)'s parameters, not as a product of two computed tensors (E0405)."""
    net, back = _round_trip(
        tmp_path,
        "network C {\n  input ids: 8 tokens vocab=30\n  input mem: 5 tokens vocab=30\n  embedding x (ids): 16\n"
        "  embedding m (mem): 16\n  attention a (x, m): 2\n}\n",
    )
    (layer,) = [n for n in back.layers if n.op == "attention"]
    assert len(layer.inputs) == 2 and layer.attrs["heads"] == 2 and not layer.attrs["causal"]
    assert layer.params == sum(p.numel() for p in nn.MultiheadAttention(16, 2).parameters())
    assert _figures(back) == _figures(net)


def test_shrunk_encoder_decoder_reads_back_layer_by_layer(tmp_path):
    """transformer_small (2 heads, 32 wide): its self-attention, causal self-attention and
    cross-attention come back as the spec's attention layers, every layer of params or MACs with its
    figures."""
    text = (ROOT / "specs" / "transformer_small.arch").read_text()
    text = text.replace(" 2       4      1024", " 2 2 64").replace("256  32", "32 32")
    net, back = _round_trip(tmp_path, text)
    attention = [(len(n.inputs), n.attrs["heads"], n.attrs["causal"]) for n in back.layers if n.op == "attention"]
    assert attention == [(1, 2, False)] * 2 + [(1, 2, True), (2, 2, False)] * 2

    def weighed(network):  # the layers with params or MACs: dropout and views leave no node
        return sorted((n.params, n.macs, n.shape) for n in network.layers if n.params or n.macs)

    assert weighed(back) == weighed(net)
