"""Issue 15, item 3: `dense` along the last axis of an input of any rank, as torch's nn.Linear.

The torch twin of each case is nn.Linear applied to the input with the same axes
permuted (torch's `permute`, the batch kept first), built here by hand over random
ranks, sizes, orders and options from fixed seeds. Then:

- archc's shape, parameters, buffers and MACs equal torch's (MACs from the flop
  counter: in * out at every position);
- the generated torch module has the twin's state_dict shapes, takes its weights and
  computes what it computes; the generated NumPy model, loaded from it, computes the same;
- a dense layer on a channels-first map is still E0304 (a forgotten `flatten`), whose
  edits, applied, give the output they promise (in torch too), and a per-position
  `in=` that does not match is E0218 with the edit that does.
"""

from __future__ import annotations

import json
import random

import numpy as np
import pytest
import torch
from codegen_util import build
from test_hostile_shapes import check_fixes, diagnostics
from test_layers_torch import BATCH, Case, Lambda, archc_figures, dims, one, spec, torch_figures
from torch import nn

import archc
from archc.diagram import to_dot


def _last(order: tuple[int, ...]):
    """x with its per-sample axes in `order` (the batch first), as `permute: order` makes it."""
    return lambda linear, x: linear(x.permute(0, *(i + 1 for i in order)))


def dense_case(rng: random.Random) -> Case:
    """A dense layer (random units, bias, `in=`) on a vector, or on a map of rank 2 to 4 that a
    `permute` of random order puts channels last (its other axes in any order)."""
    rank = rng.choice([1, 2, 2, 3, 3, 4])
    shape = tuple(rng.randint(1, 7) for _ in range(rank))
    units, bias = rng.randint(1, 9), rng.random() < 0.7
    order = tuple(range(rank))
    if rank > 1:
        while order[-1] != 0:
            order = tuple(rng.sample(range(rank), rank))
    features = shape[0]
    stmt = f"dense y: {units}" if rng.random() < 0.7 else f"dense y: units={units}"
    stmt += "" if bias else " bias=false"
    stmt += f" in={features}" if rng.random() < 0.3 else ""
    lines = ([f"permute p: {dims(order)}"] if rank > 1 else []) + [stmt]
    return Case(
        {"x": shape}, "\n  ".join(lines), lambda o=order, f=features: Lambda(_last(o), nn.Linear(f, units, bias))
    )


DENSE_CASES = [dense_case(random.Random(seed)).param() for seed in range(40)] + [
    # the fixed points: ConvNeXt-T's first block (channels last) and a transformer's tokens x features
    one((96, 56, 56), "permute p: 1x2x0\n  dense y: 384", lambda: Lambda(_last((1, 2, 0)), nn.Linear(96, 384))).param(),
    one((768, 197), "permute p: 1x0\n  dense y: 3072", lambda: Lambda(_last((1, 0)), nn.Linear(768, 3072))).param(),
    one((400,), "dense y: 120 in=400", lambda: nn.Linear(400, 120)).param(),
]


def test_the_random_configurations_cover_every_rank_and_option():
    cases = [p.values[0] for p in DENSE_CASES]
    assert {len(c.inputs["x"]) for c in cases} == {1, 2, 3, 4}
    for word in ("bias=false", "in=", "units=", "permute p: 1x2x0", "permute p: 2x1x0"):
        assert any(word in c.stmt for c in cases), word


@pytest.mark.parametrize("case", DENSE_CASES)
def test_shape_params_buffers_and_macs_match_torch(case: Case):
    expected = torch_figures(case.build(), *case.inputs.values())
    assert archc_figures(case.inputs, case.stmt) == expected


@pytest.mark.parametrize("case", DENSE_CASES)
def test_the_generated_models_take_the_twins_weights_and_compute_what_it_computes(case: Case):
    net = archc.loads(spec(case.inputs, case.stmt), "case.arch")
    twin = case.build().eval()
    model, _, _ = build(net, "torch")
    ours = {key: "y." + (key.split(".", 2)[2] if key.startswith("inner.") else key) for key in twin.state_dict()}
    theirs = {ours[key]: v for key, v in twin.state_dict().items()}  # Lambda holds the nn.Linear as inner.0
    assert {k: tuple(v.shape) for k, v in model.state_dict().items()} == {k: tuple(v.shape) for k, v in theirs.items()}
    model.load_state_dict(theirs)
    numpy_model, _, _ = build(net, "numpy")
    numpy_model.load_state_dict(model.state_dict())
    x = torch.randn(BATCH, *case.inputs["x"], generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        want = twin(x)
        torch.testing.assert_close(model.eval()(x), want, rtol=1e-5, atol=1e-6)
    out = numpy_model(x.numpy())
    assert out.dtype == np.float32 and out.shape == tuple(want.shape)
    np.testing.assert_allclose(out, want.numpy(), rtol=1e-4, atol=1e-5 * max(float(want.abs().max()), 1.0))


# -- where the features are -------------------------------------------------------------


def layers(text: str) -> dict:
    return {layer["name"]: layer for layer in json.loads(archc.loads(text, "t.arch").table("json"))["layers"]}


def net(*lines: str, shape: str = "8x5x6") -> str:
    return "network N {\n  input x: " + shape + "\n" + "".join(f"  {line}\n" for line in lines) + "}\n"


def test_the_features_stay_last_through_layers_that_keep_the_rank_and_go_first_with_permute_back():
    text = net(
        "permute p: 1x2x0", "layernorm n: 1", "gelu g", "dense d: 4", "dropout", "dense e: 3", "permute b: 2x0x1"
    )
    got = layers(text)
    assert [got[n]["output_shape"] for n in ("n", "d", "e", "b")] == [[5, 6, 8], [5, 6, 4], [5, 6, 3], [3, 5, 6]]
    again = error(text.replace("}\n", "  dense f: 2\n}\n"))  # channels first again: a flatten is missing
    assert again.code == "E0304"
    assert again.message == "dense f needs a flat input or the channels last, but gets 3x5x6 with the channels first"


def test_a_channels_first_map_is_e0304_with_flatten_first_and_permute_second_and_both_work_in_torch():
    text = net("conv c: 4 @ 3", "dense fc: 10")
    err = error(text)
    assert (err.code, err.span.line, err.span.col) == ("E0304", 4, 3)
    assert err.help == [
        "`flatten fc_in` before it gives it 48 inputs, output 10",
        "`permute fc_in: 1x2x0` before it puts the channels last and applies it at every position, output 3x4x10",
    ]
    assert check_fixes(text) == 2  # each applied: the error goes, nothing new, the promised shape in torch


@pytest.mark.parametrize(
    "lines, shape, where",
    [
        (["reshape r: 8x30", "dense d: 2"], "8x5x6", "first"),  # a reshape's shape is channels first
        (["permute p: 0x2x1", "dense d: 2"], "8x5x6", "first"),  # the channels still first
        (["permute p: 1x0x2", "dense d: 2"], "8x5x6", "on axis 1"),  # the channels in the middle
        (["dense d: 2"], "16x9", "first"),  # an input of rank 2 is C x L
    ],
)
def test_a_map_whose_channels_are_not_last_is_e0304_with_the_order_that_puts_them_last(lines, shape, where):
    text = net(*lines, shape=shape)
    err = error(text)
    assert err.code == "E0304" and err.span.line == 2 + len(lines) and err.message.endswith(f"the channels {where}")
    assert check_fixes(text) == 2
    assert diagnostics(err.fixes[1].apply(text)) == []


def test_a_per_position_in_that_does_not_match_is_e0218_naming_the_features():
    text = net("permute p: 1x2x0", "dense d: 4 in=6")
    err = error(text)
    assert err.code == "E0218"
    assert err.message == "dense d expects 6 inputs (in=6), but permute p gives 8"
    assert err.help[-1] == "or, if 8 is what you want, write in=8"
    assert err.fixes[-1].apply(text) == text.replace("in=6", "in=8")
    assert check_fixes(text) == len(err.fixes)


MLP = """block mlp(ratio) {
  dense: in.channels * ratio -> gelu
  dense: in.channels
}

network N {
  input x: 8x5x6
  permute p: 1x2x0
  mlp m: 4
}
"""


def test_in_channels_of_a_channels_last_input_is_its_last_size():
    """A transformer's MLP block reads its width where the channels are: 8, not the 5 of axis 0."""
    twin = Lambda(lambda a, b, x: b(nn.functional.gelu(a(x.permute(0, 2, 3, 1)))), nn.Linear(8, 32), nn.Linear(32, 8))
    want = torch_figures(twin, (8, 5, 6))
    net = archc.loads(MLP, "mlp.arch")
    got = net.layer("m.dense2")
    assert (tuple(got.shape), net.totals.params, net.totals.buffers, net.totals.macs) == (
        want.shape,
        want.params,
        want.buffers,
        want.macs,
    )


def test_the_other_sizes_of_a_channels_last_map_have_no_names():
    """A permute may have put its spatial axes in any order: `height` would be a guess."""
    err = error(net("permute p: 1x2x0", "dense: p.height"))
    assert (err.code, err.message) == ("E0212", "`p` is 5x6x8, which has no height")
    assert err.help == ["its sizes are channels (axis 2, where a permute put them; the other axes have no names)"]


def test_units_below_one_are_e0205_at_every_rank():
    for text in (net("permute p: 1x2x0", "dense d: 0"), net("dense d: 0", shape="5")):
        err = error(text)
        assert (err.code, err.span.line) == ("E0205", text.count("\n") - 1)


def error(text: str):
    errors = [d for d in diagnostics(text) if d.severity == "error"]
    assert len(errors) == 1, [d.message for d in errors]
    return errors[0]


# -- the table, JSON and diagram ----------------------------------------------------------


def test_json_gives_a_per_position_dense_its_figures_and_the_table_and_diagram_show_it():
    text = net("permute p: 1x2x0", "dense d: 16 bias=false", "permute b: 2x0x1", "flatten", "dense out: 3")
    got = layers(text)
    assert got["d"]["output_shape"] == [5, 6, 16] and got["d"]["settings"] == "16 no bias"
    assert (got["d"]["params"], got["d"]["macs"]) == (8 * 16, 5 * 6 * 8 * 16)
    assert (got["out"]["params"], got["out"]["macs"]) == (480 * 3 + 3, 480 * 3)
    assert got["d"]["receptive_field"] is None  # after the permute that put the channels last
    table = archc.loads(text, "t.arch").table()
    assert "5x6x16" in table and "3,840" in table
    assert '"d" [label=' in to_dot(archc.loads(text, "t.arch")) and "dense 16 no bias" in to_dot(
        archc.loads(text, "t.arch")
    )
