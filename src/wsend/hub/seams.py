"""The seams of a :class:`~.session.Session`: what it needs from its node, where its output goes.

The node (:class:`~.node.Hub`, or a test's small node) implements :class:`Node`; each
connection gives its session a :class:`Sink`. The node runs sessions over any :class:`Socket`:
wsend's own :class:`~wsend.asyncio.server.ServerConnection`, or an ASGI server's WebSocket
(:mod:`.asgi`). All are :class:`typing.Protocol` classes: any object with these members fits.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Mapping
from typing import TYPE_CHECKING, Any, Literal, Protocol

from ..protocol.http import Request
from .auth import TokenVerifier
from .broker import Broker, ClientInfo, Presence
from .options import HubOptions

if TYPE_CHECKING:
    from .session import Session

__all__ = ["CommandObserver", "Node", "RpcHandler", "Sink", "Socket", "Subscriber"]

#: An RPC handler: ``handler(session, data) -> result`` (sync or async). It may raise
#: :class:`HubError` to answer an error; any other exception answers error 100.
RpcHandler = Callable[["Session", Any], Any]

#: Observes each executed command: ``observer(method, seconds)``, e.g. for latency metrics.
CommandObserver = Callable[[str, float], None]


class Sink(Protocol):
    """Where a session sends its output signals; implemented by the node's connection."""

    def wakeup(self) -> None:
        """Frames were queued: drain :meth:`Session.pop_message` until it returns ``None``.

        Called after every batch of queued frames; must be cheap and idempotent.
        """

    def write_now(self, message: bytes) -> bool:
        """Write ``message``, a whole WebSocket message already framed, if it can go at once.

        The session calls it for a live publication when nothing of its own is queued: a
        publication's frame is built once and shared by every subscriber
        (:meth:`~.wire.PubFrames.message_for`). Returns ``False`` when the message can't be
        written as is now (a write in progress, a peer that doesn't read, compression, another
        kind of socket): the session then queues it. Must not write anything then.
        """

    def close(self, code: int, reason: str) -> None:
        """Close the WebSocket with ``code`` (section 7), sending queued frames first if it can.

        Called at most once per session; the node then calls :meth:`Session.on_close`.
        """


class Subscriber(Protocol):
    """What the node's channel registry delivers to: a :class:`~.session.Session`, or a Yjs
    room (:class:`~.yjs.room.Room`) following its document's channel.

    ``client`` identifies it in join/leave (a subscriber isn't told its own).
    """

    @property
    def client(self) -> str: ...

    def deliver_publication(self, channel: str, publication: Any, frames: Any = None) -> bool:
        """Take a live publication; ``False`` when it can't follow the channel any more
        (the node then calls :meth:`unsubscribe`)."""

    def deliver_join(self, channel: str, info: ClientInfo) -> None: ...

    def deliver_leave(self, channel: str, info: ClientInfo) -> None: ...

    async def unsubscribe(self, channel: str, code: int = 2500, reason: str = "") -> None:
        """Publications of ``channel`` were lost (the engine says so, or it can't follow)."""


class Socket(Protocol):
    """An open WebSocket the node runs a session over (what :meth:`Hub.handler` uses).

    ``async for`` yields each message received (``str`` for text, ``bytes`` for binary) and
    ends when the connection closes (it may raise :class:`~wsend.exceptions.ConnectionClosed`
    instead); :meth:`send` raises :class:`~wsend.exceptions.ConnectionClosed` once it can't
    send, and waits while the peer doesn't read (that is the node's backpressure).
    """

    @property
    def protocol(self) -> str | None:
        """The negotiated subprotocol (selects the codec)."""

    @property
    def request(self) -> Request | None:
        """The opening request (its ``?token=`` query parameter is read)."""

    @property
    def close_code(self) -> int | None:
        """The close code received, once the connection is closed (1006 without one)."""

    def __aiter__(self) -> AsyncIterator[str | bytes]: ...

    async def send(self, message: str | bytes) -> None:
        """Send one text (``str``) or binary (``bytes``) message."""

    async def close(self, code: int = 1000, reason: str = "") -> None:
        """Start (or complete) the closing handshake with ``code``; idempotent."""


class Node(Protocol):
    """What a session needs from the hub node it runs on."""

    @property
    def options(self) -> HubOptions: ...

    @property
    def broker(self) -> Broker: ...

    @property
    def presence(self) -> Presence: ...

    @property
    def verifier(self) -> TokenVerifier | None: ...

    @property
    def rpc_handlers(self) -> Mapping[str, RpcHandler]: ...

    @property
    def node_name(self) -> str: ...

    def clock(self) -> float:
        """The current time in seconds since the epoch (as token ``exp`` claims)."""

    async def on_connect(self, session: Session, data: Any) -> Any:
        """The application's connect callback: returns the connect result's ``data``.

        May raise :class:`HubError` to refuse the connection (the session then closes with
        4501).
        """

    async def can_subscribe(self, session: Session, channel: str, data: Any) -> bool:
        """The application's subscribe callback, for namespaces with ``subscribe="callback"``."""

    async def add_subscription(self, session: Session, channel: str) -> None:
        """Register ``session`` as a subscriber of ``channel`` and subscribe the broker.

        When it returns, every later publication of ``channel`` must reach
        :meth:`Session.deliver_publication`; earlier ones may too (they are deduplicated).
        """

    async def remove_subscription(self, session: Session, channel: str) -> None:
        """Unregister ``session`` from ``channel``; unsubscribe the broker after the last one."""

    async def announce(
        self, kind: Literal["join", "leave"], channel: str, info: ClientInfo
    ) -> None:
        """Send a join or leave to ``channel``'s subscribers (on every node).

        The node calls :meth:`Session.deliver_join` / :meth:`Session.deliver_leave` on them.
        """
