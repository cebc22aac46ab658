"""Presentation of analysed networks; nothing here computes a figure."""

from .table import COLUMNS, DEFAULT_COLUMNS, render_table, rows

__all__ = ["COLUMNS", "DEFAULT_COLUMNS", "render_table", "rows"]
