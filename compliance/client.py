"""Testee client for the Autobahn|Testsuite (``wstest -m fuzzingserver``).

Asks the fuzzing server how many cases it has, runs each one by echoing every message back until
the connection closes, then asks it to write the reports. Any kind of closed connection ends a
case: the suite judges the behavior from its side.

usage: python compliance/client.py [--url ws://127.0.0.1:9001] [--agent wsend] [--uvloop | --sync]

``--sync`` runs the threading client (``wsend.sync``) instead of the asyncio one.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import threading
import time

import wsend

MAX_MESSAGE_SIZE = 2**25  # 32 MiB: the suite's largest message is 16 MiB
CASE_TIMEOUT = 120.0  # seconds; the slowest cases (9.x, 12.x, 13.x) take a few seconds here


async def get_case_count(url: str) -> int:
    async with wsend.connect(f"{url}/getCaseCount") as ws:
        count = await ws.recv()
    return int(count)


async def run_case(url: str, case: int, agent: str) -> None:
    uri = f"{url}/runCase?case={case}&agent={agent}"
    try:
        async with (
            asyncio.timeout(CASE_TIMEOUT),
            wsend.connect(uri, compression="deflate", max_message_size=MAX_MESSAGE_SIZE) as ws,
        ):
            async for message in ws:
                await ws.send(message)
    except wsend.ConnectionClosed:
        pass  # expected: many cases end with an error or an abrupt close
    except (wsend.WebSocketError, OSError, TimeoutError) as exc:
        print(f"case {case}: {type(exc).__name__}: {exc}", file=sys.stderr, flush=True)


async def update_reports(url: str, agent: str) -> None:
    try:
        async with wsend.connect(f"{url}/updateReports?agent={agent}"):
            pass
    except wsend.ConnectionClosed:
        pass


async def main(url: str, agent: str) -> None:
    count = await get_case_count(url)
    print(f"running {count} cases against {url} as {agent!r}", flush=True)
    start = time.monotonic()
    for case in range(1, count + 1):
        await run_case(url, case, agent)
        if case % 50 == 0 or case == count:
            elapsed = time.monotonic() - start
            print(f"  {case}/{count} cases done ({elapsed:.0f} s)", flush=True)
    await update_reports(url, agent)


# -- the threading client ------------------------------------------------------------------------


def sync_get_case_count(url: str) -> int:
    with wsend.sync.connect(f"{url}/getCaseCount") as ws:
        return int(ws.recv())


def sync_run_case(url: str, case: int, agent: str) -> None:
    uri = f"{url}/runCase?case={case}&agent={agent}"
    try:
        with wsend.sync.connect(
            uri, compression="deflate", max_message_size=MAX_MESSAGE_SIZE
        ) as ws:
            timer = threading.Timer(CASE_TIMEOUT, ws.abort)
            timer.start()
            try:
                for message in ws:
                    ws.send(message)
            finally:
                timer.cancel()
    except wsend.ConnectionClosed:
        pass  # expected: many cases end with an error or an abrupt close
    except (wsend.WebSocketError, OSError, TimeoutError) as exc:
        print(f"case {case}: {type(exc).__name__}: {exc}", file=sys.stderr, flush=True)


def sync_main(url: str, agent: str) -> None:
    count = sync_get_case_count(url)
    print(f"running {count} cases against {url} as {agent!r} (threads)", flush=True)
    start = time.monotonic()
    for case in range(1, count + 1):
        sync_run_case(url, case, agent)
        if case % 50 == 0 or case == count:
            elapsed = time.monotonic() - start
            print(f"  {case}/{count} cases done ({elapsed:.0f} s)", flush=True)
    try:
        with wsend.sync.connect(f"{url}/updateReports?agent={agent}"):
            pass
    except wsend.ConnectionClosed:
        pass


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", default="ws://127.0.0.1:9001", help="the fuzzing server")
    parser.add_argument("--agent", default="wsend", help="the name in the reports")
    parser.add_argument("--uvloop", action="store_true", help="run on uvloop's event loop")
    parser.add_argument("--sync", action="store_true", help="run the threading client")
    return parser.parse_args(argv)


def run(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    url = args.url.rstrip("/")
    if args.sync:
        sync_main(url, args.agent)
    elif args.uvloop:
        import uvloop

        uvloop.run(main(url, args.agent))
    else:
        asyncio.run(main(url, args.agent))


if __name__ == "__main__":
    run()
