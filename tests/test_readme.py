"""The README's examples run as written, in a fresh folder beside the bundled specs.

Its ```sh blocks' `archc ...` commands run first, in order (they write the
generated modules), then every ```python block runs with that folder as the
working directory and on sys.path. Blocks marked ```python skip need what the
test machine lacks (torchvision weights) and are only checked to parse.
"""

from __future__ import annotations

import ast
import re
import shlex
import subprocess
import sys

import pytest
from conftest import ROOT

README = (ROOT / "README.md").read_text(encoding="utf-8")
BLOCK = re.compile(r"^```(?P<info>[^\n]*)\n(?P<body>.*?)^```$", re.MULTILINE | re.DOTALL)


def blocks(info: str) -> list[str]:
    return [m["body"] for m in BLOCK.finditer(README) if m["info"].strip() == info]


def commands() -> list[str]:
    return [line for body in blocks("sh") for line in body.splitlines() if line.startswith("archc codegen")]


@pytest.fixture
def folder(tmp_path, monkeypatch):
    (tmp_path / "specs").symlink_to(ROOT / "specs")
    monkeypatch.chdir(tmp_path)
    monkeypatch.syspath_prepend(str(tmp_path))
    return tmp_path


def test_the_readme_generates_code_and_its_python_examples_run(folder):
    assert commands(), "the README shows archc codegen"
    for line in commands():
        argv = [sys.executable, "-m", "archc", *shlex.split(line)[1:]]
        done = subprocess.run(argv, cwd=folder, capture_output=True, text=True)
        assert done.returncode == 0, f"{line}\n{done.stderr}"
    assert blocks("python")
    for i, body in enumerate(blocks("python")):
        exec(compile(body, f"README.md python block {i + 1}", "exec"), {"__name__": "__readme__"})


def test_skipped_examples_still_parse():
    for body in blocks("python skip"):
        ast.parse(body)
