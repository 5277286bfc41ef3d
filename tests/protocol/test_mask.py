"""The compiled masking function and its pure-Python twin behave identically."""

from __future__ import annotations

import importlib
import os

import pytest
from hypothesis import given
from hypothesis import strategies as st

from wsend.protocol import mask
from wsend.protocol.frames import Opcode, serialize_frame, serialize_frame_py

try:
    from wsend.protocol import _speedups  # type: ignore[attr-defined]
except ImportError:  # pragma: no cover - depends on the build
    _speedups = None

IMPLEMENTATIONS = [mask.apply_mask_py]
if _speedups is not None:
    IMPLEMENTATIONS.append(_speedups.apply_mask)


@pytest.mark.parametrize("apply_mask", IMPLEMENTATIONS)
@given(data=st.binary(max_size=1000), key=st.binary(min_size=4, max_size=4))
def test_masking_twice_is_identity(apply_mask, data: bytes, key: bytes) -> None:  # type: ignore[no-untyped-def]
    masked = apply_mask(data, key)
    assert len(masked) == len(data)
    assert apply_mask(masked, key) == data
    expected = bytes(b ^ key[i % 4] for i, b in enumerate(data))
    assert masked == expected


@pytest.mark.parametrize("apply_mask", IMPLEMENTATIONS)
@pytest.mark.parametrize("kind", [bytes, bytearray, memoryview])
def test_accepts_bytes_like(apply_mask, kind) -> None:  # type: ignore[no-untyped-def]
    data = bytes(range(37))
    assert apply_mask(kind(data), b"abcd") == mask.apply_mask_py(data, b"abcd")
    assert type(apply_mask(kind(data), b"abcd")) is bytes


@pytest.mark.parametrize("apply_mask", IMPLEMENTATIONS)
@pytest.mark.parametrize("key", [b"", b"abc", b"abcde"])
def test_rejects_bad_mask(apply_mask, key: bytes) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(ValueError, match="4 bytes"):
        apply_mask(b"data", key)


@pytest.mark.parametrize("apply_mask", IMPLEMENTATIONS)
def test_rejects_non_buffers(apply_mask) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(TypeError):
        apply_mask("text", b"abcd")


def test_environment_variable_forces_pure_python(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("WSEND_NO_SPEEDUPS", "1")
    try:
        reloaded = importlib.reload(mask)
        assert reloaded.apply_mask is reloaded.apply_mask_py
        assert reloaded.SPEEDUPS is False
    finally:
        monkeypatch.delenv("WSEND_NO_SPEEDUPS")
        importlib.reload(mask)


def test_speedups_are_built_when_required() -> None:
    """CI builds the extension: WSEND_REQUIRE_SPEEDUPS=1 makes its absence a failure."""
    if os.environ.get("WSEND_REQUIRE_SPEEDUPS") and not os.environ.get("WSEND_NO_SPEEDUPS"):
        assert mask.SPEEDUPS


PAYLOAD_BUFFERS = [mask.PayloadBufferPy]
if _speedups is not None:
    PAYLOAD_BUFFERS.append(_speedups.PayloadBuffer)


@pytest.mark.parametrize("payload_buffer", PAYLOAD_BUFFERS)
@given(data=st.binary(max_size=1000), key=st.none() | st.binary(min_size=4, max_size=4))
def test_payload_buffer_receives_in_place_then_hands_over(payload_buffer, data, key) -> None:  # type: ignore[no-untyped-def]
    buffer = payload_buffer(len(data))
    with buffer.view() as view:
        assert len(view) == len(data)
        assert not view.readonly
        view[:] = data
    result = buffer.finish(key)
    assert type(result) is bytes
    assert result == (data if key is None else mask.apply_mask_py(data, key))
    with pytest.raises(BufferError):
        buffer.view()
    with pytest.raises(ValueError, match="finished"):
        buffer.finish(None)


@pytest.mark.parametrize("payload_buffer", PAYLOAD_BUFFERS)
def test_payload_buffer_errors(payload_buffer) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(ValueError, match="negative"):
        payload_buffer(-1)
    buffer = payload_buffer(8)
    with pytest.raises(ValueError, match="4 bytes"):
        buffer.finish(b"abc")
    assert payload_buffer(0).finish(None) == b""


# -- parse_messages: runs of whole simple messages ---------------------------------------------

PARSERS = [mask.parse_messages_py]
if _speedups is not None:
    PARSERS.append(_speedups.parse_messages)


@st.composite
def frame_streams(draw: st.DrawFn) -> tuple[bytes, bool]:
    """A stream of frames, mostly simple messages, some of other kinds, maybe cut short."""
    masked = draw(st.booleans())
    chunks = []
    for _ in range(draw(st.integers(0, 8))):
        opcode = draw(
            st.sampled_from(
                [
                    Opcode.TEXT,
                    Opcode.BINARY,
                    Opcode.TEXT,
                    Opcode.BINARY,
                    Opcode.CONT,
                    Opcode.PING,
                    0x3,
                ]
            )
        )
        if opcode == Opcode.TEXT and draw(st.booleans()):
            payload = draw(st.text(max_size=300)).encode()
        else:
            payload = draw(st.binary(max_size=300) | st.sampled_from([b"\xed\xa0\x80", b"\xff"]))
        if draw(st.integers(0, 20)) == 0:
            payload = payload * 300  # a 16-bit or 64-bit length
        # Masked as the stream says, but now and then the other way (not simple then).
        flip = draw(st.integers(0, 15)) == 0
        key = draw(st.binary(min_size=4, max_size=4)) if masked != flip else None
        chunks += serialize_frame(
            opcode,
            payload,
            fin=draw(st.integers(0, 6)) > 0,
            rsv1=draw(st.integers(0, 10)) == 0,
            mask=key,
        )
    stream = b"".join(chunks)
    cut = draw(st.integers(0, 30))
    return (stream[: len(stream) - cut] if cut < len(stream) else stream), masked


@pytest.mark.skipif(_speedups is None, reason="the extension is not built")
@given(
    stream=frame_streams(),
    start=st.integers(0, 12),
    limit=st.sampled_from([-(1 << 64), -1, 0, 10, 125, 126, 65535, 65536, 1 << 62, 1 << 64]),
    count=st.integers(0, 10),
    kind=st.sampled_from([bytes, bytearray, memoryview]),
)
def test_parse_messages_twins_agree(stream, start, limit, count, kind) -> None:  # type: ignore[no-untyped-def]
    data, masked = stream
    start = min(start, len(data))
    results = []
    for parse in PARSERS:
        events: list[object] = []
        results.append((parse(kind(data), start, masked, limit, count, events), events))
    assert results[0] == results[1]


@pytest.mark.parametrize("parse", PARSERS)
def test_parse_messages_takes_whole_simple_messages_and_stops_at_the_rest(parse) -> None:  # type: ignore[no-untyped-def]
    key = b"\x01\x02\x03\x04"
    stream = b"".join(
        [
            *serialize_frame(Opcode.TEXT, "héllo".encode(), mask=key),
            *serialize_frame(Opcode.BINARY, b"\x00" * 70_000, mask=key),
            *serialize_frame(Opcode.BINARY, b"", mask=key),
            *serialize_frame(Opcode.PING, b"ping", mask=key),  # not a message: stop here
            *serialize_frame(Opcode.TEXT, b"after", mask=key),
        ]
    )
    events: list[object] = []
    pos, n = parse(stream, 0, True, 1 << 62, 100, events)
    assert (n, events) == (3, ["héllo", b"\x00" * 70_000, b""])
    assert stream[pos] == 0x89
    # Unmasked frames where masked ones are expected, too large, invalid UTF-8, cut short:
    for bad in (
        serialize_frame(Opcode.TEXT, b"x")[0],
        serialize_frame(Opcode.TEXT, b"x" * 200, mask=key)[0],
        serialize_frame(Opcode.TEXT, b"\xff", mask=key)[0],
        serialize_frame(Opcode.BINARY, b"abc", mask=key)[0][:-1],
    ):
        events = []
        assert parse(bad, 0, True, 100, 100, events) == (0, 0)
        assert events == []
    events = []
    first = len(serialize_frame(Opcode.TEXT, "héllo".encode(), mask=key)[0])
    assert parse(stream, 0, True, 1 << 62, 2, events) == (first + 14 + 70_000, 2)


@pytest.mark.parametrize("parse", PARSERS)
def test_parse_messages_rejects_bad_arguments(parse) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(ValueError, match="pos"):
        parse(b"\x82\x00", 3, False, 10, 10, [])
    with pytest.raises(ValueError, match="pos"):
        parse(b"\x82\x00", -1, False, 10, 10, [])
    with pytest.raises(TypeError):
        parse(b"\x82\x00", 0, False, 10, 10, ())
    with pytest.raises(TypeError):
        parse("text", 0, False, 10, 10, [])


# -- serialize_frame: building frames -----------------------------------------------------------

SERIALIZERS = [serialize_frame_py]
if _speedups is not None:
    SERIALIZERS.append(_speedups.serialize_frame)


@pytest.mark.skipif(_speedups is None, reason="the extension is not built")
@given(
    opcode=st.integers(0, 15),
    payload=st.binary(max_size=300) | st.sampled_from([b"\x00" * 16385, b"\x01" * 70_000]),
    fin=st.booleans(),
    rsv1=st.booleans(),
    mask=st.none() | st.binary(min_size=4, max_size=4),
    kind=st.sampled_from([bytes, bytearray, memoryview]),
)
def test_serialize_frame_twins_agree(opcode, payload, fin, rsv1, mask, kind) -> None:  # type: ignore[no-untyped-def]
    built = [
        serialize(opcode, kind(payload), fin=fin, rsv1=rsv1, mask=mask) for serialize in SERIALIZERS
    ]
    assert [bytes(chunk) for chunk in built[0]] == [bytes(chunk) for chunk in built[1]]
    assert [type(chunk) for chunk in built[0]] == [type(chunk) for chunk in built[1]]


@pytest.mark.parametrize("serialize", SERIALIZERS)
def test_serialize_frame_errors(serialize) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(ValueError, match="opcode"):
        serialize(16, b"")
    with pytest.raises(ValueError, match="opcode"):
        serialize(-1, b"")
    with pytest.raises(ValueError, match="4 bytes"):
        serialize(Opcode.BINARY, b"data", mask=b"abc")
    with pytest.raises(TypeError):
        serialize(Opcode.TEXT, "text")
    large = b"\x02" * 20_000
    assert serialize(Opcode.BINARY, large)[1] is large  # a large payload is not copied
