"""``manage.py ingest_logs --follow``: a growing, rotated log file and the journal, on real files
and real processes (the journal through a fake ``journalctl`` first on PATH)."""

from __future__ import annotations

import io
import json
import os
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError

from opsdash.models import Incident, ModuleState, ServerRecovery
from opsdash.services import follow
from opsdash.services.follow import FileFollower, Lines, Sink, load_state
from opsdash.services.scan import scan_root

pytestmark = pytest.mark.django_db

REPO = Path(__file__).resolve().parents[2]
P = "[eventStore][loadMeta] "
STAMP = "2025-10-28T09:00:01.250+03:00"


def _path(root: Path, branch: str, module: str) -> str:
    return f"{root}/{branch}/modules/{module}/live/events.meta.json"


def recovery(root: Path, module: str = "pos", stamp: str = STAMP, events: int = 3) -> list[str]:
    """The lines the Node server prints (pm2 text) around one successful recovery."""
    path = _path(root, "dar", module)
    return [
        f"0|mishkah  | {stamp}: {P}CORRUPTED FILE DETECTED - Attempting recovery\n",
        f"0|mishkah  | {stamp}: {P}Error: Unexpected token : in JSON at position 2884\n",
        f"0|mishkah  | {stamp}: {P}File path: {path}\n",
        f"0|mishkah  | {stamp}: {P}Corrupted file backed up to: {path}.corrupted.1761631201250.bak\n",
        f"0|mishkah  | {stamp}: {P}File size: 3012 bytes\n",
        f"0|mishkah  | {stamp}: {P}Attempting to rebuild meta from event log...\n",
        f"0|mishkah  | {stamp}: {P}Recovered meta from {events} events\n",
        f"0|mishkah  | {stamp}: {P}Meta file rebuilt successfully\n",
    ]


def noise(n: int, stamp: str = STAMP) -> str:
    return "".join(f"0|mishkah  | {stamp}: GET /api/orders/{i} 200\n" for i in range(n))


@pytest.fixture
def modules(store, add_events, data_root) -> Path:
    for name in ("pos", "kds"):
        add_events(store.module("dar", name))
    scan_root()
    return data_root


def _append(path: Path, text: str) -> None:
    with open(path, "a") as fh:
        fh.write(text)


def _once(log: Path, state: Path, *extra: str) -> tuple[str, str]:
    out, err = io.StringIO(), io.StringIO()
    call_command("ingest_logs", "--follow", "--once", str(log), "--state", str(state), *extra, stdout=out, stderr=err)
    return out.getvalue(), err.getvalue()


def _follower(log: Path, state: Path, once: bool = True) -> FileFollower:
    sink = Sink(source=str(log), host="testhost", state_path=state, stop=threading.Event(), say=lambda _: None)
    return FileFollower(log, sink, once=once, warn=lambda _: None)


def _recoveries() -> list[tuple[str, str, int | None]]:
    return list(ServerRecovery.objects.order_by("at", "id").values_list("module_name", "outcome", "events"))


# -- lines ---------------------------------------------------------------------------------------------


def test_lines_give_a_line_that_straddles_two_reads_once_whole():
    lines = Lines(start=10, limit=8)
    assert lines.feed(b"ab\ncd") == [(b"ab\n", 13)]
    assert lines.read_to == 15
    assert lines.feed(b"e\n") == [(b"cde\n", 17)]
    # a line longer than the limit comes out cut, and its offset still counts every byte
    assert lines.feed(b"0123456789") == []
    assert lines.feed(b"abcdef") == []
    assert lines.feed(b"gh\nz") == [(b"01234567", 36)]
    assert lines.read_to == 37
    assert lines.finish() == [(b"z", 37)] and lines.finish() == []


# -- a file, read by runs of --once ---------------------------------------------------------------------


def test_a_recovery_written_in_two_pieces_is_recorded_once_whole(modules, tmp_path):
    log, state = tmp_path / "mishkah-out.log", tmp_path / "state.json"
    block = recovery(modules)
    log.write_text(noise(3) + "".join(block[:3]) + block[3][:20])  # the last write stops in a line
    out, _ = _once(log, state)
    assert ServerRecovery.objects.count() == 0  # the block has not ended: held back
    saved = load_state(state)
    assert saved["offset"] == len(noise(3).encode())  # a restart reads the block again from its start
    _append(log, block[3][20:] + "".join(block[4:]) + noise(2) + "0|mishkah  | half a li")
    out, _ = _once(log, state)
    assert "1 recoveries found: 1 new (1 recovered, 0 failed)" in out
    rec = ServerRecovery.objects.get()
    assert (rec.module_name, rec.outcome, rec.events, rec.size) == ("pos", "recovered", 3, 3012)
    assert len(rec.lines) == 8 and rec.module == ModuleState.objects.get(module="pos")
    assert rec.backup_name == "events.meta.json.corrupted.1761631201250.bak"
    assert load_state(state)["offset"] == log.stat().st_size - len("0|mishkah  | half a li")  # not a line yet
    _append(log, "ne\n")
    out, _ = _once(log, state)
    assert "0 recoveries found" in out and ServerRecovery.objects.count() == 1
    assert Incident.objects.filter(source="store-server").count() == 1


def test_a_block_left_open_is_recorded_as_it_stands_once_the_log_is_quiet(modules, tmp_path):
    log, state = tmp_path / "mishkah-out.log", tmp_path / "state.json"
    log.write_text("".join(recovery(modules)[:3]))  # the server died in the middle of it
    _once(log, state)
    assert ServerRecovery.objects.count() == 0
    past = time.time() - follow.SETTLE_SECONDS - 1
    os.utime(log, (past, past))
    _once(log, state)
    assert _recoveries() == [("pos", "incomplete", None)]
    assert load_state(state)["offset"] == log.stat().st_size


def test_a_restart_reads_only_what_was_appended(modules, tmp_path):
    log, state = tmp_path / "mishkah-out.log", tmp_path / "state.json"
    first = noise(50) + "".join(recovery(modules))
    log.write_text(first)
    one = _follower(log, state)
    one.run()
    assert one.bytes_read == len(first.encode()) and ServerRecovery.objects.count() == 1
    more = "".join(recovery(modules, "kds", "2025-10-28T10:00:00.000+03:00"))
    _append(log, more)
    two = _follower(log, state)
    report = two.run()
    assert two.bytes_read == len(more.encode())  # nothing before the saved offset read again
    assert (report.found, report.new, report.known) == (1, 1, 0)  # ... nor fed to ingest again
    assert _recoveries() == [("pos", "recovered", 3), ("kds", "recovered", 3)]
    three = _follower(log, state)
    assert three.run().found == 0 and three.bytes_read == 0


def test_the_state_file_is_written_atomically_for_this_user_only(modules, tmp_path):
    log, state = tmp_path / "mishkah-out.log", tmp_path / "var" / "state.json"
    log.write_text(noise(2))
    _once(log, state)
    assert state.stat().st_mode & 0o777 == 0o600
    saved = json.loads(state.read_text())
    assert saved["kind"] == "file" and saved["path"] == str(log) and saved["offset"] == log.stat().st_size
    assert (saved["dev"], saved["ino"]) == (log.stat().st_dev, log.stat().st_ino) and len(saved["tail"]) == 64
    assert sorted(p.name for p in state.parent.iterdir()) == ["state.json", "state.json.lock"]  # no temp file left


def test_the_default_state_file_is_in_var_and_named_after_the_log(modules, tmp_path, settings):
    settings.VAR_DIR = tmp_path / "var"
    log = tmp_path / "mishkah-out.log"
    log.write_text(noise(1))
    call_command("ingest_logs", "--follow", "--once", str(log), stdout=io.StringIO())
    [state] = (tmp_path / "var").glob("ingest_logs-*.json")
    assert state.name.startswith("ingest_logs-") and "mishkah-out.log" in state.name
    assert load_state(state)["offset"] == log.stat().st_size
    assert follow.default_state_path(tmp_path, unit="mishkah-os").name == "ingest_logs-journal-mishkah-os.json"
    assert follow.default_state_path(tmp_path, Path("/a/b_c")) != follow.default_state_path(tmp_path, Path("/a_b/c"))


def test_rotation_by_rename_between_two_runs_finishes_the_old_file_first(modules, tmp_path):
    log, state = tmp_path / "mishkah-out.log", tmp_path / "state.json"
    block = recovery(modules)
    log.write_text(noise(2) + "".join(block[:4]))
    _once(log, state)
    _append(log, "".join(block[4:]))  # the rest of the block, written before the rotation
    log.rename(tmp_path / "mishkah-out.log.1")
    log.write_text("".join(recovery(modules, "kds", "2025-10-28T10:00:00.000+03:00")))
    out, _ = _once(log, state)
    assert "rotated since the last run: finishing mishkah-out.log.1 first" in out
    assert _recoveries() == [("pos", "recovered", 3), ("kds", "recovered", 3)]
    assert load_state(state)["ino"] == log.stat().st_ino
    _once(log, state)
    assert ServerRecovery.objects.count() == 2


def test_a_log_truncated_and_written_again_between_two_runs_is_read_from_its_start(modules, tmp_path):
    log, state = tmp_path / "mishkah-out.log", tmp_path / "state.json"
    log.write_text(noise(5) + "".join(recovery(modules)))
    _once(log, state)
    ino = log.stat().st_ino
    with open(log, "r+") as fh:  # copytruncate: the same inode, now longer than the old offset
        fh.truncate(0)
        fh.write("".join(recovery(modules, "kds", "2025-10-28T10:00:00.000+03:00")) + noise(40))
    assert log.stat().st_ino == ino and log.stat().st_size > load_state(state)["offset"]
    out, _ = _once(log, state)
    assert "truncated or written again since the last run" in out
    assert _recoveries() == [("pos", "recovered", 3), ("kds", "recovered", 3)]


def test_a_damaged_state_file_is_one_warning_and_the_file_is_read_from_its_end(modules, tmp_path):
    log, state = tmp_path / "mishkah-out.log", tmp_path / "state.json"
    log.write_text("".join(recovery(modules)) + noise(3) + "0|mishkah  | half")
    for damage in (b"{not json", b'{"version": 1, "kind": "file", "path": "%s", "offset": "x"}' % bytes(log), b"[]"):
        state.write_bytes(damage)
        out, err = _once(log, state)
        assert len(err.strip().splitlines()) == 1 and "damaged" in err and "Traceback" not in err + out
        assert ServerRecovery.objects.count() == 0  # what was there before is not read
        assert load_state(state)["offset"] == log.stat().st_size - len("0|mishkah  | half")  # after a whole line
    _append(log, " a line\n" + "".join(recovery(modules, "kds")))
    out, err = _once(log, state)
    assert err == "" and _recoveries() == [("kds", "recovered", 3)]


def test_the_state_of_another_log_is_damaged_for_this_one(modules, tmp_path):
    log, other, state = tmp_path / "a.log", tmp_path / "b.log", tmp_path / "state.json"
    log.write_text(noise(1))
    other.write_text("".join(recovery(modules)))
    _once(log, state)
    _, err = _once(other, state)
    assert "is damaged (it is the state of file" in err and ServerRecovery.objects.count() == 0


def test_follow_refuses_what_cannot_be_followed(tmp_path):
    for args, message in (
        (["--follow"], "give a FILE or --journal UNIT"),
        (["--follow", "x.log", "--journal", "u"], "give a FILE or --journal UNIT"),
        (["--follow", "-"], "do not grow"),
        (["--follow", "x.log.gz"], "do not grow"),
        (["x.log", "--once"], "--once goes with --follow"),
        (["--journal", "u"], "--journal goes with --follow"),
        ([], "which log?"),
        (["--follow", "--once", str(tmp_path / "missing.log"), "--state", str(tmp_path / "s")], "cannot read"),
    ):
        with pytest.raises(CommandError, match=message):
            call_command("ingest_logs", *args, stdout=io.StringIO())


def test_two_followers_with_one_state_file_are_refused(tmp_path):
    state = tmp_path / "state.json"
    with follow.state_lock(state), pytest.raises(follow.FollowError, match="another ingest_logs"):  # noqa: SIM117
        with follow.state_lock(state):
            pass


# -- a file, followed in one run ------------------------------------------------------------------------


def test_rotation_while_following_loses_nothing_and_duplicates_nothing(modules, tmp_path):
    log, state = tmp_path / "mishkah-out.log", tmp_path / "state.json"
    block = recovery(modules)
    log.write_text(noise(2) + "".join(block[:5]))
    f = _follower(log, state, once=False)
    f.start()
    assert f.poll()
    # rename rotation: the writer still finishes its block in the old file, then writes a new one
    _append(log, "".join(block[5:]) + "0|mishkah  | a last line without its newline")
    log.rename(tmp_path / "mishkah-out.log.1")
    log.write_text("".join(recovery(modules, "kds", "2025-10-28T10:00:00.000+03:00")))
    assert f.poll() and f.poll()  # the old file to its last byte, then the new one from its start
    assert _recoveries() == [("pos", "recovered", 3), ("kds", "recovered", 3)]
    # copytruncate, and more written than there was before the next look
    size = log.stat().st_size
    with open(log, "r+") as fh:
        fh.truncate(0)
        fh.write("".join(recovery(modules, "pos", "2025-10-28T11:00:00.000+03:00", events=4)) + noise(30))
    assert log.stat().st_size > size
    assert f.poll() and f.poll()
    # copytruncate to a shorter file
    with open(log, "r+") as fh:
        fh.truncate(0)
        fh.write("".join(recovery(modules, "kds", "2025-10-28T12:00:00.000+03:00", events=5)))
    assert f.poll() and f.poll()
    f.close()
    assert _recoveries() == [
        ("pos", "recovered", 3),
        ("kds", "recovered", 3),
        ("pos", "recovered", 4),
        ("kds", "recovered", 5),
    ]
    assert load_state(state)["offset"] == log.stat().st_size
    assert f.bytes_read == sum(p.stat().st_size for p in (log, tmp_path / "mishkah-out.log.1")) + size + len(
        "".join(recovery(modules, "pos", "2025-10-28T11:00:00.000+03:00", events=4)) + noise(30)
    )


def test_a_log_that_is_not_there_yet_is_waited_for(modules, tmp_path):
    log, state = tmp_path / "mishkah-out.log", tmp_path / "state.json"
    f = _follower(log, state, once=False)
    f.start()
    assert f.poll()
    log.write_text("".join(recovery(modules)))
    assert f.poll() and f.poll()
    f.close()
    assert _recoveries() == [("pos", "recovered", 3)]


# -- the command as a real process ----------------------------------------------------------------------


def _env(tmp_path: Path, **more: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DATABASE_", "OPSDASH_", "DJANGO_"))}
    env.update(
        DATABASE_URL=f"sqlite:///{tmp_path / 'db.sqlite3'}",
        DJANGO_SECRET_KEY="test-only-key-abcdefghijklmnopqrstuvwxyz0123456789",
        OPSDASH_HOST_NAME="store-a",
        PYTHONUNBUFFERED="1",
        **more,
    )
    return env


def _manage(env: dict[str, str], *args: str, **kw) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "manage.py", *args],
        cwd=REPO,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        **kw,
    )


def _migrated(tmp_path: Path, **more: str) -> dict[str, str]:
    env = _env(tmp_path, **more)
    done = subprocess.run(
        [sys.executable, "manage.py", "migrate", "--verbosity", "0"], cwd=REPO, env=env, capture_output=True, text=True
    )
    assert done.returncode == 0, done.stderr
    return env


def _rows(tmp_path: Path) -> list[tuple]:
    with sqlite3.connect(tmp_path / "db.sqlite3") as db:
        return db.execute(
            "SELECT module_name, outcome, events, source FROM opsdash_serverrecovery ORDER BY id"
        ).fetchall()


def _wait_for(check, timeout: float = 30.0, proc: subprocess.Popen | None = None):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if found := check():
            return found
        if proc is not None and proc.poll() is not None:
            raise AssertionError(f"ingest_logs exited with {proc.returncode}: {proc.stderr.read()}")
        time.sleep(0.1)
    raise AssertionError("timed out")


def _read_until(proc: subprocess.Popen, text: str) -> None:
    """Read the process's output up to a line with ``text`` (killed after a minute without it)."""
    timer = threading.Timer(60, proc.kill)
    timer.start()
    try:
        while text not in (line := proc.stdout.readline()):
            if not line:
                raise AssertionError(f"ingest_logs exited with {proc.wait()}: {proc.stderr.read()}")
    finally:
        timer.cancel()


@pytest.mark.django_db(transaction=True)
def test_follow_as_a_process_picks_up_an_appended_recovery_and_stops_on_sigterm(tmp_path):
    env = _migrated(tmp_path)
    log, state = tmp_path / "mishkah-out.log", tmp_path / "state.json"
    log.write_text(noise(3))
    proc = _manage(env, "ingest_logs", "--follow", str(log), "--state", str(state))
    try:
        _read_until(proc, "ingest_logs: following")
        _wait_for(lambda: state.exists(), proc=proc)
        _append(log, "".join(recovery(Path("/srv/data/branches"))) + noise(1))
        rows = _wait_for(lambda: _rows(tmp_path), proc=proc)
        assert rows == [("pos", "recovered", 3, str(log))]
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0, err
    assert "stopped; 1 recoveries found: 1 new (1 recovered, 0 failed)" in out and "Traceback" not in err
    assert load_state(state)["offset"] == log.stat().st_size


# -- the journal, through a fake journalctl ---------------------------------------------------------------

FAKE_JOURNALCTL = """\
#!%(python)s
# A stand-in for journalctl -o json: prints the records of $FAKE_JOURNAL (JSON lines), after
# --after-cursor (refused when unknown, as journalctl refuses a cursor it cannot seek to) or from
# --since=@SECONDS; with -f it goes on printing records appended to that file until SIGTERM.
import json, os, signal, sys, time
args = sys.argv[1:]
with open(os.environ["FAKE_JOURNALCTL_ARGS"], "a") as fh:
    fh.write(json.dumps(args) + "\\n")
assert args[:2] == ["-o", "json"], args
signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
cursor = next((a.split("=", 1)[1] for a in args if a.startswith("--after-cursor=")), None)
since = next((float(a.split("=@", 1)[1]) for a in args if a.startswith("--since=@")), None)
unit = args[args.index("-u") + 1]
def records():
    with open(os.environ["FAKE_JOURNAL"]) as fh:
        return [json.loads(line) for line in fh if line.strip()]
known = records()
if cursor is not None:
    cursors = [r["__CURSOR"] for r in known]
    if cursor not in cursors:
        print("Failed to seek to cursor: Invalid argument", file=sys.stderr)
        sys.exit(1)
    start = cursors.index(cursor) + 1
elif since is not None:
    start = next((i for i, r in enumerate(known) if int(r["__REALTIME_TIMESTAMP"]) >= since * 1e6), len(known))
else:
    start = 0
while True:
    for record in records()[start:]:
        if record.get("_SYSTEMD_UNIT") == unit + ".service":
            sys.stdout.write(json.dumps(record) + "\\n")
        start += 1
    sys.stdout.flush()
    if "-f" not in args:
        break
    time.sleep(0.1)
"""


class Journal:
    """The fake journal: records appended as journald would keep them."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.n = 0
        path.write_text("")

    def add(self, message: str | list[int], at: float | None = None, unit: str = "mishkah-os") -> str:
        self.n += 1
        cursor = f"s=0123;i={self.n:x};b=abc;m={self.n:x};t=0;x=ff"
        record = {
            "__CURSOR": cursor,
            "__REALTIME_TIMESTAMP": str(int((at or time.time()) * 1e6)),
            "_SYSTEMD_UNIT": f"{unit}.service",
            "_HOSTNAME": "pos1",
            "SYSLOG_IDENTIFIER": "node",
            "_PID": "811",
            "MESSAGE": message,
        }
        with open(self.path, "a") as fh:
            fh.write(json.dumps(record) + "\n")
        return cursor

    def block(self, root: Path, module: str = "pos", at: float | None = None) -> str:
        for line in recovery(root, module):
            cursor = self.add(line.split(": ", 1)[1].rstrip("\n"), at)
        return cursor


@pytest.fixture
def journal(tmp_path, monkeypatch) -> Journal:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    fake = bin_dir / "journalctl"
    fake.write_text(FAKE_JOURNALCTL % {"python": sys.executable})
    fake.chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    monkeypatch.setenv("FAKE_JOURNAL", str(tmp_path / "journal.jsonl"))
    monkeypatch.setenv("FAKE_JOURNALCTL_ARGS", str(tmp_path / "journalctl-args.jsonl"))
    return Journal(tmp_path / "journal.jsonl")


def _calls(tmp_path: Path) -> list[list[str]]:
    return [json.loads(line) for line in (tmp_path / "journalctl-args.jsonl").read_text().splitlines()]


def _journal_once(state: Path, unit: str = "mishkah-os") -> tuple[str, str]:
    out, err = io.StringIO(), io.StringIO()
    call_command("ingest_logs", "--follow", "--once", "--journal", unit, "--state", str(state), stdout=out, stderr=err)
    return out.getvalue(), err.getvalue()


def test_the_journal_is_parsed_and_resumed_after_its_last_cursor(modules, tmp_path, journal):
    state = tmp_path / "state.json"
    at = 1761567827.663  # 2025-10-27 12:23:47.663 UTC
    journal.add("GET /api/orders 200", at)
    journal.add("some other unit", at, unit="nginx")
    kds = _path(modules, "dar", "kds")
    journal.add(f"{P}CORRUPTED FILE DETECTED - Attempting recovery", at)
    journal.add(list(f"{P}Error: Unexpected token \xff in JSON".encode("latin-1")), at)  # not UTF-8: byte values
    journal.add(f"{P}File path: {kds}\n{P}Recovered meta from 7 events", at)  # two lines in one record
    last = journal.add(f"{P}Meta file rebuilt successfully", at)
    out, err = _journal_once(state)
    assert err == "" and "1 recoveries found: 1 new (1 recovered, 0 failed)" in out
    rec = ServerRecovery.objects.get()
    assert (rec.module_name, rec.outcome, rec.events, rec.source) == ("kds", "recovered", 7, "journalctl -u mishkah-os")
    assert rec.at.timestamp() == pytest.approx(at) and rec.error == "Unexpected token \ufffd in JSON"
    assert (
        rec.lines[0]
        == f"2025-10-27T12:23:47.663000+00:00 pos1 node[811]: {P}CORRUPTED FILE DETECTED - Attempting recovery"
    )
    assert rec.module == ModuleState.objects.get(module="kds")
    assert load_state(state) | {"saved_at": None} == {
        "version": 1,
        "kind": "journal",
        "unit": "mishkah-os",
        "cursor": last,
        "since": None,
        "saved_at": None,
    }
    assert _calls(tmp_path) == [["-o", "json", "--no-pager", "-u", "mishkah-os", "--lines=all"]]
    journal.block(modules, "pos")
    out, _ = _journal_once(state)
    assert "1 recoveries found: 1 new" in out and "0 already known" in out  # nothing fed again
    assert _calls(tmp_path)[-1] == [
        "-o",
        "json",
        "--no-pager",
        "-u",
        "mishkah-os",
        "--lines=all",
        f"--after-cursor={last}",
    ]
    assert _recoveries() == [("kds", "recovered", 7), ("pos", "recovered", 3)]


def test_a_journal_block_read_by_two_runs_is_recorded_once(modules, tmp_path, journal):
    state = tmp_path / "state.json"
    lines = [line.split(": ", 1)[1].rstrip("\n") for line in recovery(modules)]
    before = journal.add("GET /api/orders 200")
    for line in lines[:4]:
        journal.add(line)
    _journal_once(state)
    assert ServerRecovery.objects.count() == 0 and load_state(state)["cursor"] == before  # held back
    for line in lines[4:]:
        journal.add(line)
    _journal_once(state)
    assert _recoveries() == [("pos", "recovered", 3)]
    assert _calls(tmp_path)[-1][-1] == f"--after-cursor={before}"


def test_a_damaged_journal_state_is_one_warning_and_reads_from_now_on(modules, tmp_path, journal):
    state = tmp_path / "state.json"
    journal.block(modules, "pos", at=time.time() - 3600)  # before the damage was noticed
    state.write_text('{"version": 1, "kind": "journal", "unit": "mishkah-os", "cursor": 7}')
    before = time.time()
    out, err = _journal_once(state)
    assert len(err.strip().splitlines()) == 1 and "damaged" in err and "from now on" in err
    assert ServerRecovery.objects.count() == 0
    since = load_state(state)["since"]
    assert before - 1 <= since <= time.time() and _calls(tmp_path)[-1][-1] == f"--since=@{since:.6f}"
    journal.block(modules, "kds")
    out, err = _journal_once(state)
    assert err == "" and _recoveries() == [("kds", "recovered", 3)]


def test_a_cursor_journalctl_refuses_is_one_warning_and_reads_from_now_on(modules, tmp_path, journal):
    state = tmp_path / "state.json"
    follow.save_state(state, {"kind": "journal", "unit": "mishkah-os", "cursor": "s=gone;i=1", "since": None})
    journal.block(modules, "pos", at=time.time() - 3600)
    out, err = _journal_once(state)
    assert "refused the saved cursor" in err and ServerRecovery.objects.count() == 0
    assert [call[-1].split("=")[0] for call in _calls(tmp_path)] == ["--after-cursor", "--since"]


def test_a_journalctl_that_fails_is_a_command_error(tmp_path, monkeypatch):
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "journalctl").write_text("#!/bin/sh\necho 'No journal files were found.' >&2\nexit 1\n")
    (bin_dir / "journalctl").chmod(0o755)
    monkeypatch.setenv("PATH", str(bin_dir))
    with pytest.raises(CommandError, match="journalctl ended with exit code 1"):
        _journal_once(tmp_path / "state.json")
    monkeypatch.setenv("PATH", str(tmp_path / "nothing"))
    with pytest.raises(CommandError, match="cannot run journalctl"):
        _journal_once(tmp_path / "state.json")


@pytest.mark.django_db(transaction=True)
def test_follow_journal_as_a_process_passes_follow_and_resumes_after_sigterm(tmp_path, journal):
    env = _migrated(tmp_path, PATH=os.environ["PATH"])
    env.update(FAKE_JOURNAL=os.environ["FAKE_JOURNAL"], FAKE_JOURNALCTL_ARGS=os.environ["FAKE_JOURNALCTL_ARGS"])
    state = tmp_path / "state.json"
    journal.block(Path("/srv/data/branches"), "pos")
    proc = _manage(env, "ingest_logs", "--follow", "--journal", "mishkah-os", "--state", str(state))
    try:
        _read_until(proc, "ingest_logs: following journalctl -u mishkah-os")
        assert _wait_for(lambda: _rows(tmp_path), proc=proc) == [("pos", "recovered", 3, "journalctl -u mishkah-os")]
        last = journal.block(Path("/srv/data/branches"), "kds")  # while it runs
        _wait_for(lambda: len(_rows(tmp_path)) == 2, proc=proc)
        _wait_for(lambda: state.exists() and load_state(state)["cursor"] == last)
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0, err
    assert "stopped; 2 recoveries found: 2 new" in out
    assert _calls(tmp_path) == [["-o", "json", "--no-pager", "-u", "mishkah-os", "--lines=all", "-f"]]
    # a restart goes on after the last cursor
    proc = _manage(env, "ingest_logs", "--follow", "--journal", "mishkah-os", "--state", str(state))
    try:
        _read_until(proc, "ingest_logs: following")
        _wait_for(lambda: len(_calls(tmp_path)) == 2, proc=proc)
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0, err
    assert _calls(tmp_path)[-1][-2:] == ["-f", f"--after-cursor={last}"]
    assert "0 recoveries found" in out and len(_rows(tmp_path)) == 2


def test_journal_lines_shapes():
    assert follow.journal_lines({"MESSAGE": None}) == [] and follow.journal_lines([1]) == []
    assert follow.journal_lines({"MESSAGE": "x"}) == ["x"]
    assert follow.journal_lines({"MESSAGE": [104, 105], "__REALTIME_TIMESTAMP": "0", "_COMM": "node"}) == [
        "1970-01-01T00:00:00.000000+00:00 node: hi"
    ]
    assert follow.journal_lines({"MESSAGE": [300]}) == []


def test_a_journalctl_that_ends_while_followed_is_an_error(tmp_path, monkeypatch):
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "journalctl").write_text("#!/bin/sh\nexit 0\n")
    (bin_dir / "journalctl").chmod(0o755)
    monkeypatch.setenv("PATH", str(bin_dir))
    sink = Sink(source="u", host="h", state_path=tmp_path / "s.json", stop=threading.Event(), say=lambda _: None)
    with pytest.raises(follow.FollowError, match="journalctl ended with exit code 0"):
        follow.JournalFollower("u", sink, warn=lambda _: None).run()
    sink.stop.set()  # stopped: its end is no error
    assert follow.JournalFollower("u", sink, warn=lambda _: None).run().found == 0
