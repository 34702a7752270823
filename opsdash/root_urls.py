"""Project URLconf: the dashboard at /, the login and its second factor at /accounts/
(django-allauth, throttled), the language switcher, the read-only admin."""

from allauth.account import views as account_views
from django.contrib import admin
from django.contrib.auth.decorators import login_not_required
from django.urls import include, path
from django.views.decorators.http import require_POST
from django.views.i18n import set_language

from opsdash.views import login

logout = require_POST(account_views.logout)  # a GET never logs anyone out (nor asks to)

urlpatterns = [
    path("accounts/login/", login.login, name="login"),
    path("accounts/login/", login.login, name="account_login"),  # the name allauth reverses
    path("accounts/logout/", logout, name="logout"),
    path("accounts/logout/", logout, name="account_logout"),
    path("accounts/inactive/", account_views.account_inactive, name="account_inactive"),
    path("accounts/reauthenticate/", account_views.reauthenticate, name="account_reauthenticate"),
    # Two-factor login: enrolment (TOTP, recovery codes, security keys) and the code at login.
    path("accounts/2fa/authenticate/", login.second_factor, name="mfa_authenticate"),
    path("accounts/2fa/", include("allauth.mfa.urls")),
    # Single sign-on (OpenID Connect): the provider's login and callback, and their error pages;
    # 404 while no provider is configured (OPSDASH_OIDC_ISSUER).
    path("accounts/", include("allauth.socialaccount.providers.openid_connect.urls")),
    path("accounts/3rdparty/", include("allauth.socialaccount.urls")),
    # The language switcher (a POST with CSRF; also on the login page, so it needs no login).
    path("i18n/setlang/", login_not_required(set_language), name="set_language"),
    path("admin/", admin.site.urls),
    path("", include("opsdash.urls")),
]
handler403 = "opsdash.views.errors.permission_denied"
