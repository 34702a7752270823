"""WSGI entry point: ``gunicorn opsdash.wsgi``."""

import os

from django.core.wsgi import get_wsgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "opsdash.settings")

application = get_wsgi_application()

from opsdash.services.watch import start_watch  # noqa: E402 - needs the app registry
from opsdash.services.worker import start_embedded_worker  # noqa: E402

start_embedded_worker()
start_watch()
