"""Streaming reader of ``events.log`` and the facts derivable from it.

Memory stays bounded whatever the log size: the file is read in 1 MiB chunks and only
per-table cursors, counters, capped samples and a sequence bitmap (one bit per sequence
number) are kept.
"""

from __future__ import annotations

import base64
import json
import multiprocessing as mp
import os
import queue as queuemod
import re
import threading
import zlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson

from . import shapes
from .fileio import open_nofollow
from .shapes import Malformed

CHUNK = 1 << 20
SAMPLE_LIMIT = 100
# A line longer than this (a run of NUL bytes left by a crash, a runaway writer) is a bad line
# whose bytes are skipped, not kept: memory and time stay linear in the file whatever it holds.
MAX_LINE_BYTES = 16 << 20
LONG_LINE_KEPT = 120  # the start of an overlong line that is kept for its preview
# Sequence numbers above this are not tracked for duplicates/gaps (the bitmap would be > 16 MiB).
MAX_TRACKED_SEQUENCE = 1 << 27
CURSOR_KEYS = ("key", "id", "uuid", "uid")

# Node reads the log as UTF-8 text (an invalid byte becomes U+FFFD), trims each line with
# String.prototype.trim() (which strips these: ECMAScript's WhiteSpace and LineTerminator, the
# BOM among them), skips the empty ones and JSON.parse()s the rest. bytes.strip() knows only the
# ASCII ones, and orjson is stricter than JSON.parse (no lone "\ud800" escape, no 1e400, no
# invalid UTF-8 in a string), so a line orjson refuses is tried again the way Node reads it.
JS_WHITESPACE = (
    "\t\n\x0b\x0c\r \xa0\u1680\u2000\u2001\u2002\u2003\u2004\u2005\u2006\u2007\u2008\u2009\u200a"
    "\u2028\u2029\u202f\u205f\u3000\ufeff"
)
_ASCII_WHITESPACE = b" \t\n\r\x0b\x0c"


def is_blank(line: bytes) -> bool:
    """True if Node skips the line: nothing is left once it is trimmed."""
    stripped = line.strip(_ASCII_WHITESPACE)
    if not stripped:
        return True
    if stripped[0] < 0x80 and stripped[-1] < 0x80:  # the common case: "{...}"
        return False
    return not stripped.decode("utf-8", "replace").strip(JS_WHITESPACE)


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def _js_int(text: str) -> int | float:
    """An integer as orjson gives it (within 64 bits) or as a double, as JavaScript has it."""
    try:
        value = int(text)
    except ValueError:  # more digits than Python converts: a double (Infinity if out of range)
        return float(text)
    return value if -(1 << 63) <= value < (1 << 64) else float(text)  # float(text): inf, not OverflowError


def node_loads(line: bytes) -> Any:
    """``JSON.parse(line.trim())`` on the line read as UTF-8 text, as Node does it. Raises
    ValueError (or RecursionError) where JSON.parse throws."""
    text = line.decode("utf-8", "replace").strip(JS_WHITESPACE)
    return json.loads(text, parse_constant=_reject_constant, parse_int=_js_int)


@dataclass(frozen=True, slots=True)
class Overlong:
    """A line longer than ``MAX_LINE_BYTES`` (a crash's run of NUL bytes, a runaway writer): its
    first ``LONG_LINE_KEPT`` bytes and its whole length. The rest was skipped, not kept."""

    head: bytes
    length: int


class LineReader:
    """The lines of bytes [``start``, ``end``) of an open log (to its end when ``end`` is None),
    read ``CHUNK`` bytes at a time, in constant memory: the one line splitter of this module.

    Iterating yields ``(lines_before, offset, lines)`` in file order: ``lines`` is the list of
    the complete lines one read finished (without their "\n", a "\r" kept), or an
    :class:`Overlong` for one line longer than ``MAX_LINE_BYTES``; ``lines_before`` counts the
    physical lines before them (from ``start``), ``offset`` is the byte where the first begins.
    Afterwards ``tail`` is what follows the last newline (bytes, or an Overlong), starting at
    ``tail_offset`` after ``lines`` physical lines, and ``read`` the bytes read. ``progress``
    is called with the bytes read so far after each read, ``feed`` (a checkpoint hash's) with
    each chunk read. ``fd`` must be at ``start``.
    """

    def __init__(self, fd: int, start: int, end: int | None = None, progress=None, feed=None):
        self.fd, self.start, self.end, self.progress, self.feed = fd, start, end, progress, feed
        self.lines = 0
        self.tail_offset = start
        self.tail: bytes | Overlong = b""
        self.read = 0

    def __iter__(self) -> Iterator[tuple[int, int, list[bytes] | Overlong]]:
        fd, end, progress, feed = self.fd, self.end, self.progress, self.feed
        pos = self.start
        lineno, offset = 0, self.start
        pending = b""
        long_length = -1  # >= 0 while skipping the rest of a line longer than MAX_LINE_BYTES
        while end is None or pos < end:
            chunk = os.read(fd, CHUNK if end is None else min(CHUNK, end - pos))
            if not chunk:
                break
            pos += len(chunk)
            if feed is not None:
                feed(chunk)
            if long_length >= 0:
                nl = chunk.find(b"\n")
                if nl < 0:
                    long_length += len(chunk)
                    if progress is not None:
                        progress(pos - self.start)
                    continue
                long_length += nl
                yield lineno, offset, Overlong(pending, long_length)
                lineno += 1
                offset += long_length + 1
                pending, long_length = b"", -1
                chunk = chunk[nl + 1 :]
            buffered = len(pending) + len(chunk)
            lines = (pending + chunk).split(b"\n") if pending else chunk.split(b"\n")
            pending = lines.pop()
            if lines:
                yield lineno, offset, lines
                lineno += len(lines)
                offset += buffered - len(pending)
            if len(pending) > MAX_LINE_BYTES:
                pending, long_length = pending[:LONG_LINE_KEPT], len(pending)
            if progress is not None:
                progress(pos - self.start)
        self.lines, self.tail_offset, self.read = lineno, offset, pos - self.start
        self.tail = Overlong(pending, long_length) if long_length >= 0 else pending


@dataclass(slots=True)
class RawLine:
    lineno: int  # 1-based physical line number
    offset: int  # byte offset of the line's first byte
    data: bytes  # without the "\n" (a trailing "\r" removed too); an overlong line's start only
    complete: bool  # False for a final line without "\n" (a torn tail)


def iter_raw_lines(path: Path, start: int = 0, first_lineno: int = 1, progress=None) -> Iterator[RawLine]:
    """Yield every line of the file from byte ``start``, one at a time, in constant memory (plus
    one line): what :meth:`Module.read_events` streams. Blank lines (only whitespace, as Node
    trims and filters them) are skipped; a line longer than ``MAX_LINE_BYTES`` comes as its
    first bytes only. ``progress``, if given, is called with the bytes read after each chunk.
    (A check or a rebuild reads with :func:`scan_range`: the same :class:`LineReader`, without
    an object per line.)
    """
    fd = open_nofollow(path)
    try:
        if start:
            os.lseek(fd, start, os.SEEK_SET)
        reader = LineReader(fd, start, None, progress)
        for before, offset, lines in reader:
            if lines.__class__ is Overlong:
                yield RawLine(first_lineno + before, offset, lines.head, True)
                continue
            for i, line in enumerate(lines):
                here = offset
                offset += len(line) + 1
                if line.endswith(b"\r"):
                    line = line[:-1]
                if not is_blank(line):
                    yield RawLine(first_lineno + before + i, here, line, True)
        tail = reader.tail
        if tail.__class__ is Overlong:
            yield RawLine(first_lineno + reader.lines, reader.tail_offset, tail.head, False)
        elif not is_blank(tail):
            yield RawLine(first_lineno + reader.lines, reader.tail_offset, tail, False)
    finally:
        os.close(fd)


# A line that is JSON but not an object: Node's readEventLog keeps every parsed value that is
# truthy (``.filter(Boolean)``), so it counts ``[1,2]``, ``"x"``, ``42`` or ``true`` as an event
# (in a recovered meta's totalEvents; its lastEventId is then undefined) and skips ``0``, ``""``,
# ``false`` and ``null`` as it skips a line it cannot parse. A scan counts them the same way and
# reports each as a bad line (``log_bad_line``, a warning when all bad lines are of this kind).
NOT_OBJECT = "line is valid JSON but not an object"


def js_truthy(value: Any) -> bool:
    """JavaScript's truthiness of a parsed JSON value: false for false, 0, "" and null."""
    if value is None or value is False:
        return False
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return value != 0
    if isinstance(value, str):
        return value != ""
    return True  # true, any array (even []), any object


def parse_event(data: bytes) -> tuple[dict[str, Any] | None, str | None]:
    """Parse one line as an event: a JSON object, as Node reads it. Returns (event, None) or
    (None, reason)."""
    try:
        value = orjson.loads(data)
    except orjson.JSONDecodeError as exc:
        try:
            value = node_loads(data)
        except (ValueError, RecursionError):
            return None, str(exc)
    if not isinstance(value, dict):
        return None, NOT_OBJECT
    return value, None


def _as_js_string(v: Any) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, float) and v.is_integer():
        return str(int(v))
    if isinstance(v, (dict, list)):
        return "[object Object]" if isinstance(v, dict) else _join_js(v)
    return str(v)


def _join_js(items: list[Any]) -> str:
    """``String(array)``: the elements joined with "," (nested arrays flattened, an empty one
    as ""). Without recursion: a line may nest arrays 1,000 deep (orjson reads up to 1024)."""
    tokens: list[str] = []
    stack = [iter(items)]
    while stack:
        for x in stack[-1]:
            if isinstance(x, list):
                if x:
                    stack.append(iter(x))
                    break
                tokens.append("")
            else:
                tokens.append(_as_js_string(x))
        else:
            stack.pop()
    return ",".join(tokens)


def _keys_from(source: Any) -> dict[str, str]:
    if not isinstance(source, dict):
        return {}
    return {k: _as_js_string(source[k]) for k in CURSOR_KEYS if source.get(k) is not None}


def _has_keys(source: Any) -> bool:
    # CURSOR_KEYS spelled out: a generator costs more than the rest of a scan's bookkeeping.
    return isinstance(source, dict) and (
        source.get("key") is not None
        or source.get("id") is not None
        or source.get("uuid") is not None
        or source.get("uid") is not None
    )


def cursor_keys(event: dict[str, Any]) -> dict[str, str]:
    """The record keys a cursor takes from an event, as Node's resolveLineCursor finds them:
    the ``key``/``id``/``uuid``/``uid`` (as strings, only those present) of ``meta.recordRef`` if
    it yields any, else of ``record``, else of ``record.primaryKey``, else of ``record.primary``.
    Empty when none yields a key."""
    meta = event.get("meta")
    record = event.get("record")
    keys = _keys_from(meta.get("recordRef") if isinstance(meta, dict) else None)
    if not keys:
        keys = _keys_from(record)
    if not keys and isinstance(record, dict):
        keys = _keys_from(record.get("primaryKey")) or _keys_from(record.get("primary"))
    return keys


def leaves_cursor(event: dict[str, Any]) -> bool:
    """True if the event gives its table a cursor (:func:`cursor_keys` is not empty): Node keeps
    the table's previous cursor for an event that yields no key. Cheap for the usual line."""
    meta = event.get("meta")
    if isinstance(meta, dict) and _has_keys(meta.get("recordRef")):
        return True
    record = event.get("record")
    if not isinstance(record, dict):
        return False
    return _has_keys(record) or _has_keys(record.get("primaryKey")) or _has_keys(record.get("primary"))


def cursor_for(event: dict[str, Any]) -> dict[str, Any] | None:
    """The table cursor an event leaves, as Node derives it: its record's keys
    (:func:`cursor_keys`) plus eventId, sequence, updatedAt (= recordedAt); None when no key is
    found (then the table keeps its previous cursor, as in Node)."""
    keys = cursor_keys(event)
    if not keys:
        return None
    cursor: dict[str, Any] = dict(keys)
    cursor["eventId"] = event.get("id")
    cursor["sequence"] = event.get("sequence")
    cursor["updatedAt"] = event.get("recordedAt")
    return cursor


def event_time(event: dict[str, Any]) -> Any:
    """``lastEventAt`` as Node derives it: createdAt, else recordedAt."""
    return event.get("createdAt") or event.get("recordedAt")


def is_sequence(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool) and v > 0


_NOT_FULL = re.compile(rb"[^\xff]")
_NOT_EMPTY = re.compile(rb"[^\x00]")


def _next_bit(seen: bytearray, s: int, want: bool, end: int) -> int:
    """The first sequence >= ``s`` whose bit in ``seen`` is ``want`` (set or not; bits past the
    bitmap are not set), or ``end + 1`` if there is none up to ``end``."""
    byte = s >> 3
    while s <= end:
        if byte >= len(seen):
            return s if not want else end + 1
        v = seen[byte]
        for b in range(s & 7, 8):
            if (v >> b) & 1 == want:
                return min((byte << 3) + b, end + 1)
        m = (_NOT_EMPTY if want else _NOT_FULL).search(seen, byte + 1)
        if m is None and want:
            return end + 1
        byte = len(seen) if m is None else m.start()
        s = byte << 3
    return end + 1


class EventTracker:
    """What a scan keeps of the events it reads, fed one at a time in log order: their count, the
    last one, each table's last event that leaves a cursor (:func:`cursor_for`), and the
    sequences: a bitmap (one bit per sequence up to ``MAX_TRACKED_SEQUENCE``), the lowest and
    the highest, and the repeats (counted; the first ``SAMPLE_LIMIT`` kept). The one place of
    this bookkeeping: the scan's loop and its torn tail both feed it."""

    __slots__ = ("events", "last", "by_table", "seen", "min_seq", "max_seq", "limited", "duplicate_count", "duplicates")

    def __init__(self) -> None:
        self.events = 0
        self.last: dict[str, Any] | None = None
        self.by_table: dict[str, dict[str, Any]] = {}
        self.seen = bytearray()
        self.min_seq = self.max_seq = 0
        self.limited = False
        self.duplicate_count = 0
        self.duplicates: list[int] = []

    def add(self, event: dict[str, Any]) -> None:
        self.events += 1
        self.last = event
        table = event.get("table")
        if table.__class__ is str and table:
            ref = event.get("meta")
            ref = ref.get("recordRef") if ref.__class__ is dict else None
            # The usual line names its record in meta.recordRef: tested here without a call.
            if (ref.__class__ is dict and (ref.get("key") is not None or ref.get("id") is not None)) or leaves_cursor(
                event
            ):
                self.by_table[table] = event
        seq = event.get("sequence")
        if seq.__class__ is not int or seq <= 0:
            return
        if seq > self.max_seq:
            self.max_seq = seq
        if not self.min_seq or seq < self.min_seq:
            self.min_seq = seq
        if seq > MAX_TRACKED_SEQUENCE:
            self.limited = True
            return
        seen = self.seen
        byte, bit = seq >> 3, 1 << (seq & 7)
        if byte >= len(seen):
            seen.extend(bytes(max(byte + 1 - len(seen), len(seen))))  # doubling: amortised O(1)
        if seen[byte] & bit:
            self.duplicate_count += 1
            if len(self.duplicates) < SAMPLE_LIMIT:
                self.duplicates.append(seq)
        else:
            seen[byte] |= bit

    def add_value(self, value: Any) -> None:
        """A line Node counts as an event though it is not an object (see ``NOT_OBJECT``):
        it counts, and as the last one it leaves no id, time or sequence."""
        self.events += 1
        self.last = value

    def into(self, summary: LogSummary) -> LogSummary:
        """Write what was tracked into ``summary`` (its bitmap too; gaps wait for ``finish``)."""
        summary.events = self.events
        last = self.last
        if last is not None:
            last = last if last.__class__ is dict else {}
            summary.last_event_id = last.get("id")
            summary.last_event_at = event_time(last)
            summary.last_sequence = last.get("sequence")
        summary.table_cursors = {t: cursor_for(e) for t, e in self.by_table.items()}  # each leaves one
        summary.min_sequence, summary.max_sequence = self.min_seq, self.max_seq
        summary.sequence_tracking_limited = self.limited
        summary.duplicate_count, summary.duplicates = self.duplicate_count, self.duplicates
        summary._seen = self.seen
        return summary


@dataclass
class LogSummary:
    """Everything a check or a rebuild learns from one pass over a log. (No slots: a warm scan
    makes one per module from its JSON, and one ``__dict__`` update is the cheapest way.)"""

    size: int = 0
    bytes_read: int = 0
    lines: int = 0
    events: int = 0
    bad_line_count: int = 0
    bad_lines: list[dict[str, Any]] = field(default_factory=list)
    not_object_count: int = 0  # of the bad lines, those that are JSON but not an object
    last_event_id: Any = None
    last_event_at: Any = None
    last_sequence: Any = None
    max_sequence: int = 0
    min_sequence: int = 0
    duplicate_count: int = 0
    duplicates: list[int] = field(default_factory=list)
    gap_count: int = 0
    gaps: list[list[int]] = field(default_factory=list)  # [first_missing, last_missing]
    sequence_tracking_limited: bool = False
    lines_seen: int = 0  # physical lines, blank ones included
    torn_tail: dict[str, Any] | None = None
    table_cursors: dict[str, dict[str, Any]] = field(default_factory=dict)
    _seen: bytes | bytearray = field(default=b"", repr=False)  # the bitmap; only ever replaced, never changed
    hashed: Any = field(default=None, repr=False, compare=False)  # what checkpoint hashes saw (summarize)

    @property
    def expected_total(self) -> int:
        """What ``totalEvents`` must be so that the next sequence (total + 1) is unique."""
        return max(self.events, self.max_sequence)

    def add_bad(self, lineno: int, offset: int, data: bytes, reason: str) -> None:
        """Count a line that is not an event; the first ``SAMPLE_LIMIT`` are kept."""
        self.bad_line_count += 1
        if len(self.bad_lines) < SAMPLE_LIMIT:
            self.bad_lines.append(
                {"line": lineno, "offset": offset, "error": reason, "preview": data[:120].decode("utf-8", "replace")}
            )

    def finish(self, keep_seen: bool = False) -> LogSummary:
        """Compute gaps between the lowest and highest sequence; frees the bitmap unless
        ``keep_seen`` (an incremental scan carries it to the next pass)."""
        self.gap_count = 0
        self.gaps = []
        if self.min_sequence and not self.sequence_tracking_limited:
            # In C-speed steps: one stray sequence of 100,000,000 must not cost a bit-by-bit walk.
            seen, hi = self._seen, self.max_sequence
            self.gap_count = hi - self.min_sequence + 1 - int.from_bytes(seen, "little").bit_count()
            s = self.min_sequence
            while len(self.gaps) < SAMPLE_LIMIT:
                first = _next_bit(seen, s, False, hi)
                if first > hi:
                    break
                s = _next_bit(seen, first, True, hi)
                self.gaps.append([first, s - 1])
        if not keep_seen:
            self._seen = b""
        return self

    def to_json(self) -> dict[str, Any]:
        """The facts as a JSON-serialisable dict (the bitmap apart: :meth:`seen_json`), for a
        check state that a later pass reads back with :meth:`from_json`."""
        return {k: getattr(self, k) for k in _JSON_FIELDS}

    @classmethod
    def from_json(cls, value: Any, deep: bool = False) -> LogSummary:
        """The summary :meth:`to_json` wrote (without its bitmap: :meth:`with_seen_json`);
        ``shapes.Malformed`` (a ValueError) for anything else. Checked: every field's type, the
        counts, and what findings quote (the torn tail, the samples of bad lines, repeated
        sequences and gaps, when there are any); with ``deep`` also the samples a count of 0
        leaves empty and every cursor (what a resumed scan merges)."""
        # Spelled out, not through shapes: a warm scan reads one summary per module, and this
        # check is most of what that costs.
        if type(value) is not dict or len(value) != len(_JSON_FIELDS):
            raise Malformed("not a log summary")
        try:
            for k in _COUNT_FIELDS:
                v = value[k]
                if type(v) is not int or v < 0:
                    raise Malformed(f"log summary: {k} is not a count")
            for k, kind in _TYPED_FIELDS:
                if type(value[k]) is not kind:
                    raise Malformed(f"log summary: {k} is not a {kind.__name__}")
            value["torn_tail"], value["last_event_id"], value["last_event_at"], value["last_sequence"]  # present
        except KeyError:
            raise Malformed("not a log summary") from None
        bad, dups, gaps = value["bad_lines"], value["duplicates"], value["gaps"]
        if (
            (value["bad_line_count"] and not (bad and _BAD_LINES(bad)))
            or (value["duplicate_count"] and not _COUNTS(dups))
            or (value["gap_count"] and not (gaps and _GAPS(gaps)))
            or not _torn_tail_ok(value["torn_tail"])
        ):
            raise Malformed("log summary: not what its findings quote")
        if deep and not (_BAD_LINES(bad) and _COUNTS(dups) and _GAPS(gaps) and _cursors_ok(value["table_cursors"])):
            raise Malformed("log summary: a sample or a cursor is not what was written")
        return cls.from_trusted_json(value)

    @classmethod
    def from_trusted_json(cls, value: dict[str, Any]) -> LogSummary:
        """The summary of ``value``, already checked: one ``__dict__`` update (bytes_read and
        the bitmap stay the class's defaults: 0 and none)."""
        out = object.__new__(cls)
        out.__dict__.update(value)
        return out

    def seen_json(self) -> str:
        """The sequence bitmap as text (zlib + base64), to resume the scan from later."""
        return base64.b64encode(zlib.compress(bytes(self._seen), 6)).decode("ascii")

    def with_seen_json(self, text: Any) -> LogSummary:
        """This summary with the bitmap :meth:`seen_json` wrote; ``shapes.Malformed`` if it is not one."""
        try:
            self._seen = bytearray(zlib.decompress(base64.b64decode(text, validate=True)))
        except (TypeError, ValueError, zlib.error) as exc:  # binascii.Error is a ValueError
            raise Malformed(f"a sequence bitmap: {exc}") from None
        return self


def _torn_tail_ok(v: Any) -> bool:
    return v is None or (
        type(v) is dict
        and v.keys() == {"offset", "length", "line", "parses"}
        and all(shapes.conforms(v[k], "count") for k in ("offset", "length", "line"))
        and type(v["parses"]) is bool
    )


def _cursors_ok(v: Any) -> bool:
    return not v or set(map(type, v.values())) == {dict}  # v: a dict


# The summary's JSON form: its fields (last_event_id, last_event_at and last_sequence may hold
# any JSON value read from the log), and the tests of the others when read back.
_COUNT_FIELDS = (
    "size",
    "lines",
    "events",
    "bad_line_count",
    "not_object_count",
    "max_sequence",
    "min_sequence",
    "duplicate_count",
    "lines_seen",
    "gap_count",
)
_TYPED_FIELDS = (
    ("bad_lines", list),
    ("duplicates", list),
    ("gaps", list),
    ("table_cursors", dict),
    ("sequence_tracking_limited", bool),
)
# last_event_id, last_event_at and last_sequence hold whatever JSON value the log held.
_JSON_FIELDS = (
    *_COUNT_FIELDS,
    *(k for k, _ in _TYPED_FIELDS),
    "torn_tail",
    "last_event_id",
    "last_event_at",
    "last_sequence",
)
_BAD_LINES = shapes.SHAPES["list of bad lines"]
_COUNTS = shapes.SHAPES["list of counts"]
_GAPS = shapes.SHAPES["list of [first, last] count pairs"]


PARALLEL_MIN_BYTES = 64 << 20


def summarize(
    path: Path, progress=None, workers: int | None = None, keep_seen: bool = False, feeder=None
) -> LogSummary:
    """One streaming pass over a log: counts, bad lines, sequences, torn tail, cursors.

    Every line is parsed. Memory is bounded (chunks of 1 MiB, one bit per sequence number, one
    event per table). Logs of 64 MiB or more are split at line boundaries and read by one
    process per core (``workers`` overrides; 1 forces a single pass). ``progress(read, total)``
    is called as bytes are read. Raises OSError if the file cannot be read.

    With ``feeder`` (``checkpoints.Feeder``: picklable, ``align`` bytes per window,
    ``for_range(start, stop)`` a hash of bytes [start, stop)), every byte read is also fed to
    the checkpoint hashes as it is read, and ``summary.hashed`` lists what they saw, in file
    order (the ranges of several processes then start at multiples of ``align``).
    """
    size = os.stat(path, follow_symlinks=False).st_size
    if workers is None:
        workers = min(os.cpu_count() or 1, 8) if size >= PARALLEL_MIN_BYTES else 1
    unit = CHUNK if feeder is None else max(CHUNK, feeder.align)
    if workers > 1 and size > workers * unit:
        return _summarize_parallel(path, size, workers, progress, keep_seen, feeder)
    seg = None if feeder is None else feeder.for_range(0, None)
    part = scan_range(
        str(path),
        0,
        size,
        None if progress is None else (lambda n: progress(n, size)),
        None if seg is None else seg.feed,
    )
    part.size = size
    if seg is not None:
        part.hashed = [seg.result()]
    return part.finish(keep_seen)


def resume(previous: LogSummary, path: Path, size: int, feed=None, progress=None) -> LogSummary:
    """Extend a summary of the first ``previous.size`` bytes (which ended at a line boundary)
    with the bytes up to ``size``: only the new bytes are read (each chunk also to ``feed``;
    ``progress(read)`` after each)."""
    part = scan_range(str(path), previous.size, size, progress, feed)
    merged = _merge([(previous, bytes(previous._seen)), (part, bytes(part._seen))], size, keep_seen=True)
    merged.bytes_read = part.bytes_read
    return merged


def _split_points(path: Path, size: int, parts: int) -> list[int]:
    """Offsets just after a newline near each 1/parts of the file (0 and size included)."""
    return [0, *_split_points_at(path, size, [size * i // parts for i in range(1, parts)]), size]


def scan_range(path: str, start: int, end: int, progress=None, feed=None) -> LogSummary:
    """Scan bytes [start, end) of a log; ``start`` must be at a line start. The summary's line
    numbers are relative to ``start`` (``lines_seen`` counts every physical line); its gaps are
    not computed yet (``finish``). ``feed`` gets every chunk read (see :class:`LineReader`)."""
    part = LogSummary()
    tracker = EventTracker()
    fd = open_nofollow(Path(path))
    try:
        os.lseek(fd, start, os.SEEK_SET)
        reader = LineReader(fd, start, end, progress, feed)
        for before, offset, lines in reader:
            if lines.__class__ is Overlong:
                part.lines += 1
                part.add_bad(
                    before + 1,
                    offset,
                    lines.head,
                    f"line is longer than {MAX_LINE_BYTES} bytes ({lines.length} bytes); not read",
                )
            else:
                _scan_lines(lines, before, offset, part, tracker)
        torn = _scan_tail(reader, part, tracker)
    finally:
        os.close(fd)
    part.lines_seen = reader.lines + torn
    part.bytes_read = reader.read
    return tracker.into(part)


def _scan_lines(lines: list[bytes], lineno: int, offset: int, part: LogSummary, tracker: EventTracker) -> None:
    """Parse complete lines (the first is line ``lineno`` + 1, at byte ``offset``): each event
    goes to ``tracker``, each line that is not one to ``part.add_bad``. The hot loop of a scan."""
    loads = orjson.loads
    decode_error = orjson.JSONDecodeError
    add = tracker.add
    nonblank = 0
    for raw in lines:
        lineno += 1
        here = offset
        offset += len(raw) + 1
        if raw[-1:] == b"\r":
            raw = raw[:-1]
        if not raw or raw.isspace():
            continue
        try:
            event = loads(raw)
        except decode_error as exc:
            try:  # not for orjson: maybe for Node (see JS_WHITESPACE)
                event = node_loads(raw)
            except (ValueError, RecursionError):
                if is_blank(raw):
                    continue
                nonblank += 1
                part.add_bad(lineno, here, raw, str(exc))
                continue
        nonblank += 1
        if event.__class__ is not dict:
            part.add_bad(lineno, here, raw, NOT_OBJECT)
            part.not_object_count += 1
            if js_truthy(event):
                tracker.add_value(event)
            continue
        add(event)
    part.lines += nonblank


def _scan_tail(reader: LineReader, part: LogSummary, tracker: EventTracker) -> int:
    """The bytes after the last newline: a torn tail unless blank (an event if it parses).
    Returns the physical lines it adds (0 or 1)."""
    tail = reader.tail
    if tail.__class__ is Overlong:  # the file ends inside an overlong line: it cannot parse
        length, event = tail.length, None
    else:
        if tail[-1:] == b"\r":
            tail = tail[:-1]
        if not tail or is_blank(tail):
            return 0
        length, (event, _reason) = len(tail), parse_event(tail)
    part.lines += 1
    part.torn_tail = {
        "offset": reader.tail_offset,
        "length": length,
        "line": reader.lines + 1,
        "parses": event is not None,
    }
    if event is not None:
        tracker.add(event)
    return 1


def _aligned_points(path: Path, size: int, parts: int, align: int) -> list[tuple[int, int]]:
    """For each range a process reads: (where its hashes start, a multiple of ``align``; where
    its lines start, just after the first newline from there), the first (0, 0), the last
    (size, size)."""
    marks = sorted({min(size, round(size * i / parts / align) * align) for i in range(1, parts)} - {0, size})
    lines = _split_points_at(path, size, marks)
    return [(0, 0), *zip(marks, lines, strict=True), (size, size)]


def _split_points_at(path: Path, size: int, marks: list[int]) -> list[int]:
    """The offset just after the first newline at or after each mark (never decreasing)."""
    out: list[int] = []
    fd = open_nofollow(path)
    try:
        for mark in marks:
            at = max(mark, out[-1] if out else 0)
            while at < size:
                buf = os.pread(fd, 1 << 16, at)
                if not buf:
                    at = size
                    break
                nl = buf.find(b"\n")
                if nl >= 0:
                    at += nl + 1
                    break
                at += len(buf)
            out.append(min(at, size))
    finally:
        os.close(fd)
    return out


def _pre_feed(path: str, seg, start: int, end: int) -> int:
    """Feed bytes [start, end) (the end of a line the process before parses) to ``seg``."""
    fd = open_nofollow(path)
    try:
        pos = start
        while pos < end:
            data = os.pread(fd, min(CHUNK, end - pos), pos)
            if not data:
                break
            seg.feed(data)
            pos += len(data)
    finally:
        os.close(fd)
    return pos - start


def _worker(path: str, start: int, end: int, index: int, counters, results, feeder=None, hashes=(0, 0)) -> None:
    def report(n: int) -> None:
        counters[index] = n

    try:
        seg, pre = None, 0
        if feeder is not None:
            seg = feeder.for_range(*hashes)
            pre = _pre_feed(path, seg, hashes[0], min(start, hashes[1]))
        part = scan_range(path, start, end, report, None if seg is None else seg.feed)
        results.put((index, part, bytes(part._seen), None, None if seg is None else seg.result(), pre))
    except BaseException as exc:  # report, never hang the parent
        results.put((index, None, b"", f"{type(exc).__name__}: {exc}", None, 0))


def _ranges(path: Path, size: int, workers: int, feeder) -> list[tuple[int, int, tuple[int, int]]]:
    """(line start, line end, (hash start, hash stop)) of each process."""
    if feeder is None:
        points = _split_points(path, size, workers)
        return [(a, b, (0, 0)) for a, b in zip(points, points[1:], strict=False) if b > a]
    points = _aligned_points(path, size, workers, feeder.align)
    return [(a[1], b[1], (a[0], b[0])) for a, b in zip(points, points[1:], strict=False)]


def _summarize_parallel(
    path: Path, size: int, workers: int, progress, keep_seen: bool = False, feeder=None
) -> LogSummary:
    # fork starts in milliseconds but is unsafe once threads run (a web server's workers).
    ctx = mp.get_context("fork" if threading.active_count() == 1 else "spawn")
    ranges = _ranges(path, size, workers, feeder)
    counters = ctx.Array("q", len(ranges), lock=False)
    results = ctx.Queue()
    procs = [
        ctx.Process(target=_worker, args=(str(path), a, b, i, counters, results, feeder, h), daemon=True)
        for i, (a, b, h) in enumerate(ranges)
    ]
    for p in procs:
        p.start()
    parts: dict[int, tuple[LogSummary, bytes]] = {}
    hashed: dict[int, Any] = {}
    pre = 0
    try:
        while len(parts) < len(procs):
            try:
                index, part, seen, error, seg, extra = results.get(timeout=0.2)
            except queuemod.Empty:
                if progress is not None:
                    progress(sum(counters), size)
                if any(not p.is_alive() and p.exitcode not in (0, None) for p in procs):
                    raise OSError(f"a log reader process died while reading {path}") from None
                continue
            if error is not None:
                raise OSError(f"reading {path}: {error}")
            parts[index], hashed[index] = (part, seen), seg
            pre += extra
    finally:
        for p in procs:
            p.join(timeout=5)
            if p.is_alive():
                p.kill()
    if progress is not None:
        progress(size, size)
    out = _merge([parts[i] for i in range(len(ranges))], size, keep_seen)
    if feeder is not None:
        out.hashed = [hashed[i] for i in range(len(ranges))]
        out.bytes_read += pre
    return out


def _merge(parts: list[tuple[LogSummary, bytes]], size: int, keep_seen: bool = False) -> LogSummary:
    out = LogSummary(size=size, bytes_read=size)
    seen_all = 0
    lines_before = 0
    for part, seen in parts:
        out.lines += part.lines
        out.events += part.events
        out.bad_line_count += part.bad_line_count
        out.not_object_count += part.not_object_count
        for bad in part.bad_lines:
            if len(out.bad_lines) < SAMPLE_LIMIT:
                out.bad_lines.append({**bad, "line": bad["line"] + lines_before})
        if part.torn_tail:
            out.torn_tail = {**part.torn_tail, "line": part.torn_tail["line"] + lines_before}
        lines_before += part.lines_seen
        if part.events:
            out.last_event_id = part.last_event_id
            out.last_event_at = part.last_event_at
            out.last_sequence = part.last_sequence
        out.table_cursors.update(part.table_cursors)
        out.max_sequence = max(out.max_sequence, part.max_sequence)
        if part.min_sequence and (not out.min_sequence or part.min_sequence < out.min_sequence):
            out.min_sequence = part.min_sequence
        out.sequence_tracking_limited |= part.sequence_tracking_limited
        out.duplicate_count += part.duplicate_count
        out.duplicates.extend(part.duplicates[: SAMPLE_LIMIT - len(out.duplicates)])
        bits = int.from_bytes(seen, "little")
        both = seen_all & bits
        if both:
            out.duplicate_count += both.bit_count()
            while both and len(out.duplicates) < SAMPLE_LIMIT:
                low = both & -both
                out.duplicates.append(low.bit_length() - 1)
                both ^= low
        seen_all |= bits
    out.duplicates.sort()
    out.lines_seen = lines_before
    if seen_all:
        out._seen = bytearray(seen_all.to_bytes((seen_all.bit_length() + 7) // 8, "little"))
    return out.finish(keep_seen)


@dataclass(slots=True)
class Tail:
    size: int
    fragment_offset: int  # where the bytes after the last "\n" start (== size if none)
    fragment: bytes  # bytes after the last "\n" (a torn tail when not blank)
    last_line: bytes | None  # the last complete non-blank line, "\r" removed


def read_tail(path: Path, window: int = 1 << 16, max_bytes: int = 64 << 20) -> Tail:
    """Read only the end of the log: the torn fragment (if any) and the last complete line.

    Reads a window from the end, twice as much each time a line is longer than what was read;
    at most ``max_bytes`` (then ``last_line`` is None and the caller falls back to a full pass).
    """
    fd = open_nofollow(path)
    try:
        size = os.fstat(fd).st_size
        pos = size
        buf = b""
        while pos > 0 and len(buf) < max_bytes:
            step = min(window, pos, max(max_bytes - len(buf), 1))
            pos -= step
            buf = os.pread(fd, step, pos) + buf
            window *= 2  # geometric: a long unterminated line costs O(its size), not O(size²)
            nl = buf.rfind(b"\n")
            if nl < 0:
                continue
            fragment = buf[nl + 1 :]
            lines = buf[: nl + 1].split(b"\n")
            for i in range(len(lines) - 2, -1, -1):
                if i == 0 and pos > 0:
                    break  # may be cut by the window: read more
                line = lines[i].rstrip(b"\r")
                if not is_blank(line):
                    return Tail(size, pos + nl + 1, fragment, line)
            if pos == 0:
                return Tail(size, nl + 1, fragment, None)
        if b"\n" not in buf:
            return Tail(size, pos, buf, None) if pos == 0 else Tail(size, size, b"", None)
        nl = buf.rfind(b"\n")
        return Tail(size, pos + nl + 1, buf[nl + 1 :], None)
    finally:
        os.close(fd)


def tail_lines(path: Path, max_bytes: int = 1 << 20) -> tuple[list[bytes], bool]:
    """The complete non-blank lines within the last ``max_bytes`` of the log, oldest first.

    Returns (lines, reached_start): ``reached_start`` is True when the lines cover the whole
    file. A torn fragment after the last newline is not included.
    """
    fd = open_nofollow(path)
    try:
        size = os.fstat(fd).st_size
        start = max(0, size - max_bytes)
        buf = os.pread(fd, size - start, start)
    finally:
        os.close(fd)
    end = buf.rfind(b"\n")
    if end < 0:
        return [], start == 0
    body = buf[: end + 1]
    if start > 0:
        first = body.find(b"\n")
        body = body[first + 1 :]
    lines = [ln.rstrip(b"\r") for ln in body.split(b"\n")]
    return [ln for ln in lines if not is_blank(ln)], start == 0
