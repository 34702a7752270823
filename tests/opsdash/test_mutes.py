"""Alerts people can live with (issue 16): acknowledge, silence, maintenance windows, Apprise
channels with routes, escalation; on real files, a real scan and receivers on loopback."""

from __future__ import annotations

import io
import socket
from datetime import datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from django.core.management import call_command
from django.urls import reverse
from django.utils import timezone

from opsdash.models import Alert, AlertDelivery, AuditEntry, Incident, MaintenanceWindow, ModuleState, Mute
from opsdash.services import maintenance
from opsdash.services.alerts import after_pass, deliver_due
from opsdash.services.scan import scan_root

from .receivers import Receiver

pytestmark = pytest.mark.django_db


def _corrupt(module) -> None:
    good = module.meta_path.read_bytes()
    module.meta_path.write_bytes(good + good[-30:])  # meta_corrupt: critical


def _bad_line(module) -> None:
    with open(module.log_path, "ab") as f:
        f.write(b"not an event\n")  # log_bad_line: critical


def _torn(module) -> None:
    with open(module.log_path, "ab") as f:
        f.write(b'{"id": "half-writ')  # log_torn_tail: warning


def _pass(now=None) -> None:
    report = scan_root(now=now)
    after_pass(report.transitions, now=now)


@pytest.fixture
def channels(settings):
    """Three Apprise channels (JSON webhooks on loopback) with their routes."""
    everything, dar_critical, escalation = Receiver(), Receiver(), Receiver()
    settings.OPSDASH_ALERT_CHANNELS = (
        {"name": "all", "url": everything.url.replace("http://", "json://"), "branches": (),
         "min_severity": "warning", "events": ("problem", "recovered", "gone", "verify_overdue", "host_stale", "host_back")},
        {"name": "dar-critical", "url": dar_critical.url.replace("http://", "json://"), "branches": ("dar",),
         "min_severity": "critical", "events": ("problem",)},
        {"name": "on-call", "url": escalation.url.replace("http://", "json://"), "branches": (),
         "min_severity": "warning", "events": ("escalated",)},
    )  # fmt: skip
    yield {"all": everything, "dar-critical": dar_critical, "on-call": escalation}
    for r in (everything, dar_critical, escalation):
        r.close()


def _titles(receiver: Receiver) -> list[str]:
    return [r["body"]["title"] for r in receiver.received]


def test_channels_get_what_their_routes_take_and_never_show_their_urls(store, add_events, channels, admin_client):
    dar, maadi = store.module("dar", "pos"), store.module("maadi", "pos")
    add_events(dar)
    add_events(maadi)
    _pass()
    _torn(maadi)  # warning in maadi
    _corrupt(dar)  # critical in dar
    _pass()
    deliver_due()
    assert sorted(t.split(":")[0] for t in _titles(channels["all"])) == [
        "[opsdash] dar/pos on testhost",
        "[opsdash] maadi/pos on testhost",
    ]
    assert _titles(channels["dar-critical"]) == ["[opsdash] dar/pos on testhost: critical"]
    assert channels["on-call"].received == []
    receivers = set(AlertDelivery.objects.values_list("receiver", flat=True))
    assert receivers == {"channel:all", "channel:dar-critical"}
    alert = Alert.objects.filter(module__branch="dar").latest("id")
    page = admin_client.get(reverse("admin:opsdash_alert_change", args=[alert.pk])).content.decode()
    assert "channel:all" in page and "json://" not in page and str(channels["all"].server.server_port) not in page


def test_a_failing_channel_is_retried_and_its_error_names_the_channel_only(store, add_events, settings):
    failing = Receiver(fail_first=1)
    settings.OPSDASH_ALERT_CHANNELS = (
        {"name": "flaky", "url": failing.url.replace("http://", "json://") + "?secret=s3cr3t", "branches": (),
         "min_severity": "warning", "events": ("problem",)},
    )  # fmt: skip
    try:
        module = store.module("dar", "pos")
        add_events(module)
        _pass()
        _corrupt(module)
        _pass()  # queued, and tried once: the receiver answers 503
        delivery = AlertDelivery.objects.get()
        assert delivery.attempts == 1 and delivery.delivered_at is None
        assert "flaky" in delivery.last_error and "s3cr3t" not in delivery.last_error
        deliver_due(timezone.now() + timedelta(minutes=1))
        delivery.refresh_from_db()
        assert delivery.delivered_at is not None and len(failing.received) == 1
    finally:
        failing.close()


def test_a_hanging_channel_never_holds_the_scanner(store, add_events, settings):
    hanging = Receiver(hang=True)
    settings.OPSDASH_ALERT_CHANNELS = (
        {"name": "slow", "url": hanging.url.replace("http://", "json://") + "?rto=1&cto=1", "branches": (),
         "min_severity": "warning", "events": ("problem",)},
    )  # fmt: skip
    try:
        module = store.module("dar", "pos")
        add_events(module)
        _pass()
        _corrupt(module)
        _pass()  # queued and tried once: the service does not answer within its read timeout (rto)
        delivery = AlertDelivery.objects.get()
        assert delivery.delivered_at is None and delivery.attempts == 1 and "slow" in delivery.last_error
        assert hanging.attempts == 1  # the pass went on while the receiver still held the request
    finally:
        hanging.close()


def test_an_acknowledged_problem_is_shown_apart_and_audited(store, add_events, operator_client, manager_client):
    for name in ("pos", "kds"):
        add_events(store.module("dar", name))
    _pass()
    _corrupt(store.module("dar", "pos"))
    _corrupt(store.module("dar", "kds"))
    _pass()
    url = reverse("opsdash:module_mute", args=["testhost", "dar", "pos"])
    data = {"kind": "ack", "scope": "module", "comment": "the till is being replaced"}
    assert manager_client.post(url, data).status_code == 403
    assert operator_client.post(url, data).status_code == 302
    mute = Mute.objects.get()
    assert (mute.kind, mute.created_by, mute.status_at) == ("ack", "operator", "critical")
    entry = AuditEntry.objects.get(action="acknowledge")
    assert entry.actor == "operator" and entry.detail == "the till is being replaced"
    overview = manager_client.get(reverse("opsdash:module_list")).content.decode()
    assert "(1 acknowledged)" in overview
    rows = manager_client.get(reverse("opsdash:api_module_list") + "?status=unacknowledged").json()["modules"]
    assert [r["module"] for r in rows] == ["kds"]
    page = manager_client.get(reverse("opsdash:module_detail", args=["testhost", "dar", "pos"])).content.decode()
    assert "the till is being replaced" in page and "Lift" not in page  # managers see it, only operators lift


def test_a_silence_stops_alerts_until_things_get_worse(store, add_events, settings, operator_client):
    receiver = Receiver()
    settings.OPSDASH_ALERT_WEBHOOK_URL = receiver.url
    try:
        module = store.module("dar", "pos")
        add_events(module)
        _pass()
        _torn(module)
        _pass()  # warning: alerted
        row = ModuleState.objects.get()
        url = reverse("opsdash:module_mute", args=["testhost", "dar", "pos"])
        operator_client.post(url, {"kind": "silence", "scope": "module", "comment": "known"})
        silence = Mute.objects.get()
        assert silence.status_at == "warning" and silence.codes_at.split() == ["log_torn_tail"]
        _corrupt(module)
        _pass()  # critical: worse than when silenced, so the silence ended and the alert went out
        silence.refresh_from_db()
        assert silence.ended_why == "worse" and silence.ended_at is not None
        alert = Alert.objects.filter(module=row).latest("id")
        assert alert.status == "critical" and alert.suppressed == ""
        assert alert.deliveries.count() == 1
    finally:
        receiver.close()


def test_a_sticky_silence_holds_and_an_expired_one_ends(store, add_events, settings, operator_client):
    settings.OPSDASH_ALERT_EMAILS = ["ops@example.com"]
    module = store.module("dar", "pos")
    add_events(module)
    _pass()
    _torn(module)
    _pass()
    until = (timezone.localtime() + timedelta(hours=2)).strftime("%Y-%m-%dT%H:%M")
    url = reverse("opsdash:module_mute", args=["testhost", "dar", "pos"])
    data = {"kind": "silence", "scope": "module", "comment": "migrating", "sticky": "on", "until": until}
    operator_client.post(url, data)
    _corrupt(module)
    _pass()
    alert = Alert.objects.latest("id")
    assert alert.status == "critical" and alert.suppressed == "silenced" and not alert.deliveries.exists()
    _pass(timezone.now() + timedelta(hours=3))
    assert Mute.objects.get().ended_why == "expired"


def test_a_new_finding_code_ends_a_silence_of_the_branch(store, add_events, operator_client):
    dar, kds = store.module("dar", "pos"), store.module("dar", "kds")
    add_events(dar)
    add_events(kds)
    _pass()
    _corrupt(dar)
    _pass()
    url = reverse("opsdash:module_mute", args=["testhost", "dar", "pos"])
    operator_client.post(url, {"kind": "silence", "scope": "branch", "comment": "branch move"})
    _bad_line(kds)  # a code the branch did not have
    _pass()
    assert Mute.objects.get().ended_why == "new_code"


def test_maintenance_windows_one_off_and_recurring(store, add_events, settings, operator_client, auditor_client):
    settings.OPSDASH_ALERT_EMAILS = ["ops@example.com"]
    module = store.module("dar", "pos")
    add_events(module)
    _pass()
    now = timezone.localtime()
    data = {
        "branch": "dar",
        "starts_at": (now - timedelta(minutes=5)).strftime("%Y-%m-%dT%H:%M"),
        "ends_at": (now + timedelta(hours=1)).strftime("%Y-%m-%dT%H:%M"),
        "comment": "moving the server",
    }
    assert auditor_client.post(reverse("opsdash:maintenance_create"), data).status_code == 403
    assert operator_client.post(reverse("opsdash:maintenance_create"), data).status_code == 302
    _corrupt(module)
    _pass()
    alert = Alert.objects.latest("id")
    assert alert.suppressed == "maintenance" and not alert.deliveries.exists()
    incident = Incident.objects.get(module__module="pos")
    assert incident.during_maintenance
    assert "during maintenance" in auditor_client.get(incident.get_absolute_url()).content.decode()
    assert "during maintenance" in auditor_client.get(reverse("opsdash:incident_list")).content.decode()
    assert AuditEntry.objects.get(action="maintenance").detail == "moving the server"
    page = auditor_client.get(reverse("opsdash:maintenance_list")).content.decode()
    assert "moving the server" in page and "in force now" in page
    bad = operator_client.post(reverse("opsdash:maintenance_create"), {**data, "cron": "61 * * * *", "minutes": "5"})
    assert bad.status_code == 400

    tz = ZoneInfo(settings.TIME_ZONE)
    nightly = MaintenanceWindow(cron="0 3 * * *", minutes=60, comment="backup", created_by="operator")
    assert maintenance.is_open(nightly, datetime(2026, 12, 2, 3, 30, tzinfo=tz))
    assert maintenance.is_open(nightly, datetime(2026, 12, 2, 3, 0, tzinfo=tz))
    assert not maintenance.is_open(nightly, datetime(2026, 12, 2, 4, 0, tzinfo=tz))
    assert maintenance.next_start(nightly, datetime(2026, 12, 2, 4, 0, tzinfo=tz)) == datetime(
        2026, 12, 3, 3, 0, tzinfo=tz
    )


def test_an_unacknowledged_problem_is_escalated_once(store, add_events, settings, channels):
    settings.OPSDASH_ESCALATION_MINUTES = 10
    dar, maadi = store.module("dar", "pos"), store.module("maadi", "pos")
    add_events(dar)
    add_events(maadi)
    start = timezone.now()
    _pass(start)
    _corrupt(dar)
    _corrupt(maadi)
    _pass(start)
    Mute.objects.create(
        kind="ack", scope="branch", host="testhost", branch="maadi", comment="known", created_by="operator",
        created_at=start, status_at="critical", codes_at=" meta_corrupt ",
    )  # fmt: skip
    _pass(start + timedelta(minutes=5))
    assert not Alert.objects.filter(event="escalated").exists()
    later = start + timedelta(minutes=11)
    _pass(later)
    _pass(later + timedelta(minutes=1))
    escalated = Alert.objects.filter(event="escalated")
    assert [a.module.branch for a in escalated] == ["dar"]  # maadi is acknowledged
    deliver_due(later + timedelta(minutes=2))
    assert [t.split(":")[0] for t in _titles(channels["on-call"])] == ["[opsdash] still critical, unacknowledged"]


class _Inbox:
    """An SMTP server on loopback (aiosmtpd) keeping what it is sent."""

    def __init__(self) -> None:
        self.messages: list[bytes] = []

    async def handle_DATA(self, server, session, envelope):
        self.messages.append(envelope.content)
        return "250 OK"


@pytest.fixture
def smtp(settings):
    from aiosmtpd.controller import Controller

    with socket.socket() as probe:  # a free port on loopback
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    inbox = _Inbox()
    controller = Controller(inbox, hostname="127.0.0.1", port=port)
    controller.start()
    settings.MAILERS = {
        "default": {
            "BACKEND": "django.core.mail.backends.smtp.EmailBackend",
            "OPTIONS": {"host": "127.0.0.1", "port": port, "timeout": 5},
        }
    }
    yield inbox
    controller.stop()


def test_the_daily_digest_goes_by_email_and_to_its_channels(store, add_events, settings, smtp, channels):
    settings.OPSDASH_DIGEST_EMAILS = ["manager@example.com"]
    settings.OPSDASH_ALERT_CHANNELS = (
        *settings.OPSDASH_ALERT_CHANNELS,
        {"name": "digest", "url": channels["on-call"].url.replace("http://", "json://"), "branches": (),
         "min_severity": "warning", "events": ("digest",)},
    )  # fmt: skip
    dar = store.module("dar", "pos")
    add_events(dar)
    add_events(store.module("maadi", "kds"))
    start = timezone.now() - timedelta(hours=5)
    _pass(start)
    _corrupt(dar)
    _pass(start + timedelta(hours=1))
    good = dar.meta_path.read_bytes()
    dar.meta_path.write_bytes(good[: good.rindex(b"}") + 1 - 30])  # as _corrupt left it, minus the tail
    dar.rebuild()
    _pass(start + timedelta(hours=3))  # fixed after two hours
    Mute.objects.create(
        kind="silence", scope="branch", host="testhost", branch="maadi", comment="moving", created_by="operator",
        created_at=timezone.now(), until=timezone.now() + timedelta(days=1),
    )  # fmt: skip
    call_command("digest", stdout=io.StringIO())
    assert len(smtp.messages) == 1
    mail = smtp.messages[0].decode().replace("\r\n", "\n")
    assert "daily digest: 0 critical, 0 warning, 2 healthy" in mail
    # the scan's incident, and the library's rebuild's meta backup (a recovery no incident covered)
    assert "- dar: 1 healthy; 2 incident(s) opened, 2 ended" in mail
    assert "dar/pos: 2 h 00 min (meta_corrupt), resolved by scan" in mail
    assert "silenced branch maadi by operator until" in mail and "moving" in mail
    titles = [r["body"]["title"] for r in channels["on-call"].received]
    assert titles == ["[opsdash] daily digest: 0 critical, 0 warning, 2 healthy"]
    assert not any("digest" in t for t in _titles(channels["all"]))  # its events do not include it


@pytest.mark.django_db(transaction=True)  # the real worker runs the jobs
def test_a_purge_removes_only_old_unpinned_verified_archive_copies(
    store, add_events, settings, operator_client, tmp_path
):
    from opsdash.models import Backup, BackupBlob, Job
    from opsdash.services.worker import make_worker

    settings.OPSDASH_ARCHIVE_ROOT = tmp_path / "archive"
    settings.OPSDASH_ARCHIVE_KEEP_DAYS = 30
    module = store.module("dar", "pos")
    add_events(module)
    for ms in (1700000000001, 1700000000002, 1700000000003):
        (module.live_dir / f"events.meta.json.corrupted.{ms}.bak").write_text('{"totalEvents": 1}')
    _pass()
    operator_client.post(reverse("opsdash:module_archive_backups", args=["testhost", "dar", "pos"]))
    make_worker("testhost", batch=True).run()
    old, pinned, tampered = Backup.objects.order_by("name")
    assert {b.state for b in (old, pinned, tampered)} == {"archived"}
    assert operator_client.post(reverse("opsdash:backup_pin", args=[pinned.pk])).status_code == 302
    Path(tampered.archive_path).write_text('{"totalEvents": 2}')  # the archive copy changed since
    Backup.objects.update(last_changed=timezone.now() - timedelta(days=31))

    url = reverse("opsdash:branch_purge_archive", args=["testhost", "dar"])
    operator_client.post(url, {"confirm": "dar"})
    make_worker("testhost", batch=True).run()
    job = Job.objects.get(kind="purge_archive")
    assert job.status == "succeeded", job.error
    assert [p["name"] for p in job.result["purged"]] == [old.name]
    assert [k["name"] for k in job.result["kept"]] == [tampered.name]
    old.refresh_from_db()
    assert old.state == "purged" and not Path(old.archive_path).exists() and not BackupBlob.objects.filter(backup=old)
    assert Path(pinned.archive_path).exists() and Path(tampered.archive_path).exists()
    assert AuditEntry.objects.filter(action="pin_backup", actor="operator").exists()
    assert AuditEntry.objects.filter(action="purge_archive", outcome="ok").exists()


def test_a_user_limited_to_a_branch_mutes_and_plans_for_that_branch_only(store, add_events, operator_client):
    from django.contrib.auth.models import Group, User
    from django.test import Client

    from opsdash.services import mutes
    from opsdash.services.access import limit_user

    from .conftest import PASSWORD

    dar, maadi = store.module("dar", "pos"), store.module("maadi", "pos")
    add_events(dar)
    add_events(maadi)
    _pass()
    _corrupt(dar)
    _corrupt(maadi)
    _pass()
    user = User.objects.create_user("dar-operator", password=PASSWORD)
    user.groups.set([Group.objects.get(name="operators")])
    limit_user(user, ["dar"])
    client = Client()
    client.force_login(user)
    url = reverse("opsdash:module_mute", args=["testhost", "dar", "pos"])
    client.post(url, {"kind": "silence", "scope": "code", "code": "meta_corrupt", "comment": "ours"})
    mute = Mute.objects.get()
    assert (mute.scope, mute.code, mute.branch) == ("code", "meta_corrupt", "dar")  # not every branch's
    known = mutes.Mutes.load()
    assert known.state(ModuleState.objects.get(branch="dar")) == "silenced"
    assert known.state(ModuleState.objects.get(branch="maadi")) == ""
    everywhere = {"cron": "0 3 * * *", "minutes": "30", "comment": "all branches"}
    assert client.post(reverse("opsdash:maintenance_create"), everywhere).status_code == 400
    assert client.post(reverse("opsdash:maintenance_create"), {**everywhere, "branch": "dar"}).status_code == 302
    assert not MaintenanceWindow.objects.filter(branch="").exists()
    # what reaches every branch, given by an operator of every branch, is out of its reach
    operator_client.post(
        reverse("opsdash:module_mute", args=["testhost", "maadi", "pos"]),
        {"kind": "ack", "scope": "code", "code": "meta_corrupt", "comment": "everywhere"},
    )
    everyone = Mute.objects.get(comment="everywhere")
    assert everyone.branch == ""
    assert client.post(reverse("opsdash:mute_lift", args=[everyone.pk])).status_code == 404
    window = MaintenanceWindow.objects.create(cron="0 4 * * *", minutes=10, comment="all", created_by="operator")
    assert client.post(reverse("opsdash:maintenance_cancel", args=[window.pk])).status_code == 404
