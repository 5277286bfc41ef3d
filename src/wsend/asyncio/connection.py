"""An open WebSocket connection on asyncio: the object handlers and clients use.

The connection is an :class:`asyncio.BufferedProtocol`. Received bytes go straight into the
sans-I/O :class:`~wsend.protocol.connection.Connection`; complete fragments are queued for
:meth:`Connection.recv`, or handed to a reader that is already waiting without touching the queue.

Flow control:

- Receiving: when ``max_queue`` fragments still wait unread after the reader had its turn (the
  next loop iteration, or the next read if that comes first), reading from the socket pauses; it
  resumes when the queue falls to a quarter of that. With the message size limit, this bounds
  the memory a peer can make us hold.
- Sending: ``send()`` returns as soon as the frame is handed to the transport, unless the
  transport's buffer is above the high-water mark of ``write_limit``: then it waits until the
  buffer drains below the low-water mark.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import io
import json
import logging
import os
import time
from collections.abc import AsyncIterable, AsyncIterator, Awaitable, Callable, Iterable
from typing import Any, NoReturn, cast

from ..exceptions import (
    ConcurrencyError,
    ConnectionClosed,
    ConnectionClosedOK,
    UsageError,
)
from ..protocol import closed as closing
from ..protocol.connection import Connection as Protocol
from ..protocol.connection import Data, Event, Ping, Pong, State
from ..protocol.frames import Close, CloseCode
from ..protocol.http import Request, Response
from .fastpath import ConnectionCore, Waiter
from .transports import has_vectored_writes

__all__ = ["Connection", "ConnectionOptions"]

Buffer = bytes | bytearray | memoryview
Message = str | bytes
#: What the receive queue holds: whole messages, or fragments of a fragmented one.
Item = str | bytes | Data

# Keepalive as websockets: a ping every 20 s detects dead peers well within typical proxy idle
# timeouts (60 s for nginx and AWS ALB); 20 s to answer tolerates slow mobile links.
DEFAULT_PING_INTERVAL = 20.0
DEFAULT_PING_TIMEOUT = 20.0
# 10 s to open or close, as websockets and aiohttp.
DEFAULT_OPEN_TIMEOUT = 10.0
DEFAULT_CLOSE_TIMEOUT = 10.0
# 16 queued fragments before reading pauses, as websockets (max_queue=16).
DEFAULT_MAX_QUEUE = 16
# Write buffer: send() waits above 64 KiB until it drains below 16 KiB. websockets uses 32 KiB,
# uWebSockets 64 KiB; a larger mark keeps pipelined small messages from waiting.
DEFAULT_WRITE_LIMIT = 65536
# Files and iterables are streamed in frames of this size.
STREAM_CHUNK_SIZE = 65536
# Events parsed from one read at most (see Connection.start).
_MAX_EVENTS_PER_READ = 1024
# Decompressed bytes parsed from one read at most (see Connection.start).
_MAX_INFLATED_PER_READ = 4 << 20


class ConnectionOptions:
    """Settings shared by client and server connections (see :func:`wsend.connect`)."""

    __slots__ = (
        "close_timeout",
        "max_frame_size",
        "max_message_size",
        "max_queue",
        "ping_interval",
        "ping_timeout",
        "write_limit",
    )

    def __init__(
        self,
        *,
        max_message_size: int | None = 1 << 20,
        max_frame_size: int | None = None,
        max_queue: int = DEFAULT_MAX_QUEUE,
        write_limit: int | tuple[int, int] = DEFAULT_WRITE_LIMIT,
        ping_interval: float | None = DEFAULT_PING_INTERVAL,
        ping_timeout: float | None = DEFAULT_PING_TIMEOUT,
        close_timeout: float | None = DEFAULT_CLOSE_TIMEOUT,
    ) -> None:
        if max_queue < 1:
            raise ValueError("max_queue must be at least 1")
        self.max_message_size = max_message_size
        self.max_frame_size = max_frame_size
        self.max_queue = max_queue
        self.write_limit = write_limit
        self.ping_interval = ping_interval
        self.ping_timeout = ping_timeout
        self.close_timeout = close_timeout


class Connection(ConnectionCore, asyncio.BufferedProtocol):
    """A WebSocket connection, browser-like: ``send()`` anything, ``recv()`` messages.

    Not created directly: :func:`wsend.connect` returns one, :func:`wsend.serve` passes one to
    its handler.
    """

    # Slots keep idle connections small; "__dict__" still lets applications set their own
    # attributes on a connection (the dict is only created when they do).
    __slots__ = (
        "__dict__",
        "__weakref__",
        "_close_timer",
        "_closed",
        "_drain_waiters",
        "_fail_timer",
        "_half_closed",
        "_keepalive",
        "_keepalive_ping",
        "_partial",
        "_pause_pending",
        "_pings",
        "_send_lock",
        "_write_held",
        "extensions",
        "latency",
        "loop",
        "options",
        "protocol",
        "request",
        "response",
        "user",
    )

    is_client = False
    logger = logging.getLogger("wsend")

    def __init__(self, options: ConnectionOptions) -> None:
        self.options = options
        self.loop = asyncio.get_running_loop()
        self.transport = None
        self.proto = None
        #: The opening handshake's request and response.
        self.request: Request | None = None
        self.response: Response | None = None
        #: The negotiated subprotocol, or ``None``.
        self.protocol: str | None = None
        #: The names of the negotiated extensions.
        self.extensions: list[str] = []
        #: The last round-trip time measured by a ping, in seconds (0 before any).
        self.latency = 0.0
        #: Whatever authentication hooks stored about the peer.
        self.user: Any = None
        # Created on first use: a reader usually waits and takes frames without queueing.
        self._queue = None
        self._waiter = None
        self._reading = False
        self._reading_into = False
        self._read_header = 0
        # The fragments of a message being received by recv(), joined as they come (a list
        # would cost an entry per fragment, however small: a peer could send millions).
        self._partial: bytearray | io.StringIO | None = None
        self._paused_reading = False
        self._pause_pending = False  # the queue filled: _check_full pauses unless it was read
        self._paused_writing = False
        self._on_message = None
        self._write_held = False  # reading paused while writes are blocked (see on_message)
        self._drain_waiters: list[asyncio.Future[None]] = []
        self._send_lock = asyncio.Lock()
        self._send_held = False
        self._pings: dict[bytes, tuple[asyncio.Future[float], float]] = {}
        self._keepalive: asyncio.TimerHandle | None = None
        self._keepalive_ping: bytes | None = None
        self._close_timer: asyncio.TimerHandle | None = None
        self._fail_timer: asyncio.Handle | None = None
        self._half_closed = False
        self._corked = []
        self._corked_size = 0
        self._cork_scheduled = False
        self._cork_for_input = False
        self._batching = False
        self._wrote = False
        self._high_water = DEFAULT_WRITE_LIMIT
        self._vectored = False
        self._closed = self.loop.create_future()
        self._connection_lost = False

    # -- state ------------------------------------------------------------------------------

    @property
    def ready_state(self) -> State:
        """CONNECTING, OPEN, CLOSING or CLOSED, like the browser's ``WebSocket.readyState``."""
        if self._connection_lost:
            return State.CLOSED
        if self.proto is None:
            return State.CONNECTING
        return self.proto.state

    @property
    def buffered_amount(self) -> int:
        """Bytes accepted by ``send()`` but not yet written to the socket."""
        transport = self.transport
        if transport is None or transport.is_closing():
            return 0
        return transport.get_write_buffer_size() + self._corked_size

    @property
    def close_code(self) -> int | None:
        """The close code received (1005 without code, 1006 if none).

        ``None`` until the closing handshake completed or the connection was lost.
        """
        return closing.close_code(self.proto, self._connection_lost)

    @property
    def close_reason(self) -> str | None:
        """The close reason received; ``None`` until the close code is known."""
        return closing.close_reason(self.proto, self._connection_lost)

    @property
    def remote_address(self) -> Any:
        """The peer's address, as the socket reports it."""
        return None if self.transport is None else self.transport.get_extra_info("peername")

    @property
    def local_address(self) -> Any:
        """Our address, as the socket reports it."""
        return None if self.transport is None else self.transport.get_extra_info("sockname")

    async def wait_closed(self) -> None:
        """Wait until the TCP connection is closed."""
        await asyncio.shield(self._closed)

    # -- asyncio protocol callbacks ----------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        transport = cast(asyncio.Transport, transport)
        self.transport = transport
        high = self.options.write_limit
        low: int | None = None
        if isinstance(high, tuple):
            high, low = high
        transport.set_write_buffer_limits(high, high // 4 if low is None else low)
        self._high_water = high
        self._vectored = has_vectored_writes(transport)

    def handshake_data(self, data: bytes) -> None:
        """Bytes received during the opening handshake (implemented by client and server)."""
        raise NotImplementedError

    def eof_received(self) -> bool | None:
        return None

    def connection_lost(self, exc: Exception | None) -> None:
        self._connection_lost = True
        proto = self.proto
        if proto is not None:
            proto.receive_eof()
            # Frames still buffered (see start) were parsed now: their messages stay readable.
            for event in proto.events_received():
                if type(event) in (bytes, str, Data):
                    self._deliver(event)  # type: ignore[arg-type]
        for timer in (self._keepalive, self._close_timer, self._fail_timer):
            if timer is not None:
                timer.cancel()
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)
        for fut in self._drain_waiters:
            if not fut.done():
                fut.set_result(None)
        self._drain_waiters.clear()
        closed = self._closed_exception()
        for ping, _ in self._pings.values():
            if not ping.done():
                ping.set_exception(closed)
                ping.exception()  # a ping nobody awaits must not log "never retrieved"
        self._pings.clear()
        if not self._closed.done():
            self._closed.set_result(None)

    def pause_writing(self) -> None:
        self._paused_writing = True
        if self.proto is not None:
            self.proto.hold_pongs(True)
        if self._on_message is not None:
            self._hold_reading()

    def resume_writing(self) -> None:
        self._paused_writing = False
        self._release_reading()
        proto = self.proto
        if proto is not None and proto.hold_pongs(False):
            self._flush(proto)
        for fut in self._drain_waiters:
            if not fut.done():
                fut.set_result(None)
        self._drain_waiters.clear()

    def _hold_reading(self) -> None:
        """Writes are blocked and callbacks can't wait for the buffer to drain: read no more
        until it does, so a peer that sends without reading can't pile up the answers."""
        if not self._write_held and self.transport is not None:
            self._write_held = True
            if not self._paused_reading:
                self.transport.pause_reading()

    def _release_reading(self) -> None:
        """Undo :meth:`_hold_reading` (reading stays paused if the queue is full)."""
        if self._write_held:
            self._write_held = False
            if not self._paused_reading and self.transport is not None:
                self.transport.resume_reading()

    # -- after the handshake -----------------------------------------------------------------

    def start(self, proto: Protocol, leftover: bytes) -> None:
        """Switch to WebSocket framing once the opening handshake succeeded."""
        # One read of tiny frames could queue hundreds of thousands of events: parse at most
        # this many per read; the rest waits, as raw bytes, until the queue is read.
        proto.max_events = max(_MAX_EVENTS_PER_READ, self.options.max_queue)
        # And at most this much decompressed: compressed messages inflate (a deflate stream
        # shrinks zeros 1,000-fold), so a read's worth of them could hold gigabytes.
        proto.max_inflated = _MAX_INFLATED_PER_READ
        self.proto = proto
        self._schedule_keepalive()
        if leftover:
            proto.receive_data(leftover)
            self._after_receive(proto)

    def _after_receive(self, proto: Protocol) -> None:
        events = proto.events_received()
        if events:
            if self._on_message is not None and len(events) > 1:
                # Callbacks answering a batch of messages: their answers leave together, in
                # one write after the batch, with nothing left for the loop to do.
                self._batching = True
                try:
                    self._handle_events(events)
                finally:
                    self._end_batch()
            else:
                self._handle_events(events)
            self._check_queue()
        if proto.parse_pending and not self._connection_lost:
            # Frames wait unparsed (see start): read no more until the queue is read, or with
            # on_message (or a reader that took every message as it came, see Waiter), until
            # the next loop iteration parses the next batch.
            self._pause_reading()
            if self._on_message is not None or not self._queue:
                self.loop.call_soon(self._resume)
        if proto.has_pending and self._fail_timer is None:
            self._schedule_failure()
        if proto.has_output or proto.state is not State.OPEN:
            self._flush(proto)  # automatic answers (pong, close), or closing

    def _check_queue(self) -> None:
        """Messages were queued: pause reading if the queue is full (see _queue_filled)."""
        queue = self._queue
        if (
            queue is not None
            and len(queue) >= self.options.max_queue
            and not self._paused_reading
            and not self._connection_lost
        ):
            self._queue_filled()

    def _handle_events(self, events: list[Event]) -> None:
        for event in events:
            kind = type(event)
            if kind is bytes or kind is str or kind is Data:
                self._deliver(event)  # type: ignore[arg-type]
            elif kind is Pong:
                self._pong_received(cast(Pong, event).data)
            elif kind is Close:
                self._close_received()
            elif kind is Ping:
                self._activity()

    def _schedule_failure(self) -> None:
        """The peer erred: fail once the application has read what came before the error.

        Messages received before the error are still delivered and may be answered; the
        close frame follows once the receive queue is empty, or after ``close_timeout``.
        """
        if self._queue:
            timeout = self.options.close_timeout
            self._fail_timer = self.loop.call_later(
                10.0 if timeout is None else timeout, self._fail_pending
            )
        else:
            self._fail_timer = self.loop.call_soon(self._fail_pending)

    def _fail_soon(self) -> None:
        """The messages before the peer's error were read: fail now (at the next iteration)."""
        if self._fail_timer is not None:
            self._fail_timer.cancel()
        self._fail_timer = self.loop.call_soon(self._fail_pending)

    def _fail_pending(self) -> None:
        proto = self.proto
        if proto is not None and proto.has_pending:
            proto.resolve_pending()
            self._flush(proto)

    def _deliver(self, event: Item) -> None:
        if self._on_message is not None:
            self._dispatch(event)
            return
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            # Scheduled, not woken at once (see fastpath.Waiter): the events that follow this
            # one in the batch (a close frame, say) must be handled before the reader runs.
            waiter.set_result(event)
            return
        queue = self._queue
        if queue is None:
            queue = self._queue = collections.deque()
        queue.append(event)

    def _queue_filled(self) -> None:
        """A read filled the queue to ``max_queue``: stop reading unless it empties first.

        A reader that keeps up (``async for message in ws`` at full speed) empties it in the
        next loop iteration, before the next read: pausing and resuming the transport for
        every batch would cost two system calls each time. So the pause waits for that
        iteration (:meth:`_check_full`), and happens at once if another read comes first
        (uvloop reads up to 32 times in a row): at most one more read is queued meanwhile.
        """
        if self._pause_pending:
            self._pause_reading()
        else:
            self._pause_pending = True
            self.loop.call_soon(self._check_full)

    def _check_full(self) -> None:
        self._pause_pending = False
        queue = self._queue
        if queue is not None and len(queue) >= self.options.max_queue and not self._connection_lost:
            self._pause_reading()

    def _pause_reading(self) -> None:
        if not self._paused_reading:
            self._paused_reading = True
            if not self._write_held and self.transport is not None:
                self.transport.pause_reading()

    def _flush(self, proto: Protocol) -> None:
        """Hand the protocol's output to the transport.

        The first output after a read is written at once (lowest latency), unless received
        messages still wait to be answered; what follows (a batch of echoes, a burst of sends)
        is corked and written with one system call: when the last waiting message is answered,
        after a batch of on_message callbacks, or by :meth:`_write_out` at the end of the loop
        iteration (``call_soon``). Past the write buffer's high-water mark corked data is
        written at once, so that backpressure applies (see :meth:`_write_or_cork`).
        """
        chunks = proto.data_to_send()
        transport = self.transport
        if transport is None or transport.is_closing():
            return
        if chunks:
            self._write_or_cork(transport, chunks)
        if proto.close_transport:
            self._write_corked()
            if proto.exc is not None:
                self.logger.debug("failing connection: %s", proto.exc)
            # No message can arrive any more: a waiting reader learns it now.
            waiter = self._waiter
            if waiter is not None and not waiter.done():
                waiter.set_result(None)
            if proto.close_rcvd is None and not proto.eof_rcvd and transport.can_write_eof():
                # Failing while the peer may still be sending: closing now could make the
                # kernel answer its data with a reset that destroys our close frame before
                # the peer reads it. Shut down writing instead, discard what still arrives,
                # and close when the peer does (or after close_timeout).
                if not self._half_closed:
                    self._half_closed = True
                    try:
                        transport.write_eof()
                    except OSError:  # the peer is gone already (ENOTCONN): just close
                        transport.close()
                        return
                    if self._close_timer is None:
                        self._arm_close_timer()
            else:
                transport.close()
        elif proto.state is State.CLOSING and self._close_timer is None:
            self._arm_close_timer()

    def _arm_close_timer(self) -> None:
        timeout = self.options.close_timeout
        if timeout is not None and self.transport is not None:
            self._close_timer = self.loop.call_later(timeout, self.transport.abort)

    def _close_received(self) -> None:
        # The client waits for the server to close TCP, but not forever (RFC 6455 7.1.1).
        if self._close_timer is None:
            self._arm_close_timer()
        # No message follows a close frame: a waiting reader learns it now, as a later one would.
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    # -- receiving ---------------------------------------------------------------------------

    async def recv(self) -> Message:
        """Receive the next message: ``str`` for text, ``bytes`` for binary.

        Raises:
            ConnectionClosedOK: the connection closed normally and no message remains.
            ConnectionClosedError: the connection closed with an error.
            ConcurrencyError: another coroutine is already reading.
            UsageError: messages go to :attr:`on_message`.
        """
        message = self._pop_ready()
        if message is not None:
            return message  # the fast path: a whole message is waiting
        if self._on_message is not None or self._reading:
            self._check_receiving()
        self._reading = True
        try:
            while True:
                event = self._ready_fragment()
                if event is None:  # _next_fragment(), inlined
                    waiter = self._waiter = Waiter(self.loop)
                    try:
                        event = await waiter
                    except asyncio.CancelledError:
                        self._requeue(waiter)
                        raise
                    finally:
                        self._waiter = None
                    if event is None:
                        self._raise_closed()
                if type(event) is not Data:
                    return event  # type: ignore[return-value]
                message = self._join(event)
                if message is not None:
                    return message
        finally:
            self._reading = False

    def _check_receiving(self) -> None:
        if self._on_message is not None:
            raise UsageError("messages go to on_message: set it to None to receive them here")
        if self._reading:
            raise ConcurrencyError("another coroutine is already receiving")

    def _join(self, event: Data) -> Message | None:
        """Add a fragment to the message being received; return the message once whole.

        Fragments join as they come (a list would cost an entry per fragment, however small:
        a peer could send millions).
        """
        data = event.data
        partial = self._partial
        if partial is None:
            partial = self._partial = io.StringIO() if isinstance(data, str) else bytearray()
        if isinstance(partial, io.StringIO):
            partial.write(cast(str, data))
        else:
            partial += cast(bytes, data)
        if not event.fin:
            return None
        self._partial = None
        if isinstance(partial, io.StringIO):
            return partial.getvalue()
        return bytes(partial)

    # -- receiving with a callback -----------------------------------------------------------

    @property
    def on_message(self) -> Callable[[Message], object] | None:
        """A function called with each message as it arrives, like the browser's ``onmessage``.

        While it is set, messages go to it instead of :meth:`recv`: no task wakes up per
        message, the lowest-latency way to receive. It runs inside the event loop's read
        callback, so it must not block; it may answer with :meth:`send_nowait` or start tasks.
        Messages received before it was set are handed to it at once, in order. An exception
        it raises is logged and fails the connection (1011); later messages are dropped.

        Since a callback can't wait for the write buffer to drain, reading pauses while
        writing is blocked (the peer doesn't read): answers can't pile up without bound.
        Set it back to ``None`` to receive with :meth:`recv` again.

        Raises:
            ConcurrencyError: on setting, a coroutine is waiting in :meth:`recv`.
        """
        return self._on_message

    @on_message.setter
    def on_message(self, callback: Callable[[Message], object] | None) -> None:
        if callback is not None and self._reading:
            raise ConcurrencyError("a coroutine is receiving: set on_message before or after")
        self._on_message = callback
        if callback is None:
            self._release_reading()  # recv() and send() apply backpressure again
            return
        queue = self._queue
        while queue and self._on_message is callback:
            self._dispatch(queue.popleft())
        if self._paused_reading:
            self._resume()
        if self._paused_writing:
            self._hold_reading()
        if not queue and self.proto is not None and self.proto.has_pending:
            self._fail_soon()

    def _dispatch(self, event: Item) -> None:
        """Hand a message to on_message (a fragment once its message is whole)."""
        if type(event) is Data:
            message = self._join(event)
            if message is None:
                return
        else:
            message = cast(Message, event)
        callback = self._on_message
        assert callback is not None
        try:
            callback(message)
        except Exception as exc:
            self._callback_failed(exc)

    def _callback_failed(self, exc: Exception) -> None:
        """on_message raised ``exc``: log it, drop later messages, fail the connection (1011)."""
        self.logger.error("on_message callback failed", exc_info=exc)
        self._on_message = _drop
        proto = self.proto
        if proto is not None and proto.state is State.OPEN and not self._connection_lost:
            proto.fail(CloseCode.INTERNAL_ERROR, "on_message failed")
            self._flush(proto)

    async def recv_json(self, *, loads: Callable[[Message], Any] = json.loads) -> Any:
        """Receive the next message and decode it as JSON (text or UTF-8 binary).

        Raises:
            ValueError: the message is not valid JSON (the connection stays open).
        """
        return loads(await self.recv())

    async def recv_streaming(self) -> AsyncIterator[Message]:
        """Receive the next message frame by frame, without assembling it in memory.

        Yields ``str`` fragments for a text message and ``bytes`` for a binary one; a fragment
        may be empty. Consume the iterator to the end before receiving again.
        """
        self._check_receiving()
        self._reading = True
        try:
            partial, self._partial = self._partial, None
            if isinstance(partial, io.StringIO):
                yield partial.getvalue()
            elif partial is not None:
                yield bytes(partial)
            while True:
                event = await self._next_fragment()
                if type(event) is not Data:
                    yield event  # type: ignore[misc]
                    return
                yield event.data
                if event.fin:
                    return
        finally:
            self._reading = False

    def _resume(self) -> None:
        """The queue is short again: parse what was left buffered, then read again."""
        proto = self.proto
        if proto is not None and proto.parse_pending:
            proto.parse_buffered()
            self._after_receive(proto)
        queue = self._queue
        if (proto is None or not proto.parse_pending) and (
            not queue or len(queue) <= self.options.max_queue // 4
        ):
            self._paused_reading = False
            if self.transport is not None and not self._write_held:
                self.transport.resume_reading()

    async def _next_fragment(self) -> Item:
        """The next fragment: a queued one, or the next to arrive.

        Raises:
            ConnectionClosed: no fragment can come any more.
        """
        event = self._ready_fragment()
        if event is None:
            # What recv() and __anext__ do inline (a coroutine fewer per message).
            waiter = self._waiter = Waiter(self.loop)
            try:
                event = await waiter
            except asyncio.CancelledError:
                self._requeue(waiter)
                raise
            finally:
                self._waiter = None
            if event is None:
                self._raise_closed()
        return event

    def _requeue(self, waiter: Waiter) -> None:
        """A reader was cancelled: keep the fragment its waiter got before it resumed."""
        if waiter.done() and not waiter.cancelled():
            pending = waiter.result()
            if pending is not None:
                if self._queue is None:
                    self._queue = collections.deque()
                self._queue.appendleft(pending)

    def _raise_closed(self) -> NoReturn:
        """No fragment can come: fail now for a deferred error, then raise ConnectionClosed."""
        if self.proto is not None and self.proto.has_pending:
            self._fail_pending()
        raise self._closed_exception()

    def __aiter__(self) -> Connection:
        return self

    # __anext__ (``async for message in ws``) is the core's: a waiting message is returned
    # without a coroutine, and the wait is this one.

    async def _anext_wait(self) -> Message:
        """The next message for ``async for``, when none waits; the loop ends on a normal
        close."""
        # recv(), inlined: a coroutine fewer per message in the usual way of receiving.
        if self._on_message is not None or self._reading:
            self._check_receiving()
        self._reading = True
        try:
            while True:
                event = self._ready_fragment()
                if event is None:  # _next_fragment(), inlined
                    waiter = self._waiter = Waiter(self.loop)
                    try:
                        event = await waiter
                    except asyncio.CancelledError:
                        self._requeue(waiter)
                        raise
                    finally:
                        self._waiter = None
                    if event is None:
                        self._raise_closed()
                if type(event) is not Data:
                    return event  # type: ignore[return-value]
                message = self._join(event)
                if message is not None:
                    return message
        except ConnectionClosedOK:
            raise StopAsyncIteration from None
        finally:
            self._reading = False

    def _closed_exception(self) -> ConnectionClosed:
        return closing.closed_exception(self.proto)

    # -- sending -----------------------------------------------------------------------------

    async def send(
        self,
        message: Message | bytearray | memoryview | Any,
        *,
        compress: bool | None = None,
    ) -> None:
        """Send a message, like the browser's ``WebSocket.send()``.

        - ``str``: a text message.
        - ``bytes``, ``bytearray``, ``memoryview``: a binary message.
        - a binary file-like object (with ``read()``, sync or async): a binary message streamed
          in frames of 64 KiB, never read whole.
        - a sync or async iterable of ``str`` or of bytes-like objects: one fragmented message,
          a frame per item (text for ``str`` items, binary for bytes).

        Args:
            message: what to send.
            compress: force compression on or off for this message (when negotiated); by
                default messages under the extension's threshold go uncompressed.

        Raises:
            ConnectionClosed: the connection is closed or closing.
            TypeError: the message is of another type (``dict``? use :meth:`send_json`).
        """
        if self._send_held:
            async with self._holding_send_lock():
                await self._send(message, compress, locked=True)
            return
        if self._send_fast(message, compress):
            if self._paused_writing:
                await self._drain()
            return
        await self._send(message, compress)

    def _send_whole(self, message: Any, compress: bool | None) -> bool:
        """Send a ``str`` or bytes-like message; False if it is of another type."""
        proto = self._sendable()
        if isinstance(message, str):
            proto.send_text(message.encode(), compress=compress)
        elif isinstance(message, bytes):
            proto.send_binary(message, compress=compress)
        elif isinstance(message, bytearray | memoryview):
            # Like the browser's send(), take the data now: the caller may reuse its buffer
            # before the frame is written (and bytes() flattens any memoryview layout).
            proto.send_binary(bytes(message), compress=compress)
        else:
            return False
        self._flush(proto)
        return True

    async def _send(self, message: Any, compress: bool | None, *, locked: bool = False) -> None:
        if self._send_whole(message, compress):
            if self._paused_writing:
                await self._drain()
            return
        if hasattr(message, "read"):
            await self._send_stream(_read_chunks(message), compress, locked)
        elif isinstance(message, AsyncIterable | Iterable) and not isinstance(message, dict):
            await self._send_stream(_iterate_chunks(message), compress, locked)
        else:
            raise TypeError(
                f"cannot send {type(message).__name__}: send str, bytes-like, a binary "
                "file-like object or an iterable of them; use send_json() for objects"
            )

    async def _send_stream(
        self, chunks: AsyncIterator[Message], compress: bool | None, locked: bool
    ) -> None:
        """Send ``chunks`` as one fragmented message, holding the send lock (taken here unless
        the caller, ``locked``, already holds it): other sends wait until the message ends."""
        if not locked:
            async with self._holding_send_lock():
                await self._send_stream(chunks, compress, True)
            return
        first: Message | None = None
        try:
            async for chunk in chunks:
                proto = self._sendable()
                if first is None:
                    first = chunk
                    if isinstance(chunk, str):
                        proto.send_text(chunk.encode(), fin=False, compress=compress)
                    else:
                        proto.send_binary(chunk, fin=False, compress=compress)
                else:
                    if isinstance(chunk, str) != isinstance(first, str):
                        raise TypeError("a fragmented message mixes str and bytes")
                    data = chunk.encode() if isinstance(chunk, str) else chunk
                    proto.send_continuation(data, fin=False)
                self._flush(proto)
                if self._paused_writing:
                    await self._drain()
            proto = self._sendable()
            if first is None:
                proto.send_binary(b"", compress=compress)
            else:
                proto.send_continuation(b"", fin=True)
            self._flush(proto)
        except BaseException:
            # A message cut in the middle can't be finished: fail the connection (1011).
            if first is not None and self.proto is not None and not self._connection_lost:
                self.proto.fail(CloseCode.INTERNAL_ERROR, "message interrupted")
                self._flush(self.proto)
            raise
        if self._paused_writing:
            await self._drain()

    async def send_json(
        self, obj: Any, *, dumps: Callable[[Any], str | bytes] = json.dumps
    ) -> None:
        """Send ``obj`` encoded as JSON in a text message.

        Args:
            obj: any object ``dumps`` accepts.
            dumps: the encoder; it may return ``str`` or UTF-8 ``bytes`` (orjson, msgspec).
        """
        data = dumps(obj)
        proto = self._sendable()
        if self._send_held:
            async with self._holding_send_lock():
                proto = self._sendable()
                proto.send_text(data.encode() if isinstance(data, str) else data)
        else:
            proto.send_text(data.encode() if isinstance(data, str) else data)
        self._flush(proto)
        if self._paused_writing:
            await self._drain()

    @contextlib.asynccontextmanager
    async def _holding_send_lock(self) -> AsyncIterator[None]:
        """Hold the send lock; ``_send_held`` tells (without a call) that it is held."""
        async with self._send_lock:
            self._send_held = True
            try:
                yield
            finally:
                self._send_held = False

    def _sendable(self) -> Protocol:
        proto = self.proto
        if proto is None:
            raise UsageError("the opening handshake is not complete")
        if proto.state is not State.OPEN or self._connection_lost:
            raise self._closed_exception()
        transport = self.transport
        if transport is not None and transport.is_closing():
            raise self._closed_exception()
        return proto

    async def _drain(self) -> None:
        while self._paused_writing and not self._connection_lost:
            fut: asyncio.Future[None] = self.loop.create_future()
            self._drain_waiters.append(fut)
            await fut
        if self._connection_lost:
            raise self._closed_exception()

    # -- ping, pong, keepalive ---------------------------------------------------------------

    async def ping(self, data: Buffer | str | None = None) -> float:
        """Send a ping and wait for its pong; return the round-trip time in seconds.

        Args:
            data: the ping's payload (at most 125 bytes); random by default.

        Raises:
            ConnectionClosed: the connection closed before the pong arrived.
        """
        fut = self.send_ping(data)
        return await asyncio.shield(fut)

    def send_ping(self, data: Buffer | str | None = None) -> asyncio.Future[float]:
        """Send a ping now and return a future resolved with the round-trip time."""
        proto = self._sendable()
        if data is None:
            payload = os.urandom(4)
            while payload in self._pings:
                payload = os.urandom(4)
        else:
            payload = data.encode() if isinstance(data, str) else bytes(data)
            if payload in self._pings:
                raise UsageError("a ping with the same payload is already waiting for its pong")
        proto.send_ping(payload)
        fut: asyncio.Future[float] = self.loop.create_future()
        self._pings[payload] = (fut, time.monotonic())
        self._flush(proto)
        return fut

    async def pong(self, data: Buffer | str = b"") -> None:
        """Send an unsolicited pong (a one-way heartbeat)."""
        proto = self._sendable()
        proto.send_pong(data.encode() if isinstance(data, str) else data)
        self._flush(proto)

    def _pong_received(self, payload: bytes) -> None:
        self._activity()
        if payload not in self._pings:
            return
        now = time.monotonic()
        # A pong acknowledges its ping and every earlier one (RFC 6455 5.5.3).
        for key in list(self._pings):
            fut, sent_at = self._pings.pop(key)
            if not fut.done():
                fut.set_result(now - sent_at)
            if key == payload:
                self.latency = now - sent_at
                break
        if self._keepalive_ping is not None and self._keepalive_ping not in self._pings:
            # The keepalive ping is answered (maybe by a later pong): stop its timeout.
            self._keepalive_ping = None
            if self._keepalive is not None:
                self._keepalive.cancel()
            self._schedule_keepalive()

    def _activity(self) -> None:
        """Hook called on pings and pongs (used by subclasses and metrics)."""

    def _schedule_keepalive(self) -> None:
        interval = self.options.ping_interval
        if interval is not None:
            self._keepalive = self.loop.call_later(interval, self._keepalive_fire)

    def _keepalive_fire(self) -> None:
        proto = self.proto
        if proto is None or proto.state is not State.OPEN or self._connection_lost:
            return
        fut = self.send_ping()
        fut.add_done_callback(_consume)
        self._keepalive_ping = next(reversed(self._pings))
        timeout = self.options.ping_timeout
        if timeout is not None:
            self._keepalive = self.loop.call_later(timeout, self._keepalive_timeout)

    def _keepalive_timeout(self) -> None:
        if self._keepalive_ping is None or self.proto is None:
            return
        self.logger.debug("keepalive ping timed out; failing the connection")
        self.proto.fail(CloseCode.INTERNAL_ERROR, "keepalive ping timeout")
        self._flush(self.proto)

    # -- closing -----------------------------------------------------------------------------

    async def close(self, code: int = CloseCode.NORMAL_CLOSURE, reason: str = "") -> None:
        """Perform the closing handshake and wait for the TCP connection to close.

        Idempotent: closing a closed connection does nothing. Gives up waiting after
        ``close_timeout`` and drops the connection.

        Raises:
            ValueError: the code may not be sent or the reason exceeds 123 bytes.
        """
        proto = self.proto
        if proto is not None and proto.state is State.OPEN and not self._connection_lost:
            if self._send_held and self.proto is not None:
                # A fragmented message is being streamed: it can't be finished cleanly.
                proto.fail(CloseCode.INTERNAL_ERROR, "message interrupted")
            else:
                proto.send_close(code, reason)
            self._flush(proto)
        elif proto is None and self.transport is not None:
            self.transport.close()
        await self.wait_closed()

    def abort(self) -> None:
        """Drop the TCP connection at once, without a closing handshake."""
        if self.transport is not None:
            self.transport.abort()

    async def __aenter__(self) -> Connection:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    def __repr__(self) -> str:
        side = "client" if self.is_client else "server"
        return f"<wsend {side} connection {self.ready_state.name} {self.remote_address}>"


def _drop(message: Message) -> None:
    """Where messages go after an on_message callback failed."""


def _consume(fut: asyncio.Future[Any]) -> None:
    if not fut.cancelled():
        fut.exception()


async def _read_chunks(file: Any) -> AsyncIterator[bytes]:
    """Read a sync or async binary file-like object in chunks."""
    while True:
        chunk = file.read(STREAM_CHUNK_SIZE)
        if isinstance(chunk, Awaitable):
            chunk = await chunk
        if not chunk:
            return
        if isinstance(chunk, str):
            raise TypeError("file-like objects must be opened in binary mode")
        # A reader may reuse its buffer for the next chunk: keep this one's bytes.
        yield chunk if isinstance(chunk, bytes) else bytes(chunk)


async def _iterate_chunks(source: Any) -> AsyncIterator[Message]:
    """Iterate a sync or async iterable of str or bytes-like items, checking their types."""
    if isinstance(source, AsyncIterable):
        async for item in source:
            yield _check_chunk(item)
    else:
        for item in source:
            yield _check_chunk(item)


def _check_chunk(item: Any) -> Message:
    if isinstance(item, str | bytes):
        return item
    if isinstance(item, bytearray | memoryview):
        return bytes(item)
    raise TypeError(f"cannot send {type(item).__name__} in a fragmented message")
