from __future__ import annotations

from typing import Any

import orjson
from django import template
from django.utils.formats import number_format
from django.utils.translation import gettext_lazy as _
from django.utils.translation import ngettext

from ..models import Backup, Job, ServerRecovery, Status

register = template.Library()

FINDING_KEYS = {"code", "severity", "message"}


@register.simple_tag
def qs(filters: Any, **changes: Any) -> str:
    """The query string ("?...") of the current filters with ``changes`` applied."""
    query = filters.as_query(**{key: "" if value is None else str(value) for key, value in changes.items()})
    return f"?{query}" if query else "?"


@register.filter
def finding_detail(finding: dict[str, Any]) -> list[tuple[str, str]]:
    """A finding's machine detail as (key, text) pairs, lists and objects as compact JSON."""
    out = []
    for key, value in finding.items():
        if key in FINDING_KEYS:
            continue
        text = value if isinstance(value, str) else orjson.dumps(value).decode()
        out.append((key, text))
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
    "job_state": dict(Job.State.choices),
    "job_kind": dict(Job.Kind.choices),
    "outcome": OUTCOMES,
    "recovery": dict(ServerRecovery.Outcome.choices),
    "finding": FINDINGS,
}


@register.filter
def label(value: Any, vocabulary: str) -> Any:
    """``{{ m.status|label:"status" }}``: the word for a stored value in the page's language
    (the value itself when the vocabulary does not know it)."""
    return VOCABULARY[vocabulary].get(value, value)


@register.filter
def number(value: Any) -> str:
    """An integer or decimal grouped the way the page's language writes it (1,234 / 1.234)."""
    if value is None or value == "":
        return "–"
    try:
        return number_format(value, force_grouping=True)
    except (TypeError, ValueError):
        return str(value)


@register.simple_tag
def job_summary(job: Any) -> str:
    """What a finished job did, in the page's language, from its recorded result."""
    result = job.result if isinstance(job.result, dict) else {}
    kind = job.kind
    if kind == Job.Kind.REBUILD and "events_read" in result:
        n = result["events_read"]
        if result.get("backup"):
            return ngettext(
                "Rebuilt from %(n)s event; the old meta is backed up as %(backup)s.",
                "Rebuilt from %(n)s events; the old meta is backed up as %(backup)s.", n,
            ) % {"n": number(n), "backup": result["backup"]}
        return ngettext("Rebuilt from %(n)s event; there was no old meta to back up.",
                        "Rebuilt from %(n)s events; there was no old meta to back up.", n) % {"n": number(n)}
    if kind == Job.Kind.VERIFY and "status" in result:
        codes = [f.get("code", "") for f in result.get("findings") or [] if isinstance(f, dict)]
        return _("Checked: %(status)s, %(findings)s.") % {
            "status": label(result["status"], "status"),
            "findings": ", ".join(codes) if codes else _("no findings"),
        }
    if kind == Job.Kind.ARCHIVE_BACKUPS and "archived" in result:
        n = len(result["archived"])
        return ngettext("%(n)s backup archived, verified by sha256.", "%(n)s backups archived, each verified by sha256.", n) % {"n": number(n)}
    if kind == Job.Kind.CLEAN_TEMP and "removed" in result:
        n = len(result["removed"])
        return ngettext("%(n)s orphan temp file removed.", "%(n)s orphan temp files removed.", n) % {"n": number(n)}
    if kind in (Job.Kind.BULK_REBUILD, Job.Kind.BULK_ARCHIVE) and "modules" in result:
        return _("%(done)s module(s) done, %(failed)s failed.") % {"done": number(len(result["modules"])), "failed": number(len(result.get("failed") or []))}
    return str(result.get("summary", ""))


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
            return ngettext("%(done)s of %(total)s module, now %(module)s", "%(done)s of %(total)s modules, now %(module)s", total) % values
        return ngettext("%(done)s of %(total)s module", "%(done)s of %(total)s modules", total) % values
    return ""


@register.simple_tag
def bulk_result(job: Any, entry: Any) -> str:
    """What a bulk job did to one module, in the page's language (its English line otherwise)."""
    if not isinstance(entry, dict):
        return ""
    if job.kind == Job.Kind.BULK_REBUILD and isinstance(entry.get("events_read"), int):
        n = entry["events_read"]
        values = {"n": number(n), "backup": entry.get("backup") or ""}
        if entry.get("backup"):
            text = ngettext("rebuilt from %(n)s event; the old meta is backed up as %(backup)s",
                            "rebuilt from %(n)s events; the old meta is backed up as %(backup)s", n) % values
        else:
            text = ngettext("rebuilt from %(n)s event; there was no old meta to back up",
                            "rebuilt from %(n)s events; there was no old meta to back up", n) % values
        if entry.get("status") in VOCABULARY["status"]:
            text += " · " + _("status now %(status)s") % {"status": label(entry["status"], "status")}
        return text
    if job.kind == Job.Kind.BULK_ARCHIVE and isinstance(entry.get("archived"), list):
        names = [str(name) for name in entry["archived"]]
        n = len(names)
        return ngettext("%(n)s backup archived: %(names)s", "%(n)s backups archived: %(names)s", n) % {"n": number(n), "names": ", ".join(names)}
    return str(entry.get("result", ""))
