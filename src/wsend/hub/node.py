"""A hub node on asyncio: the WebSocket endpoint, fan-out to local sessions, the server API.

:class:`Hub` glues the sans-I/O :class:`~.session.Session` to real connections. For each
WebSocket it creates a session, feeds it every message, and drains its outgoing queue with a
writer task while anything is queued (so a slow client backs up into its own bounded queue,
never into the hub). It keeps the channel -> local sessions registry, subscribes its broker to
channels while they have local subscribers, and hands every publication the broker delivers to
those sessions, encoded once per codec and framed once as a WebSocket message: written straight
to every subscriber's socket that can take it at once, queued for the others.

It also offers the server-side Python API (:meth:`Hub.publish`, :meth:`Hub.disconnect`,
presence and history queries), the HTTP API (:mod:`.httpapi`) and ``/metrics``.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import inspect
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Mapping
from typing import Any, Literal

from ..asyncio.broadcast import write_prepared
from ..asyncio.connection import Connection
from ..asyncio.routes import Router
from ..asyncio.server import ServerConnection
from ..exceptions import ConnectionClosed
from ..protocol.frames import is_valid_close_code
from ..protocol.http import Request, Response
from .auth import ConnectionClaims, TokenVerifier
from .broker import (
    Broker,
    ClientInfo,
    HistoryOptions,
    HistoryResult,
    Presence,
    PresenceStats,
    Publication,
    StreamPosition,
)
from .codes import DisconnectCode, HubError
from .memory import MemoryBroker, MemoryPresence
from .metrics import CONTENT_TYPE, HubMetrics
from .options import HubOptions, parse_channel
from .seams import Socket, Subscriber
from .session import RpcHandler, Session
from .wire import JSON, MSGPACK, SUBPROTOCOLS, Encoded, PubFrames, check_both

__all__ = ["Hub"]

logger = logging.getLogger("wsend.hub")

ConnectCallback = Callable[[Session, Any], Any]
SubscribeCallback = Callable[[Session, str, Any], Any]

# A WebSocket message gathers queued frames up to this size.
_BATCH_BYTES = 65536
# How often deadlines (connect timeout, token expiry) are checked.
_TICK = 1.0
# Presence entries are refreshed this many times per presence ttl (the engine's ``ttl``
# attribute, 60 s by default): every 15 s for 60 s, where Centrifuge refreshes every 25 s.
_REFRESHES_PER_TTL = 4
# Presence entries refreshed per batch (one pipeline on the Redis engine).
_REFRESH_BATCH = 500
# Seconds Hub.close() waits for connections to end before it closes the engines.
_CLOSE_WAIT = 3.0


class _Link:
    """The node's side of one connection: the session's :class:`~.session.Sink`.

    The writer task that drains the session's queue runs only while there is something to
    send or a close to carry out: :meth:`wakeup` starts it, and it ends once the queue is
    empty. An idle subscriber, whose publications go out by :meth:`write_now`, holds no task.

    ``sending`` is true while the writer awaits ``ws.send``: past the transport's high-water
    mark, that is, while the peer doesn't read. A slow-consumer close can't wait for it: the
    close frame is then written at once (the transport buffers it) and the connection's close
    timeout drops a peer that never reads again.
    """

    __slots__ = (
        "closer",
        "closing",
        "conn",
        "done",
        "hub",
        "sending",
        "session",
        "stats",
        "writer",
        "ws",
    )

    def __init__(self, hub: Hub, ws: Socket, stats: _Written) -> None:
        self.hub = hub
        self.ws = ws
        self.session: Session | None = None
        self.writer: asyncio.Task[None] | None = None
        self.done = False  # the writer closed the connection or found it closed
        self.closing: tuple[int, str] | None = None
        self.sending = False
        self.closer: asyncio.Task[None] | None = None
        self.stats = stats
        # Shared publication frames are written straight to wsend's own connections, when
        # they negotiated no compression (a compressed connection frames each message itself).
        conn = ws if isinstance(ws, Connection) else None
        plain = conn is not None and conn.proto is not None and conn.proto.deflate is None
        self.conn: Connection | None = conn if plain else None

    def wakeup(self) -> None:
        if self.writer is None and not self.done and self.session is not None:
            self.writer = asyncio.get_running_loop().create_task(
                self.hub._write(self.session, self)
            )

    def write_now(self, message: bytes) -> bool:
        conn = self.conn
        if conn is None or self.writer is not None or self.closing is not None:
            return False
        if not write_prepared(conn, message):
            return False
        stats = self.stats
        stats.messages += 1
        size = len(message)  # counted as the writer counts: the payload, not the frame header
        stats.bytes += size - (2 if size < 128 else 4 if size < 65540 else 10)
        return True

    def close(self, code: int, reason: str) -> None:
        if self.closing is None:
            self.closing = (code, reason)
            if self.sending and code == DisconnectCode.SLOW_CONSUMER:
                self.closer = asyncio.ensure_future(self.ws.close(code, reason))
            self.wakeup()


class _Written:
    """Messages written by :meth:`_Link.write_now` since the metrics last counted them (one
    counter update per publication instead of one per subscriber)."""

    __slots__ = ("bytes", "messages")

    def __init__(self) -> None:
        self.messages = 0
        self.bytes = 0


class Hub:
    """One hub node.

    Args:
        options: channels, namespaces, auth and limits (:class:`~.options.HubOptions`).
        broker: the fan-out and history engine; an in-memory one by default.
        presence: the presence engine; an in-memory one by default.
        verifier: checks JWTs; built from ``options.jwt`` when omitted.
        api_key: enables the HTTP API (``/api/...``) for requests carrying this key.
        clock: the time source (seconds since the epoch), injectable for tests.

    Use :meth:`routes` and :meth:`handler` with :func:`wsend.serve`, or just :meth:`serve`.
    """

    def __init__(
        self,
        options: HubOptions | None = None,
        *,
        broker: Broker | None = None,
        presence: Presence | None = None,
        verifier: TokenVerifier | None = None,
        api_key: str | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._options = options or HubOptions()
        self._clock = clock
        self._broker = broker or MemoryBroker(clock)
        self._presence = presence or MemoryPresence(clock)
        if verifier is None and self._options.jwt is not None:
            jwt = self._options.jwt
            verifier = TokenVerifier(
                secret=jwt.secret,
                public_key=jwt.public_key,
                algorithms=jwt.algorithms,
                audience=jwt.audience,
                issuer=jwt.issuer,
                leeway=jwt.leeway,
            )
        self._verifier = verifier
        self.api_key = api_key
        self.metrics = HubMetrics()
        self._rpc: dict[str, RpcHandler] = {}
        self._connect_cb: ConnectCallback | None = None
        self._subscribe_cb: SubscribeCallback | None = None
        self._channels: dict[str, set[Subscriber]] = {}
        # Per channel with delta subscribers here: its latest publication, the base of the
        # next one's delta (docs/protocol.md section 5; .delta).
        self._previous: dict[str, PubFrames] = {}
        self._locks: dict[str, list[Any]] = {}  # channel -> [lock, users]
        self._links: dict[Session, _Link] = {}
        self._written = _Written()
        #: The WebSocket endpoint's path (set by :meth:`routes`).
        self.path = "/ws"
        self._started = False
        self._ticker: asyncio.Task[None] | None = None
        self._refresher: asyncio.Task[None] | None = None
        self._handlers: set[asyncio.Task[Any]] = set()
        self._relays: set[asyncio.Task[None]] = set()
        self._latency: dict[str, Callable[[float], None]] = {}

    # -- the Node protocol (what sessions use) -----------------------------------------------

    @property
    def options(self) -> HubOptions:
        return self._options

    @property
    def broker(self) -> Broker:
        return self._broker

    @property
    def presence(self) -> Presence:
        return self._presence

    @property
    def verifier(self) -> TokenVerifier | None:
        return self._verifier

    @property
    def rpc_handlers(self) -> Mapping[str, RpcHandler]:
        return self._rpc

    @property
    def node_name(self) -> str:
        return self._options.node_name

    def clock(self) -> float:
        return self._clock()

    async def on_connect(self, session: Session, data: Any) -> Any:
        if self._connect_cb is None:
            return None
        return await _maybe_await(self._connect_cb(session, data))

    async def can_subscribe(self, session: Session, channel: str, data: Any) -> bool:
        if self._subscribe_cb is None:
            return False
        return bool(await _maybe_await(self._subscribe_cb(session, channel, data)))

    async def add_subscription(self, session: Subscriber, channel: str) -> None:
        async with self._lock(channel):
            sessions = self._channels.get(channel)
            if sessions is None:
                sessions = self._channels[channel] = {session}
                try:
                    await self._broker.subscribe(channel)
                except BaseException:
                    del self._channels[channel]
                    raise
                self.metrics.channels.inc()
            elif session in sessions:
                return
            else:
                sessions.add(session)
            self.metrics.subscriptions.inc()

    async def remove_subscription(self, session: Subscriber, channel: str) -> None:
        async with self._lock(channel):
            sessions = self._channels.get(channel)
            if sessions is None or session not in sessions:
                return
            sessions.discard(session)
            self.metrics.subscriptions.dec()
            if not sessions:
                del self._channels[channel]
                self._previous.pop(channel, None)
                self.metrics.channels.dec()
                if self._started:
                    await self._broker.unsubscribe(channel)

    async def announce(
        self, kind: Literal["join", "leave"], channel: str, info: ClientInfo
    ) -> None:
        # Join and leave reach this node's subscribers; across nodes they travel with the
        # engine when it supports it (see the Redis engine).
        for session in list(self._channels.get(channel, ())):
            if session.client == info.client:
                continue
            if kind == "join":
                session.deliver_join(channel, info)
            else:
                session.deliver_leave(channel, info)
        relay = getattr(self._broker, "announce", None)
        if relay is not None:
            await relay(kind, channel, info)

    @contextlib.asynccontextmanager
    async def _lock(self, channel: str) -> AsyncIterator[None]:
        """Serialize the (un)subscriptions of ``channel``; the lock lives while it is used."""
        entry = self._locks.get(channel)
        if entry is None:
            entry = self._locks[channel] = [asyncio.Lock(), 0]
        entry[1] += 1
        try:
            async with entry[0]:
                yield
        finally:
            entry[1] -= 1
            if not entry[1]:
                del self._locks[channel]

    # -- application hooks --------------------------------------------------------------------

    def rpc(self, method: str) -> Callable[[RpcHandler], RpcHandler]:
        """Decorator registering ``handler(session, data) -> result`` for RPC ``method``."""

        def register(handler: RpcHandler) -> RpcHandler:
            self._rpc[method] = handler
            return handler

        return register

    def on_connect_callback(self, callback: ConnectCallback) -> ConnectCallback:
        """Decorator: ``callback(session, data) -> data`` runs at ``connect``.

        Raise :class:`~.codes.HubError` in it to refuse the connection.
        """
        self._connect_cb = callback
        return callback

    def on_subscribe_callback(self, callback: SubscribeCallback) -> SubscribeCallback:
        """Decorator: ``callback(session, channel, data) -> bool`` for namespaces with
        ``subscribe="callback"``."""
        self._subscribe_cb = callback
        return callback

    # -- lifecycle ----------------------------------------------------------------------------

    async def start(self) -> None:
        """Start the engines and the periodic checks (idempotent)."""
        if self._started:
            return
        self._started = True
        if hasattr(self._broker, "on_control"):  # the engine relays between nodes
            self._broker.on_control = self._on_control
        await self._broker.start(self._on_publication)
        loop = asyncio.get_running_loop()
        self._ticker = loop.create_task(self._tick())
        self._refresher = loop.create_task(self._refresh_presence())

    async def close(self, code: int = DisconnectCode.SHUTDOWN, reason: str = "shutdown") -> None:
        """Close every connection with ``code``, let them clean up, and stop the engines.

        Waits a few seconds at most for the connections to end (their subscriptions and
        presence entries are removed meanwhile), then closes the engines.
        """
        for session in list(self._links):
            session.close(code, reason)
        handlers = [task for task in self._handlers if task is not asyncio.current_task()]
        if handlers:
            await asyncio.wait(handlers, timeout=_CLOSE_WAIT)
        for task in (self._ticker, self._refresher):
            if task is not None:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
        self._ticker = self._refresher = None
        if self._relays:
            await asyncio.wait(list(self._relays), timeout=_CLOSE_WAIT)
        self._started = False
        await self._broker.close()
        await self._presence.close()

    async def _tick(self) -> None:
        while True:
            await asyncio.sleep(_TICK)
            now = self._clock()
            for session in list(self._links):
                session.check_expiry(now)

    @property
    def presence_refresh_interval(self) -> float:
        """Seconds between two refreshes of this node's presence entries."""
        ttl = getattr(self._presence, "ttl", 60.0)
        return float(ttl) / _REFRESHES_PER_TTL

    async def _refresh_presence(self) -> None:
        """Keep this node's presence entries from expiring (a task apart from the deadlines:
        a slow engine must not delay them)."""
        while True:
            await asyncio.sleep(self.presence_refresh_interval)
            await self.refresh_presence()

    async def refresh_presence(self) -> None:
        """Refresh the presence entries of this node's sessions now, in batches.

        Engines with ``add_many(entries)`` (the Redis engine: one pipeline per batch) get each
        batch at once; others get one ``add`` per entry. Entries of subscriptions dropped
        meanwhile are removed again. Errors are logged.
        """
        entries = [
            (session, channel, info)
            for session in list(self._links)
            for channel, info in session.presence_entries()
        ]
        add_many = getattr(self._presence, "add_many", None)
        for start in range(0, len(entries), _REFRESH_BATCH):
            batch = entries[start : start + _REFRESH_BATCH]
            try:
                if add_many is not None:
                    await add_many([(channel, info) for _, channel, info in batch])
                else:
                    for _, channel, info in batch:
                        await self._presence.add(channel, info)
                for session, channel, info in batch:
                    if not session.keeps_presence(channel):
                        await self._presence.remove(channel, info.client)
            except Exception as exc:
                logger.warning("refreshing presence failed: %s", exc)

    async def _on_publication(self, channel: str, publication: Publication | None) -> None:
        local = self._channels.get(channel)
        if not local:
            return
        previous = self._previous.pop(channel, None)
        if publication is None:
            # The engine lost publications of the channel: its subscribers resubscribe with
            # recovery (and learn ``recovered: false`` if the history can't fill the gap).
            lagging = list(local)
        else:
            frames = PubFrames(channel, publication, previous)
            lagging = [
                session
                for session in list(local)
                if not session.deliver_publication(channel, publication, frames)
            ]
            frames.previous = None  # deltas are computed: don't keep a chain of publications
            if frames.keep:
                self._previous[channel] = frames
            metrics = self.metrics
            metrics.publications.inc(len(local))
            written = self._written
            if written.messages:
                metrics.messages_out.inc(written.messages)
                metrics.bytes_out.inc(written.bytes)
                written.messages = written.bytes = 0
        for session in lagging:
            await session.unsubscribe(channel, 2500, "resubscribe")

    # -- connections --------------------------------------------------------------------------

    def _observe(self, method: str, seconds: float) -> None:
        """Record a command's latency (the histogram's child per method is looked up once)."""
        observe = self._latency.get(method)
        if observe is None:
            observe = self._latency[method] = self.metrics.commands.labels(method).observe
        observe(seconds)

    async def handler(
        self, ws: Socket, *, credentials: ConnectionClaims | HubError | None = None
    ) -> None:
        """The WebSocket handler for the hub endpoint (``/ws``): one session, until it closes.

        Args:
            ws: an open WebSocket (a :class:`~wsend.asyncio.server.ServerConnection` when
                served by :func:`wsend.serve`, an ASGI server's with :mod:`.asgi`).
            credentials: who the connection is, established by the transport (see
                :class:`~.session.Session`); ``None``: the client's connection token decides.
        """
        await self.start()
        codec = MSGPACK if ws.protocol == MSGPACK.subprotocol else JSON
        link = _Link(self, ws, self._written)
        session = link.session = Session(
            self, link, codec, self._observe, url_token=_url_token(ws), credentials=credentials
        )
        session.queue.on_replaced = self.metrics.drops.labels("conflated").inc
        self._links[session] = link
        self.metrics.connections.inc()
        task = asyncio.current_task()
        if task is not None:
            self._handlers.add(task)
        try:
            await self._read(session, link, ws)
        except Exception:
            logger.exception("hub session failed")
            link.close(DisconnectCode.SERVER_ERROR, "server error")
        finally:
            link.close(1000, "")
            writer = link.writer
            if writer is not None and not writer.done():
                with contextlib.suppress(Exception):
                    await asyncio.wait_for(asyncio.shield(writer), 1.0)
                writer.cancel()
            try:
                await session.on_close()
            finally:
                del self._links[session]
                self._handlers.discard(task)
                self._closed(session, link)

    def _closed(self, session: Session, link: _Link) -> None:
        """Count a connection's end: its close code and slow-consumer drops (conflation: live)."""
        metrics = self.metrics
        metrics.connections.dec()
        closing = link.closing
        code = closing[0] if closing is not None and closing[0] != 1000 else link.ws.close_code
        metrics.disconnects.labels(str(1006 if code is None else code)).inc()
        if session.close_code == DisconnectCode.SLOW_CONSUMER:
            metrics.drops.labels("slow_consumer").inc(max(1, len(session.queue)))

    async def _read(self, session: Session, link: _Link, ws: Socket) -> None:
        metrics = self.metrics
        try:
            async for message in ws:
                metrics.messages_in.inc()
                metrics.bytes_in.inc(len(message))
                await session.handle_message(message)
                if link.closing is not None:
                    break
        except ConnectionClosed:
            pass

    async def _write(self, session: Session, link: _Link) -> None:
        """Send what the session queued, in batches, then carry out a requested close; end
        when nothing is left (the link starts a new writer for what comes later)."""
        ws = link.ws
        metrics = self.metrics
        try:
            while True:
                closing = link.closing
                if closing is not None and closing[0] == DisconnectCode.SLOW_CONSUMER:
                    break
                message = session.pop_message(_BATCH_BYTES)
                if message is None:
                    break
                link.sending = True
                try:
                    await ws.send(message)
                finally:
                    link.sending = False
                metrics.messages_out.inc()
                metrics.bytes_out.inc(len(message))
            if link.closing is not None:
                link.done = True
                await ws.close(*link.closing)
        except ConnectionClosed:
            link.done = True
        except Exception:
            # A bug must not leave the connection open without a writer: end it (4003).
            logger.exception("hub writer failed")
            link.done = True
            link.closing = (DisconnectCode.SERVER_ERROR, "server error")
            with contextlib.suppress(Exception):
                await ws.close(*link.closing)
        finally:
            link.writer = None

    # -- server-side API ----------------------------------------------------------------------

    def _history_options(self, channel: str) -> HistoryOptions:
        ns = self._options.namespace(parse_channel(channel))
        return HistoryOptions(ns.history_size, ns.history_ttl)

    async def publish(self, channel: str, data: Any, *, key: str | None = None) -> StreamPosition:
        """Publish ``data`` to ``channel`` from the server; returns its position in history.

        ``data`` must be encodable in JSON and in MessagePack (subscribers use either).

        Raises:
            HubError: 102, the channel name is invalid or its namespace unknown; 107, ``data``
                can't be encoded; 100 (temporary), the engine failed.
        """
        await self.start()
        history = self._history_options(channel)
        check_both(data)
        publication = Publication(data=data, key=key, time=self._clock())
        return await self._broker.publish(channel, publication, history)

    async def broadcast(self, channels: Iterable[str], data: Any) -> list[StreamPosition]:
        """Publish the same ``data`` to several channels."""
        return [await self.publish(channel, data) for channel in channels]

    async def history(
        self,
        channel: str,
        *,
        limit: int | None = None,
        since: StreamPosition | None = None,
        reverse: bool = False,
    ) -> HistoryResult:
        """Read ``channel``'s history (see :meth:`Broker.history`).

        Publications' ``data`` are Python values, whoever published them (clients' data is
        kept in its wire encoding inside the hub; it is decoded here).
        """
        await self.start()
        result = await self._broker.history(
            channel,
            since=since,
            limit=limit,
            reverse=reverse,
            history=self._history_options(channel),
        )
        result.publications = [_decoded(p) for p in result.publications]
        return result

    async def presence_of(self, channel: str) -> dict[str, ClientInfo]:
        """The clients present in ``channel``."""
        parse_channel(channel)
        return await self._presence.get(channel)

    async def presence_stats(self, channel: str) -> PresenceStats:
        """How many clients and users are present in ``channel``."""
        parse_channel(channel)
        return await self._presence.stats(channel)

    def sessions(self, user: str | None = None) -> list[Session]:
        """This node's sessions, or those of ``user``."""
        return [s for s in self._links if user is None or s.user == user]

    def disconnect(
        self,
        user: str,
        code: int = DisconnectCode.FORBIDDEN,
        reason: str = "disconnected",
        *,
        client: str | None = None,
    ) -> int:
        """Close every connection of ``user``, on every node; returns how many on this one.

        With ``client`` (a connection's id, as presence lists it), only that connection of
        ``user`` closes: that is how anonymous connections (``user`` is ``""``) are closed.
        Each session stops executing commands at once; what it queued before is sent, then the
        WebSocket closes with ``code`` (4000-4499 tell clients to reconnect, 4500-4999 not to).
        Other nodes are told through the engine when it relays between nodes (the Redis
        engine does, at most once).

        Raises:
            ValueError: ``code`` can't be sent in a close frame (RFC 6455 section 7.4).
        """
        if not is_valid_close_code(code):
            raise ValueError(f"invalid close code: {code}")
        message: dict[str, Any] = {
            "op": "disconnect",
            "user": user,
            "code": code,
            "reason": reason,
        }
        if client is not None:
            message["client"] = client
        self._relay(message)
        return self._disconnect_here(user, code, reason, client)

    def send_message(self, user: str, data: Any) -> int:
        """Send a ``message`` push to every connection of ``user``, on every node (as
        :meth:`disconnect`); returns how many on this one.

        Raises:
            HubError: 107, ``data`` can't be encoded in JSON or MessagePack.
        """
        check_both(data)
        self._relay({"op": "send", "user": user, "data": data})
        return self._send_here(user, data)

    def _disconnect_here(self, user: str, code: int, reason: str, client: str | None) -> int:
        sessions = [s for s in self.sessions(user) if client is None or s.client == client]
        for session in sessions:
            session.close(code, reason)
        return len(sessions)

    def _send_here(self, user: str, data: Any) -> int:
        sessions = self.sessions(user)
        for session in sessions:
            session.deliver_message(data)
        return len(sessions)

    def _relay(self, message: dict[str, Any]) -> None:
        """Send ``message`` to the other nodes, in the background (see :meth:`_on_control`)."""
        control = getattr(self._broker, "control", None)
        if control is None or not self._started:
            return
        task = asyncio.get_running_loop().create_task(control(message))
        self._relays.add(task)
        task.add_done_callback(self._relays.discard)

    def _on_control(self, message: Any) -> None:
        """A message :meth:`_relay` sent on another node."""
        try:
            op, user = message["op"], message["user"]
            if op == "disconnect":
                client = message.get("client")
                self._disconnect_here(
                    user,
                    int(message["code"]),
                    str(message["reason"]),
                    None if client is None else str(client),
                )
            elif op == "send":
                self._send_here(user, message["data"])
        except (KeyError, TypeError, ValueError) as exc:
            logger.warning("ignored a malformed control message: %r", exc)

    # -- serving ------------------------------------------------------------------------------

    def routes(self, router: Router | None = None, *, path: str = "/ws") -> Router:
        """Add ``/metrics`` and the HTTP API to ``router`` (a new one by default)."""
        from .httpapi import add_api_routes

        router = router if router is not None else Router()
        router.add("/metrics", self._metrics_route)
        add_api_routes(self, router)
        self.path = path
        return router

    def _metrics_route(self, request: Request) -> Response:
        return Response.bytes(200, self.metrics.render(), CONTENT_TYPE)

    def process_request(self, ws: ServerConnection, request: Request) -> Response | None:
        """Refuse upgrades on other paths than the hub's endpoint (404)."""
        if request.path != self.path:
            return Response.text(404, "Not Found: the hub's endpoint is /ws\n")
        return None

    def serve_kwargs(self, router: Router | None = None, *, path: str = "/ws") -> dict[str, Any]:
        """Keyword arguments for :func:`wsend.serve` that run this hub."""
        return {
            "router": self.routes(router, path=path),
            "subprotocols": list(SUBPROTOCOLS),
            "process_request": [self.process_request],
            "max_message_size": self._options.max_message_size,
            "ping_interval": self._options.ping_interval or None,
        }


def _url_token(ws: Socket) -> str | None:
    """The ``token`` query parameter of the endpoint's URL (``/ws?token=...``), if any."""
    request = ws.request
    if request is None:
        return None
    tokens = request.query.get("token")
    return tokens[0] if tokens else None


def _decoded(publication: Publication) -> Publication:
    """``publication`` with its data as Python values."""
    if isinstance(publication.data, Encoded):
        return dataclasses.replace(publication, data=publication.data.value())
    return publication


async def _maybe_await(value: Any | Awaitable[Any]) -> Any:
    if inspect.isawaitable(value):
        return await value
    return value
