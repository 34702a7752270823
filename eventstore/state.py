"""The state of an incremental check: what ``Module.check`` learned of a module's files, as
typed values, and its JSON form (``Health.state``), which a caller stores and hands back as
``check(previous=...)`` so that the next pass reads only what changed.

The JSON form is versioned (``STATE_VERSION``). Reading it back never raises: an older
version or a malformed value is no state at all, and the next check reads every file whole.
Parts read back and reused unchanged are written out again exactly as they came in, so equal
files give an equal state.

What is checked when, since a warm scan reads one state per module: reading back checks the
shape of every value an unchanged file's findings and figures are made from; the rest (the
table cursors, the bitmap) only when a grown log is resumed from it
(:meth:`LogState.resumable`). A stamp that is not a stamp never equals the file's, so
the file is read again. (Plain dataclasses, used as values, for the same reason: a frozen one
costs several times as much to make.)
"""

from __future__ import annotations

import copy
import operator
from dataclasses import dataclass, field
from typing import Any

from .checkpoints import Checkpoints
from .fileio import Stamp
from .health import FINDING_SPECS, SEVERITIES, Finding
from .log import LogSummary
from .shapes import Malformed

# 2: typed state; the log's bitmap beside its summary; the meta's fields always written.
# 3: the log's checkpoints and a log_changed_in_place finding still reported; the log's
#    fingerprint of its first and last 512 bytes (was 4 KiB).
STATE_VERSION = 3

_META_FIELDS = ("stamp", "ok", "findings", "size", "total", "last_id", "day", "last_at")
_LOG_FIELDS = ("stamp", "fingerprint", "summary", "seen")
_meta_values = operator.itemgetter(*_META_FIELDS)
_log_values = operator.itemgetter(*_LOG_FIELDS)
_INT_OR_NONE = (int, type(None))
_STR_OR_NONE = (str, type(None))
_SCALAR = (str, int, float, bool, type(None))


def _values(value: Any, fields: tuple[str, ...], values: operator.itemgetter) -> tuple[Any, ...]:
    """The part's values in ``fields`` order; Malformed unless it has exactly these fields."""
    if type(value) is not dict or len(value) != len(fields):
        raise Malformed("not a state part")
    try:
        return values(value)
    except KeyError:
        raise Malformed("not a state part") from None


def _stamp(value: Any) -> Stamp | None:
    """A stamp as read back, unchecked but for its length: compared with the file's, one that
    is not a stamp differs (the file is read again); resuming checks it (``Stamp.from_json``)."""
    if value is None:
        return None
    if type(value) is not list or len(value) != 4:
        raise Malformed("not a stamp")
    return tuple.__new__(Stamp, value)


def _finding_to_json(f: Finding) -> dict[str, Any]:
    return {"code": f.code, "severity": f.severity, "message": f.message, "detail": f.detail}


def _finding_from_json(value: Any) -> Finding:
    if type(value) is not dict or value.keys() != {"code", "severity", "message", "detail"}:
        raise Malformed("a finding is {code, severity, message, detail}")
    spec = FINDING_SPECS.get(value["code"]) if type(value["code"]) is str else None
    detail = value["detail"]
    if (
        spec is None
        or value["severity"] not in SEVERITIES
        or type(value["message"]) is not str
        or type(detail) is not dict
    ):
        raise Malformed("not a finding")
    if spec.problems(detail):
        raise Malformed(f"{spec.code}: its detail is not the declared one")
    return Finding(spec.code, value["severity"], value["message"], detail)


@dataclass(slots=True)
class MetaState:
    """What the meta file gave when it had the stamp ``stamp`` (None: it vanished): whether it
    is a usable meta, its findings, its size (None when it could not be read), its totalEvents
    and lastEventId, and its currentDay and lastEventAt (where a rotation files the log)."""

    stamp: Stamp | None
    ok: bool
    findings: tuple[Finding, ...]
    size: int | None = None
    total: int | None = None
    last_id: Any = None  # a JSON scalar (anything else was turned into its text)
    day: str | None = None
    last_at: str | None = None
    _json: dict[str, Any] | None = field(default=None, compare=False, repr=False)  # as read back

    def to_json(self) -> dict[str, Any]:
        if self._json is not None:
            return self._json
        return {
            "stamp": None if self.stamp is None else self.stamp.to_json(),
            "ok": self.ok,
            "findings": [_finding_to_json(f) for f in self.findings],
            "size": self.size,
            "total": self.total,
            "last_id": self.last_id,
            "day": self.day,
            "last_at": self.last_at,
        }

    @classmethod
    def from_json(cls, value: Any) -> MetaState:
        """What :meth:`to_json` wrote; ``Malformed`` for anything else."""
        stamp, ok, findings, size, total, last_id, day, last_at = _values(value, _META_FIELDS, _meta_values)
        if (
            type(ok) is not bool
            or type(findings) is not list
            or type(size) not in _INT_OR_NONE
            or type(total) not in _INT_OR_NONE
            or type(last_id) not in _SCALAR
            or type(day) not in _STR_OR_NONE
            or type(last_at) not in _STR_OR_NONE
            or (size is not None and size < 0)
            or (total is not None and total < 0)
            or (ok and total is None)  # a usable meta counts its events
        ):
            raise Malformed("not a meta state")
        found = tuple(_finding_from_json(f) for f in findings) if findings else ()
        return cls(_stamp(stamp), ok, found, size, total, last_id, day, last_at, value)


@dataclass(slots=True)
class LogState:
    """What the log gave when it had the stamp ``stamp``: its summary, and a fingerprint of its
    first and last 512 bytes (to tell a log that only grew from one rewritten), and the sequence
    bitmap as text (``LogSummary.seen_json``; decoded only to resume)."""

    stamp: Stamp
    fingerprint: str
    summary: LogSummary
    seen: str
    _json: dict[str, Any] | None = field(default=None, compare=False, repr=False)  # as read back

    def to_json(self) -> dict[str, Any]:
        if self._json is not None:
            return self._json
        return {
            "stamp": self.stamp.to_json(),
            "fingerprint": self.fingerprint,
            "summary": self.summary.to_json(),
            "seen": self.seen,
        }

    @classmethod
    def from_json(cls, value: Any) -> LogState:
        """What :meth:`to_json` wrote; ``Malformed`` for anything else (the summary's samples,
        cursors and bitmap are checked when resuming: :meth:`resumable`)."""
        stamp, fingerprint, summary, seen = _values(value, _LOG_FIELDS, _log_values)
        stamp = _stamp(stamp)
        if type(fingerprint) is not str or type(seen) is not str or stamp is None:
            raise Malformed("not a log state")
        return cls(stamp, fingerprint, LogSummary.from_json(summary), seen, value)

    def resumable(self) -> LogSummary:
        """A copy of the summary with its bitmap, every value checked, to extend with the bytes
        appended since; ``Malformed`` when one is not what was written."""
        Stamp.from_json(list(self.stamp))
        summary = LogSummary.from_json(self.summary.to_json(), deep=True)
        return copy.copy(summary).with_seen_json(self.seen)


@dataclass(slots=True)
class CheckState:
    """One module's state after a check: the backups it listed, what the meta and the log
    gave (None: the file was not there, or the log could not be read), the log's checkpoints
    (``checkpoints.Checkpoints``) and the ``log_changed_in_place`` finding reported until it is
    accepted (None: none)."""

    backups: tuple[str, ...]
    meta: MetaState | None = None
    log: LogState | None = None
    checkpoints: Checkpoints | None = None
    changed: Finding | None = None

    def to_json(self) -> dict[str, Any]:
        """The JSON form: ``{"version", "backups", "meta"?, "log"?, "checkpoints"?, "changed"?}``
        (plain JSON values)."""
        out: dict[str, Any] = {"version": STATE_VERSION, "backups": list(self.backups)}
        if self.meta is not None:
            out["meta"] = self.meta.to_json()
        if self.log is not None:
            out["log"] = self.log.to_json()
        if self.checkpoints is not None:
            out["checkpoints"] = self.checkpoints.to_json()
        if self.changed is not None:
            out["changed"] = _finding_to_json(self.changed)
        return out

    @classmethod
    def from_json(cls, value: Any) -> CheckState | None:
        """The state :meth:`to_json` wrote, or None for anything else (another version, a
        malformed value): never raises."""
        if type(value) is not dict or value.get("version") != STATE_VERSION:
            return None
        backups = value.get("backups")
        try:
            if type(backups) is not list or (backups and set(map(type, backups)) != {str}):
                raise Malformed("backups")
            meta = MetaState.from_json(value["meta"]) if "meta" in value else None
            log = LogState.from_json(value["log"]) if "log" in value else None
            cps = Checkpoints.from_json(value["checkpoints"]) if "checkpoints" in value else None
            changed = _finding_from_json(value["changed"]) if "changed" in value else None
            if changed is not None and changed.code != "log_changed_in_place":
                raise Malformed("changed: not a log_changed_in_place finding")
        except (Malformed, TypeError, KeyError, RecursionError):  # Malformed is a ValueError
            return None
        return cls(tuple(backups), meta, log, cps, changed)
