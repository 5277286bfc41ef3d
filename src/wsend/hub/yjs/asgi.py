"""The Yjs endpoint as an ASGI application, to mount in FastAPI, Starlette or any ASGI app.

.. code-block:: python

    hub = Hub(options)
    yjs = YjsServer(hub, store=SQLiteStore("data"))
    app = Starlette(routes=[Mount("/yjs", app=yjs_app(yjs))], lifespan=...)

A client of ``ws://host/yjs/notes`` (y-websocket: ``new WebsocketProvider("ws://host/yjs",
"notes", doc)``) gets the room ``notes``: the path below the mount point is the room, exactly
as under ``wsend serve``. Close the endpoint in the host's shutdown (``await yjs.close()``,
then ``await hub.close()``); ``http`` requests get 426.
"""

from __future__ import annotations

import dataclasses

from ...asyncio.connection import DEFAULT_CLOSE_TIMEOUT
from ..asgi import (
    ASGIApp,
    Receive,
    Scope,
    Send,
    _AsgiSocket,
    _not_upgraded,
    _respond,
    request_from_scope,
)
from .server import YjsServer

__all__ = ["yjs_app"]


def yjs_app(yjs: YjsServer, *, close_timeout: float = DEFAULT_CLOSE_TIMEOUT) -> ASGIApp:
    """``yjs``'s endpoint as an ASGI app: mount it where its ``prefix`` (``/yjs``) is.

    Args:
        yjs: the endpoint (its hub's rules, its store and limits apply).
        close_timeout: seconds a closing connection gets to see the disconnect.
    """

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            await _respond(send, _not_upgraded(), scope)
            return
        if scope["type"] != "websocket" or (await receive())["type"] != "websocket.connect":
            return
        request = request_from_scope(scope)
        # The path below the mount point is the room: seen as <prefix>/<room>.
        request = dataclasses.replace(request, target=yjs.prefix + request.target)
        await send({"type": "websocket.accept", "subprotocol": None})
        await yjs.handler(_AsgiSocket(receive, send, request, None, close_timeout))

    return app
