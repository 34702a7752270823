"""The daily digest for managers: per branch, its modules by status, the incidents opened and
ended in the last day, the slowest repairs, and what is acknowledged or silenced until when.
``manage.py digest`` queues it as one alert to its emails (OPSDASH_DIGEST_EMAILS) and to the
channels whose events include "digest", and delivers it."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from django.db.models import Count, F
from django.utils import timezone

from ..models import Alert, Incident, ModuleState, Status
from .alerts import _link, _queue, deliver_due
from .mutes import active

SLOWEST = 5


@dataclass
class Branch:
    name: str
    statuses: Counter = field(default_factory=Counter)
    opened: int = 0
    ended: int = 0


@dataclass
class Digest:
    since: datetime
    until: datetime
    branches: dict[str, Branch]
    slowest: list[tuple[Incident, timedelta]]
    mutes: list

    def subject(self) -> str:
        total = Counter()
        for b in self.branches.values():
            total.update(b.statuses)
        return (
            f"[opsdash] daily digest: {total[Status.CRITICAL]} critical, {total[Status.WARNING]} warning, "
            f"{total[Status.HEALTHY]} healthy"
        )

    def lines(self) -> list[str]:
        out = [f"From {self.since:%Y-%m-%d %H:%M} to {self.until:%Y-%m-%d %H:%M} (UTC)."]
        for b in sorted(self.branches.values(), key=lambda b: b.name):
            counts = ", ".join(f"{b.statuses[s]} {s}" for s in Status.values if b.statuses[s])
            out.append(f"- {b.name}: {counts or 'no modules'}; {b.opened} incident(s) opened, {b.ended} ended")
        if self.slowest:
            out.append("Slowest repairs:")
            out += [
                f"- {i.module.branch}/{i.module.module}: {_hours(took)} ({', '.join(i.code_list)}), "
                f"{i.ended_how_display} by {i.ended_by or 'nobody'}"
                for i, took in self.slowest
            ]
        if self.mutes:
            out.append("Acknowledged or silenced:")
            out += [
                f"- {m.get_kind_display()} {_what(m)} by {m.created_by}"
                + (f" until {m.until:%Y-%m-%d %H:%M}" if m.until else " until it gets worse or is lifted")
                + f": {m.comment}"
                for m in self.mutes
            ]
        return out


def _hours(took: timedelta) -> str:
    minutes = int(took.total_seconds() // 60)
    return f"{minutes // 60} h {minutes % 60:02d} min"


def _what(mute) -> str:
    if mute.module_id:
        return f"{mute.module.branch}/{mute.module.module}"
    return f"branch {mute.branch}" if mute.branch else f"finding {mute.code}"


def build(now: datetime | None = None, hours: int = 24) -> Digest:
    now = now or timezone.now()
    since = now - timedelta(hours=hours)
    branches: dict[str, Branch] = {}
    for row in ModuleState.objects.values("branch", "status").annotate(n=Count("id")).order_by():
        branches.setdefault(row["branch"], Branch(row["branch"])).statuses[row["status"]] += row["n"]
    for row in (
        Incident.objects.filter(opened_at__gte=since, opened_at__lt=now)
        .values("module__branch")
        .annotate(n=Count("id"))
    ):
        branches.setdefault(row["module__branch"], Branch(row["module__branch"])).opened = row["n"]
    ended = Incident.objects.filter(ended_at__gte=since, ended_at__lt=now)
    for row in ended.values("module__branch").annotate(n=Count("id")):
        branches.setdefault(row["module__branch"], Branch(row["module__branch"])).ended = row["n"]
    slow = ended.exclude(source=Incident.Source.STORE_SERVER).annotate(took=F("ended_at") - F("opened_at"))
    slowest = [(i, i.took) for i in slow.select_related("module").order_by("-took")[:SLOWEST]]
    mutes = list(active().select_related("module").order_by("created_at"))
    return Digest(since, now, branches, slowest, mutes)


def send(now: datetime | None = None, hours: int = 24) -> tuple[Digest, Alert]:
    """Queue the digest as one alert (its deliveries by the routes) and deliver what is due."""
    now = now or timezone.now()
    digest = build(now, hours)
    payload = {
        "event": Alert.Event.DIGEST,
        "host": "",
        "subject": digest.subject(),
        "lines": digest.lines(),
        "url": _link("/"),
        "at": now.isoformat(),
    }
    alert = _queue(Alert.Event.DIGEST, payload, now, None, "")
    deliver_due(now)
    return digest, alert
