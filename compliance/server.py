"""Testee server for the Autobahn|Testsuite (``wstest -m fuzzingclient``).

Echoes every message back with its type (text stays text, binary stays binary), with
permessage-deflate enabled and a 32 MiB message limit, large enough for the suite's biggest
cases (9.x sends messages of up to 16 MiB).

usage: python compliance/server.py [--host 127.0.0.1] [--port 9002] [--uvloop | --sync]

``--sync`` runs the threading server (``wsend.sync``) instead of the asyncio one.

Prints "listening on HOST:PORT" on stdout once it accepts connections; stops on SIGINT/SIGTERM.
"""

from __future__ import annotations

import argparse
import asyncio
import signal
import threading

import wsend

MAX_MESSAGE_SIZE = 2**25  # 32 MiB: the suite's largest message is 16 MiB


async def echo(ws) -> None:  # type: ignore[no-untyped-def]
    """Sends every message back until the connection closes."""
    try:
        async for message in ws:
            await ws.send(message)
    except wsend.ConnectionClosed:
        # The suite closes connections abnormally on purpose; nothing to report.
        pass


async def main(host: str, port: int) -> None:
    loop = asyncio.get_running_loop()
    stop = loop.create_future()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set_result, None)
    async with wsend.serve(
        echo,
        host,
        port,
        compression="deflate",
        max_message_size=MAX_MESSAGE_SIZE,
    ) as server:
        print(f"listening on {host}:{server.port}", flush=True)
        await stop


def sync_echo(ws) -> None:  # type: ignore[no-untyped-def]
    """Sends every message back until the connection closes (threading server)."""
    try:
        for message in ws:
            ws.send(message)
    except wsend.ConnectionClosed:
        pass


def sync_main(host: str, port: int) -> None:
    with wsend.sync.serve(
        sync_echo, host, port, compression="deflate", max_message_size=MAX_MESSAGE_SIZE
    ) as server:

        def stop(*_: object) -> None:
            threading.Thread(target=server.shutdown).start()

        for signum in (signal.SIGINT, signal.SIGTERM):
            signal.signal(signum, stop)
        print(f"listening on {host}:{server.port}", flush=True)
        server.serve_forever()


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=9002)
    parser.add_argument("--uvloop", action="store_true", help="run on uvloop's event loop")
    parser.add_argument("--sync", action="store_true", help="run the threading server")
    return parser.parse_args(argv)


def run(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    if args.sync:
        sync_main(args.host, args.port)
    elif args.uvloop:
        import uvloop

        uvloop.run(main(args.host, args.port))
    else:
        asyncio.run(main(args.host, args.port))


if __name__ == "__main__":
    run()
