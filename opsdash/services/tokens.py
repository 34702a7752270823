"""API tokens: ``Authorization: Bearer <token>`` on /api/ acts as the token's user, with that
user's role and branches, without a session (and so without CSRF, which protects sessions).

A token is 32 random bytes (``odt_`` + URL-safe base64), shown once when created; only its
sha256 is stored, and the lookup compares digests in constant time. A read-only token cannot
start anything. Failed token attempts count against the client like failed logins.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from dataclasses import dataclass
from datetime import timedelta

from django.conf import settings
from django.contrib.auth.models import AbstractBaseUser
from django.db import IntegrityError, transaction
from django.utils import timezone

from ..models import ApiToken, LoginFailure
from .clients import client_key

PREFIX = "odt_"
# last_used_at is written at most this often per token (not one write per API request).
LAST_USED_EVERY = timedelta(minutes=1)


class TokenError(Exception):
    """A token that cannot be created or revoked as asked; the message says why."""


@dataclass(frozen=True)
class Refusal:
    status: int  # 401 or 429
    reason: str


def digest(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8", "surrogatepass")).hexdigest()


def create(
    user: AbstractBaseUser, name: str, *, read_only: bool = False, expires_days: int | None = None, by: str = ""
) -> tuple[ApiToken, str]:
    """A new token for ``user``; returns it and the token text (shown once, never stored)."""
    name = name.strip()
    if not name or len(name) > 100:
        raise TokenError("a token's name is 1 to 100 characters")
    if expires_days is not None and not 1 <= expires_days <= 3650:
        raise TokenError("a token expires after 1 to 3650 days")
    token = PREFIX + secrets.token_urlsafe(32)
    expires_at = timezone.now() + timedelta(days=expires_days) if expires_days else None
    try:
        with transaction.atomic():
            row = ApiToken.objects.create(
                user=user, name=name, digest=digest(token), read_only=read_only, expires_at=expires_at, created_by=by
            )
    except IntegrityError:
        raise TokenError(f"a token named {name!r} exists already") from None
    return row, token


def revoke(row: ApiToken) -> bool:
    """Revoke ``row`` (from now on its requests get 401); False if it was revoked already."""
    return ApiToken.objects.filter(pk=row.pk, revoked_at__isnull=True).update(revoked_at=timezone.now()) == 1


def authenticate(token: str, ip: str | None) -> ApiToken | Refusal:
    """The live token ``token`` is, or why the request is refused. A client with too many failed
    attempts (tokens or logins) in the window is refused before the token is looked at."""
    client = client_key(ip)
    since = timezone.now() - timedelta(seconds=settings.OPSDASH_LOGIN_WINDOW_SECONDS)
    if (
        client
        and LoginFailure.objects.filter(at__gte=since, client=client).count() >= settings.OPSDASH_LOGIN_MAX_FAILURES
    ):
        return Refusal(429, "too many failed attempts; try again later")
    wanted = digest(token)
    row = ApiToken.objects.select_related("user").filter(digest=wanted).first()
    if row is None or not hmac.compare_digest(row.digest, wanted):
        return _failed(ip, client, "unknown token")
    now = timezone.now()
    if row.revoked_at is not None:
        return _failed(ip, client, "this token was revoked")
    if row.expires_at is not None and row.expires_at <= now:
        return _failed(ip, client, "this token has expired")
    if not row.user.is_active:
        return _failed(ip, client, "this token's user is inactive")
    if row.last_used_at is None or row.last_used_at < now - LAST_USED_EVERY:
        ApiToken.objects.filter(pk=row.pk).update(last_used_at=now)
        row.last_used_at = now
    return row


def _failed(ip: str | None, client: str, reason: str) -> Refusal:
    LoginFailure.objects.create(ip=ip, username="(api token)", client=client, name="")
    return Refusal(401, reason)
