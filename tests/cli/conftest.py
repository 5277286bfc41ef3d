"""Fixtures for the ``wsend`` command tests: run the real command in a subprocess, and start
echo servers on loopback (``wsend echo`` itself and one built on ``websockets``)."""

from __future__ import annotations

import asyncio
import os
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

# Generous: these bound a hung command, they don't measure anything.
COMMAND_TIMEOUT = 30.0
START_TIMEOUT = 15.0

WSEND = [sys.executable, "-m", "wsend.cli"]
ENV = {**os.environ, "NO_COLOR": "1", "PYTHONUNBUFFERED": "1", "XDG_STATE_HOME": "/nonexistent"}


@dataclass
class Result:
    """What a finished command printed and its exit code."""

    code: int
    out: str
    err: str


def run_wsend(*args: str, input: bytes | None = None) -> Result:
    """Run ``wsend ARGS`` to completion (stdin empty unless ``input``)."""
    done = subprocess.run(
        [*WSEND, *args],
        input=input if input is not None else b"",
        capture_output=True,
        timeout=COMMAND_TIMEOUT,
        env=ENV,
        check=False,
    )
    return Result(done.returncode, done.stdout.decode(), done.stderr.decode())


async def arun_wsend(*args: str, input: bytes | None = None) -> Result:
    """:func:`run_wsend` without blocking the event loop (for servers running in the test)."""
    proc = await asyncio.create_subprocess_exec(
        *WSEND,
        *args,
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env=ENV,
    )
    async with asyncio.timeout(COMMAND_TIMEOUT):
        out, err = await proc.communicate(input if input is not None else b"")
    assert proc.returncode is not None
    return Result(proc.returncode, out.decode(), err.decode())


@dataclass
class Background:
    """A long-running process; a thread collects its stderr lines (so its pipe never fills)."""

    proc: subprocess.Popen[bytes]
    lines: list[str] = field(default_factory=list)
    url: str = ""

    def __post_init__(self) -> None:
        threading.Thread(target=self._collect, daemon=True).start()

    def _collect(self) -> None:
        assert self.proc.stderr is not None
        for raw in self.proc.stderr:
            self.lines.append(raw.decode().rstrip("\n"))

    def wait_for(self, pattern: str, timeout: float = START_TIMEOUT) -> re.Match[str]:
        """Wait until a stderr line matches ``pattern``; return the match."""
        deadline = time.monotonic() + timeout
        while True:
            exited = self.proc.poll() is not None
            if exited:
                time.sleep(0.1)  # let the collector read the last lines
            for line in list(self.lines):
                match = re.search(pattern, line)
                if match:
                    return match
            if exited or time.monotonic() > deadline:
                raise AssertionError(f"no line matching {pattern!r} in {self.lines}")
            time.sleep(0.02)

    def stop(self, sig: int = signal.SIGTERM) -> int:
        """Send ``sig`` and return the exit code."""
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
        return self.proc.wait(timeout=COMMAND_TIMEOUT)


def start_background(argv: list[str], ready: str) -> Background:
    """Start ``argv`` and wait for a stderr line matching ``ready`` (with a ``url`` group)."""
    proc = subprocess.Popen(
        argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=ENV
    )
    bg = Background(proc)
    try:
        bg.url = bg.wait_for(ready).group("url")
    except BaseException:
        proc.kill()
        proc.wait()
        raise
    return bg


def start_echo(*args: str) -> Background:
    """Start ``wsend echo --port 0 ARGS``; wait for its start line."""
    return start_background(
        [*WSEND, "echo", "--port", "0", *args], r"listening on (?P<url>wss?://\S+)"
    )


@pytest.fixture(scope="module")
def echo_server() -> Iterator[Background]:
    """``wsend echo`` in a subprocess on a free loopback port (``.url`` is its URL)."""
    server = start_echo()
    yield server
    assert server.stop() == 0


WEBSOCKETS_ECHO = """
import asyncio, sys
from websockets.asyncio.server import serve

async def echo(ws):
    async for message in ws:
        await ws.send(message)

async def main():
    async with serve(echo, "127.0.0.1", 0, max_size=2**24) as server:
        port = server.sockets[0].getsockname()[1]
        print(f"ready ws://127.0.0.1:{port}/", file=sys.stderr, flush=True)
        await asyncio.Future()

asyncio.run(main())
"""


@pytest.fixture(scope="module")
def websockets_server() -> Iterator[Background]:
    """An echo server built on the ``websockets`` library, in a subprocess."""
    server = start_background([sys.executable, "-c", WEBSOCKETS_ECHO], r"ready (?P<url>\S+)")
    yield server
    server.stop(signal.SIGKILL)


NODE_ECHO = Path(__file__).resolve().parents[1] / "interop" / "node" / "echo_server.js"


@pytest.fixture(scope="module")
def node_server() -> Iterator[str]:
    """An echo server on Node's ``ws`` library (tests/interop/node); yields its URL.

    ``?close_after=N&code=C&reason=R`` in the URL makes it close after N echoes."""
    node = shutil.which("node")
    if node is None or not (NODE_ECHO.parent / "node_modules" / "ws").is_dir():
        if os.environ.get("CI"):
            pytest.fail("node and tests/interop/node/node_modules are needed in CI")
        pytest.skip("node or its ws module is missing (npm ci in tests/interop/node)")
    proc = subprocess.Popen(
        [node, str(NODE_ECHO), "0"], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL
    )
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline().decode()
        match = re.fullmatch(r"listening (\d+)\n", line)
        assert match, f"unexpected first line from the node server: {line!r}"
        # Keep reading its event lines, so that its pipe never fills up.
        threading.Thread(target=proc.stdout.read, daemon=True).start()
        yield f"ws://127.0.0.1:{match.group(1)}/"
    finally:
        proc.terminate()
        proc.wait(COMMAND_TIMEOUT)
