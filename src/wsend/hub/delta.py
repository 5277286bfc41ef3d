"""Delta compression on the hub's side (``docs/protocol.md`` section 5): who gets a delta.

A session keeps one :class:`DeltaChain` per subscription that negotiated deltas
(:func:`negotiate`). The chain records which payload the client will hold once it has read
everything queued for it: the publication last pushed into the connection's queue (by its
:attr:`~.wire.PubFrames.serial`). A publication goes out as a delta only when its node-wide
previous publication (:attr:`~.wire.PubFrames.previous`) is that one, so one delta per
publication and codec serves every subscriber of the node that is in step, and none is computed
per subscriber:

- The first publication after a subscribe reply is full (the chain starts empty): recovered
  publications, in the reply, are not bases.
- Publications buffered during a subscribe are full; so is a publication whose previous one the
  client didn't get (dropped as a duplicate, or never delivered to it).
- Conflation (section 9) replaces queued publications in place, which would take a delta's
  base away from the client. On a conflating channel a delta is therefore sent only when none
  of the channel's publications is queued (its base already went to the socket, and a later
  replacement of the delta itself is a full publication); after a replacement the chain
  forgets its base, so the next publication is full.
"""

from __future__ import annotations

from typing import Final

from .codes import ErrorCode, HubError
from .options import NamespaceOptions
from .queue import OutgoingQueue
from .wire import Codec, PubFrames

__all__ = ["DELTA_TYPES", "DeltaChain", "negotiate"]

#: The delta types the hub knows (``subscribe`` field ``delta``).
DELTA_TYPES: Final = ("fossil",)


def negotiate(requested: str | None, ns: NamespaceOptions) -> bool:
    """Whether a subscription asking for ``requested`` deltas gets them in namespace ``ns``.

    Raises:
        HubError: ``BAD_REQUEST`` (107) for a delta type the hub doesn't know.
    """
    if requested is None:
        return False
    if requested not in DELTA_TYPES:
        raise HubError(ErrorCode.BAD_REQUEST, "unknown delta type")
    return ns.delta


class DeltaChain:
    """The payload a delta subscription's client holds, as seen from the session's queue."""

    __slots__ = ("base",)

    def __init__(self) -> None:
        #: The serial of the publication last queued for the client, 0 when unknown.
        self.base = 0

    def frame(self, frames: PubFrames, codec: Codec, queue: OutgoingQueue, conflate: bool) -> bytes:
        """The push to queue for ``frames``: its delta when the client will hold the previous
        publication's payload and the delta is smaller, else the full payload.

        Raises:
            Any of :data:`~.wire.DATA_ERRORS`: the data can't be encoded with ``codec``.
        """
        previous = frames.previous
        if (
            self.base
            and previous is not None
            and previous.serial == self.base
            and not (conflate and queue.holds(frames.channel))
        ):
            delta = frames.delta_for(codec)
            if delta is not None:
                return delta
        return frames.full_for(codec)

    def queued(self, serial: int, appended: bool) -> None:
        """Record a push: ``appended`` when it went to the end of the queue (not refused, not
        replacing a queued publication in place)."""
        self.base = serial if appended else 0
