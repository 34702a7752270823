"""``manage.py scan [--loop SECONDS] [--data-root PATH]``: record the health of every module of the data root."""

from __future__ import annotations

import signal
import threading
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from ...services.heartbeats import check_interval
from ...services.host import serving
from ...services.scanner import PassOutcome, run_loop, run_pass


class Command(BaseCommand):
    help = "Check every module of the data root and record states, incidents and backups. Exit 0/1/2 by the worst status, 3 if the root is unusable."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--loop", type=float, metavar="SECONDS", help="scan again every SECONDS until SIGTERM/SIGINT"
        )
        parser.add_argument("--data-root", help="scan this folder instead of OPSDASH_DATA_ROOT")

    def handle(self, *args: Any, **options: Any) -> None:
        with serving(data_root=options["data_root"]):
            if not options["loop"]:
                outcome = run_pass()
                self._report(outcome)
                raise SystemExit(outcome.exit_code)
            try:
                check_interval(options["loop"])
            except ValueError as exc:
                raise CommandError(str(exc)) from None
            stop = threading.Event()
            for sig in (signal.SIGTERM, signal.SIGINT):
                signal.signal(sig, lambda *_: stop.set())
            run_loop(options["loop"], stop, self._report)
        raise SystemExit(0)  # a loop stopped by a signal is a clean shutdown

    def _report(self, outcome: PassOutcome) -> None:
        if outcome.report is None:
            self.stderr.write(f"scan: {outcome.error}")
        else:
            self.stdout.write(outcome.line())
