"""The story of an incident, in order: when the scan first saw it and what it found, the log
lines at each position its findings name, what the Node server's log said around it, the
backups made, every job run on the module and who ran it, the notes people wrote, and how it
ended."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from django.db.models import Q
from django.http import QueryDict
from django.utils import timezone

from ..models import Backup, Incident, IncidentNote, Job, ServerRecovery
from . import events
from .files import FilesUnavailable

# What happened this long before an incident opened or after it ended belongs to its story
# (the store server's log lines, a backup it made, a job an operator ran).
AROUND = timedelta(minutes=5)
# Log excerpts: at most this many positions, each with a few lines.
MAX_EXCERPTS = 4


@dataclass(frozen=True)
class Step:
    """One moment of the story: its time, its kind (a template switch) and what it shows."""

    at: datetime | None
    kind: str  # "opened", "recovery", "backup", "job", "note", "ended"
    item: Any = None


@dataclass(frozen=True)
class Excerpt:
    """A few log lines where a finding points (the highlighted one among them)."""

    text: str  # the finding's link text ("line 7", "the events of sequence 12", ...)
    url: str
    rows: list[dict[str, Any]]
    highlight: int | None


@dataclass(frozen=True)
class Story:
    incident: Incident
    steps: list[Step]
    excerpts: list[Excerpt]
    excerpts_error: str


def story(incident: Incident, sees_payloads: bool) -> Story:
    module_row = incident.module
    start = incident.opened_at - AROUND
    end = (incident.ended_at or timezone.now()) + AROUND
    steps = [Step(incident.opened_at, "opened", incident)]
    recoveries = ServerRecovery.objects.filter(Q(incident=incident) | Q(module=module_row, at__range=(start, end)))
    steps += [Step(r.at, "recovery", [r]) for r in recoveries.distinct()]
    backups = Backup.objects.filter(Q(incident=incident) | Q(module=module_row, created_at__range=(start, end)))
    steps += [Step(b.created_at, "backup", b) for b in backups.distinct()]
    jobs = Job.objects.filter(
        Q(target=module_row) | Q(host=module_row.host, branch=module_row.branch, module=""),
        created_at__range=(start, end),
    )
    steps += [Step(j.created_at, "job", j) for j in jobs]
    steps += [Step(n.at, "note", n) for n in IncidentNote.objects.filter(incident=incident)]
    if incident.ended_at is not None:
        steps.append(Step(incident.ended_at, "ended", incident))
    steps.sort(key=lambda s: (s.at or incident.opened_at, _ORDER[s.kind]))
    excerpts, error = _excerpts(incident, sees_payloads)
    return Story(incident, steps, excerpts, error)


_ORDER = {"opened": 0, "recovery": 1, "backup": 2, "job": 3, "note": 4, "ended": 5}


def _excerpts(incident: Incident, sees_payloads: bool) -> tuple[list[Excerpt], str]:
    """The lines at each position the incident's findings name, read from the live log now (a
    log rotated since no longer holds them: the excerpt says what it finds there now)."""
    module_row = incident.module
    links = [link for f in incident.findings for link in events.finding_links(module_row, f)][:MAX_EXCERPTS]
    if not links:
        return [], ""
    try:
        files = events.log_files(module_row)
    except FilesUnavailable as exc:
        return [], str(exc)
    log = files[0]
    index = events.index_of(module_row, log)
    out = []
    for text, url in links:
        query = events.EventQuery.from_query(_query_of(url), sees_payloads)
        result = events.read(log, query, index)
        at = next((i for i, r in enumerate(result.rows) if r.offset == result.highlight), 0)
        around = result.rows[max(0, at - 2) : at + 3]
        out.append(Excerpt(text, url, [events.shown(r, sees_payloads) for r in around], result.highlight))
    return out, ""


def _query_of(url: str) -> QueryDict:
    return QueryDict(url.partition("?")[2])
