"""Event browser benchmark: what one request of the dashboard's event browser costs on a big log.

    .venv/bin/python bench/events.py [--sizes 100M] [--full] [--with-1g/--no-with-1g] [--dir DIR] [--keep]

For each size: write an events.log in the real line shape (~1.4 KB per event), build its offset
index, then per request kind (first page, last page, the next page from the middle, a seek to a
sequence through the index and the page from there, a filtered search that matches once, a
filtered search that runs out of its time budget) print the bytes read (every os.pread counted,
not the library's own figure), the wall time and the peak memory (tracemalloc, in a second run of
the same request), each against a baseline of the same run: bytes read / the page's bytes,
peak memory / the read chunk, and for the searches the time against a raw pass that only reads
the same bytes (the I/O limit).
"""

from __future__ import annotations

import argparse
import os
import random
import shutil
import sys
import tempfile
import time
import tracemalloc
from pathlib import Path

from common import iso, make_line, mb, parse_size, table, write_log

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from eventstore import browse as browsemod
from eventstore.browse import CHUNK, EventFilter, browse, build_index, seek

BUDGET = 0.2  # the time budget of the search that runs out of it (a page request's default is 2 s)


class Reads:
    """Counts the bytes of every os.pread (the library reads only through it)."""

    def __init__(self) -> None:
        self.total = 0
        self.real = os.pread

    def __enter__(self) -> Reads:
        def pread(fd, n, at):
            data = self.real(fd, n, at)
            self.total += len(data)
            return data

        os.pread = pread
        return self

    def __exit__(self, *exc) -> None:
        os.pread = self.real


def raw_pass(path: Path, start: int, stop: int) -> float:
    """Seconds to only read bytes [start, stop) in CHUNK reads (the I/O limit of a search)."""
    fd = os.open(path, os.O_RDONLY)
    t = time.perf_counter()
    try:
        while start < stop:
            start += len(os.pread(fd, min(CHUNK, stop - start), start)) or stop
    finally:
        os.close(fd)
    return time.perf_counter() - t


def page_bytes(page) -> int:
    return sum(r.length + 1 for r in page.rows)


def measure(request) -> dict:
    """Run ``request`` (returns (page, extra)) twice: timed with reads counted, then under tracemalloc."""
    with Reads() as reads:
        t = time.perf_counter()
        page = request()
        seconds = time.perf_counter() - t
    tracemalloc.start()
    try:
        request()
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    return {"page": page, "seconds": seconds, "read": reads.total, "peak": peak}


def requests(path: Path, size: int, events: int, index) -> list[tuple[str, object]]:
    middle = browse(path, cursor=size // 2)
    rare_key = browse(path, cursor=size // 10, limit=1).rows[0].record_key
    target = events * 37 // 100

    def seek_and_page():
        return browse(path, cursor=seek(path, index, sequence=target), direction="newer", index=index)

    return [
        ("first page", lambda: browse(path, index=index)),
        ("last page", lambda: browse(path, cursor=0, direction="newer", index=index)),
        ("next page from the middle", lambda: browse(path, cursor=middle.older, index=index)),
        ("seek to a sequence + its page", seek_and_page),
        (
            "search, 1 match (record)",
            lambda: browse(path, where=EventFilter(record=rare_key), index=index, budget_seconds=600),
        ),
        (
            "search, 1 match (text, whole line)",
            lambda: browse(path, where=EventFilter(text=rare_key.upper()), index=index, budget_seconds=600),
        ),
        (
            f"search out of time ({BUDGET:g} s, since)",
            lambda: browse(path, where=EventFilter(since=iso(time.time() + 86400)), budget_seconds=BUDGET),
        ),
    ]


def run(size: int, work: Path) -> tuple[list[list[str]], dict]:
    path = work / "branches" / "dar" / "modules" / "pos" / "live" / "events.log"
    events = write_log(path, size)
    nbytes = path.stat().st_size
    raw_pass(path, 0, nbytes)  # warm the page cache: every figure is from memory
    label = f"{mb(nbytes):.0f} MB"
    rows = []
    with Reads() as reads:
        t = time.perf_counter()
        index = build_index(path)
        build_s = time.perf_counter() - t
    raw_s = raw_pass(path, 0, nbytes)
    rows.append(
        [
            label,
            "build the index",
            str(reads.total),
            f"{build_s * 1000:.0f}",
            "-",
            "-",
            "-",
            "-",
            f"{build_s / raw_s:.2f}x",
        ]
    )
    with open(path, "ab") as f:
        added = f.write(make_line(random.Random(1), events + 1))
    with Reads() as reads:
        t = time.perf_counter()
        index = build_index(path, previous=index)
        grow_s = time.perf_counter() - t
    rows.append([label, f"extend it ({added} bytes appended)", str(reads.total), f"{grow_s * 1000:.1f}"] + ["-"] * 5)
    facts = {"appended": added, "extend_read": reads.total}
    for name, request in requests(path, nbytes, events, index):
        m = measure(request)
        page = m["page"]
        pb = page_bytes(page)
        searched = page.searched[1] - page.searched[0]
        search = name.startswith("search")
        vs_raw = f"{m['seconds'] / raw_pass(path, *page.searched):.2f}x" if search else "-"
        rows.append(
            [
                label,
                name + ("" if page.complete else f" [stopped after {mb(searched):.0f} MB]"),
                str(m["read"]),
                f"{m['seconds'] * 1000:.1f}",
                f"{m['peak'] / 1024:.0f}",
                f"{m['read'] / pb:.1f}x" if pb and not search else "-",
                f"{m['read'] / searched:.2f}x" if search else "-",
                f"{m['peak'] / CHUNK:.1f}x",
                vs_raw,
            ]
        )
    return rows, facts


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--sizes", default=None, help="comma-separated log sizes (default 100M; 100M,1G with --full)")
    p.add_argument("--full", action="store_true", help="the full run: 100 MB and 1 GB")
    p.add_argument("--with-1g", action=argparse.BooleanOptionalAction, default=None, help="add a 1 GB log")
    p.add_argument("--dir", default=None, help="work folder (default: a temp folder, removed after)")
    p.add_argument("--keep", action="store_true")
    args = p.parse_args()
    sizes = (args.sizes or "100M").split(",")
    if (args.full if args.with_1g is None else args.with_1g) and "1G" not in sizes:
        sizes.append("1G")
    header = [
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
    rows = [header]
    base = Path(args.dir) if args.dir else Path(tempfile.mkdtemp(prefix="bench-events-"))
    facts = {}
    try:
        for size_text in sizes:
            work = base / size_text
            shutil.rmtree(work, ignore_errors=True)
            try:
                got, facts = run(parse_size(size_text), work)
            finally:
                if not args.keep:
                    shutil.rmtree(work, ignore_errors=True)
            rows.extend(got)
    finally:
        if not args.dir and not args.keep:
            shutil.rmtree(base, ignore_errors=True)
    print(table(rows))
    print(
        f"(chunk {CHUNK // 1024} KiB, pages of 50, index every {browsemod.DEFAULT_EVERY >> 20} MiB; "
        f"{facts.get('appended')} bytes appended, {facts.get('extend_read')} read to extend the index; "
        "targets: a page reads about its bytes + a chunk (+ half an index spacing for its line numbers), "
        "peak memory a few chunks, a search near the raw read rate)"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
