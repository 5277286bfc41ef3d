"""The hub's y-websocket endpoint: unmodified Yjs clients edit documents the hub keeps.

``new WebsocketProvider("ws://host:8765/yjs", "notes", doc)`` connects to ``/yjs/notes``:
the room ``notes`` is the hub channel ``yjs:notes`` (a room name with a ``:`` names the
channel itself, e.g. ``team:notes``, in any namespace listed in
:attr:`YjsOptions.namespaces`). Its params arrive as the query string: ``?token=JWT``.

Per connection (``docs/hub/yjs.md``):

1. **Authentication** as on the hub's own endpoint: a connection token in ``?token=`` (its
   ``sub``, ``exp``, ``channels`` and ``info`` claims), required unless the hub allows
   anonymous connections. Refusals send an auth message (y-websocket logs it), then close:
   4401 (no or bad token), 4004 (expired; also when it expires while connected), 4404 (not
   a room: an invalid name, or not in a Yjs namespace), 4403 (access denied), 1013 (too many
   documents open). y-websocket stops reconnecting on 4400-4499 only.
2. **Authorization** with the namespace's rules (``subscribe`` policy, user-private ``#``
   channels, the token's ``channels`` claim); **writing** needs ``publish = true`` in the
   namespace (or the ``can_write`` hook's yes): a read-only client's SyncStep2 and Update
   messages are dropped, it still syncs and shares its awareness.
3. The room loads (:mod:`.room`), then the server sends SyncStep1 and the awareness states.
4. Messages: SyncStep1 is answered with SyncStep2; writes and awareness go to the room;
   QueryAwareness is answered. A malformed message closes that connection only, with the
   code of :class:`~wsend.exceptions.InvalidYMessage` (1002, 1003, 1007); a message over
   :attr:`YjsOptions.max_message_size` with 1009.

Presence: with ``presence = true`` in the namespace, every Yjs connection is present in the
room's channel (hub clients see it with ``presence``) with the ``user`` field of its awareness
state as info (or its token's ``info``); with ``join_leave = true`` hub subscribers get
``join``/``leave``.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import urllib.parse
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any, Final

from ...exceptions import ConnectionClosed, InvalidYMessage
from ..auth import ConnectionClaims
from ..codes import DisconnectCode, ErrorCode, HubError
from ..node import Hub
from ..options import Channel, ConfigError, NamespaceOptions, parse_channel, static_access
from ..seams import Socket
from .protocol import (
    AuthMessage,
    AwarenessMessage,
    QueryAwareness,
    SyncStep1,
    parse_message,
    permission_denied,
)
from .room import Room, YConnection
from .store import MemoryStore, YStore

__all__ = ["CanWrite", "YjsOptions", "YjsServer"]

logger = logging.getLogger("wsend.hub.yjs")

#: ``can_write(user, channel) -> bool`` (sync or async): whether a client may write a room.
CanWrite = Callable[[str, str], bool | Awaitable[bool]]

# How often token expiry and stale awareness states are checked.
_TICK: Final = 1.0


@dataclass(frozen=True, slots=True)
class YjsOptions:
    """Limits and rules of the Yjs endpoint.

    Attributes:
        namespaces: the hub namespaces whose channels are Yjs rooms (each must be configured
            in the hub's options). A room name without ``:`` is in the first one.
        max_message_size: the largest message accepted (1009 beyond). A client's first
            SyncStep2 carries all it has that the server lacks, so this bounds the document
            a client can bring to an empty server.
        max_document_size: the largest document (its encoded size); a write that would
            pass it closes the writer with 4413 (y-websocket then stops retrying).
        max_rooms: documents loaded at once in this process; a client of another one is
            closed with 1013 (try again later).
        max_awareness_clients: awareness client ids one connection may send (y-websocket
            sends one: its document's); 1008 beyond.
        unload_after: seconds an empty room stays loaded (a reload or a reconnect finds it).
        compact_after: stored updates of a room past which its log is compacted.
        awareness_timeout: seconds after which a state not renewed is removed (y-protocols:
            30; clients renew theirs every 15).
    """

    namespaces: tuple[str, ...] = ("yjs",)
    # 2 MiB: 4 times a novel's text with its editing history; y-websocket's server has no
    # limit, Hocuspocus none by default either.
    max_message_size: int = 2 << 20
    # 16 MiB: a document this size takes about 100 ms to load and encode.
    max_document_size: int = 16 << 20
    max_rooms: int = 1000
    max_awareness_clients: int = 8
    unload_after: float = 30.0
    compact_after: int = 500
    awareness_timeout: float = 30.0

    def __post_init__(self) -> None:
        if not self.namespaces:
            raise ConfigError("namespaces", "needs at least one namespace")
        for name in ("max_message_size", "max_document_size", "max_rooms"):
            _check_positive(name, getattr(self, name))
        for name in ("max_awareness_clients", "compact_after", "awareness_timeout"):
            _check_positive(name, getattr(self, name))
        if self.unload_after < 0:
            raise ConfigError("unload_after", "must be >= 0")

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> YjsOptions:
        """Options from a mapping (the ``[yjs]`` table of ``wsend serve``'s configuration).

        Raises:
            ConfigError: an unknown key or a bad value, named ``yjs.<key>``.
        """
        known = {f.name for f in dataclasses.fields(cls)}
        kwargs = dict(data)
        for key, value in kwargs.items():
            if key not in known:
                raise ConfigError(f"yjs.{key}", "unknown key")
            if key == "namespaces":
                if not isinstance(value, list | tuple) or not all(
                    isinstance(v, str) for v in value
                ):
                    raise ConfigError("yjs.namespaces", "expected a list of strings")
                kwargs[key] = tuple(value)
            elif isinstance(value, bool) or not isinstance(value, int | float):
                raise ConfigError(f"yjs.{key}", "expected a number")
        try:
            return cls(**kwargs)
        except ConfigError as exc:
            raise ConfigError(f"yjs.{exc.key}", str(exc).split(": ", 1)[1]) from exc


class YjsServer:
    """The y-websocket endpoint of ``hub`` (see the module docstring).

    Args:
        hub: the hub whose auth rules, engines (fan-out between nodes, presence) and
            namespaces the rooms use.
        options: limits and the Yjs namespaces.
        store: where documents are kept (:class:`~.store.SQLiteStore` under
            ``wsend serve``); a :class:`~.store.MemoryStore` by default.
        can_write: decides who may write a room; by default the namespace's ``publish``.
        initial: ``initial(channel) -> update | None``, the first update of a new document
            (stored when a room loads with nothing stored). Updates commute and repeat
            harmlessly, so it must be the same bytes on every node.
        prefix: the endpoint's path: rooms are ``<prefix>/<room>``.

    Raises:
        ConfigError: a Yjs namespace isn't configured in the hub.
    """

    def __init__(
        self,
        hub: Hub,
        options: YjsOptions | None = None,
        *,
        store: YStore | None = None,
        can_write: CanWrite | None = None,
        initial: Callable[[str], bytes | None] | None = None,
        prefix: str = "/yjs",
    ) -> None:
        self.hub = hub
        self.options = options or YjsOptions()
        self.store: YStore = store if store is not None else MemoryStore()
        self.can_write = can_write
        self.initial = initial
        self.prefix = prefix.rstrip("/")
        for ns in self.options.namespaces:
            if ns not in hub.options.namespaces:
                raise ConfigError(f"yjs.namespaces.{ns}", "not a namespace of the hub")
        self.rooms: dict[str, Room] = {}
        self._handlers: set[asyncio.Task[Any]] = set()
        self._background: set[asyncio.Task[Any]] = set()
        self._ticker: asyncio.Task[None] | None = None
        self._refresher: asyncio.Task[None] | None = None
        self._closing = False

    # -- routing --------------------------------------------------------------------------------

    def handles(self, path: str) -> bool:
        """Whether ``path`` (a request's, without its query) is under this endpoint."""
        return path.startswith(self.prefix + "/")

    def room_channel(self, path: str) -> Channel:
        """The channel of the room at ``path`` (``<prefix>/<room>``, percent-decoded).

        Raises:
            HubError: 102, not a valid channel name, or not in a Yjs namespace.
        """
        name = urllib.parse.unquote(path[len(self.prefix) + 1 :])
        if ":" not in name:
            name = f"{self.options.namespaces[0]}:{name}"
        channel = parse_channel(name)
        if channel.namespace not in self.options.namespaces:
            raise HubError(ErrorCode.UNKNOWN_CHANNEL, "not a Yjs namespace")
        return channel

    # -- connections ----------------------------------------------------------------------------

    async def handler(self, ws: Socket) -> None:
        """Serve one y-websocket client until it leaves (the endpoint's WebSocket handler)."""
        await self.start()
        task = asyncio.current_task()
        if task is not None:
            self._handlers.add(task)
        try:
            conn, room = await self._admit(ws)
            if conn is not None and room is not None:
                await self._serve(conn, room)
        finally:
            self._handlers.discard(task)

    async def _admit(self, ws: Socket) -> tuple[YConnection | None, Room | None]:
        """Authenticate and authorize ``ws``, and find its room; close it if refused."""
        request = ws.request
        path = request.path if request is not None else ""
        try:
            if self._closing:
                raise HubError(ErrorCode.NOT_AVAILABLE, "shutting down")
            channel = self.room_channel(path)
            ns = self.hub.options.namespace(channel)
            claims = self._authenticate(ws)
            if not static_access(channel, ns, claims.user, frozenset(claims.channels)):
                raise HubError(ErrorCode.PERMISSION_DENIED)
            writable = await self._writable(claims.user, channel, ns)
            room = self._room(channel, ns)
        except HubError as exc:
            await _refuse(ws, exc)
            return None, None
        conn = YConnection(
            ws,
            user=claims.user,
            info=claims.info,
            writable=writable,
            expires_at=claims.expires_at,
            queue_max_bytes=ns.queue_max_bytes,
        )
        return conn, room

    def _authenticate(self, ws: Socket) -> ConnectionClaims:
        request = ws.request
        tokens = request.query.get("token") if request is not None else None
        if not tokens:
            if not self.hub.options.allow_anonymous:
                raise HubError(ErrorCode.UNAUTHORIZED, "token required")
            return ConnectionClaims(user="")
        verifier = self.hub.verifier
        if verifier is None:
            raise HubError(ErrorCode.UNAUTHORIZED, "tokens not accepted")
        return verifier.verify_connection(tokens[0], self.hub.clock())

    async def _writable(self, user: str, channel: Channel, ns: NamespaceOptions) -> bool:
        if self.can_write is None:
            return ns.publish
        result = self.can_write(user, channel.full)
        if isinstance(result, Awaitable):
            result = await result
        return bool(result)

    def _room(self, channel: Channel, ns: NamespaceOptions) -> Room:
        room = self.rooms.get(channel.full)
        if room is None:
            if len(self.rooms) >= self.options.max_rooms:
                raise HubError(ErrorCode.LIMIT_EXCEEDED, "too many documents open")
            room = self.rooms[channel.full] = Room(self, channel.full, ns)
            self._spawn(self._load(room))
        return room

    async def _load(self, room: Room) -> None:
        try:
            await room.load()
        except Exception:
            logger.exception("loading %r failed", room.name)
            if self.rooms.get(room.name) is room:
                del self.rooms[room.name]
            with contextlib.suppress(Exception):
                await self.hub.remove_subscription(room, room.name)

    async def _serve(self, conn: YConnection, room: Room) -> None:
        writer = asyncio.get_running_loop().create_task(conn.write_loop())
        joined = False
        try:
            try:
                await asyncio.shield(room.ready)
            except Exception:
                conn.close(1011, "document unavailable")
                return
            if room.closed:  # unloaded while this client waited: try again
                conn.close(DisconnectCode.RECONNECT, "reconnect")
                return
            room.join(conn)
            joined = True
            await self.update_presence(room, conn, None, joining=True)
            await self._read(conn, room)
        except InvalidYMessage as exc:
            conn.close(exc.code, str(exc))
        except Exception:
            logger.exception("yjs connection failed")
            conn.close(1011, "server error")
        finally:
            conn.close(1000, "")
            with contextlib.suppress(Exception):
                await asyncio.wait_for(asyncio.shield(writer), 1.0)
            writer.cancel()
            if joined:
                await self._leave(room, conn)

    async def _read(self, conn: YConnection, room: Room) -> None:
        limit = self.options.max_message_size
        try:
            async for message in conn.ws:
                if conn.closing is not None:
                    return
                if len(message) > limit:
                    conn.close(1009, "message too big")
                    return
                await self._handle(conn, room, parse_message(message))
        except ConnectionClosed:
            pass

    async def _handle(self, conn: YConnection, room: Room, message: Any) -> None:
        if isinstance(message, SyncStep1):
            room.answer_step1(conn, message.state_vector)
        elif isinstance(message, AwarenessMessage):
            await room.awareness_update(conn, message.update)
        elif isinstance(message, QueryAwareness):
            room.query_awareness(conn)
        elif isinstance(message, AuthMessage):
            pass  # only servers send these
        elif conn.writable:  # SyncStep2 or Update
            await room.write(conn, message.update)

    async def _leave(self, room: Room, conn: YConnection) -> None:
        try:
            await room.leave(conn)
        except Exception:
            logger.exception("leaving %r failed", room.name)
        if room.ns.presence:
            with contextlib.suppress(Exception):
                await self.hub.presence.remove(room.name, conn.id)
        if room.ns.join_leave:
            with contextlib.suppress(Exception):
                await self.hub.announce("leave", room.name, conn.client_info())

    async def update_presence(
        self, room: Room, conn: YConnection, user: Any, *, joining: bool = False
    ) -> None:
        """Record ``conn`` in the room's presence, with its awareness ``user`` as info when
        it has one (the token's ``info`` otherwise); announce a join the first time."""
        info = user if user is not None else conn.info
        changed = info != conn.info
        if changed:
            conn.info = info
        if not (joining or changed):
            return
        try:
            if room.ns.presence:
                await self.hub.presence.add(room.name, conn.client_info())
            if joining and room.ns.join_leave:
                await self.hub.announce("join", room.name, conn.client_info())
        except Exception:
            logger.exception("presence of %r failed", room.name)

    # -- lifecycle ------------------------------------------------------------------------------

    async def start(self) -> None:
        """Start the hub and the periodic checks (idempotent)."""
        await self.hub.start()
        if self._ticker is None:
            loop = asyncio.get_running_loop()
            self._ticker = loop.create_task(self._tick())
            self._refresher = loop.create_task(self._refresh_presence())

    def _spawn(self, coroutine: Awaitable[None]) -> None:
        task = asyncio.ensure_future(coroutine)
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    def schedule_unload(self, room: Room) -> None:
        """Unload ``room`` now if it is still empty (its grace period ended)."""
        room.unload_timer = None
        if room.conns or room.closed or self.rooms.get(room.name) is not room:
            return
        del self.rooms[room.name]
        self._spawn(room.unload())

    async def _tick(self) -> None:
        while True:
            await asyncio.sleep(_TICK)
            self.check_expiry(self.hub.clock())

    def check_expiry(self, now: float) -> None:
        """Close connections whose token expired (4004); remove stale awareness states."""
        verifier = self.hub.verifier
        leeway = verifier.leeway if verifier is not None else 0.0
        for room in list(self.rooms.values()):
            for conn in list(room.conns):
                if conn.expires_at is not None and now >= conn.expires_at + leeway:
                    conn.close(DisconnectCode.TOKEN_EXPIRED, "token expired")
            room.expire_awareness(self.options.awareness_timeout)

    async def _refresh_presence(self) -> None:
        while True:
            await asyncio.sleep(self.hub.presence_refresh_interval)
            await self.refresh_presence()

    async def refresh_presence(self) -> None:
        """Keep the presence entries of this node's Yjs connections from expiring."""
        for room in list(self.rooms.values()):
            if not room.ns.presence:
                continue
            for conn in list(room.conns):
                try:
                    await self.hub.presence.add(room.name, conn.client_info())
                except Exception as exc:
                    logger.warning("refreshing presence failed: %s", exc)
                    return

    async def close(self, code: int = DisconnectCode.SHUTDOWN, reason: str = "shutdown") -> None:
        """Close every connection, unload every room (compacting its log), close the store."""
        self._closing = True
        for room in list(self.rooms.values()):
            for conn in list(room.conns):
                conn.close(code, reason)
        if self._handlers:
            await asyncio.wait(list(self._handlers), timeout=3.0)
        for task in (self._ticker, self._refresher):
            if task is not None:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
        self._ticker = self._refresher = None
        for room in list(self.rooms.values()):
            if room.unload_timer is not None:
                room.unload_timer.cancel()
            self._spawn(room.unload())
        self.rooms.clear()
        if self._background:
            await asyncio.wait(list(self._background), timeout=5.0)
        await self.store.close()


async def _refuse(ws: Socket, error: HubError) -> None:
    """Tell a refused client why (an auth message), then close with the matching code.

    y-websocket (3.x) gives up for good on 4400-4499 (they mirror HTTP's 4xx) and reconnects
    on any other code: 4401 (no or bad token) and 4403 (no access) end its attempts; 4004 (an
    expired token: give a new one in its ``params``), 1013 (too many documents open) and 4001
    (shutting down) let it retry.
    """
    code = _REFUSALS.get(error.code, 4403)
    with contextlib.suppress(ConnectionClosed):
        await ws.send(permission_denied(error.message))
        await ws.close(code, error.message[:123])


_REFUSALS: Final[dict[int, int]] = {
    ErrorCode.TOKEN_EXPIRED: int(DisconnectCode.TOKEN_EXPIRED),
    ErrorCode.UNAUTHORIZED: 4401,
    ErrorCode.UNKNOWN_CHANNEL: 4404,
    ErrorCode.LIMIT_EXCEEDED: 1013,
    ErrorCode.NOT_AVAILABLE: int(DisconnectCode.SHUTDOWN),
}


def _check_positive(key: str, value: float) -> None:
    if value <= 0:
        raise ConfigError(key, "must be > 0")
