"""ASGI echo server worker: ``python -m bench.asgi_servers --layer LAYER --loop LOOP``.

Runs one uvicorn server on 127.0.0.1 (free port) with the WebSocket layer ``LAYER``: wsend's
(``wsend``, :class:`wsend.asgi.WSendProtocol`) or one of uvicorn's own (``websockets``,
``websockets-sansio``, ``wsproto``). Every layer serves the same application,
:func:`echo_app`, a plain ASGI application (no framework) that sends each message back as it
came (binary as binary, text as text). Prints ``{"port": ..., "pid": ...}``, then serves until
``{"cmd": "quit"}`` or the end of its input.

Same settings for every layer: no compression, no keepalive pings, a 64 MiB message limit,
uvicorn's default receive queue (32), httptools for HTTP, no access log.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import socket
import sys
import threading
from typing import Any

from .common import BACKLOG, HOST, emit, new_loop, pin, raise_nofile

LAYERS = ("wsend", "websockets", "websockets-sansio", "wsproto")
MAX_SIZE = 64 << 20


async def echo_app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    """Accept, then echo every message until the client disconnects."""
    if scope["type"] != "websocket":
        return
    await receive()  # websocket.connect
    await send({"type": "websocket.accept"})
    while True:
        message = await receive()
        if message["type"] != "websocket.receive":
            return
        await send(
            {"type": "websocket.send", "bytes": message.get("bytes"), "text": message.get("text")}
        )


def layer_class(layer: str) -> Any:
    """The ``ws`` argument of uvicorn's Config for ``layer``."""
    if layer == "wsend":
        from wsend.asgi import WSendProtocol

        return WSendProtocol
    return layer


def config(layer: str, loop: str, **overrides: Any) -> Any:
    import uvicorn

    settings: dict[str, Any] = {
        "ws": layer_class(layer),
        "http": "httptools",
        "loop": loop,
        "lifespan": "off",
        "log_level": "warning",
        "access_log": False,
        "ws_per_message_deflate": False,
        "ws_ping_interval": None,
        "ws_max_size": MAX_SIZE,
        "backlog": BACKLOG,
        **overrides,
    }
    return uvicorn.Config(echo_app, **settings)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--layer", required=True, choices=LAYERS)
    parser.add_argument("--loop", default="uvloop", choices=["asyncio", "uvloop"])
    parser.add_argument("--core", type=int, default=None)
    parser.add_argument("--profile", metavar="FILE", default=None, help="cProfile output file")
    args = parser.parse_args(argv)

    import uvicorn

    pin(args.core)
    raise_nofile()
    loop = new_loop(args.loop)
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((HOST, 0))
    server = uvicorn.Server(config(args.layer, args.loop))

    def wait_for_quit() -> None:
        for line in sys.stdin:
            if '"quit"' in line:
                break
        loop.call_soon_threadsafe(setattr, server, "should_exit", True)

    threading.Thread(target=wait_for_quit, daemon=True).start()
    profiler = None
    if args.profile:
        import cProfile

        profiler = cProfile.Profile()

    async def serve() -> None:
        task = asyncio.create_task(server.serve(sockets=[sock]))
        while not server.started:
            if task.done():
                task.result()
            await asyncio.sleep(0.01)
        emit({"port": sock.getsockname()[1], "pid": os.getpid()})
        if profiler is not None:
            profiler.enable()
        await task

    try:
        loop.run_until_complete(serve())
    finally:
        if profiler is not None:
            profiler.disable()
            profiler.dump_stats(args.profile)
    os._exit(0)


if __name__ == "__main__":
    main()
