"""API tokens: created and revoked by command and page, stored hashed, acting as their user."""

from __future__ import annotations

import io
import logging
from datetime import timedelta

import orjson
import pytest
from django.contrib.auth.models import User
from django.core.management import call_command
from django.core.management.base import CommandError
from django.test import Client
from django.urls import reverse
from django.utils import timezone

from opsdash.models import ApiToken, AuditEntry, Job, LoginFailure
from opsdash.services import tokens
from opsdash.services.scan import scan_root

pytestmark = pytest.mark.django_db


@pytest.fixture
def scanned(store, add_events, demo_users):
    add_events(store.module("dar", "pos"))
    scan_root()


def _token(username: str, **options) -> str:
    row, token = tokens.create(User.objects.get(username=username), options.pop("name", f"{username}-key"), **options)
    return token


def _api(method: str, path: str, token: str | None = None, **kwargs):
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    return getattr(Client(enforce_csrf_checks=True), method)(path, headers=headers, **kwargs)


ACTION = "/api/modules/testhost/dar/pos/verify"


def test_the_command_creates_lists_and_revokes_and_prints_the_token_once(demo_users):
    out = io.StringIO()
    call_command("token", "create", "grafana", "--user", "manager", "--read-only", "--expires-days", "30", stdout=out)
    text = out.getvalue().splitlines()
    assert text[0].startswith("token grafana for manager (read only, expires ") and text[1].startswith("odt_")
    row = ApiToken.objects.get()
    assert row.digest == tokens.digest(text[1]) and text[1] not in str(list(ApiToken.objects.values()))  # only its hash
    out = io.StringIO()
    call_command("token", "list", stdout=out)
    assert "grafana\tmanager\tread-only\texpires " in out.getvalue() and "last used never\tactive" in out.getvalue()
    call_command("token", "revoke", "grafana", stdout=io.StringIO())
    with pytest.raises(CommandError, match="revoked already"):
        call_command("token", "revoke", "grafana")
    with pytest.raises(CommandError, match="exists already"):
        call_command("token", "create", "grafana", "--user", "operator")
    with pytest.raises(CommandError, match="no user"):
        call_command("token", "create", "other", "--user", "nobody")


def test_a_token_acts_as_its_user_without_session_or_csrf_and_its_actions_name_it(scanned):
    token = _token("operator")
    response = _api("get", "/api/modules", token)
    assert response.status_code == 200 and orjson.loads(response.content)["count"] == 1
    assert "sessionid" not in response.cookies
    response = _api("post", ACTION, token)  # no CSRF token, no session: a token request
    assert response.status_code == 202, response.content
    job = Job.objects.get()
    assert job.requested_by == "operator" and job.params == {"token": "operator-key"}
    row = ApiToken.objects.get()
    assert row.last_used_at is not None
    # the session way still wants its CSRF token
    session = Client(enforce_csrf_checks=True)
    session.login(username="operator", password="demo-password-for-tests")
    assert session.post(ACTION).status_code == 403


def test_a_read_only_token_cannot_act_even_for_an_operator(scanned):
    token = _token("operator", read_only=True)
    assert _api("get", "/api/modules/testhost/dar/pos", token).status_code == 200
    response = _api("post", ACTION, token)
    assert response.status_code == 403 and orjson.loads(response.content) == {"error": "this token is read-only"}
    assert not Job.objects.exists()
    refusal = AuditEntry.objects.get(outcome="refused")
    assert (refusal.actor, refusal.action, refusal.params["token"]) == ("operator", "api_module_verify", "operator-key")


@pytest.mark.parametrize("case", ["unknown", "revoked", "expired", "inactive user", "not bearer"])
def test_a_token_that_does_not_work_gets_a_401_in_json(scanned, case):
    token = _token("operator")
    row = ApiToken.objects.get()
    header = None
    if case == "unknown":
        token = tokens.PREFIX + "x" * 43
    elif case == "revoked":
        tokens.revoke(row)
    elif case == "expired":
        ApiToken.objects.filter(pk=row.pk).update(expires_at=timezone.now() - timedelta(seconds=1))
    elif case == "inactive user":
        User.objects.filter(username="operator").update(is_active=False)
    else:
        header = {"Authorization": f"Basic {token}"}
    response = Client().get("/api/modules", headers=header or {"Authorization": f"Bearer {token}"})
    assert response.status_code == 401 and response["Content-Type"] == "application/json"
    assert response["WWW-Authenticate"].startswith("Bearer") and "error" in orjson.loads(response.content)


@pytest.mark.parametrize("name", ["token", "access_token", "api_key"])
def test_a_token_in_the_query_string_is_refused(scanned, name):
    token = _token("operator")
    response = Client().get("/api/modules", {name: token})
    assert response.status_code == 400 and "Authorization header" in orjson.loads(response.content)["error"]


def test_failed_token_attempts_are_throttled_like_logins(scanned, settings):
    settings.OPSDASH_LOGIN_MAX_FAILURES = 3
    good = _token("operator")
    for _ in range(3):
        assert _api("get", "/api/modules", tokens.PREFIX + "wrong").status_code == 401
    response = _api("get", "/api/modules", good)
    assert response.status_code == 429  # the client guessed too much: even a good token waits
    assert LoginFailure.objects.filter(client="127.0.0.1").count() == 3
    assert (
        Client(REMOTE_ADDR="192.0.2.9").get("/api/modules", headers={"Authorization": f"Bearer {good}"}).status_code
        == 200
    )


def test_a_token_never_reaches_the_logs(scanned, caplog):
    token = _token("operator")
    with caplog.at_level(logging.DEBUG):
        _api("get", "/api/modules", token)
        _api("get", "/api/nothing-here", token)
        _api("get", "/api/modules", token + "x")
    assert token not in caplog.text


def test_the_token_page_shows_a_new_token_once_and_revokes_only_ones_own(scanned, operator_client, manager_client):
    url = reverse("opsdash:token_list")
    response = operator_client.post(url, {"name": "ci", "read_only": "on", "expires_days": "7"})
    assert response.status_code == 201 and response["Cache-Control"].startswith("max-age=0")
    html = response.content.decode()
    token = html.split('id="new-token" dir="ltr" tabindex="0">', 1)[1].split("<", 1)[0]
    assert token.startswith(tokens.PREFIX) and _api("get", "/api/modules", token).status_code == 200
    listed = operator_client.get(url).content.decode()
    assert "ci" in listed and token not in listed and "read only" in listed
    row = ApiToken.objects.get()
    assert manager_client.post(reverse("opsdash:token_revoke", args=[row.pk])).status_code == 404  # not theirs
    assert operator_client.post(reverse("opsdash:token_revoke", args=[row.pk])).status_code == 302
    assert _api("get", "/api/modules", token).status_code == 401
    assert list(AuditEntry.objects.order_by("id").values_list("action", "outcome", "actor")) == [
        ("token_create", "ok", "operator"),
        ("token_revoke", "ok", "operator"),
    ]
    assert operator_client.post(url, {"name": "ci"}).status_code == 200  # the name is taken: the form says so
    arabic = operator_client.get(url, headers={"Accept-Language": "ar"}).content.decode()
    assert 'dir="rtl"' in arabic
