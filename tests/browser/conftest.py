"""Browser tests: Debian's Chromium driven by Playwright against a live server on demo data.

Chromium comes from Debian (`/usr/bin/chromium`, installed by .ci/run); Playwright's own browser
download does not work here. axe-core comes from the npm registry (tests/browser/package.json).
A failing test leaves a screenshot in test-artifacts/.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from eventstore.demo import write_demo_root

# Playwright's sync API runs an event loop in this thread; the ORM calls the tests make
# between page actions are plain synchronous code, not async code.
os.environ.setdefault("DJANGO_ALLOW_ASYNC_UNSAFE", "true")

CHROMIUM = os.environ.get("OPSDASH_TEST_CHROMIUM", "/usr/bin/chromium")
AXE = Path(__file__).parent / "node_modules" / "axe-core" / "axe.min.js"
ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts"
PASSWORD = "browser-test-password"
ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]

NO_CHROMIUM = pytest.mark.skipif(not shutil.which(CHROMIUM), reason=f"{CHROMIUM} is not installed")


def pytest_collection_modifyitems(config, items) -> None:
    """Every browser test is skipped when Chromium is missing (a conftest's ``pytestmark`` does
    not reach the test modules)."""
    here = Path(__file__).parent
    for item in items:
        if here in Path(item.fspath).parents:
            item.add_marker(NO_CHROMIUM)


@pytest.fixture(scope="session")
def demo_root(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("browser") / "branches"
    write_demo_root(root, seed=7, events_per_module=60)
    return root


@pytest.fixture
def site(demo_root, tmp_path, settings, live_server, transactional_db):
    """The live server on a fresh copy of the demo root, scanned, with the demo users."""
    from opsdash.services.scan import record_pass, scan_root
    from opsdash.services.users import ensure_demo_users

    settings.STORAGES = {
        **settings.STORAGES,
        "staticfiles": {"BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"},
    }
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
    root = tmp_path / "branches"
    shutil.copytree(demo_root, root, symlinks=True)
    settings.OPSDASH_DATA_ROOT = root
    settings.OPSDASH_HOST_NAME = "pos-server-1"
    settings.OPSDASH_REFRESH_SECONDS = 0
    settings.OPSDASH_ARCHIVE_ROOT = tmp_path / "archive"
    ensure_demo_users(PASSWORD)
    record_pass(scan_root(root))
    return live_server.url


@pytest.fixture(scope="session")
def browser():
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        b = pw.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        yield b
        b.close()


@pytest.fixture
def page(browser, request):
    context = browser.new_context(viewport={"width": 1280, "height": 900}, accept_downloads=True)
    pg = context.new_page()
    pg.set_default_timeout(10_000)
    yield pg
    report = getattr(request.node, "rep_call", None)
    if report is not None and report.failed:
        ARTIFACTS.mkdir(exist_ok=True)
        pg.screenshot(path=str(ARTIFACTS / f"{request.node.name}.png"), full_page=True)
    context.close()


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    rep = outcome.get_result()
    setattr(item, f"rep_{rep.when}", rep)


def login(page, site: str, username: str) -> None:
    page.goto(f"{site}/accounts/login/")
    page.get_by_label("User name").fill(username)
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Log in").click()
    page.wait_for_url(f"{site}/")


def axe_violations(page) -> list[dict]:
    """Serious and critical axe-core violations of the page as it is now."""
    if not AXE.exists():
        pytest.fail(f"{AXE} is missing: run `npm ci --prefix tests/browser`")
    # Evaluated through the DevTools protocol: the page's CSP (script-src 'self') stays on.
    page.evaluate(AXE.read_text())
    result = page.evaluate("async () => await axe.run(document, {resultTypes: ['violations']})")
    return [
        {"id": v["id"], "impact": v["impact"], "help": v["help"], "nodes": [n["target"] for n in v["nodes"]][:5]}
        for v in result["violations"]
        if v["impact"] in ("serious", "critical")
    ]
