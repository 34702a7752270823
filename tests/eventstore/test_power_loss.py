"""Simulated power loss (ALICE-style, see ``powerloss.py``): the store is run over recorded file
operations, and at every crash point every on-disk state a power loss may leave is rebuilt (writes
not followed by an fsync lost, torn or zeroed; creates, renames, links and unlinks not followed by
an fsync of their folder undone) and opened fresh. Each crash state must come back consistent:

- every event whose ``append_event`` returned before the crash is in the log (or, rotated, in a
  history file) exactly once, and no event is anywhere twice;
- ``check()`` gives a known status, and nothing critical unless the scenario started damaged;
- what an ``update_meta`` that returned wrote is still in the meta;
- ``load_meta()`` works: the meta parses, or is recovered with the damaged bytes kept in a
  backup; its derived fields equal what a rebuild gives (a log moved away by a rotation cut
  short keeps its count until a rebuild); ``rebuild()`` then leaves only a torn tail (if any)
  and info findings; one more ``append_event`` (which cuts a torn tail) leaves it healthy;
- every backup that an operation which returned had left (and every backup in the starting
  state) is in the live folder or in the archive with the same sha256, before and after the
  recovery; after one more ``rotate`` and ``archive_backups`` every backup found is archived
  intact and every log file's sequences are contiguous.

The scenarios cover append_event (new module, existing module, torn tail, damaged meta),
update_meta, load_meta, rebuild, rotate (to a new and an existing history folder), archive_backups
(to a new and an existing archive folder) and clean_temp. The number of crash states checked is
printed and written to ``test-artifacts/power-loss.txt``.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from eventstore import CODES, STATUSES, EventStore, layout
from eventstore import log as logmod
from eventstore import meta as metamod
from tests.eventstore.conftest import BRANCH, MODULE, REPO, make_entry
from tests.eventstore.powerloss import CrashState, Recorder, _durable_flags, crash_states, materialize, op_name

ARTIFACT = REPO / "test-artifacts" / "power-loss.txt"
DERIVED = ("totalEvents", "lastEventId", "lastEventAt")
BENIGN = {"log_torn_tail", "backup_present", "temp_orphan"}
KEEP_GOING = os.environ.get("EVENTSTORE_POWERLOSS_KEEP_GOING") == "1"  # list every failing state
RESULTS: dict[str, tuple[int, int, Counter, int]] = {}


# -- scenarios: a starting state (taken as durable) and the recorded operations ------------------


def _backups(module, archive: Path) -> dict[str, str]:
    """Backups in the live folder and the archive, name -> sha256 (what an operation left)."""
    out = {}
    for folder in (module.live_dir, archive / BRANCH / MODULE):
        if folder.is_dir():
            for name in os.listdir(folder):
                if layout.backup_kind(name):
                    out[name] = hashlib.sha256((folder / name).read_bytes()).hexdigest()
    return out


class Run:
    """Runs store operations under the recorder, marking starts, acknowledgements and backups."""

    def __init__(self, rec: Recorder, module, archive: Path):
        self.rec, self.module, self.archive = rec, module, archive
        self.n = 0

    def do(self, name: str, fn: Callable[[], Any]) -> Any:
        self.rec.mark("begin", name)
        result = fn()
        self.rec.mark("backups", _backups(self.module, self.archive))
        return result

    def append(self) -> None:
        self.n += 1
        line = self.do("append_event", lambda: self.module.append_event(make_entry(self.n, seed=self.n)))
        self.rec.mark("ack", line["id"])

    def update(self, patch: dict[str, Any]) -> None:
        self.do("update_meta", lambda: self.module.update_meta(patch))
        self.rec.mark("meta", patch)  # update_meta returned: the patch is durable


def _damage(path: Path) -> None:
    data = path.read_bytes()
    path.write_bytes(data + data[len(data) // 2 :])  # a whole document and the tail of a longer one


def setup_new_module(root: Path, archive: Path) -> None:
    pass


def ops_new_module(run: Run) -> None:
    run.append()
    run.append()
    run.update({"lastAckId": "evt-x"})
    run.do("load_meta", run.module.load_meta)


def setup_day(root: Path, archive: Path) -> None:
    module = EventStore(root, fsync=False).module(BRANCH, MODULE)
    for i in range(3):
        module.append_event(make_entry(100 + i))
    _damage(module.meta_path)
    module.load_meta()  # recovered: one backup in the live folder


def ops_day(run: Run) -> None:
    m = run.module
    run.append()
    run.update({"lastAckId": "evt-y", "lastClientTableIds": {"order_line": "ln-1"}})
    run.do("rebuild", m.rebuild)
    run.append()
    run.do("rotate", lambda: m.rotate(today="2030-01-02"))  # creates history/events
    run.append()
    run.do("archive_backups", lambda: m.archive_backups(run.archive))  # creates the archive folders
    run.do("rebuild", m.rebuild)
    run.do("archive_backups", lambda: m.archive_backups(run.archive))  # into an existing folder
    run.do("rotate", lambda: m.rotate(today="2030-01-03"))
    run.append()


def setup_damaged(root: Path, archive: Path) -> None:
    module = EventStore(root, fsync=False).module(BRANCH, MODULE)
    for i in range(4):
        module.append_event(make_entry(200 + i))
    _damage(module.meta_path)
    module.load_meta()  # a backup from an earlier recovery
    module.rotate(today="2030-02-01")  # history/events exists
    for i in range(2):
        module.append_event(make_entry(210 + i))
    _damage(module.meta_path)
    with open(module.log_path, "ab") as f:
        f.write(b'{"id":"evt-torn","sequence":3,"act')  # a writer died mid-line
    (module.live_dir / f"events.meta.json.tmp.{int(time.time() * 1000) - 10**7}.zz9").write_bytes(b'{"tot')
    (archive / BRANCH / MODULE).mkdir(parents=True)


def ops_damaged(run: Run) -> None:
    m = run.module
    run.append()  # cuts the torn tail (saved), recovers the meta (backed up), appends
    run.do("clean_temp", lambda: m.clean_temp(grace=0))
    run.do("archive_backups", lambda: m.archive_backups(run.archive))
    run.do("rotate", lambda: m.rotate(today="2030-02-02"))
    run.append()


@dataclass
class Scenario:
    name: str
    setup: Callable[[Path, Path], None]
    ops: Callable[[Run], None]
    damaged: bool = False


SCENARIOS = [
    Scenario("new module", setup_new_module, ops_new_module),
    Scenario("a day: appends, update, rebuilds, rotations, archives", setup_day, ops_day),
    Scenario("damaged: torn tail, corrupt meta, orphan temp", setup_damaged, ops_damaged, damaged=True),
]


# -- the check of one crash state ----------------------------------------------------------------


def _log_files(module) -> dict[str, list[dict[str, Any]]]:
    """Events of the live log and every history file, by path (torn tails left out)."""
    out = {}
    paths = [module.log_path] if module.log_path.exists() else []
    if module.history_dir.is_dir():
        paths += sorted(module.history_dir.iterdir())
    for path in paths:
        out[str(path)] = [
            e
            for e in (logmod.parse_event(r.data)[0] for r in logmod.iter_raw_lines(path) if r.complete)
            if e is not None
        ]
    return out


def _events_once(module, acked: list[str], *, one_inode_once: bool) -> dict[str, list[dict[str, Any]]]:
    files = _log_files(module)
    if one_inode_once:  # a rotation cut short between its link and unlink: one file, two names
        inodes: dict[int, str] = {}
        for path in list(files):
            ino = os.stat(path).st_ino
            if ino in inodes:
                del files[path]
            inodes.setdefault(ino, path)
    else:
        inodes = Counter(os.stat(p).st_ino for p in files)
        assert all(n == 1 for n in inodes.values()), f"two log names for one file: {sorted(files)}"
    counts = Counter(e.get("id") for events in files.values() for e in events)
    assert all(n == 1 for n in counts.values()), f"events twice: {[i for i, n in counts.items() if n > 1]}"
    missing = [a for a in acked if counts[a] != 1]
    assert not missing, f"acknowledged events lost: {missing}"
    return files


def _sequences_contiguous(files: dict[str, list[dict[str, Any]]]) -> None:
    ends = {events[-1]["sequence"] for events in files.values() if events}
    for path, events in files.items():
        seqs = [e["sequence"] for e in events]
        if seqs:
            assert seqs == list(range(seqs[0], seqs[0] + len(seqs))), f"{path}: {seqs}"
            assert seqs[0] == 1 or seqs[0] - 1 in ends, f"{path} starts at {seqs[0]}"


def _backups_kept(module, archive: Path, promised: dict[str, str]) -> dict[str, str]:
    have_live = (
        {n: hashlib.sha256((module.live_dir / n).read_bytes()).hexdigest() for n in module.listing().backups}
        if module.exists()
        else {}
    )
    folder = archive / BRANCH / MODULE
    have_archived = {}
    if folder.is_dir():
        have_archived = {
            n: hashlib.sha256((folder / n).read_bytes()).hexdigest()
            for n in os.listdir(folder)
            if layout.backup_kind(n)
        }
    for name, sha in promised.items():
        assert have_live.get(name) == sha or have_archived.get(name) == sha, (
            f"backup {name} lost (live {have_live.get(name)}, archive {have_archived.get(name)})"
        )
    return have_live


def _derived_ok(meta: dict[str, Any], module) -> None:
    summary = logmod.summarize(module.log_path)
    expected = {
        "totalEvents": summary.expected_total,
        "lastEventId": summary.last_event_id,
        "lastEventAt": summary.last_event_at,
    }
    assert {k: meta.get(k) for k in DERIVED} == expected
    assert {t: meta["tableCursors"].get(t) for t in summary.table_cursors} == summary.table_cursors


# What a rotation restarts, as Node's rotateEventLog does: the acknowledged event is in history.
ROTATION_RESETS = ("lastAckId",)


def _allowed_after(later: list[tuple[str, Any]], key: str, value: Any) -> list[Any]:
    """The values ``key`` may hold after an update_meta set it to ``value`` and the marks
    ``later`` followed: a rotation that returned restarted it (null); one cut short by the power
    loss may or may not have."""
    begun = [j for j, mark in enumerate(later) if mark == ("begin", "rotate")]
    if key not in ROTATION_RESETS or not begun:
        return [value]
    returned = any(kind == "backups" for kind, _ in later[begun[0] + 1 :])
    return [None] if returned else [None, value]


LIVE_LOG = f"branches/{BRANCH}/modules/{MODULE}/live/{layout.LOG_NAME}"
LATER = 4_000_000_000.0  # "now" of the checkpoint checks: past every file's racy window


def _log_inode(state) -> int | None:
    """The recorder's inode of the live log in ``state`` (None: no live log)."""
    return next((ino for rel, ino, is_dir in state.paths() if rel == LIVE_LOG and not is_dir), None)


def baseline_of(initial, target: Path) -> tuple[int | None, dict | None]:
    """The live log's inode before the operations and a check state of it (its checkpoints)."""
    materialize(initial, target)
    module = EventStore(target / "branches", fsync=False).module(BRANCH, MODULE)
    state = module.check(now=LATER).state if module.log_path.exists() else None
    shutil.rmtree(target)
    return _log_inode(initial), state


def _checkpoints_hold(cs: CrashState, module, baseline: tuple[int | None, dict | None], stats: Counter) -> None:
    """The bytes of the live log that were checkpointed before the operations are still there
    whatever the power loss kept, when it is the same file (the materialized copy is a new
    inode: the checkpoints are carried over to it)."""
    ino, state = baseline
    if state is None or "checkpoints" not in state or ino is None or _log_inode(cs.state) != ino:
        return
    st = os.stat(module.log_path)
    carried = {**state, "checkpoints": {**state["checkpoints"], "file": [st.st_dev, st.st_ino]}}
    health = module.check(now=LATER, previous=carried, full=True)
    changed = [f.to_dict() for f in health.findings if f.code == "log_changed_in_place"]
    assert not changed, f"the log's checkpointed bytes changed: {changed}"
    stats["logs checked against their checkpoints"] += 1


def check_state(
    cs: CrashState,
    target: Path,
    scenario: Scenario,
    initial_backups: dict[str, str],
    stats: Counter,
    baseline: tuple[int | None, dict | None] = (None, None),
) -> None:
    materialize(cs.state, target)
    root, archive = target / "branches", target / "archive"
    acked = [p for kind, p in cs.marks if kind == "ack"]
    promised = dict(initial_backups)
    for kind, p in cs.marks:
        if kind == "backups":
            promised.update(p)
    module = EventStore(root, fsync=False).module(BRANCH, MODULE)
    _checkpoints_hold(cs, module, baseline, stats)

    # What the disk holds.
    _events_once(module, acked, one_inode_once=True)
    found = _backups_kept(module, archive, promised)
    if not module.exists():
        assert not acked
        stats["no module folder yet"] += 1
    else:
        health = module.check()
        assert health.status in STATUSES and all(f.code in CODES for f in health.findings)
        if not scenario.damaged:
            assert health.status != "critical", [f.to_dict() for f in health.findings]
        stats[f"found {health.status}"] += 1
        raw = module.meta_path.read_bytes() if module.meta_path.exists() else None
        meta = module.load_meta()
        for i, (kind, patch) in enumerate(cs.marks):
            if kind == "meta":
                for key, value in patch.items():
                    allowed = _allowed_after(cs.marks[i + 1 :], key, value)
                    assert meta.get(key) in allowed, (
                        f"an update_meta that returned was lost: {key} is {meta.get(key)!r}, not one of {allowed}"
                    )
        if raw is not None:
            value, err = metamod.parse(raw)
            if err is not None or any(p.severity == "critical" for p in metamod.problems(value)):
                assert hashlib.sha256(raw).hexdigest() in {b.sha256 for b in module.backups()}, (
                    "damaged meta replaced without a backup"
                )
                stats["meta recovered from damage"] += 1
        if module.log_path.exists():
            _derived_ok(meta, module)
        elif meta["totalEvents"]:  # only a rotation cut short leaves a meta counting events of no log
            history = _log_files(module)
            assert any(ev and ev[-1]["id"] == meta["lastEventId"] for ev in history.values()), (
                "meta counts events of a log that is gone"
            )
            stats["meta ahead of a log a cut-short rotation moved"] += 1
        health = module.check()
        assert not {f.code for f in health.findings if f.severity == "critical"}, [f.to_dict() for f in health.findings]
        report = module.rebuild()
        if module.log_path.exists():
            _derived_ok(report.new_meta, module)
        else:
            assert report.new_meta["totalEvents"] == 0
        health = module.check()
        assert {f.code for f in health.findings} <= BENIGN, [f.to_dict() for f in health.findings]

    # One more append (cuts a torn tail), a rotation and an archive run: all healthy and kept.
    line = module.append_event(make_entry(999))
    health = module.check()
    assert health.status == "healthy" and {f.code for f in health.findings} <= BENIGN, [
        f.to_dict() for f in health.findings
    ]
    found.update(_backups_kept(module, archive, promised))
    module.rotate(today="2031-01-01")
    found.update(_backups_kept(module, archive, promised))
    module.archive_backups(archive)
    assert not module.listing().backups
    _backups_kept(module, archive, {**promised, **found})
    files = _events_once(module, acked + [line["id"]], one_inode_once=False)
    _sequences_contiguous(files)


@pytest.mark.parametrize("scenario", SCENARIOS, ids=[s.name.split(":")[0] for s in SCENARIOS])
def test_power_loss_at_every_point(tmp_path, scenario):
    started = time.monotonic()
    base = tmp_path / "base"
    root, archive = base / "branches", base / "archive"
    root.mkdir(parents=True)
    scenario.setup(root, archive)
    module = EventStore(root).module(BRANCH, MODULE)
    initial_backups = _backups(module, archive)
    rec = Recorder(base)
    with rec.recording():
        scenario.ops(Run(rec, module, archive))
    states = crash_states(rec.initial, rec.ops)
    baseline = baseline_of(rec.initial, tmp_path / "initial")
    stats: Counter[str] = Counter()
    by_op: Counter[str] = Counter()
    failures = []
    for n, cs in enumerate(states):
        target = tmp_path / "states" / str(n)
        try:
            check_state(cs, target, scenario, initial_backups, stats, baseline)
        except Exception as exc:
            failures.append(
                f"crash state {n}: power lost at op {cs.point} ({op_name(rec.ops, cs.point)}), {cs.how}: {type(exc).__name__}: {exc}"
            )
            if not KEEP_GOING:
                raise AssertionError(failures[0]) from exc
        by_op[op_name(rec.ops, cs.point)] += 1
        shutil.rmtree(target)
    assert not failures, f"{len(failures)} of {len(states)} crash states failed:\n" + "\n".join(failures[:20])
    elapsed = time.monotonic() - started
    points = sum(1 for op in rec.ops if op[0] != "mark")
    RESULTS[scenario.name] = (len(states), points, by_op, stats["logs checked against their checkpoints"])
    print(
        f"\npower loss, {scenario.name}: {len(states)} crash states checked ({points} recorded operations, {elapsed:.1f} s)"
    )
    print("  by operation: " + ", ".join(f"{k} {v}" for k, v in sorted(by_op.items())))
    print("  found: " + ", ".join(f"{k} {v}" for k, v in sorted(stats.items())))
    _write_artifact()


def _write_artifact() -> None:
    total = sum(r[0] for r in RESULTS.values())
    verified = sum(r[3] for r in RESULTS.values())
    lines = [
        f"power loss: {total} crash states checked; {verified} of them with the live log compared with its checkpoints from before"
    ]
    for name, (n, points, by_op, checked) in RESULTS.items():
        lines.append(
            f"  {name}: {n} states over {points} recorded operations ({', '.join(f'{k} {v}' for k, v in sorted(by_op.items()))}); "
            f"{checked} logs compared with their checkpoints"
        )
    ARTIFACT.parent.mkdir(exist_ok=True)
    ARTIFACT.write_text("\n".join(lines) + "\n")


@pytest.mark.parametrize("scenario", SCENARIOS, ids=[s.name.split(":")[0] for s in SCENARIOS])
def test_what_an_operation_leaves_is_durable_in_the_right_order(tmp_path, scenario):
    """Regression for the orderings the crash states above depend on, read off the recording:

    - when an operation returns, every folder it created, every name it linked and a log it
      created are durable (their folder fsynced): a new module's live folder, a new history or
      archive folder, a new events.log (before the meta that counts its events is written);
    - events.log or a backup is unlinked from the live folder only once its other name (the
      history link, the archived copy) is durable.
    """
    base = tmp_path / "base"
    root, archive = base / "branches", base / "archive"
    root.mkdir(parents=True)
    scenario.setup(root, archive)
    module = EventStore(root).module(BRANCH, MODULE)
    rec = Recorder(base)
    with rec.recording():
        scenario.ops(Run(rec, module, archive))
    ops = rec.ops
    state = rec.initial.copy()
    links: list[tuple[int, str, int]] = []  # (op index, name, inode) of every link or create
    for i, op in enumerate(ops):
        if op[0] == "mark" and op[1] in ("ack", "backups", "meta"):
            durable = _durable_flags(ops, i)
            late = [
                ops[j]
                for j in range(i)
                if not durable[j]
                and (ops[j][0] in ("mkdir", "link") or ops[j][:1] == ("create",) and ops[j][2] == layout.LOG_NAME)
            ]
            assert not late, f"{op_name(ops, i)} returned before these were durable: {late}"
        if op[0] == "create" and op[2] == layout.LOG_NAME:
            meta_writes = [j for j in range(i + 1, len(ops)) if ops[j][0] == "rename" and ops[j][4] == layout.META_NAME]
            if meta_writes:
                assert _durable_flags(ops, meta_writes[0])[i], (
                    "the meta is replaced before the new log's name is durable"
                )
        if op[0] == "unlink" and (op[2] == layout.LOG_NAME or layout.backup_kind(op[2])):
            ino = state.dirs[op[1]][op[2]]
            durable = _durable_flags(ops, i)
            other = [
                j for j, name, linked in links if durable[j] and (linked == ino or name == op[2]) and ops[j][1] != op[1]
            ]
            assert other, f"{op_name(ops, i)} unlinks {op[2]} before another name of it is durable"
        if op[0] in ("link", "create"):
            links.append((i, op[2], op[3]))
        if op[0] in ("create", "mkdir", "link", "unlink", "rename", "write", "trunc"):
            state.apply(op)
