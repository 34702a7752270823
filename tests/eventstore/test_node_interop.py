"""Interoperability with the real Node.js event store of Mishkah OS, in both directions.

Real files, real ``node`` processes running the unmodified ``src/eventStore.js`` of
``../shared/fixtures/mishkah-os/node`` (see ``node_store.py``): what one side writes, the other
reads without a recovery, continues without repeating a sequence, and judges healthy. Skipped
when node/npm is missing, except under ``CI``, where that is a failure: CI must prove interop.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, NoReturn

import pytest

from eventstore import EventStore, layout, serverlog
from eventstore import log as logmod
from eventstore import meta as metamod
from tests.eventstore.conftest import BRANCH, MODULE, REPO, log_events, make_entry
from tests.eventstore.node_store import NodeFailed, NodeRun, NodeStore, NodeUnavailable, prepare

SAMPLE_ROOT = REPO.parent / "shared" / "fixtures" / "mishkah-os" / "branches"
OLD_BUILD = "eventStore.before-fix.js"
DAMAGE = "\n}\n}"  # the production bug: a whole document followed by the tail of a longer one
PAST_DAY = "2025-10-27"


def _unavailable(reason: str) -> NoReturn:
    if os.environ.get("CI"):
        pytest.fail(f"CI must prove interop with the Node store, but: {reason}")
    pytest.skip(f"the Node store of Mishkah OS is not available: {reason}")


@pytest.fixture(scope="session")
def node() -> NodeStore:
    """The fixed build, copied and installed once per session (a no-op when already installed)."""
    try:
        return NodeStore(prepare())
    except NodeUnavailable as exc:
        _unavailable(str(exc))


def run(node: NodeStore, module, *calls: tuple[Any, ...]) -> NodeRun:
    """Node's calls, in order, on ``module``'s live folder."""
    return node.run(module.live_dir, *calls, branch=module.branch, module=module.name)


def backups(live: Path) -> list[str]:
    return sorted(n for n in os.listdir(live) if layout.META_BACKUP_RE.match(n))


def sequences(module) -> list[int]:
    return [e["sequence"] for e in module.read_events()]


def meta_of(module) -> dict[str, Any]:
    return json.loads(module.meta_path.read_bytes())


def assert_healthy(health) -> None:
    assert health.status == "healthy" and all(f.severity == "info" for f in health.findings), [
        f.to_dict() for f in health.findings
    ]


def python_appends(module, n: int, *, seed: int = 0) -> list[dict[str, Any]]:
    lines = [module.append_event(make_entry(i, seed=seed)) for i in range(n)]
    module.update_meta({"lastAckId": lines[-1]["id"]})
    return lines


def node_appends(node: NodeStore, module, n: int, *, seed: int = 1) -> NodeRun:
    """Node as the server runs it: appendEvent then updateEventMeta (client sync state), n times, in order."""
    calls: list[tuple[Any, ...]] = []
    for i in range(n):
        calls += [("appendEvent", make_entry(i, seed=seed)), ("updateEventMeta", {"lastClientSyncAt": f"sync-{i}"})]
    return run(node, module, *calls)


def derived_of(meta: dict[str, Any]) -> dict[str, Any]:
    return {k: meta[k] for k in ("totalEvents", "lastEventId", "lastEventAt", "tableCursors")}


def snapshot(folder: Path) -> dict[str, tuple[str, int]]:
    """Every file under ``folder``: sha256 and mtime (to prove a read-only pass wrote nothing)."""
    return {
        str(p.relative_to(folder)): (
            hashlib.sha256(p.read_bytes()).hexdigest() if p.is_file() else "dir",
            p.stat().st_mtime_ns,
        )
        for p in sorted(folder.rglob("*"))
    }


# -- Python writes, Node continues --------------------------------------------------------------


@pytest.mark.parametrize("build", ["eventStore.js", OLD_BUILD])
def test_node_continues_the_sequence_python_started(node, module, build):
    n, m = 5, 4
    ours = python_appends(module, n)
    ack = ours[-1]["id"]
    node_build = NodeStore(node.folder, build)
    calls: list[tuple[Any, ...]] = [("loadEventMeta",)]
    for i in range(m):
        calls += [
            ("appendEvent", make_entry(i, seed=1)),
            ("updateEventMeta", {"lastServedTableIds": {"order_header": f"ord-{i}"}}),
        ]
    result = run(node_build, module, *calls)

    loaded = result.results[0]
    assert (loaded["totalEvents"], loaded["lastEventId"], loaded["lastAckId"]) == (n, ours[-1]["id"], ack)
    assert [r["sequence"] for r in result.results[1::2]] == list(range(n + 1, n + m + 1))
    assert not result.recovered and backups(module.live_dir) == [], result.stderr
    assert sequences(module) == list(range(1, n + m + 1))  # no repeat, no gap

    health = module.check()
    assert_healthy(health)
    assert health.stats.meta_total_events == health.stats.log_events == n + m
    meta = module.load_meta()
    assert meta["lastAckId"] == ack  # Node's appends and mergeDeep kept our client state
    assert meta["lastServedTableIds"] == {"order_header": f"ord-{m - 1}"}
    assert module.append_event(make_entry(99))["sequence"] == n + m + 1


def test_node_rewrites_our_meta_changing_only_updated_at(node, module):
    """Our meta is byte for byte what JSON.stringify(meta, null, 2) writes: key order, 2-space
    indent, UTF-8 text, unknown keys; Node's read-merge-write of it changes only updatedAt."""
    python_appends(module, 3)
    module.update_meta(
        {"lastClientTableIds": {"pos_shift": "وردية-١"}, "purgeState": {"purgedAt": None, "tables": ["order_line"]}}
    )
    ours = module.meta_path.read_text()
    result = run(node, module, ("updateEventMeta", {}))
    theirs = module.meta_path.read_text()
    assert not result.recovered
    stamp = re.compile(r'\n  "updatedAt": "[^"]*",\n')
    assert stamp.sub("\n", ours, count=1) == stamp.sub("\n", theirs, count=1)
    assert ours != theirs  # updatedAt did change: Node really wrote the file


# -- Node writes, Python continues --------------------------------------------------------------


def test_python_reads_what_node_wrote_and_continues(node, module):
    m = 6
    result = node_appends(node, module, m)
    assert not result.recovered
    node_meta = meta_of(module)
    assert node_meta["totalEvents"] == m

    assert_healthy(module.check())
    summary = logmod.summarize(module.log_path)
    assert (summary.events, summary.expected_total, summary.bad_line_count) == (m, m, 0)
    assert summary.last_event_id == node_meta["lastEventId"]
    assert summary.last_event_at == node_meta["lastEventAt"]
    assert summary.table_cursors == node_meta["tableCursors"]  # key for key, values included
    # Our serialiser writes exactly the bytes Node wrote for the same meta.
    assert metamod.dumps(node_meta) == module.meta_path.read_bytes()

    line = module.append_event(make_entry(0, seed=2))
    assert line["sequence"] == m + 1
    assert module.load_meta()["lastClientSyncAt"] == f"sync-{m - 1}"  # Node's client state kept
    again = run(node, module, ("appendEvent", make_entry(1, seed=2)))
    assert not again.recovered and again.results[0]["sequence"] == m + 2
    assert sequences(module) == list(range(1, m + 3))
    assert_healthy(module.check())


def test_table_cursors_agree_when_an_event_has_no_key(node, module, tmp_path):
    """Node gives an event a cursor only when its record yields a key; an event without one keeps
    its table's previous cursor (or leaves none). So do the scan, the rebuild, the roll-forward
    and append_event."""
    keyless = [
        {"table": "order_line", "record": {"note": "no key"}},
        {"table": "kitchen_note", "record": {"text": "no key"}},
    ]
    run(node, module, ("appendEvent", make_entry(0, "order_line", seed=1)), *(("appendEvent", e) for e in keyless))
    node_cursors = meta_of(module)["tableCursors"]
    assert set(node_cursors) == {"order_line"} and node_cursors["order_line"]["sequence"] == 1
    assert logmod.summarize(module.log_path).table_cursors == node_cursors
    assert module.rebuild().new_meta["tableCursors"] == node_cursors

    (tmp_path / "ours").mkdir()
    ours = EventStore(tmp_path / "ours", fsync=False).module(BRANCH, MODULE)
    ours.append_event(make_entry(0, "order_line", seed=1))
    cursors = ours.load_meta()["tableCursors"]
    for entry in keyless:
        ours.append_event(entry)
    assert ours.load_meta()["tableCursors"] == cursors  # append_event
    line = {
        **logmod.parse_event(ours.log_path.read_bytes().splitlines()[-1])[0],
        "id": "evt-after-a-crash",
        "sequence": 4,
    }
    with open(ours.log_path, "ab") as f:  # appended, then a crash before the meta write
        f.write(json.dumps(line).encode() + b"\n")
    rolled = ours.load_meta()
    assert (rolled["totalEvents"], rolled["tableCursors"]) == (4, cursors)  # the roll-forward


def _same_entry_both_ways(node, store, tmp_path, entry) -> tuple[dict[str, Any], dict[str, Any]]:
    """The line we append for ``entry`` and the line Node appends for it (in a second root)."""
    ours = store.module(BRANCH, MODULE).append_event(entry)
    (tmp_path / "theirs").mkdir()
    theirs_live = EventStore(tmp_path / "theirs", fsync=False).module(BRANCH, MODULE).live_dir
    return ours, node.call(theirs_live, "appendEvent", entry, branch=BRANCH, module=MODULE)


def test_python_line_has_node_line_shape(node, store, tmp_path):
    """For a client's entry, our line has Node's keys in Node's order and the same content (ids
    and times aside; Node re-stamps the own branch's publishState, so its status is compared)."""
    ours, theirs = _same_entry_both_ways(node, store, tmp_path, make_entry(3, "order_header", seed=4))
    assert list(ours) == list(theirs)
    same = ("sequence", "action", "branchId", "moduleId", "table", "record", "meta")
    assert {k: ours[k] for k in same} == {k: theirs[k] for k in same}
    assert {b: s["status"] for b, s in ours["publishState"].items()} == {
        b: s["status"] for b, s in theirs["publishState"].items()
    }


ODD_ENTRIES = [
    {"table": "order_header"},
    {
        "table": "order_header",
        "record": {},
        "meta": [],
        "publishState": {BRANCH: "pending", "zamalek": {"attempts": 2, "publishedAt": "p"}},
    },
    {
        "table": "",
        "record": 0,
        "meta": None,
        "publishState": {BRANCH: {"status": "failed", "attempts": 3, "publishedAt": "p"}, "": "x", "maadi": 7},
    },
    {
        "table": "t",
        "record": "",
        "action": "",
        "publishState": ["published", {"status": 5, "attempts": "1", "updatedAt": ""}],
    },
    {"table": "t", "record": [], "publishState": {BRANCH: {"status": "", "attempts": 1.5}, "maadi": []}},
    {"table": "t", "record": False, "publishState": "published"},
]


@pytest.mark.parametrize("entry", ODD_ENTRIES)
def test_python_line_defaults_are_node_defaults(node, store, tmp_path, entry):
    """Node's appendEvent defaults (a value falsy in JavaScript takes the default; record null)
    and its normalizePublishState (every entry normalised, the own branch re-stamped)."""
    ours, theirs = _same_entry_both_ways(node, store, tmp_path, entry)
    at = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z")
    keys = ("action", "table", "record", "meta", "publishState")
    ours_shape, theirs_shape = (json.loads(at.sub("T", json.dumps({k: x[k] for k in keys}))) for x in (ours, theirs))
    assert ours_shape == theirs_shape
    assert list(ours["publishState"]) == list(theirs["publishState"])
    assert ours["publishState"][BRANCH]["updatedAt"] == ours["recordedAt"]


# -- recoveries, each side's read by the other ----------------------------------------------------


def test_python_sees_nodes_recovery_as_a_past_backup(node, module):
    n = 5
    python_appends(module, n)
    with open(module.meta_path, "a") as f:
        f.write(DAMAGE)
    damaged = module.meta_path.read_bytes()

    result = run(node, module, ("loadEventMeta",))
    assert result.recovered
    [name] = backups(module.live_dir)
    ms = int(layout.META_BACKUP_RE.match(name).group(1))
    [info] = module.backups()
    assert (info.name, info.kind, info.size, info.parses) == (name, "meta", len(damaged), False)
    assert info.created_at == datetime.fromtimestamp(ms / 1000, tz=UTC)
    assert info.sha256 == hashlib.sha256(damaged).hexdigest()  # Node backed up the damaged bytes as they were

    health = module.check()
    assert [(f.code, f.severity) for f in health.findings] == [("backup_present", "info")]
    assert health.findings[0].detail["files"] == [name]
    assert health.stats.meta_total_events == n

    # Our parser of the Node server's log understands the recovery it printed.
    [rec] = serverlog.parse(result.stderr.splitlines())
    assert (rec.outcome, rec.backup, rec.events, rec.branch, rec.module) == ("recovered", name, n, BRANCH, MODULE)
    assert rec.size == len(damaged) and rec.path == str(module.meta_path)


def test_node_reads_python_rebuild_without_recovery(node, module):
    n = 5
    ours = python_appends(module, n)
    with open(module.meta_path, "a") as f:
        f.write(DAMAGE)
    report = module.rebuild()
    assert report.sources["lastAckId"] == "prefix"
    before = backups(module.live_dir)
    assert before == [report.backup]

    result = run(node, module, ("loadEventMeta",), ("appendEvent", make_entry(0, seed=1)))
    assert not result.recovered and backups(module.live_dir) == before, result.stderr
    assert result.results[0]["lastAckId"] == ours[-1]["id"]  # salvaged by us, kept by Node
    assert result.results[1]["sequence"] == n + 1
    assert sequences(module) == list(range(1, n + 2))
    assert_healthy(module.check())


def test_after_python_rebuild_of_a_log_with_a_bad_line_node_repeats_no_sequence(node, module, tmp_path):
    """Node's own recovery counts only the lines it parses and repeats a sequence; after our
    rebuild (totalEvents = max(count, highest sequence)) Node's next sequence is new."""
    n = 5
    python_appends(module, n)
    lines = module.log_path.read_bytes().split(b"\n")
    lines[1] = lines[1][:40]  # a complete line that is not JSON any more (sequence 2)
    module.log_path.write_bytes(b"\n".join(lines))
    with open(module.meta_path, "a") as f:
        f.write(DAMAGE)

    theirs = EventStore(shutil.copytree(module.store.root, tmp_path / "copy"), fsync=False).module(BRANCH, MODULE)
    node_own = run(node, theirs, ("appendEvent", make_entry(0, seed=1)))
    assert node_own.recovered and node_own.results[0]["sequence"] == n  # Node alone: sequence 5 twice
    assert "Failed to parse event log line" in node_own.stdout

    report = module.rebuild()
    assert (report.bad_line_count, report.new_meta["totalEvents"]) == (1, n)
    result = run(node, module, ("appendEvent", make_entry(0, seed=1)))
    assert not result.recovered and result.results[0]["sequence"] == n + 1
    seqs = [e["sequence"] for e in module.read_events()]
    assert len(seqs) == len(set(seqs)) == n


def test_old_build_fails_on_damage_until_python_rebuilds(node, module):
    """The build before the fix prints "JSON parse error" and throws on every call; our server-log
    parser reports that failed recovery, and our rebuild makes that build work again."""
    old = NodeStore(node.folder, OLD_BUILD)
    python_appends(module, 3)
    with open(module.meta_path, "a") as f:
        f.write(DAMAGE)
    with pytest.raises(NodeFailed) as failed:
        run(old, module, ("appendEvent", make_entry(0, seed=1)))
    [rec] = serverlog.parse(failed.value.stderr.splitlines())
    assert (rec.old_build, rec.outcome, rec.path) == (True, "failed", str(module.meta_path))
    assert sequences(module) == [1, 2, 3]  # it threw before appending

    module.rebuild()
    result = run(old, module, ("appendEvent", make_entry(0, seed=1)))
    assert result.results[0]["sequence"] == 4 and "JSON parse error" not in result.stderr


# -- daily rotation, both ways --------------------------------------------------------------------


def _rotated_pair(node, module, tmp_path) -> tuple[dict[str, Any], Path | None, dict[str, Any], Any]:
    """The same module (a past day's events) rotated by Node (a copy) and by us: (meta before,
    our history file, our meta after, Node's rotateEventLog result)."""
    python_appends(module, 4)
    module.update_meta({"currentDay": PAST_DAY})  # the day is over
    before = meta_of(module)
    theirs = EventStore(shutil.copytree(module.store.root, tmp_path / "copy"), fsync=False).module(BRANCH, MODULE)
    node_result = node.call(theirs.live_dir, "rotateEventLog", branch=BRANCH, module=MODULE)
    assert node_result["rotated"] is True
    moved = module.rotate(today=node_result["meta"]["currentDay"])  # Node's today, also across midnight
    return before, moved, meta_of(module), node_result


def test_python_rotation_files_the_day_as_node_does_and_node_continues(node, module, tmp_path):
    before, moved, after, node_result = _rotated_pair(node, module, tmp_path)
    node_archive = Path(node_result["archivePath"])
    stamp = re.sub(r"[:.]", "-", before["lastEventAt"])  # Node's .replace(/[:.]/g, '-')
    assert moved is not None and moved.name == node_archive.name == f"{PAST_DAY}-{stamp}.log"
    assert moved.parent == module.history_dir and node_archive.parent.name == "events"
    assert moved.read_bytes() == node_archive.read_bytes()
    ignore = ("updatedAt", "liveCreatedAt")  # the time of each rotation (see the next test)
    assert {k: v for k, v in after.items() if k not in ignore} == {
        k: v for k, v in node_result["meta"].items() if k not in ignore
    }
    assert (after["totalEvents"], after["lastClosedDate"]) == (0, PAST_DAY)

    result = run(node, module, ("loadEventMeta",), ("appendEvent", make_entry(0, seed=1)), ("rotateEventLog",))
    assert not result.recovered and backups(module.live_dir) == []
    assert result.results[1]["sequence"] == 1  # Node accepts the restarted meta
    assert result.results[2]["rotated"] is False  # and takes our currentDay for today
    assert_healthy(module.check())
    assert module.append_event(make_entry(5))["sequence"] == 2


def test_python_rotation_restarts_the_meta_as_node_does(node, module, tmp_path):
    before, _, after, node_result = _rotated_pair(node, module, tmp_path)
    assert node_result["meta"]["lastAckId"] is None and node_result["meta"]["liveCreatedAt"] != before["liveCreatedAt"]
    assert after["lastAckId"] is None
    assert after["liveCreatedAt"] != before["liveCreatedAt"]


def test_python_accepts_nodes_rotation_and_continues(node, module):
    m = 4
    node_appends(node, module, m)
    run(node, module, ("updateEventMeta", {"currentDay": PAST_DAY}))
    before = meta_of(module)
    result = run(node, module, ("rotateEventLog",))
    rotated = result.results[0]
    assert rotated["rotated"] is True and not module.log_path.exists()
    archive = Path(rotated["archivePath"])
    assert archive.parent == module.history_dir
    assert archive.name == layout.rotated_log_name(PAST_DAY, before["lastEventAt"])

    health = module.check()
    assert health.findings == [], [f.to_dict() for f in health.findings]  # a rotated log with meta at 0 is no damage
    assert health.stats.meta_total_events == 0 and meta_of(module)["tableCursors"] == before["tableCursors"]
    assert module.append_event(make_entry(0, seed=3))["sequence"] == 1
    again = run(node, module, ("appendEvent", make_entry(1, seed=3)))
    assert not again.recovered and again.results[0]["sequence"] == 2
    assert_healthy(module.check())
    assert [e["sequence"] for e in log_events(archive)] == list(range(1, m + 1))


# -- the production sample ----------------------------------------------------------------------


@pytest.fixture
def sample_root() -> Path:
    if not SAMPLE_ROOT.is_dir():
        _unavailable(f"the production sample is missing: {SAMPLE_ROOT}")
    return SAMPLE_ROOT


def test_python_and_node_count_the_same_events_in_the_production_sample(node, sample_root):
    before = snapshot(sample_root)
    modules = list(EventStore(sample_root).modules())
    assert modules
    for module in modules:
        health = module.check()
        events = node.call(module.live_dir, "readEventLog", branch=module.branch, module=module.name)
        assert health.stats.log_events == len(events) > 0
        assert health.stats.log_bad_lines == 0
        assert [e["id"] for e in module.read_events()] == [e["id"] for e in events]
        meta = meta_of(module)  # written by the Node server in production
        summary = logmod.summarize(module.log_path)
        assert (summary.events, summary.last_event_id, summary.last_event_at) == (
            meta["totalEvents"],
            meta["lastEventId"],
            meta["lastEventAt"],
        )
        assert summary.table_cursors == meta["tableCursors"]
    assert snapshot(sample_root) == before  # read-only: nothing written, created or touched


def test_node_recovery_and_python_rebuild_derive_the_same_meta_from_the_sample(node, sample_root, tmp_path):
    ours_root = shutil.copytree(sample_root, tmp_path / "ours")
    theirs_root = shutil.copytree(sample_root, tmp_path / "theirs")
    for root in (ours_root, theirs_root):
        for meta in root.glob("*/modules/*/live/events.meta.json"):
            meta.chmod(0o644)
            meta.parent.chmod(0o755)
            with open(meta, "a") as f:
                f.write(DAMAGE)
    ours_store, theirs_store = EventStore(ours_root, fsync=False), EventStore(theirs_root, fsync=False)
    for ours in ours_store.modules():
        theirs = theirs_store.module(ours.branch, ours.name)
        original = meta_of(EventStore(sample_root).module(ours.branch, ours.name))
        recovered = run(node, theirs, ("loadEventMeta",))
        assert recovered.recovered
        report = ours.rebuild()
        assert derived_of(report.new_meta) == derived_of(recovered.results[0]) == derived_of(original)
        assert report.new_meta["lastAckId"] == original["lastAckId"]  # salvaged (Node resets it to null)
        nxt = run(node, ours, ("appendEvent", make_entry(0, seed=5)))
        assert not nxt.recovered and nxt.results[0]["sequence"] == original["totalEvents"] + 1


def test_nodes_rotation_and_appends_are_no_change_in_place(node, module):
    """Node renames the log away and appends to a new file: its checkpoints are dropped, the new
    file's are made (issue 13; the rest in test_checkpoints.py)."""
    node_appends(node, module, 4)
    later = time.time() + 10
    h = module.check(now=later)
    run(node, module, ("updateEventMeta", {"currentDay": PAST_DAY}))
    run(node, module, ("rotateEventLog",), ("appendEvent", make_entry(1, seed=2)))
    h = module.check(now=later, previous=json.loads(json.dumps(h.state)))
    assert_healthy(h)
    node_appends(node, module, 3, seed=4)
    h = module.check(now=later, previous=h.state)
    assert_healthy(h)
    assert_healthy(module.check(now=later, previous=h.state, full=True))


def test_node_counts_json_lines_that_are_not_objects_as_python_does(node, module):
    """Node's recovery (a damaged meta, rebuilt from readEventLog) counts the truthy JSON values
    that are not objects as events: Python's check and rebuild count the same."""
    node_appends(node, module, 3)
    with open(module.log_path, "ab") as f:
        f.write(b'[1,2]\n"x"\n42\n0\nnull\n""\nfalse\n')
    module.meta_path.write_bytes(b'{"totalEvents": 3,')  # damaged: Node rebuilds it from the log
    ours = module.check().stats.log_events
    result = run(node, module, ("loadEventMeta",))
    assert result.recovered and result.results[0]["totalEvents"] == ours == 3 + 3
