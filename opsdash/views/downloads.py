"""Backup downloads (operators and auditors): one file, or a module's or a branch's backups as a zip."""

from __future__ import annotations

from django.contrib.auth.decorators import permission_required
from django.http import FileResponse, Http404, HttpRequest, HttpResponse, StreamingHttpResponse
from django.shortcuts import get_object_or_404, render
from django.utils.http import content_disposition_header
from django.views.decorators.http import require_GET

from ..models import Backup, ModuleState
from ..services.access import access_of
from ..services.audit import record
from ..services.downloads import audited_zip, safe_filename
from ..services.files import FilesUnavailable, open_backup, stream_size

DOWNLOAD_PERMISSION = "opsdash.download_backups"


@require_GET
@permission_required(DOWNLOAD_PERMISSION, raise_exception=True)
def backup_download(request: HttpRequest, pk: int) -> HttpResponse:
    backup = get_object_or_404(
        access_of(request.user).filter(Backup.objects.select_related("module"), "module__branch"), pk=pk
    )
    module_row = backup.module
    params = {"backups": [backup.name], "state": backup.state, "sha256": backup.sha256}
    where = {"host": module_row.host, "branch": module_row.branch, "module": module_row.module}
    try:
        fh = open_backup(backup)
    except FilesUnavailable as exc:
        record(request, "backup_download", "failed", **where, params=params, detail=str(exc))
        # Why, in the user's language (FilesUnavailable messages are translated), not a bare 404.
        return render(request, "opsdash/unavailable.html", {"backup": backup, "reason": str(exc)}, status=404)
    params["bytes"] = stream_size(fh)
    record(request, "backup_download", "ok", **where, params=params)
    filename = safe_filename(module_row.branch, module_row.module, backup.name)
    return FileResponse(fh, as_attachment=True, filename=filename, content_type="application/octet-stream")


def _zip_response(request: HttpRequest, backups: list[Backup], filename: str, **where: str) -> StreamingHttpResponse:
    response = StreamingHttpResponse(audited_zip(request, backups, **where), content_type="application/zip")
    response["Content-Disposition"] = content_disposition_header(True, filename)
    return response


@require_GET
@permission_required(DOWNLOAD_PERMISSION, raise_exception=True)
def module_backups_download(request: HttpRequest, host: str, branch: str, module: str) -> StreamingHttpResponse:
    module_row = get_object_or_404(
        access_of(request.user).filter(ModuleState.objects.all()), host=host, branch=branch, module=module
    )
    backups = list(module_row.backups.select_related("module").order_by("created_at", "name"))
    filename = safe_filename(branch, module, "backups") + ".zip"
    return _zip_response(request, backups, filename, host=host, branch=branch, module=module)


@require_GET
@permission_required(DOWNLOAD_PERMISSION, raise_exception=True)
def branch_backups_download(request: HttpRequest, host: str, branch: str) -> StreamingHttpResponse:
    if not access_of(request.user).allows(branch) or not ModuleState.objects.filter(host=host, branch=branch).exists():
        raise Http404("no such branch on this host")
    backups = list(
        Backup.objects.select_related("module")
        .filter(module__host=host, module__branch=branch)
        .order_by("module__module", "created_at", "name")
    )
    filename = safe_filename(branch, "backups") + ".zip"
    return _zip_response(request, backups, filename, host=host, branch=branch)
