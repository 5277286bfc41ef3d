"""Interoperability of the threading client and server (``wsend.sync``) with websockets,
aiohttp and Node's ``ws``, over real sockets, with and without permessage-deflate.

The peers are those of ``test_interop.py``; they run on the test's event loop while the
threading side runs in a worker thread (``asyncio.to_thread``).
"""

from __future__ import annotations

import asyncio
import dataclasses
import threading
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest

import wsend

from .test_interop import (
    CLOSE_CODE,
    CLOSE_COMMAND,
    CLOSE_REASON,
    MAX_SIZE,
    MESSAGES,
    ORDERED,
    PeerRun,
    PeerServer,
    close_of,
    eventually,
    expected_extensions,
)

pytestmark = pytest.mark.timeout(60)


# --- the threading client against their servers -----------------------------------------------


async def test_sync_client_echo(peer_server: PeerServer, compression: str | None) -> None:
    def client() -> wsend.ConnectionClosed:
        with wsend.sync.connect(
            peer_server.url, compression=compression, max_message_size=MAX_SIZE
        ) as ws:
            assert ws.extensions == expected_extensions(compression)
            for message in MESSAGES:
                ws.send(message)
                echo = ws.recv(timeout=10)
                assert type(echo) is type(message)
                assert echo == message
            for message in ORDERED:
                ws.send(message)
            assert [ws.recv(timeout=10) for _ in ORDERED] == ORDERED
            # Streamed from a generator: one fragmented message.
            ws.send(chunk for chunk in ("frag", "ment", "ed"))
            assert ws.recv(timeout=10) == "fragmented"
            assert ws.ping(timeout=5) > 0
            ws.close()
            with pytest.raises(wsend.ConnectionClosedOK) as caught:
                ws.recv()
        return caught.value

    closed = await asyncio.to_thread(client)
    assert close_of(closed) == (1000, "")
    assert peer_server.opens == [expected_extensions(compression)]
    await eventually(lambda: peer_server.closes)
    assert peer_server.closes[0][0] == 1000


async def test_sync_client_server_closes(peer_server: PeerServer, compression: str | None) -> None:
    def client() -> wsend.ConnectionClosed:
        with wsend.sync.connect(peer_server.close_url, compression=compression) as ws:
            ws.send("last one")
            assert ws.recv(timeout=10) == "last one"
            with pytest.raises(wsend.ConnectionClosedError) as caught:
                ws.recv(timeout=10)
            assert ws.wait_closed(10)
        return caught.value

    closed = await asyncio.to_thread(client)
    assert close_of(closed) == (CLOSE_CODE, CLOSE_REASON)
    await eventually(lambda: peer_server.closes)
    assert peer_server.closes[0][0] == CLOSE_CODE


async def test_sync_client_threads_sending_at_once(peer_server: PeerServer) -> None:
    """Four threads share one connection to each peer: every message comes back whole."""

    def client() -> list[str]:
        with wsend.sync.connect(peer_server.url) as ws:

            def send_all(sender: int) -> None:
                for seq in range(50):
                    ws.send(f"{sender}:{seq}:" + "x" * (seq * 300))

            threads = [threading.Thread(target=send_all, args=(s,)) for s in range(4)]
            for thread in threads:
                thread.start()
            received = [ws.recv(timeout=10) for _ in range(200)]
            for thread in threads:
                thread.join()
        return received  # type: ignore[return-value]

    received = await asyncio.to_thread(client)
    for sender in range(4):
        mine = [m for m in received if m.startswith(f"{sender}:")]
        assert mine == [f"{sender}:{seq}:" + "x" * (seq * 300) for seq in range(50)]


# --- their clients against the threading server -----------------------------------------------


@dataclasses.dataclass
class OurSyncServer:
    url: str
    opens: list[list[str]] = dataclasses.field(default_factory=list)
    closed: list[wsend.ConnectionClosed] = dataclasses.field(default_factory=list)


@pytest.fixture
async def our_sync_server(compression: str | None) -> AsyncIterator[OurSyncServer]:
    """wsend.sync's server: echoes every message; closes with CLOSE_CODE on CLOSE_COMMAND."""

    def handler(ws: wsend.sync.ServerConnection) -> None:
        ours.opens.append(list(ws.extensions))
        try:
            while True:
                message = ws.recv()
                if message == CLOSE_COMMAND:
                    ws.close(CLOSE_CODE, CLOSE_REASON)
                else:
                    ws.send(message)
        except wsend.ConnectionClosed as exc:
            ours.closed.append(exc)

    server = wsend.sync.serve(
        handler, "127.0.0.1", 0, compression=compression, max_message_size=MAX_SIZE
    )
    thread = threading.Thread(target=server.serve_forever)
    thread.start()
    ours = OurSyncServer(f"ws://127.0.0.1:{server.port}/")
    try:
        yield ours
    finally:
        await asyncio.to_thread(server.shutdown, timeout=5)
        thread.join(5)


async def test_sync_server_echo(
    our_sync_server: OurSyncServer, peer_client: Callable[..., Any], compression: str | None
) -> None:
    run: PeerRun = await peer_client(our_sync_server.url, compression, MESSAGES, False)
    assert run.extensions == expected_extensions(compression)
    assert [type(message) for message in run.received] == [
        type(message) for message in [*MESSAGES, *ORDERED]
    ]
    assert run.received == [*MESSAGES, *ORDERED]
    assert run.close[0] == 1000
    assert our_sync_server.opens == [expected_extensions(compression)]
    await eventually(lambda: our_sync_server.closed)
    assert isinstance(our_sync_server.closed[0], wsend.ConnectionClosedOK)
    assert close_of(our_sync_server.closed[0]) == (1000, "")


async def test_sync_server_closes(
    our_sync_server: OurSyncServer, peer_client: Callable[..., Any], compression: str | None
) -> None:
    run: PeerRun = await peer_client(our_sync_server.url, compression, ["before closing"], True)
    assert run.received == ["before closing", *ORDERED]
    assert run.close[0] == CLOSE_CODE
    assert run.close[1] in (CLOSE_REASON, None)  # aiohttp's client does not keep the reason
    await eventually(lambda: our_sync_server.closed)
    closed = our_sync_server.closed[0]
    assert closed.sent is not None
    assert (closed.sent.code, closed.sent.reason) == (CLOSE_CODE, CLOSE_REASON)
    assert closed.rcvd is not None
    assert closed.rcvd.code in (CLOSE_CODE, 1000)


async def test_websockets_sync_client_against_the_sync_server(
    our_sync_server: OurSyncServer,
) -> None:
    """websockets' own threading client, for good measure."""
    from websockets.sync.client import connect as websockets_sync_connect

    def client() -> list[str | bytes]:
        with websockets_sync_connect(our_sync_server.url, max_size=MAX_SIZE) as ws:
            out = []
            for message in MESSAGES:
                ws.send(message)
                out.append(ws.recv(timeout=10))
        return out

    assert await asyncio.to_thread(client) == MESSAGES
