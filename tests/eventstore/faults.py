"""Fault injection for eventstore, in the style of SQLite's I/O-error loop.

For one operation on one starting state (a :class:`Scenario`) the harness

1. runs the operation once, un-faulted, on a copy of the starting state, recording every I/O
   call it makes under the data folder (``os.open``, ``os.write``, ``os.fsync`` of files and of
   folders, ``os.replace``/``os.link``/``os.unlink``, ``mkdir``, ``os.stat``, reads, ``close``...);
2. then, for N = 1..count, runs it again on a fresh copy with the N-th call failing with
   ENOSPC, then EIO, then (opens only) EACCES; a ``write`` also fails as a short write (half the
   bytes really written, then ENOSPC on the next write, as a full disk does); and, as SQLite's
   "persistent" mode, with EIO on the N-th call and every call after it (a disk that went away:
   the cleanup after the failure fails too). Each (operation, call index, failure) is one
   injection point;
3. after each failure checks that the caller got a clear error (an EventStoreError or an OSError
   with a message), that every file is in its old or its new state (the log and backups by
   bytes, the meta by parsed content; intermediate states only where a scenario names them),
   that no backup, history file or archived copy is lost, that a damaged meta or a torn log
   fragment that was touched is saved in a backup, that any temp file left is one
   ``orphan_temp_files(grace=0)`` recognises (any other new file must be gone after the next
   call, and none may carry a backup's name), and that the next un-faulted call of the same
   operation (on the same Module object) succeeds and leaves a consistent module.

All I/O goes through the ``os`` module (pathlib and os.path do too), so the harness swaps the
``os`` functions for counting wrappers while an operation runs; only calls on paths under the
run folder (and descriptors opened there) from the test thread count. ``fsync`` is counted but
not performed: durability is not what this harness tests, and it keeps the loop fast.
The clock the library stamps files with (``iso_now``, ``now_ms``) is frozen so that two runs of
an operation make the same calls on the same names.
"""

from __future__ import annotations

import builtins
import errno
import hashlib
import io
import json
import os
import shutil
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import eventstore.fileio
from eventstore import EventStore, clock, layout
from eventstore.errors import EventStoreError

# The os functions through which eventstore (and pathlib / os.path under it) reaches the disk.
FD_FUNCS = {
    "read",
    "pread",
    "write",
    "pwrite",
    "fsync",
    "fdatasync",
    "ftruncate",
    "fstat",
    "fchmod",
    "fchown",
    "lseek",
    "close",
}
PATH_FUNCS = {
    "open",
    "fileopen",
    "stat",
    "lstat",
    "access",
    "scandir",
    "listdir",
    "unlink",
    "remove",
    "mkdir",
    "rmdir",
    "chmod",
    "utime",
    "truncate",
}
TWO_PATH_FUNCS = {"replace", "rename", "link", "symlink"}
OPENS = {"open", "fileopen", "scandir", "listdir"}
ERRNOS = (errno.ENOSPC, errno.EIO)
OPEN_ERRNOS = (errno.ENOSPC, errno.EIO, errno.EACCES)
SHORT = "ENOSPC-short-write"
PERSISTENT = "EIO-persistent"  # this call and every later one fail: a disk that went away

FROZEN_ISO = "2025-10-28T09:15:00.123Z"
FROZEN_MS = 1761642900123
BRANCH, MODULE = "dar", "pos"
LIVE = f"branches/{BRANCH}/modules/{MODULE}/live"
HISTORY = f"branches/{BRANCH}/modules/{MODULE}/history/events"
ARCHIVE = "archive"
_HERE = os.path.dirname(os.path.abspath(__file__))
_PKG = os.path.dirname(os.path.abspath(eventstore.fileio.__file__)) + os.sep


@dataclass(frozen=True, slots=True)
class Call:
    """One I/O call an operation made: 1-based index, os function, path (relative to the run
    folder; temp names normalised), where in eventstore it came from, bytes for a write."""

    index: int
    func: str
    target: str
    where: str
    size: int = 0

    @property
    def label(self) -> str:
        return f"#{self.index} {self.func}({self.target}) at {self.where}"

    def failures(self) -> list[int | str]:
        out: list[int | str] = list(OPEN_ERRNOS if self.func in OPENS else ERRNOS)
        if self.func == "write" and self.size >= 2:
            out.append(SHORT)
        out.append(PERSISTENT)
        return out


def _norm_target(rel: str) -> str:
    head, _, name = rel.rpartition("/")
    if layout.TEMP_RE.match(name):
        name = "events.meta.json.tmp.*"
    return f"{head}/{name}" if head else name


class FaultyOS:
    """Counting wrappers around the ``os`` functions; the ``fail_at``-th call fails."""

    def __init__(
        self,
        base: Path,
        fail_at: int | None = None,
        failure: int | str | None = None,
        fail_when: Callable[[Call], bool] | None = None,
    ):
        self.base = os.fspath(base).rstrip(os.sep) + os.sep
        self.fail_at = fail_at
        self.failure = failure
        self.fail_when = fail_when  # or: the first call this accepts fails (for targeted tests)
        self.calls: list[Call] = []
        self.fired: Call | None = None
        self._fds: dict[int, str] = {}
        self._depth = 0
        self._thread = threading.get_ident()
        self._short_fd: int | None = None

    @contextmanager
    def active(self) -> Iterator[FaultyOS]:
        originals = []
        for name in FD_FUNCS | PATH_FUNCS | TWO_PATH_FUNCS:
            real = getattr(os, name, None)
            if real is not None:
                originals.append((os, name, real))
                setattr(os, name, self._wrap(name, real))
        # open() of a file object (pathlib's read_bytes and friends): counted as an open; what
        # is done with the file object afterwards is not seen (eventstore does not use it).
        wrapped_open = self._wrap("fileopen", io.open)
        for mod in (io, builtins):
            originals.append((mod, "open", mod.open))
            mod.open = wrapped_open
        try:
            yield self
        finally:
            for mod, name, real in originals:
                setattr(mod, name, real)

    def _rel(self, path: Any) -> str | None:
        if isinstance(path, int) or path is None:
            return None
        try:
            p = os.fspath(path)
        except TypeError:
            return None
        if isinstance(p, bytes):
            p = os.fsdecode(p)
        if p.startswith(self.base):
            return _norm_target(p[len(self.base) :])
        if p + os.sep == self.base:
            return "."
        return None

    def _target(self, name: str, args: tuple, kwargs: dict) -> str | None:
        first = args[0] if args else kwargs.get("path", kwargs.get("fd", kwargs.get("src")))
        if name in FD_FUNCS or (name in ("stat", "lstat") and isinstance(first, int)):
            return self._fds.get(first) if isinstance(first, int) else None
        if name in TWO_PATH_FUNCS:
            second = args[1] if len(args) > 1 else kwargs.get("dst")
            a, b = self._rel(first), self._rel(second)
            return None if a is None and b is None else f"{a} -> {b}"
        return self._rel(first)

    def _wrap(self, name: str, real: Callable) -> Callable:
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            if self._depth or threading.get_ident() != self._thread:
                return real(*args, **kwargs)
            target = self._target(name, args, kwargs)
            if target is None:
                return real(*args, **kwargs)
            self._depth += 1
            try:
                return self._call(name, real, target, args, kwargs)
            finally:
                self._depth -= 1

        wrapper.__name__ = name
        wrapper.__wrapped__ = real  # type: ignore[attr-defined]
        return wrapper

    def _where(self) -> str:
        frame = sys._getframe(3)
        while frame is not None:
            filename = frame.f_code.co_filename
            if filename.startswith(_PKG):
                return f"eventstore/{filename[len(_PKG) :]}:{frame.f_lineno} {frame.f_code.co_name}"
            frame = frame.f_back
        return "?"

    def _call(self, name: str, real: Callable, target: str, args: tuple, kwargs: dict) -> Any:
        label = name
        if name in ("fsync", "fdatasync", "close") and target.endswith("/(dir)"):
            label = f"{name}(dir)"
        size = len(args[1]) if name == "write" and len(args) > 1 else 0
        call = Call(len(self.calls) + 1, label, target, self._where(), size)
        self.calls.append(call)
        if self._short_fd is not None and name == "write" and args[0] == self._short_fd:
            self._short_fd = None
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        if call.index == self.fail_at or (self.fired is None and self.fail_when is not None and self.fail_when(call)):
            self.fired = call
            return self._fail(name, real, args, kwargs)
        if self.fired is not None and self.failure == PERSISTENT:
            return self._fail(name, real, args, kwargs)
        if name == "close":
            self._fds.pop(args[0], None)
        if name in ("fsync", "fdatasync"):
            return None  # counted, not performed (see the module docstring)
        result = real(*args, **kwargs)
        if name == "open":
            flags = args[1] if len(args) > 1 else kwargs.get("flags", 0)
            self._fds[result] = target + ("/(dir)" if flags & getattr(os, "O_DIRECTORY", 0) else "")
        return result

    def _fail(self, name: str, real: Callable, args: tuple, kwargs: dict) -> Any:
        if self.failure == SHORT:
            # A full disk: the write takes what fits and returns a short count; the next
            # write on that descriptor fails with ENOSPC.
            fd, data = args[0], args[1]
            self._short_fd = fd
            return real(fd, memoryview(data)[: len(data) // 2])
        code = errno.EIO if self.failure == PERSISTENT else int(self.failure)  # type: ignore[arg-type]
        path = None
        if name == "close":
            self._fds.pop(args[0], None)
            real(*args, **kwargs)  # Linux releases the descriptor even when close reports an error
        elif name not in FD_FUNCS and args and not isinstance(args[0], int):
            path = os.fspath(args[0])
        raise OSError(code, os.strerror(code), path)


@contextmanager
def frozen_clock() -> Iterator[None]:
    """Freeze the times eventstore writes into files and names (so runs are comparable)."""
    saved = (clock.iso_now, clock.now_ms)
    clock.iso_now = lambda: FROZEN_ISO
    clock.now_ms = lambda: FROZEN_MS
    try:
        yield
    finally:
        clock.iso_now, clock.now_ms = saved


# -- snapshots -------------------------------------------------------------------------------

Snap = dict[str, bytes]  # path relative to the run folder -> bytes (regular files only)


def snapshot(base: Path) -> Snap:
    out: Snap = {}
    for folder, dirs, files in os.walk(base):
        dirs.sort()
        for name in files:
            path = os.path.join(folder, name)
            rel = os.path.relpath(path, base)
            if name == layout.LOCK_NAME or os.path.islink(path):
                continue
            with open(path, "rb") as fh:
                out[rel] = fh.read()
    return out


def is_temp(rel: str) -> bool:
    return bool(layout.TEMP_RE.match(rel.rpartition("/")[2]))


def is_meta(rel: str) -> bool:
    return rel.endswith("/" + layout.META_NAME)


def norm(rel: str, data: bytes | None) -> Any:
    """What "the same state" compares: the meta by parsed content, everything else by bytes."""
    if data is None or not is_meta(rel):
        return data
    try:
        return ("json", json.loads(data))
    except ValueError:
        return ("raw", data)


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def describe(value: Any) -> str:
    if value is None:
        return "absent"
    if isinstance(value, tuple):
        return f"meta {json.dumps(value[1], default=repr)[:160]}" if value[0] == "json" else f"raw {value[1][:80]!r}"
    return f"{len(value)} bytes sha {sha(value)[:12]} ...{value[-40:]!r}"


# -- scenarios -------------------------------------------------------------------------------


@dataclass
class Run:
    """One run of an operation on a copy of the starting state."""

    base: Path
    store: EventStore
    module: Any  # eventstore.store.Module
    attempt: int = 0  # 1 for the (faulted) call, 2 for the next one

    def perform(self, scenario: Scenario) -> Any:
        self.attempt += 1
        return scenario.call(self)

    @property
    def archive(self) -> Path:
        return self.base / ARCHIVE

    @property
    def live(self) -> Path:
        return self.base / LIVE


@dataclass
class Scenario:
    """An operation on a starting state.

    ``build(base)`` writes the starting state; ``call(run)`` performs the operation (the faulted
    one, then the next normal one); ``extra(old, new, base)`` names allowed intermediate states
    per file ({rel: [bytes, ...]}); ``invariant(old, new, got)`` returns problems with a
    combination of files; ``after_next(run, old, new)`` returns problems after the next call.
    """

    op: str
    name: str
    build: Callable[[Path], None]
    call: Callable[[Run], Any]
    extra: Callable[[Snap, Snap, Path], dict[str, list[bytes | None]]] | None = None
    invariant: Callable[[Snap, Snap, Snap], list[str]] | None = None
    after_next: Callable[[Run, Snap, Snap], list[str]] | None = None
    status: str = "healthy"

    @property
    def id(self) -> str:
        return f"{self.op}/{self.name}"


@dataclass
class Result:
    scenario: str
    op: str
    calls: list[Call]
    points: int = 0
    raised: int = 0
    absorbed: list[str] = field(default_factory=list)
    failures: list[str] = field(default_factory=list)
    seconds: float = 0.0
    verified: int = 0  # checks of the log against the checkpoints of a check from before the fault

    @property
    def sites(self) -> set[tuple[str, str]]:
        return {(c.func, c.where) for c in self.calls}


def open_run(base: Path) -> Run:
    store = EventStore(base / "branches", fsync=True, lock_timeout=5.0)
    return Run(base, store, store.module(BRANCH, MODULE))


def _copy(template: Path, dest: Path) -> None:
    shutil.copytree(template, dest, symlinks=True)


def run_scenario(scenario: Scenario, workdir: Path, limit: int | None = None) -> Result:
    """The whole loop for one scenario; ``limit`` caps the call indexes tried (for self-tests)."""
    started = time.monotonic()
    template = workdir / "template"
    template.mkdir(parents=True)
    scenario.build(template)
    old = snapshot(template)

    clean = workdir / "clean"
    _copy(template, clean)
    run = open_run(clean)
    recorder = FaultyOS(clean)
    with frozen_clock(), recorder.active():
        run.perform(scenario)
    new = snapshot(clean)
    result = Result(scenario.id, scenario.op, recorder.calls)
    extra = scenario.extra(old, new, template) if scenario.extra else {}
    shutil.rmtree(clean)

    count = len(recorder.calls) if limit is None else min(limit, len(recorder.calls))
    for call in recorder.calls[:count]:
        for failure in call.failures():
            result.points += 1
            point = f"{scenario.id} {call.label} failing with {failure if isinstance(failure, str) else errno.errorcode[failure]}"
            base = workdir / f"run-{call.index}-{failure}"
            _copy(template, base)
            try:
                problems = _inject(scenario, base, call, failure, old, new, extra, result)
            except Exception as exc:  # the harness itself must not hide a failure
                problems = [f"harness error {type(exc).__name__}: {exc}"]
            if problems:
                result.failures.append(point + ":\n    " + "\n    ".join(problems))
            shutil.rmtree(base, ignore_errors=True)
    result.seconds = time.monotonic() - started
    return result


def _inject(
    scenario: Scenario,
    base: Path,
    call: Call,
    failure: int | str,
    old: Snap,
    new: Snap,
    extra: dict[str, list[bytes | None]],
    result: Result,
) -> list[str]:
    problems: list[str] = []
    run = open_run(base)
    # the checkpoints of the log as it was: whatever the fault, Python only appends to (or cuts
    # an unprotected torn tail off) a log, so no later check may find it changed in place
    baseline = open_run(base).module.check(now=FROZEN_NOW)
    faulty = FaultyOS(base, fail_at=call.index, failure=failure)
    error: BaseException | None = None
    with frozen_clock(), faulty.active():
        try:
            run.perform(scenario)
        except Exception as exc:
            error = exc
    if faulty.fired is None:
        return [
            f"the call was never reached (the run made {len(faulty.calls)} calls): the operation is not deterministic"
        ]
    if (faulty.fired.func, faulty.fired.target) != (call.func, call.target):
        problems.append(
            f"call #{call.index} was {faulty.fired.label}, not {call.label}: the operation is not deterministic"
        )

    # 1. a clear error
    if error is None:
        result.absorbed.append(f"{call.label} {failure}")
    else:
        result.raised += 1
        if not isinstance(error, (EventStoreError, OSError)):
            problems.append(f"raised {type(error).__name__}: {error} (not an EventStoreError or OSError)")
        elif not str(error).strip() or (
            isinstance(error, OSError) and not isinstance(error, EventStoreError) and error.errno is None
        ):
            problems.append(f"raised {type(error).__name__} without a message: {error!r}")

    got = snapshot(base)

    # 2. every file old or new (or a named intermediate state); temps apart, and other new
    # files (an archive's partial copy) if the next call removes them (checked below)
    leftovers = []
    for rel in sorted(set(old) | set(new) | set(got)):
        if is_temp(rel):
            continue
        if rel not in old and rel not in new and not layout.backup_kind(rel.rpartition("/")[2]):
            leftovers.append(rel)
            continue
        allowed = [norm(rel, old.get(rel)), norm(rel, new.get(rel))] + [norm(rel, b) for b in extra.get(rel, [])]
        have = norm(rel, got.get(rel))
        if have not in allowed:
            problems.append(
                f"{rel} is neither old nor new: {describe(have)} (old: {describe(allowed[0])}; new: {describe(allowed[1])})"
            )

    # 3. nothing precious lost: every backup, history file, archived copy and Node file
    everything = {sha(b) for b in got.values()}
    for rel, data in old.items():
        if rel.endswith((layout.LOG_NAME, layout.META_NAME)) and rel.startswith(LIVE) or is_temp(rel):
            continue
        if sha(data) not in everything:
            problems.append(f"{rel} ({len(data)} bytes) is lost: no file holds its bytes any more")

    # 4. a damaged meta or a torn fragment that was touched is in a backup
    backups = {
        sha(b) for rel, b in got.items() if rel.startswith(LIVE + "/") and layout.backup_kind(rel.rpartition("/")[2])
    }
    meta_rel, log_rel = f"{LIVE}/{layout.META_NAME}", f"{LIVE}/{layout.LOG_NAME}"
    old_meta = old.get(meta_rel)
    if (
        old_meta is not None
        and norm(meta_rel, old_meta)[0] == "raw"
        and got.get(meta_rel) != old_meta
        and sha(old_meta) not in backups
    ):
        problems.append("the damaged meta was replaced but no backup holds its bytes")
    fragment = torn_fragment(old.get(log_rel))
    if fragment and got.get(log_rel) != old.get(log_rel) and sha(fragment) not in backups:
        problems.append("the torn log tail was cut off but no backup holds it")

    if scenario.invariant:
        problems.extend(scenario.invariant(old, new, got))
    problems.extend(_unchanged_in_place(base, baseline, result))

    # 5. temps left behind are ones the store recognises as orphans
    temps = sorted(rel.rpartition("/")[2] for rel in got if is_temp(rel))
    if temps:
        try:
            orphans = {name for name, _ in run.module.orphan_temp_files(grace=0)}
        except Exception as exc:
            orphans = set()
            problems.append(f"orphan_temp_files failed: {type(exc).__name__}: {exc}")
        unknown = [t for t in temps if t not in orphans]
        if unknown:
            problems.append(f"temp files not recognised by orphan_temp_files(grace=0): {unknown}")

    # 6. the next normal call (same Module object) succeeds and leaves a consistent module
    tracker = FaultyOS(base)  # counts only: fsync stays cheap
    with frozen_clock(), tracker.active():
        try:
            run.perform(scenario)
        except Exception as exc:
            problems.append(f"the next call failed: {type(exc).__name__}: {exc}")
            return problems
    try:
        run.module.clean_temp(grace=0)
    except Exception as exc:
        problems.append(f"clean_temp after the next call failed: {type(exc).__name__}: {exc}")
    left = [n for n in os.listdir(run.live) if layout.TEMP_RE.match(n)]
    if left:
        problems.append(f"temp files survive the next call and clean_temp(grace=0): {left}")
    stay = [rel for rel in leftovers if (base / rel).exists()]
    if stay:
        problems.append(f"files neither old nor new, still there after the next call: {stay}")
    fresh = open_run(base).module
    health = fresh.check()
    problems.extend(_unchanged_in_place(base, baseline, result))
    if health.status != scenario.status:
        problems.append(
            f"after the next call the module is {health.status}: {[f.to_dict() for f in health.findings if f.severity != 'info']}"
        )
    if scenario.after_next:
        problems.extend(scenario.after_next(run, old, snapshot(base)))
    return problems


FROZEN_NOW = 4_000_000_000.0  # "now" of the checkpoint checks: every file is past the racy window


def _unchanged_in_place(base: Path, baseline, result: Result) -> list[str]:
    """A full and an incremental check against ``baseline``'s checkpoints find no change in place."""
    module = open_run(base).module
    out = []
    for full in (True, False):
        h = module.check(now=FROZEN_NOW, previous=baseline.state, full=full)
        result.verified += 1
        changed = [f.to_dict() for f in h.findings if f.code == "log_changed_in_place"]
        if changed:
            out.append(f"the log was changed in place ({'full' if full else 'incremental'} check): {changed}")
    return out


def torn_fragment(log: bytes | None) -> bytes:
    if not log:
        return b""
    fragment = log[log.rfind(b"\n") + 1 :]
    return fragment if fragment.strip() else b""


# -- report ----------------------------------------------------------------------------------


def summary_line(results: list[Result]) -> str:
    points = sum(r.points for r in results)
    ops = sorted({r.op for r in results})
    sites = set().union(*(r.sites for r in results)) if results else set()
    failed = sum(len(r.failures) for r in results)
    verdict = "all recovered" if not failed else f"{failed} NOT recovered"
    verified = sum(r.verified for r in results)
    return (
        f"fault injection: {points} injection points over {len(ops)} operations "
        f"({len(results)} scenarios, {len(sites)} distinct call sites), {verdict}; "
        f"{verified} checks of the log against its checkpoints from before the fault"
    )


def report_lines(results: list[Result]) -> list[str]:
    out = [summary_line(results)]
    for r in results:
        out.append(
            f"  {r.scenario}: {len(r.calls)} calls, {r.points} points, {r.raised} raised, "
            f"{len(r.absorbed)} absorbed, {len(r.failures)} failed, {r.seconds:.1f} s"
        )
    return out
