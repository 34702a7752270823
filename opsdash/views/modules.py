from __future__ import annotations

from dataclasses import dataclass

from django.conf import settings
from django.core.paginator import Page, Paginator
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, render
from django.urls import reverse
from django.utils.html import format_html
from django.utils.translation import gettext_lazy as _
from django.views.decorators.http import require_GET
from django.views.decorators.vary import vary_on_headers

from ..actions import branch_actions, module_actions
from ..models import PROBLEM_STATUSES, Job, ModuleState, Mute
from ..services import maintenance, mutes, queries
from ..services.access import access_of
from ..services.files import FilesUnavailable, meta_preview
from ..services.heartbeats import all_heartbeats, heartbeat_of
from . import wants_fragment

SORT_LABELS = {
    "status": _("worst first"),
    "branch": _("branch"),
    "module": _("module"),
    "events": _("most events"),
    "last_event": _("latest event"),
    "backups": _("most backups"),
    "changed": _("recently changed"),
    "verified": _("least recently read in full"),
}


@require_GET
@vary_on_headers("HX-Request", "HX-History-Restore-Request")
def module_list(request: HttpRequest) -> HttpResponse:
    filters = queries.ModuleFilters.from_query(request.GET)
    access = access_of(request.user)
    page = Paginator(queries.modules(filters, access), settings.OPSDASH_PAGE_SIZE).get_page(request.GET.get("page"))
    beats = all_heartbeats()
    rows = list(page.object_list)
    known = mutes.Mutes.load()
    for row in rows:
        row.heartbeat = heartbeat_of(row.host, beats)
        row.stale = row.heartbeat.stale
        row.muted = known.state(row) if row.status in PROBLEM_STATUSES else ""
    ctx = {
        "filters": filters,
        "page": page,
        "rows": rows,
        "counts": queries.status_counts(access),
        "acknowledged": queries.acknowledged_counts(access, known),
        "branch_actions": _branch_actions(rows[0].host, filters.branch) if rows and filters.branch else [],
        "branches": queries.branches(access),
        "sorts": SORT_LABELS,
        "refresh": settings.OPSDASH_REFRESH_SECONDS,
        "show_host": access.filter(ModuleState.objects.all()).values("host").distinct().count() > 1,
    }
    template = "opsdash/overview.html#results" if wants_fragment(request) else "opsdash/overview.html"
    return render(request, template, ctx)


def _branch_actions(host: str, branch: str) -> list[tuple[str, str]]:
    """(button, URL) of each whole-branch action (the overview filtered by a branch it lists)."""
    return [(str(a.label), reverse(f"opsdash:{a.url_name}", args=[host, branch])) for a in branch_actions()]


def _module_actions(module_row: ModuleState) -> list[tuple[str, str, str, str]]:
    """(button, confirmation naming the module, confirming button, URL) of each module action."""
    name = format_html("<strong>{}/{}</strong>", module_row.branch, module_row.module)
    return [
        (
            str(a.label),
            format_html(str(a.question), module=name),
            str(a.confirm).format(module=f"{module_row.branch}/{module_row.module}"),
            reverse(f"opsdash:{a.url_name}", kwargs=module_row.key),
        )
        for a in module_actions()
        if a.offered_for(module_row)
    ]


def _shown_job(request: HttpRequest, module_row: ModuleState) -> Job | None:
    """The job a plain form post redirected here with (?job=), else the module's active job."""
    pk = queries.parse_id(request.GET.get("job"))
    job = module_row.jobs.filter(pk=pk).first() if pk is not None else None
    return job or module_row.jobs.filter(status__in=Job.ACTIVE).first()


# A module's backups and incidents are shown this many to a page (the Node server leaves a new
# backup per failed recovery: thousands of rows made one page view take seconds).
MODULE_LIST_ROWS = 100


@dataclass(frozen=True)
class ListPages:
    page: Page
    prev: str
    next: str


def _list_pages(request: HttpRequest, qs, param: str, anchor: str) -> ListPages:
    """One page of a module page's list, ``?<param>=N``; the links keep the other parameters."""
    page = Paginator(qs, MODULE_LIST_ROWS).get_page(request.GET.get(param))

    def link(number: int) -> str:
        query = request.GET.copy()
        query[param] = str(number)
        return f"?{query.urlencode()}#{anchor}"

    return ListPages(
        page,
        link(page.previous_page_number()) if page.has_previous() else "",
        link(page.next_page_number()) if page.has_next() else "",
    )


@require_GET
def module_detail(request: HttpRequest, host: str, branch: str, module: str) -> HttpResponse:
    module_row = get_object_or_404(
        access_of(request.user).filter(ModuleState.objects.all()), host=host, branch=branch, module=module
    )
    try:
        meta, meta_error = meta_preview(module_row), None
    except FilesUnavailable as exc:
        meta, meta_error = None, str(exc)
    backup_pages = _list_pages(request, module_row.backups.all(), "backups", "backups-h")
    incident_pages = _list_pages(
        request,
        module_row.incidents.select_related("backup").prefetch_related("server_recoveries", "notes"),
        "incidents",
        "incidents-h",
    )
    ctx = {
        "module_row": module_row,
        "heartbeat": heartbeat_of(module_row.host),
        "meta": meta,
        "meta_error": meta_error,
        "backups": backup_pages.page.object_list,
        "backup_pages": backup_pages,
        "incidents": incident_pages.page.object_list,
        "incident_pages": incident_pages,
        "actions": _module_actions(module_row),
        "shown_job": _shown_job(request, module_row),
        "mutes": mutes.of_module(module_row),
        "mute_kinds": Mute.Kind.choices,
        "mute_scopes": Mute.Scope.choices,
        "in_maintenance": maintenance.covers(module_row.host, module_row.branch, module_row.module),
    }
    return render(request, "opsdash/module.html", ctx)
