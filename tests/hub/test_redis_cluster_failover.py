"""A master of the Redis Cluster fails while publishers and subscribers run: no silent loss.

Two hub nodes on a fresh 3+3 cluster; channels spread over every master; subscribers on both
nodes (one of them also loses its WebSocket connection during the failover and reconnects);
publishers keep publishing. Then one master is killed (SIGKILL: its replica is promoted after
the node timeout, and publications it acknowledged may be missing on the replica) or hands over
by ``CLUSTER FAILOVER`` on its replica.

The promise checked for every subscriber and every channel: each publication acknowledged to its
publisher was delivered, exactly once and in order, or a ``recovered: false`` reply covered it
(its position is in the same epoch at or past the publication, or in an epoch that came later).
And the system works afterwards: a publication on every channel reaches every subscriber live.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Iterator
from dataclasses import dataclass, field

import pytest

import wsend
from wsend.hub.client import HubClient, Subscription
from wsend.hub.client import Publication as ClientPublication
from wsend.hub.codes import HubError
from wsend.hub.node import Hub
from wsend.hub.redis import RedisClusterBroker

from .contract import wait_until
from .node_proc import make_hub
from .redis_cluster import Cluster, running_cluster

CHANNELS = [f"chat:f{i}" for i in range(6)]


@pytest.fixture
def cluster() -> Iterator[Cluster]:
    yield from running_cluster()


@dataclass
class Watch:
    """What one subscriber saw on one channel, in order."""

    got: list[ClientPublication] = field(default_factory=list)
    reports: list[tuple[str | None, int | None]] = field(default_factory=list)


class Epochs:
    """The order in which the test first saw each epoch (in acknowledgements and reports)."""

    def __init__(self) -> None:
        self.first: dict[str | None, int] = {}

    def see(self, epoch: str | None) -> None:
        self.first.setdefault(epoch, len(self.first))

    def later(self, epoch: str | None, than: str | None) -> bool:
        return self.first[epoch] > self.first[than]


class Load:
    """Hub nodes, subscribers and publishers on a cluster, and what each of them saw."""

    def __init__(self, cluster: Cluster) -> None:
        self.cluster = cluster
        self.stack = contextlib.AsyncExitStack()
        self.hubs: list[Hub] = []
        self.urls: list[str] = []
        self.epochs = Epochs()
        self.acked: dict[str, dict[int, tuple[str | None, int | None]]] = {}
        self.failed = 0
        self.watches: dict[tuple[str, str], Watch] = {}  # (subscriber, channel) -> Watch
        self.stop = asyncio.Event()

    async def start_nodes(self, count: int = 2) -> None:
        for _ in range(count):
            hub = make_hub(self.cluster.url, "fo")
            server = await self.stack.enter_async_context(
                wsend.serve(hub.handler, "127.0.0.1", 0, **hub.serve_kwargs())
            )
            await hub.start()
            self.stack.push_async_callback(hub.close)
            self.hubs.append(hub)
            self.urls.append(f"ws://127.0.0.1:{server.port}/ws")

    async def client(self, url: str) -> HubClient:
        client = HubClient(url, backoff_min=0.05, backoff_max=0.5, timeout=3)
        await client.connect()
        self.stack.push_async_callback(client.close)
        return client

    async def subscriber(self, name: str, url: str) -> HubClient:
        client = await self.client(url)
        subs = []
        for channel in CHANNELS:
            watch = self.watches[name, channel] = Watch()

            def on_unrecovered(sub: Subscription, watch: Watch = watch) -> None:
                self.epochs.see(sub.epoch)
                watch.reports.append((sub.epoch, sub.offset))

            subs.append(
                client.subscribe(
                    channel,
                    on_publication=watch.got.append,
                    on_unrecovered=on_unrecovered,
                )
            )
        for sub in subs:
            await sub.ready(10)
        return client

    async def publish(self, client: HubClient, channel: str, data: int) -> bool:
        try:
            result = await client.publish(channel, data)
        except (HubError, TimeoutError, wsend.exceptions.WebSocketError):
            self.failed += 1
            return False
        self.epochs.see(result.epoch)
        self.acked.setdefault(channel, {})[data] = (result.epoch, result.offset)
        return True

    async def keep_publishing(self, client: HubClient, channel: str) -> None:
        data = 0
        while not self.stop.is_set():
            await self.publish(client, channel, data)
            data += 1
            await asyncio.sleep(0.01)

    async def publish_until_ok(self, client: HubClient, channel: str, data: int) -> None:
        deadline = time.monotonic() + 20
        while not await self.publish(client, channel, data):
            assert time.monotonic() < deadline, f"publishing to {channel} never recovered"
            await asyncio.sleep(0.1)

    def check(self) -> tuple[int, int]:
        """Assert the promise for every subscriber and channel; return (reports, covered)."""
        reports = covered = 0
        for (name, channel), watch in self.watches.items():
            data = [p.data for p in watch.got]
            assert data == sorted(set(data)), f"{name} {channel}: duplicates or disorder"
            delivered = set(data)
            reports += len(watch.reports)
            for value, (epoch, offset) in self.acked.get(channel, {}).items():
                if value in delivered:
                    continue
                assert offset is not None
                assert any(
                    (e == epoch and o is not None and o >= offset)
                    or (e != epoch and self.epochs.later(e, epoch))
                    for e, o in watch.reports
                ), f"{name} {channel}: {value} at {(epoch, offset)} silently lost"
                covered += 1
        return reports, covered


def drop_connections(hub: Hub) -> int:
    """Abort the TCP connection of every session of ``hub``; return how many."""
    sessions = hub.sessions()
    for session in sessions:
        hub._links[session].ws.abort()
    return len(sessions)


@pytest.mark.parametrize("how", ["kill", "manual"])
async def test_failover_under_load_loses_nothing_silently(cluster: Cluster, how: str) -> None:
    load = Load(cluster)
    async with load.stack:
        await load.start_nodes(2)
        # A third node only for the subscriber that loses its connection and comes back.
        await load.start_nodes(1)
        await load.subscriber("a", load.urls[0])
        await load.subscriber("b", load.urls[1])
        await load.subscriber("moving", load.urls[2])
        # One publisher per channel: a publication stuck on the failed master doesn't hold up
        # the others (a connection's commands run in order).
        publishers = [await load.client(load.urls[1]) for _ in CHANNELS]
        tasks = [
            asyncio.create_task(load.keep_publishing(publisher, channel))
            for publisher, channel in zip(publishers, CHANNELS, strict=True)
        ]
        await wait_until(lambda: all(len(w.got) >= 5 for w in load.watches.values()), 15)
        victim = cluster.master_of(f"fo:{{{CHANNELS[0]}}}:s")
        successor = cluster.replica_of(victim)
        if how == "kill":
            cluster.kill(victim)
        else:
            cluster.manual_failover(successor)
        await asyncio.sleep(0.3)
        assert drop_connections(load.hubs[2]) == 1  # a client reconnects meanwhile
        await wait_until(lambda: cluster.role(successor) == "master", 20)
        await wait_until(lambda: all(hub.broker.connected for hub in load.hubs), 20)
        await asyncio.sleep(1.5)  # publishing goes on after the failover
        load.stop.set()
        await asyncio.gather(*tasks)
        # The system works: one more publication on every channel reaches every subscriber.
        for publisher, channel in zip(publishers, CHANNELS, strict=True):
            await load.publish_until_ok(publisher, channel, 10**6)

        def all_got_last_of(watch: Watch) -> bool:
            return bool(watch.got) and watch.got[-1].data == 10**6

        def all_got_last() -> bool:
            return all(all_got_last_of(w) for w in load.watches.values())

        def missing() -> str:
            late = [key for key, w in load.watches.items() if not all_got_last_of(w)]
            return f"the last publication did not reach {late}"

        await wait_until(all_got_last, 20, missing)
        reports, covered = load.check()
        brokers = [hub.broker for hub in load.hubs]
        assert all(isinstance(b, RedisClusterBroker) for b in brokers)
        total = sum(len(acked) for acked in load.acked.values())
        print(
            f"{how}: {total} acknowledged, {load.failed} failed, {reports} recovered:false, "
            f"{covered} covered by them, moves {[b.moves for b in brokers]}"  # type: ignore[attr-defined]
        )
        assert total > 6 * 20
        # The promoted master starts new epochs: the subscribers of its channels are told.
        assert reports >= 3
