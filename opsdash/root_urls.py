"""Project URLconf: the dashboard at /, Django's login at /accounts/, the language switcher, the read-only admin."""

from django.contrib import admin
from django.contrib.auth import views as auth_views
from django.contrib.auth.decorators import login_not_required
from django.urls import include, path
from django.views.i18n import set_language

from opsdash.views.login import ThrottledLoginView

urlpatterns = [
    path("accounts/login/", login_not_required(ThrottledLoginView.as_view()), name="login"),
    # The language switcher (a POST with CSRF; also on the login page, so it needs no login).
    path("i18n/setlang/", login_not_required(set_language), name="set_language"),
    path("accounts/logout/", auth_views.LogoutView.as_view(), name="logout"),
    path("admin/", admin.site.urls),
    path("", include("opsdash.urls")),
]

handler403 = "opsdash.views.errors.permission_denied"
