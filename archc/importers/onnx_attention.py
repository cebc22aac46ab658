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
scale 1/sqrt(E/heads), with or without a causal mask). The keys and values may come from a second
tensor M (cross-attention: `attention (x, memory)`). Around a Softmax that is no such region, the
region from q, k and v (N x L x E each, or side by side in one tensor) to their heads joined again is
checked the same way against F.scaled_dot_product_attention: archc's `sdpa`, which a spec writes after
its own `dense` projections (BERT). A region that computes anything else is left to the per-node rules,
which refuse what they cannot read: archc never guesses.
"""

from __future__ import annotations

import hashlib
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
    """A region of nodes that computes nn.MultiheadAttention's attention of xs (x, or x and the memory
    the keys and values come from) as `y`."""

    nodes: set[int]
    xs: list[str]
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
    """The attention region around Softmax node `softmax`, if one computes nn.MultiheadAttention: of X
    alone (self-attention), or of X and a memory M the keys and values come from (cross-attention)."""
    qk = _product(imp, imp.graph.node[softmax].input[0], back=True)
    memories = _inputs(imp, producer, imp.graph.node[qk].input[1]) if qk is not None else []
    for x in _inputs(imp, producer, imp.graph.node[softmax].input[0]):
        for y in _outputs(imp, softmax):
            shape = imp.shapes.get(x, ())
            if shape != imp.shapes.get(y) or len(shape) != 3 or shape[0] != (imp.batch or 1):
                continue  # N x L x E, batch first, in and out
            for m in [x] + [m for m in memories if m != x]:
                memory = imp.shapes.get(m, ())
                if len(memory) != 3 or memory[0] != shape[0]:
                    continue  # N x S x E, the batch the queries have
                nodes = _region(imp, producer, {x, m}, y)
                if nodes is None or softmax not in nodes:
                    continue
                found = _check(imp, producer, nodes, x, m, y)
                if found is not None:
                    heads, bias, causal = found
                    last = producer[y]
                    xs = [x] if m == x else [x, m]
                    return Attention(nodes, xs, y, last, heads, bias, causal, _common_name(imp.named, nodes))
    return None


def _inputs(imp, producer: dict, tensor: str) -> list[str]:
    """Candidates for X (or M): back from `tensor` (the scores, or the keys) along the first computed
    input to a projection, then each tensor of the chain of reshapes and transposes in front of it, the
    nearest first."""
    graph = imp.graph
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


def _region(imp, producer: dict, xs: set[str], y: str) -> set[int] | None:
    """The nodes computed from the tensors xs that y is computed from, when nothing outside reads what
    they compute (y apart) and they read nothing computed but xs and one another."""
    graph = imp.graph
    below: set[int] = set()  # the nodes y is computed from, back to x
    stack = [y]
    while stack:
        tensor = stack.pop()
        if tensor in xs or tensor not in producer or tensor in imp.constants:
            continue
        k = producer[tensor]
        if k in below:
            continue
        below.add(k)
        stack.extend(n for n in graph.node[k].input if n)
    outputs = {out for k in below for out in graph.node[k].output if out}
    for k in below:
        for name in graph.node[k].input:
            if name and name not in xs and name not in imp.constants and name not in outputs:
                return None  # it reads a computed tensor other than xs: not closed
        for out in graph.node[k].output:
            if out and out != y and any(r < 0 or r not in below for r in imp.consumers.get(out, [])):
                return None  # something outside reads what it computes
    return below if xs <= {n for k in below for n in graph.node[k].input} else None


def _check(imp, producer: dict, nodes: set[int], x: str, m: str, y: str) -> tuple | None:
    """(heads, (in bias, out bias), causal) when the region computes nn.MultiheadAttention of query x and
    memory m (x itself: self-attention) as y, else None."""
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
    feeds = {x: _sample(shape), m: _sample(imp.shapes[m], 1)} if m != x else {x: _sample(shape)}
    outputs, drawn = [y, *(t for t in tensors if t)], {t for t in tensors if t}
    nodes_of = [graph.node[k] for k in projections]
    return _once(
        imp,
        ("attention",),
        _Region(imp, producer, nodes, feeds, outputs, drawn),
        lambda values: _compare(values, feeds, x, m, nodes_of, has_bias, heads),
    )


def _compare(values: list, feeds: dict, x: str, m: str, projections: list, has_bias: list, heads: int):
    """(heads, (in bias, out bias), causal) when the region's output (the first of `values`, then the
    projections' weights and biases it drew) is nn.MultiheadAttention's of those weights, else None."""
    out, *weights = values
    weights = iter(weights)
    mats = [(next(weights), next(weights) if b else None) for b in has_bias]
    mats = [(_oriented(node, w), b) for node, (w, b) in zip(projections, mats)]
    for order in permutations(range(len(mats) - 1)):  # three in-projections: which is q, k, v the values tell
        w_in = np.concatenate([mats[j][0] for j in order], axis=1)
        b_in = np.concatenate([mats[j][1] for j in order]) if has_bias[0] else None
        for causal in (False, True):
            if _close(out, _attention(feeds[x], feeds[m], [(w_in, b_in), mats[-1]], heads, causal)):
                return heads, (has_bias[0], has_bias[-1]), causal
    return None


@dataclass
class Sdpa:
    """A region of nodes that computes scaled dot-product attention of the inputs `xs` (q, k and v, those
    one tensor holds side by side given once, as archc's `sdpa` takes them) as `y`."""

    nodes: set[int]
    xs: list[str]
    y: str
    last: int
    heads: int
    causal: bool
    name: str


# operators that only move values or scale them by a constant: between q, k, v and the scores' products
MOVES = PLUMBING | {"Slice", "Mul", "Div", "Cast"}


def find_sdpa(imp, taken: set[int]) -> list[Sdpa]:
    """Every region around a Softmax not in `taken` that computes F.scaled_dot_product_attention of q,
    k and v, N x L x E each (or side by side in one tensor), checked by running it."""
    found: list[Sdpa] = []
    for i, node in enumerate(imp.graph.node):
        if node.op_type == "Softmax" and i not in taken:
            match = _match_sdpa(imp, i)
            if match is not None:
                found.append(match)
                taken |= match.nodes
    return found


def _match_sdpa(imp, softmax: int) -> Sdpa | None:
    """The sdpa region around Softmax node `softmax`: back from the scores to the product of q and k,
    forward to the product with v, then the sources of q, k and v and the candidates for the output."""
    graph, producer = imp.graph, imp.producer
    qk = _product(imp, graph.node[softmax].input[0], back=True)
    wv = _product(imp, graph.node[softmax].output[0], back=False)
    if qk is None or wv is None:
        return None
    q, k, v = (_source(imp, t) for t in (*graph.node[qk].input, graph.node[wv].input[1]))
    if None in (q, k, v) or (len({q, k, v}) == 2 and k != v):
        return None  # q one tensor with k or with v but not both: no form of sdpa
    xs = list(dict.fromkeys((q, k, v)))
    for y in _after(imp, graph.node[wv].output[0]):
        shape = imp.shapes.get(y, ())
        if len(shape) != 3 or shape[0] != (imp.batch or 1):
            continue
        nodes = _region(imp, producer, set(xs), y)
        if nodes is None or softmax not in nodes:
            continue
        found = _check_sdpa(imp, producer, nodes, xs, y, softmax)
        if found is not None:
            heads, causal = found
            return Sdpa(nodes, xs, y, producer[y], heads, causal, _common_name(imp.named, nodes))
    return None


def _product(imp, tensor: str, back: bool) -> int | None:
    """The MatMul of two computed tensors nearest `tensor`: back along the one computed input of each
    node (the scores: scaled, masked), or forward along the one reader (the weights: dropped out)."""
    graph = imp.graph
    for _ in range(CHAIN):
        if back:
            k = imp.producer.get(tensor)
            if k is None:
                return None
        else:
            readers = imp.consumers.get(tensor, [])
            if len(readers) != 1 or readers[0] < 0:
                return None
            k = readers[0]
        node = graph.node[k]
        computed = [n for n in node.input if n and n not in imp.constants]
        if node.op_type == "MatMul" and len(computed) == 2:
            return k if back or node.input[0] == tensor else None
        if len(computed) != 1 or not node.output:
            return None
        tensor = computed[0] if back else node.output[0]
    return None


def _source(imp, tensor: str) -> str | None:
    """Where a product's operand comes from: back through moves, the farthest tensor that is batch first
    and three-dimensional (q as a dense gives it, before its heads are split)."""
    source = None
    for _ in range(CHAIN):
        shape = imp.shapes.get(tensor, ())
        if len(shape) == 3 and shape[0] == (imp.batch or 1):
            source = tensor
        k = imp.producer.get(tensor)
        node = imp.graph.node[k] if k is not None else None
        computed = [n for n in node.input if n and n not in imp.constants] if node is not None else []
        if node is None or node.op_type not in MOVES or len(computed) != 1:
            return source
        tensor = computed[0]
    return None


def _after(imp, tensor: str) -> list[str]:
    """Candidates for the output: `tensor` and the chain of reshapes and transposes behind it."""
    chain = [tensor]
    while len(chain) < CHAIN:
        readers = imp.consumers.get(chain[-1], [])
        if len(readers) != 1 or readers[0] < 0 or imp.graph.node[readers[0]].op_type not in PLUMBING:
            break
        chain.append(imp.graph.node[readers[0]].output[0])
    return chain[::-1]


def _check_sdpa(imp, producer: dict, nodes: set[int], xs: list[str], y: str, softmax: int) -> tuple | None:
    """(heads, causal) when the region computes softmax(q kᵀ / sqrt(E / heads) + mask) v over the heads,
    q, k and v (N x L x E, N x S x E, N x S x Ev) cut from xs as archc's sdpa cuts them; else None."""
    scores = imp.shapes.get(imp.graph.node[softmax].input[0], ())
    if len(scores) != 4:
        return None
    heads = scores[1]
    feeds = {x: _sample(imp.shapes[x], salt) for salt, x in enumerate(xs)}
    last = feeds[xs[-1]]
    packed = 4 - len(xs)
    if packed > 1:
        if last.shape[-1] % packed:
            return None
        e = last.shape[-1] // packed
        parts = [last[..., j * e : (j + 1) * e] for j in range(packed)]
    else:
        parts = [last]
    q, k, v = [feeds[x] for x in xs[:-1]] + parts
    if q.shape[-1] != k.shape[-1] or q.shape[-1] % heads or v.shape[-1] % heads or k.shape[1] != v.shape[1]:
        return None
    return _once(
        imp,
        ("sdpa", len(xs)),
        _Region(imp, producer, nodes, feeds, [y], set()),
        lambda values: next(((heads, c) for c in (False, True) if _close(values[0], _sdpa(q, k, v, heads, c))), None),
    )


def _sdpa(q: np.ndarray, k: np.ndarray, v: np.ndarray, heads: int, causal: bool) -> np.ndarray:
    """F.scaled_dot_product_attention over `heads` heads in float64, the heads side by side again."""
    n, length, _ = q.shape

    def split(t):
        return t.astype(np.float64).reshape(n, t.shape[1], heads, -1).transpose(0, 2, 1, 3)

    qh, kh, vh = split(q), split(k), split(v)
    scores = qh @ kh.transpose(0, 1, 3, 2) / math.sqrt(qh.shape[-1])
    if causal:
        scores = np.where(np.triu(np.ones(scores.shape[-2:], bool), 1), -np.inf, scores)
    scores = np.exp(scores - scores.max(-1, keepdims=True))
    out = (scores / scores.sum(-1, keepdims=True)) @ vh
    return out.transpose(0, 2, 1, 3).reshape(n, length, -1)


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


def _sample(shape: tuple, salt: int = 0) -> np.ndarray:
    """A random input, a different one for each salt (q, k and v must differ for the check to tell them)."""
    return np.random.default_rng([SEED, salt]).standard_normal(shape).astype(np.float32)


class _Region:
    """What a check runs: the region's nodes and those computing the constants it reads (`needed`), its
    random inputs `feeds`, the `outputs` it compares, and the initialisers the weights it draws at random
    are computed from (`sources`)."""

    def __init__(self, imp, producer: dict, nodes: set[int], feeds: dict, outputs: list[str], drawn: set[str]):
        self.needed = _needed(imp, producer, nodes, feeds, outputs)
        self.sources = _sources(imp, producer, drawn)
        self.feeds, self.outputs = feeds, outputs


def _once(imp, kind: tuple, region: _Region, judge):
    """judge(the region's output values), or None when it does not run: once for every region of one
    form (`_form`), which give one answer (GPT-2's twelve layers are run once, not twelve times: the
    run at 1,024 tokens took most of the import)."""
    form = (*kind, _form(imp, region))
    if form not in imp.checked:
        values = _run(imp, region)
        imp.checked[form] = None if values is None else judge(values)
    return imp.checked[form]


def _run(imp, region: _Region) -> list | None:
    """The region's outputs on its random inputs, by onnx's reference evaluator, the weights it draws
    given random values (the scale 1/sqrt(E) keeps the softmax from saturating); None when it does
    not run."""
    import onnx
    from onnx import helper, numpy_helper
    from onnx.reference import ReferenceEvaluator

    graph = imp.graph
    needed, sources, feeds, outputs = region.needed, region.sources, region.feeds, region.outputs
    read = {n for k in needed for n in graph.node[k].input} | set(outputs)
    rng = np.random.default_rng(SEED + 1)
    scale = imp.shapes[next(iter(feeds))][-1] ** -0.5

    def value(name: str) -> np.ndarray:
        if name not in sources:
            return numpy_helper.to_array(imp.init[name], imp.base)
        dims = tuple(imp.init[name].dims)
        return (scale * rng.standard_normal(dims)).astype(helper.tensor_dtype_to_np_dtype(imp.init[name].data_type))

    try:
        weights = [numpy_helper.from_array(value(n), n) for n in sorted(read & set(imp.init))]
        ins = [helper.make_tensor_value_info(x, onnx.TensorProto.FLOAT, imp.shapes[x]) for x in feeds]
        outs = [helper.make_tensor_value_info(n, onnx.TensorProto.UNDEFINED, None) for n in outputs]
        sub = helper.make_graph([graph.node[k] for k in sorted(needed)], "attention", ins, outs, weights)
        model = helper.make_model(sub, opset_imports=list(imp.model.opset_import))
        model.ir_version = imp.model.ir_version
        return ReferenceEvaluator(model).run(None, feeds)
    except Exception:  # a region the evaluator cannot run is not one archc can vouch for
        return None


def _needed(imp, producer: dict, nodes: set[int], feeds, outputs: list[str]) -> set[int]:
    """The region's nodes and those computing the constants it reads: what running it runs."""
    graph = imp.graph
    needed: set[int] = set()
    stack = [n for k in nodes for n in graph.node[k].input if n and n not in feeds] + list(outputs)
    while stack:
        tensor = stack.pop()
        if tensor in producer and producer[tensor] not in needed and tensor not in feeds:
            needed.add(producer[tensor])
            stack.extend(n for n in graph.node[producer[tensor]].input if n)
    return needed


def _sources(imp, producer: dict, drawn) -> set[str]:
    """The initialisers the tensors `drawn` are computed from: those the check gives random values."""
    sources, stack = set(), list(drawn)
    while stack:
        tensor = stack.pop()
        if tensor in imp.init:
            sources.add(tensor)
        elif tensor in producer:
            stack.extend(n for n in imp.graph.node[producer[tensor]].input if n)
    return sources


def _form(imp, region: _Region) -> tuple:
    """What running the region computes, without the names of its tensors: its nodes in order (operator,
    attributes, and each tensor by its first appearance), the inputs' shapes, the values of the constants
    it reads, and only the shapes of the weights the check draws at random."""
    from onnx import numpy_helper

    names: dict[str, object] = {x: ("input", i, imp.shapes[x]) for i, x in enumerate(region.feeds)}
    sources = region.sources

    def name(tensor: str):
        if tensor not in names:
            init = imp.init.get(tensor)
            if init is None:
                names[tensor] = len(names)
            elif tensor in sources:
                names[tensor] = ("drawn", init.data_type, tuple(init.dims))
            else:
                value = numpy_helper.to_array(init, imp.base)
                names[tensor] = ("constant", value.dtype.str, value.shape, hashlib.sha256(value.tobytes()).digest())
        return names[tensor]

    form = []
    for k in sorted(region.needed):
        node = imp.graph.node[k]
        attributes = tuple(a.SerializeToString(deterministic=True) for a in node.attribute)
        form.append(
            (node.op_type, node.domain, attributes, tuple(map(name, node.input)), tuple(map(name, node.output)))
        )
    return tuple(form), tuple(map(name, region.outputs))


def _attention(x: np.ndarray, m: np.ndarray, mats: list, heads: int, causal: bool) -> np.ndarray:
    """nn.MultiheadAttention in float64: queries from x (N x L x E), keys and values from m (N x S x E),
    the in- and out-projections."""
    (w_in, b_in), (w_out, b_out) = [(w.astype(np.float64), b if b is None else b.astype(np.float64)) for w, b in mats]
    n, length, width = x.shape
    b_in = np.zeros(w_in.shape[1]) if b_in is None else b_in
    d = width // heads

    def split(t):
        return t.reshape(n, t.shape[1], heads, d).transpose(0, 2, 1, 3)

    q, k, v = (
        split(t.astype(np.float64) @ w_in[:, j * width : (j + 1) * width] + b_in[j * width : (j + 1) * width])
        for j, t in enumerate((x, m, m))
    )
    scores = q @ k.transpose(0, 1, 3, 2) / math.sqrt(d)
    if causal:
        scores = np.where(np.triu(np.ones(scores.shape[-2:], bool), 1), -np.inf, scores)
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
