"""`archc fit` and `archc table --train`: the largest batch that fits, checked by running it in torch.

At the batch `fit` reports, what torch holds for one training step of the generated module
(weights, gradients, optimiser state and what autograd saved, measured on the CPU) is within
the memory; at one more sample it is not.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from trainmem_util import accounted

import archc
from archc.cli import main

SPECS = Path(__file__).resolve().parent.parent / "specs"
GiB = 2**30
MiB = 2**20


@pytest.mark.parametrize(
    ("name", "shape", "memory", "optimizer"),
    [("lenet5", None, "4MiB", "sgd"), ("resnet18", (3, 32, 32), "200MB", "adam")],
)
def test_the_batch_fit_reports_fits_in_torch_and_one_more_does_not(name, shape, memory, optimizer):
    inputs = {"image": shape} if shape else None
    net = archc.load(SPECS / f"{name}.arch", inputs=inputs)
    answer = net.fit(memory, optimizer=optimizer, device="cpu")
    limit = archc.arguments.memory("memory", memory)
    batch = answer.training_batch
    assert batch > 1
    assert sum(accounted(net, batch, optimizer).values()) <= limit < sum(accounted(net, batch + 1, optimizer).values())


def test_inference_batch_is_the_largest_whose_weights_and_peak_fit():
    net = archc.load(SPECS / "resnet50.arch")
    answer = net.fit("24GiB")
    t = archc.load(SPECS / "resnet50.arch", batch=answer.inference_batch).totals
    after = archc.load(SPECS / "resnet50.arch", batch=answer.inference_batch + 1).totals
    weights = t.param_bytes + t.buffer_bytes
    assert weights + t.peak_activation_bytes <= 24 * GiB < weights + after.peak_activation_bytes


def test_what_dominates():
    resnet = archc.load(SPECS / "resnet50.arch")
    assert resnet.fit("24GiB").dominant == "activations"  # a batch in the hundreds
    assert resnet.fit("400MiB", optimizer="adam").dominant == "weights"  # 4 copies of 98 MiB of weights


def test_fit_command(capsys):
    assert main(["fit", str(SPECS / "resnet50.arch"), "--memory", "24GiB", "--dtype", "bfloat16"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].startswith("ResNet50 (") and "24.0 GiB (25,769,803,776 bytes): bfloat16, adam, cuda" in lines[0]
    assert lines[1].startswith("Training:  batch ") and "saved for backward" in lines[1]
    assert "the backward's peak (gradients in flight) is 24.3 GiB at that batch; batch " in lines[2]
    assert lines[3].startswith("Inference: batch ")
    assert "saved for backward dominate" in lines[4]


def test_peak_batch_is_the_largest_whose_backward_peak_fits():
    from archc.passes.training import plan_training

    net = archc.load(SPECS / "lenet5.arch")
    answer = net.fit("1GiB")
    plan = plan_training(net)
    assert 0 < answer.peak_batch < answer.training_batch
    assert plan.peak(answer.peak_batch)[0] <= 2**30 < plan.peak(answer.peak_batch + 1)[0]


def test_fit_json_and_nothing_fits(capsys):
    assert main(["fit", str(SPECS / "resnet50.arch"), "--memory", "100MiB", "--format", "json"]) == 0
    answer = json.loads(capsys.readouterr().out)
    assert answer["training_batch"] == 0 and answer["inference_batch"] == 0
    assert answer["training"]["total"] > 100 * MiB  # what batch 1 needs
    assert main(["fit", str(SPECS / "resnet50.arch"), "--memory", "100MiB"]) == 0
    out = capsys.readouterr().out
    assert "Training:  nothing fits: batch 1 needs" in out and "Inference: nothing fits" in out


@pytest.mark.parametrize(
    ("size", "says"),
    [
        ("24G", "G could be powers of 1024 or of 1000, write 24GiB or 24GB"),
        ("24", "give a unit, e.g. 24GiB"),
        ("lots", "a size such as 24GiB"),
        ("0GiB", "at least 1 byte"),
        ("-1GiB", "a size such as 24GiB"),
    ],
)
def test_bad_memory_sizes_are_usage_errors(size, says, capsys):
    with pytest.raises(SystemExit) as stop:
        main(["fit", str(SPECS / "lenet5.arch"), f"--memory={size}"])
    assert stop.value.code == 2
    err = capsys.readouterr().err
    assert says in err and "Traceback" not in err


@pytest.mark.parametrize(
    ("options", "says"),
    [
        (["--dtype", "int8"], "an int8 network does not train"),
        (["--master-weights"], "--master-weights keeps float32 masters of a 16-bit model"),
    ],
)
def test_dtypes_that_cannot_train_so_are_usage_errors(options, says, capsys):
    for command in (["fit", "--memory", "1GiB"], ["table", "--train"]):
        with pytest.raises(SystemExit) as stop:
            main([command[0], str(SPECS / "lenet5.arch"), *command[1:], *options])
        assert stop.value.code == 2
        assert says in capsys.readouterr().err


def test_a_spec_with_errors_is_reported_as_ever(tmp_path, capsys):
    bad = tmp_path / "bad.arch"
    bad.write_text("network N {\n  input x: 3x8x8\n  conv c: 4 @ 9x9\n}\n")
    assert main(["fit", str(bad), "--memory", "1GiB"]) == 1
    assert "bad.arch:3:" in capsys.readouterr().err


def test_api_arguments_are_checked():
    net = archc.load(SPECS / "lenet5.arch")
    with pytest.raises(ValueError, match="24GiB or 24GB"):
        net.fit("24G")
    with pytest.raises(ValueError, match="optimizer must be one of"):
        net.training_memory("rmsprop")
    with pytest.raises(TypeError, match="memory must be a whole number"):
        net.fit(2.5)
    with pytest.raises(ValueError, match="master weights are for a 16-bit dtype"):
        net.training_memory(master=True)
    assert net.fit(10**9).memory == net.fit("1GB").memory == 10**9


def test_table_train_adds_the_saved_column_and_the_totals(capsys):
    assert main(["table", str(SPECS / "lenet5.arch"), "--train", "--batch", "8", "--optimizer", "sgd"]) == 0
    out = capsys.readouterr().out
    assert "saved for backward" in out.splitlines()[2]
    training = "Training (sgd, batch 8, float32, cuda): weights 241.0 KiB + gradients 241.0 KiB + optimiser state 0 B"
    assert training in out
    assert "peak during backward" in out
    assert main(["table", str(SPECS / "lenet5.arch"), "--train", "--format", "json"]) == 0
    document = json.loads(capsys.readouterr().out)
    layers = {layer["name"]: layer["saved_bytes"] for layer in document["layers"]}
    assert sum(layers.values()) == document["training"]["saved"]
    assert document["training"]["optimizer"] == "adam" and "layers" not in document["training"]
    assert main(["table", str(SPECS / "lenet5.arch"), "--format", "csv", "--train"]) == 0
    assert capsys.readouterr().out.splitlines()[0].endswith(",saved")
