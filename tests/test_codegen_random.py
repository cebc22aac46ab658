"""Random small networks through both generators: torch agrees with the analyser, NumPy with torch.

Networks are drawn from fixed seeds (so a failure names its seed and comes
back every run): an input of random rank, then random layers of every type
with random settings, random `-> activation` shorthands, and branches that
join again with add or concat; some also have side layers nothing reads,
a second input, declared outputs (inputs among them), or no layer at all.
A drawn layer the analyser rejects is dropped and another drawn, so every
network is valid but otherwise unconstrained. Torch measures the analysed
parameters, buffers and MACs (its flop counter), and the NumPy model
computes torch's value of every layer and every output.
"""

from __future__ import annotations

import functools
import random
import subprocess

import numpy as np
import pytest
import torch
from codegen_util import build, measured, traced

import archc
from archc import ArchError
from archc.codegen import generate
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
        op = rng.choice(["dense", "bn", "dropout", "act", "reshape", "softmax", "layernorm", "groupnorm"])
    else:
        op = rng.choice(
            ["conv", "conv", "dwconv", "deconv", "maxpool", "avgpool", "minpool", "l2pool", "adaptiveavgpool"]
            + ["adaptivemaxpool", "globalavgpool", "globalmaxpool", "bn", "lrn", "flatten", "upsample"]
            + ["zeropad", "dropout", "act", "reshape", "chunk", "crop", "layernorm", "groupnorm", "instancenorm"]
            + ["shuffle", "layer_scale", "drop_path", "permute"]
            + (["space_to_depth"] if nd == 2 else [])
            + (["lstm", "gru"] if nd == 1 else [])  # on a sequence whose features are last (see _candidate)
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
    if op == "shuffle":
        return f"shuffle: {rng.randint(1, 2)}"
    if op == "layer_scale":
        return f"layer_scale: {rng.choice(['0.5', '2'])}"
    if op == "permute":
        return "permute: " + "x".join(map(str, rng.sample(range(nd + 1), nd + 1)))
    if op == "drop_path":
        return "drop_path: 0.2" + rng.choice(["", " batch"])
    if op == "space_to_depth":
        return f"space_to_depth: {rng.randint(1, 2)}"
    if op in ("lstm", "gru"):
        extra = rng.choice(["", " bidirectional", " layers=2", " last", " bias=false", " layers=2 bidirectional last"])
        units = rng.randint(2, 5)
        proj = f" proj={rng.randint(1, units - 1)}" if op == "lstm" and rng.random() < 0.3 else ""
        return f"{op}: {units}{extra}{proj}"
    if op == "dense":
        return f"dense: {rng.randint(1, 8)}" + rng.choice(["", " bias=false"])
    if op == "dropout":
        return "dropout: 0.3"
    if op == "bn":
        return rng.choice(["bn", "bn: eps=1e-3 momentum=0.2"])
    if op == "layernorm":
        return rng.choice(["layernorm", "layernorm: 1", f"layernorm: {rank + 1} eps=1e-3", "layernorm: affine=false"])
    if op == "groupnorm":
        return rng.choice(["groupnorm: 1", "groupnorm: 2 bias=false"])
    if op == "instancenorm":
        return rng.choice(["instancenorm", "instancenorm: affine=true track=true"])
    if op == "act":
        act = rng.choice(ACTIVATIONS)
        return act + (": 0.2" if act in ("leaky_relu", "elu") else "")
    if op == "reshape":
        return "flatten"  # reshape is drawn below, where the size is known
    return op


@functools.cache
def random_spec(seed: int) -> str:
    """A valid network: a flow of random layers from `x`; some networks also have a second input
    with a flow of its own, side layers nothing reads, declared outputs (inputs among them),
    or no layer at all."""
    rng = random.Random(seed)
    extra = random.Random(-1 - seed)  # the sequence layers': what `rng` draws stays as it was without them
    lines = [f"input x: {_input_shape(rng)}"]
    second = rng.random() < 0.2
    ids = second and extra.random() < 0.3  # token ids, which only the embeddings read
    if second:
        shape = _input_shape(rng)
        lines.append(
            f"input y: {extra.randint(1, 6)} tokens vocab={extra.randint(1, 9)}" if ids else f"input y: {shape}"
        )
    if rng.random() >= 0.05:  # else a network of inputs alone
        last = _flow(rng, lines, "x", "l", rng.randint(2, 8))
        if second:
            _flow(rng, lines, "y", "m", 0 if ids else rng.randint(0, 2))
        if ids:
            dim = extra.randint(1, 4)
            lines += [f"embedding m0 (y): {dim}", f"position_embedding m1 (y): {dim} 6", "add m2 (m0, m1)"]
        if extra.random() < 0.3:
            _sequence_tail(extra, lines, last)
    if rng.random() < 0.3:
        names = [n.name for n in archc.loads(_text(lines), "r.arch").layers]
        lines.append(f"output ({', '.join(rng.sample(names, min(len(names), rng.randint(1, 3))))})")
    return _text(lines)


def _input_shape(rng) -> str:
    rank = rng.choice([0, 1, 2, 2, 3])
    sizes = {0: [rng.randint(2, 12)], 1: [rng.randint(1, 4), rng.randint(4, 12)]}
    sizes[2] = [rng.randint(1, 4), rng.randint(4, 10), rng.randint(4, 10)]
    sizes[3] = [rng.randint(1, 3), rng.randint(3, 6), rng.randint(3, 6), rng.randint(3, 6)]
    return "x".join(map(str, sizes[rank]))


def _flow(rng, lines: list[str], last: str, prefix: str, count: int) -> str:
    """Append `count` valid statements to `lines`, each reading the one before (`last` first); the last."""
    for i in range(count):
        for _attempt in range(20):
            shape = archc.loads(_text(lines), "r.arch").layer(last).shape
            candidate, new_last = _candidate(rng, f"{prefix}{i}", last, shape)
            try:
                archc.loads(_text(lines + candidate), "r.arch")
            except ArchError:
                continue
            lines += candidate
            last = new_last
            break
    return last


def _sequence_tail(rng, lines: list[str], last: str) -> None:
    """Layers of sequence models after `last`, the first of these that is valid there: a learned
    tensor added, its positions as tokens, one index or the mean along an axis."""
    shape = archc.loads(_text(lines), "r.arch").layer(last).shape
    nd = len(shape) - 1
    candidates = [[f"param qp: {'x'.join(map(str, shape))}", f"add q0 ({last}, qp)"]]
    if nd >= 1:
        axis = rng.randint(0, nd)
        candidates += [
            [f"to_sequence q0 ({last})", "layernorm q1: 1", f"select q2: {rng.randint(0, 1)}"],
            [f"to_sequence q0 ({last})", "mean q1"],
            [f"select q0 ({last}): {rng.randint(0, 1)} axis={axis}"],
            [f"mean q0 ({last}): axis={axis}"],
        ]
    rng.shuffle(candidates)
    for candidate in candidates:
        try:
            archc.loads(_text(lines + candidate), "r.arch")
        except ArchError:
            continue
        lines += candidate
        return


def _candidate(rng, name: str, last: str, shape) -> tuple[list[str], str]:
    """Statements reading `last`, and the one the next statement reads."""
    rank = len(shape) - 1
    if rng.random() < 0.15 and rank >= 0:  # two branches, joined
        a, b = draw_layer(rng, rank), draw_layer(rng, rank)
        join = rng.choice(["add", "concat", "shortcut", "mul", "sub", "div"])
        op_a, _, args_a = a.partition(":")
        op_b, _, args_b = b.partition(":")
        positive = " -> sigmoid" if join == "div" else ""  # a divisor away from 0
        return [
            f"{op_a} {name}a ({last}){':' + args_a if args_a else ''}",
            f"{op_b} {name}b ({last}){':' + args_b if args_b else ''}{positive}",
            f"{join} {name} ({name}a, {name}b)",
        ], name
    if rank == 1 and rng.random() < 0.2:  # a C x L map as a sequence: its features last, then lstm or gru
        op, _, args = draw_layer(rng, rank).partition(":")
        if op in ("lstm", "gru"):
            return [f"permute {name}p ({last}): 1x0", f"{op} {name} ({name}p):{args}"], name
    if rng.random() < 0.1:
        total = int(np.prod(shape))
        target = rng.choice([f"{total}", f"1x{total}", f"{shape[0]}x{total // shape[0]}"])
        return [f"reshape {name} ({last}): {target}"], name
    if rank == 1 and shape.channels == 1 and rng.random() < 0.5:  # a sequence, features last: attention
        causal = rng.choice(["", " causal"])
        layer = rng.choice([f"attention {name} ({last}): 1{causal} dropout=0.1", f"sdpa {name} ({last}): 1{causal}"])
        return [layer], name
    op, _, args = draw_layer(rng, rank).partition(":")
    act = f" -> {rng.choice(ACTIVATIONS)}" if rng.random() < 0.3 else ""
    if rng.random() < 0.1:  # a side layer that nothing reads (W0302)
        return [f"{op} {name}u ({last}){':' + args if args else ''}{act}"], last
    return [f"{op} {name} ({last}){':' + args if args else ''}{act}"], name


def _text(lines: list[str]) -> str:
    return "network R {\n" + "".join(f"  {line}\n" for line in lines) + "}\n"


@pytest.mark.parametrize("seed", SEEDS)
def test_random_network_through_both_generators(seed):
    text = random_spec(seed)
    net = archc.loads(text, f"random{seed}.arch")
    torch.manual_seed(seed)
    tmodel, tgen, tfile = build(net, "torch", flat=True)
    for m in tmodel.modules():  # non-trivial batch norm statistics
        if isinstance(m, torch.nn.modules.batchnorm._BatchNorm):
            with torch.no_grad():
                m.running_mean.uniform_(-0.5, 0.5)
                m.running_var.uniform_(0.5, 1.5)
    tmodel.eval()
    one = inputs(net, 1, torch.Generator().manual_seed(seed))
    assert measured(tmodel, *one) == (net.totals.params, net.totals.buffers, net.totals.macs), text
    gen = torch.Generator().manual_seed(seed)
    xs = inputs(net, 2, gen)
    with torch.no_grad():
        tout, want = traced(tmodel, tgen, tfile, *xs)
    nmodel, ngen, nfile = build(net, "numpy", flat=True)
    nmodel.load_state_dict(tmodel.state_dict())
    nout, got = traced(nmodel.eval(), ngen, nfile, *(x.numpy() for x in xs))
    assert set(want) == set(got) == {n.name for n in net.layers if n.op != "input"}, text
    for name in want:
        assert tuple(want[name].shape) == batched(net.layer(name).shape, 2), (name, text)
        close(got[name], want[name], f"{name}\n{text}")
    outputs = net.graph.outputs
    if len(outputs) == 1:
        tout, nout = (tout,), (nout,)
    assert len(tout) == len(nout) == len(outputs), text
    for node, t, n in zip(outputs, tout, nout):
        assert tuple(t.shape) == batched(node.shape, 2), (node.name, text)
        close(n, t, f"output {node.name}\n{text}")


def inputs(net, batch: int, gen) -> list:
    """A random batch for every input: token ids below the vocabulary, or normal values."""
    return [
        torch.randint(0, node.shape.vocab, (batch, *node.shape), generator=gen)
        if node.shape.vocab is not None
        else torch.randn(batch, *node.shape, generator=gen)
        for node in net.graph.inputs
    ]


def batched(shape, batch: int) -> tuple[int, ...]:
    """The shape of a layer's value: per sample after the batch, or 1 x shape for a tensor the batch shares."""
    return (batch if shape.batched else 1, *shape)


def close(got, want, message: str) -> None:
    """NumPy's value against torch's, to float32 precision relative to the largest value."""
    w = want.detach().numpy()  # a learned tensor is its parameter
    scale = max(float(np.abs(w).max()), 1.0) if w.size else 1.0
    np.testing.assert_allclose(got, w, rtol=1e-4, atol=1e-5 * scale, err_msg=message)


def test_the_code_of_the_random_networks_is_clean(tmp_path):
    """ruff with its defaults, once over the code of every random network in both targets."""
    for seed in SEEDS:
        net = archc.loads(random_spec(seed), f"random{seed}.arch")
        for target in ("torch", "numpy"):
            (tmp_path / f"random{seed}_{target}.py").write_text(generate(net, target).code)
    check = subprocess.run(["ruff", "check", "--isolated", "."], cwd=tmp_path, capture_output=True, text=True)
    assert check.returncode == 0, check.stdout
    fmt = subprocess.run(["ruff", "format", "--isolated", "--diff", "."], cwd=tmp_path, capture_output=True, text=True)
    assert fmt.returncode == 0, fmt.stdout + fmt.stderr


def test_the_random_networks_cover_what_code_generation_must_handle():
    """Layers nothing reads, networks of inputs alone, several inputs, several outputs, inputs returned."""
    nets = [archc.loads(random_spec(seed), "r.arch") for seed in SEEDS]
    assert sum(any(n.op != "input" for n in net.graph.unused) for net in nets) >= 20
    assert sum(all(n.op == "input" for n in net.layers) for net in nets) >= 3
    assert sum(len(net.inputs) > 1 for net in nets) >= 10
    assert sum(len(net.graph.outputs) > 1 for net in nets) >= 10
    assert sum(any(n.op == "input" for n in net.graph.outputs) for net in nets) >= 10


def test_the_random_networks_use_every_layer_type_and_activation_shorthand():
    ops, shorthands = set(), set()
    for seed in SEEDS:
        net = archc.loads(random_spec(seed), "r.arch")
        ops |= {n.op for n in net.layers}
        shorthands |= {n.activation[0] for n in net.layers if n.activation}
    assert ops == set(OPS), sorted(set(OPS) - ops)
    assert shorthands == set(ACTIVATIONS), sorted(set(ACTIVATIONS) - shorthands)
