"""ONNX in: an attention region is checked by running it, once per form. Layers that repeat one form
(a transformer's) cost one run, not one each: the same count of runs at one layer as at three, and the
same figures as torch's."""

from __future__ import annotations

import torch
from test_import_onnx_attention import export, perturbed, truth
from torchvision.models.vision_transformer import VisionTransformer

import archc
from archc.cli import main
from archc.importers import onnx_attention

VIT = {"image_size": 32, "patch_size": 8, "num_heads": 2, "hidden_dim": 32, "mlp_dim": 64}

ENCODER = """block layer() {
  dense q: 16
  dense k (in): 16
  dense v (in): 16
  sdpa s (q, k, v): 4
  add (in, s)
}
network S {
  input ids: 8 tokens vocab=30
  embedding x: 16
  repeat LAYERS { layer }
}
"""


def _runs(monkeypatch, load):
    """How many regions `load` runs, and what it reads."""
    calls = []
    run = onnx_attention._run

    def counted(*args, **kwargs):
        calls.append(1)
        return run(*args, **kwargs)

    monkeypatch.setattr(onnx_attention, "_run", counted)
    net = load()
    return len(calls), net


def test_a_vits_layers_are_checked_once(monkeypatch, tmp_path):
    runs = {}
    for layers in (1, 3):
        torch.manual_seed(0)
        model = perturbed(VisionTransformer(num_layers=layers, **VIT))
        path = export(model, tmp_path / f"vit{layers}.onnx", 32)
        runs[layers], net = _runs(monkeypatch, lambda path=path: archc.load(path))
        assert sum(n.op == "attention" for n in net.layers) == layers
        assert (net.totals.params, net.totals.macs) == truth(model, 32)
    assert runs[3] == runs[1] >= 1


def test_sdpa_layers_are_checked_once(monkeypatch, tmp_path):
    runs = {}
    for layers in (1, 3):
        spec = tmp_path / f"enc{layers}.arch"
        spec.write_text(ENCODER.replace("LAYERS", str(layers)))
        path = str(tmp_path / f"enc{layers}.onnx")
        assert main(["codegen", str(spec), "--target", "onnx", "-o", path]) == 0
        runs[layers], back = _runs(monkeypatch, lambda path=path: archc.load(path))
        assert sum(n.op == "sdpa" for n in back.layers) == layers
        net = archc.load(spec)
        assert [(n.op, n.params, n.macs) for n in back.layers] == [(n.op, n.params, n.macs) for n in net.layers]
    assert runs[3] == runs[1] >= 1
