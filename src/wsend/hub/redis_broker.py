"""The Redis broker: fan-out through Redis pub/sub, history in Redis Streams.

Keys of a channel ``ch`` (``prefix`` defaults to ``wsend``), all in one hash slot thanks to the
``{ch}`` hash tag, so that one Lua script may touch them all (and Redis Cluster could serve them
from one shard)::

    wsend:{ch}:m    HASH    e = epoch, s = top offset, t = history ttl (ms)     PEXPIRE meta_ttl
    wsend:{ch}:s    STREAM  id "<offset>-0", fields d = payload, t = time (ms)  MAXLEN size
    wsend:{ch}:p    pub/sub channel: one SUBSCRIBE per channel with local subscribers

Publishing to a channel with history runs one Lua script: create the meta hash with a new epoch
when it is missing (deleting a stale stream), ``HINCRBY`` the offset, ``XADD`` with
``id = offset``, set the expiries and ``PUBLISH`` the payload with its offset and epoch. Offsets
are therefore assigned atomically with the append and published in offset order.

Pub/sub is at-most-once, so the broker never trusts it alone. It remembers, per subscribed
channel, the position last delivered. A publication whose offset skips ahead is preceded by the
missing ones, read from the stream; if they are gone (or the epoch changed) the handler gets
``handler(channel, None)`` (the hub then makes its sessions resubscribe, and clients get
``recovered: false``). After a lost connection the broker reconnects with backoff, subscribes
again, and compares every channel's position in Redis with the last delivered one, the same way.
A health check (``PING`` on the pub/sub connection) notices a Redis that stopped answering.
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
import random
import secrets
import time
from collections.abc import Awaitable, Callable
from typing import Any, Final, Literal, cast

import msgspec
import redis.asyncio as aioredis
from redis.asyncio.connection import AbstractConnection
from redis.exceptions import RedisError

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
    SOCKET_TIMEOUT,
    client_from_url,
    decode_info,
    decode_publication,
    encode_info,
    encode_publication,
    engine_error,
)

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
#: Reconnection delays: full jitter between the floor and an exponential cap.
BACKOFF_MIN: Final = 0.05
BACKOFF_MAX: Final = 2.0
#: Channels per SUBSCRIBE command when subscribing again after a reconnection.
SUBSCRIBE_BATCH: Final = 512
#: Bytes of pub/sub messages received but not yet delivered past which the broker stops
#: reading them: the backlog then waits in Redis, whose ``client-output-buffer-limit pubsub``
#: drops a node that stays behind (the node reconnects and recovers from the streams).
BACKLOG_MAX: Final = 16 * 1024 * 1024

# Set while delivering a join/leave relayed from another node, so that the hub's announce()
# calling back into this broker does not relay it again.
_relaying: contextvars.ContextVar[bool] = contextvars.ContextVar("wsend_redis_relay", default=False)

PUBLISH_LUA: Final = """
local t = redis.call('TIME')
local ms = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local epoch = redis.call('HGET', KEYS[1], 'e')
if not epoch then
  epoch = ARGV[5]
  redis.call('DEL', KEYS[2])
  redis.call('HSET', KEYS[1], 'e', epoch, 's', 0)
end
local offset = redis.call('HINCRBY', KEYS[1], 's', 1)
redis.call('HSET', KEYS[1], 't', ARGV[3])
redis.call('XADD', KEYS[2], 'MAXLEN', ARGV[2], offset .. '-0', 'd', ARGV[1], 't', ms)
-- Lifetimes stay strings: Lua 5.1 would print large numbers as 1e+14, which Redis refuses.
local stream_ttl = tonumber(ARGV[3]) > 0 and ARGV[3] or ARGV[4]
for i, life in ipairs({ARGV[4], stream_ttl}) do
  if tonumber(life) > 0 then redis.call('PEXPIRE', KEYS[i], life)
  else redis.call('PERSIST', KEYS[i]) end
end
redis.call('PUBLISH', KEYS[3], 'p:' .. offset .. ':' .. epoch .. ':' .. ms .. ':' .. ARGV[1])
return {offset, epoch, ms}
"""

HISTORY_LUA: Final = """
local t = redis.call('TIME')
local ms = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local meta = redis.call('HMGET', KEYS[1], 'e', 's', 't')
local epoch, top, ttl = meta[1], meta[2], tonumber(meta[3] or '0')
if not epoch then
  epoch, top = ARGV[1], '0'
  redis.call('DEL', KEYS[2])
  redis.call('HSET', KEYS[1], 'e', epoch, 's', 0)
  if tonumber(ARGV[2]) > 0 then redis.call('PEXPIRE', KEYS[1], ARGV[2]) end
end
if tonumber(ARGV[7]) >= 0 then ttl = tonumber(ARGV[7]) end
if ttl > 0 then
  local cutoff, start = ms - ttl, '-'
  while true do
    local batch = redis.call('XRANGE', KEYS[2], start, '+', 'COUNT', 64)
    if #batch == 0 then redis.call('XTRIM', KEYS[2], 'MAXLEN', 0) break end
    local found = false
    for i = 1, #batch do
      if tonumber(batch[i][2][4]) > cutoff then
        redis.call('XTRIM', KEYS[2], 'MINID', batch[i][1])
        found = true
        break
      end
    end
    if found then break end
    start = '(' .. batch[#batch][1]
  end
end
-- ARGV[3]: the first stream id to return ('-': all); ARGV[5]: the count (string, -1: all).
local low, limit = ARGV[3], tonumber(ARGV[5])
if (low ~= '-' and ARGV[4] ~= epoch) or limit == 0 then return {epoch, top, {}} end
local pubs
if ARGV[6] == '1' then
  if limit > 0 then pubs = redis.call('XREVRANGE', KEYS[2], '+', low, 'COUNT', ARGV[5])
  else pubs = redis.call('XREVRANGE', KEYS[2], '+', low) end
else
  if limit > 0 then pubs = redis.call('XRANGE', KEYS[2], low, '+', 'COUNT', ARGV[5])
  else pubs = redis.call('XRANGE', KEYS[2], low, '+') end
end
return {epoch, top, pubs}
"""


async def _hmget(client: aioredis.Redis, key: str, *fields: str) -> list[Any]:
    """HMGET on the asyncio client (redis 5 types its result as sync-or-async: go through Any)."""
    pending: Any = client.hmget(key, list(fields))
    values: list[Any] = await pending
    return values


def _backoff(attempt: int) -> float:
    return random.uniform(BACKOFF_MIN, min(BACKOFF_MAX, BACKOFF_MIN * 2**attempt))


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

    Errors of Redis are raised as :class:`~wsend.hub.codes.HubError` 100 (temporary), chained
    to the Redis exception.
    """

    def __init__(
        self,
        redis: str | aioredis.Redis = "redis://localhost:6379/0",
        *,
        prefix: str = "wsend",
        health_interval: float = HEALTH_INTERVAL,
        health_timeout: float = HEALTH_TIMEOUT,
        socket_timeout: float = SOCKET_TIMEOUT,
        on_event: EventHandler | None = None,
    ) -> None:
        self._own = isinstance(redis, str)
        self.redis = (
            client_from_url(redis, socket_timeout=socket_timeout)
            if isinstance(redis, str)
            else redis
        )
        self.prefix = prefix
        self.node_id = secrets.token_hex(6)
        self.health_interval, self.health_timeout = health_interval, health_timeout
        self.socket_timeout = socket_timeout
        self.on_event = on_event
        #: How many times the pub/sub connection was established again after a loss.
        self.reconnections = 0
        #: How many times the broker told its handler that messages were lost.
        self.lost_signals = 0
        self._publish = self.redis.register_script(PUBLISH_LUA)
        self._history = self.redis.register_script(HISTORY_LUA)
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
        self._conn: AbstractConnection | None = None
        self._live = asyncio.Event()  # set while the pub/sub connection is subscribed
        self._seen = 0.0
        self._tasks: list[asyncio.Task[None]] = []
        self._was_live = False  # the current pub/sub connection got subscribed
        self._ever_live = False  # some pub/sub connection did: the next one resumes

    # -- keys

    def _key(self, channel: str, suffix: str) -> str:
        return f"{self.prefix}:{{{channel}}}:{suffix}"

    # -- lifecycle

    @property
    def connected(self) -> bool:
        """Whether the pub/sub connection is up and subscribed."""
        return self._live.is_set()

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
        self._tasks = [loop.create_task(self._run()), loop.create_task(self._deliver_loop())]

    async def close(self) -> None:
        """Stop delivering, drop the pub/sub connection and (for a URL) the pool. Idempotent."""
        if self._closed:
            return
        self._closed = True
        self._handler = None
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        for futures in self._confirm.values():
            for future in futures:
                future.cancel()
        if self._own:
            await self.redis.aclose()

    async def wait_connected(self, timeout: float | None = None) -> None:
        """Wait until the pub/sub connection is up (after :meth:`start`)."""
        async with asyncio.timeout(timeout):
            await self._live.wait()

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
            conn = self._conn
            if conn is not None and self._live.is_set():
                await conn.send_command("SUBSCRIBE", key)
            await asyncio.wait_for(asyncio.shield(future), self.socket_timeout)
        except (RedisError, OSError, TimeoutError) as exc:
            self._forget(channel)
            raise engine_error(exc) from exc
        await self._note_position(channel)

    async def unsubscribe(self, channel: str) -> None:
        """Stop delivering ``channel``'s publications (idempotent; never waits for Redis)."""
        self._check_open()
        key = self._forget(channel)
        conn = self._conn
        if key is not None and conn is not None and self._live.is_set():
            with contextlib.suppress(RedisError, OSError):
                await conn.send_command("UNSUBSCRIBE", key)

    def _forget(self, channel: str) -> bytes | None:
        key = self._channels.pop(channel, None)
        if key is not None:
            self._by_key.pop(key, None)
            self._last.pop(channel, None)
            for future in self._confirm.pop(key, ()):
                future.cancel()
        return key

    async def _note_position(self, channel: str) -> None:
        """Queue the channel's current position as its baseline (unless a message came first)."""
        try:
            epoch, top = await _hmget(self.redis, self._key(channel, "m"), "e", "s")
        except (RedisError, OSError):
            return
        if epoch is not None:
            self._queue.put_nowait(("base", channel, _text(epoch), int(top or 0)))

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
                await self.redis.publish(self._key(channel, "p"), message)
                return StreamPosition(0, "")
            keys = [self._key(channel, s) for s in ("m", "s", "p")]
            args: list[Any] = [
                payload,
                history.size,
                _ms(history.ttl),
                _ms(history.meta_ttl),
                _epoch(),
            ]
            offset, epoch, _ = await self._publish(keys, args)
        except (RedisError, OSError) as exc:
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
            raw_epoch, top, entries = await self._history(
                [self._key(channel, "m"), self._key(channel, "s")], args
            )
        except (RedisError, OSError) as exc:
            raise engine_error(exc) from exc
        epoch = raw_epoch.decode()
        publications = [_from_entry(entry, epoch) for entry in entries]
        return HistoryResult(publications, StreamPosition(int(top), epoch))

    async def remove_history(self, channel: str) -> None:
        """Forget ``channel``'s history and position; the next one starts a new epoch."""
        self._check_open()
        try:
            await self.redis.delete(self._key(channel, "m"), self._key(channel, "s"))
        except (RedisError, OSError) as exc:
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
            await self.redis.publish(self._key(channel, "p"), message)
        except (RedisError, OSError) as exc:
            logger.warning("relaying %s in %r failed: %s", kind, channel, exc)

    async def control(self, message: Any) -> None:
        """Send ``message`` (MessagePack-serializable) to the ``on_control`` of other nodes.

        Best effort, at most once: Redis errors are logged, not raised.
        """
        if self._closed:
            return
        payload = b"%b:%b" % (self.node_id.encode(), msgspec.msgpack.encode(message))
        try:
            await self.redis.publish(self._control_key, payload)
        except (RedisError, OSError) as exc:
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

    def _check_open(self) -> None:
        if self._closed:
            raise UsageError("broker is closed")

    # -- the pub/sub connection

    async def _run(self) -> None:
        """Keep a pub/sub connection subscribed to every channel, reconnecting with backoff."""
        attempt = 0
        while True:
            # redis-py types these two calls in some versions and not in others: go through Any.
            pool: Any = self.redis.connection_pool
            conn: AbstractConnection = pool.make_connection()
            self._was_live = False
            try:
                await cast(Any, conn).connect()
                self._conn, self._seen = conn, asyncio.get_running_loop().time()
                await self._session(conn)
            except (RedisError, OSError, TimeoutError) as exc:
                logger.warning("redis pub/sub connection lost: %s", exc)
            finally:
                self._conn = None
                self._live.clear()
                with contextlib.suppress(Exception):
                    await conn.disconnect(nowait=True)
            if self._was_live:
                attempt = 0  # it worked: start the backoff over
            await asyncio.sleep(_backoff(attempt))
            attempt += 1

    async def _session(self, conn: AbstractConnection) -> None:
        loop = asyncio.get_running_loop()
        reader = loop.create_task(self._read(conn))
        health = loop.create_task(self._health(conn))
        try:
            subscribed = await self._subscribe_all(conn, reader)
            self._live.set()
            # Channels added while SUBSCRIBE was in flight (their subscribe() didn't send it).
            late = [key for key in self._channels.values() if key not in subscribed]
            if late:
                await conn.send_command("SUBSCRIBE", *late)
            if self._ever_live:
                self.reconnections += 1
                for channel in list(self._channels):
                    self._queue.put_nowait(("check", channel))
            self._was_live = self._ever_live = True
            done, _ = await asyncio.wait([reader, health], return_when=asyncio.FIRST_COMPLETED)
            for task in done:
                task.result()
        finally:
            for task in (reader, health):
                task.cancel()
            await asyncio.gather(reader, health, return_exceptions=True)

    async def _subscribe_all(
        self, conn: AbstractConnection, reader: asyncio.Task[None]
    ) -> set[bytes]:
        """SUBSCRIBE to every channel in batches, wait for Redis to confirm them all; return
        the pub/sub channels subscribed."""
        keys = [self._control_key, *self._channels.values()]
        futures: list[asyncio.Future[None]] = []
        loop = asyncio.get_running_loop()
        for key in keys:
            future = loop.create_future()
            self._confirm.setdefault(key, []).append(future)
            futures.append(future)
        for i in range(0, len(keys), SUBSCRIBE_BATCH):
            await conn.send_command("SUBSCRIBE", *keys[i : i + SUBSCRIBE_BATCH])
        if futures:
            waiter = asyncio.gather(*futures, return_exceptions=True)
            both: list[asyncio.Future[Any]] = [waiter, reader]
            done, _ = await asyncio.wait(
                both, timeout=self.health_timeout, return_when=asyncio.FIRST_COMPLETED
            )
            if reader in done:
                reader.result()
            if waiter not in done:
                waiter.cancel()
                raise TimeoutError("redis did not confirm the subscriptions")
        return set(keys)

    async def _read(self, conn: AbstractConnection) -> None:
        loop = asyncio.get_running_loop()
        while True:
            response = await conn.read_response(timeout=math.inf, push_request=True)
            self._seen = loop.time()
            if not isinstance(response, list) or len(response) < 2:
                continue
            kind = response[0]
            if kind == b"message" and response[1] == self._control_key:
                self._queue.put_nowait(("ctl", "", response[2]))
            elif kind == b"message":
                channel = self._by_key.get(response[1])
                if channel is not None:
                    self._queue.put_nowait(("msg", channel, response[2]))
                    self._backlog += len(response[2])
                    if self._backlog > BACKLOG_MAX:
                        self._room.clear()
                        await self._room.wait()
            elif kind == b"subscribe":
                for future in self._confirm.pop(response[1], ()):
                    if not future.done():
                        future.set_result(None)

    async def _health(self, conn: AbstractConnection) -> None:
        loop = asyncio.get_running_loop()
        while True:
            await asyncio.sleep(self.health_interval)
            if not self._room.is_set():
                # Not reading (a backlog to deliver first): Redis's silence means nothing.
                self._seen = loop.time()
                continue
            if loop.time() - self._seen > self.health_timeout:
                raise TimeoutError(f"redis silent for {self.health_timeout} s")
            await conn.send_command("PING")

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
            async with self.redis.pipeline(transaction=True) as pipe:
                pipe.hget(self._key(channel, "m"), "e")
                pipe.xrange(self._key(channel, "s"), f"{after + 1}-0", f"{upto}-0")
                current, entries = await pipe.execute()
        except (RedisError, OSError):
            return False
        publications = [_from_entry(entry, epoch) for entry in entries]
        offsets = [p.offset for p in publications]
        if current is None or current.decode() != epoch or offsets != [*range(after + 1, upto + 1)]:
            return False
        for publication in publications:
            if self._advance(channel, epoch, publication.offset):
                await self._call(channel, publication)
        return True

    async def _check(self, channel: str) -> None:
        """After a reconnection: deliver what was missed from the stream, or signal a loss."""
        last = self._last.get(channel)
        try:
            epoch_b, top_b = await _hmget(self.redis, self._key(channel, "m"), "e", "s")
        except (RedisError, OSError):
            if last is not None:
                await self._lost(channel)
                self._last.pop(channel, None)
            return
        if epoch_b is None:
            if last is not None and last[1] > 0:
                await self._lost(channel)
            self._last.pop(channel, None)
            return
        epoch, top = _text(epoch_b), int(top_b or 0)
        if last is None or last[0] != epoch:
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
