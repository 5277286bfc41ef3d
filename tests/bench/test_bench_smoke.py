"""Smoke test of the benchmark harness: it runs end to end and writes a table of numbers.

No timing assertions: numbers depend on the machine. This checks the plumbing only (worker
processes, interleaving, medians, ratios, the markdown report and its plot).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("picows")
pytest.importorskip("aiohttp")
pytest.importorskip("matplotlib")

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.timeout(90)
def test_quick_run_writes_markdown_table(tmp_path: Path) -> None:
    out = tmp_path / "results"
    command = [
        sys.executable,
        "-m",
        "bench",
        "--quick",
        "--scenarios",
        "1",
        "--sizes",
        "64",
        "--libs",
        "wsend,aiohttp",
        "--loop",
        "asyncio",
        "--duration",
        "0.2",
        "--warmup",
        "0.05",
        "--out",
        str(out),
    ]
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=80)
    assert proc.returncode == 0, proc.stdout + proc.stderr

    data = json.loads((out / "latest.json").read_text())
    records = data["records"]
    assert records, "no measurements recorded"
    assert not [r for r in records if "error" in r]
    libs = {"wsend", "wsend-callbacks", "picows", "aiohttp"}
    assert {r["server"] for r in records} == libs
    assert {r["client"] for r in records} == libs
    assert all(r["rate"] > 0 for r in records)

    markdown = (out / "latest.md").read_text()
    assert "## 1a. Echo, one message in flight: servers (picows client)" in markdown
    assert "## 1b. Echo, one message in flight: clients (picows server)" in markdown
    for lib in ("wsend", "wsend, callbacks \\(on_message\\)", "picows", "aiohttp"):
        # a row with a median and both ratios: "| wsend | 1,234 (0.95x · 1.00x) |" (x is U+00D7)
        ratio = r"\d+\.\d\d\u00d7"
        row = rf"^\| {lib} \| [\d,]+ \({ratio} · {ratio}\) \|$"
        assert re.search(row, markdown, re.M), markdown
    assert "| Pipelined echo server throughput" in markdown  # targets table
    assert (out / "echo1_servers.png").stat().st_size > 0


@pytest.mark.timeout(170)
def test_instruction_counts(tmp_path: Path) -> None:
    """bench/instructions.py runs a server under callgrind against a native peer."""
    if shutil.which("valgrind") is None:
        message = "valgrind is not installed (apt-get install valgrind)"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    command = [sys.executable, "-m", "bench.instructions", "--messages", "200,600", "--top", "5"]
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=160)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    pattern = r"wsend server, asyncio, 64 B, 64 in flight: (-?[\d,]+) instructions"
    match = re.search(pattern, proc.stdout)
    assert match is not None, proc.stdout
    assert int(match.group(1).replace(",", "")) > 0
    assert "| instructions per message (self) | C function |" in proc.stdout
