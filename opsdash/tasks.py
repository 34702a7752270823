"""Tasks of Django's task framework (database-backed queue, one queue per host)."""

from __future__ import annotations

from django.tasks import task

from .models import Job
from .services.jobs import execute


class JobFailed(Exception):
    """The job's action failed: its row holds the error (so the task framework records the task
    as failed, and a worker's log never calls it successful)."""


@task()
def run_job(job_id: int) -> dict:
    """Run one operator action; the job row records progress, result or error."""
    outcome = execute(job_id)
    if outcome.get("status") == Job.Status.FAILED:
        raise JobFailed(f"job {job_id} failed: {outcome.get('error') or 'see the job'}")
    return outcome


def enqueue_job(job: Job) -> str:
    """Queue ``job`` on its host's queue; the task's id."""
    return str(run_job.using(queue_name=job.host).enqueue(job.pk).id)
