"""A NumPy training step makes few, large matrix products (benchmarks/train_step.py times it).

Each BLAS call with two or more threads wakes its thread pool and waits for every
thread; on a busy two-core machine a thread the scheduler leaves waiting holds up the
call, so ResNet-18's step at batch 8, made of 717 products (1 MiB chunks of columns),
took 3.4x torch's time with two threads. A layer's columns up to 64 MiB are now one
product (_chunks): counted here, not timed.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from codegen_util import load_module

import archc
from archc.codegen import generate
from archc.codegen.runtime import numpy_kernels

SPECS = Path(__file__).parent.parent / "specs"


class Counting:
    """numpy, with its matmul calls counted."""

    def __init__(self):
        self.products = 0

    def matmul(self, *args, **kwargs):
        self.products += 1
        return np.matmul(*args, **kwargs)

    def __getattr__(self, name):
        return getattr(np, name)


def test_resnet18_step_at_batch_8_is_one_product_per_conv_and_direction():
    net = archc.load(SPECS / "resnet18.arch")
    module = load_module(generate(net, "numpy").code)
    model = module.build_model()
    model.train()
    rng = np.random.default_rng(0)
    x = rng.standard_normal((8, 3, 224, 224), dtype=np.float32)
    counting = Counting()
    module.np = counting
    _, grad = module.cross_entropy(model(x), rng.integers(0, 1000, 8))
    model.backward(grad)
    convs = sum(1 for node in net.graph if node.op == "conv")
    assert convs == 20
    # forward, weight gradient and input gradient (the fully connected layer's are written with @)
    assert counting.products == 3 * convs


def test_a_chunk_holds_at_most_64_mib_of_columns():
    """VGG-16's second layer at batch 8 (64 channels, 3x3, 224 x 224) unrolls to 0.9 GiB: bands of rows."""
    width = 64 * 9 * 4
    samples, rows = numpy_kernels._chunks(8, (224, 224), width)
    assert samples == 1
    assert rows * 224 * width <= 2**26 < (rows + 1) * 224 * width
    assert numpy_kernels._chunks(8, (56, 56), width) == (8, 56)  # ResNet-18's 56 x 56 layers: 58 MiB
