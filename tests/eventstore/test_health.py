"""health: one declaration per finding code (FINDING_SPECS), and every finding the store emits
conforms to it: the demo root's, odd metas', and (in test_fuzz.py) every fuzzed input's."""

from __future__ import annotations

import json
import os
import time

import pytest

from eventstore import CODES, EventStore, health, shapes
from eventstore import meta as metamod
from eventstore.demo import write_demo_root
from tests.eventstore.conftest import meta_bytes, seed


def assert_conforms(h) -> None:
    for f in h.findings:
        assert not health.FINDING_SPECS[f.code].problems(f.detail), f.to_dict()


def test_codes_are_the_specs_severity_and_meaning():
    assert list(CODES) == list(health.FINDING_SPECS)
    for code, spec in health.FINDING_SPECS.items():
        assert spec.code == code and CODES[code] == (spec.severity, spec.meaning) and spec.severity in health.SEVERITIES
        assert all(k.shape in shapes.SHAPES and k.meaning for k in spec.detail), code
        assert len(spec.keys()) == len(spec.detail)
        assert not spec.keys() & {"code", "severity", "message"}, code  # Finding.to_dict's own keys


def test_make_refuses_a_detail_key_the_code_does_not_declare():
    with pytest.raises(ValueError, match="declares no detail key"):
        health.make("meta_missing", "text", log_events=3, events=3)
    with pytest.raises(ValueError, match="unknown finding code"):
        health.make("no_such_code", "text")
    f = health.make("meta_corrupt", "text", message="Expecting value", pos=0, line=1, col=1, byte=0, size=0)
    assert f.detail["error_message"] == "Expecting value"  # a clash with the fixed keys is renamed, then checked


def test_problems_names_every_way_a_detail_breaks_its_spec():
    spec = health.FINDING_SPECS["log_sequence_gap"]
    assert spec.problems({"count": 2, "gaps": [[3, 4]]}) == []
    problems = spec.problems({"count": -1, "extra": 1})
    assert (
        any("undeclared" in p for p in problems)
        and any("missing" in p for p in problems)
        and any("count" in p for p in problems)
    )


def test_every_finding_of_the_demo_root_conforms_also_when_read_back_from_its_state(tmp_path):
    write_demo_root(tmp_path / "demo", events_per_module=40)
    seen = set()
    for module in EventStore(tmp_path / "demo", fsync=False).modules():
        first = module.check()
        assert_conforms(first)
        assert_conforms(
            module.check(now=time.time() + 10, previous=json.loads(json.dumps(first.state)))
        )  # past the racy window
        seen |= {f.code for f in first.findings}
    # unreadable needs a file the test cannot read; log_changed_in_place an earlier check (test_checkpoints.py)
    assert seen == set(CODES) - {"unreadable", "log_changed_in_place"}


ODD_METAS = [
    b"[1, 2]",
    b"null",
    b'{"totalEvents": -1}',
    b'{"totalEvents": "6"}',
    b'{"totalEvents": 1e400}',
    b'{"totalEvents": 6, "lastEventId": 5, "tableCursors": null, "lastServedTableIds": [], "branchId": "zamalek"}',
    b'{"totalEvents": 6',
    b"\xef\xbb\xbf{}",
    b"",
]


@pytest.mark.parametrize("data", ODD_METAS)
def test_every_finding_of_an_odd_meta_conforms(store, data):
    seeded = seed(store)
    seeded.write_meta(data)
    assert_conforms(seeded.module.check())


def test_an_oversized_meta_and_an_unreadable_file_conform(store, monkeypatch):
    seeded = seed(store)
    monkeypatch.setattr(metamod, "MAX_META_BYTES", 100)
    seeded.write_meta(meta_bytes(seeded.meta))
    h = seeded.module.check()
    assert "meta_invalid" in {f.code for f in h.findings}
    assert_conforms(h)
    monkeypatch.undo()
    os.symlink(seeded.module.meta_path, seeded.live / "events.log.torn.1761500200000.bak")
    assert_conforms(seeded.module.check())
