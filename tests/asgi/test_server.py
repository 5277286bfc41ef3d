"""wsend's uvicorn layer and uvicorn's server: shutdown, TLS, proxy headers, Unix sockets."""

from __future__ import annotations

import asyncio
import contextlib
import os
import tempfile
from typing import Any

import pytest
import uvicorn
from uvicorn.server import ServerState

import wsend
from wsend.asgi import WSendProtocol

from ..asyncio.helpers import close_payload, frame
from ..conftest import Certs
from .serving import (
    Message,
    Receive,
    Scope,
    Send,
    Served,
    echo,
    raw_upgrade,
    read_frame,
    read_head,
    serve,
    until,
)


def recording_echo(events: list[Any]) -> Any:
    """An echo application that records its scope and its disconnect event."""

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        events.append(scope)
        await receive()
        await send({"type": "websocket.accept"})
        while True:
            message = await receive()
            if message["type"] == "websocket.disconnect":
                events.append(message)
                return
            await send({"type": "websocket.send", "text": message.get("text")})

    return app


async def test_shutdown_closes_with_1012() -> None:
    events: list[Any] = []
    async with contextlib.AsyncExitStack() as stack:
        served = await stack.enter_async_context(serve(recording_echo(events)))
        ws = await wsend.connect(served.url())
        await ws.send("before")
        assert await ws.recv() == "before"
        await stack.aclose()  # uvicorn shuts down while the connection is open
    with pytest.raises(wsend.ConnectionClosed):
        await ws.recv()
    assert ws.close_code == 1012
    assert events[1] == {"type": "websocket.disconnect", "code": 1012, "reason": ""}


async def test_shutdown_before_accepting_answers_500() -> None:
    events: list[Any] = []
    accept = asyncio.Event()

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        await receive()
        await accept.wait()
        try:
            await send({"type": "websocket.accept"})
        except OSError as exc:
            events.append(exc)
        events.append(await receive())

    async with contextlib.AsyncExitStack() as stack:
        served = await stack.enter_async_context(serve(app))
        connecting = asyncio.ensure_future(wsend.connect(served.url()))
        await until(lambda: bool(served.connections))
        served.server.should_exit = True
        with pytest.raises(wsend.InvalidStatus) as info:
            await connecting
        assert info.value.status_code == 500
        accept.set()
    assert isinstance(events[0], wsend.ClientDisconnected)
    assert events[1] == {"type": "websocket.disconnect", "code": 1006, "reason": ""}


async def test_shutdown_during_a_denial_response_drops_it() -> None:
    finish = asyncio.Event()

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        await receive()
        await send({"type": "websocket.http.response.start", "status": 403})
        await finish.wait()
        await send({"type": "websocket.http.response.body", "body": b"too late"})

    async with contextlib.AsyncExitStack() as stack:
        served = await stack.enter_async_context(serve(app))
        connecting = asyncio.ensure_future(wsend.connect(served.url()))
        await until(lambda: bool(served.connections))
        served.server.should_exit = True
        with pytest.raises(wsend.InvalidMessage):
            await connecting  # the connection closed with no response
        finish.set()


async def test_applications_outliving_the_grace_period_are_cancelled() -> None:
    events: list[Any] = []

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        await receive()
        await send({"type": "websocket.accept"})
        try:
            await asyncio.Event().wait()  # never reads: ignores the shutdown
        except asyncio.CancelledError:
            events.append("cancelled")
            raise

    async with contextlib.AsyncExitStack() as stack:
        served = await stack.enter_async_context(serve(app, timeout_graceful_shutdown=0.2))
        ws = await wsend.connect(served.url())
        await stack.aclose()
    await ws.wait_closed()
    assert ws.close_code == 1012
    assert events == ["cancelled"]


async def test_tls(certs: Certs) -> None:
    events: list[Any] = []
    config = {"ssl_certfile": certs.certfile, "ssl_keyfile": certs.keyfile}
    async with serve(recording_echo(events), **config) as served:
        async with wsend.connect(served.url(scheme="wss"), ssl=certs.client_context) as ws:
            await ws.send("secret")
            assert await ws.recv() == "secret"
            assert ws.extensions == ["permessage-deflate"]
        await until(lambda: len(events) == 2)
    assert events[0]["scheme"] == "wss"


@pytest.mark.parametrize(("proto", "scheme"), [("https", "wss"), ("http", "ws")])
async def test_proxy_headers(proto: str, scheme: str) -> None:
    events: list[Any] = []
    config = {"proxy_headers": True, "forwarded_allow_ips": "*"}
    headers = {"X-Forwarded-For": "203.0.113.7, 10.0.0.1", "X-Forwarded-Proto": proto}
    async with serve(recording_echo(events), **config) as served:
        async with wsend.connect(served.url(), headers=headers):
            pass
        await until(lambda: len(events) == 2)
    assert events[0]["client"] == ("203.0.113.7", 0)  # every proxy trusted: the first address
    assert events[0]["scheme"] == scheme


async def test_unix_socket() -> None:
    events: list[Any] = []
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "ws.sock")
        server = uvicorn.Server(
            uvicorn.Config(
                recording_echo(events),
                ws=WSendProtocol,
                uds=path,
                lifespan="off",
                log_config=None,
                log_level="warning",
            )
        )
        task = asyncio.create_task(server.serve())
        try:
            await until(lambda: server.started)
            async with wsend.connect("ws://localhost/unix", path=path) as ws:
                await ws.send("local")
                assert await ws.recv() == "local"
        finally:
            server.should_exit = True
            await asyncio.wait_for(task, 20)
    scope = events[0]
    assert scope["path"] == "/unix"
    assert scope["client"] is None
    assert scope["server"] == (path, None)


async def test_the_protocol_loads_uvicorns_config() -> None:
    config = uvicorn.Config(echo, ws=WSendProtocol, log_config=None)
    assert not config.loaded
    protocol = WSendProtocol(config, ServerState(), {})
    assert config.loaded
    assert protocol.app is config.loaded_app
    # Connections of one configuration share its settings.
    assert WSendProtocol(config, ServerState(), {}).server is protocol.server


async def test_import_path_in_uvicorns_config() -> None:
    """``Config(ws="wsend.asgi:WSendProtocol")`` (uvicorn imports it; also ``--ws``)."""
    async with serve(echo, ws="wsend.asgi:WSendProtocol") as served:
        async with wsend.connect(served.url()) as ws:
            await ws.send(b"by name")
            assert await ws.recv() == b"by name"
        assert served.server.config.ws_protocol_class is WSendProtocol


async def test_many_connections_at_once() -> None:
    async with serve(echo) as served:

        async def one(n: int) -> Message:
            async with wsend.connect(served.url()) as ws:
                await ws.send(f"{n}")
                return {"n": await ws.recv()}

        results = await asyncio.gather(*(one(n) for n in range(50)))
        assert [r["n"] for r in results] == [f"{n}" for n in range(50)]
        await until(lambda: not served.connections)


async def shutting_down(served: Served) -> None:
    """Start uvicorn's shutdown and wait until it has told every connection."""
    served.server.should_exit = True
    # uvicorn stops listening, then calls shutdown() on each connection, in one step.
    await until(lambda: not any(s.is_serving() for s in served.server.servers))


async def test_shutdown_leaves_a_closing_handshake_alone() -> None:
    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        await receive()
        await send({"type": "websocket.accept"})
        await send({"type": "websocket.close", "code": 4000})
        await receive()

    async with serve(app) as served, raw_upgrade(served) as (reader, writer):
        assert (await read_head(reader))[0] == 101
        assert await read_frame(reader) == (0x8, close_payload(4000))
        await shutting_down(served)
        writer.write(frame(0x8, close_payload(4000), mask=True))
        assert await reader.read() == b""  # no 1012 frame: the server just closes


async def test_shutdown_leaves_a_refusal_alone() -> None:
    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        await receive()
        await send({"type": "websocket.close"})

    async with serve(app) as served, raw_upgrade(served) as (reader, writer):
        assert (await read_head(reader))[0] == 403
        await shutting_down(served)
        writer.close()
