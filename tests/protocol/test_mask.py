"""The compiled masking function and its pure-Python twin behave identically."""

from __future__ import annotations

import importlib
import os

import pytest
from hypothesis import given
from hypothesis import strategies as st

from wsend.protocol import mask

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
