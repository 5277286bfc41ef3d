"""``wss://`` with the threading client and server: certificates from a test CA (trustme),
verification, large and concurrent traffic over one TLS session, and clean TLS endings with the
asyncio side as the peer."""

from __future__ import annotations

import asyncio
import ssl
from typing import Any

import pytest

import wsend

from ..conftest import Certs
from .conftest import StartServer
from .helpers import echo, in_thread, uri
from .test_threads import message


def wss(server: wsend.sync.Server, resource: str = "/") -> str:
    return uri(server, resource, "wss")


def test_wss_echo(start_sync_server: StartServer, certs: Certs) -> None:
    server = start_sync_server(ssl=certs.server_context)
    with wsend.sync.connect(wss(server), ssl=certs.client_context) as ws:
        assert ws._tls is not None
        assert ws._tls.version in ("TLSv1.2", "TLSv1.3")
        ws.send("secret")
        assert ws.recv(timeout=5) == "secret"
        assert ws.ping(timeout=5) > 0
    assert ws.close_code == 1000


def test_server_from_certfile_and_keyfile(start_sync_server: StartServer, certs: Certs) -> None:
    server = start_sync_server(certfile=certs.certfile, keyfile=certs.keyfile)
    with wsend.sync.connect(wss(server), ssl=certs.client_context) as ws:
        ws.send(b"\x00binary")
        assert ws.recv(timeout=5) == b"\x00binary"


def test_certificates_are_verified_by_default(start_sync_server: StartServer, certs: Certs) -> None:
    server = start_sync_server(ssl=certs.server_context)
    with pytest.raises(ssl.SSLCertVerificationError):
        wsend.sync.connect(wss(server)).open()
    with pytest.raises(ssl.SSLCertVerificationError):
        wsend.sync.connect(wss(server), ssl=True).open()
    # The name checked is the URI's host, or server_hostname.
    with pytest.raises(ssl.SSLCertVerificationError):
        wsend.sync.connect(
            wss(server), ssl=certs.client_context, server_hostname="other.example"
        ).open()
    with wsend.sync.connect(
        wss(server), ssl=certs.client_context, server_hostname="localhost"
    ) as ws:
        ws.send("named")
        assert ws.recv(timeout=5) == "named"


def test_plain_client_against_a_tls_server(start_sync_server: StartServer, certs: Certs) -> None:
    server = start_sync_server(ssl=certs.server_context, open_timeout=2)
    with pytest.raises((wsend.InvalidMessage, OSError)):
        wsend.sync.connect(uri(server)).open()
    with wsend.sync.connect(wss(server), ssl=certs.client_context) as ws:  # still serving
        ws.send("ok")
        assert ws.recv(timeout=5) == "ok"


@pytest.mark.parametrize("compression", ["deflate", None])
def test_large_messages_over_tls(
    start_sync_server: StartServer, certs: Certs, compression: str | None
) -> None:
    server = start_sync_server(
        ssl=certs.server_context, max_message_size=None, compression=compression
    )
    data = bytes(range(256)) * (4 * 4096)  # 4 MiB
    with wsend.sync.connect(
        wss(server), ssl=certs.client_context, max_message_size=None, compression=compression
    ) as ws:
        ws.send(data)
        assert ws.recv(timeout=10) == data
        ws.send(iter([data[: 1 << 20], data[1 << 20 :]]))
        assert ws.recv(timeout=10) == data


def test_concurrent_senders_over_one_tls_session(
    start_sync_server: StartServer, certs: Certs
) -> None:
    """Threads write while the reader thread reads: the TLS session is only ever used under
    the connection's lock, and every message comes back whole."""
    server = start_sync_server(ssl=certs.server_context, max_message_size=None)
    with wsend.sync.connect(wss(server), ssl=certs.client_context, max_message_size=None) as ws:

        def send_all(sender: int) -> None:
            for seq in range(100):
                ws.send(message(sender, seq))

        threads = [in_thread(send_all, sender) for sender in range(6)]
        seen = {sender: -1 for sender in range(6)}
        for _ in range(600):
            data = ws.recv(timeout=30)
            assert isinstance(data, bytes)
            sender_s, seq_s, _ = data.split(b":", 2)
            assert data == message(int(sender_s), int(seq_s))
            assert int(seq_s) == seen[int(sender_s)] + 1
            seen[int(sender_s)] = int(seq_s)
        for thread in threads:
            thread.join(10)


async def test_sync_server_with_asyncio_client_over_tls(certs: Certs) -> None:
    def handler(ws: wsend.sync.ServerConnection) -> None:
        ws.send(ws.recv())
        ws.close(4000, "done")

    server = wsend.sync.serve(handler, "127.0.0.1", 0, ssl=certs.server_context)
    thread = in_thread(server.serve_forever)
    try:
        async with wsend.connect(wss(server), ssl=certs.client_context) as ws:
            await ws.send("over tls")
            assert await ws.recv() == "over tls"
            with pytest.raises(wsend.ConnectionClosedError) as info:
                await ws.recv()
            assert (info.value.code, info.value.reason) == (4000, "done")
            await asyncio.wait_for(ws.wait_closed(), 5)
    finally:
        await asyncio.to_thread(server.shutdown, timeout=5)
        thread.join(5)


async def test_sync_client_with_asyncio_server_over_tls(start_server: Any, certs: Certs) -> None:
    server = await start_server(ssl=certs.server_context)

    def client() -> tuple[int | None, str | None]:
        with wsend.sync.connect(f"wss://127.0.0.1:{server.port}/", ssl=certs.client_context) as ws:
            ws.send("to asyncio")
            assert ws.recv(timeout=5) == "to asyncio"
        return ws.close_code, ws.close_reason

    assert await asyncio.to_thread(client) == (1000, "")
    for conn in list(server.connections):
        await asyncio.wait_for(conn.wait_closed(), 5)


def test_echo_helper_over_tls(start_sync_server: StartServer, certs: Certs) -> None:
    server = start_sync_server(echo, ssl=certs.server_context, close_timeout=1)
    ws = wsend.sync.connect(wss(server), ssl=certs.client_context).open()
    ws.send("abort me")
    assert ws.recv(timeout=5) == "abort me"
    ws.abort()
    assert ws.wait_closed(5)
