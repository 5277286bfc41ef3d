"""The Python client of the hub (``docs/protocol.md``): commands, subscriptions, recovery.

.. code-block:: python

    client = HubClient("ws://127.0.0.1:8765/ws", token=token, get_token=fetch_token)
    await client.connect()
    sub = client.subscribe("chat:lobby")
    await sub.ready()
    await client.publish("chat:lobby", {"text": "hi"})
    async for pub in sub:
        print(pub.offset, pub.data)

Contract:

- Commands carry ids counting up from 1 per client; replies are matched by id, in any order.
  Each command waits at most ``timeout`` seconds (:class:`CommandTimeout`); an error reply
  raises :class:`~wsend.hub.codes.HubError`; a connection lost with the command in flight raises
  :class:`HubDisconnected` (the command may or may not have run: retry only if idempotent).
  Commands issued while the client is (re)connecting wait for the connection within ``timeout``.
- Reconnection: when the hub closes with a code that :func:`~wsend.hub.codes.should_reconnect`
  accepts, or the TCP connection drops, the client reconnects after a delay drawn uniformly in
  ``[backoff_min, min(backoff_max, backoff_min * 2**attempt)]`` ("full jitter" above a floor;
  the AWS architecture blog's recommendation, as in centrifuge-js). 4007 (too many requests)
  waits ``backoff_max``. Terminal codes (4500-4999, 1000, 1009) and connect errors that aren't
  temporary move the client to ``"closed"`` for good.
- Credentials: with ``expires`` and ``ttl`` in the connect result, the client calls
  ``get_token()`` and sends ``refresh`` 20% of the ttl before expiry (at most 30 s before). On
  close code 4004 or connect error 109 it calls ``get_token()`` before connecting again.
- Subscriptions survive reconnection: each is subscribed again, with ``recover`` from the last
  publication seen on recoverable channels. Recovered publications are delivered in order before
  live ones; offsets at or below the last one seen are dropped as duplicates. When the hub can't
  recover, :attr:`Subscription.recovered` is ``False`` and ``on_unrecovered`` is called: reload
  state, delivery continues from the new position. A live publication whose offset skips ahead
  (a gap) is not delivered: the subscription unsubscribes and subscribes again with recovery,
  so nothing is silently skipped (pass ``fill_gaps=False`` on conflated channels, whose offsets
  skip by design).
- Everything is bounded: each subscription buffers at most ``max_queue`` publications for its
  consumer (``async for`` or the ``on_publication`` callback). When full, the **oldest** is
  dropped and counted in :attr:`Subscription.dropped` (fresh state matters more than stale; a
  consumer that can't keep up must not stall replies or other channels).
- Callbacks may be plain functions or coroutine functions. Plain ones run in order inside the
  reader; coroutines are started as tasks, except ``on_publication``, which a per-subscription
  task awaits publication by publication (so they stay in order). Exceptions in callbacks are
  logged and reported to ``on_error``; they never break the connection.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import inspect
import logging
import random
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Final, Literal, TypeVar

import msgspec

from .. import __version__
from ..asyncio.client import connect as ws_connect
from ..asyncio.connection import Connection
from ..exceptions import ConnectionClosed, UsageError, WebSocketError
from . import wire
from .codes import DisconnectCode, ErrorCode, HubError, should_reconnect

__all__ = [
    "CommandTimeout",
    "History",
    "HubClient",
    "HubDisconnected",
    "Publication",
    "Subscription",
]

logger = logging.getLogger("wsend.hub.client")

T = TypeVar("T")
State = Literal["disconnected", "connecting", "connected", "closed"]
SubState = Literal["unsubscribed", "subscribing", "subscribed"]
Callback = Callable[..., Any]
TokenGetter = Callable[[], Awaitable[str]]
ChannelTokenGetter = Callable[[str], Awaitable[str]]

#: Seconds a command waits for its reply (centrifuge-js and centrifuge-python use 10 s too).
DEFAULT_TIMEOUT: Final = 10.0
#: Publications buffered per subscription for a slow consumer (a few seconds of a busy chat).
DEFAULT_MAX_QUEUE: Final = 1024
#: Unsubscribe push codes from this one up mean "subscribe again with recovery" (as centrifuge).
RESUBSCRIBE_FROM: Final = 2500
_NO_DATA: Final = msgspec.Raw()


class HubDisconnected(WebSocketError):
    """The client is not connected: the connection dropped, or the client is closed.

    Attributes:
        code: the close code (1006 when the TCP connection dropped or never opened).
        reason: the close reason.
        reconnect: whether the client is reconnecting (``False``: it is closed for good).
    """

    def __init__(self, code: int, reason: str = "", reconnect: bool = False) -> None:
        self.code = code
        self.reason = reason
        self.reconnect = reconnect
        super().__init__(f"disconnected ({code} {reason})".replace(" )", ")"))


class CommandTimeout(WebSocketError, TimeoutError):
    """A command got no reply within its timeout (the connection is kept)."""

    def __init__(self, method: str, timeout: float) -> None:
        self.method = method
        self.timeout = timeout
        super().__init__(f"no reply to {method!r} within {timeout:g} s")


@dataclass(frozen=True, slots=True)
class Publication:
    """A publication delivered to a subscription.

    Attributes:
        channel: the channel.
        data: the payload, decoded (``bytes`` stay ``bytes`` in MessagePack).
        offset: its position in a recoverable channel, else ``None``.
        key: its conflation key, if any.
        info: the publishing client (``client``, ``user``, ``info``), ``None`` for the server.
    """

    channel: str
    data: Any
    offset: int | None = None
    key: str | None = None
    info: wire.InfoFrame | None = None


@dataclass(frozen=True, slots=True)
class History:
    """The answer to :meth:`HubClient.history`: publications and the channel's position."""

    publications: list[Publication]
    epoch: str
    offset: int


def _publication(channel: str, frame: wire.PublicationFrame | wire.PubPush) -> Publication:
    return Publication(channel, frame.data, frame.offset, frame.key, frame.info)


def _decoder(codec: wire.Codec) -> msgspec.json.Decoder[Any] | msgspec.msgpack.Decoder[Any]:
    return msgspec.msgpack.Decoder() if codec.binary else msgspec.json.Decoder()


_Push = wire.PubPush | wire.JoinPush | wire.LeavePush | wire.UnsubscribePush | wire.MessagePush


@dataclass(slots=True)
class _Pending:
    method: str
    future: asyncio.Future[Any]
    hook: Callable[[Any], None] | None


@dataclass(slots=True)
class _Drop:
    """How one connection attempt ended."""

    code: int
    reason: str
    reconnect: bool
    connected: bool = False
    error: Exception | None = None


class Subscription:
    """A subscription to one channel, made by :meth:`HubClient.subscribe`.

    Iterate it (``async for pub in sub``) to receive :class:`Publication` objects, unless an
    ``on_publication`` callback consumes them; iteration ends when the subscription ends.

    Attributes:
        channel: the channel.
        state: ``"subscribing"``, ``"subscribed"`` or ``"unsubscribed"`` (final).
        recoverable: whether the channel keeps history (offsets are meaningful).
        epoch: the channel's epoch, on recoverable channels.
        offset: the offset of the last publication received (the subscribe position before).
        recovered: after a subscribe with recovery, whether every missed publication came;
            ``None`` before any recovery.
        dropped: publications dropped because the consumer fell ``max_queue`` behind.
        error: why the subscription ended, if the hub refused or removed it.
    """

    def __init__(self, client: HubClient, channel: str, **options: Any) -> None:
        self.channel = channel
        self.state: SubState = "subscribing"
        self.recoverable = False
        self.epoch: str | None = None
        self.offset: int | None = None
        self.recovered: bool | None = None
        self.dropped = 0
        self.error: Exception | None = None
        self.token: str | None = options["token"]
        self.get_token: ChannelTokenGetter | None = options["get_token"]
        self.recover: bool = options["recover"]
        self.fill_gaps: bool = options["fill_gaps"]
        self.data: Any = options["data"]
        self.on_publication: Callback | None = options["on_publication"]
        self.on_join: Callback | None = options["on_join"]
        self.on_leave: Callback | None = options["on_leave"]
        self.on_subscribed: Callback | None = options["on_subscribed"]
        self.on_unsubscribed: Callback | None = options["on_unsubscribed"]
        self.on_unrecovered: Callback | None = options["on_unrecovered"]
        self._client = client
        self._max_queue: int = options["max_queue"]
        self._queue: collections.deque[Publication] = collections.deque()
        self._wakeup = asyncio.Event()
        self._ready: asyncio.Future[None] = _quiet_future()
        self._task: asyncio.Task[None] | None = None
        self._consumer: asyncio.Task[None] | None = None
        if self.on_publication is not None:
            self._consumer = asyncio.ensure_future(self._consume(self.on_publication))

    async def ready(self, timeout: float | None = None) -> None:
        """Wait until subscribed.

        Raises:
            HubError: the hub refused the subscription (not temporarily).
            HubDisconnected: the client closed for good first.
            UsageError: the subscription was unsubscribed first.
            TimeoutError: ``timeout`` seconds passed.
        """
        async with asyncio.timeout(timeout):
            await asyncio.shield(self._ready)

    async def unsubscribe(self) -> None:
        """Unsubscribe (final): ends iteration and tells the hub if connected. Idempotent."""
        await self._client._unsubscribe(self)

    def __aiter__(self) -> Subscription:
        return self

    async def __anext__(self) -> Publication:
        while not self._queue:
            if self.state == "unsubscribed":
                raise StopAsyncIteration
            self._wakeup.clear()
            await self._wakeup.wait()
        return self._queue.popleft()

    def __repr__(self) -> str:
        return f"<Subscription {self.channel!r} {self.state} offset={self.offset}>"

    # -- driven by the client ----------------------------------------------------------------

    def _recovery(self) -> tuple[str, int] | None:
        """The position to recover from, if recovery applies."""
        if self.recover and self.recoverable and self.epoch is not None:
            return self.epoch, self.offset or 0
        return None

    def _resubscribing(self) -> None:
        if self.state == "unsubscribed":
            return
        self.state = "subscribing"
        if self._ready.done():
            self._ready = _quiet_future()

    def _subscribed(self, result: wire.SubscribeResult, recovering: bool) -> None:
        """Apply a subscribe result (synchronously, before any push that follows it)."""
        self.recoverable = result.recoverable
        if recovering and result.recovered:
            self.recovered = True
            for frame in result.publications or ():
                self._accept(_publication(self.channel, frame))
        else:
            if recovering:
                self.recovered = False
            self.offset = result.offset if result.recoverable else None
        self.epoch = result.epoch
        self.state = "subscribed"
        if not self._ready.done():
            self._ready.set_result(None)
        if recovering and not result.recovered:
            self._client._invoke(self.on_unrecovered, self)
        self._client._invoke(self.on_subscribed, self)

    def _accept(self, pub: Publication) -> bool:
        """Deliver a publication unless it's a duplicate; ``False`` on a gap (not delivered)."""
        last = self.offset
        if self.recoverable and pub.offset is not None and last is not None:
            if pub.offset <= last:
                return True
            if pub.offset > last + 1 and self.fill_gaps:
                return False
        if pub.offset is not None:
            self.offset = pub.offset
        self._feed(pub)
        return True

    def _feed(self, pub: Publication) -> None:
        if len(self._queue) >= self._max_queue:
            self._queue.popleft()
            self.dropped += 1
            if self.dropped == 1 or self.dropped % 1000 == 0:
                logger.warning("%s: slow consumer, %d publications dropped", self, self.dropped)
        self._queue.append(pub)
        self._wakeup.set()

    def _end(self, error: Exception | None, code: int = 0, reason: str = "") -> None:
        if self.state == "unsubscribed":
            return
        self.state = "unsubscribed"
        self.error = error
        if self._task is not None and self._task is not asyncio.current_task():
            self._task.cancel()
        if not self._ready.done():
            self._ready.set_exception(error or UsageError("unsubscribed"))
        self._wakeup.set()
        self._client._invoke(self.on_unsubscribed, self, code, reason)

    async def _consume(self, callback: Callback) -> None:
        async for pub in self:
            try:
                result = callback(pub)
                if inspect.isawaitable(result):
                    await result
            except Exception as exc:
                self._client._callback_failed(exc)


def _quiet_future() -> asyncio.Future[None]:
    """A future whose exception needn't be retrieved (nobody may be waiting on ready())."""
    future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
    future.add_done_callback(lambda f: f.cancelled() or f.exception())
    return future


class HubClient:
    """A client of the hub with automatic reconnection, recovery and token refresh.

    Args:
        url: the hub's endpoint, ``ws[s]://HOST:PORT/ws``.
        token: the connection JWT (``None``: anonymous, or ask ``get_token``).
        get_token: ``async () -> str`` returning a fresh connection token; used before the
            first connect without ``token``, to refresh before expiry, and after 4004 / 109.
        encoding: ``"json"`` (``wsend.v1.json``, text frames) or ``"msgpack"`` (binary).
        name, version: the client library, sent in ``connect``.
        data: passed to the hub application's connect callback.
        reconnect: reconnect after reconnectable closes (``False``: one connection only).
        backoff_min, backoff_max: reconnect delays in seconds (see the module docstring;
            0.2 / 10 s are close to centrifuge-js's 0.5 / 20 s, a bit eager for interactive use).
        timeout: seconds each command waits for its reply.
        max_queue: default per-subscription buffer (see :class:`Subscription`).
        on_connected: ``f(result: wire.ConnectResult)`` after each successful connect.
        on_disconnected: ``f(code, reason, reconnect)`` after each lost connection.
        on_error: ``f(exc)`` for errors with no caller to raise to (failed connection attempts,
            refresh failures, bad frames from the hub, failing callbacks).
        on_message: ``f(data)`` for ``message`` pushes.
        ws_options: extra keyword arguments for :func:`wsend.connect` (``ssl``, ``headers``...).
    """

    def __init__(
        self,
        url: str,
        *,
        token: str | None = None,
        get_token: TokenGetter | None = None,
        encoding: Literal["json", "msgpack"] = "json",
        name: str = "wsend.py",
        version: str = __version__,
        data: Any = None,
        reconnect: bool = True,
        backoff_min: float = 0.2,
        backoff_max: float = 10.0,
        timeout: float = DEFAULT_TIMEOUT,
        max_queue: int = DEFAULT_MAX_QUEUE,
        on_connected: Callback | None = None,
        on_disconnected: Callback | None = None,
        on_error: Callback | None = None,
        on_message: Callback | None = None,
        ws_options: dict[str, Any] | None = None,
    ) -> None:
        if encoding not in ("json", "msgpack"):
            raise ValueError(f"unsupported encoding: {encoding!r}")
        if not 0 < backoff_min <= backoff_max:
            raise ValueError("need 0 < backoff_min <= backoff_max")
        self.url = url
        self.codec: wire.Codec = wire.JSON if encoding == "json" else wire.MSGPACK
        self.token = token
        self.get_token = get_token
        self.name, self.version, self.data = name, version, data
        self.reconnect = reconnect
        self.backoff_min, self.backoff_max = backoff_min, backoff_max
        self.timeout = timeout
        self.max_queue = max_queue
        self.on_connected, self.on_disconnected = on_connected, on_disconnected
        self.on_error, self.on_message = on_error, on_message
        self.ws_options = dict(ws_options or {})
        #: The last successful connect result (client id, user, ttl, node...).
        self.info: wire.ConnectResult | None = None
        self._state: State = "disconnected"
        self._changed = asyncio.Event()
        self._final: Exception | None = None
        self._token_stale = token is None and get_token is not None
        self._decoder = _decoder(self.codec)
        self._subs: dict[str, Subscription] = {}
        self._pending: dict[int, _Pending] = {}
        self._next_id = 0
        self._ws: Connection | None = None
        self._outbox: list[bytes] = []
        self._outbox_ready = asyncio.Event()
        self._runner: asyncio.Task[None] | None = None
        self._tasks: set[asyncio.Task[Any]] = set()

    # -- lifecycle ----------------------------------------------------------------------------

    @property
    def state(self) -> State:
        """``"disconnected"``, ``"connecting"``, ``"connected"`` or ``"closed"`` (final)."""
        return self._state

    @property
    def subscriptions(self) -> dict[str, Subscription]:
        """Active subscriptions by channel (a copy)."""
        return dict(self._subs)

    async def connect(self) -> wire.ConnectResult:
        """Start the client and wait until connected; it then stays connected until closed.

        Transient failures are retried with backoff (wrap in ``asyncio.timeout`` to bound the
        wait). Calling it again while connected returns at once.

        Raises:
            HubError: the hub refused ``connect`` for good (e.g. 101 unauthorized).
            HubDisconnected: the hub closed with a terminal code (e.g. 4501), or the client
                was closed, or ``reconnect`` is off and the first attempt failed.
        """
        if self._runner is None and self._state != "closed":
            self._runner = asyncio.create_task(self._run())
        await self._wait_connected()
        assert self.info is not None
        return self.info

    async def close(self) -> None:
        """Close the connection (1000) and stop reconnecting; final and idempotent.

        Pending commands fail with :class:`HubDisconnected`; subscriptions end.
        """
        runner, self._runner = self._runner, None
        if runner is not None:
            runner.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await runner
        self._finish(HubDisconnected(1000, "client closed"))
        tasks = [task for task in self._tasks if task is not asyncio.current_task()]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    async def __aenter__(self) -> HubClient:
        await self.connect()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    # -- commands -----------------------------------------------------------------------------

    def subscribe(
        self,
        channel: str,
        *,
        on_publication: Callback | None = None,
        on_join: Callback | None = None,
        on_leave: Callback | None = None,
        on_subscribed: Callback | None = None,
        on_unsubscribed: Callback | None = None,
        on_unrecovered: Callback | None = None,
        recover: bool = True,
        fill_gaps: bool = True,
        token: str | None = None,
        get_token: ChannelTokenGetter | None = None,
        data: Any = None,
        max_queue: int | None = None,
    ) -> Subscription:
        """Subscribe to ``channel``, now if connected or as soon as the client connects.

        Args:
            on_publication: ``f(pub)`` for each :class:`Publication` (then don't iterate).
            on_join, on_leave: ``f(info: wire.InfoFrame)`` for join/leave pushes.
            on_subscribed: ``f(sub)`` after each successful (re)subscribe.
            on_unsubscribed: ``f(sub, code, reason)`` when the subscription ends.
            on_unrecovered: ``f(sub)`` when recovery failed: reload the channel's state.
            recover: subscribe again with recovery after reconnects and gaps.
            fill_gaps: treat skipped offsets as gaps to recover (off for conflated channels).
            token: a channel token; get_token: ``async (channel) -> str`` to fetch one (also
                after error 109).
            data: passed to the hub application's subscribe callback.
            max_queue: publications buffered for the consumer (default: the client's).

        Raises:
            UsageError: already subscribed to ``channel``, or the client is closed.
        """
        if self._state == "closed":
            raise UsageError("the client is closed")
        if channel in self._subs:
            raise UsageError(f"already subscribed to {channel!r}")
        sub = Subscription(
            self, channel, on_publication=on_publication, on_join=on_join, on_leave=on_leave,
            on_subscribed=on_subscribed, on_unsubscribed=on_unsubscribed,
            on_unrecovered=on_unrecovered, recover=recover, fill_gaps=fill_gaps, token=token,
            get_token=get_token, data=data, max_queue=max_queue or self.max_queue,
        )  # fmt: skip
        self._subs[channel] = sub
        if self._state == "connected":
            self._start_subscribe(sub, resubscribe=False)
        return sub

    async def publish(
        self, channel: str, data: Any, *, key: str | None = None, timeout: float | None = None
    ) -> wire.PublishResult:
        """Publish ``data`` to ``channel``; returns its ``offset`` and ``epoch`` (if recoverable).

        Raises:
            HubError, HubDisconnected, CommandTimeout: see the module docstring.
        """
        raw = msgspec.Raw(self.codec.encode_one(data))
        return await self._request(
            "publish",
            lambda i: wire.PublishCommand(id=i, channel=channel, data=raw, key=key),
            wire.PublishResult,
            timeout=timeout,
        )

    async def presence(
        self, channel: str, *, timeout: float | None = None
    ) -> dict[str, wire.PresenceEntry]:
        """The clients subscribed to ``channel``: ``{client_id: entry(user, info)}``."""
        result = await self._request(
            "presence",
            lambda i: wire.PresenceCommand(id=i, channel=channel),
            wire.PresenceResult,
            timeout=timeout,
        )
        return result.clients

    async def presence_stats(
        self, channel: str, *, timeout: float | None = None
    ) -> wire.PresenceStatsResult:
        """How many clients and distinct users are subscribed to ``channel``."""
        return await self._request(
            "presence_stats",
            lambda i: wire.PresenceStatsCommand(id=i, channel=channel),
            wire.PresenceStatsResult,
            timeout=timeout,
        )

    async def history(
        self,
        channel: str,
        *,
        limit: int | None = None,
        since: tuple[int, str] | None = None,
        reverse: bool | None = None,
        timeout: float | None = None,
    ) -> History:
        """Publications kept for ``channel``.

        Args:
            limit: at most this many (hub default 100; 0: only the current position).
            since: ``(offset, epoch)``: only publications after this offset (error 112 when
                the epoch is no longer current).
            reverse: newest first.
        """
        after = wire.Since(offset=since[0], epoch=since[1]) if since is not None else None
        result = await self._request(
            "history",
            lambda i: wire.HistoryCommand(
                id=i, channel=channel, limit=limit, since=after, reverse=reverse
            ),
            wire.HistoryResult,
            timeout=timeout,
        )
        pubs = [_publication(channel, frame) for frame in result.publications]
        return History(pubs, result.epoch, result.offset)

    async def rpc(self, method: str, data: Any = None, *, timeout: float | None = None) -> Any:
        """Call the hub application's RPC handler ``method``; returns its ``data``."""
        raw = msgspec.Raw(self.codec.encode_one(data)) if data is not None else _NO_DATA
        result = await self._request(
            "rpc",
            lambda i: wire.RpcCommand(id=i, name=method, data=raw),
            wire.RpcResult,
            timeout=timeout,
        )
        return result.data

    async def ping(self, *, timeout: float | None = None) -> float:
        """Send the ``ping`` command; returns the round-trip time in seconds."""
        loop = asyncio.get_running_loop()
        start = loop.time()
        await self._request("ping", lambda i: wire.PingCommand(id=i), dict, timeout=timeout)
        return loop.time() - start

    # -- requests -----------------------------------------------------------------------------

    async def _request(
        self,
        method: str,
        build: Callable[[int], Any],
        result_type: type[T],
        *,
        timeout: float | None = None,
        wait: bool = True,
        hook: Callable[[T], None] | None = None,
    ) -> T:
        """Send a command and wait for its reply, converted to ``result_type``.

        With ``wait``, first wait for the client to be connected; without, require it (or, for
        ``connect``, an open WebSocket). ``hook`` runs synchronously in the reader with the
        converted result, before any frame that follows the reply is processed.
        """
        timeout = self.timeout if timeout is None else timeout
        try:
            async with asyncio.timeout(timeout):
                if wait:
                    await self._wait_connected()
                elif self._state != "connected" and not (method == "connect" and self._ws):
                    raise HubDisconnected(1006, "not connected", self._state != "closed")
                result = await self._send_command(method, build, result_type, hook)
        except TimeoutError as exc:
            if isinstance(exc, CommandTimeout | HubDisconnected):
                raise
            raise CommandTimeout(method, timeout) from None
        return result

    async def _send_command(
        self,
        method: str,
        build: Callable[[int], Any],
        result_type: type[T],
        hook: Callable[[T], None] | None,
    ) -> T:
        self._next_id += 1
        command_id = self._next_id
        future: asyncio.Future[T] = asyncio.get_running_loop().create_future()

        def convert(result: Any) -> None:
            try:
                value = msgspec.convert({} if result is None else result, result_type)
            except msgspec.ValidationError as exc:
                future.set_exception(HubError(ErrorCode.INTERNAL, f"malformed {method} result"))
                self._report(exc)
                return
            if hook is not None:
                hook(value)
            future.set_result(value)

        self._pending[command_id] = _Pending(method, future, convert)
        self._outbox.append(self.codec.encode_one(build(command_id)))
        self._outbox_ready.set()
        try:
            return await future
        finally:
            self._pending.pop(command_id, None)

    async def _wait_connected(self) -> None:
        while self._state != "connected":
            if self._state == "closed":
                raise self._final or HubDisconnected(1000, "client closed")
            await self._changed.wait()

    def _set_state(self, state: State) -> None:
        self._state = state
        self._changed.set()
        self._changed = asyncio.Event()

    # -- the connection loop ------------------------------------------------------------------

    async def _run(self) -> None:
        attempt = 0
        while True:
            drop = await self._session()
            if drop.connected:
                attempt = 0
            again = self.reconnect and drop.reconnect
            self._dropped(drop, again)
            if not again:
                self._finish(drop.error or HubDisconnected(drop.code, drop.reason))
                self._runner = None
                return
            delay = self._backoff(attempt, drop.code)
            attempt += 1
            await asyncio.sleep(delay)

    def _backoff(self, attempt: int, code: int = 0) -> float:
        """A reconnect (or retry) delay: full jitter between the floor and an exponential cap."""
        if code == DisconnectCode.TOO_MANY_REQUESTS:
            return self.backoff_max
        cap = min(self.backoff_max, self.backoff_min * 2 ** min(attempt, 32))
        return random.uniform(self.backoff_min, cap)

    async def _session(self) -> _Drop:
        """Run one connection from opening to close; never raises except on cancellation."""
        self._set_state("connecting")
        if self._token_stale and self.get_token is not None:
            try:
                self.token = await self.get_token()
                self._token_stale = False
            except Exception as exc:
                self._report(exc)
                return _Drop(1006, "get_token failed", True, error=exc)
        try:
            ws = await ws_connect(self.url, subprotocols=[self.codec.subprotocol], **self.ws_options)
        except (OSError, WebSocketError, TimeoutError) as exc:
            self._report(exc)
            return _Drop(1006, f"connection failed: {exc}", True, error=exc)
        self._ws, self._outbox = ws, []
        writer = asyncio.create_task(self._write(ws))
        reader = asyncio.create_task(self._read(ws))
        refresh: asyncio.Task[None] | None = None
        try:
            drop = await self._handshake(reader)
            if drop is not None:
                return drop
            if self.info is not None and self.info.expires and self.info.ttl is not None:
                refresh = asyncio.create_task(self._refresh(self.info.ttl))
            return await reader
        finally:
            self._ws = None
            for task in (writer, reader, refresh):
                if task is not None:
                    task.cancel()
            await ws.close()

    async def _handshake(self, reader: asyncio.Task[_Drop]) -> _Drop | None:
        """Send ``connect``; ``None`` once connected, else how the attempt ended."""
        raw = msgspec.Raw(self.codec.encode_one(self.data)) if self.data is not None else _NO_DATA
        command = asyncio.ensure_future(
            self._request(
                "connect",
                lambda i: wire.ConnectCommand(
                    id=i, token=self.token, name=self.name, version=self.version, data=raw
                ),
                wire.ConnectResult,
                wait=False,
            )
        )
        await asyncio.wait([command, reader], return_when=asyncio.FIRST_COMPLETED)
        if not command.done():
            command.cancel()
            return reader.result()
        try:
            self.info = command.result()
        except HubError as exc:
            expired = exc.code == ErrorCode.TOKEN_EXPIRED and self.get_token is not None
            self._token_stale = expired
            return _Drop(4501, exc.message, exc.temporary or expired, error=exc)
        except (CommandTimeout, HubDisconnected) as exc:
            return _Drop(1006, str(exc), True, error=exc)
        self._set_state("connected")
        for sub in list(self._subs.values()):
            self._start_subscribe(sub, resubscribe=True)
        self._invoke(self.on_connected, self.info)
        return None

    async def _write(self, ws: Connection) -> None:
        """Send queued commands, several per message (a batch) when they pile up."""
        with contextlib.suppress(ConnectionClosed):
            while True:
                await self._outbox_ready.wait()
                self._outbox_ready.clear()
                while self._outbox:
                    batch = self._outbox[: wire.MAX_BATCH]
                    del self._outbox[: wire.MAX_BATCH]
                    await ws.send(self.codec.join(batch))

    async def _read(self, ws: Connection) -> _Drop:
        """Dispatch the hub's messages until the connection closes; returns how it closed."""
        connected = False
        try:
            while True:
                message = await ws.recv()
                connected = connected or self._state == "connected"
                self._dispatch(message)
        except ConnectionClosed as exc:
            code = exc.rcvd.code if exc.rcvd is not None else 1006
            reason = exc.rcvd.reason if exc.rcvd is not None else "connection lost"
        connected = connected or self._state == "connected"
        if code == DisconnectCode.TOKEN_EXPIRED:
            self._token_stale = True
        return _Drop(code, reason, should_reconnect(code), connected)

    def _dispatch(self, message: str | bytes) -> None:
        try:
            decoded = self._decoder.decode(message)
        except (msgspec.DecodeError, RecursionError) as exc:
            self._report(exc)
            return
        for element in decoded if isinstance(decoded, list) else [decoded]:
            try:
                if isinstance(element, dict) and "push" in element:
                    self._on_push(msgspec.convert(element, _Push))
                else:
                    self._on_reply(msgspec.convert(element, wire.Reply))
            except msgspec.ValidationError as exc:
                # Unknown push types and fields are ignored (forward compatibility).
                logger.debug("ignored frame from the hub: %s", exc)

    def _on_reply(self, reply: wire.Reply) -> None:
        pending = self._pending.pop(reply.id, None)
        if pending is None or pending.future.done():
            return
        if reply.error is not None:
            error = reply.error
            pending.future.set_exception(HubError(error.code, error.message, error.temporary))
        elif pending.hook is not None:
            pending.hook(reply.result)

    def _on_push(self, push: _Push) -> None:
        if isinstance(push, wire.MessagePush):
            self._invoke(self.on_message, push.data)
            return
        sub = self._subs.get(push.channel)
        if sub is None or sub.state != "subscribed":
            return
        if isinstance(push, wire.PubPush):
            if not sub._accept(_publication(push.channel, push)):
                self._start_subscribe(sub, resubscribe=True, unsubscribe_first=True)
        elif isinstance(push, wire.JoinPush):
            self._invoke(sub.on_join, push.info)
        elif isinstance(push, wire.LeavePush):
            self._invoke(sub.on_leave, push.info)
        elif push.code >= RESUBSCRIBE_FROM:
            self._start_subscribe(sub, resubscribe=True)
        else:
            del self._subs[sub.channel]
            sub._end(None, push.code, push.reason)

    def _dropped(self, drop: _Drop, reconnecting: bool) -> None:
        """After a connection ended: fail commands in flight, mark subscriptions, notify."""
        error = HubDisconnected(drop.code, drop.reason, reconnecting)
        for pending in list(self._pending.values()):
            if not pending.future.done():
                pending.future.set_exception(error)
        self._pending.clear()
        for sub in self._subs.values():
            if sub._task is not None:
                sub._task.cancel()
            sub._resubscribing()
        if reconnecting:
            self._set_state("disconnected")
        if drop.connected or not reconnecting:
            self._invoke(self.on_disconnected, drop.code, drop.reason, reconnecting)

    def _finish(self, error: Exception) -> None:
        """Enter ``"closed"`` for good: end subscriptions and wake waiters with ``error``."""
        if self._state == "closed":
            return
        self._final = error
        for pending in list(self._pending.values()):
            if not pending.future.done():
                pending.future.set_exception(HubDisconnected(1000, "client closed"))
        self._pending.clear()
        subs, self._subs = list(self._subs.values()), {}
        for sub in subs:
            sub._end(error)
        self._set_state("closed")

    # -- subscriptions ------------------------------------------------------------------------

    def _start_subscribe(
        self, sub: Subscription, *, resubscribe: bool, unsubscribe_first: bool = False
    ) -> None:
        if resubscribe:
            sub._resubscribing()
        if sub._task is not None:
            sub._task.cancel()
        sub._task = self._spawn(self._subscribe_flow(sub, unsubscribe_first))

    async def _subscribe_flow(self, sub: Subscription, unsubscribe_first: bool) -> None:
        """Subscribe until it works, is refused, or the connection drops (then it restarts)."""
        try:
            if unsubscribe_first:
                with contextlib.suppress(HubError, CommandTimeout):
                    await self._unsubscribe_command(sub.channel)
            attempt = 0
            while sub.state != "unsubscribed":
                error = await self._subscribe_once(sub)
                if error is None:
                    return
                if not error.temporary:
                    if self._subs.get(sub.channel) is sub:
                        del self._subs[sub.channel]
                    sub._end(error)
                    return
                await asyncio.sleep(self._backoff(attempt))
                attempt += 1
        except HubDisconnected:
            return  # the next connection subscribes again

    async def _subscribe_once(self, sub: Subscription) -> HubError | None:
        """One subscribe command: ``None`` on success, else the error (temporary or not)."""
        if sub.token is None and sub.get_token is not None:
            try:
                sub.token = await sub.get_token(sub.channel)
            except Exception as exc:
                self._report(exc)
                return HubError(ErrorCode.UNAUTHORIZED, "get_token failed", temporary=True)
        position = sub._recovery()
        raw = msgspec.Raw(self.codec.encode_one(sub.data)) if sub.data is not None else _NO_DATA
        try:
            await self._request(
                "subscribe",
                lambda i: wire.SubscribeCommand(
                    id=i, channel=sub.channel, token=sub.token,
                    recover=True if position else None,
                    epoch=position[0] if position else None,
                    offset=position[1] if position else None, data=raw,
                ),
                wire.SubscribeResult,
                wait=False,
                hook=lambda result: sub._subscribed(result, position is not None),
            )  # fmt: skip
        except CommandTimeout:
            return HubError(ErrorCode.INTERNAL, "subscribe timed out", temporary=True)
        except HubError as exc:
            if exc.code == ErrorCode.TOKEN_EXPIRED and sub.get_token is not None:
                sub.token = None
                return HubError(exc.code, exc.message, temporary=True)
            return exc
        return None

    async def _unsubscribe_command(self, channel: str) -> None:
        await self._request(
            "unsubscribe",
            lambda i: wire.UnsubscribeCommand(id=i, channel=channel),
            dict,
            wait=False,
        )

    async def _unsubscribe(self, sub: Subscription) -> None:
        if self._subs.get(sub.channel) is sub:
            del self._subs[sub.channel]
        if sub.state == "unsubscribed":
            return
        sub._end(None)
        if self._state == "connected":
            with contextlib.suppress(HubError, HubDisconnected, CommandTimeout):
                await self._unsubscribe_command(sub.channel)

    # -- credentials --------------------------------------------------------------------------

    async def _refresh(self, ttl: int) -> None:
        """Refresh the connection token before it expires, for as long as it keeps expiring."""
        attempt = 0
        delay = _refresh_delay(ttl)
        while self.get_token is not None:
            await asyncio.sleep(delay)
            try:
                token = await self.get_token()
                result = await self._request(
                    "refresh", lambda i: wire.RefreshCommand(id=i, token=token), wire.RefreshResult
                )
            except HubDisconnected:
                return
            except Exception as exc:
                self._report(exc)
                if isinstance(exc, HubError) and not exc.temporary:
                    return  # the hub will close with 4004; get_token runs before reconnecting
                delay = self._backoff(attempt)
                attempt += 1
                continue
            self.token, attempt = token, 0
            if not result.expires or result.ttl is None:
                return
            delay = _refresh_delay(result.ttl)

    # -- callbacks ----------------------------------------------------------------------------

    def _spawn(self, coro: Awaitable[Any]) -> asyncio.Task[Any]:
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._task_done)
        return task

    def _task_done(self, task: asyncio.Task[Any]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            self._callback_failed(task.exception())  # type: ignore[arg-type]

    def _invoke(self, callback: Callback | None, *args: Any) -> None:
        """Call an application callback; coroutines run as tasks; errors are reported."""
        if callback is None:
            return
        try:
            result = callback(*args)
        except Exception as exc:
            self._callback_failed(exc)
            return
        if inspect.isawaitable(result):
            self._spawn(result)

    def _callback_failed(self, exc: BaseException) -> None:
        logger.error("hub client callback failed", exc_info=exc)
        if isinstance(exc, Exception):
            self._report(exc)

    def _report(self, exc: Exception) -> None:
        if self.on_error is None:
            logger.debug("hub client error: %r", exc)
            return
        try:
            self.on_error(exc)
        except Exception:
            logger.exception("on_error failed")


def _refresh_delay(ttl: int) -> float:
    """When to refresh credentials valid for ``ttl`` seconds: 20% early, at most 30 s early."""
    return max(ttl * 0.8, ttl - 30.0)
