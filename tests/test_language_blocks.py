"""Issue 15, the language's part: statements over several lines, activations as block
parameters.

Every spec here is checked by both readers (the fast one and lark) where it parses,
and every fix a diagnostic proposes is applied and the result analysed again.
"""

from __future__ import annotations

import pytest
import torch
from lark import UnexpectedInput

import archc
from archc import syntax
from archc.diagnostics import ArchError


def both_readers(text: str):
    """The tree of `text`, after checking the fast reader and lark agree on it."""
    fast = syntax._read_fast(text, "t.arch")
    slow = syntax.to_ast(syntax.parser().parse(text), "t.arch")
    assert fast == slow
    return slow


def errors(text: str) -> list:
    with pytest.raises(ArchError) as info:
        archc.loads(text, "t.arch")
    return [d for d in info.value.diagnostics if d.severity == "error"]


def fixed(text: str, diag) -> archc.analysis.Network:
    """`text` with the diagnostic's fixes applied, analysed: it must have no error left."""
    assert diag.fixes, f"{diag.message} proposes no edit"
    for fix in sorted(diag.fixes, key=lambda f: (f.span.line, f.span.col), reverse=True):
        text = fix.apply(text)
    return archc.loads(text, "t.arch")


# -- 1. statements over several lines ------------------------------------------------------

INCEPTION_E_CONCAT = """network SixInputs {
  input x: 8x8x8
  conv a (x): 320 @ 1x1
  conv b (x): 384 @ 1x1
  conv c (x): 384 @ 1x1
  conv d (x): 384 @ 1x1
  conv e (x): 384 @ 1x1
  conv f (x): 192 @ 1x1
  concat out%s
}
"""


def test_a_concat_of_six_inputs_splits_over_lines():
    one_line = archc.loads(INCEPTION_E_CONCAT % " (a, b, c, d, e, f)")
    split = INCEPTION_E_CONCAT % " (a, b,   # the 1x1 branches\n\n      c, d,\n      e,\n      f\n  )"
    both_readers(split)
    net = archc.loads(split)
    assert net.graph.nodes["out"].inputs == list("abcdef")
    assert net.graph.nodes["out"].shape == one_line.graph.nodes["out"].shape
    # torch's channel count for the same concat
    x = torch.zeros(1, 8, 8, 8)
    widths = (320, 384, 384, 384, 384, 192)
    expected = torch.cat([torch.nn.Conv2d(8, w, 1)(x) for w in widths], 1).shape[1:]
    assert net.graph.nodes["out"].shape[-3:] == tuple(expected)


@pytest.mark.parametrize(
    "text",
    [
        "network N {\n  input x: 3x8x8\n  conv: (4 +\n    4) @ 3x3 pad=(1,\n 1)\n}\n",
        "network N {\n  input x: 3x8x8\n  relu r (\n    x\n  )\n}\n",
        "block b(c) { conv: c @ 1x1 }\nnetwork N {\n  input x: 3x8x8\n  b: (2 *\n\n  # a comment\n  3)\n}\n",
        "network N {\n  input x: 3x8x8\r\n  relu (x,\r\n x)\n}\n",  # parses; the expander counts inputs
    ],
)
def test_a_line_break_inside_parentheses_continues(text):
    both_readers(text)


@pytest.mark.parametrize(
    "text",
    [
        "network N {\n  input a: 3\n  add (a;\n  a)\n}\n",  # `;` still ends a statement
        "network N {\n  input a: 3x8x8\n  conv: 4 @\n  3x3\n}\n",  # outside parentheses it ends
        "network N {\n  input a: 3x8x8\n  conv: 4 @ 3x3\n  /2\n}\n",
        "network N (\n) {\n  input a: 3\n}\n",
        "network N\n {\n  input a: 3\n}\n",
    ],
)
def test_a_line_break_outside_parentheses_ends_the_statement(text):
    assert syntax._read_fast(text, "t.arch") is None
    with pytest.raises(UnexpectedInput):
        syntax.parser().parse(text)


SPLIT = [
    # the line break ends an unfinished statement
    ("network N {\n  input x: 3x8x8\n  conv: 4 @\n      3x3 /2\n  relu\n}\n", (3, 12), {"stride": 2}),
    # the next line does not read as a statement
    ("network N {\n  input x: 3x8x8\n  conv: 4 @ 3x3\n      /2 -> relu\n  relu\n}\n", (4, 7), {"stride": 2}),
    ("network N {\n  input x: 3x8x8\n  conv: 4 @ 3x3\n      -> relu\n  relu\n}\n", (4, 7), {}),
    ("network N {\r\n  input x: 3x8x8\r\n  conv: 4 @ 3x3 \r\n  pad=1\r\n}\r\n", (4, 6), {"padding": 1}),
    # `else` on the line after the `}` it follows
    ("network N {\n  input x: 3x8x8\n  if true { conv: 4 @ 3x3 }\n  else { relu }\n}\n", (4, 8), {}),
]


@pytest.mark.parametrize("text, where, torch_args", SPLIT)
def test_a_split_statement_says_that_statements_end_at_the_line(text, where, torch_args):
    (diag,) = errors(text)  # the rest of the statement is not a second error
    assert diag.code == "E0101"
    assert (diag.span.line, diag.span.col) == where
    assert "continues on the next line only inside parentheses" in diag.help[0]
    net = fixed(text, diag)
    # torch's shape for the joined statement
    conv = torch.nn.Conv2d(3, 4, 3, **torch_args)
    assert net.layers[-1].shape[-3:] == tuple(conv(torch.zeros(1, 3, 8, 8)).shape[1:])


@pytest.mark.parametrize(
    "text",
    [
        "network N {\n  input x: 3x8x8\n  conv: 4 @ 3x3; /2\n}\n",  # a `;` ends it on purpose
        "network N {\n  input x: 3x8x8\n  conv: 4 @ 3x3  # kernel\n  /2\n}\n",  # a comment joining would swallow
        "network N {\n  input x: 3x8x8\n  conv: 4 @\n\n  3x3\n}\n",  # a blank line between
        "network N {\n  input x: 3x8x8\n  conv: 4 @ 3x3\n  / / 2\n}\n",  # joined, it still does not parse
    ],
)
def test_no_join_is_proposed_where_it_would_not_help(text):
    diags = errors(text)
    assert diags[0].code == "E0101"
    assert not any("inside parentheses" in h for d in diags for h in d.help)


# -- 2. an activation as a block parameter -------------------------------------------------

MB = """block mb(ch, act=relu) {
  conv: ch @ 3x3 pad=1 -> act
  conv: ch @ 1x1 -> act%s
}

block stage(a) {
  mb: 4 a
}

network N {
  input x: 3x8x8
  %s
}
"""


def twin_output(net, twin: torch.nn.Module) -> None:
    """The generated PyTorch and NumPy models compute what `twin` computes, with its weights."""
    from codegen_util import build

    model, _, _ = build(net, "torch")
    params = list(model.parameters())
    assert [p.shape for p in params] == [p.shape for p in twin.parameters()]
    with torch.no_grad():
        for mine, theirs in zip(params, twin.parameters(), strict=True):
            mine.copy_(theirs)
    x = torch.randn(2, 3, 8, 8, generator=torch.Generator().manual_seed(0)) * 4
    with torch.no_grad():
        want = twin.eval()(x)
        torch.testing.assert_close(model.eval()(x), want)
    numpy_model, _, _ = build(net, "numpy")
    numpy_model.load_state_dict(model.state_dict())
    numpy_model.eval()
    torch.testing.assert_close(torch.from_numpy(numpy_model(x.numpy())), want, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize(
    "call, args, acts",
    [
        ("mb: 4 hardswish", "", (torch.nn.Hardswish(), torch.nn.Hardswish())),
        ("mb: 4", "", (torch.nn.ReLU(), torch.nn.ReLU())),  # the default
        ("mb: ch=4 act=leaky_relu", "(0.2)", (torch.nn.LeakyReLU(), torch.nn.LeakyReLU(0.2))),
        ("stage: relu6", "", (torch.nn.ReLU6(), torch.nn.ReLU6())),  # passed on by another block
        ("stage: identity", "", (torch.nn.Identity(), torch.nn.Identity())),
    ],
)
def test_an_activation_passed_to_a_block_is_applied_where_it_is_written(call, args, acts):
    text = MB % (args, call)
    net = archc.loads(text, "t.arch")
    twin = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3, padding=1), acts[0], torch.nn.Conv2d(4, 4, 1), acts[1])
    twin_output(net, twin)


def test_a_parameter_hides_an_activation_of_its_name():
    text = "block b(relu) {\n  conv: 4 @ 1x1 -> relu\n}\nnetwork N {\n  input x: 3x8x8\n  b: tanh\n}\n"
    net = archc.loads(text, "t.arch")
    twin_output(net, torch.nn.Sequential(torch.nn.Conv2d(3, 4, 1), torch.nn.Tanh()))


@pytest.mark.parametrize(
    "call, where, fix",
    [
        ("mb: 4 hardswsh", (12, 9), "hardswish"),
        ("mb: 4 act=rleu", (12, 13), "relu"),
        ("stage: sigmod", (12, 10), "sigmoid"),
        ("mb: 4 swish", (12, 9), "silu"),  # what other tools call it
    ],
)
def test_a_word_that_is_no_activation_is_an_error_at_the_call(call, where, fix):
    text = MB % ("", call)
    (diag,) = errors(text)
    assert diag.code == "E0216"
    assert (diag.span.line, diag.span.col) == where
    assert diag.notes[0][0] == "`act` is the activation here" and diag.notes[0][1].line == 2
    assert any(h.startswith("activations: ") for h in diag.help)
    assert [f.text for f in diag.fixes] == [fix]
    fixed(text, diag)


@pytest.mark.parametrize("call", ["mb: 4 3", "mb: 4 3x3", "mb: 4 true", "mb: 4 act=(1,2)"])
def test_a_value_that_is_no_word_is_an_error_at_the_call(call):
    (diag,) = errors(MB % ("", call))
    assert diag.code == "E0216"
    assert diag.message.startswith("`act` of block `mb` is an activation, not ")
    assert diag.span.line == 12 and not diag.fixes


def test_a_default_that_is_no_activation_is_an_error_at_the_default():
    text = "block b(act=rleu) {\n  conv: 4 @ 1x1 -> act\n}\nnetwork N {\n  input x: 3x8x8\n  b\n}\n"
    (diag,) = errors(text)
    assert (diag.code, diag.span.line, diag.span.col) == ("E0216", 1, 13)
    assert [(note, span.line) for note, span in diag.notes] == [("`act` is the activation here", 2)]
    fixed(text, diag)


# -- 3. the sizes of a layer: in.channels --------------------------------------------------

DENSE = """block dense_layer(growth) {
  bn -> relu
  conv: 4 * growth @ 1x1 bias=false
  bn -> relu
  conv new: growth @ 3x3 pad=1 bias=false
  concat (in, new)
}

block transition(out=in.channels // 2) {
  bn -> relu
  conv: out @ 1x1 bias=false
  avgpool: 2x2 /2
}

network DenseStyle {
  input x: 64x32x32
  repeat 4 { dense_layer: 32 }
  transition t1
  repeat 3 { dense_layer: 32 }
  transition t2
  avgpool: t2.height x t2.width
}
"""


class TorchDenseLayer(torch.nn.Module):
    def __init__(self, cin: int, growth: int):
        super().__init__()
        self.body = torch.nn.Sequential(
            torch.nn.BatchNorm2d(cin),
            torch.nn.ReLU(),
            torch.nn.Conv2d(cin, 4 * growth, 1, bias=False),
            torch.nn.BatchNorm2d(4 * growth),
            torch.nn.ReLU(),
            torch.nn.Conv2d(4 * growth, growth, 3, padding=1, bias=False),
        )

    def forward(self, x):
        return torch.cat([x, self.body(x)], 1)


def torch_dense(cin: int, size: int) -> torch.nn.Module:
    """torchvision's DenseNet blocks written out, channel counts computed by hand."""
    layers: list = []
    for count in (4, 3):
        for _ in range(count):
            layers.append(TorchDenseLayer(cin, 32))
            cin += 32
        layers += [torch.nn.BatchNorm2d(cin), torch.nn.ReLU(), torch.nn.Conv2d(cin, cin // 2, 1, bias=False)]
        layers.append(torch.nn.AvgPool2d(2, 2))
        cin //= 2
        size //= 2
    layers.append(torch.nn.AvgPool2d(size))
    return torch.nn.Sequential(*layers)


@pytest.mark.parametrize("channels, size", [(64, 32), (24, 16), (3, 8)])
def test_a_transition_reads_the_channels_it_is_given(channels, size):
    both_readers(DENSE)
    net = archc.loads(DENSE, "t.arch", inputs={"x": (channels, size, size)})
    twin = torch_dense(channels, size)
    params = sum(p.numel() for p in twin.parameters())
    buffers = sum(b.numel() for name, b in twin.named_buffers() if not name.endswith("num_batches_tracked"))
    assert (net.totals.params, net.totals.buffers) == (params, buffers)
    assert net.layers[-1].shape == tuple(twin(torch.zeros(1, channels, size, size)).shape[1:])


def test_sizes_of_vectors_sequences_and_volumes():
    text = """network N {
  input v: 10
  input s: 4x20
  input u: 2x6x7x8
  dense (v): v.channels * 2
  conv c1 (s): s.length @ 3
  conv c3 (u): u.depth + u.height + u.width @ 1x1x1
  output (dense1, c1, c3)
}
"""
    both_readers(text)
    net = archc.loads(text, "t.arch")
    assert net.layer("dense1").shape == tuple(torch.nn.Linear(10, 20)(torch.zeros(1, 10)).shape[1:])
    assert net.layer("c1").shape == tuple(torch.nn.Conv1d(4, 20, 3)(torch.zeros(1, 4, 20)).shape[1:])
    assert net.layer("c3").shape == tuple(torch.nn.Conv3d(2, 21, 1)(torch.zeros(1, 2, 6, 7, 8)).shape[1:])


def test_a_size_works_in_a_repeat_count_a_stride_and_an_activation():
    text = """block pool_to_one() {
  maxpool: 2x2 /in.width // 2
}
network N {
  input x: 2x4x4
  repeat x.channels { conv: 2 @ 1x1 -> leaky_relu(x.channels * 0.1) }
  pool_to_one
}
"""
    net = archc.loads(text, "t.arch")
    assert [layer.op for layer in net.layers] == ["input", "conv", "conv", "maxpool"]
    assert net.layer("conv1").activation[1]["alpha"] == pytest.approx(0.2)
    assert net.layers[-1].shape == tuple(torch.nn.MaxPool2d(2, 2)(torch.zeros(1, 2, 4, 4)).shape[1:])


@pytest.mark.parametrize(
    "stmt, code, message, fix",
    [
        ("conv: c.chanels @ 1x1", "E0212", "`chanels` is not a size of a layer", "channels"),
        ("conv: c.hieght @ 1x1", "E0212", "`hieght` is not a size of a layer", "height"),
        ("conv: c.length @ 1x1", "E0212", "`c` is 8x6x6, which has no length", None),
        ("conv: c.lenght @ 1x1", "E0212", "`c` is 8x6x6, which has no length", None),  # not `height`
        ("conv: c.sizes @ 1x1", "E0212", "`sizes` is not a size of a layer", None),
        ("conv: cc.channels @ 1x1", "E0202", "unknown layer `cc`", "c"),
        ("conv: in.channels @ 1x1", "E0202", "`in` names a block's input and is only defined inside a block", None),
    ],
)
def test_a_size_that_does_not_exist_is_a_located_error(stmt, code, message, fix):
    text = f"network N {{\n  input x: 3x8x8\n  conv c: 8 @ 3x3\n  {stmt}\n}}\n"
    (diag,) = errors(text)
    assert (diag.code, diag.message, diag.span.line) == (code, message, 4)
    word = stmt.split(".")[1].split()[0] if code == "E0212" else stmt.split()[1].split(".")[0]
    assert diag.span.col == text.split("\n")[3].index(word) + 1
    if fix is None:
        assert not diag.fixes
    else:
        assert [f.text for f in diag.fixes] == [fix]
        net = fixed(text, diag)
        size = {"channels": 8, "height": 6}.get(fix, 8)  # torch: Conv2d(3, 8, 3) of 8x8 is 8x6x6
        assert net.layers[-1].shape == tuple(torch.nn.Conv2d(8, size, 1)(torch.zeros(1, 8, 6, 6)).shape[1:])


def test_a_layer_above_that_fails_is_the_only_error():
    text = "network N {\n  input x: 3x8x8\n  conv c: 4 @ 9x9\n  conv: c.channels @ 1x1\n  relu\n}\n"
    diags = errors(text)
    assert [(d.code, d.span.line) for d in diags] == [("E0302", 3)]


def test_a_default_reads_only_the_input_of_its_call():
    text = "block b(n=c.channels) {\n  relu\n}\nnetwork N {\n  input x: 3x8x8\n  conv c: 8 @ 1x1\n  b\n}\n"
    (diag,) = errors(text)
    assert (diag.code, diag.span.line) == ("E0202", 1)


# -- 4. conditionals -----------------------------------------------------------------------

RESNET = """block basic(out, stride=1) {
  conv: out @ 3x3 /stride pad=1 bias=false
  bn -> relu
  conv: out @ 3x3 pad=1 bias=false
  bn main
  if stride > 1 or in.channels != out {
    conv proj (in): out @ 1x1 /stride bias=false
    bn proj_bn
    add (main, proj_bn) -> relu
  } else {
    add (main, in) -> relu
  }
}

network OneBlock {
  input x: 16x16x16
  basic: 16
  basic: 32 /2
  basic: 32
  basic: 48
}
"""


class TorchBasic(torch.nn.Module):
    """torchvision's BasicBlock, with the projection decided by hand."""

    def __init__(self, cin: int, out: int, stride: int = 1):
        super().__init__()
        self.conv1 = torch.nn.Conv2d(cin, out, 3, stride, 1, bias=False)
        self.bn1 = torch.nn.BatchNorm2d(out)
        self.conv2 = torch.nn.Conv2d(out, out, 3, 1, 1, bias=False)
        self.bn2 = torch.nn.BatchNorm2d(out)
        self.down = None
        if stride != 1 or cin != out:
            self.down = torch.nn.Sequential(torch.nn.Conv2d(cin, out, 1, stride, bias=False), torch.nn.BatchNorm2d(out))

    def forward(self, x):
        y = self.bn2(self.conv2(torch.relu(self.bn1(self.conv1(x)))))
        return torch.relu(y + (x if self.down is None else self.down(x)))


def test_one_resnet_block_with_a_conditional_projection_is_torchvisions_basic_block():
    from torch.utils.flop_counter import FlopCounterMode

    both_readers(RESNET)
    net = archc.loads(RESNET, "t.arch")
    twin = torch.nn.Sequential(TorchBasic(16, 16), TorchBasic(16, 32, 2), TorchBasic(32, 32), TorchBasic(32, 48))
    params = sum(p.numel() for p in twin.parameters())
    buffers = sum(b.numel() for name, b in twin.named_buffers() if not name.endswith("num_batches_tracked"))
    with FlopCounterMode(display=False) as flops:
        twin.eval()(torch.zeros(1, 16, 16, 16))
    assert (net.totals.params, net.totals.buffers, net.totals.macs) == (params, buffers, flops.get_total_flops() // 2)
    assert [layer.name for layer in net.layers if layer.op == "add"] == [
        "basic1.add1",
        "basic2.add1",
        "basic3.add1",
        "basic4.add1",
    ]
    assert sum(layer.name.endswith(".proj") for layer in net.layers) == 2  # torch: two downsamples
    with torch.no_grad():
        for module in twin.modules():
            if isinstance(module, torch.nn.BatchNorm2d):
                module.running_mean.uniform_(-1, 1)
                module.running_var.uniform_(0.5, 2)
    twin_output_of(net, twin, (16, 16, 16))


def twin_output_of(net, twin: torch.nn.Module, shape) -> None:
    """The generated PyTorch model, given the twin's parameters and buffers in order, computes
    what the twin computes."""
    from codegen_util import build

    model, _, _ = build(net, "torch")
    ours = model.state_dict()
    theirs = [v for k, v in twin.state_dict().items() if not k.endswith("num_batches_tracked")]
    mine = [k for k in ours if not k.endswith("num_batches_tracked")]
    assert [tuple(ours[k].shape) for k in mine] == [tuple(v.shape) for v in theirs]
    model.load_state_dict(dict(zip(mine, theirs, strict=True)), strict=False)
    x = torch.randn(2, *shape, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        torch.testing.assert_close(model.eval()(x), twin.eval()(x))


CHAIN = """block pick(n) {
  if n < 2 {
    conv small: 2 @ 1x1
  } else if n == 2 or not (n < 5) {
    conv middle: 3 @ 1x1
  } else {
    conv large: 4 @ 1x1
  }
}
network N {
  input x: 1x4x4
  pick p: %d
  if x.channels > 1 { relu }
}
"""


@pytest.mark.parametrize(
    "n, name, channels", [(1, "p.small", 2), (2, "p.middle", 3), (3, "p.large", 4), (7, "p.middle", 3)]
)
def test_else_if_takes_the_first_true_branch(n, name, channels):
    both_readers(CHAIN % n)
    net = archc.loads(CHAIN % n, "t.arch")
    assert [layer.name for layer in net.layers] == ["x", name]  # no else, condition false: nothing
    assert net.layers[-1].shape == tuple(torch.nn.Conv2d(1, channels, 1)(torch.zeros(1, 1, 4, 4)).shape[1:])


def test_a_condition_in_parentheses_is_a_value():
    block = "block b(s) {\n  conv: 4 @ 1x1 bias=(s == 1 and true)\n}\n"
    text = block + "network N {\n  input x: 3x8x8\n  b: 1\n  b (x): 2\n}\n"
    both_readers(text)
    net = archc.loads(text, "t.arch")
    with_bias, without = (torch.nn.Conv2d(3, 4, 1, bias=b) for b in (True, False))
    assert [layer.params for layer in net.layers[1:]] == [
        sum(p.numel() for p in with_bias.parameters()),
        sum(p.numel() for p in without.parameters()),
    ]


@pytest.mark.parametrize(
    "cond, code, message, col, fix",
    [
        ("strde > 1", "E0212", "unknown name `strde` in an expression", 6, "stride"),
        ("stride", "E0205", "a condition must be true or false, not `2`", 6, None),
        ("stride and true", "E0205", "`and` needs true or false, not `2`", 6, None),
        ("not stride", "E0205", "`not` needs true or false, not `2`", 10, None),
        ("true < 1", "E0212", "`<` compares numbers, not `true`", 6, None),
        ("in.chanels > 1", "E0212", "`chanels` is not a size of a layer", 9, "channels"),
        ("same == 1", "E0212", "unknown name `same` in an expression", 6, None),
    ],
)
def test_a_condition_that_cannot_be_decided_is_a_located_error(cond, code, message, col, fix):
    block = f"block b(stride) {{\n  if {cond} {{\n    relu\n  }}\n}}\n"
    text = block + "network N {\n  input x: 3x8x8\n  repeat 3 { b: 2 }\n}\n"
    (diag,) = errors(text)  # once, not once per call
    assert (diag.code, diag.message, diag.span.line, diag.span.col) == (code, message, 2, col)
    if fix is None:
        assert not diag.fixes
    else:
        assert [f.text for f in diag.fixes] == [fix]
        net = fixed(text, diag)
        assert [layer.op for layer in net.layers] == ["input", "relu", "relu", "relu"]  # 3 > 1 and 2 > 1


def test_a_name_only_the_branch_not_taken_defines_is_an_error_that_says_so():
    text = RESNET.replace("add (main, in) -> relu", "identity keep (in)").replace(
        "  }\n}\n", "  }\n  add (main, proj_bn)\n}\n"
    )
    (diag,) = errors(text)
    assert diag.code == "E0203" and diag.span.line == 13
    assert diag.message == "`proj_bn` is only defined in the branch of an `if` that is not taken here"
    assert diag.notes[0][0] == "the `if`" and diag.notes[0][1].line == 6


def test_an_error_in_a_branch_not_taken_is_not_reported_but_a_syntax_error_is():
    text = "network N {\n  input x: 3x8x8\n  if false {\n    conv: 4 @ 99x99\n  }\n}\n"
    assert [layer.name for layer in archc.loads(text, "t.arch").layers] == ["x"]
    assert errors(text.replace("99x99", "99x99 @"))[0].code == "E0101"


@pytest.mark.parametrize(
    "text, valid",
    [
        ("network N {\n  input x: 3\n  relu if\n  relu else (if)\n}\n", True),  # words, where names are
        ("block iffy() {\n  relu\n}\nnetwork N {\n  input x: 3\n  iffy\n}\n", True),
        ("network N {\n  if true { relu } elsewhere { relu }\n}\n", False),  # keywords are whole words
        ("network N {\n  if true { relu } else iffy { relu }\n}\n", False),
        ("network N {\n  if true orange { relu }\n}\n", False),
        ("network N {\n  if 1 < 2 < 3 { relu }\n}\n", False),  # comparisons do not chain
        ("network N {\n  if true { relu }\n  else { relu }\n}\n", False),  # `} else` on one line
        ("network N {\n  conv: (a) or in.c and 3x3 not\n}\n", True),  # outside parentheses: words
        ("network N {\n  concat (or, b)\n}\n", False),  # inside them: keywords
        ("network N {\n  relu -> elu(not)\n}\n", False),
        ("network N {\n  if in.or { relu }\n}\n", False),  # and in a condition
        ("network N {\n  input x: 3\n  if " + "not " * 201 + "false { relu }\n}\n", True),
    ],
    ids=range(12),
)
def test_the_words_of_conditionals(text, valid):
    tree = syntax._read_fast(text, "t.arch")
    try:
        slow = syntax.to_ast(syntax.parser().parse(text), "t.arch")
    except UnexpectedInput:
        slow = None
    assert tree == slow
    assert (slow is not None) == valid
    if valid and "not " in text:
        assert [layer.op for layer in archc.loads(text, "t.arch").layers] == ["input", "relu"]


def test_a_long_run_of_not_needs_no_deep_recursion():
    text = "network N {\n  input x: 3\n  if " + "not " * 5001 + "false { relu }\n}\n"
    assert syntax._read_fast(text, "t.arch") is not None
    assert [layer.op for layer in archc.loads(text, "t.arch").layers] == ["input", "relu"]


def test_a_conditional_prints_back_to_the_same_network():
    from archc.printer import format_module

    for text in (
        RESNET,
        CHAIN % 3,
        "network N {\n  input x: 3x8x8\n  conv: 4 @ 1x1 bias=(not (1 < 2) or 1 + 1 == 2)\n}\n",
    ):
        printed = format_module(syntax.parse(text, "t.arch"))
        again = archc.loads(printed, "t.arch")
        assert [(n.name, n.op, n.inputs, n.attrs) for n in again.layers] == [
            (n.name, n.op, n.inputs, n.attrs) for n in archc.loads(text, "t.arch").layers
        ]


def test_a_long_chain_of_else_if_nests_nothing():
    chain = " else ".join(f"if n == {i} {{ conv c{i}: {i + 1} @ 1x1 }}" for i in range(3000))
    text = f"block pick(n) {{\n  {chain}\n}}\nnetwork N {{\n  input x: 1x4x4\n  pick p: 2999\n}}\n"
    both_readers(text)
    net = archc.loads(text, "t.arch")
    assert [layer.name for layer in net.layers] == ["x", "p.c2999"]
    assert net.layers[-1].shape == tuple(torch.nn.Conv2d(1, 3000, 1)(torch.zeros(1, 1, 4, 4)).shape[1:])
