"""Simulated power loss, in the style of ALICE (Pillai et al., OSDI 2014).

A :class:`Recorder` swaps the ``os`` functions through which eventstore (and pathlib under it)
changes files for wrappers that let each call through and record what it did to the files under
one folder, as logical operations on inodes:

    ("create", dir, name, ino)   a new empty file linked into a folder (open with O_CREAT)
    ("mkdir", dir, name, ino)
    ("write", ino, offset, data)
    ("trunc", ino, size)
    ("link", dir, name, ino)     also the target of a rename
    ("unlink", dir, name)
    ("rename", src_dir, src_name, dst_dir, dst_name, ino)
    ("fsync", ino)               of a file or of a folder
    ("mark", kind, payload)      the test's own notes: an append returned, the backups an
                                 operation left, where an operation starts

``ino`` numbers are the recorder's own (a real inode number freed and reused during the run gets
a new one). ``fsync`` is recorded, not performed: the real disk is not what is tested.

:func:`crash_states` then builds the states a disk may hold after a power loss at every point
of the recording, under a file system that keeps nothing it was not told to keep:

- a write or truncate is durable once its file is fsynced afterwards; until then it may be
  lost, torn (only its first half reached the disk) or leave zeros (the file grew, the data
  did not arrive);
- a create, mkdir, link, unlink or rename is durable once the folder holding the name is
  fsynced afterwards (a rename: both folders); until then it may be undone;
- a crash state applies, in order, every durable operation and a choice of the others: all of
  them (the process died, the cache was written), none, all but one, just one, or all with one
  write torn or zeroed. Identical states are checked once.

:func:`materialize` writes a state to a real folder (hard links as hard links) for the store to
open fresh.
"""

from __future__ import annotations

import hashlib
import os
import stat
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

MUTATING = ("create", "mkdir", "write", "trunc", "link", "unlink", "rename")


@dataclass
class FsState:
    """Folders (name -> inode) and file contents, by the recorder's inode numbers."""

    root: int
    dirs: dict[int, dict[str, int]] = field(default_factory=dict)
    files: dict[int, bytes] = field(default_factory=dict)

    def copy(self) -> FsState:
        return FsState(self.root, {d: dict(e) for d, e in self.dirs.items()}, dict(self.files))

    def apply(self, op: tuple, torn: str | None = None) -> None:
        kind = op[0]
        if kind in ("create", "mkdir", "link"):
            _, d, name, ino = op
            self.dirs.setdefault(d, {})[name] = ino
            if kind == "mkdir":
                self.dirs.setdefault(ino, {})
            else:
                self.files.setdefault(ino, b"")
        elif kind == "unlink":
            self.dirs.setdefault(op[1], {}).pop(op[2], None)
        elif kind == "rename":
            _, sd, sname, dd, dname, ino = op
            if self.dirs.setdefault(sd, {}).get(sname) == ino:
                del self.dirs[sd][sname]
            self.dirs.setdefault(dd, {})[dname] = ino
            if ino not in self.dirs:
                self.files.setdefault(ino, b"")
        elif kind == "write":
            _, ino, offset, data = op
            if torn == "half":
                data = data[: len(data) // 2]
            elif torn == "zeros":
                data = bytes(len(data))
            old = self.files.get(ino, b"")
            if len(old) < offset:
                old += bytes(offset - len(old))
            self.files[ino] = old[:offset] + data + old[offset + len(data) :]
        elif kind == "trunc":
            _, ino, size = op
            old = self.files.get(ino, b"")
            self.files[ino] = old[:size] + bytes(max(0, size - len(old)))

    def paths(self) -> Iterator[tuple[str, int, bool]]:
        """(relative path, inode, is a folder) of everything reachable from the root."""
        todo = [("", self.root)]
        while todo:
            prefix, d = todo.pop()
            for name, ino in sorted(self.dirs.get(d, {}).items()):
                rel = f"{prefix}{name}"
                is_dir = ino in self.dirs and ino not in self.files
                yield rel, ino, is_dir
                if is_dir:
                    todo.append((rel + "/", ino))

    def fingerprint(self) -> str:
        h = hashlib.sha256()
        first: dict[int, str] = {}
        for rel, ino, is_dir in sorted(self.paths()):
            if is_dir:
                h.update(f"D {rel}\n".encode())
            elif ino in first:
                h.update(f"L {rel} {first[ino]}\n".encode())
            else:
                first[ino] = rel
                h.update(f"F {rel} {hashlib.sha256(self.files.get(ino, b'')).hexdigest()}\n".encode())
        return h.hexdigest()


def materialize(state: FsState, target: Path) -> None:
    """Write ``state`` under ``target`` (which must not exist); a file with two names is one
    file with two hard links."""
    target.mkdir(parents=True)
    first: dict[int, Path] = {}
    for rel, ino, is_dir in sorted(state.paths()):
        path = target / rel
        if is_dir:
            path.mkdir()
        elif ino in first:
            os.link(first[ino], path)
        else:
            path.write_bytes(state.files.get(ino, b""))
            first[ino] = path


class Recorder:
    """Records the file operations made under ``base`` while :meth:`recording` is active."""

    def __init__(self, base: Path):
        self.base = os.path.realpath(base)
        self.ops: list[tuple] = []
        self._ids: dict[tuple[int, int], int] = {}
        self._fds: dict[int, int] = {}  # fd -> inode (ours)
        self._next = 0
        self.initial = self._snapshot()

    # -- the starting state (taken as durable) --

    def _new_id(self, st: os.stat_result) -> int:
        self._next += 1
        self._ids[(st.st_dev, st.st_ino)] = self._next
        return self._next

    def _snapshot(self) -> FsState:
        root_st = os.stat(self.base)
        state = FsState(self._new_id(root_st))
        state.dirs[state.root] = {}
        for folder, subdirs, names in os.walk(self.base):
            d = self._ids[_key(os.stat(folder))]
            for name in subdirs + names:
                path = os.path.join(folder, name)
                st = os.lstat(path)
                ino = self._ids.get(_key(st)) or self._new_id(st)
                state.dirs[d][name] = ino
                if stat.S_ISDIR(st.st_mode):
                    state.dirs.setdefault(ino, {})
                elif stat.S_ISREG(st.st_mode):
                    with open(path, "rb") as f:
                        state.files[ino] = f.read()
                else:
                    raise ValueError(f"{path}: only folders and regular files are modelled")
        return state

    # -- helpers --

    def _mine(self, path: Any) -> str | None:
        if isinstance(path, int):
            return None
        p = os.path.abspath(os.fsdecode(os.fspath(path)))
        return p if p == self.base or p.startswith(self.base + os.sep) else None

    def _id_of(self, path: str, follow: bool = False) -> int:
        st = self._real["stat"](path) if follow else self._real["lstat"](path)
        return self._ids[_key(st)]

    def _parent(self, path: str) -> tuple[int, str]:
        parent, name = os.path.split(path)
        return self._id_of(parent, follow=True), name

    def mark(self, kind: str, payload: Any = None) -> None:
        self.ops.append(("mark", kind, payload))

    # -- the wrappers --

    @contextmanager
    def recording(self) -> Iterator[Recorder]:
        names = (
            "open",
            "write",
            "ftruncate",
            "fsync",
            "fdatasync",
            "close",
            "replace",
            "rename",
            "link",
            "unlink",
            "remove",
            "mkdir",
            "stat",
            "lstat",
            "fstat",
            "lseek",
        )
        self._real = {n: getattr(os, n) for n in names}
        real = self._real

        def w_open(path, flags, mode=0o777, *, dir_fd=None):
            p = self._mine(path) if dir_fd is None else None
            if p is None:
                return real["open"](path, flags, mode, dir_fd=dir_fd)
            existed = os.path.lexists(p)
            fd = real["open"](path, flags, mode)
            st = real["fstat"](fd)
            if not existed:
                ino = self._new_id(st)
                d, name = self._parent(p)
                self.ops.append(("create", d, name, ino))
            else:
                ino = self._ids[_key(st)]
                if flags & os.O_TRUNC and stat.S_ISREG(st.st_mode):
                    self.ops.append(("trunc", ino, 0))
            self._fds[fd] = ino
            return fd

        def w_write(fd, data):
            ino = self._fds.get(fd)
            if ino is None:
                return real["write"](fd, data)
            flags = fcntl_flags(fd)
            offset = real["fstat"](fd).st_size if flags & os.O_APPEND else real["lseek"](fd, 0, os.SEEK_CUR)
            n = real["write"](fd, data)
            self.ops.append(("write", ino, offset, bytes(memoryview(data)[:n])))
            return n

        def w_ftruncate(fd, size):
            real["ftruncate"](fd, size)
            if fd in self._fds:
                self.ops.append(("trunc", self._fds[fd], size))

        def w_fsync(fd):
            if fd not in self._fds:
                return real["fsync"](fd)
            self.ops.append(("fsync", self._fds[fd]))  # recorded, not performed

        def w_close(fd):
            self._fds.pop(fd, None)
            return real["close"](fd)

        def w_rename(kind):
            def wrapper(src, dst, *, src_dir_fd=None, dst_dir_fd=None):
                s, d = self._mine(src), self._mine(dst)
                if s is None and d is None:
                    return real[kind](src, dst, src_dir_fd=src_dir_fd, dst_dir_fd=dst_dir_fd)
                assert s is not None and d is not None, f"{kind} across the recorded folder: {src} -> {dst}"
                ino = self._id_of(s)
                sd, sname = self._parent(s)
                dd, dname = self._parent(d)
                real[kind](src, dst)
                self.ops.append(("rename", sd, sname, dd, dname, ino))

            return wrapper

        def w_link(src, dst, *, src_dir_fd=None, dst_dir_fd=None, follow_symlinks=True):
            s, d = self._mine(src), self._mine(dst)
            if s is None and d is None:
                return real["link"](
                    src, dst, src_dir_fd=src_dir_fd, dst_dir_fd=dst_dir_fd, follow_symlinks=follow_symlinks
                )
            assert s is not None and d is not None, f"link across the recorded folder: {src} -> {dst}"
            real["link"](src, dst, follow_symlinks=follow_symlinks)
            dd, dname = self._parent(d)
            self.ops.append(("link", dd, dname, self._id_of(s, follow=follow_symlinks)))

        def w_unlink(kind):
            def wrapper(path, *, dir_fd=None):
                p = self._mine(path) if dir_fd is None else None
                if p is None:
                    return real[kind](path, dir_fd=dir_fd)
                d, name = self._parent(p)
                real[kind](path)
                self.ops.append(("unlink", d, name))

            return wrapper

        def w_mkdir(path, mode=0o777, *, dir_fd=None):
            p = self._mine(path) if dir_fd is None else None
            if p is None:
                return real["mkdir"](path, mode, dir_fd=dir_fd)
            real["mkdir"](path, mode)
            d, name = self._parent(p)
            self.ops.append(("mkdir", d, name, self._new_id(real["stat"](p))))

        wrappers = {
            "open": w_open,
            "write": w_write,
            "ftruncate": w_ftruncate,
            "fsync": w_fsync,
            "fdatasync": w_fsync,
            "close": w_close,
            "replace": w_rename("replace"),
            "rename": w_rename("rename"),
            "link": w_link,
            "unlink": w_unlink("unlink"),
            "remove": w_unlink("remove"),
            "mkdir": w_mkdir,
        }
        for name, fn in wrappers.items():
            setattr(os, name, fn)
        try:
            yield self
        finally:
            for name in wrappers:
                setattr(os, name, real[name])
            for fd in list(self._fds):  # left open by an error: no longer tracked
                self._fds.pop(fd)


def fcntl_flags(fd: int) -> int:
    import fcntl

    return fcntl.fcntl(fd, fcntl.F_GETFL)


def _key(st: os.stat_result) -> tuple[int, int]:
    return (st.st_dev, st.st_ino)


# -- crash states -----------------------------------------------------------------------------


@dataclass
class CrashState:
    point: int  # how many recorded operations were issued before the power went
    how: str  # which of the volatile operations reached the disk
    state: FsState
    marks: list[tuple[str, Any]]  # the marks recorded before the crash point


def _durable_flags(ops: list[tuple], point: int) -> list[bool]:
    """For each op before ``point``: is it durable (an fsync covering it came before point)?"""
    synced_after: set[int] = set()  # inodes fsynced after the op being looked at
    out = [False] * point
    for i in range(point - 1, -1, -1):
        op = ops[i]
        kind = op[0]
        if kind == "fsync":
            synced_after.add(op[1])
        elif kind in ("write", "trunc") or kind in ("create", "mkdir", "link", "unlink"):
            out[i] = op[1] in synced_after
        elif kind == "rename":
            out[i] = op[1] in synced_after and op[3] in synced_after
    return out


def crash_states(initial: FsState, ops: list[tuple]) -> list[CrashState]:
    """Every distinct crash state of the recording (see the module docstring).

    A state that can arise at several crash points is checked once, at the last of them: the
    one with the most marks (the most acknowledged events and promised backups) to hold it to.
    """
    found: dict[str, CrashState] = {}
    marks: list[tuple[str, Any]] = []
    for point in range(len(ops) + 1):
        if point and ops[point - 1][0] == "mark":
            marks.append(ops[point - 1][1:])
            if point < len(ops) and ops[point][0] == "mark":
                continue
        durable = _durable_flags(ops, point)
        mutating = [i for i in range(point) if ops[i][0] in MUTATING]
        volatile = [i for i in mutating if not durable[i]]
        synced = set(mutating) - set(volatile)
        choices: list[tuple[str, set[int], dict[int, str]]] = [("all", set(mutating), {}), ("synced only", synced, {})]
        for v in volatile:
            choices.append((f"all but {ops[v][0]}#{v}", set(mutating) - {v}, {}))
            choices.append((f"synced + {ops[v][0]}#{v}", synced | {v}, {}))
            if ops[v][0] == "write" and len(ops[v][3]) > 1:
                choices.append((f"{ops[v][0]}#{v} torn", set(mutating), {v: "half"}))
                choices.append((f"{ops[v][0]}#{v} zeros", set(mutating), {v: "zeros"}))
        for how, keep, torn in choices:
            state = initial.copy()
            for i in mutating:
                if i in keep:
                    state.apply(ops[i], torn.get(i))
            found[state.fingerprint()] = CrashState(point, how, state, list(marks))
    return sorted(found.values(), key=lambda c: c.point)


def op_name(ops: list[tuple], point: int) -> str:
    """The operation the crash point falls in (the last "begin" mark before it)."""
    for i in range(min(point, len(ops)) - 1, -1, -1):
        if ops[i][0] == "mark" and ops[i][1] == "begin":
            return ops[i][2]
    return "start"
