"""``manage.py ingest_logs FILE|- [--year YYYY] [--host NAME]``: record the Node server's recoveries.

``--follow FILE`` or ``--follow --journal UNIT`` keeps reading as the log grows (services.follow),
until SIGTERM/SIGINT, and resumes where it stopped after a restart; ``--once`` with it reads what
is new and exits.
"""

from __future__ import annotations

import gzip
import signal
import sys
import threading
from contextlib import AbstractContextManager, nullcontext
from pathlib import Path
from typing import IO, Any

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError, CommandParser

from ...services.follow import FileFollower, FollowError, JournalFollower, Sink, default_state_path, state_lock
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
        "recovery it reports. Running it again on the same log records nothing new. With --follow, keep reading "
        "the file (or the journal of --journal UNIT) as it grows, until SIGTERM."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("file", metavar="FILE|-", nargs="?", help="the log file, or - to read standard input")
        parser.add_argument(
            "--year", type=int, help="year of journald's short timestamps, which print none (default: this year)"
        )
        parser.add_argument("--host", help="the store host that wrote the log (default: OPSDASH_HOST_NAME)")
        parser.add_argument(
            "--follow",
            action="store_true",
            help="keep reading as the log grows and is rotated, until SIGTERM/SIGINT; resume where the last run stopped",
        )
        parser.add_argument(
            "--journal", metavar="UNIT", help="with --follow: read journalctl -u UNIT instead of a file"
        )
        parser.add_argument(
            "--state",
            metavar="PATH",
            help="with --follow: where the position is kept (default var/ingest_logs-<file or unit>.json)",
        )
        parser.add_argument(
            "--once", action="store_true", help="with --follow: read what is there now, save the position, exit"
        )

    def handle(self, *args: Any, **options: Any) -> None:
        if options["follow"]:
            self._follow(options)
            return
        for name in ("journal", "state", "once"):
            if options[name]:
                raise CommandError(f"ingest_logs: --{name} goes with --follow")
        if options["file"] is None:
            raise CommandError("ingest_logs: which log? Give a FILE, or - for standard input")
        path, host = options["file"], options["host"] or settings.OPSDASH_HOST_NAME
        try:
            with self._open(path) as lines:
                report = ingest(capped_lines(lines), source=path, host=host, year=options["year"])
        except (OSError, EOFError) as exc:
            raise CommandError(f"ingest_logs: cannot read {path}: {getattr(exc, 'strerror', None) or exc}") from None
        self.stdout.write(report.summary())

    def _follow(self, options: dict[str, Any]) -> None:
        file, unit = options["file"], options["journal"]
        if (file is None) == (unit is None):
            raise CommandError("ingest_logs --follow: give a FILE or --journal UNIT (one of them)")
        if file is not None and (file == "-" or file.endswith(".gz")):
            raise CommandError(
                "ingest_logs --follow: standard input and .gz files do not grow; read them without --follow"
            )
        state = Path(options["state"]) if options["state"] else default_state_path(settings.VAR_DIR, file, unit)
        stop = threading.Event()
        sink = Sink(
            source=file if unit is None else f"journalctl -u {unit}",
            host=options["host"] or settings.OPSDASH_HOST_NAME,
            state_path=state,
            stop=stop,
            say=self.stdout.write,
            year=options["year"],
            retry=not options["once"],
        )
        if unit is None:
            follower: FileFollower | JournalFollower = FileFollower(
                Path(file), sink, once=options["once"], warn=self.stderr.write
            )
        else:
            follower = JournalFollower(unit, sink, once=options["once"], warn=self.stderr.write)
        if not options["once"]:
            for sig in (signal.SIGTERM, signal.SIGINT):
                signal.signal(sig, lambda *_: stop.set())
            self.stdout.write(f"ingest_logs: following {sink.source} (state {state})")
        try:
            with state_lock(state):
                total = follower.run()
        except FollowError as exc:
            raise CommandError(f"ingest_logs: {exc}") from None
        except OSError as exc:
            raise CommandError(f"ingest_logs: cannot read {sink.source}: {exc.strerror or exc}") from None
        self.stdout.write(f"ingest_logs {sink.source}: {'read' if options['once'] else 'stopped'}; {total.summary()}")

    def _open(self, path: str) -> AbstractContextManager[IO[bytes]]:
        if path == "-":
            return nullcontext(sys.stdin.buffer)  # not closed: stdin is not ours
        if path.endswith(".gz"):
            return gzip.open(path, "rb")
        return open(path, "rb")
