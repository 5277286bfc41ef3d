"""Fuzz the HTTP/1.1 parsers of the opening handshake.

The first input byte picks the parser (request or response) and how the rest is split into
chunks; the rest is fed to the parser chunk by chunk.

Oracle: each ``feed`` returns ``None`` or a message, or raises ``InvalidMessage`` (after which
the parser keeps raising it); ``feed_eof`` likewise. Once a message is returned, its body and
``leftover`` are consistent with the input, and parsing the serialized message again gives the
same message. Any other exception is a bug.

Run with atheris::

    python fuzzing/fuzz_http.py -atheris_runs=100000

``TestOneInput`` needs no atheris, so the test suite also calls it with random inputs.
"""

from __future__ import annotations

import sys

from wsend.exceptions import InvalidMessage
from wsend.protocol.http import (
    HTTPLimits,
    Request,
    RequestParser,
    Response,
    ResponseParser,
)

# Small limits so that random inputs reach them.
LIMITS = HTTPLimits(
    max_request_line=64,
    max_headers=8,
    max_header_size=64,
    max_total_header_size=256,
    max_body_size=128,
)

SEEDS = [
    b"\x00GET /chat?x=1 HTTP/1.1\r\nHost: example.com\r\nUpgrade: websocket\r\n"
    b"Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
    b"Sec-WebSocket-Version: 13\r\n\r\n\x81\x00",
    b"\x01HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
    b"Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n\r\n\x81\x00",
    b"\x12POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n",
    b"\x23HTTP/1.1 401 Unauthorized\r\nContent-Length: 5\r\n\r\nnope!",
]


def chunks(data: bytes, step: int) -> list[bytes]:
    """Split ``data`` into chunks of ``step`` bytes (one chunk when ``step`` is 0)."""
    if step == 0:
        return [data]
    return [data[i : i + step] for i in range(0, len(data), step)]


def check_message(message: Request | Response, leftover: bytes, fed: bytes) -> None:
    """Check a parsed message: ``leftover`` ends what was ``fed``; it survives a round trip."""
    assert fed.endswith(leftover)
    assert len(message.body) <= LIMITS.max_body_size
    for name in ("Content-Length", "Transfer-Encoding"):  # the body is decoded already
        if name in message.headers:
            del message.headers[name]
    if isinstance(message, Request):
        again = RequestParser().feed(message.serialize())
    else:
        if message.status < 200 or message.status in (204, 304):
            message.body = b""
        message.http_version = "1.1"
        again = ResponseParser().feed(message.serialize())
    assert again is not None
    assert again.headers.get_all("Host") == message.headers.get_all("Host")
    assert again.body == message.body


def feed_all(parser: RequestParser | ResponseParser, parts: list[bytes]) -> None:
    """Feed ``parts`` to ``parser``, checking the oracle after each call."""
    fed = b""
    for part in parts:
        fed += part
        try:
            message = parser.feed(part)
        except InvalidMessage:
            try:
                parser.feed(b"x")
            except InvalidMessage:
                return
            raise AssertionError("the parser didn't keep its error") from None
        if message is not None:
            check_message(message, parser.leftover, fed)
            return
    if isinstance(parser, ResponseParser):
        try:
            message = parser.feed_eof()
        except InvalidMessage:
            return
        if message is not None:
            check_message(message, b"", fed)


def TestOneInput(data: bytes) -> None:
    """Run one input (see the module docstring)."""
    if not data:
        return
    mode, data = data[0], data[1:]
    parser = RequestParser(LIMITS) if mode & 1 == 0 else ResponseParser(LIMITS)
    feed_all(parser, chunks(data, mode >> 4))


def main() -> None:
    import atheris  # type: ignore[import-not-found]

    atheris.instrument_all()
    atheris.Setup(sys.argv, TestOneInput)
    atheris.Fuzz()


if __name__ == "__main__":
    main()
