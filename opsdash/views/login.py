"""Django's login, throttled (services.throttle): too many failures from one client or for one
user name within the window answer 429 without checking the password."""

from __future__ import annotations

from django.conf import settings
from django.contrib.auth import views as auth_views
from django.http import HttpRequest, HttpResponse

from ..services.clients import client_ip
from ..services.throttle import release, reserve


class ThrottledLoginView(auth_views.LoginView):
    def post(self, request: HttpRequest, *args, **kwargs) -> HttpResponse:
        attempt = reserve(client_ip(request), request.POST.get("username", ""))
        if attempt is None:
            # An unbound form: a bound one would check the password when its errors are shown.
            form = self.get_form_class()(request, initial={"username": request.POST.get("username", "")[:150]})
            response = self.render_to_response(self.get_context_data(throttled=True, form=form), status=429)
            response["Retry-After"] = str(settings.OPSDASH_LOGIN_WINDOW_SECONDS)
            return response
        response = super().post(request, *args, **kwargs)
        if response.status_code == 302:  # logged in: the reservation was no failure
            release(attempt)
        return response
