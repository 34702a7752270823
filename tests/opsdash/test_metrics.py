"""/metrics: names, labels and values after a real scan, read back with prometheus_client's
parser; the token and address protection."""

from __future__ import annotations

import ipaddress
from datetime import timedelta

import pytest
from django.urls import reverse
from django.utils import timezone
from prometheus_client.parser import text_string_to_metric_families

from opsdash.models import Backup, Incident, Job, ModuleState, ScanHost, codes_field
from opsdash.services.scan import record_pass, scan_root

pytestmark = pytest.mark.django_db
URL = "/metrics"


@pytest.fixture
def scanned(store, add_events):
    """A scanned data root: dar/pos healthy, dar/kds critical (corrupt meta) with a Node backup."""
    add_events(store.module("dar", "pos"))
    kds = store.module("dar", "kds")
    add_events(kds)
    text = kds.meta_path.read_text()
    kds.meta_path.write_text(text + text[-30:])
    (kds.live_dir / "events.meta.json.corrupted.1761567827663.bak").write_text("{")
    record_pass(scan_root())
    return kds, text


def _families(client, **headers) -> dict:
    response = client.get(URL, **headers)
    assert response.status_code == 200, response.content
    assert response["Content-Type"].startswith("text/plain; version=")
    return {f.name: f for f in text_string_to_metric_families(response.content.decode())}


def _samples(client, **headers) -> dict:
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in _families(client, **headers).values()
        for s in family.samples
    }


def test_url_name():
    assert reverse("opsdash:metrics") == URL


def test_metrics_name_and_count_what_the_database_holds(scanned, client):
    m = _samples(client)
    assert m[("opsdash_modules", (("branch", "dar"), ("host", "testhost"), ("status", "healthy")))] == 1
    assert m[("opsdash_modules", (("branch", "dar"), ("host", "testhost"), ("status", "critical")))] == 1
    assert ("opsdash_modules", (("branch", "dar"), ("host", "testhost"), ("status", "warning"))) not in m
    assert m[("opsdash_findings", (("code", "meta_corrupt"), ("host", "testhost"), ("severity", "critical")))] == 1
    assert m[("opsdash_findings", (("code", "backup_present"), ("host", "testhost"), ("severity", "info")))] == 1
    assert m[("opsdash_incidents_opened_total", (("source", "scan"),))] == 1
    assert m[("opsdash_incidents_opened_total", (("source", "store-server"),))] == 1
    assert m[("opsdash_incidents_open", (("host", "testhost"),))] == Incident.objects.filter(ended_at=None).count() >= 1
    assert m[("opsdash_backups", (("host", "testhost"), ("state", "live")))] == 1
    assert 0 <= m[("opsdash_host_last_scan_age_seconds", (("host", "testhost"),))] < 60
    stamp = ScanHost.objects.get(host="testhost").last_pass_at.timestamp()
    assert m[("opsdash_host_last_scan_timestamp_seconds", (("host", "testhost"),))] == pytest.approx(stamp)


def test_metric_types_and_help(scanned, client):
    families = _families(client)
    types = {name: f.type for name, f in families.items()}
    assert types == {
        "opsdash_modules": "gauge",
        "opsdash_findings": "gauge",
        "opsdash_incidents_opened": "counter",
        "opsdash_incidents_ended": "counter",
        "opsdash_incidents_open": "gauge",
        "opsdash_backups": "gauge",
        "opsdash_host_last_scan_age_seconds": "gauge",
        "opsdash_host_last_scan_timestamp_seconds": "gauge",
        "opsdash_module_verified_timestamp_seconds": "gauge",
        "opsdash_jobs": "gauge",
        "opsdash_job_duration_seconds": "histogram",
    }
    assert all(f.documentation for f in families.values())


def test_a_repair_ends_the_incident_and_moves_the_counters(scanned, client):
    kds, good = scanned
    kds.meta_path.write_text(good)
    Backup.objects.update(state=Backup.State.ARCHIVED)
    record_pass(scan_root())
    m = _samples(client)
    assert m[("opsdash_modules", (("branch", "dar"), ("host", "testhost"), ("status", "healthy")))] == 2
    assert m[("opsdash_incidents_ended_total", (("how", "resolved"),))] >= 1
    assert m[("opsdash_incidents_opened_total", (("source", "scan"),))] == 1  # counters never go down
    assert ("opsdash_findings", (("code", "meta_corrupt"), ("host", "testhost"), ("severity", "critical"))) not in m
    assert m[("opsdash_backups", (("host", "testhost"), ("state", "archived")))] == 1


def test_a_finding_severity_is_capped_by_the_module_status_and_gone_modules_have_none(db, client):
    now = timezone.now()
    common = {"branch": "b", "first_seen": now, "last_changed": now, "status_since": now}
    # meta_invalid is critical in the vocabulary, but Node's silent fallbacks make it a warning.
    ModuleState.objects.create(
        host="h", module="a", status="warning", codes=codes_field({"meta_invalid", "meta_drift"}), **common
    )
    ModuleState.objects.create(host="h", module="b", status="critical", codes=codes_field({"meta_invalid"}), **common)
    ModuleState.objects.create(host="h", module="c", status="gone", codes=codes_field({"meta_corrupt"}), **common)
    m = _samples(client)
    assert m[("opsdash_findings", (("code", "meta_invalid"), ("host", "h"), ("severity", "warning")))] == 1
    assert m[("opsdash_findings", (("code", "meta_invalid"), ("host", "h"), ("severity", "critical")))] == 1
    assert m[("opsdash_findings", (("code", "meta_drift"), ("host", "h"), ("severity", "warning")))] == 1
    assert not [k for k in m if k[0] == "opsdash_findings" and ("code", "meta_corrupt") in k[1]]
    assert m[("opsdash_modules", (("branch", "b"), ("host", "h"), ("status", "gone")))] == 1


def test_a_scrape_costs_the_same_queries_for_many_modules(db, client, django_assert_max_num_queries):
    now = timezone.now()
    ModuleState.objects.bulk_create(
        ModuleState(
            host=f"h{i % 3}",
            branch=f"b{i % 40}",
            module=f"m{i}",
            status="critical",
            codes=codes_field({"meta_corrupt", "backup_present"}),
            first_seen=now,
            last_changed=now,
            status_since=now,
        )
        for i in range(3000)
    )
    with django_assert_max_num_queries(10):
        m = _samples(client)
    assert sum(v for (name, labels), v in m.items() if name == "opsdash_modules") == 3000
    assert m[("opsdash_findings", (("code", "backup_present"), ("host", "h0"), ("severity", "info")))] == 1000


def test_job_counts_and_durations(scanned, client):
    t = timezone.now()
    for seconds, status in ((3, "succeeded"), (40, "succeeded"), (4000, "failed")):
        Job.objects.create(
            kind="rebuild",
            host="testhost",
            branch="dar",
            module="",
            requested_by="op",
            status=status,
            started_at=t,
            finished_at=t + timedelta(seconds=seconds),
        )
    Job.objects.create(kind="verify", host="testhost", branch="dar", module="kds", requested_by="op", status="queued")
    m = _samples(client)
    assert m[("opsdash_jobs", (("kind", "rebuild"), ("status", "succeeded")))] == 2
    assert m[("opsdash_jobs", (("kind", "rebuild"), ("status", "failed")))] == 1
    assert m[("opsdash_jobs", (("kind", "verify"), ("status", "queued")))] == 1
    assert m[("opsdash_job_duration_seconds_count", (("kind", "rebuild"),))] == 3
    assert m[("opsdash_job_duration_seconds_sum", (("kind", "rebuild"),))] == 4043
    bucket = {dict(labels)["le"]: v for (name, labels), v in m.items() if name == "opsdash_job_duration_seconds_bucket"}
    assert (bucket["1.0"], bucket["5.0"], bucket["60.0"], bucket["3600.0"], bucket["+Inf"]) == (0, 1, 2, 2, 3)
    assert ("opsdash_job_duration_seconds_count", (("kind", "verify"),)) not in m  # not finished


def test_metrics_need_a_token_or_an_allowed_address(scanned, client, settings):
    settings.OPSDASH_METRICS_TOKEN = "s3cret"
    assert client.get(URL, REMOTE_ADDR="10.1.2.3").status_code == 403
    wrong = client.get(URL, REMOTE_ADDR="10.1.2.3", HTTP_AUTHORIZATION="Bearer nope")
    assert wrong.status_code == 401 and wrong["WWW-Authenticate"].startswith("Bearer")
    assert (
        client.get(URL, HTTP_AUTHORIZATION="Basic czNjcmV0").status_code == 401
    )  # a header is judged even from 127.0.0.1
    assert _samples(client, REMOTE_ADDR="10.1.2.3", HTTP_AUTHORIZATION="Bearer s3cret")
    settings.OPSDASH_METRICS_TOKEN = ""
    assert client.get(URL, REMOTE_ADDR="10.1.2.3", HTTP_AUTHORIZATION="Bearer s3cret").status_code == 401
    assert client.post(URL).status_code == 405


def test_allowed_addresses_and_networks_need_no_login(scanned, client, settings):
    assert _samples(client, REMOTE_ADDR="127.0.0.1")
    assert _samples(client, REMOTE_ADDR="::1")
    settings.OPSDASH_METRICS_ALLOW = [ipaddress.ip_network("10.1.0.0/16")]
    assert _samples(client, REMOTE_ADDR="10.1.2.3")
    assert client.get(URL, REMOTE_ADDR="10.2.0.1").status_code == 403
    assert client.get(URL, REMOTE_ADDR="127.0.0.1").status_code == 403


def test_a_request_through_a_proxy_needs_the_token(scanned, client, settings):
    settings.OPSDASH_METRICS_TOKEN = "s3cret"
    for header in ("HTTP_X_FORWARDED_FOR", "HTTP_FORWARDED", "HTTP_X_REAL_IP"):
        assert client.get(URL, REMOTE_ADDR="127.0.0.1", **{header: "203.0.113.9"}).status_code == 403
    assert _samples(
        client, REMOTE_ADDR="127.0.0.1", HTTP_X_FORWARDED_FOR="203.0.113.9", HTTP_AUTHORIZATION="Bearer s3cret"
    )


def test_allowed_networks_setting(monkeypatch):
    from django.core.exceptions import ImproperlyConfigured

    from opsdash.settings import env_networks

    monkeypatch.setenv("OPSDASH_METRICS_ALLOW", "10.0.0.0/8, 192.0.2.7,fd00::/8")
    assert [str(n) for n in env_networks("OPSDASH_METRICS_ALLOW", [])] == ["10.0.0.0/8", "192.0.2.7/32", "fd00::/8"]
    monkeypatch.setenv("OPSDASH_METRICS_ALLOW", "none")
    assert env_networks("OPSDASH_METRICS_ALLOW", ["127.0.0.1"]) == []
    monkeypatch.setenv("OPSDASH_METRICS_ALLOW", "10.0.0.x")
    with pytest.raises(ImproperlyConfigured):
        env_networks("OPSDASH_METRICS_ALLOW", [])
