"""Smoke test of the threading benchmark (``python -m bench.sync``): it runs end to end, both
libraries serve and answer, and the report has every table. No timing assertions."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.timeout(90)
def test_quick_run_writes_the_report(tmp_path: Path) -> None:
    out = tmp_path / "sync.md"
    command = [
        sys.executable,
        "-m",
        "bench.sync",
        "--sizes",
        "64,8k",
        "--reps",
        "1",
        "--warmup",
        "0.02",
        "--duration",
        "0.1",
        "--out",
        str(out),
    ]
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=80)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    report = out.read_text()
    for title in ("One message in flight", "Pipelined, 64 in flight", "client CPU", "server CPU"):
        assert title in report
    rows = [line for line in report.splitlines() if line.startswith("| wsend.sync")]
    assert len(rows) == 4
    assert all("\N{MULTIPLICATION SIGN})" in row for row in rows)
    assert "| 64 B | 8 KiB |" in report


def test_a_stalled_cell_is_reported_as_such() -> None:
    """A repetition aborted by the watchdog marks its cell stalled, and wsend's ratio in that
    column is left out (there is nothing to compare with)."""
    from bench import sync

    ok = {"rate": 100.0, "client_us": 10.0, "server_us": 10.0}
    results = {(kind, 1 << 20, lib): [ok, ok] for kind in ("one", "pipelined") for lib in sync.LIBS}
    results[("pipelined", 1 << 20, "websockets")] = [ok, {"stalled": 1.0}]
    report = sync.report(results, [1 << 20], "meta")
    pipelined = report.split("## Pipelined, 64 in flight")[1].split("##")[0]
    assert "| websockets.sync | **stalled** |" in pipelined
    assert "| wsend.sync | 100 |" in pipelined  # no ratio
    one = report.split("## One message in flight")[1].split("##")[0]
    assert "| wsend.sync | 100 (1.00\N{MULTIPLICATION SIGN}) |" in one
