"""Issue 14, code generation: the generated code does what the analyser says, and always runs.

- A layer nothing reads (W0302) was left out of forward while its parameters
  stayed and the header counted its MACs: torch measured fewer MACs than
  archc reported. Forward now computes it, in a bare statement.
- A network of inputs alone generated a forward with no body (with `output`)
  or returning nothing (without): it is now the identity, in both targets.
- Torch code generation was quadratic (every activation layer rebuilt a set of
  all layers): the work per layer now stays the same as the network grows.

The outside truths are torch (its flop counter, its parameter count, the
values its model computes) and the inputs themselves (an identity returns them).
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from codegen_util import analysed, build, load_module, measured, traced

from archc.codegen import generate

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from benchmarks.scaling import relu_layers

pytestmark = pytest.mark.usefixtures("one_thread")

SIDE = """network Side {
  input image: 3x16x16
  conv trunk: 8 @ 3x3 pad=1 -> relu
  conv aux (image): 16 @ 1x1
  identity spare (trunk)
  relu a (trunk)
  relu b (trunk)
  add sum (a, b)
  maxpool (trunk): 2
}
"""


def test_layers_nothing_reads_are_computed_so_torch_measures_the_analysed_totals():
    net = analysed(SIDE)
    assert sorted(w.message.split("`")[1] for w in net.warnings if w.code == "W0302") == ["aux", "spare", "sum"]
    model, gen, _ = build(net, "torch")
    params, buffers, macs = measured(model.eval(), torch.randn(1, 3, 16, 16))
    assert (params, buffers, macs) == (net.totals.params, net.totals.buffers, net.totals.macs)
    assert f"{params:,} parameters, {macs:,} MACs per sample" in gen.code.splitlines()[1]  # the header's figures
    assert "        self.aux(image)  # unused: nothing reads it (W0302)\n" in gen.code
    assert "        a + x  # unused: nothing reads it (W0302)\n" in gen.code  # not `a += x`: no variable holds it


def test_layers_nothing_reads_compute_the_same_values_in_both_targets():
    net = analysed(SIDE)
    tmodel, tgen, tfile = build(net, "torch", flat=True)
    nmodel, ngen, nfile = build(net, "numpy", flat=True)
    nmodel.load_state_dict(tmodel.state_dict())
    x = torch.randn(2, 3, 16, 16)
    with torch.no_grad():
        tout, want = traced(tmodel.eval(), tgen, tfile, x)
    nout, got = traced(nmodel.eval(), ngen, nfile, x.numpy())
    for name in ("aux", "sum"):  # computed by their bare statements
        assert tuple(want[name].shape) == (2, *net.layer(name).shape)
        np.testing.assert_allclose(got[name], want[name].numpy(), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(nout, tout.numpy(), rtol=1e-5, atol=1e-6)
    # an identity nothing reads computes nothing: a comment, not a useless bare name
    assert "        # spare = trunk, unused: nothing reads it (W0302)\n" in ngen.code


IDENTITIES = {  # spec body -> the inputs the network returns, in order
    "input x: 3x4\n  output (x)": ["x"],
    "input x: 3x4": ["x"],
    "input a: 3x4\n  input b: 2\n  output (b, a)": ["b", "a"],
    "input a: 3x4\n  input b: 2": ["b"],
    "input a: 3x4\n  input b: 2\n  output (a, b, a)": ["a", "b"],
}


@pytest.mark.parametrize("target", ["torch", "numpy"])
@pytest.mark.parametrize("body", IDENTITIES)
def test_a_network_of_inputs_alone_returns_them(body, target):
    net = analysed(f"network Id {{\n  {body}\n}}\n")
    assert [n.name for n in net.graph.outputs] == IDENTITIES[body]
    model, _, _ = build(net, target)
    xs = {
        name: np.random.default_rng(0).standard_normal((2, *shape), dtype=np.float32)
        for name, shape in net.inputs.items()
    }
    given = [torch.from_numpy(v) if target == "torch" else v for v in xs.values()]
    out = model(*given)
    want = [xs[name] for name in IDENTITIES[body]]
    got = list(out) if len(want) > 1 else [out]
    assert len(got) == len(want)
    for g, w in zip(got, want):
        assert np.array_equal(np.asarray(g), w)


def test_a_network_of_one_input_returns_it_without_a_warning():
    """Without `output`, the input is what the network returns: nothing is unused."""
    assert analysed("network Id {\n  input x: 3x4\n}\n").warnings == []


@pytest.mark.parametrize("target", ["torch", "numpy"])
def test_inputs_among_several_outputs(target):
    net = analysed("network Mix {\n  input a: 3\n  input b: 2\n  dense d (a): 2\n  output (b, d, a)\n}\n")
    model, _, _ = build(net, target)
    a, b = torch.randn(2, 3), torch.randn(2, 2)
    if target == "numpy":
        a, b = a.numpy(), b.numpy()
    rb, rd, ra = model(a, b)
    assert rb is b and ra is a and tuple(rd.shape) == (2, 2)


def opcodes(fn) -> int:
    """How many bytecode instructions Python runs in `fn()`: the work done, whatever the machine's load."""
    count = 0

    def local(frame, event, arg):
        nonlocal count
        count += 1
        return local

    def new_frame(frame, event, arg):
        frame.f_trace_opcodes = True
        frame.f_trace_lines = False
        return local

    old = sys.gettrace()
    sys.settrace(new_frame)
    try:
        fn()
    finally:
        sys.settrace(old)
    return count


@pytest.mark.parametrize("target", ["torch", "numpy"])
def test_code_generation_does_the_same_work_per_layer_at_any_size(target):
    """20,000 layers took 36 s for torch (1.8 s for NumPy): each relu layer asked which
    layers forward computes and rebuilt the set of all of them. Counted in instructions,
    the work per layer is a constant, up to a fixed cost per network."""
    generate(analysed(relu_layers(20)), target)  # caches filled once per process
    small, large = analysed(relu_layers(200)), analysed(relu_layers(2000))
    per_layer = [opcodes(lambda net=net: generate(net, target)) / len(net.graph) for net in (small, large)]
    assert per_layer[1] <= 1.25 * per_layer[0], per_layer


LONG = [  # spec bodies for a name N, whose length decides where the lines split
    "input image: 3x8x8\n  conv N: 4 @ 1x1\n  conv c (image): 4 @ 1x1",
    "input image: 3x8x8\n  conv N: 4 @ 1x1\n  conv c: 4 @ 1x1",
    "input image: 3x8x8\n  conv a: 4 @ 1x1\n  conv N (image): 4 @ 1x1\n  add (a, N)\n  maxpool: 2 pad=(0,1)x(0,1) ceil"
    "\n  avgpool: 2 pad=(0,1)x(0,1) ceil count_pad=false\n  chunk: 2 index=1",
    "input N: 3x8x8\n  conv a: 4 @ 1x1\n  maxpool (N): 2 pad=(0,1)x(0,1) ceil\n  minpool (N): 2 pad=(0,1)x(0,1) ceil"
    "\n  avgpool (N): 2 pad=(0,1)x(0,1) ceil count_pad=false\n  shortcut (a, N)"
    "\n  output (maxpool1, minpool1, avgpool1, shortcut1)",
    "input N: 3x8x8\n  input bN: 3x8x8\n  add (N, bN)\n  identity u (N)\n  conv v (N): 2 @ 1x1",
]


def test_generated_code_of_unusual_networks_is_clean(tmp_path):
    """ruff with its defaults: bare statements, comments, and lines split by names of any length
    (a long target, subscript, quotient or signature), all formatted as ruff formats them."""
    import subprocess

    specs = {"side": SIDE, **{f"id{i}": f"network Id {{\n  {body}\n}}\n" for i, body in enumerate(IDENTITIES)}}
    for length in (30, 40, 55, 66, 75, 95):
        name = ("a_long_name_" * 10)[:length].rstrip("_")
        for i, body in enumerate(LONG):
            specs[f"long{length}_{i}"] = "network Long {\n  " + body.replace("N", name) + "\n}\n"
    for name, text in specs.items():
        for target in ("torch", "numpy"):
            code = generate(analysed(text), target).code
            load_module(code)  # it compiles and imports
            (tmp_path / f"{name}_{target}.py").write_text(code)
    check = subprocess.run(["ruff", "check", "--isolated", "."], cwd=tmp_path, capture_output=True, text=True)
    assert check.returncode == 0, check.stdout
    fmt = subprocess.run(["ruff", "format", "--isolated", "--diff", "."], cwd=tmp_path, capture_output=True, text=True)
    assert fmt.returncode == 0, fmt.stdout + fmt.stderr


@pytest.mark.parametrize("name", ["p", "pool_of_some_length", "a_pool_whose_long_name_splits_the_lines"])
def test_a_crop_of_a_quotient_crops_the_quotient(name):
    """An average pool that leaves padding out of its count (`count_pad=false`) divides two pools;
    in ceil mode with per-side padding it then crops a last window: `(a / b)[...]` however the
    line is split, never `a / b[...]`, which would crop the divisor alone."""
    text = f"network P {{\n  input x: 2x5x6\n  avgpool {name}: 2 /3 pad=(0,1)x(0,1) ceil count_pad=false\n}}\n"
    net = analysed(text)
    tmodel, _, _ = build(net, "torch")
    nmodel, _, _ = build(net, "numpy")
    x = torch.randn(2, 2, 5, 6)
    with torch.no_grad():
        got = tmodel(x)
    assert tuple(got.shape) == (2, *net.layer(name).shape)
    np.testing.assert_allclose(got.numpy(), nmodel(x.numpy()), rtol=1e-5, atol=1e-6)
