from django.urls import path

from .actions import ACTIONS, MODULE, module_actions
from .views import (
    actions,
    api,
    audit,
    backups,
    downloads,
    events,
    health,
    history,
    incidents,
    metrics,
    modules,
    mutes,
    tokens,
)

app_name = "opsdash"

urlpatterns = [
    path("", modules.module_list, name="module_list"),
    path("modules/<str:host>/<str:branch>/<str:module>/", modules.module_detail, name="module_detail"),
    path("modules/<str:host>/<str:branch>/<str:module>/events/", events.module_events, name="module_events"),
    path(
        "modules/<str:host>/<str:branch>/<str:module>/events/export",
        events.module_events_export,
        name="module_events_export",
    ),
    path("modules/<str:host>/<str:branch>/<str:module>/mute", mutes.module_mute, name="module_mute"),
    path("mutes/<int:pk>/lift", mutes.mute_lift, name="mute_lift"),
    path("maintenance/", mutes.maintenance_list, name="maintenance_list"),
    path("maintenance/new", mutes.maintenance_create, name="maintenance_create"),
    path("maintenance/<int:pk>/cancel", mutes.maintenance_cancel, name="maintenance_cancel"),
    path("history/", history.incident_list, name="incident_list"),
    path("incidents/<int:pk>/", incidents.incident_detail, name="incident_detail"),
    path("incidents/<int:pk>/notes", incidents.incident_note, name="incident_note"),
    path("backups/", backups.backup_list, name="backup_list"),
    path("backups/<int:pk>/", backups.backup_detail, name="backup_detail"),
    path("backups/<int:pk>/download", downloads.backup_download, name="backup_download"),
    path("backups/<int:pk>/pin", backups.backup_pin, name="backup_pin"),
    path(
        "modules/<str:host>/<str:branch>/<str:module>/backups.zip",
        downloads.module_backups_download,
        name="module_backups_download",
    ),
    path(
        "branches/<str:host>/<str:branch>/backups.zip",
        downloads.branch_backups_download,
        name="branch_backups_download",
    ),
    path("audit/", audit.audit_list, name="audit_list"),
    path("api/audit", audit.api_audit_list, name="api_audit_list"),
    path("api/modules", api.api_module_list, name="api_module_list"),
    path("api/modules/<str:host>/<str:branch>/<str:module>", api.api_module_detail, name="api_module_detail"),
    path("api/modules/<str:host>/<str:branch>/<str:module>/events", events.api_module_events, name="api_module_events"),
    # Every operator action (opsdash.actions): its page URL, and for a module action its API URL.
    *[
        path(
            a.route,
            actions.module_action if a.scope == MODULE else actions.branch_action,
            {"kind": a.kind},
            name=a.url_name,
        )
        for a in ACTIONS.values()
    ],
    path("jobs/<int:pk>/", actions.job_detail, name="job_detail"),
    *[
        path(f"api/{a.route}", actions.api_module_action, {"kind": a.kind}, name=a.api_url_name)
        for a in module_actions()
    ],
    path("api/jobs/<int:pk>", actions.api_job_detail, name="api_job_detail"),
    path("account/tokens/", tokens.token_list, name="token_list"),
    path("account/tokens/<int:pk>/revoke", tokens.token_revoke, name="token_revoke"),
    path("healthz", health.healthz, name="healthz"),
    path("metrics", metrics.metrics, name="metrics"),
]
