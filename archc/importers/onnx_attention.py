"""Multi-head attention as exporters write it, read back as archc's `attention` layer.

An exporter writes nn.MultiheadAttention as dozens of nodes whose arrangement differs from one exporter
(and version) to the next: a packed in-projection (MatMul, Add), reshapes and transposes into heads, the
scaled product, Softmax, the product with the values, the heads joined again, the out-projection. So the
importer does not match one arrangement. Around each Softmax it finds the nodes that lie between one
tensor X (N x L x E) and one tensor Y of the same shape: the region every path from X to Y crosses and
nothing else reads into or out of. It gives the projections' weights random values (so that no weight
of zeros makes the check hollow) and runs the region on a random X with onnx's reference evaluator; the
region is `attention` exactly when Y is what nn.MultiheadAttention computes from X with those weights
(q, k and v the in-projection's three parts, in an order the values tell, the heads side by side, the
scale 1/sqrt(E/heads), with or without a causal mask). A region that computes anything else is left to
the per-node rules, which refuse what they cannot read: archc never guesses.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from itertools import permutations

import numpy as np

# operators that only move or relabel values: the chains in front of and behind the projections
PLUMBING = {"Reshape", "Transpose", "Squeeze", "Unsqueeze", "Identity", "Dropout", "Flatten"}
PROJECTIONS = {"MatMul", "Gemm"}
SEED = 20  # the random input and weights the region is checked on: the same every run
REACH = 64  # the most nodes from the Softmax to a projection
CHAIN = 16  # the most reshapes and transposes in front of the in-projection or behind the out-projection


@dataclass
class Attention:
    """A region of nodes that computes nn.MultiheadAttention's self-attention of `x` as `y`."""

    nodes: set[int]
    x: str
    y: str
    last: int  # the node giving y: the statement stands where it stands
    heads: int
    bias: tuple[bool, bool]  # the in-projection's, the out-projection's
    causal: bool
    name: str


def find_attention(imp) -> list[Attention]:
    """Every region of the model that computes multi-head self-attention, checked by running it."""
    graph = imp.graph
    producer = imp.producer
    found: list[Attention] = []
    taken: set[int] = set()
    for i, node in enumerate(graph.node):
        if node.op_type != "Softmax" or i in taken:
            continue
        match = _match(imp, producer, i)
        if match is not None:
            found.append(match)
            taken |= match.nodes
    return found


def _match(imp, producer: dict, softmax: int) -> Attention | None:
    """The attention region around Softmax node `softmax`, if one computes nn.MultiheadAttention."""
    for x in _inputs(imp, producer, softmax):
        for y in _outputs(imp, softmax):
            shape = imp.shapes.get(x, ())
            if shape != imp.shapes.get(y) or len(shape) != 3 or shape[0] != (imp.batch or 1):
                continue  # N x L x E, batch first, in and out
            nodes = _region(imp, producer, x, y)
            if nodes is None or softmax not in nodes:
                continue
            found = _check(imp, producer, nodes, x, y)
            if found is not None:
                heads, bias, causal = found
                last = producer[y]
                return Attention(nodes, x, y, last, heads, bias, causal, _common_name(imp.named, nodes))
    return None


def _inputs(imp, producer: dict, softmax: int) -> list[str]:
    """Candidates for X: back from the scores along the first computed input to a projection, then each
    tensor of the chain of reshapes and transposes in front of it, the nearest first."""
    graph = imp.graph
    tensor = graph.node[softmax].input[0]
    seen = 0
    while tensor in producer and seen < REACH:
        node = graph.node[producer[tensor]]
        if node.op_type in PROJECTIONS and _weight(imp, node) is not None:
            break
        tensor = next((n for n in node.input if n and n not in imp.constants), None)
        seen += 1
    else:
        return []
    if tensor is None or tensor not in producer:
        return []
    chain = [graph.node[producer[tensor]].input[0]]
    while chain[-1] in producer and graph.node[producer[chain[-1]]].op_type in PLUMBING and len(chain) < CHAIN:
        chain.append(graph.node[producer[chain[-1]]].input[0])
    return chain


def _outputs(imp, softmax: int) -> list[str]:
    """Candidates for Y: forward from the weights along the only reader to the out-projection (and the Add
    of its bias), then each tensor of the chain of reshapes and transposes behind it, the nearest first."""
    graph = imp.graph

    def reader(tensor: str):  # the one node reading the values (a Shape reads none: TorchScript's sizes)
        readers = [k for k in imp.consumers.get(tensor, []) if k < 0 or graph.node[k].op_type != "Shape"]
        return readers[0] if len(readers) == 1 and readers[0] >= 0 else None

    tensor, k, seen = graph.node[softmax].output[0], reader(graph.node[softmax].output[0]), 0
    while k is not None and seen < REACH:
        node = graph.node[k]
        tensor = node.output[0]
        if node.op_type in PROJECTIONS and _weight(imp, node) is not None and seen:
            break
        k, seen = reader(tensor), seen + 1
    else:
        return []
    add = reader(tensor)
    if add is not None and graph.node[add].op_type == "Add" and _constant_other(imp, graph.node[add], tensor):
        tensor = graph.node[add].output[0]
    chain = [tensor]
    while (k := reader(chain[-1])) is not None and graph.node[k].op_type in PLUMBING and len(chain) < CHAIN:
        chain.append(graph.node[k].output[0])
    return chain


def _weight(imp, node) -> str | None:
    """A projection's weight: its second input, a constant of two dimensions."""
    w = node.input[1] if len(node.input) > 1 else ""
    shape = imp.static.get(w, imp.shapes.get(w))
    return w if w in imp.constants and shape is not None and len(shape) == 2 else None


def _constant_other(imp, node, tensor: str) -> str | None:
    other = [n for n in node.input if n != tensor]
    return other[0] if len(other) == 1 and other[0] in imp.constants else None


def _region(imp, producer: dict, x: str, y: str) -> set[int] | None:
    """The nodes computed from x that y is computed from, when nothing outside reads what they compute
    (y apart) and they read nothing computed but x and one another."""
    graph = imp.graph
    below: set[int] = set()  # the nodes y is computed from, back to x
    stack = [y]
    while stack:
        tensor = stack.pop()
        if tensor == x or tensor not in producer or tensor in imp.constants:
            continue
        k = producer[tensor]
        if k in below:
            continue
        below.add(k)
        stack.extend(n for n in graph.node[k].input if n)
    outputs = {out for k in below for out in graph.node[k].output if out}
    for k in below:
        for name in graph.node[k].input:
            if name and name != x and name not in imp.constants and name not in outputs:
                return None  # it reads a computed tensor other than x: not closed
        for out in graph.node[k].output:
            if out and out != y and any(r < 0 or r not in below for r in imp.consumers.get(out, [])):
                return None  # something outside reads what it computes
    return below if x in {n for k in below for n in graph.node[k].input} else None


def _check(imp, producer: dict, nodes: set[int], x: str, y: str) -> tuple | None:
    """(heads, (in bias, out bias), causal) when the region computes nn.MultiheadAttention of x as y, else None."""
    graph = imp.graph
    projections = sorted(k for k in nodes if graph.node[k].op_type in PROJECTIONS and _weight(imp, graph.node[k]))
    if len(projections) not in (2, 4):
        return None  # q, k and v from one packed in-projection or three, then the out-projection
    shape = imp.shapes[x]
    width = shape[-1]
    softmax = [k for k in nodes if graph.node[k].op_type == "Softmax"]
    scores = imp.shapes.get(graph.node[softmax[0]].input[0]) if len(softmax) == 1 else None
    if scores is None or len(scores) not in (3, 4):
        return None
    heads = scores[1] if len(scores) == 4 else scores[0] // shape[0]
    if heads < 1 or width % heads:
        return None
    tensors = []
    for k in projections:
        node = graph.node[k]
        bias = _bias(imp, node, nodes)
        tensors += [_weight(imp, node), bias]
    units = (3 * width, width) if len(projections) == 2 else (width,) * 4
    if any(_weight_shape(imp, graph.node[k]) != n for k, n in zip(projections, units)):
        return None
    has_bias = [b is not None for b in tensors[1::2]]
    if len(set(has_bias[:-1])) > 1:
        return None  # some of q, k and v with a bias: not nn.MultiheadAttention
    values = _run(imp, producer, nodes, x, [y, *(t for t in tensors if t)], {t for t in tensors if t})
    if values is None:
        return None
    out, *weights = values
    weights = iter(weights)
    mats = [(next(weights), next(weights) if b else None) for b in tensors[1::2]]
    mats = [(_oriented(graph.node[k], w), b) for k, (w, b) in zip(projections, mats)]
    x_value = _sample(shape)
    for order in permutations(range(len(mats) - 1)):  # three in-projections: which is q, k, v the values tell
        w_in = np.concatenate([mats[j][0] for j in order], axis=1)
        b_in = np.concatenate([mats[j][1] for j in order]) if has_bias[0] else None
        for causal in (False, True):
            if _close(out, _attention(x_value, [(w_in, b_in), mats[-1]], heads, causal)):
                return heads, (has_bias[0], has_bias[-1]), causal
    return None


def broadcast_constants(imp) -> tuple[set[int], dict[str, str]]:
    """Where(c, t, t) of a constant t is t broadcast to c's shape, whatever c holds: archc's ONNX out writes
    a class token expanded over the batch so, c computed from the patches only for its shape. The Where
    nodes and the nodes that compute c for them alone (to skip), and each Where's output with its t."""
    graph = imp.graph
    skip: set[int] = set()
    tokens: dict[str, str] = {}
    for i, node in enumerate(graph.node):
        if node.op_type != "Where" or len(node.input) != 3 or node.input[1] != node.input[2]:
            continue
        if node.input[1] not in imp.constants or node.output[0] not in imp.shapes:
            continue
        cone, stack = {i}, [node.input[0]]
        while stack:
            tensor = stack.pop()
            k = imp.producer.get(tensor)
            if k is None or tensor in imp.constants or not all(r in cone for r in imp.consumers.get(tensor, [])):
                continue
            cone.add(k)
            stack.extend(n for n in graph.node[k].input if n)
        skip |= cone
        tokens[node.output[0]] = node.input[1]
    return skip, tokens


def _bias(imp, node, nodes: set[int]) -> str | None:
    """The bias a projection adds: Gemm's C, or the constant of the Add that alone reads a MatMul's output."""
    if node.op_type == "Gemm":
        return node.input[2] if len(node.input) > 2 and node.input[2] else None
    readers = imp.consumers.get(node.output[0], [])
    if len(readers) == 1 and readers[0] in nodes and imp.graph.node[readers[0]].op_type == "Add":
        return _constant_other(imp, imp.graph.node[readers[0]], node.output[0])
    return None


def _weight_shape(imp, node) -> int:
    """A projection's number of outputs, by its weight's shape and Gemm's transB."""
    w = imp.static.get(node.input[1], imp.shapes.get(node.input[1]))
    trans = node.op_type == "Gemm" and any(a.name == "transB" and a.i for a in node.attribute)
    return w[0] if trans else w[1]


def _oriented(node, w: np.ndarray) -> np.ndarray:
    """The weight as the right operand of x @ w: Gemm's transB undone (its alpha and beta: see _run)."""
    trans = node.op_type == "Gemm" and any(a.name == "transB" and a.i for a in node.attribute)
    return w.T if trans else w


def _sample(shape: tuple) -> np.ndarray:
    return np.random.default_rng(SEED).standard_normal(shape).astype(np.float32)


def _run(imp, producer: dict, nodes: set[int], x: str, outputs: list[str], drawn: set[str]) -> list | None:
    """The region's `outputs` on a random x, by onnx's reference evaluator, the weights `drawn` is computed
    from given random values (the scale 1/sqrt(E) keeps the softmax from saturating); None when it does
    not run."""
    import onnx
    from onnx import helper, numpy_helper
    from onnx.reference import ReferenceEvaluator

    graph = imp.graph
    needed: set[int] = set()  # the region and the constants it reads
    stack = [n for k in nodes for n in graph.node[k].input if n and n != x] + list(outputs)
    while stack:
        tensor = stack.pop()
        if tensor in producer and producer[tensor] not in needed and tensor != x:
            needed.add(producer[tensor])
            stack.extend(n for n in graph.node[producer[tensor]].input if n)
    read = {n for k in needed for n in graph.node[k].input} | set(outputs)
    sources, stack = set(), list(drawn)
    while stack:
        tensor = stack.pop()
        if tensor in imp.init:
            sources.add(tensor)
        elif tensor in producer:
            stack.extend(n for n in graph.node[producer[tensor]].input if n)
    rng = np.random.default_rng(SEED + 1)
    scale = imp.shapes[x][-1] ** -0.5

    def value(name: str) -> np.ndarray:
        if name not in sources:
            return numpy_helper.to_array(imp.init[name], imp.base)
        dims = tuple(imp.init[name].dims)
        return (scale * rng.standard_normal(dims)).astype(helper.tensor_dtype_to_np_dtype(imp.init[name].data_type))

    try:
        weights = [numpy_helper.from_array(value(n), n) for n in sorted(read & set(imp.init))]
        value = helper.make_tensor_value_info(x, onnx.TensorProto.FLOAT, imp.shapes[x])
        outs = [helper.make_tensor_value_info(n, onnx.TensorProto.UNDEFINED, None) for n in outputs]
        sub = helper.make_graph([graph.node[k] for k in sorted(needed)], "attention", [value], outs, weights)
        model = helper.make_model(sub, opset_imports=list(imp.model.opset_import))
        model.ir_version = imp.model.ir_version
        return ReferenceEvaluator(model).run(None, {x: _sample(imp.shapes[x])})
    except Exception:  # a region the evaluator cannot run is not one archc can vouch for
        return None


def _attention(x: np.ndarray, mats: list, heads: int, causal: bool) -> np.ndarray:
    """nn.MultiheadAttention's self-attention in float64: x N x L x E, the in- and out-projections."""
    (w_in, b_in), (w_out, b_out) = [(w.astype(np.float64), b if b is None else b.astype(np.float64)) for w, b in mats]
    n, length, width = x.shape
    qkv = x.astype(np.float64) @ w_in + (0 if b_in is None else b_in)
    d = width // heads

    def split(t):
        return t.reshape(n, length, heads, d).transpose(0, 2, 1, 3)

    q, k, v = (split(qkv[..., j * width : (j + 1) * width]) for j in range(3))
    scores = q @ k.transpose(0, 1, 3, 2) / math.sqrt(d)
    if causal:
        scores = np.where(np.triu(np.ones((length, length), bool), 1), -np.inf, scores)
    scores = np.exp(scores - scores.max(-1, keepdims=True))
    out = (scores / scores.sum(-1, keepdims=True)) @ v
    out = out.transpose(0, 2, 1, 3).reshape(n, length, width)
    return out @ w_out + (0 if b_out is None else b_out)


def _close(got, want: np.ndarray) -> bool:
    got = np.asarray(got, np.float64)
    return got.shape == want.shape and bool(np.allclose(got, want, rtol=1e-4, atol=1e-5 * max(1.0, np.abs(want).max())))


def _common_name(named: list, nodes: set[int]) -> str:
    """The scope the region's nodes share (`/encoder/layers/encoder_layer_0/self_attention`), if any."""
    names = [named[k].name for k in nodes]
    if not all("/" in n for n in names):
        return ""
    parts = [n.split("/")[:-1] for n in names]
    common = []
    for level in zip(*parts):
        if len(set(level)) != 1:
            break
        common.append(level[0])
    return "/".join(common)
