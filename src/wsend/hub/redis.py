"""The Redis engine of the hub: several nodes sharing channels, history and presence.

.. code-block:: python

    from wsend.hub.redis import engine_from_url

    broker, presence = engine_from_url("redis://127.0.0.1:6379/0")
    hub = Hub(options, broker=broker, presence=presence)

:class:`RedisBroker` (:mod:`.redis_broker`) fans publications out through Redis pub/sub (one
subscription per channel with local subscribers), keeps history in Redis Streams and detects
lost pub/sub messages from the offsets; :class:`RedisPresence` (:mod:`.redis_presence`) keeps
presence in a sorted set and a hash per channel, with expiry. On a Redis Cluster
(``redis+cluster://``), :class:`RedisClusterBroker` (:mod:`.redis_cluster`) spreads channels
over the masters with shard channels (``SPUBLISH``/``SSUBSCRIBE``) and follows failovers and
slot migrations. All pass the engine contract suite (``tests/hub/contract.py``).
``docs/hub/scaling.md`` explains deployment and failures.

Needs the ``redis`` extra (``pip install 'wsend[redis]'``): redis-py 5 or later.
"""

from __future__ import annotations

from .redis_broker import SOCKET_TIMEOUT, RedisBroker, client_from_url
from .redis_cluster import RedisClusterBroker
from .redis_common import CLUSTER_SCHEMES, cluster_client_from_url
from .redis_presence import PRESENCE_TTL, RedisPresence

__all__ = [
    "RedisBroker",
    "RedisClusterBroker",
    "RedisPresence",
    "client_from_url",
    "cluster_client_from_url",
    "engine_from_url",
]


def engine_from_url(
    url: str,
    *,
    prefix: str = "wsend",
    presence_ttl: float = PRESENCE_TTL,
    socket_timeout: float = SOCKET_TIMEOUT,
) -> tuple[RedisBroker, RedisPresence]:
    """A broker and a presence engine on the Redis at ``url``, for :class:`~wsend.hub.Hub`.

    Args:
        url: ``redis://[[user]:password@]host:port[/db]``, ``rediss://...`` (TLS),
            ``unix:///path/to/socket?db=N``,
            ``redis+sentinel://[[user]:password@]host:port[,host:port...]/master[/db]``, or
            ``redis+cluster://[[user]:password@]host:port[,host:port...]`` (a Redis Cluster,
            Redis 7 or later; ``rediss+cluster://`` with TLS).
        prefix: the prefix of every key; nodes of one cluster must share it.
        presence_ttl: seconds a presence entry outlives its last refresh.
        socket_timeout: seconds before a Redis command fails (HubError 100, temporary).

    Returns:
        ``(broker, presence)``, each with its own connection pool (a
        :class:`RedisClusterBroker` for a cluster URL). Nothing connects yet: the
        broker connects when the hub starts it, and reconnects by itself.

    Raises:
        ValueError: the URL is malformed.
    """
    cluster = url.partition(":")[0] in CLUSTER_SCHEMES
    broker_class = RedisClusterBroker if cluster else RedisBroker
    broker = broker_class(url, prefix=prefix, socket_timeout=socket_timeout)
    presence = RedisPresence(url, prefix=prefix, ttl=presence_ttl, socket_timeout=socket_timeout)
    return broker, presence
