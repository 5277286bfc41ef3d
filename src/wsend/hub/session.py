"""One client connection of the hub, sans-I/O: commands in, replies and pushes out.

A :class:`Session` implements every command of ``docs/protocol.md`` for one connection. It does
no I/O itself: it reads the time from the node's injected clock, calls the engines (broker,
presence) the node gives it, writes encoded frames into its :class:`~.queue.OutgoingQueue`, and
tells the node's :class:`Sink` when there is something to send or when to close.

The seam to the node:

- :class:`Node`: what the session needs from the node (options, engines, verifier, clock,
  application callbacks, and the channel -> sessions registry).
- :class:`Sink`: where the session signals output (``wakeup``) and asks to close (``close``).
- The node calls :meth:`Session.handle_message` for each WebSocket message,
  :meth:`Session.deliver_publication` / :meth:`Session.deliver_join` /
  :meth:`Session.deliver_leave` for channel events, :meth:`Session.check_expiry` periodically,
  :meth:`Session.pop_message` to get what to send, and :meth:`Session.on_close` once the
  connection is gone.

Invariants:

1. Before a successful ``connect`` only ``connect`` is executed; anything else gets error 101,
   then the session asks to close with 4501.
2. Exactly one reply per valid command; errors raised as :class:`HubError` become error
   replies, other exceptions error 100 (logged). Nothing raises out of ``handle_message``.
3. A channel's pushes never precede its subscribe reply, and no publication is lost or
   duplicated between the history read and the live subscription: the session registers the
   subscription as *pending* before asking the node to add it; live publications arriving
   while pending are buffered; once the reply is queued, buffered publications with an offset
   above the position returned (or recovered) are delivered, the others dropped. Afterwards
   publications at or below the last delivered offset of the same epoch are dropped as
   duplicates.
4. Once a close is requested, nothing more is executed or queued.
5. On a delta subscription, a publication is queued as a delta only against the publication
   queued just before it for that client, which the client will have read (:mod:`.delta`).
"""

from __future__ import annotations

import inspect
import logging
import math
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, Final, Literal

from .auth import ConnectionClaims
from .broker import ClientInfo, Publication, StreamPosition
from .codes import DisconnectCode, ErrorCode, HubError
from .delta import DeltaChain, negotiate
from .options import Channel, NamespaceOptions, parse_channel, static_access
from .queue import OutgoingQueue
from .ratelimit import RejectionWindow, TokenBucket
from .recovery import subscribe_position
from .seams import CommandObserver, Node, RpcHandler, Sink
from .wire import (
    DATA_ERRORS,
    JSON,
    BadFrame,
    Codec,
    Command,
    ConnectCommand,
    ConnectResult,
    ErrorBody,
    HistoryCommand,
    HistoryResult,
    InfoFrame,
    JoinPush,
    LeavePush,
    MessagePush,
    PingCommand,
    PresenceCommand,
    PresenceEntry,
    PresenceResult,
    PresenceStatsCommand,
    PresenceStatsResult,
    PubFrames,
    PublishCommand,
    PublishResult,
    RefreshCommand,
    RefreshResult,
    Reply,
    RpcCommand,
    RpcResult,
    SubscribeCommand,
    SubscribeResult,
    UnsubscribeCommand,
    UnsubscribePush,
    check_both,
    publication_frame,
)

__all__ = ["CommandObserver", "Node", "RpcHandler", "Session", "Sink"]  # seams re-exported

logger = logging.getLogger(__name__)


#: ``history`` defaults and maximum (``docs/protocol.md`` section 4).
HISTORY_DEFAULT_LIMIT: Final = 100
HISTORY_MAX_LIMIT: Final = 1000
#: The largest ``ttl`` reported (about 68 years: a 32-bit signed integer in any client).
MAX_TTL: Final = 2**31 - 1


@dataclass(slots=True, eq=False)
class _Pending:
    offset: int
    epoch: str
    key: str | None
    frame: bytes
    serial: int = 0  # the PubFrames' serial


@dataclass(slots=True, eq=False)
class _Subscription:
    channel: Channel
    ns: NamespaceOptions
    info: ClientInfo
    pending: list[_Pending] | None = field(default_factory=list)  # None once active
    pending_bytes: int = 0
    epoch: str = ""
    offset: int = 0
    chain: DeltaChain | None = None  # with delta compression


_REPLIED: Final = object()


class Session:
    """The protocol state of one connection (see the module docstring for the invariants).

    Args:
        node: the node (engines, options, callbacks, subscription registry).
        sink: where to signal output and close requests.
        codec: the codec negotiated by subprotocol (JSON by default).
        observer: called after each command with its method and duration (wall time spent in
            the session, awaits included); ``None`` measures nothing.
        url_token: a connection token given in the endpoint's URL (``?token=``), used by a
            ``connect`` that carries none.
        credentials: who the connection is, established by its transport (e.g. from the host
            application's cookie, :mod:`.asgi`): ``connect`` then needs no token and ignores
            one; a :class:`HubError` instead refuses ``connect`` with it.
    """

    def __init__(
        self,
        node: Node,
        sink: Sink,
        codec: Codec = JSON,
        observer: CommandObserver | None = None,
        *,
        url_token: str | None = None,
        credentials: ConnectionClaims | HubError | None = None,
    ) -> None:
        self.node = node
        self.url_token = url_token
        self.credentials = credentials
        self.sink = sink
        self.codec = codec
        self.observer = observer
        options = node.options
        self.options = options
        self.queue = OutgoingQueue(max(ns.queue_max_bytes for ns in options.namespaces.values()))
        self.client = uuid.uuid4().hex
        self.user = ""
        self.info: Any = None
        self.connected = False
        self.closed = False
        self.expires_at: float | None = None
        self.created_at = node.clock()
        self.close_code: int | None = None
        self._claim_channels: frozenset[str] = frozenset()
        self._subs: dict[str, _Subscription] = {}
        self._bad_frames = 0
        self._close_after_reply: tuple[int, str] | None = None
        self._commands = TokenBucket(
            options.commands_rate.rate, options.commands_rate.burst, node.clock
        )
        self._publications = TokenBucket(
            options.publications_rate.rate, options.publications_rate.burst, node.clock
        )
        self._rejections = RejectionWindow(
            options.rate_limit_disconnect_after, options.rate_limit_window, node.clock
        )

    # -- node-facing API ----------------------------------------------------------------------

    @property
    def channels(self) -> list[str]:
        """The channels this session is subscribed to (pending subscriptions included)."""
        return list(self._subs)

    def client_info(self) -> ClientInfo:
        """Who this connection is."""
        return ClientInfo(self.client, self.user, self.info)

    async def handle_message(self, message: str | bytes) -> None:
        """Decode one WebSocket message and execute its commands in order.

        Replies are queued (then :meth:`Sink.wakeup`). Never raises on any input: invalid
        frames get error 107 (when their ``id`` can be read) and, after
        ``options.max_bad_frames`` of them, the session asks to close with 4500.
        """
        if self.closed:
            return
        if len(message) > self.options.max_message_size:
            self._close(1009, "message too big")
            return
        for frame in self.codec.decode_commands(message):
            if self.closed:
                break
            if isinstance(frame, BadFrame):
                self._bad_frame(frame)
            else:
                await self._handle_command(frame)
        self.sink.wakeup()

    def deliver_publication(
        self, channel: str, publication: Publication, frames: PubFrames | None = None
    ) -> bool:
        """Queue a live publication of ``channel`` for this session.

        Args:
            frames: the publication's shared encodings (one :class:`PubFrames` per publication,
                passed to every subscriber); made here if ``None``.

        Returns:
            ``False`` when the client can't follow the channel any more: on a channel with
            history, the publication belongs to another epoch than the client's position, or
            skips offsets. The node must then ``await session.unsubscribe(channel)``, which
            asks the client to subscribe again with recovery (it then learns
            ``recovered: false`` rather than missing publications silently).

        Ignored when not subscribed; buffered while the subscription is pending; dropped when
        its offset was already delivered. On queue overflow the namespace's slow-consumer
        policy applies (close 4002, or conflation by ``(channel, key)``).
        """
        sub = self._subs.get(channel)
        if sub is None or self.closed:
            return True
        if frames is None:
            frames = PubFrames(channel, publication)
        codec = self.codec
        try:
            if sub.chain is None:
                frame = frames.for_codec(codec)
            else:
                frames.keep = True
                frame = frames.full_for(codec)
        except DATA_ERRORS:
            logger.warning("can't encode a publication of %r for %s", channel, codec.name)
            return not sub.ns.history_size  # with offsets, the client would see a gap
        pending = sub.pending
        if pending is None:
            if sub.chain is None and (not sub.ns.history_size or not publication.offset):
                # No position to follow and no delta (the common case): the shared message,
                # if it can go at once (see _deliver), else the queue.
                if not self.queue.size_bytes and self.sink.write_now(frames.message_for(codec)):
                    return True
                self._push(sub, publication.key, frame)
                return True
            item = _Pending(
                publication.offset, publication.epoch, publication.key, frame, frames.serial
            )
            return self._deliver(sub, item, frames)
        pending.append(
            _Pending(publication.offset, publication.epoch, publication.key, frame, frames.serial)
        )
        sub.pending_bytes += len(frame)
        if sub.pending_bytes > sub.ns.queue_max_bytes:
            self._close(DisconnectCode.SLOW_CONSUMER, "slow consumer")
        return True

    def deliver_join(self, channel: str, info: ClientInfo) -> None:
        """Queue a ``join`` push if subscribed to ``channel`` with join/leave on."""
        self._deliver_event(channel, JoinPush(channel=channel, info=_info(info)))

    def deliver_leave(self, channel: str, info: ClientInfo) -> None:
        """Queue a ``leave`` push if subscribed to ``channel`` with join/leave on."""
        self._deliver_event(channel, LeavePush(channel=channel, info=_info(info)))

    def deliver_message(self, data: Any) -> None:
        """Queue a ``message`` push (application data sent to this connection)."""
        if self.connected and not self.closed:
            self._queue(self.codec.encode_one(MessagePush(data=data)))
            self.sink.wakeup()

    async def unsubscribe(
        self, channel: str, code: int = 2500, reason: str = "resubscribe"
    ) -> None:
        """Remove this session from ``channel`` on the hub's initiative; push ``unsubscribe``.

        2500 asks the client to resubscribe with recovery (e.g. after the broker lost messages).
        """
        sub = self._subs.pop(channel, None)
        if sub is None:
            return
        await self._drop_subscription(channel, sub)
        self._queue(
            self.codec.encode_one(UnsubscribePush(channel=channel, code=code, reason=reason))
        )
        self.sink.wakeup()

    def close(self, code: int, reason: str) -> None:
        """End the connection on the node's or application's initiative (``code``: section 7).

        Nothing more is executed or queued; :meth:`Sink.close` is called (once) with ``code``.
        Does nothing when a close was already requested.
        """
        self._close(code, reason)

    def pop_message(self, max_bytes: int) -> str | bytes | None:
        """Take queued frames (about ``max_bytes``, at least one) as one WebSocket message.

        Returns ``str`` (a text frame) for JSON, ``bytes`` (a binary frame) for MessagePack, or
        ``None`` when nothing is queued.
        """
        batch = self.queue.pop_batch(max_bytes)
        return self.codec.join(batch) if batch else None

    def check_expiry(self, now: float) -> None:
        """Enforce deadlines at time ``now``; the node calls it periodically (e.g. every second).

        Asks to close with 4501 when ``connect`` didn't come within ``connect_timeout``, and
        with 4004 when the credentials expired without ``refresh``.
        """
        if self.closed:
            return
        if not self.connected and now - self.created_at >= self.options.connect_timeout:
            self._close(DisconnectCode.UNAUTHORIZED, "connect timeout")
        elif self.expires_at is not None and now >= self.expires_at + self._leeway():
            self._close(DisconnectCode.TOKEN_EXPIRED, "token expired")

    def presence_entries(self) -> list[tuple[str, ClientInfo]]:
        """``(channel, info)`` of the presence entries this session keeps, for refreshing.

        After refreshing one, the caller checks :meth:`keeps_presence`: a subscription dropped
        meanwhile (its removal may have reached the engine first) needs its entry removed
        again.
        """
        return [
            (name, sub.info)
            for name, sub in self._subs.items()
            if sub.ns.presence and self._is_live(name, sub)
        ]

    def keeps_presence(self, channel: str) -> bool:
        """Whether this session still has a presence entry in ``channel``."""
        sub = self._subs.get(channel)
        return sub is not None and sub.ns.presence and self._is_live(channel, sub)

    async def refresh_presence(self) -> None:
        """Refresh this session's presence entries (the node calls it well within their TTL).

        Entries of subscriptions dropped during the refresh are removed again.
        """
        for name, info in self.presence_entries():
            await self.node.presence.add(name, info)
            if not self.keeps_presence(name):
                await _logged(self.node.presence.remove(name, self.client), name)

    def _is_live(self, name: str, sub: _Subscription) -> bool:
        return not self.closed and self._subs.get(name) is sub and sub.pending is None

    async def on_close(self) -> None:
        """Clean up once the connection is gone: subscriptions, presence, leave announcements.

        Idempotent. Errors of the engines are logged, not raised.
        """
        self.closed = True
        subs, self._subs = self._subs, {}
        for name, sub in subs.items():
            await self._drop_subscription(name, sub)

    # -- dispatch ------------------------------------------------------------------------------

    async def _handle_command(self, command: Command) -> None:
        observer = self.observer
        started = time.perf_counter() if observer is not None else 0.0
        try:
            result = await self._execute(command)
            if result is not _REPLIED:
                self._reply(command.id, result)
        except HubError as exc:
            self._reply_error(command.id, exc)
        except Exception:
            logger.exception("command %s failed", type(command).__name__)
            self._reply_error(command.id, HubError(ErrorCode.INTERNAL))
        if observer is not None:
            observer(_METHODS[type(command)], time.perf_counter() - started)
        if self._close_after_reply is not None:
            self._close(*self._close_after_reply)

    async def _execute(self, command: Command) -> Any:
        if not self.connected and not isinstance(command, ConnectCommand):
            self._close_after_reply = (DisconnectCode.UNAUTHORIZED, "connect first")
            raise HubError(ErrorCode.UNAUTHORIZED, "connect first")
        if not self._commands.take():
            self._rate_limited()
        handler = _HANDLERS[type(command)]
        return await handler(self, command)

    def _rate_limited(self) -> None:
        if self._rejections.record():
            self._close_after_reply = (DisconnectCode.TOO_MANY_REQUESTS, "too many requests")
        raise HubError(ErrorCode.TOO_MANY_REQUESTS)

    def _bad_frame(self, frame: BadFrame) -> None:
        logger.debug("bad frame from %s: %s", self.client, frame.reason)
        if frame.id is not None:
            self._reply_error(frame.id, HubError(ErrorCode.BAD_REQUEST))
        self._bad_frames += 1
        if self._bad_frames >= self.options.max_bad_frames:
            self._close(DisconnectCode.BAD_REQUEST, "bad request")

    # -- commands ------------------------------------------------------------------------------

    async def _connect(self, command: ConnectCommand) -> object:
        if self.connected:
            raise HubError(ErrorCode.BAD_REQUEST, "already connected")
        now = self.node.clock()
        value = self.codec.value(command.data)
        try:
            claims = self._authenticate(command.token or self.url_token, now)
            _check_info(claims.info, ErrorCode.UNAUTHORIZED)
            self.user, self.info = claims.user, claims.info
            data = await self.node.on_connect(self, value)
        except HubError as exc:
            # Refused for good: close (4004 asks for a new token). A temporary refusal (the
            # application's callback may raise one) leaves the connection open for a retry.
            if exc.code == ErrorCode.TOKEN_EXPIRED:
                self._close_after_reply = (DisconnectCode.TOKEN_EXPIRED, "token expired")
            elif not exc.temporary:
                self._close_after_reply = (DisconnectCode.UNAUTHORIZED, "unauthorized")
            raise
        self.expires_at = claims.expires_at
        self._claim_channels = frozenset(claims.channels)
        result = ConnectResult(
            client=self.client,
            user=self.user,
            expires=self.expires_at is not None,
            ttl=self._ttl(now),
            ping=math.ceil(self.options.ping_interval),
            node=self.node.node_name,
            data=data,
        )
        # Encoded before the session counts as connected: if the callback's data can't be
        # encoded, the client gets error 100 and may send connect again.
        reply = self.codec.encode_one(Reply(id=command.id, result=result))
        self.connected = True
        self._queue(reply)
        return _REPLIED

    def _authenticate(self, token: str | None, now: float) -> ConnectionClaims:
        if isinstance(self.credentials, HubError):
            raise self.credentials
        if self.credentials is not None:
            return self.credentials
        if token is None:
            if not self.options.allow_anonymous:
                raise HubError(ErrorCode.UNAUTHORIZED, "token required")
            return ConnectionClaims(user="")
        verifier = self.node.verifier
        if verifier is None:
            raise HubError(ErrorCode.UNAUTHORIZED, "tokens not accepted")
        return verifier.verify_connection(token, now)

    async def _subscribe(self, command: SubscribeCommand) -> object:
        channel = parse_channel(command.channel)
        ns = self.options.namespace(channel)
        if channel.full in self._subs:
            raise HubError(ErrorCode.ALREADY_SUBSCRIBED)
        if len(self._subs) >= self.options.max_subscriptions_per_client:
            raise HubError(ErrorCode.LIMIT_EXCEEDED, "too many subscriptions")
        chain = DeltaChain() if negotiate(command.delta, ns) else None
        info = await self._authorize(channel, ns, command)
        if channel.full in self._subs:  # another subscribe got there during the callback
            raise HubError(ErrorCode.ALREADY_SUBSCRIBED)
        sub = self._subs[channel.full] = _Subscription(channel, ns, info, chain=chain)
        present = False
        try:
            await self.node.add_subscription(self, channel.full)
            self._check_still(sub)
            result = await self._position(sub, command)
            result.delta = True if chain is not None else None
            if ns.presence:
                present = True
                await self.node.presence.add(channel.full, info)
            self._check_still(sub)
            reply = self._encode_subscribed(command.id, result)
        except BaseException:
            await self._abandon(sub, present)
            raise
        self._queue(reply)
        followed = self._activate(sub)
        if ns.join_leave:
            await self._announce("join", channel.full, info)
        if not followed:
            await self.unsubscribe(channel.full)
        return _REPLIED

    def _encode_subscribed(self, id: int, result: SubscribeResult) -> bytes:
        """The subscribe reply; ``recovered: false`` if the recovered publications can't be
        encoded for this client (all or nothing: it must not miss one)."""
        try:
            return self.codec.encode_one(Reply(id=id, result=result))
        except DATA_ERRORS:
            if not result.publications:
                raise
            logger.warning("can't encode recovered publications for %s", self.codec.name)
            result.recovered, result.publications = False, None
            return self.codec.encode_one(Reply(id=id, result=result))

    async def _abandon(self, sub: _Subscription, present: bool) -> None:
        """Undo a subscription that failed before its reply (registry and presence)."""
        name = sub.channel.full
        if self._subs.get(name) is sub:
            del self._subs[name]
        # Always: a concurrent unsubscribe or close may have dropped ``sub`` already, but
        # not the registration or presence entry this subscribe made afterwards.
        await _logged(self.node.remove_subscription(self, name), name)
        if present:
            await _logged(self.node.presence.remove(name, self.client), name)

    def _check_still(self, sub: _Subscription) -> None:
        """Raise if ``sub`` was dropped meanwhile (unsubscribe or close during an await)."""
        if self.closed or self._subs.get(sub.channel.full) is not sub:
            raise HubError(ErrorCode.NOT_SUBSCRIBED, "unsubscribed meanwhile")

    async def _authorize(
        self, channel: Channel, ns: NamespaceOptions, command: SubscribeCommand
    ) -> ClientInfo:
        """Check the right to subscribe; return the subscriber's info for presence/join."""
        info = self.info
        if channel.users is not None or channel.full in self._claim_channels:
            self._check_static(channel, ns)
        elif ns.subscribe == "token":
            info = self._verify_channel_token(channel, command.token)
        elif ns.subscribe == "callback":
            data = self.codec.value(command.data)
            if not await self.node.can_subscribe(self, channel.full, data):
                raise HubError(ErrorCode.PERMISSION_DENIED)
        else:
            self._check_static(channel, ns)
        return ClientInfo(self.client, self.user, info)

    def _verify_channel_token(self, channel: Channel, token: str | None) -> Any:
        verifier = self.node.verifier
        if token is None or verifier is None:
            raise HubError(ErrorCode.PERMISSION_DENIED, "channel token required")
        claims = verifier.verify_channel(token, self.user, channel.full, self.node.clock())
        _check_info(claims.info, ErrorCode.PERMISSION_DENIED)
        return claims.info if claims.info is not None else self.info

    def _check_static(self, channel: Channel, ns: NamespaceOptions) -> None:
        """Read access granted without token or callback: ``#`` users, claims, the policy.

        Raises:
            HubError: ``PERMISSION_DENIED`` (103).
        """
        if not static_access(channel, ns, self.user, self._claim_channels):
            raise HubError(ErrorCode.PERMISSION_DENIED)

    def _check_read(self, channel: Channel, ns: NamespaceOptions) -> None:
        """Access to publish, presence and history: subscribed, or static read access."""
        sub = self._subs.get(channel.full)
        if sub is None or sub.pending is not None:
            self._check_static(channel, ns)

    async def _position(self, sub: _Subscription, command: SubscribeCommand) -> SubscribeResult:
        """Read the channel's position (and missed publications); set ``sub``'s position."""
        result = await subscribe_position(
            self.node.broker,
            sub.ns,
            sub.channel.full,
            command,
            self.options.recovery_max_publications,
            payload=sub.chain is not None,
        )
        if result.epoch is not None:
            sub.epoch, sub.offset = result.epoch, result.offset or 0
        return result

    async def _unsubscribe(self, command: UnsubscribeCommand) -> dict[str, Any]:
        sub = self._subs.pop(command.channel, None)
        if sub is not None:
            await self._drop_subscription(command.channel, sub)
        return {}

    async def _publish(self, command: PublishCommand) -> PublishResult:
        channel = parse_channel(command.channel)
        ns = self.options.namespace(channel)
        if not ns.publish:
            raise HubError(ErrorCode.PERMISSION_DENIED, "publishing not allowed")
        self._check_read(channel, ns)
        if not command.data:
            raise HubError(ErrorCode.BAD_REQUEST, "data required")
        if len(command.data) > self.options.max_publication_size:
            raise HubError(ErrorCode.LIMIT_EXCEEDED, "data too large")
        if not self._publications.take():
            self._rate_limited()
        publication = Publication(
            data=self.codec.data(command.data), key=command.key, info=self.client_info()
        )
        position = await self.node.broker.publish(channel.full, publication, ns.history)
        return PublishResult(offset=position.offset or None, epoch=position.epoch or None)

    async def _presence(self, command: PresenceCommand) -> PresenceResult:
        name = self._presence_channel(command.channel)
        clients = await self.node.presence.get(name)
        entries = {cid: PresenceEntry(user=c.user, info=c.info) for cid, c in clients.items()}
        return PresenceResult(clients=entries)

    async def _presence_stats(self, command: PresenceStatsCommand) -> PresenceStatsResult:
        stats = await self.node.presence.stats(self._presence_channel(command.channel))
        return PresenceStatsResult(num_clients=stats.num_clients, num_users=stats.num_users)

    def _presence_channel(self, name: str) -> str:
        channel = parse_channel(name)
        ns = self.options.namespace(channel)
        if not ns.presence:
            raise HubError(ErrorCode.NOT_AVAILABLE, "presence off")
        self._check_read(channel, ns)
        return channel.full

    async def _history(self, command: HistoryCommand) -> HistoryResult:
        channel = parse_channel(command.channel)
        ns = self.options.namespace(channel)
        if not ns.history_size:
            raise HubError(ErrorCode.NOT_AVAILABLE, "history off")
        self._check_read(channel, ns)
        limit = HISTORY_DEFAULT_LIMIT if command.limit is None else command.limit
        since = command.since
        read = await self.node.broker.history(
            channel.full,
            since=StreamPosition(since.offset, since.epoch) if since else None,
            limit=min(limit, HISTORY_MAX_LIMIT),
            reverse=bool(command.reverse),
            history=ns.history,
        )
        if since is not None and since.epoch != read.position.epoch:
            raise HubError(ErrorCode.UNRECOVERABLE_POSITION)
        return HistoryResult(
            publications=[publication_frame(p) for p in read.publications],
            epoch=read.position.epoch,
            offset=read.position.offset,
        )

    async def _rpc(self, command: RpcCommand) -> RpcResult:
        handler = self.node.rpc_handlers.get(command.name)
        if handler is None:
            raise HubError(ErrorCode.METHOD_NOT_FOUND)
        result = handler(self, self.codec.value(command.data))
        if inspect.isawaitable(result):
            result = await result
        return RpcResult(data=result)

    async def _ping(self, command: PingCommand) -> dict[str, Any]:
        return {}

    async def _refresh(self, command: RefreshCommand) -> RefreshResult:
        verifier = self.node.verifier
        if verifier is None:
            raise HubError(ErrorCode.UNAUTHORIZED, "tokens not accepted")
        now = self.node.clock()
        claims = verifier.verify_connection(command.token, now)
        if claims.user != self.user:
            raise HubError(ErrorCode.UNAUTHORIZED, "token for another user")
        self.expires_at = claims.expires_at
        return RefreshResult(expires=self.expires_at is not None, ttl=self._ttl(now))

    # -- output --------------------------------------------------------------------------------

    def _reply(self, id: int, result: Any) -> None:
        self._queue(self.codec.encode_one(Reply(id=id, result=result)))

    def _reply_error(self, id: int, error: HubError) -> None:
        body = ErrorBody(code=error.code, message=error.message, temporary=error.temporary)
        self._queue(self.codec.encode_one(Reply(id=id, error=body)))

    def _queue(self, frame: bytes) -> None:
        if not self.closed and not self.queue.push(frame):
            self._close(DisconnectCode.SLOW_CONSUMER, "slow consumer")

    def _activate(self, sub: _Subscription) -> bool:
        """Deliver what arrived while ``sub`` was pending, after its position; go live.

        Returns ``False`` when the client can't follow the channel (see :meth:`_deliver`).
        """
        pending, sub.pending, sub.pending_bytes = sub.pending or [], None, 0
        return all(self._deliver(sub, item) for item in pending)

    def _deliver(self, sub: _Subscription, item: _Pending, frames: PubFrames | None = None) -> bool:
        """Send or queue a live publication; ``False`` (doing neither) when the client can't
        follow.

        On channels with history, the client tracks the epoch of its subscribe reply and the
        offsets that follow it; a publication of another epoch (the history was lost or
        expired) or one that skips offsets would leave it with a wrong position. Duplicates
        (an offset already delivered) are dropped. On a delta subscription, ``frames`` (given
        for publications that weren't buffered) may supply a delta instead of ``item.frame``.

        Otherwise, with ``frames`` and nothing queued, the publication's shared WebSocket
        message is offered to :meth:`Sink.write_now` first: written at once, it needs no queue
        entry and no wakeup of the writer. Else (or when the sink refuses) it is queued.
        """
        if sub.ns.history_size and item.offset:
            if item.epoch != sub.epoch or item.offset > sub.offset + 1:
                return False
            if item.offset <= sub.offset:
                return True  # a duplicate
            sub.offset = item.offset
        chain = sub.chain
        if chain is None:
            if (
                frames is not None
                and not self.queue.size_bytes
                and self.sink.write_now(frames.message_for(self.codec))
            ):
                return True
            self._push(sub, item.key, item.frame)
            return True
        frame = item.frame
        if frames is not None:
            conflate = sub.ns.slow_consumer == "conflate"
            frame = chain.frame(frames, self.codec, self.queue, conflate)
        replaced = self.queue.replaced
        pushed = self._push(sub, item.key, frame)
        chain.queued(item.serial, pushed and self.queue.replaced == replaced)
        return True

    def _push(self, sub: _Subscription, key: str | None, frame: bytes) -> bool:
        """Queue a publication's frame under ``sub``'s namespace's slow-consumer policy;
        ``False`` when it didn't fit (the session then closes with 4002)."""
        ns = sub.ns
        pushed = self.queue.push(
            frame,
            channel=sub.channel.full,
            key=key,
            conflate=ns.slow_consumer == "conflate",
            max_bytes=ns.queue_max_bytes,
        )
        if not pushed and not self.closed:
            self._close(DisconnectCode.SLOW_CONSUMER, "slow consumer")
        self.sink.wakeup()
        return pushed

    def _deliver_event(self, channel: str, push: JoinPush | LeavePush) -> None:
        sub = self._subs.get(channel)
        if sub is None or sub.pending is not None or not sub.ns.join_leave or self.closed:
            return
        try:
            frame = self.codec.encode_one(push)
        except DATA_ERRORS:
            logger.warning("can't encode a %s push of %r", push.__struct_config__.tag, channel)
            return
        self._queue(frame)
        self.sink.wakeup()

    def _close(self, code: int, reason: str) -> None:
        if not self.closed:
            self.closed = True
            self.close_code = code
            # A close frame's reason holds 123 bytes of UTF-8 at most (RFC 6455 section 5.5).
            self.sink.close(code, reason.encode()[:123].decode(errors="ignore"))

    # -- helpers -------------------------------------------------------------------------------

    async def _drop_subscription(self, name: str, sub: _Subscription) -> None:
        await _logged(self.node.remove_subscription(self, name), name)
        if sub.ns.presence:
            await _logged(self.node.presence.remove(name, self.client), name)
        if sub.ns.join_leave and sub.pending is None:
            await self._announce("leave", name, sub.info)

    async def _announce(
        self, kind: Literal["join", "leave"], channel: str, info: ClientInfo
    ) -> None:
        try:
            await self.node.announce(kind, channel, info)
        except Exception:
            logger.exception("announcing %s in %r failed", kind, channel)

    def _ttl(self, now: float) -> int | None:
        if self.expires_at is None:
            return None
        return min(max(0, int(self.expires_at - now)), MAX_TTL)

    def _leeway(self) -> float:
        verifier = self.node.verifier
        return verifier.leeway if verifier is not None else 0.0


def _check_info(info: Any, code: ErrorCode) -> None:
    """Refuse a token whose ``info`` claim some client couldn't receive (both encodings)."""
    try:
        check_both(info)
    except HubError as exc:
        raise HubError(code, "invalid token") from exc


def _info(info: ClientInfo) -> InfoFrame:
    return InfoFrame(client=info.client, user=info.user, info=info.info)


async def _logged(awaitable: Awaitable[None], channel: str) -> None:
    try:
        await awaitable
    except Exception:
        logger.exception("cleaning up the subscription to %r failed", channel)


_Handler = Callable[[Session, Any], Awaitable[Any]]
_HANDLERS: Final[dict[type, _Handler]] = {
    ConnectCommand: Session._connect,
    SubscribeCommand: Session._subscribe,
    UnsubscribeCommand: Session._unsubscribe,
    PublishCommand: Session._publish,
    PresenceCommand: Session._presence,
    PresenceStatsCommand: Session._presence_stats,
    HistoryCommand: Session._history,
    RpcCommand: Session._rpc,
    PingCommand: Session._ping,
    RefreshCommand: Session._refresh,
}
#: Each command's ``method`` name (the wire tag), for observers.
_METHODS: Final[dict[type, str]] = {
    cls: str(cls.__struct_config__.tag)  # type: ignore[attr-defined]
    for cls in _HANDLERS
}
