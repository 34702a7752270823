from __future__ import annotations

from django.conf import settings
from django.core.paginator import Paginator
from django.http import FileResponse, Http404, HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, render
from django.views.decorators.http import require_GET
from django.views.decorators.vary import vary_on_headers

from . import wants_fragment
from ..models import Backup
from ..services import audit, queries
from ..services.files import FilesUnavailable, backup_preview, open_backup


@require_GET
@vary_on_headers("HX-Request", "HX-History-Restore-Request")
def backup_list(request: HttpRequest) -> HttpResponse:
    filters = queries.BackupFilters.from_query(request.GET)
    ctx = {
        "filters": filters,
        "page": Paginator(queries.backups(filters), settings.OPSDASH_PAGE_SIZE).get_page(request.GET.get("page")),
        "branches": queries.branches(),
        "states": Backup.State.values,
    }
    template = "opsdash/backups.html#results" if wants_fragment(request) else "opsdash/backups.html"
    return render(request, template, ctx)


@require_GET
@vary_on_headers("HX-Request", "HX-History-Restore-Request")
def backup_detail(request: HttpRequest, pk: int) -> HttpResponse:
    backup = get_object_or_404(Backup.objects.select_related("module"), pk=pk)
    try:
        view, error = backup_preview(backup), None
    except FilesUnavailable as exc:
        view, error = None, str(exc)
    ctx = {"backup": backup, "view": view, "error": error}
    template = "opsdash/backup.html#preview" if wants_fragment(request) else "opsdash/backup.html"
    return render(request, template, ctx)


@require_GET
def backup_download(request: HttpRequest, pk: int) -> FileResponse:
    backup = get_object_or_404(Backup.objects.select_related("module"), pk=pk)
    params = {"backup": backup.name, "sha256": backup.sha256}
    try:
        fh = open_backup(backup)
    except FilesUnavailable as exc:
        audit.record(request, "backup_download", "failed", backup.module, params, str(exc))
        raise Http404(str(exc)) from None
    audit.record(request, "backup_download", "ok", backup.module, params)
    filename = f"{backup.module.branch}-{backup.module.module}-{backup.name}"
    return FileResponse(fh, as_attachment=True, filename=filename, content_type="application/octet-stream")
