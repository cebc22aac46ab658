"""The ONNX target: an analysed network as an `onnx.ModelProto`, built with the onnx package, no torch.

Each layer's `Op.onnx_call` adds its nodes through an `OnnxGraph` (archc/ops/*.py, beside
its PyTorch and NumPy code). The graph computes what the generated PyTorch module computes
in eval mode (batch norm with its running statistics, dropout and drop_path the identity):

- opset `OPSET` of the default domain, and nothing else;
- the inputs and outputs are named after the spec's, with a dynamic batch dimension `N` (1 for a
  tensor the batch shares, a `param`); token ids are int64 inputs;
- every layer's value is named after the layer (its output shape is in the graph's shape
  inference), the values inside a layer `<layer>/<k>`;
- the initialisers are the generated modules' state_dict, by key and in torch's layout
  (`layer1.0.conv1.weight`, or with `flat` `layer1_0_conv1.weight`), so weights move between
  the three targets by key; the constants a layer needs besides (a Clip's bounds, a shape)
  are Constant nodes. The weights are those the NumPy target's `build_model(seed)` starts
  with, or the `weights` given (a state dict, e.g. loaded from the .npz its `save` writes).

The onnx package is imported here only, when an ONNX model is asked for: it is the optional
extra `archc[onnx]`, and archc runs without it.
"""

from __future__ import annotations

from collections.abc import Mapping

from ..ops import OPS
from .common import StateRef

OPSET = 21  # ONNX 1.16: GroupNormalization with per-channel scale and bias, Gelu (20), Mish (18)
IR_VERSION = 10  # the IR version of opset 21
BATCH = "N"
PROTOBUF_LIMIT = 2**31  # bytes: a ModelProto larger than this cannot be serialised in one file
MISSING = "the ONNX target needs the onnx package: pip install 'archc[onnx]' (or pip install onnx)"


class WeightsError(ValueError):
    """Weights that do not fit the network: keys missing or unexpected, a shape that differs."""


def _onnx():
    try:
        import onnx
    except ModuleNotFoundError as err:
        raise ModuleNotFoundError(MISSING, name="onnx") from err
    return onnx


class OnnxGraph:
    """The nodes of the graph being built, and the names of its values.

    An op's emitter calls `op` for each node (`g.op("Conv", x, w, strides=[2, 2])` returns
    the name of the node's output), `const` for a constant and `state(suffix)` for one of its
    layer's initialisers; it returns the name of the value the layer computes.
    """

    def __init__(self, onnx, numpy, initialisers: Mapping[str, object]):
        self.onnx, self.np = onnx, numpy
        self.nodes: list = []
        self.initialisers = initialisers
        self.taken = set(initialisers)
        self.ref = StateRef("")  # the state_dict keys of the layer being emitted
        self.layer = ""
        self.input_shapes: list[tuple[int, ...]] = []  # of the layer being emitted, per sample
        self._count = 0

    def begin(self, node, ref: StateRef, input_shapes: list[tuple[int, ...]]) -> int:
        """Start the nodes of `node`, whose state_dict keys `ref` gives; where they start in `nodes`."""
        self.layer, self.ref, self.input_shapes, self._count = node.name, ref, input_shapes, 0
        return len(self.nodes)

    def _name(self) -> str:
        self._count += 1
        return f"{self.layer}/{self._count}"

    def op(self, op_type: str, *inputs: str | None, **attrs) -> str:
        """One node; None for an optional input left out. Attributes that are None are left out."""
        out = self._name()
        attrs = {k: v for k, v in attrs.items() if v is not None}
        names = ["" if i is None else i for i in inputs]
        while names and names[-1] == "":
            names.pop()
        self.nodes.append(self.onnx.helper.make_node(op_type, names, [out], name=out, **attrs))
        return out

    def const(self, values, dtype: str = "int64") -> str:
        """A Constant node holding `values` (a number is a scalar)."""
        array = self.np.asarray(values, dtype=dtype)
        return self.op("Constant", value=self.onnx.numpy_helper.from_array(array))

    def filled(self, shape, value: float) -> str:
        """A Constant of float32 `value`s in `shape` (the ones a norm without weights scales by)."""
        return self.const(self.np.full(tuple(shape), value), "float32")

    def state(self, suffix: str) -> str:
        """The initialiser of the layer's array `suffix` (its state_dict key; a tied weight's is its layer's)."""
        return self.ref.name(suffix)

    def shape_of(self, node) -> list[int]:
        """The layer's output shape with the batch, as Reshape takes it: 0 copies the input's batch."""
        return [0, *node.shape]

    def name_value(self, value: str, name: str, first: int) -> None:
        """Call `value` `name`: the node this layer made that computes it is renamed; a value
        from before (an identity's input) is copied by an Identity node."""
        for node in reversed(self.nodes[first:]):
            if value in node.output:
                node.output[list(node.output).index(value)] = name
                for later in self.nodes[first:]:
                    later.input[:] = [name if i == value else i for i in later.input]
                return
        self.nodes.append(self.onnx.helper.make_node("Identity", [value], [name], name=name))


def initial_state(network, seed: int = 0, flat: bool = False) -> dict:
    """The arrays the NumPy target's `build_model(seed)` starts with: its code is run for them,
    so the three targets start alike by construction."""
    import types

    from . import generate

    module = types.ModuleType("archc_onnx_weights")
    exec(compile(generate(network, "numpy", flat=flat).code, "<archc numpy target>", "exec"), module.__dict__)
    return module.build_model(seed).state_dict()


def _checked_weights(numpy, expected: dict, weights: Mapping) -> dict:
    """`weights` as arrays of the expected keys, shapes and types; WeightsError saying what differs."""
    missing = sorted(expected.keys() - weights.keys())
    unexpected = sorted(weights.keys() - expected.keys())
    if missing or unexpected:
        listed = [(what, keys) for what, keys in (("missing", missing), ("unexpected", unexpected)) if keys]
        says = "; ".join(f"{what} {', '.join(keys[:5])}{', ...' if len(keys) > 5 else ''}" for what, keys in listed)
        raise WeightsError(f"the weights do not fit the network: {says}")
    out = {}
    for key, want in expected.items():
        value = weights[key]
        value = value.detach().cpu().numpy() if hasattr(value, "detach") else numpy.asarray(value)
        if tuple(value.shape) != tuple(want.shape):
            raise WeightsError(f"the weights do not fit the network: {key} has shape {value.shape}, not {want.shape}")
        out[key] = value.astype(want.dtype)
    return out


def read_weights(path) -> dict:
    """The arrays of an .npz file (the NumPy model's `save`); WeightsError for a file that is not one."""
    import zipfile

    import numpy

    try:
        with numpy.load(path, allow_pickle=False) as data:
            return {key: data[key] for key in data.files}
    except OSError as err:
        raise WeightsError(f"cannot read the weights `{path}`: {err.strerror or err}") from None
    except (ValueError, zipfile.BadZipFile, AttributeError) as err:
        raise WeightsError(f"`{path}` is not an .npz file of arrays ({err})") from None


def to_onnx(network, *, weights: Mapping | None = None, seed: int = 0, flat: bool = False, large: bool = False):
    """The network as an `onnx.ModelProto` (docs/language.md, section 16).

    `weights` maps state_dict keys to arrays (NumPy arrays, torch tensors, the contents of an
    .npz); without them, the NumPy target's initial weights for `seed`. `flat` names the
    initialisers as the flat targets name their keys. Raises ModuleNotFoundError without
    the onnx package, WeightsError for weights that do not fit, ValueError for a model too
    large for one protobuf (2 GiB) unless `large` (to_onnx_files then moves its weights out).
    """
    from .. import arguments

    arguments.flag("flat", flat)
    arguments.whole("seed", seed, 0)
    if weights is not None and not isinstance(weights, Mapping):
        raise TypeError(f"weights must be a mapping of state_dict keys to arrays, not {type(weights).__name__}")
    onnx = _onnx()
    import numpy

    state = initial_state(network, seed, flat)
    if weights is not None:
        state = _checked_weights(numpy, state, weights)
    size = sum(v.nbytes for v in state.values())
    if size >= PROTOBUF_LIMIT and not large:
        raise ValueError(
            f"{network.name}'s weights take {size:,} bytes: an ONNX file holds at most 2 GiB; "
            "archc codegen --target onnx -o FILE.onnx writes them beside it, in FILE.onnx.data"
        )
    return _build(onnx, numpy, network, state, flat)


def to_onnx_files(network, location: str, **options) -> tuple[bytes, bytes | None]:
    """The model file's bytes, and those of its external data file `location` (a name beside it)
    when the weights take 2 GiB or more, which one protobuf cannot hold (else None).

    The data file is laid out as onnx's external data format says: each initialiser's bytes at
    the offset and length its `external_data` entries give. `options` are to_onnx's.
    """
    model = to_onnx(network, large=True, **options)
    if sum(len(tensor.raw_data) for tensor in model.graph.initializer) < PROTOBUF_LIMIT:  # to_onnx's measure
        return model.SerializeToString(), None
    blob = bytearray()
    for tensor in model.graph.initializer:
        data = tensor.raw_data
        tensor.ClearField("raw_data")
        tensor.data_location = tensor.EXTERNAL
        for key, value in (("location", location), ("offset", str(len(blob))), ("length", str(len(data)))):
            entry = tensor.external_data.add()
            entry.key, entry.value = key, value
        blob += data
    return model.SerializeToString(), bytes(blob)


def _build(onnx, numpy, network, state: dict, flat: bool):
    from .common import make_plan, reserved_names, state_ref, tied_keys
    from .numpy_target import _nested_keys

    helper = onnx.helper
    plan = make_plan(network, reserved_names())
    key = plan.attrs if flat else _nested_keys(network, plan.attrs)
    g = OnnxGraph(onnx, numpy, state)
    graph = network.graph
    values: dict[str, str] = {}  # layer -> the name of its value
    for node in graph:
        if node.op == "input":
            values[node.name] = node.name
            continue
        first = g.begin(node, state_ref(node, key, graph), [graph.nodes[i].shape for i in node.inputs])
        value = OPS[node.op].onnx_call(node, g, [values[i] for i in node.inputs])
        if node.activation is not None:
            act, attrs = node.activation
            value = OPS[act].apply_onnx(attrs, g, value)
        name = node.name if node.name not in g.taken else f"{node.name}/out"  # a bare parameter's key
        g.name_value(value, name, first)
        g.taken.add(name)
        values[node.name] = name

    def info(n, name):
        """Token ids are int64, as torch's nn.Embedding takes them; a tensor the batch shares (a bare
        `param`) has a batch of 1."""
        kind = onnx.TensorProto.INT64 if n.shape.vocab is not None else onnx.TensorProto.FLOAT
        return helper.make_tensor_value_info(name, kind, [BATCH if n.shape.batched else 1, *n.shape])

    inputs = [info(n, n.name) for n in graph.inputs]
    outputs = [info(n, values[n.name]) for n in graph.outputs]
    tied = tied_keys(network, key)  # one initialiser for a tied weight, its layer's
    initialisers = [onnx.numpy_helper.from_array(v, name=k) for k, v in state.items() if k not in tied]
    body = helper.make_graph(g.nodes, network.name, inputs, outputs, initialisers)
    return helper.make_model(
        body,
        opset_imports=[helper.make_opsetid("", OPSET)],
        ir_version=IR_VERSION,
        producer_name="archc",
        producer_version=_version(),
        doc_string=f"{network.name}, generated by archc from {network.file}",
    )


def _version() -> str:
    from .. import __version__

    return __version__
