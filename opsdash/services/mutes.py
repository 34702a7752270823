"""Acknowledgements and silences of known problems (models.Mute): which modules they cover,
when they end by themselves, and what the overview counts as acknowledged.

A mute covers a module when it names the module, the module's branch, or, for a finding code,
when every problem code of the module is covered (by code mutes or a mute of the module or
its branch). A silence also stops the module's alerts; an acknowledgement only says the problem
is known (the overview shows it apart, escalation skips it). Unless sticky, a mute ends as
soon as things get worse than when it was given: a worse status, or a finding code that was
not there (Ceph's ``health mute``); and when its module recovers. Every mute ends at ``until``.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime

from django.db.models import Q, QuerySet
from django.utils import timezone

from ..models import PROBLEM_STATUSES, STATUS_RANK, ModuleState, Mute, Status, codes_field
from .access import EVERY_BRANCH, Access


def active() -> QuerySet[Mute]:
    return Mute.objects.filter(ended_at__isnull=True)


@dataclass
class Mutes:
    """The mutes in force, indexed for covering many modules at once (one query)."""

    modules: dict[int, list[Mute]] = field(default_factory=dict)
    branches: dict[tuple[str, str], list[Mute]] = field(default_factory=dict)
    codes: dict[str, list[Mute]] = field(default_factory=dict)  # a code in every branch
    # a code in one branch (given by a user limited to some branches)
    branch_codes: dict[tuple[str, str], dict[str, list[Mute]]] = field(default_factory=dict)

    @classmethod
    def load(cls, now: datetime | None = None) -> Mutes:
        now = now or timezone.now()
        out = cls()
        for mute in active().exclude(until__lte=now):
            if mute.scope == Mute.Scope.MODULE and mute.module_id is not None:
                out.modules.setdefault(mute.module_id, []).append(mute)
            elif mute.scope == Mute.Scope.BRANCH:
                out.branches.setdefault((mute.host, mute.branch), []).append(mute)
            elif mute.scope == Mute.Scope.CODE and mute.branch:
                out.branch_codes.setdefault((mute.host, mute.branch), {}).setdefault(mute.code, []).append(mute)
            elif mute.scope == Mute.Scope.CODE:
                out.codes.setdefault(mute.code, []).append(mute)
        return out

    def codes_of(self, host: str, branch: str, code: str) -> list[Mute]:
        """The code mutes that reach a module of (host, branch)."""
        return self.codes.get(code, []) + self.branch_codes.get((host, branch), {}).get(code, [])

    def covering(self, module_row: ModuleState) -> list[Mute]:
        """The mutes that cover the module (empty: none, or not every problem code is)."""
        whole = self.modules.get(module_row.pk, []) + self.branches.get((module_row.host, module_row.branch), [])
        if whole:
            return whole
        codes = module_row.codes.split()
        found = [self.codes_of(module_row.host, module_row.branch, code) for code in codes]
        if not codes or not all(found):
            return []
        return [m for mutes in found for m in mutes]

    def state(self, module_row: ModuleState) -> str:
        """ "silenced", "acknowledged" or "" for the module as it is now."""
        kinds = {m.kind for m in self.covering(module_row)}
        if Mute.Kind.SILENCE in kinds:
            return "silenced"
        return "acknowledged" if kinds else ""


def give(
    kind: str,
    scope: str,
    module_row: ModuleState,
    user: str,
    comment: str,
    until: datetime | None,
    sticky: bool,
    code: str = "",
    code_in_branch: bool = False,
) -> Mute:
    """A new acknowledgement or silence of the module, its branch, or one of its codes (in
    every branch, or with ``code_in_branch`` in the module's branch only); it remembers how
    things were, to end when they get worse."""
    rows = _branch_rows(module_row.host, module_row.branch) if scope == Mute.Scope.BRANCH else [module_row]
    worst = max((r.status for r in rows), key=lambda s: STATUS_RANK[s], default=Status.HEALTHY)
    codes = codes_field({c for r in rows for c in r.codes.split()})
    return Mute.objects.create(
        kind=kind,
        scope=scope,
        host=module_row.host,
        branch=module_row.branch if scope != Mute.Scope.CODE or code_in_branch else "",
        module=module_row if scope == Mute.Scope.MODULE else None,
        code=code if scope == Mute.Scope.CODE else "",
        comment=comment,
        created_by=user,
        created_at=timezone.now(),
        until=until,
        sticky=sticky,
        status_at=worst,
        codes_at=codes,
    )


def lift(mute: Mute, user: str, now: datetime | None = None) -> bool:
    """End a mute by hand; False if it had ended already."""
    return _end(mute, now or timezone.now(), Mute.EndedWhy.LIFTED, user)


def _end(mute: Mute, now: datetime, why: str, by: str = "") -> bool:
    ended = Mute.objects.filter(pk=mute.pk, ended_at__isnull=True).update(ended_at=now, ended_why=why, ended_by=by)
    return ended == 1


def review(now: datetime | None = None) -> list[Mute]:
    """End the mutes whose time ran out or whose problem got worse (or went away); returns them.
    Called before each pass's alerts are queued, so a silence that ends lets its alert through."""
    now = now or timezone.now()
    ended = []
    for mute in active().select_related("module"):
        why = _why_it_ends(mute, now)
        if why and _end(mute, now, why):
            ended.append(mute)
    return ended


def _why_it_ends(mute: Mute, now: datetime) -> str:
    if mute.until is not None and mute.until <= now:
        return Mute.EndedWhy.EXPIRED
    if mute.scope == Mute.Scope.CODE:
        return ""
    rows = [mute.module] if mute.scope == Mute.Scope.MODULE else _branch_rows(mute.host, mute.branch)
    if mute.scope == Mute.Scope.MODULE and (mute.module is None or mute.module.status not in PROBLEM_STATUSES):
        return Mute.EndedWhy.RECOVERED
    if mute.sticky:
        return ""
    worst = max((r.status for r in rows), key=lambda s: STATUS_RANK[s], default=Status.HEALTHY)
    if STATUS_RANK[worst] > STATUS_RANK.get(mute.status_at, 0):
        return Mute.EndedWhy.WORSE
    if {c for r in rows for c in r.codes.split()} - set(mute.codes_at.split()):
        return Mute.EndedWhy.NEW_CODE
    return ""


def _branch_rows(host: str, branch: str) -> list[ModuleState]:
    """The modules of a branch, with what a mute judges them by: their status and codes."""
    return list(ModuleState.objects.filter(host=host, branch=branch).only("status", "codes"))


def covered(mutes: Mutes, access: Access = EVERY_BRANCH) -> Q | None:
    """The modules the mutes in force cover, as a filter (None: no mute is in force). A code
    mute covers the modules all of whose codes are muted: those are found by streaming the ids
    and codes of the modules that have a muted code (flat memory however many modules)."""
    if not (mutes.modules or mutes.branches or mutes.codes or mutes.branch_codes):
        return None
    q = Q(pk__in=sorted(mutes.modules))
    for host, branch in mutes.branches:
        q |= Q(host=host, branch=branch)
    muted_codes = set(mutes.codes) | {c for codes in mutes.branch_codes.values() for c in codes}
    if muted_codes:
        having = Q()
        for code in sorted(muted_codes):
            having |= Q(codes__contains=f" {code} ")
        rows = access.filter(ModuleState.objects.filter(having, status__in=PROBLEM_STATUSES))
        ids = [
            pk
            for pk, host, branch, codes in rows.values_list("pk", "host", "branch", "codes").iterator()
            if all(mutes.codes_of(host, branch, code) for code in codes.split())
        ]
        q |= Q(pk__in=ids)
    return q


def of_module(module_row: ModuleState) -> Iterable[Mute]:
    """The mutes in force that name the module, its branch or one of its codes (its page lists them)."""
    mutes = Mutes.load()
    codes = module_row.codes.split()
    return [
        *mutes.modules.get(module_row.pk, []),
        *mutes.branches.get((module_row.host, module_row.branch), []),
        *[m for c in codes for m in mutes.codes_of(module_row.host, module_row.branch, c)],
    ]
