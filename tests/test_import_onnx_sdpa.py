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
