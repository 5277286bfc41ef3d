"""Masking (RFC 6455 section 5.3) and the switch between compiled and pure-Python hot paths.

``apply_mask`` comes from the optional C extension ``wsend.protocol._speedups`` when it is built,
and from :func:`apply_mask_py` otherwise. Both behave identically; setting the environment
variable ``WSEND_NO_SPEEDUPS=1`` forces the pure-Python versions (the test suite runs both ways).
"""

from __future__ import annotations

import os
from collections.abc import Callable

__all__ = ["SPEEDUPS", "apply_mask", "apply_mask_py"]

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


apply_mask: Callable[[Buffer, bytes], bytes] = apply_mask_py
SPEEDUPS = False

if not os.environ.get("WSEND_NO_SPEEDUPS"):
    try:
        from ._speedups import apply_mask as _c_apply_mask
    except ImportError:  # pragma: no cover - depends on the build
        pass
    else:  # pragma: no cover - depends on the build
        apply_mask = _c_apply_mask
        SPEEDUPS = True
