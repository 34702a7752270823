"""What ``/healthz`` checks: can this process do its work?

Every process needs the database. A process that watches a data root (a store host: the
embedded default, or a web server that runs on a store host) also needs that root to be usable
and its scanner to report. Hosts elsewhere that stopped reporting do not make this process
unhealthy (a load balancer must not take the web server out because a store is down): they are
listed in the detail, and each has its alert.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from django.db import DatabaseError, connection

from eventstore.errors import EventStoreError

from .heartbeats import all_heartbeats, heartbeat_of
from .host import local_host
from .jobs import unattended_queues


@dataclass(frozen=True)
class Probe:
    ok: bool
    reason: str = ""
    detail: dict[str, Any] = field(default_factory=dict)

    @property
    def status(self) -> str:
        return "ok" if self.ok else "error"


def probe() -> Probe:
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")
        beats = all_heartbeats()
    except DatabaseError as exc:
        return Probe(False, f"database: {exc}")
    here = local_host()
    detail: dict[str, Any] = {
        "database": "ok",
        "host": here.name,
        "data_root": str(here.data_root) if here.data_root else None,
        "stale_hosts": sorted(beat.host for beat in beats.values() if beat.stale),
        "unattended_queues": unattended_queues(),
    }
    if here.data_root is None:
        return Probe(True, detail=detail)  # web only: healthy when its database is
    try:
        here.open_store()
    except EventStoreError as exc:
        return Probe(False, f"data root: {exc}", detail)
    own = heartbeat_of(here.name, beats)
    detail["last_scan_at"] = own.last_pass_at
    detail["not_scanned"] = list(own.problems)
    if own.stale:
        when = f"has not reported since {own.last_pass_at.isoformat()}" if own.last_pass_at else "has never reported"
        return Probe(False, f"scanner: the scanner of this host ({here.name}) {when}", detail)
    return Probe(True, detail=detail)
