"""Several threads on one connection: whole messages, in each thread's order, never mixed."""

from __future__ import annotations

import collections
import hashlib
import threading
from collections.abc import Callable, Iterator

import pytest

import wsend

from .conftest import Pair
from .helpers import in_thread

OpenPair = Callable[..., Pair]

SENDERS = 8
PER_SENDER = 200


def message(sender: int, seq: int) -> bytes:
    """A self-checking message: its header names it, its body is derived from the header."""
    header = f"{sender}:{seq}:".encode()
    size = 10 + (sender * 7919 + seq * 104729) % 40_000  # 10 B to 40 KB: some span frames
    body = hashlib.sha256(header).digest() * (size // 32 + 1)
    return header + body[:size]


def check(data: bytes) -> tuple[int, int]:
    sender, seq, _ = data.split(b":", 2)
    assert data == message(int(sender), int(seq)), "a message was corrupted or interleaved"
    return int(sender), int(seq)


@pytest.mark.parametrize("compression", ["deflate", None])
def test_concurrent_senders(open_pair: OpenPair, compression: str | None) -> None:
    """Threads sending whole messages and streamed ones at once, on a compressed connection
    too (each message's frames must be compressed and written in one run)."""
    local, remote = open_pair(compression=compression, max_message_size=None)
    errors: list[BaseException] = []

    def send_all(sender: int) -> None:
        try:
            for seq in range(PER_SENDER):
                data = message(sender, seq)
                if seq % 3 == 0:
                    # Streamed: a fragmented message, frames of 1 KB.
                    local.send(data[i : i + 1024] for i in range(0, len(data), 1024))
                elif seq % 3 == 1:
                    local.send(bytearray(data))
                else:
                    local.send(data)
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [in_thread(send_all, sender) for sender in range(SENDERS)]
    last_seen = collections.defaultdict(lambda: -1)
    for _ in range(SENDERS * PER_SENDER):
        data = remote.recv(timeout=30)
        assert isinstance(data, bytes)
        sender, seq = check(data)
        assert seq == last_seen[sender] + 1, "a thread's messages arrived out of order"
        last_seen[sender] = seq
    for thread in threads:
        thread.join(10)
    assert not errors
    assert all(last_seen[sender] == PER_SENDER - 1 for sender in range(SENDERS))


def test_concurrent_receivers(open_pair: OpenPair) -> None:
    """Receiving threads each get whole messages; together, every message exactly once."""
    local, remote = open_pair(max_message_size=None)
    received: list[bytes] = []
    lock = threading.Lock()
    count = 400

    def receive() -> None:
        while True:
            try:
                data = remote.recv(timeout=30)
            except wsend.ConnectionClosedOK:
                return
            assert isinstance(data, bytes)
            check(data)
            with lock:
                received.append(data)

    receivers = [in_thread(receive) for _ in range(4)]
    for seq in range(count):
        data = message(0, seq)
        if seq % 2:
            local.send(data[i : i + 512] for i in range(0, len(data), 512))
        else:
            local.send(data)
    local.close()
    for thread in receivers:
        thread.join(30)
    assert sorted(check(data)[1] for data in received) == list(range(count))


def test_ping_and_send_from_many_threads(open_pair: OpenPair) -> None:
    local, remote = open_pair()
    rtts: list[float] = []
    lock = threading.Lock()

    def ping_many() -> None:
        for _ in range(50):
            rtt = local.ping(timeout=10)
            with lock:
                rtts.append(rtt)

    def send_many(sender: int) -> None:
        for seq in range(100):
            local.send(message(sender, seq))

    threads = [in_thread(ping_many) for _ in range(3)]
    threads += [in_thread(send_many, sender) for sender in range(3)]
    seen = 0
    while seen < 300:
        check(remote.recv(timeout=30))  # type: ignore[arg-type]
        seen += 1
    for thread in threads:
        thread.join(10)
    assert len(rtts) == 150
    assert all(rtt > 0 for rtt in rtts)


def test_nested_send_from_a_streamed_iterable(open_pair: OpenPair) -> None:
    """Sending from inside the iterable being streamed can't wait for itself: UsageError."""
    local, remote = open_pair()

    def chunks() -> Iterator[str]:
        yield "start"
        local.send("nested")

    with pytest.raises(wsend.UsageError, match="streaming a message"):
        local.send(chunks())
    with pytest.raises(wsend.ConnectionClosedError) as caught:
        remote.recv(timeout=5)
    assert caught.value.code == 1011
