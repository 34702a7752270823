"""JSON API (session login). Anonymous callers get 401 JSON, not the login page."""

from __future__ import annotations

from collections.abc import Callable
from functools import wraps
from typing import Any

import orjson
from django.contrib.auth.decorators import login_not_required
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404
from django.views.decorators.http import require_GET

from ..models import ModuleState
from ..services import queries
from ..services.serialize import module_full, module_summary


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
    filters = queries.ModuleFilters.from_query(request.GET)
    return json_response({"modules": [module_summary(request, m) for m in queries.modules(filters)]})


@require_GET
@api_login_required
def api_module_detail(request: HttpRequest, host: str, branch: str, module: str) -> HttpResponse:
    state = get_object_or_404(ModuleState, host=host, branch=branch, module=module)
    return json_response(module_full(request, state))
