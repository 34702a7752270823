from __future__ import annotations

import dataclasses
import json
from typing import Any

import orjson
from django import template
from django.utils.formats import number_format
from django.utils.html import conditional_escape, escape, format_html
from django.utils.safestring import mark_safe
from django.utils.translation import gettext_lazy as _
from django.utils.translation import ngettext

from eventstore import meta as metamod

from ..actions import ACTIONS
from ..models import Backup, Job, ServerRecovery, Status
from ..services import jobs
from ..services.access import access_of
from ..services.heartbeats import troubled_hosts
from ..words import number

register = template.Library()

FINDING_KEYS = {"code", "severity", "message"}


@register.simple_tag
def qs(filters: Any, **changes: Any) -> str:
    """The query string ("?...") of the current filters with ``changes`` applied."""
    query = filters.as_query(**{key: "" if value is None else str(value) for key, value in changes.items()})
    return f"?{query}" if query else "?"


@register.simple_tag
def options(values: Any, selected: Any) -> str:
    """``<option>`` elements for ``values`` (value and text the same), ``selected`` marked: one
    Python pass instead of a template loop with an ``if`` per option."""
    out = []
    for value in values:
        text = escape(value)
        out.append(
            f'<option value="{text}" selected>{text}</option>'
            if value == selected
            else f'<option value="{text}">{text}</option>'
        )
    return mark_safe("".join(out))


@register.filter
def finding_detail(finding: dict[str, Any]) -> list[tuple[str, str]]:
    """A finding's machine detail as (key, text) pairs, lists and objects as compact JSON."""
    out = []
    for key, value in finding.items():
        if key in FINDING_KEYS:
            continue
        out.append((key, _isolated(value, html=False)))
    return out


# --- Words for values: a stored value (a status, a state, an outcome) shown in the page's language.
# The value itself stays in the page where it is data (class names, links, the CSV, the API).

OUTCOMES = {
    "ok": _("ok"),
    "failed": _("failed"),
    "interrupted": _("interrupted"),
    "mismatch": _("mismatch"),
    "refused": _("refused"),
}
SEVERITIES = {"info": _("info"), "warning": _("warning"), "critical": _("critical")}
BACKUP_KINDS = {"meta": _("meta backup"), "log-fragment": _("torn log fragment")}

# What each finding code means (eventstore.health.CODES, in the page's language). The store's own
# message with its positions and numbers is shown beside it as it was written (English).
FINDINGS = {
    "meta_corrupt": _("meta is not valid JSON"),
    "meta_invalid": _("meta is valid JSON but not a usable meta"),
    "meta_missing": _("the log has events but there is no meta"),
    "meta_drift": _("meta disagrees with the log"),
    "log_torn_tail": _("the log ends in an incomplete line"),
    "log_bad_line": _("a complete line in the log does not parse as an event"),
    "log_sequence_duplicate": _("two events share a sequence number"),
    "log_sequence_gap": _("sequence numbers skip"),
    "temp_orphan": _("a temp file of an interrupted atomic write"),
    "backup_present": _("backups of a damaged meta sit in the live folder"),
    "unreadable": _("a file could not be read"),
}

VOCABULARY: dict[str, dict[str, Any]] = {
    "status": dict(Status.choices),
    "severity": SEVERITIES,
    "backup_state": dict(Backup.State.choices),
    "backup_kind": BACKUP_KINDS,
    "job_status": dict(Job.Status.choices),
    "job_kind": {kind: action.title for kind, action in ACTIONS.items()},
    "outcome": OUTCOMES,
    "recovery": dict(ServerRecovery.Outcome.choices),
    "finding": FINDINGS,
}


@register.filter
def label(value: Any, vocabulary: str) -> Any:
    """``{{ m.status|label:"status" }}``: the word for a stored value in the page's language
    (the value itself when the vocabulary does not know it)."""
    return VOCABULARY[vocabulary].get(value, value)


register.filter("number", number)


@register.simple_tag
def job_summary(job: Any) -> str:
    """What a finished job did, in the page's language, from its recorded result."""
    result = job.result if isinstance(job.result, dict) else {}
    action = ACTIONS.get(job.kind)
    return action.describe(result) if action else str(result.get("summary", ""))


@register.filter
def waits_for_a_worker(job: Any) -> bool:
    """``{% if job|waits_for_a_worker %}``: queued, and no worker of its host is alive to run it."""
    return jobs.waits_for_a_worker(job)


@register.simple_tag
def job_progress(job: Any) -> str:
    """A running job's progress in the page's language, from its recorded progress data."""
    info = job.progress_info if isinstance(job.progress_info, dict) else {}
    done, total = info.get("done"), info.get("total")
    if not isinstance(done, int | float) or not isinstance(total, int | float):
        return ""
    if info.get("unit") == "bytes":
        return _("%(done)s MB of %(total)s MB of the log read") % {
            # number_format cuts decimals off; round first (8.06 MB is "8.1").
            "done": number_format(round(done / 1_000_000, 1), 1, force_grouping=True),
            "total": number_format(round(total / 1_000_000, 1), 1, force_grouping=True),
        }
    if info.get("unit") == "modules":
        values = {"done": number(done), "total": number(total), "module": info.get("now", "")}
        if info.get("now"):
            return (
                ngettext(
                    "%(done)s of %(total)s module, now %(module)s",
                    "%(done)s of %(total)s modules, now %(module)s",
                    total,
                )
                % values
            )
        return ngettext("%(done)s of %(total)s module", "%(done)s of %(total)s modules", total) % values
    return ""


@register.simple_tag
def bulk_result(job: Any, entry: Any) -> str:
    """What a whole-branch job did to one module, in the page's language (its English line otherwise)."""
    if not isinstance(entry, dict):
        return ""
    action = ACTIONS.get(job.kind)
    return action.describe_each(entry) if action and action.describe_each else str(entry.get("result", ""))


# --- A finding's sentence in the page's language, built from its detail (the store writes its
# message in English). Text that comes from elsewhere (a JSON parser's error, an OS error) stays
# as written, marked as English; values read from the files are isolated for right-to-left pages.


def _json_text(value: Any) -> str:
    try:
        return orjson.dumps(value).decode()
    except TypeError:  # beyond 64 bits, a lone surrogate, too deep: what the stored JSON holds is safe
        return json.dumps(value, ensure_ascii=True, default=str)[:200]


def _isolated(value: Any, html: bool) -> str:
    text = value if isinstance(value, str) else _json_text(value)
    return format_html('<bdi dir="ltr">{}</bdi>', text) if html else text


def _english(value: Any, html: bool) -> str:
    return format_html('<span lang="en" dir="ltr">{}</span>', str(value)) if html else str(value)


def _count(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def _finding_sentence(f: dict[str, Any], html: bool) -> tuple[str, dict[str, Any]] | None:
    """(the translated template, its values) for a finding, or None for a shape it does not know."""
    code = f.get("code")
    n = _count(f.get("count"))
    if code == "meta_corrupt" and all(_count(f.get(k)) is not None for k in ("line", "col", "byte")):
        return _("meta is not valid JSON at line %(line)s, column %(col)s (byte %(byte)s): %(error)s"), {
            "line": number(f["line"]),
            "col": number(f["col"]),
            "byte": number(f["byte"]),
            "error": _english(f.get("error_message", ""), html),
        }
    if code == "meta_invalid":
        key = f.get("key")
        if _count(f.get("size")) is not None and _count(f.get("limit")) is not None:
            return _("meta is %(size)s bytes, more than any usable meta (%(limit)s at most)"), {
                "size": number(f["size"]),
                "limit": number(f["limit"]),
            }
        if "type" in f:
            return _("meta is not a JSON object"), {}
        if key == "totalEvents" and "value" in f:
            shown = (
                _json_text(f["value"])
                if f["value"] is None or isinstance(f["value"], str | int | float | bool)
                else str(f["value"])
            )
            return _("totalEvents is %(value)s, not a whole number of 0 or more"), {"value": _isolated(shown, html)}
        if key in ("branchId", "moduleId") and "value" in f:
            return _("%(key)s names %(value)s, not this module's folder"), {
                "key": _isolated(key, html),
                "value": _isolated(f["value"], html),
            }
        if key in metamod.STRING_OR_NULL_KEYS:
            return _("%(key)s has the wrong type: a string or null is expected"), {"key": _isolated(key, html)}
        if key in metamod.OBJECT_KEYS:
            return _("%(key)s is not an object; Node falls back to an empty one"), {"key": _isolated(key, html)}
        return None
    if code == "meta_missing" and (events := _count(f.get("log_events"))) is not None:
        return ngettext(
            "the log has %(n)s event but there is no meta", "the log has %(n)s events but there is no meta", events
        ), {"n": number(events)}
    if code == "meta_drift" and _count(f.get("expected_total_events")) is not None:
        values = {
            "meta": _isolated(f.get("meta_total_events"), html),
            "log": number(f["expected_total_events"]),
            "meta_id": _isolated(f.get("meta_last_event_id"), html),
            "log_id": _isolated(f.get("log_last_event_id"), html),
        }
        if f.get("meta_total_events") == f["expected_total_events"]:
            return _("the meta's last event is %(meta_id)s, the log ends with %(log_id)s"), values
        if f.get("log_events") and f.get("meta_last_event_id") != f.get("log_last_event_id"):
            return _(
                "the meta counts %(meta)s events, the log gives %(log)s; the meta's last event is %(meta_id)s, the log ends with %(log_id)s"
            ), values
        return _("the meta counts %(meta)s events, the log gives %(log)s"), values
    if code == "log_torn_tail" and all(_count(f.get(k)) is not None for k in ("length", "offset", "line")):
        values = {"length": number(f["length"]), "offset": number(f["offset"]), "line": number(f["line"])}
        if f.get("parses"):
            return _(
                "the log ends in a complete event without its newline (%(length)s bytes at byte %(offset)s, line %(line)s)"
            ), values
        return _("the log ends in an incomplete line (%(length)s bytes at byte %(offset)s, line %(line)s)"), values
    if (
        code == "log_bad_line"
        and n is not None
        and isinstance(f.get("lines"), list)
        and f["lines"]
        and isinstance(f["lines"][0], dict)
    ):
        first = f["lines"][0]
        return ngettext(
            "%(n)s line does not parse as an event; the first is line %(line)s: %(error)s",
            "%(n)s lines do not parse as an event; the first is line %(line)s: %(error)s",
            n,
        ), {"n": number(n), "line": number(first.get("line")), "error": _english(first.get("error", ""), html)}
    if code == "log_sequence_duplicate" and n is not None and isinstance(f.get("sequences"), list):
        return ngettext(
            "%(n)s event reuses a sequence number already used (e.g. %(examples)s)",
            "%(n)s events reuse a sequence number already used (e.g. %(examples)s)",
            n,
        ), {"n": number(n), "examples": _isolated(", ".join(str(s) for s in f["sequences"][:5]), html)}
    if (
        code == "log_sequence_gap"
        and n is not None
        and isinstance(f.get("gaps"), list)
        and f["gaps"]
        and isinstance(f["gaps"][0], list | tuple)
        and len(f["gaps"][0]) == 2
    ):
        low, high = f["gaps"][0]
        return ngettext(
            "%(n)s sequence number is missing; the first gap is %(first)s",
            "%(n)s sequence numbers are missing; the first gap is %(first)s",
            n,
        ), {"n": number(n), "first": _isolated(f"{low}..{high}", html)}
    if code == "temp_orphan" and n is not None:
        return ngettext(
            "%(n)s temp file of an interrupted write, older than the grace period",
            "%(n)s temp files of interrupted writes, older than the grace period",
            n,
        ), {"n": number(n)}
    if code == "backup_present" and n is not None:
        return ngettext(
            "%(n)s backup file of past recoveries in the live folder",
            "%(n)s backup files of past recoveries in the live folder",
            n,
        ), {"n": number(n)}
    if code == "unreadable" and isinstance(f.get("file"), str):
        return _("%(file)s could not be read: %(reason)s"), {
            "file": _isolated(f["file"], html),
            "reason": _english(f.get("reason", ""), html),
        }
    return None


@register.simple_tag
def finding_text(f: Any, html: bool = True) -> str:
    """A stored finding (its dict) as a sentence in the page's language: HTML with the English
    and the file-read parts marked (``html``) or plain text (for a title). "" when its detail has
    a shape this does not know: the page shows the store's English message instead."""
    if not isinstance(f, dict):
        return ""
    sentence = _finding_sentence(f, html)
    if sentence is None:
        return ""
    template, values = sentence
    if not html:
        return str(template) % values
    return mark_safe(conditional_escape(str(template)) % {k: conditional_escape(v) for k, v in values.items()})


@register.inclusion_tag("opsdash/hosts_notice.html", takes_context=True)
def hosts_notice(context: template.Context) -> dict[str, Any]:
    """On every page: the hosts whose scanner stopped reporting (their modules' status may be
    old), failed its last pass, or could not scan a folder (only the folders of the branches the
    user may see)."""
    access = access_of(context["request"].user)
    hosts = []
    for beat in troubled_hosts():
        if access.limited:
            beat = dataclasses.replace(
                beat, problems=tuple(p for p in beat.problems if access.allows(str(p.get("path", "")).split("/", 1)[0]))
            )
        if beat.stale or beat.error or beat.problems:
            hosts.append(beat)
    return {"hosts": hosts}
