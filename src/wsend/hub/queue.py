"""The per-connection outgoing queue, bounded in bytes, with conflation (sans-I/O).

The session pushes encoded frames; the node's writer pops batches and sends them. When a push
would exceed the bound, :meth:`OutgoingQueue.push` refuses it and the session applies its
namespace's slow-consumer policy (``docs/protocol.md`` section 9).

Conflation: an item pushed with ``conflate=True`` replaces the queued conflatable item with the
same ``(channel, key)``, **in place**: it takes the position of the item it replaces. So each
key is delivered at most once per pass over the queue, whatever its update rate, and the
latest value per key always wins (per-key order is trivially correct: one item per key). The
alternative, moving the new item to the end, keeps a channel's offsets increasing across keys,
but starves a key updated faster than the queue drains (the hottest ticker symbol would never
be sent). The price of in-place replacement: across different keys of one channel, offsets may
arrive out of order; conflated channels carry "latest state", not a log to recover.

Items are opaque, non-empty bytes; their size is ``len(item)``.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable, Hashable

__all__ = ["OutgoingQueue"]

ConflationKey = tuple[str, Hashable]


class OutgoingQueue:
    """A FIFO of encoded frames holding at most ``max_bytes`` bytes.

    Args:
        max_bytes: the bound on the sum of the queued items' sizes (> 0).
    """

    __slots__ = (
        "_channels",
        "_items",
        "_keys",
        "_next",
        "max_bytes",
        "on_replaced",
        "replaced",
        "size_bytes",
    )

    def __init__(self, max_bytes: int) -> None:
        if max_bytes <= 0:
            raise ValueError("max_bytes must be > 0")
        self.max_bytes = max_bytes
        self._items: OrderedDict[int, tuple[bytes, ConflationKey | None]] = OrderedDict()
        self._keys: dict[ConflationKey, int] = {}
        self._channels: dict[str, int] = {}  # conflatable items queued, by channel
        #: The bytes queued (0 exactly when nothing is: items are never empty).
        self.size_bytes = 0
        self._next = 0
        #: Items dropped because a conflatable item with the same key replaced them.
        self.replaced = 0
        #: Called each time a conflatable item replaces a queued one (e.g. to count the drop
        #: in a metric as it happens), or ``None``.
        self.on_replaced: Callable[[], object] | None = None

    def __len__(self) -> int:
        return len(self._items)

    def holds(self, channel: str) -> bool:
        """Whether a conflatable item of ``channel`` is queued (one a later push may replace)."""
        return channel in self._channels

    def push(
        self,
        item: bytes,
        *,
        channel: str | None = None,
        key: Hashable = None,
        conflate: bool = False,
        max_bytes: int | None = None,
    ) -> bool:
        """Queue ``item``; return False (queueing nothing) if the bound would be exceeded.

        ``max_bytes`` lowers the bound for this push (a namespace's own limit); it can't raise
        it above the queue's.

        With ``conflate`` and a ``channel``, ``item`` replaces the queued conflatable item with
        the same ``(channel, key)`` in its position (``key`` may be ``None``: then the channel's
        latest item wins); the size check counts the replaced item as gone.
        """
        ckey = (channel, key) if conflate and channel is not None else None
        seq = self._keys.get(ckey) if ckey is not None else None
        old = len(self._items[seq][0]) if seq is not None else 0
        bound = self.max_bytes if max_bytes is None else min(max_bytes, self.max_bytes)
        if self.size_bytes - old + len(item) > bound:
            return False
        self.size_bytes += len(item) - old
        if seq is not None:
            self.replaced += 1
            if self.on_replaced is not None:
                self.on_replaced()
        else:
            seq = self._next
            self._next += 1
            if ckey is not None:
                self._keys[ckey] = seq
                self._channels[ckey[0]] = self._channels.get(ckey[0], 0) + 1
        self._items[seq] = (item, ckey)
        return True

    def pop_batch(self, max_bytes: int) -> list[bytes]:
        """Remove and return the oldest items totalling at most ``max_bytes``.

        Always returns at least one item when the queue isn't empty, even a larger one, so that
        every item can be sent. Returns ``[]`` when the queue is empty.
        """
        batch: list[bytes] = []
        total = 0
        items = self._items
        while items:
            seq = next(iter(items))
            item, ckey = items[seq]
            if batch and total + len(item) > max_bytes:
                break
            items.popitem(last=False)
            if ckey is not None:
                del self._keys[ckey]
                self._forget(ckey[0])
            batch.append(item)
            total += len(item)
        self.size_bytes -= total
        return batch

    def _forget(self, channel: str) -> None:
        left = self._channels[channel] - 1
        if left:
            self._channels[channel] = left
        else:
            del self._channels[channel]

    def clear(self) -> None:
        """Drop every queued item."""
        self._items.clear()
        self._keys.clear()
        self._channels.clear()
        self.size_bytes = 0
