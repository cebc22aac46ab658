"""The language's constructs: what they expand to (names, connections, evaluated arguments)."""

import pytest

import archc
from archc import ArchError


def load(text: str):
    return archc.loads(text, "t.arch")


def names(net):
    return [layer.name for layer in net.layers]


def test_sequential_layers_take_the_previous_output_and_get_readable_names():
    net = load("network N {\n input x: 3x8x8\n conv: 4 @ 3x3\n relu\n conv: 4 @ 3x3; relu\n}")
    assert names(net) == ["x", "conv1", "relu1", "conv2", "relu2"]
    assert [layer.inputs for layer in net.layers] == [[], ["x"], ["conv1"], ["relu1"], ["conv2"]]


def test_generated_names_never_take_an_explicit_name():
    net = load("network N {\n input x: 3x8x8\n conv: 4 @ 1x1\n conv conv1: 4 @ 1x1\n}")
    assert names(net) == ["x", "conv2", "conv1"]


def test_comments_blank_lines_and_semicolons():
    net = load("# a net\n\nnetwork N {  # here\n\n input x: 3x8x8 ; relu # r\n\n}\n")
    assert names(net) == ["x", "relu1"]


def test_block_parameters_defaults_and_arithmetic():
    text = """
block bottleneck(ch, stride=1, out=ch * 4) {
  conv a: ch @ 1x1
  conv b: ch @ 3x3 /stride pad=1
  conv c: out @ 1x1
  conv d: out // 2 + ch % 3 @ 1x1
}
network N {
  input x: 8x16x16
  bottleneck b1: 16 stride=2
}"""
    net = load(text)
    assert names(net) == ["x", "b1.a", "b1.b", "b1.c", "b1.d"]
    assert net.layer("b1.b").shape == (16, 8, 8)
    assert net.layer("b1.c").shape == (64, 8, 8)
    assert net.layer("b1.d").shape == (32 + 1, 8, 8)
    assert net.layer("b1.a").scope == (("bottleneck", "b1"),)


def test_block_input_skip_connection_and_block_activation():
    text = """
block res(ch) {
  conv a: ch @ 3x3 pad=1
  add (a, in)
}
network N {
  input x: 4x8x8
  res r: 4 -> relu
  res: 4
}"""
    net = load(text)
    assert names(net) == ["x", "r.a", "r.add1", "relu1", "res1.a", "res1.add1"]
    assert net.layer("r.add1").inputs == ["r.a", "x"]
    assert net.layer("relu1").inputs == ["r.add1"]
    assert net.layer("res1.a").inputs == ["relu1"]


def test_repeat_names_and_references_after_the_loop():
    text = """
network N {
  input x: 4x8x8
  repeat 3 { conv c: 4 @ 3x3 pad=1; bn }
  add (c_1, c_3)
}"""
    net = load(text)
    assert names(net) == ["x", "c_1", "bn1", "c_2", "bn2", "c_3", "bn3", "add1"]
    assert net.layer("c_2").inputs == ["bn1"]
    assert net.layer("add1").inputs == ["c_1", "c_3"]


def test_repeat_count_from_a_parameter_and_zero():
    text = """
block stack(n, ch) {
  repeat n { conv: ch @ 1x1 }
}
network N {
  input x: 4x8x8
  stack s: 2 8
  stack t: 0 8
  relu
}"""
    net = load(text)
    assert names(net) == ["x", "s.conv1", "s.conv2", "relu1"]
    assert net.layer("relu1").inputs == ["s.conv2"]


def test_dotted_references_reach_into_block_instances():
    text = """
block pair(ch) {
  conv a: ch @ 1x1
  conv b: ch @ 1x1
}
network N {
  input x: 4x8x8
  pair p: 8
  conv side(p.a): 2 @ 1x1
  output (p.b, side)
}"""
    net = load(text)
    assert net.layer("side").inputs == ["p.a"]
    assert [layer.name for layer in net.graph.outputs] == ["p.b", "side"]
    assert not net.warnings


def test_several_inputs_and_outputs():
    text = """
network TwoTowers {
  input left: 3x16x16
  input right: 3x16x16
  conv l(left): 8 @ 3x3 pad=1
  conv r(right): 8 @ 3x3 pad=1
  concat joined(l, r)
  globalavgpool
  flatten
  dense logits: 10
  flatten lflat(l)
  dense aux: 2
  output (logits, aux)
}"""
    net = load(text)
    assert net.inputs == {"left": (3, 16, 16), "right": (3, 16, 16)}
    assert net.layer("joined").shape == (16, 16, 16)
    assert [layer.name for layer in net.graph.outputs] == ["logits", "aux"]
    assert net.layer("aux").params == 8 * 16 * 16 * 2 + 2


def test_bare_words_and_per_side_padding():
    net = load("network N {\n input x: 3x7x7\n conv: 4 @ 3x3 /2 same\n maxpool: 2x2 ceil\n zeropad: (0,1)x(1,0)\n}")
    conv, pool, pad = net.layers[1:]
    assert conv.attrs["pad"] == "same" and conv.geom["pads"] == ((1, 1), (1, 1))
    assert pool.attrs["ceil"] is True and pool.shape == (4, 2, 2)
    assert pad.shape == (4, 3, 3)


def test_spaced_shapes_with_names():
    net = load("block b(k) {\n conv: 4 @ k x k\n}\nnetwork N {\n input x: 3x9x9\n b: 5\n}")
    assert net.layers[-1].geom["kernel"] == (5, 5)


def test_import_blocks_from_another_file(tmp_path):
    (tmp_path / "lib").mkdir()
    (tmp_path / "lib" / "blocks.arch").write_text(
        "block twice(ch) {\n  conv: ch @ 3x3 pad=1\n  conv: ch @ 3x3 pad=1\n}\n"
    )
    spec = tmp_path / "net.arch"
    spec.write_text('import "lib/blocks.arch"\nnetwork N {\n  input x: 3x8x8\n  twice t: 16\n}\n')
    net = archc.load(spec)
    assert names(net) == ["x", "t.conv1", "t.conv2"]
    assert net.totals.params == (3 * 9 + 1) * 16 + (16 * 9 + 1) * 16


def test_missing_import_is_reported_at_the_import(tmp_path):
    spec = tmp_path / "net.arch"
    spec.write_text('import "nope.arch"\nnetwork N {\n  input x: 3x8x8\n}\n')
    try:
        archc.load(spec)
    except archc.ArchError as err:
        (d,) = err.errors
        assert d.code == "E0102" and d.span.line == 1 and "no such file" in d.message
    else:
        raise AssertionError("expected an error")


def test_input_override():
    net = archc.load("specs/lenet5.arch", inputs={"image": (1, 36, 36)})
    assert net.layer("S4").shape == (16, 6, 6)


def test_a_library_may_import_the_spec_that_imports_it(tmp_path):
    (tmp_path / "main.arch").write_text(
        'import "lib.arch"\nblock a(c) {\n conv: c @ 1x1\n}\nnetwork N {\n input x: 3x8x8\n b: 4\n}\n'
    )
    (tmp_path / "lib.arch").write_text('import "main.arch"\nblock b(c) {\n a: c\n}\n')
    assert archc.load(tmp_path / "main.arch").totals.params == 3 * 4 + 4


OUTPUTS = """
network N {
  input x: 3x8x8
  input unused: 4
  conv c1 (x): 8 @ 3x3 pad=1
  relu r1
  conv c2 (c1): 8 @ 3x3 pad=1
}"""


def test_a_network_returns_its_last_layer_and_warns_about_layers_nothing_reads():
    net = load(OUTPUTS)
    assert [n.name for n in net.graph.outputs] == ["c2"]
    warnings = [(w.code, w.message, w.span.line, w.span.col) for w in net.warnings]
    assert warnings == [
        ("W0302", "input `unused` is never used: no layer reads it and the network does not return it", 4, 3),
        ("W0302", "layer `r1` is never used: no layer reads it and the network does not return it", 6, 3),
    ]
    assert net.warnings[1].help == [
        "read it in a later layer, e.g. `relu (r1)`, or delete it",
        "to return it too, declare the outputs: `output (c2, r1)`",
    ]


def test_output_declares_what_the_network_returns_in_order():
    net = load(OUTPUTS.replace("input unused: 4\n", "").replace("\n}", "\n  output (r1, c2)\n}"))
    assert [n.name for n in net.graph.outputs] == ["r1", "c2"]
    assert not net.warnings


def test_output_of_an_inner_layer_keeps_it_used_and_the_tail_is_then_unused():
    net = load(OUTPUTS.replace("input unused: 4\n", "").replace("\n}", "\n  output (r1)\n}"))
    assert [w.message.split(" is")[0] for w in net.warnings] == ["layer `c2`"]


@pytest.mark.parametrize(
    "line, message",
    [
        ("output o (c1)", "`output` takes only the layers it returns, in parentheses; it cannot be used with a name"),
        ("output (c1): 3", "`output` takes only the layers it returns"),
        ("output (c1)\n  output (c2)", "the network's outputs are declared twice"),
    ],
)
def test_output_misuse_is_e0219(line, message):
    text = OUTPUTS.replace("input unused: 4\n", "").replace("\n}", f"\n  {line}\n}}")
    with pytest.raises(ArchError) as err:
        load(text)
    (diag,) = err.value.errors
    assert diag.code == "E0219" and diag.message.startswith(message)


def test_output_inside_a_block_is_e0219():
    text = "block b() {\n  relu\n  output (in)\n}\nnetwork N {\n  input x: 4\n  b\n}"
    with pytest.raises(ArchError) as err:
        load(text)
    assert [d.code for d in err.value.errors] == ["E0219"]
