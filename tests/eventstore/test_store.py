"""The store API: append, load, update, read, rotate, discovery, torn tails, roll-forward."""

from __future__ import annotations

import json
import os
import re

import pytest

from eventstore import CorruptEntry, EventStore, EventStoreError, InvalidName, RootError, layout
from tests.eventstore.conftest import (
    codes,
    derived,
    line_bytes,
    log_events,
    make_entry,
    make_line,
    meta_bytes,
    seed,
    temp_files,
)

ISO_MS = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$")


def test_append_event_writes_the_node_line_shape(module):
    entry = make_entry(1, "order_header")
    line = module.append_event(entry)
    assert list(line) == [
        "id",
        "sequence",
        "action",
        "branchId",
        "moduleId",
        "table",
        "record",
        "meta",
        "publishState",
        "createdAt",
        "recordedAt",
    ]
    assert re.fullmatch(r"evt-[0-9a-f-]{36}", line["id"])
    assert (line["sequence"], line["branchId"], line["moduleId"]) == (1, "dar", "pos")
    assert line["record"] == entry["record"] and line["meta"] == entry["meta"]
    # Node re-stamps the own branch's publish state with the time of the append
    now = line["recordedAt"]
    assert line["publishState"] == {"dar": {"status": "published", "updatedAt": now, "attempts": 0, "publishedAt": now}}
    assert ISO_MS.match(line["createdAt"]) and ISO_MS.match(line["recordedAt"])
    raw = module.log_path.read_bytes()
    assert raw.endswith(b"\n") and raw.count(b"\n") == 1
    assert json.loads(raw) == line


def test_append_event_defaults(module):
    line = module.append_event({"table": "pos_shift"})
    now = line["recordedAt"]
    assert line["action"] == "module:insert" and line["createdAt"] == now
    assert line["record"] is None and line["meta"] == {}
    assert line["publishState"] == {"dar": {"status": "published", "updatedAt": now, "attempts": 0, "publishedAt": now}}


def test_append_event_normalises_the_publish_state_as_node_does(module):
    line = module.append_event(
        {
            "table": "t",
            "publishState": {"dar": "pending", "zamalek": {"attempts": 2, "publishedAt": "p"}, "": "x", "maadi": 5},
        }
    )
    now = line["recordedAt"]
    assert line["publishState"] == {
        "dar": {"status": "pending", "updatedAt": now, "attempts": 0},
        "zamalek": {"status": "pending", "updatedAt": now, "attempts": 2, "publishedAt": "p"},
    }


def test_append_event_updates_the_meta_in_the_same_step(module):
    lines = [module.append_event(make_entry(i)) for i in range(4)]
    meta = json.loads(module.meta_path.read_bytes())
    assert meta["totalEvents"] == 4 and meta["lastEventId"] == lines[-1]["id"]
    assert meta["lastEventAt"] == lines[-1]["createdAt"]
    # tables in order: order_header, order_line, pos_shift, order_header: the last one per table wins
    assert meta["tableCursors"]["order_header"]["eventId"] == lines[3]["id"]
    assert meta["tableCursors"]["order_header"]["key"] == lines[3]["meta"]["recordRef"]["key"]
    assert meta["tableCursors"]["order_line"]["eventId"] == lines[1]["id"]
    assert module.meta_path.read_bytes() == meta_bytes(meta)  # JSON.stringify(m, null, 2)


def test_append_event_refuses_what_cannot_be_written(module):
    with pytest.raises(CorruptEntry):
        module.append_event(["not", "an", "object"])
    with pytest.raises(CorruptEntry):
        module.append_event({"table": "t", "record": {"x": object()}})
    assert not module.log_path.exists() or log_events(module.log_path) == []


def test_append_continues_a_node_written_module(seeded):
    line = seeded.module.append_event(make_entry(7))
    assert line["sequence"] == 7
    assert [e["sequence"] for e in log_events(seeded.module.log_path)] == list(range(1, 8))


def test_load_meta_fills_defaults_and_keeps_unknown_keys(store):
    s = seed(store, 3)
    s.write_meta(meta_bytes({"totalEvents": 3, "lastEventId": s.lines[-1]["id"], "purgeState": {"at": "x"}}))
    meta = s.module.load_meta()
    assert meta["purgeState"] == {"at": "x"}
    assert meta["lastServedTableIds"] == {} and meta["lastSnapshotMarker"] is None


def test_load_meta_recovers_a_corrupt_meta_with_a_backup(seeded):
    damaged = meta_bytes(seeded.meta) + b"\n}\n}"
    seeded.write_meta(damaged)
    meta = seeded.module.load_meta()
    assert derived(meta) == derived(seeded.meta) and meta["lastAckId"] == seeded.meta["lastAckId"]
    (backup,) = [n for n in os.listdir(seeded.live) if layout.backup_kind(n) == "meta"]
    assert (seeded.live / backup).read_bytes() == damaged
    assert codes(seeded.module.check()) == ["backup_present"]


def test_load_meta_of_a_missing_module_raises(store):
    with pytest.raises(EventStoreError):
        store.module("dar", "nothing-here").load_meta()


def test_unknown_keys_survive_append_update_and_rebuild(seeded):
    seeded.write_meta(meta_bytes({**seeded.meta, "purgeState": {"lastPurgeAt": "2025-10-20"}}))
    seeded.module.append_event(make_entry(50))
    seeded.module.update_meta({"lastAckId": "evt-1"})
    seeded.module.rebuild()
    assert json.loads(seeded.module.meta_path.read_bytes())["purgeState"] == {"lastPurgeAt": "2025-10-20"}


def test_update_meta_deep_merges_like_node(seeded):
    seeded.module.update_meta(
        {"lastServedTableIds": {"order_header": ["a", "b"], "order_line": ["x"]}, "purgeState": {"n": 1, "m": 2}}
    )
    out = seeded.module.update_meta(
        {
            "lastServedTableIds": {"order_header": ["c"]},
            "purgeState": {"n": 5},
            "lastAckId": None,
            "lastSnapshotMarker": "s-1",
        }
    )
    on_disk = json.loads(seeded.module.meta_path.read_bytes())
    assert out == on_disk
    assert on_disk["lastServedTableIds"] == {"order_header": ["c"], "order_line": ["x"]}
    assert on_disk["purgeState"] == {"n": 5, "m": 2}
    assert on_disk["lastAckId"] is None and on_disk["lastSnapshotMarker"] == "s-1"
    assert on_disk["tableCursors"] == seeded.meta["tableCursors"]
    assert ISO_MS.match(on_disk["updatedAt"]) and on_disk["updatedAt"] != seeded.meta["updatedAt"]


def test_update_meta_refuses_to_break_total_events(seeded):
    before = seeded.module.meta_path.read_bytes()
    with pytest.raises(EventStoreError):
        seeded.module.update_meta({"totalEvents": "abc"})
    with pytest.raises(EventStoreError):
        seeded.module.update_meta(["x"])
    assert seeded.module.meta_path.read_bytes() == before


def test_read_events_streams_the_log_skipping_bad_lines(seeded):
    with open(seeded.module.log_path, "ab") as fh:
        fh.write(b"garbage\r\n\n" + line_bytes(make_line(7)).replace(b"\n", b"\r\n") + b'{"torn')
    ids = [e["id"] for e in seeded.module.read_events()]
    assert ids == [ln["id"] for ln in seeded.lines] + [make_line(7)["id"]]


def test_read_events_of_a_module_without_a_log(module):
    assert list(module.read_events()) == []


# -- torn tails and a meta left behind by a crash -------------------------------------------


def test_append_after_a_torn_tail_saves_the_fragment_and_starts_a_new_line(seeded):
    good = seeded.module.log_path.read_bytes()
    fragment = line_bytes(make_line(7))[:333]
    seeded.write_log(good + fragment)
    line = seeded.module.append_event(make_entry(8))
    assert (
        seeded.module.log_path.read_bytes()
        == good + json.dumps(line, ensure_ascii=False, separators=(",", ":")).encode() + b"\n"
    )
    (saved,) = [n for n in os.listdir(seeded.live) if layout.backup_kind(n) == "log-fragment"]
    assert re.fullmatch(r"events\.log\.torn\.\d+\.bak", saved)
    assert (seeded.live / saved).read_bytes() == fragment
    assert line["sequence"] == 7
    assert codes(seeded.module.check()) == ["backup_present"]


def test_append_after_a_complete_event_without_its_newline_just_adds_the_newline(seeded):
    node_line = line_bytes(make_line(7))
    seeded.write_log(seeded.module.log_path.read_bytes() + node_line.rstrip(b"\n"))
    line = seeded.module.append_event(make_entry(8))
    events = log_events(seeded.module.log_path)
    assert [e["sequence"] for e in events] == list(range(1, 9))
    assert events[6] == json.loads(node_line) and events[7]["id"] == line["id"]
    assert not [n for n in os.listdir(seeded.live) if layout.backup_kind(n)]


def test_a_meta_one_event_behind_is_rolled_forward_by_load_meta(module):
    for i in range(3):
        module.append_event(make_entry(i))
    behind = module.meta_path.read_bytes()
    last = module.append_event(make_entry(3))
    module.meta_path.write_bytes(behind)  # as if the writer died between log and meta
    fresh = EventStore(module.store.root, fsync=False).module("dar", "pos")
    assert "meta_drift" in codes(fresh.check())
    meta = fresh.load_meta()
    assert meta["totalEvents"] == 4 and meta["lastEventId"] == last["id"]
    assert meta["tableCursors"][last["table"]]["eventId"] == last["id"]
    assert fresh.check().findings == []


def test_a_meta_one_event_behind_is_rolled_forward_by_the_next_append(module):
    for i in range(3):
        module.append_event(make_entry(i))
    behind = module.meta_path.read_bytes()
    module.append_event(make_entry(3))
    module.meta_path.write_bytes(behind)
    line = EventStore(module.store.root, fsync=False).module("dar", "pos").append_event(make_entry(4))
    assert line["sequence"] == 5
    assert [e["sequence"] for e in log_events(module.log_path)] == [1, 2, 3, 4, 5]


@pytest.mark.parametrize("meta_patch", [{"totalEvents": 2}, {"totalEvents": None}], ids=["too-low", "missing"])
def test_a_meta_whose_total_events_lags_its_last_event_id_gets_a_fresh_sequence(seeded, meta_patch):
    meta = {k: v for k, v in {**seeded.meta, **meta_patch}.items() if v is not None or k != "totalEvents"}
    seeded.write_meta(meta_bytes(meta))
    assert "meta_drift" in codes(seeded.module.check())
    line = seeded.module.append_event(make_entry(9))
    sequences = [e["sequence"] for e in log_events(seeded.module.log_path)]
    assert line["sequence"] == 7 and len(set(sequences)) == len(sequences)


def test_the_same_module_object_sees_a_meta_changed_by_someone_else(module):
    module.append_event(make_entry(0))
    other = EventStore(module.store.root, fsync=False).module("dar", "pos")
    other.update_meta({"lastAckId": "evt-from-other"})
    module.append_event(make_entry(1))
    assert json.loads(module.meta_path.read_bytes())["lastAckId"] == "evt-from-other"


# -- rotation and purge ---------------------------------------------------------------------


def test_rotate_moves_the_log_with_the_node_name_and_restarts_the_meta(seeded):
    meta = seeded.meta
    moved = seeded.module.rotate(today="2025-10-28")
    stamp = meta["lastEventAt"].replace(":", "-").replace(".", "-")
    assert moved == seeded.module.history_dir / f"{meta['currentDay']}-{stamp}.log"
    assert moved.read_bytes() == b"".join(line_bytes(ln) for ln in seeded.lines)
    assert not seeded.module.log_path.exists()
    new = json.loads(seeded.module.meta_path.read_bytes())
    assert new["totalEvents"] == 0 and new["lastEventId"] is None
    assert new["currentDay"] == "2025-10-28" and new["lastClosedDate"] == meta["currentDay"]
    # As Node's rotateEventLog: the acknowledged event is in history now, and the live log
    # starts over (so does its liveCreatedAt); the client cursors stay.
    assert new["lastAckId"] is None and meta["lastAckId"] is not None
    assert new["liveCreatedAt"] != meta["liveCreatedAt"] and new["lastServedTableIds"] == meta["lastServedTableIds"]
    assert seeded.module.check().findings == []
    assert seeded.module.append_event(make_entry(1))["sequence"] == 1


def test_rotate_on_the_same_day_does_nothing(seeded):
    before = seeded.module.meta_path.read_bytes()
    assert seeded.module.rotate(today=seeded.meta["currentDay"]) is None
    assert seeded.module.meta_path.read_bytes() == before


def test_rotate_never_overwrites_a_history_file(seeded):
    name = layout.rotated_log_name(seeded.meta["currentDay"], seeded.meta["lastEventAt"])
    seeded.module.history_dir.mkdir(parents=True)
    (seeded.module.history_dir / name).write_bytes(b"older history")
    moved = seeded.module.rotate(today="2025-10-28")
    assert moved.name == name[: -len(".log")] + "-1.log"
    assert (seeded.module.history_dir / name).read_bytes() == b"older history"


def test_a_rotation_stopped_after_the_move_is_not_drift_and_the_next_write_finishes_it(seeded, monkeypatch):
    meta = seeded.meta

    def crash(self, new_meta):
        raise OSError(5, "simulated crash after the log moved to history")

    monkeypatch.setattr(type(seeded.module), "_write_meta", crash)
    with pytest.raises(OSError):
        seeded.module.rotate(today="2025-10-28")
    monkeypatch.undo()
    assert not seeded.module.log_path.exists()
    assert json.loads(seeded.module.meta_path.read_bytes())["totalEvents"] == meta["totalEvents"] > 0
    # The log sits in history under the meta's day and last event: the next rotation finds no
    # log and restarts the meta, so nothing is wrong in between.
    assert seeded.module.check().findings == []
    assert seeded.module.rotate(today="2025-10-28") is None  # nothing left to move
    new = json.loads(seeded.module.meta_path.read_bytes())
    assert (new["totalEvents"], new["currentDay"], new["lastClosedDate"]) == (0, "2025-10-28", meta["currentDay"])
    assert seeded.module.check().findings == []
    assert seeded.module.append_event(make_entry(1))["sequence"] == 1
    assert len(os.listdir(seeded.module.history_dir)) == 1  # the day was filed once


def test_an_append_after_a_stopped_rotation_keeps_sequences_unique(seeded, monkeypatch):
    monkeypatch.setattr(type(seeded.module), "_write_meta", lambda self, m: (_ for _ in ()).throw(OSError(5, "crash")))
    with pytest.raises(OSError):
        seeded.module.rotate(today="2025-10-28")
    monkeypatch.undo()
    total = seeded.meta["totalEvents"]
    assert seeded.module.append_event(make_entry(1))["sequence"] == total + 1  # after the meta's count: never reused
    assert seeded.module.check().findings == []


@pytest.mark.parametrize("history", ["none", "another-last-event", "another-day"])
def test_a_missing_log_the_meta_still_counts_is_drift_unless_a_rotation_filed_it(seeded, history):
    meta = seeded.meta
    seeded.module.history_dir.mkdir(parents=True)
    data = seeded.module.log_path.read_bytes()
    os.unlink(seeded.module.log_path)
    if history == "another-last-event":
        name = layout.rotated_log_name(meta["currentDay"], meta["lastEventAt"])
        (seeded.module.history_dir / name).write_bytes(data.rsplit(b"\n", 2)[0] + b"\n")  # ends one event early
    elif history == "another-day":
        (seeded.module.history_dir / layout.rotated_log_name("2025-01-01", meta["lastEventAt"])).write_bytes(data)
    [drift] = seeded.module.check().findings
    assert drift.code == "meta_drift" and drift.detail["meta_total_events"] == meta["totalEvents"]


def test_after_a_purge_appends_start_again_and_keep_the_cursors(seeded):
    os.unlink(seeded.module.log_path)
    seeded.write_meta(meta_bytes({**seeded.meta, "totalEvents": 0, "lastEventId": None, "purgeState": {"at": "x"}}))
    assert seeded.module.check().findings == []
    line = seeded.module.append_event(make_entry(1, "order_line"))
    meta = json.loads(seeded.module.meta_path.read_bytes())
    assert line["sequence"] == 1
    assert meta["tableCursors"]["pos_shift"] == seeded.meta["tableCursors"]["pos_shift"]
    assert meta["purgeState"] == {"at": "x"}


# -- discovery and bad input ---------------------------------------------------------------


def test_modules_finds_every_live_folder_with_store_files(store, root):
    seed(store, 2, branch="dar", module="pos")
    seed(store, 2, branch="dar", module="kds", meta=False)
    only_backup = root / "zahra" / "modules" / "jobs" / "live"
    only_backup.mkdir(parents=True)
    (only_backup / "events.meta.json.corrupted.1.bak").write_bytes(b"{")
    (root / "zahra" / "modules" / "empty" / "live").mkdir(parents=True)
    (root / ".hidden" / "modules" / "pos" / "live").mkdir(parents=True)
    (root / ".hidden" / "modules" / "pos" / "live" / "events.log").write_bytes(b"")
    assert [(m.branch, m.name) for m in store.modules()] == [("dar", "kds"), ("dar", "pos"), ("zahra", "jobs")]


@pytest.mark.parametrize(
    ("branch", "name"), [("..", "pos"), ("dar", "../../etc"), ("a/b", "pos"), ("dar", ""), ("dar", ".x")]
)
def test_module_refuses_unsafe_names(store, branch, name):
    with pytest.raises(InvalidName):
        store.module(branch, name)


def test_store_refuses_a_bad_root(tmp_path):
    with pytest.raises(RootError):
        EventStore(tmp_path / "missing")
    (tmp_path / "file").write_bytes(b"")
    with pytest.raises(RootError):
        EventStore(tmp_path / "file")


def test_writes_leave_no_temp_files_and_keep_node_files(seeded):
    (seeded.live / "data.json").write_bytes(b'{"node": true}')
    (seeded.live / "events.rejected.log").write_bytes(b'{"rejected": 1}\n')
    seeded.module.append_event(make_entry(9))
    seeded.module.update_meta({"lastAckId": "x"})
    seeded.module.rebuild()
    seeded.module.rotate(today="2030-01-01")
    assert temp_files(seeded.live) == []
    assert (seeded.live / "data.json").read_bytes() == b'{"node": true}'
    assert (seeded.live / "events.rejected.log").read_bytes() == b'{"rejected": 1}\n'


def test_a_replaced_meta_keeps_its_mode(seeded):
    seeded.module.meta_path.chmod(0o660)
    seeded.module.append_event(make_entry(9))
    assert seeded.module.meta_path.stat().st_mode & 0o777 == 0o660
