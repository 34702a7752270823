"""Pages benchmark: the overview (first page, a filtered page, a late page), a module page and
the history page under 16 concurrent clients through the production server (gunicorn), with
wrk as the load tool; with 1,000 and with 10,000 modules, to show which pages grow with them.

    .venv/bin/python bench/pages.py [--modules 1000,10000] [--incidents-per-module 5]
                                    [--duration 10] [--connections 16] [--workers 4]

Needs wrk (Debian: apt-get install wrk). Prints requests/s and p50/p95/p99 per page.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from common import table

REPO = Path(__file__).resolve().parent.parent
WRK_LUA = """
done = function(summary, latency, requests)
  io.write(string.format("RESULT %d %d %d %.0f %.0f %.0f\\n", summary.requests, summary.errors.status,
    summary.errors.connect + summary.errors.read + summary.errors.write + summary.errors.timeout,
    latency:percentile(50), latency:percentile(95), latency:percentile(99)))
end
"""
SEED = r"""
import os, random, sys
from datetime import UTC, datetime, timedelta
import django
django.setup()
from django.core.management import call_command
call_command("migrate", verbosity=0)
from django.contrib.auth.models import User
from django.contrib.sessions.backends.db import SessionStore
from opsdash.models import Incident, ModuleState, Backup, ScanHost, STATUS_RANK, codes_field
from opsdash.services.users import ensure_demo_users
n, per = int(sys.argv[1]), int(sys.argv[2])
rng = random.Random(1)
now = datetime.now(UTC)
codes = ["meta_corrupt", "meta_drift", "log_torn_tail", "log_sequence_gap", "backup_present"]
rows = []
for i in range(n):
    status = rng.choices(["healthy", "warning", "critical"], [90, 7, 3])[0]
    code = [] if status == "healthy" else [rng.choice(codes)]
    rows.append(ModuleState(host="bench", branch=f"branch{i // 20:04d}", module=f"mod{i % 20:02d}", status=status,
        status_rank=STATUS_RANK[status], findings=[{"code": c, "severity": status, "message": c} for c in code],
        codes=codes_field(code), stats={"log_events": 100}, meta_total_events=100, log_events=100, log_size=140000,
        last_event_at=now, backups_count=0, first_seen=now, last_changed=now, status_since=now))
ModuleState.objects.bulk_create(rows, batch_size=1000)
ids = list(ModuleState.objects.values_list("id", flat=True))
inc = []
for mid in ids:
    for k in range(per):
        opened = now - timedelta(days=rng.randrange(0, 60), minutes=rng.randrange(0, 1440))
        c = rng.choice(codes)
        inc.append(Incident(module_id=mid, opened_at=opened, ended_at=opened + timedelta(hours=1), ended_how="resolved",
            ended_by="scan", severity="warning", findings=[{"code": c}], codes=codes_field([c])))
Incident.objects.bulk_create(inc, batch_size=2000)
ScanHost.objects.create(host="bench", data_root=os.environ["OPSDASH_DATA_ROOT"], last_pass_at=now, modules=n, worst_status="critical", interval=60)
ensure_demo_users("bench-password")
user = User.objects.get(username="manager")
s = SessionStore()
s["_auth_user_id"] = str(user.pk)
from django.conf import settings
s["_auth_user_backend"] = settings.AUTHENTICATION_BACKENDS[0]
s["_auth_user_hash"] = user.get_session_auth_hash()
s.create()
print(s.session_key)
"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_up(url: str, timeout: float = 30) -> None:
    import urllib.request

    deadline = time.time() + timeout
    while time.time() < deadline:
        try:
            urllib.request.urlopen(url, timeout=2)
            return
        except Exception:
            time.sleep(0.2)
    raise RuntimeError(f"server did not start: {url}")


def run_size(n: int, per: int, args, work: Path) -> list[list[str]]:
    work.mkdir(parents=True, exist_ok=True)
    data_root = work / "data"
    (data_root / "branch0000" / "modules" / "mod00" / "live").mkdir(parents=True, exist_ok=True)
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "opsdash.settings",
        "DATABASE_URL": f"sqlite:///{work / 'db.sqlite3'}",
        "DJANGO_SECRET_KEY": "bench-only-secret-key-not-for-production-0123456789",
        "OPSDASH_DATA_ROOT": str(data_root),
        "OPSDASH_HOST_NAME": "bench",
        "OPSDASH_EMBEDDED_WORKER": "0",
        # The seeded scanner heartbeat stays current for the whole run (no scanner runs here).
        "OPSDASH_STALE_SECONDS": "86400",
        "PYTHONPATH": str(REPO),
    }
    py = sys.executable
    session = subprocess.run(
        [py, "-c", SEED, str(n), str(per)], env=env, cwd=REPO, check=True, capture_output=True, text=True
    ).stdout.split()[-1]
    subprocess.run([py, "manage.py", "collectstatic", "--noinput", "-v0"], env=env, cwd=REPO, check=True)
    port = free_port()
    gunicorn = REPO / ".venv" / "bin" / "gunicorn"
    server = subprocess.Popen(
        [
            str(gunicorn),
            "opsdash.wsgi",
            "--bind",
            f"127.0.0.1:{port}",
            "--workers",
            str(args.workers),
            "--log-level",
            "warning",
        ],
        env=env,
        cwd=REPO,
        start_new_session=True,
    )
    base = f"http://127.0.0.1:{port}"
    lua = work / "report.lua"
    lua.write_text(WRK_LUA)
    pages = [
        ("overview, first page", "/"),
        ("overview, filtered", "/?status=warning&q=meta"),
        ("overview, late page", f"/?page={max(1, n // 50 - 1)}"),
        ("module page", "/modules/bench/branch0000/mod00/"),
        ("history", "/history/"),
        ("history, filtered", "/history/?code=meta_corrupt"),
    ]
    rows = []
    try:
        wait_up(base + "/healthz")
        for label, path in pages:
            cmd = [
                "wrk",
                "-t2",
                f"-c{args.connections}",
                f"-d{args.duration}s",
                "-s",
                str(lua),
                "-H",
                f"Cookie: sessionid={session}",
                base + path,
            ]
            out = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout
            m = re.search(r"RESULT (\d+) (\d+) (\d+) (\d+) (\d+) (\d+)", out)
            total, bad_status, errors, p50, p95, p99 = (int(x) for x in m.groups())
            rows.append(
                [
                    f"{n}",
                    label,
                    f"{total / args.duration:.0f}",
                    f"{p50 / 1000:.0f}",
                    f"{p95 / 1000:.0f}",
                    f"{p99 / 1000:.0f}",
                    str(bad_status + errors),
                ]
            )
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        server.wait(timeout=20)
    return rows


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--modules", default="1000,10000")
    p.add_argument("--incidents-per-module", type=int, default=5)
    p.add_argument("--duration", type=int, default=10)
    p.add_argument("--connections", type=int, default=16)
    p.add_argument("--workers", type=int, default=4)
    args = p.parse_args()
    if not shutil.which("wrk"):
        print("bench/pages.py needs wrk (Debian: apt-get install wrk)", file=sys.stderr)
        return 3
    work = Path(tempfile.mkdtemp(prefix="bench-pages-"))
    rows = [["modules", "page", "req/s", "p50 ms", "p95 ms", "p99 ms", "errors"]]
    try:
        for n in (int(x) for x in args.modules.split(",")):
            rows += run_size(n, args.incidents_per_module, args, work / str(n))
    finally:
        shutil.rmtree(work, ignore_errors=True)
    print(table(rows))
    print(
        f"({args.connections} concurrent clients, gunicorn with {args.workers} workers, SQLite; target: p95 < 150 ms, "
        "and no page slower with 10x the modules except by pagination)"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
