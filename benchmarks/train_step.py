"""One training step of the NumPy runtime against torch's: ResNet-18 and LeNet-5 (issue 18).

    python -m benchmarks.train_step [--quick] [--repeats R] [--threads 1,2] [--networks resnet18,lenet5]

A step is forward in training mode, cross-entropy, backward, and SGD with
momentum 0.9. The torch side is the model `archc codegen --target torch`
writes for specs/<name>.arch, trained by autograd and torch.optim.SGD; the
NumPy side is the model `--target numpy` writes, trained through its own API
(model.backward, its SGD), from the same weights (by state_dict key) and the
same batch, and must give the same first loss. Issue 18's targets: at most 2x
torch's time for ResNet-18 at batch 8 (224 x 224), at most 1.5x for LeNet-5 at
batch 64.

How it is measured. The two libraries run in two server processes that take
turns (every other round torch first), so both figures of a round are taken
under the same machine load, and each call follows a pause that lets the other
process's BLAS and OpenMP threads go to sleep (they spin for a while after a
call and would eat into the other's time on a machine with few cores). Both get
the same number of threads (OMP_NUM_THREADS, OPENBLAS_NUM_THREADS,
MKL_NUM_THREADS and torch.set_num_threads), one and two by default. The ratio is
the median of the per-round ratios of wall times; with one thread the ratio of
CPU times (time.process_time) is given too, which other load on the machine
disturbs far less. Peak memory is what the step allocates beyond what was held
before it: for NumPy the peak tracemalloc sees (numpy reports its arrays to it),
for torch the peak of the running sum of the CPU allocations and frees that
torch.profiler records with profile_memory=True.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

if __package__ in (None, ""):  # run as a script: make `benchmarks` and `archc` importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.common import ROOT, SPECS, Server, archc_command, in_turn, median, ms, paired, ratio, table, worker_env

CASES = {"resnet18": (8, None), "lenet5": (64, None)}  # batch, input size (None: the spec's)
QUICK_CASES = {"resnet18": (2, "3x32x32"), "lenet5": (4, None)}
TARGETS = {"resnet18": 2.0, "lenet5": 1.5}  # NumPy step time / torch step time
REPEATS = {"resnet18": 5, "lenet5": 30}
PAUSE = 0.2  # s before each timed call: longer than OpenBLAS's spin timeout
LR, MOMENTUM = 0.01, 0.9
THREAD_VARIABLES = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")


# -- the servers ------------------------------------------------------------------------


def _load_module(path: str):
    import importlib.util

    spec = importlib.util.spec_from_file_location(Path(path).stem, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _torch_peak(step) -> int:
    """Bytes: the peak of the running sum of the CPU allocations (+) and frees (-) in step.

    Each operator's own allocations and frees (self_cpu_memory_usage; its children's
    are theirs), in the order the operators started.
    """
    from torch.profiler import ProfilerActivity, profile

    with profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
        step()
    own = (e for e in prof.events() if e.self_cpu_memory_usage)
    total = peak = 0
    for event in sorted(own, key=lambda e: (e.time_range.start, e.id)):
        total += event.self_cpu_memory_usage
        peak = max(peak, total)
    return peak


def _numpy_peak(step) -> int:
    """Bytes: the peak tracemalloc sees during step, above what was held when it began."""
    import tracemalloc

    tracemalloc.start()
    try:
        base = tracemalloc.get_traced_memory()[0]
        step()
        return tracemalloc.get_traced_memory()[1] - base
    finally:
        tracemalloc.stop()


def _torch_setup(command: dict):
    """The generated torch model, its weights and a batch, written for the NumPy server: the step."""
    import numpy as np
    import torch
    import torch.nn.functional as F  # noqa: N812

    torch.manual_seed(0)
    model = _load_module(command["torch_file"]).build_model().train()
    rng = np.random.default_rng(0)
    x = rng.standard_normal((command["batch"], *command["shape"]), dtype=np.float32)
    target = rng.integers(0, command["classes"], command["batch"])
    folder = Path(command["dir"])
    np.savez(folder / "state.npz", **{k: v.numpy() for k, v in model.state_dict().items()})
    np.save(folder / "x.npy", x)
    np.save(folder / "target.npy", target)
    optimizer = torch.optim.SGD(model.parameters(), LR, momentum=MOMENTUM)
    xt, tt = torch.from_numpy(x), torch.from_numpy(target)

    def step():
        optimizer.zero_grad()
        loss = F.cross_entropy(model(xt), tt)
        loss.backward()
        optimizer.step()
        return loss.item()

    return step


def _numpy_setup(command: dict):
    """The generated NumPy model, with the torch server's weights and batch: the step.

    It reads as the torch step does, through the training API the generated module
    carries (docs/language.md, section 16).
    """
    import numpy as np

    module = _load_module(command["numpy_file"])
    model = module.build_model()
    folder = Path(command["dir"])
    with np.load(folder / "state.npz") as data:
        model.load_state_dict({key: data[key] for key in data.files})
    model.train()
    x, target = np.load(folder / "x.npy"), np.load(folder / "target.npy")
    optimizer = module.SGD(model, lr=LR, momentum=MOMENTUM)

    def step():
        optimizer.zero_grad()
        loss, grad = module.cross_entropy(model(x), target)
        model.backward(grad, input_grads=False)  # torch computes no gradient for x either
        optimizer.step()
        return loss

    return step


class Worker:
    """What a server does with each command; the quick test uses one in-process."""

    def __init__(self, library: str):
        self.library = library
        self.step = None

    def ask(self, **command) -> dict:
        import gc

        from .common import interpreter_details

        if command["op"] == "details":
            return interpreter_details()
        if command["op"] == "setup":
            self.step = (_torch_setup if self.library == "torch" else _numpy_setup)(command)
            return {"loss": self.step()}  # the first step's: both sides compute the same function
        gc.collect()
        if command["op"] == "peak":
            return {"peak": (_torch_peak if self.library == "torch" else _numpy_peak)(self.step)}
        time.sleep(command["pause"])  # "time"
        wall, cpu = time.perf_counter(), time.process_time()
        self.step()
        return {"wall": time.perf_counter() - wall, "cpu": time.process_time() - cpu}

    def close(self) -> None:
        self.step = None


def serve(library: str) -> None:
    """Answer one JSON command per line of stdin with one JSON line on stdout."""
    worker = Worker(library)
    for line in sys.stdin:
        sys.stdout.write(json.dumps(worker.ask(**json.loads(line))) + "\n")
        sys.stdout.flush()


def start_server(library: str, threads: int) -> Server:
    """A `python -m benchmarks.train_step --serve LIBRARY` process with `threads` threads."""
    env = worker_env()
    env.update({name: str(threads) for name in THREAD_VARIABLES})
    return Server([sys.executable, "-m", "benchmarks.train_step", "--serve", library], library, env)


# -- measuring -------------------------------------------------------------------------


def _generate(spec: str, size: str | None, folder: Path) -> dict:
    """Both models archc writes for the spec, and their input's shape and classes."""
    import archc

    files = {}
    for target in ("torch", "numpy"):
        files[f"{target}_file"] = str(folder / f"model_{target}.py")
        cmd = [*archc_command(sys.executable), "codegen", str(SPECS / f"{spec}.arch"), "--target", target]
        cmd += ["-o", files[f"{target}_file"], *(["--input", size] if size else [])]
        subprocess.run(cmd, cwd=ROOT, env=worker_env(), check=True, capture_output=True)
    net = archc.load(SPECS / f"{spec}.arch")
    (shape,) = net.inputs.values()
    shape = tuple(map(int, size.split("x"))) if size else tuple(shape)
    return {**files, "shape": list(shape), "classes": net.layers[-1].shape[0]}


def measure(spec: str, batch: int, size: str | None, threads: int, repeats: int, folder: Path, inline=False) -> dict:
    """Every round's wall and CPU times of both steps, both peaks and both first losses.

    inline runs both steps in this process, with its threads, for the quick test.
    """
    if inline:
        servers = {"numpy": Worker("numpy"), "torch": Worker("torch")}
    else:
        servers = {"numpy": start_server("numpy", threads), "torch": start_server("torch", threads)}
    try:
        work = folder / f"{spec}_{threads}"
        work.mkdir()
        setup = {**_generate(spec, size, work), "spec": spec, "batch": batch, "dir": str(work)}
        losses = {"torch": servers["torch"].ask(op="setup", **setup)["loss"]}
        losses["numpy"] = servers["numpy"].ask(op="setup", **setup)["loss"]
        times = {name: {"wall": [], "cpu": []} for name in servers}
        for i in range(repeats):
            for name, server in in_turn(list(servers.items()), i):
                reply = server.ask(op="time", pause=PAUSE)
                times[name]["wall"].append(reply["wall"])
                times[name]["cpu"].append(reply["cpu"])
        peaks = {name: server.ask(op="peak")["peak"] for name, server in servers.items()}
        return {"times": times, "peaks": peaks, "losses": losses}
    finally:
        for server in servers.values():
            server.close()


def _mib(size: int) -> str:
    return f"{size / 2**20:.0f} MiB" if size >= 2**20 else f"{size / 2**10:.0f} KiB"


def run(
    quick: bool, repeats: int | None, thread_counts: list[int], log=print, inline=False, networks=None
) -> tuple[str, dict]:
    """The report (Markdown) and, per (spec, threads), the wall-time ratio and first losses."""
    cases = {spec: case for spec, case in (QUICK_CASES if quick else CASES).items() if spec in (networks or CASES)}
    rows, ratios = [], {}
    with tempfile.TemporaryDirectory(prefix="archc-train-") as tmp:
        for spec, (batch, size) in cases.items():
            for threads in thread_counts:
                log(f"train step: {spec} batch {batch}, {threads} thread(s)")
                count = repeats or (1 if quick else REPEATS[spec])
                result = measure(spec, batch, size, threads, count, Path(tmp), inline)
                t = result["times"]
                wall = paired(t["numpy"]["wall"], t["torch"]["wall"])
                cpu = paired(t["numpy"]["cpu"], t["torch"]["cpu"]) if threads == 1 else float("nan")
                losses = result["losses"]
                ratios[spec, threads] = {"ratio": wall, "losses": losses}
                rows.append(
                    [
                        spec + (f" at {size}" if size else ""),
                        batch,
                        threads,
                        ms(median(t["numpy"]["wall"])),
                        ms(median(t["torch"]["wall"])),
                        ratio(wall),
                        ratio(cpu),
                        "-" if quick else f"{TARGETS[spec]}x: {'met' if wall <= TARGETS[spec] else 'NOT met'}",
                        _mib(result["peaks"]["numpy"]),
                        _mib(result["peaks"]["torch"]),
                        f"{abs(losses['numpy'] - losses['torch']) / abs(losses['torch']):.0e}",
                    ]
                )
                log("| " + " | ".join(map(str, rows[-1])) + " |")  # each row as soon as it is measured
    headers = ["network", "batch", "threads", "NumPy step", "torch step", "NumPy / torch", "CPU time ratio"]
    headers += ["target", "NumPy peak", "torch peak", "1st loss rel. diff."]
    text = (
        "One training step (forward, cross-entropy, backward, SGD with momentum) of the NumPy "
        "and the torch model archc generates; "
        f"medians of {'1' if quick else ', '.join(f'{k} {repeats or v}' for k, v in REPEATS.items())} "
        "interleaved rounds" + (" (QUICK: tiny sizes, the figures mean nothing)" if quick else "") + ".\n\n"
    )
    return text + table(headers, rows), ratios


def main(argv=None) -> str:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="tiny sizes, one round: proves it runs")
    parser.add_argument("--repeats", type=int, default=None, help="rounds per case")
    parser.add_argument("--threads", default="1,2", help="comma-separated thread counts (default 1,2)")
    parser.add_argument("--networks", default=",".join(CASES), help=f"comma-separated, of {', '.join(CASES)}")
    args = parser.parse_args(argv)
    threads = [int(n) for n in args.threads.split(",")]
    text, _ = run(args.quick, args.repeats, threads, networks=args.networks.split(","))
    print(text)
    return text


if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] == "--serve":
        serve(sys.argv[2])
    else:
        main()
