"""The event browser and the story of an incident, as each role sees them in Chromium (issue 14)."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from playwright.sync_api import expect

from .conftest import axe_violations, login
from .test_flows import HOST, data_root, errors, module_url  # noqa: F401

pytestmark = pytest.mark.django_db(transaction=True)


def test_an_operator_jumps_from_a_duplicate_sequence_to_the_pair(site, page, errors):  # noqa: F811
    login(page, site, "operator")
    page.goto(module_url(site, "zamalek", "pos"))
    link = page.get_by_role("link", name=re.compile(r"the events of sequence \d+"))
    expect(link.first).to_be_visible()
    link.first.click()
    expect(page).to_have_url(re.compile(r"/events/\?sequence=\d+$"))
    expect(page.get_by_role("region", name=re.compile("Events sharing sequence"))).to_be_visible()
    expect(page.locator("section.pair figure")).to_have_count(2)
    ids = page.locator("section.pair figcaption code").all_inner_texts()
    assert len(set(ids)) == 2, ids  # two different events, one sequence
    assert axe_violations(page) == []
    assert errors == []


def test_an_auditor_finds_a_record_across_the_live_log_and_a_rotated_day_and_exports_it(
    site,
    page,
    data_root,  # noqa: F811
    errors,  # noqa: F811
):
    from eventstore import EventStore
    from opsdash.services.scan import scan_root

    module = EventStore(data_root).module("maadi", "pos")
    record = {"table": "order_header", "record": {"id": "ord-browse-1", "totalDue": 17}}
    module.append_event(record)
    module.rotate(today="2099-12-31")  # a day later than the meta's: the log is filed in history/events/
    module.append_event({"table": "order_header", "record": {"id": "ord-browse-1", "totalDue": 18}})
    scan_root(data_root)

    login(page, site, "auditor")
    page.goto(module_url(site, "maadi", "pos"))
    page.get_by_role("link", name="Browse the events").click()
    page.get_by_label("Record").fill("ord-browse-1")
    page.get_by_role("button", name="Apply").click()
    expect(page).to_have_url(re.compile(r"record=ord-browse-1"))
    rows = page.locator("table.events tbody tr:not(.event-body)")
    expect(rows).to_have_count(1)
    expect(rows.first).to_contain_text("ord-browse-1")

    days = page.get_by_label("Log").locator("option").all_inner_texts()
    assert len(days) == 2, days
    page.get_by_label("Log").select_option(index=1)
    page.get_by_role("button", name="Apply").click()
    expect(page).to_have_url(re.compile(r"day=.+record=ord-browse-1|record=ord-browse-1.+day="))
    expect(rows).to_have_count(1)
    rows.first.locator("xpath=following-sibling::tr[1]").get_by_text("The whole event").click()
    expect(page.locator("table.events pre").first).to_contain_text('"totalDue": 17')

    with page.expect_download() as info:
        page.get_by_role("link", name="Export (JSON Lines)").click()
    lines = Path(info.value.path()).read_text(encoding="utf-8").splitlines()
    assert [json.loads(x)["event"]["record"]["totalDue"] for x in lines] == [17]
    assert axe_violations(page) == []
    assert errors == []


def test_a_manager_sees_no_payload_and_cannot_search_by_a_hidden_field(
    site,
    page,
    data_root,  # noqa: F811
    errors,  # noqa: F811
):
    from eventstore import EventStore
    from opsdash.services.scan import scan_root

    EventStore(data_root).module("maadi", "pos").append_event(
        {"table": "payment", "record": {"id": "pay-9", "card": "4111-hidden-card"}}
    )
    scan_root(data_root)
    login(page, site, "manager")
    page.goto(f"{site}/modules/{HOST}/maadi/pos/events/")
    expect(page.locator("#masking-note")).to_contain_text("payload is hidden")
    expect(page.locator("table.events")).to_contain_text("pay-9")
    assert "4111-hidden-card" not in page.content()
    page.get_by_label("Text").fill("4111-hidden-card")
    page.get_by_role("button", name="Apply").click()
    expect(page.get_by_text("No event matches these filters")).to_be_visible()
    assert axe_violations(page) == []
    assert errors == []


def test_the_story_of_a_demo_incident_with_a_note(site, page, errors):  # noqa: F811
    login(page, site, "operator")
    page.goto(f"{site}/history/")
    page.locator("table a[href^='/incidents/']").first.click()
    expect(page).to_have_url(re.compile(r"/incidents/\d+/$"))
    story = page.locator("ol.story")
    expect(story.locator("li").first).to_contain_text(re.compile("first saw it|store server found it"))
    page.get_by_role("textbox", name="Note").fill("Checked with the branch: <b>the till</b> was restarted")
    page.get_by_role("button", name="Add the note").click()
    expect(story.locator("li.step-note")).to_contain_text("Note by operator")
    expect(story.locator("li.step-note")).to_contain_text("<b>the till</b> was restarted")  # as written, not markup
    assert axe_violations(page) == []
    assert errors == []
