"""How people log in (django-allauth): local user names and passwords unless OPSDASH_LOCAL_LOGIN=0,
an OpenID Connect provider whose groups become roles and branches, nobody signing up alone."""

from __future__ import annotations

from typing import Any

from allauth.account.adapter import DefaultAccountAdapter
from allauth.account.auth_backends import AuthenticationBackend
from allauth.account.signals import user_logged_in
from allauth.socialaccount.adapter import DefaultSocialAccountAdapter
from django.conf import settings
from django.contrib.auth.models import AbstractBaseUser
from django.db import transaction
from django.dispatch import receiver
from django.http import HttpRequest

from .services.access import access_of, limit_user
from .services.audit import record
from .services.users import set_role


class PasswordBackend(AuthenticationBackend):
    """The one authentication backend (allauth's: Django's ModelBackend and its login methods),
    so that every password form, ours and the admin's, checks a password once and the same way;
    with OPSDASH_LOCAL_LOGIN=0 it accepts none (single sign-on only). Sessions still resolve."""

    def authenticate(self, request: HttpRequest | None, **credentials: Any) -> AbstractBaseUser | None:
        if not settings.OPSDASH_LOCAL_LOGIN:
            return None
        return super().authenticate(request, **credentials)


class AccountAdapter(DefaultAccountAdapter):
    def is_open_for_signup(self, request: HttpRequest) -> bool:
        return False  # accounts come from manage.py user, the admin, or the identity provider


class SocialAccountAdapter(DefaultSocialAccountAdapter):
    """A user who logs in through the identity provider gets, at every login, the role and the
    branches its groups map to (OPSDASH_OIDC_GROUPS), so that a change at the provider holds at
    the next login; a user in no mapped group has no role (sees nothing but its own pages)."""

    def is_open_for_signup(self, request: HttpRequest, sociallogin: Any) -> bool:
        return True

    def save_user(self, request: HttpRequest, sociallogin: Any, form: Any = None) -> AbstractBaseUser:
        user = super().save_user(request, sociallogin, form)
        apply_groups(user, claims_of(sociallogin))
        return user

    def pre_social_login(self, request: HttpRequest, sociallogin: Any) -> None:
        if sociallogin.is_existing:
            apply_groups(sociallogin.user, claims_of(sociallogin))


def claims_of(sociallogin: Any) -> dict[str, Any]:
    """The provider's claims about the user: its userinfo, else its ID token."""
    data = sociallogin.account.extra_data or {}
    return data.get("userinfo") or data.get("id_token") or data


def role_from_groups(groups: Any) -> tuple[str | None, list[str]]:
    """(our role, its branches) for a user in ``groups``: the strongest mapped role wins (an
    operator's group over an auditor's over a manager's); the branches of every group giving that
    role are merged, and one of them without branches means every branch."""
    names = (
        [groups]
        if isinstance(groups, str)
        else [g for g in groups if isinstance(g, str)]
        if isinstance(groups, list)
        else []
    )
    mapped = [settings.OPSDASH_OIDC_GROUPS[g] for g in names if g in settings.OPSDASH_OIDC_GROUPS]
    for role in ("operator", "auditor", "manager"):
        branches = [b for r, b in mapped if r == role]
        if branches:
            return role, [] if any(not b for b in branches) else sorted({x for b in branches for x in b})
    return None, []


@transaction.atomic
def apply_groups(user: AbstractBaseUser, claims: dict[str, Any]) -> None:
    role, branches = role_from_groups(claims.get(settings.OPSDASH_OIDC_ROLE_CLAIM))
    set_role(user, role)
    limit_user(user, branches)


@receiver(user_logged_in)
def audit_login(
    sender: Any, request: HttpRequest, user: AbstractBaseUser, sociallogin: Any = None, **kwargs: Any
) -> None:
    """Every login is an audit entry: who, from where, how (password or single sign-on, with a
    second factor or not), and for single sign-on the role and branches its groups gave."""
    params: dict[str, Any] = {"via": "sso" if sociallogin is not None else "password"}
    if request.session.get("account_authentication_methods"):
        params["methods"] = sorted({m.get("method", "") for m in request.session["account_authentication_methods"]})
    if sociallogin is not None:
        params["groups"] = [
            g for g in claims_of(sociallogin).get(settings.OPSDASH_OIDC_ROLE_CLAIM) or [] if isinstance(g, str)
        ][:50]
        params["branches"] = sorted(access_of(user).branches or []) or "all"
    request.user = user
    record(request, "login", "ok", params=params)
