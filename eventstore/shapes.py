"""Named shapes of JSON values: what a finding's detail key holds (``health.FINDING_SPECS``) and
what a check state read back from a caller's database must hold (``state``). One name, one test.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any


class Malformed(ValueError):
    """A value read back does not have the shape it was written with."""


def _count(v: Any) -> bool:
    return type(v) is int and v >= 0


def _pairs(v: Any) -> bool:
    return type(v) is list and all(type(p) is list and len(p) == 2 and _count(p[0]) and _count(p[1]) for p in v)


def _bad_lines(v: Any) -> bool:
    return type(v) is list and all(
        type(b) is dict
        and b.keys() == {"line", "offset", "error", "preview"}
        and _count(b["line"])
        and _count(b["offset"])
        and type(b["error"]) is str
        and type(b["preview"]) is str
        for b in v
    )


# shape name -> test. The names are what FINDING_SPECS shows a reader.
SHAPES: dict[str, Callable[[Any], bool]] = {
    "count": _count,  # a whole number >= 0
    "count or null": lambda v: v is None or _count(v),
    "string": lambda v: type(v) is str,
    "string or null": lambda v: v is None or type(v) is str,
    "boolean": lambda v: type(v) is bool,
    "scalar": lambda v: v is None or type(v) in (str, int, float, bool),  # null, string, number or boolean
    "JSON value": lambda v: True,  # anything read from a file: any JSON value
    "object": lambda v: type(v) is dict,
    "list of strings": lambda v: type(v) is list and all(type(x) is str for x in v),
    "list of counts": lambda v: type(v) is list and all(_count(x) for x in v),
    "list of [first, last] count pairs": _pairs,
    "list of bad lines": _bad_lines,  # each {line, offset, error, preview}
}


def conforms(value: Any, shape: str) -> bool:
    """True if ``value`` has the named shape."""
    return SHAPES[shape](value)


def want(value: Any, shape: str) -> Any:
    """``value`` if it has the named shape, else raise :class:`Malformed`."""
    if not SHAPES[shape](value):
        raise Malformed(f"expected {shape}, got {type(value).__name__}")
    return value
