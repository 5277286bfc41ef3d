"""The engine interfaces of the hub: :class:`Broker` (fan-out and history) and :class:`Presence`.

An engine moves publications between hub nodes and keeps each channel's recent history. The
in-memory engine (:mod:`wsend.hub.memory`) serves one process; the Redis engine serves many.
Every engine passes the same contract test suite (``tests/hub/contract.py``).

Positions: in a channel with history, every publication gets an ``offset`` one greater than the
previous one, within an ``epoch`` (an opaque string). The epoch changes whenever the engine
can't vouch for continuity (its history was lost or reset), which tells clients that recovery
from an older position is impossible.

Optional capabilities, which the hub uses when an engine has them (the Redis engine does):

- ``Broker.announce(kind, channel, info)``: relay a join or leave to the other nodes.
- ``Broker.control(message)`` and a writable ``Broker.on_control`` attribute: relay node-wide
  commands (disconnect a user, send a user a message) to the other nodes' ``on_control``.
- ``Presence.add_many(entries)``: :meth:`Presence.add` for many ``(channel, info)`` at once.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

__all__ = [
    "Broker",
    "BrokerEventHandler",
    "ClientInfo",
    "HistoryOptions",
    "HistoryResult",
    "Presence",
    "PresenceStats",
    "Publication",
    "StreamPosition",
]


@dataclass(frozen=True, slots=True)
class StreamPosition:
    """A position in a channel's history: the latest offset within an epoch."""

    offset: int
    epoch: str


@dataclass(frozen=True, slots=True)
class ClientInfo:
    """Who a client is, as shown in presence, join/leave and publication info."""

    client: str
    user: str
    info: Any = None


@dataclass(slots=True)
class Publication:
    """One message published to a channel.

    Attributes:
        data: the application payload, opaque to the hub.
        offset: the position in the channel's history (0 for channels without history).
        epoch: the history's epoch ("" for channels without history).
        key: the conflation key: a slow subscriber keeps only the latest publication per key.
        info: the publishing client, or ``None`` when published by the server.
        time: when it was published (seconds since the epoch, from the engine's clock).
    """

    data: Any
    offset: int = 0
    epoch: str = ""
    key: str | None = None
    info: ClientInfo | None = None
    time: float = 0.0


@dataclass(frozen=True, slots=True)
class HistoryOptions:
    """How a channel keeps history: at most ``size`` publications for ``ttl`` seconds.

    ``size == 0`` means no history: publications get no offset and recovery is impossible.
    ``meta_ttl`` bounds how long the channel's position (epoch and top offset) outlives its last
    publication; afterwards the channel starts a new epoch.
    """

    size: int = 0
    ttl: float = 0.0
    meta_ttl: float = 86400.0


@dataclass(slots=True)
class HistoryResult:
    """Publications read from history, and the channel's current position."""

    publications: list[Publication] = field(default_factory=list)
    position: StreamPosition = field(default_factory=lambda: StreamPosition(0, ""))


@dataclass(frozen=True, slots=True)
class PresenceStats:
    """Counts of a channel's present clients and distinct users."""

    num_clients: int
    num_users: int


@runtime_checkable
class BrokerEventHandler(Protocol):
    """What a node gives its broker: called for every publication of a subscribed channel.

    Also called with ``None`` as publication after the broker lost messages (a reconnection to
    Redis): the node then checks the positions of its recoverable channels.
    """

    def __call__(self, channel: str, publication: Publication | None) -> Awaitable[None] | None: ...


@runtime_checkable
class Broker(Protocol):
    """Fan-out of publications between nodes, and per-channel history.

    A node subscribes to a channel while it has local subscribers to it; the broker then calls the
    node's handler for each publication of that channel, in offset order.
    """

    async def start(self, handler: BrokerEventHandler) -> None:
        """Begin delivering publications of subscribed channels to ``handler``."""

    async def close(self) -> None:
        """Stop delivering and release resources."""

    async def subscribe(self, channel: str) -> None:
        """Deliver ``channel``'s publications to this node (idempotent)."""

    async def unsubscribe(self, channel: str) -> None:
        """Stop delivering ``channel``'s publications to this node (idempotent)."""

    async def publish(
        self, channel: str, publication: Publication, history: HistoryOptions
    ) -> StreamPosition:
        """Publish to every node subscribed to ``channel`` and append to its history.

        With ``history.size > 0`` the publication's offset and epoch are assigned atomically
        with the append, and returned; otherwise the position is ``(0, "")``.
        """

    async def history(
        self,
        channel: str,
        *,
        since: StreamPosition | None = None,
        limit: int | None = None,
        reverse: bool = False,
        history: HistoryOptions | None = None,
    ) -> HistoryResult:
        """Read ``channel``'s history.

        Args:
            since: return only publications after this offset (in its epoch; if the epoch is
                not the current one, the result holds no publications and the current position).
            limit: at most this many publications (``None``: all, ``0``: only the position).
            reverse: newest first.
        """

    async def remove_history(self, channel: str) -> None:
        """Forget ``channel``'s history (its next publication starts a new epoch)."""


@runtime_checkable
class Presence(Protocol):
    """Who is subscribed to which channel, across nodes, with expiry for crashed nodes."""

    async def add(self, channel: str, info: ClientInfo) -> None:
        """Record ``info.client`` as present in ``channel`` (refreshes its expiry)."""

    async def remove(self, channel: str, client: str) -> None:
        """Remove ``client`` from ``channel``'s presence."""

    async def get(self, channel: str) -> dict[str, ClientInfo]:
        """The clients present in ``channel``, by client id."""

    async def stats(self, channel: str) -> PresenceStats:
        """How many clients and distinct users are present in ``channel``."""

    async def close(self) -> None:
        """Release resources."""


#: A time source: seconds since the epoch (``time.time``), injectable for tests.
Clock = Callable[[], float]
