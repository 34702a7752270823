"""Move backups out of a live folder without ever losing one; remove orphan temp files."""

from __future__ import annotations

import contextlib
import hashlib
import os
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from . import clock, layout
from .errors import EventStoreError
from .fileio import _write_all, fsync_dir, make_dirs, open_nofollow
from .folder import ModuleFiles


class ArchiveError(EventStoreError):
    """An archive step failed; the original backup is still in the live folder."""


@dataclass(slots=True)
class ArchivedBackup:
    name: str
    path: str  # where the verified copy is
    size: int
    sha256: str
    reused: bool  # an identical copy was already there (an earlier run died before the unlink)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(slots=True)
class RemovedTemp:
    name: str
    size: int
    age_seconds: float

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _sha256_of(path: Path) -> tuple[str, int]:
    digest = hashlib.sha256()
    size = 0
    fd = open_nofollow(path)
    try:
        while chunk := os.read(fd, 1 << 20):
            digest.update(chunk)
            size += len(chunk)
    finally:
        os.close(fd)
    return digest.hexdigest(), size


def archive_folder_for(files: ModuleFiles, archive_root: Path) -> Path:
    """``<archive_root>/<branch>/<module>``: names checked by the path rules."""
    return Path(archive_root) / layout.check_name(files.branch, "branch") / layout.check_name(files.name, "module")


def archive_one(files: ModuleFiles, name: str, archive_root: Path) -> ArchivedBackup:
    """Copy, fsync, verify sha256, and only then remove the original backup ``name`` of the
    live folder (a name the caller checked; the caller holds the module lock).

    The copy is written to ``.<name>.partial`` in the archive folder, fsynced, and hard-linked
    to ``<name>``: a file under the backup's own name is always a whole copy. A crash at any
    point leaves the original in place, or a verified copy in the archive (and maybe the
    original too: the next run finds the identical copy and finishes the move); a partial copy
    left by a crash is replaced by the next run.
    """
    source = files.in_live(name)
    dest_dir = archive_folder_for(files, archive_root)
    make_dirs(dest_dir)  # a new archive folder is fsynced into its parent before the copy
    dest = dest_dir / name
    partial = dest_dir / f".{name}.partial"
    with contextlib.suppress(FileNotFoundError):
        os.unlink(partial)  # left by an interrupted run of ours: never a finished copy
    src_sha, src_size = _sha256_of(source)
    have_sha = _copy_in(source, partial, dest)  # None: our copy took the name
    reused = have_sha is not None
    if reused and have_sha != src_sha:
        raise ArchiveError(f"{dest} already exists with other content; original kept in place")
    copy_sha, copy_size = _sha256_of(dest)
    if copy_sha != src_sha or copy_size != src_size:
        if not reused:
            os.unlink(dest)
        raise ArchiveError(f"copy of {name} does not match the original (sha256); original kept in place")
    os.unlink(source)
    fsync_dir(files.live_dir)
    return ArchivedBackup(name, str(dest), src_size, src_sha, reused)


def _copy_in(source: Path, partial: Path, dest: Path) -> str | None:
    """Copy ``source`` to ``dest`` through ``partial`` (fsynced, then hard-linked). Returns
    None, or the sha256 of the file that already has the name ``dest`` (then nothing is linked:
    an earlier run's copy, to compare)."""
    out = open_nofollow(partial, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o640)
    try:
        try:
            fd = open_nofollow(source)
            try:
                while chunk := os.read(fd, 1 << 20):
                    _write_all(out, chunk)
            finally:
                os.close(fd)
            os.fsync(out)
        finally:
            os.close(out)
        try:
            os.link(partial, dest)
        except FileExistsError:
            return _sha256_of(dest)[0]
    finally:
        os.unlink(partial)
    fsync_dir(dest.parent)
    return None


def orphan_temps(
    files: ModuleFiles, temps: tuple[str, ...], grace: float, now: float | None = None
) -> list[tuple[str, float]]:
    """Which of the temp files ``temps`` (names from a listing of the live folder) are older
    than ``grace`` seconds, with their age: left by interrupted atomic writes. Read-only."""
    now = clock.now() if now is None else now
    out = []
    for name in temps:
        ms = layout.temp_time_ms(name)
        try:
            st = os.stat(files.in_live(name), follow_symlinks=False)
        except FileNotFoundError:
            continue
        # The newer of the name's time and the mtime: a writer that is slow is not an orphan.
        born = max(ms / 1000 if ms else 0.0, st.st_mtime)
        age = now - born
        if age > grace:
            out.append((name, age))
    return out
