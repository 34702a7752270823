"""The store host this process works for: its name and its data root.

A module's identity includes its host, and a job runs on its host's queue, so every part of a
process (the scan, the jobs, the pages that read files) must agree on which host it is and
which folder it watches. By default that is ``OPSDASH_HOST_NAME`` and ``OPSDASH_DATA_ROOT``;
``manage.py agent --host NAME --data-root PATH`` (and ``scan --data-root``) make it another one
for the whole process with :func:`serving`, so that the jobs it runs read the same folder its
scans do. A web-only process has no data root (``data_root`` is None).
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from django.conf import settings

from eventstore import EventStore
from eventstore.errors import RootError


@dataclass(frozen=True)
class LocalHost:
    name: str
    data_root: Path | None

    def open_store(self) -> EventStore:
        """This host's event store; RootError (one line) when it has no usable data root."""
        if self.data_root is None:
            raise RootError("OPSDASH_DATA_ROOT is not set (this process watches no data root)")
        return EventStore(self.data_root, temp_grace=settings.OPSDASH_TEMP_GRACE_SECONDS)


_lock = threading.Lock()
_serving: LocalHost | None = None


def local_host() -> LocalHost:
    """The host this process works for (see the module docstring)."""
    serving = _serving
    if serving is not None:
        return serving
    return LocalHost(settings.OPSDASH_HOST_NAME, settings.OPSDASH_DATA_ROOT)


@contextmanager
def serving(name: str | None = None, data_root: str | Path | None = None) -> Iterator[LocalHost]:
    """Work as host ``name`` on ``data_root`` (each defaulting to the settings) in every thread
    of this process until the block ends: the scan, the worker and its jobs all see it."""
    global _serving
    default = local_host()
    host = LocalHost(name or default.name, Path(data_root).expanduser() if data_root else default.data_root)
    with _lock:
        previous, _serving = _serving, host
    try:
        yield host
    finally:
        with _lock:
            _serving = previous
