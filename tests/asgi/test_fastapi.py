"""A FastAPI application (``tests/asgi/apps.py``) on a live uvicorn with wsend's layer: path and
query parameters, dependencies with cookie or query credentials, ``WebSocketException`` before
and after accepting, validation errors, a chat room, subprotocols, compression, and a plain HTTP
route beside the WebSocket endpoints; with wsend's client and websockets' client."""

from __future__ import annotations

import json

import httpx
import pytest
from websockets.asyncio.client import connect as websockets_connect

from .apps import create_app
from .clients import CLIENTS, Closed, connect, refused
from .serving import serve

pytestmark = pytest.mark.parametrize("lib", CLIENTS)


async def test_parameters_dependencies_and_json(lib: str) -> None:
    async with (
        serve(create_app()) as served,
        connect(lib, served.url("/items/42?q=7&token=secret")) as ws,
    ):
        assert json.loads(await ws.recv()) == {"item_id": 42, "q": 7, "user": "ann"}
        for n in range(3):
            await ws.send(json.dumps({"n": n, "text": "数据"}))
            assert json.loads(await ws.recv()) == {"count": n + 1, "data": {"n": n, "text": "数据"}}


async def test_credentials_from_a_cookie(lib: str) -> None:
    headers = {"Cookie": "session=other"}
    async with (
        serve(create_app()) as served,
        connect(lib, served.url("/items/1"), headers=headers) as ws,
    ):
        assert json.loads(await ws.recv())["user"] == "ben"


@pytest.mark.parametrize(
    "path",
    ["/items/1", "/items/1?token=wrong", "/items/abc?token=secret", "/items/1?token=secret&q=x"],
    ids=["no-token", "wrong-token", "item-not-int", "q-not-int"],
)
async def test_refused_before_accepting(lib: str, path: str) -> None:
    async with serve(create_app()) as served:
        refusal = await refused(lib, served.url(path))
    # WebSocketException and validation errors close before accepting: uvicorn's 403.
    assert refusal.status == 403


async def test_chat_room(lib: str) -> None:
    async with serve(create_app()) as served, connect(lib, served.url("/chat?name=ann")) as ann:
        assert json.loads(await ann.recv()) == {"joined": "ann"}
        async with connect(lib, served.url("/chat?name=ben")) as ben:
            assert json.loads(await ann.recv()) == {"joined": "ben"}
            assert json.loads(await ben.recv()) == {"joined": "ben"}
            await ben.send("hi ann")
            for member in (ann, ben):
                assert json.loads(await member.recv()) == {"from": "ben", "text": "hi ann"}
        assert json.loads(await ann.recv()) == {"left": "ben"}


async def test_subprotocol_and_application_close(lib: str) -> None:
    async with serve(create_app()) as served:
        async with connect(lib, served.url("/proto"), subprotocols=["chat.v1", "chat.v2"]) as ws:
            assert ws.subprotocol == "chat.v2"
            assert await ws.recv() == "ws"
            with pytest.raises(Closed) as closed:
                await ws.recv()
        assert (closed.value.code, closed.value.reason) == (4000, "done")
        assert (await refused(lib, served.url("/proto"))).status == 403


async def test_echo_and_http_route_side_by_side(lib: str) -> None:
    async with serve(create_app()) as served:
        async with connect(lib, served.url("/echo")) as ws:
            for message in ("text ✓", b"\x00binary", "x" * 100_000):
                await ws.send(message)
                assert await ws.recv() == message
        async with httpx.AsyncClient() as http:
            response = await http.get(served.url("/hello", scheme="http"))
        assert response.json() == {"hello": "world"}


async def test_compression_negotiated_with_websockets_client(lib: str) -> None:
    async with serve(create_app()) as served:
        if lib == "websockets":
            async with websockets_connect(served.url("/echo"), compression="deflate") as ws:
                assert "permessage-deflate" in ws.response.headers["Sec-WebSocket-Extensions"]
                await ws.send("a" * 10_000)
                assert await ws.recv() == "a" * 10_000
        else:
            async with connect(lib, served.url("/echo")) as ours:
                assert ours.ws.extensions == ["permessage-deflate"]
