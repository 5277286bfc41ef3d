"""Starlette's WebSocket behaviours on a live uvicorn with wsend's layer.

The scenarios of Starlette's own WebSocket tests (its ``tests/test_websockets.py``, which run
against its in-memory test client), written again here against a real server over loopback,
each with wsend's client and websockets' client: URLs, query strings and headers, text, bytes
and JSON both ways, the ``iter_*`` helpers, a reader and a writer in a task group, closing from
either side with codes and reasons, disconnects seen on send, refusals, denial responses
(plain, streamed, from a file, in parts), subprotocols, extra headers, and the errors Starlette
raises for misuse, as the client sees them.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import anyio
import pytest
from starlette import status
from starlette.applications import Starlette
from starlette.endpoints import WebSocketEndpoint
from starlette.responses import FileResponse, Response, StreamingResponse
from starlette.routing import WebSocketRoute
from starlette.websockets import WebSocket, WebSocketDisconnect

from .clients import CLIENTS, Closed, connect, refused
from .serving import Receive, Scope, Send, serve, until

pytestmark = pytest.mark.parametrize("lib", CLIENTS)

Endpoint = Any


def single(endpoint: Endpoint, path: str = "/{rest:path}") -> Starlette:
    """A Starlette application routing every path to ``endpoint``."""
    return Starlette(routes=[WebSocketRoute(path, endpoint)])


async def test_url_query_and_port(lib: str) -> None:
    async def endpoint(websocket: WebSocket) -> None:
        await websocket.accept()
        await websocket.send_json(
            {
                "url": str(websocket.url),
                "params": dict(websocket.query_params),
                "port": websocket.url.port,
                "path": websocket.path_params["rest"],
            }
        )
        await websocket.close()

    async with serve(single(endpoint)) as served, connect(lib, served.url("/123?a=abc&b=4")) as ws:
        data = json.loads(await ws.recv())
    assert data == {
        "url": f"ws://127.0.0.1:{served.port}/123?a=abc&b=4",
        "params": {"a": "abc", "b": "4"},
        "port": served.port,
        "path": "123",
    }


async def test_request_headers(lib: str) -> None:
    async def endpoint(websocket: WebSocket) -> None:
        await websocket.accept()
        await websocket.send_json(dict(websocket.headers))
        await websocket.close()

    async with (
        serve(single(endpoint)) as served,
        connect(lib, served.url(), headers={"X-Custom": "yes"}) as ws,
    ):
        headers = json.loads(await ws.recv())
    assert headers["x-custom"] == "yes"
    assert headers["host"] == f"127.0.0.1:{served.port}"
    assert headers["upgrade"].lower() == "websocket"
    assert headers["sec-websocket-version"] == "13"


@pytest.mark.parametrize("kind", ["text", "bytes", "json", "json-binary", "json-unicode"])
async def test_send_and_receive(lib: str, kind: str) -> None:
    async def endpoint(websocket: WebSocket) -> None:
        await websocket.accept()
        if kind == "text":
            await websocket.send_text("Message was: " + await websocket.receive_text())
        elif kind == "bytes":
            await websocket.send_bytes(b"Message was: " + await websocket.receive_bytes())
        elif kind == "json":
            await websocket.send_json({"message": await websocket.receive_json()})
        else:
            mode = "binary" if kind == "json-binary" else "text"
            await websocket.send_json(await websocket.receive_json(mode=mode), mode=mode)
        await websocket.close()

    sent: str | bytes = {
        "text": "Hello, world!",
        "bytes": b"Hello, world!",
        "json": json.dumps({"hello": "world"}),
        "json-binary": json.dumps({"test": "data"}).encode(),
        "json-unicode": json.dumps({"test": "数据"}, ensure_ascii=False),
    }[kind]
    async with serve(single(endpoint)) as served, connect(lib, served.url()) as ws:
        await ws.send(sent)
        answer = await ws.recv()
        with pytest.raises(Closed) as closed:
            await ws.recv()
    assert closed.value.code == 1000
    if kind == "text":
        assert answer == "Message was: Hello, world!"
    elif kind == "bytes":
        assert answer == b"Message was: Hello, world!"
    elif kind == "json":
        assert json.loads(answer) == {"message": {"hello": "world"}}
    elif kind == "json-binary":
        assert json.loads(answer) == {"test": "data"}
        assert isinstance(answer, bytes)
    else:
        assert answer == '{"test":"数据"}'  # compact, not ASCII-escaped


@pytest.mark.parametrize("kind", ["text", "bytes", "json"])
async def test_iterating_until_the_client_leaves(lib: str, kind: str) -> None:
    ended: list[str] = []

    async def endpoint(websocket: WebSocket) -> None:
        await websocket.accept()
        if kind == "text":
            async for text in websocket.iter_text():
                await websocket.send_text("Message was: " + text)
        elif kind == "bytes":
            async for data in websocket.iter_bytes():
                await websocket.send_bytes(b"Message was: " + data)
        else:
            async for obj in websocket.iter_json():
                await websocket.send_json({"message": obj})
        ended.append(kind)

    message: str | bytes = {"text": "hi", "bytes": b"hi", "json": '{"n": 1}'}[kind]
    async with serve(single(endpoint)) as served:
        async with connect(lib, served.url()) as ws:
            for _ in range(3):
                await ws.send(message)
            replies = [await ws.recv() for _ in range(3)]
        await until(lambda: ended == [kind])
    expected = {
        "text": "Message was: hi",
        "bytes": b"Message was: hi",
        "json": '{"message":{"n":1}}',
    }[kind]
    assert replies == [expected] * 3


async def test_reader_and_writer_in_a_task_group(lib: str) -> None:
    async def endpoint(websocket: WebSocket) -> None:
        await websocket.accept()
        send_stream, receive_stream = anyio.create_memory_object_stream[Any]()

        async def reader() -> None:
            async with send_stream:
                async for data in websocket.iter_json():
                    await send_stream.send(data)

        async with anyio.create_task_group() as group:
            group.start_soon(reader)
            async with receive_stream:
                async for data in receive_stream:
                    await websocket.send_json(data)
        await websocket.close()

    async with serve(single(endpoint)) as served, connect(lib, served.url()) as ws:
        for n in range(5):
            await ws.send(json.dumps({"hello": n}))
        assert [json.loads(await ws.recv()) for _ in range(5)] == [{"hello": n} for n in range(5)]


async def test_client_closes_with_code_and_reason(lib: str) -> None:
    seen: list[tuple[int, str | None]] = []

    async def endpoint(websocket: WebSocket) -> None:
        await websocket.accept()
        try:
            await websocket.receive_text()
        except WebSocketDisconnect as exc:
            seen.append((exc.code, exc.reason))

    async with serve(single(endpoint)) as served:
        async with connect(lib, served.url()) as ws:
            await ws.close(status.WS_1001_GOING_AWAY, "Going Away")
        await until(lambda: bool(seen))
    assert seen == [(1001, "Going Away")]


async def test_sending_after_the_client_left_raises_disconnect(lib: str) -> None:
    seen: list[int] = []
    left = anyio.Event()

    async def endpoint(websocket: WebSocket) -> None:
        await websocket.accept()
        await left.wait()
        try:
            await websocket.send_text("Hello, world!")
        except WebSocketDisconnect as exc:
            seen.append(exc.code)

    async with serve(single(endpoint)) as served:
        async with connect(lib, served.url()):
            pass
        await until(lambda: not served.connections)
        left.set()
        await until(lambda: bool(seen))
    assert seen == [status.WS_1006_ABNORMAL_CLOSURE]


@pytest.mark.parametrize("reason", [None, "Going Away"])
async def test_application_closes(lib: str, reason: str | None) -> None:
    async def endpoint(websocket: WebSocket) -> None:
        await websocket.accept()
        await websocket.close(status.WS_1001_GOING_AWAY, reason)

    async with serve(single(endpoint)) as served, connect(lib, served.url()) as ws:
        with pytest.raises(Closed) as closed:
            await ws.recv()
    assert (closed.value.code, closed.value.reason) == (1001, reason or "")


async def test_closing_before_accepting_is_a_403(lib: str) -> None:
    async def endpoint(websocket: WebSocket) -> None:
        assert await websocket.receive() == {"type": "websocket.connect"}
        await websocket.close(status.WS_1001_GOING_AWAY)

    async with serve(single(endpoint)) as served:
        refusal = await refused(lib, served.url())
    assert refusal.status == 403


async def test_denial_response(lib: str, tmp_path: Path) -> None:
    (tmp_path / "denial.txt").write_text("test content")

    async def content() -> AsyncIterator[bytes]:
        yield b"hello"
        yield b"world"

    async def plain(websocket: WebSocket) -> None:
        assert await websocket.receive() == {"type": "websocket.connect"}
        await websocket.send_denial_response(Response(status_code=404, content="foo"))

    async def streamed(websocket: WebSocket) -> None:
        await websocket.send_denial_response(StreamingResponse(content(), status_code=403))

    async def from_file(websocket: WebSocket) -> None:
        await websocket.send_denial_response(FileResponse(tmp_path / "denial.txt", status_code=401))

    async def in_parts(websocket: WebSocket) -> None:
        await websocket.send(
            {
                "type": "websocket.http.response.start",
                "status": 404,
                "headers": [(b"content-type", b"text/plain"), (b"foo", b"bar")],
            }
        )
        body = {"type": "websocket.http.response.body"}
        await websocket.send({**body, "body": b"hard", "more_body": True})
        await websocket.send({**body, "body": b"body"})

    app = Starlette(
        routes=[
            WebSocketRoute("/plain", plain),
            WebSocketRoute("/streamed", streamed),
            WebSocketRoute("/file", from_file),
            WebSocketRoute("/parts", in_parts),
        ]
    )
    async with serve(app) as served:
        answers = {
            path: await refused(lib, served.url(f"/{path}"))
            for path in ("plain", "streamed", "file", "parts")
        }
    assert (answers["plain"].status, answers["plain"].body) == (404, b"foo")
    assert (answers["streamed"].status, answers["streamed"].body) == (403, b"helloworld")
    assert (answers["file"].status, answers["file"].body) == (401, b"test content")
    assert (answers["parts"].status, answers["parts"].body) == (404, b"hardbody")
    assert answers["parts"].headers["foo"] == "bar"
    assert answers["parts"].headers["content-type"] == "text/plain"


async def test_denial_without_the_extension(lib: str) -> None:
    errors: list[str] = []

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        del scope["extensions"]["websocket.http.response"]
        websocket = WebSocket(scope, receive=receive, send=send)
        assert await websocket.receive() == {"type": "websocket.connect"}
        try:
            await websocket.send_denial_response(Response(status_code=404, content="foo"))
        except RuntimeError as exc:
            errors.append(str(exc))
        await websocket.close()

    async with serve(app) as served:
        refusal = await refused(lib, served.url())
    assert refusal.status == 403  # closed before accepting
    assert errors == ["The server doesn't support the Websocket Denial Response extension."]


async def test_subprotocol_and_extra_headers(lib: str) -> None:
    offered: list[list[str]] = []

    async def endpoint(websocket: WebSocket) -> None:
        offered.append(websocket["subprotocols"])
        await websocket.accept(subprotocol="wamp", headers=[(b"additional", b"header")])
        await websocket.close()

    async with (
        serve(single(endpoint)) as served,
        connect(lib, served.url(), subprotocols=["soap", "wamp"]) as ws,
    ):
        assert ws.subprotocol == "wamp"
        assert ws.headers["additional"] == "header"
    assert offered == [["soap", "wamp"]]


async def test_no_subprotocol_nor_extra_headers(lib: str) -> None:
    async def endpoint(websocket: WebSocket) -> None:
        await websocket.accept()
        await websocket.close()

    async with serve(single(endpoint)) as served, connect(lib, served.url()) as ws:
        assert ws.subprotocol is None
        assert "additional" not in ws.headers
        assert ws.headers["server"] == "uvicorn"


async def test_exception_before_accepting_is_a_500(lib: str) -> None:
    async def endpoint(websocket: WebSocket) -> None:
        raise AssertionError("the application failed")

    async with serve(single(endpoint)) as served:
        refusal = await refused(lib, served.url("/123?a=abc"))
    assert refusal.status == 500


@pytest.mark.parametrize(
    "misuse",
    [
        "receive-text-first",
        "receive-bytes-first",
        "receive-json-first",
        "send-first",
        "accept-twice",
    ],
)
async def test_misuse_before_accepting_is_a_500(lib: str, misuse: str) -> None:
    async def endpoint(websocket: WebSocket) -> None:
        if misuse == "receive-text-first":
            await websocket.receive_text()
        elif misuse == "receive-bytes-first":
            await websocket.receive_bytes()
        elif misuse == "receive-json-first":
            await websocket.receive_json()
        elif misuse == "send-first":
            await websocket.send({"type": "websocket.send"})
        else:
            await websocket.send({"type": "websocket.accept"})
            await websocket.send({"type": "websocket.accept"})

    async with serve(single(endpoint)) as served:
        if misuse == "accept-twice":
            async with connect(lib, served.url()) as ws:
                with pytest.raises(Closed) as closed:
                    await ws.recv()
            assert closed.value.code == 1011
        else:
            assert (await refused(lib, served.url())).status == 500


@pytest.mark.parametrize("misuse", ["close-twice", "receive-after-disconnect"])
async def test_misuse_after_closing_keeps_the_close_code(lib: str, misuse: str) -> None:
    errors: list[BaseException] = []

    async def endpoint(websocket: WebSocket) -> None:
        await websocket.accept()
        try:
            if misuse == "close-twice":
                await websocket.close()
                await websocket.close()
            else:
                assert (await websocket.receive())["type"] == "websocket.disconnect"
                await websocket.receive()
        except RuntimeError as exc:
            errors.append(exc)

    async with serve(single(endpoint)) as served:
        async with connect(lib, served.url()) as ws:
            if misuse == "close-twice":
                with pytest.raises(Closed) as closed:
                    await ws.recv()
                assert closed.value.code == 1000
        await until(lambda: bool(errors))
    assert isinstance(errors[0], RuntimeError)


@pytest.mark.parametrize("misuse", ["send-json-mode", "receive-json-mode", "receive-connect"])
async def test_misuse_after_accepting_closes_with_1011(lib: str, misuse: str) -> None:
    async def endpoint(websocket: WebSocket) -> None:
        await websocket.accept()
        if misuse == "send-json-mode":
            await websocket.send_json({}, mode="invalid")
        elif misuse == "receive-json-mode":
            await websocket.receive_json(mode="invalid")
        else:
            websocket.client_state = websocket.client_state.CONNECTING
            await websocket.receive()  # the next message is not websocket.connect

    async with serve(single(endpoint)) as served, connect(lib, served.url()) as ws:
        if misuse == "receive-connect":
            await ws.send("not a connect event")
        with pytest.raises(Closed) as closed:
            await ws.recv()
    assert closed.value.code == 1011


class Echo(WebSocketEndpoint):
    encoding = "text"
    closes: list[int] = []

    async def on_receive(self, websocket: WebSocket, data: Any) -> None:
        await websocket.send_text(f"echo: {data}")

    async def on_disconnect(self, websocket: WebSocket, close_code: int) -> None:
        self.closes.append(close_code)


async def test_websocket_endpoint_class(lib: str) -> None:
    Echo.closes = []
    async with serve(single(Echo, "/echo")) as served:
        async with connect(lib, served.url("/echo")) as ws:
            await ws.send("one")
            assert await ws.recv() == "echo: one"
            await ws.send(b"bytes, but the endpoint wants text")
            with pytest.raises(Closed) as closed:
                await ws.recv()
        await until(lambda: bool(Echo.closes))
    assert closed.value.code == 1003  # unsupported data
    assert Echo.closes == [1011]  # the endpoint's own failure
