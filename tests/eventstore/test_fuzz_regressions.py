"""Inputs the fuzzers of test_fuzz.py found that made an exception escape, kept as plain tests."""

from __future__ import annotations

from eventstore import serverlog

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
