"""Every layer type against PyTorch: output shape, parameters, buffers and MACs.

For each case the same layer is written once as an `.arch` statement and once
as a PyTorch module (or function), a random batch of 2 goes through the torch
version, and archc's analysed figures must equal what torch gives:

- shape: `tuple(out.shape[1:])` (per sample, channels first);
- params: `module.parameters()`;
- buffers: `module.buffers()` without BN's `num_batches_tracked` counter;
- MACs: `torch.utils.flop_counter.FlopCounterMode` (it reports 2 * MACs per
  sample for conv, transposed conv and linear; everything else is 0).

Padding that torch's layers cannot express (TF-style `same`, per-side pairs)
is built as `F.pad` followed by the layer with padding 0. The pad amounts are
computed here from the TensorFlow formula in figures.md, not taken from archc.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable
from dataclasses import dataclass

import pytest
import torch
import torch.nn.functional as F  # noqa: N812 (the usual torch spelling)
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

import archc
from archc import ArchError

BATCH = 2


# -- the torch side ---------------------------------------------------------------


class Lambda(nn.Module):
    """A function of the inputs, holding `modules` so their parameters count."""

    def __init__(self, fn: Callable, *modules: nn.Module):
        super().__init__()
        self.fn = fn
        self.inner = nn.ModuleList(modules)

    def forward(self, *xs):
        return self.fn(*self.inner, *xs)


class Pad(nn.Module):
    """F.pad with ((before, after), ...) per spatial dimension, first dimension first."""

    def __init__(self, sides, value: float = 0.0):
        super().__init__()
        self.flat = [p for pair in reversed(sides) for p in pair]
        self.value = value

    def forward(self, x):
        return F.pad(x, self.flat, value=self.value)


@dataclass(frozen=True)
class Figures:
    shape: tuple[int, ...]
    params: int
    buffers: int
    macs: int


def torch_figures(module: nn.Module, *shapes: tuple[int, ...]) -> Figures:
    module.eval()
    xs = [torch.randn(BATCH, *shape) for shape in shapes]
    counter = FlopCounterMode(display=False)
    with counter, torch.no_grad():
        out = module(*xs)
    flops = counter.get_total_flops()
    assert flops % (2 * BATCH) == 0, flops
    params = sum(p.numel() for p in module.parameters())
    buffers = sum(b.numel() for name, b in module.named_buffers() if not name.endswith("num_batches_tracked"))
    return Figures(tuple(out.shape[1:]), params, buffers, flops // (2 * BATCH))


# -- the archc side ---------------------------------------------------------------


def dims(shape) -> str:
    return "x".join(map(str, shape))


def spec(inputs: dict[str, tuple[int, ...]], *statements: str) -> str:
    lines = [f"input {name}: {dims(shape)}" for name, shape in inputs.items()] + list(statements)
    return "network N {\n" + "".join(f"  {line}\n" for line in lines) + "}\n"


def archc_figures(inputs: dict[str, tuple[int, ...]], stmt: str, name: str = "y") -> Figures:
    node = archc.loads(spec(inputs, stmt), "t.arch").layer(name)
    return Figures(tuple(node.shape), node.params, node.buffers, node.macs)


@dataclass(frozen=True)
class Case:
    inputs: dict  # name -> per-sample shape
    stmt: str  # the layer under test, named `y`
    build: Callable[[], nn.Module]  # its torch twin, built when the test runs

    def param(self, marks=()):
        shapes = ",".join(dims(s) for s in self.inputs.values())
        return pytest.param(self, id=f"{shapes}|{self.stmt}", marks=marks)


def one(shape, stmt, build) -> Case:
    return Case({"x": tuple(shape)}, stmt, build)


# -- padding, computed independently of archc -------------------------------------


class PerSide(tuple):
    """A 1-D (before, after) pair, as opposed to a per-dimension shape."""


def per_dim(value, nd: int) -> tuple[int, ...]:
    return (value,) * nd if isinstance(value, int) else tuple(value)


def tf_same(n: int, k: int, s: int, d: int) -> tuple[int, int]:
    """TensorFlow `SAME`: output ceil(n/s); the odd pixel of padding goes at the end."""
    out = math.ceil(n / s)
    total = max((out - 1) * s + d * (k - 1) + 1 - n, 0)
    return total // 2, total - total // 2


def sides(pad, spatial, kernel, stride, dilation) -> tuple[tuple[int, int], ...]:
    """((before, after), ...) per spatial dimension for any way a spec writes padding."""
    nd = len(spatial)
    k, s, d = per_dim(kernel, nd), per_dim(stride, nd), per_dim(dilation, nd)
    if pad == "same":
        return tuple(tf_same(*a) for a in zip(spatial, k, s, d))
    if pad == "valid":
        return ((0, 0),) * nd
    if pad == "full":
        return tuple((dd * (kk - 1),) * 2 for kk, dd in zip(k, d))
    if isinstance(pad, int):
        return ((pad, pad),) * nd
    if isinstance(pad, PerSide):
        return (tuple(pad),)
    return tuple(tuple(p) if isinstance(p, tuple) else (p, p) for p in pad)


def pad_text(pad) -> str:
    if isinstance(pad, str | int):
        return str(pad)
    if isinstance(pad, PerSide):
        return f"({pad[0]},{pad[1]})"
    if isinstance(pad[0], tuple):
        return "x".join(f"({b},{a})" for b, a in pad)
    return dims(pad)


def shape_text(value, nd: int, spaced: bool = False) -> str:
    if isinstance(value, int):
        return str(value)
    return (" x " if spaced else "x").join(map(str, value))


def symmetric(ss) -> bool:
    return all(b == a for b, a in ss)


CONV = {1: nn.Conv1d, 2: nn.Conv2d, 3: nn.Conv3d}
DECONV = {1: nn.ConvTranspose1d, 2: nn.ConvTranspose2d, 3: nn.ConvTranspose3d}
MAXPOOL = {1: F.max_pool1d, 2: F.max_pool2d, 3: F.max_pool3d}
AVGPOOL = {1: F.avg_pool1d, 2: F.avg_pool2d, 3: F.avg_pool3d}
LPPOOL = {1: nn.LPPool1d, 2: nn.LPPool2d, 3: nn.LPPool3d}
ADAPTIVE_AVG = {1: nn.AdaptiveAvgPool1d, 2: nn.AdaptiveAvgPool2d, 3: nn.AdaptiveAvgPool3d}
ADAPTIVE_MAX = {1: nn.AdaptiveMaxPool1d, 2: nn.AdaptiveMaxPool2d, 3: nn.AdaptiveMaxPool3d}
BATCHNORM = {1: nn.BatchNorm1d, 2: nn.BatchNorm2d, 3: nn.BatchNorm3d}


# -- convolutions -------------------------------------------------------------------


def conv_case(
    shape, filters, kernel, stride=1, pad=0, dilation=1, groups=1, bias=True, *, slash=True, spaced=False, bare=False
) -> Case:
    cin, *spatial = shape
    nd = len(spatial)
    parts = [f"conv y: {filters} @ {shape_text(kernel, nd, spaced)}"]
    if stride != 1:
        parts.append(f"/{shape_text(stride, nd)}" if slash else f"stride={shape_text(stride, nd)}")
    if pad != 0:
        parts.append(pad if bare and isinstance(pad, str) else f"pad={pad_text(pad)}")
    if dilation != 1:
        parts.append(f"dilation={shape_text(dilation, nd)}")
    if groups != 1:
        parts.append(f"groups={groups}")
    if not bias:
        parts.append("bias=false")

    def build():
        g = cin if groups == "depthwise" else groups
        ss = sides(pad, spatial, kernel, stride, dilation)
        k, s, d = per_dim(kernel, nd), per_dim(stride, nd), per_dim(dilation, nd)
        if pad == "same" or not symmetric(ss):
            return nn.Sequential(Pad(ss), CONV[nd](cin, filters, k, s, 0, d, g, bias))
        return CONV[nd](cin, filters, k, s, tuple(b for b, _ in ss), d, g, bias)

    return one(shape, " ".join(parts), build)


def dwconv_case(shape, kernel, stride=1, pad=0, dilation=1, multiplier=1, bias=True) -> Case:
    cin, *spatial = shape
    nd = len(spatial)
    parts = [f"dwconv y: {shape_text(kernel, nd)}"]
    if stride != 1:
        parts.append(f"/{shape_text(stride, nd)}")
    if pad != 0:
        parts.append(f"pad={pad_text(pad)}")
    if dilation != 1:
        parts.append(f"dilation={shape_text(dilation, nd)}")
    if multiplier != 1:
        parts.append(f"multiplier={multiplier}")
    if not bias:
        parts.append("bias=false")

    def build():
        ss = sides(pad, spatial, kernel, stride, dilation)
        k, s, d = per_dim(kernel, nd), per_dim(stride, nd), per_dim(dilation, nd)
        conv = CONV[nd](cin, cin * multiplier, k, s, 0, d, groups=cin, bias=bias)
        return nn.Sequential(Pad(ss), conv)

    return one(shape, " ".join(parts), build)


def deconv_case(shape, filters, kernel, stride=1, pad=0, outpad=0, dilation=1, groups=1, bias=True) -> Case:
    cin, *spatial = shape
    nd = len(spatial)
    parts = [f"deconv y: {filters} @ {shape_text(kernel, nd)}"]
    if stride != 1:
        parts.append(f"/{shape_text(stride, nd)}")
    if pad != 0:
        parts.append(f"pad={pad_text(pad)}")
    if outpad != 0:
        parts.append(f"outpad={shape_text(outpad, nd)}")
    if dilation != 1:
        parts.append(f"dilation={shape_text(dilation, nd)}")
    if groups != 1:
        parts.append(f"groups={groups}")
    if not bias:
        parts.append("bias=false")

    def build():
        ss = sides(pad, spatial, kernel, stride, dilation)
        k, s, d, o = (per_dim(v, nd) for v in (kernel, stride, dilation, outpad))
        if symmetric(ss):
            return DECONV[nd](cin, filters, k, s, tuple(b for b, _ in ss), o, groups, bias, d)
        # Per-side padding of a transposed conv removes that many outputs at each end.
        crop = Pad(tuple((-b, -a) for b, a in ss))
        return nn.Sequential(DECONV[nd](cin, filters, k, s, 0, o, groups, bias, d), crop)

    return one(shape, " ".join(parts), build)


def conv_cases() -> list:
    cases = []
    # 2-D: every kernel x stride x padding; dilation, groups and bias cycle through
    # all their values with periods 2, 3 and 2 so each meets the others.
    kernels = [1, 3, 5, 7, (3, 5)]
    strides = [1, 2, 3]
    pads = [0, 1, "same", "valid", "full", ((0, 1), (2, 1))]
    for i, (k, s, p) in enumerate(itertools.product(kernels, strides, pads)):
        d = (1, 2)[i % 2]
        g = (1, 2, "depthwise")[(i // 2) % 3]
        bias = (True, False)[(i // 6) % 2]
        cases.append(conv_case((4, 13, 14), 8, k, s, p, d, g, bias, slash=i % 4 != 0, spaced=i % 7 == 0))
    # 2-D: the full dilation x groups x bias grid, on two paddings.
    for d, g, bias, p in itertools.product((1, 2), (1, 2, "depthwise"), (True, False), (0, "same")):
        cases.append(conv_case((4, 9, 10), 8, 3, 2, p, d, g, bias, bare=True))
    # 2-D: per-dimension kernel, stride, padding and dilation.
    cases += [
        conv_case((3, 11, 12), 5, (3, 5), (1, 2), (1, 2), (2, 1)),
        conv_case((3, 11, 12), 5, (5, 3), (3, 1), "same", (1, 2)),
        conv_case((3, 11, 12), 6, (1, 7), 1, (0, 3), 1, 3),
        conv_case((3, 7, 7), 4, 3, 3, 0),  # figures.md: (7-3)/3+1 = 2.33 -> 2
        conv_case((3, 7, 7), 4, 3, 3, 1),  # ... with padding 1: 3
        conv_case((3, 4, 4), 4, 4, 1, 0),  # kernel = input: 1x1
        conv_case((2, 3, 3), 4, 3, 1, "full"),
    ]
    # 1-D
    for i, (k, s, p) in enumerate(itertools.product([1, 3, 5, 7], [1, 2, 3], [0, 2, "same", "full", PerSide((0, 3))])):
        d = (1, 2)[i % 2]
        g = (1, 2, "depthwise")[(i // 2) % 3]
        cases.append(conv_case((4, 20), 8, k, s, p, d, g, bias=i % 5 != 0))
    cases.append(conv_case((1, 14), 1, 2, 2))  # figures.md: length 14, filter 2, stride 2 -> 7
    # 3-D
    for i, (k, s, p) in enumerate(
        itertools.product([1, 3, (1, 3, 3), (3, 1, 2)], [1, 2], [0, 1, "same", ((1, 0), (0, 1), (1, 1))])
    ):
        d = (1, 2)[i % 2]
        g = (1, 2, "depthwise")[(i // 2) % 3]
        cases.append(conv_case((4, 6, 7, 8), 8, k, s, p, d, g, bias=i % 3 != 0))
    cases.append(conv_case((2, 5, 6, 7), 3, (3, 3, 3), (1, 2, 2), (1, 0, 2), (1, 1, 2)))
    return cases


def dwconv_cases() -> list:
    cases = []
    grid = itertools.product([3, 5, (3, 1)], [1, 2], [0, 1, "same"], [1, 2, 3])
    for i, (k, s, p, m) in enumerate(grid):
        cases.append(dwconv_case((3, 10, 11), k, s, p, (1, 2)[i % 2], m, bias=i % 3 != 0))
    cases += [
        dwconv_case((4, 15), 3, 2, 1, 1, 2),
        dwconv_case((4, 15), 5, 1, "same", 2, 1, bias=False),
        dwconv_case((2, 5, 6, 7), 3, 1, 1, 1, 3),
        dwconv_case((2, 5, 6, 7), (1, 3, 3), 2, "same", 1, 1, bias=False),
    ]
    return cases


def deconv_cases() -> list:
    cases = []
    grid = itertools.product([1, 2, 3, (3, 4)], [1, 2, 3], [0, 1, ((0, 1), (1, 0))], [1, 2])
    for i, (k, s, p, d) in enumerate(grid):
        outpad = 1 if max(s, d) > 1 and i % 2 else 0
        if max(s, d) > 2 and i % 3 == 0:
            outpad = 2
        groups = (1, 2)[(i // 3) % 2]
        cases.append(deconv_case((4, 5, 6), 6, k, s, p, outpad, d, groups, bias=i % 4 != 0))
    cases += [
        deconv_case((1, 3, 3), 1, 3, 2, 1),  # figures.md: 3x3 -> 5x5
        deconv_case((4, 7), 6, 4, 2, 1),
        deconv_case((4, 7), 2, 3, 3, 2, 2, 1, 2),
        deconv_case((4, 7), 4, 5, 1, PerSide((1, 3)), 0, 2, 4, False),
        deconv_case((4, 3, 4, 5), 6, 3, 2, 1, 1),
        deconv_case((4, 3, 4, 5), 2, (2, 3, 1), (2, 1, 3), (0, 1, 0), (1, 0, 2), 1, 2),
        deconv_case((4, 3, 4, 5), 4, 3, 1, 0, 0, 2, 4, False),
    ]
    return cases


# -- pooling ------------------------------------------------------------------------


def pool_case(kind, shape, kernel, stride=None, pad=0, ceil=False, dilation=1, *, count_pad=True, bare_ceil=True):
    _c, *spatial = shape
    nd = len(spatial)
    parts = [f"{kind} y: {shape_text(kernel, nd)}"]
    if stride is not None:
        parts.append(f"/{shape_text(stride, nd)}")
    if pad != 0:
        parts.append(f"pad={pad_text(pad)}")
    if dilation != 1:
        parts.append(f"dilation={shape_text(dilation, nd)}")
    if ceil:
        parts.append("ceil" if bare_ceil else "ceil=true")
    if not count_pad:
        parts.append("count_pad=false")

    def build():
        k = per_dim(kernel, nd)
        s = k if stride is None else per_dim(stride, nd)
        d = per_dim(dilation, nd)
        ss = sides(pad, spatial, k, s, d)
        if symmetric(ss) and pad != "same":
            before, pre = tuple(b for b, _ in ss), nn.Identity()
        else:
            assert not ceil, "no torch oracle for ceil mode with asymmetric padding"
            fill = {"maxpool": float("-inf"), "minpool": float("inf")}.get(kind, 0.0)  # padding never wins
            before, pre = (0,) * nd, Pad(ss, value=fill)
        if kind == "maxpool":
            op = lambda x: MAXPOOL[nd](x, k, s, before, d, ceil_mode=ceil)  # noqa: E731
        elif kind == "minpool":
            op = lambda x: -MAXPOOL[nd](-x, k, s, before, d, ceil_mode=ceil)  # noqa: E731
        elif kind == "avgpool":
            op = lambda x: AVGPOOL[nd](x, k, s, before, ceil_mode=ceil, count_include_pad=count_pad)  # noqa: E731
        elif max(before) == 0:  # l2pool, as torch's own LPPool
            kk, st = (k[0], s[0]) if nd == 1 else (k, s)  # lp_pool1d multiplies by kernel_size: an int
            return nn.Sequential(pre, LPPOOL[nd](2, kk, st, ceil_mode=ceil))
        else:  # l2pool with padding: what LPPool computes, with avg_pool's padding
            op = lambda x: (AVGPOOL[nd](x * x, k, s, before, ceil_mode=ceil) * math.prod(k)).sqrt()  # noqa: E731
        return nn.Sequential(pre, Lambda(op))

    return one(shape, " ".join(parts), build)


POOLS = ["maxpool", "avgpool", "minpool", "l2pool"]
POOL_SHAPES = {1: (3, 11), 2: (3, 9, 10), 3: (2, 5, 6, 7)}


def pool_cases() -> list:
    cases = []
    for kind, nd in itertools.product(POOLS, (1, 2, 3)):
        shape = POOL_SHAPES[nd]
        kernels = [2, 3] + ([(2, 3)] if nd == 2 else [(3, 2, 2)] if nd == 3 else [])
        for i, (k, s, p, c) in enumerate(itertools.product(kernels, [None, 1, 2, 3], [0, 1], [False, True])):
            d = (1, 2)[(i // 2) % 2] if kind in ("maxpool", "minpool") else 1
            cases.append(pool_case(kind, shape, k, s, p, c, d, bare_ceil=i % 3 != 0))
    for kind in POOLS:
        cases += [
            pool_case(kind, (3, 9, 10), 3, 2, "same"),
            pool_case(kind, (3, 9, 10), 2, None, "same"),
            pool_case(kind, (3, 9, 10), 3, 2, ((0, 1), (1, 0))),
            pool_case(kind, (3, 9, 10), (2, 3), (2, 1), (1, 0), True),
            pool_case(kind, (3, 11), 4, 3, PerSide((2, 1))),
            pool_case(kind, (2, 5, 6, 7), 3, 2, "same"),
        ]
    cases += [
        pool_case("avgpool", (3, 9, 10), 3, 2, 1, count_pad=False),
        pool_case("avgpool", (3, 9, 10), 3, 2, 1, True, count_pad=False),
        pool_case("maxpool", (3, 9, 10), 3, 2, 1, True, (2, 1)),
        pool_case("maxpool", (3, 227, 227), 3, 2, 0, True),  # AlexNet (Caffe): 227 -> 113
        pool_case("maxpool", (3, 112, 112), 3, 2, 0, True),  # GoogLeNet: 112 -> 56
    ]
    return cases


def naive_ceil(n, k, s, p, d=1) -> int:
    return math.ceil((n + 2 * p - d * (k - 1) - 1) / s) + 1


def ceil_sweep() -> list:
    """Every small 1-D ceil-mode geometry; the ones where the last-window rule cuts one off are marked."""
    cases = []
    for n, k, s, d in itertools.product(range(2, 10), (2, 3, 4), (1, 2, 3, 4), (1, 2)):
        for p in range(k // 2 + 1):
            if n + 2 * p < d * (k - 1) + 1 or (d > 1 and n % 2):
                continue
            last = (naive_ceil(n, k, s, p, d) - 1) * s >= n + p  # would start in the right padding
            kinds = ("maxpool",) if d > 1 else ("maxpool", "avgpool") if last else ("maxpool",)
            for kind in kinds:
                case = pool_case(kind, (1, n), k, s, p, True, d)
                cases.append(pytest.param(case, id=f"{'rule' if last else 'plain'}|{n}|{case.stmt}"))
    return cases


CEIL_SWEEP = ceil_sweep()


def test_the_ceil_sweep_exercises_the_last_window_rule():
    rule = [c for c in CEIL_SWEEP if c.id.startswith("rule")]
    assert len(rule) >= 20
    # The brief's example (input 6, kernel 2, stride 2, pad 1, ceil) is plain: 4 windows
    # start at -1, 1, 3, 5, all inside. Input 5 is where the rule cuts the 4th (start 5).
    assert any("|5|maxpool y: 2 /2 pad=1 ceil" in c.id for c in rule)
    assert not any("|6|maxpool y: 2 /2 pad=1 ceil" in c.id for c in rule)


def adaptive_cases() -> list:
    cases = []
    for kind, table in (("adaptiveavgpool", ADAPTIVE_AVG), ("adaptivemaxpool", ADAPTIVE_MAX)):
        for shape, size in [
            ((3, 11), 1),
            ((3, 11), 4),
            ((3, 11), 13),
            ((3, 9, 10), 1),
            ((3, 9, 10), 3),
            ((3, 9, 10), (2, 5)),
            ((3, 9, 10), (12, 4)),
            ((2, 5, 6, 7), 2),
            ((2, 5, 6, 7), (1, 3, 4)),
        ]:
            nd = len(shape) - 1
            cases.append(one(shape, f"{kind} y: {shape_text(size, nd)}", lambda t=table, nd=nd, sz=size: t[nd](sz)))
    for kind, table in (("globalavgpool", ADAPTIVE_AVG), ("globalmaxpool", ADAPTIVE_MAX)):
        for shape in [(3, 11), (3, 9, 10), (2, 5, 6, 7), (4, 1, 1)]:
            nd = len(shape) - 1
            cases.append(one(shape, f"{kind} y", lambda t=table, nd=nd: t[nd](1)))
    return cases


# -- everything else ----------------------------------------------------------------


def other_cases() -> list:
    cases = []
    # batch norm: vector, C x L, C x H x W, C x D x H x W
    for shape, nd, args, options in [
        ((16,), 1, "", {}),
        ((6, 10), 1, ": eps=1e-3", {"eps": 1e-3}),
        ((5, 4, 4), 2, "", {}),
        ((5, 4, 4), 2, ": eps=0.001 momentum=0.01", {"eps": 0.001, "momentum": 0.01}),
        ((3, 2, 3, 4), 3, ": momentum=0.2", {"momentum": 0.2}),
    ]:
        cases.append(one(shape, f"bn y{args}", lambda nd=nd, c=shape[0], o=options: BATCHNORM[nd](c, **o)))
    # local response normalisation
    for shape, args, options in [
        ((7, 5, 5), "5", {}),
        ((7, 5, 5), "5 alpha=1e-4 beta=0.75 k=2", {"alpha": 1e-4, "beta": 0.75, "k": 2.0}),
        ((8, 9), "3 k=1.0", {"k": 1.0}),
        ((4, 2, 3, 3), "2 alpha=0.001", {"alpha": 0.001}),
    ]:
        size = int(args.split()[0])
        cases.append(one(shape, f"lrn y: {args}", lambda n=size, o=options: nn.LocalResponseNorm(n, **o)))
    # dropout
    for shape in [(20,), (3, 5, 5), (2, 7)]:
        cases.append(one(shape, "dropout y: 0.3", lambda: nn.Dropout(0.3)))
    cases.append(one((3, 5, 5), "dropout y", lambda: nn.Dropout()))
    # dense
    for n_in, units, bias in [(20, 7, True), (20, 7, False), (1, 1, True), (300, 10, True), (64, 128, False)]:
        text = f"dense y: {units}" + ("" if bias else " bias=false")
        cases.append(one((n_in,), text, lambda i=n_in, o=units, b=bias: nn.Linear(i, o, bias=b)))
    # flatten
    for shape in [(20,), (3, 7), (3, 4, 5), (2, 3, 4, 5)]:
        cases.append(one(shape, "flatten y", lambda: nn.Flatten()))
    # reshape
    for shape, target in [((3, 4, 5), (12, 5)), ((3, 4, 5), (60,)), ((60,), (3, 4, 5)), ((2, 3, 4, 5), (6, 2, 10))]:
        text = f"reshape y: {dims(target)}"
        cases.append(one(shape, text, lambda t=target: Lambda(lambda x: x.reshape(x.shape[0], *t))))
    # upsample (nearest)
    upsamples = [((3, 4, 5), None), ((3, 4, 5), 3), ((3, 4, 5), (2, 3)), ((2, 7), 2), ((2, 2, 3, 4), (1, 2, 3))]
    for shape, scale in upsamples:
        nd = len(shape) - 1
        text = "upsample y" if scale is None else f"upsample y: {shape_text(scale, nd)}"
        factor = tuple(float(v) for v in per_dim(2 if scale is None else scale, nd))
        cases.append(one(shape, text, lambda f=factor: nn.Upsample(scale_factor=f, mode="nearest")))
    # zeropad
    for shape, pad in [
        ((3, 4, 5), 1),
        ((3, 4, 5), (1, 2)),
        ((3, 4, 5), ((0, 1), (2, 3))),
        ((2, 7), 2),
        ((2, 7), PerSide((1, 2))),
        ((2, 3, 4, 5), (1, 0, 2)),
        ((2, 3, 4, 5), ((1, 0), (0, 2), (3, 1))),
    ]:
        ss = sides(pad, shape[1:], 1, 1, 1)
        cases.append(one(shape, f"zeropad y: {pad_text(pad)}", lambda ss=ss: Pad(ss)))
    # concat along channels, add element-wise
    for shapes in [
        [(3, 8, 8), (5, 8, 8)],
        [(3, 8, 8), (1, 8, 8), (4, 8, 8)],
        [(3,), (4,)],
        [(2, 9), (6, 9)],
        [(1, 2, 3, 4), (2, 2, 3, 4)],
    ]:
        names = [f"a{i}" for i in range(len(shapes))]
        inputs = dict(zip(names, shapes))
        cases.append(Case(inputs, f"concat y ({', '.join(names)})", lambda: Lambda(lambda *xs: torch.cat(xs, 1))))
    for shapes in [[(3, 8, 8)] * 2, [(4, 9)] * 3, [(10,)] * 2, [(2, 2, 3, 4)] * 2]:
        names = [f"a{i}" for i in range(len(shapes))]
        inputs = dict(zip(names, shapes))
        cases.append(Case(inputs, f"add y ({', '.join(names)})", lambda: Lambda(lambda *xs: sum(xs))))
    return cases


def darknet_shortcut(prev, add):
    """Darknet's shortcut_cpu (pjreddie/darknet src/blas.c), loop for loop: `add` summed into a copy of `prev`."""
    out = prev.clone()
    c2, h2, w2 = prev.shape[1:]
    c1, h1, w1 = add.shape[1:]
    stride, sample = max(w1 // w2, 1), max(w2 // w1, 1)
    for k in range(min(c1, c2)):
        for j in range(min(h1, h2)):
            for i in range(min(w1, w2)):
                out[:, k, j * sample, i * sample] += add[:, k, j * stride, i * stride]
    return out


def rearrange_cases() -> list:
    cases = []
    # chunk: torch.chunk along the channels
    for shape, parts, index in [
        ((6, 4, 4), 2, 1),
        ((6, 4, 4), 3, 0),
        ((8,), 4, 3),
        ((4, 5), 1, 0),
        ((6, 2, 2, 2), 2, 1),
    ]:
        text = f"chunk y: {parts}" + ("" if index == 0 else f" index={index}")
        cases.append(one(shape, text, lambda p=parts, i=index: Lambda(lambda x: torch.chunk(x, p, 1)[i])))
    # crop: a window; centred at floor((n - size) / 2) unless an offset is given
    for shape, size, offset in [
        ((3, 8, 8), (4, 4), None),
        ((3, 7, 9), (4, 5), None),
        ((2, 10), (3,), (5,)),
        ((3, 8, 6), (2, 3), (6, 0)),
        ((2, 5, 6, 7), (3, 3, 3), None),
    ]:
        text = f"crop y: {dims(size)}" + ("" if offset is None else f" offset={dims(offset)}")
        start = offset or tuple((n - k) // 2 for n, k in zip(shape[1:], size))
        window = tuple(slice(o, o + k) for o, k in zip(start, size))
        cases.append(one(shape, text, lambda w=window: Lambda(lambda x: x[(slice(None), slice(None), *w)])))
    # space_to_depth: PixelUnshuffle
    for shape, block in [((3, 4, 6), 2), ((2, 6, 9), 3), ((5, 4, 4), 1)]:
        cases.append(one(shape, f"space_to_depth y: {block}", lambda b=block: nn.PixelUnshuffle(b)))
    cases.append(one((3, 4, 6), "space_to_depth y", lambda: nn.PixelUnshuffle(2)))
    # shortcut: Darknet's rule, computed by its own loops
    for shapes in [
        [(4, 6, 6), (4, 6, 6)],
        [(8, 4, 4), (4, 8, 8)],  # ResNet's projection-free downsampling: fewer channels, twice the size
        [(4, 4, 4), (8, 4, 4)],  # more channels in the added input: the surplus is dropped
        [(6, 3, 3), (4, 7, 7)],  # 7 // 3 = 2: every other pixel of the first 6 rows and columns
        [(5, 5, 5), (5, 5, 5), (2, 10, 10)],
    ]:
        names = [f"a{i}" for i in range(len(shapes))]

        def fn(*xs):
            out = xs[0]
            for x in xs[1:]:
                out = darknet_shortcut(out, x)
            return out

        cases.append(Case(dict(zip(names, shapes)), f"shortcut y ({', '.join(names)})", lambda fn=fn: Lambda(fn)))
    cases.append(Case({"a": (6,), "b": (4,)}, "shortcut y (a, b)", lambda: Lambda(lambda a, b: a + F.pad(b, (0, 2)))))
    return cases


ACTIVATIONS = {
    "relu": lambda: nn.ReLU(),
    "leaky_relu": lambda: nn.LeakyReLU(),
    "leaky_relu: 0.2": lambda: nn.LeakyReLU(0.2),
    "relu6": lambda: nn.ReLU6(),
    "elu": lambda: nn.ELU(),
    "elu: 0.5": lambda: nn.ELU(0.5),
    "gelu": lambda: nn.GELU(),
    "silu": lambda: nn.SiLU(),
    "hardswish": lambda: nn.Hardswish(),
    "mish": lambda: nn.Mish(),
    "tanh": lambda: nn.Tanh(),
    "sigmoid": lambda: nn.Sigmoid(),
    "softmax": lambda: nn.Softmax(dim=1),
    "identity": lambda: nn.Identity(),
}


def activation_cases() -> list:
    cases = []
    for i, (text, build) in enumerate(ACTIVATIONS.items()):
        name, _, args = text.partition(":")
        stmt = f"{name} y" + (f":{args}" if args else "")
        for shape in [(3, 5, 6), [(10,), (2, 7), (2, 3, 4, 5)][i % 3]]:
            cases.append(one(shape, stmt, build))
        # the `-> activation` shorthand on a conv: the conv's figures, the same shape
        arrow = f"{name}({args.strip()})" if args else name
        cases.append(
            one(
                (3, 6, 6),
                f"conv y: 4 @ 3x3 pad=1 -> {arrow}",
                lambda b=build: nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), b()),
            )
        )
    return cases


LAYER_CASES = [
    c.param()
    for c in (
        conv_cases()
        + dwconv_cases()
        + deconv_cases()
        + pool_cases()
        + adaptive_cases()
        + other_cases()
        + rearrange_cases()
        + activation_cases()
    )
]


@pytest.mark.parametrize("case", LAYER_CASES)
def test_layer_matches_torch(case: Case):
    expected = torch_figures(case.build(), *case.inputs.values())
    assert archc_figures(case.inputs, case.stmt) == expected


@pytest.mark.parametrize("case", CEIL_SWEEP)
def test_ceil_mode_matches_torch(case: Case):
    expected = torch_figures(case.build(), *case.inputs.values())
    assert archc_figures(case.inputs, case.stmt) == expected


# A ceil-mode window may hang over the end of the input when the kernel is larger
# than the (padded) input: ceil((n + 2p - d(k-1) - 1)/s) + 1 = 1 for -s < n + 2p - d(k-1) - 1 < 0,
# as figures.md's ceil formula, PyTorch's max/avg pooling and Caffe give.
CEIL_OVERHANG = [
    pool_case("maxpool", (1, 3), 4, 3, 0, True),  # torch: 1; (3-4)/3 -> ceil -> 0, +1
    pool_case("avgpool", (1, 3), 4, 3, 0, True),
    pool_case("minpool", (1, 3), 5, 3, 0, True),  # span -2 > -3: still 1
    pool_case("l2pool", (1, 3), 4, 2, 0, True),
    pool_case("maxpool", (1, 1), 4, 2, 1, True),  # 1 + 2 padding < 4
    pool_case("maxpool", (2, 3, 3), 4, 3, 0, True),  # 2-D: 1x1
    pool_case("avgpool", (2, 3, 3), 4, 3, 0, True),
    pool_case("maxpool", (2, 9, 2), (4, 4), None, 0, True, (2, 1)),  # only W overhangs: 2x1
    pool_case("maxpool", (2, 3, 3, 3), 4, 3, 0, True),  # 3-D: 1x1x1
]


@pytest.mark.parametrize("case", [c.param() for c in CEIL_OVERHANG])
def test_ceil_mode_window_larger_than_the_input(case: Case):
    expected = torch_figures(case.build(), *case.inputs.values())
    assert 1 in expected.shape[1:]
    assert archc_figures(case.inputs, case.stmt) == expected


def test_ceil_mode_overhang_needs_the_window_to_start_inside():
    # With stride 1 the overhanging window's span is <= -s: torch rejects it, archc too.
    case = pool_case("maxpool", (1, 3), 4, 1, 0, True)
    with pytest.raises(RuntimeError):
        torch_figures(case.build(), *case.inputs.values())
    assert arch_error(spec(case.inputs, case.stmt)).code == "E0302"


def test_every_layer_type_is_covered():
    from test_layers_elementwise import ELEMENTWISE_CASES
    from test_layers_norms import NORM_CASES
    from test_layers_rnn import KINDS as RECURRENT_KINDS
    from test_sequences import SEQUENCE_LAYERS

    from archc.ops import OPS

    covered = {p.values[0].stmt.split()[0] for p in [*LAYER_CASES, *NORM_CASES, *ELEMENTWISE_CASES]}
    covered |= set(RECURRENT_KINDS)
    covered |= SEQUENCE_LAYERS
    covered |= {"attention", "sdpa"}  # tests/test_attention.py, against nn.MultiheadAttention and F.sdpa
    assert set(OPS) - {"input"} <= covered, set(OPS) - covered


# -- whole networks -----------------------------------------------------------------

SMALL_NET = """
network Small {
  input x: 3x16x16
  conv c1: 8 @ 3x3 pad=1 bias=false
  bn b1
  relu
  maxpool p1: 2
  conv c2: 16 @ 3x3 /2 same groups=2 -> relu6
  dwconv d: 3x3 pad=1 multiplier=2
  lrn: 3
  deconv up: 8 @ 2x2 /2
  avgpool: 3 /2 pad=1 ceil
  zeropad: (0,1)x(0,1)
  globalavgpool
  flatten
  dense f1: 32
  bn b2
  dropout: 0.5
  dense f2: 10 bias=false
  softmax
}
"""


def small_net_torch() -> nn.Module:
    return nn.Sequential(
        nn.Conv2d(3, 8, 3, padding=1, bias=False),
        nn.BatchNorm2d(8),
        nn.ReLU(),
        nn.MaxPool2d(2),
        Pad(tuple(tf_same(8, 3, 2, 1) for _ in range(2))),
        nn.Conv2d(8, 16, 3, 2, groups=2),
        nn.ReLU6(),
        nn.Conv2d(16, 32, 3, padding=1, groups=16),
        nn.LocalResponseNorm(3),
        nn.ConvTranspose2d(32, 8, 2, 2),
        nn.AvgPool2d(3, 2, 1, ceil_mode=True),
        Pad(((0, 1), (0, 1))),
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
        nn.Linear(8, 32),
        nn.BatchNorm1d(32),
        nn.Dropout(0.5),
        nn.Linear(32, 10, bias=False),
        nn.Softmax(dim=1),
    )


def test_small_network_totals_equal_torch():
    net = archc.loads(SMALL_NET, "small.arch")
    module = small_net_torch()
    expected = torch_figures(module, (3, 16, 16))
    assert net.layers[-1].shape == expected.shape
    assert net.totals.params == expected.params == sum(p.numel() for p in module.parameters())
    assert net.totals.buffers == expected.buffers
    assert net.totals.macs == expected.macs
    assert net.totals.flops == 2 * expected.macs
    assert net.totals.params == sum(layer.params for layer in net.layers)


BRANCHING_NET = """
network Branches {
  input x: 4x12x12
  conv a: 8 @ 3x3 pad=1 bias=false
  conv b(x): 8 @ 1x1 -> relu
  add s (a, b)
  conv c(s): 6 @ 3x3 /2 same
  maxpool m(s): 3 /2 pad=1
  concat j (c, m)
  conv e: 10 @ 1x1 groups=2
  globalmaxpool
  flatten
  dense: 5
}
"""


class Branches(nn.Module):
    def __init__(self):
        super().__init__()
        self.a = nn.Conv2d(4, 8, 3, padding=1, bias=False)
        self.b = nn.Conv2d(4, 8, 1)
        self.c = nn.Sequential(Pad((tf_same(12, 3, 2, 1),) * 2), nn.Conv2d(8, 6, 3, 2))
        self.m = nn.MaxPool2d(3, 2, 1)
        self.e = nn.Conv2d(14, 10, 1, groups=2)
        self.head = nn.Sequential(nn.AdaptiveMaxPool2d(1), nn.Flatten(), nn.Linear(10, 5))

    def forward(self, x):
        s = self.a(x) + torch.relu(self.b(x))
        return self.head(self.e(torch.cat([self.c(s), self.m(s)], 1)))


def test_branching_network_totals_equal_torch():
    net = archc.loads(BRANCHING_NET, "branches.arch")
    expected = torch_figures(Branches(), (4, 12, 12))
    assert net.layers[-1].shape == expected.shape
    assert (net.totals.params, net.totals.buffers, net.totals.macs) == (
        expected.params,
        expected.buffers,
        expected.macs,
    )
    assert net.layer("j").shape == (14, 6, 6)


# -- errors that torch raises too ---------------------------------------------------


def arch_error(text: str):
    with pytest.raises(ArchError) as info:
        archc.loads(text, "t.arch")
    errors = info.value.errors
    assert len(errors) == 1, [d.message for d in errors]
    return errors[0]


EMPTY_OUTPUT = [
    # (input shape, statement, column of the offending argument or None for the statement, torch twin)
    ((3, 3, 3), "conv big: 8 @ 5x5", None, lambda: nn.Conv2d(3, 8, 5)),
    ((3, 6, 6), "conv big: 8 @ 3x3 dilation=3", None, lambda: nn.Conv2d(3, 8, 3, dilation=3)),
    ((3, 8, 4), "conv big: 8 @ 3x5", None, lambda: nn.Conv2d(3, 8, (3, 5))),
    ((2, 4), "conv big: 2 @ 5", None, lambda: nn.Conv1d(2, 2, 5)),
    ((2, 4, 4, 2), "conv big: 2 @ 3", None, lambda: nn.Conv3d(2, 2, 3)),
    ((2, 4, 4), "dwconv big: 3x3 dilation=2", None, lambda: nn.Conv2d(2, 2, 3, dilation=2, groups=2)),
    ((3, 4, 4), "maxpool big: 5", None, lambda: nn.MaxPool2d(5)),
    ((3, 2, 2), "avgpool big: 3", None, lambda: nn.AvgPool2d(3)),
    ((3, 5), "maxpool big: 3 dilation=3", None, lambda: nn.MaxPool1d(3, dilation=3)),
    ((3, 2, 2), "deconv big: 4 @ 3x3 pad=3", "pad=3", lambda: nn.ConvTranspose2d(3, 4, 3, padding=3)),
]


@pytest.mark.parametrize(
    "shape, stmt, where, build",
    [pytest.param(*e, id=f"{dims(e[0])}|{e[1]}") for e in EMPTY_OUTPUT],
)
def test_empty_output_is_e0302_and_torch_rejects_it_too(shape, stmt, where, build):
    with pytest.raises((RuntimeError, ValueError)):
        torch_figures(build(), shape)
    line = f"    {stmt}"
    d = arch_error(f"network N {{\n  input x: {dims(shape)}\n{line}\n}}\n")
    assert d.code == "E0302", d.message
    assert d.span.line == 3
    expected_col = line.index(where) + 1 if where else line.index(stmt.split()[0]) + 1
    assert d.span.col == expected_col, (d.span, d.message)


def test_empty_output_after_semicolons_points_at_its_own_statement():
    line = "  input x: 3x3x3; relu; conv big: 8 @ 5x5 ; relu"
    d = arch_error(f"network N {{\n{line}\n}}")
    assert d.code == "E0302"
    assert (d.span.line, d.span.col) == (2, line.index("conv") + 1)


def test_transposed_conv_with_zero_output_is_an_error_though_torch_allows_it():
    # torch returns an empty (N, C, 0) tensor here; archc treats size <= 0 as E0302,
    # pointing at the padding that causes it.
    expected = torch_figures(nn.ConvTranspose1d(2, 4, 1, 2, padding=2, output_padding=1, dilation=2), (2, 2))
    assert expected.shape == (4, 0)
    line = "  deconv y: 4 @ 1 /2 pad=2 outpad=1 dilation=2"
    d = arch_error(f"network N {{\n  input x: 2x2\n{line}\n}}")
    assert d.code == "E0302"
    assert (d.span.line, d.span.col) == (3, line.index("pad=") + 1)


POOL_PAD = [
    ((3, 8, 8), "maxpool y: 2 pad=2", lambda: nn.MaxPool2d(2, padding=2)),
    ((3, 8, 8), "avgpool y: 3 /2 pad=2", lambda: nn.AvgPool2d(3, 2, padding=2)),
    ((3, 8), "maxpool y: 3 pad=2 dilation=2", lambda: nn.MaxPool1d(3, padding=2, dilation=2)),
    ((3, 8, 8), "minpool y: 4 pad=(0,3)x(0,0)", None),
]


@pytest.mark.parametrize("shape, stmt, build", [pytest.param(*p, id=f"{dims(p[0])}|{p[1]}") for p in POOL_PAD])
def test_pool_padding_over_half_the_window_is_rejected_as_torch_does(shape, stmt, build):
    if build is not None:
        with pytest.raises(RuntimeError):
            torch_figures(build(), shape)
    line = f"  {stmt}"
    d = arch_error(f"network N {{\n  input x: {dims(shape)}\n{line}\n}}")
    assert d.code == "E0205", d.message
    assert (d.span.line, d.span.col) == (3, line.index("pad=") + 1)


GROUPS = [
    ((6, 8, 8), "conv c: 8 @ 3x3 groups=4", lambda: nn.Conv2d(6, 8, 3, groups=4)),  # 4 does not divide 6
    ((4, 8, 8), "conv c: 6 @ 3x3 groups=4", lambda: nn.Conv2d(4, 6, 3, groups=4)),  # 4 does not divide 6 filters
    ((4, 9), "conv c: 6 @ 3 groups=depthwise", lambda: nn.Conv1d(4, 6, 3, groups=4)),
    ((6, 3, 4, 4), "conv c: 6 @ 3 groups=4", lambda: nn.Conv3d(6, 6, 3, groups=4)),
    ((4, 5, 5), "deconv c: 6 @ 3x3 groups=4", lambda: nn.ConvTranspose2d(4, 6, 3, groups=4)),
    ((6, 5, 5), "deconv c: 4 @ 3x3 groups=4", lambda: nn.ConvTranspose2d(6, 4, 3, groups=4)),
]


@pytest.mark.parametrize("shape, stmt, build", [pytest.param(*g, id=f"{dims(g[0])}|{g[1]}") for g in GROUPS])
def test_groups_not_dividing_is_e0303_and_torch_rejects_it_too(shape, stmt, build):
    with pytest.raises((RuntimeError, ValueError)):
        torch_figures(build(), shape)
    line = f"  {stmt}"
    d = arch_error(f"network N {{\n  input x: {dims(shape)}\n{line}\n}}\n")
    assert d.code == "E0303", d.message
    assert (d.span.line, d.span.col) == (3, line.index("groups=") + 1)
