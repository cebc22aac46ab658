"""ONNX in for recurrent layers and embeddings (issue 20): LSTM, GRU and a Gather of a table by token ids.

The truths: small nn.LSTM / nn.GRU / nn.Embedding models exported by `torch.onnx.export` (both of its
exporters: TorchScript's and torch.export's), whose parameters torch counts and whose MACs torch's flop
counter counts (native kernels); the same layers written as a spec; and the specs an engineer wrote
(specs/lstm_classifier.arch, specs/lstm_text_classifier.arch, specs/gpt2.arch) through archc's ONNX out
and back. What archc cannot represent (clip, other activations, input_forget, peepholes, a run-time
sequence_lens or initial state, a cell state read) is a located E0405 naming it.
"""

from __future__ import annotations

import contextlib
import io
import re
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnx
import pytest
import torch
from onnx import helper, numpy_helper
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

import archc
from archc.cli import main
from archc.diagnostics import ArchError, source_lines
from archc.importers import import_text
from archc.importers.onnx_model import render

ROOT = Path(__file__).resolve().parent.parent
BATCH, STEPS, FEATURES, HIDDEN, VOCAB = 2, 5, 7, 6, 40


@dataclass(frozen=True)
class Case:
    kind: str  # LSTM or GRU
    layers: int
    bidirectional: bool
    batch_first: bool
    last: bool  # the model returns the last layer's final states (h_n[-1], or h_n[-2] and h_n[-1] side by side)
    embedding: bool  # token ids through nn.Embedding first
    dynamo: bool  # torch.export's exporter, else TorchScript's


CASES = [
    Case("LSTM", 1, False, True, False, False, False),
    Case("LSTM", 2, True, True, True, False, True),
    Case("LSTM", 2, True, False, False, False, False),
    Case("LSTM", 1, False, False, True, True, True),
    Case("LSTM", 2, False, True, True, True, False),
    Case("GRU", 1, True, True, False, True, False),
    Case("GRU", 2, False, False, True, False, True),
    Case("GRU", 2, True, True, True, True, False),
    Case("GRU", 1, False, False, False, False, True),
    Case("GRU", 1, True, False, True, False, False),
]


class Model(nn.Module):
    """An nn.LSTM or nn.GRU as people call it: every step's output, or the last layer's final states."""

    def __init__(self, case: Case):
        super().__init__()
        self.case = case
        self.emb = nn.Embedding(VOCAB, FEATURES) if case.embedding else None
        rnn = nn.LSTM if case.kind == "LSTM" else nn.GRU
        self.rnn = rnn(FEATURES, HIDDEN, case.layers, batch_first=case.batch_first, bidirectional=case.bidirectional)

    def forward(self, x):
        if self.emb is not None:
            x = self.emb(x)  # ids are batch first
            x = x if self.case.batch_first else x.transpose(0, 1)
        out, state = self.rnn(x)
        if not self.case.last:
            return out
        h = state[0] if isinstance(state, tuple) else state
        return torch.cat((h[-2], h[-1]), 1) if self.case.bidirectional else h[-1]

    def example(self) -> torch.Tensor:
        torch.manual_seed(0)
        if self.case.embedding:
            return torch.randint(0, VOCAB, (BATCH, STEPS))
        return torch.randn(BATCH, STEPS, FEATURES) if self.case.batch_first else torch.randn(STEPS, BATCH, FEATURES)

    def spec(self) -> str:
        """The same network as a spec (archc's layers read batch first)."""
        c = self.case
        first = (
            f"input x: {STEPS} tokens vocab={VOCAB}\n  embedding emb: {FEATURES}"
            if c.embedding
            else f"input x: {STEPS}x{FEATURES} sequence"
        )
        options = f" layers={c.layers}" + (" bidirectional" if c.bidirectional else "") + (" last" if c.last else "")
        return f"network T {{\n  {first}\n  {c.kind.lower()} rnn: {HIDDEN}{options}\n}}\n"


def export(model: nn.Module, x: torch.Tensor, path: Path, dynamo: bool) -> None:
    with (
        warnings.catch_warnings(),
        contextlib.redirect_stdout(io.StringIO()),
        contextlib.redirect_stderr(io.StringIO()),
    ):
        warnings.simplefilter("ignore")
        torch.onnx.export(model.eval(), (x,), str(path), dynamo=dynamo)


def torch_macs(model: nn.Module, x: torch.Tensor) -> int:
    """Half the FLOPs torch's flop counter counts with its native kernels, per sample."""
    with torch.no_grad(), torch.backends.mkldnn.flags(enabled=False), FlopCounterMode(display=False) as counter:
        model.eval()(x)
    return counter.get_total_flops() // 2 // BATCH


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    """Every case's model and its ONNX file, exported once."""
    folder = tmp_path_factory.mktemp("recurrent")
    out = {}
    for n, case in enumerate(CASES):
        torch.manual_seed(n)
        model = Model(case)
        export(model, model.example(), folder / f"case{n}.onnx", case.dynamo)
        out[case] = (model, folder / f"case{n}.onnx")
    return out


def figures(net) -> list[tuple]:
    return [(n.op, n.shape, n.params, n.macs) for n in net.layers]


@pytest.mark.parametrize("case", CASES, ids=lambda c: "-".join(f"{k}={v}" for k, v in vars(c).items()))
def test_exported_recurrent_models_import_to_torchs_figures(case, exported):
    """torch's params, the flop counter's MACs and the equivalent spec's figures, layer by layer; the
    file's batch; the stacked nodes one statement; and `archc import`'s spec analyses the same."""
    model, path = exported[case]
    net = archc.load(path)
    assert net.totals.params == sum(p.numel() for p in model.parameters())
    assert net.totals.macs == torch_macs(model, model.example())
    assert [f[1:] for f in figures(net)] == [f[1:] for f in figures(archc.loads(model.spec(), "t.arch"))]
    assert [n.op for n in net.layers] == ["input"] + ["embedding"] * case.embedding + [case.kind.lower()]
    text = import_text(path.read_bytes(), str(path))
    assert figures(archc.loads(text, "back.arch")) == figures(net)
    assert "The file's batch is 2" in text


def test_an_embedding_alone_reads_token_ids(tmp_path):
    """nn.Embedding of a table larger than the ids need: the input is `tokens`, the table torch's."""

    class Lookup(nn.Module):
        def __init__(self):
            super().__init__()
            self.table = nn.Embedding(VOCAB, 9, padding_idx=0)

        def forward(self, ids):
            return self.table(ids)

    model, path = Lookup(), tmp_path / "lookup.onnx"
    export(model, torch.randint(0, VOCAB, (BATCH, STEPS)), path, dynamo=False)
    net = archc.load(path)
    assert [(n.op, n.shape, n.params) for n in net.layers] == [
        ("input", (STEPS,), 0),
        ("embedding", (STEPS, 9), VOCAB * 9),
    ]
    assert net.totals.params == sum(p.numel() for p in model.parameters())
    assert f"{STEPS} tokens vocab={VOCAB}" in import_text(path.read_bytes(), str(path))


# -- round trips -----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "spec, inputs",
    [("lstm_classifier.arch", {"words": (300, 12)}), ("lstm_text_classifier.arch", {"ids": (12,)})],
)
def test_recurrent_specs_round_trip_through_onnx(spec, inputs, tmp_path):
    """spec -> archc's ONNX out -> archc: the same figures layer by layer (ONNX has no dropout: the
    identity at inference), with `layers`, `bidirectional` and `last` read back."""
    path = str(tmp_path / "model.onnx")
    net = archc.load(ROOT / "specs" / spec, inputs=inputs)
    text = (ROOT / "specs" / spec).read_text()
    for name, shape in inputs.items():  # the spec at the short input, as the ONNX out writes it
        text = re.sub(rf"(input\s+{name}:\s*)[0-9x]+", rf"\g<1>{'x'.join(map(str, shape))}", text)
    small = tmp_path / spec
    small.write_text(text)
    assert main(["codegen", str(small), "--target", "onnx", "-o", path]) == 0
    back = archc.load(path)
    kept = [f for f in figures(net) if f[0] != "dropout"]
    assert [f[1:] for f in figures(back)] == [f[1:] for f in kept]
    assert [f[0] for f in figures(back)] == [f[0] for f in kept]


def test_gpt2s_onnx_gets_past_its_embeddings(tmp_path):
    """GPT-2 (shrunk) -> ONNX -> archc: the token ids are `tokens` and wte an embedding; what may be
    refused is in the decoder layers, never a Gather; read whole, the same totals."""
    text = (ROOT / "specs" / "gpt2.arch").read_text()
    text = text.replace("1024 tokens vocab=50257", "16 tokens vocab=500").replace(
        "dense lm_head: 50257", "dense lm_head: 500"
    )
    text = re.sub(
        r"gpt2_model transformer:\s+768\s+1024\s+12\s+12\s+3072", "gpt2_model transformer: 64 16 2 4 128", text
    )
    small = tmp_path / "gpt2.arch"
    small.write_text(text)
    net = archc.load(small)
    path = str(tmp_path / "gpt2.onnx")
    assert main(["codegen", str(small), "--target", "onnx", "-o", path]) == 0
    try:
        back = archc.load(path)
    except ArchError as err:
        lines = source_lines(render(onnx.load(path))[0])
        refused = [lines[d.span.line - 1] for d in err.diagnostics]
        assert refused and all("transformer.h." in line and "= Gather" not in line for line in refused), refused
        return
    # each layer's c_attn, sdpa and c_proj read back as one `attention`, with their params and MACs;
    # the tied head counted once, as its one initialiser
    assert (back.totals.params, back.totals.macs) == (net.totals.params, net.totals.macs)
    assert sum(n.op == "attention" for n in back.layers) == sum(n.op == "sdpa" for n in net.layers) == 2


# -- refusals -----------------------------------------------------------------------------------------


def _lstm_model(attrs=None, extra_inputs=(), op="LSTM", outputs=("y",), initial_h=None, readers=()):
    """One ONNX LSTM/GRU node on a steps-first input x (5 x 2 x 3), hidden 4, as exporters write it."""
    gates = 4 if op == "LSTM" else 3
    w = numpy_helper.from_array(np.zeros((1, gates * 4, 3), np.float32), "W")
    r = numpy_helper.from_array(np.zeros((1, gates * 4, 4), np.float32), "R")
    b = numpy_helper.from_array(np.zeros((1, 2 * gates * 4), np.float32), "B")
    weights = [w, r, b]
    ins = ["x", "W", "R", "B", *extra_inputs]
    if initial_h is not None:
        weights.append(numpy_helper.from_array(initial_h, "h0"))
        ins = ["x", "W", "R", "B", "", "h0"]
    attrs = {"hidden_size": 4, **({"linear_before_reset": 1} if op == "GRU" else {}), **(attrs or {})}
    node = helper.make_node(op, ins, ["y", "y_h", "y_c"][: 3 if op == "LSTM" else 2], name="/rnn/" + op, **attrs)
    x = helper.make_tensor_value_info("x", onnx.TensorProto.FLOAT, [5, 2, 3])
    graph_inputs = [x]
    if "lens" in extra_inputs:  # every sample's length: 5 and 3
        weights.append(numpy_helper.from_array(np.array([5, 3], np.int32), "lens"))
    nodes = [node, *readers]
    outs = [helper.make_tensor_value_info(o, onnx.TensorProto.FLOAT, None) for o in outputs]
    graph = helper.make_graph(nodes, "g", graph_inputs, outs, weights)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8)


def _refused(model, tmp_path, capsys) -> tuple[str, str]:
    """The file's diagnostics from the CLI (exit 1, no traceback) and the line each points at."""
    path = tmp_path / "m.onnx"
    onnx.save(model, str(path))
    assert main(["check", str(path)]) == 1
    err = capsys.readouterr().err
    assert "Traceback" not in err
    with pytest.raises(ArchError) as info:
        archc.load(path)
    return err, info.value.diagnostics


P = numpy_helper.from_array(np.zeros((1, 12), np.float32), "P")


@pytest.mark.parametrize(
    "model, named",
    [
        (lambda: _lstm_model({"clip": 3.0}), "clip"),
        (lambda: _lstm_model({"activations": ["Sigmoid", "Relu", "Tanh"]}), "activations"),
        (lambda: _lstm_model({"input_forget": 1}), "input_forget"),
        (lambda: _lstm_model({"direction": "reverse"}), "direction"),
        (lambda: _lstm_model(op="GRU", attrs={"linear_before_reset": 0}), "linear_before_reset"),
        (lambda: _lstm_model(extra_inputs=["lens"]), "sequence_lens"),
        (lambda: _lstm_model(initial_h=np.ones((1, 2, 4), np.float32)), "initial_h"),
    ],
    ids=["clip", "activations", "input_forget", "reverse", "linear_before_reset", "sequence_lens", "initial_h"],
)
def test_what_archc_cannot_compute_is_a_located_e0405(model, named, tmp_path, capsys):
    """Each is E0405 at the node's line, naming the attribute or input (at the attribute where it is one)."""
    err, diagnostics = _refused(model(), tmp_path, capsys)
    (d,) = diagnostics
    assert d.code == "E0405" and named in d.message and "/rnn/" in d.message
    line = source_lines(render(onnx.load(str(tmp_path / "m.onnx")))[0])[d.span.line - 1]
    assert line.startswith('["/rnn/')
    if f"{named}: " in line:
        assert line[d.span.col - 1 :].startswith(named)
    assert "[E0405]" in err


def test_zero_initial_states_and_whole_sequence_lens_are_read(tmp_path):
    """What torch's exporters write when no state is given: the layer as nn.LSTM(3, 4) computes it."""
    zero = numpy_helper.from_array(np.array([0], np.int64), "zero")
    squeeze = helper.make_node("Squeeze", ["y_h", "zero"], ["h"], name="/h/Squeeze")
    model = _lstm_model(outputs=("h",), readers=[squeeze], initial_h=np.zeros((1, 2, 4), np.float32))
    model.graph.initializer.extend([zero, numpy_helper.from_array(np.array([5, 5], np.int32), "lens")])
    model.graph.node[0].input[4] = "lens"
    onnx.save(model, str(tmp_path / "m.onnx"))
    net = archc.load(tmp_path / "m.onnx")
    assert [(n.op, n.shape, n.params) for n in net.layers][1:] == [
        ("lstm", (4,), sum(p.numel() for p in nn.LSTM(3, 4).parameters()))
    ]


def test_peepholes_are_refused(tmp_path, capsys):
    model = _lstm_model(extra_inputs=["", "", "", "P"])
    model.graph.initializer.append(P)
    _, (d,) = _refused(model, tmp_path, capsys)
    assert d.code == "E0405" and "peepholes P" in d.message


def test_a_cell_state_read_is_refused_where_it_is_read(tmp_path, capsys):
    """c_n has no archc layer: the node reading it is the error, and names it."""
    relu = helper.make_node("Relu", ["y_c"], ["z"], name="/act/Relu")
    _, (d,) = _refused(_lstm_model(outputs=("z",), readers=[relu]), tmp_path, capsys)
    assert d.code == "E0405" and "cell state" in d.message and "/act/Relu" in d.message


def test_a_lower_layers_final_state_is_refused(tmp_path, capsys):
    """Only the last layer's final states of every direction are `last`; one direction of two is not."""
    w = numpy_helper.from_array(np.zeros((2, 16, 3), np.float32), "W")
    r = numpy_helper.from_array(np.zeros((2, 16, 4), np.float32), "R")
    index = numpy_helper.from_array(np.array(0, np.int64), "k")
    node = helper.make_node(
        "LSTM", ["x", "W", "R"], ["y", "y_h"], name="/rnn/LSTM", hidden_size=4, direction="bidirectional"
    )
    pick = helper.make_node("Gather", ["y_h", "k"], ["h"], name="/pick/Gather", axis=0)
    relu = helper.make_node("Relu", ["h"], ["z"], name="/act/Relu")
    x = helper.make_tensor_value_info("x", onnx.TensorProto.FLOAT, [5, 2, 3])
    z = helper.make_tensor_value_info("z", onnx.TensorProto.FLOAT, None)
    graph = helper.make_graph([node, pick, relu], "g", [x], [z], [w, r, index])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8)
    _, (d,) = _refused(model, tmp_path, capsys)
    assert d.code == "E0405" and "direction 0" in d.message and "/act/Relu" in d.message


def test_every_step_and_the_final_state_both_read_is_refused(tmp_path, capsys):
    """archc's lstm gives every step's output or, with `last`, the final state: not both."""
    squeeze = helper.make_node("Squeeze", ["y_h", "zero"], ["h"], name="/h/Squeeze")
    zero = numpy_helper.from_array(np.array([0], np.int64), "zero")
    model = _lstm_model(outputs=("y", "h"), readers=[squeeze])
    model.graph.initializer.append(zero)
    _, diagnostics = _refused(model, tmp_path, capsys)
    assert any(d.code == "E0405" and "one of them" in d.message for d in diagnostics)


def test_a_gather_of_a_computed_tensor_stays_refused(tmp_path, capsys):
    """Only a constant table looked up by token ids is an embedding (and one index of a sample a select)."""
    index = numpy_helper.from_array(np.array([0, 2], np.int64), "k")
    gather = helper.make_node("Gather", ["x", "k"], ["z"], name="/pick/Gather", axis=2)
    x = helper.make_tensor_value_info("x", onnx.TensorProto.FLOAT, [2, 3, 4])
    z = helper.make_tensor_value_info("z", onnx.TensorProto.FLOAT, None)
    graph = helper.make_graph([gather], "g", [x], [z], [index])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8)
    _, (d,) = _refused(model, tmp_path, capsys)
    assert d.code in ("E0402", "E0405") and "Gather" in d.message


@pytest.mark.parametrize("out, shape", [("y", (5, 8)), ("y_h", (8,))])
def test_layout_1_reads_batch_first(out, shape, tmp_path):
    """layout=1: X, Y and Y_h batch first; Y reshaped to N x L x D*H is every step's output, Y_h to
    N x D*H the final states side by side (`last`), both as nn.GRU(3, 4, bias=False, bidirectional=True)."""
    w = numpy_helper.from_array(np.zeros((2, 12, 3), np.float32), "W")
    r = numpy_helper.from_array(np.zeros((2, 12, 4), np.float32), "R")
    target = numpy_helper.from_array(np.array([0, 0, 8] if out == "y" else [0, 8], np.int64), "s")
    node = helper.make_node(
        "GRU", ["x", "W", "R"], ["y", "y_h"], name="/rnn/GRU", hidden_size=4, direction="bidirectional",
        linear_before_reset=1, layout=1,
    )  # fmt: skip
    reshape = helper.make_node("Reshape", [out, "s"], ["z"], name="/out/Reshape")
    x = helper.make_tensor_value_info("x", onnx.TensorProto.FLOAT, [2, 5, 3])
    z = helper.make_tensor_value_info("z", onnx.TensorProto.FLOAT, None)
    graph = helper.make_graph([node, reshape], "g", [x], [z], [w, r, target])
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8), tmp_path / "m.onnx")
    net = archc.load(tmp_path / "m.onnx")
    torch_params = sum(p.numel() for p in nn.GRU(3, 4, bias=False, bidirectional=True).parameters())
    assert [(n.op, n.shape, n.params) for n in net.layers] == [("input", (5, 3), 0), ("gru", shape, torch_params)]


def test_a_steps_first_output_read_batch_first_is_refused(tmp_path, capsys):
    """Y (steps x directions x batch x hidden) reshaped as if it were batch first: E0405 naming its axes."""
    target = numpy_helper.from_array(np.array([0, 0, -1], np.int64), "s")  # 5 x 1 x 8: batch and hidden mixed
    reshape = helper.make_node("Reshape", ["y", "s"], ["z"], name="/out/Reshape")
    model = _lstm_model(outputs=("z",), readers=[reshape])
    model.graph.initializer.append(target)
    _, (d,) = _refused(model, tmp_path, capsys)
    assert d.code == "E0405" and "L x D x N x H" in d.message and "/out/Reshape" in d.message


def test_a_layer_after_a_refused_node_adds_no_error_of_its_own(tmp_path, capsys):
    """Softplus is refused; the Transpose, LSTM and Squeeze after it say nothing more."""
    w = numpy_helper.from_array(np.zeros((1, 16, 3), np.float32), "W")
    r = numpy_helper.from_array(np.zeros((1, 16, 4), np.float32), "R")
    nodes = [
        helper.make_node("Softplus", ["x"], ["a"], name="/sp/Softplus"),
        helper.make_node("Transpose", ["a"], ["t"], name="/t/Transpose", perm=[1, 0, 2]),
        helper.make_node("LSTM", ["t", "W", "R"], ["y", "y_h"], name="/rnn/LSTM", hidden_size=4),
        helper.make_node("Squeeze", ["y_h"], ["z"], name="/sq/Squeeze"),
    ]
    x = helper.make_tensor_value_info("x", onnx.TensorProto.FLOAT, [2, 5, 3])
    z = helper.make_tensor_value_info("z", onnx.TensorProto.FLOAT, None)
    graph = helper.make_graph(nodes, "g", [x], [z], [w, r])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8)
    _, (d,) = _refused(model, tmp_path, capsys)
    assert d.code == "E0402" and "Softplus" in d.message


def test_activations_that_are_not_utf8_are_refused_without_a_traceback(tmp_path, capsys):
    model = _lstm_model()
    model.graph.node[0].attribute.append(helper.make_attribute("activations", [b"\xff\xfe", b"Tanh", b"Tanh"]))
    _, (d,) = _refused(model, tmp_path, capsys)
    assert d.code == "E0405" and "activations" in d.message


class Sized(nn.Module):
    """Token ids, a 2-layer bidirectional LSTM or GRU of 64 units, a classifier: weights too large for
    the exporter to fold (the small cases' it reorders before writing them) or for archc to read."""

    def __init__(self, kind: str):
        super().__init__()
        self.emb = nn.Embedding(1000, 32)
        self.rnn = (nn.LSTM if kind == "LSTM" else nn.GRU)(32, 64, 2, batch_first=True, bidirectional=True)
        self.fc = nn.Linear(128, 5)

    def forward(self, x):
        _, state = self.rnn(self.emb(x))
        h = state[0] if isinstance(state, tuple) else state
        return self.fc(torch.cat((h[-2], h[-1]), 1))


@pytest.mark.parametrize("kind", ["LSTM", "GRU"])
def test_weights_too_large_to_read_may_be_cut_into_gate_blocks(kind, tmp_path):
    """torch's default exporter cuts W and R into gate blocks (Slice) and joins them in ONNX's order
    (Concat): blocks of 4,096 values, which archc reads, of a weight of 16,384, which it does not. The
    join is a weight too, of the shape inference gives: torch's params and flop-counter MACs."""
    model = Sized(kind)
    x = torch.randint(0, 1000, (BATCH, 12))
    export(model, x, tmp_path / "m.onnx", dynamo=True)
    net = archc.load(tmp_path / "m.onnx")
    assert net.totals.params == sum(p.numel() for p in model.parameters())
    assert net.totals.macs == torch_macs(model, x)
