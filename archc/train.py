"""`archc train SPEC`: a generated NumPy model trained on real handwritten digits, in NumPy alone.

The data are scikit-learn's bundled digits (1,797 8x8 images, installed with the
package, nothing downloaded): a fixed, stratified fifth is the test set. The spec's
one input must be 1 x H x W with H and W multiples of 8 (the images are enlarged by
repeating pixels) and its one output must hold 10 class scores. The model is the
NumPy target's code, generated in memory and run as a module; it trains with the
generated training API (model.backward, cross_entropy, SGD or AdamW), as a user's
script would.
"""

from __future__ import annotations

import time
import types
from dataclasses import dataclass

CLASSES = 10


class TrainError(Exception):
    """The spec cannot be trained on the digits, or scikit-learn is missing: a message and a fix."""


@dataclass
class Digits:
    train_x: object
    train_y: object
    test_x: object
    test_y: object


def digits(shape: tuple[int, ...], seed: int = 0) -> Digits:
    """The digits as (N, 1, H, W) float32, standardised by the training set's mean and deviation."""
    try:
        import numpy as np
        from sklearn.datasets import load_digits
    except ImportError as err:
        raise TrainError(f"`archc train` needs {err.name}: pip install 'archc[train]'") from None
    data = load_digits()
    images, labels = data.images.astype(np.float32), data.target
    factor = (shape[1] // 8, shape[2] // 8)
    images = images.repeat(factor[0], axis=1).repeat(factor[1], axis=2)[:, None]
    rng = np.random.default_rng(seed)
    test = np.zeros(len(labels), bool)
    for digit in range(CLASSES):  # a fifth of every class, so both sets have all ten
        members = rng.permutation(np.flatnonzero(labels == digit))
        test[members[: len(members) // 5]] = True
    mean, std = images[~test].mean(), images[~test].std()
    images = (images - mean) / std
    return Digits(images[~test], labels[~test], images[test], labels[test])


def check_network(net) -> None:
    """One input of 1 x 8k x 8k values and one output of 10 scores, or a TrainError saying what to change."""
    inputs = list(net.inputs.items())
    if len(inputs) != 1:
        raise TrainError(f"the digits are one image per sample, but {net.name} has {len(inputs)} inputs")
    name, shape = inputs[0]
    if len(shape) != 3 or shape[0] != 1 or shape[1] % 8 or shape[2] % 8:
        raise TrainError(
            f"the digits are 1x8x8 grey images, but input `{name}` is {'x'.join(map(str, shape))}: "
            f"give it 1x8x8 (or 1x16x16, 1x32x32: the images are enlarged by whole factors)"
        )
    outputs = net.graph.outputs
    if len(outputs) != 1 or tuple(outputs[0].shape) != (CLASSES,):
        got = ", ".join(f"{n.name} {'x'.join(map(str, n.shape))}" for n in outputs)
        raise TrainError(f"training needs one output of {CLASSES} class scores, but {net.name} returns {got}")


def numpy_module(net) -> types.ModuleType:
    """The NumPy target's code for `net`, run as a module of its own."""
    from .codegen import generate

    module = types.ModuleType(f"archc_train_{net.name}")
    exec(compile(generate(net, "numpy").code, f"<{net.name} (NumPy)>", "exec"), module.__dict__)
    return module


def accuracy(model, x, y, batch: int) -> float:
    """The fraction of `x` classified as `y`, in eval mode."""
    model.eval()
    right = sum(
        int((model(x[i : i + batch]).argmax(axis=1) == y[i : i + batch]).sum()) for i in range(0, len(x), batch)
    )
    return right / len(x)


@dataclass
class Result:
    test_accuracy: float
    seconds: float
    epochs: int
    samples: int  # in the training set


def train(net, epochs: int, batch: int, lr: float, optimizer: str, seed: int, console=None) -> Result:
    """Trains a fresh model on the digits with a progress bar per epoch; the test accuracy at the end."""
    import numpy as np
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    check_network(net)
    data = digits(next(iter(net.inputs.values())), seed)
    module = numpy_module(net)
    model = module.build_model(seed)
    if optimizer == "sgd":
        opt = module.SGD(model, lr, momentum=0.9, nesterov=True, weight_decay=1e-4)
    else:
        opt = module.AdamW(model, lr)
    schedule = module.CosineAnnealingLR(opt, epochs)
    rng = np.random.default_rng(seed)
    start = time.perf_counter()
    columns = (
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("loss {task.fields[loss]:.4f}  accuracy {task.fields[accuracy]:6.2%}"),
        TimeElapsedColumn(),
    )
    with Progress(*columns, console=console) as progress:
        for epoch in range(1, epochs + 1):
            task = progress.add_task(f"epoch {epoch}/{epochs}", total=len(data.train_x), loss=0.0, accuracy=0.0)
            order = rng.permutation(len(data.train_x))
            seen = right = 0
            total_loss = 0.0
            model.train()
            for first in range(0, len(order), batch):
                picked = order[first : first + batch]
                x, y = data.train_x[picked], data.train_y[picked]
                opt.zero_grad()
                scores = model(x)
                loss, grad = module.cross_entropy(scores, y)
                model.backward(grad, input_grads=False)
                opt.step()
                seen += len(picked)
                right += int((scores.argmax(axis=1) == y).sum())
                total_loss += loss * len(picked)
                progress.update(task, advance=len(picked), loss=total_loss / seen, accuracy=right / seen)
            schedule.step()
    test = accuracy(model, data.test_x, data.test_y, 256)
    return Result(test, time.perf_counter() - start, epochs, len(data.train_x))
