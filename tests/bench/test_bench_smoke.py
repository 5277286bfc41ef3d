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
        "0.5",  # a loaded machine may not complete a round trip in a shorter window
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


@pytest.mark.timeout(90)
def test_asgi_layers_quick_run(tmp_path: Path) -> None:
    """bench/asgi.py: uvicorn with wsend's layer and one of uvicorn's, side by side."""
    out = tmp_path / "results"
    command = [sys.executable, "-m", "bench.asgi", "--sizes", "64", "--reps", "1"]
    command += ["--layers", "wsend,websockets-sansio", "--duration", "0.5", "--warmup", "0.05"]
    command += ["--out", str(out)]
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=80)
    assert proc.returncode == 0, proc.stdout + proc.stderr

    records = json.loads((out / "asgi.json").read_text())["records"]
    assert {(r["client"], r["layer"], r["inflight"]) for r in records} == {
        (client, layer, inflight)
        for client in ("picows", "wsend-callbacks")
        for layer in ("wsend", "websockets-sansio")
        for inflight in (64, 1)
    }
    assert not [r for r in records if "error" in r]
    assert all(r["rate"] > 0 and r["server_cpu_ns"] >= 0 for r in records)
    markdown = (out / "asgi.md").read_text()
    ratio = r"\d+\.\d\d\u00d7"
    assert re.search(r"^\| wsend \(`ws=WSendProtocol`\) \| [\d,]+ \|$", markdown, re.M), markdown
    row = rf"^\| uvicorn `websockets-sansio` \| [\d,]+ \({ratio} wsend\) \|$"
    assert re.search(row, markdown, re.M), markdown
    best = rf"^\| wsend ÷ best uvicorn layer \| \*\*{ratio}\*\* \|$"
    assert len(re.findall(best, markdown, re.M)) == 6  # 3 tables for each of 2 clients
    assert "wsend's callback client" in markdown


def test_asgi_readme_section_is_replaced(tmp_path: Path) -> None:
    from bench.asgi import README_BEGIN, README_END, update_readme

    readme = tmp_path / "README.md"
    readme.write_text(f"before\n{README_BEGIN}\nold\n{README_END}\nafter\n")
    update_readme(readme, ["| new | table |"])
    assert readme.read_text() == f"before\n{README_BEGIN}\n| new | table |\n{README_END}\nafter\n"


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
