"""Test doubles for the asyncio tests: raw peers that speak hand-built bytes over real sockets.

A :class:`RawPeer` is the other end of a connection under test, driven frame by frame: it can
stay silent, ignore pings, never answer a close frame, flood, or send frames that break the
protocol. :func:`raw_client` opens one against a wsend server; :func:`raw_server` accepts the
connections of a wsend client.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hashlib
import os
import socket
import struct
import zlib
from collections.abc import AsyncIterator, Callable

import wsend
from wsend.protocol.frames import Close, Opcode

GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"


async def echo(ws: wsend.ServerConnection) -> None:
    """A handler sending every message back."""
    async for message in ws:
        await ws.send(message)


async def until(predicate: Callable[[], object], step: float = 0) -> None:
    """Wait until ``predicate()`` is true, checking every loop iteration or ``step`` seconds."""
    while not predicate():  # noqa: ASYNC110 - polls state that has no event to wait on
        await asyncio.sleep(step)


def ws_uri(server: wsend.Server, resource: str = "/", scheme: str = "ws") -> str:
    """The URI of ``server`` on loopback."""
    return f"{scheme}://127.0.0.1:{server.port}{resource}"


def accept_key(key: str) -> str:
    return base64.b64encode(hashlib.sha1(key.encode() + GUID).digest()).decode()


def frame(
    opcode: int,
    payload: bytes = b"",
    *,
    fin: bool = True,
    rsv1: bool = False,
    mask: bool = False,
) -> bytes:
    """Serialize one frame by hand (RFC 6455 section 5.2)."""
    b0 = (0x80 if fin else 0) | (0x40 if rsv1 else 0) | opcode
    mbit = 0x80 if mask else 0
    length = len(payload)
    if length < 126:
        header = struct.pack("!BB", b0, mbit | length)
    elif length < 65536:
        header = struct.pack("!BBH", b0, mbit | 126, length)
    else:
        header = struct.pack("!BBQ", b0, mbit | 127, length)
    if not mask:
        return header + payload
    key = os.urandom(4)
    return header + key + apply_mask(payload, key)


def apply_mask(data: bytes, key: bytes) -> bytes:
    """XOR ``data`` with the repeated masking key (RFC 6455 section 5.3)."""
    size = len(data)
    stream = (key * (size // 4 + 1))[:size]
    return (int.from_bytes(data, "big") ^ int.from_bytes(stream, "big")).to_bytes(size, "big")


def close_payload(code: int, reason: str = "") -> bytes:
    return struct.pack("!H", code) + reason.encode()


async def read_frame(reader: asyncio.StreamReader) -> tuple[int, bool, bool, bytes]:
    """Read one frame: ``(opcode, fin, rsv1, payload)``, unmasked."""
    b0, b1 = await reader.readexactly(2)
    length = b1 & 0x7F
    if length == 126:
        (length,) = struct.unpack("!H", await reader.readexactly(2))
    elif length == 127:
        (length,) = struct.unpack("!Q", await reader.readexactly(8))
    key = await reader.readexactly(4) if b1 & 0x80 else None
    payload = await reader.readexactly(length)
    if key is not None:
        payload = apply_mask(payload, key)
    return b0 & 0x0F, bool(b0 & 0x80), bool(b0 & 0x40), payload


async def read_head(reader: asyncio.StreamReader) -> bytes:
    return await reader.readuntil(b"\r\n\r\n")


async def tiny_window_client(port: int) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    """Open a WebSocket connection from a raw client with a 4 KiB receive buffer.

    The caller can then stop reading (``reader._transport.pause_reading()``): the server's
    writes soon block, as with a peer that never reads.
    """
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.setblocking(False)
    await asyncio.get_running_loop().sock_connect(sock, ("127.0.0.1", port))
    reader, writer = await asyncio.open_connection(sock=sock)
    writer.write(upgrade_request())
    await read_head(reader)
    return reader, writer


def parse_head(head: bytes) -> tuple[str, dict[str, str]]:
    """Split an HTTP head into its first line and its headers (lower-cased names)."""
    first, *lines = head.decode("latin-1").split("\r\n")
    headers = {}
    for line in lines:
        if line:
            name, _, value = line.partition(":")
            headers[name.strip().lower()] = value.strip()
    return first, headers


class RawPeer:
    """One end of a WebSocket connection, driven by hand.

    Args:
        mask: whether this end masks its frames (a client does).
        deflate: whether permessage-deflate was negotiated (both windows 15 bits).
    """

    def __init__(
        self,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        *,
        mask: bool,
        deflate: bool = False,
    ) -> None:
        self.reader = reader
        self.writer = writer
        self.mask = mask
        self.deflate = deflate
        self._inflater = zlib.decompressobj(-15)

    def write(self, opcode: int, payload: bytes = b"", *, fin: bool = True, rsv1: bool = False):
        self.writer.write(frame(opcode, payload, fin=fin, rsv1=rsv1, mask=self.mask))

    def send_text(self, text: str) -> None:
        self.write(Opcode.TEXT, text.encode())

    def send_compressed(self, data: bytes, opcode: int = Opcode.BINARY) -> None:
        compressor = zlib.compressobj(wbits=-15)
        payload = compressor.compress(data) + compressor.flush(zlib.Z_SYNC_FLUSH)
        assert payload.endswith(b"\x00\x00\xff\xff")
        self.write(opcode, payload[:-4], rsv1=True)

    def send_close(self, code: int | None = 1000, reason: str = "") -> None:
        self.write(Opcode.CLOSE, b"" if code is None else close_payload(code, reason))

    async def recv_frame(self) -> tuple[int, bool, bool, bytes]:
        """Read one frame; a compressed message's first frame is returned decompressed."""
        opcode, fin, rsv1, payload = await read_frame(self.reader)
        if rsv1:
            assert fin, "decompressing a fragmented message isn't supported here"
            payload = self._inflater.decompress(payload + b"\x00\x00\xff\xff")
        return opcode, fin, rsv1, payload

    async def recv_close(self) -> Close:
        """Skip frames until a close frame arrives; return it."""
        while True:
            opcode, _, _, payload = await self.recv_frame()
            if opcode == Opcode.CLOSE:
                return Close.parse(payload)

    async def read_until_eof(self) -> bytes:
        with contextlib.suppress(ConnectionError):
            return await self.reader.read()
        return b""

    def abort(self) -> None:
        self.writer.transport.abort()

    async def aclose(self) -> None:
        self.writer.close()
        with contextlib.suppress(ConnectionError):
            await self.writer.wait_closed()


def upgrade_request(
    resource: str = "/",
    *,
    key: str = "dGhlIHNhbXBsZSBub25jZQ==",
    headers: dict[str, str] | None = None,
    omit: tuple[str, ...] = (),
) -> bytes:
    """A client's opening handshake request, with ``headers`` added or replacing defaults."""
    fields = {
        "Host": "localhost",
        "Upgrade": "websocket",
        "Connection": "Upgrade",
        "Sec-WebSocket-Key": key,
        "Sec-WebSocket-Version": "13",
    }
    fields.update(headers or {})
    lines = [f"GET {resource} HTTP/1.1"]
    lines += [f"{name}: {value}" for name, value in fields.items() if name not in omit]
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


async def http_request(port: int, data: bytes) -> tuple[str, dict[str, str], bytes]:
    """Send raw bytes to a server; return the status line, headers and body of its answer."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(data)
        head = await read_head(reader)
        first, headers = parse_head(head)
        length = headers.get("content-length")
        if data.startswith(b"HEAD "):
            body = b""
        elif length is not None:
            body = await reader.readexactly(int(length))
        else:
            body = await reader.read()
        return first, headers, body
    finally:
        writer.close()


async def raw_client(
    port: int,
    resource: str = "/",
    *,
    deflate: bool = False,
    headers: dict[str, str] | None = None,
    early: bytes = b"",
) -> RawPeer:
    """Open a WebSocket connection by hand to a server on loopback."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    extra = dict(headers or {})
    if deflate:
        extra["Sec-WebSocket-Extensions"] = "permessage-deflate"
    writer.write(upgrade_request(resource, headers=extra) + early)
    first, fields = parse_head(await read_head(reader))
    assert first.startswith("HTTP/1.1 101"), first
    negotiated = "permessage-deflate" in fields.get("sec-websocket-extensions", "")
    assert negotiated == deflate
    return RawPeer(reader, writer, mask=True, deflate=deflate)


@contextlib.asynccontextmanager
async def raw_server(*, deflate: bool = False) -> AsyncIterator[tuple[int, asyncio.Queue[RawPeer]]]:
    """Accept WebSocket clients by hand; yield the port and a queue of accepted peers."""
    peers: asyncio.Queue[RawPeer] = asyncio.Queue()
    writers: list[asyncio.StreamWriter] = []

    async def accept(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writers.append(writer)
        _, fields = parse_head(await read_head(reader))
        lines = [
            "HTTP/1.1 101 Switching Protocols",
            "Upgrade: websocket",
            "Connection: Upgrade",
            f"Sec-WebSocket-Accept: {accept_key(fields['sec-websocket-key'])}",
        ]
        if deflate:
            lines.append("Sec-WebSocket-Extensions: permessage-deflate")
        writer.write(("\r\n".join(lines) + "\r\n\r\n").encode())
        await peers.put(RawPeer(reader, writer, mask=False, deflate=deflate))

    server = await asyncio.start_server(accept, "127.0.0.1", 0)
    try:
        yield server.sockets[0].getsockname()[1], peers
    finally:
        for writer in writers:
            writer.transport.abort()
        server.close()
        await server.wait_closed()
