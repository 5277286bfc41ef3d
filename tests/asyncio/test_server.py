"""The asyncio server: lifecycle, shutdown, the opening handshake and its hooks."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
import socket

import pytest

import wsend
from wsend import (
    ConnectionClosedError,
    ConnectionClosedOK,
    InvalidStatus,
    RequestRejected,
    Response,
    State,
)
from wsend.protocol.frames import Opcode

from .helpers import echo, http_request, raw_client, read_head, until, upgrade_request, ws_uri

pytestmark = pytest.mark.timeout(20)


# -- lifecycle -------------------------------------------------------------------------------


async def test_await_serve_and_echo():
    server = await wsend.serve(echo, "127.0.0.1", 0)
    try:
        assert server.sockets
        async with wsend.connect(ws_uri(server)) as ws:
            await ws.send("ping")
            assert await ws.recv() == "ping"
    finally:
        await server.shutdown()
    assert not server.connections


async def test_async_with_serve():
    async with wsend.serve(echo, "127.0.0.1", 0) as server:
        uri = ws_uri(server)
        async with wsend.connect(uri) as ws:
            await ws.send(b"bytes")
            assert await ws.recv() == b"bytes"
    with pytest.raises(ConnectionRefusedError):
        await wsend.connect(uri)


async def test_serve_forever_until_cancelled(start_server):
    server = await start_server()
    forever = asyncio.create_task(server.serve_forever())
    async with wsend.connect(ws_uri(server)) as ws:
        await ws.send("x")
        assert await ws.recv() == "x"
    forever.cancel()
    with pytest.raises(asyncio.CancelledError):
        await forever


async def test_unix_socket(start_server, tmp_path):
    path = str(tmp_path / "ws.sock")
    server = await start_server(path=path)
    with pytest.raises(RuntimeError, match="not listening on TCP"):
        _ = server.port
    async with wsend.connect("ws://localhost/unix", path=path) as ws:
        await ws.send("over unix")
        assert await ws.recv() == "over unix"
        assert ws.request.path == "/unix"


async def test_existing_sockets(start_server):
    listener = socket.create_server(("127.0.0.1", 0))
    server = await start_server(sock=listener)
    client_sock = socket.create_connection(("127.0.0.1", server.port))
    async with wsend.connect("ws://localhost/", sock=client_sock) as ws:
        await ws.send("over sockets")
        assert await ws.recv() == "over sockets"


def test_serve_argument_errors(tmp_path):
    with pytest.raises(ValueError, match="ssl or certfile"):
        wsend.serve(echo, ssl=object(), certfile="x")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="path or sock"):
        wsend.serve(echo, path=str(tmp_path / "s"), sock=socket.socket())
    with pytest.raises(ValueError, match="compression"):
        wsend.serve(echo, compression="gzip")
    with pytest.raises(ValueError, match="max_queue"):
        wsend.serve(echo, max_queue=0)


async def test_handler_return_closes_with_1000(start_server):
    async def handler(ws):
        await ws.send("bye")

    server = await start_server(handler)
    async with wsend.connect(ws_uri(server)) as ws:
        assert await ws.recv() == "bye"
        with pytest.raises(ConnectionClosedOK) as info:
            await ws.recv()
        assert info.value.code == 1000


async def test_handler_exception_closes_with_1011_and_is_logged(start_server, caplog):
    async def handler(ws):
        raise RuntimeError("handler bug")

    server = await start_server(handler)
    with caplog.at_level(logging.ERROR, logger="wsend.server"):
        async with wsend.connect(ws_uri(server)) as ws:
            with pytest.raises(ConnectionClosedError) as info:
                await ws.recv()
    assert (info.value.code, info.value.reason) == (1011, "internal error")
    assert "connection handler failed" in caplog.text
    assert "handler bug" in caplog.text


async def test_handler_connection_closed_is_not_logged(start_server, caplog):
    async def handler(ws):
        await ws.recv()

    server = await start_server(handler)
    with caplog.at_level(logging.ERROR, logger="wsend.server"):
        async with wsend.connect(ws_uri(server)):
            pass
        await server.shutdown()
    assert "handler failed" not in caplog.text


async def test_graceful_shutdown(start_server):
    finished: list[int] = []

    async def handler(ws):
        async for message in ws:
            await ws.send(message)
        finished.append(ws.close_code)

    server = await start_server(handler)
    clients = [await wsend.connect(ws_uri(server)) for _ in range(3)]
    for ws in clients:
        await ws.send("hi")
        assert await ws.recv() == "hi"
    await server.shutdown()
    for ws in clients:
        with pytest.raises(ConnectionClosedOK) as info:
            await ws.recv()
        assert (info.value.code, info.value.reason) == (1001, "server shutting down")
    assert len(finished) == 3
    assert not server.connections


async def test_shutdown_cancels_handlers_after_timeout(start_server):
    started = asyncio.Event()
    cancelled = asyncio.Event()

    async def stubborn(ws):
        started.set()
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            cancelled.set()
            raise

    server = await start_server(stubborn)
    async with wsend.connect(ws_uri(server)) as ws:
        await started.wait()
        await server.shutdown(timeout=0.1)
        assert cancelled.is_set()
        with pytest.raises(ConnectionClosedOK) as info:
            await ws.recv()
        assert info.value.code == 1001


async def test_shutdown_with_custom_code(start_server):
    server = await start_server()
    async with wsend.connect(ws_uri(server)) as ws:
        await server.shutdown(1012, "restarting")
        with pytest.raises(ConnectionClosedError) as info:
            await ws.recv()
        assert (info.value.code, info.value.reason) == (1012, "restarting")


async def test_close_aborts_connections_in_handshake(start_server):
    server = await start_server()
    reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
    writer.write(b"GET / HTTP/1.1\r\n")
    await until(lambda: server.connections, 0.01)
    server.close()
    with contextlib.suppress(ConnectionError):
        assert await reader.read() == b""
    await server.wait_closed()
    writer.close()


async def test_connections_are_tracked(start_server):
    server = await start_server()
    async with wsend.connect(ws_uri(server)) as ws:
        await ws.send("x")
        await ws.recv()
        assert len(server.connections) == 1
        (conn,) = server.connections
        assert conn.remote_address == ws.local_address
    await until(lambda: not server.connections, 0.01)


async def test_early_data_after_the_request(start_server):
    server = await start_server()
    peer = await raw_client(
        server.port, early=b"".join(_masked_text(text) for text in ("early", "bird"))
    )
    assert (await peer.recv_frame())[3] == b"early"
    assert (await peer.recv_frame())[3] == b"bird"
    await peer.aclose()


def _masked_text(text: str) -> bytes:
    from .helpers import frame

    return frame(Opcode.TEXT, text.encode(), mask=True)


async def test_too_much_early_data_aborts(start_server):
    gate = asyncio.Event()
    processing = asyncio.Event()

    async def slow_hook(ws, request):
        processing.set()
        await gate.wait()

    server = await start_server(process_request=slow_hook)
    reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
    writer.write(upgrade_request())
    await processing.wait()
    writer.write(b"x" * 70_000)
    with contextlib.suppress(ConnectionError):
        assert await reader.read() == b""
    gate.set()
    writer.close()


# -- plain HTTP and bad requests -------------------------------------------------------------


async def test_healthz(start_server):
    server = await start_server()
    first, headers, body = await http_request(
        server.port, b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n"
    )
    assert first.startswith("HTTP/1.1 200")
    assert body == b"OK\n"
    assert headers["connection"] == "close"


async def test_plain_get_gets_426(start_server):
    server = await start_server()
    first, headers, body = await http_request(server.port, b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
    assert first.startswith("HTTP/1.1 426")
    assert headers["upgrade"] == "websocket"
    assert headers["sec-websocket-version"] == "13"
    assert b"WebSocket" in body


@pytest.mark.parametrize(
    ("data", "status"),
    [
        (b"\x16\x03\x01garbage\r\n\r\n", 400),
        (b"GET /" + b"a" * 10_000 + b" HTTP/1.1\r\nHost: x\r\n\r\n", 414),
        (
            b"GET / HTTP/1.1\r\n" + b"".join(b"X-%d: v\r\n" % i for i in range(150)) + b"\r\n",
            431,
        ),
        (b"GET / HTTP/1.1\r\nX-Big: " + b"v" * 10_000 + b"\r\n\r\n", 431),
    ],
    ids=["garbage", "long-request-line", "too-many-headers", "header-too-large"],
)
async def test_bad_requests(start_server, data, status):
    server = await start_server()
    first, headers, _ = await http_request(server.port, data)
    assert first.startswith(f"HTTP/1.1 {status}")
    assert headers["connection"] == "close"


async def test_wrong_websocket_version(start_server):
    server = await start_server()
    first, headers, _ = await http_request(
        server.port, upgrade_request(headers={"Sec-WebSocket-Version": "8"})
    )
    assert first.startswith("HTTP/1.1 426")
    assert headers["sec-websocket-version"] == "13"


@pytest.mark.parametrize(
    ("omit", "headers"),
    [
        (("Sec-WebSocket-Key",), {}),
        ((), {"Sec-WebSocket-Key": "short"}),
        (("Connection",), {}),
    ],
    ids=["missing-key", "bad-key", "missing-connection"],
)
async def test_invalid_upgrade_requests(start_server, omit, headers):
    server = await start_server()
    first, _, body = await http_request(server.port, upgrade_request(headers=headers, omit=omit))
    assert first.split()[1] in ("400", "426")
    assert b"Failed to open a WebSocket connection" in body


async def test_open_timeout_drops_half_requests(start_server):
    server = await start_server(open_timeout=0.1)
    reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
    writer.write(b"GET / HTTP/1.1\r\nHost: loc")
    with contextlib.suppress(ConnectionError):
        assert await reader.read() == b""
    writer.close()


# -- origins ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("origins", "origin", "accepted"),
    [
        (["https://good.example"], "https://good.example", True),
        (["https://good.example"], "HTTPS://GOOD.EXAMPLE", True),
        ([re.compile(r"https://[a-z]+\.good\.example")], "https://app.good.example", True),
        (["https://good.example"], "https://evil.example", False),
        (["https://good.example"], None, False),
        ([None, "https://good.example"], None, True),
        ([None], "https://good.example", False),
        ([], "https://good.example", False),
    ],
)
async def test_origins(start_server, origins, origin, accepted):
    server = await start_server(origins=origins)
    if accepted:
        async with wsend.connect(ws_uri(server), origin=origin) as ws:
            assert ws.request.headers.get("Origin") == origin
        return
    with pytest.raises(InvalidStatus) as info:
        await wsend.connect(ws_uri(server), origin=origin)
    assert info.value.status_code == 403


# -- subprotocols ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("supported", "offered", "chosen"),
    [
        (["b", "a"], ["a", "b"], "b"),
        (["a", "b"], ["b"], "b"),
        (["a"], [], None),
        (["a"], ["z"], None),
        ([], ["a"], None),
    ],
)
async def test_subprotocol_negotiation(start_server, supported, offered, chosen):
    seen = []

    async def handler(ws):
        seen.append(ws.protocol)

    server = await start_server(handler, subprotocols=supported)
    async with wsend.connect(ws_uri(server), subprotocols=offered) as ws:
        assert ws.protocol == chosen
        await ws.wait_closed()
    assert seen == [chosen]


async def test_require_subprotocol(start_server):
    server = await start_server(subprotocols=["a"], require_subprotocol=True)
    with pytest.raises(InvalidStatus) as info:
        await wsend.connect(ws_uri(server), subprotocols=["z"])
    assert info.value.status_code == 400
    async with wsend.connect(ws_uri(server), subprotocols=["z", "a"]) as ws:
        assert ws.protocol == "a"


async def test_select_subprotocol_callback(start_server):
    calls = []

    def select(ws, offered):
        calls.append(offered)
        return offered[-1] if offered else None

    server = await start_server(select_subprotocol=select, subprotocols=["ignored"])
    async with wsend.connect(ws_uri(server), subprotocols=["x", "y"]) as ws:
        assert ws.protocol == "y"
    async with wsend.connect(ws_uri(server)) as ws:
        assert ws.protocol is None
    assert calls == [["x", "y"], []]


async def test_select_subprotocol_not_offered(start_server):
    server = await start_server(select_subprotocol=lambda ws, offered: "other")
    with pytest.raises(InvalidStatus) as info:
        await wsend.connect(ws_uri(server), subprotocols=["x"])
    assert info.value.status_code == 400


# -- process_request hooks and headers -------------------------------------------------------


async def test_process_request_hooks_in_order(start_server):
    calls = []

    def sync_hook(ws, request):
        calls.append(("sync", ws.ready_state, request.path))

    async def async_hook(ws, request):
        calls.append(("async", ws.ready_state, request.path))
        ws.user = "from hook"

    async def handler(ws):
        await ws.send(ws.user)

    server = await start_server(handler, process_request=[sync_hook, async_hook])
    async with wsend.connect(ws_uri(server, "/hooked")) as ws:
        assert await ws.recv() == "from hook"
    assert calls == [("sync", State.CONNECTING, "/hooked"), ("async", State.CONNECTING, "/hooked")]


@pytest.mark.parametrize("is_async", [False, True])
async def test_process_request_rejects(start_server, is_async):
    def reject(ws, request):
        return Response.text(403, "go away", {"X-Reason": "test"})

    async def async_reject(ws, request):
        return reject(ws, request)

    later = []
    server = await start_server(
        process_request=[async_reject if is_async else reject, lambda ws, r: later.append(1)]
    )
    with pytest.raises(InvalidStatus) as info:
        await wsend.connect(ws_uri(server))
    assert info.value.status_code == 403
    assert info.value.body == b"go away"
    assert info.value.headers["X-Reason"] == "test"
    assert later == []


async def test_process_request_raises_request_rejected(start_server):
    def hook(ws, request):
        raise RequestRejected(429, "slow down")

    server = await start_server(process_request=hook)
    with pytest.raises(InvalidStatus) as info:
        await wsend.connect(ws_uri(server))
    assert info.value.status_code == 429
    assert b"slow down" in info.value.body


async def test_process_request_crash_gives_500(start_server, caplog):
    def hook(ws, request):
        raise KeyError("internal detail")

    server = await start_server(process_request=hook)
    with (
        caplog.at_level(logging.ERROR, logger="wsend.server"),
        pytest.raises(InvalidStatus) as info,
    ):
        await wsend.connect(ws_uri(server))
    assert info.value.status_code == 500
    assert b"internal detail" not in info.value.body
    assert "error while processing the opening handshake" in caplog.text


async def test_extra_headers_and_server_header(start_server):
    server = await start_server(extra_headers={"X-Extra": "1"})
    async with wsend.connect(ws_uri(server)) as ws:
        assert ws.response.headers["X-Extra"] == "1"
        assert ws.response.headers["Server"].startswith("wsend/")
    server = await start_server(server_header=None)
    async with wsend.connect(ws_uri(server)) as ws:
        assert "Server" not in ws.response.headers


async def test_compression_disabled_on_server(start_server):
    server = await start_server(compression=None)
    async with wsend.connect(ws_uri(server)) as ws:
        assert ws.extensions == []
        assert "Sec-WebSocket-Extensions" in ws.request.headers
        assert "Sec-WebSocket-Extensions" not in ws.response.headers


async def test_custom_server_deflate(start_server):
    from wsend.protocol.deflate import ServerDeflate

    server = await start_server(compression=ServerDeflate(server_no_context_takeover=True))
    async with wsend.connect(ws_uri(server)) as ws:
        assert "server_no_context_takeover" in ws.response.headers["Sec-WebSocket-Extensions"]
        for _ in range(3):
            await ws.send("z" * 5000)
            assert await ws.recv() == "z" * 5000


async def test_other_extensions_are_ignored(start_server):
    server = await start_server()
    reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
    writer.write(upgrade_request(headers={"Sec-WebSocket-Extensions": "x-unknown, x-other; a=1"}))
    head = (await read_head(reader)).decode()
    assert head.startswith("HTTP/1.1 101")
    assert "Sec-WebSocket-Extensions" not in head
    writer.close()


async def test_server_as_async_context_manager():
    server = await wsend.serve(echo, "127.0.0.1", 0, open_timeout=None)
    async with server, wsend.connect(ws_uri(server)) as ws:
        await ws.send("managed")
        assert await ws.recv() == "managed"
    assert not server.sockets or all(sock.fileno() == -1 for sock in server.sockets)


async def test_sending_before_the_handshake_completes(start_server):
    errors = []

    async def hook(ws, request):
        try:
            await ws.send("too early")
        except wsend.UsageError as exc:
            errors.append(exc)

    server = await start_server(process_request=hook)
    async with wsend.connect(ws_uri(server)) as ws:
        await ws.send("x")
        assert await ws.recv() == "x"
    assert len(errors) == 1


async def test_close_during_the_handshake(start_server):
    async def hook(ws, request):
        await ws.close()

    server = await start_server(process_request=hook)
    with pytest.raises(wsend.InvalidMessage):
        await wsend.connect(ws_uri(server))


async def test_client_gone_before_the_answer(start_server):
    gate = asyncio.Event()
    processing = asyncio.Event()

    async def hook(ws, request):
        processing.set()
        await gate.wait()
        return Response.text(403, "too late")

    server = await start_server(process_request=hook)
    _, writer = await asyncio.open_connection("127.0.0.1", server.port)
    writer.write(upgrade_request())
    await processing.wait()
    writer.transport.abort()
    await until(lambda: not server.connections, 0.01)
    gate.set()


async def test_declined_deflate_offer_then_accepted_one(start_server):
    from wsend.protocol.deflate import ServerDeflate

    server = await start_server(compression=ServerDeflate(require_client_max_window_bits=True))
    reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
    offers = "permessage-deflate, permessage-deflate; client_max_window_bits"
    writer.write(upgrade_request(headers={"Sec-WebSocket-Extensions": offers}))
    head = (await read_head(reader)).decode()
    assert head.startswith("HTTP/1.1 101")
    assert "client_max_window_bits=" in head
    writer.close()


@pytest.mark.parametrize("fast", [False, True])
async def test_shutdown_timeout_bounds_a_peer_that_never_answers_the_close(start_server, fast):
    """The whole shutdown takes at most its timeout (plus a second for cancellations), even
    when the server's transport waits for every connection to close."""
    server = await start_server(ping_interval=None, close_timeout=30, fast_transport=fast)
    reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
    writer.write(upgrade_request())
    await read_head(reader)  # then never read or answer again
    await until(lambda: any(c.ready_state is wsend.State.OPEN for c in server.connections))
    loop = asyncio.get_running_loop()
    start = loop.time()
    await server.shutdown(timeout=0.5)
    assert loop.time() - start < 3
    assert not server.connections
    writer.close()
