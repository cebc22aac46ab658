"""Training memory against PyTorch: what autograd saves, per layer and in total, and the optimiser's state.

The oracle (tests/trainmem_util.py) records every tensor autograd saves while the generated
module runs forward in training mode, by storage, at the layer whose statement saved it
first; archc's `Network.training_memory()` must give the same bytes for every layer, at two batch
sizes. Gradients and optimiser state must equal what torch.optim holds after one step.
The figures are for the CPU (`device="cpu"`), where the oracle runs: the only difference
from the GPU is dropout's mask (a bool a value there), which the CPU cannot show.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from trainmem_util import accounted, model_of, saved_by_layer, saved_in_total

import archc
from archc.codegen.torch_target import in_place
from archc.ops import OPS

SPECS = Path(__file__).resolve().parent.parent / "specs"
BATCHES = (2, 3)  # batch norm does not train on one value a channel

# One small network per layer type (and per way it saves: in place or not, padded per side, a view of a
# larger tensor...), on a 4x6x6 input `x`; `conv c` first, so that what follows needs a gradient.
LAYERS = {
    "conv": "conv c: 4 @ 3x3 pad=1 -> relu\n conv d: 4 @ 3x3 pad=(0,1)x(1,0)",
    "conv1d": "reshape r: 4x36\n conv c: 4 @ 3 /2 -> elu\n conv d: 2 @ 1",
    "conv3d": "reshape r: 4x2x3x6\n conv c: 4 @ 1x3x3 pad=same -> relu6",
    "dwconv": "conv c: 4 @ 1x1\n dwconv d: 3x3 multiplier=2 pad=same -> relu6\n dwconv e: 3x3",
    "deconv": "conv c: 4 @ 1x1\n deconv d: 3 @ 3x3 /2 pad=(0,1)x(0,1)\n conv e: 2 @ 1x1",
    "deconv_sym": "conv c: 4 @ 1x1\n deconv d: 3 @ 4x4 /2 pad=1 outpad=1 -> leaky_relu",
    "dense": "flatten\n dense d: 8 -> relu\n dense e: 4 bias=false -> softmax",
    "bn": "conv c: 4 @ 1x1\n bn b\n relu r\n conv d: 4 @ 1x1 -> relu\n bn e",
    "bn1d": "flatten\n dense d: 8\n bn b -> gelu",
    "layernorm": "conv c: 4 @ 1x1\n layernorm n\n layernorm m: 2\n flatten\n layernorm v: 1",
    "groupnorm": "conv c: 4 @ 1x1\n groupnorm n: 2\n groupnorm m: 4 affine=false",
    "instancenorm": "conv c: 4 @ 1x1\n instancenorm n\n instancenorm m: affine=true track=true",
    "lrn": "conv c: 4 @ 1x1\n lrn n: 3\n lrn m: 2",
    "maxpool": "conv c: 4 @ 1x1\n maxpool n: 2\n maxpool m: 2 pad=(0,1)x(0,1)",
    "maxpool_ceil": "conv c: 4 @ 1x1\n maxpool n: 3 /2 pad=(0,1)x(0,1) ceil\n conv d: 2 @ 1x1",
    "avgpool": "conv c: 4 @ 1x1\n avgpool n: 2\n avgpool m: 2 pad=(0,1)x(0,1) count_pad=false",
    "avgpool_ceil": "conv c: 4 @ 1x1\n avgpool n: 3 /2 pad=(0,1)x(0,1) ceil count_pad=false\n conv d: 2 @ 1x1",
    "minpool": "conv c: 4 @ 1x1\n minpool n: 2\n minpool m: 2 pad=(1,0)x(1,0)",
    "l2pool": "conv c: 4 @ 1x1\n l2pool n: 2\n l2pool m: 3 /2 pad=1 ceil",
    "adaptive": "conv c: 4 @ 1x1\n adaptiveavgpool n: 3\n adaptivemaxpool m: 2\n adaptiveavgpool o: 1",
    "global": "conv c: 4 @ 1x1\n globalavgpool n\n globalmaxpool m (c)\n concat (n, m)",
    "pool_on_input": "maxpool n: 2\n avgpool m: 1\n conv c: 2 @ 1x1",
    "activations": (
        "conv c: 4 @ 1x1\n relu a\n conv d: 4 @ 1x1\n leaky_relu b\n conv e: 4 @ 1x1\n elu f: 0.5\n"
        " silu g\n mish h\n hardswish i\n hardsigmoid j\n tanh k\n sigmoid l\n softmax m\n gelu n: tanh\n"
        " identity o\n relu6 p\n relu q"
    ),
    "fused": (
        "conv c: 4 @ 1x1 -> silu\n conv d: 4 @ 1x1 -> tanh\n conv e: 4 @ 1x1 -> identity\n"
        " conv f: 4 @ 1x1 -> hardsigmoid\n chunk k: 2 1 -> relu\n conv g: 4 @ 1x1 -> mish"
    ),
    "merge": "conv c: 4 @ 1x1\n conv d: 4 @ 1x1\n add a (c, d) -> relu\n concat (a, c)\n conv e: 4 @ 1x1",
    "elementwise": (
        "conv c: 4 @ 1x1\n globalavgpool g\n sigmoid s\n mul m (c, s)\n sub u (m, c)\n div v (u, c)\n"
        " mul w (x, v)\n div y (x, w)\n mul z (x, x)"
    ),
    "shortcut": "conv c: 4 @ 1x1 /2\n conv d: 2 @ 1x1\n shortcut m (c, d) -> relu\n conv e: 2 @ 1x1",
    "views": (
        "conv c: 4 @ 1x1\n chunk k: 2 1\n conv d: 4 @ 1x1\n crop p: 4x4\n conv e: 4 @ 1x1\n permute q: 1x2x0\n"
        " reshape r: 64\n dense f: 3"
    ),
    "rearrange": "conv c: 4 @ 1x1\n space_to_depth s: 2\n shuffle h: 4\n upsample u: 2\n zeropad z: 1\n conv d: 2 @ 1",
    "dropout": "conv c: 4 @ 1x1\n dropout d: 0.3\n conv e: 4 @ 1x1\n dropout f: 0\n conv g: 2 @ 1x1\n dropout h",
    "drop_path": "conv c: 4 @ 1x1\n drop_path d: 0.2\n drop_path e: 0.1 batch\n drop_path f: 0",
    "layer_scale": "conv c: 4 @ 1x1\n layer_scale s\n relu r\n conv d: 2 @ 1x1",
    "recurrent": (
        "conv c: 4 @ 1x1\n reshape r: 4x36\n permute p: 1x0\n lstm l: 3 layers=2 bidirectional dropout=0.2\n"
        " gru g: 3\n lstm m (p): 4 proj=2 last\n gru n (l): 2 layers=2 bidirectional last"
    ),
    "sequence": (
        "conv c: 4 @ 1x1\n to_sequence t\n param p: 36x4 std=0.02\n add a (t, p)\n param k: 1x4\n"
        " concat j (k, a): axis=sequence\n dense d: 4 -> gelu\n select s (d): 0\n mean m (d)\n"
        " input ids: 5 tokens vocab=7\n embedding e: 4 padding_idx=0\n position_embedding q (ids): 4 6\n"
        " add r (e, q)\n mean n (r)\n concat (s, m, n)"
    ),
    "attention": "reshape r: 4x36\n permute p: 1x0\n dense d: 4\n attention a: 2 causal\n dense e: 12\n sdpa s: 2",
}


def spec(body: str, channels: int = 4, size: int = 6) -> str:
    return f"network N {{\n input x: {channels}x{size}x{size}\n {body}\n}}"


def compare(net, batch: int) -> None:
    got = {k: v for k, v in net.training_memory(batch=batch, device="cpu").layers.items() if v}
    layers, _ = saved_by_layer(net, batch)
    assert got == dict(layers)


def test_every_layer_type_has_a_case():
    used = {node.op for body in LAYERS.values() for node in archc.loads(spec(body)).graph}
    assert used == set(OPS)


@pytest.mark.parametrize("name", LAYERS)
@pytest.mark.parametrize("batch", BATCHES)
def test_saved_tensors_of_each_layer_type_equal_torch(name, batch):
    compare(archc.loads(spec(LAYERS[name])), batch)


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    op=st.sampled_from(["conv", "maxpool", "avgpool", "minpool", "l2pool", "deconv"]),
    kernel=st.integers(1, 3),
    stride=st.integers(1, 2),
    pad=st.sampled_from(["0", "1", "same", "(0,1)x(1,0)", "(1,0)x(1,1)"]),
    ceil=st.booleans(),
    act=st.sampled_from(["", " -> relu", " -> relu6", " -> elu", " -> sigmoid", " -> gelu"]),
)
def test_saved_tensors_of_windowed_layers_equal_torch(op, kernel, stride, pad, ceil, act):
    """Random geometry: padding per side (a padded copy), ceil mode (a larger torch output, cropped)."""
    if op == "deconv":
        pad = pad if pad != "same" else "1"
        layer = f"deconv d: 3 @ {kernel + 1}x{kernel + 1} /{stride} pad={pad}{act}"
    elif op == "conv":
        layer = f"conv d: 3 @ {kernel}x{kernel} /{stride} pad={pad}{act}"
    else:
        layer = f"{op} d: {kernel + 1} /{stride} pad={pad}{' ceil' if ceil else ''}{act}"
    try:
        net = archc.loads(spec(f"conv c: 4 @ 1x1\n {layer}\n conv e: 2 @ 1x1", size=7))
    except archc.ArchError:
        return  # a padding the pool refuses (more than half its window)
    for batch in BATCHES:
        compare(net, batch)


MODELS = {
    "lenet5": None,
    "resnet18": (3, 64, 64),
    "resnet50": (3, 64, 64),
    "mobilenet_v2": (3, 64, 64),
    "googlenet": (3, 64, 64),
    "vgg16": (3, 64, 64),
    "efficientnet_b0": (3, 64, 64),
    "mobilenet_v3_small": (3, 64, 64),
    "regnet_y_400mf": (3, 64, 64),
    "shufflenet_v2_x1_0": (3, 64, 64),
    "convnext_tiny": (3, 64, 64),
}


def load_model(name: str, shape=None, **options):
    """A bundled spec, at a smaller input size where MODELS (or `shape`) gives one."""
    shape = shape or MODELS[name]
    inputs = None
    if shape is not None:
        inputs = {next(iter(archc.load(SPECS / f"{name}.arch").inputs)): shape}
    return archc.load(SPECS / f"{name}.arch", inputs=inputs, **options)


@pytest.mark.parametrize("name", MODELS)
def test_saved_tensors_of_models_equal_torch(name):
    net = load_model(name)
    for batch in BATCHES:
        compare(net, batch)


@pytest.mark.parametrize("name", ["resnet18", "resnet50", "mobilenet_v2", "efficientnet_b0", "googlenet"])
def test_the_nested_module_saves_what_the_flat_one_does(name):
    """The generated module as the spec nests it (the default) keeps, in total, what archc counts."""
    net = load_model(name)
    model, _, _ = model_of(net, flat=False)
    for batch in BATCHES:
        assert saved_in_total(net, batch, model) == net.training_memory(batch=batch, device="cpu").saved


@pytest.mark.parametrize("name", ["resnet18", "mobilenet_v2"])
def test_in_place_layers_are_those_of_the_generated_code(name):
    """`in_place` says which activations the generated (flat) forward computes in place: as many as `inplace=True`."""
    from archc.codegen import generate

    net = load_model(name)
    assert len(in_place(net)) == generate(net, "torch", flat=True).code.count("inplace=True") > 0


# every layer type with parameters or buffers (Adam keeps a `step` per parameter tensor: bias=false has one fewer)
WITH_PARAMETERS = (
    "conv c: 4 @ 3x3 -> relu\n bn b\n conv d: 4 @ 1x1 bias=false\n layernorm l\n groupnorm g: 2 bias=false\n"
    " instancenorm i: affine=true track=true\n layer_scale s\n deconv e: 2 @ 2x2 /2\n dwconv w: 3x3 bias=false\n"
    " flatten\n dense f: 5\n dense o: 3 bias=false"
)


@pytest.mark.parametrize("optimizer", ["sgd", "momentum", "adam", "adamw"])
@pytest.mark.parametrize("dtype", ["float32", "bfloat16"])
def test_gradients_and_optimiser_state_equal_torch_optim(optimizer, dtype):
    net = archc.loads(spec(WITH_PARAMETERS), dtype=dtype)
    check_step(net, optimizer)


def test_gradients_and_optimiser_state_of_resnet18_equal_torch_optim():
    check_step(load_model("resnet18", (3, 32, 32)), "adam")


def check_step(net, optimizer: str) -> None:
    got = net.training_memory(optimizer, batch=2, device="cpu")
    measured = accounted(net, 2, optimizer)
    assert (got.weights, got.gradients, got.optimizer_state, got.saved) == (
        measured["weights"],
        measured["gradients"],
        measured["optimizer_state"],
        measured["saved"],
    )
    assert got.total == sum(measured.values())


@pytest.mark.parametrize("optimizer", ["momentum", "adam"])
def test_master_weights_and_their_optimiser_state_are_float32(optimizer):
    """Mixed precision as apex O2 does it: a bfloat16 model, float32 masters that the optimiser steps."""
    from trainmem_util import OPTIMISERS, unique_bytes

    net = load_model("lenet5", dtype="bfloat16")
    got = net.training_memory(optimizer, batch=2, device="cpu", master=True)
    model, _gen, _file = model_of(net)
    masters = [p.detach().float().requires_grad_() for p in model.parameters()]
    for master in masters:
        master.grad = torch.zeros_like(master)
    step = OPTIMISERS[optimizer](masters)
    step.step()
    assert got.master_weights == unique_bytes(masters)
    assert got.optimizer_state == unique_bytes(v for s in step.state.values() for v in s.values() if torch.is_tensor(v))
    assert got.gradients == unique_bytes(p.detach() for p in model.parameters())  # bfloat16, as the model


def test_dropout_keeps_a_one_byte_mask_on_the_gpu():
    """torch's fused GPU dropout (native_dropout) keeps a bool mask; the CPU keeps the scaled mask."""
    net = archc.loads(spec("conv c: 4 @ 1x1\n dropout d: 0.5\n conv e: 2 @ 1x1"))
    values = 4 * 6 * 6
    assert net.training_memory(batch=1, device="cpu").layers["d"] == 4 * values
    assert net.training_memory(batch=1, device="cuda").layers["d"] == values


def test_the_backward_peak_follows_the_documented_model():
    """x (8) -> d1 (dense 4) -> d2 (dense 2), batch 1, float32, SGD: figures by hand from docs/language.md.

    Weights (8x4 + 4 + 4x2 + 2) x 4 = 184 bytes; d1 keeps x (32 bytes), d2 keeps d1's output (16).
    d2's backward: its parameter gradients (40), all that is saved (48), the output's gradient (8) and
    d1's output's (16): 184 + 40 + 48 + 24 = 296. d1's backward: every parameter gradient (184), x (32)
    and d1's output's gradient (16): 184 + 184 + 32 + 16 = 416, the peak.
    """
    net = archc.loads("network N {\n input x: 8\n dense d1: 4\n dense d2: 2\n}")
    m = net.training_memory("sgd", batch=1)
    assert (m.weights, m.saved, m.layers) == (184, 48, {"x": 0, "d1": 32, "d2": 16})
    assert (m.peak, m.peak_layer) == (416, "d1")
