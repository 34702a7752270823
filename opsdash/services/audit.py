"""Writing the append-only audit trail."""

from __future__ import annotations

from typing import Any

from django.http import HttpRequest

from ..models import AuditEntry, ModuleState


def client_ip(request: HttpRequest) -> str | None:
    # REMOTE_ADDR only: X-Forwarded-For is client-controlled unless a trusted proxy rewrites it.
    return request.META.get("REMOTE_ADDR") or None


def record(
    request: HttpRequest,
    action: str,
    outcome: str,
    module: ModuleState | None = None,
    params: dict[str, Any] | None = None,
    detail: str = "",
) -> AuditEntry:
    return AuditEntry.objects.create(
        actor=request.user.get_username() if request.user.is_authenticated else "",
        ip=client_ip(request),
        action=action,
        host=module.host if module else "",
        branch=module.branch if module else "",
        module=module.module if module else "",
        params=params or {},
        outcome=outcome,
        detail=detail,
    )
