"""deploy/systemd: the units pass ``systemd-analyze verify``, every one is hardened the same way,
and they run what README documents."""

from __future__ import annotations

import os
import re
import shlex
import shutil
import subprocess
from pathlib import Path

import pytest

from opsdash.management.commands.agent import Command as AgentCommand
from opsdash.management.commands.ingest_logs import Command as IngestLogsCommand

REPO = Path(__file__).resolve().parents[2]
DEPLOY = REPO / "deploy" / "systemd"
UNITS = ("opsdash-web.service", "opsdash-agent.service", "opsdash-ingest-logs.service")
# The daily digest: a oneshot service and the timer that starts it (no [Install] of its own).
DIGEST = ("opsdash-digest.service", "opsdash-digest.timer")
INSTALL = "/opt/opsdash"
HARDENING = {
    "User": "opsdash",
    "Group": "opsdash",
    "ProtectSystem": "strict",
    "NoNewPrivileges": "yes",
    "PrivateTmp": "yes",
    "ProtectHome": "yes",
    "ProtectKernelTunables": "yes",
    "ProtectControlGroups": "yes",
    "RestrictSUIDSGID": "yes",
    "LockPersonality": "yes",
    "Restart": "on-failure",
    "EnvironmentFile": "/etc/opsdash/opsdash.env",
    "WorkingDirectory": INSTALL,
}


def unit(name: str) -> dict[str, list[str]]:
    """``section.Key`` -> its values in order (a key may be given more than once)."""
    out: dict[str, list[str]] = {}
    section = ""
    for raw in (DEPLOY / name).read_text().splitlines():
        line = raw.strip()
        if not line or line.startswith(("#", ";")):
            continue
        if line.startswith("["):
            section = line.strip("[]")
            continue
        key, _, value = line.partition("=")
        out.setdefault(f"{section}.{key.strip()}", []).append(value.strip())
    return out


def _one(values: dict[str, list[str]], key: str) -> str:
    [value] = values[key]
    return value


def _words(values: dict[str, list[str]], key: str) -> list[str]:
    return [word for value in values.get(key, []) for word in value.split()]


@pytest.mark.parametrize("name", UNITS)
def test_every_unit_is_hardened(name):
    values = unit(name)
    for key, expected in HARDENING.items():
        assert values.get(f"Service.{key}") == [expected], (name, key)
    assert f"{INSTALL}/var" in _words(values, "Service.ReadWritePaths")
    assert {"network-online.target", "postgresql.service"} <= set(_words(values, "Unit.After"))
    assert _one(values, "Install.WantedBy") == "multi-user.target"
    assert _one(values, "Service.CapabilityBoundingSet") == ""


def test_each_unit_writes_only_what_it_must_and_is_ordered_after_the_node_server_where_it_reads_it():
    web, agent, follower = (unit(name) for name in UNITS)
    assert _words(web, "Service.ReadWritePaths") == [f"{INSTALL}/var"]  # no store file: it repairs nothing
    assert _words(agent, "Service.ReadWritePaths") == ["/srv/mishkah-os/data/branches", f"{INSTALL}/var"]
    assert _words(follower, "Service.ReadWritePaths") == [f"{INSTALL}/var"]
    assert _one(follower, "Service.SupplementaryGroups") == "systemd-journal"
    assert "mishkah-os.service" in _words(follower, "Unit.After") and "mishkah-os.service" in _words(
        agent, "Unit.After"
    )
    assert "mishkah-os.service" not in _words(web, "Unit.After")
    # the agent lets a running job finish (up to 120 s) before it stops
    assert int(_one(agent, "Service.TimeoutStopSec")) > 120


def _exec(name: str) -> list[str]:
    return shlex.split(_one(unit(name), "Service.ExecStart"))


def test_the_commands_are_those_readme_documents():
    readme = (REPO / "README.md").read_text()
    # "Several servers": the web server with the embedded worker off, and an agent per host
    assert "OPSDASH_EMBEDDED_WORKER=0 .venv/bin/gunicorn opsdash.wsgi --bind" in readme
    assert ".venv/bin/python manage.py agent" in readme
    web = _exec("opsdash-web.service")
    assert web[:2] == [f"{INSTALL}/.venv/bin/gunicorn", "opsdash.wsgi"] and "--bind" in web
    assert "OPSDASH_EMBEDDED_WORKER=0" in _words(unit("opsdash-web.service"), "Service.Environment")
    env_example = (DEPLOY / "opsdash.env.example").read_text()
    assert not re.search(r"^OPSDASH_EMBEDDED_WORKER=", env_example, re.M)  # it would override the unit's 0

    agent = _exec("opsdash-agent.service")
    assert agent == [f"{INSTALL}/.venv/bin/python", f"{INSTALL}/manage.py", "agent"]
    AgentCommand().create_parser("manage.py", "agent").parse_args(agent[3:])

    follower = _exec("opsdash-ingest-logs.service")
    assert follower[:3] == [f"{INSTALL}/.venv/bin/python", f"{INSTALL}/manage.py", "ingest_logs"]
    options = IngestLogsCommand().create_parser("manage.py", "ingest_logs").parse_args(follower[3:])
    assert (options.follow, options.journal, options.file, options.once) == (True, "mishkah-os", None, False)
    assert " ".join(follower[2:]) in (DEPLOY / "README.md").read_text()


def test_the_digest_runs_daily_hardened_like_the_others():
    service, timer = (unit(name) for name in DIGEST)
    for key, expected in HARDENING.items():
        assert service.get(f"Service.{key}") == [expected], key
    assert _one(service, "Service.Type") == "oneshot" and _words(service, "Service.ReadWritePaths") == [
        f"{INSTALL}/var"
    ]
    command = _exec("opsdash-digest.service")
    assert command == [f"{INSTALL}/.venv/bin/python", f"{INSTALL}/manage.py", "digest"]
    assert "manage.py digest" in (REPO / "README.md").read_text()
    assert _one(timer, "Timer.OnCalendar") == "*-*-* 07:00:00" and _one(timer, "Timer.Persistent") == "true"
    assert _one(timer, "Install.WantedBy") == "timers.target"


def test_the_env_example_sets_only_documented_variables():
    readme = (REPO / "README.md").read_text()
    keys = re.findall(r"^#?([A-Z][A-Z0-9_]*)=", (DEPLOY / "opsdash.env.example").read_text(), re.M)
    assert {"DATABASE_URL", "DJANGO_SECRET_KEY", "OPSDASH_DATA_ROOT", "OPSDASH_HOST_NAME"} <= set(keys)
    assert [key for key in keys if f"`{key}`" not in readme] == []


def _analyze() -> str:
    path = shutil.which("systemd-analyze")
    if path is None:
        if os.environ.get("CI"):
            pytest.fail("CI must verify the systemd units, but systemd-analyze is missing")
        pytest.skip("systemd-analyze is not installed (Debian: the systemd package); CI has it")
    return path


def _copies(tmp_path: Path, edit=lambda text: text) -> list[Path]:
    """The units, their programs (not installed here) replaced by one that exists: verify checks
    that every ExecStart names an executable."""
    out = []
    for name in (*UNITS, *DIGEST):
        text = re.sub(r"^(Exec\w+=)\S+", r"\1/bin/true", (DEPLOY / name).read_text(), flags=re.M)
        (tmp_path / name).write_text(edit(text))
        out.append(tmp_path / name)
    return out


def _verify(paths: list[Path]) -> tuple[int, list[str]]:
    done = subprocess.run([_analyze(), "verify", "--man=no", *map(str, paths)], capture_output=True, text=True)
    about_ours = [
        line for line in (done.stdout + done.stderr).splitlines() if any(name in line for name in (*UNITS, *DIGEST))
    ]
    return done.returncode, about_ours


def test_systemd_analyze_verify_finds_nothing_to_say(tmp_path):
    rc, complaints = _verify(_copies(tmp_path))
    assert (rc, complaints) == (0, [])


def test_systemd_analyze_verify_would_tell_a_mistake(tmp_path):
    """verify only warns about an unknown key or a bad value (exit code 0): hence the check of its
    output above, which this proves catches one."""
    _, complaints = _verify(_copies(tmp_path, lambda text: text.replace("ProtectHome=yes", "ProtectHome=maybe")))
    assert len(complaints) == 4 and all("ProtectHome" in line or "maybe" in line for line in complaints)
