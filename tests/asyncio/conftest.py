"""Fixtures of the asyncio tests: connected pairs, tested once from each side."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import pytest

import wsend

from .helpers import RawPeer, raw_client, raw_server, ws_uri

Pair = tuple[wsend.Connection, wsend.Connection]


@pytest.fixture(params=["client", "server"])
def side(request: pytest.FixtureRequest) -> str:
    """Which end of the connection a symmetric test exercises."""
    return str(request.param)


@pytest.fixture
async def open_pair(side: str, start_server: Any) -> AsyncIterator[Callable[..., Awaitable[Pair]]]:
    """Open a wsend client and server connected to each other; return ``(local, remote)``.

    ``local`` is the connection on ``side``; ``remote`` the other one. Keyword arguments are
    connection options given to both sides; ``server`` and ``client`` hold side-specific ones.
    """
    stack = contextlib.AsyncExitStack()

    async def open_(
        *, server: dict[str, Any] | None = None, client: dict[str, Any] | None = None, **opts: Any
    ) -> Pair:
        accepted: asyncio.Future[wsend.ServerConnection] = (
            asyncio.get_running_loop().create_future()
        )

        async def handler(ws: wsend.ServerConnection) -> None:
            accepted.set_result(ws)
            await ws.wait_closed()

        srv = await start_server(handler, **opts, **(server or {}))
        conn = await wsend.connect(ws_uri(srv, "/path?x=1"), **opts, **(client or {}))
        stack.push_async_callback(conn.close)
        server_conn = await accepted
        return (conn, server_conn) if side == "client" else (server_conn, conn)

    async with stack:
        yield open_


@pytest.fixture
async def open_raw(
    side: str, start_server: Any
) -> AsyncIterator[Callable[..., Awaitable[tuple[wsend.Connection, RawPeer]]]]:
    """Open a wsend connection on ``side`` whose peer is a :class:`RawPeer`.

    Keyword arguments are options of the wsend connection; ``deflate=True`` negotiates
    permessage-deflate with the raw peer.
    """
    stack = contextlib.AsyncExitStack()

    async def open_(*, deflate: bool = False, **opts: Any) -> tuple[wsend.Connection, RawPeer]:
        if side == "server":
            accepted: asyncio.Future[wsend.ServerConnection] = (
                asyncio.get_running_loop().create_future()
            )

            async def handler(ws: wsend.ServerConnection) -> None:
                accepted.set_result(ws)
                await ws.wait_closed()

            srv = await start_server(handler, **opts)
            peer = await raw_client(srv.port, deflate=deflate)
            stack.callback(peer.abort)
            return await accepted, peer
        port, peers = await stack.enter_async_context(raw_server(deflate=deflate))
        conn = await wsend.connect(f"ws://127.0.0.1:{port}/", **opts)
        stack.callback(conn.abort)
        return conn, await peers.get()

    async with stack:
        yield open_
