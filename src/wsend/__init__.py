"""wsend: a fast, conformant WebSocket client and server for asyncio."""

from .exceptions import *  # noqa: F403

__version__ = "0.1.0"
