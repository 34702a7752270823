"""Alerts: one per change, delivered to a local webhook receiver and by email, retried with
backoff, and never in the scanner's way."""

from __future__ import annotations

import hashlib
import hmac
import io
import json
from datetime import timedelta

import pytest
from django.core import mail
from django.core.management import call_command
from django.utils import timezone

from opsdash.models import Alert, AlertDelivery
from opsdash.services import alerts
from opsdash.services.alerts import deliver_due
from opsdash.services.scan import scan_root

from .receivers import Receiver

pytestmark = pytest.mark.django_db


@pytest.fixture
def receiver(settings):
    r = Receiver()
    settings.OPSDASH_ALERT_WEBHOOK_URL = r.url
    settings.OPSDASH_ALERT_WEBHOOK_SECRET = "hook-secret"
    settings.OPSDASH_ALERT_EMAILS = ["ops@example.com"]
    settings.OPSDASH_PUBLIC_URL = "https://opsdash.example.com/"
    yield r
    r.close()


def _scan() -> int:
    try:
        call_command("scan", stdout=io.StringIO(), stderr=io.StringIO())
    except SystemExit as exc:
        return exc.code
    raise AssertionError("manage.py scan always exits with its status code")


def _events(receiver) -> list[str]:
    return [r["body"]["event"] for r in receiver.received]


def _corrupt(module) -> bytes:
    good = module.meta_path.read_bytes()
    module.meta_path.write_bytes(good + good[-30:])
    return good


def test_one_alert_per_change_not_per_scan(store, add_events, receiver):
    module = store.module("dar", "pos")
    add_events(module)
    _scan()
    _scan()
    assert receiver.received == [] and not Alert.objects.exists()  # healthy from the start: nothing to say
    good = _corrupt(module)
    _scan()
    _scan()
    assert _events(receiver) == ["problem"]
    body = receiver.received[0]["body"]
    assert (body["host"], body["branch"], body["module"], body["status"], body["previous_status"]) == (
        "testhost",
        "dar",
        "pos",
        "critical",
        "healthy",
    )
    assert "meta_corrupt" in [f["code"] for f in body["findings"]] and all(f["message"] for f in body["findings"])
    assert body["url"] == "https://opsdash.example.com/modules/testhost/dar/pos/"
    assert timezone.datetime.fromisoformat(body["at"])
    module.meta_path.write_bytes(good)
    _scan()
    _scan()
    assert _events(receiver) == ["problem", "recovered"]
    assert receiver.received[1]["body"]["previous_status"] == "critical"
    assert [m.subject.split(": ")[-1] for m in mail.outbox] == ["critical", "healthy"]
    assert mail.outbox[0].to == ["ops@example.com"] and body["url"] in mail.outbox[0].body
    assert AlertDelivery.objects.filter(delivered_at=None).count() == 0


def test_the_webhook_body_is_signed_with_the_secret(store, add_events, receiver):
    store.module("dar", "kds").meta_path.parent.mkdir(parents=True)
    store.module("dar", "kds").meta_path.write_text("{")
    _scan()
    (request,) = receiver.received
    expected = hmac.new(b"hook-secret", request["raw"], hashlib.sha256).hexdigest()
    assert request["headers"]["X-Opsdash-Signature"] == f"sha256={expected}"
    assert request["headers"]["Content-Type"] == "application/json"


def test_a_module_first_seen_in_trouble_worse_and_gone_each_alert_once(store, add_events, receiver):
    first = store.module("dar", "kds")
    add_events(first)
    first.meta_path.write_text("{")  # first seen critical
    warn = store.module("dar", "pos")
    add_events(warn, count=4)
    meta = json.loads(warn.meta_path.read_text())
    meta["totalEvents"] = 2  # drift: a warning
    warn.meta_path.write_text(json.dumps(meta, indent=2))
    _scan()
    assert sorted(
        (r["body"]["module"], r["body"]["status"], r["body"]["previous_status"]) for r in receiver.received
    ) == [
        ("kds", "critical", None),
        ("pos", "warning", None),
    ]
    warn.meta_path.write_text("[]")  # warning -> critical
    _scan()
    _scan()
    assert [
        (r["body"]["module"], r["body"]["status"], r["body"]["previous_status"]) for r in receiver.received[2:]
    ] == [("pos", "critical", "warning")]
    for path in sorted(first.live_dir.iterdir()):
        path.unlink()
    first.live_dir.rmdir()
    _scan()
    _scan()
    assert [(r["body"]["event"], r["body"]["module"], r["body"]["status"]) for r in receiver.received[3:]] == [
        ("gone", "kds", "gone")
    ]
    assert Alert.objects.count() == 4


def test_without_receivers_alerts_are_recorded_and_nothing_is_sent(store, add_events, settings):
    module = store.module("dar", "pos")
    add_events(module)
    _scan()
    _corrupt(module)
    _scan()
    alert = Alert.objects.get()
    assert (alert.event, alert.status, alert.previous_status) == ("problem", "critical", "healthy")
    assert not AlertDelivery.objects.exists() and not mail.outbox


def test_a_failing_receiver_is_retried_with_backoff_until_delivered(store, add_events, receiver):
    receiver.fail_first = 2
    module = store.module("dar", "pos")
    add_events(module)
    _scan()
    _corrupt(module)
    _scan()
    delivery = AlertDelivery.objects.get(receiver="webhook")
    assert delivery.attempts == 1 and delivery.delivered_at is None and "503" in delivery.last_error
    assert AlertDelivery.objects.get(
        receiver="email:ops@example.com"
    ).delivered_at  # one receiver failing does not hold the other
    assert deliver_due() == (0, 0)  # not due yet: backoff
    later = timezone.now() + timedelta(seconds=31)
    assert deliver_due(later) == (0, 1)
    delivery.refresh_from_db()
    assert delivery.attempts == 2 and delivery.next_attempt_at == later + timedelta(seconds=60)
    assert deliver_due(later + timedelta(seconds=59)) == (0, 0)
    assert deliver_due(later + timedelta(seconds=61)) == (1, 0)
    delivery.refresh_from_db()
    assert delivery.delivered_at is not None and delivery.attempts == 3 and len(receiver.received) == 1
    assert receiver.attempts == 3


def test_the_scanner_delivers_due_retries_on_a_pass_without_changes(store, add_events, receiver):
    receiver.fail_first = 1
    module = store.module("dar", "pos")
    add_events(module)
    _scan()
    _corrupt(module)
    _scan()
    assert receiver.received == []
    AlertDelivery.objects.update(next_attempt_at=timezone.now() - timedelta(seconds=1))
    _scan()  # nothing changed on disk
    assert _events(receiver) == ["problem"] and Alert.objects.count() == 1


def test_backoff_doubles_up_to_an_hour_and_delivery_stops_after_max_attempts(store, add_events, settings):
    assert [alerts.backoff(n).total_seconds() for n in range(1, 10)] == [30, 60, 120, 240, 480, 960, 1920, 3600, 3600]
    down = Receiver(fail_first=100)
    settings.OPSDASH_ALERT_WEBHOOK_URL = down.url
    settings.OPSDASH_ALERT_MAX_ATTEMPTS = 3
    try:
        module = store.module("dar", "pos")
        add_events(module)
        module.meta_path.write_text("{")
        _scan()
        t = timezone.now()
        for _ in range(5):
            t += timedelta(hours=2)
            deliver_due(t)
    finally:
        down.close()
    delivery = AlertDelivery.objects.get()
    assert delivery.attempts == 3 and delivery.delivered_at is None and down.attempts == 3


def test_a_broken_receiver_is_tried_once_per_pass(store, add_events, settings):
    down = Receiver(fail_first=100)
    settings.OPSDASH_ALERT_WEBHOOK_URL = down.url
    try:
        for name in ("a", "b", "c"):
            add_events(store.module("dar", name))
            store.module("dar", name).meta_path.write_text("{")
        _scan()
    finally:
        down.close()
    assert Alert.objects.count() == 3 and down.attempts == 1
    assert sorted(AlertDelivery.objects.values_list("attempts", flat=True)) == [0, 0, 1]


def test_a_pass_starts_no_delivery_after_its_time_budget(store, add_events, receiver):
    add_events(store.module("dar", "pos"))
    store.module("dar", "pos").meta_path.write_text("{")
    alerts.queue_transitions(scan_root().transitions)
    assert deliver_due(budget_seconds=-1) == (0, 0)
    assert AlertDelivery.objects.filter(attempts=0, delivered_at=None).count() == 2
    assert deliver_due() == (2, 0)


def test_a_redirect_is_not_a_delivery(store, add_events, settings):
    redirecting = Receiver(status=302, headers={"Location": "http://127.0.0.1:9/elsewhere"})
    settings.OPSDASH_ALERT_WEBHOOK_URL = redirecting.url
    try:
        add_events(store.module("dar", "pos"))
        store.module("dar", "pos").meta_path.write_text("{")
        _scan()
    finally:
        redirecting.close()
    delivery = AlertDelivery.objects.get()
    assert delivery.delivered_at is None and "302" in delivery.last_error


def test_a_delivery_is_claimed_once_across_processes(store, add_events, receiver):
    add_events(store.module("dar", "pos"))
    store.module("dar", "pos").meta_path.write_text("{")
    alerts.queue_transitions(scan_root().transitions)
    seen_by_a = list(AlertDelivery.objects.all())
    seen_by_b = list(AlertDelivery.objects.all())  # a second scanner read the same due rows
    now = timezone.now()
    assert [alerts._claim(d, now) for d in seen_by_a] == [True, True]
    assert [alerts._claim(d, now) for d in seen_by_b] == [False, False]
    assert deliver_due(now) == (0, 0)  # claimed deliveries are not due until their lease ends
    assert deliver_due(now + alerts.CLAIM_LEASE) == (2, 0) and len(receiver.received) == 1 and len(mail.outbox) == 1


def test_a_hanging_or_absent_receiver_never_stops_the_scanner(store, add_events, settings, monkeypatch):
    monkeypatch.setattr(alerts, "TIMEOUT_SECONDS", 0.5)  # 5 s in production; the behaviour is the same
    hang = Receiver(hang=True)
    settings.OPSDASH_ALERT_WEBHOOK_URL = hang.url
    try:
        module = store.module("dar", "pos")
        add_events(module)
        assert _scan() == 0
        good = _corrupt(module)
        assert _scan() == 2  # the scan's own exit code: critical
        delivery = AlertDelivery.objects.get()
        assert delivery.delivered_at is None and delivery.attempts == 1 and "timed out" in delivery.last_error
    finally:
        hang.close()
    settings.OPSDASH_ALERT_WEBHOOK_URL = "http://127.0.0.1:9/nothing-listens-here"
    AlertDelivery.objects.update(next_attempt_at=timezone.now())
    module.meta_path.write_bytes(good)
    assert _scan() == 0
    delivery.refresh_from_db()
    assert delivery.attempts == 2 and "refused" in delivery.last_error.lower()
    assert Alert.objects.filter(event="recovered").exists()


def test_a_failing_queue_or_delivery_is_logged_not_raised(monkeypatch, caplog, db):
    def boom(*args, **kwargs):
        raise RuntimeError("database went away")

    monkeypatch.setattr(alerts, "queue_transitions", boom)
    monkeypatch.setattr(alerts, "deliver_due", boom)
    alerts.after_pass([])
    assert [r.getMessage() for r in caplog.records] == [
        "alerts could not be queued; the scan goes on",
        "alerts could not be delivered; the scan goes on",
    ]


def test_the_admin_lists_alerts_and_their_deliveries_read_only(store, add_events, receiver, admin_client):
    receiver.fail_first = 1
    add_events(store.module("dar", "pos"))
    store.module("dar", "pos").meta_path.write_text("{")
    _scan()
    alert = Alert.objects.get()
    assert admin_client.get("/admin/opsdash/alert/").status_code == 200
    page = admin_client.get(f"/admin/opsdash/alert/{alert.pk}/change/")
    assert page.status_code == 200 and b"503" in page.content
    assert admin_client.post(f"/admin/opsdash/alert/{alert.pk}/delete/", {"post": "yes"}).status_code == 403
    assert Alert.objects.exists()


def test_alert_urls_must_be_http(monkeypatch):
    from django.core.exceptions import ImproperlyConfigured

    from opsdash.settings import env_http_url

    monkeypatch.setenv("OPSDASH_ALERT_WEBHOOK_URL", "https://hooks.example.com/x")
    assert env_http_url("OPSDASH_ALERT_WEBHOOK_URL") == "https://hooks.example.com/x"
    monkeypatch.setenv("OPSDASH_ALERT_WEBHOOK_URL", "")
    assert env_http_url("OPSDASH_ALERT_WEBHOOK_URL") == ""
    monkeypatch.setenv("OPSDASH_ALERT_WEBHOOK_URL", "file:///etc/passwd")
    with pytest.raises(ImproperlyConfigured):
        env_http_url("OPSDASH_ALERT_WEBHOOK_URL")


def _silent_host(name: str, seconds: float, **fields) -> None:
    from opsdash.models import ScanHost

    ScanHost.objects.update_or_create(
        host=name,
        defaults={
            "data_root": f"/srv/{name}",
            "last_pass_at": timezone.now() - timedelta(seconds=seconds),
            "worst_status": "healthy",
            "modules": 3,
            **fields,
        },
    )


def test_a_host_that_stops_reporting_alerts_once_and_once_more_when_it_is_back(store, add_events, receiver, settings):
    from opsdash.services.host import serving
    from opsdash.services.scan import record_pass
    from opsdash.services.scanner import run_pass

    add_events(store.module("dar", "pos"))
    _silent_host("store-b", settings.OPSDASH_STALE_SECONDS - 5)
    assert _scan() == 0 and receiver.received == []  # not stale yet
    _silent_host("store-b", settings.OPSDASH_STALE_SECONDS + 5)
    _scan()
    _scan()  # a second look finds it already told
    assert _events(receiver) == ["host_stale"]
    body = receiver.received[0]["body"]
    assert (
        body["host"] == "store-b"
        and body["modules"] == 3
        and body["stale_after_seconds"] == settings.OPSDASH_STALE_SECONDS
    )
    assert body["url"] == "https://opsdash.example.com/?q=store-b"
    assert [m.subject for m in mail.outbox] == ["[opsdash] host store-b stopped reporting"]
    with serving("store-b", store.root):  # its scanner runs again
        run_pass()
        run_pass()
    assert _events(receiver) == ["host_stale", "host_back"]
    assert record_pass(None, host="store-b") is False
    assert list(Alert.objects.order_by("id").values_list("host", "module", "event")) == [
        ("store-b", None, "host_stale"),
        ("store-b", None, "host_back"),
    ]


def test_the_web_process_watch_alerts_when_the_only_scanner_stopped(db, receiver, settings):
    from opsdash.services.watch import look_once

    _silent_host("only", settings.OPSDASH_STALE_SECONDS + 60)
    assert look_once() == 1 and look_once() == 0
    assert _events(receiver) == ["host_stale"]
