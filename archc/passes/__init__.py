"""Analysis passes. Each walks the graph once, in topological order, and
writes its results onto the nodes; none depends on how results are shown."""

from .cost import count_costs
from .memory import MemoryTotals, measure_memory
from .receptive import receptive_fields
from .shapes import infer_shapes
from .usage import find_unused

__all__ = ["MemoryTotals", "count_costs", "find_unused", "infer_shapes", "measure_memory", "receptive_fields"]
