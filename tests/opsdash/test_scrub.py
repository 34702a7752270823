"""Health you can trust: Verify reads everything, the scrub re-reads every log within its window,
and a change of bytes already seen is reported (issue 13), on real files through the real scan,
job queue and worker."""

from __future__ import annotations

import os
from datetime import timedelta

import pytest
from django.core import mail
from django.urls import reverse
from django.utils import timezone

from opsdash.models import Alert, AuditEntry, Incident, Job, ModuleState
from opsdash.services.alerts import deliver_due
from opsdash.services.scan import scan_root
from opsdash.services.scanner import run_pass
from opsdash.services.worker import make_worker

pytestmark = pytest.mark.django_db(transaction=True)
HOUR = 3600


def _run_queue() -> None:
    make_worker("testhost", batch=True).run()


def _change_a_digit_in_place(path) -> int:
    """Turn one digit inside a JSON string in the middle of the log into another, keeping the
    file's size and times (what bit rot or a careful hand edit leaves): every line still parses."""
    data = bytearray(path.read_bytes())
    at = data.index(b"ord-", len(data) // 2) + len(b"ord-")
    assert data[at : at + 1].isdigit()
    data[at] = ord("7") if data[at] != ord("7") else ord("3")
    st = os.stat(path)
    with open(path, "r+b") as f:  # in place: the same inode, like a disk's bad sector
        f.write(bytes(data))
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns))
    return at


@pytest.fixture
def pos(store, add_events):
    module = store.module("dar", "pos")
    add_events(module, count=40)
    scan_root()
    return module


def _url(kind: str, api: bool = False) -> str:
    name = f"opsdash:api_module_{kind}" if api else f"opsdash:module_{kind}"
    return reverse(name, args=["testhost", "dar", "pos"])


def test_verify_reads_everything_and_finds_a_byte_changed_in_place(pos, operator_client):
    at = _change_a_digit_in_place(pos.log_path)
    scan_root()  # the incremental pass: the stamp is unchanged, nothing is read
    assert ModuleState.objects.get(module="pos").status == "healthy"

    assert operator_client.post(_url("verify")).status_code in (302, 202)
    _run_queue()
    job = Job.objects.get(kind="verify")
    assert job.status == "succeeded", job.error
    assert job.result["status"] == "critical"
    assert [f["code"] for f in job.result["findings"]] == ["log_changed_in_place"]
    sizes = pos.log_path.stat().st_size + pos.meta_path.stat().st_size
    assert job.result["bytes_read"] >= sizes
    assert job.progress_info["unit"] == "bytes" and job.progress_info["done"] == job.progress_info["total"]
    module_row = ModuleState.objects.get(module="pos")
    finding = module_row.findings[0]
    first, last = finding["ranges"][0]
    assert first <= at <= last and finding["segments"] == 1
    assert module_row.verified_at is not None

    # it stays reported by the passes that read nothing
    scan_root()
    assert "log_changed_in_place" in ModuleState.objects.get(module="pos").codes

    page = operator_client.get(module_row.get_absolute_url()).content.decode()
    assert "Accept the log as it is" in page and "log_changed_in_place" in page
    assert "Read in full" in operator_client.get(job.get_absolute_url()).content.decode()


def test_accepting_the_log_ends_the_finding_and_is_audited(pos, operator_client, manager_client):
    _change_a_digit_in_place(pos.log_path)
    operator_client.post(_url("verify"))
    _run_queue()
    assert manager_client.post(_url("accept_log")).status_code == 403
    assert operator_client.post(_url("accept_log", api=True)).status_code == 202
    _run_queue()
    job = Job.objects.get(kind="accept_log")
    assert job.status == "succeeded" and job.result["status"] == "healthy", job.result
    module_row = ModuleState.objects.get(module="pos")
    assert module_row.status == "healthy" and not module_row.codes
    incident = Incident.objects.get(module=module_row, source="scan")
    assert incident.ended_by == "accept by operator" and "log_changed_in_place" in incident.codes
    entry = AuditEntry.objects.get(action="accept_log")
    assert (entry.actor, entry.outcome) == ("operator", "ok")
    page = operator_client.get(module_row.get_absolute_url()).content.decode()
    assert "Accept the log as it is" not in page


def _sizes(store, sizes: dict[str, int], add_events) -> None:
    for name, count in sizes.items():
        add_events(store.module("dar", name), count=count)


def test_the_scrub_reads_every_log_within_its_window_at_a_flat_pace(store, add_events, settings):
    """Four modules, a one-day window, a pass an hour: the passes read about a twelfth of the
    bytes in full each on average (every log twice per window), oldest verified first, although
    every log is larger than one pass's share."""
    settings.OPSDASH_SCRUB_DAYS = 1
    settings.OPSDASH_SCRUB_BYTES_PER_PASS = 10**9
    _sizes(store, {"a": 30, "b": 60, "c": 90, "d": 120}, add_events)
    start = timezone.now()
    first = run_pass(interval=HOUR, now=start).report  # the heartbeat keeps the scrub's credit
    assert first.read_in_full == 4  # a first read is a full read
    total = sum(r.log_size for r in ModuleState.objects.all())
    largest = max(r.log_size for r in ModuleState.objects.all())
    reads: dict[str, list] = {m: [] for m in "abcd"}
    for n in range(1, 25):
        now = start + timedelta(hours=n)
        before = {r.module: r.verified_at for r in ModuleState.objects.all()}
        report = run_pass(interval=HOUR, now=now).report
        after = {r.module: r.verified_at for r in ModuleState.objects.all()}
        read = [m for m in after if after[m] != before[m]]
        assert report.read_in_full == len(read)
        for m in read:
            assert after[m] == now
            reads[m].append(n)
        pace = -(-total // 12)
        assert report.bytes_read_in_full <= max(pace, largest) + 4096  # the meta and backups too
        # the oldest verified go first: nothing read was newer than something left
        if read:
            assert max(before[m] for m in read) <= min(before[m] for m in after if m not in read)
    for m, passes in reads.items():
        assert passes, f"{m} was never read in full within the window"
        gaps = [b - a for a, b in zip([0, *passes], passes, strict=False)] + [24 - passes[-1]]
        assert max(gaps) <= 24, (m, passes)  # read in full within every window
        assert len(passes) >= 2, (m, passes)  # ...and about twice per window: the pace has room
    assert not ModuleState.objects.filter(overdue_since__isnull=False).exists()


def test_the_budget_caps_a_pass_and_a_log_larger_than_it_is_read_alone(store, add_events, settings):
    settings.OPSDASH_SCRUB_DAYS = 7
    _sizes(store, {"a": 50, "b": 50, "c": 50}, add_events)
    start = timezone.now()
    scan_root(now=start, interval=60)
    settings.OPSDASH_SCRUB_BYTES_PER_PASS = 1  # smaller than any log
    later = start + timedelta(days=4)  # all due (older than half the window)
    report = scan_root(now=later, interval=60)
    assert report.read_in_full == 1
    assert ModuleState.objects.filter(verified_at=later).count() == 1


def test_scrub_days_zero_reads_everything_every_pass(store, add_events, settings):
    settings.OPSDASH_SCRUB_DAYS = 0
    _sizes(store, {"a": 5, "b": 5}, add_events)
    scan_root()
    again = scan_root()
    assert again.read_in_full == 2 and "2 modules read in full" in again.summary()


def test_without_a_change_a_pass_reads_nothing_in_full(store, add_events, settings):
    settings.OPSDASH_SCRUB_DAYS = 7
    _sizes(store, {"a": 5}, add_events)
    start = timezone.now()
    scan_root(now=start, interval=60)
    report = scan_root(now=start + timedelta(minutes=1), interval=60)
    assert report.read_in_full == 0 and report.bytes_read == 0


def test_a_module_overdue_past_its_window_raises_one_alert(store, add_events, settings, data_root):
    settings.OPSDASH_SCRUB_DAYS = 1
    settings.OPSDASH_ALERT_EMAILS = ["ops@example.com"]
    _sizes(store, {"a": 10, "b": 10}, add_events)
    start = timezone.now() - timedelta(days=5)
    run_pass(interval=HOUR, now=start)
    settings.OPSDASH_SCRUB_BYTES_PER_PASS = 1  # one module per pass: the other one is late
    late = start + timedelta(days=3)
    run_pass(interval=HOUR, now=late)
    alerts = Alert.objects.filter(event="verify_overdue")
    assert alerts.count() == 1
    alert = alerts.get()
    overdue = ModuleState.objects.get(overdue_since__isnull=False)
    assert alert.module == overdue and alert.payload["verified_at"] == start.isoformat()
    deliver_due(late)
    assert any("not read in full in time" in m.subject for m in mail.outbox)

    run_pass(interval=HOUR, now=late + timedelta(hours=1))  # the other one's turn
    overdue.refresh_from_db()
    assert overdue.overdue_since is None and overdue.verified_at == late + timedelta(hours=1)
    assert Alert.objects.filter(event="verify_overdue").count() == 1  # one alert, not one per pass


def test_verified_at_on_the_overview_the_api_and_the_metrics(store, add_events, settings, manager_client):
    settings.OPSDASH_SCRUB_DAYS = 7
    _sizes(store, {"a": 5, "b": 5}, add_events)
    old = timezone.now() - timedelta(days=10)
    scan_root(now=old)
    add_events(store.module("dar", "c"), count=5)
    scan_root()  # c: read in full now (a first read)
    ModuleState.objects.filter(module__in=["a", "b"]).update(verified_at=old)  # as if the scrub was stopped
    overview = reverse("opsdash:module_list")
    html = manager_client.get(overview + "?unverified=9").content.decode()
    assert ">a</a>" in html and ">b</a>" in html and ">c</a>" not in html
    html = manager_client.get(overview + "?sort=verified").content.decode()
    assert html.index(">a</a>") < html.index(">c</a>")
    rows = manager_client.get(reverse("opsdash:api_module_list") + "?unverified=9").json()["modules"]
    assert {r["module"] for r in rows} == {"a", "b"}
    assert all(r["verified_at"].startswith(old.date().isoformat()) for r in rows)
    metrics = manager_client.get(reverse("opsdash:metrics")).content.decode()
    line = next(
        x for x in metrics.splitlines() if x.startswith('opsdash_module_verified_timestamp_seconds{branch="dar"')
    )
    assert float(line.rsplit(" ", 1)[1]) > 0
