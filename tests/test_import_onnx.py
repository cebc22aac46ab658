"""ONNX in (issue 20, item 1): `.onnx` files read by every command, checked against outside truths.

The truths: torchvision's models (their parameter counts, and MACs from torch's flop counter) exported
by `torch.onnx.export`; onnx's own shape inference for every layer's output; the real third-party files
of the onnx wheel (`onnx/backend/test/data`: the pytorch-converted and pytorch-operator node tests,
with their expected outputs, and the light model zoo, whose weights are ConstantOfShape nodes).
"""

from __future__ import annotations

import glob
import math
import os
import random

import onnx
import pytest
import torch
import torchvision
from onnx import helper, numpy_helper, shape_inference
from torch.utils.flop_counter import FlopCounterMode

import archc
from archc.cli import main
from archc.diagnostics import ArchError, source_lines
from archc.importers import import_text
from archc.importers.onnx_model import read_onnx

DATA = os.path.join(os.path.dirname(onnx.__file__), "backend", "test", "data")
NODE_TESTS = sorted(glob.glob(f"{DATA}/pytorch-converted/*") + glob.glob(f"{DATA}/pytorch-operator/*"))
LIGHT = sorted(glob.glob(f"{DATA}/light/*.onnx"))
SPECS = sorted(glob.glob(os.path.join(os.path.dirname(__file__), "..", "specs", "*.arch")))
# the errors an unsupported model gets: an operator or a use of one archc cannot represent, a shape it
# cannot know, and the analysis's own errors (an input of six dimensions), each at a line of the file
REFUSALS = {"E0402", "E0403", "E0404", "E0405", "E0205", "E0301"}
TORCHVISION = {
    "resnet50": {},
    "mobilenet_v2": {},
    "googlenet": {"aux_logits": False, "init_weights": False},
    "efficientnet_b0": {},
}


def inferred_shapes(path: str, batch: int = 1) -> dict[str, tuple]:
    """Every tensor's shape by onnx's shape inference, with a symbolic batch set to `batch`."""
    model = onnx.load(path, load_external_data=False)
    weights = {t.name for t in model.graph.initializer}
    for value in model.graph.input:
        if value.name not in weights:
            first = value.type.tensor_type.shape.dim[0]
            if not first.HasField("dim_value"):
                first.dim_value = batch
    model = shape_inference.infer_shapes(model, data_prop=True)
    out = {}
    for value in (*model.graph.input, *model.graph.value_info, *model.graph.output):
        dims = value.type.tensor_type.shape.dim
        if all(d.HasField("dim_value") for d in dims):
            out[value.name] = tuple(d.dim_value for d in dims)
    return out


def assert_layers_match_inference(path: str) -> archc.Network:
    """Import `path`; every layer holding an ONNX tensor has the shape onnx infers for it (batch apart)."""
    net = archc.load(path)
    with open(path, "rb") as file:
        _, tensors = read_onnx(file.read(), path, {})
    shapes = inferred_shapes(path)
    checked = 0
    for tensor, layer in tensors.items():
        if tensor in shapes:
            assert net.layer(layer).shape == shapes[tensor][1:], (tensor, layer)
            checked += 1
    assert checked >= len(net.layers) // 2
    return net


# -- torchvision, exported by torch -----------------------------------------------------------------


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    """torchvision's models (weights=None) exported to ONNX with a dynamic batch, and their true figures."""
    folder = tmp_path_factory.mktemp("torchvision")
    out = {}
    for name, options in TORCHVISION.items():
        torch.manual_seed(0)
        model = getattr(torchvision.models, name)(weights=None, **options).eval()
        x = torch.randn(1, 3, 224, 224)
        path = str(folder / f"{name}.onnx")
        with torch.no_grad():
            torch.onnx.export(
                model, (x,), path, dynamo=False, do_constant_folding=False, input_names=["image"],
                dynamic_axes={"image": {0: "N"}},
            )  # fmt: skip
            with FlopCounterMode(display=False) as counter:
                model(x)
        params = sum(p.numel() for p in model.parameters())
        out[name] = (path, params, counter.get_total_flops() // 2)
    return out


@pytest.mark.parametrize("name", list(TORCHVISION))
def test_torchvision_export_imports_to_its_figures(exported, name):
    path, params, macs = exported[name]
    net = assert_layers_match_inference(path)
    assert (net.totals.params, net.totals.macs) == (params, macs)
    assert net.batch == 1  # the batch is symbolic (N): archc's default
    with open(path, "rb") as file:
        spec = archc.loads(import_text(file.read(), path), f"{name}.arch")  # blocks: the same layers
    assert [(n.shape, n.params, n.macs) for n in spec.layers] == [(n.shape, n.params, n.macs) for n in net.layers]


def test_resnet50_imports_as_a_readable_spec_with_blocks(exported, tmp_path):
    path, params, macs = exported["resnet50"]
    out = tmp_path / "resnet50.arch"
    assert main(["import", path, "-o", str(out)]) == 0
    text = out.read_text()
    assert "block conv_bn_relu(" in text and "layer1_1: 64 64 256" in text and "conv1: 64 7x7 /2 pad=3" in text
    assert len(source_lines(text)) < 80  # 16 bottlenecks as block calls, not 170 statements
    net = archc.load(out)
    assert (net.totals.params, net.totals.macs) == (params, macs)


# -- the onnx wheel's own test data ------------------------------------------------------------------


@pytest.mark.parametrize("case", NODE_TESTS, ids=os.path.basename)
def test_node_tests_read_to_their_outputs_or_a_located_error(case):
    """Every node test archc supports gives its expected outputs' shapes; the others a located error."""
    path = f"{case}/model.onnx"
    expected = [
        numpy_helper.to_array(onnx.load_tensor(f)).shape
        for f in sorted(glob.glob(f"{case}/test_data_set_0/output_*.pb"))
    ]
    try:
        net = archc.load(path)
    except ArchError as err:
        lines = len(source_lines(err.sources[path]))
        for d in err.diagnostics:
            assert d.code in REFUSALS, d
            assert d.span is not None and d.span.file == path and 1 <= d.span.line <= lines
        return
    assert [(e[0], *n.shape) for e, n in zip(expected, net.graph.outputs)] == [tuple(e) for e in expected]


def test_node_tests_mostly_read():
    """The importer is not refusing its way through the node tests: most of them read."""
    read = 0
    for case in NODE_TESTS:
        try:
            archc.load(f"{case}/model.onnx")
            read += 1
        except ArchError:
            pass
    assert read >= 60


@pytest.mark.parametrize("path", LIGHT, ids=os.path.basename)
def test_light_zoo_reads_to_the_figures_its_graph_implies(path):
    """Shapes by onnx's inference; params: every float weight a node reads, initialiser or ConstantOfShape
    output, BatchNormalization's running statistics apart (archc's buffers)."""
    net = assert_layers_match_inference(path)
    model = onnx.load(path)
    shapes = inferred_shapes(path)
    read = {name for node in model.graph.node for name in node.input}
    sizes = {t.name: math.prod(t.dims) for t in model.graph.initializer if t.data_type == onnx.TensorProto.FLOAT}
    for node in model.graph.node:
        if node.op_type == "ConstantOfShape":
            sizes[node.output[0]] = math.prod(shapes[node.output[0]])
    sizes = {name: size for name, size in sizes.items() if name in read}
    stats = {n for node in model.graph.node if node.op_type == "BatchNormalization" for n in node.input[3:5]}
    assert net.totals.buffers == sum(sizes[n] for n in stats)
    assert net.totals.params == sum(sizes.values()) - net.totals.buffers
    with open(path, "rb") as file:
        text = import_text(file.read(), path)  # with blocks and repeats: the same figures, layer by layer
    spec = archc.loads(text, "light.arch")
    assert [(n.op, n.shape, n.params, n.macs) for n in spec.layers] == [
        (n.op, n.shape, n.params, n.macs) for n in net.layers
    ]


# -- round trips --------------------------------------------------------------------------------------


@pytest.mark.parametrize("spec", SPECS, ids=os.path.basename)
def test_every_spec_round_trips_through_onnx(spec, tmp_path):
    """spec -> `codegen --target onnx` -> import: the same figures, layer by layer (BERT's q, k, v dense
    layers and sdpa as themselves)."""
    net = archc.load(spec)
    path = str(tmp_path / (os.path.basename(spec)[:-5] + ".onnx"))
    assert main(["codegen", spec, "--target", "onnx", "-o", path]) == 0
    back = archc.load(path)
    assert (back.totals.params, back.totals.buffers, back.totals.macs) == (
        net.totals.params,
        net.totals.buffers,
        net.totals.macs,
    )
    figures = sorted((n.params, n.macs) for n in net.layers if n.params or n.macs)
    if any(n.op == "sdpa" for n in net.layers) and not any(n.op == "sdpa" for n in back.layers):
        # GPT-2's c_attn, sdpa and c_proj come back as one attention
        assert sum(n.op == "attention" for n in back.layers) == sum(n.op == "sdpa" for n in net.layers)
        return
    assert sorted((n.params, n.macs) for n in back.layers if n.params or n.macs) == figures
    with open(path, "rb") as file:
        _, tensors = read_onnx(file.read(), path, {})
    matched = [layer for layer in net.layers if layer.name in tensors]
    for layer in matched:  # ONNX out names each layer's output tensor after the layer
        assert back.layer(tensors[layer.name]).shape == layer.shape, layer.name
    assert len(matched) >= len(net.layers) * 0.8


# -- bad input ----------------------------------------------------------------------------------------


def _model(nodes, inputs, outputs, weights=(), opset=17):
    graph = helper.make_graph(nodes, "g", inputs, outputs, list(weights))
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)], ir_version=8)


def _conv_model(batch="N", size=(3, 8, 8)):
    w = numpy_helper.from_array(torch.zeros(4, 3, 3, 3).numpy(), "w")
    conv = helper.make_node("Conv", ["x", "w"], ["y"], name="/conv/Conv", pads=[1, 1, 1, 1])
    x = helper.make_tensor_value_info("x", onnx.TensorProto.FLOAT, [batch, *size])
    y = helper.make_tensor_value_info("y", onnx.TensorProto.FLOAT, None)
    return _model([conv], [x], [y], [w])


def _run(argv, capsys):
    status = main(argv)
    err = capsys.readouterr().err
    assert "Traceback" not in err
    return status, err


def test_truncated_and_foreign_files_are_clear_errors(tmp_path, capsys):
    data = _conv_model().SerializeToString()
    for name, content in (("cut.onnx", data[: len(data) // 2]), ("text.onnx", b"network A {}\n"), ("empty.onnx", b"")):
        path = tmp_path / name
        path.write_bytes(content)
        out = tmp_path / "out.arch"
        status, err = _run(["import", str(path), "-o", str(out)], capsys)
        assert status == 1 and "E0401" in err and f"cannot read `{path}` as an ONNX model" in err
        assert not out.exists()
        assert _run(["table", str(path)], capsys)[0] == 1


def test_unknown_operator_is_located_at_its_node(tmp_path, capsys):
    model = _conv_model()
    model.graph.node.append(helper.make_node("Softplus", ["y"], ["z"], name="/act/Softplus"))
    model.graph.output[0].name = "z"
    path = tmp_path / "m.onnx"
    path.write_bytes(model.SerializeToString())
    status, err = _run(["check", str(path)], capsys)
    assert status == 1
    assert f"{path}:4:1: error: node `/act/Softplus` (Softplus): the operator Softplus is not supported" in err
    assert '["/act/Softplus"] z = Softplus (y)' in err  # the excerpt names the node and its operator


def test_symbolic_dimension_needs_a_value_from_input(tmp_path, capsys):
    path = tmp_path / "m.onnx"
    path.write_bytes(_conv_model(size=(3, "height", "width")).SerializeToString())
    out = tmp_path / "out.arch"
    status, err = _run(["import", str(path), "-o", str(out)], capsys)
    assert status == 1 and "E0404" in err and "--input x=3x64x64" in err and not out.exists()
    net = archc.load(path, inputs={"x": (3, 10, 12)})
    assert net.layer("conv").shape == (4, 10, 12)
    assert main(["table", str(path), "--input", "x=3x10x12"]) == 0


def test_fixed_batch_is_the_networks_batch(tmp_path):
    path = tmp_path / "m.onnx"
    path.write_bytes(_conv_model(batch=8).SerializeToString())
    net = archc.load(path)
    assert net.batch == 8 and net.layer("conv").shape == (4, 8, 8) and net.totals.params == 4 * 27


def test_a_weight_of_the_wrong_shape_is_an_error_at_the_node(tmp_path):
    model = _conv_model()
    model.graph.initializer[0].CopyFrom(numpy_helper.from_array(torch.zeros(4, 2, 3, 3).numpy(), "w"))
    path = tmp_path / "m.onnx"
    path.write_bytes(model.SerializeToString())
    with pytest.raises(ArchError) as err:
        archc.load(path)
    (d,) = err.value.diagnostics
    assert d.code == "E0403" and d.span.line == 3 and "weight has shape [4, 2, 3, 3]" in d.message


def test_every_importer_error_code_is_explained():
    from archc.codes import CODES

    assert REFUSALS - {"E0205", "E0301"} <= set(CODES)


def _reshaping_model():
    """conv, then a Reshape whose shape is a tensor archc must read: [0, -1], a flatten."""
    model = _conv_model()
    model.graph.initializer.append(numpy_helper.from_array(torch.tensor([0, -1]).numpy(), "to"))
    model.graph.node.append(helper.make_node("Reshape", ["y", "to"], ["z"], name="/flat/Reshape"))
    model.graph.output[0].name = "z"
    return model


def test_external_data_reads_the_same(tmp_path):
    inline = tmp_path / "inline.onnx"
    onnx.save_model(_reshaping_model(), str(inline))
    folder = tmp_path / "external"
    folder.mkdir()
    external = folder / "m.onnx"
    onnx.save_model(_reshaping_model(), str(external), save_as_external_data=True, location="m.bin", size_threshold=0)
    assert not onnx.load(str(external), load_external_data=False).graph.initializer[1].raw_data  # really outside
    a, b = archc.load(inline), archc.load(external)
    assert [(n.op, n.shape, n.params) for n in a.layers] == [(n.op, n.shape, n.params) for n in b.layers]
    assert b.layer("flat").shape == (4 * 8 * 8,) and b.totals.params == 4 * 27
    (folder / "m.bin").unlink()
    with pytest.raises(ArchError) as err:
        archc.load(external)
    (d,) = err.value.diagnostics
    assert d.code == "E0401" and d.span.line == 4 and "cannot read the tensor `to`" in d.message


def _mutated(model, rng):
    """The model with one to three damages: an attribute's value, an input, a weight's shape, an operator."""
    names = [o for node in model.graph.node for o in node.output]
    for _ in range(rng.randint(1, 3)):
        node = rng.choice(list(model.graph.node))
        r = rng.random()
        if node.attribute and r < 0.5:
            attr = rng.choice(list(node.attribute))
            if attr.ints:
                attr.ints[rng.randrange(len(attr.ints))] = rng.randint(-3, 12)
            elif attr.type == onnx.AttributeProto.INT:
                attr.i = rng.randint(-3, 12)
            elif attr.type == onnx.AttributeProto.FLOAT:
                attr.f = rng.choice([-1.0, 0.0, float("nan"), float("inf"), 6.0])
            elif attr.type == onnx.AttributeProto.STRING:
                attr.s = rng.choice([b"SAME_UPPER", b"x", b"VALID", b"reflect"])
        elif r < 0.65 and node.input:
            node.input[rng.randrange(len(node.input))] = rng.choice(["", "nope", *names])
        elif r < 0.8:
            del node.attribute[:]
        elif r < 0.9 and model.graph.initializer:
            weight = rng.choice(list(model.graph.initializer))
            if weight.dims:
                weight.dims[rng.randrange(len(weight.dims))] = rng.randint(0, 9)
        else:
            node.op_type = rng.choice(["Conv", "Relu", "Gemm", "MaxPool", "Reshape", "Concat", "Slice", "Split", "Foo"])
    return model


def test_damaged_models_are_errors_never_crashes(tmp_path):
    """Real exporter output, damaged: wrong attribute values, inputs, weight shapes, operators, bytes."""
    rng = random.Random(3)
    path = tmp_path / "m.onnx"
    for k in range(300):
        model = _mutated(onnx.load(rng.choice(NODE_TESTS) + "/model.onnx"), rng)
        data = bytearray(model.SerializeToString())
        if k % 3 == 0:  # bytes: names that are not UTF-8, fields cut
            for _ in range(rng.randint(1, 6)):
                data[rng.randrange(len(data))] = rng.randrange(256)
        path.write_bytes(bytes(data))
        try:
            archc.load(path)
        except ArchError as err:
            assert all(d.code.startswith(("E0", "W0")) for d in err.diagnostics)


def test_hostile_names_are_escaped_and_sanitised(tmp_path, capsys):
    """Names with line ends and terminal escapes add no line to the rendered text or the spec."""
    model = _conv_model()
    model.graph.node[0].name = "/co\nnv/\x1b[31mConv"
    model.graph.node.append(helper.make_node("Softplus", ["y"], ["z"], name="x\u2028y\x1b]0;title\x07"))
    model.graph.output[0].name = "z"
    path = tmp_path / "m.onnx"
    path.write_bytes(model.SerializeToString())
    status, err = _run(["check", str(path)], capsys)
    assert status == 1 and "\x1b" not in err and "\u2028" not in err
    assert f"{path}:4:1: error: node `x\\u2028y\\x1b]0;title\\x07` (Softplus)" in err
    model.graph.node.pop()
    model.graph.output[0].name = "y"
    path.write_bytes(model.SerializeToString())
    out = tmp_path / "m.arch"
    assert main(["import", str(path), "-o", str(out)]) == 0
    text = out.read_text()
    assert "\x1b" not in text and archc.loads(text, "m.arch").totals.params == 4 * 27


def _window_case(rng):
    """A random Conv, MaxPool or AveragePool as ONNX writes them, with an input it fits."""
    nd = rng.choice([1, 2, 3])
    op = rng.choice(["Conv", "MaxPool", "AveragePool"])
    kernel = [rng.randint(1, 4) for _ in range(nd)]
    attrs = {"kernel_shape": kernel, "strides": [rng.randint(1, 3) for _ in range(nd)]}
    if rng.random() < 0.4:
        attrs["auto_pad"] = rng.choice(["SAME_UPPER", "SAME_LOWER", "VALID"])
    else:
        attrs["pads"] = [rng.randint(0, k // 2) for k in kernel] + [rng.randint(0, k // 2) for k in kernel]
    # a dilated max pool with a SAME pad: onnxruntime and onnx's reference disagree with the spec's ceil(n / s)
    if op == "Conv" or (op == "MaxPool" and "auto_pad" not in attrs):
        attrs["dilations"] = [rng.randint(1, 2) for _ in range(nd)]
    if op != "Conv":
        attrs["ceil_mode"] = rng.randint(0, 1) if "auto_pad" not in attrs else 0
    if op == "AveragePool":
        attrs["count_include_pad"] = rng.randint(0, 1)
    channels, group = rng.choice([(4, 1), (4, 2), (6, 3), (4, 4)])
    size = [rng.randint(6, 9) for _ in range(nd)]
    weights = []
    inputs = ["x"]
    if op == "Conv":
        attrs["group"] = group
        filters = group * rng.randint(1, 3)
        weights.append(numpy_helper.from_array(torch.zeros(filters, channels // group, *kernel).numpy(), "w"))
        inputs.append("w")
    node = helper.make_node(op, inputs, ["y"], name=f"/{op.lower()}/{op}", **attrs)
    x = helper.make_tensor_value_info("x", onnx.TensorProto.FLOAT, [2, channels, *size])
    y = helper.make_tensor_value_info("y", onnx.TensorProto.FLOAT, None)
    return _model([node], [x], [y], weights), [2, channels, *size]


def test_windows_give_onnxruntimes_shapes(tmp_path):
    """Conv and pools over random auto_pad, per-side pads, strides, dilations, groups, ceil_mode:
    archc's output shape is the one onnxruntime computes."""
    import numpy as np
    import onnxruntime
    from onnxruntime.capi import onnxruntime_pybind11_state as state

    rng = random.Random(7)
    path = tmp_path / "m.onnx"
    compared = 0
    for _ in range(80):
        model, shape = _window_case(rng)
        path.write_bytes(model.SerializeToString())
        session = onnxruntime.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
        try:
            (truth,) = session.run(None, {"x": np.zeros(shape, np.float32)})
        except (state.RuntimeException, state.InvalidArgument):
            continue  # onnxruntime refuses it (a SAME pad of a stride beyond the window): no truth
        try:
            net = archc.load(path)
        except ArchError as err:  # a pool padded beyond half its window, which torch refuses: at the node
            assert [(d.code, d.span.line) for d in err.diagnostics] == [("E0205", 3)]
            assert model.graph.node[0].op_type != "Conv"
            continue
        assert (2, *net.layers[-1].shape) == truth.shape, onnx.printer.to_text(model.graph.node[0])
        compared += 1
    assert compared >= 50


@pytest.mark.parametrize("trans_b", [0, 1])
def test_gemm_reads_trans_b_and_notes_alpha_beta(tmp_path, trans_b):
    w = numpy_helper.from_array(torch.zeros((10, 6) if trans_b else (6, 10)).numpy(), "w")
    b = numpy_helper.from_array(torch.zeros(10).numpy(), "b")
    gemm = helper.make_node("Gemm", ["x", "w", "b"], ["y"], name="fc", transB=trans_b, alpha=2.0, beta=0.5)
    x = helper.make_tensor_value_info("x", onnx.TensorProto.FLOAT, ["N", 6])
    y = helper.make_tensor_value_info("y", onnx.TensorProto.FLOAT, None)
    path = tmp_path / "m.onnx"
    path.write_bytes(_model([gemm], [x], [y], [w, b]).SerializeToString())
    net = archc.load(path)
    assert net.layer("fc").shape == (10,) and net.totals.params == 6 * 10 + 10 == net.layer("fc").params
    assert "fc: alpha=2, beta=0.5: its weights times alpha, bias times beta" in import_text(path.read_bytes(), "m.onnx")
    gemm.attribute.append(helper.make_attribute("transA", 1))
    path.write_bytes(_model([gemm], [x], [y], [w, b]).SerializeToString())
    with pytest.raises(ArchError) as err:
        archc.load(path)
    (d,) = err.value.diagnostics
    line = source_lines(err.value.sources[str(path)])[d.span.line - 1]
    assert d.code == "E0405" and line.startswith("[fc] y = Gemm")
    assert line[d.span.col - 1 :].startswith("transA: int = 1")  # the caret is under the attribute


def test_gelu_written_with_erf_is_gelu(tmp_path):
    """torch.onnx.export before opset 20 writes nn.GELU as x * (erf(x / sqrt 2) + 1) * 0.5."""
    model = torch.nn.Sequential(torch.nn.Linear(8, 16), torch.nn.GELU(), torch.nn.Linear(16, 4), torch.nn.GELU())
    path = str(tmp_path / "mlp.onnx")
    torch.onnx.export(model, (torch.randn(1, 8),), path, dynamo=False, opset_version=17, input_names=["x"])
    assert "Erf" in {node.op_type for node in onnx.load(path).graph.node}
    net = assert_layers_match_inference(path)
    gelu = ("gelu", {"approximate": "none"})
    assert [(n.op, n.activation) for n in net.layers] == [("input", None), ("dense", gelu), ("dense", gelu)]
    assert net.totals.params == sum(p.numel() for p in model.parameters())
