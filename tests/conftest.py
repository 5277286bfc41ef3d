"""Shared fixtures: TLS certificates from a test CA and WebSocket servers on loopback."""

from __future__ import annotations

import logging
import os
import ssl
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import trustme

import wsend

from .asyncio.helpers import echo
from .proxy_server import ProxyServer
from .reconnecting import Recorder

# The suite's servers are on loopback: a developer's proxy settings must not reroute its clients
# (wsend.connect reads them by default). The proxy tests set their own.
for _name in list(os.environ):
    if _name.lower() in {"http_proxy", "https_proxy", "ws_proxy", "wss_proxy", "all_proxy"}:
        del os.environ[_name]


@pytest.fixture(autouse=True)
def _fresh_proxy_logs() -> None:
    """Each test sees only the tunnels its own connections opened (ProxyServer.tunnels)."""
    for proxy in ProxyServer.live:
        proxy.forget()


@dataclass(frozen=True)
class Certs:
    """A test CA and a certificate for ``localhost`` and ``127.0.0.1`` signed by it."""

    server_context: ssl.SSLContext
    client_context: ssl.SSLContext
    certfile: str
    keyfile: str
    cafile: str


@pytest.fixture(scope="session")
def certs(tmp_path_factory: pytest.TempPathFactory) -> Certs:
    ca = trustme.CA()
    cert = ca.issue_cert("localhost", "127.0.0.1")
    server_context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    cert.configure_cert(server_context)
    client_context = ssl.create_default_context()
    ca.configure_trust(client_context)
    directory: Path = tmp_path_factory.mktemp("certs")
    certfile, keyfile, cafile = (directory / name for name in ("cert.pem", "key.pem", "ca.pem"))
    for i, blob in enumerate(cert.cert_chain_pems):
        blob.write_to_path(str(certfile), append=i > 0)
    cert.private_key_pem.write_to_path(str(keyfile))
    ca.cert_pem.write_to_path(str(cafile))
    return Certs(server_context, client_context, str(certfile), str(keyfile), str(cafile))


StartServer = Callable[..., Awaitable[wsend.Server]]


@pytest.fixture
async def start_server() -> AsyncIterator[StartServer]:
    """Start ``wsend.serve(handler, "127.0.0.1", 0, **kwargs)``; shut every server down after.

    With ``path=``, listen on that Unix socket instead.
    """
    servers: list[wsend.Server] = []

    async def start(handler: Any = echo, **kwargs: Any) -> wsend.Server:
        if "path" in kwargs or "sock" in kwargs:
            server = await wsend.serve(handler, **kwargs)
        else:
            server = await wsend.serve(handler, "127.0.0.1", 0, **kwargs)
        servers.append(server)
        return server

    yield start
    for server in servers:
        await server.shutdown(timeout=5)


@pytest.fixture
def retries() -> Iterator[list[logging.LogRecord]]:
    """The log records of reconnection retries (logger ``wsend.client``), as they happen."""
    logger = logging.getLogger("wsend.client")
    recorder = Recorder()
    level = logger.level
    logger.addHandler(recorder)
    logger.setLevel(logging.INFO)
    yield recorder.records
    logger.removeHandler(recorder)
    logger.setLevel(level)
