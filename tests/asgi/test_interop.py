"""Clients of other libraries against uvicorn with wsend's layer: websockets, aiohttp and Node's
``ws`` (the peers of ``tests/interop``), with and without permessage-deflate.

The ASGI application echoes every message and closes with ``CLOSE_CODE`` and ``CLOSE_REASON``
when it receives ``CLOSE_COMMAND``; each pairing checks the messages (text, binary, empty,
1 MiB, a batch in order), the extension negotiated, the close code each side sees whichever
side closes, and the disconnect event the application received. Without Node.js the Node
pairing is skipped, except under CI, where it fails.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from ..interop.test_interop import (
    CLOSE_CODE,
    CLOSE_COMMAND,
    CLOSE_REASON,
    MAX_SIZE,
    MESSAGES,
    ORDERED,
    PeerRun,
    aiohttp_client,
    expected_extensions,
    node,
    node_client,
    websockets_client,
)
from .serving import Receive, Scope, Send, serve, until

__all__ = ["node"]  # the fixture, imported for the Node pairing

pytestmark = pytest.mark.timeout(60)


def echo_until_told(events: list[Any]) -> Any:
    """Echo; close with CLOSE_CODE on CLOSE_COMMAND; record the disconnect event."""

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        await receive()
        await send({"type": "websocket.accept"})
        while True:
            message = await receive()
            if message["type"] == "websocket.disconnect":
                events.append(message)
                return
            if message.get("text") == CLOSE_COMMAND:
                await send({"type": "websocket.close", "code": CLOSE_CODE, "reason": CLOSE_REASON})
            else:
                data = {"bytes": message.get("bytes"), "text": message.get("text")}
                await send({"type": "websocket.send", **data})

    return app


@pytest.fixture(params=["websockets", "aiohttp", "node"])
def peer_client(request: pytest.FixtureRequest) -> Callable[..., Any]:
    if request.param == "websockets":
        return websockets_client
    if request.param == "aiohttp":
        return aiohttp_client
    node_path = request.getfixturevalue("node")

    async def run(*args: Any) -> PeerRun:
        return await node_client(node_path, *args)

    return run


@pytest.mark.parametrize("compression", ["deflate", None])
async def test_their_clients_echo(peer_client: Callable[..., Any], compression: str | None) -> None:
    events: list[Any] = []
    config = {"ws_max_size": MAX_SIZE, "ws_per_message_deflate": True}
    async with serve(echo_until_told(events), **config) as served:
        run: PeerRun = await peer_client(served.url(), compression, MESSAGES, False)
        await until(lambda: bool(events))
    assert run.extensions == expected_extensions(compression)
    assert run.received == [*MESSAGES, *ORDERED]
    assert [type(m) for m in run.received] == [type(m) for m in [*MESSAGES, *ORDERED]]
    assert run.close[0] == 1000
    assert events == [{"type": "websocket.disconnect", "code": 1000, "reason": ""}]


@pytest.mark.parametrize("compression", ["deflate", None])
async def test_application_closes_their_clients(
    peer_client: Callable[..., Any], compression: str | None
) -> None:
    events: list[Any] = []
    async with serve(echo_until_told(events), ws_max_size=MAX_SIZE) as served:
        run: PeerRun = await peer_client(served.url(), compression, ["before closing"], True)
        await until(lambda: bool(events))
    assert run.received == ["before closing", *ORDERED]
    assert run.close[0] == CLOSE_CODE
    assert run.close[1] in (CLOSE_REASON, None)  # aiohttp's client does not keep the reason
    assert events == [{"type": "websocket.disconnect", "code": CLOSE_CODE, "reason": CLOSE_REASON}]
