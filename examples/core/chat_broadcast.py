#!/usr/bin/env python
"""A tiny chat room: every message is broadcast to everyone connected.

    python examples/core/chat_broadcast.py --port 8766

Connect with ``ws://localhost:8766/?name=alice`` (from a browser, see docs/quickstart.md).

Each client gets its own bounded outbox queue and writer task, so a slow client never delays
the others: when its outbox is full, it is disconnected with 1013 (Try Again Later) instead
of letting its backlog grow without bound.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib

import wsend
from wsend import CloseCode, ServerConnection

OUTBOX_SIZE = 64  # messages waiting for one client before it counts as too slow

outboxes: dict[ServerConnection, asyncio.Queue[str]] = {}
closing: set[asyncio.Task[None]] = set()


def broadcast(message: str) -> None:
    """Queue ``message`` for every client; never waits."""
    for ws, outbox in list(outboxes.items()):
        try:
            outbox.put_nowait(message)
        except asyncio.QueueFull:
            del outboxes[ws]
            task = asyncio.create_task(ws.close(CloseCode.TRY_AGAIN_LATER, "too slow"))
            closing.add(task)  # keep a reference until it is done
            task.add_done_callback(closing.discard)


async def writer(ws: ServerConnection, outbox: asyncio.Queue[str]) -> None:
    with contextlib.suppress(wsend.ConnectionClosed):
        while True:
            await ws.send(await outbox.get())


async def chat(ws: ServerConnection) -> None:
    assert ws.request is not None
    name = ws.request.query.get("name", ["anonymous"])[0][:32]
    outbox: asyncio.Queue[str] = asyncio.Queue(OUTBOX_SIZE)
    outboxes[ws] = outbox
    task = asyncio.create_task(writer(ws, outbox))
    broadcast(f"* {name} joined")
    try:
        async for message in ws:
            if isinstance(message, str):
                broadcast(f"{name}: {message}")
    finally:
        outboxes.pop(ws, None)
        task.cancel()
        broadcast(f"* {name} left")


async def main(host: str, port: int) -> None:
    async with wsend.serve(chat, host, port) as server:
        print(f"chat room on ws://{host}:{server.port}/?name=yourname", flush=True)
        await server.serve_forever()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="localhost")
    parser.add_argument("--port", type=int, default=8766)
    args = parser.parse_args()
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(main(args.host, args.port))
