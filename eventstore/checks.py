"""``Module.check()``: read-only diagnosis of one module, yielding the DESIGN.md findings."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

from . import health, layout
from . import log as logmod
from . import meta as metamod
from .fileio import read_capped
from .archive import orphan_temps
from .health import Finding, Health, ModuleStats

if TYPE_CHECKING:
    from .store import Module


def _unreadable(name: str, exc: OSError | str) -> Finding:
    reason = exc if isinstance(exc, str) else (exc.strerror or str(exc))
    return health.make("unreadable", f"{name} could not be read: {reason}", file=name, reason=reason)


def check_module(module: Module, now: float | None = None) -> Health:
    """Diagnose one module without changing any file. Never raises for damaged or unreadable
    files: each problem becomes a finding (``unreadable`` for I/O errors and symlinks)."""
    now = time.time() if now is None else now
    findings: list[Finding] = []
    stats = ModuleStats()

    if not module.contained():
        findings.append(_unreadable(str(module.live_dir), "the folder is a symlink that leads outside the data root; not followed"))
        return Health(health.status_of(findings), findings, stats)
    try:
        listing = module.listing()
    except OSError as exc:
        findings.append(_unreadable(layout.LIVE_DIR, exc))
        return Health(health.status_of(findings), findings, stats)

    for name in listing.symlinks:
        findings.append(_unreadable(name, "is a symlink; not followed"))

    meta_value = None
    meta_ok = False
    if listing.meta:
        stats.meta_exists = True
        try:
            data, size = read_capped(module.meta_path, metamod.MAX_META_BYTES + 1)
        except OSError as exc:
            findings.append(_unreadable(layout.META_NAME, exc))
        else:
            stats.meta_size = size
            if size > metamod.MAX_META_BYTES:
                findings.append(
                    health.make("meta_invalid", f"meta is {size} bytes, more than any usable meta", size=size, limit=metamod.MAX_META_BYTES)
                )
            else:
                meta_value, err = metamod.parse(data)
                if err is not None:
                    findings.append(health.make("meta_corrupt", f"meta is not valid JSON: {err.message}", **err.to_dict(), size=size))
                else:
                    problems = metamod.problems(meta_value, branch=module.branch, module=module.name)
                    for p in problems:
                        findings.append(health.make("meta_invalid", p.message, p.severity, **p.detail))
                    meta_ok = not any(p.severity == "critical" for p in problems)
                    if isinstance(meta_value, dict):
                        stats.meta_total_events = metamod.total_events(meta_value)
                        stats.meta_last_event_id = meta_value.get("lastEventId")
            stats.meta_valid = meta_ok

    summary = None
    if listing.log:
        stats.log_exists = True
        try:
            summary = logmod.summarize(module.log_path)
        except OSError as exc:
            findings.append(_unreadable(layout.LOG_NAME, exc))
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
    if meta_ok and isinstance(meta_value, dict) and summary is not None:
        drift = _drift(meta_value, summary)
        if drift:
            findings.append(drift)

    stats.temp_files = len(listing.temps)
    grace = module.store.temp_grace
    orphans = [name for name, _age in orphan_temps(module, grace, now)]
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
                files=listing.backups[:logmod.SAMPLE_LIMIT],
                count=len(listing.backups),
            )
        )
    return Health(health.status_of(findings), findings, stats)


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


def _drift(meta_value: dict, s: logmod.LogSummary) -> Finding | None:
    total = metamod.total_events(meta_value)
    last_id = meta_value.get("lastEventId")
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

