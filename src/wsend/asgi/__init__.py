"""wsend under ASGI servers: WebSocket endpoints of any ASGI application on wsend's core.

:class:`WSendProtocol` is uvicorn's WebSocket layer (``uvicorn.run(app, ws=WSendProtocol)``
or ``--ws wsend.asgi.uvicorn:WSendProtocol``); :mod:`wsend.asgi.adapter` holds the
translation between ASGI messages and wsend's types, without I/O.
"""

from __future__ import annotations

from .uvicorn import WSendProtocol

__all__ = ["WSendProtocol"]
