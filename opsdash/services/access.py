"""Which branches a user may see: all of them, or the few a branch manager is limited to.

Every query of the pages, the API, the exports and the actions goes through :func:`access_of`:
a limited user sees nothing of another branch anywhere (another branch's module, backup, job
or incident is a 404, as if it did not exist), and its counts, charts and filter lists are of
its branches only.
"""

from __future__ import annotations

from dataclasses import dataclass

from django.contrib.auth.models import AbstractBaseUser, AnonymousUser
from django.db.models import Q, QuerySet

from ..models import BranchScope

_CACHE = "_opsdash_access"


@dataclass(frozen=True)
class Access:
    branches: frozenset[str] | None  # None: every branch

    @property
    def limited(self) -> bool:
        return self.branches is not None

    def allows(self, branch: str) -> bool:
        return self.branches is None or branch in self.branches

    def filter(self, qs: QuerySet, field: str = "branch") -> QuerySet:
        """``qs`` cut to the branches allowed, ``field`` naming the branch (e.g. module__branch)."""
        return qs if self.branches is None else qs.filter(Q(**{f"{field}__in": sorted(self.branches)}))


EVERY_BRANCH = Access(None)


def access_of(user: AbstractBaseUser | AnonymousUser) -> Access:
    """The user's access, read once per request (kept on the user object)."""
    cached = getattr(user, _CACHE, None)
    if cached is not None:
        return cached
    branches = None
    if user.is_authenticated:
        stored = BranchScope.objects.filter(user_id=user.pk).values_list("branches", flat=True).first()
        branches = frozenset(stored) if stored else None
    access = Access(branches)
    setattr(user, _CACHE, access)
    return access


def limit_user(user: AbstractBaseUser, branches: list[str]) -> None:
    """Limit ``user`` to ``branches`` (an empty list: every branch)."""
    cleaned = sorted({b.strip() for b in branches if b.strip()})
    if cleaned:
        BranchScope.objects.update_or_create(user=user, defaults={"branches": cleaned})
    else:
        BranchScope.objects.filter(user=user).delete()
    if hasattr(user, _CACHE):
        delattr(user, _CACHE)
