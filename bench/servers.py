"""Echo server worker: ``python -m bench.servers --lib LIB --loop LOOP [--tls DIR]``.

Starts one server on 127.0.0.1 (free port), prints ``{"port": ..., "pid": ...}`` and then
answers JSON commands read from stdin, one per line:

- ``{"cmd": "count"}``: number of open WebSocket connections;
- ``{"cmd": "broadcast", "size": N, "floor": false}``: send one binary message to every
  connection (with ``"floor": true``, the floor's way: ``os.write`` of a prebuilt frame to each
  socket, whatever the library); answers
  ``{"t0": ..., "t1": ...}`` (``time.perf_counter()`` before and after, a system-wide
  monotonic clock on Linux, so comparable with the client process's);
- ``{"cmd": "gc"}``: run the garbage collector;
- ``{"cmd": "quit"}`` (or end of input): stop.

Every server echoes each message back (binary as binary, text as text), holds no message size
limit, sends no keepalive pings, and negotiates permessage-deflate only with ``--compression``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gc
import json
import os
import sys
import threading
import time
from collections.abc import Awaitable, Callable
from typing import Any

from .common import BACKLOG, HOST, Framer, emit, new_loop, pin, raise_nofile, server_ssl_context

Conns = set[Any]


async def start_wsend(
    conns: Conns,
    ssl: Any,
    compression: bool,
    fast_transport: bool | None = None,
    callbacks: bool = False,
) -> tuple[Any, int]:
    import wsend

    async def handler(ws: Any) -> None:
        conns.add(ws)
        try:
            if callbacks:
                ws.on_message = ws.send_nowait
                await ws.wait_closed()
            else:
                async for message in ws:
                    await ws.send(message)
        except wsend.ConnectionClosed:
            pass
        finally:
            conns.discard(ws)

    server = await wsend.serve(
        handler,
        HOST,
        0,
        ssl=ssl,
        compression="deflate" if compression else None,
        ping_interval=None,
        max_message_size=None,
        backlog=BACKLOG,
        fast_transport=fast_transport,
    )
    return server, server.port


async def start_wsend_asyncio(conns: Conns, ssl: Any, compression: bool) -> tuple[Any, int]:
    """wsend on asyncio's own transports, even where aiofastnet is installed."""
    return await start_wsend(conns, ssl, compression, fast_transport=False)


async def start_wsend_callbacks(conns: Conns, ssl: Any, compression: bool) -> tuple[Any, int]:
    """wsend's callback API: ``on_message`` receives, ``send_nowait()`` answers."""
    return await start_wsend(conns, ssl, compression, callbacks=True)


async def broadcast_wsend(conns: Conns, message: bytes) -> None:
    import wsend

    helper = getattr(wsend, "broadcast", None)
    if helper is not None:
        result = helper(list(conns), message)
        if asyncio.iscoroutine(result):
            await result
        return
    for ws in list(conns):
        with contextlib.suppress(wsend.ConnectionClosed):
            await ws.send(message)


async def start_websockets(conns: Conns, ssl: Any, compression: bool) -> tuple[Any, int]:
    from websockets.asyncio.server import serve
    from websockets.exceptions import ConnectionClosed

    async def handler(ws: Any) -> None:
        conns.add(ws)
        try:
            async for message in ws:
                await ws.send(message)
        except ConnectionClosed:
            pass
        finally:
            conns.discard(ws)

    server = await serve(
        handler,
        HOST,
        0,
        ssl=ssl,
        compression="deflate" if compression else None,
        max_size=None,
        max_queue=None,
        ping_interval=None,
        backlog=BACKLOG,
    )
    return server, server.sockets[0].getsockname()[1]


async def broadcast_websockets(conns: Conns, message: bytes) -> None:
    from websockets.asyncio.server import broadcast

    broadcast(conns, message)


async def start_aiohttp(conns: Conns, ssl: Any, compression: bool) -> tuple[Any, int]:
    from aiohttp import WSMsgType, web

    async def handler(request: Any) -> Any:
        ws = web.WebSocketResponse(compress=compression, heartbeat=None, max_msg_size=0)
        await ws.prepare(request)
        conns.add(ws)
        try:
            async for msg in ws:
                if msg.type is WSMsgType.BINARY:
                    await ws.send_bytes(msg.data)
                elif msg.type is WSMsgType.TEXT:
                    await ws.send_str(msg.data)
        finally:
            conns.discard(ws)
        return ws

    app = web.Application()
    app.router.add_get("/", handler)
    runner = web.AppRunner(app, access_log=None, handle_signals=False)
    await runner.setup()
    site = web.TCPSite(runner, HOST, 0, ssl_context=ssl, backlog=BACKLOG)
    await site.start()
    return runner, runner.addresses[0][1]


async def broadcast_aiohttp(conns: Conns, message: bytes) -> None:
    for ws in list(conns):
        with contextlib.suppress(ConnectionError, RuntimeError):
            await ws.send_bytes(message)


async def start_picows(conns: Conns, ssl: Any, compression: bool) -> tuple[Any, int]:
    if compression:
        raise SystemExit("picows does not implement permessage-deflate")
    from picows import WSListener, WSMsgType, ws_create_server

    data_types = (WSMsgType.BINARY, WSMsgType.TEXT, WSMsgType.CONTINUATION)

    class Echo(WSListener):  # type: ignore[misc]
        def on_ws_connected(self, transport: Any) -> None:
            conns.add(transport)

        def on_ws_frame(self, transport: Any, frame: Any) -> None:
            msg_type = frame.msg_type
            if msg_type in data_types:
                transport.send(msg_type, frame.get_payload_as_memoryview(), frame.fin)
            elif msg_type == WSMsgType.CLOSE:
                transport.send_close(frame.get_close_code())
                transport.disconnect()

        def on_ws_disconnected(self, transport: Any) -> None:
            conns.discard(transport)

    server = await ws_create_server(lambda request: Echo(), HOST, 0, ssl=ssl, backlog=BACKLOG)
    return server, server.sockets[0].getsockname()[1]


async def broadcast_picows(conns: Conns, message: bytes) -> None:
    from picows import WSMsgType

    for transport in list(conns):
        transport.send(WSMsgType.BINARY, message)


class RawEcho(asyncio.Protocol):
    """The ceiling: length-prefixed messages echoed over plain asyncio, bytes as they come."""

    def __init__(self, conns: Conns) -> None:
        self.conns = conns
        self.framer = Framer()

    def connection_made(self, transport: Any) -> None:
        self.transport = transport
        self.conns.add(transport)

    def connection_lost(self, exc: Exception | None) -> None:
        self.conns.discard(self.transport)

    def data_received(self, data: bytes) -> None:
        self.framer.feed(data)
        self.transport.write(data)

    # Flow control, as any sound server does: stop reading while the peer doesn't read.
    def pause_writing(self) -> None:
        self.transport.pause_reading()

    def resume_writing(self) -> None:
        self.transport.resume_reading()


async def start_raw(conns: Conns, ssl: Any, compression: bool) -> tuple[Any, int]:
    loop = asyncio.get_running_loop()
    server = await loop.create_server(lambda: RawEcho(conns), HOST, 0, ssl=ssl, backlog=BACKLOG)
    return server, server.sockets[0].getsockname()[1]


async def broadcast_raw(conns: Conns, message: bytes) -> None:
    framed = len(message).to_bytes(4, "big") + message
    for transport in list(conns):
        transport.write(framed)


_floor_fds: dict[int, list[int]] = {}


def floor_fds(conns: Conns) -> list[int]:
    """The connections' file descriptors, looked up once per number of connections."""
    fds = _floor_fds.get(len(conns))
    if fds is None:
        fds = [ws.transport.get_extra_info("socket").fileno() for ws in conns]
        _floor_fds.clear()
        _floor_fds[len(conns)] = fds
    return fds


async def broadcast_floor(conns: Conns, message: bytes) -> None:
    """The floor of any broadcast: one ``os.write`` of a prebuilt frame per socket.

    The connections are wsend's (for the handshakes); the frame goes straight to each socket,
    skipping every library layer: what remains is the system call, which no library avoids.
    The file descriptors are looked up once, before the first round is timed.
    """
    from wsend.protocol.frames import Opcode, serialize_frame

    fds = floor_fds(conns)
    frame = b"".join(serialize_frame(Opcode.BINARY, message))
    write = os.write
    for fd in fds:
        write(fd, frame)


Start = Callable[[Conns, Any, bool], Awaitable[tuple[Any, int]]]
Broadcast = Callable[[Conns, bytes], Awaitable[None]]
SERVERS: dict[str, tuple[Start, Broadcast]] = {
    "wsend": (start_wsend, broadcast_wsend),
    "wsend-asyncio": (start_wsend_asyncio, broadcast_wsend),
    "wsend-callbacks": (start_wsend_callbacks, broadcast_wsend),
    "picows": (start_picows, broadcast_picows),
    "aiohttp": (start_aiohttp, broadcast_aiohttp),
    "websockets": (start_websockets, broadcast_websockets),
    "raw": (start_raw, broadcast_raw),
    "floor": (start_wsend, broadcast_floor),
}


def serve_commands(loop: asyncio.AbstractEventLoop, conns: Conns, broadcast: Broadcast) -> None:
    """Answer the harness's commands (runs in a thread; the loop thread does the work)."""

    async def timed_broadcast(size: int, floor: bool) -> dict[str, float]:
        message = os.urandom(size)
        send = broadcast_floor if floor else broadcast
        if floor:
            floor_fds(conns)
        t0 = time.perf_counter()
        await send(conns, message)
        t1 = time.perf_counter()
        return {"t0": t0, "t1": t1, "n": len(conns)}

    async def collect() -> dict[str, int]:
        return {"collected": gc.collect()}

    for line in sys.stdin:
        if not line.strip():
            continue
        try:
            cmd = json.loads(line)
            name = cmd["cmd"]
        except (ValueError, KeyError, TypeError):
            emit({"error": f"bad command {line!r}"})
            continue
        if name == "quit":
            break
        try:
            if name == "count":
                emit({"count": len(conns)})
            elif name == "broadcast":
                coro = timed_broadcast(cmd["size"], bool(cmd.get("floor")))
                emit(asyncio.run_coroutine_threadsafe(coro, loop).result())
            elif name == "gc":
                emit(asyncio.run_coroutine_threadsafe(collect(), loop).result())
            else:
                emit({"error": f"unknown command {name}"})
        except Exception as exc:
            emit({"error": f"{type(exc).__name__}: {exc}"})
    loop.call_soon_threadsafe(loop.stop)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--lib", required=True, choices=sorted(SERVERS))
    parser.add_argument("--loop", default="asyncio", choices=["asyncio", "uvloop"])
    parser.add_argument("--core", type=int, default=None)
    parser.add_argument("--tls", metavar="CERTDIR", default=None)
    parser.add_argument("--compression", action="store_true")
    parser.add_argument("--profile", metavar="FILE", default=None, help="cProfile output file")
    args = parser.parse_args(argv)

    pin(args.core)
    raise_nofile()
    loop = new_loop(args.loop)
    start, broadcast = SERVERS[args.lib]
    ssl = server_ssl_context(args.tls) if args.tls else None
    conns: Conns = set()
    _server, port = loop.run_until_complete(start(conns, ssl, args.compression))
    threading.Thread(target=serve_commands, args=(loop, conns, broadcast), daemon=True).start()
    profiler = None
    if args.profile:
        import cProfile

        profiler = cProfile.Profile()
        profiler.enable()
    emit({"port": port, "pid": os.getpid()})
    try:
        loop.run_forever()
    finally:
        if profiler is not None:
            profiler.disable()
            profiler.dump_stats(args.profile)
    os._exit(0)  # skip slow teardown of thousands of connections


if __name__ == "__main__":
    main()
