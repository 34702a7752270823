"""An attacker's tour of what exists: production checks, headers, paths, anonymous access."""

from __future__ import annotations

import os
import secrets
import subprocess
import sys
from pathlib import Path

import pytest
from django.urls import reverse

pytestmark = pytest.mark.django_db
REPO = Path(__file__).resolve().parents[2]

PRODUCTION_ENV = {
    "DJANGO_SECRET_KEY": secrets.token_urlsafe(50),
    "DJANGO_HTTPS": "1",
    "DJANGO_HSTS_SECONDS": "31536000",
    "DJANGO_ALLOWED_HOSTS": "opsdash.example.com",
}


def test_check_deploy_is_clean_with_the_documented_production_settings(tmp_path):
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DJANGO_", "OPSDASH_", "DATABASE_URL"))}
    env |= PRODUCTION_ENV | {"DATABASE_URL": f"sqlite:///{tmp_path / 'db.sqlite3'}"}
    out = subprocess.run(
        [sys.executable, "manage.py", "check", "--deploy", "--fail-level", "WARNING"],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
    )
    assert out.returncode == 0, out.stdout + out.stderr
    assert "no issues" in out.stdout


def test_pages_send_the_security_headers(manager_client):
    response = manager_client.get(reverse("opsdash:module_list"))
    assert response["X-Frame-Options"] == "DENY"
    assert response["Referrer-Policy"] == "same-origin"
    assert response["X-Content-Type-Options"] == "nosniff"
    csp = response["Content-Security-Policy"]
    assert "default-src 'self'" in csp and "unsafe-inline" not in csp and "unsafe-eval" not in csp


def test_session_and_csrf_cookies_are_http_only_where_it_matters(client, demo_users):
    response = client.post(reverse("login"), {"login": "manager", "password": "demo-password-for-tests"})
    assert response.status_code == 302
    assert response.cookies["sessionid"]["httponly"]


@pytest.mark.parametrize(
    "path",
    [
        "/modules/testhost/..%2F..%2Fetc/passwd/",
        "/modules/testhost/%2e%2e/pos/",
        "/modules/testhost/dar/..%00/",
        "/modules/testhost/" + "a" * 300 + "/pos/",
        "/api/modules/testhost/%2e%2e/%2e%2e",
        "/backups/999999/download",
        "/modules/%2Fetc/dar/pos/",
    ],
)
def test_path_like_parameters_never_reach_a_file(operator_client, path):
    # An operator passes every permission check (downloads included), so only the path rules stop these.
    response = operator_client.get(path)
    assert response.status_code in (400, 404)


@pytest.mark.parametrize(
    "name", ["opsdash:module_list", "opsdash:incident_list", "opsdash:backup_list", "opsdash:api_module_list"]
)
def test_anonymous_visitors_get_nothing(client, name):
    response = client.get(reverse(name))
    assert response.status_code in (302, 401)
    assert b"dar" not in response.content


def test_nul_bytes_in_parameters_get_400(manager_client):
    assert manager_client.get(reverse("opsdash:module_list"), {"q": "a\x00b"}).status_code == 400
    assert manager_client.get(reverse("opsdash:incident_list"), {"branch": "\x00"}).status_code == 400


def test_login_brute_force_is_throttled(client, demo_users, settings):
    settings.OPSDASH_LOGIN_MAX_FAILURES = 3
    url = reverse("login")
    for i in range(3):
        assert client.post(url, {"login": "manager", "password": f"wrong-{i}"}).status_code == 200
    blocked = client.post(url, {"login": "manager", "password": "demo-password-for-tests"})
    assert blocked.status_code == 429 and b"Too many failed logins" in blocked.content
    assert "_auth_user_id" not in client.session  # even the right password is not checked while blocked
    other = client.post(url, {"login": "operator", "password": "demo-password-for-tests"}, REMOTE_ADDR="10.0.0.9")
    assert other.status_code == 302  # another address and user name are not affected


def test_the_embedded_database_is_private_from_the_first_run(tmp_path):
    """var/ 0700, the SQLite database and its WAL files 0600, whatever the umask, and an install
    from before this rule tightened: the sessions, password hashes and archived backups in it
    are not for other local users."""
    import sqlite3
    import stat

    from opsdash.settings import _private_sqlite

    old = os.umask(0o022)
    try:
        var = tmp_path / "var"
        db = _private_sqlite(var)
        con = sqlite3.connect(db)
        con.execute("PRAGMA journal_mode=WAL")
        con.execute("CREATE TABLE t (x)")
        con.execute("INSERT INTO t VALUES (1)")
        con.commit()
        modes = {p.name: stat.S_IMODE(p.stat().st_mode) for p in [var, *var.iterdir()]}
        assert modes == {
            "var": 0o700,
            "opsdash.sqlite3": 0o600,
            "opsdash.sqlite3-wal": 0o600,
            "opsdash.sqlite3-shm": 0o600,
        }
        con.close()
        for p in (var, db):
            p.chmod(0o755 if p == var else 0o644)  # as the code of before left them
        _private_sqlite(var)
        assert (stat.S_IMODE(var.stat().st_mode), stat.S_IMODE(db.stat().st_mode)) == (0o700, 0o600)
    finally:
        os.umask(old)
    repo_var = REPO / "var"
    if not os.environ.get("DATABASE_URL") and repo_var.exists() and repo_var.stat().st_uid == os.geteuid():
        assert stat.S_IMODE(repo_var.stat().st_mode) == 0o700  # this checkout's, tightened when the settings loaded
