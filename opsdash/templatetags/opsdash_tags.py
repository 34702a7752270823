from __future__ import annotations

import dataclasses
from typing import Any

from django import template
from django.utils.html import escape
from django.utils.safestring import mark_safe
from django.utils.translation import gettext_lazy as _
from django.utils.translation import ngettext

from ..actions import ACTIONS
from ..findings import MEANINGS, Words, finding_sentence
from ..models import Backup, Job, ServerRecovery, Status
from ..services import events, jobs
from ..services.access import access_of
from ..services.heartbeats import troubled_hosts
from ..words import megabytes, number

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
        out.append((key, Words(html=False).isolated(value)))
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

VOCABULARY: dict[str, dict[str, Any]] = {
    "status": dict(Status.choices),
    "severity": SEVERITIES,
    "backup_state": dict(Backup.State.choices),
    "backup_kind": BACKUP_KINDS,
    "job_status": dict(Job.Status.choices),
    "job_kind": {kind: action.title for kind, action in ACTIONS.items()},
    "outcome": OUTCOMES,
    "recovery": dict(ServerRecovery.Outcome.choices),
    "finding": MEANINGS,
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
        return _("%(done)s MB of %(total)s MB of the log read") % {"done": megabytes(done), "total": megabytes(total)}
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
    if info.get("unit") == "backups":
        values = {"done": number(done), "total": number(total)}
        return (
            ngettext("%(done)s of %(total)s archived backup", "%(done)s of %(total)s archived backups", total) % values
        )
    return ""


@register.simple_tag
def bulk_result(job: Any, entry: Any) -> str:
    """What a whole-branch job did to one module, in the page's language (its English line otherwise)."""
    if not isinstance(entry, dict):
        return ""
    action = ACTIONS.get(job.kind)
    return action.describe_each(entry) if action and action.describe_each else str(entry.get("result", ""))


# --- A finding's sentence in the page's language (opsdash.findings: one table of sentences).


@register.simple_tag
def finding_text(f: Any, html: bool = True) -> str:
    """A stored finding (its dict) as a sentence in the page's language: HTML with the English
    and the file-read parts marked (``html``) or plain text (for a title). "" when its detail has
    a shape this does not know: the page shows the store's English message instead."""
    return finding_sentence(f, html)


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


@register.simple_tag
def finding_links(module_row: Any, finding: Any) -> list[tuple[str, str]]:
    """``{% finding_links module_row f as links %}``: the event browser opened where ``f`` points."""
    return events.finding_links(module_row, finding)


@register.filter
def get_item(mapping: Any, key: Any) -> Any:
    """``{{ counts|get_item:status }}``: a dict's value for a key from the template (None if absent)."""
    return mapping.get(key) if isinstance(mapping, dict) else None
