"""The health vocabulary: one list of finding codes and severities, used everywhere."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field, fields
from typing import Any

import orjson

SEVERITIES = ("info", "warning", "critical")
STATUSES = ("healthy", "warning", "critical")
STATUS_FOR_SEVERITY = {"info": "healthy", "warning": "warning", "critical": "critical"}

# code -> (default severity, meaning)
CODES: dict[str, tuple[str, str]] = {
    "meta_corrupt": ("critical", "meta is not valid JSON"),
    "meta_invalid": ("critical", "meta is valid JSON but not a usable meta"),
    "meta_missing": ("warning", "the log has events but there is no meta"),
    "meta_drift": ("warning", "meta disagrees with the log"),
    "log_torn_tail": ("warning", "the log ends in an incomplete line"),
    "log_bad_line": ("critical", "a complete line in the log does not parse as an event"),
    "log_sequence_duplicate": ("warning", "two events share a sequence number"),
    "log_sequence_gap": ("warning", "sequence numbers skip"),
    "temp_orphan": ("info", "a temp file of an interrupted atomic write"),
    "backup_present": ("info", "backups of a damaged meta sit in the live folder"),
    "unreadable": ("critical", "a file could not be read"),
}


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
    that clash with the fixed ones (e.g. a parse error's ``message``) are kept as ``error_<key>``."""
    detail = {f"error_{k}" if k in ("code", "severity", "message") else k: v for k, v in detail.items()}
    return Finding(code, severity or CODES[code][0], text, detail)


def status_of(findings: list[Finding]) -> str:
    """A module's status: its worst severity mapped to healthy / warning / critical."""
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
    # JSON-serialisable facts to pass as ``check(previous=...)`` next time (incremental scan).
    state: dict[str, Any] | None = None
    bytes_read: int = 0

    def to_dict(self) -> dict[str, Any]:
        return {"status": self.status, "findings": [f.to_dict() for f in self.findings], "stats": self.stats.to_dict()}
