"""Caffe `.prototxt` files: the BVLC deploy and train_test files, against Caffe's own logs.

The files and the logs are in tests/data/realspecs (copied unchanged from the
BVLC Caffe repository and published logs; see SOURCES.md there). The
figures checked are Caffe's: 431,080 parameters for LeNet and every "Top
shape" and "Memory required for data" line Caffe logged for it at batch 64
(5,172,224 bytes at the end); 60,965,224 parameters for AlexNet and every
line of its log at batch 10 (83,232,440 bytes).
"""

from __future__ import annotations

import re
import subprocess
import sys

import pytest
import torch
from codegen_util import build
from conftest import ROOT

import archc
from archc.conventions import caffe_memory
from archc.importers import import_text

REAL = ROOT / "tests" / "data" / "realspecs"
CAFFE = sorted((REAL / "caffe").glob("*.prototxt"))
LENET = REAL / "caffe" / "lenet.prototxt"
ALEXNET = REAL / "caffe" / "bvlc_alexnet_deploy.prototxt"
LOGS = {
    LENET: REAL / "logs" / "caffe_lenet_deploy_memory_log_excerpt.txt",
    ALEXNET: REAL / "logs" / "caffe_bvlc_alexnet_deploy_memory_log_excerpt.txt",
}
# data layers read their shape from a database: the tests give it, as a user does with --input
DATA_SHAPES = {"lenet_train_test.prototxt": {"data": (1, 28, 28)}}


def log_lines(path):
    """(layer, shape with the batch first, count, memory, in place) per "Top shape" line of a Caffe log."""
    out = []
    for line in path.read_text().splitlines():
        found = re.match(r"(\S+)\s+Top shape: ([\d ]+) \((\d+)\)\s+Memory required for data: (\d+)(.*)", line)
        if found:
            shape = tuple(int(v) for v in found[2].split())
            out.append((found[1], shape, int(found[3]), int(found[4]), "in-place" in found[5]))
    return out


@pytest.mark.parametrize(("path", "batch", "params", "last"), [
    (LENET, 64, 431_080, 5_172_224),
    (ALEXNET, 10, 60_965_224, 83_232_440),
])  # fmt: skip
def test_every_line_of_caffe_s_log(path, batch, params, last):
    lines = log_lines(LOGS[path])
    assert lines and lines[-1][3] == last
    net = archc.load(path)  # the batch comes from the file's input shape
    assert (net.batch, net.totals.params) == (batch, params)
    tops = caffe_memory(net)
    assert len(tops) == len(lines)
    for (name, shape, count, memory, in_place), top in zip(lines, tops):
        layer = net.layer(top.layer)
        assert (batch, *layer.shape) == shape, name
        assert top.values * batch == count and top.total_bytes == memory, name
        if top.kind == "in-place":  # an in-place ReLU is the `->` of the layer it follows
            assert in_place and name.startswith("relu"), name
        else:  # an in-place Dropout stays a layer, with its Caffe name
            assert top.layer == name
    assert tops[-1].total_bytes == last


def test_the_table_shows_caffe_s_memory():
    run = subprocess.run(
        [sys.executable, "-m", "archc", "table", str(ALEXNET), "--convention", "caffe", "--format", "csv",
         "--columns", "name,output,caffe_memory"],
        capture_output=True,
        text=True,
    )  # fmt: skip
    assert run.returncode == 0, run.stderr
    rows = {line.split(",")[0]: line.split(",")[2] for line in run.stdout.splitlines()[1:]}
    assert rows["conv1"] == "29415480" and rows["prob"] == "83232440"  # conv1 and its in-place relu1
    assert rows["fc6_flatten"] == ""  # InnerProduct flattens by itself: no blob in Caffe
    run = subprocess.run(
        [sys.executable, "-m", "archc", "table", str(LENET), "--convention", "caffe"], capture_output=True, text=True
    )
    assert "Memory required for data: 5172224" in run.stdout and "batch 64" in run.stdout


def test_alexnet_as_caffe_defines_it():
    net = archc.load(ALEXNET)
    assert net.totals.macs == 724_406_816  # figures.md: AlexNet, original Caffe form
    assert net.layer("conv2").geom["groups"] == 2
    assert net.layer("pool1").attrs["ceil"] and net.layer("pool5").shape == (256, 6, 6)
    assert net.layer("conv1").activation == ("relu", {})  # relu1, in place
    assert net.layer("drop6").inputs == ["fc6"] and net.layer("fc7").inputs == ["drop6"]
    assert net.layer("norm1").attrs == {"size": 5, "alpha": 0.0001, "beta": 0.75, "k": 1.0}


def test_googlenet_gets_one_inception_block():
    path = REAL / "caffe" / "bvlc_googlenet_deploy.prototxt"
    net = archc.load(path)
    assert net.totals.params == 6_998_552
    text = import_text(path.read_text(), str(path))
    assert text.count("block inception(") == 1 and text.count("  inception inception_") == 9


def test_train_test_is_read_as_caffe_s_test_phase():
    path = REAL / "caffe" / "lenet_train_test.prototxt"
    net = archc.load(path, inputs={"data": (1, 28, 28)})
    assert net.batch == 100  # the TEST data layer's batch_size
    assert [n.name for n in net.layers][-2:] == ["ip1", "ip2"]  # accuracy and loss are not layers
    assert net.totals.params == 431_080
    text = import_text(path.read_text(), str(path), inputs={"data": (1, 28, 28)})
    assert "accuracy (Accuracy" in text and "loss (SoftmaxWithLoss" in text and "not in Caffe's TEST phase" in text


def test_a_data_layer_needs_its_shape_given():
    path = REAL / "caffe" / "lenet_train_test.prototxt"
    with pytest.raises(archc.ArchError) as info:
        archc.load(path)
    (diag,) = info.value.errors
    assert (diag.code, diag.span.line) == ("E0404", 21)
    assert "--input data=CxHxW" in diag.help[0]


def figures(net):
    return [(n.op, n.shape, n.params, n.buffers, n.macs, n.activation) for n in net.layers]


@pytest.mark.parametrize("path", CAFFE, ids=lambda p: p.name)
def test_every_caffe_file_imports_and_its_arch_text_gives_the_same_figures(path):
    inputs = DATA_SHAPES.get(path.name)
    net = archc.load(path, inputs=inputs)
    assert not net.warnings, [w.message for w in net.warnings]
    text = path.read_text()
    for blocks in (True, False):
        again = archc.loads(import_text(text, str(path), blocks=blocks, inputs=inputs), "imported.arch")
        assert figures(again) == figures(net)
        assert again.totals.params == net.totals.params and not again.warnings
        if not blocks:
            assert [n.name for n in again.layers] == [n.name for n in net.layers]


def test_generated_pytorch_runs_and_has_the_analysed_parameters():
    net = archc.load(ALEXNET)
    model, _gen, _file = build(net, "torch")
    assert sum(p.numel() for p in model.parameters()) == net.totals.params == 60_965_224
    with torch.no_grad():
        out = model.eval()(torch.randn(2, 3, 227, 227))
    assert tuple(out.shape) == (2, 1000)
    assert torch.allclose(out.sum(1), torch.ones(2))  # prob is a softmax


# -- errors --------------------------------------------------------------------------------------

HEAD = 'name: "T"\ninput: "data"\ninput_shape { dim: 1 dim: 3 dim: 8 dim: 8 }\n'


def errors(text: str):
    with pytest.raises(archc.ArchError) as info:
        archc.loads(text, "bad.prototxt")
    return [(d.code, d.span.line, d.span.col) for d in info.value.errors]


def test_syntax_errors_are_e0401_at_the_token():
    assert errors(HEAD + 'layer {\n  name: "a"\n  type: "ReLU"\n  bottom "data"\n}\n') == [("E0401", 7, 10)]
    assert errors(HEAD + 'layer {\n  name: "a"\n') == [("E0401", 5, 12)]


def test_unsupported_layer_types_and_settings():
    prelu = HEAD + 'layer { name: "p" type: "PReLU" bottom: "data" top: "p" }\n'
    assert errors(prelu) == [("E0402", 4, 25)]
    pool = HEAD + 'layer { name: "p" type: "Pooling" bottom: "data" top: "p"\n  pooling_param { pool: STOCHASTIC } }\n'
    assert errors(pool) == [("E0405", 5, 19)]


def test_a_missing_blob_is_e0406_and_what_reads_the_broken_layer_stays_quiet():
    conv = "convolution_param { num_output: 4 kernel_size: 3 } }\n"
    text = HEAD + 'layer { name: "c" type: "Convolution" bottom: "dta" top: "c" ' + conv
    text += 'layer { name: "r" type: "ReLU" bottom: "c" top: "c" }\n'

    assert errors(text) == [("E0406", 4, 47)]


def test_shape_errors_point_into_the_prototxt():
    text = HEAD + 'layer { name: "c" type: "Convolution" bottom: "data" top: "c"\n'
    text += "  convolution_param { num_output: 4 kernel_size: 9 } }\n"
    assert errors(text) == [("E0302", 4, 19)]


def test_an_unknown_field_warns():
    text = HEAD + 'layer { name: "c" type: "Convolution" bottom: "data" top: "c"\n'
    text += "  convolution_param { num_output: 4 kernel_size: 3 strid: 2 } }\n"
    net = archc.loads(text, "w.prototxt")
    (warning,) = net.warnings
    assert (warning.code, warning.span.line) == ("W0401", 5) and warning.help == ["did you mean `stride`?"]


def test_the_python_example_of_docs_importers_runs(tmp_path, monkeypatch, capsys):
    doc = (ROOT / "docs" / "importers.md").read_text()
    blocks = re.findall(r"^```python\n(.*?)^```$", doc, re.MULTILINE | re.DOTALL)
    assert blocks
    for name, source in {
        "yolov3-tiny.cfg": REAL / "darknet" / "alexeyab" / "yolov3-tiny.cfg",
        "yolov3.cfg": REAL / "darknet" / "alexeyab" / "yolov3.cfg",
        "bvlc_alexnet_deploy.prototxt": ALEXNET,
    }.items():
        (tmp_path / name).symlink_to(source)
    monkeypatch.chdir(tmp_path)
    for block in blocks:
        exec(compile(block, "docs/importers.md", "exec"), {"__name__": "__doc__"})
    assert "83232440" in capsys.readouterr().out


RESNET_LIKE = """
name: "Small"
input: "data"
input_dim: 2
input_dim: 3
input_dim: 16
input_dim: 16
layer { name: "conv1" type: "Convolution" bottom: "data" top: "conv1"
  convolution_param { num_output: 8 kernel_size: 3 pad: 1 bias_term: false } }
layer { name: "bn1" type: "BatchNorm" bottom: "conv1" top: "conv1" batch_norm_param { use_global_stats: true } }
layer { name: "scale1" type: "Scale" bottom: "conv1" top: "conv1" scale_param { bias_term: true } }
layer { name: "relu1" type: "ReLU" bottom: "conv1" top: "conv1" }
layer { name: "conv2" type: "Convolution" bottom: "conv1" top: "conv2"
  convolution_param { num_output: 8 kernel_h: 3 kernel_w: 1 pad_h: 1 pad_w: 0 } }
layer { name: "sum" type: "Eltwise" bottom: "conv1" bottom: "conv2" top: "sum" }
layer { name: "up" type: "Deconvolution" bottom: "sum" top: "up"
  convolution_param { num_output: 4 kernel_size: 2 stride: 2 } }
layer { name: "cat" type: "Concat" bottom: "up" bottom: "up" top: "cat" }
layer { name: "gap" type: "Pooling" bottom: "cat" top: "gap" pooling_param { pool: AVE global_pooling: true } }
layers { name: "flat" type: FLATTEN bottom: "gap" top: "flat" }
"""


def test_more_layer_types():
    net = archc.loads(RESNET_LIKE.replace("layers {", "layer {").replace("FLATTEN", '"Flatten"'), "small.prototxt")
    assert net.batch == 2
    assert [(n.name, n.op) for n in net.layers] == [
        ("data", "input"),
        ("conv1", "conv"),
        ("bn1", "bn"),  # BatchNorm + Scale: PyTorch's batch norm, its scale and shift
        ("conv2", "conv"),
        ("sum", "add"),
        ("up", "deconv"),
        ("cat", "concat"),
        ("gap", "globalavgpool"),
        ("flat", "flatten"),
    ]
    assert net.layer("bn1").params == 16 and net.layer("bn1").activation == ("relu", {})
    assert net.layer("conv2").geom["kernel"] == (3, 1) and net.layer("conv2").shape == (8, 16, 16)
    assert net.layer("sum").inputs == ["bn1", "conv2"]
    assert net.layer("cat").shape == (8, 32, 32) and net.layer("flat").shape == (8,)
    tops = caffe_memory(net)
    assert [t.kind for t in tops if t.layer == "up"] == ["top", "split", "split"]  # read twice by cat: Caffe splits it


def test_v1_layers_read_with_their_enum_types():
    v1 = RESNET_LIKE.split('layer { name: "conv2"')[0].replace("layer {", "layers {")
    v1 = v1.replace('"Convolution"', "CONVOLUTION").replace('"ReLU"', "RELU")
    v1 = v1.replace('layers { name: "bn1" type: "BatchNorm"', 'layer { name: "bn1" type: "BatchNorm"')
    v1 = "\n".join(line for line in v1.splitlines() if "bn1" not in line and "scale1" not in line)
    net = archc.loads(v1, "v1.prototxt")
    assert [n.op for n in net.layers] == ["input", "conv"] and net.layer("conv1").activation == ("relu", {})
