"""Tuning the C allocator for large messages: :func:`tune_allocator`.

Every message ``recv()`` returns is a new ``bytes`` object. With glibc's defaults, blocks of a
megabyte are mapped fresh from the kernel at first, and memory is returned to the kernel
whenever more than twice the largest such block is free at the top of the heap; mapped again,
it costs a page fault per 4 KiB page (hundreds of microseconds per MiB on a virtual machine).
wsend allocates little per large message (a client reuses the buffer it masks into), so one
connection streaming large messages stays clear of this; many connections doing so at once, or
an application holding many large messages, can still make glibc give memory back and map it
again. Keeping freed memory for reuse removes that.

This is a process-wide setting, which belongs to the application, not to a library: wsend's
command line applies it (``wsend serve``, ``echo``, ``bench``); applications that move large
messages call it once at startup, or set the equivalent environment variables
``MALLOC_MMAP_THRESHOLD_`` and ``MALLOC_TRIM_THRESHOLD_`` before Python starts.
"""

from __future__ import annotations

import ctypes
import sys

__all__ = ["tune_allocator"]

# glibc's mallopt() parameters (malloc.h).
_M_TRIM_THRESHOLD = -1
_M_MMAP_THRESHOLD = -3


def tune_allocator(*, mmap_threshold: int = 16 << 20, trim_threshold: int = 64 << 20) -> bool:
    """Make glibc's allocator keep freed memory for reuse (Linux with glibc only).

    Args:
        mmap_threshold: blocks up to this size come from the allocator's heap, reused, rather
            than being mapped from the kernel each time (glibc's default starts at 128 KiB).
        trim_threshold: free memory at the top of the heap is returned to the kernel only
            past this size (glibc's default: twice the mmap threshold).

    Returns:
        Whether the settings were applied (``False`` elsewhere than glibc, or if refused).

    Raises:
        ValueError: a threshold is negative or doesn't fit a C ``int``.
    """
    for value in (mmap_threshold, trim_threshold):
        if not 0 <= value < 1 << 31:
            raise ValueError("thresholds must be from 0 to 2**31 - 1")
    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(None)
        libc.gnu_get_libc_version  # noqa: B018 - only glibc has it
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return False
    mallopt.argtypes = (ctypes.c_int, ctypes.c_int)
    mallopt.restype = ctypes.c_int
    return bool(
        mallopt(_M_MMAP_THRESHOLD, mmap_threshold) and mallopt(_M_TRIM_THRESHOLD, trim_threshold)
    )
