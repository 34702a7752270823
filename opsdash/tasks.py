"""Tasks of Django's task framework (database-backed queue, one queue per host)."""

from __future__ import annotations

from django.tasks import task


@task()
def run_job(job_id: int) -> dict:
    """Run one operator action; the job row records progress, result or error."""
    from .services.jobs import execute

    return execute(job_id)
