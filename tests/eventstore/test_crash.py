"""A writer killed with SIGKILL at random moments, many times; every acknowledged event survives.

``EVENTSTORE_CRASH_ROUNDS`` sets the number of kills (30 by default; e.g. 500 for a long run).
"""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
from collections import Counter

from eventstore import EventStore
from tests.eventstore.conftest import LOAD_HELPERS, child_env, log_events

ROUNDS = int(os.environ.get("EVENTSTORE_CRASH_ROUNDS", "30"))

WRITER = (
    LOAD_HELPERS
    + r"""
from eventstore import EventStore
root, round_no = sys.argv[1], int(sys.argv[2])
module = EventStore(root).module("dar", "pos")
i = 0
while True:
    line = module.append_event(helpers.make_entry(i, seed=round_no))
    print(line["id"], flush=True)  # acknowledged: append_event returned
    module.update_meta({"lastAckId": line["id"]})
    i += 1
"""
)


def test_every_acknowledged_event_survives_repeated_sigkill(root):
    rng = random.Random(int(os.environ.get("EVENTSTORE_CRASH_SEED", "1")))
    EventStore(root).module("dar", "pos").live_dir.mkdir(parents=True)
    acked: list[str] = []
    for round_no in range(ROUNDS):
        proc = subprocess.Popen(
            [sys.executable, "-c", WRITER, str(root), str(round_no)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=child_env(),
        )
        first = proc.stdout.readline()  # the writer is running and has appended at least once
        assert first, proc.stderr.read()
        time.sleep(rng.uniform(0, 0.03))
        proc.send_signal(signal.SIGKILL)
        rest, _err = proc.communicate(timeout=30)
        assert proc.returncode == -signal.SIGKILL
        acked.append(first.strip())
        acked.extend(rest.split())

    module = EventStore(root).module("dar", "pos")
    last = module.append_event({"table": "pos_shift", "record": {"id": "after-the-crashes"}})
    acked.append(last["id"])

    events = log_events(module.log_path)
    counts = Counter(e["id"] for e in events)
    assert all(counts[a] == 1 for a in acked), [a for a in acked if counts[a] != 1]
    sequences = [e["sequence"] for e in events]
    assert len(set(sequences)) == len(sequences) == sequences[-1]
    assert sequences == sorted(sequences)

    meta = module.load_meta()
    assert meta["totalEvents"] == len(events) and meta["lastEventId"] == last["id"]
    found = {f.code for f in module.check().findings}
    assert not found & {
        "meta_drift",
        "meta_corrupt",
        "meta_invalid",
        "log_bad_line",
        "log_sequence_duplicate",
        "log_sequence_gap",
    }, found
