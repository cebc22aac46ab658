"""A tied output head (`dense ... tied=LAYER`, issue 17): one weight for two layers, as GPT-2's lm_head shares
transformer.wte.weight.

The oracle is a torch module written here as Hugging Face ties weights (`lm_head.weight =
transformer.wte.weight`): its parameter count, its state_dict (both keys), its output, its autograd
gradient (the sum of both uses'), one optimiser step, and the memory torch's Adam keeps. The errors
are located, and each fix they carry, applied to the spec, gives a spec that analyses cleanly.
"""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import onnxruntime
import pytest
import torch
from codegen_util import build, load_module
from test_numpy_train_networks import compare_gradients, float64_models
from torch import nn

import archc
from archc.codegen import generate

pytestmark = pytest.mark.usefixtures("one_thread")

VOCAB, WIDTH, LENGTH = 50, 16, 12

SPEC = f"""
block body(d) {{
  embedding wte: d
  layernorm ln_f: 1
}}

network TinyLM {{
  input ids: {LENGTH} tokens vocab={VOCAB}
  body transformer: {WIDTH}
  dense lm_head: {VOCAB} bias=false tied=transformer.wte
}}
"""


class Reference(nn.Module):
    """The same model as Hugging Face writes a tied head: the Linear's weight replaced by the Embedding's."""

    def __init__(self):
        super().__init__()
        self.transformer = nn.Module()
        self.transformer.wte = nn.Embedding(VOCAB, WIDTH)
        self.transformer.ln_f = nn.LayerNorm(WIDTH)
        self.lm_head = nn.Linear(WIDTH, VOCAB, bias=False)
        self.lm_head.weight = self.transformer.wte.weight

    def forward(self, ids):
        return self.lm_head(self.transformer.ln_f(self.transformer.wte(ids)))


def reference(seed: int = 0) -> Reference:
    torch.manual_seed(seed)
    model = Reference()
    with torch.no_grad():  # a LayerNorm that is not the identity
        model.transformer.ln_f.weight.normal_()
        model.transformer.ln_f.bias.normal_()
    return model


def ids(batch: int = 3, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, VOCAB, (batch, LENGTH))


@pytest.fixture(scope="module")
def net():
    return archc.loads(SPEC, "tied.arch")


def test_the_weight_is_counted_once(net):
    ref = reference()
    assert net.totals.params == sum(p.numel() for p in ref.parameters())  # torch counts a shared one once
    layers = {row["name"]: row for row in net.to_json()["layers"]}
    assert layers["lm_head"]["params"] == 0
    assert layers["lm_head"]["tied"] == "transformer.wte"
    assert layers["transformer.wte"]["tied"] is None
    assert "tied transformer.wte" in layers["lm_head"]["settings"]


def test_training_memory_has_one_gradient_and_one_optimiser_state(net):
    """torch's Adam, after a step of the reference: one gradient and two moments for the shared weight."""
    ref = reference()
    opt = torch.optim.Adam(ref.parameters())
    ref(torch.tensor(ids())).sum().backward()
    opt.step()
    grads = sum(p.grad.numel() * 4 for p in ref.parameters())
    moments = sum(t.numel() * t.element_size() for s in opt.state.values() for t in s.values())  # and steps
    memory = net.training_memory("adam")
    assert (memory.gradients, memory.optimizer_state) == (grads, moments)


def test_pytorch_target_ties_and_loads_a_tied_state_dict_strictly(net):
    ref = reference()
    for flat in (False, True):
        model, _, _ = build(net, "torch", flat=flat)
        wte = model.transformer_wte if flat else model.transformer.wte
        assert model.lm_head.weight is wte.weight
        if not flat:
            assert list(model.state_dict()) == list(ref.state_dict())  # both keys, as torch lists them
            model.load_state_dict(ref.state_dict(), strict=True)
            model.eval()
            x = torch.tensor(ids())
            with torch.no_grad():
                torch.testing.assert_close(model(x), ref(x), rtol=1e-5, atol=1e-5)
        assert sum(p.numel() for p in model.parameters()) == net.totals.params


def test_numpy_target_loads_both_keys_and_gives_torchs_output(net):
    ref = reference()
    model = load_module(generate(net, "numpy").code).build_model()
    assert set(model.state_dict()) == set(ref.state_dict())
    assert "lm_head.weight" not in model.parameters()  # one array, stepped once
    model.load_state_dict(ref.state_dict())
    got = model(ids())
    with torch.no_grad():
        want = ref(torch.tensor(ids())).numpy()
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-5)
    state = model.state_dict()
    np.testing.assert_array_equal(state["lm_head.weight"], state["transformer.wte.weight"])
    with pytest.raises(KeyError, match=r"lm_head\.weight"):  # strict, as torch: the tied key must be there
        model.load_state_dict({k: v for k, v in ref.state_dict().items() if k != "lm_head.weight"})


def test_numpy_backward_adds_both_uses_gradients_as_autograd_does(net):
    """The generated PyTorch module (its tie checked above) as autograd's oracle, in float64 and training."""
    tmodel, nmodel = float64_models(net)
    compare_gradients(tmodel, nmodel, [ids()], np.float64, train=True)


def test_one_sgd_step_moves_the_shared_weight_once(net, tmp_path):
    ref = reference()
    module = load_module(generate(net, "numpy").code)
    model = module.build_model()
    model.load_state_dict(ref.state_dict())
    opt = module.SGD(model, lr=0.5, momentum=0.9)
    model.train()
    out = model(ids())
    model.backward(np.ones_like(out))
    opt.step()
    torch_opt = torch.optim.SGD(ref.parameters(), lr=0.5, momentum=0.9)
    ref(torch.tensor(ids())).sum().backward()
    torch_opt.step()
    for key, value in ref.state_dict().items():
        np.testing.assert_allclose(model.state_dict()[key], value.detach().numpy(), rtol=1e-5, atol=1e-6)
    model.save(tmp_path / "w.npz")  # both keys, so it loads back
    again = module.build_model(seed=3).load(tmp_path / "w.npz")
    np.testing.assert_array_equal(again(ids()), model.eval()(ids()))


def test_onnx_has_one_initialiser_for_the_shared_weight(net):
    ref = reference()
    model = net.to_onnx(weights=ref.state_dict())
    names = [init.name for init in model.graph.initializer]
    assert "transformer.wte.weight" in names and "lm_head.weight" not in names
    session = onnxruntime.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    (got,) = session.run(None, {"ids": ids()})
    with torch.no_grad():
        want = ref(torch.tensor(ids())).numpy()
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-5)


def test_the_diagram_draws_the_tie(net):
    from archc.diagram import to_dot

    dot = to_dot(net)
    assert '"transformer.wte" -> "lm_head" [label=" tied weight", style=dashed' in dot


def errors(text: str):
    with pytest.raises(archc.ArchError) as info:
        archc.loads(text, "t.arch")
    return info.value.diagnostics


def fixed(text: str, diag) -> str:
    assert diag.fixes, diag
    for fix in sorted(diag.fixes, key=lambda f: (f.span.line, f.span.col), reverse=True):
        text = fix.apply(text)
    return text


def test_a_misspelt_layer_is_e0202_with_the_name_as_a_fix():
    text = SPEC.replace("tied=transformer.wte", "tied=transformer.wtf")
    (diag,) = errors(text)
    assert diag.code == "E0202" and diag.span.line == 10
    net = archc.loads(fixed(text, diag), "t.arch")
    assert net.totals.params == sum(p.numel() for p in reference().parameters())
    assert not net.warnings


def test_a_layer_defined_below_is_e0203():
    text = """
network Below {
  input ids: 8 tokens vocab=10
  embedding e: 4
  dense head: 10 tied=later
  embedding later (ids): 4
}
"""
    (diag,) = errors(text)
    assert diag.code == "E0203"


def test_units_that_differ_from_the_tables_rows_are_e0308_with_the_units_that_fit():
    text = SPEC.replace(f"dense lm_head: {VOCAB}", "dense lm_head: 40")
    (diag,) = errors(text)
    assert diag.code == "E0308"
    assert (diag.span.line, diag.span.col) == (10, 32)  # at `tied=wte`
    after = archc.loads(fixed(text, diag), "t.arch")
    assert not after.warnings
    assert after.layer("lm_head").shape == (LENGTH, VOCAB)  # the output the help promises
    assert f"output {LENGTH}x{VOCAB}" in diag.help[0]
    with torch.no_grad():
        assert reference()(torch.tensor(ids())).shape[1:] == after.layer("lm_head").shape


def test_an_input_of_another_width_is_e0308():
    text = SPEC.replace("layernorm ln_f: 1", "layernorm ln_f: 1\n  dense proj: 8")
    (diag,) = errors(text)
    assert diag.code == "E0308"
    assert "8" in diag.message and f"{VOCAB}x{WIDTH}" in diag.message
    assert any(f"{WIDTH} features" in h for h in diag.help)


def test_a_layer_without_a_weight_to_share_is_e0308():
    (diag,) = errors(SPEC.replace("tied=transformer.wte", "tied=transformer.ln_f"))
    assert diag.code == "E0308" and "no weight to share" in diag.message


@pytest.mark.parametrize("value", ["3", "2x2", "(0,1)"])
def test_a_value_that_names_no_layer_is_e0205(value):
    (diag,) = errors(SPEC.replace("tied=transformer.wte", f"tied={value}"))
    assert diag.code == "E0205" and diag.span.line == 10


def test_the_cli_reports_it_located_with_exit_1(tmp_path):
    path = tmp_path / "t.arch"
    path.write_text(SPEC.replace(f"dense lm_head: {VOCAB}", "dense lm_head: 40"))
    run = subprocess.run([sys.executable, "-m", "archc", "check", str(path)], capture_output=True, text=True)
    assert run.returncode == 1
    assert f"{path}:10:32: error:" in run.stderr and "[E0308]" in run.stderr
    assert "Traceback" not in run.stderr


def test_json_of_the_cli(tmp_path):
    path = tmp_path / "t.arch"
    path.write_text(SPEC)
    run = subprocess.run(
        [sys.executable, "-m", "archc", "table", str(path), "--format", "json"], capture_output=True, text=True
    )
    assert run.returncode == 0, run.stderr
    rows = {r["name"]: r for r in json.loads(run.stdout)["layers"]}
    assert rows["lm_head"]["params"] == 0 and rows["lm_head"]["tied"] == "transformer.wte"


def test_an_unknown_member_of_a_block_instance_is_e0202_not_e0203():
    """Found with the tie: `(transformer.ln_g)`, transformer being defined above, was "used before it is
    defined"; it is an unknown layer, whose closest name is the fix (inputs and `tied=` alike)."""
    text = SPEC.replace("dense lm_head", "add (transformer.ln_g, transformer)\n  dense lm_head")
    (diag,) = errors(text)
    assert diag.code == "E0202" and "transformer.ln_f" in diag.help[0]
    archc.loads(fixed(text, diag), "t.arch")


def test_a_layer_tied_to_a_tied_layer_shares_the_first_ones_weight():
    """A chain of ties is one weight: counted once, one parameter in torch, one array in NumPy whose gradient
    is the sum of all three uses' (the generated PyTorch module, autograd, as the oracle)."""
    text = f"""
network Chain {{
  input ids: {LENGTH} tokens vocab={VOCAB}
  embedding wte: {WIDTH}
  dense a: {VOCAB} bias=false tied=wte
  layernorm ln (wte): 1
  dense b: {VOCAB} tied=a
  add (a, b)
}}
"""
    net = archc.loads(text, "chain.arch")
    assert net.totals.params == VOCAB * WIDTH + 2 * WIDTH + VOCAB
    torch.manual_seed(0)
    tmodel, _, _ = build(net, "torch")
    assert tmodel.b.weight is tmodel.wte.weight and sum(p.numel() for p in tmodel.parameters()) == net.totals.params
    tmodel.double()
    nmodel = load_module(generate(net, "numpy").code).build_model()
    nmodel.load_state_dict({k: v.detach().numpy().copy() for k, v in tmodel.state_dict().items()})
    nmodel.state = {k: v.astype(np.float64) for k, v in nmodel.state.items()}
    compare_gradients(tmodel, nmodel, [ids()], np.float64, train=True)
    names = [init.name for init in net.to_onnx().graph.initializer]
    assert names.count("wte.weight") == 1 and "a.weight" not in names and "b.weight" not in names
