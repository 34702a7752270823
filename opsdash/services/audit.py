"""The append-only audit trail: writing it (who did or tried what, from where, with which
outcome) and reading it (the filters shared by the page and the API, the CSV/JSON exports)."""

from __future__ import annotations

import csv
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import date, timedelta
from typing import Any

import orjson
from django.db.models import QuerySet
from django.http import HttpRequest, QueryDict
from django.urls import reverse
from django.utils import timezone

from ..models import AuditEntry, Job, ModuleState
from .access import EVERY_BRANCH, Access
from .clients import client_ip
from .nul import db_safe
from .queries import _parse_date, _query_string, _start_of, branches

REFUSED = "refused"


def record(
    request: HttpRequest,
    action: str,
    outcome: str,
    *,
    host: str = "",
    branch: str = "",
    module: str = "",
    params: dict[str, Any] | None = None,
    detail: str = "",
) -> AuditEntry:
    """One audit entry for what ``request``'s user did (or tried), from their address (and with
    which API token, when it came with one)."""
    return AuditEntry.objects.create(
        actor=request.user.get_username() if request.user.is_authenticated else "",
        ip=client_ip(request),
        action=action,
        host=host,
        branch=branch,
        module=module,
        params={**(params or {}), **token_params(request)},
        outcome=outcome,
        detail=detail,
    )


def token_params(request: HttpRequest) -> dict[str, str]:
    """``{"token": name}`` for a request that came with an API token (its audit entries and the
    jobs it starts name it), else nothing."""
    token = getattr(request, "api_token", None)
    return {"token": token.name} if token is not None else {}


# Refusals recorded per user and minute at most: a script forging requests cannot flood the trail.
REFUSALS_PER_MINUTE = 30


def record_job(job: Job, action: str, module: str, status: str, detail: str, params: dict, audit: dict) -> AuditEntry:
    """One audit entry for what a job did to ``module`` (a bulk job writes one per module), in
    the name of whoever requested it, from where they asked."""
    return AuditEntry.objects.create(
        actor=job.requested_by,
        ip=job.requested_from,
        action=action,
        host=job.host,
        branch=job.branch,
        module=module,
        params=db_safe(params),
        outcome="ok" if status == Job.Status.SUCCEEDED else "failed",
        detail=db_safe(detail),
        meta_sha256_before=audit.get("before") or "",
        meta_sha256_after=audit.get("after") or "",
    )


def record_refusal(request: HttpRequest, action: str = "") -> AuditEntry | None:
    """A logged-in user refused by a permission check (a 403): who tried what, where, from where.

    The action is the URL's name (``module_rebuild``, ``backup_download``, ``audit_list``...).
    The module is named only when the URL's host, branch and module are one the dashboard knows
    (a typed name stays in the path, cut to 500 characters): forged names never become filter
    values. At most ``REFUSALS_PER_MINUTE`` are recorded per user and minute. Anonymous requests
    never get this far (the login redirect comes first) and are not recorded.
    """
    if not request.user.is_authenticated:
        return None
    since = timezone.now() - timedelta(minutes=1)
    actor = request.user.get_username()
    if AuditEntry.objects.filter(actor=actor, outcome=REFUSED, at__gte=since).count() >= REFUSALS_PER_MINUTE:
        return None
    match = getattr(request, "resolver_match", None)
    return record(
        request,
        (action or (match.url_name if match else "") or "unknown")[:64],
        REFUSED,
        **_known_place(match.kwargs if match else {}),
        params={"method": request.method, "path": request.path[:500]},
        detail="permission denied",
    )


def _known_place(kwargs: dict[str, Any]) -> dict[str, str]:
    """The host, branch and module of a URL, as far as they name something the dashboard knows."""
    host, branch, module = (str(kwargs.get(k, "")) for k in ("host", "branch", "module"))
    known = ModuleState.objects.filter(host=host, branch=branch)
    if not host or not branch or not known.exists():
        return {}
    if module and not known.filter(module=module).exists():
        return {"host": host, "branch": branch}
    return {"host": host, "branch": branch, "module": module}


# -- reading the trail ---------------------------------------------------------------------------

EXPORT_FIELDS = [
    "id",
    "at",
    "actor",
    "ip",
    "action",
    "host",
    "branch",
    "module",
    "params",
    "outcome",
    "detail",
    "meta_sha256_before",
    "meta_sha256_after",
]
# A spreadsheet runs a cell starting with one of these as a formula (CSV injection).
FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


@dataclass(frozen=True)
class AuditFilters:
    since: date | None = None
    until: date | None = None
    actor: str = ""
    action: str = ""
    branch: str = ""
    outcome: str = ""

    @classmethod
    def from_query(cls, query: QueryDict) -> AuditFilters:
        return cls(
            since=_parse_date(query.get("since")),
            until=_parse_date(query.get("until")),
            actor=query.get("actor", "").strip()[:150],
            action=query.get("action", "").strip()[:64],
            branch=query.get("branch", "").strip()[:128],
            outcome=query.get("outcome", "").strip()[:32],
        )

    def as_query(self, **changes: str) -> str:
        values = {
            "since": self.since.isoformat() if self.since else "",
            "until": self.until.isoformat() if self.until else "",
            "actor": self.actor,
            "action": self.action,
            "branch": self.branch,
            "outcome": self.outcome,
        } | changes
        return _query_string(values)


def entries(filters: AuditFilters, access: Access = EVERY_BRANCH) -> QuerySet[AuditEntry]:
    """The trail as filtered; for a user limited to some branches, only the entries of those."""
    qs = access.filter(AuditEntry.objects.all())
    if filters.since:
        qs = qs.filter(at__gte=_start_of(filters.since))
    if filters.until:
        qs = qs.filter(at__lt=_start_of(filters.until + timedelta(days=1)))
    for name in ("actor", "action", "branch", "outcome"):
        if value := getattr(filters, name):
            qs = qs.filter(**{name: value})
    return qs.order_by("-at", "-id")


def choices(access: Access = EVERY_BRANCH) -> dict[str, list[str]]:
    """The values the filter selects offer: every actor, action and outcome on record, and the
    branches the dashboard knows (never a name typed into a refused URL)."""
    base = access.filter(AuditEntry.objects.order_by())
    out = {
        name: [v for v in base.order_by(name).values_list(name, flat=True).distinct() if v]
        for name in ("actor", "action", "outcome")
    }
    return out | {"branch": branches(access)}


def module_url(entry: AuditEntry) -> str | None:
    if entry.host and entry.branch and entry.module:
        return reverse(
            "opsdash:module_detail", kwargs={"host": entry.host, "branch": entry.branch, "module": entry.module}
        )
    return None


def entry_dict(request: HttpRequest, entry: AuditEntry) -> dict[str, Any]:
    out = {name: getattr(entry, name) for name in EXPORT_FIELDS}
    url = module_url(entry)
    out["module_page"] = request.build_absolute_uri(url) if url else None
    return out


def stream_json(request: HttpRequest, qs: QuerySet[AuditEntry]) -> Iterator[bytes]:
    """``{"entries": [...]}`` one entry at a time: constant memory for any number of entries."""
    yield b'{"entries":['
    for i, entry in enumerate(qs.iterator(chunk_size=2000)):
        yield (b"," if i else b"") + orjson.dumps(entry_dict(request, entry))
    yield b"]}\n"


def csv_cell(value: Any) -> str:
    """A cell as text; one a spreadsheet would run as a formula gets a leading apostrophe."""
    if value is None:
        text = ""
    elif isinstance(value, (dict, list)):
        text = orjson.dumps(value).decode()
    elif hasattr(value, "isoformat"):
        text = value.isoformat()
    else:
        text = str(value)
    return "'" + text if text.startswith(FORMULA_STARTS) else text


class _Line:
    def write(self, text: str) -> str:
        return text


def stream_csv(request: HttpRequest, qs: QuerySet[AuditEntry]) -> Iterator[str]:
    writer = csv.writer(_Line())
    yield writer.writerow([*EXPORT_FIELDS, "module_page"])
    for entry in qs.iterator(chunk_size=2000):
        row = entry_dict(request, entry)
        yield writer.writerow([csv_cell(row[name]) for name in [*EXPORT_FIELDS, "module_page"]])
