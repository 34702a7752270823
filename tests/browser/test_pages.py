"""What a person sees in the browser, for each role, on the demo data."""

from __future__ import annotations

import re

import pytest
from playwright.sync_api import expect

from .conftest import axe_violations, login

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.mark.parametrize("username", ["manager", "operator", "auditor"])
def test_every_role_logs_in_and_sees_every_module(site, page, username):
    login(page, site, username)
    expect(page.get_by_role("heading", name="Store health")).to_be_visible()
    rows = page.locator("table tbody tr")
    expect(rows).to_have_count(15)
    expect(page.get_by_text(username, exact=True)).to_be_visible()


def test_an_anonymous_visitor_is_sent_to_the_login_page(site, page):
    page.goto(f"{site}/history/")
    expect(page).to_have_url(re.compile(r"/accounts/login/\?next=/history/"))


def test_filtering_the_overview_swaps_the_table_and_keeps_the_filter_in_the_url(site, page):
    login(page, site, "manager")
    page.locator("select[name=status]").select_option("critical")
    page.get_by_role("button", name="Apply").click()
    expect(page).to_have_url(re.compile(r"status=critical"))
    rows = page.locator("table tbody tr")
    expect(rows).to_have_count(3)
    for i in range(3):
        expect(rows.nth(i)).to_contain_text("critical")
    page.reload()
    expect(page.locator("table tbody tr")).to_have_count(3)


def test_a_corrupt_module_shows_where_its_meta_broke(site, page):
    login(page, site, "manager")
    page.get_by_role("row").filter(has_text="meta_corrupt").get_by_role("link", name="pos").click()
    expect(page.locator("h1")).to_contain_text(re.compile(r"dar\s*/\s*pos"))
    expect(page.get_by_text(re.compile(r"Not valid JSON: Extra data: line \d+ column \d+"))).to_be_visible()
    page.get_by_role("link", name="Jump to the error").click()
    mark = page.locator("mark").first
    expect(mark).to_be_visible()
    expect(mark).to_be_in_viewport()


@pytest.mark.parametrize("path", ["/", "/history/", "/backups/", "/modules/pos-server-1/dar/pos/"])
def test_pages_have_no_serious_accessibility_violations(site, page, path):
    login(page, site, "manager")
    page.goto(site + path)
    assert axe_violations(page) == []


def test_the_login_page_has_no_serious_accessibility_violations(site, page):
    page.goto(f"{site}/accounts/login/")
    assert axe_violations(page) == []


def test_a_backup_page_has_no_serious_accessibility_violations(site, page):
    login(page, site, "manager")
    page.goto(f"{site}/backups/")
    page.locator("table a[href*='/backups/']").first.click()
    expect(page.locator("h1")).to_contain_text("events.")
    assert axe_violations(page) == []


def test_an_operator_repairs_a_corrupt_module_and_sees_what_changed(site, page):
    from opsdash.services.worker import make_worker

    login(page, site, "operator")
    page.goto(f"{site}/modules/pos-server-1/dar/pos/")
    expect(page.locator("h1 .badge")).to_have_text("critical")
    page.get_by_text("Rebuild meta…").click()
    page.get_by_role("button", name="Yes, rebuild meta dar/pos").click()
    expect(page.locator("#job-area progress")).to_be_visible()
    make_worker("pos-server-1", batch=True).run()  # the web process's worker thread, here in the test
    expect(page.locator("#job-area")).to_contain_text("succeeded", timeout=10_000)
    expect(page.locator("#job-area")).to_contain_text("the old meta is backed up as events.meta.json.corrupted.")
    expect(page.locator("#job-area")).to_contain_text("lastAckId ← prefix")
    expect(page.locator("h1 .badge")).to_have_text("healthy")  # swapped in when the job ended


def test_a_manager_sees_no_action_buttons(site, page):
    login(page, site, "manager")
    page.goto(f"{site}/modules/pos-server-1/dar/pos/")
    expect(page.get_by_role("heading", name="Findings")).to_be_visible()
    expect(page.get_by_text("Rebuild meta…")).to_have_count(0)


@pytest.mark.parametrize("language", ["en", "ar"])
def test_a_download_that_cannot_be_served_says_why_in_the_page_language(site, page, language):
    from opsdash.models import Backup

    backup = Backup.objects.filter(state=Backup.State.LIVE).first()
    Backup.objects.filter(pk=backup.pk).update(state=Backup.State.ARCHIVED)  # archived, but no copy anywhere
    login(page, site, "auditor")
    if language == "ar":
        page.get_by_role("button", name="العربيّة").click()
    page.goto(f"{site}{backup.download_url()}")
    heading = "لا يمكن تنزيل هذه النسخة الاحتياطية الآن" if language == "ar" else "This backup cannot be downloaded now"
    expect(page.get_by_role("heading", level=1)).to_have_text(heading)
    expect(page.get_by_role("alert")).to_contain_text(backup.name)
    assert axe_violations(page) == []
    page.get_by_role("link", name="العودة إلى النسخة الاحتياطية" if language == "ar" else "Back to the backup").click()
    expect(page.locator("h1")).to_contain_text(backup.name)
