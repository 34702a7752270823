"""fileio: durable atomic replace, exclusive create, module locks, change stamps."""

from __future__ import annotations

import json
import multiprocessing
import os
import stat
import time
from pathlib import Path

import pytest

from eventstore import StoreBusy, clock, fileio, layout
from eventstore.fileio import ModuleLock, Stamp, atomic_write, create_exclusive, read_capped


def test_atomic_write_replaces_content_and_leaves_no_temp(tmp_path):
    target = tmp_path / "events.meta.json"
    target.write_bytes(b"old")
    atomic_write(target, b"new content")
    assert target.read_bytes() == b"new content"
    assert os.listdir(tmp_path) == ["events.meta.json"]


def test_atomic_write_uses_the_node_temp_name(tmp_path, monkeypatch):
    seen = []
    real_replace = os.replace

    def spy(src, dst):
        seen.append(Path(src).name)
        real_replace(src, dst)

    monkeypatch.setattr(fileio.os, "replace", spy)
    atomic_write(tmp_path / "events.meta.json", b"{}")
    assert len(seen) == 1 and layout.TEMP_RE.match(seen[0]), seen


def test_atomic_write_keeps_the_mode_of_the_replaced_file(tmp_path):
    target = tmp_path / "events.meta.json"
    target.write_bytes(b"old")
    os.chmod(target, 0o664)
    atomic_write(target, b"new")
    assert stat.S_IMODE(os.stat(target).st_mode) == 0o664


def test_atomic_write_removes_the_temp_file_when_the_write_fails(tmp_path, monkeypatch):
    target = tmp_path / "events.meta.json"
    target.write_bytes(b"old")

    def boom(fd, data):
        os.write(fd, b"partial")
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(fileio, "_write_all", boom)
    with pytest.raises(OSError):
        atomic_write(target, b"new")
    assert target.read_bytes() == b"old"
    assert os.listdir(tmp_path) == ["events.meta.json"]


def test_atomic_write_refuses_to_replace_a_symlink(tmp_path):
    real = tmp_path / "real.json"
    real.write_bytes(b"keep")
    link = tmp_path / "events.meta.json"
    link.symlink_to(real)
    with pytest.raises(OSError):
        atomic_write(link, b"new")
    assert real.read_bytes() == b"keep"
    assert link.is_symlink()


def test_create_exclusive_in_the_same_millisecond_makes_two_files(tmp_path, monkeypatch):
    monkeypatch.setattr(clock, "now_ms", lambda: 1761567827665)
    a = create_exclusive(tmp_path, layout.meta_backup_name, b"first")
    b = create_exclusive(tmp_path, layout.meta_backup_name, b"second")
    assert a.name == "events.meta.json.corrupted.1761567827665.bak"
    assert b.name == "events.meta.json.corrupted.1761567827666.bak"
    assert a.read_bytes() == b"first" and b.read_bytes() == b"second"


def test_read_capped_reads_at_most_the_limit_and_reports_the_size(tmp_path):
    f = tmp_path / "f"
    f.write_bytes(b"x" * 1000)
    data, size = read_capped(f, 10)
    assert data == b"x" * 10 and size == 1000


def test_read_capped_refuses_a_symlink(tmp_path):
    (tmp_path / "real").write_bytes(b"secret")
    (tmp_path / "link").symlink_to(tmp_path / "real")
    with pytest.raises(OSError):
        read_capped(tmp_path / "link", 100)


def test_stamp_notices_size_mtime_and_inode_changes(tmp_path):
    f = tmp_path / "events.log"
    assert Stamp.of(f) is None
    f.write_bytes(b"a\n")
    s1 = Stamp.of(f)
    with open(f, "ab") as fh:
        fh.write(b"b\n")
    assert Stamp.of(f) != s1
    s2 = Stamp.of(f)
    f2 = tmp_path / "other"
    f2.write_bytes(b"a\nb\n")
    os.utime(f2, ns=(s2.mtime_ns, s2.mtime_ns))
    os.replace(f2, f)  # same size and mtime, new inode: still a change
    assert Stamp.of(f) != s2 and not Stamp.of(f).same_file(s2)
    assert Stamp.from_json(json.loads(json.dumps(s2.to_json()))) == s2 and s2.mtime == s2.mtime_ns / 1e9


@pytest.mark.parametrize(
    "value", [None, [], [1, 2, 3], [1, 2, 3, "4"], [1, 2, 3, -4], [1, 2, 3, 4.0], [1, 2, 3, True], {"dev": 1}]
)
def test_a_stamp_read_back_is_four_whole_numbers(value):
    with pytest.raises(ValueError):
        Stamp.from_json(value)


def _hold_lock(folder: str, ready, release) -> None:
    with ModuleLock(Path(folder)).hold():
        ready.set()
        release.wait(10)


def test_module_lock_excludes_another_process_and_times_out(tmp_path):
    ctx = multiprocessing.get_context("spawn")
    ready, release = ctx.Event(), ctx.Event()
    proc = ctx.Process(target=_hold_lock, args=(str(tmp_path), ready, release))
    proc.start()
    try:
        assert ready.wait(20)
        started = time.monotonic()
        with pytest.raises(StoreBusy), ModuleLock(tmp_path, timeout=0.2).hold():
            pass
        assert time.monotonic() - started >= 0.2
    finally:
        release.set()
        proc.join(10)
    with ModuleLock(tmp_path, timeout=2).hold():
        pass
    assert (tmp_path / layout.LOCK_NAME).exists()  # never deleted
