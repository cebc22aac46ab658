"""Diagnostics as a whole: every syntax error of a file in one run, and a bounded report."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

import archc
from archc import ArchError
from archc.diagnostics import MAX_SHOWN, Fix, Span, render_all
from archc.syntax import MAX_SYNTAX_ERRORS

SEVERAL = """network N {
  input x: 1x28x28
  conv c1 8 @ 3x3
  relu
  conv c2: 8 @ 3x3 pad=
  block inner(a b) {
    conv: 4 @ 1x1
  }
  maxpool: 2x2 /
  dense: 10
}
"""


def errors(text: str):
    with pytest.raises(ArchError) as err:
        archc.loads(text, "t.arch")
    return err.value


def test_every_syntax_error_is_reported_in_one_run():
    err = errors(SEVERAL)
    assert [(d.code, d.span.line, d.span.col) for d in err.errors] == [
        ("E0101", 3, 11),  # missing `:`
        ("E0101", 5, 24),  # nothing after `pad=`
        ("E0101", 6, 17),  # parameters without a comma
        ("E0101", 9, 17),  # nothing after `/`
    ]
    assert err.errors[0].help == ["expected `(`, `->`, `:`, `}` or a new line"]


def test_a_line_that_opens_a_body_keeps_its_body_after_an_error():
    # the broken block header is skipped, but its body is still read as a body,
    # so the error inside it is found and nothing is reported about its `}`
    text = "block b(a b) {\n  conv: 4 @ 1x1 pad=\n}\nnetwork N {\n  input x: 3x8x8\n  b\n}\n"
    assert [d.span.line for d in errors(text).errors] == [1, 2]


def test_a_missing_closing_brace_is_one_error_at_the_end():
    err = errors("network N {\n  input x: 3x8x8\n  relu\n")
    assert [(d.span.line, d.message) for d in err.errors] == [(3, "unexpected end of file")]


def test_recovery_stops_at_the_limit():
    text = "network N {\n" + "  conv c 3 @ 3x3\n" * 40 + "}\n"
    assert len(errors(text).errors) == MAX_SYNTAX_ERRORS


def test_the_text_report_shows_the_first_errors_then_how_many_more():
    err = errors("network N {\n" + "  conv c 3 @ 3x3\n" * 40 + "}\n")
    text = render_all(err.diagnostics, err.sources)
    assert text.count("error: unexpected") == MAX_SHOWN
    assert text.endswith(f"... and {MAX_SYNTAX_ERRORS - MAX_SHOWN} more diagnostics")


def test_the_command_line_shows_the_limit_and_json_lists_everything(tmp_path):
    bad = tmp_path / "bad.arch"
    bad.write_text("network N {\n" + "  conv c 3 @ 3x3\n" * 40 + "}\n")
    run = subprocess.run([sys.executable, "-m", "archc", "check", str(bad)], capture_output=True, text=True)
    assert run.returncode == 1
    assert f"... and {MAX_SYNTAX_ERRORS - MAX_SHOWN} more diagnostics" in run.stderr
    assert "Traceback" not in run.stderr
    run = subprocess.run(
        [sys.executable, "-m", "archc", "check", str(bad), "--format", "json"], capture_output=True, text=True
    )

    diags = json.loads(run.stdout)["diagnostics"]
    assert len(diags) == MAX_SYNTAX_ERRORS
    assert set(diags[0]) == {
        "file",
        "line",
        "col",
        "end_line",
        "end_col",
        "severity",
        "code",
        "message",
        "help",
        "fixes",
    }


# -- the seed mistakes ------------------------------------------------------------------


MNIST_PAD_1 = """network MnistCNN {
  input   image: 1x28x28
  conv    conv1: 8 @ 3x3 pad=1
  bn      bn1 -> relu
  maxpool pool1: 2x2
  conv    conv2: 32 @ 5x5 pad=1
  bn      bn2 -> relu
  maxpool pool2: 2x2
  flatten
  dense   fc1: 600 in=1568 -> relu
  dense   fc2: 10
}
"""


def test_mnist_with_a_5x5_conv_padded_by_1_names_the_conv_and_the_padding_that_fits():
    (diag,) = errors(MNIST_PAD_1).errors
    assert diag.code == "E0218"
    # 28 -> 28 -> 14 -> (14+2-5)+1 = 12 -> 6: 32x6x6 = 1152, not the 32x7x7 = 1568 the dense layer expects
    assert diag.message == "dense fc1 expects 1568 inputs (in=1568), but flatten flatten1 gives 32x6x6 = 1152"
    assert (diag.span.line, diag.span.col, diag.span.end_col) == (10, 20, 27)  # the in=1568
    assert diag.help[0] == "conv conv2 turns 14x14 into 12x12 with pad=1; pad=2 keeps 14x14 and gives 1568"
    assert diag.help[-1] == "or, if 1152 is what you want, write in=1152"


LENET_28 = """network LeNet5 {
  input   image: 1x28x28
  conv    C1: 6 @ 5x5 -> tanh
  avgpool S2: 2x2 /2 -> tanh
  conv    C3: 16 @ 5x5 -> tanh
  avgpool S4: 2x2 /2 -> tanh
  flatten
  dense   F5: 120 in=400 -> tanh
  dense   F6: 84 -> tanh
}
"""


def test_lenet_on_a_28x28_input_says_the_input_should_be_32x32():
    (diag,) = errors(LENET_28).errors
    # figures.md: LeNet-5 takes 1x32x32 and flattens 16x5x5 = 400; at 28x28 it is 16x4x4 = 256
    assert diag.message == "dense F5 expects 400 inputs (in=400), but flatten flatten1 gives 16x4x4 = 256"
    assert diag.help == [
        "conv C1 turns 28x28 into 24x24 with pad=0; pad=2 keeps 28x28 and gives 400",  # MNIST padded to 32x32
        "with an input of 32x32 (not 28x28) it would get 400: is that the size?",
        "or, if 256 is what you want, write in=256",
    ]


def test_a_matching_in_is_silent_and_changes_nothing():
    net = archc.loads(LENET_28.replace("1x28x28", "1x32x32"), "t.arch")
    assert net.layer("F5").params == 400 * 120 + 120 and not net.warnings


def test_the_error_leaves_no_trial_shapes_behind_and_later_errors_are_still_found():
    text = MNIST_PAD_1.replace("dense   fc2: 10", "dense   fc2: 10\n  conv    bad (pool2): 4 @ 9x9")
    err = errors(text)
    assert [d.code for d in err.errors] == ["E0218", "E0302"]
    assert "input 6 is smaller than the kernel 9" in err.errors[1].message  # 6x6 again, not a trial size


def test_alexnet_at_224_with_an_unpadded_11x11_stride_4_conv_warns_with_the_fix():
    net = archc.loads("network A {\n  input image: 3x224x224\n  conv conv1: 96 @ 11x11 /4\n}\n", "a.arch")
    (warning,) = net.warnings
    assert warning.code == "W0301"
    assert warning.message == (
        "conv conv1 does not divide evenly: (224-11)/4+1 = 54.25, so 1 pixel at the end is never used"
    )
    # (1,2) alone would mean 1 row and 2 columns on both sides of an image: per side is (1,2)x(1,2)
    assert warning.help == [
        "pad=(1,2)x(1,2) makes it exact: (224+3-11)/4+1 = 55, output 96x55x55",
        "an input `image` of 3x227x227 makes it exact: (227-11)/4+1 = 55, output 96x55x55",
    ]


def test_a_layer_reading_itself_and_a_forward_reference_each_have_their_message():
    text = "network N {\n  input x: 3x8x8\n  conv a (b): 4 @ 1x1\n  conv b (a): 4 @ 1x1\n  conv c (c): 4 @ 1x1\n}\n"
    forward, itself = errors(text).errors
    assert (forward.code, forward.message, forward.span.line, forward.span.col) == (
        "E0203",
        "`b` is used before it is defined",
        3,
        11,
    )
    assert forward.help[1] == "if `b` also reads this layer, the two form a cycle, which a network cannot have"
    assert (itself.code, itself.message, itself.span.line) == (
        "E0203",
        "`c` reads itself: a layer cannot be its own input",
        5,
    )


def test_nesting_and_numbers_beyond_the_limits_are_e0213_before_parsing():
    deep = "network N {\n  input x: 3x8x8\n  conv: 4 @ " + "(" * 150 + "3" + ")" * 150 + "\n}\n"
    (diag,) = errors(deep).errors
    assert (diag.code, diag.span.line, diag.span.col) == ("E0213", 3, 112)  # the 100th "(" is 101 deep, with "{"
    assert diag.message == "brackets and braces nest more than 100 deep"
    (diag,) = errors("network N {\n  input x: 3x8x8\n  conv: 4 @ 3x" + "9" * 5000 + "\n}\n").errors
    assert (diag.code, diag.span.col) == ("E0213", 15)  # where the digits start, after "3x"
    assert diag.message == "a number of 5,000 digits is more than archc reads"


def test_a_10000_term_expression_parses_without_recursion():
    net = archc.loads("network N {\n  input x: 3x8x8\n  conv: 4 @ 3" + " + 0" * 10_000 + "\n}\n", "t.arch")
    assert net.layers[1].geom["kernel"] == (3, 3)


def test_fix_replaces_and_inserts_at_its_span():
    source = "network N {\r\n  bn: 1e-3\n}\n"
    assert Fix(Span("f", 2, 7, 2, 11), "eps=1e-3").apply(source) == "network N {\r\n  bn: eps=1e-3\n}\n"
    assert Fix(Span("f", 2, 11, 2, 11), " momentum=0.1").apply(source) == "network N {\r\n  bn: 1e-3 momentum=0.1\n}\n"
    assert Fix(Span("f", 1, 11, 3, 2), "{}").apply(source) == "network N {}\n"
