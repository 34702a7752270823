"""Inputs the fuzzers of test_fuzz.py found that made an exception escape, kept as plain tests."""

from __future__ import annotations

import json
import time

import orjson
from hypothesis import given, settings
from hypothesis import strategies as st

from eventstore import EventStore, health, serverlog
from eventstore import log as logmod
from eventstore import meta as metamod

P = serverlog.TAG + " "


def test_a_server_log_time_out_of_range_in_utc_is_no_time():
    # year 1 at +05:00 and year 9999 at -05:00 lie outside what datetime holds once in UTC
    for stamp in ("0001-01-01T00:00:00+05:00", "9999-12-31T23:59:59-05:00"):
        [rec] = serverlog.parse([f"{stamp} {P}CORRUPTED FILE DETECTED - Attempting recovery"])
        assert rec.at is None and rec.outcome == "incomplete"


def test_a_server_log_read_as_text_with_surrogateescape_is_parsed_like_bytes():
    raw = (
        b"Oct 27 12:23:47 pos1 node[1]: "
        + P.encode()
        + b"CORRUPTED FILE DETECTED \xff\n"
        + P.encode()
        + b"File size: 7 bytes\xfe\n"
    )
    lines = raw.decode("utf-8", "surrogateescape").splitlines(keepends=True)
    [rec] = serverlog.parse(lines, year=2025)
    [expected] = serverlog.parse(raw.splitlines(keepends=True), year=2025)
    assert rec.to_dict() == expected.to_dict()
    assert rec.size == 7 and "\ufffd" in rec.lines[0]


def _js_string_recursive(v):
    """The former recursive String(value), as a reference for shallow values."""
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, float) and v.is_integer():
        return str(int(v))
    if isinstance(v, (dict, list)):
        return "[object Object]" if isinstance(v, dict) else ",".join(_js_string_recursive(x) for x in v)
    return str(v)


@settings(max_examples=200, deadline=None)
@given(
    st.recursive(
        st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=3),
        lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=2), inner, max_size=2),
    )
)
def test_a_cursor_key_is_stringified_as_before(value):
    assert logmod._as_js_string(value) == _js_string_recursive(value)


def test_a_record_id_nested_1000_deep_does_not_make_the_log_reader_or_check_raise(tmp_path):
    deep = b"[" * 1000 + b'"k"' + b"]" * 1000
    line = b'{"id":"evt-1","sequence":1,"table":"order_line","record":{"id":' + deep + b"}}\n"
    module = EventStore(tmp_path, fsync=False).module("dar", "pos")
    module.live_dir.mkdir(parents=True)
    module.log_path.write_bytes(line)
    summary = logmod.summarize(module.log_path)
    assert summary.events == 1 and summary.table_cursors["order_line"]["id"] == "k"
    assert module.check().status == "warning"  # meta_missing only


def test_a_meta_with_infinity_and_a_huge_integer_or_a_lone_surrogate_is_written_back():
    # JSON.parse reads 1e400 as Infinity and JSON.stringify writes it as null; orjson refuses
    # the huge integer and the lone surrogate, and the fallback refused the infinity.
    for extra, expected in ((b'"b": 99999999999999999999', 99999999999999999999), (b'"b": "\\ud800"', "\ud800")):
        value, err = metamod.parse(b'{"totalEvents": 3, "lastClientTableIds": {"a": 1e400, ' + extra + b"}}")
        assert err is None
        again, err = metamod.parse(metamod.dumps(metamod.with_defaults(value)))
        assert err is None and again["lastClientTableIds"] == {"a": None, "b": expected}


def test_salvage_never_returns_nan_which_is_not_json():
    assert metamod.salvage_prefix(b'{"a": NaN, "b": 99999999999999999999}xx') is None
    assert metamod.salvage_prefix(b'{\n  "a": 1,\n  "b": NaN,\n  "c": 2\n}xx') == {"a": 1}


DEEP = 600  # json.loads reads it; orjson.dumps stops at 255, deepcopy at ~480 (two frames a level)


def test_a_meta_nested_600_deep_is_loaded_updated_and_rebuilt(tmp_path):
    module = EventStore(tmp_path, fsync=False).module("dar", "pos")
    module.live_dir.mkdir(parents=True)
    deep = b"[" * DEEP + b"1" + b"]" * DEEP
    module.meta_path.write_bytes(b'{"totalEvents": 0, "lastClientTableIds": {"x": ' + deep + b"}}")
    assert module.load_meta()["lastClientTableIds"]["x"] == json.loads(deep)
    assert module.update_meta({"lastAckId": "evt-1"})["lastAckId"] == "evt-1"
    module.meta_path.write_bytes(module.meta_path.read_bytes() + b"}garbage")
    report = module.rebuild()
    assert report.new_meta["lastClientTableIds"]["x"] == json.loads(deep) and report.new_meta["lastAckId"] == "evt-1"
    assert metamod.parse(module.meta_path.read_bytes())[1] is None


def test_a_log_whose_last_event_id_nests_900_deep_rebuilds_a_valid_meta(tmp_path):
    module = EventStore(tmp_path, fsync=False).module("dar", "pos")
    module.live_dir.mkdir(parents=True)
    deep = b"[" * 900 + b'"x"' + b"]" * 900
    module.log_path.write_bytes(b'{"id":' + deep + b',"sequence":1,"table":"t","record":{"id":' + deep + b"}}\n")
    module.rebuild()
    value, err = metamod.parse(module.meta_path.read_bytes())
    assert err is None and value["lastEventId"] == json.loads(deep) and value["tableCursors"]["t"]["id"] == "x"
    assert module.load_meta()["totalEvents"] == 1


def test_copy_json_is_a_deepcopy():
    shared = [1, {"a": [2]}]
    value = {"a": shared, "b": shared, "c": (1, [2]), "d": None}
    value["self"] = value
    out = metamod.copy_json(value)
    assert out["a"] is out["b"] and out["a"] is not shared and out["a"] == shared and out["self"] is out
    assert out["c"] == (1, [2]) and out["c"][1] is not value["c"][1]


def test_a_health_of_odd_values_is_plain_json_for_orjson(tmp_path):
    # orjson (what the dashboard stores findings and stats with) refuses integers beyond 64
    # bits, lone surrogates and nesting deeper than 255: such values become text.
    module = EventStore(tmp_path, fsync=False).module("dar", "pos")
    module.live_dir.mkdir(parents=True)
    module.meta_path.write_bytes(
        b'{"branchId": "\\ud800", "totalEvents": -1000000000000000000000, "lastEventId": 1e400}'
    )
    deep = b"[" * 300 + b"]" * 300
    module.log_path.write_bytes(b'{"id":' + deep + b',"sequence":1,"createdAt":' + deep + b"}\n")
    h = module.check()
    out = orjson.loads(orjson.dumps(h.to_dict()))
    assert out["stats"]["log_last_event_id"] == "[" * 197 + "..." and out["stats"]["log_events"] == 1
    invalid = [f for f in out["findings"] if f["code"] == "meta_invalid"]
    assert {f["value"] for f in invalid if "value" in f} == {"-1000000000000000000000", "\ufffd"}
    assert health.plain("ok") == "ok" and health.plain(10**20) == "100000000000000000000" and health.plain([1]) == [1]


def _gaps_bit_by_bit(sequences: set[int]) -> tuple[int, list[list[int]]]:
    lo, hi = min(sequences), max(sequences)
    count, gaps, s = 0, [], lo
    while s <= hi:
        if s not in sequences:
            first = s
            while s not in sequences:
                s += 1
            count += s - first
            if len(gaps) < logmod.SAMPLE_LIMIT:
                gaps.append([first, s - 1])
        s += 1
    return count, gaps


@settings(max_examples=300, deadline=None)
@given(st.sets(st.integers(1, 3000), min_size=1, max_size=400) | st.sets(st.integers(1, 40), min_size=1))
def test_gaps_are_the_missing_sequences_between_the_lowest_and_the_highest(sequences):
    tracker = logmod.EventTracker()
    for seq in sorted(sequences, key=lambda x: x * 7919 % 3001):
        tracker.add({"sequence": seq})
    s = tracker.into(logmod.LogSummary()).finish()
    assert (s.gap_count, s.gaps) == _gaps_bit_by_bit(sequences)


def test_one_stray_huge_sequence_does_not_make_a_check_slow(tmp_path):
    # A sequence of 2**27 (the highest tracked) once took a bit-by-bit walk of 134 million
    # numbers, a minute and more, on every pass of an incremental check.
    module = EventStore(tmp_path, fsync=False).module("dar", "pos")
    module.live_dir.mkdir(parents=True)
    top = logmod.MAX_TRACKED_SEQUENCE
    module.log_path.write_bytes(b'{"id":"a","sequence":1}\n{"id":"b","sequence":3}\n{"id":"c","sequence":%d}\n' % top)
    started = time.monotonic()
    h = module.check()
    summary = logmod.summarize(module.log_path)
    assert time.monotonic() - started < 5
    assert summary.gap_count == top - 3 and summary.gaps == [[2, 2], [4, top - 1]]
    assert "log_sequence_gap" in {f.code for f in h.findings}


def test_an_incremental_check_after_a_whitespace_only_tail_agrees_with_a_fresh_one(tmp_path):
    # "\x0b" is whitespace to the line splitter (no torn tail) but not to a JSON parser: the
    # appended line is "\x0b{...}", a bad line. Resuming after the "\x0b" missed it.
    module = EventStore(tmp_path, fsync=False).module("dar", "pos")
    module.live_dir.mkdir(parents=True)
    for tail in (b"\x0b", b"  "):
        module.log_path.write_bytes(b'{"id":"a","sequence":1}\n' + tail)
        first = module.check()
        with open(module.log_path, "ab") as f:
            f.write(b'{"id":"b","sequence":2}\nnot json\n')
        again, fresh = module.check(previous=first.state), module.check()
        assert again.to_dict() == fresh.to_dict()


def test_a_finding_message_quoting_a_lone_surrogate_is_plain_json(tmp_path):
    # Found by the mutation fuzzer (seed 3132426674): a meta whose lastEventId holds "\ud800"
    # (valid JSON, Node reads it) drifts from the log; the meta_drift message quoted the id and
    # orjson refused the finding.
    module = EventStore(tmp_path, fsync=False).module("dar", "pos")
    module.append_event({"table": "order_header", "record": {"id": "o1"}})
    meta = json.loads(module.meta_path.read_bytes())
    meta["lastEventId"], meta["totalEvents"] = "evt-\ud80011", 0
    module.meta_path.write_bytes(json.dumps(meta).encode())
    h = module.check()
    [drift] = [f for f in h.findings if f.code == "meta_drift"]
    assert "\ud800" in drift.message  # the finding itself keeps what was read
    out = orjson.loads(orjson.dumps(h.to_dict()))
    [drift] = [f for f in out["findings"] if f["code"] == "meta_drift"]
    assert "evt-\ufffd11" in drift["message"] and drift["meta_last_event_id"] == "evt-\ufffd11"
