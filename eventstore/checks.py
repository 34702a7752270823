"""``Module.check()``: read-only diagnosis of one module, yielding the DESIGN.md findings."""

from __future__ import annotations

import hashlib
import os
from typing import Any

from . import clock, health, layout
from . import log as logmod
from . import meta as metamod
from .errors import InvalidName
from .fileio import open_nofollow, read_capped
from .archive import orphan_temps
from .folder import Listing, ModuleFiles
from .health import Finding, Health, ModuleStats


def _unreadable(name: str, exc: OSError | str) -> Finding:
    reason = exc if isinstance(exc, str) else (exc.strerror or str(exc))
    return health.make("unreadable", f"{name} could not be read: {reason}", file=name, reason=reason)


STATE_VERSION = 1
FINGERPRINT_BYTES = 4096
# A file modified this recently may change again within the same mtime tick without its
# stamp changing ("racily clean", as git calls it): look at its bytes instead of trusting it.
RACY_SECONDS = 2.0


def _stamp(path) -> list[int] | None:
    try:
        st = os.stat(path, follow_symlinks=False)
    except FileNotFoundError:
        return None
    return [st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns]


def _fingerprint(path, end: int) -> str:
    """sha256 of the first and the last 4 KiB before ``end``: to tell a log that only grew
    from one that was rewritten."""
    fd = open_nofollow(path)
    try:
        head = os.pread(fd, min(FINGERPRINT_BYTES, end), 0)
        tail = os.pread(fd, min(FINGERPRINT_BYTES, end), max(0, end - FINGERPRINT_BYTES))
    finally:
        os.close(fd)
    return hashlib.sha256(head + b"|" + tail).hexdigest()


def _ends_a_line(path, end: int) -> bool:
    """True if the first ``end`` bytes end with a newline (or are none): a scan may resume there.
    Not so after a fragment of only whitespace (no torn tail, yet the next line starts before)."""
    if end == 0:
        return True
    fd = open_nofollow(path)
    try:
        return os.pread(fd, 1, end - 1) == b"\n"
    finally:
        os.close(fd)


def unreadable_module(name: str, reason: OSError | str) -> Health:
    """The health of a module whose folder cannot be read at all (``name`` could not be)."""
    findings = [_unreadable(name, reason)]
    return Health(health.status_of(findings), findings, ModuleStats())


def check_module(
    files: ModuleFiles, listing: Listing, temp_grace: float, now: float | None = None, previous: dict[str, Any] | None = None
) -> Health:
    """Diagnose one module, whose live folder holds ``listing``, without changing any file.
    Never raises for damaged or unreadable files: each problem becomes a finding
    (``unreadable`` for I/O errors and symlinks). Temp files older than ``temp_grace`` seconds
    are orphans.

    ``previous`` is the ``state`` of an earlier Health of this module: a meta whose size, mtime
    and inode are unchanged is not read again; a log that is unchanged is not read, and one
    that only grew is read from where the last pass stopped (``health.bytes_read`` tells).
    """
    now = clock.now() if now is None else now
    findings: list[Finding] = []
    stats = ModuleStats()
    if previous is not None and previous.get("version") != STATE_VERSION:
        previous = None
    state: dict[str, Any] = {"version": STATE_VERSION}
    bytes_read = 0

    for name in listing.symlinks:
        findings.append(_unreadable(name, "is a symlink; not followed"))
    state["backups"] = list(listing.backups)

    meta_part = None
    if listing.meta:
        stamp = _stamp(files.meta)
        old = (previous or {}).get("meta")
        if old is not None and stamp is not None and old["stamp"] == stamp and now - stamp[3] / 1e9 > RACY_SECONDS:
            meta_part = old
        else:
            meta_part = _meta_part(files)
            meta_part["stamp"] = stamp
            bytes_read += meta_part.get("size", 0)
        state["meta"] = meta_part
        findings.extend(Finding(**f) for f in meta_part["findings"])
        stats.meta_exists = True
        stats.meta_size = meta_part.get("size", 0)
        stats.meta_valid = meta_part["ok"]
        stats.meta_total_events = meta_part.get("total")
        stats.meta_last_event_id = meta_part.get("last_id")

    summary = None
    if listing.log:
        stats.log_exists = True
        try:
            summary, read, state["log"] = _log_part(files, (previous or {}).get("log"), now)
        except OSError as exc:
            findings.append(_unreadable(layout.LOG_NAME, exc))
        else:
            bytes_read += read
    if summary is not None:
        stats.log_size = summary.size
        stats.log_events = summary.events
        stats.log_bad_lines = summary.bad_line_count
        stats.log_max_sequence = summary.max_sequence
        stats.log_last_event_id = summary.last_event_id
        stats.log_last_event_at = summary.last_event_at
        findings.extend(_log_findings(summary))

    log_events = summary.events if summary else 0
    if not listing.meta and log_events:
        findings.append(
            health.make("meta_missing", f"the log has {log_events} events but there is no meta", log_events=log_events)
        )
    against = summary
    if against is None and not listing.log and layout.LOG_NAME not in listing.symlinks:
        against = logmod.LogSummary()  # no log (rotated or purged): the meta must count 0 events
    if meta_part is not None and meta_part["ok"] and against is not None:
        drift = _drift(meta_part.get("total"), meta_part.get("last_id"), against)
        if drift and not (summary is None and _rotation_interrupted(files, meta_part)):
            findings.append(drift)

    stats.temp_files = len(listing.temps)
    grace = temp_grace
    orphans = [name for name, _age in orphan_temps(files, listing.temps, grace, now)]
    if orphans:
        findings.append(
            health.make(
                "temp_orphan",
                f"{len(orphans)} temp file(s) of interrupted writes older than {grace:g} s",
                files=orphans[:logmod.SAMPLE_LIMIT],
                count=len(orphans),
            )
        )
    stats.backups = len(listing.backups)
    if listing.backups:
        findings.append(
            health.make(
                "backup_present",
                f"{len(listing.backups)} backup file(s) of past recoveries in the live folder",
                files=list(listing.backups[: logmod.SAMPLE_LIMIT]),
                count=len(listing.backups),
            )
        )
    return Health(health.status_of(findings), findings, stats, state, bytes_read)




def _meta_part(files: ModuleFiles) -> dict[str, Any]:
    """Findings and facts of the meta file, as a JSON-serialisable dict."""
    out: dict[str, Any] = {"findings": [], "ok": False}
    try:
        data, size = read_capped(files.meta_path, metamod.MAX_META_BYTES + 1)
    except OSError as exc:
        out["findings"].append(_as_dict(_unreadable(layout.META_NAME, exc)))
        return out
    out["size"] = size
    if size > metamod.MAX_META_BYTES:
        out["findings"].append(
            _as_dict(health.make("meta_invalid", f"meta is {size} bytes, more than any usable meta", size=size, limit=metamod.MAX_META_BYTES))
        )
        return out
    value, err = metamod.parse(data)
    if err is not None:
        out["findings"].append(_as_dict(health.make("meta_corrupt", f"meta is not valid JSON: {err.message}", **err.to_dict(), size=size)))
        return out
    problems = metamod.problems(value, branch=files.branch, module=files.name)
    for p in problems:
        out["findings"].append(_as_dict(health.make("meta_invalid", p.message, p.severity, **p.detail)))
    out["ok"] = not any(p.severity == "critical" for p in problems)
    if isinstance(value, dict):
        out["total"] = metamod.total_events(value)
        last_id = value.get("lastEventId")
        out["last_id"] = last_id if isinstance(last_id, (str, int, float, bool)) or last_id is None else str(last_id)
        day, last_at = value.get("currentDay"), value.get("lastEventAt")
        if isinstance(day, str) and isinstance(last_at, str):  # where a rotation files the log
            out["day"], out["last_at"] = day, last_at
    return out


def _rotation_interrupted(files: ModuleFiles, meta_part: dict[str, Any]) -> bool:
    """True when the live log is gone but the meta still counts its events because a rotation
    stopped between moving the log to history and restarting the meta: the history file Node
    and ``rotate`` name after the meta's day and last event is there, and it ends with the
    meta's last event. Not damage: the next rotation finds no log and restarts the meta at 0
    (an append before it numbers after the meta's count, so sequences stay unique)."""
    day, last_at, last_id = meta_part.get("day"), meta_part.get("last_at"), meta_part.get("last_id")
    if not day or not last_at or last_id is None or not meta_part.get("total"):
        return False
    try:
        base = layout.rotated_log_name(day, last_at)
    except InvalidName:
        return False
    stem = base[: -len(".log")]
    for n in range(10):  # rotate adds -1, -2 ... when the name is taken
        path = files.history_dir / (base if n == 0 else f"{stem}-{n}.log")
        try:
            tail = logmod.read_tail(path, max_bytes=1 << 20)
        except FileNotFoundError:
            return False
        except (OSError, ValueError):
            continue
        event, _ = logmod.parse_event(tail.last_line) if tail.last_line is not None else (None, None)
        if isinstance(event, dict) and event.get("id") == last_id and logmod.is_blank(tail.fragment):
            return True
    return False


def _as_dict(f: Finding) -> dict[str, Any]:
    return {"code": f.code, "severity": f.severity, "message": f.message, "detail": f.detail}


def _log_part(files: ModuleFiles, old: dict[str, Any] | None, now: float) -> tuple[logmod.LogSummary, int, dict[str, Any]]:
    """The log's summary, bytes read, and state; reusing ``old`` when the file is unchanged
    or only grew."""
    path = files.log
    stamp = _stamp(path)
    if stamp is None:
        raise FileNotFoundError(2, "log vanished during the check", str(path))
    if old is not None:
        prev = old["stamp"]
        if prev == stamp and (now - stamp[3] / 1e9 > RACY_SECONDS or _fingerprint(path, stamp[2]) == old["fingerprint"]):
            return logmod.LogSummary.from_state(old["summary"], with_seen=False), 0, old
        same_file = prev[:2] == stamp[:2]
        if (
            same_file
            and stamp[2] > prev[2]
            and old["summary"]["torn_tail"] is None
            and _ends_a_line(path, prev[2])
            and _fingerprint(path, prev[2]) == old["fingerprint"]
        ):
            previous = logmod.LogSummary.from_state(old["summary"])
            summary = logmod.resume(previous, path, stamp[2])
            new_state = {"stamp": stamp, "fingerprint": _fingerprint(path, stamp[2]), "summary": summary.to_state()}
            return summary, summary.bytes_read, new_state
    summary = logmod.summarize(path, keep_seen=True)
    end = summary.size
    if end != stamp[2]:
        stamp = [stamp[0], stamp[1], end, 0]  # grew while we read: next pass resumes at ``end``
    new_state = {"stamp": stamp, "fingerprint": _fingerprint(path, end), "summary": summary.to_state()}
    return summary, summary.size, new_state

def _log_findings(s: logmod.LogSummary) -> list[Finding]:
    out = []
    if s.torn_tail:
        t = s.torn_tail
        how = "a complete event without its newline" if t["parses"] else "an incomplete line"
        out.append(
            health.make("log_torn_tail", f"the log ends in {how} ({t['length']} bytes at byte {t['offset']}, line {t['line']})", **t)
        )
    if s.bad_line_count:
        first = s.bad_lines[0]
        out.append(
            health.make(
                "log_bad_line",
                f"{s.bad_line_count} line(s) do not parse as an event; first at line {first['line']}: {first['error']}",
                count=s.bad_line_count,
                lines=s.bad_lines,
            )
        )
    if s.duplicate_count:
        shown = ", ".join(str(x) for x in s.duplicates[:5])
        out.append(
            health.make(
                "log_sequence_duplicate",
                f"{s.duplicate_count} event(s) repeat a sequence number already used (e.g. {shown})",
                count=s.duplicate_count,
                sequences=s.duplicates,
            )
        )
    if s.gap_count:
        first = s.gaps[0]
        out.append(
            health.make(
                "log_sequence_gap",
                f"{s.gap_count} sequence number(s) missing; first gap {first[0]}..{first[1]}",
                count=s.gap_count,
                gaps=s.gaps,
            )
        )
    return out


def _drift(total: int | None, last_id: Any, s: logmod.LogSummary) -> Finding | None:
    expected = s.expected_total
    if s.events == 0 and s.max_sequence == 0:
        # Empty or missing log: after a rotation or a purge only totalEvents must be 0.
        if total == 0:
            return None
    elif total == expected and last_id == s.last_event_id:
        return None
    parts = []
    if total != expected:
        parts.append(f"totalEvents is {total}, the log gives {expected}")
    if s.events and last_id != s.last_event_id:
        parts.append(f"lastEventId is {last_id}, the log ends with {s.last_event_id}")
    return health.make(
        "meta_drift",
        "meta disagrees with the log: " + "; ".join(parts),
        meta_total_events=total,
        log_events=s.events,
        log_max_sequence=s.max_sequence,
        expected_total_events=expected,
        meta_last_event_id=last_id,
        log_last_event_id=s.last_event_id,
    )

