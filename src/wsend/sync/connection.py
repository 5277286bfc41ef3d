"""An open WebSocket connection on a blocking socket, safe to use from several threads.

The API mirrors the asyncio :class:`wsend.Connection`, with blocking methods; the threads and
locking underneath are described in :mod:`wsend.sync.engine`.
"""

from __future__ import annotations

import contextlib
import io
import json
import threading
import time
from collections.abc import AsyncIterable, Callable, Iterable, Iterator, Mapping
from concurrent.futures import Future
from typing import Any, cast

from ..asyncio.connection import STREAM_CHUNK_SIZE
from ..exceptions import ConnectionClosedOK
from ..protocol import closed as closing
from ..protocol.connection import Data, State
from ..protocol.frames import CloseCode
from .engine import Buffer, Engine, Item, Message

__all__ = ["Connection"]


class Connection(Engine):
    """A WebSocket connection for threads: ``send()`` anything, ``recv()`` messages.

    Not created directly: :func:`wsend.sync.connect` opens one, :func:`wsend.sync.serve` passes
    one to its handler. Every method may be called from any thread; several threads may send
    (a message's frames never interleave with another's) and several may receive (each message
    goes to one of them).
    """

    is_client = False

    # -- state ------------------------------------------------------------------------------

    @property
    def ready_state(self) -> State:
        """CONNECTING, OPEN, CLOSING or CLOSED, like the browser's ``WebSocket.readyState``."""
        if self._lost:
            return State.CLOSED
        if self.proto is None:
            return State.CONNECTING
        return self.proto.state

    @property
    def buffered_amount(self) -> int:
        """Bytes accepted by ``send()`` but not yet written to the socket."""
        return self._backlog_size + self._inflight

    @property
    def close_code(self) -> int | None:
        """The close code received (1005 without code, 1006 if none).

        ``None`` until the closing handshake completed or the connection was lost.
        """
        return closing.close_code(self.proto, self._lost)

    @property
    def close_reason(self) -> str | None:
        """The close reason received; ``None`` until the close code is known."""
        return closing.close_reason(self.proto, self._lost)

    @property
    def remote_address(self) -> Any:
        """The peer's address, as the socket reports it."""
        return self._addresses[1]

    @property
    def local_address(self) -> Any:
        """Our address, as the socket reports it."""
        return self._addresses[0]

    def wait_closed(self, timeout: float | None = None) -> bool:
        """Wait until the TCP connection is closed; return whether it is (``False`` after
        ``timeout`` seconds)."""
        return self._closed.wait(timeout)

    # -- receiving ---------------------------------------------------------------------------

    def recv(self, timeout: float | None = None) -> Message:
        """Receive the next message: ``str`` for text, ``bytes`` for binary.

        Args:
            timeout: seconds to wait at most (``None``: no limit; ``0``: only a message that
                is already here).

        Raises:
            TimeoutError: no message arrived in time (a message partly received stays for the
                next call).
            ConnectionClosedOK: the connection closed normally and no message remains.
            ConnectionClosedError: the connection closed with an error.
        """
        deadline = None if timeout is None else time.monotonic() + timeout
        if not self._recv_mutex.acquire(timeout=-1 if timeout is None else max(0.0, timeout)):
            raise TimeoutError("timed out waiting for a message")
        try:
            while True:
                item = self._next_item(deadline)
                if type(item) is not Data:
                    return cast(Message, item)
                message = self._join(item)
                if message is not None:
                    return message
        finally:
            self._recv_mutex.release()

    def _next_item(self, deadline: float | None) -> Item:
        with self._lock:
            queue = self._queue
            while not queue:
                if self._no_more_messages():
                    raise self._closed_exception()
                if deadline is None:
                    self._readable.wait()
                    continue
                left = deadline - time.monotonic()
                if left <= 0:
                    raise TimeoutError("timed out waiting for a message")
                self._readable.wait(left)
            item = queue.popleft()
            if self._paused and len(queue) <= self.options.max_queue // 4:
                self._paused = False
                self._room.notify()
            elif not queue and self.proto is not None and self.proto.has_pending:
                self._room.notify()
            return item

    def _join(self, event: Data) -> Message | None:
        """Add a fragment to the message being received; return the message once whole."""
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

    def recv_json(
        self, timeout: float | None = None, *, loads: Callable[[Message], Any] = json.loads
    ) -> Any:
        """Receive the next message and decode it as JSON (text or UTF-8 binary).

        Raises:
            ValueError: the message is not valid JSON (the connection stays open).
            TimeoutError: see :meth:`recv`.
        """
        return loads(self.recv(timeout))

    def recv_streaming(self) -> Iterator[Message]:
        """Receive the next message frame by frame, without assembling it in memory.

        Yields ``str`` fragments for a text message and ``bytes`` for a binary one; a fragment
        may be empty. Other threads' ``recv()`` wait until the iterator is exhausted or closed.
        """
        with self._recv_mutex:
            partial, self._partial = self._partial, None
            if isinstance(partial, io.StringIO):
                yield partial.getvalue()
            elif partial is not None:
                yield bytes(partial)
            while True:
                item = self._next_item(None)
                if type(item) is not Data:
                    yield cast(Message, item)
                    return
                yield item.data
                if item.fin:
                    return

    def __iter__(self) -> Iterator[Message]:
        """``for message in ws``: messages until the connection closes (normally: the loop
        ends; with an error: :class:`ConnectionClosedError`)."""
        while True:
            try:
                yield self.recv()
            except ConnectionClosedOK:
                return

    # -- sending -----------------------------------------------------------------------------

    def send(
        self, message: Message | bytearray | memoryview | Any, *, compress: bool | None = None
    ) -> None:
        """Send a message, like the browser's ``WebSocket.send()``.

        - ``str``: a text message.
        - ``bytes``, ``bytearray``, ``memoryview``: a binary message.
        - a binary file-like object (with ``read()``): a binary message streamed in frames of
          64 KiB, never read whole.
        - an iterable of ``str`` or of bytes-like objects: one fragmented message, a frame per
          item (text for ``str`` items, binary for bytes).

        Returns once the message is written to the socket or queued behind what another
        thread is writing; waits while more than ``write_limit`` bytes are queued.

        Args:
            message: what to send.
            compress: force compression on or off for this message (when negotiated).

        Raises:
            ConnectionClosed: the connection is closed or closing.
            TypeError: the message is of another type (``dict``? use :meth:`send_json`).
            UsageError: this thread is streaming a message (from the iterable being sent).
        """
        if isinstance(message, str):
            self._send_whole(message.encode(), True, compress)
        elif isinstance(message, bytes):
            self._send_whole(message, False, compress)
        elif isinstance(message, bytearray | memoryview):
            # Take the data now, as the browser does: the caller may reuse its buffer before
            # the frame is written by another thread.
            self._send_whole(bytes(message), False, compress)
        elif hasattr(message, "read"):
            self._send_stream(_read_chunks(message), compress)
        elif isinstance(message, Iterable) and not isinstance(message, Mapping):
            self._send_stream(_iterate_chunks(message), compress)
        elif isinstance(message, AsyncIterable):
            raise TypeError("async iterables need the asyncio API: wsend.connect()")
        else:
            raise TypeError(
                f"cannot send {type(message).__name__}: send str, bytes-like, a binary "
                "file-like object or an iterable of them; use send_json() for objects"
            )

    def send_json(self, obj: Any, *, dumps: Callable[[Any], str | bytes] = json.dumps) -> None:
        """Send ``obj`` encoded as JSON in a text message.

        Args:
            obj: any object ``dumps`` accepts.
            dumps: the encoder; it may return ``str`` or UTF-8 ``bytes`` (orjson, msgspec).
        """
        data = dumps(obj)
        self._send_whole(data.encode() if isinstance(data, str) else data, True, None)

    def _send_whole(self, data: bytes, text: bool, compress: bool | None) -> None:
        with self._lock:
            self._wait_for_stream()
            proto = self._sendable()
            if text:
                proto.send_text(data, compress=compress)
            else:
                proto.send_binary(data, compress=compress)
            write = self._collect(proto)
        self._after_send(write)

    def _send_stream(self, chunks: Iterator[Message], compress: bool | None) -> None:
        """Send ``chunks`` as one fragmented message; other senders wait until it ends."""
        with self._lock:
            self._wait_for_stream()
            self._sendable()
            self._streaming = threading.get_ident()
        first: Message | None = None
        try:
            for chunk in chunks:
                with self._lock:
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
                        proto.send_continuation(
                            chunk.encode() if isinstance(chunk, str) else chunk, fin=False
                        )
                    write = self._collect(proto)
                self._after_send(write)
            with self._lock:
                proto = self._sendable()
                if first is None:
                    proto.send_binary(b"", compress=compress)
                else:
                    proto.send_continuation(b"", fin=True)
                write = self._collect(proto)
            self._after_send(write)
        except BaseException:
            if first is not None:
                self._interrupt()
            raise
        finally:
            with self._lock:
                self._streaming = None
                self._writable.notify_all()

    # -- ping, pong --------------------------------------------------------------------------

    def ping(self, data: Buffer | str | None = None, *, timeout: float | None = None) -> float:
        """Send a ping and wait for its pong; return the round-trip time in seconds.

        Args:
            data: the ping's payload (at most 125 bytes); random by default.
            timeout: seconds to wait for the pong at most.

        Raises:
            TimeoutError: no pong in time.
            ConnectionClosed: the connection closed before the pong arrived.
        """
        return self.send_ping(data).result(timeout)

    def send_ping(self, data: Buffer | str | None = None) -> Future[float]:
        """Send a ping now; return a future resolved with the round-trip time."""
        with self._lock:
            proto = self._sendable()
            payload = self._new_ping(proto, data)
            fut = self._pings[payload][0]
            write = self._collect(proto)
        self._after_send(write)
        return fut

    def pong(self, data: Buffer | str = b"") -> None:
        """Send an unsolicited pong (a one-way heartbeat)."""
        with self._lock:
            proto = self._sendable()
            proto.send_pong(data.encode() if isinstance(data, str) else data)
            write = self._collect(proto)
        self._after_send(write)

    # -- closing -----------------------------------------------------------------------------

    def close(self, code: int = CloseCode.NORMAL_CLOSURE, reason: str = "") -> None:
        """Perform the closing handshake and wait for the TCP connection to close.

        Idempotent. Gives up waiting after ``close_timeout`` and drops the connection. A message
        being streamed by another thread is interrupted (1011).

        Raises:
            ValueError: the code may not be sent or the reason exceeds 123 bytes.
        """
        write = False
        with self._lock:
            proto = self.proto
            if proto is None:
                pass
            elif proto.state is State.OPEN and not self._lost:
                if self._streaming is not None:
                    proto.fail(CloseCode.INTERNAL_ERROR, "message interrupted")
                else:
                    proto.send_close(code, reason)
                write = self._collect(proto)
        if proto is None:
            self.abort()
            return
        if write:
            with contextlib.suppress(OSError):
                self._write_out()
        if threading.current_thread() is not self._reader:
            self._closed.wait()

    def __enter__(self) -> Connection:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def __repr__(self) -> str:
        side = "client" if self.is_client else "server"
        return f"<wsend sync {side} connection {self.ready_state.name} {self.remote_address}>"


def _read_chunks(file: Any) -> Iterator[bytes]:
    """Read a binary file-like object in chunks."""
    while True:
        chunk = file.read(STREAM_CHUNK_SIZE)
        if not chunk:
            return
        if isinstance(chunk, str):
            raise TypeError("file-like objects must be opened in binary mode")
        if not isinstance(chunk, bytes | bytearray | memoryview):
            raise TypeError("file-like objects must return bytes; async files need wsend.connect")
        # A reader may reuse its buffer for the next chunk: keep this one's bytes.
        yield chunk if isinstance(chunk, bytes) else bytes(chunk)


def _iterate_chunks(source: Iterable[Any]) -> Iterator[Message]:
    """Iterate ``source``, checking the types of its items."""
    for item in source:
        if isinstance(item, str | bytes):
            yield item
        elif isinstance(item, bytearray | memoryview):
            yield bytes(item)
        else:
            raise TypeError(f"cannot send {type(item).__name__} in a fragmented message")
