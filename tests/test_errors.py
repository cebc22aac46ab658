"""Every kind of error the front end and the analyser report: code, message, line, column."""

import pytest

import archc
from archc import ArchError


def errors(text: str):
    with pytest.raises(ArchError) as info:
        archc.loads(text, "t.arch")
    return info.value.errors


def one_error(text: str):
    found = errors(text)
    assert len(found) == 1, [d.message for d in found]
    return found[0]


def at(diag, line, col):
    assert (diag.span.line, diag.span.col) == (line, col), (diag.span, diag.message)


def test_syntax_error_points_at_the_token():
    d = one_error("network N {\n  input x: 3x8x8\n  conv c: 8 @ @ 3x3\n}")
    assert d.code == "E0101"
    assert d.message == "unexpected `@`"
    at(d, 3, 15)
    assert any("expected" in h for h in d.help)


def test_syntax_error_unexpected_character():
    d = one_error("network N {\n  input x: 3x8x8 $\n}")
    assert d.code == "E0101" and "'$'" in d.message
    at(d, 2, 18)


def test_syntax_error_at_end_of_file():
    d = one_error("network N {\n  input x: 3x8x8\n")
    assert d.code == "E0101" and d.message == "unexpected end of file"
    assert "`}`" in d.help[0]


def test_unknown_layer_type_suggests():
    d = one_error("network N {\n  input x: 3x8x8\n  maxpoo: 2x2\n}")
    assert d.code == "E0201" and d.message == "unknown layer type `maxpoo`"
    assert d.help == ["did you mean `maxpool`?"]
    at(d, 3, 3)


def test_unknown_reference_suggests():
    d = one_error("network N {\n  input image: 3x8x8\n  conv c(imgae): 8 @ 3x3\n}")
    assert d.code == "E0202" and d.message == "unknown layer `imgae`"
    assert d.help == ["did you mean `image`?"]
    at(d, 3, 10)


def test_reference_before_definition():
    d = one_error("network N {\n  input x: 3x8x8\n  add (x, later)\n  conv later: 3 @ 1x1\n}")
    assert d.code == "E0203" and "before it is defined" in d.message
    at(d, 3, 11)


def test_duplicate_name_points_at_both():
    d = one_error("network N {\n  input x: 3x8x8\n  conv c: 8 @ 3x3\n  conv c: 8 @ 3x3\n}")
    assert d.code == "E0204" and d.message == "`c` is defined twice"
    at(d, 4, 8)
    assert d.notes[0][1].line == 3


def test_bad_value_type():
    d = one_error("network N {\n  input x: 3x8x8\n  conv c: 8 @ 3x3 bias=2\n}")
    assert d.code == "E0205" and d.message == "`conv` bias must be true or false, not `2`"
    at(d, 3, 19)


def test_unknown_parameter_suggests():
    d = one_error("network N {\n  input x: 3x8x8\n  conv c: 8 @ 3x3 padding=1\n}")
    assert d.code == "E0206" and d.message == "`conv` has no parameter `padding`"
    assert d.help[0] == "did you mean `pad`?"
    at(d, 3, 19)


def test_missing_required_parameter():
    d = one_error("network N {\n  input x: 3x8x8\n  conv c: 8\n}")
    assert d.code == "E0207" and "`conv` needs its `kernel`" in d.message
    at(d, 3, 3)


def test_too_many_positional_arguments():
    d = one_error("network N {\n  input x: 3x8x8\n  maxpool: 2x2 3x3\n}")
    assert d.code == "E0208" and d.message == "`maxpool` does not take this value here"
    at(d, 3, 16)


def test_wrong_number_of_inputs():
    d = one_error("network N {\n  input x: 3x8x8\n  conv a: 3 @ 1x1\n  add (a)\n}")
    assert d.code == "E0209" and d.message == "`add` takes at least 2 inputs, but gets 1"
    at(d, 4, 3)


def test_block_calling_itself():
    found = errors("block b(c) {\n  conv: c @ 1x1\n  b: c\n}\nnetwork N {\n  input x: 3x8x8\n  b: 4\n}")
    assert [d.code for d in found] == ["E0210"]
    assert found[0].message == "block `b` calls itself"
    at(found[0], 3, 3)


def test_missing_block_argument():
    d = one_error("block b(c) {\n  conv: c @ 1x1\n}\nnetwork N {\n  input x: 3x8x8\n  b\n}")
    assert d.code == "E0207" and d.message == "block `b` needs its `c`"
    at(d, 6, 3)


def test_unknown_name_in_expression():
    d = one_error("block b(ch) {\n  conv: cj * 2 @ 1x1\n}\nnetwork N {\n  input x: 3x8x8\n  b: 4\n}")
    assert d.code == "E0212" and d.message == "unknown name `cj` in an expression"
    assert d.help == ["did you mean `ch`?"]
    at(d, 2, 9)


def test_unknown_activation():
    d = one_error("network N {\n  input x: 3x8x8\n  conv: 8 @ 3x3 -> rleu\n}")
    assert d.code == "E0216" and d.help[0] == "did you mean `relu`?"
    at(d, 3, 17)


def test_first_layer_without_input():
    d = one_error("network N {\n  conv: 8 @ 3x3\n}")
    assert d.code == "E0215"
    at(d, 2, 3)


def test_no_network():
    d = one_error("block b(c) {\n  conv: c @ 1x1\n}")
    assert d.code == "E0104"


def test_empty_output_is_an_error_with_the_sizes():
    d = one_error("network N {\n  input x: 3x4x4\n  conv big: 8 @ 5x5\n}")
    assert d.code == "E0302"
    assert d.message == "conv big: the output would be empty: input 4 is smaller than the kernel 5"
    at(d, 3, 3)


def test_dense_on_an_unflattened_input():
    d = one_error("network N {\n  input x: 16x5x5\n  dense F5: 120\n}")
    assert d.code == "E0304"
    assert d.message == "dense F5 needs a flat input or the channels last, but gets 16x5x5 with the channels first"
    assert d.help == [  # with the edits that insert them
        "`flatten F5_in` before it gives it 400 inputs, output 120",
        "`permute F5_in: 1x2x0` before it puts the channels last and applies it at every position, output 5x5x120",
    ]


def test_add_with_different_shapes_names_both_layers():
    d = one_error("network N {\n  input x: 3x8x8\n  conv a: 8 @ 3x3\n  conv b(x): 8 @ 1x1\n  add (a, b)\n}")
    assert d.code == "E0305"
    assert d.message == "add add1: cannot broadcast a 8x6x6, b 8x8x8: their H (6, 8) differ and are not 1"
    at(d, 5, 3)


def test_concat_with_different_sizes():
    d = one_error("network N {\n  input x: 3x8x8\n  maxpool p: 2x2\n  concat (x, p)\n}")
    assert d.code == "E0305" and "x 3x8x8, p 3x4x4" in d.message


def test_groups_must_divide_channels():
    d = one_error("network N {\n  input x: 6x8x8\n  conv c: 8 @ 3x3 groups=4\n}")
    assert d.code == "E0303"
    assert d.message == "conv c: groups=4 must divide both the input channels (6) and the filters (8)"
    at(d, 3, 19)  # the groups argument


def test_kernel_rank_must_match_the_input():
    d = one_error("network N {\n  input x: 3x32\n  conv c: 8 @ 3x3\n}")
    assert d.code == "E0301" and "kernel 3x3 has 2 sizes, but the input has 1 spatial dimension" in d.message
    at(d, 3, 15)


def test_error_inside_a_block_names_the_call():
    text = "block b(c) {\n  conv: c @ 9x9\n}\nnetwork N {\n  input x: 3x8x8\n  b first: 4\n}"
    d = one_error(text)
    assert d.code == "E0302"
    at(d, 2, 3)
    assert d.notes[0][0] == "in block `b`, called here" and d.notes[0][1].line == 6


def test_no_cascade_after_a_failed_layer():
    text = "network N {\n  input x: 3x4x4\n  conv big: 8 @ 5x5\n  conv: 8 @ 3x3\n  flatten\n  dense: 10\n}"
    assert [d.code for d in errors(text)] == ["E0302"]


def test_all_name_errors_are_reported_together():
    text = "network N {\n  input x: 3x8x8\n  cnov: 8 @ 3x3\n  conv c(y): 8 @ 3x3\n  conv: 8 @ 3x3 bias=3\n}"
    assert [d.code for d in errors(text)] == ["E0201", "E0202", "E0205"]


def test_uneven_stride_is_a_warning_with_the_fix():
    net = archc.loads("network N {\n  input x: 3x7x7\n  conv c: 8 @ 3x3 /3\n}", "t.arch")
    (w,) = net.warnings
    assert w.code == "W0301" and (w.span.line, w.span.col) == (3, 3)
    assert "(7-3)/3+1 = 2.33" in w.message
    assert w.help == [
        "pad=1 makes it exact: (7+2-3)/3+1 = 3, output 8x3x3",
        "an input `x` of 3x9x9 makes it exact: (9-3)/3+1 = 3, output 8x3x3",
    ]


def test_rendered_error_has_location_source_line_and_caret():
    with pytest.raises(ArchError) as info:
        archc.loads("network N {\n  input x: 3x8x8\n  maxpoo: 2x2\n}", "t.arch")
    text = str(info.value)
    assert text.splitlines() == [
        "t.arch:3:3: error: unknown layer type `maxpoo` [E0201]",
        "    3 |   maxpoo: 2x2",
        "      |   ^^^^^^",
        "  help: did you mean `maxpool`?",
    ]


def test_loads_gives_the_garbage_collector_back_as_it_found_it():
    """`loads` pauses the collector while it works (benchmarks/HISTORY.md); an error must not
    leave it off, and a caller who turned it off keeps it off."""
    import gc

    good = "network N {\n  input x: 3x8x8\n  conv c: 4 @ 3x3\n}\n"
    assert gc.isenabled()
    archc.loads(good)
    assert gc.isenabled()
    with pytest.raises(ArchError):
        archc.loads("network N {\n  input x: 3x8x8\n  conv c: 4 @ 9x9\n}\n")
    assert gc.isenabled()
    gc.disable()
    try:
        archc.loads(good)
        assert not gc.isenabled()
    finally:
        gc.enable()
