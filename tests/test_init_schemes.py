"""`build_model()` starts the weights as the spec's family is known to start them (issue 16, item 4).

The outside truth is torchvision: its models built with weights=None run their own
initialisation loops. For every bundled spec written after a torchvision model, the
generated model's weights (torch and NumPy) have the distribution of torchvision's,
compared by shape (pooled over all tensors of one shape, so the order and the keys of
the parameters do not matter), and the output on a random image has the same spread.
For the schemes of families without a bundled spec, the generated initialisation loop
runs on a small torchvision model of that family and must give what its constructor gave.
"""

from __future__ import annotations

import ast
import functools
import subprocess
import sys
import warnings
from collections import defaultdict

import numpy as np
import pytest
import torch
import torchvision
from codegen_util import build
from conftest import ROOT, SPECS

import archc
from archc.codegen import generate
from archc.codegen.init import SCHEMES
from archc.printer import format_module
from archc.syntax import parse

# spec -> (torchvision builder, its arguments)
AFTER_TORCHVISION = {
    "alexnet": (torchvision.models.alexnet, {}),
    "vgg16": (torchvision.models.vgg16, {}),
    "resnet18": (torchvision.models.resnet18, {}),
    "resnet50": (torchvision.models.resnet50, {}),
    "googlenet": (torchvision.models.googlenet, {"aux_logits": False, "init_weights": True}),
    "mobilenet_v2": (torchvision.models.mobilenet_v2, {}),
    "mobilenet_v3_small": (torchvision.models.mobilenet_v3_small, {}),
    "efficientnet_b0": (torchvision.models.efficientnet_b0, {}),
    "regnet_y_400mf": (torchvision.models.regnet_y_400mf, {}),
    "shufflenet_v2_x1_0": (torchvision.models.shufflenet_v2_x1_0, {}),
}


def torchvision_model(spec: str) -> torch.nn.Module:
    builder, kwargs = AFTER_TORCHVISION[spec]
    torch.manual_seed(1)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # googlenet: the default of init_weights will change
        return builder(weights=None, **kwargs).eval()


IMAGE = torch.randn(1, 3, 224, 224, generator=torch.Generator().manual_seed(0))


@functools.cache
def torchvision_figures(spec: str) -> tuple[dict, float]:
    """The moments of torchvision's weights by shape, and the std of its output on IMAGE."""
    model = torchvision_model(spec)
    with torch.no_grad():
        return moments(model.state_dict().values()), float(model(IMAGE).std())


SAMPLE = 1 << 20


def moments(arrays) -> dict[tuple, tuple[int, float, float, float]]:
    """shape -> (count, mean, std, mean absolute value) of every float array of that shape, pooled.

    Summed in float64, over a regular sample of at most SAMPLE values of a large tensor: VGG-16
    has 138 million.
    """
    sums = defaultdict(lambda: np.zeros(4))
    for array in arrays:
        tensor = torch.as_tensor(array)
        if not tensor.is_floating_point():
            continue
        flat = tensor.reshape(-1)
        if flat.numel() > SAMPLE:  # every k-th value, the same ones on both sides
            flat = flat[:: flat.numel() // SAMPLE]
        c = flat.double()
        sums[tuple(tensor.shape)] += [c.numel(), float(c.sum()), float((c * c).sum()), float(c.abs().sum())]
    out = {}
    for shape, (n, total, squares, absolute) in sums.items():
        mean = total / n
        out[shape] = (int(n), mean, max(squares / n - mean * mean, 0.0) ** 0.5, absolute / n)
    return out


def assert_same_distribution(ours: dict, theirs: dict) -> None:
    """Per shape: mean, standard deviation and mean absolute value agree within 6 standard errors
    (taken as 1/sqrt(n) of the larger value: more than the error of the difference of two
    samples of any distribution here, and as small as that for the large groups).

    The mean absolute value tells a uniform (0.87 std) from a normal (0.80 std) distribution.
    A constant group (batch norm's ones, zero biases) must be the same constant.
    """
    assert sorted(ours) == sorted(theirs)
    for shape, (n, mean, std, mean_abs) in theirs.items():
        got_n, got_mean, got_std, got_abs = ours[shape]
        assert got_n == n, shape
        if std == 0:
            assert got_std == 0 and got_mean == mean, shape
            continue
        assert abs(got_mean - mean) <= 6 * max(std, got_std) / n**0.5 + 1e-7, (shape, got_mean, mean)
        assert abs(got_std - std) <= max(std, got_std) * (6 / n**0.5 + 1e-3), (shape, got_std, std)
        assert abs(got_abs - mean_abs) <= max(mean_abs, got_abs) * (6 / n**0.5 + 1e-3), (shape, got_abs, mean_abs)


@pytest.fixture(scope="module")
def nets():
    return {spec: archc.load(SPECS / f"{spec}.arch") for spec in AFTER_TORCHVISION}


@pytest.mark.parametrize("spec", sorted(AFTER_TORCHVISION))
def test_torch_model_starts_as_torchvision_does(nets, spec):
    torch.manual_seed(0)
    ours, _, _ = build(nets[spec], "torch")
    theirs, their_std = torchvision_figures(spec)
    assert_same_distribution(moments(ours.state_dict().values()), theirs)
    # and the outputs on a random image have the same spread (ResNet-50: about 18, not 0.02)
    with torch.no_grad():
        ratio = float(ours.eval()(IMAGE).std()) / their_std
    assert 1 / 3 < ratio < 3, ratio


@pytest.mark.parametrize("spec", sorted(AFTER_TORCHVISION))
def test_numpy_model_starts_as_torchvision_does(nets, spec):
    ours, _, _ = build(nets[spec], "numpy", seed=0)
    assert_same_distribution(moments(ours.state_dict().values()), torchvision_figures(spec)[0])


# -- every scheme, on torchvision's own modules ----------------------------------------

# A spec with every kind of layer a scheme has rules for, with and without a bias.
PROBE = """
network Probe init={scheme} {{
  input x: 3x8x8
  conv a: 4 @ 3x3
  conv b: 4 @ 3x3 bias=false
  flatten
  dense fc: 3
  dense fc2: 2 bias=false
}}
"""


def small_torchvision(scheme: str) -> torch.nn.Module:
    """A small model of a family no bundled spec follows, built by its constructor (which initialises it)."""
    models = torchvision.models
    small = {
        "inception": lambda: models.Inception3(num_classes=10, aux_logits=False, init_weights=True),
        "densenet": lambda: models.DenseNet(8, (2, 2), 16, num_classes=10),
        "convnext": lambda: models.ConvNeXt([models.convnext.CNBlockConfig(16, None, 2)], num_classes=10),
    }
    return small[scheme]()


SMALL = ("inception", "densenet", "convnext")


def init_loop(code: str) -> ast.Module:
    """The statements after the layers in the generated `__init__`: the initialisation loop."""
    tree = ast.parse(code)
    cls = next(node for node in tree.body if isinstance(node, ast.ClassDef))
    init = next(node for node in cls.body if isinstance(node, ast.FunctionDef) and node.name == "__init__")
    return ast.Module([s for s in init.body if isinstance(s, ast.For)], [])


def reset_to_torch_defaults(model: torch.nn.Module) -> None:
    for m in model.modules():
        if isinstance(m, torch.nn.Conv2d | torch.nn.Linear | torch.nn.BatchNorm2d):
            m.reset_parameters()


def test_every_scheme_is_tested(nets):
    """Each scheme is that of a bundled spec (tested above), of a small model (below), or torch's defaults."""
    bundled = {net.graph.init for net in nets.values()}
    assert set(SCHEMES) == {"torch", *bundled, *SMALL}


def test_pytorchs_defaults_add_no_loop():
    assert not init_loop(generate(archc.loads(PROBE.format(scheme="torch")), "torch").code).body


@pytest.mark.parametrize("scheme", SMALL)
def test_the_loop_does_what_the_torchvision_constructor_does(scheme):
    """The generated loop, run on the family's own model reset to PyTorch's defaults, gives what
    the family's constructor gave, tensor by tensor."""
    loop = init_loop(generate(archc.loads(PROBE.format(scheme=scheme)), "torch").code)
    torch.manual_seed(2)
    theirs = small_torchvision(scheme)
    ours = small_torchvision(scheme)
    reset_to_torch_defaults(ours)
    with torch.no_grad():
        exec(compile(loop, "<init>", "exec"), {"nn": torch.nn, "self": ours})
    ours_state, theirs_state = ours.state_dict(), theirs.state_dict()
    for key, want in theirs_state.items():
        if want.numel() > 1:
            assert_same_distribution(moments([ours_state[key]]), moments([want]))


# -- the generated code says which scheme it follows ---------------------------------


def test_the_docstrings_state_the_scheme(nets):
    for target in ("torch", "numpy"):
        code = generate(nets["resnet50"], target).code
        assert "Initialised as torchvision's ResNet (init=resnet): conv weights Kaiming normal" in code
    code = generate(archc.load(SPECS / "lenet5.arch"), "torch").code
    assert "Initialised as PyTorch's defaults (init=torch)." in code
    assert "for m in self.modules()" not in code


@pytest.mark.parametrize("spec", ["lenet5", "deconv_example", "conv3d_example"])
def test_without_a_setting_both_targets_start_as_pytorch_does(spec):
    """Without `init=`, the NumPy model draws what torch's own layers draw when created; the torch
    model is theirs, untouched. Every bias too (the NumPy model's used to start at zero)."""
    net = archc.load(SPECS / f"{spec}.arch")
    assert net.graph.init is None
    torch.manual_seed(0)
    torch_model, _, _ = build(net, "torch")
    numpy_model, _, _ = build(net, "numpy", seed=0)
    state = torch_model.state_dict()
    for key, value in numpy_model.state_dict().items():
        if value.size > 1:
            assert_same_distribution(moments([value]), moments([state[key]]))
        weight = state[key.rpartition(".")[0] + ".weight"]
        if weight.dim() > 1:  # a conv's or a linear layer's: U(-1/sqrt(fan_in), 1/sqrt(fan_in))
            fan_in, _ = torch.nn.init._calculate_fan_in_and_fan_out(weight)
            assert np.abs(value).max() <= fan_in**-0.5, key


# -- the setting: `network Name init=SCHEME {` ------------------------------------------

TINY = "network N{settings} {{\n  input x: 3x8x8\n  conv c: 4 @ 3x3 -> relu\n}}\n"


def errors_of(text: str):
    with pytest.raises(archc.ArchError) as info:
        archc.loads(text, "t.arch")
    return info.value.errors


@pytest.mark.parametrize(
    ("settings", "code", "col", "help", "scheme"),
    [
        (" init=resnett", "E0205", 11, "did you mean `resnet`?", "resnet"),
        (" init=ConvNeXt", "E0205", 11, "did you mean `convnext`?", "convnext"),
        (" inti=vgg", "E0206", 11, "did you mean `init`?", "vgg"),
        (" mobilenet", "E0208", 11, "did you mean `init=mobilenet`?", "mobilenet"),
    ],
)
def test_a_bad_setting_is_located_and_its_fix_works(settings, code, col, help, scheme):
    text = TINY.format(settings=settings)
    [diag] = errors_of(text)
    assert (diag.code, diag.span.line, diag.span.col) == (code, 1, col)
    assert help in diag.help
    [fix] = diag.fixes
    fixed = fix.apply(text)
    net = archc.loads(fixed, "t.arch")  # no error, no warning
    assert net.graph.init == scheme and not net.warnings
    assert f"(init={scheme})" in generate(net, "torch").code


def test_a_setting_given_twice_is_an_error():
    [diag] = errors_of(TINY.format(settings=" init=vgg init=resnet"))
    assert diag.code == "E0214"


def test_the_cli_reports_a_bad_scheme_without_a_traceback(tmp_path):
    spec = tmp_path / "t.arch"
    spec.write_text(TINY.format(settings=" init=resnett"))
    done = subprocess.run(
        [sys.executable, "-m", "archc", "codegen", str(spec)], capture_output=True, text=True, cwd=ROOT, check=False
    )
    assert done.returncode == 1
    assert f"{spec}:1:11: error:" in done.stderr and "did you mean `resnet`?" in done.stderr
    assert "Traceback" not in done.stderr


def test_the_setting_prints_back():
    """`archc import`'s printer writes what it reads: the setting stays on the network line."""
    text = TINY.format(settings=" init=regnet")
    module = parse(text, "t.arch")
    printed = format_module(module)
    assert printed.splitlines()[0] == "network N init=regnet {"
    assert parse(printed, "t.arch").networks[0].args[0].name == "init"
