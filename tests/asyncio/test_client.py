"""The asyncio client: URIs, the opening handshake, redirects, failures."""

from __future__ import annotations

import asyncio
import contextlib
import socket
from collections.abc import AsyncIterator, Callable

import pytest

import wsend
from wsend import (
    InvalidHandshake,
    InvalidMessage,
    InvalidStatus,
    InvalidURI,
    NegotiationError,
    OpenTimeout,
    Response,
    TooManyRedirects,
)
from wsend.asyncio.client import parse_uri

from .helpers import accept_key, parse_head, read_head, ws_uri

pytestmark = pytest.mark.timeout(20)


# -- URIs and arguments ----------------------------------------------------------------------


@pytest.mark.parametrize(
    "uri",
    [
        "http://localhost/",
        "localhost:8080",
        "ws://",
        "ws:///path",
        "ws://localhost/#fragment",
        "ws://localhost:99999/",
        "ws://localhost:port/",
        "ws://user@localhost/",
    ],
)
def test_invalid_uri(uri):
    with pytest.raises(InvalidURI) as info:
        wsend.connect(uri)
    assert info.value.uri == uri
    assert isinstance(info.value, ValueError)


@pytest.mark.parametrize(
    ("uri", "expected"),
    [
        ("ws://localhost", (False, "localhost", 80, "/", None, None)),
        ("wss://localhost", (True, "localhost", 443, "/", None, None)),
        ("ws://h:8/a/b?c=d", (False, "h", 8, "/a/b?c=d", None, None)),
        ("ws://[::1]:9/", (False, "::1", 9, "/", None, None)),
        ("ws://us%40er:p%3Ass@h/", (False, "h", 80, "/", "us@er", "p:ss")),
    ],
)
def test_parse_uri(uri, expected):
    parsed = parse_uri(uri)
    assert (
        parsed.secure,
        parsed.host,
        parsed.port,
        parsed.resource,
        parsed.user,
        parsed.password,
    ) == expected


def test_argument_errors():
    with pytest.raises(ValueError, match="wss"):
        wsend.connect("ws://localhost/", ssl=True)
    with pytest.raises(ValueError, match="compression"):
        wsend.connect("ws://localhost/", compression="br")


async def test_connection_refused():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    with pytest.raises(ConnectionRefusedError):
        await wsend.connect(f"ws://127.0.0.1:{port}/")


# -- request contents ------------------------------------------------------------------------


async def test_request_headers(start_server):
    seen = []

    async def handler(ws):
        seen.append(ws.request.headers)

    server = await start_server(handler)
    async with wsend.connect(
        ws_uri(server, "/p?q=1"),
        origin="https://app.example",
        subprotocols=["one", "two"],
        headers={"X-Custom": "yes", "Cookie": "a=b"},
        user_agent="tester/1",
    ) as ws:
        await ws.wait_closed()
    headers = seen[0]
    assert headers["Origin"] == "https://app.example"
    assert headers["Sec-WebSocket-Protocol"] == "one, two"
    assert headers["X-Custom"] == "yes"
    assert headers["Cookie"] == "a=b"
    assert headers["User-Agent"] == "tester/1"
    assert headers["Host"] == f"127.0.0.1:{server.port}"
    assert ws.request.target == "/p?q=1"


async def test_headers_as_pairs_and_no_user_agent(start_server):
    server = await start_server()
    async with wsend.connect(
        ws_uri(server), headers=[("X-A", "1"), ("X-A", "2")], user_agent=None
    ) as ws:
        assert ws.request.headers.get_all("X-A") == ["1", "2"]
        assert "User-Agent" not in ws.request.headers


async def test_no_compression(start_server):
    server = await start_server()
    async with wsend.connect(ws_uri(server), compression=None) as ws:
        assert "Sec-WebSocket-Extensions" not in ws.request.headers
        assert ws.extensions == []
        await ws.send("x" * 1000)
        assert await ws.recv() == "x" * 1000


async def test_custom_client_deflate(start_server):
    from wsend.protocol.deflate import ClientDeflate

    server = await start_server()
    deflate = ClientDeflate(client_no_context_takeover=True, client_max_window_bits=10)
    async with wsend.connect(ws_uri(server), compression=deflate) as ws:
        assert ws.extensions == ["permessage-deflate"]
        for _ in range(3):
            await ws.send("abc" * 1000)
            assert await ws.recv() == "abc" * 1000


async def test_basic_auth_from_uri(start_server):
    server = await start_server(process_request=wsend.basic_auth(credentials={"bob": "p@ss"}))
    uri = f"ws://bob:p%40ss@127.0.0.1:{server.port}/"
    async with wsend.connect(uri) as ws:
        assert ws.request.headers["Authorization"] == "Basic Ym9iOnBAc3M="


async def test_explicit_authorization_wins_over_uri(start_server):
    server = await start_server()
    uri = f"ws://bob:secret@127.0.0.1:{server.port}/"
    async with wsend.connect(uri, headers={"Authorization": "Bearer t"}) as ws:
        assert ws.request.headers["Authorization"] == "Bearer t"


async def test_await_connect(start_server):
    server = await start_server()
    ws = await wsend.connect(ws_uri(server))
    try:
        await ws.send("awaited")
        assert await ws.recv() == "awaited"
    finally:
        await ws.close()


# -- refusals and broken servers -------------------------------------------------------------


@pytest.mark.parametrize("status", [400, 404, 500, 503])
async def test_invalid_status(start_server, status):
    server = await start_server(
        process_request=lambda ws, request: Response.text(status, f"error {status}")
    )
    with pytest.raises(InvalidStatus) as info:
        await wsend.connect(ws_uri(server))
    assert info.value.status_code == status
    assert info.value.body == f"error {status}".encode()
    assert str(status) in str(info.value)


@contextlib.asynccontextmanager
async def fake_server(answer: Callable[[str, dict[str, str]], bytes | None]) -> AsyncIterator[int]:
    """A plain asyncio server answering each request head with ``answer(line, headers)``.

    ``None`` keeps the connection open without answering.
    """
    writers: list[asyncio.StreamWriter] = []

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writers.append(writer)
        with contextlib.suppress(ConnectionError, asyncio.IncompleteReadError):
            line, headers = parse_head(await read_head(reader))
            data = answer(line, headers)
            if data is not None:
                writer.write(data)
                writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    try:
        yield server.sockets[0].getsockname()[1]
    finally:
        for writer in writers:
            writer.transport.abort()
        server.close()
        await server.wait_closed()


def upgrade(headers: dict[str, str], *extra: str) -> bytes:
    lines = [
        "HTTP/1.1 101 Switching Protocols",
        "Upgrade: websocket",
        "Connection: Upgrade",
        f"Sec-WebSocket-Accept: {accept_key(headers['sec-websocket-key'])}",
        *extra,
    ]
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


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
async def test_broken_handshake_responses(answer, error):
    async with fake_server(answer) as port:
        with pytest.raises(error):
            await wsend.connect(f"ws://127.0.0.1:{port}/")


async def test_status_body_read_until_eof():
    async with fake_server(lambda line, h: b"HTTP/1.1 403 Forbidden\r\n\r\nno length") as port:
        with pytest.raises(InvalidStatus) as info:
            await wsend.connect(f"ws://127.0.0.1:{port}/")
    assert info.value.body == b"no length"


async def test_extension_without_offer():
    answer = lambda line, h: upgrade(h, "Sec-WebSocket-Extensions: permessage-deflate")  # noqa: E731
    async with fake_server(answer) as port:
        with pytest.raises(NegotiationError):
            await wsend.connect(f"ws://127.0.0.1:{port}/", compression=None)


async def test_frames_right_after_the_response():
    def answer(line, headers):
        return upgrade(headers) + b"\x81\x05early"

    async with fake_server(answer) as port:
        ws = await wsend.connect(f"ws://127.0.0.1:{port}/", compression=None)
        assert await ws.recv() == "early"
        ws.abort()


async def test_open_timeout():
    async with fake_server(lambda line, headers: None) as port:
        with pytest.raises(OpenTimeout) as info:
            await wsend.connect(f"ws://127.0.0.1:{port}/", open_timeout=0.2)
    assert isinstance(info.value, TimeoutError)


# -- redirects -------------------------------------------------------------------------------


def redirect(status: int, location: str) -> Callable[[str, dict[str, str]], bytes]:
    def answer(line: str, headers: dict[str, str]) -> bytes:
        return (
            f"HTTP/1.1 {status} Redirect\r\nLocation: {location}\r\nContent-Length: 0\r\n\r\n"
        ).encode()

    return answer


@pytest.mark.parametrize("status", [301, 302, 303, 307, 308])
async def test_redirect_to_another_server(start_server, status):
    server = await start_server()
    async with (
        fake_server(redirect(status, ws_uri(server, "/final"))) as port,
        wsend.connect(f"ws://127.0.0.1:{port}/start") as ws,
    ):
        assert ws.request.path == "/final"
        await ws.send("redirected")
        assert await ws.recv() == "redirected"


async def test_redirect_with_http_scheme(start_server):
    server = await start_server()
    location = f"http://127.0.0.1:{server.port}/via-http"
    async with (
        fake_server(redirect(302, location)) as port,
        wsend.connect(f"ws://127.0.0.1:{port}/") as ws,
    ):
        assert ws.request.path == "/via-http"


def redirect_hook(ws, request):
    if request.path == "/old":
        return Response(302, wsend.Headers({"Location": "/new?moved=1"}))
    return None


async def test_relative_redirect_keeps_credentials_on_same_origin(start_server):
    server = await start_server(process_request=redirect_hook)
    headers = {"Authorization": "Bearer secret", "Cookie": "session=1"}
    async with wsend.connect(ws_uri(server, "/old"), headers=headers) as ws:
        assert ws.request.target == "/new?moved=1"
        assert ws.request.headers["Authorization"] == "Bearer secret"
        assert ws.request.headers["Cookie"] == "session=1"


async def test_cross_origin_redirect_drops_credentials(start_server):
    seen = []

    async def handler(ws):
        seen.append(ws.request.headers)

    server = await start_server(handler)
    headers = {"Authorization": "Bearer secret", "Cookie": "session=1", "X-Kept": "1"}
    async with (
        fake_server(redirect(307, ws_uri(server))) as port,
        wsend.connect(f"ws://127.0.0.1:{port}/", headers=headers) as ws,
    ):
        await ws.wait_closed()
    for received in (seen[0], ws.request.headers):
        assert "Authorization" not in received
        assert "Cookie" not in received
        assert received["X-Kept"] == "1"


async def test_uri_credentials_dropped_on_cross_origin_redirect(start_server):
    server = await start_server()
    async with (
        fake_server(redirect(302, ws_uri(server))) as port,
        wsend.connect(f"ws://u:p@127.0.0.1:{port}/") as ws,
    ):
        assert "Authorization" not in ws.request.headers


async def test_redirect_location_with_credentials(start_server):
    server = await start_server()
    location = f"ws://new:pw@127.0.0.1:{server.port}/"
    async with (
        fake_server(redirect(302, location)) as port,
        wsend.connect(f"ws://127.0.0.1:{port}/") as ws,
    ):
        assert ws.request.headers["Authorization"] == "Basic bmV3OnB3"


async def test_too_many_redirects(start_server):
    def loop(ws, request):
        return Response(302, wsend.Headers({"Location": request.target}))

    server = await start_server(process_request=loop)
    with pytest.raises(TooManyRedirects):
        await wsend.connect(ws_uri(server), max_redirects=2)
    with pytest.raises(TooManyRedirects):
        await wsend.connect(ws_uri(server))


async def test_redirect_disabled(start_server):
    server = await start_server(process_request=redirect_hook)
    with pytest.raises(TooManyRedirects):
        await wsend.connect(ws_uri(server, "/old"), max_redirects=0)


async def test_redirect_without_location_is_a_status_error(start_server):
    server = await start_server(process_request=lambda ws, r: Response(302))
    with pytest.raises(InvalidStatus) as info:
        await wsend.connect(ws_uri(server))
    assert info.value.status_code == 302


async def test_redirect_to_invalid_uri(start_server):
    async with fake_server(redirect(302, "ftp://elsewhere/")) as port:
        with pytest.raises(InvalidURI):
            await wsend.connect(f"ws://127.0.0.1:{port}/")
