"""Recording the Node server's own recoveries, read from its log by eventstore.serverlog.

A recovery the server logged as successful ends (or becomes) a store-server incident at its
time; a failed one opens or annotates a store-server incident that stays open. The store-server
incident the scan already made from the same backup file is linked, never duplicated.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime

from django.db import IntegrityError, transaction
from django.utils import timezone

from eventstore import serverlog

from ..models import Backup, Incident, ModuleState, ServerRecovery, Status


@dataclass
class IngestReport:
    found: int = 0
    new: int = 0
    known: int = 0
    recovered: int = 0
    failed: int = 0
    linked: int = 0  # known before without a module, now matched to one
    unmatched: set[str] = field(default_factory=set)  # "branch/module" (or the path) the database does not know

    def summary(self) -> str:
        line = (
            f"{self.found} recoveries found: {self.new} new ({self.recovered} recovered, {self.failed} failed), "
            f"{self.known} already known{f' ({self.linked} now linked to their module)' if self.linked else ''}; "
            f"{len(self.unmatched)} unmatched modules"
        )
        return line + (f": {', '.join(sorted(self.unmatched))}" if self.unmatched else "")


def ingest(lines: Iterable[str | bytes], source: str, host: str, year: int | None = None) -> IngestReport:
    """Record every recovery of a server log not recorded before (same fingerprint). Streaming."""
    report = IngestReport()
    for rec in serverlog.parse(lines, year=year):
        report.found += 1
        module_row = _module(host, rec)
        if module_row is None:
            report.unmatched.add(f"{rec.branch}/{rec.module}" if rec.branch else rec.path or f"line {rec.line}")
        known = ServerRecovery.objects.filter(fingerprint=rec.fingerprint).first()
        if known is not None:
            report.known += 1
            if known.module_id is None and module_row is not None and known.host == host:
                with transaction.atomic():
                    _link(known, rec, module_row)
                report.linked += 1
            continue
        try:
            with transaction.atomic():
                _record(rec, source, host, module_row)
        except IntegrityError:
            report.known += 1  # a concurrent run recorded it first
            continue
        report.new += 1
        report.recovered += rec.outcome == ServerRecovery.Outcome.RECOVERED
        report.failed += rec.outcome == ServerRecovery.Outcome.FAILED
    return report


def _module(host: str, rec: serverlog.Recovery) -> ModuleState | None:
    if not (rec.branch and rec.module):
        return None
    return ModuleState.objects.filter(host=host, branch=rec.branch, module=rec.module).first()


def _record(rec: serverlog.Recovery, source: str, host: str, module_row: ModuleState | None) -> ServerRecovery:
    row = ServerRecovery.objects.create(
        fingerprint=rec.fingerprint,
        at=rec.at,
        host=host,
        branch=rec.branch or "",
        module_name=rec.module or "",
        path=(rec.path or "")[:1000],
        outcome=rec.outcome,
        error=rec.error or "",
        reason=rec.reason or "",
        events=rec.events,
        size=rec.size,
        old_build=rec.old_build,
        backup_name=rec.backup or "",
        source=source[:1000],
        line=rec.line,
        lines=list(rec.lines),
    )
    if module_row is not None:
        _link(row, rec, module_row)
    return row


def _link(row: ServerRecovery, rec: serverlog.Recovery, module_row: ModuleState) -> None:
    """Tie a recorded recovery to its module, its backup row and an incident."""
    row.module = module_row
    row.backup = module_row.backups.filter(name=rec.backup).first() if rec.backup else None
    if rec.outcome != ServerRecovery.Outcome.INCOMPLETE:
        row.incident = _incident_for(rec, module_row, row.backup)
    row.save(update_fields=["module", "backup", "incident"])


def _finding(rec: serverlog.Recovery) -> dict[str, object]:
    if rec.outcome == ServerRecovery.Outcome.RECOVERED:
        message = f"the store server rebuilt the meta from {rec.events} events (its log)"
    else:
        message = f"the store server could not recover the meta: {rec.reason or 'no reason logged'} (its log)"
    finding: dict[str, object] = {
        "code": "meta_corrupt",
        "severity": "critical",
        "message": message,
        "outcome": "recovered" if rec.outcome == ServerRecovery.Outcome.RECOVERED else "failed",
    }
    for key in ("error", "backup", "events", "reason"):
        if getattr(rec, key) is not None:
            finding[key] = getattr(rec, key)
    if rec.at:
        finding["at"] = rec.at.isoformat()
    return finding


def _incident_for(rec: serverlog.Recovery, module_row: ModuleState, backup: Backup | None) -> Incident:
    at: datetime = rec.at or timezone.now()
    linked = Incident.objects.filter(backup=backup).first() if backup else None
    open_one = (
        module_row.incidents.filter(source=Incident.Source.STORE_SERVER, ended_at__isnull=True, opened_at__lte=at)
        .order_by("-opened_at")
        .first()
    )
    if rec.outcome == ServerRecovery.Outcome.RECOVERED:
        if linked is not None:
            return linked  # the scan already recorded this recovery from its backup file
        if open_one is not None:  # an earlier failed attempt: this one ends it
            open_one.findings = [*open_one.findings, _finding(rec)]
            open_one.backup = open_one.backup or backup
            open_one.save(update_fields=["findings", "backup"])
            open_one.end(at, Incident.EndedHow.STORE_SERVER, Incident.BY_STORE_SERVER)
            return open_one
        return _create(module_row, rec, at, backup, ended=True)
    incident = linked or open_one
    if incident is None:
        return _create(module_row, rec, at, backup, ended=False)
    # The scan took the backup for a recovery; the log says it failed: the incident stays open.
    incident.findings = [*incident.findings, _finding(rec)]
    incident.save(update_fields=["findings"])
    incident.end(None, "", "")
    return incident


def _create(
    module_row: ModuleState, rec: serverlog.Recovery, at: datetime, backup: Backup | None, ended: bool
) -> Incident:
    ending = (
        {"ended_at": at, "ended_how": Incident.EndedHow.STORE_SERVER, "ended_by": Incident.BY_STORE_SERVER}
        if ended
        else {}
    )
    return Incident.open_for(
        module_row,
        at,
        [_finding(rec)],
        severity=Status.CRITICAL,
        source=Incident.Source.STORE_SERVER,
        backup=backup,
        **ending,
    )
