"""archc: a declarative architecture compiler for neural networks.

import archc
net = archc.load("specs/lenet5.arch")
net.totals.params, net.totals.macs
print(net.table("markdown"))
"""

from .analysis import DTYPE_BYTES, Network, Totals, load, loads
from .diagnostics import ArchError, Diagnostic, Span

__all__ = ["DTYPE_BYTES", "ArchError", "Diagnostic", "Network", "Span", "Totals", "load", "loads"]
__version__ = "0.1.0"
