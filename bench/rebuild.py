"""Rebuild benchmark: the meta rebuild against the I/O limit and the single-core parse limit.

    .venv/bin/python bench/rebuild.py [--sizes 100M,1G] [--dir DIR] [--keep]

For each size: write an events.log in the real line shape (~1.4 KB per event), damage the meta,
then time in the same run (a) a raw pass that reads the file and counts newlines (the I/O
limit), (b) a bare loop that parses every line with orjson on one core (the parse limit),
(c) ``Module.rebuild()`` in a fresh process, whose peak RSS is read from the kernel, and (d) a
verify in a fresh process: ``Module.check(previous=state, full=True)``, which reads the whole log
again, parses it and compares it with its checkpoints (a sha256 per 8 MiB, made as it reads).
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import orjson
from common import mb, parse_size, table, write_log

HERE = Path(__file__).resolve().parent

CHILD = r"""
import json, resource, sys, time
sys.path.insert(0, sys.argv[1])
from eventstore import EventStore
m = EventStore(sys.argv[2]).module("dar", "pos")
t = time.perf_counter()
r = m.rebuild()
dt = time.perf_counter() - t
peak_kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
worker_kb = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
print(json.dumps({"seconds": dt, "events": r.events_read, "bad": r.bad_line_count, "peak_kb": peak_kb, "worker_kb": worker_kb,
                  "total": r.new_meta["totalEvents"], "ack_source": r.sources.get("lastAckId")}))
"""

VERIFY = r"""
import json, sys, time
sys.path.insert(0, sys.argv[1])
from eventstore import EventStore
m = EventStore(sys.argv[2]).module("dar", "pos")
first = m.check(now=time.time() + 10)
t = time.perf_counter()
h = m.check(now=time.time() + 10, previous=first.state, full=True)
dt = time.perf_counter() - t
codes = [f.code for f in h.findings]
print(json.dumps({"seconds": dt, "bytes_read": h.bytes_read, "codes": codes, "pieces": len(h.state["checkpoints"]["pieces"])}))
"""

BASELINE = r"""
import resource, sys
print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)
"""


def raw_pass(path: Path) -> tuple[float, int]:
    t = time.perf_counter()
    n = 0
    with open(path, "rb", buffering=0) as f:
        while chunk := f.read(1 << 20):
            n += chunk.count(b"\n")
    return time.perf_counter() - t, n


def parse_pass(path: Path) -> tuple[float, int]:
    loads = orjson.loads
    t = time.perf_counter()
    n = 0
    with open(path, "rb") as f:
        for line in f:
            loads(line)
            n += 1
    return time.perf_counter() - t, n


def run(size: int, workdir: Path) -> dict:
    root = workdir / "branches"
    live = root / "dar" / "modules" / "pos" / "live"
    log = live / "events.log"
    events = write_log(log, size)
    meta = {"branchId": "dar", "moduleId": "pos", "totalEvents": events, "lastAckId": "evt-keep-me"}
    text = json.dumps(meta, indent=2)
    (live / "events.meta.json").write_text(text + text[-40:])  # a document plus the tail of another
    nbytes = log.stat().st_size
    raw_pass(log)  # warm the page cache so all three passes read from memory
    io_s, _ = raw_pass(log)
    parse_s, _ = parse_pass(log)
    base_kb = int(subprocess.run([sys.executable, "-c", BASELINE], capture_output=True, text=True, check=True).stdout)
    out = subprocess.run(
        [sys.executable, "-c", CHILD, str(HERE.parent), str(root)], capture_output=True, text=True, check=True
    )
    child = json.loads(out.stdout)
    assert child["events"] == events and child["bad"] == 0 and child["ack_source"] == "prefix", child
    out = subprocess.run(
        [sys.executable, "-c", VERIFY, str(HERE.parent), str(root)], capture_output=True, text=True, check=True
    )
    verify = json.loads(out.stdout)
    assert "log_changed_in_place" not in verify["codes"], verify
    return {
        "size_mb": mb(nbytes),
        "events": events,
        "io_mbs": mb(nbytes) / io_s,
        "parse_mbs": mb(nbytes) / parse_s,
        "rebuild_mbs": mb(nbytes) / child["seconds"],
        "rebuild_s": child["seconds"],
        "peak_rss_mb": child["peak_kb"] / 1024,
        "worker_rss_mb": child["worker_kb"] / 1024,
        "interpreter_rss_mb": base_kb / 1024,
        "verify_mbs": mb(nbytes) / verify["seconds"],
        "verify_read": verify["bytes_read"],
    }


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--sizes", default="100M", help="comma-separated log sizes, e.g. 100M,1G")
    p.add_argument("--dir", default=None, help="work folder (default: a temp folder, removed after)")
    p.add_argument("--keep", action="store_true")
    args = p.parse_args()
    rows = [
        [
            "log",
            "events",
            "I/O limit MB/s",
            "parse limit MB/s",
            "rebuild MB/s",
            "rebuild/parse",
            "rebuild/I/O",
            "peak RSS MB",
            "worker peak RSS MB",
            "verify MB/s",
            "verify/parse",
        ]
    ]
    results = []
    base = Path(args.dir) if args.dir else Path(tempfile.mkdtemp(prefix="bench-rebuild-"))
    for size_text in args.sizes.split(","):
        work = base / size_text
        shutil.rmtree(work, ignore_errors=True)
        try:
            r = run(parse_size(size_text), work)
        finally:
            if not args.keep:
                shutil.rmtree(work if args.dir else base, ignore_errors=True)
        results.append(r)
        rows.append(
            [
                f"{r['size_mb']:.0f} MB",
                str(r["events"]),
                f"{r['io_mbs']:.0f}",
                f"{r['parse_mbs']:.0f}",
                f"{r['rebuild_mbs']:.0f}",
                f"{r['rebuild_mbs'] / r['parse_mbs']:.2f}x",
                f"{r['rebuild_mbs'] / r['io_mbs']:.2f}x",
                f"{r['peak_rss_mb']:.0f}",
                f"{r['worker_rss_mb']:.0f}",
                f"{r['verify_mbs']:.0f}",
                f"{r['verify_mbs'] / r['parse_mbs']:.2f}x",
            ]
        )
    print(table(rows))
    print(
        f"(peak RSS of a bare interpreter: {results[0]['interpreter_rss_mb']:.0f} MB; targets: rebuild >= 1.5x parse limit, peak RSS < 64 MB)"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
