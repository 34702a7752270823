"""Path rules and file names of the Mishkah OS on-disk layout: the one place that builds paths.

Nothing here touches a file except :func:`is_inside`, which resolves paths to check containment.
"""

from __future__ import annotations

import os
import re
from datetime import UTC, datetime
from pathlib import Path

from .errors import InvalidName

LOG_NAME = "events.log"
META_NAME = "events.meta.json"
REJECTED_NAME = "events.rejected.log"
LOCK_NAME = "events.lock"
MODULES_DIR = "modules"
LIVE_DIR = "live"
HISTORY_EVENTS = ("history", "events")

MAX_NAME_LENGTH = 128

META_BACKUP_RE = re.compile(r"^events\.meta\.json\.corrupted\.(\d{1,16})\.bak$")
LOG_FRAGMENT_RE = re.compile(r"^events\.log\.torn\.(\d{1,16})\.bak$")
TEMP_RE = re.compile(r"^events\.meta\.json\.tmp\.(\d{1,16})\.([0-9a-z]{1,32})$")

_FORBIDDEN = re.compile(r"[/\\\x00-\x1f\x7f]")
# A lone surrogate: a byte of a file name that is not UTF-8 (Python's surrogateescape), or one
# typed in. No database, page or JSON document can hold such a name as text.
_NOT_UTF8 = re.compile("[\ud800-\udfff]")


def check_name(name: object, what: str = "name") -> str:
    """Return ``name`` if it is a safe single path component, else raise :class:`InvalidName`.

    Refused: non-strings, empty, ``.`` and ``..``, a leading dot, slashes and backslashes,
    NUL and other control characters, more than 128 characters.
    """
    if not isinstance(name, str):
        raise InvalidName(f"{what} must be a string")
    if not name:
        raise InvalidName(f"{what} is empty")
    if len(name) > MAX_NAME_LENGTH:
        raise InvalidName(f"{what} is longer than {MAX_NAME_LENGTH} characters")
    if name.startswith("."):
        raise InvalidName(f"{what} {name!r} starts with a dot")
    if _FORBIDDEN.search(name):
        raise InvalidName(f"{what} {name!r} contains a slash, a backslash or a control character")
    if _NOT_UTF8.search(name):
        raise InvalidName(f"{what} '{printable(name)}' is not valid UTF-8")
    return name


def printable(text: str) -> str:
    """``text`` safe to show and to store anywhere: each byte that is not UTF-8 as ``\\xNN``,
    each control, format (bidi overrides) or separator character as ``\\uNNNN``."""
    out = []
    for ch in text:
        code = ord(ch)
        if 0xDC80 <= code <= 0xDCFF:  # surrogateescape: the byte code - 0xDC00
            out.append(f"\\x{code - 0xDC00:02x}")
        elif 0xD800 <= code <= 0xDFFF or not (ch.isprintable() or ch == " "):
            out.append(f"\\u{code:04x}" if code <= 0xFFFF else f"\\U{code:08x}")
        else:
            out.append(ch)
    return "".join(out)


def module_dir(root: str | os.PathLike[str], branch: str, module: str) -> str:
    """``<root>/<branch>/modules/<module>`` as a plain string (a scan builds thousands), the
    names checked by :func:`check_name`."""
    return os.path.join(root, check_name(branch, "branch"), MODULES_DIR, check_name(module, "module"))


def live_dir(root: Path, branch: str, module: str) -> Path:
    return Path(module_dir(root, branch, module), LIVE_DIR)


def history_dir(root: Path, branch: str, module: str) -> Path:
    return Path(module_dir(root, branch, module), *HISTORY_EVENTS)


def meta_backup_name(epoch_ms: int) -> str:
    return f"{META_NAME}.corrupted.{epoch_ms}.bak"


def log_fragment_name(epoch_ms: int) -> str:
    return f"{LOG_NAME}.torn.{epoch_ms}.bak"


def temp_name(epoch_ms: int, token: str) -> str:
    return f"{META_NAME}.tmp.{epoch_ms}.{token}"


def backup_kind(name: str) -> str | None:
    """``"meta"`` for a meta backup, ``"log-fragment"`` for a torn-tail backup, else None."""
    if META_BACKUP_RE.match(name):
        return "meta"
    if LOG_FRAGMENT_RE.match(name):
        return "log-fragment"
    return None


def backup_time(name: str) -> datetime | None:
    """The UTC time encoded in a backup's name (epoch milliseconds), or None."""
    m = META_BACKUP_RE.match(name) or LOG_FRAGMENT_RE.match(name)
    if not m:
        return None
    try:
        return datetime.fromtimestamp(int(m.group(1)) / 1000, tz=UTC)
    except (OverflowError, OSError, ValueError):
        return None


def temp_time_ms(name: str) -> int | None:
    m = TEMP_RE.match(name)
    return int(m.group(1)) if m else None


def rotated_log_name(day: str, last_event_at: str) -> str:
    """Node's history name: ``<YYYY-MM-DD>-<lastEventAt with ':' and '.' replaced by '-'>.log``."""
    stamp = last_event_at.replace(":", "-").replace(".", "-")
    return check_name(f"{day}-{stamp}.log", "history file name")


def is_inside(root: Path, path: Path) -> bool:
    """True if ``path``, with every symlink resolved, lies inside ``root`` (also resolved)."""
    try:
        real_root = Path(os.path.realpath(root))
        real = Path(os.path.realpath(path))
    except (OSError, ValueError):
        return False
    return real == real_root or real_root in real.parents
