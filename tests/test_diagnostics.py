"""Diagnostics as a whole: every syntax error of a file in one run, and a bounded report."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

import archc
from archc import ArchError
from archc.diagnostics import MAX_SHOWN, render_all
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
    assert set(diags[0]) == {"file", "line", "col", "end_line", "end_col", "severity", "code", "message", "help"}
