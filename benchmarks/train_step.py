"""One training step of the NumPy runtime against torch's: ResNet-18 and LeNet-5 (issue 18).

    python -m benchmarks.train_step [--quick] [--repeats R] [--threads 1,2]

A step is forward in training mode, cross-entropy, backward, and SGD with
momentum 0.9. The torch side is the model `archc codegen --target torch`
writes for specs/<name>.arch, trained by autograd and torch.optim.SGD; the
NumPy side starts from the same weights (its state_dict, by key) and the same
batch, and must give the same first loss. Issue 18's targets: at most 2x
torch's time for ResNet-18 at batch 8 (224 x 224), at most 1.5x for LeNet-5 at
batch 64.

The NumPy step is HAND-COMPOSED from the runtime's kernels (numpy_kernels.py
and numpy_backward.py), one line per layer forward and backward, as the
generated code is to call them (_resnet18_step, _lenet5_step), until the
generated models have a backward.

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

from benchmarks.common import ROOT, SPECS, archc_command, in_turn, median, ms, paired, ratio, table, worker_env

CASES = {"resnet18": (8, None), "lenet5": (64, None)}  # batch, input size (None: the spec's)
QUICK_CASES = {"resnet18": (2, "3x32x32"), "lenet5": (4, None)}
TARGETS = {"resnet18": 2.0, "lenet5": 1.5}  # NumPy step time / torch step time
REPEATS = {"resnet18": 5, "lenet5": 30}
PAUSE = 0.2  # s before each timed call: longer than OpenBLAS's spin timeout
LR, MOMENTUM = 0.01, 0.9
THREAD_VARIABLES = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")


# -- the NumPy steps, composed from the runtime's kernels -----------------------------


def _lenet5_step(s, x, target):
    """LeNet-5 (specs/lenet5.arch) forward, cross-entropy and backward: (loss, grads)."""
    import numpy as np

    from archc.codegen.runtime import numpy_backward as B  # noqa: N812
    from archc.codegen.runtime import numpy_kernels as K  # noqa: N812

    a1 = K.conv(x, s["C1.weight"], s["C1.bias"])
    h1 = np.tanh(a1)
    p1 = K.avg_pool(h1, 2)
    h2 = np.tanh(p1)
    a3 = K.conv(h2, s["C3.weight"], s["C3.bias"])
    h3 = np.tanh(a3)
    p2 = K.avg_pool(h3, 2)
    h4 = np.tanh(p2)
    flat = h4.reshape(len(h4), -1)
    a5 = K.linear(flat, s["F5.weight"], s["F5.bias"])
    h5 = np.tanh(a5)
    a6 = K.linear(h5, s["F6.weight"], s["F6.bias"])
    h6 = np.tanh(a6)
    a7 = K.linear(h6, s["out.weight"], s["out.bias"])
    loss, g = B.cross_entropy(K.softmax(a7), target)

    grads = {}
    g = B.softmax_backward(g, a7)
    g, grads["out.weight"], grads["out.bias"] = B.linear_backward(g, h6, s["out.weight"], s["out.bias"])
    g = B.tanh_backward(g, a6)
    g, grads["F6.weight"], grads["F6.bias"] = B.linear_backward(g, h5, s["F6.weight"], s["F6.bias"])
    g = B.tanh_backward(g, a5)
    g, grads["F5.weight"], grads["F5.bias"] = B.linear_backward(g, flat, s["F5.weight"], s["F5.bias"])
    g = B.tanh_backward(B.reshape_backward(g, h4.shape), p2)
    g = B.tanh_backward(B.avg_pool_backward(g, h3.shape, 2), a3)
    g, grads["C3.weight"], grads["C3.bias"] = B.conv_backward(g, h2, s["C3.weight"], s["C3.bias"])
    g = B.tanh_backward(B.avg_pool_backward(B.tanh_backward(g, p1), h1.shape, 2), a1)
    _, grads["C1.weight"], grads["C1.bias"] = B.conv_backward(g, x, s["C1.weight"], s["C1.bias"], input_grad=False)
    return loss, grads


def _resnet18_step(s, x, target):
    """ResNet-18 (specs/resnet18.arch, torchvision's names) forward, cross-entropy, backward."""
    from archc.codegen.runtime import numpy_backward as B  # noqa: N812
    from archc.codegen.runtime import numpy_kernels as K  # noqa: N812

    grads, blocks = {}, []

    def conv_bn(x, conv, bn, stride, padding, tape):
        a = K.conv(x, s[conv + ".weight"], None, stride, padding)
        b = K.batch_norm(a, s, bn, True)
        tape.append((b, (conv, bn, x, a, stride, padding)))
        return b

    def conv_bn_backward(g, conv, bn, x, a, stride, padding, first=False):
        g, grads[bn + ".weight"], grads[bn + ".bias"] = B.batch_norm_backward(g, a, s, bn, True)
        g, grads[conv + ".weight"], _ = B.conv_backward(
            g, x, s[conv + ".weight"], None, stride, padding, input_grad=not first
        )
        return g

    stem = []
    r1 = K.relu(conv_bn(x, "conv1", "bn1", 2, 3, stem))
    h = K.max_pool(r1, 3, 2, 1)
    for layer, first_stride in zip(range(1, 5), (1, 2, 2, 2)):
        for index in range(2):
            name, tape = f"layer{layer}.{index}", []
            stride = first_stride if index == 0 else 1
            o = K.relu(conv_bn(h, name + ".conv1", name + ".bn1", stride, 1, tape))
            o = conv_bn(o, name + ".conv2", name + ".bn2", 1, 1, tape)
            if name + ".downsample.0.weight" in s:
                h = conv_bn(h, name + ".downsample.0", name + ".downsample.1", stride, 0, tape)
            z = o + h
            h = K.relu(z)
            blocks.append((tape, z))
    pooled = K.global_avg_pool(h)
    flat = pooled.reshape(len(pooled), -1)
    loss, g = B.cross_entropy(K.linear(flat, s["fc.weight"], s["fc.bias"]), target)

    g, grads["fc.weight"], grads["fc.bias"] = B.linear_backward(g, flat, s["fc.weight"], s["fc.bias"])
    g = B.global_avg_pool_backward(B.reshape_backward(g, pooled.shape), h.shape)
    del h, pooled, flat
    while blocks:  # each block's arrays are freed once its backward has read them
        tape, z = blocks.pop()
        g = B.relu_backward(g, z)
        main = conv_bn_backward(g, *tape[1][1])
        main = conv_bn_backward(B.relu_backward(main, tape[0][0]), *tape[0][1])
        g = main + (conv_bn_backward(g, *tape[2][1]) if len(tape) == 3 else g)
        del tape, z, main
    g = B.relu_backward(B.max_pool_backward(g, r1, 3, 2, 1), stem[0][0])
    del r1
    conv_bn_backward(g, *stem.pop()[1], first=True)
    return loss, grads


HAND_STEPS = {"lenet5": _lenet5_step, "resnet18": _resnet18_step}


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
    model = _load_module(command["file"]).build_model().train()
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
    """The hand-composed NumPy step from the torch server's weights and batch."""
    import numpy as np

    from archc.codegen.runtime import numpy_backward as B  # noqa: N812

    folder = Path(command["dir"])
    with np.load(folder / "state.npz") as data:
        state = {key: data[key].copy() for key in data.files}
    x, target = np.load(folder / "x.npy"), np.load(folder / "target.npy")
    compose, momentum = HAND_STEPS[command["spec"]], {}

    def step():
        loss, grads = compose(state, x, target)
        B.sgd_step(state, grads, momentum, LR, momentum=MOMENTUM)
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


class Server:
    """A `python -m benchmarks.train_step --serve LIBRARY` process with `threads` threads."""

    def __init__(self, library: str, threads: int):
        self.library = library
        env = worker_env()
        env.update({name: str(threads) for name in THREAD_VARIABLES})
        self.process = subprocess.Popen(
            [sys.executable, "-m", "benchmarks.train_step", "--serve", library],
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


# -- measuring -------------------------------------------------------------------------


def _generate(spec: str, size: str | None, out: Path) -> dict:
    """The torch model archc writes for the spec, and its input's shape and classes."""
    import archc

    cmd = [*archc_command(sys.executable), "codegen", str(SPECS / f"{spec}.arch"), "--target", "torch", "-o", str(out)]
    if size:
        cmd += ["--input", size]
    subprocess.run(cmd, cwd=ROOT, env=worker_env(), check=True, capture_output=True)
    net = archc.load(SPECS / f"{spec}.arch")
    (shape,) = net.inputs.values()
    shape = tuple(map(int, size.split("x"))) if size else tuple(shape)
    return {"file": str(out), "shape": list(shape), "classes": net.layers[-1].shape[0]}


def measure(spec: str, batch: int, size: str | None, threads: int, repeats: int, folder: Path, inline=False) -> dict:
    """Every round's wall and CPU times of both steps, both peaks and both first losses.

    inline runs both steps in this process, with its threads, for the quick test.
    """
    if inline:
        servers = {"numpy": Worker("numpy"), "torch": Worker("torch")}
    else:
        servers = {"numpy": Server("numpy", threads), "torch": Server("torch", threads)}
    try:
        work = folder / f"{spec}_{threads}"
        work.mkdir()
        setup = {**_generate(spec, size, work / "model.py"), "spec": spec, "batch": batch, "dir": str(work)}
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


def run(quick: bool, repeats: int | None, thread_counts: list[int], log=print, inline=False) -> tuple[str, dict]:
    """The report (Markdown) and, per (spec, threads), the wall-time ratio and first losses."""
    cases = QUICK_CASES if quick else CASES
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
    headers = ["network", "batch", "threads", "NumPy step", "torch step", "NumPy / torch", "CPU time ratio"]
    headers += ["target", "NumPy peak", "torch peak", "1st loss rel. diff."]
    text = (
        "One training step (forward, cross-entropy, backward, SGD with momentum), NumPy "
        "(hand-composed from the runtime's kernels) against the torch model archc generates; "
        f"medians of {'1' if quick else ', '.join(f'{k} {repeats or v}' for k, v in REPEATS.items())} "
        "interleaved rounds" + (" (QUICK: tiny sizes, the figures mean nothing)" if quick else "") + ".\n\n"
    )
    return text + table(headers, rows), ratios


def main(argv=None) -> str:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="tiny sizes, one round: proves it runs")
    parser.add_argument("--repeats", type=int, default=None, help="rounds per case")
    parser.add_argument("--threads", default="1,2", help="comma-separated thread counts (default 1,2)")
    args = parser.parse_args(argv)
    text, _ = run(args.quick, args.repeats, [int(n) for n in args.threads.split(",")])
    print(text)
    return text


if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] == "--serve":
        serve(sys.argv[2])
    else:
        main()
