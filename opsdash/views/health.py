from __future__ import annotations

from django.contrib.auth.decorators import login_not_required
from django.db import DatabaseError, connection
from django.http import HttpRequest, HttpResponse
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_GET

from eventstore.errors import EventStoreError

from ..services.scan import open_store
from .api import json_response


@require_GET
@never_cache
@login_not_required
def healthz(request: HttpRequest) -> HttpResponse:
    """200 when the database answers and the data root is usable; 503 with the reason if not."""
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")
    except DatabaseError as exc:
        return json_response({"status": "error", "reason": f"database: {exc}"}, status=503)
    try:
        store = open_store()
    except EventStoreError as exc:
        return json_response({"status": "error", "reason": f"data root: {exc}"}, status=503)
    return json_response({"status": "ok", "database": "ok", "data_root": str(store.root)})
