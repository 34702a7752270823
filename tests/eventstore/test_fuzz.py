"""Fuzzing of every parser of damaged input: no exception may escape.

Targets: the meta parser (``meta.parse``, ``problems``, ``with_defaults``, ``dumps`` of what was
parsed), the salvage of a damaged meta (``salvage_prefix``), the log reader (``summarize`` and
``scan_range`` at any chunk size, the parallel split and merge, ``resume`` of an incremental
scan, ``read_tail``, ``tail_lines``), the Node server-log parser (``serverlog.parse``), and
``Module.check()`` / ``rebuild()`` on whole module folders of fuzzed files.

Inputs are documents of the real Mishkah OS shape (generated here and by the conftest helpers,
never copied from the production sample), then mutated: byte and bit flips, truncation,
deleted or repeated ranges, inserted NUL bytes, invalid UTF-8, a BOM, CRLF endings, huge
numbers, ``NaN``/``Infinity``, deep nesting, duplicate keys, values of the wrong type, splices
of two documents and the overlap of two concurrent writes. Besides "never raises", cheap
invariants are asserted: positions within bounds, the single-pass log scan equal to a reference
written here apart from the library's reader (the whole file split at newlines, the sequences in
a set), to a scan in tiny chunks, to the parallel split + merge and to an incremental resume;
a salvaged meta serialises and parses again; a check yields known codes and a plain-JSON health.

Two fuzzers:

* hypothesis tests (structured strategies, then mutations; failures shrink).
  ``OPSDASH_FUZZ_EXAMPLES`` sets ``max_examples`` (default 100).
* a fast deterministic mutation fuzzer (plain ``random``, in process, no subprocess) that runs
  ``OPSDASH_FUZZ_INPUTS`` inputs (default 120,000) from the seed ``OPSDASH_FUZZ_SEED`` (default:
  a new random seed each run), so that successive CI runs cover different inputs: millions
  across runs. It prints and writes its tally to ``test-artifacts/fuzz.txt``, e.g.
  ``fuzz: 120,000 inputs (meta 48,000, ...), seed 123, no exception escaped (45.0 s)``, and
  saves each failing input to ``test-artifacts/fuzz-fail-<target>-<seed>-<index>.bin``.

The defaults take about a minute on a shared 2-core machine (``-n`` of pytest-xdist spreads the
hypothesis tests, the mutation fuzzer is one test). A long run (about 35 minutes)::

    OPSDASH_FUZZ_INPUTS=5000000 OPSDASH_FUZZ_EXAMPLES=2000 \\
        .venv/bin/python -m pytest tests/eventstore/test_fuzz.py -s

Replay a failure: ``OPSDASH_FUZZ_SEED=<its seed>`` with ``OPSDASH_FUZZ_INPUTS`` at least as large
(each target draws from its own generator, so input ``i`` of a target is the same for any larger
count). Inputs that once made an exception escape are plain tests in test_fuzz_regressions.py.
"""

from __future__ import annotations

import io
import json
import os
import random
import re
import shutil
import tempfile
import time
import traceback
import unicodedata
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from eventstore import CODES, EventStore, health, layout, serverlog, state
from eventstore import log as logmod
from eventstore import meta as metamod
from eventstore.checkpoints import SEGMENT
from eventstore.errors import ConcurrentModification, StoreBusy
from eventstore.health import STATUSES, status_of
from tests.eventstore.conftest import REPO, line_bytes, make_lines, meta_bytes, node_meta

EXAMPLES = int(os.environ.get("OPSDASH_FUZZ_EXAMPLES", "100"))
INPUTS = int(os.environ.get("OPSDASH_FUZZ_INPUTS", "120000"))
_SEED_ENV = os.environ.get("OPSDASH_FUZZ_SEED", "").strip()
SEED = int(_SEED_ENV) if _SEED_ENV else random.SystemRandom().randrange(1 << 32)
ARTIFACTS = REPO / "test-artifacts"

FUZZ = settings(
    max_examples=EXAMPLES,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.filter_too_much],
)

BRANCH, MODULE = "dar", "pos"
BOM = metamod.UTF8_BOM


# ---------------------------------------------------------------------------------------------
# Choices: one set of mutators, driven by random.Random (fast) or by hypothesis (shrinkable).


class Rng:
    def __init__(self, rnd: random.Random):
        self.r = rnd

    def int(self, lo: int, hi: int) -> int:
        return self.r.randint(lo, hi)

    def choice(self, seq):
        return seq[self.r.randrange(len(seq))]

    def binary(self, n: int) -> bytes:
        return self.r.randbytes(self.r.randint(0, n))

    def chance(self, p: float) -> bool:
        return self.r.random() < p


class Draw(Rng):
    def __init__(self, draw):
        self.d = draw

    def int(self, lo: int, hi: int) -> int:
        return self.d(st.integers(lo, hi))

    def choice(self, seq):
        return seq[self.d(st.integers(0, len(seq) - 1))]

    def binary(self, n: int) -> bytes:
        return self.d(st.binary(max_size=n))

    def chance(self, p: float) -> bool:
        return self.d(st.integers(0, 999)) < p * 1000


# ---------------------------------------------------------------------------------------------
# Mutations.

# Bytes that break parsers: NUL, invalid UTF-8 (lone continuation, truncated sequence, overlong,
# encoded surrogate, beyond U+10FFFF), BOM, line ends, JSON syntax, escapes, non-JSON constants,
# numbers beyond every range, deep nesting, a JS-visible Unicode line separator, Arabic digits.
TOKENS: tuple[bytes, ...] = (
    b"\x00",
    b"\x00" * 17,
    b"\xff",
    b"\x80",
    b"\xc3",
    b"\xe2\x82",
    b"\xc0\xaf",
    b"\xed\xa0\x80",
    b"\xf4\x90\x80\x80",
    BOM,
    b"\r",
    b"\r\n",
    b"\n",
    b"\n\n",
    b"\n\r\n",
    b" ",
    b"\t",
    b"\x0b\x0c",
    b'"',
    b"'",
    b"{",
    b"}",
    b"[",
    b"]",
    b",",
    b":",
    b"\\",
    b"\\u",
    b"\\ud800",
    b"\\udc00",
    b"\\u0000",
    b"\\x41",
    b"NaN",
    b"Infinity",
    b"-Infinity",
    b"1e400",
    b"-1e400",
    b"1e-400",
    b"-0",
    b"0.0e0",
    b"01",
    b"9" * 5000,
    b"18446744073709551616",
    b"-9223372036854775809",
    b"134217728",
    b"134217729",
    b"99999999",
    b"[" * 1100,
    b'{"a":' * 1100,
    b"[" * 100_000,
    b"]" * 50,
    b"}" * 50,
    b"null",
    b"true",
    b"false",
    b"{}",
    b"[]",
    b'""',
    b'{"a":1,"a":2}',
    "\u2028".encode(),
    "٣٤".encode(),
    "أحمد".encode(),
    b"\xef\xbf\xbd",
    b'\n  "totalEvents": 1,',
    b'\n  "tableCursors": null,',
    b"\n}\n}\n",
)

# JSON values that a fuzzed document may carry at any place (raw ones are spliced in as text).
ODD_VALUES: tuple[Any, ...] = (
    None,
    True,
    False,
    0,
    -1,
    1,
    1.5,
    -0.0,
    1e308,
    5e-324,
    2**27,
    2**27 + 1,
    2**53 + 1,
    2**63 - 1,
    2**63,
    2**64 - 1,
    2**64,
    10**30,
    -(2**63) - 1,
    "",
    "\x00",
    "a\x00b",
    "\ud800",
    "\udcff",
    "\u2028",
    "١٢",
    "evt-" + "x" * 3000,
    [],
    {},
    [None],
    [[]],
    [1, [2, [3]]],
    {"id": None},
    {"key": [1, {}]},
    {"primaryKey": {"id": 7}},
)
RAW_VALUES: tuple[bytes, ...] = (
    b"NaN",
    b"Infinity",
    b"-Infinity",
    b"1e400",
    b"-1e400",
    b"9" * 5000,
    b"-" + b"9" * 400,
    b"1" + b"0" * 30,
    b"[" * 300 + b"]" * 300,
    b"[" * 950 + b"1" + b"]" * 950,
    b"[" * 1020 + b"]" * 1020,
    b"[" * 1100 + b"]" * 1100,
    b'{"a":' * 600 + b"1" + b"}" * 600,
    b"[" * 100_000 + b"]" * 100_000,
)
_MARK = "\u0001raw:{}\u0001"


def _deep_paths(value: Any, limit: int = 400) -> list[tuple]:
    """Paths to the nodes of a JSON value (breadth first, capped), the root excluded."""
    out: list[tuple] = []
    queue: list[tuple[tuple, Any]] = [((), value)]
    while queue and len(out) < limit:
        path, node = queue.pop(0)
        items = node.items() if isinstance(node, dict) else enumerate(node) if isinstance(node, list) else ()
        for k, v in items:
            out.append(path + (k,))
            if isinstance(v, (dict, list)):
                queue.append((path + (k,), v))
    return out


def _get(value: Any, path: tuple) -> Any:
    for k in path:
        value = value[k]
    return value


def mutate_value(value: Any, c: Rng) -> Any:
    """Change one node of a JSON value (a copy): an odd value, a raw token, a deletion, a rename,
    a duplicated key. Raw tokens are left as markers that :func:`serialise` replaces."""
    value = json.loads(json.dumps(value))
    paths = _deep_paths(value)
    if not paths:
        return c.choice(ODD_VALUES)
    path = c.choice(paths)
    parent, key = _get(value, path[:-1]), path[-1]
    kind = c.int(0, 5)
    if kind == 0:
        parent[key] = c.choice(ODD_VALUES)
    elif kind == 1:
        parent[key] = _MARK.format(c.int(0, len(RAW_VALUES) - 1))
    elif kind == 2:
        del parent[key]
    elif kind == 3 and isinstance(parent, dict):
        new = c.choice(("id", "key", "sequence", "table", "totalEvents", "", "\x00", key + "x"))
        parent[new] = parent.pop(key)
    elif kind == 4 and isinstance(parent, dict):
        parent[key] = _MARK.format("dup:" + json.dumps(key))  # the key twice (see serialise)
    else:
        parent[key] = [parent[key]] if c.chance(0.5) else {"id": parent[key], "key": parent[key]}
    return value


def serialise(value: Any, c: Rng, indent: int | None) -> bytes:
    """JSON text as Node writes it (2-space indent for a meta, compact for a log line), non-ASCII
    kept or escaped, lone surrogates as raw (invalid UTF-8) or escaped, raw markers spliced in."""
    ascii_ = c.chance(0.3)
    sep = (",", ": ") if indent else (",", ":")
    text = json.dumps(value, ensure_ascii=ascii_, indent=indent, separators=sep)
    for raw_key in _marks(text):
        needle = json.dumps(_MARK.format(raw_key), ensure_ascii=ascii_)
        if raw_key.startswith("dup:"):
            text = text.replace(needle, "1, " + raw_key[4:] + ": 2")
        else:
            text = text.replace(needle, RAW_VALUES[int(raw_key)].decode())
    return text.encode("utf-8", "surrogatepass")


def _marks(text: str) -> set[str]:
    """The raw markers in a JSON text (json.dumps always escapes their U+0001 as \\u0001)."""
    start, stop = r"\u0001raw:", r"\u0001"
    out, pos = set(), text.find(start)
    while pos >= 0:
        end = text.find(stop, pos + len(start))
        out.add(json.loads(f'"{text[pos + len(start) : end]}"'))
        pos = text.find(start, end + len(stop))
    return out


def _range(d: bytes, c: Rng, most: int = 256) -> tuple[int, int]:
    a = c.int(0, len(d))
    return a, c.int(a, min(len(d), a + most))


def op_flip(d: bytes, c: Rng, others) -> bytes:
    if not d:
        return d
    i = c.int(0, len(d) - 1)
    x = (1 << c.int(0, 7)) if c.chance(0.5) else c.int(1, 255)
    return d[:i] + bytes([d[i] ^ x]) + d[i + 1 :]


def op_truncate(d: bytes, c: Rng, others) -> bytes:
    return d[: c.int(0, len(d))]


def op_delete(d: bytes, c: Rng, others) -> bytes:
    a, b = _range(d, c)
    return d[:a] + d[b:]


def op_repeat(d: bytes, c: Rng, others) -> bytes:
    a, b = _range(d, c)
    return d[:b] + d[a:b] * c.int(1, 3) + d[b:]


def op_insert(d: bytes, c: Rng, others) -> bytes:
    tok = c.choice(TOKENS) if c.chance(0.8) else c.binary(24)
    i = c.int(0, len(d))
    return d[:i] + tok + d[i:]


def op_overwrite(d: bytes, c: Rng, others) -> bytes:
    tok = c.choice(TOKENS) if c.chance(0.6) else c.binary(24)
    i = c.int(0, len(d))
    return d[:i] + tok + d[i + len(tok) :]


def op_nul_run(d: bytes, c: Rng, others) -> bytes:
    """A run of NULs over the data: what a power loss leaves in a file's last block."""
    a, b = _range(d, c, 4096)
    return d[:a] + b"\x00" * (b - a) + d[b:]


def op_bom(d: bytes, c: Rng, others) -> bytes:
    return BOM + d


def op_line_ends(d: bytes, c: Rng, others) -> bytes:
    k = c.int(0, 3)
    if k == 0:
        return d.replace(b"\n", b"\r\n")
    if k == 1:
        return d.replace(b"\n", b"\r")
    if k == 2:
        return d.replace(b"\n", b"\n\n  \n")
    return d.rstrip(b"\n") if c.chance(0.5) else d + b"\n" * c.int(1, 3)


def op_number(d: bytes, c: Rng, others) -> bytes:
    """Replace a run of digits by a number out of range (or not a number)."""
    digits = [i for i in range(min(len(d), 4000)) if 48 <= d[i] <= 57]
    if not digits:
        return op_insert(d, c, others)
    i = c.choice(digits)
    j = i
    while j < len(d) and 48 <= d[j] <= 57:
        j += 1
    return d[:i] + c.choice(RAW_VALUES[:8] + (b"18446744073709551616", b"134217729", b"0", b"-1", b"1.5")) + d[j:]


def op_dup_key(d: bytes, c: Rng, others) -> bytes:
    """Insert a duplicate of a known key right after an opening brace."""
    braces = [i for i in range(min(len(d), 4000)) if d[i] == 0x7B]
    if not braces:
        return op_insert(d, c, others)
    i = c.choice(braces) + 1
    key = c.choice(
        (b'"totalEvents"', b'"lastEventId"', b'"tableCursors"', b'"sequence"', b'"id"', b'"table"', b'"record"')
    )
    val = c.choice((b"0", b"-1", b"null", b'"x"', b"{}", b"[]", b"99999999999999999999", b"4.5"))
    return d[:i] + key + b":" + val + b"," + d[i:]


def op_splice(d: bytes, c: Rng, others) -> bytes:
    o = c.choice(others)
    return d[: c.int(0, len(d))] + o[c.int(0, len(o)) :]


def op_overlap(d: bytes, c: Rng, others) -> bytes:
    """Two writers without a lock: the shorter document written over the longer one."""
    o = c.choice(others)
    short, long_ = (d, o) if len(d) <= len(o) else (o, d)
    return short + long_[len(short) :]


def op_replace(d: bytes, c: Rng, others) -> bytes:
    return c.binary(400) if c.chance(0.5) else c.choice(others)


BYTE_OPS: tuple[Callable, ...] = (
    op_flip,
    op_flip,
    op_truncate,
    op_delete,
    op_repeat,
    op_insert,
    op_insert,
    op_overwrite,
    op_nul_run,
    op_bom,
    op_line_ends,
    op_number,
    op_dup_key,
    op_splice,
    op_overlap,
    op_replace,
)


def mutate_bytes(d: bytes, c: Rng, others: list[bytes], most: int = 3) -> bytes:
    for _ in range(c.int(1, most)):
        d = c.choice(BYTE_OPS)(d, c, others)
    return d


# ---------------------------------------------------------------------------------------------
# Documents of the Mishkah shape, then mutated.


def _meta_doc(n: int, seed: int, **extra: Any) -> dict[str, Any]:
    return node_meta(make_lines(n, seed=seed), **extra)


META_VALUES = [
    _meta_doc(0, 0),
    _meta_doc(1, 1),
    _meta_doc(5, 2, lastAckId=None, purgeState={"at": "2025-10-27T00:00:00.000Z", "tables": ["order_line"]}),
    _meta_doc(
        12, 3, lastServedTableIds={"order_header": ["ord-1", "ord-2"]}, lastClientTableIds={"pos-1": {"order_line": 4}}
    ),
    _meta_doc(
        48, 4, lastSnapshotMarker="snap-48", lastClientSyncAt="2025-10-27T12:23:47.665Z", currentDay="2025-10-27"
    ),
    {**_meta_doc(3, 5), "totalEvents": 0, "lastEventId": None, "lastEventAt": None},  # after a rotation
]
META_DOCS = [meta_bytes(m) for m in META_VALUES]

LOG_LINES = [
    make_lines(n, start=s, seed=seed) for n, s, seed in ((1, 1, 0), (3, 1, 1), (6, 1, 2), (12, 40, 3), (30, 1, 4))
]
LOG_DOCS = (
    [b"".join(line_bytes(ln) for ln in lines) for lines in LOG_LINES]
    + [
        b"",
        b"\n\n",
        b"".join(line_bytes(ln) for ln in LOG_LINES[2]).replace(b"\n", b"\r\n"),
        b"".join(line_bytes(ln) for ln in LOG_LINES[2][:3] + LOG_LINES[2][2:]),  # a repeated sequence
        b"".join(line_bytes(ln) for ln in LOG_LINES[2][:2] + LOG_LINES[2][4:]),  # a gap
        b"".join(line_bytes(ln) for ln in LOG_LINES[2])[:-300],  # a torn tail
    ]
)


def mutate_log_lines(lines: list[dict[str, Any]], c: Rng) -> bytes:
    """A log whose lines are structurally mutated (odd values, deep ids, big sequences...)."""
    out = []
    for ln in lines:
        if c.chance(0.3):
            out.append(serialise(mutate_value(ln, c), c, None) + b"\n")
        else:
            out.append(line_bytes(ln))
        if c.chance(0.1):  # what Node's trim() strips and bytes.strip() does not (or a near miss)
            pad = c.choice(_PADS)
            out[-1] = (
                (pad if c.chance(0.5) else b"") + out[-1][:-1] + (c.choice(_PADS) if c.chance(0.5) else b"") + b"\n"
            )
    if c.chance(0.2):
        out.insert(c.int(0, len(out)), c.choice((b"\n", b"  \n", b"\r\n", b"\t\r\n", *(p + b"\n" for p in _PADS))))
    return b"".join(out)


_PADS = tuple(
    ch.encode() for ch in ("\x0b", "\x0c", "\xa0", "\ufeff", "\u2028", "\u3000", "\x1c", "\x85", "\u200b", "\x0b\xa0 ")
)


def fuzzed_meta(c: Rng) -> bytes:
    if c.chance(0.35):
        data = serialise(mutate_value(c.choice(META_VALUES), c), c, 2)
        return mutate_bytes(data, c, META_DOCS) if c.chance(0.3) else data
    return mutate_bytes(c.choice(META_DOCS), c, META_DOCS)


def fuzzed_log(c: Rng) -> bytes:
    if c.chance(0.4):
        data = mutate_log_lines(c.choice(LOG_LINES), c)
        return mutate_bytes(data, c, LOG_DOCS) if c.chance(0.3) else data
    return mutate_bytes(c.choice(LOG_DOCS), c, LOG_DOCS)


# Server logs: journald (short and short-iso), pm2 and bare lines, with recoveries of every outcome.
P = serverlog.TAG + " "
_PREFIXES = (
    lambda c, t: (
        f"Oct {c.int(1, 31):2d} {c.int(0, 23):02d}:{c.int(0, 59):02d}:{c.int(0, 59):02d} pos{c.int(1, 9)} node[{c.int(1, 99999)}]: "
    ),
    lambda c, t: f"{t}+0300 pos1 node[811]: ",
    lambda c, t: f"0|mishkah  | {t}.{c.int(0, 999):03d}+03:00: ",
    lambda c, t: f"{t.replace('T', ' ')} +00:00: ",
    lambda c, t: f"{t}Z ",
    lambda c, t: "",
)
ODD_TIMES = (
    "0001-01-01T00:00:00+05:00",
    "9999-12-31T23:59:59-05:00",
    "2025-02-30T10:00:00Z",
    "2025-10-27T25:61:61Z",
    "2025-10-27T10:00:00+99:99",
    "2025-10-27T10:00:00.1234567891Z",
    "٢٠٢٥-١٠-٢٧T١٠:٠٠:٠٠Z",
    "0000-01-01T00:00:00Z",
    "Feb 30 10:00:00",
    "Feb 29 10:00:00",
    "Dec 31 23:59:59.999999999",
    "Jan  0 00:00:00",
    "Oct 27 99:99:99",
)


def _server_path(c: Rng) -> str:
    branch = c.choice(("dar", "zamalek", "bab", "فرع", "a b", ""))
    module = c.choice(("pos", "kds", "joborders", ".."))
    root = c.choice(("/srv/mishkah/data/branches", "data/branches", "C:\\mishkah\\data\\branches", ""))
    sep = "\\" if root.startswith("C:") else "/"
    return sep.join((root, branch, "modules", module, "live", "events.meta.json"))


def server_log(c: Rng) -> str:
    """A Node server log with a few recoveries among unrelated lines."""
    lines: list[str] = []
    for _ in range(c.int(1, 4)):
        t = f"2025-10-{c.int(1, 31):02d}T{c.int(0, 23):02d}:{c.int(0, 59):02d}:{c.int(0, 59):02d}"
        pre = c.choice(_PREFIXES)
        path = _server_path(c)
        ms = c.choice((1761567827663, 0, 9999999999999999, c.int(0, 2**40)))
        if c.chance(0.2):  # the old build
            msgs = [
                f"JSON parse error: Unexpected token }} in JSON at position {c.int(0, 9999)}",
                f"File path: {path}",
                'Raw content (first 500 chars): {"branchId": "dar",',
            ]
        else:
            msgs = [
                "CORRUPTED FILE DETECTED - Attempting recovery",
                "Error: Unexpected token : in JSON at position 2884",
                f"File path: {path}",
                f"Corrupted file backed up to: {path}.corrupted.{ms}.bak",
                f"File size: {c.int(0, 10**6)} bytes",
                "Attempting to rebuild meta from event log...",
                f"Recovered meta from {c.int(0, 10**6)} events",
            ]
            msgs.append(
                c.choice(("Meta file rebuilt successfully", "Recovery failed: ENOSPC: no space left on device", ""))
            )
        for m in msgs:
            lines.append(pre(c, t) + P + m)
            if c.chance(0.15):
                lines.append(pre(c, t) + "an unrelated line")
    return "\n".join(lines) + "\n"


SERVER_DOCS = [server_log(Rng(random.Random(i))).encode() for i in range(12)]


def mutate_server_lines(text: str, c: Rng) -> bytes:
    """Line-level damage: odd timestamps, huge numbers, long lines, dropped/repeated/reordered lines."""
    lines = text.split("\n")
    for _ in range(c.int(1, 3)):
        if not lines:
            break
        i = c.int(0, len(lines) - 1)
        k = c.int(0, 7)
        if k == 0:
            lines[i] = c.choice(ODD_TIMES) + " " + lines[i].split(" ", 1)[-1]
        elif k == 1:
            lines[i] = re.sub(r"\d+", "9" * c.choice((20, 1999, 2500, 5000)), lines[i], count=1)
        elif k == 2:
            lines[i] = "x" * c.choice((1990, 2000, 2100)) + lines[i]
        elif k == 3:
            del lines[i]
        elif k == 4:
            lines.insert(i, lines[i])
        elif k == 5:
            j = c.int(0, len(lines) - 1)
            lines[i], lines[j] = lines[j], lines[i]
        elif k == 6:
            lines[i] = lines[i] + P + lines[i]
        else:
            lines[i] = lines[i].replace(
                "events.meta.json", c.choice(("", "events.meta.json.corrupted.x.bak", "\x00", "\ud800"))
            )
    return "\n".join(lines).encode("utf-8", "surrogatepass")


def fuzzed_server_log(c: Rng) -> bytes:
    if c.chance(0.5):
        return mutate_server_lines(server_log(c), c)
    return mutate_bytes(c.choice(SERVER_DOCS), c, SERVER_DOCS)


# ---------------------------------------------------------------------------------------------
# Properties of each target (each raises AssertionError, or lets a real exception escape).

SUMMARY_FIELDS = (
    "size",
    "lines",
    "events",
    "bad_line_count",
    "not_object_count",
    "bad_lines",
    "last_event_id",
    "last_event_at",
    "last_sequence",
    "max_sequence",
    "min_sequence",
    "duplicate_count",
    "duplicates",
    "gap_count",
    "gaps",
    "sequence_tracking_limited",
    "lines_seen",
    "torn_tail",
    "table_cursors",
)


def facts(s: logmod.LogSummary) -> dict[str, Any]:
    out = {k: getattr(s, k) for k in SUMMARY_FIELDS}
    out["duplicates"] = sorted(out["duplicates"])  # one pass lists them as met, a merge sorts them
    return out


def check_meta(data: bytes) -> None:
    """parse / problems / with_defaults / dumps never raise; errors point inside the file; what
    parses serialises and parses back, and serialising again changes nothing."""
    value, err = metamod.parse(data)
    if err is not None:
        assert value is None
        text_len = len(metamod.decode_text(data))
        assert 0 <= err.pos <= text_len, (err, text_len)
        assert err.line >= 1 and err.col >= 1, err
        assert err.byte is None or 0 <= err.byte <= len(data), err
        json.dumps(err.to_dict())
        return
    for branch, module in ((None, None), (BRANCH, MODULE)):
        for p in metamod.problems(value, branch=branch, module=module):
            assert p.severity in ("critical", "warning"), p
            assert isinstance(p.message, str)
            # plain JSON once in a finding: the dashboard stores findings with orjson
            finding = health.make("meta_invalid", p.message, p.severity, **p.detail)
            assert not health.FINDING_SPECS["meta_invalid"].problems(finding.detail), finding.detail
            orjson.dumps(finding.to_dict())
    if not isinstance(value, dict):
        return
    full = metamod.with_defaults(value)
    assert full.keys() >= metamod.KNOWN_KEYS
    assert metamod.total_events(full) is not None
    out = metamod.dumps(full)
    again, err2 = metamod.parse(out)
    assert err2 is None and isinstance(again, dict), err2
    assert list(again) == list(full)
    assert metamod.dumps(again) == out


def check_salvage(data: bytes) -> dict[str, Any] | None:
    """salvage_prefix never raises and gives a dict that serialises to a valid meta; for a valid
    document it gives the document."""
    out = metamod.salvage_prefix(data)
    assert out is None or isinstance(out, dict), type(out)
    value, err = metamod.parse(data)
    if err is None and isinstance(value, dict):
        assert out == value
    if out is not None:
        again, err2 = metamod.parse(metamod.dumps(metamod.with_defaults(out)))
        assert err2 is None and isinstance(again, dict), err2
    return out


# JavaScript's String.prototype.trim(), written here from its definition (not from eventstore):
# WhiteSpace (TAB, VT, FF, ZWNBSP and every Zs) and LineTerminator (LF, CR, LS, PS).
JS_TRIM = (
    "".join(chr(c) for c in range(0x110000) if unicodedata.category(chr(c)) == "Zs")
    + "\t\x0b\x0c\ufeff\n\r\u2028\u2029"
)


def node_blank(line: bytes) -> bool:
    """What Node skips: a line read as UTF-8 text that is empty once trimmed."""
    return not line.decode("utf-8", "replace").strip(JS_TRIM)


def reference_facts(data: bytes) -> dict[str, Any]:
    """What a scan must find in ``data``, the slow and obvious way, written here apart from the
    library's line reader and its tracker: the whole file split at "\n", each line trimmed as
    Node does, parsed (``parse_event``), and the sequences kept in a set. (The fuzz inputs are
    far shorter than ``MAX_LINE_BYTES``; overlong lines are tested in test_log.py.)"""
    physical = data.split(b"\n")
    fragment = physical.pop()  # after the last newline
    events: list[Any] = []
    bad: list[dict[str, Any]] = []
    lines, offset, not_objects = 0, 0, 0
    for lineno, raw in enumerate(physical, start=1):
        here, offset = offset, offset + len(raw) + 1
        line = raw[:-1] if raw.endswith(b"\r") else raw
        if node_blank(line):
            continue
        lines += 1
        event, reason = logmod.parse_event(line)
        if event is None:
            value, parses = _reference_value(line)
            if parses:  # JSON but not an object: Node keeps it (counts it) when it is truthy
                not_objects += 1
                if logmod.js_truthy(value):
                    events.append(value)
            bad.append(
                {"line": lineno, "offset": here, "error": reason, "preview": line[:120].decode("utf-8", "replace")}
            )
        else:
            events.append(event)
    torn = None
    tail = fragment[:-1] if fragment.endswith(b"\r") else fragment
    if not node_blank(tail):
        lines += 1
        event, _ = logmod.parse_event(tail)
        torn = {
            "offset": len(data) - len(fragment),
            "length": len(tail),
            "line": len(physical) + 1,
            "parses": event is not None,
        }
        if event is not None:
            events.append(event)
    out = {
        "size": len(data),
        "lines": lines,
        "events": len(events),
        "bad_line_count": len(bad),
        "bad_lines": bad[: logmod.SAMPLE_LIMIT],
        "not_object_count": not_objects,
    }
    out["lines_seen"], out["torn_tail"] = len(physical) + (1 if torn else 0), torn
    last = events[-1] if events and isinstance(events[-1], dict) else {}
    out |= {
        "last_event_id": last.get("id"),
        "last_event_at": logmod.event_time(last) if last else None,
        "last_sequence": last.get("sequence"),
    }
    cursors: dict[str, Any] = {}
    events = [e for e in events if isinstance(e, dict)]  # (the lines Node counts that are not objects apart)
    for event in events:  # the last event of each table that leaves a cursor
        cursor = logmod.cursor_for(event) if isinstance(event.get("table"), str) and event["table"] else None
        if cursor is not None:
            cursors[event["table"]] = cursor
    out["table_cursors"] = cursors
    return out | _reference_sequences([e.get("sequence") for e in events])


def _reference_value(line: bytes) -> tuple[Any, bool]:
    """The line's JSON value as Node's JSON.parse reads it, and whether it parses."""
    try:
        return logmod.node_loads(line), True
    except (ValueError, RecursionError):
        return None, False


def _reference_sequences(found: list[Any]) -> dict[str, Any]:
    seqs = [s for s in found if logmod.is_sequence(s)]
    limited = any(s > logmod.MAX_TRACKED_SEQUENCE for s in seqs)
    seen: set[int] = set()
    duplicates: list[int] = []
    for s in seqs:
        if s > logmod.MAX_TRACKED_SEQUENCE:
            continue
        if s in seen:
            duplicates.append(s)
        seen.add(s)
    gaps, gap_count = [], 0
    if seqs and not limited:
        ordered = sorted(seen)
        for low, high in zip(ordered, ordered[1:], strict=False):
            if high > low + 1:
                gap_count += high - low - 1
                gaps.append([low + 1, high - 1])
    return {
        "max_sequence": max(seqs, default=0),
        "min_sequence": min(seqs, default=0),
        "sequence_tracking_limited": limited,
        "duplicate_count": len(duplicates),
        "duplicates": sorted(duplicates[: logmod.SAMPLE_LIMIT]),
        "gap_count": gap_count,
        "gaps": gaps[: logmod.SAMPLE_LIMIT],
    }


def _merged_in_process(path: Path, size: int, parts: int) -> logmod.LogSummary:
    """``summarize``'s parallel split and merge, with the parts scanned in this process."""
    points = logmod._split_points(path, size, parts)
    results = []
    for a, b in zip(points, points[1:], strict=False):
        if b > a:
            p = logmod.scan_range(str(path), a, b)
            results.append((p, bytes(p._seen)))
    return logmod._merge(results, size)


def check_log(path: Path, data: bytes, c: Rng) -> None:
    """The log reader on one file: bounds, the reference, chunking, merge, resume, tails."""
    path.write_bytes(data)
    size = len(data)
    s = logmod.summarize(path)
    assert s.size == size
    torn_unparsed = 1 if s.torn_tail and not s.torn_tail["parses"] else 0
    # (a line that is JSON but not an object is a bad line, and an event too when Node counts it)
    assert 0 <= s.events + s.bad_line_count + torn_unparsed - s.lines <= s.not_object_count, facts(s)
    assert s.lines <= s.lines_seen <= data.count(b"\n") + 1
    for bad in s.bad_lines:
        assert 0 <= bad["offset"] < size and 1 <= bad["line"] <= s.lines_seen, bad
        line = data[bad["offset"] :].split(b"\n", 1)[0]
        line = line[:-1] if line.endswith(b"\r") else line
        assert bad["preview"] == line[:120].decode("utf-8", "replace"), bad
    if s.torn_tail:
        t = s.torn_tail
        assert t["offset"] >= 0 and t["offset"] + t["length"] <= size and t["line"] == s.lines_seen, t
        assert b"\n" not in data[t["offset"] :]
    if s.events:
        assert s.expected_total >= s.events
    if s.min_sequence:
        assert 1 <= s.min_sequence <= s.max_sequence
        assert all(s.min_sequence <= d <= s.max_sequence for d in s.duplicates)
        assert all(s.min_sequence < a <= b < s.max_sequence for a, b in s.gaps), s.gaps
    json.dumps(s.to_json()), json.dumps(s.seen_json())
    expected = facts(s)
    assert reference_facts(data) == expected

    if c.chance(0.5):  # another chunk size: lines cut at every place
        saved = logmod.CHUNK
        logmod.CHUNK = max(c.int(1, 64), size // c.int(8, 64))  # at most 64 reads
        try:
            assert facts(logmod.summarize(path)) == expected
        finally:
            logmod.CHUNK = saved
    if c.chance(0.5):
        assert facts(_merged_in_process(path, size, c.int(2, 5))) == expected
    if c.chance(0.5):  # an incremental scan: the first part, then only what was appended
        cut = data.find(b"\n", c.int(0, size)) + 1
        path.write_bytes(data[:cut])
        first = logmod.summarize(path, keep_seen=True)
        first = logmod.LogSummary.from_json(json.loads(json.dumps(first.to_json()))).with_seen_json(first.seen_json())
        path.write_bytes(data)
        resumed = logmod.resume(first, path, size)
        assert facts(resumed) == expected

    max_bytes = c.choice((1 << 26, 1 << 26, 100))
    window = max(c.choice((1, 2, 7, 64, 1 << 16)), size // 32)  # at most 32 reads
    tail = logmod.read_tail(path, window=window, max_bytes=max_bytes)
    nl = data.rfind(b"\n")
    fragment_offset = nl + 1
    complete = [ln.rstrip(b"\r") for ln in data[:fragment_offset].split(b"\n")[:-1]]
    last_line = next((ln for ln in reversed(complete) if not node_blank(ln)), None)
    assert tail.size == size
    if tail.last_line is not None or max_bytes >= size:
        assert (tail.fragment_offset, tail.fragment, tail.last_line) == (
            fragment_offset,
            data[fragment_offset:],
            last_line,
        )
    else:  # gave up within max_bytes: the fragment is right when a newline was met
        assert tail.fragment_offset + len(tail.fragment) == size
        assert tail.fragment == data[fragment_offset:] or (tail.fragment == b"" and tail.fragment_offset == size)

    max_bytes = c.choice((1, 10, 500, 3000, 1 << 20))
    lines, whole = logmod.tail_lines(path, max_bytes=max_bytes)
    start = max(0, size - max_bytes)
    want, offset = [], 0
    for ln in data[:fragment_offset].split(b"\n")[:-1]:
        if (start == 0 or offset > start) and not node_blank(ln.rstrip(b"\r")):
            want.append(ln.rstrip(b"\r"))
        offset += len(ln) + 1
    assert (lines, whole) == (want, start == 0)


def check_server_log(data: bytes, c: Rng) -> int:
    """serverlog.parse on bytes lines (as ingest_logs reads a file) and on text lines: never
    raises, the same recoveries either way, plain-JSON results. Returns the recoveries found."""
    year = c.choice((1, 2024, 2025, 9999))
    byte_lines = list(io.BytesIO(data))
    recs = list(serverlog.parse(byte_lines, year=year))
    n = len(byte_lines)
    last = 0
    for rec in recs:
        assert last < rec.line <= n, (rec.line, n)
        last = rec.line
        assert rec.outcome in ("recovered", "failed", "incomplete")
        assert rec.at is None or rec.at.utcoffset().total_seconds() == 0
        assert len(rec.lines) <= serverlog.MAX_LINES_KEPT and all(len(x) <= serverlog.MAX_LINE for x in rec.lines)
        assert rec.size is None or rec.size >= 0
        assert rec.events is None or rec.events >= 0
        assert rec.backup is None or layout.backup_kind(rec.backup)
        assert len(rec.fingerprint) == 64
        json.dumps(rec.to_dict())
    texts = [ln.decode("utf-8", "replace") for ln in byte_lines]
    assert [r.to_dict() for r in serverlog.parse(texts, year=year)] == [r.to_dict() for r in recs]
    try:
        data.decode("utf-8")
    except UnicodeDecodeError:
        # Text read with errors="surrogateescape" (Python's way for undecodable bytes).
        for rec in serverlog.parse([ln.decode("utf-8", "surrogateescape") for ln in byte_lines], year=year):
            json.dumps(rec.to_dict())
    return len(recs)


def _write_module(module, c: Rng, meta: bytes | None, log: bytes | None) -> None:
    live = module.live_dir
    if live.exists():
        shutil.rmtree(live)
    live.mkdir(parents=True)
    if meta is not None:
        module.meta_path.write_bytes(meta)
    if log is not None:
        module.log_path.write_bytes(log)
    if c.chance(0.3):
        (live / layout.meta_backup_name(c.choice((1761567827663, 0, 9999999999999999)))).write_bytes(fuzzed_meta(c))
    if c.chance(0.1):
        (live / layout.temp_name(1761567827663, "abc1")).write_bytes(b"{")


def check_health(h, module) -> None:
    assert h.status in STATUSES and h.status == status_of(h.findings)
    for f in h.findings:
        assert f.code in CODES
        assert f.severity == CODES[f.code][0] or f.code in ("meta_invalid", "log_bad_line"), f
        assert not health.FINDING_SPECS[f.code].problems(f.detail), f.to_dict()  # the declared detail shape
    # What the dashboard does with a health: plain JSON (orjson) for findings and stats, JSON for state.
    orjson.dumps([f.to_dict() for f in h.findings])
    orjson.dumps(h.stats.to_dict())
    json.dumps(h.state)


def _comparable(h) -> dict[str, Any]:
    """A health as a dict, with the duplicate sequences sorted: one pass lists them as met, a
    resumed pass sorted (the same ones while there are at most SAMPLE_LIMIT)."""
    out = h.to_dict()
    for f in out["findings"]:
        if f["code"] == "log_sequence_duplicate":
            del f["message"]
            f["sequences"] = sorted(f["sequences"]) if f["count"] <= logmod.SAMPLE_LIMIT else None
    return out


def check_module_files(module, c: Rng) -> None:
    """check() on fuzzed files never raises; an incremental check after an append agrees with a
    fresh one; the files are left as they were."""
    meta = fuzzed_meta(c) if c.chance(0.8) else None
    log = fuzzed_log(c) if c.chance(0.8) else None
    _write_module(module, c, meta, log)
    h = module.check()
    check_health(h, module)
    if meta is not None:
        module.preview_meta()
        assert module.meta_path.read_bytes() == meta
    for info in module.backups():
        module.preview_backup(info.name)
    if log is not None and c.chance(0.5):
        with open(module.log_path, "ab") as f:
            f.write(c.choice(LOG_DOCS[:3]) if c.chance(0.5) else fuzzed_log(c)[: c.int(0, 3000)])
        again = module.check(previous=h.state)
        fresh = module.check()
        check_health(again, module)
        assert _comparable(again) == _comparable(fresh)
        # an append is no change in place: not for the incremental check that checkpointed the
        # new bytes, nor for a full read against those checkpoints
        verified = module.check(previous=again.state, full=True)
        check_health(verified, module)
        _count_state("appended, checked against their checkpoints")
        assert "log_changed_in_place" not in {f.code for f in again.findings + verified.findings}
    if h.state is not None and c.chance(0.3):  # a state changed in the database: never an exception
        mutated = mutate_checkpoints(h.state, c) if "checkpoints" in h.state and c.chance(0.5) else None
        if mutated is None:
            mutated = mutate_state(h.state, c)
        parsed = state.CheckState.from_json(mutated)  # a CheckState or None, never an exception
        _count_state("odd (read as none)" if parsed is None else "odd (still a state)")
        if parsed is not None and parsed.checkpoints is not None:
            _checkpoints_well_formed(parsed.checkpoints)
        check_health(module.check(previous=mutated), module)
        check_health(module.check(previous=mutated, full=True, accept_changes=c.chance(0.5)), module)


STATE_COUNTS: dict[str, int] = {}  # what the check target fed back as previous states (fuzz.txt)


def _count_state(kind: str) -> None:
    STATE_COUNTS[kind] = STATE_COUNTS.get(kind, 0) + 1


def mutate_checkpoints(value: Any, c: Rng) -> Any:
    """A copy of a v3 state with its checkpoints made odd: a piece's end, hash or time replaced,
    pieces dropped, repeated or swapped, the file or verified_at replaced."""
    out = json.loads(json.dumps(value))
    cps = out["checkpoints"]
    pieces = cps["pieces"]
    which = c.int(0, 5)
    if which == 0 and pieces:
        p = pieces[c.int(0, len(pieces) - 1)]
        p[0] = c.choice((0, -1, p[0] + 1, p[0] - 1, SEGMENT, SEGMENT + 1, 2**64, 1.5, "9", None))
    elif which == 1 and pieces:
        p = pieces[c.int(0, len(pieces) - 1)]
        p[1] = c.choice(("", "0" * 64, "0" * 63, "G" * 64, p[1].upper(), p[1][:-1] + "x", 5, None))
    elif which == 2 and pieces:
        p = pieces[c.int(0, len(pieces) - 1)]
        p[2] = c.choice((-1, float("nan"), float("inf"), True, "x", None, 0, 1e300))
    elif which == 3:
        cps["pieces"] = c.choice(([], pieces * 2, pieces[::-1], [*pieces, [0, "0" * 64, 1.0]], [[1]], {}, None))
    elif which == 4:
        cps["file"] = c.choice(([], [1], [1, 2, 3], [-1, 2], ["1", 2], None, [2**70, 1]))
    else:
        cps["verified_at"] = c.choice((-1, "x", True, [], None, 0, 1e300))
    return out


def _checkpoints_well_formed(cps) -> None:
    """What a state read back holds: pieces from 0 without a hole, each within one 8 MiB window."""
    start = 0
    for p in cps.pieces:
        assert p.start == start < p.end <= (start // SEGMENT + 1) * SEGMENT and len(p.sha) == 64
        start = p.end


STATE_ODD = (None, -1, 0, 1.5, "x", "", True, [], {}, [1, 2, 3, 4], [[1]], {"offset": 1}, 2**70)


def mutate_state(value: Any, c: Rng) -> Any:
    """A copy of a check state with one value replaced, or one key dropped."""
    out = json.loads(json.dumps(value))
    node, path = out, []
    while isinstance(node, (dict, list)) and node and (not path or c.chance(0.7)):
        key = c.choice(list(node)) if isinstance(node, dict) else c.int(0, len(node) - 1)
        path.append((node, key))
        node = node[key]
    if not path:
        return c.choice(STATE_ODD)
    parent, key = path[-1]
    if isinstance(parent, dict) and c.chance(0.2):
        del parent[key]
    else:
        parent[key] = c.choice(STATE_ODD)
    return out


def check_rebuild(module, c: Rng) -> None:
    """rebuild() of fuzzed files: only documented errors; afterwards the meta is valid."""
    _write_module(module, c, fuzzed_meta(c), fuzzed_log(c) if c.chance(0.9) else None)
    try:
        module.rebuild()
    except (ConcurrentModification, StoreBusy):
        return
    value, err = metamod.parse(module.meta_path.read_bytes())
    assert err is None and isinstance(value, dict), err
    assert not [p for p in metamod.problems(value) if p.severity == "critical"]


# ---------------------------------------------------------------------------------------------
# Hypothesis tests: structured documents, then mutated.

ids = st.text(st.characters(codec="utf-8", exclude_categories=("Cs",)), max_size=12) | st.sampled_from(
    ("evt-1", "ord-1", "")
)
times = st.sampled_from(("2025-10-27T12:23:47.663Z", "2025-10-22", "", "not a time", "2025-10-27T12:23:47Z"))
json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**70), 2**70) | st.floats(allow_nan=False, allow_infinity=False) | ids,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(ids, inner, max_size=4),
    max_leaves=10,
)
cursors = st.dictionaries(
    st.sampled_from(("order_header", "order_line", "pos_shift", "job_order")),
    st.fixed_dictionaries(
        {"eventId": ids, "sequence": st.integers(0, 2**40), "updatedAt": times},
        optional={"key": ids, "id": ids, "uuid": ids, "uid": json_values},
    ),
    max_size=4,
)
meta_dicts = st.fixed_dictionaries(
    {
        "branchId": st.just(BRANCH) | ids,
        "moduleId": st.just(MODULE) | ids,
        "liveCreatedAt": times,
        "currentDay": times,
        "lastClosedDate": st.none() | times,
        "lastEventId": st.none() | ids,
        "lastEventAt": st.none() | times,
        "lastAckId": st.none() | ids,
        "totalEvents": st.integers(0, 2**53) | json_values,
        "updatedAt": times,
        "tableCursors": cursors | json_values,
        "lastServedTableIds": st.dictionaries(ids, json_values, max_size=3),
        "lastClientTableIds": st.dictionaries(ids, json_values, max_size=3),
        "lastSnapshotMarker": st.none() | ids,
        "lastClientSnapshotMarker": st.none() | ids,
        "lastClientSyncAt": st.none() | times,
    },
    optional={"purgeState": json_values, "x-unknown": json_values},
)


@st.composite
def meta_inputs(draw) -> bytes:
    c = Draw(draw)
    value = draw(meta_dicts)
    if c.chance(0.3):
        value = mutate_value(value, c)
    data = serialise(value, c, 2)
    others = [data, *META_DOCS]
    return mutate_bytes(data, c, others) if c.chance(0.85) else data


@st.composite
def log_inputs(draw) -> bytes:
    c = Draw(draw)
    n = draw(st.integers(0, 8))
    lines = make_lines(n, start=draw(st.integers(1, 3)), seed=draw(st.integers(0, 3)))
    for ln in lines:
        ln["sequence"] = draw(st.sampled_from((ln["sequence"], ln["sequence"], 1, 0, -1, 2**27, 2**27 + 1, 2**64 - 1)))
        ln["table"] = draw(st.sampled_from((ln["table"], ln["table"], "", None, 5, "job_order")))
    data = mutate_log_lines(lines, c)
    return mutate_bytes(data, c, [data, *LOG_DOCS]) if c.chance(0.7) else data


@st.composite
def server_inputs(draw) -> bytes:
    c = Draw(draw)
    text = server_log(c)
    if c.chance(0.5):
        return mutate_server_lines(text, c)
    data = text.encode()
    return mutate_bytes(data, c, [data, *SERVER_DOCS])


@FUZZ
@example(b'{"a": 1e400, "b": 99999999999999999999}')
@example(b'{\n  "a": NaN,\n  "b": 99999999999999999999\n}xx')
@example(b'{"a": 1e400, "b": "\\ud800"}')
@example(b'{\n  "totalEvents": 99999999999999999999\n}')
@example(b'{\n  "branchId": "\\ud800",\n  "lastEventId": ' + b"[" * 300 + b"]" * 300 + b"\n}")
@given(meta_inputs())
def test_fuzzed_meta_parses_or_fails_cleanly_and_serialises_back(data):
    check_meta(data)
    check_salvage(data)


@FUZZ
@given(st.data())
def test_salvage_keeps_the_whole_leading_entries_of_a_cut_meta(data):
    value = data.draw(meta_dicts)
    doc = meta_bytes(value)
    cut = doc[: data.draw(st.integers(0, len(doc)))]
    out = check_salvage(cut)
    if out is not None:
        assert list(out.items()) == list(value.items())[: len(out)]


@FUZZ
@given(meta_dicts, meta_dicts)
def test_salvage_of_two_overlapping_writes_gives_the_shorter_document(a, b):
    x, y = meta_bytes(a), meta_bytes(b)
    short, long_ = (x, y) if len(x) <= len(y) else (y, x)
    damaged = short + long_[len(short) :]
    out = check_salvage(damaged)
    assert out == json.loads(short)
    check_meta(damaged)


@FUZZ
@given(log_inputs(), st.randoms(use_true_random=False))
def test_fuzzed_log_reads_the_same_every_way(data, rnd):
    with tempfile.TemporaryDirectory() as tmp:
        check_log(Path(tmp) / "events.log", data, Rng(rnd))


@FUZZ
@example(
    data=b"0001-01-01T00:00:00+05:00 " + P.encode() + b"CORRUPTED FILE DETECTED - Attempting recovery\n",
    rnd=random.Random(0),
)
@example(data=b"9999-12-31T23:59:59-05:00 " + P.encode() + b"JSON parse error: x\n", rnd=random.Random(0))
@example(data=b"x " + P.encode() + b"CORRUPTED FILE DETECTED \xff\n", rnd=random.Random(0))
@given(server_inputs(), st.randoms(use_true_random=False))
def test_fuzzed_server_log_never_raises(data, rnd):
    check_server_log(data, Rng(rnd))


@FUZZ
@given(st.randoms(use_true_random=False))
def test_check_of_fuzzed_module_files_never_raises(rnd):
    with tempfile.TemporaryDirectory() as tmp:
        module = EventStore(tmp, fsync=False).module(BRANCH, MODULE)
        check_module_files(module, Rng(rnd))


@settings(FUZZ, max_examples=max(10, EXAMPLES // 2))
@given(st.randoms(use_true_random=False))
def test_rebuild_of_fuzzed_module_files_gives_a_valid_meta(rnd):
    with tempfile.TemporaryDirectory() as tmp:
        module = EventStore(tmp, fsync=False).module(BRANCH, MODULE)
        check_rebuild(module, Rng(rnd))


# ---------------------------------------------------------------------------------------------
# The fast deterministic mutation fuzzer.

# Share of the inputs per target (meta also runs salvage on the same input; log includes the
# tails; check and rebuild work on whole module folders and cost the most).
SHARES = {"meta": 0.40, "salvage": 0.20, "log": 0.16, "serverlog": 0.20, "check": 0.03, "rebuild": 0.01}


def _fail_artifact(target: str, index: int, data: bytes) -> str:
    ARTIFACTS.mkdir(exist_ok=True)
    path = ARTIFACTS / f"fuzz-fail-{target}-{SEED}-{index}.bin"
    path.write_bytes(data)
    return str(path.relative_to(REPO))


def test_mutation_fuzzer_no_exception_escapes(capsys):
    started = time.monotonic()
    counts = {t: int(INPUTS * share) for t, share in SHARES.items()}
    counts["meta"] += INPUTS - sum(counts.values())
    failures: list[str] = []
    seconds: dict[str, float] = {}
    tmp = Path(tempfile.mkdtemp(prefix="opsdash-fuzz-", dir="/dev/shm" if os.path.isdir("/dev/shm") else None))
    try:
        (tmp / "root").mkdir()
        store = EventStore(tmp / "root", fsync=False)
        module = store.module(BRANCH, MODULE)
        log_path = tmp / "events.log"
        for target, count in counts.items():
            began = time.monotonic()
            rnd = random.Random(f"{SEED}:{target}")
            c = Rng(rnd)
            failed_here = 0
            for i in range(count):
                data = b""
                try:
                    if target == "meta":
                        data = fuzzed_meta(c)
                        check_meta(data)
                    elif target == "salvage":
                        data = fuzzed_meta(c)
                        check_salvage(data)
                    elif target == "log":
                        data = fuzzed_log(c)
                        check_log(log_path, data, c)
                    elif target == "serverlog":
                        data = fuzzed_server_log(c)
                        check_server_log(data, c)
                    elif target == "check":
                        check_module_files(module, c)
                    else:
                        check_rebuild(module, c)
                except Exception as exc:
                    failed_here += 1
                    if failed_here <= 3:
                        where = _fail_artifact(target, i, data)
                        tb = "".join(traceback.format_exception(exc, limit=-4))
                        failures.append(f"{target} input {i} ({where}): {type(exc).__name__}: {exc!s:.300}\n{tb}")
            if failed_here > 3:
                failures.append(f"{target}: {failed_here} failing inputs in all")
            seconds[target] = time.monotonic() - began
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    took = time.monotonic() - started
    parts = ", ".join(f"{t} {n:,}" for t, n in counts.items())
    outcome = "no exception escaped" if not failures else f"{len(failures)} FAILURES"
    line = f"fuzz: {INPUTS:,} inputs ({parts}), seed {SEED}, {outcome} ({took:.1f} s)"
    ARTIFACTS.mkdir(exist_ok=True)
    (ARTIFACTS / "fuzz.txt").write_text(
        line
        + "\n"
        + f"at {datetime.now(UTC).isoformat(timespec='seconds')}; replay: OPSDASH_FUZZ_SEED={SEED} OPSDASH_FUZZ_INPUTS={INPUTS}\n"
        + "seconds per target: "
        + ", ".join(f"{t} {s:.1f}" for t, s in seconds.items())
        + "\n"
        + "check states fed back: "
        + ", ".join(f"{k} {n:,}" for k, n in sorted(STATE_COUNTS.items()))
        + "\n"
        + "".join(f"\n{f}" for f in failures)
    )
    with capsys.disabled():
        print("\n" + line)
    assert not failures, f"seed {SEED}:\n" + "\n".join(failures)
