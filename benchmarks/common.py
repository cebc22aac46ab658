"""What every benchmark shares: timing, workers in other interpreters, machine details.

Each benchmark module (analysis, scaling, coldstart, numpy_backend, torch_models)
has `run(ctx) -> Section`, called by run.py, and does its measuring in a worker:
`python -m benchmarks.<module> --worker JSON`, a fresh process that prints one
JSON object on its last line. Workers keep the measurements apart (no warm
caches, threads or memory carried from one benchmark to the next) and let the
torchvision comparisons run in another interpreter than the one running archc.
"""

from __future__ import annotations

import gc
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SPECS = ROOT / "specs"


# -- timing --------------------------------------------------------------------------


def median(values):
    return statistics.median(values) if values else float("nan")


def paired(numerators: list[float], denominators: list[float]) -> float:
    """The median of the per-round ratios of two interleaved series.

    The two figures of one round were taken under the same load, so the median
    of their ratios is steadier than the ratio of the two medians when the load
    changes during the run.
    """
    return median([a / b for a, b in zip(numerators, denominators)])


def interleaved(functions: dict, repeats: int, warmup: int = 1, clock=time.perf_counter) -> dict[str, list[float]]:
    """Wall times (s) of each function, run in turn `repeats` times after `warmup` rounds.

    (CPU times with clock=time.process_time.)

    Interleaving puts the functions being compared under the same machine load,
    so the ratio of their medians is fair even when the load changes over the run.
    Every other round runs them in reverse order (A B, B A, A B...), so none always
    comes first or always follows the same one: what a call leaves behind (caches
    warm with its data, memory the allocator keeps) changes the time of the next.
    In a fixed order the generated ResNet-50 at batch 8 measured 4.7-9.3% slower
    than torchvision's; in a random order of the same models, 0.5%.
    """
    for _ in range(warmup):
        for fn in functions.values():
            fn()
    times = {name: [] for name in functions}
    for i in range(repeats):
        for name, fn in in_turn(list(functions.items()), i):
            start = clock()
            fn()
            times[name].append(clock() - start)
    return times


def in_turn(items: list, round_: int) -> list:
    """The order of round `round_`: as given in even rounds, reversed in odd ones (see interleaved)."""
    return items if round_ % 2 == 0 else items[::-1]


def timed(fn, repeats: int, warmup: int = 1) -> list[float]:
    return interleaved({"fn": fn}, repeats, warmup)["fn"]


def command_times(commands: dict[str, list[str]], repeats: int, cwd=ROOT, env=None) -> dict[str, list[float]]:
    """Wall times (s) of whole commands, interleaved; a failing command raises."""

    def runner(cmd):
        def run():
            done = subprocess.run(cmd, cwd=cwd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
            if done.returncode != 0:
                raise RuntimeError(f"{' '.join(cmd)} failed: {done.stderr.decode(errors='replace')[-2000:]}")

        return run

    return interleaved({name: runner(cmd) for name, cmd in commands.items()}, repeats, warmup=1)


def quiet_gc():
    """A full collection before timing, so garbage of the last step is not collected in the next."""
    gc.collect()


# -- formatting ----------------------------------------------------------------------


def ms(seconds: float) -> str:
    if seconds != seconds:  # nan
        return "-"
    if seconds >= 10:
        return f"{seconds:.1f} s"
    if seconds >= 1:
        return f"{seconds:.2f} s"
    if seconds >= 0.01:
        return f"{seconds * 1e3:.0f} ms"
    if seconds >= 0.001:
        return f"{seconds * 1e3:.1f} ms"
    return f"{seconds * 1e3:.2f} ms"


def ratio(value: float) -> str:
    if value != value:
        return "-"
    return f"{value:.0f}x" if value >= 100 else f"{value:.1f}x" if value >= 10 else f"{value:.2f}x"


def table(headers: list[str], rows: list[list], numbers: bool = True) -> str:
    """A Markdown table; with `numbers`, every column but the first is right-aligned."""
    align = ["---"] + ["---:" if numbers else "---"] * (len(headers) - 1)
    out = ["| " + " | ".join(headers) + " |", "|" + "|".join(align) + "|"]
    out += ["| " + " | ".join(str(cell) for cell in row) + " |" for row in rows]
    return "\n".join(out)


# -- results --------------------------------------------------------------------------


@dataclass
class Target:
    """One target of the issue and whether this run met it."""

    name: str
    goal: str
    measured: str
    met: bool | None  # None: not measured in this run (skipped, or quick mode)


@dataclass
class Section:
    title: str
    body: list[str] = field(default_factory=list)  # Markdown paragraphs and tables
    targets: list[Target] = field(default_factory=list)
    skipped: str | None = None  # why the section did not run

    def add(self, text: str) -> None:
        self.body.append(text)


@dataclass
class Context:
    quick: bool
    python: str  # runs archc and the NumPy models
    torch_python: str  # has torch, torchvision and torchinfo (may be the same)
    repeats: int | None = None  # overrides every benchmark's repeat count
    log: object = None

    def say(self, message: str) -> None:
        if self.log is not None:
            self.log(message)

    def reps(self, full: int) -> int:
        if self.repeats is not None:
            return self.repeats
        return 1 if self.quick else full


# -- workers -----------------------------------------------------------------------------


def worker_env() -> dict:
    env = dict(os.environ)
    env["PYTHONPATH"] = str(ROOT) + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    env.setdefault("PYTHONHASHSEED", "0")
    return env


def run_worker(python: str, module: str, payload: dict, timeout: float = 3600) -> dict:
    """Run benchmarks.<module>'s worker in `python`; its result, or {"error": ...}."""
    cmd = [python, "-m", f"benchmarks.{module}", "--worker", json.dumps(payload)]
    try:
        done = subprocess.run(cmd, cwd=ROOT, env=worker_env(), capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        return {"error": f"timed out after {timeout:.0f} s"}
    except OSError as err:
        return {"error": f"cannot run {python}: {err}"}
    lines = done.stdout.strip().splitlines()
    if done.returncode != 0 or not lines:
        return {"error": (done.stderr or done.stdout).strip()[-3000:] or f"exit status {done.returncode}"}
    return json.loads(lines[-1])


def worker_main(worker) -> None:
    """Entry point of a module run as `python -m benchmarks.<module> --worker JSON`."""
    if len(sys.argv) != 3 or sys.argv[1] != "--worker":
        raise SystemExit(f"usage: python -m {sys.modules['__main__'].__spec__.name} --worker JSON")
    result = worker(json.loads(sys.argv[2]))
    sys.stdout.write("\n" + json.dumps(result) + "\n")


def can_import(python: str, *modules: str) -> str | None:
    """None when `python` imports every module, else the error's last line."""
    code = "import " + ", ".join(modules)
    try:
        done = subprocess.run([python, "-c", code], capture_output=True, text=True, timeout=300, env=worker_env())
    except (OSError, subprocess.TimeoutExpired) as err:
        return str(err)
    if done.returncode == 0:
        return None
    return (done.stderr.strip().splitlines() or ["failed"])[-1]


def archc_command(python: str) -> list[str]:
    """How to run `archc`: the console script next to `python` when it runs this tree, else `python -m archc`.

    `python -m archc` is the same program (both import archc.cli and call main) and
    always runs this checkout, since workers run from the repository root.
    """
    script = Path(python).parent / "archc"
    if script.is_file() and os.access(script, os.X_OK):
        probe = subprocess.run(
            [python, "-c", "import archc, sys; sys.stdout.write(archc.__file__)"],
            capture_output=True,
            text=True,
            cwd="/",
        )
        if probe.returncode == 0 and Path(probe.stdout).resolve().is_relative_to(ROOT):
            return [str(script)]
    return [python, "-m", "archc"]


# -- the machine ----------------------------------------------------------------------


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def load_average() -> str:
    try:
        return " / ".join(f"{v:.2f}" for v in os.getloadavg())
    except OSError:
        return "-"


def usable_cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:
        return os.cpu_count() or 1


def interpreter_details() -> dict:
    """Versions of what this interpreter runs the benchmarks with (called inside a worker)."""
    out = {"python": platform.python_version(), "executable": sys.executable}
    try:
        import numpy as np

        out["numpy"] = np.__version__
        blas = np.show_config(mode="dicts").get("Build Dependencies", {}).get("blas", {})
        out["numpy_blas"] = f"{blas.get('name', '?')} {blas.get('version', '')}".strip()
    except Exception as err:
        out["numpy"] = f"unavailable ({type(err).__name__})"
    try:
        import torch

        out["torch"] = torch.__version__
        config = torch.__config__.show()
        blas = next((p.split("=", 1)[1] for p in config.replace(",", " ").split() if p.startswith("BLAS_INFO=")), "?")
        out["torch_blas"] = blas
        out["torch_threads"] = torch.get_num_threads()
        out["torch_cpu"] = torch.backends.cpu.get_cpu_capability()
    except Exception:
        out["torch"] = None
    for name in ("torchvision", "torchinfo"):
        try:
            module = __import__(name)
            out[name] = getattr(module, "__version__", "?")
        except Exception:
            out[name] = None
    return out


class Server:
    """A benchmark's `--serve` process: a JSON command a line in, a JSON answer a line out, so the
    libraries measured take turns in processes of their own."""

    def __init__(self, argv: list[str], library: str, env: dict):
        self.library = library
        self.process = subprocess.Popen(
            argv,
            cwd=ROOT,
            env=env,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )

    def ask(self, **command) -> dict:
        self.process.stdin.write(json.dumps(command) + "\n")
        self.process.stdin.flush()
        line = self.process.stdout.readline()
        if not line:
            self.process.kill()
            raise RuntimeError(f"the {self.library} server died: {self.process.stderr.read()[-3000:]}")
        return json.loads(line)

    def close(self) -> None:
        self.process.stdin.close()
        try:
            self.process.wait(timeout=60)
        except subprocess.TimeoutExpired:
            self.process.kill()
