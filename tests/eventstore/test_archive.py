"""Archiving backups and cleaning temp files: nothing is ever lost."""

from __future__ import annotations

import errno
import hashlib
import os
import time

import pytest

from eventstore import EventStore
from eventstore.archive import ArchiveError

NAME = "events.meta.json.corrupted.1761567827663.bak"


@pytest.fixture
def module(tmp_path):
    (tmp_path / "root").mkdir()
    m = EventStore(tmp_path / "root").module("dar", "pos")
    m.append_event({"table": "t", "record": {"id": 1}})
    (m.live_dir / NAME).write_bytes(b'{"totalEvents": 1}\n}' * 60000)  # over 1 MiB: copied in two chunks
    return m


def test_archive_copies_verifies_and_only_then_removes(module, tmp_path):
    data = (module.live_dir / NAME).read_bytes()
    [done] = module.archive_backups(tmp_path / "archive")
    copy = tmp_path / "archive" / "dar" / "pos" / NAME
    assert copy.read_bytes() == data and done.sha256 == hashlib.sha256(data).hexdigest()
    assert not (module.live_dir / NAME).exists()


@pytest.mark.parametrize("fail_on", ["write", "fsync"])
def test_a_copy_that_fails_halfway_loses_nothing(module, tmp_path, monkeypatch, fail_on):
    data = (module.live_dir / NAME).read_bytes()
    real = getattr(os, fail_on)
    calls = {"n": 0}

    def failing(fd, *args):
        calls["n"] += 1
        if fail_on == "fsync" or calls["n"] > 1:
            raise OSError(errno.ENOSPC, "No space left on device")
        return real(fd, *args)

    monkeypatch.setattr(f"eventstore.archive.os.{fail_on}", failing)
    with pytest.raises(OSError):
        module.archive_backups(tmp_path / "archive")
    monkeypatch.undo()
    assert (module.live_dir / NAME).read_bytes() == data  # the original is untouched
    assert not (tmp_path / "archive" / "dar" / "pos" / NAME).exists()  # no partial copy left
    [done] = module.archive_backups(tmp_path / "archive")  # the next normal call succeeds
    assert done.sha256 == hashlib.sha256(data).hexdigest()


def test_a_copy_that_does_not_match_keeps_the_original(module, tmp_path, monkeypatch):
    import eventstore.archive as archive

    real = archive._sha256_of
    seen = {"n": 0}

    def lying(path):
        seen["n"] += 1
        digest, size = real(path)
        return ("0" * 64, size) if seen["n"] == 2 else (digest, size)  # the copy reads back wrong

    monkeypatch.setattr(archive, "_sha256_of", lying)
    with pytest.raises(ArchiveError):
        module.archive_backups(tmp_path / "archive")
    assert (module.live_dir / NAME).exists()


def test_an_earlier_identical_copy_is_reused_and_a_different_one_refused(module, tmp_path):
    data = (module.live_dir / NAME).read_bytes()
    dest = tmp_path / "archive" / "dar" / "pos"
    dest.mkdir(parents=True)
    (dest / NAME).write_bytes(data)  # a run that died after the copy, before the unlink
    [done] = module.archive_backups(tmp_path / "archive")
    assert done.reused and not (module.live_dir / NAME).exists()
    (module.live_dir / NAME).write_bytes(b"other")
    with pytest.raises(ArchiveError):
        module.archive_backups(tmp_path / "archive")
    assert (module.live_dir / NAME).read_bytes() == b"other" and (dest / NAME).read_bytes() == data


def test_clean_temp_removes_only_old_temp_files(module):
    old = module.live_dir / f"events.meta.json.tmp.{int(time.time() * 1000) - 10_000_000}.abc123"
    new = module.live_dir / f"events.meta.json.tmp.{int(time.time() * 1000)}.def456"
    other = module.live_dir / "data.json"
    for p in (old, new, other):
        p.write_text("x")
    past = time.time() - 10_000
    os.utime(old, (past, past))
    removed = module.clean_temp(grace=3600)
    assert [r.name for r in removed] == [old.name]
    assert not old.exists() and new.exists() and other.exists()
