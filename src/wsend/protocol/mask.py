"""Masking (RFC 6455 section 5.3) and the switch between compiled and pure-Python hot paths.

``apply_mask`` and ``PayloadBuffer`` come from the optional C extension
``wsend.protocol._speedups`` when it is built, and from :func:`apply_mask_py` and
:class:`PayloadBufferPy` otherwise. Each pair behaves identically; setting the environment
variable ``WSEND_NO_SPEEDUPS=1`` forces the pure-Python versions (the test suite runs both ways).
"""

from __future__ import annotations

import mmap
import os
from collections.abc import Callable
from typing import Protocol

__all__ = [
    "SPEEDUPS",
    "Payload",
    "PayloadBuffer",
    "PayloadBufferPy",
    "apply_mask",
    "apply_mask_py",
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


class Payload(Protocol):
    """What :data:`PayloadBuffer` makes: see :class:`PayloadBufferPy`."""

    def view(self) -> memoryview: ...

    def finish(self, mask: bytes | None, /) -> bytes: ...


apply_mask: Callable[[Buffer, bytes], bytes] = apply_mask_py
PayloadBuffer: Callable[[int], Payload] = PayloadBufferPy
SPEEDUPS = False

if not os.environ.get("WSEND_NO_SPEEDUPS"):
    try:
        from ._speedups import PayloadBuffer as _c_payload_buffer
        from ._speedups import apply_mask as _c_apply_mask
    except ImportError:  # pragma: no cover - depends on the build
        pass
    else:  # pragma: no cover - depends on the build
        apply_mask = _c_apply_mask
        PayloadBuffer = _c_payload_buffer
        SPEEDUPS = True
