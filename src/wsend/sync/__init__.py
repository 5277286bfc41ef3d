"""The threading client and server: the same API as :mod:`wsend`'s, without asyncio.

.. code-block:: python

    import wsend.sync

    def echo(ws):
        for message in ws:
            ws.send(message)

    with wsend.sync.serve(echo, "localhost", 8765) as server:
        threading.Thread(target=server.serve_forever).start()
        with wsend.sync.connect("ws://localhost:8765") as ws:
            ws.send("hello")
            print(ws.recv(timeout=5))

Built on the same sans-I/O core as the asyncio implementation, with blocking sockets and a
reader thread per connection (see :mod:`wsend.sync.connection`).
"""

from .client import ClientConnection, connect
from .connection import Connection
from .server import Server, ServerConnection, serve

__all__ = [
    "ClientConnection",
    "Connection",
    "Server",
    "ServerConnection",
    "connect",
    "serve",
]
