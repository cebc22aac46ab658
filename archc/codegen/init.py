"""Weight initialisation: how `build_model()` starts a network's weights, in both targets.

A spec chooses a scheme with `network Name init=SCHEME { ... }`; without it, PyTorch's
own defaults. The schemes are torchvision's, read from its model constructors: each
loops over `self.modules()` and initialises by module type (ResNet: Kaiming normal,
fan_out, for every `nn.Conv2d`). A scheme here is that loop as rules per kind of
layer (an `Op`'s `init_kind`: conv or dense); a rule says how the torch code
initialises a tensor and which NumPy kernel draws it from the same distribution.
Every family leaves the norms at PyTorch's start (weight 1, bias 0) and a transposed
convolution at PyTorch's default, as torchvision's loops do.

The torch code is torchvision's loop over `self.modules()` by module type, so it does
not depend on how the generated module nests its layers.
"""

from __future__ import annotations

import textwrap
from collections.abc import Callable
from dataclasses import dataclass

from ..ops import OPS
from ..ops.emit import zeros
from .pyexpr import call, lit

DEFAULT_SCHEME = "torch"


@dataclass(frozen=True)
class Rule:
    """How one kind of tensor (a conv's weights, a linear layer's biases) starts."""

    says: str  # for the docstring: "Kaiming normal (fan_out, ReLU gain)"
    torch: tuple[str, ...]  # the statements that set `{t}` (m.weight, m.bias); none: PyTorch's default stays
    numpy: Callable  # (shape, weight_shape) -> the NumPy expression that draws the array


def _kernel(name: str, *args, **kwargs) -> Callable:
    """A rule's NumPy side: `name(rng, shape, *args, **kwargs)`, a kernel of numpy_kernels.py."""
    options = {key: lit(value) for key, value in kwargs.items()}
    return lambda shape, _weight: call(name, "rng", lit(shape), *map(lit, args), **options)


# PyTorch's reset_parameters of conv and linear layers: kaiming_uniform_(a=sqrt(5)) for the weight,
# which is U(+-1/sqrt(fan_in)), and U(+-1/sqrt(fan_in of the weight)) for the bias.
TORCH_WEIGHT = Rule("PyTorch's default, U(+-1/sqrt(fan_in))", (), _kernel("uniform_fan"))
TORCH_BIAS = Rule(
    "PyTorch's default, U(+-1/sqrt(fan_in))",
    (),
    lambda shape, weight: call("uniform_bias", "rng", shape[0], lit(weight)),
)
ZEROS = Rule("zero", ("nn.init.zeros_({t})",), lambda shape, _weight: zeros(shape))
KAIMING_FAN_OUT = Rule(
    "Kaiming normal (fan_out, ReLU gain)",
    ('nn.init.kaiming_normal_({t}, mode="fan_out", nonlinearity="relu")',),
    _kernel("kaiming_normal", mode="fan_out"),
)
KAIMING_FAN_IN = Rule(
    "Kaiming normal (fan_in, ReLU gain)", ("nn.init.kaiming_normal_({t})",), _kernel("kaiming_normal")
)
UNIFORM_FAN_OUT = Rule(
    "U(+-1/sqrt(out_features))",
    ("bound = 1 / m.out_features**0.5", "nn.init.uniform_({t}, -bound, bound)"),
    _kernel("uniform_fan", mode="fan_out"),
)


def normal(std: float) -> Rule:
    return Rule(f"normal (std {std:g})", (f"nn.init.normal_({{t}}, 0, {std!r})",), _kernel("normal", std))


def trunc_normal(std: float) -> Rule:
    """torch's trunc_normal_, cut at -2 and 2 (its default bounds, absolute: no cut at these stds)."""
    return Rule(
        f"truncated normal (std {std:g})", (f"nn.init.trunc_normal_({{t}}, std={std!r})",), _kernel("trunc_normal", std)
    )


@dataclass(frozen=True)
class Scheme:
    family: str  # whose scheme: "torchvision's ResNet"
    conv: tuple[Rule, Rule] = (TORCH_WEIGHT, TORCH_BIAS)  # weight, bias
    dense: tuple[Rule, Rule] = (TORCH_WEIGHT, TORCH_BIAS)

    def rules(self, kind: str | None) -> tuple[Rule, Rule]:
        """The rules of a kind of layer; a layer of no kind (deconv) keeps PyTorch's default."""
        return {"conv": self.conv, "dense": self.dense}.get(kind, (TORCH_WEIGHT, TORCH_BIAS))


_KAIMING_ZERO = (KAIMING_FAN_OUT, ZEROS)

# The constructors of torchvision/models/*.py (torchvision 0.29), with weights=None.
SCHEMES = {
    "torch": Scheme("PyTorch's defaults"),
    "alexnet": Scheme("torchvision's AlexNet, which keeps PyTorch's defaults"),
    "shufflenet": Scheme("torchvision's ShuffleNetV2, which keeps PyTorch's defaults"),
    "resnet": Scheme("torchvision's ResNet", conv=(KAIMING_FAN_OUT, TORCH_BIAS)),
    "vgg": Scheme("torchvision's VGG", conv=_KAIMING_ZERO, dense=(normal(0.01), ZEROS)),
    "googlenet": Scheme(
        "torchvision's GoogLeNet", conv=(trunc_normal(0.01), TORCH_BIAS), dense=(trunc_normal(0.01), TORCH_BIAS)
    ),
    "inception": Scheme(
        "torchvision's Inception-v3", conv=(trunc_normal(0.1), TORCH_BIAS), dense=(trunc_normal(0.1), TORCH_BIAS)
    ),
    "densenet": Scheme("torchvision's DenseNet", conv=(KAIMING_FAN_IN, TORCH_BIAS), dense=(TORCH_WEIGHT, ZEROS)),
    "mobilenet": Scheme("torchvision's MobileNetV2 and V3", conv=_KAIMING_ZERO, dense=(normal(0.01), ZEROS)),
    "efficientnet": Scheme("torchvision's EfficientNet", conv=_KAIMING_ZERO, dense=(UNIFORM_FAN_OUT, ZEROS)),
    "regnet": Scheme("torchvision's RegNet", conv=(KAIMING_FAN_OUT, TORCH_BIAS), dense=(normal(0.01), ZEROS)),
    "convnext": Scheme("torchvision's ConvNeXt", conv=(trunc_normal(0.02), ZEROS), dense=(trunc_normal(0.02), ZEROS)),
}

_KINDS = {"conv": ("conv weights", "conv biases"), "dense": ("linear weights", "linear biases")}


def scheme_name(network) -> str:
    """The spec's `init=` setting, or the default."""
    return network.graph.init or DEFAULT_SCHEME


def scheme_of(network) -> Scheme:
    return SCHEMES[scheme_name(network)]


def describe(network, width: int) -> list[str]:
    """The docstring's paragraph on initialisation, wrapped to `width`."""
    name = scheme_name(network)
    scheme = SCHEMES[name]
    parts = []
    for kind, words in _KINDS.items():
        for rule, what in zip(scheme.rules(kind), words, strict=True):
            if rule.torch:
                parts.append(f"{what} {rule.says}")
    rest = "; everything else PyTorch's default" if parts else ""
    text = f"Initialised as {scheme.family} (init={name}){': ' if parts else '.'}{', '.join(parts)}{rest}"
    text += "; norms start at weight 1, bias 0." if parts else ""
    return textwrap.wrap(text, width)


def torch_lines(network, depth: int) -> list[str]:
    """torchvision's loop over `self.modules()` for the spec's scheme, at `depth` indents; nothing for
    PyTorch's defaults, or where the network has no layer a rule of the scheme is for."""
    scheme = scheme_of(network)
    graph = network.graph
    branches = []
    for kind in _KINDS:
        weight, bias = scheme.rules(kind)
        # a transposed dense is no nn.Linear (a ParameterDict): it keeps its start, as the NumPy target's does
        nodes = [n for n in graph if OPS[n.op].init_kind == kind and not n.attrs.get("transposed")]
        if not nodes or not (weight.torch or bias.torch):
            continue
        classes = list(
            dict.fromkeys(OPS[n.op].torch_layer(n, [graph.nodes[i].shape for i in n.inputs]).func for n in nodes)
        )
        body = [s.format(t="m.weight") for s in weight.torch]
        # the loop reaches the modules of this kind inside other layers too: their biases count
        biased = [n.attrs["bias"] for n in graph if kind in (OPS[n.op].init_kind, OPS[n.op].inner_kind)]
        if bias.torch and all(biased):
            body += [s.format(t="m.bias") for s in bias.torch]
        elif bias.torch and any(biased):
            body += ["if m.bias is not None:", *(f"    {s.format(t='m.bias')}" for s in bias.torch)]
        same = next((branch for branch in branches if branch[1] == body), None)
        if same is not None:  # GoogLeNet: one branch for conv and linear, as torchvision writes it
            same[0].extend(classes)
        elif body:
            branches.append((classes, body))
    out = ["for m in self.modules():"] if branches else []
    for i, (classes, body) in enumerate(branches):
        types = classes[0] if len(classes) == 1 else f"({', '.join(classes)})"
        out.append(f"    {'elif' if i else 'if'} isinstance(m, {types}):")
        out += [f"        {s}" for s in body]
    return ["    " * depth + line for line in out]


class Initial:
    """The NumPy expressions of one layer's first arrays, by the network's scheme and the layer's kind."""

    def __init__(self, network, node):
        scheme, op = scheme_of(network), OPS[node.op]
        self.weight_rule, self.bias_rule = scheme.rules(op.init_kind)
        # the scheme's loop has a branch for the layer's inner modules where a layer of their kind exists
        reached = op.inner_kind is not None and any(OPS[n.op].init_kind == op.inner_kind for n in network.graph)
        self.inner_rules = scheme.rules(op.inner_kind) if reached else None

    def weight(self, shape: tuple[int, ...]):
        return self.weight_rule.numpy(shape, shape)

    def bias(self, size: int, weight_shape: tuple[int, ...]):
        return self.bias_rule.numpy((size,), weight_shape)

    def inner(self, bias: bool, shape: tuple[int, ...], weight_shape: tuple[int, ...], own):
        """An inner module's weight or bias (attention's out_proj): the scheme's rule where its loop
        sets it, else `own`, the expression of the layer's own start."""
        rule = self.inner_rules[bias] if self.inner_rules else None
        return rule.numpy(shape, weight_shape) if rule is not None and rule.torch else own
