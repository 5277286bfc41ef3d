"""Limits, flow control and keepalive, tested once from each side."""

from __future__ import annotations

import asyncio
import io
import os

import pytest

from wsend import ConnectionClosedError, PayloadTooBig, State, UsageError
from wsend.asyncio.connection import _MAX_INFLATED_PER_READ
from wsend.asyncio.fastpath import RECV_BUFFER_SIZE
from wsend.protocol.frames import Opcode

from .helpers import until

pytestmark = pytest.mark.timeout(30)


# -- size limits -----------------------------------------------------------------------------


async def test_max_message_size(open_raw):
    ws, peer = await open_raw(max_message_size=1000)
    peer.write(Opcode.BINARY, b"x" * 1000)
    assert await ws.recv() == b"x" * 1000
    peer.write(Opcode.BINARY, b"x" * 1001)
    with pytest.raises(ConnectionClosedError) as info:
        await ws.recv()
    assert isinstance(info.value.__cause__, PayloadTooBig)
    assert info.value.sent is not None
    assert info.value.sent.code == 1009
    assert (await peer.recv_close()).code == 1009


async def test_max_message_size_counts_fragments(open_raw):
    ws, peer = await open_raw(max_message_size=1000)
    for _ in range(3):
        peer.write(Opcode.BINARY if _ == 0 else Opcode.CONT, b"x" * 400, fin=False)
    with pytest.raises(ConnectionClosedError) as info:
        await ws.recv()
    assert isinstance(info.value.__cause__, PayloadTooBig)
    assert (await peer.recv_close()).code == 1009


async def test_max_frame_size(open_raw):
    ws, peer = await open_raw(max_message_size=1000, max_frame_size=100)
    for i in range(4):
        peer.write(Opcode.CONT if i else Opcode.TEXT, b"y" * 100, fin=i == 3)
    assert await ws.recv() == "y" * 400
    peer.write(Opcode.TEXT, b"y" * 101)
    with pytest.raises(ConnectionClosedError) as info:
        await ws.recv()
    assert isinstance(info.value.__cause__, PayloadTooBig)
    assert (await peer.recv_close()).code == 1009


async def test_compressed_bomb_over_the_limit(open_raw):
    ws, peer = await open_raw(deflate=True, max_message_size=100_000)
    peer.send_compressed(b"\x00" * 100_000)
    assert await ws.recv() == b"\x00" * 100_000
    peer.send_compressed(b"\x00" * 10_000_000)  # about 10 KB on the wire
    with pytest.raises(ConnectionClosedError) as info:
        await ws.recv()
    assert isinstance(info.value.__cause__, PayloadTooBig)
    assert (await peer.recv_close()).code == 1009


async def test_no_message_size_limit(open_pair):
    local, remote = await open_pair(max_message_size=None)
    data = os.urandom(3 << 20)
    sending = asyncio.create_task(remote.send(data))
    assert await local.recv() == data
    await sending


# -- flow control ----------------------------------------------------------------------------


async def test_max_queue_pauses_reading(open_raw):
    max_queue, size, count = 4, 16384, 1000
    ws, peer = await open_raw(max_queue=max_queue, max_message_size=None)
    for i in range(count):
        peer.write(Opcode.BINARY, i.to_bytes(4, "big") + bytes(size - 4))
    # One read of the socket yields at most the shared receive buffer, so this many messages;
    # the reader gets a turn before reading pauses, during which one more read may come (uvloop
    # reads several times in a row).
    per_read = 2 * (RECV_BUFFER_SIZE // size + 1)
    peak = 0
    stalled = 0
    previous = -1
    while stalled < 5:
        await asyncio.sleep(0.02)
        peak = max(peak, len(ws._queue))
        backlog = peer.writer.transport.get_write_buffer_size()
        stalled = stalled + 1 if backlog == previous else 0
        previous = backlog
    assert peak <= max_queue + per_read
    assert backlog > 0  # the peer's writes back up: we stopped reading
    assert ws.ready_state is State.OPEN
    for i in range(count):
        message = await ws.recv()
        assert message[:4] == i.to_bytes(4, "big")
        assert len(ws._queue) <= max_queue + per_read
    assert peer.writer.transport.get_write_buffer_size() == 0


async def test_a_flood_of_compressed_messages_inflates_a_budget_at_a_time(open_raw):
    # 2,000 messages of 16 KiB of zeros: 32 MiB once inflated, a few dozen KB on the wire (one
    # or two reads). Without a budget, one read would inflate them all into the queue.
    size, count = 16384, 2000
    ws, peer = await open_raw(deflate=True, max_queue=4)
    for i in range(count):
        peer.send_compressed(i.to_bytes(4, "big") + bytes(size - 4))
    # What one parse may inflate, plus the message that crossed it; a second read that came
    # before reading paused gets a budget too.
    bound = 2 * (_MAX_INFLATED_PER_READ + size)

    def queued() -> int:
        return sum(len(m) for m in ws._queue or ())

    peak = 0
    for _ in range(10):
        await asyncio.sleep(0.02)
        peak = max(peak, queued())
    assert 0 < peak <= bound
    assert ws.ready_state is State.OPEN
    for i in range(count):
        message = await ws.recv()
        assert message[:4] == i.to_bytes(4, "big")
        assert len(message) == size
        assert queued() <= bound


async def test_a_message_larger_than_the_budget_does_not_stall_the_next(open_raw):
    # The budget stops parsing right after one big message: the next must still come.
    ws, peer = await open_raw(deflate=True, max_message_size=None)
    big = _MAX_INFLATED_PER_READ + 1
    for fill in (b"a", b"b", b"c"):
        peer.send_compressed(fill * big)
    for fill in (b"a", b"b", b"c"):
        assert await asyncio.wait_for(ws.recv(), 10) == fill * big


async def test_send_waits_while_peer_does_not_read(open_raw):
    ws, peer = await open_raw(write_limit=65536)
    chunk = os.urandom(256 * 1024)
    sent = 0
    for _ in range(1000):
        sending = asyncio.create_task(ws.send(chunk, compress=False))
        await asyncio.sleep(0)  # the task runs until it waits for the buffer to drain
        if not sending.done():
            break
        await sending
        sent += 1
    else:
        pytest.fail("send() never waited")
    assert ws.buffered_amount > 65536
    assert ws.ready_state is State.OPEN
    later = asyncio.create_task(ws.send("after"))
    await asyncio.sleep(0)
    assert not later.done()
    for _ in range(sent + 1):
        opcode, _, _, payload = await peer.recv_frame()
        assert (opcode, len(payload)) == (Opcode.BINARY, len(chunk))
    await sending
    await later
    assert (await peer.recv_frame())[3] == b"after"
    assert ws.buffered_amount == 0


async def test_streamed_send_waits_while_peer_does_not_read(open_raw):
    ws, peer = await open_raw()
    data = os.urandom(16 << 20)
    sending = asyncio.create_task(ws.send(io.BytesIO(data)))
    await until(lambda: ws.buffered_amount > 65536, 0.01)
    assert not sending.done()
    received = bytearray()
    while True:
        _, fin, _, payload = await peer.recv_frame()
        received += payload
        if fin:
            break
    await sending
    assert received == data


async def test_send_json_waits_while_peer_does_not_read(open_raw):
    ws, peer = await open_raw()
    big = {"data": "x" * 300_000}
    for _ in range(1000):
        sending = asyncio.create_task(ws.send_json(big))
        await asyncio.sleep(0)
        if not sending.done():
            break
        await sending
    else:
        pytest.fail("send_json() never waited")
    while not sending.done():
        await peer.recv_frame()
    await sending


async def test_write_limit_as_a_pair(open_raw):
    ws, peer = await open_raw(write_limit=(1024, 0))
    await ws.send(b"x" * 100_000, compress=False)
    assert (await peer.recv_frame())[3] == b"x" * 100_000
    assert ws.buffered_amount == 0


async def test_blocked_send_raises_when_connection_drops(open_raw):
    ws, peer = await open_raw()
    chunk = os.urandom(256 * 1024)
    for _ in range(1000):
        sending = asyncio.create_task(ws.send(chunk, compress=False))
        await asyncio.sleep(0)
        if not sending.done():
            break
    peer.abort()
    with pytest.raises(ConnectionClosedError):
        await sending
    assert ws.buffered_amount == 0


# -- ping, pong, keepalive -------------------------------------------------------------------


async def test_keepalive_with_an_answering_peer(open_pair):
    local, _ = await open_pair(ping_interval=0.02, ping_timeout=5)
    await until(lambda: local.latency != 0.0, 0.01)
    latency = local.latency
    await until(lambda: local.latency != latency, 0.01)  # a second ping after the first pong
    assert local.ready_state is State.OPEN


async def test_keepalive_closes_when_peer_never_answers(open_raw):
    ws, peer = await open_raw(ping_interval=0.05, ping_timeout=0.1, close_timeout=1)
    opcode, _, _, payload = await peer.recv_frame()
    assert opcode == Opcode.PING
    assert len(payload) == 4
    close = await peer.recv_close()
    assert (close.code, close.reason) == (1011, "keepalive ping timeout")
    peer.send_close(1011)
    await peer.aclose()
    with pytest.raises(ConnectionClosedError) as info:
        await ws.recv()
    assert info.value.sent is not None
    assert info.value.sent.code == 1011


async def test_keepalive_disabled(open_raw):
    ws, peer = await open_raw(ping_interval=None)
    await ws.send("no ping first")
    assert (await peer.recv_frame())[0] == Opcode.TEXT


async def test_keepalive_without_timeout(open_raw):
    ws, peer = await open_raw(ping_interval=0.02, ping_timeout=None)
    assert (await peer.recv_frame())[0] == Opcode.PING
    assert ws.ready_state is State.OPEN


async def test_ping_with_payload(open_raw):
    ws, peer = await open_raw()
    pinging = asyncio.create_task(ws.ping("hello"))
    assert await peer.recv_frame() == (Opcode.PING, True, False, b"hello")
    peer.write(Opcode.PONG, b"unrelated")
    peer.write(Opcode.PONG, b"hello")
    rtt = await pinging
    assert isinstance(rtt, float)
    assert ws.latency == rtt


async def test_pong_acknowledges_earlier_pings(open_raw):
    ws, peer = await open_raw()
    first = ws.send_ping(b"1")
    second = ws.send_ping(bytearray(b"2"))
    third = ws.send_ping(memoryview(b"3"))
    for _ in range(3):
        await peer.recv_frame()
    peer.write(Opcode.PONG, b"2")
    assert isinstance(await first, float)
    assert isinstance(await second, float)
    assert not third.done()


async def test_duplicate_ping_payload(open_raw):
    ws, _ = await open_raw()
    ws.send_ping(b"same")
    with pytest.raises(UsageError, match="same payload"):
        ws.send_ping(b"same")
    with pytest.raises(UsageError):
        await ws.ping("same")


async def test_ping_payload_too_long(open_raw):
    ws, _ = await open_raw()
    with pytest.raises(ValueError, match="125"):
        await ws.ping(b"x" * 126)


async def test_ping_round_trip(open_pair):
    local, _ = await open_pair()
    results = await asyncio.gather(*(local.ping() for _ in range(5)))
    assert all(isinstance(rtt, float) for rtt in results)


async def test_unsolicited_pong(open_raw):
    ws, peer = await open_raw()
    await ws.pong(b"heartbeat")
    await ws.pong("text")
    await ws.pong()
    assert await peer.recv_frame() == (Opcode.PONG, True, False, b"heartbeat")
    assert await peer.recv_frame() == (Opcode.PONG, True, False, b"text")
    assert await peer.recv_frame() == (Opcode.PONG, True, False, b"")


async def test_unsolicited_pong_is_ignored_by_peer(open_pair):
    local, remote = await open_pair()
    await local.pong(b"beat")
    await local.send("after")
    assert await remote.recv() == "after"
    assert remote.ready_state is State.OPEN


async def test_keepalive_with_slow_pongs_and_long_timeout(open_raw):
    # Each ping is answered well within ping_timeout; timers of answered pings must not fire.
    ws, peer = await open_raw(ping_interval=0.05, ping_timeout=1.0)
    for _ in range(20):
        opcode, _, _, payload = await peer.recv_frame()
        assert opcode == Opcode.PING, "the connection was closed"
        await asyncio.sleep(0.02)
        peer.write(Opcode.PONG, payload)
    assert ws.ready_state is State.OPEN


async def test_keepalive_acknowledged_by_a_later_pong(open_raw):
    # RFC 6455 5.5.3: a peer may answer only the most recent of several pings.
    ws, peer = await open_raw(ping_interval=0.05, ping_timeout=0.2)
    opcode, _, _, _ = await peer.recv_frame()
    assert opcode == Opcode.PING
    user_ping = ws.send_ping(b"user")
    assert await peer.recv_frame() == (Opcode.PING, True, False, b"user")
    peer.write(Opcode.PONG, b"user")
    await user_ping
    opcode, _, _, _ = await peer.recv_frame()
    assert opcode == Opcode.PING  # the next keepalive ping, not a close frame
    assert ws.ready_state is State.OPEN


async def test_keepalive_stops_while_closing(open_raw):
    ws, peer = await open_raw(ping_interval=0.05, ping_timeout=0.05, close_timeout=0.3)
    await ws.close()  # the peer never answers: keepalive must neither ping nor fail meanwhile
    assert (await peer.recv_close()).code == 1000
    assert await peer.read_until_eof() == b""


async def test_cancelled_ping_future_then_pong(open_raw):
    ws, peer = await open_raw()
    cancelled = ws.send_ping(b"a")
    cancelled.cancel()
    kept = ws.send_ping(b"b")
    await peer.recv_frame()
    await peer.recv_frame()
    peer.write(Opcode.PONG, b"b")
    assert isinstance(await kept, float)
