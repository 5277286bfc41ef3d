"""Several hub nodes sharing one Redis: chat across nodes, one presence list, moving clients.

Every test runs on a single Redis and on a Redis Cluster (3 masters, 3 replicas)."""

from __future__ import annotations

import asyncio
import itertools
import os
import random
import subprocess
import sys
from collections.abc import AsyncIterator, Iterator
from contextlib import AsyncExitStack
from pathlib import Path

import pytest

import wsend
from wsend.hub.client import HubClient, Publication, Subscription
from wsend.hub.codes import DisconnectCode
from wsend.hub.node import Hub
from wsend.hub.redis import RedisBroker

from .contract import wait_until
from .node_proc import make_hub
from .redis_cluster import Cluster
from .redis_server import RedisServer, free_port, running

ROOT = Path(__file__).resolve().parents[2]
_prefixes = itertools.count()


class Backend:
    """A single Redis or a Redis Cluster, as the nodes' engine."""

    def __init__(self, server: RedisServer | Cluster) -> None:
        self.server = server
        self.url = server.url

    def numsub(self, pattern: str) -> list[tuple[int, list[str]]]:
        """Per node: ``PUBSUB SHARDNUMSUB`` of the shard channels matching ``pattern``."""
        if isinstance(self.server, RedisServer):
            return []
        found = []
        for node in self.server.running():
            names = node.cli("PUBSUB", "SHARDCHANNELS", pattern).split()
            if names:
                found.append((node.port, node.cli("PUBSUB", "SHARDNUMSUB", *names).split()))
        return found

    def pubsub_channels(self, pattern: str) -> list[str]:
        """The pub/sub channels (shard channels on a cluster) matching ``pattern``."""
        if isinstance(self.server, RedisServer):
            return self.server.cli("PUBSUB", "CHANNELS", pattern).split()
        return sorted(
            name
            for node in self.server.running()
            for name in node.cli("PUBSUB", "SHARDCHANNELS", pattern).split()
        )


@pytest.fixture(scope="module")
def single_redis() -> Iterator[RedisServer]:
    yield from running()


@pytest.fixture(params=["redis", "cluster"])
def redis_server(request: pytest.FixtureRequest) -> Backend:
    name = "single_redis" if request.param == "redis" else "redis_cluster"
    return Backend(request.getfixturevalue(name))


class Nodes:
    """In-process hub nodes on one Redis, each served by ``wsend.serve`` on its own port."""

    def __init__(self, url: str, stack: AsyncExitStack) -> None:
        self.url, self.stack = url, stack
        self.prefix = f"n{os.getpid()}-{next(_prefixes)}"
        self.hubs: list[Hub] = []

    async def add(self) -> str:
        hub = make_hub(self.url, self.prefix)
        server = await self.stack.enter_async_context(
            wsend.serve(hub.handler, "127.0.0.1", 0, **hub.serve_kwargs())
        )
        await hub.start()
        self.stack.push_async_callback(hub.close)
        self.hubs.append(hub)
        return f"ws://127.0.0.1:{server.port}/ws"

    async def client(self, url: str) -> HubClient:
        client = HubClient(url, backoff_min=0.05, backoff_max=0.3)
        await client.connect()
        self.stack.push_async_callback(client.close)
        return client


@pytest.fixture
async def nodes(redis_server: Backend) -> AsyncIterator[Nodes]:
    async with AsyncExitStack() as stack:
        yield Nodes(redis_server.url, stack)


async def subscribed(client: HubClient, channel: str) -> tuple[Subscription, list[Publication]]:
    got: list[Publication] = []
    sub = client.subscribe(channel, on_publication=got.append)
    await sub.ready(5)
    return sub, got


@pytest.mark.parametrize("count", [2, 3])
async def test_chat_and_presence_across_nodes(nodes: Nodes, count: int) -> None:
    urls = [await nodes.add() for _ in range(count)]
    clients = [await nodes.client(url) for url in urls]
    subs = [await subscribed(client, "chat:room") for client in clients]
    for i, client in enumerate(clients):
        await client.publish("chat:room", {"from": i})
    for _, got in subs:
        await wait_until(lambda got=got: len(got) == count)  # type: ignore[misc]
        assert sorted(p.data["from"] for p in got) == list(range(count))
        assert [p.offset for p in got] == list(range(1, count + 1))
    ids = {client.info.client for client in clients if client.info}
    for client in clients:
        assert set(await client.presence("chat:room")) == ids


async def test_join_and_leave_cross_nodes(nodes: Nodes) -> None:
    first, second = await nodes.add(), await nodes.add()
    watcher = await nodes.client(first)
    joined: list[str] = []
    sub = watcher.subscribe("chat:room", on_join=lambda info: joined.append(info.client))
    await sub.ready(5)
    other = await nodes.client(second)
    await other.subscribe("chat:room").ready(5)
    await wait_until(lambda: other.info is not None and other.info.client in joined)


async def start_node_process(
    port: int, url: str, prefix: str, presence_ttl: float = 60.0
) -> subprocess.Popen[str]:
    process = subprocess.Popen(  # noqa: ASYNC220 - started once, returns at once
        [sys.executable, "-m", "tests.hub.node_proc", str(port), url, prefix, str(presence_ttl)],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert process.stdout is not None
    line = await asyncio.wait_for(asyncio.to_thread(process.stdout.readline), 20)
    assert line.strip() == "ready"
    return process


async def test_client_moves_from_killed_node_and_recovers(
    nodes: Nodes, redis_server: Backend
) -> None:
    port = free_port()
    doomed = await start_node_process(port, redis_server.url, nodes.prefix)
    try:
        survivor = await nodes.add()
        mover = await nodes.client(f"ws://127.0.0.1:{port}/ws")
        sub, got = await subscribed(mover, "chat:move")
        publisher = await nodes.client(survivor)
        for i in range(10):
            await publisher.publish("chat:move", i)
        await wait_until(lambda: len(got) == 10)
        doomed.kill()  # SIGKILL: no goodbye to clients or Redis
        doomed.wait()
        for i in range(10, 40):
            await publisher.publish("chat:move", i)
        mover.url = survivor  # the load balancer sends the reconnection to another node
        await wait_until(lambda: len(got) == 40)
        await publisher.publish("chat:move", 40)
        await wait_until(lambda: len(got) == 41)
        assert [p.data for p in got] == list(range(41))
        assert [p.offset for p in got] == list(range(1, 42))
        assert sub.recovered is True
    finally:
        doomed.kill()
        doomed.wait()


async def test_killed_nodes_clients_leave_presence(nodes: Nodes, redis_server: Backend) -> None:
    # Presence entries outlive their node by the presence ttl at most; live nodes refresh
    # theirs (several times per ttl), so only the crashed node's clients vanish.
    ttl = 2.0
    port = free_port()
    doomed = await start_node_process(port, redis_server.url, nodes.prefix, presence_ttl=ttl)
    try:
        hub = make_hub(redis_server.url, nodes.prefix, presence_ttl=ttl)
        server = await nodes.stack.enter_async_context(
            wsend.serve(hub.handler, "127.0.0.1", 0, **hub.serve_kwargs())
        )
        await hub.start()
        nodes.stack.push_async_callback(hub.close)
        gone = await nodes.client(f"ws://127.0.0.1:{port}/ws")
        stays = await nodes.client(f"ws://127.0.0.1:{server.port}/ws")
        for client in (gone, stays):
            await client.subscribe("chat:crash").ready(5)
        assert gone.info is not None
        assert stays.info is not None
        both = {gone.info.client, stays.info.client}
        assert hub.presence_refresh_interval == ttl / 4
        assert set(await stays.presence("chat:crash")) == both
        await asyncio.sleep(ttl * 1.5)  # refreshes keep both
        assert set(await stays.presence("chat:crash")) == both
        gone.reconnect = False
        doomed.kill()
        doomed.wait()
        await asyncio.sleep(ttl * 1.2)
        assert set(await stays.presence("chat:crash")) == {stays.info.client}
    finally:
        doomed.kill()
        doomed.wait()


async def test_disconnect_and_send_reach_every_node(nodes: Nodes) -> None:
    first = await nodes.add()
    await nodes.add()
    got: list[object] = []
    closed: list[tuple[int, bool]] = []
    on_first = HubClient(
        first,
        reconnect=False,
        on_message=got.append,
        on_disconnected=lambda code, reason, again: closed.append((code, again)),
    )
    await on_first.connect()
    nodes.stack.push_async_callback(on_first.close)
    other_hub = nodes.hubs[1]
    # Control messages are at most once, like all of pub/sub: both nodes must be subscribed
    # to the control channel before one relays to the other.
    for hub in nodes.hubs:
        assert isinstance(hub.broker, RedisBroker)
        await hub.broker.wait_connected(5)
    # The client is anonymous: user "". Sent from the node it isn't connected to.
    assert other_hub.send_message("", {"hello": 1}) == 0
    await wait_until(lambda: got == [{"hello": 1}])
    assert other_hub.disconnect("", 4502, "revoked") == 0
    await wait_until(lambda: closed == [(4502, False)])
    assert on_first.state == "closed"
    with pytest.raises(ValueError, match="close code"):
        other_hub.disconnect("", 5000)


async def test_churn_leaves_no_subscription_behind(nodes: Nodes, redis_server: Backend) -> None:
    url = await nodes.add()
    hub = nodes.hubs[0]
    broker = hub.broker
    assert isinstance(broker, RedisBroker)

    async def visit(i: int) -> None:
        client = HubClient(url, reconnect=False)
        await client.connect()
        try:
            for name in (f"chat:c{i}", "chat:shared"):
                await client.subscribe(name).ready(5)
            await client.publish("chat:shared", i)
        finally:
            await client.close()

    for start in range(0, 40, 10):
        await asyncio.gather(*(visit(i) for i in range(start, start + 10)))
    await wait_until(lambda: not hub.sessions())
    assert hub._channels == {}
    assert (broker._channels, broker._by_key, broker._last, broker._confirm) == ({}, {}, {}, {})
    pattern = f"{nodes.prefix}:*"
    await wait_until(
        lambda: redis_server.pubsub_channels(pattern) == [f"{nodes.prefix}:control"],
        describe=lambda: (
            f"pub/sub channels left: {redis_server.pubsub_channels(pattern)}, subscribers "
            f"{redis_server.numsub(pattern)}, links "
            + repr([(link.name, sorted(link.keys), sorted(link._sent)) for link in broker._links()])
        ),
    )
    present = await hub.presence_of("chat:shared")
    assert present == {}


@pytest.mark.time_dependent
async def test_every_publication_once_in_order_across_nodes_and_forced_disconnects(
    nodes: Nodes,
) -> None:
    total = 3000
    urls = [await nodes.add(), await nodes.add()]
    got: list[list[object]] = [[], [], []]
    unrecovered = [0, 0, 0]
    for i in range(3):
        client = HubClient(urls[i % 2], backoff_min=0.01, backoff_max=0.05)
        await client.connect()
        nodes.stack.push_async_callback(client.close)

        def on_unrecovered(sub: Subscription, i: int = i) -> None:
            unrecovered[i] += 1

        sub = client.subscribe(
            "chat:ticks",
            on_publication=lambda pub, i=i: got[i].append(pub.data),  # type: ignore[misc]
            on_unrecovered=on_unrecovered,
            max_queue=total,
        )
        await sub.ready(5)
    stop = asyncio.Event()

    async def disrupt() -> int:
        rng = random.Random(3)
        count = 0
        while not stop.is_set():
            await asyncio.sleep(rng.uniform(0.01, 0.05))
            hub = rng.choice(nodes.hubs)
            for session in hub.sessions()[:1]:
                if rng.random() < 0.5:
                    session.close(DisconnectCode.RECONNECT, "test")
                else:
                    hub._links[session].ws.abort()  # the TCP connection drops
                count += 1
        return count

    disruptor = asyncio.create_task(disrupt())
    for n in range(total):
        await nodes.hubs[0].publish("chat:ticks", n)
        if n % 20 == 0:
            await asyncio.sleep(0.001)
    stop.set()
    assert await disruptor > 0
    await wait_until(lambda: all(len(g) >= total for g in got), 30)
    for received in got:
        assert received == list(range(total))
    assert unrecovered == [0, 0, 0]
