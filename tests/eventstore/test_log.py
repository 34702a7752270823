"""log: the streaming reader, the facts derived from a log, and cursor derivation."""

from __future__ import annotations

import os

import orjson
import pytest

from eventstore import log as logmod
from tests.eventstore.conftest import line_bytes, make_entry, make_line, make_lines, node_meta


def write(path, lines, *, sep=b"\n"):
    path.write_bytes(b"".join(line_bytes(ln).replace(b"\n", sep) for ln in lines))


# -- cursor derivation, in the real line shape ---------------------------------------------


def test_cursor_comes_from_record_ref_first():
    line = make_line(7, make_entry(7, "order_header", key="ord-P001-1"))
    line["record"]["id"] = "something-else"
    assert logmod.cursor_for(line) == {
        "key": "ord-P001-1",
        "id": "ord-P001-1",
        "eventId": line["id"],
        "sequence": 7,
        "updatedAt": line["recordedAt"],
    }


def test_cursor_falls_back_to_the_record():
    line = make_line(3, make_entry(3, "order_line"))
    del line["meta"]["recordRef"]
    line["record"]["uuid"] = "9b2f"
    cursor = logmod.cursor_for(line)
    assert cursor["id"] == line["record"]["id"] and cursor["uuid"] == "9b2f"
    assert "key" not in cursor and "uid" not in cursor


def test_cursor_record_ref_without_any_key_falls_back_to_the_record():
    line = make_line(3, make_entry(3, "pos_shift"))
    line["meta"]["recordRef"] = {"table": "pos_shift", "primaryKey": {"id": "x"}}
    assert logmod.cursor_for(line)["id"] == line["record"]["id"]


def test_cursor_falls_back_to_primary_key_then_primary():
    line = make_line(4, make_entry(4, "order_line"))
    line["meta"] = {}
    line["record"] = {"primaryKey": {"uid": 77}, "primary": {"id": "never"}}
    assert logmod.cursor_for(line) == {
        "uid": "77",
        "eventId": line["id"],
        "sequence": 4,
        "updatedAt": line["recordedAt"],
    }
    line["record"] = {"primary": {"key": "k-1"}}
    assert logmod.cursor_for(line)["key"] == "k-1"


@pytest.mark.parametrize(
    ("value", "text"), [(42, "42"), (42.0, "42"), (1.5, "1.5"), (True, "true"), ("ord-1", "ord-1")]
)
def test_cursor_keys_are_strings_like_node(value, text):
    line = make_line(1)
    line["meta"]["recordRef"] = {"key": value}
    assert logmod.cursor_for(line)["key"] == text


def test_cursor_keeps_only_the_keys_present():
    line = make_line(1)
    line["meta"]["recordRef"] = {"id": "a", "key": None}
    assert set(logmod.cursor_for(line)) == {"id", "eventId", "sequence", "updatedAt"}


def test_an_event_without_any_key_leaves_no_cursor():
    # Node's resolveLineCursor returns null: the table keeps its previous cursor.
    line = make_line(5)
    line["meta"] = None
    line["record"] = "not an object"
    assert logmod.cursor_for(line) is None and not logmod.leaves_cursor(line)
    line["meta"], line["record"] = (
        {"recordRef": {"table": "t", "key": None}},
        {"primaryKey": {"note": "x"}, "primary": []},
    )
    assert logmod.cursor_for(line) is None and not logmod.leaves_cursor(line)
    line["record"]["primary"] = {"uuid": 0}
    assert logmod.cursor_for(line)["uuid"] == "0" and logmod.leaves_cursor(line)


@pytest.mark.parametrize("chunk", [40, 100, 1 << 20])
def test_a_table_keeps_the_cursor_of_its_last_event_with_a_key(tmp_path, monkeypatch, chunk):
    monkeypatch.setattr(logmod, "CHUNK", chunk)
    lines = [
        {"id": "e1", "sequence": 1, "table": "t1", "record": {"id": "r1"}, "recordedAt": "a"},
        {"id": "e2", "sequence": 2, "table": "t1", "record": {"note": "no key"}},
        {"id": "e3", "sequence": 3, "table": "t2", "record": {}},
        {"id": "e4", "sequence": 4, "table": "t1", "meta": {"recordRef": {}}, "record": None},
        {"id": "e5", "sequence": 5, "table": "t3", "record": {"primary": {"uid": 9}}, "recordedAt": "b"},
        {"id": "e6", "sequence": 6, "table": "t3", "record": {"x": 1}},
    ]
    path = tmp_path / "events.log"
    path.write_bytes(
        b"".join(orjson.dumps(ln) + b"\n" for ln in lines[:-1]) + orjson.dumps(lines[-1])
    )  # the last one torn
    want = {
        "t1": {"id": "r1", "eventId": "e1", "sequence": 1, "updatedAt": "a"},
        "t3": {"uid": "9", "eventId": "e5", "sequence": 5, "updatedAt": "b"},
    }
    assert logmod.summarize(path).table_cursors == want
    assert logmod.summarize(path, workers=3).table_cursors == want


def test_event_time_is_created_at_else_recorded_at():
    line = make_line(1)
    assert logmod.event_time(line) == line["createdAt"]
    line["createdAt"] = None
    assert logmod.event_time(line) == line["recordedAt"]


# -- the reader -------------------------------------------------------------------------------


def test_iter_raw_lines_skips_blank_lines_and_strips_crlf(tmp_path):
    path = tmp_path / "events.log"
    path.write_bytes(b'{"a":1}\r\n\r\n   \n{"a":2}\n\n{"a":3}')
    lines = list(logmod.iter_raw_lines(path))
    assert [(r.lineno, r.offset, r.data, r.complete) for r in lines] == [
        (1, 0, b'{"a":1}', True),
        (4, 15, b'{"a":2}', True),
        (6, 24, b'{"a":3}', False),
    ]


def test_iter_raw_lines_across_chunk_boundaries(tmp_path, monkeypatch):
    monkeypatch.setattr(logmod, "CHUNK", 100)
    path = tmp_path / "events.log"
    lines = make_lines(5)
    write(path, lines)
    got = [logmod.parse_event(r.data)[0] for r in logmod.iter_raw_lines(path)]
    assert got == lines


def test_iter_raw_lines_refuses_a_symlink(tmp_path):
    (tmp_path / "real").write_bytes(b"{}\n")
    (tmp_path / "events.log").symlink_to(tmp_path / "real")
    with pytest.raises(OSError):
        list(logmod.iter_raw_lines(tmp_path / "events.log"))


@pytest.mark.parametrize(
    ("data", "ok"), [(b'{"id":1}', True), (b"[1]", False), (b'{"id":', False), (b"\xff", False), (b"null", False)]
)
def test_parse_event_wants_a_json_object(data, ok):
    event, reason = logmod.parse_event(data)
    assert (event is not None) == ok and (reason is None) == ok


# -- summarize ------------------------------------------------------------------------------


def test_summarize_gives_what_node_would_keep_in_the_meta(tmp_path):
    lines = make_lines(9)
    write(tmp_path / "events.log", lines)
    s = logmod.summarize(tmp_path / "events.log")
    expected = node_meta(lines)
    assert s.events == 9 and s.expected_total == 9
    assert s.last_event_id == expected["lastEventId"] and s.last_event_at == expected["lastEventAt"]
    assert s.table_cursors == expected["tableCursors"]
    assert (s.duplicate_count, s.gap_count, s.bad_line_count, s.torn_tail) == (0, 0, 0, None)


def test_summarize_last_event_per_table_wins(tmp_path):
    lines = [
        make_line(i, make_entry(i, t))
        for i, t in enumerate(["order_header", "order_line", "order_header", "pos_shift", "order_line"], 1)
    ]
    write(tmp_path / "events.log", lines)
    cursors = logmod.summarize(tmp_path / "events.log").table_cursors
    assert {t: c["sequence"] for t, c in cursors.items()} == {"order_header": 3, "pos_shift": 4, "order_line": 5}


def test_summarize_crlf_and_blank_lines_are_not_damage(tmp_path):
    lines = make_lines(4)
    data = b"\r\n".join(line_bytes(ln).rstrip(b"\n") for ln in lines) + b"\r\n\r\n\n"
    (tmp_path / "events.log").write_bytes(b"\n" + data)
    s = logmod.summarize(tmp_path / "events.log")
    assert s.events == 4 and s.bad_line_count == 0 and s.torn_tail is None
    assert s.last_event_id == lines[-1]["id"]


def test_summarize_reports_bad_lines_with_line_numbers_and_offsets(tmp_path):
    lines = make_lines(4)
    parts = [line_bytes(ln) for ln in lines]
    parts.insert(2, b'{"id":"evt-broken","seq\n')
    parts.insert(4, b"[1,2,3]\n")
    (tmp_path / "events.log").write_bytes(b"".join(parts))
    s = logmod.summarize(tmp_path / "events.log")
    # [1,2,3] is JSON Node counts as an event (readEventLog keeps every truthy value): so do we
    assert s.bad_line_count == 2 and s.events == 5 and s.not_object_count == 1
    assert [b["line"] for b in s.bad_lines] == [3, 5]
    assert s.bad_lines[0]["offset"] == len(parts[0]) + len(parts[1])
    assert "not an object" in s.bad_lines[1]["error"]


def test_summarize_finds_duplicates_and_gaps(tmp_path):
    lines = [make_line(s) for s in (1, 2, 2, 3, 6, 7, 7, 7, 10)]
    write(tmp_path / "events.log", lines)
    s = logmod.summarize(tmp_path / "events.log")
    assert s.duplicate_count == 3 and s.duplicates == [2, 7, 7]
    assert s.gap_count == 4 and s.gaps == [[4, 5], [8, 9]]
    assert s.expected_total == 10  # max(9 events, sequence 10)


def test_summarize_expected_total_follows_the_count_when_sequences_repeat(tmp_path):
    write(tmp_path / "events.log", [make_line(1) for _ in range(5)])
    s = logmod.summarize(tmp_path / "events.log")
    assert s.max_sequence == 1 and s.expected_total == 5


def test_summarize_torn_tail_with_its_byte_offset(tmp_path):
    lines = make_lines(3)
    good = b"".join(line_bytes(ln) for ln in lines)
    torn = line_bytes(make_line(4))[:300]
    (tmp_path / "events.log").write_bytes(good + torn)
    s = logmod.summarize(tmp_path / "events.log")
    assert s.torn_tail == {"offset": len(good), "length": 300, "line": 4, "parses": False}
    assert s.events == 3 and s.bad_line_count == 0


def test_summarize_a_complete_event_without_its_newline_counts(tmp_path):
    lines = make_lines(3)
    data = b"".join(line_bytes(ln) for ln in lines).rstrip(b"\n")
    (tmp_path / "events.log").write_bytes(data)
    s = logmod.summarize(tmp_path / "events.log")
    assert s.events == 3 and s.torn_tail["parses"] is True
    assert s.last_event_id == lines[-1]["id"]


def test_summarize_in_parallel_equals_one_pass(tmp_path):
    lines = make_lines(1900)  # > 2 MiB: two workers get a range each
    lines[700]["sequence"] = 5  # a duplicate in the second half of the file...
    lines[1500]["sequence"] = 1_000  # ... and a sequence out of place
    parts = [line_bytes(ln) for ln in lines]
    parts.insert(1200, b"not json\n")
    (tmp_path / "events.log").write_bytes(b"".join(parts) + b'{"torn')
    one = logmod.summarize(tmp_path / "events.log", workers=1)
    two = logmod.summarize(tmp_path / "events.log", workers=2)
    for field in (
        "events",
        "bad_line_count",
        "bad_lines",
        "duplicate_count",
        "duplicates",
        "gap_count",
        "gaps",
        "max_sequence",
        "last_event_id",
        "table_cursors",
        "torn_tail",
        "expected_total",
    ):
        assert getattr(two, field) == getattr(one, field), field


def test_read_tail_finds_the_fragment_and_the_last_line(tmp_path):
    lines = make_lines(3)
    good = b"".join(line_bytes(ln) for ln in lines)
    (tmp_path / "events.log").write_bytes(good + b'{"id":"evt-to')
    tail = logmod.read_tail(tmp_path / "events.log", window=100)
    assert tail.fragment == b'{"id":"evt-to' and tail.fragment_offset == len(good)
    assert logmod.parse_event(tail.last_line)[0] == lines[-1]


@pytest.mark.parametrize("data", [b"", b"\n\n", b"frag-only"])
def test_read_tail_of_logs_without_a_complete_line(tmp_path, data):
    (tmp_path / "events.log").write_bytes(data)
    tail = logmod.read_tail(tmp_path / "events.log")
    assert tail.last_line is None and tail.size == len(data)
    assert tail.fragment == data.strip(b"\n")


def test_tail_lines_gives_the_last_complete_lines(tmp_path):
    lines = make_lines(5)
    data = b"".join(line_bytes(ln) for ln in lines)
    (tmp_path / "events.log").write_bytes(data + b"{torn")
    got, whole = logmod.tail_lines(tmp_path / "events.log")
    assert whole and [logmod.parse_event(g)[0]["id"] for g in got] == [ln["id"] for ln in lines]
    got, whole = logmod.tail_lines(tmp_path / "events.log", max_bytes=len(line_bytes(lines[-1])) * 2 + 10)
    assert not whole and [logmod.parse_event(g)[0]["id"] for g in got] == [ln["id"] for ln in lines[-2:]]


def test_a_complete_last_event_without_newline_counts_in_the_sequence_checks(tmp_path):
    path = tmp_path / "events.log"
    lines = [orjson.dumps({"id": f"evt-{i}", "sequence": i, "table": "t"}) for i in (1, 2, 3)]
    path.write_bytes(b"\n".join(lines) + b"\n" + orjson.dumps({"id": "evt-x", "sequence": 2, "table": "t"}))
    summary = logmod.summarize(path)
    assert summary.events == 4 and summary.torn_tail["parses"]
    assert summary.duplicate_count == 1 and summary.duplicates == [2]


def test_read_tail_grows_its_window_geometrically_over_a_long_unterminated_line(tmp_path, monkeypatch):
    """A log ending in a long line without a newline (a crash's run of bytes) is read in a few
    doubling steps, not 64 KiB at a time (each step re-copied everything read so far: a 60 MiB
    tail took 20 s)."""
    from eventstore import log as logmod

    path = tmp_path / "events.log"
    path.write_bytes(b'{"id":"a","sequence":1}\n' + b"x" * (8 << 20))
    calls = []
    real = os.pread
    monkeypatch.setattr(logmod.os, "pread", lambda fd, n, off: calls.append(n) or real(fd, n, off))
    tail = logmod.read_tail(path)
    assert tail.last_line == b'{"id":"a","sequence":1}' and len(tail.fragment) == 8 << 20
    assert len(calls) <= 10 and sum(calls) == path.stat().st_size


# -- a line as Node reads it: UTF-8 text, trim(), JSON.parse ---------------------------------


def test_js_whitespace_is_what_javascript_trim_strips():
    import unicodedata

    zs = {chr(c) for c in range(0x110000) if unicodedata.category(chr(c)) == "Zs"}
    assert set(logmod.JS_WHITESPACE) == zs | set("\t\x0b\x0c\ufeff\n\r\u2028\u2029")


@pytest.mark.parametrize(
    "pad", ["\x0b", "\x0c", "\xa0", "\ufeff", "\u2028", "\u2029", "\u3000", "\u1680", "\u202f", "\x0b\xa0 \ufeff"]
)
def test_a_line_wrapped_in_what_trim_strips_is_an_event_and_a_line_of_it_is_blank(tmp_path, pad):
    lines = make_lines(3)
    p = pad.encode()
    data = (
        p + line_bytes(lines[0]) + line_bytes(lines[1])[:-1] + p + b"\n" + p + b"\n" + p + line_bytes(lines[2])[:-1] + p
    )
    path = tmp_path / "events.log"
    path.write_bytes(data)
    s = logmod.summarize(path)
    assert (s.events, s.bad_line_count, s.lines, s.max_sequence) == (3, 0, 3, 3), s.bad_lines
    assert s.torn_tail["parses"] is True and s.last_event_id == lines[2]["id"]
    assert [logmod.parse_event(r.data)[0]["id"] for r in logmod.iter_raw_lines(path)] == [ln["id"] for ln in lines]
    assert logmod.is_blank(p) and logmod.is_blank(p + b" \r\t" + p)


@pytest.mark.parametrize("pad", ["\x1c", "\x85", "\u200b", "\u180e"])
def test_what_trim_keeps_makes_a_bad_line(tmp_path, pad):
    line = line_bytes(make_lines(1)[0])
    (tmp_path / "events.log").write_bytes(pad.encode() + line)
    s = logmod.summarize(tmp_path / "events.log")
    assert (s.events, s.bad_line_count) == (0, 1)
    assert not logmod.is_blank(pad.encode())


def test_what_json_parse_takes_and_orjson_refuses_is_an_event(tmp_path):
    # A lone surrogate escape, a number beyond a double (Infinity), invalid UTF-8 inside a string
    # (Node reads U+FFFD), an integer of 5,000 digits: JSON.parse takes them all.
    lines = [
        b'{"id":"evt-\\ud800","sequence":1,"table":"t"}',
        b'{"id":"evt-2","sequence":2,"amount":1e400}',
        b'{"id":"evt-\xff3","sequence":3}',
        b'{"id":"evt-4","sequence":4,"n":' + b"9" * 5000 + b"}",
        b'{"id":"evt-5","sequence":5,"n":123456789012345678901234567890}',
    ]
    for raw in lines[:4]:
        with pytest.raises(orjson.JSONDecodeError):
            orjson.loads(raw)
    assert orjson.loads(lines[4])["n"] == 1.2345678901234568e29  # and the fallback agrees with orjson on this one
    (tmp_path / "events.log").write_bytes(b"\n".join(lines) + b"\n")
    s = logmod.summarize(tmp_path / "events.log")
    assert (s.events, s.bad_line_count, s.max_sequence, s.gap_count) == (5, 0, 5, 0)
    events = [logmod.parse_event(raw)[0] for raw in lines]
    assert events[0]["id"] == "evt-\ud800" and events[1]["amount"] == float("inf") and events[2]["id"] == "evt-\ufffd3"
    assert events[3]["n"] == float("inf") and events[4]["n"] == 1.2345678901234568e29  # a double, as in JavaScript


@pytest.mark.parametrize("data", [b'{"a":NaN}', b'{"a":Infinity}', b"{'a':1}", b'{"a":"\x01"}', b'{"a":1,}'])
def test_what_json_parse_refuses_stays_a_bad_line(data):
    event, reason = logmod.parse_event(data)
    assert event is None and reason


# -- lines longer than MAX_LINE_BYTES: one bad line (or torn tail) whose bytes are skipped ---------


@pytest.mark.parametrize("chunk", [7, 50, 64])  # reads much shorter than the limit, as 1 MiB is to 16 MiB
def test_an_overlong_line_is_one_bad_line_and_an_overlong_tail_a_torn_one(tmp_path, monkeypatch, chunk):
    monkeypatch.setattr(logmod, "CHUNK", chunk)
    monkeypatch.setattr(logmod, "MAX_LINE_BYTES", 200)
    monkeypatch.setattr(logmod, "LONG_LINE_KEPT", 20)
    first, third = orjson.dumps({"id": "a", "sequence": 1}), orjson.dumps({"id": "c", "sequence": 2})
    data = first + b"\n" + b"x" * 500 + b"\n" + third + b"\r\n\n" + b"y" * 300
    path = tmp_path / "events.log"
    path.write_bytes(data)
    s = logmod.summarize(path)
    assert (s.events, s.lines, s.lines_seen, s.bad_line_count, s.max_sequence, s.last_event_id) == (2, 4, 5, 1, 2, "c")
    assert s.bad_lines == [
        {
            "line": 2,
            "offset": len(first) + 1,
            "error": "line is longer than 200 bytes (500 bytes); not read",
            "preview": "x" * 20,
        }
    ]
    assert s.torn_tail == {"offset": len(data) - 300, "length": 300, "line": 5, "parses": False}
    raw = [(r.lineno, r.offset, r.data, r.complete) for r in logmod.iter_raw_lines(path)]
    assert raw == [
        (1, 0, first, True),
        (2, len(first) + 1, b"x" * 20, True),
        (3, len(first) + 502, third, True),
        (5, len(data) - 300, b"y" * 20, False),
    ]
