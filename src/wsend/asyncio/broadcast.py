"""Sending one message to many connections, building its frame once."""

from __future__ import annotations

from collections.abc import Iterable

from ..protocol.connection import State
from ..protocol.frames import Opcode, serialize_frame
from .connection import Connection

__all__ = ["broadcast"]


def broadcast(
    connections: Iterable[Connection],
    message: str | bytes | bytearray | memoryview,
    *,
    raise_exceptions: bool = False,
    max_buffered: int | None = None,
) -> int:
    """Send ``message`` to every open connection in ``connections``, without waiting.

    The frame is built once and shared by every server connection (client connections, which
    mask each frame, get their own). The message goes uncompressed, which is valid whatever
    extension a connection negotiated. Connections that are not open, or that are streaming a
    fragmented message, are skipped.

    Unlike :meth:`Connection.send`, this doesn't wait for slow peers: a peer that doesn't read
    makes its write buffer grow. Pass ``max_buffered`` to skip connections that already have
    more than that many bytes waiting (they miss this message), or handle slow consumers
    yourself (see the backpressure how-to).

    Args:
        connections: the recipients.
        message: ``str`` for a text message, bytes-like for a binary one.
        raise_exceptions: raise an :class:`ExceptionGroup` of the errors met, after sending to
            everyone else; by default errors are ignored (the connection is closing anyway).
        max_buffered: skip connections whose ``buffered_amount`` exceeds this.

    Returns:
        How many connections the message was sent to.
    """
    if isinstance(message, str):
        opcode = Opcode.TEXT
        payload: bytes | bytearray | memoryview = message.encode()
    elif isinstance(message, bytes | bytearray | memoryview):
        opcode = Opcode.BINARY
        # bytes() flattens any memoryview layout, and keeps the data if the caller reuses it.
        payload = message if isinstance(message, bytes) else bytes(message)
    else:
        raise TypeError(f"cannot broadcast {type(message).__name__}: use str or bytes-like")
    frame = b"".join(serialize_frame(opcode, payload))
    errors: list[Exception] = []
    sent = 0
    open_ = State.OPEN
    for conn in connections:
        proto = conn.proto
        transport = conn.transport
        # A streamed send holds the connection's send lock, but only its frames matter: until
        # its first frame and after its last, a whole message may go first.
        if (
            proto is None
            or transport is None
            or proto.state is not open_
            or conn._connection_lost
            or proto._out_opcode is not None  # fragmenting (without the property's call)
        ):
            continue
        if max_buffered is not None and conn.buffered_amount > max_buffered:
            continue
        try:
            if proto.is_client:
                if opcode == Opcode.TEXT:
                    proto.send_text(payload, compress=False)
                else:
                    proto.send_binary(payload, compress=False)
                conn._flush(proto)
            elif conn._cork_scheduled:
                # Data waits corked for the end of this loop iteration: queue behind it.
                proto.send_prepared(frame)
                conn._flush(proto)
            elif not transport.is_closing():
                # The common case: nothing pending, write the shared frame at once. This is
                # what send_prepared() and _flush() come to, without their per-call work: a
                # broadcast's cost should be the system call per connection and little else.
                transport.write(frame)
            else:
                continue
        except Exception as exc:
            errors.append(exc)
        else:
            sent += 1
    if errors and raise_exceptions:
        raise ExceptionGroup("errors while broadcasting", errors)
    return sent


def write_prepared(conn: Connection, frame: bytes) -> bool:
    """Write ``frame``, a whole message already framed for a server connection, at once.

    For senders that frame a message once for many connections (the hub's fan-out): the
    frame must be unmasked and, unless its RSV1 bit says otherwise, uncompressed (RFC 6455
    section 5.2). It is written only if that is what :meth:`Connection.send` would come to
    now: the connection is open, no streamed message is under way, nothing waits corked, and
    the transport is under its high-water mark (so the caller's own backpressure applies to
    slow peers). The frame bypasses permessage-deflate: call it for connections without it,
    or for messages below its threshold.

    Returns:
        Whether the frame was written; ``False`` asks the caller to send it the usual way.
    """
    proto = conn.proto
    transport = conn.transport
    if (
        proto is None
        or transport is None
        or proto.state is not State.OPEN
        or conn._connection_lost
        or conn._paused_writing
        or conn._cork_scheduled
        or proto.fragmenting
        or transport.is_closing()
    ):
        return False
    transport.write(frame)
    return True
