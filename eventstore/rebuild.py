"""Rebuild a meta from its log and salvage what the log cannot give back."""

from __future__ import annotations

import copy
import errno
import hashlib
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any

from . import clock, layout
from . import log as logmod
from . import meta as metamod
from .errors import ConcurrentModification, EventStoreError
from .fileio import Stamp, create_exclusive, read_capped
from .folder import ModuleFiles

Progress = Callable[[int, int], None]
WriteMeta = Callable[[dict[str, Any]], bytes]  # the Module's meta writer: returns the bytes written


@dataclass(slots=True)
class RebuildReport:
    """What a rebuild read, kept, wrote, and where every non-derivable field came from.

    ``sources`` maps a meta key to ``"log"`` (derived), ``"folder"`` (branchId/moduleId),
    ``"meta"`` (the current meta, when it parsed), ``"prefix"`` (the valid prefix of the damaged
    file), ``"backup:<name>"`` (the newest parseable backup that has it), or ``"default"``.
    """

    branch: str
    module: str
    events_read: int = 0
    bad_line_count: int = 0
    bad_lines: list[dict[str, Any]] = field(default_factory=list)
    duplicate_count: int = 0
    gap_count: int = 0
    torn_tail: dict[str, Any] | None = None
    backup: str | None = None
    old_meta: dict[str, Any] | None = None
    old_meta_error: str | None = None
    new_meta: dict[str, Any] = field(default_factory=dict)
    sources: dict[str, str] = field(default_factory=dict)
    bytes_read: int = 0
    log_size: int = 0
    attempts: int = 1
    duration: float = 0.0
    meta_sha256_before: str | None = None
    meta_sha256_after: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def fresh_meta(branch: str, module: str) -> dict[str, Any]:
    now = clock.iso_now()
    out = copy.deepcopy(metamod.DEFAULTS)
    out.update(branchId=branch, moduleId=module, liveCreatedAt=now, currentDay=now[:10], updatedAt=now)
    return out


def _parseable_backups(files: ModuleFiles, exclude: str | None) -> list[tuple[str, dict[str, Any]]]:
    """Meta backups that parse to an object, newest first (by the time in their name)."""
    names = [n for n in files.listing().backups if layout.backup_kind(n) == "meta" and n != exclude]
    names.sort(key=lambda n: int(layout.META_BACKUP_RE.match(n).group(1)), reverse=True)
    out = []
    for name in names:
        try:
            data, size = read_capped(files.in_live(name), metamod.MAX_META_BYTES + 1)
        except (FileNotFoundError, IsADirectoryError):
            continue  # archived meanwhile, or not a file
        except OSError as exc:
            if exc.errno == errno.ELOOP:
                continue  # a symlink: never followed
            # Any other error (EIO, EACCES) stops the rebuild: skipping the backup would
            # silently lose what only it holds (lastAckId, client cursors) in the new meta.
            raise
        if size > metamod.MAX_META_BYTES:
            continue
        value, err = metamod.parse(data)
        if (
            err is None
            and isinstance(value, dict)
            and not any(p.severity == "critical" for p in metamod.problems(value))
        ):
            out.append((f"backup:{name}", value))
        elif err is not None:
            prefix = metamod.salvage_prefix(data)
            if prefix is not None:
                out.append((f"backup:{name}", prefix))
    return out


def build_meta(
    branch: str, module: str, summary: logmod.LogSummary, candidates: list[tuple[str, dict[str, Any]]]
) -> tuple[dict[str, Any], dict[str, str]]:
    """The meta of ``branch``/``module``: derivable fields from the log, the rest from the
    first candidate that has them (else defaults); and where each field came from."""
    base = fresh_meta(branch, module)
    new: dict[str, Any] = {}
    sources: dict[str, str] = {}
    for key in metamod.DEFAULTS:
        if key in ("branchId", "moduleId"):
            new[key] = base[key]
            sources[key] = "folder"
        elif key == "updatedAt":
            new[key] = base[key]
            sources[key] = "now"
        elif key == "totalEvents":
            new[key] = summary.expected_total
            sources[key] = "log"
        elif key == "lastEventId":
            new[key] = summary.last_event_id
            sources[key] = "log"
        elif key == "lastEventAt":
            new[key] = summary.last_event_at
            sources[key] = "log"
        elif key == "tableCursors":
            cursors: dict[str, Any] = {}
            label = "log"
            for source, value in candidates:
                if isinstance(value.get(key), dict):
                    cursors = metamod.copy_json(value[key])
                    if set(cursors) - set(summary.table_cursors):
                        label = f"log+{source}"
                    break
            cursors.update(summary.table_cursors)
            new[key] = cursors
            sources[key] = label
        else:
            for source, value in candidates:
                if key in value and _usable(key, value[key]):
                    new[key] = metamod.copy_json(value[key])
                    sources[key] = source
                    break
            else:
                new[key] = base[key]
                sources[key] = "default"
    for source, value in candidates:
        for key, v in value.items():
            if key not in metamod.KNOWN_KEYS and key not in new:
                new[key] = metamod.copy_json(v)
                sources[key] = source
    return new, sources


def _usable(key: str, value: Any) -> bool:
    if key in ("lastServedTableIds", "lastClientTableIds"):
        return isinstance(value, dict)
    return True


def rebuild_locked(
    files: ModuleFiles,
    write_meta: WriteMeta,
    *,
    durable: bool = True,
    progress: Progress | None = None,
    retries: int = 3,
) -> RebuildReport:
    """The rebuild; the caller holds the module lock and writes the new meta (``write_meta``,
    atomic and durable). Backups are written here, durable if ``durable``. See
    :meth:`Module.rebuild`."""
    started = time.monotonic()
    report = RebuildReport(files.branch, files.name)
    backup_sha = None
    for attempt in range(1, retries + 2):
        report.attempts = attempt
        meta_before = Stamp.of(files.meta)
        log_before = Stamp.of(files.log)
        data = None
        if meta_before is not None:
            data, size = read_capped(files.meta_path, metamod.MAX_META_BYTES + 1)
            if size > metamod.MAX_META_BYTES:
                # Not a meta any more; keeping a copy would need it in memory. Touch nothing.
                raise EventStoreError(f"meta is {size} bytes, too large to back up safely; move it away by hand")
            sha = hashlib.sha256(data).hexdigest()
            report.meta_sha256_before = sha
            if sha != backup_sha:
                path = create_exclusive(files.live_dir, layout.meta_backup_name, data, durable=durable)
                report.backup = path.name
                backup_sha = sha
        candidates: list[tuple[str, dict[str, Any]]] = []
        report.old_meta = None
        report.old_meta_error = None
        if data is not None:
            value, err = metamod.parse(data)
            if err is None and isinstance(value, dict):
                candidates.append(("meta", value))
                report.old_meta = value
                if metamod.total_events(value) is None:
                    report.old_meta_error = "totalEvents is not a whole number >= 0"
            else:
                report.old_meta_error = err.message if err else "meta is not an object"
                prefix = metamod.salvage_prefix(data)
                if prefix is not None:
                    candidates.append(("prefix", prefix))
                    report.old_meta = prefix
        candidates.extend(_parseable_backups(files, exclude=report.backup))
        if log_before is not None:
            summary = logmod.summarize(files.log_path, progress=progress)
        else:
            summary = logmod.LogSummary()
        if Stamp.of(files.meta) != meta_before or Stamp.of(files.log) != log_before:
            continue  # a writer that ignores our lock (the Node server) changed a file: start over
        new, sources = build_meta(files.branch, files.name, summary, candidates)
        out = write_meta(new)
        report.events_read = summary.events
        report.bad_line_count = summary.bad_line_count
        report.bad_lines = summary.bad_lines
        report.duplicate_count = summary.duplicate_count
        report.gap_count = summary.gap_count
        report.torn_tail = summary.torn_tail
        report.bytes_read = summary.size
        report.log_size = summary.size
        report.new_meta = new
        report.sources = sources
        report.meta_sha256_after = hashlib.sha256(out).hexdigest()
        report.duration = time.monotonic() - started
        return report
    raise ConcurrentModification(
        f"{files.branch}/{files.name}: the log or meta kept changing while rebuilding ({retries + 1} tries); nothing was overwritten"
    )
