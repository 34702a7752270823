from __future__ import annotations

from datetime import UTC, datetime

from hypothesis import given, settings
from hypothesis import strategies as st

from eventstore import serverlog

P = "[eventStore][loadMeta] "
PATH = "/srv/mishkah/data/branches/dar/modules/pos/live/events.meta.json"
BACKUP = PATH + ".corrupted.1761567827663.bak"

JOURNALD = f"""\
Oct 27 12:23:47 pos1 node[811]: {P}CORRUPTED FILE DETECTED - Attempting recovery
Oct 27 12:23:47 pos1 node[811]: {P}Error: Unexpected token : in JSON at position 2884
Oct 27 12:23:47 pos1 node[811]: {P}File path: {PATH}
Oct 27 12:23:47 pos1 node[811]: {P}Corrupted file backed up to: {BACKUP}
Oct 27 12:23:47 pos1 node[811]: {P}File size: 3012 bytes
Oct 27 12:23:47 pos1 node[811]: {P}Attempting to rebuild meta from event log...
Oct 27 12:23:47 pos1 node[811]: {P}Recovered meta from 48 events
Oct 27 12:23:47 pos1 node[811]: {P}Meta file rebuilt successfully
Oct 27 12:24:00 pos1 node[811]: an unrelated line
"""

PM2 = f"""\
0|mishkah  | 2025-10-28T09:00:01.250+03:00: {P}CORRUPTED FILE DETECTED - Attempting recovery
0|mishkah  | 2025-10-28T09:00:01.250+03:00: {P}Error: Unexpected end of JSON input
0|mishkah  | 2025-10-28T09:00:01.251+03:00: {P}File path: /d/branches/bab/modules/kds/live/events.meta.json
0|mishkah  | 2025-10-28T09:00:01.252+03:00: {P}Recovery failed: ENOSPC: no space left on device
0|mishkah  | 2025-10-20 09:00:01 +00:00: {P}JSON parse error: Unexpected token }} in JSON at position 1201
0|mishkah  | 2025-10-20 09:00:01 +00:00: {P}File path: /d/branches/bab/modules/pos/live/events.meta.json
0|mishkah  | 2025-10-20 09:00:01 +00:00: {P}Raw content (first 500 chars): {{"branchId": "bab",
"""


def test_a_journald_recovery_is_read_with_its_path_backup_and_event_count():
    [rec] = list(serverlog.parse(JOURNALD.splitlines(), year=2025))
    assert rec.outcome == "recovered" and rec.events == 48 and rec.size == 3012
    assert (rec.branch, rec.module, rec.backup) == ("dar", "pos", "events.meta.json.corrupted.1761567827663.bak")
    assert rec.at == datetime(2025, 10, 27, 12, 23, 47, tzinfo=UTC)
    assert rec.error == "Unexpected token : in JSON at position 2884" and rec.line == 1


def test_pm2_failures_and_the_old_build_are_failed_recoveries():
    first, second = serverlog.parse(PM2.splitlines(keepends=True))
    assert (first.outcome, first.reason, first.module) == ("failed", "ENOSPC: no space left on device", "kds")
    assert first.at == datetime(2025, 10, 28, 6, 0, 1, 250000, tzinfo=UTC)
    assert second.old_build and second.outcome == "failed" and second.error.startswith("Unexpected token }")
    assert second.at == datetime(2025, 10, 20, 9, 0, 1, tzinfo=UTC)


def test_the_same_text_gives_the_same_fingerprints_and_other_text_other_ones():
    a = [r.fingerprint for r in serverlog.parse(JOURNALD.splitlines())]
    b = [r.fingerprint for r in serverlog.parse(JOURNALD.encode().splitlines())]
    c = [r.fingerprint for r in serverlog.parse(JOURNALD.replace("48 events", "49 events").splitlines())]
    assert a == b and a != c


def test_a_recovery_without_a_timestamp_takes_the_time_of_its_backup():
    lines = [line.split(": ", 1)[1] for line in JOURNALD.splitlines()[:8]]
    [rec] = serverlog.parse(lines)
    assert rec.at == datetime.fromtimestamp(1761567827.663, tz=UTC)


@settings(max_examples=300, deadline=None)
@given(
    st.lists(
        st.one_of(
            st.text(max_size=200), st.binary(max_size=200), st.sampled_from(JOURNALD.splitlines() + PM2.splitlines())
        ),
        max_size=40,
    )
)
def test_no_input_makes_the_parser_raise(lines):
    for rec in serverlog.parse(lines):
        assert rec.outcome in ("recovered", "failed", "incomplete")
        rec.to_dict()
