"""Frames, opcodes and close codes (RFC 6455 section 5 and 7.4).

This module builds frames and parses close payloads. Incoming frames are parsed by the state
machine in :mod:`wsend.protocol.connection`, which needs to see them as they stream in.
"""

from __future__ import annotations

import enum
import struct
from dataclasses import dataclass

from ..exceptions import InvalidPayload, PayloadTooBig, ProtocolError
from .mask import SPEEDUPS, apply_mask

__all__ = [
    "CONTROL_OPCODES",
    "DATA_OPCODES",
    "OK_CLOSE_CODES",
    "Close",
    "CloseCode",
    "Opcode",
    "close_code_for",
    "is_valid_close_code",
    "serialize_frame",
    "serialize_frame_py",
]


class Opcode(enum.IntEnum):
    """Frame opcodes (RFC 6455 section 5.2)."""

    CONT = 0x0
    TEXT = 0x1
    BINARY = 0x2
    CLOSE = 0x8
    PING = 0x9
    PONG = 0xA


DATA_OPCODES = frozenset({Opcode.CONT, Opcode.TEXT, Opcode.BINARY})
CONTROL_OPCODES = frozenset({Opcode.CLOSE, Opcode.PING, Opcode.PONG})


class CloseCode(enum.IntEnum):
    """Close codes (RFC 6455 section 7.4.1 and the IANA registry)."""

    NORMAL_CLOSURE = 1000
    GOING_AWAY = 1001
    PROTOCOL_ERROR = 1002
    UNSUPPORTED_DATA = 1003
    NO_STATUS_RCVD = 1005  # never sent on the wire
    ABNORMAL_CLOSURE = 1006  # never sent on the wire
    INVALID_DATA = 1007
    POLICY_VIOLATION = 1008
    MESSAGE_TOO_BIG = 1009
    MANDATORY_EXTENSION = 1010
    INTERNAL_ERROR = 1011
    SERVICE_RESTART = 1012
    TRY_AGAIN_LATER = 1013
    BAD_GATEWAY = 1014
    TLS_HANDSHAKE = 1015  # never sent on the wire


#: Codes that may appear in a close frame, below the 3000-4999 ranges for libraries and apps.
_WIRE_CLOSE_CODES = frozenset(
    {1000, 1001, 1002, 1003, 1007, 1008, 1009, 1010, 1011, 1012, 1013, 1014}
)

#: Codes meaning a normal end, for :class:`~wsend.exceptions.ConnectionClosedOK`. A close frame
#: without code (1005) is a normal end too: the peer gave no reason to think otherwise.
OK_CLOSE_CODES = frozenset(
    {CloseCode.NORMAL_CLOSURE, CloseCode.GOING_AWAY, CloseCode.NO_STATUS_RCVD}
)


def is_valid_close_code(code: int) -> bool:
    """Tell whether ``code`` may be sent in a close frame (RFC 6455 section 7.4)."""
    return code in _WIRE_CLOSE_CODES or 3000 <= code <= 4999


@dataclass(frozen=True, slots=True)
class Close:
    """The payload of a close frame: a code and a reason.

    A close frame without payload is represented with code 1005 (No Status Received).
    """

    code: int
    reason: str = ""

    def __str__(self) -> str:
        try:
            name = CloseCode(self.code).name.replace("_", " ").lower()
        except ValueError:
            name = "application" if 4000 <= self.code < 5000 else "registered"
        text = f"{self.code} ({name})"
        return f"{text} {self.reason}" if self.reason else text

    @classmethod
    def parse(cls, payload: bytes) -> Close:
        """Parse a close frame's payload (RFC 6455 section 5.5.1).

        Raises:
            ProtocolError: the payload is one byte long, or the code may not be sent.
            InvalidPayload: the reason is not valid UTF-8.
        """
        if not payload:
            return cls(CloseCode.NO_STATUS_RCVD)
        if len(payload) == 1:
            raise ProtocolError("close frame too short")
        code = (payload[0] << 8) | payload[1]
        if not is_valid_close_code(code):
            raise ProtocolError(f"invalid close code {code}")
        try:
            reason = payload[2:].decode()
        except UnicodeDecodeError as exc:
            raise InvalidPayload("invalid UTF-8 in close reason") from exc
        return cls(code, reason)

    def serialize(self) -> bytes:
        """Build the payload of a close frame; 1005 gives an empty payload."""
        if self.code == CloseCode.NO_STATUS_RCVD:
            return b""
        return struct.pack("!H", self.code) + self.reason.encode()


def close_code_for(exc: BaseException) -> int:
    """The close code that reports ``exc`` to the peer. The one place this mapping lives."""
    if isinstance(exc, PayloadTooBig):
        return CloseCode.MESSAGE_TOO_BIG
    if isinstance(exc, InvalidPayload):
        return CloseCode.INVALID_DATA
    if isinstance(exc, ProtocolError):
        return CloseCode.PROTOCOL_ERROR
    return CloseCode.INTERNAL_ERROR


_pack_short = struct.Struct("!BBH").pack
_pack_long = struct.Struct("!BBQ").pack


def serialize_frame_py(
    opcode: int,
    payload: bytes | bytearray | memoryview,
    *,
    fin: bool = True,
    rsv1: bool = False,
    mask: bytes | None = None,
) -> list[bytes | bytearray | memoryview]:
    """Build one frame (RFC 6455 section 5.2).

    Args:
        opcode: the frame's opcode.
        payload: the payload, already compressed if ``rsv1`` is set.
        fin: whether this is the last frame of its message.
        rsv1: whether the message is compressed (RFC 7692), set on its first frame only.
        mask: the 4-byte masking key; clients must mask every frame, servers never do.

    Returns:
        The frame as a list of chunks to write in order: a single chunk for small frames (header
        and payload copied together is faster than two writes) and for masked ones (masking
        copies the payload anyway), header and payload apart for large unmasked ones (no copy
        of the payload).

    Raises:
        ValueError: ``opcode`` is not between 0 and 15, or ``mask`` is not four bytes long.
    """
    if not 0 <= opcode <= 15:
        raise ValueError("opcode must be between 0 and 15")
    length = len(payload)
    b0 = (0x80 if fin else 0) | (0x40 if rsv1 else 0) | opcode
    mbit = 0x80 if mask is not None else 0
    if length < 126:
        header = bytes((b0, mbit | length))
    elif length < 65536:
        header = _pack_short(b0, mbit | 126, length)
    else:
        header = _pack_long(b0, mbit | 127, length)
    if mask is not None:
        if length <= 16384:
            return [header + mask + apply_mask(payload, mask)]
        return [b"".join((header, mask, apply_mask(payload, mask)))]
    if length <= 16384:
        return [header + payload]
    return [header, payload]


#: :func:`serialize_frame_py`, compiled when the extension is built (``WSEND_NO_SPEEDUPS=1``
#: forces the pure-Python version; the test suite runs both).
serialize_frame = serialize_frame_py
if SPEEDUPS:  # pragma: no cover - depends on the build
    from ._speedups import serialize_frame as _c_serialize_frame

    serialize_frame = _c_serialize_frame
