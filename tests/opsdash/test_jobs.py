"""Jobs: one at a time per module and per branch, progress, heartbeats, stale jobs, the workers."""

from __future__ import annotations

import dataclasses
import os
import time
from datetime import timedelta

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django.utils import timezone, translation

from opsdash.actions import ACTIONS
from opsdash.models import AuditEntry, Job, ModuleState
from opsdash.services import jobs
from opsdash.services.jobs import Busy, execute, fail_stale_jobs, request_job
from opsdash.services.scan import scan_root
from opsdash.services.worker import make_worker, start_embedded_worker, stop_embedded_worker
from opsdash.templatetags.opsdash_tags import bulk_result, job_progress

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture(autouse=True)
def _archive(settings, tmp_path):
    settings.OPSDASH_ARCHIVE_ROOT = tmp_path / "archive"


@pytest.fixture
def branch(store, add_events):
    """dar/pos and dar/kds, both with a few events, scanned."""
    for name in ("pos", "kds"):
        add_events(store.module("dar", name), count=3)
    scan_root()
    return store


def _run_queue() -> None:
    make_worker("testhost", batch=True).run()


def _running(job: Job, heartbeat_age: float = 0.0) -> Job:
    Job.objects.filter(pk=job.pk).update(
        status="running", started_at=timezone.now(), heartbeat=timezone.now() - timedelta(seconds=heartbeat_age)
    )
    job.refresh_from_db()
    return job


def test_a_second_request_while_the_first_runs_names_the_first(branch):
    first = _running(request_job("rebuild", "testhost", "dar", "pos", "operator", None))
    with pytest.raises(Busy) as refused:
        request_job("rebuild", "testhost", "dar", "pos", "someone-else", None)
    message = str(refused.value)
    assert "rebuild meta on dar/pos started by operator at " in message and message.endswith("is still running")
    assert Job.objects.count() == 1 and first.status == "running"
    request_job("verify", "testhost", "dar", "kds", "someone-else", None)  # another module is free


def test_a_bulk_job_and_the_module_jobs_of_its_branch_exclude_each_other(branch):
    module_job = request_job("verify", "testhost", "dar", "pos", "operator", None)
    with pytest.raises(Busy, match="verify now on dar/pos"):
        request_job("bulk_archive", "testhost", "dar", "", "operator", None)
    _run_queue()
    module_job.refresh_from_db()
    assert module_job.status == "succeeded"
    bulk = request_job("bulk_rebuild", "testhost", "dar", "", "operator", None)
    with pytest.raises(Busy, match="on the whole branch dar"):
        request_job("rebuild", "testhost", "dar", "kds", "operator", None)
    with pytest.raises(Busy):
        request_job("bulk_archive", "testhost", "dar", "", "operator", None)
    request_job("verify", "testhost", "other-branch", "pos", "operator", None)  # another branch is free
    assert list(Job.objects.filter(status="queued").values_list("pk", flat=True).order_by("pk"))[0] == bulk.pk


def test_a_stale_job_is_failed_and_no_longer_blocks_its_module(branch, settings):
    stale = _running(
        request_job("rebuild", "testhost", "dar", "pos", "operator", None),
        heartbeat_age=settings.OPSDASH_JOB_STALE_SECONDS + 1,
    )
    fresh = request_job("verify", "testhost", "dar", "pos", "operator", None)
    stale.refresh_from_db()
    assert (stale.status, stale.error) == ("failed", "interrupted: the worker stopped") and stale.finished_at
    assert fresh.status == "queued"


def test_a_running_job_with_a_recent_heartbeat_is_left_alone(branch, settings):
    job = _running(
        request_job("rebuild", "testhost", "dar", "pos", "operator", None),
        heartbeat_age=settings.OPSDASH_JOB_STALE_SECONDS - 5,
    )
    assert fail_stale_jobs() == 0
    job.refresh_from_db()
    assert job.status == "running"


def test_the_job_page_and_the_api_show_an_interrupted_job_as_failed(branch, settings, operator_client):
    job = _running(request_job("rebuild", "testhost", "dar", "pos", "operator", None), heartbeat_age=3600)
    assert operator_client.get(job.api_url()).json()["status"] == "failed"
    assert b"interrupted: the worker stopped" in operator_client.get(job.get_absolute_url()).content


def test_a_long_step_keeps_its_heartbeat_fresh(branch, settings, monkeypatch):
    settings.OPSDASH_JOB_STALE_SECONDS = 0.4  # a beat every 0.1 s
    seen = {}

    def slow_verify(job, progress, audit):
        time.sleep(1.0)  # no progress callback for longer than the stale age
        seen["failed_meanwhile"] = fail_stale_jobs()
        return {"summary": "checked"}

    monkeypatch.setitem(ACTIONS, "verify", dataclasses.replace(ACTIONS["verify"], runner=slow_verify))
    job = request_job("verify", "testhost", "dar", "pos", "operator", None)
    execute(job.pk)
    job.refresh_from_db()
    assert seen["failed_meanwhile"] == 0 and job.status == "succeeded"


def test_a_task_delivered_twice_runs_the_action_once(branch):
    job = request_job("verify", "testhost", "dar", "pos", "operator", None)
    assert execute(job.pk)["status"] == "succeeded"
    assert execute(job.pk) == {"skipped": "succeeded"}
    assert AuditEntry.objects.filter(action="verify").count() == 1


def test_progress_moves_while_a_multi_megabyte_log_is_read(store, add_events, monkeypatch):
    module = store.module("dar", "pos")
    add_events(module, count=1)
    line = module.log_path.read_bytes()
    event = line.decode().rstrip("\n")
    with open(module.log_path, "ab") as fh:  # ~6 MB of Node-shaped lines, written the fast way
        for i in range(2, 24_000):
            fh.write(event.replace('"sequence":1', f'"sequence":{i}').replace("ord-0", f"ord-{i}").encode() + b"\n")
    assert os.path.getsize(module.log_path) > 5_000_000
    scan_root()
    recorded: list[float] = []
    shown: list[dict] = []

    class Recording(jobs._Progress):
        def __init__(self, job):
            super().__init__(job, every=0)

        def __call__(self, done, total, text="", info=None):
            super().__call__(done, total, text, info)
            row = Job.objects.get(pk=self.job.pk)
            recorded.append(row.progress)
            shown.append(row.progress_info)

    monkeypatch.setattr(jobs, "_Progress", Recording)
    job = request_job("rebuild", "testhost", "dar", "pos", "operator", None)
    _run_queue()
    job.refresh_from_db()
    assert job.status == "succeeded", job.error
    assert len(set(recorded)) >= 4 and recorded == sorted(recorded) and recorded[-1] == 1.0
    assert "MB of" in job.progress_text
    assert job.result["events_read"] == 23_999
    # The progress as data, which a page words in its own language.
    assert all(i["unit"] == "bytes" and 0 <= i["done"] <= i["total"] == shown[-1]["total"] for i in shown)
    assert shown[-1]["done"] == shown[-1]["total"] == os.path.getsize(module.log_path)
    job.status = "running"
    total_mb = f"{shown[-1]['total'] / 1e6:.1f}"
    with translation.override("en"):
        assert job_progress(job) == f"{total_mb} MB of {total_mb} MB of the log read"
    with translation.override("ar"):
        ar_mb = total_mb.replace(".", ",")  # Arabic writes a decimal comma
        assert job_progress(job) == f"قُرئ {ar_mb} ميغابايت من {ar_mb} ميغابايت من السجل"


def test_progress_writes_are_throttled(branch):
    job = request_job("rebuild", "testhost", "dar", "pos", "operator", None)
    progress = jobs._Progress(job)
    with CaptureQueriesContext(connection) as queries:
        for done in range(1000):
            progress(done, 1000)
    assert len(queries) <= 2


def test_a_bulk_job_goes_past_a_failing_module_and_keeps_what_it_did(store, add_events):
    import shutil

    for name in ("kds", "pos"):
        module = store.module("dar", name)
        add_events(module, count=3)
        module.meta_path.write_text("{ broken")
    scan_root()
    assert set(ModuleState.objects.values_list("status", flat=True)) == {"critical"}
    shutil.rmtree(store.module("dar", "kds").live_dir.parent)  # gone after the scan
    job = request_job("bulk_rebuild", "testhost", "dar", "", "operator", "10.0.0.7")
    _run_queue()
    job.refresh_from_db()
    assert job.status == "failed" and job.error.startswith("1 module(s) rebuilt, 1 failed: kds: ")
    assert [m["module"] for m in job.result["modules"]] == ["pos"] and job.result["failed"][0]["module"] == "kds"
    assert ModuleState.objects.get(module="pos").status == "healthy"
    per_module = {e.module: e for e in AuditEntry.objects.filter(action="rebuild")}
    assert per_module["pos"].outcome == "ok" and per_module["pos"].params == {"bulk_job": job.pk}
    assert per_module["pos"].meta_sha256_before and per_module["pos"].meta_sha256_after
    assert per_module["kds"].outcome == "failed" and per_module["kds"].ip == "10.0.0.7"
    whole = AuditEntry.objects.get(action="bulk_rebuild")
    assert (whole.module, whole.outcome, whole.actor) == ("", "failed", "operator")
    # Each module's outcome is kept as data too, and the page words it in its own language.
    [pos] = job.result["modules"]
    assert (pos["events_read"], pos["status"]) == (3, "healthy") and pos["backup"].startswith("events.meta.json.")
    assert job.progress_info == {"unit": "modules", "done": 2, "total": 2}
    with translation.override("en"):
        assert (
            bulk_result(job, pos)
            == f"rebuilt from 3 events; the old meta is backed up as {pos['backup']} · status now healthy"
        )
        assert job_progress(job) == "2 of 2 modules"
    with translation.override("ar"):
        assert (
            bulk_result(job, pos)
            == f"أُعيد البناء من 3 أحداث؛ حُفظت الميتا القديمة باسم {pos['backup']} · الحالة الآن سليم"
        )
        assert job_progress(job) == "2 من 2 وحدتين"
        job.progress_info = {"unit": "modules", "done": 1, "total": 12, "now": "pos"}
        assert job_progress(job) == "1 من 12 وحدة، الآن pos"
    assert bulk_result(job, {"module": "x", "result": "an older job's English line"}) == "an older job's English line"


def test_the_embedded_worker_fails_stale_jobs_at_start_and_runs_the_queue(branch, settings, operator_client):
    settings.OPSDASH_EMBEDDED_WORKER = True
    stale = _running(request_job("rebuild", "testhost", "dar", "kds", "operator", None), heartbeat_age=3600)
    body = operator_client.post(reverse("opsdash:api_module_verify", args=["testhost", "dar", "pos"])).json()
    thread = start_embedded_worker()
    try:
        assert thread is not None and thread.daemon and start_embedded_worker() is thread  # once per process
        deadline = time.monotonic() + 20
        while (status := operator_client.get(body["job"]["url"]).json()["status"]) in ("queued", "running"):
            assert time.monotonic() < deadline, "the embedded worker did not run the job"
            time.sleep(0.1)
    finally:
        stop_embedded_worker(timeout=10)
    assert status == "succeeded"
    stale.refresh_from_db()
    assert stale.status == "failed"


def test_the_embedded_worker_is_off_when_a_separate_worker_runs_the_queue(settings):
    settings.OPSDASH_EMBEDDED_WORKER = False
    assert start_embedded_worker() is None


def test_a_sqlite_database_url_runs_jobs_in_the_web_process_without_a_switch(tmp_path):
    import subprocess
    import sys

    code = "import django; django.setup(); from django.conf import settings; print(settings.OPSDASH_EMBEDDED_WORKER)"
    base = {k: v for k, v in os.environ.items() if not k.startswith(("OPSDASH_", "DJANGO_", "DATABASE_URL"))}
    base |= {"DJANGO_SETTINGS_MODULE": "opsdash.settings", "DJANGO_SECRET_KEY": "x" * 50}
    for url, expected in (
        (f"sqlite:///{tmp_path / 'elsewhere.sqlite3'}", "True"),
        ("postgres://u@127.0.0.1/x", "False"),
    ):
        out = subprocess.run(
            [sys.executable, "-c", code], env={**base, "DATABASE_URL": url}, capture_output=True, text=True, timeout=60
        )
        assert out.stdout.strip() == expected, (url, out.stderr)


def test_a_job_with_no_live_worker_for_its_host_says_what_to_start(branch, settings, operator_client):
    from opsdash.models import WorkerHeartbeat
    from opsdash.services.jobs import unattended_queues

    job = request_job("verify", "testhost", "dar", "pos", "operator", None)
    Job.objects.filter(pk=job.pk).update(
        created_at=timezone.now() - timedelta(seconds=settings.OPSDASH_JOB_STALE_SECONDS + 5)
    )
    page = operator_client.get(reverse("opsdash:job_detail", args=[job.pk])).content.decode()
    assert f'id="job-{job.pk}-unattended"' in page and "manage.py agent --host testhost" in page
    module_page = operator_client.get(
        reverse("opsdash:module_detail", kwargs={"host": "testhost", "branch": "dar", "module": "pos"})
    )
    assert f'id="job-{job.pk}-unattended"' in module_page.content.decode()  # the module page shows its job
    arabic = operator_client.get(
        reverse("opsdash:job_detail", args=[job.pk]), headers={"Accept-Language": "ar"}
    ).content.decode()
    assert "manage.py agent --host testhost" in arabic and "لا يوجد عامل" in arabic
    api = operator_client.get(reverse("opsdash:api_job_detail", args=[job.pk])).json()
    assert api["waiting_for_worker"] is True and api["worker_last_seen_at"] is None
    assert unattended_queues() == ["testhost"]
    health = operator_client.get("/healthz").json()
    assert health["unattended_queues"] == ["testhost"]
    WorkerHeartbeat.objects.create(host="testhost", last_seen_at=timezone.now(), worker_id="w")  # a worker came up
    assert (
        unattended_queues() == []
        and operator_client.get(reverse("opsdash:api_job_detail", args=[job.pk])).json()["waiting_for_worker"] is False
    )
    make_worker("testhost", batch=True).run()
    job.refresh_from_db()
    assert job.status == "succeeded"
    assert WorkerHeartbeat.objects.get().worker_id.startswith("testhost-")  # the worker stamped its heartbeat
