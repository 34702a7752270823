"""Django's login, throttled: too many failures from one address or for one user name within
the window answer 429 without checking the password."""

from __future__ import annotations

from datetime import timedelta

from django.conf import settings
from django.contrib.auth import views as auth_views
from django.db.models import Q
from django.http import HttpRequest, HttpResponse
from django.utils import timezone

from ..models import LoginFailure
from ..services.audit import client_ip


def _too_many(ip: str | None, username: str) -> bool:
    since = timezone.now() - timedelta(seconds=settings.OPSDASH_LOGIN_WINDOW_SECONDS)
    recent = LoginFailure.objects.filter(at__gte=since)
    return recent.filter(Q(ip=ip) if ip else Q(pk__in=[])).count() >= settings.OPSDASH_LOGIN_MAX_FAILURES or (
        bool(username) and recent.filter(username=username).count() >= settings.OPSDASH_LOGIN_MAX_FAILURES
    )


class ThrottledLoginView(auth_views.LoginView):
    def post(self, request: HttpRequest, *args, **kwargs) -> HttpResponse:
        ip, username = client_ip(request), request.POST.get("username", "")[:150]
        if _too_many(ip, username):
            response = self.render_to_response(self.get_context_data(throttled=True, form=self.get_form()), status=429)
            response["Retry-After"] = str(settings.OPSDASH_LOGIN_WINDOW_SECONDS)
            return response
        return super().post(request, *args, **kwargs)

    def form_invalid(self, form):
        LoginFailure.objects.create(ip=client_ip(self.request), username=self.request.POST.get("username", "")[:150])
        return super().form_invalid(form)
