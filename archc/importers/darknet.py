"""Darknet `.cfg` files (pjreddie's and AlexeyAB's Darknet) as archc syntax trees.

A `.cfg` is a list of `[section]`s of `key=value` lines. `[net]` gives the
input; every later section is one layer, numbered from 0 as Darknet numbers
them (the numbers `[route]` and `[shortcut]` refer to). Each section becomes
one or two statements named after its type and number (`conv0` and `bn0`,
`maxpool1`, `route17`), so `archc table yolov3-tiny.cfg` lines up with the
table Darknet prints. docs/importers.md lists what each section becomes.

Darknet's own rules, exactly: `pad=1` pads size/2 on every side; a max
pool pads `padding` (default size-1) in total, size-1 // 2 before and the
rest after (so a 2x2 stride-1 pool keeps 13x13); a convolution with
`batch_normalize=1` has no bias of its own, its batch norm holds a scale
and a shift per filter; `[connected]` and `[softmax]` flatten what they
read; a `[shortcut]` keeps the shape of the layer before it and samples a
larger input (archc's `shortcut`).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from ..diagnostics import Span, source_lines
from ..expand import suggest
from ..ops.base import PadPair
from .common import BROKEN, Flat, Imported, NumberError, decimal, network_name, whole

# Darknet activation -> archc activation and its arguments; None: no activation ("linear").
ACTIVATIONS: dict[str, tuple[str, list] | None] = {
    "linear": None,
    "leaky": ("leaky_relu", [0.1]),
    "relu": ("relu", []),
    "logistic": ("sigmoid", []),
    "tanh": ("tanh", []),
    "elu": ("elu", []),
    "relu6": ("relu6", []),
    "swish": ("silu", []),
    "mish": ("mish", []),
    "gelu": ("gelu", []),
}
UNSUPPORTED_ACTIVATIONS = ("selu", "relie", "ramp", "plse", "stair", "hardtan", "lhtan", "loggy", "hard_mish")

# Keys that change nothing archc computes (training, data augmentation, detection decoding).
TRAINING = {
    "learning_rate", "stopbackward", "dontload", "dontloadscales", "train_only_bn", "burnin_update",
    "dont_update", "clip", "onlyforward", "flipped", "dot", "grad_centr", "stream", "wait_stream",
    "assisted_excitation", "bin_output",
}  # fmt: skip
NET_KEYS = {
    "batch", "subdivisions", "width", "height", "channels", "inputs", "momentum", "decay", "angle", "saturation",
    "exposure", "hue", "aspect", "learning_rate", "burn_in", "max_batches", "policy", "steps", "scales", "power",
    "min_crop", "max_crop", "flip", "mosaic", "mixup", "cutmix", "blur", "gaussian_noise", "letter_box", "adam",
    "B1", "B2", "eps", "gamma", "step", "seq_scales", "time_steps", "track", "augment_speed",
    "sequential_subdivisions", "try_fix_nan", "weights_reject_freq", "equidistant_point",
    "badlabels_rejection_percentage", "num_sigmas_reject_badlabels", "ema_alpha", "use_cuda_graph", "loss_scale",
    "dynamic_minibatch", "optimized_memory", "workspace_size_limit_MB", "mosaic_bound", "contrastive",
    "contrastive_jit_flip", "contrastive_color", "unsupervised", "label_smooth_eps", "resize_step", "attention",
    "adversarial_lr", "max_chart_loss", "learning_rate_min", "sgdr_cycle", "sgdr_mult", "show_receptive_field",
    "max", "random", "rescore", "jitter", "mask_scale",
}  # fmt: skip
HEAD_KEYS = {
    "mask", "anchors", "classes", "num", "jitter", "ignore_thresh", "truth_thresh", "random", "scale_x_y",
    "iou_thresh", "cls_normalizer", "iou_normalizer", "iou_loss", "nms_kind", "beta_nms", "max_delta", "max",
    "resize", "focal_loss", "label_smooth_eps", "objectness_smooth", "new_coords", "obj_normalizer",
    "delta_normalizer", "iou_thresh_kind", "show_details", "counters_per_class", "map", "track_history_size",
    "sim_thresh", "dets_for_track", "dets_for_show", "track_ciou_norm", "embedding_layer", "uc_normalizer",
    "yolo_point", "coords", "softmax", "log", "sqrt", "rescore", "thresh", "classfix", "absolute", "coord_scale",
    "object_scale", "noobject_scale", "mask_scale", "class_scale", "bias_match", "tree", "side", "forced", "reorg",
}  # fmt: skip

SECTION_ALIASES = {
    "conv": "convolutional", "network": "net", "conn": "connected", "max": "maxpool", "avg": "avgpool",
    "soft": "softmax", "normalization": "lrn", "local_avg": "local_avgpool", "silence": "empty",
    "reorg3d": "reorg", "Gaussian_yolo": "yolo",
}  # fmt: skip
UNSUPPORTED_SECTIONS = {
    "local": "a locally connected layer (unshared weights)",
    "crnn": "a recurrent layer",
    "rnn": "a recurrent layer",
    "gru": "a recurrent layer",
    "lstm": "a recurrent layer",
    "conv_lstm": "a recurrent layer",
    "history": "a recurrent layer",
    "scale_channels": "a channel-wise product of two layers",
    "sam": "an element-wise product of two layers",
    "implicit": "a learned constant",
    "contrastive": "a training loss",
}


# -- the file -----------------------------------------------------------------------------------


@dataclass
class Option:
    key: str
    value: str
    line: int
    col: int  # of the key
    end: int  # after the value
    value_col: int

    def span(self, file: str) -> Span:
        return Span(file, self.line, self.col, self.line, self.end)

    def value_span(self, file: str) -> Span:
        return Span(file, self.line, self.value_col, self.line, max(self.end, self.value_col + 1))


@dataclass
class Section:
    kind: str  # without brackets, aliases resolved
    written: str  # as written
    line: int
    col: int
    end: int
    options: dict[str, Option] = field(default_factory=dict)
    used: set[str] = field(default_factory=set)

    def span(self, file: str) -> Span:
        return Span(file, self.line, self.col, self.line, self.end)


HEADER = re.compile(r"\[\s*([^\]\s]*)\s*\]")


def read_cfg(text: str, file: str, flat: Flat) -> list[Section]:
    """The sections of a `.cfg`, as Darknet's read_cfg splits them; unreadable lines are E0401."""
    sections: list[Section] = []
    for number, raw in enumerate(source_lines(text), 1):
        code = raw.split("#", 1)[0].rstrip()  # archc also allows a comment after a value
        stripped = code.strip()
        if not stripped or stripped.startswith(";"):
            continue
        col = len(code) - len(code.lstrip()) + 1
        if stripped.startswith("["):
            match = HEADER.fullmatch(stripped)
            if not match or not match[1]:
                flat.error(
                    "E0401",
                    f"cannot read the section header `{stripped}`",
                    Span(file, number, col, number, col + len(stripped)),
                    ["a section header is a name in brackets on a line of its own, e.g. [convolutional]"],
                )
                continue
            written = match[1]
            kind = SECTION_ALIASES.get(written, written)
            sections.append(Section(kind, written, number, col, col + len(stripped)))
            continue
        key, sep, value = stripped.partition("=")
        where = Span(file, number, col, number, col + len(stripped))
        if not sep or not key.strip():
            flat.error(
                "E0401",
                f"cannot read `{stripped}`: a line of a .cfg is a [section], key=value or a comment",
                where,
                ["comments start with # or ;"],
            )
            continue
        if not sections:
            flat.error("E0401", f"`{key.strip()}` comes before the first [section]", where, ["start with [net]"])
            continue
        key = key.strip()
        value_col = col + code.strip().index("=") + 1
        value_col += len(code[value_col - 1 :]) - len(code[value_col - 1 :].lstrip())
        option = Option(key, re.sub(r"\s+", "", value), number, col, col + len(stripped), value_col)
        section = sections[-1]
        if key in section.options:
            flat.warn(
                "W0401",
                f"`{key}` is given twice in [{section.written}]; Darknet uses the first, and so does archc",
                option.span(file),
                [f"first given on line {section.options[key].line}"],
            )
            continue
        section.options[key] = option
    return sections


# -- values --------------------------------------------------------------------------------------


class _LayerError(Exception):
    pass


class Reader:
    """Typed access to one section's options; every key read is marked used."""

    def __init__(self, section: Section, file: str, flat: Flat):
        self.s, self.file, self.flat = section, file, flat

    def has(self, key: str) -> bool:
        return key in self.s.options

    def span(self, key: str | None = None) -> Span:
        if key is not None and key in self.s.options:
            return self.s.options[key].span(self.file)
        return self.s.span(self.file)

    def raw(self, key: str, default: str | None = None) -> str | None:
        self.s.used.add(key)
        option = self.s.options.get(key)
        return default if option is None else option.value

    def _bad(self, key: str, wanted: str, help=(), code: str = "E0403") -> _LayerError:
        option = self.s.options[key]
        self.flat.error(
            code,
            f"[{self.s.written}] {key} must be {wanted}, not `{option.value}`",
            option.value_span(self.file),
            help,
        )
        return _LayerError()

    def _number(self, key: str, convert, text: str, wanted: str | None = None):
        """`convert(text)` (common.whole or common.decimal); what it cannot take is reported at the value."""
        try:
            return convert(text)
        except NumberError as err:
            raise self._bad(key, wanted if wanted and err.code == "E0403" else err.wanted, err.help, err.code) from None

    def int(self, key: str, default: int, low: int | None = None) -> int:
        text = self.raw(key)
        if text is None:
            return default
        value = self._number(key, whole, text)
        if low is not None and value < low:
            raise self._bad(key, f"at least {low}")
        return value

    def float(self, key: str, default: float) -> float:
        text = self.raw(key)
        if text is None:
            return default
        return self._number(key, decimal, text)

    def ints(self, key: str) -> list[int] | None:
        text = self.raw(key)
        if text is None:
            return None
        items = [t for t in text.split(",") if t]
        if not items:
            raise self._bad(key, "a list of whole numbers such as -1, 8")
        return [self._number(key, whole, t, "a list of whole numbers such as -1, 8") for t in items]

    def unsupported(self, key: str, why: str, default=0) -> None:
        """E0405 when `key` is set to anything but its default (archc cannot represent it)."""
        text = self.raw(key)
        if text is None or text == str(default):
            return
        option = self.s.options[key]
        self.flat.error(
            "E0405", f"[{self.s.written}] {key}={option.value} is not supported: {why}", option.span(self.file)
        )
        raise _LayerError()


# -- the importer ---------------------------------------------------------------------------------


class _Importer:
    def __init__(self, text: str, file: str):
        self.text, self.file = text, file
        self.flat = Flat(file)
        self.outputs: list[str | None] = []  # the archc layer holding each section's output
        self.flat_kind: list[str] = []  # "map", "point" (C x 1 x 1) or "vector" per section
        self.heads: list[str] = []
        self.last: str | None = None
        self.last_kind = "map"

    def run(self) -> Imported:
        flat = self.flat
        sections = read_cfg(self.text, self.file, flat)
        if not sections:
            flat.error("E0404", f"`{self.file}` has no sections", Span(self.file, 1, 1, 1, 2), ["start with [net]"])
            flat.fail(self.text)
        first = sections[0]
        start = Span(self.file, first.line, first.col, first.line, first.end)
        if first.kind != "net":
            flat.error(
                "E0404",
                f"the first section is [{first.written}], but Darknet needs [net] first: it gives the input size",
                first.span(self.file),
                ["add [net] with width=, height= and channels= before the first layer"],
            )
            flat.fail(self.text)
        self.net(first)
        for index, section in enumerate(sections[1:]):
            self.section(index, section)
        if self.heads:
            tail = [self.last] if self.last and self.last not in self.heads and self._is_last_unread() else []
            flat.outputs = [*self.heads, *tail]
            if flat.stmts and flat.outputs == [flat.stmts[-1].name]:
                flat.outputs = None
        if flat.has_errors:
            flat.fail(self.text)
        stem = self.file.replace("\\", "/").rsplit("/", 1)[-1].rsplit(".", 1)[0]
        return flat.result(network_name(stem), start)

    def _is_last_unread(self) -> bool:
        reads = {ref.parts[0] for stmt in self.flat.stmts for ref in stmt.inputs or ()}
        return self.last not in reads

    # -- sections ----------------------------------------------------------------------------

    def net(self, section: Section) -> None:
        r = Reader(section, self.file, self.flat)
        try:
            width, height, channels = r.int("width", 0, 0), r.int("height", 0, 0), r.int("channels", 0, 0)
            inputs = r.int("inputs", width * height * channels, 0)
        except _LayerError:
            return
        for key in section.options:
            if key not in NET_KEYS:
                self._unknown(section, key)
        span = section.span(self.file)
        if width and height and channels:
            shape, self.last_kind = (channels, height, width), "map"
        elif inputs:
            shape, self.last_kind = (inputs,), "vector"
        else:
            self.flat.error(
                "E0404",
                "[net] gives no input size",
                span,
                ["set width=, height= and channels= (or inputs= for a vector)"],
            )
            return
        self.flat.header.append(f"[net] {_settings(section, ('width', 'height', 'channels', 'inputs'))}")
        self.last = self.flat.add("input", "image" if len(shape) == 3 else "features", [], [(None, shape, span)], span)

    def section(self, index: int, section: Section) -> None:
        handler = getattr(self, "s_" + section.kind, None)
        r = Reader(section, self.file, self.flat)
        out, kind, done = BROKEN, self.last_kind, False
        if handler is None:
            self._unsupported(section)
        else:
            try:
                out, kind = handler(index, section, r)
                done = True
            except _LayerError:
                out = BROKEN
        self.outputs.append(out)
        self.flat_kind.append(kind)
        self.last, self.last_kind = out, kind
        for key in section.options if done else ():
            if key not in section.used and key not in TRAINING:
                self._unknown(section, key)

    def _unknown(self, section: Section, key: str) -> None:
        option = section.options[key]
        self.flat.warn(
            "W0401",
            f"[{section.written}] has no setting `{key}` that archc knows; it is ignored (Darknet ignores it too)",
            option.span(self.file),
            suggest(key, section.used | NET_KEYS if section.kind == "net" else section.used),
        )

    def _unsupported(self, section: Section) -> None:
        what = UNSUPPORTED_SECTIONS.get(section.kind)
        known = sorted({*HANDLED, *SECTION_ALIASES})
        self.flat.error(
            "E0402",
            f"[{section.written}] is not supported" + (f": it is {what}, which archc has no layer for" if what else ""),
            section.span(self.file),
            ([] if what else suggest(section.written, known))
            + [f"archc reads: {', '.join(f'[{k}]' for k in HANDLED)}"],
        )

    def _activation(self, r: Reader, default: str):
        name = r.raw("activation", default)
        if name in ACTIVATIONS:
            found = ACTIVATIONS[name]
            return None if found is None else (found[0], found[1], r.span("activation"))
        if name in UNSUPPORTED_ACTIVATIONS:
            r.flat.error(
                "E0405",
                f"activation={name} is not supported: archc has no such activation",
                r.span("activation"),
                [f"archc's Darknet activations: {', '.join(ACTIVATIONS)}"],
            )
        else:
            r.flat.error(
                "E0403",
                f"unknown activation `{name}`",
                r.s.options["activation"].value_span(self.file),
                suggest(name, ACTIVATIONS) + [f"Darknet's activations: {', '.join(ACTIVATIONS)}"],
            )
        raise _LayerError()

    def _ref(self, index: int, r: Reader, key: str, value: int) -> str | None:
        """The layer a `layers=` or `from=` index names: relative when negative, absolute otherwise."""
        target = index + value if value < 0 else value
        if not 0 <= target < index:
            where = "itself or a later layer" if target >= index else "a layer before the first"
            r.flat.error(
                "E0406",
                f"[{r.s.written}] {index}: {key} {value} refers to {where} (layer {target})",
                r.s.options[key].value_span(self.file),
                [f"this is layer {index}: a negative number counts back from it, a positive one is a layer index"],
            )
            raise _LayerError()
        return self.outputs[target]

    def _flatten(self, index: int, span: Span, kind: str) -> str:
        """What a layer that reads its input as one vector reads: a `flatten` first unless it is one."""
        if kind == "vector":
            return self.last
        return self.flat.add("flatten", self.flat.unique(f"flatten{index}"), [self.last], [], span)

    def s_convolutional(self, index: int, section: Section, r: Reader):
        filters = r.int("filters", 1, 1)
        size = r.int("size", 1, 1)
        stride = r.int("stride", 1, 1)
        sx, sy = r.int("stride_x", -1), r.int("stride_y", -1)
        stride_hw = (sy if sy >= 1 else stride, sx if sx >= 1 else stride)
        groups = r.int("groups", 1, 1)
        dilation = r.int("dilation", 1, 1)
        padding = size // 2 if r.int("pad", 0) else r.int("padding", 0, 0)
        bn = r.int("batch_normalize", 0) or r.int("cbn", 0)
        for key, why in (
            ("antialiasing", "archc has no blur pool"),
            ("binary", "archc has no binary convolution"),
            ("xnor", "archc has no XNOR convolution"),
            ("coordconv", "archc has no coordinate channels"),
            ("sway", "archc has no deformable convolution"),
            ("rotate", "archc has no deformable convolution"),
            ("stretch", "archc has no deformable convolution"),
            ("stretch_sway", "archc has no deformable convolution"),
        ):
            r.unsupported(key, why)
        if r.raw("share_index") is not None:
            r.unsupported("share_index", "archc has no weight sharing between layers", default="")
        if dilation > 1 and size > 1:
            r.flat.error(
                "E0405",
                "dilation is not supported: Darknet sizes the output by the undilated kernel, archc by the dilated",
                r.span("dilation"),
            )
            raise _LayerError()
        act = self._activation(r, "logistic")
        span = section.span(self.file)
        args: list = [(None, filters, r.span("filters")), (None, (size, size), r.span("size"))]
        if stride_hw != (1, 1):
            args.append(("stride", stride_hw[0] if stride_hw[0] == stride_hw[1] else stride_hw, r.span("stride")))
        if padding:
            args.append(("pad", padding, r.span("pad") if r.has("pad") else r.span("padding")))
        if groups > 1:
            args.append(("groups", groups, r.span("groups")))
        flat = self.flat
        if bn:
            conv = flat.add("conv", flat.unique(f"conv{index}"), [self.last], [*args, ("bias", False, span)], span)
            out = flat.add("bn", flat.unique(f"bn{index}"), [conv], [], r.span("batch_normalize"), act, unit=False)
        else:
            out = flat.add("conv", flat.unique(f"conv{index}"), [self.last], args, span, act)
        return out, "map"

    def s_connected(self, index: int, section: Section, r: Reader):
        output = r.int("output", 1, 1)
        bn = r.int("batch_normalize", 0)
        act = self._activation(r, "logistic")
        span = section.span(self.file)
        flat = self.flat
        source = self._flatten(index, span, self.last_kind)
        unit = source == self.last
        if bn:
            fc = flat.add("dense", flat.unique(f"fc{index}"), [source], [(None, output, r.span("output"))], span,
                          unit=unit)  # fmt: skip
            out = flat.add("bn", flat.unique(f"bn{index}"), [fc], [], r.span("batch_normalize"), act, unit=False)
        else:
            out = flat.add("dense", flat.unique(f"fc{index}"), [source], [(None, output, r.span("output"))], span, act,
                           unit=unit)  # fmt: skip
        if not unit and out is not BROKEN:
            flat.name_unit(f"fc{index}")
        return out, "vector"

    def _window(self, r: Reader, default_size: int):
        stride = r.int("stride", 1, 1)
        sx, sy = r.int("stride_x", stride, 1), r.int("stride_y", stride, 1)
        size = r.int("size", default_size if default_size else stride, 1)
        padding = r.int("padding", size - 1, 0)
        before = padding // 2  # Darknet starts its windows at -padding/2 and sizes by the total
        pads = PadPair((before, padding - before))
        return size, (sy, sx), pads

    def _pool_args(self, r: Reader, size, stride, pads):
        args: list = [(None, (size, size), r.span("size"))]
        if stride != (size, size):
            args.append(("stride", stride[0] if stride[0] == stride[1] else stride, r.span("stride")))
        if pads != (0, 0):
            pad = pads[0] if pads[0] == pads[1] else (pads, pads)
            args.append(("pad", pad, r.span("padding")))
        return args

    def s_maxpool(self, index: int, section: Section, r: Reader):
        size, stride, pads = self._window(r, 0)
        r.unsupported("maxpool_depth", "archc has no max pool across channels")
        r.unsupported("antialiasing", "archc has no blur pool")
        r.raw("out_channels")
        r.raw("maxpool_zero_nonmax")
        span = section.span(self.file)
        out = self.flat.add("maxpool", self.flat.unique(f"maxpool{index}"), [self.last],
                            self._pool_args(r, size, stride, pads), span)  # fmt: skip
        return out, "map"

    def s_local_avgpool(self, index: int, section: Section, r: Reader):
        size, stride, pads = self._window(r, 0)
        span = section.span(self.file)
        args = self._pool_args(r, size, stride, pads)
        if pads != (0, 0):
            args.append(("count_pad", False, span))  # Darknet divides by the pixels inside the input
        out = self.flat.add("avgpool", self.flat.unique(f"avgpool{index}"), [self.last], args, span)
        return out, "map"

    def s_avgpool(self, index: int, section: Section, r: Reader):
        span = section.span(self.file)
        return self.flat.add("globalavgpool", self.flat.unique(f"avgpool{index}"), [self.last], [], span), "point"

    def s_route(self, index: int, section: Section, r: Reader):
        if not r.has("layers"):
            r.flat.error("E0404", "[route] needs `layers`", section.span(self.file), ["e.g. layers = -1, 8"])
            raise _LayerError()
        values = r.ints("layers")
        groups, group_id = r.int("groups", 1, 1), r.int("group_id", 0, 0)
        if group_id >= groups:
            raise r._bad("group_id", f"below groups={groups}")
        sources = [self._ref(index, r, "layers", v) for v in values]
        if any(s is BROKEN for s in sources):
            return BROKEN, "map"
        kinds = [self.flat_kind[index + v if v < 0 else v] for v in values]
        span = r.span("layers")
        flat, name = self.flat, f"route{index}"
        if groups > 1:
            parts = []
            for k, source in enumerate(sources):
                part_name = flat.unique(name if len(sources) == 1 else f"{name}_{k}")
                args = [(None, groups, r.span("groups")), ("index", group_id, r.span("group_id"))]
                parts.append(flat.add("chunk", part_name, [source], args, span, unit=k == 0))
            if len(parts) == 1:
                return parts[0], kinds[0]
            return flat.add("concat", flat.unique(name), parts, [], span, unit=False), kinds[0]
        op = "identity" if len(sources) == 1 else "concat"
        return flat.add(op, flat.unique(name), sources, [], span), kinds[0]

    def s_shortcut(self, index: int, section: Section, r: Reader):
        if not r.has("from"):
            r.flat.error("E0404", "[shortcut] needs `from`", section.span(self.file), ["e.g. from = -3"])
            raise _LayerError()
        values = r.ints("from")
        r.unsupported("weights_type", "archc's shortcut has no weights", default="none")
        r.unsupported("weights_normalization", "archc's shortcut has no weights", default="none")
        for key in ("alpha", "beta"):
            if r.float(key, 1.0) != 1.0:
                r.flat.error("E0405", f"[shortcut] {key} other than 1 is not supported", r.span(key))
                raise _LayerError()
        sources = [self._ref(index, r, "from", v) for v in values]
        if any(s is BROKEN for s in sources):
            return BROKEN, self.last_kind
        act = self._activation(r, "linear")
        span = r.span("from")
        out = self.flat.add("shortcut", self.flat.unique(f"shortcut{index}"), [self.last, *sources], [], span, act)
        return out, self.last_kind

    def s_upsample(self, index: int, section: Section, r: Reader):
        stride = r.int("stride", 2)
        if stride < 1:
            r.flat.error(
                "E0405", "[upsample] with a negative stride (a downsampling) is not supported", r.span("stride")
            )
            raise _LayerError()
        if r.float("scale", 1.0) != 1.0:
            r.flat.error("E0405", "[upsample] scale other than 1 (a multiplication) is not supported", r.span("scale"))
            raise _LayerError()
        span = section.span(self.file)
        args = [(None, stride, r.span("stride"))] if stride != 2 else []
        return self.flat.add("upsample", self.flat.unique(f"upsample{index}"), [self.last], args, span), "map"

    def s_reorg(self, index: int, section: Section, r: Reader):
        stride = r.int("stride", 1, 1)
        r.unsupported("reverse", "archc has no depth-to-space layer")
        span = section.span(self.file)
        self.flat.note(
            f"reorg{index}: Darknet's [reorg] has these shapes and figures, but orders the moved values its own way"
        )
        args = [(None, stride, r.span("stride"))]
        return self.flat.add("space_to_depth", self.flat.unique(f"reorg{index}"), [self.last], args, span), "map"

    def s_dropout(self, index: int, section: Section, r: Reader):
        p = r.float("probability", 0.2)
        r.unsupported("dropblock", "archc has no DropBlock")
        r.raw("dropblock_size_rel")
        r.raw("dropblock_size_abs")
        if not 0 <= p < 1:
            raise r._bad("probability", "in [0, 1)")
        span = section.span(self.file)
        args = [(None, p, r.span("probability"))] if p != 0.5 else []
        return self.flat.add("dropout", self.flat.unique(f"dropout{index}"), [self.last], args, span), self.last_kind

    def s_softmax(self, index: int, section: Section, r: Reader):
        r.unsupported("groups", "archc's softmax normalises over all the values Darknet's groups=1 does", default=1)
        if r.float("temperature", 1.0) != 1.0:
            r.flat.error("E0405", "[softmax] temperature other than 1 is not supported", r.span("temperature"))
            raise _LayerError()
        if r.raw("tree") is not None:
            r.flat.error("E0405", "[softmax] tree (a hierarchical softmax) is not supported", r.span("tree"))
            raise _LayerError()
        r.raw("spatial")
        r.raw("noloss")
        span = section.span(self.file)
        kind = self.last_kind
        source = self.last if kind in ("vector", "point") else self._flatten(index, span, kind)
        unit = source == self.last
        out = self.flat.add("softmax", self.flat.unique(f"softmax{index}"), [source], [], span, unit=unit)
        if not unit and out is not BROKEN:
            self.flat.name_unit(out)
        return out, "vector" if kind == "map" else kind

    def s_cost(self, index: int, section: Section, r: Reader):
        r.raw("type")
        r.raw("scale")
        r.raw("ratio")
        self.flat.note(f"[cost] {index} (line {section.line}): the training loss, no layer at inference")
        return self.last, self.last_kind

    def _head(self, index: int, section: Section, r: Reader, what: str):
        for key in section.options:
            if key in HEAD_KEYS:
                r.raw(key)
        settings = _settings(section, ("classes", "num", "mask", "anchors", "coords", "softmax", "scale_x_y"))
        name = self.flat.unique(f"{section.kind.lower()}{index}")
        self.flat.note(f"{name}: [{section.written}] {what}, decoded outside the network: {settings}")
        out = self.flat.add("identity", name, [self.last], [], section.span(self.file))
        self.heads.append(out)
        return out, self.last_kind

    def s_yolo(self, index: int, section: Section, r: Reader):
        return self._head(index, section, r, "YOLO detection head")

    def s_region(self, index: int, section: Section, r: Reader):
        return self._head(index, section, r, "YOLOv2 region head")

    def s_detection(self, index: int, section: Section, r: Reader):
        return self._head(index, section, r, "YOLOv1 detection head")

    def s_crop(self, index: int, section: Section, r: Reader):
        height, width = r.int("crop_height", 1, 1), r.int("crop_width", 1, 1)
        for key in ("flip", "angle", "saturation", "exposure", "shift", "noadjust"):
            r.raw(key)
        span = section.span(self.file)
        self.flat.note(
            f"crop{index}: Darknet's [crop] cuts the centre at inference (and maps values to [-1, 1] unless noadjust=1)"
        )
        args = [(None, (height, width), r.span("crop_height"))]
        return self.flat.add("crop", self.flat.unique(f"crop{index}"), [self.last], args, span), "map"

    def s_batchnorm(self, index: int, section: Section, r: Reader):
        span = section.span(self.file)
        return self.flat.add("bn", self.flat.unique(f"bn{index}"), [self.last], [], span), self.last_kind

    def s_activation(self, index: int, section: Section, r: Reader):
        act = self._activation(r, "linear")
        span = section.span(self.file)
        if act is None:
            return self.flat.add("identity", self.flat.unique(f"linear{index}"), [self.last], [], span), self.last_kind
        name, values, where = act
        args = [(None, v, where) for v in values]
        return self.flat.add(name, self.flat.unique(f"{name}{index}"), [self.last], args, span), self.last_kind

    def s_lrn(self, index: int, section: Section, r: Reader):
        size = r.int("size", 5, 1)
        alpha, beta, kappa = r.float("alpha", 0.0001), r.float("beta", 0.75), r.float("kappa", 1.0)
        span = section.span(self.file)
        args = [(None, size, r.span("size")), ("alpha", alpha, r.span("alpha")), ("beta", beta, r.span("beta"))]
        args.append(("k", kappa, r.span("kappa")))
        return self.flat.add("lrn", self.flat.unique(f"lrn{index}"), [self.last], args, span), "map"

    def s_empty(self, index: int, section: Section, r: Reader):
        self.flat.note(f"[{section.written}] {index} (line {section.line}): passes its input on, no layer")
        return self.last, self.last_kind


HANDLED = sorted(name[2:] for name in vars(_Importer) if name.startswith("s_") and callable(getattr(_Importer, name)))


def _settings(section: Section, keys) -> str:
    return ", ".join(f"{k}={section.options[k].value}" for k in keys if k in section.options)


def import_darknet(text: str, file: str) -> Imported:
    """The `.cfg` text as a flat archc network; raises ArchError with every problem found."""
    return _Importer(text, file).run()
