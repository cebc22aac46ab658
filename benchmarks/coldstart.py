"""3. Cold start: `archc check` and `archc table` on LeNet-5 as commands.

Wall time of the whole command (process start to exit), next to the bare
interpreter (`python -c pass`) for scale. `-X importtime` (PYTHONPROFILEIMPORTTIME)
lists every module the command imports: numpy, torch and graphviz must not be
among them for `table` and `check`.
"""

from __future__ import annotations

import subprocess

from .common import ROOT, SPECS, Context, Section, Target, archc_command, command_times, median, ms, table, worker_env

TARGET = 0.35  # s wall per command
FORBIDDEN = ("numpy", "torch", "graphviz")
SPEC = SPECS / "lenet5.arch"


def imports(cmd: list[str]) -> list[tuple[str, int, int]]:
    """(module, self us, cumulative us) for every module the command imports."""
    env = {**worker_env(), "PYTHONPROFILEIMPORTTIME": "1"}
    done = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True)
    out = []
    for line in done.stderr.splitlines():
        if not line.startswith("import time:") or "|" not in line:
            continue
        parts = [p.strip() for p in line[len("import time:") :].split("|")]
        if parts[0].isdigit():
            out.append((parts[2], int(parts[0]), int(parts[1])))
    return out


def run(ctx: Context) -> Section:
    section = Section("3. Cold start")
    archc = archc_command(ctx.python)
    commands = {
        "python -c pass": [ctx.python, "-c", "pass"],
        "archc check": [*archc, "check", str(SPEC)],
        "archc table": [*archc, "table", str(SPEC)],
    }
    ctx.say("cold start")
    reps = ctx.reps(15)
    times = command_times(commands, reps)
    rows = [[name, ms(median(t)), ms(min(t)), ms(max(t))] for name, t in times.items()]
    section.add(
        f"Wall time of each command on specs/lenet5.arch (`{' '.join(archc)}`), medians of {reps} interleaved "
        "runs, with the bare interpreter for scale."
    )
    section.add(table(["command", "median", "fastest", "slowest"], rows))
    worst = max(median(times["archc check"]), median(times["archc table"]))
    section.targets.append(
        Target(
            "3a",
            f"`archc check` and `archc table` on LeNet-5 under {TARGET} s wall each",
            f"check {ms(median(times['archc check']))}, table {ms(median(times['archc table']))}",
            worst < TARGET if not ctx.quick else None,
        )
    )

    loaded = {}
    for name in ("check", "table"):
        modules = imports([*archc, name, str(SPEC)])
        loaded[name] = modules
    found = {
        name: sorted({m.split(".")[0] for m, _, _ in modules if m.split(".")[0] in FORBIDDEN})
        for name, modules in loaded.items()
    }
    top = sorted((m for m in loaded["table"] if "." not in m[0]), key=lambda m: -m[2])[:8]
    total = sum(m[1] for m in loaded["table"])
    section.add(
        "Imports of `archc table` by `-X importtime` "
        f"({len(loaded['table'])} modules, {total / 1e3:.0f} ms of import time in all); "
        "the top-level packages that take longest, with everything they import:"
    )
    section.add(table(["package", "cumulative import time"], [[m, f"{cum / 1e3:.1f} ms"] for m, _, cum in top]))
    ok = not any(found.values()) and all(loaded.values())
    section.targets.append(
        Target(
            "3b",
            "numpy, torch and graphviz not imported by `table` (nor `check`)",
            "none imported"
            if ok
            else "; ".join(f"{k}: {', '.join(v) or '-'}" for k, v in found.items())
            if all(loaded.values())
            else "importtime gave no output",
            ok,
        )
    )
    return section
