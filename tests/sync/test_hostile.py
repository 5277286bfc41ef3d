"""Hostile peers against the threading connection, from both sides, over real sockets: each
error gets its close code (1002, 1007, 1009), messages before it are delivered, memory stays
bounded, and other connections are unaffected."""

from __future__ import annotations

import contextlib
import os
import socket
import struct
import time

import pytest

import wsend
from wsend.protocol.frames import Close, Opcode

from .conftest import OpenRaw, StartServer
from .helpers import raw_client, uri
from .test_connection import wait_until


def test_messages_before_a_protocol_error_are_delivered(open_raw: OpenRaw) -> None:
    ws, peer = open_raw()
    peer.send_text("one")
    peer.send_text("two")
    peer.write(0x3, b"reserved opcode")
    assert ws.recv(timeout=5) == "one"
    ws.send("answer to one")
    assert ws.recv(timeout=5) == "two"
    with pytest.raises(wsend.ConnectionClosedError) as info:
        ws.recv(timeout=5)
    assert isinstance(info.value.__cause__, wsend.ProtocolError)
    assert info.value.sent is not None
    assert info.value.sent.code == 1002
    assert peer.recv_frame()[3] == b"answer to one"
    assert peer.recv_close().code == 1002


def test_protocol_error_fails_after_close_timeout_when_unread(open_raw: OpenRaw) -> None:
    ws, peer = open_raw(close_timeout=0.1)
    peer.send_text("unread")
    peer.write(0x3)
    assert peer.recv_close().code == 1002
    assert ws.recv(timeout=5) == "unread"
    peer.close()
    with pytest.raises(wsend.ConnectionClosedError):
        ws.recv(timeout=5)


def test_wrong_masking_fails_with_1002(open_raw: OpenRaw) -> None:
    ws, peer = open_raw()
    peer.mask = not peer.mask  # clients must mask, servers must not
    peer.send_text("wrong")
    with pytest.raises(wsend.ConnectionClosedError) as info:
        ws.recv(timeout=5)
    assert isinstance(info.value.__cause__, wsend.ProtocolError)
    peer.mask = not peer.mask
    assert peer.recv_close().code == 1002


def test_invalid_utf8_fails_with_1007(open_raw: OpenRaw) -> None:
    ws, peer = open_raw()
    peer.write(Opcode.TEXT, b"\xff\xfe")
    with pytest.raises(wsend.ConnectionClosedError) as info:
        ws.recv(timeout=5)
    assert isinstance(info.value.__cause__, wsend.InvalidPayload)
    assert peer.recv_close().code == 1007


def test_invalid_utf8_in_a_close_reason_fails_with_1007(open_raw: OpenRaw) -> None:
    ws, peer = open_raw()
    peer.write(Opcode.CLOSE, struct.pack("!H", 1000) + b"\xff")
    assert peer.recv_close().code == 1007
    peer.close()
    assert ws.wait_closed(5)
    with pytest.raises(wsend.ConnectionClosedError) as info:
        ws.recv(timeout=5)
    assert isinstance(info.value.__cause__, wsend.InvalidPayload)


def test_max_message_size_fails_with_1009(open_raw: OpenRaw) -> None:
    ws, peer = open_raw(max_message_size=1000)
    peer.write(Opcode.BINARY, b"x" * 1000)
    assert ws.recv(timeout=5) == b"x" * 1000
    peer.write(Opcode.BINARY, b"x" * 1001)
    with pytest.raises(wsend.ConnectionClosedError) as info:
        ws.recv(timeout=5)
    assert isinstance(info.value.__cause__, wsend.PayloadTooBig)
    assert peer.recv_close().code == 1009


def test_max_message_size_counts_fragments(open_raw: OpenRaw) -> None:
    ws, peer = open_raw(max_message_size=1000)
    for i in range(3):
        peer.write(Opcode.CONT if i else Opcode.BINARY, b"x" * 400, fin=False)
    with pytest.raises(wsend.ConnectionClosedError) as info:
        ws.recv(timeout=5)
    assert isinstance(info.value.__cause__, wsend.PayloadTooBig)
    assert peer.recv_close().code == 1009


def test_compressed_bomb_over_the_limit(open_raw: OpenRaw) -> None:
    ws, peer = open_raw(deflate=True, max_message_size=100_000)
    peer.send_compressed(b"\x00" * 100_000)
    assert ws.recv(timeout=5) == b"\x00" * 100_000
    peer.send_compressed(b"\x00" * 10_000_000)  # about 10 KB on the wire
    with pytest.raises(wsend.ConnectionClosedError) as info:
        ws.recv(timeout=5)
    assert isinstance(info.value.__cause__, wsend.PayloadTooBig)
    assert peer.recv_close().code == 1009


def test_oversized_frame_then_trickle_gets_1009_and_a_clean_end(open_raw: OpenRaw) -> None:
    """A 64 MiB frame announced, its payload trickled: the close frame (1009) goes out at once
    and the peer reads it, then a clean end of the connection, not a reset."""
    ws, peer = open_raw()
    mask = os.urandom(4) if peer.mask else b""
    header = bytes([0x82, (0x80 if peer.mask else 0) | 127]) + struct.pack("!Q", 64 << 20)
    peer.sock.sendall(header + mask)
    wait_until(lambda: ws.ready_state is not wsend.State.OPEN)
    for _ in range(50):  # b"x" is 0x78: a close frame's first byte if read as a header
        peer.sock.sendall(b"x" * 10)
        time.sleep(0.005)
    opcode, _, _, payload = peer.recv_frame()
    assert opcode == Opcode.CLOSE
    assert Close.parse(payload) == Close(1009, "")
    peer.sock.shutdown(socket.SHUT_WR)
    assert peer.sock.recv(65536) == b""  # a clean FIN, no reset
    with pytest.raises(wsend.ConnectionClosedError) as info:
        ws.recv(timeout=5)
    assert info.value.sent == Close(1009, "")


def test_many_tiny_fragments_join_to_the_message(open_raw: OpenRaw) -> None:
    ws, peer = open_raw()
    frames = [(Opcode.TEXT, b"a", False)]
    frames += [(Opcode.CONT, b"" if i % 2 else b"b", False) for i in range(2000)]
    frames.append((Opcode.CONT, b"c", True))
    from ..asyncio.helpers import frame

    peer.sock.sendall(
        b"".join(frame(op, data, fin=fin, mask=peer.mask) for op, data, fin in frames)
    )
    assert ws.recv(timeout=5) == "a" + "b" * 1000 + "c"


def test_ping_flood_from_a_peer_that_never_reads(start_sync_server: StartServer) -> None:
    """Pongs are held while the socket can't take them: memory stays bounded."""
    server = start_sync_server()
    peer = raw_client(server.port)
    peer.sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 1 << 20)
    from ..asyncio.helpers import frame

    ping = frame(Opcode.PING, b"p" * 125, mask=True)
    sent = 0
    peer.sock.settimeout(0.5)
    try:
        for _ in range(200):
            peer.sock.sendall(ping * 500)
            sent += 500
    except TimeoutError:
        pass  # the server stopped reading: its writes to us are blocked
    (conn,) = server.connections
    # What waits to be written is bounded by the write limit, not by the pings sent.
    assert conn.buffered_amount <= 2 * (65536 + 64 * 1024)
    # Other connections are unaffected.
    with wsend.sync.connect(uri(server)) as ws:
        ws.send("others are fine")
        assert ws.recv(timeout=5) == "others are fine"
    peer.close()
    assert sent > 0


def test_ping_flood_against_keepalive_drops_the_connection(start_sync_server: StartServer) -> None:
    """A peer that floods pings and never reads blocks the reader thread's pongs: after
    ping_timeout the watchdog drops the connection (the reader can't time out itself)."""
    accepted: list[wsend.sync.ServerConnection] = []

    def handler(ws: wsend.sync.ServerConnection) -> None:
        accepted.append(ws)
        ws.wait_closed()

    server = start_sync_server(handler, ping_timeout=0.3)
    peer = raw_client(server.port)
    from ..asyncio.helpers import frame

    ping = frame(Opcode.PING, b"p" * 125, mask=True)
    peer.sock.settimeout(0.5)
    with contextlib.suppress(TimeoutError, OSError):
        while True:
            peer.sock.sendall(ping * 500)
    wait_until(lambda: accepted)
    assert accepted[0].wait_closed(10)
    assert accepted[0].close_code == 1006
    peer.close()


def test_garbage_after_the_handshake(open_raw: OpenRaw) -> None:
    ws, peer = open_raw()
    peer.sock.sendall(b"\x8f" * 64)  # reserved control opcode 0xF
    with pytest.raises(wsend.ConnectionClosedError) as info:
        ws.recv(timeout=5)
    assert isinstance(info.value.__cause__, wsend.ProtocolError)
    assert peer.recv_close().code == 1002
