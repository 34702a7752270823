"""Operator actions as jobs: requested by a view, queued for the module's host, run by a worker.

A job row is created first (the database refuses a second active job on the same module), then
a task is queued on the host's queue; the worker runs :func:`execute`, which calls eventstore,
records progress, the result or the error, an audit entry, and re-scans the module.
"""

from __future__ import annotations

import hashlib
import logging
import threading
import time
from collections.abc import Callable
from datetime import timedelta
from typing import Any

from django.conf import settings
from django.db import IntegrityError, connection, transaction
from django.utils import formats, timezone
from django.utils.translation import gettext

from eventstore.errors import EventStoreError

from ..models import AuditEntry, Backup, BackupBlob, Incident, Job, ModuleState, Status
from .files import FilesUnavailable, live_module
from .nul import db_safe
from .scan import scan_module

log = logging.getLogger(__name__)

MODULE_KINDS = (Job.Kind.REBUILD, Job.Kind.VERIFY, Job.Kind.ARCHIVE_BACKUPS, Job.Kind.CLEAN_TEMP)
BRANCH_KINDS = (Job.Kind.BULK_REBUILD, Job.Kind.BULK_ARCHIVE)


class Busy(Exception):
    """Another action is queued or running on this module (or its branch); the message says which."""


class PartlyFailed(Exception):
    """A bulk job in which some modules failed: the job fails, and keeps what was done."""

    def __init__(self, message: str, result: dict[str, Any]):
        super().__init__(message)
        self.result = result


def _conflicts(host: str, branch: str, module: str):
    """Active jobs that forbid a new one: on the same module or the branch as a whole (a bulk job);
    for a bulk job, any active job of the branch."""
    active = Job.objects.filter(host=host, branch=branch, status__in=Job.ACTIVE)
    return active.filter(module__in=[module, ""]) if module else active


def _busy_message(other: Job | None) -> str:
    if other is None:
        return gettext("another action on this module has just started")
    at = formats.date_format(timezone.localtime(other.started_at or other.created_at), "DATETIME_FORMAT")
    values = {"kind": other.get_kind_display(), "branch": other.branch, "module": other.module, "user": other.requested_by,
              "at": at, "status": other.get_status_display()}
    if other.module:
        if other.status == Job.State.RUNNING:
            return gettext("a %(kind)s on %(branch)s/%(module)s started by %(user)s at %(at)s is still %(status)s") % values
        return gettext("a %(kind)s on %(branch)s/%(module)s requested by %(user)s at %(at)s is still %(status)s") % values
    if other.status == Job.State.RUNNING:
        return gettext("a %(kind)s on the whole branch %(branch)s started by %(user)s at %(at)s is still %(status)s") % values
    return gettext("a %(kind)s on the whole branch %(branch)s requested by %(user)s at %(at)s is still %(status)s") % values


def _create(kind: str, host: str, branch: str, module: str, user: str, ip: str | None, params: dict) -> Job:
    with transaction.atomic():
        # Lock the module rows the job covers: a module job and a bulk job of its branch requested
        # at the same moment are serialised (PostgreSQL; SQLite's IMMEDIATE transactions serialise anyway).
        rows = ModuleState.objects.select_for_update().filter(host=host, branch=branch)
        locked = list(rows.filter(module=module) if module else rows)
        other = _conflicts(host, branch, module).first()
        if other is not None:
            raise Busy(_busy_message(other))
        try:
            with transaction.atomic():
                return Job.objects.create(
                    kind=kind, host=host, branch=branch, module=module, target=locked[0] if module and locked else None,
                    requested_by=user, requested_from=ip, params=params,
                )
        except IntegrityError:  # the unique constraint: another request won the race
            raise Busy(_busy_message(_conflicts(host, branch, module).first())) from None


def request_job(kind: str, host: str, branch: str, module: str, user: str, ip: str | None, params: dict | None = None) -> Job:
    """Create the job and queue it on the host's queue. Raises Busy if another one is active on
    the module (or, for a module job, a bulk job on its branch; for a bulk job, any job of the branch)."""
    from ..tasks import run_job

    try:
        job = _create(kind, host, branch, module, user, ip, params or {})
    except Busy:
        if not fail_stale_jobs(host):
            raise
        job = _create(kind, host, branch, module, user, ip, params or {})  # a stale job held the module
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
    return qs.update(status=Job.State.FAILED, error=INTERRUPTED, finished_at=timezone.now())


INTERRUPTED = "interrupted: the worker stopped"


class _Heartbeat:
    """While a job runs, a thread stamps its heartbeat every quarter of the stale age, so a long
    step without progress (a big archive copy, a re-check) is never taken for a dead worker."""

    def __init__(self, job_id: int):
        self.job_id = job_id
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._beat, name=f"opsdash-job-{job_id}-heartbeat", daemon=True)

    def __enter__(self) -> _Heartbeat:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        self.thread.join()

    def _beat(self) -> None:
        try:
            while not self.stop.wait(settings.OPSDASH_JOB_STALE_SECONDS / 4):
                Job.objects.filter(pk=self.job_id, status=Job.State.RUNNING).update(heartbeat=timezone.now())
        except Exception:  # a missed heartbeat at worst shows the job as interrupted; never fail the job
            log.exception("heartbeat of job %s", self.job_id)
        finally:
            connection.close()


class _Progress:
    """Writes progress to the job row a few times a second at most (and the heartbeat)."""

    def __init__(self, job: Job, every: float = 0.3):
        self.job = job
        self.every = every
        self.last = 0.0

    def __call__(self, done: float, total: float, text: str = "", info: dict[str, Any] | None = None) -> None:
        now = time.monotonic()
        if now - self.last < self.every and done < total:
            return
        self.last = now
        Job.objects.filter(pk=self.job.pk).update(
            progress=min(1.0, done / total) if total else 1.0, progress_text=text[:200],
            progress_info=db_safe(info or {}), heartbeat=timezone.now(),
        )


def execute(job_id: int) -> dict[str, Any]:
    """Run one job (in the worker). Never raises for a failed action: the job records it."""
    now = timezone.now()
    # Claimed by a conditional update: a task delivered twice still runs the action once.
    claimed = Job.objects.filter(pk=job_id, status=Job.State.QUEUED).update(status=Job.State.RUNNING, started_at=now, heartbeat=now)
    job = Job.objects.get(pk=job_id)
    if not claimed:
        return {"skipped": job.status}
    progress = _Progress(job)
    audit = {"before": "", "after": ""}
    with _Heartbeat(job.pk):
        try:
            result = RUNNERS[job.kind](job, progress, audit)
        except PartlyFailed as exc:
            return _finish(job, Job.State.FAILED, result=exc.result, error=_one_line(exc), audit=audit)
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
    progress = Job.objects.filter(pk=job.pk).values_list("progress", flat=True).first() or 0.0
    result, error = db_safe(result), db_safe(error)  # text from the files: PostgreSQL refuses NUL
    Job.objects.filter(pk=job.pk).update(
        status=status, result=result, error=error, finished_at=timezone.now(),
        progress=1.0 if status == Job.State.SUCCEEDED else progress, heartbeat=timezone.now(),
    )
    params = {**job.params, "job": job.pk}
    if isinstance(result, dict) and (files := [f["name"] for f in result.get("archived", []) + result.get("removed", [])]):
        params["files"] = files
    _audit(job, job.kind, job.module, status, error or _summary(result), params, audit or {})
    return {"status": status, "error": error}


def _audit(job: Job, action: str, module: str, status: str, detail: str, params: dict, audit: dict) -> None:
    AuditEntry.objects.create(
        actor=job.requested_by, ip=job.requested_from, action=action, host=job.host, branch=job.branch, module=module,
        params=db_safe(params), outcome="ok" if status == Job.State.SUCCEEDED else "failed", detail=db_safe(detail),
        meta_sha256_before=audit.get("before") or "", meta_sha256_after=audit.get("after") or "",
    )


def _summary(result: Any) -> str:
    if not isinstance(result, dict):
        return ""
    return str(result.get("summary", ""))[:500]


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
    return _rebuild_state(_state(job), job.requested_by, progress, audit)


def _rebuild_state(state: ModuleState, user: str, progress: Callable, audit: dict) -> dict[str, Any]:
    module = live_module(state)
    report = module.rebuild(progress=lambda done, total: progress(
        done, total, f"{_mb(done)} of {_mb(total)} of the log read", {"unit": "bytes", "done": done, "total": total}))
    audit["before"] = report.meta_sha256_before or ""
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


def _mb(n: int) -> str:
    return f"{n / 1_000_000:,.1f} MB"


def _verify(job: Job, progress: Callable, audit: dict) -> dict[str, Any]:
    state = scan_module(_state(job), ended_how=Incident.EndedHow.RESOLVED, ended_by=f"verify by {job.requested_by}")
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
        Backup.objects.filter(module=state, name=item.name).update(state=Backup.State.ARCHIVED, archive_path=item.path, last_changed=now)
        _store_blob(state, item)
    scan_module(state, ended_how=Incident.EndedHow.ARCHIVED, ended_by=user)
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
    state = _state(job)
    removed = live_module(state).clean_temp(settings.OPSDASH_TEMP_GRACE_SECONDS)
    scan_module(state)
    names = ", ".join(r.name for r in removed)
    return {"summary": f"{len(removed)} orphan temp file(s) removed" + (f": {names}" if names else ""), "removed": [r.to_dict() for r in removed]}


# What a bulk job keeps of each module's outcome besides its English summary.
BULK_KEYS = ("events_read", "backup", "status", "archived")


def _bulk(job: Job, progress: Callable, kind: str, each: Callable[[ModuleState, dict], dict], states: list[ModuleState], verb: str) -> dict[str, Any]:
    """Run ``each`` on every module, go on past a failure, audit each module as its own action."""
    done, failed = [], []
    for i, state in enumerate(states):
        progress(i, len(states), f"{i} of {len(states)} modules, now {state.module}",
                 {"unit": "modules", "done": i, "total": len(states), "now": state.module})
        audit: dict[str, str] = {}
        try:
            outcome = each(state, audit)
        except (EventStoreError, FilesUnavailable, OSError) as exc:
            failed.append({"module": state.module, "error": _one_line(exc)})
            _audit(job, kind, state.module, Job.State.FAILED, _one_line(exc), {"bulk_job": job.pk}, audit)
        else:
            # "result" is the English line (API, audit); the rest lets a page word it in its language.
            done.append({"module": state.module, "result": outcome["summary"], **{k: outcome[k] for k in BULK_KEYS if k in outcome}})
            _audit(job, kind, state.module, Job.State.SUCCEEDED, outcome["summary"], {"bulk_job": job.pk}, audit)
    progress(len(states), len(states), f"{len(states)} of {len(states)} modules",  # not "now <the last one>" once done
             {"unit": "modules", "done": len(states), "total": len(states)})
    result = {"summary": f"{len(done)} module(s) {verb}, {len(failed)} failed", "modules": done, "failed": failed}
    if failed:
        raise PartlyFailed(result["summary"] + ": " + "; ".join(f"{f['module']}: {f['error']}" for f in failed), result)
    return result


def _bulk_rebuild(job: Job, progress: Callable, audit: dict) -> dict[str, Any]:
    states = _branch_modules(job, status=Status.CRITICAL)
    noop = lambda *a, **k: None  # noqa: E731 - per-module progress is not shown in a bulk job
    return _bulk(job, progress, Job.Kind.REBUILD, lambda s, a: _rebuild_state(s, job.requested_by, noop, a), states, "rebuilt")


def _bulk_archive(job: Job, progress: Callable, audit: dict) -> dict[str, Any]:
    def each(state: ModuleState, audit: dict) -> dict[str, Any]:
        done = _archive_state(state, job.requested_by)
        return {"summary": f"{len(done)} backup(s) archived: {', '.join(d['name'] for d in done)}", "archived": [d["name"] for d in done]}

    states = _branch_modules(job, backups__state=Backup.State.LIVE)
    return _bulk(job, progress, Job.Kind.ARCHIVE_BACKUPS, each, states, "archived")


def _branch_modules(job: Job, **filters: Any) -> list[ModuleState]:
    return list(ModuleState.objects.filter(host=job.host, branch=job.branch, **filters).distinct().order_by("module"))


RUNNERS: dict[str, Callable[[Job, Callable, dict], dict[str, Any]]] = {
    Job.Kind.REBUILD: _rebuild,
    Job.Kind.VERIFY: _verify,
    Job.Kind.ARCHIVE_BACKUPS: _archive,
    Job.Kind.CLEAN_TEMP: _clean_temp,
    Job.Kind.BULK_REBUILD: _bulk_rebuild,
    Job.Kind.BULK_ARCHIVE: _bulk_archive,
}
