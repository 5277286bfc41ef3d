"""The connection's hot paths: receiving whole messages, sending them, corked writes.

:class:`Connection <wsend.asyncio.connection.Connection>` inherits these methods and the state
they use from ``ConnectionCore``: the compiled ``wsend.asyncio._fastpath.ConnectionCore`` when
the extension is built, else :class:`ConnectionCorePy`, its pure-Python twin, which behaves
identically (``WSEND_NO_SPEEDUPS=1`` forces it; the test suite runs both).

Receiving: a read that starts between messages is parsed here, not in the sans-I/O core, for
as long as it holds whole simple messages (one frame each, uncompressed, within the limits;
see :func:`~wsend.protocol.mask.parse_messages_py`): each is handed to ``on_message`` or to
the reader as it is parsed, with no event list in between. The first frame of any other kind
(control frames, fragments, compressed messages, anything invalid) and everything after it
go to the sans-I/O core, which parses them as before: the peer sees the same behaviour.

Sending: a ``str`` or ``bytes`` message on an open connection without compression is framed
here and written or corked at once (see ``Connection._flush`` for the corking rules).

The methods read the sans-I/O core's state directly (its attributes named with one leading
underscore): they are its fast path, kept in step with it by the tests of both twins.
"""

from __future__ import annotations

import asyncio
import collections
import contextvars
import os
import threading
from collections.abc import Awaitable, Callable, Generator
from typing import TYPE_CHECKING, Any, NoReturn

from ..exceptions import UsageError
from ..protocol.connection import Connection as Protocol
from ..protocol.connection import Data, State
from ..protocol.mask import SPEEDUPS as PROTOCOL_SPEEDUPS
from ..protocol.mask import parse_messages

if TYPE_CHECKING:
    from .connection import ConnectionOptions

__all__ = [
    "RECV_BUFFER_SIZE",
    "SPEEDUPS",
    "ConnectionCore",
    "ConnectionCorePy",
    "ReadyPy",
    "Waiter",
    "WaiterPy",
    "recv_buffer",
]

Buffer = bytes | bytearray | memoryview

# Receive buffer shared by every connection of a thread: data is consumed synchronously in
# buffer_updated(), so one buffer serves all connections and idle ones cost nothing here.
# 1 MiB: with large messages in flight, one read takes several (256 KiB, asyncio's own read
# size, needed 30 % more server CPU per 100 KiB message; 4 MiB gained nothing more).
RECV_BUFFER_SIZE = 1 << 20

# Corked chunks are joined into one write up to this size; larger ones are written apart to
# avoid copying big payloads.
JOIN_LIMIT = 65536

_thread_local = threading.local()


def recv_buffer() -> memoryview:
    """This thread's receive buffer (freed with the thread)."""
    try:
        return _thread_local.recv_buffer  # type: ignore[no-any-return]
    except AttributeError:
        buf = _thread_local.recv_buffer = memoryview(bytearray(RECV_BUFFER_SIZE))
        return buf


class WaiterPy:
    """What ``recv()`` waits on: a future whose task resumes as soon as the message arrives.

    A task awaiting a future registers a callback that resumes it, and asyncio runs such
    callbacks with ``loop.call_soon``: in the next iteration of the event loop, after another
    poll for I/O. When :meth:`wake` sets the result from a transport's read callback (no task
    is running), the callbacks run there and then instead: the reader gets the message in the
    same iteration, while it is still in the CPU's cache, and what it sends in answer leaves
    with the rest of the read's answers. Anywhere else, and for the other outcomes
    (:meth:`set_result`, :meth:`cancel`), the callbacks are scheduled as asyncio's futures
    schedule them.

    It implements what asyncio's tasks use of a future (``_asyncio_future_blocking``,
    ``get_loop``, ``add_done_callback``, ``cancel``, ``result``), and ``await``; only
    ``recv()`` awaits it. The compiled twin is ``wsend.asyncio._fastpath.Waiter``.

    Args:
        loop: the event loop.
    """

    __slots__ = (
        "_asyncio_future_blocking",
        "_callbacks",
        "_cancel_msg",
        "_loop",
        "_result",
        "_state",
    )

    _PENDING, _FINISHED, _CANCELLED = 0, 1, 2

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        self._state = self._PENDING
        self._result: Any = None
        self._cancel_msg: Any = None
        self._callbacks: list[tuple[Callable[[Any], object], contextvars.Context]] = []
        self._asyncio_future_blocking = False

    def get_loop(self) -> asyncio.AbstractEventLoop:
        return self._loop

    def done(self) -> bool:
        return self._state != self._PENDING

    def cancelled(self) -> bool:
        return self._state == self._CANCELLED

    def result(self) -> Any:
        """The result.

        Raises:
            asyncio.CancelledError: the waiter was cancelled.
            asyncio.InvalidStateError: no result yet.
        """
        if self._state == self._CANCELLED:
            raise asyncio.CancelledError("" if self._cancel_msg is None else self._cancel_msg)
        if self._state == self._PENDING:
            raise asyncio.InvalidStateError("Result is not ready.")
        return self._result

    def add_done_callback(
        self, fn: Callable[[Any], object], *, context: contextvars.Context | None = None
    ) -> None:
        if context is None:
            context = contextvars.copy_context()
        if self._state == self._PENDING:
            self._callbacks.append((fn, context))
        else:
            self._loop.call_soon(fn, self, context=context)

    def remove_done_callback(self, fn: Callable[[Any], object]) -> int:
        kept = [callback for callback in self._callbacks if callback[0] != fn]
        removed = len(self._callbacks) - len(kept)
        self._callbacks = kept
        return removed

    def cancel(self, msg: Any | None = None) -> bool:
        if self._state != self._PENDING:
            return False
        self._state = self._CANCELLED
        self._cancel_msg = msg
        self._schedule()
        return True

    def set_result(self, result: Any) -> None:
        """Set the result and schedule the callbacks.

        Raises:
            asyncio.InvalidStateError: the waiter is done already.
        """
        self._finish(result)
        self._schedule()

    def wake(self, result: Any) -> None:
        """Set the result; run the callbacks now, unless a task is running.

        Raises:
            asyncio.InvalidStateError: the waiter is done already.
        """
        self._finish(result)
        if asyncio.current_task(self._loop) is not None:
            self._schedule()
            return
        callbacks, self._callbacks = self._callbacks, []
        for fn, context in callbacks:
            try:
                context.run(fn, self)
            except (SystemExit, KeyboardInterrupt):
                raise
            except BaseException as exc:
                self._loop.call_exception_handler(
                    {"message": f"Exception in callback {fn!r}", "exception": exc, "future": self}
                )

    def _finish(self, result: Any) -> None:
        if self._state != self._PENDING:
            raise asyncio.InvalidStateError("invalid state")
        self._state = self._FINISHED
        self._result = result

    def _schedule(self) -> None:
        callbacks, self._callbacks = self._callbacks, []
        for fn, context in callbacks:
            self._loop.call_soon(fn, self, context=context)

    def __await__(self) -> Generator[WaiterPy, None, Any]:
        if self._state == self._PENDING:
            self._asyncio_future_blocking = True
            yield self
        if self._state == self._PENDING:
            raise RuntimeError("await wasn't used with future")
        return self.result()


class ReadyPy:
    """An awaitable whose result is there already: awaiting it returns ``value`` at once.

    Args:
        value: the result.
    """

    __slots__ = ("value",)

    def __init__(self, value: Any) -> None:
        self.value = value

    def __await__(self) -> Generator[Any, None, Any]:
        return self.value
        yield  # a generator that never yields


class ConnectionCorePy:
    """The hot state and methods of a connection (pure-Python twin of the compiled core).

    Only :class:`~wsend.asyncio.connection.Connection` derives from it; it provides the
    methods called here that aren't defined here (``handshake_data``, ``_after_receive``,
    ``_callback_failed``, ``_check_queue``, ``_closed_exception``, ``_send_whole``,
    ``_resume``, ``_fail_soon``, ``_raise_closed``).
    """

    __slots__ = (
        "_batching",
        "_connection_lost",
        "_cork_for_input",
        "_cork_scheduled",
        "_corked",
        "_corked_size",
        "_high_water",
        "_on_message",
        "_paused_reading",
        "_paused_writing",
        "_queue",
        "_read_header",
        "_reading",
        "_reading_into",
        "_send_held",
        "_vectored",
        "_waiter",
        "_wrote",
        "proto",
        "transport",
    )

    proto: Protocol | None
    transport: asyncio.Transport | None
    _on_message: Callable[[str | bytes], object] | None
    _waiter: WaiterPy | None
    _queue: collections.deque[str | bytes | Data] | None
    _corked: list[Buffer]
    _corked_size: int
    _high_water: int
    _batching: bool  # on_message is handed a batch: answers leave together after it
    _connection_lost: bool
    _cork_for_input: bool  # corked while received messages waited (see _write_or_cork)
    _cork_scheduled: bool
    _paused_reading: bool
    _paused_writing: bool
    _reading: bool  # a coroutine is in recv() or recv_streaming()
    _reading_into: bool  # whether get_buffer() gave a large frame's own buffer
    _read_header: int  # a large frame ended a read: read this much alone next (see get_buffer)
    _send_held: bool  # the send lock is held: a streamed message is being sent
    _vectored: bool
    _wrote: bool
    if TYPE_CHECKING:
        loop: asyncio.AbstractEventLoop
        options: ConnectionOptions

        def handshake_data(self, data: bytes) -> None: ...
        def _after_receive(self, proto: Protocol) -> None: ...
        def _callback_failed(self, exc: Exception) -> None: ...
        def _queue_filled(self) -> None: ...
        def _check_queue(self) -> None: ...
        def _resume(self) -> None: ...
        def _fail_soon(self) -> None: ...
        def _raise_closed(self) -> NoReturn: ...
        async def _anext_wait(self) -> str | bytes: ...
        def _closed_exception(self) -> Exception: ...
        def _send_whole(self, message: Any, compress: bool | None) -> bool: ...

    # -- receiving -------------------------------------------------------------------------

    def get_buffer(self, sizehint: int) -> memoryview:
        """Where the transport reads to: a large frame's own buffer, or the shared one.

        After a read that ended a large frame, only the next frame's header is read (the
        start of the shared buffer, as long as a large frame's header): if another large
        frame follows, as they tend to, its whole payload then lands in its own buffer
        instead of partly in the shared one, to be copied from there.
        """
        proto = self.proto
        if proto is not None and proto._big is not None:
            # The rest of a large frame is read straight into its own buffer.
            view = proto.receive_buffer()
            if view is not None:
                self._reading_into = True
                return view
        self._reading_into = False
        if self._read_header:
            return recv_buffer()[: self._read_header]
        return recv_buffer()

    def buffer_updated(self, nbytes: int) -> None:
        """``nbytes`` arrived in the buffer :meth:`get_buffer` gave: parse and deliver them.

        Raises:
            ValueError: ``nbytes`` exceeds the receive buffer, or is negative.
        """
        proto = self.proto
        self._read_header = 0
        if proto is not None and self._reading_into:
            self._wrote = False  # see _write_or_cork
            # The view get_buffer() gave is exactly what the frame lacks: filling it ends it.
            ends = proto._big_filled + nbytes == proto._big_size
            if proto.receive_into(nbytes):
                self._after_receive(proto)
            if ends:
                self._read_header = proto.large_header_size
            return
        buffer = recv_buffer()
        if not 0 <= nbytes <= len(buffer):
            raise ValueError("nbytes out of range")
        data = buffer[:nbytes]
        if proto is None:
            self.handshake_data(bytes(data))
            return
        self._wrote = False
        if (
            proto._discard
            or proto._capped
            or proto._big is not None
            or proto._buf
            or proto._in_opcode is not None
        ):
            # Within a frame or a fragmented message, or not reading: the general path.
            proto.receive_data(data)
            self._after_receive(proto)
            return
        self._receive_messages(proto, data)

    def _receive_messages(self, proto: Protocol, data: memoryview) -> None:
        """Deliver the whole simple messages at the start of ``data``; hand the rest to the
        sans-I/O core.

        Each message goes to ``on_message`` as it is parsed, or else to the queue; a reader
        waiting in ``recv()`` then takes the first at once (see :class:`Waiter`) and the rest
        from the queue, before the rest of ``data`` is parsed. When on_message or the reader
        gets more than one message, their answers are corked and written together after the
        last (see ``Connection._flush``). At most ``proto.max_events`` messages are
        delivered: past them the rest waits, unparsed, as the core leaves frames past that
        limit (see ``Connection.start``).
        """
        end = len(data)
        limit = proto.max_events or 1 << 62
        expect_mask = proto._expect_mask
        fast_limit = proto._fast_limit
        pos = n = 0
        batch = False
        one: list[str | bytes] = []
        try:
            while n < limit and not proto._discard:
                pos, got = parse_messages(data, pos, expect_mask, fast_limit, 1, one)
                if not got:
                    break
                n += 1
                callback = self._on_message
                if callback is None:
                    queue = self._queue
                    if queue is None:
                        queue = self._queue = collections.deque()
                    queue.append(one.pop())
                    continue
                if n == 1 and pos < end:
                    batch = self._batching = True
                try:
                    callback(one.pop())
                except Exception as exc:
                    self._callback_failed(exc)
            queue = self._queue
            waiter = self._waiter
            if queue and waiter is not None and not waiter.done():
                if len(queue) > 1:
                    batch = self._batching = True
                waiter.wake(queue.popleft())
            if pos < end:
                if n >= limit and not proto._discard:
                    proto.defer_data(data[pos:])
                else:
                    proto.receive_data(data[pos:])
                self._after_receive(proto)
            elif self._queue:
                self._check_queue()
        finally:
            if batch:
                self._end_batch()

    def _end_batch(self) -> None:
        """A batch handed to ``on_message`` ended: write what its answers corked."""
        self._batching = False
        if self._corked and not self._cork_scheduled:
            self._wrote = True
            self._write_corked()

    def _pop_ready(self) -> str | bytes | None:
        """The next message if a whole one waits and ``recv()`` may take it at once, or None.

        Not when a coroutine is receiving, reading is paused (the queue is being refilled),
        or the message is the last one before a deferred failure (its turn ends the wait
        before failing, see ``Connection._schedule_failure``).
        """
        queue = self._queue
        if queue and not self._reading and not self._paused_reading:
            event = queue[0]
            if type(event) is not Data and (
                len(queue) > 1 or self.proto is None or self.proto.pending_failure is None
            ):
                return queue.popleft()  # type: ignore[return-value]
        return None

    def __anext__(self) -> Awaitable[str | bytes]:
        """``async for message in ws``: the next message; the loop ends on a normal close.

        A message that waits is returned without a coroutine (:class:`ReadyPy`); else this is
        ``Connection._anext_wait()``.
        """
        message = self._pop_ready()
        if message is not None:
            return ReadyPy(message)
        return self._anext_wait()

    def _ready_fragment(self) -> str | bytes | Data | None:
        """The next fragment if one is queued; None if the caller must wait for it in a
        :class:`Waiter` set as ``_waiter`` (see ``Connection._next_fragment``).

        Raises:
            ConnectionClosed: no fragment can come any more.
        """
        queue = self._queue
        if not queue and self._paused_reading:
            # Parsing stopped with frames left buffered (max_inflated can stop it after a
            # single message): parse on, rather than wait for what is already here.
            self._resume()
            queue = self._queue
        if queue:
            event = queue.popleft()
            proto = self.proto
            if not queue and proto is not None and proto.pending_failure is not None:
                self._fail_soon()
            if self._paused_reading and len(queue) <= self.options.max_queue // 4:
                self._resume()
            return event
        proto = self.proto
        if self._connection_lost or (proto is not None and proto.close_rcvd is not None):
            self._raise_closed()
        return None

    # -- sending ---------------------------------------------------------------------------

    def send_nowait(
        self, message: str | bytes | bytearray | memoryview, *, compress: bool | None = None
    ) -> None:
        """Send a message without waiting: how :attr:`on_message` callbacks answer.

        Takes ``str`` (text) or bytes-like (binary) messages and writes them at once, or
        buffers them if the socket can't take more now, like the browser's ``send()``:
        :attr:`buffered_amount` tells how much waits. Files and iterables need :meth:`send`.

        Raises:
            ConnectionClosed: the connection is closed or closing.
            UsageError: a streamed message is being sent (its frames must come first).
            TypeError: the message is neither ``str`` nor bytes-like.
        """
        if self._send_held:
            raise UsageError("a streamed message is being sent: await send() instead")
        if not self._send_fast(message, compress) and not self._send_whole(message, compress):
            raise TypeError(
                f"send_nowait() takes str or bytes-like messages, not {type(message).__name__}"
            )

    def _send_fast(self, message: Any, compress: bool | None) -> bool:
        """Send ``str`` or ``bytes`` on an open connection by the shortest path; False if
        ``message`` is of another type or the connection isn't simply open.

        Raises:
            ConnectionClosed: the transport is closing.
        """
        kind = type(message)
        proto = self.proto
        if (
            (kind is not bytes and kind is not str)
            or proto is None
            or proto.state is not State.OPEN
            or self._connection_lost
        ):
            return False
        if kind is str:
            proto.send_text(message.encode(), compress=compress)
        else:
            proto.send_binary(message, compress=compress)
        chunks = proto.data_to_send()
        transport = self.transport
        if transport is None or transport.is_closing():
            raise self._closed_exception()
        self._write_or_cork(transport, chunks)
        return True

    def _write_or_cork(self, transport: asyncio.Transport, chunks: list[Buffer]) -> None:
        """Write ``chunks`` at once if they are the first output since the last read (or the
        last corked write) and no received message waits to be answered; otherwise cork them
        until the last waiting message is answered, the batch of on_message callbacks ends,
        or the loop iteration ends, whichever applies first."""
        if self._batching:
            # Answers from on_message to a batch of messages: written together after it.
            self._cork(chunks)
        elif self._cork_scheduled:
            self._cork(chunks)
            if self._cork_for_input and not self._queue:
                # The answer to the last message waiting: everything corked since goes now.
                self._cork_for_input = False
                self._write_corked()
        elif self._wrote or self._queue:
            # A second write without a read in between, or more received messages waiting
            # (a batch of echoes on its way): more may follow in this iteration. Gather them
            # into one write when the queue is read, or at the end of the iteration.
            self._cork_scheduled = True
            self._cork_for_input = bool(self._queue)
            self.loop.call_soon(self._write_out)
            self._cork(chunks)
        else:
            # The first: written at once, and nothing scheduled. A request answered once per
            # read (one message in flight) costs no extra loop iteration.
            self._wrote = True
            self._write_chunks(transport, chunks)

    def _cork(self, chunks: list[Buffer]) -> None:
        """Keep ``chunks`` for :meth:`_write_out`, or write now past the high-water mark."""
        self._corked.extend(chunks)
        for chunk in chunks:
            self._corked_size += len(chunk)
        if self._corked_size >= self._high_water:
            self._write_corked()

    def _write_out(self) -> None:
        """End of the iteration: write what was corked, and write directly again."""
        self._cork_scheduled = False
        self._cork_for_input = False
        self._wrote = False
        self._write_corked()

    def _write_corked(self) -> None:
        """Write every corked chunk, joined into one ``transport.write`` when small."""
        corked = self._corked
        if not corked:
            return
        transport = self.transport
        size = self._corked_size
        self._corked = []
        self._corked_size = 0
        if transport is None or transport.is_closing():
            return
        if size <= JOIN_LIMIT and len(corked) > 1:
            transport.write(b"".join(corked))
        else:
            self._write_chunks(transport, corked)

    def _write_chunks(self, transport: asyncio.Transport, chunks: list[Buffer]) -> None:
        """Write ``chunks`` in order: in one vectored write where the transport has one."""
        if len(chunks) == 1:
            transport.write(chunks[0])
        elif self._vectored:
            transport.writelines(chunks)
        else:
            for chunk in chunks:
                transport.write(chunk)


def _compiled() -> Any:
    """The compiled module, unless it isn't built or ``WSEND_NO_SPEEDUPS`` is set."""
    if os.environ.get("WSEND_NO_SPEEDUPS") or not PROTOCOL_SPEEDUPS:
        return None
    try:
        from . import _fastpath
    except ImportError:  # pragma: no cover - depends on the build
        return None
    return _fastpath


_module = _compiled()
if TYPE_CHECKING:
    ConnectionCore = ConnectionCorePy
    Waiter = WaiterPy
elif _module is None:  # pragma: no cover - depends on the build
    ConnectionCore, Waiter = ConnectionCorePy, WaiterPy
else:  # pragma: no cover - depends on the build
    ConnectionCore, Waiter = _module.ConnectionCore, _module.Waiter

#: Whether the compiled core is in use.
SPEEDUPS = _module is not None
