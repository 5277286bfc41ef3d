"""Testee for the Autobahn|Testsuite: an ASGI echo application on uvicorn with wsend's layer.

The same job as ``compliance/server.py`` (echo every message with its type, permessage-deflate
on, messages up to 32 MiB, no keepalive pings), done by a plain ASGI application that uvicorn
serves with ``ws=WSendProtocol``: the suite then checks wsend's layer as ASGI applications get
it, handshake and close codes included.

usage: python compliance/asgi_server.py [--host 127.0.0.1] [--port 9003] [--uvloop]

Listens once uvicorn has started (the runner waits for the port); stops on SIGINT/SIGTERM.
"""

from __future__ import annotations

import argparse
from typing import Any

import uvicorn

from wsend.asgi import WSendProtocol

MAX_MESSAGE_SIZE = 2**25  # 32 MiB: the suite's largest message is 16 MiB


async def echo(scope: dict[str, Any], receive: Any, send: Any) -> None:
    """Accept, then send every message back until the client disconnects."""
    if scope["type"] != "websocket":
        return
    await receive()  # websocket.connect
    await send({"type": "websocket.accept"})
    while True:
        message = await receive()
        if message["type"] == "websocket.disconnect":
            return
        await send(
            {"type": "websocket.send", "bytes": message.get("bytes"), "text": message.get("text")}
        )


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=9003)
    parser.add_argument("--uvloop", action="store_true", help="run on uvloop's event loop")
    return parser.parse_args(argv)


def run(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    uvicorn.run(
        echo,
        host=args.host,
        port=args.port,
        ws=WSendProtocol,
        loop="uvloop" if args.uvloop else "asyncio",
        lifespan="off",
        ws_max_size=MAX_MESSAGE_SIZE,
        ws_per_message_deflate=True,
        ws_ping_interval=None,
        access_log=False,
        log_level="warning",
    )


if __name__ == "__main__":
    run()
