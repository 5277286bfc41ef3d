"""Every way a connection closes, tested once from each side."""

from __future__ import annotations

import asyncio

import pytest

from wsend import (
    Close,
    ConnectionClosed,
    ConnectionClosedError,
    ConnectionClosedOK,
    State,
)
from wsend.protocol.frames import Opcode

from .helpers import until

pytestmark = pytest.mark.timeout(20)


async def test_local_close(open_pair):
    local, remote = await open_pair()
    await local.close()
    assert local.ready_state is State.CLOSED
    with pytest.raises(ConnectionClosedOK) as info:
        await remote.recv()
    assert info.value.rcvd == Close(1000)
    assert info.value.sent == Close(1000)
    assert info.value.rcvd_then_sent is True
    with pytest.raises(ConnectionClosedOK) as info:
        await local.recv()
    assert info.value.sent == Close(1000)
    assert info.value.rcvd == Close(1000)
    assert info.value.rcvd_then_sent is False
    assert "sent 1000 (normal closure); then received 1000" in str(info.value)


async def test_close_with_custom_code_and_reason(open_pair):
    local, remote = await open_pair()
    await local.close(4321, "gone fishing")
    with pytest.raises(ConnectionClosedError) as info:
        await remote.recv()
    assert (info.value.code, info.value.reason) == (4321, "gone fishing")
    await remote.wait_closed()
    assert (remote.close_code, remote.close_reason) == (4321, "gone fishing")
    assert local.close_code == 4321  # echoed, without the reason
    assert local.close_reason == ""


async def test_close_going_away_is_ok(open_pair):
    local, remote = await open_pair()
    await local.close(1001)
    with pytest.raises(ConnectionClosedOK):
        await remote.recv()


@pytest.mark.parametrize("code", [3000, 4999])
async def test_close_application_code_range(open_pair, code):
    local, remote = await open_pair()
    await local.close(code)
    await remote.wait_closed()
    assert remote.close_code == code


async def test_close_without_status(open_pair):
    local, remote = await open_pair()
    await local.close(1005)
    with pytest.raises(ConnectionClosedOK) as info:
        await remote.recv()
    assert info.value.code == 1005
    await remote.wait_closed()
    assert remote.close_code == 1005


@pytest.mark.parametrize(
    ("code", "reason"),
    [
        (999, ""),
        (1004, ""),
        (1006, ""),
        (1015, ""),
        (2999, ""),
        (5000, ""),
        (1000, "é" * 62),
        (1005, "reason without code"),
    ],
)
async def test_invalid_close_code_or_reason(open_pair, code, reason):
    local, remote = await open_pair()
    with pytest.raises(ValueError, match="close"):
        await local.close(code, reason)
    assert local.ready_state is State.OPEN
    await local.send("still open")
    assert await remote.recv() == "still open"


async def test_close_is_idempotent(open_pair):
    local, remote = await open_pair()
    await asyncio.gather(local.close(), local.close())
    await local.close()
    await local.close(4000, "ignored")
    assert local.close_code == 1000
    await remote.wait_closed()


async def test_both_sides_close_at_once(open_pair):
    local, remote = await open_pair()
    await asyncio.gather(local.close(4000), remote.close(4001))
    assert local.ready_state is remote.ready_state is State.CLOSED
    assert local.close_code == 4001
    assert remote.close_code == 4000


async def test_async_with_closes(open_pair):
    local, _ = await open_pair()
    async with local as ws:
        assert ws is local
    assert local.close_code == 1000


async def test_send_after_close(open_pair):
    local, remote = await open_pair()
    await remote.close()
    await local.wait_closed()
    for call in (local.send("x"), local.send(["x"]), local.ping(), local.pong()):
        with pytest.raises(ConnectionClosedOK):
            await call
    with pytest.raises(ConnectionClosed):
        local.send_ping()


async def test_send_while_closing(open_raw):
    ws, peer = await open_raw()
    closing = asyncio.create_task(ws.close())
    await asyncio.sleep(0)
    assert ws.ready_state is State.CLOSING
    with pytest.raises(ConnectionClosed) as info:
        await ws.send("late")
    assert info.value.sent == Close(1000)
    assert info.value.rcvd is None
    assert (await peer.recv_close()).code == 1000
    peer.send_close(1000)
    await peer.aclose()
    await closing


async def test_peer_drops_tcp(open_raw):
    ws, peer = await open_raw()
    pinging = ws.send_ping(b"unanswered")
    peer.abort()
    with pytest.raises(ConnectionClosedError) as info:
        await ws.recv()
    assert info.value.rcvd is None
    assert info.value.sent is None
    assert info.value.code == 1006
    assert str(info.value) == "no close frame received or sent"
    assert ws.close_code == 1006
    assert ws.close_reason == ""
    assert ws.ready_state is State.CLOSED
    with pytest.raises(ConnectionClosedError):
        await pinging
    await ws.close()  # nothing to do


async def test_peer_drops_tcp_while_recv_waits(open_raw):
    ws, peer = await open_raw()
    receiving = asyncio.create_task(ws.recv())
    await asyncio.sleep(0)
    peer.abort()
    with pytest.raises(ConnectionClosedError):
        await receiving


async def test_close_timeout_when_peer_never_answers(open_raw):
    ws, peer = await open_raw(close_timeout=0.2)
    await ws.close(1000, "bye")
    assert ws.ready_state is State.CLOSED
    assert ws.close_code == 1006
    close = await peer.recv_close()
    assert (close.code, close.reason) == (1000, "bye")
    with pytest.raises(ConnectionClosedError) as info:
        await ws.recv()
    assert info.value.sent == Close(1000, "bye")
    assert info.value.rcvd is None
    assert str(info.value) == "sent 1000 (normal closure) bye; no close frame received"


async def test_peer_closes_then_keeps_tcp_open(open_raw, side):
    ws, peer = await open_raw(close_timeout=0.2)
    peer.send_close(1000)
    with pytest.raises(ConnectionClosedOK):
        await ws.recv()
    await ws.wait_closed()  # the server closes TCP at once; the client after close_timeout
    assert (await peer.recv_close()).code == 1000


async def test_peer_close_frame_with_error_code(open_raw):
    ws, peer = await open_raw()
    peer.send_close(1011, "boom")
    with pytest.raises(ConnectionClosedError) as info:
        await ws.recv()
    assert info.value.rcvd == Close(1011, "boom")
    assert info.value.sent == Close(1011)
    assert info.value.rcvd_then_sent is True
    assert str(info.value) == "received 1011 (internal error) boom; then sent 1011 (internal error)"
    assert (await peer.recv_close()).code == 1011


async def test_invalid_close_frame_from_peer(open_raw):
    ws, peer = await open_raw()
    peer.write(Opcode.CLOSE, b"\x03")
    with pytest.raises(ConnectionClosedError):
        await ws.recv()
    assert (await peer.recv_close()).code == 1002


async def test_abort(open_pair):
    local, remote = await open_pair()
    local.abort()
    with pytest.raises(ConnectionClosedError) as info:
        await remote.recv()
    assert info.value.code == 1006
    await local.wait_closed()
    assert local.close_code == 1006


async def test_messages_then_close_are_all_received(open_pair):
    local, remote = await open_pair()
    for i in range(100):
        await remote.send(str(i))
    # The close frame waits behind the messages: the peer reads them while it closes.
    closing = asyncio.create_task(remote.close())
    assert [message async for message in local] == [str(i) for i in range(100)]
    await closing
    assert remote.close_code == 1000


async def test_waiting_recv_raises_when_close_frame_arrives(open_raw):
    ws, peer = await open_raw()
    receiving = asyncio.create_task(ws.recv())
    await until(lambda: ws._waiter is not None)
    peer.send_close(4000, "done")
    with pytest.raises(ConnectionClosedError) as info:
        await receiving
    assert info.value.rcvd == Close(4000, "done")


async def test_close_without_close_timeout(open_pair):
    local, remote = await open_pair(close_timeout=None)
    await local.close()
    await remote.wait_closed()
    assert local.close_code == remote.close_code == 1000


async def test_send_right_after_abort(open_pair):
    local, _ = await open_pair()
    await local.send("first")
    await local.send("corked")  # may wait for the end of this loop iteration
    local.abort()
    with pytest.raises(ConnectionClosedError):
        await local.send("after abort")
    await local.wait_closed()


async def test_recv_cancelled_as_connection_drops(open_raw):
    ws, peer = await open_raw()
    waiting = asyncio.create_task(ws.recv())
    await until(lambda: ws._waiter is not None)
    peer.abort()
    await until(lambda: ws._waiter.done())
    waiting.cancel()
    with pytest.raises(asyncio.CancelledError):
        await waiting
    with pytest.raises(ConnectionClosedError):
        await ws.recv()
