"""Fuzz the frame parser and state machine of :mod:`wsend.protocol.connection`.

The first input byte picks the side (client or server), whether permessage-deflate is on,
whether parsing stops every two messages or 64 decompressed bytes (``max_events``,
``max_inflated``), whether frames from 16 bytes are received in place, and how the rest is split
into chunks; the rest is fed as received bytes.

Oracle: ``receive_data`` never raises. Every error is recorded in ``exc`` as a
``ProtocolError`` (or subclass), with a close frame queued carrying the code that
``close_code_for`` gives; data events are ``str`` for text and ``bytes`` for binary; the
message size limit holds for every message; after a failure no more events appear. Where the
C extension is built, its ``parse_messages`` and the pure-Python twin agree on every input.

Run with atheris::

    python fuzzing/fuzz_frames.py -atheris_runs=1000000

``TestOneInput`` needs no atheris, so the test suite also calls it with random inputs.
"""

from __future__ import annotations

import sys

from wsend.exceptions import ProtocolError
from wsend.protocol import connection as connection_module
from wsend.protocol.connection import Connection, Data, Side
from wsend.protocol.deflate import ClientDeflate, ServerDeflate
from wsend.protocol.frames import Close, Opcode, close_code_for
from wsend.protocol.mask import SPEEDUPS, parse_messages, parse_messages_py

LIMIT = 4096
BIG_FRAME = connection_module._BIG_FRAME

SEEDS = [
    b"\x01\x81\x85\x12\x34\x56\x78"
    + bytes(b ^ m for b, m in zip(b"hello", b"\x12\x34\x56\x78\x12", strict=True)),
    b"\x00\x81\x05hello\x89\x00\x80\x02hi",
    b"\x03\xc1\x07\xf2\x48\xcd\xc9\xc9\x07\x00",
    b"\x02\x01\x03abc\x00\x03def\x80\x00",
]


def make(selector: int) -> Connection:
    side = Side.CLIENT if selector & 1 else Side.SERVER
    deflate = None
    if selector & 2:
        client, server = ClientDeflate(), ServerDeflate()
        negotiated = server.negotiate(client.offer())
        assert negotiated is not None
        params, server_ext = negotiated
        deflate = client.accept(params) if side is Side.CLIENT else server_ext
    return Connection(side, max_message_size=LIMIT, deflate=deflate)


def TestOneInput(data: bytes) -> None:
    try:
        check(data)
    finally:
        connection_module._BIG_FRAME = BIG_FRAME


def check(data: bytes) -> None:
    if not data:
        return
    selector, payload = data[0], data[1:]
    if SPEEDUPS:
        results = []
        for parse in (parse_messages, parse_messages_py):
            events: list[object] = []
            results.append((parse(payload, 0, not selector & 1, LIMIT, 1 << 20, events), events))
        assert results[0] == results[1], "parse_messages twins disagree"
    conn = make(selector)
    step = selector >> 4
    pieces = (
        [payload] if step == 0 else [payload[i : i + step] for i in range(0, len(payload), step)]
    )
    size = 0
    failed = False
    if selector & 4:
        conn.max_events = 2  # parse at most two messages or fragments at a time
        conn.max_inflated = 64  # and stop after 64 bytes decompressed

    def drained() -> list[object]:
        events: list[object] = list(conn.events_received())
        while conn.parse_pending and not conn.exc:
            conn.parse_buffered()
            events += conn.events_received()
        return events

    # Bit 3: frames from 16 bytes are received in place (receive_buffer / receive_into), as
    # the asyncio layer does for large frames.
    connection_module._BIG_FRAME = 16 if selector & 8 else BIG_FRAME

    def feed(piece: bytes) -> None:
        while piece:
            view = conn.receive_buffer()
            if view is None:
                conn.receive_data(piece)
                return
            n = min(len(view), len(piece))
            view[:n] = piece[:n]
            view.release()
            conn.receive_into(n)
            piece = piece[n:]

    for piece in pieces:
        feed(piece)
        for event in drained():
            assert not failed, "event after failure"
            if isinstance(event, str | bytes):  # a whole message
                assert size == 0, "a whole message inside a fragmented one"
                assert len(event.encode() if isinstance(event, str) else event) <= LIMIT
            elif isinstance(event, Data):
                assert isinstance(event.data, str | bytes)
                size += len(event.data.encode() if isinstance(event.data, str) else event.data)
                assert size <= LIMIT
                if event.fin:
                    size = 0
        if conn.exc is not None:
            failed = True
    if conn.exc is not None:
        assert isinstance(conn.exc, ProtocolError)
        out = b"".join(bytes(chunk) for chunk in conn.data_to_send())
        assert out, "no close frame after a failure"
        assert conn.close_transport
        code = close_code_for(conn.exc)
        # The close frame is the last frame written: a 2-byte header, a masking key from a
        # client, then the payload (the code, no reason). Find it by its opcode byte.
        size = 2 + (4 if conn.is_client else 0) + len(Close(code).serialize())
        assert out[-size] & 0x0F == Opcode.CLOSE


def main() -> None:  # pragma: no cover - needs atheris
    import atheris

    atheris.instrument_all()
    atheris.Setup(sys.argv, TestOneInput)
    atheris.Fuzz()


if __name__ == "__main__":  # pragma: no cover
    main()
