"""Peers and callers that push the edges: odd buffers, floods, concurrent streams, bad HTTP.

Each test here pins a behaviour that a careless implementation gets wrong: a length counted in
items instead of bytes, a reused buffer sent twice, pongs or fragments piling up in memory, a
lock taken twice, a response destroyed by a reset.
"""

from __future__ import annotations

import array
import asyncio
import errno
import os
import socket
import struct
import tracemalloc
from typing import Any

import pytest

import wsend
from wsend.protocol.connection import State
from wsend.protocol.frames import Close, Opcode

from .helpers import (
    frame,
    parse_head,
    read_head,
    tiny_window_client,
    until,
    upgrade_request,
    ws_uri,
)

# -- what send() takes -------------------------------------------------------------------------


async def test_memoryview_of_other_formats_is_sent_as_its_bytes(open_raw):
    ws, peer = await open_raw()
    ints = array.array("i", range(10))
    await ws.send(memoryview(ints))
    opcode, fin, _, payload = await peer.recv_frame()
    assert (opcode, fin, payload) == (Opcode.BINARY, True, ints.tobytes())
    grid = memoryview(bytes(range(24))).cast("B", (4, 6))
    await ws.send(grid)
    assert (await peer.recv_frame())[3] == bytes(range(24))


async def test_non_contiguous_memoryview_is_sent_as_its_bytes(open_raw):
    ws, peer = await open_raw()
    data = bytes(range(200))
    await ws.send(memoryview(data)[::2])
    assert (await peer.recv_frame())[3] == data[::2]


async def test_a_reused_bytearray_is_sent_as_it_was_at_send_time(open_raw):
    """send() takes the data at once, as the browser does: reusing the buffer is safe."""
    ws, peer = await open_raw()
    buf = bytearray(b"A" * 20_000)
    await ws.send(b"hello")  # the next sends are corked until the end of this iteration
    await ws.send(buf)
    buf[:] = b"B" * 20_000
    await ws.send(buf)
    assert (await peer.recv_frame())[3] == b"hello"
    assert (await peer.recv_frame())[3] == b"A" * 20_000
    assert (await peer.recv_frame())[3] == b"B" * 20_000


async def test_a_reader_reusing_its_buffer_streams_the_right_bytes(open_pair):
    class Reusing:
        """A file-like object whose read() returns the same bytearray, refilled."""

        def __init__(self) -> None:
            self.buf = bytearray(70_000)
            self.left = 3

        def read(self, size: int) -> bytearray:
            if not self.left:
                return bytearray()
            self.left -= 1
            self.buf[:] = bytes([0x41 + self.left]) * 70_000
            return self.buf

    local, remote = await open_pair()
    await local.send(Reusing())
    assert await remote.recv() == b"C" * 70_000 + b"B" * 70_000 + b"A" * 70_000


async def test_concurrent_streamed_sends_are_serialized(open_pair):
    local, remote = await open_pair()

    async def chunks(tag: str):
        for i in range(3):
            yield f"{tag}{i}"
            await asyncio.sleep(0)

    await asyncio.wait_for(
        asyncio.gather(local.send(chunks("a")), local.send(chunks("b")), local.send("plain")),
        timeout=5,
    )
    received = {await remote.recv() for _ in range(3)}
    assert received == {"a0a1a2", "b0b1b2", "plain"}


# -- floods ------------------------------------------------------------------------------------


async def test_ping_flood_from_a_peer_that_never_reads_keeps_memory_bounded(start_server):
    accepted: asyncio.Future[wsend.ServerConnection] = asyncio.get_running_loop().create_future()

    async def handler(ws: wsend.ServerConnection) -> None:
        accepted.set_result(ws)
        await ws.wait_closed()

    server = await start_server(handler, ping_interval=None)
    reader, writer = await tiny_window_client(server.port)
    ws = await accepted
    reader._transport.pause_reading()  # type: ignore[attr-defined]  # never read again
    ping = bytes([0x89, 0x80 | 125]) + b"\x00" * 4 + b"p" * 125  # masked with a zero key
    for _ in range(40):  # 40 x 1,000 pings: 5.3 MB of pongs if each were answered
        writer.write(ping * 1000)
        await writer.drain()
    await until(lambda: ws.transport is not None and ws.transport.get_write_buffer_size() > 0)
    await asyncio.sleep(0.1)
    assert ws.buffered_amount < 1 << 20
    assert ws.ready_state is wsend.State.OPEN
    writer.transport.abort()


async def test_many_tiny_fragments_cost_no_more_than_the_message(open_raw):
    ws, peer = await open_raw(max_message_size=1 << 20)
    count = 100_000
    one = frame(Opcode.CONT, b"xy", fin=False, mask=peer.mask)  # the same bytes every time
    tracemalloc.start()
    try:
        receiving = asyncio.ensure_future(ws.recv())
        peer.write(Opcode.BINARY, b"xy", fin=False)
        for _ in range(count // 10_000):
            peer.writer.write(one * 10_000)
            await peer.writer.drain()
        peer.write(Opcode.CONT, b"", fin=True)
        message = await asyncio.wait_for(receiving, timeout=30)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert message == b"xy" * (count + 1)
    # An entry and a bytes object per fragment would take 4.3 MB and more.
    assert peak < 3 << 20


async def test_empty_fragments_are_accepted_and_join_to_the_message(open_raw):
    ws, peer = await open_raw()
    peer.write(Opcode.TEXT, "é".encode()[:1], fin=False)
    for _ in range(1000):
        peer.write(Opcode.CONT, b"", fin=False)
    peer.write(Opcode.CONT, "é".encode()[1:] + b"!", fin=True)
    assert await ws.recv() == "é!"


# -- the server's handler and its HTTP answers ------------------------------------------------


async def test_another_connections_closure_escaping_a_handler_closes_with_1011(
    start_server, caplog
):
    async def backend(ws: wsend.ServerConnection) -> None:
        await ws.close()

    backend_server = await start_server(backend)

    async def proxy(ws: wsend.ServerConnection) -> None:
        async with wsend.connect(ws_uri(backend_server)) as upstream:
            await upstream.recv()  # raises ConnectionClosedOK: the backend closed

    server = await start_server(proxy)
    async with wsend.connect(ws_uri(server)) as client:
        with pytest.raises(wsend.ConnectionClosedError):
            await asyncio.wait_for(client.recv(), timeout=5)
        assert client.close_code == 1011
    assert "connection handler failed" in caplog.text


async def test_an_oversized_request_gets_its_answer_not_a_reset(start_server):
    server = await start_server()
    reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
    huge = b"GET / HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * (1 << 20) + b"\r\n\r\n"
    writer.write(huge)
    head = await asyncio.wait_for(read_head(reader), timeout=10)
    assert head.startswith(b"HTTP/1.1 431 ")
    _, headers = parse_head(head)
    # The whole body, then a clean end of stream (a reset would raise here).
    body = await asyncio.wait_for(reader.read(), timeout=10)
    assert len(body) == int(headers["content-length"])
    writer.close()


async def test_upgrade_header_split_over_two_fields(start_server):
    server = await start_server()
    request = upgrade_request().replace(b"Upgrade: websocket\r\n", b"Upgrade: h2c\r\n")
    request = request.replace(b"\r\n\r\n", b"\r\nUpgrade: websocket\r\n\r\n")
    reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
    writer.write(request)
    assert (await read_head(reader)).startswith(b"HTTP/1.1 101 ")
    writer.close()


@pytest.mark.parametrize("path", ["/healthz", "/"])
async def test_head_requests_get_no_body(start_server, path):
    server = await start_server()
    reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
    writer.write(f"HEAD {path} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
    head = await read_head(reader)
    assert b"\r\ncontent-length: " in head.lower()
    assert await asyncio.wait_for(reader.read(), timeout=5) == b""
    writer.close()


async def test_redirect_to_an_invalid_location_is_a_handshake_error():
    async def redirect(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_head(reader)
        writer.write(b"HTTP/1.1 302 Found\r\nLocation: ws://[::1\r\nContent-Length: 0\r\n\r\n")
        await writer.drain()

    server = await asyncio.start_server(redirect, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        with pytest.raises(wsend.InvalidHandshake):
            await wsend.connect(f"ws://127.0.0.1:{port}/")
    finally:
        server.close()


# -- a frame over the limit, then a trickle ------------------------------------------------------


async def test_oversized_frame_then_trickle_gets_1009_and_a_clean_end(open_raw):
    """A peer announces a 64 MiB binary frame, then trickles its payload without reading: with
    the default limits, the close frame (1009) is sent as soon as the header is read, and stays
    readable by the peer after it (the payload is skipped by its length while waiting for the
    peer's close frame, so no reset destroys ours)."""
    ws, peer = await open_raw()
    mask = os.urandom(4) if peer.mask else b""
    header = bytes([0x82, (0x80 if peer.mask else 0) | 127]) + struct.pack("!Q", 64 << 20)
    peer.writer.write(header + mask)
    await until(lambda: ws.ready_state is not State.OPEN)
    for _ in range(100):  # b"x" is 0x78: a close frame's first byte if read as a header
        peer.writer.write(b"x" * 10)
        await peer.writer.drain()
        await asyncio.sleep(0.01)
    assert ws.transport is not None
    assert not ws.transport.is_closing()  # lingering, not reset
    opcode, _, _, payload = await asyncio.wait_for(peer.recv_frame(), 10)
    assert opcode == Opcode.CLOSE
    assert Close.parse(payload) == Close(1009, "")
    assert await asyncio.wait_for(peer.reader.read(), 10) == b""  # a clean FIN, no reset
    await peer.aclose()
    with pytest.raises(wsend.ConnectionClosedError) as info:
        await ws.recv()
    assert info.value.sent == Close(1009, "")


async def test_peer_that_resets_right_after_a_bad_frame(open_raw):
    """A bad frame followed at once by a reset: the connection closes, nothing is raised into
    the event loop, whichever of the two the connection sees first."""
    loop = asyncio.get_running_loop()
    errors: list[dict[str, Any]] = []
    loop.set_exception_handler(lambda _, context: errors.append(context))
    try:
        for _ in range(20):
            ws, peer = await open_raw()
            peer.write(0x0B)  # a reserved opcode: 1002
            sock = peer.writer.get_extra_info("socket")
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            peer.writer.transport.abort()
            await asyncio.wait_for(ws.wait_closed(), 10)
            assert ws.close_code in (1002, 1006)
    finally:
        loop.set_exception_handler(None)
    assert errors == []


async def test_shutting_down_writing_on_a_socket_already_gone(open_raw):
    """Failing the connection shuts writing down first (so that the close frame isn't lost to
    a reset); when the socket is already gone (ENOTCONN), it is closed instead."""
    ws, peer = await open_raw(fast_transport=False)
    transport = ws.transport
    assert transport is not None

    def write_eof() -> None:
        raise OSError(errno.ENOTCONN, "Transport endpoint is not connected")

    transport.write_eof = write_eof  # type: ignore[method-assign]
    peer.write(0x0B)  # a reserved opcode: 1002
    await asyncio.wait_for(ws.wait_closed(), 10)
    assert transport.is_closing()
    with pytest.raises(wsend.ConnectionClosedError) as info:
        await ws.recv()
    assert info.value.sent == Close(1002, "")
    await peer.aclose()
