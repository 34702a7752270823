"""eventstore: the Mishkah OS event store on disk, safe under concurrent writers and crashes.

Pure Python (standard library + orjson); never imports Django.
"""

from .errors import (
    ConcurrentModification,
    CorruptEntry,
    EventStoreError,
    InvalidName,
    OutsideRoot,
    RootError,
    StoreBusy,
)
from .health import CODES, SEVERITIES, STATUSES, Finding, Health, ModuleStats
from .rebuild import RebuildReport
from .store import BackupInfo, EventStore, FilePreview, Module, RefusedFolder

__all__ = [
    "CODES",
    "SEVERITIES",
    "STATUSES",
    "BackupInfo",
    "ConcurrentModification",
    "CorruptEntry",
    "EventStore",
    "EventStoreError",
    "FilePreview",
    "Finding",
    "Health",
    "InvalidName",
    "Module",
    "ModuleStats",
    "OutsideRoot",
    "RebuildReport",
    "RefusedFolder",
    "RootError",
    "StoreBusy",
]
