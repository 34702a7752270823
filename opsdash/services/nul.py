"""PostgreSQL stores no NUL character in text or jsonb (SQLite does). Text read from the files
(a crash's NUL bytes in a log line, a NUL in a meta value or an event's id) has each NUL replaced
by U+FFFD before it is saved, on every database alike, so that one damaged file never fails a
scan pass or a job on PostgreSQL."""

from __future__ import annotations

from typing import Any

import orjson

REPLACEMENT = "\ufffd"


def _replace(value: Any) -> Any:
    if isinstance(value, str):
        return value.replace("\x00", REPLACEMENT)
    if isinstance(value, dict):
        return {_replace(k): _replace(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_replace(v) for v in value]
    return value


def nul_free(value: Any) -> Any:
    """``value`` itself when it holds no NUL character (the usual case: one orjson pass to tell),
    else a copy with every NUL in its strings and keys replaced."""
    if isinstance(value, str):
        return _replace(value)
    try:
        if b"\\u0000" not in orjson.dumps(value, option=orjson.OPT_NON_STR_KEYS):
            return value
    except TypeError:
        pass
    return _replace(value)
