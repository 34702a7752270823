"""The embedded worker: a thread of the web process that runs this host's queue.

In the embedded default (SQLite, one machine) the web server alone is a complete dashboard.
With several hosts each store host runs `manage.py agent` instead (or `manage.py db_worker
--queue-name <host>`), and OPSDASH_EMBEDDED_WORKER is off.
"""

from __future__ import annotations

import logging
import os
import threading

from django.conf import settings
from django.db import connection
from django_tasks_db.management.commands.db_worker import Worker

from .host import local_host
from .jobs import fail_stale_jobs

log = logging.getLogger(__name__)
_started: threading.Thread | None = None
_worker = None
_lock = threading.Lock()


def make_worker(queue: str, batch: bool = False) -> Worker:
    """django_tasks_db's worker for one queue; ``batch`` stops it when the queue is empty."""
    return Worker(
        queue_names=[queue],
        interval=0.5,
        batch=batch,
        backend_name="default",
        startup_delay=False,
        max_tasks=None,
        worker_id=f"{queue}-{os.getpid()}-{threading.get_ident()}"[:64],
        excluded_queue_names=[],
    )


def start_embedded_worker() -> threading.Thread | None:
    """Start the worker thread once per process (no signal handlers: it is not the main thread)."""
    global _started, _worker
    with _lock:
        if _started is not None or not settings.OPSDASH_EMBEDDED_WORKER:
            return _started
        host = local_host().name
        failed = fail_stale_jobs(host)
        if failed:
            log.warning("%d job(s) were running when the worker stopped: marked failed", failed)
        _worker = worker = make_worker(host)
        _started = threading.Thread(target=_run, args=(worker,), name="opsdash-worker", daemon=True)
        _started.start()
        return _started


def stop_embedded_worker(timeout: float | None = None) -> None:
    """Let the thread finish its current job and stop (a process that exits need not call this:
    an interrupted job is shown as failed once its heartbeat is old)."""
    global _started, _worker
    with _lock:
        thread, worker, _started, _worker = _started, _worker, None, None
    if worker is not None:
        worker.running = False
    if thread is not None:
        thread.join(timeout)


def _run(worker) -> None:
    try:
        worker.run()
    except Exception:
        log.exception("the embedded worker stopped")
    finally:
        connection.close()
