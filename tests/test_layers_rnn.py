"""lstm and gru against torch's nn.LSTM and nn.GRU: shape, parameters, MACs, both generated targets.

For random configurations (layers 1-3, bidirectional, bias, sizes, a projection,
every step's output or the last), the layer is written once as an `.arch`
statement and once as the torch module a person writes (batch_first=True; the
last step of a text classifier is `h_n[-1]`, or `torch.cat((h_n[-2], h_n[-1]), 1)`
bidirectional). archc's shape and parameters must be torch's; its MACs, the
gates' matrix products, what torch's flop counter counts with its native kernels
(oneDNN's fused LSTM, torch's CPU default, hides them: it counts 0). With the
reference's weights loaded by key (strict), the generated PyTorch module and the
NumPy model must give the reference's output within 1e-4.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from codegen_util import build
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

import archc

EXAMPLES = settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])
BATCH = 3
# torch.backends.mkldnn.flags() sets oneDNN's TF32 switch too, and warns that there is no Intel GPU
pytestmark = pytest.mark.filterwarnings("ignore:TF32 acceleration:UserWarning")


KINDS = ("lstm", "gru")


@st.composite
def configs(draw):
    kind = draw(st.sampled_from(KINDS))
    units = draw(st.integers(1, 9))
    return {
        "kind": kind,
        "features": draw(st.integers(1, 7)),
        "steps": draw(st.integers(1, 6)),
        "units": units,
        "layers": draw(st.integers(1, 3)),
        "bidirectional": draw(st.booleans()),
        "bias": draw(st.booleans()),
        "last": draw(st.booleans()),
        "proj": draw(st.integers(0, units - 1)) if kind == "lstm" and units > 1 and draw(st.booleans()) else 0,
    }


def statement(c) -> str:
    words = [f"{c['kind']} r: {c['units']}", f"layers={c['layers']}"]
    words += ["bidirectional"] * c["bidirectional"] + ["bias=false"] * (not c["bias"]) + ["last"] * c["last"]
    words += [f"proj={c['proj']}"] * bool(c["proj"])
    return " ".join(words)


def network(c) -> archc.Network:
    """The sequence comes as F x L and is permuted to L x F, as a spec of today writes it."""
    text = f"network R {{\n  input x: {c['features']}x{c['steps']}\n  permute seq: 1x0\n  {statement(c)}\n}}\n"
    return archc.loads(text, "r.arch")


class Reference(nn.Module):
    """The layer as a person writes it in torch: the module, and every step's output or h_n's last layer."""

    def __init__(self, c):
        super().__init__()
        options = {"num_layers": c["layers"], "bias": c["bias"], "batch_first": True}
        options["bidirectional"] = c["bidirectional"]
        if c["kind"] == "lstm":
            self.r = nn.LSTM(c["features"], c["units"], proj_size=c["proj"], **options)
        else:
            self.r = nn.GRU(c["features"], c["units"], **options)
        self.last = c["last"]

    def forward(self, x):
        output, h_n = self.r(x.permute(0, 2, 1))
        if not self.last:
            return output
        h_n = h_n[0] if isinstance(h_n, tuple) else h_n  # an LSTM's (h_n, c_n)
        return torch.cat((h_n[-2], h_n[-1]), 1) if self.r.bidirectional else h_n[-1]


def torch_macs(model, x) -> int:
    """Half the FLOPs torch's flop counter counts, with torch's native kernels (not oneDNN's)."""
    with torch.backends.mkldnn.flags(enabled=False), FlopCounterMode(display=False) as counter:
        model(x)
    return counter.get_total_flops() // 2


@EXAMPLES
@given(c=configs(), seed=st.integers(0, 2**16))
def test_lstm_and_gru_equal_torch(c, seed):
    net = network(c)
    torch.manual_seed(seed)
    reference = Reference(c).eval()
    x = torch.randn(BATCH, c["features"], c["steps"])
    with torch.no_grad():
        expected = reference(x)
    layer = net.layer("r")
    assert (BATCH, *layer.shape) == tuple(expected.shape)
    assert layer.params == sum(p.numel() for p in reference.parameters())
    assert layer.macs == torch_macs(reference, x[:1])
    assert layer.buffers == 0
    state = {key.removeprefix("r."): value for key, value in reference.state_dict().items()}
    state = {f"r.{key}": value for key, value in state.items()}
    model, _gen, _file = build(net, "torch", flat=True)
    model.load_state_dict(state, strict=True)
    with torch.no_grad():
        np.testing.assert_allclose(model.eval()(x).numpy(), expected.numpy(), rtol=1e-4, atol=1e-5)
    numpy_model, _gen, _file = build(net, "numpy", flat=True)
    numpy_model.load_state_dict({key: value.numpy() for key, value in state.items()})
    got = numpy_model.eval()(x.numpy())
    assert got.dtype == np.float32
    np.testing.assert_allclose(got, expected.numpy(), rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("kind", ["lstm", "gru"])
def test_the_numpy_model_starts_as_torch_does(kind):
    """torch starts every array of a recurrent layer uniform in +-1/sqrt(H), whatever its shape."""
    c = {"kind": kind, "features": 40, "steps": 2, "units": 25, "layers": 2, "bidirectional": True}
    c.update(bias=True, last=False, proj=5 if kind == "lstm" else 0)
    numpy_model, _gen, _file = build(network(c), "numpy", flat=True)
    reference = Reference(c)
    state = numpy_model.state_dict()
    assert list(state) == [f"r.{key}" for key in reference.r.state_dict()]
    for key, value in reference.r.state_dict().items():
        ours = state[f"r.{key}"]
        assert ours.shape == tuple(value.shape) and ours.dtype == np.float32
        assert np.abs(ours).max() <= 0.2 and np.abs(ours).max() > 0.15  # bound 1/sqrt(25)


def test_dropout_between_layers_is_torchs_in_training_and_nothing_in_eval():
    """dropout= reaches both targets: torch's module takes it, the NumPy model draws masks while
    training (a new one each call) and equals torch's eval output in eval."""
    text = "network R {\n  input x: 3x4\n  permute seq: 1x0\n  gru r: 5 layers=2 dropout=0.5\n}\n"
    net = archc.loads(text, "r.arch")
    model, gen, _file = build(net, "torch", flat=True)
    assert "dropout=0.5" in gen.code
    numpy_model, _gen, _file = build(net, "numpy", flat=True)
    numpy_model.load_state_dict({k: v.numpy() for k, v in model.state_dict().items()})
    x = np.random.default_rng(0).standard_normal((2, 3, 4)).astype(np.float32)
    with torch.no_grad():
        expected = model.eval()(torch.from_numpy(x)).numpy()
    np.testing.assert_allclose(numpy_model.eval()(x), expected, rtol=1e-4, atol=1e-5)
    numpy_model.train()
    draws = [numpy_model(x) for _ in range(4)]
    assert not np.allclose(draws[0], draws[1])  # a mask is drawn each time
    assert not np.allclose(draws[0], expected)


# docs/language.md, section 12: element operations per hidden unit, step, layer and direction, with and
# without biases (lstm: 4 sums of products, 8 bias additions, 4 activations, c's 3, tanh(c) and o's 2)
STEP_OPS = {("lstm", True): 21, ("lstm", False): 13, ("gru", True): 16, ("gru", False): 10}


@settings(max_examples=20, deadline=None)
@given(c=configs())
def test_element_operations_follow_the_documented_count(c):
    layer = network(c).layer("r")
    directions = 2 if c["bidirectional"] else 1
    assert layer.elem_ops == c["steps"] * c["layers"] * directions * c["units"] * STEP_OPS[c["kind"], c["bias"]]


def test_block_instances_with_other_settings_share_one_nested_class():
    """The nested target writes every setting of the recurrent layers of a block (num_layers=n), so its
    instances of 1 and 2 layers are one class; with the flat module's weights (in the same order, under
    nested keys) it gives the flat module's output."""
    text = (
        "block enc(h, n=1) {\n  lstm rnn: h layers=n\n  dense proj: h\n}\n"
        "network B {\n  input x: 8x5\n  permute seq: 1x0\n  enc e1: 6\n  enc e2: 6 n=2\n"
        "  gru g: 3 bidirectional last\n}\n"
    )
    net = archc.loads(text, "b.arch")
    nested, gen, _file = build(net, "torch")
    assert gen.code.count("class Enc") == 1 and "num_layers=n" in gen.code
    torch.manual_seed(0)
    flat, _gen, _file = build(net, "torch", flat=True)
    nested.load_state_dict(dict(zip(nested.state_dict(), flat.state_dict().values(), strict=True)), strict=True)
    x = torch.randn(2, 8, 5)
    with torch.no_grad():
        torch.testing.assert_close(nested.eval()(x), flat.eval()(x))
