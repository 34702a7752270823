"""``manage.py scan [--loop SECONDS]``: record the health of every module of the data root."""

from __future__ import annotations

import signal
import threading
from typing import Any

from django.core.management.base import BaseCommand, CommandParser

from eventstore.errors import EventStoreError

from ...services.alerts import after_pass
from ...services.scan import EXIT_ROOT_UNUSABLE, record_pass, scan_root


class Command(BaseCommand):
    help = "Check every module of the data root and record states, incidents and backups. Exit 0/1/2 by the worst status, 3 if the root is unusable."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--loop", type=float, metavar="SECONDS", help="scan again every SECONDS until SIGTERM/SIGINT")
        parser.add_argument("--data-root", help="scan this folder instead of OPSDASH_DATA_ROOT")

    def handle(self, *args: Any, **options: Any) -> None:
        stop = threading.Event()
        if options["loop"]:
            for sig in (signal.SIGTERM, signal.SIGINT):
                signal.signal(sig, lambda *_: stop.set())
        code = self._pass(options["data_root"])
        while options["loop"] and not stop.is_set():
            if not stop.wait(options["loop"]):
                code = self._pass(options["data_root"])
        if options["loop"]:
            code = 0  # a loop stopped by a signal is a clean shutdown
        raise SystemExit(code)

    def _pass(self, data_root: str | None) -> int:
        try:
            report = scan_root(data_root)
        except EventStoreError as exc:
            record_pass(None, error=str(exc))
            after_pass([])  # due retries still go out
            self.stderr.write(f"scan: {exc}")
            return EXIT_ROOT_UNUSABLE
        record_pass(report)
        after_pass(report.transitions)
        self.stdout.write(report.summary())
        return report.exit_code
