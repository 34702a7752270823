"""``manage.py demo --data-root PATH [--password PW]``: demo data, demo users, and a first scan."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.db import transaction

from eventstore import EventStore
from eventstore.demo import write_demo_root

from ...models import ModuleState
from ...services.host import serving
from ...services.scan import Read, scan_module
from ...services.scanner import run_pass
from ...services.users import DEMO_USERS, ensure_demo_users

# The healthy module whose log the demo changes in place after the first scan.
BIT_ROT = ("alexandria", "kds")


def _bit_rot(root: Path) -> str:
    """After the first scan, change one digit inside a string in the middle of a healthy log,
    keeping its size and times (what bit rot or a careful hand edit leaves: every line still
    parses), and read that module in full as the scrub would: the demo shows
    ``log_changed_in_place`` too, and Accept the log as it is."""
    branch, name = BIT_ROT
    module = EventStore(root).module(branch, name)
    data = bytearray(module.log_path.read_bytes())
    at = next(i for i in range(len(data) // 2, len(data)) if data[i : i + 1].isdigit() and data[i - 1 : i] != b":")
    data[at] = ord("0") + (data[at] - ord("0") + 1) % 10
    stat = module.log_path.stat()
    with open(module.log_path, "r+b") as f:
        f.write(bytes(data))
    os.utime(module.log_path, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    row = ModuleState.objects.get(branch=branch, module=name)
    row = scan_module(row, read=Read(full=True))
    return f"{branch}/{name}: byte {at} of its log changed in place (bit rot, for the demo); read in full: {row.status}"


class Command(BaseCommand):
    help = "Write a demo Mishkah data root (every kind of damage), create the demo users and scan it."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--data-root", required=True, type=Path, help="folder to create (must be missing or empty)")
        parser.add_argument("--password", help="password of the demo users (default: a random one, printed)")
        parser.add_argument("--seed", type=int, default=2025, help="random seed of the demo data")
        parser.add_argument("--events-per-module", type=int, default=240)
        parser.add_argument("--host", help="the host the demo data belongs to (default OPSDASH_HOST_NAME)")

    def handle(self, *args: Any, **options: Any) -> None:
        root = Path(options["data_root"]).resolve()
        try:
            summary = write_demo_root(root, seed=options["seed"], events_per_module=options["events_per_module"])
        except FileExistsError as exc:
            raise CommandError(str(exc)) from None
        damaged = sum(1 for what in summary["modules"].values() if what != "healthy")
        self.stdout.write(
            f"demo data root {root}: {len(summary['modules'])} modules, {summary['events']} events, {damaged} with damage"
        )
        with transaction.atomic():
            password = ensure_demo_users(options["password"])
        with serving(options["host"], root):
            self.stdout.write(run_pass().line())
            self.stdout.write(_bit_rot(root))
        self.stdout.write(f"users {', '.join(DEMO_USERS)} (groups {', '.join(DEMO_USERS.values())})")
        if not options["password"]:
            self.stdout.write(f"password: {password}")
        self.stdout.write(
            f"set OPSDASH_DATA_ROOT={root} for the web server and the scanner (or agent --data-root {root})"
        )
