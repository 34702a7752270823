"""Whole flows for each role, driven as a person would: what they click, type and see.

The job worker runs in the test's thread (as the web process's worker thread would), so a test
decides when a queued job runs and can hold a job halfway to look at its progress bar.
"""

from __future__ import annotations

import csv
import dataclasses
import hashlib
import io
import re
from pathlib import Path

import pytest
from playwright.sync_api import expect

from .conftest import PASSWORD, axe_violations, login

pytestmark = pytest.mark.django_db(transaction=True)

HOST = "pos-server-1"
STATUSES = ("healthy", "warning", "critical", "gone")
JOB_STATUSES = ("queued", "running", "succeeded", "failed")


def run_jobs() -> None:
    """The host's worker runs every queued job, then stops."""
    from opsdash.services.worker import make_worker

    make_worker(HOST, batch=True).run()


def module_url(site: str, branch: str, module: str) -> str:
    return f"{site}/modules/{HOST}/{branch}/{module}/"


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


@pytest.fixture
def errors(page):
    """Console errors and uncaught exceptions of every page the test opens."""
    seen: list[str] = []
    page.on(
        "console",
        lambda msg: (
            seen.append(f"console.{msg.type}: {msg.text} ({msg.location.get('url')})") if msg.type == "error" else None
        ),
    )
    page.on("pageerror", lambda exc: seen.append(f"pageerror: {exc}"))
    return seen


@pytest.fixture
def data_root(site, settings) -> Path:
    return Path(settings.OPSDASH_DATA_ROOT)


def live_dir(root: Path, branch: str, module: str) -> Path:
    return root / branch / "modules" / module / "live"


# --- operator: rebuild -------------------------------------------------------------------------


def test_an_operator_confirms_a_rebuild_watches_it_run_and_sees_the_module_healthy_everywhere(
    site, page, monkeypatch, errors
):
    """maadi/pos: a meta whose totalEvents is "abc" (critical); the rebuild's diff shows the fix."""
    from opsdash.actions import ACTIONS

    login(page, site, "operator")
    page.goto(module_url(site, "maadi", "pos"))
    expect(page.locator("h1 .badge")).to_have_text(re.compile("critical"))
    actions = page.get_by_role("region", name="Actions")
    yes = actions.get_by_role("button", name="Yes, rebuild meta maadi/pos")
    # Nothing runs on one click: the button sits behind a question naming the module.
    expect(yes).to_be_hidden()
    actions.get_by_text("Rebuild meta…").click()
    expect(actions.get_by_text("Back up the meta and rebuild it from the log for maadi/pos?")).to_be_visible()
    yes.click()

    job = page.locator("#job-area")
    bar = job.get_by_role("progressbar", name="Progress")
    expect(job.locator(".job-status")).to_have_text("queued")
    expect(bar).to_be_visible()
    expect(job).to_contain_text(f"waiting for the worker of {HOST}")

    # Hold the job halfway and look at the page while it runs (the page polls every second).
    real, seen = ACTIONS["rebuild"].runner, []

    def held(job_row, progress, audit):
        progress(1, 2, "halfway through the log")
        try:
            expect(job.locator(".job-status")).to_have_text("running")
            expect(bar).to_have_attribute("value", "0.500")
            expect(job).to_contain_text("halfway through the log")
            expect(page.locator("h1 .badge")).to_have_text(re.compile("critical"))  # not swapped while it runs
        except AssertionError as exc:  # the worker would record it as a failed job: keep it for the test
            seen.append(exc)
        return real(job_row, progress, audit)

    monkeypatch.setitem(ACTIONS, "rebuild", dataclasses.replace(ACTIONS["rebuild"], runner=held))
    run_jobs()
    if seen:
        raise seen[0]

    expect(job.locator(".job-status")).to_have_text("succeeded")
    expect(bar).to_have_attribute("value", "1.000")
    diff = job.get_by_role("table", name="What the rebuild changed in the meta")
    expect(diff.get_by_role("columnheader")).to_have_text(["Field", "Change", "Before", "After"])
    total = diff.get_by_role("row").filter(has=page.get_by_role("rowheader", name="totalEvents"))
    expect(total.get_by_role("cell")).to_have_text(["changed", re.compile(r'^"?abc"?$'), re.compile(r"^\d+$")])
    expect(job).to_contain_text(re.compile(r"status now\W+healthy"))
    expect(page.locator("h1 .badge")).to_have_text(re.compile("healthy"))

    # The job has its own page, linked from the result.
    job.get_by_role("link", name=re.compile(r"^job \d+$")).click()
    expect(page).to_have_url(re.compile(r"/jobs/\d+/$"))
    expect(page.get_by_role("heading", level=1)).to_contain_text("Rebuild meta: maadi/pos")
    expect(page.get_by_role("table", name="What the rebuild changed in the meta")).to_be_visible()

    # The overview and the module's timeline agree.
    page.get_by_role("navigation", name="Main").get_by_role("link", name="Overview").click()
    row = page.get_by_role("row").filter(has=page.get_by_role("link", name="pos", exact=True)).filter(has_text="maadi")
    expect(row.locator(".badge")).to_have_text(re.compile("healthy"))
    expect(row.get_by_text("Rebuild…")).to_have_count(0)  # offered for critical modules only
    row.get_by_role("link", name="pos").click()
    expect(page.get_by_role("region", name="Incident timeline")).to_contain_text("rebuilt by operator")
    assert errors == []


# --- operator: backups -------------------------------------------------------------------------


def test_an_operator_downloads_verifies_archives_and_cleans_up(site, page, data_root, settings, errors):
    login(page, site, "operator")
    page.goto(module_url(site, "dar", "joborders"))
    backups = page.get_by_role("region", name="Backups").get_by_role("table")
    rows = backups.locator("tbody tr")
    expect(rows).to_have_count(3)
    first = rows.first
    name = first.locator("td").nth(1).inner_text().strip()
    shown_sha = first.locator(".sha").get_attribute("title")
    on_disk = (live_dir(data_root, "dar", "joborders") / name).read_bytes()

    with page.expect_download() as info:
        first.get_by_role("link", name="Download").click()
    got = Path(info.value.path()).read_bytes()
    assert got == on_disk and sha256(got) == shown_sha
    assert name in info.value.suggested_filename

    def act(label: str, module: str) -> None:
        panel = page.get_by_role("region", name="Actions")
        panel.get_by_text(f"{label}…").click()
        panel.get_by_role("button", name=f"Yes, {label.lower()} {module}").click()
        expect(page.locator("#job-area .job-status")).to_have_text("queued")
        run_jobs()
        expect(page.locator("#job-area .job-status")).to_have_text("succeeded")

    act("Verify now", "dar/joborders")
    expect(page.locator("#job-area")).to_contain_text(re.compile(r"healthy\W+backup_present"))

    act("Archive backups", "dar/joborders")
    job = page.locator("#job-area")
    expect(job).to_contain_text(re.compile(r"3 backups? ?(\(s\))? archived, each verified by sha256"))
    expect(job.get_by_role("listitem").filter(has_text=name)).to_contain_text(f"archived, sha256 {shown_sha[:16]}")
    assert not list(live_dir(data_root, "dar", "joborders").glob("*.bak"))
    archived = list(Path(settings.OPSDASH_ARCHIVE_ROOT).rglob(name))
    assert len(archived) == 1 and sha256(archived[0].read_bytes()) == shown_sha

    page.reload()
    expect(page.locator("h1 .badge")).to_have_text("healthy")
    expect(page.get_by_role("region", name="Findings")).to_contain_text("No findings")
    for i in range(3):
        expect(rows.nth(i).locator("td").nth(5)).to_contain_text("archived")
    row = rows.filter(has_text=name)
    expect(row.get_by_text("to the archive")).to_have_attribute("title", str(archived[0]))
    with page.expect_download() as info:  # still served from the archive
        row.get_by_role("link", name="Download").click()
    assert sha256(Path(info.value.path()).read_bytes()) == shown_sha

    # A module with an orphan temp file of an interrupted write.
    temp = live_dir(data_root, "zamalek", "joborders")
    assert len(list(temp.glob("events.meta.json.tmp.*"))) == 1
    page.goto(module_url(site, "zamalek", "joborders"))
    expect(page.get_by_role("region", name="Findings")).to_contain_text("temp_orphan")
    act("Clean temp files", "zamalek/joborders")
    removed = page.locator("#job-area").get_by_role("listitem")
    expect(removed).to_have_count(1)
    expect(removed).to_contain_text(re.compile(r"events\.meta\.json\.tmp\.\S+ removed"))
    expect(page.locator("h1 .badge")).to_have_text("healthy")
    assert not list(temp.glob("events.meta.json.tmp.*"))
    assert errors == []


# --- auditor -----------------------------------------------------------------------------------


def _operator_did_some_work() -> None:
    """What the audit trail shows: an operator's verifications and a clean-up, as the worker ran them."""
    from opsdash.services.jobs import request_job

    request_job("verify", HOST, "zamalek", "kds", "operator", "127.0.0.1")
    request_job("clean_temp", HOST, "zamalek", "joborders", "operator", "127.0.0.1")
    request_job("verify", HOST, "dar", "pos", "operator", "127.0.0.1")
    run_jobs()


def test_an_auditor_filters_the_audit_trail_exports_it_and_changes_nothing(site, page, errors):
    _operator_did_some_work()
    login(page, site, "auditor")

    # The auditor downloads a backup: that is audited too.
    page.get_by_role("navigation", name="Main").get_by_role("link", name="Backups").click()
    expect(page).to_have_url(f"{site}/backups/")
    table = page.get_by_role("table")
    expect(table.locator("tbody tr").first).to_be_visible()
    with page.expect_download() as info:
        table.locator("tbody tr").first.get_by_role("link", name="Download").click()
    assert info.value.failure() is None

    page.get_by_role("navigation", name="Main").get_by_role("link", name="Audit trail").click()
    expect(page.get_by_role("heading", name="Audit trail")).to_be_visible()
    rows = page.get_by_role("table").locator("tbody tr")
    expect(rows).to_have_count(5)  # three jobs, the download, and the auditor's own login
    expect(page.get_by_text("Export these 5 entries")).to_be_visible()

    page.get_by_role("combobox", name="Branch").select_option("zamalek")
    expect(page).to_have_url(re.compile(r"[?&]branch=zamalek(&|$)"))
    expect(rows).to_have_count(2)
    for i in range(2):
        expect(rows.nth(i)).to_contain_text("operator")
        expect(rows.nth(i)).to_contain_text(f"{HOST}:zamalek/")
    page.get_by_role("combobox", name="Action").select_option("verify")
    expect(page).to_have_url(re.compile(r"[?&]action=verify(&|$)"))
    expect(rows).to_have_count(1)
    expect(rows.first).to_contain_text("zamalek/kds")
    expect(rows.first.locator("td").nth(6)).to_contain_text("ok")

    # The filter survives a reload (it lives in the URL), and the export has the same rows.
    page.reload()
    expect(rows).to_have_count(1)
    with page.expect_download() as info:
        page.get_by_role("link", name="CSV").click()
    assert info.value.suggested_filename.endswith(".csv")
    lines = list(csv.reader(io.StringIO(Path(info.value.path()).read_text(encoding="utf-8"))))
    assert lines[0][:6] == ["id", "at", "actor", "ip", "action", "host"]
    assert {"branch", "module", "outcome", "meta_sha256_before", "meta_sha256_after"} <= set(lines[0])
    body = [dict(zip(lines[0], line, strict=True)) for line in lines[1:]]
    assert [(r["actor"], r["action"], r["branch"], r["module"], r["outcome"]) for r in body] == [
        ("operator", "verify", "zamalek", "kds", "ok")
    ]

    # The auditor's own download is on record.
    page.goto(f"{site}/audit/?actor=auditor")
    expect(rows).to_have_count(2)
    expect(rows.first).to_contain_text("backup_download")
    expect(rows.nth(1)).to_contain_text("login")

    # Reviewing never offers a repair.
    for path in ("/", module_url(site, "dar", "pos").removeprefix(site), "/?branch=dar"):
        page.goto(site + path)
        assert_no_actions(page)
    assert errors == []


# --- manager -----------------------------------------------------------------------------------


def assert_no_actions(page) -> None:
    """In the page's content: no action buttons, no confirmations, no forms that post."""
    main = page.get_by_role("main")
    expect(main.get_by_role("heading", level=1)).to_be_visible()
    names = [b.inner_text().strip() for b in main.get_by_role("button").all()]
    assert set(names) <= {"Apply"}, names
    expect(main.locator("summary")).to_have_count(0)
    expect(main.locator("form[method=post]")).to_have_count(0)
    expect(main.get_by_role("region", name="Actions")).to_have_count(0)
    expect(main.get_by_role("columnheader", name="Actions")).to_have_count(0)


POST_ATTEMPT = """async ([url, body]) => {
  const token = document.querySelector('input[name=csrfmiddlewaretoken]').value;
  const r = await fetch(url, {method: 'POST', headers: {'X-CSRFToken': token, 'Content-Type': 'application/x-www-form-urlencoded'},
                              body, credentials: 'same-origin', redirect: 'manual'});
  return r.status;
}"""


def test_a_manager_sees_no_actions_anywhere_and_a_forged_post_gets_403(site, page, data_root, errors):
    login(page, site, "manager")
    page.goto(f"{site}/")
    assert_no_actions(page)
    page.get_by_role("combobox", name="Branch").select_option("dar")
    page.get_by_role("button", name="Apply").click()
    expect(page).to_have_url(re.compile(r"[?&]branch=dar(&|$)"))
    expect(page.get_by_role("table").locator("tbody tr")).to_have_count(3)
    assert_no_actions(page)  # no whole-branch actions either
    page.get_by_role("row").filter(has_text="meta_corrupt").get_by_role("link", name="pos").click()
    expect(page.locator("h1 .badge")).to_have_text("critical")
    assert_no_actions(page)
    expect(page.get_by_role("link", name="Download")).to_have_count(0)  # downloads are for operators and auditors

    meta = live_dir(data_root, "dar", "pos") / "events.meta.json"
    before = meta.read_bytes()
    base = f"/modules/{HOST}/dar/pos"
    attempts = {
        f"{base}/rebuild": "",
        f"{base}/archive_backups": "",
        f"/api{base}/rebuild": "",
        f"/branches/{HOST}/dar/bulk_rebuild": "confirm=dar",
        f"/branches/{HOST}/dar/bulk_archive": "confirm=dar",
    }
    statuses = {url: page.evaluate(POST_ATTEMPT, [url, body]) for url, body in attempts.items()}
    assert statuses == dict.fromkeys(attempts, 403)
    assert meta.read_bytes() == before
    page.reload()
    expect(page.locator("h1 .badge")).to_have_text("critical")
    expect(page.locator(".job")).to_have_count(0)
    errors[:] = [e for e in errors if "403" not in e]  # the refused fetches themselves
    assert errors == []


# --- keyboard only -----------------------------------------------------------------------------

FOCUSED = """() => {
  const el = document.activeElement;
  if (!el || el === document.body || el === document.documentElement) return null;
  const s = getComputedStyle(el);
  const text = (el.getAttribute('aria-label') || el.innerText || el.value || '').trim().replace(/\\s+/g, ' ');
  return {key: el.dataset.kb || '', tag: el.tagName.toLowerCase(), name: el.getAttribute('name') || '', text,
          href: el.getAttribute('href') || '', outline: s.outlineStyle, outlineWidth: parseFloat(s.outlineWidth) || 0,
          shadow: s.boxShadow, open: el.tagName === 'SUMMARY' ? el.parentElement.open : null};
}"""

# Every visible control a person could operate, numbered so the Tab walk can tell them apart.
MARK_CONTROLS = """() => {
  const sel = 'a[href], button:not([disabled]), summary, input:not([type=hidden]):not([disabled]), select, textarea, [tabindex]:not([tabindex="-1"])';
  const out = [];
  document.querySelectorAll(sel).forEach((el, i) => {
    if (!el.checkVisibility({visibilityProperty: true})) return;
    el.dataset.kb = String(i);
    out.push({key: String(i), tag: el.tagName.toLowerCase(), text: (el.innerText || el.getAttribute('aria-label') || el.name || '').trim()});
  });
  return out;
}"""


def focus_is_visible(f: dict) -> bool:
    return (f["outline"] != "none" and f["outlineWidth"] > 0) or f["shadow"] not in ("none", "")


def focused(page) -> dict | None:
    return page.evaluate(FOCUSED)


def press(page, key: str) -> dict | None:
    page.keyboard.press(key)
    f = focused(page)
    assert f is None or focus_is_visible(f), f"focus is not visible on {f}"
    return f


def tab_to(page, match, limit: int = 250, back: bool = False) -> dict:
    """Tab (or Shift+Tab) until the focused element matches; every stop must show its focus."""
    f = focused(page)
    for _ in range(limit):
        f = press(page, "Shift+Tab" if back else "Tab")
        if f is not None and match(f):
            return f
    raise AssertionError(f"not reached with the keyboard in {limit} presses (last focus {f})")


def tab_through_everything(page) -> int:
    """One full Tab cycle reaches every visible control of the page, each with a visible focus."""
    controls = {c["key"]: c for c in page.evaluate(MARK_CONTROLS)}
    page.evaluate("() => document.activeElement && document.activeElement.blur()")
    reached: list[str] = []
    outside = 0
    for _ in range(3 * len(controls) + 20):  # a date field takes a Tab per part (day, month, year)
        f = press(page, "Tab")
        if f is None:  # past the end (Tab starts after the last control used): go on from the top
            outside += 1
            if outside > 3:
                break
        elif reached and f["key"] == reached[-1]:  # the next part of the same field
            continue
        elif reached and f["key"] == reached[0]:  # round again
            break
        else:
            reached.append(f["key"])
    missed = [c for key, c in controls.items() if key not in reached]
    assert missed == [], f"not reachable with Tab: {missed} (reached {reached})"
    return len(reached)


def test_keyboard_only_log_in_open_a_module_and_rebuild_it(site, page, errors):
    page.goto(f"{site}/accounts/login/")
    f = focused(page)
    if f is None or f["name"] != "login":
        f = tab_to(page, lambda f: f["name"] == "login")
    page.keyboard.type("operator")
    assert press(page, "Tab")["name"] == "password"
    page.keyboard.type(PASSWORD)
    page.keyboard.press("Enter")
    page.wait_for_url(f"{site}/")

    # The overview, its filters and every row's controls; the branch page with its bulk forms.
    assert tab_through_everything(page) > 15 * 2  # every row has at least a module link and controls
    page.goto(f"{site}/?branch=dar")
    expect(page.get_by_role("button", name="Rebuild every critical module")).to_be_visible()
    assert tab_through_everything(page) > 3 * 2
    tab_to(page, lambda f: f["href"].endswith("/dar/pos/"), back=True)
    page.keyboard.press("Enter")
    page.wait_for_url(module_url(site, "dar", "pos"))
    expect(page.locator("h1 .badge")).to_have_text(re.compile("critical"))
    assert tab_through_everything(page) > 15  # findings, actions, backups, meta

    # Every action opens from the keyboard and its confirming button is the next stop.
    for label in ("Verify now", "Archive backups", "Clean temp files", "Rebuild meta"):
        summary = tab_to(page, lambda f, label=label: f["tag"] == "summary" and f["text"] == f"{label}…")
        assert summary["open"] is False
        f = press(page, "Enter")
        assert f["open"] is True
        yes = press(page, "Tab")
        assert yes["tag"] == "button" and yes["text"] == f"Yes, {label.lower()} dar/pos", yes
        if label != "Rebuild meta":
            assert press(page, "Shift+Tab")["open"] is True
            assert press(page, "Enter")["open"] is False  # closed again, nothing done
    expect(page.locator("#job-area .job")).to_have_count(0)

    page.keyboard.press("Space")  # on "Yes, rebuild meta dar/pos"
    expect(page.locator("#job-area .job-status")).to_have_text("queued")

    # The job area is replaced every second while the job runs: focus on its link must survive that.
    link = tab_to(page, lambda f: re.fullmatch(r"job \d+", f["text"]) is not None)
    with page.expect_response(lambda r: re.search(r"/jobs/\d+/$", r.url) is not None):
        pass  # one poll
    page.wait_for_function("() => !document.querySelector('.htmx-settling, .htmx-swapping')")
    assert focused(page) == link
    run_jobs()
    expect(page.locator("#job-area .job-status")).to_have_text("succeeded")
    expect(page.locator("h1 .badge")).to_have_text(re.compile("healthy"))
    assert focused(page) == link
    page.keyboard.press("Enter")
    expect(page).to_have_url(re.compile(r"/jobs/\d+/$"))
    assert errors == []


# --- status in words ---------------------------------------------------------------------------

STATUS_WORDS = """() => {
  const out = [];
  document.querySelectorAll('[class*="status-"], .job-status, .finding[class*="sev-"]').forEach(el => {
    const m = el.className.match(/(?:status|sev)-([a-z]+)/);
    out.push({cls: el.className, want: m ? m[1] : '', text: (el.innerText || '').trim(),
              label: el.getAttribute('aria-label') || '', title: el.getAttribute('title') || ''});
  });
  return out;
}"""


def assert_status_in_words(page) -> int:
    """Every element coloured by a status also names it in text."""
    # htmx gives a swapped-in element its old class for a moment (the settle step): wait for the new one.
    page.wait_for_function("() => !document.querySelector('.htmx-settling, .htmx-swapping')")
    seen = page.evaluate(STATUS_WORDS)
    wrong = []
    for el in seen:
        words = el["text"].lower()
        if "job-status" in el["cls"]:
            ok = words in JOB_STATUSES
        elif "status-" in el["cls"]:
            ok = el["want"] in STATUSES and el["want"] in words
        elif el["want"] == "info":
            ok = "info" in words
        else:
            ok = el["want"] in words
        if not ok:
            wrong.append(el)
    assert wrong == [], wrong
    return len(seen)


def test_a_status_is_never_shown_by_colour_alone(site, page):
    login(page, site, "operator")
    assert assert_status_in_words(page) >= 15 + 3  # a badge per row and per status count
    page.goto(f"{site}/history/")
    assert assert_status_in_words(page) > 0
    page.goto(module_url(site, "dar", "pos"))
    assert assert_status_in_words(page) > 1
    # From the overview's row this time: a plain form post that lands on the module page's job.
    page.get_by_role("navigation", name="Main").get_by_role("link", name="Overview").click()
    row = page.get_by_role("row").filter(has_text="meta_corrupt")
    row.get_by_text("Rebuild…").click()
    row.get_by_role("button", name="Yes, rebuild meta dar/pos").click()
    expect(page).to_have_url(re.compile(r"/modules/pos-server-1/dar/pos/\?job=\d+#job-area$"))
    expect(page.locator("#job-area .job-status")).to_have_text("queued")
    assert_status_in_words(page)
    run_jobs()
    expect(page.locator("#job-area .job-status")).to_have_text("succeeded")
    # The meta was not valid JSON: the result says so before comparing what could be read of it.
    expect(page.locator("#job-area")).to_contain_text(re.compile(r"The old meta was damaged \(.*line \d+ column \d+"))
    assert_status_in_words(page)
    page.locator("#job-area").get_by_role("link", name=re.compile(r"^job \d+$")).click()
    expect(page).to_have_url(re.compile(r"/jobs/\d+/$"))
    assert assert_status_in_words(page) >= 3  # the module's badge, the job's, the result's


# --- the remaining pages: no console errors, no serious accessibility violations, all by Tab -----

JOURNALD = """\
Oct 27 12:23:47 pos1 node[811]: [eventStore][loadMeta] CORRUPTED FILE DETECTED - Attempting recovery
Oct 27 12:23:47 pos1 node[811]: [eventStore][loadMeta] Error: Unexpected token : in JSON at position 2884
Oct 27 12:23:47 pos1 node[811]: [eventStore][loadMeta] File path: {meta}
Oct 27 12:23:47 pos1 node[811]: [eventStore][loadMeta] Corrupted file backed up to: {meta}.corrupted.1761567827663.bak
Oct 27 12:23:47 pos1 node[811]: [eventStore][loadMeta] Attempting to rebuild meta from event log...
Oct 27 12:23:47 pos1 node[811]: [eventStore][loadMeta] Recovered meta from 3 events
Oct 27 12:23:47 pos1 node[811]: [eventStore][loadMeta] Meta file rebuilt successfully
Oct 28 09:00:01 pos1 node[811]: [eventStore][loadMeta] CORRUPTED FILE DETECTED - Attempting recovery
Oct 28 09:00:01 pos1 node[811]: [eventStore][loadMeta] Error: Unexpected end of JSON input
Oct 28 09:00:01 pos1 node[811]: [eventStore][loadMeta] File path: {meta}
Oct 28 09:00:01 pos1 node[811]: [eventStore][loadMeta] Recovery failed: ENOSPC: no space left on device
"""


def test_history_timeline_recoveries_job_backup_and_audit_pages_are_clean(site, page, data_root, errors):
    from opsdash.services.ingest import ingest

    meta = live_dir(data_root, "dar", "kds") / "events.meta.json"
    report = ingest(JOURNALD.format(meta=meta).splitlines(keepends=True), source="journal", host=HOST, year=2025)
    assert report.new == 2
    _operator_did_some_work()
    problems: dict[str, list] = {}

    def check(what: str) -> None:
        expect(page.get_by_role("heading", level=1)).to_be_visible()
        page.wait_for_load_state("load")
        leaked = re.findall(r"\{[#%].{0,40}", page.locator("body").inner_text())
        if leaked:
            errors.append(f"template syntax on the page: {leaked}")
        found = axe_violations(page)
        try:
            tab_through_everything(page)
        except AssertionError as exc:
            found.append(str(exc))
        if found or errors:
            problems[what] = found + errors[:]
        errors.clear()

    login(page, site, "auditor")
    page.goto(f"{site}/history/")
    expect(page.get_by_role("img", name="Incidents per day")).to_be_visible()
    check("history")
    page.get_by_role("combobox", name="State").select_option("open")
    expect(page).to_have_url(re.compile(r"[?&]state=open(&|$)"))
    expect(page.get_by_role("table").locator("tbody tr").first).to_contain_text("open")
    check("history, filtered")

    page.goto(module_url(site, "dar", "kds"))
    recoveries = page.get_by_role("region", name="Recoveries in the store server's log")
    expect(recoveries).to_contain_text("the store server rebuilt the meta from 3 events")
    expect(recoveries).to_contain_text("ENOSPC: no space left on device")
    expect(page.get_by_role("region", name="Incident timeline").get_by_role("listitem").first).to_be_visible()
    check("module page with its timeline and server recoveries")

    page.goto(f"{site}/audit/")
    expect(page.get_by_role("table").locator("tbody tr")).to_have_count(4)  # three jobs and this login
    check("audit trail")
    page.get_by_role("table").get_by_role("link").filter(has_text="zamalek/joborders").click()
    expect(page).to_have_url(module_url(site, "zamalek", "joborders"))

    page.goto(f"{site}/backups/")
    page.get_by_role("table").locator("tbody tr").first.get_by_role("link", name=re.compile(r"^events\.")).click()
    expect(page.get_by_role("heading", level=1)).to_contain_text("events.")
    check("backup page")

    # The job pages, as the operator who ran them.
    page.get_by_role("button", name="Log out").click()
    login(page, site, "operator")
    from opsdash.models import Job

    for job in Job.objects.order_by("pk"):
        page.goto(f"{site}/jobs/{job.pk}/")
        expect(page.locator(".job-status")).to_have_text("succeeded")
        check(f"job page ({job.kind})")
    page.goto(module_url(site, "dar", "joborders"))
    page.get_by_role("region", name="Backups").get_by_role("link", name="Preview").first.click()
    expect(page.locator("#backup-preview pre")).to_be_visible()
    check("module page with a backup preview")
    assert problems == {}


def test_a_second_action_on_a_busy_module_says_why_and_keeps_the_first_in_view(site, page, errors):
    login(page, site, "operator")
    page.goto(module_url(site, "dar", "pos"))
    panel = page.get_by_role("region", name="Actions")
    panel.get_by_text("Verify now…").click()
    panel.get_by_role("button", name="Yes, verify now dar/pos").click()
    job = page.locator("#job-area")
    expect(job.locator(".job-status")).to_have_text("queued")

    panel.get_by_text("Rebuild meta…").click()
    panel.get_by_role("button", name="Yes, rebuild meta dar/pos").click()
    expect(job.get_by_role("alert")).to_contain_text("operator")  # who holds the module
    # The verification still shows, and still follows its job to the end.
    expect(job.locator(".job-status")).to_have_text("queued")
    run_jobs()
    expect(job.locator(".job-status")).to_have_text("succeeded")
    expect(page.locator("h1 .badge")).to_have_text(re.compile("critical"))  # verified, not repaired
    assert [e for e in errors if "status of 409 (Conflict)" not in e] == []  # the refused request itself


def test_an_operator_repairs_a_whole_branch_only_after_typing_its_name(site, page, errors):
    login(page, site, "operator")
    page.get_by_role("combobox", name="Branch").select_option("heliopolis")
    page.get_by_role("button", name="Apply").click()
    bulk = page.get_by_role("region", name="Whole branch heliopolis")
    confirm = bulk.get_by_role("textbox", name=re.compile(r"^Rebuild every critical module: type the branch name"))
    confirm.fill("helio")
    bulk.get_by_role("button", name="Rebuild every critical module").click()
    expect(page.get_by_role("status")).to_contain_text(
        "Type the branch name “heliopolis” to confirm; nothing was done."
    )
    expect(page).to_have_url(re.compile(r"/\?branch=heliopolis$"))

    confirm.fill("heliopolis")
    bulk.get_by_role("button", name="Rebuild every critical module").click()
    expect(page).to_have_url(re.compile(r"/jobs/\d+/$"))
    expect(page.locator(".job-status")).to_have_text("queued")
    run_jobs()
    expect(page.locator(".job-status")).to_have_text("succeeded")
    job = page.locator(".job")
    expect(job.get_by_role("progressbar", name="Progress")).to_have_attribute("value", "1.000")
    expect(job).not_to_contain_text("now kds")  # no "in progress" words on a finished job
    expect(job.get_by_role("listitem")).to_have_text([re.compile(r"^kds: rebuilt from \d+ events")])
    assert errors == []


def test_the_overview_refresh_never_takes_away_what_the_operator_is_doing(site, page, settings, errors):
    settings.OPSDASH_REFRESH_SECONDS = 1
    login(page, site, "operator")
    page.goto(f"{site}/?branch=dar")

    def refreshed(within: float) -> bool:
        try:
            with page.expect_request(
                lambda r: r.url.endswith("/?branch=dar") and r.headers.get("hx-request") == "true",
                timeout=within * 1000,
            ):
                pass
        except Exception:  # Playwright's TimeoutError
            return False
        return True

    assert refreshed(6)  # the table keeps itself current

    # An open confirmation stays open, and the refresh waits for it.
    row = page.get_by_role("row").filter(has_text="meta_corrupt")
    row.get_by_text("Rebuild…").click()
    yes = row.get_by_role("button", name="Yes, rebuild meta dar/pos")
    expect(yes).to_be_visible()
    assert not refreshed(2.5)
    expect(yes).to_be_visible()
    row.get_by_text("Rebuild…").click()  # closed again
    expect(yes).to_be_hidden()

    # Half-typed confirmation of a whole-branch action, with focus in it.
    field = page.get_by_role("textbox", name=re.compile(r"^Archive every backup: type the branch name"))
    field.click()
    page.keyboard.type("da")
    assert not refreshed(2.5)
    expect(field).to_have_value("da")
    expect(field).to_be_focused()

    # Done with it: the refresh resumes.
    field.fill("")
    page.get_by_role("heading", level=1).click()
    assert refreshed(6)
    assert errors == []
