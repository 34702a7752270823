"""A tiny run of every benchmark, so they never rot. Asserts the output's shape, never a time."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


def _run(*args: str, timeout: int = 300) -> str:
    out = subprocess.run([sys.executable, *args], cwd=REPO, capture_output=True, text=True, timeout=timeout)
    assert out.returncode == 0, out.stderr
    return out.stdout


def _rows(text: str, first_column: str) -> list[list[str]]:
    lines = text.strip().splitlines()
    header = next(i for i, line in enumerate(lines) if line.startswith(first_column))
    return [re.split(r"\s{2,}", line.strip()) for line in lines[header + 1 :] if line and not line.startswith("(")]


def test_rebuild_benchmark_prints_rates_ratios_and_memory():
    rows = _rows(_run("bench/rebuild.py", "--sizes", "2M"), "log")
    assert len(rows) == 1
    size, events, io, parse, rebuild, ratio_parse, ratio_io, rss, worker_rss, verify, ratio_verify = rows[0]
    assert size == "2 MB" and int(events) > 1000
    assert all(float(x) > 0 for x in (io, parse, rebuild, rss, verify))
    assert ratio_parse.endswith("x") and ratio_io.endswith("x") and ratio_verify.endswith("x")


def test_appends_benchmark_compares_with_sqlite():
    rows = _rows(_run("bench/appends.py", "--events", "40"), "writer")
    kinds = {(r[0], r[1], r[2]) for r in rows}
    assert (
        ("eventstore", "1", "on") in kinds
        and ("eventstore", "4", "off") in kinds
        and ("sqlite WAL FULL", "4", "on") in kinds
    )
    assert all(float(r[3]) > 0 and int(r[4]) > 0 and r[5].endswith("x") for r in rows)


def test_scan_benchmark_reads_only_new_bytes_after_growth():
    out = _run("bench/scan.py", "--branches", "3", "--modules", "10", "--events", "2")
    rows = {r[0]: r for r in _rows(out, "pass")}
    assert rows["warm re-scan"][3] == "0" and rows["warm re-scan (service)"][3] == "0"
    appended = int(re.search(r"(\d+) bytes appended", out).group(1))
    # the new bytes, and the fingerprint (2 x 512 bytes) and end probe of the grown log (and
    # perhaps a checkpoint merge, which re-reads at most the log's few KB)
    assert appended + 1025 <= int(rows["after 1 logs grew"][3]) < appended + 1025 + 8000
    # a scrub reads every file whole, exactly what the I/O limit pass reads
    assert rows["scrub (full check)"][3] == rows["read every file whole"][3] != "0"
    assert re.search(r"scrub: [\d.]+ MB/s against [\d.]+ MB/s .*: [\d.]+x the limit", out)


@pytest.mark.skipif(not shutil.which("wrk"), reason="wrk is not installed (apt-get install wrk)")
def test_pages_benchmark_measures_every_page():
    rows = _rows(
        # 4 clients for 2 s: 16 clients for 1 s on a loaded 2-core machine sometimes finished no request at all.
        _run(
            "bench/pages.py",
            "--modules",
            "60",
            "--incidents-per-module",
            "2",
            "--duration",
            "2",
            "--workers",
            "1",
            "--connections",
            "4",
        ),
        "modules",
    )
    assert [r[1] for r in rows] == [
        "overview, first page",
        "overview, filtered",
        "overview, late page",
        "module page",
        "history",
        "history, filtered",
    ]
    assert all(r[6] == "0" and float(r[2]) > 0 for r in rows), rows
