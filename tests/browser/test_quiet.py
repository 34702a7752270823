"""Alerts people can live with, in Chromium (issue 16): an operator acknowledges a critical module
and plans a maintenance window; the overview shows the acknowledged problem apart."""

from __future__ import annotations

import re

import pytest
from playwright.sync_api import expect

from .conftest import axe_violations, login
from .test_flows import errors, module_url  # noqa: F401

pytestmark = pytest.mark.django_db(transaction=True)


def test_an_operator_acknowledges_a_problem_and_the_overview_shows_it_apart(site, page, errors):  # noqa: F811
    login(page, site, "operator")
    page.goto(module_url(site, "dar", "pos"))
    page.get_by_text("Acknowledge or silence…").click()
    form = page.locator("form[action$='/mute']")
    form.locator("select[name=kind]").select_option("ack")
    form.locator("select[name=scope]").select_option("module")
    form.get_by_label("Why").fill("the new till arrives on Monday")
    page.get_by_role("button", name="Record it").click()
    expect(page.locator("ul.mutes")).to_contain_text("the new till arrives on Monday")
    expect(page.locator("ul.mutes")).to_contain_text("by operator")

    page.goto(f"{site}/")
    expect(page.locator("ul.counts")).to_contain_text("acknowledged")
    page.get_by_role("link", name="unacknowledged problems").click()
    expect(page).to_have_url(re.compile(r"status=unacknowledged"))
    rows = page.locator("table.modules tbody tr")
    expect(rows.first).to_be_visible()
    for text in rows.all_inner_texts():
        assert not (text.startswith("dar") and "\tpos" in text), text
    assert axe_violations(page) == []
    assert errors == []


def test_an_operator_plans_a_recurring_maintenance_window(site, page, errors):  # noqa: F811
    login(page, site, "operator")
    page.get_by_role("navigation", name="Main").get_by_role("link", name="Silences and maintenance").click()
    page.get_by_label("Branch (empty: every branch)").fill("zamalek")
    page.get_by_label("Or every (cron, e.g. 0 3 * * 1)").fill("0 3 * * *")
    page.get_by_label("Lasting (minutes)").fill("45")
    page.get_by_label("Why").fill("nightly reindex")
    page.get_by_role("button", name="Plan it").click()
    table = page.locator("section[aria-labelledby=windows-h]")
    expect(table).to_contain_text("0 3 * * *")
    expect(table).to_contain_text("nightly reindex")
    expect(table).to_contain_text(re.compile("next|in force now"))
    assert axe_violations(page) == []
    assert errors == []
