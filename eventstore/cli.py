"""``python -m eventstore``: check, show, rebuild and list backups from a POS server's shell.

Exit status of ``check`` follows the Nagios convention: 0 all healthy, 1 worst is a warning,
2 any critical, 3 could not run. ``check --state FILE`` keeps the modules' check states in FILE
(read before, written atomically after), so that a later ``check --state FILE`` reads only what
changed and ``check --full --state FILE`` compares every log with its checkpoints. Other commands exit 0 on success, 3 on bad input, 2 when a
repair could not be made. Errors are one line on stderr, never a traceback.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any, TextIO

import orjson

from . import EventStore, EventStoreError, InvalidName, RefusedFolder, RootError
from .checkpoints import iso
from .fileio import atomic_write
from .health import STATUS_RANK, STATUSES, Health
from .layout import printable

EXIT_UNUSABLE = 3  # the root or a name was refused (a status is its STATUS_RANK)


def _json(out: TextIO, value: Any) -> None:
    out.write(orjson.dumps(value, option=orjson.OPT_INDENT_2 | orjson.OPT_NON_STR_KEYS, default=str).decode() + "\n")


def _table(rows: list[list[str]], out: TextIO) -> None:
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    for row in rows:
        out.write("  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip() + "\n")


STATE_FILE_VERSION = 1  # {"version": 1, "root": ..., "modules": {"<branch>/<module>": Health.state}}


def read_states(path: Path | None, err: TextIO) -> dict[str, Any]:
    """The modules' states kept in ``path`` (none: a first run); a file that cannot be read or
    is not one gives a one-line message on ``err`` and no states (every module read in full)."""
    if path is None:
        return {}
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        return {}
    except OSError as exc:
        err.write(
            f"eventstore check: state file {path} could not be read ({exc.strerror}); reading every file in full\n"
        )
        return {}
    try:
        value = orjson.loads(data)
    except orjson.JSONDecodeError as exc:
        err.write(f"eventstore check: state file {path} is damaged ({exc}); reading every file in full\n")
        return {}
    if not (type(value) is dict and value.get("version") == STATE_FILE_VERSION and type(value.get("modules")) is dict):
        err.write(f"eventstore check: state file {path} is not one this version writes; reading every file in full\n")
        return {}
    return value["modules"]


def _figures(health: Health) -> dict[str, Any]:
    return {"verified_at": health.verified_at, "bytes_read": health.bytes_read, "full": health.full}


def cmd_check(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    store = EventStore(args.root)
    state_path = Path(args.state) if args.state else None
    previous = read_states(state_path, err)
    states: dict[str, Any] = {}
    modules, refused = [], []
    bytes_read = 0
    for found in store.walk():
        if isinstance(found, RefusedFolder):
            refused.append(found.to_dict())  # a name that breaks the path rules: never read, critical
            continue
        key = f"{found.branch}/{found.name}"
        health = found.check(previous=previous.get(key), full=args.full)
        states[key] = health.state
        bytes_read += health.bytes_read
        modules.append({"branch": found.branch, "module": found.name, **health.to_dict(), **_figures(health)})
    if state_path is not None:
        document = {"version": STATE_FILE_VERSION, "root": str(store.root), "modules": states}
        atomic_write(state_path, orjson.dumps(document, option=orjson.OPT_NON_STR_KEYS, default=str))
    worst = max([STATUS_RANK[m["status"]] for m in modules] + [STATUS_RANK["critical"]] * bool(refused), default=0)
    if args.format == "json":
        counts = {s: sum(1 for m in modules if m["status"] == s) for s in STATUSES}
        _json(
            out,
            {
                "root": str(store.root),
                "status": STATUSES[worst],
                "counts": counts,
                "modules": modules,
                "not_scanned": refused,
                "bytes_read": bytes_read,
            },
        )
    else:
        rows = [["BRANCH", "MODULE", "STATUS", "EVENTS", "FINDINGS"]]
        for m in modules:
            codes = ", ".join(f["code"] for f in m["findings"]) or "-"
            rows.append(
                [
                    printable(m["branch"]),
                    printable(m["module"]),
                    m["status"].upper(),
                    str(m["stats"]["log_events"]),
                    codes,
                ]
            )
        if len(rows) > 1:
            _table(rows, out)
        counts = ", ".join(f"{sum(1 for m in modules if m['status'] == s)} {s}" for s in STATUSES)
        how = "read in full" if args.full or not previous else "read incrementally"
        out.write(f"{len(modules)} module(s) under {store.root}: {counts}; {bytes_read} bytes {how}\n")
        for r in refused:
            out.write(f"NOT SCANNED  {r['path']}: {r['reason']}\n")
    return worst


def cmd_show(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    store = EventStore(args.root)
    module = store.module(args.branch, args.module)
    if not module.exists():
        raise RootError(f"{args.branch}/{args.module}: no such module under {store.root}")
    health = module.check()
    backups = [b.to_dict() for b in module.backups()]
    if args.format == "json":
        _json(
            out,
            {
                "branch": module.branch,
                "module": module.name,
                **health.to_dict(),
                **_figures(health),
                "backups": backups,
            },
        )
        return STATUS_RANK[health.status]
    s = health.stats
    out.write(f"{module.branch}/{module.name}: {health.status.upper()}\n")
    out.write(f"  folder   {module.live_dir}\n")
    out.write(
        f"  log      {s.log_events} events, {s.log_size} bytes, highest sequence {s.log_max_sequence}, last {s.log_last_event_at}\n"
    )
    meta_state = "valid" if s.meta_valid else ("damaged" if s.meta_exists else "missing")
    out.write(f"  meta     {meta_state}, totalEvents {s.meta_total_events}, lastEventId {s.meta_last_event_id}\n")
    verified = iso(health.verified_at) if health.verified_at is not None else "never"
    out.write(f"  verified {verified} (log read in full), {health.bytes_read} bytes read by this check\n")
    for f in health.findings:
        out.write(f"  [{f.severity}] {f.code}: {f.message}\n")
    for b in backups:
        state = "parses" if b["parses"] else f"damaged: {b['error']}"
        out.write(f"  backup   {b['name']}  {b['size']} bytes  sha256 {b['sha256'][:16]}  {state}\n")
    return STATUS_RANK[health.status]


def cmd_rebuild(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    store = EventStore(args.root)
    module = store.module(args.branch, args.module)
    report = module.rebuild()
    if args.format == "json":
        _json(out, report.to_dict())
        return 0
    out.write(f"rebuilt {module.branch}/{module.name}: {report.events_read} events read ({report.bytes_read} bytes)\n")
    out.write(f"  backup of the old meta: {report.backup or 'none (there was no meta)'}\n")
    if report.old_meta_error:
        out.write(f"  old meta was damaged: {report.old_meta_error}\n")
    if report.bad_line_count:
        lines = ", ".join(str(b["line"]) for b in report.bad_lines[:10])
        out.write(f"  {report.bad_line_count} bad line(s) in the log, kept in place: line {lines}\n")
    if report.duplicate_count:
        out.write(f"  {report.duplicate_count} duplicate sequence(s); totalEvents set so the next one is unique\n")
    out.write(f"  totalEvents {report.new_meta['totalEvents']}, lastEventId {report.new_meta['lastEventId']}\n")
    for key, source in report.sources.items():
        if source not in ("log", "folder", "now"):
            out.write(f"  {key:26} from {source}\n")
    return 0


def cmd_backups(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    store = EventStore(args.root)
    rows: list[dict[str, Any]] = []
    for module in store.modules():
        for b in module.backups():
            rows.append({"branch": module.branch, "module": module.name, **b.to_dict()})
    if args.format == "json":
        _json(out, {"root": str(store.root), "backups": rows})
        return 0
    table = [["BRANCH", "MODULE", "BACKUP", "SIZE", "TIME", "PARSES"]]
    for r in rows:
        table.append(
            [r["branch"], r["module"], r["name"], str(r["size"]), str(r["created_at"]), "yes" if r["parses"] else "no"]
        )
    if len(table) > 1:
        _table(table, out)
    out.write(f"{len(rows)} backup(s) under {store.root}\n")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m eventstore", description="Check and repair a Mishkah OS event store."
    )
    sub = parser.add_subparsers(dest="command", required=True)
    fmt = argparse.ArgumentParser(add_help=False)
    fmt.add_argument("--format", choices=("text", "json"), default="text")
    p = sub.add_parser("check", parents=[fmt], help="check every module under ROOT (exit 0/1/2 like Nagios)")
    p.add_argument("root")
    p.add_argument(
        "--full",
        action="store_true",
        help="read every meta, log and backup whole and compare each log with its checkpoints (from --state)",
    )
    p.add_argument(
        "--state",
        metavar="FILE",
        help="read the modules' last check states from FILE (read only what changed) and write the new ones",
    )
    p.set_defaults(func=cmd_check)
    p = sub.add_parser("show", parents=[fmt], help="one module: findings, figures, backups")
    p.add_argument("root")
    p.add_argument("branch")
    p.add_argument("module")
    p.set_defaults(func=cmd_show)
    p = sub.add_parser(
        "rebuild", parents=[fmt], help="back up the meta and rebuild it from the log, salvaging the rest"
    )
    p.add_argument("root")
    p.add_argument("branch")
    p.add_argument("module")
    p.set_defaults(func=cmd_rebuild)
    p = sub.add_parser("backups", parents=[fmt], help="every backup under ROOT with size, sha256 and time")
    p.add_argument("root")
    p.set_defaults(func=cmd_backups)
    return parser


def main(argv: Sequence[str] | None = None, out: TextIO | None = None, err: TextIO | None = None) -> int:
    out = out or sys.stdout
    err = err or sys.stderr
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return args.func(args, out, err)
    except (RootError, InvalidName) as exc:
        err.write(f"eventstore {args.command}: {exc}\n")
        return EXIT_UNUSABLE
    except (EventStoreError, OSError) as exc:
        reason = str(exc) if isinstance(exc, EventStoreError) else f"{exc.strerror or exc} ({exc.filename})"
        err.write(f"eventstore {args.command}: {reason}\n")
        return 2 if args.command == "rebuild" else EXIT_UNUSABLE
    except KeyboardInterrupt:
        err.write(f"eventstore {args.command}: interrupted\n")
        return EXIT_UNUSABLE
