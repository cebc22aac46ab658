"""ONNX in for transformers (issue 20): multi-head attention, the class token, the token select.

The truths: torchvision's VisionTransformer (a small one for the many cases, vit_b_16 once) exported by
`torch.onnx.export` with torch's default exporter, its parameter count, and its MACs by torch's flop
counter under the math attention backend (every matmul counted: docs/language.md, section 12); onnx's
own shape inference for every layer's output; and specs analysed by archc, written out with
`codegen --target onnx` and read back.
"""

from __future__ import annotations

import onnx
import pytest
import torch
import torchvision
from onnx import numpy_helper
from test_import_onnx import REFUSALS, assert_layers_match_inference
from torch.nn.attention import SDPBackend, sdpa_kernel
from torch.utils.flop_counter import FlopCounterMode
from torchvision.models.vision_transformer import VisionTransformer

import archc
from archc.cli import main
from archc.diagnostics import ArchError, source_lines
from archc.importers import import_text

SMALL = {"image_size": 32, "patch_size": 8, "num_layers": 2, "num_heads": 2, "hidden_dim": 32, "mlp_dim": 64}
VIT_B_16 = (86_567_656, 17_563_828_224)  # figures.md: torchvision's params; the flop counter's MACs / 2


def truth(model, size: int) -> tuple[int, int]:
    """Parameters, and MACs by torch's flop counter with every attention matmul counted."""
    with sdpa_kernel(SDPBackend.MATH), FlopCounterMode(display=False) as counter:
        model(torch.randn(1, 3, size, size))
    return sum(p.numel() for p in model.parameters()), counter.get_total_flops() // 2


def perturbed(model):
    """torchvision starts biases and the class token at zero, which an exporter may leave out: give them
    values (the figures are the same)."""
    torch.manual_seed(0)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.02 * torch.randn_like(p))
    return model.eval()


def export(model, path, size: int, **options) -> str:
    """Grad mode on, as torch.onnx.export's own examples: under no_grad the TorchScript exporter meets
    nn.MultiheadAttention's fused fast path, which it cannot export."""
    torch.onnx.export(model, (torch.randn(1, 3, size, size),), str(path), input_names=["image"], **options)
    return str(path)


@pytest.fixture(scope="module")
def small(tmp_path_factory):
    """The small ViT, exported by torch's default exporter, and its figures."""
    torch.manual_seed(0)
    model = perturbed(VisionTransformer(**SMALL))
    return export(model, tmp_path_factory.mktemp("vit") / "small.onnx", 32), truth(model, 32)


def test_small_vit_imports_to_torch_figures(small):
    path, figures = small
    net = assert_layers_match_inference(path)
    assert (net.totals.params, net.totals.macs) == figures
    attention = [layer for layer in net.layers if layer.op == "attention"]
    assert len(attention) == SMALL["num_layers"]
    assert all(layer.attrs["heads"] == SMALL["num_heads"] and layer.shape == (17, 32) for layer in attention)
    assert [layer.op for layer in net.layers][-2:] == ["select", "dense"]  # the class token, the head
    with open(path, "rb") as file:
        text = import_text(file.read(), path)
    spec = archc.loads(text, "small.arch")  # the written spec: the same layers
    # the module paths the exporter keeps: the encoder layers are calls of one block
    assert "block encoder_layers_encoder_layer() {" in text and "  attention: 2\n" in text
    assert [line.split()[-1] for line in source_lines(text) if line.startswith("  encoder_layers_encoder_layer ")] == [
        "encoder_layers_encoder_layer_0",
        "encoder_layers_encoder_layer_1",
    ]
    assert [(n.op, n.shape, n.params, n.macs) for n in spec.layers] == [
        (n.op, n.shape, n.params, n.macs) for n in net.layers
    ]


def test_class_token_is_a_param_before_the_patches(small):
    path, _ = small
    net = archc.load(path)
    concat = next(layer for layer in net.layers if layer.op == "concat")
    token = net.layer(concat.inputs[0])
    assert (token.op, token.shape, token.params) == ("param", (1, SMALL["hidden_dim"]), SMALL["hidden_dim"])
    assert concat.shape == (17, 32)  # 16 patches and the token, along the sequence


@pytest.mark.parametrize("zero_out_projection", [False, True])
def test_attention_scaled_otherwise_is_refused_at_its_nodes(small, tmp_path, capsys, zero_out_projection):
    """The region computes something else (the scores scaled twice over): no `attention`, but errors at
    the nodes archc cannot read, and no traceback. With an out-projection of zeros the region's output is
    its bias whatever it computes before: archc checks it with weights of its own."""
    path, _ = small
    model = onnx.load(path)
    muls = [node for node in model.graph.node if node.op_type == "Mul"]
    weights = {t.name: t for t in model.graph.initializer}
    for name in [n for n in weights if n.endswith("out_proj.weight") and zero_out_projection]:
        weights[name].CopyFrom(numpy_helper.from_array(0 * numpy_helper.to_array(weights[name]), name))
    scale = next(node.input[1] for node in muls if node.input[1] in weights)
    value = numpy_helper.to_array(weights[scale])
    weights[scale].CopyFrom(numpy_helper.from_array(value * 2, scale))
    changed = tmp_path / "scaled.onnx"
    onnx.save(model, changed)
    assert main(["check", str(changed)]) == 1
    err = capsys.readouterr().err
    assert "Traceback" not in err and "[E0405]" in err
    with pytest.raises(ArchError) as caught:
        archc.load(changed)
    lines = len(source_lines(caught.value.sources[str(changed)]))
    assert all(d.code in REFUSALS and 1 <= d.span.line <= lines for d in caught.value.diagnostics)


def test_torchscript_export_imports_to_torch_figures(tmp_path):
    """The TorchScript exporter computes its sizes with Shape arithmetic (Gather, Div, Cast, Mod) onnx's
    inference cannot follow: archc computes it and infers again. Before, the importer crashed on it."""
    torch.manual_seed(0)
    model = perturbed(VisionTransformer(**SMALL))
    path = export(model, tmp_path / "ts.onnx", 32, dynamo=False, dynamic_axes={"image": {0: "N"}})
    net = assert_layers_match_inference(path)
    assert (net.totals.params, net.totals.macs) == truth(model, 32)
    assert net.batch == 1  # the batch is symbolic
    assert sum(layer.op == "attention" for layer in net.layers) == SMALL["num_layers"]
    assert "encoder_layers_encoder_layer_1_self_attention" in [layer.name for layer in net.layers]


ROUND_TRIP = """
network T {
  input image: 3x32x32
  conv patches: 32 @ 8x8 /8
  to_sequence tokens
  param class_token: 1x32
  concat all (class_token, tokens): axis=sequence
  layernorm ln: 1 eps=1e-6
  attention a: %s
  add (all, a)
  select first: 0
  dense head: 10
}
"""


@pytest.mark.parametrize("options", ["2", "4 causal", "2 bias=false", "1"])
def test_attention_round_trips_through_onnx(options, tmp_path):
    """spec -> `codegen --target onnx` -> import: the same layers, with the same heads, mask and biases."""
    spec = tmp_path / "t.arch"
    spec.write_text(ROUND_TRIP % options)
    net = archc.load(spec)
    path = str(tmp_path / "t.onnx")
    assert main(["codegen", str(spec), "--target", "onnx", "-o", path]) == 0
    back = assert_layers_match_inference(path)
    figures = [(n.op, n.shape, n.params, n.macs) for n in net.layers if n.params or n.macs]
    assert [(n.op, n.shape, n.params, n.macs) for n in back.layers if n.params or n.macs] == figures
    attention = next(layer for layer in back.layers if layer.op == "attention")
    want = net.layer("a")
    assert {k: attention.attrs[k] for k in ("heads", "causal", "bias")} == {
        k: want.attrs[k] for k in ("heads", "causal", "bias")
    }
    assert (back.totals.params, back.totals.macs) == (net.totals.params, net.totals.macs)


def test_vit_b_16_export_gives_its_figures(tmp_path):
    """torchvision's vit_b_16, exported, reads to its params and MACs (specs/vit_b_16.arch's own round trip
    through ONNX is test_import_onnx.py's, layer by layer)."""
    model = perturbed(torchvision.models.vit_b_16(weights=None))
    assert truth(model, 224) == VIT_B_16
    net = archc.load(export(model, tmp_path / "vit_b_16.onnx", 224))
    assert (net.totals.params, net.totals.macs) == VIT_B_16
    assert sum(layer.op == "attention" for layer in net.layers) == 12
