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
from django.db import DatabaseError, connection
from django.utils import timezone
from django_tasks_db.management.commands.db_worker import Worker

from ..models import WorkerHeartbeat
from .host import local_host
from .jobs import fail_stale_jobs

log = logging.getLogger(__name__)
_started: threading.Thread | None = None
_worker: HostWorker | None = None
_lock = threading.Lock()


class HostWorker:
    """django_tasks_db's worker for one host's queue, with a heartbeat: while it runs, a thread
    stamps the host's WorkerHeartbeat every quarter of OPSDASH_JOB_STALE_SECONDS, so the pages can
    tell a queued job that waits for its turn from one that waits for a worker nobody started."""

    def __init__(self, host: str, batch: bool = False):
        self.host = host
        self.worker = Worker(
            queue_names=[host],
            interval=0.5,
            batch=batch,
            backend_name="default",
            startup_delay=False,
            max_tasks=None,
            worker_id=f"{host}-{os.getpid()}-{threading.get_ident()}"[:64],
            excluded_queue_names=[],
        )
        self._stop = threading.Event()

    @property
    def running(self) -> bool:
        return self.worker.running

    @running.setter
    def running(self, value: bool) -> None:
        self.worker.running = value  # False: finish the current job, then stop

    def run(self) -> None:
        self._stop.clear()
        self._beat_once()
        beat = threading.Thread(target=self._beat, name=f"opsdash-worker-{self.host}-heartbeat", daemon=True)
        beat.start()
        try:
            self.worker.run()
        finally:
            self._stop.set()
            beat.join()

    def _beat(self) -> None:
        try:
            while not self._stop.wait(settings.OPSDASH_JOB_STALE_SECONDS / 4):
                self._beat_once()
        finally:
            connection.close()

    def _beat_once(self) -> None:
        try:
            WorkerHeartbeat.objects.update_or_create(
                host=self.host, defaults={"last_seen_at": timezone.now(), "worker_id": self.worker.worker_id}
            )
        except DatabaseError:  # a missed beat at worst shows the queue as unattended for a while
            log.exception("the heartbeat of the worker of %s could not be written", self.host)


def make_worker(host: str, batch: bool = False) -> HostWorker:
    """The worker of ``host``'s queue; ``batch`` stops it when the queue is empty."""
    return HostWorker(host, batch)


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


def _run(worker: HostWorker) -> None:
    try:
        worker.run()
    except Exception:
        log.exception("the embedded worker stopped")
    finally:
        connection.close()
