"""The login (django-allauth's), throttled (services.throttle): too many failures from one client
or for one user name within the window answer 429 without checking the password; the second
factor's code is throttled per client the same way."""

from __future__ import annotations

from collections.abc import Callable
from functools import wraps

from allauth.account.views import LoginView
from allauth.mfa.base.views import authenticate as mfa_authenticate_view
from django.conf import settings
from django.contrib.auth.decorators import login_not_required
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render

from ..services.clients import client_ip
from ..services.throttle import release, reserve


def _too_many(request: HttpRequest, template: str) -> HttpResponse:
    response = render(request, template, {"throttled": True}, status=429)
    response["Retry-After"] = str(settings.OPSDASH_LOGIN_WINDOW_SECONDS)
    return response


class ThrottledLoginView(LoginView):
    def get_context_data(self, **kwargs) -> dict:
        ctx = super().get_context_data(**kwargs)
        ctx["local_login"] = settings.OPSDASH_LOCAL_LOGIN
        ctx["sso_name"] = settings.OPSDASH_OIDC_NAME if settings.OPSDASH_OIDC_ISSUER else ""
        return ctx

    def post(self, request: HttpRequest, *args, **kwargs) -> HttpResponse:
        attempt = reserve(client_ip(request), request.POST.get("login", ""))
        if attempt is None:
            # An unbound form: a bound one would check the password when its errors are shown.
            form = self.get_form_class()(request=request, initial={"login": request.POST.get("login", "")[:150]})
            response = self.render_to_response(self.get_context_data(throttled=True, form=form), status=429)
            response["Retry-After"] = str(settings.OPSDASH_LOGIN_WINDOW_SECONDS)
            return response
        response = super().post(request, *args, **kwargs)
        if response.status_code == 302:  # the password was right (logged in, or on to the second factor)
            release(attempt)
        return response


def throttled_second_factor(view: Callable[..., HttpResponse]) -> Callable[..., HttpResponse]:
    """The second factor's code, throttled per client: a wrong code counts like a wrong password."""

    @wraps(view)
    def wrapper(request: HttpRequest, *args, **kwargs) -> HttpResponse:
        if request.method != "POST":
            return view(request, *args, **kwargs)
        attempt = reserve(client_ip(request), "")
        if attempt is None:
            return _too_many(request, "opsdash/throttled.html")
        response = view(request, *args, **kwargs)
        if response.status_code != 200:  # not the form again: the code was right
            release(attempt)
        return response

    return login_not_required(wrapper)


login = login_not_required(ThrottledLoginView.as_view())
second_factor = throttled_second_factor(mfa_authenticate_view)
