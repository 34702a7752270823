"""Every variable .env.example documents is read, in one place (opsdash/settings.py, or
scripts/serve for the web server's own), and every variable read is documented there and in
README's configuration table."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]

# Runs the settings module with os.environ recording every name it is asked for.
RECORD = """
import json, os, sys
asked = set()
class Recording(os._Environ):
    def __getitem__(self, key):
        asked.add(key)
        return super().__getitem__(key)
    def get(self, key, default=None):
        asked.add(key)
        return super().get(key, default)
env = os.environ
os.environ = Recording(env._data, env.encodekey, env.decodekey, env.encodevalue, env.decodevalue)
import opsdash.settings
print(json.dumps(sorted(asked)))
"""


def _documented() -> set[str]:
    names = set()
    for line in (REPO / ".env.example").read_text().splitlines():
        if m := re.match(r"^([A-Z][A-Z0-9_]+)=", line):
            names.add(m.group(1))
    return names


def _read_by_settings() -> set[str]:
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("OPSDASH_", "DJANGO_", "EMAIL_")) and k not in ("DATABASE_URL",)
    }
    out = subprocess.run([sys.executable, "-c", RECORD], cwd=REPO, env=env, capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    import json

    asked = set(json.loads(out.stdout.strip().splitlines()[-1]))
    return {name for name in asked if name.startswith(("OPSDASH_", "DJANGO_", "EMAIL_", "DATABASE_", "DEFAULT_FROM"))}


def _read_by_serve() -> set[str]:
    return set(re.findall(r"\$\{([A-Z][A-Z0-9_]+)", (REPO / "scripts" / "serve").read_text()))


def test_every_documented_variable_is_read_and_every_read_one_documented():
    documented, settings_reads, serve_reads = _documented(), _read_by_settings(), _read_by_serve()
    assert documented - settings_reads - serve_reads == set(), "documented in .env.example but read nowhere"
    assert settings_reads - documented == set(), "read by opsdash/settings.py but not in .env.example"
    assert {"PORT", "OPSDASH_BIND", "WEB_CONCURRENCY"} <= serve_reads & documented


def test_the_readme_lists_every_variable():
    readme = (REPO / "README.md").read_text()
    table = readme[readme.index("### Configuration") :]
    missing = {name for name in _documented() if f"`{name}`" not in table}
    assert missing == set(), "variables of .env.example missing from README's configuration table"


def test_nothing_else_reads_the_environment():
    """Settings are read in one place: no module of opsdash/ but settings.py asks os.environ
    (the WSGI entry point only sets the settings module's name)."""
    offenders = []
    for path in (REPO / "opsdash").rglob("*.py"):
        if path.name in ("settings.py", "wsgi.py") or "migrations" in path.parts:
            continue
        if re.search(r"os\.environ|os\.getenv|getattr\(settings,", path.read_text()):
            offenders.append(str(path.relative_to(REPO)))
    assert offenders == []
