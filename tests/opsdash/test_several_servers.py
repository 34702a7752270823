"""README's "Several servers" flow, run as written: its shell lines, on PostgreSQL, with real
processes (two agents, gunicorn), driven over HTTP as a user would."""

from __future__ import annotations

import contextlib
import hashlib
import http.cookiejar
import json
import os
import re
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from .receivers import Receiver

REPO = Path(__file__).resolve().parents[2]
PG_URL = os.environ.get("DATABASE_URL", "")
pytestmark = pytest.mark.skipif(
    not PG_URL.startswith("postgres"), reason="the several-servers flow shares one PostgreSQL database"
)

# The test sets these before the README's lines: a short interval so that staleness shows in
# seconds (OPSDASH_STALE_SECONDS is left to its default, three intervals) and a webhook.
INTERVAL = 1


def readme_flow() -> list[str]:
    """The shell lines of the README's "Several servers" block."""
    text = (REPO / "README.md").read_text()
    section = text[text.index("### Several servers") :]
    block = re.search(r"```sh\n(.*?)```", section, re.S)
    assert block, "README's Several servers section has no sh block"
    return [line for line in block.group(1).splitlines() if line.strip()]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _localized(lines: list[str], tmp: Path, database: str, port: int) -> str:
    """The README's lines with this test's folders, database name and port; nothing else changed."""
    out = []
    for line in lines:
        line = line.replace("/tmp/store-a", str(tmp / "store-a")).replace("/tmp/store-b", str(tmp / "store-b"))
        line = re.sub(r"(createdb .*) opsdash\b", rf"\1 {database}", line)
        line = line.replace("5432/opsdash", f"5432/{database}").replace("127.0.0.1:8000", f"127.0.0.1:{port}")
        out.append(line)
    return "\n".join(["set -e", f"cd {REPO}", *out, ""])


class Browser:
    """A user's session over HTTP: cookies, the CSRF token, JSON."""

    def __init__(self, base: str):
        self.base = base
        self.jar = http.cookiejar.CookieJar()
        self.opener = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(self.jar))

    def get(self, path: str) -> tuple[int, str]:
        try:
            with self.opener.open(self.base + path, timeout=30) as r:
                return r.status, r.read().decode()
        except urllib.error.HTTPError as exc:
            return exc.code, exc.read().decode()

    def json(self, path: str) -> Any:
        status, body = self.get(path)
        assert status == 200, (path, status, body[:500])
        return json.loads(body)

    def csrf(self) -> str:
        return next(c.value for c in self.jar if c.name == "csrftoken")

    def post(
        self, path: str, data: dict[str, str] | None = None, headers: dict[str, str] | None = None
    ) -> tuple[int, str]:
        body = urllib.parse.urlencode(data or {}).encode()
        request = urllib.request.Request(
            self.base + path, data=body, method="POST", headers={"X-CSRFToken": self.csrf(), **(headers or {})}
        )
        try:
            with self.opener.open(request, timeout=30) as r:
                return r.status, r.read().decode()
        except urllib.error.HTTPError as exc:
            return exc.code, exc.read().decode()

    def login(self, username: str, password: str) -> None:
        status, _ = self.get("/accounts/login/")
        assert status == 200
        status, page = self.post(
            "/accounts/login/", {"login": username, "password": password, "csrfmiddlewaretoken": self.csrf()}
        )
        assert status == 200 and "Log out" in page, page[:500]


def _until(what: str, check: Callable[[], Any], timeout: float) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"{what}: not within {timeout} s")
        time.sleep(0.3)


def _tree(root: Path) -> dict[str, str]:
    return {
        str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


@pytest.fixture
def flow(tmp_path: Path) -> Iterator[dict[str, Any]]:
    database = f"opsdash_readme_{os.getpid()}"
    port = _free_port()
    receiver = Receiver()
    script = tmp_path / "flow.sh"
    script.write_text(_localized(readme_flow(), tmp_path, database, port))
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OPSDASH_", "DJANGO_")) and k != "DATABASE_URL"}
    env |= {
        "OPSDASH_SCAN_INTERVAL": str(INTERVAL),
        "OPSDASH_ALERT_WEBHOOK_URL": receiver.url,
        "PATH": os.environ["PATH"],
    }
    log = (tmp_path / "flow.log").open("w")
    proc = subprocess.Popen(
        ["bash", str(script)], cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
    )
    try:
        yield {
            "proc": proc,
            "base": f"http://127.0.0.1:{port}",
            "tmp": tmp_path,
            "receiver": receiver,
            "log": tmp_path / "flow.log",
        }
    finally:
        _stop_group(proc)
        receiver.close()
        log.close()
        subprocess.run(
            ["dropdb", "-h", "127.0.0.1", "-U", "postgres", "--if-exists", "--force", database],
            check=False,
            capture_output=True,
        )


def _stop_group(proc: subprocess.Popen) -> None:
    try:
        os.killpg(proc.pid, signal.SIGTERM)
    except ProcessLookupError:
        return  # the whole group is gone already
    try:
        proc.wait(timeout=60)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
    time.sleep(0.5)  # the group's background agents finish their SIGTERM handling
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGKILL)


def _agent_pid(tmp: Path, host: str) -> int:
    out = subprocess.run(
        ["pgrep", "-f", f"manage.py agent --data-root {tmp / host} --host {host}"], capture_output=True, text=True
    )
    pids = [int(p) for p in out.stdout.split()]
    assert len(pids) == 1, (host, out.stdout)
    return pids[0]


def test_the_readme_several_servers_flow_works_as_written(flow):
    base, tmp, receiver = flow["base"], flow["tmp"], flow["receiver"]
    browser = Browser(base)

    def login_page_up() -> bool:
        assert flow["proc"].poll() is None, flow["log"].read_text()
        try:
            return browser.get("/accounts/login/")[0] == 200
        except OSError:
            return False

    _until("the login page loads", login_page_up, 240)
    status, page = browser.get("/accounts/login/")
    css = re.search(r'href="(/static/opsdash/app\.[0-9a-f]+\.css)"', page)
    assert css and browser.get(css.group(1))[0] == 200  # collected, hashed, served by whitenoise
    browser.login("operator", "demo")

    def both_hosts() -> list[dict]:
        modules = browser.json("/api/modules")["modules"]
        return modules if {m["host"] for m in modules} == {"store-a", "store-b"} else []

    modules = _until("both hosts' modules are listed", both_hosts, 60)
    keys = [(m["host"], m["branch"], m["module"]) for m in modules]
    assert len(keys) == len(set(keys))  # each module once
    branches_a = {p.name for p in (tmp / "store-a").iterdir()}
    assert {k[1] for k in keys if k[0] == "store-b"} == {"dar"} and {
        k[1] for k in keys if k[0] == "store-a"
    } == branches_a
    assert not any(m["stale"] for m in modules)

    target = next(m for m in modules if m["host"] == "store-b" and m["status"] == "critical")
    before_a, before_b = _tree(tmp / "store-a"), _tree(tmp / "store-b")
    status, body = browser.post(f"/api/modules/store-b/dar/{target['module']}/rebuild")
    assert status == 202, body
    job_url = json.loads(body)["job"]["url"].removeprefix(base)
    job = _until(
        "the rebuild finishes", lambda: (j := browser.json(job_url))["status"] in ("succeeded", "failed") and j, 60
    )
    assert job["status"] == "succeeded", job
    assert _tree(tmp / "store-a") == before_a  # nothing changed on store-a
    after_b = _tree(tmp / "store-b")
    live = f"dar/modules/{target['module']}/live/"
    changed = {name for name in after_b.keys() | before_b.keys() if after_b.get(name) != before_b.get(name)}
    assert changed and all(name.startswith(live) for name in changed), changed
    assert f"{live}events.meta.json" in changed and any(".corrupted." in name for name in changed - before_b.keys())
    _until(
        "the module is healthy",
        lambda: browser.json(f"/api/modules/store-b/dar/{target['module']}")["status"] == "healthy",
        30,
    )

    os.kill(_agent_pid(tmp, "store-b"), signal.SIGTERM)
    stopped = time.monotonic()
    documented = 3 * INTERVAL + INTERVAL + 2  # OPSDASH_STALE_SECONDS, then one pass of another scanner; 2 s of slack
    _until(
        "store-b's modules are stale in the API",
        lambda: all(m["stale"] for m in browser.json("/api/modules")["modules"] if m["host"] == "store-b"),
        documented,
    )
    assert not any(m["stale"] for m in browser.json("/api/modules")["modules"] if m["host"] == "store-a")
    status, page = browser.get(f"/modules/store-b/dar/{target['module']}/")
    assert (
        status == 200
        and 'id="module-stale"' in page
        and "The scanner of host <bdi>store-b</bdi> has not reported" in page
    )
    alert = _until(
        "the host_stale alert",
        lambda: [r["body"] for r in receiver.received if r["body"]["event"] == "host_stale"],
        documented,
    )
    assert time.monotonic() - stopped <= documented + 1
    assert [a["host"] for a in alert] == ["store-b"]
    status, health = browser.get("/healthz")  # the operator sees the detail
    assert status == 200 and json.loads(health)["stale_hosts"] == ["store-b"]
    anonymous = urllib.request.urlopen(base + "/healthz", timeout=10)
    assert anonymous.status == 200 and json.loads(anonymous.read()) == {"status": "ok"}
    assert "Traceback" not in flow["log"].read_text(), flow["log"].read_text()[-5000:]
