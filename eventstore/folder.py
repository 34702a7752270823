"""One module's folder as plain values: where its files are (:class:`ModuleFiles`) and what its
live folder holds (:class:`Listing`). What the checks, the rebuild and the archive work on, so
that none of them needs the store's ``Module`` (which owns the lock and every meta write).

Nothing here writes; :func:`classify` lists a folder and never follows a symlink.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import NamedTuple

from . import layout

# Immutable values as NamedTuples: a scan makes two per module, and a frozen dataclass costs
# four times as much to make (each field set through object.__setattr__).


class Listing(NamedTuple):
    """The store files of a live folder, by role (names only), as one ``scandir`` saw them.
    Symlinks carrying a store file's name are listed apart: never followed."""

    log: bool = False
    meta: bool = False
    backups: tuple[str, ...] = ()
    temps: tuple[str, ...] = ()
    symlinks: tuple[str, ...] = ()

    def holds_store_files(self) -> bool:
        """A log, a meta or a backup (or a symlink named like one): a module to report."""
        return bool(self.log or self.meta or self.backups) or any(
            n in (layout.LOG_NAME, layout.META_NAME) or layout.backup_kind(n) for n in self.symlinks
        )


def classify(live: str) -> Listing:
    """Classify a live folder's files by role; symlinks apart (never followed). Raises OSError
    when the folder cannot be listed."""
    log = meta = False
    backups: list[str] = []
    temps: list[str] = []
    symlinks: list[str] = []
    with os.scandir(live) as it:
        for entry in it:
            name = entry.name
            if name == layout.LOG_NAME or name == layout.META_NAME:
                if entry.is_symlink():
                    symlinks.append(name)
                elif name == layout.LOG_NAME:
                    log = True
                else:
                    meta = True
            elif not name.startswith(_OURS):
                continue  # data.json, events.rejected.log, ...: the Node server's, not ours
            elif layout.backup_kind(name):
                (symlinks if entry.is_symlink() else backups).append(name)
            elif layout.TEMP_RE.match(name):
                (symlinks if entry.is_symlink() else temps).append(name)
    return tuple.__new__(
        Listing, (log, meta, _sorted(backups), _sorted(temps), _sorted(symlinks))
    )  # NamedTuple.__new__, less a call


_OURS = (layout.META_NAME + ".", layout.LOG_NAME + ".")  # what every backup and temp file name starts with


def _sorted(names: list[str]) -> tuple[str, ...]:
    return tuple(sorted(names)) if names else ()


class ModuleFiles(NamedTuple):
    """Where one module's files are: ``<root>/<branch>/modules/<module>/live`` and its history
    folder. Plain strings (the hot paths of a scan), ``Path`` views on demand. The names are
    checked by the path rules when the value is made (:meth:`at`)."""

    branch: str
    name: str
    live: str
    log: str
    meta: str
    history: str

    @classmethod
    def at(cls, root: str, branch: str, name: str) -> ModuleFiles:
        """The files of ``branch``/``name`` under the data root ``root``. Raises InvalidName."""
        return cls.in_folder(layout.module_dir(root, branch, name), branch, name)

    @classmethod
    def in_folder(cls, module_dir: str, branch: str, name: str) -> ModuleFiles:
        """The files of the module folder ``module_dir`` (``<root>/<branch>/modules/<name>``,
        built from names the caller checked, no trailing separator)."""
        # Concatenated, not os.path.join'ed: a scan makes one of these per module.
        live = module_dir + os.sep + layout.LIVE_DIR + os.sep
        history = module_dir + os.sep + os.sep.join(layout.HISTORY_EVENTS)
        return cls(branch, name, live[:-1], live + layout.LOG_NAME, live + layout.META_NAME, history)

    @property
    def live_dir(self) -> Path:
        return Path(self.live)

    @property
    def log_path(self) -> Path:
        return Path(self.log)

    @property
    def meta_path(self) -> Path:
        return Path(self.meta)

    @property
    def history_dir(self) -> Path:
        return Path(self.history)

    def in_live(self, name: str) -> Path:
        """A file of the live folder (``name`` is one the caller listed or checked)."""
        return Path(self.live, name)

    def listing(self) -> Listing:
        """A fresh listing of the live folder (OSError if it cannot be listed)."""
        return classify(self.live)
