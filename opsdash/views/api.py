"""JSON API (session login). Anonymous callers get 401 JSON, not the login page."""

from __future__ import annotations

from collections.abc import Callable
from functools import wraps
from typing import Any

import orjson
from django.contrib.auth.decorators import login_not_required
from django.core.paginator import Paginator
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404
from django.views.decorators.http import require_GET

from ..models import ModuleState
from ..services import queries
from ..services.access import access_of
from ..services.heartbeats import all_heartbeats
from ..services.serialize import module_full, module_summary

API_PAGE_SIZE = 500


def json_response(data: Any, status: int = 200) -> HttpResponse:
    return HttpResponse(orjson.dumps(data), status=status, content_type="application/json")


def api_login_required(view: Callable[..., HttpResponse]) -> Callable[..., HttpResponse]:
    @login_not_required
    @wraps(view)
    def wrapper(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        if not request.user.is_authenticated:
            return json_response({"error": "login required"}, status=401)
        return view(request, *args, **kwargs)

    return wrapper


@require_GET
@api_login_required
def api_module_list(request: HttpRequest) -> HttpResponse:
    """The overview's filters, ``API_PAGE_SIZE`` modules a page (``?page=N``, ``next`` and
    ``previous`` are absolute URLs or null): a response stays bounded however many modules."""
    filters = queries.ModuleFilters.from_query(request.GET)
    page = Paginator(queries.modules(filters, access_of(request.user)), API_PAGE_SIZE).get_page(request.GET.get("page"))
    beats = all_heartbeats()

    def link(number: int) -> str:
        return request.build_absolute_uri("?" + filters.as_query(page=str(number)))

    return json_response(
        {
            "modules": [module_summary(request, m, beats) for m in page.object_list],
            "count": page.paginator.count,
            "page": page.number,
            "pages": page.paginator.num_pages,
            "next": link(page.next_page_number()) if page.has_next() else None,
            "previous": link(page.previous_page_number()) if page.has_previous() else None,
        }
    )


@require_GET
@api_login_required
def api_module_detail(request: HttpRequest, host: str, branch: str, module: str) -> HttpResponse:
    module_row = get_object_or_404(
        access_of(request.user).filter(ModuleState.objects.all()), host=host, branch=branch, module=module
    )
    return json_response(module_full(request, module_row))
