"""Issue 15, normalisation: layer norm, group norm and instance norm against PyTorch.

Each layer is drawn over random configurations (rank, channels, over, groups, eps,
affine, bias, running statistics, momentum) from fixed seeds, written once as an
`.arch` statement and once as its torch twin, built here by hand: nn.LayerNorm
over the last dimensions, torchvision's LayerNorm2d for the channels (nn.LayerNorm
over C with the channels permuted last and back, as convnext.py writes it),
nn.GroupNorm and nn.InstanceNorm1d/2d/3d. Then:

- archc's shape, parameters, buffers and MACs equal torch's (MACs from the flop
  counter: 0, as it counts no norm);
- the generated torch module has the twin's state_dict keys and shapes, so the
  twin's weights load by name, and then computes what the twin computes; the
  generated NumPy model, loaded from it by key, computes the same (eval mode; and
  in training, instance norm's running statistics move as torch's do);
- every bad use is a located error with a code, and each edit it offers, applied to
  the spec, removes the error and gives the output it promises (in torch too).
"""

from __future__ import annotations

import json
import random
import subprocess
import sys

import numpy as np
import pytest
import torch
from codegen_util import build
from test_hostile_shapes import check_fixes, diagnostics
from test_layers_torch import BATCH, Case, Lambda, archc_figures, one, spec, torch_figures
from torch import nn

import archc
from archc.diagram import to_dot
from archc.ops import OPS

INSTANCENORM = {1: nn.InstanceNorm1d, 2: nn.InstanceNorm2d, 3: nn.InstanceNorm3d}
EPS = [1e-5, 1e-6, 1e-3, 0.1]


def _shape(rng: random.Random, rank: int, vector_ok: bool = True) -> tuple[int, ...]:
    """A per-sample shape of `rank` spatial dimensions (0: a vector), small and uneven."""
    if rank == 0 and not vector_ok:
        rank = 1
    return (rng.randint(1, 12), *(rng.randint(2, 6) for _ in range(rank)))


def _options(rng: random.Random, stmt: list[str], affine_default: bool) -> dict:
    """eps, affine and bias drawn, written into `stmt` where not torch's default; torch's keywords."""
    eps = rng.choice(EPS)
    affine = rng.random() < 0.7 if affine_default else rng.random() < 0.5
    bias = rng.random() < 0.7
    if eps != 1e-5:
        stmt.append(f"eps={eps}")
    if affine != affine_default:
        stmt.append(f"affine={str(affine).lower()}")
    if not bias:
        stmt.append("bias=false")
    return {"eps": eps, "affine": affine, "bias": bias}


def _channels_last(ln: nn.LayerNorm, x):
    """torchvision's LayerNorm2d (and its 1-D and 3-D analogues): C moved last, normalised, moved back."""
    return ln(x.movedim(1, -1)).movedim(-1, 1)


def layernorm_case(rng: random.Random) -> Case:
    shape = _shape(rng, rng.choice([0, 1, 2, 2, 3]))
    channels = rng.random() < 0.5
    over = rng.randint(1, len(shape))
    stmt = ["layernorm y"] + ([] if channels else [f"over={over}" if rng.random() < 0.5 else str(over)])
    o = _options(rng, stmt, True)
    kw = {"eps": o["eps"], "elementwise_affine": o["affine"], "bias": o["bias"]}
    text = f"{stmt[0]}: {' '.join(stmt[1:])}" if len(stmt) > 1 else stmt[0]
    if channels:
        return one(shape, text, lambda c=shape[0], kw=kw: Lambda(_channels_last, nn.LayerNorm(c, **kw)))
    return one(shape, text, lambda s=shape[-over:], kw=kw: nn.LayerNorm(list(s), **kw))


def groupnorm_case(rng: random.Random) -> Case:
    while True:
        shape = _shape(rng, rng.choice([0, 1, 2, 2, 3]))
        groups = rng.choice([g for g in range(1, shape[0] + 1) if shape[0] % g == 0])
        if np.prod(shape) // groups > 1:  # one value a group: torch refuses it (tested below)
            break
    stmt = [f"groupnorm y: {groups}" if rng.random() < 0.7 else f"groupnorm y: groups={groups}"]
    o = _options(rng, stmt, True)
    return one(shape, " ".join(stmt), lambda g=groups, c=shape[0], o=o: nn.GroupNorm(g, c, **o))


def instancenorm_case(rng: random.Random) -> Case:
    shape = _shape(rng, rng.choice([1, 2, 3]))
    stmt = ["instancenorm y"]
    o = _options(rng, stmt, False)
    track = rng.random() < 0.5
    momentum = rng.choice([0.1, 0.1, 0.3, 1.0])
    if track:
        stmt.append("track=true")
    if momentum != 0.1:
        stmt.append(f"momentum={momentum}")
    text = f"{stmt[0]}: {' '.join(stmt[1:])}" if len(stmt) > 1 else stmt[0]
    kw = {**o, "momentum": momentum, "track_running_stats": track}
    module = INSTANCENORM[len(shape) - 1]
    return one(shape, text, lambda m=module, c=shape[0], kw=kw: m(c, **kw))


def _cases(draw, seed: int, count: int = 30) -> list:
    rng = random.Random(seed)
    return [draw(rng).param() for _ in range(count)]


NORM_CASES = [
    *_cases(layernorm_case, 1),
    *_cases(groupnorm_case, 2),
    *_cases(instancenorm_case, 3),
    # the fixed points: ConvNeXt's norms, GroupNorm(32) of a ResNet-GN, torch's InstanceNorm defaults
    one((96, 56, 56), "layernorm y: eps=1e-6", lambda: Lambda(_channels_last, nn.LayerNorm(96, eps=1e-6))).param(),
    one((768,), "layernorm y: eps=1e-6", lambda: nn.LayerNorm(768, eps=1e-6)).param(),
    one((64, 8, 8), "groupnorm y: 32", lambda: nn.GroupNorm(32, 64)).param(),
    one((3, 9, 9), "instancenorm y", lambda: nn.InstanceNorm2d(3)).param(),
]


@pytest.mark.parametrize("case", NORM_CASES)
def test_shape_params_buffers_and_macs_match_torch(case: Case):
    expected = torch_figures(case.build(), *case.inputs.values())
    assert expected.macs == 0
    assert archc_figures(case.inputs, case.stmt) == expected


def _randomised(module: nn.Module) -> None:
    """Weights and running statistics away from their initial values, so that each one shows."""
    gen = torch.Generator().manual_seed(7)
    with torch.no_grad():
        for name, value in module.state_dict().items():
            if value.is_floating_point():
                noise = torch.rand(value.shape, generator=gen) if name.endswith("var") else torch.randn(value.shape)
                value.copy_(noise + (0.5 if name.endswith("var") else 0.0))


def _ours(key: str) -> str:
    """The key of the twin's `key` in the generated model, whose layer is `y` (`inner.0.` is Lambda's module)."""
    return "y." + (key.split(".", 2)[2] if key.startswith("inner.") else key)


@pytest.mark.parametrize("case", NORM_CASES)
def test_the_generated_models_load_the_twins_weights_by_name_and_compute_what_it_computes(case: Case):
    net = archc.loads(spec(case.inputs, case.stmt), "case.arch")
    twin = case.build()
    _randomised(twin)
    model, _, _ = build(net, "torch")
    theirs = {_ours(k): v for k, v in twin.state_dict().items()}
    assert {k: tuple(v.shape) for k, v in model.state_dict().items()} == {k: tuple(v.shape) for k, v in theirs.items()}
    model.load_state_dict(theirs)
    numpy_model, _, _ = build(net, "numpy")
    numpy_model.load_state_dict(model.state_dict())
    gen = torch.Generator().manual_seed(1)
    x = torch.randn(BATCH, *case.inputs["x"], generator=gen) * 3 + 1
    for training in (False, True):
        twin.train(training)
        model.train(training)
        numpy_model.train(training)
        with torch.no_grad():
            want = twin(x)
            got = model(x)
        torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-5)
        out = numpy_model(x.numpy())
        assert out.dtype == np.float32
        np.testing.assert_allclose(out, want.numpy(), rtol=1e-4, atol=1e-5 * max(float(want.abs().max()), 1.0))
        for key, value in twin.state_dict().items():  # instance norm's running statistics, after training
            np.testing.assert_allclose(numpy_model.state[_ours(key)], value.numpy(), rtol=1e-5, atol=1e-6)


def test_instance_norm_uses_each_samples_statistics_in_both_modes_unless_it_tracks_them():
    """Without running statistics the two samples are normalised alone: scaling one changes nothing."""
    net = archc.loads(spec({"x": (3, 5, 4)}, "instancenorm y"), "t.arch")
    numpy_model, _, _ = build(net, "numpy")
    x = np.random.default_rng(0).standard_normal((2, 3, 5, 4)).astype(np.float32)
    scaled = x.copy()
    scaled[1] = scaled[1] * 10 + 3
    for training in (False, True):
        numpy_model.train(training)
        np.testing.assert_allclose(numpy_model(scaled)[0], numpy_model(x)[0], rtol=1e-6)
        np.testing.assert_allclose(numpy_model(scaled)[1], numpy_model(x)[1], rtol=1e-4, atol=1e-5)


def test_the_random_configurations_cover_every_option():
    stmts = [p.values[0].stmt for p in NORM_CASES]
    ranks = {len(p.values[0].inputs["x"]) for p in NORM_CASES if p.values[0].stmt.startswith("layernorm")}
    assert ranks == {1, 2, 3, 4}
    for word in ("over=", "eps=", "affine=false", "affine=true", "bias=false", "track=true", "momentum=", "groups="):
        assert any(word in s for s in stmts), word
    assert any(s == "layernorm y" for s in stmts) and any(s.startswith("layernorm y: 1") for s in stmts)


# -- the table, JSON and diagram ----------------------------------------------------------

TABLE_SPEC = """network Norms {
  input x: 32x8x8
  conv c: 32 @ 3x3 pad=1
  layernorm ln: eps=1e-6
  groupnorm gn: 8 affine=false
  instancenorm inn: affine=true track=true
  layernorm lt: 2 bias=false
}
"""


def test_json_gives_each_norm_its_settings_no_macs_and_the_receptive_field_of_its_input():
    net = archc.loads(TABLE_SPEC, "t.arch")
    layers = {layer["name"]: layer for layer in json.loads(net.table("json"))["layers"]}
    assert [layers[n]["settings"] for n in ("ln", "gn", "inn", "lt")] == [
        "over C eps 1e-06",
        "8 groups no affine",
        "affine running stats",
        "over 8x8 no bias",
    ]
    for name in ("ln", "gn", "inn", "lt"):
        assert layers[name]["macs"] == 0
        assert layers[name]["receptive_field"] == layers["c"]["receptive_field"]
    assert [layers[n]["params"] for n in ("ln", "gn", "inn", "lt")] == [64, 0, 64, 64]
    assert layers["inn"]["buffers"] == 64


def test_the_diagram_draws_norms_as_normalisation_and_folds_them():
    net = archc.loads(TABLE_SPEC, "t.arch")
    dot = to_dot(net)
    assert 'fillcolor="#fff3c4"' in dot.split('"gn" [label=')[1].split("\n")[0]
    assert "groupnorm 8 groups no affine" in dot
    folded = to_dot(net, fold=True)
    assert '"gn" [label' not in folded and "+ layernorm + groupnorm + instancenorm + layernorm" in folded


# -- bad uses -------------------------------------------------------------------------------


def error(text: str):
    errors = [d for d in diagnostics(text) if d.severity == "error"]
    assert len(errors) == 1, [d.message for d in errors]
    return errors[0]


def net(stmt: str, shape: str = "8x6x6") -> str:
    return f"network N {{\n  input x: {shape}\n  {stmt}\n}}\n"


@pytest.mark.parametrize(
    "shape, groups, build",
    [
        ((8, 6, 6), 3, lambda: nn.GroupNorm(3, 8)),
        ((12,), 5, lambda: nn.GroupNorm(5, 12)),
        ((7, 4), 2, lambda: nn.GroupNorm(2, 7)),
    ],
)
def test_groups_that_do_not_divide_the_channels_are_e0303_with_the_nearest_divisor(shape, groups, build):
    with pytest.raises(ValueError):
        build()  # torch refuses it too
    text = net(f"groupnorm g: {groups}", "x".join(map(str, shape)))
    err = error(text)
    assert err.code == "E0303" and (err.span.line, err.span.col) == (3, 16)
    assert err.help[0].startswith(f"the divisors of {shape[0]} are ")
    assert len(err.fixes) == 1 and check_fixes(text) == 1


def test_a_group_or_instance_of_one_value_is_refused_as_torch_refuses_it():
    for stmt, shape, module in [
        ("groupnorm g: 6", (6, 1, 1), nn.GroupNorm(6, 6)),
        ("groupnorm g: 4", (4,), nn.GroupNorm(4, 4)),
        ("instancenorm g", (5, 1, 1), nn.InstanceNorm2d(5)),
        ("instancenorm g: track=true", (5, 1), nn.InstanceNorm1d(5, track_running_stats=True)),
    ]:
        with pytest.raises(ValueError):
            module.train()(torch.randn(1, *shape))
        text = net(stmt, "x".join(map(str, shape)))
        err = error(text)
        assert err.code == "E0205" and "one" in err.message and "torch refuses it" in err.message
        assert check_fixes(text) == len(err.fixes)
    assert error(net("groupnorm g: 6", "6x1x1")).fixes[0].apply(net("groupnorm g: 6", "6x1x1")) == net(
        "groupnorm g: 3", "6x1x1"
    )


@pytest.mark.parametrize("stmt", ["layernorm l: 4", "layernorm l: over=5", "groupnorm g: 8\n  layernorm l: 9"])
def test_a_layer_norm_over_dimensions_that_do_not_exist_is_e0301_with_the_edits_that_work(stmt):
    text = net(stmt)
    err = error(text)
    assert err.code == "E0301" and "which has 3" in err.message and err.span.line == text.count("\n") - 1
    assert [h.split(" ")[0] for h in err.help] == ["over=3", "over=channels"]
    assert check_fixes(text) == 2


def test_a_norm_over_a_dimension_that_does_not_exist_is_located():
    err = error(net("layernorm l: over=0"))
    assert (err.code, err.span.col) == ("E0205", 16)
    err = error(net("instancenorm i", "16"))
    assert err.code == "E0301" and "before `flatten`" in err.help[0]
    assert error(net("groupnorm g: 0")).code == "E0205"


@pytest.mark.parametrize("op", ["bn b", "layernorm l", "groupnorm g: 2", "instancenorm i"])
@pytest.mark.parametrize("eps", ["0", "0.0", "0 - 1e-3"])
def test_eps_that_is_not_positive_is_e0205_with_torchs_default_as_the_edit(op, eps):
    text = net(f"{op}{':' if ':' not in op else ''} eps={eps}")
    err = error(text)
    assert err.code == "E0205" and "eps must be positive" in err.message and err.span.line == 3
    assert err.fixes[0].apply(text) == text.replace(f"eps={eps}", "eps=1e-5")
    assert check_fixes(text) == 1


def test_instance_norm_momentum_outside_0_1_is_e0205():
    assert error(net("instancenorm i: momentum=1.5 track=true")).code == "E0205"


def test_the_cli_reports_a_bad_norm_with_its_location_and_fix(tmp_path):
    path = tmp_path / "bad.arch"
    path.write_text(net("groupnorm g: 3"))
    run = subprocess.run([sys.executable, "-m", "archc", "check", str(path)], capture_output=True, text=True)
    assert run.returncode == 1 and "Traceback" not in run.stderr
    assert "bad.arch:3:16: error: groupnorm g: groups=3 does not divide the 8 channels [E0303]" in run.stderr
    assert "help: groups=2 divides the 8 channels, output 8x6x6" in run.stderr


@pytest.mark.parametrize(
    "written, meant", [("LayerNorm", "layernorm"), ("GroupNorm: 2", "groupnorm"), ("InstanceNorm2d", "instancenorm")]
)
def test_torchs_names_of_the_norms_get_archcs(written, meant):
    """These were "archc has no `layernorm` layer: ... not supported yet"."""
    text = net(written)
    err = error(text)
    assert err.code == "E0201" and err.help == [f"did you mean `{meant}`?"]
    assert check_fixes(text) == 1


@pytest.mark.parametrize(
    "written, meant",
    [
        ("LayerNormalization", "layernorm"),
        ("GroupNormalization: 2", "groupnorm"),
        ("InstanceNormalization", "instancenorm"),
    ],
)
def test_keras_names_of_the_norms_get_archcs(written, meant):
    """Keras spells them out; `LayerNormalization` was "archc has no such layer"."""
    text = net(written)
    err = error(text)
    assert err.code == "E0201" and err.help == [
        f"did you mean `{meant}`? it is archc's name for `{written.split(':')[0]}`"
    ]
    assert check_fixes(text) == 1


def test_over_channels_is_written_as_a_word_and_a_misspelling_gets_it():
    same = [archc.loads(net(stmt), "t.arch").layer("l") for stmt in ("layernorm l", "layernorm l: channels")]
    assert [OPS[layer.op].settings(layer) for layer in same] == ["over C", "over C"]
    text = net("layernorm l: chanels")
    err = error(text)
    assert err.code == "E0205" and err.help == ["did you mean `channels`?"]
    assert check_fixes(text) == 1
