"""The health vocabulary: one list of finding codes and severities, used everywhere."""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from types import MappingProxyType
from typing import Any

import orjson

from . import shapes

SEVERITIES = ("info", "warning", "critical")
STATUSES = ("healthy", "warning", "critical")
STATUS_FOR_SEVERITY = {"info": "healthy", "warning": "warning", "critical": "critical"}
# How bad a status is (worse is higher), and so the exit code of every command that checks (the
# CLI's check and show, the dashboard's manage.py scan): 0 healthy, 1 warning, 2 critical.
STATUS_RANK: Mapping[str, int] = MappingProxyType({status: rank for rank, status in enumerate(STATUSES)})


@dataclass(frozen=True, slots=True)
class DetailKey:
    """One key of a finding's detail: its name, the shape of its value (a ``shapes.SHAPES``
    name), whether every finding of the code carries it, and what it says."""

    name: str
    shape: str
    required: bool
    meaning: str


@dataclass(frozen=True, slots=True)
class FindingSpec:
    """One finding code: its default severity, what it means, and the detail keys it carries
    (in the order the store writes them). No other key is ever written (``make`` refuses one)."""

    code: str
    severity: str
    meaning: str
    detail: tuple[DetailKey, ...]

    def keys(self) -> frozenset[str]:
        return frozenset(k.name for k in self.detail)

    def problems(self, detail: dict[str, Any]) -> list[str]:
        """How ``detail`` breaks this declaration: a key it does not declare, a required key
        missing, a value of another shape. Empty when it conforms."""
        declared = {k.name: k for k in self.detail}
        out = [f"{self.code}: undeclared detail key {name!r}" for name in detail if name not in declared]
        for key in self.detail:
            if key.name not in detail:
                if key.required:
                    out.append(f"{self.code}: detail key {key.name!r} missing")
            elif not shapes.conforms(detail[key.name], key.shape):
                out.append(f"{self.code}: {key.name} is not a {key.shape}: {detail[key.name]!r:.80}")
        return out


def gettext_noop(text: str) -> str:
    """Marks a meaning for the dashboard's translation catalog (Django's makemessages finds this
    name, as xgettext's keyword); the library itself speaks English and needs no Django."""
    return text


def _spec(code: str, severity: str, meaning: str, *detail: tuple[str, str, bool, str]) -> FindingSpec:
    return FindingSpec(code, severity, meaning, tuple(DetailKey(*d) for d in detail))


_FILES = ("files", "list of strings", True, "their names (the first 100)")
_COUNT = ("count", "count", True, "how many")

# The vocabulary of DESIGN.md, one declaration per code: every layer reads this table.
FINDING_SPECS: Mapping[str, FindingSpec] = MappingProxyType(
    {
        s.code: s
        for s in (
            _spec(
                "meta_corrupt",
                "critical",
                gettext_noop("meta is not valid JSON"),
                ("error_message", "string", True, "the JSON parser's words (English)"),
                ("pos", "count", True, "character offset of the error in the text (bad bytes read as U+FFFD)"),
                ("line", "count", True, "1-based line of the error"),
                ("col", "count", True, "1-based column of the error"),
                ("byte", "count or null", True, "byte offset of the error, when known"),
                ("size", "count", True, "the meta file's size in bytes"),
            ),
            _spec(
                "meta_invalid",
                "critical",
                gettext_noop("meta is valid JSON but not a usable meta"),  # or warning: see meta.problems
                ("type", "string", False, "not an object: what it is (list, str, int, float, bool or null)"),
                ("key", "string", False, "the meta key with a wrong type or value"),
                ("value", "scalar", False, "its value (totalEvents; branchId/moduleId naming another folder)"),
                ("size", "count", False, "too large: the meta file's size in bytes"),
                ("limit", "count", False, "too large: the largest meta read, in bytes"),
            ),
            _spec(
                "meta_missing",
                "warning",
                gettext_noop("the log has events but there is no meta"),
                ("log_events", "count", True, "events in the log"),
            ),
            _spec(
                "meta_drift",
                "warning",
                gettext_noop("meta disagrees with the log"),
                ("meta_total_events", "count", True, "the meta's totalEvents"),
                ("log_events", "count", True, "events in the log"),
                ("log_max_sequence", "count", True, "the highest sequence in the log"),
                ("expected_total_events", "count", True, "what totalEvents must be: max(events, highest sequence)"),
                ("meta_last_event_id", "scalar", True, "the meta's lastEventId"),
                ("log_last_event_id", "JSON value", True, "the id of the log's last event"),
            ),
            _spec(
                "log_torn_tail",
                "warning",
                gettext_noop("the log ends in an incomplete line"),
                ("offset", "count", True, "byte offset where the last line starts"),
                ("length", "count", True, "its length in bytes"),
                ("line", "count", True, "its 1-based line number"),
                ("parses", "boolean", True, "true: a complete event only missing its newline"),
            ),
            _spec(
                "log_bad_line",
                "critical",  # a warning when every bad line is JSON but not an object (Node reads past them)
                gettext_noop("a complete line in the log does not parse as an event"),
                _COUNT,
                (
                    "lines",
                    "list of bad lines",
                    True,
                    "the first 100: line, byte offset, the parser's error, the line's start",
                ),
            ),
            _spec(
                "log_changed_in_place",
                "critical",
                gettext_noop("bytes of the log already read changed in place (not by an append)"),
                ("segments", "count", True, "how many checkpointed segments changed"),
                (
                    "ranges",
                    "list of [first, last] count pairs",
                    True,
                    "the first and last byte of each changed segment (segment granularity)",
                ),
                ("intact_at", "string", True, "when these bytes were last found intact (ISO-8601 UTC)"),
                ("found_at", "string", True, "when the change was first found (ISO-8601 UTC)"),
            ),
            _spec(
                "log_sequence_duplicate",
                "warning",
                gettext_noop("two events share a sequence number"),
                _COUNT,
                ("sequences", "list of counts", True, "the repeated sequence numbers (the first 100)"),
            ),
            _spec(
                "log_sequence_gap",
                "warning",
                gettext_noop("sequence numbers skip"),
                _COUNT,
                ("gaps", "list of [first, last] count pairs", True, "the missing ranges (the first 100)"),
            ),
            _spec("temp_orphan", "info", gettext_noop("a temp file of an interrupted atomic write"), _FILES, _COUNT),
            _spec(
                "backup_present",
                "info",
                gettext_noop("backups of a damaged meta sit in the live folder"),
                _FILES,
                _COUNT,
            ),
            _spec(
                "unreadable",
                "critical",
                gettext_noop("a file could not be read"),
                ("file", "string", False, "what could not be read (a file name, or the folder's path)"),
                ("reason", "string", True, "why (the OS's words, English)"),
            ),
        )
    }
)

# code -> (default severity, meaning)
CODES: dict[str, tuple[str, str]] = {code: (spec.severity, spec.meaning) for code, spec in FINDING_SPECS.items()}


@dataclass(slots=True)
class Finding:
    code: str
    severity: str
    message: str
    detail: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.code not in CODES:
            raise ValueError(f"unknown finding code {self.code!r}")
        if self.severity not in SEVERITIES:
            raise ValueError(f"unknown severity {self.severity!r}")

    def to_dict(self) -> dict[str, Any]:
        # The message may quote a value read from a damaged file ("\ud800" parses as a lone surrogate).
        out = {"code": self.code, "severity": self.severity, "message": plain(self.message)}
        for key, value in self.detail.items():
            out.setdefault(key, plain(value))
        return out


_SURROGATE = re.compile("[\ud800-\udfff]")
PLAIN_TEXT_LIMIT = 200


def plain(value: Any) -> Any:
    """``value`` if any JSON encoder takes it (orjson too: integers within 64 bits, no lone
    surrogates, nesting up to 255 levels), else a text that shows it. Details and stats carry
    values read from damaged files; storing a finding must not fail on them."""
    try:
        orjson.dumps(value)
        return value
    except TypeError:
        pass
    if isinstance(value, str):
        return _SURROGATE.sub("\ufffd", value)
    try:
        text = json.dumps(value, ensure_ascii=True, default=repr)
    except (ValueError, RecursionError):
        text = f"<{type(value).__name__}>"
    return text if len(text) <= PLAIN_TEXT_LIMIT else text[: PLAIN_TEXT_LIMIT - 3] + "..."


def make(code: str, text: str, severity: str | None = None, **detail: Any) -> Finding:
    """A finding with the code's default severity unless ``severity`` is given. Detail keys
    that clash with the fixed ones (e.g. a parse error's ``message``) are kept as ``error_<key>``.
    Raises ValueError for a detail key the code does not declare in ``FINDING_SPECS`` (the
    tests check the shapes of every finding the demo and the fuzzers produce)."""
    detail = {f"error_{k}" if k in ("code", "severity", "message") else k: v for k, v in detail.items()}
    spec = FINDING_SPECS.get(code)
    if spec is None:
        raise ValueError(f"unknown finding code {code!r}")
    if not spec.keys().issuperset(detail):
        raise ValueError(f"{code} declares no detail key {sorted(set(detail) - spec.keys())}")
    return Finding(code, severity or spec.severity, text, detail)


def status_of(findings: list[Finding]) -> str:
    """A module's status: its worst severity mapped to healthy / warning / critical."""
    if not findings:
        return "healthy"
    worst = max((SEVERITIES.index(f.severity) for f in findings), default=0)
    return STATUS_FOR_SEVERITY[SEVERITIES[worst]]


@dataclass(slots=True)
class ModuleStats:
    log_exists: bool = False
    log_size: int = 0
    log_events: int = 0
    log_bad_lines: int = 0
    log_max_sequence: int = 0
    log_last_event_id: Any = None
    log_last_event_at: Any = None
    meta_exists: bool = False
    meta_size: int = 0
    meta_valid: bool = False
    meta_total_events: int | None = None
    meta_last_event_id: Any = None
    backups: int = 0
    temp_files: int = 0

    def to_dict(self) -> dict[str, Any]:
        return {f.name: plain(getattr(self, f.name)) for f in fields(self)}  # asdict would recurse into values


@dataclass(slots=True)
class Health:
    status: str
    findings: list[Finding]
    stats: ModuleStats
    # The JSON form of eventstore.state.CheckState (plain JSON values): pass it back as
    # ``check(previous=...)`` next time (incremental scan); equal files give an equal state.
    state: dict[str, Any] | None = None
    bytes_read: int = 0  # every byte this check read: log, meta and backups
    # When the log was last read in full and checked against its checkpoints (epoch seconds;
    # None: never): set by a full read, carried forward by the incremental checks.
    verified_at: float | None = None
    full: bool = False  # this check read the meta, the whole log and the backups

    def to_dict(self) -> dict[str, Any]:
        return {"status": self.status, "findings": [f.to_dict() for f in self.findings], "stats": self.stats.to_dict()}
