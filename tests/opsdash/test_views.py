from __future__ import annotations

import pytest
from django.test import Client
from django.urls import reverse

from opsdash.models import AuditEntry, Backup, ModuleState
from opsdash.services.scan import scan_root

pytestmark = pytest.mark.django_db

BACKUP_NAME = "events.meta.json.corrupted.1760000000000.bak"


@pytest.fixture
def scanned(store, add_events):
    """dar/pos healthy with a Node backup; dar/kds with a corrupt meta."""
    pos = store.module("dar", "pos")
    add_events(pos)
    (pos.live_dir / BACKUP_NAME).write_text('{\n  "totalEvents": 3\n}\n}')
    kds = store.module("dar", "kds")
    add_events(kds)
    text = kds.meta_path.read_text()
    kds.meta_path.write_text(text + "\n}")
    scan_root()
    return ModuleState.objects.get(module="kds")


def _page_urls() -> list[str]:
    state = ModuleState.objects.get(module="kds")
    backup = Backup.objects.get()
    return [
        reverse("opsdash:module_list"),
        state.get_absolute_url(),
        reverse("opsdash:incident_list"),
        reverse("opsdash:backup_list"),
        backup.get_absolute_url(),
        backup.download_url(),
    ]


def test_it_redirects_anonymous_users_to_the_login_page(scanned):
    client = Client()
    for url in _page_urls():
        response = client.get(url)
        assert response.status_code == 302, url
        assert response["Location"].startswith(reverse("login") + "?next="), url


def test_the_login_page_works(demo_users):
    client = Client()
    assert client.get(reverse("login")).status_code == 200
    response = client.post(reverse("login"), {"login": "manager", "password": "demo-password-for-tests"})
    assert response.status_code == 302 and response["Location"] == reverse("opsdash:module_list")


def test_every_page_renders_for_a_manager(scanned, manager_client):
    for url in _page_urls()[:-1]:
        response = manager_client.get(url)
        assert response.status_code == 200, url
        assert b"<html" in response.content, url
        assert "Content-Security-Policy" in response


def test_the_overview_lists_modules_with_status_text_and_filters(scanned, manager_client):
    response = manager_client.get(reverse("opsdash:module_list"))
    html = response.content.decode()
    assert 'class="badge status-critical">critical<' in html
    assert "meta_corrupt" in html
    assert 'hx-trigger="every 30s"' in html
    response = manager_client.get(reverse("opsdash:module_list"), {"status": "healthy"})
    assert [m.module for m in response.context["rows"]] == ["pos"]
    response = manager_client.get(reverse("opsdash:module_list"), {"q": "corrupt"})
    assert [m.module for m in response.context["rows"]] == ["kds"]


def test_htmx_requests_get_only_the_fragment(scanned, manager_client):
    for name in ("opsdash:module_list", "opsdash:incident_list", "opsdash:backup_list"):
        response = manager_client.get(reverse(name), {"branch": "dar"}, headers={"HX-Request": "true"})
        html = response.content.decode()
        assert response.status_code == 200
        assert html.lstrip().startswith('<div id="results"'), name
        assert "<html" not in html
        assert "HX-Request" in response["Vary"]
    refresh = manager_client.get(reverse("opsdash:module_list"), {"status": "critical"}, headers={"HX-Request": "true"})
    assert 'hx-get="/?status=critical"' in refresh.content.decode()  # the periodic refresh keeps the filters


def test_the_module_page_marks_where_the_meta_broke(scanned, manager_client):
    response = manager_client.get(scanned.get_absolute_url())
    html = response.content.decode()
    assert '<mark id="meta-error"' in html
    marked = response.context["meta"].marked
    assert marked.before.rstrip().endswith("}") and marked.at == "}"
    assert "meta_corrupt" in html


def test_the_module_page_pretty_prints_a_valid_meta(scanned, manager_client):
    pos = ModuleState.objects.get(module="pos")
    response = manager_client.get(pos.get_absolute_url())
    assert response.context["meta"].pretty.startswith("{\n  ")
    assert BACKUP_NAME in response.content.decode()
    assert "recovered by the store server" in response.content.decode()


def test_the_backup_preview_fragment_marks_the_parse_error(scanned, operator_client):
    backup = Backup.objects.get()
    response = operator_client.get(backup.get_absolute_url(), headers={"HX-Request": "true"})
    html = response.content.decode()
    assert html.lstrip().startswith('<div class="preview">')
    assert "<mark" in html


def test_a_backup_download_streams_the_file_and_is_audited(scanned, operator_client):
    backup = Backup.objects.get()
    response = operator_client.get(backup.download_url())
    assert response.status_code == 200
    assert b"".join(response.streaming_content) == b'{\n  "totalEvents": 3\n}\n}'
    assert "attachment" in response["Content-Disposition"]
    entry = AuditEntry.objects.get()
    assert (entry.actor, entry.action, entry.outcome, entry.module) == ("operator", "backup_download", "ok", "pos")


def test_a_backup_that_left_the_live_folder_is_not_served(scanned, operator_client, store):
    backup = Backup.objects.get()
    (store.module("dar", "pos").live_dir / BACKUP_NAME).unlink()
    assert operator_client.get(backup.download_url()).status_code == 404
    scan_root()
    assert operator_client.get(backup.download_url()).status_code == 404
    assert Backup.objects.get().state == "missing"


def test_the_history_page_filters_and_draws_a_chart(scanned, manager_client):
    response = manager_client.get(reverse("opsdash:incident_list"), {"code": "meta_corrupt", "state": "open"})
    assert [i.module.module for i in response.context["page"]] == ["kds"]
    assert "<svg" in response.content.decode() and 'class="bar"' in response.content.decode()
    response = manager_client.get(
        reverse("opsdash:incident_list"), {"state": "ended", "since": "2025-10-01", "until": "2025-10-31"}
    )
    assert [i.source for i in response.context["page"]] == ["store-server"]


def test_branch_and_module_names_are_escaped(store, add_events, manager_client):
    evil = '<script>alert(1)"'
    add_events(store.module(evil, "pos<b>"))
    scan_root()
    state = ModuleState.objects.get()
    for url in (reverse("opsdash:module_list"), state.get_absolute_url(), reverse("opsdash:backup_list")):
        html = manager_client.get(url).content.decode()
        assert "<script>alert" not in html and "pos<b>" not in html, url
    html = manager_client.get(state.get_absolute_url()).content.decode()
    assert "&lt;script&gt;alert(1)&quot;" in html


def test_page_and_sort_links_keep_the_filters(store, add_events, manager_client, settings):
    settings.OPSDASH_PAGE_SIZE = 2
    for name in ("a", "b", "c"):
        add_events(store.module("dar", name), 1)
    add_events(store.module("maadi", "x"), 1)
    scan_root()
    response = manager_client.get(reverse("opsdash:module_list"), {"branch": "dar", "sort": "module", "page": "1"})
    assert [m.module for m in response.context["rows"]] == ["a", "b"]
    html = response.content.decode()
    assert 'href="?branch=dar&amp;sort=module&amp;page=2"' in html
    assert 'href="?branch=dar&amp;sort=branch"' in html


def test_a_module_of_another_host_shows_its_recorded_state(scanned, manager_client, settings):
    settings.OPSDASH_HOST_NAME = "otherhost"
    response = manager_client.get(scanned.get_absolute_url())
    assert response.status_code == 200
    assert "the files are on host testhost" in response.content.decode()
    assert "meta_corrupt" in response.content.decode()


def test_a_history_restore_gets_the_whole_page(scanned, manager_client):
    headers = {"HX-Request": "true", "HX-History-Restore-Request": "true"}
    response = manager_client.get(reverse("opsdash:module_list"), {"status": "critical"}, headers=headers)
    assert b"<html" in response.content


def test_the_history_chart_counts_incidents_per_day(store, add_events, manager_client):
    from datetime import timedelta

    from django.utils import timezone

    from opsdash.models import Incident

    add_events(store.module("dar", "pos"))
    scan_root()
    state = ModuleState.objects.get()
    today = timezone.localtime().replace(hour=12, minute=0, second=0, microsecond=0)
    for days_ago, count in ((0, 3), (2, 1), (50, 4)):  # the last is outside the 42-day window
        for _ in range(count):
            Incident.objects.create(module=state, opened_at=today - timedelta(days=days_ago), severity="warning")
    chart = manager_client.get(reverse("opsdash:incident_list")).context["chart"]
    by_day = {bar.day: bar.count for bar in chart.bars}
    assert by_day[today.date()] == 3 and by_day[(today - timedelta(days=2)).date()] == 1
    assert sum(by_day.values()) == 4 and chart.peak == 3


def test_the_branch_filter_lists_every_branch_escaped_and_marks_the_chosen_one(store, add_events, manager_client):
    for branch in ("dar", 'a"b<c>', "zamalek"):
        add_events(store.module(branch, "pos"))
    scan_root()
    for name in ("opsdash:module_list", "opsdash:incident_list", "opsdash:backup_list"):
        html = manager_client.get(reverse(name), {"branch": "zamalek"}).content.decode()
        assert '<option value="a&quot;b&lt;c&gt;">a&quot;b&lt;c&gt;</option>' in html, name
        assert '<option value="dar">dar</option><option value="zamalek" selected>zamalek</option>' in html, name
