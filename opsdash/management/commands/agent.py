"""``manage.py agent``: the process of one store host. It scans the host's data root into the
shared database on a loop and runs the jobs of the host's own queue, until SIGTERM/SIGINT.

Several agents (one per host, each with its own ``--host``) can share one database: module
rows, incidents and jobs carry the host, and each agent only claims its own queue. ``--host``
and ``--data-root`` hold for everything the agent runs, its jobs included (services.host).
"""

from __future__ import annotations

import signal
import threading
from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError, CommandParser

from ...services.heartbeats import check_interval
from ...services.host import LocalHost, serving
from ...services.jobs import fail_stale_jobs
from ...services.scanner import PassOutcome, run_loop, run_pass
from ...services.worker import make_worker


class Command(BaseCommand):
    help = "Scan this host's data root on a loop and run this host's jobs, until SIGTERM."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--interval",
            type=float,
            default=float(settings.OPSDASH_SCAN_INTERVAL),
            help="seconds between scans (default OPSDASH_SCAN_INTERVAL)",
        )
        parser.add_argument("--data-root", help="this host's data root (default OPSDASH_DATA_ROOT)")
        parser.add_argument("--host", help="this host's name (default OPSDASH_HOST_NAME)")
        parser.add_argument("--once", action="store_true", help="one scan, then run the queued jobs, then exit")

    def handle(self, *args: Any, **options: Any) -> None:
        if not options["once"]:
            try:
                check_interval(options["interval"])
            except ValueError as exc:
                raise CommandError(str(exc)) from None
        with serving(options["host"], options["data_root"]) as host:
            failed = fail_stale_jobs(host.name)
            if failed:
                self.stderr.write(f"agent {host.name}: {failed} interrupted job(s) marked failed")
            if options["once"]:
                self._report(host, run_pass())
                make_worker(host.name, batch=True).run()
                return
            self._serve(host, options["interval"])

    def _serve(self, host: LocalHost, interval: float) -> None:
        stop = threading.Event()
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, lambda *_: stop.set())
        worker = make_worker(host.name)
        thread = threading.Thread(target=worker.run, name=f"agent-worker-{host.name}", daemon=True)
        thread.start()
        self.stdout.write(
            f"agent {host.name}: scanning {host.data_root} every {interval:g} s, running queue {host.name!r}"
        )
        run_loop(interval, stop, lambda outcome: self._report(host, outcome))
        worker.running = False
        thread.join(timeout=120)  # let a running job finish
        self.stdout.write(f"agent {host.name}: stopped")

    def _report(self, host: LocalHost, outcome: PassOutcome) -> None:
        if outcome.report is None:
            self.stderr.write(f"agent {host.name}: {outcome.error}")
        else:
            self.stdout.write(f"agent {host.name}: {outcome.line()}")
