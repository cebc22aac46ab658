"""The fast reader of archc/syntax.py gives lark's tree, spans included, or gives up.

`syntax.parse` reads a text with the hand-written reader when it can and with
lark otherwise (every syntax error is lark's). The property: for every text,
the fast reader returns exactly the tree lark's path builds, or None where
lark finds a syntax error. Checked on every bundled spec, every example of
docs/language.md, texts written to hit the lexer's corners (the contextual
keywords `x`, `repeat`, `network`, ..., priorities of FLOAT and DIMS, `//`
and `->`, comments, `;`, CR LF, parentheses), and the fuzzer's generated and
mutated specs.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from fuzz_specs import SPEC_TEXTS, mutants, specs
from hypothesis import HealthCheck, given, settings
from lark import UnexpectedInput

from archc import syntax
from archc.diagnostics import ArchError

ROOT = Path(__file__).resolve().parent.parent
DOCS = (ROOT / "docs" / "language.md").read_text(encoding="utf-8")
EXAMPLES = [m.group(1) for m in re.finditer(r"```arch[^\n]*\n(.*?)```", DOCS, re.S)]


def by_lark(text: str, file: str):
    """What parse gives without the fast reader: the tree, or None on a syntax error."""
    try:
        tree = syntax.parser().parse(text)
    except UnexpectedInput:
        return None
    return syntax.to_ast(tree, file)


def same(text: str, file: str = "spec.arch", valid: bool = False) -> None:
    """Both readers give the same tree, or both reject the text."""
    fast = syntax._read_fast(text, file)
    slow = by_lark(text, file)
    assert fast == slow, f"the fast reader gives {fast}\nand lark {slow}\non:\n{text}"
    if valid:
        assert slow is not None, f"lark rejects:\n{text}"


@pytest.mark.parametrize("name", sorted(SPEC_TEXTS))
def test_bundled_specs(name):
    same(SPEC_TEXTS[name], name, valid=True)


@pytest.mark.parametrize("index", range(len(EXAMPLES)))
def test_documented_examples(index):
    same(EXAMPLES[index], f"example{index}.arch")


CORNERS = [
    "",
    "\n\n",
    "# only a comment",
    "network N {}",
    "network N {\n}\n",
    "network N { relu }",
    "network N {\n  input x: 3x8x8; conv: 4 @ 3x3; relu  # three\n\n  flatten\n  dense: 10 }",
    "network N {\r\n  input x: 3x8x8\r\n  relu\r\n}\r\n",
    "network N {\n  input x: 3x8x8\n  conv x: 4 @ 3x3\n}",  # `x` as names
    "network N {\n  input x: 3x8x8\n  conv c: 4 k x k\n}",  # `x` the keyword, twice
    "network N {\n  input x: 3x8x8\n  conv c: 4 x\n}",
    "network N {\n  input x: 3x8x8\n  conv c: 4 x x\n}",
    "network N {\n  input x: 3x8x8\n  conv c: 3xk\n}",  # 3 then the name xk
    "network N {\n  input x: 3x8x8\n  conv c: 3x3x k\n}",
    "network N {\n  input x: 3x8x8\n  conv c: x=2\n}",
    "network N {\n  input x: 3x8x8\n  conv c: 3 x=2\n}",
    "network N {\n  input x: 3x8x8\n  conv c: 1.5 1. 1e5 1.e-3 2E+2 007\n}",
    "network N {\n  input x: 3x8x8\n  conv c: 16 //2 /2 / 2x1\n}",
    "network N {\n  input x: 3x8x8\n  conv c: a->relu\n}",
    "network N {\n  input x: 3x8x8\n  conv c: a - 1 -> leaky_relu(0.2, k x k)\n}",
    "network N {\n  input x: 3x8x8\n  conv c: (16) @ (3) x (k + 1) pad=(0,1)x(1 , 0)\n}",
    "network N {\n  input x: 3x8x8\n  conv c: ((a)) * (b + c) // 2 % 3 - d\n}",
    "network N {\n  input x: 3x8x8\n  conv c: (a) @ 3x3 (b) (c)\n}",
    "network N {\n  input x: 3x8x8\n  add s (x, a.b.c, in)\n}",
    "network N {\n  input x: 3x8x8\n  conv repeat: 3\n  network block: 2\n  repeat 2 { relu }\n}",
    "network N {\n  repeat n x 2 { relu }\n}",
    "network N {\n  repeat (2) {\n    repeat 2 {relu}}\n}",
    "network N {\n  conv: \n}",
    "network N {\n  conv: (3 x 2)\n}",
    "network N {\n  conv: 16 @\n}",
    "network N {\n  relu -> \n}",
    "network N {\n  relu ->f()\n}",
    "network N {\n  add ()\n}",
    "block b() { relu }\nnetwork N { b }",
    "block b(k=3 x 3, c, d=(1,2)) {\n  relu\n}\n\nnetwork N { b: 1 }",
    'import "lib.arch"\nimport "a b.arch"; network N { relu }',
    "network A { relu }\nnetwork B { relu }",
    "network A { relu } network B { relu }",
    "repeat 2 { relu }",
    "foo",
    'network N {\n  conv: "s"\n}',
    "network N {\n  conv: 3 # c\n  # c\n  ; ;\n  relu\n}",
    "network N {\n  conv: 3\r}",
    "network N {\n  conv: \u00e9\n}",
    "network N {\n  conv:3@3x3/2pad=1->relu\n}",
    "network N {\n  input x: 3x8x8\n  conv c (x): 16 @ 3x3 /2 same bias=false -> relu\n}",
    "network N {\n  x x x: x\n}",
    "network N {\n  a: 1 2 x 3 4\n}",
    "network N {\n  a: 1\n}\n# trailing comment",
    "network N {\n  a: 1\n}   ",
    "network N {\n  a: " + "(" * 50 + "1" + ")" * 50 + "\n}",
]


@pytest.mark.parametrize("text", CORNERS)
def test_corners(text):
    same(text)


@settings(max_examples=300, derandomize=True, deadline=None, suppress_health_check=list(HealthCheck))
@given(specs())
def test_generated_specs(text):
    same(text)


@settings(max_examples=300, derandomize=True, deadline=None, suppress_health_check=list(HealthCheck))
@given(mutants())
def test_mutated_specs(text):
    same(text)


def test_parse_uses_lark_for_errors():
    with pytest.raises(ArchError) as err:
        syntax.parse("network N {\n  conv: (3 x 2)\n}", "bad.arch")
    assert err.value.diagnostics[0].code == "E0101"
