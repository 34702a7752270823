"""``Module.check()``: read-only diagnosis of one module, yielding the DESIGN.md findings, and
the state (``eventstore.state``) that lets the next check read only what changed."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import Any

from . import clock, health, layout
from . import log as logmod
from . import meta as metamod
from .archive import orphan_temps
from .errors import InvalidName
from .fileio import Stamp, open_nofollow, read_capped
from .folder import Listing, ModuleFiles
from .health import Finding, Health, ModuleStats
from .shapes import Malformed
from .state import CheckState, LogState, MetaState

FINGERPRINT_BYTES = 4096
# A file modified this recently may change again within the same mtime tick without its
# stamp changing ("racily clean", as git calls it): look at its bytes instead of trusting it.
RACY_SECONDS = 2.0


def _unreadable(name: str, exc: OSError | str) -> Finding:
    reason = exc if isinstance(exc, str) else (exc.strerror or str(exc))
    return health.make("unreadable", f"{name} could not be read: {reason}", file=name, reason=reason)


def unreadable_module(name: str, reason: OSError | str) -> Health:
    """The health of a module whose folder cannot be read at all (``name`` could not be)."""
    findings = [_unreadable(name, reason)]
    return Health(health.status_of(findings), findings, ModuleStats())


def check_module(
    files: ModuleFiles,
    listing: Listing,
    temp_grace: float,
    now: float | None = None,
    previous: dict[str, Any] | None = None,
) -> Health:
    """Diagnose one module, whose live folder holds ``listing``, without changing any file.
    Never raises for damaged or unreadable files: each problem becomes a finding
    (``unreadable`` for I/O errors and symlinks). Temp files older than ``temp_grace`` seconds
    are orphans.

    ``previous`` is the ``state`` of an earlier Health of this module (an older version or a
    malformed one is ignored: every file is read): a meta whose size, mtime and inode are
    unchanged is not read again; a log that is unchanged is not read, and one that only grew
    is read from where the last pass stopped (``health.bytes_read`` tells).
    """
    now = clock.now() if now is None else now
    old = CheckState.from_json(previous) if previous is not None else None
    findings = [_unreadable(name, "is a symlink; not followed") for name in listing.symlinks]
    bytes_read = 0
    meta = log = summary = None
    if listing.meta:
        meta, read = _meta_facts(files, old.meta if old else None, now)
        bytes_read += read
        findings.extend(meta.findings)
    if listing.log:
        try:
            log, read = _log_facts(files, old.log if old else None, now)
        except OSError as exc:
            findings.append(_unreadable(layout.LOG_NAME, exc))
        else:
            bytes_read += read
            summary = log.summary
            findings.extend(_log_findings(summary))
    findings.extend(_agreement(files, listing, meta, summary))
    findings.extend(_leftovers(files, listing, temp_grace, now))
    stats = _stats(listing, meta, summary)
    state = CheckState(listing.backups, meta, log)
    return Health(health.status_of(findings), findings, stats, state.to_json(), bytes_read)


def _stats(listing: Listing, meta: MetaState | None, s: logmod.LogSummary | None) -> ModuleStats:
    """The module's figures (made in one go: a scan makes one per module)."""
    log = (
        (s.size, s.events, s.bad_line_count, s.max_sequence, s.last_event_id, s.last_event_at)
        if s
        else (0, 0, 0, 0, None, None)
    )
    m = (True, meta.size or 0, meta.ok, meta.total, meta.last_id) if meta else (False, 0, False, None, None)
    return ModuleStats(listing.log, *log, *m, len(listing.backups), len(listing.temps))


def _agreement(
    files: ModuleFiles, listing: Listing, meta: MetaState | None, summary: logmod.LogSummary | None
) -> list[Finding]:
    """Whether meta and log agree: meta_missing, meta_drift."""
    log_events = summary.events if summary else 0
    if not listing.meta and log_events:
        return [
            health.make("meta_missing", f"the log has {log_events} events but there is no meta", log_events=log_events)
        ]
    against = summary
    if against is None and not listing.log and layout.LOG_NAME not in listing.symlinks:
        against = logmod.LogSummary()  # no log (rotated or purged): the meta must count 0 events
    if meta is None or not meta.ok or against is None:
        return []
    drift = _drift(meta.total, meta.last_id, against)
    if drift is None or (summary is None and _rotation_interrupted(files, meta)):
        return []
    return [drift]


def _leftovers(files: ModuleFiles, listing: Listing, grace: float, now: float) -> list[Finding]:
    """What interrupted writes and past recoveries left in the live folder: temp_orphan,
    backup_present."""
    out = []
    orphans = [name for name, _age in orphan_temps(files, listing.temps, grace, now)] if listing.temps else []
    if orphans:
        out.append(
            health.make(
                "temp_orphan",
                f"{len(orphans)} temp file(s) of interrupted writes older than {grace:g} s",
                files=orphans[: logmod.SAMPLE_LIMIT],
                count=len(orphans),
            )
        )
    if listing.backups:
        out.append(
            health.make(
                "backup_present",
                f"{len(listing.backups)} backup file(s) of past recoveries in the live folder",
                files=list(listing.backups[: logmod.SAMPLE_LIMIT]),
                count=len(listing.backups),
            )
        )
    return out


# -- the meta ---------------------------------------------------------------------------------


def _meta_facts(files: ModuleFiles, old: MetaState | None, now: float) -> tuple[MetaState, int]:
    """The meta's state and the bytes read for it: ``old`` again while its stamp holds."""
    stamp = Stamp.of(files.meta)
    if old is not None and stamp is not None and old.stamp == stamp and now - stamp.mtime > RACY_SECONDS:
        return old, 0
    meta = _read_meta(files, stamp)
    return meta, meta.size or 0


def _read_meta(files: ModuleFiles, stamp: Stamp | None) -> MetaState:
    """Findings and facts of the meta file (which had ``stamp`` just before)."""
    try:
        data, size = read_capped(files.meta_path, metamod.MAX_META_BYTES + 1)
    except OSError as exc:
        return MetaState(stamp, False, (_unreadable(layout.META_NAME, exc),))
    if size > metamod.MAX_META_BYTES:
        too_big = health.make(
            "meta_invalid", f"meta is {size} bytes, more than any usable meta", size=size, limit=metamod.MAX_META_BYTES
        )
        return MetaState(stamp, False, (too_big,), size)
    value, err = metamod.parse(data)
    if err is not None:
        return MetaState(
            stamp,
            False,
            (health.make("meta_corrupt", f"meta is not valid JSON: {err.message}", **err.to_dict(), size=size),),
            size,
        )
    problems = metamod.problems(value, branch=files.branch, module=files.name)
    found = tuple(health.make("meta_invalid", p.message, p.severity, **p.detail) for p in problems)
    ok = not any(p.severity == "critical" for p in problems)
    if not isinstance(value, dict):
        return MetaState(stamp, ok, found, size)
    last_id = value.get("lastEventId")
    last_id = last_id if isinstance(last_id, (str, int, float, bool)) or last_id is None else str(last_id)
    day, last_at = value.get("currentDay"), value.get("lastEventAt")
    if not (isinstance(day, str) and isinstance(last_at, str)):  # where a rotation files the log
        day = last_at = None
    return MetaState(stamp, ok, found, size, metamod.total_events(value), last_id, day, last_at)


def _rotation_interrupted(files: ModuleFiles, meta: MetaState) -> bool:
    """True when the live log is gone but the meta still counts its events because a rotation
    stopped between moving the log to history and restarting the meta: the history file Node
    and ``rotate`` name after the meta's day and last event is there, and it ends with the
    meta's last event. Not damage: the next rotation finds no log and restarts the meta at 0
    (an append before it numbers after the meta's count, so sequences stay unique)."""
    if not meta.day or not meta.last_at or meta.last_id is None or not meta.total:
        return False
    try:
        base = layout.rotated_log_name(meta.day, meta.last_at)
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
        if isinstance(event, dict) and event.get("id") == meta.last_id and logmod.is_blank(tail.fragment):
            return True
    return False


# -- the log ----------------------------------------------------------------------------------


def _fingerprint(path: str, end: int) -> str:
    """sha256 of the first and the last 4 KiB before ``end``: to tell a log that only grew
    from one that was rewritten."""
    fd = open_nofollow(path)
    try:
        head = os.pread(fd, min(FINGERPRINT_BYTES, end), 0)
        tail = os.pread(fd, min(FINGERPRINT_BYTES, end), max(0, end - FINGERPRINT_BYTES))
    finally:
        os.close(fd)
    return hashlib.sha256(head + b"|" + tail).hexdigest()


def _ends_a_line(path: str, end: int) -> bool:
    """True if the first ``end`` bytes end with a newline (or are none): a scan may resume there.
    Not so after a fragment of only whitespace (no torn tail, yet the next line starts before)."""
    if end == 0:
        return True
    fd = open_nofollow(path)
    try:
        return os.pread(fd, 1, end - 1) == b"\n"
    finally:
        os.close(fd)


def _log_facts(files: ModuleFiles, old: LogState | None, now: float) -> tuple[LogState, int]:
    """The log's state and the bytes read for it: ``old`` again when the file is unchanged,
    extended with the appended bytes when it only grew, else a full pass."""
    path = files.log
    stamp = Stamp.of(path)
    if stamp is None:
        raise FileNotFoundError(2, "log vanished during the check", path)
    if old is not None:
        if old.stamp == stamp and (
            now - stamp.mtime > RACY_SECONDS or _fingerprint(path, stamp.size) == old.fingerprint
        ):
            return old, 0
        grown = _resume(path, old, stamp)
        if grown is not None:
            return LogState(stamp, _fingerprint(path, stamp.size), grown, grown.seen_json()), grown.bytes_read
    summary = logmod.summarize(path, keep_seen=True)
    if summary.size != stamp.size:
        stamp = stamp._replace(size=summary.size, mtime_ns=0)  # grew while we read: next pass resumes at the end
    return LogState(stamp, _fingerprint(path, summary.size), summary, summary.seen_json()), summary.size


def _resume(path: str, old: LogState, stamp: Stamp) -> logmod.LogSummary | None:
    """The summary of ``old`` extended with the bytes appended since, when the log only grew
    (same file, longer, the old end at a line boundary, the same first and last 4 KiB there);
    else None."""
    try:
        before = Stamp.from_json(list(old.stamp)).size  # read back unchecked: check it now
    except Malformed:
        return None
    if not (old.stamp.same_file(stamp) and stamp.size > before and old.summary.torn_tail is None):
        return None
    if not _ends_a_line(path, before) or _fingerprint(path, before) != old.fingerprint:
        return None
    try:
        previous = old.resumable()
    except Malformed:
        return None
    return logmod.resume(previous, Path(path), stamp.size)


def _log_findings(s: logmod.LogSummary) -> list[Finding]:
    out = []
    if s.torn_tail:
        t = s.torn_tail
        how = "a complete event without its newline" if t["parses"] else "an incomplete line"
        out.append(
            health.make(
                "log_torn_tail",
                f"the log ends in {how} ({t['length']} bytes at byte {t['offset']}, line {t['line']})",
                **t,
            )
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
