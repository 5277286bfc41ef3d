"""The client commands through real proxies (pproxy, tinyproxy): ``--proxy``, the proxy
environment variables, ``--no-proxy``, and the exit codes of proxy failures."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import pytest

import wsend

from ..conftest import Certs, StartServer
from ..proxy_server import ProxyServer, TinyProxy, closed_port
from .conftest import ENV, WSEND, Result

pytestmark = pytest.mark.timeout(60)


@pytest.fixture(scope="module")
def proxy() -> Iterator[ProxyServer]:
    server = ProxyServer("http+socks5")
    yield server
    server.stop()


async def wsend_with_env(env: dict[str, str], *args: str) -> Result:
    proc = await asyncio.create_subprocess_exec(
        *WSEND,
        *args,
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env={**ENV, **env},
    )
    out, err = await asyncio.wait_for(proc.communicate(), 30)
    assert proc.returncode is not None
    return Result(proc.returncode, out.decode(), err.decode())


def url_of(server: wsend.Server, scheme: str = "ws") -> str:
    return f"{scheme}://127.0.0.1:{server.port}/"


@pytest.mark.parametrize("scheme", ["http", "socks5h"])
async def test_send_through_proxy_option(proxy, start_server: StartServer, scheme):
    server = await start_server()
    result = await wsend_with_env(
        {},
        "send",
        url_of(server),
        "via proxy",
        "--wait",
        "1",
        "--proxy",
        proxy.url.replace("http", scheme),
    )
    assert (result.code, result.out) == (0, "via proxy\n"), result.err
    assert f"127.0.0.1:{server.port}" in proxy.tunnels()


async def test_environment_is_honoured(proxy, start_server: StartServer, certs: Certs):
    server = await start_server(ssl=certs.server_context)
    env = {"https_proxy": proxy.url}
    args = ["send", url_of(server, "wss"), "env", "--wait", "1", "--cacert", certs.cafile]
    result = await wsend_with_env(env, *args)
    assert (result.code, result.out) == (0, "env\n"), result.err
    assert f"127.0.0.1:{server.port}" in proxy.tunnels()


async def test_no_proxy_option(proxy, start_server: StartServer):
    server = await start_server()
    env = {"https_proxy": proxy.url, "all_proxy": f"socks5://127.0.0.1:{closed_port()}"}
    result = await wsend_with_env(
        env, "send", url_of(server), "direct", "--wait", "1", "--no-proxy"
    )
    assert (result.code, result.out) == (0, "direct\n"), result.err
    assert f"127.0.0.1:{server.port}" not in proxy.tunnels()


async def test_connect_through_proxy(proxy, start_server: StartServer):
    server = await start_server()
    result = await wsend_with_env({"http_proxy": proxy.url}, "connect", url_of(server))
    assert result.code == 0, result.err
    assert f"127.0.0.1:{server.port}" in proxy.tunnels()


async def test_proxy_authentication_exits_3(start_server: StartServer):
    server = await start_server()
    tinyproxy = TinyProxy(auth=("alice", "secret"))
    try:
        result = await wsend_with_env({}, "send", url_of(server), "x", "--proxy", tinyproxy.url)
    finally:
        tinyproxy.stop()
    assert result.code == 3
    assert "HTTP 407" in result.err
    assert "--proxy http://USER:PASSWORD@HOST:PORT" in result.err


async def test_unreachable_proxy_exits_3(start_server: StartServer):
    server = await start_server()
    port = closed_port()
    result = await wsend_with_env(
        {}, "send", url_of(server), "x", "--proxy", f"http://127.0.0.1:{port}"
    )
    assert result.code == 3
    assert f"cannot connect to proxy http://127.0.0.1:{port}" in result.err


async def test_untrusted_https_proxy_exits_3(start_server: StartServer, certs: Certs):
    server = await start_server()
    tls_proxy = ProxyServer("http", certfile=certs.certfile, keyfile=certs.keyfile)
    try:
        args = ["send", url_of(server), "tls", "--wait", "1", "--proxy", tls_proxy.url]
        refused = await wsend_with_env({}, *args)
        trusted = await wsend_with_env({}, *args, "--proxy-cacert", certs.cafile)
    finally:
        tls_proxy.stop()
    assert refused.code == 3
    assert "--proxy-cacert" in refused.err
    assert (trusted.code, trusted.out) == (0, "tls\n"), trusted.err


async def test_invalid_proxy_exits_2(start_server: StartServer):
    server = await start_server()
    result = await wsend_with_env(
        {}, "send", url_of(server), "x", "--proxy", "ftp://alice:hunter2@proxy.example"
    )
    assert result.code == 2
    assert "invalid proxy" in result.err
    assert "hunter2" not in result.err
