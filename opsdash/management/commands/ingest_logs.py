"""``manage.py ingest_logs FILE|- [--year YYYY] [--host NAME]``: record the Node server's recoveries."""

from __future__ import annotations

import gzip
import sys
from contextlib import AbstractContextManager, nullcontext
from typing import IO, Any

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError, CommandParser

from ...services.ingest import ingest

# eventstore.serverlog keeps the first 2,000 characters of a line; the rest of a longer one is
# skipped while reading, so a log with a huge line (a run of NUL bytes, a dumped payload) costs
# no memory (iterating the file would hold the whole line).
MAX_LINE_BYTES = 64 * 1024


def capped_lines(fh: IO[bytes], limit: int = MAX_LINE_BYTES):
    """The file's lines, each cut to ``limit`` bytes."""
    while line := fh.readline(limit):
        if len(line) == limit and not line.endswith(b"\n"):
            while (rest := fh.readline(1 << 20)) and not rest.endswith(b"\n"):
                pass
        yield line


class Command(BaseCommand):
    help = (
        "Read a Node server log (journald or pm2 text, .gz too; - for stdin) and record each recovery and failed "
        "recovery it reports. Running it again on the same log records nothing new."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("file", metavar="FILE|-", help="the log file, or - to read standard input")
        parser.add_argument(
            "--year", type=int, help="year of journald's short timestamps, which print none (default: this year)"
        )
        parser.add_argument("--host", help="the store host that wrote the log (default: OPSDASH_HOST_NAME)")

    def handle(self, *args: Any, **options: Any) -> None:
        path, host = options["file"], options["host"] or settings.OPSDASH_HOST_NAME
        try:
            with self._open(path) as lines:
                report = ingest(capped_lines(lines), source=path, host=host, year=options["year"])
        except (OSError, EOFError) as exc:
            raise CommandError(f"ingest_logs: cannot read {path}: {getattr(exc, 'strerror', None) or exc}") from None
        self.stdout.write(report.summary())

    def _open(self, path: str) -> AbstractContextManager[IO[bytes]]:
        if path == "-":
            return nullcontext(sys.stdin.buffer)  # not closed: stdin is not ours
        if path.endswith(".gz"):
            return gzip.open(path, "rb")
        return open(path, "rb")
