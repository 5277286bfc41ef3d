"""Helpers of the ASGI layer tests: real uvicorn servers with wsend's layer, and raw peers.

:func:`serve` runs uvicorn with ``ws=WSendProtocol`` in the test's event loop on a free
loopback port; :class:`Served` gives its URLs and its live connections. :func:`raw_upgrade`
opens a TCP connection and sends an upgrade request by hand, for the tests that need exact
bytes (a peer that never answers pings, hand-built frames, a client leaving mid-handshake).
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import os
import socket
from collections.abc import AsyncIterator, Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

import uvicorn

from wsend.asgi import WSendProtocol

Scope = dict[str, Any]
Message = dict[str, Any]
Receive = Callable[[], Any]
Send = Callable[[Message], Any]


@dataclass
class Served:
    """A uvicorn server being served: its port, the server, and what the tests recorded."""

    port: int
    server: uvicorn.Server
    events: list[Any] = field(default_factory=list)

    def url(self, path: str = "/", scheme: str = "ws") -> str:
        return f"{scheme}://127.0.0.1:{self.port}{path}"

    @property
    def connections(self) -> list[WSendProtocol]:
        """The open WebSocket connections (uvicorn's HTTP connections excluded)."""
        return [c for c in self.server.server_state.connections if isinstance(c, WSendProtocol)]


@contextlib.asynccontextmanager
async def serve(app: Any, **config: Any) -> AsyncIterator[Served]:
    """Serve ``app`` with uvicorn and wsend's layer on loopback (``config``: uvicorn's options).

    Lifespan is off and logs are at warning level unless ``config`` says otherwise; the
    server is shut down (``should_exit``) on leaving, waiting for it at most 20 s.
    """
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    # log_config=None: uvicorn leaves logging alone, so its records reach pytest's caplog.
    settings = {"ws": WSendProtocol, "lifespan": "off", "log_level": "warning", "log_config": None}
    settings.update(config)
    server = uvicorn.Server(uvicorn.Config(app, **settings))
    task = asyncio.create_task(server.serve(sockets=[sock]))
    try:
        async with asyncio.timeout(10):
            while not server.started:
                if task.done():
                    task.result()
                await asyncio.sleep(0.01)
        yield Served(sock.getsockname()[1], server)
    finally:
        server.should_exit = True
        try:
            await asyncio.wait_for(asyncio.shield(task), 15)
        except TimeoutError:
            server.force_exit = True  # an application that never returns (a failed test)
            await asyncio.wait_for(task, 5)
        finally:
            sock.close()


async def until(predicate: Callable[[], object], timeout: float = 10.0) -> None:
    """Wait until ``predicate()`` is true (a safety timeout, not a timing assertion)."""
    async with asyncio.timeout(timeout):
        while not predicate():  # noqa: ASYNC110 - polls state that has no event to wait on
            await asyncio.sleep(0.005)


def upgrade_request(path: str = "/", headers: Iterable[tuple[str, str]] = ()) -> bytes:
    """A WebSocket upgrade request, built by hand."""
    key = base64.b64encode(os.urandom(16)).decode()
    lines = [
        f"GET {path} HTTP/1.1",
        "Host: 127.0.0.1",
        "Upgrade: websocket",
        "Connection: Upgrade",
        f"Sec-WebSocket-Key: {key}",
        "Sec-WebSocket-Version: 13",
        *(f"{name}: {value}" for name, value in headers),
    ]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")


@contextlib.asynccontextmanager
async def raw_upgrade(
    served: Served, path: str = "/", headers: Iterable[tuple[str, str]] = (), request: bytes = b""
) -> AsyncIterator[tuple[asyncio.StreamReader, asyncio.StreamWriter]]:
    """Open a TCP connection to ``served`` and send an upgrade request (or ``request``)."""
    reader, writer = await asyncio.open_connection("127.0.0.1", served.port)
    writer.write(request or upgrade_request(path, headers))
    try:
        yield reader, writer
    finally:
        writer.close()
        with contextlib.suppress(OSError):
            await writer.wait_closed()


async def read_head(reader: asyncio.StreamReader) -> tuple[int, dict[str, str]]:
    """Read an HTTP response head: the status and the headers (lowercased names)."""
    head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 10)
    status_line, *lines = head.decode("latin-1").split("\r\n")
    headers = {}
    for line in lines:
        if line:
            name, _, value = line.partition(":")
            headers[name.strip().lower()] = value.strip()
    return int(status_line.split()[1]), headers


async def echo(scope: Scope, receive: Receive, send: Send) -> None:
    """A plain ASGI application: accept, then send every message back until disconnect."""
    assert scope["type"] == "websocket"
    assert (await receive())["type"] == "websocket.connect"
    await send({"type": "websocket.accept"})
    while True:
        message = await receive()
        if message["type"] == "websocket.disconnect":
            return
        await send(
            {"type": "websocket.send", "bytes": message.get("bytes"), "text": message.get("text")}
        )


async def read_frame(reader: asyncio.StreamReader) -> tuple[int, bytes]:
    """Read one unmasked frame from the server: its opcode and payload."""
    b0, b1 = await asyncio.wait_for(reader.readexactly(2), 10)
    length = b1 & 0x7F
    if length == 126:
        length = int.from_bytes(await reader.readexactly(2), "big")
    elif length == 127:
        length = int.from_bytes(await reader.readexactly(8), "big")
    return b0 & 0x0F, await reader.readexactly(length)
