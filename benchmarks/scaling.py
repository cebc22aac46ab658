"""2. Scaling: parse + analyse generated networks of 10 to 10,000 layers, and generate their code.

Two shapes of network: a chain, one explicit line per layer (the parser's
worst case: every layer is text), and a residual stack, `repeat` over a
five-layer block with a skip connection (the expander's case: little text,
many layers). Time is `archc.loads(text)` in a fresh worker process after a
warm-up on a small spec, the median of several runs as a user runs it (the
collector is on; `loads` pauses it itself while it works); peak memory is tracemalloc's peak during one further
run (tracemalloc slows Python down, so it is never on while timing).

Code generation (`archc.codegen.generate`, both targets) is timed on the
same networks and on a third, the chain with separate `relu` layers (how an
imported Caffe or Darknet net reads): every one of those asks whether its
input has no other reader, the question that made the torch target
quadratic (20,000 layers in 36 s, against 1.8 s for NumPy; issue 14).
"""

from __future__ import annotations

from .common import Context, Section, Target, median, ms, run_worker, table, worker_main

SIZES = (10, 100, 1000, 10000)
QUICK_SIZES = (10, 100, 1000)
LINEAR_TARGET = 1.3  # time per layer at 10,000 / time per layer at 1,000
TOTAL_TARGET = 1.0  # s for 10,000 layers


def chain(layers: int) -> str:
    """An input and layers - 1 convolutions, each on its own line."""
    lines = ["network Chain {", "  input x: 16x32x32"]
    lines += [f"  conv c{i}: 16 @ 3x3 pad=1 -> relu" for i in range(1, layers)]
    return "\n".join([*lines, "}"]) + "\n"


RESIDUAL_BLOCK = """\
block res(ch) {
  conv c1: ch @ 3x3 pad=1 bias=false
  bn   b1 -> relu
  conv c2: ch @ 3x3 pad=1 bias=false
  bn   b2
  add  (b2, in) -> relu
}
"""


def residual(layers: int) -> str:
    """An input and (layers - 1) // 5 residual blocks of five layers."""
    blocks = max((layers - 1) // 5, 1)
    return RESIDUAL_BLOCK + f"network Residual {{\n  input x: 16x32x32\n  repeat {blocks} {{ res: 16 }}\n}}\n"


KINDS = {"chain": chain, "residual": residual}


def relu_layers(layers: int) -> str:
    """An input and layers - 1 layers: convolutions and `relu` layers in turn, each on its own line."""
    lines = ["network ReluLayers {", "  input x: 16x32x32"]
    lines += [f"  conv c{i}: 16 @ 3x3 pad=1" if i % 2 else f"  relu r{i}" for i in range(1, layers)]
    return "\n".join([*lines, "}"]) + "\n"


CODEGEN_KINDS = {**KINDS, "relu_layers": relu_layers}
CODEGEN_TARGETS = ("torch", "numpy")


def worker(payload: dict) -> dict:
    import gc
    import tracemalloc

    import archc
    from archc.codegen import generate

    from .common import interpreter_details, timed

    archc.loads(residual(20), "warmup.arch")  # the parser's tables are loaded once per process
    results = []
    for kind, sizes in payload["runs"].items():
        for size in sizes:
            text = KINDS[kind](size)
            layers = len(archc.loads(text, f"{kind}.arch").graph)
            gc.collect()
            repeats = payload["repeats"] if size < 10000 else max(1, payload["repeats"] // 2)
            times = timed(lambda text=text, kind=kind: archc.loads(text, f"{kind}.arch"), repeats, warmup=0)
            gc.collect()
            tracemalloc.start()
            archc.loads(text, f"{kind}.arch")
            peak = tracemalloc.get_traced_memory()[1]
            tracemalloc.stop()
            results.append({"kind": kind, "size": size, "layers": layers, "times": times, "peak": peak})
    codegen = []
    for kind, sizes in payload.get("codegen", {}).items():
        for size in sizes:
            net = archc.loads(CODEGEN_KINDS[kind](size), f"{kind}.arch")
            repeats = payload["repeats"] if size < 10000 else max(1, payload["repeats"] // 2)
            for target in CODEGEN_TARGETS:
                gc.collect()
                times = timed(lambda net=net, target=target: generate(net, target), repeats)
                codegen.append({"kind": kind, "size": size, "target": target, "layers": len(net.graph), "times": times})
    return {"details": interpreter_details(), "results": results, "codegen": codegen}


def run(ctx: Context) -> Section:
    section = Section("2. Scaling")
    sizes = QUICK_SIZES if ctx.quick else SIZES
    ctx.say("scaling")
    payload = {
        "runs": {k: list(sizes) for k in KINDS},
        "codegen": {k: list(sizes) for k in CODEGEN_KINDS},
        "repeats": ctx.reps(5),
    }
    result = run_worker(ctx.python, "scaling", payload)
    if "error" in result:
        section.skipped = f"the worker failed: {result['error']}"
        return section
    rows, per_layer = [], {}
    for item in result["results"]:
        t = median(item["times"])
        per_layer[item["kind"], item["size"]] = (t / item["layers"], t)
        rows.append(
            [
                item["kind"],
                f"{item['layers']:,}",
                ms(t),
                f"{t / item['layers'] * 1e6:.0f} us",
                f"{item['peak'] / 2**20:.1f} MiB",
                f"{item['peak'] / item['layers'] / 1024:.1f} KiB",
            ]
        )
    section.add(
        "`archc.loads(text)` of generated specs: a chain (one line per layer: `conv cN: 16 @ 3x3 pad=1 -> relu`) "
        "and a residual stack (`repeat N { res: 16 }` over a block of conv, bn, conv, bn, add). "
        f"Medians of {ctx.reps(5)} runs ({max(1, ctx.reps(5) // 2)} at 10,000 layers) in a fresh process; "
        "peak memory by tracemalloc in a separate run."
    )
    section.add(
        table(
            ["network", "layers", "parse + analyse", "per layer", "peak memory", "per layer"],
            rows,
        )
    )
    codegen = _codegen_table(section, result["codegen"], ctx)
    if ctx.quick:
        section.targets += [
            Target("2a", f"linear: per-layer time at 10,000 <= {LINEAR_TARGET}x that at 1,000", "quick mode", None),
            Target("2b", "10,000 layers in under 1 s", "quick mode", None),
            Target(
                "2c",
                f"code generation linear: per-layer time at 10,000 <= {LINEAR_TARGET}x that at 1,000",
                "quick mode",
                None,
            ),
        ]
        return section
    growth = {kind: per_layer[kind, 10000][0] / per_layer[kind, 1000][0] for kind in KINDS}
    totals = {kind: per_layer[kind, 10000][1] for kind in KINDS}
    section.targets += [
        Target(
            "2a",
            f"linear: per-layer time at 10,000 <= {LINEAR_TARGET}x that at 1,000",
            ", ".join(f"{kind} {value:.2f}x" for kind, value in growth.items()),
            max(growth.values()) <= LINEAR_TARGET,
        ),
        Target(
            "2b",
            "10,000 layers in under 1 s",
            ", ".join(f"{kind} {ms(value)}" for kind, value in totals.items()),
            max(totals.values()) < TOTAL_TARGET,
        ),
    ]
    growth = {key: codegen[(*key, 10000)] / codegen[(*key, 1000)] for key in codegen_runs()}
    section.targets.append(
        Target(
            "2c",
            f"code generation linear: per-layer time at 10,000 <= {LINEAR_TARGET}x that at 1,000",
            ", ".join(f"{kind} {target} {value:.2f}x" for (kind, target), value in growth.items()),
            max(growth.values()) <= LINEAR_TARGET,
        )
    )
    return section


def codegen_runs() -> list[tuple[str, str]]:
    return [(kind, target) for kind in CODEGEN_KINDS for target in CODEGEN_TARGETS]


def _codegen_table(section: Section, items: list[dict], ctx: Context) -> dict:
    """The code generation table; {(kind, target, size): median time per layer}."""
    rows, per_layer = [], {}
    for item in items:
        t = median(item["times"])
        per_layer[item["kind"], item["target"], item["size"]] = t / item["layers"]
        rows.append([item["kind"], item["target"], f"{item['layers']:,}", ms(t), f"{t / item['layers'] * 1e6:.0f} us"])
    section.add(
        "`archc.codegen.generate(net, target)` of the same networks and of a chain of convolutions and separate "
        f"`relu` layers, in turn (`conv cN: 16 @ 3x3 pad=1`, `relu rN`), analysed once. Medians of {ctx.reps(5)} "
        "runs in the same process."
    )
    section.add(table(["network", "target", "layers", "code generation", "per layer"], rows))
    return per_layer


if __name__ == "__main__":
    worker_main(worker)
