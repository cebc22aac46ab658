"""Blocks of several inputs (`block NAME(params) reads (hidden, residual) { ... }`, issue 17), and an
`embedding` that reads one id for every token (`id=0`, BERT's token type).

BERT's BertSelfOutput normalises dense(its input) + the input of the attention around it: a block
reads two inputs, named in its definition, listed at its call. Checked: both readers parse it alike and
the printer writes it back; the expansion reads the layers the call lists; the generated PyTorch
module's forward takes them (and keeps the spec's nesting and keys), and computes what a hand-written
torch module computes; the NumPy model's gradients equal torch autograd's; the ONNX model equals torch;
the diagram draws it; and every misuse is a located error.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from codegen_util import build
from test_numpy_train_sequences import check
from test_onnx_out import checked, session
from test_train_memory import compare as compare_training_memory
from torch import nn

import archc
from archc import syntax
from archc.diagnostics import ArchError
from archc.diagram import to_dot
from archc.printer import format_module

pytestmark = pytest.mark.usefixtures("one_thread")

SPEC = """
block add_norm(eps) reads (hidden, residual) {   # LayerNorm(dense(hidden) + residual)
  dense dense: residual.channels
  add (dense, residual)
  layernorm LayerNorm: 1 eps=eps
}

block sublayer(width) {
  dense up: width -> tanh
  add_norm output (up, in): 1e-5
}

network TwoInputs {
  input x: 6x8 sequence
  sublayer a: 12
  sublayer b: 5
}
"""


class AddNorm(nn.Module):
    def __init__(self, width, features):
        super().__init__()
        self.dense = nn.Linear(width, features)
        self.LayerNorm = nn.LayerNorm(features, eps=1e-5)

    def forward(self, hidden, residual):
        return self.LayerNorm(self.dense(hidden) + residual)


class Sublayer(nn.Module):
    def __init__(self, width, features=8):
        super().__init__()
        self.up = nn.Linear(features, width)
        self.output = AddNorm(width, features)

    def forward(self, x):
        return self.output(torch.tanh(self.up(x)), x)


class Reference(nn.Module):
    def __init__(self):
        super().__init__()
        self.a, self.b = Sublayer(12), Sublayer(5)

    def forward(self, x):
        return self.b(self.a(x))


def errors(text: str) -> list:
    with pytest.raises(ArchError) as info:
        archc.loads(text, "t.arch")
    return info.value.diagnostics


def test_both_readers_parse_it_and_the_printer_writes_it_back():
    tree = syntax.parse(SPEC, "t.arch")
    assert [p.name for p in tree.blocks[0].inputs] == ["hidden", "residual"]
    assert tree.blocks[1].inputs == ()
    lark = syntax.to_ast(syntax.parser().parse(SPEC), "t.arch")
    assert syntax._read_fast(SPEC, "t.arch") == lark == tree
    printed = format_module(tree)
    assert "block add_norm(eps) reads (hidden, residual) {" in printed
    assert [p.name for p in syntax.parse(printed, "t.arch").blocks[0].inputs] == ["hidden", "residual"]
    assert format_module(syntax.parse(printed, "again.arch")) == printed
    again = archc.loads(printed, "t.arch")
    assert [(n.name, n.inputs, n.shape) for n in again.layers] == [
        (n.name, n.inputs, n.shape) for n in archc.loads(SPEC, "t.arch").layers
    ]


def test_the_body_reads_the_layers_the_call_lists():
    net = archc.loads(SPEC, "t.arch")
    assert net.layer("a.output.dense").inputs == ["a.up"]
    assert net.layer("a.output.add1").inputs == ["a.output.dense", "x"]
    assert net.layer("b.output.add1").inputs == ["b.output.dense", "a.output.LayerNorm"]
    assert tuple(net.layer("a.output.dense").shape) == (6, 8)  # residual.channels
    assert "reads" not in net.layers[0].name


def test_the_pytorch_module_nests_and_computes_what_a_torch_module_computes():
    net = archc.loads(SPEC, "t.arch")
    model, gen, _ = build(net, "torch")
    assert "def forward(self, hidden, residual):" in gen.code
    torch.manual_seed(0)
    reference = Reference()
    with torch.no_grad():
        for p in reference.parameters():
            p.add_(0.1 * torch.randn_like(p))
    model.load_state_dict(reference.state_dict(), strict=True)
    x = torch.randn(3, 6, 8)
    with torch.no_grad():
        want = reference(x)
        np.testing.assert_allclose(model(x).numpy(), want.numpy(), rtol=1e-5, atol=1e-5)
    numpy_model = build(net, "numpy")[0]
    numpy_model.load_state_dict({k: v.numpy() for k, v in reference.state_dict().items()})
    np.testing.assert_allclose(numpy_model(x.numpy()), want.numpy(), rtol=1e-4, atol=1e-5)


def test_numpy_gradients_equal_torch_autograd():
    check(SPEC)
    # the same layer as both inputs, and a block of several inputs inside another
    check("""
    block both(k) reads (p, q) {
      mul m (p, q)
      dense d: k
    }
    block outer() reads (u, v) {
      both inner (v, u): 4
      add (inner, u)
    }
    network N {
      input x: 3x4 sequence
      dense y: 4 -> tanh
      both s (y, y): 4
      outer o (s, x)
    }
    """)


def test_the_onnx_model_computes_what_torch_computes():
    net = archc.loads(SPEC, "t.arch")
    tmodel = build(net, "torch")[0].eval()
    model = net.to_onnx(weights=tmodel.state_dict())
    checked(model, net)
    x = torch.randn(2, 6, 8)
    (got,) = session(model).run(None, {"x": x.numpy()})
    with torch.no_grad():
        np.testing.assert_allclose(got, tmodel(x).numpy(), rtol=1e-5, atol=1e-5)


def test_the_diagram_draws_both_inputs():
    dot = to_dot(archc.loads(SPEC, "t.arch"))
    assert "add" in dot and "LayerNorm" in dot


def test_a_call_with_the_wrong_number_of_inputs_names_them():
    (diag,) = errors(SPEC.replace("add_norm output (up, in)", "add_norm output"))
    assert diag.code == "E0209" and "exactly 2 inputs, but gets 1" in diag.message
    assert (diag.span.line, diag.span.col) == (10, 3)
    assert diag.help == ["list its inputs in parentheses: add_norm (hidden, residual)"]
    (diag,) = errors(SPEC.replace("  sublayer b: 5", "  add_norm (x, a, a): 1"))
    assert diag.code == "E0209" and "but gets 3" in diag.message


def test_an_input_named_like_a_layer_of_the_body_or_twice_or_in_is_e0204():
    diag = errors(SPEC.replace("dense dense: residual.channels", "dense residual: 8"))[0]
    assert diag.code == "E0204" and diag.message == "`residual` is defined twice"
    assert (diag.span.line, diag.notes[0][1].line, diag.notes[0][1].col) == (3, 2, 36)
    diags = errors(SPEC.replace("reads (hidden, residual)", "reads (hidden, hidden)"))
    assert {d.code for d in diags} >= {"E0204"}
    assert any(d.message == "`hidden` is defined twice" and d.span.col == 36 for d in diags)
    diags = errors(SPEC.replace("reads (hidden, residual)", "reads (in, residual)").replace("(up, in)", "(up, x)"))
    assert any(d.code == "E0204" and "`in` is reserved" in d.message for d in diags)


def test_embedding_id_reads_one_row_for_every_token():
    """nn.Embedding(2, 5) of zeros in the ids' shape: BertEmbeddings' token type for model(input_ids)."""
    text = """network T {
      input ids: 7 tokens vocab=50
      embedding tok: 5
      embedding types (ids): 5 vocab=2 id=1
      add (tok, types)
    }"""
    net = archc.loads(text, "t.arch")
    assert net.layer("types").params == 10 and tuple(net.layer("types").shape) == (7, 5)
    model = build(net, "torch")[0]
    ids = torch.randint(0, 50, (3, 7))
    with torch.no_grad():
        want = model.tok(ids) + model.types.weight[1]
        np.testing.assert_allclose(model(ids).numpy(), want.numpy(), rtol=1e-6)
        numpy_model = build(net, "numpy")[0]
        numpy_model.load_state_dict({k: v.numpy() for k, v in model.state_dict().items()})
        np.testing.assert_allclose(numpy_model(ids.numpy()), want.numpy(), rtol=1e-6)
        onnx_model = net.to_onnx(weights=model.state_dict())
        checked(onnx_model, net)
        (got,) = session(onnx_model).run(None, {"ids": ids.numpy()})
        np.testing.assert_allclose(got, want.numpy(), rtol=1e-6)
    check(text)  # the weight's gradient: every token's into row 1
    compare_training_memory(net, 2)  # what autograd keeps for it is what archc counts


def test_embedding_id_outside_the_table_is_e0205_with_a_fix():
    text = "network T {\n  input ids: 7 tokens vocab=50\n  embedding types: 5 vocab=2 id=2\n}\n"
    (diag,) = errors(text)
    assert diag.code == "E0205" and "id 2 is not a row of the table (0 to 1)" in diag.message
    assert diag.span.line == 3
    (fix,) = diag.fixes
    fixed = fix.apply(text)
    assert "id=0" in fixed
    net = archc.loads(fixed, "t.arch")
    assert not net.warnings and tuple(net.layer("types").shape) == (7, 5)
