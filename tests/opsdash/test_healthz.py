from __future__ import annotations

import orjson
import pytest
from django.db import DatabaseError
from django.test import Client

pytestmark = pytest.mark.django_db


def test_it_answers_200_without_login_when_db_and_root_are_usable(data_root):
    response = Client().get("/healthz")
    assert response.status_code == 200
    assert orjson.loads(response.content) == {"status": "ok", "database": "ok", "data_root": str(data_root)}


def test_it_answers_503_when_the_data_root_is_missing(settings, tmp_path):
    settings.OPSDASH_DATA_ROOT = tmp_path / "gone"
    response = Client().get("/healthz")
    assert response.status_code == 503
    assert "does not exist" in orjson.loads(response.content)["reason"]


def test_it_answers_503_when_no_data_root_is_configured(settings):
    settings.OPSDASH_DATA_ROOT = None
    response = Client().get("/healthz")
    assert response.status_code == 503
    assert orjson.loads(response.content)["reason"] == "data root: OPSDASH_DATA_ROOT is not set"


def test_it_answers_503_when_the_database_fails(data_root, monkeypatch):
    from django.db.backends.utils import CursorWrapper

    def broken(self, sql, params=None):
        raise DatabaseError("disk I/O error")

    monkeypatch.setattr(CursorWrapper, "execute", broken)
    response = Client().get("/healthz")
    assert response.status_code == 503
    assert orjson.loads(response.content)["reason"] == "database: disk I/O error"
