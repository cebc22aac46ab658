"""Generated code for every bundled spec: it is clean, it runs, and it computes what the analyser says.

The outside truths are PyTorch itself (parameter counts, the shape of every
tensor the torch model computes, and torch's numbers, which the NumPy model
must reproduce) and torchvision's own models (tests/data holds the
sequence of their state_dict shapes, recorded by make_torchvision_state_dicts.py).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import networkx as nx
import numpy as np
import pytest
import torch
from codegen_util import build, measured, randomise_batch_norm, traced
from conftest import ROOT, SPECS
from test_codegen_random import inputs

import archc
from archc.codegen import generate
from archc.codegen.names import NN_MODULE_MEMBERS

SPEC_FILES = sorted(SPECS.glob("*.arch"))
SPEC_IDS = [p.stem for p in SPEC_FILES]
NETS = {p.stem: archc.load(p) for p in SPEC_FILES}
# the specs with batch norm, whose training statistics the NumPy model must keep as torch does
WITH_BATCH_NORM = [spec for spec, net in NETS.items() if any(n.op == "bn" for n in net.layers)]
TORCHVISION = json.loads((ROOT / "tests" / "data" / "torchvision_state_dicts.json").read_text())
# spec -> the torchvision model it is written after
AFTER_TORCHVISION = {
    "resnet18": "resnet18",
    "resnet50": "resnet50",
    "vgg16": "vgg16",
    "alexnet": "alexnet",
    "googlenet": "googlenet",
    "mobilenet_v2": "mobilenet_v2",
}


@pytest.fixture(scope="module")
def nets():
    return NETS


def inputs_for(net, batch: int = 2, seed: int = 0) -> list[torch.Tensor]:
    return inputs(net, batch, torch.Generator().manual_seed(seed))  # token ids for an input of tokens


def relative_error(got, want) -> float:
    got, want = np.asarray(got, dtype=np.float64), np.asarray(want, dtype=np.float64)
    return float(np.abs(got - want).max() / max(np.abs(want).max(), 1e-12))


# -- the torch model against the analyser ---------------------------------------------


@pytest.mark.parametrize("spec", SPEC_IDS)
def test_torch_model_has_the_analysed_parameters_macs_and_shapes(nets, spec):
    net = nets[spec]
    model, gen, filename = build(net, "torch", flat=True)
    model.eval()
    measured_totals = measured(model, *inputs_for(net, batch=1))
    assert measured_totals == (net.totals.params, net.totals.buffers, net.totals.macs)
    with torch.no_grad():
        _, values = traced(model, gen, filename, *inputs_for(net, batch=1))
    layers = [n for n in net.layers if n.op != "input"]
    assert set(values) == {n.name for n in layers}
    for node in layers:
        assert tuple(values[node.name].shape) == (1, *node.shape), node.name


@pytest.mark.parametrize("spec", sorted(AFTER_TORCHVISION))
def test_torch_model_takes_torchvision_weights_by_position(nets, spec):
    model, _, _ = build(nets[spec], "torch")
    ours = [list(v.shape) for v in model.state_dict().values()]
    theirs = [shape for _key, shape in TORCHVISION["models"][AFTER_TORCHVISION[spec]]]
    assert ours == theirs
    assert sum(p.numel() for p in model.parameters()) == TORCHVISION["params"][AFTER_TORCHVISION[spec]]
    # and loading them by position works
    fake = {k: torch.full(v.shape, 0.5, dtype=v.dtype) for k, v in model.state_dict().items()}
    model.load_state_dict(dict(zip(model.state_dict(), fake.values())))


# -- the NumPy model against the torch model ------------------------------------------


@pytest.mark.parametrize("spec", SPEC_IDS)
def test_numpy_model_computes_what_torch_computes_in_eval_mode(nets, spec):
    net = nets[spec]
    torch.manual_seed(0)
    tmodel, tgen, tfile = build(net, "torch", flat=True)
    randomise_batch_norm(tmodel)
    tmodel.eval()
    nmodel, ngen, nfile = build(net, "numpy", flat=True)
    nmodel.load_state_dict(tmodel.state_dict())
    nmodel.eval()
    xs = inputs_for(net)
    with torch.no_grad():
        _, want = traced(tmodel, tgen, tfile, *xs)
    _, got = traced(nmodel, ngen, nfile, *(x.numpy() for x in xs))
    for node in net.layers:
        if node.op == "input":
            continue
        assert got[node.name].dtype == np.float32, node.name
        assert got[node.name].shape == tuple(want[node.name].shape), node.name
        assert relative_error(got[node.name], want[node.name]) < 1e-4, node.name


@pytest.mark.parametrize("spec", WITH_BATCH_NORM)
def test_numpy_batch_norm_statistics_follow_torch_in_train_mode(nets, spec):
    """Two training steps; BN layers that no dropout reaches must agree on every statistic."""
    net = nets[spec]
    torch.manual_seed(1)
    tmodel, gen, _ = build(net, "torch")
    nmodel, _, _ = build(net, "numpy")
    nmodel.load_state_dict(tmodel.state_dict())
    tmodel.train()
    nmodel.train()
    for step in range(2):
        xs = inputs_for(net, batch=3, seed=step)
        with torch.no_grad():
            tmodel(*xs)
        nmodel(*(x.numpy() for x in xs))
    dropouts = {n.name for n in net.layers if n.op == "dropout"}
    tstate, nstate = tmodel.state_dict(), nmodel.state_dict()
    checked = 0
    for node in net.layers:
        if node.op != "bn" or dropouts & nx.ancestors(net.graph.nx, node.name):
            continue
        key = gen.attrs[node.name]
        for stat in ("running_mean", "running_var"):
            # a mean of about 0 is noise: a floor, at the scale of the layer's statistics (which
            # the initialisation sets: Kaiming's convs make ResNet-50's larger than PyTorch's default)
            want = tstate[f"{key}.{stat}"].numpy()
            floor = 1e-5 * max(float(np.abs(want).max()), 0.1)
            np.testing.assert_allclose(nstate[f"{key}.{stat}"], want, 1e-4, floor, err_msg=key)
        assert int(nstate[f"{key}.num_batches_tracked"]) == int(tstate[f"{key}.num_batches_tracked"]) == 2
        checked += 1
    assert checked


# -- the files themselves ---------------------------------------------------------------


@pytest.fixture(scope="module")
def written(nets, tmp_path_factory):
    folder = tmp_path_factory.mktemp("generated")
    for spec, net in nets.items():
        for target in ("torch", "numpy"):
            (folder / f"{spec}_{target}.py").write_text(generate(net, target).code)
    return folder


def test_generated_files_pass_ruff_check_and_are_formatted(written):
    """ruff with its defaults (--isolated): the files carry no configuration of their own."""
    check = subprocess.run(["ruff", "check", "--isolated", "."], cwd=written, capture_output=True, text=True)
    assert check.returncode == 0, check.stdout
    fmt = subprocess.run(["ruff", "format", "--isolated", "--diff", "."], cwd=written, capture_output=True, text=True)
    assert fmt.returncode == 0, fmt.stdout + fmt.stderr


def test_the_numpy_module_imports_nothing_but_numpy(written):
    for path in written.glob("*_numpy.py"):
        imports = [line for line in path.read_text().splitlines() if line.startswith(("import ", "from "))]
        assert imports == ["import numpy as np"], path.name


def test_generated_code_names_the_spec_and_its_totals(written):
    head = (written / "lenet5_torch.py").read_text().splitlines()[:2]
    assert head[0].startswith('# Generated by archc from "lenet5.arch"')
    assert "61,706 parameters, 416,520 MACs" in head[1]  # figures.md: LeNet-5


@pytest.mark.parametrize("target", ["torch", "numpy"])
def test_the_same_spec_gives_byte_identical_code_in_any_process(target):
    def run(seed: str) -> bytes:
        env = {**os.environ, "PYTHONHASHSEED": seed}
        cmd = [sys.executable, "-m", "archc", "codegen", str(SPECS / "googlenet.arch"), "--target", target]
        return subprocess.run(cmd, env=env, capture_output=True, check=True).stdout

    assert run("1") == run("2") == run("3")


def test_nn_module_member_list_covers_torch():
    """Attributes must not shadow nn.Module's methods; the list in names.py must know them all. Torch's
    own nn.Module, in a fresh process: a library the tests import may add to it (transformers adds
    `smart_apply`)."""
    code = "import torch; print(*(n for n in dir(torch.nn.Module()) if not n.startswith('_')))"
    listed = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    members = set(listed.stdout.split())
    assert members <= NN_MODULE_MEMBERS, sorted(members - NN_MODULE_MEMBERS)


def test_readme_round_trip_torch_numpy_torch(nets, tmp_path):
    """Weights go from torch to numpy by key, through a .npz file, and back to torch."""
    net = nets["mnist_cnn"]
    tmodel, _, _ = build(net, "torch")
    nmodel, _, _ = build(net, "numpy", seed=3)
    nmodel.load_state_dict(tmodel.state_dict())
    nmodel.save(tmp_path / "w.npz")
    again, _, _ = build(net, "numpy", seed=4)
    again.load(tmp_path / "w.npz")
    back, _, _ = build(net, "torch")
    back.load_state_dict({k: torch.from_numpy(v) for k, v in again.state_dict().items()})
    for (k, a), b in zip(tmodel.state_dict().items(), back.state_dict().values()):
        assert torch.equal(a, b), k


def test_numpy_build_model_is_seeded_and_initialises_by_the_specs_scheme(nets):
    net = nets["resnet18"]
    a, _, _ = build(net, "numpy", seed=0)
    b, _, _ = build(net, "numpy", seed=0)
    c, _, _ = build(net, "numpy", seed=1)
    for key, value in a.state_dict().items():
        assert np.array_equal(value, b.state_dict()[key])
    assert not np.array_equal(a.state["conv1.weight"], c.state["conv1.weight"])
    # init=resnet, as torchvision's ResNet: convs Kaiming normal, std sqrt(2 / fan_out), fan_out 64*7*7
    assert abs(a.state["conv1.weight"].std() / np.sqrt(2 / (64 * 49)) - 1) < 0.05
    # and fc keeps PyTorch's default, U(-1/sqrt(fan_in), 1/sqrt(fan_in)), fan_in 512
    limit = 1 / np.sqrt(512)
    assert np.abs(a.state["fc.weight"]).max() <= limit
    assert abs(a.state["fc.weight"].std() / (limit / np.sqrt(3)) - 1) < 0.05
    assert np.all(a.state["bn1.running_var"] == 1) and a.state["bn1.num_batches_tracked"].dtype == np.int64


def test_numpy_load_state_dict_names_missing_keys_and_wrong_shapes(nets):
    model, _, _ = build(nets["lenet5"], "numpy")
    state = model.state_dict()
    with pytest.raises(KeyError, match=r"C1\.bias"):
        model.load_state_dict({k: v for k, v in state.items() if k != "C1.bias"})
    with pytest.raises(ValueError, match=r"C1.weight: shape \(1, 1\)"):
        model.load_state_dict({**state, "C1.weight": np.zeros((1, 1))})


def test_declared_outputs_come_back_in_order_and_unused_layers_are_computed(tmp_path):
    text = """network Heads {
  input image: 3x16x16
  conv trunk: 8 @ 3x3 pad=1 -> relu
  conv dead: 4 @ 1x1
  globalavgpool g (trunk)
  flatten feat
  dense classes: 10
  dense box (feat): 4
  output (box, classes)
}"""
    net = archc.loads(text, "heads.arch")
    assert [w.code for w in net.warnings] == ["W0302"]
    for target in ("torch", "numpy"):
        code = generate(net, target).code
        forward = code.split("def forward")[1].split("def ")[0]
        # computed, as the spec says, in a bare statement
        assert forward.count("  # unused: nothing reads it (W0302)\n") == 1
        assert ("self.dead(trunk)" if target == "torch" else 's["dead.weight"]') in forward
        path = tmp_path / f"heads_{target}.py"
        path.write_text(code)
        assert subprocess.run(["ruff", "check", "--isolated", str(path)], capture_output=True).returncode == 0
    tmodel, _, _ = build(net, "torch")
    assert measured(tmodel.eval(), torch.randn(1, 3, 16, 16)) == (net.totals.params, 0, net.totals.macs)
    nmodel, _, _ = build(net, "numpy")
    nmodel.load_state_dict(tmodel.state_dict())
    x = torch.randn(2, 3, 16, 16)
    with torch.no_grad():
        box, classes = tmodel.eval()(x)
    assert (tuple(box.shape), tuple(classes.shape)) == ((2, 4), (2, 10))
    nbox, nclasses = nmodel(x.numpy())
    np.testing.assert_allclose(nbox, box.numpy(), rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(nclasses, classes.numpy(), rtol=1e-4, atol=1e-5)
