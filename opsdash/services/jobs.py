"""Operator actions as jobs: requested by a view, queued for the module's host, run by a worker.

A job row is created first (the database refuses a second active job on the same module), then
a task is queued on the host's queue; the worker runs :func:`execute`, which calls eventstore,
records progress, the result or the error, an audit entry, and re-scans the module.
"""

from __future__ import annotations

import hashlib
import logging
import time
from collections.abc import Callable
from datetime import timedelta
from typing import Any

from django.conf import settings
from django.db import IntegrityError, transaction
from django.utils import timezone

from eventstore.errors import EventStoreError

from ..models import AuditEntry, Backup, BackupBlob, Incident, Job, ModuleState, Status
from .files import FilesUnavailable, live_module
from .scan import scan_module

log = logging.getLogger(__name__)

MODULE_KINDS = (Job.Kind.REBUILD, Job.Kind.VERIFY, Job.Kind.ARCHIVE_BACKUPS, Job.Kind.CLEAN_TEMP)
BRANCH_KINDS = (Job.Kind.BULK_REBUILD, Job.Kind.BULK_ARCHIVE)


class Busy(Exception):
    """Another action is queued or running on this module (or branch); the message says which."""


def _busy_message(host: str, branch: str, module: str) -> str:
    other = Job.objects.filter(host=host, branch=branch, module=module, status__in=Job.ACTIVE).first()
    if other is None:
        return "another action on this module has just started"
    started = timezone.localtime(other.started_at or other.created_at)
    return f"a {other.get_kind_display()} requested by {other.requested_by} at {started:%H:%M:%S} is still {other.status}"


def request_job(kind: str, host: str, branch: str, module: str, user: str, ip: str | None, params: dict | None = None) -> Job:
    """Create the job and queue it on the host's queue. Raises Busy if one is already active."""
    from ..tasks import run_job

    target = ModuleState.objects.filter(host=host, branch=branch, module=module).first() if module else None
    try:
        with transaction.atomic():
            job = Job.objects.create(
                kind=kind, host=host, branch=branch, module=module, target=target,
                requested_by=user, requested_from=ip, params=params or {},
            )
    except IntegrityError:
        raise Busy(_busy_message(host, branch, module)) from None
    try:
        result = run_job.using(queue_name=host).enqueue(job.pk)
    except Exception as exc:  # never leave a queued job that no task will run: it would block the module
        Job.objects.filter(pk=job.pk).update(status=Job.State.FAILED, error=f"could not be queued: {_one_line(exc)}", finished_at=timezone.now())
        raise
    Job.objects.filter(pk=job.pk).update(task_id=str(result.id))
    job.task_id = str(result.id)
    return job


def fail_stale_jobs(host: str | None = None) -> int:
    """Running jobs whose worker stopped (no heartbeat for a while) are failed, not left running."""
    cutoff = timezone.now() - timedelta(seconds=settings.OPSDASH_JOB_STALE_SECONDS)
    qs = Job.objects.filter(status=Job.State.RUNNING, heartbeat__lt=cutoff)
    if host:
        qs = qs.filter(host=host)
    return qs.update(status=Job.State.FAILED, error="interrupted: the worker stopped", finished_at=timezone.now())


class _Progress:
    """Writes progress to the job row a few times a second at most (and the heartbeat)."""

    def __init__(self, job: Job, every: float = 0.3):
        self.job = job
        self.every = every
        self.last = 0.0

    def __call__(self, done: float, total: float, text: str = "") -> None:
        now = time.monotonic()
        if now - self.last < self.every and done < total:
            return
        self.last = now
        Job.objects.filter(pk=self.job.pk).update(
            progress=min(1.0, done / total) if total else 1.0, progress_text=text[:200], heartbeat=timezone.now()
        )


def execute(job_id: int) -> dict[str, Any]:
    """Run one job (in the worker). Never raises for a failed action: the job records it."""
    job = Job.objects.get(pk=job_id)
    if job.status != Job.State.QUEUED:
        return {"skipped": job.status}
    now = timezone.now()
    Job.objects.filter(pk=job.pk).update(status=Job.State.RUNNING, started_at=now, heartbeat=now)
    progress = _Progress(job)
    audit = {"before": "", "after": ""}
    try:
        result = RUNNERS[job.kind](job, progress, audit)
    except (EventStoreError, FilesUnavailable, OSError) as exc:
        return _finish(job, Job.State.FAILED, error=_one_line(exc), audit=audit)
    except Exception as exc:  # a bug: still a failed job with a clear line, and a log with the traceback
        log.exception("job %s failed", job.pk)
        return _finish(job, Job.State.FAILED, error=f"unexpected error: {_one_line(exc)}", audit=audit)
    return _finish(job, Job.State.SUCCEEDED, result=result, audit=audit)


def _one_line(exc: BaseException) -> str:
    if isinstance(exc, OSError) and exc.strerror:
        return f"{exc.strerror}: {exc.filename}" if exc.filename else exc.strerror
    return str(exc).splitlines()[0] if str(exc) else type(exc).__name__


def _finish(job: Job, status: str, result: Any = None, error: str = "", audit: dict | None = None) -> dict[str, Any]:
    Job.objects.filter(pk=job.pk).update(
        status=status, result=result, error=error, finished_at=timezone.now(),
        progress=1.0 if status == Job.State.SUCCEEDED else job.progress, heartbeat=timezone.now(),
    )
    AuditEntry.objects.create(
        actor=job.requested_by, ip=job.requested_from, action=job.kind, host=job.host, branch=job.branch,
        module=job.module, params={**job.params, "job": job.pk}, outcome="ok" if status == Job.State.SUCCEEDED else "failed",
        detail=error or _summary(job.kind, result), meta_sha256_before=(audit or {}).get("before") or "",
        meta_sha256_after=(audit or {}).get("after") or "",
    )
    return {"status": status, "error": error}


def _summary(kind: str, result: Any) -> str:
    if not isinstance(result, dict):
        return ""
    return str(result.get("summary", ""))[:500]


def _sha256_of_meta(module) -> str:
    try:
        return hashlib.sha256(module.meta_path.read_bytes()).hexdigest()
    except OSError:
        return ""


def meta_diff(old: dict | None, new: dict) -> list[dict[str, Any]]:
    """Field by field: what the rebuild changed (tableCursors table by table)."""
    old = old if isinstance(old, dict) else {}
    rows = []
    for key in list(dict.fromkeys([*old, *new])):
        if key == "updatedAt":
            continue
        if key == "tableCursors" and isinstance(old.get(key), dict) and isinstance(new.get(key), dict):
            for table in dict.fromkeys([*old[key], *new[key]]):
                rows += _diff_row(f"tableCursors.{table}", old[key], new[key], table)
            continue
        rows += _diff_row(key, old, new, key)
    return rows


def _diff_row(label: str, old: dict, new: dict, key: str) -> list[dict[str, Any]]:
    if key not in old:
        return [{"key": label, "change": "added", "old": None, "new": new[key]}]
    if key not in new:
        return [{"key": label, "change": "removed", "old": old[key], "new": None}]
    if old[key] != new[key]:
        return [{"key": label, "change": "changed", "old": old[key], "new": new[key]}]
    return []


def _state(job: Job) -> ModuleState:
    state = job.target or ModuleState.objects.filter(host=job.host, branch=job.branch, module=job.module).first()
    if state is None:
        raise FilesUnavailable(f"{job.branch}/{job.module} is not known on {job.host}")
    return state


def _rebuild(job: Job, progress: Callable, audit: dict) -> dict[str, Any]:
    state = _state(job)
    return _rebuild_state(state, job.requested_by, progress, audit)


def _rebuild_state(state: ModuleState, user: str, progress: Callable, audit: dict) -> dict[str, Any]:
    module = live_module(state)
    audit["before"] = _sha256_of_meta(module)
    report = module.rebuild(progress=lambda done, total: progress(done, total, f"{done:,} of {total:,} bytes of the log read"))
    audit["after"] = report.meta_sha256_after or ""
    state = scan_module(state, ended_how=Incident.EndedHow.REBUILT, ended_by=user)
    return {
        "summary": f"rebuilt from {report.events_read} events; old meta backed up as {report.backup or 'nothing (there was none)'}",
        "events_read": report.events_read,
        "bytes_read": report.bytes_read,
        "backup": report.backup,
        "bad_line_count": report.bad_line_count,
        "old_meta_error": report.old_meta_error,
        "sources": {k: v for k, v in report.sources.items() if v not in ("log", "folder", "now")},
        "diff": meta_diff(report.old_meta, report.new_meta),
        "status": state.status,
    }


def _verify(job: Job, progress: Callable, audit: dict) -> dict[str, Any]:
    state = scan_module(_state(job), ended_how="resolved", ended_by=f"verify by {job.requested_by}")
    return {"summary": f"{state.status}: {', '.join(state.codes.split()) or 'no findings'}", "status": state.status, "findings": state.findings}


def _archive(job: Job, progress: Callable, audit: dict) -> dict[str, Any]:
    state = _state(job)
    done = _archive_state(state, job.requested_by)
    return {"summary": f"{len(done)} backup(s) archived, each verified by sha256", "archived": done}


def _archive_state(state: ModuleState, user: str) -> list[dict[str, Any]]:
    module = live_module(state)
    archived = module.archive_backups(settings.OPSDASH_ARCHIVE_ROOT)
    now = timezone.now()
    for item in archived:
        Backup.objects.filter(module=state, name=item.name).update(state=Backup.State.ARCHIVED, last_changed=now)
        _store_blob(state, item)
    scan_module(state, ended_how="archived", ended_by=user)
    return [item.to_dict() for item in archived]


def _store_blob(state: ModuleState, item) -> None:
    """Keep the archived bytes in the database too, verified, so every host can serve them."""
    backup = Backup.objects.filter(module=state, name=item.name).first()
    if backup is None or item.size > settings.OPSDASH_BLOB_MAX_BYTES:
        return
    with open(item.path, "rb") as f:
        data = f.read()
    if hashlib.sha256(data).hexdigest() != item.sha256:
        raise EventStoreError(f"archived copy of {item.name} changed after it was verified")
    BackupBlob.objects.update_or_create(backup=backup, defaults={"data": data, "sha256": item.sha256})


def _clean_temp(job: Job, progress: Callable, audit: dict) -> dict[str, Any]:
    module = live_module(_state(job))
    removed = module.clean_temp(settings.OPSDASH_TEMP_GRACE_SECONDS)
    scan_module(_state(job))
    return {"summary": f"{len(removed)} orphan temp file(s) removed", "removed": [r.to_dict() for r in removed]}


def _branch_modules(job: Job, **filters: Any) -> list[ModuleState]:
    return list(ModuleState.objects.filter(host=job.host, branch=job.branch, **filters).order_by("module"))


def _bulk(job: Job, progress: Callable, each: Callable[[ModuleState], Any], states: list[ModuleState], verb: str) -> dict[str, Any]:
    done, failed = [], []
    for i, state in enumerate(states):
        progress(i, len(states), f"{i} of {len(states)} modules")
        try:
            outcome = each(state)
        except (EventStoreError, FilesUnavailable, OSError) as exc:
            failed.append({"module": state.module, "error": _one_line(exc)})
        else:
            done.append({"module": state.module, "result": outcome})
    summary = f"{len(done)} module(s) {verb}, {len(failed)} failed"
    if failed:
        raise EventStoreError(summary + ": " + "; ".join(f"{f['module']}: {f['error']}" for f in failed))
    return {"summary": summary, "modules": done}


def _bulk_rebuild(job: Job, progress: Callable, audit: dict) -> dict[str, Any]:
    states = _branch_modules(job, status=Status.CRITICAL)
    noop = lambda *a, **k: None  # noqa: E731 - per-module progress is not shown in a bulk job
    return _bulk(job, progress, lambda s: _rebuild_state(s, job.requested_by, noop, {})["summary"], states, "rebuilt")


def _bulk_archive(job: Job, progress: Callable, audit: dict) -> dict[str, Any]:
    states = _branch_modules(job, backups_count__gt=0)
    return _bulk(job, progress, lambda s: len(_archive_state(s, job.requested_by)), states, "archived")


RUNNERS: dict[str, Callable[[Job, Callable, dict], dict[str, Any]]] = {
    Job.Kind.REBUILD: _rebuild,
    Job.Kind.VERIFY: _verify,
    Job.Kind.ARCHIVE_BACKUPS: _archive,
    Job.Kind.CLEAN_TEMP: _clean_temp,
    Job.Kind.BULK_REBUILD: _bulk_rebuild,
    Job.Kind.BULK_ARCHIVE: _bulk_archive,
}
