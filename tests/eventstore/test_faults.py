"""Every I/O call of every writing operation fails in turn; the module always recovers.

See ``faults.py`` for the loop and what is checked after each injected failure. The count of
injection points is printed at the end of the file's run and written to
``test-artifacts/faults.txt``:

    .venv/bin/python -m pytest tests/eventstore/test_faults.py -q -s
"""

from __future__ import annotations

import errno
import json
import os
import re
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path

import pytest

from eventstore import layout
from tests.eventstore.conftest import REPO, line_bytes, make_entry, make_line, make_lines, meta_bytes, node_meta
from tests.eventstore.faults import (
    ARCHIVE,
    HISTORY,
    LIVE,
    PERSISTENT,
    SHORT,
    FaultyOS,
    Result,
    Run,
    Scenario,
    Snap,
    frozen_clock,
    open_run,
    report_lines,
    run_scenario,
    sha,
)

OPERATIONS = ("append_event", "update_meta", "rebuild", "rotate", "archive_backups", "clean_temp")
# Floors, so that the harness cannot silently cover nothing (a refactor that stops the counting
# wrappers from seeing eventstore's calls fails here, not quietly).
MIN_CALLS_PER_SCENARIO = 10
MIN_POINTS_TOTAL = 1500

LINES = make_lines(5)
LOG = b"".join(line_bytes(ln) for ln in LINES)
META = node_meta(LINES, lastAckId=LINES[3]["id"], purgeState={"lastPurgeAt": None, "purged": 0})
OLDER_META = node_meta(LINES[:3], lastAckId=LINES[1]["id"], lastClientSyncAt="2025-10-27T10:40:00.000Z")
BACKUP_VALID = f"{layout.META_NAME}.corrupted.1761500000000.bak"
BACKUP_DAMAGED = f"{layout.META_NAME}.corrupted.1761500100000.bak"
FRAGMENT = f"{layout.LOG_NAME}.torn.1761500200000.bak"
TORN = line_bytes(make_line(6))[:700]
OLD_HISTORY = f"{HISTORY}/2025-10-26-2025-10-26T18-00-00-000Z.log"
TEMPS = (
    f"{layout.META_NAME}.tmp.1761500000000.k3x9",
    f"{layout.META_NAME}.tmp.1761500050000.a0",
    f"{layout.META_NAME}.tmp.1761500099999.zz1",
)


def put(base: Path, rel: str, data: bytes) -> None:
    path = base / rel
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)


def build_module(base: Path, *, log: bytes | None = LOG, meta: bytes | None = meta_bytes(META)) -> None:
    """A module as the Node server leaves it: log, meta, its own files, one old backup."""
    if log is not None:
        put(base, f"{LIVE}/{layout.LOG_NAME}", log)
    if meta is not None:
        put(base, f"{LIVE}/{layout.META_NAME}", meta)
    put(base, f"{LIVE}/data.json", b'{"tables": {}}')
    put(base, f"{LIVE}/{layout.REJECTED_NAME}", b'{"reason":"stale"}\n')
    put(base, f"{LIVE}/{BACKUP_VALID}", meta_bytes(OLDER_META))
    (base / ARCHIVE).mkdir(exist_ok=True)


def rebuilt_meta(base: Path) -> bytes:
    """The meta an un-faulted rebuild of the starting state ``base`` writes (clock frozen)."""
    scratch = base.parent / "rebuilt"
    shutil.copytree(base, scratch)
    try:
        with frozen_clock():
            open_run(scratch).module.rebuild()
        return (scratch / LIVE / layout.META_NAME).read_bytes()
    finally:
        shutil.rmtree(scratch)


def events_of(data: bytes) -> list[dict]:
    return [json.loads(raw) for raw in data.split(b"\n") if raw.strip()]


def meta_of(snap: Snap) -> dict | None:
    try:
        return json.loads(snap[f"{LIVE}/{layout.META_NAME}"])
    except (KeyError, ValueError):
        return None


def meta_not_ahead(old: Snap, new: Snap, got: Snap) -> list[str]:
    """The meta never counts events the log does not have (the next sequence would skip)."""
    meta = meta_of(got)
    if meta is None or not isinstance(meta.get("totalEvents"), int):
        return []
    events = events_of(got.get(f"{LIVE}/{layout.LOG_NAME}", b"").rsplit(b"\n", 1)[0])
    highest = max([e.get("sequence", 0) for e in events] + [len(events)])
    if meta["totalEvents"] > highest:
        return [f"the meta counts {meta['totalEvents']} events, the log holds {highest}"]
    if meta.get("lastEventId") is not None and meta["lastEventId"] not in {e.get("id") for e in events}:
        return [f"the meta's lastEventId {meta['lastEventId']} is not in the log"]
    return []


# -- the operations ----------------------------------------------------------------------------


def append(run: Run) -> None:
    entry = make_entry(100 + run.attempt, seed=3)
    entry["id"] = f"evt-fault-{run.attempt}"
    run.module.append_event(entry)


def append_after(run: Run, old: Snap, got: Snap) -> list[str]:
    events = events_of(got[f"{LIVE}/{layout.LOG_NAME}"])
    sequences = [e["sequence"] for e in events]
    meta = meta_of(got) or {}
    problems = []
    if sequences != list(range(1, len(events) + 1)):
        problems.append(f"sequences after the next append: {sequences}")
    if (
        events[-1]["id"] != "evt-fault-2"
        or meta.get("lastEventId") != "evt-fault-2"
        or meta.get("totalEvents") != len(events)
    ):
        problems.append(
            f"after the next append: last event {events[-1]['id']}, meta {meta.get('lastEventId')} / {meta.get('totalEvents')} of {len(events)}"
        )
    if meta.get("lastAckId") != META["lastAckId"] or meta.get("purgeState") != META["purgeState"]:
        problems.append("the next append lost lastAckId or an unknown key of the meta")
    return problems


PATCH = {"lastAckId": "evt-acked-by-client", "lastServedTableIds": {"order_line": ["ln-1", "ln-2"]}}


def update(run: Run) -> None:
    run.module.update_meta(PATCH)


def update_after(run: Run, old: Snap, got: Snap) -> list[str]:
    meta = meta_of(got) or {}
    problems = [f"{k} is {meta.get(k)!r} after the next update" for k, v in PATCH.items() if meta.get(k) != v]
    if meta.get("totalEvents") != 5:
        problems.append(f"totalEvents is {meta.get('totalEvents')} after the next update")
    return problems


def rebuild(run: Run) -> None:
    run.module.rebuild()


def rebuild_after(expect_ack: str):
    def check(run: Run, old: Snap, got: Snap) -> list[str]:
        meta = meta_of(got) or {}
        problems = []
        if (meta.get("totalEvents"), meta.get("lastEventId")) != (5, LINES[-1]["id"]):
            problems.append(
                f"after the next rebuild: totalEvents {meta.get('totalEvents')}, lastEventId {meta.get('lastEventId')}"
            )
        if meta.get("lastAckId") != expect_ack:
            problems.append(
                f"after the next rebuild lastAckId is {meta.get('lastAckId')!r}, not {expect_ack!r} (salvage lost)"
            )
        return problems

    return check


def rotate(run: Run) -> None:
    run.module.rotate(today="2025-10-28")


def rotated_log(old: Snap) -> bytes:
    log = old[f"{LIVE}/{layout.LOG_NAME}"]
    return log[: log.rfind(b"\n") + 1]


def rotate_invariant(old: Snap, new: Snap, got: Snap) -> list[str]:
    """The day's events are in the live log or in a history file, always."""
    moved = rotated_log(old)
    holders = [
        rel
        for rel, data in got.items()
        if data in (moved, old[f"{LIVE}/{layout.LOG_NAME}"])
        and (rel.startswith(HISTORY) or rel == f"{LIVE}/{layout.LOG_NAME}")
    ]
    return [] if holders else ["the day's log is neither in live/ nor in history/"]


def rotate_after(run: Run, old: Snap, got: Snap) -> list[str]:
    moved = rotated_log(old)
    copies = [rel for rel, data in got.items() if rel.startswith(HISTORY) and data == moved]
    meta = meta_of(got) or {}
    problems = []
    if len(copies) != 1:
        problems.append(f"after the next rotate the day's log is in {len(copies)} history files: {copies}")
    if f"{LIVE}/{layout.LOG_NAME}" in got:
        problems.append("after the next rotate the live log is still there")
    if (meta.get("totalEvents"), meta.get("currentDay"), meta.get("lastClosedDate")) != (0, "2025-10-28", "2025-10-27"):
        problems.append(
            f"after the next rotate the meta is {meta.get('totalEvents')}, {meta.get('currentDay')}, {meta.get('lastClosedDate')}"
        )
    return problems


def archive(run: Run) -> None:
    run.module.archive_backups(run.archive)


ARCHIVED = (BACKUP_VALID, BACKUP_DAMAGED, FRAGMENT)


def archive_after(run: Run, old: Snap, got: Snap) -> list[str]:
    problems = []
    left = [n for n in os.listdir(run.live) if layout.backup_kind(n)]
    if left:
        problems.append(f"backups still in live/ after the next archive: {left}")
    for name in ARCHIVED:
        rel = f"{ARCHIVE}/dar/pos/{name}"
        if sha(got.get(rel, b"")) != sha(old[f"{LIVE}/{name}"]):
            problems.append(f"{rel} is not a verified copy of the original")
    return problems


def clean(run: Run) -> None:
    run.module.clean_temp(grace=0)


def clean_after(run: Run, old: Snap, got: Snap) -> list[str]:
    return [f"{name} was not removed" for name in TEMPS if f"{LIVE}/{name}" in got]


# -- the starting states -----------------------------------------------------------------------


def plain(base: Path) -> None:
    build_module(base)


def torn(base: Path) -> None:
    build_module(base, log=LOG + TORN)


def corrupt_meta(base: Path) -> None:
    build_module(base, meta=meta_bytes(META) + b'\n  "totalEvents": 4\n}\n}')  # the classic overlap


def lagging_meta(base: Path) -> None:
    build_module(
        base, meta=meta_bytes(node_meta(LINES[:4], lastAckId=META["lastAckId"], purgeState=META["purgeState"]))
    )


def no_meta(base: Path) -> None:
    build_module(base, meta=None)


def unsalvageable_meta(base: Path) -> None:
    """Only the backups can give the client state back: the damaged meta has no valid prefix."""
    build_module(base, meta=b"\x00" * 64 + b'"totalEvents": 5}')
    put(base, f"{LIVE}/{BACKUP_DAMAGED}", b'{\n  "branchId": "dar",\n  "lastAck')


def cut_meta(base: Path) -> None:
    build_module(base, meta=meta_bytes(META)[:420])


def next_day(base: Path) -> None:
    build_module(base)
    put(base, OLD_HISTORY, line_bytes(make_line(1, seed=9)))


def first_rotation_torn(base: Path) -> None:
    """No history folder yet (the rotate makes it), and a torn tail to save first."""
    build_module(base, log=LOG + TORN)


def backups(base: Path) -> None:
    build_module(base)
    put(base, f"{LIVE}/{BACKUP_DAMAGED}", meta_bytes(META)[:500] + b"}\n}")
    put(base, f"{LIVE}/{FRAGMENT}", TORN)
    put(base, f"{ARCHIVE}/dar/pos/{BACKUP_VALID}", meta_bytes(OLDER_META))  # an earlier run died before its unlink
    put(base, f"{ARCHIVE}/dar/kds/{BACKUP_VALID}", b"another module's backup")


def temps(base: Path) -> None:
    build_module(base)
    for i, name in enumerate(TEMPS):
        put(base, f"{LIVE}/{name}", meta_bytes(META)[: 100 * (i + 1)])
        os.utime(base / LIVE / name, (1761500000 + i, 1761500000 + i))
    put(base, f"{LIVE}/{layout.META_NAME}.tmp.notes.txt", b"not a temp file of ours")


def repaired_log(old: Snap, new: Snap, base: Path) -> dict[str, list[bytes | None]]:
    """The torn tail saved and cut off, the new event not yet written: a step of its own."""
    log = old[f"{LIVE}/{layout.LOG_NAME}"]
    return {f"{LIVE}/{layout.LOG_NAME}": [log[: log.rfind(b"\n") + 1]]}


def with_rebuilt_meta(old: Snap, new: Snap, base: Path) -> dict[str, list[bytes | None]]:
    """The damaged or missing meta rebuilt, the operation not yet done: a step of its own."""
    return {f"{LIVE}/{layout.META_NAME}": [rebuilt_meta(base)]}


SCENARIOS = [
    Scenario("append_event", "plain", plain, append, invariant=meta_not_ahead, after_next=append_after),
    Scenario(
        "append_event", "torn-tail", torn, append, extra=repaired_log, invariant=meta_not_ahead, after_next=append_after
    ),
    Scenario(
        "append_event",
        "corrupt-meta",
        corrupt_meta,
        append,
        extra=with_rebuilt_meta,
        invariant=meta_not_ahead,
        after_next=append_after,
    ),
    Scenario("append_event", "lagging-meta", lagging_meta, append, invariant=meta_not_ahead, after_next=append_after),
    Scenario("update_meta", "plain", plain, update, invariant=meta_not_ahead, after_next=update_after),
    Scenario(
        "update_meta",
        "no-meta",
        no_meta,
        update,
        extra=with_rebuilt_meta,
        invariant=meta_not_ahead,
        after_next=update_after,
    ),
    Scenario(
        "rebuild",
        "unsalvageable-meta",
        unsalvageable_meta,
        rebuild,
        invariant=meta_not_ahead,
        after_next=rebuild_after(OLDER_META["lastAckId"]),
    ),
    Scenario(
        "rebuild", "cut-meta", cut_meta, rebuild, invariant=meta_not_ahead, after_next=rebuild_after(META["lastAckId"])
    ),
    Scenario("rotate", "next-day", next_day, rotate, invariant=rotate_invariant, after_next=rotate_after),
    Scenario(
        "rotate",
        "first-rotation-torn-tail",
        first_rotation_torn,
        rotate,
        extra=repaired_log,
        invariant=rotate_invariant,
        after_next=rotate_after,
    ),
    Scenario("archive_backups", "three-backups", backups, archive, after_next=archive_after),
    Scenario("clean_temp", "three-orphans", temps, clean, invariant=meta_not_ahead, after_next=clean_after),
]


@pytest.fixture(scope="module")
def fault_report(request):
    """Collects each scenario's result; at the end prints the count and writes it to a file."""
    results: list[Result] = []
    yield results
    if not results:
        return
    lines = report_lines(results)
    out = REPO / "test-artifacts" / "faults.txt"
    out.parent.mkdir(exist_ok=True)
    out.write_text("\n".join(lines) + "\n")
    capman = request.config.pluginmanager.getplugin("capturemanager")
    if capman is not None:
        with capman.global_and_fixture_disabled():
            print("\n" + "\n".join(lines))
    else:
        print("\n" + "\n".join(lines))


@pytest.fixture
def workdir(tmp_path: Path):
    """A scratch folder on tmpfs when there is one: thousands of small copies and removals."""
    shm = Path("/dev/shm")
    if shm.is_dir() and os.access(shm, os.W_OK | os.X_OK):
        path = Path(tempfile.mkdtemp(prefix="es-faults-", dir=shm))
        yield path
        shutil.rmtree(path, ignore_errors=True)
    else:
        yield tmp_path


@pytest.mark.parametrize("scenario", SCENARIOS, ids=lambda s: s.id)
def test_every_io_failure_leaves_old_or_new_state_and_recovers(
    scenario: Scenario, workdir: Path, fault_report: list[Result]
):
    result = run_scenario(scenario, workdir)
    fault_report.append(result)
    assert len(result.calls) >= MIN_CALLS_PER_SCENARIO, [c.label for c in result.calls]
    assert result.raised > 0
    shown = "\n".join(result.failures[:8])
    assert not result.failures, f"{len(result.failures)} of {result.points} injection points not recovered:\n{shown}"


def test_every_operation_is_covered_above_the_floor(fault_report: list[Result]):
    if len(fault_report) < len(SCENARIOS):
        pytest.skip("the floor applies to a run of the whole file")
    assert {r.op for r in fault_report} == set(OPERATIONS)
    assert sum(r.points for r in fault_report) >= MIN_POINTS_TOTAL
    seen = {c.func for r in fault_report for c in r.calls}
    assert {"open", "write", "fsync", "fsync(dir)", "replace", "link", "unlink", "mkdir", "close"} <= seen, seen


# -- the harness itself ------------------------------------------------------------------------


def overwrite_in_place(run: Run) -> None:
    """A meta write without temp file and rename: what the harness must catch."""
    data = meta_bytes({**META, "lastAckId": "evt-x"})
    fd = os.open(run.module.meta_path, os.O_WRONLY | os.O_TRUNC)
    try:
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view) :]
    finally:
        os.close(fd)


def copy_then_forget(run: Run) -> None:
    """An archive that unlinks before its copy is complete: what the harness must catch."""
    src = run.module.live_dir / BACKUP_VALID
    dest = run.archive / "dar" / "pos" / BACKUP_VALID
    dest.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(src, os.O_RDONLY)
    data = os.read(fd, 1 << 20)
    os.close(fd)
    if not dest.exists():
        os.unlink(src)
        out = os.open(dest, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
        try:
            os.write(out, data)
        finally:
            os.close(out)


def test_the_harness_catches_a_write_in_place(workdir: Path):
    result = run_scenario(Scenario("update_meta", "in-place", plain, overwrite_in_place), workdir)
    assert result.points >= 6 and result.failures
    assert any("is neither old nor new" in f for f in result.failures)


def test_the_harness_catches_a_lost_backup(workdir: Path):
    result = run_scenario(Scenario("archive_backups", "unlink-first", plain, copy_then_forget), workdir)
    assert any("is lost" in f for f in result.failures), result.failures


def test_eventstore_reaches_files_only_through_os():
    """The harness counts os.* calls (and open()); a file object's own writes it would miss."""
    for name in ("store", "fileio", "archive", "rebuild", "log", "meta", "layout", "checks"):
        source = (REPO / "eventstore" / f"{name}.py").read_text()
        found = re.findall(
            r"\.(?:write_bytes|write_text|read_bytes|read_text|touch)\(|(?<!os)\.(?:open|rename|unlink|rmdir)\(|(?<![\w.])open\(",
            source,
        )
        assert not found, f"eventstore/{name}.py uses {found}: make the fault harness see those calls"


# -- regressions: what the harness found -------------------------------------------------------


def faulty_run(tmp_path: Path, build: Callable[[Path], None]) -> Run:
    build(tmp_path)
    return open_run(tmp_path)


def on(func: str, target_end: str) -> Callable:
    return lambda call: call.func == func and call.target.endswith(target_end)


def test_a_rotate_that_failed_after_its_link_is_finished_not_copied_again(tmp_path: Path):
    """Found by the harness: the log linked into history, the unlink failing, the retry made a
    second history file ``...-1.log`` with the same events."""
    run = faulty_run(tmp_path, next_day)
    with (
        FaultyOS(tmp_path, failure=errno.EIO, fail_when=on("unlink", "live/events.log")).active(),
        pytest.raises(OSError),
    ):
        run.module.rotate(today="2025-10-28")
    moved = run.module.rotate(today="2025-10-28")
    history = sorted(p.name for p in run.module.history_dir.iterdir())
    assert history == sorted([Path(OLD_HISTORY).name, moved.name])
    assert moved.read_bytes() == LOG and not run.module.log_path.exists()


def test_a_short_write_of_an_event_leaves_the_log_as_it_was(tmp_path: Path):
    """Found by the harness: a full disk took half the line and the log ended in a torn line
    that a Node writer, which does not repair, would glue its next event onto."""
    run = faulty_run(tmp_path, plain)
    with (
        FaultyOS(tmp_path, failure=SHORT, fail_when=on("write", "live/events.log")).active(),
        pytest.raises(OSError) as err,
    ):
        run.module.append_event(make_entry(100))
    assert err.value.errno == errno.ENOSPC
    assert run.module.log_path.read_bytes() == LOG
    assert run.module.append_event(make_entry(101))["sequence"] == 6
    assert run.module.check().status == "healthy"


def test_a_rebuild_stops_when_a_backup_cannot_be_read(tmp_path: Path):
    """Found by the harness: an I/O error on the only backup holding the client state made the
    rebuild write a meta without it (lastAckId back to null), silently."""
    run = faulty_run(tmp_path, unsalvageable_meta)
    damaged = run.module.meta_path.read_bytes()
    with FaultyOS(tmp_path, failure=errno.EIO, fail_when=on("read", BACKUP_VALID)).active(), pytest.raises(OSError):
        run.module.rebuild()
    assert run.module.meta_path.read_bytes() == damaged
    assert run.module.rebuild().new_meta["lastAckId"] == OLDER_META["lastAckId"]


def test_a_backup_name_always_holds_a_whole_copy(tmp_path: Path):
    """Found by the harness: the backup was written in place, and when its cleanup failed too
    (or on a crash) an empty ``events.meta.json.corrupted.<ms>.bak`` stayed as if a backup."""
    run = faulty_run(tmp_path, corrupt_meta)
    damaged = run.module.meta_path.read_bytes()
    with (
        FaultyOS(tmp_path, failure=PERSISTENT, fail_when=on("write", "events.meta.json.tmp.*")).active(),
        pytest.raises(OSError),
    ):
        run.module.rebuild()
    names = os.listdir(run.live)
    assert [n for n in names if layout.backup_kind(n)] == [BACKUP_VALID]
    assert [n for n, _ in run.module.orphan_temp_files(grace=0)] == [n for n in names if layout.TEMP_RE.match(n)] != []
    report = run.module.rebuild()
    assert (run.live / report.backup).read_bytes() == damaged
    run.module.clean_temp(grace=0)
    assert not [n for n in os.listdir(run.live) if layout.TEMP_RE.match(n)]


def test_an_interrupted_archive_copy_does_not_block_the_next_archive(tmp_path: Path):
    """Found by the harness: a copy cut short (and not removed: the disk went away) kept the
    backup's name in the archive, and every later archive of it failed "already exists"."""
    run = faulty_run(tmp_path, backups)
    with (
        FaultyOS(tmp_path, failure=PERSISTENT, fail_when=on("write", f"{FRAGMENT}.partial")).active(),
        pytest.raises(OSError),
    ):
        run.module.archive_backups(run.archive)
    assert not (run.archive / "dar" / "pos" / FRAGMENT).exists()
    done = run.module.archive_backups(run.archive)
    assert sorted(a.name for a in done) == sorted(ARCHIVED)
    folder = run.archive / "dar" / "pos"
    assert sorted(os.listdir(folder)) == sorted(ARCHIVED)
    assert (folder / FRAGMENT).read_bytes() == TORN


def test_a_partial_copy_left_by_a_killed_archive_is_replaced(tmp_path: Path):
    run = faulty_run(tmp_path, backups)
    folder = run.archive / "dar" / "pos"
    (folder / f".{FRAGMENT}.partial").write_bytes(TORN[:100])
    run.module.archive_backups(run.archive)
    assert sorted(os.listdir(folder)) == sorted(ARCHIVED)
