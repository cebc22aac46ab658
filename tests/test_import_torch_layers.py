"""Every module and function the PyTorch importer maps, on small hand-written modules (issue 20, item 2).

Each case is a module built in torch (random configurations drawn from a seeded
generator); imported with `archc.from_torch`, it must have torch's params,
buffers, MACs and per-submodule shapes, and archc's generated PyTorch module,
given its state_dict strictly by key, must give its output. Then what archc
cannot represent: each is a TorchImportError naming the module's path and type.
"""

from __future__ import annotations

import random
import re

import pytest
import torch
import torch.nn.functional as F  # noqa: N812 - torch's own spelling
from codegen_util import randomise_batch_norm
from torch import nn
from torch_import_util import assert_agrees

import archc
from archc.cli import main
from archc.importers.pytorch import TorchImportError

# torch.backends.mkldnn.flags() (torch_import_util.measure) sets oneDNN's TF32 switch too, and warns
pytestmark = [
    pytest.mark.filterwarnings("ignore:TF32 acceleration:UserWarning"),
    pytest.mark.filterwarnings("ignore:LSTM with projections is not supported with oneDNN:UserWarning"),
]


class Fn(nn.Module):
    """A module whose forward is a function of its input, with a conv before it to give it weights."""

    def __init__(self, fn, channels=4):
        super().__init__()
        self.conv = nn.Conv2d(3, channels, 3, padding=1)
        self.fn = fn

    def forward(self, x):
        return self.fn(self.conv(x))


class Residual(nn.Module):
    def __init__(self, ch, merge):
        super().__init__()
        self.conv1 = nn.Conv2d(ch, ch, 3, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(ch)
        self.relu = nn.ReLU(inplace=True)
        self.merge = merge

    def forward(self, x):
        y = self.relu(self.bn1(self.conv1(x)))
        if self.merge == "iadd":
            y += x
            return y
        if self.merge == "mul":
            return torch.mul(y, x)
        if self.merge == "cat":
            return torch.cat([y, x], dim=1)
        return y + x


class Twice(nn.Module):
    """One ReLU module called on two values it cannot be folded into: two layers, relu and relu_2."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3, padding=1)
        self.relu = nn.ReLU()

    def forward(self, x):
        y = self.conv(x)
        return self.relu(y) + self.relu(y)


class Classifier(nn.Module):
    """Token ids, an embedding, a recurrent layer, its last step, a dense layer."""

    def __init__(self, cell=nn.LSTM, **settings):
        super().__init__()
        self.embed = nn.Embedding(30, 8, padding_idx=0)
        self.rnn = cell(8, 6, batch_first=True, **settings)
        width = settings.get("proj_size") or 6
        self.fc = nn.Linear(width * (2 if settings.get("bidirectional") else 1), 3)

    def forward(self, ids):
        out, _ = self.rnn(self.embed(ids))
        return self.fc(out[:, -1])


class Encoder(nn.Module):
    """A float sequence (N x L x F) read by a layer norm, then every step of a GRU."""

    def __init__(self, index=0):
        super().__init__()
        self.norm = nn.LayerNorm(5)
        self.gru = nn.GRU(5, 4, num_layers=2, batch_first=True, bias=False)
        self.index = index

    def forward(self, x):
        return self.gru(self.norm(x))[self.index]


class Attending(nn.Module):
    """A layer norm, multi-head attention (self, cross or key and value apart), a residual, the first token."""

    def __init__(self, inputs="self", mask=False, **settings):
        super().__init__()
        self.ln_1 = nn.LayerNorm(8)
        self.self_attention = nn.MultiheadAttention(8, 2, batch_first=True, **settings)
        self.inputs, self.mask = inputs, mask
        self.score = nn.Linear(8, 1) if mask else None  # a mask made of layers archc maps

    def forward(self, x):
        y = self.ln_1(x)
        key, value = {"self": (y, y), "cross": (x, x), "apart": (x, y)}[self.inputs]
        if self.mask:
            a, _ = self.self_attention(y, key, value, key_padding_mask=torch.flatten(self.score(x), 1))
        else:
            a, _ = self.self_attention(y, key, value, need_weights=False)
        return (a + x)[:, 0]


class Unused(nn.Module):
    def __init__(self):
        super().__init__()
        self.used = nn.Linear(8, 8)
        self.spare = nn.Linear(8, 8)

    def forward(self, x):
        return self.used(x)


class Tokens(nn.Module):
    """ViT's way in: patches as tokens (reshape, permute), a class token (a parameter, expanded, concatenated
    along the tokens), a position embedding added, the class token out."""

    def __init__(self):
        super().__init__()
        self.conv_proj = nn.Conv2d(3, 6, 4, stride=4)
        self.class_token = nn.Parameter(torch.randn(1, 1, 6))
        self.pos_embedding = nn.Parameter(torch.randn(1, 5, 6))

    def forward(self, x):
        n = x.shape[0]
        x = self.conv_proj(x).reshape(n, 6, 4).permute(0, 2, 1)
        x = torch.cat([self.class_token.expand(n, -1, -1), x], dim=1)
        return (x + self.pos_embedding)[:, 0]


class Stack(nn.Module):
    """Residual units in an nn.Sequential: a block, its calls, a repeat."""

    def __init__(self, ch=4, n=4, merge="add"):
        super().__init__()
        self.stem = nn.Conv2d(3, ch, 3, padding=1)
        self.body = nn.Sequential(*[Residual(ch, merge) for _ in range(n)])
        self.head = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Dropout(0.1), nn.Linear(ch, 5))

    def forward(self, x):
        return self.head(self.body(self.stem(x)))


def _conv_cases(rng: random.Random):
    """Random convolutions of every rank, transposed ones included: (module, input)."""
    for _ in range(8):
        rank = rng.choice((1, 2, 3))
        groups = rng.choice((1, 2))
        cin, cout = 2 * rng.randint(1, 3), 2 * rng.randint(1, 3)
        k = tuple(rng.randint(1, 3) for _ in range(rank))
        stride = tuple(rng.randint(1, 2) for _ in range(rank))
        dilation = tuple(rng.randint(1, 2) for _ in range(rank))
        pad = tuple(rng.randint(0, 2) for _ in range(rank))
        size = (cin, *(rng.randint(9, 12) for _ in range(rank)))
        bias = rng.random() < 0.5
        conv = (nn.Conv1d, nn.Conv2d, nn.Conv3d)[rank - 1]
        yield nn.Sequential(conv(cin, cout, k, stride, pad, dilation, groups, bias)), size
        deconv = (nn.ConvTranspose1d, nn.ConvTranspose2d, nn.ConvTranspose3d)[rank - 1]
        outpad = tuple(rng.randint(0, s - 1) for s in stride)
        yield nn.Sequential(deconv(cin, cout, k, stride, pad, outpad, groups, bias, dilation)), size
    yield nn.Sequential(nn.Conv2d(4, 4, 3, padding="same", dilation=2)), (4, 9, 9)
    yield nn.Sequential(nn.Conv2d(4, 8, 3, padding=1, groups=4)), (4, 9, 9)  # depthwise, multiplier 2


def _layer_cases():
    rng = random.Random(20)
    yield from _conv_cases(rng)
    yield nn.Sequential(nn.Linear(6, 7), nn.ReLU(), nn.Linear(7, 3, bias=False)), (6,)
    yield nn.Sequential(nn.Conv2d(3, 4, 1), nn.BatchNorm2d(4, eps=1e-3, momentum=0.01), nn.ReLU6()), (3, 8, 8)
    yield nn.Sequential(nn.Conv1d(3, 4, 1), nn.BatchNorm1d(4)), (3, 10)
    yield nn.Sequential(nn.Conv3d(3, 4, 1), nn.BatchNorm3d(4)), (3, 4, 5, 6)
    yield nn.Sequential(nn.Linear(6, 8), nn.BatchNorm1d(8), nn.GELU()), (6,)
    yield nn.Sequential(nn.Conv2d(3, 4, 1), nn.LayerNorm([8, 8], eps=1e-4)), (3, 8, 8)
    yield nn.Sequential(nn.Conv2d(3, 4, 1), nn.LayerNorm(8, elementwise_affine=False)), (3, 8, 8)
    yield nn.Sequential(nn.Conv2d(3, 6, 1), nn.GroupNorm(3, 6)), (3, 8, 8)
    for act in (nn.ReLU(), nn.ReLU6(), nn.SiLU(), nn.Mish(), nn.Hardswish(), nn.Hardsigmoid(), nn.Sigmoid()):
        yield nn.Sequential(nn.Conv2d(3, 4, 1), act), (3, 5, 5)
    for act in (nn.Tanh(), nn.GELU(approximate="tanh"), nn.LeakyReLU(0.2), nn.ELU(0.5), nn.Identity()):
        yield nn.Sequential(nn.Conv2d(3, 4, 1), act), (3, 5, 5)
    yield nn.Sequential(nn.Linear(6, 4), nn.Softmax(dim=1)), (6,)
    yield nn.Sequential(nn.Conv2d(3, 4, 1), nn.MaxPool2d(3, 2, 1, ceil_mode=True)), (3, 10, 10)
    yield nn.Sequential(nn.Conv2d(3, 4, 1), nn.MaxPool2d((2, 3), dilation=2)), (3, 11, 11)
    yield nn.Sequential(nn.Conv1d(3, 4, 1), nn.MaxPool1d(2)), (3, 9)
    yield nn.Sequential(nn.Conv3d(3, 4, 1), nn.MaxPool3d(2), nn.AvgPool3d(2)), (3, 8, 8, 8)
    yield nn.Sequential(nn.Conv2d(3, 4, 1), nn.AvgPool2d(3, 2, 1, ceil_mode=True, count_include_pad=False)), (3, 10, 10)
    yield nn.Sequential(nn.Conv1d(3, 4, 1), nn.AvgPool1d(3, 2)), (3, 9)
    yield nn.Sequential(nn.Conv2d(3, 4, 1), nn.AdaptiveAvgPool2d((2, 3))), (3, 8, 9)
    yield nn.Sequential(nn.Conv2d(3, 4, 1), nn.AdaptiveMaxPool2d(1), nn.Flatten(), nn.Linear(4, 2)), (3, 8, 9)
    yield nn.Sequential(nn.Conv1d(3, 4, 1), nn.AdaptiveAvgPool1d(1), nn.AdaptiveMaxPool1d(1)), (3, 8)
    yield nn.Sequential(nn.Conv3d(3, 4, 1), nn.AdaptiveAvgPool3d(2), nn.AdaptiveMaxPool3d(1)), (3, 4, 4, 4)
    yield Fn(lambda x: F.relu(x)), (3, 6, 6)
    yield Fn(lambda x: torch.sigmoid(x).tanh()), (3, 6, 6)
    yield Fn(lambda x: F.hardswish(F.silu(x))), (3, 6, 6)
    yield Fn(lambda x: F.gelu(x, approximate="tanh")), (3, 6, 6)
    yield Fn(lambda x: torch.flatten(F.adaptive_avg_pool2d(x, 1), 1)), (3, 6, 6)
    yield Fn(lambda x: F.adaptive_avg_pool2d(x, (2, 2)).view(x.size(0), -1)), (3, 6, 6)
    yield Fn(lambda x: x.reshape(x.shape[0], 8, 18).contiguous()), (3, 6, 6)
    yield Fn(lambda x: F.softmax(x.flatten(1), dim=1)), (3, 6, 6)
    yield Fn(lambda x: F.dropout(x, 0.3, training=False)), (3, 6, 6)
    yield Fn(lambda x: torch.cat([x, x.permute(0, 1, 3, 2)], dim=2)), (3, 6, 6)
    yield Fn(lambda x: torch.cat((x, x), -1).permute(0, 3, 1, 2)), (3, 6, 6)
    yield Tokens(), (3, 8, 8)
    for merge in ("add", "iadd", "mul"):
        yield Stack(merge=merge), (3, 6, 6)
    yield nn.Sequential(Residual(3, "cat"), Residual(6, "add")), (3, 6, 6)
    yield Twice(), (3, 6, 6)


SEQUENCES = [
    Classifier(),
    Classifier(nn.GRU, bidirectional=True),
    Classifier(nn.LSTM, num_layers=2, proj_size=3, dropout=0.2, bidirectional=True),
    Encoder(),
    Attending(),
    Attending("cross", bias=False),
    Attending("apart", dropout=0.1),
]


CASES = list(_layer_cases())


@pytest.mark.parametrize("case", range(len(CASES)))
def test_the_imported_module_has_torchs_figures_and_output(case, one_thread):
    module, size = CASES[case]
    torch.manual_seed(case)
    randomise_batch_norm(module, seed=case)
    module.eval()
    x = torch.randn(2, *size, generator=torch.Generator().manual_seed(case))
    net = archc.from_torch(module, x)
    assert_agrees(net, module, x)


@pytest.mark.parametrize("case", range(len(SEQUENCES)))
def test_sequences_import_with_torchs_figures_and_output(case, one_thread):
    module = SEQUENCES[case].eval()
    torch.manual_seed(case)
    gen = torch.Generator().manual_seed(case)
    if isinstance(module, Classifier):
        x = torch.randint(0, 30, (2, 7), generator=gen)
    else:
        x = torch.randn(2, 7, 8 if isinstance(module, Attending) else 5, generator=gen)
    net = archc.from_torch(module, x)
    assert_agrees(net, module, x)


def test_a_run_of_identical_units_is_a_repeat_of_one_block():
    text = archc.torch_to_arch(Stack(n=5), torch.randn(1, 3, 6, 6))
    assert "block residual(" in text and "repeat 4 {" in text
    assert text.count("residual") == 3  # the block, the first call, the call in the repeat


class Named(nn.Module):
    """Units held as attributes unit_0 ... unit_3, as torchvision's ViT holds encoder_layer_0 ... _11."""

    def __init__(self, first=0):
        super().__init__()
        self.names = [f"unit_{k}" for k in range(first, first + 4)]
        for name in self.names:
            self.add_module(name, Residual(3, "add"))

    def forward(self, x):
        for name in self.names:
            x = getattr(self, name)(x)
        return x


@pytest.mark.parametrize(("first", "repeat"), [(0, "repeat 3 {"), (1, "repeat 4 {"), (2, None)])
def test_a_run_named_as_a_repeat_names_it_is_one(first, repeat, one_thread):
    """unit_1, unit_2, ... are what `repeat N { residual unit }` names; a run from unit_2 is not."""
    module = Named(first).eval()
    x = torch.randn(2, 3, 6, 6)
    text = archc.torch_to_arch(module, x)
    assert (repeat in text) if repeat else ("repeat" not in text)
    assert_agrees(archc.loads(text), module, x)


def test_a_module_run_twice_is_named_apart_and_weightless_ones_fold():
    """A ReLU module is `-> relu` on the layer it follows, and a second call of it a layer of its own."""
    text = archc.torch_to_arch(Residual(4, "add"), torch.randn(1, 4, 6, 6))
    assert re.search(r"bn +bn1 -> relu", text)
    text = archc.torch_to_arch(Twice(), torch.randn(1, 3, 6, 6))
    assert re.search(r"relu +relu\n", text) and re.search(r"relu +relu_2 \(conv\)", text)


# -- what archc cannot represent ---------------------------------------------------------------


class Branchy(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 3, 1)

    def forward(self, x):
        y = self.conv(x)
        if y.sum() > 0:  # control flow on a value: fx cannot trace it
            return y
        return -y


class TwoInputs(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 3, 1)

    def forward(self, x, y):
        return self.conv(x) + y


class Joiner(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 3, 1)
        self.inner = TwoInputs()

    def forward(self, x):
        return self.inner(x, self.conv(x))


class Token(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 3, 1)
        self.scale = nn.Parameter(torch.ones(3, 1, 1))

    def forward(self, x):
        return self.conv(x) * self.scale


class Shared(nn.Module):
    def __init__(self):
        super().__init__()
        self.unit = nn.Sequential(nn.Conv2d(3, 3, 1), nn.ReLU())

    def forward(self, x):
        return self.unit(self.unit(x))


class Apart(nn.Module):
    """A weightless submodule run twice with a layer between: a block instance runs in one place."""

    def __init__(self):
        super().__init__()
        self.unit = nn.Sequential(nn.ReLU(), nn.Sigmoid())
        self.conv = nn.Conv2d(3, 3, 1)

    def forward(self, x):
        return self.unit(self.conv(self.unit(x)))


ERRORS = [
    (nn.Sequential(nn.Conv2d(3, 3, 1), nn.Softplus()), r"`1` \(Softplus\): archc has no layer for Softplus"),
    (Branchy(), r"torch\.fx cannot trace `\(the model\)` \(Branchy\)"),
    (Joiner(), r"`inner` \(TwoInputs\) reads 2 tensors"),
    (Token(), r"`scale` \(Parameter\) is a tensor used directly in forward: archc's `param` is"),
    (Shared(), r"`unit\.0` \(Conv2d\) runs twice: archc's layers do not share weights"),
    (Apart(), r"`unit` \(Sequential\) runs in two places"),
    (nn.Sequential(nn.Conv2d(4, 3, 1)), r"does not run on the example input: .*channels"),
    (
        nn.Sequential(nn.Conv2d(3, 4, 1), nn.PixelShuffle(2)),
        r"`1` \(PixelShuffle\): archc has no layer",
    ),
    (Fn(lambda x: x + 1), r"`add` in the model's forward: archc cannot represent add of a tensor and a number"),
    (Fn(lambda x: torch.cat([x, x], dim=0)), r"`cat` in the model's forward: .*dim=0"),
    (Fn(lambda x: torch.flatten(x, 2)), r"`flatten` in the model's forward: .*start_dim=2"),
    (Fn(lambda x: x.permute(1, 0, 2, 3)), r"`permute` in the model's forward: .*moves the batch"),
    (Fn(lambda x: x.expand(2, -1, -1, -1)), r"`expand` in the model's forward: .*more than a parameter"),
    (Fn(lambda x: x.roll(1)), r"`roll` in the model's forward: archc has no layer for the call method"),
    (nn.Sequential(nn.Conv2d(3, 3, 3, padding_mode="reflect")), r"`0` \(Conv2d\): .*padding_mode='reflect'"),
    (nn.Sequential(nn.Conv2d(3, 3, 1), nn.BatchNorm2d(3, affine=False)), r"`1` \(BatchNorm2d\): archc cannot"),
    (nn.Sequential(nn.Conv2d(3, 3, 1), nn.MaxPool2d(2, return_indices=True)), r"`1` \(MaxPool2d\): .*return_indices"),
    (nn.Sequential(nn.Conv2d(3, 3, 1), nn.AvgPool2d(2, divisor_override=3)), r"`1` \(AvgPool2d\): .*divisor"),
    (nn.Sequential(nn.Conv2d(3, 3, 1), nn.Flatten(2)), r"`1` \(Flatten\): .*start_dim=2"),
    (nn.Sequential(nn.Conv2d(3, 3, 1), nn.Softmax(dim=2)), r"`1` \(Softmax\): .*dim=2"),
    (nn.Sequential(nn.Conv2d(3, 3, 1), nn.AdaptiveAvgPool2d((None, 2))), r"`1` \(AdaptiveAvgPool2d\): .*None"),
    (nn.Sequential(nn.Conv2d(3, 3, 1), nn.Linear(5, 2)), r"archc cannot analyse the imported spec"),
]
SEQUENCE_ERRORS = [
    (Encoder(index=1), r"`getitem` in the model's forward indexes 1"),
    (nn.Sequential(nn.LSTM(5, 4)), r"`0` \(LSTM\): archc cannot represent batch_first=False"),
    (nn.Sequential(nn.Embedding(9, 4, max_norm=1.0)), r"`0` \(Embedding\): archc cannot represent max_norm"),
    (nn.Sequential(nn.Identity()), r"argument `input` holds whole numbers"),
    (Attending(mask=True), r"`self_attention` \(MultiheadAttention\): .*key_padding_mask"),
    (Attending(add_bias_kv=True), r"`self_attention` \(MultiheadAttention\): .*add_bias_kv"),
    (Unused(), r"`spare` \(Linear\) holds weights that forward never uses"),
]


@pytest.mark.parametrize("case", range(len(ERRORS)))
def test_what_archc_cannot_represent_is_an_error_naming_the_module(case):
    module, message = ERRORS[case]
    with pytest.raises(TorchImportError, match=message):
        archc.torch_to_arch(module, torch.randn(1, 3, 5, 5))


@pytest.mark.parametrize("case", range(len(SEQUENCE_ERRORS)))
def test_what_archc_cannot_represent_of_a_sequence_is_an_error_naming_it(case):
    module, message = SEQUENCE_ERRORS[case]
    x = torch.randint(0, 9, (1, 7)) if case in (2, 3) else torch.randn(1, 7, 8 if case > 3 else 5)
    with pytest.raises(TorchImportError, match=message):
        archc.torch_to_arch(module, x)


def test_the_example_input_must_be_a_batch_of_tensors():
    with pytest.raises(TorchImportError, match="batch dimension"):
        archc.torch_to_arch(nn.Sequential(nn.ReLU()), torch.randn(5))
    with pytest.raises(TorchImportError, match=r"torch\.nn\.Module"):
        archc.torch_to_arch(lambda x: x, torch.randn(1, 5))


def test_the_model_keeps_its_training_mode():
    module = nn.Sequential(nn.Linear(4, 2))
    module.train()
    archc.torch_to_arch(module, torch.randn(1, 4))
    assert module.training


# -- the command line ------------------------------------------------------------------------------


def test_archc_import_builds_a_torchvision_constructor(tmp_path, capsys):
    out = tmp_path / "resnet18.arch"
    assert main(["import", "torchvision.models:resnet18", "-o", str(out)]) == 0
    assert "imported from torchvision.models:resnet18" in capsys.readouterr().err
    net = archc.load(out)
    import torchvision

    model = torchvision.models.resnet18(weights=None)
    assert net.totals.params == sum(p.numel() for p in model.parameters())
    assert net.inputs == {"x": (3, 224, 224)}


def test_archc_import_takes_the_example_input(capsys):
    """Any importable constructor (this file's Stack), with the example input's shape."""
    assert main(["import", "test_import_torch_layers:Stack", "--input", "3x6x6"]) == 0
    net = archc.loads(capsys.readouterr().out)
    assert net.inputs == {"x": (3, 6, 6)}
    assert net.totals.params == sum(p.numel() for p in Stack().parameters())


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["torch.nn:Linear"], "cannot guess what `torch.nn:Linear` reads: give its input"),
        (["torchvision.models:nosuch"], "cannot import `torchvision.models:nosuch`"),
        (["nosuch_package_x.models:net", "--input", "4"], "cannot import `nosuch_package_x.models:net`"),
        (["torch.nn:Linear", "--input", "4"], r"`torch.nn:Linear\(\)` failed: TypeError"),
        (["torch:pi", "--input", "4"], "`torch:pi` is a float, not a constructor"),
        (["torch.nn:Softplus", "--input", "4"], r"archc has no layer for the call function `softplus`"),
        (["torch.nn:Conv1d", "--input", "4"], r"failed"),
        (["torch.nn:Tanh", "--input", "4"], r"Tanh is one layer: import nn.Sequential\(model\)"),
    ],
)
def test_archc_import_errors_exit_1_and_write_nothing(argv, message, tmp_path, capsys):
    out = tmp_path / "out.arch"
    assert main(["import", *argv, "-o", str(out)]) == 1
    err = capsys.readouterr().err
    assert err.startswith("archc: error: ") and "Traceback" not in err
    assert re.search(message, err), err
    assert not out.exists()
