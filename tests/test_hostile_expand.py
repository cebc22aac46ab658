"""Issue 14, expansion: names, errors behind errors, the work of expansion, unreadable files, hints.

Each reproducer of the issue is a test here. The work of expansion is measured by counting
(statements expanded and repeat iterations run, through `Expander.statement` and
`Scope.iteration`), never by a clock; a count past `CAP` stops the expansion, so that even
the code before the fix ends (failing) instead of hanging. Every hint that proposes an edit
carries it as a `Fix`; `assert_fixes_work` applies each one and analyses the spec again.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import archc
from archc import expand

ROOT = Path(__file__).resolve().parent.parent
CAP = 3 * expand.MAX_STEPS  # work past this is a hang: the expansion is stopped and the test fails


class TooMuchWorkError(Exception):
    pass


@pytest.fixture
def work(monkeypatch):
    """Counts the statements expanded and the repeat iterations run; stops past `CAP`."""
    count = {"steps": 0, "cap": CAP}

    def counted(original):
        def wrapper(*args, **kwargs):
            count["steps"] += 1
            if count["steps"] > count["cap"]:
                raise TooMuchWorkError(f"more than {count['cap']:,} steps of expansion")
            return original(*args, **kwargs)

        return wrapper

    monkeypatch.setattr(expand.Expander, "statement", counted(expand.Expander.statement))
    monkeypatch.setattr(expand.Scope, "iteration", counted(expand.Scope.iteration))
    return count


def net(*lines: str) -> str:
    return "network N {\n  input x: 3x8x8\n" + "".join(f"  {line}\n" for line in lines) + "}\n"


def errors(text: str, file: str = "t.arch"):
    with pytest.raises(archc.ArchError) as info:
        archc.loads(text, file)
    return info.value.errors


def codes(text: str) -> list[str]:
    return [d.code for d in errors(text)]


def apply_fixes(text: str, diag) -> str:
    for fix in sorted(diag.fixes, key=lambda f: (f.span.line, f.span.col), reverse=True):
        text = fix.apply(text)
    return text


def assert_fixes_work(text: str) -> list:
    """Every error of `text` proposes an edit; made, each one leaves a spec without that error
    and without any new one. Returns the errors."""
    found = errors(text)
    for diag in found:
        assert diag.fixes, (diag.message, diag.help)
        fixed = apply_fixes(text, diag)
        try:
            archc.loads(fixed, "t.arch")
            left = []
        except archc.ArchError as err:
            left = err.errors
        before = {(d.code, d.span.line, d.span.col) for d in found}
        after = {(d.code, d.span.line, d.span.col) for d in left}
        assert (diag.code, diag.span.line, diag.span.col) not in after, (fixed, [d.message for d in left])
        assert after <= before, (fixed, [d.message for d in left])
    return found


# -- 1. duplicate names ---------------------------------------------------------------------------------------

BLOCK_AA = "block aa(ch) {\n  conv: ch @ 1x1\n}\n"


def test_instance_name_taken_by_repeat_numbering():
    """`aa stage_1: 2` then `repeat 2 { conv stage }` made two layers answering to `stage_1`, silently."""
    text = BLOCK_AA + net("aa stage_1: 2", "repeat 2 { conv stage: 3 @ 1x1 }", "relu (stage_1)")
    (d,) = errors(text)
    assert d.code == "E0204" and d.message == "`stage_1` is defined twice"
    assert (d.span.line, d.span.col) == (7, 19)  # `stage` in the repeat, whose numbering made stage_1
    assert any("repeat appends the iteration number" in h for h in d.help)
    (note,) = d.notes
    assert note[0] == "first defined here" and (note[1].line, note[1].col) == (6, 6)  # the instance name


def test_repeat_numbering_then_instance_name():
    """The other order raised KeyError: the instance name clashed with a numbered layer."""
    text = BLOCK_AA + net("repeat 2 { conv stage: 3 @ 1x1 }", "aa stage_1: 2")
    (d,) = errors(text)
    assert d.code == "E0204" and d.message == "`stage_1` is defined twice"
    assert (d.span.line, d.span.col) == (7, 6)
    assert (d.notes[0][1].line, d.notes[0][1].col) == (6, 19)


def test_clash_names_the_name_the_user_sees_and_points_at_its_definition():
    """E0204 said "`stage` is defined twice" for a clash on `stage_1`, and its note pointed at a
    whole statement instead of the name."""
    text = BLOCK_AA + net("conv stage_1: 3 @ 1x1", "repeat 2 { aa stage: 3 }")
    (d,) = errors(text)
    assert d.message == "`stage_1` is defined twice" and (d.span.line, d.span.col) == (7, 17)
    assert (d.notes[0][1].line, d.notes[0][1].col, d.notes[0][1].end_col) == (6, 8, 15)


def test_a_generated_name_clashing_with_a_numbered_one_says_so():
    (d,) = errors(net("relu6", "repeat 2 { relu6 relu6 }"))
    assert d.message == "`relu6_1` is defined twice"
    assert any("the name archc gave the unnamed layer at line 3" in h for h in d.help)


def test_a_name_twice_in_a_repeat_body_is_reported_once():
    found = errors(net("repeat 3 { conv c: 4 @ 1x1; conv c: 4 @ 1x1 }"))
    assert [(d.code, d.message) for d in found] == [("E0204", "`c` is defined twice")]


def test_generated_names_of_a_repeat_can_be_read_after_it():
    """Language.md: generated names can be referenced like written ones; after a repeat they were unknown."""
    network = archc.loads(net("repeat 2 { conv: 4 @ 1x1 }", "relu (conv1)"), "t.arch")
    assert network.layer("relu1").inputs == ["conv1"]


# -- 2. errors behind errors -----------------------------------------------------------------------------------


def test_a_block_called_on_a_failed_layer_still_reports_its_own_errors():
    """Language.md section 14 promises every error in names, blocks and arguments at once; the body
    of a block called on a broken layer was not expanded, so its errors were not reported."""
    text = "block b() {\n  foo\n  conv: 4 @ 3x3 strid=2\n}\n" + net("relu r (nosuch)", "b (r)")
    found = errors(text)
    assert [(d.code, d.span.line) for d in found] == [("E0202", 7), ("E0201", 2), ("E0206", 3)]
    for d in found[1:]:  # language.md section 14: an error inside a block notes the call
        assert [(text, span.line) for text, span in d.notes] == [("in block `b`, called here", 8)]


def test_a_block_call_with_a_clashing_name_still_reports_its_body():
    text = "block b() {\n  relu -> rleu\n}\n" + net("relu r", "b r")
    assert [(d.code, d.span.line) for d in errors(text)] == [("E0204", 7), ("E0216", 2)]


def test_an_error_repeated_by_every_iteration_is_reported_once():
    found = errors(net("repeat 5 { foo }"))
    assert [(d.code, d.span.line) for d in found] == [("E0201", 3)]


# -- 3. the work of expansion ----------------------------------------------------------------------------------


def test_empty_nested_repeats_stop_at_once(work):
    """`repeat 200000 { repeat 200000 { } }` never answered: only layers were counted."""
    assert codes(net("repeat 200000 { repeat 200000 { } }")) == ["E0213"]
    assert work["steps"] < 1000


def test_an_error_in_nested_repeats_stops_at_once(work):
    """`repeat 1000 { repeat 1000 { foo } }` made an error a iteration and did not finish in 60 s."""
    found = errors(net("repeat 1000 { repeat 1000 { foo } }"))
    assert [d.code for d in found] == ["E0213"]
    assert "steps" in found[0].message and found[0].span.line == 3
    assert work["steps"] < 1000


def test_an_error_in_a_large_repeat_is_reported_once(work):
    work["cap"] = expand.MAX_STEPS
    found = errors(net("repeat 100 { repeat 1000 { foo } }"))
    assert [d.code for d in found] == ["E0201"]


def doubling(k: int, leaf: str) -> str:
    calls = "".join(f"block b{i}() {{\n  b{i - 1}\n  b{i - 1}\n}}\n" for i in range(1, k + 1))
    blocks = f"block b0() {{\n{leaf}}}\n" + calls
    return blocks + net(f"b{k}")


@pytest.mark.parametrize("leaf", ["", "  relu\n", "  foo\n"])
def test_block_doubling_stops_at_its_first_call(work, leaf):
    """`block bK() { bK-1; bK-1 }` up to K = 60 is 2^60 calls."""
    found = errors(doubling(60, leaf))
    assert found[-1].code == "E0213" and "steps" in found[-1].message
    assert work["steps"] < 1000


def test_a_doubling_within_the_limit_is_expanded():
    network = archc.loads(doubling(10, "  relu\n"), "t.arch")
    assert len(network.layers) == 1 + 2**10


def test_huge_names_stop_at_the_name_limit(work):
    """`repeat 100000 { relu <100,000-character name> }`, a 100 KB spec, exhausted 3 GiB."""
    work["cap"] = 10_000  # the code before the fix would need 10 GB: stop it early
    found = errors(net("repeat 100000 { relu " + "n" * 100_000 + " }"))
    assert [d.code for d in found] == ["E0213"] and "names" in found[0].message
    assert work["steps"] < 4 * expand.MAX_NAME_BYTES // 100_000  # a few hundred iterations of 100,000


def test_the_step_limit_leaves_room_for_the_layer_limit(monkeypatch):
    """A network at the layer limit, written as block calls in a repeat (three steps a layer), is
    within the step limit; the limits scaled down 100 times, as their ratio is what matters."""
    monkeypatch.setattr(expand, "MAX_NODES", expand.MAX_NODES // 100)
    monkeypatch.setattr(expand, "MAX_STEPS", expand.MAX_STEPS // 100)
    text = "block one() {\n  relu\n}\n" + net(f"repeat {expand.MAX_NODES - 1} {{ one }}")
    assert len(archc.loads(text, "t.arch").layers) == expand.MAX_NODES
    assert codes(net(f"repeat {expand.MAX_NODES} {{ relu }}")) == ["E0213"]  # one layer more


def python(code: str, timeout: float = 60, env: dict | None = None) -> subprocess.CompletedProcess:
    """Runs in a subprocess: a read that blocks must fail the test, not hang the suite (it takes < 1 s)."""
    run_env = {**os.environ, "PYTHONPATH": str(ROOT), **(env or {})}
    return subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=timeout, env=run_env, cwd=ROOT
    )


LOAD = "import archc\ntry:\n    archc.load({path!r})\nexcept archc.ArchError as err:\n    print(err)\n"


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="no named pipes")
def test_a_named_pipe_is_refused_without_blocking(tmp_path):
    """A FIFO as SPEC, or imported, blocked forever: nothing ever writes to it."""
    fifo = tmp_path / "pipe.arch"
    os.mkfifo(fifo)
    (tmp_path / "main.arch").write_text('import "pipe.arch"\n' + net("relu"))
    for path, where in ((fifo, "cannot read"), (tmp_path / "main.arch", "cannot import")):
        run = python(LOAD.format(path=str(path)))
        assert run.returncode == 0, run.stderr[-2000:]
        assert f"{where} `" in run.stdout and "a named pipe, not a regular file" in run.stdout
        assert "[E0102]" in run.stdout


ENVIRON = Path("/proc/self/environ")


@pytest.mark.skipif(not ENVIRON.exists(), reason="no /proc")
def test_a_binary_file_is_not_a_spec_and_is_not_shown(tmp_path):
    """`import "/proc/self/environ"` printed the process's environment in the excerpt of a syntax error."""
    (tmp_path / "main.arch").write_text(f'import "{ENVIRON}"\n' + net("relu"))
    marker = {"ARCHC_TEST_SECRET": "do-not-print-me"}
    for path, where in ((ENVIRON, "cannot read"), (tmp_path / "main.arch", "cannot import")):
        run = python(LOAD.format(path=str(path)), env=marker)
        assert run.returncode == 0, run.stderr[-2000:]
        assert f"{where} `" in run.stdout and "not a text file" in run.stdout and "[E0102]" in run.stdout
        assert "do-not-print-me" not in run.stdout + run.stderr


@pytest.mark.parametrize(
    "data, why",
    [(net("relu").encode().replace(b"relu", b"re\x00lu"), "NUL byte"), (b"network N {\xff}", "not UTF-8")],
)
def test_files_with_a_nul_or_not_utf8_are_not_text(tmp_path, data, why):
    path = tmp_path / "bad.arch"
    path.write_bytes(data)
    with pytest.raises(archc.ArchError) as info:
        archc.load(path)
    (d,) = info.value.errors
    assert d.code == "E0102" and "not a text file" in d.message and why in d.message and d.span is None


# -- 4. hints that say what to write, and carry the edit ---------------------------------------------------------


@pytest.mark.parametrize(
    "statement, meant",
    [
        ("batchnorm", "bn"),
        ("BatchNorm2d", "bn"),
        ("BatchNormalization", "bn"),
        ("Conv2d: 4 @ 3x3", "conv"),
        ("MaxPool2d: 2", "maxpool"),
        ("AvgPool2d: 2", "avgpool"),
        ("ReLU", "relu"),
        ("LeakyReLU", "leaky_relu"),
        ("Dropout: 0.5", "dropout"),
        ("ConvTranspose2d: 4 @ 2x2 /2", "deconv"),
        ("GlobalAveragePooling2D", "globalavgpool"),
        ("globalavgpool; flatten; linear: 10", "dense"),
        ("globalavgpool; flatten; fc: 10", "dense"),
        ("globalavgpool; flatten; fully_connected: 10", "dense"),
        ("globalavgpool; flatten; InnerProduct: 10", "dense"),
    ],
)
def test_unknown_layer_types_get_archcs_name_for_them(statement, meant):
    (d,) = assert_fixes_work(net(statement))
    assert d.code == "E0201" and d.help[0].startswith(f"did you mean `{meant}`?")
    assert d.fixes[0].text == meant


@pytest.mark.parametrize("word", ["rnn", "transformer", "prelu", "rmsnorm", "matmul"])
def test_layers_archc_does_not_have_are_not_mistaken_for_others(word):
    """`lstm` got "did you mean `softmax`?"."""
    (d,) = errors(net(word))
    assert d.code == "E0201" and not d.fixes
    assert d.help[0].startswith(f"archc has no `{word}` layer: ") and "not supported yet" in d.help[0]
    assert "did you mean" not in " ".join(d.help)


@pytest.mark.parametrize("written, meant", [("False", "false"), ("True", "true"), ("FALSE", "false")])
def test_booleans_are_lower_case(written, meant):
    (d,) = assert_fixes_work(net(f"conv: 4 @ 3x3 bias={written}"))
    assert d.code == "E0205" and d.help == [f"did you mean `{meant}`?"]


@pytest.mark.parametrize(
    "statement, meant",
    [("bn: 1e-3", "eps=1e-3"), ("dropout: 0.1 0.2", None), ("conv: 4 @ 3x3 2", "stride=2")],
)
def test_a_number_with_no_place_suggests_the_keyword_that_takes_it(statement, meant):
    (d,) = errors(net(statement))
    assert d.code == "E0208"
    if meant is None:  # dropout has no other parameter
        assert not d.fixes
        return
    assert d.help[0].startswith(f"did you mean `{meant}`?")
    assert_fixes_work(net(statement))


def test_a_plain_name_after_its_repeat_suggests_the_numbered_ones():
    (d,) = assert_fixes_work(net("repeat 3 { conv c: 3 @ 3x3 pad=1 }", "add (c, x)"))
    assert d.code == "E0203" and "`c_1`, `c_2`, `c_3`" in d.message
    assert d.help == ["write `c_3` to read the last iteration's `c`"]
    fixed = apply_fixes(net("repeat 3 { conv c: 3 @ 3x3 pad=1 }", "add (c, x)"), d)
    assert archc.loads(fixed, "t.arch").layer("add1").inputs == ["c_3", "x"]


def test_numbered_names_of_a_block_instance_in_a_repeat():
    text = BLOCK_AA + net("repeat 5 { aa blk: 3 }", "relu (blk.conv1)")
    (d,) = assert_fixes_work(text)
    assert "`blk_1`, `blk_2`, ..., `blk_5`" in d.message and d.fixes[0].text == "blk_5.conv1"


def test_inside_another_repeat_the_numbered_names_are_listed_without_an_edit():
    (d,) = errors(net("repeat 2 { relu r }", "repeat 2 { relu (r) }"))
    assert d.code == "E0203" and not d.fixes and "`r_1`, `r_2`" in d.help[0]


@pytest.mark.parametrize(
    "text",
    [
        net("maxpoo: 2x2"),
        "network N {\n  input image: 3x8x8\n  conv (imgae): 8 @ 3x3\n}\n",
        net("conv: 16 @ 3x3 strid=2"),
        net("conv: 8 @ 3x3 -> rleu"),
        net("conv: 8 @ 3x3 -> Swish"),
        "block b(ch) {\n  conv: cj * 2 @ 1x1\n}\n" + net("b: 4"),
        net("conv: 8 @ 3x3 pad=Same"),
    ],
)
def test_every_did_you_mean_carries_an_edit_that_works(text):
    assert_fixes_work(text)


def test_importers_keep_their_suggestions():
    """The importers suggest names of their own formats; archc's synonyms are not theirs."""
    assert expand.suggest("maxpoo", ["maxpool", "convolutional"]) == ["did you mean `maxpool`?"]
    assert expand.suggest("LSTM", ["Convolution", "Pooling"]) == []
    assert expand.suggest("convolution", ["Convolution", "Pooling"]) == ["did you mean `Convolution`?"]


def test_no_suggestion_is_sought_for_a_huge_word():
    assert expand.suggest("a" * 100_000, ["a" * 100_000]) == []


# -- 5. fuzzing the work of expansion -----------------------------------------------------------------------------

COUNTS = st.sampled_from([0, 1, 2, 3, 10, 1000, 200_001, 10**6])


@st.composite
def expansion(draw) -> str:
    """Nested repeats, blocks calling blocks several times, and names up to 100,000 characters."""
    n = draw(st.integers(1, 25))
    blocks = []
    for i in range(n):
        body = []
        for _ in range(draw(st.integers(0, 3))):
            callee = draw(st.integers(0, i)) if i else None
            statement = f"b{callee - 1}" if callee else draw(st.sampled_from(["relu", "foo", "bn", "relu r"]))
            for _ in range(draw(st.integers(0, 2))):
                statement = f"repeat {draw(COUNTS)} {{ {statement} }}"
            body.append(statement)
        blocks.append(f"block b{i}() {{\n" + "".join(f"  {s}\n" for s in body) + "}\n")
    name = "n" * draw(st.sampled_from([1, 100, 10_000, 100_000]))
    top = draw(st.sampled_from([f"b{n - 1}", f"relu {name}", "foo", f"b{n - 1} {name}"]))
    for _ in range(draw(st.integers(0, 3))):
        top = f"repeat {draw(COUNTS)} {{ {top} }}"
    return "".join(blocks) + net(top)


@settings(max_examples=60, deadline=None, derandomize=True, suppress_health_check=list(HealthCheck))
@given(expansion())
def test_every_expansion_ends_within_bounded_work(text):
    counted = {"steps": 0}
    original = (expand.Expander.statement, expand.Scope.iteration)

    def step():
        counted["steps"] += 1
        if counted["steps"] > CAP:
            raise TooMuchWorkError(text[:500])

    def statement(self, *args):
        step()
        return original[0](self, *args)

    def iteration(self, i):
        step()
        return original[1](self, i)

    expand.Expander.statement, expand.Scope.iteration = statement, iteration
    try:
        archc.loads(text, "t.arch")
    except archc.ArchError as err:
        assert err.errors and all(d.code.startswith("E") for d in err.errors)
        str(err)  # renders
    finally:
        expand.Expander.statement, expand.Scope.iteration = original
    assert counted["steps"] <= expand.MAX_STEPS + 1


@pytest.mark.parametrize(
    "text",
    [
        net("maxpool: 3 /2 ciel"),
        "block b(ch=2) {\n  conv: ch @ 1x1\n}\n" + net("b: chh=4"),
    ],
)
def test_words_and_block_parameters_carry_their_edit(text):
    assert_fixes_work(text)


def test_a_word_that_names_a_parameter_proposes_no_edit():
    """`strid` alone would still lack its value: the help says name=value, and proposes no edit."""
    (d,) = errors(net("conv: 4 @ 3x3 strid"))
    assert d.code == "E0208" and d.help[0] == "did you mean `stride=...`? a parameter is given as name=value"
    assert not d.fixes


def test_suggestions_stop_when_their_budget_is_spent(monkeypatch):
    """Each suggestion compares the word with every candidate: 100,000 layers and a statement with a
    typo on every line would take hours. The expansion compares at most MAX_STEPS candidates."""
    monkeypatch.setattr(expand, "MAX_STEPS", 450)  # two suggestions among ~200 names
    layers = [f"relu layer{i}" for i in range(100)]
    found = errors(net(*layers, *["relu (layer5x)"] * 5))
    assert [d.code for d in found] == ["E0202"] * 5
    assert [d.help[0].startswith("did you mean") for d in found] == [True, True, False, False, False]


def test_an_unused_layer_in_a_repeat_is_one_warning():
    network = archc.loads(net("repeat 1000 { conv c (x): 4 @ 1x1 }"), "t.arch")
    (w,) = network.warnings
    assert w.code == "W0302" and w.message.startswith("layer `c_1` is never used")
    assert "nor are the 998 other layers its statement makes (`c_2`, `c_3`, ..., `c_999`)" in w.message


@pytest.mark.skipif(not hasattr(socket, "AF_UNIX"), reason="no unix sockets")
def test_a_socket_is_refused(tmp_path):
    path = tmp_path / "s.arch"
    with socket.socket(socket.AF_UNIX) as server:
        server.bind(str(path))
        with pytest.raises(archc.ArchError) as info:
            archc.load(path)
    (d,) = info.value.errors
    assert d.code == "E0102" and "a socket, not a regular file" in d.message
