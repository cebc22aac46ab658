"""ONNX in (issue 20): torchvision's models as `torch.onnx.export` writes them fresh, with default settings.

torchvision starts many biases at zero, and torch's default exporter (torch.export, then onnxscript's
optimizer) leaves out a Conv's or Gemm's bias that is all zeros; an Add of zeros it keeps. In a fresh
ViT that drops conv_proj's bias, the head's bias and each attention's out-projection bias, while the
in-projection's (an Add) stays. A Conv or Gemm without its bias input is what the file holds: `bias=false`.
An attention with one bias and not the other is none archc has: it reads it with the missing bias as
zeros (W0402), which computes what the file computes.

The truths: torch's parameter count less the biases the file lacks (torch's own tensors, all zeros), the
flop counter's MACs, and onnxruntime's output of the file against the generated PyTorch model's with the
model's weights.
"""

from __future__ import annotations

from collections import Counter

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch
import torchvision
from codegen_util import build, traced
from test_import_onnx import DATA, assert_layers_match_inference
from test_import_onnx_attention import SMALL, VIT_B_16, truth
from torch.utils.flop_counter import FlopCounterMode
from torchvision.models.vision_transformer import VisionTransformer

import archc
from archc.cli import main
from archc.diagnostics import ArchError
from archc.importers.onnx_model import read_onnx

CASES = {"small": 32, "vit_b_16": 224}  # the image size each model takes


@pytest.fixture(scope="module", params=list(CASES))
def fresh(request, tmp_path_factory):
    """The model as constructed (no weight changed), exported once with torch's default settings, and
    the file read by archc (before, refused: E0405 at each attention)."""
    torch.manual_seed(0)
    name, size = request.param, CASES[request.param]
    model = VisionTransformer(**SMALL) if name == "small" else torchvision.models.vit_b_16(weights=None)
    model.eval()
    path = str(tmp_path_factory.mktemp("fresh") / f"{name}.onnx")
    torch.onnx.export(model, (torch.randn(1, 3, size, size),), path, input_names=["image"])
    return name, model, path, size, archc.load(path)


def test_default_export_leaves_out_the_zero_biases_of_conv_and_gemm(fresh):
    """What the exporter does, which the importer's reading rests on: the file has no conv_proj or head
    bias and no out-projection bias; it has the in-projection's, zeros as torchvision starts them."""
    _, model, path, _, _ = fresh
    initialisers = {t.name: t for t in onnx.load(path).graph.initializer}
    for name in ("conv_proj.bias", "heads.head.bias", "encoder.layers.encoder_layer_0.self_attention.out_proj.bias"):
        assert not model.state_dict()[name].any() and name not in initialisers, name
    kept = "encoder.layers.encoder_layer_0.self_attention.in_proj_bias"
    assert kept in initialisers and not onnx.numpy_helper.to_array(initialisers[kept]).any()


def test_fresh_vit_imports_to_torch_figures_less_what_the_file_lacks(fresh, capsys):
    """Each attention reads with both biases, the out-projection's restored as zeros (W0402 at its node,
    whose help says how to export every bias); the patch conv and the head read without theirs, as the
    file has them. vit_b_16's figures are figures.md's; the small ViT's, torch's."""
    name, model, path, size, net = fresh
    params, macs = VIT_B_16 if name == "vit_b_16" else truth(model, size)
    lacking = model.conv_proj.bias.numel() + model.heads.head.bias.numel()
    assert (net.totals.params, net.totals.macs) == (params - lacking, macs)
    layers = model.encoder.layers
    assert [w.code for w in net.warnings] == ["W0402"] * len(layers)
    width = model.hidden_dim
    assert all(f"out-projection's bias as {width} zeros" in w.message for w in net.warnings)
    assert all("optimize=False" in w.help[0] and w.span.line > 1 for w in net.warnings)
    attention = [layer for layer in net.layers if layer.op == "attention"]
    assert len(attention) == len(layers) and all(layer.attrs["bias"] for layer in attention)
    assert (net.layer("conv_proj").op, net.layer("conv_proj").attrs["bias"]) == ("conv", False)
    assert (net.layer("heads_head").op, net.layer("heads_head").attrs["bias"]) == ("dense", False)
    if name == "small":  # the command line says so too, and exits 0 (one import is enough: vit_b_16 is slow)
        assert main(["check", path]) == 0
        assert capsys.readouterr().err.count("[W0402]") == len(layers)


def _key(name: str) -> str:
    """A state-dict key as the generated module spells it: the scopes joined by `_` (the ONNX names'
    module paths), a MatMul's dense named for its node; the class token is the exporter's `expand`."""
    return "expand" if name == "class_token" else name.replace(".", "_").replace("_matmul", "")


def test_fresh_vit_runs_in_onnxruntime_as_the_generated_model(fresh):
    """The generated PyTorch model, given the model's weights (the restored biases are its zeros, and the
    ones left out are zeros too), computes every layer's value as onnxruntime computes it from the file.
    Every layer: the fresh head's weight is zeros, so the output alone would tell nothing."""
    _, model, path, size, net = fresh
    generated, gen, filename = build(net, "torch", flat=True)
    ours = {_key(k): k for k in model.state_dict()}
    wanted = generated.state_dict()
    state = {k: model.state_dict()[ours[_key(k)]].reshape(v.shape) for k, v in wanted.items()}
    generated.load_state_dict(state, strict=True)
    unused = set(model.state_dict()) - {ours[_key(k)] for k in wanted}
    assert unused == {"conv_proj.bias", "heads.head.bias"} and not any(model.state_dict()[k].any() for k in unused)
    x = torch.randn(1, 3, size, size)
    with torch.no_grad():
        _, values = traced(generated.eval(), gen, filename, x)
    with open(path, "rb") as file:
        _, acts = read_onnx(file.read(), path, {})
    onnx_model = onnx.load(path)
    tensors = {layer: tensor for tensor, layer in acts.items() if layer in values and layer != "image"}
    onnx_model.graph.output.extend(onnx.helper.make_empty_tensor_value_info(t) for t in tensors.values())
    session = ort.InferenceSession(onnx_model.SerializeToString(), providers=["CPUExecutionProvider"])
    got = dict(zip([o.name for o in session.get_outputs()], session.run(None, {"image": x.numpy()})))
    for layer, tensor in tensors.items():
        want = values[layer].numpy()
        scale = max(1.0, float(np.abs(want).max()))
        np.testing.assert_allclose(got[tensor], want, rtol=1e-5, atol=1e-5 * scale, err_msg=layer)
    assert {layer.name for layer in net.layers if layer.op in ("attention", "layernorm")} <= set(tensors)


# -- a CNN: the batch norms folded, the zero biases left out, the pool a ReduceMean ---------------------


@pytest.fixture(scope="module")
def mobilenet(tmp_path_factory):
    """torchvision's mobilenet_v2 as constructed, exported once with torch's default settings."""
    torch.manual_seed(0)
    model = torchvision.models.mobilenet_v2(weights=None).eval()
    path = str(tmp_path_factory.mktemp("fresh") / "mobilenet_v2.onnx")
    torch.onnx.export(model, (torch.randn(1, 3, 32, 32),), path, input_names=["image"])
    return model, path


def test_fresh_cnn_reads_what_the_file_holds(mobilenet):
    """The default exporter folds each batch norm into its conv (a fresh one's shift is zero, so the conv
    gets no bias) and leaves out the classifier's zero bias; the average pool to 1 x 1 is a ReduceMean
    over the spatial axes. Before, archc refused the ReduceMean (E0402); now it is a globalavgpool, and
    the model reads to torch's params less the batch norms' and the classifier bias, and torch's MACs."""
    model, path = mobilenet
    ops = Counter(node.op_type for node in onnx.load(path).graph.node)
    assert ops["BatchNormalization"] == 0 and ops["ReduceMean"] == 1
    norms = sum(p.numel() for m in model.modules() if isinstance(m, torch.nn.BatchNorm2d) for p in m.parameters())
    lacking = norms + model.classifier[1].bias.numel()
    with FlopCounterMode(display=False) as counter:
        model(torch.randn(1, 3, 32, 32))
    net = assert_layers_match_inference(path)
    assert (net.totals.params, net.totals.buffers, net.totals.macs) == (
        sum(p.numel() for p in model.parameters()) - lacking,
        0,
        counter.get_total_flops() // 2,
    )
    assert sum(layer.op == "globalavgpool" for layer in net.layers) == 1 and not net.warnings


def test_a_mean_archc_has_no_layer_for_is_refused_at_its_node():
    """A mean over one of two spatial axes, kept (onnx's own node test): E0405 at the node."""
    path = f"{DATA}/pytorch-operator/test_operator_reduced_mean_keepdim/model.onnx"
    with pytest.raises(ArchError) as caught:
        archc.load(path)
    (d,) = caught.value.diagnostics
    assert (d.code, d.span.line) == ("E0405", 3)
    assert "a mean over axes [2] of 4: archc averages over every spatial axis, kept (globalavgpool)" in d.message


def test_a_mean_over_one_axis_removed_is_archcs_mean():
    """onnx's node test x.mean(dim=2) of 1 x 2 x 3 x 4 reads to its expected output's shape, as a `mean`."""
    case = f"{DATA}/pytorch-operator/test_operator_reduced_mean"
    net = archc.load(f"{case}/model.onnx")
    expected = onnx.numpy_helper.to_array(onnx.load_tensor(f"{case}/test_data_set_0/output_0.pb")).shape
    assert [(n.op, (1, *n.shape)) for n in net.graph.outputs] == [("mean", expected)]


@pytest.mark.parametrize("mean", ["mean m", "mean m: axis=1"])
def test_mean_round_trips_through_onnx(mean, tmp_path):
    """spec -> `codegen --target onnx` (a ReduceMean of one axis, not kept) -> import: the same layers."""
    spec = tmp_path / "m.arch"
    spec.write_text(f"network M {{\n  input ids: 8 tokens vocab=30\n  embedding x: 16\n  {mean}\n  dense: 4\n}}\n")
    path = str(tmp_path / "m.onnx")
    assert main(["codegen", str(spec), "--target", "onnx", "-o", path]) == 0
    net, back = archc.load(spec), assert_layers_match_inference(path)
    assert [(n.op, n.shape, n.params, n.macs) for n in back.layers] == [
        (n.op, n.shape, n.params, n.macs) for n in net.layers
    ]
