from django.urls import path

from .views import actions, api, audit, metrics, backups, downloads, health, history, modules

app_name = "opsdash"

urlpatterns = [
    path("", modules.module_list, name="module_list"),
    path("modules/<str:host>/<str:branch>/<str:module>/", modules.module_detail, name="module_detail"),
    path("history/", history.incident_list, name="incident_list"),
    path("backups/", backups.backup_list, name="backup_list"),
    path("backups/<int:pk>/", backups.backup_detail, name="backup_detail"),
    path("backups/<int:pk>/download", downloads.backup_download, name="backup_download"),
    path(
        "modules/<str:host>/<str:branch>/<str:module>/backups.zip",
        downloads.module_backups_download,
        name="module_backups_download",
    ),
    path("branches/<str:host>/<str:branch>/backups.zip", downloads.branch_backups_download, name="branch_backups_download"),
    path("audit/", audit.audit_list, name="audit_list"),
    path("api/audit", audit.api_audit_list, name="api_audit_list"),
    path("api/modules", api.api_module_list, name="api_module_list"),
    path("api/modules/<str:host>/<str:branch>/<str:module>", api.api_module_detail, name="api_module_detail"),
    *[
        path(f"modules/<str:host>/<str:branch>/<str:module>/{kind}", actions.module_action, {"kind": kind}, name=f"module_{kind}")
        for kind in actions.MODULE_KINDS
    ],
    path("branches/<str:host>/<str:branch>/bulk_rebuild", actions.branch_action, {"kind": "bulk_rebuild"}, name="branch_rebuild_critical"),
    path("branches/<str:host>/<str:branch>/bulk_archive", actions.branch_action, {"kind": "bulk_archive"}, name="branch_archive_backups"),
    path("jobs/<int:pk>/", actions.job_detail, name="job_detail"),
    *[
        path(f"api/modules/<str:host>/<str:branch>/<str:module>/{kind}", actions.api_module_action, {"kind": kind}, name=f"api_module_{kind}")
        for kind in actions.MODULE_KINDS
    ],
    path("api/jobs/<int:pk>", actions.api_job_detail, name="api_job_detail"),
    path("healthz", health.healthz, name="healthz"),
    path("metrics", metrics.metrics, name="metrics"),
]
