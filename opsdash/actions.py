"""The operator actions: one declaration per kind, read by the URLconf, the views, the job
runner, the templates and the JSON API (as Django's admin actions and checks are declared).

Adding a kind is one :class:`Action` in ``ACTIONS`` plus its runner in services.runners: the
URLs (``opsdash:module_<kind>``, ``opsdash:api_module_<kind>`` or ``opsdash:branch_<kind>``), the
button and its confirmation, the permission check, the job's name and the wording of its result
all come from here.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from django.utils.functional import Promise
from django.utils.translation import gettext, ngettext
from django.utils.translation import gettext_lazy as _

from .models import ModuleState, Status
from .services import runners
from .words import megabytes, number

MODULE, BRANCH = "module", "branch"
CHANGED_IN_PLACE = "log_changed_in_place"
RUN_ACTIONS = "opsdash.run_actions"


@dataclass(frozen=True)
class Action:
    kind: str  # the job's kind and the last part of its URLs
    scope: str  # MODULE: one module; BRANCH: every module of a branch (the name is typed to confirm)
    title: Promise  # what a job of this kind is called
    label: Promise  # the button that opens the confirmation
    # MODULE: the confirmation naming the module ({module}) and its button; BRANCH: None (the
    # branch's name is typed to confirm)
    question: Promise | None
    confirm: Promise | None
    runner: runners.Runner
    describe: Callable[[dict[str, Any]], str]  # a finished job's result, in the page's language
    describe_each: Callable[[dict[str, Any]], str] | None = None  # a branch job: one module's outcome
    permission: str = RUN_ACTIONS
    # MODULE: whether the module page offers it for this module (None: always); the server
    # still runs it when posted (the API lists every kind)
    offered: Callable[[ModuleState], bool] | None = None

    def offered_for(self, module_row: ModuleState) -> bool:
        return self.offered is None or self.offered(module_row)

    @property
    def url_name(self) -> str:
        return f"{self.scope}_{self.kind}"

    @property
    def api_url_name(self) -> str | None:
        return f"api_{self.scope}_{self.kind}" if self.scope == MODULE else None

    @property
    def route(self) -> str:
        where = (
            "modules/<str:host>/<str:branch>/<str:module>"
            if self.scope == MODULE
            else "branches/<str:host>/<str:branch>"
        )
        return f"{where}/{self.kind}"


# -- how each kind's result reads ----------------------------------------------------------------


def _rebuilt(result: dict[str, Any], each: bool = False) -> str:
    if not isinstance(result.get("events_read"), int):
        return str(result.get("result" if each else "summary", ""))
    n, backup = result["events_read"], result.get("backup")
    values = {"n": number(n), "backup": backup or ""}
    if each:
        text = (
            ngettext(
                "rebuilt from %(n)s event; the old meta is backed up as %(backup)s",
                "rebuilt from %(n)s events; the old meta is backed up as %(backup)s",
                n,
            )
            if backup
            else ngettext(
                "rebuilt from %(n)s event; there was no old meta to back up",
                "rebuilt from %(n)s events; there was no old meta to back up",
                n,
            )
        ) % values
        if result.get("status") in Status.values:
            text += " · " + gettext("status now %(status)s") % {"status": Status(result["status"]).label}
        return text
    return (
        ngettext(
            "Rebuilt from %(n)s event; the old meta is backed up as %(backup)s.",
            "Rebuilt from %(n)s events; the old meta is backed up as %(backup)s.",
            n,
        )
        if backup
        else ngettext(
            "Rebuilt from %(n)s event; there was no old meta to back up.",
            "Rebuilt from %(n)s events; there was no old meta to back up.",
            n,
        )
    ) % values


def _verified(result: dict[str, Any]) -> str:
    if result.get("status") not in Status.values:
        return str(result.get("summary", ""))
    codes = [f.get("code", "") for f in result.get("findings") or [] if isinstance(f, dict)]
    values = {
        "status": Status(result["status"]).label,
        "findings": ", ".join(codes) if codes else gettext("no findings"),
    }
    if not isinstance(result.get("bytes_read"), int):  # a job of an earlier version: no full read
        return gettext("Checked: %(status)s, %(findings)s.") % values
    return gettext("Read in full (%(mb)s MB): %(status)s, %(findings)s.") % {
        **values,
        "mb": megabytes(result["bytes_read"]),
    }


def _archived(result: dict[str, Any], each: bool = False) -> str:
    if not isinstance(result.get("archived"), list):
        return str(result.get("result" if each else "summary", ""))
    n = len(result["archived"])
    if each:
        names = ", ".join(str(name) for name in result["archived"])
        return ngettext("%(n)s backup archived: %(names)s", "%(n)s backups archived: %(names)s", n) % {
            "n": number(n),
            "names": names,
        }
    return ngettext(
        "%(n)s backup archived, verified by sha256.", "%(n)s backups archived, each verified by sha256.", n
    ) % {"n": number(n)}


def _cleaned(result: dict[str, Any]) -> str:
    if not isinstance(result.get("removed"), list):
        return str(result.get("summary", ""))
    n = len(result["removed"])
    return ngettext("%(n)s orphan temp file removed.", "%(n)s orphan temp files removed.", n) % {"n": number(n)}


def _purged(result: dict[str, Any]) -> str:
    if not isinstance(result.get("purged"), list) or not isinstance(result.get("kept"), list):
        return str(result.get("summary", ""))
    if not result["purged"] and not result["kept"] and "forever" in str(result.get("summary", "")):
        return gettext("Archived backups are kept forever (OPSDASH_ARCHIVE_KEEP_DAYS is 0): nothing purged.")
    return gettext("%(purged)s archived backup(s) purged, %(kept)s kept (their copy did not verify).") % {
        "purged": number(len(result["purged"])),
        "kept": number(len(result["kept"])),
    }


def _branch_done(result: dict[str, Any]) -> str:
    if not isinstance(result.get("modules"), list):
        return str(result.get("summary", ""))
    return gettext("%(done)s module(s) done, %(failed)s failed.") % {
        "done": number(len(result["modules"])),
        "failed": number(len(result.get("failed") or [])),
    }


# -- the kinds -----------------------------------------------------------------------------------

ACTIONS: dict[str, Action] = {
    a.kind: a
    for a in (
        Action(
            kind="rebuild",
            scope=MODULE,
            title=_("rebuild meta"),
            label=_("Rebuild meta"),
            question=_("Back up the meta and rebuild it from the log for {module}?"),
            confirm=_("Yes, rebuild meta {module}"),
            runner=runners.rebuild,
            describe=_rebuilt,
        ),
        Action(
            kind="verify",
            scope=MODULE,
            title=_("verify now"),
            label=_("Verify now"),
            question=_("Check the files again now for {module}?"),
            confirm=_("Yes, verify now {module}"),
            runner=runners.verify,
            describe=_verified,
        ),
        Action(
            kind="accept_log",
            scope=MODULE,
            title=_("accept the log as it is"),
            label=_("Accept the log as it is"),
            question=_(
                "Bytes of the log of {module} changed after they were read. Read it in full and take it as it is "
                "now as the reference (the change stays in the history)?"
            ),
            confirm=_("Yes, accept the log of {module}"),
            runner=runners.accept_log,
            describe=_verified,
            offered=lambda module_row: CHANGED_IN_PLACE in module_row.codes.split(),
        ),
        Action(
            kind="archive_backups",
            scope=MODULE,
            title=_("archive backups"),
            label=_("Archive backups"),
            question=_("Move every backup out of the live folder (copied and verified first) for {module}?"),
            confirm=_("Yes, archive backups {module}"),
            runner=runners.archive_backups,
            describe=_archived,
        ),
        Action(
            kind="clean_temp",
            scope=MODULE,
            title=_("clean temp files"),
            label=_("Clean temp files"),
            question=_("Remove the orphan temp files older than the grace period of {module}?"),
            confirm=_("Yes, clean temp files {module}"),
            runner=runners.clean_temp,
            describe=_cleaned,
        ),
        Action(
            kind="bulk_rebuild",
            scope=BRANCH,
            title=_("rebuild every critical module of the branch"),
            label=_("Rebuild every critical module"),
            question=None,
            confirm=None,
            runner=runners.bulk_rebuild,
            describe=_branch_done,
            describe_each=lambda entry: _rebuilt(entry, each=True),
        ),
        Action(
            kind="bulk_archive",
            scope=BRANCH,
            title=_("archive every backup of the branch"),
            label=_("Archive every backup"),
            question=None,
            confirm=None,
            runner=runners.bulk_archive,
            describe=_branch_done,
            describe_each=lambda entry: _archived(entry, each=True),
        ),
        Action(
            kind="purge_archive",
            scope=BRANCH,
            title=_("purge old archived backups of the branch"),
            label=_("Purge old archived backups"),
            question=None,
            confirm=None,
            runner=runners.purge_archive,
            describe=_purged,
        ),
    )
}


def module_actions() -> list[Action]:
    return [a for a in ACTIONS.values() if a.scope == MODULE]


def branch_actions() -> list[Action]:
    return [a for a in ACTIONS.values() if a.scope == BRANCH]


def title_of(kind: str) -> str:
    """What a job of ``kind`` is called (the kind itself for one no longer declared)."""
    action = ACTIONS.get(kind)
    return str(action.title) if action else kind
