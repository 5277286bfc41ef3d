"""Presence in Redis: who is in which channel, across nodes, with expiry for crashed nodes.

Keys of a channel ``ch`` (same hash tag as the broker's keys)::

    wsend:{ch}:pz   ZSET   client -> expiry (ms, Redis clock)
    wsend:{ch}:ph   HASH   client -> MessagePack (client, user, info)

Adding a client refreshes its score to ``now + ttl`` and both keys' lifetime to ``ttl``. Reads
first drop the entries whose score has passed (ZRANGEBYSCORE + HDEL + ZREMRANGEBYSCORE in one
Lua script), so a node that crashed stops showing its clients ``ttl`` seconds after it last
refreshed them (hub nodes refresh four times per ttl; Centrifugo's default ttl is 60 s). Every step
uses Redis's clock, so nodes with skewed clocks agree.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import Any, Final, cast

import redis.asyncio as aioredis
from redis.asyncio.cluster import RedisCluster
from redis.exceptions import NoScriptError

from .broker import ClientInfo, PresenceStats
from .redis_common import (
    CLUSTER_SCHEMES,
    ENGINE_ERRORS,
    MAX_CONNECTIONS,
    SOCKET_TIMEOUT,
    client_from_url,
    cluster_client_from_url,
    decode_info,
    encode_info,
    engine_error,
)
from .redis_pipeline import Pipeline, pipeline_for, run_script

__all__ = ["RedisPresence"]

#: Seconds an entry lives without refresh (Centrifuge's default presence TTL).
PRESENCE_TTL: Final = 60.0

ADD_LUA: Final = """
local t = redis.call('TIME')
local ms = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local ttl = tonumber(ARGV[3])
redis.call('ZADD', KEYS[1], ms + ttl, ARGV[1])
redis.call('HSET', KEYS[2], ARGV[1], ARGV[2])
redis.call('PEXPIRE', KEYS[1], ttl)
redis.call('PEXPIRE', KEYS[2], ttl)
return 1
"""

GET_LUA: Final = """
local t = redis.call('TIME')
local ms = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local expired = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', ms)
if #expired > 0 then
  redis.call('HDEL', KEYS[2], unpack(expired))
  redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', ms)
end
return redis.call('HGETALL', KEYS[2])
"""

REMOVE_LUA: Final = """
redis.call('ZREM', KEYS[1], ARGV[1])
return redis.call('HDEL', KEYS[2], ARGV[1])
"""


class RedisPresence:
    """A :class:`~wsend.hub.broker.Presence` shared by every node through Redis.

    Args:
        redis: a URL (see :func:`~.redis_common.client_from_url`; for a Redis Cluster,
            :func:`~.redis_common.cluster_client_from_url`) or a client, ``redis.asyncio.Redis``
            or ``RedisCluster`` (then left open by :meth:`close`).
        prefix: the key prefix, the broker's.
        ttl: seconds an entry lives without refresh; must be positive.
        socket_timeout: for a URL, seconds before a command fails.

    Raises:
        ValueError: ``ttl`` is not positive.

    Redis errors are raised as :class:`~wsend.hub.codes.HubError` 100 (temporary).
    """

    def __init__(
        self,
        redis: str | aioredis.Redis | RedisCluster = "redis://localhost:6379/0",
        *,
        prefix: str = "wsend",
        ttl: float = PRESENCE_TTL,
        socket_timeout: float = SOCKET_TIMEOUT,
    ) -> None:
        if not ttl > 0:
            raise ValueError(f"presence ttl must be positive, got {ttl}")
        self._own = isinstance(redis, str)
        self.redis = _client(redis, socket_timeout) if isinstance(redis, str) else redis
        self.prefix = prefix
        self.ttl = ttl
        self._add = self.redis.register_script(ADD_LUA)
        self._get = self.redis.register_script(GET_LUA)
        self._remove = self.redis.register_script(REMOVE_LUA)
        #: Commands of one turn of the event loop go in one pipeline (one per master on a
        #: cluster; see :mod:`.redis_pipeline`); ``None`` sends each alone.
        self.pipeline: Pipeline = pipeline_for(self.redis, MAX_CONNECTIONS, socket_timeout)

    def _keys(self, channel: str) -> list[str]:
        return [f"{self.prefix}:{{{channel}}}:pz", f"{self.prefix}:{{{channel}}}:ph"]

    async def add(self, channel: str, info: ClientInfo) -> None:
        """Record ``info.client`` as present in ``channel`` for ``ttl`` seconds from now."""
        args: list[Any] = [info.client, encode_info(info), max(1, math.ceil(self.ttl * 1000))]
        try:
            await run_script(self.pipeline, self._add, self._keys(channel), args)
        except ENGINE_ERRORS as exc:
            raise engine_error(exc) from exc

    async def add_many(self, entries: Iterable[tuple[str, ClientInfo]]) -> None:
        """:meth:`add` for each ``(channel, info)``, in one pipeline (one round trip)."""
        ttl = max(1, math.ceil(self.ttl * 1000))
        batch = [
            (self._keys(channel), [info.client, encode_info(info), ttl])
            for channel, info in entries
        ]
        try:
            try:
                await self._add_batch(batch)
            except NoScriptError:
                # A cluster's pipeline doesn't load scripts: load it on every master, again.
                await self.redis.script_load(ADD_LUA)
                await self._add_batch(batch)
        except ENGINE_ERRORS as exc:
            raise engine_error(exc) from exc

    async def _add_batch(self, batch: list[tuple[list[str], list[Any]]]) -> None:
        async with self.redis.pipeline(transaction=False) as pipe:
            for keys, args in batch:
                await self._add(keys, args, client=cast(Any, pipe))
            await pipe.execute()

    async def remove(self, channel: str, client: str) -> None:
        """Remove ``client`` from ``channel``'s presence (no error if absent)."""
        try:
            await run_script(self.pipeline, self._remove, self._keys(channel), [client])
        except ENGINE_ERRORS as exc:
            raise engine_error(exc) from exc

    async def get(self, channel: str) -> dict[str, ClientInfo]:
        """The clients present in ``channel`` (expired entries are dropped first)."""
        try:
            flat = await run_script(self.pipeline, self._get, self._keys(channel), [])
        except ENGINE_ERRORS as exc:
            raise engine_error(exc) from exc
        return {flat[i].decode(): decode_info(flat[i + 1]) for i in range(0, len(flat), 2)}

    async def stats(self, channel: str) -> PresenceStats:
        """How many clients and distinct users are present in ``channel``."""
        present = await self.get(channel)
        return PresenceStats(len(present), len({info.user for info in present.values()}))

    async def close(self) -> None:
        """Release the connections (of a pool made from a URL). Entries stay until they expire."""
        if self.pipeline is not None:
            await self.pipeline.close()
        if self._own:
            await self.redis.aclose()


def _client(url: str, socket_timeout: float) -> aioredis.Redis | RedisCluster:
    if url.partition(":")[0] in CLUSTER_SCHEMES:
        return cluster_client_from_url(url, socket_timeout=socket_timeout)
    return client_from_url(url, socket_timeout=socket_timeout)
