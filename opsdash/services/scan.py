"""The scan: eventstore checks over a data root, recorded as module states, incidents and backups.

Guarantee: the database changes only when the files did. Every row is compared with what the
check found before anything is saved, so a pass over unchanged files issues no INSERT, UPDATE
or DELETE (the scanner heartbeat, :func:`record_pass`, is a separate, explicit write).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from contextlib import contextmanager
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

from eventstore import EventStore, Health, Module, ModuleStats, RefusedFolder, layout
from eventstore.browse import OffsetIndex, build_index
from eventstore.errors import EventStoreError
from eventstore.health import make as make_finding

from ..models import (
    PROBLEM_STATUSES,
    STATUS_RANK,
    Backup,
    Incident,
    ModuleState,
    ScanHost,
    ServerRecovery,
    Status,
    codes_field,
)
from . import maintenance, scrub
from .alerts import queue_transitions
from .host import local_host
from .nul import db_safe

log = logging.getLogger(__name__)
EXIT_ROOT_UNUSABLE = 3


@dataclass
class ScanReport:
    root: Path
    modules: int = 0
    counts: dict[str, int] = field(
        default_factory=lambda: dict.fromkeys((Status.HEALTHY, Status.WARNING, Status.CRITICAL), 0)
    )
    changed: int = 0
    opened: int = 0
    ended: int = 0
    new_backups: int = 0
    store_server: int = 0
    gone: int = 0
    bytes_read: int = 0
    # The modules whose log this pass read in full (first reads, the scrub), and their bytes.
    read_in_full: int = 0
    bytes_read_in_full: int = 0
    scrub_credit: int = 0  # what the next pass's scrub starts from (the heartbeat keeps it)
    # (module row, old status or None for a new module, new status) for each status change.
    transitions: list[tuple[ModuleState, str | None, str]] = field(default_factory=list)
    # How an incident that this pass ends is recorded (an operator's rebuild says who fixed it).
    ended_how: str = Incident.EndedHow.RESOLVED
    ended_by: str = Incident.BY_SCAN
    # Folders shaped like modules that were not scanned: a name that breaks the path rules, or a
    # module whose failure could not be recorded ({"path", "reason"}).
    refused: list[dict[str, str]] = field(default_factory=list)
    # The maintenance windows, read once per pass when an incident opens.
    windows: maintenance.Windows | None = field(default=None, repr=False)

    def in_maintenance(self, module_row: ModuleState, now: datetime) -> bool:
        if self.windows is None:
            self.windows = maintenance.Windows.load()
        return bool(self.windows.covering(module_row.host, module_row.branch, module_row.module, now))

    def add(self, health: Health) -> None:
        self.modules += 1
        self.bytes_read += health.bytes_read
        self.counts[health.status] += 1
        if health.full:
            self.read_in_full += 1
            self.bytes_read_in_full += health.bytes_read

    @property
    def worst(self) -> str:
        if self.refused:
            return Status.CRITICAL
        for status in (Status.CRITICAL, Status.WARNING):
            if self.counts[status]:
                return status
        return Status.HEALTHY

    @property
    def exit_code(self) -> int:
        return STATUS_RANK[self.worst]  # as the CLI's check

    def summary(self) -> str:
        c = self.counts
        return (
            f"{self.modules} modules under {self.root}: {c['healthy']} healthy, {c['warning']} warning, "
            f"{c['critical']} critical; {self.changed} changed, {self.opened} incidents opened, "
            f"{self.ended} ended, {self.new_backups} new backups, {self.store_server} store-server recoveries, "
            f"{self.gone} modules gone; {self.bytes_read} bytes read"
            + (f" ({self.read_in_full} modules read in full)" if self.read_in_full else "")
            + "".join(f"; not scanned: {r['path']} ({r['reason']})" for r in self.refused[:5])
            + (f"; and {len(self.refused) - 5} more not scanned" if len(self.refused) > 5 else "")
        )


def open_store(root: Path | str | None = None) -> EventStore:
    """The store at ``root``, else this host's; RootError (one line) when it is not usable."""
    if root is not None:
        return EventStore(root, temp_grace=settings.OPSDASH_TEMP_GRACE_SECONDS)
    return local_host().open_store()


def scan_root(
    root: Path | str | None = None, host: str | None = None, now: datetime | None = None, interval: float | None = None
) -> ScanReport:
    """One pass over every module of the data root, reading in full the logs the scrub plans
    for it (``interval``: seconds between passes, for its pace). Raises RootError if the root
    is unusable."""
    store = open_store(root)
    host = host or local_host().name
    now = now or timezone.now()
    report = ScanReport(root=store.root)
    # Only what the unchanged case and the scrub's plan need; the other fields load on access
    # for changed modules.
    rows = ModuleState.objects.filter(host=host).only(
        "id", "host", "branch", "module", "status", "temp_files", "scan_state", "verified_at", "log_size"
    )
    known = {(s.branch, s.module): s for s in rows}
    credit = ScanHost.objects.filter(host=host).values_list("scrub_credit", flat=True).first() or 0
    full = scrub.plan(known.values(), now, interval, credit)
    report.scrub_credit = full.credit
    seen: set[int] = set()
    with _Batches() as batches:
        failures_in_a_row = 0
        for found in store.walk():
            if isinstance(found, RefusedFolder):
                report.refused.append(found.to_dict())
                continue
            module_row = known.get((found.branch, found.name))
            try:
                module_row = _scan_module(
                    report, batches, host, found, module_row, now, Read(full=full.reads_in_full(module_row))
                )
                failures_in_a_row = 0
            except Exception as exc:  # one module's failure is that module's finding; the pass goes on
                failures_in_a_row += 1
                if failures_in_a_row > MAX_FAILURES_IN_A_ROW:
                    raise  # not one module's problem (the database is gone): the pass fails
                module_row = _record_failure(report, batches, host, found, module_row, exc, now)
            if module_row is not None:
                seen.add(module_row.pk)
    _mark_gone(report, host, seen, now)
    return report


# After this many modules failed one after the other, the pass stops: the cause is not theirs.
MAX_FAILURES_IN_A_ROW = 20


def _record_failure(
    report: ScanReport,
    batches: _Batches,
    host: str,
    module: Module,
    module_row: ModuleState | None,
    exc: Exception,
    now: datetime,
) -> ModuleState | None:
    """A module whose scan raised: logged with its traceback and recorded as critical with an
    ``unreadable`` finding saying why (its next pass reads it whole again). If even that cannot
    be written, the host's heartbeat lists it among the refused folders."""
    where = layout.printable(f"{module.branch}/{layout.MODULES_DIR}/{module.name}")
    log.error("the scan of %s on %s failed", where, host, exc_info=exc)
    reason = layout.printable(f"{type(exc).__name__}: {exc}")[:500]
    failed = Health(
        Status.CRITICAL,
        [make_finding("unreadable", f"the scan of this module failed: {reason}", reason=reason)],
        ModuleStats(),
    )
    try:
        with batches.step():
            fresh = ModuleState.objects.get(pk=module_row.pk) if module_row is not None else None
            module_row, _ = _record_module(report, host, module, failed, now, fresh)
    except Exception:
        log.exception("the failure of %s on %s could not be recorded either", where, host)
        report.refused.append({"path": where, "reason": f"the scan failed: {reason}"})
        return module_row
    report.add(failed)
    return module_row


class _Batches:
    """Group the writes of many modules into few transactions (a commit per module would cost a
    disk flush each), yet never hold the write lock for long: commit every 200 modules or half a
    second. Each module's writes stay atomic (a savepoint inside the batch)."""

    def __init__(self, max_steps: int = 200, max_seconds: float = 0.5):
        self.max_steps = max_steps
        self.max_seconds = max_seconds
        self._outer = None
        self._steps = 0
        self._started = 0.0

    def __enter__(self) -> _Batches:
        return self

    def __exit__(self, *exc) -> None:
        self._close(*exc)

    def _close(self, *exc) -> None:
        if self._outer is not None:
            outer, self._outer = self._outer, None
            outer.__exit__(*(exc or (None, None, None)))

    @contextmanager
    def step(self):
        if self._outer is None:
            self._outer = transaction.atomic()
            self._outer.__enter__()
            self._steps, self._started = 0, time.monotonic()
        with transaction.atomic():
            yield
        self._steps += 1
        if self._steps >= self.max_steps or time.monotonic() - self._started > self.max_seconds:
            self._close()


@dataclass(frozen=True)
class Read:
    """How a module's files are read: incrementally (files whose size, mtime and inode are
    unchanged are not read again), or in ``full`` (every byte, compared with the checkpoints;
    ``progress(done, total)`` by bytes; ``accept_changes``: the log as it is now becomes the
    reference, ending a ``log_changed_in_place``)."""

    full: bool = False
    progress: Callable[[int, int], None] | None = None
    accept_changes: bool = False


INCREMENTAL = Read()


def _scan_module(
    report: ScanReport,
    batches: _Batches,
    host: str,
    module: Module,
    module_row: ModuleState | None,
    now: datetime,
    read: Read = INCREMENTAL,
) -> ModuleState:
    previous = module_row.scan_state if module_row is not None else None
    health = module.check(
        now=now.timestamp(),
        previous=previous,
        full=read.full,
        progress=read.progress,
        accept_changes=read.accept_changes,
    )
    health.state = db_safe(health.state)  # as saved, so that an unchanged module compares equal
    if (
        previous is not None
        and health.state == previous
        and not module_row.temp_files
        and module_row.status != Status.GONE
    ):
        report.add(health)
        return module_row  # nothing on disk changed and no finding depends on the clock (temp file ages)
    backups_changed = previous is None or previous.get("backups") != (health.state or {}).get("backups")
    backups = module.backups() if backups_changed else None
    with batches.step():  # every query of a changed module in its savepoint: a failure undoes only its own
        if module_row is not None:
            module_row = ModuleState.objects.get(
                pk=module_row.pk
            )  # every field in one query, not one per deferred field
        index = _event_index(module, module_row)
        module_row, changed = _record_module(report, host, module, health, now, module_row, index)
        if backups:
            _record_backups(report, module_row, backups, now)
            _record_store_server_recoveries(report, module_row)
        elif backups is not None and previous is not None:
            _record_backups(report, module_row, backups, now)  # the last live backups went away
        elif changed and module_row.backups_count:
            _record_store_server_recoveries(report, module_row)
    report.add(health)
    return module_row


def scan_module(
    module_row: ModuleState,
    now: datetime | None = None,
    ended_how: str = Incident.EndedHow.RESOLVED,
    ended_by: str = Incident.BY_SCAN,
    read: Read = INCREMENTAL,
) -> ModuleState:
    """Re-check one module of this host at once (after an action; ``read``: how) and record what
    changed; an incident this ends is recorded as ``ended_how`` by ``ended_by``."""
    return check_one(module_row, now, ended_how, ended_by, read)[0]


def check_one(
    module_row: ModuleState,
    now: datetime | None = None,
    ended_how: str = Incident.EndedHow.RESOLVED,
    ended_by: str = Incident.BY_SCAN,
    read: Read = INCREMENTAL,
) -> tuple[ModuleState, ScanReport]:
    """:func:`scan_module`, and the report of that one module (its bytes read)."""
    store = open_store()
    now = now or timezone.now()
    report = ScanReport(root=store.root, ended_how=ended_how, ended_by=ended_by)
    with _Batches() as batches:
        module_row = _scan_module(
            report, batches, module_row.host, store.module(module_row.branch, module_row.module), module_row, now, read
        )
    try:
        queue_transitions(report.transitions, now)  # the next scan pass delivers them
    except Exception:  # an alert problem never fails the action that changed the module
        log.exception("alerts for %s could not be queued", module_row)
    return module_row, report


def record_pass(
    report: ScanReport | None,
    host: str | None = None,
    error: str = "",
    now: datetime | None = None,
    interval: float | None = None,
) -> bool:
    """The scanner heartbeat: one row per host saying when the last pass ran, how it went and
    how often it runs. Returns True when the host had been found stale and now reports again."""
    here = local_host()
    host = host or here.name
    was_stale = ScanHost.objects.filter(host=host, stale_since__isnull=False)
    back = was_stale.exists() and was_stale.update(stale_since=None) > 0  # read first: usually no write
    ScanHost.objects.update_or_create(
        host=host,
        defaults={
            "data_root": str(report.root if report else here.data_root or ""),
            "last_pass_at": now or timezone.now(),
            "modules": report.modules if report else 0,
            "worst_status": report.worst if report else Status.CRITICAL,
            "error": error,
            "interval": interval,
            "problems": report.refused[:100] if report else [],
            **({"scrub_credit": report.scrub_credit} if report else {}),
        },
    )
    return back


def _plain(value: Any) -> Any:
    """JSON round trip, so that tuples from the library compare equal to lists from the database;
    NUL characters replaced (PostgreSQL refuses them)."""
    return db_safe(orjson.loads(orjson.dumps(value)))


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
        "meta_total_events": stats.get("meta_total_events")
        if isinstance(stats.get("meta_total_events"), int)
        else None,
        "log_events": stats.get("log_events") or 0,
        "log_size": stats.get("log_size") or 0,
        "last_event_at": parse_datetime(last_event_at) if isinstance(last_event_at, str) else None,
        "backups_count": stats.get("backups") or 0,
        "temp_files": stats.get("temp_files") or 0,
        "scan_state": health.state,
    }


# What a read in full changes although the files did not: not a change of the module (its
# "last changed" stays, and its incident is as it was).
QUIET_FIELDS = frozenset({"scan_state", "verified_at", "event_index"})


def _apply(obj: Any, fields: dict[str, Any]) -> list[str]:
    """Set the fields that differ; return their names (empty: nothing to save)."""
    changed = [name for name, value in fields.items() if getattr(obj, name) != value]
    for name in changed:
        setattr(obj, name, fields[name])
    return changed


def _event_index(module: Module, module_row: ModuleState | None) -> Any:
    """The live log's sparse offset index for the event browser, extended by the bytes the log
    grew by (built whole for a new, rotated or shortened log); the old one when the log cannot
    be read now (the check has said why)."""
    old = module_row.event_index if module_row is not None else None
    try:
        if not module.contained() or not module.log_path.is_file():
            return None
        return build_index(module.log_path, OffsetIndex.from_json(old) if old else None).to_json()
    except (OSError, EventStoreError):
        return old


def _record_module(
    report: ScanReport,
    host: str,
    module: Module,
    health: Health,
    now: datetime,
    module_row: ModuleState | None,
    index: Any = None,
) -> tuple[ModuleState, bool]:
    """Create or update the module's row; returns it and whether anything was written."""
    fields = _state_fields(health)
    fields["event_index"] = index
    if health.full:  # read in full by this check; otherwise it stays when it was
        fields["verified_at"] = now
    if module_row is None:
        module_row = ModuleState.objects.create(
            host=host,
            branch=module.branch,
            module=module.name,
            first_seen=now,
            last_changed=now,
            status_since=now,
            **fields,
        )
        report.changed += 1
        report.transitions.append((module_row, None, module_row.status))
        if module_row.status in PROBLEM_STATUSES:
            _record_incident(report, module_row, now, fresh=True)
        return module_row, True
    else:
        old_status = module_row.status
        changed = _apply(module_row, fields)
        if changed and QUIET_FIELDS.issuperset(changed):
            module_row.save(update_fields=changed)
            return module_row, False
        if changed:
            if "status" in changed:
                report.transitions.append((module_row, old_status, module_row.status))
                module_row.status_since = now
                changed.append("status_since")
            module_row.last_changed = now
            module_row.save(update_fields=[*changed, "last_changed"])
            report.changed += 1
        elif module_row.status not in PROBLEM_STATUSES:
            return module_row, False  # nothing changed: its incidents are as the last pass left them
    _record_incident(report, module_row, now)
    return module_row, True


def _record_incident(report: ScanReport, module_row: ModuleState, now: datetime, fresh: bool = False) -> None:
    """Open, update or end the module's scan incident. ``fresh``: the row was just created, so it
    has no incident yet (saves a query per new module on a first scan)."""
    current = None if fresh else module_row.incidents.seen_by_scan().still_open().first()
    if module_row.status in PROBLEM_STATUSES:
        problems = [f for f in module_row.findings if f.get("severity") != "info"]
        if current is None:
            during = report.in_maintenance(module_row, now)
            Incident.open_for(module_row, now, problems, during_maintenance=during)
            report.opened += 1
            return
        worst = max(current.severity, module_row.status, key=lambda s: STATUS_RANK[s])
        codes = codes_field(set(current.code_list) | {f["code"] for f in problems})
        changed = _apply(current, {"severity": worst, "codes": codes, "findings": problems})
        if changed:
            current.save(update_fields=changed)
    elif current is not None:
        how = Incident.EndedHow.GONE if module_row.status == Status.GONE else report.ended_how
        current.end(now, how, report.ended_by)
        report.ended += 1


def _record_backups(report: ScanReport, module_row: ModuleState, infos: list, now: datetime) -> None:
    if not infos and not module_row.backups_count and module_row.first_seen == now:
        return  # a module first seen in this pass, without backups: nothing to compare
    existing = {b.name: b for b in module_row.backups.all()}
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
            Backup.objects.create(module=module_row, name=info.name, first_seen=now, last_changed=now, **fields)
            report.new_backups += 1
        elif changed := _apply(backup, fields):
            backup.last_changed = now
            backup.save(update_fields=[*changed, "last_changed"])
    for backup in existing.values():
        if backup.state == Backup.State.LIVE:
            backup.state = Backup.State.MISSING
            backup.last_changed = now
            backup.save(update_fields=["state", "last_changed"])


def _record_store_server_recoveries(report: ScanReport, module_row: ModuleState) -> None:
    """A meta backup from a time no incident of ours covers is a recovery the Node server did alone.

    It becomes an incident opened and ended at the time in the backup's name, so the history shows
    it even though the dashboard never saw the module broken.
    """
    candidates = module_row.backups.filter(kind="meta", incident__isnull=True, created_at__isnull=False)
    for backup in candidates:
        # The server log may have told us first (manage.py ingest_logs): use that incident.
        told = ServerRecovery.objects.filter(module=module_row, backup_name=backup.name, incident__isnull=False).first()
        if told is not None:
            if told.incident.backup_id is None:
                told.incident.backup = backup
                told.incident.save(update_fields=["backup"])
            if told.backup_id is None:
                told.backup = backup
                told.save(update_fields=["backup"])
            continue
        covered = (
            module_row.incidents.seen_by_scan()
            .filter(opened_at__lte=backup.created_at)
            .filter(Q(ended_at__isnull=True) | Q(ended_at__gte=backup.created_at))
        )
        if covered.exists():
            continue
        message = f"the store server found the meta damaged, backed it up as {backup.name} and rebuilt it"
        finding = {"code": "meta_corrupt", "severity": "critical", "message": message, "file": backup.name}
        if backup.error:
            finding["error"] = backup.error
        Incident.open_for(
            module_row,
            backup.created_at,
            [finding],
            severity=Status.CRITICAL,
            ended_at=backup.created_at,
            ended_how=Incident.EndedHow.STORE_SERVER,
            ended_by=Incident.BY_STORE_SERVER,
            source=Incident.Source.STORE_SERVER,
            backup=backup,
        )
        report.store_server += 1


def _mark_gone(report: ScanReport, host: str, seen: set[int], now: datetime) -> None:
    """Modules of this host that the pass did not find: status "gone", incidents ended, backups missing."""
    for module_row in ModuleState.objects.filter(host=host).exclude(pk__in=seen).exclude(status=Status.GONE):
        with transaction.atomic():
            report.transitions.append((module_row, module_row.status, Status.GONE))
            module_row.status = Status.GONE
            module_row.status_rank = STATUS_RANK[Status.GONE]
            module_row.status_since = now
            module_row.last_changed = now
            module_row.save(update_fields=["status", "status_rank", "status_since", "last_changed"])
            _record_incident(report, module_row, now)
            module_row.backups.filter(state=Backup.State.LIVE).update(state=Backup.State.MISSING, last_changed=now)
        report.gone += 1
