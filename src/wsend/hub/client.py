"""The Python client of the hub (``docs/protocol.md``): commands, subscriptions, recovery.

.. code-block:: python

    async with HubClient("ws://127.0.0.1:8765/ws", get_token=fetch_token) as client:
        sub = client.subscribe("chat:lobby")
        await sub.ready()
        await client.publish("chat:lobby", {"text": "hi"})
        async for pub in sub:
            print(pub.offset, pub.data)

Contract:

- Commands carry ids counting up from 1; replies are matched by id, in any order. A command
  waits at most ``timeout`` seconds (:class:`CommandTimeout`); an error reply raises
  :class:`~wsend.hub.codes.HubError`; losing the connection with the command in flight raises
  :class:`HubDisconnected` (it may or may not have run: retry only if idempotent). Commands
  issued while (re)connecting wait for the connection, within the same ``timeout``.
- Reconnection: after a close code that :func:`~wsend.hub.codes.should_reconnect` accepts, a
  lost TCP connection or a failed attempt, the client waits a delay drawn uniformly in
  ``[backoff_min, min(backoff_max, backoff_min * 2**attempt)]`` (full jitter above a floor, as
  centrifuge-js; 4007 waits ``backoff_max``). Terminal codes (4500-4999, 1000, 1009) and connect
  errors that aren't temporary move the client to ``"closed"`` for good.
- Credentials: when the connect result ``expires`` with a ``ttl``, the client calls
  ``get_token()`` and sends ``refresh`` 20% of the ttl early (at most 30 s early). After close
  code 4004 or connect error 109 it calls ``get_token()`` before connecting again.
- Subscriptions survive reconnection: each subscribes again with ``recover`` from the last
  publication seen on recoverable channels. Recovered publications come in order before live
  ones; offsets at or below the last seen are dropped as duplicates. When the hub can't recover,
  :attr:`Subscription.recovered` is ``False`` and ``on_unrecovered`` is called (reload state);
  delivery continues from the new position. A live publication whose offset skips ahead (a gap)
  is not delivered: the subscription unsubscribes and subscribes again with recovery, so nothing
  is skipped silently (``fill_gaps=False`` for conflated channels, whose offsets skip by design).
- Bounded: each subscription buffers at most ``max_queue`` publications for its consumer
  (``async for`` or ``on_publication``). When full, the **oldest** is dropped and counted in
  :attr:`Subscription.dropped`: fresh state beats stale, and a slow consumer must never stall
  the reader (replies, other channels).
- Callbacks may be functions or coroutine functions. Functions run in order in the reader;
  coroutines run as tasks, except ``on_publication``, awaited in order by a task per
  subscription. Exceptions in callbacks are logged and passed to ``on_error``.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import logging
import random
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Final, Literal, TypeVar, Unpack, cast

import msgspec

from .. import __version__
from ..asyncio.client import connect as ws_connect
from ..asyncio.connection import Connection
from ..exceptions import ConnectionClosed, UsageError, WebSocketError
from . import wire
from .codes import DisconnectCode, ErrorCode, HubError, should_reconnect
from .fossil import DeltaError
from .subscription import (
    Callback,
    History,
    Publication,
    SubscribeOptions,
    Subscription,
    _publication,
)

__all__ = [
    "CommandTimeout",
    "History",
    "HubClient",
    "HubDisconnected",
    "Publication",
    "SubscribeOptions",
    "Subscription",
]

logger = logging.getLogger("wsend.hub.client")

T = TypeVar("T")
State = Literal["disconnected", "connecting", "connected", "closed"]
TokenGetter = Callable[[], Awaitable[str]]

#: Seconds a command waits for its reply (as centrifuge-js and centrifuge-python).
DEFAULT_TIMEOUT: Final = 10.0

# What a subscribe attempt without a reply in time counts as: a temporary error.
_SUBSCRIBE_TIMED_OUT: Final = HubError(ErrorCode.INTERNAL, "subscribe timed out", temporary=True)
#: Publications buffered per subscription for a slow consumer.
DEFAULT_MAX_QUEUE: Final = 1024
#: ``unsubscribe`` push codes from this one up mean "subscribe again with recovery" (centrifuge).
RESUBSCRIBE_FROM: Final = 2500
_Push = wire.PubPush | wire.JoinPush | wire.LeavePush | wire.UnsubscribePush | wire.MessagePush


class HubDisconnected(WebSocketError):
    """The client is not connected: the connection dropped, or the client is closed.

    Attributes:
        code: the close code (1006 when the TCP connection dropped or never opened).
        reason: the close reason.
        reconnect: whether the client is reconnecting (``False``: closed for good).
    """

    def __init__(self, code: int, reason: str = "", reconnect: bool = False) -> None:
        self.code, self.reason, self.reconnect = code, reason, reconnect
        super().__init__(f"disconnected: {code} {reason}".rstrip())


class CommandTimeout(WebSocketError, TimeoutError):
    """A command got no reply within its timeout (the connection is kept)."""

    def __init__(self, method: str, timeout: float) -> None:
        self.method, self.timeout = method, timeout
        super().__init__(f"no reply to {method!r} within {timeout:g} s")


@dataclass(slots=True)
class _Drop:
    """How one connection attempt ended."""

    code: int
    reason: str
    reconnect: bool
    connected: bool = False
    error: Exception | None = None


class HubClient:
    """A client of the hub with automatic reconnection, recovery and token refresh.

    Args:
        url: the hub's endpoint, ``ws[s]://HOST:PORT/ws``.
        token: the connection JWT (``None``: anonymous, or ask ``get_token``).
        get_token: ``async () -> str`` returning a fresh connection token; used before the
            first connect without ``token``, to refresh before expiry, and after 4004 / 109.
        encoding: ``"json"`` (``wsend.v1.json``, text frames) or ``"msgpack"`` (binary).
        name, version, data: sent in ``connect`` (``data`` goes to the connect callback).
        reconnect: reconnect after reconnectable closes (``False``: one connection only).
        backoff_min, backoff_max: reconnect delays in seconds (module docstring; centrifuge-js
            uses 0.5 / 20 s, a little slow for interactive use).
        timeout: seconds each command waits for its reply.
        max_queue: default per-subscription buffer (:class:`Subscription`).
        on_connected: ``f(result: wire.ConnectResult)`` after each successful connect.
        on_disconnected: ``f(code, reason, reconnect)`` after each lost connection.
        on_error: ``f(exc)`` for errors nobody else sees (failed attempts and refreshes, bad
            frames from the hub, failing callbacks).
        on_message: ``f(data)`` for ``message`` pushes.
        ws_options: extra keyword arguments for :func:`wsend.connect` (``ssl``, ``headers``...).

    Attributes:
        info: the last connect result (``client`` id, ``user``, ``ttl``, ``node``...).
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
        self.token, self.get_token = token, get_token
        self.name, self.version, self.data = name, version, data
        self.reconnect = reconnect
        self.backoff_min, self.backoff_max = backoff_min, backoff_max
        self.timeout, self.max_queue = timeout, max_queue
        self.on_connected, self.on_disconnected = on_connected, on_disconnected
        self.on_error, self.on_message = on_error, on_message
        self.ws_options = dict(ws_options or {})
        self.info: wire.ConnectResult | None = None
        self._state: State = "disconnected"
        self._changed = asyncio.Event()
        self._final: Exception | None = None
        self._token_stale = token is None and get_token is not None
        self._decoder: msgspec.json.Decoder[Any] | msgspec.msgpack.Decoder[Any] = (
            msgspec.msgpack.Decoder() if self.codec.binary else msgspec.json.Decoder()
        )
        self._subs: dict[str, Subscription] = {}
        self._pending: dict[int, tuple[asyncio.Future[Any], Callable[[Any], None]]] = {}
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

        Transient failures are retried with backoff (bound the wait with ``asyncio.timeout``).
        Returns at once when already connected.

        Raises:
            HubError: the hub refused ``connect`` for good (e.g. 101 unauthorized).
            HubDisconnected: the hub closed with a terminal code (e.g. 4501), the client was
                closed, or ``reconnect`` is off and the first attempt failed.
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
        was_connected = self._state == "connected"
        runner, self._runner = self._runner, None
        if runner is not None:
            runner.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await runner
        if self._state != "closed":
            self._finish(HubDisconnected(1000, "client closed"))
            if was_connected:
                self._invoke(self.on_disconnected, 1000, "client closed", False)
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

    def subscribe(self, channel: str, **options: Unpack[SubscribeOptions]) -> Subscription:
        """Subscribe to ``channel``, now if connected, else as soon as the client connects.

        Options are those of :class:`SubscribeOptions`.

        Raises:
            UsageError: already subscribed to ``channel``, or the client is closed.
        """
        if self._state == "closed":
            raise UsageError("the client is closed")
        if channel in self._subs:
            raise UsageError(f"already subscribed to {channel!r}")
        sub = self._subs[channel] = Subscription(self, channel, options)
        if self._state == "connected":
            self._start_subscribe(sub)
        return sub

    async def publish(
        self, channel: str, data: Any, *, key: str | None = None, timeout: float | None = None
    ) -> wire.PublishResult:
        """Publish ``data``; returns its ``offset`` and ``epoch`` (on recoverable channels).

        Raises (like every command): HubError, HubDisconnected, CommandTimeout.
        """
        raw = msgspec.Raw(self.codec.encode_one(data))
        return await self._request(
            wire.PublishCommand, wire.PublishResult, timeout, channel=channel, data=raw, key=key
        )

    async def presence(
        self, channel: str, *, timeout: float | None = None
    ) -> dict[str, wire.PresenceEntry]:
        """The clients subscribed to ``channel``: ``{client_id: entry(user, info)}``."""
        cmd = wire.PresenceCommand
        return (await self._request(cmd, wire.PresenceResult, timeout, channel=channel)).clients

    async def presence_stats(
        self, channel: str, *, timeout: float | None = None
    ) -> wire.PresenceStatsResult:
        """How many clients and distinct users are subscribed to ``channel``."""
        cmd = wire.PresenceStatsCommand
        return await self._request(cmd, wire.PresenceStatsResult, timeout, channel=channel)

    async def history(
        self,
        channel: str,
        *,
        limit: int | None = None,
        since: tuple[int, str] | None = None,
        reverse: bool | None = None,
        timeout: float | None = None,
    ) -> History:
        """Publications kept for ``channel``: at most ``limit`` (hub default 100; 0: only the
        position), after ``since=(offset, epoch)`` (error 112 when the epoch changed), newest
        first with ``reverse``."""
        after = wire.Since(offset=since[0], epoch=since[1]) if since is not None else None
        result = await self._request(
            wire.HistoryCommand, wire.HistoryResult, timeout,
            channel=channel, limit=limit, since=after, reverse=reverse,
        )  # fmt: skip
        pubs = [_publication(channel, frame) for frame in result.publications]
        return History(pubs, result.epoch, result.offset)

    async def rpc(self, method: str, data: Any = None, *, timeout: float | None = None) -> Any:
        """Call the hub application's RPC handler ``method``; returns its ``data``."""
        raw = self._raw(data)
        return (
            await self._request(wire.RpcCommand, wire.RpcResult, timeout, name=method, data=raw)
        ).data

    async def ping(self, *, timeout: float | None = None) -> float:
        """Send the ``ping`` command; returns the round-trip time in seconds."""
        start = asyncio.get_running_loop().time()
        await self._request(wire.PingCommand, dict, timeout)
        return asyncio.get_running_loop().time() - start

    # -- requests -----------------------------------------------------------------------------

    def _raw(self, data: Any) -> msgspec.Raw | None:
        return None if data is None else msgspec.Raw(self.codec.encode_one(data))

    async def _request(
        self,
        command: type[Any],
        result_type: type[T],
        timeout: float | None = None,
        *,
        wait: bool = True,
        hook: Callable[[T], None] | None = None,
        **fields: Any,
    ) -> T:
        """Send ``command(id=..., **fields)`` and wait for the reply, as ``result_type``.

        With ``wait``, first wait until connected; without, require it (or, for ``connect``, an
        open WebSocket). ``hook`` runs synchronously in the reader with the result, before any
        frame that follows the reply is processed.
        """
        method: str = command.__struct_config__.tag
        timeout = self.timeout if timeout is None else timeout
        try:
            async with asyncio.timeout(timeout):
                if wait:
                    await self._wait_connected()
                elif self._state != "connected" and not (method == "connect" and self._ws):
                    raise HubDisconnected(1006, "not connected", self._state != "closed")
                self._next_id += 1
                # Absent fields are left out (an empty Raw() that isn't wire's own default
                # would be encoded as nothing: invalid JSON).
                frame = command(
                    id=self._next_id, **{k: v for k, v in fields.items() if v is not None}
                )
                return await self._send_command(frame, method, result_type, hook)
        except TimeoutError as exc:
            if isinstance(exc, CommandTimeout):
                raise
            raise CommandTimeout(method, timeout) from None

    async def _send_command(
        self, frame: Any, method: str, result_type: type[T], hook: Callable[[T], None] | None
    ) -> T:
        future: asyncio.Future[T] = asyncio.get_running_loop().create_future()

        def complete(result: Any) -> None:
            try:
                value = msgspec.convert({} if result is None else result, result_type)
            except msgspec.ValidationError as exc:
                future.set_exception(HubError(ErrorCode.INTERNAL, f"malformed {method} result"))
                self._report(exc)
                return
            if hook is not None:
                hook(value)
            future.set_result(value)

        self._pending[frame.id] = (future, complete)
        self._outbox.append(self.codec.encode_one(frame))
        self._outbox_ready.set()
        try:
            return await future
        finally:
            self._pending.pop(frame.id, None)

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
            attempt = 0 if drop.connected else attempt
            again = self.reconnect and drop.reconnect
            self._dropped(drop, again)
            if not again:
                self._finish(drop.error or HubDisconnected(drop.code, drop.reason))
                self._runner = None
                return
            await asyncio.sleep(self._backoff(attempt, drop.code))
            attempt += 1

    def _backoff(self, attempt: int, code: int = 0) -> float:
        """A reconnect (or retry) delay: full jitter between the floor and an exponential cap."""
        if code == DisconnectCode.TOO_MANY_REQUESTS:
            return self.backoff_max
        cap = min(self.backoff_max, self.backoff_min * 2 ** min(attempt, 32))
        return random.uniform(self.backoff_min, cap)

    async def _session(self) -> _Drop:
        """Run one connection from opening to close; raises only when cancelled."""
        self._set_state("connecting")
        if self._token_stale and self.get_token is not None:
            try:
                self.token = await self.get_token()
                self._token_stale = False
            except Exception as exc:
                self._report(exc)
                return _Drop(1006, "get_token failed", True)
        try:
            ws = await ws_connect(
                self.url, subprotocols=[self.codec.subprotocol], **self.ws_options
            )
        except (OSError, WebSocketError, TimeoutError) as exc:
            self._report(exc)
            return _Drop(1006, f"connection failed: {exc}", True)
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
        command = asyncio.ensure_future(
            self._request(
                wire.ConnectCommand, wire.ConnectResult, wait=False, token=self.token,
                name=self.name, version=self.version, data=self._raw(self.data),
            )
        )  # fmt: skip
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
            return _Drop(1006, str(exc), True)
        self._set_state("connected")
        for sub in list(self._subs.values()):
            self._start_subscribe(sub)
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
        try:
            while True:
                self._dispatch(await ws.recv())
        except ConnectionClosed as exc:
            code = exc.rcvd.code if exc.rcvd is not None else 1006
            reason = exc.rcvd.reason if exc.rcvd is not None else "connection lost"
        if code == DisconnectCode.TOKEN_EXPIRED:
            self._token_stale = True
        return _Drop(code, reason, should_reconnect(code), self._state == "connected")

    def _dispatch(self, message: str | bytes) -> None:
        try:
            decoded = self._decoder.decode(cast(bytes, message))  # JSON takes str too
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
                # Unknown push types are ignored (forward compatibility), like bad frames.
                logger.debug("ignored a frame from the hub: %s", exc)

    def _on_reply(self, reply: wire.Reply) -> None:
        pending = self._pending.pop(reply.id, None)
        if pending is None or pending[0].done():
            return
        if reply.error is not None:
            error = reply.error
            pending[0].set_exception(HubError(error.code, error.message, error.temporary))
        else:
            pending[1](reply.result)

    def _on_push(self, push: _Push) -> None:
        if isinstance(push, wire.MessagePush):
            self._invoke(self.on_message, push.data)
            return
        sub = self._subs.get(push.channel)
        if sub is None or sub.state != "subscribed":
            return
        if isinstance(push, wire.PubPush):
            try:
                pub = sub._publication(push)
            except DeltaError as exc:
                # Lost track of the channel's payloads: deliver nothing, start over (with
                # recovery where the channel keeps history, so nothing is missed).
                self._report(exc)
                self._start_subscribe(sub, unsubscribe_first=True)
                return
            if not sub._accept(pub):
                self._start_subscribe(sub, unsubscribe_first=True)
        elif isinstance(push, wire.JoinPush):
            self._invoke(sub.on_join, push.info)
        elif isinstance(push, wire.LeavePush):
            self._invoke(sub.on_leave, push.info)
        elif push.code >= RESUBSCRIBE_FROM:
            self._start_subscribe(sub)
        else:
            del self._subs[sub.channel]
            sub._end(None, push.code, push.reason)

    def _dropped(self, drop: _Drop, reconnecting: bool) -> None:
        """After a connection ended: fail commands in flight, mark subscriptions, notify."""
        self._fail_pending(HubDisconnected(drop.code, drop.reason, reconnecting))
        for sub in self._subs.values():
            if sub._task is not None:
                sub._task.cancel()
            sub._resubscribing()
        if reconnecting:
            self._set_state("disconnected")
        if drop.connected or not reconnecting:
            self._invoke(self.on_disconnected, drop.code, drop.reason, reconnecting)

    def _fail_pending(self, error: Exception) -> None:
        for future, _ in self._pending.values():
            if not future.done():
                future.set_exception(error)
        self._pending.clear()

    def _finish(self, error: Exception) -> None:
        """Enter ``"closed"`` for good: end subscriptions and wake waiters with ``error``."""
        if self._state == "closed":
            return
        self._final = error
        self._fail_pending(HubDisconnected(1000, "client closed"))
        subs, self._subs = list(self._subs.values()), {}
        for sub in subs:
            sub._end(error)
        self._set_state("closed")

    # -- subscriptions ------------------------------------------------------------------------

    def _start_subscribe(self, sub: Subscription, *, unsubscribe_first: bool = False) -> None:
        sub._resubscribing()
        if sub._task is not None:
            sub._task.cancel()
        sub._task = self._spawn(self._subscribe_flow(sub, unsubscribe_first))

    async def _subscribe_flow(self, sub: Subscription, unsubscribe_first: bool) -> None:
        """Subscribe until it works, is refused, or the connection drops (then it restarts).

        After an attempt that timed out, the next one unsubscribes first: the hub may still
        complete the late one, and would answer the retry "already subscribed" (105). An
        attempt answered 105 (a late one from a cancelled flow completed first) is retried the
        same way.
        """
        try:
            attempt = 0
            while sub.state != "unsubscribed":
                if unsubscribe_first:
                    with contextlib.suppress(HubError, CommandTimeout):
                        await self._request(
                            wire.UnsubscribeCommand, dict, wait=False, channel=sub.channel
                        )
                error = await self._subscribe_once(sub)
                if error is None:
                    return
                # The hub has it already (a late attempt completed): unsubscribe, then again.
                unsubscribe_first = (
                    error is _SUBSCRIBE_TIMED_OUT or error.code == ErrorCode.ALREADY_SUBSCRIBED
                )
                if not error.temporary and not unsubscribe_first:
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
        epoch, offset = position if position is not None else (None, None)
        try:
            await self._request(
                wire.SubscribeCommand, wire.SubscribeResult, wait=False,
                hook=lambda result: sub._subscribed(result, position is not None),
                channel=sub.channel, token=sub.token, recover=True if position else None,
                epoch=epoch, offset=offset, data=self._raw(sub.data), delta=sub.delta,
            )  # fmt: skip
        except CommandTimeout:
            return _SUBSCRIBE_TIMED_OUT
        except HubError as exc:
            if exc.code == ErrorCode.TOKEN_EXPIRED and sub.get_token is not None:
                sub.token = None
                return HubError(exc.code, exc.message, temporary=True)
            return exc
        return None

    async def _unsubscribe(self, sub: Subscription) -> None:
        if self._subs.get(sub.channel) is sub:
            del self._subs[sub.channel]
        if sub.state == "unsubscribed":
            return
        sub._end(None)
        if self._state == "connected":
            with contextlib.suppress(HubError, HubDisconnected, CommandTimeout):
                await self._request(wire.UnsubscribeCommand, dict, wait=False, channel=sub.channel)

    # -- credentials and callbacks ------------------------------------------------------------

    async def _refresh(self, ttl: int) -> None:
        """Refresh the connection token before it expires, for as long as it keeps expiring."""
        attempt, delay = 0, _refresh_delay(ttl)
        while self.get_token is not None:
            await asyncio.sleep(delay)
            try:
                token = await self.get_token()
                result = await self._request(wire.RefreshCommand, wire.RefreshResult, token=token)
            except HubDisconnected:
                return
            except Exception as exc:
                self._report(exc)
                if isinstance(exc, HubError) and not exc.temporary:
                    return  # the hub closes with 4004; get_token runs before reconnecting
                delay, attempt = self._backoff(attempt), attempt + 1
                continue
            self.token, attempt = token, 0
            if not result.expires or result.ttl is None:
                return
            delay = _refresh_delay(result.ttl)

    def _spawn(self, coro: Awaitable[Any]) -> asyncio.Task[Any]:
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._task_done)
        return task

    def _task_done(self, task: asyncio.Task[Any]) -> None:
        self._tasks.discard(task)
        exc = None if task.cancelled() else task.exception()
        if exc is not None:
            self._callback_failed(exc)

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
