"""Pipelined messages: their answers leave in one write per read, and a reader that keeps up
never makes the connection pause reading. Over real sockets; the transport's methods are
wrapped to count the calls (asyncio's own transports, whose methods can be wrapped)."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import pytest

import wsend
from wsend.protocol.frames import Opcode

from .helpers import RawPeer, frame

pytestmark = pytest.mark.timeout(30)

BATCH, ROUNDS = 50, 6


def count_calls(obj: Any, *names: str) -> list[int]:
    """Wrap the methods ``names`` of ``obj`` (on the instance) to count their calls."""
    calls = [0]
    for name in names:
        method = getattr(obj, name)

        def counted(*args: Any, _method: Callable[..., Any] = method) -> Any:
            calls[0] += 1
            return _method(*args)

        setattr(obj, name, counted)
    return calls


def start_echo(ws: wsend.Connection, api: str) -> asyncio.Task[None] | None:
    if api == "callbacks":
        ws.on_message = ws.send_nowait
        return None

    async def echo() -> None:
        async for message in ws:
            await ws.send(message)

    return asyncio.create_task(echo())


async def send_batches(peer: RawPeer) -> None:
    """Send ROUNDS batches of BATCH messages, each batch in one write; check every echo."""
    for r in range(ROUNDS):
        payloads = [(r * BATCH + i).to_bytes(4, "big") for i in range(BATCH)]
        peer.writer.write(b"".join(frame(Opcode.BINARY, p, mask=peer.mask) for p in payloads))
        for payload in payloads:
            opcode, fin, _, data = await peer.recv_frame()
            assert (opcode, fin, data) == (Opcode.BINARY, True, payload)


@pytest.mark.parametrize("api", ["coroutines", "callbacks"])
async def test_answers_to_a_batch_leave_in_one_write(open_raw, api):
    ws, peer = await open_raw(fast_transport=False)
    reads = count_calls(ws, "buffer_updated")
    writes = count_calls(ws.transport, "write", "writelines")
    task = start_echo(ws, api)
    await send_batches(peer)
    # A batch may arrive in several reads, but never costs more than one write per read
    # (answering each message at once would cost one per message; the first answer at once
    # and the rest later, two per read).
    assert 0 < writes[0] <= reads[0] < ROUNDS * BATCH
    if task is not None:
        task.cancel()


async def test_a_reader_that_keeps_up_never_pauses_reading(open_raw):
    # Each batch fills the queue (16) three times over, but the reader empties it in its
    # next turn, before the next read: pausing and resuming would be two wasted system calls.
    ws, peer = await open_raw(fast_transport=False, max_queue=16)
    pauses = count_calls(ws.transport, "pause_reading")
    task = start_echo(ws, "coroutines")
    await send_batches(peer)
    assert pauses[0] == 0
    assert task is not None
    task.cancel()


async def test_a_reader_that_falls_behind_still_pauses_reading(open_raw):
    ws, peer = await open_raw(fast_transport=False, max_queue=16)
    pauses = count_calls(ws.transport, "pause_reading")
    peer.writer.write(b"".join(frame(Opcode.BINARY, b"x", mask=peer.mask) for _ in range(BATCH)))
    # Nobody reads: after the turn it had, the queue is still full.
    for _ in range(10):
        await asyncio.sleep(0)
        if pauses[0]:
            break
    assert pauses[0] == 1
    assert [await ws.recv() for _ in range(BATCH)] == [b"x"] * BATCH
    assert not ws._paused_reading  # resumed once the queue was read


async def test_a_callback_that_fails_mid_batch_still_sends_the_answers_before(open_raw):
    ws, peer = await open_raw(fast_transport=False)

    def on_message(message: str | bytes) -> None:
        if message == b"boom":
            raise RuntimeError("boom")
        ws.send_nowait(message)

    ws.on_message = on_message
    peer.writer.write(
        b"".join(frame(Opcode.BINARY, p, mask=peer.mask) for p in (b"1", b"2", b"boom", b"3"))
    )
    assert [(await peer.recv_frame())[3] for _ in range(2)] == [b"1", b"2"]
    assert (await peer.recv_close()).code == 1011
