"""Maintenance windows (models.MaintenanceWindow): whether one covers a module or a host now.

A window names a host, a branch and a module, each empty for "all". One-off windows run from
``starts_at`` to ``ends_at``; recurring ones start at each time of their cron expression (read
in the dashboard's time zone, OPSDASH_TIME_ZONE) and last ``minutes``. During one, no alert is
sent for what it covers and incidents opened are marked as during maintenance.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

from croniter import CroniterBadCronError, croniter
from django.conf import settings
from django.utils import timezone

from ..models import MaintenanceWindow

MAX_MINUTES = 7 * 24 * 60  # a recurring window lasts at most a week


def valid_cron(expression: str) -> bool:
    """A five-field cron expression croniter reads."""
    return len(expression.split()) == 5 and croniter.is_valid(expression)


def is_open(window: MaintenanceWindow, now: datetime) -> bool:
    """Whether ``window`` is in force at ``now``."""
    if window.cancelled_at is not None:
        return False
    if window.cron:
        return _recurring_open(window, now)
    return window.starts_at is not None and window.ends_at is not None and window.starts_at <= now < window.ends_at


def _recurring_open(window: MaintenanceWindow, now: datetime) -> bool:
    local = now.astimezone(ZoneInfo(settings.TIME_ZONE))
    try:
        # the last start at or before now (a start exactly now counts: get_prev of a second later)
        last = croniter(window.cron, local + timedelta(seconds=1)).get_prev(datetime)
    except (CroniterBadCronError, ValueError, KeyError):
        return False
    return last <= local < last + timedelta(minutes=window.minutes)


def next_start(window: MaintenanceWindow, now: datetime | None = None) -> datetime | None:
    """When the window next starts (None: a one-off that started, or a cancelled one)."""
    now = now or timezone.now()
    if window.cancelled_at is not None:
        return None
    if not window.cron:
        return window.starts_at if window.starts_at and window.starts_at > now else None
    try:
        return croniter(window.cron, now.astimezone(ZoneInfo(settings.TIME_ZONE))).get_next(datetime)
    except (CroniterBadCronError, ValueError, KeyError):
        return None


@dataclass
class Windows:
    """The windows not cancelled, read once for a pass or a page."""

    windows: list[MaintenanceWindow]

    @classmethod
    def load(cls) -> Windows:
        return cls(list(MaintenanceWindow.objects.filter(cancelled_at__isnull=True)))

    def covering(self, host: str, branch: str = "", module: str = "", now: datetime | None = None) -> list:
        """The windows in force now for the module (or the host, with branch and module empty:
        only windows of the whole host)."""
        now = now or timezone.now()
        return [
            w
            for w in self.windows
            if (not w.host or w.host == host)
            and (not w.branch or w.branch == branch)
            and (not w.module or w.module == module)
            and is_open(w, now)
        ]


def covers(host: str, branch: str = "", module: str = "", now: datetime | None = None) -> bool:
    return bool(Windows.load().covering(host, branch, module, now))
