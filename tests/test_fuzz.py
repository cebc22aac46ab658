"""Fuzzing: no input, however malformed or hostile, may crash archc, hang it or make it eat memory.

Every input must end in a valid analysis (and then the tables, the JSON and the
generated code of both targets must work, the code must compile) or in archc's
own diagnostics (`archc.ArchError`, every diagnostic with a code, every one
renderable). On the command line that means exit status 1, `error:` lines and
no Python traceback, within 1 GiB of address space. No test here times archc:
a hang is caught by a guard far above the normal time (`fuzz_specs.HANG_GUARD`,
60 s an input; subprocesses get 60 s too), and where the amount of work is
the point it is counted (layers built, parses run) or measured (memory).
Speed is measured in benchmarks/.

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
(and CI) sees the same inputs, and the large inputs (`SIZED`, the largest
files) at a tenth of their size or less. The long version is on demand: set
ARCHC_FUZZ_EXAMPLES to the number of examples for the generated and the
mutated specs (a tenth of it for the options); the examples are then random
(not derandomized), the large inputs have their full size, and with `-s` the
module prints how many inputs were tried and how many were valid or
diagnosed::

    ARCHC_FUZZ_EXAMPLES=20000 python -m pytest -q -s tests/test_fuzz.py

A failure prints the input (and Hypothesis's reproduction blob for the
random tests).
"""

from __future__ import annotations

import contextlib
import os
import re
import resource
import subprocess
import sys
import tracemalloc
from collections import Counter
from pathlib import Path

import pytest
from fuzz_specs import (
    HANG_GUARD,
    OUTCOMES,
    ROOT,
    SPEC_TEXTS,
    SPECS,
    check,
    check_diagnostics,
    exercise,
    hang_guard,
    mutants,
    options,
    specs,
)
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

# Large inputs: at a tenth of their size in the quick version, in full in the long one (each takes
# 3-8 s in full, and what it exercises scales linearly). `loads` analyses, `check` does everything.
SIZED = {
    "layers": (lambda n: net(f"repeat {n} {{", "  conv: 4 @ 3x3 pad=1 -> relu", "}"), 5000, "check"),
    "relu-layers": (lambda n: net(f"repeat {n} {{", "  relu", "}"), 199_999, "loads"),  # up to the layer limit
    "statements": (lambda n: net(*["relu"] * n), 100_000, "loads"),  # a 1 MiB file holds 100,000s
    "unknown-types": (lambda n: net(*["maxpoo: 2x2"] * n), 20_000, "loads"),  # a suggestion for each
    "duplicate-arguments": (lambda n: net("conv: 4 @ 3x3 " + " ".join(["pad=1"] * n)), 60_000, "loads"),
}


@pytest.mark.parametrize("name", list(SIZED))
def test_large_inputs(name):
    make, size, stage = SIZED[name]
    text = make(size if LONG else size // 10)
    if stage == "check":
        assert check(text, source="hostile") == "valid"
        return
    with hang_guard(HANG_GUARD, text):  # the analysis alone: code for 100,000s of layers is another matter
        try:
            archc.loads(text, "large.arch")
        except archc.ArchError as err:
            check_diagnostics(err)


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


def test_nested_repeat_overflow_fails_fast(monkeypatch):
    """repeat 1000 { repeat 1000 { ... } } built 200,000 layers (4 s) before reporting E0213; now
    it runs no iteration (counted, not timed: a busy machine cannot fail the test)."""
    iterations = []
    iteration = archc.expand.Scope.iteration
    monkeypatch.setattr(archc.expand.Scope, "iteration", lambda self, i: iterations.append(i) or iteration(self, i))
    with pytest.raises(archc.ArchError) as info:
        archc.loads(net("repeat 1000 {", "  repeat 1000 { relu }", "}"), "big.arch")
    assert [d.code for d in info.value.errors] == ["E0213"]
    assert iterations == []
    # a repeat whose first iteration has an error expands in full and reports just that error
    with pytest.raises(archc.ArchError) as info:
        archc.loads(net("repeat 3 {", "  relu r (later_1)", "  relu later", "}"), "t.arch")
    assert [d.code for d in info.value.errors] == ["E0202"]


def test_import_paths_that_name_no_file(tmp_path):
    """`import "a<NUL>b"` raised ValueError and an import of a symlink loop RuntimeError."""
    (tmp_path / "loop.arch").symlink_to("loop.arch")
    text = 'import "a\x00b.arch"\nimport "loop.arch"\n' + LENET  # as text: a file with a NUL is no spec
    load = lambda: archc.loads(text, str(tmp_path / "main.arch"), base=tmp_path)  # noqa: E731
    assert check("", load=load) == "diagnosed"
    with pytest.raises(archc.ArchError) as info:
        load()
    assert [d.code for d in info.value.errors] == ["E0102", "E0102"]
    assert "NUL" in info.value.errors[0].message and "loop" in info.value.errors[1].message


def test_paths_with_a_nul_byte(tmp_path):
    """archc.load("a<NUL>b") and archc.loads(..., base=...) raised ValueError."""
    assert check("", load=lambda: archc.load("a\x00b.arch")) == "diagnosed"
    assert check(LENET, load=lambda: archc.loads(LENET, "a\x00b.arch", base=tmp_path)) == "valid"


def test_size_limit(monkeypatch):
    """A spec of 10 MiB took 3-7 GiB and minutes; files and texts over 1 MiB are refused at once."""
    parsed = []
    monkeypatch.setattr(archc.analysis, "parse", lambda text, file: parsed.append(file))
    for text in (LENET + "#" * 2**20, "a;" * 2**20):
        with pytest.raises(archc.ArchError) as info:
            archc.loads(text, "big.arch")
        assert [d.code for d in info.value.errors] == ["E0102"]
        assert "larger than 1 MiB" in info.value.errors[0].message
    assert not parsed  # refused before it is read


def test_endless_files_are_not_read_to_the_end():
    """archc.load("/dev/zero") read until memory ran out (MemoryError); now only regular files are read."""
    if not Path("/dev/zero").exists():
        pytest.skip("no /dev/zero")
    code = "import archc\ntry:\n    archc.load('/dev/zero')\nexcept archc.ArchError as err:\n    print(err)\n"
    run = limited([sys.executable, "-c", code])
    assert run.returncode == 0 and "a device, not a regular file" in run.stdout, run.stderr[-2000:]


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


@pytest.mark.parametrize(
    "name", ["empty", "directory", "missing", "non-utf8", "utf-16", "nul", "too-large", "symlink-loop"]
)
def test_cli_unreadable_or_empty(files, name):
    assert_diagnosed(archc_check(files[name]), located=False)


def test_cli_accepts_a_byte_order_mark(files):
    run = archc_check(files["bom"])
    assert run.returncode == 0 and "LeNet5 is valid" in run.stdout, run.stderr[-2000:]


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
def test_largest_files_fit_in_memory(tmp_path, name):
    """Files of 10 MiB made archc raise MemoryError within 1 GiB; the largest accepted file must fit.

    Memory grows with the text, about linearly: a file of 16 KiB, measured by tracemalloc, must need
    less than 768 MiB at 1 MiB (the rest of 1 GiB is the interpreter's). The long version runs the
    1 MiB file itself, under 1 GiB of address space.
    """
    head, tail = "network N {\n  input x: 3\n  ", "\n}\n"
    piece = MEMORY_BOUND[name]
    size = 2**20 if LONG else 2**14
    text = head + piece * ((size - len(head) - len(tail)) // len(piece)) + tail
    tracemalloc.start()
    try:
        with contextlib.suppress(archc.ArchError):  # at 1 MiB, too many layers or unknown types
            archc.loads(text, "largest.arch")
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak * (2**20 / size) < 768 * 2**20, f"{peak / size:.0f} bytes a byte of text"
    if LONG:
        path = tmp_path / "largest.arch"
        path.write_text(text)
        run = archc_check(path, timeout=300)
        assert "Traceback" not in run.stderr, run.stderr[-3000:]
        assert run.returncode == 1, run.stderr[-2000:]


@pytest.mark.parametrize("name", list(HEAVY))
def test_cli_heavy_inputs(tmp_path, name):
    text, status = HEAVY[name]
    path = tmp_path / "heavy.arch"
    path.write_text(text(), encoding="utf-8")
    run = archc_check(path)  # each takes 0.5-2 s, the interpreter's start included; a hang, 60 s
    if status == 0:
        assert run.returncode == 0 and "Traceback" not in run.stderr, run.stderr[-3000:]
    else:
        assert_diagnosed(run)
