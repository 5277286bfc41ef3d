"""Finding the frames of a message and their ids without a decoder's recursion limit.

msgspec decodes with recursion, so a value nested deeper than its limit (about a thousand
levels on CPython 3.11, 10,000 on 3.13) makes the whole element undecodable, even where only
its ``id`` was wanted to answer it. These scanners walk a message iteratively, in time linear
in its length and in constant stack, to find what :class:`~wsend.hub.wire.Codec` needs to
answer a frame that is too deep to decode: the elements of a batch, and the top-level ``id`` of
one frame. They never raise on hostile input: whatever they can't make sense of is ``None``.

They only locate; the values they return are decoded by msgspec again by the caller.
:func:`check_depth` checks a decoded value against the hub's own nesting limit, the same on
every Python version.
"""

from __future__ import annotations

import itertools
import re
from collections.abc import Iterable

import msgspec

__all__ = ["check_depth", "json_elements", "json_id", "msgpack_elements", "msgpack_id"]

# -- JSON ---------------------------------------------------------------------------------------

_JSON_PUNCT = re.compile(rb'[\[\]{},:"]')
_JSON_STRING_REST = re.compile(rb'(?:[^"\\]|\\.)*"', re.DOTALL)
_WHITESPACE = b" \t\r\n"


def _json_tokens(data: bytes) -> list[tuple[int, int, int]] | None:
    """The structural tokens of ``data`` as (byte, start, end); strings as ``"`` spans.

    ``None`` when a string is not terminated. Linear: each string is matched once, from its
    opening quote.
    """
    tokens: list[tuple[int, int, int]] = []
    pos = 0
    while True:
        found = _JSON_PUNCT.search(data, pos)
        if found is None:
            return tokens
        start = found.start()
        if data[start] == 0x22:  # '"'
            rest = _JSON_STRING_REST.match(data, start + 1)
            if rest is None:
                return None
            pos = rest.end()
        else:
            pos = start + 1
        tokens.append((data[start], start, pos))


def _json_children(data: bytes, opener: int) -> list[tuple[int, int]] | None:
    """Spans of the top-level value's direct children, split at its commas.

    The value must be the whole of ``data`` (whitespace aside) and open with ``opener``
    (``[`` or ``{``); for an object, each child is a ``key: value`` member.
    """
    tokens = _json_tokens(data)
    if not tokens or tokens[0][0] != opener or data[: tokens[0][1]].strip(_WHITESPACE):
        return None
    children: list[tuple[int, int]] = []
    depth = 0
    start = 0
    for byte, begin, end in tokens:
        if byte in b"[{":
            depth += 1
            if depth == 1:
                start = end
        elif byte in b"]}":
            depth -= 1
            if depth == 0:
                if data[end:].strip(_WHITESPACE):
                    return None
                if data[start:begin].strip(_WHITESPACE) or children:
                    children.append((start, begin))
                return children
        elif byte == 0x2C and depth == 1:  # ','
            children.append((start, begin))
            start = end
    return None


def json_elements(data: bytes) -> list[bytes] | None:
    """The raw elements of a JSON array, or ``None`` if ``data`` isn't one."""
    children = _json_children(data, 0x5B)
    if children is None:
        return None
    return [data[start:end].strip(_WHITESPACE) for start, end in children]


def json_id(data: bytes) -> object:
    """The decoded value of the top-level ``"id"`` member of a JSON object, or ``None``."""
    children = _json_children(data, 0x7B)
    for start, end in children or ():
        member = data[start:end]
        key, colon, value = member.partition(b":")  # a key is a string: no ':' before it
        try:
            if colon and msgspec.json.decode(key) == "id":
                return msgspec.json.decode(value)
        except (msgspec.MsgspecError, RecursionError):
            continue
    return None


# -- MessagePack --------------------------------------------------------------------------------

# For each first byte: (header bytes, length bytes of a payload that follows, children).
# Fixed-size families are expanded below; children of maps count keys and values.
_FIXED: dict[int, int] = {
    0xC0: 1, 0xC2: 1, 0xC3: 1, 0xCA: 5, 0xCB: 9,
    0xCC: 2, 0xCD: 3, 0xCE: 5, 0xCF: 9, 0xD0: 2, 0xD1: 3, 0xD2: 5, 0xD3: 9,
    0xD4: 3, 0xD5: 4, 0xD6: 6, 0xD7: 10, 0xD8: 18,
}  # fmt: skip
_SIZED: dict[int, tuple[int, int]] = {  # byte: (length bytes, extra header bytes)
    0xC4: (1, 0), 0xC5: (2, 0), 0xC6: (4, 0),  # bin
    0xC7: (1, 1), 0xC8: (2, 1), 0xC9: (4, 1),  # ext (a type byte)
    0xD9: (1, 0), 0xDA: (2, 0), 0xDB: (4, 0),  # str
}  # fmt: skip
_CONTAINERS: dict[int, tuple[int, int]] = {  # byte: (count bytes, children per count)
    0xDC: (2, 1), 0xDD: (4, 1), 0xDE: (2, 2), 0xDF: (4, 2),
}  # fmt: skip


def _msgpack_header(data: bytes, pos: int) -> tuple[int, int] | None:
    """(position after this value's own bytes, number of child values) for the value at pos."""
    byte = data[pos]
    if byte <= 0x7F or byte >= 0xE0:
        return pos + 1, 0
    if 0x80 <= byte <= 0x8F:
        return pos + 1, 2 * (byte & 0x0F)
    if 0x90 <= byte <= 0x9F:
        return pos + 1, byte & 0x0F
    if 0xA0 <= byte <= 0xBF:
        return pos + 1 + (byte & 0x1F), 0
    if byte in _FIXED:
        return pos + _FIXED[byte], 0
    if byte in _SIZED:
        width, extra = _SIZED[byte]
        length = int.from_bytes(data[pos + 1 : pos + 1 + width], "big")
        return pos + 1 + width + extra + length, 0
    if byte in _CONTAINERS:
        width, per = _CONTAINERS[byte]
        count = int.from_bytes(data[pos + 1 : pos + 1 + width], "big")
        return pos + 1 + width, per * count
    return None  # 0xC1: never used


def _msgpack_skip(data: bytes, pos: int) -> int | None:
    """The position after the one value at ``pos`` (children included), or ``None``.

    Iterative: a count of values still to skip replaces the recursion. Each value takes at
    least one byte, so a count beyond the bytes left is refused at once.
    """
    pending = 1
    size = len(data)
    while pending:
        if pos >= size or pending > size - pos:
            return None
        header = _msgpack_header(data, pos)
        if header is None:
            return None
        pos, children = header
        pending += children - 1
    return pos if pos <= size else None


def _msgpack_children(data: bytes, array: bool) -> list[tuple[int, int]] | None:
    """Spans of the direct children of the top-level array (or map: keys and values)."""
    if not data:
        return None
    header = _msgpack_header(data, 0)
    if header is None:
        return None
    is_array = data[0] in (0xDC, 0xDD) or 0x90 <= data[0] <= 0x9F
    is_map = data[0] in (0xDE, 0xDF) or 0x80 <= data[0] <= 0x8F
    if (is_array, is_map) != (array, not array):
        return None
    pos, count = header
    spans: list[tuple[int, int]] = []
    for _ in range(count):
        end = _msgpack_skip(data, pos)
        if end is None:
            return None
        spans.append((pos, end))
        pos = end
    return spans if pos == len(data) else None


def msgpack_elements(data: bytes) -> list[bytes] | None:
    """The raw elements of a MessagePack array, or ``None`` if ``data`` isn't one."""
    children = _msgpack_children(data, array=True)
    return None if children is None else [data[start:end] for start, end in children]


def msgpack_id(data: bytes) -> object:
    """The decoded value of the top-level ``"id"`` key of a MessagePack map, or ``None``."""
    children = _msgpack_children(data, array=False) or []
    for (key_start, key_end), (value_start, value_end) in zip(
        children[::2], children[1::2], strict=True
    ):
        try:
            if msgspec.msgpack.decode(data[key_start:key_end]) == "id":
                return msgspec.msgpack.decode(data[value_start:value_end])
        except (msgspec.MsgspecError, RecursionError):
            continue
    return None


# -- depth of decoded values --------------------------------------------------------------------


def check_depth(value: object, limit: int) -> None:
    """Check that ``value`` nests lists, tuples and dicts at most ``limit`` deep (a scalar is
    0 deep, ``[]`` 1, ``[[]]`` 2); iterative, so any depth is checked without recursion.

    Raises:
        ValueError: ``value`` is deeper.
    """
    stack: list[tuple[object, int]] = [(value, 0)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, dict):
            children: Iterable[object] = itertools.chain(item.keys(), item.values())
        elif isinstance(item, list | tuple):
            children = item
        else:
            continue
        depth += 1
        if depth > limit:
            raise ValueError(f"data nested more than {limit} levels deep")
        stack.extend((child, depth) for child in children if isinstance(child, list | tuple | dict))
