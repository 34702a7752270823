"""The scanner of one host: a pass (scan with its scrub, heartbeat, alerts), and the loop of passes that
``manage.py scan --loop`` and ``manage.py agent`` run."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime

from django.db import close_old_connections
from django.utils import timezone

from eventstore.errors import EventStoreError

from .alerts import after_pass
from .host import local_host
from .scan import EXIT_ROOT_UNUSABLE, ScanReport, record_pass, scan_root

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class PassOutcome:
    """What one pass did: its report, or why the data root could not be scanned."""

    report: ScanReport | None
    error: str = ""

    @property
    def exit_code(self) -> int:
        return self.report.exit_code if self.report is not None else EXIT_ROOT_UNUSABLE

    def line(self) -> str:
        return self.report.summary() if self.report is not None else self.error


def run_pass(interval: float | None = None, now: datetime | None = None) -> PassOutcome:
    """One pass of this host's scanner (:func:`host.local_host`): scan its data root, record its
    heartbeat, then queue and deliver alerts (its modules' changes, the hosts that stopped
    reporting). An unusable data root is an outcome, not an exception: the heartbeat says it.
    ``now``: the pass's time (tests walk the scrub's days with it)."""
    host = local_host().name
    now = now or timezone.now()
    try:
        report = scan_root(host=host, now=now, interval=interval)
    except EventStoreError as exc:
        back = record_pass(None, host=host, error=str(exc), now=now, interval=interval)
        after_pass([], [host] if back else [], now=now)  # due retries still go out
        return PassOutcome(None, str(exc))
    back = record_pass(report, host=host, now=now, interval=interval)
    after_pass(report.transitions, [host] if back else [], overdue_of=host, now=now)
    return PassOutcome(report)


def run_loop(interval: float, stop: threading.Event, report: Callable[[PassOutcome], None]) -> None:
    """A pass every ``interval`` seconds until ``stop`` is set (the commands set it on SIGTERM).

    A pass that fails (a bug, the database gone for a moment) is logged with its traceback,
    recorded in the heartbeat when the database allows, and the loop goes on: the scanner stops
    only when asked to, and a scanner that stopped anyway shows as stale on every surface."""
    while not stop.is_set():
        try:
            outcome = run_pass(interval)
        except Exception as exc:
            log.exception("the scan pass of %s failed", local_host().name)
            outcome = PassOutcome(None, f"the pass failed: {type(exc).__name__}: {exc}")
            _record_failure(outcome.error, interval)
        report(outcome)
        stop.wait(interval)


def _record_failure(error: str, interval: float) -> None:
    close_old_connections()  # a connection broken by the failure is not reused
    try:
        record_pass(None, error=error[:2000], interval=interval)
    except Exception:
        log.exception("the failed pass could not be recorded either")
