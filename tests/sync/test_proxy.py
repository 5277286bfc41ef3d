"""The threading client through real proxies (pproxy, tinyproxy, microsocks): HTTP CONNECT and
SOCKS5 tunnels for ws:// and wss://, the environment's proxy, refusals, and reconnecting while
the server behind the proxy is down."""

from __future__ import annotations

import logging
import ssl
import threading
import time
from collections.abc import Iterator

import pytest

import wsend

from ..conftest import Certs
from ..proxy_server import MicroSocks, ProxyServer, TinyProxy, closed_port
from ..reconnecting import FAST, delays
from .conftest import StartServer
from .helpers import echo, in_thread, uri


@pytest.fixture(scope="module")
def proxy() -> Iterator[ProxyServer]:
    """HTTP CONNECT, SOCKS4 and SOCKS5 on one port, without authentication."""
    server = ProxyServer("http+socks4+socks5")
    yield server
    server.stop()


@pytest.mark.parametrize("scheme", ["http", "socks5", "socks5h"])
def test_ws_through_a_proxy(proxy: ProxyServer, start_sync_server: StartServer, scheme: str):
    server = start_sync_server()
    url = proxy.url.replace("http://", f"{scheme}://")
    with wsend.sync.connect(uri(server), proxy=url) as ws:
        ws.send("through")
        assert ws.recv(timeout=5) == "through"
    assert f"127.0.0.1:{server.port}" in proxy.tunnels()


def test_wss_through_a_proxy(
    proxy: ProxyServer, start_sync_server: StartServer, certs: Certs
) -> None:
    server = start_sync_server(ssl=certs.server_context)
    with wsend.sync.connect(
        uri(server, scheme="wss"), ssl=certs.client_context, proxy=proxy.url
    ) as ws:
        ws.send("x" * 300_000)
        assert ws.recv(timeout=5) == "x" * 300_000


def test_the_environment_names_the_proxy(
    proxy: ProxyServer, start_sync_server: StartServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    server = start_sync_server()
    monkeypatch.setenv("ws_proxy", proxy.url)
    before = len(proxy.tunnels())
    with wsend.sync.connect(uri(server)) as ws:
        ws.send("env")
        assert ws.recv(timeout=5) == "env"
    assert len(proxy.tunnels()) == before + 1
    with wsend.sync.connect(uri(server), proxy=None) as ws:  # direct
        ws.send("direct")
        assert ws.recv(timeout=5) == "direct"
    assert len(proxy.tunnels()) == before + 1


def echo_from_threads(ws: wsend.sync.ClientConnection, count: int) -> None:
    """Send ``count`` messages from each of four threads at once to an echo server; check that
    each thread's messages come back in order."""
    threads = [
        threading.Thread(target=lambda i=i: [ws.send(f"{i}:{n}") for n in range(count)])
        for i in range(4)
    ]
    for thread in threads:
        thread.start()
    received = [ws.recv(timeout=10) for _ in range(4 * count)]
    for thread in threads:
        thread.join(10)
    for i in range(4):
        assert [m for m in received if m.startswith(f"{i}:")] == [f"{i}:{n}" for n in range(count)]


@pytest.fixture(scope="module")
def tls_proxy(certs: Certs) -> Iterator[ProxyServer]:
    """An HTTPS proxy: HTTP CONNECT over TLS, with the test CA's certificate."""
    server = ProxyServer("http", certfile=certs.certfile, keyfile=certs.keyfile)
    yield server
    server.stop()


def test_ws_through_an_https_proxy(
    tls_proxy: ProxyServer, start_sync_server: StartServer, certs: Certs
) -> None:
    server = start_sync_server()
    with wsend.sync.connect(uri(server), proxy=tls_proxy.url, proxy_ssl=certs.client_context) as ws:
        ws.send("through TLS")
        assert ws.recv(timeout=5) == "through TLS"
        ws.send(b"\x00" * 1_000_000)  # many TLS records each way
        assert ws.recv(timeout=5) == b"\x00" * 1_000_000
    assert f"127.0.0.1:{server.port}" in tls_proxy.tunnels()


def test_wss_through_an_https_proxy_from_threads(
    tls_proxy: ProxyServer, start_sync_server: StartServer, certs: Certs
) -> None:
    """TLS inside TLS: the server's certificate is checked through the tunnel, and threads
    that send while the reader thread decrypts share both sessions safely."""
    server = start_sync_server(ssl=certs.server_context)
    with wsend.sync.connect(
        uri(server, scheme="wss"),
        ssl=certs.client_context,
        proxy=tls_proxy.url,
        proxy_ssl=certs.client_context,
    ) as ws:
        ws.send("y" * 300_000)
        assert ws.recv(timeout=5) == "y" * 300_000
        echo_from_threads(ws, 200)
        assert ws.ping(timeout=5) >= 0  # the latency
    assert ws.close_code == 1000
    assert f"127.0.0.1:{server.port}" in tls_proxy.tunnels()


def test_https_proxy_certificates_are_verified(
    tls_proxy: ProxyServer, start_sync_server: StartServer, certs: Certs
) -> None:
    plain = start_sync_server()
    with pytest.raises(wsend.ProxyConnectionError) as info:
        wsend.sync.connect(uri(plain), proxy=tls_proxy.url).open()  # the system's CAs
    assert isinstance(info.value.__cause__, ssl.SSLCertVerificationError)
    assert "TLS handshake with proxy https://127.0.0.1" in str(info.value)
    secure = start_sync_server(ssl=certs.server_context)
    for _ in range(2):  # the failure leaves nothing behind that breaks the next attempt
        with pytest.raises(ssl.SSLCertVerificationError):
            wsend.sync.connect(
                uri(secure, scheme="wss"), proxy=tls_proxy.url, proxy_ssl=certs.client_context
            ).open()
    with wsend.sync.connect(
        uri(secure, scheme="wss"),
        ssl=certs.client_context,
        proxy=tls_proxy.url,
        proxy_ssl=certs.client_context,
    ) as ws:
        ws.send("verified")
        assert ws.recv(timeout=5) == "verified"


def test_invalid_proxy_urls_are_refused(start_sync_server: StartServer) -> None:
    server = start_sync_server()
    with pytest.raises(wsend.InvalidProxy):
        wsend.sync.connect(uri(server), proxy="ftp://127.0.0.1:1")


def test_proxy_refusals() -> None:
    tinyproxy = TinyProxy(connect_ports=(443,))
    try:
        with pytest.raises(wsend.ProxyRefused) as info:
            wsend.sync.connect(f"ws://127.0.0.1:{closed_port()}/", proxy=tinyproxy.url).open()
        assert info.value.status_code == 403
    finally:
        tinyproxy.stop()
    with pytest.raises(wsend.ProxyConnectionError):
        wsend.sync.connect("ws://127.0.0.1:1/", proxy=f"http://127.0.0.1:{closed_port()}").open()


@pytest.mark.parametrize("kind", ["tinyproxy", "microsocks"])
def test_server_down_behind_a_proxy(kind: str, retries: list[logging.LogRecord]) -> None:
    """The proxy refuses the tunnel while the server is down (tinyproxy: 500, microsocks:
    reply 5): the loop retries until the server is up."""
    proxy = TinyProxy() if kind == "tinyproxy" else MicroSocks()
    port = closed_port()
    servers: list[wsend.sync.Server] = []

    def start_later() -> None:
        end = time.monotonic() + 30
        while len(delays(retries)) < 2 and time.monotonic() < end:
            time.sleep(0.01)
        server = wsend.sync.serve(echo, "127.0.0.1", port)
        servers.append(server)
        server.serve_forever()

    starter = in_thread(start_later)
    try:
        for ws in wsend.sync.connect(f"ws://127.0.0.1:{port}/", proxy=proxy.url, backoff=FAST):
            ws.send("through the proxy")
            assert ws.recv(timeout=5) == "through the proxy"
            break
    finally:
        for server in servers:
            server.shutdown(timeout=5)
        starter.join(30)
        proxy.stop()
    failed = [r.getMessage() for r in retries if "failed" in r.getMessage()]
    assert len(failed) >= 2
    assert all("ProxyRefused" in message for message in failed)


def test_threads_share_a_proxied_connection(
    proxy: ProxyServer, start_sync_server: StartServer
) -> None:
    server = start_sync_server()
    with wsend.sync.connect(uri(server), proxy=proxy.url.replace("http", "socks5")) as ws:
        echo_from_threads(ws, 100)
