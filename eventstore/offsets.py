"""A sparse offset index of an ``events.log``: one point every few MiB, so that a page anywhere in a
1 GB log can be given its line numbers, and a line, a sequence or a time can be found, by reading
a few MiB at most.

A point is the start of a line: its offset, its 1-based line number as Node counts lines (every
"\n" before it, blank lines included), the sequence of the last event before it and the time
(createdAt, else recordedAt) of the first event at or after it. Points are ``every`` bytes apart
at least (the first line start at or after the previous point + ``every``), so a fresh build and
a build extended after appends give the same index.

Building reads the file once, at the speed of counting newlines: only the lines around a point
are parsed (plus the last event of each 1 MiB read), never every line. Extending reads only the
bytes appended since (and 64 bytes before them, to notice a file rewritten in place).
"""

from __future__ import annotations

import bisect
import os
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NamedTuple

from . import log as logmod
from .fileio import open_nofollow

INDEX_VERSION = 1
DEFAULT_EVERY = 4 << 20
GUARD_BYTES = 64  # the bytes before ``end`` whose checksum an extension compares first
READ_BYTES = 1 << 20


class IndexPoint(NamedTuple):
    offset: int  # the start of a line
    line: int  # its 1-based line number (physical lines, blank ones counted)
    sequence: int | None  # the sequence of the last event before it (None: none)
    created_at: str | None  # createdAt (else recordedAt) of the first event at or after it (None: none yet)


@dataclass(frozen=True)
class OffsetIndex:
    """Points of a log (see the module's text). JSON-able (:meth:`to_json`), to be kept with a
    module's scan state and extended by :func:`build_index` after appends."""

    every: int
    points: tuple[IndexPoint, ...]
    end: int  # the end of the last complete line when it was built
    ino: int
    dev: int
    lines: int = 0  # the "\n" before ``end``: the line that starts at ``end`` is line ``lines + 1``
    sequence: int | None = None  # the last sequence before ``end`` (where an extension goes on from)
    guard: int = 0  # crc32 of the (up to) GUARD_BYTES bytes before ``end``
    bytes_read: int = field(default=0, compare=False)  # what the build that made it read (not saved)

    def fits(self, st: os.stat_result) -> bool:
        """True if the index may describe the file ``st`` is of: same inode, not shorter."""
        return st.st_ino == self.ino and st.st_dev == self.dev and st.st_size >= self.end

    def describes(self, fd: int, st: os.stat_result) -> tuple[bool, int]:
        """Whether the index is of the open file ``fd`` (``st``: its fstat): it :meth:`fits` it and
        the bytes before ``end`` are still those it was built on (a log deleted and written again
        may get the same inode); and the bytes read to tell."""
        if not self.fits(st):
            return False, 0
        n = min(self.end, GUARD_BYTES)
        data = os.pread(fd, n, self.end - n)
        return zlib.crc32(data) == self.guard, len(data)

    def anchors(self) -> tuple[list[int], list[int]]:
        """The offsets and line numbers known: every point and ``end``."""
        offsets = [p.offset for p in self.points]
        lines = [p.line for p in self.points]
        if offsets[-1] < self.end:
            offsets.append(self.end)
            lines.append(self.lines + 1)
        return offsets, lines

    def to_json(self) -> dict[str, Any]:
        return {
            "version": INDEX_VERSION,
            "every": self.every,
            "end": self.end,
            "lines": self.lines,
            "sequence": self.sequence,
            "guard": self.guard,
            "ino": self.ino,
            "dev": self.dev,
            "points": [list(p) for p in self.points],
        }

    @classmethod
    def from_json(cls, value: Any) -> OffsetIndex | None:
        """The index :meth:`to_json` wrote; None for anything else (never raises)."""
        try:
            return _from_json(value)
        except (TypeError, ValueError, KeyError, AttributeError, IndexError):
            return None


def _count(v: Any, low: int = 0) -> bool:
    return type(v) is int and v >= low


def _from_json(value: Any) -> OffsetIndex | None:
    if type(value) is not dict or type(value.get("version")) is not int or value["version"] != INDEX_VERSION:
        return None
    every, end, lines, seq, guard = (value[k] for k in ("every", "end", "lines", "sequence", "guard"))
    ino, dev, raw = value["ino"], value["dev"], value["points"]
    if not (_count(every, 1) and _count(end) and _count(lines) and _count(ino) and _count(dev)):
        return None
    if not (_count(guard) and guard < 1 << 32 and (seq is None or type(seq) is int) and type(raw) is list and raw):
        return None
    points = []
    for p in raw:
        if type(p) is not list or len(p) != 4:
            return None
        offset, line, s, t = p
        if not (_count(offset) and _count(line, 1) and (s is None or type(s) is int) and (t is None or type(t) is str)):
            return None
        if points and (offset <= points[-1].offset or line <= points[-1].line or offset >= end):
            return None
        points.append(IndexPoint(offset, line, s, t))
    if points[0][:2] != (0, 1) or points[-1].line > lines + 1:
        return None
    return OffsetIndex(every, tuple(points), end, ino, dev, lines, seq, guard)


# -- line numbers from an index ---------------------------------------------------------------


def count_newlines(fd: int, start: int, stop: int) -> int:
    """The "\n" in bytes [start, stop) of an open file, read a MiB at a time."""
    n = 0
    while start < stop:
        data = os.pread(fd, min(READ_BYTES, stop - start), start)
        if not data:
            break
        n += data.count(b"\n")
        start += len(data)
    return n


def line_number(fd: int, index: OffsetIndex | None, st: os.stat_result, offset: int) -> tuple[int | None, int]:
    """The line number of the line that starts at ``offset``, counted from the nearest point of
    the index (or its ``end``), and the bytes read for it: None when there is no index of this
    file (:meth:`OffsetIndex.describes`), or the nearest point is more than ``every`` bytes away
    (an index left far behind, or a line of many MiB)."""
    if offset == 0:
        return 1, 0
    if index is None:
        return None, 0
    known, read = index.describes(fd, st)
    if not known:
        return None, read
    offsets, lines = index.anchors()
    i = bisect.bisect_right(offsets, offset) - 1  # the last anchor at or before offset
    before = offset - offsets[i]
    after = offsets[i + 1] - offset if i + 1 < len(offsets) else before + 1
    if min(before, after) > index.every:
        return None, read
    if after < before:
        return lines[i + 1] - count_newlines(fd, offset, offsets[i + 1]), read + after
    return lines[i] + count_newlines(fd, offsets[i], offset), read + before


# -- building ------------------------------------------------------------------------------


def overlong(start: int, end: int, torn: bool = False) -> bool:
    """Whether the checks' reader (:class:`log.LineReader`, reading ``log.CHUNK`` bytes at a time
    from the start of the file) takes the line [start, end) (``end``: its "\n", or the end of
    the file for a torn tail) for an :class:`log.Overlong`: when, after one of its reads, more
    than ``log.MAX_LINE_BYTES`` of it were read and its end not yet. So a line is overlong
    past the limit, or past the limit plus up to a chunk, depending on where it lies."""
    limit = logmod.MAX_LINE_BYTES
    if end - start <= limit:
        return False
    return torn or end // logmod.CHUNK * logmod.CHUNK - start > limit


def _events_back(buf: bytes, stop: int, off: int):
    """The events of the complete lines of ``buf`` (at offset ``off``) that end before
    ``stop``, last first."""
    end = stop
    while end > 0:
        start = buf.rfind(b"\n", 0, end - 1) + 1
        event = _event_of(buf, start, end - 1, off)
        if event is not None:
            yield event
        end = start


def _events_forward(buf: bytes, start: int, off: int):
    """The events of the complete lines of ``buf`` (at offset ``off``) from ``start`` on, in order."""
    while start < len(buf):
        nl = buf.find(b"\n", start)
        nl = len(buf) if nl < 0 else nl
        event = _event_of(buf, start, nl, off)
        if event is not None:
            yield event
        start = nl + 1


def _event_of(buf: bytes, start: int, end: int, off: int) -> dict[str, Any] | None:
    if end - start > logmod.MAX_LINE_BYTES and overlong(off + start, off + end):
        return None
    line = buf[start:end]
    if line[-1:] == b"\r":
        line = line[:-1]
    if logmod.is_blank(line):
        return None
    event, _ = logmod.parse_event(line)
    return event


def _time_of(event: dict[str, Any]) -> str | None:
    t = logmod.event_time(event)
    return t if type(t) is str else None


class _Builder:
    """The state of a build between reads: the points so far (lists: a point's time is filled in
    when the first event after it is read), the line count and the last sequence."""

    def __init__(self, every: int, previous: OffsetIndex | None):
        self.every = every
        if previous is None:
            self.points: list[list[Any]] = [[0, 1, None, None]]
            self.lines, self.sequence = 0, None
        else:
            self.points = [list(p) for p in previous.points]
            self.lines, self.sequence = previous.lines, previous.sequence

    def take(self, buf: bytes, off: int) -> None:
        """Complete lines ``buf`` (ending with "\n") starting at ``off``."""
        pending = [p for p in self.points if p[3] is None]
        if pending:
            when = next(filter(None, map(_time_of, _events_forward(buf, 0, off))), None)
            for p in pending:
                p[3] = when
        while True:
            target = self.points[-1][0] + self.every
            if target <= off:
                at = off
            else:
                nl = buf.find(b"\n", target - off - 1) if target - off <= len(buf) else -1
                if nl < 0:
                    break
                at = off + nl + 1
            if at >= off + len(buf):
                break
            self._point(buf, off, at)
        self.lines += buf.count(b"\n")
        seq = next(
            (e["sequence"] for e in _events_back(buf, len(buf), off) if logmod.is_sequence(e.get("sequence"))), None
        )
        if seq is not None:
            self.sequence = seq

    def _point(self, buf: bytes, off: int, at: int) -> None:
        rel = at - off
        seq = next((e["sequence"] for e in _events_back(buf, rel, off) if logmod.is_sequence(e.get("sequence"))), None)
        when = next(filter(None, map(_time_of, _events_forward(buf, rel, off))), None)
        line = self.lines + buf.count(b"\n", 0, rel) + 1
        self.points.append([at, line, self.sequence if seq is None else seq, when])

    def index(self, end: int, st: os.stat_result, guard: int, read: int) -> OffsetIndex:
        points = tuple(IndexPoint(*p) for p in self.points)
        return OffsetIndex(self.every, points, end, st.st_ino, st.st_dev, self.lines, self.sequence, guard, read)


def build_index(path: Path | str, previous: OffsetIndex | None = None, every: int = DEFAULT_EVERY) -> OffsetIndex:
    """The index of the log at ``path``: ``previous`` extended with the lines appended since,
    when it is of this file (same inode and device, not shorter, the same bytes before its end,
    the same ``every``); else built from the start. Reads the file once (only its new bytes,
    and the GUARD_BYTES before them, when extending), a MiB at a time; a line longer than
    ``log.MAX_LINE_BYTES`` is skipped, not held. Raises OSError if the file cannot be read."""
    if every < 1:
        raise ValueError("every must be at least 1 byte")
    fd = open_nofollow(path)
    try:
        st = os.fstat(fd)
        tail = b""
        if previous is not None and previous.every == every and previous.fits(st):
            tail = os.pread(fd, min(previous.end, GUARD_BYTES), previous.end - min(previous.end, GUARD_BYTES))
            if zlib.crc32(tail) != previous.guard:
                previous = None
        else:
            previous = None
        guard_read = len(tail)
        if previous is None:
            tail = b""
        builder = _Builder(every, previous)
        start = previous.end if previous is not None else 0
        end, read, tail = _feed(fd, builder, start, st.st_size, tail)
        return builder.index(end, st, zlib.crc32(tail), guard_read + read)
    finally:
        os.close(fd)


def _feed(fd: int, builder: _Builder, start: int, size: int, tail: bytes) -> tuple[int, int, bytes]:
    """Read [start, size) into the builder, complete lines at a time. Returns the end of the
    last complete line, the bytes read and the GUARD_BYTES before that end (``tail``: those
    before ``start``)."""
    pos = line_start = start  # the next byte to read; the start of the partial line carried
    carry: list[bytes] = []
    carried = 0
    skipping = False  # inside a line longer than MAX_LINE_BYTES: its bytes are not kept
    before = b""  # the last bytes read before ``data`` (the end of a long line, for the guard)
    while pos < size:
        data = os.pread(fd, min(READ_BYTES, size - pos), pos)
        if not data:
            break
        at, pos = pos, pos + len(data)
        last = data.rfind(b"\n")
        before, previous = data[-GUARD_BYTES:], before
        if last < 0:
            if not skipping:
                carry.append(data)
                carried += len(data)
                if pos // logmod.CHUNK * logmod.CHUNK - line_start > logmod.MAX_LINE_BYTES:
                    carry, carried, skipping = [], 0, True
            continue
        first = 0
        if skipping:  # the long line ends here: not an event, only its newline is counted
            first = data.find(b"\n") + 1
            builder.lines += 1
            line_start, carry, skipping = at + first, [], False
            tail = (previous + data[:first])[-GUARD_BYTES:]
        buf = b"".join((*carry, data[first : last + 1]))
        if buf:
            builder.take(buf, line_start)
            tail = (tail + buf[-GUARD_BYTES:])[-GUARD_BYTES:]
        line_start = at + last + 1
        carry = [data[last + 1 :]]
        carried = len(carry[0])
    return line_start, pos - start, tail
