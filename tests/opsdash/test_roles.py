from __future__ import annotations

import io

import pytest
from django.contrib.auth.models import User
from django.core.management import call_command

pytestmark = pytest.mark.django_db


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


@pytest.mark.parametrize(
    "role, perms",
    [("manager", set()), ("operator", {"run_actions", "download_backups"}), ("auditor", {"view_audit", "download_backups"})],
)
def test_each_role_has_exactly_its_permissions(role, perms):
    call_command("user", f"u-{role}", "--role", role, stdout=io.StringIO())
    user = User.objects.get(username=f"u-{role}")
    assert {p.split(".")[1] for p in user.get_all_permissions()} == perms
