"""Shared helpers of the benchmarks: realistic events, timing, peak memory, table output."""

from __future__ import annotations

import contextlib
import os
import random
import sys
import time
import uuid
from pathlib import Path

import orjson

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))


def iso(ts: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(ts)) + f".{int(ts * 1000) % 1000:03d}Z"


def make_entry(rng: random.Random, branch: str = "dar", module: str = "pos") -> dict:
    """An event entry shaped like Mishkah's POS lines (about 1.4 KB once written)."""
    table = rng.choice(("order_header", "order_line", "order_line", "pos_shift"))
    key = f"{table[:3]}-{uuid.UUID(int=rng.getrandbits(128))}"
    now = iso(time.time())
    record = {
        "id": key,
        "orderId": f"ord-{rng.getrandbits(32):08x}",
        "parentLineId": None,
        "itemId": rng.randrange(1, 500),
        "kitchenSectionId": rng.choice((None, "grill", "bar")),
        "statusId": "open",
        "quantity": rng.randrange(1, 5),
        "unitPrice": rng.randrange(100, 9000) / 100,
        "total": 0,
        "notes": [],
        "openedAt": now,
        "metadata": {"device": f"P{rng.randrange(1, 9):03d}", "note": "x" * rng.randrange(200, 400)},
    }
    meta = {
        "serverId": f"ws-{uuid.UUID(int=rng.getrandbits(128))}",
        "branchId": branch,
        "moduleId": module,
        "table": table,
        "timestamp": now,
        "source": "ws-client",
        "clientMeta": {"requestId": f"req-{uuid.UUID(int=rng.getrandbits(128))}"},
        "recordKey": key,
        "recordId": key,
        "recordRef": {"table": table, "key": key, "primaryKey": {"id": key}, "id": key},
    }
    return {
        "table": table,
        "record": record,
        "meta": meta,
        "publishState": {branch: {"status": "published", "updatedAt": now, "attempts": 0, "publishedAt": now}},
    }


def make_line(rng: random.Random, sequence: int, branch: str = "dar", module: str = "pos") -> bytes:
    entry = make_entry(rng, branch, module)
    now = iso(time.time())
    line = {
        "id": f"evt-{uuid.UUID(int=rng.getrandbits(128))}",
        "sequence": sequence,
        "action": "module:insert",
        "branchId": branch,
        "moduleId": module,
        **entry,
        "createdAt": now,
        "recordedAt": now,
    }
    return orjson.dumps(line) + b"\n"


def write_log(path: Path, target_bytes: int, seed: int = 7) -> int:
    """Write an events.log of about ``target_bytes``; return the number of events."""
    rng = random.Random(seed)
    path.parent.mkdir(parents=True, exist_ok=True)
    n = 0
    written = 0
    with open(path, "wb") as f:
        batch = []
        while written < target_bytes:
            n += 1
            line = make_line(rng, n)
            batch.append(line)
            written += len(line)
            if len(batch) >= 1000:
                f.write(b"".join(batch))
                batch.clear()
        f.write(b"".join(batch))
    return n


def mb(n: int) -> float:
    return n / 1_000_000


def table(rows: list[list[str]]) -> str:
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    return "\n".join("  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip() for r in rows)


def parse_size(text: str) -> int:
    text = text.strip().upper()
    mult = {"K": 1_000, "M": 1_000_000, "G": 1_000_000_000}
    if text[-1] in mult:
        return int(float(text[:-1]) * mult[text[-1]])
    return int(text)


def drop_caches_quietly() -> None:
    with contextlib.suppress(OSError):
        os.sync()
