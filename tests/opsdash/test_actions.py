"""Operator actions end to end on real files, through the real database queue and worker."""

from __future__ import annotations

import hashlib
from datetime import timedelta

import orjson
import pytest
from django.test import Client
from django.urls import reverse
from django.utils import timezone

from opsdash.models import AuditEntry, Backup, Incident, Job, ModuleState
from opsdash.services.jobs import Busy, fail_stale_jobs, request_job
from opsdash.services.scan import scan_root
from opsdash.services.worker import make_worker

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture(autouse=True)
def _archive(settings, tmp_path):
    settings.OPSDASH_ARCHIVE_ROOT = tmp_path / "archive"


@pytest.fixture
def broken(store, add_events):
    """dar/pos with a corrupt meta (a document plus the tail of a longer one) and lastAckId set."""
    module = store.module("dar", "pos")
    events = add_events(module, count=5)
    module.update_meta({"lastAckId": events[-1]["id"]})
    text = module.meta_path.read_text()
    module.meta_path.write_text(text + text[-40:])
    scan_root()
    return module


def _run_queue() -> None:
    make_worker("testhost", batch=True).run()


def _url(kind: str, api: bool = False) -> str:
    return reverse(f"opsdash:api_module_{kind}" if api else f"opsdash:module_{kind}", args=["testhost", "dar", "pos"])


def _files(module) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(module.live_dir.iterdir()) if p.name != "events.lock"}


def test_an_operator_rebuilds_a_corrupt_module_in_two_clicks(broken, operator_client):
    ack = orjson.loads(broken.meta_path.read_bytes()[: broken.meta_path.read_bytes().rindex(b"}") - 39])["lastAckId"]
    response = operator_client.post(_url("rebuild"), HTTP_HX_REQUEST="true")
    assert response.status_code == 202 and b"<progress" in response.content
    _run_queue()
    job = Job.objects.get()
    assert job.status == "succeeded" and job.progress == 1.0, job.error
    assert job.result["backup"] in {p.name for p in broken.live_dir.iterdir()}
    diff = {row["key"]: row for row in job.result["diff"]}
    assert "lastAckId" not in diff  # salvaged from the damaged file's valid prefix
    assert job.result["sources"]["lastAckId"] == "prefix"
    assert orjson.loads(broken.meta_path.read_bytes())["lastAckId"] == ack
    state = ModuleState.objects.get(module="pos")
    assert state.status == "healthy" or "meta_corrupt" not in state.codes
    incident = Incident.objects.get(module=state, source="scan")
    assert (incident.ended_how, incident.ended_by) == ("rebuilt", "operator")
    entry = AuditEntry.objects.get(action="rebuild")
    assert entry.actor == "operator" and entry.outcome == "ok"
    assert entry.meta_sha256_after == hashlib.sha256(broken.meta_path.read_bytes()).hexdigest()
    assert entry.meta_sha256_before and entry.meta_sha256_before != entry.meta_sha256_after
    page = operator_client.get(job.get_absolute_url())
    assert b"What the rebuild changed" in page.content or b"equals the old one" in page.content


@pytest.mark.parametrize("kind", ["rebuild", "verify", "archive_backups", "clean_temp"])
def test_managers_and_auditors_get_403_and_nothing_changes(broken, kind, manager_client, auditor_client):
    before = _files(broken)
    for client in (manager_client, auditor_client):
        assert client.post(_url(kind)).status_code == 403
        assert client.post(_url(kind, api=True)).status_code == 403
    _run_queue()
    assert _files(broken) == before and not Job.objects.exists()


def test_anonymous_visitors_are_sent_to_login_or_get_401(broken, client):
    assert client.post(_url("rebuild")).status_code == 302
    assert client.post(_url("rebuild", api=True)).status_code == 401


def test_get_on_an_action_is_405_and_changes_nothing(broken, operator_client):
    before = _files(broken)
    assert operator_client.get(_url("rebuild")).status_code == 405
    assert _files(broken) == before and not Job.objects.exists()


def test_a_post_without_csrf_token_is_refused(broken, demo_users):
    client = Client(enforce_csrf_checks=True)
    client.login(username="operator", password="demo-password-for-tests")
    assert client.post(_url("rebuild")).status_code == 403
    assert not Job.objects.exists()


def test_a_second_action_on_the_same_module_waits_for_the_first(broken, operator_client):
    first = operator_client.post(_url("rebuild", api=True))
    assert first.status_code == 202
    second = operator_client.post(_url("verify", api=True))
    assert second.status_code == 409 and "still queued" in second.json()["error"]
    with pytest.raises(Busy):
        request_job("rebuild", "testhost", "dar", "pos", "someone", None)
    _run_queue()
    assert operator_client.post(_url("verify", api=True)).status_code == 202


def test_the_api_answers_202_with_a_job_that_can_be_followed(broken, operator_client):
    body = operator_client.post(_url("rebuild", api=True)).json()
    assert set(body["job"]) == {"id", "url", "status"} and body["job"]["status"] == "queued"
    _run_queue()
    job = operator_client.get(body["job"]["url"]).json()
    assert job["status"] == "succeeded" and job["progress"] == 1.0 and "diff" in job["result"]
    module_json = operator_client.get(reverse("opsdash:api_module_detail", args=["testhost", "dar", "pos"])).json()
    assert set(module_json["actions"]) == {"rebuild", "verify", "archive_backups", "clean_temp"}


def test_archiving_moves_backups_after_a_verified_copy(broken, operator_client):
    operator_client.post(_url("rebuild"))
    _run_queue()
    name = Job.objects.get().result["backup"]
    data = (broken.live_dir / name).read_bytes()
    operator_client.post(_url("archive_backups"))
    _run_queue()
    job = Job.objects.get(kind="archive_backups")
    assert job.status == "succeeded", job.error
    assert not (broken.live_dir / name).exists()
    assert Backup.objects.get(name=name).state == "archived"
    archived = [a for a in job.result["archived"] if a["name"] == name][0]
    assert hashlib.sha256(data).hexdigest() == archived["sha256"]
    download = operator_client.get(Backup.objects.get(name=name).download_url())
    assert b"".join(download.streaming_content) == data


def test_a_failed_action_is_a_failed_job_with_one_line(broken, operator_client):
    import shutil

    shutil.rmtree(broken.live_dir.parent)  # the module's folder vanished after the scan
    operator_client.post(_url("rebuild"))
    _run_queue()
    job = Job.objects.get()
    assert job.status == "failed" and "no such module" in job.error and "\n" not in job.error
    assert AuditEntry.objects.get(action="rebuild").outcome == "failed"
    assert b"Failed: " in operator_client.get(job.get_absolute_url()).content


def test_bulk_actions_need_the_branch_name_typed(broken, operator_client):
    url = reverse("opsdash:branch_rebuild_critical", args=["testhost", "dar"])
    operator_client.post(url, {"confirm": "not-dar"})
    assert not Job.objects.exists()
    operator_client.post(url, {"confirm": "dar"})
    _run_queue()
    job = Job.objects.get()
    assert job.status == "succeeded" and "1 module(s) rebuilt" in job.result["summary"]


def test_a_job_whose_worker_stopped_is_shown_as_failed(broken):
    job = Job.objects.create(kind="rebuild", host="testhost", branch="dar", module="pos", requested_by="x",
                             status="running", heartbeat=timezone.now() - timedelta(hours=1))
    assert fail_stale_jobs() == 1
    job.refresh_from_db()
    assert job.status == "failed" and "interrupted" in job.error


def test_the_manager_sees_no_action_buttons(broken, manager_client, operator_client):
    url = reverse("opsdash:module_detail", args=["testhost", "dar", "pos"])
    assert b"Rebuild meta" not in manager_client.get(url).content
    assert b"Rebuild meta" in operator_client.get(url).content


def test_the_overview_offers_a_rebuild_on_critical_rows_and_bulk_forms_per_branch(broken, operator_client, manager_client):
    html = operator_client.get(reverse("opsdash:module_list"), {"branch": "dar"}).content.decode()
    assert "Yes, rebuild meta dar/pos" in html and "type the branch name to confirm" in html
    html = manager_client.get(reverse("opsdash:module_list"), {"branch": "dar"}).content.decode()
    assert "rebuild meta" not in html and "type the branch name" not in html


def test_modules_of_a_host_whose_scanner_stopped_show_as_stale(broken, manager_client, settings):
    from opsdash.models import ScanHost
    from opsdash.services.scan import record_pass

    record_pass(scan_root())
    assert ">stale<" not in manager_client.get(reverse("opsdash:module_list")).content.decode()
    ScanHost.objects.update(last_pass_at=timezone.now() - timedelta(seconds=settings.OPSDASH_STALE_SECONDS + 5))
    assert ">stale<" in manager_client.get(reverse("opsdash:module_list")).content.decode()


def test_an_archived_backup_downloads_from_any_host(broken, operator_client, settings):
    operator_client.post(_url("rebuild"))
    _run_queue()
    name = Job.objects.get().result["backup"]
    data = (broken.live_dir / name).read_bytes()
    operator_client.post(_url("archive_backups"))
    _run_queue()
    backup = Backup.objects.get(name=name)
    assert bytes(backup.blob.data) == data
    settings.OPSDASH_HOST_NAME = "the-web-host"  # the web UI on another machine
    settings.OPSDASH_ARCHIVE_ROOT = "/nonexistent"
    download = operator_client.get(backup.download_url())
    assert download.status_code == 200 and b"".join(download.streaming_content) == data
