"""A demo data root in the real Mishkah OS shape, with every kind of damage the checks know.

``write_demo_root(path)`` writes branches x modules of POS / KDS / job-order events through
:meth:`Module.append_event` (so the healthy parts are exactly what the library writes), then
damages chosen modules the way the Node server and crashes do. Every finding code except
``unreadable`` appears somewhere; several modules stay healthy. Deterministic for a given seed
and ``now``. Pure standard library + eventstore: no Django here.
"""

from __future__ import annotations

import json
import os
import random
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from . import clock, layout
from .store import EventStore, Module

BRANCHES = ("dar", "zamalek", "maadi", "heliopolis", "alexandria")
MODULES = ("pos", "kds", "joborders")
DAY_MS = 86_400_000

# (branch, module) -> what happens to it after the events are written; absent means healthy.
DAMAGE: dict[tuple[str, str], str] = {
    ("dar", "pos"): "meta_corrupt",
    ("dar", "joborders"): "backup_present",
    ("zamalek", "pos"): "log_sequence_duplicate",
    ("zamalek", "kds"): "log_torn_tail",
    ("zamalek", "joborders"): "temp_orphan",
    ("maadi", "pos"): "meta_invalid",
    ("maadi", "kds"): "meta_missing",
    ("heliopolis", "pos"): "meta_drift",
    ("heliopolis", "kds"): "log_bad_line",
    ("heliopolis", "joborders"): "log_sequence_gap",
    ("alexandria", "pos"): "backup_present",
}

CASHIERS = ("أحمد محمود", "Mona Adel", "Karim Fathy", "سارة علي")
ITEMS = (("Koshari", 45), ("Fattah", 120), ("Molokhia", 80), ("Hawawshi", 60), ("Tea", 15), ("Sahlab", 30))
STATIONS = ("grill", "fryer", "cold", "drinks")


def _iso(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, tz=UTC).strftime("%Y-%m-%dT%H:%M:%S.") + f"{ms % 1000:03d}Z"


def _dumps_meta(meta: dict[str, Any]) -> str:
    """``JSON.stringify(meta, null, 2)``: what the Node server writes."""
    return json.dumps(meta, indent=2, ensure_ascii=False)


class _Events:
    """Node-shaped event entries for one module, with times that move forward."""

    def __init__(self, rng: random.Random, branch: str, module: str, start_ms: int, end_ms: int, count: int):
        self.rng = rng
        self.branch = branch
        self.module = module
        self.clock = start_ms
        self.end = end_ms
        self.step = max(2, int(0.9 * (end_ms - start_ms) / max(count, 1)))
        self.server_id = f"ws-{self._uuid()}"

    def _uuid(self) -> str:
        return str(uuid.UUID(int=self.rng.getrandbits(128), version=4))

    def entry(self, table: str, record: dict[str, Any], action: str = "module:insert") -> dict[str, Any]:
        # Never past ``end``: the demo's events all lie in the past.
        self.clock = min(self.clock + self.rng.randint(self.step // 2, self.step * 3 // 2), self.end)
        at = _iso(self.clock)
        key = str(record["id"])
        return {
            "id": f"evt-{self._uuid()}",
            "action": action,
            "table": table,
            "record": record,
            "meta": {
                "serverId": self.server_id,
                "branchId": self.branch,
                "moduleId": self.module,
                "table": table,
                "timestamp": at,
                "source": "ws-client",
                "clientMeta": {"requestId": f"req-{self._uuid()}"},
                "recordKey": key,
                "recordId": key,
                "recordRef": {"table": table, "key": key, "primaryKey": {"id": key}, "id": key},
            },
            "publishState": {self.branch: {"status": "published", "updatedAt": at, "attempts": 0, "publishedAt": at}},
            "createdAt": at,
        }

    def pos(self, count: int) -> list[dict[str, Any]]:
        rng, out, n = self.rng, [], 0
        shift_id = f"P001-S{rng.randrange(36**6):06X}"
        cashier = rng.choice(CASHIERS)
        out.append(
            self.entry(
                "pos_shift",
                {
                    "id": shift_id,
                    "posId": "pos-1",
                    "posNumber": 1,
                    "cashierName": cashier,
                    "status": "open",
                    "isClosed": False,
                    "openingFloat": 500,
                    "orders": [],
                },
            )
        )
        while len(out) < count:
            n += 1
            order_id = f"P001-{n}"
            out.append(
                self.entry(
                    "order_header",
                    {
                        "id": order_id,
                        "shiftId": shift_id,
                        "posNumber": 1,
                        "guests": rng.randint(1, 6),
                        "statusId": "open",
                        "subtotal": 0,
                        "totalDue": 0,
                        "metadata": {},
                    },
                )
            )
            total = 0
            for _ in range(rng.randint(1, 3)):
                item, price = rng.choice(ITEMS)
                qty = rng.randint(1, 3)
                total += price * qty
                line_id = f"ln-{self._uuid()[:12].upper()}"
                out.append(
                    self.entry(
                        "order_line",
                        {
                            "id": line_id,
                            "orderId": order_id,
                            "itemId": item,
                            "quantity": qty,
                            "unitPrice": price,
                            "total": price * qty,
                            "statusId": "sent",
                        },
                    )
                )
            out.append(
                self.entry(
                    "order_header",
                    {
                        "id": order_id,
                        "shiftId": shift_id,
                        "statusId": "closed",
                        "subtotal": total,
                        "totalDue": total,
                        "totalPaid": total,
                    },
                    "module:merge",
                )
            )
        return out[:count]

    def kitchen(self, count: int) -> list[dict[str, Any]]:
        rng, out, n = self.rng, [], 0
        while len(out) < count:
            n += 1
            job_id = f"JO-{n:05d}"
            out.append(
                self.entry(
                    "job_order_header",
                    {"id": job_id, "orderId": f"P001-{n}", "station": rng.choice(STATIONS), "status": "queued"},
                )
            )
            for status in ("cooking", "ready", "served"):
                out.append(self.entry("job_order_header", {"id": job_id, "status": status}, "module:merge"))
        return out[:count]

    def joborders(self, count: int) -> list[dict[str, Any]]:
        rng, out, n = self.rng, [], 0
        while len(out) < count:
            n += 1
            job_id = f"JOB-{n:05d}"
            out.append(
                self.entry("job_order_header", {"id": job_id, "customer": rng.choice(CASHIERS), "status": "open"})
            )
            detail_id = f"{job_id}-D1"
            out.append(
                self.entry("job_order_detail", {"id": detail_id, "jobOrderId": job_id, "itemId": rng.choice(ITEMS)[0]})
            )
            out.append(
                self.entry("job_order_status_history", {"id": f"{job_id}-H1", "jobOrderId": job_id, "status": "done"})
            )
        return out[:count]


def write_demo_root(
    root: str | os.PathLike[str],
    *,
    seed: int = 2025,
    events_per_module: int = 240,
    now_ms: int | None = None,
) -> dict[str, Any]:
    """Write the demo data root at ``root`` (created; must be missing or empty) and return a summary
    ``{"root", "modules": {"branch/module": damage or "healthy"}, "events"}``.

    Not durable (fsync off): demo data is regenerated, never relied upon.
    """
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    if any(root.iterdir()):
        raise FileExistsError(f"{root} is not empty; the demo writes only into an empty folder")
    rng = random.Random(seed)
    now_ms = clock.now_ms() if now_ms is None else now_ms
    store = EventStore(root, fsync=False)
    summary: dict[str, Any] = {"root": str(root), "modules": {}, "events": 0}
    span_ms = 28 * DAY_MS  # events spread over the last four weeks
    for branch in BRANCHES:
        for name in MODULES:
            module = store.module(branch, name)
            count = events_per_module + rng.randint(-events_per_module // 10, events_per_module // 10)
            gen = _Events(rng, branch, name, now_ms - span_ms, now_ms - 60_000, count)
            make = {"pos": gen.pos, "kds": gen.kitchen, "joborders": gen.joborders}[name]
            for entry in make(count):
                module.append_event(entry)
            summary["events"] += count
            damage = DAMAGE.get((branch, name))
            if damage:
                _DAMAGERS[damage](module, rng, now_ms)
            summary["modules"][f"{branch}/{name}"] = damage or "healthy"
    return summary


# -- damage, done the way the Node server and crashes do it -----------------------------------


def _read_meta(module: Module) -> dict[str, Any]:
    return json.loads(module.meta_path.read_text(encoding="utf-8"))


def _write_meta(module: Module, meta: dict[str, Any] | str) -> None:
    text = meta if isinstance(meta, str) else _dumps_meta(meta)
    module.meta_path.write_text(text, encoding="utf-8")


def _log_lines(module: Module) -> list[bytes]:
    return module.log_path.read_bytes().splitlines(keepends=True)


def _overlapping_write(meta: dict[str, Any], rng: random.Random) -> str:
    """Two writers without a lock: a shorter document over a longer one, the longer one's tail
    left behind. JSON.parse stops right after the first document ("Unexpected token")."""
    longer = dict(meta)
    longer["lastClientTableIds"] = {f"order_line:{i}": f"ln-{rng.randrange(16**10):010X}" for i in range(24)}
    longer["lastClientSyncAt"] = meta.get("updatedAt")
    short_text, long_text = _dumps_meta(meta), _dumps_meta(longer)
    return short_text + long_text[len(short_text) :]


def _node_backups(module: Module, rng: random.Random, now_ms: int, days_ago: tuple[int, ...]) -> None:
    """Backups ``events.meta.json.corrupted.<ms>.bak`` as the Node server leaves them on recovery."""
    meta = _read_meta(module) if module.meta_path.exists() else {"branchId": module.branch, "moduleId": module.name}
    for days in days_ago:
        ms = now_ms - days * DAY_MS - rng.randrange(DAY_MS // 2)
        text = _overlapping_write(meta, rng) if days % 2 else _dumps_meta(meta) + "\n}\n}"
        (module.live_dir / layout.meta_backup_name(ms)).write_text(text, encoding="utf-8")


def _meta_corrupt(module: Module, rng: random.Random, now_ms: int) -> None:
    _node_backups(module, rng, now_ms, (19,))
    _write_meta(module, _overlapping_write(_read_meta(module), rng))


def _meta_invalid(module: Module, rng: random.Random, now_ms: int) -> None:
    meta = _read_meta(module)
    meta["totalEvents"] = "abc"
    _write_meta(module, meta)


def _meta_missing(module: Module, rng: random.Random, now_ms: int) -> None:
    module.meta_path.unlink()


def _meta_drift(module: Module, rng: random.Random, now_ms: int) -> None:
    """A crash between the log append and the meta write: the meta is one event behind."""
    lines = _log_lines(module)
    previous = json.loads(lines[-2])
    meta = _read_meta(module)
    meta["totalEvents"] = previous["sequence"]
    meta["lastEventId"] = previous["id"]
    meta["lastEventAt"] = previous["createdAt"]
    _write_meta(module, meta)


def _log_torn_tail(module: Module, rng: random.Random, now_ms: int) -> None:
    """A crash in the middle of an append: half a line, no newline."""
    last = json.loads(_log_lines(module)[-1])
    last["id"] = f"evt-{uuid.UUID(int=rng.getrandbits(128), version=4)}"
    last["sequence"] += 1
    data = json.dumps(last, ensure_ascii=False, separators=(",", ":")).encode()
    with open(module.log_path, "ab") as fh:
        fh.write(data[: len(data) // 2])


def _log_bad_line(module: Module, rng: random.Random, now_ms: int) -> None:
    """An old torn line that a later append glued a newline onto, in the middle of the log."""
    lines = _log_lines(module)
    at = len(lines) // 2
    broken = lines[at][: len(lines[at]) // 3].rstrip(b"\n") + b"\n"
    lines.insert(at, broken)
    module.log_path.write_bytes(b"".join(lines))


def _raw_append(module: Module, event: dict[str, Any]) -> None:
    with open(module.log_path, "ab") as fh:
        fh.write(json.dumps(event, ensure_ascii=False, separators=(",", ":")).encode() + b"\n")


def _log_sequence_duplicate(module: Module, rng: random.Random, now_ms: int) -> None:
    """The concurrent-writer race: two writers read the same totalEvents and both append N+1."""
    last = json.loads(_log_lines(module)[-1])
    twin = dict(last, id=f"evt-{uuid.UUID(int=rng.getrandbits(128), version=4)}")
    _raw_append(module, twin)
    meta = _read_meta(module)
    meta["lastEventId"] = twin["id"]
    _write_meta(module, meta)


def _log_sequence_gap(module: Module, rng: random.Random, now_ms: int) -> None:
    """Events lost in between: the next line jumps three sequence numbers ahead."""
    last = json.loads(_log_lines(module)[-1])
    jump = dict(last, id=f"evt-{uuid.UUID(int=rng.getrandbits(128), version=4)}", sequence=last["sequence"] + 4)
    _raw_append(module, jump)
    meta = _read_meta(module)
    meta["totalEvents"] = jump["sequence"]
    meta["lastEventId"] = jump["id"]
    _write_meta(module, meta)


def _temp_orphan(module: Module, rng: random.Random, now_ms: int) -> None:
    """A temp file of an atomic write interrupted two days ago, never renamed."""
    ms = now_ms - 2 * DAY_MS
    token = "".join(rng.choice("0123456789abcdefghijklmnopqrstuvwxyz") for _ in range(8))
    path = module.live_dir / layout.temp_name(ms, token)
    text = _dumps_meta(_read_meta(module))
    path.write_text(text[: len(text) // 2], encoding="utf-8")
    os.utime(path, (ms / 1000, ms / 1000))


def _backup_present(module: Module, rng: random.Random, now_ms: int) -> None:
    """Past recoveries by the Node server, weeks apart; the meta itself is fine again."""
    _node_backups(module, rng, now_ms, tuple(sorted(rng.sample(range(2, 40), 3), reverse=True)))


_DAMAGERS = {
    "meta_corrupt": _meta_corrupt,
    "meta_invalid": _meta_invalid,
    "meta_missing": _meta_missing,
    "meta_drift": _meta_drift,
    "log_torn_tail": _log_torn_tail,
    "log_bad_line": _log_bad_line,
    "log_sequence_duplicate": _log_sequence_duplicate,
    "log_sequence_gap": _log_sequence_gap,
    "temp_orphan": _temp_orphan,
    "backup_present": _backup_present,
}
