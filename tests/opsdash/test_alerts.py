"""Alerts: one per change, delivered to a local webhook receiver and by email, retried."""

from __future__ import annotations

import io
import json
import threading
from datetime import timedelta
from http.server import BaseHTTPRequestHandler, HTTPServer

import pytest
from django.core import mail
from django.core.management import call_command
from django.utils import timezone

from opsdash.models import Alert, AlertDelivery
from opsdash.services.alerts import deliver_due

pytestmark = pytest.mark.django_db


class Receiver:
    def __init__(self, fail_first: int = 0, hang: bool = False):
        self.received: list[dict] = []
        self.fail_first = fail_first
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):  # noqa: N802
                body = self.rfile.read(int(self.headers["Content-Length"]))
                if hang:
                    threading.Event().wait(8)
                if outer.fail_first > 0:
                    outer.fail_first -= 1
                    self.send_response(503)
                    self.end_headers()
                    return
                outer.received.append({"body": json.loads(body), "signature": self.headers.get("X-Opsdash-Signature")})
                self.send_response(204)
                self.end_headers()

            def log_message(self, *args):
                pass

        self.server = HTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_port}/hook"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self):
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def receiver(settings):
    r = Receiver()
    settings.OPSDASH_ALERT_WEBHOOK_URL = r.url
    settings.OPSDASH_ALERT_WEBHOOK_SECRET = "hook-secret"
    settings.OPSDASH_ALERT_EMAILS = ["ops@example.com"]
    yield r
    r.close()


def _scan():
    try:
        call_command("scan", stdout=io.StringIO(), stderr=io.StringIO())
    except SystemExit:
        pass


def test_one_alert_per_change_not_per_scan(store, add_events, receiver):
    module = store.module("dar", "pos")
    add_events(module)
    _scan()
    _scan()
    assert receiver.received == [] and not Alert.objects.exists()  # healthy from the start: nothing to say
    good = module.meta_path.read_bytes()
    module.meta_path.write_bytes(good + good[-30:])
    _scan()
    _scan()
    assert [r["body"]["event"] for r in receiver.received] == ["problem"]
    body = receiver.received[0]["body"]
    assert (body["branch"], body["module"], body["status"], body["previous_status"]) == ("dar", "pos", "critical", "healthy")
    assert "meta_corrupt" in [f["code"] for f in body["findings"]]
    assert receiver.received[0]["signature"].startswith("sha256=")
    module.meta_path.write_bytes(good)
    _scan()
    _scan()
    assert [r["body"]["event"] for r in receiver.received] == ["problem", "recovered"]
    assert [m.subject.split(": ")[-1] for m in mail.outbox] == ["critical", "healthy"]


def test_a_failing_receiver_is_retried_with_backoff_until_delivered(store, add_events, receiver):
    receiver.fail_first = 2
    module = store.module("dar", "pos")
    add_events(module)
    _scan()
    module.meta_path.write_text("{")
    _scan()
    delivery = AlertDelivery.objects.get(receiver="webhook")
    assert delivery.attempts == 1 and delivery.delivered_at is None and "503" in delivery.last_error
    assert deliver_due() == (0, 0)  # not due yet: backoff
    later = timezone.now() + timedelta(seconds=31)
    deliver_due(later)
    delivery.refresh_from_db()
    assert delivery.attempts == 2 and delivery.next_attempt_at >= later + timedelta(seconds=60)
    deliver_due(later + timedelta(seconds=61))
    delivery.refresh_from_db()
    assert delivery.delivered_at is not None and len(receiver.received) == 1


def test_a_hanging_or_absent_receiver_never_stops_the_scanner(store, add_events, settings):
    hang = Receiver(hang=True)
    settings.OPSDASH_ALERT_WEBHOOK_URL = hang.url
    try:
        module = store.module("dar", "pos")
        add_events(module)
        _scan()
        module.meta_path.write_text("{")
        _scan()  # the webhook times out after 5 s: recorded, not raised
        delivery = AlertDelivery.objects.get()
        assert delivery.delivered_at is None and delivery.attempts == 1 and delivery.last_error
    finally:
        hang.close()
    settings.OPSDASH_ALERT_WEBHOOK_URL = "http://127.0.0.1:9/nothing-listens-here"
    module.meta_path.write_text("{}")
    _scan()
