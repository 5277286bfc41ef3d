"""Test peers of the Yjs endpoint: real Node clients (yjs + y-websocket from npm) and servers.

:class:`NodePeer` runs ``tests/interop/node/yjs_peer.mjs`` (unmodified ``yjs`` and
``y-websocket``, with Node's ``ws`` as WebSocket) and talks to it line by line.
:func:`start_server` runs ``wsend serve`` in-process (:class:`~wsend.cli.serve.HubServer`).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import shutil
import subprocess
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest

from wsend.cli.serve import HubServer, ServeSettings

NODE_DIR = Path(__file__).resolve().parents[2] / "interop" / "node"
PEER = NODE_DIR / "yjs_peer.mjs"


def node_path() -> str:
    """``node``, with yjs and y-websocket installed (npm ci); skip (fail under CI) without."""
    node = shutil.which("node")
    npm = shutil.which("npm")
    if node is None or npm is None:
        message = "node and npm are needed for the Yjs client tests"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    if not (NODE_DIR / "node_modules" / "y-websocket" / "package.json").is_file():
        done = subprocess.run(
            [npm, "ci", "--no-audit", "--no-fund"],
            cwd=NODE_DIR,
            capture_output=True,
            text=True,
            timeout=300,
            check=False,
        )
        if done.returncode != 0:
            pytest.fail(f"npm ci failed in {NODE_DIR}:\n{done.stdout}\n{done.stderr}")
    return node


class NodePeer:
    """One Node Yjs client in a subprocess (see ``yjs_peer.mjs`` for its commands)."""

    def __init__(self, process: asyncio.subprocess.Process) -> None:
        self.process = process
        self.events: list[dict[str, Any]] = []
        self._answers: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        self._changed = asyncio.Event()
        self._reader = asyncio.get_running_loop().create_task(self._read())

    @classmethod
    async def start(cls, url: str, room: str, params: dict[str, str] | None = None) -> NodePeer:
        args = [node_path(), str(PEER), url, room]
        if params:
            args.append(json.dumps(params))
        process = await asyncio.create_subprocess_exec(
            *args, stdin=subprocess.PIPE, stdout=subprocess.PIPE, cwd=NODE_DIR
        )
        return cls(process)

    async def _read(self) -> None:
        assert self.process.stdout is not None
        async for line in self.process.stdout:
            value = json.loads(line)
            if "event" in value:
                self.events.append(value)
                self._changed.set()
            else:
                await self._answers.put(value)

    async def call(self, cmd: str, timeout: float = 30.0, **args: Any) -> dict[str, Any]:
        """Send a command; return its answer."""
        assert self.process.stdin is not None
        self.process.stdin.write((json.dumps({"cmd": cmd, **args}) + "\n").encode())
        await self.process.stdin.drain()
        return await asyncio.wait_for(self._answers.get(), timeout)

    async def text(self) -> str:
        return str((await self.call("text"))["text"])

    async def wait_event(self, kind: str, timeout: float = 10.0, count: int = 1) -> dict[str, Any]:
        """Wait until ``count`` events of ``kind`` were printed; return the last."""
        async with asyncio.timeout(timeout):
            while True:
                found = [e for e in self.events if e["event"] == kind]
                if len(found) >= count:
                    return found[-1]
                self._changed.clear()
                await self._changed.wait()

    async def synced(self, timeout: float = 10.0) -> None:
        await self.wait_event("synced", timeout)

    async def close(self) -> None:
        if self.process.returncode is None:
            with contextlib.suppress(TimeoutError, BrokenPipeError, ConnectionResetError):
                await self.call("quit", timeout=5)
            try:
                await asyncio.wait_for(self.process.wait(), 5)
            except TimeoutError:
                self.process.kill()
                await self.process.wait()
        self._reader.cancel()


async def start_server(data_dir: Path | None = None, **settings: Any) -> HubServer:
    """``wsend serve`` on a free port, without demo apps, keeping documents in ``data_dir``
    (SQLite) or in memory."""
    if data_dir is not None:
        settings.setdefault("data_dir", str(data_dir))
    else:
        settings.setdefault("yjs_store", "memory")
    settings.setdefault("port", 0)
    settings.setdefault("apps", ())
    server = HubServer(ServeSettings(**settings))
    await server.start()
    return server


def yjs_url(server: HubServer) -> str:
    return f"ws://127.0.0.1:{server.port}/yjs"


async def eventually(check: Callable[[], Awaitable[bool]], timeout: float = 10.0) -> None:
    """Wait until ``await check()`` is true (fails with TimeoutError after ``timeout``)."""
    async with asyncio.timeout(timeout):
        while True:
            if await check():
                return
            await asyncio.sleep(0.05)


async def until(condition: Callable[[], bool], timeout: float = 10.0) -> None:
    """Wait until ``condition()`` holds (fails with TimeoutError after ``timeout``)."""
    async with asyncio.timeout(timeout):
        while True:
            if condition():
                return
            await asyncio.sleep(0.01)


async def converged(
    peers: list[NodePeer], expected: str | None = None, timeout: float = 20.0
) -> str:
    """Wait until every peer has the same text (``expected`` if given); return it."""
    async with asyncio.timeout(timeout):
        while True:
            texts = [await peer.text() for peer in peers]
            if len(set(texts)) == 1 and (expected is None or texts[0] == expected):
                return texts[0]
            await asyncio.sleep(0.05)
