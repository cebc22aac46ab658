from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
SPECS = ROOT / "specs"
FIGURES = ROOT.parent / "shared" / "reference" / "figures.md"


@pytest.fixture
def specs_dir() -> Path:
    return SPECS
