"""Fuzz permessage-deflate: negotiation parameters and compressed frames (RFC 7692).

Oracle: every call returns normally or raises a documented exception: ``NegotiationError`` from
``ClientDeflate.accept``, ``None`` (a declined offer) from ``ServerDeflate.negotiate``,
``ProtocolError`` or ``PayloadTooBig`` from ``PerMessageDeflate.decompress``, whose output never
exceeds ``max_length``. Messages we compress always decompress to themselves.

Run with atheris::

    python fuzzing/fuzz_deflate.py -max_total_time=60

``TestOneInput`` needs no atheris, so the test suite also calls it with random inputs.
"""

from __future__ import annotations

import contextlib
import itertools
import sys

from wsend.exceptions import NegotiationError, PayloadTooBig, ProtocolError
from wsend.protocol.deflate import ClientDeflate, PerMessageDeflate, ServerDeflate

NAMES = [
    "server_no_context_takeover",
    "client_no_context_takeover",
    "server_max_window_bits",
    "client_max_window_bits",
    "unknown",
]
VALUES = [None, "", "7", "8", "9", "12", "15", "16", "010", "abc", " 9"]


class Reader:
    """Draws choices from the input bytes; returns zeros once they run out."""

    def __init__(self, data: bytes) -> None:
        self.data = data
        self.pos = 0

    def byte(self) -> int:
        if self.pos >= len(self.data):
            return 0
        self.pos += 1
        return self.data[self.pos - 1]

    def choice(self, options: list[str | None]) -> str | None:
        return options[self.byte() % len(options)]

    def bool(self) -> bool:
        return self.byte() & 1 == 1

    def bits(self) -> int:
        return 8 + self.byte() % 8

    def take(self, size: int) -> bytes:
        chunk = self.data[self.pos : self.pos + size]
        self.pos += len(chunk)
        return chunk

    def rest(self) -> bytes:
        return self.take(len(self.data))


def random_params(reader: Reader) -> list[tuple[str, str | None]]:
    return [(str(reader.choice(NAMES)), reader.choice(VALUES)) for _ in range(reader.byte() % 5)]


def fuzz_negotiation(reader: Reader) -> None:
    offer = random_params(reader)
    result = ServerDeflate(
        server_max_window_bits=reader.bits(), require_client_max_window_bits=reader.bool()
    ).negotiate(offer)
    if result is not None:
        response, server_ext = result
        client_ext = ClientDeflate(client_max_window_bits=True).accept(response)
        assert client_ext.local_max_window_bits == server_ext.remote_max_window_bits
    client = ClientDeflate(
        server_no_context_takeover=reader.bool(),
        server_max_window_bits=reader.bits() if reader.bool() else None,
        client_max_window_bits=reader.bits() if reader.bool() else reader.bool(),
    )
    with contextlib.suppress(NegotiationError):
        client.accept(random_params(reader))


def fuzz_decompress(reader: Reader) -> None:
    receiver = PerMessageDeflate(
        local_no_context_takeover=False,
        remote_no_context_takeover=reader.bool(),
        local_max_window_bits=15,
        remote_max_window_bits=reader.bits(),
    )
    limit = None if reader.bool() else reader.byte() * 64
    produced = 0
    try:
        while reader.pos < len(reader.data):
            fin = reader.bool()
            left = None if limit is None else limit - produced
            produced += len(
                receiver.decompress(reader.take(reader.byte()), fin=fin, max_length=left)
            )
            assert limit is None or produced <= limit
            if fin:
                produced = 0
    except (ProtocolError, PayloadTooBig):
        pass


def fuzz_round_trip(reader: Reader) -> None:
    nct, bits = reader.bool(), reader.bits()
    sender = PerMessageDeflate(
        local_no_context_takeover=nct,
        remote_no_context_takeover=False,
        local_max_window_bits=bits,
        remote_max_window_bits=15,
        compress_level=reader.byte() % 10,
        mem_level=1 + reader.byte() % 9,
    )
    receiver = PerMessageDeflate(
        local_no_context_takeover=False,
        remote_no_context_takeover=nct,
        local_max_window_bits=15,
        remote_max_window_bits=bits,
    )
    message = reader.rest()
    cuts = sorted({0, len(message), *(b % (len(message) + 1) for b in message[:3])})
    frames = [message[a:b] for a, b in itertools.pairwise(cuts)] or [b""]
    for _ in range(2):
        out = b"".join(
            receiver.decompress(
                sender.compress(frame, fin=i == len(frames) - 1),
                fin=i == len(frames) - 1,
                max_length=None,
            )
            for i, frame in enumerate(frames)
        )
        assert out == message


def TestOneInput(data: bytes) -> None:
    reader = Reader(data)
    [fuzz_negotiation, fuzz_decompress, fuzz_round_trip][reader.byte() % 3](reader)


def main() -> None:
    import atheris  # type: ignore[import-not-found]

    atheris.instrument_all()
    atheris.Setup(sys.argv, TestOneInput)
    atheris.Fuzz()


if __name__ == "__main__":
    main()
