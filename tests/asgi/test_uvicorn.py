"""wsend as uvicorn's WebSocket layer: a real uvicorn serving Starlette, over loopback."""

from __future__ import annotations

import asyncio
import contextlib
import socket
from collections.abc import AsyncIterator
from typing import Any

import pytest
import uvicorn
from starlette.applications import Starlette
from starlette.routing import WebSocketRoute
from starlette.websockets import WebSocket

import wsend
from wsend.asgi import WSendProtocol


async def echo(ws: WebSocket) -> None:
    await ws.accept()
    while True:
        message = await ws.receive()
        if message["type"] == "websocket.disconnect":
            return
        if message.get("text") is not None:
            await ws.send_text(message["text"])
        else:
            await ws.send_bytes(message["bytes"])


async def refuse(ws: WebSocket) -> None:
    await ws.close()


async def fail(ws: WebSocket) -> None:
    await ws.accept()
    raise RuntimeError("boom")


APP = Starlette(
    routes=[
        WebSocketRoute("/", echo),
        WebSocketRoute("/refuse", refuse),
        WebSocketRoute("/fail", fail),
    ]
)


@contextlib.asynccontextmanager
async def running(app: Any = APP, **config: Any) -> AsyncIterator[str]:
    """Run uvicorn with wsend's layer in this loop; yield the base ws:// URI."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    server = uvicorn.Server(
        uvicorn.Config(app, ws=WSendProtocol, lifespan="off", log_level="warning", **config)
    )
    task = asyncio.create_task(server.serve(sockets=[sock]))
    for _ in range(500):
        if server.started or task.done():
            break
        await asyncio.sleep(0.01)
    assert server.started
    try:
        yield f"ws://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        await asyncio.wait_for(task, 15)
        sock.close()


@pytest.mark.parametrize("http", ["httptools", "h11"])
async def test_echo_text_and_bytes_with_compression(http: str) -> None:
    async with running(http=http) as uri, wsend.connect(uri + "/") as ws:
        await ws.send("hello")
        assert await ws.recv() == "hello"
        await ws.send(b"\x00" * 200_000)
        assert await ws.recv() == b"\x00" * 200_000
        assert ws.extensions == ["permessage-deflate"]


async def test_close_before_accept_is_403() -> None:
    async with running() as uri:
        with pytest.raises(wsend.InvalidStatus) as info:
            await wsend.connect(uri + "/refuse")
        assert info.value.status_code == 403


async def test_app_exception_closes_with_1011() -> None:
    async with running() as uri, wsend.connect(uri + "/fail") as ws:
        with pytest.raises(wsend.ConnectionClosed):
            await ws.recv()
        assert ws.close_code == 1011


async def test_message_too_big_closes_with_1009() -> None:
    async with running(ws_max_size=1000) as uri, wsend.connect(uri + "/") as ws:
        await ws.send(b"x" * 2000)
        with pytest.raises(wsend.ConnectionClosed):
            await ws.recv()
        assert ws.close_code == 1009


async def test_shutdown_closes_with_1012() -> None:
    async with contextlib.AsyncExitStack() as stack:
        uri = await stack.enter_async_context(running())
        ws = await wsend.connect(uri + "/")
        await stack.aclose()
        await ws.wait_closed()
        assert ws.close_code == 1012
