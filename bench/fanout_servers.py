"""Fan-out server worker: ``python -m bench.fanout_servers --system SYSTEM [--redis URL]``.

One publisher connection, one channel (room), many subscriber connections. Three systems do
the same job:

- ``hub``: wsend's hub (:class:`wsend.hub.Hub`) on ``/ws``, JSON codec, anonymous
  connections, a namespace where clients may publish (no history, no presence: a plain relay,
  like the other two). With ``--redis`` it runs on the Redis engine (several nodes).
- ``broadcast``: a bare wsend server: a message received on ``/pub`` is sent to every
  connection of ``/sub`` with :func:`wsend.broadcast`. With ``--redis`` the publisher's
  message goes through a Redis pub/sub channel and every worker broadcasts it to its own
  connections: the pattern for several worker processes (``docs/howto/broadcast.md``).
- ``socketio``: python-socketio's ``AsyncServer`` on aiohttp: clients ``join`` a room, a
  ``pub`` event is sent on to the room with ``emit``; with ``--redis``, its
  ``AsyncRedisManager``.

``--presence`` turns presence on in the hub's namespace (for the memory measurement).

Prints ``{"port": ..., "pid": ...}``, then answers JSON commands read from stdin, one per line:
``{"cmd": "count"}`` (subscribers in the channel on this node), ``{"cmd": "gc"}``,
``{"cmd": "quit"}``. Keepalive pings are off everywhere (hub ``ping_interval=0``,
socketio's interval an hour), as in the other scenarios.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import os
import sys
import threading
from collections.abc import Awaitable, Callable
from typing import Any

from .common import BACKLOG, HOST, emit, new_loop, pin, raise_nofile

CHANNEL = "bench"
SYSTEMS = ("hub", "broadcast", "socketio")

Counter = Callable[[], int]


async def start_hub(port: int, redis: str | None, presence: bool) -> tuple[Counter, int]:
    import wsend
    from wsend.hub.node import Hub
    from wsend.hub.options import HubOptions, NamespaceOptions, RateLimit

    unlimited = RateLimit(1e9, 1e9)
    options = HubOptions(
        allow_anonymous=True,
        namespaces={"": NamespaceOptions(publish=True, presence=presence)},
        commands_rate=unlimited,
        publications_rate=unlimited,
        ping_interval=0,
    )
    kwargs: dict[str, Any] = {}
    if redis:
        from wsend.hub.redis import engine_from_url

        broker, presence_engine = engine_from_url(redis, prefix="fanout")
        kwargs = {"broker": broker, "presence": presence_engine}
    hub = Hub(options, **kwargs)
    server = await wsend.serve(hub.handler, HOST, port, backlog=BACKLOG, **hub.serve_kwargs())
    await hub.start()
    channels = hub._channels  # the node's registry: channel -> local sessions

    def count() -> int:
        return len(channels.get(CHANNEL, ()))

    return count, server.port


async def start_broadcast(port: int, redis: str | None, presence: bool) -> tuple[Counter, int]:
    import wsend

    subscribers: set[Any] = set()
    relay: Any = None
    if redis:
        import redis.asyncio as aioredis

        relay = aioredis.from_url(redis)
        pubsub = relay.pubsub()
        await pubsub.subscribe(CHANNEL)

        async def listen() -> None:
            async for item in pubsub.listen():
                if item["type"] == "message":
                    wsend.broadcast(subscribers, item["data"].decode())

        asyncio.get_running_loop().create_task(listen())

    async def handler(ws: Any) -> None:
        assert ws.request is not None
        if ws.request.path == "/pub":
            async for message in ws:
                if relay is not None:
                    await relay.publish(CHANNEL, message)
                else:
                    wsend.broadcast(subscribers, message)
            return
        subscribers.add(ws)
        try:
            await ws.wait_closed()
        finally:
            subscribers.discard(ws)

    server = await wsend.serve(
        handler, HOST, port, backlog=BACKLOG, compression=None, ping_interval=None
    )
    return (lambda: len(subscribers)), server.port


async def start_socketio(port: int, redis: str | None, presence: bool) -> tuple[Counter, int]:
    import socketio
    from aiohttp import web

    manager = socketio.AsyncRedisManager(redis) if redis else None
    sio = socketio.AsyncServer(
        async_mode="aiohttp", client_manager=manager, ping_interval=3600, ping_timeout=3600
    )
    app = web.Application()
    sio.attach(app)

    @sio.on("join")  # type: ignore[misc]
    async def join(sid: str, room: str) -> None:
        await sio.enter_room(sid, room)

    @sio.on("pub")  # type: ignore[misc]
    async def pub(sid: str, data: Any) -> None:
        await sio.emit("msg", data, room=CHANNEL)

    runner = web.AppRunner(app, access_log=None, handle_signals=False)
    await runner.setup()
    site = web.TCPSite(runner, HOST, port, backlog=BACKLOG)
    await site.start()
    rooms = sio.manager.rooms

    def count() -> int:
        return len(rooms.get("/", {}).get(CHANNEL, ()))

    return count, runner.addresses[0][1]


Start = Callable[[int, str | None, bool], Awaitable[tuple[Counter, int]]]
STARTS: dict[str, Start] = {
    "hub": start_hub,
    "broadcast": start_broadcast,
    "socketio": start_socketio,
}


def serve_commands(loop: asyncio.AbstractEventLoop, count: Counter) -> None:
    """Answer the harness's commands (in a thread; the loop thread does the work)."""

    async def on_loop(fn: Callable[[], Any]) -> Any:
        return fn()

    for line in sys.stdin:
        if not line.strip():
            continue
        cmd = json.loads(line)
        name = cmd.get("cmd")
        if name == "quit":
            break
        if name == "count":
            emit({"count": asyncio.run_coroutine_threadsafe(on_loop(count), loop).result()})
        elif name == "gc":
            collected = asyncio.run_coroutine_threadsafe(on_loop(gc.collect), loop).result()
            emit({"collected": collected})
        else:
            emit({"error": f"unknown command {name}"})
    loop.call_soon_threadsafe(loop.stop)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--system", required=True, choices=SYSTEMS)
    parser.add_argument("--loop", default="uvloop", choices=["asyncio", "uvloop"])
    parser.add_argument("--core", type=int, default=None)
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--redis", default=None, help="redis:// URL: run on Redis")
    parser.add_argument("--presence", action="store_true", help="hub: presence on")
    args = parser.parse_args(argv)

    pin(args.core)
    raise_nofile()
    loop = new_loop(args.loop)
    count, port = loop.run_until_complete(STARTS[args.system](args.port, args.redis, args.presence))
    threading.Thread(target=serve_commands, args=(loop, count), daemon=True).start()
    emit({"port": port, "pid": os.getpid()})
    loop.run_forever()
    os._exit(0)  # skip the slow teardown of thousands of connections


if __name__ == "__main__":
    main()
