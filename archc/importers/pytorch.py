"""A PyTorch `nn.Module` -> an archc spec (`archc.from_torch`, `archc import pkg.mod:constructor`).

The module is traced with `torch.fx.symbolic_trace`, not `torch.export`: fx
keeps every call of a submodule as one node named by its qualified name
(`layer1.0.conv1`) and records the stack of modules each function call ran in
(`nn_module_stack`), which is exactly what a spec needs to spell the module's
`state_dict` keys, while torch.export lowers modules to aten operators whose
names and grouping would have to be recovered. The trace runs in eval mode
(what archc analyses), and `ShapeProp` runs it once on the example input, so
the static sizes of `view`/`reshape` are known.

How the spec is built:

1. **Statements.** Each traced call becomes one archc layer with the same
   semantics (`_MODULES`, `_FUNCTIONS`); anything else is a `TorchImportError`
   naming the module path and type. archc never guesses.
2. **Blocks.** Every submodule whose `forward` ran (and every module on the
   way to a leaf, such as an `nn.Sequential`) becomes a block call named by its
   attribute name, so nested names give the keys (`layer1.0.conv1.weight`).
   Instances of one module class with the same structure share a block; the
   settings that differ between them become its parameters.
3. **Repeats.** A run of calls of one block with the same settings, each
   reading the one before and numbered as `nn.Sequential` numbers them,
   becomes `repeat N { ... }` (N a parameter where instances differ).
4. **Check.** The text is analysed by archc, and every submodule's output
   shape must equal the one torch computed: a difference is an error, never a
   spec that computes something else.
"""

from __future__ import annotations

import importlib
import operator
import re
from collections import Counter
from dataclasses import dataclass, field

from .. import ast
from ..diagnostics import Span
from ..ops import OPS
from .common import KEYWORDS, sanitize, to_value

FILE = "<torch>"
SPAN = Span(FILE, 1, 1, 1, 1)
_NUMBER = re.compile(r"[0-9]+\Z")
_KEY = re.compile(r"[A-Za-z0-9_-]+\Z")  # what a quoted name may hold (docs/language.md, section 7)
_DOTTED = r"[A-Za-z_][A-Za-z0-9_]*(?:\.[A-Za-z_][A-Za-z0-9_]*)*"
CONSTRUCTOR = re.compile(rf"{_DOTTED}:{_DOTTED}\Z")  # `archc import torchvision.models:resnet50`
IMAGE = (3, 224, 224)  # the input of torchvision's image classifiers, `archc import`'s default for them


class TorchImportError(ValueError):
    """A module archc cannot represent exactly; the message names the module path and type."""


def torch_to_arch(model, example_input, *, name: str | None = None) -> str:
    """The module as `.arch` text whose generated code loads `model.state_dict()` strictly.

    `example_input` is a tensor with its batch dimension (or a tuple of them, one per input).
    """
    import torch

    examples = example_input if isinstance(example_input, tuple | list) else (example_input,)
    if not examples or not all(isinstance(x, torch.Tensor) and x.dim() >= 2 for x in examples):
        raise TorchImportError(
            "the example input must be a tensor with a batch dimension, e.g. torch.randn(1, 3, 224, 224)"
        )
    if type(model) in _module_table():  # fx traces the root's forward: its weights would be loose tensors
        kind = type(model).__name__
        raise TorchImportError(f"{kind} is one layer: import nn.Sequential(model) (its keys gain the prefix `0.`)")
    graph = _trace(model, examples)
    builder = _Builder(model, graph)
    module = builder.module(name or sanitize(type(model).__name__))
    from ..printer import format_module

    header = [f"Imported by `archc import` from {type(model).__module__}.{type(model).__qualname__}."]
    text = format_module(module, header=header)
    _check(text, builder)
    return text


def from_torch(model, example_input, *, name: str | None = None, **options):
    """The module analysed as archc analyses a spec (`archc.Network`); options as `archc.loads`."""
    from ..analysis import loads

    return loads(torch_to_arch(model, example_input, name=name), file=FILE, **options)


def import_constructor(target: str, shape: tuple[int, ...] | None = None) -> str:
    """`pkg.mod:attr` called with no arguments, imported on an input of `shape` (without the batch).

    Without a shape, a constructor from `torchvision.models` reads a 3x224x224 image; for any
    other the input cannot be guessed, and it is an error that asks for `--input`.
    """
    module_name, _, attr = target.partition(":")
    if shape is None:
        if not module_name.startswith("torchvision.models"):
            raise TorchImportError(f"archc cannot guess what `{target}` reads: give its input, e.g. --input 3x224x224")
        shape = IMAGE
    try:
        constructor = importlib.import_module(module_name)
        for part in attr.split("."):
            constructor = getattr(constructor, part)
    except (ImportError, AttributeError) as err:
        raise TorchImportError(f"cannot import `{target}`: {_first_line(err)}") from None
    if not callable(constructor):
        raise TorchImportError(f"`{target}` is a {type(constructor).__name__}, not a constructor to call")
    import torch

    try:
        model = constructor()
    except Exception as err:  # whatever the constructor raises, it is the user's code, not archc
        raise TorchImportError(f"`{target}()` failed: {type(err).__name__}: {_first_line(err)}") from None
    return torch_to_arch(model, torch.randn(1, *shape))


# -- tracing ---------------------------------------------------------------------------------------


def _trace(model, examples):
    """The fx graph of the module in eval mode, with each value's shape (`tensor_meta`)."""
    import torch
    import torch.fx
    from torch.fx.passes.shape_prop import ShapeProp

    if not isinstance(model, torch.nn.Module):
        raise TorchImportError(f"archc imports a torch.nn.Module, not {type(model).__name__}")
    training = model.training
    model.eval()
    try:
        try:
            traced = torch.fx.symbolic_trace(model)
        except Exception as err:  # fx raises many kinds: control flow on a value, an untraceable call
            raise TorchImportError(f"torch.fx cannot trace {_where(model, err)}: {_first_line(err)}") from None
        traced.graph.eliminate_dead_code()
        try:
            with torch.no_grad():
                ShapeProp(traced).propagate(*examples)
        except Exception as err:
            cause = err.__cause__ or err  # ShapeProp wraps torch's error in one naming the fx node
            raise TorchImportError(f"the module does not run on the example input: {_first_line(cause)}") from None
    finally:
        model.train(training)
    return traced


def _where(model, err: BaseException) -> str:
    """The innermost submodule whose code raised `err`, as `path (Type)`."""
    paths = {id(m): path for path, m in model.named_modules()}
    found = ""
    tb = err.__traceback__
    while tb is not None:
        owner = tb.tb_frame.f_locals.get("self")
        if id(owner) in paths:
            found = f"`{paths[id(owner)] or '(the model)'}` ({type(owner).__name__})"
        tb = tb.tb_next
    return found or f"`(the model)` ({type(model).__name__})"


def _first_line(err: BaseException) -> str:
    text = str(err).strip().split("\n")[0]
    return text or type(err).__name__


def _shape(node) -> tuple[int, ...] | None:
    meta = node.meta.get("tensor_meta")
    return tuple(meta.shape) if hasattr(meta, "shape") else None


# -- one statement per call ------------------------------------------------------------------------


def _pair(values):
    """A torch size setting (int or tuple) as archc writes it: one number when every dimension agrees."""
    values = tuple(values) if isinstance(values, tuple | list) else (values,)
    return values[0] if len(set(values)) == 1 else values


def _kernel(values, ins):
    """A kernel or output size, one entry per spatial dimension of the input (`3` on an image: 3x3)."""
    return tuple(values) if isinstance(values, tuple | list) else (values,) * (len(ins[0]) - 2)


def _padding(m):
    if isinstance(m.padding, str):
        return m.padding  # torch's `same` puts the odd pixel after, as archc's does; `valid` is 0
    return _pair(m.padding)


def _conv(m, ins):
    if m.padding_mode != "zeros":
        raise _UnsupportedError(f"padding_mode={m.padding_mode!r}")
    bias = m.bias is not None
    if m.transposed:
        return "deconv", {
            "filters": m.out_channels,
            "kernel": _kernel(m.kernel_size, ins),
            "stride": _pair(m.stride),
            "pad": _padding(m),
            "outpad": _pair(m.output_padding),
            "dilation": _pair(m.dilation),
            "groups": m.groups,
            "bias": bias,
        }
    args = {"kernel": _kernel(m.kernel_size, ins), "stride": _pair(m.stride), "pad": _padding(m)}
    args |= {"dilation": _pair(m.dilation)}
    if m.groups == m.in_channels and m.groups > 1 and m.out_channels % m.in_channels == 0:
        return "dwconv", args | {"multiplier": m.out_channels // m.in_channels, "bias": bias}
    return "conv", {"filters": m.out_channels} | args | {"groups": m.groups, "bias": bias}


def _bn(m, ins):
    if not (m.affine and m.track_running_stats) or m.momentum is None:
        raise _UnsupportedError("affine=False, track_running_stats=False or momentum=None (archc's bn has all three)")
    return "bn", {"eps": m.eps, "momentum": m.momentum}


def _layernorm(m, ins):
    affine = m.elementwise_affine
    return "layernorm", {
        "over": len(m.normalized_shape),
        "eps": m.eps,
        "affine": affine,
        "bias": affine and m.bias is not None,
    }


def _groupnorm(m, ins):
    return "groupnorm", {"groups": m.num_groups, "eps": m.eps, "affine": m.affine}


def _linear(m, ins):
    return "dense", {"units": m.out_features, "bias": m.bias is not None}


def _maxpool(m, ins):
    if m.return_indices:
        raise _UnsupportedError("return_indices=True")
    return "maxpool", {
        "kernel": _kernel(m.kernel_size, ins),
        "stride": _pair(m.stride),
        "pad": _pair(m.padding),
        "dilation": _pair(m.dilation),
        "ceil": m.ceil_mode,
    }


def _avgpool(m, ins):
    if getattr(m, "divisor_override", None) is not None:
        raise _UnsupportedError("divisor_override")
    return "avgpool", {
        "kernel": _kernel(m.kernel_size, ins),
        "stride": _pair(m.stride),
        "pad": _pair(m.padding),
        "ceil": m.ceil_mode,
        "count_pad": m.count_include_pad,
    }


def _adaptive(kind: str):
    def convert(m, ins):
        if getattr(m, "return_indices", False):
            raise _UnsupportedError("return_indices=True")
        return _adaptive_size(kind, m.output_size, ins)

    return convert


def _adaptive_size(kind: str, size, ins):
    sizes = _kernel(size, ins)
    if None in sizes:
        raise _UnsupportedError("an output size of None (the input's size)")
    if set(sizes) == {1}:
        return f"global{kind}pool", {}
    return f"adaptive{kind}pool", {"size": sizes}


def _flatten(m, ins):
    return _flatten_dims(m.start_dim, m.end_dim, ins)


def _flatten_dims(start, end, ins):
    rank = len(ins[0])
    if start % rank != 1 or end % rank != rank - 1:
        raise _UnsupportedError(f"start_dim={start}, end_dim={end} (archc flattens all but the batch)")
    return "flatten", {}


def _recurrent(m, ins):
    """nn.LSTM / nn.GRU over a batch-first sequence; forward gives (output, state): `[0]` is archc's output."""
    if not m.batch_first or len(ins[0]) != 3:
        raise _UnsupportedError("batch_first=False or an input without a batch (archc's sequences are N x L x F)")
    args = {"units": m.hidden_size, "layers": m.num_layers, "bidirectional": m.bidirectional, "bias": m.bias}
    args["dropout"] = float(m.dropout)
    if getattr(m, "proj_size", 0):
        args["proj"] = m.proj_size
    return m.mode.lower(), args


def _attention(m, ins):
    """nn.MultiheadAttention, batch first; forward gives (output, weights): `[0]` is archc's output."""
    if not m.batch_first or m.bias_k is not None or m.add_zero_attn:
        raise _UnsupportedError("batch_first=False, add_bias_kv or add_zero_attn")
    return "attention", {"heads": m.num_heads, "bias": m.in_proj_bias is not None, "dropout": float(m.dropout)}


def _embedding(m, ins):
    if m.max_norm is not None:
        raise _UnsupportedError("max_norm (it renormalises the table as it reads it)")
    return "embedding", {"dim": m.embedding_dim, "vocab": m.num_embeddings, "padding_idx": m.padding_idx}


def _dropout(m, ins):
    return "dropout", {"p": m.p}


def _plain(op: str):
    return lambda m, ins: (op, {})


def _gelu(m, ins):
    return "gelu", {"approximate": m.approximate}


def _softmax(m, ins):
    return _softmax_dim(m.dim, ins)


def _softmax_dim(dim, ins):
    if dim is None or dim % len(ins[0]) != 1:
        raise _UnsupportedError(f"dim={dim} (archc's softmax is over the channels, dim=1)")
    return "softmax", {}


class _UnsupportedError(Exception):
    """A call archc has no exact layer for; the builder names the module."""


def _module_table():
    from torch import nn

    table = {
        nn.Conv1d: _conv,
        nn.Conv2d: _conv,
        nn.Conv3d: _conv,
        nn.ConvTranspose1d: _conv,
        nn.ConvTranspose2d: _conv,
        nn.ConvTranspose3d: _conv,
        nn.Linear: _linear,
        nn.BatchNorm1d: _bn,
        nn.BatchNorm2d: _bn,
        nn.BatchNorm3d: _bn,
        nn.LayerNorm: _layernorm,
        nn.GroupNorm: _groupnorm,
        nn.MaxPool1d: _maxpool,
        nn.MaxPool2d: _maxpool,
        nn.MaxPool3d: _maxpool,
        nn.AvgPool1d: _avgpool,
        nn.AvgPool2d: _avgpool,
        nn.AvgPool3d: _avgpool,
        nn.AdaptiveAvgPool1d: _adaptive("avg"),
        nn.AdaptiveAvgPool2d: _adaptive("avg"),
        nn.AdaptiveAvgPool3d: _adaptive("avg"),
        nn.AdaptiveMaxPool1d: _adaptive("max"),
        nn.AdaptiveMaxPool2d: _adaptive("max"),
        nn.AdaptiveMaxPool3d: _adaptive("max"),
        nn.Dropout: _dropout,
        nn.LSTM: _recurrent,
        nn.GRU: _recurrent,
        nn.Embedding: _embedding,
        nn.MultiheadAttention: _attention,
        nn.Flatten: _flatten,
        nn.GELU: _gelu,
        nn.LeakyReLU: lambda m, ins: ("leaky_relu", {"alpha": m.negative_slope}),
        nn.ELU: lambda m, ins: ("elu", {"alpha": m.alpha}),
        nn.Softmax: _softmax,
    }
    plain = {
        nn.ReLU: "relu",
        nn.ReLU6: "relu6",
        nn.SiLU: "silu",
        nn.Mish: "mish",
        nn.Hardswish: "hardswish",
        nn.Hardsigmoid: "hardsigmoid",
        nn.Sigmoid: "sigmoid",
        nn.Tanh: "tanh",
        nn.Identity: "identity",
    }
    return table | {cls: _plain(op) for cls, op in plain.items()}


def _function_table():
    import torch
    from torch.nn import functional

    binary = {"add": "add", "iadd": "add", "mul": "mul", "imul": "mul", "sub": "sub", "isub": "sub"}
    table = {}
    for name, op in binary.items():
        table[getattr(operator, name)] = op
        if hasattr(torch, name):
            table[getattr(torch, name)] = op
    table[operator.truediv] = table[torch.div] = "div"
    for fn, op in (
        (functional.relu, "relu"),
        (torch.relu, "relu"),
        (functional.relu6, "relu6"),
        (functional.silu, "silu"),
        (functional.hardswish, "hardswish"),
        (functional.hardsigmoid, "hardsigmoid"),
        (torch.sigmoid, "sigmoid"),
        (torch.tanh, "tanh"),
        (functional.sigmoid, "sigmoid"),
        (functional.tanh, "tanh"),
        (functional.mish, "mish"),
    ):
        table[fn] = op
    table[torch.cat] = table[torch.concat] = "cat"
    table[torch.flatten] = "flatten"
    table[functional.adaptive_avg_pool2d] = "adaptive_avg_pool"
    table[functional.gelu] = "gelu"
    table[functional.dropout] = "dropout"
    table[functional.softmax] = table[torch.softmax] = "softmax"
    try:  # torchvision's StochasticDepth calls it, and fx keeps it as one call (torch.fx.wrap)
        from torchvision.ops import stochastic_depth
    except ImportError:
        return table
    table[stochastic_depth] = "drop_path"
    return table


_METHODS = {
    "relu": "relu",
    "sigmoid": "sigmoid",
    "tanh": "tanh",
    "add": "add",
    "add_": "add",
    "mul": "mul",
    "mul_": "mul",
    "flatten": "flatten",
    "view": "reshape",
    "reshape": "reshape",
    "contiguous": "same",
    "expand": "expand",
    "permute": "permute",
    "softmax": "softmax",
}
_ACTIVATIONS = frozenset({"relu", "relu6", "silu", "mish", "hardswish", "hardsigmoid", "sigmoid", "tanh", "gelu"})


def _function(kind: str, node, ins, out, batch: int):
    """A call_function/call_method node as (op, settings, tensors it reads)."""
    tensors = [a for a in node.all_input_nodes if _shape(a) is not None]
    if kind in ("add", "mul", "sub", "div"):
        if len(tensors) != 2 or node.kwargs.get("alpha", 1) != 1 or len(node.args) != 2:
            raise _UnsupportedError(f"{kind} of a tensor and a number (archc's {kind} takes two layers)")
        return kind, {}, tensors
    if kind == "same":
        return "same", {}, tensors[:1]
    if kind == "cat":
        parts = node.args[0]
        if len(parts) == 1:  # torch.cat([x]) is x: DenseNet's first layer joins its one input
            return "same", {}, list(parts)
        dim = node.args[1] if len(node.args) > 1 else node.kwargs.get("dim", 0)
        if not all(_shape(p) is not None for p in parts) or dim % len(out) == 0:
            raise _UnsupportedError(f"cat on dim={dim} (archc's concat joins along an axis of each sample)")
        axis = dim % len(out) - 1  # archc's per-sample axes are torch's after the batch
        return "concat", {} if axis == 0 and len(out) != 3 else {"axis": axis}, list(parts)
    if kind == "permute":
        dims = node.args[1:] if len(node.args) > 2 or not isinstance(node.args[1], tuple | list) else node.args[1]
        dims = [d % len(out) for d in dims]
        if dims[0] != 0:
            raise _UnsupportedError(f"permute{tuple(dims)}, which moves the batch")
        return "permute", {"order": tuple(d - 1 for d in dims[1:])}, tensors[:1]
    if kind == "expand":
        if out[1:] != ins[0][1:] or out[0] != batch:  # a parameter's 1 to the batch (concat expands it)
            raise _UnsupportedError("an expand of more than a parameter to the batch")
        return "same", {}, tensors[:1]
    if kind == "flatten":
        start = node.args[1] if len(node.args) > 1 else node.kwargs.get("start_dim", 0)
        end = node.args[2] if len(node.args) > 2 else node.kwargs.get("end_dim", -1)
        return (*_flatten_dims(start, end, ins), tensors[:1])
    if kind == "reshape":
        if out[0] != ins[0][0]:
            raise _UnsupportedError("a reshape that changes the batch dimension")
        if len(out) == 2:
            return "flatten", {}, tensors[:1]
        return "reshape", {"shape": tuple(out[1:])}, tensors[:1]
    if kind == "adaptive_avg_pool":
        size = node.args[1] if len(node.args) > 1 else node.kwargs["output_size"]
        return (*_adaptive_size("avg", size, ins), tensors[:1])
    if kind == "dropout":
        p = node.args[1] if len(node.args) > 1 else node.kwargs.get("p", 0.5)
        return "dropout", {"p": p}, tensors[:1]
    if kind == "drop_path":
        settings = dict(zip(("input", "p", "mode"), node.args)) | node.kwargs
        return "drop_path", {"p": settings["p"], "mode": settings["mode"]}, tensors[:1]
    if kind == "gelu":
        return "gelu", {"approximate": node.kwargs.get("approximate", "none")}, tensors[:1]
    if kind == "softmax":
        dim = node.args[1] if len(node.args) > 1 else node.kwargs.get("dim")
        return (*_softmax_dim(dim, ins), tensors[:1])
    if len(tensors) != 1:
        raise _UnsupportedError(f"{kind} of {len(tensors)} tensors")
    return kind, {}, tensors  # an activation


# -- the spec under construction --------------------------------------------------------------------


@dataclass
class Stmt:
    """One statement of a body: a layer, a block call (`child`) or a repeat of calls (`count` > 0)."""

    op: str
    name: str | None
    reads: list  # fx nodes whose values it reads
    args: dict  # a layer's settings
    node: object  # the fx node whose value it is
    activation: str | None = None
    child: Inst | None = None
    copies: list = field(default_factory=list)  # a repeat: the instances, in order
    label: str | None = None  # a repeat: the name of its call (`encoder_layer`: encoder_layer_1, _2, ...)
    function: bool = False  # named by archc, not by a module (a call_function's `add`)


@dataclass
class Inst:
    """A submodule's body: a block instance."""

    path: str
    cls: str
    body: list[Stmt]
    input: object  # the fx node it reads (`in`)
    owns: dict = field(default_factory=dict)  # fx node -> its reference path from this body
    key: tuple = ()  # the structure: instances with one key are calls of one block
    values: list = field(default_factory=list)  # (setting name, value) of every setting, in order


def _joined(inst: Inst, outside: list) -> Stmt | None:
    """The concat of a body that alone reads the tensors from outside it, all of them, when there are
    several (DenseNet's layer: `torch.cat(prev_features, 1)` first): it moves out of the block, which then
    reads one tensor, the concat's. The concat holds no weight, so no state_dict key changes."""
    if len(outside) < 2:
        return None
    readers = [s for s in inst.body if s.child is None and set(s.reads) & set(outside)]
    if len(readers) != 1 or readers[0].op != "concat" or set(readers[0].reads) != set(outside):
        return None
    return readers[0] if len(inst.body) > 1 else None


@dataclass
class BlockDef:
    name: str
    insts: list[Inst]
    params: list = field(default_factory=list)  # (name, the setting it gives, its first column)
    column_param: dict = field(default_factory=dict)  # column -> parameter name


class _Builder:
    def __init__(self, model, traced):
        self.model = model
        self.modules = dict(model.named_modules())
        self.graph = traced.graph
        self.module_table = _module_table()
        self.batch = next(_shape(n)[0] for n in self.graph.nodes if n.op == "placeholder")
        self.function_table = _function_table()
        self.blocks: dict[tuple, BlockDef] = {}
        self.block_names: set[str] = {*OPS, *KEYWORDS}
        self.alias: dict = {}  # fx node -> the node whose value it is (`contiguous`, an LSTM's `[0]`)
        self.checks: dict[str, tuple] = {}  # archc layer name -> the shape torch computed
        self.referenced: set[str] = set()  # every name a written reference holds: those stay written

    # -- placing every call in the module tree ------------------------------------------------------

    def owner(self, node) -> str:
        if node.op == "call_module":
            return node.target.rpartition(".")[0]
        stack = node.meta.get("nn_module_stack") or {}
        return list(stack.values())[-1][0] if stack else ""

    def module(self, network: str) -> ast.Module:
        nodes = [n for n in self.graph.nodes if n.op != "output"]
        output = next(n for n in self.graph.nodes if n.op == "output")
        stmts = {}
        for node in nodes:
            stmt = self.statement(node)
            if stmt is not None:
                stmts[node] = stmt
        root = self.tree(nodes, stmts)
        outs = self.outputs(output)
        self.resolve(root, outs)
        for block in self.blocks.values():
            self.parameters(block)
        last = root.body[-1]
        written = [root.owns[o] for o in outs] != [(last.name,)]  # an output statement, unless it is the last
        if written:
            self.referenced.update(part for o in outs for part in root.owns[o])
        body = self.ast_body(root, None)
        if written:
            body.append(
                ast.Layer("output", SPAN, None, None, tuple(ast.Ref(root.owns[o], SPAN) for o in outs), (), None, SPAN)
            )
        blocks = tuple(self.ast_block(b) for b in self.ordered_blocks(root))
        return ast.Module(FILE, (), blocks, (ast.Network(network, tuple(body), SPAN),))

    def outputs(self, output) -> list:
        import torch.fx

        values = []
        torch.fx.node.map_arg(output.args, values.append)
        if not values:
            raise TorchImportError("the module returns no tensor")
        return [self.alias.get(v, v) for v in values]

    def statement(self, node) -> Stmt | None:
        """The statement of one traced call, or None for a value that is no tensor (a size, an assert)."""
        out = _shape(node)
        if node.op == "placeholder":
            if out is None:
                raise TorchImportError(f"forward's argument `{node.target}` is not a tensor")
            return Stmt("input", node.target, [], self.input_settings(node, out), node)
        if node.op == "call_module":
            return self.module_statement(node, out)
        if out is None:
            return None  # a size read for a reshape (which takes the size torch computed), an assert
        if node.op == "get_attr":
            return self.parameter(node, out)
        ins = [_shape(a) for a in node.all_input_nodes if _shape(a) is not None]
        if node.target is operator.getitem:
            return self.getitem(node, out)
        kind, where = self.kind(node)
        try:
            op, args, reads = _function(kind, node, ins, out, self.batch)
            if op == "same":  # a view that changes nothing archc sees: the value it reads
                self.alias[node] = self.alias.get(reads[0], reads[0])
                return None
        except _UnsupportedError as err:
            raise TorchImportError(f"{where}: archc cannot represent {err}") from None
        return Stmt(op, op, [self.alias.get(r, r) for r in reads], args, node, function=True)

    def input_settings(self, node, out) -> dict:
        """An input as its readers take it: token ids for an embedding, a sequence (L x F) for a recurrent
        layer, a dense or a layer norm reading it directly, else a map or a vector."""
        readers = [self.modules.get(user.target) for user in node.users if user.op == "call_module"]
        if not node.meta["tensor_meta"].dtype.is_floating_point:
            tables = [m.num_embeddings for m in readers if isinstance(m, torch_nn().Embedding)]
            if len(out) != 2 or not tables:
                raise TorchImportError(
                    f"forward's argument `{node.target}` holds whole numbers: "
                    "archc reads them as the token ids of an embedding"
                )
            return {"shape": out[1:], "kind": "tokens", "vocab": tables[0]}
        nn = torch_nn()
        sequence = (nn.LSTM, nn.GRU, nn.Linear, nn.LayerNorm, nn.MultiheadAttention)
        if len(out) == 3 and readers and all(isinstance(m, sequence) for m in readers):
            return {"shape": out[1:], "kind": "sequence"}
        return {"shape": out[1:]}

    def module_statement(self, node, out) -> Stmt:
        """A call of a submodule: its layer, named by its attribute name."""
        module = self.modules[node.target]
        where = f"`{node.target}` ({_type_name(module)})"
        convert = self.module_table.get(type(module))
        if convert is None:
            raise TorchImportError(f"{where}: archc has no layer for {_type_name(module)}")
        reads = [a for a in node.all_input_nodes if _shape(a) is not None]
        if isinstance(module, torch_nn().MultiheadAttention):
            reads = _attention_inputs(node, where)
        try:
            op, args = convert(module, [_shape(a) for a in reads])
        except _UnsupportedError as err:
            raise TorchImportError(f"{where}: archc cannot represent {err}") from None
        if (len(reads) != 1 and op != "attention") or (out is None and op not in ("lstm", "gru", "attention")):
            raise TorchImportError(f"{where} reads {len(reads)} tensors or gives no one tensor; archc's {op} reads one")
        if node.target in self.checks and any(True for _ in module.parameters()):
            raise TorchImportError(f"{where} runs twice: archc's layers do not share weights")
        if out is not None:
            self.checks.setdefault(node.target, out[1:])
        return Stmt(op, node.target.rpartition(".")[2], [self.alias.get(r, r) for r in reads], args, node)

    def parameter(self, node, out) -> Stmt:
        """A parameter of shape 1 x ... used in forward (ViT's class token) is archc's `param`, by its name."""
        tensor = self.lookup(node.target)
        if not isinstance(tensor, torch_nn().Parameter) or out[0] != 1 or len(out) < 2:
            raise TorchImportError(
                f"`{node.target}` ({_type_name(tensor)}) is a tensor used directly in forward: archc's `param` "
                "is a parameter of shape 1 x ..., shared by the batch"
            )
        self.checks.setdefault(node.target, out[1:])
        return Stmt("param", node.target.rpartition(".")[2], [], {"shape": out[1:]}, node)

    def getitem(self, node, out) -> Stmt | None:
        """`output, _ = lstm(x)` (the recurrent layer's output) and `x[:, i]` (one step: `select`)."""
        source, index = node.args
        if source.op == "call_module" and _shape(source) is None and index == 0:
            self.alias[node] = self.alias.get(source, source)
            self.checks.setdefault(source.target, out[1:])
            return None
        steps = _shape(source)
        if (
            steps is not None
            and len(steps) == 3
            and isinstance(index, tuple)
            and len(index) in (2, 3)
            and index[0] == slice(None)
            and isinstance(index[1], int)
            and all(i == slice(None) for i in index[2:])
        ):
            return Stmt("select", "select", [self.alias.get(source, source)], {"index": index[1]}, node, function=True)
        raise TorchImportError(f"`{node.name}` {self.context(node)} indexes {index!r}: archc selects one step, x[:, i]")

    def context(self, node) -> str:
        owner = self.owner(node)
        return f"in `{owner}` ({_type_name(self.modules[owner])})" if owner else "in the model's forward"

    def kind(self, node) -> tuple[str, str]:
        context = self.context(node)
        name = node.target if node.op == "call_method" else getattr(node.target, "__name__", str(node.target))
        where = f"`{name}` {context}"
        kind = _METHODS.get(node.target) if node.op == "call_method" else self.function_table.get(node.target)
        if kind is None:
            raise TorchImportError(f"{where}: archc has no layer for the {node.op.replace('_', ' ')} `{name}`")
        return kind, where

    def lookup(self, target: str):
        obj = self.model
        for part in target.split("."):
            obj = getattr(obj, part)
        return obj

    # -- the module tree -----------------------------------------------------------------------------

    def tree(self, nodes, stmts) -> Inst:
        """The statements grouped by the submodule that ran them, each group an instance."""
        insts: dict[str, Inst] = {"": Inst("", "", [], None)}
        closed: set[str] = set()
        open_path: list[str] = []
        subtree: dict[str, set] = {"": set()}
        for node in nodes:
            if node not in stmts:
                continue
            owner = self.owner(node) if node.op != "placeholder" else ""
            chain = _prefixes(owner)
            while open_path and open_path[-1] not in chain:
                closed.add(open_path.pop())
            for path in chain:
                if path in closed:
                    module = self.modules[path]
                    raise TorchImportError(
                        f"`{path}` ({_type_name(module)}) runs in two places in forward: a block instance runs once"
                    )
                if path not in insts:
                    parent = insts[path.rpartition(".")[0]]
                    insts[path] = Inst(path, type(self.modules[path]).__qualname__, [], None)
                    name = path.rpartition(".")[2]
                    parent.body.append(Stmt("", name, [], {}, None, child=insts[path]))
                    subtree[path] = set()
                    open_path.append(path)
            insts[owner].body.append(stmts[node])
            for path in chain:
                subtree[path].add(node)
        for path, inst in insts.items():
            if not path:
                continue
            inside = subtree[path]
            outside = []
            for node in inside:
                for read in stmts[node].reads:
                    if read not in inside and read not in outside:
                        outside.append(read)
            joined = _joined(inst, outside)
            if joined is not None:  # hoisted: the block reads what the concat gives
                parent = insts[path.rpartition(".")[0]]
                inst.body.remove(joined)
                parent.body.insert(next(k for k, s in enumerate(parent.body) if s.child is inst), joined)
                inside.discard(joined.node)
                outside = [joined.node]
            if len(outside) != 1:
                module = self.modules[path]
                raise TorchImportError(
                    f"`{path}` ({_type_name(module)}) reads {len(outside)} tensors from outside it; "
                    "an archc block reads one"
                )
            inst.input = outside[0]
        self.unique_names(insts[""])
        return insts[""]

    def unique_names(self, inst: Inst) -> None:
        """Names unique in each body: a module called twice (a shared `relu`) gets `relu_2`, `relu_3`."""
        taken = {s.name for s in inst.body if not s.function}
        used: set[str] = set()
        for stmt in inst.body:
            if stmt.child is not None:
                self.unique_names(stmt.child)
            if not _KEY.match(stmt.name):
                raise TorchImportError(
                    f"`{stmt.name}` in `{inst.path}` is no name a spec can write (letters, digits, _ and -)"
                )
            name, n = stmt.name, 2
            while name in used or (stmt.function and name in taken):
                name = f"{stmt.name}_{n}"
                n += 1
            used.add(name)
            stmt.name = name

    # -- references, activations, repeats, blocks ----------------------------------------------------

    def resolve(self, inst: Inst, outs) -> None:
        """Bottom-up: each body's activations folded, runs made repeats, its references and key found."""
        for stmt in inst.body:
            if stmt.child is not None:
                self.resolve(stmt.child, outs)
                stmt.node = stmt.child.body[-1].node  # a call's value is its last statement's
        self.fold(inst, outs)
        for stmt in inst.body:
            if stmt.child is not None:
                for node, path in stmt.child.owns.items():
                    inst.owns[node] = (stmt.name, *path)
            inst.owns[stmt.node] = (stmt.name,)
        self.repeats(inst)
        inst.key, inst.values = self.describe(inst)
        if inst.path:
            block = self.blocks.get(inst.key)
            if block is None:
                block = self.blocks[inst.key] = BlockDef(self.block_name(inst), [])
            block.insts.append(inst)

    def fold(self, inst: Inst, outs) -> None:
        """`bn bn1` then `relu` reading only it -> `bn bn1 -> relu`; in a numbered body (nn.Sequential)
        only where the activation's own number is the next one, the number `-> relu` takes."""
        numbered = any(_NUMBER.match(s.name or "") for s in inst.body)
        out = []
        for stmt in inst.body:
            prev = out[-1] if out else None
            if (
                prev is not None
                and stmt.op in _ACTIVATIONS
                and stmt.args.get("approximate", "none") == "none"
                and stmt.reads == [prev.node]
                and prev.child is None
                and prev.op != "input"
                and prev.activation is None
                and len(prev.node.users) == 1
                and prev.node not in outs
                and (not numbered or (_NUMBER.match(prev.name) and stmt.name == str(int(prev.name) + 1)))
            ):
                prev.activation, prev.node = stmt.op, stmt.node
                continue
            out.append(stmt)
        inst.body = out

    def repeats(self, inst: Inst) -> None:
        """Consecutive calls of one structure and the same settings, each reading the one before, named as a
        repeat names them: numbered (`1`, `2`: unnamed calls in a numbered body) or `encoder_layer_1`,
        `encoder_layer_2` (a call named `encoder_layer` in the repeat; docs/language.md, sections 7 and 10)."""
        body, out, i = inst.body, [], 0
        while i < len(body):
            stmt = body[i]
            series = _series(stmt.name) if stmt.child is not None else None
            j = i + 1
            while (
                series is not None
                and j < len(body)
                and body[j].child is not None
                and _series(body[j].name) == (series[0], series[1] + j - i)
                and body[j].child.key == stmt.child.key
                and body[j].child.values == stmt.child.values
                and body[j].child.input == body[j - 1].node
                and body[j].activation is None
            ):
                j += 1
            start = self.repeat_start(series, stmt, out[-1] if out else None, i)
            if start is not None and j - start >= 2:
                if start > i:
                    out.append(stmt)
                copies = [s.child for s in body[start:j]]
                last = body[j - 1]
                out.append(Stmt("repeat", last.name, [], {}, last.node, child=copies[0], copies=copies))
                out[-1].label = series[0]
                i = j
                continue
            out.append(stmt)
            i += 1
        inst.body = out

    def repeat_start(self, series, stmt: Stmt, prev: Stmt | None, i: int) -> int | None:
        """Where a run's repeat starts: at its first call if a repeat would name that one as it is named and
        it reads the statement above, else at the second; None if no repeat names the run."""
        if series is None:
            return None
        base, index = series
        reads_prev = prev is not None and stmt.child.input == prev.node
        if base is None:  # numbered: an unnamed call takes the number after the statement above
            return i if reads_prev and prev.name == str(index - 1) else i + 1
        if index == 1 and reads_prev:
            return i
        return i + 1 if index == 0 else None

    def describe(self, inst: Inst) -> tuple[tuple, list]:
        """The body's structure (what a block is) and its settings (what its parameters may be)."""
        key, values = [inst.cls], []
        prev = ("in",)
        for stmt in inst.body:
            refs = tuple(self.ref(inst, r) for r in stmt.reads)
            if stmt.child is not None and not stmt.copies:
                refs = (self.ref(inst, stmt.child.input),)
            if stmt.copies:
                refs = (self.ref(inst, stmt.copies[0].input),)
                values.append(("n", len(stmt.copies)))
            implicit = refs == (prev,) or (not refs)
            if not implicit:
                self.referenced.update(part for ref in refs for part in ref)
            if stmt.child is not None:
                key.append(
                    (
                        stmt.name if not stmt.copies else ("repeat", stmt.label),
                        stmt.child.key,
                        None if implicit else refs,
                    )
                )
                values.extend(stmt.child.values)
            else:
                key.append((stmt.op, stmt.name, tuple(stmt.args), stmt.activation, None if implicit else refs))
                values.extend(stmt.args.items())
            prev = (stmt.name,)
        return tuple(key), values

    def ref(self, inst: Inst, node) -> tuple:
        node = self.alias.get(node, node)
        if node == inst.input and inst.path:
            return ("in",)
        if node not in inst.owns:  # a value no statement gives: an element of a tuple result
            raise TorchImportError(f"`{node.name}` is no tensor archc computes (archc's layers give one tensor each)")
        return inst.owns[node]

    def block_name(self, inst: Inst) -> str:
        base = inst.path.rpartition(".")[2]
        if inst.cls in ("Sequential", "ModuleList", "ModuleDict") or not inst.cls:
            base = re.sub(r"_?\d+[a-z]?$", "", sanitize(base)) if not _NUMBER.match(base) else "sequential"
        else:
            base = re.sub(r"(?<=[a-z0-9])(?=[A-Z])", "_", inst.cls.split(".")[-1]).lower()
        base = sanitize(base or "sequential")
        name, n = base, 1
        while name in self.block_names:
            n += 1
            name = f"{base}{n}"
        self.block_names.add(name)
        return name

    def parameters(self, block: BlockDef) -> None:
        """The settings that differ between the block's instances become its parameters; columns that
        hold the same values in every instance and set the same thing share one."""
        columns = list(zip(*[[v for _k, v in inst.values] for inst in block.insts], strict=True))
        keys = [k for k, _v in block.insts[0].values]
        by_values: dict = {}
        used: Counter = Counter()
        for c, (key, column) in enumerate(zip(keys, columns, strict=True)):
            if len(set(map(repr, column))) == 1:
                continue
            shared = by_values.get((key, tuple(map(repr, column))))
            if shared is None:
                used[key] += 1
                name = key if used[key] == 1 else f"{key}{used[key]}"
                shared = by_values[(key, tuple(map(repr, column)))] = name
                block.params.append((name, key, c))
            block.column_param[c] = shared

    # -- syntax trees ------------------------------------------------------------------------------

    def ordered_blocks(self, root: Inst) -> list[BlockDef]:
        """Blocks in the order their first instance appears, inner ones first."""
        order: list[BlockDef] = []

        def visit(inst: Inst) -> None:
            for stmt in inst.body:
                if stmt.child is not None:
                    visit(stmt.child)
            if inst.path:
                block = self.blocks[inst.key]
                if block not in order:
                    order.append(block)

        visit(root)
        return order

    def ast_block(self, block: BlockDef) -> ast.Block:
        params = tuple(ast.Param(name, None, SPAN) for name, _key, _c in block.params)
        body = self.ast_body(block.insts[0], block)
        return ast.Block(block.name, params, tuple(body), SPAN, SPAN)

    def ast_body(self, inst: Inst, block: BlockDef | None) -> list:
        """The body's statements; values are the instance's, or the block's parameters where they differ."""
        out = []
        column = 0
        prev = ("in",)
        numbered = any(_NUMBER.match(s.name) for s in inst.body)
        for stmt in inst.body:
            if stmt.copies:
                count = ast.Num(len(stmt.copies), SPAN)
                if block is not None and column in block.column_param:
                    count = ast.Name(block.column_param[column], SPAN)
                column += 1
                call, column = self.ast_call(stmt.child, stmt.label, block, column, None)
                out.append(ast.Repeat(count, (call,), SPAN))  # its first call reads the statement above
                prev = (stmt.name,)
                continue
            if stmt.child is not None:
                refs = (self.ref(inst, stmt.child.input),)
                inputs = None if refs == (prev,) else tuple(ast.Ref(r, SPAN) for r in refs)
                call, column = self.ast_call(stmt.child, stmt.name, block, column, inputs)
                out.append(call)
            else:
                refs = tuple(self.ref(inst, r) for r in stmt.reads)
                inputs = None if (refs == (prev,) or stmt.op == "input") else tuple(ast.Ref(r, SPAN) for r in refs)
                args = []
                for key, value in stmt.args.items():
                    args.append((key, self.value(value, block, column)))
                    column += 1
                # a function's result nothing names (`add`, `flatten`) is left unnamed, as a person writes it;
                # not in a numbered body, where an unnamed statement would take a number
                unnamed = stmt.function and not numbered and stmt.name not in self.referenced
                out.append(self.ast_layer(stmt.op, None if unnamed else stmt.name, inputs, args, stmt.activation))
            prev = (stmt.name,)
        return out

    def value(self, value, block: BlockDef | None, column: int):
        if block is not None and column in block.column_param:
            return _Param(block.column_param[column])
        return value

    def ast_call(self, child: Inst, name, block, column, inputs):
        callee = self.blocks[child.key]
        args = []
        for pname, _key, c in callee.params:
            args.append((pname, self.value(child.values[c][1], block, column + c)))
        column += len(child.values)
        positional = [(None, value) for _pname, value in args]  # the block's header names them
        layer = ast.Layer(callee.name, SPAN, name, SPAN if name else None, inputs, _args_ast(positional), None, SPAN)
        return layer, column

    def ast_layer(self, op, name, inputs, args, activation) -> ast.Layer:
        spec = OPS[op]
        defaults = {p.name: p.default for p in spec.params}
        positional = [p.name for p in spec.params if p.positional]
        kept = [(k, v) for k, v in args if isinstance(v, _Param) or k in positional or defaults.get(k) != v]
        written, lead = [], True
        for i, (key, value) in enumerate(kept):  # positional while they come in order, then keywords
            lead = lead and i < len(positional) and positional[i] == key
            written.append((None if lead else key, value))
        act = ast.Activation(activation, (), SPAN) if activation else None
        return ast.Layer(op, SPAN, name, SPAN if name else None, inputs, _args_ast(written), act, SPAN)


@dataclass(frozen=True)
class _Param:
    name: str


def _args_ast(args) -> tuple:
    out = []
    for key, value in args:
        v = ast.Value((ast.Name(value.name, SPAN),), SPAN) if isinstance(value, _Param) else to_value(value, SPAN)
        out.append(ast.Arg(key, v, SPAN))
    return tuple(out)


def _series(name: str) -> tuple[str | None, int] | None:
    """`3` -> (None, 3); `encoder_layer_2` -> ("encoder_layer", 2); else None."""
    if _NUMBER.match(name):
        return None, int(name)
    match = re.fullmatch(r"(.+)_([0-9]+)", name)
    return (match[1], int(match[2])) if match and _KEY.match(match[1]) else None


def _prefixes(path: str) -> list[str]:
    """`a.b.c` -> ["a", "a.b", "a.b.c"]; "" -> []."""
    parts = path.split(".") if path else []
    return [".".join(parts[: i + 1]) for i in range(len(parts))]


def _attention_inputs(node, where: str) -> list:
    """What an attention call reads as archc's attention takes it: (x) for self-attention, (query, memory)
    when key and value are one tensor, else (query, key, value); no masks."""
    names = ("query", "key", "value", "key_padding_mask", "need_weights", "attn_mask", "average_attn_weights")
    settings = dict(zip(names, node.args)) | node.kwargs
    if settings.get("key_padding_mask") is not None or settings.get("attn_mask") is not None:
        raise TorchImportError(f"{where}: archc cannot represent a key_padding_mask or attn_mask")
    query, key, value = settings["query"], settings["key"], settings["value"]
    if query is key is value:
        return [query]
    return [query, key] if key is value else [query, key, value]


def torch_nn():
    from torch import nn

    return nn


def _type_name(module) -> str:
    return type(module).__name__


def _check(text: str, builder: _Builder) -> None:
    """archc's analysis of the text must give every submodule the output shape torch gave it."""
    from ..analysis import loads
    from ..diagnostics import ArchError

    try:
        net = loads(text, file=FILE)
    except ArchError as err:
        first = err.diagnostics[0]
        raise TorchImportError(f"archc cannot analyse the imported spec: {first.message}") from None
    for key, _value in builder.model.named_parameters():
        owner = key.rpartition(".")[0]
        if not any(path in builder.checks for path in [key, *_prefixes(owner)]):
            module = builder.modules[owner]
            raise TorchImportError(
                f"`{owner or key}` ({_type_name(module)}) holds weights that forward never uses: "
                "the spec's model could not load the state_dict strictly"
            )
    for name, want in builder.checks.items():
        node = net.graph.nodes.get(name)
        if node is not None and tuple(node.shape) != tuple(want):
            module = builder.modules[name]
            raise TorchImportError(
                f"`{name}` ({_type_name(module)}): archc computes {tuple(node.shape)} "
                f"where torch computes {tuple(want)}"
            )
