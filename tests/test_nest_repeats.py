"""Issue 16, item 1: a repeat reads as a person writes one. Equal blocks in a row of an nn.Sequential are
built by one comprehension (`nn.Sequential(*[Gpt2Block() for _ in range(12)])`, as HuggingFace's GPT-2
builds `h`, torchvision's ResNet its layers), in both targets; a block that repeats a block under names
of its own (ViT's `encoder_layer_1` ... `encoder_layer_11`) is an nn.Sequential whose __init__ builds
them in a loop, as torchvision's Encoder. The outside truth: torchvision's and torch's own modules, whose
state_dict the generated modules load strictly and whose outputs they give."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
import torchvision
from codegen_util import build

import archc
from archc.codegen import generate

SPECS = Path(__file__).resolve().parent.parent / "specs"


def test_equal_blocks_in_a_row_are_one_comprehension_in_both_targets():
    net = archc.load(SPECS / "resnet50.arch", inputs={"image": (3, 64, 64)})
    model, gen, _ = build(net, "torch")
    assert "Bottleneck(512, 256, 2), *[Bottleneck(1024, 256, 1) for _ in range(5)]" in gen.code
    assert "Bottleneck(64, 64, 1), Bottleneck(256, 64, 1), Bottleneck(256, 64, 1)" in gen.code  # two: as they are
    numpy_code = generate(net, "numpy").code
    assert (
        "    Bottleneck(rng, 512, 256, 2),\n            *[Bottleneck(rng, 1024, 256, 1) for _ in range(5)],"
        in numpy_code
    )
    reference = torchvision.models.resnet50(weights=None).eval()
    model.load_state_dict(reference.state_dict(), strict=True)
    x = torch.randn(1, 3, 64, 64, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        assert torch.equal(model.eval()(x), reference(x))
    numpy_model = build(net, "numpy")[0]
    numpy_model.load_state_dict({k: v.numpy() for k, v in reference.state_dict().items()})
    np.testing.assert_allclose(numpy_model(x.numpy()), reference(x).detach().numpy(), rtol=1e-4, atol=1e-4)


def test_gpt2s_blocks_are_one_comprehension():
    code = generate(archc.load(SPECS / "gpt2.arch"), "torch").code
    assert "        self.h = nn.Sequential(*[Gpt2Block() for _ in range(12)])\n" in code
    numpy_code = generate(archc.load(SPECS / "gpt2.arch"), "numpy").code
    assert "        self.h = Sequential(*[Gpt2Block(rng) for _ in range(12)])\n" in numpy_code


def test_vits_encoder_layers_are_built_in_a_loop_and_load_torchvisions():
    net = archc.load(SPECS / "vit_b_16.arch")
    model, gen, _ = build(net, "torch")
    assert "class Layers(nn.Sequential):" in gen.code
    assert '        for i in range(n - 1):\n            self.add_module(f"encoder_layer_{i + 1}", ' in gen.code
    assert "encoder_layer_5" not in gen.code
    reference = torchvision.models.vit_b_16(weights=None).eval()
    model.load_state_dict(reference.state_dict(), strict=True)
    x = torch.randn(1, 3, 224, 224, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        assert torch.allclose(model.eval()(x), reference(x), rtol=0, atol=1e-5)
