#!/usr/bin/env python
"""Authenticated server: a bearer token from a header, the query string or a cookie.

    python examples/core/auth_server.py --port 8767
    python examples/core/client.py "ws://localhost:8767/?token=alice-token" hello

Browsers connecting from another site are refused (403) by the Origin allowlist: with cookie
authentication, that check is what stops cross-site WebSocket hijacking.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib

import wsend
from wsend import Request, Response, ServerConnection

# In a real application: look the token up in a database, or verify a signed token (JWT).
TOKENS = {"alice-token": "alice", "bob-token": "bob"}


async def check_token(token: str) -> str | None:
    """Return the user the token belongs to, or None to refuse it (401)."""
    return TOKENS.get(token)


def only_chat_path(ws: ServerConnection, request: Request) -> Response | None:
    """A custom hook: refuse upgrades on paths other than / and /chat (404)."""
    if request.path not in ("/", "/chat"):
        return Response.text(404, "Not Found\n")
    return None


async def hello(ws: ServerConnection) -> None:
    async for message in ws:
        if isinstance(message, str):
            await ws.send(f"{ws.user} said: {message}")


async def main(host: str, port: int) -> None:
    async with wsend.serve(
        hello,
        host,
        port,
        # Hooks run in order; the first to return a Response refuses the upgrade with it.
        process_request=[only_chat_path, wsend.token_auth(check_token, cookie="session")],
        # Browsers send Origin; None lets non-browser clients (which send none) in.
        origins=["http://localhost:8000", "https://app.example.com", None],
    ) as server:
        print(f"listening on ws://{host}:{server.port}/", flush=True)
        await server.serve_forever()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="localhost")
    parser.add_argument("--port", type=int, default=8767)
    args = parser.parse_args()
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(main(args.host, args.port))
