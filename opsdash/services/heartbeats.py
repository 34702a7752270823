"""Which store hosts report: every scanner pass stamps its host's row (``ScanHost``); a host
whose last pass is older than ``OPSDASH_STALE_SECONDS`` (by default three scan intervals) is
*stale*: its modules' statuses may be out of date, and every surface says so (the JSON API, the
pages, ``/metrics``, ``/healthz``, and one alert when it stops and one when it reports again).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from django.conf import settings
from django.utils import timezone

from ..models import ScanHost


@dataclass(frozen=True)
class Heartbeat:
    """The last pass of a host's scanner as the pages and the API tell it."""

    host: str
    last_pass_at: datetime | None  # None: no scanner of this host ever reported
    stale: bool
    error: str = ""  # why the last pass failed
    problems: tuple[dict[str, str], ...] = ()  # what it could not scan ({"path", "reason"})

    @property
    def troubled(self) -> bool:
        """Anything a person should know about this host's scanner."""
        return self.stale or bool(self.error) or bool(self.problems)


def stale_before(now: datetime | None = None) -> datetime:
    """Passes older than this are too old: their host is stale."""
    return (now or timezone.now()) - timedelta(seconds=settings.OPSDASH_STALE_SECONDS)


def all_heartbeats(now: datetime | None = None) -> dict[str, Heartbeat]:
    """Every host that ever reported, by name (one query)."""
    cutoff = stale_before(now)
    rows = ScanHost.objects.values_list("host", "last_pass_at", "error", "problems")
    return {host: Heartbeat(host, at, at < cutoff, error, tuple(problems or ())) for host, at, error, problems in rows}


def heartbeat_of(host: str, known: dict[str, Heartbeat] | None = None) -> Heartbeat:
    """One host's heartbeat; a host without any pass is stale (nothing vouches for its rows)."""
    beats = all_heartbeats() if known is None else known
    return beats.get(host) or Heartbeat(host, None, True)


def stale_hosts(now: datetime | None = None) -> list[Heartbeat]:
    """Hosts whose scanner stopped reporting, longest silent first."""
    stale = [beat for beat in all_heartbeats(now).values() if beat.stale]
    return sorted(stale, key=lambda beat: (beat.last_pass_at, beat.host))


def troubled_hosts(now: datetime | None = None) -> list[Heartbeat]:
    """Hosts whose scanner stopped, failed its last pass, or could not scan a folder."""
    troubled = [beat for beat in all_heartbeats(now).values() if beat.troubled]
    return sorted(troubled, key=lambda beat: (not beat.stale, beat.last_pass_at, beat.host))


def check_interval(interval: float) -> None:
    """Refuse a scanner interval that would show its own host stale between two passes."""
    if interval > settings.OPSDASH_STALE_SECONDS:
        raise ValueError(
            f"the scan interval ({interval:g} s) is longer than OPSDASH_STALE_SECONDS ({settings.OPSDASH_STALE_SECONDS} s): "
            "this host would be shown stale between two of its passes; shorten the interval or raise OPSDASH_STALE_SECONDS"
        )


def newly_stale(now: datetime | None = None) -> list[ScanHost]:
    """Hosts that went stale since anyone last looked, each claimed by a conditional update so
    that, with several scanners and web processes looking, exactly one of them alerts."""
    now = now or timezone.now()
    claimed = []
    for row in ScanHost.objects.filter(last_pass_at__lt=stale_before(now), stale_since__isnull=True):
        if ScanHost.objects.filter(pk=row.pk, stale_since__isnull=True, last_pass_at=row.last_pass_at).update(
            stale_since=now
        ):
            row.stale_since = now
            claimed.append(row)
    return claimed
