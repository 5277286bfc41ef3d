"""The threading server: serving and shutting down, handlers, plain HTTP, bad requests,
origins, subprotocols, process_request hooks (authentication included) and compression."""

from __future__ import annotations

import asyncio
import logging
import queue
import re
import socket
import threading

import pytest

import wsend
from wsend import InvalidStatus, RequestRejected, State
from wsend.protocol.deflate import ServerDeflate
from wsend.protocol.http import Request, Response

from ..asyncio.helpers import upgrade_request
from .conftest import StartServer
from .helpers import echo, http_request, in_thread, raw_client, read_head, running, uri


def test_serve_forever_and_shutdown() -> None:
    server = wsend.sync.serve(echo, "127.0.0.1", 0)
    thread = in_thread(server.serve_forever)
    with wsend.sync.connect(uri(server)) as ws:
        ws.send("hello")
        assert ws.recv(timeout=5) == "hello"
        with pytest.raises(wsend.UsageError, match="already serving"):
            server.serve_forever()
        server.shutdown()
        with pytest.raises(wsend.ConnectionClosedOK) as info:
            ws.recv(timeout=5)
    assert (info.value.code, info.value.reason) == (1001, "server shutting down")
    thread.join(5)
    assert not thread.is_alive()
    assert server.socket.fileno() == -1


def test_context_manager_shuts_down() -> None:
    with wsend.sync.serve(echo, "127.0.0.1", 0) as server:
        thread = in_thread(server.serve_forever)
        with wsend.sync.connect(uri(server)) as ws:
            ws.send("x")
            assert ws.recv(timeout=5) == "x"
    thread.join(5)
    assert not thread.is_alive()


def test_shutdown_without_serving() -> None:
    server = wsend.sync.serve(echo, "127.0.0.1", 0)
    server.shutdown()
    server.close()  # again: nothing more to do
    assert server.wait_closed(0)


def test_existing_socket_and_ipv6() -> None:
    listener = socket.create_server(("127.0.0.1", 0))
    with (
        running(wsend.sync.serve(echo, sock=listener)) as server,
        wsend.sync.connect(uri(server)) as ws,
    ):
        ws.send("via my socket")
        assert ws.recv(timeout=5) == "via my socket"
    if not socket.has_ipv6:  # pragma: no cover
        return
    try:
        server6 = wsend.sync.serve(echo, "::1", 0)
    except OSError:  # pragma: no cover - no IPv6 loopback here
        return
    with running(server6), wsend.sync.connect(f"ws://[::1]:{server6.port}/") as ws:
        ws.send("v6")
        assert ws.recv(timeout=5) == "v6"


def test_serve_argument_errors(tmp_path: object, certs: object) -> None:
    with pytest.raises(ValueError, match="one of"):
        wsend.sync.serve(echo, "127.0.0.1", 0, path=f"{tmp_path}/s.sock")
    with pytest.raises(ValueError, match="either ssl or certfile"):
        wsend.sync.serve(
            echo,
            "127.0.0.1",
            0,
            ssl=certs.server_context,  # type: ignore[attr-defined]
            certfile=certs.certfile,  # type: ignore[attr-defined]
        )
    with pytest.raises(ValueError, match="compression"):
        wsend.sync.serve(echo, "127.0.0.1", 0, compression="gzip")


def test_stale_unix_socket_is_replaced(tmp_path: object) -> None:
    path = f"{tmp_path}/stale.sock"
    stale = socket.socket(socket.AF_UNIX)
    stale.bind(path)
    stale.close()
    with (
        running(wsend.sync.serve(echo, path=path)),
        wsend.sync.connect("ws://localhost/", path=path) as ws,
    ):
        ws.send("fresh")
        assert ws.recv(timeout=5) == "fresh"


# -- handlers ------------------------------------------------------------------------------------


def test_handler_return_closes_with_1000(start_sync_server: StartServer) -> None:
    server = start_sync_server(lambda ws: ws.send("bye"))
    with wsend.sync.connect(uri(server)) as ws:
        assert ws.recv(timeout=5) == "bye"
        with pytest.raises(wsend.ConnectionClosedOK):
            ws.recv(timeout=5)
        assert ws.close_code == 1000


def test_handler_exception_closes_with_1011_and_is_logged(
    start_sync_server: StartServer, caplog: pytest.LogCaptureFixture
) -> None:
    def handler(ws: wsend.sync.ServerConnection) -> None:
        raise RuntimeError("boom")

    server = start_sync_server(handler)
    with caplog.at_level(logging.ERROR, "wsend.server"), wsend.sync.connect(uri(server)) as ws:
        with pytest.raises(wsend.ConnectionClosedError) as info:
            ws.recv(timeout=5)
        assert (info.value.code, info.value.reason) == (1011, "internal error")
    assert "connection handler failed" in caplog.text


def test_handler_connection_closed(start_sync_server: StartServer) -> None:
    others: queue.Queue[wsend.sync.ServerConnection] = queue.Queue()

    def handler(ws: wsend.sync.ServerConnection) -> None:
        if ws.request is not None and ws.request.path == "/first":
            others.put(ws)
            ws.wait_closed()
            return
        other = others.get(timeout=5)
        other.recv(timeout=5)  # raises: that one is closed, not this one

    server = start_sync_server(handler)
    first = wsend.sync.connect(uri(server, "/first")).open()
    first.close()
    with wsend.sync.connect(uri(server, "/second")) as ws:
        with pytest.raises(wsend.ConnectionClosedError) as info:
            ws.recv(timeout=5)
        assert info.value.code == 1011
    # Its own closure escaping the handler is normal.
    server2 = start_sync_server(lambda ws: ws.recv())
    with wsend.sync.connect(uri(server2)) as ws:
        pass
    assert ws.close_code == 1000


def test_connections_are_tracked(start_sync_server: StartServer) -> None:
    gate = threading.Event()

    def handler(ws: wsend.sync.ServerConnection) -> None:
        gate.wait(5)

    server = start_sync_server(handler)
    with wsend.sync.connect(uri(server)), wsend.sync.connect(uri(server)):
        assert len(server.connections) == 2
        assert all(conn.ready_state is State.OPEN for conn in server.connections)
        assert all(conn.server is server for conn in server.connections)
        gate.set()


def test_shutdown_timeout_leaves_stuck_handlers(caplog: pytest.LogCaptureFixture) -> None:
    release = threading.Event()

    def stubborn(ws: wsend.sync.ServerConnection) -> None:
        release.wait(10)  # ignores the closure

    server = wsend.sync.serve(stubborn, "127.0.0.1", 0, close_timeout=5)
    thread = in_thread(server.serve_forever)
    ws = wsend.sync.connect(uri(server)).open()
    server.shutdown(timeout=0.3)
    assert not server.wait_closed(0)
    release.set()
    assert server.wait_closed(5)
    thread.join(5)
    assert ws.wait_closed(5)
    assert ws.close_code == 1001


def test_close_aborts_connections_in_the_handshake(start_sync_server: StartServer) -> None:
    server = start_sync_server()
    sock = socket.create_connection(("127.0.0.1", server.port))
    sock.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n")  # incomplete: stays in the handshake
    while not server.connections:
        threading.Event().wait(0.01)
    server.close()
    sock.settimeout(5)
    assert sock.recv(1) == b""
    sock.close()


# -- plain HTTP and bad requests ----------------------------------------------------------------


def test_healthz_and_426(start_sync_server: StartServer) -> None:
    server = start_sync_server()
    first, headers, body = http_request(server.port, b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
    assert first.startswith("HTTP/1.1 200")
    assert body == b"OK\n"
    assert headers["connection"] == "close"
    first, headers, body = http_request(server.port, b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
    assert first.startswith("HTTP/1.1 426")
    assert headers["upgrade"] == "websocket"
    first, headers, body = http_request(server.port, b"HEAD /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
    assert first.startswith("HTTP/1.1 200")
    assert headers["content-length"] == "3"


def test_routes(start_sync_server: StartServer) -> None:
    server = start_sync_server()

    @server.route("/api/ping")
    def ping(request: Request) -> Response:
        return Response.json(200, {"pong": True})

    @server.route("/api/items", methods=["POST"])
    def create(request: Request) -> Response:
        return Response.text(201, request.body.decode())

    async def no_await(request: Request) -> Response:
        return Response.text(200, "async without waiting")

    async def awaits(request: Request) -> Response:
        await asyncio.sleep(0)
        return Response.text(200, "never")

    server.router.add("/async", no_await)
    server.router.add("/awaits", awaits)

    first, _, body = http_request(server.port, b"GET /api/ping HTTP/1.1\r\nHost: x\r\n\r\n")
    assert first.startswith("HTTP/1.1 200")
    assert body == b'{"pong":true}'
    data = b"POST /api/items HTTP/1.1\r\nHost: x\r\nContent-Length: 4\r\n\r\nitem"
    first, _, body = http_request(server.port, data)
    assert first.startswith("HTTP/1.1 201")
    assert body == b"item"
    first, headers, _ = http_request(server.port, b"DELETE /api/items HTTP/1.1\r\nHost: x\r\n\r\n")
    assert first.startswith("HTTP/1.1 405")
    assert headers["allow"] == "POST"
    first, headers, body = http_request(server.port, b"HEAD /api/ping HTTP/1.1\r\nHost: x\r\n\r\n")
    assert first.startswith("HTTP/1.1 200")
    assert body == b""
    first, _, body = http_request(server.port, b"GET /async HTTP/1.1\r\nHost: x\r\n\r\n")
    assert body == b"async without waiting"
    first, _, _ = http_request(server.port, b"GET /awaits HTTP/1.1\r\nHost: x\r\n\r\n")
    assert first.startswith("HTTP/1.1 500")


@pytest.mark.parametrize(
    ("data", "status"),
    [
        (b"\x16\x03\x01garbage\r\n\r\n", 400),
        (b"GET /" + b"a" * 10_000 + b" HTTP/1.1\r\nHost: x\r\n\r\n", 414),
        (
            b"GET / HTTP/1.1\r\n" + b"".join(b"X-%d: v\r\n" % i for i in range(150)) + b"\r\n",
            431,
        ),
    ],
    ids=["garbage", "long-request-line", "too-many-headers"],
)
def test_bad_requests(start_sync_server: StartServer, data: bytes, status: int) -> None:
    server = start_sync_server()
    first, headers, _ = http_request(server.port, data)
    assert first.startswith(f"HTTP/1.1 {status}")
    assert headers["connection"] == "close"


def test_invalid_upgrade_requests(start_sync_server: StartServer) -> None:
    server = start_sync_server()
    first, headers, _ = http_request(
        server.port, upgrade_request(headers={"Sec-WebSocket-Version": "8"})
    )
    assert first.startswith("HTTP/1.1 426")
    assert headers["sec-websocket-version"] == "13"
    first, _, body = http_request(server.port, upgrade_request(omit=("Sec-WebSocket-Key",)))
    assert first.startswith("HTTP/1.1 400")
    assert b"Failed to open a WebSocket connection" in body


def test_open_timeout_drops_half_requests(start_sync_server: StartServer) -> None:
    server = start_sync_server(open_timeout=0.1)
    with socket.create_connection(("127.0.0.1", server.port), timeout=5) as sock:
        sock.sendall(b"GET / HTTP/1.1\r\nHost: loc")
        assert sock.recv(1) == b""


def test_client_gone_before_the_request_ends(start_sync_server: StartServer) -> None:
    server = start_sync_server()
    with socket.create_connection(("127.0.0.1", server.port), timeout=5) as sock:
        sock.sendall(b"GET / HTTP/1.1\r\n")
    with wsend.sync.connect(uri(server)) as ws:  # the server carries on
        ws.send("fine")
        assert ws.recv(timeout=5) == "fine"


def test_early_data_after_the_request(start_sync_server: StartServer) -> None:
    server = start_sync_server()
    from ..asyncio.helpers import frame

    with socket.create_connection(("127.0.0.1", server.port), timeout=5) as sock:
        sock.sendall(upgrade_request() + frame(0x1, b"early", mask=True))
        read_head(sock)
        assert sock.recv(7) == b"\x81\x05early"


# -- origins, subprotocols, hooks -----------------------------------------------------------------


@pytest.mark.parametrize(
    ("origins", "origin", "accepted"),
    [
        (["https://good.example"], "https://good.example", True),
        ([re.compile(r"https://[a-z]+\.good\.example")], "https://app.good.example", True),
        (["https://good.example"], "https://evil.example", False),
        (["https://good.example"], None, False),
        ([None, "https://good.example"], None, True),
    ],
)
def test_origins(
    start_sync_server: StartServer, origins: list[object], origin: str | None, accepted: bool
) -> None:
    server = start_sync_server(origins=origins)
    if accepted:
        with wsend.sync.connect(uri(server), origin=origin) as ws:
            assert ws.request is not None
            assert ws.request.headers.get("Origin") == origin
        return
    with pytest.raises(InvalidStatus) as info:
        wsend.sync.connect(uri(server), origin=origin).open()
    assert info.value.status_code == 403


@pytest.mark.parametrize(
    ("supported", "offered", "chosen"),
    [(["b", "a"], ["a", "b"], "b"), (["a"], [], None), ([], ["a"], None)],
)
def test_subprotocol_negotiation(
    start_sync_server: StartServer, supported: list[str], offered: list[str], chosen: str | None
) -> None:
    server = start_sync_server(subprotocols=supported)
    with wsend.sync.connect(uri(server), subprotocols=offered) as ws:
        assert ws.protocol == chosen


def test_require_and_select_subprotocol(start_sync_server: StartServer) -> None:
    server = start_sync_server(subprotocols=["a"], require_subprotocol=True)
    with pytest.raises(InvalidStatus) as info:
        wsend.sync.connect(uri(server), subprotocols=["z"]).open()
    assert info.value.status_code == 400
    calls = []

    def select(ws: wsend.sync.ServerConnection, offered: list[str]) -> str | None:
        calls.append(offered)
        return offered[-1] if offered else None

    server = start_sync_server(select_subprotocol=select)
    with wsend.sync.connect(uri(server), subprotocols=["x", "y"]) as ws:
        assert ws.protocol == "y"
    server = start_sync_server(select_subprotocol=lambda ws, offered: "other")
    with pytest.raises(InvalidStatus):
        wsend.sync.connect(uri(server), subprotocols=["x"]).open()
    assert calls == [["x", "y"]]


def test_process_request_hooks(start_sync_server: StartServer) -> None:
    calls = []

    def first(ws: wsend.sync.ServerConnection, request: Request) -> None:
        calls.append((ws.ready_state, request.path))
        ws.user = "from hook"

    def refuse(ws: wsend.sync.ServerConnection, request: Request) -> Response | None:
        if request.path == "/no":
            return Response.text(403, "go away")
        return None

    server = start_sync_server(lambda ws: ws.send(ws.user), process_request=[first, refuse])
    with wsend.sync.connect(uri(server, "/hooked")) as ws:
        assert ws.recv(timeout=5) == "from hook"
    with pytest.raises(InvalidStatus) as info:
        wsend.sync.connect(uri(server, "/no")).open()
    assert info.value.body == b"go away"
    assert calls == [(State.CONNECTING, "/hooked"), (State.CONNECTING, "/no")]


def test_process_request_errors(
    start_sync_server: StartServer, caplog: pytest.LogCaptureFixture
) -> None:
    def rejected(ws: object, request: Request) -> None:
        raise RequestRejected(429, "slow down")

    def crash(ws: object, request: Request) -> None:
        raise KeyError("internal detail")

    async def waits(ws: object, request: Request) -> None:
        await asyncio.sleep(0)

    server = start_sync_server(process_request=rejected)
    with pytest.raises(InvalidStatus) as info:
        wsend.sync.connect(uri(server)).open()
    assert info.value.status_code == 429
    for hook in (crash, waits):
        server = start_sync_server(process_request=hook)
        with caplog.at_level(logging.ERROR, "wsend.server"), pytest.raises(InvalidStatus) as info:
            wsend.sync.connect(uri(server)).open()
        assert info.value.status_code == 500
        assert b"internal detail" not in info.value.body
    assert "awaits something" in caplog.text


def test_authentication_helpers(start_sync_server: StartServer) -> None:
    """wsend.basic_auth and wsend.token_auth serve the threading server with sync checks."""
    server = start_sync_server(
        lambda ws: ws.send(str(ws.user)),
        process_request=wsend.basic_auth(credentials={"alice": "secret"}),
    )
    with wsend.sync.connect(f"ws://alice:secret@127.0.0.1:{server.port}/") as ws:
        assert ws.recv(timeout=5) == "alice"
    with pytest.raises(InvalidStatus) as info:
        wsend.sync.connect(f"ws://alice:wrong@127.0.0.1:{server.port}/").open()
    assert info.value.status_code == 401
    tokens = {"t0k3n": "bob"}
    server = start_sync_server(
        lambda ws: ws.send(str(ws.user)), process_request=wsend.token_auth(tokens.get)
    )
    with wsend.sync.connect(uri(server, "/?token=t0k3n")) as ws:
        assert ws.recv(timeout=5) == "bob"
    with pytest.raises(InvalidStatus) as info:
        wsend.sync.connect(uri(server, "/?token=nope")).open()
    assert info.value.status_code == 401


def test_extra_headers_and_server_header(start_sync_server: StartServer) -> None:
    server = start_sync_server(extra_headers={"X-Extra": "1"})
    with wsend.sync.connect(uri(server)) as ws:
        assert ws.response is not None
        assert ws.response.headers["X-Extra"] == "1"
        assert ws.response.headers["Server"].startswith("wsend/")
    server = start_sync_server(server_header=None)
    with wsend.sync.connect(uri(server)) as ws:
        assert ws.response is not None
        assert "Server" not in ws.response.headers


def test_compression_settings(start_sync_server: StartServer) -> None:
    server = start_sync_server(compression=None)
    with wsend.sync.connect(uri(server)) as ws:
        assert ws.extensions == []
    server = start_sync_server(compression=ServerDeflate(server_max_window_bits=10))
    with wsend.sync.connect(uri(server)) as ws:
        assert ws.extensions == ["permessage-deflate"]
        ws.send("y" * 50_000)
        assert ws.recv(timeout=5) == "y" * 50_000
    peer = raw_client(server.port, headers={"Sec-WebSocket-Extensions": "x-other"})
    peer.close()


def test_many_clients(start_sync_server: StartServer) -> None:
    server = start_sync_server()
    results: queue.Queue[str] = queue.Queue()

    def client(i: int) -> None:
        with wsend.sync.connect(uri(server)) as ws:
            ws.send(f"client {i}")
            results.put(ws.recv(timeout=10))

    threads = [in_thread(client, i) for i in range(20)]
    for thread in threads:
        thread.join(10)
    assert sorted(results.get() for _ in range(20)) == sorted(f"client {i}" for i in range(20))


def test_http_over_tls_and_lingering(start_sync_server: StartServer, certs: object) -> None:
    import ssl

    server = start_sync_server(ssl=certs.server_context)  # type: ignore[attr-defined]
    context: ssl.SSLContext = certs.client_context  # type: ignore[attr-defined]
    with (
        socket.create_connection(("127.0.0.1", server.port), timeout=5) as raw,
        context.wrap_socket(raw, server_hostname="localhost") as sock,
    ):
        # What follows the request is read and dropped while the answer is delivered.
        sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n" + b"trailing junk" * 100)
        head = read_head(sock)
        assert head.startswith(b"HTTP/1.1 200")
        assert sock.recv(3) == b"OK\n"


def test_hooks_cannot_send_before_the_upgrade(start_sync_server: StartServer) -> None:
    def too_early(ws: wsend.sync.ServerConnection, request: Request) -> None:
        ws.send("hello")

    server = start_sync_server(process_request=too_early)
    with pytest.raises(InvalidStatus) as info:
        wsend.sync.connect(uri(server)).open()
    assert info.value.status_code == 500


def test_declined_deflate_offer_then_accepted_one(start_sync_server: StartServer) -> None:
    server = start_sync_server()
    offers = "permessage-deflate; server_max_window_bits=7, permessage-deflate"
    with socket.create_connection(("127.0.0.1", server.port), timeout=5) as sock:
        sock.sendall(upgrade_request(headers={"Sec-WebSocket-Extensions": offers}))
        head = read_head(sock).decode()
    assert "101" in head.splitlines()[0]
    assert "Sec-WebSocket-Extensions: permessage-deflate" in head


def test_allowed_hosts(start_sync_server: StartServer) -> None:
    server = start_sync_server(echo, allowed_hosts=["localhost", "127.0.0.1"])
    with wsend.sync.connect(uri(server)) as ws:  # Host: 127.0.0.1:port
        ws.send("allowed")
        assert ws.recv(timeout=5) == "allowed"
    with pytest.raises(InvalidStatus) as caught:
        wsend.sync.connect(uri(server), headers={"Host": "evil.example"}).open()
    assert caught.value.status_code == 421
    key = b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n"
    upgrade = b"GET / HTTP/1.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n" + key
    status, _, _ = http_request(server.port, upgrade + b"Host: evil.example\r\n\r\n")
    assert " 421 " in status
    status, _, _ = http_request(server.port, upgrade + b"\r\n")  # no Host at all
    assert " 400 " in status
    status, _, _ = http_request(server.port, b"GET / HTTP/1.1\r\nHost: evil.example\r\n\r\n")
    assert " 421 " in status  # plain HTTP requests too
