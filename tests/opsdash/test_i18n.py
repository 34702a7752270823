"""English and Arabic: the switcher, right-to-left pages, localised dates and numbers, and a
translation catalogue that covers every string of the templates and the code."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

import pytest
from django.conf import settings
from django.test import Client
from django.urls import reverse
from django.utils import translation
from hypothesis import given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st

from eventstore import CODES
from opsdash.models import Backup, ModuleState
from opsdash.services.scan import scan_root
from opsdash.templatetags.opsdash_tags import finding_text, number

pytestmark = pytest.mark.django_db

ROOT = Path(__file__).resolve().parents[2]
BACKUP_NAME = "events.meta.json.corrupted.1760000000000.bak"


@pytest.fixture
def scanned(store, add_events):
    pos = store.module("dar", "pos")
    add_events(pos, count=1234)
    (pos.live_dir / BACKUP_NAME).write_text('{\n  "totalEvents": 3\n}\n}')
    kds = store.module("dar", "kds")
    add_events(kds)
    kds.meta_path.write_text(kds.meta_path.read_text() + "\n}")
    scan_root()
    return ModuleState.objects.get(module="kds")


def arabic(client: Client) -> Client:
    client.cookies[settings.LANGUAGE_COOKIE_NAME] = "ar"
    return client


def _pages() -> list[str]:
    kds = ModuleState.objects.get(module="kds")
    return [
        reverse("opsdash:module_list"),
        kds.get_absolute_url(),
        reverse("opsdash:incident_list"),
        reverse("opsdash:backup_list"),
        Backup.objects.get().get_absolute_url(),
        reverse("opsdash:audit_list"),
    ]


def test_english_is_the_default_and_left_to_right(scanned, auditor_client):
    for url in _pages():
        html = auditor_client.get(url).content.decode()
        assert '<html lang="en" dir="ltr">' in html, url
        assert 'name="language" value="ar" lang="ar" dir="rtl">العربيّة<' in html, url  # the switcher offers Arabic


def test_every_page_in_arabic_is_right_to_left_and_translated(scanned, auditor_client):
    arabic(auditor_client)
    for url in _pages():
        response = auditor_client.get(url)
        assert response.status_code == 200, url
        html = response.content.decode()
        assert '<html lang="ar" dir="rtl">' in html, url
        assert "نظرة عامة" in html and "تسجيل الخروج" in html, url  # the header
        assert ">English</button>" in html, url  # the switcher offers English back
        # No English heading or column title is left over.
        for text in re.findall(r"<(?:h1|h2|th)[^>]*>([^<]+)<", html):
            assert not re.search(r"[A-Za-z]{4,}", text) or text.strip() in ("sha256",), (url, text)


def test_arabic_module_page_words_for_values_and_the_machine_text_stays_readable(scanned, operator_client):
    html = arabic(operator_client).get(scanned.get_absolute_url()).content.decode()
    assert 'class="badge status-critical">حرج<' in html  # the status word, the class stays a value
    assert "الميتا ليست JSON صالحًا" in html  # what meta_corrupt means
    assert '<span class="code sev-critical">meta_corrupt</span>' in html  # the code itself is data
    # The store's message in Arabic, built from the finding's detail; the JSON parser's own words
    # stay English and are marked so.
    assert re.search(
        r'<p>الميتا ليست JSON صالحًا عند السطر \d+، العمود \d+ \(البايت [\d.]+\): <span lang="en" dir="ltr">[^<]+</span></p>',
        html,
    )
    assert "نعم، أعد بناء الميتا للوحدة dar/kds" in html  # the confirming button names the module
    assert '<pre class="raw" tabindex="0" aria-label="محتوى الميتا، تالف">' in html


def test_dates_and_numbers_follow_the_language(scanned, manager_client):
    when = datetime(2025, 11, 3, 14, 5, tzinfo=UTC)
    ModuleState.objects.filter(module="pos").update(last_event_at=when)
    english = manager_client.get(reverse("opsdash:module_list")).content.decode()
    assert ">2025-11-03 14:05</time>" in english and "1,234 / 1,234" in english
    arabic_html = arabic(manager_client).get(reverse("opsdash:module_list")).content.decode()
    assert ">3 نوفمبر 2025، 14:05</time>" in arabic_html and "1.234 / 1.234" in arabic_html
    with translation.override("ar"):
        assert number(1234567) == "1.234.567"
    with translation.override("en"):
        assert number(1234567) == "1,234,567" and number(None) == "–"


def test_the_browser_language_is_used_until_the_switcher_is(scanned, demo_users):
    client = Client(headers={"accept-language": "ar-EG,ar;q=0.9,en;q=0.5"})
    assert '<html lang="ar" dir="rtl">' in client.get(reverse("login")).content.decode()
    client = Client(headers={"accept-language": "fr-FR"})
    assert '<html lang="en" dir="ltr">' in client.get(reverse("login")).content.decode()


def test_the_switcher_works_on_the_login_page_and_is_remembered(demo_users):
    client = Client(enforce_csrf_checks=True)
    login_page = client.get(reverse("login"))
    token = login_page.cookies[settings.CSRF_COOKIE_NAME].value
    # Without the CSRF token nothing changes.
    refused = client.post(reverse("set_language"), {"language": "ar", "next": "/accounts/login/"})
    assert refused.status_code == 403 and settings.LANGUAGE_COOKIE_NAME not in refused.cookies
    response = client.post(
        reverse("set_language"), {"language": "ar", "next": "/accounts/login/", "csrfmiddlewaretoken": token}
    )
    assert response.status_code == 302 and response["Location"] == "/accounts/login/"
    cookie = response.cookies[settings.LANGUAGE_COOKIE_NAME]
    assert (
        cookie.value == "ar"
        and cookie["max-age"] == 365 * 24 * 3600
        and cookie["httponly"]
        and cookie["samesite"] == "Lax"
    )
    assert "تسجيل الدخول" in client.get(reverse("login")).content.decode()


def test_the_switcher_never_redirects_off_site_and_ignores_unknown_languages(demo_users):
    client = Client()
    response = client.post(reverse("set_language"), {"language": "ar", "next": "https://evil.example/"})
    assert response.status_code == 302 and response["Location"] == "/"
    response = client.post(reverse("set_language"), {"language": "xx", "next": "/"})
    assert settings.LANGUAGE_COOKIE_NAME not in response.cookies


def test_busy_and_refusal_messages_are_translated(scanned, operator_client):
    arabic(operator_client)
    url = reverse("opsdash:branch_bulk_rebuild", args=[scanned.host, "dar"])
    page = operator_client.post(url, {"confirm": "nope"}, follow=True).content.decode()
    assert "اكتب اسم الفرع «dar» للتأكيد؛ لم يُنفَّذ شيء." in page


def _po_entries(path: Path) -> dict[str, str]:
    """msgid -> first msgstr of a .po file (enough to find untranslated entries)."""
    entries, key, field, current = {}, None, None, {"msgid": "", "msgstr": ""}
    text = path.read_text(encoding="utf-8")
    for line in text.splitlines() + [""]:
        if not line.strip():
            if field:
                entries[current["msgid"]] = current["msgstr"]
            current, field = {"msgid": "", "msgstr": ""}, None
            continue
        if line.startswith("#"):
            continue
        m = re.match(r'^(msgid|msgid_plural|msgstr(?:\[0\])?|msgstr\[\d+\])\s+"(.*)"$', line)
        if m:
            key = m.group(1)
            field = "msgid" if key == "msgid" else "msgstr" if key in ("msgstr", "msgstr[0]") else None
            if field:
                current[field] = m.group(2)
        elif line.startswith('"') and field:
            current[field] += line[1:-1]
    return entries


def test_the_arabic_catalogue_translates_everything_and_the_shipped_mo_matches_it():
    po = ROOT / "locale" / "ar" / "LC_MESSAGES" / "django.po"
    mo = po.with_suffix(".mo")
    entries = _po_entries(po)
    assert len(entries) > 200
    untranslated = [k for k, v in entries.items() if k and not v]
    assert not untranslated
    assert "#, fuzzy" not in po.read_text(encoding="utf-8")
    # The compiled catalogue setup relies on (no gettext on a fresh machine) holds every entry.
    import gettext

    catalogue = gettext.GNUTranslations(mo.open("rb"))
    for msgid in entries:
        if msgid:
            assert catalogue._catalog.get(msgid) or catalogue._catalog.get((msgid, 0)), msgid
    # Placeholders survive translation (each as often as the language needs it; a plural's
    # singular may say "one" instead of %(n)s).
    for msgid, msgstr in entries.items():
        assert (
            set(re.findall(r"%\(\w+\)s|\{\w+\}", msgid)) == set(re.findall(r"%\(\w+\)s|\{\w+\}", msgstr))
            or "%(n)s" in msgid
        ), msgid


@pytest.mark.skipif(not shutil.which("xgettext"), reason="gettext is not installed (.ci/run installs it)")
def test_every_string_in_the_templates_and_the_code_is_in_the_catalogue(tmp_path):
    """makemessages over a copy of the project finds no string the committed catalogue lacks."""
    work = tmp_path / "project"
    for name in ("eventstore", "opsdash", "templates", "manage.py"):
        src = ROOT / name
        (shutil.copytree if src.is_dir() else shutil.copy)(src, work / name)
    shutil.copytree(ROOT / "locale", work / "locale")
    before = set(_po_entries(work / "locale/ar/LC_MESSAGES/django.po"))
    subprocess.run(
        [sys.executable, "manage.py", "makemessages", "-l", "ar", "--no-location", "--no-obsolete"],
        cwd=work,
        check=True,
        capture_output=True,
        env={"PATH": "/usr/bin:/bin", "PYTHONPATH": str(ROOT)},
    )
    after = set(_po_entries(work / "locale/ar/LC_MESSAGES/django.po"))
    assert after - before == set(), "new strings: run makemessages -l ar, translate them, compilemessages"
    assert before - after == set(), "strings no longer used: run makemessages -l ar --no-obsolete"


def test_every_finding_code_is_explained_in_the_pages_words():
    """Every code's meaning (eventstore.FINDING_SPECS, the one table) is in the catalog and so
    told in Arabic; in English it is the library's words."""
    from eventstore.health import FINDING_SPECS
    from opsdash.findings import MEANINGS

    assert set(MEANINGS) == set(FINDING_SPECS)
    for code, spec in FINDING_SPECS.items():
        with translation.override("en"):
            assert str(MEANINGS[code]) == spec.meaning
        with translation.override("ar"):
            assert str(MEANINGS[code]) != spec.meaning, f"{code}: no Arabic for {spec.meaning!r}"


# -- a finding's sentence in the page's language --------------------------------------------


def _findings_of_every_shape(tmp_path) -> list[dict]:
    """Every finding the store writes: the demo's damage, and the meta_invalid and unreadable
    shapes the demo does not make."""
    from eventstore import EventStore
    from eventstore.demo import write_demo_root

    root = tmp_path / "demo"
    root.mkdir()
    write_demo_root(root, events_per_module=20)
    store = EventStore(root)
    out = [f.to_dict() for m in store.modules() for f in m.check().findings]
    odd = store.module("odd", "pos")
    odd.append_event({"table": "t", "record": {"id": "1"}})
    for meta in (
        b"[1]",
        b'{"totalEvents": -1}',
        b'{"totalEvents": 1, "lastAckId": 5, "tableCursors": [], "branchId": "other"}',
    ):
        odd.meta_path.write_bytes(meta)
        out += [f.to_dict() for f in odd.check().findings]
    odd.meta_path.unlink()
    odd.meta_path.symlink_to(tmp_path / "elsewhere")
    out += [f.to_dict() for f in odd.check().findings]
    changed = store.module("changed", "pos")  # a byte changed in place after a read: a full read finds it
    changed.append_event({"table": "t", "record": {"id": "10"}})
    state = changed.check().state
    data = bytearray(changed.log_path.read_bytes())
    data[data.index(b'"10"') + 1] = ord("7")
    stat = changed.log_path.stat()
    changed.log_path.write_bytes(bytes(data))
    os.utime(changed.log_path, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    out += [f.to_dict() for f in changed.check(previous=state, full=True).findings]
    return out


def test_every_finding_the_store_writes_reads_in_both_languages(tmp_path):
    findings = _findings_of_every_shape(tmp_path)
    assert {f["code"] for f in findings} == set(CODES)
    for f in findings:
        with translation.override("en"):
            english, plain = finding_text(f), finding_text(f, html=False)
        with translation.override("ar"):
            arabic = finding_text(f)
        assert english and arabic and plain and english != arabic, f
        assert "<" not in plain and not re.search(r"[\u0600-\u06ff]", english + plain), (f, english)
        assert re.search(r"[\u0600-\u06ff]", arabic), (f, arabic)
        # What was read from the files is kept: every count and position is in the sentence.
        for key in ("count", "line", "col", "byte", "length", "offset", "log_events"):
            if isinstance(f.get(key), int) and f["code"] not in ("log_bad_line", "meta_drift"):
                assert f"{f[key]:,}" in english, (key, f, english)
        if f["code"] == "meta_drift":
            assert (
                f"{f['expected_total_events']:,}" in english or f["meta_total_events"] == f["expected_total_events"]
            ), english
        if f["code"] in ("meta_corrupt", "log_bad_line", "unreadable"):  # a parser's or the OS's words stay English
            assert '<span lang="en" dir="ltr">' in arabic, arabic


def test_the_findings_the_dashboard_makes_of_store_server_recoveries_read_in_both_languages():
    """A recovery the Node server did alone (found by the scan from its backup, or told by its
    log: services.scan and services.ingest) is a meta_corrupt with keys of the dashboard's own."""
    base = {"code": "meta_corrupt", "severity": "critical", "message": "m"}
    cases = [
        ({**base, "file": "events.meta.json.corrupted.1.bak"}, "events.meta.json.corrupted.1.bak", None),
        ({**base, "outcome": "recovered", "events": 1234, "backup": "b.bak", "at": "2026-01-01"}, "1,234", "1.234"),
        ({**base, "outcome": "failed", "reason": "EACCES: permission denied"}, "EACCES: permission denied", None),
        ({**base, "outcome": "failed"}, "no reason", ""),
    ]
    for finding, kept, kept_in_arabic in cases:
        with translation.override("en"):
            english = finding_text(finding, html=False)
        with translation.override("ar"):
            arabic = finding_text(finding)
        assert kept in english and "store server" in english, english
        assert re.search(r"[\u0600-\u06ff]", arabic), arabic
        assert (kept if kept_in_arabic is None else kept_in_arabic) in arabic, arabic


def test_a_finding_sentence_escapes_what_it_quotes_and_falls_back_for_unknown_shapes():
    f = {
        "code": "meta_invalid",
        "severity": "warning",
        "message": "m",
        "key": "branchId",
        "value": "<script>x</script>",
    }
    with translation.override("ar"):
        html = finding_text(f)
    assert "<script>" not in html and "&lt;script&gt;" in html and '<bdi dir="ltr">' in html
    assert finding_text({"code": "meta_invalid", "message": "m", "key": "somethingNew"}) == ""
    assert finding_text({"code": "log_bad_line", "count": 2, "lines": "not a list"}) == ""
    assert finding_text({"code": "log_sequence_gap", "count": 2, "gaps": [5]}) == ""
    # a detail that is not of the shape its code declares (eventstore.health.FINDING_SPECS): the English message
    assert finding_text({"code": "log_bad_line", "count": 2, "lines": [{}]}) == ""
    line = {"line": 7, "offset": 90, "error": "unexpected character", "preview": "{x"}
    assert finding_text({"code": "log_bad_line", "count": 2, "lines": [line]}, html=False) == (
        "2 lines do not parse as an event; the first is line 7: unexpected character"
    )
    assert finding_text("not a dict") == ""


def test_the_overview_titles_findings_in_the_page_language(scanned, manager_client):
    english = manager_client.get(reverse("opsdash:module_list")).content.decode()
    assert re.search(
        r'title="critical · meta is not valid JSON: meta is not valid JSON at line \d+, column \d+ \(byte [\d,]+\): [^"<]+">meta_corrupt<',
        english,
    )
    overview = arabic(manager_client).get(reverse("opsdash:module_list")).content.decode()
    assert 'title="حرج · الميتا ليست JSON صالحًا: الميتا ليست JSON صالحًا عند السطر' in overview


def test_a_finding_sentence_takes_values_orjson_refuses():
    for value in (10**30, "\ud800", 1e400, None):
        f = {"code": "meta_invalid", "severity": "critical", "message": "m", "key": "totalEvents", "value": value}
        assert finding_text(f).startswith("totalEvents is <bdi")
    drift = {
        "code": "meta_drift",
        "expected_total_events": 3,
        "meta_total_events": 10**30,
        "log_events": 3,
        "meta_last_event_id": "a",
        "log_last_event_id": "b",
    }
    assert "1000000000000000000000000000000" in finding_text(drift, html=False)


_KEYS = (
    "code",
    "count",
    "line",
    "col",
    "byte",
    "error_message",
    "size",
    "limit",
    "type",
    "key",
    "value",
    "log_events",
    "expected_total_events",
    "meta_total_events",
    "meta_last_event_id",
    "log_last_event_id",
    "length",
    "offset",
    "parses",
    "lines",
    "sequences",
    "gaps",
    "file",
    "reason",
)
_JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner, max_size=3),
    max_leaves=6,
)


@hypothesis_settings(max_examples=300, deadline=None)
@given(
    st.dictionaries(
        st.sampled_from(_KEYS),
        _JSON | st.sampled_from(sorted(CODES)) | st.sampled_from(["totalEvents", "branchId", "tableCursors"]),
    )
)
def test_a_finding_of_any_shape_never_breaks_the_page(f):
    for html in (True, False):
        with translation.override("ar"):
            assert isinstance(finding_text(f, html=html), str)
