from __future__ import annotations

from django.conf import settings
from django.contrib.auth.decorators import permission_required
from django.core.paginator import Paginator
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.views.decorators.http import require_GET, require_POST
from django.views.decorators.vary import vary_on_headers

from ..models import Backup, ModuleState
from ..services import queries
from ..services.access import Access, access_of
from ..services.audit import record
from ..services.files import FilesUnavailable, PreviewView, backup_preview
from . import wants_fragment
from .downloads import DOWNLOAD_PERMISSION


def _hosts_of(branch: str, access: Access) -> list[str]:
    """The hosts a branch's zip can be asked from (one link each on the backups page)."""
    if not branch or not access.allows(branch):
        return []
    return list(ModuleState.objects.filter(branch=branch).order_by("host").values_list("host", flat=True).distinct())


@require_GET
@vary_on_headers("HX-Request", "HX-History-Restore-Request")
def backup_list(request: HttpRequest) -> HttpResponse:
    filters = queries.BackupFilters.from_query(request.GET)
    access = access_of(request.user)
    ctx = {
        "filters": filters,
        "page": Paginator(queries.backups(filters, access), settings.OPSDASH_PAGE_SIZE).get_page(
            request.GET.get("page")
        ),
        "branches": queries.branches(access),
        "states": Backup.State.values,
        "branch_hosts": _hosts_of(filters.branch, access),
    }
    template = "opsdash/backups.html#results" if wants_fragment(request) else "opsdash/backups.html"
    return render(request, template, ctx)


@require_GET
@vary_on_headers("HX-Request", "HX-History-Restore-Request")
def backup_detail(request: HttpRequest, pk: int) -> HttpResponse:
    """A backup's metadata for every role; its contents (a capped preview, an audited read of
    the file) only for those who may download it."""
    backup = get_object_or_404(
        access_of(request.user).filter(Backup.objects.select_related("module"), "module__branch"), pk=pk
    )
    may_preview = request.user.has_perm(DOWNLOAD_PERMISSION)
    view, error = _preview(request, backup) if may_preview else (None, None)
    ctx = {"backup": backup, "view": view, "error": error, "may_preview": may_preview}
    template = "opsdash/backup.html#preview" if wants_fragment(request) else "opsdash/backup.html"
    return render(request, template, ctx)


def _preview(request: HttpRequest, backup: Backup) -> tuple[PreviewView | None, str | None]:
    try:
        view, error = backup_preview(backup), None
    except FilesUnavailable as exc:
        view, error = None, str(exc)
    module_row = backup.module
    record(
        request,
        "backup_preview",
        "failed" if error else "ok",
        host=module_row.host,
        branch=module_row.branch,
        module=module_row.module,
        params={"backups": [backup.name], "state": backup.state, "sha256": backup.sha256},
        detail=error or "",
    )
    return view, error


@require_POST
@permission_required("opsdash.run_actions", raise_exception=True)
def backup_pin(request: HttpRequest, pk: int) -> HttpResponse:
    """Pin an archived backup (a purge never removes it) or unpin it; audited."""
    backup = get_object_or_404(
        access_of(request.user).filter(Backup.objects.select_related("module"), "module__branch"), pk=pk
    )
    pinned = not backup.pinned_by
    Backup.objects.filter(pk=pk).update(pinned_by=request.user.get_username() if pinned else "")
    module_row = backup.module
    record(
        request,
        "pin_backup" if pinned else "unpin_backup",
        "ok",
        host=module_row.host,
        branch=module_row.branch,
        module=module_row.module,
        params={"backup": backup.name},
    )
    return redirect(backup.get_absolute_url())
