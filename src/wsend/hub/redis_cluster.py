"""The Redis engine on a Redis Cluster: channels spread over its masters, sharded pub/sub.

.. code-block:: python

    from wsend.hub.redis import engine_from_url

    broker, presence = engine_from_url("redis+cluster://10.0.0.5:7000,10.0.0.6:7000")

A channel's keys and its pub/sub channel carry the ``{channel}`` hash tag (see
:mod:`.redis_broker`): one slot, one master. Commands and scripts go through redis-py's
:class:`~redis.asyncio.cluster.RedisCluster`, which sends each to the master owning its slot
and follows ``MOVED``/``ASK`` redirections. Publications go out with ``SPUBLISH`` (Redis 7's
shard channels), so Redis relays each only within the shard owning its channel, not to every
node of the cluster as ``PUBLISH`` would. :class:`RedisClusterBroker` keeps one pub/sub
connection (a :class:`~.redis_link.PubSubLink`) per master that owns at least one of its
channels, subscribed with ``SSUBSCRIBE`` to the shard channels of that master's slots.

When the layout changes, channels move:

- a master's connection is lost (the master died): before each reconnection attempt the broker
  asks the cluster for its layout again; channels whose slot another master now serves (the
  promoted replica) move to that master's connection;
- a master gives a slot up (a manual failover, a slot migrated elsewhere): Redis unsubscribes
  that slot's shard channels by itself (``sunsubscribe``); the broker asks for the layout and
  subscribes them on the new owner.

Each channel subscribed again (same master or another) gets the position check of a
reconnection: publications missed meanwhile are read from the stream, or the subscribers are
told ``recovered: false``. And since replication is asynchronous, a promoted replica may lack
publications its master acknowledged: the scripts (:mod:`.redis_scripts`) start a new epoch
when a master other than the last writer touches a channel, which turns every such position
into a loss signal rather than offsets handed out twice.

Presence needs nothing particular: :class:`~.redis_presence.RedisPresence` works on a
``RedisCluster`` client (its keys of a channel share the hash tag).
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
from typing import Any, cast

from redis.asyncio.cluster import ClusterNode, RedisCluster
from redis.asyncio.connection import AbstractConnection

from .redis_broker import RedisBroker
from .redis_common import ENGINE_ERRORS, cluster_client_from_url
from .redis_link import PubSubLink, backoff

__all__ = ["RedisClusterBroker"]

logger = logging.getLogger("wsend.hub.redis")


class RedisClusterBroker(RedisBroker):
    """A :class:`~wsend.hub.broker.Broker` on a Redis Cluster (Redis 7 or later).

    Args:
        redis: a URL (see :func:`~.redis_common.cluster_client_from_url`) or a
            ``redis.asyncio.cluster.RedisCluster`` client (then left open by :meth:`close`).
        **options: as for :class:`~.redis_broker.RedisBroker`.

    Raises:
        ValueError: the URL is malformed.
    """

    cluster = True

    def __init__(self, redis: Any = "redis+cluster://localhost:6379", **options: Any) -> None:
        super().__init__(redis, **options)
        #: How many times a channel was subscribed again because its slot moved (a failover,
        #: a migration) or Redis unsubscribed it.
        self.moves = 0
        self._by_node: dict[str, PubSubLink] = {}  # "host:port" -> the link to that master
        self._unplaced: dict[bytes, bool] = {}  # keys waiting for a master, and resumed flag
        self._wake = asyncio.Event()  # set when keys wait for a master
        self._topology = asyncio.Lock()
        self._initialized = False

    @staticmethod
    def _client(url: str, socket_timeout: float) -> RedisCluster:
        return cluster_client_from_url(url, socket_timeout=socket_timeout)

    @property
    def connected(self) -> bool:
        """Whether every channel is subscribed on a live connection to its master."""
        return not self._unplaced and super().connected

    def _links(self) -> list[PubSubLink]:
        return [link for link in self._by_node.values() if not link.done]

    async def _start_links(self, keys: list[bytes]) -> None:
        self._unplaced.update(dict.fromkeys(keys, False))
        self._tasks.append(asyncio.get_running_loop().create_task(self._placer()))
        self._wake.set()

    async def _place(self, key: bytes) -> None:
        node = self._owner(key)
        if node is None:
            self._unplaced[key] = False
            self._wake.set()
        else:
            await self._hold(key, node, resumed=False)

    async def unsubscribe(self, channel: str) -> None:
        """Stop delivering ``channel``'s publications (idempotent; never waits for Redis)."""
        key = self._channels.get(channel)
        if key is not None:
            self._unplaced.pop(key, None)
        await super().unsubscribe(channel)

    # -- where keys go

    def _owner(self, key: bytes) -> ClusterNode | None:
        """The master serving ``key``'s slot, as last known (``None``: not known)."""
        if not self._initialized:
            return None
        try:
            node: ClusterNode | None = self.redis.get_node_from_key(cast(Any, key))
        except ENGINE_ERRORS:
            return None
        return node

    async def _refresh(self) -> None:
        """Ask the cluster for its layout (slots and masters); log a failure."""
        async with self._topology:
            try:
                if self._initialized:
                    await self.redis.nodes_manager.initialize()
                else:
                    await self.redis.initialize()
                    self._initialized = True
            except ENGINE_ERRORS as exc:
                logger.warning("redis cluster layout unavailable: %s", exc)

    async def _hold(self, key: bytes, node: ClusterNode, *, resumed: bool) -> None:
        """Give ``key`` to the link of ``node`` (made if needed), if it is still wanted."""
        if key != self._control_key and key not in self._by_key:
            return
        link = self._by_node.get(node.name)
        if link is None or link.done:
            connect = functools.partial(self._connect_node, node)
            link = PubSubLink(self, node.name, connect, sharded=True)
            self._by_node[node.name] = link
        self._route[key] = link
        with contextlib.suppress(*ENGINE_ERRORS):  # the link resubscribes as it reconnects
            await link.add(key, resumed=resumed)

    @staticmethod
    async def _connect_node(node: ClusterNode) -> AbstractConnection:
        conn: AbstractConnection = node.connection_class(**node.connection_kwargs)
        await cast(Any, conn).connect()
        return conn

    async def _placer(self) -> None:
        """Give the keys waiting for a master to their master's link, once it is known."""
        while True:
            await self._wake.wait()
            self._wake.clear()
            attempt = 0
            while self._unplaced:
                await self._refresh()
                for key, resumed in list(self._unplaced.items()):
                    node = self._owner(key)
                    if node is not None and self._unplaced.pop(key, None) is not None:
                        self.moves += resumed
                        await self._hold(key, node, resumed=resumed)
                if self._unplaced:
                    await asyncio.sleep(backoff(attempt))
                    attempt += 1

    # LinkOwner

    def link_dropped(self, link: PubSubLink, key: bytes) -> None:
        """The master gave ``key``'s slot up: subscribe it where the slot went."""
        if self._route.get(key) is link:
            del self._route[key]
            self._unplaced[key] = True
            self._wake.set()

    async def link_lost(self, link: PubSubLink) -> None:
        """A master's connection failed: move its channels whose slot another master serves."""
        await self._refresh()
        for key, resumed in list(link.keys.items()):
            node = self._owner(key)
            if node is not None and node.name != link.name:
                self.moves += 1
                await link.discard(key)
                await self._hold(key, node, resumed=resumed)
