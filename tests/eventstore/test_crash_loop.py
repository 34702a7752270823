"""Crash loop: SIGKILL at random moments during appends, rebuilds, archives and rotations.

Several processes work on one module at once (forked from the test, so a respawn costs a
millisecond, not an interpreter start):

- ``WRITERS`` writers: ``append_event`` in a loop (printing the event id once it returned: the
  event is *acknowledged*), now and then ``update_meta``;
- a rebuilder: damages the meta under the module lock the way overlapping Node writes do (a whole
  document followed by the tail of a longer one, a truncated file, NUL bytes, an empty file) and
  then rebuilds it, or leaves it for the writers to recover, or rebuilds a healthy meta, or
  loads it;
- an archiver: ``archive_backups`` into an archive root, ``rotate`` to a new day, ``clean_temp``.

The parent kills one of them (append / rebuild / archive, 2:1:1) with SIGKILL after a random
delay, reaps it, takes the module lock (so that no survivor is half-way through an operation)
and checks everything:

- every acknowledged event is in the log or in a history file exactly once (no event at all
  is there twice; two history names of one file count twice);
- sequences are unique and contiguous in every log file, starting at 1 or continuing the file
  rotated before it (a rotation killed after the move, before the meta reset);
- the meta, as found, equals a rebuild from the log in the fields the rebuild derives
  (totalEvents, lastEventId, lastEventAt, tableCursors), or lags it by unacknowledged events
  only (writers killed between their log write and their meta write), or is damaged (the
  rebuilder's doing), or is ahead of a log that a killed rotation moved away;
- on a copy of the live folder, ``load_meta`` (what the next writer does) gives the rebuild's
  derived fields, ``check()`` then finds nothing worse than a torn tail, a damaged meta is
  backed up, and ``rebuild()`` leaves the module healthy;
- every backup ever seen (sha256 recorded at every check, i.e. before every kill) is still in
  the live folder or in the archive with the same sha256; history files are never lost.

Then the victim is respawned. ``EVENTSTORE_CRASH_KILLS`` sets the number of kills (200 by
default: about 20-30 s on two shared cores), ``EVENTSTORE_CRASH_SEED`` the seed (1). The
summary line ("crash loop: N kills survived (appends a, rebuilds b, archives c)"), what the
victims were doing and the states the checks met are printed and written to
``test-artifacts/crash-loop.txt``. Full size (about 6 minutes; a check costs more as history
files and archived backups pile up):

    EVENTSTORE_CRASH_KILLS=2000 .venv/bin/python -m pytest tests/eventstore/test_crash_loop.py -s

A seed does not replay a run exactly (the kills land where the scheduler puts them); a failure
names the kill number, the victim and what it was doing.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import random
import select
import shutil
import signal
import subprocess
import sys
import threading
import time
import traceback
from collections import Counter
from datetime import date, timedelta
from pathlib import Path

import orjson

from eventstore import EventStore, layout
from eventstore import log as logmod
from eventstore import meta as metamod
from eventstore.fileio import ModuleLock
from tests.eventstore.conftest import BRANCH, MODULE, REPO, make_entry

KILLS = int(os.environ.get("EVENTSTORE_CRASH_KILLS", "200"))
SEED = int(os.environ.get("EVENTSTORE_CRASH_SEED", "1"))
WRITERS = 3
KINDS = ("append", "rebuild", "archive")
WEIGHTS = (2, 1, 1)
MAX_DELAY = 0.03  # seconds between a (re)start of the round and the kill
ARTIFACT = REPO / "test-artifacts" / "crash-loop.txt"
DERIVED = ("totalEvents", "lastEventId", "lastEventAt")


# -- the children (forked; they run until killed) ------------------------------------------------


def _say(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]


def _writer(root: Path, archive: Path, out: int, rng: random.Random) -> None:
    module = EventStore(root).module(BRANCH, MODULE)
    i = 0
    while True:
        i += 1
        _say(out, b"O append\n")
        line = module.append_event(make_entry(i, seed=rng.randrange(1 << 30)))
        _say(out, b"A " + line["id"].encode() + b"\n")  # acknowledged: append_event returned
        if rng.random() < 0.15:
            _say(out, b"O update\n")
            module.update_meta({"lastAckId": line["id"], "lastClientSyncAt": line["recordedAt"]})


def _damage(path: Path, rng: random.Random) -> None:
    """Overwrite the meta in place (no temp file, no rename), as the upstream race did."""
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        return
    how = rng.choice(("overlap", "overlap", "truncated", "nul", "empty"))
    if how == "overlap":  # a whole document followed by the tail of a longer one
        bad = data + data[len(data) // 2 :]
    elif how == "truncated":
        bad = data[: len(data) // 2]
    elif how == "nul":
        bad = b"\x00" * len(data)
    else:
        bad = b""
    fd = os.open(path, os.O_WRONLY | os.O_TRUNC)
    try:
        _say(fd, bad)
    finally:
        os.close(fd)


def _rebuilder(root: Path, archive: Path, out: int, rng: random.Random) -> None:
    module = EventStore(root).module(BRANCH, MODULE)
    lock = ModuleLock(module.live_dir)
    while True:
        what = rng.choice(("damage+rebuild", "damage+rebuild", "damage", "rebuild", "load"))
        if what.startswith("damage"):
            _say(out, b"O damage\n")
            with lock.hold():
                _damage(module.meta_path, rng)
        if what in ("damage+rebuild", "rebuild"):
            _say(out, b"O rebuild\n")
            module.rebuild()
        elif what == "load":
            _say(out, b"O load\n")
            module.load_meta()
        time.sleep(rng.uniform(0, 0.01))


def _archiver(root: Path, archive: Path, out: int, rng: random.Random) -> None:
    module = EventStore(root).module(BRANCH, MODULE)
    next_rotation = time.monotonic() + rng.uniform(0.02, 0.5)
    while True:
        _say(out, b"O archive\n")
        module.archive_backups(archive)
        if time.monotonic() >= next_rotation:
            _say(out, b"O rotate\n")
            day = date(2030, 1, 1) + timedelta(days=rng.randrange(100_000))
            module.rotate(today=day.isoformat())
            next_rotation = time.monotonic() + rng.uniform(0.01, 0.3)
        if rng.random() < 0.1:
            _say(out, b"O clean\n")
            module.clean_temp(grace=0)
        time.sleep(rng.uniform(0, 0.005))


BODIES = {"append": _writer, "rebuild": _rebuilder, "archive": _archiver}


class Child:
    def __init__(self, kind: str, pid: int, fd: int):
        self.kind = kind
        self.pid = pid
        self.fd = fd
        self.buf = b""
        self.last_op = "start"


class Pool:
    """The running children, their ack pipes and what they acknowledged."""

    def __init__(self, root: Path, archive: Path, errors: Path, rng: random.Random):
        self.root, self.archive, self.errors, self.rng = root, archive, errors, rng
        self.children: dict[int, Child] = {}
        self.acked: list[str] = []

    def spawn(self, kind: str) -> None:
        r, w = os.pipe()
        child_seed = self.rng.randrange(1 << 60)
        pid = os.fork()
        if pid == 0:  # the child: never returns into pytest
            code = 0
            try:
                os.close(r)
                for other in self.children.values():
                    os.close(other.fd)
                signal.signal(signal.SIGINT, signal.SIG_DFL)
                BODIES[kind](self.root, self.archive, w, random.Random(child_seed))
            except BaseException:
                code = 3
                with contextlib.suppress(BaseException):
                    (self.errors / f"{os.getpid()}.txt").write_text(f"{kind} child failed:\n{traceback.format_exc()}")
            os._exit(code)
        os.close(w)
        os.set_blocking(r, False)
        self.children[pid] = Child(kind, pid, r)

    def _take(self, child: Child, data: bytes) -> None:
        child.buf += data
        *lines, child.buf = child.buf.split(b"\n")
        for line in lines:
            if line.startswith(b"A "):
                self.acked.append(line[2:].decode())
            elif line.startswith(b"O "):
                child.last_op = line[2:].decode()

    def drain(self) -> None:
        """Read what the children printed so far; fail if one of them died on its own."""
        for child in list(self.children.values()):
            while True:
                try:
                    data = os.read(child.fd, 1 << 16)
                except BlockingIOError:
                    break
                if not data:
                    break
                self._take(child, data)
            pid, status = os.waitpid(child.pid, os.WNOHANG)
            if pid:
                self._reap(child, status)

    def _reap(self, child: Child, status: int) -> None:
        self.children.pop(child.pid, None)
        report = self.errors / f"{child.pid}.txt"
        why = report.read_text() if report.exists() else f"exit status {status}"
        raise AssertionError(f"a {child.kind} child died without being killed: {why}")

    def kill(self, kind: str) -> Child:
        """SIGKILL one child of ``kind``, reap it and read everything it printed."""
        victim = self.rng.choice([c for c in self.children.values() if c.kind == kind])
        os.kill(victim.pid, signal.SIGKILL)
        _, status = os.waitpid(victim.pid, 0)
        if not (os.WIFSIGNALED(status) and os.WTERMSIG(status) == signal.SIGKILL):
            self._reap(victim, status)
        del self.children[victim.pid]
        os.set_blocking(victim.fd, True)
        while data := os.read(victim.fd, 1 << 16):
            self._take(victim, data)
        os.close(victim.fd)
        return victim

    def stop(self) -> None:
        for child in list(self.children.values()):
            try:
                os.kill(child.pid, signal.SIGKILL)
                os.waitpid(child.pid, 0)
            except (ProcessLookupError, ChildProcessError):
                pass
            os.close(child.fd)
        self.children.clear()


# -- the consistency check (parent, under the module lock) ---------------------------------------


def _stat_key(st: os.stat_result) -> tuple[int, int, int, int]:
    return (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns)


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


class LogFile:
    """The complete events of one log file (ids and sequences) and whether it has a torn tail."""

    def __init__(self, data: bytes):
        body, _, tail = data.rpartition(b"\n")
        self.torn = bool(tail.strip())
        self.ids: list[str] = []
        self.seqs: list[int] = []
        for raw in body.split(b"\n") if body else []:
            if raw.strip():
                event = orjson.loads(raw)  # a complete line that does not parse fails the test
                self.ids.append(event["id"])
                self.seqs.append(event["sequence"])


def _behind(log: LogFile, meta: dict) -> int:
    """How many events at the end of ``log`` come after the meta's lastEventId, when the meta
    is exactly what it was after that event (0 if it is not)."""
    last = meta.get("lastEventId")
    if last is None:
        return len(log.ids) if meta.get("totalEvents") == 0 else 0
    if last not in log.ids:
        return 0
    i = log.ids.index(last)
    return len(log.ids) - 1 - i if log.seqs[i] == meta.get("totalEvents") else 0


class Checker:
    def __init__(self, root: Path, archive: Path, scratch: Path):
        self.module = EventStore(root).module(BRANCH, MODULE)
        self.live = self.module.live_dir
        self.history = self.module.history_dir
        self.archive_dir = archive / BRANCH / MODULE
        self.scratch = scratch
        self.logs: dict[str, tuple[tuple, LogFile]] = {}  # path -> (stat key, parsed)
        self.shas: dict[str, tuple[tuple, str]] = {}  # path -> (stat key, sha256)
        self.backups: dict[str, str] = {}  # every backup ever seen -> its sha256
        self.stats = Counter()
        self.continuing: set[str] = set()
        self.state: dict | None = None  # the last check's state: its checkpoints carried from kill to kill

    def _log(self, path: Path, st: os.stat_result) -> LogFile:
        key = _stat_key(st)
        hit = self.logs.get(str(path))
        if hit is None or hit[0] != key:
            hit = (key, LogFile(path.read_bytes()))
            self.logs[str(path)] = hit
        return hit[1]

    def _sha(self, path: Path) -> str:
        key = _stat_key(os.stat(path))
        hit = self.shas.get(str(path))
        if hit is None or hit[0] != key:
            hit = (key, _sha256(path))
            self.shas[str(path)] = hit
        return hit[1]

    def check(self, acked: list[str]) -> None:
        with ModuleLock(self.live).hold():
            self._check_locked(acked)

    def _check_locked(self, acked: list[str]) -> None:
        # Every log file: the live one and the history, a history name of the live file itself
        # (a rotation killed between the link and the unlink) counted once.
        live_log = self.module.log_path
        try:
            live_st = os.stat(live_log)
        except FileNotFoundError:
            live_st = None
        files: dict[str, LogFile] = {}
        history_inodes: dict[int, str] = {}
        if live_st is not None:
            files[str(live_log)] = self._log(live_log, live_st)
        if self.history.is_dir():
            for name in sorted(os.listdir(self.history)):
                path = self.history / name
                st = os.stat(path)
                assert st.st_ino not in history_inodes, (
                    f"history files {history_inodes[st.st_ino]} and {name} are one file"
                )
                history_inodes[st.st_ino] = name
                if live_st is not None and st.st_ino == live_st.st_ino:
                    self.stats["checks finding a history link of the live log"] += 1
                    continue
                log = self._log(path, st)
                assert not log.torn, f"history file {name} ends in a torn line"
                files[str(path)] = log
        counts: Counter[str] = Counter()
        for log in files.values():
            counts.update(log.ids)
        twice = [i for i, n in counts.items() if n > 1]
        assert not twice, f"events written twice: {twice[:5]}"
        missing = [a for a in acked if counts[a] != 1]
        assert not missing, f"acknowledged events missing: {missing[:5]} (of {len(acked)})"

        # Sequences: unique and contiguous per file, from 1 or continuing another file.
        ends = {log.seqs[-1] for log in files.values() if log.seqs}
        for path, log in files.items():
            if not log.seqs:
                continue
            first = log.seqs[0]
            assert log.seqs == list(range(first, first + len(log.seqs))), f"{path}: sequences not contiguous"
            assert first == 1 or first - 1 in ends, f"{path}: starts at sequence {first}"
            if first != 1:
                self.continuing.add(path)
                self.stats["log files continuing a rotated one"] = len(self.continuing)

        # The meta as found, against the log.
        live = files.get(str(live_log))
        summary = logmod.summarize(live_log) if live is not None else logmod.LogSummary()
        try:
            raw = self.module.meta_path.read_bytes()
        except FileNotFoundError:
            raw = None
        value, err = metamod.parse(raw) if raw is not None else (None, None)
        expected = {
            "totalEvents": summary.expected_total,
            "lastEventId": summary.last_event_id,
            "lastEventAt": summary.last_event_at,
        }
        if raw is None:
            assert live is None or not live.ids, "the log has events and there is no meta"
            self.stats["meta not created yet"] += 1
        elif err is not None or any(p.severity == "critical" for p in metamod.problems(value)):
            self.stats["meta damaged (the rebuilder's doing)"] += 1
        elif {k: value.get(k) for k in DERIVED} == expected:
            cursors = value.get("tableCursors") or {}
            assert {t: cursors.get(t) for t in summary.table_cursors} == summary.table_cursors, (
                "tableCursors differ from the log"
            )
            self.stats["meta equal to a rebuild"] += 1
        elif live is not None and (behind := _behind(live, value)):
            # Writers killed between their log write and their meta write (each next writer
            # rolled the meta forward in memory, then was killed too): never an acknowledged one.
            late = set(live.ids[-behind:]) & set(acked)
            assert not late, f"the meta lags acknowledged events {sorted(late)}"
            self.stats[f"meta behind by {behind} unacknowledged event(s)"] += 1
        elif live is None and any(
            log.ids and log.ids[-1] == value.get("lastEventId") and log.seqs[-1] == value.get("totalEvents")
            for log in files.values()
        ):
            self.stats["meta ahead of a log a killed rotation moved"] += 1
        else:
            raise AssertionError(f"meta { ({k: value.get(k) for k in DERIVED}) } disagrees with the log {expected}")

        self._check_copy(expected, summary, raw, live is None)
        self._check_backups()
        self._check_checkpoints()

    def _check_checkpoints(self) -> None:
        """However the writers were killed, Python only appended to the log (or cut an
        unprotected torn tail off it, or moved it away): an incremental check, and every
        fifth time a full one, against the checkpoints carried since the start never finds it
        changed in place."""
        now = time.time() + 10  # past the racy window: the stamps decide
        full = self.stats["checkpoint checks"] % 5 == 4
        h = self.module.check(now=now, previous=self.state, full=full)
        changed = [f.to_dict() for f in h.findings if f.code == "log_changed_in_place"]
        assert not changed, f"the log was changed in place: {changed}"
        self.state = h.state
        self.stats["checkpoint checks"] += 1
        self.stats["of them full"] += full

    def _check_copy(self, expected: dict, summary: logmod.LogSummary, raw: bytes | None, no_log: bool) -> None:
        """What the next writer and an operator's rebuild make of this state, on a copy."""
        shutil.rmtree(self.scratch, ignore_errors=True)
        root = self.scratch / "branches"
        root.mkdir(parents=True)
        module = EventStore(root, fsync=False).module(BRANCH, MODULE)
        module.live_dir.mkdir(parents=True)
        for name in os.listdir(self.live):
            if name != layout.LOCK_NAME:
                shutil.copyfile(self.live / name, module.live_dir / name)
        meta = module.load_meta()
        if not no_log:  # a log moved away by a killed rotation keeps its count until a rebuild
            assert {k: meta.get(k) for k in DERIVED} == expected, (
                f"load_meta { ({k: meta.get(k) for k in DERIVED}) } != rebuild {expected}"
            )
            assert {t: meta["tableCursors"].get(t) for t in summary.table_cursors} == summary.table_cursors
            bad = {f.code for f in module.check().findings} - {"log_torn_tail", "backup_present", "temp_orphan"}
            assert not bad, f"after load_meta: {bad}"
        if raw is not None and module.meta_path.read_bytes() != raw:
            value, err = metamod.parse(raw)
            if err is not None or any(p.severity == "critical" for p in metamod.problems(value)):
                assert hashlib.sha256(raw).hexdigest() in {b.sha256 for b in module.backups()}, (
                    "a damaged meta replaced without a backup"
                )
        report = module.rebuild()
        assert {k: report.new_meta.get(k) for k in DERIVED} == expected
        health = module.check()
        assert {f.code for f in health.findings} <= {"log_torn_tail", "backup_present", "temp_orphan"}, health.findings

    def _check_backups(self) -> None:
        live = {n: self._sha(self.live / n) for n in os.listdir(self.live) if layout.backup_kind(n)}
        archived = {}
        if self.archive_dir.is_dir():
            archived = {
                n: self._sha(self.archive_dir / n) for n in os.listdir(self.archive_dir) if layout.backup_kind(n)
            }
        for name, sha in live.items():
            self.backups.setdefault(name, sha)
        for name, sha in archived.items():
            self.backups.setdefault(name, sha)
        for name, sha in self.backups.items():
            assert live.get(name) == sha or archived.get(name) == sha, (
                f"backup {name} lost (live {live.get(name)}, archive {archived.get(name)})"
            )
        self.stats["backups tracked"] = len(self.backups)
        self.stats["backups archived"] = sum(1 for n in self.backups if n in archived and n not in live)


def test_sigkill_loop_during_appends_rebuilds_and_archives(tmp_path):
    if threading.active_count() > 1 and not os.environ.get("EVENTSTORE_CRASH_LOOP_CHILD"):
        # Forking a multi-threaded process (threads left by earlier tests in this session: the
        # browser driver, a live server) may deadlock a child on a lock one of those threads
        # held. Run the loop in a fresh single-threaded interpreter instead.
        test = f"{Path(__file__).relative_to(REPO)}::test_sigkill_loop_during_appends_rebuilds_and_archives"
        proc = subprocess.run(
            [
                sys.executable,
                "-m",
                "pytest",
                test,
                "-q",
                "-s",
                "-p",
                "no:cacheprovider",
                "-W",
                "error::DeprecationWarning",
            ],
            cwd=REPO,
            env={**os.environ, "EVENTSTORE_CRASH_LOOP_CHILD": "1"},
            capture_output=True,
            text=True,
            timeout=3600,
        )
        print(proc.stdout[-2000:])
        assert proc.returncode == 0, proc.stdout[-6000:] + proc.stderr[-3000:]
        return
    rng = random.Random(SEED)
    root = tmp_path / "branches"
    archive = tmp_path / "archive"
    errors = tmp_path / "errors"
    for p in (root, archive, errors):
        p.mkdir()
    store = EventStore(root)
    store.module(BRANCH, MODULE).append_event(make_entry(0))
    checker = Checker(root, archive, tmp_path / "scratch")
    pool = Pool(root, archive, errors, rng)
    kills: Counter[str] = Counter()
    during: Counter[str] = Counter()
    started = time.monotonic()
    try:
        for kind in ("append",) * WRITERS + ("rebuild", "archive"):
            pool.spawn(kind)
        for k in range(1, KILLS + 1):
            kind, last_op = "-", "-"
            try:
                deadline = time.monotonic() + rng.uniform(0.002, MAX_DELAY)
                while (left := deadline - time.monotonic()) > 0:
                    select.select([c.fd for c in pool.children.values()], [], [], left)
                    pool.drain()
                kind = rng.choices(KINDS, WEIGHTS)[0]
                victim = pool.kill(kind)
                last_op = victim.last_op
                kills[kind] += 1
                during[last_op] += 1
                pool.drain()
                checker.check(pool.acked)
            except AssertionError as exc:
                raise AssertionError(f"kill {k} of {KILLS} (seed {SEED}; a {kind} child, in {last_op}): {exc}") from exc
            pool.spawn(kind)
        pool.drain()
    finally:
        pool.stop()
    # One more round after the last respawns: every survivor stopped, the module recovers.
    module = EventStore(root).module(BRANCH, MODULE)
    last = module.append_event(make_entry(10**6))
    pool.acked.append(last["id"])
    checker.check(pool.acked)
    assert not {f.code for f in module.check().findings} - {"backup_present", "temp_orphan"}
    elapsed = time.monotonic() - started

    total = sum(kills.values())
    line = f"crash loop: {total} kills survived (appends {kills['append']}, rebuilds {kills['rebuild']}, archives {kills['archive']})"
    detail = [
        line,
        f"seed {SEED}, {WRITERS} writers + 1 rebuilder + 1 archiver, {elapsed:.1f} s",
        f"acknowledged events checked: {len(pool.acked)}",
        "killed while in: " + ", ".join(f"{op} {n}" for op, n in sorted(during.items())),
        "states seen at the checks: " + ", ".join(f"{k} {n}" for k, n in sorted(checker.stats.items())),
    ]
    print("\n" + "\n".join(detail))
    ARTIFACT.parent.mkdir(exist_ok=True)
    ARTIFACT.write_text("\n".join(detail) + "\n")
    assert total == KILLS and total >= 1
