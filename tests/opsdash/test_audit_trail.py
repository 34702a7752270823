from __future__ import annotations

import csv
import io
from datetime import UTC, datetime

import orjson
import pytest
from django.db import connection, transaction
from django.urls import reverse
from django.utils import timezone

from opsdash.models import AppendOnlyError, AuditEntry
from opsdash.services.audit import csv_cell

pytestmark = pytest.mark.django_db

PAGE = reverse("opsdash:audit_list")
API = reverse("opsdash:api_audit_list")


def _entry(at: datetime, **fields) -> AuditEntry:
    defaults = {
        "actor": "operator",
        "action": "rebuild",
        "outcome": "ok",
        "host": "testhost",
        "branch": "dar",
        "module": "pos",
    }
    entry = AuditEntry.objects.create(**(defaults | fields))
    # ``at`` is auto_now_add and the ORM refuses updates: the test sets the time in SQL.
    with connection.cursor() as cursor:
        cursor.execute(f"UPDATE {AuditEntry._meta.db_table} SET at = %s WHERE id = %s", [at, entry.pk])
    return AuditEntry.objects.get(pk=entry.pk)


@pytest.fixture
def trail(demo_users) -> list[AuditEntry]:
    return [
        _entry(
            datetime(2025, 10, 1, 9, tzinfo=UTC), meta_sha256_before="a" * 64, meta_sha256_after="b" * 64, ip="10.0.0.7"
        ),
        _entry(
            datetime(2025, 10, 2, 9, tzinfo=UTC),
            action="backup_download",
            actor="auditor",
            outcome="failed",
            params={"backups": ["x.bak"]},
        ),
        _entry(datetime(2025, 10, 3, 9, tzinfo=UTC), branch="bab", module="kds", outcome="failed"),
        _entry(
            datetime(2025, 10, 4, 9, tzinfo=UTC),
            actor='=HYPERLINK("http://evil")',
            action="verify",
            detail="+1",
            host="",
            branch="",
            module="",
        ),
    ]


def test_only_auditors_see_the_trail_and_its_exports(trail, manager_client, operator_client, auditor_client, client):
    for url in (PAGE, API, API + "?format=csv"):
        assert manager_client.get(url).status_code == 403, url
        assert operator_client.get(url).status_code == 403, url
        assert auditor_client.get(url).status_code == 200, url
    assert client.get(PAGE)["Location"].startswith(reverse("login"))
    assert client.get(API).status_code == 401


def test_the_nav_link_shows_only_for_auditors(trail, manager_client, operator_client, auditor_client):
    home = reverse("opsdash:module_list")
    assert PAGE not in manager_client.get(home).content.decode()
    assert PAGE not in operator_client.get(home).content.decode()
    assert PAGE in auditor_client.get(home).content.decode()


def test_the_page_shows_who_what_where_and_the_meta_sums(trail, auditor_client):
    html = auditor_client.get(PAGE).content.decode()
    module_url = reverse("opsdash:module_detail", kwargs={"host": "testhost", "branch": "dar", "module": "pos"})
    assert f'href="{module_url}"' in html
    assert "10.0.0.7" in html and 'title="' + "a" * 64 + '"' in html and 'title="' + "b" * 64 + '"' in html
    assert "backup_download" in html and "x.bak" in html


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ({"since": "2025-10-02", "until": "2025-10-03"}, ["failed", "failed"]),
        ({"actor": "auditor"}, ["failed"]),
        ({"action": "rebuild"}, ["failed", "ok"]),
        ({"branch": "bab"}, ["failed"]),
        ({"outcome": "ok", "branch": "dar"}, ["ok"]),
    ],
)
def test_filters_narrow_the_page_and_both_exports_alike(trail, auditor_client, query, expected):
    page = auditor_client.get(PAGE, query)
    assert [e.outcome for e in page.context["page"]] == expected
    entries = orjson.loads(b"".join(auditor_client.get(API, query | {"format": "json"}).streaming_content))["entries"]
    assert [e["outcome"] for e in entries] == expected
    rows = list(
        csv.DictReader(
            io.StringIO(b"".join(auditor_client.get(API, query | {"format": "csv"}).streaming_content).decode())
        )
    )
    assert [r["outcome"] for r in rows] == expected


def test_htmx_gets_the_table_and_the_export_links_keep_the_filters(trail, auditor_client):
    response = auditor_client.get(PAGE, {"branch": "bab"}, headers={"HX-Request": "true"})
    html = response.content.decode()
    assert html.lstrip().startswith('<div id="results">') and "<html" not in html
    assert f'href="{API}?branch=bab&amp;format=csv"' in html and f'href="{API}?branch=bab&amp;format=json"' in html


def test_the_page_paginates_with_the_filters_in_the_links(trail, auditor_client, settings):
    settings.OPSDASH_PAGE_SIZE = 1
    html = auditor_client.get(PAGE, {"branch": "dar"}).content.decode()
    assert "Page 1 of 2" in html and "?branch=dar&amp;page=2" in html


def test_the_json_export_has_every_field(trail, auditor_client):
    response = auditor_client.get(API, {"format": "json"})
    assert response["Content-Type"] == "application/json" and response.streaming
    first = orjson.loads(b"".join(response.streaming_content))["entries"][-1]
    assert {
        "at",
        "actor",
        "action",
        "host",
        "branch",
        "module",
        "outcome",
        "ip",
        "params",
        "meta_sha256_before",
        "meta_sha256_after",
    } <= first.keys()
    assert first["at"].startswith("2025-10-01T09:00:00") and first["ip"] == "10.0.0.7"
    assert first["module_page"] == "http://testserver" + reverse(
        "opsdash:module_detail", kwargs={"host": "testhost", "branch": "dar", "module": "pos"}
    )


def test_the_csv_export_escapes_formulas(trail, auditor_client):
    response = auditor_client.get(API, {"format": "csv", "action": "verify"})
    assert response["Content-Disposition"].startswith("attachment; filename=")
    [row] = list(csv.DictReader(io.StringIO(b"".join(response.streaming_content).decode())))
    assert row["actor"] == '\'=HYPERLINK("http://evil")' and row["detail"] == "'+1"
    assert [csv_cell(v) for v in ("-2", "@x", "\tx", "\rx", "ok", None, {"a": 1})] == [
        "'-2",
        "'@x",
        "'\tx",
        "'\rx",
        "ok",
        "",
        '{"a":1}',
    ]


def test_an_unknown_export_format_is_400(trail, auditor_client):
    assert auditor_client.get(API, {"format": "xml"}).status_code == 400


def test_entries_cannot_be_changed_or_deleted_through_the_orm(trail):
    entry = trail[0]
    entry.outcome = "forged"
    with pytest.raises(AppendOnlyError):
        entry.save()
    with pytest.raises(AppendOnlyError):
        entry.delete()
    with pytest.raises(AppendOnlyError):
        AuditEntry.objects.filter(pk=entry.pk).update(outcome="forged")
    with pytest.raises(AppendOnlyError):
        AuditEntry.objects.filter(branch="dar").delete()
    with pytest.raises(AppendOnlyError), transaction.atomic():
        AuditEntry.objects.bulk_update([entry], ["outcome"])
    assert AuditEntry.objects.count() == 4 and not AuditEntry.objects.filter(outcome="forged").exists()


def test_the_admin_refuses_to_change_add_or_delete(trail, admin_client):
    pk = trail[0].pk
    assert admin_client.get(f"/admin/opsdash/auditentry/{pk}/change/").status_code == 200  # a read-only view
    response = admin_client.post(f"/admin/opsdash/auditentry/{pk}/change/", {"outcome": "forged", "actor": "x"})
    assert response.status_code == 403
    assert admin_client.post(f"/admin/opsdash/auditentry/{pk}/delete/", {"post": "yes"}).status_code == 403
    assert (
        admin_client.post("/admin/opsdash/auditentry/add/", {"actor": "x", "action": "y", "outcome": "ok"}).status_code
        == 403
    )
    ids = [e.pk for e in trail]
    response = admin_client.post(
        "/admin/opsdash/auditentry/", {"action": "delete_selected", "_selected_action": ids, "post": "yes"}
    )
    kept = AuditEntry.objects.exclude(outcome="refused")
    assert (
        sorted(kept.values_list("pk", flat=True)) == sorted(ids)
        and not AuditEntry.objects.filter(outcome="forged").exists()
    )
    assert response.status_code in (200, 302, 403)
    assert AuditEntry.objects.filter(outcome="refused", actor="admin").count() >= 3  # each attempt, written down


def test_times_on_the_page_are_in_the_current_time_zone(trail, auditor_client):
    assert timezone.get_current_timezone_name() == "UTC"
    assert "2025-10-01 09:00:00" in auditor_client.get(PAGE).content.decode()
