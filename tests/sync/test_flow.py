"""Flow control and timers of the threading connection, against raw peers over real sockets:
the receive queue bound, the write backlog bound, keepalive and the close timeout."""

from __future__ import annotations

import socket
import time

import pytest

import wsend
from wsend.protocol.frames import Opcode

from .conftest import OpenRaw, StartServer
from .helpers import in_thread, uri
from .test_connection import wait_until


def test_reading_pauses_when_the_queue_is_full(open_raw: OpenRaw) -> None:
    conn, peer = open_raw(max_queue=4)
    for i in range(200):
        peer.send_text(f"message {i}")
    wait_until(lambda: conn._paused)
    # Reading stopped: what waits is bounded by one read's worth of events.
    assert len(conn._queue) <= 1024
    assert [conn.recv(timeout=5) for _ in range(200)] == [f"message {i}" for i in range(200)]
    assert not conn._paused


def test_the_write_backlog_stays_bounded(open_raw: OpenRaw) -> None:
    """A peer that doesn't read: the kernel's buffers fill, then send() waits instead of
    queueing without limit; everything arrives once the peer reads."""
    limit = 65536
    conn, peer = open_raw(write_limit=limit, max_message_size=None, ping_interval=None)
    size, count = 64 * 1024, 400  # 25 MiB: more than the socket buffers hold
    sent: list[int] = []

    def send_all() -> None:
        for i in range(count):
            conn.send(i.to_bytes(4, "big") * (size // 4))
            sent.append(i)

    sender = in_thread(send_all)
    highest = 0
    for _ in range(100):  # samples while the peer doesn't read
        highest = max(highest, conn.buffered_amount)
        time.sleep(0.005)
    assert len(sent) < count, "the peer's buffers took everything"
    # The backlog the writer took plus what queued meanwhile: at most one message each past
    # the mark.
    assert highest <= 2 * (limit + size + 64)
    for i in range(count):
        opcode, _, _, payload = peer.recv_frame()
        assert opcode == Opcode.BINARY
        assert payload == i.to_bytes(4, "big") * (size // 4)
    sender.join(10)
    assert sent == list(range(count))


def test_keepalive_timeout_fails_the_connection(open_raw: OpenRaw) -> None:
    conn, peer = open_raw(ping_interval=0.05, ping_timeout=0.1)
    opcode, _, _, _ = peer.recv_frame()
    assert opcode == Opcode.PING  # never answered
    close = peer.recv_close()
    assert (close.code, close.reason) == (1011, "keepalive ping timeout")
    with pytest.raises(wsend.ConnectionClosedError):
        conn.recv(timeout=5)


def test_keepalive_pings_again_once_answered(open_raw: OpenRaw) -> None:
    conn, peer = open_raw(ping_interval=0.02, ping_timeout=5)
    for _ in range(3):
        opcode, _, _, payload = peer.recv_frame()
        assert opcode == Opcode.PING
        peer.write(Opcode.PONG, payload)
    wait_until(lambda: conn.latency > 0)


def test_keepalive_without_timeout_waits_for_the_pong(open_raw: OpenRaw) -> None:
    conn, peer = open_raw(ping_interval=0.02, ping_timeout=None)
    opcode, _, _, payload = peer.recv_frame()
    assert opcode == Opcode.PING
    time.sleep(0.1)  # no second ping and no failure while the first waits
    peer.write(Opcode.PONG, payload)
    opcode, _, _, _ = peer.recv_frame()
    assert opcode == Opcode.PING
    assert conn.ready_state is wsend.State.OPEN


def test_close_timeout_drops_a_silent_peer(open_raw: OpenRaw) -> None:
    conn, peer = open_raw(close_timeout=0.2)
    conn.close()  # the peer never answers the close frame
    assert conn.ready_state is wsend.State.CLOSED
    assert conn.close_code == 1006
    assert peer.recv_close().code == 1000


def test_unsolicited_pongs_and_pings_are_handled(open_raw: OpenRaw) -> None:
    conn, peer = open_raw()
    peer.write(Opcode.PONG, b"unsolicited")
    peer.write(Opcode.PING, b"ping me")
    opcode, _, _, payload = peer.recv_frame()
    assert (opcode, payload) == (Opcode.PONG, b"ping me")
    peer.send_text("still fine")
    assert conn.recv(timeout=5) == "still fine"


def test_peer_closing_tcp_without_close_frame(open_raw: OpenRaw) -> None:
    conn, peer = open_raw()
    peer.send_text("last words")
    peer.sock.shutdown(socket.SHUT_WR)
    assert conn.recv(timeout=5) == "last words"
    with pytest.raises(wsend.ConnectionClosedError) as caught:
        conn.recv(timeout=5)
    assert caught.value.code == 1006
    assert conn.wait_closed(5)


def test_peer_starting_the_closing_handshake(open_raw: OpenRaw) -> None:
    conn, peer = open_raw()
    peer.send_close(1001, "bye")
    assert peer.recv_close().code == 1001  # echoed
    if not conn.is_client:
        peer.sock.settimeout(5)
        assert peer.sock.recv(1) == b""  # the server closes TCP first (RFC 6455 7.1.1)
    peer.sock.close()
    with pytest.raises(wsend.ConnectionClosedOK):
        conn.recv(timeout=5)
    assert conn.wait_closed(5)
    assert (conn.close_code, conn.close_reason) == (1001, "bye")


def test_close_frame_without_code(open_raw: OpenRaw) -> None:
    conn, peer = open_raw()
    peer.send_close(None)
    assert peer.recv_close().code == 1005
    peer.sock.close()
    assert conn.wait_closed(5)
    assert conn.close_code == 1005


def test_uri_helper(start_sync_server: StartServer) -> None:
    server = start_sync_server()
    assert uri(server).startswith("ws://127.0.0.1:")


def test_a_pong_acknowledges_earlier_pings(open_raw: OpenRaw) -> None:
    conn, peer = open_raw()
    first = conn.send_ping(b"1")
    second = conn.send_ping(b"2")
    assert peer.recv_frame()[3] == b"1"
    assert peer.recv_frame()[3] == b"2"
    peer.write(Opcode.PONG, b"2")  # only the second is answered (RFC 6455 5.5.3)
    assert first.result(5) >= second.result(5) > 0


def test_messages_buffered_when_the_connection_drops_stay_readable(open_raw: OpenRaw) -> None:
    conn, peer = open_raw(max_queue=4)
    from ..asyncio.helpers import frame

    count = 3000  # more than one read's worth of events (1,024): some stay buffered
    peer.sock.sendall(b"".join(frame(Opcode.TEXT, b"m", mask=peer.mask) for _ in range(count)))
    wait_until(lambda: conn._paused)
    conn.abort()
    assert conn.wait_closed(5)
    received = []

    def receive_all() -> None:
        while True:
            received.append(conn.recv(timeout=5))

    with pytest.raises(wsend.ConnectionClosedError):
        receive_all()
    assert len(received) > 1024
    assert set(received) == {"m"}
