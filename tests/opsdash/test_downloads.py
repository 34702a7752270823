from __future__ import annotations

import hashlib
import io
import zipfile
from pathlib import Path

import pytest
from django.core.signals import request_finished
from django.db import close_old_connections
from django.test import Client
from django.urls import reverse
from django.utils import timezone

from opsdash.models import AuditEntry, Backup, ModuleState
from opsdash.services.downloads import safe_filename, zip_part
from opsdash.services.scan import scan_root

pytestmark = pytest.mark.django_db

LIVE_NAME = "events.meta.json.corrupted.1760000000000.bak"
ARCHIVED_NAME = "events.meta.json.corrupted.1750000000000.bak"
LIVE_BYTES = b'{\n  "totalEvents": 3\n}\n}'
ARCHIVED_BYTES = b'{\n  "totalEvents": 1\n'


@pytest.fixture
def archive_root(tmp_path: Path, settings) -> Path:
    root = tmp_path / "archive"
    settings.OPSDASH_ARCHIVE_ROOT = root
    return root


@pytest.fixture
def backups(store, add_events, archive_root) -> dict[str, Backup]:
    """dar/pos with one live backup (from a scan) and one archived (file in the archive root)."""
    pos = store.module("dar", "pos")
    add_events(pos)
    (pos.live_dir / LIVE_NAME).write_bytes(LIVE_BYTES)
    scan_root()
    folder = archive_root / "dar" / "pos"
    folder.mkdir(parents=True)
    (folder / ARCHIVED_NAME).write_bytes(ARCHIVED_BYTES)
    archived = _row(ModuleState.objects.get(module="pos"), ARCHIVED_NAME, ARCHIVED_BYTES, Backup.State.ARCHIVED)
    return {"live": Backup.objects.get(name=LIVE_NAME), "archived": archived}


def _row(state: ModuleState, name: str, data: bytes, backup_state: str) -> Backup:
    now = timezone.now()
    return Backup.objects.create(
        module=state,
        name=name,
        kind="meta",
        size=len(data),
        sha256=hashlib.sha256(data).hexdigest(),
        created_at=now,
        state=backup_state,
        first_seen=now,
        last_changed=now,
    )


def _urls(backups: dict[str, Backup]) -> list[str]:
    return [
        backups["live"].download_url(),
        backups["archived"].download_url(),
        reverse("opsdash:module_backups_download", kwargs={"host": "testhost", "branch": "dar", "module": "pos"}),
        reverse("opsdash:branch_backups_download", kwargs={"host": "testhost", "branch": "dar"}),
    ]


def _unzip(response) -> zipfile.ZipFile:
    return zipfile.ZipFile(io.BytesIO(b"".join(response.streaming_content)))


def test_managers_may_not_download_and_see_no_download_links(backups, manager_client):
    for url in _urls(backups):
        assert manager_client.get(url).status_code == 403, url
    page = manager_client.get(backups["live"].module.get_absolute_url()).content.decode()
    assert "/download" not in page and "backups.zip" not in page
    # No download happened; each refused attempt is in the trail.
    assert set(AuditEntry.objects.values_list("outcome", flat=True)) == {"refused"}
    assert AuditEntry.objects.count() == len(_urls(backups))


@pytest.mark.parametrize("role", ["operator_client", "auditor_client"])
def test_operators_and_auditors_download_everything_and_see_the_links(backups, role, request):
    client: Client = request.getfixturevalue(role)
    for url in _urls(backups):
        response = client.get(url)
        assert response.status_code == 200, url
        b"".join(response.streaming_content)
    page = client.get(backups["live"].module.get_absolute_url()).content.decode()
    assert backups["archived"].download_url() in page and "backups.zip" in page
    assert AuditEntry.objects.filter(actor=role.split("_")[0]).count() == 4


def test_anonymous_visitors_are_sent_to_the_login_page(backups, client):
    for url in _urls(backups):
        response = client.get(url)
        assert response.status_code == 302 and response["Location"].startswith(reverse("login")), url


def test_an_archived_backup_is_served_from_the_archive_with_a_safe_name(backups, operator_client):
    response = operator_client.get(backups["archived"].download_url())
    assert b"".join(response.streaming_content) == ARCHIVED_BYTES
    assert response["Content-Disposition"] == f'attachment; filename="dar-pos-{ARCHIVED_NAME}"'
    entry = AuditEntry.objects.get()
    assert (entry.action, entry.outcome, entry.ip, entry.module) == ("backup_download", "ok", "127.0.0.1", "pos")
    assert entry.params["backups"] == [ARCHIVED_NAME] and entry.params["bytes"] == len(ARCHIVED_BYTES)


def test_a_live_backup_is_served_through_the_store(backups, auditor_client):
    response = auditor_client.get(backups["live"].download_url())
    assert b"".join(response.streaming_content) == LIVE_BYTES
    assert AuditEntry.objects.get().params["bytes"] == len(LIVE_BYTES)


def test_a_file_name_never_carries_quotes_or_separators():
    assert safe_filename('da"r', "p/o\\s", "a b\r\n.bak") == "da_r-p_o_s-a_b_.bak"
    assert safe_filename("..", "") == "_-_"


@pytest.mark.parametrize(
    "name", ["../x", "../../etc/passwd", "events.meta.json.corrupted.1.bak/../../x", ".hidden.bak"]
)
@pytest.mark.parametrize("state", [Backup.State.LIVE, Backup.State.ARCHIVED])
def test_a_row_whose_name_is_a_traversal_attempt_is_refused(backups, operator_client, archive_root, name, state):
    (archive_root / "x").write_text("secret")
    evil = _row(backups["live"].module, name, b"secret", state)
    assert operator_client.get(evil.download_url()).status_code == 404
    entry = AuditEntry.objects.get()
    assert entry.outcome == "failed" and entry.params["backups"] == [name]
    url = reverse("opsdash:module_backups_download", kwargs={"host": "testhost", "branch": "dar", "module": "pos"})
    zf = _unzip(operator_client.get(url))
    assert all(b"secret" not in zf.read(n) for n in zf.namelist() if n != "MANIFEST.sha256")
    manifest = zf.read("MANIFEST.sha256").decode()
    assert f"# UNAVAILABLE dar/pos/{zip_part(name)}:" in manifest
    assert f'# NAME dar/pos/{zip_part(name)} = "dar/pos/{name}"' in manifest  # the entry's name says what it stood for


def test_the_module_zip_holds_every_backup_and_a_manifest_of_their_sums(backups, operator_client):
    url = reverse("opsdash:module_backups_download", kwargs={"host": "testhost", "branch": "dar", "module": "pos"})
    response = operator_client.get(url)
    assert response.streaming and response["Content-Type"] == "application/zip"
    assert response["Content-Disposition"] == 'attachment; filename="dar-pos-backups.zip"'
    data = b"".join(response.streaming_content)
    zf = zipfile.ZipFile(io.BytesIO(data))
    assert zf.testzip() is None
    assert zf.read(f"dar/pos/{LIVE_NAME}") == LIVE_BYTES and zf.read(f"dar/pos/{ARCHIVED_NAME}") == ARCHIVED_BYTES
    sums = [line.split("  ") for line in zf.read("MANIFEST.sha256").decode().splitlines() if not line.startswith("#")]
    assert sorted(sums) == sorted(
        [hashlib.sha256(zf.read(n)).hexdigest(), n] for n in zf.namelist() if n != "MANIFEST.sha256"
    )
    entry = AuditEntry.objects.get()
    assert (entry.action, entry.outcome, entry.branch, entry.module) == ("backups_zip_download", "ok", "dar", "pos")
    assert sorted(entry.params["backups"]) == sorted([LIVE_NAME, ARCHIVED_NAME]) and entry.params["bytes"] == len(data)


def test_the_branch_zip_holds_every_module_and_says_what_it_could_not_read(backups, operator_client, store, add_events):
    kds = store.module("dar", "kds")
    add_events(kds)
    scan_root()
    _row(ModuleState.objects.get(module="kds"), "events.meta.json.corrupted.1.bak", b"gone", Backup.State.MISSING)
    response = operator_client.get(
        reverse("opsdash:branch_backups_download", kwargs={"host": "testhost", "branch": "dar"})
    )
    zf = _unzip(response)
    assert sorted(zf.namelist()) == sorted(["MANIFEST.sha256", f"dar/pos/{LIVE_NAME}", f"dar/pos/{ARCHIVED_NAME}"])
    assert (
        "# UNAVAILABLE dar/kds/events.meta.json.corrupted.1.bak: the backup is missing"
        in zf.read("MANIFEST.sha256").decode()
    )
    entry = AuditEntry.objects.get()
    assert (entry.branch, entry.module, entry.params["unavailable"]) == (
        "dar",
        "",
        ["events.meta.json.corrupted.1.bak"],
    )


def test_bytes_that_no_longer_match_the_recorded_sum_are_flagged_in_the_manifest(
    backups, operator_client, archive_root
):
    (archive_root / "dar" / "pos" / ARCHIVED_NAME).write_bytes(b"tampered")
    url = reverse("opsdash:module_backups_download", kwargs={"host": "testhost", "branch": "dar", "module": "pos"})
    manifest = _unzip(operator_client.get(url)).read("MANIFEST.sha256").decode()
    assert (
        f"# MISMATCH dar/pos/{ARCHIVED_NAME}: the bytes hash to {hashlib.sha256(b'tampered').hexdigest()}" in manifest
    )
    assert f"{backups['archived'].sha256}  dar/pos/{ARCHIVED_NAME}" in manifest
    entry = AuditEntry.objects.get()
    assert entry.outcome == "mismatch" and entry.params["mismatches"] == [ARCHIVED_NAME]


@pytest.mark.django_db(transaction=True)  # closing the response may close the connection: reconnect
def test_a_download_abandoned_by_the_client_is_audited_as_interrupted(backups, operator_client):
    url = reverse("opsdash:module_backups_download", kwargs={"host": "testhost", "branch": "dar", "module": "pos"})
    response = operator_client.get(url)
    next(iter(response.streaming_content))
    # Closing fires request_finished, which would close the test's own database connection
    # (the test client detaches that handler only while it runs the request).
    request_finished.disconnect(close_old_connections)
    try:
        response.close()
    finally:
        request_finished.connect(close_old_connections)
    assert AuditEntry.objects.get().outcome == "interrupted"


def test_a_zip_of_an_unknown_module_or_branch_is_404(backups, operator_client):
    assert (
        operator_client.get(
            reverse("opsdash:branch_backups_download", kwargs={"host": "testhost", "branch": "nope"})
        ).status_code
        == 404
    )
    url = reverse("opsdash:module_backups_download", kwargs={"host": "other", "branch": "dar", "module": "pos"})
    assert operator_client.get(url).status_code == 404


# -- the database's copy of an archived backup, served in chunks -------------------------------


@pytest.fixture
def in_database(backups, settings, monkeypatch):
    """The archived backup as another host sees it: only the database's copy, 40 chunks long."""
    from opsdash.models import BackupBlob
    from opsdash.services import files

    monkeypatch.setattr(files, "BLOB_CHUNK", 1 << 16)
    data = bytes(range(256)) * (10 * 1024) + b"tail"  # 2.5 MiB + 4 bytes: a last, short chunk
    backup = backups["archived"]
    Backup.objects.filter(pk=backup.pk).update(size=len(data), sha256=hashlib.sha256(data).hexdigest())
    blob = BackupBlob.objects.create(backup=backup, data=data, sha256=hashlib.sha256(data).hexdigest())
    settings.OPSDASH_HOST_NAME, settings.OPSDASH_ARCHIVE_ROOT = "the-web-host", "/nonexistent"
    return backup, blob, data


def test_an_archived_backup_is_served_from_the_database_a_chunk_at_a_time(in_database, operator_client):
    import tracemalloc

    backup, _blob, data = in_database
    b"".join(operator_client.get(backup.download_url()).streaming_content)  # imports, first-request set-up
    tracemalloc.start()
    try:
        response = operator_client.get(backup.download_url())
        assert response.status_code == 200 and int(response["Content-Length"]) == len(data)
        digest, size = hashlib.sha256(), 0
        for part in response.streaming_content:
            digest.update(part)
            size += len(part)
        _current, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert size == len(data) and digest.digest() == hashlib.sha256(data).digest()
    assert peak < len(data) // 4, f"{peak:,} bytes at the peak: the copy was held whole"
    assert [e.params["bytes"] for e in AuditEntry.objects.all()] == [len(data)] * 2
    zipped = _unzip(
        operator_client.get(
            reverse("opsdash:module_backups_download", kwargs={"host": "testhost", "branch": "dar", "module": "pos"})
        )
    )
    assert zipped.read(f"dar/pos/{ARCHIVED_NAME}") == data


def test_a_database_copy_that_no_longer_matches_its_sum_is_not_served(in_database, operator_client):
    from opsdash.models import BackupBlob

    backup, blob, data = in_database
    BackupBlob.objects.filter(pk=blob.pk).update(data=data[:-1] + b"!")
    response = operator_client.get(backup.download_url())
    page = response.content.decode()
    assert response.status_code == 404 and "This backup cannot be downloaded now" in page
    assert f"the stored copy of {ARCHIVED_NAME} does not match its sha256" in page and backup.get_absolute_url() in page
    entry = AuditEntry.objects.get()
    assert entry.outcome == "failed" and "does not match its sha256" in entry.detail
    arabic = operator_client.get(backup.download_url(), HTTP_ACCEPT_LANGUAGE="ar").content.decode()
    assert "لا يمكن تنزيل هذه النسخة الاحتياطية الآن" in arabic
    page = operator_client.get(backup.get_absolute_url())
    assert page.status_code == 200 and "does not match its sha256" in page.content.decode()
