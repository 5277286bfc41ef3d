"""The command line: ``python -m wsend.asgi APP [uvicorn options]`` and uvicorn's own ``--ws``
with wsend's import path, run as real processes serving ``tests.asgi.apps:app``."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

import wsend

ROOT = Path(__file__).resolve().parents[2]
APP = "tests.asgi.apps:app"

pytestmark = pytest.mark.timeout(90)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@contextlib.asynccontextmanager
async def running(*argv: str, ready: str) -> AsyncIterator[asyncio.subprocess.Process]:
    """Run ``argv`` from the repository's root until it logs ``ready``; then SIGINT it."""
    proc = await asyncio.create_subprocess_exec(
        *argv,
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    assert proc.stdout is not None
    output: list[str] = []
    try:
        async with asyncio.timeout(60):
            while ready not in "".join(output):
                line = await proc.stdout.readline()
                if not line:
                    raise AssertionError("the server exited:\n" + "".join(output))
                output.append(line.decode())
        yield proc
    finally:
        if proc.returncode is None:
            proc.send_signal(signal.SIGINT)
        async with asyncio.timeout(30):
            rest, _ = await proc.communicate()
        output.append(rest.decode())
        proc.output = "".join(output)  # type: ignore[attr-defined]


async def check_echo(url: str, **kwargs: object) -> None:
    async with wsend.connect(url, **kwargs) as ws:  # type: ignore[arg-type]
        await ws.send("over the launcher ✓")
        assert await ws.recv() == "over the launcher ✓"
        await ws.send(b"\x00\x01")
        assert await ws.recv() == b"\x00\x01"


async def test_launcher_on_tcp() -> None:
    port = free_port()
    argv = [sys.executable, "-m", "wsend.asgi", APP, "--host", "127.0.0.1", "--port", str(port)]
    async with running(*argv, "--log-level", "info", ready="Uvicorn running") as proc:
        await check_echo(f"ws://127.0.0.1:{port}/echo")
        async with wsend.connect(f"ws://127.0.0.1:{port}/items/5?token=secret") as ws:
            assert json.loads(await ws.recv()) == {"item_id": 5, "q": None, "user": "ann"}
    assert proc.returncode == 0
    assert '"WebSocket /echo" [accepted]' in proc.output  # type: ignore[attr-defined]


async def test_launcher_with_workers_on_a_unix_socket() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "ws.sock")
        argv = [sys.executable, "-m", "wsend.asgi", APP, "--uds", path, "--workers", "2"]
        async with running(*argv, "--ws-max-size", "1000", ready="Application startup complete"):
            # A worker listens once its startup is complete: wait until one does.
            async with asyncio.timeout(30):
                while True:
                    with contextlib.suppress(ConnectionRefusedError):
                        await check_echo("ws://localhost/echo", path=path)
                        break
                    await asyncio.sleep(0.05)
            for _ in range(2):
                await check_echo("ws://localhost/echo", path=path)
            async with wsend.connect("ws://localhost/echo", path=path) as ws:
                await ws.send(b"x" * 1001)  # over --ws-max-size
                with pytest.raises(wsend.ConnectionClosedError):
                    await ws.recv()
                assert ws.close_code == 1009


async def test_uvicorns_own_ws_option_takes_the_import_path() -> None:
    port = free_port()
    argv = [
        sys.executable,
        "-m",
        "uvicorn",
        APP,
        "--ws",
        "wsend.asgi:WSendProtocol",
        "--port",
        str(port),
        "--ws-ping-interval",
        "0.05",
    ]
    async with running(*argv, ready="Uvicorn running"):
        async with wsend.connect(f"ws://127.0.0.1:{port}/echo") as ws:
            assert ws.response is not None
            assert ws.response.headers["Server"] == "uvicorn"
            await ws.send("pinged")
            assert await ws.recv() == "pinged"
            await asyncio.sleep(0.2)  # keepalive pings from wsend's layer, answered meanwhile
            assert ws.latency == 0  # the client sent none: only the server measures
        await check_echo(f"ws://127.0.0.1:{port}/echo")


@pytest.mark.parametrize(
    ("argv", "status", "message"),
    [
        (["--ws", "wsproto", APP], 2, "--ws is set by this launcher"),
        (["--ws=auto", APP], 2, "--ws is set by this launcher"),
        (["--no-such-option", APP], 2, "No such option"),
        (["tests.asgi.apps:missing", "--port", "0"], 3, "Error loading ASGI app"),
        (["--help"], 0, "Usage: python -m wsend.asgi [OPTIONS] APP"),
    ],
)
def test_launcher_arguments(argv: list[str], status: int, message: str) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "wsend.asgi", *argv],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == status
    assert message in done.stdout + done.stderr


def test_launcher_main_restores_uvicorns_run() -> None:
    import importlib

    from wsend.asgi.__main__ import main

    cli = importlib.import_module("uvicorn.main")
    run = cli.run
    with pytest.raises(SystemExit) as exited:
        main(["--version"])
    assert exited.value.code == 0
    assert cli.run is run
