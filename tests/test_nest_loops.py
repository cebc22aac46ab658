"""Issue 16, item 1: a block whose instances run a repeat of its body a different number of times
(regnet's stages of 1, 3, 6 and 6 blocks) is one class, an nn.Sequential as torchvision's AnyStage:
its __init__ builds the repeat's members in a loop over a count among its arguments, registered
under f-strings of its arguments (`f"block{k}-{i + 1}"`), so the keys stay the spec's.

The outside truth is torch: the same stages built by hand as nn.Sequentials of the same names,
whose state_dict the generated module loads strictly and whose output it gives, eager, scripted,
exported, compiled in one graph and run by ONNX Runtime.
"""

from __future__ import annotations

import re
from collections import OrderedDict

import onnx
import onnxruntime
import pytest
import torch
from codegen_util import build
from test_hostile_codegen import opcodes
from test_nest import nested_module
from torch import nn

import archc
from archc.codegen import generate

UNIT = """
block unit(ch) {
  conv a: ch @ 3x3 pad=1
  relu r
}
"""

# a stage with a first member named from its parameters, and one whose members are all the repeat's
LOOPS = (
    UNIT
    + """
block stage(k, ch, n) {
  unit "block{k}-0": ch
  repeat n - 1 { unit: ch }
}

block plain(ch, n) {
  repeat n { unit: ch }
}

network Loops {
  input x: 4x8x8
  stage s1: 1 6 1
  stage s2: 2 6 2
  stage s3: 3 8 3
  plain p1: 8 1
  plain p2: 8 3
}
"""
)


def _unit(cin: int, ch: int) -> nn.Module:
    return nn.Sequential(OrderedDict(a=nn.Conv2d(cin, ch, 3, padding=1), r=nn.ReLU()))


def _reference() -> nn.Module:
    """LOOPS built by hand: each stage an nn.Sequential of units, named as torchvision names them."""
    torch.manual_seed(0)
    model = nn.Sequential()
    cin = 4
    for name, k, ch, n in [("s1", 1, 6, 1), ("s2", 2, 6, 2), ("s3", 3, 8, 3)]:
        stage = nn.Sequential()
        for i in range(n):
            stage.add_module(f"block{k}-{i}", _unit(cin if i == 0 else ch, ch))
        model.add_module(name, stage)
        cin = ch
    for name, n in [("p1", 1), ("p2", 3)]:
        model.add_module(name, nn.Sequential(OrderedDict((f"unit{i + 1}", _unit(8, 8)) for i in range(n))))
    return model.eval()


def _classes(code: str) -> list[str]:
    return re.findall(r"^class (\w+)\(", code, re.M)


def test_a_repeat_of_each_count_is_one_class_that_builds_it_in_a_loop():
    code = build(archc.loads(LOOPS, "loops.arch"), "torch")[1].code
    assert _classes(code) == ["Unit", "Stage", "Plain", "Loops"]
    assert "class Stage(nn.Sequential):" in code and "class Plain(nn.Sequential):" in code
    assert "        for i in range(n - 1):\n" in code and '(f"block{k}-{i + 1}", ' in code
    assert '(f"block{k}-0", ' in code
    assert (
        "        for i in range(n):\n" in code and '(f"unit{i + 1}", Unit(in_channels if i == 0 else ch, ch))' in code
    )
    assert "        self.s3 = Stage(6, 3, 8, 3)\n" in code


@pytest.fixture(scope="module")
def loaded(tmp_path_factory):
    # written to a file and imported, as a user's is (torch.jit.script reads the source)
    model = nested_module(archc.loads(LOOPS, "loops.arch"), tmp_path_factory.mktemp("loops")).build_model().eval()
    reference = _reference()
    model.load_state_dict(reference.state_dict(), strict=True)
    x = torch.randn(2, 4, 8, 8, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        want = reference(x)
        assert torch.equal(model(x), want)
    return model, x, want


@pytest.mark.filterwarnings("ignore:`torch.jit.script` is deprecated:FutureWarning")
def test_the_loop_class_loads_the_hand_built_stages_and_scripts_exports_and_compiles(loaded):
    model, x, want = loaded
    with torch.no_grad():
        assert torch.equal(torch.jit.script(model)(x), want)
        program = torch.export.export(model, (x,))
        assert torch.allclose(program.module()(x), want, rtol=0, atol=1e-6)
        torch._dynamo.reset()
        assert torch.allclose(torch.compile(model, backend="eager", fullgraph=True)(x), want, rtol=0, atol=1e-6)
    proto = torch.onnx.export(program, dynamo=True, optimize=False, verbose=False).model_proto
    onnx.checker.check_model(proto, full_check=True)
    session = onnxruntime.InferenceSession(proto.SerializeToString(), providers=["CPUExecutionProvider"])
    (got,) = session.run(None, {session.get_inputs()[0].name: x.numpy()})
    assert torch.allclose(torch.as_tensor(got), want, rtol=1e-4, atol=1e-5)


# the first iteration of the repeat reads the block's input (4 channels), the others 6: the loop builds
# it otherwise, as torchvision's AnyStage (`width_in if i == 0 else width_out`)
WIDENS = (
    UNIT
    + """
block plain(ch, n) {
  repeat n { unit: ch }
}

network Widens {
  input x: 4x8x8
  plain p1: 6 2
  plain p2: 6 3
}
"""
)


def test_a_repeat_whose_first_iteration_reads_another_width_is_one_loop_that_gives_torchs_output():
    torch.manual_seed(0)
    reference = nn.Sequential(
        OrderedDict(
            p1=nn.Sequential(OrderedDict(unit1=_unit(4, 6), unit2=_unit(6, 6))),
            p2=nn.Sequential(OrderedDict((f"unit{i + 1}", _unit(6, 6)) for i in range(3))),
        )
    ).eval()
    model, gen, _ = build(archc.loads(WIDENS, "widens.arch"), "torch")
    assert _classes(gen.code) == ["Unit", "Plain", "Widens"]
    assert '(f"unit{i + 1}", Unit(in_channels if i == 0 else ch, ch))' in gen.code
    model.load_state_dict(reference.state_dict(), strict=True)
    x = torch.randn(2, 4, 8, 8, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        assert torch.equal(model.eval()(x), reference(x))


def test_a_stage_of_a_thousand_blocks_costs_the_same_work_per_layer_as_one_of_a_hundred():
    # each block call of a body was looked up by a scan of the body's items: quadratic in a repeat's
    # count (1.9x the work per layer at 1,000 blocks as at 100). Counted in instructions, not seconds.
    def spec(n: int):
        return archc.loads(
            LOOPS.split("network")[0] + f"network L {{\n  input x: 4x8x8\n  stage s: 1 4 2\n  stage t: 2 4 {n}\n}}\n",
            "l.arch",
        )

    generate(spec(5), "torch")  # caches filled once per process
    small, large = spec(100), spec(1000)
    assert "        for i in range(n - 1):\n" in generate(large, "torch").code
    per_layer = [opcodes(lambda net=net: generate(net, "torch")) / len(net.graph) for net in (small, large)]
    assert per_layer[1] <= 1.25 * per_layer[0], per_layer
