"""The real Node.js event store of Mishkah OS, driven from the tests.

The unmodified files live read-only in ``../shared/fixtures/mishkah-os/node`` (never copied into
the repository). :func:`prepare` copies them to ``.cache/mishkah-node`` (git-ignored) and runs
``npm install`` there (pino, from the npm registry), skipped when ``node_modules`` already holds
what ``package.json`` asks for. :class:`NodeStore` then runs a short ESM script with ``node`` that
imports ``src/eventStore.js`` and calls its functions, in order, on one live folder with the
context ``{branchId, moduleId, liveDir}``; the results come back as JSON.

``scripts/test`` runs this file (``python tests/eventstore/node_store.py``) to install before the
suite; the tests' session fixture calls :func:`prepare` too, so a test file run alone works.
"""

from __future__ import annotations

import fcntl
import json
import os
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[2]
FIXTURE = REPO.parent / "shared" / "fixtures" / "mishkah-os" / "node"
CACHE = REPO / ".cache" / "mishkah-node"
STAMP = ".opsdash-installed-package.json"  # in node_modules: the package.json it was installed from
MIN_NODE = 18  # ESM top-level await, structuredClone

# Reads {store, context, calls, out} from stdin; calls store[name](context, ...args) one after
# the other (awaiting each); writes the list of results as JSON to `out` (stdout is pino's).
SCRIPT = """\
import { readFileSync, writeFileSync } from 'node:fs';
import { pathToFileURL } from 'node:url';

const input = JSON.parse(readFileSync(0, 'utf8'));
const store = await import(pathToFileURL(input.store).href);
const results = [];
for (const [name, ...args] of input.calls) {
  if (typeof store[name] !== 'function') throw new Error(`${input.store} exports no function ${name}`);
  results.push(await store[name](input.context, ...args));
}
writeFileSync(input.out, JSON.stringify(results));
"""


class NodeUnavailable(Exception):
    """node or npm is missing, too old, the fixture is absent, or the install failed."""


class NodeFailed(AssertionError):
    """The Node script exited with an error (a call threw); ``stderr`` is what Node printed."""

    def __init__(self, message: str, stderr: str):
        super().__init__(message)
        self.stderr = stderr


@dataclass(frozen=True, slots=True)
class NodeRun:
    """What one run returned: each call's result, and what Node printed."""

    results: list[Any]
    stdout: str  # pino's JSON lines (e.g. "Failed to parse event log line")
    stderr: str  # console.error: the "[eventStore][loadMeta] ..." recovery messages

    @property
    def recovered(self) -> bool:
        """True if Node's loadMeta found the meta damaged and went into its recovery."""
        return "CORRUPTED FILE DETECTED" in self.stderr


def _node_major(node: str) -> int:
    out = subprocess.run([node, "--version"], capture_output=True, text=True, check=True).stdout
    return int(out.strip().lstrip("v").split(".")[0])


def _installed(target: Path) -> bool:
    """node_modules was installed from this very package.json and holds each dependency."""
    package = target / "package.json"
    stamp = target / "node_modules" / STAMP
    if not stamp.is_file() or stamp.read_bytes() != package.read_bytes():
        return False
    deps = json.loads(package.read_bytes()).get("dependencies", {})
    return all((target / "node_modules" / name / "package.json").is_file() for name in deps)


def prepare(source: Path = FIXTURE, target: Path = CACHE) -> Path:
    """Copy the Node store to ``target`` and install its dependencies there; return ``target``.

    The fixture's files (read-only, never modified) are copied afresh when they differ, as
    ordinary writable files; ``npm install`` runs only when ``node_modules`` does not match
    ``package.json``. Serialised by a lock file, so parallel test workers share one install.
    Raises :class:`NodeUnavailable` with the reason.
    """
    node, npm = shutil.which("node"), shutil.which("npm")
    if node is None or npm is None:
        raise NodeUnavailable(f"{'node' if node is None else 'npm'} is not on PATH")
    if _node_major(node) < MIN_NODE:
        raise NodeUnavailable(f"node {MIN_NODE}+ is needed, found {_node_major(node)}")
    if not (source / "src" / "eventStore.js").is_file():
        raise NodeUnavailable(f"the Node store fixture is missing: {source}")
    target.mkdir(parents=True, exist_ok=True)
    with open(target.parent / f".{target.name}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        for src in sorted(source.rglob("*")):
            rel = src.relative_to(source)
            if src.is_file() and "node_modules" not in rel.parts:
                dst = target / rel
                dst.parent.mkdir(parents=True, exist_ok=True)
                if not dst.is_file() or dst.read_bytes() != src.read_bytes():
                    dst.write_bytes(src.read_bytes())
        if not _installed(target):
            proc = subprocess.run(
                [npm, "install", "--prefix", str(target), "--no-audit", "--no-fund"],
                capture_output=True,
                text=True,
                timeout=600,
            )
            if proc.returncode != 0:
                raise NodeUnavailable(f"npm install in {target} failed ({proc.returncode}): {proc.stderr[-1500:]}")
            (target / "node_modules" / STAMP).write_bytes((target / "package.json").read_bytes())
    return target


class NodeStore:
    """Calls into ``<folder>/src/<build>`` (default the fixed build, ``eventStore.js``)."""

    def __init__(self, folder: Path, build: str = "eventStore.js"):
        self.folder = folder
        self.store = folder / "src" / build

    def run(
        self, live_dir: Path, *calls: tuple[Any, ...], branch: str, module: str, env: dict[str, str] | None = None
    ) -> NodeRun:
        """Run ``calls`` (each ``(name, *args)``, e.g. ``("appendEvent", entry)``) in one Node
        process, in order, with the context ``{branchId: branch, moduleId: module, liveDir}``.
        Raises :class:`NodeFailed` if one throws."""
        with tempfile.TemporaryDirectory(prefix="mishkah-node-run-") as tmp:
            script, out = Path(tmp) / "run.mjs", Path(tmp) / "out.json"
            script.write_text(SCRIPT)
            payload = {
                "store": str(self.store),
                "context": {"branchId": branch, "moduleId": module, "liveDir": str(live_dir)},
                "calls": [list(c) for c in calls],
                "out": str(out),
            }
            # A guard against a hung process only, far above any run's duration (not a timing check).
            proc = subprocess.run(
                ["node", str(script)],
                input=json.dumps(payload),
                capture_output=True,
                text=True,
                timeout=600,
                env={**os.environ, **(env or {})},
            )
            if proc.returncode != 0 or not out.exists():
                raise NodeFailed(
                    f"node exited {proc.returncode} running {[c[0] for c in calls]}\n"
                    f"stderr: {proc.stderr[-3000:]}\nstdout: {proc.stdout[-1000:]}",
                    proc.stderr,
                )
            return NodeRun(json.loads(out.read_text()), proc.stdout, proc.stderr)

    def call(self, live_dir: Path, name: str, *args: Any, branch: str, module: str) -> Any:
        """One call's result (see :meth:`run`)."""
        return self.run(live_dir, (name, *args), branch=branch, module=module).results[0]


if __name__ == "__main__":  # scripts/test: install before the suite runs
    try:
        print(f"Mishkah OS Node store ready in {prepare()}")
    except NodeUnavailable as exc:
        print(f"Mishkah OS Node store not installed: {exc}", file=sys.stderr)
        sys.exit(1)
