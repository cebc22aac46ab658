"""The `archc` command.

Exit status: 0 when the spec is valid, 1 when it has errors (printed to
stderr as file:line:col diagnostics), 2 for usage errors, 130 after Ctrl-C
(SIGINT) and 143 after SIGTERM. `archc explain CODE` needs no spec: it prints
what a diagnostic code means.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import signal
import stat
import sys
import threading

from .diagnostics import ArchError, render_all, use_color, visible

DTYPES = ("float32", "float16", "bfloat16", "int8", "float64")
OPTIMIZERS = ("sgd", "momentum", "adam", "adamw")  # archc.passes.training.OPTIMIZERS, without importing it
FORMATS = ("rich", "markdown", "html", "csv", "json")


class UsageError(Exception):
    pass


class Interrupted(BaseException):
    """SIGINT or SIGTERM: the command stops where it is (a BaseException, as KeyboardInterrupt, so that no
    `except Exception` swallows it); `status` is the shell's 128 + the signal's number."""

    def __init__(self, signum: int):
        super().__init__(signum)
        self.status = 128 + signum


def _shape(text: str) -> tuple[int, ...]:
    try:
        values = tuple(int(v) for v in text.lower().split("x"))
    except ValueError:
        raise UsageError(f"`{text}` is not a shape; write it like 3x224x224") from None
    if not values or min(values) < 1:
        raise UsageError(f"`{text}` is not a shape; sizes must be at least 1")
    return values


def _input_overrides(items: list[str]) -> dict:
    """`--input image=3x227x227`; the name may be left out when the network has one input."""
    out = {}
    for item in items or ():
        name, sep, shape = item.rpartition("=")
        out[name if sep else None] = _shape(shape)
    return out


def _whole_number(text: str, low: int, wanted: str) -> int:
    """An argparse type's value: a whole number of at least `low` (argparse names the option)."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if value < low:
        raise argparse.ArgumentTypeError(f"must be {wanted}")
    return value


def _positive(text: str) -> int:
    return _whole_number(text, 1, "at least 1")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="archc", description="A declarative architecture compiler for neural networks."
    )
    parser.add_argument("--version", action="version", version=f"archc {_version()}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True

    def command(name: str, **options) -> argparse.ArgumentParser:
        p = sub.add_parser(name, **options)
        p.set_defaults(command_parser=p)  # a usage error found later prints this command's usage
        return p

    def common(p):
        p.add_argument("spec", help="a .arch spec, or a Darknet .cfg or Caffe .prototxt file")
        p.add_argument(
            "--input",
            action="append",
            metavar="NAME=CxHxW",
            help="analyse with another input shape (repeatable; NAME may be left out for one input)",
        )

    def byte_figures(p):
        """Only for the commands that print byte figures (codegen and diagram print none)."""
        p.add_argument(
            "--batch",
            type=_positive,
            default=None,
            help="batch size for the byte figures (default 1, or the batch a Caffe file's input states)",
        )
        p.add_argument("--dtype", choices=DTYPES, default="float32", help="element type for the byte figures")

    def training_options(p):
        """How the network trains, for `table --train` and `fit`."""
        p.add_argument("--optimizer", choices=OPTIMIZERS, default="adam", help="whose state to count (momentum: SGD's)")
        p.add_argument(
            "--device",
            choices=("cuda", "cpu"),
            default="cuda",
            help="where it trains: torch's dropout keeps a 1-byte mask on the GPU, a full-width one on the CPU",
        )
        p.add_argument(
            "--master-weights",
            action="store_true",
            help="mixed precision: float32 master weights and optimiser state, the rest in --dtype (16-bit)",
        )

    check = command("check", help="parse and analyse a spec; report errors and warnings")
    common(check)
    byte_figures(check)
    check.add_argument("--format", choices=("text", "json"), default="text", help="diagnostics as text or JSON")

    table = command("table", help="print the per-layer table")
    common(table)
    byte_figures(table)
    table.add_argument("--format", choices=FORMATS, default="rich")
    table.add_argument(
        "--layout",
        choices=("chw", "hwc"),
        default="chw",
        help="shape order: channels first (default) or height-first, as TensorFlow tables",
    )
    table.add_argument(
        "--columns",
        metavar="A,B,...",
        help="columns to show: name,type,filter,stride,padding,output,size,activation,params,params_percent,macs,"
        "macs_percent,memory,rf,inputs,elem_ops (and bflops, caffe_memory: see --convention)",
    )
    table.add_argument(
        "--convention",
        choices=("darknet", "caffe"),
        help="add the figures as that tool prints them: Darknet's BFLOPs, Caffe's memory required for data",
    )
    table.add_argument(
        "--train",
        action="store_true",
        help="add training memory: the bytes each layer keeps for backward, gradients, optimiser state, the peak",
    )
    table.add_argument(
        "--depth",
        type=_depth,
        default=None,
        metavar="N",
        help="fold blocks nested deeper than N into one row each, with their sums (as diagram --depth)",
    )
    training_options(table)
    fit = command("fit", help="the largest batch that fits in a given memory, for training and for inference")
    common(fit)
    fit.add_argument("--memory", type=_memory, required=True, metavar="SIZE", help="e.g. 24GiB, 16GB or 512MiB")
    fit.add_argument("--dtype", choices=DTYPES, default="float32", help="element type (int8 does not train)")
    training_options(fit)
    fit.add_argument("--format", choices=("text", "json"), default="text")
    codegen = command("codegen", help="write the network as a PyTorch or NumPy Python module, or an ONNX model")
    common(codegen)
    codegen.add_argument(
        "--target",
        choices=("torch", "numpy", "onnx"),
        default="torch",
        help="torch: an nn.Module; numpy: numpy alone; onnx: an ONNX model file (needs -o)",
    )
    codegen.add_argument(
        "--weights",
        metavar="FILE.npz",
        help="onnx: the weights, by state_dict key (as the NumPy model's save() writes them); default: --seed's",
    )
    codegen.add_argument(
        "--seed",
        type=_whole,
        default=0,
        help="onnx: the weights the NumPy model's build_model(seed) starts with (default 0)",
    )
    codegen.add_argument(
        "--flat",
        action="store_true",
        help="one attribute per layer and one forward, instead of a class per block (keys such as layer1_0_conv1)",
    )
    codegen.add_argument("-o", "--output", metavar="FILE", help="write to FILE instead of standard output")
    trainer = command("train", help="train the NumPy model on scikit-learn's 8x8 digits, in NumPy alone")
    common(trainer)
    trainer.add_argument("--epochs", type=_positive, default=10, help="passes over the training set (default 10)")
    trainer.add_argument("--batch", type=_positive, default=32, help="samples per step (default 32)")
    trainer.add_argument("--optimizer", choices=("adamw", "sgd"), default="adamw", help="AdamW, or SGD with momentum")
    trainer.add_argument("--lr", type=float, default=None, help="learning rate (default 0.003 AdamW, 0.05 SGD)")
    trainer.add_argument("--seed", type=int, default=0, help="weights, split and order of the samples")
    diagram = command("diagram", help="draw the network with graphviz (.svg, .png, .pdf or .dot)")
    common(diagram)
    diagram.add_argument(
        "-o",
        "--output",
        metavar="FILE",
        help="FILE.svg/.png/.pdf (drawn by graphviz dot) or FILE.dot; default: DOT on stdout",
    )
    diagram.add_argument(
        "--depth", type=_depth, default=None, metavar="N", help="collapse blocks nested deeper than N into one node"
    )
    diagram.add_argument("--fold", action="store_true", help="fold activations, norms, dropout into the layer before")
    diagram.add_argument(
        "--detail", choices=("name", "normal", "full"), default="normal", help="full adds params and MACs per node"
    )
    diagram.add_argument(
        "--rankdir", choices=("TB", "LR"), default="TB", help="top to bottom (default) or left to right"
    )
    diagram.add_argument(
        "--timeout",
        type=_seconds,
        default=120.0,
        metavar="SECONDS",
        help="how long graphviz's dot may take to draw .svg, .png or .pdf (default 120)",
    )
    importer = command(
        "import", help="convert a Darknet .cfg, Caffe .prototxt or ONNX file, or a PyTorch module, into a .arch spec"
    )
    importer.add_argument("file", help="a .cfg, .prototxt or .onnx file, or a PyTorch constructor: pkg.module:name")
    importer.add_argument("-o", "--output", metavar="OUT.arch", help="write to OUT.arch instead of standard output")
    importer.add_argument(
        "--flat", action="store_true", help="one statement per layer, no blocks or repeats (the names `table` shows)"
    )
    importer.add_argument(
        "--input",
        action="append",
        metavar="NAME=CxHxW",
        help="the shape of an input the file does not give (a Caffe Data layer reads it from its database); "
        "a PyTorch module's example input (default 3x224x224 for torchvision.models)",
    )
    explain = command("explain", help="explain a diagnostic code, with a wrong and a right example")
    explain.add_argument("code", nargs="?", metavar="CODE", help="a code such as E0203; without it, list every code")
    return parser


def _memory(text: str) -> int:
    from .arguments import memory

    try:
        return memory("--memory", text)
    except ValueError as err:
        raise argparse.ArgumentTypeError(str(err).removeprefix("--memory must be ")) from None


def _whole(text: str) -> int:
    return _whole_number(text, 0, "0 or more")


def _depth(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if value < 0:
        raise argparse.ArgumentTypeError("must be 0 or more")
    return value


def _seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of seconds") from None
    if not value > 0 or value == float("inf"):
        raise argparse.ArgumentTypeError("must be a number of seconds above 0")
    return value


def _version() -> str:
    from . import __version__

    return __version__


def _load(args):
    from .analysis import load

    figures = {"batch": getattr(args, "batch", None), "dtype": getattr(args, "dtype", "float32")}  # see byte_figures
    overrides = _input_overrides(args.input)
    if None in overrides:
        shape = overrides.pop(None)
        net = load(args.spec, **figures)  # learn the input's name
        names = list(net.inputs)
        if len(names) != 1:
            raise UsageError(f"the network has {len(names)} inputs; name one: --input {names[0]}=...")
        overrides[names[0]] = shape
    return load(args.spec, inputs=overrides or None, **figures)


def _refuse_overwriting(output: str | None, source: str) -> None:
    """`-o` naming the file being read (through any link) would replace the spec with its own output."""
    try:
        same = bool(output) and os.path.samefile(output, source)
    except OSError:  # either does not exist (yet)
        same = False
    if same:
        raise UsageError(f"`{output}` is the file being read: -o would replace it; write the output to another file")


def _refuse_terminal(output: str | None) -> None:
    """A binary file is never written to a terminal: not to standard output (-o is required), nor
    to a terminal named by -o (/dev/tty, or /dev/stdout on one), which would print its bytes."""
    if not output:
        raise UsageError("--target onnx writes a binary file: give it with -o FILE.onnx")
    try:
        if not stat.S_ISCHR(os.stat(output).st_mode):
            return
        fd = os.open(output, os.O_WRONLY | getattr(os, "O_NOCTTY", 0))
    except OSError:  # not there yet, or not to be opened: writing it will say so
        return
    try:
        terminal = os.isatty(fd)
    finally:
        os.close(fd)
    if terminal:
        raise UsageError(f"`{output}` is a terminal: --target onnx writes a binary file; give -o FILE.onnx")


def _print_diagnostics(diags, sources) -> None:
    if diags:
        print(render_all(diags, sources, color=use_color(sys.stderr)), file=sys.stderr)


def cmd_check(args) -> int:
    try:
        net = _load(args)
    except ArchError as err:
        if args.format == "json":
            print(json.dumps({"valid": False, "diagnostics": [d.as_dict() for d in err.diagnostics]}, indent=2))
        else:
            _print_diagnostics(err.diagnostics, err.sources)
            count = len(err.errors)
            print(f"{args.spec}: {count} error{'s' if count != 1 else ''}", file=sys.stderr)
        return 1
    t = net.totals
    if args.format == "json":
        print(
            json.dumps(
                {
                    "valid": True,
                    "network": net.name,
                    "layers": len(net.layers),
                    "totals": t.as_dict(),
                    "diagnostics": [w.as_dict() for w in net.warnings],
                },
                indent=2,
            )
        )
        return 0
    _print_diagnostics(net.warnings, net.sources)
    warned = f", {len(net.warnings)} warning{'s' if len(net.warnings) != 1 else ''}" if net.warnings else ""
    figures = f"{len(net.layers)} layers, {t.params:,} params, {t.macs:,} MACs"
    print(f"{args.spec}: {visible(net.name)} is valid: {figures}{warned}")
    return 0


def cmd_table(args) -> int:
    columns = [c.strip() for c in args.columns.split(",") if c.strip()] if args.columns else None
    from .report.table import COLUMNS

    if columns:
        unknown = [c for c in columns if c not in COLUMNS]
        if unknown:
            raise UsageError(f"unknown column `{unknown[0]}`; columns are: {', '.join(COLUMNS)}")
    try:
        net = _load(args)
    except ArchError as err:
        _print_diagnostics(err.diagnostics, err.sources)
        return 1
    training = _training(net, args) if args.train else None
    color = args.format == "rich" and use_color(sys.stdout)
    width = None
    if color:
        import shutil

        width = shutil.get_terminal_size().columns
    table = net.table(
        args.format,
        layout=args.layout,
        columns=columns,
        color=color,
        width=width,
        convention=args.convention,
        training=training,
        depth=args.depth,
    )
    sys.stdout.write(table)
    if args.format != "json":
        _print_diagnostics(net.warnings, net.sources)
    return 0


def _training_options(net, args) -> dict:
    """The options of `table --train` and `fit`, with a usage error for a dtype that cannot train so."""
    if net.dtype == "int8":
        raise UsageError("an int8 network does not train: give --dtype float32, bfloat16 or float16")
    if args.master_weights and net.dtype not in ("float16", "bfloat16"):
        raise UsageError("--master-weights keeps float32 masters of a 16-bit model: add --dtype bfloat16 or float16")
    return {"optimizer": args.optimizer, "device": args.device, "master": args.master_weights}


def _training(net, args):
    return net.training_memory(**_training_options(net, args))


def cmd_fit(args) -> int:
    try:
        net = _load(args)
    except ArchError as err:
        _print_diagnostics(err.diagnostics, err.sources)
        return 1
    answer = net.fit(args.memory, **_training_options(net, args))
    _print_diagnostics(net.warnings, net.sources)
    if args.format == "json":
        print(json.dumps({"network": net.name, "file": net.file, "dtype": net.dtype, **answer.as_dict()}, indent=2))
        return 0
    from .report.table import fit_lines

    print("\n".join(fit_lines(net, answer)))
    return 0


def cmd_train(args) -> int:
    try:
        net = _load(args)
    except ArchError as err:
        _print_diagnostics(err.diagnostics, err.sources)
        return 1
    _print_diagnostics(net.warnings, net.sources)
    from .train import TrainError, train

    lr = args.lr if args.lr is not None else {"adamw": 0.003, "sgd": 0.05}[args.optimizer]
    try:
        result = train(net, args.epochs, args.batch, lr, args.optimizer, args.seed)
    except TrainError as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    print(
        f"test accuracy {result.test_accuracy:.2%} on the digits, after {result.epochs} epochs of "
        f"{result.samples} images in {result.seconds:.1f} s ({visible(net.name)}, NumPy)"
    )
    return 0


def cmd_codegen(args) -> int:
    _refuse_overwriting(args.output, args.spec)
    if args.target != "onnx" and (args.weights or args.seed):
        raise UsageError("--weights and --seed are for --target onnx: the Python targets take weights when they run")
    if args.target == "onnx":
        _refuse_terminal(args.output)
    try:
        net = _load(args)
    except ArchError as err:
        _print_diagnostics(err.diagnostics, err.sources)
        return 1
    if args.target == "onnx":
        return _onnx(net, args)
    from .codegen import generate

    code = generate(net, args.target, flat=args.flat).code
    _print_diagnostics(net.warnings, net.sources)
    return _emit(args.output, code, f"{visible(net.name)} for {args.target}, {len(net.layers)} layers")


def _onnx(net, args) -> int:
    """The ONNX model, written whole or not at all; a missing onnx package or weights that do not fit exit 1."""
    from .codegen.onnx_target import OPSET, WeightsError, read_weights, to_onnx_files

    location = os.path.basename(args.output) + ".data"  # the weights' file beside it, from 2 GiB on
    try:
        weights = read_weights(args.weights) if args.weights else None
        data, weights_data = to_onnx_files(net, location, weights=weights, seed=args.seed, flat=args.flat)
    except (ModuleNotFoundError, WeightsError, ValueError) as err:
        print(f"archc: error: {visible(str(err))}", file=sys.stderr)
        return 1
    _print_diagnostics(net.warnings, net.sources)
    summary = f"{visible(net.name)} as ONNX (opset {OPSET}), {len(net.layers)} layers, {len(data):,} bytes"
    if weights_data is not None:  # written first: the model never names a file that is not there yet
        beside = os.path.join(os.path.dirname(args.output), location)
        if _emit(beside, weights_data, f"its weights, {len(weights_data):,} bytes (ONNX external data)"):
            return 1
        summary += f", its weights in {visible(location)}"
    return _emit(args.output, data, summary)


def _emit(output: str | None, text: str | bytes, summary: str) -> int:
    """Text to standard output, or written to `output` (archc.files) with a one-line summary on stderr."""
    if not output:
        sys.stdout.write(text)
        return 0
    from .files import write_output

    try:
        write_output(output, text)
    except OSError as err:
        print(f"archc: error: cannot write `{output}`: {err.strerror or err}", file=sys.stderr)
        return 1
    print(f"{output}: {summary}", file=sys.stderr)
    return 0


def cmd_explain(args) -> int:
    from .codes import CODES, explain

    if args.code is None:
        for entry in CODES.values():
            print(f"{entry.code}  {entry.title}")
        return 0
    try:
        text = explain(args.code)
    except KeyError:
        raise UsageError(
            f"unknown code `{args.code}`; codes look like E0203 (`archc explain` lists them all)"
        ) from None
    print(text)
    return 0


def cmd_diagram(args) -> int:
    _refuse_overwriting(args.output, args.spec)
    try:
        net = _load(args)
    except ArchError as err:
        _print_diagnostics(err.diagnostics, err.sources)
        return 1
    from .diagram import FORMATS, DiagramError, render, to_dot

    if args.output and not args.output.lower().endswith(FORMATS):
        raise UsageError(f"cannot tell the format of `{args.output}`: end it with one of {', '.join(FORMATS)}")
    dot = to_dot(net, depth=args.depth, fold=args.fold, detail=args.detail, rankdir=args.rankdir)
    _print_diagnostics(net.warnings, net.sources)
    if not args.output:
        sys.stdout.write(dot)
        return 0
    try:
        render(dot, args.output, timeout=args.timeout)
    except DiagramError as err:  # it may quote what dot printed
        print(f"archc: error: {visible(str(err))}", file=sys.stderr)
        return 1
    except OSError as err:
        print(f"archc: error: cannot write `{args.output}`: {err.strerror or err}", file=sys.stderr)
        return 1
    print(f"{args.output}: {visible(net.name)}, {len(net.layers)} layers", file=sys.stderr)
    return 0


def cmd_import(args) -> int:
    """The file as `.arch` text; its problems are reported, with their lines, as `check` reports them."""
    from .analysis import load
    from .expand import read_bytes
    from .importers import BINARY, import_text, source_format
    from .importers.pytorch import CONSTRUCTOR

    if CONSTRUCTOR.match(args.file) and not os.path.exists(args.file):
        return _import_torch(args)
    if source_format(args.file) == "arch":
        raise UsageError(
            f"`{args.file}` is not a .cfg, .prototxt or .onnx file: archc import reads Darknet, Caffe and ONNX files"
        )
    overrides = _input_overrides(args.input)
    if None in overrides:
        raise UsageError("name the input: --input NAME=CxHxW (the Caffe top the data layer writes, e.g. data)")
    _refuse_overwriting(args.output, args.file)
    try:
        net = load(args.file, inputs=overrides or None)  # every error, pointing into the source file
        source = read_bytes(args.file, BINARY["onnx"]) if source_format(args.file) == "onnx" else None
        text = import_text(source or net.sources[net.file], net.file, blocks=not args.flat, inputs=overrides)
    except ArchError as err:
        _print_diagnostics(err.diagnostics, err.sources)
        return 1
    _print_diagnostics(net.warnings, net.sources)
    return _emit(args.output, text, f"{visible(net.name)}, {len(net.layers)} layers, from {args.file}")


def _import_torch(args) -> int:
    """`archc import torchvision.models:resnet50`: the module its constructor builds, traced."""
    from .importers.pytorch import TorchImportError, import_constructor

    overrides = _input_overrides(args.input)
    if args.flat or len(overrides) > 1 or (overrides and None not in overrides):
        raise UsageError("a PyTorch module takes one --input CxHxW (its example input), and no --flat")
    _refuse_overwriting(args.output, args.file)
    try:
        text = import_constructor(args.file, overrides.get(None))
    except (TorchImportError, ModuleNotFoundError) as err:
        print(f"archc: error: {visible(str(err))}", file=sys.stderr)
        return 1
    return _emit(args.output, text, f"imported from {args.file}")


COMMANDS = {
    "import": cmd_import,
    "check": cmd_check,
    "table": cmd_table,
    "fit": cmd_fit,
    "codegen": cmd_codegen,
    "train": cmd_train,
    "diagram": cmd_diagram,
    "explain": cmd_explain,
}


def main(argv: list[str] | None = None) -> int:
    """Run one command; the exit status. SIGINT and SIGTERM stop it quietly (130, 143) while it runs."""
    with _signals_caught():
        try:
            args, unknown = build_parser().parse_known_args(argv)
            if unknown:  # argparse would print the top-level usage for them
                raise UsageError(f"unrecognized arguments: {' '.join(unknown)}")
            return COMMANDS[args.command](args)
        except UsageError as err:
            args.command_parser.error(str(err))  # exits 2
        except BrokenPipeError:  # `archc table big.arch | head`
            sys.stderr.close()
            return 0
        except (Interrupted, KeyboardInterrupt) as stop:
            return _stopped(stop)
    return 0  # pragma: no cover


def run() -> None:
    """The program (`archc`, `python -m archc`): main, then exit with its status.

    The handlers stay installed from before main until the signals are ignored after it, so a signal that
    comes at any moment, even as main returns, ends in an exit status and no traceback.
    """
    _catch(_raise_interrupted)
    try:
        status = main()
        _catch(signal.SIG_IGN)
    except Interrupted as stop:
        _catch(signal.SIG_IGN)
        status = _stopped(stop)
    sys.exit(status)


def _stopped(stop: BaseException) -> int:
    """One line for an interrupted command; its exit status (a Ctrl-C raises KeyboardInterrupt in-process)."""
    status = stop.status if isinstance(stop, Interrupted) else 128 + signal.SIGINT
    print(f"archc: {'terminated' if status == 128 + signal.SIGTERM else 'interrupted'}", file=sys.stderr)
    return status


def _raise_interrupted(signum, _frame) -> None:
    raise Interrupted(signum)


def _interrupt_again(unraisable) -> None:
    """sys.unraisablehook: a signal that came while Python ran a finaliser (a `__del__`, an import lock's
    clean-up) raised Interrupted where nothing can catch it, and Python would print "Exception ignored"
    and a traceback and go on. Send the signal again instead, from another thread (sent from this one, its
    handler would run at once, still inside the hook): the handler runs at the main thread's next step,
    once the finaliser is done, and the command stops as it should."""
    if isinstance(unraisable.exc_value, Interrupted):
        resend = threading.Timer(0.001, os.kill, (os.getpid(), unraisable.exc_value.status - 128))
        resend.daemon = True
        resend.start()
    else:
        sys.__unraisablehook__(unraisable)


def _catch(handler) -> dict:
    """Set `handler` for SIGINT and SIGTERM; the handlers it replaces (none outside the main thread)."""
    try:
        previous = {signum: signal.signal(signum, handler) for signum in (signal.SIGINT, signal.SIGTERM)}
    except ValueError:  # not the main thread: signals are the application's business
        return {}
    if handler is _raise_interrupted and sys.unraisablehook is sys.__unraisablehook__:
        sys.unraisablehook = _interrupt_again
    return previous


@contextlib.contextmanager
def _signals_caught():
    """Within: SIGINT and SIGTERM raise Interrupted, so a file being written is cleaned up (archc.files)."""
    previous = _catch(_raise_interrupted)
    try:
        yield
    finally:
        for signum, handler in previous.items():
            if handler is not None:  # None: a handler set outside Python, which cannot be set back
                signal.signal(signum, handler)


if __name__ == "__main__":  # pragma: no cover
    run()
