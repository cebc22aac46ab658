"""Compile a spec: parse, expand, run the passes, total the figures.

`Network` is the analysed result the table, the code generators and the
diagrams read; it holds figures only, nothing about how they are shown.
"""

from __future__ import annotations

import contextlib
import gc
from dataclasses import dataclass, field
from pathlib import Path

from . import arguments
from .diagnostics import ArchError, Diagnostic, Reporter, visible
from .expand import MAX_FILE_BYTES, Expander, read_bytes, read_source, reason, resolve
from .graph import Graph, Node
from .passes import count_costs, find_unused, infer_shapes, measure_memory, receptive_fields
from .syntax import parse

DTYPE_BYTES = {"float32": 4, "float16": 2, "bfloat16": 2, "int8": 1, "float64": 8}


@dataclass(frozen=True)
class Totals:
    params: int
    buffers: int
    macs: int
    flops: int
    elem_ops: int  # per sample, as MACs
    activations: int  # per sample
    param_bytes: int
    buffer_bytes: int
    activation_bytes: int  # x batch
    peak_activation_bytes: int  # x batch
    peak_layer: str | None

    def as_dict(self) -> dict:
        return {k: v for k, v in self.__dict__.items()}


@dataclass
class Network:
    name: str
    file: str
    graph: Graph
    totals: Totals
    batch: int
    dtype: str
    warnings: list[Diagnostic]
    sources: dict[str, str] = field(repr=False, default_factory=dict)

    def __repr__(self) -> str:
        """Short: the generated one printed the whole graph and every warning."""
        t = self.totals
        return (
            f"<Network {visible(self.name)} ({visible(self.file)}): {len(self.graph.nodes):,} layers, "
            f"{t.params:,} params, {t.macs:,} MACs>"
        )

    @property
    def layers(self) -> list[Node]:
        return list(self.graph)

    @property
    def inputs(self) -> dict[str, tuple[int, ...]]:
        return {n.name: n.shape for n in self.graph.inputs}

    def layer(self, name: str) -> Node:
        """The layer called `name` (a block's layers as `block.layer`, as the table names them)."""
        node = self.graph.nodes.get(arguments.text("name", name))
        if node is None:
            raise KeyError(f"{self.name} has no layer {name!r}; `net.layers` lists them")
        return node

    def table(self, format: str = "rich", **options) -> str:
        from .report import render_table

        return render_table(self, format, **options)

    def _repr_html_(self) -> str:
        """How a notebook shows a network: its layer table as HTML."""
        return self.table("html")

    def diagram(self, **options):
        """The diagram as a graphviz.Source (shown inline in Jupyter); options as `archc.diagram.to_dot`."""
        from .diagram import diagram

        return diagram(self, **options)

    def to_onnx(self, *, weights=None, seed: int = 0, flat: bool = False):
        """The network as an `onnx.ModelProto` (`archc.codegen.onnx_target.to_onnx`): the eval-mode graph
        of the generated PyTorch module, with `weights` by state_dict key, or the NumPy target's for `seed`."""
        from .codegen.onnx_target import to_onnx

        return to_onnx(self, weights=weights, seed=seed, flat=flat)

    def to_json(self) -> dict:
        from .report.table import network_json

        return network_json(self)

    def training_memory(
        self, optimizer: str = "adam", *, batch: int | None = None, device: str = "cuda", master: bool = False
    ):
        """Training memory of the generated PyTorch module at `batch` (default: the network's), in this
        network's dtype, with float32 master weights if `master`: a `archc.passes.training.TrainingMemory`
        (docs/language.md, section 12)."""
        from .passes.training import plan_training

        batch = arguments.whole("batch", batch, 1, optional=True) or self.batch
        return plan_training(self, *self._training_options(optimizer, device, master)).at(batch)

    def fit(self, memory: int | str, *, optimizer: str = "adam", device: str = "cuda", master: bool = False):
        """The largest batches that fit in `memory` (bytes, or a text such as "24GiB") for training and
        for inference, in this network's dtype: a `archc.passes.training.Fit`."""
        from .passes.training import fit

        size = arguments.memory("memory", memory)
        return fit(self, size, *self._training_options(optimizer, device, master))

    def _training_options(self, optimizer, device, master) -> tuple[str, str, bool]:
        from .passes.training import DEVICES, OPTIMIZERS

        arguments.choice("optimizer", optimizer, OPTIMIZERS)
        arguments.choice("device", device, DEVICES)
        arguments.flag("master", master)
        if self.dtype == "int8":
            raise ValueError("an int8 network cannot be trained: load it with a floating dtype, e.g. bfloat16")
        if master and self.dtype not in ("float16", "bfloat16"):
            raise ValueError(f"master weights are for a 16-bit dtype (float16, bfloat16), not {self.dtype}")
        return optimizer, device, master


def load(path: str | Path, *, batch: int | None = None, dtype: str = "float32", inputs: dict | None = None) -> Network:
    """Analyse the spec at `path`; raises ArchError listing every error found.

    A `.cfg` (Darknet), `.prototxt` (Caffe) or `.onnx` file is read by its importer (archc.importers);
    anything else is a `.arch` spec. `batch=None` takes the batch the file states (a Caffe
    input shape), else 1.
    """
    from .importers import BINARY, source_format

    path = arguments.path("path", path)
    checked = _check_options(batch, dtype, inputs)
    file = str(path)
    limit = BINARY.get(source_format(file))
    try:
        text = read_source(path) if limit is None else read_bytes(path, limit)
    except OSError as err:
        raise ArchError([Diagnostic("error", "E0102", f"cannot read `{file}`: {reason(err)}")]) from None
    if limit is not None:  # a binary model: its importer renders the text its diagnostics point into
        with _collector_paused():
            return _analyse(text, file, batch, dtype, checked, path.parent, None)
    return loads(text, file=file, batch=batch, dtype=dtype, inputs=inputs, base=path.parent)


def loads(
    text: str,
    file: str = "<string>",
    *,
    batch: int | None = None,
    dtype: str = "float32",
    inputs: dict | None = None,
    base: Path | None = None,
    format: str | None = None,
) -> Network:
    """Analyse spec text. `inputs` overrides input shapes by name (another resolution).

    `format` is `arch`, `darknet` or `caffe`; by default the extension of `file` decides.
    """
    arguments.text("text", text)
    arguments.text("file", file)
    inputs = _check_options(batch, dtype, inputs)
    base = arguments.path("base", base, optional=True)
    arguments.choice("format", format, FORMATS, optional=True)
    with _collector_paused():
        return _analyse(text, file, batch, dtype, inputs, base, format)


FORMATS = ("arch", "darknet", "caffe")


def _check_options(batch, dtype, inputs) -> dict[str, tuple[int, ...]] | None:
    """The options `load` and `loads` share, checked (archc.arguments); `inputs` with tuples of ints."""
    arguments.whole("batch", batch, 1, optional=True)
    arguments.choice("dtype", dtype, tuple(DTYPE_BYTES))
    return arguments.shapes("inputs", inputs)


@contextlib.contextmanager
def _collector_paused():
    """Pause Python's cyclic garbage collector while a spec is analysed.

    The analysis allocates tens of objects a layer and frees none of them until it is done,
    so the collector's generational passes keep re-scanning everything built so far: at
    10,000 layers that made the time per layer grow 2x (benchmarks/HISTORY.md). The
    collector's next pass after the analysis finds whatever it would have found during it.
    """
    if not gc.isenabled():
        yield
        return
    gc.disable()
    try:
        yield
    finally:
        gc.enable()


def _analyse(text, file, batch, dtype, inputs, base, format) -> Network:
    from .importers import import_source, source_format

    if isinstance(text, str):  # not a binary model's bytes
        if len(text) > MAX_FILE_BYTES:  # a character is at least a byte: as load() refuses the file
            message = f"cannot read `{file}`: larger than {MAX_FILE_BYTES // 2**20} MiB"
            raise ArchError([Diagnostic("error", "E0102", message, None, ["split the spec, or use `repeat`"])])
        text = text.removeprefix("\ufeff")  # a byte-order mark is no part of the text (read_source drops it too)
    kind = format or source_format(file)
    imported = None if kind == "arch" else import_source(text, file, inputs, kind)
    sources = {file: text if imported is None or imported.source is None else imported.source}
    if batch is None:
        batch = imported.batch if imported is not None and imported.batch else 1
    if batch < 1:
        raise ValueError("batch must be at least 1")
    # a syntax error stops here: nothing after it can be trusted
    module = parse(text, file) if imported is None else imported.module
    reporter = Reporter()
    if imported is not None:
        reporter.diagnostics.extend(imported.warnings)
    expander = Expander(reporter, sources, inputs)  # `in.channels` needs the input shapes while expanding
    if base is not None:
        with contextlib.suppress(OSError):  # a `file` that names no file cannot be imported back
            expander.loaded.add(str(resolve(Path(file))))  # a library importing this spec back adds nothing
    expander.load_imports(module, base if base is not None else Path.cwd())
    if len(module.networks) != 1:
        raise ArchError(reporter.diagnostics + [_network_count_error(module, file)], sources)
    graph = expander.network(module.networks[0], file)
    if reporter.has_errors:
        raise ArchError(reporter.diagnostics, sources)
    overrides = _check_overrides(graph, inputs or {}, sources)
    find_unused(graph, reporter)
    infer_shapes(graph, reporter, overrides, sources=sources if kind == "arch" else None)
    if reporter.has_errors:
        raise ArchError(reporter.diagnostics, sources)
    count_costs(graph, reporter)
    if reporter.has_errors:
        raise ArchError(reporter.diagnostics, sources)
    receptive_fields(graph)
    memory = measure_memory(graph, DTYPE_BYTES[dtype])
    nbytes = DTYPE_BYTES[dtype]
    params = sum(n.params for n in graph)
    buffers = sum(n.buffers for n in graph)
    macs = sum(n.macs for n in graph)
    totals = Totals(
        params=params,
        buffers=buffers,
        macs=macs,
        flops=2 * macs,
        elem_ops=sum(n.elem_ops for n in graph),
        activations=memory.activations,
        param_bytes=params * nbytes,
        buffer_bytes=buffers * nbytes,
        activation_bytes=memory.activation_bytes * batch,
        peak_activation_bytes=memory.peak_bytes * batch,
        peak_layer=memory.peak_layer,
    )
    return Network(graph.name, file, graph, totals, batch, dtype, reporter.warnings, sources)


def _network_count_error(module, file: str) -> Diagnostic:
    if not module.networks:
        return Diagnostic(
            "error",
            "E0104",
            f"`{file}` has no network",
            None,
            ["a spec needs one `network Name { ... }`; files that only hold blocks are imported"],
        )
    second = module.networks[1]
    return Diagnostic(
        "error",
        "E0104",
        "a spec holds one network, but this file has several",
        second.span,
        ["move each network into its own file; blocks can be shared with `import`"],
    )


def _check_overrides(graph: Graph, overrides: dict, sources) -> dict:
    names = [n.name for n in graph.inputs]
    for name in overrides:
        if name not in names:
            raise ArchError(
                [
                    Diagnostic(
                        "error",
                        "E0217",
                        f"the network has no input `{name}`",
                        None,
                        [f"its inputs are: {', '.join(names)}"],
                    )
                ],
                sources,
            )
    return overrides
