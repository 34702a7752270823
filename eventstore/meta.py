"""The meta document (``events.meta.json``): defaults, strict parsing with error positions,
validation, Node's ``mergeDeep``, serialisation as ``JSON.stringify(m, null, 2)``, and salvage
of the longest valid prefix of a damaged file. The only meta parser of the project.
"""

from __future__ import annotations

import copy
import json
from dataclasses import dataclass, field
from typing import Any

import orjson

# Key order follows the Node server's defaults; unknown keys keep their place after these.
DEFAULTS: dict[str, Any] = {
    "branchId": None,
    "moduleId": None,
    "liveCreatedAt": None,
    "currentDay": None,
    "lastClosedDate": None,
    "lastEventId": None,
    "lastEventAt": None,
    "lastAckId": None,
    "totalEvents": 0,
    "updatedAt": None,
    "tableCursors": {},
    "lastServedTableIds": {},
    "lastClientTableIds": {},
    "lastSnapshotMarker": None,
    "lastClientSnapshotMarker": None,
    "lastClientSyncAt": None,
}
KNOWN_KEYS = frozenset(DEFAULTS)
# Rebuilt from the log.
DERIVABLE = ("totalEvents", "lastEventId", "lastEventAt", "tableCursors")
# Client sync state and history: only a surviving copy can give them back.
NON_DERIVABLE = (
    "liveCreatedAt",
    "currentDay",
    "lastClosedDate",
    "lastAckId",
    "lastServedTableIds",
    "lastClientTableIds",
    "lastSnapshotMarker",
    "lastClientSnapshotMarker",
    "lastClientSyncAt",
)
_STRING_OR_NULL = (
    "branchId",
    "moduleId",
    "liveCreatedAt",
    "currentDay",
    "lastClosedDate",
    "lastEventId",
    "lastEventAt",
    "lastAckId",
    "updatedAt",
    "lastClientSyncAt",
)
_OBJECTS = ("tableCursors", "lastServedTableIds", "lastClientTableIds")

MAX_META_BYTES = 64 * 1024 * 1024
UTF8_BOM = b"\xef\xbb\xbf"


@dataclass(slots=True)
class ParseError:
    """Why a meta file is not valid JSON, with the position for marking it in a viewer.

    ``pos`` is a character offset into the text decoded with ``errors="replace"``; ``byte`` the
    byte offset when known; ``line``/``col`` are 1-based.
    """

    message: str
    pos: int
    line: int
    col: int
    byte: int | None = None

    def to_dict(self) -> dict[str, Any]:
        return {"message": self.message, "pos": self.pos, "line": self.line, "col": self.col, "byte": self.byte}


@dataclass(slots=True)
class Problem:
    """A reason a parsed meta is unusable (``critical``) or doubtful (``warning``)."""

    severity: str
    message: str
    detail: dict[str, Any] = field(default_factory=dict)


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not valid JSON")


def _line_col(text: str, pos: int) -> tuple[int, int]:
    line = text.count("\n", 0, pos) + 1
    col = pos - (text.rfind("\n", 0, pos) + 1) + 1
    return line, col


def decode_text(data: bytes) -> str:
    """The file's text for display: UTF-8 with bad bytes replaced."""
    return data.decode("utf-8", errors="replace")


def parse(data: bytes) -> tuple[Any, ParseError | None]:
    """Parse meta bytes as strict JSON (what ``JSON.parse`` accepts, without a BOM).

    Returns ``(value, None)`` or ``(None, ParseError)``. Never raises for any input.
    """
    if not data.strip():
        return None, ParseError("file is empty" if not data else "file holds only whitespace", 0, 1, 1, 0)
    if data.startswith(UTF8_BOM):
        return None, ParseError("file starts with a UTF-8 byte order mark", 0, 1, 1, 0)
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        shown = decode_text(data[: exc.start])
        line, col = _line_col(shown, len(shown))
        return None, ParseError(f"invalid UTF-8 at byte {exc.start}", len(shown), line, col, exc.start)
    nul = text.find("\x00")
    try:
        value = json.loads(text, parse_constant=_reject_constant)
    except json.JSONDecodeError as exc:
        if 0 <= nul <= exc.pos:
            line, col = _line_col(text, nul)
            return None, ParseError(f"NUL byte at position {nul}", nul, line, col, len(text[:nul].encode()))
        return None, ParseError(
            str(exc), exc.pos, exc.lineno, exc.colno, len(text[: exc.pos].encode())
        )
    except ValueError as exc:  # NaN / Infinity
        return None, ParseError(str(exc), 0, 1, 1, 0)
    except RecursionError:
        return None, ParseError("nested too deeply to parse", 0, 1, 1, 0)
    return value, None


def problems(value: Any, *, branch: str | None = None, module: str | None = None) -> list[Problem]:
    """What is wrong with a parsed meta, as the Node server would suffer it.

    Critical: not an object, or ``totalEvents`` not a whole number >= 0 (Node computes the next
    sequence from it). Warning: keys of the wrong type where Node falls back to a default, and a
    branchId/moduleId that names another module.
    """
    if not isinstance(value, dict):
        kind = type(value).__name__ if value is not None else "null"
        return [Problem("critical", f"meta is a JSON {_js_type(value)}, not an object", {"type": kind})]
    out: list[Problem] = []
    total = value.get("totalEvents", 0)
    if not _is_count(total):
        out.append(
            Problem(
                "critical",
                f"totalEvents is {json.dumps(total)[:60]}, not a whole number >= 0",
                {"key": "totalEvents", "value": total if _jsonable_scalar(total) else str(total)[:60]},
            )
        )
    for key in _STRING_OR_NULL:
        v = value.get(key)
        if v is not None and not isinstance(v, str):
            out.append(Problem("warning", f"{key} is a {_js_type(v)}, expected a string or null", {"key": key}))
    for key in _OBJECTS:
        if key in value and not isinstance(value[key], dict):
            out.append(
                Problem("warning", f"{key} is {_js_type(value[key])}, expected an object; Node falls back to {{}}", {"key": key})
            )
    for key, expected in (("branchId", branch), ("moduleId", module)):
        v = value.get(key)
        if expected is not None and isinstance(v, str) and v != expected:
            out.append(Problem("warning", f"{key} is {v!r} but the folder is {expected!r}", {"key": key, "value": v}))
    return out


def _is_count(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool) and v >= 0


def _jsonable_scalar(v: Any) -> bool:
    return v is None or isinstance(v, (str, int, float, bool))


def _js_type(v: Any) -> str:
    if v is None:
        return "null"
    if isinstance(v, bool):
        return "boolean"
    if isinstance(v, (int, float)):
        return "number"
    if isinstance(v, str):
        return "string"
    if isinstance(v, list):
        return "array"
    return "object"


def total_events(value: dict[str, Any]) -> int | None:
    v = value.get("totalEvents", 0)
    return v if _is_count(v) else None


def with_defaults(value: dict[str, Any]) -> dict[str, Any]:
    """Defaults for missing keys, then the file's keys (unknown keys kept), as Node's loadMeta."""
    out = dict(DEFAULTS)
    out.update(value)
    for key in _OBJECTS:  # fresh objects: the defaults' own must never be shared or mutated
        if not isinstance(value.get(key), dict):
            out[key] = {}
    if not _is_count(out.get("totalEvents")):
        out["totalEvents"] = 0
    return out


def merge_deep(target: Any, source: Any) -> Any:
    """Node's ``mergeDeep``: objects merge key by key (recursively); anything else replaces.

    Arrays are replaced, not concatenated; ``null`` in the patch sets ``null``. Inputs are not
    modified.
    """
    if not isinstance(target, dict) or not isinstance(source, dict):
        return copy.deepcopy(source)
    out = dict(target)
    for key, value in source.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = merge_deep(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out


def dumps(value: dict[str, Any]) -> bytes:
    """Serialise like ``JSON.stringify(meta, null, 2)``: 2-space indent, UTF-8, no final newline."""
    try:
        return orjson.dumps(value, option=orjson.OPT_INDENT_2)
    except TypeError:  # integers beyond 64 bits or lone surrogates: the slower encoder handles them
        text = json.dumps(value, indent=2, ensure_ascii=False, allow_nan=False)
        try:
            return text.encode("utf-8")
        except UnicodeEncodeError:  # a lone surrogate ("\ud800" parses): escape it, as JSON.stringify does
            return json.dumps(value, indent=2, ensure_ascii=True, allow_nan=False).encode("ascii")


def salvage_prefix(data: bytes) -> dict[str, Any] | None:
    """The object in the longest valid JSON prefix of a damaged meta, or None.

    Handles the two usual damages: a whole document followed by the tail of a longer one (the
    concurrent-writer overlap), and a document cut short (a write lost in a crash), where the
    complete top-level entries before the cut are kept. Never raises.
    """
    if data.startswith(UTF8_BOM):
        data = data[len(UTF8_BOM) :]
    text = decode_text(data)
    start = len(text) - len(text.lstrip())
    try:
        value, _end = json.JSONDecoder().raw_decode(text, start)
        return value if isinstance(value, dict) else None
    except (ValueError, RecursionError):
        pass
    if not text[start:].startswith("{"):
        return None
    # Cut before each top-level key (2-space indent, as Node writes) from the end, and close.
    pos = len(text)
    for _ in range(10_000):
        pos = text.rfind('\n  "', start, pos)
        if pos < 0:
            break
        candidate = text[:pos].rstrip().rstrip(",") + "\n}"
        try:
            value = json.loads(candidate, parse_constant=_reject_constant)
        except (ValueError, RecursionError):
            continue
        return value if isinstance(value, dict) else None
    return None
