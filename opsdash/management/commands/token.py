"""``manage.py token create NAME --user USER [--read-only] [--expires-days N]`` (prints the
token once), ``manage.py token list``, ``manage.py token revoke NAME``."""

from __future__ import annotations

from typing import Any

from django.contrib.auth.models import User
from django.core.management.base import BaseCommand, CommandError, CommandParser

from ...models import ApiToken
from ...services import tokens


class Command(BaseCommand):
    help = "Create, list and revoke API tokens (Authorization: Bearer <token> on /api/)."

    def add_arguments(self, parser: CommandParser) -> None:
        sub = parser.add_subparsers(dest="verb", required=True)
        create = sub.add_parser("create", help="a new token for a user, printed once")
        create.add_argument("name")
        create.add_argument("--user", required=True, help="the user the token acts as (its role and branches)")
        create.add_argument("--read-only", action="store_true", help="the token cannot start actions")
        create.add_argument("--expires-days", type=int, help="the token stops working after this many days")
        sub.add_parser("list", help="every token: name, user, access, expiry, last use, revoked")
        revoke = sub.add_parser("revoke", help="a token stops working at once")
        revoke.add_argument("name")

    def handle(self, *args: Any, verb: str, **options: Any) -> None:
        {"create": self._create, "list": self._list, "revoke": self._revoke}[verb](**options)

    def _create(self, name: str, user: str, read_only: bool, expires_days: int | None, **_: Any) -> None:
        owner = User.objects.filter(username=user).first()
        if owner is None:
            raise CommandError(f"token: no user {user!r}")
        try:
            row, token = tokens.create(
                owner, name, read_only=read_only, expires_days=expires_days, by="manage.py token"
            )
        except tokens.TokenError as exc:
            raise CommandError(f"token: {exc}") from None
        self.stdout.write(
            f"token {row.name} for {owner.username} ({'read only' if row.read_only else 'read and act'}"
            f"{f', expires {row.expires_at:%Y-%m-%d %H:%M}' if row.expires_at else ''}); shown this once:"
        )
        self.stdout.write(token)

    def _list(self, **_: Any) -> None:
        rows = ApiToken.objects.select_related("user").order_by("name")
        if not rows:
            self.stdout.write("no API tokens")
        for row in rows:
            state = f"revoked {row.revoked_at:%Y-%m-%d %H:%M}" if row.revoked_at else "active"
            expires = f"{row.expires_at:%Y-%m-%d %H:%M}" if row.expires_at else "never"
            used = f"{row.last_used_at:%Y-%m-%d %H:%M}" if row.last_used_at else "never"
            access = "read-only" if row.read_only else "read+act"
            self.stdout.write(
                f"{row.name}\t{row.user.username}\t{access}\texpires {expires}\tlast used {used}\t{state}"
            )

    def _revoke(self, name: str, **_: Any) -> None:
        row = ApiToken.objects.filter(name=name).first()
        if row is None:
            raise CommandError(f"token: no token named {name!r}")
        if not tokens.revoke(row):
            raise CommandError(f"token: {name} was revoked already")
        self.stdout.write(f"token {name} revoked")
