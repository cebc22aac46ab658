"""Record the state_dict layout of a few torchvision models as a test fixture.

Why this exists: the real torchvision models are the outside truth for the order and
shapes of parameters and buffers. Our tests compare archc-generated PyTorch models
against ``torchvision_state_dicts.json`` (beside this file) without needing torchvision
installed, so the fixture is recorded once and committed.

To regenerate, run this script in an environment that has torch and torchvision, e.g.::

    python3.11 -m venv /tmp/tvenv && /tmp/tvenv/bin/pip install torch==2.14.1 torchvision==0.29.1
    /tmp/tvenv/bin/python tests/data/make_torchvision_state_dicts.py

The committed fixture was produced with torch 2.14.1 and torchvision 0.29.1 (the exact
versions are also stored inside the JSON file). Models are built with ``weights=None``;
nothing is downloaded. Each model's full ``state_dict()`` is written in order as
``[key, shape]`` pairs (buffers included: ``running_mean``, ``running_var`` and
``num_batches_tracked``, whose shape is ``[]``), plus the total parameter count.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch
import torchvision
from torchvision import models

OUT = Path(__file__).with_name("torchvision_state_dicts.json")

BUILDERS = {
    "resnet18": lambda: models.resnet18(weights=None),
    "resnet50": lambda: models.resnet50(weights=None),
    "vgg16": lambda: models.vgg16(weights=None),
    "alexnet": lambda: models.alexnet(weights=None),
    # Without weights torchvision's GoogLeNet class would keep its two aux classifiers;
    # the reference network here is the inference one, so they are switched off.
    "googlenet": lambda: models.googlenet(weights=None, aux_logits=False, transform_input=False, init_weights=False),
    "mobilenet_v2": lambda: models.mobilenet_v2(weights=None),
}


def describe(model: torch.nn.Module) -> tuple[list[list], int]:
    """Return the ordered ``[key, shape]`` pairs of the state_dict and the parameter count."""
    entries = [[key, list(value.shape)] for key, value in model.state_dict().items()]
    params = sum(p.numel() for p in model.parameters())
    return entries, params


def render(data: dict) -> str:
    """JSON text like ``json.dumps(indent=1)``, but with each ``[key, shape]`` pair on one line."""
    lines = ["{"]
    lines.append(f' "torch": {json.dumps(data["torch"])},')
    lines.append(f' "torchvision": {json.dumps(data["torchvision"])},')
    lines.append(f' "params": {json.dumps(data["params"], indent=1).replace(chr(10), chr(10) + " ")},')
    lines.append(' "models": {')
    names = list(data["models"])
    for i, name in enumerate(names):
        lines.append(f"  {json.dumps(name)}: [")
        pairs = data["models"][name]
        for j, pair in enumerate(pairs):
            lines.append(f"   {json.dumps(pair)}" + ("," if j < len(pairs) - 1 else ""))
        lines.append("  ]" + ("," if i < len(names) - 1 else ""))
    lines.append(" }")
    lines.append("}")
    return "\n".join(lines) + "\n"


def main() -> None:
    data: dict = {
        "torch": torch.__version__,
        "torchvision": torchvision.__version__,
        "params": {},
        "models": {},
    }
    for name, build in BUILDERS.items():
        model = build().eval()
        entries, params = describe(model)
        data["models"][name] = entries
        data["params"][name] = params
        print(f"{name}: {len(entries)} state_dict entries, {params:,} parameters")
    text = render(data)
    assert json.loads(text) == json.loads(json.dumps(data)), "rendered JSON does not round-trip"
    OUT.write_text(text)
    print(f"wrote {OUT}")


if __name__ == "__main__":
    main()
