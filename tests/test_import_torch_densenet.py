"""torchvision's DenseNet imported from its constructor (issue 20, item 2): torch's figures, shapes and output.

A _DenseLayer reads every feature map before it, joined by `torch.cat(prev_features, 1)` as its first
step, and the first layer joins one map alone. Before, the import refused the second layer (it reads
several tensors from outside it, and an archc block reads one) and a concat of one input. Now the join
stands before the block call and a concat of one tensor is that tensor. The truths are torch's, as in
test_import_torch.py: params, buffers, the flop counter's MACs, each submodule's shape, and the output
of archc's generated module with the model's state_dict loaded strictly by key.
"""

from __future__ import annotations

import pytest
import torch
import torchvision
from codegen_util import randomise_batch_norm
from torch.utils.flop_counter import FlopCounterMode
from torch_import_util import assert_agrees

import archc
from archc.cli import main

pytestmark = pytest.mark.filterwarnings("ignore:TF32 acceleration:UserWarning")


def test_a_small_densenet_imports_to_torchs_figures_and_output():
    torch.manual_seed(0)
    model = torchvision.models.DenseNet(growth_rate=8, block_config=(2, 3), num_init_features=16, bn_size=2)
    randomise_batch_norm(model, seed=1)
    x = torch.randn(2, 3, 64, 64, generator=torch.Generator().manual_seed(2))
    text = archc.torch_to_arch(model.eval(), x)
    assert_agrees(archc.loads(text), model, x)
    # each dense layer is a call of one block per dense block, after the join of what came before
    assert "  concat (in, denselayer1)\n  _dense_layer denselayer2\n" in text
    assert text.count("\nblock _dense_layer") == 1


def test_densenet121_imports_from_the_command_line(tmp_path):
    """`archc import torchvision.models:densenet121` writes a spec with torchvision's params and buffers,
    and the flop counter's MACs on the 3 x 224 x 224 image archc imports it at."""
    out = tmp_path / "densenet121.arch"
    assert main(["import", "torchvision.models:densenet121", "-o", str(out)]) == 0
    net = archc.load(out)
    model = torchvision.models.densenet121(weights=None)
    buffers = sum(b.numel() for name, b in model.named_buffers() if not name.endswith("num_batches_tracked"))
    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        model.eval()(torch.randn(1, 3, 224, 224))
    params = sum(p.numel() for p in model.parameters())
    assert (net.totals.params, net.totals.buffers, net.totals.macs) == (params, buffers, counter.get_total_flops() // 2)
