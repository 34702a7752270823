from __future__ import annotations

from datetime import timedelta

import orjson
import pytest
from django.test import Client
from django.urls import reverse

from opsdash.services.scan import scan_root

pytestmark = pytest.mark.django_db


@pytest.fixture
def scanned(store, add_events):
    pos = store.module("dar", "pos")
    add_events(pos)
    (pos.live_dir / "events.meta.json.corrupted.1760000000000.bak").write_text("{")
    kds = store.module("maadi", "kds")
    add_events(kds)
    kds.meta_path.unlink()
    scan_root()


def test_the_module_list_has_the_documented_shape(scanned, manager_client):
    response = manager_client.get(reverse("opsdash:api_module_list"))
    assert response["Content-Type"] == "application/json"
    modules = orjson.loads(response.content)["modules"]
    assert [(m["branch"], m["module"], m["status"]) for m in modules] == [
        ("maadi", "kds", "warning"),
        ("dar", "pos", "healthy"),
    ]
    first = modules[0]
    assert {"host", "branch", "module", "status", "findings", "url", "page"} <= first.keys()
    assert first["findings"][0]["code"] == "meta_missing"
    assert {"code", "severity", "message"} <= first["findings"][0].keys()
    assert first["url"].startswith("http://testserver/api/modules/testhost/maadi/kds")
    assert manager_client.get(first["page"]).status_code == 200


def test_the_module_list_accepts_the_overview_filters(scanned, manager_client):
    url = reverse("opsdash:api_module_list")
    assert [m["module"] for m in orjson.loads(manager_client.get(url, {"status": "healthy"}).content)["modules"]] == [
        "pos"
    ]
    assert [m["module"] for m in orjson.loads(manager_client.get(url, {"branch": "maadi"}).content)["modules"]] == [
        "kds"
    ]
    assert orjson.loads(manager_client.get(url, {"q": "nothing-matches"}).content)["modules"] == []


def test_a_module_in_full_has_backups_and_incidents(scanned, manager_client):
    modules = orjson.loads(manager_client.get(reverse("opsdash:api_module_list"), {"branch": "dar"}).content)["modules"]
    detail = orjson.loads(manager_client.get(modules[0]["url"]).content)
    backup = detail["backups"][0]
    assert {"name", "size", "sha256", "state", "download"} <= backup.keys()
    assert backup["state"] == "live" and backup["size"] == 1
    assert manager_client.get(backup["download"]).status_code == 403  # the URL is listed; the server decides
    assert detail["incidents"][0]["source"] == "store-server"
    assert detail["incidents"][0]["ended_how"] == "store_server"
    assert detail["stats"]["log_events"] == 3


def test_anonymous_api_calls_get_401_json(scanned):
    response = Client().get(reverse("opsdash:api_module_list"))
    assert response.status_code == 401
    assert orjson.loads(response.content) == {"error": "login required"}


def test_an_unknown_module_is_404(scanned, manager_client):
    url = reverse("opsdash:api_module_detail", kwargs={"host": "testhost", "branch": "dar", "module": "nope"})
    assert manager_client.get(url).status_code == 404


def test_a_module_in_full_pages_its_backups_and_incidents_newest_first(store, add_events, manager_client):
    from opsdash.models import Backup, ModuleState
    from opsdash.services.serialize import LIST_ROWS

    pos = store.module("dar", "pos")
    add_events(pos)
    scan_root()
    state = ModuleState.objects.get()
    Backup.objects.bulk_create(
        [
            Backup(
                module=state,
                name=f"events.meta.json.corrupted.{1_760_000_000_000 + i}.bak",
                kind="meta",
                size=1,
                sha256="0" * 64,
                created_at=state.first_seen + timedelta(seconds=i),
                parses=False,
                state=Backup.State.ARCHIVED,
                archive_path=f"/srv/archive/dar/pos/{i}.bak",
                first_seen=state.first_seen,
                last_changed=state.first_seen,
            )
            for i in range(LIST_ROWS + 5)
        ]
    )
    url = reverse("opsdash:api_module_detail", kwargs={"host": "testhost", "branch": "dar", "module": "pos"})
    first = orjson.loads(manager_client.get(url).content)
    assert len(first["backups"]) == LIST_ROWS and first["backups_page"] == {
        "page": 1,
        "pages": 2,
        "count": LIST_ROWS + 5,
    }
    assert first["backups"][0]["archive_path"] == f"/srv/archive/dar/pos/{LIST_ROWS + 4}.bak"  # the newest
    second = orjson.loads(manager_client.get(url, {"backups": 2}).content)
    assert [b["archive_path"] for b in second["backups"]][-1] == "/srv/archive/dar/pos/0.bak"
    assert first["incidents_page"] == {"page": 1, "pages": 1, "count": 0}


def test_every_surface_says_when_a_modules_host_stopped_reporting(scanned, manager_client, settings):
    from django.utils import timezone

    from opsdash.models import ScanHost
    from opsdash.services.scan import record_pass

    record_pass(scan_root())
    api = reverse("opsdash:api_module_detail", kwargs={"host": "testhost", "branch": "dar", "module": "pos"})
    page = reverse("opsdash:module_detail", kwargs={"host": "testhost", "branch": "dar", "module": "pos"})
    listed = orjson.loads(manager_client.get(reverse("opsdash:api_module_list")).content)["modules"]
    assert [m["stale"] for m in listed] == [False, False] and all(m["last_scan_at"] for m in listed)
    assert orjson.loads(manager_client.get(api).content)["stale"] is False
    assert 'id="module-stale"' not in manager_client.get(page).content.decode()
    old = timezone.now() - timedelta(seconds=settings.OPSDASH_STALE_SECONDS + 5)
    ScanHost.objects.update(last_pass_at=old)
    listed = orjson.loads(manager_client.get(reverse("opsdash:api_module_list")).content)["modules"]
    assert [m["stale"] for m in listed] == [True, True]
    one = orjson.loads(manager_client.get(api).content)
    assert one["stale"] is True and one["last_scan_at"].startswith(old.isoformat()[:19])
    html = manager_client.get(page).content.decode()
    assert 'id="module-stale"' in html and "The scanner of host <bdi>testhost</bdi> has not reported" in html
    for url in (reverse("opsdash:incident_list"), reverse("opsdash:backup_list"), reverse("opsdash:module_list")):
        assert "The scanner of host <bdi>testhost</bdi> has not reported" in manager_client.get(url).content.decode(), (
            url
        )
    ScanHost.objects.all().delete()  # a host that never reported: nothing vouches for its rows
    one = orjson.loads(manager_client.get(api).content)
    assert one["stale"] is True and one["last_scan_at"] is None
