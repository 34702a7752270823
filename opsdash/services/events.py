"""The event browser: a module's log (live, or a rotated day of ``history/events/``) read a page
at a time through eventstore.browse, filtered, and masked for who is looking.

Who sees what is decided here, on the server, for the page, the JSON and the export alike:
people with ``opsdash.view_payloads`` (operators, auditors) see whole events; the others see the
envelope (id, sequence, action, table, record key, times) and the payload fields listed in
``OPSDASH_MANAGER_VISIBLE_FIELDS``, and their text search looks only there, so a hidden field
can never be found by searching for its value.
"""

from __future__ import annotations

import csv
import io
import json
import os
from collections.abc import Iterator
from dataclasses import dataclass, replace
from datetime import datetime
from pathlib import Path
from typing import Any

import orjson
from django.conf import settings
from django.http import QueryDict
from django.urls import reverse
from django.utils.dateparse import parse_date, parse_datetime
from django.utils.http import urlencode
from django.utils.translation import gettext

from eventstore import layout
from eventstore.browse import EventFilter, EventPage, EventRow, OffsetIndex, browse, seek

from ..models import ModuleState
from ..words import number
from .audit import csv_cell
from .files import FilesUnavailable, live_module
from .queries import parse_id

VIEW_PAYLOADS = "opsdash.view_payloads"
PAGE_ROWS = 50
CONTEXT_ROWS = 5  # rows shown before a line opened from a finding (?at=)
MAX_TEXT = 200
# The envelope: what everyone who sees the module sees of each event.
ENVELOPE = ("id", "sequence", "action", "table", "branchId", "moduleId", "createdAt", "recordedAt")
SEARCH_SECONDS = 2.0  # a filtered page searches this long, then offers "search further"
LIVE = ""


@dataclass(frozen=True)
class LogFile:
    """One log of a module: the live one (``day`` empty) or a rotated one (``day``: its name
    in history/events/ without ``.log``, as listed: never built from what a user typed)."""

    day: str
    path: Path

    @property
    def label(self) -> str:
        return self.day or "live"


def log_files(module_row: ModuleState) -> list[LogFile]:
    """The live log, then the rotated ones newest first; FilesUnavailable off the store host."""
    module = live_module(module_row)
    if not module.contained():
        raise FilesUnavailable(
            gettext("the module's folder is a symlink that leads outside the data root; not followed")
        )
    out = [LogFile(LIVE, module.log_path)]
    try:
        with os.scandir(module.history_dir) as it:
            names = sorted(e.name for e in it if e.name.endswith(".log") and e.is_file(follow_symlinks=False))
    except FileNotFoundError:
        names = []
    except OSError as exc:
        raise FilesUnavailable(f"{layout.printable(str(module.history_dir))}: {exc.strerror}") from None
    for name in reversed(names):
        if layout.printable(name) == name:  # a name that is not plain text is never offered
            out.append(LogFile(name[: -len(".log")], module.history_dir / name))
    return out


def pick(files: list[LogFile], day: str) -> LogFile | None:
    """The file ``day`` names: a listed name, or a date (its newest file); None when no file is."""
    if not day:
        return files[0]
    for f in files[1:]:
        if f.day == day:
            return f
    for f in files[1:]:
        if f.day.startswith(f"{day}-") and parse_date(day) is not None:
            return f
    return None


@dataclass(frozen=True)
class EventQuery:
    """The browser's URL: which file, which filters, where (a byte-offset cursor and a direction,
    an offset to open highlighted, or a line / sequence / time to go to)."""

    day: str = LIVE
    where: EventFilter = EventFilter()
    cursor: int | None = None
    direction: str = "older"
    at: int | None = None
    goto_line: int | None = None
    goto_sequence: int | None = None
    goto_time: str | None = None

    @classmethod
    def from_query(cls, query: QueryDict, sees_payloads: bool) -> EventQuery:
        text = query.get("q", "").strip()[:MAX_TEXT] or None
        where = EventFilter(
            table=_text(query, "table"),
            action=_text(query, "action"),
            record=_text(query, "record"),
            event=_text(query, "event"),
            sequence=parse_id(query.get("sequence")),
            since=_time(query.get("since")),
            until=_time(query.get("until")),
            text=text,
            text_fields=None if sees_payloads else visible_fields(),
        )
        return cls(
            day=query.get("day", "").strip()[:200],
            where=where,
            cursor=parse_id(query.get("cursor")),
            direction="newer" if query.get("dir") == "newer" else "older",
            at=parse_id(query.get("at")),
            goto_line=parse_id(query.get("goto_line")),
            goto_sequence=parse_id(query.get("goto_sequence")),
            goto_time=_time(query.get("goto_time")),
        )

    def filters(self) -> dict[str, str]:
        """The filters as URL parameters (the day and the filters; not the position)."""
        w = self.where
        values = {
            "day": self.day,
            "table": w.table,
            "action": w.action,
            "record": w.record,
            "event": w.event,
            "sequence": w.sequence,
            "since": w.since,
            "until": w.until,
            "q": w.text,
        }
        return {k: str(v) for k, v in values.items() if v not in (None, "")}


def _text(query: QueryDict, key: str) -> str | None:
    return query.get(key, "").strip()[:MAX_TEXT] or None


def _time(value: str | None) -> str | None:
    """An ISO date or date-time from the URL (a date means its midnight), else None."""
    value = (value or "").strip()[:40]
    if not value:
        return None
    try:
        moment = parse_datetime(value)
        day = None if moment else parse_date(value)
    except ValueError:
        return None
    if moment is None and day is None:
        return None
    return (moment or datetime.combine(day, datetime.min.time())).isoformat()


def visible_fields() -> tuple[str, ...]:
    return tuple(settings.OPSDASH_MANAGER_VISIBLE_FIELDS)


@dataclass(frozen=True)
class Result:
    """One request's page: the rows to show (newest first), the highlighted offset, and the
    cursors (None: nothing further that way)."""

    page: EventPage
    rows: list[EventRow]
    highlight: int | None
    older: int | None
    newer: int | None


def read(log: LogFile, query: EventQuery, index: OffsetIndex | None) -> Result:
    """The page ``query`` asks for, with bounded work (see eventstore.browse)."""
    where = query.where
    target = _goto(log, query, index)
    if target is not None:
        before = browse(log.path, cursor=target, direction="older", limit=CONTEXT_ROWS, where=where, index=index)
        after = browse(
            log.path, cursor=target, direction="newer", limit=PAGE_ROWS - CONTEXT_ROWS, where=where, index=index
        )
        rows = list(reversed(after.rows)) + before.rows
        page = replace(after, rows=rows, bytes_read=after.bytes_read + before.bytes_read)
        return Result(page, rows, _highlight(after, target, query), before.older, after.newer)
    page = browse(
        log.path,
        cursor=query.cursor,
        direction=query.direction,
        limit=PAGE_ROWS,
        where=where,
        index=index,
        budget_seconds=SEARCH_SECONDS,
    )
    rows = page.rows if query.direction == "older" else list(reversed(page.rows))
    return Result(page, rows, None, page.older, page.newer)


def _goto(log: LogFile, query: EventQuery, index: OffsetIndex | None) -> int | None:
    if query.at is not None:
        return query.at
    if query.goto_line is None and query.goto_sequence is None and query.goto_time is None:
        return None
    if index is not None:
        return seek(log.path, index, line=query.goto_line, sequence=query.goto_sequence, time=query.goto_time)
    if query.goto_sequence is not None:  # no index (a rotated log): the first event of that sequence
        found = browse(log.path, cursor=0, direction="newer", limit=1, where=EventFilter(sequence=query.goto_sequence))
        return found.rows[0].offset if found.rows else None
    return None


def _highlight(page: EventPage, target: int, query: EventQuery) -> int | None:
    """The row the link pointed at: the line or sequence gone to, else the one starting at (or
    containing) the offset."""
    for row in page.rows:
        if query.goto_sequence is not None and row.sequence == query.goto_sequence:
            return row.offset
        if query.goto_line is not None and row.line == query.goto_line:
            return row.offset
    for row in page.rows:
        if row.offset <= target < row.offset + max(row.length, 1):
            return row.offset
    return page.rows[0].offset if page.rows else None


def index_of(module_row: ModuleState, log: LogFile) -> OffsetIndex | None:
    """The live log's sparse offset index, as the scan keeps it (rotated logs have none)."""
    if log.day or not module_row.event_index:
        return None
    return OffsetIndex.from_json(module_row.event_index)


# -- what a person sees of an event -----------------------------------------------------------


def shown(row: EventRow, sees_payloads: bool) -> dict[str, Any]:
    """The row as the page, the JSON and the export give it: position, envelope, and the event
    (whole, or masked to the envelope and the visible fields)."""
    out = {
        "line": row.line,
        "offset": row.offset,
        "length": row.length,
        "sequence": row.sequence,
        "id": row.id,
        "action": row.action,
        "table": row.table,
        "record_key": row.record_key,
        "created_at": row.created_at,
        "recorded_at": row.recorded_at,
        "error": row.error,
        "torn": row.torn,
    }
    if row.event is None:
        out["event"] = None
        out["preview"] = row.preview.decode("utf-8", "replace") if sees_payloads else None
        return out
    out["event"] = row.event if sees_payloads else masked(row.event)
    out["hidden_fields"] = 0 if sees_payloads else _hidden_count(row.event)
    return out


def masked(event: dict[str, Any]) -> dict[str, Any]:
    """The envelope and the visible dotted fields of ``event``; nothing else."""
    out: dict[str, Any] = {k: event[k] for k in ENVELOPE if k in event}
    for path in visible_fields():
        value, found = _dig(event, path)
        if found:
            out[path] = value
    return out


def _dig(event: dict[str, Any], path: str) -> tuple[Any, bool]:
    value: Any = event
    for part in path.split("."):
        if not isinstance(value, dict) or part not in value:
            return None, False
        value = value[part]
    return value, True


def _hidden_count(event: dict[str, Any]) -> int:
    return sum(1 for k in event if k not in ENVELOPE)


def pretty(value: Any) -> str:
    """JSON pretty-printed for the page (the template escapes it)."""
    try:
        return orjson.dumps(value, option=orjson.OPT_INDENT_2).decode()
    except TypeError:  # beyond 64 bits, a lone surrogate: Python's encoder takes what Node wrote
        return json.dumps(value, indent=2, ensure_ascii=False, default=str)


# -- the export ---------------------------------------------------------------------------------

EXPORT_COLUMNS = ("line", "offset", "sequence", "id", "action", "table", "record_key", "created_at", "event")


def every_match(log: LogFile, where: EventFilter, index: OffsetIndex | None) -> Iterator[EventRow]:
    """Every matching row from the start of the file, a page at a time (flat memory)."""
    cursor: int | None = 0
    while cursor is not None:
        page = browse(log.path, cursor=cursor, direction="newer", limit=500, where=where, index=index)
        yield from page.rows
        cursor = page.resume if not page.complete else page.newer


def stream_jsonl(rows: Iterator[EventRow], sees_payloads: bool) -> Iterator[bytes]:
    for row in rows:
        yield orjson.dumps(shown(row, sees_payloads), default=str) + b"\n"


def stream_csv(rows: Iterator[EventRow], sees_payloads: bool) -> Iterator[str]:
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(EXPORT_COLUMNS)
    for row in rows:
        data = shown(row, sees_payloads)
        event = data["event"]
        data["event"] = orjson.dumps(event, default=str).decode() if event is not None else data.get("preview") or ""
        writer.writerow([csv_cell(data[c]) for c in EXPORT_COLUMNS])
        yield buffer.getvalue()
        buffer.seek(0)
        buffer.truncate()


# -- from a finding to the lines it is about ----------------------------------------------------

LINKS_PER_FINDING = 5


def finding_links(module_row: ModuleState, finding: Any) -> list[tuple[str, str]]:
    """(text, URL) of the event browser opened where a finding points: a bad line or the torn
    tail highlighted, the events sharing a duplicated sequence, the event before a gap, the
    event the meta names as its last."""
    if not isinstance(finding, dict):
        return []
    base = reverse("opsdash:module_events", kwargs=module_row.key)
    code = finding.get("code")
    out: list[tuple[str, str]] = []
    if code == "log_bad_line":
        for line in [x for x in finding.get("lines") or [] if isinstance(x, dict)][:LINKS_PER_FINDING]:
            if _count(line.get("offset")) and _count(line.get("line")):
                out.append((gettext("line %(n)s") % {"n": number(line["line"])}, f"{base}?at={line['offset']}"))
    elif code == "log_torn_tail" and _count(finding.get("offset")):
        out.append((gettext("the torn tail"), f"{base}?at={finding['offset']}"))
    elif code == "log_sequence_duplicate":
        for n in [x for x in finding.get("sequences") or [] if _count(x)][:LINKS_PER_FINDING]:
            out.append((gettext("the events of sequence %(n)s") % {"n": number(n)}, f"{base}?sequence={n}"))
    elif code == "log_sequence_gap":
        for gap in (finding.get("gaps") or [])[:LINKS_PER_FINDING]:
            if isinstance(gap, list) and len(gap) == 2 and _count(gap[0]) and gap[0] > 1:
                text = gettext("before sequence %(n)s") % {"n": number(gap[0])}
                out.append((text, f"{base}?goto_sequence={gap[0] - 1}"))
    elif code == "meta_drift" and isinstance(finding.get("meta_last_event_id"), str | int):
        query = urlencode({"event": finding["meta_last_event_id"]})
        out.append((gettext("the event the meta stopped at"), f"{base}?{query}"))
    return out


def _count(value: Any) -> bool:
    return type(value) is int and value >= 0
