"""Hostile clients over real sockets: whatever one sends, the hub and the other sessions go on.

Each test opens a real hub on loopback, lets a client misbehave (bad data, bad frames, floods,
churn) and checks both the answer the protocol promises (``docs/protocol.md``) and that a
well-behaved subscriber keeps receiving.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import socket
from typing import Any

import msgspec
import pytest

import wsend
from wsend.exceptions import ConnectionClosed
from wsend.hub.codes import DisconnectCode, ErrorCode, HubError
from wsend.hub.options import HubOptions, NamespaceOptions, RateLimit
from wsend.hub.wire import MAX_DATA_DEPTH

from .e2e import RawClient, error_code, options, raw, run_hub, token, wait_until

OPEN = {
    "": NamespaceOptions(publish=True, history_size=50, history_ttl=60, recovery=True),
    "pres": NamespaceOptions(publish=True, presence=True, join_leave=True),
}


def open_options(**overrides: Any) -> HubOptions:
    values: dict[str, Any] = {"namespaces": OPEN, "allow_anonymous": True}
    values.update(overrides)
    return HubOptions(**values)


class PackClient:
    """The hub protocol by hand in MessagePack (binary frames)."""

    def __init__(self, ws: wsend.ClientConnection) -> None:
        self.ws = ws
        self.next = 0

    @classmethod
    async def open(cls, url: str) -> PackClient:
        ws = await wsend.connect(url, subprotocols=["wsend.v1.msgpack"])
        assert ws.protocol == "wsend.v1.msgpack"
        return cls(ws)

    async def frames(self) -> list[dict[str, Any]]:
        async with asyncio.timeout(5):
            message = await self.ws.recv()
        assert isinstance(message, bytes)
        decoded = msgspec.msgpack.decode(message)
        return decoded if isinstance(decoded, list) else [decoded]

    async def call(self, method: str, **fields: Any) -> dict[str, Any]:
        self.next += 1
        await self.ws.send(msgspec.msgpack.encode({"id": self.next, "method": method, **fields}))
        return await self.reply(self.next)

    async def send_raw(self, message: bytes) -> None:
        await self.ws.send(message)

    async def reply(self, id: int) -> dict[str, Any]:
        while True:
            for frame in await self.frames():
                if frame.get("id") == id:
                    return frame


def _pack_publish(id: int, channel: str, data: bytes) -> bytes:
    """A MessagePack ``publish`` whose ``data`` is the given raw MessagePack bytes."""
    head = msgspec.msgpack.encode({"id": id, "method": "publish", "channel": channel})
    # A fixmap of 3 entries becomes one of 4: append the "data" key and the raw value.
    assert head[0] == 0x83
    return bytes([0x84]) + head[1:] + msgspec.msgpack.encode("data") + data


PUBLISH_X = '{"id":2,"method":"publish","channel":"x","data":'


async def _frames_until_closed(client: RawClient) -> list[dict[str, Any]]:
    frames: list[dict[str, Any]] = []
    with contextlib.suppress(ConnectionClosed):
        while True:
            frames.extend(await client.frames())
    return frames


async def _next_pub(client: RawClient | PackClient) -> dict[str, Any]:
    while True:
        for frame in await client.frames():
            if frame.get("push") == "pub":
                return frame


# -- application data ---------------------------------------------------------------------------


async def _subscribers_and_publisher(url: str) -> tuple[RawClient, PackClient, RawClient]:
    """A JSON and a MessagePack subscriber of channel x, and a JSON publisher, connected."""
    json_sub = await RawClient.open(url)
    pack_sub = await PackClient.open(url)
    publisher = await RawClient.open(url)
    for client in (json_sub, pack_sub, publisher):
        assert "result" in await client.call("connect")
    assert "result" in await json_sub.call("subscribe", channel="x")
    assert "result" in await pack_sub.call("subscribe", channel="x")
    return json_sub, pack_sub, publisher


@pytest.mark.parametrize(
    "message",
    [
        pytest.param(b'{"id":2,"method":"publish","channel":"x","data":"\xff\xfe"}', id="utf8"),
        pytest.param(PUBLISH_X + "1e999}", id="number"),
        pytest.param(PUBLISH_X + "-1" + "0" * 30 + "}", id="int"),
        # Past the hub's depth limit, whatever the Python version's decoder could take.
        pytest.param(
            PUBLISH_X + "[" * (MAX_DATA_DEPTH + 1) + "]" * (MAX_DATA_DEPTH + 1) + "}", id="deep"
        ),
    ],
)
async def test_json_data_others_cant_read_is_refused(message: str | bytes) -> None:
    async with run_hub(open_options()) as running:
        json_sub, pack_sub, publisher = await _subscribers_and_publisher(running.url)
        await publisher.ws.send(message)
        [reply] = await publisher.frames()
        assert reply["id"] == 2
        assert reply["error"]["code"] == ErrorCode.BAD_REQUEST
        assert reply["error"]["temporary"] is False
        # Nothing was published; the subscribers get the next publication, at offset 1.
        assert (await publisher.call("publish", channel="x", data="ok"))["result"]["offset"] == 1
        for client in (json_sub, pack_sub):
            pub = await _next_pub(client)
            assert (pub["data"], pub["offset"]) == ("ok", 1)


def _depth(value: object) -> int:
    depth = 0
    while isinstance(value, list):
        depth += 1
        value = value[0] if value else None
    return depth


async def test_data_as_deep_as_the_limit_reaches_both_encodings() -> None:
    deep = "[" * MAX_DATA_DEPTH + "]" * MAX_DATA_DEPTH
    async with run_hub(open_options()) as running:
        json_sub, pack_sub, publisher = await _subscribers_and_publisher(running.url)
        await publisher.ws.send(PUBLISH_X + deep + "}")
        [reply] = await publisher.frames()
        assert reply["result"]["offset"] == 1
        for client in (json_sub, pack_sub):
            pub = await _next_pub(client)
            assert _depth(pub["data"]) == MAX_DATA_DEPTH


@pytest.mark.parametrize(
    "data",
    [
        pytest.param(msgspec.msgpack.encode(msgspec.msgpack.Ext(3, b"x")), id="ext"),
        pytest.param(b"\xa2\xff\xfe", id="utf8"),
        pytest.param(b"\x81\xc0\x01", id="nil-key"),
        pytest.param(b"\x91" * 5000 + b"\xc0", id="deep"),
        pytest.param(b"\x81\xa1k" * MAX_DATA_DEPTH + b"\x91\xc0", id="deep-maps"),
    ],
)
async def test_msgpack_data_others_cant_read_is_refused(data: bytes) -> None:
    async with run_hub(open_options()) as running:
        json_sub = await RawClient.open(running.url)
        publisher = await PackClient.open(running.url)
        for client in (json_sub, publisher):
            assert "result" in await client.call("connect")
        assert "result" in await json_sub.call("subscribe", channel="x")
        await publisher.send_raw(_pack_publish(7, "x", data))
        [reply] = await publisher.frames()
        assert reply["id"] == 7
        assert reply["error"]["code"] == ErrorCode.BAD_REQUEST
        assert "result" in await publisher.call("publish", channel="x", data=b"\x00bin")
        pub = await _next_pub(json_sub)
        assert pub["offset"] == 1
        assert isinstance(pub["data"], str)


async def test_data_nested_30000_levels_deep_is_answered_with_an_error() -> None:
    # Too deep for the decoder to reach the frame's id: the hub finds it by scanning, answers
    # each such frame with 107, and goes on with the rest of the batch and the connection.
    deep_json = "[" * 30_000 + "]" * 30_000
    deep_pack = b"\x91" * 30_000 + b"\xc0"
    async with run_hub(open_options()) as running:
        subscriber = await RawClient.open(running.url)
        json_pub = await RawClient.open(running.url)
        pack_pub = await PackClient.open(running.url)
        for client in (subscriber, json_pub, pack_pub):
            assert "result" in await client.call("connect")
        assert "result" in await subscriber.call("subscribe", channel="x")
        await json_pub.ws.send('{"data":' + deep_json + ',"id":8,"method":"publish","channel":"x"}')
        [reply] = await json_pub.frames()
        assert (reply["id"], error_code(reply)) == (8, ErrorCode.BAD_REQUEST)
        publish = '{"id":9,"method":"publish","channel":"x","data":' + deep_json + "}"
        await json_pub.ws.send(
            '[{"id":10,"method":"ping"},' + publish + ',{"id":11,"method":"ping"}]'
        )
        frames = await json_pub.frames()
        assert [(f["id"], error_code(f)) for f in frames] == [
            (10, None),
            (9, ErrorCode.BAD_REQUEST),
            (11, None),
        ]
        await pack_pub.send_raw(_pack_publish(12, "x", deep_pack))
        [reply] = await pack_pub.frames()
        assert (reply["id"], reply["error"]["code"]) == (12, ErrorCode.BAD_REQUEST)
        assert "result" in await pack_pub.call("publish", channel="x", data="after")
        pub = await _next_pub(subscriber)
        assert (pub["data"], pub["offset"]) == ("after", 1)  # nothing deep was published


async def test_unencodable_rpc_result_is_error_100() -> None:
    async with run_hub(open_options()) as running:

        @running.hub.rpc("bad")
        def bad(session: Any, data: Any) -> Any:
            return object()

        async with raw(running.url) as client:
            await client.connect()
            reply = await client.call("rpc", name="bad")
            assert error_code(reply) == ErrorCode.INTERNAL
            assert reply["error"]["temporary"] is True
            assert "result" in await client.call("ping")


async def test_undecodable_connect_data_is_107_and_not_fatal() -> None:
    async with run_hub(open_options()) as running:
        client = await PackClient.open(running.url)
        message = msgspec.msgpack.encode({"id": 1, "method": "connect"})
        await client.send_raw(bytes([message[0] + 1]) + message[1:] + b"\xa4data\xa1\xff")
        [reply] = await client.frames()
        assert reply["error"]["code"] == ErrorCode.BAD_REQUEST
        assert "result" in await client.call("connect")


async def test_server_data_that_cant_be_encoded_is_refused() -> None:
    async with run_hub(open_options()) as running:
        for data in (2**70, {None: 1}, object()):
            with pytest.raises(HubError) as caught:
                await running.hub.publish("x", data)
            assert caught.value.code == ErrorCode.BAD_REQUEST
        history = await running.hub.history("x")
        assert history.publications == []
        assert history.position.offset == 0


# -- frames -------------------------------------------------------------------------------------


async def test_text_frames_on_msgpack_are_invalid_frames() -> None:
    async with run_hub(open_options(max_bad_frames=3)) as running:
        client = await PackClient.open(running.url)
        assert "result" in await client.call("connect")
        for _ in range(3):
            await client.ws.send('{"id":5,"method":"ping"}')
        with pytest.raises(ConnectionClosed):
            await client.frames()
        assert client.ws.close_code == DisconnectCode.BAD_REQUEST


@pytest.mark.parametrize(
    "garbage",
    [
        "null",
        "[]",
        "[[[[[[[[[[]]]]]]]]]]",
        "[" * 60000,
        '{"id":1e308,"method":"ping"}',
        '{"id":9007199254740992,"method":"ping"}',
        '{"id":-1,"method":"ping"}',
        '{"id":"1","method":"ping"}',
        '{"id":1,"method":["ping"]}',
        '{"id":1,"method":"subscribe","channel":7}',
        '{"id":1,"method":"history","channel":"x","limit":-5}',
        '{"id":1,"method":"history","channel":"x","since":{"offset":"a","epoch":1}}',
        '{"id":1,"method":"subscribe","channel":"x","offset":18446744073709551616}',
        "[" + ",".join(['{"id":1,"method":"ping"}'] * 101) + "]",
    ],
)
async def test_garbage_gets_107_then_4500_and_others_unaffected(garbage: str) -> None:
    async with run_hub(open_options()) as running, raw(running.url) as bystander:
        await bystander.connect()
        await bystander.call("subscribe", channel="x")
        async with raw(running.url) as hostile:
            await hostile.connect()
            for _ in range(10):
                await hostile.ws.send(garbage)
            assert await hostile.closed() == DisconnectCode.BAD_REQUEST
            errors = [f for f in hostile.pushes if "error" in f]
            assert all(f["error"]["code"] == ErrorCode.BAD_REQUEST for f in errors)
        assert "result" in await bystander.call("publish", channel="x", data=1)
        assert (await bystander.push("pub"))["data"] == 1


async def test_oversized_message_closes_1009() -> None:
    hub_options = open_options(max_message_size=1024)
    async with run_hub(hub_options) as running, raw(running.url) as client:
        await client.connect()
        await client.send({"id": 2, "method": "publish", "channel": "x", "data": "a" * 2000})
        assert await client.closed() == 1009


async def test_huge_offsets_are_answered() -> None:
    async with run_hub(open_options()) as running, raw(running.url) as client:
        await client.connect()
        top = 2**63 - 1
        reply = await client.call("subscribe", channel="x", recover=True, epoch="nope", offset=top)
        assert reply["result"]["recovered"] is False
        epoch = reply["result"]["epoch"]
        reply = await client.call("history", channel="x", since={"offset": top, "epoch": epoch})
        assert reply["result"]["publications"] == []
        reply = await client.call("history", channel="x", limit=top)
        assert reply["result"]["publications"] == []


# -- floods -------------------------------------------------------------------------------------


async def test_command_flood_is_rate_limited_then_4007() -> None:
    hub_options = open_options(
        commands_rate=RateLimit(5, 5), rate_limit_disconnect_after=20, rate_limit_window=10
    )
    async with run_hub(hub_options) as running, raw(running.url) as bystander:
        await bystander.connect()
        async with raw(running.url) as flooder:
            await flooder.connect()
            batch = [{"id": i, "method": "ping"} for i in range(1, 51)]
            await flooder.send(*batch)
            frames = await _frames_until_closed(flooder)
            assert flooder.ws.close_code == DisconnectCode.TOO_MANY_REQUESTS
            assert [f["id"] for f in frames] == list(range(1, 25))  # 4 + 20 refusals
            errors = [f for f in frames if "error" in f]
            assert errors
            assert errors[0]["error"] == {
                "code": ErrorCode.TOO_MANY_REQUESTS,
                "message": "too many requests",
                "temporary": True,
            }
        assert "result" in await bystander.call("ping")


async def test_steady_refusals_spread_over_more_than_the_window_close_at_the_limit() -> None:
    # A client that stays over its limit at a slow, steady pace: its refusals never come
    # `rate_limit_disconnect_after` at a time within one window, yet it is closed at its
    # sixth refusal, right after that refusal is answered; every command gets an answer.
    hub_options = open_options(
        commands_rate=RateLimit(0.001, 1), rate_limit_disconnect_after=6, rate_limit_window=0.6
    )
    async with run_hub(hub_options) as running, raw(running.url) as client:
        await client.connect()  # the burst of one token goes to connect
        answered: list[dict[str, Any]] = []
        with contextlib.suppress(ConnectionClosed):
            for id in range(2, 20):
                await client.send({"id": id, "method": "ping"})
                answered.extend(await client.frames())
                await asyncio.sleep(0.25)  # six refusals span 1.25 s, twice the window
        frames = answered + await _frames_until_closed(client)
        assert client.ws.close_code == DisconnectCode.TOO_MANY_REQUESTS
        assert [f["id"] for f in frames] == list(range(2, 8))
        assert all(f["error"]["code"] == ErrorCode.TOO_MANY_REQUESTS for f in frames)


async def test_reader_that_never_reads_is_dropped_and_memory_stays_bounded() -> None:
    hub_options = HubOptions(
        namespaces={"": NamespaceOptions(publish=True, queue_max_bytes=64 * 1024)},
        allow_anonymous=True,
        publications_rate=RateLimit(10_000, 10_000),
        commands_rate=RateLimit(10_000, 10_000),
    )
    serve_options = {"close_timeout": 1, "compression": None}  # as incompressible data
    async with run_hub(hub_options, serve_options=serve_options) as running:
        # A client that subscribes, then never reads again (with a small receive buffer, so
        # that the kernel doesn't absorb megabytes first).
        stuck = await RawClient.open(running.url)
        client_id = (await stuck.connect())["result"]["client"]
        assert "result" in await stuck.call("subscribe", channel="x")
        transport = stuck.ws.transport
        assert transport is not None
        transport.get_extra_info("socket").setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        transport.pause_reading()
        [session] = [s for s in running.hub.sessions() if s.client == client_id]
        async with raw(running.url) as publisher, asyncio.timeout(60):
            await publisher.connect()
            while not session.closed:
                reply = await publisher.call("publish", channel="x", data="y" * 50_000)
                assert "result" in reply, reply
                assert session.queue.size_bytes <= 64 * 1024
            assert session.close_code == DisconnectCode.SLOW_CONSUMER
        transport.abort()


# -- churn --------------------------------------------------------------------------------------


async def test_many_connections_leave_nothing_behind() -> None:
    async with run_hub(options(), api_key=None) as running:
        hub = running.hub
        broker = hub.broker
        await hub.start()
        baseline = len(asyncio.all_tasks())

        async def visit(i: int) -> None:
            async with raw(running.url, token(f"user{i % 7}")) as client:
                for name in (f"chat:room{i}", "chat:lobby", f"feed:f{i % 3}"):
                    assert "result" in await client.call("subscribe", channel=name)
                await client.call("publish", channel="chat:lobby", data=i)
                if i % 2:
                    await client.call("unsubscribe", channel=f"chat:room{i}")
                if i % 3 == 0:
                    client.ws.transport.abort()  # type: ignore[attr-defined]

        for start in range(0, 60, 10):
            await asyncio.gather(*(visit(i) for i in range(start, start + 10)))
        await wait_until(lambda: not hub.sessions())
        await wait_until(lambda: len(asyncio.all_tasks()) <= baseline)
        assert hub._channels == {}
        assert hub._locks == {}
        assert hub._links == {}
        assert hub._handlers == set()
        assert broker._channels == set()  # type: ignore[attr-defined]
        assert await hub.presence_of("chat:lobby") == {}
        assert hub.metrics.subscriptions._value.get() == 0
        assert hub.metrics.connections._value.get() == 0
        gc.collect()


async def test_subscribe_unsubscribe_storm_on_new_channels_keeps_no_state() -> None:
    hub_options = HubOptions(
        namespaces={"": NamespaceOptions(presence=True)},
        allow_anonymous=True,
        commands_rate=RateLimit(10_000, 10_000),
    )
    async with run_hub(hub_options) as running, raw(running.url) as client:
        await client.connect()
        for i in range(300):
            frames = [
                {"id": 2 * i + 1, "method": "subscribe", "channel": f"c{i}"},
                {"id": 2 * i + 2, "method": "unsubscribe", "channel": f"c{i}"},
            ]
            await client.send(*frames)
        await client.reply(600)
        hub = running.hub
        assert hub._channels == {}
        assert hub._locks == {}
        assert await hub.presence_stats("c299") == type(await hub.presence_stats("c0"))(0, 0)


async def test_hub_close_cleans_up_quietly(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING)
    async with run_hub(open_options()) as running:
        clients = [await RawClient.open(running.url) for _ in range(5)]
        for client in clients:
            await client.connect()
            await client.call("subscribe", channel="pres:room")
        await running.hub.close()
        for client in clients:
            assert await client.closed() == DisconnectCode.SHUTDOWN
    assert [r for r in caplog.records if r.levelno >= logging.WARNING] == []
