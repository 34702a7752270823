from functools import wraps

from django.conf import settings
from django.contrib import admin
from django.contrib.auth.admin import UserAdmin
from django.contrib.auth.models import User
from django.http import HttpRequest, HttpResponse

from .models import Alert, AlertDelivery, ApiToken, AuditEntry, BranchScope
from .services.clients import client_ip
from .services.throttle import release, reserve


def _throttled(login):
    """The admin's own login form under the dashboard login's throttle (the same attempts count
    per client and per user name): otherwise it is a side door for guessing a superuser's password."""

    @wraps(login)
    def view(request: HttpRequest, extra_context=None) -> HttpResponse:
        if request.method != "POST":
            return login(request, extra_context)
        attempt = reserve(client_ip(request), request.POST.get("username", ""))
        if attempt is None:
            response = HttpResponse("Too many failed logins; try again later.\n", status=429, content_type="text/plain")
            response["Retry-After"] = str(settings.OPSDASH_LOGIN_WINDOW_SECONDS)
            return response
        response = login(request, extra_context)
        if response.status_code != 200:  # not the form shown again: it did not fail
            release(attempt)
        return response

    return view


admin.site.login = _throttled(admin.site.login)


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


class BranchScopeInline(admin.StackedInline):
    """The branches a user may see (a branch manager): a JSON list, e.g. ["dar", "maadi"];
    no row or an empty list means every branch."""

    model = BranchScope
    can_delete = True
    extra = 0
    verbose_name = "branches this user may see (empty: every branch)"


class UserWithBranchesAdmin(UserAdmin):
    inlines = [*UserAdmin.inlines, BranchScopeInline]


admin.site.unregister(User)
admin.site.register(User, UserWithBranchesAdmin)


@admin.register(ApiToken)
class ApiTokenAdmin(admin.ModelAdmin):
    """API tokens: who has which, when last used; created and revoked from the user's token page
    or `manage.py token` (the token itself is shown once, at creation, and never stored)."""

    list_display = ["name", "user", "read_only", "created_at", "expires_at", "last_used_at", "revoked_at"]
    list_filter = ["read_only"]
    search_fields = ["name", "user__username"]
    readonly_fields = [
        "user",
        "name",
        "digest",
        "read_only",
        "created_at",
        "created_by",
        "expires_at",
        "last_used_at",
        "revoked_at",
    ]

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: ApiToken | None = None) -> bool:
        return False
