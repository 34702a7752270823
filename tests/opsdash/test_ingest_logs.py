from __future__ import annotations

import gzip
import io
import sys
from datetime import UTC, datetime
from pathlib import Path

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError

from opsdash.models import Incident, ModuleState, ServerRecovery
from opsdash.services.scan import scan_root

pytestmark = pytest.mark.django_db

P = "[eventStore][loadMeta] "
BACKUP = "events.meta.json.corrupted.1761567827663.bak"  # 2025-10-27 12:23:47.663 UTC


def _path(root: Path, branch: str, module: str) -> str:
    return f"{root}/{branch}/modules/{module}/live/events.meta.json"


def journald(root: Path) -> str:
    pos = _path(root, "dar", "pos")
    return f"""\
Oct 27 12:23:47 pos1 node[811]: {P}CORRUPTED FILE DETECTED - Attempting recovery
Oct 27 12:23:47 pos1 node[811]: {P}Error: Unexpected token : in JSON at position 2884
Oct 27 12:23:47 pos1 node[811]: {P}File path: {pos}
Oct 27 12:23:47 pos1 node[811]: {P}Corrupted file backed up to: {pos}.corrupted.1761567827663.bak
Oct 27 12:23:47 pos1 node[811]: {P}File size: 3012 bytes
Oct 27 12:23:47 pos1 node[811]: {P}Attempting to rebuild meta from event log...
Oct 27 12:23:47 pos1 node[811]: {P}Recovered meta from 3 events
Oct 27 12:23:47 pos1 node[811]: {P}Meta file rebuilt successfully
Oct 27 12:24:00 pos1 node[811]: GET /api/orders 200
"""


def pm2(root: Path) -> str:
    kds, old = _path(root, "dar", "kds"), _path(root, "bab", "pos")
    return f"""\
0|mishkah  | 2025-10-28T09:00:01.250+03:00: {P}CORRUPTED FILE DETECTED - Attempting recovery
0|mishkah  | 2025-10-28T09:00:01.250+03:00: {P}Error: Unexpected end of JSON input
0|mishkah  | 2025-10-28T09:00:01.251+03:00: {P}File path: {kds}
0|mishkah  | 2025-10-28T09:00:01.252+03:00: {P}Recovery failed: ENOSPC: no space left on device
0|mishkah  | 2025-10-28T09:05:00.000+03:00: {P}CORRUPTED FILE DETECTED - Attempting recovery
0|mishkah  | 2025-10-28T09:05:00.000+03:00: {P}Error: Unexpected end of JSON input
0|mishkah  | 2025-10-28T09:05:00.001+03:00: {P}File path: {kds}
0|mishkah  | 2025-10-28T09:05:00.002+03:00: {P}Recovered meta from 3 events
0|mishkah  | 2025-10-28T09:05:00.003+03:00: {P}Meta file rebuilt successfully
0|mishkah  | 2025-10-20 09:00:01 +00:00: {P}JSON parse error: Unexpected token }} in JSON at position 1201
0|mishkah  | 2025-10-20 09:00:01 +00:00: {P}File path: {old}
0|mishkah  | 2025-10-20 09:00:01 +00:00: {P}Raw content (first 500 chars): {{"branchId": "bab",
0|mishkah  | 2025-10-21 10:00:00 +00:00: {P}JSON parse error: Unexpected end of JSON input
0|mishkah  | 2025-10-21 10:00:00 +00:00: {P}File path: /srv/other/branches/zzz/modules/nope/live/events.meta.json
0|mishkah  | 2025-10-21 10:00:00 +00:00: {P}Raw content (first 500 chars):
"""


@pytest.fixture
def modules(store, add_events, data_root) -> Path:
    """dar/pos with the backup the Node server made (scanned), dar/kds and bab/pos healthy."""
    for branch, name in (("dar", "pos"), ("dar", "kds"), ("bab", "pos")):
        add_events(store.module(branch, name))
    (store.module("dar", "pos").live_dir / BACKUP).write_text('{\n  "totalEvents": 3\n}\n}')
    scan_root()
    return data_root


def _run(*args: str) -> str:
    out = io.StringIO()
    call_command("ingest_logs", *args, stdout=out)
    return out.getvalue()


def test_a_journald_recovery_links_to_the_scan_incident_of_its_backup(modules, tmp_path):
    log = tmp_path / "node.journal"
    log.write_text(journald(modules))
    [scan_incident] = Incident.objects.filter(source="store-server")
    out = _run(str(log), "--year", "2025")
    assert "1 recoveries found: 1 new (1 recovered, 0 failed), 0 already known; 0 unmatched modules" in out
    rec = ServerRecovery.objects.get()
    assert (rec.outcome, rec.events, rec.size, rec.branch, rec.module_name) == ("recovered", 3, 3012, "dar", "pos")
    assert rec.at == datetime(2025, 10, 27, 12, 23, 47, tzinfo=UTC)
    assert rec.error == "Unexpected token : in JSON at position 2884" and rec.path.endswith(
        "dar/modules/pos/live/events.meta.json"
    )
    assert rec.module == ModuleState.objects.get(branch="dar", module="pos")
    assert rec.backup.name == BACKUP and rec.incident == scan_incident
    assert Incident.objects.filter(source="store-server").count() == 1  # not duplicated


def test_pm2_failed_then_recovered_opens_and_ends_one_incident_and_the_old_build_stays_open(modules, tmp_path):
    log = tmp_path / "mishkah-out.log"
    log.write_text(pm2(modules))
    out = _run(str(log))
    assert "4 recoveries found: 4 new (1 recovered, 3 failed), 0 already known; 1 unmatched modules: zzz/nope" in out
    kds = ModuleState.objects.get(branch="dar", module="kds")
    [incident] = kds.incidents.all()
    assert incident.source == "store-server" and incident.opened_at == datetime(
        2025, 10, 28, 6, 0, 1, 250000, tzinfo=UTC
    )
    assert incident.ended_at == datetime(2025, 10, 28, 6, 5, tzinfo=UTC)
    assert (incident.ended_how, incident.ended_by) == ("store_server", "store server")
    assert "ENOSPC" in incident.findings[0]["message"] and "3 events" in incident.findings[1]["message"]
    assert kds.server_recoveries.count() == 2
    old = ServerRecovery.objects.get(branch="bab")
    assert old.old_build and old.outcome == "failed" and old.error.startswith("Unexpected token }")
    assert old.incident.is_open and old.incident.module.module == "pos"
    unmatched = ServerRecovery.objects.get(branch="zzz")
    assert unmatched.module is None and unmatched.incident is None


def test_a_failed_recovery_reopens_the_incident_the_scan_took_for_a_success(modules, tmp_path):
    text = journald(modules).replace(
        f"{P}Meta file rebuilt successfully", f"{P}Recovery failed: EACCES: permission denied"
    )
    log = tmp_path / "node.journal"
    log.write_text(text)
    _run(str(log), "--year", "2025")
    [incident] = Incident.objects.filter(source="store-server")
    assert incident.is_open and incident.ended_how == ""
    assert "EACCES" in incident.findings[-1]["message"]


def test_running_twice_records_nothing_new(modules, tmp_path):
    log = tmp_path / "mishkah-out.log"
    log.write_text(pm2(modules) + journald(modules))
    _run(str(log), "--year", "2025")
    before = (ServerRecovery.objects.count(), list(Incident.objects.values_list("id", "ended_at", "findings")))
    out = _run(str(log), "--year", "2025")
    assert "5 recoveries found: 0 new (0 recovered, 0 failed), 5 already known" in out
    assert (ServerRecovery.objects.count(), list(Incident.objects.values_list("id", "ended_at", "findings"))) == before


def test_it_reads_standard_input_and_gzip(modules, tmp_path, monkeypatch):
    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(journald(modules).encode())))
    assert "1 new" in _run("-", "--year", "2025")
    assert ServerRecovery.objects.get().source == "-"
    gz = tmp_path / "mishkah-out.log.gz"
    gz.write_bytes(gzip.compress(pm2(modules).encode()))
    assert "4 new" in _run(str(gz))


def test_another_host_matches_no_module(modules, tmp_path):
    log = tmp_path / "node.journal"
    log.write_text(journald(modules))
    assert "1 unmatched modules: dar/pos" in _run(str(log), "--year", "2025", "--host", "pos2")
    assert ServerRecovery.objects.get().host == "pos2"


def test_a_missing_file_is_a_one_line_error(db, tmp_path):
    with pytest.raises(CommandError, match=r"^ingest_logs: cannot read .*nope\.log: No such file or directory$"):
        _run(str(tmp_path / "nope.log"))


def test_recoveries_show_on_the_module_page_and_the_history(modules, tmp_path, manager_client):
    log = tmp_path / "mishkah-out.log"
    log.write_text(pm2(modules))
    _run(str(log))
    kds = ModuleState.objects.get(branch="dar", module="kds")
    page = manager_client.get(kds.get_absolute_url()).content.decode()
    assert "ENOSPC: no space left on device" in page and "rebuilt the meta from 3 events" in page
    history = manager_client.get("/history/").content.decode()
    assert "recovered by the store server" in history and "ENOSPC" in history


def test_a_recovery_of_a_module_scanned_later_is_linked_on_the_next_run(modules, tmp_path, store, add_events):
    text = journald(modules).replace("/dar/", "/new/")
    log = tmp_path / "node.journal"
    log.write_text(text)
    assert "1 unmatched modules: new/pos" in _run(str(log), "--year", "2025")
    add_events(store.module("new", "pos"))
    scan_root()
    assert "1 already known (1 now linked to their module); 0 unmatched" in _run(str(log), "--year", "2025")
    rec = ServerRecovery.objects.get()
    assert rec.module.branch == "new" and rec.incident.ended_how == "store_server"
    assert "1 already known; 0 unmatched" in _run(str(log), "--year", "2025")


def test_a_backup_the_log_told_about_first_gets_no_second_incident(store, add_events, tmp_path):
    from opsdash.models import Backup, Incident, ServerRecovery
    from opsdash.services.scan import scan_root

    module = store.module("dar", "pos")
    add_events(module)
    scan_root()
    name = "events.meta.json.corrupted.1761567827663.bak"
    log = tmp_path / "node.log"
    path = module.meta_path
    log.write_text(
        "\n".join(
            f"Oct 27 12:23:47 pos1 node[811]: [eventStore][loadMeta] {m}"
            for m in (
                "CORRUPTED FILE DETECTED - Attempting recovery",
                "Error: Unexpected token : in JSON at position 2884",
                f"File path: {path}",
                f"Corrupted file backed up to: {path}.corrupted.1761567827663.bak",
                "Recovered meta from 3 events",
                "Meta file rebuilt successfully",
            )
        )
        + "\n"
    )
    call_command("ingest_logs", str(log), "--year", "2025")
    assert Incident.objects.filter(source="store-server").count() == 1
    (module.live_dir / name).write_bytes(b'{"broken": ')
    scan_root()
    incident = Incident.objects.get(source="store-server")
    assert incident.backup == Backup.objects.get(name=name)
    assert ServerRecovery.objects.get().backup == incident.backup
