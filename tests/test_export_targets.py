"""Issue 16: the generated PyTorch module of every bundled spec works with the tools around PyTorch:
torch.compile(fullgraph=True), torch.export.export, torch.jit.script and ONNX export (checked by
onnx.checker, and run by onnxruntime), each giving the eager module's output.

The module is written to a file and imported, as a user's is (torch.jit.script reads the source).
Specs run at small inputs (the spec's input override), so the whole file stays quick.
"""

from __future__ import annotations

import importlib.util

import onnx
import onnxruntime
import pytest
import torch
from conftest import SPECS
from test_codegen_random import inputs as random_inputs

import archc
from archc.codegen import generate

SMALL = {  # spec: per-sample input shape to run it at (absent: the spec's own)
    "alexnet": (3, 64, 64),
    "alexnet_caffe": (3, 67, 67),
    "convnext_tiny": (3, 32, 32),
    "efficientnet_b0": (3, 32, 32),
    "googlenet": (3, 64, 64),
    "mobilenet_v2": (3, 32, 32),
    "mobilenet_v3_small": (3, 32, 32),
    "regnet_y_400mf": (3, 32, 32),
    "resnet18": (3, 32, 32),
    "resnet50": (3, 32, 32),
    "shufflenet_v2_x1_0": (3, 32, 32),
    "vgg16": (3, 32, 32),
    "bert_base": (16,),
    "gpt2": (16,),
    "lstm_text_classifier": (20,),
}
ALL = sorted(p.stem for p in SPECS.glob("*.arch"))


def _close(got, want) -> bool:
    """Within 1e-4 relative, or 1e-5 of the output's largest value: rounding grows with the values a network
    sums (GPT-2's logits from random weights reach 500, where ONNX Runtime and torch differ by 2e-4)."""
    got = got if isinstance(got, tuple | list) else (got,)
    want = want if isinstance(want, tuple | list) else (want,)
    return len(got) == len(want) and all(
        torch.allclose(torch.as_tensor(g), w, rtol=1e-4, atol=1e-5 * max(1.0, float(w.abs().max())))
        for g, w in zip(got, want)
    )


@pytest.fixture(scope="module", params=ALL)
def case(request, tmp_path_factory):
    """(model in eval mode, its inputs, its eager output, its exported program)."""
    spec = request.param
    net = archc.load(SPECS / f"{spec}.arch")
    if spec in SMALL:
        net = archc.load(SPECS / f"{spec}.arch", inputs={next(iter(net.inputs)): SMALL[spec]})
    path = tmp_path_factory.mktemp("export") / f"{spec}_torch.py"
    path.write_text(generate(net, "torch").code, encoding="utf-8")
    loader = importlib.util.spec_from_file_location(path.stem, path)
    module = importlib.util.module_from_spec(loader)
    loader.loader.exec_module(module)
    torch.manual_seed(0)
    model = module.build_model().eval()
    inputs = tuple(random_inputs(net, 2, torch.Generator().manual_seed(0)))  # token ids for an input of tokens
    with torch.no_grad():
        want = model(*inputs)
        program = torch.export.export(model, inputs)
    return model, inputs, want, program


def test_torch_export_gives_the_modules_output(case):
    _model, inputs, want, program = case
    with torch.no_grad():
        assert _close(program.module()(*inputs), want)


@pytest.mark.filterwarnings("ignore:`torch.jit.script` is deprecated:FutureWarning")  # still asked for by users
def test_torch_jit_script_gives_the_modules_output(case):
    model, inputs, want, _program = case
    with torch.no_grad():
        assert _close(torch.jit.script(model)(*inputs), want)


def test_torch_compile_traces_the_whole_module_in_one_graph(case):
    model, inputs, want, _program = case
    torch._dynamo.reset()
    # Dynamo refuses nn.LSTM and nn.GRU unless asked (its "experimental support", torch 2.14)
    with torch.no_grad(), torch._dynamo.config.patch(allow_rnn=True):
        assert _close(torch.compile(model, backend="eager", fullgraph=True)(*inputs), want)


def test_onnx_export_passes_the_checker_and_onnxruntime_gives_the_modules_output(case):
    _model, inputs, want, program = case
    proto = torch.onnx.export(program, dynamo=True, optimize=False, verbose=False).model_proto
    onnx.checker.check_model(proto, full_check=True)
    session = onnxruntime.InferenceSession(proto.SerializeToString(), providers=["CPUExecutionProvider"])
    got = session.run(None, {arg.name: x.numpy() for arg, x in zip(session.get_inputs(), inputs)})
    assert _close(tuple(got), want)
