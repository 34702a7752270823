"""Demo users in their role groups (the groups themselves come from a migration)."""

from __future__ import annotations

import importlib
import secrets

from django.apps import apps
from django.contrib.auth.models import Group, User

# Each role is a group (migrations 0002 and 0003 give them their permissions).
ROLE_GROUPS = {"manager": "managers", "operator": "operators", "auditor": "auditors"}
DEMO_USERS = ROLE_GROUPS  # the demo user of each role is named after it


def ensure_role_groups() -> None:
    """The role groups and their permissions, as migrations 0002, 0003, 0023 and 0024 create them
    (again, where a test database was emptied after the migrations ran)."""
    importlib.import_module("opsdash.migrations.0002_groups").create_groups(apps, None)
    importlib.import_module("opsdash.migrations.0003_roles").grant(apps, None)
    importlib.import_module("opsdash.migrations.0023_event_browser").grant(apps, None)
    importlib.import_module("opsdash.migrations.0024_mutes_maintenance_channels").grant(apps, None)


def ensure_demo_users(password: str | None = None) -> str:
    """Create or reset ``manager``, ``operator`` and ``auditor``, each only in its own group.

    All three get ``password`` (a random one when None), which is returned.
    """
    password = password or secrets.token_urlsafe(12)
    ensure_role_groups()
    for username, group_name in DEMO_USERS.items():
        user, _ = User.objects.get_or_create(username=username)
        user.set_password(password)
        user.is_staff = False
        user.is_superuser = False
        user.save()
        user.groups.set([Group.objects.get(name=group_name)])
    return password


def set_role(user: User, role: str | None) -> None:
    """Give ``user`` exactly the group of ``role`` (None: no role at all)."""
    ensure_role_groups()
    user.groups.set([Group.objects.get(name=ROLE_GROUPS[role])] if role else [])
