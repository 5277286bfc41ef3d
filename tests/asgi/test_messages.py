"""Messages and closing under wsend's uvicorn layer: echo, close codes both ways, disconnect
events, limits, protocol errors, keepalive and backpressure, on a real uvicorn over loopback."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import pytest

import wsend
from wsend.asgi import WSendProtocol

from ..asyncio.helpers import close_payload, frame
from .serving import (
    Message,
    Receive,
    Scope,
    Send,
    echo,
    raw_upgrade,
    read_frame,
    read_head,
    serve,
    until,
)

LARGE_TEXT = "ünïcødé ✓ " * 70_000  # about 1 MiB in UTF-8
MESSAGES: list[str | bytes] = ["hello", "héllo ✓ 🎉", b"\x00\x01\xfe\xff", "", b"", LARGE_TEXT]


@pytest.mark.parametrize("http", ["httptools", "h11"])
@pytest.mark.parametrize("compression", ["deflate", None])
async def test_echo(http: str, compression: str | None) -> None:
    binary = bytes(range(256)) * 800  # 200 KiB
    async with (
        serve(echo, http=http) as served,
        wsend.connect(served.url(), compression=compression, max_message_size=None) as ws,
    ):
        assert ws.extensions == (["permessage-deflate"] if compression else [])
        for message in [*MESSAGES, binary]:
            await ws.send(message)
            echoed = await ws.recv()
            assert echoed == message
            assert type(echoed) is type(message)
        for n in range(100):  # pipelined: order kept
            await ws.send(f"m{n}" if n % 2 else f"{n}".encode())
        assert [await ws.recv() for _ in range(100)] == [
            f"m{n}" if n % 2 else f"{n}".encode() for n in range(100)
        ]


async def test_compression_can_be_turned_off() -> None:
    async with (
        serve(echo, ws_per_message_deflate=False) as served,
        wsend.connect(served.url()) as ws,
    ):
        assert ws.extensions == []
        assert ws.response is not None
        assert "Sec-WebSocket-Extensions" not in ws.response.headers


async def test_fragmented_messages_arrive_whole() -> None:
    received: list[Message] = []

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        await receive()
        await send({"type": "websocket.accept"})
        for _ in range(2):
            received.append(await receive())

    async with serve(app) as served, wsend.connect(served.url()) as ws:
        await ws.send(["frag", "ment", "ed ✓"])
        await ws.send([b"\x00" * 1000, b"\x01" * 1000])
        await until(lambda: len(received) == 2)
    assert received == [
        {"type": "websocket.receive", "text": "fragmented ✓"},
        {"type": "websocket.receive", "bytes": b"\x00" * 1000 + b"\x01" * 1000},
    ]


@pytest.mark.parametrize(
    ("close", "expected"),
    [
        ({}, (1000, "")),
        ({"code": None, "reason": None}, (1000, "")),
        ({"code": 1001, "reason": "going away"}, (1001, "going away")),
        ({"code": 4000, "reason": "custom ✓"}, (4000, "custom ✓")),
        ({"code": 3000, "reason": "x" * 123}, (3000, "x" * 123)),
    ],
)
async def test_application_closes(close: Message, expected: tuple[int, str]) -> None:
    after: list[Message] = []

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        await receive()
        await send({"type": "websocket.accept"})
        await receive()
        await send({"type": "websocket.close", **close})
        after.append(await receive())
        after.append(await receive())  # every receive after closing: disconnect

    async with serve(app) as served, wsend.connect(served.url()) as ws:
        await ws.send("close, please")
        with pytest.raises(wsend.ConnectionClosed):
            await ws.recv()
        assert (ws.close_code, ws.close_reason) == expected
        await until(lambda: len(after) == 2)
    code, reason = expected
    assert after == [{"type": "websocket.disconnect", "code": code, "reason": reason}] * 2


@pytest.mark.parametrize(
    "close",
    [{"code": 1005}, {"code": 999}, {"code": "1000"}, {"reason": "x" * 124}, {"reason": b"bye"}],
    ids=["1005", "999", "str-code", "long-reason", "bytes-reason"],
)
async def test_application_closing_with_invalid_arguments_fails(
    close: Message, caplog: pytest.LogCaptureFixture
) -> None:
    errors: list[BaseException] = []

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        await receive()
        await send({"type": "websocket.accept"})
        try:
            await send({"type": "websocket.close", **close})
        except RuntimeError as exc:
            errors.append(exc)
            raise

    async with serve(app) as served, wsend.connect(served.url()) as ws:
        with pytest.raises(wsend.ConnectionClosedError):
            await ws.recv()
        assert ws.close_code == 1011
    assert isinstance(errors[0], wsend.UsageError)
    assert "Exception in ASGI application" in caplog.text


@pytest.mark.parametrize(
    ("code", "reason", "event"),
    [
        (1001, "bye", (1001, "bye")),
        (4999, "", (4999, "")),
        (1005, "", (1005, "")),  # a close frame without code
    ],
)
async def test_client_closes(code: int, reason: str, event: tuple[int, str]) -> None:
    events: list[Message] = []

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        await receive()
        await send({"type": "websocket.accept"})
        events.append(await receive())
        events.append(await receive())
        events.append(await receive())

    async with serve(app) as served:
        async with wsend.connect(served.url()) as ws:
            await ws.send(b"first")
            await ws.close(code, reason)
        await until(lambda: len(events) == 3)
    assert events[0] == {"type": "websocket.receive", "bytes": b"first"}
    expected = {"type": "websocket.disconnect", "code": event[0], "reason": event[1]}
    assert events[1] == events[2] == expected


async def test_messages_before_the_clients_close_are_received_first() -> None:
    started = asyncio.Event()
    events: list[Message] = []

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        await receive()
        await send({"type": "websocket.accept"})
        await started.wait()  # the client sends and closes meanwhile
        while True:
            events.append(await receive())
            if events[-1]["type"] == "websocket.disconnect":
                return

    async with serve(app) as served:
        async with wsend.connect(served.url()) as ws:
            for n in range(3):
                await ws.send(f"{n}")
        started.set()
        await until(lambda: len(events) == 4)
    assert [e.get("text") for e in events[:3]] == ["0", "1", "2"]
    assert events[3] == {"type": "websocket.disconnect", "code": 1000, "reason": ""}


async def test_connection_lost_without_closing_handshake() -> None:
    events: list[Any] = []

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        await receive()
        await send({"type": "websocket.accept"})
        events.append(await receive())
        try:
            await send({"type": "websocket.send", "text": "anyone?"})
        except OSError as exc:
            events.append(exc)

    async with serve(app) as served:
        async with raw_upgrade(served) as (reader, _writer):
            assert (await read_head(reader))[0] == 101
        await until(lambda: len(events) == 2)
    assert events[0] == {"type": "websocket.disconnect", "code": 1006, "reason": ""}
    assert isinstance(events[1], wsend.ClientDisconnected)
    assert isinstance(events[1], wsend.ConnectionClosed)


async def test_send_after_the_client_closed_raises_oserror(
    caplog: pytest.LogCaptureFixture,
) -> None:
    events: list[Any] = []
    closed = asyncio.Event()

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        await receive()
        await send({"type": "websocket.accept"})
        await closed.wait()
        try:
            await send({"type": "websocket.send", "bytes": b"late"})
        except OSError as exc:
            events.append(exc)
        # Sending again raises again; an application that lets it escape logs nothing.
        await send({"type": "websocket.send", "bytearray": b"ignored", "bytes": bytearray(b"x")})

    async with serve(app) as served:
        async with wsend.connect(served.url()) as ws:
            await ws.close(4002, "done")
        closed.set()
        await until(lambda: not served.server.server_state.tasks)
    [exc] = events
    assert isinstance(exc, wsend.ClientDisconnected)
    assert exc.rcvd is not None
    assert exc.rcvd.code == 4002
    assert "Exception in ASGI application" not in caplog.text


async def test_send_after_closing_is_an_error() -> None:
    errors: list[str] = []

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        await receive()
        await send({"type": "websocket.accept"})
        await send({"type": "websocket.close", "code": 4001})
        for message in ({"type": "websocket.send", "text": "x"}, {"type": "websocket.close"}):
            try:
                await send(message)
            except RuntimeError as exc:
                errors.append(str(exc))

    async with serve(app) as served, wsend.connect(served.url()) as ws:
        with pytest.raises(wsend.ConnectionClosed):
            await ws.recv()
    assert errors == [
        "Unexpected ASGI message 'websocket.send', after sending 'websocket.close'.",
        "Unexpected ASGI message 'websocket.close', after sending 'websocket.close'.",
    ]


@pytest.mark.parametrize(
    "message",
    [
        {"type": "websocket.send"},
        {"type": "websocket.send", "text": b"bytes in text"},
        {"type": "websocket.send", "bytes": "str in bytes"},
        {"type": "websocket.accept"},
        {"type": "websocket.http.response.start", "status": 200},
    ],
    ids=["empty", "bytes-text", "str-bytes", "accept", "response"],
)
async def test_invalid_messages_after_accepting(message: Message) -> None:
    errors: list[BaseException] = []

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        await receive()
        await send({"type": "websocket.accept"})
        try:
            await send(message)
        except RuntimeError as exc:
            errors.append(exc)
        await send({"type": "websocket.send", "text": "still open"})

    async with serve(app) as served, wsend.connect(served.url()) as ws:
        assert await ws.recv() == "still open"
    assert isinstance(errors[0], wsend.UsageError)


async def test_bytes_like_messages_are_sent() -> None:
    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        await receive()
        await send({"type": "websocket.accept"})
        await send({"type": "websocket.send", "bytes": bytearray(b"array")})
        await send({"type": "websocket.send", "bytes": memoryview(b"view"), "text": None})

    async with serve(app) as served, wsend.connect(served.url()) as ws:
        assert [await ws.recv(), await ws.recv()] == [b"array", b"view"]


@pytest.mark.parametrize(
    ("result", "code", "log"),
    [
        (None, 1000, None),
        (123, 1011, "ASGI callable should return None, but returned '123'."),
        (ValueError("boom"), 1011, "Exception in ASGI application"),
    ],
    ids=["none", "value", "exception"],
)
async def test_application_ending_after_accepting(
    result: Any, code: int, log: str | None, caplog: pytest.LogCaptureFixture
) -> None:
    async def app(scope: Scope, receive: Receive, send: Send) -> Any:
        await receive()
        await send({"type": "websocket.accept"})
        await send({"type": "websocket.send", "text": "bye"})
        if isinstance(result, Exception):
            raise result
        return result

    async with serve(app) as served, wsend.connect(served.url()) as ws:
        assert await ws.recv() == "bye"
        with pytest.raises(wsend.ConnectionClosed):
            await ws.recv()
        assert ws.close_code == code
    if log is None:
        assert not [r for r in caplog.records if r.levelno >= logging.ERROR]
    else:
        assert log in caplog.text


async def test_what_arrives_after_the_application_closed_is_dropped() -> None:
    release = asyncio.Event()

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        await receive()
        await send({"type": "websocket.accept"})
        await release.wait()  # the client floods meanwhile: the queue fills, reading pauses
        await send({"type": "websocket.close", "code": 4004})
        assert (await receive())["code"] == 4004

    async with serve(app, ws_max_queue=2) as served, wsend.connect(served.url()) as ws:
        for n in range(200):
            await ws.send(b"x" * 1000 + n.to_bytes(2, "big"))
        [conn] = served.connections
        await until(lambda: conn._paused_reading)
        release.set()
        # The close frame comes through what the client sent before: reading resumed and
        # the messages were dropped instead of queued.
        with pytest.raises(wsend.ConnectionClosed):
            await ws.recv()
        assert ws.close_code == 4004
        assert not conn._queue
        assert not conn._paused_reading


async def test_concurrent_reader_learns_that_the_application_closed() -> None:
    events: list[Message] = []

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        await receive()
        await send({"type": "websocket.accept"})

        async def reader() -> None:
            events.append(await receive())

        task = asyncio.create_task(reader())
        await asyncio.sleep(0)
        await send({"type": "websocket.close", "code": 4005, "reason": "writer closed"})
        await task

    async with serve(app) as served, wsend.connect(served.url()) as ws:
        with pytest.raises(wsend.ConnectionClosed):
            await ws.recv()
    assert events == [{"type": "websocket.disconnect", "code": 4005, "reason": "writer closed"}]


async def test_message_too_big_closes_with_1009() -> None:
    events: list[Message] = []

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        await receive()
        await send({"type": "websocket.accept"})
        while True:
            events.append(await receive())
            if events[-1]["type"] == "websocket.disconnect":
                return

    async with serve(app, ws_max_size=1000) as served:
        async with wsend.connect(served.url(), compression=None) as ws:
            await ws.send(b"x" * 1000)  # at the limit: fine
            await ws.send(["y" * 600, "y" * 600])  # over it, in fragments
            with pytest.raises(wsend.ConnectionClosedError):
                await ws.recv()
            assert ws.close_code == 1009
        await until(lambda: len(events) == 2)
    assert events[0] == {"type": "websocket.receive", "bytes": b"x" * 1000}
    assert events[1]["code"] == 1009


@pytest.mark.parametrize(
    ("data", "code"),
    [
        (frame(0x1, b"unmasked"), 1002),  # a client must mask every frame
        (frame(0x1, b"\xff\xfe", mask=True), 1007),  # not UTF-8
        (frame(0x3, b"x", mask=True), 1002),  # a reserved opcode
    ],
    ids=["unmasked", "bad-utf8", "reserved-opcode"],
)
async def test_protocol_errors_fail_the_connection(data: bytes, code: int) -> None:
    events: list[Message] = []

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        await receive()
        await send({"type": "websocket.accept"})
        events.append(await receive())

    async with serve(app) as served, raw_upgrade(served) as (reader, writer):
        assert (await read_head(reader))[0] == 101
        writer.write(data)
        opcode, payload = await read_frame(reader)
        assert opcode == 0x8
        assert int.from_bytes(payload[:2], "big") == code
        writer.write(frame(0x8, close_payload(code), mask=True))
        assert await reader.read() == b""  # the server closes TCP
        await until(lambda: bool(events))
    assert events[0]["type"] == "websocket.disconnect"
    assert events[0]["code"] == code


async def test_pings_are_answered() -> None:
    async with serve(echo) as served, raw_upgrade(served) as (reader, writer):
        assert (await read_head(reader))[0] == 101
        writer.write(frame(0x9, b"are you there", mask=True))
        assert await read_frame(reader) == (0xA, b"are you there")


async def test_keepalive_pings_measure_latency() -> None:
    async with (
        serve(echo, ws_ping_interval=0.02, ws_ping_timeout=5) as served,
        wsend.connect(served.url(), ping_interval=None) as ws,
    ):
        [conn] = served.connections
        assert conn.options.ping_interval == 0.02
        await until(lambda: conn.latency > 0)
        await ws.send("still open")
        assert await ws.recv() == "still open"


async def test_keepalive_timeout_closes_with_1011() -> None:
    events: list[Message] = []

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        await receive()
        await send({"type": "websocket.accept"})
        events.append(await receive())

    config = {"ws_ping_interval": 0.02, "ws_ping_timeout": 0.02}
    async with serve(app, **config) as served, raw_upgrade(served) as (reader, writer):
        assert (await read_head(reader))[0] == 101
        assert (await read_frame(reader))[0] == 0x9  # a ping, left unanswered
        opcode, payload = await read_frame(reader)
        assert opcode == 0x8
        assert payload == close_payload(1011, "keepalive ping timeout")
        writer.write(frame(0x8, payload, mask=True))
        await until(lambda: bool(events))
    assert events == [
        {"type": "websocket.disconnect", "code": 1011, "reason": "keepalive ping timeout"}
    ]


@pytest.mark.parametrize("interval", [0, None])
async def test_keepalive_can_be_turned_off(interval: float | None) -> None:
    async with serve(echo, ws_ping_interval=interval) as served, wsend.connect(served.url()):
        [conn] = served.connections
        assert conn.options.ping_interval is None


async def test_receive_queue_pauses_reading() -> None:
    release = asyncio.Event()
    received: list[bytes] = []
    count = 3000

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        await receive()
        await send({"type": "websocket.accept"})
        await release.wait()
        while len(received) < count:
            received.append((await receive())["bytes"])

    async with (
        serve(app, ws_max_queue=4) as served,
        wsend.connect(served.url(), compression=None) as ws,
    ):

        async def send_all() -> None:
            for n in range(count):
                await ws.send(n.to_bytes(4, "big") * 256)

        sender = asyncio.create_task(send_all())
        [conn] = served.connections
        await until(lambda: conn._paused_reading)
        # Reading paused: what waits in the server is bounded, the rest stays in the
        # client and the sockets.
        assert conn._queue is not None
        assert len(conn._queue) < count
        release.set()
        await until(lambda: len(received) == count)
        await sender
    assert received == [n.to_bytes(4, "big") * 256 for n in range(count)]


async def test_send_waits_while_the_client_does_not_read() -> None:
    sizes: list[int] = []
    size, count = 1 << 19, 100  # 50 MiB: more than the kernel's socket buffers hold

    def payload(n: int) -> bytes:
        return n.to_bytes(4, "big") * (size // 4)

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        await receive()
        await send({"type": "websocket.accept"})
        [conn] = served.connections
        for n in range(count):
            await send({"type": "websocket.send", "bytes": payload(n)})
            assert conn.transport is not None
            sizes.append(conn.transport.get_write_buffer_size())

    async with (
        serve(app) as served,
        wsend.connect(served.url(), max_queue=1, compression=None) as ws,
    ):
        await until(lambda: len(sizes) > 2)  # the client reads nothing meanwhile
        received = [await ws.recv() for _ in range(count)]
    assert received == [payload(n) for n in range(count)]
    # send() returns only below the high-water mark (64 KiB), plus the frame just written.
    assert max(sizes) <= 65536 + size + 16
    assert max(sizes) > 0  # the buffer did fill: backpressure applied


async def test_connection_settings_follow_uvicorns_config() -> None:
    async with (
        serve(echo, ws_max_size=12345, ws_max_queue=7, ws_ping_timeout=3.5) as served,
        wsend.connect(served.url()),
    ):
        [conn] = served.connections
        assert isinstance(conn, WSendProtocol)
        assert conn.options.max_message_size == 12345
        assert conn.options.max_queue == 7
        assert conn.options.ping_timeout == 3.5
        assert conn.options.ping_interval == 20.0  # uvicorn's default
