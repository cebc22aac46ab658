"""Activation memory (peak, views) and receptive fields, checked against outside truths.

Receptive fields are measured with PyTorch: with all-positive weights and no
nonlinearity, the input pixels an output unit depends on are exactly those
with a non-zero gradient."""

import pytest

import archc

torch = pytest.importorskip("torch")


def test_peak_memory_of_a_chain_by_hand():
    # x 1x8x8 (64), a 4x8x8 (256), b 4x8x8 (256), c 2x8x8 (128). Running a needs x+a = 320; b needs
    # a+b = 512 (x freed); c needs b+c = 384. The peak is 512 elements, at b.
    net = archc.loads(
        "network N {\n input x: 1x8x8\n conv a: 4 @ 3x3 pad=1\n conv b: 4 @ 3x3 pad=1\n conv c: 2 @ 1x1\n}",
        "m.arch",
        batch=2,
        dtype="float16",
    )
    assert net.totals.activations == 64 + 256 + 256 + 128
    assert net.totals.peak_activation_bytes == 512 * 2 * 2
    assert net.totals.peak_layer == "b"


def test_a_skip_connection_keeps_its_tensor_alive_and_views_are_free():
    # x 64, a 256, b 256 while x is still needed by the add: 64+256+256 = 576; add: 64+256+... x is
    # 1x8x8 so the shortcut is p (a 1x1 projection, 256): x+a+p? order: a (x+a=320), p (x+a+p=576,
    # x freed after p), b (a+p+b=768, a freed), add (p+b+add=768). flatten is a view: no new memory.
    net = archc.loads(
        "network N {\n input x: 1x8x8\n conv a: 4 @ 3x3 pad=1\n conv p(x): 4 @ 1x1\n"
        " conv b(a): 4 @ 3x3 pad=1\n add (b, p)\n flatten\n}",
        "m.arch",
    )
    assert net.totals.activations == 64 + 4 * 256
    assert net.totals.peak_activation_bytes == 768 * 4


def _torch_rf(module, shape, out_index):
    for p in module.parameters():
        torch.nn.init.constant_(p, 1.0)
    x = torch.ones(1, *shape, requires_grad=True)
    y = module(x)
    y[(0, 0, *out_index)].backward()
    nonzero = x.grad[0, 0].nonzero()
    return [int(nonzero[:, d].max() - nonzero[:, d].min() + 1) for d in range(nonzero.shape[1])]


@pytest.mark.parametrize(
    ("spec", "module"),
    [
        (
            "conv: 1 @ 3x3\n conv: 1 @ 3x3",
            lambda: torch.nn.Sequential(torch.nn.Conv2d(1, 1, 3), torch.nn.Conv2d(1, 1, 3)),
        ),
        (
            "conv: 1 @ 3x3 /2\n conv: 1 @ 3x3 /2\n conv: 1 @ 5x5",
            lambda: torch.nn.Sequential(
                torch.nn.Conv2d(1, 1, 3, 2), torch.nn.Conv2d(1, 1, 3, 2), torch.nn.Conv2d(1, 1, 5)
            ),
        ),
        (
            "conv: 1 @ 3x3 dilation=2\n avgpool: 2x2\n conv: 1 @ 3x5",
            lambda: torch.nn.Sequential(
                torch.nn.Conv2d(1, 1, 3, dilation=2), torch.nn.AvgPool2d(2), torch.nn.Conv2d(1, 1, (3, 5))
            ),
        ),
        (
            "conv: 1 @ 7x7 /2 pad=3\n avgpool: 3x3 /2 pad=1\n conv: 1 @ 3x3 pad=1\n conv: 1 @ 3x3 /2 pad=1",
            lambda: torch.nn.Sequential(
                torch.nn.Conv2d(1, 1, 7, 2, 3),
                torch.nn.AvgPool2d(3, 2, 1),
                torch.nn.Conv2d(1, 1, 3, 1, 1),
                torch.nn.Conv2d(1, 1, 3, 2, 1),
            ),
        ),
    ],
)
def test_receptive_field_size_matches_torch_gradients(spec, module):
    net = archc.loads(f"network N {{\n input x: 1x96x96\n {spec}\n}}", "rf.arch")
    last = net.layers[-1]
    centre = tuple(s // 2 for s in last.shape[1:])
    sizes = [int(size) for size, _, _ in last.rf]
    assert _torch_rf(module(), (1, 96, 96), centre) == sizes


def test_receptive_field_start_and_jump_locate_the_window():
    net = archc.loads("network N {\n input x: 1x64x64\n conv: 1 @ 3x3 /2 pad=1\n conv: 1 @ 3x3 /2\n}", "rf.arch")
    (size, jump, start), _ = net.layers[-1].rf
    module = torch.nn.Sequential(torch.nn.Conv2d(1, 1, 3, 2, 1), torch.nn.Conv2d(1, 1, 3, 2))
    for p in module.parameters():
        torch.nn.init.constant_(p, 1.0)
    x = torch.ones(1, 1, 64, 64, requires_grad=True)
    module(x)[0, 0, 5, 5].backward()
    rows = x.grad[0, 0].nonzero()[:, 0]
    # pixel centres are at i + 0.5: the window of output 5 is centred at start + 5 * jump
    assert float(start + 5 * jump) == (int(rows.min()) + int(rows.max()) + 1) / 2
    assert size == int(rows.max() - rows.min() + 1)
