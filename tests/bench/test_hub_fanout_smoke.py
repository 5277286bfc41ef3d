"""Smoke test of the hub fan-out benchmark: every system, both setups, end to end.

No timing assertions: this checks the plumbing (server and client worker processes speaking
the hub's protocol, Engine.IO/Socket.IO and plain WebSocket, Redis for two nodes), that every
delivery arrived, and that the report and its plot are written.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from ..hub.redis_server import require

pytest.importorskip("picows")
pytest.importorskip("socketio")
pytest.importorskip("matplotlib")

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.timeout(240)
def test_quick_fanout_run_delivers_everything_and_writes_the_report(tmp_path: Path) -> None:
    require("redis-server")
    out = tmp_path / "results"
    command = [sys.executable, "-m", "bench.hub_fanout", "--quick", "--subscribers", "40"]
    command += ["--deliveries", "2000", "--loop", "asyncio", "--out", str(out)]
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=230)
    log = out / "fanout_workers.log"
    assert proc.returncode == 0, proc.stdout + proc.stderr + log.read_text()

    records = json.loads((out / "hub_fanout.json").read_text())["records"]
    runs = [r for r in records if r["kind"] == "fanout"]
    cases = {(r["setup"], r["system"], r["window"]) for r in runs}
    systems = ("hub", "broadcast", "socketio")
    setups = ("1 node", "2 nodes + Redis")
    assert cases == {(s, name, w) for s in setups for name in systems for w in (1, 4)}
    for run in runs:
        assert run["deliveries"] == run["expected"] == 50 * 40, run
        assert 0 < run["p50"] <= run["p99"]
        assert run["server_cpu_ns"] > 0
    memory = {r["system"]: r["per_subscriber"] for r in records if r["kind"] == "memory"}
    assert set(memory) == {*systems, "hub, presence on"}

    markdown = (out / "hub_fanout.md").read_text()
    for heading in ("## 1 node", "## 2 nodes + Redis", "## Goals", "## Memory per idle"):
        assert heading in markdown
    assert "| 40 | 1 | wsend hub | " in markdown
    assert (out / "hub_fanout.png").stat().st_size > 0
