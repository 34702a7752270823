from __future__ import annotations

import pytest
from django.urls import reverse
from prometheus_client.parser import text_string_to_metric_families

from opsdash.services.scan import record_pass, scan_root

pytestmark = pytest.mark.django_db


@pytest.fixture
def scanned(store, add_events):
    add_events(store.module("dar", "pos"))
    kds = store.module("dar", "kds")
    add_events(kds)
    text = kds.meta_path.read_text()
    kds.meta_path.write_text(text + text[-30:])
    (kds.live_dir / "events.meta.json.corrupted.1761567827663.bak").write_text("{")
    record_pass(scan_root())


def _samples(client, **headers) -> dict:
    response = client.get(reverse("opsdash:metrics"), **headers)
    assert response.status_code == 200, response.content
    assert response["Content-Type"].startswith("text/plain")
    out = {}
    for family in text_string_to_metric_families(response.content.decode()):
        for s in family.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


def test_metrics_name_and_count_what_the_database_holds(scanned, client):
    m = _samples(client)
    assert m[("opsdash_modules", (("branch", "dar"), ("host", "testhost"), ("status", "healthy")))] == 1
    assert m[("opsdash_modules", (("branch", "dar"), ("host", "testhost"), ("status", "critical")))] == 1
    assert m[("opsdash_findings", (("code", "meta_corrupt"), ("host", "testhost"), ("severity", "critical")))] == 1
    assert m[("opsdash_incidents_opened_total", (("source", "scan"),))] == 1
    assert m[("opsdash_incidents_opened_total", (("source", "store-server"),))] == 1
    assert m[("opsdash_incidents_open", (("host", "testhost"),))] == 1
    assert m[("opsdash_backups", (("host", "testhost"), ("state", "live")))] == 1
    assert 0 <= m[("opsdash_host_last_scan_age_seconds", (("host", "testhost"),))] < 60


def test_metrics_need_a_token_or_an_allowed_address(scanned, client, settings):
    settings.OPSDASH_METRICS_TOKEN = "s3cret"
    assert client.get(reverse("opsdash:metrics"), REMOTE_ADDR="10.1.2.3").status_code == 403
    assert client.get(reverse("opsdash:metrics"), REMOTE_ADDR="10.1.2.3", HTTP_AUTHORIZATION="Bearer nope").status_code == 401
    assert _samples(client, REMOTE_ADDR="10.1.2.3", HTTP_AUTHORIZATION="Bearer s3cret")
    settings.OPSDASH_METRICS_TOKEN = ""
    assert client.get(reverse("opsdash:metrics"), REMOTE_ADDR="10.1.2.3", HTTP_AUTHORIZATION="Bearer s3cret").status_code == 401


def test_job_counts_and_durations(scanned, client):
    from datetime import timedelta

    from django.utils import timezone

    from opsdash.models import Job

    t = timezone.now()
    Job.objects.create(kind="rebuild", host="testhost", branch="dar", module="kds", requested_by="op",
                       status="succeeded", started_at=t, finished_at=t + timedelta(seconds=3))
    m = _samples(client)
    assert m[("opsdash_jobs", (("kind", "rebuild"), ("status", "succeeded")))] == 1
    assert m[("opsdash_job_duration_seconds_count", (("kind", "rebuild"),))] == 1
    assert m[("opsdash_job_duration_seconds_sum", (("kind", "rebuild"),))] == 3
