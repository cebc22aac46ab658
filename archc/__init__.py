"""archc: a declarative architecture compiler for neural networks.

import archc
net = archc.load("specs/lenet5.arch")
net.totals.params, net.totals.macs
print(net.table("markdown"))
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .analysis import DTYPE_BYTES, Network, Totals, load, loads
    from .diagnostics import ArchError, Diagnostic, Span
    from .importers.pytorch import from_torch, torch_to_arch

__all__ = [
    "DTYPE_BYTES",
    "ArchError",
    "Diagnostic",
    "Network",
    "Span",
    "Totals",
    "from_torch",
    "load",
    "loads",
    "torch_to_arch",
]
__version__ = "0.1.0"

_HOME = {"ArchError": "diagnostics", "Diagnostic": "diagnostics", "Span": "diagnostics"}
_HOME |= {"from_torch": "importers.pytorch", "torch_to_arch": "importers.pytorch"}


def __getattr__(name: str):
    """The API is imported when first used, not with the package: `archc` the command then starts by
    installing its signal handlers (archc.cli.run), so a Ctrl-C while the analyser loads exits quietly."""
    if name not in __all__:
        raise AttributeError(f"module 'archc' has no attribute {name!r}")
    value = getattr(importlib.import_module(f".{_HOME.get(name, 'analysis')}", __name__), name)
    globals()[name] = value
    return value
