"""lstm and gru used wrongly: located errors with a code and, where one edit fixes them, the edit.

Every fix is applied to the spec and the spec analysed again (test_hostile_shapes.check_fixes):
the diagnostic must be gone, no other may appear, and the layer must have the output the help
promises, in archc and in the generated torch module.
"""

from __future__ import annotations

import warnings

import pytest
import torch
from test_hostile_shapes import check_fixes, diagnostics

import archc


def spec(*lines: str, shape: str = "8x5") -> str:
    return "network N {\n  input x: " + shape + "\n" + "".join(f"  {line}\n" for line in lines) + "}\n"


@pytest.mark.parametrize("kind", ["lstm", "gru"])
def test_a_sequence_with_its_features_first_gets_a_permute(kind):
    text = spec(f"{kind} r: 4 bidirectional")
    (error,) = diagnostics(text)
    assert error.code == "E0304" and (error.span.line, error.span.col) == (3, 3)
    assert "gets 8x5 with the features first" in error.message
    assert error.help == ["`permute r_in: 1x0` before it gives it 5 steps of 8 features, output 5x8"]
    assert error.fixes[0].apply(text) == spec(f"permute r_in: 1x0\n  {kind} r: 4 bidirectional")
    assert check_fixes(text) == 1


@pytest.mark.parametrize("kind", ["lstm", "gru"])
def test_an_image_gets_its_positions_as_steps(kind):
    text = spec("conv c: 6 @ 3x3", f"{kind} r: 5 last", shape="3x6x7")
    (error,) = diagnostics(text)
    assert error.code == "E0301" and error.span.line == 4
    assert error.message.endswith("but gets 6x4x5")
    assert error.help == [
        "`reshape r_in: 6x20` then `permute r_seq: 1x0` before it reads its 20 positions as steps of 6 "
        "features, output 5"
    ]
    fixed = error.fixes[0].apply(text)
    assert fixed == spec(
        "conv c: 6 @ 3x3", "reshape r_in: 6x20", "permute r_seq: 1x0", f"{kind} r: 5 last", shape="3x6x7"
    )
    assert check_fixes(text) == 1


def test_a_vector_or_a_channels_last_map_says_what_a_sequence_is():
    (error,) = diagnostics(spec("flatten", "lstm r: 4"))
    assert error.code == "E0301" and not error.fixes
    assert error.help[0].startswith("a vector has no steps: apply it before `flatten`")
    (error,) = diagnostics(spec("permute p: 1x2x0", "gru r: 4", shape="3x4x4"))
    assert error.code == "E0301" and not error.fixes
    assert error.help == ["make it L x F, the steps first and the features last"]


@pytest.mark.parametrize(
    ("statement", "param", "words"),
    [
        ("lstm r: 0", "0", "units must be at least 1, not 0"),
        ("gru r: 4 layers=0", "layers=0", "layers must be at least 1, not 0"),
        ("gru r: 4 layers=2 dropout=1", "dropout=1", "dropout must be in [0, 1), not 1"),
        ("lstm r: 4 layers=2 dropout=(0-0.5)", "dropout=(0-0.5)", "dropout must be in [0, 1), not -0.5"),
        ("lstm r: 4 proj=4", "proj=4", "proj must be from 0 (none) to 3, smaller than the 4 units, not 4"),
        ("lstm r: 4 proj=(0-1)", "proj=(0-1)", "proj must be from 0 (none) to 3"),
    ],
)
def test_bad_sizes_are_located_at_their_argument(statement, param, words):
    text = spec("permute p: 1x0", statement)
    (error,) = diagnostics(text)
    assert error.code == "E0205" and words in error.message
    line = text.splitlines()[error.span.line - 1]
    assert line[error.span.col - 1 : error.span.end_col - 1] == param
    check_fixes(text)  # proj=0, where offered, is applied and checked


def test_torch_refuses_what_archc_refuses():
    with pytest.raises(ValueError, match="proj_size"):
        torch.nn.LSTM(8, 4, proj_size=4)
    with pytest.raises(ValueError, match="dropout"):
        torch.nn.GRU(8, 4, num_layers=2, dropout=1.5)
    with pytest.raises((ValueError, RuntimeError)):
        torch.nn.GRU(8, 4, num_layers=0)


@pytest.mark.parametrize("kind", ["lstm", "gru"])
def test_dropout_with_one_layer_warns_as_torch_does_with_two_fixes(kind):
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        getattr(torch.nn, kind.upper())(8, 4, dropout=0.3)
    assert any("dropout" in str(w.message) and "num_layers" in str(w.message) for w in caught)
    text = spec("permute p: 1x0", f"{kind} r: 4 dropout=0.3")
    (warning,) = diagnostics(text)
    assert warning.code == "W0303" and warning.severity == "warning" and warning.span.line == 4
    assert warning.help[1:] == [
        "layers=2 puts the dropout between two layers, output 5x4",
        "dropout=0 drops nothing, as the layer does now, output 5x4",
    ]
    assert [f.apply(text) for f in warning.fixes] == [
        text.replace("dropout=0.3", "dropout=0.3 layers=2"),
        text.replace("dropout=0.3", "dropout=0"),
    ]
    assert check_fixes(text) == 2


def test_a_misspelt_recurrent_layer_is_suggested():
    (error,) = diagnostics(spec("permute p: 1x0", "lstn r: 4"))
    assert error.code == "E0201" and "lstm" in " ".join(error.help)


def test_huge_sizes_are_refused_or_counted_by_formula():
    """A stack above a network's 200,000 layers is E0205 at `layers=`; a sequence of 10^9 steps is counted
    (memory, MACs) by formula, not step by step: the training figures come at once and grow with the steps."""
    (error,) = diagnostics(spec("permute p: 1x0", "gru r: 4 layers=4611686018427387904"))
    assert error.code == "E0205" and "more than a network may have (200,000)" in error.message
    figures = []
    for steps in (10**9, 2 * 10**9):
        net = archc.loads(spec("permute p: 1x0", "lstm r: 4 layers=3 bidirectional", shape=f"8x{steps}"))
        figures.append((net.layer("r").macs, net.training_memory(batch=1, device="cpu").layers["r"]))
    (macs, saved), (macs2, saved2) = figures
    assert macs2 == 2 * macs
    assert saved2 > 1.99 * saved
