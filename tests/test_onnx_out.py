"""The ONNX target (`archc codegen --target onnx`, `Network.to_onnx`) against PyTorch and onnxruntime.

The outside truths: onnx's checker and shape inference (every layer's value has archc's
shape, with the batch dimension `N`), onnxruntime running the file, and the generated
PyTorch module in eval mode, loaded with the ONNX initialisers by key (strict), whose
output and every layer's value onnxruntime must give within 1e-5 relative. Networks:
every spec in specs/ (at 64x64 where large, vit_b_16 shrunk) and the random networks of
test_codegen_random.py, which use every layer type and every activation shorthand.
"""

from __future__ import annotations

import copy
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch
from codegen_util import build, load_module, randomise_batch_norm, traced
from test_codegen_random import SEEDS, inputs, random_spec

import archc
from archc.cli import main
from archc.codegen import generate
from archc.codegen.onnx_target import OPSET, WeightsError, to_onnx
from archc.ops import OPS, Op

ROOT = Path(__file__).resolve().parent.parent
SPECS = sorted((ROOT / "specs").glob("*.arch"))
SMALL = 64  # the side of an image input in the spec tests: the figures do not need 224


# specs whose sizes are written in them, not only their input's: the sizes a test affords, by text
SHRUNK = {
    "vit_b_16": {"3x224x224": "3x32x32", "768": "48", "12  12     3072": "2   4      96", "1000": "10"},
    "bert_base": {
        "512 tokens vocab=30522": "9 tokens vocab=50",
        "30522 768  512": "50    48   16",
        "12  12     3072": "2   4      96",
    },
    "gpt2": {
        "1024 tokens vocab=50257": "9 tokens vocab=50",
        "768    1024       12  12     3072": "48     16         2   4      96",
        "dense lm_head: 50257": "dense lm_head: 50",
    },
}


def load_small(spec: Path):
    """The spec at SMALL x SMALL where its image is larger, or with the sizes SHRUNK gives it."""
    if spec.stem in SHRUNK:
        text = spec.read_text()
        for big, small in SHRUNK[spec.stem].items():
            assert big in text, (spec.name, big)
            text = text.replace(big, small)
        return archc.loads(text, spec.name)
    net = archc.load(spec)
    small = {k: (s[0], SMALL, SMALL) for k, s in net.inputs.items() if len(s) == 3 and s[1] > SMALL}
    return archc.load(spec, inputs=small or None)


def value_name(model, layer: str) -> str:
    """The ONNX value of a layer: its name, or `<name>/out` where a bare parameter's key holds the name."""
    return layer if layer not in {i.name for i in model.graph.initializer} else f"{layer}/out"


def checked(model, net) -> dict[str, list]:
    """Run onnx's full check, and its strict shape inference; every layer's inferred shape, which must be archc's."""
    onnx.checker.check_model(model, full_check=True)
    inferred = onnx.shape_inference.infer_shapes(model, check_type=True, strict_mode=True)
    shapes = {}
    for v in [*inferred.graph.input, *inferred.graph.value_info, *inferred.graph.output]:
        shapes[v.name] = [d.dim_param or d.dim_value for d in v.type.tensor_type.shape.dim]
    for node in net.layers:
        name = value_name(model, node.name)
        batch = "N" if node.shape.batched else 1  # a tensor the batch shares: a param, positions' vectors
        assert shapes[name] == [batch, *node.shape], (node.name, shapes[name], node.shape)
    return shapes


def session(model, every_layer: bool = False):
    """An onnxruntime session; with `every_layer`, every layer's value is an output too."""
    if every_layer:
        model = copy.deepcopy(model)
        listed = {o.name for o in model.graph.output} | {i.name for i in model.graph.input}
        for node in model.graph.node:
            for out in node.output:
                if "/" not in out.removesuffix("/out") and out not in listed:  # a layer's value, not a step of one
                    model.graph.output.append(onnx.helper.make_empty_tensor_value_info(out))
    options = ort.SessionOptions()
    options.log_severity_level = 3  # not the warning about batch norm's unused num_batches_tracked
    return ort.InferenceSession(model.SerializeToString(), options, providers=["CPUExecutionProvider"])


def torch_model(net, model, flat: bool = True):
    """The generated PyTorch module with the ONNX file's initialisers, by key and strictly, in eval mode."""
    tmodel, gen, filename = build(net, "torch", flat=flat)
    state = {i.name: torch.from_numpy(onnx.numpy_helper.to_array(i).copy()) for i in model.graph.initializer}
    tmodel.load_state_dict(state, strict=True)
    return tmodel.eval(), gen, filename


def close(got, want, message: str) -> None:
    """onnxruntime's value against torch's: within 1e-5 relative, to the largest value of the tensor."""
    want = want.detach().numpy()  # a learned tensor (a param) is its parameter
    scale = max(float(np.abs(want).max()), 1.0) if want.size else 1.0
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5 * scale, err_msg=message)


def inputs_for(net, batch: int, seed: int) -> list:
    """Normal values, or token ids below the vocabulary (int64, as the ONNX inputs take them)."""
    return inputs(net, batch, torch.Generator().manual_seed(seed))


def compare(net, model, seed: int, text: str = "") -> None:
    """onnxruntime gives torch's value for every layer and every output, at batch 2."""
    tmodel, gen, filename = torch_model(net, model)
    xs = inputs_for(net, 2, seed)
    with torch.no_grad():
        tout, want = traced(tmodel, gen, filename, *xs)
    sess = session(model, every_layer=True)
    names = [o.name for o in sess.get_outputs()]
    got = dict(zip(names, sess.run(None, {n: x.numpy() for n, x in zip(net.inputs, xs)})))
    outputs = net.graph.outputs
    tout = (tout,) if len(outputs) == 1 else tout
    for node, t in zip(outputs, tout):
        close(got[value_name(model, node.name) if node.op != "input" else node.name], t, f"output {node.name}\n{text}")
    for layer, value in want.items():
        close(got[value_name(model, layer)], value, f"{layer}\n{text}")


@pytest.mark.parametrize("seed", SEEDS)
def test_random_networks_run_in_onnxruntime_as_in_torch(seed):
    """Weights from torch with non-trivial batch norm statistics, passed as a state dict."""
    text = random_spec(seed)
    net = archc.loads(text, f"random{seed}.arch")
    torch.manual_seed(seed)
    tmodel, _, _ = build(net, "torch", flat=True)
    randomise_batch_norm(tmodel, seed)
    model = to_onnx(net, weights=tmodel.state_dict(), flat=True)
    checked(model, net)
    compare(net, model, seed, text)


@pytest.mark.parametrize("spec", SPECS, ids=[p.stem for p in SPECS])
def test_every_spec_runs_in_onnxruntime_as_in_torch(spec):
    """The nested keys (`layer1.0.conv1.weight`), the NumPy target's initial weights, batch norm's
    running statistics made non-trivial through a state dict; at 64x64 where the input is larger."""
    net = load_small(spec)
    tmodel = build(net, "torch")[0]
    randomise_batch_norm(tmodel, 1)
    model = net.to_onnx(weights=tmodel.state_dict())
    checked(model, net)
    xs = inputs_for(net, 2, 0)
    with torch.no_grad():
        want = tmodel.eval()(*xs)
    want = want if isinstance(want, tuple) else (want,)
    got = session(model).run(None, {n: x.numpy() for n, x in zip(net.inputs, xs)})
    assert [o.name for o in model.graph.output] == [n.name for n in net.graph.outputs]
    for node, g, w in zip(net.graph.outputs, got, want):
        close(g, w, f"{spec.name}: {node.name}")


REAL = ROOT / "tests" / "data" / "realspecs"
REAL_FILES = {  # real Darknet and Caffe files (tests/data/realspecs), at 64x64 where that is valid and cheaper
    "darknet/pjreddie/yolov3-tiny.cfg": 64,  # route (concat), upsample
    "darknet/alexeyab/yolov4-tiny.cfg": 64,  # route groups (chunk)
    "darknet/pjreddie/yolov2.cfg": 64,  # reorg (space_to_depth)
    "caffe/bvlc_googlenet_deploy.prototxt": None,  # LRN, ceil-mode pools; its last pool needs 224
}


@pytest.mark.parametrize("file", REAL_FILES, ids=[Path(f).stem for f in REAL_FILES])
def test_real_darknet_and_caffe_files_run_in_onnxruntime_as_in_torch(file):
    net = archc.load(REAL / file)
    side = REAL_FILES[file]
    if side:
        net = archc.load(REAL / file, inputs={k: (s[0], side, side) for k, s in net.inputs.items()})
    tmodel = build(net, "torch", flat=True)[0]
    randomise_batch_norm(tmodel, 2)
    model = to_onnx(net, weights=tmodel.state_dict(), flat=True)
    checked(model, net)
    compare(net, model, 2, file)


def test_every_layer_type_has_onnx_code_of_its_own():
    """An op without one would raise NotImplementedError; the random networks run each (see their test)."""
    missing = [name for name, op in OPS.items() if name != "input" and type(op).onnx_call is Op.onnx_call]
    assert missing == []


def test_the_initialisers_are_the_numpy_targets_initial_weights_by_key():
    net = archc.load(ROOT / "specs" / "resnet18.arch", inputs={"image": (3, 32, 32)})
    for flat in (False, True):
        numpy_model = load_module(generate(net, "numpy", flat=flat).code).build_model(seed=3)
        torch_keys = build(net, "torch", flat=flat)[0].state_dict().keys()
        model = to_onnx(net, seed=3, flat=flat)
        found = {i.name: onnx.numpy_helper.to_array(i) for i in model.graph.initializer}
        want = numpy_model.state_dict()
        assert list(found) == list(want) and set(found) == set(torch_keys)
        for key, value in want.items():
            assert found[key].dtype == value.dtype and np.array_equal(found[key], value), key
    other = {i.name: onnx.numpy_helper.to_array(i) for i in to_onnx(net, seed=4).graph.initializer}
    assert not np.array_equal(other["conv1.weight"], found["conv1.weight"])


def test_names_opset_and_a_dynamic_batch():
    net = archc.load(ROOT / "specs" / "lenet5.arch")
    model = net.to_onnx()
    assert [(o.domain, o.version) for o in model.opset_import] == [("", OPSET)]
    assert [i.name for i in model.graph.input] == ["image"] and [o.name for o in model.graph.output] == ["out"]
    tmodel = torch_model(net, model)[0]
    sess = session(model)
    for batch in (1, 5):
        x = inputs_for(net, batch, batch)[0]
        (got,) = sess.run(None, {"image": x.numpy()})
        with torch.no_grad():
            close(got, tmodel(x), f"batch {batch}")


def test_export_is_eval_mode_batch_norm_running_statistics_dropout_identity():
    text = """network E {
  input x: 4x6x6
  conv c: 8 @ 3 pad=1
  bn b -> relu
  dropout: 0.5
  drop_path: 0.5
  instancenorm i: affine=true track=true
  flatten
  dense out: 3
}
"""
    net = archc.loads(text, "e.arch")
    tmodel, _, _ = build(net, "torch", flat=True)
    with torch.no_grad():
        for m in tmodel.modules():
            if hasattr(m, "running_mean") and m.running_mean is not None:
                m.running_mean.uniform_(-1, 1)
                m.running_var.uniform_(0.5, 2)
    model = to_onnx(net, weights=tmodel.state_dict(), flat=True)
    x = inputs_for(net, 4, 0)[0]
    sess = session(model)
    first, second = (sess.run(None, {"x": x.numpy()})[0] for _ in range(2))
    assert np.array_equal(first, second)  # nothing random: dropout and drop_path are the identity
    with torch.no_grad():
        close(first, tmodel.eval()(x), "eval")
        trained = tmodel.train()(x)
    assert not np.allclose(first, trained.numpy(), rtol=1e-3)  # in training, batch statistics and dropout


def test_it_does_not_import_torch():
    code = (
        "import sys; sys.modules['torch'] = None\n"
        "import archc\n"
        "model = archc.load('specs/mobilenet_v2.arch').to_onnx()\n"
        "print(len(model.graph.node))\n"
    )
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, env=_env())
    assert done.returncode == 0, done.stderr
    assert int(done.stdout) > 100


def _env() -> dict:
    return {**os.environ, "PYTHONPATH": str(ROOT)}


def test_generate_points_to_to_onnx():
    net = archc.load(ROOT / "specs" / "lenet5.arch")
    with pytest.raises(ValueError, match=r"network\.to_onnx\(\) builds it"):
        generate(net, "onnx")


def test_weights_of_the_wrong_keys_or_shapes_are_refused():
    net = archc.load(ROOT / "specs" / "lenet5.arch")
    state = build(net, "torch")[0].state_dict()
    with pytest.raises(WeightsError, match=r"missing C1\.bias"):
        to_onnx(net, weights={k: v for k, v in state.items() if k != "C1.bias"})
    with pytest.raises(WeightsError, match=r"unexpected extra"):
        to_onnx(net, weights={**state, "extra": np.zeros(1)})
    with pytest.raises(WeightsError, match=r"C1\.weight has shape \(6, 1, 3, 3\), not \(6, 1, 5, 5\)"):
        to_onnx(net, weights={**state, "C1.weight": np.zeros((6, 1, 3, 3))})
    with pytest.raises(TypeError, match="mapping"):
        to_onnx(net, weights=[1, 2])


# -- the command line ----------------------------------------------------------------


def test_cli_writes_a_model_that_runs(tmp_path, capsys):
    out = tmp_path / "lenet.onnx"
    assert main(["codegen", str(ROOT / "specs" / "lenet5.arch"), "--target", "onnx", "-o", str(out)]) == 0
    assert "LeNet5 as ONNX (opset 21), 9 layers" in capsys.readouterr().err
    model = onnx.load(out)
    onnx.checker.check_model(model, full_check=True)
    net = archc.load(ROOT / "specs" / "lenet5.arch")
    x = inputs_for(net, 3, 0)[0]
    with torch.no_grad():
        close(session(model).run(None, {"image": x.numpy()})[0], torch_model(net, model, flat=False)[0](x), "cli")


def test_cli_needs_an_output_file(tmp_path, capsys):
    """A binary file is never written to a terminal (or standard output)."""
    with pytest.raises(SystemExit) as stop:
        main(["codegen", str(ROOT / "specs" / "lenet5.arch"), "--target", "onnx"])
    assert stop.value.code == 2
    assert "--target onnx writes a binary file: give it with -o FILE.onnx" in capsys.readouterr().err


def test_cli_refuses_a_terminal_named_by_o(capsys):
    leader, follower = os.openpty()
    try:
        terminal = os.ttyname(follower)
        with pytest.raises(SystemExit) as stop:
            main(["codegen", str(ROOT / "specs" / "lenet5.arch"), "--target", "onnx", "-o", terminal])
        assert stop.value.code == 2
        assert f"`{terminal}` is a terminal: --target onnx writes a binary file" in capsys.readouterr().err
        os.set_blocking(leader, False)
        with pytest.raises(BlockingIOError):  # nothing reached the terminal
            os.read(leader, 100)
    finally:
        os.close(leader)
        os.close(follower)


def test_cli_weights_from_the_numpy_models_npz(tmp_path, capsys):
    net = archc.load(ROOT / "specs" / "lenet5.arch")
    numpy_model = load_module(generate(net, "numpy").code).build_model(seed=7)
    numpy_model.save(tmp_path / "w.npz")
    out = tmp_path / "m.onnx"
    spec = str(ROOT / "specs" / "lenet5.arch")
    assert main(["codegen", spec, "--target", "onnx", "--weights", str(tmp_path / "w.npz"), "-o", str(out)]) == 0
    found = {i.name: onnx.numpy_helper.to_array(i) for i in onnx.load(out).graph.initializer}
    assert found.keys() == numpy_model.state.keys()
    assert all(np.array_equal(found[k], v) for k, v in numpy_model.state.items())
    seeded = tmp_path / "s.onnx"
    assert main(["codegen", spec, "--target", "onnx", "--seed", "7", "-o", str(seeded)]) == 0
    assert onnx.load(seeded).graph.initializer == onnx.load(out).graph.initializer


@pytest.mark.parametrize(
    ("content", "says"),
    [
        (None, "cannot read the weights"),
        (b"not a zip file", "is not an .npz file of arrays"),
        ("missing", "the weights do not fit the network: missing C1.bias"),
    ],
)
def test_cli_bad_weights_exit_1_and_write_nothing(tmp_path, capsys, content, says):
    weights = tmp_path / "w.npz"
    if isinstance(content, bytes):
        weights.write_bytes(content)
    elif content == "missing":
        net = archc.load(ROOT / "specs" / "lenet5.arch")
        np.savez(weights, **{k: v.numpy() for k, v in build(net, "torch")[0].state_dict().items() if k != "C1.bias"})
    out = tmp_path / "m.onnx"
    argv = ["codegen", str(ROOT / "specs" / "lenet5.arch"), "--target", "onnx", "--weights", str(weights)]
    assert main([*argv, "-o", str(out)]) == 1
    err = capsys.readouterr().err
    assert says in err and "Traceback" not in err
    assert not out.exists() and list(tmp_path.glob(".archc-*")) == []


def test_cli_weights_and_seed_are_for_onnx_only(capsys):
    with pytest.raises(SystemExit) as stop:
        main(["codegen", str(ROOT / "specs" / "lenet5.arch"), "--seed", "3"])
    assert stop.value.code == 2
    assert "--weights and --seed are for --target onnx" in capsys.readouterr().err


def test_cli_without_the_onnx_package(tmp_path, monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "onnx", None)  # `import onnx` then fails as if it were not installed
    out = tmp_path / "m.onnx"
    assert main(["codegen", str(ROOT / "specs" / "lenet5.arch"), "--target", "onnx", "-o", str(out)]) == 1
    assert "the ONNX target needs the onnx package: pip install 'archc[onnx]'" in capsys.readouterr().err
    assert not out.exists()
