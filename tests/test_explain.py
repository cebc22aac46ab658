"""`archc explain CODE`: every code archc emits is explained, and every example is true.

Each entry of archc/codes.py carries a `wrong` spec that must fail with exactly
its code (or, for a warning, analyse with it) and a `right` spec that must
analyse with no error and no warning. Codes that have an entry before archc
emits them (someone is implementing them) are expected to fail, not required to.
"""

from __future__ import annotations

import re
import subprocess
import sys
from functools import cache

import onnx.parser
import pytest
from conftest import ROOT

import archc
from archc.codes import CODES, WIDTH, explain

QUOTED_CODE = re.compile(r'"([EW]\d{4})"')
IMPORT = re.compile(r'^\s*import\s+"', re.MULTILINE)


@cache
def emitted() -> frozenset[str]:
    """The codes written as strings in archc's sources: the codes archc can emit."""
    codes: set[str] = set()
    for path in (ROOT / "archc").rglob("*.py"):
        if path.name != "codes.py":
            codes |= set(QUOTED_CODE.findall(path.read_text(encoding="utf-8")))
    return frozenset(codes)


def entries() -> list:
    out = []
    for code, entry in CODES.items():
        marks = () if code in emitted() else pytest.mark.xfail(strict=False, reason=f"archc does not emit {code} yet")
        out.append(pytest.param(entry, id=code, marks=marks))
    return out


def analyse(text: str, folder, inputs=None, suffix: str = ".arch") -> archc.Network:
    """A spec with an import is loaded from a file in an empty folder, where its imports resolve.

    Examples of the import codes are Darknet or Caffe files, or ONNX models in onnx's textual form
    (written to a file as bytes): `suffix` picks the importer.
    """
    if suffix == ".onnx":
        path = folder / "wrong.onnx"
        path.write_bytes(onnx.parser.parse_model(text).SerializeToString())
        return archc.load(path, inputs=inputs)
    if suffix != ".arch":
        return archc.loads(text, f"wrong{suffix}", inputs=inputs)
    if not IMPORT.search(text):
        return archc.loads(text, "wrong.arch", inputs=inputs)
    path = folder / "wrong.arch"
    path.write_text(text, encoding="utf-8")
    return archc.load(path, inputs=inputs)


def archc_cli(*args):
    return subprocess.run([sys.executable, "-m", "archc", *args], capture_output=True, text=True)


# -- the catalogue ----------------------------------------------------------------------------------


def test_every_emitted_code_has_an_entry():
    assert {"E0101", "E0203", "E0304", "W0301"} <= emitted(), "the scan of archc/ finds no codes"
    missing = sorted(emitted() - set(CODES))
    assert not missing, f"codes archc emits without an entry in archc/codes.py: {missing}"


def test_entries_are_in_order_and_well_formed():
    assert list(CODES) == sorted(CODES, key=lambda code: (code[0] == "W", code))
    for code, entry in CODES.items():
        assert entry.code == code and re.fullmatch(r"[EW]0\d{3}", code)
        assert entry.title and len(entry.title) <= 60 and not entry.title.endswith("."), code
        assert entry.text.endswith(".") and "\n" not in entry.text, code
        assert 2 <= entry.text.count(". ") + 1 <= 6, f"{code}: 2-6 sentences"
        assert entry.suffix in (".arch", ".cfg", ".prototxt", ".onnx"), code
        if entry.suffix != ".cfg":  # a .cfg has no braces
            assert entry.wrong.endswith("}\n") and entry.right.endswith("}\n"), code
        assert entry.wrong != entry.right, code


@pytest.mark.parametrize("entry", entries())
def test_wrong_example_produces_its_code(entry, tmp_path):
    if entry.code.startswith("W"):
        net = analyse(entry.wrong, tmp_path, entry.inputs, entry.suffix)
        assert {w.code for w in net.warnings} == {entry.code}, [f"{w.code} {w.message}" for w in net.warnings]
        return
    with pytest.raises(archc.ArchError) as info:
        analyse(entry.wrong, tmp_path, entry.inputs, entry.suffix)
    codes = {d.code for d in info.value.errors}
    assert codes == {entry.code}, str(info.value)


@pytest.mark.parametrize("entry", entries())
def test_right_example_analyses_cleanly(entry, tmp_path):
    try:
        net = analyse(entry.right, tmp_path, suffix=entry.suffix)
    except archc.ArchError as err:
        pytest.fail(f"{entry.code}: the right example does not analyse:\n{err}")
    assert not net.warnings, [f"{w.code} {w.message}" for w in net.warnings]


# -- explain() ----------------------------------------------------------------------------------


def test_explain_renders_title_text_and_both_examples():
    entry = CODES["E0203"]
    text = explain("E0203")
    lines = text.splitlines()
    assert lines[:2] == ["E0203: used before it is defined", ""]
    assert " ".join(lines[2 : lines.index("Wrong:") - 1]) == entry.text
    wrong = lines.index("Wrong:")
    right = lines.index("Right:")
    assert lines[wrong + 1 : right - 1] == [f"    {line}" for line in entry.wrong.splitlines()]
    assert lines[right + 1 :] == [f"    {line}" for line in entry.right.splitlines()]


@pytest.mark.parametrize("code", list(CODES))
def test_explain_fits_in_79_columns(code):
    text = explain(code)
    assert text.startswith(f"{code}: {CODES[code].title}\n\n")
    assert max(len(line) for line in text.splitlines()) <= WIDTH
    assert not any(line != line.rstrip() for line in text.splitlines()), "trailing whitespace"


def test_explain_accepts_lowercase_and_rejects_unknown_codes():
    assert explain("e0203") == explain(" E0203 ") == explain("E0203")
    with pytest.raises(KeyError):
        explain("E9999")


# -- the command --------------------------------------------------------------------------------


def test_cli_explains_a_code():
    run = archc_cli("explain", "E0203")
    assert run.returncode == 0, run.stderr
    assert run.stdout.startswith("E0203: used before it is defined\n")
    assert run.stdout == explain("E0203") + "\n"


def test_cli_accepts_a_lowercase_code():
    run = archc_cli("explain", "e0203")
    assert run.returncode == 0
    assert run.stdout == archc_cli("explain", "E0203").stdout


def test_cli_rejects_an_unknown_code_with_exit_2():
    run = archc_cli("explain", "E9999")
    assert run.returncode == 2
    assert not run.stdout
    assert "E9999" in run.stderr and "E0203" in run.stderr
    assert "Traceback" not in run.stderr


def test_cli_lists_every_code_without_an_argument():
    run = archc_cli("explain")
    assert run.returncode == 0, run.stderr
    assert run.stdout.splitlines() == [f"{entry.code}  {entry.title}" for entry in CODES.values()]
