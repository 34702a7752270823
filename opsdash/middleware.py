"""Request hygiene before any view runs."""

from __future__ import annotations

from collections.abc import Callable

import orjson
from allauth.mfa.models import Authenticator
from django.conf import settings
from django.http import HttpRequest, HttpResponse, HttpResponseBadRequest
from django.shortcuts import redirect

from .actions import RUN_ACTIONS
from .services import tokens
from .services.audit import record_refusal
from .services.clients import client_ip


class RejectNulBytesMiddleware:
    """A NUL byte in the path or a parameter is never a legitimate name: answer 400 at once
    (PostgreSQL refuses NUL in text, which would otherwise surface as a server error)."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]):
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        if "\x00" in request.path or any("\x00" in k or "\x00" in v for k, vs in request.GET.lists() for v in vs):
            return HttpResponseBadRequest("NUL bytes are not allowed in a request", content_type="text/plain")
        # Forms come url-encoded or, from scripts and the test client, as multipart: both are checked.
        form = request.method == "POST" and request.content_type in (
            "application/x-www-form-urlencoded",
            "multipart/form-data",
        )
        if form and any("\x00" in k or any("\x00" in v for v in vs) for k, vs in request.POST.lists()):
            return HttpResponseBadRequest("NUL bytes are not allowed in a request", content_type="text/plain")
        return self.get_response(request)


# Query parameters a client might put a token in: refused, a URL ends up in logs and histories.
TOKEN_PARAMETERS = ("token", "access_token", "api_key", "apikey", "key", "bearer")
SAFE_METHODS = ("GET", "HEAD", "OPTIONS")


class ApiTokenMiddleware:
    """``Authorization: Bearer <token>`` on /api/: the request acts as the token's user (role and
    branches) with no session and no CSRF check; a revoked, expired or unknown token is 401, a
    read-only one that tries to change something 403, a token in the query string 400. Other
    paths (``/metrics`` has a bearer token of its own) are left alone."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]):
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        if not request.path.startswith("/api/"):
            return self.get_response(request)
        if any(name in request.GET for name in TOKEN_PARAMETERS):
            return _json({"error": "send an API token in the Authorization header (Bearer), never in the URL"}, 400)
        header = request.META.get("HTTP_AUTHORIZATION", "")
        if not header:
            return self.get_response(request)
        scheme, _, token = header.partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            return _json({"error": "the Authorization header must be: Bearer <token>"}, 401, bearer=True)
        found = tokens.authenticate(token.strip(), client_ip(request))
        if isinstance(found, tokens.Refusal):
            return _json({"error": found.reason}, found.status, bearer=found.status == 401)
        request.user = found.user
        request.api_token = found
        request._dont_enforce_csrf_checks = True  # CSRF protects cookies; this request carries none
        return self.get_response(request)

    def process_view(
        self, request: HttpRequest, view_func: Callable, view_args: tuple, view_kwargs: dict
    ) -> HttpResponse | None:
        """A read-only token that tries to change something: 403, audited (the URL is resolved by now)."""
        token = getattr(request, "api_token", None)
        if token is not None and token.read_only and request.method not in SAFE_METHODS:
            record_refusal(request)
            return _json({"error": "this token is read-only"}, 403)
        return None


def _json(body: dict, status: int, bearer: bool = False) -> HttpResponse:
    response = HttpResponse(orjson.dumps(body), status=status, content_type="application/json")
    if bearer:
        response["WWW-Authenticate"] = 'Bearer realm="opsdash api"'
    return response


# The kinds of authenticator that are a second factor (recovery codes only back them up).
SECOND_FACTORS = (Authenticator.Type.TOTP, Authenticator.Type.WEBAUTHN)
# What a user who must enroll in two-factor login can still reach.
ENROLMENT_PATHS = ("/accounts/", "/i18n/", "/static/", "/healthz", "/metrics")


class RequireTwoFactorMiddleware:
    """OPSDASH_REQUIRE_2FA (operators, all): a logged-in user it names who has no second factor
    (an authenticator app or a security key) is sent to enroll before anything else; an API
    request with the session gets 403. Requests with an API token are programs: not concerned."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]):
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        if (
            settings.OPSDASH_REQUIRE_2FA != "none"
            and not request.path.startswith(ENROLMENT_PATHS)
            and getattr(request, "api_token", None) is None
            and request.user.is_authenticated
            and must_enroll(request.user)
        ):
            if request.path.startswith("/api/"):
                return _json({"error": "enroll in two-factor login first (/accounts/2fa/)"}, 403)
            return redirect("mfa_index")
        return self.get_response(request)


def must_enroll(user) -> bool:
    """True when OPSDASH_REQUIRE_2FA names ``user`` and it has no second factor yet."""
    named = settings.OPSDASH_REQUIRE_2FA == "all" or (
        settings.OPSDASH_REQUIRE_2FA == "operators" and user.has_perm(RUN_ACTIONS)
    )
    return named and not Authenticator.objects.filter(user=user, type__in=SECOND_FACTORS).exists()
