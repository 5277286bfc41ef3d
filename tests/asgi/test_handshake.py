"""The opening handshake under wsend's uvicorn layer: scope, accept, refusals, denial responses.

Plain ASGI applications on a real uvicorn (its httptools and h11 HTTP protocols), over loopback,
with wsend's client, websockets' client, httpx and hand-written requests as peers.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import httpx
import pytest
import websockets
from websockets.asyncio.client import connect as websockets_connect

import wsend
from wsend.asgi import WSendProtocol

from .serving import Message, Receive, Scope, Send, echo, raw_upgrade, read_head, serve, until


def recorder(events: list[Any], then: Message | None = None) -> Any:
    """An application recording its scope, then answering with ``then`` (accept by default)."""

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        events.append(scope)
        events.append(await receive())
        await send(then or {"type": "websocket.accept"})
        events.append(await receive())

    return app


@pytest.mark.parametrize("http", ["httptools", "h11"])
async def test_scope(http: str) -> None:
    events: list[Any] = []
    async with serve(recorder(events), http=http) as served:
        url = served.url("/a%2Fb/c%C3%A9?x=1&y=%20")
        headers = {"X-Test": "välue", "Cookie": "a=1"}
        async with wsend.connect(url, headers=headers, subprotocols=["p1", "p2"]) as ws:
            client = ws.local_address
        await until(lambda: len(events) == 3)
    scope, connect, disconnect = events
    assert connect == {"type": "websocket.connect"}
    assert disconnect == {"type": "websocket.disconnect", "code": 1000, "reason": ""}
    assert scope["type"] == "websocket"
    assert scope["asgi"] == {"version": "3.0", "spec_version": "2.4"}
    assert scope["http_version"] == "1.1"
    assert scope["scheme"] == "ws"
    assert scope["path"] == "/a/b/cé"
    assert scope["raw_path"] == b"/a%2Fb/c%C3%A9"
    assert scope["query_string"] == b"x=1&y=%20"
    assert scope["root_path"] == ""
    assert scope["client"] == (client[0], client[1])
    assert scope["server"] == ("127.0.0.1", served.port)
    assert scope["subprotocols"] == ["p1", "p2"]
    assert scope["extensions"] == {"websocket.http.response": {}}
    assert scope["state"] == {}
    headers = dict(scope["headers"])
    assert headers[b"x-test"] == "välue".encode("latin-1")
    assert headers[b"cookie"] == b"a=1"
    assert headers[b"host"] == f"127.0.0.1:{served.port}".encode()
    assert headers[b"sec-websocket-version"] == b"13"
    assert all(name == name.lower() for name, _ in scope["headers"])


async def test_root_path_prefixes_path_and_raw_path() -> None:
    events: list[Any] = []
    async with serve(recorder(events), root_path="/api") as served:
        async with wsend.connect(served.url("/chat")):
            pass
        await until(lambda: len(events) == 3)
    scope = events[0]
    assert scope["root_path"] == "/api"
    assert (scope["path"], scope["raw_path"]) == ("/api/chat", b"/api/chat")


async def test_lifespan_state_is_copied_into_each_scope() -> None:
    seen: list[dict[str, Any]] = []

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await receive()
            scope["state"]["counter"] = [0]
            scope["state"]["name"] = "first"
            await send({"type": "lifespan.startup.complete"})
            await receive()
            await send({"type": "lifespan.shutdown.complete"})
            return
        seen.append(dict(scope["state"]))
        scope["state"]["name"] = "changed"  # a copy: the next connection sees "first"
        scope["state"]["counter"].append(1)  # a shallow copy: shared
        await receive()
        await send({"type": "websocket.accept"})

    async with serve(app, lifespan="on") as served:
        for _ in range(2):
            async with wsend.connect(served.url()):
                pass
    assert [state["name"] for state in seen] == ["first", "first"]
    assert seen[1]["counter"] == [0, 1, 1]


async def test_asgi2_application() -> None:
    class App:
        def __init__(self, scope: Scope) -> None:
            assert scope["asgi"]["version"] == "2.0"

        async def __call__(self, receive: Receive, send: Send) -> None:
            await echo({"type": "websocket"}, receive, send)

    async with serve(App, interface="asgi2") as served, wsend.connect(served.url()) as ws:
        await ws.send("two")
        assert await ws.recv() == "two"


@pytest.mark.parametrize("how", ["field", "header"])
async def test_accept_with_subprotocol(how: str) -> None:
    accept: Message = {"type": "websocket.accept"}
    if how == "field":
        accept["subprotocol"] = "p2"
    else:
        accept["headers"] = [(b"sec-websocket-protocol", b"p2")]
    events: list[Any] = []
    async with serve(recorder(events, accept)) as served:
        async with wsend.connect(served.url(), subprotocols=["p1", "p2"]) as ours:
            assert ours.protocol == "p2"
            assert ours.response is not None
            assert ours.response.headers.get_all("Sec-WebSocket-Protocol") == ["p2"]
        async with websockets_connect(served.url(), subprotocols=["p1", "p2"]) as theirs:  # type: ignore[list-item]
            assert theirs.subprotocol == "p2"


async def test_accept_with_a_subprotocol_not_offered_is_a_500(
    caplog: pytest.LogCaptureFixture,
) -> None:
    app = recorder([], {"type": "websocket.accept", "subprotocol": "p9"})
    async with serve(app) as served:
        with pytest.raises(wsend.InvalidStatus) as info:
            await wsend.connect(served.url(), subprotocols=["p1"])
    assert info.value.status_code == 500
    assert "subprotocol 'p9', which the client didn't offer" in caplog.text


async def test_accept_headers_follow_uvicorns_default_headers() -> None:
    accept = {
        "type": "websocket.accept",
        "headers": [(b"x-extra", b"yes"), (b"server", b"over-ridden"), (b"server", b"another")],
    }
    async with serve(recorder([], accept)) as served, wsend.connect(served.url()) as ws:
        assert ws.response is not None
        headers = ws.response.headers
        assert headers.get_all("Server") == ["uvicorn", "over-ridden", "another"]
        assert headers["x-extra"] == "yes"
        assert "Date" in headers
        assert headers["Upgrade"].lower() == "websocket"


async def test_no_server_nor_date_header_when_uvicorn_sends_none() -> None:
    async with (
        serve(recorder([]), server_header=False, date_header=False) as served,
        wsend.connect(served.url()) as ws,
    ):
        assert ws.response is not None
        assert "Server" not in ws.response.headers
        assert "Date" not in ws.response.headers


@pytest.mark.parametrize(
    "headers",
    [
        [(b"sec-websocket-accept", b"forged")],  # owned by the handshake
        [(b"bad name", b"x")],  # not a token
        [("str", "not bytes")],  # not bytes
    ],
)
async def test_accept_with_invalid_headers_is_a_500(headers: Any) -> None:
    app = recorder([], {"type": "websocket.accept", "headers": headers})
    async with serve(app) as served:
        with pytest.raises(wsend.InvalidStatus) as info:
            await wsend.connect(served.url())
    assert info.value.status_code == 500


async def test_close_before_accept_is_a_403(caplog: pytest.LogCaptureFixture) -> None:
    events: list[Any] = []
    caplog.set_level(logging.INFO, "uvicorn.error")
    app = recorder(events, {"type": "websocket.close", "code": 1008})
    async with serve(app, log_level="info") as served:
        with pytest.raises(wsend.InvalidStatus) as ours:
            await wsend.connect(served.url("/private?token=x"))
        with pytest.raises(websockets.InvalidStatus) as theirs:
            await websockets_connect(served.url())
        await until(lambda: len(events) == 6)
    assert ours.value.status_code == theirs.value.response.status_code == 403
    assert ours.value.headers["Server"] == "uvicorn"
    assert ours.value.headers["Connection"] == "close"
    # What the application receives after refusing: the connection is gone (1006).
    assert events[2] == {"type": "websocket.disconnect", "code": 1006, "reason": ""}
    assert '"WebSocket /private?token=x" 403' in caplog.text


async def test_accepted_connection_is_logged(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, "uvicorn.error")
    async with serve(recorder([]), log_level="info") as served, wsend.connect(served.url("/room")):
        pass
    assert '"WebSocket /room" [accepted]' in caplog.text


async def test_denial_response() -> None:
    events: list[Any] = []

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        await receive()
        start = {
            "type": "websocket.http.response.start",
            "status": 401,
            "headers": [(b"www-authenticate", b"Bearer"), (b"content-length", b"999")],
        }
        await send(start)
        await send({"type": "websocket.http.response.body", "body": b"log ", "more_body": True})
        await send({"type": "websocket.http.response.body", "body": b"in first"})
        events.append(await receive())

    async with serve(app) as served:
        with pytest.raises(wsend.InvalidStatus) as ours:
            await wsend.connect(served.url())
        async with httpx.AsyncClient() as http:
            response = await http.get(
                served.url(scheme="http"),
                headers={
                    "Upgrade": "websocket",
                    "Connection": "Upgrade",
                    "Sec-WebSocket-Key": "x3JJHMbDL1EzLkh9GBhXDw==",
                    "Sec-WebSocket-Version": "13",
                },
            )
        await until(lambda: len(events) == 2)
    assert ours.value.status_code == response.status_code == 401
    assert ours.value.body == response.content == b"log in first"
    assert response.headers["www-authenticate"] == "Bearer"
    assert response.headers["content-length"] == "12"  # the real length, not the app's
    assert response.headers["content-type"] == "text/plain; charset=utf-8"
    assert response.headers["server"] == "uvicorn"
    assert events == [{"type": "websocket.disconnect", "code": 1006, "reason": ""}] * 2


async def test_denial_returning_before_its_last_body_part_sends_what_it_has() -> None:
    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        await receive()
        await send({"type": "websocket.http.response.start", "status": 404, "headers": []})
        await send({"type": "websocket.http.response.body", "body": b"gone", "more_body": True})

    async with serve(app) as served:
        with pytest.raises(wsend.InvalidStatus) as info:
            await wsend.connect(served.url())
    assert (info.value.status_code, info.value.body) == (404, b"gone")


async def test_denial_with_no_body_status() -> None:
    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        await receive()
        await send({"type": "websocket.http.response.start", "status": 204, "headers": []})
        await send({"type": "websocket.http.response.body", "body": b""})

    async with serve(app) as served:
        with pytest.raises(wsend.InvalidStatus) as info:
            await wsend.connect(served.url())
    assert (info.value.status_code, info.value.body) == (204, b"")


@pytest.mark.parametrize(
    "messages",
    [
        [{"type": "websocket.http.response.start", "status": 700}],
        [{"type": "websocket.http.response.start", "status": 101}],
        [{"type": "websocket.http.response.start", "status": 404, "headers": [(b"a b", b"c")]}],
        [
            {"type": "websocket.http.response.start", "status": 204},
            {"type": "websocket.http.response.body", "body": b"not allowed"},
        ],
        [
            {"type": "websocket.http.response.start", "status": 400},
            {"type": "websocket.http.response.body", "body": "not bytes"},
        ],
        [
            {"type": "websocket.http.response.start", "status": 400},
            {"type": "websocket.http.response.start", "status": 400},
        ],
        [{"type": "websocket.send", "text": "before accepting"}],
        [{"type": "websocket.accept"}, {"type": "websocket.accept"}],
    ],
    ids=[
        "status-700",
        "status-101",
        "bad-header",
        "body-on-204",
        "str-body",
        "two-starts",
        "send-before-accept",
        "two-accepts",
    ],
)
async def test_invalid_answers_fail_the_application(
    messages: list[Message], caplog: pytest.LogCaptureFixture
) -> None:
    errors: list[BaseException] = []

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        await receive()
        try:
            for message in messages:
                await send(message)
        except RuntimeError as exc:
            errors.append(exc)
            raise

    async with serve(app) as served:
        if messages[0]["type"] == "websocket.accept":
            # Accepted once: the application's failure closes the connection with 1011.
            async with wsend.connect(served.url()) as ws:
                with pytest.raises(wsend.ConnectionClosedError):
                    await ws.recv()
                assert ws.close_code == 1011
        else:
            with pytest.raises(wsend.InvalidStatus) as info:
                await wsend.connect(served.url())
            assert info.value.status_code == 500
            assert info.value.body == b"Internal Server Error\n"
    [error] = errors
    assert isinstance(error, wsend.UsageError)
    assert "Exception in ASGI application" in caplog.text


async def test_second_start_error_message_names_the_messages() -> None:
    errors: list[str] = []

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        await receive()
        start = {"type": "websocket.http.response.start", "status": 404}
        await send(start)
        try:
            await send(start)
        except RuntimeError as exc:
            errors.append(str(exc))

    async with serve(app) as served:
        with pytest.raises(wsend.InvalidStatus) as info:
            await wsend.connect(served.url())
    assert info.value.status_code == 404  # the application caught its error and returned
    assert errors == [
        "Expected ASGI message 'websocket.http.response.body' but got "
        "'websocket.http.response.start'."
    ]


@pytest.mark.parametrize("how", ["raises", "returns"])
async def test_application_ending_before_answering_is_a_500(
    how: str, caplog: pytest.LogCaptureFixture
) -> None:
    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        await receive()
        if how == "raises":
            raise ValueError("boom")

    async with serve(app) as served:
        with pytest.raises(wsend.InvalidStatus) as info:
            await wsend.connect(served.url())
    assert info.value.status_code == 500
    if how == "raises":
        assert "Exception in ASGI application" in caplog.text
    else:
        assert "ASGI callable returned without completing handshake." in caplog.text


@pytest.mark.parametrize(
    ("headers", "status"),
    [
        ([("Sec-WebSocket-Key", "")], 400),  # added twice: two keys
        ([("Sec-WebSocket-Protocol", "a b")], 400),  # not a token list
        ([("Sec-WebSocket-Extensions", "permessage-deflate; =")], 400),
    ],
)
async def test_bad_requests_are_answered_before_the_application_runs(
    headers: list[tuple[str, str]], status: int
) -> None:
    calls: list[Scope] = []

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        calls.append(scope)  # pragma: no cover - never called

    async with serve(app) as served, raw_upgrade(served, headers=headers) as (reader, _):
        code, response_headers = await read_head(reader)
    assert code == status
    assert response_headers["server"] == "uvicorn"
    assert calls == []


async def test_second_receive_before_answering_waits_for_the_client_to_leave() -> None:
    events: list[Any] = []

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        events.append(await receive())
        events.append(await receive())  # returns when the client leaves
        try:
            await send({"type": "websocket.accept"})
        except OSError as exc:
            events.append(exc)

    async with serve(app) as served:
        async with raw_upgrade(served):
            await until(lambda: len(events) == 1)
        await until(lambda: len(events) == 3)
    assert events[1] == {"type": "websocket.disconnect", "code": 1006, "reason": ""}
    assert isinstance(events[2], wsend.ClientDisconnected)


@pytest.mark.parametrize(
    "answer",
    [
        {"type": "websocket.http.response.start", "status": 403},
        {"type": "websocket.close"},
    ],
    ids=["denial", "close"],
)
async def test_answering_after_the_client_left(answer: Message) -> None:
    events: list[Any] = []
    left = asyncio.Event()

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        await receive()
        await left.wait()
        try:
            await send(answer)
            events.append("answered")
        except OSError as exc:
            events.append(exc)
        events.append(await receive())

    async with serve(app) as served:
        async with raw_upgrade(served):
            await until(lambda: bool(served.connections))
        await until(lambda: not served.connections)
        left.set()
        await until(lambda: len(events) == 2)
    if answer["type"] == "websocket.close":
        assert events[0] == "answered"  # nothing to refuse any more: no error
    else:
        assert isinstance(events[0], wsend.ClientDisconnected)
    assert events[1] == {"type": "websocket.disconnect", "code": 1006, "reason": ""}


async def test_unexpected_message_before_answering() -> None:
    errors: list[str] = []

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        await receive()
        try:
            await send({"type": "websocket.whatever"})
        except RuntimeError as exc:
            errors.append(str(exc))
        await send({"type": "websocket.accept"})

    async with serve(app) as served, wsend.connect(served.url()):
        pass
    assert errors == [
        "Expected ASGI message 'websocket.accept', 'websocket.close' or "
        "'websocket.http.response.start' but got 'websocket.whatever'."
    ]


async def test_protocol_object_is_a_wsend_connection() -> None:
    async with serve(echo) as served, wsend.connect(served.url()) as ws:
        await ws.send("hi")
        assert await ws.recv() == "hi"
        [server_side] = served.connections
        assert isinstance(server_side, WSendProtocol)
        assert server_side.scope is not None
        assert server_side.scope["path"] == "/"
        assert 0 <= await server_side.ping() < 10
