"""rebuild(): meta from the log, salvage of what the log cannot give, backups, change detection."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time

import pytest

from eventstore import ConcurrentModification, clock, layout
from eventstore import log as logmod
from tests.eventstore.conftest import (
    LOAD_HELPERS,
    child_env,
    codes,
    derived,
    line_bytes,
    log_events,
    make_entry,
    make_line,
    meta_bytes,
    node_meta,
    seed,
)

CLIENT_STATE = {
    "lastAckId": "evt-acked-by-the-till",
    "lastServedTableIds": {"order_header": ["ord-1", "ord-2"]},
    "lastClientTableIds": {"order_line": ["ln-9"]},
    "lastSnapshotMarker": "snap-17",
    "lastClientSyncAt": "2025-10-27T12:23:50.001Z",
    "liveCreatedAt": "2025-10-01T06:00:00.000Z",
    "currentDay": "2025-10-27",
}


def meta_backups(folder):
    return sorted(n for n in os.listdir(folder) if layout.backup_kind(n) == "meta")


@pytest.fixture
def rich(store):
    """A Node-written module whose meta holds client sync state and an unknown key."""
    return seed(store, 8, **CLIENT_STATE, purgeState={"lastPurgeAt": "2025-10-20T00:00:00.000Z"})


def test_rebuild_of_a_good_meta_keeps_everything(rich):
    report = rich.module.rebuild()
    new = json.loads(rich.module.meta_path.read_bytes())
    for key, value in {**CLIENT_STATE, "purgeState": rich.meta["purgeState"]}.items():
        assert new[key] == value, key
        assert report.sources[key] == "meta"
    assert derived(new) == derived(rich.meta)
    assert report.events_read == 8 and report.old_meta_error is None


def test_rebuild_keeps_last_ack_id_from_the_valid_prefix(rich):
    # The upstream damage: a whole document followed by the tail of a longer one.
    longer = meta_bytes({**rich.meta, "lastClientSyncAt": "2025-10-27T12:24:00.000Z", "note": "x" * 80})
    damaged = meta_bytes(rich.meta) + longer[-120:]
    rich.write_meta(damaged)
    report = rich.module.rebuild()
    new = json.loads(rich.module.meta_path.read_bytes())
    for key in (
        "lastAckId",
        "lastServedTableIds",
        "lastClientTableIds",
        "liveCreatedAt",
        "lastSnapshotMarker",
        "purgeState",
    ):
        assert new[key] == rich.meta[key], key
        assert report.sources[key] == "prefix", key
    assert report.old_meta_error and "Extra data" in report.old_meta_error
    assert derived(new) == derived(rich.meta)


def test_rebuild_of_a_meta_cut_short_keeps_the_entries_before_the_cut(rich):
    data = meta_bytes(rich.meta)
    rich.write_meta(data[: data.index(b'"lastClientTableIds"') + 8])
    report = rich.module.rebuild()
    new = json.loads(rich.module.meta_path.read_bytes())
    assert new["lastAckId"] == CLIENT_STATE["lastAckId"] and report.sources["lastAckId"] == "prefix"
    assert new["lastServedTableIds"] == CLIENT_STATE["lastServedTableIds"]
    assert new["lastClientTableIds"] == {} and report.sources["lastClientTableIds"] == "default"
    assert new["totalEvents"] == 8


def test_rebuild_of_garbage_takes_the_newest_parseable_backup(rich):
    older = "events.meta.json.corrupted.1761000000000.bak"
    newer = "events.meta.json.corrupted.1761500000000.bak"
    newest_broken = "events.meta.json.corrupted.1761900000000.bak"
    (rich.live / older).write_bytes(meta_bytes({**rich.meta, "lastAckId": "evt-old"}))
    (rich.live / newer).write_bytes(meta_bytes({**rich.meta, "lastAckId": "evt-newer"}))
    (rich.live / newest_broken).write_bytes(b"\x00" * 300)
    rich.write_meta(b"\x00" * 1256)
    report = rich.module.rebuild()
    new = json.loads(rich.module.meta_path.read_bytes())
    assert new["lastAckId"] == "evt-newer"
    assert report.sources["lastAckId"] == f"backup:{newer}"
    assert report.sources["liveCreatedAt"] == f"backup:{newer}"
    assert derived(new) == derived(rich.meta)


def test_rebuild_with_nothing_to_salvage_uses_defaults(store):
    s = seed(store, 5)
    s.write_meta(b"\xff\xfe garbage")
    report = s.module.rebuild()
    new = json.loads(s.module.meta_path.read_bytes())
    assert new["lastAckId"] is None and report.sources["lastAckId"] == "default"
    assert new["lastServedTableIds"] == {} and report.sources["lastServedTableIds"] == "default"
    assert (new["branchId"], new["moduleId"]) == ("dar", "pos")
    assert derived(new) == derived(s.meta)


def test_rebuild_without_a_meta_makes_one_and_no_backup(store):
    s = seed(store, 3, meta=False)
    report = s.module.rebuild()
    assert report.backup is None and meta_backups(s.live) == []
    assert derived(json.loads(s.module.meta_path.read_bytes())) == derived(node_meta(s.lines))


def test_rebuild_backs_up_the_damaged_meta_byte_for_byte(rich):
    damaged = meta_bytes(rich.meta)[:-40] + b"\x00garbage"
    rich.write_meta(damaged)
    before_ms = clock.now_ms()
    report = rich.module.rebuild()
    assert layout.META_BACKUP_RE.match(report.backup)
    assert before_ms <= int(layout.META_BACKUP_RE.match(report.backup).group(1)) <= clock.now_ms()
    assert (rich.live / report.backup).read_bytes() == damaged


def test_two_rebuilds_in_the_same_millisecond_make_two_backups(rich, monkeypatch):
    monkeypatch.setattr(clock, "now_ms", lambda: 1761567827665)
    rich.write_meta(b"{broken one")
    first = rich.module.rebuild().backup
    rich.write_meta(b"{broken two")
    second = rich.module.rebuild().backup
    assert first != second
    assert (rich.live / first).read_bytes() == b"{broken one"
    assert (rich.live / second).read_bytes() == b"{broken two"


def test_rebuild_never_overwrites_an_existing_backup(rich, monkeypatch):
    monkeypatch.setattr(clock, "now_ms", lambda: 1761567827665)
    taken = rich.live / layout.meta_backup_name(1761567827665)
    taken.write_bytes(b"an older recovery")
    report = rich.module.rebuild()
    assert report.backup != taken.name
    assert taken.read_bytes() == b"an older recovery"


def test_rebuild_after_duplicates_continues_after_the_highest_sequence(store):
    s = seed(store, 0)
    lines = [make_line(n) for n in (1, 2, 3, 3, 3, 4)]
    s.write_log(b"".join(line_bytes(ln) for ln in lines))
    s.write_meta(meta_bytes(node_meta(lines, totalEvents=4)))
    report = s.module.rebuild()
    assert report.duplicate_count == 2
    assert report.new_meta["totalEvents"] == 6  # max(6 events, sequence 4)
    added = s.module.append_event(make_entry(99))
    sequences = [e["sequence"] for e in log_events(s.module.log_path)]
    assert added["sequence"] == 7 and sequences.count(7) == 1


def test_rebuild_after_a_gap_continues_after_the_highest_sequence(store):
    s = seed(store, 0)
    lines = [make_line(n) for n in (1, 2, 9)]
    s.write_log(b"".join(line_bytes(ln) for ln in lines))
    assert s.module.rebuild().new_meta["totalEvents"] == 9
    assert s.module.append_event(make_entry(10))["sequence"] == 10


def test_rebuild_reports_bad_lines_and_leaves_them_in_the_log(rich):
    data = rich.module.log_path.read_bytes().split(b"\n")
    data[2] = data[2][:100]
    rich.write_log(b"\n".join(data))
    before = rich.module.log_path.read_bytes()
    report = rich.module.rebuild()
    assert report.bad_line_count == 1 and report.bad_lines[0]["line"] == 3
    assert report.new_meta["totalEvents"] == 8  # the highest sequence still counts
    assert rich.module.log_path.read_bytes() == before


def test_rebuild_of_a_log_written_by_append_event_reproduces_the_meta(module):
    for i in range(12):
        module.append_event(make_entry(i))
    module.update_meta({"lastAckId": "evt-x", "purgeState": {"n": 1}})
    appended = json.loads(module.meta_path.read_bytes())
    module.meta_path.write_bytes(b"")
    module.rebuild()
    rebuilt = json.loads(module.meta_path.read_bytes())
    assert derived(rebuilt) == derived(appended)


def test_rebuild_keeps_table_cursors_of_tables_no_longer_in_the_log(rich):
    # After a rotation or a purge the meta may hold cursors of tables the log no longer has.
    extra = {"kitchen_ticket": {"key": "kt-1", "id": "kt-1", "eventId": "evt-old", "sequence": 3, "updatedAt": "x"}}
    rich.write_meta(meta_bytes({**rich.meta, "tableCursors": {**rich.meta["tableCursors"], **extra}}))
    report = rich.module.rebuild()
    assert report.new_meta["tableCursors"]["kitchen_ticket"] == extra["kitchen_ticket"]
    assert report.sources["tableCursors"] == "log+meta"


def test_rebuild_stays_within_the_module_folder(rich):
    before = sorted(os.listdir(rich.live.parent.parent.parent.parent))
    rich.module.rebuild()
    assert sorted(os.listdir(rich.live.parent.parent.parent.parent)) == before
    assert not [n for n in os.listdir(rich.live) if ".tmp." in n]


# -- change detection ----------------------------------------------------------------------


def test_rebuild_starts_over_when_the_log_grows_while_it_reads(rich, monkeypatch):
    real = logmod.summarize
    calls = []

    def summarize_while_node_appends(path, *args, **kwargs):
        out = real(path, *args, **kwargs)
        if not calls:
            with open(path, "ab") as fh:
                fh.write(line_bytes(make_line(9)))
        calls.append(1)
        return out

    monkeypatch.setattr(logmod, "summarize", summarize_while_node_appends)
    report = rich.module.rebuild()
    assert report.attempts == 2
    assert report.new_meta["totalEvents"] == 9
    assert json.loads(rich.module.meta_path.read_bytes())["totalEvents"] == 9


def test_rebuild_gives_up_without_writing_when_the_log_keeps_changing(rich, monkeypatch):
    real = logmod.summarize
    seq = iter(range(9, 100))

    def summarize_while_node_appends(path, *args, **kwargs):
        out = real(path, *args, **kwargs)
        with open(path, "ab") as fh:
            fh.write(line_bytes(make_line(next(seq))))
        return out

    monkeypatch.setattr(logmod, "summarize", summarize_while_node_appends)
    before = rich.module.meta_path.read_bytes()
    with pytest.raises(ConcurrentModification):
        rich.module.rebuild(retries=2)
    assert rich.module.meta_path.read_bytes() == before
    assert not [n for n in os.listdir(rich.live) if ".tmp." in n]


WRITER = (
    LOAD_HELPERS
    + r"""
import os, time
path, start = sys.argv[1], int(sys.argv[2])
seq = start
deadline = time.monotonic() + 3
while time.monotonic() < deadline:
    # Like the Node server: append without our lock.
    with open(path, "ab") as fh:
        fh.write(helpers.line_bytes(helpers.make_line(seq)))
    seq += 1
    time.sleep(0.002)
print(seq - 1)
"""
)


def test_rebuild_while_an_unlocked_writer_appends_never_writes_a_meta_older_than_the_log(rich):
    proc = subprocess.Popen(
        [sys.executable, "-c", WRITER, str(rich.module.log_path), "9"],
        env=child_env(),
        stdout=subprocess.PIPE,
        text=True,
    )
    outcomes = []
    try:
        while proc.poll() is None:
            try:
                report = rich.module.rebuild(retries=1)
            except ConcurrentModification:
                outcomes.append("refused")
                continue
            outcomes.append("ok")
            # What the rebuild wrote describes a prefix of the log as it is now, never more.
            events = log_events(rich.module.log_path)
            assert report.new_meta["totalEvents"] <= len(events)
            ids = [e["id"] for e in events]
            assert report.new_meta["lastEventId"] in ids
            assert ids.index(report.new_meta["lastEventId"]) + 1 == report.new_meta["totalEvents"]
            time.sleep(0.01)
    finally:
        last = int(proc.communicate(timeout=10)[0])
    assert outcomes
    final = rich.module.rebuild()
    assert final.new_meta["totalEvents"] == last
    assert codes(rich.module.check()) == ["backup_present"]
