"""wsend: a fast, conformant WebSocket client and server for asyncio.

.. code-block:: python

    import wsend

    async def handler(ws):
        async for message in ws:
            await ws.send(message)

    async with wsend.serve(handler, "localhost", 8765) as server:
        async with wsend.connect("ws://localhost:8765") as ws:
            await ws.send("hello")
            print(await ws.recv())
"""

from __future__ import annotations

__version__ = "0.1.0"

from . import sync as sync
from .allocator import tune_allocator
from .asyncio import (
    ClientConnection,
    Connection,
    Router,
    Server,
    ServerConnection,
    broadcast,
    connect,
    serve,
)
from .auth import basic_auth, token_auth
from .exceptions import (
    ClientDisconnected,
    ConcurrencyError,
    ConnectionClosed,
    ConnectionClosedError,
    ConnectionClosedOK,
    InvalidHandshake,
    InvalidHeader,
    InvalidHost,
    InvalidMessage,
    InvalidOrigin,
    InvalidPayload,
    InvalidProxy,
    InvalidProxyMessage,
    InvalidStatus,
    InvalidUpgrade,
    InvalidURI,
    InvalidVersion,
    NegotiationError,
    OpenTimeout,
    PayloadTooBig,
    ProtocolError,
    ProxyAuthenticationRequired,
    ProxyConnectionError,
    ProxyError,
    ProxyRefused,
    RequestRejected,
    TooManyRedirects,
    UsageError,
    WebSocketError,
)
from .protocol.connection import State
from .protocol.deflate import ClientDeflate, ServerDeflate
from .protocol.frames import Close, CloseCode
from .protocol.http import Headers, HTTPLimits, Request, Response
from .reconnect import Backoff

__all__ = [
    "Backoff",
    "ClientConnection",
    "ClientDeflate",
    "ClientDisconnected",
    "Close",
    "CloseCode",
    "ConcurrencyError",
    "Connection",
    "ConnectionClosed",
    "ConnectionClosedError",
    "ConnectionClosedOK",
    "HTTPLimits",
    "Headers",
    "InvalidHandshake",
    "InvalidHeader",
    "InvalidHost",
    "InvalidMessage",
    "InvalidOrigin",
    "InvalidPayload",
    "InvalidProxy",
    "InvalidProxyMessage",
    "InvalidStatus",
    "InvalidURI",
    "InvalidUpgrade",
    "InvalidVersion",
    "NegotiationError",
    "OpenTimeout",
    "PayloadTooBig",
    "ProtocolError",
    "ProxyAuthenticationRequired",
    "ProxyConnectionError",
    "ProxyError",
    "ProxyRefused",
    "Request",
    "RequestRejected",
    "Response",
    "Router",
    "Server",
    "ServerConnection",
    "ServerDeflate",
    "State",
    "TooManyRedirects",
    "UsageError",
    "WebSocketError",
    "__version__",
    "basic_auth",
    "broadcast",
    "connect",
    "serve",
    "token_auth",
    "tune_allocator",
]
