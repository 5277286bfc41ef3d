"""Tests for wsend.protocol.deflate (RFC 7692)."""

from __future__ import annotations

import functools
import importlib.util
import itertools
import os
import random
import sys
import time
import tracemalloc
import zlib
from pathlib import Path
from types import ModuleType

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from wsend.exceptions import NegotiationError, PayloadTooBig, ProtocolError
from wsend.protocol import deflate
from wsend.protocol.deflate import (
    DEFAULT_THRESHOLD,
    DEFAULT_THRESHOLD_NO_CONTEXT_TAKEOVER,
    EXTENSION_NAME,
    ClientDeflate,
    ExtensionParams,
    PerMessageDeflate,
    ServerDeflate,
)

TAIL = b"\x00\x00\xff\xff"
BITS = range(8, 16)


def sample_messages(seed: int = 0) -> list[bytes]:
    """Messages that exercise literals, short and long distances, and incompressible data."""
    rng = random.Random(seed)
    words = b"alpha beta gamma delta epsilon zeta eta theta iota kappa lambda".split()
    text = b" ".join(rng.choice(words) for _ in range(4000))
    return [
        b'{"type":"message","channel":"room:lobby","text":"hello"}',
        b"",
        text,
        rng.randbytes(3000),
        b'{"type":"message","channel":"room:lobby","text":"hello again"}',
        rng.randbytes(700) * 60,  # matches 700 B back: beyond a 512 B window
        rng.randbytes(20_000) * 3,  # matches 20 KB back: only a 32 KiB window reaches them
        b"x",
        b"",
    ]


def split(data: bytes, rng: random.Random, parts: int) -> list[bytes]:
    cuts = sorted(rng.randrange(len(data) + 1) for _ in range(parts - 1))
    return [data[a:b] for a, b in itertools.pairwise([0, *cuts, len(data)])]


def send(
    sender: PerMessageDeflate, message: bytes, frames: list[bytes] | None = None
) -> list[bytes]:
    frames = [message] if frames is None else frames
    return [sender.compress(frame, fin=i == len(frames) - 1) for i, frame in enumerate(frames)]


def receive(receiver: PerMessageDeflate, payloads: list[bytes], limit: int | None = None) -> bytes:
    out = b""
    for i, payload in enumerate(payloads):
        left = None if limit is None else limit - len(out)
        out += receiver.decompress(payload, fin=i == len(payloads) - 1, max_length=left)
    return out


def negotiate(client: ClientDeflate, server: ServerDeflate) -> tuple[PerMessageDeflate, ...]:
    result = server.negotiate(client.offer())
    assert result is not None
    response, server_ext = result
    return client.accept(response), server_ext


def exchange(a: PerMessageDeflate, b: PerMessageDeflate, seed: int = 0) -> None:
    """Send every sample message both ways, whole and fragmented."""
    rng = random.Random(seed)
    for message in sample_messages(seed):
        for sender, receiver in ((a, b), (b, a)):
            assert receive(receiver, send(sender, message)) == message
            frames = split(message, rng, rng.randrange(2, 6))
            assert receive(receiver, send(sender, message, frames)) == message


def ext(**kwargs: object) -> PerMessageDeflate:
    options: dict[str, object] = {
        "local_no_context_takeover": False,
        "remote_no_context_takeover": False,
        "local_max_window_bits": 15,
        "remote_max_window_bits": 15,
    }
    options.update(kwargs)
    return PerMessageDeflate(**options)  # type: ignore[arg-type]


def test_extension_name() -> None:
    assert EXTENSION_NAME == "permessage-deflate"


def test_all_is_exported() -> None:
    for name in deflate.__all__:
        assert hasattr(deflate, name)


# Round trips.


@pytest.mark.parametrize("bits", BITS)
@pytest.mark.parametrize("no_context_takeover", [False, True])
def test_round_trip_one_direction(bits: int, no_context_takeover: bool) -> None:
    sender = ext(local_max_window_bits=bits, local_no_context_takeover=no_context_takeover)
    receiver = ext(remote_max_window_bits=bits, remote_no_context_takeover=no_context_takeover)
    rng = random.Random(bits)
    for message in sample_messages(bits) * 2:
        assert receive(receiver, send(sender, message)) == message
        frames = split(message, rng, 4)
        assert receive(receiver, send(sender, message, frames)) == message


@pytest.mark.parametrize("server_bits", [None, *BITS])
@pytest.mark.parametrize("client_bits", [True, None, *BITS])
@pytest.mark.parametrize(
    ("server_nct", "client_nct"), list(itertools.product([False, True], repeat=2))
)
def test_negotiated_round_trip_matrix(
    server_bits: int | None, client_bits: int | bool | None, server_nct: bool, client_nct: bool
) -> None:
    """Autobahn 13.* style: every window and context takeover combination works both ways."""
    client = ClientDeflate(
        server_no_context_takeover=server_nct,
        client_no_context_takeover=client_nct,
        server_max_window_bits=server_bits,
        client_max_window_bits=client_bits,
    )
    client_ext, server_ext = negotiate(client, ServerDeflate())
    assert client_ext.local_max_window_bits == server_ext.remote_max_window_bits
    assert client_ext.remote_max_window_bits == server_ext.local_max_window_bits
    assert client_ext.local_no_context_takeover == server_ext.remote_no_context_takeover
    assert client_ext.remote_no_context_takeover == server_ext.local_no_context_takeover
    assert server_ext.local_no_context_takeover == server_nct
    if server_bits is not None:
        assert server_ext.local_max_window_bits == min(server_bits, 12)
    exchange(client_ext, server_ext)


@settings(max_examples=60, deadline=None)
@given(
    local_bits=st.integers(8, 15),
    nct=st.booleans(),
    level=st.integers(0, 9),
    mem_level=st.integers(1, 9),
    messages=st.lists(
        st.lists(st.binary(max_size=300) | st.text(max_size=300).map(str.encode), max_size=4),
        max_size=8,
    ),
)
def test_round_trip_property(
    local_bits: int, nct: bool, level: int, mem_level: int, messages: list[list[bytes]]
) -> None:
    sender = ext(
        local_max_window_bits=local_bits,
        local_no_context_takeover=nct,
        compress_level=level,
        mem_level=mem_level,
    )
    receiver = ext(remote_max_window_bits=local_bits, remote_no_context_takeover=nct)
    for frames in messages:
        frames = frames or [b""]
        assert receive(receiver, send(sender, b"", frames)) == b"".join(frames)


# Interoperability with plain zlib raw deflate streams.


@pytest.mark.parametrize("bits", BITS)
def test_output_decodes_with_independent_zlib_at_agreed_window(bits: int) -> None:
    """A decompressor with exactly the agreed window decodes us: 8 works though we compress at 9."""
    sender = ext(local_max_window_bits=bits)
    peer = zlib.decompressobj(-bits)
    for message in sample_messages(bits):
        assert peer.decompress(b"".join(send(sender, message)) + TAIL) == message
        payload = b"".join(send(sender, message, [message[:7], message[7:]]))
        assert peer.decompress(payload + TAIL) == message


def test_output_decodes_with_independent_zlib_15() -> None:
    sender = ext(local_max_window_bits=12)
    peer = zlib.decompressobj(-15)
    for message in sample_messages():
        assert peer.decompress(sender.compress(message, fin=True) + TAIL) == message


@pytest.mark.parametrize("bits", BITS)
def test_decodes_independent_zlib_sync_flush(bits: int) -> None:
    peer = zlib.compressobj(9, zlib.DEFLATED, -max(bits, 9), 9)
    receiver = ext(remote_max_window_bits=bits)
    for message in sample_messages(bits):
        payload = peer.compress(message) + peer.flush(zlib.Z_SYNC_FLUSH)
        assert payload.endswith(TAIL)
        assert receiver.decompress(payload[:-4], fin=True, max_length=None) == message


def test_decodes_messages_ending_with_bfinal() -> None:
    """RFC 7692 section 7.2.3.3: a peer may end each message with a BFINAL block."""
    receiver = ext(remote_no_context_takeover=False)
    for message in sample_messages():
        peer = zlib.compressobj(6, zlib.DEFLATED, -15)
        payload = peer.compress(message) + peer.flush(zlib.Z_FINISH)
        assert receive(receiver, [payload[:5], payload[5:]]) == message
        assert receiver._decompressor is None


def test_data_after_bfinal_is_rejected() -> None:
    peer = zlib.compressobj(6, zlib.DEFLATED, -15)
    payload = peer.compress(b"hello") + peer.flush(zlib.Z_FINISH)
    # Section 7.2.3.3: a 0x00 may follow, for the tail to complete an empty stored block.
    assert receive(ext(), [payload + b"\x00"]) == b"hello"
    assert receive(ext(), [payload, b"\x00", b""]) == b"hello"
    for frames in ([payload + b"\x01"], [payload + b"\x00\x00"], [payload, b"\x00", b"\x00"]):
        with pytest.raises(ProtocolError):
            receive(ext(), frames)
    # A final block that ends inside the tail leaves tail bytes over.
    with pytest.raises(ProtocolError):
        receive(ext(), [b"\x03"])  # static final block whose end-of-block is 0x00
    assert receive(ext(), [b"\x01"]) == b""


def test_decodes_rfc_7692_examples() -> None:
    """Section 7.2.3.1 and 7.2.3.2: "Hello" compressed, then again with context takeover."""
    receiver = ext()
    assert receiver.decompress(bytes.fromhex("f248cdc9c90700"), fin=True, max_length=None) == (
        b"Hello"
    )
    assert receiver.decompress(bytes.fromhex("f200110000"), fin=True, max_length=None) == b"Hello"
    # Section 7.2.3.1's fragmented example, 7.2.3.4 (stored block), 7.2.3.5 (BFINAL) and
    # 7.2.3.6 (two blocks).
    frames = [bytes.fromhex("f248cd"), bytes.fromhex("c9c90700")]
    assert receive(ext(), frames) == b"Hello"
    assert receive(ext(), [bytes.fromhex("000500faff48656c6c6f00")]) == b"Hello"
    assert receive(ext(), [bytes.fromhex("f348cdc9c9070000")]) == b"Hello"
    assert receive(ext(), [bytes.fromhex("f248050000 00ffff cac9c90700")]) == b"Hello"


# The empty message (section 7.2.3.6).


@pytest.mark.parametrize("nct", [False, True])
def test_empty_message(nct: bool) -> None:
    sender = ext(local_no_context_takeover=nct, local_max_window_bits=9)
    receiver = ext(remote_no_context_takeover=nct, remote_max_window_bits=9)
    peer = zlib.decompressobj(-15)
    for message in [b"", b"", b"abc", b"", b"abc"]:
        payload = sender.compress(message, fin=True)
        assert payload  # never an empty payload: the tail alone is an unfinished stored block
        assert peer.decompress(payload + TAIL) == message
        assert receiver.decompress(payload, fin=True, max_length=0 if not message else 3) == (
            message
        )
    assert sender.compress(b"", fin=True) == b"\x00"
    assert receive(receiver, send(sender, b"", [b"", b"", b""])) == b""


# Limits and decompression bombs.


def test_limit_is_exact() -> None:
    sender, receiver = ext(), ext()
    message = b"a" * 10_000
    assert receiver.decompress(sender.compress(message, fin=True), fin=True, max_length=10_000)
    with pytest.raises(PayloadTooBig):
        ext().decompress(ext().compress(message, fin=True), fin=True, max_length=9_999)


def test_limit_across_frames() -> None:
    sender, receiver = ext(), ext()
    payloads = send(sender, b"", [b"a" * 4000] * 5)
    assert receive(receiver, payloads, limit=20_000) == b"a" * 20_000
    with pytest.raises(PayloadTooBig):
        receive(receiver, send(sender, b"", [b"a" * 4000] * 5), limit=19_999)
    assert receiver._decompressor is None  # dropped on error


@pytest.fixture(scope="module")
def bomb() -> bytes:
    """About 100 KB of deflate that inflates to 100 MiB of zeros."""
    compressor = zlib.compressobj(9, zlib.DEFLATED, -15, 9)
    chunk = bytes(1 << 20)
    data = b"".join(compressor.compress(chunk) for _ in range(100))
    data += compressor.flush(zlib.Z_SYNC_FLUSH)
    return data[:-4]


@pytest.mark.parametrize("frame_size", [None, 4096])
def test_decompression_bomb(bomb: bytes, frame_size: int | None) -> None:
    assert len(bomb) < 120_000
    if frame_size is None:
        frames = [bomb]
    else:
        frames = [bomb[i : i + frame_size] for i in range(0, len(bomb), frame_size)]
    receiver = ext()
    limit = 1 << 20
    tracemalloc.start()
    start = time.perf_counter()
    try:
        with pytest.raises(PayloadTooBig):
            receive(receiver, frames, limit=limit)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert time.perf_counter() - start < 1.0
    # The limit (1 MiB) plus a copy when joining, the window and zlib's state; not 100 MiB.
    assert peak < 3 * limit, peak


# Corrupt and hostile input.


@pytest.mark.parametrize(
    "payload",
    [
        b"\xff",
        b"\xff\xff\xff\xff\xff",
        b"\x06",  # BTYPE 11 is reserved
        b"\x00\x05\x00\x00\x00hello",  # stored block with LEN != ~NLEN
    ],
)
def test_corrupt_input(payload: bytes) -> None:
    with pytest.raises(ProtocolError):
        ext().decompress(payload, fin=True, max_length=None)


def test_window_larger_than_agreed() -> None:
    """The peer uses distances beyond the window it agreed to: invalid distance too far back."""
    sender = ext(local_max_window_bits=15)
    receiver = ext(remote_max_window_bits=9)
    message = random.Random(1).randbytes(20_000) * 2
    with pytest.raises(ProtocolError):
        receiver.decompress(sender.compress(message, fin=True), fin=True, max_length=None)


def test_receiver_without_context_cannot_follow_context_takeover() -> None:
    sender = ext(local_no_context_takeover=False)
    receiver = ext(remote_no_context_takeover=True)
    message = random.Random(2).randbytes(1000)
    assert receiver.decompress(sender.compress(message, fin=True), fin=True, max_length=None)
    with pytest.raises(ProtocolError):
        receiver.decompress(sender.compress(message, fin=True), fin=True, max_length=None)


@settings(max_examples=300, deadline=None)
@given(
    frames=st.lists(st.binary(max_size=64), min_size=1, max_size=4),
    limit=st.none() | st.integers(0, 1000),
)
def test_random_input_is_output_or_documented_error(frames: list[bytes], limit: int | None) -> None:
    try:
        out = receive(ext(remote_max_window_bits=9), frames, limit=limit)
    except (ProtocolError, PayloadTooBig):
        return
    assert limit is None or len(out) <= limit


# Negotiation.


def test_default_offer_and_response() -> None:
    client = ClientDeflate()
    assert client.offer() == [("client_max_window_bits", None)]
    result = ServerDeflate().negotiate(client.offer())
    assert result is not None
    response, server_ext = result
    assert response == [("server_max_window_bits", "12"), ("client_max_window_bits", "12")]
    client_ext = client.accept(response)
    assert client_ext.params() == server_ext.params() == response
    assert "server_max_window_bits=12" in repr(server_ext)
    assert server_ext.threshold == client_ext.threshold == DEFAULT_THRESHOLD


@pytest.mark.parametrize(
    ("offer", "response"),
    [
        # The client offers nothing: we limit our own window; the client may use 15.
        ([], [("server_max_window_bits", "12")]),
        # The client asks for less than our limit.
        ([("server_max_window_bits", "10")], [("server_max_window_bits", "10")]),
        ([("server_max_window_bits", "15")], [("server_max_window_bits", "12")]),
        # The client's window hint is echoed when below our limit.
        (
            [("client_max_window_bits", "9")],
            [("server_max_window_bits", "12"), ("client_max_window_bits", "9")],
        ),
        (
            [("client_max_window_bits", "15")],
            [("server_max_window_bits", "12"), ("client_max_window_bits", "12")],
        ),
        # Context takeover requests are honoured.
        (
            [("server_no_context_takeover", None), ("client_no_context_takeover", None)],
            [
                ("server_no_context_takeover", None),
                ("client_no_context_takeover", None),
                ("server_max_window_bits", "12"),
            ],
        ),
    ],
)
def test_server_response(offer: ExtensionParams, response: ExtensionParams) -> None:
    result = ServerDeflate().negotiate(offer)
    assert result is not None
    assert result[0] == response


def test_server_without_limits_follows_the_client() -> None:
    server = ServerDeflate(server_max_window_bits=None, client_max_window_bits=None)
    result = server.negotiate([("client_max_window_bits", None)])
    assert result is not None
    assert result[0] == []
    assert result[1].local_max_window_bits == result[1].remote_max_window_bits == 15
    result = server.negotiate([("server_max_window_bits", "8"), ("client_max_window_bits", "8")])
    assert result is not None
    assert result[0] == [("server_max_window_bits", "8"), ("client_max_window_bits", "8")]


def test_server_config_forces_no_context_takeover() -> None:
    server = ServerDeflate(server_no_context_takeover=True, client_no_context_takeover=True)
    result = server.negotiate([])
    assert result is not None
    response, server_ext = result
    assert ("server_no_context_takeover", None) in response
    assert ("client_no_context_takeover", None) in response
    assert server_ext.threshold == DEFAULT_THRESHOLD_NO_CONTEXT_TAKEOVER
    client_ext = ClientDeflate().accept(response)
    assert client_ext.local_no_context_takeover
    assert client_ext.remote_no_context_takeover


def test_server_require_client_max_window_bits() -> None:
    server = ServerDeflate(require_client_max_window_bits=True)
    assert server.negotiate([]) is None
    assert server.negotiate([("client_max_window_bits", None)]) is not None


@pytest.mark.parametrize(
    "offer",
    [
        [("unknown", None)],
        [("server_no_context_takeover", None), ("server_no_context_takeover", None)],
        [("client_max_window_bits", None), ("client_max_window_bits", "10")],
        [("server_no_context_takeover", "1")],
        [("client_no_context_takeover", "")],
        [("server_max_window_bits", None)],
        [("server_max_window_bits", "7")],
        [("server_max_window_bits", "16")],
        [("server_max_window_bits", "abc")],
        [("server_max_window_bits", "010")],
        [("server_max_window_bits", " 9")],
        [("client_max_window_bits", "8.0")],
        [("client_max_window_bits", "")],
    ],
)
def test_server_declines_invalid_offer(offer: ExtensionParams) -> None:
    assert ServerDeflate().negotiate(offer) is None


@pytest.mark.parametrize(
    ("client", "response"),
    [
        (ClientDeflate(), [("unknown", None)]),
        (ClientDeflate(), [("server_max_window_bits", "12"), ("server_max_window_bits", "12")]),
        (ClientDeflate(), [("server_max_window_bits", "7")]),
        (ClientDeflate(), [("server_max_window_bits", None)]),
        (ClientDeflate(), [("client_max_window_bits", None)]),  # a response needs a value
        (ClientDeflate(), [("client_no_context_takeover", "x")]),
        # client_max_window_bits not offered.
        (ClientDeflate(client_max_window_bits=None), [("client_max_window_bits", "10")]),
        (ClientDeflate(client_max_window_bits=False), [("client_max_window_bits", "10")]),
        # Larger than offered.
        (ClientDeflate(client_max_window_bits=10), [("client_max_window_bits", "11")]),
        (ClientDeflate(server_max_window_bits=10), [("server_max_window_bits", "11")]),
        # Required server_max_window_bits / server_no_context_takeover missing.
        (ClientDeflate(server_max_window_bits=10), []),
        (ClientDeflate(server_no_context_takeover=True), []),
    ],
)
def test_client_rejects_invalid_response(client: ClientDeflate, response: ExtensionParams) -> None:
    with pytest.raises(NegotiationError):
        client.accept(response)


def test_client_accepts_what_the_server_may_choose() -> None:
    client = ClientDeflate(client_max_window_bits=11)
    assert client.offer() == [("client_max_window_bits", "11")]
    # No answer: we keep our hint; the server must assume 15 for its decompressor.
    client_ext = client.accept([])
    assert client_ext.local_max_window_bits == 11
    assert client_ext.remote_max_window_bits == 15
    # The server may pick a window and no context takeover without being asked.
    client_ext = client.accept(
        [
            ("server_no_context_takeover", None),
            ("client_no_context_takeover", None),
            ("server_max_window_bits", "9"),
            ("client_max_window_bits", "8"),
        ]
    )
    assert client_ext.params() == [
        ("server_no_context_takeover", None),
        ("client_no_context_takeover", None),
        ("server_max_window_bits", "9"),
        ("client_max_window_bits", "8"),
    ]


def test_client_offer_with_everything() -> None:
    client = ClientDeflate(
        server_no_context_takeover=True,
        client_no_context_takeover=True,
        server_max_window_bits=10,
        client_max_window_bits=9,
    )
    assert client.offer() == [
        ("server_no_context_takeover", None),
        ("client_no_context_takeover", None),
        ("server_max_window_bits", "10"),
        ("client_max_window_bits", "9"),
    ]
    assert ClientDeflate(client_max_window_bits=None).offer() == []


@pytest.mark.parametrize(
    "make",
    [
        lambda: ClientDeflate(server_max_window_bits=7),
        lambda: ClientDeflate(client_max_window_bits=16),
        lambda: ClientDeflate(client_max_window_bits=0),
        lambda: ClientDeflate(mem_level=0),
        lambda: ServerDeflate(server_max_window_bits=16),
        lambda: ServerDeflate(client_max_window_bits=True),
        lambda: ServerDeflate(compress_level=10),
        lambda: ServerDeflate(threshold=-1),
        lambda: ext(local_max_window_bits=7),
        lambda: ext(remote_max_window_bits=16),
    ],
)
def test_invalid_settings(make: object) -> None:
    with pytest.raises(ValueError, match=r"must be"):
        make()  # type: ignore[operator]


# Threshold.


def test_should_compress() -> None:
    assert ext(threshold=100).should_compress(100)
    assert not ext(threshold=100).should_compress(99)
    assert ext(threshold=0).should_compress(0)
    assert ext().threshold == DEFAULT_THRESHOLD
    assert ext(local_no_context_takeover=True).threshold == DEFAULT_THRESHOLD_NO_CONTEXT_TAKEOVER
    client_ext, _ = negotiate(ClientDeflate(threshold=5), ServerDeflate())
    assert client_ext.threshold == 5


# Memory: lazy allocation, dropping, and what a connection costs.


def test_lazy_allocation() -> None:
    sender, receiver = ext(), ext()
    assert sender._compressor is None
    assert sender._decompressor is None
    receive(receiver, send(sender, b"hello"))
    assert sender._compressor is not None
    assert sender._decompressor is None
    assert receiver._decompressor is not None
    assert receiver._compressor is None


def test_dropped_after_each_message_without_context_takeover() -> None:
    sender = ext(local_no_context_takeover=True)
    receiver = ext(remote_no_context_takeover=True)
    payloads = send(sender, b"", [b"hello ", b"world"])
    assert sender._compressor is None
    receiver.decompress(payloads[0], fin=False, max_length=None)
    assert receiver._decompressor is not None  # kept within a message
    receiver.decompress(payloads[1], fin=True, max_length=None)
    assert receiver._decompressor is None


def traced(action: object) -> int:
    """Bytes still allocated after running ``action``."""
    tracemalloc.start()
    try:
        before, _ = tracemalloc.get_traced_memory()
        action()  # type: ignore[operator]
        after, _ = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    return after - before


def test_memory_per_connection_with_defaults() -> None:
    """Server defaults: 12/5 compressor (~38 KiB) + 12-bit decompressor (~11 KiB)."""
    client_ext, server_ext = negotiate(ClientDeflate(), ServerDeflate())
    message = sample_messages()[2]
    payload = client_ext.compress(message, fin=True)
    assert traced(lambda: server_ext.params()) < 1024  # idle: no zlib state
    used = traced(lambda: server_ext.decompress(payload, fin=True, max_length=None))
    used += traced(lambda: server_ext.compress(message, fin=True))
    print(f"server connection, defaults: {used / 1024:.1f} KiB")
    assert 32 * 1024 < used < 64 * 1024


def test_memory_per_connection_without_context_takeover() -> None:
    server = ServerDeflate(server_no_context_takeover=True, client_no_context_takeover=True)
    client_ext, server_ext = negotiate(ClientDeflate(), server)
    message = sample_messages()[2]
    payload = client_ext.compress(message, fin=True)
    used = traced(lambda: server_ext.decompress(payload, fin=True, max_length=None))
    used += traced(lambda: server_ext.compress(message, fin=True))
    assert used < 1024


# Fuzz harness smoke test.


@functools.cache
def load_harness() -> ModuleType:
    path = Path(__file__).parents[2] / "fuzzing" / "fuzz_deflate.py"
    spec = importlib.util.spec_from_file_location("fuzz_deflate", path)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules.setdefault("fuzz_deflate", module)
    spec.loader.exec_module(module)
    return module


def test_fuzz_harness_smoke() -> None:
    harness = load_harness()
    rng = random.Random(7)
    for _ in range(300):
        harness.TestOneInput(rng.randbytes(rng.randrange(0, 400)))
    for _ in range(50):
        harness.TestOneInput(os.urandom(64))


@settings(max_examples=200, deadline=None)
@given(data=st.binary(max_size=512))
def test_fuzz_harness_hypothesis(data: bytes) -> None:
    load_harness().TestOneInput(data)
