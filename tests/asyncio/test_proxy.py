"""wsend.connect through real proxies (pproxy processes on loopback): HTTP CONNECT with and
without Basic auth, HTTPS proxies (TLS inside TLS for wss://), SOCKS4/4a/5/5h, the
environment variables, and the errors of proxies that can't be reached or refuse."""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import Iterator

import pytest

import wsend
from wsend.asyncio import transports

from ..proxy_server import MicroSocks, ProxyServer, TinyProxy, closed_port
from .helpers import ws_uri

pytestmark = pytest.mark.timeout(30)

USER, PASSWORD = "alice", "s3cr:t@/"
#: The credentials as they appear in a URL, percent-encoded.
USERINFO = "alice:s3cr%3At%40%2F"


@pytest.fixture(scope="module")
def proxy() -> Iterator[ProxyServer]:
    """HTTP CONNECT, SOCKS4 and SOCKS5 on one port, without authentication."""
    server = ProxyServer("http+socks4+socks5")
    yield server
    server.stop()


@pytest.fixture(scope="module")
def auth_proxy() -> Iterator[ProxyServer]:
    """HTTP CONNECT and SOCKS5, requiring user ``alice``, password ``s3cr:t@/``."""
    server = ProxyServer("http+socks5", auth=f"{USER}:{PASSWORD}")
    yield server
    server.stop()


@pytest.fixture(scope="module")
def tls_proxy(certs) -> Iterator[ProxyServer]:
    """An HTTPS proxy: HTTP CONNECT over TLS, with the test CA's certificate."""
    server = ProxyServer("http", certfile=certs.certfile, keyfile=certs.keyfile)
    yield server
    server.stop()


@pytest.fixture(scope="module")
def socks_auth() -> Iterator[MicroSocks]:
    """A SOCKS5 server requiring username/password authentication (RFC 1929)."""
    server = MicroSocks(auth=(USER, PASSWORD))
    yield server
    server.stop()


@pytest.fixture(params=["asyncio", "aiofastnet"])
def fast(request: pytest.FixtureRequest) -> bool:
    """Run on asyncio's transports and on aiofastnet's."""
    if request.param == "aiofastnet" and not transports.fast_transport_available():
        pytest.skip("aiofastnet is not installed")
    return request.param == "aiofastnet"


@pytest.fixture
async def seen(start_server) -> tuple[list[wsend.Request], wsend.Server]:
    """A plain echo server that records the requests it receives."""
    requests: list[wsend.Request] = []

    async def handler(ws: wsend.ServerConnection) -> None:
        assert ws.request is not None
        requests.append(ws.request)
        async for message in ws:
            await ws.send(message)

    return requests, await start_server(handler)


async def echo_once(ws: wsend.ClientConnection, message: str = "through") -> None:
    await ws.send(message)
    assert await ws.recv() == message


# HTTP CONNECT


async def test_ws_through_http_proxy(proxy, seen, fast):
    requests, server = seen
    async with wsend.connect(ws_uri(server), proxy=proxy.url, fast_transport=fast) as ws:
        await echo_once(ws)
    assert f"127.0.0.1:{server.port}" in proxy.tunnels()
    assert requests[0].headers["Host"] == f"127.0.0.1:{server.port}"
    assert "Proxy-Authorization" not in requests[0].headers


async def test_wss_through_http_proxy(proxy, start_server, certs, fast):
    server = await start_server(ssl=certs.server_context)
    async with wsend.connect(
        ws_uri(server, scheme="wss"), ssl=certs.client_context, proxy=proxy.url, fast_transport=fast
    ) as ws:
        assert ws.transport.get_extra_info("ssl_object") is not None
        await echo_once(ws, "x" * 300_000)
    assert f"127.0.0.1:{server.port}" in proxy.tunnels()


async def test_basic_auth_goes_to_the_proxy_only(auth_proxy, seen):
    requests, server = seen
    url = auth_proxy.url.replace("http://", f"http://{USERINFO}@")
    async with wsend.connect(ws_uri(server), proxy=url) as ws:
        await echo_once(ws)
    assert f"127.0.0.1:{server.port}" in auth_proxy.tunnels()
    headers = requests[0].headers
    assert "Proxy-Authorization" not in headers
    assert "Authorization" not in headers
    assert "s3cr" not in str(headers)


async def test_proxy_credentials_and_server_credentials_stay_apart(auth_proxy, seen):
    requests, server = seen
    url = auth_proxy.url.replace("http://", f"http://{USERINFO}@")
    uri = f"ws://bob:builder@127.0.0.1:{server.port}/"
    async with wsend.connect(uri, proxy=url) as ws:
        await echo_once(ws)
    assert wsend.protocol.handshake.parse_basic_auth(requests[0].headers["Authorization"]) == (
        "bob",
        "builder",
    )
    assert "Proxy-Authorization" not in requests[0].headers


async def test_missing_credentials_get_407(auth_proxy, seen):
    _, server = seen
    with pytest.raises(wsend.ProxyAuthenticationRequired) as info:
        await wsend.connect(ws_uri(server), proxy=auth_proxy.url)
    error = info.value
    assert isinstance(error, wsend.ProxyRefused)
    assert isinstance(error, wsend.InvalidHandshake)
    assert error.status_code == 407
    assert error.headers is not None
    assert error.headers["Proxy-Authenticate"].startswith("Basic")


async def test_tinyproxy_credentials(seen):
    _, server = seen
    tinyproxy = TinyProxy(auth=(USER, "right"))
    try:
        url = tinyproxy.url.replace("http://", "http://alice:wrong@")
        with pytest.raises(wsend.ProxyAuthenticationRequired) as info:
            await wsend.connect(ws_uri(server), proxy=url)
        assert info.value.status_code == 401  # tinyproxy's answer to wrong credentials
        assert "wrong" not in str(info.value)
        with pytest.raises(wsend.ProxyAuthenticationRequired) as info:
            await wsend.connect(ws_uri(server), proxy=tinyproxy.url)
        assert info.value.status_code == 407
        # The same proxy with the right password opens the tunnel.
        url = tinyproxy.url.replace("http://", "http://alice:right@")
        async with wsend.connect(ws_uri(server), proxy=url) as ws:
            await echo_once(ws)
    finally:
        tinyproxy.stop()


async def test_proxy_headers_go_to_the_proxy(auth_proxy, seen):
    requests, server = seen
    token = wsend.protocol.handshake.build_basic_auth(USER, PASSWORD)
    headers = {"Proxy-Authorization": token}
    async with wsend.connect(ws_uri(server), proxy=auth_proxy.url, proxy_headers=headers) as ws:
        await echo_once(ws)
    assert "Proxy-Authorization" not in requests[0].headers


async def test_connect_refused_by_the_proxy_rules(seen):
    _, server = seen
    tinyproxy = TinyProxy(connect_ports=(443,))
    try:
        with pytest.raises(wsend.ProxyRefused) as info:
            await wsend.connect(ws_uri(server), proxy=tinyproxy.url)
    finally:
        tinyproxy.stop()
    assert info.value.status_code == 403
    assert not isinstance(info.value, wsend.ProxyAuthenticationRequired)
    assert f"refused the tunnel to 127.0.0.1:{server.port}: HTTP 403" in str(info.value)


async def test_proxy_cannot_reach_the_server():
    tinyproxy = TinyProxy()
    try:
        with pytest.raises(wsend.ProxyRefused) as info:
            await wsend.connect(f"ws://127.0.0.1:{closed_port()}/", proxy=tinyproxy.url)
    finally:
        tinyproxy.stop()
    assert info.value.status_code == 500


async def test_proxy_hanging_up_without_answer(proxy):
    # pproxy closes the connection when it can't reach the server.
    with pytest.raises(wsend.InvalidProxyMessage, match="closed the connection"):
        await wsend.connect(f"ws://127.0.0.1:{closed_port()}/", proxy=proxy.url)


async def test_unreachable_http_proxy(seen):
    _, server = seen
    port = closed_port()
    with pytest.raises(wsend.ProxyConnectionError) as info:
        await wsend.connect(ws_uri(server), proxy=f"http://127.0.0.1:{port}")
    assert isinstance(info.value, OSError)
    assert isinstance(info.value.__cause__, ConnectionRefusedError)
    assert f"cannot connect to proxy http://127.0.0.1:{port}" in str(info.value)


async def test_open_timeout_covers_the_proxy(start_server):
    # A "proxy" that accepts the connection and never answers.
    async def silent(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.read()
        writer.close()

    listener = await asyncio.start_server(silent, "127.0.0.1", 0)
    port = listener.sockets[0].getsockname()[1]
    async with listener:
        with pytest.raises(wsend.OpenTimeout):
            await wsend.connect(
                "ws://127.0.0.1:9/", proxy=f"http://127.0.0.1:{port}", open_timeout=0.3
            )


async def test_redirect_through_the_proxy(proxy, seen, start_server):
    _, target = seen

    def redirect(ws: wsend.ServerConnection, request: wsend.Request) -> wsend.Response:
        return wsend.Response(302, wsend.Headers([("Location", ws_uri(target))]))

    first = await start_server(process_request=redirect)
    async with wsend.connect(ws_uri(first), proxy=proxy.url) as ws:
        await echo_once(ws)
    tunnels = proxy.tunnels()
    assert f"127.0.0.1:{first.port}" in tunnels
    assert f"127.0.0.1:{target.port}" in tunnels


# HTTPS proxies: TLS to the proxy, then TLS to the server inside it for wss://


async def test_ws_through_https_proxy(tls_proxy, seen, certs, fast):
    _, server = seen
    async with wsend.connect(
        ws_uri(server), proxy=tls_proxy.url, proxy_ssl=certs.client_context, fast_transport=fast
    ) as ws:
        assert ws.transport.get_extra_info("ssl_object") is not None  # the proxy's TLS
        await echo_once(ws)
    assert f"127.0.0.1:{server.port}" in tls_proxy.tunnels()


async def test_wss_through_https_proxy(tls_proxy, start_server, certs, fast):
    server = await start_server(ssl=certs.server_context)
    async with wsend.connect(
        ws_uri(server, scheme="wss"),
        ssl=certs.client_context,
        proxy=tls_proxy.url,
        proxy_ssl=certs.client_context,
        fast_transport=fast,
    ) as ws:
        await echo_once(ws, "y" * 300_000)
        peer = ws.transport.get_extra_info("peercert")
        assert ("DNS", "localhost") in peer["subjectAltName"]
    assert f"127.0.0.1:{server.port}" in tls_proxy.tunnels()


async def test_https_proxy_certificate_is_verified(tls_proxy, seen):
    _, server = seen
    with pytest.raises(wsend.ProxyConnectionError) as info:
        await wsend.connect(ws_uri(server), proxy=tls_proxy.url)
    assert isinstance(info.value.__cause__, ssl.SSLCertVerificationError)
    assert "TLS handshake with proxy https://127.0.0.1" in str(info.value)


async def test_server_certificate_is_verified_through_https_proxy(
    tls_proxy, start_server, certs, fast
):
    server = await start_server(ssl=certs.server_context)
    for _ in range(2):  # the failure leaves nothing behind that breaks the next attempt
        with pytest.raises(ssl.SSLCertVerificationError):
            await wsend.connect(
                ws_uri(server, scheme="wss"),
                proxy=tls_proxy.url,
                proxy_ssl=certs.client_context,
                fast_transport=fast,
            )
    async with wsend.connect(
        ws_uri(server, scheme="wss"),
        ssl=certs.client_context,
        proxy=tls_proxy.url,
        proxy_ssl=certs.client_context,
        fast_transport=fast,
    ) as ws:
        await echo_once(ws)


# SOCKS


@pytest.mark.parametrize("scheme", ["socks5", "socks4"])
async def test_ws_through_socks_resolving_locally(proxy, seen, scheme, fast):
    requests, server = seen
    url = proxy.url.replace("http", scheme)
    async with wsend.connect(
        f"ws://localhost:{server.port}/", proxy=url, fast_transport=fast
    ) as ws:
        await echo_once(ws)
    # The client resolved "localhost" and asked the proxy for the address.
    assert proxy.tunnels()[-1] == f"127.0.0.1:{server.port}"
    assert requests[0].headers["Host"] == f"localhost:{server.port}"


async def test_socks5h_resolves_on_the_proxy(proxy, seen, fast):
    _, server = seen
    url = proxy.url.replace("http", "socks5h")
    async with wsend.connect(
        f"ws://localhost:{server.port}/", proxy=url, fast_transport=fast
    ) as ws:
        await echo_once(ws)
    # The proxy received the name: the DNS lookup happened there.
    assert proxy.tunnels()[-1] == f"localhost:{server.port}"


async def test_wss_through_socks5h(proxy, start_server, certs, fast):
    server = await start_server(ssl=certs.server_context)
    url = proxy.url.replace("http", "socks5h")
    async with wsend.connect(
        f"wss://localhost:{server.port}/", ssl=certs.client_context, proxy=url, fast_transport=fast
    ) as ws:
        await echo_once(ws, "z" * 100_000)


async def test_socks5_authentication(socks_auth, seen):
    _, server = seen
    url = socks_auth.url.replace("socks5://", f"socks5://{USERINFO}@")
    async with wsend.connect(ws_uri(server), proxy=url) as ws:
        await echo_once(ws)


async def test_socks5_wrong_password(socks_auth, seen):
    _, server = seen
    url = socks_auth.url.replace("socks5://", "socks5://alice:wrong@")
    with pytest.raises(wsend.ProxyAuthenticationRequired) as info:
        await wsend.connect(ws_uri(server), proxy=url)
    assert info.value.status_code is None
    assert "wrong" not in str(info.value)


async def test_socks5_missing_credentials(socks_auth, seen):
    _, server = seen
    with pytest.raises(wsend.ProxyAuthenticationRequired):
        await wsend.connect(ws_uri(server), proxy=socks_auth.url)


async def test_socks5_reply_code(socks_auth):
    url = socks_auth.url.replace("socks5://", f"socks5://{USERINFO}@")
    with pytest.raises(wsend.ProxyRefused) as info:
        await wsend.connect(f"ws://127.0.0.1:{closed_port()}/", proxy=url)
    assert info.value.reply == 5  # connection refused (RFC 1928 section 6)
    assert info.value.status_code is None


async def test_unreachable_socks_proxy(seen):
    _, server = seen
    with pytest.raises(wsend.ProxyConnectionError) as info:
        await wsend.connect(ws_uri(server), proxy=f"socks5://127.0.0.1:{closed_port()}")
    assert isinstance(info.value, OSError)


async def test_socks_proxy_hanging_up(seen):
    # pproxy closes the connection when authentication fails instead of answering.
    _, server = seen
    auth_proxy = ProxyServer("socks5", auth="alice:other")
    try:
        url = auth_proxy.url.replace("http://", "socks5://alice:any@")
        with pytest.raises(wsend.InvalidProxyMessage):
            await wsend.connect(ws_uri(server), proxy=url)
    finally:
        auth_proxy.stop()


async def test_socks_needs_python_socks(proxy, seen, monkeypatch):
    _, server = seen
    monkeypatch.setitem(__import__("sys").modules, "python_socks", None)
    with pytest.raises(wsend.UsageError, match=r"pip install 'wsend\[socks\]'"):
        await wsend.connect(ws_uri(server), proxy=proxy.url.replace("http", "socks5"))


# Proxies that break the protocol (raw servers on loopback)


async def raw_proxy(answer: bytes, *, close: bool = False) -> asyncio.Server:
    """A "proxy" that reads the CONNECT request, writes ``answer`` and keeps the connection
    open (or closes it)."""

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        writer.write(answer)
        if close:
            writer.close()
            return
        await reader.read()
        writer.close()

    return await asyncio.start_server(handle, "127.0.0.1", 0)


@pytest.mark.parametrize(
    ("answer", "message"),
    [
        (b"SSH-2.0-OpenSSH_9.2\r\n\r\n", "invalid answer to CONNECT"),
        (b"HTTP/1.1 200 OK\r\n\r\nearly", "sent data before the tunnel was used"),
    ],
)
async def test_invalid_answers(answer, message, fast):
    listener = await raw_proxy(answer)
    port = listener.sockets[0].getsockname()[1]
    async with listener:
        with pytest.raises(wsend.InvalidProxyMessage, match=message):
            await wsend.connect(
                "ws://ws.example/", proxy=f"http://127.0.0.1:{port}", fast_transport=fast
            )


async def test_tunnel_closed_after_200():
    listener = await raw_proxy(b"HTTP/1.1 200 OK\r\n\r\n", close=True)
    port = listener.sockets[0].getsockname()[1]
    async with listener:
        with pytest.raises(wsend.InvalidHandshake):
            await wsend.connect("ws://ws.example/", proxy=f"http://127.0.0.1:{port}")


async def test_answer_in_pieces_and_http_1_0(start_server):
    """A proxy answering HTTP/1.0 one byte at a time, then relaying to a real server."""
    server = await start_server()

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        head = await reader.readuntil(b"\r\n\r\n")
        assert head.startswith(f"CONNECT 127.0.0.1:{server.port} HTTP/1.1\r\n".encode())
        for byte in b"HTTP/1.0 200 Connection established\r\nProxy-Agent: raw\r\n\r\n":
            writer.write(bytes([byte]))
            await writer.drain()
            await asyncio.sleep(0)
        up_reader, up_writer = await asyncio.open_connection("127.0.0.1", server.port)

        async def pipe(src: asyncio.StreamReader, dst: asyncio.StreamWriter) -> None:
            while data := await src.read(65536):
                dst.write(data)
            dst.close()

        await asyncio.gather(pipe(reader, up_writer), pipe(up_reader, writer))

    listener = await asyncio.start_server(handle, "127.0.0.1", 0)
    port = listener.sockets[0].getsockname()[1]
    async with listener, wsend.connect(ws_uri(server), proxy=f"http://127.0.0.1:{port}") as ws:
        await echo_once(ws)
