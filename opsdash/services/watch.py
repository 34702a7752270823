"""The web process's watch over the scanners: a host whose scanner died cannot say so itself.

Every scanner pass looks for hosts that stopped reporting (alerts.after_pass); this thread does
the same from each web process, every ``OPSDASH_SCAN_INTERVAL`` seconds, so that the alert goes
out even when the only scanner is the one that stopped. The claim on the host's row
(heartbeats.newly_stale) keeps it to one alert however many processes look.
"""

from __future__ import annotations

import logging
import threading

from django.conf import settings
from django.db import connection

from .alerts import deliver_due, queue_host_alerts
from .heartbeats import newly_stale

log = logging.getLogger(__name__)
_lock = threading.Lock()
_thread: threading.Thread | None = None
_stop = threading.Event()


def look_once() -> int:
    """Queue the alerts of hosts that just went stale and deliver what is due; never raises."""
    try:
        made = queue_host_alerts(newly_stale(), [])
        if made:
            deliver_due()
        return made
    except Exception:
        log.exception("the watch over the scanners failed; trying again later")
        return 0
    finally:
        connection.close()


def start_watch() -> threading.Thread:
    """Start the watch thread once per process."""
    global _thread
    with _lock:
        if _thread is None:
            _stop.clear()
            _thread = threading.Thread(target=_run, name="opsdash-watch", daemon=True)
            _thread.start()
        return _thread


def stop_watch(timeout: float | None = None) -> None:
    global _thread
    with _lock:
        thread, _thread = _thread, None
    _stop.set()
    if thread is not None:
        thread.join(timeout)


def _run() -> None:
    while not _stop.wait(settings.OPSDASH_SCAN_INTERVAL):
        look_once()
