"""wsend.proxy_socket.open_proxy_socket: blocking tunnels through real proxies (pproxy,
tinyproxy, microsocks), then a WebSocket handshake with a wsend server through them."""

from __future__ import annotations

import asyncio
import socket
import ssl
from collections.abc import Iterator

import pytest

import wsend
from wsend.protocol import handshake
from wsend.protocol.http import ResponseParser
from wsend.protocol.proxy import parse_proxy
from wsend.proxy_socket import open_proxy_socket

from .proxy_server import MicroSocks, ProxyServer, TinyProxy, closed_port

pytestmark = pytest.mark.timeout(30)


@pytest.fixture(scope="module")
def proxy() -> Iterator[ProxyServer]:
    server = ProxyServer("http+socks4+socks5")
    yield server
    server.stop()


def blocking_handshake(sock: socket.socket, host: str, port: int) -> None:
    """Open a WebSocket connection on ``sock`` (blocking), send a text frame, read the echo."""
    key = handshake.generate_key()
    request = handshake.build_request(host=host, port=port, secure=False, resource="/", key=key)
    sock.sendall(request.serialize())
    parser = ResponseParser()
    response = None
    while response is None:
        response = parser.feed(sock.recv(4096))
    handshake.check_response(response, key=key, subprotocols=[])
    sock.sendall(b"\x81\x82abcd" + bytes(a ^ b for a, b in zip(b"hi", b"ab", strict=True)))
    assert (parser.leftover + sock.recv(16))[:4] == b"\x81\x02hi"


@pytest.mark.parametrize("scheme", ["http", "socks5", "socks5h", "socks4"])
async def test_ws_through_blocking_tunnel(proxy, start_server, scheme):
    server = await start_server()
    url = proxy.url.replace("http", scheme)
    sock = await asyncio.to_thread(open_proxy_socket, url, "127.0.0.1", server.port, timeout=5)
    with sock:
        assert sock.gettimeout() == 5
        await asyncio.to_thread(blocking_handshake, sock, "127.0.0.1", server.port)
    assert f"127.0.0.1:{server.port}" in proxy.tunnels()


async def test_asyncio_client_on_a_blocking_tunnel(proxy, start_server, certs):
    server = await start_server(ssl=certs.server_context)
    sock = await asyncio.to_thread(
        open_proxy_socket, parse_proxy(proxy.url), "127.0.0.1", server.port
    )
    uri = f"wss://127.0.0.1:{server.port}/"
    async with wsend.connect(uri, sock=sock, ssl=certs.client_context) as ws:
        await ws.send("tunnelled")
        assert await ws.recv() == "tunnelled"


async def test_https_proxy(start_server, certs):
    server = await start_server()
    tls_proxy = ProxyServer("http", certfile=certs.certfile, keyfile=certs.keyfile)
    try:
        sock = await asyncio.to_thread(
            open_proxy_socket,
            tls_proxy.url,
            "127.0.0.1",
            server.port,
            proxy_ssl=certs.client_context,
        )
        with sock:
            assert isinstance(sock, ssl.SSLSocket)
            await asyncio.to_thread(blocking_handshake, sock, "127.0.0.1", server.port)
        with pytest.raises(wsend.ProxyConnectionError) as info:
            await asyncio.to_thread(open_proxy_socket, tls_proxy.url, "127.0.0.1", server.port)
        assert isinstance(info.value.__cause__, ssl.SSLCertVerificationError)
    finally:
        tls_proxy.stop()


async def test_errors(start_server):
    server = await start_server()
    tinyproxy = TinyProxy(auth=("alice", "secret"))
    socks = MicroSocks(auth=("alice", "secret"))
    try:
        with pytest.raises(wsend.ProxyAuthenticationRequired) as info:
            await asyncio.to_thread(open_proxy_socket, tinyproxy.url, "127.0.0.1", server.port)
        assert info.value.status_code == 407
        good = socks.url.replace("//", "//alice:secret@")
        with pytest.raises(wsend.ProxyRefused) as refused:
            await asyncio.to_thread(open_proxy_socket, good, "127.0.0.1", closed_port())
        assert refused.value.reply == 5
        bad = socks.url.replace("//", "//alice:wrong@")
        with pytest.raises(wsend.ProxyAuthenticationRequired):
            await asyncio.to_thread(open_proxy_socket, bad, "127.0.0.1", server.port)
    finally:
        tinyproxy.stop()
        socks.stop()
    for url in (f"http://127.0.0.1:{closed_port()}", f"socks5://127.0.0.1:{closed_port()}"):
        with pytest.raises(wsend.ProxyConnectionError):
            await asyncio.to_thread(open_proxy_socket, url, "127.0.0.1", server.port)


async def test_proxy_hanging_up(proxy):
    with pytest.raises(wsend.InvalidProxyMessage, match="without answering"):
        await asyncio.to_thread(open_proxy_socket, proxy.url, "127.0.0.1", closed_port())


async def test_timeout():
    listener = socket.create_server(("127.0.0.1", 0))
    with listener:
        port = listener.getsockname()[1]
        with pytest.raises(wsend.OpenTimeout):
            await asyncio.to_thread(
                open_proxy_socket, f"http://127.0.0.1:{port}", "ws.example", 80, timeout=0.2
            )


def test_socks_needs_python_socks(monkeypatch):
    monkeypatch.setitem(__import__("sys").modules, "python_socks", None)
    with pytest.raises(wsend.UsageError, match="wsend\\[socks\\]"):
        open_proxy_socket("socks5://127.0.0.1:1", "ws.example", 80)


def test_invalid_proxy():
    with pytest.raises(wsend.InvalidProxy):
        open_proxy_socket("gopher://proxy", "ws.example", 80)


async def answering(answer: bytes) -> asyncio.Server:
    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            await reader.readuntil(b"\r\n\r\n")
        except asyncio.IncompleteReadError:
            pass
        else:
            writer.write(answer)
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
async def test_invalid_answers(answer, message):
    listener = await answering(answer)
    port = listener.sockets[0].getsockname()[1]
    async with listener:
        with pytest.raises(wsend.InvalidProxyMessage, match=message):
            await asyncio.to_thread(
                open_proxy_socket, f"http://127.0.0.1:{port}", "ws.example", 80, timeout=5
            )


async def test_socks_timeout():
    listener = await answering(b"")  # never answers the SOCKS greeting
    port = listener.sockets[0].getsockname()[1]
    async with listener:
        with pytest.raises(wsend.OpenTimeout):
            await asyncio.to_thread(
                open_proxy_socket, f"socks5://127.0.0.1:{port}", "ws.example", 80, timeout=0.2
            )
