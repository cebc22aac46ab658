"""Networks in other tools' formats, read into archc's syntax tree.

`import_source(text, file)` picks the importer by the file's extension:
Darknet `.cfg` files, Caffe `.prototxt` files and ONNX `.onnx` models (read
as bytes). `archc.load` calls it, so
every command (check, table, codegen, diagram) reads those files as it reads
a `.arch` spec, and `archc import` prints the result as `.arch` text.
"""

from __future__ import annotations

from pathlib import PurePath

from .common import Imported, comment

FORMATS = {".cfg": "darknet", ".prototxt": "caffe", ".onnx": "onnx"}
BINARY = {"onnx": 2**31 - 1}  # the formats read as bytes, with the largest file each reads


def source_format(file: str) -> str:
    """`darknet`, `caffe`, `onnx` or `arch`, by the file's extension."""
    return FORMATS.get(PurePath(file).suffix.lower(), "arch")


def import_source(text: str | bytes, file: str, inputs: dict | None = None, format: str | None = None) -> Imported:
    """The network in `text` as an archc syntax tree; raises ArchError with every problem found.

    `text` is the file's bytes for a binary format (ONNX). `inputs` gives shapes by input name for
    inputs the file does not size (a Caffe Data layer, an ONNX input with symbolic dimensions).
    """
    kind = format or source_format(file)
    if kind == "darknet":
        from .darknet import import_darknet

        return import_darknet(text, file)
    if kind == "caffe":
        from .caffe import import_caffe

        return import_caffe(text, file, inputs or {})
    if kind == "onnx":
        from .onnx_model import import_onnx

        return import_onnx(text, file, inputs or {})
    raise ValueError(f"no importer for {file!r}")


__all__ = ["BINARY", "FORMATS", "Imported", "import_source", "source_format"]


def import_text(text: str | bytes, file: str, *, blocks: bool = True, inputs: dict | None = None) -> str:
    """The network in a `.cfg`, `.prototxt` or `.onnx` as `.arch` text (what `archc import` writes).

    With `blocks`, repeated units become blocks and `repeat`s (archc.importers.structure); without,
    one statement per layer, with the names `archc table FILE` shows.
    """
    from ..printer import format_module
    from .structure import structure

    imported = import_source(text, file, inputs)
    module = imported.module
    if blocks:
        module = structure(module, imported.units, imported.modules, imported.repeats)
    name = PurePath(file).name
    header = [f"Imported by `archc import` from {name}.", *imported.header]
    if imported.batch:
        header.append(
            f"The file's batch is {imported.batch}: `archc table --batch {imported.batch}` gives its figures."
        )
    # every comment passes through `comment`: a name or a setting cannot end its line and add a statement
    notes = {key: [comment(line) for line in lines] for key, lines in imported.notes.items()}
    after = {key: comment(text) for key, text in imported.after.items()}
    header, footer = [comment(line) for line in header], [comment(line) for line in imported.footer]
    return format_module(module, notes=notes, after=after, header=header, footer=footer)
