from __future__ import annotations

import logging

from django.contrib.auth.decorators import login_not_required
from django.db import DatabaseError
from django.http import HttpRequest, HttpResponse
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_GET

from ..services.probe import probe
from .api import json_response

log = logging.getLogger(__name__)
DETAIL_PERMISSION = "opsdash.run_actions"


@require_GET
@never_cache
@login_not_required
def healthz(request: HttpRequest) -> HttpResponse:
    """200 ``{"status": "ok"}`` when this process can do its work (services.probe), 503
    ``{"status": "error"}`` when not. Strangers get the status only: the reason goes to the log,
    and with the detail (data root, hosts that stopped reporting) to a logged-in operator."""
    result = probe()
    if not result.ok:
        log.error("healthz: %s", result.reason)
    body: dict[str, object] = {"status": result.status}
    if _may_see_detail(request):
        body |= {"reason": result.reason or None, **result.detail}
    return json_response(body, status=200 if result.ok else 503)


def _may_see_detail(request: HttpRequest) -> bool:
    try:  # the session and the permissions come from the database, which may be what failed
        return request.user.has_perm(DETAIL_PERMISSION)
    except DatabaseError:
        return False
