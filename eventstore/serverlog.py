"""Read the Node server's own logs (journald or pm2 text) for its meta recoveries.

Each recovery the Node server attempted becomes a :class:`Recovery` with its time, the meta
path (and so branch/module), the backup it made, the event count, and whether it worked.
Streaming: any log size in constant memory. Never raises on odd input; lines that are not
``[eventStore][loadMeta]`` messages are ignored.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field, fields
from datetime import UTC, datetime, timedelta, timezone
from pathlib import PurePosixPath
from typing import Any

from . import layout

TAG = "[eventStore][loadMeta]"
MAX_LINES_KEPT = 12
MAX_LINE = 2000

_ISO = re.compile(
    r"(?P<date>\d{4}-\d{2}-\d{2})[T ](?P<time>\d{2}:\d{2}:\d{2})(?P<frac>\.\d{1,9})?\s?(?P<tz>Z|[+-]\d{2}:?\d{2})?"
)
_SYSLOG = re.compile(
    r"^(?P<mon>Jan|Feb|Mar|Apr|May|Jun|Jul|Aug|Sep|Oct|Nov|Dec) +(?P<day>\d{1,2}) (?P<time>\d{2}:\d{2}:\d{2})(?P<frac>\.\d{1,9})?"
)
_MONTHS = {
    m: i
    for i, m in enumerate(["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"], start=1)
}
_SURROGATE = re.compile("[\ud800-\udfff]")
_PATH_RE = re.compile(r"(?:^|/)(?P<branch>[^/]+)/modules/(?P<module>[^/]+)/live/[^/]+$")


@dataclass(slots=True)
class Recovery:
    """One recovery attempt of the Node server, as its log tells it."""

    line: int  # line number where it starts
    at: datetime | None = None
    path: str | None = None
    branch: str | None = None
    module: str | None = None
    error: str | None = None
    backup: str | None = None  # file name of the backup it made
    backup_path: str | None = None
    size: int | None = None
    events: int | None = None
    outcome: str = "incomplete"  # "recovered" | "failed" | "incomplete"
    reason: str | None = None  # why a recovery failed
    old_build: bool = False  # the build that printed "JSON parse error" and gave up
    lines: list[str] = field(default_factory=list)
    _digest: Any = field(default_factory=hashlib.sha256, repr=False)

    @property
    def fingerprint(self) -> str:
        """Same log text, same fingerprint: reading a log twice records nothing new."""
        return self._digest.hexdigest()

    def to_dict(self) -> dict[str, Any]:
        out = {f.name: getattr(self, f.name) for f in fields(self) if not f.name.startswith("_")}
        out["lines"] = list(self.lines)
        out["at"] = self.at.isoformat() if self.at else None
        out["fingerprint"] = self.fingerprint
        return out


def parse_time(prefix: str, year: int) -> datetime | None:
    """The timestamp in a log line's prefix: ISO-8601 (pm2, journald short-iso) or syslog
    ``Mon DD HH:MM:SS`` (journald short; the year is not printed, so ``year`` is assumed)."""
    m = _ISO.search(prefix)
    try:
        if m:
            tz = UTC
            if m.group("tz") and m.group("tz") != "Z":
                raw = m.group("tz").replace(":", "")
                sign = 1 if raw[0] == "+" else -1
                tz = timezone(sign * timedelta(hours=int(raw[1:3]), minutes=int(raw[3:5])))
            frac = (m.group("frac") or ".0")[1:7].ljust(6, "0")
            dt = datetime.fromisoformat(f"{m.group('date')}T{m.group('time')}").replace(
                microsecond=int(frac), tzinfo=tz
            )
            return dt.astimezone(UTC)
        m = _SYSLOG.search(prefix.lstrip())
        if m:
            frac = (m.group("frac") or ".0")[1:7].ljust(6, "0")
            hh, mm, ss = (int(x) for x in m.group("time").split(":"))
            return datetime(year, _MONTHS[m.group("mon")], int(m.group("day")), hh, mm, ss, int(frac), tzinfo=UTC)
    except (ValueError, OverflowError):  # no such date, or out of range in UTC (year 1 at +05:00)
        return None
    return None


def _set_path(rec: Recovery, path: str) -> None:
    rec.path = path
    m = _PATH_RE.search(path.replace("\\", "/"))
    if m:
        rec.branch, rec.module = m.group("branch"), m.group("module")


def _int(text: str) -> int | None:
    m = re.search(r"\d+", text)
    return int(m.group()) if m else None


def parse(lines: Iterable[str | bytes], year: int | None = None) -> Iterator[Recovery]:
    """Yield every recovery found in a server log, in order."""
    year = year or datetime.now(UTC).year
    current: Recovery | None = None
    for lineno, raw in enumerate(lines, start=1):
        text = raw.decode("utf-8", "replace") if isinstance(raw, bytes) else raw
        text = text.rstrip("\r\n")[:MAX_LINE].replace("\x00", "\ufffd")  # NUL bytes: no text store keeps them
        pos = text.find(TAG)
        if pos < 0:
            continue
        if not isinstance(raw, bytes):  # lone surrogates (text read with surrogateescape) cannot be hashed
            text = _SURROGATE.sub("\ufffd", text)
        prefix, message = text[:pos], text[pos + len(TAG) :].strip()
        starts = message.startswith(("CORRUPTED FILE DETECTED", "JSON parse error:"))
        if starts and current is not None:
            yield _close(current)
            current = None
        if current is None:
            if not starts:
                continue  # a tail of a recovery that began before this log
            current = Recovery(line=lineno, at=parse_time(prefix, year))
        current._digest.update(f"{prefix.strip()}|{message}\n".encode())
        if len(current.lines) < MAX_LINES_KEPT:
            current.lines.append(text)
        if message.startswith("JSON parse error:"):
            current.old_build = True
            current.error = message.split(":", 1)[1].strip()
        elif message.startswith("Error:"):
            current.error = message.split(":", 1)[1].strip()
        elif message.startswith("File path:"):
            _set_path(current, message.split(":", 1)[1].strip())
        elif message.startswith("Corrupted file backed up to:"):
            current.backup_path = message.split(":", 1)[1].strip()
            name = PurePosixPath(current.backup_path.replace("\\", "/")).name
            current.backup = name if layout.backup_kind(name) else None
            if current.backup and current.at is None:
                current.at = layout.backup_time(current.backup)
        elif message.startswith("File size:"):
            current.size = _int(message)
        elif message.startswith("Recovered meta from"):
            current.events = _int(message)
        elif message.startswith("Meta file rebuilt successfully"):
            current.outcome = "recovered"
            yield _close(current)
            current = None
        elif message.startswith("Recovery failed:"):
            current.outcome = "failed"
            current.reason = message.split(":", 1)[1].strip()
            yield _close(current)
            current = None
    if current is not None:
        yield _close(current)


def _close(rec: Recovery) -> Recovery:
    if rec.outcome == "incomplete" and rec.old_build:
        rec.outcome = "failed"
        rec.reason = rec.reason or "this server build does not recover a damaged meta"
    if rec.at is None and rec.backup:
        rec.at = layout.backup_time(rec.backup)
    return rec
