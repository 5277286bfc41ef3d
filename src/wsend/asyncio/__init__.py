"""The asyncio client and server."""

from .broadcast import broadcast
from .client import ClientConnection, connect, parse_uri
from .connection import Connection, ConnectionOptions
from .routes import Router
from .server import Server, ServerConnection, serve

__all__ = [
    "ClientConnection",
    "Connection",
    "ConnectionOptions",
    "Router",
    "Server",
    "ServerConnection",
    "broadcast",
    "connect",
    "parse_uri",
    "serve",
]
