#!/usr/bin/env python
"""Client: connects, sends each argument as a text message, prints the replies.

    python examples/core/client.py ws://localhost:8765/ hello world
    python examples/core/client.py --json ws://localhost:8765/ '{"n": 1}'

With no message arguments it reads lines from standard input until end of file.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys

import wsend


async def main(uri: str, messages: list[str], as_json: bool) -> None:
    async with wsend.connect(uri) as ws:
        print(f"connected; subprotocol={ws.protocol} extensions={ws.extensions}", flush=True)
        lines = messages or [line.rstrip("\n") for line in sys.stdin]
        for line in lines:
            if as_json:
                await ws.send_json(json.loads(line))
                reply = await ws.recv_json()
            else:
                await ws.send(line)
                reply = await ws.recv()
            print(f"< {reply!r}", flush=True)
        print(f"round trip: {await ws.ping() * 1000:.2f} ms", flush=True)
    print(f"closed with {ws.close_code} {ws.close_reason!r}", flush=True)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("uri", nargs="?", default="ws://localhost:8765/")
    parser.add_argument("messages", nargs="*")
    parser.add_argument("--json", action="store_true", help="send and receive JSON")
    args = parser.parse_args()
    try:
        asyncio.run(main(args.uri, args.messages, args.json))
    except wsend.InvalidStatus as exc:
        sys.exit(f"refused: HTTP {exc.status_code} {exc.body.decode(errors='replace').strip()}")
    except (OSError, wsend.WebSocketError) as exc:
        sys.exit(f"failed: {exc}")
