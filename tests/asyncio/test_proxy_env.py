"""wsend.connect picks its proxy from the environment by default (a real pproxy on
loopback): which variable wins, no_proxy, and how to opt out."""

from __future__ import annotations

import socket
from collections.abc import Iterator

import pytest

import wsend

from ..proxy_server import ProxyServer
from .helpers import ws_uri

pytestmark = pytest.mark.timeout(30)

PROXY_VARIABLES = ("ws_proxy", "wss_proxy", "http_proxy", "https_proxy", "all_proxy", "no_proxy")


@pytest.fixture(scope="module")
def proxy() -> Iterator[ProxyServer]:
    server = ProxyServer("http+socks5")
    yield server
    server.stop()


@pytest.fixture(scope="module")
def other() -> Iterator[ProxyServer]:
    """A second proxy, to tell which variable was used."""
    server = ProxyServer("http+socks5")
    yield server
    server.stop()


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in PROXY_VARIABLES:
        monkeypatch.delenv(name, raising=False)
        monkeypatch.delenv(name.upper(), raising=False)
    monkeypatch.delenv("REQUEST_METHOD", raising=False)


@pytest.fixture
async def server(start_server) -> wsend.Server:
    return await start_server()


@pytest.fixture
async def tls_server(start_server, certs) -> wsend.Server:
    return await start_server(ssl=certs.server_context)


async def roundtrip(uri: str, **kwargs: object) -> None:
    async with wsend.connect(uri, **kwargs) as ws:
        await ws.send("env")
        assert await ws.recv() == "env"


def through(proxy: ProxyServer, server: wsend.Server) -> bool:
    """Whether ``proxy`` opened a tunnel to ``server``."""
    return f"127.0.0.1:{server.port}" in proxy.tunnels()


@pytest.mark.parametrize("name", ["https_proxy", "HTTPS_PROXY"])
async def test_https_proxy_serves_ws_and_wss(proxy, server, tls_server, certs, monkeypatch, name):
    monkeypatch.setenv(name, proxy.url)
    await roundtrip(ws_uri(server))
    await roundtrip(ws_uri(tls_server, scheme="wss"), ssl=certs.client_context)
    assert through(proxy, server)
    assert through(proxy, tls_server)


async def test_lower_case_wins(proxy, other, server, monkeypatch):
    monkeypatch.setenv("https_proxy", proxy.url)
    monkeypatch.setenv("HTTPS_PROXY", other.url)
    await roundtrip(ws_uri(server))
    assert through(proxy, server)
    assert not through(other, server)


async def test_http_proxy_serves_ws_only(proxy, server, tls_server, certs, monkeypatch):
    monkeypatch.setenv("http_proxy", proxy.url)
    await roundtrip(ws_uri(server))
    await roundtrip(ws_uri(tls_server, scheme="wss"), ssl=certs.client_context)
    assert through(proxy, server)
    assert not through(proxy, tls_server)


async def test_https_proxy_is_preferred_to_http_proxy_for_ws(proxy, other, server, monkeypatch):
    monkeypatch.setenv("http_proxy", other.url)
    monkeypatch.setenv("https_proxy", proxy.url)
    await roundtrip(ws_uri(server))
    assert through(proxy, server)
    assert not through(other, server)


async def test_upper_case_http_proxy_is_ignored_under_cgi(proxy, server, monkeypatch):
    monkeypatch.setenv("HTTP_PROXY", proxy.url)
    monkeypatch.setenv("REQUEST_METHOD", "GET")
    await roundtrip(ws_uri(server))
    assert not through(proxy, server)


async def test_ws_proxy_and_wss_proxy_come_first(
    proxy, other, server, tls_server, certs, monkeypatch
):
    monkeypatch.setenv("https_proxy", other.url)
    monkeypatch.setenv("ws_proxy", proxy.url)
    monkeypatch.setenv("wss_proxy", proxy.url.replace("http", "socks5h"))
    await roundtrip(ws_uri(server))
    await roundtrip(ws_uri(tls_server, scheme="wss"), ssl=certs.client_context)
    assert through(proxy, server)
    assert through(proxy, tls_server)
    assert not through(other, server)
    assert not through(other, tls_server)


async def test_all_proxy_is_the_fallback(proxy, server, tls_server, certs, monkeypatch):
    monkeypatch.setenv("all_proxy", proxy.url.replace("http", "socks5h"))
    await roundtrip(ws_uri(server))
    await roundtrip(ws_uri(tls_server, scheme="wss"), ssl=certs.client_context)
    assert through(proxy, server)
    assert through(proxy, tls_server)


@pytest.mark.parametrize(
    "no_proxy",
    [
        "*",
        "127.0.0.1",
        "example.com, 127.0.0.1",
        "127.0.0.0/8",
        "localhost",
        ".localhost",
        "{port}",
    ],
)
async def test_no_proxy_goes_direct(proxy, server, monkeypatch, no_proxy):
    monkeypatch.setenv("https_proxy", proxy.url)
    monkeypatch.setenv("no_proxy", no_proxy.replace("{port}", f"127.0.0.1:{server.port}"))
    host = "localhost" if "localhost" in no_proxy else "127.0.0.1"
    await roundtrip(f"ws://{host}:{server.port}/")
    assert not through(proxy, server)
    assert f"localhost:{server.port}" not in proxy.tunnels()


@pytest.mark.parametrize("no_proxy", ["127.0.0.1:1", "example.com", "10.0.0.0/8", "local"])
async def test_no_proxy_that_does_not_match(proxy, server, monkeypatch, no_proxy):
    monkeypatch.setenv("https_proxy", proxy.url)
    monkeypatch.setenv("NO_PROXY", no_proxy)
    await roundtrip(ws_uri(server))
    assert through(proxy, server)


@pytest.mark.parametrize("value", [None, False])
async def test_proxy_none_connects_directly(proxy, server, monkeypatch, value):
    monkeypatch.setenv("https_proxy", proxy.url)
    monkeypatch.setenv("all_proxy", "socks5://127.0.0.1:9")
    await roundtrip(ws_uri(server), proxy=value)
    assert not through(proxy, server)


async def test_explicit_proxy_ignores_the_environment(proxy, other, server, monkeypatch):
    monkeypatch.setenv("https_proxy", other.url)
    monkeypatch.setenv("no_proxy", "*")
    await roundtrip(ws_uri(server), proxy=proxy.url)
    assert through(proxy, server)
    assert not through(other, server)


async def test_sock_and_path_ignore_the_environment(
    proxy, server, start_server, tmp_path, monkeypatch
):
    monkeypatch.setenv("https_proxy", proxy.url)
    sock = socket.create_connection(("127.0.0.1", server.port))
    await roundtrip(ws_uri(server), sock=sock)
    path = str(tmp_path / "ws.sock")
    await start_server(path=path)
    await roundtrip("ws://localhost/", path=path)
    assert not through(proxy, server)


async def test_invalid_proxy_in_the_environment(server, monkeypatch):
    monkeypatch.setenv("https_proxy", "ftp://proxy.example:21")
    with pytest.raises(wsend.InvalidProxy, match="scheme 'ftp' isn't supported"):
        await wsend.connect(ws_uri(server))


def test_invalid_explicit_proxy_is_reported_at_once():
    with pytest.raises(wsend.InvalidProxy) as info:
        wsend.connect("ws://example.com/", proxy="http://user:hunter2@proxy.example:bad")
    assert isinstance(info.value, ValueError)
    assert "hunter2" not in str(info.value)
