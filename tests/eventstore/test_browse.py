"""The event browser's library (eventstore.browse, eventstore.offsets), on real files.

Logs are written by the library's own writer (``Module.append_event``), or as raw bytes for the
damaged ones. The reference every page is compared with is the log read by the checks' reader
(``log.iter_raw_lines`` + ``log.parse_event``), apart from the code under test.
"""

from __future__ import annotations

import json
import os
import random
import tracemalloc
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import orjson
import pytest

from eventstore import EventStore
from eventstore import log as logmod
from eventstore import offsets as offsetsmod
from eventstore.browse import (
    CHUNK,
    TORN,
    EventFilter,
    IndexPoint,
    OffsetIndex,
    browse,
    build_index,
    line_at,
    record_keys,
    seek,
)

SAMPLE_ROOT = Path(__file__).resolve().parents[3] / "shared" / "fixtures" / "mishkah-os" / "branches"
SAMPLE_LOG = SAMPLE_ROOT / "dar" / "modules" / "pos" / "live" / "events.log"
T0 = datetime(2025, 10, 27, 10, 0, 0, tzinfo=UTC)
TABLES = ("order_header", "order_line", "pos_shift")
ACTIONS = ("module:insert", "module:merge", "module:delete")


def iso(t: datetime) -> str:
    return t.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def entry(i: int, rng: random.Random, pad: int = 0) -> dict[str, Any]:
    """An entry shaped like the Node server's (see tests/opsdash/conftest.py), with some spread:
    tables, actions, times one minute apart, keys named four ways."""
    table = TABLES[i % 3]
    key = f"{table[:3]}-{i:05d}"
    record: dict[str, Any] = {"id": key, "total": i * 10, "notes": [f"note {i}"], "customer": f"Client {i % 7}"}
    meta: dict[str, Any] = {"source": "ws-client", "recordRef": {"table": table, "key": key, "id": key}}
    if i % 11 == 5:  # no recordRef: the record's own id names it
        del meta["recordRef"]
    if i % 13 == 6:  # only a primary key
        meta.pop("recordRef", None)
        record = {"primaryKey": {"id": key}, "total": i}
    if pad:
        record["metadata"] = {"note": "x" * pad}
    return {
        "table": table,
        "action": ACTIONS[i % len(ACTIONS)],
        "record": record,
        "meta": meta,
        "createdAt": iso(T0 + timedelta(minutes=i)),
    }


def write_events(tmp_path: Path, n: int, pad: int = 0, seed: int = 3):
    (tmp_path / "branches").mkdir(exist_ok=True)
    module = EventStore(tmp_path / "branches", fsync=False).module("dar", "pos")
    rng = random.Random(seed)
    for i in range(n):
        module.append_event(entry(i, rng, pad))
    return module


def reference(path: Path) -> list[dict[str, Any]]:
    """Every non-blank line as the checks' reader gives it: offset, line number, event or None."""
    out = []
    for raw in logmod.iter_raw_lines(path):
        event, error = logmod.parse_event(raw.data)
        out.append({"offset": raw.offset, "line": raw.lineno, "event": event, "error": error, "complete": raw.complete})
    return out


def all_pages(path: Path, direction: str, **kw) -> tuple[list, list]:
    pages = []
    cursor = None if direction == "older" else 0
    while True:
        page = browse(path, cursor=cursor, direction=direction, **kw)
        pages.append(page)
        cursor = page.older if direction == "older" else page.newer
        if cursor is None:
            return [r for p in pages for r in p.rows], pages
        assert len(pages) < 100_000


class FakeClock:
    def __init__(self, step: float = 1.0):
        self.t, self.step = 0.0, step

    def __call__(self) -> float:
        self.t += self.step
        return self.t


@pytest.fixture(scope="module")
def log300(tmp_path_factory) -> Path:
    return write_events(tmp_path_factory.mktemp("log300"), 300).log_path


@pytest.fixture(scope="module")
def big_log(tmp_path_factory) -> Path:
    """A log of more than 20 MiB, by the writer (about 3 KB a line)."""
    module = write_events(tmp_path_factory.mktemp("big"), 7300, pad=2800)
    assert module.log_path.stat().st_size > 20 << 20
    return module.log_path


# -- paging ----------------------------------------------------------------------------------


@pytest.mark.parametrize("chunk", [4096, 1000, CHUNK])
def test_paging_sees_every_event_once_in_order_both_ways(log300, chunk):
    ref = reference(log300)
    older, pages = all_pages(log300, "older", limit=17, chunk=chunk)
    assert [r.offset for r in older] == [x["offset"] for x in reversed(ref)]
    assert [r.event for r in older] == [x["event"] for x in reversed(ref)]
    assert pages[0].newer is None and pages[-1].older is None
    assert all(len(p.rows) == 17 for p in pages[:-1]) and all(p.complete for p in pages)
    newer, pages = all_pages(log300, "newer", limit=17, chunk=chunk)
    assert [r.offset for r in newer] == [x["offset"] for x in ref]
    assert pages[0].older is None and pages[-1].newer is None
    # without an index, line numbers are known reading from the start, or back to it
    assert [r.line for r in pages[0].rows] == [x["line"] for x in ref[:17]]


def test_older_and_newer_cursors_lead_back_to_the_same_pages(log300):
    first = browse(log300, limit=20)
    second = browse(log300, cursor=first.older, limit=20)
    third = browse(log300, cursor=second.older, limit=20)
    back = browse(log300, cursor=third.newer, direction="newer", limit=20)
    assert [r.offset for r in back.rows] == [r.offset for r in reversed(second.rows)]
    assert back.older == third.newer
    again = browse(log300, cursor=back.newer, direction="newer", limit=20)
    assert [r.offset for r in again.rows] == [r.offset for r in reversed(first.rows)]
    assert again.newer is None
    # an older page asked from a newer one's older cursor is the page before it
    before = browse(log300, cursor=back.older, limit=20)
    assert [r.offset for r in before.rows] == [r.offset for r in third.rows]


def test_row_fields(log300):
    ref = reference(log300)
    row = browse(log300, limit=1).rows[0]
    event = ref[-1]["event"]
    assert row.event == event and row.error is None and not row.torn
    assert (row.sequence, row.id, row.action, row.table) == (300, event["id"], event["action"], event["table"])
    assert row.created_at == event["createdAt"] and row.recorded_at == event["recordedAt"]
    assert row.record_key == logmod.cursor_keys(event)["key"]
    data = log300.read_bytes()
    assert data[row.offset : row.offset + row.length + 1] == orjson.dumps(event) + b"\n"
    assert row.preview == data[row.offset : row.offset + row.length][:4096]


def test_a_cursor_inside_a_line_stands_for_that_line(log300):
    ref = reference(log300)
    inside = ref[10]["offset"] + 7
    page = browse(log300, cursor=inside, direction="newer", limit=2)
    assert [r.offset for r in page.rows] == [ref[10]["offset"], ref[11]["offset"]]
    page = browse(log300, cursor=inside, limit=2)
    assert [r.offset for r in page.rows] == [ref[9]["offset"], ref[8]["offset"]]
    assert browse(log300, cursor=10**12, limit=1).rows[0].sequence == 300
    assert browse(log300, cursor=-5, direction="newer", limit=1).rows[0].sequence == 1
    with pytest.raises(ValueError):
        browse(log300, direction="sideways")
    with pytest.raises(ValueError):
        browse(log300, limit=0)


def _page_bytes(page) -> int:
    return sum(r.length + 1 for r in page.rows)


def test_first_last_and_next_pages_read_about_a_page_and_a_chunk(big_log):
    size = big_log.stat().st_size
    first = browse(big_log)
    assert len(first.rows) == 50 and first.bytes_read <= _page_bytes(first) + CHUNK
    last = browse(big_log, cursor=0, direction="newer")
    assert last.rows[0].sequence == 1 and last.bytes_read <= _page_bytes(last) + CHUNK
    middle = browse(big_log, cursor=size // 2)
    following = browse(big_log, cursor=middle.older)
    previous = browse(big_log, cursor=middle.newer, direction="newer")
    for page in (middle, following, previous):
        assert len(page.rows) == 50 and page.bytes_read <= _page_bytes(page) + CHUNK + 1
        assert page.searched[1] - page.searched[0] <= _page_bytes(page) + CHUNK
    assert following.rows[0].sequence == middle.rows[-1].sequence - 1
    assert previous.rows[-1].sequence == middle.rows[0].sequence + 50


def test_with_an_index_the_line_numbers_cost_at_most_half_a_spacing(big_log):
    index = build_index(big_log, every=1 << 20)
    ref = {x["offset"]: x["line"] for x in reference(big_log)}
    size = big_log.stat().st_size
    for cursor in (None, size // 3, size // 2 + 12345, 1):
        page = browse(big_log, cursor=cursor, index=index)
        assert [r.line for r in page.rows] == [ref[r.offset] for r in page.rows]
        assert page.bytes_read <= _page_bytes(page) + CHUNK + (1 << 19) + 1
        newer = browse(big_log, cursor=page.older, direction="newer", index=index)
        assert [r.line for r in newer.rows] == [ref[r.offset] for r in newer.rows]


def test_memory_stays_flat_over_a_whole_filtered_pass(big_log):
    tracemalloc.start()
    try:
        page = browse(big_log, where=EventFilter(text="no such text anywhere"), budget_seconds=600)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert page.rows == [] and page.complete and page.searched == (0, big_log.stat().st_size)
    assert page.bytes_read == big_log.stat().st_size
    assert peak < 6 * CHUNK, peak


# -- filters ---------------------------------------------------------------------------------


def _expected(ref: list[dict], test) -> list[int]:
    return [x["offset"] for x in reversed(ref) if x["event"] is not None and test(x["event"])]


def _found(path: Path, where: EventFilter, **kw) -> list[int]:
    rows, _ = all_pages(path, "older", where=where, limit=7, chunk=2048, **kw)
    return [r.offset for r in rows]


def _when(e) -> datetime:
    return datetime.fromisoformat(e["createdAt"])


FILTERS = [
    (EventFilter(table="order_line"), lambda e: e["table"] == "order_line"),
    (EventFilter(action="module:merge"), lambda e: e["action"] == "module:merge"),
    (EventFilter(event="__ID__"), None),
    (EventFilter(sequence=42), lambda e: e["sequence"] == 42),
    (EventFilter(sequence=4), lambda e: e["sequence"] == 4),
    (EventFilter(record="ord-00120"), lambda e: "ord-00120" in record_keys(e)),
    (EventFilter(since="2025-10-27T12:00:00Z"), lambda e: _when(e) >= T0 + timedelta(hours=2)),
    (EventFilter(until="2025-10-27T13:00:00+01:00"), lambda e: _when(e) < T0 + timedelta(hours=2)),
    (
        EventFilter(since="2025-10-27T11:00:00.000Z", until="2025-10-27T12:30:00+00:00"),
        lambda e: T0 + timedelta(hours=1) <= _when(e) < T0 + timedelta(hours=2, minutes=30),
    ),
    (EventFilter(text="client 3"), lambda e: e["record"].get("customer") == "Client 3"),
    (
        EventFilter(table="order_header", since="2025-10-27T11:00:00Z", text="NOTE 1"),
        lambda e: e["table"] == "order_header" and _when(e) >= T0 + timedelta(hours=1) and "note 1" in str(e["record"]),
    ),
    (
        EventFilter(action="module:delete", table="pos_shift", record="pos-00002"),
        lambda e: e["action"] == "module:delete" and e["table"] == "pos_shift" and "pos-00002" in record_keys(e),
    ),
]


@pytest.mark.parametrize("where, test", FILTERS, ids=[repr(f) for f, _ in FILTERS])
def test_each_filter_alone_and_combined(log300, where, test):
    ref = reference(log300)
    if where.event == "__ID__":
        target = ref[77]["event"]["id"]
        where, test = EventFilter(event=target), lambda e: e["id"] == target
    expected = _expected(ref, test)
    assert expected, "the filter must match something"
    assert _found(log300, where) == expected
    newer, _ = all_pages(log300, "newer", where=where, limit=5, chunk=3000)
    assert [r.offset for r in newer] == expected[::-1]


def test_record_is_resolved_like_the_table_cursors(tmp_path):
    module = EventStore(tmp_path, fsync=False).module("dar", "pos")
    shapes = [
        {"record": {"id": "rec-own"}, "meta": {"recordRef": {"key": "ref-key"}}},
        {"record": {"id": "rec-only"}},
        {"record": {"primaryKey": {"uuid": "pk-uuid"}}},
        {"record": {"primary": {"uid": 77}}},
        {"record": {"uuid": "rec-uuid"}, "meta": {"recordKey": "meta-key"}},
        {"record": {"id": 1234}},
        {"record": {"name": "nothing"}, "meta": {"recordRef": {"uid": True}}},
    ]
    for i, shape in enumerate(shapes):
        module.append_event({"table": "t", **shape, "createdAt": iso(T0 + timedelta(seconds=i))})
    ref = reference(module.log_path)
    for x in ref:
        keys = logmod.cursor_keys(x["event"])
        for key in keys.values():
            assert x["offset"] in _found(module.log_path, EventFilter(record=key)), key
    by = {k: _found(module.log_path, EventFilter(record=k)) for k in ("rec-own", "ref-key", "pk-uuid", "77")}
    assert by == {k: [ref[i]["offset"]] for k, i in (("rec-own", 0), ("ref-key", 0), ("pk-uuid", 2), ("77", 3))}
    assert _found(module.log_path, EventFilter(record="meta-key")) == [ref[4]["offset"]]
    assert _found(module.log_path, EventFilter(record="rec-uuid")) == [ref[4]["offset"]]
    assert _found(module.log_path, EventFilter(record="1234")) == [ref[5]["offset"]]
    assert _found(module.log_path, EventFilter(record="true")) == [ref[6]["offset"]]
    assert _found(module.log_path, EventFilter(record="nothing")) == []


def test_text_in_chosen_fields_only(tmp_path):
    module = EventStore(tmp_path, fsync=False).module("dar", "pos")
    module.append_event({"table": "orders", "record": {"id": "o-1", "secret": "Hidden Word", "totalDue": 1500}})
    module.append_event({"table": "orders", "record": {"id": "o-2", "memo": "visible word"}, "meta": {"source": "KDS"}})
    module.append_event({"table": "orders", "record": {"id": "o-3", "items": [{"name": "Falafel"}]}})
    ref = reference(module.log_path)
    a, b, c = (x["offset"] for x in ref)
    path = module.log_path

    def found(text, fields):
        return sorted(_found(path, EventFilter(text=text, text_fields=fields)))

    assert found("word", None) == [a, b]
    assert found("word", ("record.memo",)) == [b]
    assert found("hidden", ("record.memo", "meta.source")) == []  # record.secret is not among them
    assert found("hidden", ("record",)) == [a]  # a path covers what is below it
    assert found("kds", ("meta.source",)) == [b] and found("kds", ("record.memo",)) == []
    assert found("1500", ("record.totalDue",)) == [a] and found("1500", ("record.memo",)) == []
    assert found("falafel", ("record.items.0.name",)) == [c] and found("falafel", ("record.items.1.name",)) == []
    assert found("o-2", ()) == [b]  # the envelope: the record key
    assert found("ORDERS", ()) == [a, b, c]  # the envelope: the table
    assert found("secret", None) == [a] and found("secret", ("record.secret",)) == []  # a key is no value


def test_text_matches_what_a_person_sees(tmp_path):
    path = tmp_path / "events.log"
    lines = [
        {"id": "e1", "sequence": 1, "table": "t", "record": {"name": "Café Noir"}},  # raw UTF-8
        {"id": "e2", "sequence": 2, "table": "t", "record": {"name": "CAFÉ BLANC"}},
        {"id": "e3", "sequence": 3, "table": "t", "record": {"name": "plain cafe"}},
        {"id": "e4", "sequence": 4, "table": "t", "record": {"name": "مطعم الدار", "emoji": "😀 ok"}},
        {"id": "e5", "sequence": 5, "table": "t", "record": {"quote": 'say "hi"\n'}},
        {"id": "e6", "sequence": 6, "table": "t", "record": {"mood": "😀 escaped"}},  # a surrogate pair
    ]
    data = b"".join(
        (json.dumps(x, ensure_ascii=i % 2 == 0) if i < 4 else json.dumps(x)).encode() + b"\n"
        for i, x in enumerate(lines)
    )
    path.write_bytes(data)
    offsets = [x["offset"] for x in reference(path)]

    def found(text, fields=None):
        return sorted(_found(path, EventFilter(text=text, text_fields=fields)))

    assert b"\\u00e9" in data and "É".encode() in data
    assert found("é") == offsets[0:2] == found("CAFÉ")
    assert found("é", ("record.name",)) == offsets[0:2]
    assert found("cafe") == [offsets[2]]  # no Unicode normalisation: "é" is not "e"
    assert b"\\ud83d\\ude00" in data
    assert found("الدار") == [offsets[3]] and found("😀") == [offsets[3], offsets[5]]
    assert found('"hi"') == [offsets[4]] == found('say "hi"', ("record.quote",))


# -- budget ----------------------------------------------------------------------------------


@pytest.mark.parametrize("direction", ["older", "newer"])
def test_a_search_out_of_time_resumes_to_the_same_results(log300, direction):
    where = EventFilter(text="client 2")
    unbounded, pages = all_pages(log300, direction, where=where, limit=9, chunk=4096)
    assert all(p.complete for p in pages) and len(unbounded) > 30
    clock = FakeClock()
    bounded, pages = all_pages(log300, direction, where=where, limit=9, chunk=4096, clock=clock, budget_seconds=3)
    assert [r.offset for r in bounded] == [r.offset for r in unbounded]
    cut = [p for p in pages if not p.complete]
    assert cut, "the fake clock must cut some searches short"
    for p in cut:
        assert len(p.rows) < 9 and p.resume == (p.older if direction == "older" else p.newer)
        assert p.resume == (p.searched[0] if direction == "older" else p.searched[1])
        assert p.bytes_read <= 3 * 4096 + 4096  # one chunk before each look at the clock, and one more
    # each request read each byte once: the searched ranges tile the file
    spans = sorted(p.searched for p in pages)
    assert spans[0][0] == 0 and spans[-1][1] == log300.stat().st_size
    assert all(a[1] >= b[0] for a, b in zip(spans, spans[1:], strict=False))


def test_a_budget_of_nothing_still_reads_a_chunk(log300):
    page = browse(log300, where=EventFilter(text="no such thing"), budget_seconds=0, chunk=5000)
    assert not page.complete and page.rows == [] and page.resume == page.older
    assert page.bytes_read == 5000 and page.searched[0] > 0


# -- damaged logs ----------------------------------------------------------------------------


def _event_line(seq: int, **extra) -> bytes:
    line = {"id": f"evt-{seq}", "sequence": seq, "action": "module:insert", "table": "t", "record": {"id": f"r{seq}"}}
    return orjson.dumps({**line, **extra})


def damaged_log(path: Path, long_line: int = 50_000, torn: bytes = b'{"id":"evt-torn","seq') -> list[bytes]:
    lines = [
        _event_line(1),
        b"{not json",
        _event_line(2) + b"\r",  # a "\r\n" line ending
        b"",
        b"   \t ",
        "\u00a0\u3000".encode(),  # whitespace to Node's trim(): blank
        "\ufeff".encode() + _event_line(3),  # a BOM before the event: Node trims it
        b"[1, 2, 3]",
        b'{"id":"evt-4","sequence":4,"note":"\xff\xfe"}',  # invalid UTF-8: U+FFFD to Node
        b'{"id":"evt-5","sequence":5,"note":"' + b"n" * long_line + b'"}',
        _event_line(6, note="caf\\u00e9"),
        b'{"id": "evt-7", "sequence" : 7, "table" : "t"}',  # spaced out
        "\u2028".encode() + _event_line(8) + b"  ",
    ]
    path.write_bytes(b"\n".join(lines) + b"\n" + torn)
    return lines


@pytest.fixture
def small_limit(monkeypatch):
    """A line limit of 10,000 bytes, the checks' reader reading 4 KiB at a time."""
    monkeypatch.setattr(logmod, "MAX_LINE_BYTES", 10_000)
    monkeypatch.setattr(logmod, "CHUNK", 4096)


@pytest.mark.parametrize("chunk", [7, 64, 4096, CHUNK])
def test_damaged_lines_read_as_the_checks_read_them(tmp_path, small_limit, chunk):
    path = tmp_path / "events.log"
    damaged_log(path)
    summary = logmod.summarize(path)
    index = build_index(path, every=100)
    rows, _ = all_pages(path, "newer", limit=3, chunk=chunk, index=index)
    older, _ = all_pages(path, "older", limit=4, chunk=chunk, index=index)
    assert [r.offset for r in older] == [r.offset for r in reversed(rows)]
    assert [(r.line, r.error) for r in older] == [(r.line, r.error) for r in reversed(rows)]
    bad = [r for r in rows if r.event is None and not r.torn]
    assert [(r.line, r.offset, r.error) for r in bad] == [
        (b["line"], b["offset"], b["error"]) for b in summary.bad_lines
    ]
    assert [r.sequence for r in rows if r.event is not None] == [1, 2, 3, 4, 6, 7, 8]
    assert [r.line for r in rows] == [1, 2, 3, 7, 8, 9, 10, 11, 12, 13, 14]
    data = path.read_bytes()
    long = next(r for r in rows if r.line == 10)
    assert long.length == len(data.split(b"\n")[9])
    assert long.error == f"line is longer than 10000 bytes ({long.length} bytes); not read"
    assert long.preview == data[long.offset : long.offset + 4096]
    torn = rows[-1]
    assert torn.torn and torn.event is None and torn.error.startswith(TORN)
    assert (torn.offset, torn.length, torn.line) == (
        summary.torn_tail["offset"],
        summary.torn_tail["length"],
        summary.torn_tail["line"],
    )
    assert rows[2].length == len(_event_line(2)) + 1  # the "\r" is the line's
    # a torn tail is a row only at the end of the file
    assert browse(path, cursor=torn.offset, limit=1).rows[0].torn is False


def test_a_torn_tail_that_parses_is_an_event_and_still_torn(tmp_path):
    path = tmp_path / "events.log"
    path.write_bytes(_event_line(1) + b"\n" + _event_line(2))
    rows = browse(path).rows
    assert rows[0].torn and rows[0].sequence == 2 and rows[0].error == TORN
    assert rows[1].sequence == 1 and not rows[1].torn
    assert [r.line for r in rows] == [2, 1]
    assert logmod.summarize(path).torn_tail["parses"] is True


@pytest.mark.parametrize("chunk", [100, 4096])
def test_an_overlong_line_is_never_held(tmp_path, monkeypatch, chunk):
    monkeypatch.setattr(logmod, "MAX_LINE_BYTES", 3000)
    monkeypatch.setattr(logmod, "CHUNK", 1024)
    path = tmp_path / "events.log"
    nul = b"\x00" * 200_000  # a crash's run of NUL bytes
    path.write_bytes(_event_line(1) + b"\n" + nul + b"\n" + _event_line(2) + b"\n" + b"z" * 50_000)
    index = build_index(path, every=1000)
    tracemalloc.start()
    try:
        newer, _ = all_pages(path, "newer", limit=2, chunk=chunk, index=index)
        older, _ = all_pages(path, "older", limit=2, chunk=chunk, index=index)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 60_000
    assert [(r.line, r.sequence, r.torn) for r in newer] == [
        (1, 1, False),
        (2, None, False),
        (3, 2, False),
        (4, None, True),
    ]
    assert [r.offset for r in older] == [r.offset for r in reversed(newer)]
    assert newer[1].length == 200_000 and newer[1].preview == b"\x00" * 4096
    assert (
        newer[3].length == 50_000
        and newer[3].error == f"{TORN}; line is longer than 3000 bytes (50000 bytes); not read"
    )
    assert [r.error for r in older] == [r.error for r in reversed(newer)]
    summary = logmod.summarize(path)
    assert summary.bad_lines[0]["error"] == newer[1].error


def test_blank_lines_are_never_rows(tmp_path):
    path = tmp_path / "events.log"
    path.write_bytes(b"\n\n" + _event_line(1) + b"\n \n\r\n\n" + _event_line(2) + b"\n\n   ")
    rows, _ = all_pages(path, "newer", limit=1, chunk=3, index=build_index(path, every=10))
    assert [(r.sequence, r.line) for r in rows] == [(1, 3), (2, 7)]
    assert [r.sequence for r in all_pages(path, "older", limit=1, chunk=3)[0]] == [2, 1]
    assert [r.sequence for r in browse(path, where=EventFilter(text="evt")).rows] == [2, 1]


def test_the_real_sample_log_reads_as_read_events():
    module = EventStore(SAMPLE_ROOT).module("dar", "pos")
    expected = list(module.read_events())
    assert len(expected) == 48
    index = build_index(SAMPLE_LOG, every=8000)
    for chunk in (1000, CHUNK):
        newer, _ = all_pages(SAMPLE_LOG, "newer", limit=10, chunk=chunk)
        assert [r.event for r in newer] == expected
        older, _ = all_pages(SAMPLE_LOG, "older", limit=10, chunk=chunk, index=index)
        assert [r.event for r in older] == expected[::-1]
        assert [r.line for r in older] == [x.lineno for x in reversed(list(logmod.iter_raw_lines(SAMPLE_LOG)))]
    key = expected[0]["meta"]["recordRef"]["key"]
    assert [r.sequence for r in browse(SAMPLE_LOG, where=EventFilter(record=key)).rows] == [1]


# -- line_at ---------------------------------------------------------------------------------


def test_line_at_gives_the_line_that_holds_an_offset(tmp_path, small_limit):
    path = tmp_path / "events.log"
    damaged_log(path)
    summary = logmod.summarize(path)
    index = build_index(path, every=500)
    for bad in summary.bad_lines:
        for at in (bad["offset"], bad["offset"] + 3):
            row = line_at(path, at)
            assert row is not None and row.offset == bad["offset"] and row.error == bad["error"]
            assert line_at(path, at, index).line == bad["line"]
    t = summary.torn_tail
    assert line_at(path, t["offset"] + 1, index).torn
    assert line_at(path, t["offset"], index).line == t["line"]
    blank = path.read_bytes().index(b"\n\n") + 1
    assert line_at(path, blank) is None
    assert line_at(path, path.stat().st_size) is None and line_at(path, -1) is None
    assert line_at(path, 0).line == 1 and line_at(path, 0).sequence == 1


# -- the offset index ------------------------------------------------------------------------


def test_index_json_round_trip(log300):
    index = build_index(log300, every=5000)
    assert len(index.points) > 10
    text = orjson.dumps(index.to_json())
    assert OffsetIndex.from_json(orjson.loads(text)) == index
    assert index.points[0] == IndexPoint(0, 1, None, reference(log300)[0]["event"]["createdAt"])


ODD = [None, True, -1, 1.5, "x", [], {}, [[]], [1, 2]]


def test_from_json_of_garbage_is_none(log300):
    good = build_index(log300, every=20_000).to_json()
    for value in (None, 1, "x", [], {}, {"version": 2}, {**good, "version": 1.0}):
        assert OffsetIndex.from_json(value) is None
    for key in good:
        for odd in ODD:
            value = {**good, key: odd}
            got = OffsetIndex.from_json(value)  # never raises
            assert got is None or (key == "sequence" and odd in (None, -1)), (key, odd)
        assert OffsetIndex.from_json({k: v for k, v in good.items() if k != key}) is None
    for i in range(len(good["points"])):
        for j in range(4):
            for odd in ODD:
                points = [list(p) for p in good["points"]]
                points[i][j] = odd
                OffsetIndex.from_json({**good, "points": points})
    swapped = {**good, "points": [good["points"][1], good["points"][0], *good["points"][2:]]}
    assert OffsetIndex.from_json(swapped) is None
    assert OffsetIndex.from_json({**good, "points": [[5, 1, None, None]]}) is None


def _counting_reads(monkeypatch) -> list[int]:
    reads: list[int] = []
    real = os.pread

    def pread(fd, n, at):
        data = real(fd, n, at)
        reads.append(len(data))
        return data

    monkeypatch.setattr(offsetsmod.os, "pread", pread)
    return reads


def test_build_index_extends_reading_only_the_new_bytes(tmp_path, monkeypatch):
    module = write_events(tmp_path, 200)
    path = module.log_path
    first = build_index(path, every=3000)
    assert first.bytes_read == path.stat().st_size + 0
    before = path.stat().st_size
    rng = random.Random(1)
    for i in range(200, 260):
        module.append_event(entry(i, rng))
    added = path.stat().st_size - before
    reads = _counting_reads(monkeypatch)
    grown = build_index(path, previous=first, every=3000)
    monkeypatch.undo()
    assert sum(reads) == grown.bytes_read == added + offsetsmod.GUARD_BYTES
    assert grown == build_index(path, every=3000) and len(grown.points) > len(first.points)
    # nothing new: nothing but the guard is read
    assert build_index(path, previous=grown, every=3000).bytes_read == offsetsmod.GUARD_BYTES
    # another spacing: built again
    assert build_index(path, previous=grown, every=4000).bytes_read == path.stat().st_size


def test_build_index_rebuilds_after_rotation_truncation_or_rewrite(tmp_path):
    module = write_events(tmp_path, 120)
    path = module.log_path
    index = build_index(path, every=2000)
    # rotation: the log moved away (kept, so the inode is not reused) and a new one begun
    path.rename(path.with_name("rotated.log"))
    path.write_bytes(_event_line(1) + b"\n" + _event_line(2) + b"\n")
    rotated = build_index(path, previous=index, every=2000)
    assert rotated.bytes_read == path.stat().st_size and rotated.end == path.stat().st_size
    assert rotated.lines == 2 and rotated.sequence == 2 and len(rotated.points) == 1
    # truncation in place: same inode, shorter
    data = path.with_name("rotated.log").read_bytes()
    with open(path, "wb") as f:
        f.write(data)
    long = build_index(path, every=2000)
    with open(path, "r+b") as f:
        f.truncate(len(data) // 2)
    cut = build_index(path, previous=long, every=2000)
    assert cut.bytes_read == len(data) // 2 and cut == build_index(path, every=2000)
    # rewritten in place, longer than before: same inode, other bytes before the index's end
    with open(path, "r+b") as f:
        f.write(data.replace(b'"recordedAt":"20', b'"recordedAt":"19'))
    again = build_index(path, previous=cut, every=2000)
    assert again.bytes_read == offsetsmod.GUARD_BYTES + len(data) and again == build_index(path, every=2000)
    assert again.points == long.points


def test_build_index_of_an_empty_log_and_a_torn_tail(tmp_path):
    path = tmp_path / "events.log"
    path.write_bytes(b"")
    empty = build_index(path)
    assert empty.points == (IndexPoint(0, 1, None, None),) and empty.end == 0
    path.write_bytes(b"\n" + _event_line(1, createdAt="2025-01-01T00:00:00.000Z") + b"\n" + b'{"torn')
    grown = build_index(path, previous=empty)
    assert grown.end == path.stat().st_size - 6 and grown.lines == 2 and grown.sequence == 1
    assert grown.points == (IndexPoint(0, 1, None, "2025-01-01T00:00:00.000Z"),)
    assert grown == build_index(path)


def test_line_numbers_through_the_index_match_a_full_count(tmp_path):
    module = write_events(tmp_path, 150)
    path = module.log_path
    with open(path, "ab") as f:  # blank lines count as lines, as Node counts them
        f.write(b"\n\n \n")
    for i in range(150, 200):
        module.append_event(entry(i, random.Random(i)))
    ref = reference(path)
    lines = {x["offset"]: x["line"] for x in ref}
    index = build_index(path, every=4000)
    for cursor in [None, *range(0, path.stat().st_size, 9000)]:
        for direction in ("older", "newer"):
            page = browse(path, cursor=cursor, direction=direction, limit=9, index=index, chunk=2048)
            assert [r.line for r in page.rows] == [lines[r.offset] for r in page.rows]
    # an index of another file gives no line numbers (only at the start of the file)
    other = build_index(SAMPLE_LOG)
    assert {r.line for r in browse(path, index=other, limit=5).rows} == {None}


# -- seek ------------------------------------------------------------------------------------


def _reach(path: Path, start: int, test, index, pages: int = 4):
    cursor = start
    for _ in range(pages):
        page = browse(path, cursor=cursor, direction="newer", limit=20, index=index)
        for r in page.rows:
            if r.event is not None and test(r):
                return r
        cursor = page.newer
        if cursor is None:
            return None
    return None


def test_seek_lands_at_or_before_the_target(tmp_path):
    module = write_events(tmp_path, 400)
    path = module.log_path
    ref = reference(path)
    index = build_index(path, every=8000)
    assert len(index.points) > 20
    for i, x in list(enumerate(ref))[::37] + [(len(ref) - 1, ref[-1])]:
        e = x["event"]
        at = seek(path, index, sequence=e["sequence"])
        assert at == x["offset"]  # the first event with that sequence or more
        at = seek(path, index, line=x["line"])
        assert at == x["offset"]
        at = seek(path, index, time=e["createdAt"])
        assert at == x["offset"]
        # a time between two events, written in another offset: the next event
        later = datetime.fromisoformat(e["createdAt"]) + timedelta(seconds=30)
        at = seek(path, index, time=later.astimezone(timezone(timedelta(hours=3))).isoformat())
        assert at == (ref[i + 1]["offset"] if i + 1 < len(ref) else path.stat().st_size)
        if i + 1 < len(ref):
            assert _reach(path, at, lambda r, e=e: r.sequence > e["sequence"], index).sequence == e["sequence"] + 1
    assert seek(path, index, sequence=10**6) == path.stat().st_size
    assert seek(path, index, line=1) == 0 and seek(path, index, time="2000-01-01T00:00:00Z") == 0
    with pytest.raises(ValueError):
        seek(path, index)
    with pytest.raises(ValueError):
        seek(path, index, line=1, sequence=1)
    with pytest.raises(ValueError):
        seek(path, index, time="yesterday")


def test_seek_with_a_stale_or_foreign_index_still_lands_before(tmp_path):
    module = write_events(tmp_path, 100)
    path = module.log_path
    stale = build_index(path, every=3000)
    rng = random.Random(2)
    for i in range(100, 160):
        module.append_event(entry(i, rng))
    ref = reference(path)
    for x in (ref[120], ref[-1]):
        at = seek(path, stale, sequence=x["event"]["sequence"])
        assert at <= x["offset"]
        assert _reach(path, at, lambda r, x=x: r.offset == x["offset"], stale, pages=20) is not None
    foreign = build_index(SAMPLE_LOG)
    assert seek(path, foreign, sequence=5) == ref[4]["offset"]


@pytest.mark.parametrize("seed", range(4))
def test_overlong_lines_are_the_ones_the_checks_call_overlong(tmp_path, monkeypatch, seed):
    """A line just past the limit is overlong for the checks' reader only when one of its reads
    ends inside the line past the limit: the browser draws the same line."""
    monkeypatch.setattr(logmod, "MAX_LINE_BYTES", 2000)
    monkeypatch.setattr(logmod, "CHUNK", 512)
    rng = random.Random(seed)
    path = tmp_path / "events.log"
    lines = []
    for i in range(60):
        pad = rng.choice([10, rng.randrange(1900, 2700)])
        lines.append(_event_line(i + 1, note="p" * pad))
    path.write_bytes(b"\n".join(lines) + b"\n" + (b"q" * rng.randrange(1900, 2100) if seed % 2 else b""))
    summary = logmod.summarize(path, workers=1)
    long_for_checks = {b["offset"] for b in summary.bad_lines}
    assert long_for_checks and len(long_for_checks) < summary.lines
    index = build_index(path, every=3000)
    expected = sorted(e["sequence"] for x in logmod.iter_raw_lines(path) if (e := logmod.parse_event(x.data)[0]))
    for chunk in (100, 700, 4096):
        for direction in ("older", "newer"):
            rows, _ = all_pages(path, direction, limit=7, chunk=chunk, index=index)
            assert {r.offset for r in rows if r.event is None and not r.torn} == long_for_checks
            events = sorted(r.sequence for r in rows if r.event is not None)
            assert events == expected
    if seed % 2:
        assert summary.torn_tail is not None


@pytest.mark.parametrize("direction", ["older", "newer"])
def test_every_request_gets_on_by_a_line_even_without_time(tmp_path, direction):
    """Lines longer than a chunk and a budget already spent: each request still examines a
    line, so following ``resume`` always ends."""
    path = tmp_path / "events.log"
    path.write_bytes(b"".join(_event_line(i, note="n" * 5000) + b"\n" for i in range(1, 9)))
    rows, pages = all_pages(
        path, direction, where=EventFilter(text="evt-"), limit=3, chunk=1000, budget_seconds=0, clock=FakeClock()
    )
    assert sorted(r.sequence for r in rows) == list(range(1, 9))
    assert all(len(p.rows) >= 1 for p in pages[:-1]) and not all(p.complete for p in pages)


def test_an_index_of_bytes_since_rewritten_gives_no_line_numbers(tmp_path):
    module = write_events(tmp_path, 50)
    path = module.log_path
    index = build_index(path, every=2000)
    middle = path.stat().st_size // 2
    assert browse(path, cursor=middle, index=index, limit=3).rows[0].line is not None
    data = path.read_bytes()
    with open(path, "r+b") as f:  # the same inode and size, other bytes: not the file it was built on
        f.write(data.replace(b'"recordedAt":"20', b'"recordedAt":"19'))
    assert {r.line for r in browse(path, cursor=middle, index=index, limit=3).rows} == {None}
    assert seek(path, index, sequence=40) == reference(path)[39]["offset"]  # from the start, not the points


def test_a_missing_log_is_an_error_and_bad_arguments_are_refused(tmp_path):
    with pytest.raises(FileNotFoundError):
        browse(tmp_path / "events.log")
    path = tmp_path / "events.log"
    path.write_bytes(b"")
    empty = browse(path)
    assert (empty.rows, empty.older, empty.newer, empty.complete, empty.searched) == ([], None, None, True, (0, 0))
    assert browse(path, direction="newer").rows == [] and line_at(path, 0) is None
    with pytest.raises(ValueError):
        browse(path, where=EventFilter(since="last tuesday"))
    with pytest.raises(ValueError):
        browse(path, where=EventFilter(sequence="7"))
    assert EventFilter().is_empty() and EventFilter(text="", text_fields=("record",)).is_empty()
    assert not EventFilter(table="").is_empty()
