"""The JSON API's shapes. Every URL is absolute, so outside tools can follow them."""

from __future__ import annotations

from typing import Any

from django.http import HttpRequest
from django.urls import reverse

from ..models import Backup, Incident, ModuleState


def module_summary(request: HttpRequest, state: ModuleState) -> dict[str, Any]:
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
    out["stats"] = state.stats
    out["first_seen"] = state.first_seen
    out["backups"] = [backup_dict(request, b) for b in state.backups.all()]
    out["incidents"] = [incident_dict(i) for i in state.incidents.select_related("backup")]
    # Present for every role: the server decides who may POST.
    out["actions"] = {
        kind: request.build_absolute_uri(reverse(f"opsdash:api_module_{kind}", kwargs=state.key))
        for kind in ("rebuild", "verify", "archive_backups", "clean_temp")
    }
    return out
