"""Training memory: what autograd keeps for the backward pass, gradients, optimiser state, and the peak.

The figures are those of the generated PyTorch module (archc/codegen/torch_target.py) in
training mode. Each layer type says what its backward keeps (`Op.training`: its input,
its output, or tensors of its own such as masks, indices and statistics); this pass
follows the storages those tensors live in, so that a tensor kept by several layers (a
ReLU's output that the next convolution keeps as its input), a view (flatten, a slice)
and an activation computed in place count once, at the first layer that keeps them.

Nothing is kept by a layer whose inputs need no gradient and that has no parameters (a
pooling of the network's input): autograd records nothing there. A layer's output needs a
gradient when one of its inputs does or it has parameters.

Every figure is linear in the batch (`Bytes`): `archc fit` solves for the largest batch.

The whole model is in the network's dtype (`model.to(dtype)`). Mixed precision in the
way of apex's O2 and DeepSpeed (`master=True`) adds a float32 copy of the parameters,
and keeps the optimiser state in float32; activations, weights and gradients stay in the
16-bit dtype.
"""

from __future__ import annotations

from dataclasses import dataclass

from ..ops import OPS
from ..ops.base import INT64, TrainContext, prod

OPTIMIZERS = ("sgd", "momentum", "adam", "adamw")
# Tensors of each parameter's size that torch.optim keeps per parameter: SGD's momentum buffer,
# Adam's and AdamW's two moment estimates.
MOMENTS = {"sgd": 0, "momentum": 1, "adam": 2, "adamw": 2}
STEP_BYTES = 4  # Adam and AdamW also keep a float32 `step` per parameter tensor (torch.optim on one device)
DEVICES = ("cuda", "cpu")
MASTER_BYTES = 4  # mixed precision's master weights and optimiser state are float32
BUFFER_ARRAYS = frozenset({"running_mean", "running_var", "num_batches_tracked"})  # in Op.numpy_state


@dataclass(frozen=True)
class Bytes:
    """A size that grows with the batch: `per_sample` x batch + `fixed`."""

    per_sample: int = 0
    fixed: int = 0

    def at(self, batch: int) -> int:
        return self.per_sample * batch + self.fixed

    def __add__(self, other: Bytes) -> Bytes:
        return Bytes(self.per_sample + other.per_sample, self.fixed + other.fixed)


@dataclass(frozen=True)
class TrainingMemory:
    """Training memory at one batch, in bytes."""

    batch: int
    dtype: str
    optimizer: str
    device: str
    weights: int  # parameters and buffers
    master_weights: int  # the float32 copy of the parameters mixed precision keeps (0 without)
    gradients: int  # one per parameter
    optimizer_state: int
    saved: int  # what autograd keeps for backward, each storage once
    total: int  # weights + master_weights + gradients + optimizer_state + saved
    peak: int  # the most memory live during the backward pass (docs/language.md, section 12)
    peak_layer: str | None  # the layer whose backward reaches it
    layers: dict[str, int]  # saved bytes per layer: the storages it is the first to keep

    def as_dict(self) -> dict:
        return dict(self.__dict__)


@dataclass(frozen=True)
class TrainingPlan:
    """The training figures of a network as functions of the batch: what `TrainingMemory` and `fit` read."""

    network: object
    optimizer: str
    device: str
    weights: int
    master_weights: int
    gradients: int
    optimizer_state: int
    layers: dict[str, Bytes]
    grad_values: dict[str, tuple[int, int, int]]  # value -> (producer, last reader, bytes per sample): its gradient

    @property
    def saved(self) -> Bytes:
        return sum(self.layers.values(), Bytes())

    @property
    def fixed(self) -> int:
        """What does not grow with the batch: weights, gradients, optimiser state (and a few statistics)."""
        return self.weights + self.master_weights + self.gradients + self.optimizer_state + self.saved.fixed

    def total(self, batch: int) -> int:
        return self.fixed + self.saved.per_sample * batch

    def at(self, batch: int) -> TrainingMemory:
        peak, peak_layer = self.peak(batch)
        net = self.network
        return TrainingMemory(
            batch=batch,
            dtype=net.dtype,
            optimizer=self.optimizer,
            device=self.device,
            weights=self.weights,
            master_weights=self.master_weights,
            gradients=self.gradients,
            optimizer_state=self.optimizer_state,
            saved=self.saved.at(batch),
            total=self.total(batch),
            peak=peak,
            peak_layer=peak_layer,
            layers={name: size.at(batch) for name, size in self.layers.items()},
        )

    def peak(self, batch: int) -> tuple[int, str | None]:
        """The backward pass, layer by layer from the last: weights and optimiser state throughout; the
        gradients of the parameters of every layer done so far (this one's included); every saved storage
        until the backward of the first layer that keeps it is done; and the gradient of each value from
        the backward of its last reader (the network's outputs: from the start) to that of the layer that
        made it."""
        names = list(self.layers)
        n = len(names)
        starts = [0] * (n + 1)  # gradient bytes that appear at a layer's backward (reverse order: its last reader)
        ends = [0] * (n + 1)  # ... and go once the layer that made the value is done
        for producer, reader, per_sample in self.grad_values.values():
            starts[reader] += per_sample * batch
            ends[producer] += per_sample * batch
        saved_before = [0] * (n + 1)
        for i, name in enumerate(names):
            saved_before[i + 1] = saved_before[i] + self.layers[name].at(batch)
        graph = self.network.graph
        nbytes = _itemsize(self.network)
        params_after = 0
        live_grads = starts[n]
        steady = self.weights + self.master_weights + self.optimizer_state
        best, best_layer = -1, None
        for i in range(n - 1, -1, -1):
            node = graph.nodes[names[i]]
            params_after += node.params * nbytes
            live_grads += starts[i]
            live = steady + params_after + saved_before[i + 1] + live_grads
            if live > best:
                best, best_layer = live, node.name
            live_grads -= ends[i]
        return max(best, steady), best_layer


def _itemsize(network) -> int:
    from ..analysis import DTYPE_BYTES

    return DTYPE_BYTES[network.dtype]


def plan_training(network, optimizer: str = "adam", device: str = "cuda", master: bool = False) -> TrainingPlan:
    """The walk over the layers (`_Storages`), and the parameters' share: weights, gradients, optimiser state."""
    walk = _Storages(network, device)
    order = [node for node in network.graph if not node.failed]
    for node in order:
        walk.layer(node)
    params = sum(node.params for node in order)
    tensors = sum(_param_tensors(node, network.graph) for node in order)
    nbytes = _itemsize(network)
    moments = MOMENTS[optimizer] * params * (MASTER_BYTES if master else nbytes)
    return TrainingPlan(
        network=network,
        optimizer=optimizer,
        device=device,
        weights=(params + sum(node.buffers for node in order)) * nbytes,
        master_weights=params * MASTER_BYTES if master else 0,
        gradients=params * nbytes,
        optimizer_state=moments + (STEP_BYTES * tensors if optimizer in ("adam", "adamw") else 0),
        layers=walk.layers,
        grad_values=walk.gradients(order),
    )


class _Storages:
    """One walk of the layers in order, following the storage every value lives in.

    A layer's result is a new storage, or its input's when it is a view or an activation
    computed in place; a `-> act` adds the activation's own (unless in place). What a layer's
    rule (`Op.training`) names is counted once, at the first layer that keeps it.
    """

    def __init__(self, network, device: str):
        from ..codegen.torch_target import in_place

        self.graph = network.graph
        self.device = device
        self.nbytes = _itemsize(network)
        self.overwrites = in_place(network)
        self.storage: dict[str, str] = {}  # value -> the storage it lives in
        self.roots: dict[str, str] = {}  # value -> the value it is a view of (itself when it is not a view)
        self.sizes: dict[str, Bytes] = {}  # storage -> its size
        self.needs_grad: dict[str, bool] = {}
        self.kept: set[str] = set()
        self.layers: dict[str, Bytes] = {}  # layer -> what it is the first to keep
        self.made: list[str] = []  # the values with a gradient of their own (not views)

    def new(self, key: str, elements: int, per_sample: bool = True, itemsize: int | None = None) -> str:
        size = elements * (itemsize or self.nbytes)
        self.sizes[key] = Bytes(size, 0) if per_sample else Bytes(0, size)
        return key

    def layer(self, node) -> None:
        self.layers[node.name] = Bytes()
        if not node.inputs:  # an input, or a learned `param`: a parameter, counted with the weights
            itemsize = INT64 if getattr(node.shape, "vocab", None) is not None else None  # token ids
            self.storage[node.name] = self.roots[node.name] = self.new(node.name, node.activations, itemsize=itemsize)
            self.needs_grad[node.name] = node.op != "input"
            return
        grads = tuple(self.needs_grad[src] for src in node.inputs)
        needs = self.needs_grad[node.name] = any(grads) or node.params > 0
        op = OPS[node.op]
        # in place: an activation layer on its input, or a `-> act` on its layer's new tensor (never both)
        in_place = node.name in self.overwrites
        ins = [self.graph.nodes[src].shape for src in node.inputs]
        producers = tuple(self.graph.nodes[src].op for src in node.inputs)
        context = TrainContext(grads, in_place and op.is_activation, self.device, producers)
        rule = op.training(node, ins, node.shape, context)
        self.roots[node.name] = self.roots[node.inputs[0]] if rule.view else node.name
        if rule.view or (in_place and op.is_activation):
            result = self.storage[node.inputs[0]]
        else:
            result = self.new(node.name, rule.stored or node.activations)  # none per sample for one the batch shares
        if needs:
            self.keep(node, rule.saves, [self.storage[src] for src in node.inputs], result)
            if not rule.view:
                self.made.append(node.name)
        self.storage[node.name] = result
        if node.activation is not None and node.activation[0] != "identity":
            self.activation(node, result, in_place and not op.is_activation)

    def activation(self, node, result: str, in_place: bool) -> None:
        """A `-> act`: its own storage unless in place, and what it keeps, at its layer."""
        name = node.activation[0]
        needs = self.needs_grad[node.name]
        act = OPS[name].training(node, [node.shape], node.shape, TrainContext((needs,), in_place, self.device))
        if not (act.view or in_place):
            self.storage[node.name] = self.new(f"{node.name}->{name}", prod(node.shape))
        if needs:
            self.keep(node, act.saves, [result], self.storage[node.name], "->")

    def keep(self, node, saves, inputs: list[str], output: str, tag: str = "") -> None:
        """Count the storages `saves` name that no earlier layer kept, at this layer."""
        for k, saved in enumerate(saves):
            if saved.kind == "input":
                key = inputs[saved.index]
            elif saved.kind == "output":
                key = output
            else:
                key = self.new(f"{node.name}{tag}#{k}", saved.elements, saved.per_sample, saved.itemsize)
            if key not in self.kept:
                self.kept.add(key)
                self.layers[node.name] += self.sizes[key]

    def gradients(self, order) -> dict[str, tuple[int, int, int]]:
        """Each value with a gradient of its own: (its layer's position, its last reader's, or past the
        last layer for an output; bytes per sample). A view's readers read the value it is a view of."""
        position = {node.name: i for i, node in enumerate(order)}
        last = {name: position[name] for name in self.made}
        for node in order:
            for src in node.inputs:
                root = self.roots[src]
                if root in last:
                    last[root] = max(last[root], position[node.name])
        for node in self.graph.outputs:
            if self.roots[node.name] in last:
                last[self.roots[node.name]] = len(order)
        return {name: (position[name], last[name], self.graph.nodes[name].activations * self.nbytes) for name in last}


def _param_tensors(node, graph) -> int:
    """How many parameter tensors the layer has (the arrays of its state_dict that are not buffers)."""
    if not node.params:
        return 0
    ins = [graph.nodes[src].shape for src in node.inputs]
    return sum(name not in BUFFER_ARRAYS for name, _ in OPS[node.op].numpy_state(node, ins, _NoValues()))


class _NoValues:
    """An initialiser for Op.numpy_state when only the names of the arrays are wanted."""

    def weight(self, shape):
        return None

    def bias(self, size, weight_shape):
        return None

    def inner(self, bias, shape, weight_shape, own):
        return None


@dataclass(frozen=True)
class Fit:
    """The largest batches that fit in `memory` bytes: for training (weights, gradients, optimiser state and
    what autograd keeps) and for inference (weights and the peak activation memory)."""

    memory: int
    training: TrainingMemory  # at the largest batch that fits, or at batch 1 when none does (training_batch 0)
    training_batch: int
    peak_batch: int  # the largest batch whose backward peak (the model's) fits too: at most training_batch
    inference_batch: int
    inference_bytes: int  # weights and peak activations at inference_batch (at 1 when it is 0)

    @property
    def dominant(self) -> str:
        """What takes most of the training memory: `activations` (saved for backward) or `weights`
        (with their gradients and optimiser state)."""
        t = self.training
        return "activations" if t.saved > t.weights + t.master_weights + t.gradients + t.optimizer_state else "weights"

    def as_dict(self) -> dict:
        return {
            "memory": self.memory,
            "training_batch": self.training_batch,
            "peak_batch": self.peak_batch,
            "inference_batch": self.inference_batch,
            "inference_bytes": self.inference_bytes,
            "dominant": self.dominant,
            "training": self.training.as_dict(),
        }


def fit(network, memory: int, optimizer: str = "adam", device: str = "cuda", master: bool = False) -> Fit:
    """Every part of the total is a + b x batch, so the largest batch is one division (capped at MAX_SIZE
    when nothing grows with the batch); the backward peak, a maximum over layers, is bisected below it."""
    plan = plan_training(network, optimizer, device, master)
    training_batch = _largest(memory - plan.fixed, plan.saved.per_sample)
    low, high = 0, training_batch  # the peak grows with the batch: bisect for the last that fits
    while low < high:
        middle = (low + high + 1) // 2
        low, high = (middle, high) if plan.peak(middle)[0] <= memory else (low, middle - 1)
    t = network.totals
    peak_per_sample = t.peak_activation_bytes // network.batch
    weights = t.param_bytes + t.buffer_bytes
    inference_batch = _largest(memory - weights, peak_per_sample)
    return Fit(
        memory=memory,
        training=plan.at(max(training_batch, 1)),
        training_batch=training_batch,
        peak_batch=low,
        inference_batch=inference_batch,
        inference_bytes=weights + peak_per_sample * max(inference_batch, 1),
    )


def _largest(room: int, per_sample: int) -> int:
    """The most samples of `per_sample` bytes in `room` bytes; 0 when not one fits."""
    from ..ops.base import MAX_SIZE

    if room < per_sample or room < 0:
        return 0
    return MAX_SIZE if per_sample == 0 else min(room // per_sample, MAX_SIZE)
