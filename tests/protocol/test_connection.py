"""Tests of the sans-I/O state machine: framing, fragmentation, closing, limits, failures."""

from __future__ import annotations

import os
import struct

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from wsend.exceptions import InvalidPayload, PayloadTooBig, ProtocolError, UsageError
from wsend.protocol.connection import _BIG_FRAME, Connection, Data, Ping, Pong, Side, State
from wsend.protocol.deflate import ClientDeflate, ServerDeflate
from wsend.protocol.frames import Close, CloseCode, Opcode, serialize_frame
from wsend.protocol.mask import apply_mask_py

MASK = b"\x12\x34\x56\x78"


def frame(
    opcode: int, payload: bytes = b"", *, fin: bool = True, rsv: int = 0, mask: bool = True
) -> bytes:
    """A raw frame, as a client (masked) or a server (unmasked) would send it."""
    chunks = serialize_frame(opcode, payload, fin=fin, mask=MASK if mask else None)
    data = b"".join(bytes(c) for c in chunks)
    return bytes([data[0] | rsv]) + data[1:]


def wire(conn: Connection) -> bytes:
    return b"".join(bytes(c) for c in conn.data_to_send())


def pair(**kwargs: object) -> tuple[Connection, Connection]:
    return Connection(Side.CLIENT, **kwargs), Connection(Side.SERVER, **kwargs)  # type: ignore[arg-type]


def parse_frames(data: bytes) -> list[tuple[int, bool, bytes]]:
    """Parse unmasked or masked frames back into (opcode, fin, payload)."""
    out = []
    pos = 0
    while pos < len(data):
        b0, b1 = data[pos], data[pos + 1]
        length = b1 & 0x7F
        pos += 2
        if length == 126:
            (length,) = struct.unpack("!H", data[pos : pos + 2])
            pos += 2
        elif length == 127:
            (length,) = struct.unpack("!Q", data[pos : pos + 8])
            pos += 8
        mask = None
        if b1 & 0x80:
            mask = data[pos : pos + 4]
            pos += 4
        payload = data[pos : pos + length]
        if mask:
            payload = apply_mask_py(payload, mask)
        out.append((b0 & 0x0F, bool(b0 & 0x80), payload))
        pos += length
    return out


# -- data messages ----------------------------------------------------------------------------


@pytest.mark.parametrize("side", [Side.CLIENT, Side.SERVER])
@pytest.mark.parametrize("size", [0, 1, 125, 126, 65535, 65536, 100_000])
def test_round_trip_sizes(side: Side, size: int) -> None:
    other = Side.SERVER if side is Side.CLIENT else Side.CLIENT
    sender, receiver = Connection(side), Connection(other)
    payload = bytes(range(256)) * (size // 256) + bytes(size % 256)
    sender.send_binary(payload)
    sender.send_text(("é" * size).encode()[:size] if size % 2 == 0 else b"x" * size)
    receiver.receive_data(wire(sender))
    events = receiver.events_received()
    assert events[0] == payload
    assert isinstance(events[1], str)
    assert receiver.exc is None


@given(st.lists(st.integers(min_value=0, max_value=200), min_size=1, max_size=6), st.data())
@settings(max_examples=200, deadline=None)
def test_any_split_of_the_stream(sizes: list[int], data: st.DataObject) -> None:
    client, server = pair()
    text = "".join(chr(0x41 + i % 26) + "€" for i in range(sum(sizes)))
    encoded = text.encode()
    pieces = []
    pos = 0
    for n in sizes:
        pieces.append(encoded[pos : pos + n])
        pos += n
    pieces.append(encoded[pos:])
    client.send_text(pieces[0], fin=len(pieces) == 1)
    for i, piece in enumerate(pieces[1:], 2):
        client.send_continuation(piece, fin=i == len(pieces))
    stream = wire(client)
    cuts = sorted(data.draw(st.lists(st.integers(0, len(stream)), max_size=8)))
    last = 0
    for cut in [*cuts, len(stream)]:
        server.receive_data(stream[last:cut])
        last = cut
    events = server.events_received()
    assert server.exc is None
    assert "".join(e.data if isinstance(e, Data) else e for e in events) == text  # type: ignore[misc]
    assert not isinstance(events[-1], Data) or events[-1].fin


@given(
    st.lists(
        st.tuples(st.sampled_from(["text", "binary", "ping"]), st.integers(0, 70_000)),
        min_size=1,
        max_size=5,
    ),
    st.sampled_from([Side.CLIENT, Side.SERVER]),
    st.data(),
)
@settings(max_examples=150, deadline=None)
def test_whole_messages_survive_any_split(
    messages: list[tuple[str, int]], side: Side, data: st.DataObject
) -> None:
    """Frames of every header size, cut anywhere (even inside a header), parse the same."""
    other = Side.SERVER if side is Side.CLIENT else Side.CLIENT
    sender, receiver = Connection(side), Connection(other)
    expected: list[object] = []
    for kind, size in messages:
        if kind == "ping":
            payload = bytes(range(min(size, 125)))
            sender.send_ping(payload)
            expected.append(Ping(payload))
        elif kind == "text":
            sender.send_text(b"a" * size)
            expected.append("a" * size)
        else:
            payload = bytes(i & 0xFF for i in range(size))
            sender.send_binary(payload)
            expected.append(payload)
    stream = wire(sender)
    cuts = sorted(data.draw(st.lists(st.integers(0, len(stream)), max_size=10)))
    last = 0
    for cut in [*cuts, len(stream)]:
        receiver.receive_data(memoryview(stream)[last:cut])
        last = cut
    assert receiver.exc is None
    assert receiver.events_received() == expected


def test_control_frames_between_fragments() -> None:
    server = Connection(Side.SERVER)
    server.receive_data(
        frame(Opcode.TEXT, b"he", fin=False)
        + frame(Opcode.PING, b"p")
        + frame(Opcode.CONT, b"llo", fin=True)
    )
    assert server.events_received() == [Data("he", False), Ping(b"p"), Data("llo", True)]
    assert parse_frames(wire(server)) == [(Opcode.PONG, True, b"p")]


def test_pong_event() -> None:
    server = Connection(Side.SERVER)
    server.receive_data(frame(Opcode.PONG, b"abc"))
    assert server.events_received() == [Pong(b"abc")]
    assert wire(server) == b""


def test_client_masks_server_does_not() -> None:
    client, server = pair()
    client.send_binary(b"abc")
    server.send_binary(b"abc")
    assert wire(client)[1] & 0x80
    assert not wire(server)[1] & 0x80


def test_masks_differ_between_frames() -> None:
    client = Connection(Side.CLIENT)
    masks = set()
    for _ in range(300):
        client.send_binary(b"x")
        masks.add(wire(client)[2:6])
    assert len(masks) > 250


# -- protocol errors --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("data", "code"),
    [
        (frame(Opcode.TEXT, b"x", rsv=0x40), 1002),  # rsv1 without extension
        (frame(Opcode.TEXT, b"x", rsv=0x20), 1002),
        (frame(Opcode.TEXT, b"x", rsv=0x10), 1002),
        (frame(3, b"x"), 1002),  # reserved data opcode
        (frame(11, b"x"), 1002),  # reserved control opcode
        (frame(Opcode.PING, b"x", fin=False), 1002),
        (frame(Opcode.PING, b"x" * 126), 1002),
        (frame(Opcode.CONT, b"x"), 1002),
        (frame(Opcode.TEXT, b"x", fin=False) + frame(Opcode.TEXT, b"y"), 1002),
        (frame(Opcode.TEXT, b"\xff"), 1007),
        (frame(Opcode.TEXT, b"a", fin=False) + frame(Opcode.CONT, b"\xc3", fin=True), 1007),
        (frame(Opcode.CLOSE, b"\x03"), 1002),
        (frame(Opcode.CLOSE, struct.pack("!H", 1005)), 1002),
        (frame(Opcode.CLOSE, struct.pack("!H", 999)), 1002),
        (frame(Opcode.CLOSE, struct.pack("!H", 5000)), 1002),
        (frame(Opcode.CLOSE, struct.pack("!H", 1000) + b"\xff"), 1007),
        (frame(Opcode.TEXT, b"x", mask=False), 1002),  # unmasked from a client
    ],
)
def test_peer_errors_fail_with_the_right_code(data: bytes, code: int) -> None:
    server = Connection(Side.SERVER)
    server.receive_data(data)
    frames = parse_frames(wire(server))
    assert frames[-1][0] == Opcode.CLOSE
    assert Close.parse(frames[-1][2]).code == code
    assert server.close_transport
    assert server.state is State.CLOSING
    assert isinstance(server.exc, ProtocolError)
    # Anything after the failure is ignored.
    server.receive_data(frame(Opcode.TEXT, b"ignored"))
    assert "ignored" not in server.events_received()


def test_masked_frame_from_server_fails_client() -> None:
    client = Connection(Side.CLIENT)
    client.receive_data(frame(Opcode.TEXT, b"x", mask=True))
    assert isinstance(client.exc, ProtocolError)


def test_invalid_utf8_fails_before_the_frame_ends() -> None:
    server = Connection(Side.SERVER)
    data = frame(Opcode.TEXT, "κόσμε".encode() + b"\xf4\x90\x80\x80" + b"x" * 1000)
    server.receive_data(data[:20])
    assert isinstance(server.exc, InvalidPayload)
    assert server.close_transport


def test_valid_text_split_inside_a_frame_is_not_decoded_twice() -> None:
    server = Connection(Side.SERVER)
    text = "κόσμε" * 50
    data = frame(Opcode.TEXT, text.encode(), fin=False) + frame(Opcode.CONT, text.encode())
    for i in range(0, len(data), 7):
        server.receive_data(data[i : i + 7])
    events = server.events_received()
    assert server.exc is None
    assert "".join(e.data for e in events) == text * 2  # type: ignore[union-attr,misc]


def test_frame_too_big_fails_from_its_header() -> None:
    server = Connection(Side.SERVER, max_message_size=1000)
    server.receive_data(frame(Opcode.BINARY, b"x" * 1001)[:8])
    assert isinstance(server.exc, PayloadTooBig)
    assert Close.parse(parse_frames(wire(server))[0][2]).code == 1009


def test_fragmented_message_too_big() -> None:
    server = Connection(Side.SERVER, max_message_size=1000)
    server.receive_data(frame(Opcode.BINARY, b"x" * 600, fin=False))
    server.receive_data(frame(Opcode.CONT, b"x" * 600, fin=True))
    assert isinstance(server.exc, PayloadTooBig)


def test_separate_frame_limit() -> None:
    server = Connection(Side.SERVER, max_message_size=10_000, max_frame_size=100)
    server.receive_data(frame(Opcode.BINARY, b"x" * 100, fin=False))
    assert server.exc is None
    server.receive_data(frame(Opcode.CONT, b"x" * 101))
    assert isinstance(server.exc, PayloadTooBig)


def test_no_limit() -> None:
    server = Connection(Side.SERVER, max_message_size=None)
    server.receive_data(frame(Opcode.BINARY, b"x" * 3_000_000))
    assert server.events_received()[0] == b"x" * 3_000_000


def test_64_bit_length_with_top_bit() -> None:
    server = Connection(Side.SERVER, max_message_size=None)
    server.receive_data(b"\x82\xff" + b"\x80" + b"\x00" * 7 + MASK)
    assert isinstance(server.exc, ProtocolError)


# -- closing handshake ------------------------------------------------------------------------


def test_close_initiated_by_client() -> None:
    client, server = pair()
    client.send_close(1000, "bye")
    assert client.state is State.CLOSING
    server.receive_data(wire(client))
    assert server.events_received() == [Close(1000, "bye")]
    assert server.close_rcvd_then_sent is True
    assert server.close_transport  # the server closes TCP first
    client.receive_data(wire(server))
    assert client.close_rcvd == Close(1000)
    assert client.close_rcvd_then_sent is False
    assert not client.close_transport  # the client waits for the server
    client.receive_eof()
    assert client.state is State.CLOSED


def test_close_initiated_by_server() -> None:
    client, server = pair()
    server.send_close(1001)
    assert not server.close_transport
    client.receive_data(wire(server))
    assert client.close_rcvd == Close(1001)
    server.receive_data(wire(client))
    assert server.close_rcvd == Close(1001)
    assert server.close_transport


def test_close_without_code_is_echoed_without_code() -> None:
    server = Connection(Side.SERVER)
    server.receive_data(frame(Opcode.CLOSE))
    assert server.close_rcvd == Close(CloseCode.NO_STATUS_RCVD)
    assert parse_frames(wire(server)) == [(Opcode.CLOSE, True, b"")]


def test_close_in_the_middle_of_a_fragmented_message_is_echoed() -> None:
    server = Connection(Side.SERVER)
    server.receive_data(frame(Opcode.TEXT, b"a", fin=False) + frame(Opcode.CLOSE, b"\x03\xe8"))
    assert server.close_rcvd == Close(1000)
    assert Close.parse(parse_frames(wire(server))[-1][2]) == Close(1000)


def test_no_pong_after_close_sent() -> None:
    server = Connection(Side.SERVER)
    server.send_close()
    wire(server)
    server.receive_data(frame(Opcode.PING, b"x"))
    assert wire(server) == b""


def test_eof_without_close() -> None:
    client = Connection(Side.CLIENT)
    client.receive_eof()
    assert client.state is State.CLOSED
    assert client.close_rcvd is None


# -- local misuse -----------------------------------------------------------------------------


def test_send_after_close_is_a_usage_error() -> None:
    client = Connection(Side.CLIENT)
    client.send_close()
    with pytest.raises(UsageError):
        client.send_text(b"x")
    with pytest.raises(UsageError):
        client.send_close()


@pytest.mark.parametrize(
    ("code", "reason"),
    [(1004, ""), (1006, ""), (2999, ""), (5000, ""), (1000, "x" * 124), (1005, "x")],
)
def test_invalid_local_close(code: int, reason: str) -> None:
    client = Connection(Side.CLIENT)
    with pytest.raises(ValueError, match="close"):
        client.send_close(code, reason)


def test_control_payload_limit() -> None:
    client = Connection(Side.CLIENT)
    with pytest.raises(ValueError, match="125"):
        client.send_ping(b"x" * 126)
    client.send_pong(b"x" * 125)


def test_fragment_misuse() -> None:
    client = Connection(Side.CLIENT)
    with pytest.raises(UsageError):
        client.send_continuation(b"x", fin=True)
    client.send_text(b"a", fin=False)
    with pytest.raises(UsageError):
        client.send_binary(b"b")
    client.send_continuation(b"b", fin=True)
    client.send_binary(b"c")


# -- compression ------------------------------------------------------------------------------


def deflate_pair(**server_options: int) -> tuple[Connection, Connection]:
    server_side = ServerDeflate()
    client_side = ClientDeflate()
    result = server_side.negotiate(client_side.offer())
    assert result is not None
    response, server_ext = result
    client_ext = client_side.accept(response)
    return (
        Connection(Side.CLIENT, deflate=client_ext),
        Connection(Side.SERVER, deflate=server_ext, **server_options),  # type: ignore[arg-type]
    )


def test_compressed_round_trip_and_fragmented() -> None:
    client, server = deflate_pair()
    text = "hello world " * 100
    client.send_text(text.encode())
    data = wire(client)
    assert data[0] & 0x40
    assert len(data) < len(text) // 4
    client.send_binary(b"a" * 1000, fin=False)
    client.send_continuation(b"b" * 1000, fin=True)
    client.send_text(b"tiny")  # under the threshold: not compressed
    tiny = wire(client)
    server.receive_data(data + tiny)
    events = server.events_received()
    assert events[0] == text
    assert b"".join(e.data for e in events[1:3]) == b"a" * 1000 + b"b" * 1000  # type: ignore[misc]
    assert events[3] == "tiny"
    server.send_text(text.encode(), compress=True)
    client.receive_data(wire(server))
    assert client.events_received() == [text]


def test_decompression_bomb_hits_the_limit() -> None:
    client, server = deflate_pair()
    server.max_message_size = 10_000
    client.send_binary(b"\0" * 5_000_000, compress=True)
    bomb = wire(client)
    assert len(bomb) < 10_000
    server.receive_data(bomb)
    assert isinstance(server.exc, PayloadTooBig)
    assert Close.parse(parse_frames(wire(server))[-1][2]).code == 1009


def test_rsv1_on_continuation_is_an_error() -> None:
    _, server = deflate_pair()
    server.receive_data(frame(Opcode.BINARY, b"", fin=False) + frame(Opcode.CONT, b"", rsv=0x40))
    assert isinstance(server.exc, ProtocolError)


# -- fuzz harness smoke test ------------------------------------------------------------------


def _load_fuzz_target():  # type: ignore[no-untyped-def]
    import importlib.util
    from pathlib import Path

    path = Path(__file__).parents[2] / "fuzzing" / "fuzz_frames.py"
    spec = importlib.util.spec_from_file_location("fuzz_frames", path)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


FUZZ = _load_fuzz_target()


@pytest.mark.parametrize("seed", FUZZ.SEEDS)
def test_fuzz_seeds(seed: bytes) -> None:
    FUZZ.TestOneInput(seed)


@given(st.binary(max_size=400))
@settings(max_examples=500, deadline=None)
def test_fuzz_target_holds_on_random_input(data: bytes) -> None:
    FUZZ.TestOneInput(data)


# -- draining after a failure -----------------------------------------------------------------


def test_after_failing_the_peers_close_frame_is_found_among_skipped_frames() -> None:
    server = Connection(Side.SERVER, max_message_size=100)
    server.receive_data(frame(Opcode.BINARY, b"x" * 101))
    assert isinstance(server.exc, PayloadTooBig)
    assert server.close_rcvd is None
    # The peer keeps sending (a large frame, in pieces), then answers our close frame.
    tail = frame(Opcode.BINARY, b"y" * 70_000) + frame(Opcode.PING, b"p")
    tail += frame(Opcode.CLOSE, Close(1009).serialize())
    for i in range(0, len(tail), 999):
        server.receive_data(tail[i : i + 999])
    assert server.close_rcvd == Close(1009)
    assert server.events_received() == []
    assert len(server._buf) == 0  # payloads were skipped, never buffered


def _header(opcode: int, length: int) -> bytes:
    """The header of a masked frame of ``length`` bytes (its payload sent separately)."""
    return bytes([0x80 | opcode, 0x80 | 127]) + struct.pack("!Q", length) + MASK


def _feed(conn: Connection, data: bytes, step: int = 997) -> None:
    for i in range(0, len(data), step):
        conn.receive_data(data[i : i + step])


@pytest.mark.parametrize("defer", [False, True])
def test_payload_of_an_oversized_frame_arriving_later_is_skipped_not_parsed(defer: bool) -> None:
    """The peer announces a frame over the limit and sends its payload in later reads: the
    payload is skipped by length while watching for the close frame, never read as frames
    (b"x" is 0x78: a close opcode with a 120-byte payload, if parsed as a header)."""
    server = Connection(Side.SERVER, max_message_size=1 << 20)
    server.defer_failure = defer
    server.receive_data(_header(Opcode.BINARY, 2 << 20))
    if defer:
        assert server.has_pending
        server.resolve_pending()
    assert isinstance(server.exc, PayloadTooBig)
    assert Close.parse(parse_frames(wire(server))[-1][2]).code == 1009
    _feed(server, b"x" * (2 << 20))
    assert server.close_rcvd is None  # nothing in the payload was taken for a close frame
    _feed(server, frame(Opcode.PING, b"p") + frame(Opcode.CLOSE, Close(1009).serialize()))
    assert server.close_rcvd == Close(1009)
    assert server.events_received() == []
    assert len(server._buf) == 0


def test_a_64_mib_frame_announced_then_trickled_fails_at_its_header() -> None:
    server = Connection(Side.SERVER)  # default limits
    server.receive_data(_header(Opcode.BINARY, 64 << 20))
    assert isinstance(server.exc, PayloadTooBig)
    assert Close.parse(parse_frames(wire(server))[-1][2]).code == 1009
    assert server.close_transport
    for _ in range(2000):
        server.receive_data(b"x")
    assert server.close_rcvd is None
    assert len(server._buf) == 0


def test_rest_of_a_read_after_a_failed_frame_is_watched_from_the_next_frame() -> None:
    """The failing frame is complete and the peer's close frame follows it in the same read
    (and in a read that completes a frame buffered in parts)."""
    server = Connection(Side.SERVER, max_message_size=100)
    bad = frame(Opcode.TEXT, b"\xff" * 50)  # invalid UTF-8
    tail = frame(Opcode.BINARY, b"\x88\x80" * 300) + frame(Opcode.CLOSE, Close(1000).serialize())
    server.receive_data(bad[:3])
    server.receive_data(bad[3:] + tail)
    assert isinstance(server.exc, InvalidPayload)
    assert server.close_rcvd == Close(1000)


def test_large_frame_received_in_place_failing_midway_skips_its_rest() -> None:
    """A text frame received in place (past _BIG_FRAME) with invalid UTF-8 early: the rest of
    its payload, full of bytes that look like close frames, is skipped by length."""
    server = Connection(Side.SERVER, max_message_size=4 * _BIG_FRAME)
    size = 2 * _BIG_FRAME
    payload = apply_mask_py(b"\xff" + b"\x88\x00" * (size // 2 - 1) + b"!", MASK)
    server.receive_data(_header(Opcode.TEXT, size) + payload[:1000])
    view = server.receive_buffer()
    assert view is None  # failed at the first byte: nothing more is received in place
    assert isinstance(server.exc, InvalidPayload)
    _feed(server, payload[1000:], step=65_536)
    assert server.close_rcvd is None
    server.receive_data(frame(Opcode.CLOSE, Close(1007).serialize()))
    assert server.close_rcvd == Close(1007)


def test_large_frame_failing_in_place_watches_the_rest_of_its_last_read() -> None:
    server = Connection(Side.SERVER, max_message_size=4 * _BIG_FRAME)
    size = 2 * _BIG_FRAME
    payload = b"a" * (size - 1) + b"\xff"  # invalid UTF-8 in the last byte
    server.receive_data(_header(Opcode.TEXT, size) + apply_mask_py(payload, MASK)[:1000])
    assert server.exc is None
    rest = apply_mask_py(payload, MASK)[1000:] + frame(Opcode.CLOSE, Close(1000).serialize())
    server.receive_data(rest)
    assert isinstance(server.exc, InvalidPayload)
    assert server.close_rcvd == Close(1000)


def test_draining_a_broken_stream_never_raises() -> None:
    server = Connection(Side.SERVER)
    server.receive_data(b"\x8f\x80abcd")  # reserved opcode: fail
    assert isinstance(server.exc, ProtocolError)
    server.receive_data(b"\xff" * 20 + b"\x88\x82abcd\x00")  # garbage, half a close frame
    server.receive_data(b"\x01")
    server.receive_eof()
    assert server.state is State.CLOSED


def test_incompressible_message_at_the_limit_is_accepted() -> None:
    """A compressed frame may exceed the message limit by deflate's expansion."""
    import os

    client, server = deflate_pair()
    server.max_message_size = 100_000
    payload = os.urandom(100_000)
    client.send_binary(payload, compress=True)
    data = wire(client)
    assert len(data) > 100_000
    server.receive_data(data)
    assert server.exc is None
    assert server.events_received() == [payload]


def test_explicit_frame_limit_applies_to_compressed_frames() -> None:
    import os

    client, server = deflate_pair(max_message_size=100_000, max_frame_size=100_000)
    client.send_binary(os.urandom(100_000), compress=True)
    server.receive_data(wire(client))
    assert isinstance(server.exc, PayloadTooBig)


# -- bounds on what a peer can make us hold ---------------------------------------------------


def test_max_events_stops_parsing_and_parse_buffered_resumes() -> None:
    _, server = pair()
    server.max_events = 3
    stream = b"".join(frame(Opcode.BINARY, bytes([i])) for i in range(8))
    server.receive_data(stream[:-3])  # the last frame incomplete
    assert server.events_received() == [b"\x00", b"\x01", b"\x02"]
    assert server.parse_pending
    server.receive_data(stream[-3:])  # more data while pending is only buffered and parsed
    assert server.events_received() == [b"\x03", b"\x04", b"\x05"]
    server.parse_buffered()
    assert server.events_received() == [b"\x06", b"\x07"]
    assert not server.parse_pending
    server.parse_buffered()  # nothing pending: nothing happens
    assert server.events_received() == []


def test_control_frames_do_not_count_against_max_events() -> None:
    _, server = pair()
    server.max_events = 2
    server.receive_data(frame(Opcode.PING) * 5 + frame(Opcode.TEXT, b"a"))
    events = server.events_received()
    assert events[-1] == "a"
    assert len(events) == 6
    assert not server.parse_pending


def test_eof_parses_what_max_events_left_buffered() -> None:
    _, server = pair()
    server.max_events = 1
    server.receive_data(frame(Opcode.TEXT, b"a") + frame(Opcode.TEXT, b"b") + frame(Opcode.TEXT))
    assert server.events_received() == ["a"]
    server.receive_eof()
    assert server.events_received() == ["b", ""]


def test_max_inflated_stops_parsing_compressed_messages_and_parse_buffered_resumes() -> None:
    client, server = deflate_pair()
    server.max_inflated = 250_000
    for i in range(10):
        client.send_binary(bytes([i]) * 100_000, compress=True)
    data = wire(client)
    assert len(data) < 5_000  # a megabyte once inflated
    server.receive_data(data)
    got: list[bytes] = []
    while True:
        batch = server.events_received()
        # The batch stops after the message that reached the budget.
        assert sum(len(m) for m in batch) <= 250_000 + 100_000  # type: ignore[arg-type]
        got += batch  # type: ignore[arg-type]
        if not server.parse_pending:
            break
        server.parse_buffered()
    assert got == [bytes([i]) * 100_000 for i in range(10)]
    assert len(got) == 10


def test_max_inflated_ignores_uncompressed_messages() -> None:
    _, server = pair()
    server.max_inflated = 10
    server.receive_data(b"".join(frame(Opcode.BINARY, b"x" * 100) for _ in range(5)))
    assert server.events_received() == [b"x" * 100] * 5
    assert not server.parse_pending


def test_eof_parses_what_max_inflated_left_buffered_up_to_the_budget() -> None:
    client, server = deflate_pair()
    server.max_inflated = 250_000
    for i in range(10):
        client.send_binary(bytes([i]) * 100_000, compress=True)
    client.send_close(1000)
    server.receive_data(wire(client))
    first = server.events_received()
    assert len(first) == 3
    assert server.parse_pending
    server.receive_eof()  # a budget more is parsed; the rest (and the close frame) is dropped
    rest = server.events_received()
    assert rest == [bytes([i]) * 100_000 for i in range(3, 6)]
    assert server.state is State.CLOSED
    assert server.close_rcvd is None


def test_pongs_held_while_writes_are_blocked_answer_only_the_latest_ping() -> None:
    _, server = pair()
    assert not server.hold_pongs(True)
    server.receive_data(frame(Opcode.PING, b"1") + frame(Opcode.PING, b"2"))
    assert wire(server) == b""
    assert server.hold_pongs(False)
    assert parse_frames(wire(server)) == [(Opcode.PONG, True, b"2")]
    assert not server.hold_pongs(False)


def test_surrogate_prefix_fails_before_the_rest_arrives() -> None:
    _, server = pair()
    data = frame(Opcode.TEXT, b"ab\xed\xa0\x80cd")
    server.receive_data(data[:-3])  # ends with ED A0: no valid UTF-8 continues it
    assert isinstance(server.exc, InvalidPayload)
    _, server = pair()
    server.receive_data(frame(Opcode.TEXT, b"ab\xed\x9f", fin=False))  # ED 9F may continue
    assert server.exc is None


@pytest.mark.parametrize(
    "view",
    [
        memoryview(bytes(range(40))).cast("i"),
        memoryview(bytes(range(40))).cast("B", (5, 8)),
        memoryview(bytes(range(40)))[::3],
    ],
)
def test_memoryviews_of_any_layout_are_sent_as_their_bytes(view: memoryview) -> None:
    for side in (Side.CLIENT, Side.SERVER):
        sender = Connection(side)
        sender.send_binary(view)
        sender.send_ping(view[:2] if view.ndim == 1 else view.tobytes()[:8])
        frames = parse_frames(wire(sender))
        assert frames[0] == (Opcode.BINARY, True, view.tobytes())


@pytest.mark.parametrize("side", [Side.CLIENT, Side.SERVER])
@pytest.mark.parametrize("opcode", [Opcode.BINARY, Opcode.TEXT])
def test_large_frames_are_received_in_place(side: Side, opcode: int) -> None:
    other = Side.SERVER if side is Side.CLIENT else Side.CLIENT
    sender, receiver = Connection(other), Connection(side)
    payload = ("é" * (_BIG_FRAME // 2 + 1000)).encode() + b"end"  # a character split, too
    if opcode == Opcode.TEXT:
        sender.send_text(payload)
    else:
        sender.send_binary(payload)
    sender.send_text(b"after")
    stream = wire(sender)
    receiver.receive_data(stream[:1001])  # the header and the start of the payload
    assert receiver.receive_buffer() is not None
    pos = 1001
    answers = []
    while (view := receiver.receive_buffer()) is not None:
        n = min(len(view), 7777)
        last = n == len(view)
        view[:n] = stream[pos : pos + n]
        view.release()
        answers.append((receiver.receive_into(n), last))
        pos += n
    # Only the middle of a binary frame needs no look at events; text is checked as it comes.
    assert answers[-1] == (True, True)
    assert all(more == (opcode == Opcode.TEXT or last) for more, last in answers)
    assert receiver.receive_into(100) is True  # no frame in progress: look anyway
    receiver.receive_data(stream[pos:])  # the next frame, read the usual way
    expected = payload.decode() if opcode == Opcode.TEXT else payload
    assert receiver.events_received() == [expected, "after"]
    assert receiver.exc is None


@pytest.mark.parametrize("side", [Side.CLIENT, Side.SERVER])
def test_large_frames_fed_in_chunks_are_received_whole(side: Side) -> None:
    """A caller that never asks for receive_buffer() (it only feeds bytes) gets the same."""
    other = Side.SERVER if side is Side.CLIENT else Side.CLIENT
    sender, receiver = Connection(other), Connection(side)
    payload = os.urandom(_BIG_FRAME + 5000)
    sender.send_binary(payload)
    sender.send_text(b"after")
    stream = wire(sender)
    for start in range(0, len(stream), 100_000):  # the last chunk ends the frame and more
        receiver.receive_data(stream[start : start + 100_000])
    assert receiver.events_received() == [payload, "after"]
    assert receiver.exc is None


def test_invalid_utf8_fails_while_a_large_frame_is_received_in_place() -> None:
    _, server = pair()
    n = _BIG_FRAME + 1000
    stream = frame(Opcode.TEXT, b"a" * n + b"\xff" + b"b" * 1000)
    server.receive_data(stream[:100])
    view = server.receive_buffer()
    assert view is not None
    view[:n] = stream[100 : n + 100]  # past the invalid byte
    view.release()
    server.receive_into(n)
    assert isinstance(server.exc, InvalidPayload)
    assert server.receive_buffer() is None


@pytest.mark.parametrize("size", [10_000, _BIG_FRAME + 1000])  # buffered, received in place
def test_failing_skips_the_rest_of_a_large_frame_then_finds_the_close_frame(size: int) -> None:
    _, server = pair()
    stream = frame(Opcode.BINARY, b"x" * size) + frame(Opcode.CLOSE, struct.pack("!H", 1000))
    server.receive_data(stream[:5000])
    server.fail(CloseCode.GOING_AWAY)
    server.receive_data(stream[5000:])
    assert server.close_rcvd is not None
    assert server.close_rcvd.code == 1000


def test_failing_with_a_header_half_received_then_finds_the_close_frame() -> None:
    _, server = pair()
    stream = frame(Opcode.BINARY, b"x" * 300) + frame(Opcode.CLOSE, struct.pack("!H", 1000))
    server.receive_data(stream[:3])  # the header isn't whole yet
    server.fail(CloseCode.GOING_AWAY)
    assert server.close_rcvd is None
    server.receive_data(stream[3:])
    assert server.close_rcvd is not None
    assert server.close_rcvd.code == 1000


def test_failing_finds_a_close_frame_left_unparsed_at_max_events() -> None:
    _, server = pair()
    server.max_events = 1
    close = frame(Opcode.CLOSE, struct.pack("!H", 1001))
    server.receive_data(frame(Opcode.BINARY, b"a") + frame(Opcode.BINARY, b"b") + close)
    assert server.parse_pending
    assert server.events_received() == [b"a"]
    server.fail(CloseCode.GOING_AWAY)
    assert server.close_rcvd is not None
    assert server.close_rcvd.code == 1001
