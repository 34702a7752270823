"""Filters and sorting shared by the pages and the JSON API (one parser, one set of rules)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, time, timedelta

from django.db import connection
from django.db.models import CharField, Count, F, Func, Q, QuerySet
from django.db.models.functions import TruncDate
from django.http import QueryDict
from django.utils import timezone

from eventstore import CODES

from ..models import PROBLEM_STATUSES, Backup, Incident, ModuleState, Status
from . import mutes
from .access import EVERY_BRANCH, Access

MODULE_SORTS = {
    "status": ("-status_rank", "branch", "module"),
    "branch": ("branch", "module", "host"),
    "module": ("module", "branch", "host"),
    "events": ("-log_events", "branch", "module"),
    "last_event": ("-last_event_at", "branch", "module"),
    "backups": ("-backups_count", "branch", "module"),
    "changed": ("-last_changed", "branch", "module"),
    # oldest read in full first, never read in full before all (the scrub's own order)
    "verified": (F("verified_at").asc(nulls_first=True), "branch", "module"),
}
# "not read in full for more than N days": N within [0, MAX_UNVERIFIED_DAYS]
MAX_UNVERIFIED_DAYS = 3650
DEFAULT_MODULE_SORT = "status"


def _choice(value: str | None, allowed: set[str] | dict, default: str = "") -> str:
    return value if value in allowed else default


def _query_string(values: dict[str, str]) -> str:
    """URL query of the non-empty values, in a stable order (page links, the refresh, hx-push-url)."""
    query = QueryDict(mutable=True)
    for key, value in values.items():
        if value:
            query[key] = value
    return query.urlencode()


@dataclass(frozen=True)
class ModuleFilters:
    status: str = ""
    branch: str = ""
    q: str = ""
    sort: str = DEFAULT_MODULE_SORT
    unverified: int | None = None  # days: only modules not read in full for longer than this

    @classmethod
    def from_query(cls, query: QueryDict) -> ModuleFilters:
        days = parse_id(query.get("unverified", "").strip())
        return cls(
            status=_choice(query.get("status"), {*Status.values, UNACKNOWLEDGED}),
            branch=query.get("branch", "").strip()[:128],
            q=query.get("q", "").strip()[:200],
            sort=_choice(query.get("sort"), MODULE_SORTS, DEFAULT_MODULE_SORT),
            unverified=None if days is None else min(days, MAX_UNVERIFIED_DAYS),
        )

    def as_query(self, **changes: str) -> str:
        """The query string of these filters with ``changes`` applied (empty values dropped)."""
        values = {
            "status": self.status,
            "branch": self.branch,
            "q": self.q,
            "unverified": "" if self.unverified is None else str(self.unverified),
            "sort": self.sort,
        } | changes
        if values["sort"] == DEFAULT_MODULE_SORT:
            values["sort"] = ""
        return _query_string(values)


UNACKNOWLEDGED = "unacknowledged"  # the status filter of problems nobody has acknowledged or silenced


def modules(filters: ModuleFilters, access: Access = EVERY_BRANCH) -> QuerySet[ModuleState]:
    qs = access.filter(ModuleState.objects.all())
    if filters.status == UNACKNOWLEDGED:
        known = mutes.covered(mutes.Mutes.load(), access)
        qs = qs.filter(status__in=PROBLEM_STATUSES)
        qs = qs.exclude(known) if known is not None else qs
    elif filters.status:
        qs = qs.filter(status=filters.status)
    if filters.branch:
        qs = qs.filter(branch=filters.branch)
    if filters.q:
        qs = qs.filter(
            Q(branch__icontains=filters.q)
            | Q(module__icontains=filters.q)
            | Q(host__icontains=filters.q)
            | Q(codes__icontains=filters.q)
        )
    if filters.unverified is not None:
        before = timezone.now() - timedelta(days=filters.unverified)
        qs = qs.exclude(status=Status.GONE).filter(Q(verified_at__lt=before) | Q(verified_at__isnull=True))
    return qs.order_by(*MODULE_SORTS[filters.sort])


def acknowledged_counts(access: Access = EVERY_BRANCH, known: mutes.Mutes | None = None) -> dict[str, int]:
    """Per problem status, how many of its modules are acknowledged or silenced (one query,
    none when no mute is in force)."""
    counts = dict.fromkeys(PROBLEM_STATUSES, 0)
    q = mutes.covered(known or mutes.Mutes.load(), access)
    if q is not None:
        rows = access.filter(ModuleState.objects.filter(q, status__in=PROBLEM_STATUSES))
        for row in rows.values("status").annotate(n=Count("id")).order_by():
            counts[row["status"]] = row["n"]
    return counts


def status_counts(access: Access = EVERY_BRANCH) -> dict[str, int]:
    counts = dict.fromkeys(Status.values, 0)
    for row in access.filter(ModuleState.objects.all()).values("status").annotate(n=Count("id")):
        counts[row["status"]] = row["n"]
    return counts


def branches(access: Access = EVERY_BRANCH) -> list[str]:
    return list(access.filter(ModuleState.objects.order_by("branch")).values_list("branch", flat=True).distinct())


# The dates a filter can mean: ISO dates outside these (0001-01-01, 9999-12-31) are brought
# inside, so that a day's start and the day after it always exist in every time zone.
FIRST_DATE, LAST_DATE = date(1970, 1, 1), date(9000, 12, 31)


def _parse_date(value: str | None) -> date | None:
    """An ISO date from a query parameter, within [FIRST_DATE, LAST_DATE]; None for anything else."""
    try:
        day = date.fromisoformat(value) if value else None
    except ValueError:
        return None
    return None if day is None else min(max(day, FIRST_DATE), LAST_DATE)


def parse_id(value: str | None) -> int | None:
    """A database id from a query parameter: ASCII digits only (``str.isdigit`` also takes
    ``²`` and ``١``), within a 63-bit integer; None for anything else."""
    if not value or not value.isascii() or not value.isdigit() or len(value) > 18:
        return None
    return int(value)


@dataclass(frozen=True)
class IncidentFilters:
    since: date | None = None
    until: date | None = None
    branch: str = ""
    code: str = ""
    state: str = ""  # "", "open" or "ended"

    @classmethod
    def from_query(cls, query: QueryDict) -> IncidentFilters:
        return cls(
            since=_parse_date(query.get("since")),
            until=_parse_date(query.get("until")),
            branch=query.get("branch", "").strip()[:128],
            code=_choice(query.get("code"), CODES),
            state=_choice(query.get("state"), {"open", "ended"}),
        )

    def as_query(self, **changes: str) -> str:
        values = {
            "since": self.since.isoformat() if self.since else "",
            "until": self.until.isoformat() if self.until else "",
            "branch": self.branch,
            "code": self.code,
            "state": self.state,
        } | changes
        return _query_string(values)


def _start_of(day: date) -> datetime:
    return timezone.make_aware(datetime.combine(day, time.min))


def incidents(filters: IncidentFilters, access: Access = EVERY_BRANCH) -> QuerySet[Incident]:
    qs = access.filter(Incident.objects.select_related("module"), "module__branch")
    if filters.since:
        qs = qs.filter(opened_at__gte=_start_of(filters.since))
    if filters.until:
        qs = qs.filter(opened_at__lt=_start_of(filters.until + timedelta(days=1)))
    if filters.branch:
        qs = qs.filter(module__branch=filters.branch)
    if filters.code:
        qs = qs.filter(codes__contains=f" {filters.code} ")
    if filters.state == "open":
        qs = qs.filter(ended_at__isnull=True)
    elif filters.state == "ended":
        qs = qs.filter(ended_at__isnull=False)
    return qs.order_by("-opened_at", "-id")


class _UtcDay(Func):
    """The UTC calendar day of a datetime as 'YYYY-MM-DD', in each database's native terms
    (Django's TruncDate calls a Python function per row on SQLite: 100 ms for 35,000 rows)."""

    output_field = CharField()

    def as_sqlite(self, compiler, connection, **extra):
        # SQLite keeps datetimes as UTC text "YYYY-MM-DD HH:MM:SS[.ffffff]".
        return self.as_sql(compiler, connection, template="substr(%(expressions)s, 1, 10)", **extra)

    def as_postgresql(self, compiler, connection, **extra):
        return self.as_sql(
            compiler, connection, template="to_char(%(expressions)s AT TIME ZONE 'UTC', 'YYYY-MM-DD')", **extra
        )


def _count_per_day(qs: QuerySet[Incident]) -> list[tuple[date, int]]:
    """Incidents per calendar day of the current time zone, counted by the database."""
    tz = timezone.get_current_timezone()
    if connection.vendor in ("sqlite", "postgresql") and str(tz) in ("UTC", "Etc/UTC"):
        rows = qs.annotate(day=_UtcDay("opened_at")).values("day").annotate(n=Count("id")).values_list("day", "n")
        return [(date.fromisoformat(day), n) for day, n in rows]
    rows = (
        qs.annotate(day=TruncDate("opened_at", tzinfo=tz)).values("day").annotate(n=Count("id")).values_list("day", "n")
    )
    return list(rows)


@dataclass(frozen=True)
class Bar:
    day: date
    count: int
    x: float
    y: float
    height: float


@dataclass(frozen=True)
class Chart:
    bars: list[Bar]
    width: int
    height: int
    bar_width: float
    peak: int


def incidents_per_day(qs: QuerySet[Incident], filters: IncidentFilters, days: int = 42) -> Chart:
    """Bar geometry for the history chart: one bar per day of the filtered range."""
    today = timezone.localdate()
    until = filters.until or today
    since = filters.since or until - timedelta(days=days - 1)
    if since > until:
        since, until = until, since
    span = min((until - since).days + 1, 366)
    since = until - timedelta(days=span - 1)
    counts = dict.fromkeys((since + timedelta(days=i) for i in range(span)), 0)
    window = qs.filter(opened_at__gte=_start_of(since), opened_at__lt=_start_of(until + timedelta(days=1))).order_by()
    for day, n in _count_per_day(window):
        if day in counts:
            counts[day] += n
    width, height, top = 720, 140, 10
    slot = width / span
    peak = max(counts.values(), default=0)
    bars = []
    for i, (day, count) in enumerate(counts.items()):
        h = (height - top) * count / peak if peak else 0
        bars.append(
            Bar(day=day, count=count, x=round(i * slot + slot * 0.1, 2), y=round(height - h, 2), height=round(h, 2))
        )
    return Chart(bars=bars, width=width, height=height, bar_width=round(slot * 0.8, 2), peak=peak)


@dataclass(frozen=True)
class BackupFilters:
    branch: str = ""
    kind: str = ""
    state: str = ""
    q: str = ""

    @classmethod
    def from_query(cls, query: QueryDict) -> BackupFilters:
        return cls(
            branch=query.get("branch", "").strip()[:128],
            kind=_choice(query.get("kind"), {"meta", "log-fragment"}),
            state=_choice(query.get("state"), set(Backup.State.values)),
            q=query.get("q", "").strip()[:200],
        )

    def as_query(self, **changes: str) -> str:
        values = {"branch": self.branch, "kind": self.kind, "state": self.state, "q": self.q} | changes
        return _query_string(values)


def backups(filters: BackupFilters, access: Access = EVERY_BRANCH) -> QuerySet[Backup]:
    qs = access.filter(Backup.objects.select_related("module"), "module__branch")
    if filters.branch:
        qs = qs.filter(module__branch=filters.branch)
    if filters.kind:
        qs = qs.filter(kind=filters.kind)
    if filters.state:
        qs = qs.filter(state=filters.state)
    if filters.q:
        qs = qs.filter(
            Q(name__icontains=filters.q) | Q(module__module__icontains=filters.q) | Q(sha256__istartswith=filters.q)
        )
    return qs.order_by("-created_at", "-id")
