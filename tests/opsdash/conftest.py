"""Shared fixtures: a data root on disk, the demo users, logged-in clients."""

from __future__ import annotations

import contextlib
from pathlib import Path

import pytest
from django.core.cache import cache
from django.db import DatabaseError
from django.test import Client
from django.utils import translation

from opsdash.services.users import ensure_demo_users

PASSWORD = "demo-password-for-tests"


@pytest.fixture(autouse=True)
def _test_settings(settings):
    # The manifest storage needs collectstatic; tests render templates without it.
    settings.STORAGES = {
        **settings.STORAGES,
        "staticfiles": {"BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"},
    }
    # A slow password hash per login would cost seconds per test.
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
    yield
    _clear_cache()
    # LocaleMiddleware leaves the language of the last request active in the thread: a test that
    # asked for Arabic must not turn the next test's English messages Arabic.
    translation.deactivate()


def _clear_cache() -> None:
    """The cache is a database table that no test transaction or flush empties: a second
    factor's used codes and allauth's counters would leak into the next test. A test without
    the database (pytest-django refuses it with a RuntimeError) has nothing to clear."""
    with contextlib.suppress(DatabaseError, RuntimeError):
        cache.clear()


@pytest.fixture
def data_root(tmp_path: Path, settings) -> Path:
    root = tmp_path / "branches"
    root.mkdir()
    settings.OPSDASH_DATA_ROOT = root
    settings.OPSDASH_HOST_NAME = "testhost"
    return root


@pytest.fixture
def demo_users(db) -> str:
    return ensure_demo_users(PASSWORD)


@pytest.fixture
def manager_client(demo_users) -> Client:
    client = Client()
    assert client.login(username="manager", password=PASSWORD)
    return client


@pytest.fixture
def operator_client(demo_users) -> Client:
    client = Client()
    assert client.login(username="operator", password=PASSWORD)
    return client


@pytest.fixture
def auditor_client(demo_users) -> Client:
    client = Client()
    assert client.login(username="auditor", password=PASSWORD)
    return client


@pytest.fixture
def store(data_root: Path):
    from eventstore import EventStore

    return EventStore(data_root, fsync=False)


def _add_events(module, count: int = 3, table: str = "order_header") -> list[dict]:
    return [
        module.append_event(
            {"table": table, "record": {"id": f"ord-{i}"}, "meta": {"recordRef": {"table": table, "key": f"ord-{i}"}}}
        )
        for i in range(count)
    ]


@pytest.fixture
def add_events():
    """``add_events(module, count=3)``: append Node-shaped events through the library."""
    return _add_events
