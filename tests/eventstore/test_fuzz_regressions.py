"""Inputs the fuzzers of test_fuzz.py found that made an exception escape, kept as plain tests."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from eventstore import EventStore, serverlog
from eventstore import log as logmod

P = serverlog.TAG + " "


def test_a_server_log_time_out_of_range_in_utc_is_no_time():
    # year 1 at +05:00 and year 9999 at -05:00 lie outside what datetime holds once in UTC
    for stamp in ("0001-01-01T00:00:00+05:00", "9999-12-31T23:59:59-05:00"):
        [rec] = serverlog.parse([f"{stamp} {P}CORRUPTED FILE DETECTED - Attempting recovery"])
        assert rec.at is None and rec.outcome == "incomplete"


def test_a_server_log_read_as_text_with_surrogateescape_is_parsed_like_bytes():
    raw = b"Oct 27 12:23:47 pos1 node[1]: " + P.encode() + b"CORRUPTED FILE DETECTED \xff\n" + P.encode() + b"File size: 7 bytes\xfe\n"
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
@given(st.recursive(st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=3),
                    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=2), inner, max_size=2)))
def test_a_cursor_key_is_stringified_as_before(value):
    assert logmod._as_js_string(value) == _js_string_recursive(value)


def test_a_record_id_nested_1000_deep_does_not_make_the_log_reader_or_check_raise(tmp_path):
    deep = b"[" * 1000 + b'"k"' + b"]" * 1000
    line = b'{"id":"evt-1","sequence":1,"table":"order_line","record":{"id":' + deep + b'}}\n'
    module = EventStore(tmp_path, fsync=False).module("dar", "pos")
    module.live_dir.mkdir(parents=True)
    module.log_path.write_bytes(line)
    summary = logmod.summarize(module.log_path)
    assert summary.events == 1 and summary.table_cursors["order_line"]["id"] == "k"
    assert module.check().status == "warning"  # meta_missing only
