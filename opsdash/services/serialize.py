"""The JSON API's shapes. Every URL is absolute, so outside tools can follow them."""

from __future__ import annotations

from typing import Any

from django.core.paginator import Paginator
from django.http import HttpRequest
from django.urls import reverse

from ..actions import module_actions
from ..models import Backup, Incident, ModuleState
from .heartbeats import Heartbeat, heartbeat_of

LIST_ROWS = 100


def module_summary(
    request: HttpRequest, module_row: ModuleState, beats: dict[str, Heartbeat] | None = None
) -> dict[str, Any]:
    """A module as the list shows it; ``stale`` and ``last_scan_at`` say whether its host's
    scanner still reports (``beats``: heartbeats.all_heartbeats(), read once for a list)."""
    beat = heartbeat_of(module_row.host, beats)
    return {
        "host": module_row.host,
        "branch": module_row.branch,
        "module": module_row.module,
        "status": module_row.status,
        "status_since": module_row.status_since,
        "findings": module_row.findings,
        "meta_total_events": module_row.meta_total_events,
        "log_events": module_row.log_events,
        "log_size": module_row.log_size,
        "last_event_at": module_row.last_event_at,
        "backups_count": module_row.backups_count,
        "temp_files": module_row.temp_files,
        "last_changed": module_row.last_changed,
        "verified_at": module_row.verified_at,
        "verify_overdue": module_row.overdue_since is not None,
        "last_scan_at": beat.last_pass_at,
        "stale": beat.stale,
        "url": request.build_absolute_uri(module_row.api_url()),
        "page": request.build_absolute_uri(module_row.get_absolute_url()),
    }


def backup_dict(request: HttpRequest, backup: Backup) -> dict[str, Any]:
    return {
        "name": backup.name,
        "kind": backup.kind,
        "size": backup.size,
        "sha256": backup.sha256,
        "created_at": backup.created_at,
        "parses": backup.parses,
        "error": backup.error or None,
        "state": backup.state,
        "archive_path": backup.archive_path or None,
        "first_seen": backup.first_seen,
        "download": request.build_absolute_uri(backup.download_url()),
    }


def incident_dict(incident: Incident) -> dict[str, Any]:
    return {
        "opened_at": incident.opened_at,
        "ended_at": incident.ended_at,
        "ended_how": incident.ended_how or None,
        "ended_by": incident.ended_by or None,
        "severity": incident.severity,
        "codes": incident.code_list,
        "findings": incident.findings,
        "source": incident.source,
        "backup": incident.backup.name if incident.backup_id else None,
    }


def module_full(request: HttpRequest, module_row: ModuleState) -> dict[str, Any]:
    out = module_summary(request, module_row)
    out["scan_error"] = heartbeat_of(module_row.host).error or None
    out["stats"] = module_row.stats
    out["first_seen"] = module_row.first_seen
    # Newest first, LIST_ROWS a page (?backups=N, ?incidents=N): bounded however many there are.
    backups = Paginator(module_row.backups.order_by("-created_at", "-pk"), LIST_ROWS).get_page(
        request.GET.get("backups")
    )
    incidents = Paginator(module_row.incidents.select_related("backup"), LIST_ROWS).get_page(
        request.GET.get("incidents")
    )
    out["backups"] = [backup_dict(request, b) for b in backups.object_list]
    out["backups_page"] = {
        "page": backups.number,
        "pages": backups.paginator.num_pages,
        "count": backups.paginator.count,
    }
    out["incidents"] = [incident_dict(i) for i in incidents.object_list]
    out["incidents_page"] = {
        "page": incidents.number,
        "pages": incidents.paginator.num_pages,
        "count": incidents.paginator.count,
    }
    # Present for every role: the server decides who may POST.
    out["actions"] = {
        a.kind: request.build_absolute_uri(reverse(f"opsdash:{a.api_url_name}", kwargs=module_row.key))
        for a in module_actions()
    }
    return out
