"""The threading connection's API over real sockets, each test run from both sides."""

from __future__ import annotations

import array
import io
import os
import threading
import time
from collections.abc import Callable, Iterator

import pytest

import wsend
from wsend.protocol.connection import _BIG_FRAME, State
from wsend.protocol.frames import Opcode

from .conftest import OpenRaw, Pair
from .helpers import frame, in_thread

OpenPair = Callable[..., Pair]


def wait_until(predicate: Callable[[], object], timeout: float = 5.0) -> None:
    """Wait until ``predicate()`` is true (it watches state that has no event to wait on)."""
    end = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < end, "condition not reached"
        time.sleep(0.005)


def drain(ws: wsend.sync.Connection) -> None:
    """Receive until the connection closes (the exception tells how)."""
    while True:
        ws.recv(timeout=5)


# -- sending and receiving ------------------------------------------------------------------


def test_send_types(open_pair: OpenPair) -> None:
    local, remote = open_pair()
    big = bytes(range(256)) * 1000  # 256 KB: streamed from a file in 64 KiB frames
    cases: list[tuple[object, str | bytes]] = [
        ("héllo ✓", "héllo ✓"),
        (b"\x00\xff", b"\x00\xff"),
        (bytearray(b"ba"), b"ba"),
        (memoryview(b"memory")[1:4], b"emo"),
        (memoryview(array.array("i", [1, 2])), array.array("i", [1, 2]).tobytes()),
        (io.BytesIO(big), big),
        (iter(["frag", "ment", "ed"]), "fragmented"),
        ([b"a", bytearray(b"b"), memoryview(b"c")], b"abc"),
        ((s for s in ()), b""),
        ("", ""),
    ]
    for sent, expected in cases:
        local.send(sent)
        received = remote.recv(timeout=5)
        assert type(received) is type(expected)
        assert received == expected


def test_send_takes_bytearrays_at_once(open_pair: OpenPair) -> None:
    local, remote = open_pair()
    buffer = bytearray(b"first")
    local.send(buffer)
    buffer[:] = b"later"
    assert remote.recv(timeout=5) == b"first"


def test_send_refuses_other_types(open_pair: OpenPair) -> None:
    local, remote = open_pair()
    with pytest.raises(TypeError, match="send_json"):
        local.send({"a": 1})
    with pytest.raises(TypeError, match="cannot send int"):
        local.send(42)

    async def chunks() -> object:
        yield b"x"

    with pytest.raises(TypeError, match="asyncio"):
        local.send(chunks())
    with pytest.raises(TypeError, match="binary mode"):
        local.send(io.StringIO("text"))
    # Nothing was sent: the connection is still usable.
    local.send("still open")
    assert remote.recv(timeout=5) == "still open"


def test_stream_failing_midway_fails_the_connection(open_pair: OpenPair) -> None:
    local, remote = open_pair()
    with pytest.raises(TypeError, match="mixes str and bytes"):
        local.send(iter(["text", b"bytes"]))
    with pytest.raises(wsend.ConnectionClosedError) as caught:
        remote.recv(timeout=5)
    assert caught.value.code == 1011
    assert caught.value.reason == "message interrupted"


def test_json(open_pair: OpenPair) -> None:
    local, remote = open_pair()
    local.send_json({"n": [1, 2]})
    assert remote.recv_json(timeout=5) == {"n": [1, 2]}
    local.send_json({"b": 1}, dumps=lambda obj: b'{"b": 1}')
    assert remote.recv(timeout=5) == '{"b": 1}'
    local.send("not json")
    with pytest.raises(ValueError, match="Expecting value"):
        remote.recv_json(timeout=5)
    local.send("1")
    assert remote.recv_json(timeout=5) == 1


def test_recv_timeout(open_pair: OpenPair) -> None:
    local, remote = open_pair()
    with pytest.raises(TimeoutError):
        remote.recv(timeout=0.05)
    with pytest.raises(TimeoutError):
        remote.recv(timeout=0)
    local.send("now")
    wait_until(lambda: remote._queue)
    assert remote.recv(timeout=0) == "now"


def test_recv_timeout_keeps_a_partial_message(open_pair: OpenPair) -> None:
    local, remote = open_pair()
    go_on = threading.Event()

    def fragments() -> Iterator[str]:
        yield "first half, "
        go_on.wait(5)
        yield "second half"

    sender = in_thread(local.send, fragments())
    with pytest.raises(TimeoutError):
        remote.recv(timeout=0.2)
    go_on.set()
    assert remote.recv(timeout=5) == "first half, second half"
    sender.join(5)


def test_recv_streaming(open_pair: OpenPair) -> None:
    local, remote = open_pair()
    local.send(iter([b"one", b"two", b"three"]))
    assert list(remote.recv_streaming()) == [b"one", b"two", b"three", b""]
    local.send("whole")
    assert list(remote.recv_streaming()) == ["whole"]


def test_recv_streaming_after_a_timeout(open_pair: OpenPair) -> None:
    local, remote = open_pair()
    go_on = threading.Event()

    def fragments() -> Iterator[str]:
        yield "a"
        go_on.wait(5)
        yield "b"

    sender = in_thread(local.send, fragments())
    with pytest.raises(TimeoutError):
        remote.recv(timeout=0.2)
    go_on.set()
    assert "".join(remote.recv_streaming()) == "ab"
    sender.join(5)
    local.send(iter([b"x"]))
    assert remote.recv(timeout=5) == b"x"
    local.send(iter([b"y", b"z"]))
    stream = remote.recv_streaming()
    assert next(stream) == b"y"
    stream.close()
    assert remote.recv(timeout=5) == b"z"


def test_iteration(open_pair: OpenPair) -> None:
    local, remote = open_pair()
    for i in range(3):
        local.send(f"message {i}")
    local.close()
    assert list(remote) == ["message 0", "message 1", "message 2"]


def test_iteration_raises_on_error_close(open_pair: OpenPair) -> None:
    local, remote = open_pair()
    local.send("last")
    local.close(4000, "custom")
    received = []

    def consume() -> None:
        for message in remote:
            received.append(message)

    with pytest.raises(wsend.ConnectionClosedError) as caught:
        consume()
    assert received == ["last"]
    assert (caught.value.code, caught.value.reason) == (4000, "custom")


# -- ping and pong ----------------------------------------------------------------------------


def test_ping(open_pair: OpenPair) -> None:
    local, _ = open_pair()
    assert local.latency == 0.0
    rtt = local.ping(timeout=5)
    assert rtt > 0
    assert local.latency == rtt
    assert local.ping("payload", timeout=5) > 0
    assert local.send_ping(b"bytes").result(5) > 0


def test_ping_payload_in_flight_twice(open_pair: OpenPair) -> None:
    local, remote = open_pair()
    with remote._lock:  # the remote's reader can't answer meanwhile
        fut = local.send_ping(b"same")
        with pytest.raises(wsend.UsageError, match="same payload"):
            local.send_ping(b"same")
    assert fut.result(5) > 0


def test_pings_fail_when_the_connection_closes(open_pair: OpenPair) -> None:
    local, remote = open_pair()
    with remote._lock:  # the remote's reader can't answer meanwhile
        fut = local.send_ping()
        local.abort()
        with pytest.raises(wsend.ConnectionClosed):
            fut.result(5)
    with pytest.raises(wsend.ConnectionClosed):
        local.ping(timeout=5)


def test_pong(open_pair: OpenPair) -> None:
    local, remote = open_pair()
    local.pong("heartbeat")
    local.pong(b"beat")
    local.send("after")
    assert remote.recv(timeout=5) == "after"


def test_keepalive_measures_latency(open_pair: OpenPair) -> None:
    local, _ = open_pair(ping_interval=0.02, ping_timeout=5)
    wait_until(lambda: local.latency > 0)


# -- closing ----------------------------------------------------------------------------------


def test_close(open_pair: OpenPair) -> None:
    local, remote = open_pair()
    assert local.ready_state is State.OPEN
    assert local.close_code is None
    assert local.close_reason is None
    local.close(1001, "going")
    assert local.ready_state is State.CLOSED
    assert local.wait_closed(5)
    with pytest.raises(wsend.ConnectionClosedOK) as caught:
        remote.recv(timeout=5)
    assert (caught.value.code, caught.value.reason) == (1001, "going")
    assert remote.wait_closed(5)
    assert (remote.close_code, remote.close_reason) == (1001, "going")
    assert (local.close_code, local.close_reason) == (1001, "")
    local.close()  # idempotent
    with pytest.raises(wsend.ConnectionClosedOK):
        local.send("too late")
    with pytest.raises(wsend.ConnectionClosedOK):
        local.recv()


def test_close_refuses_bad_codes(open_pair: OpenPair) -> None:
    local, _ = open_pair()
    with pytest.raises(ValueError, match="may not be sent"):
        local.close(1006)
    with pytest.raises(ValueError, match="123 bytes"):
        local.close(1000, "x" * 124)
    assert local.ready_state is State.OPEN


def test_close_wakes_receivers_in_other_threads(open_pair: OpenPair) -> None:
    local, _ = open_pair()
    errors: list[BaseException] = []

    def receive() -> None:
        try:
            local.recv()
        except BaseException as exc:
            errors.append(exc)

    threads = [in_thread(receive) for _ in range(3)]
    time.sleep(0.05)  # let them block in recv (the test passes either way)
    local.close()
    for thread in threads:
        thread.join(5)
    assert len(errors) == 3
    assert all(isinstance(exc, wsend.ConnectionClosedOK) for exc in errors)


def test_close_interrupts_a_stream_in_another_thread(open_pair: OpenPair) -> None:
    local, remote = open_pair()
    started = threading.Event()
    failures: list[BaseException] = []

    def endless() -> Iterator[bytes]:
        started.set()
        while True:
            yield b"x" * 1024
            time.sleep(0.001)

    def stream() -> None:
        try:
            local.send(endless())
        except BaseException as exc:
            failures.append(exc)

    sender = in_thread(stream)
    assert started.wait(5)
    local.close()
    sender.join(5)
    assert isinstance(failures[0], wsend.ConnectionClosedError)
    with pytest.raises(wsend.ConnectionClosedError) as caught:
        drain(remote)
    assert (caught.value.code, caught.value.reason) == (1011, "message interrupted")


def test_abort(open_pair: OpenPair) -> None:
    local, remote = open_pair()
    local.abort()
    assert local.wait_closed(5)
    with pytest.raises(wsend.ConnectionClosedError) as caught:
        remote.recv(timeout=5)
    assert caught.value.code == 1006
    assert remote.close_code == 1006
    assert remote.ready_state is State.CLOSED


def test_context_manager_and_repr(open_pair: OpenPair) -> None:
    local, remote = open_pair()
    with local as ws:
        assert ws is local
        assert "OPEN" in repr(local)
        assert local.remote_address is not None
        assert local.local_address is not None
    assert "CLOSED" in repr(local)
    assert remote.wait_closed(5)


def test_buffered_amount_when_idle(open_pair: OpenPair) -> None:
    local, _ = open_pair()
    local.send(b"x" * 100_000)
    wait_until(lambda: local.buffered_amount == 0)


def test_recv_timeout_while_another_thread_receives(open_pair: OpenPair) -> None:
    local, remote = open_pair()
    with remote._recv_mutex, pytest.raises(TimeoutError):  # another thread is receiving
        remote.recv(timeout=0.05)
    local.send("after")
    assert remote.recv(timeout=5) == "after"


def test_recv_streaming_resumes_a_binary_message(open_pair: OpenPair) -> None:
    local, remote = open_pair()
    go_on = threading.Event()

    def fragments() -> Iterator[bytes]:
        yield b"head "
        go_on.wait(5)
        yield b"tail"

    sender = in_thread(local.send, fragments())
    with pytest.raises(TimeoutError):
        remote.recv(timeout=0.2)
    go_on.set()
    assert b"".join(remote.recv_streaming()) == b"head tail"
    sender.join(5)


def test_bad_chunks_in_streams(open_pair: OpenPair) -> None:
    local, remote = open_pair()

    class NotBytes:
        def read(self, size: int) -> object:
            return 42

    with pytest.raises(TypeError, match="must return bytes"):
        local.send(NotBytes())
    with pytest.raises(TypeError, match="cannot send int in a fragmented message"):
        local.send([1, 2])
    local.send("still open")
    assert remote.recv(timeout=5) == "still open"


def test_write_limit_as_a_pair(open_pair: OpenPair) -> None:
    local, remote = open_pair(write_limit=(4096, 1024), max_message_size=None)
    data = b"w" * 100_000
    for _ in range(5):
        local.send(data)
    for _ in range(5):
        assert remote.recv(timeout=5) == data


def test_large_frames_read_in_place_arrive_whole(open_raw: OpenRaw) -> None:
    """Frames past the in-place size, back to back and between small ones, written in pieces:
    the reader reads each large payload into its own buffer (after a large frame, the next
    header alone) and delivers every message whole and in order."""
    ws, peer = open_raw(max_message_size=None)
    size = _BIG_FRAME + 12_345
    big = [os.urandom(size), os.urandom(size), os.urandom(size + 1)]
    text = "é" * (size // 2)
    stream = b"".join(
        [
            frame(Opcode.BINARY, big[0], mask=peer.mask),
            frame(Opcode.BINARY, big[1], mask=peer.mask),  # right after the last one
            frame(Opcode.TEXT, text.encode(), mask=peer.mask),
            frame(Opcode.TEXT, b"small", mask=peer.mask),
            frame(Opcode.BINARY, big[2], mask=peer.mask),
        ]
    )
    for start in range(0, len(stream), 300_000):
        peer.sock.sendall(stream[start : start + 300_000])
    assert [ws.recv(timeout=5) for _ in range(5)] == [big[0], big[1], text, "small", big[2]]
