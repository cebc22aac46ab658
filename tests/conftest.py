import os
from pathlib import Path

import pytest
from hypothesis import settings

# CI draws the same examples on every run, so a submission is judged on its own change and not on
# which random examples a run happened to draw; a developer's runs keep exploring new ones.
settings.register_profile("ci", derandomize=True, print_blob=True)
if os.environ.get("CI"):
    settings.load_profile("ci")

ROOT = Path(__file__).resolve().parent.parent
SPECS = ROOT / "specs"


@pytest.fixture
def specs_dir() -> Path:
    return SPECS


@pytest.fixture(scope="module")
def one_thread():
    """Small tensors: one torch thread is faster, and far faster on a busy machine."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
