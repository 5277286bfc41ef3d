#!/usr/bin/env python
"""wss:// end to end: a TLS echo server and a client that verifies its certificate.

    python examples/core/tls_echo.py

Certificates come from ``trustme`` (``pip install trustme``), which makes a throwaway
certificate authority: fine for tests and demos, never for production. In production, pass
your certificate to ``serve(certfile=..., keyfile=...)`` and let clients verify it against
the system's trusted authorities, which ``connect()`` does by default.
"""

from __future__ import annotations

import asyncio
import ssl

import trustme

import wsend


async def echo(ws: wsend.ServerConnection) -> None:
    async for message in ws:
        await ws.send(message)


async def main() -> None:
    ca = trustme.CA()
    cert = ca.issue_cert("localhost", "127.0.0.1")

    server_ssl = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    cert.configure_cert(server_ssl)
    client_ssl = ssl.create_default_context()  # verifies the certificate and host name
    ca.configure_trust(client_ssl)

    async with wsend.serve(echo, "localhost", 0, ssl=server_ssl) as server:
        uri = f"wss://localhost:{server.port}/"
        async with wsend.connect(uri, ssl=client_ssl) as ws:
            await ws.send("hello over TLS")
            print(f"< {await ws.recv()!r}")

        # Without the test CA the certificate isn't trusted: the connection is refused.
        try:
            await wsend.connect(uri)
        except ssl.SSLCertVerificationError as exc:
            print(f"default verification refused the test certificate: {exc.verify_message}")


if __name__ == "__main__":
    asyncio.run(main())
