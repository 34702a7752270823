"""Writing the append-only audit trail."""

from __future__ import annotations

from typing import Any

from django.http import HttpRequest

from ..models import AuditEntry

REFUSED = "refused"


def client_ip(request: HttpRequest) -> str | None:
    # REMOTE_ADDR only: X-Forwarded-For is client-controlled unless a trusted proxy rewrites it.
    return request.META.get("REMOTE_ADDR") or None


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


def record_refusal(request: HttpRequest, action: str = "") -> AuditEntry | None:
    """A logged-in user refused by a permission check (a 403): who tried what, where, from where.

    The action is the URL's name (``module_rebuild``, ``backup_download``, ``audit_list``...);
    the module comes from the URL's own arguments, cut to the columns' sizes. Anonymous requests
    never get this far (the login redirect comes first) and are not recorded.
    """
    if not request.user.is_authenticated:
        return None
    match = getattr(request, "resolver_match", None)
    kwargs = match.kwargs if match else {}
    return record(
        request,
        (action or (match.url_name if match else "") or "unknown")[:64],
        REFUSED,
        host=str(kwargs.get("host", ""))[:255],
        branch=str(kwargs.get("branch", ""))[:128],
        module=str(kwargs.get("module", ""))[:128],
        params={"method": request.method, "path": request.path[:500]},
        detail="permission denied",
    )
