"""Helpers of the reconnection tests: a killable server process, and the retries' records.

A wsend echo server in a process of its own, for tests that kill it and start it again.

Run as a script: ``python -P tests/reconnecting.py PORT [--sync]`` listens on 127.0.0.1:PORT
(0 picks a free port), prints ``listening PORT`` once it accepts connections, then echoes
every message until killed. ``--sync`` serves with ``wsend.sync`` instead of asyncio.

:class:`ServerProcess` drives it from a test: :meth:`~ServerProcess.start` (again on the same
port after :meth:`~ServerProcess.kill`, which sends SIGKILL: no closing handshake, no FIN
sent by the application, just the kernel's reset of the dead process's sockets).
"""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
from pathlib import Path

import wsend

SCRIPT = Path(__file__)

# Fast and exact: no jitter, so the recorded delays are the schedule itself.
FAST = wsend.Backoff(initial_delay=0.02, factor=2.0, max_delay=0.16, jitter=0.0)


class Recorder(logging.Handler):
    """Keeps the records of a logger as they are emitted."""

    def __init__(self) -> None:
        super().__init__(logging.INFO)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


def delays(records: list[logging.LogRecord], kind: str = "failed") -> list[float]:
    """The delays of the retries logged: after failed attempts, or after connections that
    ``"ended"``."""
    return [
        r.delay  # type: ignore[attr-defined]
        for r in records
        if hasattr(r, "delay") and kind in r.getMessage()
    ]


class ServerProcess:
    """A killable echo server process on a fixed port."""

    def __init__(self, *, sync: bool = False) -> None:
        self.sync = sync
        self.port = 0
        self.proc: subprocess.Popen[bytes] | None = None
        self.starts = 0

    def start(self) -> int:
        """Start the server (on the port it had before, if any); return the port."""
        # -P: tests/ must not be on sys.path (tests/asyncio would shadow asyncio).
        args = [sys.executable, "-P", str(SCRIPT), str(self.port)] + (
            ["--sync"] if self.sync else []
        )
        proc = subprocess.Popen(args, stdout=subprocess.PIPE)
        assert proc.stdout is not None
        line = proc.stdout.readline()
        assert line.startswith(b"listening "), line
        self.port = int(line.split()[1])
        self.proc = proc
        self.starts += 1
        return self.port

    def kill(self) -> None:
        """SIGKILL: the process dies at once, without closing anything itself."""
        proc = self.proc
        if proc is not None and proc.poll() is None:
            os.kill(proc.pid, signal.SIGKILL)
            proc.wait(10)
        if proc is not None and proc.stdout is not None:
            proc.stdout.close()
        self.proc = None

    @property
    def uri(self) -> str:
        return f"ws://127.0.0.1:{self.port}/"


def _serve_asyncio(port: int) -> None:
    import asyncio

    async def echo(ws: wsend.ServerConnection) -> None:
        async for message in ws:
            await ws.send(message)

    async def main() -> None:
        async with wsend.serve(echo, "127.0.0.1", port) as server:
            print(f"listening {server.port}", flush=True)
            await asyncio.Future()

    asyncio.run(main())


def _serve_sync(port: int) -> None:
    def echo(ws: wsend.sync.ServerConnection) -> None:
        for message in ws:
            ws.send(message)

    with wsend.sync.serve(echo, "127.0.0.1", port) as server:
        print(f"listening {server.port}", flush=True)
        server.serve_forever()


if __name__ == "__main__":
    port = int(sys.argv[1])
    if "--sync" in sys.argv[2:]:
        _serve_sync(port)
    else:
        _serve_asyncio(port)
