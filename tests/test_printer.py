"""archc.printer: any syntax tree back to `.arch` text that analyses to the same network."""

from __future__ import annotations

import pytest
from conftest import SPECS

import archc
from archc.printer import format_module
from archc.syntax import parse

SPEC_FILES = sorted(SPECS.glob("*.arch"))


def figures(net):
    return [(n.name, n.op, n.inputs, n.shape, n.params, n.buffers, n.macs, n.activation) for n in net.layers]


@pytest.mark.parametrize("path", SPEC_FILES, ids=lambda p: p.name)
def test_every_spec_prints_back_to_the_same_network(path):
    text = path.read_text()
    printed = format_module(parse(text, str(path)))
    again = archc.loads(printed, str(path), base=path.parent)
    assert figures(again) == figures(archc.load(path))
    assert format_module(parse(printed, "again.arch")) == printed  # printing is a fixed point


def test_the_printer_writes_what_a_person_writes():
    text = """
block residual(ch, stride=1, out=ch * 2) {
  conv a: ch @ 3x3 /stride pad=1 bias=false
  bn -> relu
  conv short (in): out @ 1x1 /(stride + 0) pad=(0,1)x(0,1)
  add (bn1, short)
}
network N {
  input x: 16x32x32
  repeat 2 { residual r: 16 stride=2 }
  maxpool: 3x3 /2 ceil
  conv: 4 @ k x k
}
"""
    printed = format_module(parse(text, "n.arch"), notes={"x": ["the input"]}, after={"r": "unused"})
    assert "block residual(ch, stride=1, out=ch * 2) {" in printed
    assert "  conv a: ch @ 3x3 /stride pad=1 bias=false" in printed
    assert "  bn -> relu" in printed
    assert "  conv short (in): out @ 1x1 /(stride + 0) pad=(0,1)x(0,1)" in printed
    assert "  maxpool: 3x3 /2 ceil" in printed and "  conv: 4 @ k x k" in printed
    assert "  # the input\n  input   x: 16x32x32" in printed  # types aligned
    assert "  repeat 2 {\n    residual r: 16 /2  # unused\n  }" in printed
    assert format_module(parse(printed, "n.arch")) == format_module(parse(text, "n.arch"))
