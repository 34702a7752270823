"""Error pages: a 403 is also an audit entry (who tried what); 403 and 404 are full pages in the
user's language; 500 is a plain page that needs nothing (not even the database) to render."""

from __future__ import annotations

import logging

from django.db import DatabaseError
from django.http import HttpRequest, HttpResponse
from django.views import defaults

from ..services.audit import record_refusal

log = logging.getLogger(__name__)


def permission_denied(request: HttpRequest, exception: Exception) -> HttpResponse:
    try:
        record_refusal(request)
    except DatabaseError:  # the refusal stands even if it cannot be written down
        log.exception("could not audit a refused request to %s", request.path)
    return defaults.permission_denied(request, exception)
