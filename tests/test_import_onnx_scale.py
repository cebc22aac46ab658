"""ONNX in (issue 20): a per-channel x * w + b (a Caffe Scale) reads as element-wise arithmetic, 0 MACs.

Before, the importer read it as a depthwise 1x1 conv of C*H*W MACs, where the counting convention
(docs/language.md section 12, torch's flop counter) counts none for element-wise mul and add. Now it is
a `layer_scale` (x * w) and an `add` of a C x 1 x 1 `param` (the bias), which `add` broadcasts. The
truths: onnx's shape inference for the light model zoo's convolutions and Gemms (their only MACs),
torch's flop counter and parameter count of the same layers written in torch, and onnxruntime running
the file, whose output the generated PyTorch model gives with the file's weights.
"""

from __future__ import annotations

import math

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch
from codegen_util import build
from onnx import helper, numpy_helper
from test_import_onnx import LIGHT, inferred_shapes
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

import archc
from archc.cli import main

CHANNELS = 4


def implied_macs(path: str) -> int:
    """The MACs of a light-zoo graph: its Conv and Gemm nodes (its only multiply-accumulates), from the
    shapes onnx's inference gives; a Conv's weight is M x C/group x k..., a Gemm's A is N x K (K x N
    transposed)."""
    model, shapes = onnx.load(path), inferred_shapes(path)
    macs = 0
    for node in model.graph.node:
        out = math.prod(shapes[node.output[0]])
        if node.op_type == "Conv":
            macs += out * math.prod(shapes[node.input[1]][1:])
        elif node.op_type == "Gemm":
            trans_a = any(a.name == "transA" and a.i for a in node.attribute)
            macs += out * shapes[node.input[0]][0 if trans_a else 1]
    return macs


@pytest.mark.parametrize("path", LIGHT, ids=lambda p: p.rsplit("/", 1)[-1])
def test_light_zoo_macs_are_its_convolutions_and_gemms(path):
    """densenet121 and inception_v2 hold a per-channel Mul and Add after every BatchNormalization
    (Caffe's Scale), which read as a depthwise 1x1 conv of C*H*W MACs each before."""
    assert archc.load(path).totals.macs == implied_macs(path)


class CaffeScale(nn.Module):
    """conv, then x * w + b with one w and b per channel, then relu: in torch, as Caffe computes it."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, CHANNELS, 3, padding=1)
        self.w = nn.Parameter(torch.randn(CHANNELS, 1, 1))
        self.b = nn.Parameter(torch.randn(1, CHANNELS, 1, 1))

    def forward(self, x):
        return torch.relu(self.conv(x) * self.w + self.b)


def scale_model(twin: CaffeScale, w_first: bool, b_first: bool, flat: bool):
    """The twin as an ONNX graph: Mul and Add of initialisers (C x 1 x 1, 1 x C x 1 x 1, or C values
    Unsqueezed to C x 1 x 1), in either order."""
    state = {k: v.detach().numpy() for k, v in twin.state_dict().items()}
    weights = [numpy_helper.from_array(state[k], k) for k in ("conv.weight", "conv.bias", "w")]
    nodes = [helper.make_node("Conv", ["x", "conv.weight", "conv.bias"], ["c"], name="/conv/Conv", pads=[1] * 4)]
    bias = "b"
    if flat:
        weights += [
            numpy_helper.from_array(state["b"].reshape(-1), "b"),
            numpy_helper.from_array(np.array([1, 2]), "ax"),
        ]
        nodes.append(helper.make_node("Unsqueeze", ["b", "ax"], ["b3"], name="/scale/Unsqueeze"))
        bias = "b3"
    else:
        weights.append(numpy_helper.from_array(state["b"], "b"))
    nodes.append(helper.make_node("Mul", ["w", "c"] if w_first else ["c", "w"], ["m"], name="/scale/Mul"))
    nodes.append(helper.make_node("Add", [bias, "m"] if b_first else ["m", bias], ["a"], name="/scale/Add"))
    nodes.append(helper.make_node("Relu", ["a"], ["y"], name="/relu/Relu"))
    x = helper.make_tensor_value_info("x", onnx.TensorProto.FLOAT, ["N", 3, 8, 8])
    y = helper.make_tensor_value_info("y", onnx.TensorProto.FLOAT, None)
    graph = helper.make_graph(nodes, "scale", [x], [y], weights)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8)


@pytest.mark.parametrize("w_first", [False, True])
@pytest.mark.parametrize("b_first", [False, True])
@pytest.mark.parametrize("flat", [False, True])
def test_a_caffe_scale_reads_to_torchs_figures_and_onnxruntimes_output(w_first, b_first, flat, tmp_path):
    torch.manual_seed(0)
    twin = CaffeScale().eval()
    path = tmp_path / "scale.onnx"
    model = scale_model(twin, w_first, b_first, flat)
    onnx.save(model, path)
    net = archc.load(str(path))

    x = torch.randn(2, 3, 8, 8)
    counter = FlopCounterMode(display=False)
    with counter, torch.no_grad():
        want = twin(x)
    assert net.totals.macs == counter.get_total_flops() // (2 * len(x))  # the conv's alone
    assert net.totals.params == sum(p.numel() for p in twin.parameters())  # the conv's, and 2C
    assert [n.op for n in net.layers] == ["input", "conv", "layer_scale", "param", "add"]

    # the generated PyTorch model, given the file's weights by the names the importer gave them
    tmodel = build(net, "torch", flat=True)[0].eval()
    conv, scale, bias = (n.name for n in net.layers if n.op in ("conv", "layer_scale", "param"))
    given = {f"{conv}.weight": "conv.weight", f"{conv}.bias": "conv.bias", scale: "w", bias: "b"}
    tmodel.load_state_dict({key: twin.state_dict()[name] for key, name in given.items()}, strict=True)
    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    (got,) = session.run(None, {"x": x.numpy()})
    with torch.no_grad():
        ours = tmodel(x)
    np.testing.assert_allclose(ours.numpy(), got, rtol=1e-5, atol=1e-5 * float(np.abs(got).max()))
    np.testing.assert_allclose(want.numpy(), got, rtol=1e-5, atol=1e-5 * float(np.abs(got).max()))


CHANNEL_BIAS = """network ChannelBias {
  input x: 16x8x8
  conv c: 16 @ 3x3 pad=1 bias=false
  layer_scale scaled: 1
  param b: 16x1x1 std=0.1
  add biased (scaled, b)
  conv d: 8 @ 1x1
}
"""


def test_a_channel_bias_round_trips_spec_to_onnx_to_archc(tmp_path):
    """spec -> `codegen --target onnx` -> import: the same figures, layer by layer, and the same totals."""
    spec = tmp_path / "bias.arch"
    spec.write_text(CHANNEL_BIAS)
    out = tmp_path / "bias.onnx"
    assert main(["codegen", str(spec), "--target", "onnx", "-o", str(out)]) == 0
    net, back = archc.load(str(spec)), archc.load(str(out))
    assert [(n.op, tuple(n.shape), n.params, n.macs) for n in back.layers] == [
        (n.op, tuple(n.shape), n.params, n.macs) for n in net.layers
    ]
    assert (back.totals.params, back.totals.macs) == (net.totals.params, net.totals.macs)
