"""What each action's job does: the runners the action registry (opsdash.actions) names.

A runner takes the job row, a progress callback ``progress(done, total, text, info)`` and an
``audit`` dict it fills with the meta's sha256 before and after; it returns the job's result (a
JSON dict whose ``summary`` is one English line) or raises (EventStoreError, FilesUnavailable,
OSError: a failed job with that line; PartlyFailed: a whole-branch job in which some modules
failed, keeping what was done).
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable
from datetime import timedelta
from typing import Any

from django.conf import settings
from django.utils import timezone

from eventstore.errors import EventStoreError

from ..models import Backup, BackupBlob, Incident, Job, ModuleState, Status
from .audit import record_job
from .files import FilesUnavailable, archived_backup_path, live_module, open_nofollow_file
from .scan import Read, check_one, scan_module

Progress = Callable[..., None]
Runner = Callable[[Job, Progress, dict], dict[str, Any]]
# The failures a runner reports as a failed job (anything else is a bug: logged with its traceback).
EXPECTED_FAILURES = (EventStoreError, FilesUnavailable, OSError)


class PartlyFailed(Exception):
    """A bulk job in which some modules failed: the job fails, and keeps what was done."""

    def __init__(self, message: str, result: dict[str, Any]):
        super().__init__(message)
        self.result = result


def one_line(exc: BaseException) -> str:
    """An error as the one line a job records."""
    if isinstance(exc, OSError) and exc.strerror:
        return f"{exc.strerror}: {exc.filename}" if exc.filename else exc.strerror
    return str(exc).splitlines()[0] if str(exc) else type(exc).__name__


def module_of(job: Job) -> ModuleState:
    module_row = job.target or ModuleState.objects.filter(host=job.host, branch=job.branch, module=job.module).first()
    if module_row is None:
        raise FilesUnavailable(f"{job.branch}/{job.module} is not known on {job.host}")
    return module_row


# -- module actions ------------------------------------------------------------------------------


def rebuild(job: Job, progress: Progress, audit: dict) -> dict[str, Any]:
    return rebuild_module(module_of(job), job.requested_by, progress, audit)


def by_bytes(progress: Progress) -> Callable[[int, int], None]:
    """The library's ``progress(done, total)`` of a log read, as a job's progress."""
    return lambda done, total: progress(
        done, total, f"{_mb(done)} of {_mb(total)} of the log read", {"unit": "bytes", "done": done, "total": total}
    )


def rebuild_module(module_row: ModuleState, user: str, progress: Progress, audit: dict) -> dict[str, Any]:
    report = live_module(module_row).rebuild(progress=by_bytes(progress))
    audit["before"] = report.meta_sha256_before or ""
    audit["after"] = report.meta_sha256_after or ""
    module_row = scan_module(module_row, ended_how=Incident.EndedHow.REBUILT, ended_by=user)
    return {
        "summary": f"rebuilt from {report.events_read} events; old meta backed up as {report.backup or 'nothing (there was none)'}",
        "events_read": report.events_read,
        "bytes_read": report.bytes_read,
        "backup": report.backup,
        "bad_line_count": report.bad_line_count,
        "old_meta_error": report.old_meta_error,
        "sources": {k: v for k, v in report.sources.items() if v not in ("log", "folder", "now")},
        "diff": meta_diff(report.old_meta, report.new_meta),
        "status": module_row.status,
    }


def _mb(n: int) -> str:
    return f"{n / 1_000_000:,.1f} MB"


def verify(job: Job, progress: Progress, audit: dict) -> dict[str, Any]:
    """Read the meta, the whole log and the backups from scratch (no cached state but the log's
    checkpoints, which the read is compared with)."""
    return _read_in_full(job, progress, Read(full=True, progress=by_bytes(progress)), "verify")


def accept_log(job: Job, progress: Progress, audit: dict) -> dict[str, Any]:
    """A full read that takes the log as it is now as the reference: a ``log_changed_in_place``
    ends (the operator has looked at the change and keeps it); audited like every action."""
    return _read_in_full(job, progress, Read(full=True, progress=by_bytes(progress), accept_changes=True), "accept")


def _read_in_full(job: Job, progress: Progress, read: Read, how: str) -> dict[str, Any]:
    module_row, report = check_one(
        module_of(job), ended_how=Incident.EndedHow.RESOLVED, ended_by=f"{how} by {job.requested_by}", read=read
    )
    return {
        "summary": f"{module_row.status}: {', '.join(module_row.codes.split()) or 'no findings'}; "
        f"{report.bytes_read} bytes read",
        "status": module_row.status,
        "findings": module_row.findings,
        "bytes_read": report.bytes_read,
        "verified_at": module_row.verified_at.isoformat() if module_row.verified_at else None,
    }


def archive_backups(job: Job, progress: Progress, audit: dict) -> dict[str, Any]:
    done = archive_module(module_of(job), job.requested_by)
    return {"summary": f"{len(done)} backup(s) archived, each verified by sha256", "archived": done}


def archive_module(module_row: ModuleState, user: str) -> list[dict[str, Any]]:
    archived = live_module(module_row).archive_backups(settings.OPSDASH_ARCHIVE_ROOT)
    now = timezone.now()
    for item in archived:
        Backup.objects.filter(module=module_row, name=item.name).update(
            state=Backup.State.ARCHIVED, archive_path=item.path, last_changed=now
        )
        _store_blob(module_row, item)
    scan_module(module_row, ended_how=Incident.EndedHow.ARCHIVED, ended_by=user)
    return [item.to_dict() for item in archived]


def _store_blob(module_row: ModuleState, item) -> None:
    """Keep the archived bytes in the database too, verified, so every host can serve them."""
    backup = Backup.objects.filter(module=module_row, name=item.name).first()
    if backup is None or item.size > settings.OPSDASH_BLOB_MAX_BYTES:
        return
    with open(item.path, "rb") as f:
        data = f.read()
    if hashlib.sha256(data).hexdigest() != item.sha256:
        raise EventStoreError(f"archived copy of {item.name} changed after it was verified")
    BackupBlob.objects.update_or_create(backup=backup, defaults={"data": data, "sha256": item.sha256})


def clean_temp(job: Job, progress: Progress, audit: dict) -> dict[str, Any]:
    module_row = module_of(job)
    removed = live_module(module_row).clean_temp(settings.OPSDASH_TEMP_GRACE_SECONDS)
    scan_module(module_row)
    names = ", ".join(r.name for r in removed)
    return {
        "summary": f"{len(removed)} orphan temp file(s) removed" + (f": {names}" if names else ""),
        "removed": [r.to_dict() for r in removed],
    }


# -- whole-branch actions ------------------------------------------------------------------------

# What a bulk job keeps of each module's outcome besides its English summary.
BULK_KEYS = ("events_read", "backup", "status", "archived")


def _bulk(
    job: Job,
    progress: Progress,
    each_as: str,
    each: Callable[[ModuleState, dict], dict],
    states: list[ModuleState],
    verb: str,
) -> dict[str, Any]:
    """Run ``each`` on every module, go on past a failure, audit each module as action ``each_as``."""
    done, failed = [], []
    for i, module_row in enumerate(states):
        progress(
            i,
            len(states),
            f"{i} of {len(states)} modules, now {module_row.module}",
            {"unit": "modules", "done": i, "total": len(states), "now": module_row.module},
        )
        audit: dict[str, str] = {}
        try:
            outcome = each(module_row, audit)
        except EXPECTED_FAILURES as exc:
            failed.append({"module": module_row.module, "error": one_line(exc)})
            record_job(job, each_as, module_row.module, Job.Status.FAILED, one_line(exc), {"bulk_job": job.pk}, audit)
        else:
            # "result" is the English line (API, audit); the rest lets a page word it in its language.
            done.append(
                {
                    "module": module_row.module,
                    "result": outcome["summary"],
                    **{k: outcome[k] for k in BULK_KEYS if k in outcome},
                }
            )
            record_job(
                job, each_as, module_row.module, Job.Status.SUCCEEDED, outcome["summary"], {"bulk_job": job.pk}, audit
            )
    progress(
        len(states),
        len(states),
        f"{len(states)} of {len(states)} modules",  # not "now <the last one>" once done
        {"unit": "modules", "done": len(states), "total": len(states)},
    )
    result = {"summary": f"{len(done)} module(s) {verb}, {len(failed)} failed", "modules": done, "failed": failed}
    if failed:
        raise PartlyFailed(result["summary"] + ": " + "; ".join(f"{f['module']}: {f['error']}" for f in failed), result)
    return result


def _no_progress(*args: Any) -> None:
    """Per-module progress is not shown inside a bulk job."""


def bulk_rebuild(job: Job, progress: Progress, audit: dict) -> dict[str, Any]:
    states = _branch_modules(job, status=Status.CRITICAL)
    return _bulk(
        job, progress, "rebuild", lambda s, a: rebuild_module(s, job.requested_by, _no_progress, a), states, "rebuilt"
    )


def bulk_archive(job: Job, progress: Progress, audit: dict) -> dict[str, Any]:
    def each(module_row: ModuleState, audit: dict) -> dict[str, Any]:
        done = archive_module(module_row, job.requested_by)
        return {
            "summary": f"{len(done)} backup(s) archived: {', '.join(d['name'] for d in done)}",
            "archived": [d["name"] for d in done],
        }

    states = _branch_modules(job, backups__state=Backup.State.LIVE)
    return _bulk(job, progress, "archive_backups", each, states, "archived")


def purge_archive(job: Job, progress: Progress, audit: dict) -> dict[str, Any]:
    """Remove the archive copies (file and database copy) of the branch's archived backups older
    than OPSDASH_ARCHIVE_KEEP_DAYS and not pinned, each only after its bytes are verified
    against the recorded sha256; a copy that does not match is kept and reported."""
    days = settings.OPSDASH_ARCHIVE_KEEP_DAYS
    if not days:
        return {
            "summary": "archived backups are kept forever (OPSDASH_ARCHIVE_KEEP_DAYS is 0)",
            "purged": [],
            "kept": [],
        }
    old = Backup.objects.filter(
        module__host=job.host,
        module__branch=job.branch,
        state=Backup.State.ARCHIVED,
        pinned_by="",
        last_changed__lt=timezone.now() - timedelta(days=days),
    ).select_related("module")
    purged, kept = [], []
    for n, backup in enumerate(old, start=1):
        why = _purge_one(backup)
        (kept if why else purged).append({"name": backup.name, "module": backup.module.module, "why": why})
        progress(n, len(old), f"{n} of {len(old)} archived backups", {"unit": "backups", "done": n, "total": len(old)})
    return {
        "summary": f"{len(purged)} archived backup(s) purged, {len(kept)} kept (copy not verified)",
        "purged": purged,
        "kept": kept,
    }


def _purge_one(backup: Backup) -> str:
    """Remove a verified archive copy; "" when done, else why it was kept."""
    try:
        path = archived_backup_path(backup)
        with open_nofollow_file(path) as fh:
            digest = hashlib.file_digest(fh, "sha256").hexdigest()
    except FileNotFoundError:
        digest = None  # this host's file is gone already: the database copy is checked alone
    except (OSError, FilesUnavailable) as exc:
        return f"not readable: {one_line(exc)}"
    if digest is not None and digest != backup.sha256:
        return "its archive file does not match the recorded sha256"
    blob = BackupBlob.objects.filter(backup=backup).first()
    if blob is not None and hashlib.sha256(bytes(blob.data)).hexdigest() != backup.sha256:
        return "its database copy does not match the recorded sha256"
    if digest is not None:
        os.unlink(path)
    if blob is not None:
        blob.delete()
    Backup.objects.filter(pk=backup.pk).update(state=Backup.State.PURGED, last_changed=timezone.now())
    return ""


def _branch_modules(job: Job, **filters: Any) -> list[ModuleState]:
    return list(ModuleState.objects.filter(host=job.host, branch=job.branch, **filters).distinct().order_by("module"))


# -- the rebuild's diff --------------------------------------------------------------------------


def meta_diff(old: dict | None, new: dict) -> list[dict[str, Any]]:
    """Field by field: what the rebuild changed (tableCursors table by table)."""
    old = old if isinstance(old, dict) else {}
    rows = []
    for key in list(dict.fromkeys([*old, *new])):
        if key == "updatedAt":
            continue
        if key == "tableCursors" and isinstance(old.get(key), dict) and isinstance(new.get(key), dict):
            for table in dict.fromkeys([*old[key], *new[key]]):
                rows += _diff_row(f"tableCursors.{table}", old[key], new[key], table)
            continue
        rows += _diff_row(key, old, new, key)
    return rows


def _diff_row(label: str, old: dict, new: dict, key: str) -> list[dict[str, Any]]:
    if key not in old:
        return [{"key": label, "change": "added", "old": None, "new": new[key]}]
    if key not in new:
        return [{"key": label, "change": "removed", "old": old[key], "new": None}]
    if old[key] != new[key]:
        return [{"key": label, "change": "changed", "old": old[key], "new": new[key]}]
    return []
