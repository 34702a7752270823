"""/healthz: the status to anyone, the detail to logged-in operators and the log."""

from __future__ import annotations

import logging
from datetime import timedelta

import orjson
import pytest
from django.db import DatabaseError
from django.test import Client
from django.utils import timezone

from opsdash.models import ScanHost
from opsdash.services.scan import record_pass, scan_root

pytestmark = pytest.mark.django_db


def _get(client: Client | None = None):
    response = (client or Client()).get("/healthz")
    return response.status_code, orjson.loads(response.content)


@pytest.fixture
def scanned(data_root):
    record_pass(scan_root())
    return data_root


def test_it_answers_200_and_the_status_only_to_strangers(scanned):
    assert _get() == (200, {"status": "ok"})


def test_an_operator_sees_the_detail_and_a_manager_does_not(scanned, operator_client, manager_client):
    status, body = _get(operator_client)
    assert status == 200
    assert body["data_root"] == str(scanned) and body["host"] == "testhost" and body["stale_hosts"] == []
    assert body["last_scan_at"] and body["reason"] is None
    assert _get(manager_client) == (200, {"status": "ok"})


def test_it_answers_503_when_the_data_root_is_missing_and_says_why_only_to_the_log_and_operators(
    scanned, settings, tmp_path, caplog, operator_client
):
    settings.OPSDASH_DATA_ROOT = tmp_path / "gone"
    with caplog.at_level(logging.ERROR, "opsdash.views.health"):
        assert _get() == (503, {"status": "error"})
    assert "does not exist" in caplog.records[0].getMessage() and str(tmp_path) in caplog.records[0].getMessage()
    status, body = _get(operator_client)
    assert status == 503 and "does not exist" in body["reason"]


def test_a_web_only_process_is_healthy_when_its_database_is_and_lists_the_hosts_that_stopped_reporting(
    settings, operator_client
):
    settings.OPSDASH_DATA_ROOT = None
    assert _get() == (200, {"status": "ok"})
    ScanHost.objects.create(
        host="store-b", data_root="/srv/b", last_pass_at=timezone.now() - timedelta(hours=1), worst_status="healthy"
    )
    ScanHost.objects.create(host="store-a", data_root="/srv/a", last_pass_at=timezone.now(), worst_status="healthy")
    assert _get() == (200, {"status": "ok"})
    status, body = _get(operator_client)
    assert status == 200 and body["stale_hosts"] == ["store-b"] and body["data_root"] is None


def test_a_store_host_whose_scanner_stopped_is_unhealthy(scanned, settings):
    ScanHost.objects.filter(host="testhost").update(
        last_pass_at=timezone.now() - timedelta(seconds=settings.OPSDASH_STALE_SECONDS + 1)
    )
    assert _get() == (503, {"status": "error"})
    ScanHost.objects.all().delete()
    assert _get() == (503, {"status": "error"})  # never reported at all


def test_it_answers_503_when_the_database_fails_without_telling_the_database_error(scanned, monkeypatch, caplog):
    from django.db.backends.utils import CursorWrapper

    def broken(self, sql, params=None):
        raise DatabaseError(
            "connection to server at 10.0.0.5, port 5432 failed: FATAL: password authentication failed for user opsdash"
        )

    monkeypatch.setattr(CursorWrapper, "execute", broken)
    with caplog.at_level(logging.ERROR, "opsdash.views.health"):
        status, body = _get()
    assert (status, body) == (503, {"status": "error"})
    assert "10.0.0.5" in caplog.text
