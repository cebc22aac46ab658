"""6. Hostile text: how long archc takes to diagnose specs full of syntax errors (issue 14).

Recovery from a syntax error used to parse the whole text again for every
error: 25 errors in a 1 MiB spec took 108 s. Two kinds of text, at sizes up
to the 1 MiB limit: `errors`, a network of `relu` lines with 25 broken lines
spread through it (the worst case: every error found needs the parser to go
on), and `garbage`, one line of `@` after a valid start (the fast reader must
give up at once, not after tokenizing all of it). Time is `archc.loads(text)`
up to its ArchError (rendered, as the command line renders it), in a fresh
worker process, the median of several runs.
"""

from __future__ import annotations

from .common import Context, Section, Target, median, ms, run_worker, table, worker_main

SIZES = (2**16, 2**18, 2**20 - 2**12)  # up to just under the 1 MiB limit
QUICK_SIZES = (2**12, 2**14)
ERRORS = 25  # MAX_SYNTAX_ERRORS: recovery stops there
LINEAR_TARGET = 1.5  # time per byte at the largest size / time per byte at 64 KiB
TOTAL_TARGET = 5.0  # s for the largest text with 25 errors


def errors(size: int) -> str:
    """A network of about `size` bytes: `relu` lines, 25 of them broken (`conv c 3 @ 3x3`: no `:`)."""
    head, tail = "network N {\n  input x: 3x8x8\n", "}\n"
    line = "  relu r{:07d}\n"
    lines = [line.format(i) for i in range((size - len(head) - len(tail)) // len(line.format(0)))]
    for k in range(ERRORS):
        lines[(k * len(lines)) // ERRORS] = " conv c 3 @ 3x3\n"  # as long as the others
    return head + "".join(lines) + tail


def garbage(size: int) -> str:
    """A valid start, then one line of `@` up to `size` bytes."""
    head, tail = "network N {\n  input x: 3x8x8\n  conv: 4 @ 3x3 ", "\n}\n"
    return head + "@" * (size - len(head) - len(tail)) + tail


KINDS = {"errors": errors, "garbage": garbage}


def worker(payload: dict) -> dict:
    import archc

    from .common import interpreter_details, timed

    def diagnose(text: str) -> int:
        try:
            archc.loads(text, "hostile.arch")
        except archc.ArchError as err:
            return len(err.errors)
        raise AssertionError("a hostile text was valid")

    diagnose(garbage(100))  # the parser's tables are loaded once per process
    results = []
    for kind, sizes in payload["runs"].items():
        for size in sizes:
            text = KINDS[kind](size)
            found = diagnose(text)
            times = timed(lambda text=text: diagnose(text), payload["repeats"], warmup=0)
            results.append({"kind": kind, "size": len(text), "errors": found, "times": times})
    return {"details": interpreter_details(), "results": results}


def run(ctx: Context) -> Section:
    section = Section("6. Hostile text")
    sizes = QUICK_SIZES if ctx.quick else SIZES
    ctx.say("hostile text")
    result = run_worker(ctx.python, "hostile", {"runs": {k: list(sizes) for k in KINDS}, "repeats": ctx.reps(5)})
    if "error" in result:
        section.skipped = f"the worker failed: {result['error']}"
        return section
    rows, per_byte = [], {}
    for item in result["results"]:
        t = median(item["times"])
        per_byte[item["kind"], item["size"]] = (t / item["size"], t)
        rows.append([item["kind"], f"{item['size'] / 1024:,.0f} KiB", str(item["errors"]), ms(t)])
    section.add(
        "`archc.loads(text)` up to its rendered ArchError: `errors` is a network of `relu` lines with "
        f"{ERRORS} broken lines spread through it, `garbage` one line of `@` after a valid start. "
        f"Medians of {ctx.reps(5)} runs in a fresh process."
    )
    section.add(table(["text", "size", "errors", "diagnosed in"], rows))
    goals = (
        f"linear: time per byte at 1 MiB <= {LINEAR_TARGET}x that at 64 KiB",
        f"1 MiB with {ERRORS} syntax errors diagnosed in under {TOTAL_TARGET:.0f} s",
    )
    if ctx.quick:
        section.targets += [Target("6a", goals[0], "quick mode", None), Target("6b", goals[1], "quick mode", None)]
        return section
    small, large = sizes[0], sizes[-1]
    growth = {
        kind: per_byte[kind, len(KINDS[kind](large))][0] / per_byte[kind, len(KINDS[kind](small))][0] for kind in KINDS
    }
    total = per_byte["errors", len(errors(large))][1]
    section.targets += [
        Target(
            "6a",
            goals[0],
            ", ".join(f"{kind} {value:.2f}x" for kind, value in growth.items()),
            max(growth.values()) <= LINEAR_TARGET,
        ),
        Target("6b", goals[1], ms(total), total < TOTAL_TARGET),
    ]
    return section


if __name__ == "__main__":
    worker_main(worker)
