"""torchvision's models imported from their constructors (issue 20, item 2): torch's figures, shapes and output.

Each model is built with random weights (weights=None) and non-trivial batch-norm
statistics, imported with `archc.torch_to_arch`, and the spec must give what torch
measures on the module itself: params, buffers and MACs (flop counter / 2), every
submodule's output shape (forward hooks), and, with the module's state_dict loaded
strictly by key into archc's generated PyTorch module, the same output within 1e-5.
"""

from __future__ import annotations

import pytest
import torch
import torchvision
from codegen_util import randomise_batch_norm
from torch_import_util import assert_agrees

import archc

# torch.backends.mkldnn.flags() (torch_import_util.measure) sets oneDNN's TF32 switch too, and warns
pytestmark = pytest.mark.filterwarnings("ignore:TF32 acceleration:UserWarning")

MODELS = {
    "resnet18": {},
    "resnet50": {},
    "mobilenet_v2": {},
    "googlenet": {"aux_logits": False, "init_weights": False},
    "vgg16": {},
    "alexnet": {},
    "efficientnet_b0": {},
    "vit_b_16": {},
}


def _model(name: str) -> torch.nn.Module:
    torch.manual_seed(0)
    model = getattr(torchvision.models, name)(weights=None, **MODELS[name])
    randomise_batch_norm(model, seed=1)
    return model.eval()


@pytest.fixture(scope="module", params=sorted(MODELS))
def imported(request):
    model = _model(request.param)
    x = torch.randn(1, 3, 224, 224, generator=torch.Generator().manual_seed(2))
    text = archc.torch_to_arch(model, x)
    return request.param, model, x, text, archc.loads(text)


def test_the_imported_model_has_torchs_figures_shapes_and_output(imported):
    _name, model, x, _text, net = imported
    assert_agrees(net, model, x)


def test_module_classes_used_again_are_one_block_called_again(imported):
    """Instances of one module class and structure are calls of one block: far fewer blocks than instances."""
    name, model, _x, text, _net = imported
    instances = sum(1 for n, m in model.named_modules() if n and list(m.children()))
    blocks = text.count("\nblock ")
    repeated = {"resnet18", "resnet50", "mobilenet_v2", "googlenet", "efficientnet_b0", "vit_b_16"}
    assert blocks <= instances
    if name in repeated:
        assert blocks * 2 < instances, (blocks, instances)


def test_resnet50_reads_like_the_bundled_spec():
    """Runs of identical bottlenecks are a repeat whose count is a parameter of the stage block."""
    text = archc.torch_to_arch(_model("resnet50"), torch.randn(1, 3, 224, 224))
    assert "block bottleneck(" in text
    assert "repeat n {" in text
    for stage, (width, count) in {1: (64, 2), 2: (128, 3), 3: (256, 5), 4: (512, 2)}.items():
        call = next(line for line in text.splitlines() if f" layer{stage}:" in line)
        assert call.split(":")[1].split()[0] == str(width) and call.split()[-1] == str(count), call


def test_from_torch_gives_the_network():
    model = _model("resnet18")
    net = archc.from_torch(model, torch.randn(1, 3, 224, 224), batch=4)
    assert net.batch == 4
    assert net.totals.params == sum(p.numel() for p in model.parameters())
    assert net.layer("layer4.1.conv2").shape == (512, 7, 7)
