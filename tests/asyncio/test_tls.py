"""wss:// with certificates from a test CA."""

from __future__ import annotations

import os
import ssl

import pytest

import wsend

from .helpers import echo, ws_uri

pytestmark = pytest.mark.timeout(30)


async def test_wss_echo(start_server, certs):
    server = await start_server(ssl=certs.server_context)
    async with wsend.connect(ws_uri(server, scheme="wss"), ssl=certs.client_context) as ws:
        assert ws.transport.get_extra_info("ssl_object") is not None
        await ws.send("secure")
        assert await ws.recv() == "secure"
        assert ws.request.headers["Host"] == f"127.0.0.1:{server.port}"


async def test_server_from_certfile_and_keyfile(start_server, certs):
    server = await start_server(certfile=certs.certfile, keyfile=certs.keyfile)
    context = ssl.create_default_context(cafile=certs.cafile)
    async with wsend.connect(f"wss://localhost:{server.port}/", ssl=context) as ws:
        await ws.send(b"files")
        assert await ws.recv() == b"files"


async def test_client_verifies_certificates_by_default(start_server, certs):
    server = await start_server(ssl=certs.server_context)
    with pytest.raises(ssl.SSLCertVerificationError) as info:
        await wsend.connect(ws_uri(server, scheme="wss"))
    assert isinstance(info.value, OSError)
    assert info.value.verify_code != 0


async def test_client_with_ssl_true_verifies_too(start_server, certs):
    server = await start_server(ssl=certs.server_context)
    with pytest.raises(ssl.SSLCertVerificationError):
        await wsend.connect(ws_uri(server, scheme="wss"), ssl=True)


async def test_server_hostname_is_checked(start_server, certs):
    server = await start_server(ssl=certs.server_context)
    uri = ws_uri(server, scheme="wss")
    with pytest.raises(ssl.SSLCertVerificationError):
        await wsend.connect(uri, ssl=certs.client_context, server_hostname="other.example")
    async with wsend.connect(uri, ssl=certs.client_context, server_hostname="localhost") as ws:
        await ws.send("named")
        assert await ws.recv() == "named"


async def test_plain_client_against_tls_server(start_server, certs):
    server = await start_server(ssl=certs.server_context, open_timeout=1)
    with pytest.raises((wsend.InvalidHandshake, OSError)):
        await wsend.connect(ws_uri(server))


async def test_compression_over_tls(start_server, certs):
    server = await start_server(ssl=certs.server_context)
    async with wsend.connect(ws_uri(server, scheme="wss"), ssl=certs.client_context) as ws:
        assert ws.extensions == ["permessage-deflate"]
        text = "compressible " * 50_000
        await ws.send(text)
        assert await ws.recv() == text


async def test_large_message_over_tls(start_server, certs):
    server = await start_server(ssl=certs.server_context, max_message_size=None)
    async with wsend.connect(
        ws_uri(server, scheme="wss"), ssl=certs.client_context, max_message_size=None
    ) as ws:
        data = os.urandom(4 << 20)
        await ws.send(data)
        assert await ws.recv() == data
        chunks = [os.urandom(100_000) for _ in range(20)]
        await ws.send(chunks)
        assert await ws.recv() == b"".join(chunks)


async def test_redirect_from_wss_to_ws_is_refused(start_server, certs):
    plain = await start_server()

    def to_plain(ws, request):
        return wsend.Response(302, wsend.Headers({"Location": ws_uri(plain)}))

    server = await start_server(ssl=certs.server_context, process_request=to_plain)
    with pytest.raises(wsend.InvalidStatus) as info:
        await wsend.connect(ws_uri(server, scheme="wss"), ssl=certs.client_context)
    assert info.value.status_code == 302


async def test_tls_shutdown(certs):
    async with wsend.serve(echo, "127.0.0.1", 0, ssl=certs.server_context) as server:
        ws = await wsend.connect(ws_uri(server, scheme="wss"), ssl=certs.client_context)
        await server.shutdown()
        with pytest.raises(wsend.ConnectionClosedOK) as info:
            await ws.recv()
        assert info.value.code == 1001
