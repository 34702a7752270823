"""Login throttling, for the dashboard's login and the admin's: after
``OPSDASH_LOGIN_MAX_FAILURES`` failed logins within ``OPSDASH_LOGIN_WINDOW_SECONDS`` from one
client (an IPv4 address, an IPv6 /64) or for one user name, further attempts get 429 without
their password being checked.

The user name is counted as authentication reads it (stripped, NFKC) and case-folded, so
``" manager"`` and a fullwidth ``ｍanager`` are the same name. Each attempt is reserved (a row
written) *before* the password is checked, and counted with the reservations of every other
process: of 40 concurrent guesses, at most the limit are tried. A successful login, or a refused
one, gives its reservation back; a failed one keeps it as the failure.
"""

from __future__ import annotations

import unicodedata
from datetime import timedelta

from django.conf import settings
from django.utils import timezone

from ..models import LoginFailure
from .clients import client_key


def name_key(username: str) -> str:
    """The user name as the throttle counts it."""
    return unicodedata.normalize("NFKC", username.strip()).casefold()[:150]


def reserve(ip: str | None, username: str) -> LoginFailure | None:
    """Reserve one attempt for this client and user name; None (nothing reserved) when the
    client or the name has used up its attempts in the window."""
    client, name = client_key(ip), name_key(username)
    attempt = LoginFailure.objects.create(ip=ip, username=username.strip()[:150], client=client, name=name)
    since = timezone.now() - timedelta(seconds=settings.OPSDASH_LOGIN_WINDOW_SECONDS)
    recent = LoginFailure.objects.filter(at__gte=since)  # committed reservations of every process, this one's too
    limit = settings.OPSDASH_LOGIN_MAX_FAILURES
    by_client = recent.filter(client=client).count() if client else 0
    by_name = recent.filter(name=name).count() if name else 0
    if by_client > limit or by_name > limit:
        release(attempt)
        return None
    return attempt


def release(attempt: LoginFailure) -> None:
    """The attempt did not fail (it logged in, or it was refused before trying): give it back."""
    LoginFailure.objects.filter(pk=attempt.pk).delete()
