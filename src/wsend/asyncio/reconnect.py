"""``async for ws in wsend.connect(uri)``: a connection per iteration, reconnecting with backoff.

The retry decisions and delays come from :class:`~wsend.reconnect.Reconnector`; this module
only opens connections, sleeps and closes.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING

from ..exceptions import UsageError
from ..reconnect import Reconnector, display_uri

if TYPE_CHECKING:
    from .client import ClientConnection, connect

__all__ = ["reconnecting"]

logger = logging.getLogger("wsend.client")


async def reconnecting(connector: connect) -> AsyncIterator[ClientConnection]:
    """Yield open connections made by ``connector``, one after the other, forever.

    Each connection is closed when the loop body asks for the next one (or leaves the loop).
    Failed attempts are retried after a delay, or raised, as ``connector.process_exception``
    decides (see :mod:`wsend.reconnect`).

    Raises:
        UsageError: ``connector`` was given a connected socket (``sock=``): it can't be
            opened again.
        Exception: the first fatal error of an attempt.
    """
    if connector.sock is not None:
        raise UsageError("can't reconnect with a socket passed as sock=: pass the URI only")
    uri = display_uri(connector.uri)
    policy = Reconnector(uri, connector.backoff, connector.process_exception, logger)
    while True:
        try:
            conn = await connector._connect()
        except Exception as exc:
            await asyncio.sleep(policy.failed(exc))
            continue
        policy.opened()
        try:
            yield conn
        finally:
            await conn.close()
        await asyncio.sleep(policy.closed())
