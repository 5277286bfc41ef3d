"""Fuzz the asyncio connection's fast path (:mod:`wsend.asyncio.fastpath`) over a real socket.

The first input byte picks the side (client or server), how messages are taken (``on_message``
or ``recv()``), whether at most two messages are parsed per read (``max_events``), and how
the rest is cut into writes; the rest is what the peer sends. A real connection on a socket
pair (a real transport, the compiled core or its pure-Python twin: ``WSEND_NO_SPEEDUPS=1``)
receives it.

Oracle: the sans-I/O core fed the same bytes. The connection delivers the same messages in
the same order, then closes with the same code: the code of the core's error if the bytes
hold one, else the peer's own close frame (sent after the input when it has none) echoed.

Run with atheris::

    python fuzzing/fuzz_connection.py -atheris_runs=100000

``TestOneInput`` needs no atheris, so the test suite also calls it with random inputs.
"""

from __future__ import annotations

import asyncio
import socket
import struct
import sys

from wsend.asyncio.connection import Connection, ConnectionOptions
from wsend.exceptions import ConnectionClosed
from wsend.protocol.connection import Connection as Protocol
from wsend.protocol.connection import Data, Side
from wsend.protocol.frames import Close, Opcode, close_code_for, serialize_frame

LIMIT = 4096
CLOSE = struct.pack("!H", 1000)

SEEDS = [
    b"\x00\x81\x85\x12\x34\x56\x78"
    + bytes(b ^ m for b, m in zip(b"hello", b"\x12\x34\x56\x78\x12", strict=True)),
    b"\x01\x81\x05hello\x89\x00\x82\x02hi",
    b"\x07\x82\x00\x82\x00\x82\x00\x82\x00\x81\x01\xff",
    b"\x13\x01\x03abc\x00\x03def\x80\x00\x81\x01x",
]

_loop: asyncio.AbstractEventLoop | None = None


class ClientConnection(Connection):
    """A client connection without the opening handshake (the harness starts it)."""

    __slots__ = ()
    is_client = True


def expected(stream: bytes, side: Side) -> tuple[list[str | bytes], int | None]:
    """The messages the sans-I/O core parses from ``stream``, and the close code it sends
    (None if the stream holds neither an error nor a close frame)."""
    proto = Protocol(side, max_message_size=LIMIT)
    proto.receive_data(stream)
    messages: list[str | bytes] = []
    parts: list[str | bytes] = []
    for event in proto.events_received():
        if isinstance(event, str | bytes):
            messages.append(event)
        elif isinstance(event, Data):
            parts.append(event.data)
            if event.fin:
                text = isinstance(event.data, str)
                joined = "".join(parts) if text else b"".join(parts)  # type: ignore[arg-type]
                messages.append(joined)
                parts = []
    if proto.exc is not None:
        return messages, close_code_for(proto.exc)
    return messages, None if proto.close_rcvd is None else proto.close_rcvd.code


async def run(data: bytes) -> None:
    selector, stream = data[0], data[1:]
    is_client = bool(selector & 1)
    callbacks = bool(selector & 2)
    step = selector >> 4
    side = Side.CLIENT if is_client else Side.SERVER
    mask = None if is_client else b"\x0f\x1e\x2d\x3c"  # what the peer does
    if expected(stream, side)[1] is None:
        # The peer closes after its frames (unless the last one is incomplete and swallows
        # the close frame: then the peer ends the TCP connection without one).
        stream += b"".join(serialize_frame(Opcode.CLOSE, CLOSE, mask=mask))
    messages, code = expected(stream, side)

    loop = asyncio.get_running_loop()
    ours, theirs = socket.socketpair()
    options = ConnectionOptions(max_message_size=LIMIT, ping_interval=None, close_timeout=2)
    conn = (ClientConnection if is_client else Connection)(options)
    await loop.create_connection(lambda: conn, sock=ours)
    proto = Protocol(side, max_message_size=LIMIT, defer_failure=True)
    conn.start(proto, b"")
    if selector & 4:
        proto.max_events = 2  # parse at most two messages per read
    got: list[str | bytes] = []
    reader_task = None
    if callbacks:
        conn.on_message = got.append
    else:

        async def read() -> None:
            try:
                async for message in conn:
                    got.append(message)
            except ConnectionClosed:
                pass

        reader_task = asyncio.create_task(read())
    reader, writer = await asyncio.open_connection(sock=theirs)
    try:
        cut = range(0, len(stream), step or len(stream) or 1)
        pieces = [stream[i : i + (step or len(stream))] for i in cut]
        for piece in pieces:
            writer.write(piece)
            await writer.drain()
        if code is None:
            writer.write_eof()
        close = await asyncio.wait_for(read_close(reader), 5)
        if close is not None:
            answer = serialize_frame(Opcode.CLOSE, Close(close.code).serialize(), mask=mask)
            writer.write(b"".join(answer))
        writer.close()
        await asyncio.wait_for(conn.wait_closed(), 5)
        if reader_task is not None:
            await asyncio.wait_for(reader_task, 5)
    finally:
        writer.transport.abort()
        if conn.transport is not None:
            conn.transport.abort()
    assert got == messages, f"delivered {got!r}, expected {messages!r}"
    sent = None if close is None else close.code
    assert sent == code, f"closed with {sent}, expected {code}"


async def read_close(reader: asyncio.StreamReader) -> Close | None:
    """Read the connection's frames until its close frame; None if it ends without one."""
    while True:
        try:
            head = await reader.readexactly(2)
        except (asyncio.IncompleteReadError, ConnectionError):
            return None
        length = head[1] & 0x7F
        if length == 126:
            length = struct.unpack("!H", await reader.readexactly(2))[0]
        elif length == 127:
            length = struct.unpack("!Q", await reader.readexactly(8))[0]
        key = await reader.readexactly(4) if head[1] & 0x80 else None
        payload = await reader.readexactly(length)
        if key is not None:
            payload = bytes(b ^ key[i % 4] for i, b in enumerate(payload))
        if head[0] & 0x0F == Opcode.CLOSE:
            return Close.parse(payload)


def TestOneInput(data: bytes) -> None:
    global _loop
    if not data:
        return
    if _loop is None:
        _loop = asyncio.new_event_loop()
    _loop.run_until_complete(run(data))


def main() -> None:  # pragma: no cover - needs atheris
    import atheris

    atheris.instrument_all()
    atheris.Setup(sys.argv, TestOneInput)
    atheris.Fuzz()


if __name__ == "__main__":  # pragma: no cover
    main()
