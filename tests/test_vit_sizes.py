"""specs/vit_b_16.arch at other image sizes (issue 17): its position embedding has one vector per token
of whatever reaches it (`in.length x in.channels`), as torchvision's VisionTransformer(image_size=...)
has, so `--input 3x384x384` is ViT-B/16 at 384 (it was E0305, with a help about a 1x1 conv).

Oracle: torchvision's vit_b_16(image_size=N), weights=None: parameters, MACs (flop counter / 2 on the
math attention backend, grad mode on, batch 1), and at 64x64 its outputs from the generated PyTorch and
NumPy models after a strict load. A sequence has sizes `length` and `channels`; a `param` of a fixed
shape added to a sequence of another length says how to write its shape from the sequence's.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from codegen_util import build, measured
from torchvision.models import vit_b_16

import archc
from archc.cli import main
from archc.diagnostics import ArchError

pytestmark = pytest.mark.usefixtures("one_thread")
SPEC = Path(__file__).resolve().parent.parent / "specs" / "vit_b_16.arch"


@pytest.mark.parametrize("side", [384, 160])
def test_params_and_macs_equal_torchvisions_at_other_sizes(side):
    net = archc.load(SPEC, inputs={"image": (3, side, side)})
    reference = vit_b_16(image_size=side)
    params, _, macs = measured(reference, torch.randn(1, 3, side, side))
    assert (net.totals.params, net.totals.macs) == (params, macs)
    tokens = (side // 16) ** 2 + 1
    assert tuple(net.layer("encoder.pos_embedding").shape) == (tokens, 768)
    assert tuple(reference.encoder.pos_embedding.shape) == (1, tokens, 768)


def test_the_command_line_table_at_384(capsys):
    assert main(["table", str(SPEC), "--input", "3x384x384"]) == 0
    assert "577x768" in capsys.readouterr().out  # 24 x 24 patches and the class token


def test_outputs_equal_torchvisions_at_64x64_in_both_targets():
    torch.manual_seed(0)
    reference = vit_b_16(image_size=64).eval()
    with torch.no_grad():  # the class token, the head and the biases start at zero: give them values
        for p in reference.parameters():
            p.add_(0.02 * torch.randn_like(p))
    net = archc.load(SPEC, inputs={"image": (3, 64, 64)})
    model = build(net, "torch")[0]
    model.load_state_dict(reference.state_dict(), strict=True)
    x = torch.randn(2, 3, 64, 64, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        want = reference(x).numpy()
        np.testing.assert_allclose(model.eval()(x).numpy(), want, rtol=1e-4, atol=1e-4 * np.abs(want).max())
    numpy_model = build(net, "numpy")[0]
    numpy_model.load_state_dict({k: v.numpy() for k, v in reference.state_dict().items()})
    got = numpy_model.eval()(x.numpy())
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4 * np.abs(want).max())


def test_a_sequence_has_a_length_and_channels():
    net = archc.loads(
        "network S {\n  input x: 10x8 sequence\n  param pos: x.length x x.channels\n  add (x, pos)\n}\n", "s.arch"
    )
    assert tuple(net.layer("pos").shape) == (10, 8)
    with pytest.raises(ArchError) as info:
        archc.loads("network S {\n  input x: 10x8 sequence\n  dense: x.height\n}\n", "s.arch")
    (diag,) = info.value.diagnostics
    assert diag.code == "E0212" and diag.help == ["its sizes are length and channels"]


def test_a_param_of_another_length_says_to_write_it_from_the_sequence():
    text = "network P {\n  input x: 10x8 sequence\n  param pos: 9x8\n  add (x, pos)\n}\n"
    with pytest.raises(ArchError) as info:
        archc.loads(text, "p.arch")
    (diag,) = info.value.diagnostics
    assert diag.code == "E0305" and diag.span.line == 4
    assert "1x1 conv" not in diag.help[0]
    assert "`pos` keeps the shape written in the spec" in diag.help[0] and "x.length x x.channels" in diag.help[0]
    written = text.replace("param pos: 9x8", "param pos: x.length x x.channels")  # what the help says to write
    assert tuple(archc.loads(written, "p.arch").layer("add1").shape) == (10, 8)
