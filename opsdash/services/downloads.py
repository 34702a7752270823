"""Backups leaving the dashboard: one file or a streamed zip with a sha256 manifest, each audited.

Only Backup rows are ever served; the bytes come through files.open_backup, which builds the
path from the row's own names.
"""

from __future__ import annotations

import hashlib
import json
import re
import zipfile
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field

from django.http import HttpRequest

from ..models import Backup
from .audit import record
from .files import FilesUnavailable, open_backup

CHUNK = 1 << 16
MANIFEST = "MANIFEST.sha256"


def safe_filename(*parts: str) -> str:
    """A download name of ASCII letters, digits, ``.``, ``_`` and ``-`` only (no quotes, no
    separators, nothing a Content-Disposition header or a file system could misread)."""
    name = "-".join(re.sub(r"[^A-Za-z0-9._-]+", "_", part).strip("._") or "_" for part in parts)
    return name[:200]


class _Sink:
    """A write-only, non-seekable stream: zipfile then writes data descriptors, never seeks back."""

    def __init__(self) -> None:
        self._chunks: list[bytes] = []

    def write(self, data: bytes) -> int:
        self._chunks.append(bytes(data))
        return len(data)

    def flush(self) -> None:
        pass

    def take(self) -> bytes:
        out, self._chunks = b"".join(self._chunks), []
        return out


@dataclass
class ZipReport:
    """What a zip download held, filled in while it streams (for the audit entry)."""

    backups: list[str] = field(default_factory=list)
    bytes_sent: int = 0
    mismatches: list[str] = field(default_factory=list)
    unavailable: list[str] = field(default_factory=list)
    complete: bool = False


def zip_part(name: str) -> str:
    """A branch, module or file name as a zip entry's path part that extracts the same on every
    system: ASCII letters, digits, ``.``, ``_`` and ``-``. A name that had to change keeps a
    short hash of itself (``a<b`` and ``a>b`` stay apart); the manifest says how it maps."""
    safe = safe_filename(name)
    return (
        safe
        if safe == name
        else f"{safe[:100]}~{hashlib.sha256(name.encode('utf-8', 'surrogatepass')).hexdigest()[:8]}"
    )


def _entry_name(backup: Backup) -> tuple[str, str]:
    """The entry's safe path and the path it stands for (the names as the store has them)."""
    parts = (backup.module.branch, backup.module.module, backup.name)
    return "/".join(zip_part(p) for p in parts), "/".join(parts)


def stream_zip(backups: Iterable[Backup], report: ZipReport) -> Iterator[bytes]:
    """Zip ``backups`` chunk by chunk, then MANIFEST.sha256: ``<sha256>  <path>`` per backup, the
    sums from the database, each checked against the bytes as they were zipped. A mismatch or an
    unreadable file gets a ``# MISMATCH`` / ``# UNAVAILABLE`` line of its own, never silence."""
    sink = _Sink()
    manifest = ["# sha256 sums recorded by opsdash, checked against the bytes zipped here (sha256sum -c)"]
    with zipfile.ZipFile(sink, mode="w", compression=zipfile.ZIP_DEFLATED) as zf:
        for backup in backups:
            path, original = _entry_name(backup)
            if path != original:  # JSON, ASCII only: quotes, controls and bidi characters escaped, nothing hidden
                manifest.append(f"# NAME {path} = {json.dumps(original)} (as the store names it)")
            try:
                fh = open_backup(backup)
            except FilesUnavailable as exc:
                report.unavailable.append(backup.name)
                manifest.append(f"# UNAVAILABLE {path}: {exc}")
                continue
            digest = hashlib.sha256()
            with fh, zf.open(_info(path, _zip_time(backup)), mode="w", force_zip64=True) as out:
                while chunk := fh.read(CHUNK):
                    digest.update(chunk)
                    out.write(chunk)
                    yield sink.take()
            report.backups.append(backup.name)
            if digest.hexdigest() != backup.sha256:
                report.mismatches.append(backup.name)
                manifest.append(
                    f"# MISMATCH {path}: the bytes hash to {digest.hexdigest()}, not the recorded sum below"
                )
            manifest.append(f"{backup.sha256}  {path}")
            yield sink.take()
        zf.writestr(_info(MANIFEST, (1980, 1, 1, 0, 0, 0)), "\n".join(manifest) + "\n")
    yield sink.take()
    report.complete = True


def _info(name: str, date_time: tuple[int, int, int, int, int, int]) -> zipfile.ZipInfo:
    info = zipfile.ZipInfo(name, date_time=date_time)
    info.compress_type = zipfile.ZIP_DEFLATED
    return info


def _zip_time(backup: Backup) -> tuple[int, int, int, int, int, int]:
    at = backup.created_at
    if at is None or at.year < 1980:
        return (1980, 1, 1, 0, 0, 0)
    return (at.year, at.month, at.day, at.hour, at.minute, at.second)


def audited_zip(
    request: HttpRequest, backups: list[Backup], *, host: str, branch: str, module: str = ""
) -> Iterator[bytes]:
    """``stream_zip`` that writes one audit entry when the stream ends: "ok", "mismatch" or
    "interrupted" (the client went away), with the backups and the bytes actually sent."""
    report = ZipReport()
    try:
        for chunk in stream_zip(backups, report):
            if chunk:
                report.bytes_sent += len(chunk)
                yield chunk
    finally:
        outcome = "interrupted" if not report.complete else "mismatch" if report.mismatches else "ok"
        params = {
            "backups": report.backups,
            "bytes": report.bytes_sent,
            "mismatches": report.mismatches,
            "unavailable": report.unavailable,
        }
        record(request, "backups_zip_download", outcome, host=host, branch=branch, module=module, params=params)
