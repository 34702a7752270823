"""Pages of events anywhere in a log of any size, with bounded work: what the dashboard's event
browser calls.

A cursor is the byte offset of a line start. ``browse(path)`` gives the newest page; each page
carries the cursors of its neighbours (``older``: towards the start of the file, ``newer``:
towards its end), so paging never counts skipped rows and costs the same on the first page of a
1 GB log as on its last. Without a filter a page reads about its own bytes plus one ``chunk``;
with one, the file is read in chunks (backwards for "older") until ``limit`` events match or the
time budget runs out (``complete=False`` then, and ``resume`` goes on where it stopped). Each
byte is read at most once per request, and memory stays at a few chunks plus the page.

Lines are read as the checks read them (:func:`eventstore.log.parse_event`: orjson, else Node's
``JSON.parse`` rules): a blank line (as Node trims it) is no row; a line that does not parse is a
row with ``event=None`` and the checks' reason; a line longer than ``log.MAX_LINE_BYTES`` is a row
whose bytes were never held (only its first 4 KiB, read for the preview); the bytes after the last
newline, at the end of the file only, are a row marked ``torn`` (with its event when it parses:
Node reads it as one, and so do :meth:`Module.read_events` and the checks).

Line numbers are Node's (every "\n" before the line, blank lines included, plus one). They are
counted from the nearest point of an :class:`~eventstore.offsets.OffsetIndex` (at most ``every``
bytes away), else known only when the request read from, or back to, the start of the file.

Text search matches what a person sees, approximately: see :class:`EventFilter`.
"""

from __future__ import annotations

import os
import re
import time as timemod
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from . import log as logmod
from .fileio import open_nofollow
from .offsets import DEFAULT_EVERY, IndexPoint, OffsetIndex, build_index, line_number, overlong

__all__ = [
    "DEFAULT_EVERY",
    "EventFilter",
    "EventPage",
    "EventRow",
    "IndexPoint",
    "OffsetIndex",
    "browse",
    "build_index",
    "line_at",
    "seek",
]

PREVIEW_BYTES = 4096
CHUNK = 256 * 1024
TORN = "torn tail: the last line has no newline yet (an append in progress, or a crash during one)"
ENVELOPE = ("id", "sequence", "action", "table", "branchId", "moduleId", "createdAt", "recordedAt")

# The kinds of line a reader yields.
LINE, LONG, TORN_LINE, TORN_LONG = 0, 1, 2, 3


# -- values as text -------------------------------------------------------------------------


def _text(v: Any) -> str | None:
    """A scalar as JavaScript's String() writes it (near enough: see _as_js_string); None for
    null, an object or an array."""
    if v is None or isinstance(v, (dict, list)):
        return None
    if v is True or v is False:
        return "true" if v else "false"
    if isinstance(v, float) and v.is_integer():
        return str(int(v))
    return str(v)


def record_keys(event: dict[str, Any]) -> set[str]:
    """What an event's record is known by: the keys its table cursor takes
    (:func:`eventstore.log.cursor_keys`), and ``record.id``, ``record.uuid``, ``meta.recordKey``."""
    keys = set(logmod.cursor_keys(event).values())
    record, meta = event.get("record"), event.get("meta")
    for source, name in ((record, "id"), (record, "uuid"), (meta, "recordKey")):
        if isinstance(source, dict) and (v := _text(source.get(name))) is not None:
            keys.add(v)
    return keys


def _primary_key(event: dict[str, Any]) -> str | None:
    keys = logmod.cursor_keys(event)
    for name in logmod.CURSOR_KEYS:
        if name in keys:
            return keys[name]
    record, meta = event.get("record"), event.get("meta")
    for source, name in ((record, "id"), (record, "uuid"), (meta, "recordKey")):
        if isinstance(source, dict) and (v := _text(source.get(name))) is not None:
            return v
    return None


def _leaves(value: Any) -> Iterator[str]:
    """The scalars of a JSON value as text, depth first, without recursion."""
    stack = [value]
    while stack:
        v = stack.pop()
        if isinstance(v, dict):
            stack.extend(reversed(list(v.values())))
        elif isinstance(v, list):
            stack.extend(reversed(v))
        elif (t := _text(v)) is not None:
            yield t


def _at_path(event: dict[str, Any], path: str) -> Any:
    v: Any = event
    for part in path.split("."):
        if isinstance(v, dict):
            v = v.get(part)
        elif isinstance(v, list) and part.isdigit() and int(part) < len(v):
            v = v[int(part)]
        else:
            return None
    return v


_ESCAPE = re.compile(r"\\(u[0-9a-fA-F]{4}|.)", re.S)
_SIMPLE = {"b": "\b", "f": "\f", "n": "\n", "r": "\r", "t": "\t"}


def _unescape(m: re.Match) -> str:
    s = m.group(1)
    return chr(int(s[1:], 16)) if len(s) == 5 else _SIMPLE.get(s, s)


def seen_text(line: bytes) -> str:
    """A line as a person reads it: UTF-8 (an invalid byte as U+FFFD, as Node reads it), JSON
    string escapes decoded (a surrogate pair as its character, a lone one as U+FFFD)."""
    text = line.decode("utf-8", "replace")
    if "\\" in text:
        text = _ESCAPE.sub(_unescape, text)
        if any("\ud800" <= c <= "\udfff" for c in text):
            text = text.encode("utf-16-le", "surrogatepass").decode("utf-16-le", "replace")
    return text


def parse_time(value: Any) -> datetime | None:
    """An ISO 8601 time (``Z`` or an offset; none: UTC) as an aware datetime; None if it is not one."""
    if type(value) is not str:
        return None
    try:
        t = datetime.fromisoformat(value)
    except ValueError:
        return None
    return t.replace(tzinfo=UTC) if t.tzinfo is None else t


# -- filters --------------------------------------------------------------------------------


@dataclass(frozen=True)
class EventFilter:
    """What events a page shows; every field set must hold (None: any).

    ``table``, ``action``, ``event`` (the id) and ``sequence`` are exact. ``record`` is any of
    the keys :func:`record_keys` finds (as the table cursors resolve them, plus ``record.id``,
    ``record.uuid``, ``meta.recordKey``). ``since``/``until``: ISO 8601, compared as times
    (``Z`` or any offset; a time without one is UTC) with the event's createdAt (else
    recordedAt, as Node's lastEventAt): since <= t < until; an event without a readable time
    does not match them.

    ``text``: case-insensitive (Unicode case folding) substring of what a person sees. With
    ``text_fields`` None it is searched in the whole line as written, JSON escapes decoded (so
    "é" finds ``"caf\\u00e9"``; keys and punctuation are part of the line; numbers are matched
    as written). Else only in the values of the envelope (``ENVELOPE`` and the record's keys)
    and of the dotted paths given (each scalar below them on its own, numbers as JavaScript
    writes them): a field outside those is never searched, so a user who cannot see it cannot
    find events by it. Approximate: no Unicode normalisation (a precomposed "é" does not find
    "e" + combining accent), and a line that does not parse (or a long one, of which only the
    first 4 KiB are read) is searched as raw text, and only without ``text_fields``.
    """

    table: str | None = None
    action: str | None = None
    record: str | None = None
    event: str | None = None
    sequence: int | None = None
    since: str | None = None
    until: str | None = None
    text: str | None = None
    text_fields: tuple[str, ...] | None = None

    def is_empty(self) -> bool:
        """True if it lets every row through (``text_fields`` alone restricts nothing)."""
        return not self.text and all(getattr(self, k) is None for k in _FIELDS)


_FIELDS = ("table", "action", "record", "event", "sequence", "since", "until")


def _needle(value: str) -> bytes | None:
    """The bytes a string value must show in a line that holds it, unless the line has an
    escape (a backslash): None when no such bytes exist (U+FFFD may stand for an invalid byte;
    a lone surrogate has no UTF-8)."""
    if "\ufffd" in value:
        return None
    try:
        return value.encode("utf-8")
    except UnicodeEncodeError:
        return None


_NUMBERISH = re.compile(r"[-+.0-9eE]*|-?inf(inity)?|nan|true|false", re.I)
_PLAIN_KEY = re.compile(r'[^"\\\x00-\x1f,\[\]]+')


class Matcher:
    """A filter made ready: bytes prefilters that are necessary conditions (a line without them
    cannot match: they let the scan skip whole chunks), then the test on the parsed event."""

    def __init__(self, where: EventFilter):
        if where.sequence is not None and type(where.sequence) is not int:
            raise ValueError(f"sequence: not a whole number: {where.sequence!r}")
        self.where = where
        self.since = self._time(where.since, "since")
        self.until = self._time(where.until, "until")
        self.fold = where.text.casefold() if where.text else None
        self.fields = where.text_fields
        # A line that is not an event can only match a search of the whole line's text.
        self.wants_event = any(getattr(where, k) is not None for k in _FIELDS) or (
            self.fold is not None and self.fields is not None
        )
        # Each of these must be in a line (lowered for text) unless the line has a backslash.
        self.needles = [n for n in (_needle(v) for v in (where.table, where.action, where.event) if v) if n]
        if where.record and _PLAIN_KEY.fullmatch(where.record) and not _NUMBERISH.fullmatch(where.record):
            self.needles += [n for n in (_needle(where.record),) if n]
        self.digits = str(where.sequence).encode() if isinstance(where.sequence, int) else None
        self.text = None
        if self.fold and not (self.fields is not None and _NUMBERISH.fullmatch(self.fold)):
            self.text = _needle(self.fold)

    @staticmethod
    def _time(value: str | None, name: str) -> datetime | None:
        if value is None:
            return None
        t = parse_time(value)
        if t is None:
            raise ValueError(f"{name}: not an ISO 8601 time: {value!r}")
        return t

    def may_match(self, data: bytes) -> bool:
        """False when no line of ``data`` (one line or a chunk of them) can match."""
        if self.digits is not None and self.digits not in data:
            return False
        if not (self.needles or self.text is not None):
            return True
        escaped = b"\\" in data
        if not escaped and not all(n in data for n in self.needles):
            return False
        return self.text is None or escaped or not data.isascii() or self.text in data.lower()

    def matches(self, line: bytes, event: dict[str, Any] | None) -> bool:
        """The whole test, on a line (without its newline) and its event (None: not one)."""
        if event is None:
            return not self.wants_event and self._in_line(line)
        w = self.where
        if (
            (w.table is not None and event.get("table") != w.table)
            or (w.action is not None and event.get("action") != w.action)
            or (w.event is not None and event.get("id") != w.event)
        ):
            return False
        if w.sequence is not None:
            s = event.get("sequence")
            if s.__class__ is not int or s != w.sequence:
                return False
        if w.record is not None and w.record not in record_keys(event):
            return False
        if self.since is not None or self.until is not None:
            t = parse_time(logmod.event_time(event))
            if t is None or (self.since is not None and t < self.since) or (self.until is not None and t >= self.until):
                return False
        if self.fold is None:
            return True
        return self._in_line(line) if self.fields is None else self._in_fields(event)

    def _in_line(self, line: bytes) -> bool:
        if self.fold is None:
            return True
        if self.text is not None and self.text in line.lower():
            return True
        if line.isascii() and b"\\" not in line:
            return False
        return self.fold in seen_text(line).casefold()

    def _in_fields(self, event: dict[str, Any]) -> bool:
        fold = self.fold
        values: list[Any] = [event.get(k) for k in ENVELOPE]
        values += record_keys(event)
        values += [_at_path(event, p) for p in self.fields or ()]
        return any(fold in t.casefold() for v in values for t in _leaves(v))


# -- rows and pages -------------------------------------------------------------------------


@dataclass(frozen=True)
class EventRow:
    offset: int  # the line's first byte
    length: int  # its bytes up to its "\n" (a "\r" before it included): the next line starts at offset + length + 1
    line: int | None  # 1-based, as Node counts lines (None: not known cheaply)
    event: dict[str, Any] | None  # the parsed event; None: not an event
    error: str | None  # why it is not an event (the checks' words), or that it is a torn tail
    preview: bytes  # the first 4 KiB of the line
    torn: bool = False  # the bytes after the last newline, at the end of the file

    def _get(self, key: str) -> Any:
        return None if self.event is None else self.event.get(key)

    @property
    def sequence(self) -> Any:
        return self._get("sequence")

    @property
    def id(self) -> Any:
        return self._get("id")

    @property
    def action(self) -> Any:
        return self._get("action")

    @property
    def table(self) -> Any:
        return self._get("table")

    @property
    def created_at(self) -> Any:
        return self._get("createdAt")

    @property
    def recorded_at(self) -> Any:
        return self._get("recordedAt")

    @property
    def record_key(self) -> str | None:
        """The record's key as its table cursor names it (key, else id, uuid, uid), else
        record.id, record.uuid, meta.recordKey."""
        return None if self.event is None else _primary_key(self.event)


@dataclass(frozen=True)
class EventPage:
    rows: list[EventRow]  # newest first for "older", in file order for "newer"
    older: int | None  # the cursor of the page towards the start (None: at the start)
    newer: int | None  # the cursor of the page towards the end (None: at the end)
    complete: bool  # False: the budget ran out before ``limit`` rows matched
    resume: int | None  # then: the cursor that goes on with the search (same direction)
    searched: tuple[int, int]  # the bytes [first, last) whose lines this request examined
    bytes_read: int


# -- readers ----------------------------------------------------------------------------------


class _Forward:
    """The physical lines of [start, size) in file order, read ``chunk`` bytes at a time.

    Yields ``(kind, offset, length, data, newlines)`` per line (``newlines``: the "\n" between
    ``start`` and the line), and None before a read once a line was examined and while none is
    half read: where a caller may stop (so that each request gets on by a line at least).
    ``boundary`` is the start of the first line not yet yielded, ``newlines`` the "\n" before
    it. ``skip(block)`` True drops a chunk's complete lines unseen (only counted)."""

    def __init__(self, fd: int, start: int, size: int, chunk: int, skip=None):
        self.fd, self.start, self.size, self.chunk, self.skip = fd, start, size, chunk, skip
        self.boundary, self.newlines, self.bytes_read = start, 0, 0

    def __iter__(self) -> Iterator[tuple[int, int, int, bytes, int] | None]:
        pos, limit = self.start, logmod.MAX_LINE_BYTES
        pieces: list[bytes] = []
        pending = 0
        long = -1  # >= 0: inside a line longer than the limit, this long so far
        while pos < self.size:
            if self.boundary > self.start and long < 0:  # a line examined, none half read
                yield None
            data = os.pread(self.fd, min(self.chunk, self.size - pos), pos)
            if not data:
                break
            pos += len(data)
            self.bytes_read += len(data)
            if long >= 0:
                nl = data.find(b"\n")
                if len(pieces[0]) < PREVIEW_BYTES:  # the preview: the line's first bytes
                    pieces[0] += data[: len(data) if nl < 0 else nl][: PREVIEW_BYTES - len(pieces[0])]
                if nl < 0:
                    long += len(data)
                    continue
                yield self._line(LONG, long + nl, pieces[0])
                pieces, pending, long, data = [], 0, -1, data[nl + 1 :]
            last = data.rfind(b"\n")
            if last < 0:
                pieces.append(data)
                pending += len(data)
                if pos // logmod.CHUNK * logmod.CHUNK - (pos - pending) > limit:  # long for LineReader
                    pieces, long = [b"".join(pieces)[:PREVIEW_BYTES]], pending
                continue
            yield from self._block(b"".join((*pieces, data[: last + 1])) if pieces else data[: last + 1])
            pieces, pending = ([data[last + 1 :]], len(data) - last - 1) if last + 1 < len(data) else ([], 0)
        if long >= 0:
            yield self._line(TORN_LONG, long, pieces[0])
        elif pieces:
            tail = b"".join(pieces)
            yield self._line(TORN_LONG if len(tail) > limit else TORN_LINE, len(tail), tail)

    def _line(self, kind: int, length: int, data: bytes) -> tuple[int, int, int, bytes, int]:
        off, n = self.boundary, self.newlines
        complete = kind < TORN_LINE
        self.boundary, self.newlines = off + length + complete, n + complete
        return kind, off, length, data, n

    def _block(self, block: bytes) -> Iterator[tuple[int, int, int, bytes, int]]:
        """Complete lines (``block`` ends with "\n") that start at ``boundary``."""
        if self.skip is not None and self.skip(block):
            self.boundary += len(block)
            self.newlines += block.count(b"\n")
            return
        limit = logmod.MAX_LINE_BYTES
        off, n = self.boundary, self.newlines
        lines = block.split(b"\n")
        lines.pop()
        for line in lines:
            length = len(line)
            self.boundary, self.newlines = off + length + 1, n + 1
            yield (LONG if length > limit and overlong(off, off + length) else LINE), off, length, line, n
            off += length + 1
            n += 1


def _surely_long(start: int, end: int, torn: bool) -> bool:
    """True if the line that ends at ``end`` and starts at ``start`` or before is overlong."""
    if torn:
        return end - start > logmod.MAX_LINE_BYTES
    return end // logmod.CHUNK * logmod.CHUNK - start > logmod.MAX_LINE_BYTES


class _Backward:
    """The physical lines of [0, end) newest first, read backwards ``chunk`` bytes at a time;
    ``end`` is a line start, or the size of the file (then a torn tail comes first).

    Yields ``(kind, offset, length, data, newlines)`` (``newlines``: the "\n" from the line's
    start to ``end``), and None where a caller may stop (as :class:`_Forward` does).
    ``boundary`` is the start of the last line yielded (``end`` at first), ``newlines`` the
    "\n" from there to ``end``. ``skip`` as for :class:`_Forward`."""

    def __init__(self, fd: int, end: int, size: int, chunk: int, skip=None):
        self.fd, self.end, self.size, self.chunk, self.skip = fd, end, size, chunk, skip
        self.boundary, self.newlines, self.bytes_read = end, 0, 0

    def __iter__(self) -> Iterator[tuple[int, int, int, bytes, int] | None]:
        pos, limit = self.end, logmod.MAX_LINE_BYTES
        buf = b""  # the bytes [pos, boundary)
        long_end = -1  # >= 0: inside a line longer than the limit that ends there
        while pos > 0:
            if self.boundary < self.end and long_end < 0:  # a line examined, none half read
                yield None
            lo = max(0, pos - self.chunk)
            data = os.pread(self.fd, pos - lo, lo)
            self.bytes_read += len(data)
            pos = lo
            if long_end >= 0:
                nl = data.rfind(b"\n")
                if nl < 0 and lo > 0:
                    continue
                yield self._long(lo + nl + 1, long_end)
                long_end, data = -1, data[: nl + 1]
            buf = data + buf
            first = -1 if lo == 0 else buf.find(b"\n")
            if first < 0 and lo > 0:
                end = self.boundary - (buf[-1:] == b"\n")
                if _surely_long(lo, end, end == self.size):
                    long_end, buf = end, b""
                continue
            yield from self._block(buf[first + 1 :], lo + first + 1)
            buf = buf[: first + 1]
            if first > limit and _surely_long(lo, lo + first, False):
                long_end, buf = lo + first, b""
        if long_end >= 0:
            yield self._long(0, long_end)

    def _long(self, start: int, line_end: int) -> tuple[int, int, int, bytes, int]:
        """A line too long to hold, [start, line_end) (``line_end``: its "\n", or the end of
        the file for a torn tail): only its first PREVIEW_BYTES are read."""
        torn = line_end == self.size
        head = os.pread(self.fd, min(PREVIEW_BYTES, line_end - start), start)
        self.bytes_read += len(head)
        self.newlines += not torn
        self.boundary = start
        return (TORN_LONG if torn else LONG), start, line_end - start, head, self.newlines

    def _block(self, block: bytes, off: int) -> Iterator[tuple[int, int, int, bytes, int]]:
        """Lines with a known start: [off, boundary), the last maybe a torn tail."""
        if not block:
            return
        if self.skip is not None and self.skip(block):
            self.boundary = off
            self.newlines += block.count(b"\n")
            return
        lines = block.split(b"\n")
        torn = lines.pop()  # b"" when the block ends with "\n"; else the torn tail
        limit = logmod.MAX_LINE_BYTES
        top, n = off + len(block), self.newlines
        if torn:
            top -= len(torn)
            self.boundary = top
            yield (TORN_LONG if len(torn) > limit else TORN_LINE), top, len(torn), torn, n
        for line in reversed(lines):
            length = len(line)
            top -= length + 1
            n += 1
            self.boundary, self.newlines = top, n
            yield (LONG if length > limit and overlong(top, top + length) else LINE), top, length, line, n


# -- the search -------------------------------------------------------------------------------


def _overlong(length: int) -> str:
    return f"line is longer than {logmod.MAX_LINE_BYTES} bytes ({length} bytes); not read"


class _Search:
    """What one request found: the rows (with the newlines that place them), and how it ended:
    ``stopped`` None (the reader reached the edge of the file), "full" (``limit`` rows, and
    nothing more in what was read), "time" (the budget ran out first); ``next``: the first
    match past a full page when it was already in memory."""

    def __init__(self, matcher: Matcher | None, limit: int, budget: float, clock, started: float):
        self.matcher, self.limit, self.budget, self.clock, self.started = matcher, limit, budget, clock, started
        self.rows: list[tuple[int, int, int, bytes, int, dict[str, Any] | None, str | None]] = []
        self.stopped: str | None = None
        self.next: tuple[int, int, int] | None = None

    def run(self, reader) -> None:
        full = False
        for item in reader:
            if item is None:  # the reader would read another chunk
                if full:
                    self.stopped = "full"
                    return
                if self.clock() - self.started >= self.budget:
                    self.stopped = "time"
                    return
                continue
            kind, off, length, data, newlines = item
            found = self._look(kind, length, data, full)
            if found is None:
                continue
            if full:
                self.next = (kind, off, length)
                self.stopped = "full"
                return
            self.rows.append((kind, off, length, data[:PREVIEW_BYTES], newlines, *found))
            full = len(self.rows) >= self.limit

    def _look(self, kind: int, length: int, data: bytes, full: bool) -> tuple[dict | None, str | None] | None:
        """(event, error) if the line is a row that matches, else None."""
        m = self.matcher
        if kind in (LONG, TORN_LONG):
            if m is not None and not m.matches(data[:PREVIEW_BYTES], None):
                return None
            return None, (f"{TORN}; " if kind == TORN_LONG else "") + _overlong(length)
        line = data[:-1] if data[-1:] == b"\r" else data
        if (m is not None and not m.may_match(line)) or logmod.is_blank(line):
            return None
        if full and m is None:
            return None, None  # past the page: that a row is there is enough
        event, error = logmod.parse_event(line)
        if m is not None and not m.matches(line, event):
            return None
        if kind == TORN_LINE:
            error = TORN if event is not None else f"{TORN}; {error}"
        return event, error

    def page_rows(self, first_line: int | None, sign: int) -> list[EventRow]:
        return [
            EventRow(off, length, None if first_line is None else first_line + sign * n, event, error, preview, torn)
            for kind, off, length, preview, n, event, error in self.rows
            for torn in (kind >= TORN_LINE,)
        ]


def _line_start(fd: int, offset: int, size: int) -> tuple[int, int]:
    """The start of the line that holds byte ``offset`` (``size`` for an offset past the end),
    and the bytes read to find it."""
    if offset <= 0:
        return 0, 0
    if offset >= size:
        return size, 0
    if os.pread(fd, 1, offset - 1) == b"\n":
        return offset, 1
    pos, read, step = offset - 1, 1, 4096
    while pos > 0:
        lo = max(0, pos - step)
        data = os.pread(fd, pos - lo, lo)
        read += len(data)
        nl = data.rfind(b"\n")
        if nl >= 0:
            return lo + nl + 1, read
        pos, step = lo, min(step * 2, CHUNK)
    return 0, read


def browse(
    path: Path | str,
    *,
    cursor: int | None = None,
    direction: str = "older",
    limit: int = 50,
    where: EventFilter | None = None,
    index: OffsetIndex | None = None,
    budget_seconds: float = 2.0,
    chunk: int = CHUNK,
    clock=timemod.monotonic,
) -> EventPage:
    """A page of the log's rows (see the module's text). ``cursor``: a line start (an offset
    inside a line stands for that line's start; None: the end for "older", the start for
    "newer"); "older" gives the rows that start before it, newest first, "newer" those that
    start at or after it, in file order. At least one chunk is read whatever the budget.
    Raises OSError if the log cannot be read, ValueError for a bad argument or filter time."""
    if direction not in ("older", "newer"):
        raise ValueError(f"direction must be 'older' or 'newer', not {direction!r}")
    if limit < 1 or chunk < 1:
        raise ValueError("limit and chunk must be at least 1")
    matcher = None if where is None or where.is_empty() else Matcher(where)
    started = clock()
    fd = open_nofollow(path)
    try:
        st = os.fstat(fd)
        size = st.st_size
        older = direction == "older"
        at, read = (size, 0) if cursor is None and older else _line_start(fd, cursor or 0, size)
        skip = None if matcher is None else (lambda block: not matcher.may_match(block))
        reader = (_Backward if older else _Forward)(fd, at, size, chunk, skip)
        search = _Search(matcher, limit, budget_seconds, clock, started)
        search.run(reader)
        read += reader.bytes_read
        if older and search.stopped is None:
            first_line, counted = reader.newlines + 1, 0
        else:
            first_line, counted = line_number(fd, index, st, at)
    finally:
        os.close(fd)
    rows = search.page_rows(first_line, -1 if older else 1)
    return _page(search, reader, rows, older, at, size, cursor, read + counted)


def _page(
    search: _Search, reader, rows: list[EventRow], older: bool, at: int, size: int, cursor, read: int
) -> EventPage:
    """The page's cursors from where the search stopped."""
    stopped, boundary = search.stopped, reader.boundary
    if stopped == "time":
        onward = boundary
    elif search.next is not None:
        kind, off, length = search.next
        onward = off + length + 1 if older else off
    elif stopped == "full":
        onward = boundary
    else:
        onward = None
    if older:
        back = at if cursor is not None and at < size else None
        searched = (boundary if stopped else 0, at)
        return EventPage(
            rows, onward or None, back, stopped != "time", onward if stopped == "time" else None, searched, read
        )
    searched = (at, boundary if stopped else size)
    return EventPage(rows, at or None, onward, stopped != "time", onward if stopped == "time" else None, searched, read)


def line_at(path: Path | str, offset: int, index: OffsetIndex | None = None) -> EventRow | None:
    """The row of the line that starts at, or holds, byte ``offset`` (a finding's link); None
    past the end of the file or on a blank line. Its line number is known at the start of the
    file or through ``index``."""
    fd = open_nofollow(path)
    try:
        st = os.fstat(fd)
        if offset < 0 or offset >= st.st_size:
            return None
        start, _ = _line_start(fd, offset, st.st_size)
        search = _Search(None, 1, float("inf"), timemod.monotonic, 0.0)
        search.run(_Forward(fd, start, st.st_size, CHUNK))
        if not search.rows or search.rows[0][1] != start:
            return None
        first_line, _ = line_number(fd, index, st, start)
    finally:
        os.close(fd)
    return search.page_rows(first_line, 1)[0]


# -- seeking --------------------------------------------------------------------------------


def seek(
    path: Path | str,
    index: OffsetIndex,
    *,
    line: int | None = None,
    sequence: int | None = None,
    time: str | None = None,
) -> int:
    """A line start at or just before the target (one of: a line number, a sequence, an ISO 8601
    time), from which to browse "newer" to reach it: the nearest point of ``index`` before it,
    then a forward read of at most the points' spacing (plus a chunk) to the line itself (for a
    sequence: the first event with one at least as high; for a time: the first event at or
    after it). Sequences and times are taken to grow along the file, as Node's appends make
    them: where they go back (a writer race, a client's clock) the result can be after an
    earlier occurrence (a browse with a ``sequence``/``since`` filter finds them all). An index
    of another file (or one that does not fit it any more) is ignored: the read starts at 0.
    Raises OSError if the log cannot be read, ValueError for a bad target."""
    if sum(v is not None for v in (line, sequence, time)) != 1:
        raise ValueError("seek: give one of line, sequence, time")
    when = None
    if time is not None and (when := parse_time(time)) is None:
        raise ValueError(f"time: not an ISO 8601 time: {time!r}")
    fd = open_nofollow(path)
    try:
        st = os.fstat(fd)
        known, _ = index.describes(fd, st)
        points = list(index.points) if known else [IndexPoint(0, 1, None, None)]
        if known and index.end > points[-1].offset and time is None:
            points.append(IndexPoint(index.end, index.lines + 1, index.sequence, None))
        i = _seek_point(points, line, sequence, when)
        start = points[i]
        stop = (points[i + 1].offset if i + 1 < len(points) else max(start.offset, index.end) + index.every) + CHUNK
        return _seek_scan(_Forward(fd, start.offset, st.st_size, CHUNK), start.line, stop, line, sequence, when)
    finally:
        os.close(fd)


def _seek_point(points: list[IndexPoint], line: int | None, sequence: int | None, when: datetime | None) -> int:
    """The last point the target is not before."""
    best = 0
    for i, p in enumerate(points):
        if line is not None:
            ok = p.line <= line
        elif sequence is not None:
            ok = p.sequence is None or p.sequence < sequence
        else:
            t = parse_time(p.created_at)
            ok = t is not None and when is not None and t < when
        if ok:
            best = i
        elif line is not None or sequence is not None:
            break
    return best


def _seek_scan(
    reader: _Forward, first_line: int, stop: int, line: int | None, sequence: int | None, when: datetime | None
) -> int:
    for item in reader:
        if item is None:
            continue
        kind, off, _length, data, n = item
        if off >= stop or (line is not None and first_line + n >= line):
            return off
        if line is not None or kind in (LONG, TORN_LONG):
            continue
        data = data[:-1] if data[-1:] == b"\r" else data
        if logmod.is_blank(data):
            continue
        event, _ = logmod.parse_event(data)
        if event is None:
            continue
        if sequence is not None:
            s = event.get("sequence")
            if logmod.is_sequence(s) and s >= sequence:
                return off
        elif (t := parse_time(logmod.event_time(event))) is not None and when is not None and t >= when:
            return off
    return reader.boundary
