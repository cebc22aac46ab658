"""Smoke test of benchmarks/ (issue 7): the benchmarks are run on demand, not here.

`python benchmarks/run.py --quick` runs every benchmark once at a tiny size,
but that takes about a minute (a dozen interpreters start, torch among
them), too long for the suite. So this checks the parts that can break
without anyone noticing: the modules import, the generated scaling specs
analyse to the sizes asked for, the scaling worker and the import check of
the cold-start benchmark run, sections whose interpreter lacks
torchvision and torchinfo (as in CI) are skipped with a note instead of
failing the report, and the floor of benchmark 1 computes what archc does.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import pytest
from test_specs import FIGURES as PUBLISHED  # figures.md's totals: (params, MACs)

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import archc  # noqa: E402
from benchmarks import analysis, coldstart, common, floor, numpy_backend, run, scaling, torch_models, train_step  # noqa: E402

MISSING = str(ROOT / "no-such-python")


@pytest.mark.parametrize("kind", sorted(scaling.KINDS))
@pytest.mark.parametrize("size", [10, 100, 1000])
def test_scaling_specs_have_the_size_asked(kind, size):
    net = archc.loads(scaling.KINDS[kind](size), f"{kind}.arch")
    assert size - 5 <= len(net.graph) <= size


def test_scaling_worker():
    payload = {"runs": {"chain": [10], "residual": [10]}, "codegen": {"relu_layers": [10]}, "repeats": 1}
    result = scaling.worker(payload)
    assert [item["kind"] for item in result["results"]] == ["chain", "residual"]
    assert all(item["times"] and item["peak"] > 0 for item in result["results"])
    assert [item["target"] for item in result["codegen"]] == list(scaling.CODEGEN_TARGETS)
    assert all(item["times"] and item["layers"] == 10 for item in result["codegen"])


def test_table_imports_no_numpy_torch_or_graphviz():
    modules = coldstart.imports([sys.executable, "-m", "archc", "table", str(coldstart.SPEC)])
    assert modules, "-X importtime printed nothing"
    loaded = {name.split(".")[0] for name, _, _ in modules}
    assert "archc" in loaded
    assert not loaded & set(coldstart.FORBIDDEN)


def test_sections_without_torchvision_are_skipped_with_a_note(tmp_path):
    ctx = common.Context(quick=True, python=sys.executable, torch_python=MISSING)
    sections = [analysis.run(ctx), torch_models.run(ctx)]
    for section in sections:
        assert section.skipped and "--torch-python" in section.skipped
        assert section.targets and all(target.met is None for target in section.targets)
    text = run.report(ctx, sections, time.time(), "-", ["--quick"])
    assert text.count("Skipped:") == 2
    assert "| 1a |" in text and "skipped" in text


def test_numpy_backend_cases_name_bundled_specs():
    for spec, batch in numpy_backend.CASES + numpy_backend.QUICK_CASES:
        assert (common.SPECS / f"{spec}.arch").is_file() and batch in (1, 8)
    assert set(numpy_backend.TARGETED) <= {spec for spec, _ in numpy_backend.CASES}


def test_paired_ratio_is_the_median_of_the_rounds():
    assert common.paired([2.0, 4.0, 30.0], [1.0, 1.0, 1.0]) == 4.0


@pytest.mark.parametrize("spec", sorted(analysis.NETWORKS))
def test_floor_does_the_work_archc_does(spec):
    """The floor's time means something only if it computes what archc.load
    computes: the published totals, and archc's figures for every layer."""
    path = common.SPECS / f"{spec}.arch"
    rows, (activations, peak) = floor.analyse(path.read_text(encoding="utf-8"))
    assert (sum(row[3] for row in rows), sum(row[5] for row in rows)) == PUBLISHED[f"{spec}.arch"]
    net = archc.load(path)
    assert [row[0] for row in rows] == [node.name for node in net.layers]
    for name, _op, shape, params, buffers, macs, rf, _sources, _index in rows:
        node = net.layer(name)
        assert (shape, params, buffers, macs, rf) == (node.shape, node.params, node.buffers, node.macs, node.rf), name
    assert (activations, peak) == (net.totals.activations, net.totals.peak_activation_bytes // 4)


def test_train_step_runs_and_prints_a_table(capsys):
    """benchmarks/train_step.py at tiny sizes, both steps in this process: it prints its
    table, and the NumPy step computes what the torch model archc generates does (the
    same first loss, from the same weights and batch). No timing is asserted."""
    text, results = train_step.run(quick=True, repeats=1, thread_counts=[1], log=lambda message: None, inline=True)
    assert set(results) == {(spec, 1) for spec in train_step.QUICK_CASES}
    for (spec, _), result in results.items():
        losses = result["losses"]
        assert losses["numpy"] == pytest.approx(losses["torch"], rel=1e-3), spec
        assert f"| {spec}" in text
    assert text.count("\n|") == 2 + len(results)  # header, rule, a row per case
