"""Operator actions end to end on real files, through the real database queue and worker."""

from __future__ import annotations

import hashlib
import json
import os
import time
from datetime import timedelta

import orjson
import pytest
from django.urls import reverse
from django.utils import timezone

from eventstore import layout
from eventstore.demo import write_demo_root
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
    size = broken.log_path.stat().st_size
    assert job["progress_info"] == {"unit": "bytes", "done": size, "total": size} and job["progress_text"].endswith(
        "of the log read"
    )
    module_json = operator_client.get(reverse("opsdash:api_module_detail", args=["testhost", "dar", "pos"])).json()
    assert set(module_json["actions"]) == {"rebuild", "verify", "accept_log", "archive_backups", "clean_temp"}


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
    url = reverse("opsdash:branch_bulk_rebuild", args=["testhost", "dar"])
    before = broken.meta_path.read_bytes()
    refused = operator_client.post(url, {"confirm": "not-dar"}, follow=True)
    assert "Type the branch name “dar” to confirm; nothing was done." in refused.content.decode()
    assert not Job.objects.exists() and broken.meta_path.read_bytes() == before
    operator_client.post(url, {"confirm": "dar"})
    _run_queue()
    job = Job.objects.get()
    assert job.status == "succeeded" and "1 module(s) rebuilt" in job.result["summary"]


def test_a_job_whose_worker_stopped_is_shown_as_failed(broken):
    job = Job.objects.create(
        kind="rebuild",
        host="testhost",
        branch="dar",
        module="pos",
        requested_by="x",
        status="running",
        heartbeat=timezone.now() - timedelta(hours=1),
    )
    assert fail_stale_jobs() == 1
    job.refresh_from_db()
    assert job.status == "failed" and "interrupted" in job.error


def test_the_overview_offers_a_rebuild_on_critical_rows_and_bulk_forms_per_branch(
    broken, operator_client, manager_client
):
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


def test_rebuilding_the_corrupt_demo_module_fixes_total_events_and_keeps_last_ack_id(data_root, operator_client):
    write_demo_root(data_root, events_per_module=40)
    meta_path = data_root / "dar/modules/pos/live/events.meta.json"
    text = meta_path.read_text()
    # The race the Node server loses: the meta behind the log (lost updates) and torn by a longer write.
    first, end = json.JSONDecoder().raw_decode(text)
    log_events = first["totalEvents"]
    first.update(totalEvents=log_events - 3, lastAckId="evt-acked-by-the-pos-client")
    meta_path.write_text(json.dumps(first, indent=2, ensure_ascii=False) + text[end:])
    scan_root()
    assert ModuleState.objects.get(branch="dar", module="pos").status == "critical"
    operator_client.post(reverse("opsdash:module_rebuild", args=["testhost", "dar", "pos"]))
    _run_queue()
    job = Job.objects.get()
    assert job.status == "succeeded", job.error
    assert (data_root / "dar/modules/pos/live" / job.result["backup"]).exists()
    diff = {row["key"]: row for row in job.result["diff"]}
    assert "lastAckId" not in diff and job.result["sources"]["lastAckId"] == "prefix"
    assert (diff["totalEvents"]["old"], diff["totalEvents"]["new"]) == (log_events - 3, log_events)
    assert json.loads(meta_path.read_text())["lastAckId"] == "evt-acked-by-the-pos-client"
    state = ModuleState.objects.get(branch="dar", module="pos")
    assert state.status == "healthy"
    incident = state.incidents.get(source="scan")
    assert (incident.ended_how, incident.ended_by) == ("rebuilt", "operator")
    page = operator_client.get(state.get_absolute_url(), {"job": job.pk}).content.decode()
    assert "What the rebuild changed" in page and "<code>totalEvents</code>" in page


def test_a_plain_form_post_lands_on_the_module_page_with_its_job(broken, operator_client):
    response = operator_client.post(_url("verify"))
    job = Job.objects.get()
    assert response.status_code == 302 and response.url == f"/modules/testhost/dar/pos/?job={job.pk}#job-area"
    page = operator_client.get(response.url).content.decode()
    assert f'id="job-{job.pk}"' in page and 'hx-trigger="every 1s"' in page and "<progress" in page


def test_a_busy_module_answers_htmx_with_a_message_and_the_page_with_an_error(broken, operator_client):
    operator_client.post(_url("rebuild"))
    busy = operator_client.post(_url("verify"), headers={"HX-Request": "true"})
    assert busy.status_code == 409 and "rebuild meta on dar/pos requested by operator" in busy.content.decode()
    page = operator_client.post(_url("verify"), follow=True).content.decode()
    assert "is still queued" in page and Job.objects.count() == 1


def test_the_job_fragment_swaps_the_module_badge_when_the_job_ends(broken, operator_client):
    operator_client.post(_url("rebuild"))
    job = Job.objects.get()
    polling = operator_client.get(job.get_absolute_url(), headers={"HX-Request": "true"}).content.decode()
    assert 'hx-trigger="every 1s"' in polling and "hx-swap-oob" not in polling
    _run_queue()
    done = operator_client.get(job.get_absolute_url(), headers={"HX-Request": "true"}).content.decode()
    assert "every 1s" not in done and 'id="module-status" hx-swap-oob="true" class="badge status-healthy"' in done


def test_verify_rechecks_the_module_and_records_the_result(broken, operator_client):
    broken.meta_path.write_text(broken.meta_path.read_text()[:-40])  # fixed by hand: now just the first document
    operator_client.post(_url("verify"), REMOTE_ADDR="10.1.2.3")
    _run_queue()
    job = Job.objects.get()
    assert (
        job.status == "succeeded" and job.result["status"] == ModuleState.objects.get(module="pos").status != "critical"
    )
    entry = AuditEntry.objects.get(action="verify")
    assert (entry.actor, entry.ip, entry.outcome, entry.params) == ("operator", "10.1.2.3", "ok", {"job": job.pk})
    assert Incident.objects.get(source="scan").ended_by == "verify by operator"


def test_clean_temp_removes_only_old_temp_files_and_records_each(broken, operator_client, settings):
    old = broken.live_dir / layout.temp_name(1_700_000_000_000, "old1")
    young = broken.live_dir / layout.temp_name(int(time.time() * 1000), "new1")
    for path in (old, young):
        path.write_text("{")
    os.utime(old, (time.time() - settings.OPSDASH_TEMP_GRACE_SECONDS - 60,) * 2)
    operator_client.post(_url("clean_temp"))
    _run_queue()
    job = Job.objects.get()
    assert job.status == "succeeded" and not old.exists() and young.exists()
    assert [r["name"] for r in job.result["removed"]] == [old.name]
    entry = AuditEntry.objects.get(action="clean_temp")
    assert entry.outcome == "ok" and entry.params["files"] == [old.name] and old.name in entry.detail


def test_archiving_records_the_archive_path_and_audits_each_file(broken, operator_client, settings):
    name = layout.meta_backup_name(1_700_000_000_000)
    (broken.live_dir / name).write_text("{}")
    scan_root()
    operator_client.post(_url("archive_backups"))
    _run_queue()
    backup = Backup.objects.get(name=name)
    assert backup.state == "archived" and backup.archive_path == str(
        settings.OPSDASH_ARCHIVE_ROOT / "dar" / "pos" / name
    )
    assert (settings.OPSDASH_ARCHIVE_ROOT / "dar" / "pos" / name).read_text() == "{}"
    entry = AuditEntry.objects.get(action="archive_backups")
    assert entry.outcome == "ok" and entry.params["files"] == [name]


def test_bulk_archive_moves_every_backup_of_the_branch(broken, store, operator_client, settings):
    other = store.module("dar", "kds")
    other.append_event({"table": "t", "record": {"id": "1"}})
    for module in (broken, other):
        (module.live_dir / layout.meta_backup_name(1_700_000_000_000)).write_text("{}")
    scan_root()
    operator_client.post(reverse("opsdash:branch_bulk_archive", args=["testhost", "dar"]), {"confirm": "dar"})
    _run_queue()
    job = Job.objects.get()
    assert job.status == "succeeded" and job.result["summary"] == "2 module(s) archived, 0 failed"
    assert set(Backup.objects.values_list("state", flat=True)) == {"archived"}
    assert sorted(AuditEntry.objects.filter(action="archive_backups").values_list("module", flat=True)) == [
        "kds",
        "pos",
    ]
    name = layout.meta_backup_name(1_700_000_000_000)
    assert [m["archived"] for m in job.result["modules"]] == [[name], [name]]
    page = operator_client.get(job.get_absolute_url(), HTTP_ACCEPT_LANGUAGE="ar").content.decode()
    assert f"<bdi>kds</bdi>: أُرشفت 1 نسخة احتياطية: {name}</li>" in page


def test_an_archived_backup_is_previewed_from_the_archive_or_from_the_database(broken, operator_client, settings):
    operator_client.post(_url("rebuild"))
    _run_queue()
    name = Job.objects.get().result["backup"]
    operator_client.post(_url("archive_backups"))
    _run_queue()
    backup = Backup.objects.get(name=name)
    assert backup.state == Backup.State.ARCHIVED and not (broken.live_dir / name).exists()
    page = operator_client.get(backup.get_absolute_url()).content.decode()
    assert "Not valid JSON" in page and "<mark" in page and "not in the live folder" not in page
    # The web UI on another host: the database's verified copy.
    settings.OPSDASH_HOST_NAME = "the-web-host"
    settings.OPSDASH_ARCHIVE_ROOT = "/nonexistent"
    page = operator_client.get(backup.get_absolute_url()).content.decode()
    assert "Not valid JSON" in page and "<mark" in page
    # Neither copy at hand: a clear sentence, no traceback.
    backup.blob.delete()
    response = operator_client.get(backup.get_absolute_url())
    assert response.status_code == 200 and "the archive is on host" in response.content.decode()
