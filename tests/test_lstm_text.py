"""specs/lstm_text_classifier.arch against the torch module a person writes for it (issue 17).

The reference: nn.Embedding(20000, 128, padding_idx=0) over the token ids, a bidirectional
nn.LSTM(batch_first=True), the final states of both directions side by side
(`torch.cat((h_n[-2], h_n[-1]), 1)`), dropout and a linear layer. Its parameters and MACs (torch's
flop counter on its native kernels, oneDNN off) must be archc's; its state_dict loads strictly into
the generated PyTorch and NumPy models, which give its output within 1e-4 in eval mode; and the NumPy
model trains as it does: a few SGD steps from the same weights give the same losses and weights.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F  # noqa: N812 (the usual torch spelling)
from codegen_util import build, load_module, measured
from torch import nn

import archc
from archc.codegen import generate

pytestmark = [pytest.mark.usefixtures("one_thread"), pytest.mark.filterwarnings("ignore:TF32 acceleration:UserWarning")]
SPEC = Path(__file__).resolve().parent.parent / "specs" / "lstm_text_classifier.arch"


class TextClassifier(nn.Module):
    def __init__(self, dropout: float = 0.5):
        super().__init__()
        self.embedding = nn.Embedding(20000, 128, padding_idx=0)
        self.lstm = nn.LSTM(128, 128, batch_first=True, bidirectional=True)
        self.drop = nn.Dropout(dropout)
        self.fc = nn.Linear(256, 2)

    def forward(self, ids):  # (N, L) token ids
        _output, (h_n, _c_n) = self.lstm(self.embedding(ids))
        return self.fc(self.drop(torch.cat((h_n[-2], h_n[-1]), 1)))


def ids(batch: int, length: int, seed: int) -> torch.Tensor:
    out = torch.randint(0, 20000, (batch, length), generator=torch.Generator().manual_seed(seed))
    out[:, -3:] = 0  # padding at the end of every review
    return out


def test_params_macs_and_outputs_are_the_torch_modules():
    net = archc.load(SPEC)
    torch.manual_seed(0)
    reference = TextClassifier().eval()
    x = ids(2, 200, 1)
    assert measured(reference, x[:1]) == (net.totals.params, net.totals.buffers, net.totals.macs)
    with torch.no_grad():
        expected = reference(x)
    assert tuple(expected.shape[1:]) == net.layer("fc").shape
    model = build(net, "torch")[0]
    model.load_state_dict(reference.state_dict(), strict=True)
    with torch.no_grad():
        np.testing.assert_allclose(model.eval()(x).numpy(), expected.numpy(), rtol=1e-4, atol=1e-5)
    numpy_model = build(net, "numpy")[0]
    numpy_model.load_state_dict({key: value.numpy() for key, value in reference.state_dict().items()})
    np.testing.assert_allclose(numpy_model.eval()(x.numpy()), expected.numpy(), rtol=1e-4, atol=1e-5)


def test_the_numpy_model_trains_as_torch_does():
    """Three SGD steps (dropout 0, float64, 12 tokens) from the reference's weights: the same loss at
    every step and the same weights after, the padding row untouched."""
    text = SPEC.read_text().replace("dropout   drop: 0.5", "dropout   drop: 0")
    net = archc.loads(text, SPEC.name, inputs={"ids": (12,)})
    torch.manual_seed(0)
    reference = TextClassifier(dropout=0).double()
    module = load_module(generate(net, "numpy").code)
    model = module.build_model()
    model.state = {k: v.detach().numpy().copy() for k, v in reference.state_dict().items()}
    opt, torch_opt = module.SGD(model, lr=0.5), torch.optim.SGD(reference.parameters(), lr=0.5)
    model.train(), reference.train()
    for step in range(3):
        x, y = ids(4, 12, step), torch.tensor([0, 1, 1, 0])
        torch_opt.zero_grad()
        want = F.cross_entropy(reference(x), y)
        want.backward()
        torch_opt.step()
        opt.zero_grad()
        loss, grad = module.cross_entropy(model(x.numpy()), y.numpy())
        assert model.backward(grad) is None  # token ids have no gradient
        opt.step()
        np.testing.assert_allclose(loss, want.item(), rtol=1e-9)
    for key, value in reference.state_dict().items():
        np.testing.assert_allclose(model.state[key], value.numpy(), rtol=1e-7, atol=1e-10, err_msg=key)
    assert not model.state["embedding.weight"][0].any()
