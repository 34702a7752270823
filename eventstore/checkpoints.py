"""Checkpoints of a log: the sha256 of its bytes, piece by piece, up to the end of its last
complete line, so that a full read can tell bytes changed in place (bit rot, a bad disk, a
hand edit that kept the size and the time) from bytes appended.

The log is cut into windows of ``SEGMENT`` bytes ([0, 8 MiB), [8, 16 MiB) ...); a piece never
crosses a window's edge. A full read makes one piece per window (the last one partial) while it
reads, and checks each stored piece against the same bytes (:class:`Segmenter`: no second read).
An incremental check that reads a grown log hashes the new bytes as it reads them (new pieces),
then keeps the state small at a bounded cost (:func:`extend`): the pieces of a window the log
has grown past are merged into one, and in the last window a piece is merged with the one
before it while that one is less than twice its size, so the last window holds a few pieces of
falling sizes (about log2(8 MiB / the smallest growth)); each merge re-reads only the merged
pieces (at most one window) and checks them on the way. A 1 GB log carries about 120 pieces
plus those few.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from . import health
from .fileio import open_nofollow
from .health import Finding
from .shapes import Malformed

SEGMENT = 8 << 20
FINGERPRINT_BYTES = 512  # checks.py's fingerprint: the first and the last 512 bytes
_READ = 1 << 20
_HEX = frozenset("0123456789abcdef")


def iso(ts: float) -> str:
    """Epoch seconds as Node's ``toISOString()`` (the times a finding quotes)."""
    try:
        return datetime.fromtimestamp(ts, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
    except (OverflowError, OSError, ValueError):
        return str(ts)


def window_end(pos: int) -> int:
    """The end of the window holding byte ``pos``."""
    return (pos // SEGMENT + 1) * SEGMENT


@dataclass(slots=True)
class Piece:
    start: int
    end: int
    sha: str
    at: float  # when these bytes were last found to be these (epoch seconds)

    def to_json(self) -> list[Any]:
        return [self.end, self.sha, self.at]


@dataclass(slots=True)
class Checkpoints:
    """The checkpoints of one log file (``file``: its device and inode): pieces covering
    [0, ``end``) without a hole, and when it was last read in full (None: never)."""

    file: tuple[int, int]
    pieces: list[Piece] = field(default_factory=list)
    verified_at: float | None = None
    _json: dict[str, Any] | None = field(default=None, compare=False, repr=False)  # as read back

    @property
    def end(self) -> int:
        return self.pieces[-1].end if self.pieces else 0

    def to_json(self) -> dict[str, Any]:
        if self._json is not None:
            return self._json
        return {
            "file": list(self.file),
            "pieces": [p.to_json() for p in self.pieces],
            "verified_at": self.verified_at,
        }

    @classmethod
    def from_json(cls, value: Any) -> Checkpoints:
        """What :meth:`to_json` wrote; ``Malformed`` for anything else. Every piece is checked
        (the pieces are few: one per 8 MiB)."""
        if type(value) is not dict or value.keys() != {"file", "pieces", "verified_at"}:
            raise Malformed("not checkpoints")
        file, raw, verified_at = value["file"], value["pieces"], value["verified_at"]
        if (
            type(file) is not list
            or len(file) != 2
            or not all(type(x) is int and x >= 0 for x in file)
            or type(raw) is not list
            or not (verified_at is None or (type(verified_at) in (int, float) and verified_at >= 0))
        ):
            raise Malformed("not checkpoints")
        pieces = []
        start = 0
        for p in raw:
            if type(p) is not list or len(p) != 3:
                raise Malformed("a piece is [end, sha256, at]")
            end, sha, at = p
            if (
                type(end) is not int
                or not start < end <= window_end(start)
                or type(sha) is not str
                or len(sha) != 64
                or not _HEX.issuperset(sha)
                or type(at) not in (int, float)
                or not at >= 0  # not NaN either
            ):
                raise Malformed("a piece is [end, sha256, at] within one window")
            pieces.append(Piece(start, end, sha, float(at)))
            start = end
        return cls((file[0], file[1]), pieces, None if verified_at is None else float(verified_at), value)


@dataclass(slots=True)
class Hashed:
    """What a :class:`Segmenter` saw (picklable: a reader process sends it back)."""

    start: int
    pos: int  # bytes [start, pos) were hashed
    windows: list[tuple[int, int, str]]  # the complete windows (start, end, sha256)
    open: tuple[int, int, str] | None  # the last, incomplete one
    matched: list[int]  # indexes of the stored pieces these bytes confirm
    differ: list[int]  # indexes of the stored pieces these bytes contradict
    head: bytes  # the first FINGERPRINT_BYTES (when start is 0)
    tail: bytes  # the last FINGERPRINT_BYTES hashed
    line_end: int  # the offset after the last newline hashed (start if none)


class Segmenter:
    """Hashes the bytes fed to it, in file order from ``start`` (those from ``stop`` on are
    ignored), one sha256 per window, and checks the stored pieces (``stored``: index, start,
    end, sha256, each within one window, at or after ``start``) against them: a piece that
    starts where its window's hash starts is read off a copy of that hash, any other gets its
    own, so the bytes a full read made are hashed once."""

    __slots__ = (
        "start",
        "pos",
        "stop",
        "win",
        "h",
        "vh",
        "windows",
        "stored",
        "i",
        "cut",
        "head",
        "tail",
        "line_end",
        "matched",
        "differ",
    )

    def __init__(self, start: int, stop: int | None, stored: list[tuple[int, int, int, str]]):
        self.start = self.pos = self.win = self.line_end = start
        self.stop = stop
        self.h = hashlib.sha256()
        self.vh: Any = None  # the hash of a stored piece that does not start with its window
        self.windows: list[tuple[int, int, str]] = []
        self.stored = [s for s in stored if s[1] >= start and (stop is None or s[1] < stop)]
        self.i = 0  # the next stored piece to check
        self.head = self.tail = b""
        self.matched: list[int] = []
        self.differ: list[int] = []
        self._start_piece()
        self.cut = self._next_cut()

    def _next_cut(self) -> int:
        cut = window_end(self.win)
        if self.stop is not None and self.stop < cut:
            cut = self.stop
        if self.i < len(self.stored):
            _, a, b, _ = self.stored[self.i]
            cut = min(cut, b if a <= self.pos else a)
        return cut

    def _start_piece(self) -> None:
        if self.i < len(self.stored) and self.stored[self.i][1] == self.pos and self.pos != self.win:
            self.vh = hashlib.sha256()

    def feed(self, data: bytes) -> None:
        """The next bytes of the file (a chunk the reader just read)."""
        at = self.pos
        n = len(data)
        if not n or (self.stop is not None and at >= self.stop):
            return
        if at + n < self.cut:  # the usual chunk: no edge inside
            self.h.update(data)
            if self.vh is not None:
                self.vh.update(data)
            self.pos = at + n
            self._edges(data, at)
            return
        view = memoryview(data)
        while view and (self.stop is None or self.pos < self.stop):
            take = min(len(view), self.cut - self.pos)
            part = bytes(view[:take])
            view = view[take:]
            self.h.update(part)
            if self.vh is not None:
                self.vh.update(part)
            at = self.pos
            self.pos = at + take
            self._edges(part, at)
            if self.pos == self.cut:
                self._at_cut()

    def _edges(self, data: bytes, at: int) -> None:
        """Keep the head and tail of the fingerprint and where the last complete line ends."""
        if at < FINGERPRINT_BYTES and at == len(self.head):
            self.head += data[: FINGERPRINT_BYTES - at]
        if len(data) >= FINGERPRINT_BYTES:
            self.tail = data[-FINGERPRINT_BYTES:]
        else:
            self.tail = (self.tail + data)[-FINGERPRINT_BYTES:]
        nl = data.rfind(b"\n")
        if nl >= 0:
            self.line_end = at + nl + 1

    def _at_cut(self) -> None:
        pos = self.pos
        if self.i < len(self.stored) and self.stored[self.i][2] == pos:
            index, _a, _b, sha = self.stored[self.i]
            digest = self.vh.hexdigest() if self.vh is not None else self.h.copy().hexdigest()
            (self.matched if digest == sha else self.differ).append(index)
            self.vh = None
            self.i += 1
        if pos == window_end(self.win):
            self.windows.append((self.win, pos, self.h.hexdigest()))
            self.h = hashlib.sha256()
            self.win = pos
        self._start_piece()
        self.cut = self._next_cut()

    def result(self) -> Hashed:
        opened = (self.win, self.pos, self.h.copy().hexdigest()) if self.pos > self.win else None
        return Hashed(
            self.start,
            self.pos,
            self.windows,
            opened,
            self.matched,
            self.differ,
            self.head,
            self.tail,
            self.line_end,
        )


@dataclass(frozen=True, slots=True)
class Feeder:
    """Makes the :class:`Segmenter` of each range a reader reads (picklable: it travels to the
    reader processes of a large log). ``stored``: the stored pieces to check."""

    stored: tuple[tuple[int, int, int, str], ...] = ()
    align: int = SEGMENT

    def for_range(self, start: int, stop: int | None) -> Segmenter:
        return Segmenter(start, stop, list(self.stored))


def feeder_for(cps: Checkpoints | None) -> Feeder:
    pieces = cps.pieces if cps is not None else []
    return Feeder(tuple((i, p.start, p.end, p.sha) for i, p in enumerate(pieces)))


def hash_range(path: str, start: int, end: int, stored: list[tuple[int, int, int, str]]) -> Hashed:
    """Read bytes [start, end) again (at most a window: a merge), checking ``stored``."""
    seg = Segmenter(start, end, stored)
    fd = open_nofollow(path)
    try:
        pos = start
        while pos < end:
            data = os.pread(fd, min(_READ, end - pos), pos)
            if not data:
                break
            seg.feed(data)
            pos += len(data)
    finally:
        os.close(fd)
    return seg.result()


@dataclass(slots=True)
class Verdict:
    """What a read of the log says of its checkpoints: the new pieces, the stored pieces it
    contradicts (or could not find: the log is shorter), and the bytes it read again."""

    pieces: list[Piece]
    changed: list[Piece]
    reread: int = 0
    fingerprint_parts: tuple[bytes, bytes] = (b"", b"")


def _windows_upto(parts: list[Hashed], end: int, now: float) -> tuple[list[Piece], int | None]:
    """The pieces of the windows wholly before ``end``, and the start of the window that must
    be hashed again up to ``end`` (the bytes after it were a torn tail), or None."""
    pieces = []
    for part in parts:
        for a, b, sha in part.windows + ([part.open] if part.open else []):
            if b <= end:
                pieces.append(Piece(a, b, sha, now))
            elif a < end:
                return pieces, a
            else:
                return pieces, None
    return pieces, None


def settle(path: str, parts: list[Hashed], end: int, stored: list[Piece], now: float) -> Verdict:
    """The verdict of a read that hashed ``parts`` (in file order, without a hole) and whose
    last complete line ends at ``end``: pieces up to ``end`` (the window holding it hashed again
    when a torn tail was hashed with it), and the stored pieces not confirmed."""
    pieces, again = _windows_upto(parts, end, now)
    reread = 0
    if again is not None:
        h = hash_range(path, again, end, [])
        reread = h.pos - again
        if h.open is not None and h.pos == end:
            pieces.append(Piece(again, end, h.open[2], now))
    matched = {i for p in parts for i in p.matched}
    changed = [p for i, p in enumerate(stored) if i not in matched or p.end > end]
    head = parts[0].head if parts else b""
    tail = b""
    for part in parts:
        tail = (tail + part.tail)[-FINGERPRINT_BYTES:]
    return Verdict(pieces, changed, reread, (head, tail))


def _merge_plan(pieces: list[Piece]) -> int:
    """The index from which the last pieces are merged into one: those of a window the log
    has grown past, and in the last window each piece less than twice the size of the next."""
    n = len(pieces)
    if n < 2:
        return n
    last_win = pieces[-1].start // SEGMENT
    j = n - 1
    merged = pieces[-1].end - pieces[-1].start
    while j > 0 and pieces[j - 1].start // SEGMENT == last_win:
        before = pieces[j - 1].end - pieces[j - 1].start
        if before >= 2 * merged:
            break
        merged += before
        j -= 1
    return j if j < n - 1 else n


def _closed_window(pieces: list[Piece], since: int) -> tuple[int, int] | None:
    """The index range [i, j) of the pieces of the window where this check's pieces begin
    (``since``), when the log has grown past that window and it holds more than one piece."""
    w = pieces[since].start // SEGMENT
    if w == pieces[-1].start // SEGMENT:
        return None
    i = since
    while i > 0 and pieces[i - 1].start // SEGMENT == w:
        i -= 1
    return (i, since + 1) if since > i else None


def _merge(path: str, pieces: list[Piece], i: int, j: int, now: float) -> tuple[Piece | None, list[Piece], int]:
    """Pieces [i, j) read again as one: (the merged piece or None, those contradicted, bytes)."""
    a, b = pieces[i].start, pieces[j - 1].end
    h = hash_range(path, a, b, [(k, p.start, p.end, p.sha) for k, p in enumerate(pieces[i:j])])
    changed = [pieces[i + k] for k in range(j - i) if k not in set(h.matched)]
    digest = h.windows[0][2] if h.windows else (h.open[2] if h.open else None)
    if changed or digest is None or h.pos != b:
        return None, changed or pieces[i:j], b - a
    return Piece(a, b, digest, now), [], b - a


def extend(path: str, cps: Checkpoints, new: list[Piece], now: float) -> tuple[Checkpoints, list[Piece], int]:
    """``cps`` with the pieces of the bytes an incremental check just read appended and merged
    to keep them few (see the module's docstring). Returns (checkpoints, pieces found changed
    while reading some again, bytes read again). On a change the checkpoints stay as they were."""
    if not new:
        return cps, [], 0
    since = len(cps.pieces)
    pieces = [*cps.pieces, *new]
    reread = 0
    closed = _closed_window(pieces, since)
    if closed is not None:
        i, j = closed
        merged, changed, n = _merge(path, pieces, i, j, now)
        reread += n
        if merged is None:
            return cps, changed, reread
        pieces[i:j] = [merged]
    j = _merge_plan(pieces)
    if j < len(pieces):
        merged, changed, n = _merge(path, pieces, j, len(pieces), now)
        reread += n
        if merged is None:
            return cps, changed, reread
        pieces[j:] = [merged]
    return Checkpoints(cps.file, pieces, cps.verified_at), [], reread


def changed_finding(changed: list[Piece], now: float, earlier: Finding | None) -> Finding:
    """``log_changed_in_place`` for the pieces ``changed`` (joined with the finding of an
    earlier check, still reported)."""
    ranges = {(p.start, p.end - 1) for p in changed}
    intact = min((p.at for p in changed), default=now)
    found = iso(now)
    intact_at = iso(intact)
    if earlier is not None:
        ranges |= {tuple(r) for r in earlier.detail["ranges"]}
        intact_at = min(intact_at, earlier.detail["intact_at"])
        found = earlier.detail["found_at"]
    ranges_list = [list(r) for r in sorted(ranges)]
    first, last = ranges_list[0][0], ranges_list[-1][1]
    return health.make(
        "log_changed_in_place",
        f"{len(ranges_list)} checkpointed segment(s) of the log changed in place (bytes {first}..{last}); "
        f"intact at {intact_at}, found at {found}",
        segments=len(ranges_list),
        ranges=ranges_list,
        intact_at=intact_at,
        found_at=found,
    )
