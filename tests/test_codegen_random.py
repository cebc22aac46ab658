"""Random small networks through both generators: torch agrees with the analyser, NumPy with torch.

Networks are drawn from fixed seeds (so a failure names its seed and comes
back every run): an input of random rank, then random layers of every type
with random settings, random `-> activation` shorthands, and branches that
join again with add or concat. A drawn layer the analyser rejects is
dropped and another drawn, so every network is valid but otherwise
unconstrained.
"""

from __future__ import annotations

import random

import numpy as np
import pytest
import torch
from codegen_util import build, traced

import archc
from archc import ArchError
from archc.ops import OPS

SEEDS = range(150)
ACTIVATIONS = [name for name, op in OPS.items() if op.is_activation]


def _shape(rng, nd):
    return "x".join(str(rng.randint(1, 3) if i else rng.randint(1, 4)) for i in range(nd))


def _window(rng, nd, pool=False):
    k = rng.randint(1, 3)
    text = f"{k}" if rng.random() < 0.7 else _shape(rng, nd) if nd else f"{k}"
    if rng.random() < 0.5:
        text += f" /{rng.randint(1, 3)}"
    pad = rng.choice(["", "", " pad=1", " pad=same", " pad=(0,1)" if nd == 1 else " pad=" + "x".join(["(0,1)"] * nd)])
    if pool and "same" not in pad and rng.random() < 0.3:
        pad += " ceil"
    return text + pad


def draw_layer(rng, rank):
    """One statement (without a name) for an input of `rank` spatial dimensions; None for a vector."""
    nd = rank
    if nd == 0:
        op = rng.choice(["dense", "bn", "dropout", "act", "reshape", "softmax"])
    else:
        op = rng.choice(
            ["conv", "conv", "dwconv", "deconv", "maxpool", "avgpool", "minpool", "l2pool", "adaptiveavgpool"]
            + ["adaptivemaxpool", "globalavgpool", "globalmaxpool", "bn", "lrn", "flatten", "upsample"]
            + ["zeropad", "dropout", "act", "reshape", "chunk", "crop"]
            + (["space_to_depth"] if nd == 2 else [])
        )
    if op == "conv":
        extra = rng.choice(["", "", " dilation=2", " groups=depthwise", " bias=false"])
        return f"conv: {rng.randint(1, 6)} @ {_window(rng, nd)}{extra}"
    if op == "dwconv":
        return f"dwconv: {_window(rng, nd)} multiplier={rng.randint(1, 2)}"
    if op == "deconv":
        k, s = rng.randint(1, 3), rng.randint(1, 3)
        return f"deconv: {rng.randint(1, 4)} @ {k} /{s} pad={rng.randint(0, 1)} outpad={rng.randint(0, s - 1)}"
    if op in ("maxpool", "avgpool", "minpool", "l2pool"):
        extra = " count_pad=false" if op == "avgpool" and rng.random() < 0.3 else ""
        return f"{op}: {_window(rng, nd, pool=True)}{extra}"
    if op.startswith("adaptive"):
        return f"{op}: {rng.randint(1, 3)}"
    if op == "lrn":
        return f"lrn: {rng.randint(1, 4)} k=2"
    if op == "upsample":
        return f"upsample: {rng.randint(1, 2)}"
    if op == "zeropad":
        return "zeropad: " + rng.choice(["1", "(0,1)" if nd == 1 else "x".join(["(1,0)"] * nd)])
    if op == "chunk":
        return f"chunk: {rng.randint(1, 3)} index={rng.randint(0, 1)}"
    if op == "crop":
        return f"crop: {rng.randint(1, 3)}" + rng.choice(["", " offset=1"])
    if op == "space_to_depth":
        return f"space_to_depth: {rng.randint(1, 2)}"
    if op == "dense":
        return f"dense: {rng.randint(1, 8)}" + rng.choice(["", " bias=false"])
    if op == "dropout":
        return "dropout: 0.3"
    if op == "bn":
        return rng.choice(["bn", "bn: eps=1e-3 momentum=0.2"])
    if op == "act":
        act = rng.choice(ACTIVATIONS)
        return act + (": 0.2" if act in ("leaky_relu", "elu") else "")
    if op == "reshape":
        return "flatten"  # reshape is drawn below, where the size is known
    return op


def random_spec(seed: int) -> str:
    rng = random.Random(seed)
    rank = rng.choice([0, 1, 2, 2, 3])
    sizes = {0: [rng.randint(2, 12)], 1: [rng.randint(1, 4), rng.randint(4, 12)]}
    sizes[2] = [rng.randint(1, 4), rng.randint(4, 10), rng.randint(4, 10)]
    sizes[3] = [rng.randint(1, 3), rng.randint(3, 6), rng.randint(3, 6), rng.randint(3, 6)]
    lines = [f"input x: {'x'.join(map(str, sizes[rank]))}"]
    last = "x"
    for i in range(rng.randint(2, 8)):
        for _attempt in range(20):
            net = archc.loads(_text(lines), "r.arch")
            shape = net.layer(last).shape
            candidate = _candidate(rng, i, last, shape)
            try:
                archc.loads(_text(lines + candidate), "r.arch")
            except ArchError:
                continue
            lines += candidate
            last = candidate[-1].split()[1]
            break
    return _text(lines)


def _candidate(rng, i, last, shape) -> list[str]:
    rank = len(shape) - 1
    name = f"l{i}"
    if rng.random() < 0.15 and rank >= 0:  # two branches, joined
        a, b = draw_layer(rng, rank), draw_layer(rng, rank)
        join = rng.choice(["add", "concat", "shortcut"])
        op_a, _, args_a = a.partition(":")
        op_b, _, args_b = b.partition(":")
        return [
            f"{op_a} {name}a ({last}){':' + args_a if args_a else ''}",
            f"{op_b} {name}b ({last}){':' + args_b if args_b else ''}",
            f"{join} {name} ({name}a, {name}b)",
        ]
    if rng.random() < 0.1:
        total = int(np.prod(shape))
        target = rng.choice([f"{total}", f"1x{total}", f"{shape[0]}x{total // shape[0]}"])
        return [f"reshape {name} ({last}): {target}"]
    op, _, args = draw_layer(rng, rank).partition(":")
    act = f" -> {rng.choice(ACTIVATIONS)}" if rng.random() < 0.3 else ""
    return [f"{op} {name} ({last}){':' + args if args else ''}{act}"]


def _text(lines: list[str]) -> str:
    return "network R {\n" + "".join(f"  {line}\n" for line in lines) + "}\n"


@pytest.mark.parametrize("seed", SEEDS)
def test_random_network_through_both_generators(seed):
    text = random_spec(seed)
    net = archc.loads(text, f"random{seed}.arch")
    torch.manual_seed(seed)
    tmodel, tgen, tfile = build(net, "torch")
    for m in tmodel.modules():  # non-trivial batch norm statistics
        if isinstance(m, torch.nn.modules.batchnorm._BatchNorm):
            with torch.no_grad():
                m.running_mean.uniform_(-0.5, 0.5)
                m.running_var.uniform_(0.5, 1.5)
    tmodel.eval()
    assert sum(p.numel() for p in tmodel.parameters()) == net.totals.params, text
    gen = torch.Generator().manual_seed(seed)
    xs = [torch.randn(2, *shape, generator=gen) for shape in net.inputs.values()]
    with torch.no_grad():
        _, want = traced(tmodel, tgen, tfile, *xs)
    nmodel, ngen, nfile = build(net, "numpy")
    nmodel.load_state_dict(tmodel.state_dict())
    _, got = traced(nmodel.eval(), ngen, nfile, *(x.numpy() for x in xs))
    for node in net.layers:
        if node.op == "input":
            continue
        assert tuple(want[node.name].shape) == (2, *node.shape), (node.name, text)
        w = want[node.name].numpy()
        scale = max(float(np.abs(w).max()), 1.0)
        np.testing.assert_allclose(got[node.name], w, rtol=1e-4, atol=1e-5 * scale, err_msg=f"{node.name}\n{text}")


def test_the_random_networks_use_every_layer_type_and_activation_shorthand():
    ops, shorthands = set(), set()
    for seed in SEEDS:
        net = archc.loads(random_spec(seed), "r.arch")
        ops |= {n.op for n in net.layers}
        shorthands |= {n.activation[0] for n in net.layers if n.activation}
    assert ops == set(OPS), sorted(set(OPS) - ops)
    assert shorthands == set(ACTIVATIONS), sorted(set(ACTIVATIONS) - shorthands)
