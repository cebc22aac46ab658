"""4. The NumPy backend against PyTorch, and against the machine's matrix-multiply rate.

Both models are written by `archc codegen --target numpy|torch`; the NumPy one
takes the torch one's weights (through an .npz file), so both compute the same
function (the largest difference is reported). Forward pass, eval mode,
float32, torch under no_grad. Achieved GFLOP/s = 2 x MACs x batch / time.

The two libraries run in two server processes that take turns: each round
times the NumPy forward, the torch forward, a 2048 x 2048 float32 matrix
product by np.matmul and one by torch.mm (every other round torch first), so
every ratio and every fraction of the matmul rate compares figures taken
under the same machine load. They are
kept apart because OpenBLAS's and OpenMP's worker threads keep spinning for a
while after a call returns: in one process, each library's threads would eat
into the other's time on a machine with few cores. A pause before each timed
call lets the other process's threads go to sleep.
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from .common import (
    ROOT,
    SPECS,
    Context,
    Section,
    Server,
    Target,
    archc_command,
    can_import,
    in_turn,
    median,
    ms,
    paired,
    ratio,
    table,
    worker_env,
)

CASES = [  # spec, batch
    ("lenet5", 1),
    ("lenet5", 8),
    ("minivgg_cifar10", 1),
    ("minivgg_cifar10", 8),
    ("resnet18", 1),
    ("resnet18", 8),
    ("vgg16", 1),
    ("vgg16", 8),
]
REPEATS = {"lenet5": 20, "minivgg_cifar10": 20, "resnet18": 9, "vgg16": 5}
QUICK_CASES = [("lenet5", 1), ("lenet5", 8), ("minivgg_cifar10", 1), ("resnet18", 1), ("vgg16", 1)]
QUICK_INPUT = {"resnet18": "3x32x32", "vgg16": "3x32x32"}  # tiny, so quick mode stays quick
TARGETED = ("resnet18", "vgg16")  # at batch 8
SPEED_TARGET = 1.5  # NumPy time / torch time
RATE_TARGET = 0.40  # fraction of np.matmul's rate
MATMUL_N = 2048
QUICK_MATMUL_N = 512
PAUSE = 0.2  # s before each timed call: longer than OpenBLAS's spin timeout (2**28 cycles)
THREAD_VARIABLES = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")
SINGLE_REPEATS = 3  # rounds of the one-thread comparison


# -- the servers -------------------------------------------------------------------------


def _load_module(path: str):
    import importlib.util

    spec = importlib.util.spec_from_file_location(Path(path).stem, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _threads() -> str:
    try:
        from threadpoolctl import threadpool_info

        return ", ".join(f"{p['internal_api']} {p['num_threads']}" for p in threadpool_info())
    except ImportError:
        return "threadpoolctl not installed"


def serve(library: str, n: int) -> None:
    """Answer one JSON command per line of stdin with one JSON line on stdout."""
    import numpy as np

    from .common import interpreter_details

    rng = np.random.default_rng(0)
    a = rng.standard_normal((n, n), dtype=np.float32)
    b = rng.standard_normal((n, n), dtype=np.float32)
    if library == "torch":
        import torch

        ta, tb, tc = torch.from_numpy(a), torch.from_numpy(b), torch.empty(n, n)
        matmul = lambda: torch.mm(ta, tb, out=tc)  # noqa: E731
    else:
        c = np.empty_like(a)
        matmul = lambda: np.matmul(a, b, out=c)  # noqa: E731
    calls = {"matmul": matmul}
    for line in sys.stdin:
        command = json.loads(line)
        op = command["op"]
        reply = {}
        if op == "details":
            reply = {**interpreter_details(), "threads": _threads()}
        elif op == "info":  # shape and MACs, from archc
            import archc

            path = SPECS / f"{command['spec']}.arch"
            net = archc.load(path)
            if command["input"]:  # the spec at another input size, as `archc codegen --input` wrote it
                (name,) = net.inputs
                net = archc.load(path, inputs={name: tuple(map(int, command["input"].split("x")))})
            (shape,) = net.inputs.values()
            reply = {"shape": list(shape), "macs": net.totals.macs}
        elif op == "setup" and library == "torch":
            folder = Path(command["dir"])
            torch.manual_seed(0)
            model = _load_module(command["file"]).build_model().eval()
            x = rng.standard_normal((command["batch"], *command["shape"]), dtype=np.float32)
            xt = torch.from_numpy(x)

            def forward(model=model, xt=xt):
                with torch.no_grad():
                    return model(xt)

            np.save(folder / "x.npy", x)
            np.save(folder / "y.npy", forward().numpy())
            np.savez(folder / "state.npz", **{k: v.numpy() for k, v in model.state_dict().items()})
            calls["model"] = forward
        elif op == "setup":
            folder = Path(command["dir"])
            model = _load_module(command["file"]).build_model(seed=0).eval()
            if (folder / "x.npy").exists():
                model.load(folder / "state.npz")
                x = np.load(folder / "x.npy")
                expected = np.load(folder / "y.npy")
                scale = max(float(np.abs(expected).max()), 1e-30)
                reply["difference"] = float(np.abs(model(x) - expected).max()) / scale
            else:
                x = rng.standard_normal((command["batch"], *command["shape"]), dtype=np.float32)
            calls["model"] = lambda model=model, x=x: model(x)
        elif op == "time":
            fn = calls[command["what"]]
            if command.get("warmup"):
                fn()
            time.sleep(command["pause"])
            start = time.perf_counter()
            fn()
            reply["seconds"] = time.perf_counter() - start
        sys.stdout.write(json.dumps(reply) + "\n")
        sys.stdout.flush()


def start_server(python: str, library: str, n: int, threads: int | None = None) -> Server:
    """A `python -m benchmarks.numpy_backend --serve LIBRARY N` process."""
    env = worker_env()
    if threads:
        env.update({name: str(threads) for name in THREAD_VARIABLES})
    return Server([python, "-m", "benchmarks.numpy_backend", "--serve", library, str(n)], library, env)


def measure(ctx: Context, python: str, torch_python: str | None, cases, n: int, folder: Path, threads=None) -> dict:
    """Per case: shape, MACs, the difference between the models and every round's times."""
    servers = {"numpy": start_server(python, "numpy", n, threads)}
    if torch_python:
        servers["torch"] = start_server(torch_python, "torch", n, threads)
    try:
        details = {name: server.ask(op="details") for name, server in servers.items()}
        results = []
        for case in cases:
            ctx.say(f"numpy backend: {case['spec']} batch {case['batch']}" + (f", {threads} thread" if threads else ""))
            info = servers["numpy"].ask(op="info", spec=case["spec"], input=case["input"])
            work = folder / f"{case['spec']}_{case['batch']}_{threads or 0}"
            work.mkdir()
            common = {"batch": case["batch"], "shape": info["shape"], "dir": str(work)}
            if "torch" in servers:
                servers["torch"].ask(op="setup", file=case["torch_file"], **common)
            setup = servers["numpy"].ask(op="setup", file=case["numpy_file"], **common)
            times = {f"{name} {what}": [] for what in ("model", "matmul") for name in servers}
            for i in range(case["repeats"]):
                for what in ("model", "matmul"):
                    for name, server in in_turn(list(servers.items()), i):
                        reply = server.ask(op="time", what=what, pause=PAUSE, warmup=i == 0)
                        times[f"{name} {what}"].append(reply["seconds"])
            results.append({**case, **info, "difference": setup.get("difference"), "times": times})
        return {"details": details, "results": results}
    finally:
        for server in servers.values():
            server.close()


def _generate(ctx: Context, spec: str, target: str, size: str | None, out: Path) -> None:
    cmd = [*archc_command(ctx.python), "codegen", str(SPECS / f"{spec}.arch"), "--target", target, "-o", str(out)]
    if size:
        cmd += ["--input", size]
    subprocess.run(cmd, cwd=ROOT, env=worker_env(), check=True, capture_output=True)


def _row(item: dict, flop: int, has_torch: bool) -> tuple[list, float | None, float]:
    """A table row; the NumPy / PyTorch time ratio and the NumPy model's fraction of np.matmul's rate.

    Ratios and fractions are medians over the rounds of the figures of one round,
    which were taken under the same load.
    """
    times = item["times"]
    t = {k: median(v) for k, v in times.items()}
    macs = item["macs"] * item["batch"]
    ours = 2 * macs / t["numpy model"] / 1e9
    fraction = paired(times["numpy matmul"], times["numpy model"]) * 2 * macs / flop
    row = [
        item["spec"] + (f" at {item['input']}" if item["input"] else ""),
        item["batch"],
        ms(t["numpy model"]),
        f"{ours:.1f}",
        f"{fraction:.0%} of {flop / t['numpy matmul'] / 1e9:.0f}",
    ]
    if not has_torch:
        return row, None, fraction
    theirs = 2 * macs / t["torch model"] / 1e9
    their_fraction = paired(times["torch matmul"], times["torch model"]) * 2 * macs / flop
    speed = paired(times["numpy model"], times["torch model"])
    row += [ms(t["torch model"]), f"{theirs:.1f}", f"{their_fraction:.0%} of {flop / t['torch matmul'] / 1e9:.0f}"]
    row.append(ratio(speed))
    return row, speed, fraction


def run(ctx: Context) -> Section:
    section = Section("4. NumPy backend vs PyTorch")
    if can_import(ctx.python, "numpy"):
        section.skipped = f"`{ctx.python}` cannot import numpy"
        return section
    torch_python, note = None, None
    for candidate in (ctx.python, ctx.torch_python):
        if not can_import(candidate, "numpy", "torch"):
            torch_python = candidate
            break
    else:
        note = "torch is not importable, so only the NumPy models ran (no ratios)"
    cases = QUICK_CASES if ctx.quick else CASES
    n = QUICK_MATMUL_N if ctx.quick else MATMUL_N
    ctx.say("numpy backend: generating code")
    with tempfile.TemporaryDirectory(prefix="archc-bench-") as tmp:
        payload = []
        for spec, batch in cases:
            size = QUICK_INPUT.get(spec) if ctx.quick else None
            tag = f"{spec}_{size.replace('x', '_')}" if size else spec
            files = {}
            for target in ("numpy", "torch"):
                path = Path(tmp) / f"{tag}_{target}.py"
                if not path.exists():
                    _generate(ctx, spec, target, size, path)
                files[f"{target}_file"] = str(path)
            payload.append({"spec": spec, "batch": batch, "input": size, **files, "repeats": ctx.reps(REPEATS[spec])})
        result = measure(ctx, ctx.python, torch_python, payload, n, Path(tmp))
        single = None
        if not ctx.quick and torch_python:
            chosen = [dict(case, repeats=ctx.reps(SINGLE_REPEATS)) for case in payload if case["batch"] == 8]
            chosen = [case for case in chosen if case["spec"] in TARGETED]
            single = measure(ctx, ctx.python, torch_python, chosen, n, Path(tmp), threads=1)
    numpy_details = result["details"]["numpy"]
    torch_details = result["details"].get("torch")
    flop = 2 * n**3
    rows, outcome = [], {}
    rates = {"numpy": [], "torch": []}
    for item in result["results"]:
        row, speed, fraction = _row(item, flop, torch_details is not None)
        rates["numpy"] += [flop / v / 1e9 for v in item["times"]["numpy matmul"]]
        if torch_details:
            rates["torch"] += [flop / v / 1e9 for v in item["times"]["torch matmul"]]
            row.append(f"{item['difference']:.1e}")
            if item["spec"] in TARGETED and item["batch"] == 8:
                outcome[item["spec"]] = (speed, fraction)
        rows.append(row)
    headers = ["network", "batch", "NumPy", "GFLOP/s", "of np.matmul rate"]
    if torch_details:
        headers += ["PyTorch", "GFLOP/s", "of torch.mm rate", "NumPy / PyTorch", "max rel. difference"]
    text = (
        f"NumPy side: `{numpy_details['executable']}`, numpy {numpy_details.get('numpy')} "
        f"({numpy_details.get('numpy_blas')}; thread pools: {numpy_details['threads']})."
    )
    if torch_details:
        text += (
            f" PyTorch side: `{torch_details['executable']}`, torch {torch_details.get('torch')} "
            f"({torch_details.get('torch_blas')}, {torch_details.get('torch_threads')} threads, "
            f"{torch_details.get('torch_cpu')})."
        )
    rounds = ", ".join(f"{k} {ctx.reps(v)}" for k, v in REPEATS.items())
    text += (
        f" Times are medians of the rounds ({rounds}), each call after a {PAUSE} s pause; ratios and "
        "fractions of the matmul rate are medians of the per-round ratios (figures of one round share "
        "the machine's load)."
    )
    section.add(text)
    if note:
        section.add(note + ".")
    section.add(table(headers, rows))
    summary = f"The machine's float32 matrix-multiply rate, {n} x {n} x {n}, median over all rounds: "
    summary += f"np.matmul {median(rates['numpy']):.0f} GFLOP/s"
    if torch_details:
        summary += f", torch.mm {median(rates['torch']):.0f} GFLOP/s"
    section.add(summary + "; each row's fraction compares the model with the products of its own rounds.")
    if single:
        rows = [_row(item, flop, True)[0] for item in single["results"]]
        section.add(
            f"The same with one thread on each side ({', '.join(THREAD_VARIABLES)} = 1; medians of "
            f"{ctx.reps(SINGLE_REPEATS)} rounds): what each library does per core. Single-threaded figures "
            "suffer much less from other load on the machine than two threads that wait for each other."
        )
        section.add(table(headers[:-1], rows))
    for spec in TARGETED:
        speed_goal = f"{spec} batch 8: NumPy <= {SPEED_TARGET}x PyTorch's time"
        rate_goal = f"{spec} batch 8: >= {RATE_TARGET:.0%} of np.matmul's rate"
        if ctx.quick or spec not in outcome:
            section.targets += [
                Target(f"4-{spec}", speed_goal, "not run", None),
                Target(f"4-{spec}-rate", rate_goal, "not run", None),
            ]
            continue
        speed, fraction = outcome[spec]
        section.targets += [
            Target(f"4-{spec}", speed_goal, ratio(speed), speed <= SPEED_TARGET),
            Target(f"4-{spec}-rate", rate_goal, f"{fraction:.0%}", fraction >= RATE_TARGET),
        ]
    return section


if __name__ == "__main__":
    if len(sys.argv) == 4 and sys.argv[1] == "--serve":
        serve(sys.argv[2], int(sys.argv[3]))
    else:
        raise SystemExit("usage: python -m benchmarks.numpy_backend --serve numpy|torch N")
