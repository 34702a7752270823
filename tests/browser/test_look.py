"""Arabic right to left, dark mode and a phone's width, seen in the browser.

Each check looks at what a person sees: where a column is on the screen, which colours the page
is painted in, whether the page scrolls sideways at 375 px, and axe-core on each variant.
"""

from __future__ import annotations

import pytest
from playwright.sync_api import expect

from .conftest import ARTIFACTS, PASSWORD, axe_violations

pytestmark = pytest.mark.django_db(transaction=True)

HOST = "pos-server-1"
CRITICAL = f"/modules/{HOST}/dar/pos/"
PAGES = [
    "/",
    CRITICAL,
    f"/modules/{HOST}/zamalek/pos/events/",
    "/history/",
    "/backups/",
    "/maintenance/",
    "/audit/",
    "/account/tokens/",
    "/accounts/2fa/",
]


@pytest.fixture
def new_page(browser, request):
    """``new_page(**context_options)``: a page in its own browser context (colour scheme,
    viewport, locale); a failing test leaves a screenshot of each in test-artifacts/."""
    contexts = []

    def make(**options):
        options.setdefault("viewport", {"width": 1280, "height": 900})
        context = browser.new_context(**options)
        contexts.append(context)
        page = context.new_page()
        page.set_default_timeout(10_000)
        return page

    yield make
    report = getattr(request.node, "rep_call", None)
    for i, context in enumerate(contexts):
        if report is not None and report.failed:
            ARTIFACTS.mkdir(exist_ok=True)
            for page in context.pages:
                page.screenshot(path=str(ARTIFACTS / f"{request.node.name}-{i}.png"), full_page=True)
        context.close()


def login(page, site: str, username: str) -> None:
    """Log in whatever the page's language (the fields by name, not by their translated label)."""
    page.goto(f"{site}/accounts/login/")
    page.locator("input[name=login]").fill(username)
    page.locator("input[name=password]").fill(PASSWORD)
    page.locator("input[name=password]").press("Enter")
    page.wait_for_url(f"{site}/")


def background(page) -> str:
    return page.evaluate("getComputedStyle(document.body).backgroundColor")


def is_dark(rgb: str) -> bool:
    r, g, b = (int(x) for x in rgb[rgb.index("(") + 1 : rgb.index(")")].split(",")[:3])
    return (r + g + b) / 3 < 80


def test_switching_to_arabic_turns_the_pages_right_to_left_and_back(site, new_page):
    page = new_page()
    login(page, site, "operator")
    page.get_by_role("button", name="العربيّة").click()
    expect(page.locator("html")).to_have_attribute("dir", "rtl")
    expect(page.locator("html")).to_have_attribute("lang", "ar")
    expect(page.get_by_role("heading", level=1)).to_have_text("صحة المخزن")
    # The table reads from the right: the branch column is right of the status column.
    branch = page.get_by_role("columnheader", name="الفرع").bounding_box()
    status = page.get_by_role("columnheader", name="الحالة").bounding_box()
    assert branch["x"] > status["x"]
    expect(page.locator("table.modules .badge.status-critical").first).to_have_text("حرج")
    # The choice is remembered from page to page.
    page.goto(f"{site}{CRITICAL}")
    expect(page.locator("html")).to_have_attribute("dir", "rtl")
    expect(page.get_by_role("heading", name="الإجراءات")).to_be_visible()
    # The damaged meta still reads left to right, with its error marked.
    pre = page.locator("pre.raw")
    assert pre.evaluate("e => getComputedStyle(e).direction") == "ltr"
    expect(page.locator("mark#meta-error")).to_be_visible()
    page.get_by_role("button", name="English").click()
    expect(page.locator("html")).to_have_attribute("dir", "ltr")
    expect(page.get_by_role("heading", name="Actions")).to_be_visible()


def test_the_arabic_chart_keeps_time_running_left_to_right(site, new_page):
    page = new_page(extra_http_headers={"Accept-Language": "ar"})
    login(page, site, "manager")
    page.goto(f"{site}/history/")
    expect(page.locator("html")).to_have_attribute("dir", "rtl")
    svg = page.locator("figure.chart svg")
    assert svg.evaluate("e => getComputedStyle(e).direction") == "ltr"
    first, last = page.locator("figure.chart text.label").nth(0), page.locator("figure.chart text.label").nth(1)
    assert first.bounding_box()["x"] < last.bounding_box()["x"]
    expect(page.locator("#chart-title")).to_have_text("الحوادث في اليوم")


@pytest.mark.parametrize("path", PAGES)
def test_arabic_pages_have_no_serious_accessibility_violations(site, new_page, path):
    page = new_page(extra_http_headers={"Accept-Language": "ar"})
    login(page, site, "auditor" if path == "/audit/" else "operator")
    page.goto(f"{site}{path}")
    expect(page.locator("html")).to_have_attribute("dir", "rtl")
    assert axe_violations(page) == []


def test_dark_mode_follows_the_system_and_the_toggle_is_remembered(site, new_page):
    page = new_page(color_scheme="dark")
    login(page, site, "manager")
    assert is_dark(background(page))
    toggle = page.get_by_role("button", name="Dark mode")
    expect(toggle).to_have_attribute("aria-pressed", "true")
    toggle.click()
    expect(toggle).to_have_attribute("aria-pressed", "false")
    assert not is_dark(background(page))
    # Remembered: a reload and another page stay light although the system is dark.
    page.goto(f"{site}/history/")
    assert not is_dark(background(page))
    expect(page.get_by_role("button", name="Dark mode")).to_have_attribute("aria-pressed", "false")
    # Choosing dark again is what the system says: the page follows the system once more.
    page.get_by_role("button", name="Dark mode").click()
    assert is_dark(background(page))
    assert page.evaluate("localStorage.getItem('opsdash-theme')") is None


def test_a_light_system_can_be_switched_to_dark_with_the_keyboard(site, new_page):
    page = new_page(color_scheme="light")
    login(page, site, "manager")
    assert not is_dark(background(page))
    page.get_by_role("button", name="Dark mode").focus()
    page.keyboard.press("Enter")
    assert is_dark(background(page))
    page.reload()
    assert is_dark(background(page))
    assert page.evaluate("localStorage.getItem('opsdash-theme')") == "dark"


@pytest.mark.parametrize("path", PAGES)
def test_dark_pages_have_no_serious_accessibility_violations(site, new_page, path):
    page = new_page(color_scheme="dark")
    login(page, site, "auditor" if path == "/audit/" else "operator")
    page.goto(f"{site}{path}")
    assert is_dark(background(page))
    assert axe_violations(page) == []


@pytest.mark.parametrize("lang", ["en", "ar"])
def test_at_375_px_the_overview_is_cards_with_status_and_actions(site, new_page, lang):
    page = new_page(
        viewport={"width": 375, "height": 812},
        extra_http_headers={"Accept-Language": lang},
        is_mobile=True,
        has_touch=True,
    )
    login(page, site, "operator")
    width = page.evaluate("document.documentElement.clientWidth")
    assert page.evaluate("document.documentElement.scrollWidth") <= width  # no sideways scrolling
    card = page.locator("table.modules tbody tr").filter(has=page.locator(".badge.status-critical")).first
    badge = card.locator(".badge.status-critical")
    expect(badge).to_be_visible()
    box = badge.bounding_box()
    assert box["x"] >= 0 and box["x"] + box["width"] <= width
    # The card shows its fields one under the other, each with its label.
    label = card.locator("td[data-label]").first.evaluate("e => getComputedStyle(e, '::before').content")
    assert label.strip('"').startswith("الفرع" if lang == "ar" else "Branch")
    rebuild = card.locator("summary")
    expect(rebuild).to_be_visible()
    rebuild.click()
    confirm = card.get_by_role("button", name="dar/pos")
    expect(confirm).to_be_visible()
    box = confirm.bounding_box()
    assert box["x"] >= 0 and box["x"] + box["width"] <= width


@pytest.mark.parametrize("path", PAGES)
def test_no_page_scrolls_sideways_at_375_px(site, new_page, path):
    page = new_page(viewport={"width": 375, "height": 812}, is_mobile=True)
    login(page, site, "auditor" if path == "/audit/" else "operator")
    page.goto(f"{site}{path}")
    assert page.evaluate("document.documentElement.scrollWidth") <= page.evaluate(
        "document.documentElement.clientWidth"
    ), path
    assert axe_violations(page) == []
