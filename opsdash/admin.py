from django.contrib import admin
from django.http import HttpRequest

from .models import Alert, AlertDelivery, AuditEntry


@admin.register(AuditEntry)
class AuditEntryAdmin(admin.ModelAdmin):
    """Read-only: the audit trail is append-only, even for superusers."""

    list_display = ["at", "actor", "ip", "action", "branch", "module", "outcome"]
    list_filter = ["action", "outcome", "branch"]
    search_fields = ["actor", "branch", "module", "detail"]

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: AuditEntry | None = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: AuditEntry | None = None) -> bool:
        return False


class AlertDeliveryInline(admin.TabularInline):
    model = AlertDelivery
    fields = ["receiver", "attempts", "next_attempt_at", "delivered_at", "last_error"]
    readonly_fields = fields
    extra = 0
    can_delete = False


@admin.register(Alert)
class AlertAdmin(admin.ModelAdmin):
    """Read-only: the alert outbox, with each receiver's delivery (attempts, last error)."""

    list_display = ["created_at", "event", "module", "previous_status", "status"]
    list_filter = ["event", "status"]
    search_fields = ["module__branch", "module__module", "module__host"]
    inlines = [AlertDeliveryInline]

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Alert | None = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Alert | None = None) -> bool:
        return False
