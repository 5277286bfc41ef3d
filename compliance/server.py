"""Testee server for the Autobahn|Testsuite (``wstest -m fuzzingclient``).

Echoes every message back with its type (text stays text, binary stays binary), with
permessage-deflate enabled and a 32 MiB message limit, large enough for the suite's biggest
cases (9.x sends messages of up to 16 MiB).

usage: python compliance/server.py [--host 127.0.0.1] [--port 9002] [--uvloop]

Prints "listening on HOST:PORT" on stdout once it accepts connections; stops on SIGINT/SIGTERM.
"""

from __future__ import annotations

import argparse
import asyncio
import signal

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


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=9002)
    parser.add_argument("--uvloop", action="store_true", help="run on uvloop's event loop")
    return parser.parse_args(argv)


def run(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    if args.uvloop:
        import uvloop

        uvloop.run(main(args.host, args.port))
    else:
        asyncio.run(main(args.host, args.port))


if __name__ == "__main__":
    run()
