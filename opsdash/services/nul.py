"""Values read from the files, made storable by every database (PostgreSQL's text and jsonb are
strict where SQLite is not):

- a NUL character (a crash's NUL bytes in a log line, a NUL in a meta value or an event's id)
  becomes U+FFFD: PostgreSQL stores no NUL in text or jsonb;
- a lone surrogate (a meta's ``"\\udc80"`` escape) becomes U+FFFD: jsonb refuses it;
- a float that is not finite (a meta's ``1e400``) becomes its text (``"inf"``): jsonb has no
  Infinity or NaN.

Done on every database alike, so that one damaged file never fails a scan pass or a job on
PostgreSQL and an unchanged module compares equal to what was saved. Nesting of any depth is
handled without recursion."""

from __future__ import annotations

import json
import math
import re
from typing import Any

REPLACEMENT = "\ufffd"
_SURROGATE = re.compile("[\ud800-\udfff]")
# In json.dumps output (ASCII): a NUL, or a surrogate escape that is not half of a pair.
_SUSPECT = re.compile(
    r"\\u0000|\\ud[89ab][0-9a-f]{2}(?!\\ud[c-f][0-9a-f]{2})|(?<!\\ud[89ab][0-9a-f]{2})\\ud[c-f][0-9a-f]{2}"
)


def _text(value: str) -> str:
    value = value.replace("\x00", REPLACEMENT)
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        value = _SURROGATE.sub(REPLACEMENT, value)
    return value


def _scalar(value: Any) -> Any:
    if isinstance(value, str):
        return _text(value)
    if isinstance(value, float) and not math.isfinite(value):
        return repr(value)
    return value


def _clean(value: Any) -> Any:
    """A copy with every string, key and float made storable; iterative (any depth)."""
    holder: list[Any] = [None]
    stack: list[tuple[Any, Any, Any]] = [(value, holder, 0)]
    while stack:
        item, parent, key = stack.pop()
        if isinstance(item, dict):
            new: dict[Any, Any] = {}
            parent[key] = new
            for k, v in item.items():
                k = _text(k) if isinstance(k, str) else k
                new[k] = None  # keeps the order
                stack.append((v, new, k))
        elif isinstance(item, (list, tuple)):
            seq: list[Any] = [None] * len(item)
            parent[key] = seq
            stack.extend((v, seq, i) for i, v in enumerate(item))
        else:
            parent[key] = _scalar(item)
    return holder[0]


def db_safe(value: Any) -> Any:
    """``value`` itself when every database can store it (the usual case: one ``json.dumps``,
    as the JSON field itself does, tells), else a cleaned copy."""
    if isinstance(value, str):
        return _text(value)
    try:
        text = json.dumps(value, allow_nan=False)
    except (ValueError, TypeError, RecursionError):
        return _clean(value)
    if "\\u0000" not in text and "\\ud" not in text:  # a plain substring search first: the regex
        return value  # costs ~30 µs on a module's scan state, this ~1 µs
    return _clean(value) if _SUSPECT.search(text) else value
