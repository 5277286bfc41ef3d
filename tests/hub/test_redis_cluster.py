"""The Redis engine on a real Redis Cluster (3 masters, 3 replicas): the engine contract, then
what is particular to a cluster (URLs, shard channels, slots that move, presence)."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
from collections.abc import AsyncIterator

import pytest
from redis.asyncio.cluster import RedisCluster

from wsend.cli.errors import CliError
from wsend.cli.serve import ServeSettings, make_engines
from wsend.hub.broker import ClientInfo, HistoryOptions, Publication
from wsend.hub.codes import HubError
from wsend.hub.redis import (
    RedisBroker,
    RedisClusterBroker,
    RedisPresence,
    cluster_client_from_url,
    engine_from_url,
)
from wsend.hub.redis_pipeline import ClusterPipelines

from .contract import HISTORY, Engine, EngineContract, Recorder, start, wait_until
from .redis_cluster import Cluster
from .test_redis_engine import redis_engine

_prefixes = itertools.count()
LONG_HISTORY = HistoryOptions(size=100, ttl=60.0)


def fresh_prefix() -> str:
    return f"c{next(_prefixes)}"


class TestRedisClusterEngine(EngineContract):
    """The contract, with two brokers on one cluster as two nodes."""

    @pytest.fixture
    async def engine(self, redis_cluster: Cluster) -> AsyncIterator[Engine]:
        engine_body = redis_engine(redis_cluster.url, fresh_prefix(), RedisClusterBroker)
        async for engine in engine_body:
            yield engine


@pytest.fixture
async def broker(redis_cluster: Cluster) -> AsyncIterator[RedisClusterBroker]:
    broker = RedisClusterBroker(redis_cluster.url, prefix=fresh_prefix())
    yield broker
    await broker.close()


class TestUrls:
    def test_engine_from_url(self) -> None:
        url = "redis+cluster://ann:pw@127.0.0.1:7000,[::1]:7001,h3?ssl_cert_reqs=none"
        broker, presence = engine_from_url(url, prefix="x", presence_ttl=5)
        assert isinstance(broker, RedisClusterBroker)
        for client in (broker.redis, presence.redis):
            assert isinstance(client, RedisCluster)
            nodes = client.nodes_manager.startup_nodes
            assert set(nodes) == {"127.0.0.1:7000", "::1:7001", "h3:6379"}
            kwargs = client.get_connection_kwargs()
            assert (kwargs["username"], kwargs["password"]) == ("ann", "pw")
        assert (broker.prefix, presence.prefix, presence.ttl) == ("x", "x", 5)

    def test_tls(self) -> None:
        client = cluster_client_from_url("rediss+cluster://h1:7000/0?ssl_cert_reqs=none")
        kwargs = client.get_connection_kwargs()
        assert kwargs["connection_class"].__name__ == "SSLConnection"
        assert kwargs["ssl_cert_reqs"] == "none"

    @pytest.mark.parametrize(
        ("url", "message"),
        [
            ("redis+cluster://h1:port", "bad node"),
            ("redis+cluster://h1:7000,", "bad node"),
            ("redis+cluster://h1:7000/3", "only database 0"),
            ("redis://h1:7000", "redis\\+cluster://"),
        ],
    )
    def test_bad_urls(self, url: str, message: str) -> None:
        with pytest.raises(ValueError, match=message):
            cluster_client_from_url(url)

    def test_single_redis_broker_refuses_a_cluster(self) -> None:
        with pytest.raises(ValueError, match="RedisClusterBroker"):
            RedisBroker("redis+cluster://h1:7000")

    def test_serve_picks_the_cluster_engine(self) -> None:
        broker, presence = make_engines(ServeSettings(redis="rediss+cluster://h1:7000"))
        assert isinstance(broker, RedisClusterBroker)
        assert isinstance(presence, RedisPresence)
        with pytest.raises(CliError, match="bad --redis URL"):
            make_engines(ServeSettings(redis="redis+cluster://h1:7000/5"))


def _channels_of(cluster: Cluster, node_port: int, prefix: str) -> set[str]:
    node = cluster.by_port(node_port)
    return set(node.cli("PUBSUB", "SHARDCHANNELS", f"{prefix}:*").split())


def _stats(cluster: Cluster, field: str) -> dict[int, int]:
    counts = {}
    for node in cluster.running():
        lines = node.cli("CLUSTER", "INFO").splitlines()
        values = [int(line.split(":")[1]) for line in lines if line.startswith(field + ":")]
        counts[node.port] = values[0] if values else 0
    return counts


class TestShardChannels:
    async def test_each_master_holds_the_shard_channels_of_its_slots(
        self, broker: RedisClusterBroker, redis_cluster: Cluster
    ) -> None:
        await start(broker)
        names = [f"room{i}" for i in range(12)]
        for name in names:
            await broker.subscribe(name)
        await broker.wait_connected(10)
        prefix = broker.prefix
        expected: dict[int, set[str]] = {}
        for name in [*names, "contract:barrier"]:
            key = f"{prefix}:{{{name}}}:p"
            expected.setdefault(redis_cluster.master_of(key).port, set()).add(key)
        expected.setdefault(redis_cluster.master_of(f"{prefix}:control").port, set()).add(
            f"{prefix}:control"
        )
        assert len(expected) == 3, "the channels are spread over every master"
        for node in redis_cluster.running():
            got = _channels_of(redis_cluster, node.port, prefix)
            assert got == expected.get(node.port, set())
            assert node.cli("PUBSUB", "CHANNELS", f"{prefix}:*").split() == []  # no classic
        assert {link.name for link in broker._links()} == {f"127.0.0.1:{port}" for port in expected}
        await broker.unsubscribe("room0")
        key = f"{prefix}:{{room0}}:p"
        owner = redis_cluster.master_of(key).port
        await wait_until(lambda: key not in _channels_of(redis_cluster, owner, prefix))

    async def test_publications_stay_in_their_shard(
        self, broker: RedisClusterBroker, redis_cluster: Cluster
    ) -> None:
        recorder = await start(broker)
        await broker.subscribe("news")
        owner = redis_cluster.master_of(f"{broker.prefix}:{{news}}:p")
        shard = {owner.port, redis_cluster.replica_of(owner).port}
        before = _stats(redis_cluster, "cluster_stats_messages_publishshard_received")
        classic = _stats(redis_cluster, "cluster_stats_messages_publish_sent")
        for i in range(20):
            await broker.publish("news", Publication(data=i), HISTORY)
        await recorder.wait_for("news", 20)
        after = _stats(redis_cluster, "cluster_stats_messages_publishshard_received")
        grew = {port for port in after if after[port] > before[port]}
        assert grew, "the shard relays its publications to its replica"
        assert grew <= shard, "only the channel's shard relays its publications"
        assert _stats(redis_cluster, "cluster_stats_messages_publish_sent") == classic

    async def test_subscription_follows_a_migrated_slot(
        self, broker: RedisClusterBroker, redis_cluster: Cluster
    ) -> None:
        # While the slot moves (MIGRATING/IMPORTING: ASK and TRYAGAIN answers), publishing
        # goes on; the old master unsubscribes the shard channel when it gives the slot up,
        # the broker subscribes on the new one, and the new master's new epoch is signalled.
        recorder = await start(broker)
        await broker.subscribe("moving")
        key = f"{broker.prefix}:{{moving}}:p"
        source = redis_cluster.master_of(key)
        target = redis_cluster.other_master(source)
        acked: list[int] = []
        stop = asyncio.Event()

        async def publish() -> None:
            i = 0
            while not stop.is_set() or not acked or acked[-1] < i - 1:
                with contextlib.suppress(HubError):
                    await broker.publish("moving", Publication(data=i), HISTORY)
                    acked.append(i)
                i += 1
                await asyncio.sleep(0.005)

        task = asyncio.create_task(publish())
        await recorder.wait_for("moving", 5)
        await asyncio.to_thread(redis_cluster.move_slot, key, target)
        await wait_until(lambda: broker._route[key.encode()].name == f"127.0.0.1:{target.port}")
        await asyncio.sleep(0.3)
        stop.set()
        await task
        await wait_until(lambda: recorder.data("moving")[-1:] == acked[-1:])
        data = recorder.data("moving")
        assert data == sorted(set(data)), "in order, no duplicates"
        assert ("moving", None) in recorder.calls, "the new master's epoch is signalled"
        assert broker.moves >= 1
        assert key in _channels_of(redis_cluster, target.port, broker.prefix)
        assert key not in _channels_of(redis_cluster, source.port, broker.prefix)


class TestPipelinesOnCluster:
    async def test_bursts_go_to_each_master_in_pipelines(
        self, broker: RedisClusterBroker, redis_cluster: Cluster
    ) -> None:
        names = [f"burst{i}" for i in range(12)]
        for name in names:  # one alone each: the layout is known, the scripts loaded
            await broker.publish(name, Publication(data=-1), LONG_HISTORY)
        masters = {redis_cluster.master_of(f"{broker.prefix}:{{{n}}}:m").port for n in names}
        assert len(masters) == 3, "the channels are spread over every master"
        publish, history = broker.publish, LONG_HISTORY
        positions = await asyncio.gather(
            *(publish(name, Publication(data=i), history) for name in names for i in range(20))
        )
        pipelines = broker.pipeline
        assert isinstance(pipelines, ClusterPipelines)
        # All but the first to each master (nothing was in flight) went in one pipeline per
        # master.
        assert (pipelines.pipelines, pipelines.commands) == (3, 12 * 20 - 3)
        for index, name in enumerate(names):
            offsets = [p.offset for p in positions[index * 20 : (index + 1) * 20]]
            assert sorted(offsets) == list(range(2, 22)), name
            # In the order issued (but the first of a channel, which may have gone alone).
            assert offsets[1:] == sorted(offsets[1:]), name
            result = await broker.history(name, history=LONG_HISTORY)
            data = [p.data for p in result.publications]
            assert sorted(data) == [-1, *range(20)]
            assert [d for d in data if d > 0] == list(range(1, 20))

    async def test_a_burst_meeting_a_moved_slot_is_redirected(
        self, broker: RedisClusterBroker, redis_cluster: Cluster
    ) -> None:
        await broker.publish("hop", Publication(data=-1), LONG_HISTORY)
        key = f"{broker.prefix}:{{hop}}:m"
        source = redis_cluster.master_of(key)
        target = redis_cluster.other_master(source)
        await asyncio.to_thread(redis_cluster.move_slot, key, target)
        # The broker's client still places that slot on the old master: its pipeline is
        # answered MOVED, and each command goes again through the cluster client.
        positions = await asyncio.gather(
            *(broker.publish("hop", Publication(data=i), LONG_HISTORY) for i in range(30))
        )
        assert len({(p.epoch, p.offset) for p in positions}) == 30
        assert isinstance(broker.pipeline, ClusterPipelines)
        assert broker.pipeline.commands >= 29
        result = await broker.history("hop", history=LONG_HISTORY)
        assert sorted(p.data for p in result.publications if p.data >= 0) == list(range(30))
        assert redis_cluster.master_of(key) is target


class TestPresenceOnCluster:
    async def test_add_many_across_masters(self, redis_cluster: Cluster) -> None:
        presence = RedisPresence(redis_cluster.url, prefix=fresh_prefix(), ttl=60)
        for node in redis_cluster.running():
            node.cli("SCRIPT", "FLUSH")  # as on a promoted replica: the pipeline loads it again
        try:
            entries = [(f"room{i}", ClientInfo(f"c{i}", "u")) for i in range(9)]
            await presence.add_many(entries)
            for channel, info in entries:
                assert await presence.get(channel) == {info.client: info}
            await presence.remove("room0", "c0")
            assert await presence.get("room0") == {}
        finally:
            await presence.close()

    async def test_errors_are_hub_errors(self) -> None:
        presence = RedisPresence("redis+cluster://127.0.0.1:1", socket_timeout=0.3)
        try:
            for call in (
                presence.get("room"),
                presence.add("room", ClientInfo("c1", "u")),
                presence.add_many([("room", ClientInfo("c1", "u"))]),
                presence.remove("room", "c1"),
            ):
                with pytest.raises(HubError) as info:
                    await call
                assert info.value.temporary
        finally:
            await presence.close()


async def test_broker_errors_are_hub_errors() -> None:
    broker = RedisClusterBroker("redis+cluster://127.0.0.1:1", socket_timeout=0.3)
    try:
        with pytest.raises(HubError):
            await broker.publish("c", Publication(data=1), HISTORY)
        await broker.start(Recorder())
        with pytest.raises(HubError):
            await broker.subscribe("c")
        assert not broker.connected
    finally:
        await broker.close()
