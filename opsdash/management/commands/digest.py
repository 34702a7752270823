"""``manage.py digest [--hours N]``: the daily digest for managers (run it once a day: cron or a
systemd timer)."""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandParser

from ...services.digest import send


class Command(BaseCommand):
    help = (
        "Send the digest of the last day (per branch: modules by status, incidents opened and ended, the "
        "slowest repairs, what is acknowledged or silenced) to OPSDASH_DIGEST_EMAILS and the channels of the "
        "digest event; print it."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--hours", type=int, default=24, help="the period it covers (default 24)")

    def handle(self, *args: Any, **options: Any) -> None:
        digest, alert = send(hours=max(1, options["hours"]))
        self.stdout.write(digest.subject())
        for line in digest.lines():
            self.stdout.write(line)
        receivers = list(alert.deliveries.values_list("receiver", flat=True))
        self.stdout.write(f"sent to {len(receivers)} receiver(s): {', '.join(receivers) or 'none configured'}")
