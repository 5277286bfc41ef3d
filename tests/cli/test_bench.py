"""``wsend bench``: short runs against loopback echo servers; the numbers aren't checked."""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path

import pytest

from wsend.cli.bench_report import BenchResult, progress_line

from .conftest import ENV, WSEND, Background, run_wsend
from .test_send import free_port


def test_summary(echo_server: Background) -> None:
    result = run_wsend("bench", echo_server.url, "-c", "2", "-d", "1", "--text", "-s", "100")
    assert result.code == 0, result.err
    lines = result.out.splitlines()
    assert [line.split()[0] for line in lines] == [
        "target",
        "load",
        "messages",
        "throughput",
        "latency",
    ]
    assert "2 connections, 100 B text messages" in lines[1]
    assert ", 0 errors" in lines[2]
    for name in ("p50", "p90", "p99", "max"):
        assert name in lines[4]


def test_json_and_plot(echo_server: Background, tmp_path: Path) -> None:
    pytest.importorskip("matplotlib")
    plot = tmp_path / "latency.png"
    args = ["-c", "2", "-d", "1", "--rate", "50", "--json", "--plot", str(plot)]
    result = run_wsend("bench", echo_server.url, *args)
    assert result.code == 0, result.err
    report = json.loads(result.out)
    assert report["connections"] == 2
    assert report["rate_per_connection"] == 50
    assert report["messages"] > 0
    assert report["errors"] == 0
    assert set(report["latency_ms"]) >= {"p50", "p90", "p99", "max"}
    assert set(report["throughput"]) == {"msgs_per_s", "mb_per_s"}
    assert plot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_against_websockets_server(websockets_server: Background) -> None:
    args = ["-c", "2", "-d", "0.5", "-s", "2M", "--compress", "--json"]
    result = run_wsend("bench", websockets_server.url, *args)
    assert result.code == 0, result.err
    assert json.loads(result.out)["size"] == 2 << 20


def test_refused_exits_3() -> None:
    result = run_wsend("bench", f"ws://127.0.0.1:{free_port()}/", "-c", "2", "-d", "1")
    assert result.code == 3
    assert result.err.startswith("error: connection refused")
    assert result.out == ""


def test_plot_without_matplotlib_is_a_usage_error(tmp_path: Path) -> None:
    # A matplotlib that can't be imported shadows the real one.
    (tmp_path / "matplotlib").mkdir()
    (tmp_path / "matplotlib" / "__init__.py").write_text("raise ImportError('no')\n")
    argv = [*WSEND, "bench", "ws://127.0.0.1:1/", "--plot", str(tmp_path / "x.png")]
    env = {**ENV, "PYTHONPATH": str(tmp_path)}
    done = subprocess.run(argv, capture_output=True, env=env, timeout=30, check=False)
    assert done.returncode == 2
    assert done.stderr == b"error: --plot needs matplotlib: pip install 'wsend[plot]'\n"


def test_progress_line_fits_the_terminal() -> None:
    result = BenchResult("ws://x/", 2, 64, True)
    result.latencies.extend([0.001] * 1500)
    line = progress_line(result, 2.5, 10, 1500.0, [0.001, 0.002, 0.003], width=100)
    assert re.match(r"\[(#+)(-+)\]  25%", line)
    filled, empty = re.match(r"\[(#+)(-+)\]", line).groups()  # type: ignore[union-attr]
    assert len(filled) == round(0.25 * (len(filled) + len(empty)))
    assert "2.5/10 s  1,500 msgs  1,500 msg/s  p50 2.00 ms  0 errors" in line
    assert len(line) < 100
    narrow = progress_line(result, 12, 10, 0.0, [], width=50)
    assert len(narrow) == 49
    assert narrow.startswith("[##########] 100%")
