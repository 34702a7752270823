"""Suite-wide: on SQLite, the test database is a file (WAL, as in production) rather than
Django's shared in-memory database, whose table-level locks make a second thread (the embedded
job worker, the live server) fail at once with "database table is locked" instead of waiting."""

from __future__ import annotations

import pytest


@pytest.fixture(scope="session")
def django_db_modify_db_settings(django_db_modify_db_settings_parallel_suffix, tmp_path_factory) -> None:
    from django.conf import settings

    db = settings.DATABASES["default"]
    if db["ENGINE"] == "django.db.backends.sqlite3":
        db.setdefault("TEST", {})["NAME"] = str(tmp_path_factory.mktemp("db") / "test.sqlite3")
