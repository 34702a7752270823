"""check(): every finding code of DESIGN.md with its detail, and the states that are not damage."""

from __future__ import annotations

import json
import os
import shutil
import time
from pathlib import Path

import pytest

from eventstore import CODES, EventStore, log
from tests.eventstore.conftest import (
    SAMPLE_LIVE,
    codes,
    finding,
    line_bytes,
    make_line,
    meta_bytes,
    node_meta,
    seed,
)


def snapshot(folder):
    """Every file under ``folder`` with its bytes and mtime: check() must leave it as is."""
    out = {}
    for dirpath, _dirs, files in os.walk(folder):
        for name in files:
            path = os.path.join(dirpath, name)
            st = os.lstat(path)
            out[path] = (st.st_mtime_ns, os.readlink(path) if os.path.islink(path) else Path(path).read_bytes())
    return out


def test_node_written_module_is_healthy(seeded):
    health = seeded.module.check()
    assert health.status == "healthy" and health.findings == []
    assert health.stats.log_events == 6 and health.stats.meta_total_events == 6


@pytest.mark.skipif(not SAMPLE_LIVE.is_dir(), reason="the production sample is not on this machine")
def test_the_production_sample_is_healthy(tmp_path):
    live = tmp_path / "dar" / "modules" / "pos" / "live"
    shutil.copytree(SAMPLE_LIVE, live)
    for p in live.iterdir():
        p.chmod(0o644)
    health = EventStore(tmp_path).module("dar", "pos").check()
    assert health.status == "healthy", [f.to_dict() for f in health.findings]
    assert health.stats.log_events == 48


def test_every_finding_code_has_a_test():
    tested = {
        "meta_corrupt",
        "meta_invalid",
        "meta_missing",
        "meta_drift",
        "log_torn_tail",
        "log_bad_line",
        "log_sequence_duplicate",
        "log_sequence_gap",
        "log_changed_in_place",  # tests/eventstore/test_checkpoints.py
        "temp_orphan",
        "backup_present",
        "unreadable",
    }
    assert set(CODES) == tested


# -- meta_corrupt -------------------------------------------------------------------------


def test_meta_corrupt_syntax_error_with_position_line_and_col(seeded):
    data = meta_bytes(seeded.meta)
    at = data.index(b'"lastAckId"')
    seeded.write_meta(data[:at] + b":" + data[at:])
    f = finding(seeded.module.check(), "meta_corrupt")
    assert f.severity == "critical"
    assert f.detail["byte"] == at and f.detail["pos"] == at
    assert (f.detail["line"], f.detail["col"]) == (data[:at].count(b"\n") + 1, 3)
    assert f.detail["size"] == len(data) + 1
    assert "error_message" in f.detail


def test_meta_corrupt_trailing_garbage_gives_where_it_starts(seeded):
    data = meta_bytes(seeded.meta)
    seeded.write_meta(data + b"\n}\n}")
    f = finding(seeded.module.check(), "meta_corrupt")
    assert f.detail["byte"] == len(data) + 1
    assert f.detail["line"] == data.count(b"\n") + 2 and f.detail["col"] == 1


@pytest.mark.parametrize(
    ("mangle", "words"),
    [
        (lambda d: b"", "empty"),
        (lambda d: b"\x00" * len(d), "NUL"),
        (lambda d: d[:100] + b"\x00\x00" + d[102:], "NUL"),
        (lambda d: d[:50] + b"\xc3\x28" + d[52:], "UTF-8"),
        (lambda d: b"\xef\xbb\xbf" + d, "byte order mark"),
        (lambda d: d[: len(d) // 2], ""),
    ],
    ids=["empty", "all-nul", "nul-inside", "bad-utf8", "bom", "cut-short"],
)
def test_meta_corrupt_kinds(seeded, mangle, words):
    seeded.write_meta(mangle(meta_bytes(seeded.meta)))
    health = seeded.module.check()
    f = finding(health, "meta_corrupt")
    assert words in f.message
    assert {"pos", "line", "col", "byte"} <= set(f.detail)
    assert health.status == "critical"
    assert "meta_drift" not in codes(health)


# -- meta_invalid --------------------------------------------------------------------------


def test_meta_invalid_total_events_not_a_number_is_critical(seeded):
    seeded.write_meta(meta_bytes({**seeded.meta, "totalEvents": "abc"}))
    health = seeded.module.check()
    f = finding(health, "meta_invalid")
    assert f.severity == "critical" and f.detail["key"] == "totalEvents" and f.detail["value"] == "abc"
    assert health.status == "critical"


def test_meta_invalid_json_array_is_critical(seeded):
    seeded.write_meta(b"[1, 2, 3]")
    f = finding(seeded.module.check(), "meta_invalid")
    assert f.severity == "critical" and "array" in f.message


def test_meta_invalid_table_cursors_null_is_only_a_warning(seeded):
    seeded.write_meta(meta_bytes({**seeded.meta, "tableCursors": None}))
    health = seeded.module.check()
    f = finding(health, "meta_invalid")
    assert f.severity == "warning" and f.detail["key"] == "tableCursors"
    assert health.status == "warning"


# -- meta_missing / meta_drift ------------------------------------------------------------


def test_meta_missing_when_the_log_has_events(store):
    s = seed(store, 4, meta=False)
    health = s.module.check()
    f = finding(health, "meta_missing")
    assert f.severity == "warning" and f.detail["log_events"] == 4
    assert health.status == "warning"


def test_no_meta_and_no_log_is_not_missing(store):
    store.module("dar", "pos").live_dir.mkdir(parents=True)
    assert store.module("dar", "pos").check().findings == []


def test_meta_drift_on_total_events(seeded):
    seeded.write_meta(meta_bytes({**seeded.meta, "totalEvents": 4}))
    f = finding(seeded.module.check(), "meta_drift")
    assert f.severity == "warning"
    assert f.detail["meta_total_events"] == 4 and f.detail["expected_total_events"] == 6


def test_meta_drift_on_last_event_id(seeded):
    seeded.write_meta(meta_bytes({**seeded.meta, "lastEventId": "evt-other"}))
    f = finding(seeded.module.check(), "meta_drift")
    assert f.detail["meta_last_event_id"] == "evt-other"
    assert f.detail["log_last_event_id"] == seeded.lines[-1]["id"]


def test_meta_drift_when_the_meta_counts_events_of_a_missing_log(seeded):
    os.unlink(seeded.module.log_path)
    f = finding(seeded.module.check(), "meta_drift")
    assert f.detail["meta_total_events"] == 6 and f.detail["expected_total_events"] == 0


# -- log findings --------------------------------------------------------------------------


def test_log_torn_tail_with_byte_offset(seeded):
    size = seeded.module.log_path.stat().st_size
    with open(seeded.module.log_path, "ab") as fh:
        fh.write(line_bytes(make_line(7))[:500])
    health = seeded.module.check()
    f = finding(health, "log_torn_tail")
    assert f.severity == "warning"
    assert f.detail == {"offset": size, "length": 500, "line": 7, "parses": False}
    assert health.status == "warning"


def test_log_bad_line_with_line_numbers(seeded):
    data = seeded.module.log_path.read_bytes().split(b"\n")
    data[1] = data[1][:200]
    data[4] = b"\x00" * 30
    seeded.write_log(b"\n".join(data))
    health = seeded.module.check()
    f = finding(health, "log_bad_line")
    assert f.severity == "critical" and f.detail["count"] == 2
    assert [b["line"] for b in f.detail["lines"]] == [2, 5]
    assert health.status == "critical"


def test_log_sequence_duplicate_and_gap(store):
    s = seed(store, 0)
    lines = [make_line(n) for n in (1, 2, 3, 3, 6)]
    s.write_log(b"".join(line_bytes(ln) for ln in lines))
    s.write_meta(meta_bytes(node_meta(lines, totalEvents=6)))
    health = s.module.check()
    assert codes(health) == ["log_sequence_duplicate", "log_sequence_gap"]
    dup = finding(health, "log_sequence_duplicate")
    assert dup.detail["sequences"] == [3] and dup.detail["count"] == 1
    gap = finding(health, "log_sequence_gap")
    assert gap.detail["gaps"] == [[4, 5]] and gap.detail["count"] == 2


# -- files around the log and meta --------------------------------------------------------


def test_temp_orphan_only_past_the_grace_period(seeded):
    now = time.time()
    old_ms = int((now - 3600) * 1000)
    old = seeded.live / f"events.meta.json.tmp.{old_ms}.k3x9"
    old.write_bytes(b"{")
    os.utime(old, (now - 3600, now - 3600))
    young = seeded.live / f"events.meta.json.tmp.{int(now * 1000)}.a1"
    young.write_bytes(b"{")
    health = seeded.module.check(now=now)
    f = finding(health, "temp_orphan")
    assert f.severity == "info" and f.detail["files"] == [old.name]
    assert health.status == "healthy"
    assert health.stats.temp_files == 2


def test_temp_with_an_old_name_but_a_fresh_mtime_is_not_an_orphan(seeded):
    now = time.time()
    (seeded.live / f"events.meta.json.tmp.{int((now - 3600) * 1000)}.zz").write_bytes(b"{")
    assert "temp_orphan" not in codes(seeded.module.check(now=now))


def test_backup_present_lists_the_files(seeded):
    names = ["events.meta.json.corrupted.1761567827665.bak", "events.log.torn.1761567827999.bak"]
    for n in names:
        (seeded.live / n).write_bytes(b"{")
    health = seeded.module.check()
    f = finding(health, "backup_present")
    assert f.severity == "info" and sorted(f.detail["files"]) == sorted(names)
    assert health.status == "healthy"


# -- unreadable ----------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["events.meta.json", "events.log"])
def test_a_symlinked_store_file_is_unreadable_and_not_followed(seeded, tmp_path, name):
    secret = tmp_path / "secret"
    secret.write_bytes(b"not json at all\n")
    os.unlink(seeded.live / name)
    (seeded.live / name).symlink_to(secret)
    health = seeded.module.check()
    unread = finding(health, "unreadable")
    assert unread.detail["file"] == name and "symlink" in unread.message
    assert "meta_corrupt" not in codes(health) and "log_bad_line" not in codes(health)
    assert health.status == "critical"


def test_a_live_folder_symlinked_outside_the_root_is_unreadable(root, tmp_path):
    outside = tmp_path / "elsewhere"
    seed(EventStore(root), 3)  # a real module, then moved out of the root and linked back in
    shutil.move(root / "dar" / "modules" / "pos" / "live", outside)
    (root / "dar" / "modules" / "pos" / "live").symlink_to(outside)
    before = snapshot(outside)
    health = EventStore(root).module("dar", "pos").check()
    assert codes(health) == ["unreadable"] and "outside the data root" in health.findings[0].message
    assert snapshot(outside) == before


def test_a_meta_without_read_permission_is_unreadable(seeded):
    seeded.module.meta_path.chmod(0)
    try:
        if os.access(seeded.module.meta_path, os.R_OK):
            pytest.skip("running as root: permissions do not stop reads")
        f = finding(seeded.module.check(), "unreadable")
        assert f.detail["file"] == "events.meta.json"
    finally:
        seeded.module.meta_path.chmod(0o644)


# -- states that are not damage ------------------------------------------------------------


def test_after_a_purge_is_healthy(seeded):
    os.unlink(seeded.module.log_path)
    seeded.write_meta(
        meta_bytes({**seeded.meta, "totalEvents": 0, "lastEventId": None, "purgeState": {"at": "2025-10-27"}})
    )
    health = seeded.module.check()
    assert health.findings == [], [f.to_dict() for f in health.findings]


def test_crlf_and_blank_lines_are_healthy(seeded):
    data = seeded.module.log_path.read_bytes().replace(b"\n", b"\r\n\n  \n")
    seeded.write_log(b"\n\n" + data)
    assert seeded.module.check().findings == []


def test_a_log_with_a_bom_and_unicode_spaces_around_lines_is_read_as_node_reads_it(seeded):
    # Node trims each line with String.prototype.trim(): a BOM, NBSP, VT, FF, U+2028... around a
    # line, or a line of nothing else, is not damage; the events count, in check and rebuild.
    lines = seeded.module.log_path.read_bytes().splitlines(keepends=True)
    padded = [b"\xef\xbb\xbf" + lines[0]] + [b"\x0b\xc2\xa0" + ln[:-1] + b"\xe2\x80\xa8\x0c\n" for ln in lines[1:]]
    seeded.write_log(b"".join(padded[:2]) + b"\xe3\x80\x80\n" + b"".join(padded[2:]))
    assert seeded.module.check().findings == []
    report = seeded.module.rebuild()
    assert report.events_read == len(lines) and report.bad_line_count == 0
    assert seeded.module.load_meta()["totalEvents"] == len(lines) == seeded.meta["totalEvents"]
    seeded.module.append_event({"table": "order_header", "record": {"id": "o-next"}})
    assert [e["sequence"] for e in seeded.module.read_events()][-2:] == [len(lines), len(lines) + 1]
    assert codes(seeded.module.check()) == ["backup_present"]  # the rebuild's backup of the old meta


def test_unknown_meta_keys_are_healthy(seeded):
    seeded.write_meta(meta_bytes({**seeded.meta, "purgeState": {"lastPurgeAt": "x"}, "extra": [1, 2]}))
    assert seeded.module.check().findings == []


# -- read-only, incremental ----------------------------------------------------------------


def test_check_changes_no_file_even_on_a_damaged_module(seeded):
    seeded.write_meta(meta_bytes(seeded.meta) + b"}}")
    with open(seeded.module.log_path, "ab") as fh:
        fh.write(b'{"torn')
    (seeded.live / "events.meta.json.tmp.1.a").write_bytes(b"{")
    before = snapshot(seeded.live.parent.parent)
    seeded.module.check()
    assert snapshot(seeded.live.parent.parent) == before


def test_incremental_check_equals_a_full_check(seeded, module):
    first = seeded.module.check()
    module.append_event({"table": "order_line", "record": {"id": "ln-1"}})
    with open(module.log_path, "ab") as fh:
        fh.write(b"not json\n")
    later = time.time() + 10  # past the racy window
    again = module.check(now=later, previous=first.state)
    full = module.check(now=later)
    assert again.to_dict()["findings"] == full.to_dict()["findings"]
    assert again.stats == full.stats
    assert again.bytes_read < full.bytes_read


# -- lines that are JSON but not an event object (issue 13, item 4) --------------------------


def test_json_lines_that_are_not_objects_count_as_node_counts_them_and_are_a_bad_line_warning(store):
    """Node's readEventLog keeps every parsed line that is truthy (``.filter(Boolean)``): it
    counts ``[1,2]``, ``"x"``, ``42``, ``true`` and ``[]`` as events, and skips ``0``, ``""``,
    ``false`` and ``null``. The check counts them the same (the rebuild's totalEvents is Node's),
    and reports each as a bad line: a warning, as Node reads past them and loses nothing."""
    s = seed(store, 3)
    junk = [b"[1,2]", b'"x"', b"42", b"true", b"[]", b"0", b'""', b"false", b"null"]
    s.write_log(s.module.log_path.read_bytes() + b"\n".join(junk) + b"\n")
    h = s.module.check()
    f = finding(h, "log_bad_line")
    assert f.severity == "warning" and f.detail["count"] == len(junk)
    assert {b["error"] for b in f.detail["lines"]} == {log.NOT_OBJECT}
    counted = [b["preview"] for b in f.detail["lines"] if log.js_truthy(json.loads(b["preview"]))]
    assert counted == ["[1,2]", '"x"', "42", "true", "[]"]
    assert h.stats.log_events == 3 + 5 and h.stats.log_last_event_id is None  # the last one counted is "[]"
    assert s.module.rebuild().new_meta["totalEvents"] == 8
    s.write_log(s.module.log_path.read_bytes() + b"{not json\n")  # a line Node cannot parse: critical again
    assert finding(s.module.check(), "log_bad_line").severity == "critical"
