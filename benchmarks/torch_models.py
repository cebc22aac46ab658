"""5. The generated PyTorch model against torchvision's, with the same weights.

`archc codegen --target torch` of specs/resnet18.arch and specs/resnet50.arch
takes torchvision's weights by position (README: "Generated code"); both
models then compute the same function, so their forward times measure only
what the generated code adds. Eval mode, no_grad, float32, interleaved rounds.
Then `torch.compile` of the generated module: it must compile and agree with
the eager model.
"""

from __future__ import annotations

import subprocess
import tempfile
from pathlib import Path

from .common import (
    ROOT,
    SPECS,
    Context,
    Section,
    Target,
    archc_command,
    can_import,
    median,
    ms,
    paired,
    run_worker,
    table,
    worker_env,
    worker_main,
)

NETWORKS = ("resnet18", "resnet50")
BATCHES = (1, 8)
REPEATS = {"resnet18": 15, "resnet50": 9}
TARGET = 0.05  # the generated model's time may exceed torchvision's by 5%
QUICK_SIZE = 64


def worker(payload: dict) -> dict:
    import importlib.util
    import time

    import torch
    import torchvision

    from .common import interleaved, interpreter_details

    results = []
    for item in payload["networks"]:
        spec = importlib.util.spec_from_file_location(Path(item["file"]).stem, item["file"])
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        torch.manual_seed(0)
        tv = getattr(torchvision.models, item["spec"])(weights=None).eval()
        ours = module.build_model().eval()
        ours.load_state_dict(dict(zip(ours.state_dict(), tv.state_dict().values())))
        for batch in payload["batches"]:
            x = torch.randn(batch, 3, payload["size"], payload["size"])

            def forward(model, x=x):
                with torch.no_grad():
                    return model(x)

            difference = float((forward(ours) - forward(tv)).abs().max())
            times = interleaved(
                {"archc": lambda ours=ours: forward(ours), "torchvision": lambda tv=tv: forward(tv)},
                item["repeats"],
                warmup=2,
            )
            results.append({"spec": item["spec"], "batch": batch, "times": times, "difference": difference})
    compiled = None
    if payload["compile"]:
        item = payload["networks"][0]
        spec = importlib.util.spec_from_file_location(Path(item["file"]).stem, item["file"])
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        ours = module.build_model().eval()
        x = torch.randn(1, 3, payload["size"], payload["size"])
        try:
            start = time.perf_counter()
            fast = torch.compile(ours)
            with torch.no_grad():
                y = fast(x)
            first = time.perf_counter() - start
            with torch.no_grad():
                difference = float((y - ours(x)).abs().max())
                eager = interleaved({"eager": lambda: ours(x), "compiled": lambda: fast(x)}, 9, warmup=1)
            compiled = {"spec": item["spec"], "first": first, "difference": difference, "times": eager}
        except Exception as err:
            compiled = {"spec": item["spec"], "error": f"{type(err).__name__}: {err}"[:2000]}
    return {"details": interpreter_details(), "results": results, "compiled": compiled}


def run(ctx: Context) -> Section:
    section = Section("5. Generated PyTorch model vs torchvision")
    missing = can_import(ctx.torch_python, "torch", "torchvision", "lark", "networkx", "rich")
    if missing:
        section.skipped = (
            f"`{ctx.torch_python}` cannot import torch, torchvision and archc's dependencies ({missing}); "
            "pass `--torch-python` an interpreter that can"
        )
        section.targets += [
            Target("5a", f"forward time within {TARGET:.0%} of torchvision's", "skipped", None),
            Target("5b", "torch.compile works on the generated module", "skipped", None),
        ]
        return section
    networks = NETWORKS[:1] if ctx.quick else NETWORKS
    size = QUICK_SIZE if ctx.quick else 224
    ctx.say("generated torch models vs torchvision")
    with tempfile.TemporaryDirectory(prefix="archc-bench-") as tmp:
        items = []
        for spec in networks:
            out = Path(tmp) / f"{spec}_torch.py"
            cmd = [
                *archc_command(ctx.python),
                "codegen",
                str(SPECS / f"{spec}.arch"),
                "--target",
                "torch",
                "-o",
                str(out),
            ]
            subprocess.run(cmd, cwd=ROOT, env=worker_env(), check=True, capture_output=True)
            items.append({"spec": spec, "file": str(out), "repeats": ctx.reps(REPEATS[spec])})
        payload = {"networks": items, "batches": [1] if ctx.quick else list(BATCHES), "size": size}
        payload["compile"] = not ctx.quick
        result = run_worker(ctx.torch_python, "torch_models", payload)
    if "error" in result:
        section.skipped = f"the worker failed: {result['error']}"
        return section
    details = result["details"]
    rows, worst = [], 0.0
    for item in result["results"]:
        ours, theirs = median(item["times"]["archc"]), median(item["times"]["torchvision"])
        change = paired(item["times"]["archc"], item["times"]["torchvision"]) - 1
        worst = max(worst, change)
        rows.append([item["spec"], item["batch"], ms(ours), ms(theirs), f"{change:+.1%}", f"{item['difference']:.1e}"])
    section.add(
        f"`{details['executable']}`: torch {details.get('torch')} ({details.get('torch_threads')} threads), "
        f"torchvision {details.get('torchvision')}; input {size}x{size}, medians of interleaved rounds "
        f"({', '.join(f'{k} {ctx.reps(v)}' for k, v in REPEATS.items() if k in networks)})."
    )
    section.add(
        table(
            ["network", "batch", "archc-generated", "torchvision", "generated vs torchvision", "max abs. difference"],
            rows,
        )
    )
    section.targets.append(
        Target(
            "5a",
            f"forward time within {TARGET:.0%} of torchvision's",
            f"worst {worst:+.1%}",
            worst <= TARGET if not ctx.quick else None,
        )
    )
    compiled = result.get("compiled")
    if compiled is None:
        section.targets.append(
            Target("5b", "torch.compile works on the generated module", "not run (quick mode)", None)
        )
    elif "error" in compiled:
        section.add(f"`torch.compile` of the generated {compiled['spec']} failed: `{compiled['error']}`")
        section.targets.append(Target("5b", "torch.compile works on the generated module", "failed", False))
    else:
        eager, fast = median(compiled["times"]["eager"]), median(compiled["times"]["compiled"])
        section.add(
            f"`torch.compile` of the generated {compiled['spec']}: compiled and ran in {ms(compiled['first'])} "
            f"(first call), agrees with the eager module to {compiled['difference']:.1e}; batch 1 forward "
            f"{ms(fast)} compiled against {ms(eager)} eager."
        )
        ok = compiled["difference"] < 1e-3
        section.targets.append(
            Target("5b", "torch.compile works on the generated module", "works" if ok else "wrong output", ok)
        )
    return section


if __name__ == "__main__":
    worker_main(worker)
