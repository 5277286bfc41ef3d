"""Subscriptions of the Python hub client: :class:`Subscription` and the values it yields.

:class:`Subscription` holds one channel's state for :class:`~wsend.hub.client.HubClient`: its
position (epoch, offset) for recovery, the bounded buffer of publications for its consumer, and
the application's callbacks. The client drives it (``_subscribed``, ``_accept``, ``_end``); the
application reads it (``ready``, ``async for``, ``unsubscribe``). The contract is in the
docstring of :mod:`wsend.hub.client`. Names are re-exported by :mod:`wsend.hub.client`.
"""

from __future__ import annotations

import asyncio
import collections
import inspect
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal, TypedDict

import msgspec

from ..exceptions import UsageError
from . import fossil, wire

if TYPE_CHECKING:
    from .client import HubClient

__all__ = ["History", "Publication", "SubscribeOptions", "Subscription"]

logger = logging.getLogger("wsend.hub.client")

SubState = Literal["unsubscribed", "subscribing", "subscribed"]
Callback = Callable[..., Any]
ChannelTokenGetter = Callable[[str], Awaitable[str]]


@dataclass(frozen=True, slots=True)
class Publication:
    """A publication: ``data`` decoded (``bytes`` stay ``bytes`` in MessagePack), ``offset``
    on recoverable channels, the conflation ``key``, and ``info`` about the publishing client
    (``None`` when the server published)."""

    channel: str
    data: Any
    offset: int | None = None
    key: str | None = None
    info: wire.InfoFrame | None = None


@dataclass(frozen=True, slots=True)
class History:
    """The answer to :meth:`HubClient.history`: publications and the channel's position."""

    publications: list[Publication]
    epoch: str
    offset: int


class SubscribeOptions(TypedDict, total=False):
    """Options of :meth:`HubClient.subscribe` (all optional).

    - ``on_publication``: ``f(pub)`` for each :class:`Publication` (then don't iterate).
    - ``on_join``, ``on_leave``: ``f(info: wire.InfoFrame)`` for join/leave pushes.
    - ``on_subscribed``: ``f(sub)`` after each successful (re)subscribe.
    - ``on_unsubscribed``: ``f(sub, code, reason)`` when the subscription ends.
    - ``on_unrecovered``: ``f(sub)`` when recovery failed: reload the channel's state.
    - ``recover`` (True): subscribe again with recovery after reconnects and gaps.
    - ``fill_gaps`` (True): recover skipped offsets (turn off for conflated channels).
    - ``token``: a channel token; ``get_token``: ``async (channel) -> str`` fetching one
      (before subscribing without ``token``, and after error 109).
    - ``data``: passed to the hub application's subscribe callback.
    - ``max_queue``: publications buffered for the consumer (default: the client's).
    - ``delta``: ``"fossil"`` to ask for delta compression (``docs/protocol.md`` section 5):
      where the namespace allows it, publications arrive as deltas against the previous one
      and are rebuilt before delivery (the application sees whole data).
    """

    on_publication: Callback | None
    on_join: Callback | None
    on_leave: Callback | None
    on_subscribed: Callback | None
    on_unsubscribed: Callback | None
    on_unrecovered: Callback | None
    recover: bool
    fill_gaps: bool
    token: str | None
    get_token: ChannelTokenGetter | None
    data: Any
    max_queue: int
    delta: Literal["fossil"] | None


_FRAME_DATA: Any = object()


def _publication(
    channel: str, frame: wire.PublicationFrame | wire.PubPush, data: Any = _FRAME_DATA
) -> Publication:
    """A publication of ``frame``, with ``data`` instead of the frame's when given."""
    value = frame.data if data is _FRAME_DATA else data
    return Publication(channel, value, frame.offset, frame.key, frame.info)


def _quiet_future() -> asyncio.Future[None]:
    """A future whose exception needn't be retrieved (nobody may be waiting on ready())."""
    future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
    future.add_done_callback(lambda f: f.cancelled() or f.exception())
    return future


class Subscription:
    """A subscription to one channel, made by :meth:`HubClient.subscribe`.

    Iterate it (``async for pub in sub``) for :class:`Publication` objects, unless an
    ``on_publication`` callback consumes them; iteration ends when the subscription ends.
    Callbacks and options (:class:`SubscribeOptions`) are attributes of the same names.

    Attributes:
        channel: the channel.
        state: ``"subscribing"``, ``"subscribed"`` or ``"unsubscribed"`` (final).
        recoverable: whether the channel keeps history (offsets are meaningful).
        epoch: the channel's epoch, on recoverable channels.
        offset: the offset of the last publication received (the subscribe position before).
        recovered: after a subscribe with recovery, whether every missed publication came;
            ``None`` before any recovery.
        dropped: publications dropped because the consumer fell ``max_queue`` behind.
        error: why the subscription ended, if the hub refused it or the client closed.
        delta_on: whether the hub granted delta compression at the last subscribe.
        deltas: publications received as deltas (and rebuilt) so far.
    """

    def __init__(self, client: HubClient, channel: str, options: SubscribeOptions) -> None:
        self.channel = channel
        self.state: SubState = "subscribing"
        self.recoverable = False
        self.epoch: str | None = None
        self.offset: int | None = None
        self.recovered: bool | None = None
        self.dropped = 0
        self.error: Exception | None = None
        self.on_publication = options.get("on_publication")
        self.on_join = options.get("on_join")
        self.on_leave = options.get("on_leave")
        self.on_subscribed = options.get("on_subscribed")
        self.on_unsubscribed = options.get("on_unsubscribed")
        self.on_unrecovered = options.get("on_unrecovered")
        self.recover = options.get("recover", True)
        self.fill_gaps = options.get("fill_gaps", True)
        self.token = options.get("token")
        self.get_token = options.get("get_token")
        self.data = options.get("data")
        self.max_queue = options.get("max_queue", client.max_queue)
        self.delta = options.get("delta")
        self.delta_on = False
        self.deltas = 0
        self._base: bytes | None = None  # the payload of the last push (delta compression)
        self._client = client
        self._queue: collections.deque[Publication] = collections.deque()
        self._wakeup = asyncio.Event()
        self._ready = _quiet_future()
        self._task: asyncio.Task[None] | None = None
        self._consumer: asyncio.Task[None] | None = None
        if self.on_publication is not None:
            self._consumer = asyncio.ensure_future(self._consume(self.on_publication))

    async def ready(self, timeout: float | None = None) -> None:
        """Wait until subscribed (again, after a reconnect).

        Raises:
            HubError: the hub refused the subscription (not temporarily).
            HubDisconnected: the client closed for good first.
            UsageError: the subscription was unsubscribed first.
            TimeoutError: ``timeout`` seconds passed.
        """
        async with asyncio.timeout(timeout):
            await asyncio.shield(self._ready)

    async def unsubscribe(self) -> None:
        """Unsubscribe (final): ends iteration and tells the hub if connected. Idempotent."""
        await self._client._unsubscribe(self)

    def __aiter__(self) -> Subscription:
        return self

    async def __anext__(self) -> Publication:
        while not self._queue:
            if self.state == "unsubscribed":
                raise StopAsyncIteration
            self._wakeup.clear()
            await self._wakeup.wait()
        return self._queue.popleft()

    def __repr__(self) -> str:
        return f"<Subscription {self.channel!r} {self.state} offset={self.offset}>"

    # -- driven by the client ----------------------------------------------------------------

    def _recovery(self) -> tuple[str, int] | None:
        """The position to recover from, if recovery applies."""
        if self.recover and self.recoverable and self.epoch is not None:
            return self.epoch, self.offset or 0
        return None

    def _resubscribing(self) -> None:
        if self.state != "unsubscribed":
            self.state = "subscribing"
            if self._ready.done():
                self._ready = _quiet_future()

    def _subscribed(self, result: wire.SubscribeResult, recovering: bool) -> None:
        """Apply a subscribe result (synchronously, before any push that follows it)."""
        self.recoverable = result.recoverable
        self.delta_on, self._base = bool(result.delta), None
        recovered = self._recovered(result) if recovering and result.recovered else None
        if recovered is not None:
            self.recovered = True
            for pub in recovered:
                self._accept(pub, gaps=False)
        else:
            if recovering:
                self.recovered = False
            self.offset = result.offset if result.recoverable else None
        self.epoch = result.epoch
        self.state = "subscribed"
        if not self._ready.done():
            self._ready.set_result(None)
        if recovering and recovered is None:
            self._client._invoke(self.on_unrecovered, self)
        self._client._invoke(self.on_subscribed, self)

    def _recovered(self, result: wire.SubscribeResult) -> list[Publication] | None:
        """The recovered publications; ``None`` (recovery failed) if a payload is malformed."""
        frames = result.publications or []
        if not self.delta_on:
            return [_publication(self.channel, frame) for frame in frames]
        try:
            data = [self._decode(self._payload(frame.data)) for frame in frames]
        except fossil.DeltaError as exc:
            self._client._report(exc)
            return None
        return [_publication(self.channel, f, d) for f, d in zip(frames, data, strict=True)]

    def _publication(self, push: wire.PubPush) -> Publication:
        """A ``pub`` push as the application sees it: on a delta subscription, its payload
        (rebuilt from the previous one for a delta) decoded; the payload becomes the base.

        Raises:
            DeltaError: the payload is malformed, or the delta can't be applied.
        """
        if not self.delta_on:
            return _publication(self.channel, push)
        payload = self._payload(push.data)
        if push.delta:
            if self._base is None:
                raise fossil.DeltaError("a delta before any full publication")
            payload = fossil.apply(self._base, payload)
            self.deltas += 1
        self._base = payload
        return _publication(self.channel, push, self._decode(payload))

    def _payload(self, data: Any) -> bytes:
        if isinstance(data, str) and not self._client.codec.binary:
            return data.encode()
        if isinstance(data, bytes) and self._client.codec.binary:
            return data
        raise fossil.DeltaError(
            f"a payload must be {'bin' if self._client.codec.binary else 'a string'}"
        )

    def _decode(self, payload: bytes) -> Any:
        try:
            return self._client.codec.decode_data(payload)
        except (msgspec.DecodeError, RecursionError) as exc:
            raise fossil.DeltaError(f"undecodable payload: {exc}") from exc

    def _accept(self, pub: Publication, gaps: bool = True) -> bool:
        """Deliver a publication unless it's a duplicate; ``False`` on a gap (not delivered).

        ``gaps=False`` for recovered publications: the hub vouches they are complete.
        """
        last = self.offset
        if self.recoverable and pub.offset is not None and last is not None:
            if pub.offset <= last:
                return True
            if gaps and self.fill_gaps and pub.offset > last + 1:
                return False
        if pub.offset is not None:
            self.offset = pub.offset
        if len(self._queue) >= self.max_queue:
            self._queue.popleft()
            self.dropped += 1
            if self.dropped == 1 or self.dropped % 1000 == 0:
                logger.warning("%s: slow consumer, %d publications dropped", self, self.dropped)
        self._queue.append(pub)
        self._wakeup.set()
        return True

    def _end(self, error: Exception | None, code: int = 0, reason: str = "") -> None:
        if self.state == "unsubscribed":
            return
        self.state, self.error = "unsubscribed", error
        if self._task is not None and self._task is not asyncio.current_task():
            self._task.cancel()
        if not self._ready.done():
            self._ready.set_exception(error or UsageError("unsubscribed"))
        self._wakeup.set()
        self._client._invoke(self.on_unsubscribed, self, code, reason)

    async def _consume(self, callback: Callback) -> None:
        async for pub in self:
            try:
                result = callback(pub)
                if inspect.isawaitable(result):
                    await result
            except Exception as exc:
                self._client._callback_failed(exc)
