"""The threading client's opening handshake: requests, refusals, broken servers, redirects,
timeouts, sockets and Unix sockets."""

from __future__ import annotations

import contextlib
import queue
import socket
import threading
from collections.abc import Callable, Iterator

import pytest

import wsend
from wsend import InvalidHandshake, InvalidMessage, InvalidStatus, NegotiationError, OpenTimeout
from wsend.protocol.deflate import ClientDeflate
from wsend.protocol.http import Headers, Response

from ..asyncio.helpers import accept_key, parse_head
from .conftest import StartServer
from .helpers import read_head, uri

Answer = Callable[[str, dict[str, str]], bytes | None]


@contextlib.contextmanager
def fake_server(answer: Answer) -> Iterator[int]:
    """A plain TCP server answering each request head with ``answer(line, headers)``, in a
    thread; ``None`` keeps the connection open without answering."""
    listener = socket.create_server(("127.0.0.1", 0))
    kept: list[socket.socket] = []

    def serve() -> None:
        while True:
            try:
                sock, _ = listener.accept()
            except OSError:
                return
            kept.append(sock)
            with contextlib.suppress(OSError, EOFError):
                line, headers = parse_head(read_head(sock))
                data = answer(line, headers)
                if data is not None:
                    sock.sendall(data)
                    sock.shutdown(socket.SHUT_WR)

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        yield listener.getsockname()[1]
    finally:
        listener.shutdown(socket.SHUT_RDWR)
        listener.close()
        thread.join(5)
        for sock in kept:
            sock.close()


def upgrade(headers: dict[str, str], *extra: str) -> bytes:
    lines = [
        "HTTP/1.1 101 Switching Protocols",
        "Upgrade: websocket",
        "Connection: Upgrade",
        f"Sec-WebSocket-Accept: {accept_key(headers['sec-websocket-key'])}",
        *extra,
    ]
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


def recording(start_sync_server: StartServer, **kwargs: object) -> tuple[wsend.sync.Server, list]:
    """An echo server that records its connections before answering their request."""
    requests: list[wsend.sync.ServerConnection] = []

    def record(ws: wsend.sync.ServerConnection, request: object) -> None:
        requests.append(ws)

    return start_sync_server(process_request=record, **kwargs), requests


def test_argument_errors() -> None:
    with pytest.raises(ValueError, match="only for wss"):
        wsend.sync.connect("ws://localhost/", ssl=True)
    with pytest.raises(ValueError, match="need TLS"):
        wsend.sync.connect("wss://localhost/", ssl=False)
    with pytest.raises(ValueError, match="compression"):
        wsend.sync.connect("ws://localhost/", compression="gzip")
    with pytest.raises(wsend.InvalidURI):
        wsend.sync.connect("http://localhost/")
    import ssl

    context = ssl.create_default_context()
    with (
        socket.socket() as raw,
        context.wrap_socket(raw, server_hostname="x", do_handshake_on_connect=False) as wrapped,
        pytest.raises(ValueError, match="plain socket"),
    ):
        wsend.sync.connect("wss://localhost/", sock=wrapped)


def test_connection_refused() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    with pytest.raises(ConnectionRefusedError):
        wsend.sync.connect(f"ws://127.0.0.1:{port}/").open()


def test_request_headers(start_sync_server: StartServer) -> None:
    server, accepted = recording(start_sync_server, subprotocols=["chat"])
    with wsend.sync.connect(
        uri(server, "/path?q=1"),
        origin="https://example.com",
        subprotocols=["other", "chat"],
        headers={"X-Custom": "yes"},
        user_agent="agent/1",
    ) as ws:
        assert ws.protocol == "chat"
        assert ws.extensions == ["permessage-deflate"]
        ws.send("hi")
        assert ws.recv(timeout=5) == "hi"
        assert ws.request is not None
        assert ws.response is not None
        assert ws.response.status == 101
    request = accepted[0].request
    assert request is not None
    assert request.target == "/path?q=1"
    assert request.headers["Origin"] == "https://example.com"
    assert request.headers["X-Custom"] == "yes"
    assert request.headers["User-Agent"] == "agent/1"
    assert request.headers["Sec-WebSocket-Protocol"] == "other, chat"


def test_headers_as_pairs_and_no_user_agent(start_sync_server: StartServer) -> None:
    server, accepted = recording(start_sync_server)
    with wsend.sync.connect(uri(server), headers=[("X-A", "1"), ("X-A", "2")], user_agent=None):
        pass
    request = accepted[0].request
    assert request is not None
    assert request.headers.get_all("X-A") == ["1", "2"]
    assert "User-Agent" not in request.headers


def test_compression_settings(start_sync_server: StartServer) -> None:
    server, _ = recording(start_sync_server)
    with wsend.sync.connect(uri(server), compression=None) as ws:
        assert ws.extensions == []
    with wsend.sync.connect(
        uri(server), compression=ClientDeflate(client_max_window_bits=10)
    ) as ws:
        assert ws.extensions == ["permessage-deflate"]
        ws.send("z" * 10_000)
        assert ws.recv(timeout=5) == "z" * 10_000


def test_basic_auth_from_uri(start_sync_server: StartServer) -> None:
    server, accepted = recording(start_sync_server)
    with wsend.sync.connect(f"ws://user:p%40ss@127.0.0.1:{server.port}/"):
        pass
    request = accepted[0].request
    assert request is not None
    assert request.headers["Authorization"] == "Basic dXNlcjpwQHNz"


@pytest.mark.parametrize("status", [400, 404, 500, 503])
def test_invalid_status(start_sync_server: StartServer, status: int) -> None:
    server = start_sync_server(
        process_request=lambda ws, request: Response.text(status, f"error {status}")
    )
    with pytest.raises(InvalidStatus) as info:
        wsend.sync.connect(uri(server)).open()
    assert info.value.status_code == status
    assert info.value.body == f"error {status}".encode()


@pytest.mark.parametrize(
    ("answer", "error"),
    [
        (lambda line, h: b"not http at all\r\n\r\n", InvalidMessage),
        (lambda line, h: b"HTTP/1.1 101 Switching", InvalidMessage),
        (lambda line, h: b"", InvalidMessage),
        (lambda line, h: b"HTTP/1.1 403 Forbidden\r\n\r\nno length", InvalidStatus),
        (
            lambda line, h: (
                b"HTTP/1.1 101 OK\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                b"Sec-WebSocket-Accept: wrong\r\n\r\n"
            ),
            InvalidHandshake,
        ),
        (lambda line, h: upgrade(h, "Sec-WebSocket-Extensions: x-other"), NegotiationError),
        (lambda line, h: upgrade(h, "Sec-WebSocket-Protocol: unoffered"), InvalidHandshake),
    ],
    ids=[
        "garbage",
        "truncated",
        "eof",
        "body-until-eof",
        "bad-accept",
        "unknown-extension",
        "unoffered-subprotocol",
    ],
)
def test_broken_handshake_responses(answer: Answer, error: type[Exception]) -> None:
    with fake_server(answer) as port, pytest.raises(error):
        wsend.sync.connect(f"ws://127.0.0.1:{port}/").open()


def test_connection_closed_before_the_response_is_caused_by_eof() -> None:
    with fake_server(lambda line, h: b"") as port, pytest.raises(InvalidMessage) as info:
        wsend.sync.connect(f"ws://127.0.0.1:{port}/").open()
    assert isinstance(info.value.__cause__, EOFError)
    with (
        fake_server(lambda line, h: b"HTTP/1.1 101 Switching") as port,
        pytest.raises(InvalidMessage) as info,
    ):
        wsend.sync.connect(f"ws://127.0.0.1:{port}/").open()
    assert isinstance(info.value.__cause__, EOFError)


def test_status_body_read_until_eof() -> None:
    with (
        fake_server(lambda line, h: b"HTTP/1.1 403 Forbidden\r\n\r\nno length") as port,
        pytest.raises(InvalidStatus) as info,
    ):
        wsend.sync.connect(f"ws://127.0.0.1:{port}/").open()
    assert info.value.body == b"no length"


def test_extension_without_offer() -> None:
    answer: Answer = lambda line, h: upgrade(h, "Sec-WebSocket-Extensions: permessage-deflate")  # noqa: E731
    with fake_server(answer) as port, pytest.raises(NegotiationError):
        wsend.sync.connect(f"ws://127.0.0.1:{port}/", compression=None).open()


def test_frames_right_after_the_response() -> None:
    with fake_server(lambda line, h: upgrade(h) + b"\x81\x05early") as port:
        ws = wsend.sync.connect(f"ws://127.0.0.1:{port}/", compression=None).open()
        assert ws.recv(timeout=5) == "early"
        ws.abort()


def test_open_timeout() -> None:
    with (
        fake_server(lambda line, headers: None) as port,
        pytest.raises(OpenTimeout) as info,
    ):
        wsend.sync.connect(f"ws://127.0.0.1:{port}/", open_timeout=0.2).open()
    assert isinstance(info.value, TimeoutError)


def test_open_timeout_while_connecting() -> None:
    # A listening socket whose backlog is full doesn't complete new connections.
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(0)
        port = listener.getsockname()[1]
        fillers = []
        try:
            for _ in range(8):
                filler = socket.socket()
                filler.setblocking(False)
                with contextlib.suppress(BlockingIOError):
                    filler.connect(("127.0.0.1", port))
                fillers.append(filler)
            with pytest.raises(OpenTimeout):
                wsend.sync.connect(f"ws://127.0.0.1:{port}/", open_timeout=0.2).open()
        finally:
            for filler in fillers:
                filler.close()


def test_deadline_already_passed() -> None:
    with fake_server(lambda line, headers: None) as port, pytest.raises(OpenTimeout):
        wsend.sync.connect(f"ws://127.0.0.1:{port}/", open_timeout=0).open()


# -- redirects ---------------------------------------------------------------------------------


def redirect(status: int, location: str) -> Answer:
    def answer(line: str, headers: dict[str, str]) -> bytes:
        return (
            f"HTTP/1.1 {status} Redirect\r\nLocation: {location}\r\nContent-Length: 0\r\n\r\n"
        ).encode()

    return answer


@pytest.mark.parametrize("status", [301, 302, 303, 307, 308])
def test_redirect_to_another_server(start_sync_server: StartServer, status: int) -> None:
    server, accepted = recording(start_sync_server)
    with (
        fake_server(redirect(status, uri(server, "/target"))) as port,
        wsend.sync.connect(f"ws://127.0.0.1:{port}/start", headers={"Cookie": "a=1"}) as ws,
    ):
        ws.send("redirected")
        assert ws.recv(timeout=5) == "redirected"
    request = accepted[0].request
    assert request is not None
    assert request.target == "/target"
    assert "Cookie" not in request.headers  # another origin: credentials dropped


def test_too_many_redirects() -> None:
    with fake_server(redirect(302, "/again")) as port, pytest.raises(wsend.TooManyRedirects):
        wsend.sync.connect(f"ws://127.0.0.1:{port}/", max_redirects=2).open()


def test_redirect_refused_with_a_socket() -> None:
    with fake_server(redirect(302, "/again")) as port:
        sock = socket.create_connection(("127.0.0.1", port))
        with pytest.raises(InvalidStatus):
            wsend.sync.connect(f"ws://127.0.0.1:{port}/", sock=sock).open()
        assert sock.fileno() == -1


# -- sockets ------------------------------------------------------------------------------------


def test_existing_socket(start_sync_server: StartServer) -> None:
    server, _ = recording(start_sync_server)
    sock = socket.create_connection(("127.0.0.1", server.port))
    with wsend.sync.connect("ws://example.com/", sock=sock) as ws:
        ws.send("over my socket")
        assert ws.recv(timeout=5) == "over my socket"


def test_unix_socket(start_sync_server: StartServer, tmp_path: object) -> None:
    path = f"{tmp_path}/ws.sock"
    server, accepted = recording(start_sync_server, path=path)
    with wsend.sync.connect("ws://localhost/unix", path=path) as ws:
        ws.send("over unix")
        assert ws.recv(timeout=5) == "over unix"
    request = accepted[0].request
    assert request is not None
    assert request.headers["Host"] == "localhost"
    with pytest.raises(RuntimeError, match="not listening on TCP"):
        _ = server.port


def test_unix_socket_missing(tmp_path: object) -> None:
    with pytest.raises(FileNotFoundError):
        wsend.sync.connect("ws://localhost/", path=f"{tmp_path}/none.sock").open()


def test_open_returns_a_connection_the_caller_closes(start_sync_server: StartServer) -> None:
    server, _ = recording(start_sync_server)
    connector = wsend.sync.connect(uri(server))
    ws = connector.open()
    assert connector.connection is ws
    assert ws.is_client
    ws.close()
    assert ws.close_code == 1000
    connector.__exit__(None, None, None)  # closing again does nothing


def test_headers_object(start_sync_server: StartServer) -> None:
    server, accepted = recording(start_sync_server)
    with wsend.sync.connect(uri(server), headers=Headers({"X-H": "v"})):
        pass
    request = accepted[0].request
    assert request is not None
    assert request.headers["X-H"] == "v"


def test_client_fails_fast_on_server_messages_after_close(start_sync_server: StartServer) -> None:
    done: queue.Queue[None] = queue.Queue()

    def handler(ws: wsend.sync.ServerConnection) -> None:
        ws.send("one")
        ws.close(4001, "bye")
        done.put(None)

    server = start_sync_server(handler)
    with wsend.sync.connect(uri(server)) as ws:
        assert ws.recv(timeout=5) == "one"
        with pytest.raises(wsend.ConnectionClosedError) as info:
            ws.recv(timeout=5)
        assert info.value.code == 4001
    done.get(timeout=5)
