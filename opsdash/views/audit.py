"""The audit trail (auditors): the page with its filters, and the CSV/JSON export of the same rows."""

from __future__ import annotations

import orjson
from django.conf import settings
from django.contrib.auth.decorators import permission_required
from django.core.paginator import Paginator
from django.http import HttpRequest, HttpResponse, StreamingHttpResponse
from django.shortcuts import render
from django.utils import timezone
from django.utils.http import content_disposition_header
from django.views.decorators.http import require_GET
from django.views.decorators.vary import vary_on_headers

from ..services import audit
from ..services.access import access_of
from ..services.audit import record_refusal
from . import wants_fragment
from .api import api_login_required, json_response

AUDIT_PERMISSION = "opsdash.view_audit"
EXPORTS = {"json": "application/json", "csv": "text/csv; charset=utf-8"}


@require_GET
@permission_required(AUDIT_PERMISSION, raise_exception=True)
@vary_on_headers("HX-Request", "HX-History-Restore-Request")
def audit_list(request: HttpRequest) -> HttpResponse:
    filters = audit.AuditFilters.from_query(request.GET)
    access = access_of(request.user)
    page = Paginator(audit.entries(filters, access), settings.OPSDASH_PAGE_SIZE).get_page(request.GET.get("page"))
    for entry in page.object_list:
        entry.module_url = audit.module_url(entry)
        entry.params_text = orjson.dumps(entry.params).decode() if entry.params else ""
    ctx = {"filters": filters, "page": page, "choices": audit.choices(access)}
    template = "opsdash/audit.html#results" if wants_fragment(request) else "opsdash/audit.html"
    return render(request, template, ctx)


@require_GET
@api_login_required
def api_audit_list(request: HttpRequest) -> HttpResponse:
    """``?format=json`` (default) or ``csv``, with the page's filters; streamed, so any size fits."""
    if not request.user.has_perm(AUDIT_PERMISSION):
        record_refusal(request)
        return json_response({"error": "the audit trail is for auditors"}, status=403)
    fmt = request.GET.get("format", "json")
    if fmt not in EXPORTS:
        return json_response({"error": "format must be json or csv"}, status=400)
    qs = audit.entries(audit.AuditFilters.from_query(request.GET), access_of(request.user))
    stream = audit.stream_csv(request, qs) if fmt == "csv" else audit.stream_json(request, qs)
    response = StreamingHttpResponse(stream, content_type=EXPORTS[fmt])
    filename = f"opsdash-audit-{timezone.localdate():%Y-%m-%d}.{fmt}"
    response["Content-Disposition"] = content_disposition_header(fmt == "csv", filename)
    return response
