"""Shared helpers for the eventstore tests: a data root in tmp_path and realistic Mishkah events.

No Django here: the library runs on a POS server on its own, and so must its tests. The events
have the shape of the Node server's lines (order_header / order_line / pos_shift records,
``meta.recordRef`` {table, key, primaryKey, id}, ``publishState``; about 1.4 KB a line), built
from scratch rather than copied from the production sample.

Subprocess workers load this file by path (``load_helpers``) to make the same events.
"""

from __future__ import annotations

import json
import os
import random
import subprocess
import sys
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

BRANCH = "dar"
MODULE = "pos"
TABLES = ("order_header", "order_line", "pos_shift")
REPO = Path(__file__).resolve().parents[2]
HELPERS = Path(__file__).resolve()
SAMPLE_LIVE = REPO.parent / "shared" / "fixtures" / "mishkah-os" / "branches" / "dar" / "modules" / "pos" / "live"
T0 = datetime(2025, 10, 27, 10, 47, 48, 33_000, tzinfo=UTC)


def iso(t: datetime) -> str:
    return t.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _record(table: str, key: str, rng: random.Random, at: str) -> dict[str, Any]:
    if table == "order_header":
        return {
            "id": key,
            "shiftId": f"P001-S{rng.randrange(10**6):06d}",
            "posId": "pos-mini",
            "posNumber": 1,
            "orderTypeId": "dine_in",
            "statusId": "open",
            "stageId": "new",
            "paymentStateId": "unpaid",
            "tableId": None,
            "customerId": None,
            "customerAddressId": None,
            "driverId": None,
            "openedBy": "e7a8f0b4",
            "closedBy": None,
            "openedAt": at,
            "closedAt": None,
            "guests": rng.randint(1, 6),
            "notes": [],
            "subtotal": rng.randint(0, 900),
            "discount": 0,
            "service": 0,
            "tax": 14,
            "deliveryFee": 0,
            "totalDue": rng.randint(0, 900),
            "totalPaid": 0,
            "metadata": {},
        }
    if table == "order_line":
        return {
            "id": key,
            "orderId": f"ord-{rng.randrange(16**8):08x}",
            "parentLineId": None,
            "itemId": rng.randint(1, 400),
            "kitchenSectionId": "grill",
            "statusId": "queued",
            "quantity": rng.randint(1, 4),
            "unitPrice": 45,
            "total": 90,
            "notes": None,
            "metadata": {"modifiers": [], "note": "بدون بصل"},
        }
    return {
        "id": key,
        "posId": "pos-mini",
        "posLabel": "POS Mini",
        "posNumber": 1,
        "openedAt": at,
        "closedAt": None,
        "openingFloat": 0,
        "closingCash": None,
        "cashierId": "e7a8f0b4",
        "cashierName": "أحمد محمود",
        "cashierRole": "cashier",
        "employeeId": "e7a8f0b4",
        "status": "open",
        "isClosed": False,
        "totalsByType": {},
        "paymentsByMethod": {},
        "countsByType": {},
        "ordersCount": 0,
        "orders": [],
        "totalSales": 0,
    }


def make_entry(
    i: int, table: str | None = None, *, key: str | None = None, action: str | None = None, seed: int = 0
) -> dict[str, Any]:
    """What a client hands to ``append_event``: table, record, meta (with recordRef), publishState."""
    rng = random.Random(seed * 1_000_003 + i)
    table = table or TABLES[i % 3]
    prefix = {"order_header": "ord", "order_line": "ln", "pos_shift": "shift"}[table]
    key = key or f"{prefix}-{uuid.UUID(int=rng.getrandbits(128))}"
    at = iso(T0 + timedelta(seconds=i))
    return {
        "action": action or rng.choice(("module:insert", "module:insert", "module:merge")),
        "table": table,
        "record": _record(table, key, rng, at),
        "meta": {
            "serverId": f"ws-{uuid.UUID(int=rng.getrandbits(128))}",
            "branchId": BRANCH,
            "moduleId": MODULE,
            "table": table,
            "timestamp": at,
            "source": "ws-client",
            "clientMeta": {"requestId": f"req-{uuid.UUID(int=rng.getrandbits(128))}"},
            "recordKey": key,
            "recordId": key,
            "recordRef": {"table": table, "key": key, "primaryKey": {"id": key}, "id": key},
        },
        "publishState": {BRANCH: {"status": "published", "updatedAt": at, "attempts": 0, "publishedAt": at}},
    }


def make_line(sequence: int, entry: dict[str, Any] | None = None, *, seed: int = 0) -> dict[str, Any]:
    """A whole log line as the Node server writes it (key order included)."""
    entry = entry or make_entry(sequence, seed=seed)
    at = iso(T0 + timedelta(seconds=sequence, milliseconds=7))
    return {
        "id": f"evt-{uuid.UUID(int=random.Random(seed * 7919 + sequence).getrandbits(128))}",
        "sequence": sequence,
        "action": entry["action"],
        "branchId": BRANCH,
        "moduleId": MODULE,
        "table": entry["table"],
        "record": entry["record"],
        "meta": entry["meta"],
        "publishState": entry["publishState"],
        "createdAt": at,
        "recordedAt": at,
    }


def make_lines(n: int, *, start: int = 1, seed: int = 0) -> list[dict[str, Any]]:
    return [make_line(s, seed=seed) for s in range(start, start + n)]


def line_bytes(line: dict[str, Any]) -> bytes:
    """``JSON.stringify(line) + "\\n"``: compact, non-ASCII kept as is."""
    return json.dumps(line, ensure_ascii=False, separators=(",", ":")).encode() + b"\n"


def meta_bytes(meta: Any) -> bytes:
    """``JSON.stringify(meta, null, 2)``."""
    return json.dumps(meta, ensure_ascii=False, indent=2).encode()


def node_meta(lines: list[dict[str, Any]], **extra: Any) -> dict[str, Any]:
    """The meta the Node server keeps after appending ``lines`` (recordRef gives key and id)."""
    cursors: dict[str, Any] = {}
    for ln in lines:
        ref = ln["meta"]["recordRef"]
        cursors[ln["table"]] = {
            "key": ref["key"],
            "id": ref["id"],
            "eventId": ln["id"],
            "sequence": ln["sequence"],
            "updatedAt": ln["recordedAt"],
        }
    last = lines[-1] if lines else None
    meta = {
        "branchId": BRANCH,
        "moduleId": MODULE,
        "liveCreatedAt": "2025-10-22T08:17:22.791Z",
        "currentDay": "2025-10-27",
        "lastClosedDate": None,
        "lastEventId": last["id"] if last else None,
        "lastEventAt": last["createdAt"] if last else None,
        "lastAckId": last["id"] if last else None,
        "totalEvents": len(lines),
        "updatedAt": last["recordedAt"] if last else "2025-10-22T08:17:22.791Z",
        "tableCursors": cursors,
        "lastServedTableIds": {},
        "lastClientTableIds": {},
        "lastSnapshotMarker": None,
        "lastClientSnapshotMarker": None,
        "lastClientSyncAt": None,
    }
    meta.update(extra)
    return meta


DERIVED = ("totalEvents", "lastEventId", "lastEventAt", "tableCursors")


def derived(meta: dict[str, Any]) -> dict[str, Any]:
    return {k: meta.get(k) for k in DERIVED}


class Seeded:
    """A module written the way the Node server writes it, without going through the library."""

    def __init__(self, module, lines: list[dict[str, Any]], meta: dict[str, Any] | None):
        self.module = module
        self.lines = lines
        self.meta = meta

    @property
    def live(self) -> Path:
        return self.module.live_dir

    def write_log(self, data: bytes) -> None:
        self.module.log_path.write_bytes(data)

    def write_meta(self, data: bytes) -> None:
        self.module.meta_path.write_bytes(data)


def seed(store, n: int = 6, *, meta: bool = True, branch: str = BRANCH, module: str = MODULE, **extra: Any) -> Seeded:
    """A module with ``n`` Node-shaped events and the matching meta (or no meta)."""
    mod = store.module(branch, module)
    mod.live_dir.mkdir(parents=True, exist_ok=True)
    lines = make_lines(n)
    if n:
        mod.log_path.write_bytes(b"".join(line_bytes(ln) for ln in lines))
    m = node_meta(lines, **{"branchId": branch, "moduleId": module, **extra}) if meta else None
    if m is not None:
        mod.meta_path.write_bytes(meta_bytes(m))
    return Seeded(mod, lines, m)


def codes(health) -> list[str]:
    return sorted(f.code for f in health.findings)


def finding(health, code: str):
    found = [f for f in health.findings if f.code == code]
    assert len(found) == 1, f"expected one {code} finding, got {[f.to_dict() for f in health.findings]}"
    return found[0]


def log_events(path: Path) -> list[dict[str, Any]]:
    out = []
    for raw in path.read_bytes().split(b"\n"):
        if raw.strip():
            out.append(json.loads(raw))
    return out


def temp_files(folder: Path) -> list[str]:
    return sorted(n for n in os.listdir(folder) if ".tmp." in n)


def run_python(code: str, *args: str, timeout: float = 60, check: bool = True) -> subprocess.CompletedProcess:
    """Run ``python -c code args`` with the repo importable; fails the test on a non-zero exit."""
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    env.pop("DJANGO_SETTINGS_MODULE", None)
    proc = subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True, timeout=timeout, env=env)
    if check:
        assert proc.returncode == 0, (
            f"exit {proc.returncode}\nstdout: {proc.stdout[-2000:]}\nstderr: {proc.stderr[-2000:]}"
        )
    return proc


def child_env() -> dict[str, str]:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    env.pop("DJANGO_SETTINGS_MODULE", None)
    return env


# Prepended to subprocess scripts: the same helpers, loaded by path (no package needed).
LOAD_HELPERS = f"""
import importlib.util, sys
_spec = importlib.util.spec_from_file_location("es_test_helpers", {str(HELPERS)!r})
helpers = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(helpers)
"""


@pytest.fixture
def root(tmp_path: Path) -> Path:
    path = tmp_path / "branches"
    path.mkdir()
    return path


@pytest.fixture
def store(root: Path):
    from eventstore import EventStore

    return EventStore(root, fsync=False)


@pytest.fixture
def module(store):
    return store.module(BRANCH, MODULE)


@pytest.fixture
def seeded(store) -> Seeded:
    return seed(store)
