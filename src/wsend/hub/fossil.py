"""Fossil deltas: :func:`create` one from two byte strings, :func:`apply` one to its source.

The format is Fossil's (https://fossil-scm.org/home/doc/tip/www/delta_format.wiki), used by
Centrifugo's delta compression and by the hub's (``docs/protocol.md`` section 5)::

    delta    = SIZE "\\n" *(copy / insert) CHECKSUM ";"
    copy     = COUNT "@" OFFSET ","       ; COUNT bytes of the source, from OFFSET
    insert   = COUNT ":" <COUNT bytes>    ; COUNT bytes given literally

Numbers are unsigned, in base 64, most significant digit first, with the digits
``0-9 A-Z _ a-z ~``. ``SIZE`` is the target's length; ``CHECKSUM`` is the sum, modulo 2**32, of
the target read as big-endian 32-bit words (the last one padded with zero bytes).

:func:`create` follows Fossil's encoder: the source is indexed by its 16-byte blocks, the
target scanned with a 16-byte window; a window found in the index is extended backwards and
forwards as far as the bytes agree, and becomes a copy when that is shorter than inserting the
bytes. It is pure Python; the byte comparisons run as slice comparisons (``memcmp``), so a
payload that mostly matches its source costs a few microseconds per change, not per byte.

:func:`apply` never trusts the delta: every number is bounded, every copy checked against the
source, every insert against the delta, the size against ``max_size`` and the result against
the checksum. Any violation raises :class:`DeltaError`; memory stays within ``max_size`` and
time linear in the delta and the output.
"""

from __future__ import annotations

import re
import struct
from typing import Final

from ..exceptions import WebSocketError

__all__ = ["DEFAULT_MAX_SIZE", "DeltaError", "apply", "checksum", "create"]

#: The largest output :func:`apply` produces unless told otherwise (64 MiB).
DEFAULT_MAX_SIZE: Final = 64 << 20

_DIGITS: Final = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ_abcdefghijklmnopqrstuvwxyz~"
_VALUES: Final = {digit: value for value, digit in enumerate(_DIGITS)}
#: The width of the hash window, and of the source's indexed blocks (Fossil's NHASH).
_BLOCK: Final = 16
#: Candidate source blocks tried per window (Fossil tries up to 250 hash-chain entries; ours
#: are exact matches, so a few suffice even in repetitive sources).
_CANDIDATES: Final = 16
#: Digits of the largest number accepted (64**6 = 2**36: every 32-bit count or offset).
_MAX_DIGITS: Final = 6
_NUMBER: Final = re.compile(rb"[0-9A-Za-z_~]*")


class DeltaError(WebSocketError, ValueError):
    """A delta that can't be applied: malformed, not made for this source, or corrupt."""


def checksum(data: bytes | bytearray) -> int:
    """Fossil's checksum: the sum of ``data``'s big-endian 32-bit words, modulo 2**32."""
    whole = len(data) & ~3
    total = sum(struct.unpack_from(f">{whole >> 2}I", data)) if whole else 0
    if whole < len(data):
        total += int.from_bytes(bytes(data[whole:]).ljust(4, b"\0"), "big")
    return total & 0xFFFFFFFF


def _number(value: int) -> bytes:
    if value < 64:
        return _DIGITS[value : value + 1]
    digits = bytearray()
    while value:
        digits.append(_DIGITS[value & 63])
        value >>= 6
    digits.reverse()
    return bytes(digits)


def _width(value: int) -> int:
    """How many digits :func:`_number` writes for ``value``."""
    return max(1, (value.bit_length() + 5) // 6)


def create(source: bytes, target: bytes, *, text: bool = False) -> bytes:
    """A delta turning ``source`` into ``target``: ``apply(source, create(source, target))``
    returns ``target``.

    Args:
        text: keep UTF-8 characters whole: no copy starts or ends inside a multi-byte
            character of ``target``, so when ``target`` is valid UTF-8 the delta is too (it
            can travel as a JSON string).
    """
    parts = [_number(len(target)), b"\n"]
    base = 0
    if len(source) > _BLOCK:
        base = _copies(source, target, text, parts)
    if base < len(target):
        parts += [_number(len(target) - base), b":", target[base:]]
    parts += [_number(checksum(target)), b";"]
    return b"".join(parts)


def _index(source: bytes) -> dict[bytes, list[int]]:
    """The offsets of the source's aligned 16-byte blocks, by content (first few per block)."""
    index: dict[bytes, list[int]] = {}
    for offset in range(0, len(source) - _BLOCK + 1, _BLOCK):
        found = index.setdefault(source[offset : offset + _BLOCK], [])
        if len(found) < _CANDIDATES:
            found.append(offset)
    return index


def _copies(source: bytes, target: bytes, text: bool, parts: list[bytes]) -> int:
    """Append the copies (and the inserts between them) to ``parts``; returns the length of
    ``target`` they cover, the rest being left to insert."""
    lookup = _index(source).get
    last = len(target) - _BLOCK  # the last window's start
    base = window = 0
    while window <= last:
        offsets = lookup(target[window : window + _BLOCK])
        if offsets is None:  # the common case, kept short: no source block like this one
            window += 1
            continue
        best = _best(source, target, base, window, offsets, text)
        if best is None:
            window += 1
            continue
        start, offset, count = best
        if start > base:
            parts += [_number(start - base), b":", target[base:start]]
        parts += [_number(count), b"@", _number(offset), b","]
        base = window = start + count
    return base


def _best(
    source: bytes, target: bytes, base: int, window: int, offsets: list[int], text: bool
) -> tuple[int, int, int] | None:
    """The longest worthwhile copy through ``target[window:window+16]``: ``(start in
    target, offset in source, count)``, or ``None`` when none pays for its command."""
    best: tuple[int, int, int] | None = None
    best_count = 0
    end_limit = len(target) - window - _BLOCK
    for offset in offsets:
        ahead = _forward(source, offset + _BLOCK, target, window + _BLOCK, end_limit)
        behind = _backward(source, offset, target, window, min(offset, window - base))
        start, end = window - behind, window + _BLOCK + ahead
        if text:
            start, end = _whole_characters(target, start, end)
        count = end - start
        if count <= best_count:
            continue
        source_start = offset + start - window
        cost = _width(start - base) + _width(count) + _width(source_start) + 3
        if count >= cost:
            best, best_count = (start, source_start, count), count
    return best


def _whole_characters(target: bytes, start: int, end: int) -> tuple[int, int]:
    """Shrink ``[start, end)`` so that neither end falls inside a UTF-8 character."""
    while start < end and 0x80 <= target[start] < 0xC0:
        start += 1
    while end > start and end < len(target) and 0x80 <= target[end] < 0xC0:
        end -= 1
    return start, end


def _forward(a: bytes, ai: int, b: bytes, bi: int, limit: int) -> int:
    """How many bytes ``a[ai:]`` and ``b[bi:]`` have in common at their start (at most
    ``limit``, which must fit both)."""
    limit = min(limit, len(a) - ai)
    done, step = 0, 32
    while done < limit:
        k = min(step, limit - done)
        if a[ai + done : ai + done + k] == b[bi + done : bi + done + k]:
            done, step = done + k, step * 2
            continue
        low, high = 0, k  # the first ``low`` bytes agree, the first ``high`` don't
        while high - low > 1:
            middle = (low + high) // 2
            if a[ai + done : ai + done + middle] == b[bi + done : bi + done + middle]:
                low = middle
            else:
                high = middle
        return done + low
    return limit


def _backward(a: bytes, ai: int, b: bytes, bi: int, limit: int) -> int:
    """How many bytes ``a[:ai]`` and ``b[:bi]`` have in common at their end (at most
    ``limit``, which must be at most ``ai`` and ``bi``)."""
    done, step = 0, 16
    while done < limit:
        k = min(step, limit - done)
        if a[ai - done - k : ai - done] == b[bi - done - k : bi - done]:
            done, step = done + k, step * 2
            continue
        low, high = 0, k
        while high - low > 1:
            middle = (low + high) // 2
            if a[ai - done - middle : ai - done] == b[bi - done - middle : bi - done]:
                low = middle
            else:
                high = middle
        return done + low
    return limit


def _read_number(delta: bytes, position: int) -> tuple[int, int]:
    """The number at ``position`` (no digits read as 0, as Fossil does) and the position
    after it."""
    match = _NUMBER.match(delta, position)
    assert match is not None  # the pattern matches the empty string
    digits = match.group()
    if len(digits) > _MAX_DIGITS:
        raise DeltaError(f"number too large at byte {position}")
    value = 0
    for digit in digits:
        value = value * 64 + _VALUES[digit]
    return value, match.end()


def apply(source: bytes, delta: bytes, *, max_size: int = DEFAULT_MAX_SIZE) -> bytes:
    """The target that ``delta`` makes of ``source``.

    Args:
        max_size: the largest target accepted (the delta declares its size first).

    Raises:
        DeltaError: the delta is malformed (bad numbers, unknown commands, missing
            terminator, bytes after it), copies outside ``source``, inserts beyond its own
            end, declares a size over ``max_size`` or one it doesn't produce, or fails its
            checksum (it was made for another source, or corrupted).
    """
    size, position = _read_number(delta, 0)
    if delta[position : position + 1] != b"\n":
        raise DeltaError("the size is not followed by a newline")
    if size > max_size:
        raise DeltaError(f"the target would be {size} bytes, over the limit of {max_size}")
    position += 1
    view = memoryview(source)
    out = bytearray()
    while position < len(delta):
        count, position = _read_number(delta, position)
        command = delta[position : position + 1]
        position += 1
        if command == b"@":
            offset, position = _read_number(delta, position)
            if delta[position : position + 1] != b",":
                raise DeltaError(f"copy command not ended by ',' at byte {position}")
            position += 1
            if offset + count > len(source):
                raise DeltaError("a copy reaches past the end of the source")
            _check_room(out, count, size)
            out += view[offset : offset + count]
        elif command == b":":
            if position + count > len(delta):
                raise DeltaError("an insert reaches past the end of the delta")
            _check_room(out, count, size)
            out += delta[position : position + count]
            position += count
        elif command == b";":
            return _finish(out, size, count, position, len(delta))
        else:
            raise DeltaError(f"unknown command {command!r} at byte {position - 1}")
    raise DeltaError("the delta ends without a checksum")


def _check_room(out: bytearray, count: int, size: int) -> None:
    if len(out) + count > size:
        raise DeltaError("the delta produces more bytes than it declares")


def _finish(out: bytearray, size: int, expected: int, position: int, length: int) -> bytes:
    if position != length:
        raise DeltaError("bytes after the checksum")
    if len(out) != size:
        raise DeltaError(f"the delta produced {len(out)} bytes, not the {size} it declares")
    if checksum(out) != expected:
        raise DeltaError("checksum mismatch: the delta was made for another source")
    return bytes(out)
