"""Checks of the Python API's arguments.

A wrong argument to `load`, `loads`, `Network.table`, `to_dot` and the like
is a TypeError (wrong kind of value) or a ValueError (right kind, wrong
value) that names the argument and says what it accepts, raised before any
work starts: never an error from deep inside the analysis, and never a
wrong value accepted silently (`batch=True` is not a batch of 1).
"""

from __future__ import annotations

import operator
import os
import re
from collections.abc import Mapping
from fractions import Fraction
from pathlib import Path


def _show(value) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def whole(name: str, value, minimum: int | None, *, optional: bool = False) -> int | None:
    """An int (or an object with __index__, as numpy's integers) of at least `minimum`; not a bool."""
    if optional and value is None:
        return None
    accepts = f"a whole number (int){' or None' if optional else ''}"
    if isinstance(value, bool):
        raise TypeError(f"{name} must be {accepts}, not a bool ({value!r})")
    try:
        number = operator.index(value)
    except TypeError:
        raise TypeError(f"{name} must be {accepts}, not {type(value).__name__} ({_show(value)})") from None
    if minimum is not None and number < minimum:
        raise ValueError(f"{name} must be at least {minimum}, not {number}")
    return number


def choice(name: str, value, choices, *, optional: bool = False) -> str | None:
    """One of the strings `choices`."""
    if optional and value is None:
        return None
    if not isinstance(value, str) or value not in choices:
        error = ValueError if isinstance(value, str) else TypeError
        names = ", ".join(map(repr, choices)) + (" or None" if optional else "")
        raise error(f"{name} must be one of {names}, not {_show(value)}")
    return value


def flag(name: str, value) -> bool:
    if not isinstance(value, bool):
        raise TypeError(f"{name} must be True or False, not {_show(value)}")
    return value


def text(name: str, value) -> str:
    if isinstance(value, bytes | bytearray):
        raise TypeError(f"{name} must be str, not {type(value).__name__}: decode it first, e.g. {name}.decode()")
    if not isinstance(value, str):
        raise TypeError(f"{name} must be str, not {type(value).__name__} ({_show(value)})")
    return value


def path(name: str, value, *, optional: bool = False) -> Path | None:
    """A file system path: a str or an os.PathLike such as pathlib.Path."""
    if optional and value is None:
        return None
    fspath = os.fspath(value) if isinstance(value, os.PathLike) else value
    if not isinstance(fspath, str):
        accepts = f"a str or os.PathLike path{' or None' if optional else ''}"
        raise TypeError(f"{name} must be {accepts}, not {type(value).__name__} ({_show(value)})")
    return Path(fspath)


def shapes(name: str, value) -> dict[str, tuple[int, ...]] | None:
    """Input shapes by name: {"image": (3, 224, 224)}; a shape is a tuple or list of sizes, or one size.

    Only their types are checked here: a size below 1 or a rank archc has no layer for is the analysis's
    to report, at the input it changes (E0205), as for a shape written in the spec.
    """
    if value is None:
        return None
    if not isinstance(value, Mapping):
        raise TypeError(f"{name} must be a dict of input shapes by name, e.g. {{'image': (3, 224, 224)}}")
    out = {}
    for key, shape in value.items():
        if not isinstance(key, str):
            raise TypeError(f"{name}: an input's name must be str, not {type(key).__name__} ({_show(key)})")
        what = f"{name}[{key!r}]"
        if isinstance(shape, tuple | list):
            out[key] = tuple(whole(f"{what}[{i}]", size, None) for i, size in enumerate(shape))
        else:
            try:
                out[key] = (whole(what, shape, None),)
            except TypeError:
                raise TypeError(f"{what} must be a shape: a tuple of sizes such as (3, 224, 224)") from None
    return out


# Units of a memory size: SI (powers of 1000) and binary (powers of 1024), as GPUs are sold and as tools report.
UNITS = {"b": 1, "kb": 10**3, "mb": 10**6, "gb": 10**9, "tb": 10**12}
UNITS |= {"kib": 2**10, "mib": 2**20, "gib": 2**30, "tib": 2**40}


def memory(name: str, value) -> int:
    """A memory size in bytes: a whole number of bytes, or a text such as `24GiB`, `16 GB` or `1.5TiB`."""
    if not isinstance(value, str):
        return whole(name, value, 1)
    found = re.fullmatch(r"\s*(\d+(?:\.\d*)?|\.\d+)\s*([A-Za-z]*)\s*", value)
    number, unit = (found.group(1), found.group(2).lower()) if found else ("", "")
    if not found or unit not in UNITS:
        hint = ""
        if unit in ("k", "m", "g", "t"):
            big = unit.upper()
            hint = f": {big} could be powers of 1024 or of 1000, write {number}{big}iB or {number}{big}B"
        elif found and not unit:
            hint = ": give a unit, e.g. 24GiB (GiB = 2^30 bytes, GB = 10^9 bytes)"
        raise ValueError(f"{name} must be a size such as 24GiB, 16GB or 512MiB, not {_show(value)}{hint}")
    size = int(Fraction(number) * UNITS[unit])
    if size < 1:
        raise ValueError(f"{name} must be at least 1 byte, not {_show(value)}")
    return size
