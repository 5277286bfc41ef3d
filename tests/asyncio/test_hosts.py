"""serve(allowed_hosts=...) over real sockets: wsend and raw clients, WebSocket handshakes
and HTTP routes, plain and TLS."""

from __future__ import annotations

import asyncio
import re
import ssl

import pytest

import wsend

from .helpers import ws_uri

pytestmark = pytest.mark.timeout(30)

UPGRADE = (
    "GET / HTTP/1.1\r\n{host}Upgrade: websocket\r\nConnection: Upgrade\r\n"
    "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
)


def routes() -> wsend.Router:
    router = wsend.Router()
    router.add("/healthz", lambda request: wsend.Response.text(200, "OK\n"))
    return router


async def exchange(
    port: int, request: str, context: ssl.SSLContext | None = None
) -> tuple[int, bytes]:
    """Send a raw request; return the status and the body of the answer."""
    reader, writer = await asyncio.open_connection(
        "127.0.0.1", port, ssl=context, server_hostname="localhost" if context else None
    )
    writer.write(request.encode("latin-1"))
    head = await reader.readuntil(b"\r\n\r\n")
    status = int(head.split(b" ", 2)[1])
    match = re.search(rb"Content-Length: (\d+)", head)
    body = await reader.readexactly(int(match.group(1))) if match else b""
    writer.close()
    return status, body


def upgrade(*hosts: str) -> str:
    return UPGRADE.format(host="".join(f"Host: {host}\r\n" for host in hosts))


@pytest.fixture
async def server(start_server) -> wsend.Server:
    return await start_server(allowed_hosts=["localhost", "127.0.0.1"], router=routes())


async def test_allowed_host_connects(server):
    async with wsend.connect(ws_uri(server)) as ws:
        await ws.send("hi")
        assert await ws.recv() == "hi"
    async with wsend.connect(f"ws://localhost:{server.port}/") as ws:
        await ws.send("hi")
        assert await ws.recv() == "hi"


async def test_other_host_gets_421(server):
    with pytest.raises(wsend.InvalidStatus) as info:
        await wsend.connect(ws_uri(server), headers={"Host": "attacker.example"})
    assert info.value.status_code == 421
    assert b"doesn't serve 'attacker.example'" in info.value.body
    # Other connections are unaffected.
    async with wsend.connect(ws_uri(server)) as ws:
        await ws.send("still")
        assert await ws.recv() == "still"


@pytest.mark.parametrize(
    ("hosts", "status"),
    [
        (("attacker.example",), 421),
        (("localhost.attacker.example",), 421),
        (("127.0.0.1.nip.example:80",), 421),
        ((), 400),
        (("localhost", "localhost"), 400),
        (("localhost", "attacker.example"), 400),
        (("local host",), 400),
        (("localhost:99999",), 400),
        (("[::1",), 400),
    ],
)
async def test_raw_upgrade_requests(server, hosts, status):
    assert (await exchange(server.port, upgrade(*hosts)))[0] == status


async def test_http_routes_are_checked_too(server):
    ok = f"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1:{server.port}\r\n\r\n"
    assert await exchange(server.port, ok) == (200, b"OK\n")
    evil = "GET /healthz HTTP/1.1\r\nHost: attacker.example\r\n\r\n"
    assert await exchange(server.port, evil) == (421, b"Misdirected Request\n")
    hostless = "GET /healthz HTTP/1.0\r\n\r\n"
    assert await exchange(server.port, hostless) == (400, b"Bad Request\n")


async def test_port_in_the_allowlist(start_server):
    # The port the clients use, as behind a reverse proxy: not necessarily the server's own.
    server = await start_server(allowed_hosts=["localhost:8443"])
    assert (await exchange(server.port, upgrade("localhost:8443")))[0] == 101
    assert (await exchange(server.port, upgrade(f"localhost:{server.port}")))[0] == 421
    assert (await exchange(server.port, upgrade("localhost")))[0] == 421


async def test_ipv6_literal(start_server):
    server = await start_server(allowed_hosts=["[::1]"])
    assert (await exchange(server.port, upgrade("[::1]:8765")))[0] == 101
    assert (await exchange(server.port, upgrade("[::2]:8765")))[0] == 421


async def test_wildcard_subdomains(start_server):
    server = await start_server(allowed_hosts=["*.example.com"])
    assert (await exchange(server.port, upgrade("chat.example.com")))[0] == 101
    assert (await exchange(server.port, upgrade("example.com")))[0] == 421


async def test_default_port_over_tls(start_server, certs):
    server = await start_server(ssl=certs.server_context, allowed_hosts=["localhost:443"])
    context = certs.client_context
    assert (await exchange(server.port, upgrade("localhost"), context))[0] == 101
    assert (await exchange(server.port, upgrade("localhost:80"), context))[0] == 421


async def test_no_allowlist_by_default(start_server):
    server = await start_server()
    async with wsend.connect(ws_uri(server), headers={"Host": "anything.example"}) as ws:
        await ws.send("any")
        assert await ws.recv() == "any"


def test_invalid_allowlist_is_refused_at_once():
    with pytest.raises(ValueError, match="invalid allowed host"):
        wsend.serve(lambda ws: None, "127.0.0.1", 0, allowed_hosts=["exa mple.com"])
