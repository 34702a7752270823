"""The event browser of a module: the page, its JSON twin and the export (services.events)."""

from __future__ import annotations

from typing import Any

from django.http import Http404, HttpRequest, HttpResponse, StreamingHttpResponse
from django.shortcuts import get_object_or_404, render
from django.urls import reverse
from django.utils.http import urlencode
from django.views.decorators.http import require_GET

from ..models import ModuleState
from ..services import events
from ..services.access import access_of
from ..services.audit import record
from ..services.downloads import safe_filename
from ..services.files import FilesUnavailable
from .api import api_login_required, json_response


def _module(request: HttpRequest, host: str, branch: str, module: str) -> ModuleState:
    return get_object_or_404(
        access_of(request.user).filter(ModuleState.objects.all()), host=host, branch=branch, module=module
    )


def _open(request: HttpRequest, module_row: ModuleState) -> tuple[events.EventQuery, list[events.LogFile], Any]:
    """The query, the module's logs and the one it names; Http404 for a day that is not listed."""
    sees = request.user.has_perm(events.VIEW_PAYLOADS)
    query = events.EventQuery.from_query(request.GET, sees)
    files = events.log_files(module_row)
    log = events.pick(files, query.day)
    if log is None:
        raise Http404("no such rotated log")
    return query, files, log


def _link(base: str, query: events.EventQuery, **position: Any) -> str:
    values = query.filters() | {k: str(v) for k, v in position.items() if v is not None}
    return f"{base}?{urlencode(values)}" if values else base


def _links(request: HttpRequest, base: str, query: events.EventQuery, result: events.Result) -> dict[str, str | None]:
    page = result.page
    return {
        "older": _link(base, query, cursor=result.older, dir="older") if result.older is not None else None,
        "newer": _link(base, query, cursor=result.newer, dir="newer") if result.newer is not None else None,
        "further": _link(base, query, cursor=page.resume, dir=query.direction) if not page.complete else None,
        "newest": _link(base, query),
        "oldest": _link(base, query, cursor=0, dir="newer"),
    }


@require_GET
def module_events(request: HttpRequest, host: str, branch: str, module: str) -> HttpResponse:
    module_row = _module(request, host, branch, module)
    sees = request.user.has_perm(events.VIEW_PAYLOADS)
    ctx: dict[str, Any] = {"module_row": module_row, "sees_payloads": sees, "visible": events.visible_fields()}
    try:
        query, files, log = _open(request, module_row)
    except FilesUnavailable as exc:
        return render(request, "opsdash/events.html", {**ctx, "error": str(exc)})
    result = events.read(log, query, events.index_of(module_row, log))
    base = reverse("opsdash:module_events", kwargs=module_row.key)
    rows = [(events.shown(r, sees), r.offset == result.highlight) for r in result.rows]
    rows = [(row, highlighted, _text_of(row)) for row, highlighted in rows]
    export = reverse("opsdash:module_events_export", kwargs=module_row.key)
    ctx |= {
        "query": query,
        "filters": query.filters(),
        "files": files,
        "log": log,
        "rows": rows,
        # a sequence that several events share (log_sequence_duplicate): all of them side by side
        "pair": rows if query.where.sequence is not None and len(rows) >= 2 else None,
        "page": result.page,
        "links": _links(request, base, query, result),
        "export_jsonl": _link(export, query, format="jsonl"),
        "export_csv": _link(export, query, format="csv"),
    }
    return render(request, "opsdash/events.html", ctx)


def _text_of(row: dict[str, Any]) -> str:
    """The expanded form of a row: its event pretty-printed, or the line as written."""
    if row["event"] is not None:
        return events.pretty(row["event"])
    return row.get("preview") or ""


@require_GET
@api_login_required
def api_module_events(request: HttpRequest, host: str, branch: str, module: str) -> HttpResponse:
    module_row = _module(request, host, branch, module)
    sees = request.user.has_perm(events.VIEW_PAYLOADS)
    try:
        query, files, log = _open(request, module_row)
    except FilesUnavailable as exc:
        return json_response({"error": str(exc)}, status=409)
    result = events.read(log, query, events.index_of(module_row, log))
    base = request.build_absolute_uri(reverse("opsdash:api_module_events", kwargs=module_row.key))
    page = result.page
    return json_response(
        {
            "file": log.label,
            "files": [f.label for f in files],
            "events": [events.shown(r, sees) for r in result.rows],
            "highlight": result.highlight,
            "complete": page.complete,
            "searched": list(page.searched),
            "bytes_read": page.bytes_read,
            **_links(request, base, query, result),
        }
    )


@require_GET
def module_events_export(request: HttpRequest, host: str, branch: str, module: str) -> HttpResponse:
    """The filtered events of one log as JSON Lines (``format=jsonl``, the default) or CSV,
    streamed, masked like the page; an audit entry says who exported what."""
    module_row = _module(request, host, branch, module)
    sees = request.user.has_perm(events.VIEW_PAYLOADS)
    fmt = "csv" if request.GET.get("format") == "csv" else "jsonl"
    where = {"host": host, "branch": branch, "module": module}
    try:
        query, _files, log = _open(request, module_row)
    except FilesUnavailable as exc:
        record(request, "export_events", "failed", **where, params={"format": fmt}, detail=str(exc))
        return render(request, "opsdash/events.html", {"module_row": module_row, "error": str(exc)}, status=409)
    record(request, "export_events", "ok", **where, params={"format": fmt, **query.filters()})
    rows = events.every_match(log, query.where, events.index_of(module_row, log))
    name = safe_filename(branch, module, log.label, "events") + (".csv" if fmt == "csv" else ".jsonl")
    if fmt == "csv":
        response = StreamingHttpResponse(events.stream_csv(rows, sees), content_type="text/csv; charset=utf-8")
    else:
        response = StreamingHttpResponse(events.stream_jsonl(rows, sees), content_type="application/x-ndjson")
    response["Content-Disposition"] = f'attachment; filename="{name}"'
    return response
