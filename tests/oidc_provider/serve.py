"""Run the test OpenID Connect provider: ``serve.py PORT REDIRECT_URI`` with OIDC_PROVIDER_DB set.

Creates its users (alice: groups ops and store-dar; bob: no group) and one confidential client
(opsdash / opsdash-secret, redirect REDIRECT_URI, no consent screen), then serves on 127.0.0.1.
"""

import os
import sys
from socketserver import ThreadingMixIn
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "provider_settings")
sys.path.insert(0, os.path.dirname(__file__))

import django

django.setup()

from django.contrib.auth.models import Group, User  # noqa: E402
from django.core.management import call_command  # noqa: E402
from django.core.wsgi import get_wsgi_application  # noqa: E402
from oauth2_provider.models import Application  # noqa: E402

PASSWORD = "provider-password"


class ThreadingServer(ThreadingMixIn, WSGIServer):
    daemon_threads = True


class QuietHandler(WSGIRequestHandler):
    def log_message(self, *args):
        pass


def main() -> None:
    port, redirect = int(sys.argv[1]), sys.argv[2]
    call_command("migrate", verbosity=0)
    for name, groups in (("alice", ["ops", "store-dar"]), ("bob", [])):
        user = User.objects.create_user(name, password=PASSWORD)
        user.groups.set([Group.objects.get_or_create(name=g)[0] for g in groups])
    Application.objects.create(
        name="opsdash",
        client_id="opsdash",
        client_secret="opsdash-secret",
        hash_client_secret=False,
        client_type=Application.CLIENT_CONFIDENTIAL,
        authorization_grant_type=Application.GRANT_AUTHORIZATION_CODE,
        redirect_uris=redirect,
        skip_authorization=True,
        algorithm=Application.RS256_ALGORITHM,
    )
    server = make_server(
        "127.0.0.1", port, get_wsgi_application(), server_class=ThreadingServer, handler_class=QuietHandler
    )
    print("ready", flush=True)
    server.serve_forever()


if __name__ == "__main__":
    main()
