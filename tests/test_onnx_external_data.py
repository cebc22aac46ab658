"""ONNX out above protobuf's 2 GiB: the weights go to FILE.onnx.data beside the model, in onnx's external
data format. The limit is lowered here, so that LeNet-5's 247 KB of weights are "large": the layout is
the same at any size, and a 2 GiB model would take minutes and gigabytes to build in a test."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import onnxruntime
import pytest
from codegen_util import load_module

import archc
from archc.cli import main
from archc.codegen import generate, onnx_target

SPECS = Path(__file__).resolve().parent.parent / "specs"


@pytest.fixture
def small_limit(monkeypatch):
    monkeypatch.setattr(onnx_target, "PROTOBUF_LIMIT", 100_000)


def test_weights_beyond_the_limit_are_written_beside_the_model(small_limit, tmp_path, capsys):
    out = tmp_path / "lenet.onnx"
    assert main(["codegen", str(SPECS / "lenet5.arch"), "--target", "onnx", "-o", str(out)]) == 0
    assert "its weights in lenet.onnx.data" in capsys.readouterr().err
    data = tmp_path / "lenet.onnx.data"
    assert data.stat().st_size == 61_706 * 4  # figures.md: LeNet-5's 61,706 parameters, float32
    assert out.stat().st_size < 100_000
    onnx.checker.check_model(str(out), full_check=True)  # reads the data file, as a path must
    model = onnx.load(str(out), load_external_data=False)
    assert all(t.data_location == onnx.TensorProto.EXTERNAL for t in model.graph.initializer)
    assert {e.value for t in model.graph.initializer for e in t.external_data if e.key == "location"} == {
        "lenet.onnx.data"
    }
    # onnxruntime computes what the NumPy model with the same (seed 0) weights computes
    x = np.random.default_rng(0).standard_normal((2, 1, 32, 32)).astype(np.float32)
    (got,) = onnxruntime.InferenceSession(str(out)).run(None, {"image": x})
    want = load_module(generate(archc.load(SPECS / "lenet5.arch"), "numpy").code).build_model(seed=0)(x)
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)
    # and archc reads it back to the same figures
    back = archc.load(out)
    assert (back.totals.params, back.totals.macs) == (61_706, 416_520)


def test_the_python_api_refuses_a_model_beyond_the_limit_and_says_how_to_write_it(small_limit):
    with pytest.raises(ValueError, match=r"FILE\.onnx\.data"):
        onnx_target.to_onnx(archc.load(SPECS / "lenet5.arch"))


def test_a_model_under_the_limit_is_one_file(tmp_path):
    out = tmp_path / "lenet.onnx"
    assert main(["codegen", str(SPECS / "lenet5.arch"), "--target", "onnx", "-o", str(out)]) == 0
    assert not (tmp_path / "lenet.onnx.data").exists()
    assert all(t.data_location == onnx.TensorProto.DEFAULT for t in onnx.load(str(out)).graph.initializer)
