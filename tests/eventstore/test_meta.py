"""meta: strict parsing with positions, validation, Node's mergeDeep, serialisation, salvage."""

from __future__ import annotations

import json

import pytest

from eventstore import meta as metamod
from tests.eventstore.conftest import make_lines, meta_bytes, node_meta


@pytest.fixture
def good() -> dict:
    return node_meta(make_lines(5), lastServedTableIds={"order_header": ["ord-1"]}, purgeState={"at": "2025-10-20"})


def test_parse_accepts_what_node_writes(good):
    value, err = metamod.parse(meta_bytes(good))
    assert err is None and value == good


def test_parse_reports_the_position_of_a_syntax_error():
    data = b'{\n  "totalEvents": 3,\n  "lastEventId" "evt-1"\n}'
    value, err = metamod.parse(data)
    assert value is None
    assert (err.line, err.col) == (3, 17)
    assert err.pos == data.index(b'"evt-1"') == err.byte


def test_parse_reports_trailing_garbage_where_it_starts(good):
    # The upstream damage: a whole document followed by the tail of a longer one.
    doc = meta_bytes(good)
    data = doc + b"\n}\n}"
    _, err = metamod.parse(data)
    assert "Extra data" in err.message
    assert err.byte == len(doc) + 1
    assert err.line == doc.count(b"\n") + 2 and err.col == 1


@pytest.mark.parametrize(
    ("data", "needle"),
    [
        (b"", "empty"),
        (b"  \n\t ", "whitespace"),
        (b"\xef\xbb\xbf{}", "byte order mark"),
        (b'{"a": 1}\x00\x00\x00', "NUL"),
        (b"\x00" * 64, "NUL"),
        (b'{"a": NaN}', "NaN"),
        (b'{"a": Infinity}', "Infinity"),
        (b"[" * 100_000 + b"]" * 100_000, "deeply"),
    ],
)
def test_parse_explains_each_kind_of_corruption(data, needle):
    value, err = metamod.parse(data)
    assert value is None
    assert needle in err.message


def test_parse_gives_the_byte_of_bad_utf8():
    data = '{"cashier": "أحمد'.encode() + b"\xff\xfe" + b'"}'
    _, err = metamod.parse(data)
    assert err.byte == len('{"cashier": "أحمد'.encode())
    assert err.line == 1 and err.col == len('{"cashier": "أحمد') + 1


def test_parse_gives_the_position_of_a_nul_inside_the_document():
    data = b'{\n  "a": 1,\n  "b"\x00: 2\n}'
    _, err = metamod.parse(data)
    assert "NUL" in err.message
    assert (err.line, err.col, err.byte) == (3, 6, data.index(b"\x00"))


def test_problems_none_for_a_node_meta(good):
    assert metamod.problems(good, branch="dar", module="pos") == []


@pytest.mark.parametrize("total", ["abc", -1, 1.5, True, None, [3]])
def test_problems_critical_when_total_events_is_not_a_count(good, total):
    good["totalEvents"] = total
    found = metamod.problems(good)
    assert [p.severity for p in found] == ["critical"]
    assert found[0].detail["key"] == "totalEvents"


@pytest.mark.parametrize(("value", "kind"), [([], "array"), ("x", "string"), (3, "number"), (None, "null")])
def test_problems_critical_when_not_an_object(value, kind):
    (p,) = metamod.problems(value)
    assert p.severity == "critical" and kind in p.message


def test_problems_only_warn_where_node_falls_back(good):
    good["tableCursors"] = None
    good["lastAckId"] = 17
    good["moduleId"] = "kds"
    found = metamod.problems(good, branch="dar", module="pos")
    assert {p.severity for p in found} == {"warning"}
    assert {p.detail["key"] for p in found} == {"tableCursors", "lastAckId", "moduleId"}


def test_with_defaults_fills_missing_keys_and_keeps_unknown_ones():
    out = metamod.with_defaults({"totalEvents": 4, "purgeState": {"x": 1}, "tableCursors": None})
    assert out["purgeState"] == {"x": 1}
    assert out["tableCursors"] == {} and out["lastServedTableIds"] == {}
    assert out["lastAckId"] is None and out["totalEvents"] == 4


def test_with_defaults_never_shares_the_default_objects():
    a = metamod.with_defaults({})
    a["tableCursors"]["t"] = 1
    a["lastServedTableIds"]["t"] = 1
    assert metamod.with_defaults({})["tableCursors"] == {}
    assert metamod.DEFAULTS["tableCursors"] == {} and metamod.DEFAULTS["lastServedTableIds"] == {}


def test_merge_deep_like_node():
    target = {
        "lastServedTableIds": {"order_header": ["a", "b"], "order_line": ["x"]},
        "tableCursors": {"pos_shift": {"key": "s1", "sequence": 3}},
        "lastAckId": "evt-1",
        "purgeState": {"at": "x"},
    }
    patch = {
        "lastServedTableIds": {"order_header": ["c"]},  # arrays replace
        "tableCursors": {"pos_shift": {"sequence": 9}},  # nested objects merge
        "lastAckId": None,  # null sets null
        "purgeState": "gone",  # scalar replaces an object
        "lastClientSyncAt": "2025-10-27T12:00:00.000Z",  # new key added
    }
    out = metamod.merge_deep(target, patch)
    assert out == {
        "lastServedTableIds": {"order_header": ["c"], "order_line": ["x"]},
        "tableCursors": {"pos_shift": {"key": "s1", "sequence": 9}},
        "lastAckId": None,
        "purgeState": "gone",
        "lastClientSyncAt": "2025-10-27T12:00:00.000Z",
    }
    assert target["lastServedTableIds"]["order_header"] == ["a", "b"]  # inputs untouched
    out["lastServedTableIds"]["order_line"].append("y")
    assert patch["lastServedTableIds"] == {"order_header": ["c"]}


def test_merge_deep_object_replaces_a_scalar():
    assert metamod.merge_deep({"a": 1}, {"a": {"b": 2}}) == {"a": {"b": 2}}


def test_dumps_matches_json_stringify_with_two_spaces(good):
    assert metamod.dumps(good) == json.dumps(good, indent=2, ensure_ascii=False).encode()


def test_dumps_handles_integers_beyond_64_bits():
    assert json.loads(metamod.dumps({"totalEvents": 2**70})) == {"totalEvents": 2**70}


def test_dumps_writes_a_lone_surrogate_as_an_escape():
    # JSON.parse accepts "\ud800" and JSON.stringify writes it back escaped: a meta holding it
    # must survive a rebuild.
    value, err = metamod.parse(b'{"lastAckId": "evt-\\ud800", "cashier": "\xd8\xa3"}')
    assert err is None
    out = metamod.dumps(value)
    assert json.loads(out) == value


def test_salvage_prefix_takes_the_whole_document_before_the_tail_of_a_longer_one(good):
    longer = dict(good, lastClientSyncAt="2025-10-27T12:23:47.665Z", lastClientTableIds={"order_line": ["x" * 40]})
    tail = meta_bytes(longer)[-150:]
    data = meta_bytes(good) + tail
    assert metamod.parse(data)[1] is not None
    assert metamod.salvage_prefix(data) == good


def test_salvage_prefix_keeps_the_complete_entries_before_a_cut(good):
    data = meta_bytes(good)
    cut = data[: data.index(b'"lastServedTableIds"') + 12]
    out = metamod.salvage_prefix(cut)
    keys = list(good)
    assert list(out) == keys[: keys.index("lastServedTableIds")]
    assert out["lastAckId"] == good["lastAckId"] and out["tableCursors"] == good["tableCursors"]


def test_salvage_prefix_cut_inside_a_nested_object_drops_that_entry(good):
    data = meta_bytes(good)
    cut = data[: data.index(b'"order_line"') + 5]  # inside tableCursors
    out = metamod.salvage_prefix(cut)
    assert "tableCursors" not in out
    assert out["liveCreatedAt"] == good["liveCreatedAt"] and out["totalEvents"] == good["totalEvents"]


@pytest.mark.parametrize(
    "data", [b"", b"\x00\x00", b"[1, 2]", b"garbage", b"\xff\xfe{", b'"str"', b"{", b"\xef\xbb\xbf"]
)
def test_salvage_prefix_gives_none_when_nothing_is_usable(data):
    assert metamod.salvage_prefix(data) is None


def test_salvage_prefix_skips_a_bom(good):
    assert metamod.salvage_prefix(b"\xef\xbb\xbf" + meta_bytes(good) + b"}}") == good
