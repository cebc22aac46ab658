"""`archc train`: a generated NumPy model trained on scikit-learn's digits, and what it refuses.

The full run (10 epochs, README.md) reaches 97-98% test accuracy; here two short
epochs must take the test accuracy far above chance (10%).
"""

from __future__ import annotations

import pytest
from conftest import SPECS

import archc
from archc.cli import main
from archc.train import digits, train

pytestmark = pytest.mark.usefixtures("one_thread")


def test_a_short_run_learns_the_digits():
    net = archc.load(SPECS / "lenet_digits.arch")
    result = train(net, epochs=2, batch=16, lr=0.003, optimizer="adamw", seed=0)
    assert result.test_accuracy >= 0.8
    assert result.samples == 1797 - 355  # a fifth of each class (178-183 images) is the test set


def test_the_command_prints_the_test_accuracy(capsys):
    assert main(["train", str(SPECS / "lenet_digits.arch"), "--epochs", "1", "--optimizer", "sgd"]) == 0
    out = capsys.readouterr().out
    assert "epoch 1/1" in out and "test accuracy" in out
    accuracy = float(out.split("test accuracy ")[1].split("%")[0])
    assert accuracy >= 50


def test_larger_inputs_get_the_images_enlarged():
    data = digits((1, 16, 16))
    assert data.train_x.shape[1:] == (1, 16, 16)
    assert (data.train_x[:, :, ::2, ::2] == data.train_x[:, :, 1::2, 1::2]).all()


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("network N {\n  input x: 3x8x8\n  flatten\n  dense: 10\n}\n", "the digits are 1x8x8 grey images"),
        ("network N {\n  input x: 1x12x12\n  flatten\n  dense: 10\n}\n", "give it 1x8x8"),
        ("network N {\n  input x: 1x8x8\n  flatten\n  dense: 7\n}\n", "one output of 10 class scores"),
    ],
)
def test_a_spec_that_cannot_learn_the_digits_is_refused(tmp_path, capsys, spec, message):
    path = tmp_path / "n.arch"
    path.write_text(spec)
    assert main(["train", str(path), "--epochs", "1"]) == 1
    assert message in capsys.readouterr().err
