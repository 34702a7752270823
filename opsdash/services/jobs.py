"""Operator actions as jobs: requested by a view, queued for the module's host, run by a worker.

A job row is created first (the database refuses a second active job on the same module), then
a task is queued on the host's queue; the worker runs :func:`execute`, which claims the job,
runs its action's runner (opsdash.actions, services.runners) and records progress, the result
or the error, and an audit entry.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any

from django.conf import settings
from django.db import IntegrityError, connection, transaction
from django.utils import formats, timezone
from django.utils.translation import gettext

from ..actions import ACTIONS, title_of
from ..models import Job, ModuleState, WorkerHeartbeat
from .audit import record_job
from .nul import db_safe
from .runners import EXPECTED_FAILURES, PartlyFailed, one_line

log = logging.getLogger(__name__)


class Busy(Exception):
    """Another action is queued or running on this module (or its branch); the message says which."""


def _conflicts(host: str, branch: str, module: str):
    """Active jobs that forbid a new one: on the same module or the branch as a whole (a bulk job);
    for a bulk job, any active job of the branch."""
    active = Job.objects.filter(host=host, branch=branch, status__in=Job.ACTIVE)
    return active.filter(module__in=[module, ""]) if module else active


def _busy_message(other: Job | None) -> str:
    if other is None:
        return gettext("another action on this module has just started")
    at = formats.date_format(timezone.localtime(other.started_at or other.created_at), "DATETIME_FORMAT")
    values = {
        "kind": title_of(other.kind),
        "branch": other.branch,
        "module": other.module,
        "user": other.requested_by,
        "at": at,
        "status": other.get_status_display(),
    }
    if other.module:
        if other.status == Job.Status.RUNNING:
            return (
                gettext("a %(kind)s on %(branch)s/%(module)s started by %(user)s at %(at)s is still %(status)s")
                % values
            )
        return (
            gettext("a %(kind)s on %(branch)s/%(module)s requested by %(user)s at %(at)s is still %(status)s") % values
        )
    if other.status == Job.Status.RUNNING:
        return (
            gettext("a %(kind)s on the whole branch %(branch)s started by %(user)s at %(at)s is still %(status)s")
            % values
        )
    return (
        gettext("a %(kind)s on the whole branch %(branch)s requested by %(user)s at %(at)s is still %(status)s")
        % values
    )


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
                    kind=kind,
                    host=host,
                    branch=branch,
                    module=module,
                    target=locked[0] if module and locked else None,
                    requested_by=user,
                    requested_from=ip,
                    params=params,
                )
        except IntegrityError:  # the unique constraint: another request won the race
            raise Busy(_busy_message(_conflicts(host, branch, module).first())) from None


Enqueue = Callable[[Job], str]
_enqueue: Enqueue | None = None


def use_queue(enqueue: Enqueue) -> None:
    """How a job reaches its host's queue: ``enqueue(job)`` returns the task's id (the app's
    ready() hands in tasks.enqueue_job; tests may hand in their own)."""
    global _enqueue
    _enqueue = enqueue


def request_job(
    kind: str, host: str, branch: str, module: str, user: str, ip: str | None, params: dict | None = None
) -> Job:
    """Create the job and queue it on the host's queue. Raises Busy if another one is active on
    the module (or, for a module job, a bulk job on its branch; for a bulk job, any job of the branch)."""
    if kind not in ACTIONS:
        raise ValueError(f"no action {kind!r}")
    if _enqueue is None:
        raise RuntimeError("no job queue: the opsdash app is not ready")
    try:
        job = _create(kind, host, branch, module, user, ip, params or {})
    except Busy:
        if not fail_stale_jobs(host):
            raise
        job = _create(kind, host, branch, module, user, ip, params or {})  # a stale job held the module
    try:
        task_id = _enqueue(job)
    except Exception as exc:  # never leave a queued job that no task will run: it would block the module
        Job.objects.filter(pk=job.pk).update(
            status=Job.Status.FAILED, error=f"could not be queued: {one_line(exc)}", finished_at=timezone.now()
        )
        raise
    Job.objects.filter(pk=job.pk).update(task_id=task_id)
    job.task_id = task_id
    return job


def fail_stale_jobs(host: str | None = None) -> int:
    """Running jobs whose worker stopped (no heartbeat for a while) are failed, not left running."""
    cutoff = timezone.now() - timedelta(seconds=settings.OPSDASH_JOB_STALE_SECONDS)
    qs = Job.objects.filter(status=Job.Status.RUNNING, heartbeat__lt=cutoff)
    if host:
        qs = qs.filter(host=host)
    return qs.update(status=Job.Status.FAILED, error=INTERRUPTED, finished_at=timezone.now())


INTERRUPTED = "interrupted: the worker stopped"


def worker_seen_at(host: str) -> datetime | None:
    """When a worker of ``host``'s queue last showed a sign of life (None: never)."""
    return WorkerHeartbeat.objects.filter(host=host).values_list("last_seen_at", flat=True).first()


def waits_for_a_worker(job: Job, now: datetime | None = None) -> bool:
    """Queued for longer than OPSDASH_JOB_STALE_SECONDS while no worker of its host has shown a
    sign of life for as long: nobody is there to run it."""
    if job.status != Job.Status.QUEUED:
        return False
    cutoff = (now or timezone.now()) - timedelta(seconds=settings.OPSDASH_JOB_STALE_SECONDS)
    seen = worker_seen_at(job.host)
    return job.created_at < cutoff and (seen is None or seen < cutoff)


def unattended_queues(now: datetime | None = None) -> list[str]:
    """Hosts with a job queued for longer than OPSDASH_JOB_STALE_SECONDS and no live worker."""
    cutoff = (now or timezone.now()) - timedelta(seconds=settings.OPSDASH_JOB_STALE_SECONDS)
    waiting = set(Job.objects.filter(status=Job.Status.QUEUED, created_at__lt=cutoff).values_list("host", flat=True))
    alive = set(
        WorkerHeartbeat.objects.filter(host__in=waiting, last_seen_at__gte=cutoff).values_list("host", flat=True)
    )
    return sorted(waiting - alive)


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
                Job.objects.filter(pk=self.job_id, status=Job.Status.RUNNING).update(heartbeat=timezone.now())
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
            progress=min(1.0, done / total) if total else 1.0,
            progress_text=text[:200],
            progress_info=db_safe(info or {}),
            heartbeat=timezone.now(),
        )


def execute(job_id: int) -> dict[str, Any]:
    """Run one job (in the worker). Never raises for a failed action: the job records it."""
    now = timezone.now()
    # Claimed by a conditional update: a task delivered twice still runs the action once.
    claimed = Job.objects.filter(pk=job_id, status=Job.Status.QUEUED).update(
        status=Job.Status.RUNNING, started_at=now, heartbeat=now
    )
    job = Job.objects.get(pk=job_id)
    if not claimed:
        return {"skipped": job.status}
    progress = _Progress(job)
    audit = {"before": "", "after": ""}
    with _Heartbeat(job.pk):
        try:
            result = ACTIONS[job.kind].runner(job, progress, audit)
        except PartlyFailed as exc:
            return _finish(job, Job.Status.FAILED, result=exc.result, error=one_line(exc), audit=audit)
        except EXPECTED_FAILURES as exc:
            return _finish(job, Job.Status.FAILED, error=one_line(exc), audit=audit)
        except Exception as exc:  # a bug: still a failed job with a clear line, and a log with the traceback
            log.exception("job %s failed", job.pk)
            return _finish(job, Job.Status.FAILED, error=f"unexpected error: {one_line(exc)}", audit=audit)
        return _finish(job, Job.Status.SUCCEEDED, result=result, audit=audit)


def _finish(job: Job, status: str, result: Any = None, error: str = "", audit: dict | None = None) -> dict[str, Any]:
    progress = Job.objects.filter(pk=job.pk).values_list("progress", flat=True).first() or 0.0
    result, error = db_safe(result), db_safe(error)  # text from the files: PostgreSQL refuses NUL
    Job.objects.filter(pk=job.pk).update(
        status=status,
        result=result,
        error=error,
        finished_at=timezone.now(),
        progress=1.0 if status == Job.Status.SUCCEEDED else progress,
        heartbeat=timezone.now(),
    )
    params = {**job.params, "job": job.pk}
    if isinstance(result, dict) and (
        files := [f["name"] for f in result.get("archived", []) + result.get("removed", [])]
    ):
        params["files"] = files
    record_job(job, job.kind, job.module, status, error or _summary(result), params, audit or {})
    return {"status": status, "error": error}


def _summary(result: Any) -> str:
    if not isinstance(result, dict):
        return ""
    return str(result.get("summary", ""))[:500]
