"""``Module.check()``: read-only diagnosis of one module, yielding the DESIGN.md findings, and
the state (``eventstore.state``) that lets the next check read only what changed."""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from . import checkpoints, clock, health, layout
from . import log as logmod
from . import meta as metamod
from .archive import orphan_temps
from .checkpoints import Checkpoints, Segmenter, changed_finding, extend, feeder_for, settle
from .errors import InvalidName
from .fileio import Stamp, open_nofollow, read_capped
from .folder import Listing, ModuleFiles
from .health import Finding, Health, ModuleStats
from .shapes import Malformed
from .state import CheckState, LogState, MetaState

FINGERPRINT_BYTES = checkpoints.FINGERPRINT_BYTES
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


@dataclass(slots=True)
class _LogRun:
    """What a check of the log works with and leaves: the checkpoints and the still reported
    ``log_changed_in_place`` (both updated as it goes), the time, and how it was asked to read."""

    cps: Checkpoints | None
    changed: Finding | None
    now: float
    full: bool = False
    progress: Any = None
    accept: bool = False


def check_module(
    files: ModuleFiles,
    listing: Listing,
    temp_grace: float,
    now: float | None = None,
    previous: dict[str, Any] | None = None,
    *,
    full: bool = False,
    progress: Any = None,
    accept_changes: bool = False,
) -> Health:
    """Diagnose one module, whose live folder holds ``listing``, without changing any file.
    Never raises for damaged or unreadable files: each problem becomes a finding
    (``unreadable`` for I/O errors and symlinks). Temp files older than ``temp_grace`` seconds
    are orphans.

    ``previous`` is the ``state`` of an earlier Health of this module (an older version or a
    malformed one is ignored: every file is read): a meta whose size, mtime and inode are
    unchanged is not read again; a log that is unchanged is not read, and one that only grew
    is read from where the last pass stopped, its new bytes checkpointed (``checkpoints``).
    With ``full`` (and without a usable ``previous``) the meta, the whole log and the backups
    are read, and the log is checked against the checkpoints of ``previous``: bytes changed
    in place are ``log_changed_in_place``, reported by every later check until a full one
    with ``accept_changes`` takes the log as it is now. ``progress(done, total)`` follows the
    read of the log. ``health.bytes_read`` counts every byte read.
    """
    now = clock.now() if now is None else now
    old = CheckState.from_json(previous) if previous is not None else None
    full = full or old is None
    findings = [_unreadable(name, "is a symlink; not followed") for name in listing.symlinks]
    bytes_read = 0
    meta = log = summary = None
    if listing.meta:
        meta, read = _meta_facts(files, None if full or old is None else old.meta, now)
        bytes_read += read
        findings.extend(meta.findings)
    run = _LogRun(old.checkpoints if old else None, old.changed if old else None, now, full, progress, accept_changes)
    if not listing.log:
        run.cps = run.changed = None  # rotated or purged: the next log is a new file
    else:
        if old is not None and _restarted(old.meta, meta):
            run.cps = run.changed = None  # rotated and written again since (the inode may be reused)
        try:
            log, read = _log_facts(files, None if full or old is None else old.log, run)
        except OSError as exc:
            findings.append(_unreadable(layout.LOG_NAME, exc))  # the checkpoints are kept
        else:
            bytes_read += read
            summary = log.summary
            findings.extend(_log_findings(summary))
    if run.changed is not None:
        findings.append(run.changed)
    if full:
        bytes_read += _read_backups(files, listing, findings)
    findings.extend(_agreement(files, listing, meta, summary))
    findings.extend(_leftovers(files, listing, temp_grace, now))
    stats = _stats(listing, meta, summary)
    state = CheckState(listing.backups, meta, log, run.cps, run.changed)
    verified_at = run.cps.verified_at if run.cps is not None else None
    return Health(health.status_of(findings), findings, stats, state.to_json(), bytes_read, verified_at, full)


def _restarted(old: MetaState | None, meta: MetaState | None) -> bool:
    """The meta restarted since the last check (a rotation: its count went down)."""
    return (
        old is not None
        and meta is not None
        and old.ok
        and meta.ok
        and old.total is not None
        and meta.total is not None
        and meta.total < old.total
    )


def _read_backups(files: ModuleFiles, listing: Listing, findings: list[Finding]) -> int:
    """Read every backup whole (a full check: a bad disk shows as ``unreadable``); the bytes."""
    total = 0
    for name in listing.backups:
        try:
            fd = open_nofollow(files.in_live(name))
            try:
                while data := os.read(fd, 1 << 20):
                    total += len(data)
            finally:
                os.close(fd)
        except OSError as exc:
            findings.append(_unreadable(name, exc))
    return total


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


def _fingerprint(path: str, end: int) -> tuple[str, bytes, bytes]:
    """sha256 of the first and the last 512 bytes before ``end`` (to tell a log that only grew
    from one that was rewritten), and those bytes."""
    fd = open_nofollow(path)
    try:
        head = os.pread(fd, min(FINGERPRINT_BYTES, end), 0)
        tail = os.pread(fd, min(FINGERPRINT_BYTES, end), max(0, end - FINGERPRINT_BYTES))
    finally:
        os.close(fd)
    return _fingerprint_of(head, tail), head, tail


def _fingerprint_of(head: bytes, tail: bytes) -> str:
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


def _log_facts(files: ModuleFiles, old: LogState | None, run: _LogRun) -> tuple[LogState, int]:
    """The log's state and the bytes read for it: ``old`` again when the file is unchanged,
    extended with the appended bytes when it only grew, else a full pass (``old`` None: a full
    read). Updates ``run``'s checkpoints and finding."""
    path = files.log
    stamp = Stamp.of(path)
    if stamp is None:
        raise FileNotFoundError(2, "log vanished during the check", path)
    if run.cps is not None and run.cps.file != (stamp.dev, stamp.ino):
        run.cps = run.changed = None  # another file: rotated, replaced, purged and written again
    if old is not None:
        if old.stamp == stamp:
            if run.now - stamp.mtime > RACY_SECONDS:
                return old, 0
            fingerprint, head, tail = _fingerprint(path, stamp.size)
            if fingerprint == old.fingerprint:
                return old, len(head) + len(tail)
        grown = _resume(path, old, stamp, run)
        if grown is not None:
            return grown
    return _full_pass(path, stamp, run)


def _full_pass(path: str, stamp: Stamp, run: _LogRun) -> tuple[LogState, int]:
    """Read the whole log, hashing it as it is read: its summary, and its checkpoints checked
    (a stored piece these bytes contradict is ``log_changed_in_place``) and made anew."""
    size = stamp.size
    progress = _Progress(run.progress)
    summary = logmod.summarize(Path(path), progress, keep_seen=True, feeder=feeder_for(run.cps))
    progress.done(summary.size)
    parts = summary.hashed or []
    line_end = max((p.line_end for p in parts), default=0)
    stored = run.cps.pieces if run.cps is not None else []
    verdict = settle(path, parts, line_end, stored, run.now)
    if verdict.changed:
        run.changed = changed_finding(verdict.changed, run.now, run.changed)
    if run.accept:
        run.changed = None
    if run.cps is None or not verdict.changed or run.accept:
        run.cps = Checkpoints((stamp.dev, stamp.ino), verdict.pieces, run.now)
    else:  # the stored checkpoints stay what the log should hold, until the change is accepted
        run.cps = Checkpoints(run.cps.file, run.cps.pieces, run.now)
    if summary.size != size:
        stamp = stamp._replace(size=summary.size, mtime_ns=0)  # grew while we read: next pass resumes at the end
    state = LogState(stamp, _fingerprint_of(*verdict.fingerprint_parts), summary, summary.seen_json())
    return state, summary.bytes_read + verdict.reread


class _Progress:
    """``progress(done, total)`` of the caller (or nothing), called once more at the end."""

    __slots__ = ("callback", "last")

    def __init__(self, callback: Any):
        self.callback = callback
        self.last = -1

    def __call__(self, done: int, total: int) -> None:
        if self.callback is not None:
            self.last = done
            self.callback(done, total)

    def done(self, total: int) -> None:
        if self.callback is not None and self.last != total:
            self.last = total
            self.callback(total, total)


def _resume(path: str, old: LogState, stamp: Stamp, run: _LogRun) -> tuple[LogState, int] | None:
    """``old`` extended with the bytes appended since, when the log only grew (same file,
    longer, the old end at a line boundary, the same first and last 512 bytes there), the new bytes
    checkpointed; else None."""
    try:
        before = Stamp.from_json(list(old.stamp)).size  # read back unchecked: check it now
    except Malformed:
        return None
    if not (old.stamp.same_file(stamp) and stamp.size > before and old.summary.torn_tail is None):
        return None
    if not _ends_a_line(path, before):
        return None
    fingerprint, head, tail = _fingerprint(path, before)
    read = len(head) + len(tail) + (1 if before else 0)
    if fingerprint != old.fingerprint:
        return None
    try:
        previous = old.resumable()
    except Malformed:
        return None
    if previous.size != before:  # a state changed elsewhere: the summary is not of these bytes
        return None
    seg = Segmenter(before, None, [])  # the new bytes' hashes (and the new fingerprint's tail)
    progress = _Progress(run.progress)
    total = stamp.size - before
    grown = logmod.resume(previous, Path(path), stamp.size, seg.feed, lambda n: progress(n, total))
    progress.done(total)
    read += grown.bytes_read
    hashed = seg.result()
    if run.cps is not None and run.cps.end == before:
        verdict = settle(path, [hashed], hashed.line_end, [], run.now)
        run.cps, changed, reread = extend(path, run.cps, verdict.pieces, run.now)
        read += verdict.reread + reread
        if changed:
            run.changed = changed_finding(changed, run.now, run.changed)
    if len(head) == FINGERPRINT_BYTES and hashed.pos == stamp.size:  # the head stays, the tail moved on
        fingerprint = _fingerprint_of(head, (tail + hashed.tail)[-FINGERPRINT_BYTES:])
    else:
        fingerprint, head, tail = _fingerprint(path, stamp.size)
        read += len(head) + len(tail)
    return LogState(stamp, fingerprint, grown, grown.seen_json()), read


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
        # Only lines that are JSON but not objects: Node reads past them (and counts the truthy
        # ones as events), nothing it wrote is lost: a warning.
        junk_only = s.not_object_count == s.bad_line_count
        out.append(
            health.make(
                "log_bad_line",
                f"{s.bad_line_count} line(s) do not parse as an event; first at line {first['line']}: {first['error']}",
                "warning" if junk_only else None,
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
