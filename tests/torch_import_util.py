"""What torch itself says about a module, for the PyTorch importer's tests (issue 20, item 2).

The outside truth is torch: params as `Module.parameters()` counts them, buffers
as `named_buffers()` without BN's step counter, MACs as
`torch.utils.flop_counter` counts them with torch's native kernels, the math
attention backend and grad mode on (flops / 2, per sample), each
submodule's output shape from a forward hook, and the module's own output.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from codegen_util import build
from torch.nn.attention import SDPBackend, sdpa_kernel
from torch.utils.flop_counter import FlopCounterMode


@dataclass
class Truth:
    params: int
    buffers: int
    macs: int
    shapes: dict  # qualified module name -> its output shape without the batch (its first call)
    output: torch.Tensor


def measure(model: torch.nn.Module, x: torch.Tensor) -> Truth:
    """The module's figures on `x` (a batch), in eval mode."""
    model.eval()
    shapes: dict = {}
    hooks = []
    for name, module in model.named_modules():
        if name and not list(module.children()):

            def record(_module, _inputs, out, name=name):
                if isinstance(out, torch.Tensor):
                    shapes.setdefault(name, tuple(out.shape[1:]))

            hooks.append(module.register_forward_hook(record))
    counter = FlopCounterMode(display=False)
    # torch's native kernels: oneDNN's fused LSTM hides its work from the counter, and so do
    # nn.MultiheadAttention's fast path (eval mode without grad) and fused attention kernels
    try:
        with torch.backends.mkldnn.flags(enabled=False), sdpa_kernel(SDPBackend.MATH), torch.enable_grad(), counter:
            output = model(x).detach()
    finally:
        for hook in hooks:
            hook.remove()
    flops = counter.get_total_flops()
    assert flops % (2 * len(x)) == 0, flops
    params = sum(p.numel() for p in model.parameters())
    buffers = sum(b.numel() for name, b in model.named_buffers() if not name.endswith("num_batches_tracked"))
    return Truth(params, buffers, flops // (2 * len(x)), shapes, output)


def generated_output(net, model: torch.nn.Module, x: torch.Tensor) -> torch.Tensor:
    """The output of archc's generated PyTorch module with `model`'s state_dict loaded strictly by key."""
    generated, _, _ = build(net, "torch")
    generated.load_state_dict(model.state_dict(), strict=True)
    with torch.no_grad():
        return generated.eval()(x)


def assert_agrees(net, model: torch.nn.Module, x: torch.Tensor, tolerance: float = 1e-5) -> Truth:
    """The imported network has torch's figures, per-layer shapes and output."""
    truth = measure(model, x)
    assert (net.totals.params, net.totals.buffers, net.totals.macs) == (truth.params, truth.buffers, truth.macs)
    layers = {layer.name: layer for layer in net.layers}
    compared = 0
    for name, shape in truth.shapes.items():
        if name in layers:  # a folded activation (`bn1 -> relu`) is part of the layer before it
            assert tuple(layers[name].shape) == shape, name
            compared += 1
    # every weight is a layer's, by its name (`layer1.0.conv1`, or inside one: attention's `out_proj`), or a
    # `param` layer itself (ViT's `encoder.pos_embedding`)
    parts = [key.split(".") for key, _p in model.named_parameters()]
    missing = [".".join(p) for p in parts if not any(".".join(p[:i]) in layers for i in range(1, len(p) + 1))]
    assert not missing, missing
    got = generated_output(net, model, x)
    want = truth.output
    assert got.shape == want.shape
    scale = max(float(want.abs().max()), 1e-6)
    assert float((got - want).abs().max()) / scale <= tolerance
    return truth
