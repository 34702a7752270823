"""A tiny run of the event browser benchmark (bench/events.py), so it never rots. Asserts the
output's shape and the byte counts that do not depend on the machine, never a time."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def test_events_benchmark_prints_every_request_with_its_ratios():
    out = subprocess.run(
        [sys.executable, "bench/events.py", "--sizes", "3M"], cwd=REPO, capture_output=True, text=True, timeout=300
    )
    assert out.returncode == 0, out.stderr
    lines = out.stdout.strip().splitlines()
    header = re.split(r"\s{2,}", lines[0].strip())
    assert header == [
        "log",
        "request",
        "bytes read",
        "ms",
        "peak KiB",
        "read/page",
        "read/searched",
        "peak/chunk",
        "time/raw read",
    ]
    rows = {r[1].split(" [")[0]: r for r in (re.split(r"\s{2,}", line.strip()) for line in lines[1:-1])}
    assert all(r[0] == "3 MB" and len(r) == len(header) for r in rows.values()), rows
    size = int(rows["build the index"][2])
    assert size >= 3_000_000
    appended = int(re.search(r"(\d+) bytes appended", out.stdout).group(1))
    extend = next(k for k in rows if k.startswith("extend it"))
    assert int(rows[extend][2]) == appended + 64  # only the new bytes, and the guard before them
    for name in ("first page", "last page", "next page from the middle", "seek to a sequence + its page"):
        r = rows[name]
        assert int(r[2]) > 0 and float(r[3]) >= 0 and r[5].endswith("x") and r[7].endswith("x"), r
    # a chunk, and the 64 bytes that tell the index is of this file
    assert int(rows["first page"][2]) <= 256 * 1024 + 64 and int(rows["last page"][2]) <= 256 * 1024 + 64
    for name in ("search, 1 match (record)", "search, 1 match (text, whole line)"):
        r = rows[name]
        assert r[6] == "1.00x" and r[8].endswith("x") and int(r[2]) >= size, r
    assert any(k.startswith("search out of time") for k in rows)
    assert lines[-1].startswith("(chunk 256 KiB")
