"""Every example in docs/language.md runs, and the reference covers every layer type and code.

The reference's fenced code blocks are checked by their info string:

    ```arch                    a complete spec: must analyse with no error and no warning
    ```arch warning=W0301      must analyse, with (at least) that warning
    ```arch error=E0204        must fail with an ArchError carrying that code
    ```arch file=lib/x.arch    a file that later examples import; not checked on its own
    ```python                  run, with the repository root as working directory

Examples that contain an `import` are written into a temporary folder, next to
every `arch file=...` block that comes before them in the document, and loaded
from there with `archc.load`, so import paths resolve as they would for a user.
All other blocks (text, console) are prose and not checked.

Test ids name the example's line in the document: `language.md:123`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path

import pytest

import archc
from archc.ops import OPS

ROOT = Path(__file__).resolve().parent.parent
DOC = ROOT / "docs" / "language.md"

FENCE = re.compile(r"^(?P<fence>`{3,}|~{3,})(?P<info>.*)$")
IMPORT = re.compile(r'^\s*import\s+"', re.MULTILINE)
ARCH_KEYS = {"file", "error", "warning"}
OTHER_LANGUAGES = {"text", "console", "python"}


@dataclass
class Example:
    line: int  # line of the opening fence, counted from 1
    lang: str
    attrs: dict[str, str] = field(default_factory=dict)
    text: str = ""

    @property
    def where(self) -> str:
        return f"docs/language.md:{self.line}"

    @property
    def kind(self) -> str:
        if self.lang != "arch":
            return self.lang
        for key in ("file", "error", "warning"):
            if key in self.attrs:
                return key
        return "spec"


def _closes(line: str, fence: str) -> bool:
    """A closing fence: only the opening fence's character, at least as many of them."""
    bare = line.strip()
    return len(bare) >= len(fence) and set(bare) == {fence[0]}


def extract(markdown: str) -> list[Example]:
    """Every fenced code block, with its language, `key=value` attributes and text."""
    lines = markdown.splitlines()
    examples = []
    i = 0
    while i < len(lines):
        match = FENCE.match(lines[i])
        if not match:
            i += 1
            continue
        fence, info = match["fence"], match["info"].strip()
        end = i + 1
        while end < len(lines) and not _closes(lines[end], fence):
            end += 1
        if end == len(lines):
            raise AssertionError(f"docs/language.md:{i + 1}: code block is never closed")
        words = info.split()
        lang = words[0] if words else ""
        attrs = {}
        for word in words[1:]:
            key, sep, value = word.partition("=")
            attrs[key] = value if sep else ""
        examples.append(Example(i + 1, lang, attrs, "\n".join(lines[i + 1 : end]) + "\n"))
        i = end + 1
    return examples


@cache
def examples() -> tuple[Example, ...]:
    return tuple(extract(DOC.read_text(encoding="utf-8")))


def of_kind(*kinds: str) -> list[Example]:
    return [ex for ex in examples() if ex.kind in kinds]


def files_before(example: Example) -> dict[str, str]:
    """The `arch file=...` blocks above an example; a later block of the same name wins."""
    return {ex.attrs["file"]: ex.text for ex in examples() if ex.kind == "file" and ex.line < example.line}


def analyse(example: Example, folder: Path) -> archc.Network:
    """Load an example as a user would: from a file next to its imports, or from text."""
    if not IMPORT.search(example.text):
        return archc.loads(example.text, "<doc>")
    for name, text in files_before(example).items():
        path = folder / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
    spec = folder / "example.arch"
    spec.write_text(example.text, encoding="utf-8")
    return archc.load(spec)


def _param(kinds: tuple[str, ...]):
    return pytest.mark.parametrize("example", of_kind(*kinds), ids=lambda ex: f"language.md:{ex.line}")


# -- the document itself ------------------------------------------------------------------------


def test_the_document_has_examples_of_every_kind():
    """Guards the extractor: a broken parser would otherwise make every other test vacuous."""
    counts = {kind: len(of_kind(kind)) for kind in ("spec", "error", "warning", "file", "python")}
    assert all(counts.values()), f"docs/language.md lacks some kinds of example: {counts}"
    assert counts["spec"] >= 20, counts


def test_every_code_block_has_a_known_info_string():
    for ex in examples():
        assert ex.lang in {"arch", *OTHER_LANGUAGES}, f"{ex.where}: unknown info string {ex.lang!r}"
        if ex.lang != "arch":
            assert not ex.attrs, f"{ex.where}: attributes on a {ex.lang} block"
            continue
        unknown = set(ex.attrs) - ARCH_KEYS
        assert not unknown, f"{ex.where}: unknown attribute(s) {sorted(unknown)}"
        assert len(ex.attrs) <= 1, f"{ex.where}: give one of file=, error=, warning="
        if "error" in ex.attrs:
            assert re.fullmatch(r"E0\d{3}", ex.attrs["error"]), f"{ex.where}: error=E0xxx"
        if "warning" in ex.attrs:
            assert re.fullmatch(r"W0\d{3}", ex.attrs["warning"]), f"{ex.where}: warning=W0xxx"
        if "file" in ex.attrs:
            assert ex.attrs["file"].endswith(".arch") and not ex.attrs["file"].startswith(("/", "..")), ex.where


def test_no_fence_is_hidden_by_indentation():
    """Indented fences (in lists) would be skipped by the extractor; keep them at column 0."""
    for number, line in enumerate(DOC.read_text(encoding="utf-8").splitlines(), 1):
        assert not re.match(r"^\s+(```|~~~)", line), f"docs/language.md:{number}: indented code fence"


def test_every_file_block_is_imported():
    """A file block no example (or other file) imports is dead text, never checked."""
    for ex in of_kind("file"):
        name = Path(ex.attrs["file"]).name
        others = [other.text for other in examples() if other.lang == "arch" and other is not ex]
        assert any(re.search(rf'^\s*import\s+"[^"]*\b{re.escape(name)}"', text, re.MULTILINE) for text in others), (
            f"{ex.where}: file {ex.attrs['file']} is never imported"
        )


def test_the_extractor():
    doc = "text\n```arch error=E0204\nnetwork N {\n}\n```\n\n````python\n```\nx = 1\n````\n```\nplain\n```\n"
    found = extract(doc)
    assert [(ex.line, ex.lang, ex.attrs, ex.kind) for ex in found] == [
        (2, "arch", {"error": "E0204"}, "error"),
        (7, "python", {}, "python"),
        (11, "", {}, ""),
    ]
    assert found[0].text == "network N {\n}\n"
    assert found[1].text == "```\nx = 1\n"
    with pytest.raises(AssertionError, match="never closed"):
        extract("```arch\nnetwork N {}\n")


# -- the examples ---------------------------------------------------------------------------------


@_param(("spec",))
def test_spec_example_analyses_cleanly(example, tmp_path):
    try:
        net = analyse(example, tmp_path)
    except archc.ArchError as err:
        pytest.fail(f"{example.where}: the example does not analyse:\n{err}")
    warnings = [f"{w.code} {w.message}" for w in net.warnings]
    assert not warnings, f"{example.where}: a plain `arch` example warns (mark it warning=...): {warnings}"
    assert net.layers, f"{example.where}: the network is empty"


@_param(("warning",))
def test_warning_example_warns(example, tmp_path):
    try:
        net = analyse(example, tmp_path)
    except archc.ArchError as err:
        pytest.fail(f"{example.where}: the example does not analyse:\n{err}")
    codes = [w.code for w in net.warnings]
    assert example.attrs["warning"] in codes, f"{example.where}: expected {example.attrs['warning']}, got {codes}"


@_param(("error",))
def test_error_example_fails_with_its_code(example, tmp_path):
    code = example.attrs["error"]
    try:
        analyse(example, tmp_path)
    except archc.ArchError as err:
        codes = [d.code for d in err.errors]
        assert code in codes, f"{example.where}: expected {code}, got {codes}:\n{err}"
    else:
        pytest.fail(f"{example.where}: expected error {code}, but the example analyses")


@_param(("python",))
def test_python_example_runs(example, monkeypatch):
    monkeypatch.chdir(ROOT)  # the examples load specs/... relative to the repository
    code = compile(example.text, example.where, "exec")
    exec(code, {"__name__": "__doc_example__"})


def test_every_layer_type_appears_in_a_clean_example(tmp_path):
    used: set[str] = set()
    for i, ex in enumerate(of_kind("spec", "warning")):
        folder = tmp_path / str(i)
        folder.mkdir()
        try:
            net = analyse(ex, folder)
        except archc.ArchError:
            continue  # reported by the example's own test
        for layer in net.layers:
            used.add(layer.op)
            if layer.activation:
                used.add(layer.activation[0])
    missing = sorted(set(OPS) - used)
    assert not missing, f"layer types without a working example in docs/language.md: {missing}"


def test_every_error_code_in_the_sources_is_documented():
    text = DOC.read_text(encoding="utf-8")
    codes = set()
    for path in (ROOT / "archc").rglob("*.py"):
        codes |= set(re.findall(r'"([EW]0\d{3})"', path.read_text(encoding="utf-8")))
    assert codes, "no error codes found in archc/"
    missing = sorted(code for code in codes if f"| {code} |" not in text)
    assert not missing, f"codes missing from the table in docs/language.md: {missing}"
