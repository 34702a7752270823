"""Logging in: local passwords, the second factor (TOTP, recovery codes), OPSDASH_REQUIRE_2FA,
OPSDASH_LOCAL_LOGIN, the groups of single sign-on as roles, and the audit of every login."""

from __future__ import annotations

import pytest
from allauth.mfa import app_settings as mfa_settings
from allauth.mfa.recovery_codes.internal.auth import RecoveryCodes
from allauth.mfa.totp.internal.auth import (
    TOTP,
    format_hotp_value,
    generate_totp_secret,
    hotp_value,
    yield_hotp_counters_from_time,
)
from django.contrib.auth.models import User
from django.test import Client
from django.urls import reverse

from opsdash.auth import apply_groups, role_from_groups
from opsdash.models import AuditEntry, LoginFailure
from opsdash.services.access import access_of

from .conftest import PASSWORD

pytestmark = pytest.mark.django_db


def totp_code(secret: str) -> str:
    counter = list(yield_hotp_counters_from_time())[mfa_settings.TOTP_TOLERANCE]  # the current period
    return format_hotp_value(hotp_value(secret, counter))


def _login(client: Client, username: str, password: str = PASSWORD):
    return client.post(reverse("login"), {"login": username, "password": password})


@pytest.fixture
def operator_with_totp(demo_users):
    secret = generate_totp_secret()
    user = User.objects.get(username="operator")
    TOTP.activate(user, secret)
    codes = RecoveryCodes.activate(user).get_unused_codes()
    return secret, codes


def test_a_password_login_is_audited(demo_users):
    client = Client()
    assert _login(client, "manager").status_code == 302
    entry = AuditEntry.objects.get(action="login")
    assert (entry.actor, entry.outcome, entry.params["via"], entry.ip) == ("manager", "ok", "password", "127.0.0.1")


def test_the_second_factor_is_asked_and_a_wrong_code_is_throttled(operator_with_totp, settings):
    secret, _ = operator_with_totp
    settings.OPSDASH_LOGIN_MAX_FAILURES = 3
    client = Client()
    response = _login(client, "operator")
    assert response.status_code == 302 and response["Location"] == reverse("mfa_authenticate")
    assert "_auth_user_id" not in client.session  # not logged in before the code
    assert client.get(reverse("opsdash:module_list")).status_code == 302
    for _ in range(3):
        assert client.post(reverse("mfa_authenticate"), {"code": "000000"}).status_code == 200
    assert client.post(reverse("mfa_authenticate"), {"code": totp_code(secret)}).status_code == 429
    LoginFailure.objects.all().delete()  # the window has passed
    response = client.post(reverse("mfa_authenticate"), {"code": totp_code(secret)})
    assert response.status_code == 302 and client.get(reverse("opsdash:module_list")).status_code == 200
    entry = AuditEntry.objects.get(action="login")
    assert entry.actor == "operator" and "mfa" in entry.params["methods"]


def test_a_recovery_code_lets_one_in_once(operator_with_totp):
    _, codes = operator_with_totp
    client = Client()
    _login(client, "operator")
    assert client.post(reverse("mfa_authenticate"), {"code": codes[0]}).status_code == 302
    again = Client()
    _login(again, "operator")
    assert again.post(reverse("mfa_authenticate"), {"code": codes[0]}).status_code == 200  # used: refused


@pytest.mark.parametrize(
    ("required", "who", "sent_to_enroll"),
    [
        ("operators", "operator", True),
        ("operators", "manager", False),
        ("all", "auditor", True),
        ("none", "operator", False),
    ],
)
def test_require_2fa_sends_the_named_users_to_enroll_before_anything_else(
    demo_users, settings, required, who, sent_to_enroll
):
    settings.OPSDASH_REQUIRE_2FA = required
    client = Client()
    assert _login(client, who).status_code == 302
    response = client.get(reverse("opsdash:module_list"))
    if sent_to_enroll:
        assert response.status_code == 302 and response["Location"] == reverse("mfa_index")
        assert client.get(reverse("mfa_index")).status_code == 200  # the enrolment itself is open
        assert client.get("/api/modules").status_code == 403
        TOTP.activate(User.objects.get(username=who), generate_totp_secret())
        assert client.get(reverse("opsdash:module_list")).status_code == 200
    else:
        assert response.status_code == 200


def test_local_passwords_can_be_turned_off(demo_users, settings):
    settings.OPSDASH_LOCAL_LOGIN = False
    client = Client()
    response = _login(client, "operator")
    assert response.status_code == 200 and "_auth_user_id" not in client.session
    assert b'name="password"' not in client.get(reverse("login")).content  # no password form at all
    User.objects.filter(username="operator").update(is_staff=True, is_superuser=True)
    client.post(reverse("admin:login"), {"username": "operator", "password": PASSWORD})
    assert "_auth_user_id" not in client.session  # nor through the admin's login


@pytest.mark.parametrize(
    ("groups", "expected"),
    [
        (["ops"], ("operator", [])),
        (["store-dar", "store-maadi"], ("manager", ["dar", "maadi"])),
        (["store-dar", "audit"], ("auditor", [])),  # the strongest role wins
        (["ops-dar", "store-maadi"], ("operator", ["dar"])),
        (["unknown"], (None, [])),
        ("store-dar", ("manager", ["dar"])),
        (None, (None, [])),
        ([1, {"x": 1}], (None, [])),
    ],
)
def test_provider_groups_map_to_a_role_and_branches(settings, groups, expected):
    settings.OPSDASH_OIDC_GROUPS = {
        "ops": ("operator", ()),
        "ops-dar": ("operator", ("dar",)),
        "store-dar": ("manager", ("dar",)),
        "store-maadi": ("manager", ("maadi",)),
        "audit": ("auditor", ()),
    }
    assert role_from_groups(groups) == expected


def test_the_groups_apply_at_every_login(demo_users, settings):
    settings.OPSDASH_OIDC_GROUPS = {"store-dar": ("manager", ("dar",)), "ops": ("operator", ())}
    user = User.objects.create_user("carol")
    apply_groups(user, {"groups": ["store-dar"]})
    assert list(user.groups.values_list("name", flat=True)) == ["managers"] and access_of(user).branches == frozenset(
        {"dar"}
    )
    apply_groups(user, {"groups": ["ops"]})  # promoted at the provider
    user = User.objects.get(pk=user.pk)
    assert list(user.groups.values_list("name", flat=True)) == ["operators"] and access_of(user).branches is None
    apply_groups(user, {"groups": []})  # removed from every group
    assert not user.groups.exists()
