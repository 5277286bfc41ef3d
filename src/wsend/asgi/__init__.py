"""wsend under ASGI servers: WebSocket endpoints of any ASGI application on wsend's core.

:class:`WSendProtocol` is uvicorn's WebSocket layer: ``uvicorn.run(app, ws=WSendProtocol)``,
``uvicorn.Config(app, ws=WSendProtocol)``, or on the command line ``python -m wsend.asgi
app:app [uvicorn options]`` (:mod:`wsend.asgi.__main__`). :mod:`wsend.asgi.adapter` holds the
translation between ASGI messages and wsend's types, without I/O. Needs uvicorn
(``pip install 'wsend[asgi]'``). See ``docs/howto/asgi-server.md``.
"""

from __future__ import annotations

from .uvicorn import WSendProtocol

__all__ = ["WSendProtocol"]
