from __future__ import annotations

from django.conf import settings
from django.core.paginator import Paginator
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render
from django.views.decorators.http import require_GET
from django.views.decorators.vary import vary_on_headers

from eventstore import CODES

from ..services import queries
from ..services.access import access_of
from ..services.heartbeats import stale_hosts
from . import wants_fragment


@require_GET
@vary_on_headers("HX-Request", "HX-History-Restore-Request")
def incident_list(request: HttpRequest) -> HttpResponse:
    filters = queries.IncidentFilters.from_query(request.GET)
    access = access_of(request.user)
    incidents = queries.incidents(filters, access)
    ctx = {
        "filters": filters,
        "page": Paginator(incidents.prefetch_related("server_recoveries"), settings.OPSDASH_PAGE_SIZE).get_page(
            request.GET.get("page")
        ),
        "chart": queries.incidents_per_day(incidents, filters),
        "branches": queries.branches(access),
        "codes": sorted(CODES),
        "stale": {beat.host for beat in stale_hosts()},
    }
    template = "opsdash/history.html#results" if wants_fragment(request) else "opsdash/history.html"
    return render(request, template, ctx)
