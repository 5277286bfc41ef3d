"""Delta compression (``docs/protocol.md`` section 5) on the hub, over real sockets.

The readers here are written from the document: plain WebSocket connections in JSON or
MessagePack that keep, per channel, the payload of the last ``pub`` push and apply each delta
to it (:func:`wsend.hub.fossil.apply`). Every scenario runs on the memory engine and on the
Redis engine (a real ``redis-server``), in both encodings, with subscribers with and without
delta compression on the same channel. The conflation rules run without sockets, on a real
:class:`~wsend.hub.node.Hub` whose sessions' queues the test drains by hand.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import os
import random
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any

import msgspec
import pytest

import wsend
from wsend.hub import fossil
from wsend.hub.broker import Publication
from wsend.hub.memory import MemoryBroker, MemoryPresence
from wsend.hub.node import Hub
from wsend.hub.options import HubOptions, NamespaceOptions
from wsend.hub.redis import RedisBroker, RedisPresence
from wsend.hub.session import Session
from wsend.hub.wire import JSON, MSGPACK, Codec

from .e2e import Running, run_hub
from .redis_server import RedisServer, running

_prefixes = itertools.count()

NAMESPACES = {
    "": NamespaceOptions(publish=True),
    "book": NamespaceOptions(publish=True, delta=True),
    "plain": NamespaceOptions(publish=True),
    "log": NamespaceOptions(
        publish=True, delta=True, history_size=100, history_ttl=60, recovery=True
    ),
}


def options(**overrides: Any) -> HubOptions:
    return HubOptions(allow_anonymous=True, namespaces=NAMESPACES, **overrides)


def book(seq: int, rng: random.Random | None = None) -> dict[str, Any]:
    """An order book snapshot: 40 levels a side; a few sizes change from one to the next."""
    rng = rng or random.Random(seq)
    bids = [[round(100 - i * 0.01, 2), 10 + i] for i in range(40)]
    asks = [[round(100.01 + i * 0.01, 2), 20 + i] for i in range(40)]
    for _ in range(3):
        side = rng.choice([bids, asks])
        side[rng.randrange(40)][1] = rng.randrange(1, 500)
    return {"symbol": "ACME", "seq": seq, "bids": bids, "asks": asks}


class Payloads:
    """What a client of section 5 keeps: each delta channel's last payload (its base)."""

    def __init__(self, binary: bool) -> None:
        self.binary = binary
        self.module: Any = msgspec.msgpack if binary else msgspec.json
        self.bases: dict[str, bytes] = {}
        self.deltas = 0
        self.fulls = 0

    def payload(self, data: Any) -> bytes:
        """The bytes a delta subscription's ``data`` carries."""
        if self.binary:
            assert isinstance(data, bytes), data
            return data
        assert isinstance(data, str), data
        return data.encode()

    def decode(self, push: dict[str, Any]) -> Any:
        """The data of a delta subscription's push: full, or the base with the delta applied."""
        channel, payload = push["channel"], self.payload(push["data"])
        if push.get("delta"):
            self.deltas += 1
            payload = fossil.apply(self.bases[channel], payload)
        else:
            self.fulls += 1
        self.bases[channel] = payload
        return self.module.decode(payload)


class Reader(Payloads):
    """A hub client written from the document: frames in one encoding, delta bases kept."""

    def __init__(self, ws: wsend.ClientConnection, encoding: str) -> None:
        super().__init__(encoding == "msgpack")
        self.ws = ws
        self.next = 0
        self.inbox: list[dict[str, Any]] = []

    @classmethod
    @contextlib.asynccontextmanager
    async def open(cls, url: str, encoding: str) -> AsyncIterator[Reader]:
        ws = await wsend.connect(url, subprotocols=[f"wsend.v1.{encoding}"], compression=None)
        reader = cls(ws, encoding)
        try:
            assert "result" in await reader.command("connect")
            yield reader
        finally:
            await ws.close()

    async def receive(self) -> None:
        async with asyncio.timeout(10):
            message = await self.ws.recv()
        decoded = self.module.decode(message)
        self.inbox.extend(decoded if isinstance(decoded, list) else [decoded])

    async def command(self, method: str, **fields: Any) -> dict[str, Any]:
        self.next += 1
        await self.ws.send(self.module.encode({"id": self.next, "method": method, **fields}))
        while True:
            for index, frame in enumerate(self.inbox):
                if frame.get("id") == self.next:
                    del self.inbox[index]
                    return frame
            await self.receive()

    async def subscribe(self, channel: str, **fields: Any) -> dict[str, Any]:
        reply = await self.command("subscribe", channel=channel, **fields)
        assert "result" in reply, reply
        self.bases.pop(channel, None)  # the first push after a subscribe is full
        result: dict[str, Any] = reply["result"]
        return result

    async def push(self, channel: str) -> dict[str, Any]:
        """The next ``pub`` push of ``channel``, raw."""
        while True:
            for index, frame in enumerate(self.inbox):
                if frame.get("push") == "pub" and frame["channel"] == channel:
                    del self.inbox[index]
                    return frame
            await self.receive()

    async def data(self, channel: str) -> Any:
        return self.decode(await self.push(channel))


# -- engines ------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def redis_server() -> Iterator[RedisServer]:
    yield from running()


Engine = Callable[[], dict[str, Any]]


@pytest.fixture(params=["memory", "redis"])
def engine(request: pytest.FixtureRequest) -> Engine:
    """Keyword arguments of :class:`Hub` for a node of the engine (several share Redis)."""
    if request.param == "memory":
        return dict
    server: RedisServer = request.getfixturevalue("redis_server")
    prefix = f"delta{os.getpid()}-{next(_prefixes)}"

    def redis() -> dict[str, Any]:
        return {
            "broker": RedisBroker(server.url, prefix=prefix),
            "presence": RedisPresence(server.url, prefix=prefix),
        }

    return redis


ENCODINGS = pytest.mark.parametrize("encoding", ["json", "msgpack"])


# -- negotiation --------------------------------------------------------------------------------


@ENCODINGS
async def test_negotiation(encoding: str) -> None:
    async with run_hub(options()) as hub, Reader.open(hub.url, encoding) as reader:
        assert (await reader.subscribe("book:a", delta="fossil"))["delta"] is True
        # Asking is harmless where the namespace has no deltas: an ordinary subscription.
        assert "delta" not in await reader.subscribe("plain:a", delta="fossil")
        assert "delta" not in await reader.subscribe("book:b")
        for value in ("zstd", "", "FOSSIL"):
            error = (await reader.command("subscribe", channel="book:c", delta=value))["error"]
            assert error == {"code": 107, "message": "unknown delta type", "temporary": False}
        reply = await reader.command("subscribe", channel="book:c", delta=1)
        assert reply["error"]["code"] == 107  # not a string: an invalid frame
        assert "delta" in await reader.subscribe("book:c", delta="fossil")  # then it works
        await hub.hub.publish("book:b", {"n": 1})
        await hub.hub.publish("plain:a", {"n": 2})
        assert (await reader.push("book:b"))["data"] == {"n": 1}  # plain data, no delta
        assert (await reader.push("plain:a"))["data"] == {"n": 2}


# -- deltas between publications -------------------------------------------------------------


async def _publish_books(running: Running, publisher: Reader, count: int) -> list[Any]:
    """Publish ``count`` books, alternately from the server and from a client."""
    sent = []
    for seq in range(count):
        value = book(seq)
        if seq % 2:
            reply = await publisher.command("publish", channel="book:ACME", data=value)
            assert "result" in reply, reply
        else:
            await running.hub.publish("book:ACME", value)
        sent.append(value)
    return sent


@ENCODINGS
async def test_subscribers_rebuild_every_publication(engine: Engine, encoding: str) -> None:
    other = "json" if encoding == "msgpack" else "msgpack"
    async with (
        run_hub(options(), **engine()) as hub,
        Reader.open(hub.url, encoding) as same,
        Reader.open(hub.url, other) as transcoded,
        Reader.open(hub.url, encoding) as plain,
        Reader.open(hub.url, encoding) as publisher,
    ):
        for reader in (same, transcoded):
            assert (await reader.subscribe("book:ACME", delta="fossil"))["delta"] is True
        await plain.subscribe("book:ACME")
        sent = await _publish_books(hub, publisher, 12)
        for value in sent:
            assert await same.data("book:ACME") == value
            assert await transcoded.data("book:ACME") == value
            push = await plain.push("book:ACME")
            assert push["data"] == value
            assert "delta" not in push
        for reader in (same, transcoded):
            assert reader.fulls == 1  # the first; every later one is a delta
            assert reader.deltas == len(sent) - 1


@ENCODINGS
async def test_a_delta_push_is_much_smaller(encoding: str) -> None:
    async with run_hub(options()) as hub, Reader.open(hub.url, encoding) as reader:
        await reader.subscribe("book:ACME", delta="fossil")
        for seq in range(2):
            await hub.hub.publish("book:ACME", book(seq))
        sizes = []
        for _ in range(2):
            push = await reader.push("book:ACME")
            sizes.append(len(reader.payload(push["data"])))
            reader.decode(push)
        full, delta = sizes
        assert delta * 10 < full  # three numbers changed in about 1.5 kB


async def test_client_payloads_travel_byte_for_byte() -> None:
    """A JSON publisher's own text (spacing, key order, escapes) is the payload."""
    text = '{"b": 1,  "a": "\\u00e9t\\u00e9",\n "c": [1.50, 2e3]}'
    async with (
        run_hub(options()) as hub,
        Reader.open(hub.url, "json") as reader,
        wsend.connect(hub.url, subprotocols=["wsend.v1.json"]) as ws,
    ):
        await reader.subscribe("book:raw", delta="fossil")
        await ws.send('{"id":1,"method":"connect"}')
        await ws.recv()
        await ws.send('{"id":2,"method":"publish","channel":"book:raw","data":' + text + "}")
        push = await reader.push("book:raw")
        assert push["data"] == text
        assert reader.decode(push) == json.loads(text)


@ENCODINGS
async def test_deltas_only_when_smaller(encoding: str) -> None:
    rng = random.Random(7)
    async with run_hub(options()) as hub, Reader.open(hub.url, encoding) as reader:
        await reader.subscribe("book:noise", delta="fossil")
        values = [rng.randbytes(300).hex() for _ in range(5)] + ["", None, 0]
        for value in values:
            await hub.hub.publish("book:noise", value)
        for value in values:
            push = await reader.push("book:noise")
            assert "delta" not in push
            assert reader.decode(push) == value


# -- resubscribe and recovery ------------------------------------------------------------------


@ENCODINGS
async def test_resubscribe_and_recovery_start_full(engine: Engine, encoding: str) -> None:
    async with run_hub(options(), **engine()) as hub, Reader.open(hub.url, encoding) as reader:
        result = await reader.subscribe("log:ACME", delta="fossil")
        assert result["delta"] is True
        assert result["recoverable"] is True
        epoch = result["epoch"]
        for seq in range(3):
            await hub.hub.publish("log:ACME", book(seq))
        pushes = [await reader.push("log:ACME") for _ in range(3)]
        assert [bool(p.get("delta")) for p in pushes] == [False, True, True]
        assert [reader.decode(p) for p in pushes] == [book(0), book(1), book(2)]
        offset = pushes[-1]["offset"]

        assert (await reader.command("unsubscribe", channel="log:ACME"))["result"] == {}
        for seq in range(3, 6):
            await hub.hub.publish("log:ACME", book(seq))
        result = await reader.subscribe(
            "log:ACME", delta="fossil", recover=True, epoch=epoch, offset=offset
        )
        assert result["recovered"] is True
        recovered = result["publications"]
        assert [p["offset"] for p in recovered] == [offset + 1, offset + 2, offset + 3]
        # Recovered publications carry full payloads, never deltas.
        assert all("delta" not in p for p in recovered)
        values = [reader.module.decode(reader.payload(p["data"])) for p in recovered]
        assert values == [book(3), book(4), book(5)]

        for seq in range(6, 9):
            await hub.hub.publish("log:ACME", book(seq))
        pushes = [await reader.push("log:ACME") for _ in range(3)]
        assert [bool(p.get("delta")) for p in pushes] == [False, True, True]
        assert [reader.decode(p) for p in pushes] == [book(6), book(7), book(8)]
        # history always answers plain data
        history = (await reader.command("history", channel="log:ACME", limit=1, reverse=True))[
            "result"
        ]
        assert history["publications"][0]["data"] == book(8)


# -- several nodes on Redis ---------------------------------------------------------------------


@ENCODINGS
async def test_two_nodes_on_redis(redis_server: RedisServer, encoding: str) -> None:
    prefix = f"delta-nodes{os.getpid()}-{next(_prefixes)}"

    def engine() -> dict[str, Any]:
        return {
            "broker": RedisBroker(redis_server.url, prefix=prefix),
            "presence": RedisPresence(redis_server.url, prefix=prefix),
        }

    other = "json" if encoding == "msgpack" else "msgpack"
    async with (
        run_hub(options(), **engine()) as first,
        run_hub(options(), **engine()) as second,
        Reader.open(first.url, encoding) as publisher,
        Reader.open(first.url, other) as near,
        Reader.open(second.url, encoding) as far,
        Reader.open(second.url, other) as far_other,
        Reader.open(second.url, encoding) as far_plain,
    ):
        for reader in (near, far, far_other):
            await reader.subscribe("book:ACME", delta="fossil")
        await far_plain.subscribe("book:ACME")
        await asyncio.sleep(0.2)  # both nodes' Redis subscriptions are in place
        sent = await _publish_books(first, publisher, 10)
        for value in sent:
            for reader in (near, far, far_other):
                assert await reader.data("book:ACME") == value
            assert (await far_plain.push("book:ACME"))["data"] == value
        for reader in (near, far, far_other):
            assert (reader.fulls, reader.deltas) == (1, len(sent) - 1)


# -- without sockets: the queue, conflation, subscribes in progress ----------------------------


class Sink:
    def wakeup(self) -> None:
        pass

    def close(self, code: int, reason: str) -> None:
        raise AssertionError(f"closed with {code}: {reason}")


class Drained:
    """A session of a real hub whose queue the test drains by hand, decoding as a client."""

    def __init__(self, hub: Hub, codec: Codec) -> None:
        self.session = Session(hub, Sink(), codec)
        self.codec = codec
        self.reader = Payloads(codec.binary)
        self.ids = itertools.count(1)
        self.latest: dict[str, Any] = {}  # by conflation key: the last value seen

    async def command(self, method: str, **fields: Any) -> None:
        frame = {"id": next(self.ids), "method": method, **fields}
        message = self.codec.encode_one(frame)
        await self.session.handle_message(message if self.codec.binary else message.decode())

    def drain(self, max_bytes: int = 1 << 20) -> int:
        """Read one message's worth of frames (about ``max_bytes``); returns frames read."""
        message = self.session.pop_message(max_bytes)
        if message is None:
            return 0
        decoded = self.reader.module.decode(message)
        frames = decoded if isinstance(decoded, list) else [decoded]
        for frame in frames:
            if frame.get("push") == "pub":
                self.latest[frame.get("key")] = self.reader.decode(frame)
            elif frame.get("push") == "unsubscribe":
                assert frame["code"] == 2500  # subscribe again
            else:
                assert "result" in frame, frame
        return len(frames)

    def drain_all(self) -> None:
        while self.drain():
            pass


@pytest.mark.parametrize("codec", [JSON, MSGPACK], ids=["json", "msgpack"])
@pytest.mark.parametrize("seed", range(6))
async def test_conflation_never_takes_a_base_away(codec: Codec, seed: int) -> None:
    """Keyed publications to a slow client on a conflating channel, drained at random
    moments: every delta applies, and once drained the client holds each key's latest."""
    rng = random.Random(seed)
    ns = NamespaceOptions(delta=True, slow_consumer="conflate", queue_max_bytes=16000)
    hub = Hub(HubOptions(allow_anonymous=True, namespaces={"": NamespaceOptions(), "q": ns}))
    await hub.start()
    try:
        client = Drained(hub, codec)
        await client.command("connect")
        await client.command("subscribe", channel="q:quotes", delta="fossil")
        client.drain_all()
        keys = [f"K{i}" for i in range(6)]
        state = {key: book(0, rng) for key in keys}
        for step in range(400):
            key = rng.choice(keys)
            state[key] = {**book(step, rng), "symbol": key}
            await hub.publish("q:quotes", state[key], key=key)
            if rng.random() < 0.3:
                client.drain(rng.choice([500, 3000, 1 << 20]))
        client.drain_all()
        assert client.latest == state
        assert client.session.queue.replaced > 0  # conflation happened...
        assert client.reader.deltas > 10, client.reader.deltas  # ...and deltas were still sent
    finally:
        await hub.close()


async def test_publications_during_a_subscribe_are_full() -> None:
    """Publications buffered while a subscribe is in progress come out full after the reply;
    the live ones that follow are deltas again."""

    class SlowHub(Hub):
        async def add_subscription(self, session: Session, channel: str) -> None:
            await super().add_subscription(session, channel)
            if channel == "book:slow" and not hasattr(self, "done"):
                self.done = True
                for seq in range(3):  # arrive while the subscribe waits for the history
                    await self.publish("book:slow", book(seq))

    hub = SlowHub(options())
    await hub.start()
    try:
        client = Drained(hub, JSON)
        await client.command("connect")
        await client.command("subscribe", channel="book:slow", delta="fossil")
        client.drain_all()
        assert (client.reader.fulls, client.reader.deltas) == (3, 0)
        for seq in range(3, 6):
            await hub.publish("book:slow", book(seq))
        client.drain_all()
        assert (client.reader.fulls, client.reader.deltas) == (3, 3)
        assert client.latest[None] == book(5)
    finally:
        await hub.close()


async def test_the_node_keeps_a_base_only_for_delta_subscribers() -> None:
    hub = Hub(options())
    await hub.start()
    try:
        plain, deltas = Drained(hub, JSON), Drained(hub, MSGPACK)
        for client in (plain, deltas):
            await client.command("connect")
        await plain.command("subscribe", channel="book:x")
        await hub.publish("book:x", book(0))
        assert "book:x" not in hub._previous  # nobody needs it
        await deltas.command("subscribe", channel="book:x", delta="fossil")
        await hub.publish("book:x", book(1))
        assert "book:x" in hub._previous
        await deltas.command("unsubscribe", channel="book:x")
        await hub.publish("book:x", book(2))
        assert "book:x" not in hub._previous
        await plain.command("unsubscribe", channel="book:x")
        assert not hub._previous
    finally:
        await hub.close()


async def test_a_lost_stretch_forgets_the_base() -> None:
    """When the engine reports lost publications, the node drops the channel's base: the
    next publication can't be a delta against one the clients may not have."""
    broker = MemoryBroker()
    hub = Hub(options(), broker=broker, presence=MemoryPresence())
    await hub.start()
    try:
        client = Drained(hub, JSON)
        await client.command("connect")
        await client.command("subscribe", channel="book:x", delta="fossil")
        await hub.publish("book:x", book(0))
        await hub._on_publication("book:x", None)  # what a broker calls after a loss
        assert "book:x" not in hub._previous
        await client.command("subscribe", channel="book:x", delta="fossil")
        await hub._on_publication("book:x", Publication(data=book(1)))
        client.drain_all()
        assert client.latest[None] == book(1)
    finally:
        await hub.close()
