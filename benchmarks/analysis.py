"""1. Analysis against torchinfo: archc's symbolic analysis of a spec against
`torchinfo.summary`, which builds nothing but runs a forward pass with hooks on
the torchvision model.

In process (warm): `archc.load(spec)` (read, parse, expand, every pass) and
`torchinfo.summary(model, input_size=(1, 3, 224, 224))` of an already built
torchvision model, interleaved in one process after a warm-up call of each.
Cold: the command `archc table SPEC` against a script that imports torch,
torchvision and torchinfo, builds the model and prints its summary.
"""

from __future__ import annotations

from . import floor
from .common import (
    SPECS,
    Context,
    Section,
    Target,
    archc_command,
    can_import,
    command_times,
    interleaved,
    median,
    ms,
    paired,
    ratio,
    run_worker,
    table,
    worker_main,
)

# spec in specs/ -> torchvision model
NETWORKS = {
    "resnet18": "resnet18",
    "resnet50": "resnet50",
    "vgg16": "vgg16",
    "googlenet": "googlenet",
    "mobilenet_v2": "mobilenet_v2",
}
QUICK_NETWORKS = ("resnet18",)
IN_PROCESS_TARGET = 50.0
COLD_TARGET = 10.0
INPUT = (3, 224, 224)

SCRIPT = """\
import torch, torchvision, torchinfo
model = torchvision.models.{name}(weights=None{extra}).eval()
print(torchinfo.summary(model, input_size=(1, {shape})))
"""


def _extra(name: str) -> str:
    # GoogLeNet: no auxiliary classifiers (the spec has none) and no scipy-based init.
    return ", aux_logits=False, init_weights=False" if name == "googlenet" else ""


def _floor_agrees(text: str, net) -> bool:
    """Whether the floor found archc's layers and totals: its time means something only then."""
    rows, (activations, peak) = floor.analyse(text)
    totals = net.totals
    return (
        [row[0] for row in rows] == [node.name for node in net.layers]
        and sum(row[3] for row in rows) == totals.params
        and sum(row[4] for row in rows) == totals.buffers
        and sum(row[5] for row in rows) == totals.macs
        and (activations, 4 * peak) == (totals.activations, totals.peak_activation_bytes)
    )


def worker(payload: dict) -> dict:
    import torchinfo
    import torchvision

    import archc
    from archc.syntax import parse

    from .common import interpreter_details, timed

    results = []
    for spec, name in payload["networks"]:
        kwargs = {"aux_logits": False, "init_weights": False} if name == "googlenet" else {}
        model = getattr(torchvision.models, name)(weights=None, **kwargs).eval()
        path = SPECS / f"{spec}.arch"
        size = (1, *INPUT)
        times = interleaved(
            {
                "archc": lambda path=path: archc.load(path),
                "floor": lambda path=path: floor.analyse(path.read_text(encoding="utf-8")),
                "torchinfo": lambda model=model, size=size: torchinfo.summary(model, input_size=size, verbose=0),
            },
            payload["repeats"],
            warmup=1,
        )
        text = path.read_text(encoding="utf-8")
        parsing = timed(lambda text=text, path=path: parse(text, str(path)), payload["repeats"])
        net = archc.load(path)
        summary = torchinfo.summary(model, input_size=size, verbose=0)
        results.append(
            {
                "spec": spec,
                "model": name,
                "times": times,
                "parse": parsing,
                "archc_params": net.totals.params,
                "torchinfo_params": summary.total_params,
                "archc_macs": net.totals.macs,
                "torchinfo_macs": summary.total_mult_adds,
                "floor_agrees": _floor_agrees(text, net),
            }
        )
    return {"details": interpreter_details(), "results": results}


def run(ctx: Context) -> Section:
    section = Section("1. Analysis vs torchinfo")
    missing = can_import(ctx.torch_python, "torch", "torchvision", "torchinfo", "lark", "networkx", "rich")
    if missing:
        section.skipped = (
            f"`{ctx.torch_python}` cannot import torch, torchvision, torchinfo and archc's dependencies "
            f"({missing}); pass `--torch-python` an interpreter that can"
        )
        section.targets += [
            Target("1a", f"in process >= {IN_PROCESS_TARGET:.0f}x faster than torchinfo", "skipped", None),
            Target("1b", f"cold command >= {COLD_TARGET:.0f}x faster", "skipped", None),
        ]
        return section
    networks = QUICK_NETWORKS if ctx.quick else tuple(NETWORKS)
    pairs = [(spec, NETWORKS[spec]) for spec in networks]

    ctx.say("analysis: in process")
    result = run_worker(ctx.torch_python, "analysis", {"networks": pairs, "repeats": ctx.reps(15)})
    if "error" in result:
        section.skipped = f"the worker failed: {result['error']}"
        return section
    rows, worst = [], float("inf")
    for item in result["results"]:
        ours, theirs = median(item["times"]["archc"]), median(item["times"]["torchinfo"])
        faster = paired(item["times"]["torchinfo"], item["times"]["archc"])
        worst = min(worst, faster)
        same = "yes" if item["archc_params"] == item["torchinfo_params"] else "NO"
        rows.append(
            [
                item["spec"],
                ms(ours),
                ms(median(item["parse"])),
                ms(ours - median(item["parse"])),
                ms(theirs),
                ratio(faster),
                ms(median(item["times"]["floor"])),
                ratio(paired(item["times"]["torchinfo"], item["times"]["floor"])),
                "yes" if item["floor_agrees"] else "NO",
                f"{item['archc_params']:,}",
                same,
                f"{item['archc_macs'] / 1e9:.3f} / {item['torchinfo_macs'] / 1e9:.3f}",
            ]
        )
    details = result["details"]
    section.add(
        f"In process, warm: `archc.load(spec)` against `torchinfo.summary(model, input_size=(1, 3, 224, 224))` "
        f"of the torchvision model (built beforehand), interleaved in one `{details['executable']}` process "
        f"(torch {details.get('torch')}, torchvision {details.get('torchvision')}, "
        f"torchinfo {details.get('torchinfo')}); medians of {len(result['results'][0]['times']['archc'])} runs. "
        "Parsing is `archc.syntax.parse` alone, timed separately; the rest is expansion of blocks and repeats "
        "and the analysis passes. The floor, timed in the same rounds, is `benchmarks/floor.py`: the least work "
        "an analyser in Python does: archc's figures by archc's arithmetic (it agrees when it gives the same "
        "layers, total parameters, buffers, MACs and activation memory) without any of archc's guarantees: no "
        "source positions, no checks of arguments, names or shapes, no errors, no graph, and only the subset of "
        "the language these specs use."
    )
    section.add(
        table(
            [
                "network",
                "archc",
                "of which parsing",
                "the rest",
                "torchinfo",
                "archc faster by",
                "floor",
                "floor faster by",
                "floor agrees",
                "params",
                "same params",
                "GMACs archc / torchinfo",
            ],
            rows,
        )
    )
    section.targets.append(
        Target(
            "1a",
            f"in process >= {IN_PROCESS_TARGET:.0f}x faster than torchinfo (every network)",
            f"lowest {ratio(worst)}",
            worst >= IN_PROCESS_TARGET if not ctx.quick else None,
        )
    )

    ctx.say("analysis: cold commands")
    archc = archc_command(ctx.python)
    rows, worst = [], float("inf")
    shape = ", ".join(str(v) for v in INPUT)
    for spec in networks:
        name = NETWORKS[spec]
        script = SCRIPT.format(name=name, extra=_extra(name), shape=shape)
        times = command_times(
            {
                "archc": [*archc, "table", str(SPECS / f"{spec}.arch")],
                "torchinfo": [ctx.torch_python, "-c", script],
            },
            ctx.reps(5),
        )
        ours, theirs = median(times["archc"]), median(times["torchinfo"])
        faster = paired(times["torchinfo"], times["archc"])
        worst = min(worst, faster)
        rows.append([spec, ms(ours), ms(theirs), ratio(faster)])
    section.add(
        f"Cold, as commands: `{' '.join(archc[-3:] if len(archc) > 1 else ['archc'])} table specs/SPEC.arch` "
        "against `python -c` of a script that imports torch, torchvision and torchinfo, builds the model and "
        f"prints `torchinfo.summary` (run by `{ctx.torch_python}`); wall time per command, medians of "
        f"{ctx.reps(5)} interleaved runs."
    )
    section.add(table(["network", "archc table", "torchinfo script", "archc faster by"], rows))
    section.targets.append(
        Target(
            "1b",
            f"cold command >= {COLD_TARGET:.0f}x faster than the torchinfo script",
            f"lowest {ratio(worst)}",
            worst >= COLD_TARGET if not ctx.quick else None,
        )
    )
    return section


if __name__ == "__main__":
    worker_main(worker)
