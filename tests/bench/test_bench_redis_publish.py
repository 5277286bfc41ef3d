"""Smoke test of ``bench/redis_publish.py``: every row publishes everything and is reported.

No timing or ratio assertions: the numbers depend on the machine.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from ..hub.redis_server import require

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.timeout(300)
def test_quick_run_writes_the_report(tmp_path: Path) -> None:
    require()
    out = tmp_path / "redis_publish.md"
    command = [sys.executable, "-m", "bench.redis_publish", "--publishers", "1,20"]
    command += ["--messages", "400", "--reps", "1", "--out", str(out)]
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=280)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    report = out.read_text()
    assert "| system | 1 publishers | 20 publishers |" in report
    for system in ("wsend, history", "wsend, no history, no pipelining", "python-socketio"):
        rows = [line for line in report.splitlines() if line.startswith(f"| {system} |")]
        assert len(rows) == 1, system
        cells = rows[0].strip("|").split("|")[1:]
        assert len(cells) == 2
        for cell in cells:
            rate = float(cell.split("(")[0].replace(",", ""))
            assert rate > 0, rows[0]
