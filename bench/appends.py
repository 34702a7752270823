"""Append benchmark: events/s of Module.append_event with 1 and 4 writer processes, fsync on
and off, bytes written per event; against an SQLite insert per event (WAL, synchronous=FULL).

    .venv/bin/python bench/appends.py [--events 2000] [--dir DIR]

Each writer process appends events/processes events of the real line shape; bytes written are
read from the kernel (/proc/self/io wchar) in each writer.
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import random
import shutil
import sqlite3
import sys
import tempfile
import time
from pathlib import Path

import orjson
from common import make_entry, table

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))


def _wchar() -> int:
    with open("/proc/self/io") as f:
        for line in f:
            if line.startswith("wchar:"):
                return int(line.split()[1])
    return 0


def store_writer(root: str, count: int, fsync: bool, seed: int, start, q) -> None:
    from eventstore import EventStore

    module = EventStore(root, fsync=fsync).module("dar", "pos")
    rng = random.Random(seed)
    entries = [make_entry(rng) for _ in range(count)]
    start.wait()
    w0 = _wchar()
    for entry in entries:
        module.append_event(entry)
    q.put(_wchar() - w0)


def sqlite_writer(path: str, count: int, seed: int, start, q) -> None:
    rng = random.Random(seed)
    rows = [orjson.dumps(make_entry(rng)) for _ in range(count)]
    db = sqlite3.connect(path, timeout=60, isolation_level=None)
    db.execute("PRAGMA journal_mode=WAL")
    db.execute("PRAGMA synchronous=FULL")
    start.wait()
    w0 = _wchar()
    for row in rows:
        db.execute("BEGIN IMMEDIATE")
        db.execute("INSERT INTO events(body) VALUES (?)", (row,))
        db.execute("COMMIT")
    q.put(_wchar() - w0)
    db.close()


def run(kind: str, procs: int, total: int, workdir: Path, fsync: bool = True) -> tuple[float, float]:
    ctx = mp.get_context("fork")
    start = ctx.Barrier(procs + 1)
    q = ctx.Queue()
    per = total // procs
    if kind == "store":
        root = workdir / f"store-{procs}-{fsync}"
        (root / "dar" / "modules" / "pos" / "live").mkdir(parents=True)
        args = [(str(root), per, fsync, i, start, q) for i in range(procs)]
        target = store_writer
    else:
        path = workdir / f"sqlite-{procs}.db"
        db = sqlite3.connect(path)
        db.execute("PRAGMA journal_mode=WAL")
        db.execute("CREATE TABLE events(seq INTEGER PRIMARY KEY AUTOINCREMENT, body BLOB NOT NULL)")
        db.commit()
        db.close()
        args = [(str(path), per, i, start, q) for i in range(procs)]
        target = sqlite_writer
    workers = [ctx.Process(target=target, args=a) for a in args]
    for w in workers:
        w.start()
    start.wait()
    t = time.perf_counter()
    written = sum(q.get() for _ in workers)
    dt = time.perf_counter() - t
    for w in workers:
        w.join()
    if kind == "store":
        from eventstore import EventStore

        h = EventStore(root).module("dar", "pos").check()
        assert h.status == "healthy" and h.stats.log_events == per * procs, h.to_dict()
    return per * procs / dt, written / (per * procs)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--events", type=int, default=2000)
    p.add_argument("--dir", default=None)
    args = p.parse_args()
    work = Path(args.dir or tempfile.mkdtemp(prefix="bench-appends-"))
    try:
        rows = [["writer", "processes", "fsync", "events/s", "bytes written/event", "vs SQLite"]]
        sqlite = {}
        for procs in (1, 4):
            sqlite[procs] = run("sqlite", procs, args.events, work)
        for procs in (1, 4):
            for fsync in (True, False):
                rate, per_event = run("store", procs, args.events, work, fsync)
                rows.append(
                    [
                        "eventstore",
                        str(procs),
                        "on" if fsync else "off",
                        f"{rate:.0f}",
                        f"{per_event:.0f}",
                        f"{rate / sqlite[procs][0]:.2f}x",
                    ]
                )
            rate, per_event = sqlite[procs]
            rows.append(["sqlite WAL FULL", str(procs), "on", f"{rate:.0f}", f"{per_event:.0f}", "1.00x"])
        print(table(rows))
        print("(target: durable eventstore appends at least as fast as the SQLite baseline)")
    finally:
        if not args.dir:
            shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
