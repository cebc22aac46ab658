"""Issue 17: `attention` (nn.MultiheadAttention) and `sdpa` (F.scaled_dot_product_attention) against torch.

Each random configuration is written once as a spec and once in torch, built by the test itself:
an nn.MultiheadAttention, or F.scaled_dot_product_attention on q, k and v split into heads here.
The figures archc gives must be torch's: the output shape, the parameters and the state_dict
keys and shapes, and the MACs torch's flop counter counts under the math attention backend with
grad mode on (where every matmul is counted: nn.MultiheadAttention's fast path in eval hides
its work), halved. The generated NumPy model, given the torch reference's weights, must compute
the reference's output to 1e-4 relative, causal and cross-attention included, and so must the
generated PyTorch model. Element operations and the attention weights' memory are checked against
arithmetic on the sizes of the tensors torch returns, and the training memory against the
tensors autograd saves (tests/trainmem_util.py).
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F  # noqa: N812 (the usual torch spelling)
from codegen_util import build
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from torch import nn
from torch.nn.attention import SDPBackend, sdpa_kernel
from torch.utils.flop_counter import FlopCounterMode
from trainmem_util import saved_by_layer

import archc
from archc import ArchError

BATCH = 2
SLOW = settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def sequence_inputs(sizes: dict[str, tuple[int, int]]) -> list[str]:
    """Statements making each `name: (length, features)` a sequence: an input written features first, permuted."""
    out = []
    for name, (length, features) in sizes.items():
        out += [f"input {name}_t: {features}x{length}", f"permute {name} ({name}_t): 1x0"]
    return out


def network(sizes: dict, *statements: str) -> str:
    body = "\n  ".join([*sequence_inputs(sizes), *statements])
    return f"network N {{\n  {body}\n}}\n"


def macs(fn, *xs) -> int:
    """Half the FLOPs torch's flop counter counts per sample, math backend, grad mode on."""
    counter = FlopCounterMode(display=False)
    with sdpa_kernel(SDPBackend.MATH), torch.enable_grad(), counter:
        fn(*xs)
    flops = counter.get_total_flops()
    assert flops % (2 * BATCH) == 0
    return flops // (2 * BATCH)


def close(ours, theirs) -> None:
    theirs = theirs.detach().numpy()
    scale = float(np.abs(theirs).max())
    np.testing.assert_allclose(ours, theirs, rtol=1e-4, atol=1e-4 * scale)


def future_mask(length: int, keys: int) -> torch.Tensor:
    """The causal mask written as torch documents it for attn_mask: -inf where a key is after the query."""
    return torch.full((length, keys), float("-inf")).triu(1)


def generated_outputs(net, state: dict, xs: list[torch.Tensor]):
    """The generated PyTorch and NumPy models (flat and nested), with `state` loaded: by key where the
    keys are the state's (nested), by position where they are the flat form's own."""
    out = []

    def loaded(keys):
        return dict(zip(keys, state.values(), strict=True)) if set(keys) != set(state) else state

    for flat in (True, False):
        model, _, _ = build(net, "torch", flat=flat)
        model.load_state_dict(loaded(list(model.state_dict())))
        with torch.no_grad():
            out.append(model.eval()(*xs).numpy())
        model, _, _ = build(net, "numpy", flat=flat)
        model.load_state_dict({k: v.numpy() for k, v in loaded(list(model.state_dict())).items()})
        out.append(model.eval()(*(x.numpy() for x in xs)))
    return out


# -- attention: nn.MultiheadAttention -----------------------------------------------------


@st.composite
def mha_configs(draw):
    heads = draw(st.integers(1, 4))
    width = heads * draw(st.integers(1, 4))
    form = draw(st.sampled_from(["self", "memory", "separate"]))
    length, keys = draw(st.integers(1, 7)), draw(st.integers(1, 7))
    kdim = draw(st.sampled_from([width, draw(st.integers(1, 9))])) if form != "self" else width
    vdim = kdim if form != "separate" else draw(st.sampled_from([width, draw(st.integers(1, 9))]))
    return {
        "heads": heads,
        "width": width,
        "form": form,
        "length": length,
        "keys": length if form == "self" else keys,
        "kdim": kdim,
        "vdim": vdim,
        "bias": draw(st.booleans()),
        "causal": draw(st.booleans()),
    }


def mha_case(c: dict):
    """The spec, the torch module, its inputs and its forward (the reference)."""
    sizes = {"q": (c["length"], c["width"])}
    if c["form"] != "self":
        sizes["k"] = (c["keys"], c["kdim"])
    if c["form"] == "separate":
        sizes["v"] = (c["keys"], c["vdim"])
    options = (" causal" if c["causal"] else "") + ("" if c["bias"] else " bias=false")
    text = network(sizes, f"attention y ({', '.join(sizes)}): {c['heads']}{options}")
    module = nn.MultiheadAttention(
        c["width"], c["heads"], bias=c["bias"], kdim=c["kdim"], vdim=c["vdim"], batch_first=True
    )
    xs = [torch.randn(BATCH, features, length) for length, features in sizes.values()]

    def forward(*ts):
        q, *rest = (t.transpose(1, 2) for t in ts)
        k = rest[0] if rest else q
        v = rest[-1] if rest else q
        mask = future_mask(c["length"], c["keys"]) if c["causal"] else None
        return module(q, k, v, need_weights=False, attn_mask=mask)[0]

    return text, module, xs, forward


@SLOW
@given(mha_configs())
def test_attention_matches_nn_multiheadattention(c):
    text, module, xs, forward = mha_case(c)
    net = archc.loads(text, "t.arch")
    y = net.layer("y")
    with torch.no_grad():
        reference = forward(*xs)
    assert tuple(y.shape) == tuple(reference.shape[1:])
    assert y.params == sum(p.numel() for p in module.parameters())
    assert y.macs == macs(forward, *xs)
    state = module.state_dict()
    for out in generated_outputs(net, {f"y.{k}": v for k, v in state.items()}, xs):
        close(out, reference)
    model, _, _ = build(net, "numpy")
    expected = {f"y.{k}": tuple(v.shape) for k, v in state.items()}
    assert {k: v.shape for k, v in model.state_dict().items()} == expected
    assert list(model.state_dict()) == list(expected)  # torch's order


def test_attention_keys_and_code_are_torchs_multiheadattention():
    """The packed projection's keys as torchvision's ViT has them (`...self_attention.in_proj_weight`)."""
    text = network({"x": (5, 8)}, "attention self_attention: 2")
    model, gen, _ = build(archc.loads(text, "t.arch"), "torch")
    assert "nn.MultiheadAttention(8, 2, batch_first=True)" in gen.code
    assert list(model.state_dict()) == [
        "self_attention.in_proj_weight",
        "self_attention.in_proj_bias",
        "self_attention.out_proj.weight",
        "self_attention.out_proj.bias",
    ]


def test_attention_dropout_drops_while_training_only():
    """dropout=p is nn.MultiheadAttention's: the weights are dropped in training mode, not at inference."""
    text = network({"x": (6, 8)}, "attention y: 2 dropout=0.5")
    net = archc.loads(text, "t.arch")
    assert "dropout=0.5" in build(net, "torch")[1].code
    model, _, _ = build(net, "numpy")
    x = np.random.default_rng(0).standard_normal((BATCH, 8, 6)).astype(np.float32)
    assert np.array_equal(model.eval()(x), model(x))
    assert not np.allclose(model.train()(x), model.eval()(x))


def test_attention_starts_as_torch_starts_it():
    """Xavier-uniform projections in, zero biases, nn.Linear's start for the out projection."""
    net = archc.loads(network({"x": (4, 64)}, "attention y: 4"), "t.arch")
    state = build(net, "numpy")[0].state_dict()
    reference = nn.MultiheadAttention(64, 4, batch_first=True).state_dict()
    for key, value in reference.items():
        ours = state[f"y.{key}"]
        assert ours.dtype == np.float32
        largest = float(value.abs().max())
        if largest == 0:
            assert not ours.any(), key
        else:  # the same uniform distribution: of thousands of draws, the largest is near the bound
            assert 0.95 * largest < np.abs(ours).max() < 1.05 * largest, key


# -- sdpa: F.scaled_dot_product_attention between the spec's own projections ------------------


@st.composite
def sdpa_configs(draw):
    heads = draw(st.integers(1, 4))
    width = heads * draw(st.integers(1, 4))
    form = draw(st.sampled_from(["qkv", "kv", "separate"]))
    length = draw(st.integers(1, 7))
    keys = length if form == "qkv" else draw(st.integers(1, 7))
    vdim = heads * draw(st.integers(1, 4)) if form == "separate" else width
    return {"heads": heads, "width": width, "form": form, "length": length, "keys": keys, "vdim": vdim}


def sdpa_case(c: dict, causal: bool):
    h, e = c["heads"], c["width"]
    if c["form"] == "qkv":
        sizes = {"qkv": (c["length"], 3 * e)}
    elif c["form"] == "kv":
        sizes = {"q": (c["length"], e), "kv": (c["keys"], 2 * e)}
    else:
        sizes = {"q": (c["length"], e), "k": (c["keys"], e), "v": (c["keys"], c["vdim"])}
    text = network(sizes, f"sdpa y ({', '.join(sizes)}): {h}" + (" causal" if causal else ""))
    xs = [torch.randn(BATCH, features, length) for length, features in sizes.values()]

    def forward(*ts):
        ts = [t.transpose(1, 2) for t in ts]
        if c["form"] == "qkv":
            ts = ts[0].split(e, dim=-1)  # GPT-2's split of c_attn
        elif c["form"] == "kv":
            ts = [ts[0], *ts[1].split(e, dim=-1)]
        q, k, v = (t.reshape(BATCH, t.shape[1], h, -1).permute(0, 2, 1, 3) for t in ts)
        mask = future_mask(q.shape[2], k.shape[2]) if causal else None
        out = F.scaled_dot_product_attention(q, k, v, attn_mask=mask)
        return out.permute(0, 2, 1, 3).reshape(BATCH, q.shape[2], -1)

    return text, xs, forward


@SLOW
@given(sdpa_configs(), st.booleans())
def test_sdpa_matches_scaled_dot_product_attention(c, causal):
    text, xs, forward = sdpa_case(c, causal)
    net = archc.loads(text, "t.arch")
    y = net.layer("y")
    with torch.no_grad():
        reference = forward(*xs)
    assert tuple(y.shape) == tuple(reference.shape[1:])
    assert y.params == 0
    assert y.macs == macs(forward, *xs)
    for out in generated_outputs(net, {}, xs):
        close(out, reference)


GPT2_ATTENTION = """
network Gpt2Attention {
  input x: 768x16
  permute: 1x0
  dense c_attn: 2304
  sdpa: 12 causal
  dense c_proj: 768
}
"""


def test_gpt2_style_packed_attention_equals_hand_written_torch():
    """GPT-2's attention as transformers writes it: c_attn, split, heads, causal softmax, c_proj."""
    net = archc.loads(GPT2_ATTENTION, "t.arch")
    torch.manual_seed(0)
    c_attn, c_proj = nn.Linear(768, 2304), nn.Linear(768, 768)
    x = torch.randn(BATCH, 768, 16)

    def forward(x):
        q, k, v = c_attn(x.transpose(1, 2)).split(768, dim=2)
        q, k, v = (t.view(BATCH, 16, 12, 64).permute(0, 2, 1, 3) for t in (q, k, v))
        scores = (q @ k.transpose(-1, -2)) / 8.0 + future_mask(16, 16)
        out = (scores.softmax(-1) @ v).permute(0, 2, 1, 3).reshape(BATCH, 16, 768)
        return c_proj(out)

    with torch.no_grad():
        reference = forward(x)
    layers = {"c_attn": c_attn, "c_proj": c_proj}
    state = {f"{name}.{k}": v for name, m in layers.items() for k, v in m.state_dict().items()}
    for out in generated_outputs(net, state, [x]):
        close(out, reference)
    assert net.totals.macs == macs(forward, x)
    assert net.totals.params == 2304 * 769 + 768 * 769


# -- element operations and memory --------------------------------------------------------


def test_elem_ops_are_the_biases_and_four_per_weight_five_with_a_mask():
    """The convention (docs/language.md, section 12): a bias addition per projected value, and per
    attention weight the scaling and softmax's three, plus the mask; the sizes read off torch."""
    module = nn.MultiheadAttention(12, 3, kdim=5, vdim=7, batch_first=True)
    q, k, v = torch.randn(BATCH, 4, 12), torch.randn(BATCH, 9, 5), torch.randn(BATCH, 9, 7)
    out, weights = module(q, k, v, average_attn_weights=False)
    per_weight = weights.numel() // BATCH  # heads x L x S
    projected = 2 * out.numel() // BATCH + 2 * 9 * 12  # q and out; k and v (each S x E)
    for options, extra in (("", 0), (" causal", per_weight)):
        text = network({"q": (4, 12), "k": (9, 5), "v": (9, 7)}, f"attention y (q, k, v): 3{options}")
        assert archc.loads(text, "t.arch").layer("y").elem_ops == projected + 4 * per_weight + extra
    text = network({"q": (4, 12), "k": (9, 5), "v": (9, 7)}, "attention y (q, k, v): 3 bias=false")
    assert archc.loads(text, "t.arch").layer("y").elem_ops == 4 * per_weight


def test_the_attention_weights_count_in_the_activations_and_the_peak():
    """H x L x S weights per sample (the shape torch returns them in), live while the layer runs."""
    module = nn.MultiheadAttention(8, 4, batch_first=True)
    x = torch.randn(BATCH, 10, 8)
    out, weights = module(x, x, x, average_attn_weights=False)
    per_sample = weights.numel() // BATCH
    assert per_sample == 4 * 10 * 10
    for layer in ("attention y: 4", "sdpa y (x, x, x): 4"):
        net = archc.loads(network({"x": (10, 8)}, layer, "dense z: 8"), "t.arch")
        values = out.numel() // BATCH  # the input, the output, z: each 10 x 8
        assert net.layer("y").workspace == per_sample
        assert net.totals.activations == 3 * values + per_sample
        assert net.totals.peak_activation_bytes == 4 * (2 * values + per_sample)  # x, y and the weights
        assert net.totals.peak_layer == "y"
        row = next(row for row in net.to_json()["layers"] if row["name"] == "y")
        assert row["workspace"] == per_sample and row["memory_bytes"] == 4 * (values + per_sample)


# -- training memory: what autograd saves, math backend --------------------------------------

TRAINING = {
    "self": ("attention a: 2", {"x": (6, 4)}),
    "causal_no_bias": ("attention a: 4 causal bias=false", {"x": (5, 8)}),
    "dropout": ("attention a: 2 dropout=0.2", {"x": (6, 4)}),
    "memory": ("dense q (x): 4\n  attention a (q, m): 2", {"x": (6, 4), "m": (3, 4)}),
    "kdim": ("dense q (x): 4\n  attention a (q, m, v): 1", {"x": (6, 4), "m": (3, 5), "v": (3, 2)}),
    "same_key_value": ("dense q (x): 4\n  attention a (q, m, m): 2", {"x": (6, 4), "m": (3, 4)}),
    "packed": ("dense c (x): 12\n  sdpa s: 2 causal\n  dense o: 4", {"x": (6, 4)}),
    # (the projections read a dense layer's output: on the permuted input each would copy it first)
    "packed_kv": ("dense h (x): 4\n  dense q: 4\n  dense kv (h): 8\n  sdpa s (q, kv): 2", {"x": (6, 4)}),
    "separate": (
        "dense h (x): 4\n  dense q: 4\n  dense k (h): 4\n  dense v (h): 6\n  sdpa s (q, k, v): 2",
        {"x": (6, 4)},
    ),
    "one_head": ("dense q (x): 4\n  sdpa s (q, q, q): 1 dropout=0.3", {"x": (6, 4)}),
    "one_key": ("dense q (x): 4\n  dense k (m): 4\n  sdpa s (q, k, k): 2", {"x": (6, 4), "m": (1, 3)}),
    "on_inputs": ("sdpa s (x, m, m): 2\n  dense o: 4", {"x": (6, 4), "m": (3, 4)}),
    "query_only": ("dense h (x): 4\n  dense q: 4\n  sdpa s (q, m, m): 2", {"x": (6, 4), "m": (3, 4)}),
    "keys_only": ("dense h (m): 4\n  dense k: 4\n  sdpa s (x, k, m): 2", {"x": (6, 4), "m": (3, 4)}),
    "values_only": ("dense h (m): 4\n  dense v: 6\n  sdpa s (x, m, v): 2", {"x": (6, 4), "m": (3, 4)}),
}


@pytest.mark.parametrize("name", TRAINING)
@pytest.mark.parametrize("batch", [2, 3])
def test_saved_tensors_equal_torchs_under_the_math_backend(name, batch):
    body, sizes = TRAINING[name]
    net = archc.loads(network(sizes, body), "t.arch")
    got = {k: v for k, v in net.training_memory(batch=batch, device="cpu").layers.items() if v}
    layers, _ = saved_by_layer(net, batch)  # under the math backend
    assert got == dict(layers)


# -- errors, with the fixes they offer ----------------------------------------------------


def error_of(text: str):
    with pytest.raises(ArchError) as info:
        archc.loads(text, "t.arch")
    return info.value.diagnostics[0]


@pytest.mark.parametrize(("op", "inputs"), [("attention", ""), ("sdpa", " (x, x, x)")])
def test_heads_that_do_not_divide_the_width_list_the_divisors_and_fix_it(op, inputs):
    text = network({"x": (5, 12)}, f"{op} y{inputs}: 5")
    error = error_of(text)
    assert error.code == "E0303" and "heads=5 does not divide the width 12" in error.message
    assert "the divisors of 12 are 1, 2, 3, 4, 6, 12" in error.help
    fixed = error.fixes[0].apply(text)
    assert f"{op} y{inputs}: 4" in fixed or f"{op} y{inputs}: 6" in fixed
    heads = archc.loads(fixed, "t.arch").layer("y").attrs["heads"]
    nn.MultiheadAttention(12, heads)  # torch takes it: it asserts the head count divides the width


def test_a_sequence_with_its_features_first_is_permuted_by_the_fix():
    text = "network N {\n  input x: 16x10\n  attention y: 4\n}\n"
    error = error_of(text)
    assert error.code == "E0304" and "the channels first" in error.message
    assert error.help == ["`permute y_in: 1x0` before it puts the features last, output 10x16"]
    fixed = error.fixes[0].apply(text)
    net = archc.loads(fixed, "t.arch")
    module = nn.MultiheadAttention(16, 4, batch_first=True)
    x = torch.randn(BATCH, 16, 10).permute(0, 2, 1)
    assert tuple(net.layer("y").shape) == tuple(module(x, x, x)[0].shape[1:])


@pytest.mark.parametrize(
    ("written", "meant"),
    [("MultiheadAttention", "attention"), ("self_attention", "attention"), ("scaled_dot_product_attention", "sdpa")],
)
def test_other_names_for_attention_get_archcs(written, meant):
    """torch's names for the layers: archc's, with the edit (it said "attention is not supported yet")."""
    text = network({"x": (5, 8)}, f"{written} y (x, x, x): 2")
    error = error_of(text)
    assert error.code == "E0201" and error.help[0].startswith(f"did you mean `{meant}`?")
    fixed = archc.loads(error.fixes[0].apply(text), "t.arch")
    assert fixed.layer("y").op == meant


@pytest.mark.parametrize(
    ("body", "code", "says"),
    [
        ("reshape c (x_t): 4x1x5\n  attention y (c): 2", "E0304", "`reshape: 4x5` then `permute: 1x0`"),
        ("flatten f (x_t)\n  attention y (f): 2", "E0304", "a vector is one token"),
        ("attention y (x, m): 2 dropout=1", "E0205", "dropout must be in [0, 1)"),
        ("dense v (m): 3\n  attention y (x, m, k): 2", "E0305", "the key has 3 tokens and the value 7"),
        ("sdpa y (x): 2", "E0303", "3 x E features"),
        ("sdpa y (x, m): 2", "E0305", "2 x 4 features"),
        ("sdpa y (x, k, m): 2", "E0305", "the key needs the query's width"),
        ("sdpa y (x, x, x): 0", "E0205", "heads must be at least 1"),
    ],
)
def test_bad_uses_are_located_errors(body, code, says):
    sizes = {"x": (5, 4), "m": (3, 4), "k": (7, 4)}
    text = network(sizes, body)
    error = error_of(text)
    assert error.code == code, error.message
    assert says in error.message + " ".join(error.help)
    assert error.span is not None and error.span.line > 1


@pytest.mark.parametrize("scheme", ["vgg", "googlenet", "efficientnet"])
@pytest.mark.parametrize("dense", [True, False])
@pytest.mark.parametrize("bias", [True, False])
def test_a_schemes_loop_over_linear_layers_starts_out_proj_in_both_targets(scheme, dense, bias):
    """out_proj is an nn.Linear: the loop of `init=` reaches it (where the network has a dense layer, which
    makes the loop), and must not start a bias it lacks; NumPy draws from the distribution torch does."""
    layers = ["attention a: 4" + ("" if bias else " bias=false"), *(["dense d: 64"] if dense else [])]
    text = network({"x": (3, 64)}, *layers).replace("network N {", f"network N init={scheme} {{")
    net = archc.loads(text, "t.arch")
    torch.manual_seed(0)
    theirs = build(net, "torch")[0].state_dict()  # builds: no zeros_ of a missing bias
    ours = build(net, "numpy")[0].state_dict()
    for key in ("a.out_proj.weight", "a.out_proj.bias")[: 1 + bias]:
        expected = theirs[key].numpy()
        if not expected.any():
            assert not ours[key].any(), key
        else:  # thousands of draws: the same spread to a few percent
            assert 0.9 < ours[key].std() / expected.std() < 1.1, key


# -- a transformer encoder: torchvision's ViT blocks --------------------------------------------

VIT_ENCODER = """
block mlp(hidden, width) {
  dense 0: hidden -> gelu
  dense 3: width
}

block encoder_block(heads, width, hidden) {
  layernorm ln_1: 1 eps=1e-6
  attention self_attention: heads
  add attended (in, self_attention)
  layernorm ln_2: 1 eps=1e-6
  mlp mlp: hidden width
  add (attended, mlp)
}

network Encoder {
  input patches: 32x10
  permute tokens: 1x0
  encoder_block encoder_layer_0: 4 32 64
  encoder_block encoder_layer_1: 4 32 64
}
"""


def test_vit_encoder_blocks_equal_torchvisions():
    """Two of torchvision's ViT EncoderBlocks (nn.MultiheadAttention inside): the same state_dict keys
    (`encoder_layer_0.self_attention.in_proj_weight`), parameters, MACs and outputs."""
    from collections import OrderedDict

    from torchvision.models.vision_transformer import EncoderBlock

    torch.manual_seed(0)
    blocks = OrderedDict((f"encoder_layer_{i}", EncoderBlock(4, 32, 64, 0.0, 0.0)) for i in range(2))
    reference = nn.Sequential(blocks).eval()
    with torch.no_grad():
        for p in reference.parameters():  # torch starts the biases at zero: give them values
            p.add_(0.1 * torch.randn_like(p))
    net = archc.loads(VIT_ENCODER, "t.arch")
    x = torch.randn(BATCH, 32, 10)
    with torch.no_grad():
        expected = reference(x.transpose(1, 2))
    state = reference.state_dict()
    model = build(net, "torch")[0]
    assert list(model.state_dict()) == list(state)
    assert net.totals.params == sum(p.numel() for p in reference.parameters())
    assert net.totals.macs == macs(lambda t: reference(t.transpose(1, 2)), x)
    for out in generated_outputs(net, dict(state), [x]):
        close(out, expected)


BERT_SELF_ATTENTION = """
block self_attention(heads, width) {
  dense query: width
  dense key (in): width
  dense value (in): width
  sdpa (query, key, value): heads
}

network BertAttention {
  input x: 64x12
  permute: 1x0
  self_attention self: 4 64
  dense output: 64
}
"""


def test_bert_style_separate_projections_keep_berts_names_and_output():
    """BertSelfAttention as transformers writes it: query, key and value nn.Linear layers, the heads'
    scores scaled by sqrt(d), softmax, the context merged back; then the output projection."""
    torch.manual_seed(1)
    layers = {name: nn.Linear(64, 64) for name in ("self.query", "self.key", "self.value", "output")}
    x = torch.randn(BATCH, 64, 12)

    def forward(x):
        h = x.transpose(1, 2)
        q, k, v = (layers[f"self.{n}"](h).view(BATCH, 12, 4, 16).permute(0, 2, 1, 3) for n in ("query", "key", "value"))
        context = ((q @ k.transpose(-1, -2)) / 4.0).softmax(-1) @ v
        return layers["output"](context.permute(0, 2, 1, 3).reshape(BATCH, 12, 64))

    with torch.no_grad():
        reference = forward(x)
    state = {f"{name}.{k}": v for name, m in layers.items() for k, v in m.state_dict().items()}
    net = archc.loads(BERT_SELF_ATTENTION, "t.arch")
    assert list(build(net, "torch")[0].state_dict()) == list(state)
    for out in generated_outputs(net, state, [x]):
        close(out, reference)
    assert net.totals.macs == macs(forward, x)
