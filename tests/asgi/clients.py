"""Two real clients behind one small interface, so that each scenario runs with both.

:func:`connect` opens a connection with wsend's client or websockets' client and wraps it in a
:class:`Client`; :func:`refused` opens one that the server must refuse and returns the HTTP
response (status, headers, body) as the client saw it.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from typing import Any

import websockets
from websockets.asyncio.client import connect as websockets_connect

import wsend

CLIENTS = ["wsend", "websockets"]

Data = str | bytes


class Client:
    """What a scenario needs of a client connection."""

    def __init__(self, lib: str, ws: Any) -> None:
        self.lib = lib
        self.ws = ws

    async def send(self, message: Data) -> None:
        await self.ws.send(message)

    async def recv(self) -> Data:
        """The next message; raises :class:`Closed` when the connection closes instead."""
        try:
            message: Data = await self.ws.recv()
        except (wsend.ConnectionClosed, websockets.ConnectionClosed) as exc:
            raise Closed(*self.closed_with) from exc
        return message

    async def close(self, code: int = 1000, reason: str = "") -> None:
        await self.ws.close(code, reason)

    @property
    def closed_with(self) -> tuple[int | None, str | None]:
        """The close code and reason received, once closed."""
        return self.ws.close_code, self.ws.close_reason

    @property
    def subprotocol(self) -> str | None:
        if self.lib == "wsend":
            return self.ws.protocol  # type: ignore[no-any-return]
        return self.ws.subprotocol  # type: ignore[no-any-return]

    @property
    def headers(self) -> Any:
        """The 101 response's headers (case-insensitive lookups)."""
        return self.ws.response.headers


class Closed(Exception):
    """The connection closed while a message was expected."""

    def __init__(self, code: int | None, reason: str | None) -> None:
        super().__init__(code, reason)
        self.code = code
        self.reason = reason


@contextlib.asynccontextmanager
async def connect(
    lib: str,
    url: str,
    *,
    subprotocols: Sequence[str] = (),
    headers: dict[str, str] | None = None,
) -> AsyncIterator[Client]:
    """Open a connection to ``url`` with the client of ``lib`` (``wsend`` or ``websockets``)."""
    if lib == "wsend":
        async with wsend.connect(url, subprotocols=subprotocols, headers=headers) as ws:
            yield Client(lib, ws)
    else:
        async with websockets_connect(
            url,
            subprotocols=list(subprotocols) or None,  # type: ignore[arg-type]
            additional_headers=headers,
        ) as ws:
            yield Client(lib, ws)


@dataclass
class Refusal:
    """The HTTP response that answered an upgrade instead of a 101."""

    status: int
    headers: Any
    body: bytes


async def refused(lib: str, url: str) -> Refusal:
    """Open a connection that the server refuses; return its response.

    Raises:
        AssertionError: the server accepted the connection.
    """
    try:
        if lib == "wsend":
            await wsend.connect(url)
        else:
            await websockets_connect(url)
    except wsend.InvalidStatus as exc:
        return Refusal(exc.status_code, exc.headers, exc.body)
    except websockets.InvalidStatus as exc:
        return Refusal(exc.response.status_code, exc.response.headers, exc.response.body)
    raise AssertionError("the server accepted the connection")
