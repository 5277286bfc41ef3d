"""Fixtures of the threading tests: wsend.sync servers on loopback, shut down after each test."""

from __future__ import annotations

import contextlib
import queue
from collections.abc import Callable, Iterator
from typing import Any

import pytest

import wsend

from .helpers import RawPeer, RawServer, echo, in_thread, raw_client, running, uri

StartServer = Callable[..., wsend.sync.Server]


@pytest.fixture
def start_sync_server() -> Iterator[StartServer]:
    """Start ``wsend.sync.serve(handler, "127.0.0.1", 0, **kwargs)`` serving in a thread."""
    with contextlib.ExitStack() as stack:

        def start(handler: Any = echo, **kwargs: Any) -> wsend.sync.Server:
            if "path" in kwargs or "sock" in kwargs:
                server = wsend.sync.serve(handler, **kwargs)
            else:
                server = wsend.sync.serve(handler, "127.0.0.1", 0, **kwargs)
            return stack.enter_context(running(server))

        yield start


Pair = tuple[wsend.sync.Connection, wsend.sync.Connection]


@pytest.fixture(params=["client", "server"])
def side(request: pytest.FixtureRequest) -> str:
    """Which end of the connection a symmetric test exercises."""
    return str(request.param)


@pytest.fixture
def open_pair(side: str, start_sync_server: StartServer) -> Iterator[Callable[..., Pair]]:
    """Open a wsend.sync client and server connected to each other; return ``(local, remote)``.

    ``local`` is the connection on ``side``; ``remote`` the other one. Keyword arguments are
    connection options given to both sides; ``server`` and ``client`` hold side-specific ones.
    """
    with contextlib.ExitStack() as stack:

        def open_(
            *,
            server: dict[str, Any] | None = None,
            client: dict[str, Any] | None = None,
            **opts: Any,
        ) -> Pair:
            accepted: queue.Queue[wsend.sync.ServerConnection] = queue.Queue()

            def handler(ws: wsend.sync.ServerConnection) -> None:
                accepted.put(ws)
                ws.wait_closed()

            srv = start_sync_server(handler, **opts, **(server or {}))
            conn = wsend.sync.connect(uri(srv, "/path?x=1"), **opts, **(client or {})).open()
            stack.callback(conn.abort)
            server_conn = accepted.get(timeout=5)
            return (conn, server_conn) if side == "client" else (server_conn, conn)

        yield open_


OpenRaw = Callable[..., tuple[wsend.sync.Connection, RawPeer]]


@pytest.fixture
def open_raw(side: str, start_sync_server: StartServer) -> Iterator[OpenRaw]:
    """Open a wsend.sync connection on the side under test whose peer is a :class:`RawPeer`."""
    with contextlib.ExitStack() as stack:

        def open_(*, deflate: bool = False, **opts: Any) -> tuple[wsend.sync.Connection, RawPeer]:
            if side == "server":
                accepted: queue.Queue[wsend.sync.ServerConnection] = queue.Queue()

                def handler(ws: wsend.sync.ServerConnection) -> None:
                    accepted.put(ws)
                    ws.wait_closed()

                server = start_sync_server(handler, **opts)
                extra = {"Sec-WebSocket-Extensions": "permessage-deflate"} if deflate else {}
                peer = raw_client(server.port, headers=extra, deflate=deflate)
                stack.callback(peer.close)
                return accepted.get(timeout=5), peer
            raw = RawServer(deflate=deflate)
            stack.callback(raw.close)
            peers: queue.Queue[RawPeer] = queue.Queue()
            in_thread(lambda: peers.put(raw.accept()))
            conn = wsend.sync.connect(f"ws://127.0.0.1:{raw.port}/", **opts).open()
            stack.callback(conn.abort)
            peer = peers.get(timeout=5)
            stack.callback(peer.close)
            return conn, peer

        yield open_
