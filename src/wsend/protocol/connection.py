"""The WebSocket state machine after the opening handshake (RFC 6455 sections 5 to 7).

Sans-I/O: feed received bytes with :meth:`Connection.receive_data`, collect parsed events with
:meth:`Connection.events_received`, call ``send_*`` to produce frames, and write whatever
:meth:`Connection.data_to_send` returns. :attr:`Connection.close_transport` tells when the
caller must close the TCP connection.

Invariants (every transition of the closing handshake happens in this module):

- ``state`` only moves forward: OPEN -> CLOSING -> CLOSED.
- OPEN -> CLOSING when a close frame is sent or received, or the connection is failed.
- -> CLOSED when the transport ended (:meth:`receive_eof`), never earlier: the caller reports
  the connection closed once the TCP connection is gone.
- After a close frame was sent, no frame is ever sent again; after a close frame was received
  or the connection failed, received bytes are discarded.
- The peer's misbehaviour never raises from ``receive_data``: it fails the connection (a close
  frame with the code from :func:`~wsend.protocol.frames.close_code_for`) and stores the error in
  :attr:`Connection.exc`. Local misuse raises :class:`~wsend.exceptions.UsageError` or
  :class:`ValueError` / :class:`TypeError` from the ``send_*`` methods.
"""

from __future__ import annotations

import codecs
import enum
import os
from dataclasses import dataclass

from ..exceptions import (
    InvalidPayload,
    PayloadTooBig,
    ProtocolError,
    UsageError,
    WebSocketError,
)
from .deflate import PerMessageDeflate
from .frames import Close, CloseCode, Opcode, close_code_for, is_valid_close_code, serialize_frame
from .mask import Payload, PayloadBuffer, apply_mask, parse_messages

__all__ = [
    "DEFAULT_MAX_MESSAGE_SIZE",
    "Connection",
    "Data",
    "Event",
    "Ping",
    "Pong",
    "Side",
    "State",
]

Buffer = bytes | bytearray | memoryview

# 1 MiB per message, as websockets: large enough for typical application messages, small enough
# that a hostile peer can't make a server buffer much. aiohttp allows 4 MiB, Node's ws 100 MiB.
DEFAULT_MAX_MESSAGE_SIZE = 1 << 20


class Side(enum.Enum):
    """Which end of the connection this is; it decides the masking rules."""

    CLIENT = "client"
    SERVER = "server"


class State(enum.IntEnum):
    """The connection state, with the values of the browser's ``WebSocket.readyState``."""

    CONNECTING = 0
    OPEN = 1
    CLOSING = 2
    CLOSED = 3


@dataclass(slots=True)
class Data:
    """One frame of a fragmented message, decompressed and (for text) decoded.

    ``data`` is a ``str`` for text messages and ``bytes`` for binary ones. ``fin`` is true on the
    last fragment. A message sent in one frame is not wrapped: the event is its value.
    """

    data: str | bytes
    fin: bool


@dataclass(slots=True)
class Ping:
    """A ping frame was received (a pong is queued automatically)."""

    data: bytes


@dataclass(slots=True)
class Pong:
    """A pong frame was received."""

    data: bytes


#: What :meth:`Connection.events_received` returns. A message that arrived whole, in one frame,
#: is reported as its value (``str`` or ``bytes``); the frames of a fragmented message as
#: :class:`Data` fragments.
Event = str | bytes | Data | Ping | Pong | Close

_utf8_decoder = codecs.getincrementaldecoder("utf-8")


def _deflate_bound(size: int) -> int:
    """The largest deflate output for ``size`` input bytes, whatever the zlib settings.

    zlib's conservative ``deflateBound`` (for non-default window and memory levels, where
    small stored blocks add more overhead), plus room for the sync flush.
    """
    return size + ((size + 7) >> 3) + ((size + 63) >> 6) + 5 + 64


def _flat(data: Buffer) -> Buffer:
    """``data`` as a buffer of single bytes, so that ``len()`` counts bytes.

    A memoryview of another format (``array('i')``, 2-D) is cast to bytes; a non-contiguous
    one is copied. Other buffers are returned as they are.
    """
    if type(data) is memoryview and (data.itemsize != 1 or data.ndim != 1 or not data.c_contiguous):
        return data.cast("B") if data.c_contiguous else data.tobytes()
    return data


def _header_size(b1: int) -> int:
    """The size of a frame header from its second byte (length and mask bit)."""
    length = b1 & 0x7F
    return 2 + (4 if b1 & 0x80 else 0) + (2 if length == 126 else 8 if length == 127 else 0)


# Frames from this size are received in place: the rest of the payload is read straight into
# its own buffer (see receive_buffer) instead of being buffered and copied. Below it, copying
# costs less than the extra reads (a read per frame remainder) that receiving in place takes.
_BIG_FRAME = 1 << 19
# Past this size a frame is buffered as it comes (only without limits can a frame be larger).
_BIG_FRAME_MAX = 1 << 30

_MASK_POOL = 1024  # random bytes fetched per os.urandom call: 256 masking keys


class Connection:
    """RFC 6455 framing and closing handshake for one side of an open connection.

    Args:
        side: ``Side.CLIENT`` masks outgoing frames and requires unmasked incoming frames;
            ``Side.SERVER`` the reverse.
        max_message_size: largest message accepted, counted after decompression (``None``:
            no limit). A larger message fails the connection with 1009.
        max_frame_size: largest frame payload accepted on the wire (``None``: same as
            ``max_message_size``).
        deflate: the negotiated permessage-deflate extension, if any.
        defer_failure: when the peer errs, don't fail the connection at once: store the error
            in :attr:`pending_failure`, stop parsing, and keep the connection open for sending
            until the caller calls :meth:`resolve_pending`. This lets an application answer the
            messages that arrived before the error, as the peer expects.
    """

    __slots__ = (
        "_big",
        "_big_filled",
        "_big_frame",
        "_big_size",
        "_buf",
        "_capped",
        "_data_events",
        "_decoder",
        "_discard",
        "_drain_skip",
        "_err_rest",
        "_err_skip",
        "_events",
        "_expect_mask",
        "_fast_limit",
        "_frame_limit_implicit",
        "_in_compressed",
        "_in_opcode",
        "_in_size",
        "_inflated",
        "_mask_pos",
        "_masks",
        "_max_frame_size",
        "_max_message_size",
        "_out",
        "_out_compressed",
        "_out_opcode",
        "_partial_done",
        "_partial_text",
        "_pending_pong",
        "_plain_sender",
        "_pongs_held",
        "close_rcvd",
        "close_rcvd_then_sent",
        "close_sent",
        "close_transport",
        "defer_failure",
        "deflate",
        "eof_rcvd",
        "exc",
        "is_client",
        "max_events",
        "max_inflated",
        "pending_failure",
        "side",
        "state",
    )

    def __init__(
        self,
        side: Side,
        *,
        max_message_size: int | None = DEFAULT_MAX_MESSAGE_SIZE,
        max_frame_size: int | None = None,
        deflate: PerMessageDeflate | None = None,
        defer_failure: bool = False,
    ) -> None:
        self.side = side
        self.defer_failure = defer_failure
        #: The peer's error waiting for :meth:`fail_pending` (with ``defer_failure``).
        self.pending_failure: WebSocketError | None = None
        self.is_client = side is Side.CLIENT
        self._max_frame_size: int | None = None
        self._frame_limit_implicit = max_frame_size is None
        self.max_message_size = max_message_size
        self.max_frame_size = max_message_size if max_frame_size is None else max_frame_size
        self.deflate = deflate
        self.state = State.OPEN
        #: The close frame received, the close frame sent, and which came first.
        self.close_rcvd: Close | None = None
        self.close_sent: Close | None = None
        self.close_rcvd_then_sent: bool | None = None
        #: The peer's error that failed the connection, if any.
        self.exc: WebSocketError | None = None
        #: Whether the caller must now close the transport (after writing pending data).
        self.close_transport = False
        self.eof_rcvd = False

        self._expect_mask = not self.is_client
        # Without compression, whole messages are sent on a fast path (send_text).
        self._plain_sender = deflate is None
        self._buf = bytearray()
        self._events: list[Event] = []
        #: Parsing stops once this many messages and fragments wait in
        #: :meth:`events_received` (``None``: no limit); the frames after them stay buffered for
        #: :meth:`parse_buffered`. This bounds what a flood of tiny frames in one read costs.
        self.max_events: int | None = None
        #: Parsing also stops once the messages and fragments waiting in
        #: :meth:`events_received` hold this many bytes decompressed (``None``: no limit).
        #: Without it, one read of compressed messages (a few bytes each on the wire, up to
        #: ``max_message_size`` each once inflated) could make ``max_events`` of them at once.
        self.max_inflated: int | None = None
        self._capped = False
        self._data_events = 0  # messages and fragments among the events waiting
        self._inflated = 0  # what the compressed ones among them hold, decompressed
        # A large frame received in place: its payload buffer, its size, how much arrived,
        # and its first byte, masking key and whether it is a whole simple message.
        self._big: Payload | None = None
        self._big_size = 0
        self._big_filled = 0
        self._big_frame: tuple[int, bytes | None, bool] = (0, None, False)
        self._out: list[Buffer] = []
        self._discard = False
        # After a failure: payload bytes still to skip while draining (-1: not draining).
        self._drain_skip = -1
        # Where the watch for the peer's close frame resumes after a frame that failed: the
        # bytes of that frame still to come, and what followed it in the same read.
        self._err_skip = 0
        self._err_rest = b""
        # Incoming message in progress: its opcode (None between messages), whether it is
        # compressed, its size so far, and the UTF-8 decoder of a text message.
        self._in_opcode: int | None = None
        self._in_compressed = False
        self._in_size = 0
        self._decoder = _utf8_decoder()
        # Fail-fast validation of an incomplete text frame: payload bytes already decoded and
        # the text they gave, or None when no frame is partly validated.
        self._partial_done: int | None = None
        self._partial_text: list[str] = []
        # Outgoing message in progress (None between messages) and whether it is compressed.
        self._out_opcode: int | None = None
        self._out_compressed = False
        self._masks = b""
        self._mask_pos = 0
        self._pongs_held = False
        self._pending_pong: bytes | None = None

    @property
    def max_message_size(self) -> int | None:
        """The largest message accepted (after decompression), or ``None``."""
        return self._max_message_size

    @max_message_size.setter
    def max_message_size(self, value: int | None) -> None:
        self._max_message_size = value
        self._update_fast_limit()

    @property
    def max_frame_size(self) -> int | None:
        """The largest frame payload accepted on the wire, or ``None``."""
        return self._max_frame_size

    @max_frame_size.setter
    def max_frame_size(self, value: int | None) -> None:
        self._max_frame_size = value
        self._update_fast_limit()

    def _update_fast_limit(self) -> None:
        # Frames up to this size skip the full header check (see _parse).
        limits = [
            n
            for n in (getattr(self, "_max_frame_size", None), self._max_message_size)
            if n is not None
        ]
        self._fast_limit = min(limits) if limits else 1 << 62

    # -- receiving -------------------------------------------------------------------------

    def receive_data(self, data: Buffer) -> None:
        """Feed bytes received from the network.

        Parses every complete frame (up to :attr:`max_events`); events become available from
        :meth:`events_received` and automatic replies (pong, close) from :meth:`data_to_send`.
        Never raises on bad input.
        """
        if self._discard or not data:
            if self._drain_skip >= 0 and data:
                self._drain(data)
            return
        if self._big is not None:
            rest = self._fill_big(data)
            if rest is None:
                return
            data = rest
        if self._capped:
            self._buf += data
            self.parse_buffered()
            return
        if self._buf:
            rest = self._complete_buffered(data)
            if rest is None:
                return
            data = rest
        self._parse_rest(data)

    def defer_data(self, data: Buffer) -> None:
        """Keep ``data`` unparsed, as :meth:`receive_data` keeps what follows a parse that
        stopped at :attr:`max_events`.

        For a caller that parsed and handled the first :attr:`max_events` messages of a read
        itself (the asyncio layer's fast path does): the rest waits for
        :meth:`parse_buffered`, and :attr:`parse_pending` becomes true. Anywhere but between
        frames with nothing buffered, this is :meth:`receive_data`.
        """
        if self._discard or self._big is not None or self._buf or self._capped or not data:
            self.receive_data(data)
            return
        self._buf = bytearray(data)
        self._capped = True

    @property
    def parse_pending(self) -> bool:
        """Whether a parse stopped at :attr:`max_events` with frames still buffered.

        The caller should stop reading until it has handled the events and called
        :meth:`parse_buffered`: what it feeds meanwhile is only buffered.
        """
        return self._capped

    @property
    def large_header_size(self) -> int:
        """The size of the header of a frame received in place (a 64-bit length, and the
        masking key when the peer is a client).

        After a read that ended such a frame, a caller may read only this much next: if
        another large frame follows, its whole payload then goes to :meth:`receive_buffer`.
        """
        return 14 if self._expect_mask else 10

    def receive_buffer(self) -> memoryview | None:
        """Where the rest of a large incomplete frame can be received, or ``None``.

        A caller that reads from the network may read into this writable view, then call
        :meth:`receive_into` with the number of bytes read, instead of :meth:`receive_data`:
        the payload then lands in its final place without being copied. The view is never
        larger than what the frame still lacks; it is valid until the next call.
        """
        big = self._big
        if big is None or self._discard:
            return None
        return big.view()[self._big_filled :]

    def receive_into(self, nbytes: int) -> bool:
        """Account for ``nbytes`` read into the view :meth:`receive_buffer` returned.

        Returns:
            ``False`` when the bytes only brought a binary frame closer to its end: there is
            nothing new to look for (no event, no output, no error). ``True`` otherwise.
        """
        if self._big is None or self._discard or nbytes <= 0:
            return True
        filled = self._big_filled + nbytes
        if filled < self._big_size and self._big_frame[0] & 0x0F == Opcode.BINARY:
            self._big_filled = filled  # the middle of a binary frame: only counted
            return False
        self._advance_big(nbytes)
        return True

    def _begin_big(
        self, part: Buffer, b0: int, mask: bytes | None, simple: bool, size: int
    ) -> bool:
        """Receive the frame whose payload starts with ``part`` in place; False if it can't."""
        try:
            big = PayloadBuffer(size)
        except (MemoryError, OverflowError, OSError):
            return False
        if part:
            with big.view() as view:
                view[: len(part)] = part
        self._big, self._big_size, self._big_filled = big, size, len(part)
        self._big_frame = (b0, mask, simple)
        return True

    def _fill_big(self, data: Buffer) -> Buffer | None:
        """Copy into the large frame in progress what it lacks from ``data``; return the rest."""
        big = self._big
        assert big is not None
        n = min(len(data), self._big_size - self._big_filled)
        with big.view() as view:
            view[self._big_filled : self._big_filled + n] = data[:n]
        self._advance_big(n)
        if n == len(data) or self._big is not None:
            return None
        if self._discard:
            if self._drain_skip >= 0:
                self._drain(memoryview(data)[n:])  # the frame failed: watch what follows
            return None
        return memoryview(data)[n:]

    def _advance_big(self, nbytes: int) -> None:
        """``nbytes`` more of the large frame arrived: validate text, finish when whole."""
        big = self._big
        assert big is not None
        b0, mask, simple = self._big_frame
        start = self._big_filled
        self._big_filled = start + nbytes
        try:
            if self._validates_partially(b0):
                with big.view() as view:
                    self._validate_partial(view[start : self._big_filled], b0, mask)
            if self._big_filled < self._big_size:
                return
            self._big = None
            # Text was decoded as it came: what remains to hand over is that text.
            payload = b"" if self._partial_done is not None else big.finish(mask)
            if simple and self._partial_done is None:
                self._events.append(payload)  # a whole binary message, as in _parse
                self._data_events += 1
            else:
                self._handle_frame(b0, payload)
        except WebSocketError as exc:
            self._err_skip = self._big_size - self._big_filled
            self._big = None
            self._parse_failed(exc)

    def parse_buffered(self) -> None:
        """Parse the frames left buffered when a parse stopped at :attr:`max_events`.

        Call it once the events received so far are handled; it stops at the limit again.
        """
        if not self._capped or self._discard:
            return
        self._capped = False
        buf = self._buf
        pos = self._parse_buffer(buf)
        if pos is None:
            return
        if self._discard:
            self._buf = bytearray()
        else:
            del buf[:pos]  # amortized: a bytearray drops its start without copying the rest

    def _parse_buffer(self, buf: bytearray) -> int | None:
        """Parse ``buf`` through a view (payloads are copied once, not sliced then copied);
        return how much was consumed, or ``None`` if the peer erred (the failure is handled).
        The view is released before returning, so ``buf`` can be resized again."""
        with memoryview(buf) as view:
            try:
                return self._parse(view)
            except WebSocketError as exc:
                error = exc
        self._parse_failed(error)
        return None

    def _parse_rest(self, data: Buffer) -> None:
        """Parse ``data`` from its start; keep what can't be parsed yet."""
        try:
            pos = self._parse(data)
        except WebSocketError as exc:
            self._parse_failed(exc)
            return
        if not self._discard and pos < len(data):
            # Only the start of an incomplete frame is kept (or, past max_events, the frames
            # not parsed yet); whole frames were parsed in place.
            self._buf = bytearray(data[pos:])

    def _complete_buffered(self, data: Buffer) -> memoryview | None:
        """Extend the buffered start of a frame with what it lacks from ``data``; parse it.

        Only the bytes of that one frame are copied into the buffer: what follows it is parsed
        straight from ``data`` by the caller. Returns the rest of ``data``, or ``None`` when
        nothing is left to parse (all of it went into the buffer, or parsing stopped).
        """
        buf = self._buf
        view = data if type(data) is memoryview else memoryview(data)
        # Complete the header first (2 bytes, then its full size), then the payload.
        for need in (2, -1):
            if need < 0:
                need = _header_size(buf[1])
            if len(buf) < need:
                take = need - len(buf)
                buf += view[:take]
                view = view[take:]
                if len(buf) < need:
                    return None
        length = buf[1] & 0x7F
        hlen = _header_size(buf[1])
        if length == 126:
            length = int.from_bytes(buf[2:4], "big")
        elif length == 127:
            length = int.from_bytes(buf[2:10], "big")
        take = min(len(view), hlen + length - len(buf))
        buf += view[:take]
        view = view[take:]
        pos = self._parse_buffer(buf)
        if pos is None:
            if view and self._drain_skip >= 0:
                self._drain(view)  # the frame failed: watch what follows it
            return None
        if self._capped:
            buf += view  # stopped at max_events: keep the rest for parse_buffered()
            return None
        if pos == 0 and not self._discard:
            return None  # still incomplete: everything was buffered
        self._buf = bytearray()
        return None if self._discard or not view else view

    def _parse_failed(self, exc: WebSocketError) -> None:
        """The peer sent something invalid: fail now, or later with ``defer_failure``.

        Either way, the watch for the peer's close frame (see :meth:`_drain`) starts at once,
        after the frame that failed: the rest of its payload is skipped, not parsed as frames.
        """
        self._big = None
        self._buf = bytearray()
        skip, rest = self._err_skip, self._err_rest
        self._err_skip, self._err_rest = 0, b""
        self._discard = True
        if self.close_rcvd is None and not self.eof_rcvd:
            self._drain_skip = skip
            if rest:
                self._drain(rest)
        if self.defer_failure:
            self.pending_failure = exc
        else:
            self._fail_with(exc)

    def receive_eof(self) -> None:
        """Tell that the peer closed the TCP connection (or it was lost).

        Frames still buffered past :attr:`max_events` are parsed first, whatever their number,
        but only up to :attr:`max_inflated` decompressed bytes: a peer that closes after a
        flood of compressed messages can't make them all inflate at once. What remains past
        that is dropped (the connection is gone; the close is then abnormal).
        """
        if self._capped and not self._discard:
            limit, self.max_events = self.max_events, None
            self.parse_buffered()
            self.max_events = limit
        if self.pending_failure is not None:
            self.exc, self.pending_failure = self.pending_failure, None
        self.eof_rcvd = True
        self._discard = True
        self._drain_skip = -1
        self._buf = bytearray()
        self._big = None
        self.state = State.CLOSED
        self.close_transport = True

    def events_received(self) -> list[Event]:
        """Return the events parsed since the last call, in order."""
        self._data_events = 0
        self._inflated = 0
        events, self._events = self._events, []
        return events

    def _parse(self, buf: Buffer) -> int:
        """Parse complete frames from ``buf``; return how many bytes were consumed."""
        pos = 0
        end = len(buf)
        limit = self.max_events or 1 << 62
        inflated = self.max_inflated or 1 << 62
        frame_end = -1  # where the frame being parsed ends (once its header is read)
        try:
            while end - pos >= 2 and not self._discard:
                if self._in_opcode is None and self._data_events < limit:
                    # Between messages: a run of whole simple messages (the common case) is
                    # parsed in one call, compiled when the extension is built.
                    pos, n = parse_messages(
                        buf,
                        pos,
                        self._expect_mask,
                        self._fast_limit,
                        limit - self._data_events,
                        self._events,
                    )
                    if n:
                        self._data_events += n
                        if end - pos < 2:
                            break
                if self._data_events >= limit or self._inflated >= inflated:
                    self._capped = True
                    break
                b0 = buf[pos]
                b1 = buf[pos + 1]
                length = b1 & 0x7F
                hlen = 2
                if length == 126:
                    if end - pos < 4:
                        break
                    length = (buf[pos + 2] << 8) | buf[pos + 3]
                    hlen = 4
                elif length == 127:
                    if end - pos < 10:
                        break
                    length = int.from_bytes(buf[pos + 2 : pos + 10], "big")
                    hlen = 10
                masked = b1 & 0x80
                if masked:
                    hlen += 4
                frame_end = pos + hlen + length
                # Fast path: a whole uncompressed text or binary message in one frame, from the
                # right side, within the limits, between messages. Anything else is checked fully.
                if (
                    (b0 == 0x82 or b0 == 0x81)
                    and (masked != 0) is self._expect_mask
                    and length <= self._fast_limit
                    and self._in_opcode is None
                ):
                    simple = True
                else:
                    self._check_header(b0, masked, length)
                    simple = False
                start = pos + hlen
                if start > end:
                    break
                stop = start + length
                mask = bytes(buf[start - 4 : start]) if masked else None
                if stop > end:
                    if end > start and self._validates_partially(b0):
                        self._validate_partial(
                            buf[start + (self._partial_done or 0) : end], b0, mask
                        )
                    if (
                        _BIG_FRAME <= length <= _BIG_FRAME_MAX
                        and not self._discard
                        and self._begin_big(buf[start:end], b0, mask, simple, length)
                    ):
                        pos = end
                    break
                payload = buf[start:stop]
                if mask is not None:
                    payload = apply_mask(payload, mask)
                elif type(payload) is not bytes:
                    payload = bytes(payload)
                pos = stop
                if simple and self._partial_done is None:
                    # A whole message in one frame is reported as its value, without a wrapper.
                    if b0 == 0x81:
                        try:
                            self._events.append(payload.decode())
                        except UnicodeDecodeError as exc:
                            raise InvalidPayload("invalid UTF-8 in text message") from exc
                    else:
                        self._events.append(payload)
                    self._data_events += 1
                else:
                    self._handle_frame(b0, payload)
        except WebSocketError:
            if frame_end >= 0:
                # The watch for the peer's close frame resumes after the frame that failed.
                self._err_skip = max(frame_end - end, 0)
                self._err_rest = bytes(buf[frame_end:end]) if frame_end < end else b""
            raise
        return pos

    def _handle_frame(self, b0: int, payload: bytes) -> None:
        """A complete frame other than a whole simple message (see _parse)."""
        if b0 & 0x08:
            self._handle_control(b0 & 0x0F, payload)
        else:
            self._handle_data(b0, payload)

    def _check_header(self, b0: int, masked: int, length: int) -> None:
        """Reject a frame from its header alone, before its payload arrives (fail fast)."""
        opcode = b0 & 0x0F
        if b0 & 0x30:
            raise ProtocolError("reserved bits must be 0")
        if bool(masked) == self.is_client:
            raise ProtocolError("incorrect masking")
        if opcode & 0x08:
            if opcode > Opcode.PONG:
                raise ProtocolError(f"invalid opcode {opcode}")
            if not b0 & 0x80:
                raise ProtocolError("fragmented control frame")
            if length > 125:
                raise ProtocolError("control frame too long")
            if b0 & 0x40:
                raise ProtocolError("reserved bit set on control frame")
            return
        if opcode > Opcode.BINARY:
            raise ProtocolError(f"invalid opcode {opcode}")
        if opcode == Opcode.CONT:
            if self._in_opcode is None:
                raise ProtocolError("unexpected continuation frame")
            if b0 & 0x40:
                raise ProtocolError("reserved bit set on continuation frame")
        else:
            # A text frame whose start was already validated has begun its message.
            if self._in_opcode is not None and self._partial_done is None:
                raise ProtocolError("expected a continuation frame")
            if b0 & 0x40 and self.deflate is None:
                raise ProtocolError("reserved bit set without an extension")
        if length >> 63:
            raise ProtocolError("frame length exceeds 2**63 - 1")
        compressed = b0 & 0x40 if opcode else self._in_compressed
        limit = self.max_frame_size
        # Without an explicit frame limit, a compressed frame may exceed the message limit by
        # deflate's worst-case expansion (incompressible data): the message limit then checks
        # its inflated size.
        expanded = compressed and self._frame_limit_implicit
        if (
            limit is not None
            and length > limit
            and not (expanded and length <= _deflate_bound(limit))
        ):
            raise PayloadTooBig(f"frame of {length} bytes exceeds limit of {limit} bytes")
        if not compressed and self.max_message_size is not None:
            size = length + (self._in_size if opcode == Opcode.CONT else 0)
            if size > self.max_message_size:
                raise PayloadTooBig(
                    f"message of at least {size} bytes exceeds limit of "
                    f"{self.max_message_size} bytes"
                )

    def _validates_partially(self, b0: int) -> bool:
        """Whether an incomplete frame is uncompressed text that can be checked early."""
        opcode = b0 & 0x0F
        if opcode == Opcode.TEXT:
            return not b0 & 0x40
        return opcode == Opcode.CONT and self._in_opcode == Opcode.TEXT and not self._in_compressed

    def _validate_partial(self, chunk: Buffer, b0: int, mask: bytes | None) -> None:
        """Decode the part of a text frame received so far, to fail at the first bad byte."""
        if not chunk:
            return
        chunk = bytes(chunk)
        done = self._partial_done
        if done is None:
            done = 0
            if b0 & 0x0F == Opcode.TEXT:
                self._begin_message(Opcode.TEXT, compressed=False)
        if mask is not None:
            shift = done & 3
            chunk = apply_mask(chunk, mask[shift:] + mask[:shift])
        self._partial_text.append(self._decode(chunk, final=False))
        self._partial_done = done + len(chunk)

    def _begin_message(self, opcode: int, *, compressed: bool) -> None:
        self._in_opcode = opcode
        self._in_compressed = compressed
        self._in_size = 0
        if opcode == Opcode.TEXT:
            self._decoder.reset()

    def _decode(self, data: bytes, *, final: bool) -> str:
        try:
            text: str = self._decoder.decode(data, final)
        except UnicodeDecodeError as exc:
            raise InvalidPayload("invalid UTF-8 in text message") from exc
        if not final:
            # The decoder waits for a third byte to reject ED A0-BF (a UTF-16 surrogate),
            # the one 2-byte prefix of no valid sequence; fail on it at once instead.
            pending = self._decoder.getstate()[0]
            if len(pending) > 1 and pending[0] == 0xED and pending[1] >= 0xA0:
                raise InvalidPayload("invalid UTF-8 in text message")
        return text

    def _handle_data(self, b0: int, payload: bytes) -> None:
        opcode = b0 & 0x0F
        fin = bool(b0 & 0x80)
        first = opcode != Opcode.CONT
        done = self._partial_done
        if done is not None:
            self._partial_done = None
            payload = payload[done:]
        elif opcode:
            self._begin_message(opcode, compressed=bool(b0 & 0x40))
        if self._in_compressed:
            assert self.deflate is not None
            limit = self.max_message_size
            payload = self.deflate.decompress(
                payload, fin=fin, max_length=None if limit is None else limit - self._in_size
            )
            self._inflated += len(payload)
        self._in_size += len(payload)
        data: str | bytes = payload
        if self._in_opcode == Opcode.TEXT:
            data = self._decode(payload, final=fin)
            if done is not None:
                self._partial_text.append(data)
                data = "".join(self._partial_text)
                self._partial_text = []
        if fin:
            self._in_opcode = None
            if first:
                self._events.append(data)  # a whole message: its value, as in _parse
                self._data_events += 1
                return
        self._events.append(Data(data, fin))
        self._data_events += 1

    def _handle_control(self, opcode: int, payload: bytes) -> None:
        if opcode == Opcode.PING:
            self._events.append(Ping(payload))
            if self.close_sent is None:
                if self._pongs_held:
                    # Only the latest ping needs an answer (RFC 6455 5.5.3): a peer that
                    # pings without reading can't make us buffer pongs.
                    self._pending_pong = payload
                else:
                    self._write(Opcode.PONG, payload)
        elif opcode == Opcode.PONG:
            self._events.append(Pong(payload))
        else:
            self._receive_close(Close.parse(payload))

    def _receive_close(self, close: Close) -> None:
        """A close frame arrived: echo its code if we haven't sent one (RFC 6455 5.5.1)."""
        self.close_rcvd = close
        self._events.append(close)
        self._discard = True
        if self.close_sent is None:
            # Answered at once, as the peer may be waiting for it (its close() returns once the
            # handshake completes); messages that came before stay readable.
            self.close_rcvd_then_sent = True
            self._send_close(Close(close.code))
        else:
            self.close_rcvd_then_sent = False
        self._closing_handshake_done()

    def _closing_handshake_done(self) -> None:
        self.state = State.CLOSING
        # The server closes the TCP connection first (RFC 6455 7.1.1); the client waits for it.
        if not self.is_client:
            self.close_transport = True

    # -- failing ---------------------------------------------------------------------------

    @property
    def has_pending(self) -> bool:
        """Whether a deferred failure waits for :meth:`resolve_pending`."""
        return self.pending_failure is not None

    def resolve_pending(self) -> None:
        """Fail the connection for the error that ``defer_failure`` postponed, if any."""
        exc = self.pending_failure
        if exc is not None:
            self.pending_failure = None
            self._fail_with(exc)

    def _fail_with(self, exc: WebSocketError) -> None:
        self.exc = exc
        self.fail(close_code_for(exc))

    def fail(self, code: int = CloseCode.PROTOCOL_ERROR, reason: str = "") -> None:
        """Fail the connection (RFC 6455 7.1.7): send a close frame if possible, then stop.

        Further received data is discarded and :attr:`close_transport` becomes true: the
        caller writes what :meth:`data_to_send` returns, then closes the transport.
        """
        if self.close_sent is None and self.state is State.OPEN:
            self._send_close(Close(code, reason))
        self._discard = True
        self.state = max(self.state, State.CLOSING)
        self.close_transport = True
        if self._drain_skip >= 0:
            return  # the peer's frame failed: the watch for its close frame is on already
        # The rest of a large frame in progress is skipped, not received.
        skip = 0 if self._big is None else self._big_size - self._big_filled
        self._big = None
        if self.close_rcvd is None and not self.eof_rcvd:
            # Keep watching for the peer's close frame (see _drain). What is buffered starts
            # at a frame boundary (the start of an incomplete frame, or frames left unparsed
            # at max_events; a parse error empties it first): the watch goes on from there.
            if skip:
                self._buf = bytearray()
            self._drain_skip = skip
            if self._buf:
                self._drain(b"")  # the close frame may be buffered already
        else:
            self._buf = bytearray()

    def _drain(self, data: Buffer) -> None:
        """After failing, skip the peer's frames without keeping them, until its close frame.

        The caller may then close TCP knowing the peer read our close frame (closing while the
        peer still sends makes the kernel answer with a reset, which can destroy our close
        frame before the peer reads it). Payloads are skipped, not buffered: memory stays
        bounded whatever the peer sends. A stream too broken to parse just waits for EOF.
        """
        buf = self._buf
        if data:
            buf += data
        pos = 0
        end = len(buf)
        while True:
            if self._drain_skip:
                step = min(self._drain_skip, end - pos)
                pos += step
                self._drain_skip -= step
                if self._drain_skip:
                    break
            if end - pos < 2:
                break
            b1 = buf[pos + 1]
            length = b1 & 0x7F
            hlen = _header_size(b1)
            if end - pos < hlen:
                break
            if length == 126:
                length = int.from_bytes(buf[pos + 2 : pos + 4], "big")
            elif length == 127:
                length = int.from_bytes(buf[pos + 2 : pos + 10], "big")
            if buf[pos] & 0x0F == Opcode.CLOSE and length <= 125:
                if end - pos < hlen + length:
                    break
                payload = bytes(buf[pos + hlen : pos + hlen + length])
                if b1 & 0x80:
                    payload = apply_mask(payload, bytes(buf[pos + hlen - 4 : pos + hlen]))
                try:
                    self.close_rcvd = Close.parse(payload)
                except WebSocketError:
                    self.close_rcvd = Close(CloseCode.NO_STATUS_RCVD)
                self._drain_skip = -1
                self._buf = bytearray()
                return
            pos += hlen
            self._drain_skip = length
        del buf[:pos]

    # -- sending ---------------------------------------------------------------------------

    @property
    def has_output(self) -> bool:
        """Whether :meth:`data_to_send` has something to return."""
        return bool(self._out)

    def data_to_send(self) -> list[Buffer]:
        """Return the chunks to write to the network, in order, since the last call."""
        out, self._out = self._out, []
        return out

    def send_text(self, data: Buffer, *, fin: bool = True, compress: bool | None = None) -> None:
        """Send a text frame (the first or only frame of a message).

        Args:
            data: UTF-8 encoded text; the caller guarantees it is valid UTF-8.
            fin: false to start a fragmented message, continued with :meth:`send_continuation`.
            compress: force compression on or off for this message; ``None`` lets the
                extension decide from the size (always on for a fragmented message).

        Raises:
            UsageError: the connection is not open, or a fragmented message is in progress.
        """
        self._send_message(Opcode.TEXT, data, fin, compress)

    def send_binary(self, data: Buffer, *, fin: bool = True, compress: bool | None = None) -> None:
        """Send a binary frame (the first or only frame of a message); see :meth:`send_text`."""
        self._send_message(Opcode.BINARY, data, fin, compress)

    def send_continuation(self, data: Buffer, *, fin: bool) -> None:
        """Send the next frame of the fragmented message in progress.

        Raises:
            UsageError: no fragmented message is in progress, or the connection is not open.
        """
        self._check_open()
        if self._out_opcode is None:
            raise UsageError("no fragmented message in progress")
        data = _flat(data)
        if self._out_compressed:
            assert self.deflate is not None
            data = self.deflate.compress(data, fin=fin)
        if fin:
            self._out_opcode = None
        self._write(Opcode.CONT, data, fin=fin)

    def _send_message(self, opcode: int, data: Buffer, fin: bool, compress: bool | None) -> None:
        if type(data) is memoryview:
            data = _flat(data)
        # Fast path: a whole message on an open connection without compression.
        if self._plain_sender and fin and self._out_opcode is None and self.state is State.OPEN:
            if self.is_client:
                self._write(opcode, data)  # masked
            elif len(data) < 126:
                self._out.append(bytes((0x80 | opcode, len(data))) + data)
            else:
                self._out.extend(serialize_frame(opcode, data))
            return
        self._send_first(opcode, data, fin, compress)

    def _send_first(self, opcode: int, data: Buffer, fin: bool, compress: bool | None) -> None:
        self._check_open()
        if self._out_opcode is not None:
            raise UsageError("a fragmented message is in progress")
        deflate = self.deflate
        rsv1 = False
        if (
            deflate is not None
            and compress is not False
            and (compress or not fin or deflate.should_compress(len(data)))
        ):
            data = deflate.compress(data, fin=fin)
            rsv1 = True
        if not fin:
            self._out_opcode = opcode
            self._out_compressed = rsv1
        self._write(opcode, data, fin=fin, rsv1=rsv1)

    @property
    def fragmenting(self) -> bool:
        """Whether a fragmented message is being sent (its next frames must come first)."""
        return self._out_opcode is not None

    def send_prepared(self, frame: Buffer) -> None:
        """Queue a complete, unmasked frame built once for many connections (broadcast).

        Only servers may send it (clients mask each frame). The frame must be a whole,
        uncompressed data message built with :func:`~wsend.protocol.frames.serialize_frame`:
        uncompressed messages are valid whatever extension was negotiated.

        Raises:
            UsageError: on a client, on a connection not open, or while a fragmented message
                is in progress.
        """
        self._check_open()
        if self.is_client:
            raise UsageError("clients can't send prepared frames: they must mask each frame")
        if self.fragmenting:
            raise UsageError("a fragmented message is in progress")
        self._out.append(frame)

    def hold_pongs(self, hold: bool) -> bool:
        """Hold automatic pongs (while the caller can't write), or send the one held.

        While held, each ping received replaces the pending answer: only the latest ping gets
        a pong, when the hold ends. Returns whether a pong was queued for
        :meth:`data_to_send`.
        """
        self._pongs_held = hold
        payload = self._pending_pong
        if hold or payload is None:
            return False
        self._pending_pong = None
        if self.close_sent is not None or self.state is not State.OPEN:
            return False
        self._write(Opcode.PONG, payload)
        return True

    def send_ping(self, data: Buffer = b"") -> None:
        """Send a ping; a peer answers with a pong carrying the same payload.

        Raises:
            ValueError: the payload exceeds 125 bytes.
            UsageError: the connection is not open.
        """
        data = _flat(data)
        self._check_control(data)
        self._write(Opcode.PING, data)

    def send_pong(self, data: Buffer = b"") -> None:
        """Send an unsolicited pong (a heartbeat that expects no reply)."""
        data = _flat(data)
        self._check_control(data)
        self._write(Opcode.PONG, data)

    def send_close(self, code: int = CloseCode.NORMAL_CLOSURE, reason: str = "") -> None:
        """Start the closing handshake (RFC 6455 7.1.2).

        Args:
            code: a close code that may be sent (1000-1014 but 1004-1006, or 3000-4999), or
                1005 to send a close frame without payload.
            reason: at most 123 bytes once encoded in UTF-8.

        Raises:
            ValueError: the code may not be sent or the reason is too long.
            UsageError: a close frame was already sent.
        """
        if code != CloseCode.NO_STATUS_RCVD and not is_valid_close_code(code):
            raise ValueError(f"close code {code} may not be sent")
        if code == CloseCode.NO_STATUS_RCVD and reason:
            raise ValueError("a close frame without code cannot carry a reason")
        if len(reason.encode()) > 123:
            raise ValueError("close reason exceeds 123 bytes")
        if self.close_sent is not None or self.state is not State.OPEN:
            raise UsageError("the closing handshake already started")
        self._send_close(Close(code, reason))
        self.close_rcvd_then_sent = False
        self.state = State.CLOSING

    def _send_close(self, close: Close) -> None:
        self.close_sent = close
        self._write(Opcode.CLOSE, close.serialize())

    def _check_open(self) -> None:
        if self.state is not State.OPEN:
            raise UsageError(f"cannot send on a connection in state {self.state.name}")

    def _check_control(self, data: Buffer) -> None:
        if len(data) > 125:
            raise ValueError("control frame payload exceeds 125 bytes")
        self._check_open()

    def _write(self, opcode: int, payload: Buffer, *, fin: bool = True, rsv1: bool = False) -> None:
        mask = None
        if self.is_client:
            pos = self._mask_pos
            if pos + 4 > len(self._masks):
                self._masks = os.urandom(_MASK_POOL)
                pos = 0
            mask = self._masks[pos : pos + 4]
            self._mask_pos = pos + 4
        self._out.extend(serialize_frame(opcode, payload, fin=fin, rsv1=rsv1, mask=mask))

    def __repr__(self) -> str:
        return f"<Connection {self.side.value} {self.state.name}>"
