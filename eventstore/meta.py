"""The meta document (``events.meta.json``): defaults, strict parsing with error positions,
validation, Node's ``mergeDeep``, serialisation as ``JSON.stringify(m, null, 2)``, and salvage
of the longest valid prefix of a damaged file. The only meta parser of the project.
"""

from __future__ import annotations

import copy
import json
import math
from dataclasses import dataclass, field
from json.encoder import encode_basestring, encode_basestring_ascii
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
STRING_OR_NULL_KEYS = (
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
OBJECT_KEYS = ("tableCursors", "lastServedTableIds", "lastClientTableIds")

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
        return None, ParseError(str(exc), exc.pos, exc.lineno, exc.colno, len(text[: exc.pos].encode()))
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
    for key in STRING_OR_NULL_KEYS:
        v = value.get(key)
        if v is not None and not isinstance(v, str):
            out.append(Problem("warning", f"{key} is a {_js_type(v)}, expected a string or null", {"key": key}))
    for key in OBJECT_KEYS:
        if key in value and not isinstance(value[key], dict):
            out.append(
                Problem(
                    "warning",
                    f"{key} is {_js_type(value[key])}, expected an object; Node falls back to {{}}",
                    {"key": key},
                )
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
    for key in OBJECT_KEYS:  # fresh objects: the defaults' own must never be shared or mutated
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
        return copy_json(source)
    out = dict(target)
    for key, value in source.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = merge_deep(out[key], value)
        else:
            out[key] = copy_json(value)
    return out


def copy_json(value: Any) -> Any:
    """``copy.deepcopy`` of a JSON value without recursion: a parsed meta or log line may nest
    ~1,000 levels, more than Python's recursion limit allows deepcopy (two frames a level).
    Shared and circular references are kept as deepcopy keeps them."""
    if type(value) is not dict and type(value) is not list:
        return value if value is None or isinstance(value, (str, int, float)) else copy.deepcopy(value)
    memo: dict[int, Any] = {}
    root = memo[id(value)] = {} if type(value) is dict else []
    stack = [(value, root)]
    while stack:
        src, dst = stack.pop()
        for key, v in src.items() if type(src) is dict else enumerate(src):
            if type(v) is dict or type(v) is list:
                if id(v) not in memo:
                    memo[id(v)] = {} if type(v) is dict else []
                    stack.append((v, memo[id(v)]))
                v = memo[id(v)]
            elif not (v is None or isinstance(v, (str, int, float))):
                v = copy.deepcopy(v)
            if type(dst) is dict:
                dst[key] = v
            else:
                dst.append(v)
    return root


def dumps(value: dict[str, Any]) -> bytes:
    """Serialise like ``JSON.stringify(meta, null, 2)``: 2-space indent, UTF-8, no final newline."""
    try:
        return orjson.dumps(value, option=orjson.OPT_INDENT_2)
    except TypeError:  # integers beyond 64 bits, lone surrogates, nesting deeper than 255
        try:
            return _encode(value, encode_basestring).encode("utf-8")
        except UnicodeEncodeError:  # a lone surrogate ("\ud800" parses): escape it, as JSON.stringify does
            return _encode(value, encode_basestring_ascii).encode("ascii")


_END = object()


def _encode(value: Any, string) -> str:
    """What ``json.dumps(value, indent=2)`` writes, without recursion (any nesting depth), and
    NaN and infinities as ``null`` (as JSON.stringify and orjson write them). Raises TypeError
    for a value that is not JSON, ValueError for a circular reference."""

    def scalar(v: Any) -> str:
        if v is None:
            return "null"
        if v is True:
            return "true"
        if v is False:
            return "false"
        if isinstance(v, str):
            return string(v)
        if isinstance(v, int):
            return int.__repr__(v)
        if isinstance(v, float):
            return float.__repr__(v) if math.isfinite(v) else "null"
        raise TypeError(f"Object of type {type(v).__name__} is not JSON serializable")

    out: list[str] = []
    stack: list[list[Any]] = []  # [items iterator, is an object, indent level, items written, container]
    open_ids: set[int] = set()

    def start(v: Any, level: int) -> None:
        if isinstance(v, (dict, list, tuple)):
            if not v:
                out.append("{}" if isinstance(v, dict) else "[]")
                return
            if id(v) in open_ids:
                raise ValueError("Circular reference detected")
            open_ids.add(id(v))
            is_obj = isinstance(v, dict)
            out.append("{" if is_obj else "[")
            stack.append([iter(v.items()) if is_obj else iter(v), is_obj, level + 1, 0, v])
        else:
            out.append(scalar(v))

    start(value, 0)
    while stack:
        frame = stack[-1]
        item = next(frame[0], _END)
        level = frame[2]
        if item is _END:
            stack.pop()
            open_ids.discard(id(frame[4]))
            out.append("\n" + "  " * (level - 1) + ("}" if frame[1] else "]"))
            continue
        out.append(("\n" if frame[3] == 0 else ",\n") + "  " * level)
        frame[3] += 1
        if frame[1]:
            key, item = item
            if not isinstance(key, str):
                if key is not None and not isinstance(key, (int, float)):
                    raise TypeError(f"keys must be str, int, float, bool or None, not {type(key).__name__}")
                key = scalar(key)
            out.append(string(key) + ": ")
        start(item, level)
    return "".join(out)


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
        value, _end = json.JSONDecoder(parse_constant=_reject_constant).raw_decode(text, start)
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
