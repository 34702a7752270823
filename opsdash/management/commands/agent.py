"""``manage.py agent``: the process of one store host. It scans the host's data root into the
shared database on a loop and runs the jobs of the host's own queue, until SIGTERM/SIGINT.

Several agents (one per host, each with its own OPSDASH_HOST_NAME) can share one database:
module rows, incidents and jobs carry the host, and each agent only claims its own queue.
"""

from __future__ import annotations

import signal
import threading
from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand, CommandParser

from eventstore.errors import EventStoreError

from ...services.alerts import after_pass
from ...services.jobs import fail_stale_jobs
from ...services.scan import record_pass, scan_root
from ...services.worker import make_worker


class Command(BaseCommand):
    help = "Scan this host's data root on a loop and run this host's jobs, until SIGTERM."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--interval", type=float, default=float(getattr(settings, "OPSDASH_SCAN_INTERVAL", 60)), help="seconds between scans")
        parser.add_argument("--data-root", help="this host's data root (default OPSDASH_DATA_ROOT)")
        parser.add_argument("--host", help="this host's name (default OPSDASH_HOST_NAME)")
        parser.add_argument("--once", action="store_true", help="one scan, then run the queued jobs, then exit")

    def handle(self, *args: Any, **options: Any) -> None:
        if options["host"]:
            settings.OPSDASH_HOST_NAME = options["host"]
        host = settings.OPSDASH_HOST_NAME
        failed = fail_stale_jobs(host)
        if failed:
            self.stderr.write(f"agent {host}: {failed} interrupted job(s) marked failed")
        if options["once"]:
            self._pass(options["data_root"], host)
            make_worker(host, batch=True).run()
            return
        stop = threading.Event()
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, lambda *_: stop.set())
        worker = make_worker(host)
        thread = threading.Thread(target=worker.run, name=f"agent-worker-{host}", daemon=True)
        thread.start()
        self.stdout.write(f"agent {host}: scanning every {options['interval']:g} s, running queue {host!r}")
        while not stop.is_set():
            self._pass(options["data_root"], host)
            stop.wait(options["interval"])
        worker.running = False
        thread.join(timeout=120)  # let a running job finish
        self.stdout.write(f"agent {host}: stopped")

    def _pass(self, data_root: str | None, host: str) -> None:
        try:
            report = scan_root(data_root, host=host)
        except EventStoreError as exc:
            record_pass(None, host=host, error=str(exc))
            after_pass([])  # due retries still go out
            self.stderr.write(f"agent {host}: {exc}")
            return
        record_pass(report, host=host)
        after_pass(report.transitions)
        self.stdout.write(f"agent {host}: {report.summary()}")
