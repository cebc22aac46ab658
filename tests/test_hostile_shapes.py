"""Issue 14, shapes: every fix a shape hint proposes works when pasted; sizes stay in their limits;
what archc accepts, the generated code runs.

The fix tests are mechanical: each `Fix` a diagnostic carries is applied to the spec, the spec is
analysed again, and the diagnostic must be gone, no other may appear, and the layer must have the
output size the help promises, in archc and in torch (the generated module, run).
"""

from __future__ import annotations

import contextlib
import random
import re
import subprocess
import sys

import numpy as np
import pytest
import torch
from codegen_util import build, traced
from conftest import ROOT

import archc
from archc import ArchError
from archc.importers import import_text

REAL = ROOT / "tests" / "data" / "realspecs"
PROMISE = re.compile(r"output (\d+(?:x\d+)*)$")


def diagnostics(text: str, file: str = "t.arch", **kwargs) -> list:
    try:
        return archc.loads(text, file, **kwargs).warnings
    except ArchError as err:
        return err.diagnostics


def torch_shapes(text: str) -> dict[str, tuple[int, ...]]:
    """Every layer's output shape (per sample) when the generated torch module runs."""
    net = archc.loads(text, "fixed.arch")
    model, gen, filename = build(net, "torch", flat=True)
    inputs = [torch.zeros(1, *shape) for shape in net.inputs.values()]
    with torch.no_grad():
        _, values = traced(model, gen, filename, *inputs)
    return {layer: tuple(v.shape[1:]) for layer, v in values.items() if hasattr(v, "shape")}


def key(diag) -> tuple:
    """A diagnostic; the message tells apart the copies of one statement in a repeat or a block."""
    return (diag.code, diag.span.line, diag.span.col, diag.message) if diag.span else (diag.code, diag.message)


def check_fixes(text: str, with_torch: bool = True) -> int:
    """Apply every fix of every diagnostic of `text`, one at a time; return how many were checked."""
    before = diagnostics(text)
    checked = 0
    for diag in before:
        promises = [PROMISE.search(h) for h in diag.help if PROMISE.search(h)]
        layer = diag.message.split(" ")[1].rstrip(":")  # "conv c1 does not ...", "avgpool p: ..."
        assert not promises or len(promises) == len(diag.fixes), diag.help  # every promise has its edit
        for i, fix in enumerate(diag.fixes):
            fixed = fix.apply(text)
            after = diagnostics(fixed)
            shown = f"{diag.message}\n{diag.help}\n--- fixed by {fix} ---\n{fixed}"
            assert key(diag) not in {key(d) for d in after}, f"the diagnostic stays\n{shown}"
            new = {key(d) for d in after} - {key(d) for d in before}
            assert not new, f"new diagnostics {[d.message for d in after if key(d) in new]}\n{shown}"
            if promises:
                promised = tuple(int(v) for v in promises[i].group(1).split("x"))
                assert archc.loads(fixed, "fixed.arch").layer(layer).shape == promised, shown
                if with_torch:
                    assert torch_shapes(fixed)[layer] == promised, shown
            checked += 1
    return checked


def net(*lines: str, shape: str = "3x224x224") -> str:
    return "network N {\n  input x: " + shape + "\n" + "".join(f"  {line}\n" for line in lines) + "}\n"


# -- item 1: the uneven-stride help --------------------------------------------------------------


def test_the_alexnet_stem_on_224_gets_per_side_padding_for_both_axes():
    text = "network A {\n  input image: 3x224x224\n  conv c1: 96 @ 11x11 /4\n}\n"
    (warning,) = diagnostics(text)
    # (1,2) alone on an image means 1 row and 2 columns on both sides: 96x54x55 and a new warning
    assert warning.help[0] == "pad=(1,2)x(1,2) makes it exact: (224+3-11)/4+1 = 55, output 96x55x55"
    assert [f.apply(text) for f in warning.fixes] == [
        text.replace("/4", "/4 pad=(1,2)x(1,2)"),
        text.replace("224x224", "227x227"),
    ]
    assert check_fixes(text) == 2
    # torch: a 227x227 input, or 224 padded 1 before and 2 after, gives 55x55 (figures.md: AlexNet 55x55x96)
    conv = torch.nn.Conv2d(3, 96, 11, stride=4)
    assert conv(torch.nn.functional.pad(torch.zeros(1, 3, 224, 224), (1, 2, 1, 2))).shape[2:] == (55, 55)


def test_the_squeezenet_stem_edits_the_padding_it_has():
    text = "network S {\n  input image: 3x224x224\n  conv conv1: 96 @ 7x7 /2 pad=0 -> relu\n}\n"
    (warning,) = diagnostics(text)
    assert warning.help[0] == "pad=(0,1)x(0,1) makes it exact: (224+1-7)/2+1 = 110, output 96x110x110"
    assert warning.fixes[0].apply(text).splitlines()[2] == "  conv conv1: 96 @ 7x7 /2 pad=(0,1)x(0,1) -> relu"
    assert check_fixes(text) == 2


def test_one_edit_fixes_every_uneven_axis_and_keeps_the_even_ones():
    text = net("conv c: 4 @ 3x3x3 /2", shape="2x8x9x10")  # D: 8-3 = 5 odd, H: 6 even, W: 7 odd
    (warning,) = diagnostics(text)
    assert warning.help[0] == (
        "pad=(0,1)x(0,0)x(0,1) makes it exact: D: (8+1-3)/2+1 = 4, W: (10+1-3)/2+1 = 5, output 4x4x4x5"
    )
    assert check_fixes(text) == 2


def test_a_pool_padding_that_would_pass_half_the_window_is_not_offered():
    # (8+2-3) % 4 = 3: one more pixel makes it exact, but pad=(1,2) is more than 3 // 2 on one side
    # (E0205, as torch's rule); the input size still works
    text = net("maxpool p: 3 /4 pad=1", shape="3x8")
    (warning,) = diagnostics(text)
    assert warning.help == ["an input `x` of 3x9 makes it exact: (9+2-3)/4+1 = 3, output 3x3"]
    assert check_fixes(text) == 1
    with pytest.raises(RuntimeError, match="at most half of kernel size"):
        torch.nn.MaxPool1d(3, 4, padding=2)(torch.zeros(1, 3, 8))


def test_a_fix_that_would_break_a_later_layer_is_not_offered():
    text = net("conv c: 8 @ 3x3 /2", "flatten", "dense: 10 in=968", shape="3x24x24")  # 11x11 now
    (warning,) = diagnostics(text)
    assert warning.code == "W0301" and warning.fixes == []  # 12x12 would break in=968
    assert "multiple of the stride" in warning.help[0]


def test_a_layer_in_a_repeat_or_a_block_gets_no_edit_of_its_shared_statement():
    block = "block b() {\n  conv: 4 @ 2x2 /2\n}\n" + net("b", shape="3x13x13")
    (warning,) = diagnostics(block)
    assert [f.span.line for f in warning.fixes] == [5]  # the input line; the block's conv stays as it is
    assert check_fixes(block) == 1
    repeat = net("repeat 2 {", "  conv: 4 @ 3 /2", "}", shape="3x12x12")  # 5x5, then 2x2
    (warning,) = diagnostics(repeat)
    # 3x13x13 would make the first copy exact but the second uneven: the same line, another message
    assert warning.fixes == [] and "multiple of the stride" in warning.help[0]


def _random_window(rng: random.Random) -> str | None:
    nd = rng.choice([1, 2, 2, 3])
    sizes = [rng.randint(5, 40 if nd < 3 else 14) for _ in range(nd)]
    op = rng.choice(["conv", "conv", "dwconv", "maxpool", "avgpool", "minpool"])
    k = [rng.randint(1, 5) for _ in range(nd)]
    s = [rng.randint(2, 4) for _ in range(nd)]
    dil = rng.choice([1, 1, 2]) if op in ("conv", "dwconv", "maxpool", "minpool") else 1
    pad = rng.choice(["", "", " pad=1", " pad=(0,1)" if nd == 1 else " pad=0x1", " full" if op == "conv" else ""])
    head = "conv c: 4 @ " if op == "conv" else f"{op} c: "
    dil_text = f" dilation={dil}" if dil > 1 else ""
    after = rng.choice(["", "relu", "conv: 2 @ 1", "flatten"])
    layers = [f"{head}{'x'.join(map(str, k))} /{'x'.join(map(str, s))}{pad}{dil_text}", *([after] if after else [])]
    return net(*layers, shape="x".join(["3", *map(str, sizes)]))


CASES = [_random_window(random.Random(seed)) for seed in range(400)]
UNEVEN = [t for t in CASES if any(d.code == "W0301" and d.severity == "warning" for d in diagnostics(t))]


@pytest.mark.parametrize("text", UNEVEN[:60], ids=range(len(UNEVEN[:60])))
def test_every_uneven_stride_fix_of_random_windows_works_in_archc_and_torch(text):
    assert check_fixes(text) >= 1


def test_the_random_windows_cover_every_rank_and_most_offer_a_fix():
    assert len(UNEVEN) >= 60
    ranks = {t.split("input x: ")[1].split("\n")[0].count("x") for t in UNEVEN}
    assert ranks == {1, 2, 3}


def _respecs() -> list:
    """The bundled specs, and the real Darknet files as `archc import` writes them, at input sizes one to
    three pixels off, where strides stop dividing evenly and dense layers stop matching."""
    texts = [(p.name, p.read_text(encoding="utf-8")) for p in sorted((ROOT / "specs").glob("*.arch"))]
    for path in sorted((REAL / "darknet").glob("*/*.cfg"))[:12]:
        with contextlib.suppress(ArchError):
            texts.append((path.name, import_text(path.read_text(encoding="utf-8"), path.name, blocks=False)))
    cases = []
    for name, text in texts:
        match = re.search(r"input\s+(\w+):\s*(\d+)x(\d+)x(\d+)", text)
        if not match:
            continue
        c, h, w = (int(v) for v in match.groups()[1:])
        for delta in (1, 3):
            resized = text.replace(match.group(0), f"input {match.group(1)}: {c}x{h + delta}x{w}")
            cases.append(pytest.param(resized, id=f"{name}+{delta}"))
    return cases


@pytest.mark.parametrize("text", _respecs())
def test_every_fix_on_real_networks_at_other_sizes_works(text):
    check_fixes(text)


def test_every_dense_size_fix_works():
    from test_diagnostics import LENET_28, MNIST_PAD_1

    for text in (LENET_28, MNIST_PAD_1):
        (error,) = diagnostics(text)
        assert error.code == "E0218" and len(error.fixes) == len(error.help)
        assert check_fixes(text) == len(error.help)
    (error,) = diagnostics(LENET_28)
    assert [f.apply(LENET_28) for f in error.fixes] == [
        LENET_28.replace("C1: 6 @ 5x5", "C1: 6 @ 5x5 pad=2"),
        LENET_28.replace("1x28x28", "1x32x32"),
        LENET_28.replace("in=400", "in=256"),
    ]


# -- item 2: sizes and figures above 2^62 ------------------------------------------------------


def archc_cli(*args: str, timeout: float = 120):
    return subprocess.run([sys.executable, "-m", "archc", *args], capture_output=True, text=True, timeout=timeout)


def e0306(text: str, file: str = "t.arch"):
    (error,) = [d for d in diagnostics(text, file) if d.severity == "error"]
    assert error.code == "E0306", error.message
    return error


@pytest.mark.parametrize("digits", [160, 2200])
def test_a_kernel_above_2_62_is_e0306_at_the_kernel_even_when_the_output_is_small(tmp_path, digits):
    k = 10**digits + 1
    text = net(f"conv: 1 @ {k} pad={k}//2", shape="1x8")  # the output is 1x8: only the kernel is huge
    error = e0306(text)
    assert (error.span.line, error.span.col) == (3, 13)  # the kernel
    assert error.message == "conv conv1: kernel is larger than 2^62"
    spec = tmp_path / "k.arch"
    spec.write_text(text, encoding="utf-8")
    for command in ("check", "table"):  # were OverflowError (conventions.py) and ValueError (str of the count)
        run = archc_cli(command, str(spec))
        assert run.returncode == 1 and "Traceback" not in run.stderr and "[E0306]" in run.stderr


@pytest.mark.parametrize(
    "key,value,code",
    [
        # a number above 2^62 is refused where the importer reads it (E0213, at the value) ...
        ("size=3", 10**200 + 1, "E0213"),
        ("size=3", 10**2200 + 1, "E0213"),
        ("filters=64", 10**200 + 1, "E0213"),
        # ... and one below it whose tensor passes 2^62 values is E0306, as in a spec
        ("filters=64", 2**61, "E0306"),
    ],
)
def test_a_mutated_yolov4_tiny_is_a_located_error_not_a_traceback(tmp_path, key, value, code):
    text = (REAL / "darknet" / "alexeyab" / "yolov4-tiny.cfg").read_text(encoding="utf-8")
    name = key.split("=")[0]
    cfg = tmp_path / "yolov4-tiny.cfg"
    cfg.write_text(text.replace(key, f"{name}={value}", 1), encoding="utf-8")
    for command in ("check", "table"):
        run = archc_cli(command, str(cfg))
        assert run.returncode == 1 and "Traceback" not in run.stderr, run.stderr[-2000:]
        assert f"[{code}]" in run.stderr.splitlines()[0]


def test_every_size_argument_is_bounded_but_float_arguments_are_not():
    for layer in (f"conv: 4 @ 3 /{2**62 + 1}", f"conv: 4 @ 3 dilation={2**62 + 1}", f"maxpool: 2 pad=({2**62 + 1},0)"):
        assert e0306(net(layer, shape="3x8")).span.col > 3  # at the argument
    archc.loads(net(f"leaky_relu: {10**400}", shape="3x8"), "t.arch")  # a slope: a float, infinite, allowed


def test_a_layer_whose_parameters_or_macs_pass_2_62_is_e0306():
    dense = e0306(net(f"dense: {2**32}", shape=f"{2**31}"))  # 2^63 weights; a 2^32 output is small
    assert dense.message == "dense dense1 has more than 2^62 parameters"
    conv = e0306(net(f"conv: 1 @ {2**30} pad={2**29}", shape=f"1x{2**40}"))  # 2^70 MACs, 2^30 weights
    assert conv.message == "conv conv1 has more than 2^62 MACs"


def test_totals_that_pass_2_62_are_e0306_where_they_do():
    error = e0306(net("relu", "relu", shape=f"{2**61}"))  # each tensor 2^61 values, 3 x 2^61 in all
    assert error.message == "the network, up to relu2, has more than 2^62 activation values"
    assert error.span.line == 4


@pytest.mark.parametrize(
    "layer,shape,answer",
    [
        (f"conv: {2**62} @ 1 groups=3", f"{2**62}x1", f"groups must divide {2**62}"),
        ("chunk: 2", f"{2**62 - 1}x1", f"parts must divide {2**62 - 1}"),
    ],
)
def test_channels_that_do_not_divide_are_answered_without_counting_to_2_62(layer, shape, answer):
    text = net(layer, shape=shape)
    run = subprocess.run(  # counting every divisor to 2^62 would take centuries; this is well under a second
        [
            sys.executable,
            "-c",
            f"import archc\ntry:\n    archc.loads({text!r}, 't.arch')\nexcept archc.ArchError as e:\n"
            "    print(e.diagnostics[0].code, e.diagnostics[0].help)",
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert run.stdout.startswith("E0303") and answer in run.stdout


def test_small_channel_counts_still_list_their_divisors():
    (error,) = diagnostics(net("conv: 18 @ 1 groups=5", shape="12x8x8"))
    assert error.help == ["the common divisors of 12 and 18 are 1, 2, 3, 6"]
    (error,) = diagnostics(net("chunk: 7", shape="720x2"))
    assert error.help == ["the divisors of 720 are 1, 2, 3, 4, 5, 6, 8, 9, 10, 12, 15, 16, ... 720"]


# -- item 3: what archc accepts, the generated code runs -------------------------------------------


def test_a_3d_avgpool_smaller_than_its_window_is_an_error_with_a_fix_torch_accepts():
    text = net("avgpool p: 3 /2 pad=1", shape="1x2x2x2")  # valid to archc before; AvgPool3d rejects it
    with pytest.raises(RuntimeError, match="smaller than kernel size"):
        torch.nn.AvgPool3d(3, 2, 1)(torch.zeros(1, 1, 2, 2, 2))
    (error,) = diagnostics(text)
    assert (error.code, error.span.col) == ("E0205", 14)  # at the kernel
    assert error.help == ["use a window of at most 2x2x2, or a larger input", "kernel=2 fits, output 1x2x2x2"]
    assert error.fixes[0].apply(text) == text.replace(": 3 /2", ": 2 /2")  # the kernel was given by position
    assert check_fixes(text) == 1  # the fixed spec's generated module runs, and gives 1x2x2x2


def _torch_pool(op: str, nd: int, n: int, k: int, s: int, p: int, ceil: bool, d: int):
    """The output shape PyTorch gives (None: it refuses), with its own padding; l2pool pads first, as archc
    does (torch's LPPool has no padding)."""
    x = torch.zeros(1, 1, *([n] * nd))
    try:
        if op == "l2pool":
            padded = torch.nn.functional.pad(x, (p,) * (2 * nd))
            y = getattr(torch.nn, f"LPPool{nd}d")(2, k, s, ceil_mode=ceil)(padded)
        elif op == "avgpool":
            y = getattr(torch.nn, f"AvgPool{nd}d")(k, s, p, ceil_mode=ceil)(x)
        else:  # maxpool; minpool is max pooling of -x
            y = getattr(torch.nn, f"MaxPool{nd}d")(k, s, p, dilation=d, ceil_mode=ceil)(x)
    except RuntimeError:
        return None
    return tuple(y.shape[1:]) if min(y.shape[2:]) > 0 else None


POOL_GRID = [
    (op, nd, n, k, s, p, ceil, d)
    for op in ("maxpool", "avgpool", "minpool", "l2pool")
    for nd in (1, 2, 3)
    for n in range(1, 6 if nd < 3 else 5)
    for k in range(1, 5)
    for s in (1, 2, 3)
    for p in range(3)
    for ceil in (False, True)
    for d in ((1, 2) if op in ("maxpool", "minpool") else (1,))
    if not (op == "l2pool" and p > k // 2)  # torch's LPPool has no padding: at most k // 2 is archc's own rule
]


def test_window_pools_are_valid_exactly_when_torch_accepts_them_with_the_same_shape():
    disagree = []
    for op, nd, n, k, s, p, ceil, d in POOL_GRID:
        args = f"{k} /{s} pad={p}" + (" ceil" if ceil else "") + (f" dilation={d}" if d > 1 else "")
        text = net(f"{op}: {args}", shape="x".join(["1"] + [str(n)] * nd))
        try:
            ours = archc.loads(text, "t.arch").layers[-1].shape
        except ArchError:
            ours = None
        theirs = _torch_pool(op, nd, n, k, s, p, ceil, d)
        if op == "l2pool" and ceil and ours is not None and theirs is not None:
            # in ceil mode torch's LPPool may add a window that starts in the padding archc put
            # first, and the generated code crops it: the module itself is the oracle
            theirs = torch_shapes(text)["l2pool1"]
        if ours != theirs:
            disagree.append((op, nd, n, k, s, p, ceil, d, ours, theirs))
    assert len(POOL_GRID) > 4000 and not disagree, disagree[:10]


def test_the_numpy_conv_builds_only_the_padding_its_taps_read():
    import tracemalloc

    huge = net("conv c: 1 @ 3x3 dilation=1000000000 pad=1000000000", shape="1x8x8")
    small = huge.replace("1000000000", "20")  # torch pads this one literally; it reads the same pixels
    twin, _, _ = build(archc.loads(small, "s.arch"), "torch")
    model, _, _ = build(archc.loads(huge, "h.arch"), "numpy")
    model.load_state_dict(twin.state_dict())
    x = torch.randn(2, 1, 8, 8, generator=torch.Generator().manual_seed(0))
    tracemalloc.start()
    try:
        got = model(x.numpy())
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 2**20  # the padded input alone would be 4 x 10^18 values
    with torch.no_grad():
        want = twin(x)
    assert got.shape == tuple(want.shape) == (2, 1, 8, 8)
    np.testing.assert_allclose(got, want.numpy(), rtol=1e-5, atol=1e-6)


def _conv_case(rng: random.Random):
    """A convolution with a non-empty output, dilations and paddings from none to far past the input."""
    while True:
        nd = rng.choice([1, 2, 3])
        n = [rng.randint(1, 9 if nd < 3 else 6) for _ in range(nd)]
        k = [rng.randint(1, 4) for _ in range(nd)]
        d = [rng.choice([1, 2, 5, 13, 40]) for _ in range(nd)]
        s = [rng.randint(1, 3) for _ in range(nd)]
        pad = [rng.choice([0, 1, 3, 20, 60]) for _ in range(nd)]
        groups, c = rng.choice([(1, 2), (2, 2), (3, 3)])
        if all(ni + 2 * p >= di * (ki - 1) + 1 for ni, p, di, ki in zip(n, pad, d, k)):
            return nd, n, k, d, s, pad, groups, c


@pytest.mark.parametrize("seed", range(150))
def test_the_numpy_conv_agrees_with_torch_for_any_dilation_and_padding(seed):
    from archc.codegen.runtime import numpy_kernels

    nd, n, k, d, s, pad, groups, c = _conv_case(random.Random(seed))
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(2, c, *n, generator=gen)
    w = torch.randn(c * 2, c // groups, *k, generator=gen)
    b = torch.randn(c * 2, generator=gen)
    conv = getattr(torch.nn.functional, f"conv{nd}d")
    want = conv(x, w, b, stride=tuple(s), padding=tuple(pad), dilation=tuple(d), groups=groups)
    got = numpy_kernels.conv(x.numpy(), w.numpy(), b.numpy(), tuple(s), tuple(pad), tuple(d), groups)
    assert got.shape == tuple(want.shape)
    np.testing.assert_allclose(got, want.numpy(), rtol=1e-4, atol=1e-4)


# -- every other shape hint that proposes an edit --------------------------------------------------


def test_an_empty_output_offers_pad_same_where_it_works():
    text = net("conv c: 4 @ 5x5 -> relu", shape="3x3x3")
    (error,) = diagnostics(text)
    assert error.code == "E0302" and error.help[-1] == "pad=same pads the input to fit the window, output 4x3x3"
    assert error.fixes[0].apply(text) == text.replace("5x5", "5x5 pad=same")
    assert check_fixes(text) == 1
    # a later layer that pad=same would break: no edit (flatten gives 4x3x3 = 36, not 4)
    (error,) = diagnostics(net("conv c: 4 @ 5x5", "flatten", "dense: 2 in=4", shape="3x3x3"))
    assert error.code == "E0302" and error.fixes == []


def test_a_dense_layer_on_a_map_gets_a_flatten_inserted_when_it_reads_the_statement_above():
    text = net("conv c: 4 @ 3 -> relu", "dense fc: 10 -> relu", "dense: 3", shape="3x4x4")
    (error,) = diagnostics(text)
    assert error.code == "E0304"
    assert error.help == [
        "`flatten fc_in` before it gives it 16 inputs, output 10",
        "`permute fc_in: 1x2x0` before it puts the channels last and applies it at every position, output 2x2x10",
    ]
    assert error.fixes[0].apply(text) == text.replace("  dense fc:", "  flatten fc_in\n  dense fc:")
    assert error.fixes[1].apply(text) == text.replace("  dense fc:", "  permute fc_in: 1x2x0\n  dense fc:")
    assert check_fixes(text) == 2
    named = net("conv c: 4 @ 3", "relu", "dense fc (c): 10", "output (fc, relu1)", shape="3x4x4")
    (error,) = [d for d in diagnostics(named) if d.code == "E0304"]  # a flatten above would not feed it
    assert error.fixes == [] and error.help == [
        "insert `flatten` before it (it would give 16 inputs)",
        "or, to apply it at every position, `permute: 1x2x0` before it puts the channels last",
    ]


def _random_mistake(rng: random.Random) -> str:
    """A small network with one of the mistakes a shape hint proposes an edit for."""
    size = rng.randint(2, 12)
    k = rng.randint(1, 6)
    mistake = rng.choice(
        [
            f"conv c: 4 @ {k}x{k} /{rng.randint(1, 3)}",  # empty, or uneven
            f"maxpool p: {k} /{rng.randint(1, 3)}",
            f"avgpool p: {k} /{rng.randint(1, 3)} pad={rng.randint(0, k // 2)}",
            "dense fc: 5",  # not flat
            f"conv c: 4 @ 3 pad={rng.randint(0, 1)}\n  flatten\n  dense fc: 5 in={rng.randint(1, 80)}",
            f"conv a: 2 @ 3 /{rng.randint(1, 2)} pad=1\n  shortcut s ({rng.choice(['x, a', 'x,a', 'a, x'])})",
        ]
    )
    if rng.random() < 0.1:  # a clip smaller than a 3-D average pool's window
        k = rng.randint(2, 5)
        return net(f"avgpool p: {k} /{rng.randint(1, 2)} pad={k // 2}", shape=f"2x{rng.randint(1, k - 1)}x{k}x{k}")
    depth = "x".join(str(size) for _ in range(rng.choice([1, 2, 3])))
    return net(mistake, *rng.choice([(), ("relu",), ("conv: 2 @ 1",)]), shape=f"2x{depth}")


MISTAKES = [t for t in (_random_mistake(random.Random(seed)) for seed in range(300)) if diagnostics(t)]


@pytest.mark.parametrize("text", MISTAKES[:80], ids=range(len(MISTAKES[:80])))
def test_every_fix_of_random_mistakes_works(text):
    check_fixes(text)


def test_the_random_mistakes_get_fixes_of_every_kind():
    codes = {d.code for t in MISTAKES for d in diagnostics(t) if d.fixes}
    assert {"W0301", "E0302", "E0205", "E0304", "E0218", "E0305"} <= codes


def test_a_shortcut_into_a_smaller_input_lists_the_smaller_first():
    text = net("conv a: 4 @ 3 /2 pad=1", "conv b (x): 4 @ 1", "shortcut s (b,a) -> relu", shape="4x8x8")
    (error,) = diagnostics(text)
    assert error.code == "E0305" and error.help == [
        "`shortcut (a, b)` adds every input into the smallest, output 4x4x4"
    ]
    assert error.fixes[0].apply(text) == text.replace("(b,a)", "(a, b)")
    assert check_fixes(text) == 1


def test_the_trials_of_a_big_network_are_bounded_by_the_layers_they_visit(monkeypatch):
    from archc.passes import hints, shapes

    passes = []
    real = shapes.infer_shapes

    def counted(graph, reporter, overrides=None, hints=True, sources=None):
        passes.append(len(graph))
        return real(graph, reporter, overrides, hints, sources)

    monkeypatch.setattr(shapes, "infer_shapes", counted)
    text = net(*["conv: 4 @ 3x3 pad=1"] * 3000, "flatten", "dense: 10 in=5", shape="3x8x8")
    (error,) = diagnostics(text)
    assert error.code == "E0218" and error.help == ["or, if 256 is what you want, write in=256"]
    trials = len(passes)  # the trials alone: the analysis calls the pass through its own reference
    assert 1 <= trials <= hints.WORK // 3003 and sum(passes) <= hints.WORK, passes
