"""Masking (RFC 6455 section 5.3) and the switch between compiled and pure-Python hot paths.

``apply_mask``, ``parse_messages`` and ``PayloadBuffer`` come from the optional C extension
``wsend.protocol._speedups`` when it is built, and from :func:`apply_mask_py`,
:func:`parse_messages_py` and :class:`PayloadBufferPy` otherwise. Each pair behaves
identically; setting the environment variable ``WSEND_NO_SPEEDUPS=1`` forces the pure-Python
versions (the test suite runs both ways).
"""

from __future__ import annotations

import mmap
import os
from collections.abc import Callable
from typing import Any, Protocol

__all__ = [
    "SPEEDUPS",
    "Payload",
    "PayloadBuffer",
    "PayloadBufferPy",
    "apply_mask",
    "apply_mask_py",
    "parse_messages",
    "parse_messages_py",
]

Buffer = bytes | bytearray | memoryview


def apply_mask_py(data: Buffer, mask: bytes) -> bytes:
    """XOR ``data`` with the 4-byte ``mask`` repeated; masking and unmasking are the same.

    Args:
        data: the payload.
        mask: exactly four bytes.

    Returns:
        A new ``bytes`` object of the same length as ``data``.

    Raises:
        ValueError: ``mask`` is not four bytes long.
    """
    if len(mask) != 4:
        raise ValueError("mask must contain 4 bytes")
    n = len(data)
    if n == 0:
        return b""
    # One big-integer XOR runs in C over the whole payload: far faster than a byte loop.
    key = mask * ((n >> 2) + 1)
    value = int.from_bytes(data, "little") ^ int.from_bytes(key[:n], "little")
    return value.to_bytes(n, "little")


class PayloadBufferPy:
    """A large frame's payload, received in place, then handed over as ``bytes``.

    The transport reads the payload into :meth:`view` as it arrives; :meth:`finish` unmasks
    it and returns it. The memory is an anonymous mapping, backed by the kernel page by page
    as data arrives: a frame announced but never sent costs little. (The compiled twin reads
    into the final ``bytes`` object itself and saves the copy :meth:`finish` makes here.)

    Args:
        size: the payload's length.
    """

    __slots__ = ("_data",)

    def __init__(self, size: int) -> None:
        if size < 0:
            raise ValueError("size must not be negative")
        self._data: mmap.mmap | bytearray | None = mmap.mmap(-1, size) if size else bytearray()

    def view(self) -> memoryview:
        """A writable view of the whole payload.

        Raises:
            BufferError: the buffer is finished.
        """
        if self._data is None:
            raise BufferError("the payload buffer is finished")
        return memoryview(self._data)

    def finish(self, mask: bytes | None) -> bytes:
        """Unmask the payload (``mask``: four bytes, or ``None``) and return it.

        The buffer can't be used afterwards.

        Raises:
            ValueError: already finished, or a mask that isn't four bytes.
        """
        data = self._data
        if data is None:
            raise ValueError("the payload buffer is already finished")
        if mask is not None and len(mask) != 4:
            raise ValueError("mask must contain 4 bytes")
        self._data = None
        return bytes(data) if mask is None else apply_mask_py(memoryview(data), mask)


def parse_messages_py(
    buf: Buffer, pos: int, expect_mask: bool, limit: int, count: int, events: list[Any]
) -> tuple[int, int]:
    """Parse a run of whole, simple messages from ``buf[pos:]`` into ``events``.

    A simple message is one frame with FIN set, opcode text or binary, no RSV bits, masked
    exactly when ``expect_mask``, and a payload of at most ``limit`` bytes: the common case,
    parsed here without the general parser's per-frame work. Each becomes ``bytes`` (binary)
    or ``str`` (text, strictly decoded UTF-8) appended to ``events``; at most ``count`` of them.

    Parsing stops before the first frame that is incomplete, of another kind, or text that
    isn't valid UTF-8: the general parser takes it from there (and reports any error).

    Returns:
        The position after the last frame parsed, and the number of messages parsed.

    Raises:
        ValueError: ``pos`` is outside ``buf``.
        TypeError: ``events`` is not a list.
    """
    if not isinstance(events, list):
        raise TypeError("events must be a list")
    view = memoryview(buf).cast("B")
    end = len(view)
    if not 0 <= pos <= end:
        raise ValueError("pos out of range")
    n = 0
    while n < count and end - pos >= 2:
        b0 = view[pos]
        b1 = view[pos + 1]
        if (b0 != 0x81 and b0 != 0x82) or bool(b1 & 0x80) != bool(expect_mask):
            break
        length = b1 & 0x7F
        hlen = 2
        if length == 126:
            if end - pos < 4:
                break
            length = (view[pos + 2] << 8) | view[pos + 3]
            hlen = 4
        elif length == 127:
            if end - pos < 10:
                break
            length = int.from_bytes(view[pos + 2 : pos + 10], "big")
            hlen = 10
        if expect_mask:
            hlen += 4
        if length > limit:
            break
        start = pos + hlen
        if start > end or length > end - start:
            break
        payload = view[start : start + length]
        mask = bytes(view[start - 4 : start])
        data = apply_mask_py(payload, mask) if expect_mask else bytes(payload)
        if b0 == 0x81:
            try:
                events.append(data.decode())
            except UnicodeDecodeError:
                break
        else:
            events.append(data)
        pos = start + length
        n += 1
    return pos, n


class Payload(Protocol):
    """What :data:`PayloadBuffer` makes: see :class:`PayloadBufferPy`."""

    def view(self) -> memoryview: ...

    def finish(self, mask: bytes | None, /) -> bytes: ...


apply_mask: Callable[[Buffer, bytes], bytes] = apply_mask_py
parse_messages: Callable[[Buffer, int, bool, int, int, list[Any]], tuple[int, int]] = (
    parse_messages_py
)
PayloadBuffer: Callable[[int], Payload] = PayloadBufferPy
SPEEDUPS = False

if not os.environ.get("WSEND_NO_SPEEDUPS"):
    try:
        from ._speedups import PayloadBuffer as _c_payload_buffer
        from ._speedups import apply_mask as _c_apply_mask
        from ._speedups import parse_messages as _c_parse_messages
    except ImportError:  # pragma: no cover - depends on the build
        pass
    else:  # pragma: no cover - depends on the build
        apply_mask = _c_apply_mask
        parse_messages = _c_parse_messages
        PayloadBuffer = _c_payload_buffer
        SPEEDUPS = True
