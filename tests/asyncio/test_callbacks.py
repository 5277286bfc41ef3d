"""Receiving with ``on_message`` and answering with ``send_nowait()``, over real sockets."""

from __future__ import annotations

import asyncio
import io
import logging
import struct

import pytest

import wsend
from wsend import ConcurrencyError, ConnectionClosed, UsageError
from wsend.protocol.frames import Opcode

from .helpers import frame, tiny_window_client, until, ws_uri

pytestmark = pytest.mark.timeout(30)


async def test_messages_go_to_the_callback_in_order(open_pair):
    local, remote = await open_pair()
    got: list[str | bytes] = []
    local.on_message = got.append
    assert local.on_message == got.append
    await remote.send("héllo")
    await remote.send(b"\x00\xff")
    await remote.send(["frag", "mented"])  # one message in two frames: handed over whole
    await remote.send([b"a" * 70_000, b"b"])
    await remote.send("")
    await until(lambda: len(got) == 5)
    assert got == ["héllo", b"\x00\xff", "fragmented", b"a" * 70_000 + b"b", ""]


async def test_an_echo_with_send_nowait(open_pair):
    local, remote = await open_pair()
    local.on_message = local.send_nowait
    messages = [f"message {i}" for i in range(200)] + [bytes(range(256)) * 300]
    for message in messages:
        await remote.send(message)
    assert [await remote.recv() for _ in messages] == messages


async def test_messages_received_before_are_handed_over_when_it_is_set(open_pair):
    local, remote = await open_pair()
    for i in range(3):
        await remote.send(f"early {i}")
    await remote.ping()  # the pong comes after the messages were read
    await until(lambda: local._queue is not None and len(local._queue) == 3)
    got: list[str | bytes] = []
    local.on_message = got.append  # at once, in order
    assert got == ["early 0", "early 1", "early 2"]
    await remote.send("late")
    await until(lambda: len(got) == 4)
    assert got[3] == "late"


async def test_recv_refuses_while_it_is_set_and_works_again_after(open_pair):
    local, remote = await open_pair()
    got: list[str | bytes] = []
    local.on_message = got.append
    with pytest.raises(UsageError, match="on_message"):
        await local.recv()
    with pytest.raises(UsageError, match="on_message"):
        async for _ in local.recv_streaming():
            pass
    local.on_message = None
    await remote.send("to recv")
    assert await local.recv() == "to recv"
    assert got == []


async def test_setting_it_while_a_coroutine_receives_is_refused(open_pair):
    local, remote = await open_pair()
    receiving = asyncio.ensure_future(local.recv())
    await asyncio.sleep(0)
    with pytest.raises(ConcurrencyError):
        local.on_message = print
    await remote.send("still for recv")
    assert await receiving == "still for recv"


async def test_a_failing_callback_fails_the_connection_with_1011(open_pair, caplog):
    local, remote = await open_pair()
    calls: list[str | bytes] = []

    def callback(message: str | bytes) -> None:
        calls.append(message)
        raise RuntimeError("boom")

    local.on_message = callback
    with caplog.at_level(logging.ERROR, logger="wsend"):
        await remote.send("first")
        await remote.send("second")
        await local.wait_closed()
    assert calls == ["first"]  # what came after the failure was dropped
    assert "on_message callback failed" in caplog.text
    with pytest.raises(wsend.ConnectionClosedError):
        await remote.recv()
    assert remote.close_code == 1011


async def test_send_nowait_refuses_what_it_cannot_send_at_once(open_pair):
    local, remote = await open_pair()
    with pytest.raises(TypeError, match="send_nowait"):
        local.send_nowait({"not": "sendable"})  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="send_nowait"):
        local.send_nowait(io.BytesIO(b"a file needs send()"))  # type: ignore[arg-type]
    buf = bytearray(b"taken now")
    local.send_nowait(buf)
    buf[:] = b"XXXXXXXXX"
    local.send_nowait(memoryview(b"view"))
    assert await remote.recv() == b"taken now"
    assert await remote.recv() == b"view"

    release = asyncio.Event()

    async def chunks():
        yield "streamed "
        await release.wait()
        yield "message"

    streaming = asyncio.ensure_future(local.send(chunks()))
    await asyncio.sleep(0.01)
    with pytest.raises(UsageError, match="streamed"):
        local.send_nowait("between two frames")
    release.set()
    await streaming
    assert await remote.recv() == "streamed message"

    await local.close()
    with pytest.raises(ConnectionClosed):
        local.send_nowait("too late")


async def test_a_flood_of_tiny_messages_is_handed_over_whole_and_in_order(open_raw):
    ws, peer = await open_raw()
    got: list[str | bytes] = []
    ws.on_message = got.append
    count = 20_000  # many times the number parsed per read
    peer.writer.write(
        b"".join(frame(Opcode.BINARY, struct.pack("!I", i), mask=peer.mask) for i in range(count))
    )
    await peer.writer.drain()
    await until(lambda: len(got) == count, 0.01)
    assert [struct.unpack("!I", m)[0] for m in got] == list(range(count))


async def test_messages_before_a_protocol_error_are_handed_over_then_1002(open_raw):
    ws, peer = await open_raw()
    got: list[str | bytes] = []
    ws.on_message = got.append
    peer.send_text("one")
    peer.send_text("two")
    peer.write(Opcode.TEXT | 0x30, b"reserved bits")  # RSV2 and RSV3: a protocol error
    opcode, _, _, payload = await peer.recv_frame()
    assert opcode == Opcode.CLOSE
    assert struct.unpack("!H", payload[:2])[0] == 1002
    assert got == ["one", "two"]


async def test_reading_pauses_while_answers_cannot_be_written(start_server):
    """A peer that sends without reading can't make the callback's answers pile up."""
    accepted: asyncio.Future[wsend.ServerConnection] = asyncio.get_running_loop().create_future()

    async def handler(ws: wsend.ServerConnection) -> None:
        ws.on_message = ws.send_nowait
        accepted.set_result(ws)
        await ws.wait_closed()

    server = await start_server(handler, write_limit=64 * 1024, max_message_size=None)
    reader, writer = await tiny_window_client(server.port)
    ws = await accepted
    reader._transport.pause_reading()  # type: ignore[attr-defined]  # don't read the echoes
    message = frame(Opcode.BINARY, b"x" * 60_000, mask=True)
    total = 500  # 30 MB of echoes if the server kept reading
    sent = 0
    while sent < total:
        writer.write(message)
        sent += 1
        try:
            await asyncio.wait_for(writer.drain(), 0.5)
        except TimeoutError:
            break  # the server stopped reading
    assert sent < total
    assert ws.buffered_amount < 8 << 20
    assert ws.ready_state is wsend.State.OPEN
    # Reading again, the client gets every echo: nothing was lost.
    reader._transport.resume_reading()  # type: ignore[attr-defined]
    writer.write(message * (total - sent))
    for _ in range(total):
        assert await reader.readexactly(4) == bytes([0x82, 126]) + struct.pack("!H", 60_000)
        assert await reader.readexactly(60_000) == b"x" * 60_000
    writer.transport.abort()


async def test_the_client_side_too(start_server):
    async def handler(ws: wsend.ServerConnection) -> None:
        async for message in ws:
            await ws.send(message)

    server = await start_server(handler)
    async with wsend.connect(ws_uri(server)) as ws:
        done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        got: list[str | bytes] = []

        def callback(message: str | bytes) -> None:
            got.append(message)
            if len(got) < 100:
                ws.send_nowait(message)  # one in flight, a hundred round trips
            else:
                done.set_result(None)

        ws.on_message = callback
        ws.send_nowait("ping-pong")
        await done
        assert got == ["ping-pong"] * 100


async def test_a_flood_of_compressed_messages_reaches_the_callback_in_order(open_raw):
    # 32 MiB once inflated, a few dozen KB on the wire: parsed a budget at a time (one per
    # loop iteration), every message handed over in order.
    ws, peer = await open_raw(deflate=True)
    got: list[str | bytes] = []
    ws.on_message = got.append
    size, count = 16384, 2000
    for i in range(count):
        peer.send_compressed(i.to_bytes(4, "big") + bytes(size - 4))
    await until(lambda: len(got) == count)
    assert [m[:4] for m in got] == [i.to_bytes(4, "big") for i in range(count)]
    assert all(len(m) == size for m in got)
