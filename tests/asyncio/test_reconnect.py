"""``async for ws in wsend.connect(uri)``: reconnecting to real servers that die, restart,
refuse or cut the handshake. Delays are read from the log records of each retry, never
measured."""

from __future__ import annotations

import asyncio
import logging
import socket
from collections.abc import Iterator

import pytest

import wsend
from wsend.protocol.http import Headers, Response

from ..proxy_server import MicroSocks, TinyProxy, closed_port
from ..reconnecting import FAST, ServerProcess, delays
from .helpers import accept_key, echo, parse_head, until, ws_uri


async def first(connector: wsend.connect) -> wsend.ClientConnection:
    """The first connection of a reconnecting loop."""
    async for ws in connector:
        return ws
    raise AssertionError("unreachable")  # pragma: no cover


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture
def server_process() -> Iterator[ServerProcess]:
    process = ServerProcess()
    yield process
    process.kill()


async def test_server_killed_and_restarted(
    server_process: ServerProcess, retries: list[logging.LogRecord]
) -> None:
    await asyncio.to_thread(server_process.start)
    opened = 0
    async for ws in wsend.connect(server_process.uri, backoff=FAST, open_timeout=5):
        opened += 1
        await ws.send(f"hello {opened}")
        assert await ws.recv() == f"hello {opened}"
        if opened == 2:
            break
        server_process.kill()
        with pytest.raises(wsend.ConnectionClosedError) as caught:
            await ws.recv()
        assert caught.value.code == 1006

        async def restart() -> None:
            await until(lambda: len(delays(retries)) >= 4, 0.01)
            await asyncio.to_thread(server_process.start)

        restarter = asyncio.create_task(restart())
    await restarter
    assert server_process.starts == 2
    # Refused while the server was down, each retry waiting twice as long, up to the cap.
    failed = delays(retries)
    assert len(failed) >= 4
    assert failed[:5] == [0.04, 0.08, 0.16, 0.16, 0.16][: len(failed[:5])]
    # The connection that ended first: the run began with it (it was short-lived).
    assert delays(retries, "ended")[0] == 0.02
    assert all("ConnectionRefusedError" in r.getMessage() for r in retries if "failed" in r.msg)


async def test_server_unavailable_then_recovering(
    start_server: object, retries: list[logging.LogRecord]
) -> None:
    refusals = 3

    def unavailable(ws: wsend.ServerConnection, request: object) -> Response | None:
        nonlocal refusals
        if refusals:
            refusals -= 1
            return Response.text(503, "Service Unavailable\n")
        return None

    server = await start_server(process_request=unavailable)  # type: ignore[operator]
    async for ws in wsend.connect(ws_uri(server), backoff=FAST):
        await ws.send("finally")
        assert await ws.recv() == "finally"
        break
    assert refusals == 0
    assert delays(retries) == [0.02, 0.04, 0.08]
    assert all("InvalidStatus" in r.getMessage() and "503" in r.getMessage() for r in retries)


async def test_retry_after_is_honoured(
    start_server: object, retries: list[logging.LogRecord]
) -> None:
    refusals = 1

    def busy(ws: wsend.ServerConnection, request: object) -> Response | None:
        nonlocal refusals
        if refusals:
            refusals -= 1
            return Response.text(429, "Slow down\n", Headers({"Retry-After": "1"}))
        return None

    server = await start_server(process_request=busy)  # type: ignore[operator]
    backoff = wsend.Backoff(initial_delay=0.01, max_delay=0.1, jitter=0)
    async for ws in wsend.connect(ws_uri(server), backoff=backoff):
        await ws.close()
        break
    assert delays(retries) == [0.1]  # Retry-After: 1, within max_delay


async def test_fatal_status_ends_the_loop(
    start_server: object, retries: list[logging.LogRecord]
) -> None:
    def forbidden(ws: wsend.ServerConnection, request: object) -> Response:
        return Response.text(403, "Forbidden\n")

    server = await start_server(process_request=forbidden)  # type: ignore[operator]
    with pytest.raises(wsend.InvalidStatus) as caught:
        await first(wsend.connect(ws_uri(server), backoff=FAST))
    assert caught.value.status_code == 403
    assert not delays(retries)


async def test_hook_decides_what_is_fatal(retries: list[logging.LogRecord]) -> None:
    seen: list[Exception] = []

    def refuse_twice(exc: Exception) -> Exception | None:
        seen.append(exc)
        return exc if len(seen) == 3 else None

    uri = f"ws://127.0.0.1:{free_port()}/"
    with pytest.raises(ConnectionRefusedError):
        await first(wsend.connect(uri, backoff=FAST, process_exception=refuse_twice))
    assert len(seen) == 3
    assert delays(retries) == [0.02, 0.04]


async def test_max_attempts() -> None:
    backoff = wsend.Backoff(initial_delay=0.001, jitter=0, max_attempts=3)
    with pytest.raises(ConnectionRefusedError):
        await first(wsend.connect(f"ws://127.0.0.1:{free_port()}/", backoff=backoff))


async def test_handshake_cut_by_the_server_is_retried(retries: list[logging.LogRecord]) -> None:
    """A server that dies while answering: the client sees the connection close before a
    response (InvalidMessage caused by EOF) and tries again."""
    cut = 2
    writers: list[asyncio.StreamWriter] = []

    async def accept(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        nonlocal cut
        writers.append(writer)
        _, fields = parse_head(await reader.readuntil(b"\r\n\r\n"))
        if cut:
            cut -= 1
            writer.close()
            return
        key = accept_key(fields["sec-websocket-key"])
        writer.write(
            b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
            b"Connection: Upgrade\r\nSec-WebSocket-Accept: " + key.encode() + b"\r\n\r\n"
        )

    server = await asyncio.start_server(accept, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        async for ws in wsend.connect(f"ws://127.0.0.1:{port}/", backoff=FAST, compression=None):
            assert ws.ready_state is wsend.State.OPEN
            ws.abort()
            break
    finally:
        for writer in writers:
            writer.transport.abort()
        server.close()
        await server.wait_closed()
    assert delays(retries) == [0.02, 0.04]
    assert all("InvalidMessage" in r.getMessage() for r in retries)


async def test_short_connections_back_off_and_long_ones_reset(
    start_server: object, retries: list[logging.LogRecord]
) -> None:
    async def close_soon(ws: wsend.ServerConnection) -> None:
        if ws.request is not None and ws.request.path == "/stay":
            await ws.wait_closed()

    server = await start_server(close_soon)  # type: ignore[operator]
    backoff = wsend.Backoff(initial_delay=0.01, factor=2, max_delay=1, jitter=0, reset_after=0.3)
    ended = 0
    async for ws in wsend.connect(ws_uri(server), backoff=backoff):
        with pytest.raises(wsend.ConnectionClosedOK):
            await ws.recv()  # the server closes right after opening
        ended += 1
        if ended == 4:
            break
    assert delays(retries, "ended") == [0.01, 0.02, 0.04]

    retries.clear()
    ended = 0
    async for _ws in wsend.connect(ws_uri(server, "/stay"), backoff=backoff):
        ended += 1
        if ended == 3:
            break
        await asyncio.sleep(0.35)  # outlive reset_after: the next attempt starts the run again
    assert delays(retries, "ended") == [0.01, 0.01]


async def test_leaving_the_loop_closes_the_connection(start_server: object) -> None:
    server = await start_server()  # type: ignore[operator]
    async for ws in wsend.connect(ws_uri(server), backoff=FAST):
        kept = ws
        break
    await asyncio.wait_for(kept.wait_closed(), 5)
    assert kept.close_code == 1000


async def test_the_body_raising_closes_the_connection(start_server: object) -> None:
    server = await start_server()  # type: ignore[operator]
    kept: list[wsend.ClientConnection] = []

    async def failing_body() -> None:
        async for ws in wsend.connect(ws_uri(server), backoff=FAST):
            kept.append(ws)
            raise RuntimeError("body")

    with pytest.raises(RuntimeError, match="body"):
        await failing_body()
    await asyncio.wait_for(kept[0].wait_closed(), 5)


async def test_no_reconnection_with_a_socket(start_server: object) -> None:
    server = await start_server()  # type: ignore[operator]
    sock = socket.create_connection(("127.0.0.1", server.port))  # type: ignore[attr-defined]
    try:
        with pytest.raises(wsend.UsageError, match="sock="):
            await first(wsend.connect(ws_uri(server), sock=sock))
    finally:
        sock.close()


@pytest.mark.parametrize("kind", ["tinyproxy", "microsocks"])
async def test_server_down_behind_a_proxy(kind: str, retries: list[logging.LogRecord]) -> None:
    """Through a real HTTP or SOCKS5 proxy, a server that is down makes the proxy refuse the
    tunnel (tinyproxy: 500, microsocks: reply 5): retried until the server is up."""
    proxy = TinyProxy() if kind == "tinyproxy" else MicroSocks()
    port = closed_port()
    servers: list[wsend.Server] = []

    async def start_later() -> None:
        await until(lambda: len(delays(retries)) >= 2, 0.01)
        servers.append(await wsend.serve(echo, "127.0.0.1", port))

    starter = asyncio.create_task(start_later())
    try:
        async for ws in wsend.connect(f"ws://127.0.0.1:{port}/", proxy=proxy.url, backoff=FAST):
            await ws.send("through the proxy")
            assert await ws.recv() == "through the proxy"
            break
    finally:
        await starter
        for server in servers:
            await server.shutdown(timeout=5)
        proxy.stop()
    failed = [r.getMessage() for r in retries if "failed" in r.getMessage()]
    assert len(failed) >= 2
    assert all("ProxyRefused" in message for message in failed)
