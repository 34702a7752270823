"""Following the Node server's log while it runs: ``manage.py ingest_logs --follow``.

A :class:`FileFollower` reads a log file as it grows and across its rotations (renamed and
recreated, or truncated in place as copytruncate does); a :class:`JournalFollower` reads
``journalctl -o json -f -u UNIT``. Both hand what they read to :func:`ingest.ingest` in small
batches and keep where they are in a small JSON state file (never in the database), so that a
restart goes on where the last run stopped: a file's device, inode and offset, with a hash of the
bytes just before the offset (an inode can be reused by a new file); the journal's last cursor.

What is read is ingested first and the position saved after, so a crash in between reads some
lines again, and ingest records nothing twice (fingerprints). A recovery the Node server is still
printing (its block began but has not ended yet) is held back, with the position before its
first line, until it ends: a block written in two pieces, or read by two runs, is recorded once,
whole. A block that stays open (the server died in the middle) is recorded as it stands once
nothing was added to it for ``SETTLE_SECONDS`` or ``HOLD_LINES`` other lines followed it.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import logging
import os
import re
import select
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from django.db import close_old_connections

from eventstore import serverlog
from eventstore.fileio import fsync_dir

from .ingest import IngestReport, ingest

log = logging.getLogger(__name__)

STATE_VERSION = 1
SETTLE_SECONDS = 5.0  # an unfinished recovery block untouched this long is recorded as it stands
HOLD_LINES = 1000  # ... and so is one followed by this many other lines
BATCH_SECONDS = 0.5  # what was read is ingested at least this often
BATCH_LINES = 500  # ... or after this many lines
POLL_SECONDS = 0.5  # a quiet file is looked at again after this long
RETRY_SECONDS = 5.0  # a batch that could not be recorded (the database away) is tried again after this long
MAX_LINE_BYTES = 64 * 1024  # longer lines are cut (serverlog keeps 2,000 characters of a line anyway)
MAX_RECORD_BYTES = 4 << 20  # a journal record (JSON, a MESSAGE of byte values takes 4 bytes a byte)
TAIL_BYTES = 4096  # the bytes before a file's offset that the state vouches for (their hash)
READ_CHUNK = 64 * 1024

_STARTS = ("CORRUPTED FILE DETECTED", "JSON parse error:")  # as serverlog.parse starts a recovery
_ENDS = ("Meta file rebuilt successfully", "Recovery failed:", "Raw content")  # the old build's last line
_TAG = serverlog.TAG.encode()


class StateError(ValueError):
    """The state file cannot be used (not JSON, another shape, another file or unit)."""


class FollowError(RuntimeError):
    """Following cannot go on (journalctl missing or gone, the state file locked or not writable)."""


# -- the state file -------------------------------------------------------------------------------------


def safe_name(text: str) -> str:
    """A file name made of ``text``: other characters become ``_``, and when anything had to change
    (a path's slashes) a short hash of the whole keeps two names apart."""
    name = re.sub(r"[^A-Za-z0-9@._-]+", "_", text).strip("._")[:100] or "log"
    return name if name == text else f"{name}-{hashlib.sha256(text.encode()).hexdigest()[:8]}"


def default_state_path(var_dir: Path, file: Path | None = None, unit: str | None = None) -> Path:
    """``var/ingest_logs-<name>.json`` for a file (by its absolute path) or a journal unit."""
    name = f"journal-{safe_name(unit)}" if unit is not None else safe_name(str(Path(file or "").absolute()))
    return Path(var_dir) / f"ingest_logs-{name}.json"


def load_state(path: Path) -> dict[str, Any] | None:
    """The saved state, None when there is none yet; StateError when it is damaged."""
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise StateError(f"cannot read it: {exc.strerror or exc}") from None
    try:
        data = json.loads(raw)
    except (ValueError, UnicodeDecodeError):
        raise StateError("it is not JSON") from None
    if not isinstance(data, dict) or data.get("version") != STATE_VERSION:
        raise StateError(f"it is not a version {STATE_VERSION} state")
    return data


def save_state(path: Path, data: dict[str, Any]) -> None:
    """Replace the state file atomically and durably (temp file, fsync, os.replace, fsync of the
    folder), readable by this user only."""
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp.{os.getpid()}")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        os.fchmod(fd, 0o600)
        os.write(fd, json.dumps({"version": STATE_VERSION, **data}, sort_keys=True).encode() + b"\n")
        os.fsync(fd)
    except BaseException:
        os.close(fd)
        os.unlink(tmp)
        raise
    os.close(fd)
    os.replace(tmp, path)
    fsync_dir(path.parent)


@contextlib.contextmanager
def state_lock(path: Path) -> Iterator[None]:
    """One follower per state file: a second run with the same ``--state`` is refused."""
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    fd = os.open(path.with_name(f"{path.name}.lock"), os.O_WRONLY | os.O_CREAT, 0o600)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise FollowError(f"another ingest_logs follows with the state {path}") from None
        yield
    finally:
        os.close(fd)


# -- lines and recovery blocks --------------------------------------------------------------------------


class Lines:
    """Whole lines out of bytes read in pieces, each with the offset just after it. A line that
    straddles two reads comes out once, whole, when its newline has come; a line longer than
    ``limit`` comes out cut to ``limit`` bytes (the rest is skipped, not kept)."""

    def __init__(self, start: int = 0, limit: int = MAX_LINE_BYTES) -> None:
        self.start = start  # the offset just after the last line given out
        self.limit = limit
        self._buf = bytearray()
        self._cut: bytes | None = None  # the first bytes of an overlong line whose end is still to come
        self._skipped = 0  # its bytes past those

    @property
    def read_to(self) -> int:
        """The offset after every byte fed so far."""
        return self.start + len(self._cut or b"") + self._skipped + len(self._buf)

    def feed(self, data: bytes) -> list[tuple[bytes, int]]:
        out: list[tuple[bytes, int]] = []
        self._buf += data
        at = 0
        while (nl := self._buf.find(b"\n", at)) >= 0:
            piece = bytes(self._buf[at : nl + 1])
            at = nl + 1
            if self._cut is not None:
                line, size = self._cut, len(self._cut) + self._skipped + len(piece)
                self._cut, self._skipped = None, 0
            else:
                line, size = piece[: self.limit], len(piece)
            self.start += size
            out.append((line, self.start))
        del self._buf[:at]
        if self._cut is not None:  # the rest of an overlong line: skipped
            self._skipped += len(self._buf)
            self._buf.clear()
        elif len(self._buf) > self.limit:
            self._cut = bytes(self._buf[: self.limit])
            self._skipped = len(self._buf) - self.limit
            self._buf.clear()
        return out

    def finish(self) -> list[tuple[bytes, int]]:
        """The rest that no newline ended, as a last line (the file will not grow any more)."""
        size = self.read_to - self.start
        if not size:
            return []
        line = self._cut if self._cut is not None else bytes(self._buf[: self.limit])
        self._buf.clear()
        self._cut, self._skipped = None, 0
        self.start += size
        return [(line, self.start)]


def block_kind(line: str | bytes) -> str | None:
    """``"start"``, ``"end"`` or ``"inside"`` for a line of a recovery block (as serverlog.parse
    reads it), None for any other line."""
    if isinstance(line, bytes):
        if _TAG not in line:
            return None
        line = line.decode("utf-8", "replace")
    text = line.rstrip("\r\n")[: serverlog.MAX_LINE].replace("\x00", "\ufffd")
    pos = text.find(serverlog.TAG)
    if pos < 0:
        return None
    message = text[pos + len(serverlog.TAG) :].strip()
    if message.startswith(_STARTS):
        return "start"
    return "end" if message.startswith(_ENDS) else "inside"


@dataclass
class _Pending:
    lines: list[str | bytes]
    start: Any  # the position before its first line
    last_at: float  # when its last line was written (at the latest)
    others: int = 0  # lines read since, not of the block


class Batcher:
    """The lines of the recovery blocks read so far, ready for ingest, and the position a restart
    would read from: after every line read, or before the block that is still open."""

    def __init__(self, position: Any) -> None:
        self.position = position
        self.latest = position
        self._ready: list[str | bytes] = []
        self._pending: _Pending | None = None

    def add(self, line: str | bytes, before: Any, after: Any, at: float) -> None:
        self.latest = after
        kind = block_kind(line)
        pending = self._pending
        if kind == "start":
            if pending is not None:
                self._ready += pending.lines  # a new block ends the one before (as serverlog.parse reads it)
            self._pending = _Pending([line], before, at)
            self.position = before
        elif pending is None:
            self.position = after  # any other line, or the tail of a block that began before the log
        elif kind is None:
            pending.others += 1
        else:
            pending.lines.append(line)
            pending.last_at, pending.others = at, 0
            if kind == "end":
                self._ready += pending.lines
                self._pending = None
                self.position = after

    def release_stale(self, now: float) -> None:
        """Record an open block as it stands when it was left alone long enough."""
        pending = self._pending
        if pending is not None and (
            now - pending.last_at >= SETTLE_SECONDS or len(pending.lines) + pending.others >= HOLD_LINES
        ):
            self._ready += pending.lines
            self._pending = None
            self.position = self.latest

    @property
    def holding(self) -> bool:
        return self._pending is not None

    def take(self) -> list[str | bytes]:
        out, self._ready = self._ready, []
        return out


# -- ingesting and saving -------------------------------------------------------------------------------


def _add(total: IngestReport, part: IngestReport) -> None:
    for name in ("found", "new", "known", "recovered", "failed", "linked"):
        setattr(total, name, getattr(total, name) + getattr(part, name))
    total.unmatched |= part.unmatched


@dataclass
class Sink:
    """Hands a follower's finished blocks to ingest, then saves its position (in that order)."""

    source: str
    host: str
    state_path: Path
    stop: threading.Event
    say: Callable[[str], None]
    year: int | None = None
    retry: bool = True  # a batch that fails is tried again (following); else the error goes up (--once)
    total: IngestReport = field(default_factory=IngestReport)
    saved: Any = None

    def commit(self, batcher: Batcher, state: Callable[[Any], dict[str, Any]]) -> bool:
        """Ingest what is ready and save the position; False when stopped before it could."""
        lines = batcher.take()
        if lines and not self._ingest(lines):
            return False
        if batcher.position is not None and batcher.position != self.saved:
            self.save(state(batcher.position), batcher.position)
        return True

    def save(self, data: dict[str, Any], position: Any) -> None:
        try:
            save_state(self.state_path, {**data, "saved_at": datetime.now(UTC).isoformat()})
        except OSError as exc:
            raise FollowError(f"cannot write the state {self.state_path}: {exc.strerror or exc}") from None
        self.saved = position

    def _ingest(self, lines: list[str | bytes]) -> bool:
        while True:
            try:
                report = ingest(lines, source=self.source, host=self.host, year=self.year)
            except Exception:
                if not self.retry:
                    raise
                log.exception(
                    "ingest_logs %s: recording a batch failed; trying again in %g s", self.source, RETRY_SECONDS
                )
                close_old_connections()  # a connection broken by the failure is not reused
                if self.stop.wait(RETRY_SECONDS):
                    return False
                continue
            _add(self.total, report)
            if report.found:
                self.say(f"ingest_logs {self.source}: {report.summary()}")
            return True


# -- a file ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class FilePosition:
    dev: int
    ino: int
    offset: int


class FileFollower:
    """Follows one log file: reads what it has, then what is appended, and across a rotation
    finishes the old file (to its last byte, an unterminated last line included) before reading
    the new one from its start. A rename is seen as another inode at the path, copytruncate as a
    shorter file or other bytes before the offset."""

    def __init__(self, path: Path, sink: Sink, *, once: bool = False, warn: Callable[[str], None]) -> None:
        self.path = Path(path)
        self.sink, self.once, self.warn = sink, once, warn
        self.bytes_read = 0  # every byte read from a log, for the tests and the curious
        self._fd: int | None = None
        self._id: tuple[int, int] = (0, 0)
        self._lines = Lines()
        self._last = b""  # the last bytes read, to notice a file truncated and written again
        self._mtime = 0.0
        self._waiting = False  # for the log to be created
        self.batcher = Batcher(None)

    def run(self) -> IngestReport:
        """Read until the stop (or, with ``once``, what there is now); the report of it all."""
        try:
            self.start()
            while self.poll() and not self.sink.stop.wait(POLL_SECONDS):
                pass
        finally:
            self.close()
        return self.sink.total

    def start(self) -> None:
        """Open the log where the state says (finishing a file rotated since the last run first)."""
        self._resume()

    def poll(self) -> bool:
        """Look for a rotation (finishing the old file), then read what is new. False when there
        is no next poll: stopped, or ``once``."""
        if not self._check_rotation():
            return False
        if self._fd is not None and not self._read():
            return False
        return not (self.once or self.sink.stop.is_set())

    def close(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None

    # where to begin

    def _resume(self) -> None:
        try:
            state = load_state(self.sink.state_path)
            if state is not None and (state.get("kind"), state.get("path")) != ("file", str(self.path.absolute())):
                raise StateError(f"it is the state of {state.get('kind')} {state.get('path') or state.get('unit')}")
            position = _file_position(state) if state is not None else None
        except StateError as exc:
            self.warn(
                f"ingest_logs: the state {self.sink.state_path} is damaged ({exc}): reading {self.path} from its end"
            )
            self._start_at_end()
            return
        if position is None:
            self._open(self.path, 0, missing_ok=not self.once)
            return
        tail = state.get("tail") if state else None
        here = _stat(self.path)
        if here is not None and (here.st_dev, here.st_ino) == (position.dev, position.ino):
            if _vouched(self.path, position.offset, tail):
                self._open(self.path, position.offset)
                return
            self.sink.say(
                f"ingest_logs {self.path}: truncated or written again since the last run: reading it from its start"
            )
        else:
            rotated = _sibling(self.path, position.dev, position.ino)
            if rotated is not None and _vouched(rotated, position.offset, tail):
                self.sink.say(f"ingest_logs {self.path}: rotated since the last run: finishing {rotated.name} first")
                self._open(rotated, position.offset)
                if not self._read(finish=True) or self.sink.stop.is_set():
                    return  # stopped before its end: the state still points into it
                os.close(self._fd)
                self._fd = None
            elif here is not None:
                self.sink.say(f"ingest_logs {self.path}: another file since the last run: reading it from its start")
        self._open(self.path, 0, missing_ok=not self.once)

    def _start_at_end(self) -> None:
        """After the last whole line there is now, the position saved at once."""
        self._open(self.path, 0, missing_ok=not self.once)
        if self._fd is None:
            return
        size = os.fstat(self._fd).st_size
        back = os.pread(self._fd, min(size, READ_CHUNK), max(0, size - READ_CHUNK))
        end = size - len(back) + back.rfind(b"\n") + 1 if b"\n" in back else size
        self._seek(end)
        self.sink.save(self._state(self.batcher.position), self.batcher.position)

    def _open(self, path: Path, offset: int, missing_ok: bool = False) -> None:
        try:
            self._fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
        except FileNotFoundError:
            if not missing_ok:
                raise
            if not self._waiting:
                self.sink.say(f"ingest_logs {self.path}: not there yet, waiting for it")
            self._fd, self._waiting = None, True
            return
        self._waiting = False
        st = os.fstat(self._fd)
        self._id = (st.st_dev, st.st_ino)
        self._seek(offset)

    def _seek(self, offset: int) -> None:
        self._lines = Lines(offset)
        self._last = os.pread(self._fd, min(offset, TAIL_BYTES), max(0, offset - TAIL_BYTES)) if offset else b""
        position = FilePosition(*self._id, offset)
        if not self.batcher.holding:
            self.batcher.position = position
        self.batcher.latest = position

    # reading

    def _read(self, finish: bool = False) -> bool:
        """Read to the end of the open file, a batch at a time; with ``finish`` its unterminated
        last line too. Ends early (True) on the stop, after a batch; False when stopped before a
        batch could be recorded."""
        batch_started, count = time.monotonic(), 0
        while True:
            start = self._lines.start
            data = os.pread(self._fd, READ_CHUNK, self._lines.read_to)
            if not data:
                if finish:
                    self._finish()
                break
            self.bytes_read += len(data)
            self._last = (self._last + data)[-TAIL_BYTES:]
            self._mtime = os.fstat(self._fd).st_mtime  # the lines were written then at the latest
            count += self._add(self._lines.feed(data), start)
            if count >= BATCH_LINES or time.monotonic() - batch_started >= BATCH_SECONDS:
                if not self._commit():
                    return False
                if self.sink.stop.is_set():
                    return True
                batch_started, count = time.monotonic(), 0
        return self._commit()

    def _add(self, lines: list[tuple[bytes, int]], start: int) -> int:
        dev, ino = self._id
        before = FilePosition(dev, ino, start)
        for line, end in lines:
            after = FilePosition(dev, ino, end)
            self.batcher.add(line, before, after, self._mtime)
            before = after
        return len(lines)

    def _finish(self) -> None:
        start = self._lines.start
        self._add(self._lines.finish(), start)

    def _commit(self) -> bool:
        self.batcher.release_stale(time.time())
        return self.sink.commit(self.batcher, self._state)

    def _check_rotation(self) -> bool:
        """Go on to the new file after a rotation. False when stopped before the old one was finished."""
        if self._fd is None:
            self._open(self.path, 0, missing_ok=True)
            return True
        here = _stat(self.path)
        if here is not None and (here.st_dev, here.st_ino) != self._id:
            # what was written to the old file since the last read, to its last byte; then the new one
            if not self._read(finish=True) or self.sink.stop.is_set():
                return False
            os.close(self._fd)
            self._fd = None
            self.sink.say(f"ingest_logs {self.path}: rotated, reading the new file")
            self._open(self.path, 0, missing_ok=True)
        elif self._truncated():
            self._finish()
            self.sink.say(f"ingest_logs {self.path}: truncated, reading it again from its start")
            self._seek(0)
        return True

    def _truncated(self) -> bool:
        read_to = self._lines.read_to
        if os.fstat(self._fd).st_size < read_to:
            return True
        return bool(self._last) and os.pread(self._fd, len(self._last), read_to - len(self._last)) != self._last

    def _state(self, position: FilePosition) -> dict[str, Any]:
        tail = None
        if self._fd is not None and (position.dev, position.ino) == self._id:
            before = os.pread(self._fd, min(position.offset, TAIL_BYTES), max(0, position.offset - TAIL_BYTES))
            tail = hashlib.sha256(before).hexdigest()
        return {
            "kind": "file",
            "path": str(self.path.absolute()),
            "dev": position.dev,
            "ino": position.ino,
            "offset": position.offset,
            "tail": tail,
        }


def _file_position(state: dict[str, Any]) -> FilePosition:
    values = [state.get(key) for key in ("dev", "ino", "offset")]
    if not all(isinstance(v, int) and not isinstance(v, bool) and v >= 0 for v in values):
        raise StateError("its dev, ino and offset are not whole numbers")
    tail = state.get("tail")
    if tail is not None and not (isinstance(tail, str) and re.fullmatch(r"[0-9a-f]{64}", tail)):
        raise StateError("its tail is not a hash")
    return FilePosition(*values)


def _stat(path: Path) -> os.stat_result | None:
    try:
        return os.stat(path)
    except FileNotFoundError:
        return None


def _vouched(path: Path, offset: int, tail: str | None) -> bool:
    """The file is at least ``offset`` long and the bytes before it are those the state saw."""
    try:
        with open(path, "rb") as fh:
            if os.fstat(fh.fileno()).st_size < offset:
                return False
            if tail is None:
                return True
            fh.seek(max(0, offset - TAIL_BYTES))
            return hashlib.sha256(fh.read(min(offset, TAIL_BYTES))).hexdigest() == tail
    except OSError:
        return False


def _sibling(path: Path, dev: int, ino: int) -> Path | None:
    """The file of that inode in the log's folder (``mishkah.log.1`` after a rename), if still there."""
    with contextlib.suppress(OSError), os.scandir(path.parent) as entries:
        for entry in entries:
            if entry.inode() == ino and entry.is_file(follow_symlinks=False) and entry.stat().st_dev == dev:
                return Path(entry.path)
    return None


# -- the journal ----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class JournalPosition:
    cursor: str | None = None  # after this record
    since: float | None = None  # or from this time (a damaged state: from then on); neither: everything kept


_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def journal_lines(record: Any) -> list[str]:
    """The lines of one ``journalctl -o json`` record, each with a prefix as journalctl prints it
    (``<ISO time in UTC> <host> <identifier>[<pid>]: ``) so that serverlog reads its time."""
    if not isinstance(record, dict):
        return []
    message = record.get("MESSAGE")
    if isinstance(message, list):  # journalctl gives a message that is not valid UTF-8 as its byte values
        try:
            message = bytes(message).decode("utf-8", "replace")
        except (TypeError, ValueError):
            return []
    if not isinstance(message, str):
        return []
    parts = []
    with contextlib.suppress(KeyError, TypeError, ValueError, OverflowError):
        at = _EPOCH + timedelta(microseconds=int(record["__REALTIME_TIMESTAMP"]))
        parts.append(at.isoformat(timespec="microseconds"))
    ident = record.get("SYSLOG_IDENTIFIER") or record.get("_COMM")
    pid = record.get("_PID") or record.get("SYSLOG_PID")
    if isinstance(record.get("_HOSTNAME"), str):
        parts.append(record["_HOSTNAME"])
    if isinstance(ident, str):
        parts.append(f"{ident}[{pid}]:" if isinstance(pid, str) else f"{ident}:")
    prefix = " ".join(parts)
    return [f"{prefix} {line}" if prefix else line for line in message.split("\n")]


def _realtime(record: dict[str, Any]) -> float:
    try:
        return int(record["__REALTIME_TIMESTAMP"]) / 1e6
    except (KeyError, TypeError, ValueError):
        return time.time()


class JournalFollower:
    """Follows ``journalctl -o json -f -u UNIT`` (without ``-f`` for ``--once``), from after the
    saved cursor (``--after-cursor``), from a damaged state's time on (``--since``), or, the first
    time, from the first record the journal keeps of the unit."""

    def __init__(
        self, unit: str, sink: Sink, *, once: bool = False, warn: Callable[[str], None], journalctl: str = "journalctl"
    ) -> None:
        self.unit, self.sink, self.once, self.warn, self.journalctl = unit, sink, once, warn, journalctl
        self.records = 0
        self.batcher = Batcher(JournalPosition())

    def command(self, position: JournalPosition) -> list[str]:
        args = [self.journalctl, "-o", "json", "--no-pager", "-u", self.unit, "--lines=all"]
        if not self.once:
            args.append("-f")
        if position.cursor is not None:
            args.append(f"--after-cursor={position.cursor}")
        elif position.since is not None:
            args.append(f"--since=@{position.since:.6f}")
        return args

    def run(self) -> IngestReport:
        position = self._resume()
        self.batcher = Batcher(position)
        rc = self._follow(position)
        if rc and not self.records and position.cursor is not None and not self.sink.stop.is_set():
            self.warn(f"ingest_logs: journalctl refused the saved cursor of {self.unit}: reading from now on")
            position = JournalPosition(since=time.time())
            self.sink.save(self._state(position), position)
            self.batcher = Batcher(position)
            rc = self._follow(position)
        # Following, journalctl ends only when stopped (a SIGTERM to the whole service reaches it too:
        # ours may come a moment later); --once, it ends at the last record, with 0.
        if (rc or not self.once) and not self.sink.stop.wait(0 if self.once else 1.0):
            raise FollowError(f"journalctl ended with exit code {rc}")
        return self.sink.total

    def _resume(self) -> JournalPosition:
        try:
            state = load_state(self.sink.state_path)
            if state is None:
                return JournalPosition()
            if (state.get("kind"), state.get("unit")) != ("journal", self.unit):
                raise StateError(f"it is the state of {state.get('kind')} {state.get('unit') or state.get('path')}")
            cursor, since = state.get("cursor"), state.get("since")
            if not (cursor is None or (isinstance(cursor, str) and cursor and "\n" not in cursor)):
                raise StateError("its cursor is not a journal cursor")
            if not (since is None or (isinstance(since, int | float) and not isinstance(since, bool))):
                raise StateError("its time is not a number")
            return JournalPosition(cursor, since)
        except StateError as exc:
            self.warn(
                f"ingest_logs: the state {self.sink.state_path} is damaged ({exc}): reading {self.unit} from now on"
            )
            position = JournalPosition(since=time.time())
            self.sink.save(self._state(position), position)
            return position

    def _follow(self, position: JournalPosition) -> int:
        """Run journalctl until it ends (``--once``) or the stop; its exit code (0 when we stopped it)."""
        try:
            proc = subprocess.Popen(self.command(position), stdin=subprocess.DEVNULL, stdout=subprocess.PIPE)
        except OSError as exc:
            raise FollowError(f"cannot run {self.journalctl}: {exc.strerror or exc}") from None
        stopped = True
        try:
            stopped = self._read(proc)
        finally:
            if stopped and proc.poll() is None:
                proc.terminate()
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
            proc.stdout.close()
        return 0 if stopped else proc.returncode

    def _read(self, proc: subprocess.Popen) -> bool:
        """Read records until journalctl's output ends (False) or the stop (True)."""
        fd, lines, stop = proc.stdout.fileno(), Lines(limit=MAX_RECORD_BYTES), self.sink.stop
        batch_started, count = time.monotonic(), 0
        while not stop.is_set():
            ready, _, _ = select.select([fd], [], [], POLL_SECONDS)
            data = os.read(fd, READ_CHUNK) if ready else None
            if data == b"":
                self._commit()
                return False
            for raw, _ in lines.feed(data or b""):
                count += self._record(raw)
            if count and (count >= BATCH_LINES or time.monotonic() - batch_started >= BATCH_SECONDS or not ready):
                batch_started, count = time.monotonic(), 0
                if not self._commit():
                    return True
            elif not ready and self.batcher.holding:
                self._commit()
        self._commit()
        return True

    def _record(self, raw: bytes) -> int:
        try:
            record = json.loads(raw)
        except ValueError:
            log.warning("ingest_logs %s: a journal record that is not JSON was skipped", self.unit)
            return 0
        cursor = record.get("__CURSOR") if isinstance(record, dict) else None
        before = self.batcher.latest
        after = JournalPosition(cursor) if isinstance(cursor, str) and cursor else before
        at = _realtime(record) if isinstance(record, dict) else time.time()
        found = journal_lines(record)
        for line in found or [""]:  # a record without a message moves the position all the same
            self.batcher.add(line, before, after, at)
        self.batcher.latest = after
        self.records += 1
        return len(found) or 1

    def _commit(self) -> bool:
        self.batcher.release_stale(time.time())
        return self.sink.commit(self.batcher, self._state)

    def _state(self, position: JournalPosition) -> dict[str, Any]:
        return {"kind": "journal", "unit": self.unit, "cursor": position.cursor, "since": position.since}
