"""The machinery under :class:`wsend.sync.Connection`: the reader thread, the writer role,
timers and the closing handshake.

Threads:

- **A reader thread per connection** feeds received bytes to the sans-I/O
  :class:`~wsend.protocol.connection.Connection`, queues the messages for ``recv()``, answers
  pings, sends keepalive pings and enforces their timeout.
- **Any number of application threads** send, receive, ping and close. Each message is built
  whole (every frame of a streamed message before another message's) and written in the order
  it was built.
- **One watchdog thread per process** (:mod:`wsend.sync.watchdog`) drops connections whose
  closing handshake outlasts ``close_timeout``.

Locking: one lock guards the protocol state, the TLS session, the receive queue and the write
backlog; nothing blocks while holding it (conditions release it while waiting). Writing uses no
lock: the first thread with output to write becomes *the writer* and writes, outside the lock,
everything queued until the backlog is empty; threads producing output meanwhile append it to
the backlog and return, unless the backlog exceeds the high-water mark of ``write_limit``: then
they wait until the writer has taken it. So a slow peer slows senders down instead of growing
memory, and the reader thread can queue a pong without waiting behind a large message. When no
other thread is writing, the reader thread writes what it produces itself (pongs, the answer to
a close frame, keepalive pings); should a peer that stopped reading block that write longer
than ``ping_timeout``, the watchdog drops the connection.

Flow control on receiving is as on asyncio: reading stops while ``max_queue`` messages or
fragments wait, and resumes when the queue falls to a quarter of that. A peer's error is
reported after the messages that came before it were read (or after ``close_timeout``), so
that they can be answered, as on asyncio.
"""

from __future__ import annotations

import collections
import contextlib
import io
import logging
import os
import socket
import threading
import time
from concurrent.futures import Future
from typing import Any, cast

from ..asyncio.connection import ConnectionOptions
from ..exceptions import ConnectionClosed, UsageError
from ..protocol import closed as closing
from ..protocol.connection import Connection as Protocol
from ..protocol.connection import Data, Event, Pong, State
from ..protocol.frames import CloseCode
from ..protocol.http import Request, Response
from . import watchdog
from .transport import READ_SIZE, TLS, TunnelTLS, wait_readable, write_all

__all__ = ["Engine"]

Buffer = bytes | bytearray | memoryview
Message = str | bytes
Item = str | bytes | Data

# As on asyncio: events and decompressed bytes parsed from one read at most.
_MAX_EVENTS_PER_READ = 1024
_MAX_INFLATED_PER_READ = 4 << 20
# How long a deferred failure waits for the messages before it to be read when
# close_timeout is None.
_DEFAULT_FAILURE_WAIT = 10.0


class Engine:
    """The state and threads of one connection; :class:`~wsend.sync.Connection` adds the API.

    Args:
        sock: the connected socket, in blocking mode.
        options: the connection's settings.
        tls: the TLS session over ``sock``, if any.
    """

    logger = logging.getLogger("wsend.sync")

    def __init__(
        self,
        sock: socket.socket,
        options: ConnectionOptions,
        tls: TLS | TunnelTLS | None = None,
    ) -> None:
        self.options = options
        self.proto: Protocol | None = None
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
        self._sock = sock
        self._tls = tls
        self._read_header = 0  # a large frame ended the last read: read its next header alone
        self._addresses = _addresses(sock)
        self._lock = threading.Lock()
        self._readable = threading.Condition(self._lock)  # a message arrived, or the end
        self._writable = threading.Condition(self._lock)  # the backlog was taken, a stream ended
        self._room = threading.Condition(self._lock)  # the reader may go on
        self._queue: collections.deque[Item] = collections.deque()
        self._paused = False  # the reader waits for the queue to empty to a quarter
        self._partial: bytearray | io.StringIO | None = None
        self._recv_mutex = threading.Lock()
        self._backlog: list[Buffer] = []
        self._backlog_size = 0
        self._inflight = 0  # bytes the writer took from the backlog and is writing
        self._writing = False
        self._write_shut = False
        self._streaming: int | None = None  # the thread sending a fragmented message
        self._pings: dict[bytes, tuple[Future[float], float]] = {}
        self._settle: list[tuple[Future[float], float | BaseException]] = []
        self._next_ping: float | None = None
        self._ping_deadline: float | None = None
        self._keepalive_ping: bytes | None = None
        self._failure_deadline: float | None = None
        self._close_handle: watchdog.Handle | None = None
        self._aborted = False
        self._lost = False
        self._closed = threading.Event()
        self._reader: threading.Thread | None = None
        high = options.write_limit
        low: int | None = None
        if isinstance(high, tuple):
            high, low = high
        self._high, self._low = high, high // 4 if low is None else low

    def _send_raw(self, data: bytes) -> None:
        """Write handshake bytes (encrypted with TLS), before the reader thread starts."""
        if self._tls is not None:
            data = self._tls.encrypt([data])
        self._sock.sendall(data)

    def _recv_raw(self) -> bytes:
        """Read handshake bytes (decrypted with TLS), before the reader thread starts; ``b""``
        at the end of the stream."""
        if self._tls is not None:
            # Records that arrived with the TLS handshake's last flight wait in TLS's buffer.
            plain = self._tls.decrypt(b"")
            if plain:
                return plain
        while True:
            data = self._sock.recv(READ_SIZE)
            if not data or self._tls is None:
                return data
            plain = self._tls.decrypt(data)
            if plain or self._tls.eof:
                return plain

    def _start(self, proto: Protocol, leftover: bytes) -> None:
        """Switch to WebSocket framing and start the reader thread (the handshake succeeded)."""
        proto.max_events = max(_MAX_EVENTS_PER_READ, self.options.max_queue)
        proto.max_inflated = _MAX_INFLATED_PER_READ
        self.proto = proto
        if self.options.ping_interval is not None:
            self._next_ping = time.monotonic() + self.options.ping_interval
        self._sock.settimeout(None)
        name = f"wsend-reader-{self._addresses[1]}"
        self._reader = threading.Thread(target=self._run, args=(leftover,), name=name, daemon=True)
        self._reader.start()

    def _run(self, leftover: bytes) -> None:
        """The reader thread: feed what arrives to the protocol until the connection ends."""
        buffer = memoryview(bytearray(READ_SIZE))
        try:
            if leftover:
                self._received(memoryview(leftover), len(leftover), plain=True)
            while self._wait_for_data():
                target, into = self._target(buffer)
                nbytes = self._sock.recv_into(target)
                if not nbytes:
                    break
                self._received(target, nbytes, into=into)
                if self._tls is not None and self._tls.eof:
                    break
        except OSError as exc:
            self.logger.debug("connection lost: %s", exc)
        except Exception:  # pragma: no cover - a bug: don't leave the connection hanging
            self.logger.exception("the reader thread failed")
        finally:
            self._connection_lost()

    def _target(self, buffer: memoryview) -> tuple[memoryview, bool]:
        """Where the next read goes: the rest of a large frame in place (``True``), or
        ``buffer``, or only its start after a read that ended a large frame (so that the
        payload of a large frame after it goes in place whole)."""
        if self._tls is None:
            with self._lock:
                proto = self.proto
                view = proto.receive_buffer() if proto is not None else None
            if view is not None:
                return view, True
            if self._read_header:
                header, self._read_header = self._read_header, 0
                return buffer[:header], False
        return buffer, False

    def _received(
        self, target: memoryview, nbytes: int, *, into: bool = False, plain: bool = False
    ) -> None:
        """Hand ``nbytes`` read into ``target`` to the protocol; write the answers."""
        with self._lock:
            proto = self.proto
            assert proto is not None
            if into:
                # The rest of a large frame, read in place: nothing to look at until it ends.
                if nbytes == len(target):
                    self._read_header = proto.large_header_size
                write = proto.receive_into(nbytes) and self._after_events(proto)
            else:
                if self._tls is not None and not plain:
                    proto.receive_data(self._tls.decrypt(target[:nbytes]))
                else:
                    proto.receive_data(target[:nbytes])
                write = self._after_events(proto)
        self._settle_pings()
        if write:
            self._reader_write()

    def _reader_write(self) -> None:
        """Write as the reader thread (no other thread was writing), within a deadline.

        The reader reads nothing while it writes, so a peer that stopped reading could hold it
        forever, keepalive included: if the write takes longer than ``ping_timeout`` (or
        ``close_timeout`` without keepalive), the watchdog drops the connection.
        """
        limit = self.options.ping_timeout
        if limit is None:
            limit = self.options.close_timeout
        handle = None if limit is None else watchdog.schedule(limit, self._write_stuck)
        try:
            self._write_out()
        finally:
            if handle is not None:
                handle.cancel()

    def _write_stuck(self) -> None:
        if not self._closed.is_set():
            self.logger.debug("the peer doesn't read; dropping the connection")
            self.abort()

    def _after_events(self, proto: Protocol) -> bool:
        """Under the lock: handle the parsed events; return whether to write now."""
        events = proto.events_received()
        if events:
            self._handle_events(events)
        return self._collect(proto)

    def _handle_events(self, events: list[Event]) -> None:
        queue = self._queue
        delivered = False
        for event in events:
            kind = type(event)
            if kind is bytes or kind is str or kind is Data:
                queue.append(event)  # type: ignore[arg-type]
                delivered = True
            elif kind is Pong:
                self._pong_received(cast(Pong, event).data)
        if delivered:
            if len(queue) >= self.options.max_queue:
                self._paused = True
            self._readable.notify()
        proto = self.proto
        if proto is not None and (proto.close_rcvd is not None or proto.close_transport):
            self._readable.notify_all()  # no message follows

    def _wait_for_data(self) -> bool:
        """Run due timers and wait until reading makes sense; False when the reader must stop."""
        while True:
            with self._lock:
                if self._aborted:
                    return False
                write, timeout = self._reader_step()
            self._settle_pings()
            if write:
                self._reader_write()
            if timeout is _AGAIN:
                continue
            if timeout is None or wait_readable(self._sock, cast(float, timeout)):
                return True

    def _reader_step(self) -> tuple[bool, float | object | None]:
        """Under the lock: timers, then what the reader does next.

        Returns whether to write now, and how long to wait for data before the next timer is
        due (``None``: no timer), or ``_AGAIN`` to start over (it waited, or made progress).
        """
        proto = self.proto
        assert proto is not None
        now = time.monotonic()
        self._run_timers(proto, now)
        if proto.has_pending:
            # The peer erred after the messages still queued: let them be read (and
            # answered) first, within the close timeout.
            if self._failure_deadline is None:
                wait = self.options.close_timeout
                self._failure_deadline = now + (_DEFAULT_FAILURE_WAIT if wait is None else wait)
            if self._queue and now < self._failure_deadline:
                self._room.wait(self._timer_delay(now, self._failure_deadline))
                return self._collect(proto), _AGAIN
            proto.resolve_pending()
            return self._collect(proto), _AGAIN
        if self._paused:
            self._room.wait(self._timer_delay(now))
            return self._collect(proto), _AGAIN
        if proto.parse_pending:
            proto.parse_buffered()
            return self._after_events(proto), _AGAIN
        return self._collect(proto), self._timer_delay(now)

    def _timer_delay(self, now: float, deadline: float | None = None) -> float | None:
        """Seconds until the first of the reader's timers (and ``deadline``) is due."""
        due = [t for t in (self._next_ping, self._ping_deadline, deadline) if t is not None]
        return max(0.0, min(due) - now) if due else None

    def _run_timers(self, proto: Protocol, now: float) -> None:
        """Under the lock: send the keepalive ping, or fail on its timeout (RFC 6455 5.5.2)."""
        if self._ping_deadline is not None and now >= self._ping_deadline:
            self._ping_deadline = None
            if proto.state is State.OPEN:
                self.logger.debug("keepalive ping timed out; failing the connection")
                proto.fail(CloseCode.INTERNAL_ERROR, "keepalive ping timeout")
        elif self._next_ping is not None and now >= self._next_ping:
            self._next_ping = None
            if proto.state is State.OPEN:
                payload = self._new_ping(proto, None)
                self._keepalive_ping = payload
                timeout = self.options.ping_timeout
                if timeout is not None:
                    self._ping_deadline = now + timeout

    def _new_ping(self, proto: Protocol, data: Buffer | str | None) -> bytes:
        """Under the lock: send a ping, record its future; return its payload."""
        if data is None:
            payload = os.urandom(4)
            while payload in self._pings:
                payload = os.urandom(4)
        else:
            payload = data.encode() if isinstance(data, str) else bytes(data)
            if payload in self._pings:
                raise UsageError("a ping with the same payload is already waiting for its pong")
        proto.send_ping(payload)
        self._pings[payload] = (Future(), time.monotonic())
        return payload

    def _pong_received(self, payload: bytes) -> None:
        if payload not in self._pings:
            return
        now = time.monotonic()
        # A pong acknowledges its ping and every earlier one (RFC 6455 5.5.3).
        for key in list(self._pings):
            fut, sent_at = self._pings.pop(key)
            self._settle.append((fut, now - sent_at))
            if key == payload:
                self.latency = now - sent_at
                break
        if self._keepalive_ping is not None and self._keepalive_ping not in self._pings:
            self._keepalive_ping = None
            self._ping_deadline = None
            interval = self.options.ping_interval
            if interval is not None:
                self._next_ping = now + interval

    def _settle_pings(self) -> None:
        """Resolve the ping futures decided under the lock (their callbacks run here)."""
        while self._settle:
            fut, result = self._settle.pop()
            if fut.done():
                continue
            if isinstance(result, BaseException):
                fut.set_exception(result)
            else:
                fut.set_result(result)

    def _connection_lost(self) -> None:
        """The reader's end: the connection is gone; wake everyone, release the socket."""
        with self._lock:
            self._lost = True
            proto = self.proto
            if proto is not None:
                proto.receive_eof()
                # Frames still buffered were parsed now: their messages stay readable.
                for event in proto.events_received():
                    if type(event) in (bytes, str, Data):
                        self._queue.append(event)  # type: ignore[arg-type]
            closed = self._closed_exception()
            for fut, _ in self._pings.values():
                self._settle.append((fut, closed))
            self._pings.clear()
            self._backlog = []
            self._backlog_size = 0
            for cond in (self._readable, self._writable, self._room):
                cond.notify_all()
        self._settle_pings()
        with contextlib.suppress(OSError):
            self._sock.shutdown(socket.SHUT_RDWR)  # a writer blocked in sendall returns
        with self._lock:
            self._writable.wait_for(lambda: not self._writing, timeout=5.0)
        self._sock.close()
        if self._close_handle is not None:
            self._close_handle.cancel()
        self._closed.set()

    def _collect(self, proto: Protocol) -> bool:
        """Under the lock: move the protocol's output to the backlog (encrypted with TLS).

        Returns whether the calling thread must now write: it becomes the writer when there is
        something to write (or the write side to shut) and no other thread is writing.
        """
        chunks = proto.data_to_send()
        tls = self._tls
        if tls is not None:
            data = tls.encrypt(chunks) if chunks else b""
            data += tls.pending()
            chunks = [data] if data else []
        if chunks:
            self._backlog.extend(chunks)
            for chunk in chunks:
                self._backlog_size += len(chunk)
        if proto.state is not State.OPEN:
            if self._close_handle is None:
                self._arm_close_timeout()
            # Closing (or failing): a reader waiting for a message may learn no more come.
            self._readable.notify_all()
        if self._writing or self._lost:
            return False
        if self._backlog or (proto.close_transport and not self._write_shut):
            self._writing = True
            return True
        return False

    def _arm_close_timeout(self) -> None:
        timeout = self.options.close_timeout
        if timeout is not None:
            self._close_handle = watchdog.schedule(timeout, self._close_timed_out)

    def _close_timed_out(self) -> None:
        if not self._closed.is_set():
            self.logger.debug("closing handshake timed out; dropping the connection")
            self.abort()

    def _write_out(self) -> None:
        """Write the backlog until it is empty (the caller is the writer), then, when the
        protocol says so, shut the write side down.

        Raises:
            OSError: the connection failed (it is being dropped).
        """
        try:
            while True:
                with self._lock:
                    chunks, shut = self._take_backlog()
                    if not chunks and not shut:
                        self._writing = False
                        self._inflight = 0
                        self._writable.notify_all()
                        return
                if chunks:
                    write_all(self._sock, chunks)
                if shut:
                    self._sock.shutdown(socket.SHUT_WR)
        except OSError:
            with self._lock:
                self._writing = False
                self._inflight = 0
                self._backlog = []
                self._backlog_size = 0
                self._writable.notify_all()
            self.abort()
            raise

    def _take_backlog(self) -> tuple[list[Buffer], bool]:
        """Under the lock: the writer's next chunks, and whether to shut writing after them."""
        chunks = self._backlog
        if chunks:
            self._backlog = []
            self._inflight = self._backlog_size
            self._backlog_size = 0
            self._writable.notify_all()
            return chunks, False
        proto = self.proto
        if proto is None or not proto.close_transport or self._write_shut or self._lost:
            return [], False
        # The protocol is done sending: end TLS, then TCP, so the peer reads everything up to
        # our close frame and sees the end. Reading goes on until the peer closes (or the close
        # timeout drops the connection): closing with unread data would reset the connection.
        self._write_shut = True
        if proto.exc is not None:
            self.logger.debug("failing connection: %s", proto.exc)
        tail = self._tls.close_notify() if self._tls is not None else b""
        return ([tail] if tail else []), True

    def _after_send(self, write: bool) -> None:
        """After queueing output: write it (as the writer), or wait while the backlog is full.

        Raises:
            ConnectionClosed: the connection failed meanwhile.
        """
        try:
            if write:
                self._write_out()
                return
            with self._lock:
                if self._backlog_size <= self._high:
                    return
                while self._writing and self._backlog_size > self._low and not self._lost:
                    self._writable.wait()
                if self._lost:
                    raise self._closed_exception()
        except OSError as exc:
            raise self._closed_exception() from exc

    def _sendable(self) -> Protocol:
        """Under the lock: the protocol, if messages may be sent."""
        proto = self.proto
        if proto is None:
            raise UsageError("the opening handshake is not complete")
        if proto.state is not State.OPEN or self._lost or self._write_shut:
            raise self._closed_exception()
        return proto

    def _wait_for_stream(self) -> None:
        """Under the lock: wait until no other thread is streaming a message."""
        while self._streaming is not None:
            if self._streaming == threading.get_ident():
                raise UsageError("this thread is streaming a message: finish it first")
            self._writable.wait()

    def _interrupt(self) -> None:
        """A streamed message can't be finished: fail the connection (1011)."""
        with self._lock:
            proto = self.proto
            if proto is None or proto.state is not State.OPEN or self._lost:
                return
            proto.fail(CloseCode.INTERNAL_ERROR, "message interrupted")
            write = self._collect(proto)
        if write:
            with contextlib.suppress(OSError):
                self._write_out()

    def _no_more_messages(self) -> bool:
        proto = self.proto
        if self._lost or proto is None:
            return True
        return proto.close_rcvd is not None or proto.close_transport

    def _closed_exception(self) -> ConnectionClosed:
        return closing.closed_exception(self.proto)

    def abort(self) -> None:
        """Drop the TCP connection at once, without a closing handshake."""
        with self._lock:
            self._aborted = True
            self._room.notify_all()
        # The reader thread (or, during the opening handshake, the thread running it) sees
        # the end and closes the socket.
        with contextlib.suppress(OSError):
            self._sock.shutdown(socket.SHUT_RDWR)


class _Again:
    """The reader's marker for "start over"."""


_AGAIN = _Again()


def _addresses(sock: socket.socket) -> tuple[Any, Any]:
    try:
        return sock.getsockname(), sock.getpeername()
    except OSError:
        return None, None
