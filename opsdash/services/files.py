"""What the pages show of a module's files, read through eventstore (never opened here)."""

from __future__ import annotations

import errno
import hashlib
import io
import os
from dataclasses import dataclass
from pathlib import Path
from typing import IO

import orjson
from django.conf import settings
from django.db.models import BinaryField
from django.db.models.functions import Length, Substr
from django.utils.translation import gettext

from eventstore import FilePreview, Module, layout
from eventstore.errors import EventStoreError, InvalidName, OutsideRoot
from eventstore.fileio import confine, open_nofollow
from eventstore.store import PREVIEW_PARSE_LIMIT, preview_data, preview_file

from ..models import Backup, BackupBlob, ModuleState
from .host import local_host


class FilesUnavailable(Exception):
    """The module's files cannot be read from this process; the message says why, in one line."""


@dataclass(frozen=True)
class Marked:
    """A damaged JSON text split around the parse error, for a <mark> at the exact character."""

    before: str
    at: str
    after: str
    message: str
    line: int | None
    col: int | None
    pos: int


@dataclass(frozen=True)
class PreviewView:
    preview: FilePreview
    pretty: str | None = None
    marked: Marked | None = None


def live_module(module_row: ModuleState) -> Module:
    """The eventstore Module behind a row; FilesUnavailable if this host cannot read it."""
    here = local_host()
    if module_row.host != here.name:
        raise FilesUnavailable(
            gettext("the files are on host %(host)s; this dashboard runs on %(here)s")
            % {"host": module_row.host, "here": here.name}
        )
    try:
        return here.open_store().module(module_row.branch, module_row.module)
    except EventStoreError as exc:
        raise FilesUnavailable(str(exc)) from None


def _view(preview: FilePreview) -> PreviewView:
    if preview.valid and not preview.truncated:
        try:
            pretty = orjson.dumps(orjson.loads(preview.text), option=orjson.OPT_INDENT_2).decode()
        except orjson.JSONDecodeError:
            pretty = None  # valid for the library (e.g. a huge integer) but not for orjson: show it raw
        return PreviewView(preview, pretty=pretty)
    if preview.error:
        err = preview.error
        pos = max(0, min(int(err.get("pos") or 0), len(preview.text)))
        marked = Marked(
            before=preview.text[:pos],
            at=preview.text[pos : pos + 1],
            after=preview.text[pos + 1 :],
            message=str(err.get("message", "")),
            line=err.get("line"),
            col=err.get("col"),
            pos=pos,
        )
        return PreviewView(preview, marked=marked)
    return PreviewView(preview)


def meta_preview(module_row: ModuleState) -> PreviewView:
    """The meta for display: pretty when valid, raw with the error marked when damaged."""
    module = live_module(module_row)
    try:
        return _view(module.preview_meta())
    except OutsideRoot as exc:
        raise FilesUnavailable(str(exc)) from None
    except FileNotFoundError:
        raise FilesUnavailable(gettext("there is no events.meta.json")) from None
    except OSError as exc:
        raise FilesUnavailable(
            gettext("events.meta.json cannot be read: %(error)s") % {"error": exc.strerror or exc}
        ) from None


def backup_preview(backup: Backup) -> PreviewView:
    if backup.state == Backup.State.ARCHIVED:
        return _view(_archived_preview(backup))
    if backup.state != Backup.State.LIVE:
        raise FilesUnavailable(
            gettext("the backup is %(state)s, not in the live folder") % {"state": backup.get_state_display()}
        )
    module = live_module(backup.module)
    try:
        return _view(module.preview_backup(backup.name))
    except OutsideRoot as exc:
        raise FilesUnavailable(str(exc)) from None
    except (FileNotFoundError, EventStoreError):
        raise FilesUnavailable(gettext("%(name)s is no longer in the live folder") % {"name": backup.name}) from None
    except OSError as exc:
        raise FilesUnavailable(
            gettext("%(name)s cannot be read: %(error)s") % {"name": backup.name, "error": exc.strerror or exc}
        ) from None


def _archived_preview(backup: Backup) -> FilePreview:
    """An archived backup's preview: from the archive on this host (reading only what is shown,
    as for a live file), else from the database's verified copy."""
    if backup.module.host == local_host().name:
        try:
            return preview_file(archived_backup_path(backup))
        except OSError:
            pass  # not in this host's archive (moved, or archived elsewhere): try the database
    with open_backup(backup) as fh:  # the database's copy (sha256 checked), or a clear error
        data = fh.read(PREVIEW_PARSE_LIMIT + 1)
        size = stream_size(fh)
    return preview_data(data, size)


def archived_backup_path(backup: Backup) -> Path:
    """``<OPSDASH_ARCHIVE_ROOT>/<branch>/<module>/<name>``, built only from the row's own names,
    each checked by eventstore's path rules; FilesUnavailable if a name breaks them."""
    root = settings.OPSDASH_ARCHIVE_ROOT
    if not root:
        raise FilesUnavailable("OPSDASH_ARCHIVE_ROOT is not set")
    module_row = backup.module
    try:
        parts = [layout.check_name(module_row.branch, "branch"), layout.check_name(module_row.module, "module")]
        name = layout.check_name(backup.name, "backup name")
    except InvalidName as exc:
        raise FilesUnavailable(str(exc)) from None
    if not layout.backup_kind(name):
        raise FilesUnavailable(f"{name!r} is not a backup file name")
    path = Path(root).joinpath(*parts, name)
    confine(root)  # the open itself is checked too (a folder swapped for a symlink after this check)
    if not layout.is_inside(Path(root), path):  # a symlinked branch or module folder in the archive
        raise FilesUnavailable(f"{name} is behind a symlink that leads outside the archive; not followed")
    return path


BLOB_CHUNK = 1 << 20


class BlobReader(io.RawIOBase):
    """The bytes of a BackupBlob read from the database one chunk at a time (SUBSTR on the
    bytea / BLOB column), so that serving a 64 MiB archived backup never holds it in memory."""

    def __init__(self, pk: int, size: int):
        super().__init__()
        self.pk, self.size, self.pos = pk, size, 0

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def tell(self) -> int:
        return self.pos

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        base = {io.SEEK_SET: 0, io.SEEK_CUR: self.pos, io.SEEK_END: self.size}[whence]
        self.pos = max(0, base + offset)
        return self.pos

    def readinto(self, buffer) -> int:
        want = min(len(buffer), self.size - self.pos)
        if want <= 0:
            return 0
        part = (
            BackupBlob.objects.filter(pk=self.pk)
            .annotate(part=Substr("data", self.pos + 1, want, output_field=BinaryField()))
            .values_list("part", flat=True)
            .first()
        )
        if part is None:
            raise OSError(errno.ENOENT, "the stored copy is gone")
        data = bytes(part)
        if not data:
            raise OSError(errno.EIO, "the stored copy is shorter than recorded")
        buffer[: len(data)] = data
        self.pos += len(data)
        return len(data)


def _open_blob(backup: Backup) -> IO[bytes] | None:
    """The database's copy of an archived backup, its sha256 checked in a first streamed pass;
    None when there is none. Memory stays at one chunk."""
    row = BackupBlob.objects.filter(backup=backup).annotate(size=Length("data")).values("pk", "sha256", "size").first()
    if row is None:
        return None
    digest = hashlib.sha256()
    with io.BufferedReader(BlobReader(row["pk"], row["size"] or 0), BLOB_CHUNK) as check:
        while chunk := check.read(BLOB_CHUNK):
            digest.update(chunk)
    if digest.hexdigest() != row["sha256"]:
        raise FilesUnavailable(gettext("the stored copy of %(name)s does not match its sha256") % {"name": backup.name})
    return io.BufferedReader(BlobReader(row["pk"], row["size"] or 0), BLOB_CHUNK)


def stream_size(fh: IO[bytes]) -> int:
    """The size of what an opened backup will give (a file, a database copy)."""
    here = fh.tell()
    end = fh.seek(0, io.SEEK_END)
    fh.seek(here)
    return end


def open_backup(backup: Backup) -> IO[bytes]:
    """A binary file object of a backup the database knows (never a path from a request):
    a live one through eventstore, an archived one from the archive store. No symlinks."""
    if backup.state == Backup.State.ARCHIVED:
        try:
            blob = _open_blob(backup)
        except OSError as exc:  # the row went away or shrank between the queries
            raise FilesUnavailable(
                gettext("%(name)s cannot be read: %(error)s") % {"name": backup.name, "error": exc.strerror or exc}
            ) from None
        if blob is not None:  # kept in the database: any host can serve it
            return blob
        here = local_host().name
        if backup.module.host != here:
            raise FilesUnavailable(
                gettext("the archive is on host %(host)s; this dashboard runs on %(here)s")
                % {"host": backup.module.host, "here": here}
            )
        path = archived_backup_path(backup)
        try:
            return open_nofollow_file(path)
        except OSError as exc:
            raise FilesUnavailable(
                gettext("%(name)s cannot be read from the archive: %(error)s")
                % {"name": backup.name, "error": exc.strerror or exc}
            ) from None
    if backup.state != Backup.State.LIVE:
        raise FilesUnavailable(
            gettext("the backup is %(state)s, not in the live folder") % {"state": backup.get_state_display()}
        )
    module = live_module(backup.module)
    try:
        return module.open_backup(backup.name)
    except (InvalidName, OutsideRoot) as exc:
        raise FilesUnavailable(str(exc)) from None
    except (FileNotFoundError, EventStoreError):
        raise FilesUnavailable(gettext("%(name)s is no longer in the live folder") % {"name": backup.name}) from None
    except OSError as exc:
        raise FilesUnavailable(
            gettext("%(name)s cannot be read: %(error)s") % {"name": backup.name, "error": exc.strerror or exc}
        ) from None


def open_nofollow_file(path: Path) -> IO[bytes]:
    """A file under a confined root opened for reading, never through a symlink."""
    return os.fdopen(open_nofollow(path), "rb")
