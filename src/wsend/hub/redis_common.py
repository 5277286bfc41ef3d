"""What the Redis broker and presence share: clients from URLs, payloads, errors.

Payloads are MessagePack. Application data kept in its wire encoding
(:class:`~wsend.hub.wire.Encoded`) travels as an extension type holding the codec's name and
the raw bytes, so every node gets back an equal value and forwards it without re-encoding.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Final
from urllib.parse import parse_qs, unquote, urlsplit, urlunsplit

import msgspec
import redis.asyncio as aioredis
from redis.asyncio.cluster import ClusterNode, RedisCluster
from redis.asyncio.sentinel import Sentinel
from redis.exceptions import RedisClusterException, RedisError

from .broker import ClientInfo, Publication
from .codes import ErrorCode, HubError
from .wire import Encoded

__all__ = [
    "CLUSTER_SCHEMES",
    "ENGINE_ERRORS",
    "MAX_CONNECTIONS",
    "SOCKET_TIMEOUT",
    "client_from_url",
    "cluster_client_from_url",
    "decode_info",
    "decode_publication",
    "encode_info",
    "encode_publication",
    "engine_error",
]

#: Seconds a command may take before the engine reports Redis unavailable.
SOCKET_TIMEOUT: Final = 5.0
#: Connections a node's pool opens to one Redis at most (``?max_connections=N`` in the URL):
#: commands beyond that wait for a free one (at most ``socket_timeout`` seconds) instead of
#: each burst of concurrent publications opening as many connections (Redis accepts 10,000
#: clients by default, shared by every node).
MAX_CONNECTIONS: Final = 64

_ENCODED_EXT: Final = 1

#: What a failing Redis raises (a cluster's client raises more than ``RedisError``).
ENGINE_ERRORS: Final = (RedisError, RedisClusterException, OSError)

#: URL schemes of a Redis Cluster: plain and TLS.
CLUSTER_SCHEMES: Final = ("redis+cluster", "rediss+cluster")


# -- payloads -------------------------------------------------------------------------------


def _enc_hook(obj: Any) -> Any:
    if isinstance(obj, Encoded):
        return msgspec.msgpack.Ext(_ENCODED_EXT, msgspec.msgpack.encode((obj.codec, obj.raw)))
    if isinstance(obj, ClientInfo):
        return (obj.client, obj.user, obj.info)
    raise NotImplementedError(f"cannot serialize {type(obj).__name__}")


def _ext_hook(code: int, data: memoryview) -> Any:
    if code == _ENCODED_EXT:
        codec, raw = msgspec.msgpack.decode(data)
        return Encoded(codec, raw)
    return msgspec.msgpack.Ext(code, bytes(data))


_encoder = msgspec.msgpack.Encoder(enc_hook=_enc_hook)
_decoder: msgspec.msgpack.Decoder[Any] = msgspec.msgpack.Decoder(ext_hook=_ext_hook)


def encode_info(info: ClientInfo) -> bytes:
    """Serialize a :class:`ClientInfo` (its ``info`` may hold :class:`Encoded` values)."""
    return _encoder.encode((info.client, info.user, info.info))


def decode_info(raw: bytes | memoryview) -> ClientInfo:
    """The inverse of :func:`encode_info`."""
    client, user, info = _decoder.decode(raw)
    return ClientInfo(client, user, info)


def encode_publication(publication: Publication) -> bytes:
    """Serialize what a publication carries besides its position and time.

    ``data`` keeps :class:`~wsend.hub.wire.Encoded` values as they are (codec name and raw
    bytes, in a MessagePack extension), so every node gets back an equal value; plain Python
    data goes through MessagePack (tuples come back as lists).
    """
    info = publication.info
    packed = None if info is None else (info.client, info.user, info.info)
    return _encoder.encode((publication.data, publication.key, packed))


def decode_publication(
    payload: bytes | memoryview, offset: int, epoch: str, time_ms: int
) -> Publication:
    """The inverse of :func:`encode_publication`, with the position and time given."""
    data, key, packed = _decoder.decode(payload)
    info = None if packed is None else ClientInfo(packed[0], packed[1], packed[2])
    return Publication(data, offset, epoch, key, info, time_ms / 1000)


def engine_error(exc: BaseException) -> HubError:
    """The error the engine raises when Redis fails: 100, temporary (retrying may work)."""
    error = HubError(ErrorCode.INTERNAL, "engine unavailable", temporary=True)
    error.__cause__ = exc
    return error


# -- connections ----------------------------------------------------------------------------


def client_from_url(url: str, *, socket_timeout: float = SOCKET_TIMEOUT) -> aioredis.Redis:
    """A Redis client (with its connection pool) for ``url``.

    Accepts ``redis://[[user]:password@]host:port[/db]``, ``rediss://`` (TLS), ``unix://`` and
    ``redis+sentinel://[[user]:password@]host:port[,host:port...]/master[/db]`` (the master's
    address is asked from the sentinels at every connection, so a failover is followed).
    A direct URL's pool opens at most :data:`MAX_CONNECTIONS` connections (the query option
    ``max_connections`` changes it); a command finding them all busy waits for one, at most
    ``socket_timeout`` seconds.

    Raises:
        ValueError: the URL is malformed, or names a Redis Cluster (see
            :func:`cluster_client_from_url`).
    """
    timeouts: dict[str, Any] = {
        "socket_timeout": socket_timeout,
        "socket_connect_timeout": socket_timeout,
    }
    parts = urlsplit(url)
    if parts.scheme in CLUSTER_SCHEMES:
        raise ValueError(f"{url!r} is a Redis Cluster: use RedisClusterBroker or engine_from_url")
    if parts.scheme != "redis+sentinel":
        pool = aioredis.BlockingConnectionPool.from_url(
            url, max_connections=MAX_CONNECTIONS, timeout=socket_timeout, **timeouts
        )
        direct: aioredis.Redis = aioredis.Redis.from_pool(pool)
        return direct
    hosts = []
    for item in parts.netloc.rpartition("@")[2].split(","):
        host, _, port = item.rpartition(":")
        hosts.append((host or "localhost", int(port or 26379)))
    path = [unquote(p) for p in parts.path.split("/") if p]
    if not path:
        raise ValueError(f"sentinel URL needs a master name: {url!r}")
    auth: dict[str, Any] = {"username": parts.username, "password": parts.password}
    db = int(path[1]) if len(path) > 1 else int(parse_qs(parts.query).get("db", ["0"])[0])
    # Typed in some redis-py versions, not in others: call it through a typed name.
    make_sentinel: Callable[..., Sentinel] = Sentinel
    sentinel = make_sentinel(hosts, sentinel_kwargs=timeouts, **timeouts)
    client: aioredis.Redis = sentinel.master_for(path[0], db=db, **auth)
    return client


def cluster_client_from_url(url: str, *, socket_timeout: float = SOCKET_TIMEOUT) -> RedisCluster:
    """A Redis Cluster client for ``url``; nothing connects until its first command.

    ``url`` is ``redis+cluster://[[user]:password@]host:port[,host:port...][?option=value...]``
    or ``rediss+cluster://...`` (TLS). The nodes listed are where the client first asks for
    the cluster's layout (one is enough, more survive one being down). Options are redis-py's
    connection options (for TLS: ``ssl_ca_certs``, ``ssl_certfile``, ``ssl_keyfile``,
    ``ssl_cert_reqs=none``...); a path, if any, must be ``/0``: a cluster has one database.

    Raises:
        ValueError: the URL is malformed.
    """
    parts = urlsplit(url)
    if parts.scheme not in CLUSTER_SCHEMES:
        raise ValueError(f"a Redis Cluster URL starts with redis+cluster://: {url!r}")
    userinfo, at, hosts = parts.netloc.rpartition("@")
    nodes = [_node(item, url) for item in hosts.split(",")]
    if parts.path.strip("/") not in ("", "0"):
        raise ValueError(f"a Redis Cluster has only database 0: {url!r}")
    host = f"[{nodes[0].host}]" if ":" in nodes[0].host else nodes[0].host
    first = f"{userinfo}{at}{host}:{nodes[0].port}"
    single = urlunsplit((parts.scheme.partition("+")[0], first, "", parts.query, ""))
    client: RedisCluster = RedisCluster.from_url(
        single,
        startup_nodes=nodes[1:],
        socket_timeout=socket_timeout,
        socket_connect_timeout=socket_timeout,
    )
    return client


def _node(item: str, url: str) -> ClusterNode:
    """``host:port`` (``[v6]:port``; the port defaults to 6379) as a startup node."""
    host, colon, port = item.rpartition(":")
    if not colon or host.endswith(":"):
        host, port = item, ""
    host = host.strip("[]")
    if not host or not (port or "6379").isdigit():
        raise ValueError(f"bad node {item!r} in {url!r}")
    return ClusterNode(host, int(port or 6379))
