"""The store API: ``EventStore(root)`` and ``Module`` (append, load, update, read, rotate,
check, rebuild, backups). Read-modify-writes hold the module's cross-process lock."""

from __future__ import annotations

import functools
import hashlib
import math
import os
import stat
import uuid
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, Any

import orjson

from . import checks, clock, layout
from . import log as logmod
from . import meta as metamod
from .archive import ArchivedBackup, RemovedTemp, archive_one, orphan_temps
from .errors import CorruptEntry, EventStoreError, InvalidName, OutsideRoot, RootError
from .fileio import (
    ModuleLock,
    Stamp,
    atomic_write,
    confine,
    create_exclusive,
    fsync_dir,
    make_dirs,
    open_nofollow,
    read_capped,
)
from .folder import Listing, ModuleFiles, classify
from .health import Health
from .rebuild import RebuildReport, fresh_meta, rebuild_locked

PREVIEW_LIMIT = 64 * 1024
PREVIEW_PARSE_LIMIT = 8 * 1024 * 1024


@dataclass(frozen=True, slots=True)
class RefusedFolder:
    """A folder shaped like a module whose name breaks the path rules (e.g. bytes that are not
    UTF-8): never read or written. ``path`` is relative to the data root, printable
    (``layout.printable``: such bytes as ``\\xNN``); ``reason`` says which rule it breaks."""

    path: str
    reason: str

    def to_dict(self) -> dict[str, str]:
        return {"path": self.path, "reason": self.reason}


@dataclass(slots=True)
class BackupInfo:
    name: str
    kind: str  # "meta" | "log-fragment"
    size: int
    sha256: str
    created_at: datetime | None
    parses: bool
    error: str | None = None

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["created_at"] = self.created_at.isoformat() if self.created_at else None
        return out


@dataclass(slots=True)
class FilePreview:
    """The start of a file for display, with the JSON error position when it does not parse.

    ``valid`` is None when the file is too large to validate for a preview.
    """

    text: str
    size: int
    truncated: bool
    valid: bool | None
    error: dict[str, Any] | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


class EventStore:
    """A Mishkah ``BRANCHES_DIR``. ``fsync=False`` trades durability for speed (benchmarks only)."""

    def __init__(
        self,
        root: str | os.PathLike[str],
        *,
        fsync: bool = True,
        lock_timeout: float | None = None,
        temp_grace: float = 300.0,
    ):
        self.root = Path(root)
        self.fsync = fsync
        self.lock_timeout = lock_timeout
        self.temp_grace = temp_grace
        try:
            st = os.stat(self.root)
        except FileNotFoundError:
            raise RootError(f"data root {self.root} does not exist") from None
        except OSError as exc:
            raise RootError(f"data root {self.root} cannot be read: {exc.strerror}") from None
        if not stat.S_ISDIR(st.st_mode):
            raise RootError(f"data root {self.root} is not a directory")
        if not os.access(self.root, os.R_OK | os.X_OK):
            raise RootError(f"data root {self.root} cannot be read: permission denied")
        self._root = os.fspath(self.root)
        confine(self.root)  # every open under the root is checked on its descriptor (fileio.confine)

    def module(self, branch: str, module: str) -> Module:
        """The module ``branch``/``module`` (it may not exist yet). Raises InvalidName."""
        return Module(self, layout.check_name(branch, "branch"), layout.check_name(module, "module"))

    def modules(self) -> Iterator[Module]:
        """Every module under the root, sorted by (branch, module): a ``live`` folder holding an
        events.log, an events.meta.json or a backup. Names that break the path rules are skipped
        (:meth:`walk` reports them)."""
        for found in self.walk():
            if isinstance(found, Module):
                yield found

    def walk(self) -> Iterator[Module | RefusedFolder]:
        """What :meth:`modules` yields, and a :class:`RefusedFolder` for each folder shaped like a
        module (``<branch>/modules/<module>/live`` with a store file) whose branch or module name
        breaks the path rules (not UTF-8, a control character, too long): never read, reported.
        Hidden folders (a leading dot) are not modules and are not reported."""
        for branch, branch_link, bad_branch in _sorted_dirs(self._root):
            modules_dir = os.path.join(self._root, branch, layout.MODULES_DIR)
            try:
                modules_link = stat.S_ISLNK(os.lstat(modules_dir).st_mode)
            except OSError:
                continue
            for name, module_link, bad_module in _sorted_dirs(modules_dir):
                module_dir = os.path.join(modules_dir, name)
                live = module_dir + os.sep + layout.LIVE_DIR
                try:
                    live_link = stat.S_ISLNK(os.lstat(live).st_mode)
                    listing = classify(live)
                except OSError:
                    continue
                if not listing.holds_store_files():
                    continue
                if bad_branch or bad_module:
                    where = os.path.join(branch, layout.MODULES_DIR, name)
                    yield RefusedFolder(layout.printable(where), bad_branch or bad_module or "")
                    continue
                through_link = branch_link or modules_link or module_link or live_link
                files = ModuleFiles.in_folder(module_dir, branch, name)  # names checked by _sorted_dirs
                yield Module(self, branch, name, _listing=listing, _plain=not through_link, _files=files)

    def __repr__(self) -> str:
        return f"EventStore({str(self.root)!r})"


def _sorted_dirs(path: str) -> list[tuple[str, bool, str | None]]:
    """Sub-folders (following symlinks), sorted, each with "is a symlink" and why its name
    breaks the path rules (None: it does not). Hidden ones (a leading dot) are left out."""
    try:
        with os.scandir(path) as it:
            found = [(e.name, e.is_symlink()) for e in it if e.is_dir()]
    except OSError:
        return []
    out = []
    for name, is_link in sorted(found):
        if name.startswith("."):
            continue
        try:
            layout.check_name(name)
        except InvalidName as exc:
            out.append((name, is_link, str(exc)))
        else:
            out.append((name, is_link, None))
    return out


class Module:
    """One branch/module's live folder. Create through :meth:`EventStore.module`."""

    def __init__(
        self,
        store: EventStore,
        branch: str,
        name: str,
        *,
        _listing: Listing | None = None,
        _plain: bool = False,
        _files: ModuleFiles | None = None,
    ):
        self.store = store
        self.branch = branch
        self.name = name
        # Where the files are: what checks, rebuild and archive work on (plain strings inside).
        self.files = _files if _files is not None else ModuleFiles.at(store._root, branch, name)
        self._listing = _listing  # from discovery: used once by the next listing()
        self._plain = _plain  # discovery saw no symlink on the way from the root
        # What this process last wrote, to skip re-parsing an unchanged meta and re-reading an
        # unchanged log tail. Compared against the files' bytes / stamps under the lock, so a
        # change by another writer is always seen.
        self._meta_cache: tuple[bytes, dict[str, Any]] | None = None
        self._log_stamp: Stamp | None = None

    def __repr__(self) -> str:
        return f"<Module {self.branch}/{self.name}>"

    @functools.cached_property
    def live_dir(self) -> Path:
        return self.files.live_dir

    @functools.cached_property
    def log_path(self) -> Path:
        return self.files.log_path

    @functools.cached_property
    def meta_path(self) -> Path:
        return self.files.meta_path

    @functools.cached_property
    def history_dir(self) -> Path:
        return self.files.history_dir

    @functools.cached_property
    def _lock(self) -> ModuleLock:
        return ModuleLock(self.live_dir, self.store.lock_timeout)

    # -- reading ---------------------------------------------------------------------------

    def exists(self) -> bool:
        return self.live_dir.is_dir()

    def contained(self) -> bool:
        """True unless a symlink makes the live folder lead outside the data root."""
        if self._plain:
            return True
        path = self.store._root
        for part in (self.branch, layout.MODULES_DIR, self.name, layout.LIVE_DIR):
            path = os.path.join(path, part)
            try:
                if stat.S_ISLNK(os.lstat(path).st_mode):
                    return layout.is_inside(self.store.root, self.live_dir)
            except (FileNotFoundError, NotADirectoryError):
                return True  # nothing there: nothing outside either
            # Any other error (EIO, EACCES) propagates: unchecked is not "contained".
        return True

    def _require_contained(self) -> None:
        """Raise OutsideRoot when a symlinked branch, module or live folder leads outside the
        data root: every read and write of the module's files goes through here first."""
        if not self.contained():
            raise OutsideRoot(
                f"{self.branch}/{self.name}: its folder is a symlink that leads outside the data root; not followed"
            )

    def listing(self) -> Listing:
        """Classify the live folder's files; symlinks are listed apart and never followed."""
        return self.files.listing()

    def _take_listing(self) -> Listing:
        """The listing made during discovery (once, for the check that follows it), else fresh."""
        listing, self._listing = self._listing, None
        return listing if listing is not None else self.files.listing()

    def check(
        self,
        now: float | None = None,
        previous: dict[str, Any] | None = None,
        *,
        full: bool = False,
        progress: Callable[[int, int], None] | None = None,
        accept_changes: bool = False,
    ) -> Health:
        """Diagnose the module. Read-only: never changes, creates or deletes a file; never raises
        for damage (each problem is a finding; a folder leading outside the data root, or one
        that cannot be listed, is ``unreadable``). Pass the ``state`` of the last Health as
        ``previous`` to skip unchanged files and read only the new bytes of a grown log.

        ``full`` reads the meta, the whole log and the backups again and checks the log
        against the checkpoints of ``previous`` (the sha256 of every 8 MiB it held): bytes
        changed in place are ``log_changed_in_place`` (critical), which every later check
        reports until a full one with ``accept_changes`` takes the log as it is now. A check
        without ``previous`` is a full read too. ``progress(done, total)`` follows the read of
        the log; ``Health.verified_at`` is when the log was last read in full, ``bytes_read``
        every byte read."""
        if not self.contained():
            return checks.unreadable_module(
                str(self.live_dir), "the folder is a symlink that leads outside the data root; not followed"
            )
        try:
            listing = self._take_listing()
        except OSError as exc:
            return checks.unreadable_module(layout.LIVE_DIR, exc)
        return checks.check_module(
            self.files,
            listing,
            self.store.temp_grace,
            now,
            previous,
            full=full,
            progress=progress,
            accept_changes=accept_changes,
        )

    def read_events(self) -> Iterator[dict[str, Any]]:
        """Stream the log's events in order, in constant memory. Lines that do not parse as an
        event (and a torn last line that does not) are skipped; ``check()`` reports them."""
        self._require_contained()
        if not self.log_path.exists():
            return
        for raw in logmod.iter_raw_lines(self.log_path):
            event, _ = logmod.parse_event(raw.data)
            if event is not None:
                yield event

    def backups(self) -> list[BackupInfo]:
        """Backups in the live folder (meta backups and torn-log fragments), oldest first, each
        with size, sha256 and whether it parses. Read-only. Empty when the folder leads outside
        the data root (a symlink, not followed)."""
        if not self.contained():
            return []
        out = []
        for name in self.listing().backups:
            try:
                info = self._backup_info(name)
            except OSError:
                continue
            out.append(info)
        out.sort(key=lambda b: (b.created_at or datetime.min.replace(tzinfo=UTC), b.name))
        return out

    def _backup_info(self, name: str) -> BackupInfo:
        kind = layout.backup_kind(name) or "meta"
        digest = hashlib.sha256()
        fd = open_nofollow(self.live_dir / name)
        size = 0
        head = bytearray()
        try:
            while chunk := os.read(fd, 1 << 20):
                digest.update(chunk)
                size += len(chunk)
                if len(head) <= metamod.MAX_META_BYTES:
                    head += chunk
        finally:
            os.close(fd)
        if kind == "meta":
            value, err = metamod.parse(bytes(head)) if size <= metamod.MAX_META_BYTES else (None, None)
            parses = err is None and isinstance(value, dict)
            error = err.message if err else (None if parses else "not a JSON object")
        else:
            event, reason = logmod.parse_event(bytes(head))
            parses, error = event is not None, reason
        return BackupInfo(name, kind, size, digest.hexdigest(), layout.backup_time(name), parses, error)

    def _backup_path(self, name: str) -> Path:
        layout.check_name(name, "backup name")
        if not layout.backup_kind(name):
            raise InvalidName(f"{name!r} is not a backup file name")
        self._require_contained()
        return self.live_dir / name

    def open_backup(self, name: str) -> IO[bytes]:
        """Open one backup for reading (no symlinks). Raises InvalidName or FileNotFoundError."""
        fd = open_nofollow(self._backup_path(name))
        return os.fdopen(fd, "rb")

    def preview_meta(self, limit: int = PREVIEW_LIMIT) -> FilePreview:
        """The start of the meta, and where it stops being valid JSON. Raises FileNotFoundError
        (or OutsideRoot)."""
        self._require_contained()
        return preview_file(self.meta_path, limit)

    def preview_backup(self, name: str, limit: int = PREVIEW_LIMIT) -> FilePreview:
        return preview_file(self._backup_path(name), limit)

    # -- writing (each holds the module lock) ------------------------------------------------

    def append_event(self, entry: dict[str, Any]) -> dict[str, Any]:
        """Append one event and update the meta in one locked step; return the written line.

        The line has Node's shape and defaults (``evt-<uuid>`` id, action ``module:insert``,
        record null, sequence = totalEvents + 1 after rolling the meta forward to the log, the
        publish state as Node's normalizePublishState makes it: see :func:`publish_state`); the
        table's cursor moves only when the record yields a key. Guarantees: the
        module lock is held throughout, so sequences are unique across processes; the line is
        written with one ``O_APPEND`` write and fsynced before the meta is replaced (atomic,
        durable); a torn last line left by a crash is first saved in ``events.log.torn.<ms>.bak``
        and cut off, so it never glues onto the new event. A crash after the line is written
        and before the meta is replaced leaves the meta behind; the next writer rolls it forward.
        """
        if not isinstance(entry, dict):
            raise CorruptEntry("an event must be a JSON object")
        self._require_contained()
        self._ensure_dir()
        with self._lock.hold():
            known = self._log_stamp is not None and Stamp.of(self.log_path) == self._log_stamp
            self._log_stamp = None
            if not known:
                self._repair_torn_tail()
            meta = self._current_meta(roll=not known)
            sequence = meta["totalEvents"] + 1
            now = clock.iso_now()
            line = {  # Node's appendEvent: each default where the entry's value is falsy in JavaScript
                "id": _or(entry.get("id"), f"evt-{uuid.uuid4()}"),
                "sequence": sequence,
                "action": _or(entry.get("action"), "module:insert"),
                "branchId": self.branch,
                "moduleId": self.name,
                "table": _or(entry.get("table"), None),
                "record": _or(entry.get("record"), None),
                "meta": _or(entry.get("meta"), {}),
                "publishState": publish_state(entry.get("publishState"), self.branch, now),
                "createdAt": _or(entry.get("createdAt"), now),
                "recordedAt": now,
            }
            for key, value in entry.items():
                if key not in line:
                    line[key] = value
            try:
                data = orjson.dumps(line) + b"\n"
            except TypeError as exc:
                raise CorruptEntry(f"event cannot be written as JSON: {exc}") from None
            self._append_bytes(data)
            self._meta_cache = None
            meta["totalEvents"] = sequence
            meta["lastEventId"] = line["id"]
            meta["lastEventAt"] = logmod.event_time(line)
            meta["updatedAt"] = now
            cursor = logmod.cursor_for(line) if isinstance(line["table"], str) and line["table"] else None
            if cursor is not None:  # an event without a key keeps its table's cursor, as in Node
                meta["tableCursors"][line["table"]] = cursor
            self._write_meta(meta)
            self._log_stamp = Stamp.of(self.log_path)
            return line

    def load_meta(self) -> dict[str, Any]:
        """The meta with defaults filled in (unknown keys kept).

        A damaged meta is recovered first (backup, rebuild from the log, salvage; see
        :meth:`rebuild`); a meta that lags the log is rolled forward; a missing one is created.
        Holds the module lock when it writes.
        """
        self._require_contained()
        if not self.exists():
            raise EventStoreError(f"{self.branch}/{self.name}: no such module")
        with self._lock.hold():
            return metamod.copy_json(self._current_meta(write=True))

    def update_meta(self, patch: dict[str, Any]) -> dict[str, Any]:
        """Deep-merge ``patch`` into the meta like Node's mergeDeep and write it; return it.

        Locked read-modify-write (no lost update between processes); atomic, durable write.
        ``updatedAt`` is set to now unless the patch sets it.
        """
        if not isinstance(patch, dict):
            raise EventStoreError("a meta patch must be a JSON object")
        self._require_contained()
        self._ensure_dir()
        with self._lock.hold():
            meta = self._current_meta()
            merged = metamod.merge_deep(meta, patch)
            if "updatedAt" not in patch:
                merged["updatedAt"] = clock.iso_now()
            if metamod.total_events(merged) is None:
                raise EventStoreError("patch would make totalEvents invalid")
            self._write_meta(merged)
            return metamod.copy_json(merged)

    def rebuild(self, progress: Callable[[int, int], None] | None = None, retries: int = 3) -> RebuildReport:
        """Rebuild the meta from the log, keeping everything the log cannot give.

        Guarantees: the current meta (if any) is first copied to a new
        ``events.meta.json.corrupted.<epoch-ms>.bak`` (exclusive create, fsynced; never
        overwritten or deleted). The log is streamed in constant memory; unparseable lines are
        reported, not dropped silently. ``totalEvents`` = max(event count, highest sequence), so
        the next sequence stays unique. Non-derivable fields and unknown keys come from the
        current meta if it parses, else the longest valid prefix of the damaged file, else the
        newest parseable backup, else defaults; ``report.sources`` says which. If the log or the
        meta changes while we work (size, mtime or inode: a writer that ignores our lock), the
        rebuild starts over, and after ``retries`` raises ConcurrentModification having
        overwritten nothing. The new meta is written atomically and durably, under the lock.
        """
        self._require_contained()
        if not self.exists():
            raise EventStoreError(f"{self.branch}/{self.name}: no such module")
        with self._lock.hold():
            report = self._rebuild_locked(progress, retries)
            self._meta_cache = None  # the report's new_meta is the caller's to change
        return report

    def rotate(self, today: str | None = None) -> Path | None:
        """The daily rotation: when the meta's ``currentDay`` is not ``today`` (UTC date by
        default), move events.log to ``history/events/<currentDay>-<lastEventAt>.log`` (Node's
        naming; never overwriting: a taken name gets ``-1``, ``-2`` ...) and restart the meta as
        Node's rotateEventLog does: totalEvents 0, no last event, ``lastAckId`` null (the
        acknowledged event is in history now), ``liveCreatedAt`` now, ``lastClosedDate`` = the
        old day (client cursors and unknown keys kept). Locked; the move is a hard link (the
        history folder fsynced) then an unlink (the live folder fsynced), so a power loss never
        keeps the unlink without the link. Returns the history file, or None when nothing moved.
        """
        day = today or clock.today()
        self._require_contained()
        self._ensure_dir()
        with self._lock.hold():
            self._repair_torn_tail()
            meta = self._current_meta()
            if meta.get("currentDay") == day:
                return None
            moved = None
            now = clock.iso_now()
            if self.log_path.exists() and os.stat(self.log_path).st_size > 0:
                old_day = meta.get("currentDay") if isinstance(meta.get("currentDay"), str) else day
                stamp = meta.get("lastEventAt") if isinstance(meta.get("lastEventAt"), str) else now
                base = layout.rotated_log_name(old_day, stamp)
                make_dirs(self.history_dir, durable=self.store.fsync)
                moved = self._link_unique(base)
                if self.store.fsync:
                    fsync_dir(self.history_dir)  # the history name is durable before the live one goes
                os.unlink(self.log_path)
                if self.store.fsync:
                    fsync_dir(self.live_dir)
            meta.update(  # as Node's rotateEventLog restarts it
                lastClosedDate=_or(meta.get("currentDay"), day),
                currentDay=day,
                liveCreatedAt=now,
                lastEventId=None,
                lastEventAt=None,
                lastAckId=None,
                totalEvents=0,
                updatedAt=now,
            )
            self._write_meta(meta)
            return moved

    def archive_backups(
        self, archive_root: str | os.PathLike[str], names: list[str] | None = None
    ) -> list[ArchivedBackup]:
        """Move backups (all, or ``names``) to ``<archive_root>/<branch>/<module>/``.

        For each: copy with exclusive create, fsync the copy and its folder, verify the copy's
        sha256 against the original, and only then unlink the original and fsync the live
        folder. Any failure raises with the original still in place (never lost). Locked.
        """
        self._require_contained()
        confine(archive_root)
        with self._lock.hold():
            todo = self.listing().backups if names is None else [self._backup_path(n).name for n in names]
            # Each backup's name and folder checked again right before its move.
            return [archive_one(self.files, self._backup_path(name).name, Path(archive_root)) for name in todo]

    def orphan_temp_files(self, grace: float | None = None) -> list[tuple[str, float]]:
        """Names and ages of temp files older than the grace period (default: the store's)."""
        return orphan_temps(self.files, self.listing().temps, self.store.temp_grace if grace is None else grace)

    def clean_temp(self, grace: float | None = None) -> list[RemovedTemp]:
        """Remove temp files of interrupted atomic writes older than the grace period; only
        names matching ``events.meta.json.tmp.<ms>.<base36>``, never anything else. Locked, so
        none of our own writers is mid-write; the grace period covers the Node server's."""
        grace = self.store.temp_grace if grace is None else grace
        removed = []
        self._require_contained()
        with self._lock.hold():
            for name, age in orphan_temps(self.files, self.listing().temps, grace):
                path = self.live_dir / name
                try:
                    size = os.stat(path, follow_symlinks=False).st_size
                    os.unlink(path)
                except FileNotFoundError:
                    continue
                removed.append(RemovedTemp(name, size, age))
            if removed and self.store.fsync:
                fsync_dir(self.live_dir)
        return removed

    def _link_unique(self, base: str) -> Path:
        log = os.stat(self.log_path, follow_symlinks=False)
        if log.st_nlink > 1:
            # An earlier rotate linked the log into history and failed before its unlink:
            # finish that move rather than leave the day's events in two history files.
            with os.scandir(self.history_dir) as it:
                for entry in sorted(it, key=lambda e: e.name):
                    if entry.is_file(follow_symlinks=False) and os.path.samestat(
                        entry.stat(follow_symlinks=False), log
                    ):
                        return Path(entry.path)
        stem = base[: -len(".log")]
        for n in range(10_000):
            target = self.history_dir / (base if n == 0 else f"{stem}-{n}.log")
            try:
                os.link(self.log_path, target)
            except FileExistsError:
                continue
            return target
        raise EventStoreError(f"no free history file name for {base}")

    # -- internals (caller holds the lock) ---------------------------------------------------

    def _ensure_dir(self) -> None:
        if not self.live_dir.is_dir():
            make_dirs(self.live_dir, durable=self.store.fsync)  # new folders survive a power loss

    def _write_meta(self, meta: dict[str, Any]) -> bytes:
        """The one writer of the meta (atomic; durable unless the store has fsync off): it also
        remembers what it wrote, so the next read of unchanged bytes needs no parse. Returns the
        bytes written."""
        self._meta_cache = None
        data = metamod.dumps(meta)
        atomic_write(self.meta_path, data, durable=self.store.fsync)
        self._meta_cache = (data, meta)
        return data

    def _rebuild_locked(self, progress: Callable[[int, int], None] | None = None, retries: int = 3) -> RebuildReport:
        """The rebuild (see :meth:`rebuild`); the caller holds the lock."""
        return rebuild_locked(
            self.files, self._write_meta, durable=self.store.fsync, progress=progress, retries=retries
        )

    def _append_bytes(self, data: bytes) -> None:
        try:
            fd = open_nofollow(self.log_path, os.O_WRONLY | os.O_APPEND)
            created = False
        except FileNotFoundError:
            fd = open_nofollow(self.log_path, os.O_WRONLY | os.O_APPEND | os.O_CREAT)
            created = True
        try:
            view = memoryview(data)
            written = 0
            try:
                while view:
                    n = os.write(fd, view)
                    written += n
                    view = view[n:]
            except BaseException:
                if written:
                    _cut_partial_append(fd, written)
                raise
            if self.store.fsync:
                os.fsync(fd)
        finally:
            os.close(fd)
        if created and self.store.fsync:
            fsync_dir(self.live_dir)  # a new log's name is durable before the meta counts its events

    def _repair_torn_tail(self) -> None:
        """Make the log end at a line boundary: a complete event missing its newline gets it; an
        incomplete fragment is saved to ``events.log.torn.<ms>.bak`` (fsynced) and cut off."""
        if not self.log_path.exists():
            return
        tail = logmod.read_tail(self.log_path)
        if logmod.is_blank(tail.fragment):
            return
        event, _ = logmod.parse_event(tail.fragment.rstrip(b"\r"))
        if event is not None:
            self._append_bytes(b"\n")
            return
        create_exclusive(self.live_dir, layout.log_fragment_name, tail.fragment, durable=self.store.fsync)
        fd = open_nofollow(self.log_path, os.O_WRONLY)
        try:
            os.ftruncate(fd, tail.fragment_offset)
            if self.store.fsync:
                os.fsync(fd)
        finally:
            os.close(fd)

    def _current_meta(self, write: bool = False, roll: bool = True) -> dict[str, Any]:
        """The meta as it must be now: recovered if damaged, created if missing, rolled forward
        to the log if it lags (unless ``roll`` is False: the caller knows the log is the one it
        last wrote). Writes only for recovery/creation, or when ``write`` is set. The returned
        dict belongs to the caller."""
        cache, self._meta_cache = self._meta_cache, None
        try:
            data, size = read_capped(self.meta_path, metamod.MAX_META_BYTES + 1)
        except FileNotFoundError:
            data = None
        if cache is not None and data == cache[0]:
            meta = cache[1]
            if roll and self._roll_forward(meta) and write:
                self._write_meta(meta)
            return meta
        if data is None:
            if self.log_path.exists() or self.listing().backups:
                return self._rebuild_locked().new_meta
            meta = fresh_meta(self.branch, self.name)
            self._write_meta(meta)
            return meta
        value, err = (None, True) if size > metamod.MAX_META_BYTES else metamod.parse(data)
        if err is not None or any(p.severity == "critical" for p in metamod.problems(value)):
            return self._rebuild_locked().new_meta
        meta = metamod.with_defaults(value)
        if roll and self._roll_forward(meta) and write:
            self._write_meta(meta)
        return meta

    def _roll_forward(self, meta: dict[str, Any]) -> bool:
        """Bring the derivable fields up to the log when the meta lags it (a crash between the
        append and the meta write, or a writer that died). Returns True if it changed ``meta``."""
        if not self.log_path.exists():
            return False
        tail = logmod.read_tail(self.log_path)
        if tail.last_line is None:
            return False
        last, _ = logmod.parse_event(tail.last_line)
        total = meta["totalEvents"]
        lags_own_last = False
        if last is not None and last.get("id") == meta.get("lastEventId"):
            seq = last.get("sequence")
            if not logmod.is_sequence(seq) or seq <= total:
                return False
            lags_own_last = True  # totalEvents is below its own last event's sequence: recount
        lines, whole = logmod.tail_lines(self.log_path)
        events = [e for e in (logmod.parse_event(ln)[0] for ln in lines) if e is not None]
        ids = [e.get("id") for e in events]
        anchor = meta.get("lastEventId")
        if anchor is not None and anchor in ids and not lags_own_last:
            newer = events[len(ids) - 1 - ids[::-1].index(anchor) + 1 :]
        elif anchor is None and total == 0 and whole:
            newer = events
        else:
            summary = logmod.summarize(self.log_path)
            meta["totalEvents"] = summary.expected_total
            meta["lastEventId"] = summary.last_event_id
            meta["lastEventAt"] = summary.last_event_at
            meta["tableCursors"].update(summary.table_cursors)
            return True
        for event in newer:
            seq = event.get("sequence")
            total = max(total + 1, seq if logmod.is_sequence(seq) else 0)
            meta["lastEventId"] = event.get("id")
            meta["lastEventAt"] = logmod.event_time(event)
            table = event.get("table")
            cursor = logmod.cursor_for(event) if isinstance(table, str) and table else None
            if cursor is not None:
                meta["tableCursors"][table] = cursor
        changed = total != meta["totalEvents"] or bool(newer)
        meta["totalEvents"] = total
        return changed


def _js_truthy(value: Any) -> bool:
    """JavaScript's truthiness: null, false, 0, NaN and "" are falsy; every object (an empty
    one too) is truthy."""
    if value is None or value is False:
        return False
    if isinstance(value, str):
        return value != ""
    if isinstance(value, (int, float)):
        return value == value and value != 0  # NaN != NaN
    return True


def _or(value: Any, default: Any) -> Any:
    """``value || default``."""
    return value if _js_truthy(value) else default


def _js_finite(value: Any) -> bool:
    """``Number.isFinite(value)``: a number, neither infinite nor NaN (never a bool or a string)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return False
    return isinstance(value, int) or math.isfinite(value)


def publish_state(source: Any, origin: str, timestamp: str) -> dict[str, Any]:
    """Node's normalizePublishState: every branch entry of ``source`` as {status, updatedAt,
    attempts[, publishedAt]} (a bare string is a status), then the origin branch's own entry
    re-stamped: status "published" unless it has one, updatedAt = ``timestamp``, its attempts
    (else 0), and publishedAt = ``timestamp`` when published."""
    out: dict[str, Any] = {}
    if isinstance(source, dict):
        items = list(source.items())
    elif isinstance(source, list):  # Object.entries of an array: its indexes as keys
        items = [(str(i), v) for i, v in enumerate(source)]
    else:
        items = []
    for branch, value in items:
        if not _js_truthy(branch):
            continue
        if isinstance(value, dict):
            entry = {
                "status": value["status"] if isinstance(value.get("status"), str) else "pending",
                "updatedAt": _or(value.get("updatedAt"), timestamp),
                "attempts": value["attempts"] if _js_finite(value.get("attempts")) else 0,
            }
            if _js_truthy(value.get("publishedAt")):
                entry["publishedAt"] = value["publishedAt"]
            out[branch] = entry
        elif isinstance(value, list):  # an object without any of those keys
            out[branch] = {"status": "pending", "updatedAt": timestamp, "attempts": 0}
        elif isinstance(value, str):
            out[branch] = {"status": value, "updatedAt": timestamp, "attempts": 0}
    own = out.get(origin) or {}
    mine = {
        "status": _or(own.get("status"), "published"),
        "updatedAt": timestamp,
        "attempts": own["attempts"] if _js_finite(own.get("attempts")) else 0,
    }
    if mine["status"] == "published":
        mine["publishedAt"] = timestamp
    out[origin] = mine
    return out


def _cut_partial_append(fd: int, written: int) -> None:
    """After a write that failed part way (a full disk takes what fits, then ENOSPC), cut the
    part of the line that was written, so the log does not end in a torn line that the next
    writer (the Node server too, which does not repair) would glue its event onto. Only when
    nothing was appended after it; best effort: if it fails, the torn tail stays for the next
    writer's repair (saved in a ``events.log.torn.<ms>.bak``)."""
    try:
        end = os.lseek(fd, 0, os.SEEK_CUR)  # O_APPEND: just past the bytes we wrote
        if os.fstat(fd).st_size == end:
            os.ftruncate(fd, end - written)
    except OSError:
        pass


def preview_file(path: Path, limit: int = PREVIEW_LIMIT) -> FilePreview:
    """The preview of a file (no symlinks): also of one outside a module, e.g. an archived copy."""
    # A file too large to validate is read only as far as it is shown (a page view of a 50 MB
    # meta reads 64 KiB, not 8 MiB).
    too_big = os.stat(path, follow_symlinks=False).st_size > PREVIEW_PARSE_LIMIT
    data, size = read_capped(path, limit if too_big else max(limit, PREVIEW_PARSE_LIMIT))
    return preview_data(data, size, limit)


def preview_data(data: bytes, size: int, limit: int = PREVIEW_LIMIT) -> FilePreview:
    """A preview of a file's first bytes ``data`` (at most ``max(limit, PREVIEW_PARSE_LIMIT)``
    of them are needed) when the whole file is ``size`` bytes: e.g. an archived copy."""
    shown = data[:limit]
    text = metamod.decode_text(shown)
    if size > PREVIEW_PARSE_LIMIT or len(data) < size:  # too big, or it grew since the stat
        return FilePreview(text, size, size > limit, None, None)
    value, err = metamod.parse(data)
    if err is None and not isinstance(value, dict):
        return FilePreview(
            text, size, size > limit, False, {"message": "valid JSON but not an object", "pos": 0, "line": 1, "col": 1}
        )
    return FilePreview(text, size, size > limit, err is None, err.to_dict() if err else None)
