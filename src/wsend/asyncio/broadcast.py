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
            or proto.fragmenting
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
