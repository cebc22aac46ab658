"""The Darknet and Caffe importers under hostile input (issue 14).

Every input ends in an imported network or in located diagnostics, never a
Python traceback; whatever `archc import` writes parses, means what the
source means and holds exactly the source's layers, whatever names, strings
and numbers the source file holds.
"""

from __future__ import annotations

import random
import subprocess
import sys

import pytest
from conftest import ROOT
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import archc
from archc.diagnostics import render, source_lines
from archc.importers import import_source, import_text
from archc.importers.caffe import unescape
from archc.importers.common import LIMIT, Flat, NumberError, whole
from archc.syntax import parse

REAL = ROOT / "tests" / "data" / "realspecs"
REAL_FILES = sorted(REAL.glob("darknet/*/*.cfg")) + sorted(REAL.glob("caffe/*.prototxt"))
DATA_SHAPES = {"lenet_train_test.prototxt": {"data": (1, 28, 28)}}

HEAD = 'name: "T"\ninput: "data"\ninput_shape { dim: 1 dim: 3 dim: 8 dim: 8 }\n'
CONV = (
    'layer { name: "c" type: "Convolution" bottom: "data" top: "c"\n'
    "  convolution_param { num_output: 4 kernel_size: 3 } }\n"
)
NET = "[net]\nwidth=8\nheight=8\nchannels=3\n"


def diagnostics(text: str, file: str) -> list[tuple[str, int, int]]:
    with pytest.raises(archc.ArchError) as info:
        archc.loads(text, file)
    return [(d.code, d.span.line, d.span.col) for d in info.value.errors]


def figures(net):
    return [(n.op, n.shape, n.params, n.macs, n.activation, n.attrs) for n in net.layers]


def names(net):
    return [n.name for n in net.layers]


def round_trip(text: str, file: str, blocks: bool = False):
    """The network of `text` and of the `.arch` text `archc import` writes for it."""
    written = import_text(text, file, blocks=blocks)
    return archc.loads(text, file), archc.loads(written, "written.arch"), written


# -- numbers the importers copy into the .arch text ----------------------------------------------


@pytest.mark.parametrize("value", ["nan", "inf", "-inf", "infinity", "NaN", "1e400", "-1e999f"])
def test_a_caffe_float_that_is_not_finite_is_e0403_at_the_value(value):
    quoted = value.removesuffix("f") if value[-2].isdigit() else value
    text = (
        HEAD
        + CONV
        + f'layer {{ name: "r" type: "ReLU" bottom: "c" top: "c" relu_param {{ negative_slope: {value} }} }}\n'
    )
    if value.startswith("-") and value[1].isalpha():
        # protobuf's minus before a word: not a token archc's reader (or this test) treats as a number
        assert diagnostics(text, "t.prototxt")[0][0] == "E0401"
        return
    with pytest.raises(archc.ArchError) as info:
        archc.loads(text, "t.prototxt")
    (error,) = info.value.errors
    assert (error.code, error.span.line, error.span.col) == ("E0403", 6, 82)
    assert f"not `{quoted}`" in error.message  # `inf` is quoted whole, not read as `in` and a suffix f


@pytest.mark.parametrize(("section", "key"), [
    ("[dropout]", "probability"), ("[lrn]", "alpha"), ("[lrn]", "beta"), ("[lrn]", "kappa"),
    ("[shortcut]\nfrom=-1", "alpha"), ("[upsample]", "scale"), ("[softmax]", "temperature"),
])  # fmt: skip
@pytest.mark.parametrize("value", ["nan", "inf", "-inf", "1e999"])
def test_a_darknet_float_that_is_not_finite_is_e0403_at_the_value(section, key, value):
    text = NET + "[convolutional]\nfilters=2\nsize=1\n" + f"{section}\n{key}={value}\n"
    assert diagnostics(text, "t.cfg") == [("E0403", text.count("\n"), len(key) + 2)]


@pytest.mark.parametrize("text", [
    HEAD + CONV + 'layer { name: "r" type: "ReLU" bottom: "c" top: "c" relu_param { negative_slope: -0.25 } }\n',
    HEAD + CONV + 'layer { name: "r" type: "ReLU" bottom: "c" top: "c" relu_param { negative_slope: -0.0 } }\n',
    HEAD + CONV + 'layer { name: "e" type: "ELU" bottom: "c" top: "e" elu_param { alpha: -1.5e-3 } }\n',
    HEAD + CONV + 'layer { name: "n" type: "LRN" bottom: "c" top: "n" lrn_param { alpha: -2 beta: -0.5 k: -1 } }\n',
    HEAD + CONV + 'layer { name: "n" type: "LRN" bottom: "c" top: "n" lrn_param { alpha: 1e300 beta: 5e-324 } }\n',
])  # fmt: skip
def test_negative_and_extreme_caffe_floats_are_written_as_literals_that_mean_the_same(text):
    source, written, arch = round_trip(text, "t.prototxt")
    assert figures(written) == figures(source) and names(written) == names(source)
    assert "-0." not in arch.replace("0 - 0.", "")  # no unary minus: the language writes 0 - x


def test_negative_darknet_floats_are_written_as_literals_that_mean_the_same():
    text = NET + "[convolutional]\nfilters=2\nsize=1\n[lrn]\nalpha=-0.5\nbeta=-1e-10\nkappa=-2\n"
    source, written, _arch = round_trip(text, "t.cfg")
    assert figures(written) == figures(source) and names(written) == names(source)
    assert written.layer("lrn1").attrs["alpha"] == -0.5


# -- names and comments written into the .arch text -----------------------------------------------


def test_a_caffe_name_with_line_breaks_adds_no_statement_and_a_net_name_no_import():
    text = (
        'name: "T\\nimport \\"/etc/passwd\\"\\n#"\ninput: "data"\ninput_shape { dim: 1 dim: 3 dim: 8 dim: 8 }\n'
        + CONV
        + 'layer { name: "r\\n  relu injected\\n  #" type: "ReLU" bottom: "c" top: "c" }\n'
        + 'layer { name: "loss\\n  relu injected\\n  #" type: "SoftmaxWithLoss" bottom: "c" top: "l" }\n'
    )
    for blocks in (True, False):
        source, written, arch = round_trip(text, "t.prototxt", blocks)
        assert parse(arch, "written.arch").imports == ()
        assert names(written) == names(source) == ["data", "c"]
        assert "# r\\n  relu injected\\n  # (ReLU) in place" in arch  # the name, escaped, in its comment


def test_darknet_settings_and_the_file_name_are_escaped_in_comments():
    text = NET + '[convolutional]\nfilters=2\nsize=1\n[yolo]\nanchors=1,2\u2028import "x"\x1b[2J\rrelu r\nclasses=3\n'
    written = import_text(text, 'odd\nimport "y"\n.cfg')
    module = parse(written, "written.arch")
    assert module.imports == ()
    assert [n.name for n in archc.loads(written, "w.arch").layers] == [
        n.name for n in archc.loads(text, "t.cfg").layers
    ]
    assert "\\x1b[2J" in written and not {"\x1b", "\r", "\u2028"} & set(written)  # whitespace is dropped


NAMES = st.text(st.characters(exclude_categories=("Cs",)), max_size=12)


def quoted(name: str) -> str:
    """`name` as a protobuf string literal: octal escapes for its UTF-8 bytes outside printable ASCII."""
    body = "".join(chr(b) if 0x20 <= b < 0x7F and chr(b) not in '"\\' else f"\\{b:03o}" for b in name.encode("utf-8"))
    return f'"{body}"'


@settings(max_examples=60, derandomize=True, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(texts=st.lists(NAMES, min_size=6, max_size=6), blocks=st.booleans())
def test_random_caffe_names_never_inject_into_the_written_spec(texts, blocks):
    net_name, relu, scale, loss, excluded, conv = (quoted(n) for n in texts)
    text = (
        f"name: {net_name}\ninput: {quoted('da' + texts[0])}\ninput_shape {{ dim: 1 dim: 3 dim: 8 dim: 8 }}\n"
        f'layer {{ name: {conv} type: "Convolution" bottom: {quoted("da" + texts[0])} top: "c" '
        "convolution_param { num_output: 4 kernel_size: 3 } }\n"
        f'layer {{ name: "bn" type: "BatchNorm" bottom: "c" top: "c" }}\n'
        f'layer {{ name: {scale} type: "Scale" bottom: "c" top: "c" scale_param {{ bias_term: true }} }}\n'
        f'layer {{ name: {relu} type: "ReLU" bottom: "c" top: "c" }}\n'
        f'layer {{ name: {excluded} type: {conv} bottom: "c" top: "d" include {{ phase: TRAIN }} }}\n'
        f'layer {{ name: {loss} type: "SoftmaxWithLoss" bottom: "c" top: "l" }}\n'
    )
    source, written, arch = round_trip(text, "t.prototxt", blocks)
    assert parse(arch, "written.arch").imports == ()
    assert figures(written) == figures(source)
    assert [n.op for n in source.layers] == ["input", "conv", "bn"]
    if not blocks:  # with blocks, a layer is named by the block call that holds it
        assert names(written) == names(source)


@settings(max_examples=60, derandomize=True, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(values=st.lists(st.text(st.characters(exclude_categories=("Cs",), exclude_characters="\n#"), max_size=12),
                       min_size=3, max_size=3), file=NAMES)  # fmt: skip
def test_random_darknet_settings_and_file_names_never_inject_into_the_written_spec(values, file):
    anchors, mask, classes = values
    text = NET + f"[convolutional]\nfilters=2\nsize=1\n[yolo]\nanchors={anchors}\nmask={mask}\nclasses={classes}\n"
    written = import_text(text, "f" + file + ".cfg")
    assert parse(written, "written.arch").imports == ()
    assert figures(archc.loads(written, "w.arch")) == figures(archc.loads(text, "t.cfg"))


# -- Caffe strings ----------------------------------------------------------------------------------


@pytest.mark.parametrize(("escape", "col", "message"), [
    (r"\x", 16, r"`\x` needs one or two hex digits"),
    (r"\u12", 16, r"`\u` needs four hex digits"),
    (r"\N{NO SUCH NAME}", 16, r"`\N` is not an escape protobuf knows"),
    (r"ab\q", 18, r"`\q` is not an escape protobuf knows"),
    (r"\777", 16, r"`\777` is more than a byte"),
    (r"\ud800", 16, r"`\ud800` is not a Unicode character"),
    (r"\U00110000", 16, r"`\U00110000` is not a Unicode character"),
])  # fmt: skip
def test_a_string_escape_protobuf_does_not_have_is_e0401_at_the_backslash(escape, col, message):
    text = HEAD + f'layer {{ name: "{escape}" type: "ReLU" bottom: "data" top: "x" }}\n'
    with pytest.raises(archc.ArchError) as info:
        archc.loads(text, "t.prototxt")
    (error,) = info.value.errors
    assert (error.code, error.span.line, error.span.col) == ("E0401", 4, col)
    assert error.message.startswith(message)


def test_protobuf_escapes_read_as_protobuf_reads_them():
    assert unescape(r'"\a\b\f\n\r\t\v\\\?\'\""', 1, 1) == "\a\b\f\n\r\t\v\\?'\""
    assert unescape(r'"\101\60\0x\x41\X4a\x4"', 1, 1) == "A0\0xAJ\x04"
    assert unescape(r'"\u00e9\ud83d\ude00\U0001F600"', 1, 1) == "\u00e9\U0001f600\U0001f600"
    assert unescape(r"'\303\251 \200'", 1, 1) == "\u00e9 \\x80"  # UTF-8 bytes; a stray byte stays visible


def test_a_top_and_a_bottom_spelt_with_different_escapes_are_one_blob():
    text = HEAD + 'layer { name: "r" type: "ReLU" bottom: "data" top: "\\x41b\\n" }\n'
    text += 'layer { name: "s" type: "Sigmoid" bottom: "A" "b\\012" top: "s" }\n'  # adjacent strings join
    net = archc.loads(text, "t.prototxt")
    assert net.layer("s").inputs == ["r"]


def test_a_string_that_does_not_end_on_its_line_is_e0401():
    text = HEAD + 'layer { name: "a\\\nb" type: "ReLU" bottom: "data" top: "x" }\n'
    assert diagnostics(text, "t.prototxt") == [("E0401", 4, 15)]


# -- nesting and long numbers ---------------------------------------------------------------------


def test_deep_caffe_nesting_is_e0213_at_the_brace_not_a_recursion_error():
    text = 'name: "T"\n' + "a {\n" * 1000 + "}\n" * 1000
    assert diagnostics(text, "t.prototxt") == [("E0213", 102, 3)]
    shallow = 'name: "T"\n' + "a {\n" * 100 + "}\n" * 100  # as deep as archc goes: read, then found empty
    assert [code for code, _line, _col in diagnostics(shallow, "t.prototxt")] == ["E0404"]


LONG = "9" * 5000


@pytest.mark.parametrize(("text", "file"), [
    (f"[net]\nwidth={LONG}\nheight=8\nchannels=3\n", "t.cfg"),
    (NET + f"[convolutional]\nfilters=2\nsize=1\n[route]\nlayers=-1,{LONG}\n", "t.cfg"),
    (f'name: "T"\ninput: "data"\ninput_shape {{ dim: 1 dim: 3 dim: 8 dim: {LONG} }}\n', "t.prototxt"),
    (HEAD + CONV.replace("num_output: 4", f"num_output: {LONG}"), "t.prototxt"),
], ids=["width", "layers", "dim", "num_output"])  # fmt: skip
def test_numbers_of_thousands_of_digits_are_e0213_at_the_value(text, file):
    with pytest.raises(archc.ArchError) as info:
        archc.loads(text, file)
    (error,) = info.value.errors
    line = text[: text.index(LONG)].count("\n") + 1
    value = source_lines(text)[line - 1]
    col = value.index(LONG) + 1 if file.endswith(".prototxt") else value.index("=") + 2  # Darknet: the whole value
    assert (error.code, error.span.line, error.span.col) == ("E0213", line, col)
    assert " characters)`" in error.message and len(error.message) < 200


def test_leading_zeros_do_not_count_as_digits():
    text = NET + f"[convolutional]\nfilters={'0' * 5000}2\nsize=1\n"
    assert archc.loads(text, "t.cfg").layer("conv0").shape[0] == 2


def test_whole_numbers_stop_at_2_to_the_62():
    assert whole(str(LIMIT)) == 2**62 and whole(f"-{LIMIT}") == -(2**62) and whole("+007") == 7
    for text in (str(LIMIT + 1), "1" + "0" * 19, LONG, "\u0663", "1.0", "0x10", ""):
        with pytest.raises(NumberError):
            whole(text)


# -- the order of diagnostics ---------------------------------------------------------------------


def test_a_cfg_s_diagnostics_come_in_the_order_of_the_file():
    text = NET + "[maxpol]\nsize=2\n[convolutional]\nfilters=2\nsize=1\nbogus=1\nbogus=2\nthis is no line\n"
    with pytest.raises(archc.ArchError) as info:
        archc.loads(text, "t.cfg")
    lines = {kind: [d.span.line for d in info.value.diagnostics if d.severity == kind] for kind in ("error", "warning")}
    assert lines == {"error": [5, 12], "warning": [10, 11]}  # the reader found line 12 first, and the duplicate


def test_a_prototxt_s_diagnostics_come_in_the_order_of_the_file():
    text = 'name: "T"\nbogus: 1\ninput: "data"\ninput_shape { dim: 1 dim: 3 dim: 8 dim: 8 }\n' + CONV.replace(
        "kernel_size: 3", "kernel_size: 3 strid: 2"
    )
    net = archc.loads(text, "t.prototxt")
    assert [w.span.line for w in net.warnings] == [2, 6]  # the net's own field after the layers' in the pass


def test_archc_check_shows_the_error_behind_twenty_warnings(tmp_path):
    junk = "".join(f"junk{i}=1\n" for i in range(20))
    (tmp_path / "bad.cfg").write_text(NET + junk + "[convolutional]\nfilters=2\nsize=1\nactivation=lekay\n")
    run = subprocess.run(
        [sys.executable, "-m", "archc", "check", "bad.cfg"], cwd=tmp_path, capture_output=True, text=True
    )
    assert run.returncode == 1 and "Traceback" not in run.stderr
    assert "bad.cfg:28:12: error: unknown activation `lekay` [E0403]" in run.stderr


# -- line separators ------------------------------------------------------------------------------

SEPARATORS = ["\u2028", "\u2029", "\x85", "\x0c", "\x0b", "\r", "\x1c"]


@pytest.mark.parametrize("sep", SEPARATORS, ids=repr)
def test_caffe_lines_and_excerpts_agree_on_line_separators(sep):
    text = f'name: "T"  # a{sep}b\ninput: "data"\ninput_shape {{ dim: 1{sep} dim: 3 dim: 8 dim: 8 }}\n'
    text += f'layer {{ name: "r{sep}" type: "Relu" bottom: "data" top: "x" }}  # {sep}\n'
    with pytest.raises(archc.ArchError) as info:
        archc.loads(text, "t.prototxt")
    (error,) = info.value.errors
    assert (error.code, error.span.line, error.span.col) == ("E0402", 4, 26)
    assert source_lines(text)[3][25:31] == '"Relu"'
    assert '   4 | layer { name: "r' in render(error, {"t.prototxt": text})


@pytest.mark.parametrize("sep", SEPARATORS, ids=repr)
def test_darknet_lines_and_excerpts_agree_on_line_separators(sep):
    text = f"[net]\n# a{sep}b\nwidth=8 # x{sep}\nheight=8\nchannels=3\n[convolutional]\nfilters=2{sep}\nsize=1\n"
    text += f"activation=lekay{sep}\n"
    with pytest.raises(archc.ArchError) as info:
        archc.loads(text, "t.cfg")
    (error,) = info.value.errors
    assert (error.code, error.span.line, error.span.col) == ("E0403", 9, 12)
    assert "    9 | activation=lekay" in render(error, {"t.cfg": text})


# -- mutated real files -----------------------------------------------------------------------------

ODD = ["\x00", "\x1b[31m", "\u2028", "\x85", "\r", "\ufeff", '"', "'", "\\", "{", "}", "[", "]", "=", ",", "#", "é"]


def mutate(text: str, rng: random.Random) -> str:
    """One hostile edit of a real file: characters, huge numbers, deep nesting, escapes, lines."""
    kind = rng.randrange(7)
    at = rng.randrange(len(text) + 1)
    if kind == 0:  # a stray character or a few
        return text[:at] + "".join(rng.choice(ODD) for _ in range(rng.randint(1, 3))) + text[at:]
    if kind == 1:  # a cut
        return text[:at] + text[at + rng.randint(1, 40) :]
    if kind == 2:  # a number made huge (past Python's 4,300 digits, or just past 2^62)
        digits = [i for i, ch in enumerate(text) if ch.isdigit()]
        at = rng.choice(digits) if digits else at
        return text[:at] + rng.choice(["9" * 5000, str(2**62 + 1), "0" * 4400, "1e999", "-1"]) + text[at:]
    if kind == 3:  # deep nesting
        depth = rng.choice([99, 101, 400])
        return text[:at] + "a {\n" * depth + "}\n" * depth + text[at:]
    if kind == 4:  # an escape, valid or not, in a string
        quote = text.find('"', at)
        at = quote + 1 if quote >= 0 else at
        return text[:at] + rng.choice([r"\x", r"\u12", r"\N{X}", r"\101", r"\ud83d\ude00", r"\n", "\\"]) + text[at:]
    lines = text.split("\n")  # a line dropped, doubled or swapped
    i, j = rng.randrange(len(lines)), rng.randrange(len(lines))
    if kind == 5:
        lines.insert(i, lines[j])
    else:
        lines[i], lines[j] = lines[j], lines[i]
    return "\n".join(lines)


@pytest.mark.parametrize("path", REAL_FILES, ids=lambda p: f"{p.parent.name}/{p.name}")
def test_mutated_real_files_import_or_give_located_diagnostics(path):
    rng = random.Random(path.name)  # the same inputs on every run
    original = path.read_text()
    outcomes = {"imported": 0, "diagnosed": 0}
    for _ in range(12):
        text = original
        for _ in range(rng.randint(1, 3)):
            text = mutate(text, rng)
        try:
            imported = import_source(text, path.name, DATA_SHAPES.get(path.name))
        except archc.ArchError as err:
            lines = source_lines(text)
            for diag in err.diagnostics:  # located, on a line of the file, and renderable
                assert diag.code and diag.span is not None and 1 <= diag.span.line <= len(lines), diag
                render(diag, {path.name: text})
            outcomes["diagnosed"] += 1
            continue
        assert imported.module.networks
        for blocks in (True, False):  # what `archc import` writes parses
            parse(import_text(text, path.name, blocks=blocks, inputs=DATA_SHAPES.get(path.name)), "w.arch")
        outcomes["imported"] += 1
    assert sum(outcomes.values()) == 12


def test_a_mutated_yolov4_tiny_with_a_size_of_200_digits_is_e0213_at_the_value():
    text = (REAL / "darknet" / "alexeyab" / "yolov4-tiny.cfg").read_text()
    line = source_lines(text).index("size=3") + 1
    mutated = text.replace("size=3", f"size={10**200}", 1)
    assert diagnostics(mutated, "yolov4-tiny.cfg") == [("E0213", line, 6)]


def test_a_caffe_name_prefix_never_makes_a_block_named_after_a_keyword():
    text, bottom = HEAD, "data"
    for module in ("repeat_1", "repeat_2", "network_1", "network_2"):
        text += f'layer {{ name: "{module}/c" type: "Convolution" bottom: "{bottom}" top: "{module}/c"\n'
        text += "  convolution_param { num_output: 4 kernel_size: 1 } }\n"
        text += f'layer {{ name: "{module}/s" type: "Sigmoid" bottom: "{module}/c" top: "{module}/s" }}\n'
        bottom = f"{module}/s"
    source, written, arch = round_trip(text, "t.prototxt", blocks=True)
    assert "block repeat2(" in arch and "  repeat2 repeat_1\n" in arch and figures(written) == figures(source)


def test_thousands_of_digits_in_a_name_or_a_setting_do_not_reach_the_written_spec():
    digits = "7" * 4500
    caffe = HEAD + f'layer {{ name: "{digits}" type: "ReLU" bottom: "data" top: "r" }}\n'
    caffe += f'layer {{ name: "{digits}" type: "Sigmoid" bottom: "r" top: "s" }}\n'
    source, written, _arch = round_trip(caffe, "t.prototxt")
    assert names(written) == names(source) and len(set(names(source))) == 3
    darknet = f"[net]\nwidth=0{digits}8\nheight=8\nchannels=3\n[convolutional]\nfilters=2\nsize=1\n"
    darknet += f"[yolo]\nanchors={digits}\n"
    with pytest.raises(archc.ArchError):  # a 4,502-digit width, leading zero or not, is too large
        archc.loads(darknet, "t.cfg")
    darknet = darknet.replace(f"width=0{digits}8", f"width={'0' * 4500}8")
    source, written, arch = round_trip(darknet, "t.cfg")
    assert figures(written) == figures(source) and "(4,501 characters)" in arch


def test_decimals_are_ascii_as_darknet_and_protobuf_write_them():
    for value in ("1_0", "\u0661.5", "0x1p3", "1e"):
        text = NET + f"[convolutional]\nfilters=2\nsize=1\n[dropout]\nprobability={value}\n"
        assert diagnostics(text, "t.cfg") == [("E0403", 9, 13)], value


@pytest.mark.parametrize(("text", "file"), [
    (NET + "[convolutional]\nfilters=2\nsize=1\nactivation=" + "a" * 100_000 + "\n", "t.cfg"),
    (NET + "[" + "a" * 100_000 + "]\n", "t.cfg"),
    (HEAD + 'layer { name: "r" type: "' + "a" * 100_000 + '" bottom: "data" top: "x" }\n', "t.prototxt"),
    (HEAD + 'layer { name: "r" type: "ReLU" bottom: "' + "a" * 100_000 + '" top: "x" }\n', "t.prototxt"),
], ids=["activation", "section", "type", "bottom"])  # fmt: skip
def test_messages_quote_a_huge_name_or_value_cut(text, file):
    with pytest.raises(archc.ArchError) as info:
        archc.loads(text, file)
    (error,) = info.value.errors
    assert "(100,000 characters)" in error.message and len(error.message) < 300


class CountingSet(set):
    """A set that counts the membership tests made on it."""

    tests = 0

    def __contains__(self, item):
        CountingSet.tests += 1
        return super().__contains__(item)


def test_unique_names_cost_a_step_each_not_one_per_earlier_namesake():
    flat = Flat("t.prototxt")
    flat.taken = CountingSet({"a_3"})  # a name the source itself took: skipped, as before
    names = [flat.unique("a") for _ in range(5000)]
    assert names[:4] == ["a", "a_2", "a_4", "a_5"] and len(set(names)) == 5000
    assert CountingSet.tests < 3 * 5000  # it was 12.5 million: every earlier `a` tried again
