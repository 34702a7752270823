"""The scrub: every log is read again in full at least once every ``OPSDASH_SCRUB_DAYS`` days.

A log is append-only, so a full read that finds other bytes where the checkpoints of an earlier
read say what was there (``log_changed_in_place``) is damage no incremental pass could see: bit
rot, a bad disk, a hand edit that kept the size and the time. The work is spread over the
passes so that its cost is flat and known: each pass reads in full the modules verified longest
ago, about ``total log bytes / passes in half a window`` bytes of them per pass on average (a
credit the host's heartbeat keeps, so that logs larger than one pass's share are read in their
turn: every log comes round about twice per window), never more than
``OPSDASH_SCRUB_BYTES_PER_PASS`` in a pass (but a log larger than that is read alone in its pass
once it is due). ``OPSDASH_SCRUB_DAYS=0`` reads everything every pass.

A module not read in full for a day past its window raises one alert (:func:`flag_overdue`); its
next read in full clears the flag.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta

from django.conf import settings
from django.db.models import Q, QuerySet

from ..models import ModuleState, Status

# How long past its window a module may go unread before its alert.
OVERDUE_GRACE = timedelta(days=1)


@dataclass(frozen=True)
class ScrubPlan:
    """The modules (ids) a pass reads in full, the bytes of logs that makes, and the credit left."""

    full: frozenset[int]
    planned_bytes: int
    pace: int  # the bytes per pass that cover every log twice per window (capped by the budget)
    credit: int  # what the next pass starts from (before its own pace is added)

    def reads_in_full(self, module_row: ModuleState | None) -> bool:
        return module_row is not None and module_row.pk in self.full


def window() -> timedelta:
    """Every log is read in full at least once within this time (zero: every pass)."""
    return timedelta(days=settings.OPSDASH_SCRUB_DAYS)


def plan(rows: Iterable[ModuleState], now: datetime, interval: float | None = None, credit: int = 0) -> ScrubPlan:
    """Which of a host's modules (``rows``, with ``verified_at`` and ``log_size`` loaded) this
    pass reads in full. Each pass earns the pace as credit (never more than the budget) and
    spends it on the oldest verified first (never verified before all) while it lasts; a module
    whose turn has come (older than half the window) is read even when it costs more, alone."""
    rows = [r for r in rows if r.status != Status.GONE]
    if settings.OPSDASH_SCRUB_DAYS == 0:
        return ScrubPlan(frozenset(r.pk for r in rows), sum(r.log_size for r in rows), 0, 0)
    half = window() / 2
    passes = max(1.0, half.total_seconds() / (interval or settings.OPSDASH_SCAN_INTERVAL))
    budget = settings.OPSDASH_SCRUB_BYTES_PER_PASS
    pace = min(budget, math.ceil(sum(r.log_size for r in rows) / passes))
    credit = min(max(credit, 0) + pace, budget)
    due_before = now - half
    chosen: list[int] = []
    planned = 0
    for row in sorted(rows, key=_oldest_first):
        if row.log_size <= credit:
            credit -= row.log_size
        elif not chosen and (row.verified_at is None or row.verified_at <= due_before):
            credit = 0  # its turn: read now, whatever it costs
        else:
            break
        chosen.append(row.pk)
        planned += row.log_size
    return ScrubPlan(frozenset(chosen), planned, pace, credit)


def _oldest_first(row: ModuleState) -> tuple[bool, float, int]:
    return (row.verified_at is not None, row.verified_at.timestamp() if row.verified_at else 0.0, row.pk)


def overdue_before(now: datetime) -> datetime:
    """A module last read in full before this is overdue."""
    return now - window() - OVERDUE_GRACE


def overdue(qs: QuerySet[ModuleState], now: datetime) -> QuerySet[ModuleState]:
    """The modules of ``qs`` overdue for their read in full (gone ones are not)."""
    limit = overdue_before(now)
    return qs.exclude(status=Status.GONE).filter(
        Q(verified_at__lt=limit) | Q(verified_at__isnull=True, first_seen__lt=limit)
    )


def flag_overdue(host: str, now: datetime) -> list[ModuleState]:
    """Mark the host's modules that just became overdue (returned: one alert each) and clear
    the mark of those read in full since."""
    read_since = ModuleState.objects.filter(
        host=host, overdue_since__isnull=False, verified_at__gte=overdue_before(now)
    )
    if read_since.exists():  # a read, not a write, on a pass where nothing changed
        read_since.update(overdue_since=None)
    newly = list(overdue(ModuleState.objects.filter(host=host, overdue_since__isnull=True), now))
    claimed = []
    for module_row in newly:
        # Conditional, so that two processes never alert twice for the same module.
        if ModuleState.objects.filter(pk=module_row.pk, overdue_since__isnull=True).update(overdue_since=now):
            module_row.overdue_since = now
            claimed.append(module_row)
    return claimed
