"""Roles: the user command, each role's permissions, and every mutating endpoint against every role."""

from __future__ import annotations

import io
import os
import time
from pathlib import Path

import pytest
from django.contrib.auth.models import User
from django.core.management import call_command
from django.test import Client
from django.urls import reverse

from eventstore import layout
from opsdash import actions
from opsdash.actions import ACTIONS
from opsdash.models import Job
from opsdash.services.scan import scan_root
from opsdash.services.worker import make_worker

from .conftest import PASSWORD

MODULE = ["testhost", "dar", "pos"]
BRANCH = ["testhost", "dar"]
# (URL name, arguments, form data): every endpoint that changes files.
# Every action of the registry (opsdash.actions): a new kind is checked here without a line.
MODULE_KINDS = [kind for kind, action in ACTIONS.items() if action.scope == actions.MODULE]
MUTATING = [
    *[(f"opsdash:module_{kind}", MODULE, {}) for kind in MODULE_KINDS],
    *[(f"opsdash:api_module_{kind}", MODULE, {}) for kind in MODULE_KINDS],
    *[
        (f"opsdash:branch_{kind}", BRANCH, {"confirm": "dar"})
        for kind, a in ACTIONS.items()
        if a.scope == actions.BRANCH
    ],
]
ENDPOINTS = pytest.mark.parametrize("name, args, data", MUTATING, ids=[m[0].split(":")[1] for m in MUTATING])


@pytest.fixture
def target(store, add_events, settings, tmp_path) -> Path:
    """dar/pos with something for every action to change: a corrupt meta, a backup, an old temp file."""
    settings.OPSDASH_ARCHIVE_ROOT = tmp_path / "archive"
    module = store.module("dar", "pos")
    add_events(module, count=4)
    text = module.meta_path.read_text()
    (module.live_dir / layout.meta_backup_name(1_700_000_000_000)).write_text(text + "\n}\n}")
    temp = module.live_dir / layout.temp_name(1_700_000_000_000, "k3x9")
    temp.write_text(text[:20])
    os.utime(temp, (time.time() - 7200, time.time() - 7200))
    module.meta_path.write_text(text + text[-30:])
    scan_root()
    return store.root


def _tree(*roots: Path) -> dict[str, bytes]:
    return {str(p): p.read_bytes() for root in roots if root.exists() for p in sorted(root.rglob("*")) if p.is_file()}


def _unchanged_after(client: Client, name: str, args: list[str], data: dict, root: Path, archive: Path) -> int:
    before = _tree(root, archive)
    status = client.post(reverse(name, args=args), data).status_code
    make_worker("testhost", batch=True).run()
    assert _tree(root, archive) == before and not Job.objects.exists()
    return status


@pytest.mark.django_db(transaction=True)
@ENDPOINTS
def test_managers_and_auditors_get_403_and_no_file_changes(
    target, settings, name, args, data, manager_client, auditor_client
):
    for client in (manager_client, auditor_client):
        assert _unchanged_after(client, name, args, data, target, settings.OPSDASH_ARCHIVE_ROOT) == 403


@pytest.mark.django_db(transaction=True)
@ENDPOINTS
def test_anonymous_callers_go_to_the_login_page_or_get_401(target, settings, name, args, data, client):
    status = _unchanged_after(client, name, args, data, target, settings.OPSDASH_ARCHIVE_ROOT)
    if ":api_" in name:
        assert status == 401
    else:
        response = client.post(reverse(name, args=args), data)
        assert status == 302 and response.url.startswith(reverse("login"))


@pytest.mark.django_db
@ENDPOINTS
def test_get_on_a_post_only_url_is_405(target, name, args, data, operator_client):
    assert operator_client.get(reverse(name, args=args), data).status_code == 405
    assert not Job.objects.exists()


@pytest.mark.django_db
@ENDPOINTS
def test_a_post_without_a_csrf_token_is_403(target, name, args, data, demo_users):
    client = Client(enforce_csrf_checks=True)
    assert client.login(username="operator", password=PASSWORD)
    assert client.post(reverse(name, args=args), data).status_code == 403
    assert not Job.objects.exists()


@pytest.mark.django_db
def test_the_api_accepts_the_session_with_the_csrf_header(target, demo_users):
    client = Client(enforce_csrf_checks=True)
    assert client.login(username="operator", password=PASSWORD)
    client.get(reverse("opsdash:module_list"))  # sets the CSRF cookie, as a browser session would
    token = client.cookies["csrftoken"].value
    response = client.post(reverse("opsdash:api_module_verify", args=MODULE), headers={"X-CSRFToken": token})
    assert response.status_code == 202 and response.json()["job"]["status"] == "queued"


@pytest.mark.django_db
def test_operators_see_the_action_buttons_and_managers_and_auditors_do_not(
    target, operator_client, manager_client, auditor_client
):
    page = reverse("opsdash:module_detail", args=MODULE)
    overview = reverse("opsdash:module_list") + "?branch=dar"
    offered_always = {f"opsdash:module_{kind}" for kind in MODULE_KINDS if ACTIONS[kind].offered is None}
    forms = [
        f'action="{reverse(n, args=a)}"'
        for n, a, _ in MUTATING
        if ":api_" not in n and (n in offered_always or ":branch_" in n)
    ]
    html = operator_client.get(page).content.decode() + operator_client.get(overview).content.decode()
    assert all(form in html for form in forms)
    for client in (manager_client, auditor_client):
        html = client.get(page).content.decode() + client.get(overview).content.decode()
        assert not any(form in html for form in forms) and "Rebuild meta" not in html
    # the JSON lists the action URLs for every role; the server decides who may POST
    assert set(manager_client.get(reverse("opsdash:api_module_detail", args=MODULE)).json()["actions"]) == {
        "rebuild",
        "verify",
        "archive_backups",
        "clean_temp",
    } | set(MODULE_KINDS)


@pytest.mark.django_db
def test_the_user_command_creates_a_user_with_a_role_and_changes_it():
    out = io.StringIO()
    call_command("user", "layla", "--role", "operator", stdout=out)
    assert "created user layla with role operator" in out.getvalue() and "password: " in out.getvalue()
    user = User.objects.get(username="layla")
    assert user.has_perm("opsdash.run_actions") and not user.has_perm("opsdash.view_audit")
    call_command("user", "layla", "--role", "auditor", "--password", "s3cret-pass", stdout=io.StringIO())
    user = User.objects.get(username="layla")
    assert [g.name for g in user.groups.all()] == ["auditors"] and user.check_password("s3cret-pass")
    assert user.has_perm("opsdash.view_audit") and not user.has_perm("opsdash.run_actions")


@pytest.mark.django_db
@pytest.mark.parametrize(
    "role, perms",
    [
        ("manager", set()),
        ("operator", {"run_actions", "download_backups", "view_payloads", "add_notes", "mute_alerts"}),
        ("auditor", {"view_audit", "download_backups", "view_payloads", "add_notes"}),
    ],
)
def test_each_role_has_exactly_its_permissions(role, perms):
    call_command("user", f"u-{role}", "--role", role, stdout=io.StringIO())
    user = User.objects.get(username=f"u-{role}")
    assert {p.split(".")[1] for p in user.get_all_permissions()} == perms


@pytest.mark.django_db
def test_a_refused_attempt_is_in_the_audit_trail_with_who_what_and_where(target, manager_client, auditor_client):
    from opsdash.models import AuditEntry

    url = reverse("opsdash:module_rebuild", args=MODULE)
    response = manager_client.post(url, REMOTE_ADDR="10.1.2.3")
    assert response.status_code == 403 and "Not allowed" in response.content.decode()
    entry = AuditEntry.objects.get()
    assert (entry.actor, entry.ip, entry.action, entry.host, entry.branch, entry.module, entry.outcome) == (
        "manager",
        "10.1.2.3",
        "module_rebuild",
        "testhost",
        "dar",
        "pos",
        "refused",
    )
    assert entry.params == {"method": "POST", "path": url}
    # The JSON API and the audit export refuse the same way; a page refused too.
    assert manager_client.post(reverse("opsdash:api_module_rebuild", args=MODULE)).status_code == 403
    assert manager_client.get(reverse("opsdash:api_audit_list")).status_code == 403
    assert manager_client.get(reverse("opsdash:audit_list")).status_code == 403
    actions = list(AuditEntry.objects.filter(outcome="refused").order_by("pk").values_list("actor", "action"))
    assert actions == [
        ("manager", "module_rebuild"),
        ("manager", "api_module_rebuild"),
        ("manager", "api_audit_list"),
        ("manager", "audit_list"),
    ]
    # Auditors see the attempts, and can filter on them.
    page = auditor_client.get(reverse("opsdash:audit_list") + "?outcome=refused").content.decode()
    assert page.count('class="outcome outcome-refused"') == 4
