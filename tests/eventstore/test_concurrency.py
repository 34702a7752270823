"""Four processes appending at once, each append followed by update_meta({"lastAckId"})."""

from __future__ import annotations

import json
import subprocess
import sys

from eventstore import EventStore
from tests.eventstore.conftest import LOAD_HELPERS, child_env, derived, log_events, temp_files

PROCESSES = 4
PER_PROCESS = 100

APPENDER = (
    LOAD_HELPERS
    + r"""
from eventstore import EventStore
root, worker, count = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
module = EventStore(root, fsync=False).module("dar", "pos")
sys.stdin.readline()  # start together
for i in range(count):
    line = module.append_event(helpers.make_entry(i, seed=worker))
    module.update_meta({"lastAckId": line["id"], "lastClientTableIds": {f"w{worker}": [line["id"]]}})
    print(line["id"], flush=True)
"""
)


def test_concurrent_appends_give_unique_sequences_and_a_meta_that_matches_the_log(root):
    EventStore(root).module("dar", "pos").live_dir.mkdir(parents=True)
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", APPENDER, str(root), str(w), str(PER_PROCESS)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=child_env(),
        )
        for w in range(PROCESSES)
    ]
    for p in procs:
        p.stdin.write("go\n")
        p.stdin.flush()
    acked = []
    for p in procs:
        out, err = p.communicate(timeout=60)
        assert p.returncode == 0, err
        acked.extend(out.split())

    module = EventStore(root, fsync=False).module("dar", "pos")
    events = log_events(module.log_path)
    n = PROCESSES * PER_PROCESS
    assert sorted(e["sequence"] for e in events) == list(range(1, n + 1))
    assert sorted(e["id"] for e in events) == sorted(acked)
    assert [e["sequence"] for e in events] == list(range(1, n + 1))  # appended in sequence order

    meta = json.loads(module.meta_path.read_bytes())
    assert meta["lastAckId"] in acked
    assert set(meta["lastClientTableIds"]) == {f"w{w}" for w in range(PROCESSES)}  # no lost update
    appended = derived(meta)
    module.rebuild()
    assert derived(json.loads(module.meta_path.read_bytes())) == appended
    assert appended["totalEvents"] == n and appended["lastEventId"] == events[-1]["id"]
    assert temp_files(module.live_dir) == []
    assert [f.code for f in module.check().findings] == ["backup_present"]  # the rebuild's own backup
