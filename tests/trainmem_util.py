"""What PyTorch really keeps while training the generated module: the oracle of the training-memory tests.

`saved_by_layer` runs the generated model's forward in training mode under
`torch.autograd.graph.saved_tensors_hooks` and records every tensor autograd
saves. Tensors count by their storage (`untyped_storage().data_ptr()`), once,
at the layer during whose statement autograd first saved them (each held until the
forward ends, so that a storage saved and freed by a layer nothing reads cannot lend
its address to another); parameters and buffers are left out (they are in memory anyway). The layer is found from the
innermost frame of the generated file on the stack: the statement whose line
(`Generated.statements`) is the last to start at or before the running line,
so inline code (`x += skip`, `F.relu(..., inplace=True)`, slices) counts too.
The forward runs on torch's native kernels (`native()`), whose saved tensors archc
models: oneDNN's fused LSTM, the CPU's default, keeps an opaque workspace instead.

Attention runs under torch's math backend (`sdpa_kernel(SDPBackend.MATH)`), whose saved tensors
archc counts (docs/language.md, section 12): the fused kernels keep less, and differ by device.

`optimiser_state` runs one step of torch.optim and measures the gradients and
the optimiser's state the same way.
"""

from __future__ import annotations

import bisect
import sys
import warnings
from collections import Counter
from contextlib import contextmanager

import torch
from codegen_util import build
from torch.nn.attention import SDPBackend, sdpa_kernel

TORCH_DTYPES = {
    "float32": torch.float32,
    "float16": torch.float16,
    "bfloat16": torch.bfloat16,
    "float64": torch.float64,
}


def model_of(net, flat: bool = True):
    """The generated module, in training mode and the network's dtype, and its Generated and file name.

    Per-layer figures need the flat form, whose one forward has a statement per layer; the nested form
    (`flat=False`) computes the same, its statements shared by a block's instances."""
    torch.manual_seed(0)
    model, gen, filename = build(net, "torch", flat=flat)
    return model.to(TORCH_DTYPES[net.dtype]).train(), gen, filename


def inputs_of(net, batch: int):
    return [
        torch.randint(0, node.shape.vocab, (batch, *node.shape))  # token ids
        if node.shape.vocab is not None
        else torch.randn(batch, *node.shape, dtype=TORCH_DTYPES[net.dtype])
        for node in net.graph.inputs
    ]


@contextmanager
def native():
    """torch's native kernels: oneDNN off (its fused LSTM keeps an opaque workspace; a GRU, a
    convolution and everything else save the same either way)."""
    with warnings.catch_warnings():  # setting the flags warns that oneDNN has no TF32 without an Intel GPU
        warnings.filterwarnings("ignore", "TF32 acceleration", UserWarning)
        with torch.backends.mkldnn.flags(enabled=False):
            yield


def _storage(tensor):
    storage = tensor.untyped_storage()
    return storage.data_ptr(), storage.nbytes()


def saved_by_layer(net, batch: int, model=None) -> tuple[Counter, object]:
    """({layer: bytes of the storages autograd first saved during its statement}, the forward's output)."""
    model, gen, filename = model if model is not None else model_of(net)
    state = {_storage(t)[0] for t in [*model.parameters(), *model.buffers()]}
    starts = sorted((line, layer) for layer, _var, line in gen.statements)
    lines = [line for line, _ in starts]
    seen: set[int] = set()
    alive = []  # every saved tensor held to the end: a freed one's address may come back for another
    layers: Counter = Counter()

    def layer_now() -> str:
        frame = sys._getframe(1)
        while frame.f_code.co_filename != filename:
            frame = frame.f_back
        return starts[bisect.bisect_right(lines, frame.f_lineno) - 1][1]

    def pack(tensor):
        pointer, nbytes = _storage(tensor)
        alive.append(tensor)
        if nbytes and pointer not in state and pointer not in seen:
            seen.add(pointer)
            layers[layer_now()] += nbytes
        return tensor

    with native(), sdpa_kernel(SDPBackend.MATH), torch.autograd.graph.saved_tensors_hooks(pack, lambda tensor: tensor):
        out = model(*inputs_of(net, batch))
    return layers, out


def saved_in_total(net, batch: int, model) -> int:
    """Bytes of the unique storages autograd saves during one forward of `model` in training mode."""
    state = {_storage(t)[0] for t in [*model.parameters(), *model.buffers()]}
    seen: dict[int, int] = {}
    alive = []  # as in saved_by_layer: no address comes back for another storage

    def pack(tensor):
        pointer, nbytes = _storage(tensor)
        alive.append(tensor)
        if nbytes and pointer not in state:
            seen[pointer] = nbytes
        return tensor

    with native(), sdpa_kernel(SDPBackend.MATH), torch.autograd.graph.saved_tensors_hooks(pack, lambda tensor: tensor):
        model(*inputs_of(net, batch))
    return sum(seen.values())


OPTIMISERS = {
    "sgd": lambda params: torch.optim.SGD(params, lr=0.01),
    "momentum": lambda params: torch.optim.SGD(params, lr=0.01, momentum=0.9),
    "adam": lambda params: torch.optim.Adam(params, lr=1e-3),
    "adamw": lambda params: torch.optim.AdamW(params, lr=1e-3),
}


def unique_bytes(tensors) -> int:
    storages = dict(_storage(t) for t in tensors if t is not None)
    return sum(storages.values())


def accounted(net, batch: int, optimizer: str) -> dict[str, int]:
    """One training step of the generated module at `batch`, as torch holds it: weights (parameters and
    buffers but BN's step counters), gradients, optimiser state after the step, and what autograd saved."""
    model, gen, filename = model_of(net)
    layers, out = saved_by_layer(net, batch, (model, gen, filename))
    outputs = out if isinstance(out, tuple) else (out,)
    sum(o.float().sum() for o in outputs).backward()
    params = list(model.parameters())
    step = OPTIMISERS[optimizer](params)
    step.step()
    buffers = [b for name, b in model.named_buffers() if not name.endswith("num_batches_tracked")]
    return {
        "weights": unique_bytes([*params, *buffers]),
        "gradients": unique_bytes(p.grad for p in params),
        "optimizer_state": unique_bytes(v for s in step.state.values() for v in s.values() if torch.is_tensor(v)),
        "saved": sum(layers.values()),
    }
