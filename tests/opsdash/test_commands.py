from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def _env(tmp_path: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DJANGO_", "OPSDASH_", "DATABASE_"))}
    env.update(DATABASE_URL=f"sqlite:///{tmp_path / 'db.sqlite3'}", DJANGO_SECRET_KEY="test-only-key", **extra)
    return env


def _manage(env: dict[str, str], *args: str, **kwargs) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "manage.py", *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=60, **kwargs
    )


def test_scan_loop_stops_cleanly_on_sigterm(tmp_path):
    root = tmp_path / "branches"
    root.mkdir()
    env = _env(tmp_path, OPSDASH_DATA_ROOT=str(root))
    assert _manage(env, "migrate", "--verbosity", "0").returncode == 0
    proc = subprocess.Popen(
        [sys.executable, "manage.py", "scan", "--loop", "0.2"], cwd=ROOT, env=env, stdout=subprocess.PIPE, text=True
    )
    try:
        deadline = time.monotonic() + 30
        first = proc.stdout.readline()
        assert "0 modules" in first and time.monotonic() < deadline
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=15) == 0
    finally:
        if proc.poll() is None:
            proc.kill()


def test_settings_refuse_a_shared_database_without_a_secret_key(tmp_path):
    env = _env(tmp_path)
    del env["DJANGO_SECRET_KEY"]
    result = _manage(env, "check")
    assert result.returncode != 0
    assert "DJANGO_SECRET_KEY must be set" in result.stderr


@pytest.mark.parametrize("value", ["maybe", "2"])
def test_settings_fail_loudly_on_a_malformed_boolean(tmp_path, value):
    result = _manage(_env(tmp_path, DJANGO_DEBUG=value), "check")
    assert result.returncode != 0
    assert "DJANGO_DEBUG must be a boolean" in result.stderr


def test_user_branches_limits_a_user_and_no_branches_means_every_one(db):
    import io

    from django.contrib.auth.models import User
    from django.core.management import call_command

    from opsdash.services.access import access_of

    out = io.StringIO()
    call_command("user", "dar-boss", "--role", "manager", "--branches", "dar, maadi,dar", stdout=out)
    assert "role manager (group managers), branches dar, maadi" in out.getvalue()
    assert access_of(User.objects.get(username="dar-boss")).branches == frozenset({"dar", "maadi"})
    call_command("user", "dar-boss", "--role", "manager", stdout=io.StringIO())
    assert access_of(User.objects.get(username="dar-boss")).branches is None
