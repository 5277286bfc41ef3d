"""One Yjs document on one node: its pycrdt ``Doc``, its connections and its awareness.

A :class:`Room` is created when the first client of a document connects to this node. It
subscribes to the document's hub channel, *then* loads the stored updates, and only then
answers the clients (they wait for :attr:`Room.ready`): an update published by another node
during the load is applied too (updates commute), and no client is ever told the document is
empty because the store was slow.

Writes (SyncStep2 and Update messages of a client allowed to write):

1. applied to the ``Doc`` (pycrdt refuses what it can't decode: close 1007);
2. queued to the room's other connections on this node;
3. appended to the store by this node (the origin node writes; other nodes only apply);
4. published on the hub channel ``{"n": room id, "u": update}``: the rooms of other nodes
   apply it and queue it to their connections.

Awareness updates take the same path (``{"n": room id, "a": update}``), without the store;
each node keeps the states it knows, with their clocks (the y-protocols rules: a greater clock
wins; at an equal clock, a removal wins), so that a late joiner gets them all and states
whose connection or node went away are removed after ``awareness_timeout``.

A :class:`Room` is also a subscriber of the hub's registry (``deliver_publication`` and
friends, like a session): if the broker lost publications (``unsubscribe``), the room reads
the store again and sends its connections what they missed.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
import uuid
from collections import deque
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Final

import pycrdt

from ...exceptions import ConnectionClosed, InvalidYMessage
from ..broker import ClientInfo, Publication
from ..codes import DisconnectCode
from ..options import NamespaceOptions
from ..seams import Socket
from ..wire import PubFrames
from .protocol import (
    AwarenessEntry,
    awareness_message,
    encode_awareness,
    parse_awareness,
    sync_step1,
    sync_step2,
    sync_update,
)

if TYPE_CHECKING:
    from .server import YjsServer

__all__ = ["Room", "YConnection"]

logger = logging.getLogger("wsend.hub.yjs")

#: An empty update (no structs, no deletions): what a peer that lacks nothing gets.
EMPTY_UPDATE: Final = b"\x00\x00"


@dataclass(slots=True)
class _State:
    clock: int
    state: str  # JSON text; "null" once removed (kept as a tombstone with its clock)
    owner: YConnection | None  # the local connection that sent it; None: another node's
    updated: float


class YConnection:
    """One client of a room on this node: its identity, rights and outgoing queue.

    Messages are queued (:meth:`send`) and written by :meth:`write_loop`, so a slow client
    never holds up the others: past ``queue_max_bytes`` queued (an empty queue takes any one
    message), it is closed with 4002.
    """

    def __init__(
        self,
        ws: Socket,
        *,
        user: str,
        info: Any,
        writable: bool,
        expires_at: float | None,
        queue_max_bytes: int,
    ) -> None:
        self.ws = ws
        self.id = uuid.uuid4().hex
        self.user = user
        self.info = info
        self.writable = writable
        self.expires_at = expires_at
        self.clients: set[int] = set()  # the awareness client ids it sent
        self.queue_max_bytes = queue_max_bytes
        self._queue: deque[bytes] = deque()
        self._queued = 0
        self._event = asyncio.Event()
        self.closing: tuple[int, str] | None = None

    def client_info(self) -> ClientInfo:
        """Who this connection is, for presence and join/leave."""
        return ClientInfo(self.id, self.user, self.info)

    def send(self, message: bytes) -> None:
        """Queue ``message``; close with 4002 when the queue is full."""
        if self.closing is not None:
            return
        if self._queue and self._queued + len(message) > self.queue_max_bytes:
            self.close(DisconnectCode.SLOW_CONSUMER, "slow consumer")
            return
        self._queue.append(message)
        self._queued += len(message)
        self._event.set()

    def close(self, code: int, reason: str) -> None:
        """Close after what is queued (4002: at once); idempotent."""
        if self.closing is None:
            self.closing = (code, reason)
            if code == DisconnectCode.SLOW_CONSUMER:
                self._queue.clear()
            self._event.set()

    async def write_loop(self) -> None:
        """Send queued messages until closing; then close the WebSocket."""
        ws = self.ws
        try:
            while True:
                await self._event.wait()
                self._event.clear()
                while self._queue:
                    message = self._queue.popleft()
                    self._queued -= len(message)
                    await ws.send(message)
                if self.closing is not None:
                    await ws.close(*self.closing)
                    return
        except ConnectionClosed:
            return


class Room:
    """A document loaded on this node (see the module docstring).

    Args:
        server: the endpoint (options, store, hub).
        name: the hub channel of the document, e.g. ``yjs:notes``.
        ns: its namespace's options.
    """

    def __init__(self, server: YjsServer, name: str, ns: NamespaceOptions) -> None:
        self.server = server
        self.name = name
        self.ns = ns
        #: This room's id in the hub's registry and in its publications.
        self.client = f"yjs-{uuid.uuid4().hex}"
        self.doc: pycrdt.Doc[Any] = pycrdt.Doc()
        self.conns: set[YConnection] = set()
        self.awareness: dict[int, _State] = {}
        self.ready: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        #: The document's encoded size, measured at load and compaction, plus the updates
        #: applied since (an upper bound: updates overlap).
        self.size = 0
        self.closed = False
        self.unload_timer: asyncio.TimerHandle | None = None
        self._compaction: asyncio.Task[None] | None = None

    # -- loading ----------------------------------------------------------------------------

    async def load(self) -> None:
        """Subscribe to the channel, then apply the stored updates; resolve :attr:`ready`
        (with the exception if either fails)."""
        try:
            await self.server.hub.add_subscription(self, self.name)
            updates = await self.server.store.load(self.name)
            initial = self.server.initial
            first = initial(self.name) if initial is not None and not updates else None
            if first is not None:
                await self.server.store.append(self.name, first)
                updates = [first]
            with self.doc.transaction():
                for update in updates:
                    self.doc.apply_update(update)
            self.size = len(self.doc.get_update())
        except BaseException as exc:
            self.ready.set_exception(exc)
            self.ready.exception()  # retrieved: the waiters get it
            raise
        self.ready.set_result(None)

    # -- connections --------------------------------------------------------------------------

    def join(self, conn: YConnection) -> None:
        """Add ``conn`` (the room is ready): send it the server's state vector and the
        awareness states known."""
        if self.unload_timer is not None:
            self.unload_timer.cancel()
            self.unload_timer = None
        self.conns.add(conn)
        conn.send(sync_step1(self.doc.get_state()))
        states = self._current_states()
        if states:
            conn.send(awareness_message(encode_awareness(states)))

    async def leave(self, conn: YConnection) -> None:
        """Remove ``conn``: its awareness states are removed for everyone; unload the room
        after the grace period once nobody is left."""
        self.conns.discard(conn)
        removed = []
        for client in conn.clients:
            state = self.awareness.get(client)
            if state is not None and state.owner is conn and state.state != "null":
                entry = AwarenessEntry(client, state.clock + 1, "null")
                self._set_state(entry, None)
                removed.append(entry)
        if removed:
            await self._share_awareness(encode_awareness(removed), None)
        if not self.conns and not self.closed:
            delay = self.server.options.unload_after
            loop = asyncio.get_running_loop()
            self.unload_timer = loop.call_later(delay, self.server.schedule_unload, self)

    # -- client messages ----------------------------------------------------------------------

    def answer_step1(self, conn: YConnection, state_vector: bytes) -> None:
        """Answer a SyncStep1 with what the client lacks.

        Raises:
            InvalidYMessage: 1007, the state vector can't be decoded.
        """
        try:
            update = self.doc.get_update(state_vector)
        except ValueError:
            raise InvalidYMessage("invalid state vector", 1007) from None
        conn.send(sync_step2(update))

    async def write(self, conn: YConnection, update: bytes) -> None:
        """Apply a client's update, relay it, store it and publish it (see the module doc).

        Raises:
            InvalidYMessage: 1007, pycrdt can't decode the update.
        """
        if update == EMPTY_UPDATE:
            return
        limit = self.server.options.max_document_size
        if self.size + len(update) > limit:
            self.size = len(self.doc.get_update())
            if self.size + len(update) > limit:
                conn.close(4413, "document too large")
                return
        try:
            self.doc.apply_update(update)
        except ValueError:
            raise InvalidYMessage("invalid update", 1007) from None
        self.size += len(update)
        self._relay(sync_update(update), conn)
        count = await self.server.store.append(self.name, update)
        if count >= self.server.options.compact_after:
            self.compact_soon()
        await self._publish({"n": self.client, "u": update})

    async def awareness_update(self, conn: YConnection, update: bytes) -> None:
        """Apply a client's awareness update (its entries parsed already) and share it."""
        entries = parse_awareness(update)
        for entry in entries:
            if entry.client not in conn.clients:
                if len(conn.clients) >= self.server.options.max_awareness_clients:
                    conn.close(1008, "too many awareness clients")
                    return
                conn.clients.add(entry.client)
        changed = [entry for entry in entries if self._set_state(entry, conn)]
        if changed:
            await self.server.update_presence(self, conn, self._user_of(conn))
            await self._share_awareness(encode_awareness(changed), conn)

    def query_awareness(self, conn: YConnection) -> None:
        """Send every awareness state known."""
        conn.send(awareness_message(encode_awareness(self._current_states())))

    # -- awareness ----------------------------------------------------------------------------

    def _set_state(self, entry: AwarenessEntry, owner: YConnection | None) -> bool:
        """Apply one awareness entry with the y-protocols rules; whether it changed anything.

        An entry for a client id another local connection sent is ignored (a client can't
        take over or remove someone else's cursor through this node).
        """
        current = self.awareness.get(entry.client)
        now = time.monotonic()
        if current is not None:
            if owner is not None and current.owner not in (None, owner):
                return False
            newer = entry.clock > current.clock
            if not newer and not (entry.clock == current.clock and entry.removed):
                return False
            if entry.removed and current.state == "null":
                current.clock = entry.clock
                return False
        elif entry.removed:
            return False
        self.awareness[entry.client] = _State(entry.clock, entry.state, owner, now)
        return True

    def _current_states(self) -> list[AwarenessEntry]:
        return [
            AwarenessEntry(client, s.clock, s.state)
            for client, s in self.awareness.items()
            if s.state != "null"
        ]

    def _user_of(self, conn: YConnection) -> Any:
        """The ``user`` field of the first awareness state ``conn`` sent (y-websocket apps
        put ``{name, color}`` there), or ``None``."""
        for client in sorted(conn.clients):
            state = self.awareness.get(client)
            if state is not None and state.owner is conn and state.state != "null":
                value = json.loads(state.state)
                if isinstance(value, dict):
                    return value.get("user")
        return None

    def expire_awareness(self, timeout: float) -> None:
        """Remove states not renewed for ``timeout`` seconds (y-websocket clients renew
        theirs every 15 s); forget old tombstones. Runs periodically."""
        now = time.monotonic()
        removed = []
        for client, state in list(self.awareness.items()):
            if now - state.updated < timeout:
                continue
            if state.state == "null":
                del self.awareness[client]
            else:
                state.clock += 1
                state.state = "null"
                state.updated = now
                removed.append(AwarenessEntry(client, state.clock, "null"))
        if removed:
            self._relay(awareness_message(encode_awareness(removed)), None)

    async def _share_awareness(self, update: bytes, origin: YConnection | None) -> None:
        self._relay(awareness_message(update), origin)
        await self._publish({"n": self.client, "a": update})

    # -- other nodes --------------------------------------------------------------------------

    async def _publish(self, data: dict[str, Any]) -> None:
        publication = Publication(data=data, time=self.server.hub.clock())
        await self.server.hub.broker.publish(self.name, publication, self.ns.history)

    def deliver_publication(
        self, channel: str, publication: Publication, frames: PubFrames | None = None
    ) -> bool:
        """A publication of the room's channel (the hub's registry calls it): apply another
        node's update or awareness update. Anything else published there is ignored."""
        data = publication.data
        if not isinstance(data, dict) or data.get("n") == self.client or self.closed:
            return True
        update, awareness = data.get("u"), data.get("a")
        try:
            if isinstance(update, bytes):
                self.doc.apply_update(update)
                self.size += len(update)
                self._relay(sync_update(update), None)
            elif isinstance(awareness, bytes):
                changed = [e for e in parse_awareness(awareness) if self._set_state(e, None)]
                if changed:
                    self._relay(awareness_message(encode_awareness(changed)), None)
        except (ValueError, InvalidYMessage) as exc:
            logger.warning("ignored an invalid publication in %r: %s", channel, exc)
        return True

    def deliver_join(self, channel: str, info: ClientInfo) -> None:
        """Join and leave pushes are for hub clients: nothing to do."""

    def deliver_leave(self, channel: str, info: ClientInfo) -> None:
        """Join and leave pushes are for hub clients: nothing to do."""

    async def unsubscribe(self, channel: str, code: int = 2500, reason: str = "") -> None:
        """The broker lost publications of the channel: read the store again and send the
        connections what they missed (updates of other nodes are in the store)."""
        if self.closed:
            return
        before = self.doc.get_state()
        try:
            updates = await self.server.store.load(self.name)
        except Exception:
            logger.exception("reloading %r from the store failed", self.name)
            return
        with self.doc.transaction():
            for update in updates:
                self.doc.apply_update(update)
        missed = self.doc.get_update(before)
        if missed != EMPTY_UPDATE:
            self._relay(sync_update(missed), None)

    def _relay(self, message: bytes, origin: YConnection | None) -> None:
        for conn in self.conns:
            if conn is not origin:
                conn.send(message)

    # -- storage ------------------------------------------------------------------------------

    def compact_soon(self) -> None:
        """Compact the stored log in the background (one compaction at a time)."""
        if self._compaction is None or self._compaction.done():
            self._compaction = asyncio.get_running_loop().create_task(self._compact())

    async def _compact(self) -> None:
        try:
            self.size = await self.server.store.compact(self.name)
        except Exception:
            logger.exception("compacting %r failed", self.name)

    async def unload(self) -> None:
        """Leave the channel, compact the stored log and drop the document."""
        self.closed = True
        with contextlib.suppress(Exception):
            await self.server.hub.remove_subscription(self, self.name)
        if self._compaction is not None:
            await asyncio.wait([self._compaction])
        await self._compact()
