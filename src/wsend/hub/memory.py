"""The in-memory engine: :class:`MemoryBroker` and :class:`MemoryPresence` for one process.

This is the hub's default engine. It implements :class:`~wsend.hub.broker.Broker` and
:class:`~wsend.hub.broker.Presence` with plain dictionaries and passes the engine contract suite
(``tests/hub/contract.py``) like any other engine.

Several brokers may share one :class:`MemoryBackend`: each behaves like a hub node attached to
the same cluster, which lets tests exercise multi-node behaviour without Redis. A broker created
without a backend gets a private one.

Rules shared by every engine, stated here for the in-memory one:

- Offsets increase by exactly one per publication within an epoch. A channel's history stream,
  with its random epoch, is created by its first publication or its first history read, and
  created anew after :meth:`MemoryBroker.remove_history` or once ``meta_ttl`` seconds passed
  since its last publication (or its creation, if it has none).
- History holds at most ``size`` publications (the oldest are dropped) and none older than
  ``ttl`` seconds. A non-positive ``ttl`` or ``meta_ttl`` means no limit of that kind.
- The handler given to :meth:`MemoryBroker.start` is called for each publication of each
  subscribed channel, one call at a time, in offset order, even with concurrent publishers; an
  awaitable it returns is awaited before the next call. Its exceptions are logged and ignored.
- Publications are shared, not copied: handlers and history readers must not mutate them.

Memory stays bounded: a channel costs nothing once it has neither subscribers nor a live
history stream. Expired streams and presence entries are dropped lazily on access, a few at a
time on every operation, and by each broker's periodic cleanup task; no cleanup step scans more
than a bounded number of entries.

The clock is injected (seconds, like :func:`time.time`) so that tests can move time without
sleeping.
"""

from __future__ import annotations

import asyncio
import contextlib
import heapq
import inspect
import itertools
import logging
import math
import secrets
import time
from collections import deque
from collections.abc import Callable, Coroutine, Iterable
from dataclasses import dataclass, field, replace
from typing import Any, Generic, TypeVar

from ..exceptions import UsageError
from .broker import (
    BrokerEventHandler,
    ClientInfo,
    Clock,
    HistoryOptions,
    HistoryResult,
    PresenceStats,
    Publication,
    StreamPosition,
)

__all__ = ["MemoryBackend", "MemoryBroker", "MemoryPresence"]

logger = logging.getLogger(__name__)


#: Expired entries examined at most by the cleanup done on every operation: enough to outpace
#: creation (each operation creates at most one entry) while keeping every call O(log n).
LAZY_CLEANUP = 8

#: Expired entries examined at most by one pass of the periodic cleanup task, which then yields
#: to the event loop before the next pass.
CLEANUP_BATCH = 1000

#: Seconds between two runs of a broker's periodic cleanup task. Centrifuge's memory engine
#: checks expired history every second as well.
CLEANUP_INTERVAL = 1.0

#: Presence entries live this long without refresh (Centrifuge's default presence TTL).
PRESENCE_TTL = 60.0

K = TypeVar("K")
V = TypeVar("V")


def _new_epoch() -> str:
    """A random epoch: 8 hexadecimal characters (32 bits), short on the wire."""
    return secrets.token_hex(4)


def _deadline(now: float, ttl: float) -> float:
    """When something created at ``now`` with a lifetime of ``ttl`` expires (never if ttl <= 0)."""
    return now + ttl if ttl > 0 else math.inf


class _Deadlines(Generic[K, V]):
    """A lazy min-heap of deadlines, for dropping expired entries without scanning them all.

    The owner pushes an entry once and, when it pops due, checks the entry's real deadline:
    it either drops the entry or pushes it again. Entries that no longer exist are skipped;
    :meth:`compact` bounds how many of those the heap may hold.
    """

    def __init__(self) -> None:
        self._heap: list[tuple[float, int, K, V]] = []
        self._seq = itertools.count()

    def __len__(self) -> int:
        return len(self._heap)

    def push(self, deadline: float, key: K, value: V) -> None:
        """Schedule ``(key, value)`` to pop once the clock reaches ``deadline``."""
        heapq.heappush(self._heap, (deadline, next(self._seq), key, value))

    def pop_due(self, now: float) -> tuple[K, V] | None:
        """Remove and return the earliest entry if its deadline is ``<= now``, else ``None``."""
        if not self._heap or self._heap[0][0] > now:
            return None
        _, _, key, value = heapq.heappop(self._heap)
        return key, value

    def compact(self, live: int, entries: Callable[[], Iterable[tuple[float, K, V]]]) -> None:
        """Rebuild from ``entries()`` when stale entries outnumber the ``live`` ones."""
        if len(self._heap) <= 2 * live + 64:
            return
        self._heap = [(d, next(self._seq), k, v) for d, k, v in entries()]
        heapq.heapify(self._heap)


@dataclass(slots=True, eq=False)
class _Stream:
    """A channel's history: publications with contiguous offsets ending at ``top``."""

    epoch: str
    expires: float
    ttl: float = 0.0
    top: int = 0
    scheduled: float = math.inf  # the earliest deadline this stream has in the heap
    publications: deque[Publication] = field(default_factory=deque)

    def prune(self, now: float, ttl: float) -> None:
        """Drop publications older than ``ttl`` seconds (none if ``ttl <= 0``)."""
        if ttl <= 0:
            return
        publications = self.publications
        while publications and publications[0].time + ttl <= now:
            publications.popleft()

    def read(self, since: int | None, limit: int | None, reverse: bool) -> list[Publication]:
        """Publications after offset ``since``, oldest or newest first, at most ``limit``."""
        publications = self.publications
        start = 0
        if since is not None and publications:
            start = max(0, since + 1 - publications[0].offset)
        count = len(publications) - start
        if limit is not None:
            count = min(count, limit)
        if count <= 0:
            return []
        if reverse:
            return list(itertools.islice(reversed(publications), count))
        return list(itertools.islice(publications, start, start + count))


class MemoryBackend:
    """The state that brokers of one process share: history streams and subscriptions.

    Each :class:`MemoryBroker` attached to the same backend plays a hub node of one cluster.

    Args:
        clock: the current time in seconds; publications are stamped with it and every expiry
            is measured with it.
    """

    def __init__(self, clock: Clock = time.time) -> None:
        self.clock = clock
        self._streams: dict[str, _Stream] = {}
        self._subscribers: dict[str, dict[MemoryBroker, None]] = {}
        self._deadlines: _Deadlines[str, _Stream] = _Deadlines()

    @property
    def held_channels(self) -> int:
        """How many channels the backend holds state for (subscribed or with live history)."""
        return len(self._subscribers.keys() | self._streams.keys())

    def subscribe(self, channel: str, broker: MemoryBroker) -> None:
        """Deliver ``channel``'s publications to ``broker`` (idempotent)."""
        self._subscribers.setdefault(channel, {})[broker] = None
        self.cleanup(LAZY_CLEANUP)

    def unsubscribe(self, channel: str, broker: MemoryBroker) -> None:
        """Stop delivering ``channel``'s publications to ``broker`` (idempotent)."""
        brokers = self._subscribers.get(channel)
        if brokers is None:
            return
        brokers.pop(broker, None)
        if not brokers:
            del self._subscribers[channel]

    def unsubscribe_all(self, broker: MemoryBroker, channels: Iterable[str]) -> None:
        """Stop delivering each of ``channels`` to ``broker``."""
        for channel in channels:
            self.unsubscribe(channel, broker)

    def publish(
        self, channel: str, publication: Publication, history: HistoryOptions
    ) -> tuple[Publication, list[MemoryBroker]]:
        """Stamp ``publication``, append it to history and return it with its recipients.

        Does not await: offsets are assigned in the order publications are handed to brokers.
        """
        now = self.clock()
        self.cleanup(LAZY_CLEANUP)
        if history.size > 0:
            stream = self._stream(channel, now, history.meta_ttl)
            stream.top += 1
            stored = replace(publication, offset=stream.top, epoch=stream.epoch, time=now)
            self._append(channel, stream, stored, now, history)
        else:
            stored = replace(publication, offset=0, epoch="", time=now)
        return stored, list(self._subscribers.get(channel, ()))

    def history(
        self,
        channel: str,
        since: StreamPosition | None,
        limit: int | None,
        reverse: bool,
        history: HistoryOptions | None,
    ) -> HistoryResult:
        """Read ``channel``'s history as :meth:`MemoryBroker.history` documents."""
        if limit is not None and limit < 0:
            raise ValueError(f"limit must be >= 0 or None, got {limit}")
        now = self.clock()
        self.cleanup(LAZY_CLEANUP)
        meta_ttl = (history or HistoryOptions()).meta_ttl
        stream = self._stream(channel, now, meta_ttl)
        stream.prune(now, stream.ttl if history is None else history.ttl)
        position = StreamPosition(stream.top, stream.epoch)
        if since is not None and since.epoch != stream.epoch:
            return HistoryResult([], position)
        after = None if since is None else since.offset
        return HistoryResult(stream.read(after, limit, reverse), position)

    def remove_history(self, channel: str) -> None:
        """Forget ``channel``'s history stream; the next one starts a new epoch."""
        self._streams.pop(channel, None)
        self.cleanup(LAZY_CLEANUP)

    def cleanup(self, limit: int = CLEANUP_BATCH) -> int:
        """Drop expired history streams, examining at most ``limit`` of them.

        Returns:
            How many streams were dropped. Fewer than ``limit`` examined means none is left
            expired; callers that want everything gone call again while the result is nonzero.
        """
        now = self.clock()
        dropped = 0
        for _ in range(limit):
            due = self._deadlines.pop_due(now)
            if due is None:
                break
            channel, stream = due
            if self._streams.get(channel) is not stream:
                continue
            if stream.expires <= now:
                del self._streams[channel]
                dropped += 1
            else:
                stream.scheduled = math.inf
                self._schedule(channel, stream)
        self._deadlines.compact(len(self._streams), self._scheduled)
        return dropped

    def _stream(self, channel: str, now: float, meta_ttl: float) -> _Stream:
        """``channel``'s live stream, created (with a new epoch) if missing or expired."""
        stream = self._streams.get(channel)
        if stream is not None and stream.expires > now:
            return stream
        stream = _Stream(epoch=_new_epoch(), expires=_deadline(now, meta_ttl))
        self._streams[channel] = stream
        self._schedule(channel, stream)
        return stream

    def _append(
        self,
        channel: str,
        stream: _Stream,
        publication: Publication,
        now: float,
        history: HistoryOptions,
    ) -> None:
        stream.publications.append(publication)
        while len(stream.publications) > history.size:
            stream.publications.popleft()
        stream.ttl = history.ttl
        stream.prune(now, history.ttl)
        stream.expires = _deadline(now, history.meta_ttl)
        self._schedule(channel, stream)

    def _schedule(self, channel: str, stream: _Stream) -> None:
        """Make sure the heap pops ``stream`` no later than when it expires."""
        if stream.expires < stream.scheduled:
            stream.scheduled = stream.expires
            self._deadlines.push(stream.expires, channel, stream)

    def _scheduled(self) -> Iterable[tuple[float, str, _Stream]]:
        for channel, stream in self._streams.items():
            stream.scheduled = stream.expires
            if stream.expires < math.inf:
                yield stream.expires, channel, stream


class MemoryBroker:
    """A :class:`~wsend.hub.broker.Broker` keeping everything in this process.

    Args:
        clock: the current time in seconds, for the backend this broker creates. Ignored when
            ``backend`` is given: the backend's clock then applies.
        backend: share history and subscriptions with the other brokers attached to it, as
            hub nodes of one cluster share Redis. ``None``: a private backend.
        cleanup_interval: seconds between runs of the cleanup task started by :meth:`start`
            (``<= 0``: no task; expired streams then go only through the lazy cleanup).
    """

    def __init__(
        self,
        clock: Clock = time.time,
        *,
        backend: MemoryBackend | None = None,
        cleanup_interval: float = CLEANUP_INTERVAL,
    ) -> None:
        self.backend = backend if backend is not None else MemoryBackend(clock)
        self.cleanup_interval = cleanup_interval
        self._handler: BrokerEventHandler | None = None
        self._closed = False
        self._channels: set[str] = set()
        self._pending: deque[tuple[str, Publication]] = deque()
        self._draining = False
        self._tasks: set[asyncio.Task[None]] = set()

    @property
    def held_channels(self) -> int:
        """How many channels the backend holds state for (see :class:`MemoryBackend`)."""
        return self.backend.held_channels

    def cleanup(self, limit: int = CLEANUP_BATCH) -> int:
        """Drop up to ``limit`` expired history streams now; returns how many were dropped."""
        return self.backend.cleanup(limit)

    async def start(self, handler: BrokerEventHandler) -> None:
        """Begin delivering publications of subscribed channels to ``handler``.

        Raises:
            UsageError: if the broker was already started or is closed.
        """
        self._check_open()
        if self._handler is not None:
            raise UsageError("broker already started")
        self._handler = handler
        if self.cleanup_interval > 0:
            self._spawn(self._cleanup_loop())

    async def close(self) -> None:
        """Stop delivering, unsubscribe from every channel and stop the cleanup task.

        History stays in the backend, which other brokers may share. Idempotent.
        """
        if self._closed:
            return
        self._closed = True
        self._handler = None
        self._pending.clear()
        self.backend.unsubscribe_all(self, self._channels)
        self._channels.clear()
        for task in list(self._tasks):
            task.cancel()
        for task in list(self._tasks):
            with contextlib.suppress(asyncio.CancelledError):
                await task

    async def subscribe(self, channel: str) -> None:
        """Deliver ``channel``'s publications to this broker's handler (idempotent).

        Raises:
            UsageError: if the broker is closed.
        """
        self._check_open()
        self._channels.add(channel)
        self.backend.subscribe(channel, self)

    async def unsubscribe(self, channel: str) -> None:
        """Stop delivering ``channel``'s publications (idempotent). Pending ones still arrive."""
        self._check_open()
        self._channels.discard(channel)
        self.backend.unsubscribe(channel, self)

    async def publish(
        self, channel: str, publication: Publication, history: HistoryOptions
    ) -> StreamPosition:
        """Deliver a copy of ``publication`` stamped with time, offset and epoch to subscribers.

        With ``history.size > 0`` the copy is appended to the channel's history under the next
        offset, and its position returned; otherwise the position is ``(0, "")``. The caller's
        object is not modified. Returns once the publication is handed to every subscribed
        broker; it is delivered before returning unless a delivery is already in progress (a
        concurrent or nested publish), which then delivers it in order.

        Raises:
            UsageError: if the broker is closed.
        """
        self._check_open()
        stored, brokers = self.backend.publish(channel, publication, history)
        for broker in brokers:
            broker._enqueue(channel, stored)
        for broker in brokers:
            await broker._drain()
        return StreamPosition(stored.offset, stored.epoch)

    async def history(
        self,
        channel: str,
        *,
        since: StreamPosition | None = None,
        limit: int | None = None,
        reverse: bool = False,
        history: HistoryOptions | None = None,
    ) -> HistoryResult:
        """Read ``channel``'s history and its current position.

        A channel without a live stream gets one (offset 0, a new epoch) that its first
        publication continues, so a position read before any publication stays recoverable.

        Args:
            since: only publications after this offset; if its epoch is not the current one,
                no publications (and the current position).
            limit: at most this many publications (``None``: all; ``0``: only the position).
            reverse: newest first. With ``since`` and ``limit``, the newest ``limit``
                publications after ``since``.
            history: the channel's options; its ``ttl`` filters what is returned and its
                ``meta_ttl`` applies to a stream created by this read (default: those of the
                last publication, and :class:`HistoryOptions` defaults).

        Raises:
            ValueError: if ``limit`` is negative.
            UsageError: if the broker is closed.
        """
        self._check_open()
        return self.backend.history(channel, since, limit, reverse, history)

    async def remove_history(self, channel: str) -> None:
        """Forget ``channel``'s history; its next publication or read starts a new epoch.

        Raises:
            UsageError: if the broker is closed.
        """
        self._check_open()
        self.backend.remove_history(channel)

    def _check_open(self) -> None:
        if self._closed:
            raise UsageError("broker is closed")

    def _enqueue(self, channel: str, publication: Publication) -> None:
        if self._handler is not None:
            self._pending.append((channel, publication))

    async def _drain(self) -> None:
        """Call the handler for every pending publication, unless a drain is in progress.

        Exactly one drain runs at a time per broker, so calls are sequential and in order; a
        publish made while draining (concurrently, or from inside the handler) only enqueues.
        """
        if self._draining:
            return
        self._draining = True
        try:
            while self._pending and self._handler is not None:
                channel, publication = self._pending.popleft()
                await self._deliver(self._handler, channel, publication)
        finally:
            self._draining = False
            if self._pending and self._handler is not None:
                # Cancelled mid-delivery: hand the rest over to a task so nothing is stranded.
                self._spawn(self._drain())

    async def _deliver(
        self, handler: BrokerEventHandler, channel: str, publication: Publication
    ) -> None:
        try:
            result = handler(channel, publication)
            if inspect.isawaitable(result):
                await result
        except Exception:
            logger.exception("broker handler failed for channel %r", channel)

    async def _cleanup_loop(self) -> None:
        delay = self.cleanup_interval
        while True:
            await asyncio.sleep(delay)
            # After a pass that dropped something, more may be due: go on once others ran.
            delay = 0 if self.backend.cleanup(CLEANUP_BATCH) else self.cleanup_interval

    def _spawn(self, coro: Coroutine[Any, Any, None]) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)


@dataclass(slots=True, eq=False)
class _Entry:
    info: ClientInfo
    expires: float


class MemoryPresence:
    """A :class:`~wsend.hub.broker.Presence` keeping everything in this process.

    Entries expire ``ttl`` seconds after their last :meth:`add`, as they would in a shared
    store when the node that refreshes them crashes. Hub nodes refresh their clients' entries
    well within ``ttl`` (Centrifuge refreshes every 25 seconds for a 60-second TTL).

    Args:
        clock: the current time in seconds.
        ttl: seconds an entry lives without refresh; must be positive.

    Raises:
        ValueError: if ``ttl`` is not positive.
    """

    def __init__(self, clock: Clock = time.time, ttl: float = PRESENCE_TTL) -> None:
        if not ttl > 0:
            raise ValueError(f"presence ttl must be positive, got {ttl}")
        self.clock = clock
        self.ttl = ttl
        self._channels: dict[str, dict[str, _Entry]] = {}
        self._count = 0
        self._deadlines: _Deadlines[tuple[str, str], _Entry] = _Deadlines()

    @property
    def held_entries(self) -> int:
        """How many entries are stored, expired ones not yet dropped included."""
        return self._count

    async def add(self, channel: str, info: ClientInfo) -> None:
        """Record ``info.client`` as present in ``channel`` with ``info``, for ``ttl`` seconds."""
        now = self.clock()
        self.cleanup(LAZY_CLEANUP)
        entries = self._channels.setdefault(channel, {})
        entry = entries.get(info.client)
        if entry is None:
            entry = entries[info.client] = _Entry(info, now + self.ttl)
            self._count += 1
            self._deadlines.push(entry.expires, (channel, info.client), entry)
        else:
            entry.info = info
            entry.expires = now + self.ttl

    async def remove(self, channel: str, client: str) -> None:
        """Remove ``client`` from ``channel``'s presence (no error if absent)."""
        self.cleanup(LAZY_CLEANUP)
        self._drop(channel, client)

    async def get(self, channel: str) -> dict[str, ClientInfo]:
        """The clients present in ``channel`` (entries not expired), by client id."""
        self.cleanup(LAZY_CLEANUP)
        return {client: entry.info for client, entry in self._live(channel)}

    async def stats(self, channel: str) -> PresenceStats:
        """How many clients and distinct users are present in ``channel``."""
        self.cleanup(LAZY_CLEANUP)
        entries = [entry for _, entry in self._live(channel)]
        return PresenceStats(len(entries), len({entry.info.user for entry in entries}))

    async def close(self) -> None:
        """Forget every entry."""
        self._channels.clear()
        self._count = 0
        self._deadlines = _Deadlines()

    def cleanup(self, limit: int = CLEANUP_BATCH) -> int:
        """Drop expired entries, examining at most ``limit``; returns how many were dropped."""
        now = self.clock()
        dropped = 0
        for _ in range(limit):
            due = self._deadlines.pop_due(now)
            if due is None:
                break
            (channel, client), entry = due
            if self._channels.get(channel, {}).get(client) is not entry:
                continue
            if entry.expires <= now:
                self._drop(channel, client)
                dropped += 1
            else:
                self._deadlines.push(entry.expires, (channel, client), entry)
        self._deadlines.compact(self._count, self._entries)
        return dropped

    def _live(self, channel: str) -> list[tuple[str, _Entry]]:
        """``channel``'s entries, dropping those expired."""
        entries = self._channels.get(channel)
        if entries is None:
            return []
        now = self.clock()
        for client in [c for c, e in entries.items() if e.expires <= now]:
            self._drop(channel, client)
        return list(entries.items())

    def _drop(self, channel: str, client: str) -> None:
        entries = self._channels.get(channel)
        if entries is None or entries.pop(client, None) is None:
            return
        self._count -= 1
        if not entries:
            del self._channels[channel]

    def _entries(self) -> Iterable[tuple[float, tuple[str, str], _Entry]]:
        for channel, entries in self._channels.items():
            for client, entry in entries.items():
                yield entry.expires, (channel, client), entry
