"""The bundled spec library (specs/*.arch) against published figures.

Every expected number below is restated from /work/shared/reference/figures.md
("Networks with known totals", "Per-layer figures worth a test" and "Tables
from the source texts"), which were measured independently of archc
(PyTorch / torchvision, or the source texts). The small examples that have no
published totals are checked against equivalent PyTorch modules instead.
"""

from __future__ import annotations

from functools import cache
from pathlib import Path

import pytest

import archc

SPECS = Path(__file__).resolve().parent.parent / "specs"
SPEC_FILES = sorted(p.name for p in SPECS.glob("*.arch"))

# figures.md, "Networks with known totals": spec -> (params, MACs), batch 1.
FIGURES = {
    "lenet5.arch": (61_706, 416_520),
    "mnist_cnn.arch": (954_002, 2_257_648),
    "minivgg_cifar10.arch": (2_169_770, 26_579_968),
    "alexnet.arch": (61_100_840, 714_188_480),
    "alexnet_caffe.arch": (60_965_224, 724_406_816),
    "vgg16.arch": (138_357_544, 15_470_264_320),
    "resnet18.arch": (11_689_512, 1_814_073_344),
    "resnet50.arch": (25_557_032, 4_089_184_256),
    "googlenet.arch": (6_624_904, 1_498_376_192),
    "mobilenet_v2.arch": (3_504_872, 300_774_272),
    "gpt2.arch": (124_439_808, 145_824_153_600),  # transformers' GPT2LMHeadModel, eager attention (issue 17)
}

# Measured on torchvision 0.29's models outside this project, as issue 15 gives them: params;
# BN buffers without num_batches_tracked; MACs = torch.utils.flop_counter's flops / 2 at batch 1.
TORCHVISION_FIGURES = {
    "efficientnet_b0.arch": (5_288_548, 42_016, 385_814_752),
    "mobilenet_v3_small.arch": (2_542_856, 12_112, 56_510_400),
    "regnet_y_400mf.arch": (4_344_144, 27_152, 401_842_848),
    "shufflenet_v2_x1_0.arch": (2_278_604, 16_180, 144_907_992),
    "convnext_tiny.arch": (28_589_128, 0, 4_455_531_264),
    "vit_b_16.arch": (86_567_656, 0, 17_563_828_224),  # issue 17; every matmul counted (math attention backend)
    "bert_base.arch": (109_482_240, 0, 48_318_971_904),  # figures.md: transformers' BertModel, eager attention
}

# Small examples without published totals; checked against PyTorch below.
SEQUENTIAL_EXAMPLES = {"conv1d_example.arch", "conv3d_example.arch", "deconv_example.arch"}
EXAMPLES = SEQUENTIAL_EXAMPLES | {
    "inception_module.arch",
    "lstm_classifier.arch",
    "lstm_text_classifier.arch",
    "lenet_digits.arch",
    "transformer_small.arch",
}  # lstm: test_lstm_classifier.py, test_lstm_text.py; transformer_small: test_encoder_decoder.py

# Specs that are meant to trigger warnings (none of the bundled ones is).
EXPECTED_WARNINGS: dict[str, int] = {}


@cache
def load(name: str, **inputs) -> archc.Network:
    return archc.load(SPECS / name, inputs={k: tuple(v) for k, v in inputs.items()} or None)


def warnings_at(net: archc.Network, layer: str) -> list[archc.Diagnostic]:
    """Warnings reported on the line that defines `layer`."""
    span = net.layer(layer).span
    return [w for w in net.warnings if w.span is not None and (w.span.file, w.span.line) == (span.file, span.line)]


# -- the library as a whole -----------------------------------------------------------


def test_every_spec_is_checked():
    assert set(SPEC_FILES) == set(FIGURES) | set(TORCHVISION_FIGURES) | EXAMPLES


@pytest.mark.parametrize("name", SPEC_FILES)
def test_spec_loads_without_errors(name):
    net = load(name)
    assert all(node.shape is not None for node in net.layers)
    assert net.totals.params > 0 and net.totals.macs > 0


@pytest.mark.parametrize("name", SPEC_FILES)
def test_spec_warnings(name):
    messages = [w.message for w in load(name).warnings]
    assert len(messages) == EXPECTED_WARNINGS.get(name, 0), messages


@pytest.mark.parametrize("name", sorted(FIGURES))
def test_params_and_macs_match_published_figures(name):
    params, macs = FIGURES[name]
    totals = load(name).totals
    assert (totals.params, totals.macs) == (params, macs)
    assert totals.flops == 2 * macs


@pytest.mark.parametrize("name", sorted(TORCHVISION_FIGURES))
def test_params_buffers_and_macs_match_torchvision(name):
    totals = load(name).totals
    assert (totals.params, totals.buffers, totals.macs) == TORCHVISION_FIGURES[name]


# -- per-layer figures ------------------------------------------------------------------


def test_lenet5_layer_table():
    # figures.md, LeNet-5 table: feature map and activation size per layer.
    expected = [
        ("input", (1, 32, 32), 1_024),
        ("conv", (6, 28, 28), 4_704),
        ("avgpool", (6, 14, 14), 1_176),
        ("conv", (16, 10, 10), 1_600),
        ("avgpool", (16, 5, 5), 400),
        ("flatten", (400,), 400),
        ("dense", (120,), 120),
        ("dense", (84,), 84),
        ("dense", (10,), 10),
    ]
    layers = load("lenet5.arch").layers
    assert [(n.op, n.shape, n.activations) for n in layers] == expected


def test_minivgg_feature_maps():
    # figures.md, MiniVGG table: 32x32x32 after the first convs, then 16x16x32, 16x16x64, 8x8x64.
    net = load("minivgg_cifar10.arch")
    assert net.layer("stage1.conv1").shape == (32, 32, 32)
    assert net.layer("stage1.pool").shape == (32, 16, 16)
    assert net.layer("stage2.conv1").shape == (64, 16, 16)
    assert net.layer("stage2.pool").shape == (64, 8, 8)
    assert net.layer("fc1").shape == (512,)


def test_vgg16_activation_memory():
    # figures.md: input + every conv, pool and dense output = 15,237,608 elements (58.1 MiB float32).
    totals = load("vgg16.arch").totals
    assert totals.activations == 15_237_608
    assert round(totals.activation_bytes / 2**20, 1) == 58.1


def test_alexnet_unpadded_11x11_stride4_on_224_gives_54_and_warns():
    net = load("alexnet_caffe.arch", image=(3, 224, 224))
    assert net.layer("conv1").shape == (96, 54, 54)
    [warning] = warnings_at(net, "conv1")
    assert "54.25" in warning.message


def test_alexnet_unpadded_11x11_stride4_on_227_gives_55_without_warning():
    net = load("alexnet_caffe.arch", image=(3, 227, 227))
    assert net.layer("conv1").shape == (96, 55, 55)
    assert warnings_at(net, "conv1") == []


def test_alexnet_torchvision_pads_224_to_55():
    net = load("alexnet.arch")
    assert net.layer("features.0").shape == (64, 55, 55)
    assert net.layer("features.12").shape == (256, 6, 6)


def test_stride3_3x3_conv_on_7x7_is_not_exact():
    net = archc.loads("network T {\n  input x: 1x7x7\n  conv c: 1 @ 3x3 /3\n}")
    assert net.layer("c").shape == (1, 2, 2)
    [warning] = net.warnings
    assert "2.33" in warning.message


def test_stride3_3x3_conv_on_7x7_with_padding_1_is_exact():
    net = archc.loads("network T {\n  input x: 1x7x7\n  conv c: 1 @ 3x3 /3 pad=1\n}")
    assert net.layer("c").shape == (1, 3, 3)
    assert net.warnings == []


def test_conv1d_length_14_filter_2_stride_2_gives_7():
    net = load("conv1d_example.arch")
    assert net.layer("signal").shape == (1, 14)
    assert net.layer("conv1").shape[1:] == (7,)


def test_deconv_kernel3_stride2_pad1_on_3x3_gives_5x5():
    net = load("deconv_example.arch")
    assert net.layer("code").shape[1:] == (3, 3)
    assert net.layer("up1").shape[1:] == (5, 5)


def test_conv3d_example_keeps_depth_through_the_first_pool():
    net = load("conv3d_example.arch")
    assert len(net.layer("clip").shape) == 4  # C x D x H x W
    assert net.layer("pool1").shape == (32, 16, 32, 32)
    assert net.layer("pool3").shape == (128, 4, 8, 8)


# -- the small examples against PyTorch ---------------------------------------------------------


def _torch_examples():
    nn = pytest.importorskip("torch.nn")
    return {
        "conv1d_example.arch": nn.Sequential(
            nn.Conv1d(1, 4, 2, stride=2),
            nn.ReLU(),
            nn.Conv1d(4, 8, 3, padding=1),
            nn.ReLU(),
            nn.AdaptiveMaxPool1d(1),
            nn.Flatten(),
            nn.Linear(8, 2),
        ),
        "conv3d_example.arch": nn.Sequential(
            nn.Conv3d(3, 32, 3, padding=1),
            nn.ReLU(),
            nn.MaxPool3d((1, 2, 2)),
            nn.Conv3d(32, 64, 3, padding=1),
            nn.ReLU(),
            nn.MaxPool3d(2),
            nn.Conv3d(64, 128, 3, padding=1),
            nn.ReLU(),
            nn.MaxPool3d(2),
            nn.AdaptiveAvgPool3d(1),
            nn.Flatten(),
            nn.Linear(128, 10),
        ),
        "deconv_example.arch": nn.Sequential(
            nn.ConvTranspose2d(64, 32, 3, stride=2, padding=1, bias=False),
            nn.BatchNorm2d(32),
            nn.ReLU(),
            nn.ConvTranspose2d(32, 16, 4, stride=2, padding=1, bias=False),
            nn.BatchNorm2d(16),
            nn.ReLU(),
            nn.ConvTranspose2d(16, 1, 4, stride=2, padding=1),
            nn.Sigmoid(),
        ),
    }


@pytest.mark.parametrize("name", sorted(SEQUENTIAL_EXAMPLES))
def test_example_matches_pytorch(name):
    torch = pytest.importorskip("torch")
    from torch.utils.flop_counter import FlopCounterMode

    model = _torch_examples()[name].eval()
    net = load(name)
    [source] = [n for n in net.layers if n.op == "input"]
    x = torch.zeros(1, *source.shape)
    shapes = []  # output shape of every module but the activations, which archc fuses (`-> relu`)
    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        for module in model:
            x = module(x)
            if not isinstance(module, torch.nn.ReLU | torch.nn.Sigmoid):
                shapes.append(tuple(x.shape[1:]))
    assert [n.shape for n in net.layers if n.op != "input"] == shapes
    assert net.totals.params == sum(p.numel() for p in model.parameters())
    assert net.totals.macs == counter.get_total_flops() // 2


def test_inception_module_matches_torchvisions_inception3a():
    """torchvision's Inception(192, 64, 96, 128, 16, 32, 32) written out; BasicConv2d: conv, no bias, BN eps 1e-3."""
    torch = pytest.importorskip("torch")
    from torch import nn
    from torch.utils.flop_counter import FlopCounterMode

    def basic(cin, cout, k=1, pad=0):
        return nn.Sequential(
            nn.Conv2d(cin, cout, k, padding=pad, bias=False), nn.BatchNorm2d(cout, eps=1e-3), nn.ReLU()
        )

    branches = nn.ModuleList(
        [
            basic(192, 64),
            nn.Sequential(basic(192, 96), basic(96, 128, 3, 1)),
            nn.Sequential(basic(192, 16), basic(16, 32, 3, 1)),
            nn.Sequential(nn.MaxPool2d(3, 1, 1, ceil_mode=True), basic(192, 32)),
        ]
    ).eval()
    x = torch.zeros(1, 192, 28, 28)
    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        out = torch.cat([b(x) for b in branches], 1)
    net = load("inception_module.arch")
    assert net.layers[-1].shape == tuple(out.shape[1:]) == (256, 28, 28)
    assert net.totals.params == sum(p.numel() for p in branches.parameters())
    assert net.totals.macs == counter.get_total_flops() // 2
