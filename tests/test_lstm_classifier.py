"""specs/lstm_classifier.arch against the torch module a person writes for it.

The reference is the usual text classifier: nn.LSTM(batch_first=True) over the embedded
words, the last layer's final states of both directions side by side
(`torch.cat((h_n[-2], h_n[-1]), 1)`), dropout and a linear layer. Its parameters, MACs
(torch's flop counter on its native kernels) and output shape must be archc's; its
state_dict must load strictly into the generated PyTorch and NumPy models, which then
give its output within 1e-4 in eval mode.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from codegen_util import build, measured
from torch import nn

import archc

SPEC = Path(__file__).resolve().parent.parent / "specs" / "lstm_classifier.arch"


class Classifier(nn.Module):
    def __init__(self):
        super().__init__()
        self.encoder = nn.LSTM(300, 256, num_layers=2, batch_first=True, dropout=0.5, bidirectional=True)
        self.drop = nn.Dropout(0.5)
        self.fc = nn.Linear(512, 2)

    def forward(self, words):  # (N, 300 features, 200 steps), as the spec's input
        _output, (h_n, _c_n) = self.encoder(words.transpose(1, 2))
        return self.fc(self.drop(torch.cat((h_n[-2], h_n[-1]), 1)))


def test_the_lstm_classifier_is_the_torch_module_a_person_writes():
    net = archc.load(SPEC)
    torch.manual_seed(0)
    reference = Classifier().eval()
    x = torch.randn(2, 300, 200)
    assert measured(reference, x[:1]) == (net.totals.params, net.totals.buffers, net.totals.macs)
    with torch.no_grad():
        expected = reference(x)
    assert tuple(expected.shape[1:]) == net.layer("fc").shape
    model, _gen, _file = build(net, "torch")
    model.load_state_dict(reference.state_dict(), strict=True)
    with torch.no_grad():
        np.testing.assert_allclose(model.eval()(x).numpy(), expected.numpy(), rtol=1e-4, atol=1e-5)
    numpy_model, _gen, _file = build(net, "numpy")
    numpy_model.load_state_dict({key: value.numpy() for key, value in reference.state_dict().items()})
    np.testing.assert_allclose(numpy_model.eval()(x.numpy()), expected.numpy(), rtol=1e-4, atol=1e-5)
