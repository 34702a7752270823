"""Project URLconf: the dashboard at /, Django's login at /accounts/, the read-only admin."""

from django.contrib import admin
from django.contrib.auth import views as auth_views
from django.contrib.auth.decorators import login_not_required
from django.urls import include, path

from opsdash.views.login import ThrottledLoginView

urlpatterns = [
    path("accounts/login/", login_not_required(ThrottledLoginView.as_view()), name="login"),
    path("accounts/logout/", auth_views.LogoutView.as_view(), name="logout"),
    path("admin/", admin.site.urls),
    path("", include("opsdash.urls")),
]
