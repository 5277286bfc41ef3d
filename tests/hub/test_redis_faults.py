"""Failures: Redis restarted (with and without persistence), paused, failed over by Sentinel.

The invariant checked everywhere: a subscriber gets every publication acknowledged to the
publisher, in order and without duplicates, or is told ``recovered: false``; never silent loss.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator
from typing import Any

import pytest

import wsend
from wsend.hub.broker import HistoryOptions, HistoryResult, Publication, StreamPosition
from wsend.hub.client import HubClient, Subscription
from wsend.hub.client import Publication as ClientPublication
from wsend.hub.codes import HubError
from wsend.hub.node import Hub
from wsend.hub.redis import RedisBroker

from .contract import Recorder, wait_until
from .node_proc import make_hub
from .redis_server import RedisServer, free_port, require


class GatedBroker(RedisBroker):
    """A Redis broker that holds one step of its loss procedure until the test releases it.

    ``hold`` is ``"check"`` (the comparison of a channel's position in Redis with the last one
    delivered, after a reconnection) or ``"recover"`` (a session's position read when it
    resubscribes with recovery); ``None`` holds nothing. ``held`` is set once a step waits.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.hold: str | None = None
        self.held = asyncio.Event()
        self.release = asyncio.Event()

    async def _wait(self) -> None:
        self.held.set()
        await asyncio.wait_for(self.release.wait(), 15)

    async def _check(self, channel: str) -> None:
        if self.hold == "check":
            await self._wait()
        await super()._check(channel)

    async def history(
        self,
        channel: str,
        *,
        since: StreamPosition | None = None,
        limit: int | None = None,
        reverse: bool = False,
        history: HistoryOptions | None = None,
    ) -> HistoryResult:
        if self.hold == "recover" and since is not None:
            await self._wait()
        return await super().history(
            channel, since=since, limit=limit, reverse=reverse, history=history
        )


class Cluster:
    """Two in-process nodes on one Redis; a subscriber on the first, a publisher on the second.

    The subscriber's node runs a :class:`GatedBroker` holding ``hold`` (nothing by default).
    """

    def __init__(self, redis: RedisServer, hold: str | None = None) -> None:
        self.redis = redis
        self.hold = hold
        self.hubs: list[Hub] = []
        self.stack = contextlib.AsyncExitStack()
        self.acked: dict[object, tuple[str | None, int | None]] = {}  # data -> (epoch, offset)
        self.unrecovered = 0
        #: (epoch, offset) of each ``recovered: false`` reply: the position the client was
        #: told to reload its state up to.
        self.reported: list[tuple[str | None, int | None]] = []

    @property
    def gated(self) -> GatedBroker:
        broker = self.hubs[0].broker
        assert isinstance(broker, GatedBroker)
        return broker

    async def start(self) -> tuple[Subscription, list[ClientPublication]]:
        urls = []
        for broker_class in (GatedBroker, RedisBroker):
            hub = make_hub(self.redis.url, "faults", broker_class=broker_class)
            server = await self.stack.enter_async_context(
                wsend.serve(hub.handler, "127.0.0.1", 0, **hub.serve_kwargs())
            )
            await hub.start()
            self.stack.push_async_callback(hub.close)
            self.hubs.append(hub)
            urls.append(f"ws://127.0.0.1:{server.port}/ws")
        self.gated.hold = self.hold
        self.subscriber = HubClient(urls[0], backoff_min=0.05, backoff_max=0.3, timeout=3)
        self.publisher = HubClient(urls[1], backoff_min=0.05, backoff_max=0.3, timeout=3)
        for client in (self.subscriber, self.publisher):
            await client.connect()
            self.stack.push_async_callback(client.close)
        got: list[ClientPublication] = []

        def unrecovered(sub: Subscription) -> None:
            self.unrecovered += 1
            self.reported.append((sub.epoch, sub.offset))

        sub = self.subscriber.subscribe(
            "chat:f", on_publication=got.append, on_unrecovered=unrecovered
        )
        await sub.ready(5)
        return sub, got

    async def publish(self, data: object) -> bool:
        try:
            result = await self.publisher.publish("chat:f", data)
        except (HubError, TimeoutError, wsend.exceptions.WebSocketError):
            return False
        self.acked[data] = (result.epoch, result.offset)
        return True

    async def publish_until_ok(self, data: object, timeout: float = 15.0) -> None:
        deadline = time.monotonic() + timeout
        while not await self.publish(data):
            assert time.monotonic() < deadline, "publishing never recovered"
            await asyncio.sleep(0.1)

    def brokers_reconnected(self, count: int = 1) -> bool:
        return all(
            isinstance(h.broker, RedisBroker)
            and h.broker.reconnections >= count
            and h.broker.connected
            for h in self.hubs
        )

    def assert_delivered_or_reported(self, got: list[ClientPublication], data: object) -> None:
        """The hub's promise for one acknowledged publication: the subscriber got it, or a
        ``recovered: false`` reply told it a position of the same epoch at or past it."""
        epoch, offset = self.acked[data]
        assert offset is not None
        if any(p.data == data for p in got):
            return
        covered = [e == epoch and o is not None and o >= offset for e, o in self.reported]
        assert any(covered), f"{data!r} at {(epoch, offset)} silently lost: {self.reported}"


@pytest.fixture
async def redis_no_save() -> AsyncIterator[RedisServer]:
    with RedisServer() as server:
        yield server


@pytest.fixture
async def redis_aof() -> AsyncIterator[RedisServer]:
    with RedisServer(appendonly=True) as server:
        yield server


def assert_no_duplicates(got: list[ClientPublication]) -> None:
    data = [p.data for p in got]
    assert len(data) == len(set(data)), f"duplicates in {data}"


async def test_restart_without_persistence_reports_unrecovered(
    redis_no_save: RedisServer,
) -> None:
    cluster = Cluster(redis_no_save)
    async with cluster.stack:
        sub, got = await cluster.start()
        for i in range(5):
            assert await cluster.publish(i)
        await wait_until(lambda: len(got) == 5)
        redis_no_save.restart()  # history and positions are gone
        await wait_until(cluster.brokers_reconnected, 15)
        # The subscriber's node is now signalling the loss (its sessions resubscribe):
        # "after" may come before the resubscribe reads the position, and then it is part
        # of what ``recovered: false`` tells the client to reload instead of a live push.
        await cluster.publish_until_ok("after")
        await wait_until(lambda: cluster.unrecovered >= 1, 10)
        assert sub.recovered is False
        await cluster.publish_until_ok("last")  # after the resubscribe: live
        await wait_until(lambda: bool(got) and got[-1].data == "last", 10)
        assert [p.data for p in got[:5]] == list(range(5))
        cluster.assert_delivered_or_reported(got, "after")
        assert_no_duplicates(got)


@pytest.mark.parametrize("hold", ["check", "recover"])
async def test_restart_publication_during_loss_signal(
    redis_no_save: RedisServer, hold: str
) -> None:
    """A publication made while the node is between noticing the loss and the resubscribe's
    position read is covered by the ``recovered: false`` position, never silently lost."""
    cluster = Cluster(redis_no_save, hold=hold)
    async with cluster.stack:
        sub, got = await cluster.start()
        for i in range(5):
            assert await cluster.publish(i)
        await wait_until(lambda: len(got) == 5)
        redis_no_save.restart()
        await wait_until(cluster.brokers_reconnected, 15)
        await asyncio.wait_for(cluster.gated.held.wait(), 15)
        await cluster.publish_until_ok("after")
        cluster.gated.release.set()
        await wait_until(lambda: cluster.unrecovered >= 1, 10)
        assert sub.recovered is False
        epoch, offset = cluster.acked["after"]
        assert cluster.reported == [(epoch, offset)]
        await cluster.publish_until_ok("last")
        await wait_until(lambda: bool(got) and got[-1].data == "last", 10)
        assert [p.data for p in got] == [0, 1, 2, 3, 4, "last"]
        assert [p.offset for p in got] == [1, 2, 3, 4, 5, (offset or 0) + 1]
        assert cluster.unrecovered == 1


async def test_restart_with_aof_recovers_everything(redis_aof: RedisServer) -> None:
    cluster = Cluster(redis_aof)
    async with cluster.stack:
        _, got = await cluster.start()
        for i in range(5):
            assert await cluster.publish(i)
        await wait_until(lambda: len(got) == 5)
        redis_aof.restart()  # the AOF brings history and positions back
        sent = list(range(5))
        for i in range(5, 15):
            if await cluster.publish(i):
                sent.append(i)
        await cluster.publish_until_ok("last")
        sent.append("last")  # type: ignore[arg-type]
        await wait_until(lambda: bool(got) and got[-1].data == "last", 15)
        assert [p.data for p in got] == sent
        assert [p.offset for p in got] == list(range(1, len(sent) + 1))
        assert cluster.unrecovered == 0


async def test_paused_redis_then_resumed(redis_no_save: RedisServer) -> None:
    cluster = Cluster(redis_no_save)
    async with cluster.stack:
        _, got = await cluster.start()
        stop = asyncio.Event()
        sent: list[object] = []

        async def keep_publishing() -> None:
            i = 0
            while not stop.is_set():
                if await cluster.publish(i):
                    sent.append(i)
                i += 1
                await asyncio.sleep(0.01)

        task = asyncio.create_task(keep_publishing())
        await wait_until(lambda: len(got) >= 5)
        redis_no_save.pause()  # longer than every timeout of the engine (1 s)
        await asyncio.sleep(2.5)
        redis_no_save.resume()
        await wait_until(cluster.brokers_reconnected, 15)
        await asyncio.sleep(0.5)
        stop.set()
        await task
        await cluster.publish_until_ok("last")
        sent.append("last")
        await wait_until(lambda: bool(got) and got[-1].data == "last", 15)
        assert_no_duplicates(got)
        offsets = [p.offset or 0 for p in got]
        assert offsets == sorted(offsets)
        received = {p.data for p in got}
        # Within the history window nothing acknowledged is missing, unless we were told so.
        missing = [d for d in sent if d not in received]
        assert not missing or cluster.unrecovered > 0, f"silently lost: {missing}"
        if cluster.unrecovered == 0:
            assert offsets == list(range(offsets[0], offsets[0] + len(offsets)))


SENTINEL_CONF = """
port {port}
bind 127.0.0.1
sentinel monitor mymaster 127.0.0.1 {master} 1
sentinel down-after-milliseconds mymaster 400
sentinel failover-timeout mymaster 3000
sentinel parallel-syncs mymaster 1
"""


async def test_sentinel_failover() -> None:
    require("redis-sentinel")
    with contextlib.ExitStack() as stack:
        master = stack.enter_context(RedisServer())
        replica = stack.enter_context(
            RedisServer(extra=["--replicaof", "127.0.0.1", str(master.port)])
        )
        port = free_port()
        sentinel = RedisServer(
            port=port, sentinel_config=SENTINEL_CONF.format(port=port, master=master.port)
        )
        stack.enter_context(sentinel)
        await wait_until(lambda: "slave" in replica.cli("ROLE") and _synced(replica), 10)
        url = f"redis+sentinel://127.0.0.1:{port}/mymaster"
        broker = RedisBroker(url, health_interval=0.2, health_timeout=1.0, socket_timeout=1.0)
        recorder = Recorder()
        options = HistoryOptions(size=100, ttl=300.0, meta_ttl=3600.0)
        try:
            await broker.start(recorder)
            await broker.wait_connected(10)
            await broker.subscribe("s")
            await broker.publish("s", Publication(data="before"), options)
            await recorder.wait_for("s", 1)
            await asyncio.sleep(0.3)  # let the replica catch up
            master.kill()
            deadline = time.monotonic() + 20
            while True:
                try:
                    await broker.publish("s", Publication(data="after"), options)
                    break
                except HubError:
                    assert time.monotonic() < deadline, "no failover"
                    await asyncio.sleep(0.2)
            # Either the publication made on the promoted master arrives, or (when the failover
            # lost the channel's position) the broker says so: never silent loss.
            lost = ("s", None)

            def delivered_or_signalled() -> bool:
                return len(recorder.of("s")) >= 2 or lost in recorder.calls

            await wait_until(delivered_or_signalled, 30)
            assert "master" in replica.cli("ROLE")
            if lost in recorder.calls:
                assert recorder.data("s")[0] == "before"
            else:
                assert recorder.data("s") == ["before", "after"]
            assert broker.reconnections >= 1
        finally:
            await broker.close()


def _synced(replica: RedisServer) -> bool:
    return "master_link_status:up" in replica.cli("INFO", "replication")
