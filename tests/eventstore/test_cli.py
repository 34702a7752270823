"""``python -m eventstore``: exit codes, text and JSON output, bad input, run as a real process."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from tests.eventstore.conftest import REPO, child_env, meta_bytes, seed


def cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "eventstore", *args],
        capture_output=True,
        text=True,
        timeout=60,
        env=child_env(),
        cwd=REPO,
    )


def tree(path):
    """Every file's bytes (the lock file aside: taking the lock may create it)."""
    out = {}
    for dirpath, _dirs, files in os.walk(path):
        for name in files:
            if name == "events.lock":
                continue
            p = os.path.join(dirpath, name)
            out[p] = None if os.path.islink(p) else Path(p).read_bytes()
    return out


def assert_one_line_error(proc):
    assert proc.stdout == ""
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    assert "Traceback" not in proc.stderr


def test_check_exit_0_when_all_healthy(store, root):
    seed(store, 3)
    seed(store, 2, module="kds")
    proc = cli("check", str(root))
    assert proc.returncode == 0, proc.stderr
    assert "2 module(s)" in proc.stdout and "HEALTHY" in proc.stdout


def test_check_exit_1_on_a_warning(store, root):
    seed(store, 3)
    seed(store, 2, module="kds", meta=False)  # meta_missing
    proc = cli("check", str(root))
    assert proc.returncode == 1
    assert "meta_missing" in proc.stdout


def test_check_exit_2_on_a_critical_finding_with_json(store, root):
    seed(store, 3)
    s = seed(store, 2, module="kds")
    s.write_meta(meta_bytes(s.meta) + b"\n}\n}")
    proc = cli("check", str(root), "--format", "json")
    assert proc.returncode == 2
    doc = json.loads(proc.stdout)
    assert doc["root"] == str(root)
    by_name = {(m["branch"], m["module"]): m for m in doc["modules"]}
    assert set(by_name) == {("dar", "pos"), ("dar", "kds")}
    assert by_name[("dar", "pos")]["status"] == "healthy" and by_name[("dar", "pos")]["findings"] == []
    bad = by_name[("dar", "kds")]
    assert bad["status"] == "critical"
    (f,) = bad["findings"]
    assert {"code", "severity", "message"} <= set(f)
    assert f["code"] == "meta_corrupt" and f["severity"] == "critical"
    assert isinstance(f["line"], int) and isinstance(f["col"], int) and isinstance(f["byte"], int)


def test_check_of_an_empty_root_is_healthy(root):
    proc = cli("check", str(root), "--format", "json")
    assert proc.returncode == 0 and json.loads(proc.stdout)["modules"] == []


@pytest.mark.parametrize("fmt", ["text", "json"])
def test_check_exit_3_when_the_root_is_missing(tmp_path, fmt):
    proc = cli("check", str(tmp_path / "nope"), "--format", fmt)
    assert proc.returncode == 3
    assert_one_line_error(proc)


def test_check_exit_3_when_the_root_is_a_file(tmp_path):
    (tmp_path / "file").write_bytes(b"x")
    proc = cli("check", str(tmp_path / "file"))
    assert proc.returncode == 3
    assert_one_line_error(proc)


def test_show_one_module(store, root):
    s = seed(store, 4)
    (s.live / "events.meta.json.corrupted.1761567827665.bak").write_bytes(b"{")
    proc = cli("show", str(root), "dar", "pos")
    assert proc.returncode == 0, proc.stderr
    assert "dar/pos" in proc.stdout and "4 events" in proc.stdout
    assert "events.meta.json.corrupted.1761567827665.bak" in proc.stdout
    doc = json.loads(cli("show", str(root), "dar", "pos", "--format", "json").stdout)
    assert doc["branch"] == "dar" and doc["stats"]["log_events"] == 4
    assert [b["name"] for b in doc["backups"]] == ["events.meta.json.corrupted.1761567827665.bak"]


def test_show_a_missing_module_is_one_line(root):
    proc = cli("show", str(root), "dar", "nothing")
    assert proc.returncode == 3
    assert_one_line_error(proc)


def test_rebuild_exit_0_and_says_where_fields_came_from(store, root):
    s = seed(store, 5, lastAckId="evt-acked")
    s.write_meta(meta_bytes(s.meta) + b"\n}\n}")
    proc = cli("rebuild", str(root), "dar", "pos")
    assert proc.returncode == 0, proc.stderr
    assert "5 events" in proc.stdout and "corrupted" in proc.stdout and "prefix" in proc.stdout
    assert json.loads(s.module.meta_path.read_bytes())["lastAckId"] == "evt-acked"
    doc = json.loads(cli("rebuild", str(root), "dar", "pos", "--format", "json").stdout)
    assert doc["events_read"] == 5 and doc["sources"]["lastAckId"] == "meta"


def test_rebuild_of_a_missing_module_fails_with_one_line(root):
    before = tree(root)
    proc = cli("rebuild", str(root), "dar", "nothing")
    assert proc.returncode != 0
    assert_one_line_error(proc)
    assert tree(root) == before


def test_rebuild_of_a_symlinked_meta_fails_with_one_line_and_changes_nothing(store, root, tmp_path):
    s = seed(store, 3)
    target = tmp_path / "elsewhere.json"
    target.write_bytes(b"{not json")
    os.unlink(s.module.meta_path)
    s.module.meta_path.symlink_to(target)
    before = tree(tmp_path)
    proc = cli("rebuild", str(root), "dar", "pos")
    assert proc.returncode != 0
    assert_one_line_error(proc)
    assert tree(tmp_path) == before
    assert target.read_bytes() == b"{not json"


@pytest.mark.parametrize(
    "args",
    [
        ["show", "{root}", "..", "pos"],
        ["show", "{root}", "dar", "../../etc"],
        ["rebuild", "{root}", "dar/modules", "pos"],
        ["rebuild", "{root}", "dar", ".."],
        ["rebuild", "{root}", "dar", "a\x01b"],
    ],
)
def test_bad_names_are_refused_with_one_line_and_nothing_changes(store, root, args):
    seed(store, 3)
    before = tree(root.parent)
    proc = cli(*[a.format(root=root) for a in args])
    assert proc.returncode == 3
    assert_one_line_error(proc)
    assert tree(root.parent) == before


def test_backups_lists_every_backup(store, root):
    s = seed(store, 2)
    (s.live / "events.meta.json.corrupted.1761567827665.bak").write_bytes(meta_bytes(s.meta))
    doc = json.loads(cli("backups", str(root), "--format", "json").stdout)
    (b,) = doc["backups"]
    assert b["name"] == "events.meta.json.corrupted.1761567827665.bak" and b["parses"] is True


def test_check_reports_a_folder_whose_name_is_not_utf8_and_escapes_names(tmp_path):
    for raw in (b"bad\xff\xfe", b"ok\xe2\x80\xaename"):
        live = os.path.join(os.fsencode(tmp_path), raw, b"modules", b"pos", b"live")
        os.makedirs(live)
        with open(os.path.join(live, b"events.log"), "wb"):
            pass
    proc = cli("check", str(tmp_path))
    assert proc.returncode == 2, proc.stderr
    text = proc.stdout
    assert "NOT SCANNED  bad\\xff\\xfe/modules/pos: name 'bad\\xff\\xfe' is not valid UTF-8" in text
    assert "ok\\u202ename" in text and "\u202e" not in text  # a bidi override never reaches the terminal


# -- check --full --state (issue 13) ----------------------------------------------------------


def _flip_in_place(path: Path) -> None:
    st = os.stat(path)
    data = bytearray(path.read_bytes())
    i = data.index(b'"evt-', len(data) // 2) + 5
    while not chr(data[i]).isdigit():
        i += 1
    data[i] = ord("1") if data[i] != ord("1") else ord("2")
    path.write_bytes(bytes(data))
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns))


def test_check_with_a_state_file_is_incremental_and_full_finds_a_change_in_place(store, root, tmp_path):
    s = seed(store, 30)
    state_file = tmp_path / "state.json"
    first = cli("check", str(root), "--state", str(state_file), "--format", "json")
    assert first.returncode == 0 and state_file.exists(), first.stderr
    doc = json.loads(state_file.read_text())
    assert doc["version"] == 1 and set(doc["modules"]) == {"dar/pos"}
    report = json.loads(first.stdout)
    assert report["modules"][0]["full"] is True and report["modules"][0]["verified_at"] is not None
    os.utime(s.module.meta_path, (1, 1))  # both files old: past the racily-clean window
    os.utime(s.module.log_path, (1, 1))
    cli("check", str(root), "--state", str(state_file))  # the baseline (the stamps changed: read again)
    _flip_in_place(s.module.log_path)
    incremental = cli("check", str(root), "--state", str(state_file), "--format", "json")
    report = json.loads(incremental.stdout)
    assert incremental.returncode == 0 and report["bytes_read"] == 0 and report["modules"][0]["full"] is False
    full = cli("check", str(root), "--full", "--state", str(state_file))
    assert full.returncode == 2 and "log_changed_in_place" in full.stdout and "read in full" in full.stdout
    again = cli("check", str(root), "--state", str(state_file))  # still reported, from the state
    assert again.returncode == 2 and "log_changed_in_place" in again.stdout


@pytest.mark.parametrize("content", [b"", b"{not json", b"[]", b'{"version": 9, "modules": {}}', b"\xff\xfe"])
def test_a_damaged_state_file_is_one_line_and_a_full_read(store, root, tmp_path, content):
    seed(store, 5)
    state_file = tmp_path / "state.json"
    state_file.write_bytes(content)
    proc = cli("check", str(root), "--state", str(state_file))
    assert proc.returncode == 0, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "state file" in lines[0] and "in full" in lines[0] and "Traceback" not in proc.stderr
    assert json.loads(state_file.read_text())["version"] == 1  # replaced by a good one


def test_an_unreadable_state_file_is_one_line(store, root, tmp_path):
    seed(store, 5)
    folder = tmp_path / "a-folder"
    folder.mkdir()
    proc = cli("check", str(root), "--state", str(folder))  # a folder: cannot be read, nor replaced
    assert "Traceback" not in proc.stderr and proc.stderr.strip() and proc.returncode == 3


def test_show_prints_when_the_log_was_verified_and_the_bytes_read(store, root):
    s = seed(store, 5)
    proc = cli("show", str(root), "dar", "pos")
    assert proc.returncode == 0
    size = s.module.log_path.stat().st_size + s.module.meta_path.stat().st_size
    assert re.search(
        r"verified \d{4}-\d\d-\d\dT[\d:.]+Z \(log read in full\), " + str(size) + " bytes read", proc.stdout
    )
    report = json.loads(cli("show", str(root), "dar", "pos", "--format", "json").stdout)
    assert report["bytes_read"] == size and report["verified_at"] > 0
