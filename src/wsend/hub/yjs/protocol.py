"""The y-protocols messages of y-websocket, sans-I/O: parse and build them, nothing else.

One WebSocket binary message carries one message (y-protocols ``PROTOCOL.md``; lib0
encodings: ``varUint`` is 7 bits per byte, least significant first, high bit = more bytes;
``varUint8Array`` is a ``varUint`` length then the bytes; ``varString`` the same for UTF-8)::

    [0, 0] • varUint8Array(state vector)        SyncStep1: "send me what I lack"
    [0, 1] • varUint8Array(update)              SyncStep2: the answer to a SyncStep1
    [0, 2] • varUint8Array(update)              Update: an incremental document update
    [1]    • varUint8Array(awareness update)    Awareness
    [2, 0] • varString(reason)                  Auth: permission denied (server to client)
    [3]                                         QueryAwareness: "send me every state"

    awareness update := varUint(n) • n * (varUint(client id) • varUint(clock) • varString(json))

:func:`parse_message` reads one client message strictly: an unknown type, a truncated or
overlong varint (more than 53 bits, as lib0 reads them), bytes left over after the message,
awareness JSON that doesn't parse, all raise :class:`~wsend.exceptions.InvalidYMessage` with
the close code to send. Nothing else is raised, whatever the input (see
``fuzzing/fuzz_yjs.py``). The updates themselves are opaque here: the room hands them to
pycrdt, which checks them.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Final

from ...exceptions import InvalidYMessage

__all__ = [
    "MESSAGE_AUTH",
    "MESSAGE_AWARENESS",
    "MESSAGE_QUERY_AWARENESS",
    "MESSAGE_SYNC",
    "AuthMessage",
    "AwarenessEntry",
    "AwarenessMessage",
    "QueryAwareness",
    "SyncStep1",
    "SyncStep2",
    "SyncUpdate",
    "YMessage",
    "awareness_message",
    "encode_awareness",
    "parse_awareness",
    "parse_message",
    "permission_denied",
    "sync_step1",
    "sync_step2",
    "sync_update",
    "var_uint",
]

MESSAGE_SYNC: Final = 0
MESSAGE_AWARENESS: Final = 1
MESSAGE_AUTH: Final = 2
MESSAGE_QUERY_AWARENESS: Final = 3

SYNC_STEP1: Final = 0
SYNC_STEP2: Final = 1
SYNC_UPDATE: Final = 2

# lib0 reads unsigned varints of up to 53 bits (JavaScript's safe integers).
_MAX_UINT: Final = (1 << 53) - 1


@dataclass(frozen=True, slots=True)
class SyncStep1:
    """A peer's state vector: answer with :func:`sync_step2` of what it lacks."""

    state_vector: bytes


@dataclass(frozen=True, slots=True)
class SyncStep2:
    """The updates a peer lacked, in answer to a :class:`SyncStep1` (a document write)."""

    update: bytes


@dataclass(frozen=True, slots=True)
class SyncUpdate:
    """An incremental document update (a document write)."""

    update: bytes


@dataclass(frozen=True, slots=True)
class AwarenessEntry:
    """One client's awareness state: ``state`` is its JSON text, ``"null"`` once removed."""

    client: int
    clock: int
    state: str

    @property
    def removed(self) -> bool:
        """Whether this entry removes the client's state (its JSON is ``null``)."""
        return self.state == "null"


@dataclass(frozen=True, slots=True)
class AwarenessMessage:
    """An awareness update: the raw update (to relay as it is) and its entries."""

    update: bytes
    entries: tuple[AwarenessEntry, ...]


@dataclass(frozen=True, slots=True)
class QueryAwareness:
    """A request for every awareness state the server knows."""


@dataclass(frozen=True, slots=True)
class AuthMessage:
    """An auth message (only servers send them; a client's is read and ignored)."""

    kind: int
    reason: str


YMessage = SyncStep1 | SyncStep2 | SyncUpdate | AwarenessMessage | QueryAwareness | AuthMessage


class _Reader:
    """Reads lib0 encodings from ``data``; every shortfall raises :class:`InvalidYMessage`."""

    __slots__ = ("data", "pos")

    def __init__(self, data: bytes) -> None:
        self.data = data
        self.pos = 0

    def uint(self) -> int:
        data, pos = self.data, self.pos
        value = shift = 0
        while True:
            if pos >= len(data):
                raise InvalidYMessage("truncated varint")
            byte = data[pos]
            pos += 1
            value |= (byte & 0x7F) << shift
            if byte < 0x80:
                break
            shift += 7
            if shift > 49:
                raise InvalidYMessage("varint too long")
        if value > _MAX_UINT:
            raise InvalidYMessage("varint too large")
        self.pos = pos
        return value

    def bytes(self) -> bytes:
        length = self.uint()
        end = self.pos + length
        if end > len(self.data):
            raise InvalidYMessage("truncated byte array")
        chunk = self.data[self.pos : end]
        self.pos = end
        return chunk

    def string(self) -> str:
        try:
            return self.bytes().decode()
        except UnicodeDecodeError:
            raise InvalidYMessage("invalid UTF-8", 1007) from None

    def end(self) -> None:
        if self.pos != len(self.data):
            raise InvalidYMessage("bytes after the message")


def parse_message(message: str | bytes) -> YMessage:
    """Parse one message a client sent.

    Raises:
        InvalidYMessage: the message is malformed; its ``code`` is the close code to send
            (1003 for a text message, 1007 for invalid awareness JSON, 1002 otherwise).
    """
    if isinstance(message, str):
        raise InvalidYMessage("text messages are not part of the protocol", 1003)
    reader = _Reader(bytes(message))
    kind = reader.uint()
    result: YMessage
    if kind == MESSAGE_SYNC:
        step = reader.uint()
        payload = reader.bytes()
        if step == SYNC_STEP1:
            result = SyncStep1(payload)
        elif step == SYNC_STEP2:
            result = SyncStep2(payload)
        elif step == SYNC_UPDATE:
            result = SyncUpdate(payload)
        else:
            raise InvalidYMessage("unknown sync message type")
    elif kind == MESSAGE_AWARENESS:
        update = reader.bytes()
        result = AwarenessMessage(update, parse_awareness(update))
    elif kind == MESSAGE_QUERY_AWARENESS:
        result = QueryAwareness()
    elif kind == MESSAGE_AUTH:
        result = AuthMessage(reader.uint(), reader.string())
    else:
        raise InvalidYMessage("unknown message type")
    reader.end()
    return result


def parse_awareness(update: bytes) -> tuple[AwarenessEntry, ...]:
    """Parse an awareness update's entries; each state must be JSON (``null`` removes).

    Raises:
        InvalidYMessage: 1002 when malformed, 1007 when a state isn't valid JSON.
    """
    reader = _Reader(update)
    count = reader.uint()
    entries = []
    for _ in range(count):
        if reader.pos >= len(update):
            raise InvalidYMessage("truncated awareness update")
        client, clock, state = reader.uint(), reader.uint(), reader.string()
        try:
            json.loads(state)
        except ValueError:
            raise InvalidYMessage("awareness state is not JSON", 1007) from None
        except RecursionError:
            raise InvalidYMessage("awareness state nested too deeply", 1007) from None
        entries.append(AwarenessEntry(client, clock, state))
    reader.end()
    return tuple(entries)


def var_uint(value: int) -> bytes:
    """lib0's ``writeVarUint``: ``value`` (0 to 2**53 - 1) 7 bits at a time.

    Raises:
        ValueError: ``value`` is negative or above 53 bits.
    """
    if not 0 <= value <= _MAX_UINT:
        raise ValueError(f"varUint out of range: {value}")
    out = bytearray()
    while value > 0x7F:
        out.append(0x80 | (value & 0x7F))
        value >>= 7
    out.append(value)
    return bytes(out)


def _var_bytes(data: bytes) -> bytes:
    return var_uint(len(data)) + data


def sync_step1(state_vector: bytes) -> bytes:
    """A SyncStep1 message carrying ``state_vector``."""
    return bytes((MESSAGE_SYNC, SYNC_STEP1)) + _var_bytes(state_vector)


def sync_step2(update: bytes) -> bytes:
    """A SyncStep2 message carrying ``update`` (what the peer's state vector lacked)."""
    return bytes((MESSAGE_SYNC, SYNC_STEP2)) + _var_bytes(update)


def sync_update(update: bytes) -> bytes:
    """An Update message carrying ``update``."""
    return bytes((MESSAGE_SYNC, SYNC_UPDATE)) + _var_bytes(update)


def encode_awareness(entries: list[AwarenessEntry] | tuple[AwarenessEntry, ...]) -> bytes:
    """An awareness update (without its message header) of ``entries``."""
    parts = [var_uint(len(entries))]
    for entry in entries:
        parts += (var_uint(entry.client), var_uint(entry.clock), _var_bytes(entry.state.encode()))
    return b"".join(parts)


def awareness_message(update: bytes) -> bytes:
    """An Awareness message carrying an awareness ``update`` (see :func:`encode_awareness`)."""
    return bytes((MESSAGE_AWARENESS,)) + _var_bytes(update)


def permission_denied(reason: str) -> bytes:
    """An Auth message telling the client it may not use this document (y-websocket logs
    ``reason``)."""
    return bytes((MESSAGE_AUTH, 0)) + _var_bytes(reason.encode())
