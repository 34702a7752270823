"""Streaming reader of ``events.log`` and the facts derivable from it.

Memory stays bounded whatever the log size: the file is read in 1 MiB chunks and only
per-table cursors, counters, capped samples and a sequence bitmap (one bit per sequence
number) are kept.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson

from .fileio import open_nofollow

CHUNK = 1 << 20
SAMPLE_LIMIT = 100
# Sequence numbers above this are not tracked for duplicates/gaps (the bitmap would be > 16 MiB).
MAX_TRACKED_SEQUENCE = 1 << 27
CURSOR_KEYS = ("key", "id", "uuid", "uid")


@dataclass(slots=True)
class RawLine:
    lineno: int  # 1-based physical line number
    offset: int  # byte offset of the line's first byte
    data: bytes  # without the "\n" (a trailing "\r" removed too)
    complete: bool  # False for a final line without "\n" (a torn tail)


def iter_raw_lines(path: Path, start: int = 0, first_lineno: int = 1, progress=None) -> Iterator[RawLine]:
    """Yield every line of the file from byte ``start``, in constant memory (plus one line).

    Blank lines (only whitespace, as Node trims and filters them) are skipped. ``progress``, if
    given, is called with the number of bytes read so far after each chunk.
    """
    fd = open_nofollow(path)
    try:
        if start:
            os.lseek(fd, start, os.SEEK_SET)
        pending = b""
        pending_offset = start
        lineno = first_lineno
        read = 0
        while True:
            chunk = os.read(fd, CHUNK)
            if not chunk:
                break
            read += len(chunk)
            buf = pending + chunk if pending else chunk
            base = pending_offset
            pos = 0
            while True:
                nl = buf.find(b"\n", pos)
                if nl < 0:
                    break
                line = buf[pos:nl]
                if line.endswith(b"\r"):
                    line = line[:-1]
                if line.strip():
                    yield RawLine(lineno, base + pos, line, True)
                lineno += 1
                pos = nl + 1
            pending = buf[pos:]
            pending_offset = base + pos
            if progress is not None:
                progress(read)
        if pending.strip():
            yield RawLine(lineno, pending_offset, pending, False)
    finally:
        os.close(fd)


def parse_event(data: bytes) -> tuple[dict[str, Any] | None, str | None]:
    """Parse one line as an event: a JSON object. Returns (event, None) or (None, reason)."""
    try:
        value = orjson.loads(data)
    except orjson.JSONDecodeError as exc:
        return None, str(exc)
    if not isinstance(value, dict):
        return None, "line is valid JSON but not an object"
    return value, None


def _as_js_string(v: Any) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, float) and v.is_integer():
        return str(int(v))
    if isinstance(v, (dict, list)):
        return "[object Object]" if isinstance(v, dict) else ",".join(_as_js_string(x) for x in v)
    return str(v)


def _keys_from(source: Any) -> dict[str, str]:
    if not isinstance(source, dict):
        return {}
    return {k: _as_js_string(source[k]) for k in CURSOR_KEYS if source.get(k) is not None}


def cursor_for(event: dict[str, Any]) -> dict[str, Any]:
    """The table cursor an event leaves: its record's key/id/uuid/uid plus eventId, sequence,
    updatedAt (= recordedAt). Keys come from ``meta.recordRef`` if it yields any, else from
    ``record``, else ``record.primaryKey``, else ``record.primary``.
    """
    meta = event.get("meta")
    record = event.get("record")
    keys = _keys_from(meta.get("recordRef") if isinstance(meta, dict) else None)
    if not keys:
        keys = _keys_from(record)
    if not keys and isinstance(record, dict):
        keys = _keys_from(record.get("primaryKey")) or _keys_from(record.get("primary"))
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


@dataclass(slots=True)
class LogSummary:
    """Everything a check or a rebuild learns from one pass over a log."""

    size: int = 0
    bytes_read: int = 0
    lines: int = 0
    events: int = 0
    bad_line_count: int = 0
    bad_lines: list[dict[str, Any]] = field(default_factory=list)
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
    torn_tail: dict[str, Any] | None = None
    table_cursors: dict[str, dict[str, Any]] = field(default_factory=dict)
    _seen: bytearray = field(default_factory=bytearray, repr=False)

    @property
    def expected_total(self) -> int:
        """What ``totalEvents`` must be so that the next sequence (total + 1) is unique."""
        return max(self.events, self.max_sequence)

    def add_bad(self, line: RawLine, reason: str) -> None:
        self.bad_line_count += 1
        if len(self.bad_lines) < SAMPLE_LIMIT:
            self.bad_lines.append(
                {"line": line.lineno, "offset": line.offset, "error": reason, "preview": line.data[:120].decode("utf-8", "replace")}
            )

    def add_event(self, event: dict[str, Any]) -> None:
        self.events += 1
        self.last_event_id = event.get("id")
        self.last_event_at = event_time(event)
        seq = event.get("sequence")
        self.last_sequence = seq
        table = event.get("table")
        if isinstance(table, str) and table:
            self.table_cursors[table] = cursor_for(event)
        if not is_sequence(seq):
            return
        if seq > self.max_sequence:
            self.max_sequence = seq
        if not self.min_sequence or seq < self.min_sequence:
            self.min_sequence = seq
        if seq > MAX_TRACKED_SEQUENCE:
            self.sequence_tracking_limited = True
            return
        byte, bit = divmod(seq, 8)
        if byte >= len(self._seen):
            self._seen.extend(bytes(max(byte + 1 - len(self._seen), len(self._seen))))
        if self._seen[byte] & (1 << bit):
            self.duplicate_count += 1
            if len(self.duplicates) < SAMPLE_LIMIT:
                self.duplicates.append(seq)
        else:
            self._seen[byte] |= 1 << bit

    def finish(self) -> LogSummary:
        """Compute gaps between the lowest and highest sequence; frees the bitmap."""
        if self.min_sequence and not self.sequence_tracking_limited:
            seen = self._seen
            hi = self.max_sequence
            s = self.min_sequence
            while s <= hi:
                byte, bit = divmod(s, 8)
                if bit == 0 and seen[byte] == 0xFF and s + 8 <= hi + 1:
                    s += 8
                    continue
                if not seen[byte] & (1 << bit):
                    first = s
                    while s <= hi and not seen[s >> 3] & (1 << (s & 7)):
                        s += 1
                    self.gap_count += s - first
                    if len(self.gaps) < SAMPLE_LIMIT:
                        self.gaps.append([first, s - 1])
                    continue
                s += 1
        self._seen = bytearray()
        return self


def summarize(path: Path, progress=None) -> LogSummary:
    """One streaming pass over a log: counts, bad lines, sequences, torn tail, cursors.

    Raises OSError if the file cannot be read (the caller reports ``unreadable``).
    """
    summary = LogSummary()
    summary.size = os.stat(path, follow_symlinks=False).st_size

    def on_progress(n: int) -> None:
        summary.bytes_read = n
        if progress is not None:
            progress(n, summary.size)

    for raw in iter_raw_lines(path, progress=on_progress):
        summary.lines += 1
        event, reason = parse_event(raw.data)
        if not raw.complete:
            summary.torn_tail = {"offset": raw.offset, "length": len(raw.data), "line": raw.lineno, "parses": event is not None}
        if event is None:
            if raw.complete:
                summary.add_bad(raw, reason or "unparseable")
            continue
        summary.add_event(event)
    return summary.finish()


@dataclass(slots=True)
class Tail:
    size: int
    fragment_offset: int  # where the bytes after the last "\n" start (== size if none)
    fragment: bytes  # bytes after the last "\n" (a torn tail when not blank)
    last_line: bytes | None  # the last complete non-blank line, "\r" removed


def read_tail(path: Path, window: int = 1 << 16, max_bytes: int = 64 << 20) -> Tail:
    """Read only the end of the log: the torn fragment (if any) and the last complete line.

    Reads a window from the end, more only for lines longer than a window; at most
    ``max_bytes`` (then ``last_line`` is None and the caller falls back to a full pass).
    """
    fd = open_nofollow(path)
    try:
        size = os.fstat(fd).st_size
        pos = size
        buf = b""
        while pos > 0 and len(buf) < max_bytes:
            step = min(window, pos)
            pos -= step
            buf = os.pread(fd, step, pos) + buf
            nl = buf.rfind(b"\n")
            if nl < 0:
                continue
            fragment = buf[nl + 1 :]
            lines = buf[: nl + 1].split(b"\n")
            for i in range(len(lines) - 2, -1, -1):
                if i == 0 and pos > 0:
                    break  # may be cut by the window: read more
                line = lines[i].rstrip(b"\r")
                if line.strip():
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
    return [ln for ln in lines if ln.strip()], start == 0
