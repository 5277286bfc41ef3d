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
