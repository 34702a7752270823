"""The scan: eventstore checks over a data root, recorded as module states, incidents and backups.

Guarantee: the database changes only when the files did. Every row is compared with what the
check found before anything is saved, so a pass over unchanged files issues no INSERT, UPDATE
or DELETE (the scanner heartbeat, :func:`record_pass`, is a separate, explicit write).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import orjson
from django.conf import settings
from django.db import transaction
from django.db.models import Q
from django.utils import timezone
from django.utils.dateparse import parse_datetime

from eventstore import EventStore, Health, Module
from eventstore.errors import RootError

from ..models import STATUS_RANK, Backup, Incident, ModuleState, ScanHost, Status, codes_field

EXIT_CODES = {Status.HEALTHY: 0, Status.WARNING: 1, Status.CRITICAL: 2}
EXIT_ROOT_UNUSABLE = 3
PROBLEM_STATUSES = (Status.WARNING, Status.CRITICAL)


@dataclass
class ScanReport:
    root: Path
    modules: int = 0
    counts: dict[str, int] = field(default_factory=lambda: {s: 0 for s in (Status.HEALTHY, Status.WARNING, Status.CRITICAL)})
    changed: int = 0
    opened: int = 0
    ended: int = 0
    new_backups: int = 0
    store_server: int = 0
    gone: int = 0
    bytes_read: int = 0

    @property
    def worst(self) -> str:
        for status in (Status.CRITICAL, Status.WARNING):
            if self.counts[status]:
                return status
        return Status.HEALTHY

    @property
    def exit_code(self) -> int:
        return EXIT_CODES[self.worst]

    def summary(self) -> str:
        c = self.counts
        return (
            f"{self.modules} modules under {self.root}: {c['healthy']} healthy, {c['warning']} warning, "
            f"{c['critical']} critical; {self.changed} changed, {self.opened} incidents opened, "
            f"{self.ended} ended, {self.new_backups} new backups, {self.store_server} store-server recoveries, "
            f"{self.gone} modules gone; {self.bytes_read} bytes read"
        )


def open_store(root: Path | str | None = None) -> EventStore:
    """The configured store; RootError (one line) when no usable data root is configured."""
    root = root if root is not None else settings.OPSDASH_DATA_ROOT
    if root is None:
        raise RootError("OPSDASH_DATA_ROOT is not set")
    return EventStore(root, temp_grace=settings.OPSDASH_TEMP_GRACE_SECONDS)


def scan_root(root: Path | str | None = None, host: str | None = None, now: datetime | None = None) -> ScanReport:
    """One pass over every module of the data root. Raises RootError if the root is unusable."""
    store = open_store(root)
    host = host or settings.OPSDASH_HOST_NAME
    now = now or timezone.now()
    report = ScanReport(root=store.root)
    known = {(s.branch, s.module): s for s in ModuleState.objects.filter(host=host)}
    seen: set[int] = set()
    for module in store.modules():
        state = known.get((module.branch, module.name))
        previous = state.scan_state if state is not None else None
        # Incremental: files whose size, mtime and inode are unchanged are not read again.
        health = module.check(now=now.timestamp(), previous=previous)
        backups_changed = previous is None or previous.get("backups") != (health.state or {}).get("backups")
        backups = module.backups() if backups_changed else None
        with transaction.atomic():
            state, changed = _record_module(report, host, module, health, now, state)
            if backups is not None:
                _record_backups(report, state, backups, now)
                _record_store_server_recoveries(report, state)
            elif changed and state.backups_count:
                _record_store_server_recoveries(report, state)
        seen.add(state.pk)
        report.modules += 1
        report.bytes_read += health.bytes_read
        report.counts[health.status] += 1
    _mark_gone(report, host, seen, now)
    return report


def record_pass(report: ScanReport | None, host: str | None = None, error: str = "", now: datetime | None = None) -> None:
    """The scanner heartbeat: one row per host saying when the last pass ran and how it went."""
    ScanHost.objects.update_or_create(
        host=host or settings.OPSDASH_HOST_NAME,
        defaults={
            "data_root": str(report.root if report else settings.OPSDASH_DATA_ROOT or ""),
            "last_pass_at": now or timezone.now(),
            "modules": report.modules if report else 0,
            "worst_status": report.worst if report else Status.CRITICAL,
            "error": error,
        },
    )


def _plain(value: Any) -> Any:
    """JSON round trip, so that tuples from the library compare equal to lists from the database."""
    return orjson.loads(orjson.dumps(value))


def _state_fields(health: Health) -> dict[str, Any]:
    stats = _plain(health.stats.to_dict())
    findings = _plain([f.to_dict() for f in health.findings])
    last_event_at = stats.get("log_last_event_at")
    return {
        "status": health.status,
        "status_rank": STATUS_RANK[health.status],
        "findings": findings,
        "codes": codes_field({f.code for f in health.findings}),
        "stats": stats,
        "meta_total_events": stats.get("meta_total_events") if isinstance(stats.get("meta_total_events"), int) else None,
        "log_events": stats.get("log_events") or 0,
        "log_size": stats.get("log_size") or 0,
        "last_event_at": parse_datetime(last_event_at) if isinstance(last_event_at, str) else None,
        "backups_count": stats.get("backups") or 0,
        "temp_files": stats.get("temp_files") or 0,
        "scan_state": health.state,
    }


def _apply(obj: Any, fields: dict[str, Any]) -> list[str]:
    """Set the fields that differ; return their names (empty: nothing to save)."""
    changed = [name for name, value in fields.items() if getattr(obj, name) != value]
    for name in changed:
        setattr(obj, name, fields[name])
    return changed


def _record_module(
    report: ScanReport, host: str, module: Module, health: Health, now: datetime, state: ModuleState | None
) -> tuple[ModuleState, bool]:
    """Create or update the module's row; returns it and whether anything was written."""
    fields = _state_fields(health)
    if state is None:
        state = ModuleState.objects.create(
            host=host, branch=module.branch, module=module.name, first_seen=now, last_changed=now, status_since=now, **fields
        )
        report.changed += 1
    else:
        changed = _apply(state, fields)
        if changed:
            if "status" in changed:
                state.status_since = now
                changed.append("status_since")
            state.last_changed = now
            state.save(update_fields=[*changed, "last_changed"])
            report.changed += 1
        elif state.status not in PROBLEM_STATUSES:
            return state, False  # nothing changed: its incidents are as the last pass left them
        if changed == ["scan_state"]:
            return state, False
    _record_incident(report, state, now)
    return state, True


def _record_incident(report: ScanReport, state: ModuleState, now: datetime) -> None:
    current = state.incidents.filter(source=Incident.Source.SCAN, ended_at__isnull=True).first()
    if state.status in PROBLEM_STATUSES:
        problems = [f for f in state.findings if f.get("severity") != "info"]
        if current is None:
            Incident.objects.create(
                module=state,
                opened_at=now,
                severity=state.status,
                findings=problems,
                codes=codes_field({f["code"] for f in problems}),
            )
            report.opened += 1
            return
        worst = max(current.severity, state.status, key=lambda s: STATUS_RANK[s])
        codes = codes_field(set(current.code_list) | {f["code"] for f in problems})
        changed = _apply(current, {"severity": worst, "codes": codes, "findings": problems})
        if changed:
            current.save(update_fields=changed)
    elif current is not None:
        how = Incident.EndedHow.GONE if state.status == Status.GONE else Incident.EndedHow.RESOLVED
        _end(current, now, how)
        report.ended += 1


def _end(incident: Incident, now: datetime, how: str) -> None:
    incident.ended_at = now
    incident.ended_how = how
    incident.ended_by = "scan"
    incident.save(update_fields=["ended_at", "ended_how", "ended_by"])


def _record_backups(report: ScanReport, state: ModuleState, infos: list, now: datetime) -> None:
    existing = {b.name: b for b in state.backups.all()}
    for info in infos:
        fields = {
            "kind": info.kind,
            "size": info.size,
            "sha256": info.sha256,
            "created_at": info.created_at,
            "parses": bool(info.parses),
            "error": info.error or "",
            "state": Backup.State.LIVE,
        }
        backup = existing.pop(info.name, None)
        if backup is None:
            Backup.objects.create(module=state, name=info.name, first_seen=now, last_changed=now, **fields)
            report.new_backups += 1
        elif changed := _apply(backup, fields):
            backup.last_changed = now
            backup.save(update_fields=[*changed, "last_changed"])
    for backup in existing.values():
        if backup.state == Backup.State.LIVE:
            backup.state = Backup.State.MISSING
            backup.last_changed = now
            backup.save(update_fields=["state", "last_changed"])


def _record_store_server_recoveries(report: ScanReport, state: ModuleState) -> None:
    """A meta backup from a time no incident of ours covers is a recovery the Node server did alone.

    It becomes an incident opened and ended at the time in the backup's name, so the history shows
    it even though the dashboard never saw the module broken.
    """
    candidates = state.backups.filter(kind="meta", incident__isnull=True, created_at__isnull=False)
    for backup in candidates:
        covered = state.incidents.filter(source=Incident.Source.SCAN, opened_at__lte=backup.created_at).filter(
            Q(ended_at__isnull=True) | Q(ended_at__gte=backup.created_at)
        )
        if covered.exists():
            continue
        message = f"the store server found the meta damaged, backed it up as {backup.name} and rebuilt it"
        finding = {"code": "meta_corrupt", "severity": "critical", "message": message, "file": backup.name}
        if backup.error:
            finding["error"] = backup.error
        Incident.objects.create(
            module=state,
            opened_at=backup.created_at,
            ended_at=backup.created_at,
            ended_how=Incident.EndedHow.STORE_SERVER,
            ended_by="store server",
            severity=Status.CRITICAL,
            findings=[finding],
            codes=codes_field({"meta_corrupt"}),
            source=Incident.Source.STORE_SERVER,
            backup=backup,
        )
        report.store_server += 1


def _mark_gone(report: ScanReport, host: str, seen: set[int], now: datetime) -> None:
    """Modules of this host that the pass did not find: status "gone", incidents ended, backups missing."""
    for state in ModuleState.objects.filter(host=host).exclude(pk__in=seen).exclude(status=Status.GONE):
        with transaction.atomic():
            state.status = Status.GONE
            state.status_rank = STATUS_RANK[Status.GONE]
            state.status_since = now
            state.last_changed = now
            state.save(update_fields=["status", "status_rank", "status_since", "last_changed"])
            _record_incident(report, state, now)
            state.backups.filter(state=Backup.State.LIVE).update(state=Backup.State.MISSING, last_changed=now)
        report.gone += 1
