"""``/metrics``: Prometheus text format; a bearer token or an allowed client address, no login."""

from __future__ import annotations

import hmac
import ipaddress

from django.conf import settings
from django.contrib.auth.decorators import login_not_required
from django.http import HttpRequest, HttpResponse
from django.views.decorators.http import require_GET
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest

from ..services.clients import behind_proxy
from ..services.metrics import DashboardCollector


def _allowed_address(request: HttpRequest) -> bool:
    """A scrape without the token: only from an allowed address, and never behind a reverse
    proxy (on the same machine it makes every client on the internet look like 127.0.0.1)."""
    if behind_proxy(request):
        return False
    try:
        client = ipaddress.ip_address(request.META.get("REMOTE_ADDR", ""))
    except ValueError:
        return False
    return any(client in net for net in settings.OPSDASH_METRICS_ALLOW)


@login_not_required
@require_GET
def metrics(request: HttpRequest) -> HttpResponse:
    token = settings.OPSDASH_METRICS_TOKEN
    header = request.META.get("HTTP_AUTHORIZATION", "")
    if header:
        if not token or not hmac.compare_digest(header.encode(), f"Bearer {token}".encode()):
            response = HttpResponse("wrong metrics token\n", status=401, content_type="text/plain")
            response["WWW-Authenticate"] = 'Bearer realm="metrics"'
            return response
    elif not _allowed_address(request):
        return HttpResponse(
            "metrics: send the bearer token or scrape from an allowed address\n", status=403, content_type="text/plain"
        )
    registry = CollectorRegistry(auto_describe=False)
    registry.register(DashboardCollector())
    return HttpResponse(generate_latest(registry), content_type=CONTENT_TYPE_LATEST)
