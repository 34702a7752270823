"""Logging in, in Chromium: single sign-on against a real OpenID Connect provider on loopback
(django-oauth-toolkit in its own process), an authenticator app (TOTP) and its recovery codes,
and a security key (WebAuthn, the browser's virtual authenticator)."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
from playwright.sync_api import expect

from .conftest import PASSWORD, axe_violations, login

PROVIDER = Path(__file__).resolve().parents[1] / "oidc_provider" / "serve.py"


@pytest.fixture
def errors(page, site):
    """Console errors and uncaught exceptions (a CSP refusal is one) of our pages the test opens
    (the test provider's pages have no favicon, for one: not ours)."""
    seen: list[str] = []
    ours = site.rsplit(":", 1)[1]  # our port, whether the page says localhost or 127.0.0.1

    def on_console(msg) -> None:
        if msg.type == "error" and f":{ours}/" in (msg.location.get("url") or page.url):
            seen.append(f"console.{msg.type}: {msg.text} ({msg.location.get('url')})")

    page.on("console", on_console)
    page.on("pageerror", lambda exc: seen.append(f"pageerror: {exc}"))
    yield seen
    assert seen == []


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def provider(site, settings, tmp_path):
    """The identity provider, with our callback registered; the dashboard configured for it."""
    port = _free_port()
    env = {**os.environ, "OIDC_PROVIDER_DB": str(tmp_path / "provider.sqlite3")}
    env.pop("DJANGO_SETTINGS_MODULE", None)
    proc = subprocess.Popen(
        [sys.executable, str(PROVIDER), str(port), f"{site}/accounts/oidc/sso/login/callback/"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    assert proc.stdout.readline().strip() == "ready", proc.stdout.read()
    issuer = f"http://127.0.0.1:{port}/o"
    settings.OPSDASH_OIDC_ISSUER = issuer
    settings.OPSDASH_OIDC_NAME = "Test IdP"
    settings.OPSDASH_OIDC_GROUPS = {"ops": ("operator", ("dar",))}
    settings.SECURE_CSP = {
        **settings.SECURE_CSP,
        "form-action": ["'self'", f"http://127.0.0.1:{port}"],
    }  # as settings.py does
    settings.SOCIALACCOUNT_PROVIDERS = {
        "openid_connect": {
            "OAUTH_PKCE_ENABLED": True,
            "APPS": [
                {
                    "provider_id": "sso",
                    "name": "Test IdP",
                    "client_id": "opsdash",
                    "secret": "opsdash-secret",
                    "settings": {"server_url": issuer},
                }
            ],
        }
    }
    yield issuer
    proc.terminate()
    proc.wait(timeout=10)


def test_single_sign_on_with_a_real_provider_gives_the_role_and_branches_of_its_groups(site, provider, page, errors):
    from opsdash.models import AuditEntry

    page.goto(f"{site}/")
    expect(page).to_have_url(f"{site}/accounts/login/?next=/")
    assert axe_violations(page) == []
    page.get_by_role("button", name="Log in with Test IdP").click()
    page.get_by_label("Provider user").fill("alice")
    page.get_by_label("Provider password").fill("provider-password")
    page.get_by_role("button", name="Sign in at the provider").click()
    page.wait_for_url(f"{site}/")
    expect(page.locator(".who")).to_have_text("alice")
    branches = set(page.locator("table.modules tbody td[data-label=Branch]").all_inner_texts())
    assert branches == {"dar"}  # the group "ops" gives operator on dar only
    expect(page.get_by_role("columnheader", name="Actions")).to_be_visible()  # an operator's column
    entry = AuditEntry.objects.get(action="login")
    assert (entry.actor, entry.params["via"], entry.params["groups"], entry.params["branches"]) == (
        "alice",
        "sso",
        ["ops", "store-dar"],
        ["dar"],
    )
    page.get_by_role("button", name="Log out").click()
    expect(page).to_have_url(f"{site}/accounts/login/")
    # a user in no mapped group gets in with no role: nothing to see (alice leaves the provider too)
    page.context.clear_cookies()
    page.reload()
    page.get_by_role("button", name="Log in with Test IdP").click()
    page.get_by_label("Provider user").fill("bob")
    page.get_by_label("Provider password").fill("provider-password")
    page.get_by_role("button", name="Sign in at the provider").click()
    page.wait_for_url(f"{site}/")
    expect(page.locator(".who")).to_have_text("bob")
    expect(page.get_by_role("columnheader", name="Actions")).to_have_count(0)


def confirm_access(page) -> None:
    expect(page.get_by_role("heading", level=1)).to_have_text("Confirm Access")
    assert axe_violations(page) == []
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Confirm").click()


def test_an_authenticator_app_is_enrolled_and_asked_at_the_next_login_with_recovery_codes(site, page, errors):
    from allauth.mfa.totp.internal.auth import format_hotp_value, hotp_value

    def code(secret: str) -> str:
        return format_hotp_value(hotp_value(secret, int(time.time()) // 30))

    login(page, site, "operator")
    page.get_by_role("link", name="Two-factor login").click()
    expect(page.get_by_role("heading", level=1)).to_have_text("Two-Factor Authentication")
    assert axe_violations(page) == []
    page.get_by_role("link", name="Activate").first.click()
    confirm_access(page)  # allauth asks for the password again before any change of the second factor
    secret = page.locator("#authenticator_secret").input_value()
    assert len(secret) == 32
    assert axe_violations(page) == []
    page.get_by_label("Authenticator code").fill(code(secret))
    page.get_by_role("button", name="Activate").click()
    page.goto(f"{site}/accounts/2fa/recovery-codes/")
    expect(page.get_by_role("heading", level=1)).to_have_text("Recovery Codes")
    assert axe_violations(page) == []
    codes = page.get_by_label("Unused codes").input_value().split()
    assert len(codes) >= 8
    page.get_by_role("button", name="Log out").click()
    # the next login asks for the code
    page.get_by_label("User name").fill("operator")
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Log in").click()
    expect(page).to_have_url(f"{site}/accounts/2fa/authenticate/")
    assert axe_violations(page) == []
    page.locator("input[name=code]").fill(code(secret))
    page.get_by_role("button", name="Sign In").click()
    page.wait_for_url(f"{site}/")
    page.get_by_role("button", name="Log out").click()
    # and a recovery code works once
    page.get_by_label("User name").fill("operator")
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Log in").click()
    page.locator("input[name=code]").fill(codes[0])
    page.get_by_role("button", name="Sign In").click()
    page.wait_for_url(f"{site}/")


def test_a_security_key_is_enrolled_and_used_at_the_next_login(site, browser):
    site = site.replace("127.0.0.1", "localhost")  # a WebAuthn relying party is a domain, never an address
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    page = context.new_page()
    page.set_default_timeout(10_000)
    seen: list[str] = []
    page.on("console", lambda msg: seen.append(msg.text) if msg.type == "error" else None)
    page.on("pageerror", lambda exc: seen.append(str(exc)))
    cdp = context.new_cdp_session(page)
    cdp.send("WebAuthn.enable")
    cdp.send(
        "WebAuthn.addVirtualAuthenticator",
        {
            "options": {
                "protocol": "ctap2",
                "transport": "usb",
                "hasResidentKey": True,
                "hasUserVerification": True,
                "isUserVerified": True,
            }
        },
    )
    try:
        login(page, site, "operator")
        page.goto(f"{site}/accounts/2fa/webauthn/add/")
        confirm_access(page)
        assert axe_violations(page) == []
        page.get_by_label("Name").fill("my key")
        page.get_by_role("button", name="Add").click()
        page.wait_for_url(lambda url: "/webauthn/add/" not in url)
        page.goto(f"{site}/accounts/2fa/webauthn/")
        expect(page.get_by_text("my key")).to_be_visible()
        page.get_by_role("button", name="Log out").click()
        page.get_by_label("User name").fill("operator")
        page.get_by_label("Password").fill(PASSWORD)
        page.get_by_role("button", name="Log in").click()
        expect(page).to_have_url(f"{site}/accounts/2fa/authenticate/")
        page.get_by_role("button", name="Use a security key").click()
        page.wait_for_url(f"{site}/")
        expect(page.locator(".who")).to_have_text("operator")
        assert seen == []
    finally:
        context.close()
