"""The library's one clock: every time it writes into a file or a file name, or measures an age
against, is read here (tests freeze it by replacing these functions on this module)."""

from __future__ import annotations

import time
from datetime import UTC, datetime


def now() -> float:
    """Seconds since the epoch (file ages: temp files, the racily-clean window of a check)."""
    return time.time()


def now_ms() -> int:
    """Epoch milliseconds, as Node's ``Date.now()`` (temp and backup file names)."""
    return time.time_ns() // 1_000_000


def iso_now() -> str:
    """UTC now as Node's ``new Date().toISOString()``: milliseconds and ``Z``."""
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def today() -> str:
    """Today's UTC date, ``YYYY-MM-DD`` (the day a rotation closes)."""
    return datetime.now(UTC).date().isoformat()
