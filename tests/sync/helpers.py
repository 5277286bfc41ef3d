"""Test doubles for the threading tests: raw peers speaking hand-built bytes over blocking
sockets, and a wsend.sync server running in a thread.

A :class:`RawPeer` is the other end of a connection under test, driven frame by frame: it can
stay silent, ignore pings, never read, or send frames that break the protocol.
"""

from __future__ import annotations

import contextlib
import socket
import struct
import threading
import zlib
from collections.abc import Iterator
from typing import Any

import wsend
from wsend.protocol.frames import Close, Opcode

from ..asyncio.helpers import accept_key, apply_mask, frame, parse_head, upgrade_request


def echo(ws: wsend.sync.ServerConnection) -> None:
    """A handler sending every message back."""
    for message in ws:
        ws.send(message)


def read_exactly(sock: socket.socket, n: int) -> bytes:
    data = bytearray()
    while len(data) < n:
        chunk = sock.recv(n - len(data))
        if not chunk:
            raise EOFError(f"connection closed after {len(data)} of {n} bytes")
        data += chunk
    return bytes(data)


def read_head(sock: socket.socket) -> bytes:
    data = bytearray()
    while not data.endswith(b"\r\n\r\n"):
        chunk = sock.recv(1)
        if not chunk:
            raise EOFError("connection closed in the HTTP head")
        data += chunk
    return bytes(data)


def read_until_eof(sock: socket.socket) -> bytes:
    data = bytearray()
    with contextlib.suppress(ConnectionError):
        while chunk := sock.recv(65536):
            data += chunk
    return bytes(data)


class RawPeer:
    """One end of a WebSocket connection over a blocking socket, driven by hand."""

    def __init__(self, sock: socket.socket, *, mask: bool, deflate: bool = False) -> None:
        self.sock = sock
        self.mask = mask
        self.deflate = deflate
        self._inflater = zlib.decompressobj(-15)

    def write(self, opcode: int, payload: bytes = b"", *, fin: bool = True, rsv1: bool = False):
        self.sock.sendall(frame(opcode, payload, fin=fin, rsv1=rsv1, mask=self.mask))

    def send_text(self, text: str) -> None:
        self.write(Opcode.TEXT, text.encode())

    def send_compressed(self, data: bytes, opcode: int = Opcode.BINARY) -> None:
        compressor = zlib.compressobj(wbits=-15)
        payload = compressor.compress(data) + compressor.flush(zlib.Z_SYNC_FLUSH)
        self.write(opcode, payload[:-4], rsv1=True)

    def send_close(self, code: int | None = 1000, reason: str = "") -> None:
        payload = b"" if code is None else struct.pack("!H", code) + reason.encode()
        self.write(Opcode.CLOSE, payload)

    def recv_frame(self) -> tuple[int, bool, bool, bytes]:
        """Read one frame: ``(opcode, fin, rsv1, payload)``, unmasked and inflated."""
        b0, b1 = read_exactly(self.sock, 2)
        length = b1 & 0x7F
        if length == 126:
            (length,) = struct.unpack("!H", read_exactly(self.sock, 2))
        elif length == 127:
            (length,) = struct.unpack("!Q", read_exactly(self.sock, 8))
        key = read_exactly(self.sock, 4) if b1 & 0x80 else None
        payload = read_exactly(self.sock, length)
        if key is not None:
            payload = apply_mask(payload, key)
        rsv1 = bool(b0 & 0x40)
        if rsv1:
            payload = self._inflater.decompress(payload + b"\x00\x00\xff\xff")
        return b0 & 0x0F, bool(b0 & 0x80), rsv1, payload

    def recv_close(self) -> Close:
        """Skip frames until a close frame arrives; return it."""
        while True:
            opcode, _, _, payload = self.recv_frame()
            if opcode == Opcode.CLOSE:
                return Close.parse(payload)

    def close(self) -> None:
        self.sock.close()


def raw_client(
    port: int, resource: str = "/", *, headers: dict[str, str] | None = None, deflate: bool = False
) -> RawPeer:
    """Open a WebSocket connection by hand to a server on loopback."""
    sock = socket.create_connection(("127.0.0.1", port), timeout=10)
    sock.sendall(upgrade_request(resource, headers=headers))
    first, fields = parse_head(read_head(sock))
    assert first.startswith("HTTP/1.1 101"), first
    negotiated = "permessage-deflate" in fields.get("sec-websocket-extensions", "")
    assert negotiated == deflate
    return RawPeer(sock, mask=True, deflate=deflate)


def http_request(port: int, data: bytes) -> tuple[str, dict[str, str], bytes]:
    """Send raw bytes to a server; return the status line, headers and body of its answer."""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(data)
        first, headers = parse_head(read_head(sock))
        length = headers.get("content-length")
        if data.startswith(b"HEAD "):
            body = b""
        elif length is not None:
            body = read_exactly(sock, int(length))
        else:
            body = read_until_eof(sock)
        return first, headers, body


class RawServer:
    """Accepts WebSocket clients by hand, in a thread; ``accept()`` returns the next peer."""

    def __init__(self, *, deflate: bool = False, answer: bytes | None = None) -> None:
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.deflate = deflate
        self.answer = answer
        self.requests: list[bytes] = []

    def accept(self, timeout: float = 10) -> RawPeer:
        self.listener.settimeout(timeout)
        sock, _ = self.listener.accept()
        sock.settimeout(timeout)
        head = read_head(sock)
        self.requests.append(head)
        if self.answer is not None:
            sock.sendall(self.answer)
            return RawPeer(sock, mask=False)
        _, fields = parse_head(head)
        lines = [
            "HTTP/1.1 101 Switching Protocols",
            "Upgrade: websocket",
            "Connection: Upgrade",
            f"Sec-WebSocket-Accept: {accept_key(fields['sec-websocket-key'])}",
        ]
        if self.deflate:
            lines.append("Sec-WebSocket-Extensions: permessage-deflate")
        sock.sendall(("\r\n".join(lines) + "\r\n\r\n").encode())
        return RawPeer(sock, mask=False, deflate=self.deflate)

    def close(self) -> None:
        self.listener.close()


@contextlib.contextmanager
def running(server: wsend.sync.Server) -> Iterator[wsend.sync.Server]:
    """Run ``server.serve_forever()`` in a thread; shut the server down after the block."""
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.shutdown(timeout=5)
        thread.join(5)
        assert not thread.is_alive()


def uri(server: wsend.sync.Server, resource: str = "/", scheme: str = "ws") -> str:
    return f"{scheme}://127.0.0.1:{server.port}{resource}"


def in_thread(target: Any, *args: Any) -> threading.Thread:
    thread = threading.Thread(target=target, args=args, daemon=True)
    thread.start()
    return thread
