"""One agent per store host: its own modules, its own queue."""

from __future__ import annotations

import io
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from django.core.management import call_command

from opsdash.models import ModuleState, ScanHost
from opsdash.services.jobs import request_job

pytestmark = pytest.mark.django_db(transaction=True)
REPO = Path(__file__).resolve().parents[2]


@pytest.fixture
def two_hosts(tmp_path, add_events, settings):
    from eventstore import EventStore

    roots = {}
    for host in ("host-a", "host-b"):
        root = tmp_path / host
        root.mkdir()
        add_events(EventStore(root, fsync=False).module("dar", "pos"))
        roots[host] = root
    settings.OPSDASH_ARCHIVE_ROOT = tmp_path / "archive"
    return roots


def test_each_agent_records_its_own_modules_once(two_hosts, settings):
    for _ in range(2):
        for host, root in two_hosts.items():
            call_command("agent", "--once", "--host", host, "--data-root", str(root), stdout=io.StringIO())
    assert sorted(ModuleState.objects.values_list("host", "branch", "module")) == [
        ("host-a", "dar", "pos"),
        ("host-b", "dar", "pos"),
    ]
    assert sorted(ScanHost.objects.values_list("host", flat=True)) == ["host-a", "host-b"]


def test_a_job_for_host_b_runs_only_on_host_b(two_hosts, settings):
    for host, root in two_hosts.items():
        call_command("agent", "--once", "--host", host, "--data-root", str(root), stdout=io.StringIO())
    job = request_job("verify", "host-b", "dar", "pos", "operator", None)
    settings.OPSDASH_DATA_ROOT = two_hosts["host-a"]
    call_command("agent", "--once", "--host", "host-a", "--data-root", str(two_hosts["host-a"]), stdout=io.StringIO())
    job.refresh_from_db()
    assert job.status == "queued"
    settings.OPSDASH_DATA_ROOT = two_hosts["host-b"]
    call_command("agent", "--once", "--host", "host-b", "--data-root", str(two_hosts["host-b"]), stdout=io.StringIO())
    job.refresh_from_db()
    assert job.status == "succeeded", job.error


def test_the_agent_stops_cleanly_on_sigterm(tmp_path, two_hosts):
    env = {
        **os.environ,
        "DATABASE_URL": f"sqlite:///{tmp_path / 'agent.sqlite3'}",
        "DJANGO_SECRET_KEY": "agent-test-secret-key-0123456789abcdefghijklmnop",
        "OPSDASH_DATA_ROOT": str(two_hosts["host-a"]),
        "OPSDASH_HOST_NAME": "host-a",
    }
    subprocess.run([sys.executable, "manage.py", "migrate", "-v0"], cwd=REPO, env=env, check=True)
    proc = subprocess.Popen(
        [sys.executable, "manage.py", "agent", "--interval", "0.2"],
        cwd=REPO,
        env=env,
        stdout=subprocess.PIPE,
        text=True,
    )
    deadline = time.time() + 20
    lines = []
    while time.time() < deadline:
        line = proc.stdout.readline()
        lines.append(line)
        if "modules under" in line:
            break
    proc.send_signal(signal.SIGTERM)
    out, _ = proc.communicate(timeout=30)
    assert proc.returncode == 0, "".join(lines) + out
    assert "agent host-a: stopped" in out


@pytest.mark.skipif(
    not os.environ.get("DATABASE_URL", "").startswith("postgres"), reason="several agent processes share PostgreSQL"
)
def test_two_agent_processes_share_one_postgresql(two_hosts, tmp_path, settings, manager_client):
    from django.db import connection
    from django.urls import reverse

    from eventstore import EventStore

    b = EventStore(two_hosts["host-b"]).module("dar", "pos")
    b.meta_path.write_text("{ broken")
    db = connection.settings_dict
    url = f"postgres://{db['USER'] or 'postgres'}@{db['HOST'] or '127.0.0.1'}:{db['PORT'] or 5432}/{db['NAME']}"
    procs = {}
    for host, root in two_hosts.items():
        env = {
            **os.environ,
            "DATABASE_URL": url,
            "OPSDASH_HOST_NAME": host,
            "OPSDASH_DATA_ROOT": str(root),
            "OPSDASH_ARCHIVE_ROOT": str(tmp_path / "archive" / host),
        }
        procs[host] = subprocess.Popen(
            [sys.executable, "manage.py", "agent", "--interval", "0.3"],
            cwd=REPO,
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
    try:
        deadline = time.time() + 30
        while ScanHost.objects.count() < 2 and time.time() < deadline:
            time.sleep(0.2)
        assert sorted(ModuleState.objects.values_list("host", flat=True)) == ["host-a", "host-b"]
        settings.OPSDASH_HOST_NAME = "web"  # the UI runs elsewhere
        job = request_job("rebuild", "host-b", "dar", "pos", "operator", None)
        while time.time() < deadline:
            job.refresh_from_db()
            if not job.active:
                break
            time.sleep(0.2)
        assert job.status == "succeeded", job.error
        assert list(two_hosts["host-b"].glob("dar/modules/pos/live/events.meta.json.corrupted.*.bak"))  # ran on B
        assert not list(two_hosts["host-a"].glob("dar/modules/pos/live/*.bak"))
        procs["host-a"].send_signal(signal.SIGTERM)
        procs["host-a"].wait(timeout=30)
        settings.OPSDASH_STALE_SECONDS = 2
        time.sleep(2.5)
        rows = manager_client.get(reverse("opsdash:module_list")).context["rows"]
        assert {r.host: r.stale for r in rows} == {"host-a": True, "host-b": False}
    finally:
        for p in procs.values():
            p.send_signal(signal.SIGTERM)
            p.wait(timeout=30)


def test_the_agents_host_and_data_root_reach_the_jobs_it_runs(two_hosts, settings):
    """No OPSDASH_DATA_ROOT and another host name in the settings (as in the README's
    several-servers flow): only --host and --data-root say where the files are."""
    from eventstore import EventStore

    settings.OPSDASH_DATA_ROOT = None
    settings.OPSDASH_HOST_NAME = "web"
    for host, root in two_hosts.items():
        call_command("agent", "--once", "--host", host, "--data-root", str(root), stdout=io.StringIO())
    EventStore(two_hosts["host-b"]).module("dar", "pos").meta_path.write_text("{ broken")
    job = request_job("rebuild", "host-b", "dar", "pos", "operator", None)
    call_command("agent", "--once", "--host", "host-b", "--data-root", str(two_hosts["host-b"]), stdout=io.StringIO())
    job.refresh_from_db()
    assert job.status == "succeeded", job.error
    assert list(two_hosts["host-b"].glob("dar/modules/pos/live/events.meta.json.corrupted.*.bak"))
    assert not list(two_hosts["host-a"].glob("dar/modules/pos/live/*.bak"))
    assert ModuleState.objects.get(host="host-b").status == "healthy"
    assert ScanHost.objects.get(host="host-b").data_root == str(two_hosts["host-b"])


def test_a_failed_job_is_a_failed_task_in_the_workers_log(two_hosts, settings, caplog):
    import logging
    import shutil

    from django_tasks_db.models import DBTaskResult

    call_command("agent", "--once", "--host", "host-b", "--data-root", str(two_hosts["host-b"]), stdout=io.StringIO())
    job = request_job("rebuild", "host-b", "dar", "pos", "operator", None)
    shutil.rmtree(two_hosts["host-b"] / "dar")  # the module is gone before its job runs
    with caplog.at_level(logging.INFO, "django.tasks"):
        call_command(
            "agent", "--once", "--host", "host-b", "--data-root", str(two_hosts["host-b"]), stdout=io.StringIO()
        )
    job.refresh_from_db()
    assert job.status == "failed" and "no such module" in job.error
    assert DBTaskResult.objects.get(id=job.task_id).status == "FAILED"
    finished = [
        r.getMessage() for r in caplog.records if "state=" in r.getMessage() and "RUNNING" not in r.getMessage()
    ]
    assert finished and all("state=FAILED" in m for m in finished), finished


def test_an_interval_longer_than_the_stale_age_is_refused(settings):
    from django.core.management.base import CommandError

    settings.OPSDASH_STALE_SECONDS = 180
    with pytest.raises(CommandError, match=r"interval \(181 s\) is longer than OPSDASH_STALE_SECONDS \(180 s\)"):
        call_command("agent", "--interval", "181")
    with pytest.raises(CommandError, match="OPSDASH_STALE_SECONDS"):
        call_command("scan", "--loop", "181")


@pytest.mark.parametrize(
    ("env", "expected"),
    [
        ({}, "60 180"),
        ({"OPSDASH_SCAN_INTERVAL": "5"}, "5 15"),
        ({"OPSDASH_SCAN_INTERVAL": "5", "OPSDASH_STALE_SECONDS": "5"}, "5 5"),
    ],
)
def test_the_stale_age_defaults_to_three_scan_intervals(env, expected):
    code = "from django.conf import settings; print(settings.OPSDASH_SCAN_INTERVAL, settings.OPSDASH_STALE_SECONDS)"
    out = _settings_run(code, env)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == expected


def test_a_stale_age_shorter_than_the_scan_interval_is_a_clear_error():
    out = _settings_run(
        "from django.conf import settings; settings.OPSDASH_STALE_SECONDS",
        {"OPSDASH_SCAN_INTERVAL": "60", "OPSDASH_STALE_SECONDS": "30"},
    )
    assert out.returncode != 0
    assert "OPSDASH_STALE_SECONDS (30) must not be shorter than OPSDASH_SCAN_INTERVAL (60)" in out.stderr


def _settings_run(code: str, env: dict[str, str]) -> subprocess.CompletedProcess:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("OPSDASH_") and k != "DATABASE_URL"}
    return subprocess.run(
        [
            sys.executable,
            "-c",
            f"import django, os; os.environ.setdefault('DJANGO_SETTINGS_MODULE', 'opsdash.settings'); {code}",
        ],
        cwd=REPO,
        env={**clean, **env},
        capture_output=True,
        text=True,
        timeout=60,
    )
