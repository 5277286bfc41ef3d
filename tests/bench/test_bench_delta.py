"""Smoke test of ``bench/delta.py``: it plays every feed end to end and writes its report.

No timing or ratio assertions (numbers depend on the machine and the feed's length); the
benchmark itself checks that the subscriber rebuilt every publication.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.timeout(180)
def test_delta_bench_writes_its_report(tmp_path: Path) -> None:
    out = tmp_path / "delta.md"
    command = [sys.executable, "-m", "bench.delta", "--seconds", "2", "--out", str(out)]
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=170)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    report = out.read_text()
    for feed in ("ticker page", "ticker board", "ticker quotes", "order book", "leaderboard"):
        rows = [line for line in report.splitlines() if line.startswith(f"| {feed} |")]
        assert len(rows) == 4 + 1, feed  # 2 encodings x deflate on/off, and the CPU row
