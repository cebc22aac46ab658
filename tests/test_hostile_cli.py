"""Issue 14, the command line, files, signals, terminals and the Python API under hostile use.

Outputs (`-o`): a regular file is replaced whole, a link is written through, a device or FIFO is written
through and never replaced, the spec being read is never overwritten. Signals: SIGINT and SIGTERM at any
step of a write leave the old output or the whole new one, no temporary file, and no traceback. Terminals:
nothing a spec holds reaches the terminal as a control sequence. The API: a wrong argument is a TypeError
or ValueError that names it.

Device nodes are made with `os.mknod` inside the test's own directory (a "null" and a "full" device with the
numbers of /dev/null and /dev/full), so no test can replace a real device, even against the old code.
"""

from __future__ import annotations

import contextlib
import json
import os
import random
import stat
import subprocess
import sys
import tempfile
import textwrap
from pathlib import Path

import pytest
from conftest import SPECS
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import archc
from archc.diagnostics import ArchError, Diagnostic, Span, render, render_all
from archc.diagram import DiagramError, to_dot
from archc.diagram import render as render_diagram
from archc.files import write_output

ROOT = Path(__file__).resolve().parent.parent
LENET = SPECS / "lenet5.arch"


def archc_cli(*args, cwd=None, env=None):
    full_env = {**os.environ, "PYTHONPATH": str(ROOT)} | (env or {})
    return subprocess.run(
        [sys.executable, "-m", "archc", *map(str, args)], capture_output=True, text=True, cwd=cwd, env=full_env
    )


@pytest.fixture(scope="module")
def lenet_code() -> str:
    """What `codegen` prints on standard output: every file output below must hold exactly this."""
    run = archc_cli("codegen", LENET)
    assert run.returncode == 0
    return run.stdout


@pytest.fixture
def spec(tmp_path) -> Path:
    copy = tmp_path / "lenet5.arch"
    copy.write_text(LENET.read_text())
    return copy


def _make_device(path: Path, minor: int) -> str | None:
    """A character device with the numbers of /dev/null (1, 3) or /dev/full (1, 7) at `path`; why not, if not."""
    try:
        os.mknod(path, stat.S_IFCHR | 0o666, os.makedev(1, minor))
        with open(path, "rb"):
            pass
    except OSError as err:  # not root, or a file system mounted nodev
        return str(err)
    return None


def _device(path: Path, minor: int) -> Path:
    why = _make_device(path, minor)
    if why:
        pytest.skip(f"cannot make a device node here: {why}")
    return path


def _devices_here() -> bool:
    with tempfile.TemporaryDirectory() as scratch:
        return _make_device(Path(scratch) / "null", 3) is None


# ---- -o: what the output is --------------------------------------------------------------------------------


@pytest.mark.parametrize("command", ["codegen", "diagram", "import"])
@pytest.mark.parametrize("how", ["same name", "symlink", "hard link"])
def test_output_onto_the_file_being_read_is_refused(tmp_path, command, how):
    source = tmp_path / ("net.cfg" if command == "import" else "net.arch")
    text = (
        "[net]\nwidth=8\nheight=8\nchannels=3\n[convolutional]\nfilters=4\nsize=3\nactivation=relu\n"
        if command == "import"
        else LENET.read_text()
    )
    source.write_text(text)
    output = {"same name": source, "symlink": tmp_path / "out.dot", "hard link": tmp_path / "hard.dot"}[how]
    if how == "symlink":
        output.symlink_to(source.name)
    elif how == "hard link":
        os.link(source, output)
    run = archc_cli(command, source, "-o", output)
    assert run.returncode == 2, run.stderr
    assert f"usage: archc {command}" in run.stderr and "is the file being read" in run.stderr
    assert source.read_text() == text


def test_output_through_a_symlink_writes_its_target_and_keeps_the_link(spec, tmp_path, lenet_code):
    (tmp_path / "real").mkdir()
    target = tmp_path / "real" / "model.py"
    target.write_text("old\n")
    target.chmod(0o640)
    link = tmp_path / "model.py"
    link.symlink_to(target)
    assert archc_cli("codegen", spec, "-o", link).returncode == 0
    assert link.is_symlink() and os.readlink(link) == str(target)
    assert target.read_text() == lenet_code
    assert stat.S_IMODE(target.stat().st_mode) == 0o640  # the file it replaces keeps its permissions
    dangling = tmp_path / "new.py"
    dangling.symlink_to(tmp_path / "real" / "new.py")
    assert archc_cli("codegen", spec, "-o", dangling).returncode == 0
    assert dangling.is_symlink() and (tmp_path / "real" / "new.py").read_text() == lenet_code
    assert not list(tmp_path.rglob(".archc-*"))


def test_output_onto_a_fifo_is_written_through_to_its_reader(spec, tmp_path, lenet_code):
    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)
    reader = subprocess.Popen(["cat", str(fifo)], stdout=subprocess.PIPE)
    try:
        run = archc_cli("codegen", spec, "-o", fifo)
        received, _ = reader.communicate(timeout=120)
    finally:
        reader.kill()
    assert run.returncode == 0, run.stderr
    assert stat.S_ISFIFO(os.lstat(fifo).st_mode)
    assert received.decode() == lenet_code


def test_output_through_a_link_to_this_process_stdout_writes_to_it(spec, tmp_path, lenet_code):
    """/dev/stdout is such a link; /proc/self/fd/1 names no file that a rename could replace."""
    link = tmp_path / "stdout"
    link.symlink_to("/proc/self/fd/1")
    run = archc_cli("codegen", spec, "-o", link)
    assert run.returncode == 0 and run.stdout == lenet_code
    assert link.is_symlink()


@pytest.mark.parametrize("command", ["codegen", "diagram"])
def test_output_onto_a_null_device_writes_through_and_keeps_it(spec, tmp_path, command):
    null = _device(tmp_path / ("null.dot" if command == "diagram" else "null"), 3)  # diagram: named for its format
    run = archc_cli(command, spec, "-o", null)
    assert run.returncode == 0, run.stderr
    assert stat.S_ISCHR(os.lstat(null).st_mode) and os.lstat(null).st_rdev == os.makedev(1, 3)


def test_output_onto_a_full_device_is_a_clear_error(spec, tmp_path):
    full = _device(tmp_path / "full", 7)
    run = archc_cli("codegen", spec, "-o", full)
    assert run.returncode == 1
    assert f"archc: error: cannot write `{full}`: No space left on device" in run.stderr
    assert "Traceback" not in run.stderr
    assert stat.S_ISCHR(os.lstat(full).st_mode) and os.lstat(full).st_rdev == os.makedev(1, 7)
    assert not list(tmp_path.glob(".archc-*"))


def test_output_onto_a_directory_is_a_clear_error(spec, tmp_path):
    run = archc_cli("codegen", spec, "-o", tmp_path)
    assert run.returncode == 1 and "Is a directory" in run.stderr and "Traceback" not in run.stderr


KINDS = ["missing", "regular", "symlink", "dangling symlink", "link chain", "fifo", "directory"]
KINDS += ["null", "full"] if _devices_here() else []


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(kind=st.sampled_from(KINDS), data=st.binary(max_size=3000), old=st.binary(max_size=50))
def test_fuzz_outputs_of_every_kind(tmp_path_factory, kind, data, old):
    """Whatever FILE is: the output holds the data, or the write fails with an OSError; a link stays a link,
    a device or FIFO stays what it is, and no temporary file stays behind."""
    root = tmp_path_factory.mktemp("out")
    target = root / "target"
    path = root / "out"
    if kind in ("regular", "symlink", "link chain"):
        target.write_bytes(old)
    if kind == "regular":
        path = target
    elif kind in ("symlink", "dangling symlink"):
        path.symlink_to(target)
    elif kind == "link chain":
        (root / "middle").symlink_to(target)
        path.symlink_to(root / "middle")
    elif kind in ("null", "full"):
        path = _device(root / kind, 3 if kind == "null" else 7)
    elif kind == "directory":
        path.mkdir()
    elif kind == "fifo":
        os.mkfifo(path)
        reader = subprocess.Popen(["cat", str(path)], stdout=subprocess.PIPE)
    before = os.lstat(path) if kind != "missing" else None
    try:
        write_output(path, data)
        failed = None
    except OSError as err:
        failed = err
    if kind == "fifo":
        received, _ = reader.communicate(timeout=120)
        assert received == data
    if kind == "directory" or (kind == "full" and data):
        assert failed is not None
    else:
        assert failed is None
    if kind in ("missing", "regular"):
        assert path.read_bytes() == data and stat.S_ISREG(os.lstat(path).st_mode)
    if kind in ("symlink", "dangling symlink", "link chain"):
        assert path.is_symlink() and target.read_bytes() == data
    if kind in ("fifo", "null", "full", "directory"):
        now = os.lstat(path)
        assert (stat.S_IFMT(now.st_mode), now.st_rdev) == (stat.S_IFMT(before.st_mode), before.st_rdev)
    assert not list(root.rglob(".archc-*"))


# ---- signals around writes ---------------------------------------------------------------------------------

# Runs the program as `python -m archc` does, after making one step of the write (or of the analysis) send
# the given signal to the process itself, just before or just after the step.
INJECT = textwrap.dedent(
    """
    import importlib, os, runpy, signal, sys
    module, name, when, signum = sys.argv[1:5]
    owner = importlib.import_module(module)
    real = getattr(owner, name)
    def step(*args, **kwargs):
        if when == "before":
            os.kill(os.getpid(), int(signum))
        result = real(*args, **kwargs)
        if when == "after":
            os.kill(os.getpid(), int(signum))
        return result
    setattr(owner, name, step)
    sys.argv = ["archc", *sys.argv[5:]]
    runpy.run_module("archc", run_name="__main__", alter_sys=True)
    """
)

STEPS = [("tempfile", "mkstemp"), ("os", "fdopen"), ("os", "chmod"), ("os", "replace")]
SIGNALS = {"SIGINT": 130, "SIGTERM": 143}


def _assert_quiet_stop(run, status: int | tuple, output: Path, old: str, new: str) -> None:
    assert run.returncode in ((status,) if isinstance(status, int) else status), run.stderr
    assert "Traceback" not in run.stderr and "No such file" not in run.stderr
    assert output.read_text() in (old, new)
    assert not list(output.parent.glob(".archc-*"))


@pytest.mark.parametrize("signame", SIGNALS)
@pytest.mark.parametrize("when", ["before", "after"])
@pytest.mark.parametrize(("module", "name"), STEPS)
def test_a_signal_at_each_step_of_a_write(spec, tmp_path, lenet_code, module, name, when, signame):
    output = tmp_path / "model.py"
    output.write_text("old\n")
    signum = getattr(__import__("signal"), signame)
    args = [module, name, when, str(int(signum)), "codegen", str(spec), "-o", str(output)]
    run = subprocess.run(
        [sys.executable, "-c", INJECT, *args],
        capture_output=True,
        text=True,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    _assert_quiet_stop(run, SIGNALS[signame], output, "old\n", lenet_code)
    assert run.stderr.strip().endswith("interrupted" if signame == "SIGINT" else "terminated")


@pytest.mark.parametrize("signame", SIGNALS)
def test_a_signal_during_analysis_or_a_diagram_write(spec, tmp_path, signame):
    signum = str(int(getattr(__import__("signal"), signame)))
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    check = subprocess.run(
        [sys.executable, "-c", INJECT, "archc.analysis", "infer_shapes", "before", signum, "check", str(spec)],
        capture_output=True,
        text=True,
        env=env,
    )
    assert check.returncode == SIGNALS[signame] and "Traceback" not in check.stderr, check.stderr
    output = tmp_path / "net.dot"
    output.write_text("old\n")
    new = archc_cli("diagram", spec).stdout
    args = ["os", "replace", "after", signum, "diagram", str(spec), "-o", str(output)]
    run = subprocess.run([sys.executable, "-c", INJECT, *args], capture_output=True, text=True, env=env)
    _assert_quiet_stop(run, SIGNALS[signame], output, "old\n", new)


# Sends SIGINT to itself when Python looks for the analyser's module, then runs the program.
WHILE_LOADING = textwrap.dedent(
    """
    import os, runpy, signal, sys
    class Interrupt:
        def find_spec(self, name, path=None, target=None):
            if name == "archc.analysis":
                os.kill(os.getpid(), signal.SIGINT)
    sys.meta_path.insert(0, Interrupt())
    sys.argv = ["archc", *sys.argv[1:]]
    runpy.run_module("archc", run_name="__main__", alter_sys=True)
    """
)


def test_a_ctrl_c_while_the_analyser_loads_exits_quietly(spec):
    """The package imports its API when first used, so the command has its handlers in place by then."""
    run = subprocess.run(
        [sys.executable, "-c", WHILE_LOADING, "check", str(spec)],
        capture_output=True,
        text=True,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    assert run.returncode == 130 and run.stderr == "archc: interrupted\n"


# Says when the command starts, so that the signal comes while archc runs, not while Python starts
# or before `run` has its handlers in place (a signal then is Python's, as for any program; the
# analyser's own start-up is covered by the test above).
STARTED = textwrap.dedent(
    """
    import sys
    import archc.cli
    main = archc.cli.main
    def started(argv=None):
        print("started", flush=True)
        return main(argv)
    archc.cli.main = started
    sys.argv = ["archc", *sys.argv[1:]]
    archc.cli.run()
    """
)


def test_fuzz_signals_at_random_moments(tmp_path):
    """A real signal at a random moment of `codegen -o` on ResNet-50: 0, 130 or 143, and never a half file,
    a temporary file or a traceback."""
    import signal
    import time

    spec = SPECS / "resnet50.arch"
    new = archc_cli("codegen", spec).stdout
    output = tmp_path / "model.py"
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    start = time.perf_counter()
    assert archc_cli("codegen", spec, "-o", output).returncode == 0
    duration = time.perf_counter() - start  # the moments cover a whole run, startup included
    rng = random.Random(14)
    for _ in range(12):
        output.write_text("old\n")
        signum = rng.choice([signal.SIGINT, signal.SIGTERM])
        proc = subprocess.Popen(
            [sys.executable, "-c", STARTED, "codegen", str(spec), "-o", str(output)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=env,
        )
        assert proc.stdout.readline() == "started\n"
        time.sleep(rng.uniform(0, duration))
        proc.send_signal(signum)
        _, stderr = proc.communicate(timeout=300)
        run = subprocess.CompletedProcess(proc.args, proc.returncode, "", stderr)
        _assert_quiet_stop(run, (0, 128 + signum), output, "old\n", new)


IN_A_FINALISER = textwrap.dedent(
    """
    import signal, sys, time
    import archc.cli

    class Finalised:
        def __del__(self):
            signal.raise_signal(signal.SIG{name})  # the handler runs here, inside the finaliser
            for _ in range(100):
                pass

    def command(argv=None):
        Finalised()
        for _ in range(600):  # a command that goes on for a minute unless the signal stops it
            time.sleep(0.1)
        return 0

    archc.cli.main = command
    archc.cli.run()
    """
)


@pytest.mark.parametrize("name", ["INT", "TERM"])
def test_a_signal_inside_a_finaliser_still_stops_the_command_quietly(name):
    """A signal whose handler runs in a `__del__` (or an import lock's clean-up) raises where nothing can
    catch it: Python printed "Exception ignored" with a traceback, and the command went on to exit 0."""
    import signal

    run = subprocess.run(
        [sys.executable, "-c", IN_A_FINALISER.replace("{name}", name)],
        capture_output=True,
        text=True,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        timeout=600,
    )
    assert run.returncode == 128 + getattr(signal, f"SIG{name}"), run.stderr
    assert "Traceback" not in run.stderr and "Exception ignored" not in run.stderr
    assert run.stderr == f"archc: {'interrupted' if name == 'INT' else 'terminated'}\n"


# ---- graphviz that does not answer ---------------------------------------------------------------------------


@pytest.fixture
def hanging_dot(tmp_path, monkeypatch) -> Path:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    dot = bin_dir / "dot"
    dot.write_text("#!/bin/sh\nexec sleep 600\n")
    dot.chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    return dot


def test_a_dot_that_does_not_answer_is_a_clear_error(spec, tmp_path, hanging_dot):
    output = tmp_path / "net.svg"
    run = archc_cli("diagram", spec, "-o", output, "--timeout", "1")
    assert run.returncode == 1 and "Traceback" not in run.stderr
    assert "graphviz's `dot` did not finish within 1 s" in run.stderr
    assert not output.exists()
    assert (tmp_path / "net.dot").read_text() == archc_cli("diagram", spec).stdout  # the work is kept


def test_render_takes_the_timeout_as_an_argument(tmp_path, hanging_dot):
    net = archc.load(LENET)
    with pytest.raises(DiagramError, match=r"did not finish within 0\.5 s"):
        render_diagram(to_dot(net), tmp_path / "net.png", timeout=0.5)
    with pytest.raises(ValueError, match="timeout"):
        render_diagram(to_dot(net), tmp_path / "net.png", timeout=0)


# ---- terminals -------------------------------------------------------------------------------------------------

# No NUL: a file with one is not a text file (E0102), and its content is never shown.
CONTROLS = ["\x1b[2J", "\x1b]0;title\x07", "\x9b31m", "\u2028", "\u202e", "\x7f"]


def test_an_excerpt_neutralises_control_characters_and_keeps_the_caret_in_place(tmp_path):
    """A Caffe name holding terminal sequences, on the line of an error after it."""
    name = "c" + "".join(CONTROLS)
    text = (
        'input: "data"\ninput_dim: 1\ninput_dim: 3\ninput_dim: 8\ninput_dim: 8\n'
        f'layer {{ name: "{name}" type: "Convolution" bottom: "nope" top: "c" '
        "convolution_param { num_output: 4 kernel_size: 3 } }\n"
    )
    source = tmp_path / "net.prototxt"
    source.write_bytes(text.encode())
    run = archc_cli("check", source, env={"FORCE_COLOR": ""})
    assert run.returncode == 1
    shown = run.stderr
    assert not any(c in shown for c in "\x1b\x07\x9b\u2028\u202e\x00\x7f")
    assert "\\x1b[2J" in shown and "\\u2028" in shown
    lines = shown.splitlines()
    excerpt = next(i for i, line in enumerate(lines) if line.startswith("    6 | "))
    assert lines[excerpt + 1].index("^") == lines[excerpt].index('"nope"')


def test_messages_and_file_names_are_neutralised_too():
    diag = Diagnostic("error", "E0203", "`a\x1b[31mb` is not defined", Span("f\x1b.arch", 1, 3, 1, 4), ["use `\x07`"])
    text = render(diag, {"f\x1b.arch": "x \x1b y\n"})
    assert "\x1b" not in text and "\x07" not in text
    assert text.splitlines()[0] == "f\\x1b.arch:1:3: error: `a\\x1b[31mb` is not defined [E0203]"
    assert text.splitlines()[1:3] == ["    1 | x \\x1b y", "      |   ^^^^"]


# ---- errors first ----------------------------------------------------------------------------------------------


def test_errors_come_before_a_screenful_of_warnings(tmp_path):
    cfg = tmp_path / "many.cfg"
    unknown = "".join(f"bogus{i}=1\n" for i in range(20))
    cfg.write_text(f"[net]\nwidth=32\nheight=32\nchannels=3\n{unknown}[convolutional]\nfilters=4\nsize=3\n[nosuch]\n")
    run = archc_cli("check", cfg)
    assert run.returncode == 1
    assert run.stderr.startswith(f"{cfg}:28:1: error: [nosuch] is not supported [E0402]")
    assert "... and 1 more diagnostic" in run.stderr
    diags = json.loads(archc_cli("check", cfg, "--format", "json").stdout)["diagnostics"]
    assert [d["severity"] for d in diags] == ["error"] + ["warning"] * 20
    with pytest.raises(ArchError) as caught:
        archc.load(cfg)
    assert caught.value.diagnostics[0].code == "E0402"


def test_render_all_keeps_the_order_within_each_severity():
    diags = [Diagnostic(sev, "E0101", f"{sev} {i}") for i, sev in enumerate(["warning", "error", "warning", "error"])]
    assert render_all(diags, {}).splitlines() == [
        "error: error 1 [E0101]",
        "error: error 3 [E0101]",
        "warning: warning 0 [E0101]",
        "warning: warning 2 [E0101]",
    ]


# ---- the Python API ------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("call", "error", "words"),
    [
        (lambda: archc.loads(LENET.read_bytes(), "x.arch"), TypeError, "text must be str, not bytes"),
        (lambda: archc.load(LENET, inputs={"image": (1.5, 32, 32)}), TypeError, "inputs['image'][0]"),
        (lambda: archc.load(LENET, inputs={"image": "abc"}), TypeError, "inputs['image'] must be a shape"),
        (lambda: archc.load(LENET, inputs=[("image", (1, 32, 32))]), TypeError, "inputs must be a dict"),
        (lambda: archc.load(LENET, batch=1.5), TypeError, "batch must be a whole number"),
        (lambda: archc.load(LENET, batch=True), TypeError, "batch must be a whole number (int) or None, not a bool"),
        (lambda: archc.load(LENET, batch=0), ValueError, "batch must be at least 1"),
        (lambda: archc.load(LENET, dtype=["float32"]), TypeError, "dtype must be one of"),
        (lambda: archc.load(b"specs/lenet5.arch"), TypeError, "path must be a str or os.PathLike"),
        (lambda: archc.loads("", "x.arch", format="onnx"), ValueError, "format must be one of"),
        (lambda: to_dot(archc.load(LENET), depth=-1), ValueError, "depth must be at least 0"),
        (lambda: to_dot(archc.load(LENET), depth=1.0), TypeError, "depth must be a whole number"),
        (lambda: to_dot(archc.load(LENET), fold="yes"), TypeError, "fold must be True or False"),
        (lambda: archc.load(LENET).diagram(detail=None), TypeError, "detail must be one of"),
        (lambda: archc.load(LENET).table(columns="name,output"), TypeError, "columns must be a list"),
        (lambda: archc.load(LENET).table(format=["csv"]), TypeError, "format must be one of"),
        (lambda: archc.load(LENET).table(width=0), ValueError, "width must be at least 1"),
        (lambda: archc.load(LENET).layer(3), TypeError, "name must be str"),
        (lambda: archc.load(LENET).layer("C9"), KeyError, "LeNet5 has no layer 'C9'"),
    ],
)
def test_api_arguments_are_checked_by_name(call, error, words):
    with pytest.raises(error) as caught:
        call()
    assert words in str(caught.value)


def test_api_takes_a_str_base(tmp_path):
    (tmp_path / "lib.arch").write_text("block unit(n) {\n  conv: n @ 3x3 pad=1\n}\n")
    text = 'import "lib.arch"\nnetwork N {\n  input x: 3x8x8\n  unit u: 4\n}\n'
    net = archc.loads(text, "n.arch", base=str(tmp_path))
    assert net.layer("u.conv1").shape == (4, 8, 8)  # torch's Conv2d(3, 4, 3, padding=1) on 8x8 gives 8x8


def test_repr_of_a_network_is_short():
    """LeNet-5: 61,706 parameters and 416,520 MACs, as figures.md publishes them."""
    assert repr(archc.load(LENET)) == f"<Network LeNet5 ({LENET}): 9 layers, 61,706 params, 416,520 MACs>"


VALUES = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-3, 10_000),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=8),
    st.binary(max_size=8),
    st.lists(st.integers(-2, 64), max_size=5),
    st.tuples(st.integers(-2, 64), st.integers(-2, 64), st.integers(-2, 64)),
    st.dictionaries(st.one_of(st.text(max_size=6), st.integers()), st.integers(-2, 64), max_size=2),
    st.builds(object),
)
INPUTS = st.one_of(
    VALUES,
    st.dictionaries(
        st.sampled_from(["image", "x"]),
        st.one_of(VALUES, st.tuples(st.integers(1, 64), st.integers(1, 64), st.integers(1, 64))),
        max_size=2,
    ),
)
OK = (TypeError, ValueError, ArchError)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    which=st.sampled_from(["load", "loads"]),
    batch=st.one_of(st.none(), st.integers(1, 64), VALUES),
    dtype=st.one_of(st.sampled_from(["float32", "int8"]), VALUES),
    inputs=INPUTS,
    base=st.one_of(st.none(), VALUES),
    fmt=st.one_of(st.none(), st.sampled_from(["arch", "caffe"]), VALUES),
    text=st.one_of(st.just(LENET.read_text()), VALUES),
)
def test_fuzz_load_arguments(tmp_path, monkeypatch, which, batch, dtype, inputs, base, fmt, text):
    """Any argument of any type: a network, or TypeError, ValueError or ArchError; nothing else."""
    monkeypatch.chdir(tmp_path)  # a random `path` names nothing here
    with contextlib.suppress(*OK):
        if which == "load":
            archc.load(text if isinstance(text, str) and len(text) < 9 else LENET, batch=batch, dtype=dtype)
        else:
            archc.loads(text, "n.arch", batch=batch, dtype=dtype, inputs=inputs, base=base, format=fmt)


@settings(max_examples=150, deadline=None)
@given(
    format=st.one_of(st.sampled_from(["rich", "markdown", "csv", "json"]), VALUES),
    layout=st.one_of(st.sampled_from(["chw", "hwc"]), VALUES),
    columns=st.one_of(st.none(), st.lists(st.sampled_from(["name", "rf", "bogus"]), max_size=3), VALUES),
    color=st.one_of(st.booleans(), VALUES),
    width=st.one_of(st.none(), st.integers(1, 300), VALUES),
    convention=st.one_of(st.none(), st.sampled_from(["darknet", "caffe"]), VALUES),
    depth=st.one_of(st.none(), st.integers(0, 3), VALUES),
    fold=st.one_of(st.booleans(), VALUES),
    detail=st.one_of(st.sampled_from(["name", "full"]), VALUES),
    rankdir=st.one_of(st.sampled_from(["TB", "LR"]), VALUES),
)
def test_fuzz_table_and_diagram_arguments(
    format, layout, columns, color, width, convention, depth, fold, detail, rankdir
):
    net = _lenet()
    with contextlib.suppress(*OK):
        net.table(format, layout=layout, columns=columns, color=color, width=width, convention=convention)
    with contextlib.suppress(*OK):
        to_dot(net, depth=depth, fold=fold, detail=detail, rankdir=rankdir)


_NET = []


def _lenet():
    if not _NET:
        _NET.append(archc.load(LENET))
    return _NET[0]


# ---- the command line ------------------------------------------------------------------------------------------


def test_a_usage_error_found_after_parsing_prints_the_commands_usage(spec):
    run = archc_cli("table", spec, "--columns", "name,bogus")
    assert run.returncode == 2 and run.stderr.startswith("usage: archc table ")
    run = archc_cli("codegen", spec, "--input", "axb")
    assert run.returncode == 2 and run.stderr.startswith("usage: archc codegen ")


def test_codegen_and_diagram_take_no_byte_options(spec):
    """They print no byte figures, so --batch and --dtype would change nothing."""
    for command in ("codegen", "diagram"):
        for option in (["--batch", "2"], ["--dtype", "float16"]):
            run = archc_cli(command, spec, *option)
            assert run.returncode == 2 and run.stderr.startswith(f"usage: archc {command} ")
            assert "unrecognized arguments" in run.stderr


def test_force_color_colours_a_pipe_unless_no_color_is_set(tmp_path):
    bad = tmp_path / "bad.arch"
    bad.write_text("network N {\n  input x: 3x8x8\n  dense: 10\n}\n")
    assert "\x1b[1;31merror" in archc_cli("check", bad, env={"FORCE_COLOR": "1", "NO_COLOR": ""}).stderr
    assert "\x1b[" not in archc_cli("check", bad, env={"FORCE_COLOR": "1", "NO_COLOR": "1"}).stderr
    assert "\x1b[" not in archc_cli("check", bad, env={"FORCE_COLOR": "", "NO_COLOR": ""}).stderr
    assert "\x1b[" in archc_cli("table", LENET, env={"FORCE_COLOR": "1", "NO_COLOR": ""}).stdout


def test_the_upsample_factor_prints_as_a_stride_that_reads_one_way(tmp_path):
    spec = tmp_path / "up.arch"
    spec.write_text("network U {\n  input x: 3x8x8\n  upsample u: 2\n  upsample v: 2x3\n}\n")
    rows = archc_cli("table", spec, "--format", "csv", "--columns", "name,stride").stdout.splitlines()
    assert rows[2:] == ["u,1/2", "v,1/2x1/3"]  # a stride of 1/2 in both dimensions; 1/2 and 1/3
