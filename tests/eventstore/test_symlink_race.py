"""A folder swapped for a symlink after the containment check (a time-of-check/time-of-use race).

``Module.contained()`` walks the folders on the way with lstat before any read or write; a folder
replaced by a symlink leading outside the data root right after that walk would be followed by
the opens that come next. ``fileio.confine`` closes the window: every open under a confined root
is checked again on its descriptor (the path the kernel resolved), before a byte moves. These
tests make ``contained()`` answer as it did before the swap and show that nothing outside the
root is read, written, created or removed.
"""

from __future__ import annotations

import errno
import os
import shutil

import pytest

from eventstore import EventStore, layout
from eventstore.errors import OutsideRoot
from eventstore.fileio import confine, open_nofollow
from eventstore.store import Module
from tests.eventstore.conftest import seed


def snapshot(folder):
    return {
        os.path.relpath(os.path.join(d, n), folder): open(os.path.join(d, n), "rb").read()
        for d, _dirs, names in os.walk(folder)
        for n in names
    }


@pytest.fixture
def swapped(root, tmp_path, monkeypatch):
    """dar/pos whose live folder, with a log, a meta and a backup, was moved outside the root
    and linked back in after the check said the folder was inside."""
    seeded = seed(EventStore(root, fsync=False), 4)
    (seeded.module.live_dir / layout.meta_backup_name(1_700_000_000_000)).write_bytes(b'{"secret": true}')
    outside = tmp_path / "outside"
    shutil.move(seeded.module.live_dir, outside)
    seeded.module.live_dir.symlink_to(outside)
    monkeypatch.setattr(Module, "contained", lambda self: True)  # the answer from before the swap
    return EventStore(root, fsync=False).module("dar", "pos"), outside


def _refused(exc: pytest.ExceptionInfo) -> None:
    assert exc.value.errno == errno.ELOOP and "outside the data root" in str(exc.value)


def test_reads_through_a_swapped_folder_are_refused_on_the_descriptor(swapped):
    module, outside = swapped
    before = snapshot(outside)
    with pytest.raises(OSError) as exc:
        list(module.read_events())
    _refused(exc)
    with pytest.raises(OSError) as exc:
        module.open_backup(layout.meta_backup_name(1_700_000_000_000))
    _refused(exc)
    with pytest.raises(OSError) as exc:
        module.load_meta()
    _refused(exc)
    assert snapshot(outside) == before


def test_a_check_through_a_swapped_folder_reports_the_files_unreadable(swapped):
    module, outside = swapped
    before = snapshot(outside)
    health = module.check()
    unreadable = [f for f in health.findings if f.code == "unreadable"]
    # a first check is a full read: the backups are read too, and refused as well
    assert health.status == "critical" and {f.detail["file"] for f in unreadable} == {
        layout.META_NAME,
        layout.LOG_NAME,
        *module.listing().backups,
    }
    assert all("outside the data root" in f.message for f in unreadable)
    assert health.stats.log_events == 0 and health.stats.meta_valid is False  # nothing was read
    assert snapshot(outside) == before


@pytest.mark.parametrize("action", ["append", "update_meta", "rebuild", "archive", "clean_temp"])
def test_writes_through_a_swapped_folder_change_nothing_outside(swapped, tmp_path, action):
    module, outside = swapped
    before = snapshot(outside)
    with pytest.raises(OSError) as exc:
        if action == "append":
            module.append_event({"table": "order_header", "record": {"id": "o9"}})
        elif action == "update_meta":
            module.update_meta({"lastAckId": "x"})
        elif action == "rebuild":
            module.rebuild()
        elif action == "archive":
            module.archive_backups(tmp_path / "archive")
        else:
            module.clean_temp(grace=0)
    _refused(exc)
    assert snapshot(outside) == before  # not even the lock file was left there
    assert not (tmp_path / "archive" / "dar" / "pos").exists() or not os.listdir(tmp_path / "archive" / "dar" / "pos")


def test_an_archive_folder_swapped_for_a_symlink_gets_no_copy(root, tmp_path):
    seeded = seed(EventStore(root, fsync=False), 2)
    name = layout.meta_backup_name(1_700_000_000_000)
    (seeded.module.live_dir / name).write_bytes(b"{}")
    archive, elsewhere = tmp_path / "archive", tmp_path / "elsewhere"
    (archive / "dar").mkdir(parents=True)
    elsewhere.mkdir()
    (archive / "dar" / "pos").symlink_to(elsewhere)
    with pytest.raises(OSError) as exc:
        seeded.module.archive_backups(archive)
    _refused(exc)
    assert os.listdir(elsewhere) == [] and (seeded.module.live_dir / name).read_bytes() == b"{}"  # kept in place


def test_confine_allows_symlinks_that_stay_inside_and_paths_outside_every_root(tmp_path):
    root = tmp_path / "root"
    (root / "a").mkdir(parents=True)
    (root / "a" / "f").write_bytes(b"x")
    (root / "b").symlink_to(root / "a")  # leads elsewhere inside the root: allowed, as contained() allows it
    confine(root)
    os.close(open_nofollow(root / "b" / "f"))
    (tmp_path / "free").write_bytes(b"y")
    os.close(open_nofollow(tmp_path / "free"))  # not under a confined root: no check
    linked_root = tmp_path / "linked-root"
    linked_root.symlink_to(root)  # the root itself may be a symlink (e.g. /srv/data -> /mnt/disk)
    confine(linked_root)
    os.close(open_nofollow(linked_root / "a" / "f"))


def _flip(live: str, evil: str, real: str, stop) -> None:
    """In its own process: swap the live folder for a symlink to the outside and back, for ever."""
    while not stop.is_set():
        os.rename(live, real)
        os.rename(evil, live)  # now: live -> outside
        os.rename(live, evil)
        os.rename(real, live)  # the real folder again


def test_a_real_process_swapping_the_folder_never_gets_an_outside_byte_read(root, tmp_path):
    """The race itself, run for real: another process keeps swapping the live folder for a
    symlink to the outside while this one opens a backup through the public API (which checks
    the folders first, then opens). Every open either reads the inside copy, finds no file, or
    is refused; the outside bytes never come back, and the refusals show the window was hit."""
    import multiprocessing

    seeded = seed(EventStore(root, fsync=False), 1)
    name = layout.meta_backup_name(1_700_000_000_000)
    (seeded.module.live_dir / name).write_bytes(b"INSIDE")
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / name).write_bytes(b"SECRET")
    live = str(seeded.module.live_dir)
    evil, real = live + "-evil", live + "-real"
    os.symlink(outside, evil)
    module = EventStore(root, fsync=False).module("dar", "pos")
    ctx = multiprocessing.get_context("spawn")  # a clean process: the test runner may have threads
    stop = ctx.Event()
    flipper = ctx.Process(target=_flip, args=(live, evil, real, stop), daemon=True)
    flipper.start()
    seen = {"inside": 0, "refused by the folder check": 0, "refused on the descriptor": 0, "absent": 0}
    try:
        for _ in range(20_000):
            try:
                with module.open_backup(name) as fh:
                    data = fh.read()
            except OutsideRoot:
                seen["refused by the folder check"] += 1
            except FileNotFoundError:
                seen["absent"] += 1
            except OSError as exc:
                assert exc.errno == errno.ELOOP and "outside the data root" in str(exc), exc
                seen["refused on the descriptor"] += 1
            else:
                assert data == b"INSIDE", seen
                seen["inside"] += 1
            if seen["refused on the descriptor"] >= 20 and seen["inside"] >= 20:
                break
    finally:
        stop.set()
        flipper.join(10)
        if flipper.is_alive():
            flipper.kill()
    print(f"\nsymlink race: {seen}")
    assert seen["inside"] > 0 and seen["refused on the descriptor"] > 0, seen
