"""Exceptions raised by eventstore. Every message is one line, fit for an operator's terminal."""

from __future__ import annotations


class EventStoreError(Exception):
    """Base class: something the caller can report in one line."""


class RootError(EventStoreError):
    """The data root is missing, not a directory, or not readable."""


class InvalidName(EventStoreError, ValueError):
    """A branch, module or file name breaks the path rules (``/``, ``..``, NUL, too long...)."""


class StoreBusy(EventStoreError):
    """The module lock could not be taken within the timeout."""


class ConcurrentModification(EventStoreError):
    """A file changed under us (a writer that does not take our lock); nothing was overwritten."""


class CorruptEntry(EventStoreError, ValueError):
    """An event passed to ``append_event`` cannot be written (not an object, not JSON-serialisable)."""


class OutsideRoot(EventStoreError):
    """A symlink on the way to a module's folder leads outside the data root: never followed,
    neither for reading nor for writing (``check()`` reports it as ``unreadable``)."""
