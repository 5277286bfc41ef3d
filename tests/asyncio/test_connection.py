"""The connection's sending, receiving and browser-like state, tested once from each side.

Every test runs twice through the ``side`` fixture: with the client as the connection under
test (``local``) and the server as its peer (``remote``), then with the roles swapped.
"""

from __future__ import annotations

import asyncio
import io
import json
import os
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

import wsend
from wsend import ConcurrencyError, ConnectionClosedError, ConnectionClosedOK, State
from wsend.asyncio.connection import STREAM_CHUNK_SIZE
from wsend.protocol.frames import Opcode

from .helpers import frame, until

pytestmark = pytest.mark.timeout(20)


async def fragments(ws: wsend.Connection) -> list[str | bytes]:
    return [fragment async for fragment in ws.recv_streaming()]


# -- sending every kind of message -----------------------------------------------------------


@pytest.mark.parametrize(
    ("message", "expected"),
    [
        ("héllo", "héllo"),
        ("", ""),
        (b"\x00\xff", b"\x00\xff"),
        (bytearray(b"array"), b"array"),
        (memoryview(b"view"), b"view"),
        (memoryview(b"xxslicexx")[2:7], b"slice"),
    ],
    ids=["str", "empty-str", "bytes", "bytearray", "memoryview", "memoryview-slice"],
)
async def test_send_single_frame_messages(open_pair, message, expected):
    local, remote = await open_pair()
    await local.send(message)
    received = await remote.recv()
    assert received == expected
    assert type(received) is type(expected)


async def test_an_answer_is_written_at_once_and_a_burst_in_one_write(open_pair):
    """The first send after a read is written at once, with nothing left for the event loop
    to do (one message in flight costs no extra loop iteration); the sends that follow it
    before the next read are corked and written together at the end of the iteration."""
    local, remote = await open_pair()
    for round_trip in range(3):
        await remote.send(f"ping {round_trip}")
        assert await local.recv() == f"ping {round_trip}"
        await local.send(f"pong {round_trip}")
        assert not local._cork_scheduled
        assert not local._corked
        assert await remote.recv() == f"pong {round_trip}"
    await local.send("first")  # a second write since the last read: more may follow
    burst = [f"burst {i}" for i in range(100)]
    for message in burst:
        await local.send(message)
    assert local._cork_scheduled
    assert len(local._corked) == len(burst) + 1
    assert [await remote.recv() for _ in range(len(burst) + 1)] == ["first", *burst]
    assert not local._corked


async def test_send_binary_file_like_object_streams_frames(open_pair):
    local, remote = await open_pair()
    data = os.urandom(3 * STREAM_CHUNK_SIZE + 1000)
    await local.send(io.BytesIO(data))
    parts = await fragments(remote)
    assert b"".join(parts) == data  # type: ignore[arg-type]
    assert len(parts) == 5  # four 64 KiB reads plus the closing empty frame


async def test_send_real_file(open_pair, tmp_path: Path):
    local, remote = await open_pair()
    data = os.urandom(150_000)
    path = tmp_path / "data.bin"
    path.write_bytes(data)
    with path.open("rb") as file:
        await local.send(file)
    parts = await fragments(remote)
    assert len(parts) > 2
    assert all(isinstance(part, bytes) for part in parts)
    assert b"".join(parts) == data  # type: ignore[arg-type]


async def test_send_text_file_is_refused(open_pair, tmp_path: Path):
    local, remote = await open_pair()
    path = tmp_path / "data.txt"
    path.write_text("text")
    with path.open() as file, pytest.raises(TypeError, match="binary mode"):
        await local.send(file)
    await local.send("still open")
    assert await remote.recv() == "still open"


class AsyncFile:
    """An async binary file-like object."""

    def __init__(self, data: bytes) -> None:
        self.file = io.BytesIO(data)
        self.sizes: list[int] = []

    async def read(self, n: int) -> bytes:
        self.sizes.append(n)
        await asyncio.sleep(0)
        return self.file.read(n)


async def test_send_async_file_like_object(open_pair):
    local, remote = await open_pair()
    data = os.urandom(100_000)
    source = AsyncFile(data)
    await local.send(source)
    assert await remote.recv() == data
    assert source.sizes == [STREAM_CHUNK_SIZE] * 3


async def test_send_iterable_of_str(open_pair):
    local, remote = await open_pair()
    await local.send(iter(["frag", "men", "ted"]))
    assert await fragments(remote) == ["frag", "men", "ted", ""]
    await local.send(["a", "b"])
    assert await remote.recv() == "ab"


async def test_send_iterable_of_bytes_like(open_pair):
    local, remote = await open_pair()
    await local.send([b"one", bytearray(b"two"), memoryview(b"three")])
    assert await remote.recv() == b"onetwothree"


async def aiterate(items: list[str | bytes]) -> AsyncIterator[str | bytes]:
    for item in items:
        await asyncio.sleep(0)
        yield item


@pytest.mark.parametrize("items", [["as", "ync"], [b"as", b"ync"]], ids=["str", "bytes"])
async def test_send_async_iterable(open_pair, items):
    local, remote = await open_pair()
    await local.send(aiterate(items))
    parts = await fragments(remote)
    assert parts == [*items, items[0][:0]]


@pytest.mark.parametrize("empty", [[], (), iter([]), aiterate([])], ids=str)
async def test_send_empty_iterable_sends_empty_binary_message(open_pair, empty):
    local, remote = await open_pair()
    await local.send(empty)
    assert await remote.recv() == b""


async def test_send_mixed_iterable_fails_connection(open_pair):
    local, remote = await open_pair()
    with pytest.raises(TypeError, match="mixes str and bytes"):
        await local.send(["text", b"bytes"])
    with pytest.raises(ConnectionClosedError) as info:
        await remote.recv()
    assert info.value.rcvd is not None
    assert info.value.rcvd.code == 1011
    await local.wait_closed()
    with pytest.raises(ConnectionClosedError) as info:
        await local.send("too late")
    assert info.value.sent is not None
    assert info.value.sent.code == 1011


async def test_send_iterable_of_wrong_items_before_first_frame(open_pair):
    local, remote = await open_pair()
    with pytest.raises(TypeError, match="cannot send int"):
        await local.send([1, 2])
    await local.send("usable")
    assert await remote.recv() == "usable"


@pytest.mark.parametrize("message", [{"a": 1}, 42, None, object()], ids=str)
async def test_send_unsupported_type_keeps_connection_usable(open_pair, message):
    local, remote = await open_pair()
    with pytest.raises(TypeError, match="cannot send"):
        await local.send(message)
    await local.send("usable")
    assert await remote.recv() == "usable"
    assert local.ready_state is State.OPEN


async def test_iterable_raising_midway_fails_connection(open_pair):
    local, remote = await open_pair()

    def broken() -> Iterator[str]:
        yield "first"
        raise RuntimeError("source failed")

    with pytest.raises(RuntimeError, match="source failed"):
        await local.send(broken())
    with pytest.raises(ConnectionClosedError) as info:
        await remote.recv()
    assert info.value.code == 1011


async def test_close_while_streaming_fails_with_1011(open_pair):
    local, remote = await open_pair()
    gate = asyncio.Event()

    async def slow() -> AsyncIterator[bytes]:
        yield b"start"
        await gate.wait()
        yield b"never"

    sending = asyncio.create_task(local.send(slow()))
    await until(lambda: await_started(remote), 0.01)
    await local.close()
    gate.set()
    with pytest.raises(wsend.ConnectionClosed):
        await sending
    with pytest.raises(ConnectionClosedError) as info:
        await remote.recv()
    assert info.value.code == 1011


def await_started(remote: wsend.Connection) -> bool:
    return bool(remote._queue)


async def test_sends_wait_for_a_stream_in_progress(open_pair):
    local, remote = await open_pair()
    gate = asyncio.Event()

    async def gated() -> AsyncIterator[str]:
        yield "stream-"
        await gate.wait()
        yield "end"

    streaming = asyncio.create_task(local.send(gated()))
    await asyncio.sleep(0)
    later = [
        asyncio.create_task(local.send("after")),
        asyncio.create_task(local.send_json({"after": True})),
    ]
    await asyncio.sleep(0.05)
    assert not any(task.done() for task in later)
    gate.set()
    await asyncio.gather(streaming, *later)
    assert await remote.recv() == "stream-end"
    assert await remote.recv() == "after"
    assert await remote.recv_json() == {"after": True}


async def test_send_json_and_recv_json(open_pair):
    local, remote = await open_pair()
    await local.send_json({"k": [1, 2.5, None, "é"]})
    assert await remote.recv_json() == {"k": [1, 2.5, None, "é"]}
    await local.send_json([1], dumps=lambda obj: json.dumps(obj).encode())
    assert await remote.recv() == "[1]"
    await local.send(b'{"binary": true}')
    assert await remote.recv_json() == {"binary": True}
    await local.send("not json")
    with pytest.raises(json.JSONDecodeError):
        await remote.recv_json()
    await local.send_json({"x": 1}, dumps=lambda obj: "custom:" + json.dumps(obj))
    assert await remote.recv_json(loads=lambda text: text.split(":", 1)) == ["custom", '{"x": 1}']


async def test_send_json_after_close(open_pair):
    local, _ = await open_pair()
    await local.close()
    with pytest.raises(ConnectionClosedOK):
        await local.send_json({})


@pytest.mark.parametrize("compress", [True, False, None])
async def test_compress_per_message(open_raw, compress):
    ws, peer = await open_raw(deflate=True)
    assert ws.extensions == ["permessage-deflate"]
    await ws.send("small", compress=compress)
    await ws.send("x" * 10_000, compress=compress)
    small = await peer.recv_frame()
    large = await peer.recv_frame()
    assert small[3] == b"small"
    assert large[3] == b"x" * 10_000
    assert small[2] is bool(compress)
    assert large[2] is (compress is not False)


async def test_compressed_messages_round_trip(open_pair):
    local, remote = await open_pair()
    assert local.extensions == remote.extensions == ["permessage-deflate"]
    for size in (0, 10, 100, 100_000):
        await local.send("é" * size)
        assert await remote.recv() == "é" * size


async def test_no_compression(open_pair):
    local, remote = await open_pair(server={"compression": None})
    assert local.extensions == remote.extensions == []
    await local.send("x" * 1000, compress=True)
    assert await remote.recv() == "x" * 1000


# -- receiving -------------------------------------------------------------------------------


async def test_async_for_ends_on_normal_close(open_pair):
    local, remote = await open_pair()
    for message in ("a", b"b", "c"):
        await remote.send(message)
    await remote.close()
    assert [message async for message in local] == ["a", b"b", "c"]


async def test_async_for_raises_on_error_close(open_pair):
    local, remote = await open_pair()
    await remote.send("last")
    await remote.close(4001, "app error")
    received = []

    async def collect() -> None:
        async for message in local:
            received.append(message)

    with pytest.raises(ConnectionClosedError) as info:
        await collect()
    assert received == ["last"]
    assert (info.value.code, info.value.reason) == (4001, "app error")


async def test_recv_streaming_large_fragmented_message(open_pair):
    local, remote = await open_pair(max_message_size=None)
    chunks = [os.urandom(50_000) for _ in range(40)]
    await remote.send(chunks)
    parts = await fragments(local)
    assert len(parts) == 41
    assert b"".join(parts) == b"".join(chunks)  # type: ignore[arg-type]


async def test_recv_streaming_single_frame(open_pair):
    local, remote = await open_pair()
    await remote.send("whole")
    assert await fragments(local) == ["whole"]


async def test_concurrent_recv_raises_concurrency_error(open_pair):
    local, remote = await open_pair()
    first = asyncio.create_task(local.recv())
    await asyncio.sleep(0)
    with pytest.raises(ConcurrencyError):
        await local.recv()
    with pytest.raises(ConcurrencyError):
        await anext(local.recv_streaming())
    await remote.send("for the first")
    assert await first == "for the first"


async def test_cancelled_recv_loses_no_message(open_pair):
    local, remote = await open_pair()
    waiting = asyncio.create_task(local.recv())
    await asyncio.sleep(0)
    waiting.cancel()
    with pytest.raises(asyncio.CancelledError):
        await waiting
    await remote.send("kept")
    assert await local.recv() == "kept"


async def test_recv_resumes_in_the_read_that_delivers(open_raw):
    """A reader waiting in recv() gets the message in the read callback's iteration: by the
    time anything else runs, it has resumed and waits again."""
    ws, peer = await open_raw()
    got: list[str | bytes] = []

    async def reader() -> None:
        while True:
            got.append(await ws.recv())

    task = asyncio.create_task(reader())
    await until(lambda: ws._waiter is not None)
    first = ws._waiter
    peer.send_text("one")
    peer.send_text("two")
    await until(lambda: len(got) == 2)
    assert ws._waiter is not first
    assert not ws._waiter.done()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task


async def test_recv_cancelled_after_message_arrived_requeues_it(open_raw):
    """A message delivered while a task runs wakes its reader at the next iteration: a reader
    cancelled before it resumes puts the message back."""
    ws, _ = await open_raw()
    waiting = asyncio.create_task(ws.recv())
    await until(lambda: ws._waiter is not None)
    data = frame(Opcode.TEXT, b"raced", mask=not ws.is_client)
    view = ws.get_buffer(-1)
    view[: len(data)] = data
    ws.buffer_updated(len(data))  # a read delivered from within this task
    assert ws._waiter.done()
    waiting.cancel()  # the message reached the waiter, but the task hasn't resumed yet
    with pytest.raises(asyncio.CancelledError):
        await waiting
    assert await ws.recv() == "raced"


async def test_recv_cancelled_mid_message_then_streaming(open_raw):
    ws, peer = await open_raw()
    peer.write(Opcode.TEXT, b"first,", fin=False)
    receiving = asyncio.create_task(ws.recv())
    await until(lambda: ws._partial, 0.01)
    receiving.cancel()
    with pytest.raises(asyncio.CancelledError):
        await receiving
    peer.write(Opcode.CONT, b"second")
    assert await fragments(ws) == ["first,", "second"]


async def test_messages_before_protocol_error_are_delivered(open_raw):
    ws, peer = await open_raw()
    peer.send_text("one")
    peer.send_text("two")
    peer.write(0x3, b"reserved opcode")
    assert await ws.recv() == "one"
    await ws.send("answer to one")
    assert await ws.recv() == "two"
    with pytest.raises(ConnectionClosedError) as info:
        await ws.recv()
    assert isinstance(info.value.__cause__, wsend.ProtocolError)
    assert info.value.sent is not None
    assert info.value.sent.code == 1002
    assert (await peer.recv_frame())[3] == b"answer to one"
    assert (await peer.recv_close()).code == 1002


async def test_protocol_error_fails_after_close_timeout_when_unread(open_raw):
    ws, peer = await open_raw(close_timeout=0.1)
    peer.send_text("unread")
    peer.write(0x3)
    assert (await peer.recv_close()).code == 1002
    assert await ws.recv() == "unread"
    await peer.aclose()
    with pytest.raises(ConnectionClosedError):
        await ws.recv()


async def test_invalid_utf8_fails_with_1007(open_raw):
    ws, peer = await open_raw()
    peer.write(Opcode.TEXT, b"\xff\xfe")
    with pytest.raises(ConnectionClosedError) as info:
        await ws.recv()
    assert isinstance(info.value.__cause__, wsend.InvalidPayload)
    assert (await peer.recv_close()).code == 1007


async def test_received_ping_is_answered(open_raw):
    ws, peer = await open_raw()
    peer.write(Opcode.PING, b"are you there")
    opcode, _, _, payload = await peer.recv_frame()
    assert (opcode, payload) == (Opcode.PONG, b"are you there")
    assert ws.ready_state is State.OPEN


# -- browser-like state ----------------------------------------------------------------------


async def test_ready_state_through_closing(open_pair):
    local, remote = await open_pair()
    assert local.ready_state is State.OPEN
    closing = asyncio.create_task(local.close())
    await asyncio.sleep(0)
    assert local.ready_state is State.CLOSING
    assert local.close_code is None
    assert local.close_reason is None
    await closing
    assert local.ready_state is State.CLOSED
    assert local.close_code == 1000
    assert local.close_reason == ""
    await remote.wait_closed()
    assert remote.ready_state is State.CLOSED


async def test_protocol_and_extensions(open_pair):
    local, remote = await open_pair(
        server={"subprotocols": ["chat.v2", "chat.v1"]},
        client={"subprotocols": ["chat.v1", "chat.v2"]},
    )
    assert local.protocol == remote.protocol == "chat.v2"
    assert local.extensions == ["permessage-deflate"]


async def test_latency_after_ping(open_pair):
    local, _ = await open_pair()
    assert local.latency == 0.0
    rtt = await local.ping()
    assert isinstance(rtt, float)
    assert rtt >= 0.0
    assert local.latency == rtt


async def test_addresses(open_pair):
    local, remote = await open_pair()
    assert local.remote_address == remote.local_address
    assert local.local_address == remote.remote_address
    assert local.remote_address[0] == "127.0.0.1"


async def test_request_and_response(open_pair, side):
    local, remote = await open_pair()
    for ws in (local, remote):
        assert ws.request is not None
        assert ws.request.path == "/path"
        assert ws.request.query == {"x": ["1"]}
        assert ws.response is not None
        assert ws.response.status == 101
    assert local.is_client is (side == "client")
    assert repr(local).startswith(f"<wsend {side} connection OPEN")


async def test_user_is_none_by_default(open_pair):
    local, remote = await open_pair()
    assert local.user is None
    assert remote.user is None
