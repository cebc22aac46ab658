"""The worked examples of figures.md, computed by generated NumPy models.

The numbers are restated from ../shared/reference/figures.md (zero padding and
convolution, batch normalisation with a softmax after it, transposed
convolution); each is a spec run through `archc codegen --target numpy`.
"""

from __future__ import annotations

import numpy as np
from codegen_util import analysed, build


def numpy_model(text: str):
    model, _, _ = build(analysed(text), "numpy")
    return model


def test_zero_padding_then_convolution():
    model = numpy_model("network Z {\n input x: 1x3x3\n conv y: 1 @ 2x2 pad=1 bias=false\n}\n")
    model.state["y.weight"][...] = np.array([[0, 1], [2, 3]], dtype=np.float32)
    x = np.arange(9, dtype=np.float32).reshape(1, 1, 3, 3)
    expected = [[0, 3, 8, 4], [9, 19, 25, 10], [21, 37, 43, 16], [6, 7, 8, 0]]
    assert np.array_equal(model(x)[0, 0], np.array(expected, dtype=np.float32))


BN_SPEC = "network B {\n input z: 4\n bn n: eps=1e-5\n}\n"
Z = np.array([[-2.85, 0.86, 0.28, -5.58], [-2.03, 1.40, -1.00, -4.22]], dtype=np.float32)
BN_OUT = [[-0.099947, -0.099943, 0.100049, -0.099949], [0.100047, 0.100043, -0.099949, 0.100049]]
SOFTMAX_OUT = [[0.236888, 0.236889, 0.289335, 0.236888], [0.261867, 0.261866, 0.214399, 0.261868]]


def bn_model(text: str):
    model = numpy_model(text)
    model.state["n.weight"][...] = 0.1
    model.state["n.bias"][...] = 0.00005
    return model.train()


def test_batch_normalisation_worked_example():
    model = bn_model(BN_SPEC)
    np.testing.assert_allclose(model(Z), BN_OUT, atol=1e-6)
    # the running averages moved 0.1 of the way to the batch mean and the unbiased variance
    mean = np.array([-2.44, 1.13, -0.36, -4.90])
    biased = np.array([0.1681, 0.0729, 0.4096, 0.4624])
    np.testing.assert_allclose(model.state["n.running_mean"], 0.1 * mean, atol=1e-6)
    unbiased = biased * 2 / (2 - 1)  # a batch of 2
    np.testing.assert_allclose(model.state["n.running_var"], 0.9 + 0.1 * unbiased, atol=1e-6)
    assert int(model.state["n.num_batches_tracked"]) == 1


def test_softmax_of_the_batch_normalised_rows():
    model = bn_model(BN_SPEC.replace("eps=1e-5", "eps=1e-5 -> softmax"))
    out = model(Z)
    np.testing.assert_allclose(out, SOFTMAX_OUT, atol=1.5e-6)
    np.testing.assert_allclose(out.sum(axis=1), 1, atol=1e-6)


def test_transposed_convolution_is_zero_insertion_padding_and_convolution():
    """A 3x3 map, zeros between pixels and one pixel of padding, a 3x3 filter at stride 1: 5x5."""
    model = numpy_model("network T {\n input x: 1x3x3\n deconv y: 1 @ 3x3 /2 pad=1 bias=false\n}\n")
    kernel = np.array([[1, 2, 3], [4, 5, 6], [7, 8, 9]], dtype=np.float32)
    model.state["y.weight"][0, 0] = kernel
    x = np.array([[1, 2, 3], [4, 5, 6], [7, 8, 9]], dtype=np.float32)
    spread = np.zeros((5, 5), np.float32)
    spread[::2, ::2] = x  # zeros inserted between pixels
    padded = np.pad(spread, 1)
    flipped = kernel[::-1, ::-1]  # a transposed convolution correlates with the flipped kernel
    expected = np.array([[(padded[i : i + 3, j : j + 3] * flipped).sum() for j in range(5)] for i in range(5)])
    out = model(x.reshape(1, 1, 3, 3))
    assert out.shape == (1, 1, 5, 5)
    assert np.array_equal(out[0, 0], expected)
