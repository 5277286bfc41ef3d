"""End-to-end tests of the hub over real sockets: delivery, recovery, the commands, the Python API.

The clients are the real :class:`~wsend.hub.client.HubClient` (and, where exact frames matter,
a hand-written JSON client); the hub is a real :class:`~wsend.hub.node.Hub` on loopback.
"""

from __future__ import annotations

import asyncio
import random
from typing import Any

import pytest

from wsend.hub import node as hub_node
from wsend.hub.broker import ClientInfo, StreamPosition
from wsend.hub.client import HubClient, Publication, Subscription
from wsend.hub.codes import DisconnectCode, ErrorCode, HubError
from wsend.hub.memory import MemoryPresence
from wsend.hub.options import NamespaceOptions
from wsend.hub.session import Session

from .e2e import NAMESPACES, Running, error_code, options, raw, run_hub, token, wait_until

FAST: dict[str, Any] = {"backoff_min": 0.01, "backoff_max": 0.05}
TOTAL = 10_000


class Receiver:
    """One client of the recovery test: records every publication it is handed."""

    def __init__(self, running: Running, user: str) -> None:
        self.user = user
        self.received: list[Any] = []
        self.done = asyncio.Event()
        self.connected = asyncio.Event()
        self.recoveries = 0
        self.client = HubClient(
            running.url,
            token=token(user),
            on_connected=lambda _: self.connected.set(),
            on_disconnected=lambda *_: self.connected.clear(),
            **FAST,
        )

    def on_publication(self, pub: Publication) -> None:
        self.received.append(pub.data)
        if pub.data == TOTAL - 1:
            self.done.set()

    def on_subscribed(self, sub: Subscription) -> None:
        if sub.recovered:
            self.recoveries += 1

    async def start(self) -> Subscription:
        await self.client.connect()
        sub = self.client.subscribe(
            "feed:ticks",
            on_publication=self.on_publication,
            on_subscribed=self.on_subscribed,
            max_queue=TOTAL,
        )
        await sub.ready()
        return sub


async def disrupt(running: Running, receivers: list[Receiver], stop: asyncio.Event) -> int:
    """Force random disconnects until ``stop``: a reconnect close code, or a dropped TCP link."""
    rng = random.Random(7)
    count = 0
    while not stop.is_set():
        await asyncio.sleep(rng.uniform(0.005, 0.03))
        victim = rng.choice(receivers)
        if not victim.connected.is_set():
            continue
        if rng.random() < 0.5:
            running.hub.disconnect(victim.user, DisconnectCode.RECONNECT, "test")
        else:
            for session in running.hub.sessions(victim.user):
                # No public API aborts a connection: reach the node's link to drop the TCP one.
                running.hub._links[session].ws.abort()
        count += 1
    return count


@pytest.mark.time_dependent
async def test_every_publication_once_and_in_order_across_forced_disconnects() -> None:
    feed = NamespaceOptions(history_size=TOTAL, history_ttl=300, recovery=True)
    hub_options = options(namespaces={**NAMESPACES, "feed": feed}, recovery_max_publications=TOTAL)
    async with run_hub(hub_options) as running:
        receivers = [Receiver(running, user) for user in ("ann", "ben", "cyd")]
        for receiver in receivers:
            await receiver.start()
        stop = asyncio.Event()
        disruptor = asyncio.create_task(disrupt(running, receivers, stop))
        for n in range(TOTAL):
            await running.hub.publish("feed:ticks", n)
            if n % 20 == 0:
                await asyncio.sleep(0.001)  # pace the publisher so that disconnects interleave
        stop.set()
        disruptions = await disruptor
        async with asyncio.timeout(20):
            for receiver in receivers:
                await receiver.done.wait()
        for receiver in receivers:
            assert receiver.received == list(range(TOTAL)), receiver.user
            await receiver.client.close()
        assert disruptions > 0
        assert sum(r.recoveries for r in receivers) > 0


async def test_recovered_false_beyond_the_history_window() -> None:
    feed = NamespaceOptions(history_size=5, history_ttl=60, recovery=True)
    async with run_hub(options(namespaces={**NAMESPACES, "feed": feed})) as running:
        hub = running.hub
        refused = asyncio.Event()
        away = False

        @hub.on_connect_callback
        def gate(session: Session, data: Any) -> None:
            if away:
                refused.set()
                raise HubError(ErrorCode.INTERNAL, "try later")  # temporary: retry

        unrecovered = asyncio.Event()
        async with HubClient(running.url, token=token("ann"), **FAST) as client:
            sub = client.subscribe(
                "feed:ticks", on_unrecovered=lambda _: unrecovered.set(), max_queue=100
            )
            await sub.ready()
            await hub.publish("feed:ticks", "seen")
            assert (await anext(sub)).data == "seen"
            away = True
            hub.disconnect("ann", DisconnectCode.RECONNECT)
            await refused.wait()
            for n in range(10):  # twice the history window while the client is away
                await hub.publish("feed:ticks", n)
            away = False
            await unrecovered.wait()
            assert sub.recovered is False
            assert sub.offset == 11
            await hub.publish("feed:ticks", "after")
            assert (await anext(sub)).data == "after"


async def test_recovery_within_window_with_raw_frames() -> None:
    async with run_hub() as running, raw(running.url, token("ann")) as client:
        reply = await client.call("subscribe", channel="feed:a")
        position = reply["result"]
        assert position["recoverable"] is True
        for n in range(3):
            await running.hub.publish("feed:a", n)
        pushes = [await client.push() for _ in range(3)]
        assert [p["offset"] for p in pushes] == [1, 2, 3]
        await client.call("unsubscribe", channel="feed:a")
        await running.hub.publish("feed:a", 3)
        again = await client.call(
            "subscribe", channel="feed:a", recover=True, epoch=position["epoch"], offset=2
        )
        result = again["result"]
        assert result["recovered"] is True
        assert [p["data"] for p in result["publications"]] == [2, 3]
        other_epoch = await client.call(
            "history", channel="feed:a", since={"offset": 1, "epoch": "nope"}
        )
        assert error_code(other_epoch) == ErrorCode.UNRECOVERABLE_POSITION


async def test_commands_end_to_end() -> None:
    async with run_hub() as running:
        hub = running.hub

        @hub.rpc("add")
        async def add(session: Session, data: Any) -> Any:
            return {"sum": data["a"] + data["b"], "user": session.user}

        @hub.rpc("fail")
        def fail(session: Session, data: Any) -> Any:
            raise HubError(1001, "custom", temporary=True)

        joined: list[str] = []
        async with (
            HubClient(running.url, token=token("ann", info={"name": "Ann"}), **FAST) as ann,
            HubClient(running.url, token=token("ben"), encoding="msgpack", **FAST) as ben,
        ):
            sub = ann.subscribe("chat:room", on_join=lambda info: joined.append(info.user))
            await sub.ready()
            await ben.subscribe("chat:room").ready()
            await wait_until(lambda: joined == ["ben"])
            presence = await ben.presence("chat:room")
            assert {entry.user for entry in presence.values()} == {"ann", "ben"}
            assert [e.info for e in presence.values() if e.user == "ann"] == [{"name": "Ann"}]
            stats = await ann.presence_stats("chat:room")
            assert (stats.num_clients, stats.num_users) == (2, 2)
            for n in range(5):
                await ben.publish("chat:room", {"n": n})
            first = await ann.history("chat:room", limit=2)
            assert [p.data["n"] for p in first.publications] == [0, 1]
            page = await ann.history("chat:room", limit=2, since=(2, first.epoch))
            assert [p.offset for p in page.publications] == [3, 4]
            assert await ann.rpc("add", {"a": 2, "b": 3}) == {"sum": 5, "user": "ann"}
            with pytest.raises(HubError) as failed:
                await ann.rpc("fail")
            assert (failed.value.code, failed.value.temporary) == (1001, True)
            with pytest.raises(HubError) as missing:
                await ann.rpc("nope")
            assert missing.value.code == ErrorCode.METHOD_NOT_FOUND
            got: list[Any] = []
            ann.on_message = got.append
            assert hub.send_message("ann", {"hello": 1}) == 1
            await wait_until(lambda: got == [{"hello": 1}])
            left: list[str] = []
            sub.on_leave = lambda info: left.append(info.user)
            await ben.close()
            await wait_until(lambda: left == ["ben"])


async def test_server_api() -> None:
    async with run_hub() as running, raw(running.url, token("ann")) as client:
        hub = running.hub
        await client.call("subscribe", channel="chat:x")
        position = await hub.publish("chat:x", {"a": 1}, key="k")
        push = await client.push()
        assert push == {
            "push": "pub", "channel": "chat:x", "data": {"a": 1}, "offset": 1, "key": "k"
        }  # fmt: skip
        positions = await hub.broadcast(["chat:x", "feed:y"], "both")
        assert [p.offset for p in positions] == [2, 1]
        history = await hub.history("chat:x", since=StreamPosition(1, position.epoch))
        assert [p.data for p in history.publications] == ["both"]
        presence = await hub.presence_of("chat:x")
        assert [c.user for c in presence.values()] == ["ann"]
        assert (await hub.presence_stats("chat:x")).num_users == 1
        assert [s.user for s in hub.sessions()] == ["ann"]
        assert hub.disconnect("ann", DisconnectCode.FORBIDDEN) == 1
        assert await client.closed() == DisconnectCode.FORBIDDEN
        assert hub.disconnect("nobody") == 0


async def test_close_ends_connections_with_shutdown() -> None:
    async with run_hub() as running, raw(running.url, token("ann")) as client:
        await running.hub.close()
        assert await client.closed() == DisconnectCode.SHUTDOWN


async def test_broker_loss_asks_to_resubscribe() -> None:
    async with run_hub() as running, raw(running.url, token("ann")) as client:
        await client.call("subscribe", channel="feed:a")
        await running.hub._on_publication("feed:a", None)  # the broker reports lost messages
        push = await client.push("unsubscribe")
        assert (push["channel"], push["code"]) == ("feed:a", 2500)


async def test_other_paths_are_refused() -> None:
    async with run_hub() as running:
        with pytest.raises(Exception, match="404"):
            await HubClient(running.url[: -len("/ws")] + "/other", reconnect=False).connect()


@pytest.mark.time_dependent
async def test_connect_timeout(monkeypatch: pytest.MonkeyPatch) -> None:
    """The node's periodic checks: no ``connect`` in time closes 4501."""
    monkeypatch.setattr(hub_node, "_TICK", 0.01)
    hub_options = options(connect_timeout=0.05)
    async with run_hub(hub_options) as running, raw(running.url, token("ann")) as client:
        await client.call("subscribe", channel="chat:room")
        async with raw(running.url) as silent:
            assert await silent.closed() == DisconnectCode.UNAUTHORIZED
        assert len(await running.hub.presence_of("chat:room")) == 1


class GatedPresence(MemoryPresence):
    """Presence whose ``add`` waits for a gate: a subscribe stays in progress meanwhile."""

    def __init__(self) -> None:
        super().__init__()
        self.entered = asyncio.Event()
        self.gate = asyncio.Event()

    async def add(self, channel: str, info: ClientInfo) -> None:
        self.entered.set()
        await self.gate.wait()
        await super().add(channel, info)


async def test_subscribe_interrupted_by_the_hub_is_retried_and_leaves_no_presence() -> None:
    presence = GatedPresence()
    async with run_hub(presence=presence) as running:
        async with HubClient(running.url, token=token("ann"), **FAST) as client:
            sub = client.subscribe("chat:room")
            await presence.entered.wait()
            # The engine reports lost publications while the subscribe is in progress.
            await running.hub._on_publication("chat:room", None)
            presence.gate.set()
            await sub.ready(5)  # error 110 is temporary: the client subscribed again
            assert sub.state == "subscribed"
            present = await running.hub.presence_of("chat:room")
            assert [info.client for info in present.values()] == [client.info.client]  # type: ignore[union-attr]
        await wait_until(lambda: not running.hub.sessions())
        assert await running.hub.presence_of("chat:room") == {}


async def test_node_presence_refresh_in_batches_racing_an_unsubscribe() -> None:
    presence = GatedPresence()
    presence.gate.set()
    async with run_hub(presence=presence) as running, raw(running.url, token("ann")) as client:
        for room in ("chat:a", "chat:b"):
            await client.call("subscribe", channel=room)
        presence.gate.clear()
        presence.entered.clear()
        refresh = asyncio.create_task(running.hub.refresh_presence())
        await presence.entered.wait()  # the refresh's first add waits; unsubscribe meanwhile
        await client.call("unsubscribe", channel="chat:a")
        presence.gate.set()
        await refresh
        assert await running.hub.presence_of("chat:a") == {}
        assert len(await running.hub.presence_of("chat:b")) == 1
