"""Request hygiene before any view runs."""

from __future__ import annotations

from collections.abc import Callable

from django.http import HttpRequest, HttpResponse, HttpResponseBadRequest


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
