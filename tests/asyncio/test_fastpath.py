"""The connection's compiled hot paths and their pure-Python twins (wsend.asyncio.fastpath).

The Waiter twins are tested side by side. The connection cores are tested through real
connections: the suite runs once with the compiled core and once with the twin
(``WSEND_NO_SPEEDUPS=1``, see scripts/test), and here what a connection delivers for a random
stream of frames, cut into random reads, is checked against the sans-I/O core fed the same
bytes: the fast path must be invisible.
"""

from __future__ import annotations

import asyncio
import contextvars
import os
import struct
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import wsend
from wsend.asyncio import fastpath
from wsend.asyncio.connection import Connection
from wsend.protocol.connection import _BIG_FRAME, Data, Side
from wsend.protocol.connection import Connection as Protocol
from wsend.protocol.frames import Close, Opcode, close_code_for, serialize_frame_py

from .helpers import frame, until

try:
    from wsend.asyncio import _fastpath  # type: ignore[attr-defined]
except ImportError:  # pragma: no cover - depends on the build
    _fastpath = None

WAITERS: list[Any] = [fastpath.WaiterPy]
if _fastpath is not None:
    WAITERS.append(_fastpath.Waiter)


def test_the_twins_are_chosen_as_the_build_and_environment_say() -> None:
    if os.environ.get("WSEND_NO_SPEEDUPS") or _fastpath is None:
        assert fastpath.ConnectionCore is fastpath.ConnectionCorePy
        assert fastpath.Waiter is fastpath.WaiterPy
        assert not fastpath.SPEEDUPS
    else:
        assert fastpath.ConnectionCore is _fastpath.ConnectionCore
        assert fastpath.Waiter is _fastpath.Waiter
        assert fastpath.SPEEDUPS
    assert issubclass(Connection, fastpath.ConnectionCore)


@pytest.mark.skipif(_fastpath is None, reason="the extension is not built")
def test_the_compiled_constants_match_the_twin() -> None:
    assert _fastpath.RECV_BUFFER_SIZE == fastpath.RECV_BUFFER_SIZE
    assert _fastpath.JOIN_LIMIT == fastpath.JOIN_LIMIT
    # The header read alone after a large frame: the sans-I/O core's size, masked or not.
    assert Protocol(Side.CLIENT).large_header_size == _fastpath.LARGE_HEADER
    assert Protocol(Side.SERVER).large_header_size == _fastpath.LARGE_HEADER + 4
    assert set(fastpath.ConnectionCorePy.__slots__) <= set(dir(_fastpath.ConnectionCore))


def test_speedups_are_built_when_required() -> None:
    """CI builds the extension: WSEND_REQUIRE_SPEEDUPS=1 makes its absence a failure."""
    if os.environ.get("WSEND_REQUIRE_SPEEDUPS") and not os.environ.get("WSEND_NO_SPEEDUPS"):
        assert fastpath.SPEEDUPS


# -- Ready -------------------------------------------------------------------------------------

READIES: list[Any] = [fastpath.ReadyPy]
if _fastpath is not None:
    READIES.append(_fastpath.Ready)


@pytest.mark.parametrize("ready_type", READIES)
async def test_ready_awaits_to_its_value_at_once(ready_type) -> None:
    ready = ready_type((1, "two"))
    assert ready.value == (1, "two")
    assert await ready == (1, "two")  # a tuple stays one value
    assert await ready == (1, "two")  # and again
    steps = ready.__await__()
    with pytest.raises(StopIteration) as stop:
        next(steps)  # never yields
    assert stop.value.value == (1, "two")
    assert await ready_type(value=None) is None


async def test_async_for_takes_waiting_messages_without_waiting(open_pair):
    local, remote = await open_pair()
    for i in range(3):
        await remote.send(f"{i}")
    await until(lambda: local._queue is not None and len(local._queue) == 3)
    got = []
    async for message in local:
        got.append(message)
        if len(got) == 3:
            break
    assert got == ["0", "1", "2"]
    await remote.close()
    with pytest.raises(StopAsyncIteration):
        await local.__anext__()


# -- Waiter ------------------------------------------------------------------------------------


@pytest.mark.parametrize("waiter_type", WAITERS)
async def test_wake_from_a_callback_resumes_the_task_at_once(waiter_type) -> None:
    loop = asyncio.get_running_loop()
    waiter = waiter_type(loop)
    steps: list[str] = []

    async def reader() -> Any:
        steps.append("waiting")
        result = await waiter
        steps.append(f"got {result}")
        return result

    task = loop.create_task(reader())
    await asyncio.sleep(0)
    assert steps == ["waiting"]
    assert not waiter.done()

    def deliver() -> None:
        waiter.wake("message")
        steps.append("after wake")  # the reader ran inside wake()

    loop.call_soon(deliver)
    assert await task == "message"
    assert steps == ["waiting", "got message", "after wake"]
    assert waiter.done()
    assert not waiter.cancelled()
    assert waiter.result() == "message"
    assert waiter.get_loop() is loop
    assert await waiter == "message"  # awaiting a done waiter returns its result


@pytest.mark.parametrize("waiter_type", WAITERS)
@pytest.mark.parametrize("how", ["wake", "set_result"])
async def test_from_a_task_or_by_set_result_the_wakeup_is_scheduled(waiter_type, how) -> None:
    loop = asyncio.get_running_loop()
    waiter = waiter_type(loop)
    steps: list[str] = []

    async def reader() -> None:
        steps.append(await waiter)

    task = loop.create_task(reader())
    await asyncio.sleep(0)
    getattr(waiter, how)("message")  # from this task: the reader can't run inside it
    assert steps == []
    await task
    assert steps == ["message"]


@pytest.mark.parametrize("waiter_type", WAITERS)
async def test_cancelling_the_waiting_task_cancels_the_waiter(waiter_type) -> None:
    loop = asyncio.get_running_loop()
    waiter = waiter_type(loop)

    async def reader() -> Any:
        return await waiter

    task = loop.create_task(reader())
    await asyncio.sleep(0)
    task.cancel("stop")
    with pytest.raises(asyncio.CancelledError):
        await task
    assert waiter.cancelled()
    assert waiter.done()
    with pytest.raises(asyncio.CancelledError, match="stop"):
        waiter.result()
    assert not waiter.cancel()
    with pytest.raises(asyncio.InvalidStateError):
        waiter.wake("late")
    with pytest.raises(asyncio.InvalidStateError):
        waiter.set_result("late")


@pytest.mark.parametrize("waiter_type", WAITERS)
async def test_timeouts_cancel_the_wait(waiter_type) -> None:
    waiter = waiter_type(asyncio.get_running_loop())
    with pytest.raises(TimeoutError):
        await asyncio.wait_for(waiter, 0.01)
    assert waiter.cancelled()
    with pytest.raises(asyncio.CancelledError):
        waiter.result()


@pytest.mark.parametrize("waiter_type", WAITERS)
async def test_results_and_states(waiter_type) -> None:
    loop = asyncio.get_running_loop()
    waiter = waiter_type(loop)
    with pytest.raises(asyncio.InvalidStateError, match="not ready"):
        waiter.result()
    waiter.set_result((1, 2))
    assert waiter.result() == (1, 2)
    assert await waiter == (1, 2)  # a tuple stays one value
    with pytest.raises(asyncio.InvalidStateError):
        waiter.set_result(None)
    assert not waiter.cancel()
    cancelled = waiter_type(loop)
    assert cancelled.cancel()
    with pytest.raises(asyncio.CancelledError):
        await cancelled


@pytest.mark.parametrize("waiter_type", WAITERS)
async def test_done_callbacks(waiter_type) -> None:
    loop = asyncio.get_running_loop()
    waiter = waiter_type(loop)
    var: contextvars.ContextVar[str] = contextvars.ContextVar("var", default="outside")
    seen: list[tuple[str, Any]] = []

    def record(name: str) -> Any:
        def callback(fut: Any) -> None:
            seen.append((name, var.get()))

        return callback

    first, second, removed = record("first"), record("second"), record("removed")
    context = contextvars.copy_context()
    context.run(var.set, "inside")
    waiter.add_done_callback(first, context=context)
    waiter.add_done_callback(second)
    waiter.add_done_callback(removed)
    assert waiter.remove_done_callback(removed) == 1
    assert waiter.remove_done_callback(removed) == 0
    loop.call_soon(waiter.wake, None)
    await asyncio.sleep(0)
    assert seen == [("first", "inside"), ("second", "outside")]
    waiter.add_done_callback(record("late"))  # once done: scheduled at once
    assert seen == [("first", "inside"), ("second", "outside")]
    await asyncio.sleep(0)
    assert seen[-1] == ("late", "outside")


@pytest.mark.parametrize("waiter_type", WAITERS)
async def test_a_failing_callback_is_reported_and_the_others_run(waiter_type) -> None:
    loop = asyncio.get_running_loop()
    reports: list[dict[str, Any]] = []
    loop.set_exception_handler(lambda loop, context: reports.append(context))
    try:
        waiter = waiter_type(loop)
        ran: list[str] = []

        def failing(fut: Any) -> None:
            raise RuntimeError("callback failed")

        waiter.add_done_callback(failing)
        waiter.add_done_callback(lambda fut: ran.append("second"))
        loop.call_soon(waiter.wake, None)
        await asyncio.sleep(0)
        assert ran == ["second"]
        assert len(reports) == 1
        assert isinstance(reports[0]["exception"], RuntimeError)
        assert reports[0]["future"] is waiter
    finally:
        loop.set_exception_handler(None)


@pytest.mark.parametrize("waiter_type", WAITERS)
def test_system_exit_from_a_callback_goes_up(waiter_type) -> None:
    loop = asyncio.new_event_loop()
    try:
        waiter = waiter_type(loop)

        def leaving(fut: Any) -> None:
            raise SystemExit(3)

        waiter.add_done_callback(leaving, context=contextvars.copy_context())
        with pytest.raises(SystemExit):
            waiter.wake(None)  # no task runs: the callback runs here, and its exit goes up
    finally:
        loop.close()


@pytest.mark.parametrize("waiter_type", WAITERS)
def test_awaiting_without_a_task_and_misuse(waiter_type) -> None:
    loop = asyncio.new_event_loop()
    try:
        waiter = waiter_type(loop)
        steps = waiter.__await__()
        assert next(steps) is waiter  # yields itself while pending, as futures do
        assert waiter._asyncio_future_blocking
        waiter._asyncio_future_blocking = False
        with pytest.raises(RuntimeError, match="await wasn't used with future"):
            next(steps)  # resumed while still pending
        with pytest.raises(TypeError):
            waiter.add_done_callback(print, bogus=1)
    finally:
        loop.close()


# -- the connection core: what a real connection delivers, against the sans-I/O core ------------

LIMIT = 3000  # max_message_size of the connections under test

KINDS = [
    "text",
    "text",
    "binary",
    "binary",
    "empty",
    "large",
    "fragmented",
    "ping",
    "pong",
    "bad utf-8",
    "too big",
    "reserved bits",
    "compressed",
    "unmasked",
]


@st.composite
def frame_streams(draw: st.DrawFn, mask: bool) -> list[bytes]:
    """What a peer sends: mostly whole messages, some fragments, control frames, errors."""
    frames: list[bytes] = []
    for _ in range(draw(st.integers(1, 10))):
        kind = draw(st.sampled_from(KINDS))
        if kind == "text":
            frames.append(frame(Opcode.TEXT, draw(st.text(max_size=200)).encode(), mask=mask))
        elif kind == "binary":
            frames.append(frame(Opcode.BINARY, draw(st.binary(max_size=200)), mask=mask))
        elif kind == "empty":
            frames.append(frame(draw(st.sampled_from([Opcode.TEXT, Opcode.BINARY])), mask=mask))
        elif kind == "large":  # a 16-bit length, near the limit
            frames.append(
                frame(Opcode.BINARY, os.urandom(draw(st.integers(126, LIMIT))), mask=mask)
            )
        elif kind == "fragmented":
            text = draw(st.booleans())
            parts = draw(st.lists(st.text(max_size=40), min_size=1, max_size=4))
            for i, part in enumerate(parts):
                opcode = (Opcode.TEXT if text else Opcode.BINARY) if i == 0 else Opcode.CONT
                last = i == len(parts) - 1
                frames.append(frame(opcode, part.encode(), fin=last, mask=mask))
                if not last and draw(st.booleans()):
                    frames.append(frame(Opcode.PING, b"between", mask=mask))
        elif kind in ("ping", "pong"):
            opcode = Opcode.PING if kind == "ping" else Opcode.PONG
            frames.append(frame(opcode, draw(st.binary(max_size=20)), mask=mask))
        elif kind == "bad utf-8":
            frames.append(
                frame(
                    Opcode.TEXT,
                    b"ok" + draw(st.sampled_from([b"\xff", b"\xed\xa0\x80"])),
                    mask=mask,
                )
            )
        elif kind == "too big":
            frames.append(frame(Opcode.BINARY, bytes(LIMIT + 1), mask=mask))
        elif kind == "reserved bits":
            frames.append(frame(Opcode.BINARY | 0x20, b"x", mask=mask))
        elif kind == "compressed":  # RSV1 without permessage-deflate negotiated
            frames.append(frame(Opcode.BINARY, b"x", rsv1=True, mask=mask))
        else:  # masked the wrong way
            frames.append(frame(Opcode.BINARY, b"x", mask=not mask))
    if draw(st.booleans()):
        frames.append(frame(Opcode.CLOSE, struct.pack("!H", 1000), mask=mask))
    return frames


def expected(stream: bytes, side: Side, limit: int = LIMIT) -> tuple[list[str | bytes], int, bool]:
    """What the sans-I/O core makes of ``stream``: the messages, the close code it sends, and
    whether the stream ends with the peer's close frame."""
    proto = Protocol(side, max_message_size=limit)
    proto.receive_data(stream)
    messages: list[str | bytes] = []
    parts: list[str | bytes] = []
    closed = False
    for event in proto.events_received():
        if isinstance(event, str | bytes):
            messages.append(event)
        elif isinstance(event, Data):
            parts.append(event.data)
            if event.fin:
                messages.append("".join(parts) if isinstance(event.data, str) else b"".join(parts))  # type: ignore[arg-type]
                parts = []
        elif isinstance(event, Close):
            closed = True
    code = 1000 if proto.exc is None else close_code_for(proto.exc)
    return messages, code, closed


async def deliver(
    chunks: list[bytes], api: str, side: str, pauses: list[bool], limit: int = LIMIT
) -> tuple[list[str | bytes], int]:
    """Send ``chunks`` to a real wsend connection; return what it delivered and its close."""
    from .helpers import raw_client, raw_server

    got: list[str | bytes] = []
    finished = asyncio.get_running_loop().create_future()

    async def receive(ws: wsend.Connection) -> None:
        try:
            if api == "callbacks":
                ws.on_message = got.append
                await ws.wait_closed()
            else:
                async for message in ws:
                    got.append(message)
        except wsend.ConnectionClosed:
            pass
        finally:
            finished.set_result(None)

    options: dict[str, Any] = {"max_message_size": limit, "ping_interval": None}
    if side == "server":
        server = await wsend.serve(receive, "127.0.0.1", 0, **options)
        peer = await raw_client(server.port)
        task = None
    else:
        stack = raw_server()
        port, peers = await stack.__aenter__()
        ws = await wsend.connect(f"ws://127.0.0.1:{port}/", **options)
        peer = await peers.get()
        task = asyncio.create_task(receive(ws))
    try:
        for chunk, pause in zip(chunks, pauses + [False] * len(chunks), strict=False):
            peer.writer.write(chunk)
            if pause:
                await peer.writer.drain()
                await asyncio.sleep(0.001)  # most likely a read of its own
        close = await asyncio.wait_for(peer.recv_close(), 5)
        # Answer a close frame the connection started (its answer to ours is ignored), and
        # end the TCP connection (a client waits for its server to do so).
        peer.writer.write(frame(Opcode.CLOSE, close.serialize(), mask=peer.mask))
        peer.writer.close()
        await asyncio.wait_for(finished, 5)
    finally:
        peer.abort()
        if side == "server":
            server.close()
            await server.wait_closed()
        else:
            assert task is not None
            await task
            await stack.__aexit__(None, None, None)
    return got, close.code


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
@pytest.mark.parametrize("api", ["coroutines", "callbacks"])
@pytest.mark.parametrize("side", ["server", "client"])
def test_a_connection_delivers_what_the_sans_io_core_parses(api, side, data) -> None:
    mask = side == "server"  # what the peer does
    frames = data.draw(frame_streams(mask))
    stream = b"".join(frames)
    cuts = sorted(data.draw(st.lists(st.integers(0, len(stream)), max_size=6)))
    chunks = [stream[a:b] for a, b in zip([0, *cuts], [*cuts, len(stream)], strict=True)]
    chunks = [chunk for chunk in chunks if chunk]
    pauses = data.draw(st.lists(st.booleans(), max_size=len(chunks)))
    messages, code, peer_closed = expected(stream, Side.SERVER if mask else Side.CLIENT)
    if not peer_closed and code == 1000:
        # The peer closes after its frames; the connection answers with the same code.
        chunks.append(frame(Opcode.CLOSE, struct.pack("!H", 1000), mask=mask))
    got, sent = asyncio.run(deliver(chunks, api, side, pauses))
    assert got == messages
    assert sent == code


BIG = _BIG_FRAME  # frames from this size are read in place, past the shared buffer
BIG_LIMIT = 3 * BIG


@st.composite
def big_frame_streams(draw: st.DrawFn, mask: bool) -> list[bytes]:
    """Frames read in place (binary, text, fragments, too big) between small ones."""
    frames: list[bytes] = []
    for _ in range(draw(st.integers(1, 4))):
        kind = draw(st.sampled_from(["binary", "text", "bad text", "fragments", "too big"]))
        size = BIG + draw(st.integers(0, 50_000))
        if kind == "binary":
            frames.append(frame(Opcode.BINARY, os.urandom(size), mask=mask))
        elif kind in ("text", "bad text"):
            text = "é" * (size // 2) + "a"  # characters split across reads
            if kind == "bad text":
                text = text[: draw(st.integers(0, size // 2))] + "\udcff" + text
            frames.append(frame(Opcode.TEXT, text.encode("utf-8", "surrogateescape"), mask=mask))
        elif kind == "fragments":  # a large fragment, a control frame, then its continuation
            frames.append(frame(Opcode.BINARY, os.urandom(size), fin=False, mask=mask))
            frames.append(frame(Opcode.PING, b"between", mask=mask))
            frames.append(frame(Opcode.CONT, os.urandom(draw(st.integers(0, BIG))), mask=mask))
        else:
            frames.append(frame(Opcode.BINARY, bytes(BIG_LIMIT + 1), mask=mask))
        frames.append(frame(Opcode.TEXT, b"small", mask=mask))
    if draw(st.booleans()):
        frames.append(frame(Opcode.CLOSE, struct.pack("!H", 1000), mask=mask))
    return frames


@settings(max_examples=8, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
@pytest.mark.parametrize("api", ["coroutines", "callbacks"])
@pytest.mark.parametrize("side", ["server", "client"])
def test_frames_read_in_place_deliver_what_the_sans_io_core_parses(api, side, data) -> None:
    """The same for frames past the shared receive buffer, read straight into their own
    buffers over many reads (the compiled core counts the middle of a binary frame itself)."""
    mask = side == "server"
    stream = b"".join(data.draw(big_frame_streams(mask)))
    cuts = sorted(data.draw(st.lists(st.integers(0, len(stream)), min_size=4, max_size=12)))
    chunks = [stream[a:b] for a, b in zip([0, *cuts], [*cuts, len(stream)], strict=True)]
    chunks = [chunk for chunk in chunks if chunk]
    messages, code, peer_closed = expected(stream, Side.SERVER if mask else Side.CLIENT, BIG_LIMIT)
    if not peer_closed and code == 1000:
        chunks.append(frame(Opcode.CLOSE, struct.pack("!H", 1000), mask=mask))
    got, sent = asyncio.run(deliver(chunks, api, side, [True] * len(chunks), BIG_LIMIT))
    assert got == messages
    assert sent == code


# -- the fast paths' edges ----------------------------------------------------------------------


async def test_a_flood_of_tiny_messages_reaches_a_reader_whole_and_in_order(open_raw):
    ws, peer = await open_raw()
    count = 20_000  # many times the number parsed per read (max_events)
    peer.writer.write(
        b"".join(frame(Opcode.BINARY, struct.pack("!I", i), mask=peer.mask) for i in range(count))
    )
    got = [struct.unpack("!I", await ws.recv())[0] for _ in range(count)]
    assert got == list(range(count))


async def test_a_callback_that_hands_over_to_recv_mid_read(open_raw):
    ws, peer = await open_raw()
    got: list[str | bytes] = []

    def first_only(message: str | bytes) -> None:
        got.append(message)
        ws.on_message = None  # the rest of the read goes to recv(), in order

    ws.on_message = first_only
    peer.writer.write(b"".join(frame(Opcode.TEXT, b"%d" % i, mask=peer.mask) for i in range(5)))
    await until(lambda: got)
    assert [await ws.recv() for _ in range(4)] == ["1", "2", "3", "4"]
    assert got == ["0"]


async def test_whole_messages_around_control_frames_keep_their_order(open_raw):
    ws, peer = await open_raw()
    peer.writer.write(
        frame(Opcode.TEXT, b"before", mask=peer.mask)
        + frame(Opcode.PING, b"p", mask=peer.mask)
        + frame(Opcode.BINARY, b"after", mask=peer.mask)
    )
    assert [await ws.recv(), await ws.recv()] == ["before", b"after"]
    opcode, _, _, payload = await peer.recv_frame()
    assert (opcode, payload) == (Opcode.PONG, b"p")


@pytest.mark.parametrize(
    "message",
    [
        "",
        "ascii",
        "héllo wörld" * 3,
        "a" * 20_000,  # ASCII past the size framed in one piece
        "é" * 20_000,
        b"",
        b"\x00" * 125,
        b"\x01" * 126,
        os.urandom(20_000),
        os.urandom(70_000),  # a 64-bit length
    ],
    ids=lambda m: f"{type(m).__name__}-{len(m)}",
)
@pytest.mark.parametrize("how", ["send", "send_nowait"])
async def test_messages_sent_on_the_fast_path_arrive_intact(open_pair, message, how):
    local, remote = await open_pair(max_message_size=None)
    if how == "send":
        await local.send(message)
    else:
        local.send_nowait(message)
    assert await remote.recv() == message


@pytest.mark.parametrize("how", ["send", "send_nowait"])
async def test_large_frames_keep_their_bytes_while_the_transport_holds_them(open_pair, how):
    """A client builds a large masked frame in the buffer of its last one of the same size
    only when nothing holds that buffer any more: frames still waiting in the transport (the
    peer doesn't read) keep their bytes, and sizes that change take fresh buffers."""
    local, remote = await open_pair(max_message_size=None, client={"write_limit": 2**30})
    assert remote.transport is not None
    sizes = [300_000] * 6 + [300_001, 300_000, 70_000, 70_000, 300_000]
    messages = [os.urandom(size) for size in sizes]
    remote.transport.pause_reading()  # the frames pile up in the sender's transport
    if how == "send_nowait":
        for message in messages:
            local.send_nowait(message)
    else:
        sending = asyncio.gather(*(local.send(message) for message in messages))
    await asyncio.sleep(0.05)
    remote.transport.resume_reading()
    if how == "send":
        await sending
    assert [await remote.recv() for _ in messages] == messages
    for message in messages:  # one at a time: each frame may reuse the last one's buffer
        await local.send(message)
        assert await remote.recv() == message


async def test_a_client_masks_with_fresh_keys_past_its_pool(open_pair):
    local, remote = await open_pair()
    count = 600  # the pool holds 256 keys
    for i in range(count):
        local.send_nowait(b"%d" % i)
    assert [await remote.recv() for _ in range(count)] == [b"%d" % i for i in range(count)]


async def test_send_nowait_arguments(open_pair):
    local, remote = await open_pair()
    local.send_nowait("compressible", compress=True)  # nothing negotiated: sent as it is
    assert await remote.recv() == "compressible"
    with pytest.raises(TypeError):
        local.send_nowait("x", bogus=True)  # type: ignore[call-arg]
    with pytest.raises(TypeError):
        local.send_nowait()  # type: ignore[call-arg]
    with pytest.raises(TypeError, match="not int"):
        local.send_nowait(42)  # type: ignore[arg-type]
    with pytest.raises(UnicodeEncodeError):
        local.send_nowait("\ud800")  # a lone surrogate can't be sent


@pytest.mark.parametrize("api", ["coroutines", "callbacks"])
async def test_a_pong_waiting_to_be_sent_goes_before_an_answer(open_raw, api):
    ws, peer = await open_raw()
    if api == "callbacks":
        ws.on_message = ws.send_nowait  # answers while the pong is still queued
        peer.writer.write(
            frame(Opcode.PING, b"ping", mask=peer.mask) + frame(Opcode.TEXT, b"q", mask=peer.mask)
        )
    else:
        ws.pause_writing()  # as the transport does past its high-water mark: pongs are held
        peer.write(Opcode.PING, b"ping")
        peer.send_text("q")
        assert await ws.recv() == "q"
        ws.resume_writing()  # the held pong is written
        await ws.send("q")
    frames = [await peer.recv_frame() for _ in range(2)]
    assert [(f[0], f[3]) for f in frames] == [(Opcode.PONG, b"ping"), (Opcode.TEXT, b"q")]


async def test_buffer_updated_checks_its_count(open_raw):
    ws, _ = await open_raw()
    with pytest.raises(ValueError, match="nbytes"):
        ws.buffer_updated(fastpath.RECV_BUFFER_SIZE + 1)
    with pytest.raises(ValueError, match="nbytes"):
        ws.buffer_updated(-1)


async def test_sending_on_a_closing_transport_raises(open_pair):
    local, _ = await open_pair()
    assert local.transport is not None
    local.transport.close()
    with pytest.raises(wsend.ConnectionClosed):
        local.send_nowait("too late")


def test_frames_built_by_the_twins_agree() -> None:
    """The compiled serialize_frame (used by the fast send path) and its twin."""
    from wsend.protocol import frames

    for size in (0, 1, 125, 126, 16384, 16385, 65535, 65536):
        payload = os.urandom(size)
        for mask in (None, b"abcd"):
            built = frames.serialize_frame(Opcode.BINARY, payload, mask=mask)
            assert [bytes(c) for c in built] == [
                bytes(c) for c in serialize_frame_py(Opcode.BINARY, payload, mask=mask)
            ]


# -- fuzz harness smoke test ----------------------------------------------------------------------


def _load_fuzz_target() -> Any:
    import importlib.util
    from pathlib import Path

    path = Path(__file__).parents[2] / "fuzzing" / "fuzz_connection.py"
    spec = importlib.util.spec_from_file_location("fuzz_connection", path)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


FUZZ = _load_fuzz_target()


@pytest.mark.parametrize("seed", FUZZ.SEEDS)
def test_fuzz_seeds(seed: bytes) -> None:
    FUZZ.TestOneInput(seed)


@given(st.binary(max_size=300))
@settings(max_examples=300, deadline=None)
def test_fuzz_target_holds_on_random_input(data: bytes) -> None:
    FUZZ.TestOneInput(data)


@given(st.sampled_from(FUZZ.SEEDS), st.binary(max_size=100), st.integers(0, 255))
@settings(max_examples=300, deadline=None)
def test_fuzz_target_holds_on_mutated_seeds(seed: bytes, tail: bytes, selector: int) -> None:
    FUZZ.TestOneInput(bytes([selector]) + seed[1:] + tail)


async def test_a_size_limit_past_64_bits_is_no_limit(open_pair):
    local, remote = await open_pair(max_message_size=1 << 64, compression=None)
    await local.send(b"x" * 70_000)
    assert await remote.recv() == b"x" * 70_000


async def test_recv_streaming_waits_then_learns_of_the_close(open_raw):
    ws, peer = await open_raw()
    peer.write(Opcode.TEXT, b"first,", fin=False)
    streaming = ws.recv_streaming()
    assert await anext(streaming) == "first,"
    waiting = asyncio.create_task(anext(streaming))  # waits for the next fragment
    await until(lambda: ws._waiter is not None)
    peer.send_close(1000)
    with pytest.raises(wsend.ConnectionClosed):
        await waiting


async def test_recv_streaming_cancelled_while_waiting_then_resumed(open_raw):
    ws, peer = await open_raw()
    peer.write(Opcode.BINARY, b"first,", fin=False)
    streaming = ws.recv_streaming()
    assert await anext(streaming) == b"first,"
    waiting = asyncio.create_task(anext(streaming))
    await until(lambda: ws._waiter is not None)
    waiting.cancel()
    with pytest.raises(asyncio.CancelledError):
        await waiting
    assert ws._waiter is None
    peer.write(Opcode.CONT, b"second")
    assert await ws.recv() == b"second"  # the rest of the message, as recv() joins it


async def test_recv_parses_on_when_frames_wait_unparsed_and_nothing_is_queued(open_raw):
    """Reading paused with frames left unparsed (see Connection.start) and nothing queued:
    recv() parses on rather than wait for what is already here."""
    ws, _ = await open_raw()
    assert ws.proto is not None
    ws._pause_reading()
    ws.proto.defer_data(frame(Opcode.TEXT, b"buffered", mask=not ws.is_client))
    assert ws.proto.parse_pending
    assert await asyncio.wait_for(ws.recv(), 5) == "buffered"
    assert not ws._paused_reading


async def test_a_size_limit_past_64_bits_is_no_limit_with_compression_too(open_pair):
    # zlib takes a bound on the output it inflates as a C ssize_t: past it, no bound.
    local, remote = await open_pair(max_message_size=1 << 64)
    assert local.extensions
    await local.send(b"x" * 70_000)
    assert await remote.recv() == b"x" * 70_000
