"""Run every archc benchmark and write a Markdown report.

    python benchmarks/run.py [--quick] [--out benchmarks/RESULTS.md] [--torch-python PYTHON]

The targets come from issue 7; benchmarks/HISTORY.md, the before/after
figures of the optimisations, is appended to the report. `--quick` runs
everything once at a tiny size, to prove the benchmarks work (CI); its
figures mean nothing. The torchvision comparisons need torch, torchvision
and torchinfo importable by --torch-python (default: this interpreter) and
are skipped, with a note in the report, when they are not.
"""

from __future__ import annotations

import argparse
import datetime
import os
import platform
import sys
import time
from pathlib import Path

if __package__ in (None, ""):  # run as a script: make `benchmarks` and `archc` importable from this checkout
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks import analysis, coldstart, hostile, numpy_backend, scaling, torch_models
from benchmarks.common import (
    ROOT,
    Context,
    Section,
    cpu_model,
    load_average,
    run_worker,
    table,
    usable_cores,
)

SECTIONS = {
    "analysis": analysis.run,
    "scaling": scaling.run,
    "coldstart": coldstart.run,
    "numpy": numpy_backend.run,
    "torch": torch_models.run,
    "hostile": hostile.run,
}
HISTORY = Path(__file__).resolve().parent / "HISTORY.md"


def details(python: str) -> dict:
    return run_worker(python, "machine", {})


def _versions(info: dict) -> list[list[str]]:
    if "error" in info:
        return [["interpreter", f"failed: {info['error'][-300:]}"]]
    rows = [["interpreter", f"`{info['executable']}` (Python {info['python']})"]]
    rows.append(["numpy", f"{info.get('numpy')} ({info.get('numpy_blas', '-')})"])
    if info.get("torch"):
        rows.append(
            [
                "torch",
                f"{info['torch']} ({info.get('torch_blas')}, {info.get('torch_threads')} threads, "
                f"{info.get('torch_cpu')})",
            ]
        )
    else:
        rows.append(["torch", "not installed"])
    rows.append(["torchvision / torchinfo", f"{info.get('torchvision') or '-'} / {info.get('torchinfo') or '-'}"])
    return rows


def report(ctx: Context, sections: list[Section], started: float, load_before: str, argv: list[str]) -> str:
    runner = details(ctx.python)
    other = details(ctx.torch_python) if ctx.torch_python != ctx.python else None
    lines = [
        "# archc benchmarks",
        "",
        f"`{' '.join(['python benchmarks/run.py', *argv])}`, {datetime.datetime.now().strftime('%Y-%m-%d %H:%M')}, "
        f"{'QUICK mode: one tiny run of everything, the figures mean nothing' if ctx.quick else 'full run'}; "
        f"{time.time() - started:.0f} s.",
        "",
        "Timings are medians of repeated runs; the things compared are run in turn (interleaved) and a ratio "
        "is the median of the per-round ratios, so it compares figures taken under the same load. Figures "
        "are only comparable within one report, and only a quiet machine gives final numbers: other work "
        "on a 2-core machine slows two-threaded code far more than it slows one thread (the load average "
        "below says how busy this one was).",
        "",
        "## Machine",
        "",
    ]
    rows = [
        ["CPU", f"{cpu_model()} ({platform.machine()})"],
        ["cores", f"{os.cpu_count()} logical, {usable_cores()} usable"],
        ["system", f"{platform.system()} {platform.release()}"],
        ["load average (1/5/15 min)", f"before {load_before}; after {load_average()}"],
    ]
    rows += _versions(runner)
    if other is not None:
        rows += [[f"torch side: {k}", v] for k, v in _versions(other)]
    lines += [table(["", ""], rows, numbers=False), ""]

    lines += ["## Targets", ""]
    target_rows = []
    for section in sections:
        for target in section.targets:
            verdict = "met" if target.met else "skipped" if target.met is None else "**NOT MET**"
            target_rows.append([target.name, target.goal, target.measured, verdict])
    lines += [table(["#", "target", "measured", "result"], target_rows, numbers=False), ""]

    for section in sections:
        lines += [f"## {section.title}", ""]
        if section.skipped:
            lines += [f"Skipped: {section.skipped}", ""]
        for part in section.body:
            lines += [part, ""]
    if HISTORY.is_file():
        lines += [HISTORY.read_text(encoding="utf-8").strip(), ""]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Run archc's benchmarks and write a Markdown report.")
    parser.add_argument("--quick", action="store_true", help="everything once at a tiny size (proves it runs)")
    parser.add_argument("--out", default=str(ROOT / "benchmarks" / "RESULTS.md"), help="the report (Markdown)")
    parser.add_argument(
        "--torch-python",
        default=os.environ.get("ARCHC_BENCH_TORCH_PYTHON", sys.executable),
        metavar="PYTHON",
        help="interpreter with torch, torchvision and torchinfo for the comparisons (default: this one)",
    )
    parser.add_argument("--only", action="append", choices=list(SECTIONS), help="run only these sections")
    parser.add_argument("--repeats", type=int, help="repeat every measurement this many times")
    args = parser.parse_args(argv)
    argv = list(sys.argv[1:] if argv is None else argv)

    started = time.time()
    load_before = load_average()
    ctx = Context(
        quick=args.quick,
        python=sys.executable,
        torch_python=args.torch_python,
        repeats=args.repeats,
        log=lambda message: print(f"[{time.time() - started:6.1f} s] {message}", file=sys.stderr, flush=True),
    )
    sections = []
    for name, run in SECTIONS.items():
        if args.only and name not in args.only:
            continue
        try:
            sections.append(run(ctx))
        except Exception as err:
            section = Section(name)
            section.skipped = f"failed: {type(err).__name__}: {err}"
            sections.append(section)
    text = report(ctx, sections, started, load_before, argv)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(text, encoding="utf-8")
    ctx.say(f"wrote {out}")
    missed = [t for s in sections for t in s.targets if t.met is False]
    for target in missed:
        print(f"not met: {target.name} {target.goal}: {target.measured}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
