"""The Redis engine on a real Redis Cluster (3 masters, 3 replicas): the engine contract, then
what is particular to a cluster (shard channels, URLs, presence, nodes across masters)."""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import AsyncIterator, Iterator

import pytest

from wsend.hub.broker import Broker, ClientInfo, Publication
from wsend.hub.redis import RedisClusterBroker, RedisPresence

from .contract import HISTORY, PRESENCE_TTL, Engine, EngineContract, start, wait_until
from .redis_cluster import Cluster, running_cluster

_prefixes = itertools.count()


@pytest.fixture(scope="module")
def cluster() -> Iterator[Cluster]:
    yield from running_cluster()


def fresh_prefix() -> str:
    return f"c{next(_prefixes)}"


class TestRedisClusterEngine(EngineContract):
    """The contract, with two brokers on one cluster as two nodes."""

    @pytest.fixture
    async def engine(self, cluster: Cluster) -> AsyncIterator[Engine]:
        prefix = fresh_prefix()
        made: list[RedisClusterBroker] = []

        async def new_broker() -> Broker:
            made.append(RedisClusterBroker(cluster.url, prefix=prefix))
            return made[-1]

        presence = RedisPresence(cluster.url, prefix=prefix, ttl=PRESENCE_TTL)
        yield Engine(await new_broker(), presence, asyncio.sleep, new_broker)
        for broker in made:
            await broker.close()
        await presence.close()
