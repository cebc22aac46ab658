"""The layer registry: importing this package registers every layer type."""

from . import (  # noqa: F401 - registration
    activation,
    attention,
    conv,
    dense,
    input,
    merge,
    norm,
    pool,
    rearrange,
    recurrent,
    reshape,
    scale,
    sequence,
)
from .base import OPS, Op, P, ShapeError

__all__ = ["OPS", "Op", "P", "ShapeError"]
