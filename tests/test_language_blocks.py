"""Issue 15, the language's part: statements over several lines, activations as block
parameters.

Every spec here is checked by both readers (the fast one and lark) where it parses,
and every fix a diagnostic proposes is applied and the result analysed again.
"""

from __future__ import annotations

import pytest
import torch
from lark import UnexpectedInput

import archc
from archc import syntax
from archc.diagnostics import ArchError


def both_readers(text: str):
    """The tree of `text`, after checking the fast reader and lark agree on it."""
    fast = syntax._read_fast(text, "t.arch")
    slow = syntax.to_ast(syntax.parser().parse(text), "t.arch")
    assert fast == slow
    return slow


def errors(text: str) -> list:
    with pytest.raises(ArchError) as info:
        archc.loads(text, "t.arch")
    return [d for d in info.value.diagnostics if d.severity == "error"]


def fixed(text: str, diag) -> archc.analysis.Network:
    """`text` with the diagnostic's fixes applied, analysed: it must have no error left."""
    assert diag.fixes, f"{diag.message} proposes no edit"
    for fix in sorted(diag.fixes, key=lambda f: (f.span.line, f.span.col), reverse=True):
        text = fix.apply(text)
    return archc.loads(text, "t.arch")


# -- 1. statements over several lines ------------------------------------------------------

INCEPTION_E_CONCAT = """network SixInputs {
  input x: 8x8x8
  conv a (x): 320 @ 1x1
  conv b (x): 384 @ 1x1
  conv c (x): 384 @ 1x1
  conv d (x): 384 @ 1x1
  conv e (x): 384 @ 1x1
  conv f (x): 192 @ 1x1
  concat out%s
}
"""


def test_a_concat_of_six_inputs_splits_over_lines():
    one_line = archc.loads(INCEPTION_E_CONCAT % " (a, b, c, d, e, f)")
    split = INCEPTION_E_CONCAT % " (a, b,   # the 1x1 branches\n\n      c, d,\n      e,\n      f\n  )"
    both_readers(split)
    net = archc.loads(split)
    assert net.graph.nodes["out"].inputs == list("abcdef")
    assert net.graph.nodes["out"].shape == one_line.graph.nodes["out"].shape
    # torch's channel count for the same concat
    x = torch.zeros(1, 8, 8, 8)
    widths = (320, 384, 384, 384, 384, 192)
    expected = torch.cat([torch.nn.Conv2d(8, w, 1)(x) for w in widths], 1).shape[1:]
    assert net.graph.nodes["out"].shape[-3:] == tuple(expected)


@pytest.mark.parametrize(
    "text",
    [
        "network N {\n  input x: 3x8x8\n  conv: (4 +\n    4) @ 3x3 pad=(1,\n 1)\n}\n",
        "network N {\n  input x: 3x8x8\n  relu r (\n    x\n  )\n}\n",
        "block b(c) { conv: c @ 1x1 }\nnetwork N {\n  input x: 3x8x8\n  b: (2 *\n\n  # a comment\n  3)\n}\n",
        "network N {\n  input x: 3x8x8\r\n  relu (x,\r\n x)\n}\n",  # parses; the expander counts inputs
    ],
)
def test_a_line_break_inside_parentheses_continues(text):
    both_readers(text)


@pytest.mark.parametrize(
    "text",
    [
        "network N {\n  input a: 3\n  add (a;\n  a)\n}\n",  # `;` still ends a statement
        "network N {\n  input a: 3x8x8\n  conv: 4 @\n  3x3\n}\n",  # outside parentheses it ends
        "network N {\n  input a: 3x8x8\n  conv: 4 @ 3x3\n  /2\n}\n",
        "network N (\n) {\n  input a: 3\n}\n",
        "network N\n {\n  input a: 3\n}\n",
    ],
)
def test_a_line_break_outside_parentheses_ends_the_statement(text):
    assert syntax._read_fast(text, "t.arch") is None
    with pytest.raises(UnexpectedInput):
        syntax.parser().parse(text)


SPLIT = [
    # the line break ends an unfinished statement
    ("network N {\n  input x: 3x8x8\n  conv: 4 @\n      3x3 /2\n  relu\n}\n", (3, 12), {"stride": 2}),
    # the next line does not read as a statement
    ("network N {\n  input x: 3x8x8\n  conv: 4 @ 3x3\n      /2 -> relu\n  relu\n}\n", (4, 7), {"stride": 2}),
    ("network N {\n  input x: 3x8x8\n  conv: 4 @ 3x3\n      -> relu\n  relu\n}\n", (4, 7), {}),
    ("network N {\r\n  input x: 3x8x8\r\n  conv: 4 @ 3x3 \r\n  pad=1\r\n}\r\n", (4, 6), {"padding": 1}),
]


@pytest.mark.parametrize("text, where, torch_args", SPLIT)
def test_a_split_statement_says_that_statements_end_at_the_line(text, where, torch_args):
    (diag,) = errors(text)  # the rest of the statement is not a second error
    assert diag.code == "E0101"
    assert (diag.span.line, diag.span.col) == where
    assert "continues on the next line only inside parentheses" in diag.help[0]
    net = fixed(text, diag)
    # torch's shape for the joined statement
    conv = torch.nn.Conv2d(3, 4, 3, **torch_args)
    assert net.layers[-1].shape[-3:] == tuple(conv(torch.zeros(1, 3, 8, 8)).shape[1:])


@pytest.mark.parametrize(
    "text",
    [
        "network N {\n  input x: 3x8x8\n  conv: 4 @ 3x3; /2\n}\n",  # a `;` ends it on purpose
        "network N {\n  input x: 3x8x8\n  conv: 4 @ 3x3  # kernel\n  /2\n}\n",  # a comment joining would swallow
        "network N {\n  input x: 3x8x8\n  conv: 4 @\n\n  3x3\n}\n",  # a blank line between
        "network N {\n  input x: 3x8x8\n  conv: 4 @ 3x3\n  / / 2\n}\n",  # joined, it still does not parse
    ],
)
def test_no_join_is_proposed_where_it_would_not_help(text):
    diags = errors(text)
    assert diags[0].code == "E0101"
    assert not any("inside parentheses" in h for d in diags for h in d.help)
