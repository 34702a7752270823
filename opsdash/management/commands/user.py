"""``manage.py user NAME --role manager|operator|auditor [--password PW] [--branches a,b]``: create
a user with a role, or change an existing user's role (a user has exactly one role group), and
limit it to some branches (no ``--branches``: every branch)."""

from __future__ import annotations

import secrets
from typing import Any

from django.contrib.auth.models import User
from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.db import transaction

from ...services.access import limit_user
from ...services.users import ROLE_GROUPS as ROLES
from ...services.users import set_role


class Command(BaseCommand):
    help = "Create a user with a role, or change a user's role (and optionally password)."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("username")
        parser.add_argument("--role", required=True, choices=sorted(ROLES))
        parser.add_argument("--password", help="new password (default for a new user: a random one, printed)")
        parser.add_argument(
            "--branches", default="", help="comma-separated branches the user may see (default: every branch)"
        )

    def handle(self, *args: Any, username: str, role: str, password: str | None, branches: str, **options: Any) -> None:
        username = username.strip()
        if not username or len(username) > 150:
            raise CommandError("user: the name must be 1 to 150 characters")
        with transaction.atomic():
            user, created = User.objects.get_or_create(username=username)
            generated = None
            if created and not password:
                generated = password = secrets.token_urlsafe(12)
            if password:
                user.set_password(password)
            user.is_superuser = False
            user.is_staff = False
            user.save()
            set_role(user, role)
            limit_user(user, branches.split(","))
        verb = "created" if created else "updated"
        where = (
            f"branches {', '.join(sorted({b.strip() for b in branches.split(',') if b.strip()}))}"
            if branches.strip()
            else "every branch"
        )
        self.stdout.write(f"{verb} user {username} with role {role} (group {ROLES[role]}), {where}")
        if generated:
            self.stdout.write(f"password: {generated}")
