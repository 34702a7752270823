"""Findings in the page's language: the one table of the sentences each code's detail makes.

The store writes each finding's message in English; a page tells it in its own language from
the finding's detail, whose keys and shapes eventstore.health.FINDING_SPECS declares per code.
Each code has its sentences in ``SENTENCES``, the first whose keys are all there (with their
declared shapes) and whose condition holds is the one told. Text from elsewhere (a JSON
parser's error, an OS error) stays as written, marked English; values read from the files are
isolated for right-to-left pages. A detail of a shape no sentence knows gives "" (the page
shows the store's English message instead).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC
from typing import Any

import orjson
from django.utils import timezone
from django.utils.dateparse import parse_datetime
from django.utils.formats import date_format
from django.utils.html import conditional_escape, format_html
from django.utils.safestring import mark_safe
from django.utils.translation import gettext, gettext_lazy, ngettext

from eventstore import meta as metamod
from eventstore import shapes
from eventstore.health import FINDING_SPECS

from .words import number

FIXED_KEYS = ("code", "severity", "message")

# What each code means, in the page's language: FINDING_SPECS' meanings (marked there for the
# catalog with gettext_noop). The store's own message with its positions and numbers is shown
# beside it as it was written (English).
MEANINGS = {code: gettext_lazy(spec.meaning) for code, spec in FINDING_SPECS.items()}


@dataclass(frozen=True)
class Words:
    """How values go into a sentence: marked up (a page) or plain (a title attribute)."""

    html: bool

    def isolated(self, value: Any) -> str:
        text = value if isinstance(value, str) else _json_text(value)
        return format_html('<bdi dir="ltr">{}</bdi>', text) if self.html else text

    def english(self, value: Any) -> str:
        return format_html('<span lang="en" dir="ltr">{}</span>', str(value)) if self.html else str(value)


def _json_text(value: Any) -> str:
    try:
        return orjson.dumps(value).decode()
    except TypeError:  # beyond 64 bits, a lone surrogate, too deep: what the stored JSON holds is safe
        return json.dumps(value, ensure_ascii=True, default=str)[:200]


Values = Callable[[dict[str, Any], Words], dict[str, str]]


@dataclass(frozen=True)
class Sentence:
    needs: tuple[str, ...]  # detail keys that must be there, each with the shape its code declares
    text: Callable[[dict[str, Any]], str]  # the template in the active language (a plural counted by the detail)
    values: Values = lambda f, w: {}
    when: Callable[[dict[str, Any]], bool] = lambda f: True


def _shown(value: Any) -> str:
    return _json_text(value) if value is None or isinstance(value, str | int | float | bool) else str(value)


# Keys of findings the dashboard itself makes, beside those the store declares: a recovery the
# store server did alone (services.scan: the backup it left and that backup's parse error,
# ``file``, ``error``) and what the store server's log told of one (services.ingest: ``outcome``,
# ``events``, ``backup``, ``reason``, ``at``).
DASHBOARD_KEYS: dict[str, dict[str, str]] = {
    "meta_corrupt": {
        "file": "string",
        "error": "string",
        "outcome": "string",
        "events": "count",
        "backup": "string",
        "reason": "string",
        "at": "string",
    }
}

SENTENCES: dict[str, tuple[Sentence, ...]] = {
    "meta_corrupt": (
        Sentence(
            ("file",),
            lambda f: gettext("the store server found the meta damaged, backed it up as %(file)s and rebuilt it"),
            lambda f, w: {"file": w.isolated(f["file"])},
        ),
        Sentence(
            ("outcome", "events"),
            lambda f: ngettext(
                "the store server rebuilt the meta from %(n)s event (its log)",
                "the store server rebuilt the meta from %(n)s events (its log)",
                f["events"],
            ),
            lambda f, w: {"n": number(f["events"])},
            when=lambda f: f["outcome"] == "recovered",
        ),
        Sentence(
            ("outcome", "reason"),
            lambda f: gettext("the store server could not recover the meta (its log): %(reason)s"),
            lambda f, w: {"reason": w.english(f["reason"])},
            when=lambda f: f["outcome"] == "failed",
        ),
        Sentence(
            ("outcome",),
            lambda f: gettext("the store server could not recover the meta (its log gives no reason)"),
            when=lambda f: f["outcome"] == "failed",
        ),
        Sentence(
            ("line", "col", "byte", "error_message"),
            lambda f: gettext("meta is not valid JSON at line %(line)s, column %(col)s (byte %(byte)s): %(error)s"),
            lambda f, w: {
                "line": number(f["line"]),
                "col": number(f["col"]),
                "byte": number(f["byte"]),
                "error": w.english(f["error_message"]),
            },
            when=lambda f: f["byte"] is not None,
        ),
    ),
    "meta_invalid": (
        Sentence(
            ("size", "limit"),
            lambda f: gettext("meta is %(size)s bytes, more than any usable meta (%(limit)s at most)"),
            lambda f, w: {"size": number(f["size"]), "limit": number(f["limit"])},
        ),
        Sentence(("type",), lambda f: gettext("meta is not a JSON object")),
        Sentence(
            ("key", "value"),
            lambda f: gettext("totalEvents is %(value)s, not a whole number of 0 or more"),
            lambda f, w: {"value": w.isolated(_shown(f["value"]))},
            when=lambda f: f["key"] == "totalEvents",
        ),
        Sentence(
            ("key", "value"),
            lambda f: gettext("%(key)s names %(value)s, not this module's folder"),
            lambda f, w: {"key": w.isolated(f["key"]), "value": w.isolated(f["value"])},
            when=lambda f: f["key"] in ("branchId", "moduleId"),
        ),
        Sentence(
            ("key",),
            lambda f: gettext("%(key)s has the wrong type: a string or null is expected"),
            lambda f, w: {"key": w.isolated(f["key"])},
            when=lambda f: f["key"] in metamod.STRING_OR_NULL_KEYS,
        ),
        Sentence(
            ("key",),
            lambda f: gettext("%(key)s is not an object; Node falls back to an empty one"),
            lambda f, w: {"key": w.isolated(f["key"])},
            when=lambda f: f["key"] in metamod.OBJECT_KEYS,
        ),
    ),
    "meta_missing": (
        Sentence(
            ("log_events",),
            lambda f: ngettext(
                "the log has %(n)s event but there is no meta",
                "the log has %(n)s events but there is no meta",
                f["log_events"],
            ),
            lambda f, w: {"n": number(f["log_events"])},
        ),
    ),
    "meta_drift": (
        Sentence(
            ("expected_total_events", "meta_total_events"),
            lambda f: gettext("the meta's last event is %(meta_id)s, the log ends with %(log_id)s"),
            lambda f, w: _drift_values(f, w),
            when=lambda f: f["meta_total_events"] == f["expected_total_events"],
        ),
        Sentence(
            ("expected_total_events",),
            lambda f: gettext(
                "the meta counts %(meta)s events, the log gives %(log)s; the meta's last event is %(meta_id)s, the log ends with %(log_id)s"
            ),
            lambda f, w: _drift_values(f, w),
            when=lambda f: bool(f.get("log_events")) and f.get("meta_last_event_id") != f.get("log_last_event_id"),
        ),
        Sentence(
            ("expected_total_events",),
            lambda f: gettext("the meta counts %(meta)s events, the log gives %(log)s"),
            lambda f, w: _drift_values(f, w),
        ),
    ),
    "log_torn_tail": (
        Sentence(
            ("length", "offset", "line", "parses"),
            lambda f: gettext(
                "the log ends in a complete event without its newline (%(length)s bytes at byte %(offset)s, line %(line)s)"
            ),
            lambda f, w: _torn_values(f),
            when=lambda f: f["parses"],
        ),
        Sentence(
            ("length", "offset", "line"),
            lambda f: gettext(
                "the log ends in an incomplete line (%(length)s bytes at byte %(offset)s, line %(line)s)"
            ),
            lambda f, w: _torn_values(f),
        ),
    ),
    "log_bad_line": (
        Sentence(
            ("count", "lines"),
            lambda f: ngettext(
                "%(n)s line does not parse as an event; the first is line %(line)s: %(error)s",
                "%(n)s lines do not parse as an event; the first is line %(line)s: %(error)s",
                f["count"],
            ),
            lambda f, w: {
                "n": number(f["count"]),
                "line": number(f["lines"][0]["line"]),
                "error": w.english(f["lines"][0]["error"]),
            },
            when=lambda f: bool(f["lines"]),
        ),
    ),
    "log_sequence_duplicate": (
        Sentence(
            ("count", "sequences"),
            lambda f: ngettext(
                "%(n)s event reuses a sequence number already used (e.g. %(examples)s)",
                "%(n)s events reuse a sequence number already used (e.g. %(examples)s)",
                f["count"],
            ),
            lambda f, w: {
                "n": number(f["count"]),
                "examples": w.isolated(", ".join(str(s) for s in f["sequences"][:5])),
            },
        ),
    ),
    "log_sequence_gap": (
        Sentence(
            ("count", "gaps"),
            lambda f: ngettext(
                "%(n)s sequence number is missing; the first gap is %(first)s",
                "%(n)s sequence numbers are missing; the first gap is %(first)s",
                f["count"],
            ),
            lambda f, w: {"n": number(f["count"]), "first": w.isolated(f"{f['gaps'][0][0]}..{f['gaps'][0][1]}")},
            when=lambda f: bool(f["gaps"]),
        ),
    ),
    "log_changed_in_place": (
        Sentence(
            ("segments", "ranges", "intact_at"),
            lambda f: ngettext(
                "%(n)s segment of the log changed after it was read (bytes %(first)s to %(last)s); "
                "it was last found intact on %(intact)s",
                "%(n)s segments of the log changed after they were read (the first: bytes %(first)s to %(last)s); "
                "they were last found intact on %(intact)s",
                f["segments"],
            ),
            lambda f, w: {
                "n": number(f["segments"]),
                "first": number(f["ranges"][0][0]),
                "last": number(f["ranges"][0][1]),
                "intact": w.isolated(_when(f["intact_at"])),
            },
            when=lambda f: bool(f["ranges"]),
        ),
    ),
    "temp_orphan": (
        Sentence(
            ("count",),
            lambda f: ngettext(
                "%(n)s temp file of an interrupted write, older than the grace period",
                "%(n)s temp files of interrupted writes, older than the grace period",
                f["count"],
            ),
            lambda f, w: {"n": number(f["count"])},
        ),
    ),
    "backup_present": (
        Sentence(
            ("count",),
            lambda f: ngettext(
                "%(n)s backup file of past recoveries in the live folder",
                "%(n)s backup files of past recoveries in the live folder",
                f["count"],
            ),
            lambda f, w: {"n": number(f["count"])},
        ),
    ),
    "unreadable": (
        Sentence(
            ("file", "reason"),
            lambda f: gettext("%(file)s could not be read: %(reason)s"),
            lambda f, w: {"file": w.isolated(f["file"]), "reason": w.english(f["reason"])},
        ),
    ),
}


def _drift_values(f: dict[str, Any], w: Words) -> dict[str, str]:
    return {
        "meta": w.isolated(f.get("meta_total_events")),
        "log": number(f["expected_total_events"]),
        "meta_id": w.isolated(f.get("meta_last_event_id")),
        "log_id": w.isolated(f.get("log_last_event_id")),
    }


def _when(iso: str) -> str:
    """An ISO time from a finding in the page's format and time zone (as written if it is not one)."""
    moment = parse_datetime(iso)
    if moment is None:
        return iso
    if timezone.is_naive(moment):
        moment = timezone.make_aware(moment, UTC)
    return date_format(timezone.localtime(moment), "SHORT_DATETIME_FORMAT")


def _torn_values(f: dict[str, Any]) -> dict[str, str]:
    return {"length": number(f["length"]), "offset": number(f["offset"]), "line": number(f["line"])}


def _applies(sentence: Sentence, code: str, detail: dict[str, Any]) -> bool:
    declared = {key.name: key.shape for key in FINDING_SPECS[code].detail} | DASHBOARD_KEYS.get(code, {})
    if not all(k in detail and shapes.conforms(detail[k], declared[k]) for k in sentence.needs):
        return False
    try:
        return bool(sentence.when(detail))
    except (KeyError, IndexError, TypeError):  # a stored detail of another era: no sentence
        return False


def finding_sentence(finding: Any, html: bool = True) -> str:
    """A stored finding (its dict) as a sentence in the page's language, HTML (marked up, the
    rest escaped) or plain; "" when no sentence knows its detail."""
    if not isinstance(finding, dict) or not isinstance(finding.get("code"), str) or finding["code"] not in SENTENCES:
        return ""
    code = finding["code"]
    detail = {k: v for k, v in finding.items() if k not in FIXED_KEYS}
    words = Words(html)
    for sentence in SENTENCES[code]:
        if not _applies(sentence, code, detail):
            continue
        values = sentence.values(detail, words)
        text = sentence.text(detail)
        if not html:
            return str(text) % values
        return mark_safe(conditional_escape(str(text)) % {k: conditional_escape(v) for k, v in values.items()})
    return ""
