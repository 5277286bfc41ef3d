#!/usr/bin/env python
"""Echo server: sends every message back to its sender.

Run it, then talk to it with ``python examples/core/client.py``:

    python examples/core/echo_server.py --port 8765

Stop it with Ctrl-C (or SIGTERM): open connections are closed with 1001 (Going Away).
"""

from __future__ import annotations

import argparse
import asyncio
import signal

import wsend


async def echo(ws: wsend.ServerConnection) -> None:
    async for message in ws:
        await ws.send(message)


async def main(host: str, port: int) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    async with wsend.serve(echo, host, port) as server:
        print(f"listening on ws://{host}:{server.port}/", flush=True)
        await stop.wait()
    # Leaving the block ran server.shutdown(): 1001 to every client, handlers awaited.
    print("stopped", flush=True)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="localhost")
    parser.add_argument("--port", type=int, default=8765)
    args = parser.parse_args()
    asyncio.run(main(args.host, args.port))
