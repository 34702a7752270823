"""Writing the append-only audit trail."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from django.http import HttpRequest
from django.utils import timezone

from ..models import AuditEntry, Job, ModuleState
from .clients import client_ip
from .nul import db_safe

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
    """One audit entry for what ``request``'s user did (or tried), from their address."""
    return AuditEntry.objects.create(
        actor=request.user.get_username() if request.user.is_authenticated else "",
        ip=client_ip(request),
        action=action,
        host=host,
        branch=branch,
        module=module,
        params=params or {},
        outcome=outcome,
        detail=detail,
    )


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
        outcome="ok" if status == Job.State.SUCCEEDED else "failed",
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
