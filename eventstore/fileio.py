"""Low-level file I/O: durable atomic replace, exclusive create, per-module locks, change stamps.

Every function here states what survives a crash. All reads refuse to follow a symlink at the
final component (``O_NOFOLLOW``): a store file that is a symlink is reported, never read.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
import secrets
import stat
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import NamedTuple

from . import clock, layout
from .errors import StoreBusy
from .shapes import Malformed

_BASE36 = "0123456789abcdefghijklmnopqrstuvwxyz"


def fsync_dir(path: Path) -> None:
    """fsync a directory so that a rename or create inside it survives a power loss."""
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def make_dirs(path: Path, *, durable: bool = True) -> None:
    """``mkdir -p path``; with ``durable``, fsync the parent of every folder it creates.

    A file fsynced in a new folder is not safe until the folder's own entry is: after a power
    loss the folder (with the file) may be gone. So each folder created here is made durable in
    its parent before the caller writes into it. Folders that already exist are left alone.
    """
    missing = []
    p = Path(path)
    while not os.path.isdir(p) and p.parent != p:
        missing.append(p)
        p = p.parent
    for p in reversed(missing):
        try:
            os.mkdir(p)
        except FileExistsError:
            if not os.path.isdir(p):
                raise
        if durable:
            fsync_dir(p.parent)


def _random_token() -> str:
    n = secrets.randbits(52)
    out = []
    while n:
        n, r = divmod(n, 36)
        out.append(_BASE36[r])
    return "".join(reversed(out)) or "0"


def _copy_owner_and_mode(fd: int, like: os.stat_result | None) -> None:
    """Give a new file the mode, owner and group of the file it replaces (best effort for owner).

    The Node server may run as another user than we do; it must still be able to write the file.
    chown needs privileges we may lack; the mode copy alone keeps a group-writable file writable.
    """
    if like is None:
        return
    os.fchmod(fd, stat.S_IMODE(like.st_mode))
    if (like.st_uid, like.st_gid) != (os.geteuid(), os.getegid()):
        with contextlib.suppress(PermissionError):
            os.fchown(fd, like.st_uid, like.st_gid)


def _write_temp(folder: Path, prefix: str, data: bytes, *, durable: bool, like: os.stat_result | None = None) -> Path:
    """A new file ``folder/<prefix>.tmp.<ms>.<base36>`` holding all of ``data``, fsynced if
    ``durable``, with the mode and owner of ``like``. On failure it is removed again."""
    while True:
        tmp = folder / f"{prefix}.tmp.{clock.now_ms()}.{_random_token()}"
        try:
            fd = open_nofollow(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
        except FileExistsError:
            continue
        break
    try:
        try:
            _copy_owner_and_mode(fd, like)
            _write_all(fd, data)
            if durable:
                os.fsync(fd)
        finally:
            os.close(fd)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
    return tmp


def atomic_write(path: Path, data: bytes, *, durable: bool = True) -> None:
    """Replace ``path`` with ``data`` atomically and (if ``durable``) durably.

    Guarantee: readers see the old file or the new one, never a mix; after a crash at any point
    the file is the old or the new content. Recipe: a temp file in the same folder with a unique
    name (``events.meta.json.tmp.<ms>.<base36>`` for the meta, as the Node server names them),
    write all, flush, fsync, ``os.replace``, fsync the folder. On any failure before the rename the
    temp file is removed; after a successful rename nothing is removed. Mode and owner of the
    replaced file are kept.
    """
    folder = path.parent
    try:
        old = os.stat(path, follow_symlinks=False)
    except FileNotFoundError:
        old = None
    if old is not None and stat.S_ISLNK(old.st_mode):
        raise OSError(errno.ELOOP, "refusing to replace a symlink", str(path))
    tmp = _write_temp(folder, path.name, data, durable=durable, like=old)
    renamed = False
    try:
        os.replace(tmp, path)
        renamed = True
        if durable:
            fsync_dir(folder)
    except BaseException:
        if not renamed:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp)
        raise


def _write_all(fd: int, data: bytes) -> None:
    """``os.write`` until all of ``data`` is written (a write may take only part of it)."""
    view = memoryview(data)
    while view:
        n = os.write(fd, view)
        view = view[n:]


def create_exclusive(folder: Path, name_for, data: bytes, *, durable: bool = True) -> Path:
    """Create a new file ``folder/name_for(ms)`` holding ``data``; never overwrites anything.

    ``name_for`` maps epoch milliseconds to a file name; if the name is taken the next
    millisecond is tried. The data is written to a temp file (``events.meta.json.tmp.<ms>.<base36>``,
    a name ``clean_temp`` knows) and fsynced, then hard-linked to the new name and the folder
    fsynced, so a backup exists durably before the caller goes on to touch the original, and a
    file with a backup's name is always a whole copy, even after a crash or a failed cleanup.
    """
    tmp = _write_temp(folder, layout.META_NAME, data, durable=durable)
    try:
        ms = clock.now_ms()
        while True:
            path = folder / name_for(ms)
            try:
                os.link(tmp, path)
            except FileExistsError:
                ms += 1
                continue
            break
    finally:
        os.unlink(tmp)
    if durable:
        fsync_dir(folder)
    return path


# Roots whose files must resolve inside them (a data root, an archive root): the absolute path as
# given -> its real path. Filled by confine(); consulted by open_nofollow() on every open.
_CONFINED: dict[str, str] = {}
_FD_PATHS = "/proc/self/fd"


def confine(root: str | os.PathLike[str]) -> None:
    """From now on a file that ``open_nofollow`` opens under ``root`` must really lie inside it.

    Checking the folders on the way with lstat before an open leaves a window: a folder swapped
    for a symlink after the check would be followed. So the check is made again on the open
    descriptor itself (its path as the kernel resolved it, ``/proc/self/fd/N``), before a byte is
    read or written: what was opened is what is checked."""
    absolute = os.path.abspath(root)
    _CONFINED[absolute] = os.path.realpath(absolute)


def _confining_root(path: str) -> str | None:
    here = os.path.abspath(path)
    while True:
        real = _CONFINED.get(here)
        if real is not None:
            return real
        parent = os.path.dirname(here)
        if parent == here:
            return None
        here = parent


def open_nofollow(path: Path | str, flags: int = os.O_RDONLY, mode: int = 0o777) -> int:
    """``os.open`` that refuses a symlink at the last component (raises OSError ELOOP), and,
    under a root given to :func:`confine`, a file that a symlinked folder on the way leads
    outside of it (OSError ELOOP too; a file it just created there is removed again)."""
    fd = os.open(path, flags | os.O_NOFOLLOW | os.O_CLOEXEC, mode)
    real_root = _confining_root(os.fspath(path)) if _CONFINED else None
    if real_root is None:
        return fd
    try:
        opened = os.readlink(f"{_FD_PATHS}/{fd}")
    except OSError:  # no /proc (not Linux): the lstat walk before the open is the check
        return fd
    if opened.endswith(" (deleted)") and not os.path.lexists(opened):
        opened = opened[: -len(" (deleted)")]
    if opened == real_root or opened.startswith(real_root.rstrip(os.sep) + os.sep):
        return fd
    os.close(fd)
    if flags & os.O_CREAT and flags & os.O_EXCL:
        with contextlib.suppress(OSError):  # ours: created a moment ago through the symlink
            os.unlink(opened)
    raise OSError(errno.ELOOP, "a symlink on the way leads outside the data root; not followed", os.fspath(path))


def read_capped(path: Path, limit: int) -> tuple[bytes, int]:
    """Read at most ``limit`` bytes of ``path`` (no symlinks). Returns (data, file size)."""
    fd = open_nofollow(path)
    try:
        size = os.fstat(fd).st_size
        chunks = []
        left = limit
        while left > 0:
            chunk = os.read(fd, min(left, 1 << 20))
            if not chunk:
                break
            chunks.append(chunk)
            left -= len(chunk)
        return b"".join(chunks), size
    finally:
        os.close(fd)


_FOUR_INTS = (int, int, int, int)


class Stamp(NamedTuple):
    """What we compare to notice that a file changed: its device, inode, size and mtime. The
    one stamp type: the rebuild's change detection and the incremental check's state use it.
    (A NamedTuple: a check takes two per module.)"""

    dev: int
    ino: int
    size: int
    mtime_ns: int

    @classmethod
    def of(cls, path: str | os.PathLike[str]) -> Stamp | None:
        """The file's stamp (a symlink's own, never followed), or None when there is none."""
        try:
            st = os.stat(path, follow_symlinks=False)
        except FileNotFoundError:
            return None
        return tuple.__new__(cls, (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns))  # NamedTuple.__new__, less a call

    @property
    def mtime(self) -> float:
        return self.mtime_ns / 1e9

    def same_file(self, other: Stamp) -> bool:
        """The same inode on the same device (it may have grown)."""
        return self.dev == other.dev and self.ino == other.ino

    def to_json(self) -> list[int]:
        return [self.dev, self.ino, self.size, self.mtime_ns]

    @classmethod
    def from_json(cls, value: object) -> Stamp:
        """The stamp ``to_json`` wrote; ValueError (shapes.Malformed) for anything else."""
        if type(value) is list and len(value) == 4 and tuple(map(type, value)) == _FOUR_INTS and min(value) >= 0:
            return tuple.__new__(cls, value)
        raise Malformed("a stamp is [dev, ino, size, mtime_ns]")


class ModuleLock:
    """Cross-process exclusive lock of one module: ``flock`` on ``live/events.lock``.

    Held for a whole read-modify-write so that no two writers (threads or processes, each with
    its own open file description) can hand out the same sequence or lose an update. The lock
    file is never deleted (deleting it would let two holders lock different inodes).
    The Node server does not take this lock; see change detection in rebuild.
    """

    def __init__(self, folder: Path, timeout: float | None = None):
        self.path = folder / layout.LOCK_NAME
        self.timeout = timeout

    @contextmanager
    def hold(self) -> Iterator[None]:
        try:
            fd = open_nofollow(self.path, os.O_RDWR)
        except FileNotFoundError:  # the first lock of the module: created exclusively, so that
            try:  # open_nofollow removes it again if the folder turns out to lead outside the root
                fd = open_nofollow(self.path, os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o644)
            except FileExistsError:  # another process created it meanwhile
                fd = open_nofollow(self.path, os.O_RDWR)
        try:
            if self.timeout is None:
                fcntl.flock(fd, fcntl.LOCK_EX)
            else:
                deadline = time.monotonic() + self.timeout
                while True:
                    try:
                        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                        break
                    except BlockingIOError:
                        if time.monotonic() >= deadline:
                            raise StoreBusy(f"module is locked by another writer: {self.path}") from None
                        time.sleep(0.01)
            try:
                yield
            finally:
                fcntl.flock(fd, fcntl.LOCK_UN)
        finally:
            os.close(fd)
