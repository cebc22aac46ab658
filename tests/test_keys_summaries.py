"""Issue 16, depth-1 summaries: `torchinfo.summary(model, depth=1)` of a generated module lists the
rows torchvision's model lists: the same names, in the same order, of the same types.

The outside truth is torchvision's own model, summarised by torchinfo. Where the types cannot agree
the names still must: RegNet's stem is torchvision's SimpleStemIN and its trunk a Sequential of
named stages (a spec's block is a class of its own), and ConvNeXt's classifier holds a LayerNorm2d,
a class torch does not have (the spec's block computes it, so it is a class too). VGG-16 is left out:
torchvision's has an avgpool (to 7x7, which it already is at 224x224) that the published network,
whose activation count tests/test_specs.py checks against figures.md, does not have.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
import torchinfo
import torchvision
from codegen_util import build

import archc

SPECS = Path(__file__).resolve().parent.parent / "specs"
TORCHVISION = [
    "alexnet",
    "resnet18",
    "resnet50",
    "googlenet",
    "mobilenet_v2",
    "efficientnet_b0",
    "mobilenet_v3_small",
    "shufflenet_v2_x1_0",
    "regnet_y_400mf",
    "convnext_tiny",
]
NAMES_ONLY = {"regnet_y_400mf", "convnext_tiny"}


def _rows(model: torch.nn.Module) -> list[tuple[str, str]]:
    summary = torchinfo.summary(model.eval(), input_size=(1, 3, 64, 64), depth=1, verbose=0)
    return [(row.var_name, row.class_name) for row in summary.summary_list if row.depth == 1]


def _torchvision(spec: str) -> torch.nn.Module:
    extra = {"aux_logits": False, "init_weights": False} if spec == "googlenet" else {}
    return getattr(torchvision.models, spec)(weights=None, **extra)


@pytest.fixture
def no_init(monkeypatch):
    """Modules made without drawing their weights (138M of VGG's, twice): a summary reads none."""
    for name in dir(torch.nn.init):
        if name.endswith("_") and not name.startswith("_"):
            monkeypatch.setattr(torch.nn.init, name, lambda tensor, *args, **kwargs: tensor)


@pytest.mark.parametrize("spec", TORCHVISION)
def test_a_depth_1_summary_lists_torchvisions_rows(spec, no_init):
    model, _, _ = build(archc.load(SPECS / f"{spec}.arch"), "torch")
    ours, theirs = _rows(model), _rows(_torchvision(spec))
    if spec in NAMES_ONLY:
        ours, theirs = [name for name, _ in ours], [name for name, _ in theirs]
    assert ours == theirs


def test_resnet50s_summary_is_torchvisions_ten_rows(no_init):
    model, gen, _ = build(archc.load(SPECS / "resnet50.arch"), "torch")
    assert [name for name, _ in _rows(model)] == [
        "conv1",
        "bn1",
        "relu",
        "maxpool",
        "layer1",
        "layer2",
        "layer3",
        "layer4",
        "avgpool",
        "fc",
    ]
    assert "x = torch.flatten(x, 1)" in gen.code and "nn.Flatten" not in gen.code


FORMS = """network N {{
  input x: 4x6x6
  conv c: 4 @ 3x3
  {pool}
  {flatten}
  dense fc: 3
}}
"""


@pytest.mark.parametrize(
    ("pool", "flatten", "children"),
    [
        ("globalavgpool", "flatten", ["c", "fc"]),
        ("globalavgpool avgpool", "flatten", ["c", "avgpool", "fc"]),
        ("globalmaxpool", "flatten f", ["c", "f", "fc"]),
    ],
)
def test_a_named_pool_or_flatten_is_a_module_and_an_unnamed_one_is_computed_in_forward(pool, flatten, children):
    """Either way the same values: the NumPy model (the same weights) computes what torch does."""
    net = archc.loads(FORMS.format(pool=pool, flatten=flatten), "t.arch")
    model, _, _ = build(net, "torch")
    assert [name for name, _ in model.named_children()] == children
    numpy_model, _, _ = build(net, "numpy")
    numpy_model.load_state_dict({k: v.numpy() for k, v in model.state_dict().items()})
    x = torch.randn(2, 4, 6, 6)
    with torch.no_grad():
        want = model(x)
    assert torch.allclose(torch.from_numpy(numpy_model(x.numpy())), want, atol=1e-6)
    torch_pool = torch.nn.AdaptiveMaxPool2d(1) if "max" in pool else torch.nn.AdaptiveAvgPool2d(1)
    with torch.no_grad():
        direct = model.fc(torch.flatten(torch_pool(model.c(x)), 1))
    assert torch.allclose(direct, want, atol=1e-6)
