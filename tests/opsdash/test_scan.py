from __future__ import annotations

import json
import math
from datetime import UTC, datetime, timedelta

import pytest
from django.core.management import call_command
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from eventstore.checks import FINGERPRINT_BYTES
from opsdash.models import Backup, Incident, ModuleState, ScanHost
from opsdash.services.scan import scan_root

pytestmark = pytest.mark.django_db

WRITES = ("INSERT", "UPDATE", "DELETE")


def _writes(ctx: CaptureQueriesContext) -> list[str]:
    return [q["sql"] for q in ctx.captured_queries if q["sql"].lstrip().upper().startswith(WRITES)]


def _corrupt(module) -> None:
    text = module.meta_path.read_text()
    module.meta_path.write_text(text + text[-40:])


def test_it_records_every_module(store, add_events):
    add_events(store.module("dar", "pos"))
    add_events(store.module("dar", "kds"))
    report = scan_root()
    assert report.modules == 2
    assert report.counts["healthy"] == 2
    state = ModuleState.objects.get(branch="dar", module="pos")
    assert (state.host, state.status, state.log_events, state.meta_total_events) == ("testhost", "healthy", 3, 3)
    assert state.last_event_at is not None
    assert not Incident.objects.exists()


def test_it_opens_an_incident_when_a_module_breaks_and_ends_it_when_healthy(store, add_events):
    module = store.module("dar", "pos")
    add_events(module)
    scan_root()
    good_meta = module.meta_path.read_bytes()
    _corrupt(module)
    report = scan_root()
    assert report.opened == 1 and report.exit_code == 2
    incident = Incident.objects.get()
    assert incident.is_open and incident.severity == "critical" and incident.source == "scan"
    assert "meta_corrupt" in incident.code_list
    assert ModuleState.objects.get().status == "critical"

    module.meta_path.write_bytes(good_meta)
    report = scan_root()
    incident.refresh_from_db()
    assert report.ended == 1
    assert (incident.ended_how, incident.ended_by) == ("resolved", "scan")
    state = ModuleState.objects.get()
    assert state.status == "healthy" and state.status_since >= incident.ended_at


def test_rescanning_unchanged_files_writes_nothing(store, add_events):
    module = store.module("dar", "pos")
    add_events(module, 5)
    _corrupt(module)
    add_events(store.module("zamalek", "kds"))
    (module.live_dir / "events.meta.json.corrupted.1700000000000.bak").write_text("{\n}\n}")
    scan_root()
    with CaptureQueriesContext(connection) as ctx:
        report = scan_root()
    assert _writes(ctx) == []
    assert report.changed == report.opened == report.ended == report.new_backups == report.store_server == 0


def test_record_pass_is_the_only_write_of_a_scan_command_over_unchanged_files(store, add_events):
    add_events(store.module("dar", "pos"))
    with pytest.raises(SystemExit):
        call_command("scan")
    with CaptureQueriesContext(connection) as ctx, pytest.raises(SystemExit) as exit_info:
        call_command("scan")
    assert exit_info.value.code == 0
    writes = _writes(ctx)
    assert len(writes) == 1 and "opsdash_scanhost" in writes[0]
    assert ScanHost.objects.get().modules == 1


def test_a_node_backup_becomes_store_server_history(store, add_events):
    module = store.module("dar", "pos")
    add_events(module)
    when = datetime(2025, 10, 20, 9, 30, tzinfo=UTC)
    name = f"events.meta.json.corrupted.{int(when.timestamp() * 1000)}.bak"
    (module.live_dir / name).write_text('{\n  "totalEvents": 3\n}\n}')
    report = scan_root()
    assert report.store_server == 1
    backup = Backup.objects.get()
    assert (backup.name, backup.created_at, backup.state, backup.parses) == (name, when, "live", False)
    incident = Incident.objects.get()
    assert incident.source == "store-server"
    assert incident.opened_at == incident.ended_at == when
    assert incident.ended_how == "store_server"
    assert incident.backup == backup
    assert ModuleState.objects.get().status == "healthy"  # backup_present is info only


def test_a_backup_made_during_an_incident_we_saw_is_not_store_server_history(store, add_events):
    module = store.module("dar", "pos")
    add_events(module)
    _corrupt(module)
    scan_root(now=timezone.now() - timedelta(minutes=5))
    ms = int(timezone.now().timestamp() * 1000)
    (module.live_dir / f"events.meta.json.corrupted.{ms}.bak").write_text("{")
    scan_root()
    assert Backup.objects.count() == 1
    assert not Incident.objects.filter(source="store-server").exists()


def test_removed_backups_become_missing_and_vanished_modules_gone(store, add_events):
    module = store.module("dar", "pos")
    add_events(module)
    backup = module.live_dir / "events.meta.json.corrupted.1700000000000.bak"
    backup.write_text("{")
    add_events(store.module("dar", "kds"))
    _corrupt(store.module("dar", "kds"))
    scan_root()
    backup.unlink()
    for path in store.module("dar", "kds").live_dir.iterdir():
        path.unlink()
    report = scan_root()
    assert report.gone == 1
    assert Backup.objects.get().state == "missing"
    kds = ModuleState.objects.get(module="kds")
    assert kds.status == "gone"
    assert kds.incidents.get().ended_how == "gone"


def test_scan_command_exits_by_worst_status(store, add_events, capsys):
    add_events(store.module("dar", "pos"))
    with pytest.raises(SystemExit) as exit_info:
        call_command("scan")
    assert exit_info.value.code == 0
    assert "1 modules" in capsys.readouterr().out
    _corrupt(store.module("dar", "pos"))
    with pytest.raises(SystemExit) as exit_info:
        call_command("scan")
    assert exit_info.value.code == 2


def test_scan_command_exits_3_when_the_root_is_unusable(settings, tmp_path, capsys):
    settings.OPSDASH_DATA_ROOT = tmp_path / "missing"
    with pytest.raises(SystemExit) as exit_info:
        call_command("scan")
    assert exit_info.value.code == 3
    assert "does not exist" in capsys.readouterr().err
    assert ScanHost.objects.get().error


def test_it_reads_nothing_again_when_nothing_changed(store, add_events):
    add_events(store.module("dar", "pos"))
    first = scan_root()
    assert first.bytes_read > 0
    later = timezone.now() + timedelta(seconds=5)  # past the racily-clean window of new files
    with CaptureQueriesContext(connection) as ctx:
        report = scan_root(now=later)
    assert report.bytes_read == 0 and not _writes(ctx)


def test_it_reads_only_the_new_bytes_of_a_grown_log(store, add_events):
    module = store.module("dar", "pos")
    add_events(module)
    scan_root()
    size = module.log_path.stat().st_size
    line = add_events(module, count=1)[0]
    grown = module.log_path.stat().st_size - size
    meta_size = module.meta_path.stat().st_size
    report = scan_root()
    # the new line and the rewritten meta; and to know that the log only grew, its first and last
    # bytes before the old end (the fingerprint) and the byte before the old end (a line boundary)
    fingerprint = 2 * min(FINGERPRINT_BYTES, size)
    assert report.bytes_read == grown + meta_size + fingerprint + 1
    assert report.read_in_full == 0
    state = ModuleState.objects.get()
    assert state.log_events == 4 and state.stats["log_last_event_id"] == line["id"] and state.status == "healthy"


@pytest.mark.parametrize("damage", ["same_size_rewrite", "truncate", "replace"])
def test_it_never_misses_a_change(store, add_events, damage):
    module = store.module("dar", "pos")
    add_events(module, count=5)
    scan_root()
    data = module.log_path.read_bytes()
    if damage == "same_size_rewrite":
        cut = data.index(b'"sequence":2') + len('"sequence":')
        module.log_path.write_bytes(data[:cut] + b"1" + data[cut + 1 :])  # a duplicate, same size
        expected = "log_sequence_duplicate"
    elif damage == "truncate":
        module.log_path.write_bytes(data[: len(data) // 2])
        expected = "meta_drift"
    else:
        replacement = module.log_path.with_name("events.log.new")
        replacement.write_bytes(data + b"not json\n")
        replacement.replace(module.log_path)
        expected = "log_bad_line"
    scan_root()
    assert expected in ModuleState.objects.get().codes


def _storable(value) -> bool:
    """No NUL, no lone surrogate, no Infinity or NaN anywhere in ``value``."""
    stack = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, dict):
            stack.extend(item.keys())
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)
        elif isinstance(item, str):
            if "\x00" in item or any("\ud800" <= c <= "\udfff" for c in item):
                return False
        elif isinstance(item, float) and not math.isfinite(item):
            return False
    return True


def test_values_no_database_can_store_are_made_storable_and_the_rescan_writes_nothing(store, add_events):
    """A meta with 1e400 and lone surrogates, a log whose ids hold a lone surrogate, NUL and deep
    nesting: the pass records the module (PostgreSQL's jsonb refuses Infinity, NUL and lone
    surrogates; this test runs on both databases) and an unchanged module is not written again."""
    module = store.module("dar", "pos")
    add_events(module)
    meta = json.loads(module.meta_path.read_text())
    meta.update(lastEventId="__BIG__", lastAckId="ack-\udc80-\x00")
    module.meta_path.write_text(json.dumps(meta).replace('"__BIG__"', "1e400"))
    deep = "[" * 600 + '"x"' + "]" * 600
    with module.log_path.open("a") as f:
        # An event for Node (JSON.parse takes the lone surrogate): its id becomes the last event's.
        f.write('{"id": "evt-\\ud800-\\u0000", "sequence": 4, "table": "t", "record": {"id": ' + deep + "}}\n")
        f.write('{"id": "evt-\\ud800-\\u0000\x00", "sequence": 5, oops}\n')  # a bad line quoting the same
    report = scan_root()
    state = ModuleState.objects.get()
    assert report.modules == 1 and state.status == "critical" and state.log_events == 4
    assert state.stats["log_last_event_id"] == "evt-\ufffd-\ufffd"
    assert {"meta_invalid", "meta_drift", "log_bad_line"} <= {f["code"] for f in state.findings}
    assert _storable([state.scan_state, state.findings, state.stats])
    with CaptureQueriesContext(connection) as ctx:
        scan_root()
    assert _writes(ctx) == []


def test_db_safe_keeps_good_values_and_cleans_bad_ones_at_any_depth():
    from opsdash.services.nul import db_safe

    good = {"a": [1, 2.5, "é😀", None, {"b": True}]}
    assert db_safe(good) is good
    assert db_safe({"k\x00": ["\udc80", float("inf"), float("nan"), "ok"]}) == {
        "k\ufffd": ["\ufffd", "inf", "nan", "ok"]
    }
    deep: list = ["\x00"]
    for _ in range(5000):
        deep = [deep]
    cleaned = db_safe(deep)
    for _ in range(5000):
        cleaned = cleaned[0]
    assert cleaned == ["\ufffd"]
    assert db_safe("a\x00b") == "a\ufffdb" and db_safe(r"a literal \ud800 text") == r"a literal \ud800 text"


def _scan_command(*args: str) -> tuple[int, str, str]:
    import io

    out, err = io.StringIO(), io.StringIO()
    try:
        call_command("scan", *args, stdout=out, stderr=err)
    except SystemExit as exc:
        return exc.code, out.getvalue(), err.getvalue()
    raise AssertionError("manage.py scan always exits with its status code")


def test_a_folder_name_that_is_not_utf8_is_reported_and_never_stops_the_pass(store, add_events, manager_client):
    import os

    from django.urls import reverse

    add_events(store.module("dar", "pos"))
    bad = os.path.join(os.fsencode(store.root), b"bad\xff\xfe", b"modules", b"pos", b"live")
    os.makedirs(bad)
    with open(os.path.join(bad, b"events.log"), "wb") as f:
        f.write(b'{"id": "evt-1", "sequence": 1}\n')
    code, out, err = _scan_command()
    assert code == 2 and err == ""  # critical: something could not be scanned; no traceback
    assert "not scanned: bad\\xff\\xfe/modules/pos (name 'bad\\xff\\xfe' is not valid UTF-8)" in out
    assert list(ModuleState.objects.values_list("branch", "module", "status")) == [("dar", "pos", "healthy")]
    host = ScanHost.objects.get()
    assert host.problems == [{"path": "bad\\xff\\xfe/modules/pos", "reason": "name 'bad\\xff\\xfe' is not valid UTF-8"}]
    html = manager_client.get(reverse("opsdash:module_list")).content.decode()
    assert "was not scanned:" in html and '<code dir="ltr">bad\\xff\\xfe/modules/pos</code>' in html
    code, _, _ = _scan_command()  # and again: still reported, still no failure
    assert code == 2 and ScanHost.objects.get().problems == host.problems


def test_a_module_whose_scan_raises_is_recorded_critical_and_the_pass_goes_on(store, add_events, monkeypatch, caplog):
    from eventstore import Module

    for name in ("kds", "pos", "tabs"):
        add_events(store.module("dar", name))
    _scan_command()
    real = Module.check

    def check(self, *args, **kwargs):
        if self.name == "pos":
            raise RuntimeError("boom in the check")
        return real(self, *args, **kwargs)

    monkeypatch.setattr(Module, "check", check)
    (store.module("dar", "kds").live_dir / "events.meta.json").write_text("{ broken")  # a real change next to it
    code, out, _ = _scan_command()
    assert code == 2
    rows = {m.module: m for m in ModuleState.objects.all()}
    assert {name: row.status for name, row in rows.items()} == {"kds": "critical", "pos": "critical", "tabs": "healthy"}
    assert rows["pos"].findings == [
        {
            "code": "unreadable",
            "severity": "critical",
            "message": "the scan of this module failed: RuntimeError: boom in the check",
            "reason": "RuntimeError: boom in the check",
        }
    ]
    assert rows["pos"].scan_state is None  # read whole next time
    assert "the scan of dar/modules/pos on testhost failed" in caplog.text and "boom in the check" in caplog.text
    monkeypatch.setattr(Module, "check", real)
    _scan_command()
    assert ModuleState.objects.get(module="pos").status == "healthy"
    assert Incident.objects.filter(module__module="pos", ended_at__isnull=False).count() == 1


@pytest.mark.django_db(transaction=True)  # the loop closes a connection that may be broken
def test_a_pass_that_raises_is_recorded_and_the_loop_goes_on(data_root, monkeypatch, caplog):
    import threading

    from opsdash.services import scanner

    calls = []

    def flaky(interval=None):
        calls.append(interval)
        if len(calls) == 1:
            raise RuntimeError("database went away for a moment")
        stop.set()
        return real(interval)

    real = scanner.run_pass
    stop = threading.Event()
    monkeypatch.setattr(scanner, "run_pass", flaky)
    seen = []
    scanner.run_loop(0.01, stop, seen.append)
    assert [o.report is not None for o in seen] == [False, True]
    assert "database went away" in seen[0].error and "the scan pass of testhost failed" in caplog.text
    assert ScanHost.objects.get().error == ""  # the pass after it went well
