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
    request: HttpRequest, state: ModuleState, beats: dict[str, Heartbeat] | None = None
) -> dict[str, Any]:
    """A module as the list shows it; ``stale`` and ``last_scan_at`` say whether its host's
    scanner still reports (``beats``: heartbeats.all_heartbeats(), read once for a list)."""
    beat = heartbeat_of(state.host, beats)
    return {
        "host": state.host,
        "branch": state.branch,
        "module": state.module,
        "status": state.status,
        "status_since": state.status_since,
        "findings": state.findings,
        "meta_total_events": state.meta_total_events,
        "log_events": state.log_events,
        "log_size": state.log_size,
        "last_event_at": state.last_event_at,
        "backups_count": state.backups_count,
        "temp_files": state.temp_files,
        "last_changed": state.last_changed,
        "last_scan_at": beat.last_pass_at,
        "stale": beat.stale,
        "url": request.build_absolute_uri(state.api_url()),
        "page": request.build_absolute_uri(state.get_absolute_url()),
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


def module_full(request: HttpRequest, state: ModuleState) -> dict[str, Any]:
    out = module_summary(request, state)
    out["scan_error"] = heartbeat_of(state.host).error or None
    out["stats"] = state.stats
    out["first_seen"] = state.first_seen
    # Newest first, LIST_ROWS a page (?backups=N, ?incidents=N): bounded however many there are.
    backups = Paginator(state.backups.order_by("-created_at", "-pk"), LIST_ROWS).get_page(request.GET.get("backups"))
    incidents = Paginator(state.incidents.select_related("backup"), LIST_ROWS).get_page(request.GET.get("incidents"))
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
        a.kind: request.build_absolute_uri(reverse(f"opsdash:{a.api_url_name}", kwargs=state.key))
        for a in module_actions()
    }
    return out
