"""The Python client with delta compression (``SubscribeOptions.delta``), against real hubs.

The application sees whole data whatever travels; the client rebuilds deltas from the payload
it keeps, on the memory and Redis engines, in JSON and MessagePack, next to subscribers
without deltas. A delta that can't be applied (made wrong on purpose on the hub's side) is
never delivered: the client reports it and subscribes again, with recovery where the channel
keeps history, so the publication still arrives whole.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any, Literal

import pytest

from wsend.hub import fossil, wire
from wsend.hub.client import HubClient, Publication

from .contract import wait_until
from .e2e import Running, run_hub
from .test_client import FAST, HubConn, ScriptedHub, hub  # noqa: F401 - a fixture
from .test_delta import Engine, book, engine, options, redis_server  # noqa: F401 - fixtures

Encoding = Literal["json", "msgpack"]
ENCODINGS = pytest.mark.parametrize("encoding", ["json", "msgpack"])


@pytest.fixture
async def clients() -> AsyncIterator[list[HubClient]]:
    made: list[HubClient] = []
    yield made
    for client in made:
        await client.close()


async def connected(
    running: Running, made: list[HubClient], encoding: Encoding = "json", **kwargs: Any
) -> HubClient:
    client = HubClient(running.url, encoding=encoding, backoff_min=0.05, backoff_max=0.2, **kwargs)
    await client.connect()
    made.append(client)
    return client


@ENCODINGS
async def test_publications_are_whole(
    engine: Engine,  # noqa: F811 - a fixture
    encoding: Encoding,
    clients: list[HubClient],
) -> None:
    async with run_hub(options(), **engine()) as running:
        client = await connected(running, clients, encoding)
        plain = await connected(running, clients, "msgpack" if encoding == "json" else "json")
        got: list[Publication] = []
        plain_got: list[Publication] = []
        sub = client.subscribe("book:ACME", delta="fossil", on_publication=got.append)
        plain_sub = plain.subscribe("book:ACME", on_publication=plain_got.append)
        await sub.ready(5)
        await plain_sub.ready(5)
        assert sub.delta_on
        assert not plain_sub.delta_on
        sent = [book(seq) for seq in range(10)]
        for value in sent:
            await running.hub.publish("book:ACME", value)
        await client.publish("book:ACME", {"last": None})  # from a client: its payload
        await wait_until(lambda: len(got) == 11 and len(plain_got) == 11)
        assert [p.data for p in got] == [*sent, {"last": None}]
        assert [p.data for p in plain_got] == [*sent, {"last": None}]
        assert sub.deltas >= 9  # all but the first book (the last may be full)


async def test_asking_where_deltas_are_off(clients: list[HubClient]) -> None:
    async with run_hub(options()) as running:
        client = await connected(running, clients)
        got: list[Publication] = []
        sub = client.subscribe("plain:x", delta="fossil", on_publication=got.append)
        await sub.ready(5)
        assert not sub.delta_on
        await running.hub.publish("plain:x", book(1))
        await running.hub.publish("plain:x", book(2))
        await wait_until(lambda: len(got) == 2)
        assert [p.data for p in got] == [book(1), book(2)]
        assert sub.deltas == 0


async def _drop(running: Running, client: HubClient) -> None:
    """Close the client's connection from the hub (4000: reconnect) and wait for it."""
    assert client.info is not None
    assert running.hub.disconnect("", 4000, "reconnect", client=client.info.client) == 1
    await wait_until(lambda: client.state != "connected")


@ENCODINGS
async def test_reconnect_recovers_then_deltas_again(
    engine: Engine,  # noqa: F811 - a fixture
    encoding: Encoding,
    clients: list[HubClient],
) -> None:
    async with run_hub(options(), **engine()) as running:
        client = await connected(running, clients, encoding)
        got: list[Publication] = []
        sub = client.subscribe("log:ACME", delta="fossil", on_publication=got.append)
        await sub.ready(5)
        for seq in range(3):
            await running.hub.publish("log:ACME", book(seq))
        await wait_until(lambda: len(got) == 3)
        await _drop(running, client)
        for seq in range(3, 6):  # missed while away: recovered, whole
            await running.hub.publish("log:ACME", book(seq))
        await sub.ready(5)
        await wait_until(lambda: len(got) == 6)
        assert sub.recovered is True
        deltas = sub.deltas
        for seq in range(6, 9):
            await running.hub.publish("log:ACME", book(seq))
        await wait_until(lambda: len(got) == 9)
        assert [p.data for p in got] == [book(seq) for seq in range(9)]
        assert [p.offset for p in got] == list(range(1, 10))
        assert sub.deltas == deltas + 2  # the first after the resubscribe is full


def _corrupting(monkeypatch: pytest.MonkeyPatch, seq: int) -> list[int]:
    """Make the hub's delta of the book numbered ``seq`` fail its checksum; returns a list
    that counts the corrupted deltas."""
    create = fossil.create
    marker = f'"seq":{seq},'.encode()
    corrupted: list[int] = []

    def corrupt(source: bytes, target: bytes, *, text: bool = False) -> bytes:
        delta = create(source, target, text=text)
        if marker in target or f"\xa3seq{chr(seq)}".encode("latin-1") in target:
            corrupted.append(seq)
            digit = b"1" if delta[-2:-1] != b"1" else b"2"
            delta = delta[:-2] + digit + b";"
        return delta

    monkeypatch.setattr(fossil, "create", corrupt)
    return corrupted


@ENCODINGS
async def test_a_broken_delta_is_never_delivered(
    monkeypatch: pytest.MonkeyPatch, encoding: Encoding, clients: list[HubClient]
) -> None:
    corrupted = _corrupting(monkeypatch, 3)
    errors: list[Exception] = []
    async with run_hub(options()) as running:
        client = await connected(running, clients, encoding, on_error=errors.append)
        got: list[Publication] = []
        subscribed: list[int] = []
        sub = client.subscribe(
            "log:ACME",
            delta="fossil",
            on_publication=got.append,
            on_subscribed=lambda s: subscribed.append(1),
        )
        await sub.ready(5)
        for seq in range(6):
            await running.hub.publish("log:ACME", book(seq))
        await wait_until(lambda: len(got) == 6)
        # The broken delta of book 3 came back whole by recovery, in order, once.
        assert [p.data for p in got] == [book(seq) for seq in range(6)]
        assert [p.offset for p in got] == list(range(1, 7))
        assert corrupted == [3]
        assert len(subscribed) == 2  # subscribed again...
        assert sub.recovered is True  # ...with recovery
        assert any(isinstance(e, fossil.DeltaError) for e in errors)


async def test_a_broken_delta_without_history_is_skipped(
    monkeypatch: pytest.MonkeyPatch, clients: list[HubClient]
) -> None:
    corrupted = _corrupting(monkeypatch, 2)
    async with run_hub(options()) as running:
        client = await connected(running, clients)
        got: list[Publication] = []
        resubscribed = asyncio.Event()
        sub = client.subscribe(
            "book:ACME",
            delta="fossil",
            on_publication=got.append,
            on_subscribed=lambda s: resubscribed.set(),
        )
        await sub.ready(5)
        resubscribed.clear()
        for seq in range(3):
            await running.hub.publish("book:ACME", book(seq))
        async with asyncio.timeout(5):
            await resubscribed.wait()
        await running.hub.publish("book:ACME", book(3))
        await wait_until(lambda: len(got) == 3)
        # Book 2 can't be recovered on a channel without history: it is lost, never wrong.
        assert [p.data for p in got] == [book(0), book(1), book(3)]
        assert corrupted == [2]


# -- a hub that sends what it shouldn't (the scripted double of test_client) -------------------


@pytest.mark.parametrize("encoding", ["json", "msgpack"])
async def test_malformed_payloads_never_reach_the_application(
    hub: ScriptedHub,  # noqa: F811 - a fixture
    encoding: Encoding,
) -> None:
    errors: list[Exception] = []
    client = HubClient(hub.url, encoding=encoding, on_error=errors.append, **FAST)
    await client.connect()
    codec = client.codec

    async def subscribe(conn: HubConn, cmd: wire.SubscribeCommand) -> None:
        hub.channel(cmd.channel).subscribers.add(conn)
        await conn.reply(cmd, wire.SubscribeResult(recoverable=False, delta=True))

    hub.script["subscribe"] = subscribe
    got: list[Publication] = []
    sub = client.subscribe("chat:d", delta="fossil", on_publication=got.append)
    await sub.ready(5)
    assert sub.delta_on
    delta = fossil.create(b"", codec.payload({"n": 0}))
    malformed = [
        wire.PubPush("chat:d", codec.wrap(delta), delta=True),  # a delta before any base
        wire.PubPush("chat:d", 123),  # not a payload
        wire.PubPush("chat:d", "{" if encoding == "json" else b"\xc1"),  # undecodable
        wire.PubPush("chat:d", b"x" if encoding == "json" else "x"),  # the wrong type
    ]
    for count, push in enumerate(malformed, start=2):
        await hub.conn.send(push)
        await wait_until(lambda count=count: len(hub.commands("subscribe")) == count)  # type: ignore[misc]
        await sub.ready(5)
    await hub.conn.send(wire.PubPush("chat:d", codec.wrap(codec.payload({"n": 1}))))
    await wait_until(lambda: len(got) == 1)
    assert [p.data for p in got] == [{"n": 1}]
    assert len(hub.commands("unsubscribe")) == len(malformed)  # each: start over
    assert [type(e) for e in errors] == [fossil.DeltaError] * len(malformed)
    await client.close()


async def test_malformed_recovered_payloads_fail_the_recovery(
    hub: ScriptedHub,  # noqa: F811 - a fixture
) -> None:
    errors: list[Exception] = []
    unrecovered: list[Any] = []
    client = HubClient(hub.url, on_error=errors.append, **FAST)
    await client.connect()

    async def subscribe(conn: HubConn, cmd: wire.SubscribeCommand) -> None:
        hub.channel(cmd.channel).subscribers.add(conn)
        if not cmd.recover:
            await conn.reply(cmd, wire.SubscribeResult(True, "e1", 0, delta=True))
            return
        frames = [wire.PublicationFrame(data=["not", "a", "payload"], offset=1)]
        await conn.reply(cmd, wire.SubscribeResult(True, "e1", 1, True, frames, delta=True))

    hub.script["subscribe"] = subscribe
    got: list[Publication] = []
    sub = client.subscribe(
        "chat:r", delta="fossil", on_publication=got.append, on_unrecovered=unrecovered.append
    )
    await sub.ready(5)
    await hub.conn.close(4000)
    await wait_until(lambda: bool(unrecovered))
    assert sub.recovered is False  # reload the state: nothing wrong was delivered
    assert got == []
    assert [type(e) for e in errors if isinstance(e, fossil.DeltaError)] == [fossil.DeltaError]
    await client.close()
