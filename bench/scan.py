"""Scan benchmark: checking a tree of 10,000 modules cold, warm (nothing changed) and after 1%
of the logs grew, against the time to only stat() every file of the tree.

    .venv/bin/python bench/scan.py [--branches 500] [--modules 20] [--events 5] [--dir DIR]

The scan is the library's incremental check (``Module.check(previous=state)``), the part of
``manage.py scan`` that touches files. The scrub is a full check of every module
(``Module.check(previous=state, full=True)``: meta, whole log and backups read again, the log
compared with its checkpoints), against the I/O limit of reading those same files whole.
"""

from __future__ import annotations

import argparse
import os
import random
import shutil
import sys
import tempfile
import time
from pathlib import Path

import orjson
from common import make_line, mb, table

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from eventstore import EventStore
from eventstore import log as logmod
from eventstore import meta as metamod
from eventstore.rebuild import build_meta


def build_tree(root: Path, branches: int, modules: int, events: int) -> None:
    rng = random.Random(5)
    root.mkdir(parents=True, exist_ok=True)
    store = EventStore(root)
    for b in range(branches):
        for m in range(modules):
            branch, module = f"branch{b:03d}", f"mod{m:02d}"
            live = root / branch / "modules" / module / "live"
            live.mkdir(parents=True)
            (live / "events.log").write_bytes(b"".join(make_line(rng, i + 1, branch, module) for i in range(events)))
            mod = store.module(branch, module)
            new, _ = build_meta(branch, module, logmod.summarize(mod.log_path), [])
            (live / "events.meta.json").write_bytes(metamod.dumps(new))


def stat_pass(root: Path) -> tuple[float, int]:
    t = time.perf_counter()
    n = 0
    stack = [str(root)]
    while stack:
        with os.scandir(stack.pop()) as it:
            for e in it:
                e.stat(follow_symlinks=False)
                n += 1
                if e.is_dir(follow_symlinks=False):
                    stack.append(e.path)
    return time.perf_counter() - t, n


def scan(store: EventStore, states: dict, full: bool = False) -> tuple[float, int, dict]:
    t = time.perf_counter()
    read = 0
    out = {}
    for module in store.modules():
        key = (module.branch, module.name)
        h = module.check(previous=states.get(key), full=full)
        assert not full or h.verified_at is not None
        read += h.bytes_read
        out[key] = h.state
    return time.perf_counter() - t, read, out


def read_pass(store: EventStore) -> tuple[float, int]:
    """The I/O limit of a scrub: list every module and read its log, meta and backups whole."""
    t = time.perf_counter()
    n = 0
    for module in store.modules():
        listing = module.listing()
        names = [name for name, there in (("events.log", listing.log), ("events.meta.json", listing.meta)) if there]
        for name in [*names, *listing.backups]:
            with open(module.live_dir / name, "rb", buffering=0) as f:
                while chunk := f.read(1 << 20):
                    n += len(chunk)
    return time.perf_counter() - t, n


def service_passes(root: Path, work: Path, grow) -> list[tuple[str, float, int]]:
    """The same three passes through opsdash's scan service (module rows, incidents, backups in
    a fresh SQLite database)."""
    os.environ["DJANGO_SETTINGS_MODULE"] = "opsdash.settings"
    os.environ["DATABASE_URL"] = f"sqlite:///{work / 'bench.sqlite3'}"
    os.environ.setdefault("DJANGO_SECRET_KEY", "bench-only-secret-key-not-for-production-0123456789")
    import django
    from django.core.management import call_command

    django.setup()
    call_command("migrate", verbosity=0)
    from django.utils import timezone

    from opsdash.services.scan import scan_root

    out = []
    for label in ("cold scan (service)", "warm re-scan (service)", "after growth (service)"):
        if label.startswith("after"):
            grow()
        now = timezone.now() + timezone.timedelta(seconds=5)  # past the racily-clean window
        t = time.perf_counter()
        report = scan_root(root, host="bench", now=now)
        out.append((label, time.perf_counter() - t, report.bytes_read))
    return out


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--branches", type=int, default=500)
    p.add_argument("--modules", type=int, default=20)
    p.add_argument("--events", type=int, default=5)
    p.add_argument("--dir", default=None)
    p.add_argument("--no-service", action="store_true", help="skip the passes through the Django scan service")
    args = p.parse_args()
    work = Path(args.dir or tempfile.mkdtemp(prefix="bench-scan-"))
    root = work / "branches"
    try:
        if not root.exists():
            build_tree(root, args.branches, args.modules, args.events)
        store = EventStore(root)
        total_modules = args.branches * args.modules
        stat_pass(root)
        stat_s, files = stat_pass(root)
        cold_s, cold_read, states = scan(store, {})
        # state survives a round trip through JSON (it is kept in the database)
        states = {k: orjson.loads(orjson.dumps(v)) for k, v in states.items()}
        time.sleep(2.1)  # past the racily-clean window of files just written
        warm_s, warm_read, states = scan(store, states)
        rng = random.Random(9)
        grown = rng.sample(sorted(states), max(1, total_modules // 100))
        added = 0
        for branch, module in grown:
            line = make_line(rng, 10_000, branch, module)
            with open(root / branch / "modules" / module / "live" / "events.log", "ab") as f:
                f.write(line)
            added += len(line)
        time.sleep(2.1)
        grow_s, grow_read, states = scan(store, states)
        read_pass(store)  # the page cache as warm as for the scans
        io_s, io_bytes = read_pass(store)
        scrub_s, scrub_read, states = scan(store, states, full=True)
        rows = [["pass", "seconds", "modules/s", "bytes read", "vs stat pass"]]
        rows.append(["stat() every file", f"{stat_s:.2f}", f"{total_modules / stat_s:.0f}", "0", "1.00x"])
        rows.append(
            ["cold scan", f"{cold_s:.2f}", f"{total_modules / cold_s:.0f}", str(cold_read), f"{cold_s / stat_s:.2f}x"]
        )
        rows.append(
            [
                "warm re-scan",
                f"{warm_s:.2f}",
                f"{total_modules / warm_s:.0f}",
                str(warm_read),
                f"{warm_s / stat_s:.2f}x",
            ]
        )
        rows.append(
            [
                f"after {len(grown)} logs grew",
                f"{grow_s:.2f}",
                f"{total_modules / grow_s:.0f}",
                str(grow_read),
                f"{grow_s / stat_s:.2f}x",
            ]
        )
        rows.append(
            [
                "read every file whole",
                f"{io_s:.2f}",
                f"{total_modules / io_s:.0f}",
                str(io_bytes),
                f"{io_s / stat_s:.2f}x",
            ]
        )
        rows.append(
            [
                "scrub (full check)",
                f"{scrub_s:.2f}",
                f"{total_modules / scrub_s:.0f}",
                str(scrub_read),
                f"{scrub_s / stat_s:.2f}x",
            ]
        )
        if not args.no_service:

            def grow() -> None:
                for branch, module in grown:
                    with open(root / branch / "modules" / module / "live" / "events.log", "ab") as f:
                        f.write(make_line(rng, 20_000, branch, module))

            for label, seconds, read in service_passes(root, work, grow):
                rows.append(
                    [label, f"{seconds:.2f}", f"{total_modules / seconds:.0f}", str(read), f"{seconds / stat_s:.2f}x"]
                )
        print(table(rows))
        print(
            f"scrub: {mb(scrub_read) / scrub_s:.1f} MB/s against {mb(io_bytes) / io_s:.1f} MB/s reading the same "
            f"files whole (I/O limit): {io_s / scrub_s:.2f}x the limit, {scrub_s / io_s:.1f}x its time"
        )
        print(
            f"({total_modules} modules, {files} files and folders; {added} bytes appended, "
            f"{grow_read - added} more read for them ({(grow_read - added) / len(grown):.0f} per grown log: "
            "the fingerprint and end probe of each, checkpoint merges); targets: warm re-scan within 2x of the "
            "stat pass, growth re-scan reads the new bytes and about 1 KiB per grown log)"
        )
    finally:
        if not args.dir:
            shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
