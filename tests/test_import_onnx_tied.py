"""A tied head in an ONNX file counts once, as torch counts it: torch's default exporter writes a tied
nn.Linear of a 2-D input as a Gemm (transB=1) that reads the embedding's table itself."""

from __future__ import annotations

import numpy as np
import onnx
import onnxruntime as ort
import torch
from codegen_util import build
from torch.utils.flop_counter import FlopCounterMode

import archc


class TiedHead(torch.nn.Module):
    """A token's embedding, and logits from the same table."""

    def __init__(self):
        super().__init__()
        self.emb = torch.nn.Embedding(50, 8)
        self.head = torch.nn.Linear(8, 50, bias=False)
        self.head.weight = self.emb.weight

    def forward(self, ids):
        return self.head(self.emb(ids).flatten(1))


def test_a_gemm_reading_the_embedding_table_is_tied_to_it(tmp_path):
    torch.manual_seed(0)
    twin = TiedHead().eval()
    ids = torch.randint(0, 50, (2, 1))
    path = tmp_path / "tied.onnx"
    torch.onnx.export(twin, (ids,), path)  # the default exporter
    model = onnx.load(path)
    gemm = next(n for n in model.graph.node if n.op_type == "Gemm")
    assert {a.name: a.i for a in gemm.attribute}["transB"] == 1 and gemm.input[1] in {
        i.name for i in model.graph.initializer
    }

    net = archc.load(str(path))
    counter = FlopCounterMode(display=False)
    with counter, torch.no_grad():
        want = twin(ids)
    assert net.totals.params == sum(p.numel() for p in twin.parameters()) == 400  # the shared table once
    assert net.totals.macs == counter.get_total_flops() // (2 * len(ids))
    dense = next(n for n in net.layers if n.op == "dense")
    assert dense.params == 0 and dense.attrs["tied"] == next(n.name for n in net.layers if n.op == "embedding")

    # the generated PyTorch model, with the file's table, gives onnxruntime's output
    tmodel = build(net, "torch", flat=True)[0].eval()
    assert list(tmodel.state_dict()) == list(twin.state_dict()) == ["emb.weight", "head.weight"]  # one tensor
    tmodel.load_state_dict(twin.state_dict(), strict=True)
    assert tmodel.head.weight is tmodel.emb.weight
    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    (got,) = session.run(None, {session.get_inputs()[0].name: ids.numpy()})
    with torch.no_grad():
        ours = tmodel(ids)
    np.testing.assert_allclose(ours.numpy(), got, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(want.numpy(), got, rtol=1e-5, atol=1e-6)
