"""Verify is a full read, and bytes already seen must never change (issue 13): the checkpoints of
a log (sha256 per 8 MiB), ``check(full=True)``, ``log_changed_in_place`` and what is no damage.
On real files: bytes changed in place keep the size, and the mtime is put back with os.utime."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import pytest

from eventstore import checkpoints, health, state
from eventstore import log as logmod
from eventstore.checkpoints import SEGMENT
from eventstore.fileio import Stamp
from tests.eventstore.conftest import codes, finding, line_bytes, make_entry, make_lines, seed

LATER = 10.0  # past the racily-clean window


def round_trip(value):
    return json.loads(json.dumps(value))


def change_in_place(path: Path, at: int, new: bytes) -> None:
    """Overwrite bytes at ``at`` keeping the size, then put the mtime back: a stamp-clean change."""
    st = os.stat(path)
    with open(path, "r+b") as f:
        f.seek(at)
        f.write(new)
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns))
    assert Stamp.of(path) == Stamp(st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns)


def digit_in_a_string(path: Path, after: int) -> int:
    """The offset of a digit inside a JSON string value at or after byte ``after``."""
    data = path.read_bytes()
    i = data.index(b'"evt-', after) + 5
    while not data[i : i + 1].isdigit():
        i += 1
    return i


def flip_digit(path: Path, at: int) -> None:
    old = path.read_bytes()[at : at + 1]
    change_in_place(path, at, b"1" if old != b"1" else b"2")


def check(module, previous=None, **kw):
    return module.check(now=time.time() + LATER, previous=None if previous is None else round_trip(previous), **kw)


def assert_not_changed(h) -> None:
    assert "log_changed_in_place" not in codes(h), finding(h, "log_changed_in_place").detail


@pytest.fixture
def healthy(store):
    s = seed(store, 60)
    first = check(s.module)
    assert first.status == "healthy" and first.full and first.verified_at is not None
    return s.module, first


def test_a_digit_changed_in_a_string_is_found_by_a_full_read_only_and_stays_until_accepted(healthy):
    module, first = healthy
    at = digit_in_a_string(module.log_path, module.log_path.stat().st_size // 2)
    flip_digit(module.log_path, at)

    incremental = check(module, first.state)
    assert incremental.status == "healthy" and incremental.bytes_read == 0 and not incremental.full
    assert incremental.verified_at == first.verified_at  # carried forward

    full = check(module, incremental.state, full=True)
    f = finding(full, "log_changed_in_place")
    size = module.log_path.stat().st_size
    assert full.status == "critical" and f.severity == "critical" and full.full
    assert f.detail["segments"] == 1 and f.detail["ranges"] == [[0, size - 1]]  # the one (partial) segment
    assert f.detail["ranges"][0][0] <= at <= f.detail["ranges"][0][1]
    assert f.detail["intact_at"] == checkpoints.iso(first.verified_at) < f.detail["found_at"]
    assert not health.FINDING_SPECS["log_changed_in_place"].problems(f.detail)
    assert codes(full) == ["log_changed_in_place"]  # every line still parses
    assert full.verified_at > first.verified_at

    later = check(module, full.state)  # sticky: carried in the state
    assert codes(later) == ["log_changed_in_place"] and later.bytes_read == 0
    module.append_event(make_entry(99))
    grown = check(module, later.state)
    assert codes(grown) == ["log_changed_in_place"] and 0 < grown.bytes_read < size
    again = check(module, grown.state, full=True)
    assert codes(again) == ["log_changed_in_place"]
    assert finding(again, "log_changed_in_place").detail["found_at"] == f.detail["found_at"]

    accepted = check(module, again.state, full=True, accept_changes=True)
    assert accepted.status == "healthy", codes(accepted)
    after = check(module, accepted.state, full=True)
    assert after.status == "healthy" and check(module, after.state).status == "healthy"


def test_a_broken_line_in_the_middle_is_found_too(healthy):
    module, first = healthy
    data = module.log_path.read_bytes()
    at = data.index(b"\n", len(data) // 2) - 1  # the closing brace of a line in the middle
    change_in_place(module.log_path, at, b"x")
    full = check(module, first.state, full=True)
    assert {"log_changed_in_place", "log_bad_line"} <= set(codes(full))  # (and the gap its event leaves)
    assert check(module, first.state).status == "healthy"  # invisible to an incremental check


def test_a_state_of_version_2_reads_as_none(healthy):
    module, first = healthy
    flip_digit(module.log_path, digit_in_a_string(module.log_path, 100))
    old = {**round_trip(first.state), "version": 2}
    assert state.CheckState.from_json(old) is None
    h = check(module, old)
    assert h.full and h.status == "healthy"  # a first read: nothing to compare with
    assert h.bytes_read == module.log_path.stat().st_size + module.meta_path.stat().st_size


def test_bytes_read_counts_the_log_the_meta_and_the_backups(store):
    s = seed(store, 30)
    backup = s.live / "events.meta.json.corrupted.1700000000000.bak"
    backup.write_bytes(b'{"totalEvents": 3}' * 50)
    h = check(s.module)
    sizes = sum(p.stat().st_size for p in (s.module.log_path, s.module.meta_path, backup))
    assert h.full and h.bytes_read == sizes
    assert check(s.module, h.state, full=True).bytes_read == sizes
    assert check(s.module, h.state).bytes_read == 0


def test_progress_follows_the_read_with_increasing_done_and_the_right_total(store, monkeypatch):
    monkeypatch.setattr(logmod, "CHUNK", 4096)
    s = seed(store, 80)
    calls = []
    h = check(s.module, progress=lambda done, total: calls.append((done, total)))
    size = s.module.log_path.stat().st_size
    assert len(calls) > 5 and {t for _, t in calls} == {size}
    assert [d for d, _ in calls] == sorted(d for d, _ in calls) and calls[-1] == (size, size)
    calls.clear()
    check(s.module, h.state, full=True, progress=lambda done, total: calls.append((done, total)))
    assert calls[-1] == (size, size)


# -- what is not damage ---------------------------------------------------------------------


def test_appends_and_their_checkpoints_are_never_a_change(store):
    s = seed(store, 5)
    module = s.module
    h = check(module)
    for i in range(40):
        module.append_event(make_entry(i))
        h = check(module, h.state)
        assert h.status == "healthy", codes(h)
    pieces = h.state["checkpoints"]["pieces"]
    assert pieces[-1][0] == module.log_path.stat().st_size and 1 < len(pieces) < 10
    full = check(module, h.state, full=True)
    assert full.status == "healthy" and len(full.state["checkpoints"]["pieces"]) == 1
    # a change in bytes only an incremental check checkpointed is found as well
    flip_digit(module.log_path, digit_in_a_string(module.log_path, pieces[-2][0]))
    assert "log_changed_in_place" in codes(check(module, h.state, full=True))


def test_a_torn_tail_that_gets_completed_is_no_change(store):
    s = seed(store, 10)
    module = s.module
    h = check(module)
    line = line_bytes(make_lines(11)[-1])
    with open(module.log_path, "ab") as f:
        f.write(line[:40])
    h = check(module, h.state)
    assert codes(h) == ["log_torn_tail"]
    with open(module.log_path, "ab") as f:
        f.write(line[40:])
    h = check(module, h.state)
    assert_not_changed(h)  # (the meta counts one event less: meta_drift)
    assert h.verified_at is not None
    assert_not_changed(check(module, h.state, full=True))
    module.append_event(make_entry(1))  # an append after a torn tail Python repaired
    with open(module.log_path, "ab") as f:
        f.write(b'{"id": "evt-torn')
    h = check(module, h.state)
    module.append_event(make_entry(2))  # saves the torn tail aside and cuts it off
    h = check(module, h.state)
    assert_not_changed(h)
    assert_not_changed(check(module, h.state, full=True))


def test_pythons_rotation_purge_rebuild_and_archive_are_no_change(store, tmp_path):
    s = seed(store, 20, currentDay="2000-01-01")
    module = s.module
    h = check(module)
    module.rebuild()
    h = check(module, h.state, full=True)
    assert_not_changed(h)
    module.archive_backups(tmp_path / "archive")
    h = check(module, h.state, full=True)
    assert_not_changed(h)
    assert module.rotate() is not None
    h = check(module, h.state)
    assert "checkpoints" not in h.state  # no log: nothing to keep
    for i in range(3):
        module.append_event(make_entry(i))
    h = check(module, h.state, full=True)
    assert h.status == "healthy", codes(h)
    module.log_path.unlink()  # a purge
    module.update_meta({"totalEvents": 0})
    h = check(module, h.state)
    module.append_event(make_entry(7))
    assert check(module, h.state, full=True).status == "healthy"


def test_a_new_file_in_the_logs_place_drops_the_checkpoints(healthy):
    module, first = healthy
    data = module.log_path.read_bytes()
    tmp = module.log_path.with_name("events.log.new")
    tmp.write_bytes(data.replace(b"evt-", b"evt-9", 1))
    os.replace(tmp, module.log_path)  # another inode (as Node's rotation then an append gives)
    h = check(module, first.state, full=True)
    assert_not_changed(h)


def test_a_log_cut_shorter_on_the_same_inode_is_a_change_unless_the_meta_restarted(healthy):
    module, first = healthy
    data = module.log_path.read_bytes()
    cut = data.index(b"\n", len(data) // 2) + 1
    os.truncate(module.log_path, cut)
    h = check(module, first.state)
    f = finding(h, "log_changed_in_place")
    assert f.detail["ranges"] == [[0, len(data) - 1]]
    # the same cut, but the meta restarted (a rotation that kept the inode number)
    module.log_path.write_bytes(data)
    fresh = check(module)
    os.truncate(module.log_path, cut)
    module.update_meta({"totalEvents": 0})
    assert_not_changed(check(module, fresh.state))


# -- several segments -------------------------------------------------------------------------


def _big_log(module, target: int) -> int:
    lines = []
    size = 0
    i = 0
    while size < target:
        i += 1
        line = line_bytes({**make_lines(1, start=i)[0], "pad": "x" * 2000})
        lines.append(line)
        size += len(line)
    module.live_dir.mkdir(parents=True, exist_ok=True)
    module.log_path.write_bytes(b"".join(lines))
    return size


@pytest.mark.parametrize("parallel", [False, True])
def test_a_change_in_the_second_segment_of_a_20_mib_log_is_found_there_only(store, monkeypatch, parallel):
    module = store.module("dar", "pos")
    size = _big_log(module, 21 << 20)
    used = []
    if parallel:  # the path of logs of 64 MiB and more: one process per core, ranges at 8 MiB
        monkeypatch.setattr(logmod, "PARALLEL_MIN_BYTES", 1 << 20)
        monkeypatch.setattr(os, "cpu_count", lambda: 2)
        real = logmod._summarize_parallel
        monkeypatch.setattr(logmod, "_summarize_parallel", lambda *a, **k: used.append(1) or real(*a, **k))
    calls = []
    first = check(module, progress=lambda d, t: calls.append((d, t)))
    # (in several processes each also reads the end of the line its 8 MiB starts in)
    assert (first.bytes_read == size or parallel and size < first.bytes_read < size + 8000) and calls[-1] == (
        size,
        size,
    )
    assert [d for d, _ in calls] == sorted(d for d, _ in calls)
    pieces = first.state["checkpoints"]["pieces"]
    assert [p[0] for p in pieces] == [SEGMENT, 2 * SEGMENT, size]
    flip_digit(module.log_path, digit_in_a_string(module.log_path, SEGMENT + 1000))
    full = check(module, first.state, full=True)
    f = finding(full, "log_changed_in_place")
    assert f.detail["ranges"] == [[SEGMENT, 2 * SEGMENT - 1]] and f.detail["segments"] == 1
    assert full.bytes_read == size or (parallel and size < full.bytes_read < size + 8000)  # one read
    assert len(used) == 2 * parallel
    # the whole lines straddling the 8 MiB edges are read once as well: a change next to one
    accepted = check(module, full.state, full=True, accept_changes=True)
    assert_not_changed(accepted)
    flip_digit(module.log_path, digit_in_a_string(module.log_path, 2 * SEGMENT - 3000))
    f = finding(check(module, accepted.state, full=True), "log_changed_in_place")
    assert f.detail["ranges"] in ([[SEGMENT, 2 * SEGMENT - 1]], [[2 * SEGMENT, size - 1]])


def test_a_grown_large_log_keeps_few_pieces_and_bounded_rereads(store):
    module = store.module("dar", "pos")
    _big_log(module, 9 << 20)
    h = check(module)
    reread = []
    for i in range(60):
        with open(module.log_path, "ab") as f:
            f.write(line_bytes({**make_lines(1, start=5000 + i)[0], "pad": "y" * 3000}))
        before = module.log_path.stat().st_size
        h = check(module, h.state)
        reread.append(h.bytes_read)
        assert h.status in ("healthy", "warning") and "log_changed_in_place" not in codes(h)
        assert h.state["checkpoints"]["pieces"][-1][0] == before
    pieces = h.state["checkpoints"]["pieces"]
    assert len(pieces) <= 12 and max(reread) <= SEGMENT + (64 << 10)
    assert sum(reread) < 60 * 3100 * 12  # amortised: a few times the appended bytes
    assert check(module, h.state, full=True).status == h.status


# -- the state --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "pieces",
    [
        [[0, "0" * 64, 1.0]],  # an empty piece
        [[SEGMENT + 1, "0" * 64, 1.0]],  # across a window's edge
        [[10, "0" * 63, 1.0]],
        [[10, "g" * 64, 1.0]],
        [[10, "0" * 64, -1]],
        [[10, "0" * 64, True]],
        [[10, "0" * 64]],
        [[20, "0" * 64, 1.0], [10, "0" * 64, 1.0]],
    ],
)
def test_malformed_checkpoints_read_as_no_state(healthy, pieces):
    module, first = healthy
    bad = round_trip(first.state)
    bad["checkpoints"]["pieces"] = pieces
    assert state.CheckState.from_json(bad) is None
    assert check(module, bad).full


def test_a_sticky_finding_of_another_code_reads_as_no_state(healthy):
    module, first = healthy
    bad = round_trip(first.state)
    bad["changed"] = {"code": "meta_missing", "severity": "warning", "message": "x", "detail": {"log_events": 1}}
    assert state.CheckState.from_json(bad) is None
