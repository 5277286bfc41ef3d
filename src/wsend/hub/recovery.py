"""Where a new subscription starts (``docs/protocol.md`` section 4, ``subscribe``).

:func:`subscribe_position` reads a channel's position and, when the client asks to recover,
the publications it missed. Recovery is all or nothing: ``recovered`` is true only when every
publication after the client's position, up to the channel's, comes back.
"""

from __future__ import annotations

from .broker import Broker, Publication, StreamPosition
from .options import NamespaceOptions
from .wire import SubscribeCommand, SubscribeResult, publication_frame

__all__ = ["subscribe_position"]


async def subscribe_position(
    broker: Broker,
    ns: NamespaceOptions,
    channel: str,
    command: SubscribeCommand,
    max_publications: int,
    *,
    payload: bool = False,
) -> SubscribeResult:
    """The subscribe result's position fields, and the recovered publications.

    Args:
        max_publications: more publications missed than this fail recovery.
        payload: send the recovered publications' data as payloads (a delta subscription).

    Raises:
        Whatever the broker's ``history`` raises.
    """
    if not ns.history_size:
        return SubscribeResult(recoverable=False, recovered=False if command.recover else None)
    since = None
    if command.recover and ns.recovery and command.epoch is not None and command.offset is not None:
        since = StreamPosition(command.offset, command.epoch)
    limit = max_publications + 1 if since else 0
    read = await broker.history(channel, since=since, limit=limit, history=ns.history)
    position = read.position
    result = SubscribeResult(recoverable=ns.recovery, epoch=position.epoch, offset=position.offset)
    if command.recover:
        result.recovered = (
            since is not None
            and len(read.publications) <= max_publications
            and _complete(since, position, read.publications)
        )
        if result.recovered:
            result.publications = [publication_frame(p, payload=payload) for p in read.publications]
    return result


def _complete(since: StreamPosition, position: StreamPosition, pubs: list[Publication]) -> bool:
    """Whether ``pubs`` are exactly the publications after ``since`` up to ``position``."""
    if since.epoch != position.epoch or since.offset > position.offset:
        return False
    missed = position.offset - since.offset
    if len(pubs) != missed:
        return False
    return not pubs or (pubs[0].offset == since.offset + 1 and pubs[-1].offset == position.offset)
