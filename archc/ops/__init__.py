"""The layer registry: importing this package registers every layer type."""

from . import activation, attention, conv, dense, input, merge, norm, pool, rearrange, reshape, scale, sequence  # noqa: F401
from .base import OPS, Op, P, ShapeError

__all__ = ["OPS", "Op", "P", "ShapeError"]
