"""Property tests: no damage makes check() raise; a rebuild reproduces what the appends wrote."""

from __future__ import annotations

import json
import tempfile
from pathlib import Path

from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from eventstore import CODES, EventStore
from eventstore import meta as metamod
from eventstore.health import status_of
from tests.eventstore.conftest import derived, line_bytes, make_entry, make_lines, meta_bytes, node_meta

LINES = make_lines(5)
LOG = b"".join(line_bytes(ln) for ln in LINES)
META = meta_bytes(node_meta(LINES, lastAckId="evt-acked", purgeState={"at": "x"}))

FAST = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@st.composite
def damaged(draw, data: bytes) -> bytes:
    """``data`` after one to three of: flip a byte, truncate, insert bytes, a run of NULs, random bytes."""
    for _ in range(draw(st.integers(1, 3))):
        kind = draw(st.sampled_from(["flip", "truncate", "insert", "nul", "random"]))
        at = draw(st.integers(0, len(data)))
        if kind == "flip" and data:
            at = min(at, len(data) - 1)
            data = data[:at] + bytes([data[at] ^ draw(st.integers(1, 255))]) + data[at + 1 :]
        elif kind == "truncate":
            data = data[:at]
        elif kind == "insert":
            data = data[:at] + draw(st.binary(min_size=1, max_size=40)) + data[at:]
        elif kind == "nul":
            data = data[:at] + b"\x00" * draw(st.integers(1, 64)) + data[at + 64 :]
        else:
            data = draw(st.binary(max_size=300))
    return data


def check_is_consistent(meta: bytes | None, log: bytes | None) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        module = EventStore(root, fsync=False).module("dar", "pos")
        module.live_dir.mkdir(parents=True)
        if meta is not None:
            module.meta_path.write_bytes(meta)
        if log is not None:
            module.log_path.write_bytes(log)
        health = module.check()
        assert health.status == status_of(health.findings)
        for f in health.findings:
            assert f.code in CODES
            assert f.severity == CODES[f.code][0] or f.code == "meta_invalid"
            json.dumps(f.to_dict(), default=str)
        assert module.meta_path.read_bytes() == meta if meta is not None else not module.meta_path.exists()


@FAST
@given(damaged(META))
def test_damaged_meta_never_makes_check_raise(data):
    check_is_consistent(data, LOG)


@FAST
@given(damaged(LOG))
def test_damaged_log_never_makes_check_raise(data):
    check_is_consistent(META, data)


@FAST
@given(damaged(META), damaged(LOG))
def test_damaged_meta_and_log_never_make_check_raise(meta, log):
    check_is_consistent(meta, log)


@settings(max_examples=200, deadline=None)
@given(st.one_of(st.binary(max_size=400), damaged(META)))
def test_parse_and_salvage_prefix_never_raise(data):
    value, err = metamod.parse(data)
    assert (err is None) or value is None
    out = metamod.salvage_prefix(data)
    assert out is None or isinstance(out, dict)


@settings(max_examples=60, deadline=None)
@given(
    st.lists(
        st.tuples(
            st.sampled_from(["order_header", "order_line", "pos_shift", "kitchen_ticket"]),
            st.integers(0, 5),
            st.booleans(),
        ),
        min_size=1,
        max_size=12,
    )
)
def test_a_rebuilt_meta_equals_the_meta_the_appends_wrote(ops):
    with tempfile.TemporaryDirectory() as tmp:
        module = EventStore(tmp, fsync=False).module("dar", "pos")
        for i, (table, key, with_ref) in enumerate(ops):
            entry = make_entry(i, table if table != "kitchen_ticket" else "order_line", key=f"k-{key}")
            entry["table"] = table
            if not with_ref:
                del entry["meta"]["recordRef"]
            module.append_event(entry)
            if i % 3 == 0:
                module.update_meta({"lastAckId": f"evt-{i}"})
        appended = json.loads(module.meta_path.read_bytes())
        module.meta_path.write_bytes(b"\x00" * 10)
        module.rebuild()
        rebuilt = json.loads(module.meta_path.read_bytes())
        assert derived(rebuilt) == derived(appended)
        assert rebuilt["lastAckId"] == appended["lastAckId"] or rebuilt["lastAckId"] is None


def _module_with(tmp: str, meta: bytes):
    module = EventStore(tmp, fsync=False).module("dar", "pos")
    module.live_dir.mkdir(parents=True)
    module.log_path.write_bytes(LOG)
    module.meta_path.write_bytes(meta)
    return module


@FAST
@given(damaged(META))
def test_load_meta_repairs_any_damaged_meta_and_keeps_a_copy(data):
    # Damage that still parses (a flipped digit, a changed id) is a valid meta the log may
    # disagree with; what must hold: load_meta never raises, and an unparseable meta is kept in
    # a byte-identical backup and rebuilt from the log.
    with tempfile.TemporaryDirectory() as tmp:
        module = _module_with(tmp, data)
        value, err = metamod.parse(data)
        unusable = err is not None or any(p.severity == "critical" for p in metamod.problems(value))
        meta = module.load_meta()
        if unusable:
            expected = derived(node_meta(LINES))
            cursors = meta.pop("tableCursors")
            expected_cursors = expected.pop("tableCursors")
            assert derived(meta) | {"tableCursors": None} == expected | {"tableCursors": None}
            # Cursors of tables the log no longer has are kept from the salvaged copy.
            assert {t: cursors[t] for t in expected_cursors} == expected_cursors
            backups = [p.read_bytes() for p in module.live_dir.glob("events.meta.json.corrupted.*.bak")]
            assert data in backups
        found = {f.code: f.severity for f in module.check().findings}
        assert "meta_corrupt" not in found and found.get("meta_invalid") != "critical", found


@FAST
@example(META.replace(b'"totalEvents"', b'"uotalEvents"'))
@given(damaged(META))
def test_after_any_meta_damage_the_next_append_gets_a_fresh_sequence(data):
    with tempfile.TemporaryDirectory() as tmp:
        module = _module_with(tmp, data)
        module.load_meta()
        assert module.append_event(make_entry(9))["sequence"] > len(LINES)
        assert "log_sequence_duplicate" not in {f.code for f in module.check().findings}
