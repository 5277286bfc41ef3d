"""One pub/sub connection of the Redis engine: it subscribes its keys, reads, pings, reconnects.

The broker (:mod:`.redis_broker`) keeps one link on a single Redis; on a Redis Cluster
(:mod:`.redis_cluster`) it keeps one link per master, each subscribed (``SSUBSCRIBE``) to the
shard channels of the slots that master serves. A link:

- connects (its factory gives it a connected connection), subscribes every key it holds, in
  batches (one slot per batch for shard channels, as Redis requires), and waits at most
  ``health_timeout`` seconds for Redis to confirm them all;
- reports every confirmation to its owner, saying whether the key is *resumed* (it was
  subscribed before, somewhere, so publications may have been missed meanwhile) or new;
- hands every message to its owner, which may make it wait (a full backlog: reading stops);
- sends ``PING`` every ``health_interval``; silence for ``health_timeout`` means the connection
  is dead (unless the owner stopped the reading);
- after a loss tells its owner (which may move keys to other links: a cluster's slots moved),
  then reconnects with jittered exponential backoff for as long as it holds keys;
- reports a key that Redis unsubscribed by itself (a cluster node losing a slot sends
  ``sunsubscribe``): the key leaves the link, and the owner places it again.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import random
from collections import Counter
from collections.abc import Awaitable, Callable
from typing import Any, Final, Protocol

from redis.asyncio.connection import AbstractConnection
from redis.crc import key_slot

from .redis_common import ENGINE_ERRORS

__all__ = ["BACKOFF_MAX", "BACKOFF_MIN", "SUBSCRIBE_BATCH", "LinkOwner", "PubSubLink", "backoff"]

logger = logging.getLogger("wsend.hub.redis")

#: Reconnection delays: full jitter between the floor and an exponential cap.
BACKOFF_MIN: Final = 0.05
BACKOFF_MAX: Final = 2.0
#: Channels per SUBSCRIBE command when subscribing again after a reconnection (Centrifugo
#: batches its SSUBSCRIBE commands by 512 too).
SUBSCRIBE_BATCH: Final = 512


def backoff(attempt: int) -> float:
    """The delay before reconnection attempt ``attempt`` (0-based), in seconds."""
    return random.uniform(BACKOFF_MIN, min(BACKOFF_MAX, BACKOFF_MIN * 2**attempt))


class LinkOwner(Protocol):
    """What a link needs from the broker that owns it."""

    health_interval: float
    health_timeout: float

    def reading_paused(self) -> bool:
        """Whether the owner's backlog is full (the link is not reading: silence is normal)."""

    async def link_message(self, link: PubSubLink, key: bytes, payload: bytes) -> None:
        """A message on ``key``; may wait (the link reads nothing meanwhile)."""

    def link_confirmed(self, link: PubSubLink, key: bytes, resumed: bool) -> None:
        """Redis confirmed the subscription to ``key``."""

    def link_dropped(self, link: PubSubLink, key: bytes) -> None:
        """Redis unsubscribed ``key`` by itself; the key has left the link."""

    def link_live(self, link: PubSubLink, again: bool) -> None:
        """The link is subscribed to its keys (``again``: after a lost connection)."""

    async def link_lost(self, link: PubSubLink) -> None:
        """The link's connection failed; called before each reconnection attempt."""


class PubSubLink:
    """One pub/sub connection and the keys (pub/sub channel names) it subscribes.

    Args:
        owner: the broker.
        name: for logs (``host:port``).
        connect: makes and connects a new connection.
        sharded: ``SSUBSCRIBE``/``SUNSUBSCRIBE`` (shard channels of Redis 7) instead of
            ``SUBSCRIBE``/``UNSUBSCRIBE``.
    """

    def __init__(
        self,
        owner: LinkOwner,
        name: str,
        connect: Callable[[], Awaitable[AbstractConnection]],
        *,
        sharded: bool = False,
    ) -> None:
        self.owner, self.name, self._connect = owner, name, connect
        self.sharded = sharded
        prefix = b"s" if sharded else b""
        self._kinds = (prefix + b"message", prefix + b"subscribe", prefix + b"unsubscribe")
        self._commands = ("SSUBSCRIBE", "SUNSUBSCRIBE") if sharded else ("SUBSCRIBE", "UNSUBSCRIBE")
        #: The keys held, each with whether its next confirmation resumes it.
        self.keys: dict[bytes, bool] = {}
        #: Set while the connection is up and every key it held is subscribed.
        self.live = asyncio.Event()
        #: Set once the link gave up (it holds no key): the owner makes a new one if needed.
        self.done = False
        self._conn: AbstractConnection | None = None
        self._sent: set[bytes] = set()  # keys whose subscribe went on the current connection
        self._waiting: set[bytes] = set()  # keys whose confirmation the connection awaits
        self._all_confirmed = asyncio.Event()
        self._idle = asyncio.Event()  # set when the last key left: the link closes
        self._unsubscribing: Counter[bytes] = Counter()
        self._seen = 0.0
        self._task: asyncio.Task[None] | None = None
        self._got_live = False  # the current connection got subscribed
        self._ever_live = False  # some connection did: the next one resumes

    async def close(self) -> None:
        """Stop and drop the connection."""
        self.done = True
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    async def add(self, key: bytes, *, resumed: bool) -> None:
        """Hold ``key``: subscribe it now if the connection is live, else when it is.

        Raises:
            RedisError, OSError: sending the command failed (the key stays held).
        """
        self.keys[key] = resumed
        self._idle.clear()
        if self._task is None:  # the first key: connect (in the background)
            self._task = asyncio.get_running_loop().create_task(self._run())
        conn = self._conn
        if conn is not None and self.live.is_set():
            await self._send_subscribe(conn, [key])

    async def discard(self, key: bytes) -> None:
        """Stop holding ``key`` and unsubscribe it (best effort, never waits for Redis).

        The unsubscribe goes out whenever the key's subscribe went on the current connection,
        confirmed or not: a key left while the connection still subscribes (a new or
        reconnected link) would otherwise stay subscribed in Redis for as long as the
        connection lives.
        """
        if self.keys.pop(key, None) is None:
            return
        self._settle(key)
        if not self.keys:
            self._idle.set()
        conn = self._conn
        if conn is not None and key in self._sent:
            self._sent.discard(key)
            self._unsubscribing[key] += 1
            with contextlib.suppress(*ENGINE_ERRORS):
                await conn.send_command(self._commands[1], key)

    # -- the connection

    async def _run(self) -> None:
        attempt = 0
        while self.keys:
            self._got_live = False
            conn: AbstractConnection | None = None
            try:
                conn = await self._connect()
                self._conn, self._seen = conn, asyncio.get_running_loop().time()
                await self._session(conn)
            except (*ENGINE_ERRORS, TimeoutError) as exc:
                logger.warning("redis pub/sub connection to %s lost: %s", self.name, exc)
            finally:
                self._conn = None
                self.live.clear()
                if conn is not None:
                    with contextlib.suppress(Exception):
                        await conn.disconnect(nowait=True)
            if not self.keys:
                break
            attempt = 0 if self._got_live else attempt + 1
            await self.owner.link_lost(self)
            if self.keys:
                await asyncio.sleep(backoff(attempt))
        self.done = True

    async def _session(self, conn: AbstractConnection) -> None:
        """Subscribe everything, then read and ping until the connection fails (raises) or
        the link holds no key any more (returns)."""
        loop = asyncio.get_running_loop()
        reader = loop.create_task(self._read(conn))
        health = loop.create_task(self._health(conn))
        idle = loop.create_task(self._idle.wait())
        try:
            await self._subscribe_all(conn, reader)
            self.live.set()
            self._got_live = True
            self.owner.link_live(self, self._ever_live)
            self._ever_live = True
            # Keys added while the connection was subscribing: their add() did not send them.
            late = [key for key in self.keys if key not in self._sent]
            if late:
                await self._send_subscribe(conn, late)
            tasks: list[asyncio.Task[Any]] = [reader, health, idle]
            done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
            for task in done:
                task.result()
        finally:
            for task in (reader, health, idle):
                task.cancel()
            await asyncio.gather(reader, health, idle, return_exceptions=True)

    async def _subscribe_all(self, conn: AbstractConnection, reader: asyncio.Task[None]) -> None:
        """Subscribe every key held; wait until Redis confirmed them all (or raise)."""
        self._sent = set()
        self._unsubscribing.clear()  # the replies awaited were the previous connection's
        self._waiting = set(self.keys)
        self._all_confirmed.clear()
        if not self._waiting:
            return
        await self._send_subscribe(conn, list(self.keys))
        waiter = asyncio.ensure_future(self._all_confirmed.wait())
        both: list[asyncio.Future[Any]] = [waiter, reader]
        done, _ = await asyncio.wait(
            both, timeout=self.owner.health_timeout, return_when=asyncio.FIRST_COMPLETED
        )
        waiter.cancel()
        if reader in done:
            reader.result()
        if waiter not in done:
            raise TimeoutError(f"{self.name} did not confirm the subscriptions")

    async def _send_subscribe(self, conn: AbstractConnection, keys: list[bytes]) -> None:
        """Send the subscribe commands for ``keys`` in one write (one slot per command)."""
        groups: dict[int, list[bytes]] = {}
        for key in keys:
            groups.setdefault(key_slot(key) if self.sharded else 0, []).append(key)
        commands: list[list[bytes | str]] = [
            [self._commands[0], *group[i : i + SUBSCRIBE_BATCH]]
            for group in groups.values()
            for i in range(0, len(group), SUBSCRIBE_BATCH)
        ]
        self._sent.update(keys)
        await conn.send_packed_command(conn.pack_commands(commands))

    async def _read(self, conn: AbstractConnection) -> None:
        loop = asyncio.get_running_loop()
        message, subscribed, unsubscribed = self._kinds
        while True:
            response = await conn.read_response(timeout=math.inf, push_request=True)
            self._seen = loop.time()
            if not isinstance(response, list) or len(response) < 2:
                continue
            kind, key = response[0], response[1]
            if kind == message and key in self.keys:
                await self.owner.link_message(self, key, response[2])
            elif kind == subscribed and key in self.keys:
                resumed = self.keys[key]
                self.keys[key] = True
                self._settle(key)
                self.owner.link_confirmed(self, key, resumed)
            elif kind == unsubscribed:
                self._unsubscribed(key)

    def _settle(self, key: bytes) -> None:
        """``key`` no longer awaits its confirmation."""
        self._waiting.discard(key)
        if not self._waiting:
            self._all_confirmed.set()

    def _unsubscribed(self, key: bytes) -> None:
        if self._unsubscribing[key] > 0:
            self._unsubscribing[key] -= 1
            if not self._unsubscribing[key]:
                del self._unsubscribing[key]
        elif self.keys.pop(key, None) is not None:
            self._sent.discard(key)
            self._settle(key)
            if not self.keys:
                self._idle.set()
            self.owner.link_dropped(self, key)

    async def _health(self, conn: AbstractConnection) -> None:
        loop = asyncio.get_running_loop()
        owner = self.owner
        while True:
            await asyncio.sleep(owner.health_interval)
            if owner.reading_paused():
                # Not reading (a backlog to deliver first): Redis's silence means nothing.
                self._seen = loop.time()
                continue
            if loop.time() - self._seen > owner.health_timeout:
                raise TimeoutError(f"{self.name} silent for {owner.health_timeout} s")
            await conn.send_command("PING")
