"""Fuzzing: no input, however malformed or hostile, may crash archc, hang it or make it eat memory.

Every input must end in a valid analysis (and then the tables, the JSON and the
generated code of both targets must work, the code must compile) or in archc's
own diagnostics (`archc.ArchError`, every diagnostic with a code, every one
renderable), within `fuzz_specs.TIME_LIMIT` (2 s; the tables and code of a
valid network get 2 ms a layer more, as a table rich renders whole takes ~1 ms a row). On
the command line that means exit status 1, `error:` lines and no Python
traceback, within 1 GiB of address space.

What is fuzzed:

- `test_generated_specs`: specs built from the grammar's pieces by
  `fuzz_specs.specs()` (imports, blocks, repeats, every layer type, arguments
  of every kind, activations, references, comments, `;`), most of them
  nearly valid so that they reach shapes, costs, memory, tables and code;
- `test_mutated_specs`: the bundled specs/*.arch with tokens and lines
  deleted, duplicated, swapped and replaced, stray characters inserted and
  numbers made huge (`fuzz_specs.mutants()`);
- `test_options`: the bundled specs with random `batch` (up to 10**400),
  `dtype` and `inputs` (shapes of any rank and size, unknown names);
- `test_hostile_text`, `test_hostile_file` and `test_cli_*`: fixed inputs
  that no random walk finds: deep nesting, megabyte lines, 10**9 repeats,
  NUL bytes, BOMs, CR line ends, non-UTF-8 files, directories, /dev/zero,
  symlink loops; the heavy ones run as `python -m archc check` in a
  subprocess under a 1 GiB RLIMIT_AS;
- regressions for every bug the fuzzing found.

The quick version runs with the rest of the suite (about 30 s): 150
generated, 300 mutated and 80 option sets, derandomized so that every run
(and CI) sees the same inputs. The long version is on demand: set
ARCHC_FUZZ_EXAMPLES to the number of examples for the generated and the
mutated specs (a tenth of it for the options); the examples are then random
(not derandomized), the slow hostile cases run too (the time limit is
expected to fail on them: each says why), and with `-s` the module prints how
many inputs were tried and how many were valid or diagnosed::

    ARCHC_FUZZ_EXAMPLES=20000 python -m pytest -q -s tests/test_fuzz.py

A failure prints the input (and Hypothesis's reproduction blob for the
random tests).
"""

from __future__ import annotations

import os
import re
import resource
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import pytest
from fuzz_specs import OUTCOMES, ROOT, SPEC_TEXTS, SPECS, TIME_LIMIT, check, exercise, mutants, options, specs
from hypothesis import HealthCheck, given, settings

import archc
from archc import ast
from archc.codegen import generate
from archc.diagnostics import Span
from archc.expand import EvalError, evaluate
from archc.ops import OPS

LONG = int(os.environ.get("ARCHC_FUZZ_EXAMPLES") or 0)
GENERATED = LONG or 150
MUTATED = LONG or 300
OPTIONS = LONG // 10 or 80  # each one analyses a whole bundled spec, tables and code included
MEMORY = 2**30  # address space of a subprocess, bytes


def fuzz_settings(examples: int):
    return settings(
        max_examples=examples,
        derandomize=not LONG,
        database=None,
        deadline=None,  # check() times every input itself and shows it when it is too slow
        suppress_health_check=list(HealthCheck),
        print_blob=True,
    )


@pytest.fixture(scope="module", autouse=True)
def summary():
    """Warm up (the first run builds the parser and reads the kernels), then report the counts."""
    exercise(archc.loads(SPEC_TEXTS["lenet5.arch"], "warm-up.arch"))
    yield
    for source in ("generated", "mutated", "options", "hostile"):
        valid, diagnosed = OUTCOMES[source, "valid"], OUTCOMES[source, "diagnosed"]
        if valid or diagnosed:
            print(f"\nfuzz: {source}: {valid + diagnosed} inputs tried, {valid} valid, {diagnosed} diagnosed")


# -- random inputs ---------------------------------------------------------------------------------


def test_generated_specs():
    seen: Counter = Counter()

    @fuzz_settings(GENERATED)
    @given(specs())
    def run(text):
        seen[check(text, source="generated")] += 1

    run()
    # The generator is meant to write nearly valid specs, so that the passes after parsing get fuzzed too.
    assert seen["valid"] >= sum(seen.values()) // 4, seen
    assert seen["diagnosed"] >= sum(seen.values()) // 10, seen


@fuzz_settings(MUTATED)
@given(mutants())
def test_mutated_specs(text):
    check(text, source="mutated", base=SPECS)  # imports of the bundled specs resolve


@fuzz_settings(OPTIONS)
@given(options())
def test_options(case):
    name, kwargs = case
    text = SPEC_TEXTS[name]
    check(f"<{name} with {kwargs}>", load=lambda: archc.loads(text, name, base=SPECS, **kwargs), source="options")


# -- hostile texts -------------------------------------------------------------------------------------

LENET = SPEC_TEXTS["lenet5.arch"]
LINE = 2**20 - 2000  # a line of nearly 1 MiB: the whole spec stays under the size limit


def net(*lines: str, shape: str = "3x8x8") -> str:
    return "network N {\n  input x: " + shape + "\n" + "".join(f"  {line}\n" for line in lines) + "}\n"


def nested_repeats(depth: int) -> str:
    return net("repeat 1 { " * depth + "relu" + " }" * depth)


def nested_blocks(depth: int) -> str:
    blocks = "".join(f"block b{i}(c) {{\n  b{i + 1}: c\n}}\n" for i in range(depth))
    return blocks + f"block b{depth}(c) {{\n  conv: c @ 1x1\n}}\n" + net("b0: 4")


HOSTILE = {
    "empty": lambda: "",
    "only-comments": lambda: "# nothing\n   # but comments\n#",
    "only-separators": lambda: "\n\n;;\n \t\n;",
    "bom": lambda: "\ufeff" + LENET,
    "crlf": lambda: LENET.replace("\n", "\r\n"),
    "cr-only": lambda: LENET.replace("\n", "\r"),
    "nul-byte": lambda: LENET.replace("conv", "co\x00nv", 1),
    "nul-bytes-only": lambda: "\x00" * 1000,
    "control-characters": lambda: LENET.replace(" ", "\x0c", 3).replace("tanh", "ta\x7fnh", 1),
    "unicode-everywhere": lambda: net("conv \u00e9t\u00e9: 4 @ 3x3", "relu \U0001f600", "dense \u202e: 3"),
    "surrogates": lambda: net("relu \ud800"),
    "number-10**18": lambda: LENET.replace("6 @", f"{10**18} @"),
    "number-10**100": lambda: LENET.replace("6 @", f"{10**100} @"),
    "numbers-all-10**100": lambda: "".join(str(10**100) if c.isdigit() else c for c in LENET),
    "input-10**100": lambda: net(shape="x".join([str(10**100)] * 3)),
    "input-2**62": lambda: net("flatten", "dense: 2", shape=f"1x{2**31}x{2**31}"),
    "input-too-large": lambda: net(shape=f"3x{2**31}x{2**31}"),
    "product-overflow": lambda: net("dense: 4611686018427387904 * 2"),
    "float-1e400": lambda: net("dropout: 1e400", "bn: eps=1e400 momentum=1e-400", "leaky_relu: 1e400"),
    "float-10**400": lambda: net(f"leaky_relu: {10**400}", f"bn: eps={10**400}", f"elu: 0 - {10**30}"),
    "float-10**400-arithmetic": lambda: net(f"dropout: {10**400} * 0.5"),
    "uneven-10**400": lambda: net(f"conv: 4 @ 4 /3 pad=({10**400},0)", shape="3x8"),
    "receptive-field-10**400": lambda: net(f"conv: 4 @ 3 /{10**400} pad=({10**400},0)", "relu", shape="3x8"),
    "float-nan": lambda: net("bn: eps=1e400 - 1e400", "elu: 1e400 - 1e400"),
    "huge-stride-dilation": lambda: net(f"conv: 4 @ 3x3 /{10**30} dilation={10**30}", f"maxpool: 2 /{10**30}"),
    "huge-padding": lambda: net(f"conv: 4 @ 3x3 pad=({10**30},0)x(0,{10**30})", f"zeropad: {2**62}"),
    "zero-everything": lambda: net("conv: 0 @ 0x0 /0 dilation=0 groups=0", "maxpool: 0", "upsample: 0", "dense: 0"),
    "negative-everything": lambda: net("conv: 0 - 4 @ 3x3 pad=0 - 1", "zeropad: (0 - 1, 0)x(0, 0)", "lrn: 0 - 5"),
    "parens-10000": lambda: net("conv: 4 @ " + "(" * 10_000 + "3" + ")" * 10_000),
    "pair-parens-5000": lambda: net("zeropad: " + "(" * 5000 + "(1,1)" + ")" * 5000),
    "line-1MB-comment": lambda: net("relu  # " + "a" * LINE),
    "line-1MB-name": lambda: net("relu " + "a" * LINE),
    "line-1MB-type": lambda: net("a" * LINE),
    "line-1MB-reference": lambda: net("relu (" + "a" * LINE + ")"),
    "line-1MB-string": lambda: 'import "' + "a" * LINE + '"\n' + LENET,
    "line-1MB-garbage": lambda: net("conv: 4 @ 3x3 " + "@" * LINE),
    "dotted-reference-10000": lambda: net("relu (" + ".".join(["a"] * 10_000) + ")"),
    "repeat-10**9": lambda: net("repeat 1000000000 {", "  relu", "}"),
    "repeat-10**100": lambda: net(f"repeat {10**100} {{", "  relu", "}"),
    "repeat-arithmetic-overflow": lambda: net("repeat 4611686018427387904 * 4 {", "  relu", "}"),
    "repeat-of-repeats-overflow": lambda: net("repeat 1000 { repeat 1000 { relu } }"),
    "repeat-of-blocks-overflow": lambda: "block b() {\n  repeat 1000 { relu }\n}\n" + net("repeat 1000 { b }"),
    "repeat-empty-10**5": lambda: net("repeat 100000 { }"),
    "repeats-nested-100": lambda: nested_repeats(100),
    "repeats-nested-300": lambda: nested_repeats(300),
    "repeats-nested-1000": lambda: nested_repeats(1000),
    "digits-5000": lambda: net("conv: 4 @ " + "9" * 5000),
    "dims-digits-5000": lambda: net("conv: 4 @ 3x" + "9" * 5000),
    "plus-chain-10000": lambda: net("conv: 4 @ 3" + " + 0" * 10_000),
    "product-chain-10000": lambda: net("dense: 1" + " * 1" * 10_000),
    "mixed-chain-3000": lambda: net("dense: 7" + " * 3 // 3 + 1 - 1 % 5" * 3000),
    "blocks-nested-60": lambda: nested_blocks(60),
    "blocks-nested-200": lambda: nested_blocks(200),
    "block-calls-itself": lambda: "block b(c) {\n  b: c\n}\n" + net("b: 4"),
    "blocks-call-each-other": lambda: "block a() {\n  b\n}\nblock b() {\n  a\n}\n" + net("a"),
    "block-params-3000": lambda: "block b(" + ", ".join(f"p{i}=1" for i in range(3000)) + ") {\n relu\n}\n" + net("b"),
    "block-args-3000": lambda: "block b(c) {\n relu\n}\n" + net("b: " + " ".join(["1"] * 3000)),
    "inputs-of-add-10000": lambda: net("add (" + ", ".join(["x"] * 10_000) + ")"),
    "imports-missing-1000": lambda: "".join(f'import "no/such/{i}.arch"\n' for i in range(1000)) + LENET,
    "import-nul": lambda: 'import "a\x00b.arch"\n' + LENET,
    "import-directory": lambda: 'import "."\nimport ""\nimport "/"\n' + LENET,
    "import-dev-zero": lambda: 'import "/dev/zero"\n' + LENET,
    "two-networks": lambda: LENET + LENET,
    "networks-300": lambda: LENET * 300,
    "unclosed-bodies-10000": lambda: "network N {\n" + "repeat 1 {\n" * 10_000,
    "closing-braces-10000": lambda: LENET + "}\n" * 10_000,
    "errors-1000": lambda: net(*["maxpoo: 2x2"] * 1000),
    "statements-on-one-line-5000": lambda: net("; ".join(["relu"] * 5000) + "; dense: 3"),
    "layers-300": lambda: net(*["conv: 3 @ 3x3 pad=1 -> relu"] * 300),
    "text-over-1MiB": lambda: LENET + "#" * 2**20,
}

# Slow but finite: they run in the long version only (see the module docstring), as expected
# failures of the time limit. `loads` times the analysis alone, `check` everything (tables, code).
SLOW = {
    "layers-5000": (
        lambda: net("repeat 5000 {", "  conv: 4 @ 3x3 pad=1 -> relu", "}"),
        "check",
        "the rich table takes about a millisecond a row",
    ),
    "layers-199999": (
        lambda: net("repeat 199999 {", "  relu", "}"),
        "loads",
        "the analysis takes ~25 us a layer up to the 200,000-layer limit (their rich table: minutes)",
    ),
    "statements-100000": (
        lambda: net(*["relu"] * 100_000),
        "loads",
        "parsing and expanding take tens of microseconds a statement, and a 1 MiB file holds 100,000s",
    ),
    "errors-20000": (
        lambda: net(*["maxpoo: 2x2"] * 20_000),
        "loads",
        "every unknown type costs a difflib suggestion, and the number of errors is not capped",
    ),
    "duplicate-arguments-60000": (
        lambda: net("conv: 4 @ 3x3 " + " ".join(["pad=1"] * 60_000)),
        "loads",
        "one E0214 diagnostic per repeated argument, with no cap",
    ),
}


@pytest.mark.parametrize("name", list(HOSTILE))
def test_hostile_text(name):
    check(HOSTILE[name](), source="hostile")


@pytest.mark.parametrize("name", list(SLOW))
def test_slow_inputs(name):
    if not LONG:
        pytest.skip("slow; runs when ARCHC_FUZZ_EXAMPLES is set")
    text, stage, reason = SLOW[name]
    start = time.perf_counter()
    if stage == "check":
        try:
            check(text(), source="hostile")
        except AssertionError as err:
            if " took " not in str(err).split("\n", 1)[0]:  # over the time limit is expected; anything else is not
                raise
    else:
        try:
            archc.loads(text(), "slow.arch")
        except archc.ArchError as err:
            assert err.errors
    elapsed = time.perf_counter() - start
    if elapsed >= TIME_LIMIT:
        pytest.xfail(f"{elapsed:.1f} s, over {TIME_LIMIT} s: {reason}")


# -- regressions: bugs the fuzzing found, fixed ------------------------------------------------------------


BEYOND_FLOATS = {  # a whole number of 400 digits where a float was computed: OverflowError
    "float-parameter": (net(f"dropout: {10**400}"), "E0205"),  # infinite, as 1e400 is, and out of range
    "float-parameter-accepted": (net(f"leaky_relu: {10**400}", f"relu -> elu({10**400})"), None),
    "mixed-arithmetic": (net(f"dropout: {10**400} * 0.5"), "E0213"),
    "uneven-stride-warning": (net(f"conv: 4 @ 4 /3 pad=({10**400},0)", shape="3x8"), "E0306"),
    "receptive-field": (net(f"conv: 4 @ 3 /{10**400} pad=({10**400},0)", shape="3x8"), "E0306"),  # sizes <= 2^62
}


@pytest.mark.parametrize("name", list(BEYOND_FLOATS))
def test_numbers_beyond_floats(name):
    text, code = BEYOND_FLOATS[name]
    assert check(text) == ("valid" if code is None else "diagnosed")
    if code is not None:
        with pytest.raises(archc.ArchError) as info:
            archc.loads(text, "t.arch")
        assert code in [d.code for d in info.value.errors]


def test_batch_beyond_floats(tmp_path):
    """human_bytes() turned the activation bytes of --batch 10**400 into a float: OverflowError in every table."""
    assert check(LENET, load=lambda: archc.loads(LENET, "l.arch", batch=10**400)) == "valid"
    path = tmp_path / "lenet5.arch"
    path.write_text(LENET)
    run = limited([sys.executable, "-m", "archc", "table", str(path), "--batch", str(10**400)])
    assert run.returncode == 0 and "Traceback" not in run.stderr, run.stderr[-2000:]
    assert " TiB" in run.stdout


def test_empty_input_shape():
    """inputs={"image": ()} raised ValueError (min() of an empty sequence)."""
    assert check(LENET, load=lambda: archc.loads(LENET, "l.arch", inputs={"image": ()})) == "diagnosed"
    with pytest.raises(archc.ArchError) as info:
        archc.loads(LENET, "l.arch", inputs={"image": ()})
    assert [d.code for d in info.value.errors] == ["E0205"]


def test_long_operator_chains():
    """`1 + 1 + ... + 1` nests as deep as it is long: evaluating 1,000 terms overflowed Python's stack."""
    span = Span("t.arch", 1, 1, 1, 2)
    chain = ast.Num(1, span)
    for i in range(20_000):
        chain = ast.BinOp("+-*"[i % 3], chain, ast.Num(1, span), span)
    assert evaluate(ast.Value((chain,), span), {}) == 1
    assert check(net("conv: 4 @ 3" + " + 0" * 10_000)) == "valid"
    # errors keep their order: the leftmost failing operation is the one reported
    bad = ast.BinOp("+", ast.BinOp("//", ast.Num(1, span), ast.Num(0, span), span), ast.Name("q", span), span)
    with pytest.raises(EvalError, match="division by zero"):
        evaluate(ast.Value((bad,), span), {})


def test_zero_zeropad_has_numpy_code():
    """`zeropad: 0` made the NumPy generator call pad() with None (TypeError: not an expression)."""
    for pad in ("0", "0x0", "(0,0)x(0,0)"):
        assert check(net(f"zeropad: {pad}")) == "valid"


@pytest.mark.parametrize("op", ["add", "shortcut"])
def test_sums_of_many_inputs_compile(op):
    """`add` of 10,000 inputs became `x + x + ...`, too deeply nested for CPython's compiler (RecursionError)."""
    if op not in OPS:
        pytest.skip(f"no layer type {op}")
    assert check(net(f"{op} (" + ", ".join(["x"] * 10_000) + ")")) == "valid"
    network = archc.loads(net(f"{op} (" + ", ".join(["x"] * 65) + ")"), "t.arch")
    assert "return sum(" in generate(network, "numpy").code and "return sum(" in generate(network, "torch").code
    network = archc.loads(net(f"{op} (x, x, x)"), "t.arch")
    assert re.search(r"return (\w+) \+ \1 \+ \1\n", generate(network, "numpy").code)  # a few: still `a + b + c`


@pytest.mark.parametrize("file", ["x[/x].arch", "a[/].arch", "[bold]b.arch", "c:smile:.arch"])
def test_file_names_are_not_rich_markup(file):
    """The rich table's title is `Name (file)`: a file name with `[/x]` raised rich's MarkupError."""
    network = archc.loads(LENET, file)
    assert network.table("rich").splitlines()[0] == f"LeNet5 ({file})"
    assert f"LeNet5 ({file})" in network.table("rich", color=True)


def test_nested_repeat_overflow_fails_fast():
    """repeat 1000 { repeat 1000 { ... } } built 200,000 layers (4 s) before reporting E0213."""
    start = time.perf_counter()
    with pytest.raises(archc.ArchError) as info:
        archc.loads(net("repeat 1000 {", "  repeat 1000 { relu }", "}"), "big.arch")
    assert [d.code for d in info.value.errors] == ["E0213"]
    assert time.perf_counter() - start < 0.5
    # a repeat whose first iteration has an error expands in full and reports just that error
    with pytest.raises(archc.ArchError) as info:
        archc.loads(net("repeat 3 {", "  relu r (later_1)", "  relu later", "}"), "t.arch")
    assert [d.code for d in info.value.errors] == ["E0202"]


def test_import_paths_that_name_no_file(tmp_path):
    """`import "a<NUL>b"` raised ValueError and an import of a symlink loop RuntimeError."""
    (tmp_path / "loop.arch").symlink_to("loop.arch")
    main = tmp_path / "main.arch"
    main.write_text('import "a\x00b.arch"\nimport "loop.arch"\n' + LENET)
    assert check("", load=lambda: archc.load(main)) == "diagnosed"
    with pytest.raises(archc.ArchError) as info:
        archc.load(main)
    assert [d.code for d in info.value.errors] == ["E0102", "E0102"]
    assert "NUL" in info.value.errors[0].message and "loop" in info.value.errors[1].message


def test_paths_with_a_nul_byte(tmp_path):
    """archc.load("a<NUL>b") and archc.loads(..., base=...) raised ValueError."""
    assert check("", load=lambda: archc.load("a\x00b.arch")) == "diagnosed"
    assert check(LENET, load=lambda: archc.loads(LENET, "a\x00b.arch", base=tmp_path)) == "valid"


def test_size_limit():
    """A spec of 10 MiB took 3-7 GiB and minutes; files and texts over 1 MiB are refused at once."""
    start = time.perf_counter()
    for text in (LENET + "#" * 2**20, "a;" * 2**20):
        with pytest.raises(archc.ArchError) as info:
            archc.loads(text, "big.arch")
        assert [d.code for d in info.value.errors] == ["E0102"]
        assert "larger than 1 MiB" in info.value.errors[0].message
    assert time.perf_counter() - start < 0.5


def test_endless_files_are_not_read_to_the_end():
    """archc.load("/dev/zero") read until memory ran out (MemoryError); now it stops at the size limit."""
    if not Path("/dev/zero").exists():
        pytest.skip("no /dev/zero")
    code = "import archc\ntry:\n    archc.load('/dev/zero')\nexcept archc.ArchError as err:\n    print(err)\n"
    run = limited([sys.executable, "-c", code])
    assert run.returncode == 0 and "larger than 1 MiB" in run.stdout, run.stderr[-2000:]


# -- files ---------------------------------------------------------------------------------------------------


@pytest.fixture
def files(tmp_path) -> dict[str, Path]:
    made = {
        "non-utf8": b"network N {\n  input x: 3\n  relu \xff\xfe\n}\n",
        "latin-1": "network N {\n  input x: 3\n  relu caf\u00e9\n}\n".encode("latin-1"),
        "utf-16": LENET.encode("utf-16"),
        "bom": b"\xef\xbb\xbf" + LENET.encode(),
        "nul": LENET.encode().replace(b"conv", b"\x00", 1),
        "empty": b"",
        "comments": b"# only a comment\n",
        "crlf": LENET.replace("\n", "\r\n").encode(),
        "random-bytes": bytes(range(256)) * 64,
    }
    paths = {}
    for name, data in made.items():
        path = tmp_path / f"{name}.arch"
        path.write_bytes(data)
        paths[name] = path
    paths["directory"] = tmp_path
    paths["missing"] = tmp_path / "missing.arch"
    paths["too-large"] = tmp_path / "large.arch"
    with open(paths["too-large"], "wb") as out:  # sparse: no disk needed
        out.truncate(11 * 2**20)
    (tmp_path / "loop.arch").symlink_to("loop.arch")
    paths["symlink-loop"] = tmp_path / "loop.arch"
    return paths


FILES = ["non-utf8", "latin-1", "utf-16", "bom", "nul", "empty", "comments", "crlf", "random-bytes"]
FILES += ["directory", "missing", "too-large", "symlink-loop"]


@pytest.mark.parametrize("name", FILES)
def test_hostile_file(files, name):
    path = files[name]
    check(f"<file {name}>", load=lambda: archc.load(path), source="hostile")
    check(f"<file {name}>", load=lambda: archc.load(str(path)), source="hostile")


# -- the command line, in a subprocess with bounded memory ------------------------------------------------------


def limited(command: list[str], timeout: float = 60) -> subprocess.CompletedProcess:
    def cap():
        resource.setrlimit(resource.RLIMIT_AS, (MEMORY, MEMORY))

    return subprocess.run(
        command, capture_output=True, text=True, errors="replace", timeout=timeout, preexec_fn=cap, cwd=ROOT
    )


def archc_check(path: Path, timeout: float = 60) -> subprocess.CompletedProcess:
    return limited([sys.executable, "-m", "archc", "check", str(path)], timeout)


def assert_diagnosed(run: subprocess.CompletedProcess, located: bool = True) -> None:
    assert "Traceback" not in run.stderr, run.stderr[-3000:]
    assert run.returncode == 1, (run.returncode, run.stdout[-1000:], run.stderr[-2000:])
    lines = run.stderr.splitlines()
    assert any(" error: " in line or line.startswith("error: ") for line in lines), run.stderr[-2000:]
    if located:
        assert any(line.split(": error: ")[0].count(":") >= 2 for line in lines if ": error: " in line), run.stderr


@pytest.mark.parametrize("name", ["empty", "directory", "missing", "non-utf8", "too-large", "symlink-loop"])
def test_cli_unreadable_or_empty(files, name):
    assert_diagnosed(archc_check(files[name]), located=False)


@pytest.mark.parametrize("name", ["nul", "bom", "utf-16"])
def test_cli_located_errors(files, name):
    assert_diagnosed(archc_check(files[name]), located=name != "utf-16")


def test_cli_dev_zero():
    if not Path("/dev/zero").exists():
        pytest.skip("no /dev/zero")
    assert_diagnosed(archc_check(Path("/dev/zero"), timeout=30), located=False)


def test_cli_table_with_markup_in_the_file_name(tmp_path):
    (tmp_path / "net[").mkdir()
    path = tmp_path / "net[" / "x].arch"  # the table's title holds `net[/x].arch`
    path.write_text(LENET)
    run = limited([sys.executable, "-m", "archc", "table", str(path)])
    assert run.returncode == 0 and "Traceback" not in run.stderr, run.stderr[-2000:]
    assert f"LeNet5 ({path})" in run.stdout


HEAVY = {  # name -> (text, exit status): the huge and deep cases, each in a subprocess under 1 GiB
    "repeat-10**9": (HOSTILE["repeat-10**9"], 1),
    "repeat-of-repeats-overflow": (HOSTILE["repeat-of-repeats-overflow"], 1),
    "numbers-10**100": (HOSTILE["numbers-all-10**100"], 1),
    "input-too-large": (HOSTILE["input-too-large"], 1),
    "parens-10000": (HOSTILE["parens-10000"], 1),  # E0213: nested more than 100 deep
    "line-1MB-type": (HOSTILE["line-1MB-type"], 1),
    "line-1MB-garbage": (HOSTILE["line-1MB-garbage"], 1),
    "blocks-nested-200": (HOSTILE["blocks-nested-200"], 1),
    "networks-300": (HOSTILE["networks-300"], 1),
    "unclosed-bodies-10000": (HOSTILE["unclosed-bodies-10000"], 1),
    "import-dev-zero": (HOSTILE["import-dev-zero"], 1),
    "plus-chain-10000": (HOSTILE["plus-chain-10000"], 0),
    "repeats-nested-300": (HOSTILE["repeats-nested-300"], 1),  # E0213 as well
    "repeats-nested-1000": (HOSTILE["repeats-nested-1000"], 1),
    "digits-5000": (HOSTILE["digits-5000"], 1),  # E0213: more digits than Python reads
}


MEMORY_BOUND = {  # just under the size limit, the forms that take the most memory per byte
    "a-semicolons": "a;",
    "relu-semicolons": "relu;",
    "named-semicolons": "relu x;",
}


@pytest.mark.parametrize("name", list(MEMORY_BOUND))
def test_cli_largest_files_fit_in_memory(tmp_path, name):
    """Files of 10 MiB made archc raise MemoryError within 1 GiB; the largest accepted file must fit."""
    if not LONG:
        pytest.skip("slow (10-30 s each); runs when ARCHC_FUZZ_EXAMPLES is set")
    head, tail = "network N {\n  input x: 3\n  ", "\n}\n"
    piece = MEMORY_BOUND[name]
    path = tmp_path / "largest.arch"
    path.write_text(head + piece * ((2**20 - len(head) - len(tail)) // len(piece)) + tail)
    run = archc_check(path, timeout=300)
    assert "Traceback" not in run.stderr, run.stderr[-3000:]
    assert run.returncode == 1, run.stderr[-2000:]


@pytest.mark.parametrize("name", list(HEAVY))
def test_cli_heavy_inputs(tmp_path, name):
    text, status = HEAVY[name]
    path = tmp_path / "heavy.arch"
    path.write_text(text(), encoding="utf-8")
    start = time.perf_counter()
    run = archc_check(path)
    elapsed = time.perf_counter() - start
    if status == 0:
        assert run.returncode == 0 and "Traceback" not in run.stderr, run.stderr[-3000:]
    else:
        assert_diagnosed(run)
    assert elapsed < TIME_LIMIT + 3, f"{elapsed:.1f} s, with the interpreter's start"  # start-up takes ~0.5 s
