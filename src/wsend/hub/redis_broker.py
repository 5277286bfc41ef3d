"""The Redis broker: fan-out through Redis pub/sub, history in Redis Streams.

Keys of a channel ``ch`` (``prefix`` defaults to ``wsend``), all in one hash slot thanks to the
``{ch}`` hash tag, so that one Lua script may touch them all (and a Redis Cluster serves them
from one shard, see :mod:`.redis_cluster`)::

    wsend:{ch}:m    HASH    e = epoch, s = top offset, t = history ttl (ms),    PEXPIRE meta_ttl
                            n = the master that wrote it (on a cluster)
    wsend:{ch}:s    STREAM  id "<offset>-0", fields d = payload, t = time (ms)  MAXLEN size
    wsend:{ch}:p    pub/sub channel: one SUBSCRIBE per channel with local subscribers

Publishing to a channel with history runs one Lua script (:mod:`.redis_scripts`): create the
meta hash with a new epoch when it is missing (deleting a stale stream), ``HINCRBY`` the offset,
``XADD`` with ``id = offset``, set the expiries and ``PUBLISH`` the payload with its offset and
epoch. Offsets are therefore assigned atomically with the append and published in offset order.

Pub/sub is at-most-once, so the broker never trusts it alone. It remembers, per subscribed
channel, the position last delivered. A publication whose offset skips ahead is preceded by the
missing ones, read from the stream; if they are gone (or the epoch changed) the handler gets
``handler(channel, None)`` (the hub then makes its sessions resubscribe, and clients get
``recovered: false``). After a lost connection the broker reconnects with backoff, subscribes
again, and compares every channel's position in Redis with the last delivered one, the same way
(a position behind it counts as a loss too). The pub/sub connection is a
:class:`~.redis_link.PubSubLink`, whose health check (``PING``) notices a Redis that stopped
answering; on a cluster there is one per master.
Messages received wait in a queue for delivery; past :data:`BACKLOG_MAX` bytes the broker stops
reading, so that an overloaded node's backlog stays in Redis (bounded there by
``client-output-buffer-limit pubsub``, after which Redis drops the connection and the node
recovers as after any lost connection) instead of growing in the node's memory.

Channels without history (``size == 0``) get no offsets: their publications are at most once.

Messages on a pub/sub channel (``payload`` is MessagePack, see
:func:`~.redis_common.encode_publication`)::

    b"p:<offset>:<epoch>:<time ms>:" + payload       a publication
    b"j:<node id>:" + info / b"l:<node id>:" + info  a join / leave relayed between nodes

Every node also subscribes to ``wsend:control``, where :meth:`RedisBroker.control` sends
``b"<node id>:" + MessagePack`` messages to the other nodes' ``on_control`` handler (the hub
relays "disconnect this user" and "send this user a message" that way). At most once, like
every pub/sub message.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import inspect
import logging
import math
import secrets
import time
from collections.abc import Awaitable, Callable
from typing import Any, Final, Literal, cast

import msgspec
from redis.asyncio.connection import AbstractConnection

from ..exceptions import UsageError
from .broker import (
    BrokerEventHandler,
    ClientInfo,
    HistoryOptions,
    HistoryResult,
    Publication,
    StreamPosition,
)
from .redis_common import (
    ENGINE_ERRORS,
    MAX_CONNECTIONS,
    SOCKET_TIMEOUT,
    client_from_url,
    decode_info,
    decode_publication,
    encode_info,
    encode_publication,
    engine_error,
)
from .redis_link import PubSubLink
from .redis_pipeline import Pipeline, pipeline_for, run_script
from .redis_scripts import broker_scripts

__all__ = [
    "SOCKET_TIMEOUT",
    "RedisBroker",
    "client_from_url",
    "decode_info",
    "decode_publication",
    "encode_info",
    "encode_publication",
    "engine_error",
]

logger = logging.getLogger("wsend.hub.redis")

EventHandler = Callable[[Literal["join", "leave"], str, ClientInfo], Awaitable[None] | None]
ControlHandler = Callable[[Any], Awaitable[None] | None]

#: Seconds between two PINGs on the pub/sub connection, and how long without any answer before
#: the connection is considered dead (Centrifuge pings its pub/sub connections every second).
HEALTH_INTERVAL: Final = 1.0
HEALTH_TIMEOUT: Final = 5.0
#: Bytes of pub/sub messages received but not yet delivered past which the broker stops
#: reading them: the backlog then waits in Redis, whose ``client-output-buffer-limit pubsub``
#: drops a node that stays behind (the node reconnects and recovers from the streams).
BACKLOG_MAX: Final = 16 * 1024 * 1024

# Set while delivering a join/leave relayed from another node, so that the hub's announce()
# calling back into this broker does not relay it again.
_relaying: contextvars.ContextVar[bool] = contextvars.ContextVar("wsend_redis_relay", default=False)

# -- the broker -----------------------------------------------------------------------------


class RedisBroker:
    """A :class:`~wsend.hub.broker.Broker` sharing channels and history through Redis.

    Args:
        redis: a URL (see :func:`client_from_url`) or a ``redis.asyncio.Redis`` client (then
            left open by :meth:`close`).
        prefix: the prefix of every key and pub/sub channel; nodes of one cluster share it.
        health_interval, health_timeout: pub/sub health check (see the module constants).
        socket_timeout: for a URL, seconds before a command fails with Redis unavailable.
        on_event: ``f(kind, channel, info)`` for joins and leaves relayed from other nodes.
            By default, when the handler given to :meth:`start` is a bound method of a hub, the
            hub's ``announce`` is called (without relaying it again).

    Raises:
        ValueError: the URL is malformed, or names a Redis Cluster (use
            :class:`~wsend.hub.redis_cluster.RedisClusterBroker`).

    Errors of Redis are raised as :class:`~wsend.hub.codes.HubError` 100 (temporary), chained
    to the Redis exception.
    """

    #: Whether this broker talks to a Redis Cluster (shard channels, per-master links).
    cluster: bool = False

    def __init__(
        self,
        redis: Any = "redis://localhost:6379/0",
        *,
        prefix: str = "wsend",
        health_interval: float = HEALTH_INTERVAL,
        health_timeout: float = HEALTH_TIMEOUT,
        socket_timeout: float = SOCKET_TIMEOUT,
        on_event: EventHandler | None = None,
    ) -> None:
        self._own = isinstance(redis, str)
        self.redis = self._client(redis, socket_timeout) if isinstance(redis, str) else redis
        self.prefix = prefix
        self.node_id = secrets.token_hex(6)
        self.health_interval, self.health_timeout = health_interval, health_timeout
        self.socket_timeout = socket_timeout
        self.on_event = on_event
        #: How many times a pub/sub connection was established again after a loss.
        self.reconnections = 0
        #: How many times the broker told its handler that messages were lost.
        self.lost_signals = 0
        scripts = broker_scripts(cluster=self.cluster)
        self._publish = self.redis.register_script(scripts.publish)
        self._history = self.redis.register_script(scripts.history)
        self._position = self.redis.register_script(scripts.position)
        self._publish_command = "SPUBLISH" if self.cluster else "PUBLISH"
        #: Commands of one turn of the event loop go in one pipeline (one per master on a
        #: cluster; see :mod:`.redis_pipeline`); ``None`` sends each alone.
        self.pipeline: Pipeline = pipeline_for(self.redis, MAX_CONNECTIONS, socket_timeout)
        self._handler: BrokerEventHandler | None = None
        self._closed = False
        self._channels: dict[str, bytes] = {}  # channel -> its pub/sub channel name
        self._by_key: dict[bytes, str] = {}
        self._control_key = f"{prefix}:control".encode()
        #: ``f(message)`` for messages of :meth:`control` sent by other nodes.
        self.on_control: ControlHandler | None = None
        self._last: dict[str, tuple[str, int]] = {}  # channel -> (epoch, offset) delivered
        self._confirm: dict[bytes, list[asyncio.Future[None]]] = {}
        self._queue: asyncio.Queue[tuple[Any, ...]] = asyncio.Queue()
        self._backlog = 0  # bytes of messages in the queue
        self._room = asyncio.Event()  # set while the backlog is under BACKLOG_MAX
        self._room.set()
        self._route: dict[bytes, PubSubLink] = {}  # pub/sub channel -> the link holding it
        self._live_changed = asyncio.Event()  # set when a link gets live
        self._tasks: list[asyncio.Task[None]] = []

    @staticmethod
    def _client(url: str, socket_timeout: float) -> Any:
        return client_from_url(url, socket_timeout=socket_timeout)

    # -- keys

    def _key(self, channel: str, suffix: str) -> str:
        return f"{self.prefix}:{{{channel}}}:{suffix}"

    # -- lifecycle

    @property
    def connected(self) -> bool:
        """Whether every pub/sub connection is up and subscribed."""
        links = self._links()
        return bool(links) and all(link.live.is_set() for link in links)

    async def start(self, handler: BrokerEventHandler) -> None:
        """Connect the pub/sub connection and begin delivering to ``handler``.

        Returns without waiting for Redis: the connection is made (and retried) in the
        background. Raises :class:`~wsend.exceptions.UsageError` if started twice or closed.
        """
        self._check_open()
        if self._handler is not None:
            raise UsageError("broker already started")
        self._handler = handler
        loop = asyncio.get_running_loop()
        self._tasks = [loop.create_task(self._deliver_loop())]
        await self._start_links([self._control_key, *self._channels.values()])

    async def close(self) -> None:
        """Stop delivering, drop the pub/sub connections and (for a URL) the pool. Idempotent."""
        if self._closed:
            return
        self._closed = True
        self._handler = None
        for task in self._tasks:
            task.cancel()
        for link in self._links():
            await link.close()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        for futures in self._confirm.values():
            for future in futures:
                future.cancel()
        if self.pipeline is not None:
            await self.pipeline.close()
        if self._own:
            await self.redis.aclose()

    async def wait_connected(self, timeout: float | None = None) -> None:
        """Wait until every pub/sub connection is up (after :meth:`start`)."""
        async with asyncio.timeout(timeout):
            while not self.connected:
                self._live_changed.clear()
                await self._live_changed.wait()

    # -- the pub/sub links (one on a single Redis; see RedisClusterBroker for a cluster)

    def _links(self) -> list[PubSubLink]:
        """The links that exist (and are not done)."""
        return list(dict.fromkeys(self._route.values()))

    async def _start_links(self, keys: list[bytes]) -> None:
        """Make the link(s) and give them ``keys`` (new subscriptions)."""
        link = PubSubLink(self, "redis", self._connect_pubsub)
        for key in keys:
            self._route[key] = link
            await link.add(key, resumed=False)

    async def _connect_pubsub(self) -> AbstractConnection:
        # redis-py types these two calls in some versions and not in others: go through Any.
        pool: Any = self.redis.connection_pool
        conn: AbstractConnection = pool.make_connection()
        await cast(Any, conn).connect()
        return conn

    async def _place(self, key: bytes) -> None:
        """Subscribe ``key`` (a new subscription) on the link that should hold it."""
        link = next(iter(self._route.values()))
        self._route[key] = link
        await link.add(key, resumed=False)

    # LinkOwner: what the links call.

    def reading_paused(self) -> bool:
        return not self._room.is_set()

    async def link_message(self, link: PubSubLink, key: bytes, payload: bytes) -> None:
        if key == self._control_key:
            self._queue.put_nowait(("ctl", "", payload))
            return
        channel = self._by_key.get(key)
        if channel is None:
            return
        self._queue.put_nowait(("msg", channel, payload))
        self._backlog += len(payload)
        if self._backlog > BACKLOG_MAX:
            self._room.clear()
            await self._room.wait()

    def link_confirmed(self, link: PubSubLink, key: bytes, resumed: bool) -> None:
        for future in self._confirm.pop(key, ()):
            if not future.done():
                future.set_result(None)
        channel = self._by_key.get(key)
        if resumed and channel is not None:
            # Subscribed again (a new connection, another master): check what was missed.
            self._queue.put_nowait(("check", channel))

    def link_dropped(self, link: PubSubLink, key: bytes) -> None:
        """Redis unsubscribed ``key`` by itself (a single Redis doesn't): subscribe it again,
        checking what was missed once confirmed."""
        if key == self._control_key or key in self._by_key:
            self._tasks.append(asyncio.get_running_loop().create_task(self._readd(link, key)))

    @staticmethod
    async def _readd(link: PubSubLink, key: bytes) -> None:
        with contextlib.suppress(*ENGINE_ERRORS):  # the link resubscribes as it reconnects
            await link.add(key, resumed=True)

    def link_live(self, link: PubSubLink, again: bool) -> None:
        self._live_changed.set()
        if again:
            self.reconnections += 1

    async def link_lost(self, link: PubSubLink) -> None:
        """A link's connection failed (it reconnects by itself on a single Redis)."""

    # -- subscriptions

    async def subscribe(self, channel: str) -> None:
        """Deliver ``channel``'s publications to this node (idempotent).

        Waits for Redis to confirm the subscription (at most ``socket_timeout`` seconds, then
        raises HubError 100 and forgets the channel), then notes the channel's position so that
        a publication missed from the first one on is noticed.
        """
        self._check_open()
        if channel in self._channels:
            return
        key = self._key(channel, "p").encode()
        self._channels[channel] = key
        self._by_key[key] = channel
        if self._handler is None:
            return
        future = asyncio.get_running_loop().create_future()
        self._confirm.setdefault(key, []).append(future)
        try:
            await self._place(key)
            await asyncio.wait_for(asyncio.shield(future), self.socket_timeout)
        except (*ENGINE_ERRORS, TimeoutError) as exc:
            await self.unsubscribe(channel)
            raise engine_error(exc) from exc
        await self._note_position(channel)

    async def unsubscribe(self, channel: str) -> None:
        """Stop delivering ``channel``'s publications (idempotent; never waits for Redis)."""
        self._check_open()
        key = self._channels.pop(channel, None)
        if key is None:
            return
        self._by_key.pop(key, None)
        self._last.pop(channel, None)
        for future in self._confirm.pop(key, ()):
            future.cancel()
        link = self._route.pop(key, None)
        if link is not None:
            await link.discard(key)

    async def _note_position(self, channel: str) -> None:
        """Queue the channel's current position as its baseline (unless a message came first)."""
        try:
            epoch, top, _ = await self._read_position(channel)
        except ENGINE_ERRORS:
            return
        if epoch is not None:
            self._queue.put_nowait(("base", channel, epoch, top))

    async def _read_position(
        self, channel: str, low: int = 0, high: int = 0
    ) -> tuple[str | None, int, list[Any]]:
        """The channel's position in Redis (epoch ``None``: it has none) and, when ``low`` is
        positive, its stream entries from offset ``low`` to ``high``."""
        keys = [self._key(channel, "m"), self._key(channel, "s")]
        args: list[Any] = [_epoch(), f"{low}-0", f"{high}-0"] if low > 0 else [_epoch()]
        epoch, top, entries = await run_script(self.pipeline, self._position, keys, args)
        return (None if epoch is None else _text(epoch)), int(top or 0), entries

    # -- publishing and history

    async def publish(
        self, channel: str, publication: Publication, history: HistoryOptions
    ) -> StreamPosition:
        """Publish to every node subscribed to ``channel``; with history, append it first.

        The offset and epoch are assigned by a Lua script atomically with the append; the
        publication's time is Redis's clock. The caller's object is not modified.

        Raises:
            HubError: 100 (temporary) when Redis fails. The publication may still have been
                made (a timeout while Redis is slow): retrying can publish it twice.
            TypeError: ``data`` can't be serialized.
        """
        self._check_open()
        payload = encode_publication(publication)
        try:
            if history.size <= 0:
                now = int(time.time() * 1000)
                message = b"p:0::%d:%b" % (now, payload)
                await self._send(self._key(channel, "p"), message)
                return StreamPosition(0, "")
            keys = [self._key(channel, s) for s in ("m", "s", "p")]
            args: list[Any] = [
                payload,
                history.size,
                _ms(history.ttl),
                _ms(history.meta_ttl),
                _epoch(),
            ]
            offset, epoch, _ = await run_script(self.pipeline, self._publish, keys, args)
        except ENGINE_ERRORS as exc:
            raise engine_error(exc) from exc
        return StreamPosition(int(offset), epoch.decode())

    async def history(
        self,
        channel: str,
        *,
        since: StreamPosition | None = None,
        limit: int | None = None,
        reverse: bool = False,
        history: HistoryOptions | None = None,
    ) -> HistoryResult:
        """Read ``channel``'s history and position (see :meth:`Broker.history`).

        A channel without a position gets one (offset 0, a new epoch, lasting ``meta_ttl`` of
        ``history`` or a day) that its first publication continues. Publications older than
        the history ttl (``history.ttl``, else the last publication's) are dropped from the
        stream first.

        Raises:
            ValueError: ``limit`` is negative.
            HubError: 100 (temporary) when Redis fails.
        """
        self._check_open()
        if limit is not None and limit < 0:
            raise ValueError(f"limit must be >= 0, got {limit}")
        options = history or HistoryOptions()
        args: list[Any] = [
            _epoch(),
            _ms(options.meta_ttl),
            "-" if since is None else _stream_id(since.offset + 1),
            "" if since is None else since.epoch,
            -1 if limit is None else min(limit, _MAX_COUNT),
            1 if reverse else 0,
            -1 if history is None else _ms(history.ttl),
        ]
        try:
            raw_epoch, top, entries = await run_script(
                self.pipeline,
                self._history,
                [self._key(channel, "m"), self._key(channel, "s")],
                args,
            )
        except ENGINE_ERRORS as exc:
            raise engine_error(exc) from exc
        epoch = raw_epoch.decode()
        publications = [_from_entry(entry, epoch) for entry in entries]
        return HistoryResult(publications, StreamPosition(int(top), epoch))

    async def remove_history(self, channel: str) -> None:
        """Forget ``channel``'s history and position; the next one starts a new epoch."""
        self._check_open()
        try:
            await self.redis.delete(self._key(channel, "m"), self._key(channel, "s"))
        except ENGINE_ERRORS as exc:
            raise engine_error(exc) from exc

    async def announce(
        self, kind: Literal["join", "leave"], channel: str, info: ClientInfo
    ) -> None:
        """Relay a join or leave of a local client to the other nodes subscribed to ``channel``.

        Best effort (join/leave pushes are at most once): Redis errors are logged, not raised.
        """
        if self._closed or _relaying.get():
            return
        message = b"%b:%b:%b" % (kind[:1].encode(), self.node_id.encode(), encode_info(info))
        try:
            await self._send(self._key(channel, "p"), message)
        except ENGINE_ERRORS as exc:
            logger.warning("relaying %s in %r failed: %s", kind, channel, exc)

    async def control(self, message: Any) -> None:
        """Send ``message`` (MessagePack-serializable) to the ``on_control`` of other nodes.

        Best effort, at most once: Redis errors are logged, not raised.
        """
        if self._closed:
            return
        payload = b"%b:%b" % (self.node_id.encode(), msgspec.msgpack.encode(message))
        try:
            await self._send(self._control_key, payload)
        except ENGINE_ERRORS as exc:
            logger.warning("relaying a control message failed: %s", exc)

    async def _on_control(self, raw: bytes) -> None:
        node, _, payload = raw.partition(b":")
        target = self.on_control
        if node.decode() == self.node_id or target is None:
            return
        try:
            result = target(msgspec.msgpack.decode(payload))
            if inspect.isawaitable(result):
                await result
        except Exception:
            logger.exception("control message failed")

    async def _send(self, key: str | bytes, message: bytes) -> None:
        """Publish ``message`` on the pub/sub channel ``key`` (a shard channel on a cluster)."""
        if self.pipeline is None:
            await self.redis.execute_command(self._publish_command, key, message)
        else:
            await self.pipeline.execute(self._publish_command, key, message)

    def _check_open(self) -> None:
        if self._closed:
            raise UsageError("broker is closed")

    # -- delivery

    async def _deliver_loop(self) -> None:
        """Process pub/sub messages, baselines and position checks, one at a time, in order."""
        while True:
            item = await self._queue.get()
            if item[0] == "msg":
                self._backlog -= len(item[2])
                if self._backlog <= BACKLOG_MAX // 2:
                    self._room.set()
            elif item[0] == "ctl":
                await self._on_control(item[2])
                continue
            channel = item[1]
            if channel not in self._channels:
                continue
            try:
                if item[0] == "msg":
                    await self._on_message(channel, item[2])
                elif item[0] == "base":
                    self._last.setdefault(channel, (item[2], item[3]))
                else:
                    await self._check(channel)
            except Exception:
                logger.exception("redis broker: delivery for %r failed", channel)

    async def _on_message(self, channel: str, message: bytes) -> None:
        kind = message[:1]
        if kind in (b"j", b"l"):
            _, node, payload = message.split(b":", 2)
            if node.decode() != self.node_id:
                await self._relay_event("join" if kind == b"j" else "leave", channel, payload)
            return
        _, offset_s, epoch_s, ms, payload = message.split(b":", 4)
        offset, epoch = int(offset_s), epoch_s.decode()
        publication = decode_publication(payload, offset, epoch, int(ms))
        if offset == 0:
            await self._call(channel, publication)
            return
        last = self._last.get(channel)
        if last is not None and last[0] == epoch:
            if offset <= last[1]:
                return  # already delivered (read from the stream after a gap)
            if offset > last[1] + 1 and not await self._fill(channel, epoch, last[1], offset - 1):
                await self._lost(channel)
        elif last is not None:
            await self._lost(channel)  # the history restarted: positions from before are void
        if self._advance(channel, epoch, offset):
            await self._call(channel, publication)

    def _advance(self, channel: str, epoch: str, offset: int) -> bool:
        """Note ``(epoch, offset)`` as delivered; ``False`` (noting nothing) when ``channel``
        is no longer subscribed: a handler told of a loss may unsubscribe it, and a position
        kept past the subscription would void the next one's baseline."""
        if channel not in self._channels:
            return False
        self._last[channel] = (epoch, offset)
        return True

    async def _fill(self, channel: str, epoch: str, after: int, upto: int) -> bool:
        """Deliver publications ``after + 1 .. upto`` from the stream; False if any is gone."""
        try:
            current, _, entries = await self._read_position(channel, after + 1, upto)
        except ENGINE_ERRORS:
            return False
        publications = [_from_entry(entry, epoch) for entry in entries]
        offsets = [p.offset for p in publications]
        if current != epoch or offsets != [*range(after + 1, upto + 1)]:
            return False
        for publication in publications:
            if self._advance(channel, epoch, publication.offset):
                await self._call(channel, publication)
        return True

    async def _check(self, channel: str) -> None:
        """After a resubscription: deliver what was missed from the stream, or signal a loss.

        A position behind the one delivered (a failover lost acknowledged publications, the
        new master will hand their offsets out again) is a loss too.
        """
        last = self._last.get(channel)
        try:
            epoch, top, _ = await self._read_position(channel)
        except ENGINE_ERRORS:
            if last is not None:
                await self._lost(channel)
                self._last.pop(channel, None)
            return
        if epoch is None:
            if last is not None and last[1] > 0:
                await self._lost(channel)
            self._last.pop(channel, None)
            return
        if last is None or last[0] != epoch or top < last[1]:
            if last is not None or top > 0:
                await self._lost(channel)
            self._advance(channel, epoch, top)
        elif top > last[1] and not await self._fill(channel, epoch, last[1], top):
            await self._lost(channel)
            self._advance(channel, epoch, top)

    async def _lost(self, channel: str) -> None:
        self.lost_signals += 1
        logger.warning("redis broker: publications of %r lost, subscribers must recover", channel)
        await self._call(channel, None)

    async def _call(self, channel: str, publication: Publication | None) -> None:
        handler = self._handler
        if handler is None:
            return
        try:
            result = handler(channel, publication)
            if inspect.isawaitable(result):
                await result
        except Exception:
            logger.exception("broker handler failed for channel %r", channel)

    async def _relay_event(self, kind: Literal["join", "leave"], channel: str, raw: bytes) -> None:
        info = decode_info(raw)
        target: Any = self.on_event
        if target is None:
            target = getattr(getattr(self._handler, "__self__", None), "announce", None)
        if target is None:
            return
        token = _relaying.set(True)
        try:
            result = target(kind, channel, info)
            if inspect.isawaitable(result):
                await result
        except Exception:
            logger.exception("relayed %s for %r failed", kind, channel)
        finally:
            _relaying.reset(token)


# The largest stream id's first part, and the largest count given to XRANGE.
_MAX_ID: Final = 2**64 - 1
_MAX_COUNT: Final = 2**63 - 1


def _stream_id(offset: int) -> str:
    """The stream id of ``offset`` (offsets beyond any id map to the largest one)."""
    return f"{min(max(offset, 0), _MAX_ID)}-0"


def _ms(seconds: float) -> int:
    """Seconds as whole milliseconds for Redis (0 when not positive: no limit).

    Capped at 2**62 ms (a hundred million years), within what ``PEXPIRE`` accepts.
    """
    return min(math.ceil(seconds * 1000), 2**62) if seconds > 0 else 0


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


def _epoch() -> str:
    """A candidate epoch, used by the scripts only when the channel has none."""
    return secrets.token_hex(4)


def _from_entry(entry: Any, epoch: str) -> Publication:
    """A publication from a stream entry ``(id, [b"d", payload, b"t", ms])``."""
    entry_id, fields = entry
    if isinstance(fields, dict):
        payload, ms = fields[b"d"], fields[b"t"]
    else:
        payload, ms = fields[1], fields[3]
    offset = int(entry_id.split(b"-", 1)[0])
    return decode_publication(payload, offset, epoch, int(ms))
