"""state: the typed, versioned state of an incremental check. Read back, it gives the check it
came from; old, malformed or tampered, it never raises and the files are read again."""

from __future__ import annotations

import copy
import json
import time

import pytest

from eventstore import health, state
from eventstore.fileio import Stamp
from tests.eventstore.conftest import line_bytes, make_line, meta_bytes, seed


@pytest.fixture
def later() -> float:
    return time.time() + 10  # past the racily-clean window of the files the test just wrote


def damaged(store):
    """A module whose check has findings of every log kind, and a meta finding."""
    seeded = seed(store, 6)
    lines = [make_line(s) for s in (1, 2, 2, 5, 6)]
    seeded.write_log(b"".join(line_bytes(ln) for ln in lines) + b"not json\n" + line_bytes(make_line(7))[:50])
    seeded.write_meta(meta_bytes({**seeded.meta, "tableCursors": []}))
    return seeded.module


def round_trip(value):
    return json.loads(json.dumps(value))


def test_a_state_read_back_gives_the_same_check_and_the_same_state(store, later):
    module = damaged(store)
    first = module.check(now=later)
    assert first.state["version"] == state.STATE_VERSION == 3
    assert {f.code for f in first.findings} >= {
        "log_torn_tail",
        "log_bad_line",
        "log_sequence_duplicate",
        "log_sequence_gap",
        "meta_invalid",
    }
    again = module.check(now=later, previous=round_trip(first.state))
    assert again.bytes_read == 0
    assert again.to_dict() == first.to_dict() and again.state == round_trip(first.state)
    parsed = state.CheckState.from_json(round_trip(first.state))
    assert isinstance(parsed.meta.stamp, Stamp) and isinstance(parsed.log.stamp, Stamp)
    assert [f.to_dict() for f in parsed.meta.findings] == [
        f.to_dict() for f in first.findings if f.code == "meta_invalid"
    ]


def test_the_state_of_a_grown_log_resumes_and_agrees_with_a_fresh_check(store, later):
    module = seed(store, 6).module
    first = module.check(now=later)
    with open(module.log_path, "ab") as f:
        f.write(line_bytes(make_line(8)) + b"not json\n")
    later = time.time() + 10
    resumed, fresh = module.check(now=later, previous=round_trip(first.state)), module.check(now=later)
    assert 0 < resumed.bytes_read < fresh.bytes_read
    assert resumed.to_dict() == fresh.to_dict()
    # the same but for the checkpoints: the resumed check added a piece for the new bytes,
    # the fresh one (a full read) made one per 8 MiB; both cover the log to its last newline
    r, f = dict(resumed.state), dict(fresh.state)
    rc, fc = r.pop("checkpoints"), f.pop("checkpoints")
    assert r == f and rc["pieces"][-1][0] == fc["pieces"][-1][0] == module.log_path.stat().st_size
    assert len(rc["pieces"]) == 2 and len(fc["pieces"]) == 1


@pytest.mark.parametrize(
    "previous", [None, {}, [], "x", {"version": 1}, {"version": 2}, {"version": 2, "backups": "x"}]
)
def test_no_state_or_another_version_reads_everything(store, previous, later):
    module = seed(store, 6).module
    fresh = module.check(now=later)
    h = module.check(now=later, previous=previous)
    assert h.bytes_read == fresh.bytes_read > 0 and h.to_dict() == fresh.to_dict()


def _paths(value, path=()):
    yield path
    if isinstance(value, dict):
        for k, v in value.items():
            yield from _paths(v, (*path, k))
    elif isinstance(value, list):
        for i, v in enumerate(value):
            yield from _paths(v, (*path, i))


def _set(value, path, new):
    out = copy.deepcopy(value)
    target = out
    for p in path[:-1]:
        target = target[p]
    target[path[-1]] = new
    return out


ODD = (None, -1, 1.5, "x", True, [], {}, [1, 2, 3, 4], 2**70)


def test_any_value_of_a_state_replaced_never_raises_and_a_wrong_type_reads_again(store, later):
    module = damaged(store)
    good = round_trip(module.check(now=later).state)
    fresh = module.check(now=later).to_dict()
    for path in list(_paths(good))[1:]:
        for odd in ODD:
            h = module.check(now=later, previous=_set(good, path, odd))  # never raises
            assert h.status in health.STATUSES
            for f in h.findings:  # and what it reuses still has the declared shapes
                assert not health.FINDING_SPECS[f.code].problems(f.detail), (path, odd, f.to_dict())
            if h.bytes_read:  # read again: exactly a fresh check
                assert h.to_dict() == fresh, (path, odd)


@pytest.mark.parametrize(
    ("path", "odd"),
    [
        (("log", "summary", "events"), "6"),
        (("log", "summary", "events"), -1),
        (("log", "summary", "bad_lines"), []),  # a count without its sample
        (("log", "summary", "gaps", 0), [3]),
        (("log", "summary", "torn_tail"), {"offset": 1}),
        (("log", "stamp"), [1, 2, 3]),
        (("meta", "findings", 0, "detail"), {"nope": 1}),
        (("meta", "total"), "6"),
        (("log",), {}),
        (("backups",), [1]),
    ],
)
def test_a_value_of_the_wrong_shape_reads_every_file_again(store, path, odd, later):
    module = damaged(store)
    good = round_trip(module.check(now=later).state)
    fresh = module.check(now=later)
    h = module.check(now=later, previous=_set(good, path, odd))
    assert h.bytes_read == fresh.bytes_read and h.to_dict() == fresh.to_dict()


def test_a_state_a_database_made_storable_is_still_used(store, later):
    # opsdash stores the state made storable (a NUL or lone surrogate as U+FFFD): it still reads back.
    module = seed(store, 6).module
    first = round_trip(module.check(now=later).state)
    first["log"]["summary"]["last_event_id"] = "evt-\ufffd"
    h = module.check(now=later, previous=first)
    assert h.bytes_read == 0 and h.stats.log_last_event_id == "evt-\ufffd" and h.state == first


def test_a_malformed_bitmap_means_a_full_pass_when_the_log_grows(store, later):
    module = seed(store, 6).module
    first = round_trip(module.check(now=later).state)
    first["log"]["seen"] = "not base64!"
    with open(module.log_path, "ab") as f:
        f.write(line_bytes(make_line(7)))
    later = time.time() + 10
    h, fresh = module.check(now=later, previous=first), module.check(now=later)
    assert h.bytes_read == module.log_path.stat().st_size and h.to_dict() == fresh.to_dict()  # the meta unchanged
